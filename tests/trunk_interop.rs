//! The service's carrier trunk against a real Kamailio playing the carrier
//! (tests/common/kamailio.rs, tests/fixtures/kamailio/carrier.cfg), with SIPp stand-ins for a
//! resident (127.0.0.8), a stranger (127.0.0.7) and the PSTN behind the carrier (127.0.0.6);
//! the hotline listens on 127.0.0.1, the carrier on 127.0.0.5.
//!
//! One service and one carrier for the whole story, in order:
//! 1. the service starts while the carrier is down, counts a failed registration, and registers
//!    on its own once the carrier is up (first retry 15–30 s after the failure);
//! 2. a resident calls the DID through the carrier from a national number: answered (echo
//!    flow), hung up through the carrier; the record has the caller in E.164 and the trunk;
//! 3. a number the trunk does not deliver gets 404 through the carrier;
//! 4. an INVITE straight from an untrusted address gets 403;
//! 5. `hotline call --trunk` calls the PSTN through the carrier (407 answered): answered;
//! 6. a second trunk with a wrong password (same carrier and account) is down, refused, and
//!    sent only a few REGISTERs. Checked last: its own retry after the outage comes up to 30 s
//!    after the failure, like the good trunk's.

mod common;

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use common::kamailio::{
    free_udp_port, wait_until_udp_bound, Carrier, SippAt, SippOutcome, TRUNK_USER,
};
use common::{http_get, Service};
use serde_json::Value;

const CARRIER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const PSTN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const STRANGER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
const RESIDENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 8);
const PASSWORD: &str = "trunk-s3cret";
const WRONG_PASSWORD: &str = "not-the-password";
/// The hotline's DID, as residents dial it, and one the trunk does not deliver.
const DID: &str = "19118";
const UNKNOWN_DID: &str = "19999";
/// The resident's number as the carrier presents it (national form), and in E.164.
const CALLER_NATIONAL: &str = "868712345";
const CALLER_E164: &str = "+37068712345";
/// What the hotline dials out (carrier_pstn_uas.xml checks it arrives unchanged).
const PSTN_NUMBER: &str = "0037061234567";
/// A prompt of prompts/lt played to the PSTN party.
const PROMPT: &str = "welcome";

/// The service's first REGISTER goes unanswered for 64·T1 = 3.2 s (t1 = 50 ms).
const FIRST_FAILURE_DEADLINE: Duration = Duration::from_secs(10);
/// After a failed attempt the next comes 15–30 s later; then the exchange and the 1 s
/// snapshot of /metrics.
const REGISTERED_DEADLINE: Duration = Duration::from_secs(40);
/// A call's record is written once the call ends.
const RECORD_DEADLINE: Duration = Duration::from_secs(10);
const LOG_DEADLINE: Duration = Duration::from_secs(5);
const BIND_DEADLINE: Duration = Duration::from_secs(5);
/// `hotline call`: ringing, the prompt (about 6 s), hang-up.
const CALL_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// "Does not hammer the carrier": REGISTERs the wrong trunk may have had answered.
const WRONG_TRUNK_MAX_ANSWERS: u64 = 4;

fn settings(carrier: SocketAddr) -> String {
    format!(
        r#"
routing = "builtin:echo"

[sip]
t1 = "50ms"
trusted = ["127.0.0.1/32"]

[trunks.carrier]
host = "{carrier}"
register = true
username = "{TRUNK_USER}"
password = "{PASSWORD}"
numbers = ["{DID}"]

[trunks.wrong]
host = "{carrier}"
register = true
username = "{TRUNK_USER}"
password = "{WRONG_PASSWORD}"
numbers = ["852000000"]
"#
    )
}

/// `/metrics` as text.
fn fetch_metrics(service: &Service) -> String {
    let (status, body) = http_get(service.http_addr(), "/metrics", None);
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// The value of the sample `name{labels}` (labels as written, e.g. `trunk="carrier"`).
fn sample(metrics: &str, name: &str, labels: &str) -> Option<u64> {
    let key = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&key))
        .and_then(|value| value.trim().parse().ok())
}

fn trunk_up(metrics: &str, trunk: &str) -> Option<u64> {
    sample(metrics, "hotline_trunk_up", &format!("trunk=\"{trunk}\""))
}

