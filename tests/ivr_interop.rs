//! IVR interoperability: the real `hotline serve` runs a routing file (the shipped one, or a
//! small fixture from `tests/fixtures/routing/` with short prompts and a 1 s digit timeout) and
//! SIPp plays the caller, including the caller's side of a blind transfer: 202 to the REFER,
//! then NOTIFYs with `message/sipfrag` bodies (RFC 3515). Every scenario checks the REFER's
//! Refer-To, Referred-By and Contact itself, so a wrong agent fails the SIPp call; the service's
//! log (its stderr) shows the keys, the transfers and the routing versions it loaded.
//!
//! Timing claims ("the caller heard the closed message") are checked against `hotline simulate`,
//! which walks the same flow offline with the real prompt lengths. `scripts/test` installs SIPp.

mod common;

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use common::{free_port, Service, Sipp, SippPorts, SippRun, SippStats, Transport};

/// How long the service may take to log something the test is waiting for.
const LOG_DEADLINE: Duration = Duration::from_secs(10);
/// Prompts play in real time at a 20 ms frame clock: a flow can end a few frames before the
/// simulated sum of prompt lengths, never much earlier.
const PLAYBACK_TOLERANCE_S: f64 = 0.3;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/routing").join(name)
}

/// A fresh folder for the routing file and pid file of one test (the service's own folder
/// only exists once it has started, too late for its routing file).
fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("ivr-interop")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    dir
}

/// Replaces `path` in one step, so the service's file poll never reads a half-written file.
fn write_atomically(path: &Path, contents: &str) {
    let temporary = path.with_extension("toml.partial");
    fs::write(&temporary, contents).unwrap();
    fs::rename(&temporary, path).unwrap();
}

/// Runs the `hotline` binary from the crate folder with no `HOTLINE__*` settings but `env`.
fn hotline(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
    command.args(args).current_dir(manifest_dir());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HOTLINE__") {
            command.env_remove(&key);
        }
    }
    command.envs(env.iter().copied());
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("starting hotline");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(stdin.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("running hotline")
}

/// `hotline check FILE` must pass; returns the content hash it reports (the service logs the
/// same hash when it loads the file).
fn checked_hash(path: &Path) -> String {
    let output = hotline(&["check", path.to_str().unwrap()], &[], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "hotline check {} failed:\n{stdout}{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let hash = stdout
        .split("(hash ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no hash in {stdout:?}"));
    hash.to_string()
}

