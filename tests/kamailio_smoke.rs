//! Smoke test of "the carrier" the SIP trunk tests run against (tests/common/kamailio.rs, a real
//! Kamailio with tests/fixtures/kamailio/carrier.cfg), driven only by SIPp stand-ins: SIPp
//! registers as the hotline's trunk (127.0.0.1) and answers the calls the carrier routes to it,
//! a resident (127.0.0.8) calls the DID, and the "PSTN" (127.0.0.6) takes the trunk's own
//! outbound call.

#[allow(dead_code)]
#[path = "common/kamailio.rs"]
mod kamailio;

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kamailio::{free_udp_port, wait_until_udp_bound, Carrier, MIN_EXPIRES, TRUNK_USER};

const CARRIER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const PSTN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const HOTLINE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const RESIDENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 8);
const PASSWORD: &str = "trunk-s3cret";
/// The hotline's DID, as residents dial it.
const DID: &str = "19118";
/// What the hotline dials out (carrier_pstn_uas.xml checks it arrives unchanged).
const PSTN_NUMBER: &str = "0037061234567";

/// SIPp's own limits (it fails the call on them); our wall deadline is a backstop.
const SIPP_TIMEOUT: &str = "10s";
const SIPP_WALL_DEADLINE: Duration = Duration::from_secs(20);
const BIND_DEADLINE: Duration = Duration::from_secs(5);
const REGISTRATION_DEADLINE: Duration = Duration::from_secs(3);

/// Where one test keeps its SIPp logs (left for inspection).
fn test_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("kamailio-smoke")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    dir
}

/// One SIPp process with one call (`-m 1`) of a scenario from tests/sipp/.
struct Sipp {
    name: String,
    dir: PathBuf,
    command: Command,
}

impl Sipp {
    /// `name` labels its logs in `dir`; SIPp binds `ip:port` for SIP and a free media port.
    fn new(dir: &Path, name: &str, scenario: &str, ip: Ipv4Addr, port: u16) -> Sipp {
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
        Sipp {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            command,
        }
    }

    /// A UAC calling `service@carrier`.
    fn to(mut self, carrier: &Carrier, service: &str) -> Sipp {
        self.command
            .arg(carrier.addr().to_string())
            .args(["-s", service]);
        self
    }

    fn args(mut self, args: &[&str]) -> Sipp {
        self.command.args(args);
        self
    }

    fn spawn(mut self) -> Running {
        let output = File::create(self.dir.join(format!("{}.output.log", self.name)))
            .expect("creating SIPp output log");
        let output_err = output.try_clone().expect("cloning SIPp output log");
        let child = self
            .command
            .stdout(output)
            .stderr(output_err)
            .spawn()
            .unwrap_or_else(|error| panic!("starting sipp (Debian package sip-tester): {error}"));
        Running {
            name: self.name,
            dir: self.dir,
            child,
        }
    }

    /// Runs it in the foreground.
    fn run(self) -> Outcome {
        self.spawn().finish()
    }
}

/// A SIPp process running in the background, killed if dropped unfinished.
struct Running {
    name: String,
    dir: PathBuf,
    child: Child,
}

