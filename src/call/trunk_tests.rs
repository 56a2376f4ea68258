//! A carrier trunk through the switchboard in simulated time: registration through the user
//! agent, the calls it delivers identified (DID, caller number in E.164, trunk name,
//! `max_calls`), and unregistration when the service drains.

use std::time::Duration;

use super::tests::{config, header, ok_to, Harness, PCMU_OFFER};
use super::*;
use crate::numbers::NumberRules;
use crate::settings::{CallerIdHeader, Secret};
use crate::sip::registration::{Registration, RegistrationConfig};
use crate::sip::transport::TransportKind;

const CARRIER: &str = "127.0.0.5:5060";

fn carrier() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: CARRIER.parse().unwrap(),
    }
}

fn rules() -> NumberRules {
    NumberRules {
        country_code: "370".into(),
        national_prefix: "8".into(),
        international_prefix: "00".into(),
    }
}

fn trunk(max_calls: Option<u32>) -> TrunkSetup {
    trunk_at(CARRIER, max_calls)
}

fn trunk_at(host: &str, max_calls: Option<u32>) -> TrunkSetup {
    let registration = RegistrationConfig {
        trunk: "carrier".into(),
        host: host.into(),
        backup_host: None,
        transport: TransportKind::Udp,
        username: "hotline19118".into(),
        auth_username: "hotline19118".into(),
        password: Secret::new("secret"),
        expires: Duration::from_secs(600),
        contact_addr: "127.0.0.1:5060".parse().unwrap(),
        request_timeout: Duration::from_secs(32),
    };
    TrunkSetup {
        name: "carrier".into(),
        host: host.into(),
        backup_host: None,
        from_user: Some("hotline19118".into()),
        credentials: Some(crate::sip::ua::DigestCredentials {
            username: "hotline19118".into(),
            password: "secret".into(),
        }),
        transport: TransportKind::Udp,
        inbound: Vec::new(),
        numbers: vec!["19118".into(), "+37019118".into()],
        caller_id: CallerIdHeader::Pai,
        max_calls,
        max_cps: None,
        media_encryption: crate::sdp::MediaEncryption::Off,
        watch: TrunkWatch::Register(Box::new(Registration::new(registration, 3))),
    }
}

/// A harness whose trunk is registered with the carrier (after one digest challenge).
fn registered(max_calls: Option<u32>) -> Harness {
    let mut h = Harness::new(config());
    let now = h.sim.now;
    h.switchboard()
        .set_trunks(now, rules(), vec![trunk(max_calls)]);
    h.collect();
    let register = only_request_to_carrier(&mut h, "REGISTER");
    let challenge = ok_to(&register, None).replace(
        "SIP/2.0 200 OK\r\n",
        "SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\", algorithm=MD5\r\n",
    );
    h.receive(carrier(), &challenge);
    let answered = only_request_to_carrier(&mut h, "REGISTER");
    let authorization = header(&answered, "Authorization").expect("credentials");
    assert!(
        authorization.contains("username=\"hotline19118\""),
        "{authorization}"
    );
    assert!(authorization.contains("nc=00000001"), "{authorization}");
    let ok = ok_to(&answered, None).replace(
        "Content-Length: 0",
        "Contact: <sip:hotline19118@127.0.0.1:5060>;expires=600\r\nContent-Length: 0",
    );
    h.receive(carrier(), &ok);
    h
}

fn only_request_to_carrier(h: &mut Harness, method: &str) -> String {
    let sent = h.take_sent();
    let requests: Vec<&String> = sent
        .iter()
        .filter(|(_, to, text)| *to == carrier() && text.starts_with(method))
        .map(|(_, _, text)| text)
        .collect();
    assert_eq!(requests.len(), 1, "{sent:#?}");
    requests[0].clone()
}

fn trunk_invite(call_id: &str, dialled: &str, caller: &str) -> String {
    format!(
        "INVITE sip:hotline19118@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CARRIER};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 69\r\n\
         From: <sip:anonymous@carrier.example>;tag=c\r\n\
         P-Asserted-Identity: <sip:{caller}@carrier.example>\r\n\
         To: <sip:{dialled}@carrier.example>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{caller}@{CARRIER}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{PCMU_OFFER}",
        PCMU_OFFER.len()
    )
}

fn statuses(h: &mut Harness) -> Vec<String> {
    h.take_sent()
        .into_iter()
        .filter(|(_, to, _)| *to == carrier())
        .map(|(_, _, text)| text.lines().next().unwrap_or_default().to_owned())
        .filter(|line| line.starts_with("SIP/2.0") && !line.starts_with("SIP/2.0 100"))
        .collect()
}

#[test]
fn a_registered_trunk_is_up_and_shows_in_the_live_picture() {
    let mut h = registered(None);
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    let trunk = &live.trunks[0];
    assert_eq!(
        (trunk.trunk.as_str(), trunk.state.as_str()),
        ("carrier", "registered")
    );
    assert!(trunk.up);
    assert_eq!(
        (trunk.registrations.ok, trunk.registrations.challenged),
        (1, 1)
    );
    assert!(h.resolves.is_empty(), "an IP address needs no lookup");
}

