//! "The carrier" for the SIP trunk interop tests: a real Kamailio (Debian package `kamailio`)
//! run with `tests/fixtures/kamailio/carrier.cfg` on a loopback address, as a child process of
//! the test. It is the registrar for the trunk account [`TRUNK_USER`], routes calls for any
//! number from anyone else to the registered contact, and relays the trunk's own (407
//! challenged) calls to a "PSTN" address. See the config's header for the details.
//!
//! Also [`SippAt`]: SIPp stand-ins (residents, the "PSTN", a hotline stand-in) on any loopback
//! address, one call each, for the tests around the carrier.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The trunk account (digest user name and address-of-record user) the carrier knows.
pub const TRUNK_USER: &str = "hotline19118";
/// The digest realm of the carrier's 401 and 407 challenges.
pub const TRUNK_REALM: &str = "carrier.test";
/// Registrations asking for less than this get 423 Interval Too Brief (with Min-Expires).
pub const MIN_EXPIRES: u32 = 60;

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kamailio/carrier.cfg"
);
/// How long Kamailio may take until it answers OPTIONS.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// How long Kamailio may take to exit after SIGTERM before it gets SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Starts on a fresh port when another process took the one picked for an address with port 0.
const START_ATTEMPTS: u32 = 3;
/// One probe's wait for the answer; the request is resent after each.
const PROBE_RETRANSMIT: Duration = Duration::from_millis(200);
/// Lines of the carrier's log printed when a test panics.
const LOG_TAIL_LINES: usize = 150;

/// A running Kamailio, stopped when dropped (its log tail is printed if the test panicked).
pub struct Carrier {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    /// Runtime and working folder, and the log; removed on drop.
    _dir: tempfile::TempDir,
}