/// `hotline simulate` of a call on `routing` now; `keys` empty means a caller who never
/// presses anything (each empty stdin line is one digit timeout running out).
fn simulate(routing: &Path, keys: &[&str]) -> String {
    let mut args = vec!["simulate", "--routing", routing.to_str().unwrap()];
    args.extend_from_slice(keys);
    let output = hotline(&args, &[], &"\n".repeat(20));
    assert!(
        output.status.success(),
        "hotline simulate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The time (seconds into the call) of the first simulation line containing `needle`.
fn simulated_at(simulation: &str, needle: &str) -> f64 {
    let line = simulation
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the simulation:\n{simulation}"));
    line.trim_start()
        .split('s')
        .next()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"))
}

/// Starts the service on `routing`, with its pid file in `dir` (not the shared default).
fn start_service(routing: &Path, dir: &Path) -> Service {
    let pid_file = dir.join("hotline.pid");
    Service::start(&[
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
        ("HOTLINE__PID_FILE", pid_file.to_str().unwrap()),
    ])
}

fn wait_for_log(service: &Service, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    service
        .wait_for_log_line(wanted, LOG_DEADLINE)
        .unwrap_or_else(|| panic!("the service logged no {what} within {LOG_DEADLINE:?}"))
}

fn log_lines_with(service: &Service, needles: &[&str]) -> Vec<String> {
    service
        .log_lines()
        .into_iter()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .collect()
}

/// The timestamp tracing writes at the start of each log line.
fn logged_at(line: &str) -> DateTime<FixedOffset> {
    let stamp = line.split_whitespace().next().unwrap_or_default();
    DateTime::parse_from_rfc3339(stamp)
        .unwrap_or_else(|error| panic!("log line without a timestamp ({error}): {line}"))
}

fn seconds_between(earlier: &str, later: &str) -> f64 {
    (logged_at(later) - logged_at(earlier)).num_milliseconds() as f64 / 1000.0
}

fn assert_one_call_succeeded(run: &SippRun) {
    assert_eq!(
        run.stats,
        SippStats {
            successful: 1,
            failed: 0
        },
        "{}",
        run.diagnostics()
    );
    assert_eq!(run.exit_code, Some(0));
}

/// The service's span field `call_id=...` of a log line.
fn call_id_of(line: &str) -> String {
    line.split("call_id=")
        .nth(1)
        .and_then(|rest| rest.split([' ', '}']).next())
        .unwrap_or_else(|| panic!("no call_id in {line:?}"))
        .to_string()
}

/// The shipped routing.toml with its heating group's `hours` line replaced by
/// `transfer = "refer"`. Without hours the group is open whenever the test runs (the shipped
/// office hours close it on evenings, weekends and Lithuanian holidays); the shipped group
/// uses the default transfer, a bridge through the agent queue, while this test covers the
/// blind transfer. Everything else (four languages, menus, agents) is as shipped.
fn shipped_routing_with_heating_always_open_by_refer() -> String {
    let shipped = fs::read_to_string(manifest_dir().join("routing.toml")).unwrap();
    let mut in_heating = false;
    let mut replaced = 0;
    let mut lines = Vec::new();
    for line in shipped.lines() {
        if line.starts_with('[') {
            in_heating = line.trim() == "[groups.heating]";
        }
        let setting = line.trim_start();
        assert!(
            !(in_heating && setting.starts_with("transfer =")),
            "routing.toml: [groups.heating] now sets `transfer`: revisit this test"
        );
        if in_heating && setting.starts_with("hours =") {
            replaced += 1;
            lines.push("transfer = \"refer\"");
            continue;
        }
        lines.push(line);
    }
    assert_eq!(
        replaced, 1,
        "routing.toml: [groups.heating] has no `hours` line"
    );
    lines.join("\n") + "\n"
}

#[test]
fn shipped_routing_english_caller_pressing_2_2_is_referred_to_heating_2() {
    let dir = work_dir("shipped_heating");
    let routing = dir.join("routing.toml");
    fs::write(
        &routing,
        shipped_routing_with_heating_always_open_by_refer(),
    )
    .unwrap();
    let hash = checked_hash(&routing);
    let service = start_service(&routing, &dir);
    wait_for_log(&service, "load of the shipped routing", |line| {
        line.contains("routing active for new calls") && line.contains(&format!("hash={hash}"))
    });

    let run = Sipp::new("ivr_shipped_heating.xml").run(&service);
    assert_one_call_succeeded(&run);

    wait_for_log(&service, "end of the transferred call", |line| {
        line.contains("call ended") && line.contains("outcome=\"transferred\"")
    });
    assert_eq!(
        log_lines_with(&service, &["DTMF", "digit=2", "source=sip-info"]).len(),
        2,
        "both keys reached the flow"
    );
    let referred = log_lines_with(&service, &["transferring by REFER"]);
    assert_eq!(referred.len(), 1, "one REFER: {referred:#?}");
    assert!(referred[0].contains("target=sip:heating-2@127.0.0.1:5312"));
    assert_eq!(
        log_lines_with(
            &service,
            &["transfer succeeded", "target=sip:heating-2@127.0.0.1:5312"]
        )
        .len(),
        1
    );
}

#[test]
fn caller_who_never_presses_a_key_ends_at_the_fallback_agent_after_max_attempts() {
    let dir = work_dir("no_input");
    let routing = fixture("short_en.toml");
    // The dry run of the same file: menu, no key, no_input + menu, no key, then the fallback.
    let simulation = simulate(&routing, &[]);
    assert!(
        simulation.contains(
            "path: main: no key > main: no key > fallback > group operator -> sip:operator-1@127.0.0.1:5499"
        ),
        "{simulation}"
    );
    let expected_refer_s = simulated_at(&simulation, "TRANSFER (REFER) to sip:operator-1");

    let service = start_service(&routing, &dir);
    let run = Sipp::new("ivr_no_input.xml").run(&service);
    assert_one_call_succeeded(&run);

    let incoming = wait_for_log(&service, "incoming call", |line| {
        line.contains("incoming call")
    });
    let referred = wait_for_log(&service, "REFER", |line| {
        line.contains("transferring by REFER")
    });
    assert!(
        referred.contains("target=sip:operator-1@127.0.0.1:5499"),
        "{referred}"
    );
    assert!(log_lines_with(&service, &["DTMF"]).is_empty());
    // max_attempts = 2: one retry, so the REFER comes after two full menus and two timeouts
    // (a third try would add no_input + menu + 1 s, over 3 s more; none would save as much).
    let elapsed = seconds_between(&incoming, &referred);
    assert!(
        elapsed >= expected_refer_s - PLAYBACK_TOLERANCE_S && elapsed <= expected_refer_s + 2.0,
        "REFER {elapsed:.2} s after the call came in; the simulation says {expected_refer_s:.1} s"
    );
}

/// closed_template.toml with yesterday, today and tomorrow (in Vilnius) as closed dates: closed
/// now even if the test runs across midnight.
fn routing_closed_today() -> String {
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Vilnius)
        .date_naive();
    let days = [today.pred_opt().unwrap(), today, today.succ_opt().unwrap()];
    let dates: Vec<String> = days
        .iter()
        .map(|day| format!("\"{}\"", day.format("%Y-%m-%d")))
        .collect();
    let template = fs::read_to_string(fixture("closed_template.toml")).unwrap();
    assert_eq!(template.matches("closed_dates = []").count(), 1);
    template.replace(
        "closed_dates = []",
        &format!("closed_dates = [{}]", dates.join(", ")),
    )
}

#[test]
fn closed_group_plays_the_closed_message_then_hangs_up_without_refer() {
    let dir = work_dir("closed");
    let routing = dir.join("routing.toml");
    fs::write(&routing, routing_closed_today()).unwrap();
    checked_hash(&routing);
    let simulation = simulate(&routing, &["1"]);
    for expected in ["play [en] closed_prefix", "play [en] hour_08", "HANG UP"] {
        assert!(simulation.contains(expected), "{simulation}");
    }
    assert!(!simulation.contains("TRANSFER"), "{simulation}");
    let closed_message_s =
        simulated_at(&simulation, "HANG UP") - simulated_at(&simulation, "caller presses 1");

    let service = start_service(&routing, &dir);
    // SIPp fails the call on any REFER: it expects the service's BYE.
    let run = Sipp::new("ivr_closed.xml").run(&service);
    assert_one_call_succeeded(&run);

    let key = wait_for_log(&service, "key", |line| line.contains("DTMF"));
    assert!(
        key.contains("digit=1") && key.contains("source=rfc4733"),
        "{key}"
    );
    let hang_up = wait_for_log(&service, "hang-up", |line| {
        line.contains("hanging up") && line.contains("reason=\"flow_ended\"")
    });
    assert!(log_lines_with(&service, &["REFER"]).is_empty());
    let elapsed = seconds_between(&key, &hang_up);
    assert!(
        elapsed >= closed_message_s - PLAYBACK_TOLERANCE_S,
        "the service hung up {elapsed:.2} s after the key; the closed message and goodbye last \
         {closed_message_s:.1} s"
    );
}

/// Both ways a transfer fails (REFER refused, or accepted and then a failure sipfrag) lead to
/// `transfer_failed` and a second REFER, to the fallback group's agent.
fn transfer_failure_goes_to_the_fallback(test: &str, scenario: &str, status: u16) {
    let dir = work_dir(test);
    let service = start_service(&fixture("short_en.toml"), &dir);
    let run = Sipp::new(scenario).run(&service);
    assert_one_call_succeeded(&run);

    wait_for_log(&service, "end of the transferred call", |line| {
        line.contains("call ended") && line.contains("outcome=\"transferred\"")
    });
    let referred = log_lines_with(&service, &["transferring by REFER"]);
    assert_eq!(referred.len(), 2, "{referred:#?}");
    assert!(referred[0].contains("target=sip:desk-1@127.0.0.1:5401"));
    assert!(referred[1].contains("target=sip:operator-1@127.0.0.1:5499"));
    let failed = log_lines_with(&service, &["transfer failed"]);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0].contains("target=sip:desk-1@127.0.0.1:5401")
            && failed[0].contains(&format!("status={status}")),
        "{}",
        failed[0]
    );
}