#[test]
fn trunk_calls_are_identified_by_did_with_the_caller_in_e164_and_limited_by_max_calls() {
    let mut h = registered(Some(1));
    h.receive(
        carrier(),
        &trunk_invite("unknown-did", "852000000", "868712345"),
    );
    assert_eq!(statuses(&mut h), ["SIP/2.0 404 Not Found"]);

    h.receive(carrier(), &trunk_invite("first", "19118", "868712345"));
    assert!(statuses(&mut h)
        .iter()
        .any(|s| s.starts_with("SIP/2.0 200")));
    h.receive(
        carrier(),
        &trunk_invite("second", "+37019118", "0048221234567"),
    );
    assert_eq!(statuses(&mut h), ["SIP/2.0 503 Service Unavailable"]);
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert_eq!(
        (live.trunks[0].calls_active, live.trunks[0].calls_total),
        (1, 1)
    );

    let records: Vec<(String, Option<String>, String)> = h
        .records
        .iter()
        .map(|r| (r.call_id.clone(), r.caller.clone(), r.trunk.clone()))
        .collect();
    assert_eq!(
        records,
        [
            (
                "unknown-did".into(),
                Some("+37068712345".into()),
                "carrier".into()
            ),
            (
                "second".into(),
                Some("+48221234567".into()),
                "carrier".into()
            ),
        ]
    );
}

#[test]
fn a_call_from_elsewhere_is_not_the_trunks() {
    let mut h = registered(Some(0));
    let stranger = Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:6000".parse().unwrap(),
    };
    // max_calls = 0 would refuse any trunk call: this one is not the trunk's.
    h.receive(stranger, &trunk_invite("direct", "19118", "868712345"));
    let sent = h.take_sent();
    assert!(
        sent.iter()
            .any(|(_, _, text)| text.starts_with("SIP/2.0 200")),
        "{sent:#?}"
    );
}

#[test]
fn draining_unregisters_the_trunk_and_waits_for_the_answer() {
    let mut h = registered(None);
    h.input(Input::Drain);
    let unregister = only_request_to_carrier(&mut h, "REGISTER");
    assert_eq!(header(&unregister, "Expires"), Some("0"), "{unregister}");
    assert_eq!(h.switchboard().stats().trunks_unregistering, 1);
    assert!(!h.switchboard().stats().is_idle());
    h.receive(carrier(), &ok_to(&unregister, None));
    assert!(h.switchboard().stats().is_idle());
}

#[test]
fn a_trunk_host_name_is_resolved_by_the_driver_before_registering() {
    let mut h = Harness::new(config());
    let now = h.sim.now;
    let setup = trunk_at("carrier.invalid", None);
    h.switchboard().set_trunks(now, rules(), vec![setup]);
    h.collect();
    assert_eq!(h.resolves, ["carrier.invalid"]);
    assert!(h.take_sent().is_empty());
    h.input(Input::Resolved {
        host: "carrier.invalid".into(),
        addr: Some(CARRIER.parse().unwrap()),
    });
    only_request_to_carrier(&mut h, "REGISTER");
    // Its calls are now known by that address.
    h.receive(carrier(), &trunk_invite("by-name", "19999", "868712345"));
    assert_eq!(statuses(&mut h), ["SIP/2.0 404 Not Found"]);
}

#[test]
fn a_call_placed_through_the_trunk_answers_the_carriers_challenge_plays_and_hangs_up() {
    use crate::media::leg::{MediaCommand, MediaEvent};
    let mut h = registered(None);
    h.input(Input::PlaceTrunkCall(TrunkCallRequest {
        request: 9,
        trunk: "carrier".into(),
        number: "0037061234567".into(),
        language: "en".into(),
        prompt: "welcome".into(),
    }));
    let invite = only_request_to_carrier(&mut h, "INVITE");
    assert!(
        invite.starts_with("INVITE sip:0037061234567@127.0.0.5:5060 SIP/2.0"),
        "{invite}"
    );
    assert!(
        header(&invite, "From")
            .unwrap()
            .contains("<sip:hotline19118@"),
        "{invite}"
    );
    let challenge = ok_to(&invite, Some("carrier-1")).replace(
        "SIP/2.0 200 OK\r\n",
        "SIP/2.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"carrier\", nonce=\"n7\", qop=\"auth\"\r\n",
    );
    h.receive(carrier(), &challenge);
    let sent = h.take_sent();
    let lines: Vec<&str> = sent
        .iter()
        .map(|(_, _, t)| t.lines().next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "ACK sip:0037061234567@127.0.0.5:5060 SIP/2.0",
            "INVITE sip:0037061234567@127.0.0.5:5060 SIP/2.0"
        ]
    );
    let retried = &sent[1].2;
    assert_eq!(header(retried, "CSeq"), Some("2 INVITE"));
    let credentials = header(retried, "Proxy-Authorization").expect("credentials");
    assert!(
        credentials.contains("username=\"hotline19118\""),
        "{credentials}"
    );
    assert!(
        credentials.contains("uri=\"sip:0037061234567@127.0.0.5:5060\""),
        "{credentials}"
    );

    let answer = ok_to(retried, Some("callee")).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Contact: <sip:callee@{CARRIER}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PCMU_OFFER}",
            PCMU_OFFER.len()
        ),
    );
    h.receive(carrier(), &answer);
    let ack = only_request_to_carrier(&mut h, "ACK");
    assert_eq!(header(&ack, "CSeq"), Some("2 ACK"));
    let leg = match h.media.as_slice() {
        [MediaCommand::Start { leg, .. }, MediaCommand::Play { prompts, .. }] => {
            assert_eq!(prompts[0].name, "welcome");
            *leg
        }
        other => panic!("{other:?}"),
    };
    h.advance_to(Duration::from_secs(3));
    h.input(Input::Media(MediaEvent::PlaybackFinished {
        leg,
        generation: 1,
    }));
    let bye = only_request_to_carrier(&mut h, "BYE");
    h.receive(carrier(), &ok_to(&bye, None));
    match h.placed.as_slice() {
        [(9, TrunkCallResult::Answered { talked, .. })] => {
            assert_eq!(*talked, Duration::from_secs(3))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.switchboard().stats().calls, 0);
    assert_eq!(h.switchboard().stats().rtp_ports_in_use, 0);
}