impl Carrier {
    /// Starts Kamailio listening for UDP on `listen` (port 0: a free port on that address),
    /// with `password` for [`TRUNK_USER`] and outbound calls relayed to `pstn`, and waits
    /// until it answers OPTIONS. The password goes into a config string, so `"`, `\`, `$` and
    /// control characters are refused.
    pub fn start(listen: SocketAddr, password: &str, pstn: SocketAddr) -> Result<Carrier> {
        if password.is_empty()
            || password
                .chars()
                .any(|c| matches!(c, '"' | '\\' | '$') || c.is_control())
        {
            bail!("the carrier's password must be non-empty, without '\"', '\\', '$' or control characters");
        }
        for attempt in 1..=START_ATTEMPTS {
            let addr = match listen.port() {
                0 => SocketAddr::new(listen.ip(), free_udp_port(listen.ip(), false)),
                _ => listen,
            };
            match Carrier::start_once(addr, password, pstn) {
                Ok(carrier) => return Ok(carrier),
                Err(StartError::PortTaken(log))
                    if listen.port() == 0 && attempt < START_ATTEMPTS =>
                {
                    eprintln!(
                        "kamailio lost port {addr} to another process; trying another\n{log}"
                    );
                }
                Err(StartError::PortTaken(log)) => {
                    bail!("kamailio could not bind {addr}:\n{log}")
                }
                Err(StartError::Other(error)) => return Err(error),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn start_once(
        addr: SocketAddr,
        password: &str,
        pstn: SocketAddr,
    ) -> Result<Carrier, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("carrier-kamailio-")
            .tempdir()
            .context("creating the carrier's runtime folder")?;
        let log_path = dir.path().join("kamailio.log");
        let log = File::create(&log_path).context("creating the carrier's log")?;
        let log_err = log
            .try_clone()
            .context("cloning the carrier's log handle")?;
        let mut command = Command::new("kamailio");
        command
            .args(["-f", CONFIG])
            // Foreground, log to stderr.
            .args(["-DD", "-E"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-w")
            .arg(dir.path())
            .args(["-l", &format!("udp:{addr}")])
            .args(["-m", "32", "-M", "8"])
            .args(["-A", &format!("TRUNK_USER=\"{TRUNK_USER}\"")])
            .args(["-A", &format!("TRUNK_REALM=\"{TRUNK_REALM}\"")])
            .args(["-A", &format!("TRUNK_PASSWORD=\"{password}\"")])
            .args(["-A", &format!("PSTN_URI=\"sip:{pstn}\"")])
            .args(["-A", &format!("MIN_EXPIRES={MIN_EXPIRES}")])
            .current_dir(dir.path())
            // Its own process group, so that stopping it reaches its worker processes too.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(StartError::Other(anyhow::anyhow!(
                    "kamailio not installed: run scripts/test (installs Debian package kamailio)"
                )))
            }
            Err(error) => return Err(StartError::Other(error.into())),
        };
        // From here on, Drop stops it.
        let mut carrier = Carrier {
            child,
            addr,
            log_path,
            _dir: dir,
        };
        carrier.wait_until_ready()?;
        Ok(carrier)
    }

    fn wait_until_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                if log.contains("Address already in use") {
                    return Err(StartError::PortTaken(log));
                }
                return Err(StartError::Other(anyhow::anyhow!(
                    "kamailio exited during start-up ({status}):\n{log}"
                )));
            }
            if let Ok(response) = self.options(None, PROBE_RETRANSMIT) {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(StartError::Other(anyhow::anyhow!(
                    "kamailio did not answer OPTIONS on {} within {READY_DEADLINE:?}:\n{}",
                    self.addr,
                    self.log()
                )));
            }
        }
    }

    /// The address the carrier listens on (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything Kamailio logged so far (its script logs lines starting `carrier:` for each
    /// routing decision).
    pub fn log(&self) -> String {
        match fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => format!("(no carrier log at {}: {error})", self.log_path.display()),
        }
    }

    /// The trunk's registered contact URI (`Some("sip:hotline19118@127.0.0.1:5062")`), or
    /// `None` when nothing is registered, asked with an OPTIONS probe.
    pub fn registered_contact(&self) -> Result<Option<String>> {
        let response = self.options(Some(TRUNK_USER), Duration::from_secs(2))?;
        match response.status {
            200 => Ok(Some(
                response
                    .header("X-Carrier-Contact")
                    .context("probe answer without X-Carrier-Contact")?
                    .to_string(),
            )),
            404 => Ok(None),
            other => bail!("registration probe answered {other}:\n{}", response.text),
        }
    }

    /// Waits until the trunk's registration is present (`true`) or absent (`false`) and returns
    /// the contact (`None` when absent); an error if that does not happen within `timeout`.
    pub fn wait_for_registration(
        &self,
        registered: bool,
        timeout: Duration,
    ) -> Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let contact = self.registered_contact()?;
            if contact.is_some() == registered {
                return Ok(contact);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the trunk was {} registered after {timeout:?} (contact {contact:?})",
                    if registered { "still not" } else { "still" }
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends OPTIONS for `user` (or for the carrier itself) and returns the answer, resending
    /// every [`PROBE_RETRANSMIT`] until `timeout`.
    fn options(&self, user: Option<&str>, timeout: Duration) -> Result<Response> {
        static PROBES: AtomicU32 = AtomicU32::new(0);
        let socket = UdpSocket::bind(SocketAddr::new(self.addr.ip(), 0))
            .context("binding the carrier probe socket")?;
        let local = socket.local_addr()?;
        let call_id = format!(
            "carrier-probe-{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let target = match user {
            Some(user) => format!("sip:{user}@{}", self.addr),
            None => format!("sip:{}", self.addr),
        };
        let request = format!(
            "OPTIONS {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{call_id};rport\r\n\
             From: <sip:probe@{local}>;tag={call_id}\r\n\
             To: <{target}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no answer to OPTIONS {target} within {timeout:?}");
            }
            socket.send_to(request.as_bytes(), self.addr)?;
            socket.set_read_timeout(Some(left.min(PROBE_RETRANSMIT)))?;
            let resend_at = Instant::now() + left.min(PROBE_RETRANSMIT);
            while Instant::now() < resend_at {
                let length = match socket.recv(&mut buffer) {
                    Ok(length) => length,
                    Err(error)
                        if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        break
                    }
                    // ICMP port unreachable (nothing listening yet) shows up as an error here:
                    // resend only after the usual interval.
                    Err(_) => {
                        thread::sleep(resend_at.saturating_duration_since(Instant::now()));
                        break;
                    }
                };
                let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                let response = Response::parse(text);
                if let Some(response) = response {
                    if response.header("Call-ID") == Some(call_id.as_str()) {
                        return Ok(response);
                    }
                }
            }
        }
    }
}