#[test]
fn refer_declined_with_603_goes_to_the_fallback_agent() {
    transfer_failure_goes_to_the_fallback("refer_declined", "ivr_refer_declined.xml", 603);
}

#[test]
fn notify_486_busy_goes_to_the_fallback_agent() {
    transfer_failure_goes_to_the_fallback("notify_busy", "ivr_notify_busy.xml", 486);
}

/// A SIPp run in the background, for a call that must stay up while the test does other
/// things; killed when dropped.
struct BackgroundSipp {
    child: Child,
    ports: SippPorts,
    dir: PathBuf,
}

impl BackgroundSipp {
    /// Same options as the harness's runs; Call-IDs start with `call_id_prefix`.
    fn start(scenario: &str, service: &Service, call_id_prefix: &str) -> BackgroundSipp {
        let dir = service
            .dir()
            .join(format!("sipp-background-{call_id_prefix}"));
        fs::create_dir_all(&dir).unwrap();
        let ports = SippPorts::pick(Transport::Udp);
        let output = fs::File::create(dir.join("output.log")).unwrap();
        let child = Command::new("sipp")
            .arg(service.sip_addr().to_string())
            .arg("-sf")
            .arg(manifest_dir().join("tests/sipp").join(scenario))
            .args(["-s", "19118", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &ports.signalling.to_string()])
            .args(["-mp", &ports.media.to_string()])
            .args(["-cp", &free_port(false, false).to_string()])
            .args(["-t", "u1", "-m", "1", "-r", "1"])
            .args(["-cid_str", &format!("{call_id_prefix}-%u-%p@%s")])
            .args(["-timeout", "60s", "-timeout_error", "-recv_timeout", "10s"])
            .args(["-nostdin", "-trace_err", "-error_file"])
            .arg(dir.join("errors.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|error| panic!("starting sipp (Debian package sip-tester): {error}"));
        BackgroundSipp { child, ports, dir }
    }

    /// Sends SIPp a bare MESSAGE in the call's dialog: the scenario's cue to go on.
    fn cue(&self, call_id: &str) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        let sipp = format!("127.0.0.1:{}", self.ports.signalling);
        let message = format!(
            "MESSAGE sip:sipp@{sipp} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-test-cue\r\n\
             From: <sip:test@{local}>;tag=test-cue\r\n\
             To: <sip:sipp@{sipp}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 MESSAGE\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        socket.send_to(message.as_bytes(), &sipp).unwrap();
    }

    /// SIPp's exit code once it has finished, within `deadline`.
    fn wait(&mut self, deadline: Duration) -> Option<i32> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < until,
                "background sipp still running after {deadline:?}\n{}",
                self.errors()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn errors(&self) -> String {
        format!(
            "-- {} errors.log --\n{}",
            self.dir.display(),
            fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default()
        )
    }
}

impl Drop for BackgroundSipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", self.errors());
        }
    }
}

