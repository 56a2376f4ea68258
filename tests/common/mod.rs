//! Shared harness for the integration tests: runs `hotline serve` as a child process on
//! loopback ports (`Service`) and drives SIPp scenarios from `tests/sipp/` against it (`Sipp`).
//! Each test binary uses a different part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod baresip;
pub mod capture;
pub mod kamailio;
pub mod tls;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long the service may take to print its readiness line.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// The readiness line is this prefix followed by the SIP address and ` (udp+tcp)`.
const READY_PREFIX: &str = "hotline listening sip=";
/// How long Drop waits for the output readers to see the pipes close.
const READERS_DEADLINE: Duration = Duration::from_secs(2);
/// Service stderr lines printed in failure reports (the whole log is in `hotline.log`).
const STDERR_TAIL_LINES: usize = 200;

/// Service RTP ranges are carved from 20000..32600, below Linux's ephemeral range (32768+) where
/// the OS picks SIPp's signalling and media ports, so the two never compete for a port.
const RTP_BASE: u32 = 20_000;
const RTP_PORTS_PER_SERVICE: u32 = 200;
const RTP_SLOTS: u32 = 63;
/// Distinct per service started by this test process; tests run in parallel threads.
static NEXT_SERVICE: AtomicU32 = AtomicU32::new(0);

/// A running `hotline serve` child process, killed when dropped (also when the test panics,
/// in which case the tail of its stderr is printed).
pub struct Service {
    child: Child,
    sip_addr: SocketAddr,
    log: Arc<ServiceLog>,
    /// Each output reader sends once here when its pipe closes.
    /// In a mutex only so that `&Service` can be shared with SIPp threads (`Sync`).
    readers_done: Mutex<mpsc::Receiver<()>>,
    dir: PathBuf,
    sipp_runs: AtomicU32,
    /// The settings file given with `--config`, if any.
    config: Option<PathBuf>,
    /// The `HOTLINE__*` variables the service was started with (defaults and extras).
    env: Vec<(String, String)>,
}

impl Service {
    /// Starts the service on 127.0.0.1 with a private RTP port range, database and working
    /// folder, and waits for its readiness line. `extra_env` pairs override the defaults.
    pub fn start(extra_env: &[(&str, &str)]) -> Service {
        Service::launch(None, extra_env)
    }

    /// Like [`Service::start`], with `config_toml` written to `hotline.toml` in the test's
    /// folder and given as `--config` (the way to set tables such as `[trunks.NAME]`). The
    /// harness's variables (listen addresses, RTP range, database, pid file) and `extra_env`
    /// still override the file.
    pub fn start_with_config(config_toml: &str, extra_env: &[(&str, &str)]) -> Service {
        Service::launch(Some(config_toml), extra_env)
    }