impl Running {
    fn finish(mut self) -> Outcome {
        let deadline = Instant::now() + SIPP_WALL_DEADLINE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => panic!("sipp {} ran past {SIPP_WALL_DEADLINE:?}", self.name),
                Err(error) => panic!("waiting for sipp {}: {error}", self.name),
            }
        };
        Outcome {
            name: self.name.clone(),
            dir: self.dir.clone(),
            code: status.code(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a SIPp run ended: exit code 0 when its call succeeded, 1 when it failed.
struct Outcome {
    name: String,
    dir: PathBuf,
    code: Option<i32>,
}

impl Outcome {
    fn messages(&self) -> String {
        fs::read_to_string(self.dir.join(format!("{}.messages.log", self.name))).unwrap_or_default()
    }

    fn report(&self, carrier: &Carrier) -> String {
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
    fn assert_succeeded(&self, carrier: &Carrier) {
        assert_eq!(self.code, Some(0), "{}", self.report(carrier));
    }
}

/// The sent-by of the top Via of the first message in a SIPp message log whose first line
/// starts with `first_line`, e.g. `Some("SIP/2.0/UDP 127.0.0.5:5060")`.
fn top_via(messages: &str, first_line: &str) -> Option<String> {
    let mut lines = messages.lines().map(str::trim_end);
    lines.find(|line| line.starts_with(first_line))?;
    let via = lines
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix("Via: "))?;
    Some(via.split(';').next()?.to_string())
}

fn start_carrier(pstn: SocketAddr) -> Carrier {
    Carrier::start(SocketAddr::new(IpAddr::V4(CARRIER_IP), 0), PASSWORD, pstn)
        .unwrap_or_else(|error| panic!("starting the carrier: {error:#}"))
}

/// A REGISTER run as the hotline from `from` (the trunk's signalling address), registering
/// `contact` for `expires` seconds with `password`.
fn register(
    dir: &Path,
    name: &str,
    carrier: &Carrier,
    from: SocketAddr,
    contact: SocketAddr,
    expires: u32,
    password: &str,
) -> Outcome {
    let IpAddr::V4(ip) = from.ip() else {
        unreachable!("the hotline stand-in is IPv4")
    };
    Sipp::new(dir, name, "carrier_register.xml", ip, from.port())
        .to(carrier, TRUNK_USER)
        .args(&["-au", TRUNK_USER, "-ap", password])
        .args(&["-set", "contact", &contact.to_string()])
        .args(&["-set", "expires", &expires.to_string()])
        .run()
}

/// A resident at 127.0.0.8 calling the DID while nothing is registered: 480 from the carrier.
fn assert_unavailable(dir: &Path, name: &str, carrier: &Carrier) {
    let port = free_udp_port(IpAddr::V4(RESIDENT_IP), false);
    Sipp::new(
        dir,
        name,
        "carrier_resident_unavailable.xml",
        RESIDENT_IP,
        port,
    )
    .to(carrier, DID)
    .run()
    .assert_succeeded(carrier);
}

#[test]
fn carrier_registers_the_trunk_and_routes_calls_both_ways() {
    let dir = test_dir("routes_calls_both_ways");
    let pstn = SocketAddr::new(
        IpAddr::V4(PSTN_IP),
        free_udp_port(IpAddr::V4(PSTN_IP), false),
    );
    let carrier = start_carrier(pstn);
    // The hotline stand-in: REGISTERs and calls out from `trunk`, takes calls on `contact`.
    let trunk = SocketAddr::new(
        IpAddr::V4(HOTLINE_IP),
        free_udp_port(IpAddr::V4(HOTLINE_IP), false),
    );
    let contact = SocketAddr::new(
        IpAddr::V4(HOTLINE_IP),
        free_udp_port(IpAddr::V4(HOTLINE_IP), false),
    );

    // Nobody registered: calls to the DID get 480.
    assert_eq!(carrier.registered_contact().unwrap(), None);
    assert_unavailable(&dir, "unavailable-before", &carrier);

    // Wrong password: challenged again, never registered.
    let wrong = register(
        &dir,
        "register-wrong",
        &carrier,
        trunk,
        contact,
        300,
        "not-it",
    );
    let messages = wrong.messages();
    assert_ne!(wrong.code, Some(0), "{}", wrong.report(&carrier));
    // Answered 401 with and without credentials (SIPp may log the last one twice).
    assert!(
        messages.matches("SIP/2.0 401 Unauthorized").count() >= 2
            && messages.contains("Authorization: Digest username=\"hotline19118\""),
        "{}",
        wrong.report(&carrier)
    );
    assert!(
        !messages.contains("SIP/2.0 200"),
        "{}",
        wrong.report(&carrier)
    );
    assert_eq!(carrier.registered_contact().unwrap(), None);

    // (i) Digest registration (qop=auth, checked by the scenario).
    register(&dir, "register", &carrier, trunk, contact, 300, PASSWORD).assert_succeeded(&carrier);
    let registered = carrier
        .wait_for_registration(true, REGISTRATION_DEADLINE)
        .unwrap();
    assert_eq!(
        registered.as_deref(),
        Some(format!("sip:{TRUNK_USER}@{contact}").as_str()),
        "{}",
        carrier.log()
    );

    // (ii) A resident calls the DID: the carrier routes it to the registered contact with
    // the DID as Request-URI user, Record-Routed; ACK and BYE come through the carrier.
    let hotline = Sipp::new(
        &dir,
        "hotline-uas",
        "carrier_hotline_uas.xml",
        HOTLINE_IP,
        contact.port(),
    )
    .spawn();
    wait_until_udp_bound(contact, BIND_DEADLINE).unwrap();
    let resident_port = free_udp_port(IpAddr::V4(RESIDENT_IP), false);
    let resident = Sipp::new(
        &dir,
        "resident",
        "carrier_resident.xml",
        RESIDENT_IP,
        resident_port,
    )
    .to(&carrier, DID)
    .run();
    resident.assert_succeeded(&carrier);
    let hotline = hotline.finish();
    hotline.assert_succeeded(&carrier);
    // The hotline got the in-dialog requests from the carrier, not from the resident.
    for method in ["ACK", "BYE"] {
        assert_eq!(
            top_via(
                &hotline.messages(),
                &format!("{method} sip:{DID}@{contact} ")
            ),
            Some(format!("SIP/2.0/UDP {}", carrier.addr())),
            "{method}: {}",
            hotline.report(&carrier)
        );
    }

    // (iv) The registered trunk calls out: 407, credentials, relayed to the PSTN with the
    // dialled number unchanged and the credentials removed (checked by the PSTN scenario).
    let pstn_uas = Sipp::new(
        &dir,
        "pstn-uas",
        "carrier_pstn_uas.xml",
        PSTN_IP,
        pstn.port(),
    )
    .spawn();
    wait_until_udp_bound(pstn, BIND_DEADLINE).unwrap();
    let outbound = Sipp::new(
        &dir,
        "outbound",
        "carrier_outbound.xml",
        HOTLINE_IP,
        trunk.port(),
    )
    .to(&carrier, PSTN_NUMBER)
    .args(&["-au", TRUNK_USER, "-ap", PASSWORD])
    .run();
    outbound.assert_succeeded(&carrier);
    pstn_uas.finish().assert_succeeded(&carrier);
    assert!(
        outbound
            .messages()
            .contains("SIP/2.0 407 Proxy Authentication Required"),
        "{}",
        outbound.report(&carrier)
    );

    // Expires: 0 unregisters; calls to the DID get 480 again.
    register(&dir, "unregister", &carrier, trunk, contact, 0, PASSWORD).assert_succeeded(&carrier);
    assert_eq!(
        carrier
            .wait_for_registration(false, REGISTRATION_DEADLINE)
            .unwrap(),
        None
    );
    assert_unavailable(&dir, "unavailable-after", &carrier);
}

#[test]
fn carrier_refuses_registrations_shorter_than_min_expires() {
    let dir = test_dir("min_expires");
    let pstn = SocketAddr::new(
        IpAddr::V4(PSTN_IP),
        free_udp_port(IpAddr::V4(PSTN_IP), false),
    );
    let carrier = start_carrier(pstn);
    let trunk = SocketAddr::new(
        IpAddr::V4(HOTLINE_IP),
        free_udp_port(IpAddr::V4(HOTLINE_IP), false),
    );

    let brief = register(
        &dir,
        "register-brief",
        &carrier,
        trunk,
        trunk,
        MIN_EXPIRES / 2,
        PASSWORD,
    );
    let messages = brief.messages();
    assert!(
        messages.contains("SIP/2.0 423 Interval Too Brief")
            && messages.contains(&format!("Min-Expires: {MIN_EXPIRES}")),
        "{}",
        brief.report(&carrier)
    );
    assert_ne!(brief.code, Some(0), "{}", brief.report(&carrier));
    assert_eq!(carrier.registered_contact().unwrap(), None);

    register(
        &dir,
        "register-min",
        &carrier,
        trunk,
        trunk,
        MIN_EXPIRES,
        PASSWORD,
    )
    .assert_succeeded(&carrier);
    assert!(carrier
        .wait_for_registration(true, REGISTRATION_DEADLINE)
        .unwrap()
        .is_some());
}