#[test]
fn reload_applies_to_new_calls_only_and_a_broken_file_is_refused() {
    let dir = work_dir("reload");
    let routing = dir.join("routing.toml");
    let pid_file = dir.join("hotline.pid");
    let version_a = fs::read_to_string(fixture("reload_a.toml")).unwrap();
    let version_b = fs::read_to_string(fixture("reload_b.toml")).unwrap();
    let broken = fs::read_to_string(fixture("broken_reload.toml")).unwrap();
    write_atomically(&routing, &version_a);
    let hash_a = checked_hash(&routing);
    let service = start_service(&routing, &dir);
    wait_for_log(&service, "load of version A", |line| {
        line.contains("routing active for new calls") && line.contains(&format!("hash={hash_a}"))
    });

    // Call 1 starts on version A and waits in its menu (digit timeout 20 s) for our cue.
    let mut held = BackgroundSipp::start("ivr_reload_held.xml", &service, "held");
    let held_call = wait_for_log(&service, "held call", |line| {
        line.contains("incoming call") && line.contains("call_id=held-")
    });
    let held_call_id = call_id_of(&held_call);

    // Version B, applied by `hotline reload` (the HTTP API found through the pid file's
    // folder), which prints the hash the service made active.
    write_atomically(&routing, &version_b);
    let hash_b = checked_hash(&routing);
    let pid_env = [("HOTLINE__PID_FILE", pid_file.to_str().unwrap())];
    let reload = hotline(&["reload"], &pid_env, "");
    assert!(
        reload.status.success(),
        "hotline reload: {}",
        String::from_utf8_lossy(&reload.stderr)
    );
    assert!(
        String::from_utf8_lossy(&reload.stdout).contains(&hash_b),
        "hotline reload: {}",
        String::from_utf8_lossy(&reload.stdout)
    );
    wait_for_log(&service, "load of version B", |line| {
        line.contains("routing active for new calls") && line.contains(&format!("hash={hash_b}"))
    });

    // Call 2, new: version B's agent.
    let run = Sipp::new("ivr_reload_new.xml").run(&service);
    assert_one_call_succeeded(&run);

    // Call 1 now presses 1 and must still get version A's agent (its scenario checks it).
    held.cue(&held_call_id);
    wait_for_log(&service, "key of the held call", |line| {
        line.contains(&held_call_id) && line.contains("DTMF") && line.contains("digit=1")
    });
    assert_eq!(
        held.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        held.errors()
    );
    let held_refers = log_lines_with(&service, &[&held_call_id, "transferring by REFER"]);
    assert_eq!(held_refers.len(), 1, "{held_refers:#?}");
    assert!(held_refers[0].contains("target=sip:version-a@127.0.0.1:5411"));

    // A broken file, found by the file poll this time: logged, and version B stays.
    write_atomically(&routing, &broken);
    let check = hotline(&["check", routing.to_str().unwrap()], &[], "");
    assert_eq!(check.status.code(), Some(1));
    let problem = String::from_utf8(check.stdout).unwrap();
    let problem = problem.trim_end();
    assert_eq!(
        problem,
        format!(
            "{}:9: hotline.digit_timout: unknown key (expected one of: languages, \
         default_language, timezone, digit_timeout, inter_digit_timeout, max_attempts, \
         language_no_input, menu_no_input, operator_key, fallback, start, music, \
         remember_language, change_language_key, announce_every)",
            routing.display()
        )
    );
    wait_for_log(&service, "refusal of the broken file", |line| {
        line.contains("routing not reloaded: the running version stays")
    });
    assert_eq!(log_lines_with(&service, &["ERROR", problem]).len(), 1);

    // Call 3, new: still version B.
    let run = Sipp::new("ivr_reload_new.xml").run(&service);
    assert_one_call_succeeded(&run);

    let loads = log_lines_with(&service, &["routing active for new calls"]);
    assert!(
        loads
            .iter()
            .all(|line| line.contains(&format!("hash={hash_a}"))
                || line.contains(&format!("hash={hash_b}"))),
        "only versions A and B were ever loaded: {loads:#?}"
    );
    let new_call_refers = log_lines_with(
        &service,
        &[
            "transferring by REFER",
            "target=sip:version-b@127.0.0.1:5412",
        ],
    );
    assert_eq!(new_call_refers.len(), 2, "{new_call_refers:#?}");
}