    fn launch(config_toml: Option<&str>, extra_env: &[(&str, &str)]) -> Service {
        let number = NEXT_SERVICE.fetch_add(1, Ordering::Relaxed);
        let slot = (std::process::id() + number) % RTP_SLOTS;
        let rtp_min = RTP_BASE + slot * RTP_PORTS_PER_SERVICE;
        let rtp_max = rtp_min + RTP_PORTS_PER_SERVICE - 1;
        let dir = test_dir(number);
        let database_url = format!("sqlite://{}", dir.join("hotline.db").display());
        let config = config_toml.map(|text| {
            let path = dir.join("hotline.toml");
            fs::write(&path, text)
                .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
            path
        });

        let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
        if let Some(config) = &config {
            command.arg("--config").arg(config);
        }
        command
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Settings from the developer's shell must not leak into tests.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HOTLINE__") {
                command.env_remove(&key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,hotline=debug");
        }
        let mut env: Vec<(String, String)> = vec![
            ("HOTLINE__SIP__LISTEN".into(), "127.0.0.1:0".into()),
            ("HOTLINE__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
            ("HOTLINE__RTP__PORT_MIN".into(), rtp_min.to_string()),
            ("HOTLINE__RTP__PORT_MAX".into(), rtp_max.to_string()),
            ("HOTLINE__DATABASE__URL".into(), database_url),
            (
                "HOTLINE__DATABASE__SPOOL".into(),
                dir.join("cdr-spool.jsonl").display().to_string(),
            ),
            (
                "HOTLINE__PID_FILE".into(),
                dir.join("hotline.pid").display().to_string(),
            ),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        for (key, value) in &env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", env!("CARGO_BIN_EXE_hotline")));

        let log = Arc::new(ServiceLog::default());
        let (stdout_lines, ready_lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (reader_done, readers_done) = mpsc::channel();
        let stdout_done = reader_done.clone();
        thread::spawn(move || {
            // Keeps draining after readiness so the pipe never fills; sends fail once nobody
            // listens, which is fine.
            for_each_line(stdout, |line| {
                let _ = stdout_lines.send(line);
            });
            let _ = stdout_done.send(());
        });
        let service_log = Arc::clone(&log);
        thread::spawn(move || {
            for_each_line(stderr, |line| service_log.push(line));
            let _ = reader_done.send(());
        });

        // From here on, Drop kills the child and reports stderr if we panic.
        let mut service = Service {
            child,
            sip_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            readers_done: Mutex::new(readers_done),
            dir,
            sipp_runs: AtomicU32::new(0),
            config,
            env,
        };
        service.sip_addr = service.wait_until_ready(&ready_lines);
        service
    }

    fn wait_until_ready(&mut self, lines: &mpsc::Receiver<String>) -> SocketAddr {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        return addr.parse().unwrap_or_else(|error| {
                            panic!("readiness line {line:?} has no SIP address: {error}")
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("hotline printed no `{READY_PREFIX}...` line within {READY_DEADLINE:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!("hotline closed stdout before it was ready (exit status {status:?})")
                }
            }
        }
    }

    /// Kills the service with SIGKILL (like `kill -9`: no clean-up of any kind) and returns once
    /// it is dead. Takes `&self`, so it works while SIPp threads still borrow the service.
    pub fn kill_hard(&self) {
        let pid = self.child.id();
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap_or_else(|error| panic!("running kill -9 {pid}: {error}"));
        assert!(status.success(), "kill -9 {pid} failed: {status}");
        // Dead once it is a zombie (reaped by Drop) or gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            if matches!(state, None | Some("Z") | Some("X")) {
                return;
            }
            assert!(Instant::now() < deadline, "hotline {pid} survived kill -9");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address the service bound for SIP over both UDP and TCP.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// The test's private working folder (database, SIPp logs, the service's `hotline.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A `hotline` command set up as an operator would run it next to this service: the same
    /// `--config` and `HOTLINE__*` variables (so it finds the service through its pid file
    /// and uses its token). Add the subcommand and its arguments.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HOTLINE__") {
                command.env_remove(&key);
            }
        }
        command
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        command
    }

    /// The address of the HTTP API, from the service's log line announcing it.
    pub fn http_addr(&self) -> SocketAddr {
        let line = self
            .wait_for_log_line(
                |line| line.contains("HTTP API and dashboard listening"),
                Duration::from_secs(5),
            )
            .expect("the service logs its HTTP address");
        log_field(&line, "http_addr")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no http_addr in {line:?}"))
    }

    /// `Some(status)` once the service process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends the service process `signal` (e.g. `libc::SIGTERM`).
    pub fn send_signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("the pid fits a pid_t");
        // SAFETY: kill(2) on our own child's pid; it has not been reaped, so it is not reused.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            result,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits until the service process exits, up to `timeout`; `None` if it is still running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines the service wrote to stderr (its log).
    pub fn stderr_tail(&self) -> String {
        let lines = self.log.lines();
        let skip = lines.len().saturating_sub(STDERR_TAIL_LINES);
        lines[skip..]
            .iter()
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// Every line the service wrote to stderr so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines().clone()
    }