enum StartError {
    /// The listening port was taken (the log says so).
    PortTaken(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(error: anyhow::Error) -> StartError {
        StartError::Other(error)
    }
}

/// A SIP response to a probe.
struct Response {
    status: u16,
    text: String,
}

impl Response {
    fn parse(text: String) -> Option<Response> {
        let status = text
            .lines()
            .next()?
            .strip_prefix("SIP/2.0 ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Response { status, text })
    }

    /// The value of the first header `name` (full form, case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .skip(1)
            .take_while(|line| !line.is_empty())
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then_some(value.trim())
            })
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Ok(group) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) on the process group our own unreaped child leads.
            unsafe { libc::kill(-group, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_DEADLINE;
            while !matches!(self.child.try_wait(), Ok(Some(_)) | Err(_))
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(10));
            }
            // Whatever is left of the group (nothing, normally). The group id cannot have been
            // reused while any member lives.
            // SAFETY: as above.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            eprintln!(
                "---- carrier (kamailio) log, last {LOG_TAIL_LINES} lines, udp:{} ----\n{tail}\n---- end of carrier log ----",
                self.addr
            );
        }
    }
}

/// A UDP port on `ip` that is free right now (with `port + 2` free too when `with_plus_two`,
/// as SIPp's `-mp` needs). Released before returning: another process could take it first.
pub fn free_udp_port(ip: IpAddr, with_plus_two: bool) -> u16 {
    for _ in 0..100 {
        let probe = UdpSocket::bind(SocketAddr::new(ip, 0))
            .unwrap_or_else(|error| panic!("binding a UDP probe socket on {ip}: {error}"));
        let port = probe.local_addr().expect("probe socket address").port();
        if !with_plus_two
            || port
                .checked_add(2)
                .is_some_and(|above| UdpSocket::bind(SocketAddr::new(ip, above)).is_ok())
        {
            return port;
        }
    }
    panic!("found no free UDP port on {ip} in 100 tries")
}