#[test]
fn a_call_through_an_unknown_trunk_or_refused_credentials_fails_with_the_reason() {
    let mut h = registered(None);
    let order = |trunk: &str| {
        Input::PlaceTrunkCall(TrunkCallRequest {
            request: 1,
            trunk: trunk.into(),
            number: "861234567".into(),
            language: "en".into(),
            prompt: "welcome".into(),
        })
    };
    h.input(order("nosuch"));
    assert!(matches!(
        &h.placed[..],
        [(1, TrunkCallResult::Failed { status: 404, .. })]
    ));
    h.placed.clear();

    h.input(order("carrier"));
    let invite = only_request_to_carrier(&mut h, "INVITE");
    let challenge = |request: &str| {
        ok_to(request, Some("c")).replace(
            "SIP/2.0 200 OK\r\n",
            "SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"carrier\", nonce=\"n8\"\r\n",
        )
    };
    h.receive(carrier(), &challenge(&invite));
    let retried = only_request_to_carrier(&mut h, "INVITE");
    // Challenged again: the password is wrong, and we do not loop.
    h.receive(carrier(), &challenge(&retried));
    assert!(h
        .take_sent()
        .iter()
        .all(|(_, _, t)| !t.starts_with("INVITE")));
    match h.placed.as_slice() {
        [(
            1,
            TrunkCallResult::Failed {
                status: 401,
                reason,
            },
        )] => {
            assert!(reason.contains("credentials"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn of_two_trunks_on_one_carrier_address_the_one_delivering_the_number_takes_the_call() {
    let mut h = Harness::new(config());
    let now = h.sim.now;
    let mut second = trunk_at(CARRIER, None);
    second.name = "second".into();
    second.numbers = vec!["852000000".into()];
    h.switchboard()
        .set_trunks(now, rules(), vec![trunk(None), second]);
    h.collect();
    h.take_sent();
    h.receive(
        carrier(),
        &trunk_invite("to-second", "852000000", "868712345"),
    );
    assert!(statuses(&mut h)
        .iter()
        .any(|s| s.starts_with("SIP/2.0 200")));
    h.receive(
        carrier(),
        &trunk_invite("to-nobody", "852999999", "868712345"),
    );
    assert_eq!(statuses(&mut h), ["SIP/2.0 404 Not Found"]);
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    let calls: Vec<(&str, u64)> = live
        .trunks
        .iter()
        .map(|t| (t.trunk.as_str(), t.calls_total))
        .collect();
    assert_eq!(calls, [("carrier", 0), ("second", 1)]);
}

#[test]
fn a_trunk_takes_at_most_max_cps_new_calls_a_second() {
    let mut h = Harness::new(config());
    let now = h.sim.now;
    let mut setup = trunk(None);
    setup.max_cps = Some(2);
    h.switchboard().set_trunks(now, rules(), vec![setup]);
    h.collect();
    h.take_sent();
    let mut answers = Vec::new();
    for call in 0..3 {
        h.receive(
            carrier(),
            &trunk_invite(&format!("burst-{call}"), "19118", "868712345"),
        );
        answers.extend(statuses(&mut h));
    }
    assert_eq!(
        answers
            .iter()
            .filter(|s| s.starts_with("SIP/2.0 200"))
            .count(),
        2,
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|s| s.starts_with("SIP/2.0 503"))
            .count(),
        1,
        "{answers:?}"
    );
    // Half a second later one more call fits.
    h.advance_to(Duration::from_millis(500));
    h.receive(carrier(), &trunk_invite("later", "19118", "868712345"));
    assert!(statuses(&mut h)
        .iter()
        .any(|s| s.starts_with("SIP/2.0 200")));
}