    /// Waits until the service logs a line for which `wanted` holds and returns it; `None`
    /// when none came within `timeout`. Lines logged before the call count too.
    pub fn wait_for_log_line(
        &self,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines();
        let mut checked = 0;
        loop {
            if let Some(line) = lines[checked..].iter().find(|line| wanted(line)) {
                return Some(line.clone());
            }
            checked = lines.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = self
                .log
                .grew
                .wait_timeout(lines, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// The service's stderr, line by line, as it arrives.
#[derive(Default)]
struct ServiceLog {
    lines: Mutex<Vec<String>>,
    /// Signalled after each new line.
    grew: Condvar,
}

impl ServiceLog {
    fn push(&self, line: String) {
        self.lines().push(line);
        self.grew.notify_all();
    }

    fn lines(&self) -> MutexGuard<'_, Vec<String>> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes close with the process, so the readers finish and the tail is complete;
        // bounded in case a grandchild still holds a pipe open.
        let deadline = Instant::now() + READERS_DEADLINE;
        let readers_done = self
            .readers_done
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if readers_done.recv_timeout(left).is_err() {
                break;
            }
        }
        let whole_log: String = self
            .log
            .lines()
            .iter()
            .map(|line| format!("{line}\n"))
            .collect();
        let _ = fs::write(self.dir.join("hotline.log"), whole_log);
        if thread::panicking() {
            let sip = match self.sip_addr.port() {
                0 => "(not ready)".to_string(),
                _ => self.sip_addr.to_string(),
            };
            eprintln!(
                "---- hotline stderr (last {STDERR_TAIL_LINES} lines), sip={sip} dir={} ----\n{}---- end of hotline stderr ----",
                self.dir.display(),
                self.stderr_tail()
            );
        }
    }
}

/// Calls `each` with every line of `source`, decoding leniently so odd bytes never stop the
/// draining.
fn for_each_line(source: impl Read, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(source);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buffer);
                each(line.trim_end_matches(['\r', '\n']).to_string());
            }
        }
    }
}

/// A fresh folder for one service of the current test, kept after the run for inspection.
fn test_dir(number: u32) -> PathBuf {
    let current = thread::current();
    let test_name: String = current
        .name()
        .unwrap_or("unnamed")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hotline-tests")
        .join(format!("{}-{test_name}-{number}", env!("CARGO_CRATE_NAME")));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    dir
}

/// SIPp's transport modes used by the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `-t u1`: one UDP socket for all calls.
    Udp,
    /// `-t t1`: one TCP connection for all calls.
    TcpSingleConnection,
    /// `-t tn`: a new TCP connection per call.
    TcpConnectionPerCall,
}

impl Transport {
    fn sipp_flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::TcpSingleConnection => "t1",
            Transport::TcpConnectionPerCall => "tn",
        }
    }
}

/// Final SIPp call counters (the cumulative `(C)` columns of its statistics file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SippStats {
    pub successful: u64,
    pub failed: u64,
}

/// The loopback ports of one SIPp run. Chosen before the run when a test needs to know them
/// in advance, e.g. to capture the run's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SippPorts {
    /// SIP (`-p`).
    pub signalling: u16,
    /// RTP audio (`-mp`); SIPp also binds video on `media + 2`.
    pub media: u16,
}

impl SippPorts {
    /// Ports that are free right now (see [`free_port`]).
    pub fn pick(transport: Transport) -> SippPorts {
        SippPorts {
            signalling: free_port(transport != Transport::Udp, false),
            media: free_port(false, true),
        }
    }
}

/// One SIPp run of a scenario from `tests/sipp/`, configured builder-style.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: String,
    transport: Transport,
    calls: u32,
    rate: u32,
    limit: Option<u32>,
    /// `-d`: how long a scenario's bare `<pause/>` lasts.
    pause: Option<Duration>,
    ports: Option<SippPorts>,
    /// (file name, contents) written into SIPp's working folder before it starts.
    working_files: Vec<(String, Vec<u8>)>,
}

/// The number SIPp dials (`[service]` in the scenarios): the hotline's own.
const DIALLED_NUMBER: &str = "19118";

/// SIPp gives up on the whole run after this (and fails it: `-timeout_error`).
const SIPP_GLOBAL_TIMEOUT_S: u64 = 60;
/// A single expected message that does not arrive within this fails that call.
const SIPP_RECV_TIMEOUT_S: u64 = 10;
/// Runs of one scenario when SIPp finds a port taken at start.
const BIND_ATTEMPTS: u32 = 3;
/// Our own backstop in case SIPp ignores its timeout.
const SIPP_WALL_DEADLINE: Duration = Duration::from_secs(SIPP_GLOBAL_TIMEOUT_S + 30);

impl Sipp {
    /// `scenario` is a file name in `tests/sipp/`. Defaults: UDP, 1 call at 10 calls/s,
    /// dialling 19118.
    pub fn new(scenario: &str) -> Sipp {
        Sipp {
            scenario: scenario.to_string(),
            transport: Transport::Udp,
            calls: 1,
            rate: 10,
            limit: None,
            pause: None,
            ports: None,
            working_files: Vec::new(),
        }
    }

