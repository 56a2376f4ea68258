//! Smoke test of "the carrier" the SIP trunk tests run against (tests/common/kamailio.rs, a real
//! Kamailio with tests/fixtures/kamailio/carrier.cfg), driven only by SIPp stand-ins: SIPp
//! registers as the hotline's trunk (127.0.0.1) and answers the calls the carrier routes to it,
//! a resident (127.0.0.8) calls the DID, and the "PSTN" (127.0.0.6) takes the trunk's own
//! outbound call.

mod common;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::kamailio::{
    free_udp_port, wait_until_udp_bound, Carrier, SippAt, SippOutcome, MIN_EXPIRES, TRUNK_USER,
};

const CARRIER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const PSTN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const HOTLINE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const RESIDENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 8);
const PASSWORD: &str = "trunk-s3cret";
/// The hotline's DID, as residents dial it.
const DID: &str = "19118";
/// What the hotline dials out (carrier_pstn_uas.xml checks it arrives unchanged).
const PSTN_NUMBER: &str = "0037061234567";

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
) -> SippOutcome {
    let IpAddr::V4(ip) = from.ip() else {
        unreachable!("the hotline stand-in is IPv4")
    };
    SippAt::new(dir, name, "carrier_register.xml", ip, from.port())
        .to(carrier.addr(), TRUNK_USER)
        .args(&["-au", TRUNK_USER, "-ap", password])
        .args(&["-set", "contact", &contact.to_string()])
        .args(&["-set", "expires", &expires.to_string()])
        .run()
}

/// A resident at 127.0.0.8 calling the DID while nothing is registered: 480 from the carrier.
fn assert_unavailable(dir: &Path, name: &str, carrier: &Carrier) {
    let port = free_udp_port(IpAddr::V4(RESIDENT_IP), false);
    SippAt::new(
        dir,
        name,
        "carrier_resident_unavailable.xml",
        RESIDENT_IP,
        port,
    )
    .to(carrier.addr(), DID)
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
    let hotline = SippAt::new(
        &dir,
        "hotline-uas",
        "carrier_hotline_uas.xml",
        HOTLINE_IP,
        contact.port(),
    )
    .spawn();
    wait_until_udp_bound(contact, BIND_DEADLINE).unwrap();
    let resident_port = free_udp_port(IpAddr::V4(RESIDENT_IP), false);
    let resident = SippAt::new(
        &dir,
        "resident",
        "carrier_resident.xml",
        RESIDENT_IP,
        resident_port,
    )
    .to(carrier.addr(), DID)
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
    let pstn_uas = SippAt::new(
        &dir,
        "pstn-uas",
        "carrier_pstn_uas.xml",
        PSTN_IP,
        pstn.port(),
    )
    .spawn();
    wait_until_udp_bound(pstn, BIND_DEADLINE).unwrap();
    let outbound = SippAt::new(
        &dir,
        "outbound",
        "carrier_outbound.xml",
        HOTLINE_IP,
        trunk.port(),
    )
    .to(carrier.addr(), PSTN_NUMBER)
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