/// `None` until the service has published its first snapshot with the trunks.
fn registrations(metrics: &str, trunk: &str, result: &str) -> Option<u64> {
    sample(
        metrics,
        "hotline_trunk_registrations_total",
        &format!("trunk=\"{trunk}\",result=\"{result}\""),
    )
}

/// The trunk lines of `/metrics` and `/api/live`'s trunks, for failure messages.
fn trunk_report(service: &Service) -> String {
    let metrics = fetch_metrics(service);
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("hotline_trunk"))
        .collect();
    format!(
        "-- /metrics (trunks) --\n{}\n-- /api/live trunks --\n{}",
        lines.join("\n"),
        live_trunks(service)
    )
}

/// `/api/live`'s `trunks` array.
fn live_trunks(service: &Service) -> Value {
    let (status, body) = http_get(service.http_addr(), "/api/live", None);
    assert_eq!(status, 200, "GET /api/live: {body}");
    let live: Value =
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("/api/live: {error}: {body}"));
    live["trunks"].clone()
}

/// One trunk's entry of `/api/live`.
fn live_trunk(service: &Service, trunk: &str) -> Value {
    let trunks = live_trunks(service);
    trunks
        .as_array()
        .and_then(|all| all.iter().find(|entry| entry["trunk"] == trunk))
        .cloned()
        .unwrap_or_else(|| panic!("no trunk {trunk} in /api/live: {trunks}"))
}

/// Polls `/metrics` until `done` holds; panics naming `what` (with the trunks' state) if it
/// does not within `timeout`. Returns the metrics that satisfied it.
fn wait_for_metrics(
    service: &Service,
    what: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let metrics = fetch_metrics(service);
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{}",
            trunk_report(service)
        );
        thread::sleep(POLL);
    }
}

/// The Call-ID of the first message in a SIPp message log.
fn call_id(outcome: &SippOutcome) -> String {
    outcome
        .messages()
        .lines()
        .find_map(|line| line.trim().strip_prefix("Call-ID:"))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no Call-ID in the messages of sipp {}", outcome.name))
}