    pub fn transport(mut self, transport: Transport) -> Sipp {
        self.transport = transport;
        self
    }

    /// Total calls to place (`-m`).
    pub fn calls(mut self, calls: u32) -> Sipp {
        self.calls = calls;
        self
    }

    /// New calls per second (`-r`).
    pub fn rate(mut self, calls_per_second: u32) -> Sipp {
        self.rate = calls_per_second;
        self
    }

    /// Most calls open at once (`-l`).
    pub fn limit(mut self, simultaneous_calls: u32) -> Sipp {
        self.limit = Some(simultaneous_calls);
        self
    }

    /// How long the scenario's bare `<pause/>` elements last (`-d`).
    pub fn pause(mut self, pause: Duration) -> Sipp {
        self.pause = Some(pause);
        self
    }

    /// Use these ports instead of picking free ones at `run`.
    pub fn ports(mut self, ports: SippPorts) -> Sipp {
        self.ports = Some(ports);
        self
    }

    /// Puts a file into SIPp's working folder for the run: scenarios name such files by
    /// relative path, e.g. generated audio for `play_pcap_audio`.
    pub fn working_file(mut self, name: &str, contents: Vec<u8>) -> Sipp {
        self.working_files.push((name.to_string(), contents));
        self
    }

    /// Runs SIPp in the foreground against `service` and returns its exit code and final
    /// counters. The returned `SippRun` prints SIPp's error log and screen if the test then
    /// fails.
    pub fn run(&self, service: &Service) -> SippRun {
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(&self.scenario);
        assert!(
            scenario.is_file(),
            "no SIPp scenario {}",
            scenario.display()
        );
        let run_number = service.sipp_runs.fetch_add(1, Ordering::Relaxed);
        let stem = self.scenario.trim_end_matches(".xml");
        // Another process may take a port between our probe and SIPp's bind; SIPp then stops
        // before placing any call, and the run is repeated on fresh ports (when ours to pick).
        for attempt in 0..BIND_ATTEMPTS {
            let dir = service
                .dir()
                .join(format!("sipp-{run_number}-{stem}-{attempt}"));
            let run = self.attempt(service, &scenario, dir);
            let lost_a_port = fs::read_to_string(run.dir.join("errors.log"))
                .is_ok_and(|errors| errors.contains("Address already in use"));
            if !(lost_a_port && self.ports.is_none() && run.stats == SippStats::default()) {
                return run;
            }
            eprintln!("SIPp lost a port to another process; running again on fresh ports");
        }
        panic!("SIPp could not bind its ports in {BIND_ATTEMPTS} attempts")
    }

    fn attempt(&self, service: &Service, scenario: &Path, dir: PathBuf) -> SippRun {
        fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));

        for (name, contents) in &self.working_files {
            let path = dir.join(name);
            fs::write(&path, contents)
                .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        }

        let SippPorts {
            signalling: signalling_port,
            media: media_port,
        } = self
            .ports
            .unwrap_or_else(|| SippPorts::pick(self.transport));
        let control_port = free_port(false, false);
        let output = File::create(dir.join("output.log")).expect("creating SIPp output log");
        let output_err = output.try_clone().expect("cloning SIPp output log handle");

        let mut command = Command::new("sipp");
        command
            .arg(service.sip_addr().to_string())
            .arg("-sf")
            .arg(scenario)
            .args(["-s", DIALLED_NUMBER])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &signalling_port.to_string()])
            .args(["-mp", &media_port.to_string()])
            .args(["-cp", &control_port.to_string()])
            .args(["-t", self.transport.sipp_flag()])
            .args(["-m", &self.calls.to_string()])
            .args(["-r", &self.rate.to_string()])
            // SIPp's default exceeds the open-file limit and refuses to start in `tn` mode.
            .args(["-max_socket", "512"])
            .args([
                "-timeout",
                &format!("{SIPP_GLOBAL_TIMEOUT_S}s"),
                "-timeout_error",
            ])
            .args(["-recv_timeout", &format!("{SIPP_RECV_TIMEOUT_S}s")])
            .arg("-nostdin")
            // Agents' phones answer the service's OPTIONS probes, as real ones do.
            .arg("-aa")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .arg("-trace_stat")
            .arg("-stf")
            .arg(dir.join("stats.csv"))
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(dir.join("screen.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_err);
        if let Some(limit) = self.limit {
            command.args(["-l", &limit.to_string()]);
        }
        if let Some(pause) = self.pause {
            command.args(["-d", &pause.as_millis().to_string()]);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("sipp not installed: run scripts/test (installs Debian package sip-tester)")
            }
            Err(error) => panic!("starting sipp: {error}"),
        };

        let deadline = Instant::now() + SIPP_WALL_DEADLINE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(25)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sipp ran past {SIPP_WALL_DEADLINE:?}\n{}",
                        sipp_diagnostics(&dir, None)
                    );
                }
                Err(error) => panic!("waiting for sipp: {error}"),
            }
        };
        let exit_code = status.code();
        let stats = match read_stats(&dir.join("stats.csv")) {
            Ok(stats) => stats,
            Err(problem) => panic!(
                "no final SIPp statistics ({problem})\n{}",
                sipp_diagnostics(&dir, exit_code)
            ),
        };
        SippRun {
            exit_code,
            stats,
            dir,
        }
    }
}

