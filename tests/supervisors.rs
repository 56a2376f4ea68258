//! Honest commands and failures, as a supervisor meets them: `hotline reload` reports what the
//! running service answered; a service that could store no call record refuses to start; one
//! whose record store becomes unwritable says so on `/health`, keeps the records and writes
//! them once it can (none lost); statistics while the database is away answer 503; and no
//! command or log ever shows the database password.
//!
//! "Unwritable var/" is made by putting a regular file where the `var/` folder should be (and
//! moving the folder back): unlike a read-only mode it also stops root, which the tests may be.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, log_field, Service, Sipp};

const PASSWORD: &str = "Pw-s3cret-42";
const DEADLINE: Duration = Duration::from_secs(30);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/routing").join(name)
}

/// A fresh folder for one test under the target's temporary folder.
fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("supervisors")
        .join(format!("{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PostgreSQL URL with a password, on a loopback port nobody listens on.
fn unreachable_postgres() -> String {
    let port = free_port(true, false);
    format!("postgres://hotline:{PASSWORD}@127.0.0.1:{port}/cdr")
}

/// Runs `hotline ARGS` from the crate folder with no `HOTLINE__*` settings but `env`; a
/// command still running after `DEADLINE` is killed (and then fails the test's checks).
fn hotline(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
    command
        .args(args)
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HOTLINE__") {
            command.env_remove(&key);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("starting hotline");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("waiting for hotline").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("reading hotline's output")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The hash `hotline check` reports for a file that passes.
fn checked_hash(path: &Path) -> String {
    let output = hotline(&["check", path.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    stdout
        .split("(hash ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no hash in {stdout:?}"))
        .to_owned()
}

fn http_addr(service: &Service) -> SocketAddr {
    let line = service
        .wait_for_log_line(
            |line| line.contains("HTTP API and dashboard listening"),
            Duration::from_secs(5),
        )
        .expect("the service logs its HTTP address");
    log_field(&line, "http_addr")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no http_addr in {line:?}"))
}

/// One HTTP/1.0 GET; the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// A sample of `/metrics` without labels.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {DEADLINE:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Puts a file where the folder `var` is (`true`), or the folder back (`false`).
fn block_folder(var: &Path, blocked: bool) {
    let away = var.with_extension("away");
    if blocked {
        fs::rename(var, &away).unwrap();
        fs::write(var, "not a folder\n").unwrap();
    } else {
        fs::remove_file(var).unwrap();
        fs::rename(&away, var).unwrap();
    }
}

#[test]
fn reload_prints_the_new_hash_or_every_problem_and_fails_when_nobody_answers() {
    let dir = work_dir("reload");
    let routing = dir.join("routing.toml");
    fs::copy(fixture("reload_a.toml"), &routing).unwrap();
    let service = Service::start(&[("HOTLINE__ROUTING", routing.to_str().unwrap())]);
    let pid_file = service.dir().join("hotline.pid");
    let env = [("HOTLINE__PID_FILE", pid_file.to_str().unwrap())];

    fs::copy(fixture("reload_b.toml"), &routing).unwrap();
    let hash_b = checked_hash(&routing);
    let output = hotline(&["reload"], &env);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!("routing reloaded: version {hash_b} is active for new calls\n")
    );

    fs::copy(fixture("broken_reload.toml"), &routing).unwrap();
    let output = hotline(&["reload"], &env);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!(
            "{}:9: hotline.digit_timout: unknown key (expected one of: languages, \
          default_language, timezone, digit_timeout, inter_digit_timeout, max_attempts, \
          language_no_input, menu_no_input, operator_key, fallback, start, music, \
          remember_language, change_language_key, announce_every)",
            routing.display()
        )],
        "every problem the service found, as `hotline check` prints them"
    );
    assert!(
        stderr.contains(
            "the service refused the routing file (1 problem(s)); the running version stays"
        ),
        "{stderr}"
    );
    drop(service);

    // Nobody listening: no address file, and nothing on http.listen.
    let nobody = work_dir("reload-nobody");
    let port = free_port(true, false);
    let listen = format!("127.0.0.1:{port}");
    let pid_file = nobody.join("hotline.pid");
    let output = hotline(
        &["reload"],
        &[
            ("HOTLINE__PID_FILE", pid_file.to_str().unwrap()),
            ("HOTLINE__HTTP__LISTEN", &listen),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the running service's HTTP API at {listen}"
        )),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_start_when_var_is_unwritable() {
    let dir = work_dir("unwritable-start");
    let var = dir.join("var");
    fs::write(&var, "not a folder\n").unwrap();
    let database = format!("sqlite://{}", var.join("hotline.db").display());
    let output = hotline(
        &["serve"],
        &[
            ("HOTLINE__SIP__LISTEN", "127.0.0.1:0"),
            ("HOTLINE__HTTP__LISTEN", "127.0.0.1:0"),
            ("HOTLINE__DATABASE__URL", &database),
            (
                "HOTLINE__DATABASE__SPOOL",
                var.join("cdr-spool.jsonl").to_str().unwrap(),
            ),
            (
                "HOTLINE__PID_FILE",
                var.join("hotline.pid").to_str().unwrap(),
            ),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("hotline listening"), "{stdout}");
    assert!(
        stderr.contains("call records cannot be stored: the database fails")
            && stderr.contains("and the spool cannot be written")
            && stderr.contains(&database),
        "{stderr}"
    );
}

#[test]
fn records_wait_in_memory_while_var_is_unwritable_and_none_is_lost() {
    let dir = work_dir("unwritable-running");
    let var = dir.join("var");
    let spool = var.join("cdr-spool.jsonl");
    let service = Service::start(&[
        // The database is away all along: records go to the spool in var/.
        ("HOTLINE__DATABASE__URL", &unreachable_postgres()),
        ("HOTLINE__DATABASE__SPOOL", spool.to_str().unwrap()),
    ]);
    let addr = http_addr(&service);
    assert_eq!(get(addr, "/health"), (200, "ok".to_owned()));

    // While the database is away the figures are unavailable, not an internal error.
    let (status, body) = get(addr, "/api/stats");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the call-record database is unavailable"),
        "{body}"
    );

    block_folder(&var, true);
    let run = Sipp::new("uac_basic.xml").run(&service);
    assert_eq!(run.exit_code, Some(0), "{}", run.diagnostics());
    wait_until("/health answers 503 once a record cannot be stored", || {
        get(addr, "/health").0 == 503
    });
    let (_, reason) = get(addr, "/health");
    assert!(reason.contains("call records cannot be stored"), "{reason}");
    assert!(reason.contains("cdr-spool.jsonl"), "{reason}");
    wait_until("both entries of the call held", || {
        metric(addr, "hotline_cdr_held_records") == 2
    });

    block_folder(&var, false);
    wait_until("/health ok again", || get(addr, "/health").0 == 200);
    wait_until("both entries spooled", || {
        fs::read_to_string(&spool).is_ok_and(|text| text.lines().count() == 2)
    });
    let spooled = fs::read_to_string(&spool).unwrap();
    let kinds: Vec<&str> = spooled
        .lines()
        .filter_map(|line| line.split("\"type\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(kinds, ["started", "ended"], "{spooled}");
    assert_eq!(metric(addr, "hotline_cdr_held_records"), 0);
    assert_eq!(metric(addr, "hotline_cdr_lost_records_total"), 0);
    let logged = service.log_lines().join("\n");
    assert!(
        !logged.contains(PASSWORD),
        "the service logged the password"
    );
    assert!(
        logged.contains("hotline:***@127.0.0.1"),
        "the URL is logged masked"
    );
}

#[test]
fn no_command_prints_the_database_password() {
    let dir = work_dir("password");
    let url = unreachable_postgres();
    let var = dir.join("var");
    fs::write(&var, "not a folder\n").unwrap();
    let spool = var.join("cdr-spool.jsonl");
    let pid_file = dir.join("hotline.pid");
    let env = [
        ("HOTLINE__DATABASE__URL", url.as_str()),
        ("HOTLINE__DATABASE__SPOOL", spool.to_str().unwrap()),
        ("HOTLINE__PID_FILE", pid_file.to_str().unwrap()),
        ("HOTLINE__SIP__LISTEN", "127.0.0.1:0"),
        ("HOTLINE__HTTP__LISTEN", "127.0.0.1:0"),
    ];
    let commands: &[&[&str]] = &[
        &["stats"],
        &["stats", "--allow-empty", "--by", "enterprise"],
        &["stats", "--from", "2026-03-02", "--to", "2026-03-01"],
        &["serve"],
        &["reload"],
        &["check"],
        &["simulate", "--lang", "en", "2"],
    ];
    let masked = url.replace(PASSWORD, "***");
    for args in commands {
        let output = hotline(args, &env);
        let (stdout, stderr) = text(&output);
        assert!(
            !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
            "hotline {args:?} printed the password:\n{stdout}{stderr}"
        );
        if args[0] == "stats" && args.len() < 5 || args[0] == "serve" {
            assert_eq!(output.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
            assert!(stderr.contains(&masked), "{args:?} names the URL: {stderr}");
        }
    }
}

#[test]
fn reload_rollback_returns_to_the_version_applied_before() {
    let dir = work_dir("rollback");
    let routing = dir.join("routing.toml");
    fs::copy(fixture("reload_a.toml"), &routing).unwrap();
    let hash_a = checked_hash(&routing);
    let service = Service::start(&[("HOTLINE__ROUTING", routing.to_str().unwrap())]);
    let pid_file = service.dir().join("hotline.pid");
    let env = [
        ("HOTLINE__PID_FILE", pid_file.to_str().unwrap()),
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
    ];
    let output = hotline(&["reload", "--rollback"], &env);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "only one version yet: {stdout}"
    );
    assert!(
        stderr.contains("no earlier applied routing version"),
        "{stderr}"
    );

    fs::copy(fixture("reload_b.toml"), &routing).unwrap();
    let hash_b = checked_hash(&routing);
    let output = hotline(&["reload"], &env);
    assert!(output.status.success(), "{:?}", text(&output));

    let output = hotline(&["reload", "--rollback"], &env);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("restored version {hash_a}"))
            && stdout.contains(&format!("routing reloaded: version {hash_a} is active")),
        "{stdout}"
    );
    assert_eq!(
        checked_hash(&routing),
        hash_a,
        "the file holds version A again"
    );
    let kept = dir.join("routing.toml.before-rollback");
    assert_eq!(checked_hash(&kept), hash_b, "the replaced file is kept");
    let history: Vec<String> = fs::read_dir(service.dir().join("routing-history"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(history.len(), 3, "A, B, A again: {history:?}");
}