/// The stored record of `call_id` from `GET /api/calls`, waiting until it is written.
fn record_of(service: &Service, call_id: &str) -> Value {
    let now = chrono::Utc::now();
    let since =
        (now - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let until =
        (now + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!("/api/calls?from={since}&to={until}&limit=100");
    let deadline = Instant::now() + RECORD_DEADLINE;
    loop {
        let (status, body) = http_get(service.http_addr(), &path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        let listing: Value =
            serde_json::from_str(&body).unwrap_or_else(|error| panic!("{path}: {error}: {body}"));
        let found = listing["calls"]
            .as_array()
            .and_then(|calls| calls.iter().find(|call| call["call_id"] == call_id))
            .cloned();
        if let Some(record) = found {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "no record of call {call_id} in GET {path} within {RECORD_DEADLINE:?}: {body}"
        );
        thread::sleep(POLL);
    }
}

/// Runs `command` with its output in `dir/NAME.{stdout,stderr}`, killed past `timeout`.
fn run_with_deadline(
    mut command: Command,
    dir: &std::path::Path,
    name: &str,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let stdout_path = dir.join(format!("{name}.stdout"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    let mut child = command
        .stdout(File::create(&stdout_path).expect("creating the stdout file"))
        .stderr(File::create(&stderr_path).expect("creating the stderr file"))
        .spawn()
        .unwrap_or_else(|error| panic!("starting {name}: {error}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} ran past {timeout:?}; output so far:\n{}\n{}",
                    fs::read_to_string(&stdout_path).unwrap_or_default(),
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            Err(error) => panic!("waiting for {name}: {error}"),
        }
    };
    (
        status,
        fs::read_to_string(&stdout_path).unwrap_or_default(),
        fs::read_to_string(&stderr_path).unwrap_or_default(),
    )
}

fn udp_addr(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), free_udp_port(IpAddr::V4(ip), false))
}

/// A UDP address on `ip` that is free now, below Linux's ephemeral range (32768+) and above
/// the services' RTP ranges (20000..32600): it stays unbound for half a minute before Kamailio
/// or SIPp takes it, and no other test's `port 0` socket can be handed it meanwhile.
fn reserved_udp_addr(ip: Ipv4Addr) -> SocketAddr {
    const FIRST: u16 = 12_000;
    const COUNT: u16 = 8_000;
    let start = u16::try_from(std::process::id() % u32::from(COUNT)).unwrap_or(0);
    (0..COUNT)
        .map(|step| SocketAddr::new(IpAddr::V4(ip), FIRST + (start + step) % COUNT))
        .find(|addr| std::net::UdpSocket::bind(addr).is_ok())
        .unwrap_or_else(|| panic!("no free UDP port on {ip} in {FIRST}..{}", FIRST + COUNT))
}

#[test]
fn trunk_registers_takes_and_places_calls_through_a_real_carrier() {
    let test_started = Instant::now();
    // The carrier's address is fixed before the service starts; Kamailio comes later.
    let carrier_addr = reserved_udp_addr(CARRIER_IP);
    let pstn = reserved_udp_addr(PSTN_IP);
    let service = Service::start_with_config(&settings(carrier_addr), &[]);
    let dir = service.dir().to_path_buf();

    // 1. Carrier down: the first REGISTER goes unanswered and counts as failed.
    let metrics = wait_for_metrics(
        &service,
        "a failed registration of trunk carrier while the carrier is down",
        FIRST_FAILURE_DEADLINE,
        |metrics| registrations(metrics, "carrier", "failed").is_some_and(|failed| failed >= 1),
    );
    assert_eq!(
        trunk_up(&metrics, "carrier"),
        Some(0),
        "trunk carrier up while the carrier is down\n{}",
        trunk_report(&service)
    );
    let retrying = live_trunk(&service, "carrier");
    eprintln!(
        "failed registration counted {:.1} s after start; /api/live: {retrying}",
        test_started.elapsed().as_secs_f64()
    );

    let carrier = Carrier::start(carrier_addr, PASSWORD, pstn)
        .unwrap_or_else(|error| panic!("starting the carrier on {carrier_addr}: {error:#}"));
    let carrier_started = Instant::now();
    let contact = carrier
        .wait_for_registration(true, REGISTERED_DEADLINE)
        .unwrap_or_else(|error| {
            panic!(
                "the hotline did not register at the carrier: {error:#}\n{}\n---- carrier log ----\n{}",
                trunk_report(&service),
                carrier.log()
            )
        })
        .unwrap_or_default();
    let registered_after = carrier_started.elapsed();
    assert!(
        contact.contains(&format!("@{}", service.sip_addr())),
        "the carrier holds contact {contact:?}, not the hotline's SIP address {}",
        service.sip_addr()
    );
    wait_for_metrics(
        &service,
        "hotline_trunk_up{trunk=\"carrier\"} 1 once the carrier has the registration",
        Duration::from_secs(5),
        |metrics| trunk_up(metrics, "carrier") == Some(1),
    );
    let up_after = carrier_started.elapsed();
    let carrier_live = live_trunk(&service, "carrier");
    assert_eq!(carrier_live["state"], "registered", "{carrier_live}");
    assert_eq!(carrier_live["up"], true, "{carrier_live}");
    eprintln!(
        "registered {:.1} s after the carrier started (contact {contact}); \
         hotline_trunk_up 1 after {:.1} s",
        registered_after.as_secs_f64(),
        up_after.as_secs_f64()
    );

    // 2. A resident calls the DID through the carrier, from a national number.
    let calls_before = sample(
        &fetch_metrics(&service),
        "hotline_trunk_calls_total",
        "trunk=\"carrier\"",
    )
    .unwrap_or_default();
    let resident = SippAt::new(
        &dir,
        "resident-call",
        "trunk_resident_call.xml",
        RESIDENT_IP,
        udp_addr(RESIDENT_IP).port(),
    )
    .to(carrier.addr(), DID)
    .run();
    resident.assert_succeeded(&carrier);
    let call = call_id(&resident);
    let record = record_of(&service, &call);
    assert_eq!(
        record["caller"], CALLER_E164,
        "caller of the resident's call ({CALLER_NATIONAL} via the carrier): {record}"
    );
    assert_eq!(
        record["trunk"], "carrier",
        "trunk of the resident's call: {record}"
    );
    let log = carrier.log();
    assert!(
        log.lines()
            .any(|line| line.contains("carrier: in-dialog BYE from")
                && line.contains(&RESIDENT_IP.to_string())),
        "the resident's BYE did not go through the carrier:\n{log}"
    );
    wait_for_metrics(
        &service,
        "hotline_trunk_calls_total{trunk=\"carrier\"} counting the resident's call",
        Duration::from_secs(5),
        |metrics| {
            sample(metrics, "hotline_trunk_calls_total", "trunk=\"carrier\"")
                .is_some_and(|total| total > calls_before)
        },
    );

    // 3. A number the trunk does not deliver: 404 from the hotline, through the carrier.
    SippAt::new(
        &dir,
        "resident-unknown-did",
        "trunk_resident_not_found.xml",
        RESIDENT_IP,
        udp_addr(RESIDENT_IP).port(),
    )
    .to(carrier.addr(), UNKNOWN_DID)
    .run()
    .assert_succeeded(&carrier);
    assert!(
        service
            .wait_for_log_line(
                |line| line.contains("the trunk does not deliver the dialled number"),
                LOG_DEADLINE
            )
            .is_some(),
        "the 404 for {UNKNOWN_DID} did not come from the hotline"
    );

    // 4. Straight from an address that is neither trusted nor a trunk: 403.
    SippAt::new(
        &dir,
        "stranger",
        "trunk_resident_forbidden.xml",
        STRANGER_IP,
        udp_addr(STRANGER_IP).port(),
    )
    .to(service.sip_addr(), DID)
    .run()
    .assert_succeeded(&carrier);

    // 5. Outbound through the carrier (407 challenge) to the PSTN stand-in.
    let pstn_uas = SippAt::new(&dir, "pstn", "carrier_pstn_uas.xml", PSTN_IP, pstn.port()).spawn();
    wait_until_udp_bound(pstn, BIND_DEADLINE).unwrap();
    let mut call = service.cli();
    call.args(["call", "--trunk", "carrier", PSTN_NUMBER])
        .args(["--prompt", PROMPT, "--language", "lt"]);
    let call_started = Instant::now();
    let (status, stdout, stderr) = run_with_deadline(call, &dir, "hotline-call", CALL_DEADLINE);
    let call_took = call_started.elapsed();
    assert!(
        status.success() && stdout.contains("answered after"),
        "hotline call --trunk carrier {PSTN_NUMBER}: {status}\nstdout: {stdout}\nstderr: {stderr}\n---- carrier log ----\n{}",
        carrier.log()
    );
    pstn_uas.finish().assert_succeeded(&carrier);
    let log = carrier.log();
    assert!(
        log.contains(&format!("INVITE sip:{PSTN_NUMBER}@"))
            && log.contains("not authenticated")
            && log.contains("relayed to PSTN"),
        "the carrier did not challenge and then relay the hotline's call:\n{log}"
    );
    eprintln!(
        "hotline call took {:.1} s: {}",
        call_took.as_secs_f64(),
        stdout.trim()
    );

    // 6. The trunk with the wrong password: refused, down, and the carrier is left alone.
    let metrics = wait_for_metrics(
        &service,
        "a refused registration of trunk wrong",
        REGISTERED_DEADLINE.saturating_sub(carrier_started.elapsed()),
        |metrics| registrations(metrics, "wrong", "refused").is_some_and(|refused| refused >= 1),
    );
    let count = |result| registrations(&metrics, "wrong", result).unwrap_or_default();
    let (ok, challenged, refused, failed) = (
        count("ok"),
        count("challenged"),
        count("refused"),
        count("failed"),
    );
    assert_eq!(
        trunk_up(&metrics, "wrong"),
        Some(0),
        "trunk wrong is up\n{}",
        trunk_report(&service)
    );
    assert_eq!(ok, 0, "trunk wrong registered\n{}", trunk_report(&service));
    assert!(
        refused + challenged <= WRONG_TRUNK_MAX_ANSWERS,
        "trunk wrong hammers the carrier: {challenged} challenged + {refused} refused REGISTERs \
         in {:.0} s\n{}",
        carrier_started.elapsed().as_secs_f64(),
        trunk_report(&service)
    );
    let wrong_live = live_trunk(&service, "wrong");
    assert_eq!(wrong_live["state"], "refused", "{wrong_live}");
    assert!(
        wrong_live["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("credentials refused")),
        "trunk wrong's last_error: {wrong_live}"
    );
    eprintln!(
        "trunk wrong: ok {ok}, challenged {challenged}, refused {refused}, failed {failed}; \
         next retry in {} s",
        wrong_live["next_retry_s"]
    );
    // The good trunk stayed registered throughout.
    assert_eq!(
        trunk_up(&metrics, "carrier"),
        Some(1),
        "{}",
        trunk_report(&service)
    );
    eprintln!(
        "whole story took {:.1} s",
        test_started.elapsed().as_secs_f64()
    );
}