/// The outcome of one SIPp run. If the test panics while this is alive (typically on an
/// assertion about it), SIPp's error log and final screen are printed.
#[derive(Debug)]
pub struct SippRun {
    /// SIPp's exit code: 0 all calls succeeded, 1 some failed, 99 no call processed.
    pub exit_code: Option<i32>,
    pub stats: SippStats,
    /// Holds SIPp's logs: errors.log, screen.log, messages.log, stats.csv, output.log.
    pub dir: PathBuf,
}

impl SippRun {
    /// SIPp's exit code, error log and final screen, for assertion messages.
    pub fn diagnostics(&self) -> String {
        sipp_diagnostics(&self.dir, self.exit_code)
    }
}

impl Drop for SippRun {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

fn sipp_diagnostics(dir: &Path, exit_code: Option<i32>) -> String {
    const ERROR_LOG_LIMIT: usize = 12_000;
    let errors = fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    let errors = if errors.len() > ERROR_LOG_LIMIT {
        let mut end = ERROR_LOG_LIMIT;
        while !errors.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}\n[... cut, see errors.log]", &errors[..end])
    } else {
        errors
    };
    let screen = fs::read_to_string(dir.join("screen.log")).unwrap_or_default();
    let output = fs::read_to_string(dir.join("output.log")).unwrap_or_default();
    let output_tail: Vec<&str> = output.lines().rev().take(30).collect();
    let output_tail: String = output_tail
        .iter()
        .rev()
        .map(|line| format!("{line}\n"))
        .collect();
    format!(
        "---- SIPp run in {} (exit code {exit_code:?}) ----\n\
         -- errors.log --\n{errors}\n-- screen.log --\n{screen}\n-- output.log (tail) --\n{output_tail}\
         ---- end of SIPp run (messages.log has every message) ----",
        dir.display()
    )
}

/// Reads the cumulative success and failure counters from the last row of SIPp's `-trace_stat`
/// file (`;`-separated, header row first).
fn read_stats(path: &Path) -> Result<SippStats, String> {
    let text = fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut rows = text.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<&str> = rows
        .next()
        .ok_or("empty statistics file")?
        .split(';')
        .collect();
    let last: Vec<&str> = rows
        .next_back()
        .ok_or("statistics file has no data row")?
        .split(';')
        .collect();
    let counter = |name: &str| -> Result<u64, String> {
        let column = header
            .iter()
            .position(|column| *column == name)
            .ok_or_else(|| format!("no column {name}"))?;
        let value = last
            .get(column)
            .ok_or_else(|| format!("short row for {name}"))?;
        value
            .trim()
            .parse()
            .map_err(|error| format!("{name} = {value:?}: {error}"))
    };
    Ok(SippStats {
        successful: counter("SuccessfulCall(C)")?,
        failed: counter("FailedCall(C)")?,
    })
}