/// Waits until some process has bound UDP `addr` (an IPv4 address), e.g. a SIPp UAS started in
/// the background; looked up in /proc/net/udp without binding it.
pub fn wait_until_udp_bound(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let IpAddr::V4(ip) = addr.ip() else {
        bail!("wait_until_udp_bound takes IPv4 addresses, not {addr}");
    };
    // /proc/net/udp shows the address as the in-memory (little-endian) u32, in hex.
    let wanted = format!(
        "{:08X}:{:04X} ",
        u32::from_le_bytes(ip.octets()),
        addr.port()
    );
    let deadline = Instant::now() + timeout;
    while !fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .contains(&wanted)
    {
        if Instant::now() >= deadline {
            bail!("nothing bound udp {addr} within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// SIPp's own limits for one [`SippAt`] call (it fails the call on them); the wall deadline is
/// a backstop.
const SIPP_TIMEOUT: &str = "10s";
const SIPP_WALL_DEADLINE: Duration = Duration::from_secs(20);

/// One SIPp process with one call (`-m 1`) of a scenario from tests/sipp/, bound to any
/// loopback address (the carrier tests give each party its own 127.0.0.x).
pub struct SippAt {
    name: String,
    dir: PathBuf,
    command: Command,
}

impl SippAt {
    /// `name` labels its logs in `dir`; SIPp binds `ip:port` for SIP and a free media port.
    pub fn new(dir: &Path, name: &str, scenario: &str, ip: Ipv4Addr, port: u16) -> SippAt {
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        assert!(scenario.is_file(), "no scenario {}", scenario.display());
        let media = free_udp_port(IpAddr::V4(ip), true);
        let mut command = Command::new("sipp");
        command
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", &ip.to_string(), "-mi", &ip.to_string()])
            .args(["-p", &port.to_string(), "-mp", &media.to_string()])
            .args(["-t", "u1", "-m", "1", "-nostdin"])
            .args(["-timeout", SIPP_TIMEOUT, "-timeout_error"])
            .args(["-recv_timeout", SIPP_TIMEOUT])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join(format!("{name}.errors.log")))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join(format!("{name}.messages.log")))
            .current_dir(dir)
            .stdin(Stdio::null());
        SippAt {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            command,
        }
    }

    /// A UAC calling `service@target` (`[service]` in the scenario).
    pub fn to(mut self, target: SocketAddr, service: &str) -> SippAt {
        self.command.arg(target.to_string()).args(["-s", service]);
        self
    }

    pub fn args(mut self, args: &[&str]) -> SippAt {
        self.command.args(args);
        self
    }

    /// Starts it in the background.
    pub fn spawn(mut self) -> SippRunning {
        let output = File::create(self.dir.join(format!("{}.output.log", self.name)))
            .expect("creating SIPp output log");
        let output_err = output.try_clone().expect("cloning SIPp output log");
        let child = match self.command.stdout(output).stderr(output_err).spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                panic!("sipp not installed: run scripts/test (installs Debian package sip-tester)")
            }
            Err(error) => panic!("starting sipp {}: {error}", self.name),
        };
        SippRunning {
            name: self.name,
            dir: self.dir,
            child,
        }
    }

    /// Runs it in the foreground.
    pub fn run(self) -> SippOutcome {
        self.spawn().finish()
    }
}

/// A [`SippAt`] process running in the background, killed if dropped unfinished.
pub struct SippRunning {
    name: String,
    dir: PathBuf,
    child: Child,
}

impl SippRunning {
    /// Waits for it to exit (panics past a backstop deadline).
    pub fn finish(mut self) -> SippOutcome {
        let deadline = Instant::now() + SIPP_WALL_DEADLINE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => panic!("sipp {} ran past {SIPP_WALL_DEADLINE:?}", self.name),
                Err(error) => panic!("waiting for sipp {}: {error}", self.name),
            }
        };
        SippOutcome {
            name: self.name.clone(),
            dir: self.dir.clone(),
            code: status.code(),
        }
    }
}

impl Drop for SippRunning {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a [`SippAt`] run ended: exit code 0 when its call succeeded, 1 when it failed.
pub struct SippOutcome {
    pub name: String,
    pub dir: PathBuf,
    pub code: Option<i32>,
}

impl SippOutcome {
    /// Every message SIPp sent and received (`-trace_msg`).
    pub fn messages(&self) -> String {
        fs::read_to_string(self.dir.join(format!("{}.messages.log", self.name))).unwrap_or_default()
    }

    /// SIPp's logs and the carrier's log, for assertion messages.
    pub fn report(&self, carrier: &Carrier) -> String {
        let read = |kind: &str| {
            fs::read_to_string(self.dir.join(format!("{}.{kind}.log", self.name)))
                .unwrap_or_default()
        };
        format!(
            "---- sipp {} exit code {:?} (logs in {}) ----\n-- errors --\n{}\n-- output --\n{}\n-- messages --\n{}\n---- carrier log ----\n{}",
            self.name,
            self.code,
            self.dir.display(),
            read("errors"),
            read("output"),
            read("messages"),
            carrier.log()
        )
    }

    #[track_caller]
    pub fn assert_succeeded(&self, carrier: &Carrier) {
        assert_eq!(self.code, Some(0), "{}", self.report(carrier));
    }
}