/// A loopback port that is free for UDP right now (and for TCP too when `tcp`, and with
/// `port + 2` free for UDP when `with_plus_two`), and not handed out before by this process.
/// It is released before returning, so another process could in principle take it; the
/// kernel's random choice of ports makes that unlikely.
pub fn free_port(tcp: bool, with_plus_two: bool) -> u16 {
    // Tests run in parallel threads, each starting SIPp with ports from here: a port handed
    // out once (with its `+ 2`) is never handed out again by this process, so two SIPp runs
    // cannot be given the same port between our probe and their bind.
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("binding a UDP probe socket");
        let port = udp.local_addr().expect("probe socket address").port();
        let tcp_free = !tcp || TcpListener::bind(("127.0.0.1", port)).is_ok();
        let plus_two = port.checked_add(2);
        let plus_two_free = !with_plus_two
            || plus_two.is_some_and(|above| {
                !handed_out.contains(&above) && UdpSocket::bind(("127.0.0.1", above)).is_ok()
            });
        if tcp_free && plus_two_free && !handed_out.contains(&port) {
            handed_out.insert(port);
            if let (true, Some(above)) = (with_plus_two, plus_two) {
                handed_out.insert(above);
            }
            return port;
        }
    }
    panic!("found no free loopback port in 100 tries")
}

/// How long SIPp's UAS may take to bind its port.
const UAS_BIND_DEADLINE: Duration = Duration::from_secs(15);

/// SIPp's built-in UAS scenario: answers every INVITE (SDP with PCMU), waits for the BYE.
pub struct SippUas {
    pub port: u16,
    child: Child,
}

impl SippUas {
    /// Over UDP.
    pub fn start() -> SippUas {
        SippUas::start_on(Transport::Udp)
    }

    /// Over UDP, or listening for TCP connections (one per peer, `-t t1`).
    pub fn start_on(transport: Transport) -> SippUas {
        SippUas::start_at(transport, free_port(transport != Transport::Udp, false))
    }

    /// On `port` (a phone coming up where the routing expects it). Like a real phone it
    /// answers OPTIONS probes (`-aa`) rather than taking them for calls.
    pub fn start_at(transport: Transport, port: u16) -> SippUas {
        let tcp = transport != Transport::Udp;
        let media = free_port(false, true);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("agents-uas-{port}"));
        fs::create_dir_all(&dir).unwrap();
        let child = Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mp", &media.to_string()])
            .args([
                "-t",
                transport.sipp_flag(),
                "-max_socket",
                "512",
                "-nostdin",
                "-aa",
            ])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting the SIPp UAS: {error}"));
        // SIPp binds its port at start-up, before answering anything; it is ready when the
        // kernel lists the port as bound (looked up without binding it, so no race). A TCP
        // listener shows state 0A (LISTEN).
        let (table, bound) = if tcp {
            (
                "/proc/net/tcp",
                format!("0100007F:{port:04X} 00000000:0000 0A"),
            )
        } else {
            ("/proc/net/udp", format!("0100007F:{port:04X} "))
        };
        let deadline = Instant::now() + UAS_BIND_DEADLINE;
        while !fs::read_to_string(table)
            .unwrap_or_default()
            .contains(&bound)
        {
            assert!(Instant::now() < deadline, "the SIPp UAS never bound {port}");
            thread::sleep(Duration::from_millis(20));
        }
        SippUas { port, child }
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `name=value` field of a log line (span or event), quotes trimmed.
pub fn log_field(line: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    let start = line
        .match_indices(&key)
        .find(|(at, _)| *at == 0 || !line.as_bytes()[at - 1].is_ascii_alphanumeric())?
        .0
        + key.len();
    let value: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '}')
        .collect();
    Some(value.trim_matches('"').to_string())
}

/// Waits until the service has logged `count` lines containing `text`. The harness shows the
/// predicate each line once, in order, while it holds the log's lock (so no `log_lines` here).
pub fn wait_for_count(service: &Service, text: &str, count: usize, timeout: Duration) -> bool {
    let seen = std::cell::Cell::new(0);
    service
        .wait_for_log_line(
            |line| {
                if line.contains(text) {
                    seen.set(seen.get() + 1);
                }
                seen.get() >= count
            },
            timeout,
        )
        .is_some()
}

/// One HTTP/1.0 GET (the service closes the connection after the answer, no chunking), with
/// `Authorization: Bearer` when `token` is given; returns the status and the body.
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|error| panic!("connecting to the HTTP API at {addr}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("setting the HTTP read timeout");
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{authorization}\r\n"
    )
    .unwrap_or_else(|error| panic!("sending GET {path}: {error}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|error| panic!("reading the answer to GET {path}: {error}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in the answer to GET {path}: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}
