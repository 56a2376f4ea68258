//! The user agent alone, with simulated time: calls placed and answered without any call
//! logic above it.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::transport::TransportKind;

pub(super) fn ua() -> UserAgent {
    let config = UaConfig {
        local: "127.0.0.1:5060".parse().unwrap(),
        public_ip: "127.0.0.1".parse().unwrap(),
        timers: TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        },
        max_message_size: 16384,
    };
    UserAgent::new(config, 3)
}

pub(super) fn phone() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:5080".parse().unwrap(),
    }
}

pub(super) fn outgoing() -> OutgoingCall {
    OutgoingCall {
        target: "sip:agent@127.0.0.1:5080".into(),
        peer: phone(),
        display: "[LT] \"Water\"\r\n".into(),
        from_user: Some("+37060000000".into()),
        headers: vec![("X-Hotline-Caller".into(), "370\r\n600".into())],
        rtp_port: 30000,
        credentials: None,
        media_encryption: crate::sdp::MediaEncryption::Off,
    }
}

pub(super) fn transmitted(ua: &mut UserAgent) -> Vec<Transmit> {
    std::iter::from_fn(|| ua.poll_transmit()).collect()
}

pub(super) fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
    std::iter::from_fn(|| ua.poll_event()).collect()
}

pub(super) fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
        .unwrap_or_default()
}

/// The phone's answer to our INVITE.
pub(super) fn answer(invite: &str, status: &str, sdp: &str) -> String {
    let content_type = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=phone\r\nCall-ID: {}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:agent@127.0.0.1:5080>\r\n{content_type}\
         Content-Length: {}\r\n\r\n{sdp}",
        header(invite, "Via"),
        header(invite, "From"),
        header(invite, "To"),
        header(invite, "Call-ID"),
        sdp.len()
    )
}

const ANSWER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";

#[test]
fn a_placed_call_is_acked_once_per_2xx_and_reports_the_agreed_media() {
    let mut ua = ua();
    let now = Instant::now();
    let session = ua.invite(now, outgoing()).unwrap();
    let sent = transmitted(&mut ua);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, TransmitKind::Request);
    let invite = String::from_utf8(sent[0].bytes.to_vec()).unwrap();
    assert!(invite.starts_with("INVITE sip:agent@127.0.0.1:5080 SIP/2.0"));
    // What the phone shows and the headers stay on one line, quotes cannot break out.
    assert!(header(&invite, "From").starts_with("\"[LT] Water\" <sip:+37060000000@127.0.0.1:5060>"));
    assert_eq!(header(&invite, "X-Hotline-Caller"), "370600");
    assert!(invite.contains("m=audio 30000 RTP/AVP 0 8 101"), "{invite}");

    let ok = answer(&invite, "200 OK", ANSWER_SDP);
    ua.handle_message(now, phone(), ok.as_bytes());
    let acks = transmitted(&mut ua);
    assert_eq!(acks.len(), 1);
    assert!(acks[0]
        .bytes
        .starts_with(b"ACK sip:agent@127.0.0.1:5080 SIP/2.0"));
    match events(&mut ua).as_slice() {
        [UaEvent::Answered {
            session: answered,
            negotiated: Some(negotiated),
        }] => {
            assert_eq!(*answered, session);
            assert_eq!(negotiated.codec, crate::sdp::Codec::Pcma);
            assert_eq!(
                negotiated.remote_rtp,
                Some("127.0.0.1:7000".parse().unwrap())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        ua.sessions[&session].invite.is_none(),
        "an answered call keeps no copy of its INVITE"
    );
    // The 2xx again (our ACK was lost): the same ACK again, no second answer.
    ua.handle_message(now, phone(), ok.as_bytes());
    let again = transmitted(&mut ua);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bytes, acks[0].bytes);
    assert!(events(&mut ua).is_empty());

    // Our BYE, answered: the session closes.
    ua.hang_up(now, session);
    let bye = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert!(
        bye.starts_with("BYE sip:agent@127.0.0.1:5080 SIP/2.0"),
        "{bye}"
    );
    let bye_ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Content-Length: 0\r\n\r\n",
        header(&bye, "Via"),
        header(&bye, "From"),
        header(&bye, "To"),
        header(&bye, "Call-ID"),
        header(&bye, "CSeq")
    );
    ua.handle_message(now, phone(), bye_ok.as_bytes());
    assert!(
        matches!(events(&mut ua).as_slice(), [UaEvent::Closed { session: s }] if *s == session)
    );
    assert_eq!(ua.stats().sessions, 0);
}

#[test]
fn a_2xx_crossing_our_cancel_is_acked_and_ended_with_bye() {
    let mut ua = ua();
    let now = Instant::now();
    let session = ua.invite(now, outgoing()).unwrap();
    let invite = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    ua.handle_message(now, phone(), answer(&invite, "180 Ringing", "").as_bytes());
    ua.hang_up(now, session);
    let cancel = transmitted(&mut ua);
    assert!(cancel[0].bytes.starts_with(b"CANCEL "));
    ua.handle_message(
        now,
        phone(),
        answer(&invite, "200 OK", ANSWER_SDP).as_bytes(),
    );
    let sent: Vec<String> = transmitted(&mut ua)
        .iter()
        .map(|t| {
            String::from_utf8_lossy(&t.bytes)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        sent,
        [
            "ACK sip:agent@127.0.0.1:5080 SIP/2.0",
            "BYE sip:agent@127.0.0.1:5080 SIP/2.0"
        ]
    );
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Failed { status: 487, .. }]
    ));
}

#[test]
fn an_unreachable_phone_fails_the_call_at_once_with_503() {
    let mut ua = ua();
    let now = Instant::now();
    let session = ua.invite(now, outgoing()).unwrap();
    transmitted(&mut ua);
    ua.handle_transport_error(now, phone());
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Failed { session: s, status: 503 }, UaEvent::Closed { .. }] if *s == session
    ));
    assert_eq!(ua.stats().sessions, 0);
}

#[test]
fn an_unparsable_target_is_refused_before_anything_is_sent() {
    let mut ua = ua();
    let call = OutgoingCall {
        target: "sip:".into(),
        ..outgoing()
    };
    assert!(matches!(
        ua.invite(Instant::now(), call),
        Err(PlaceError::Target(_))
    ));
    assert!(transmitted(&mut ua).is_empty());
    assert_eq!(ua.stats(), UaStats::default());
}

#[test]
fn a_caller_number_unfit_for_a_uri_is_not_put_in_our_from() {
    let mut ua = ua();
    let odd = OutgoingCall {
        from_user: Some("a b@evil".into()),
        ..outgoing()
    };
    ua.invite(Instant::now(), odd).unwrap();
    let invite = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert!(
        header(&invite, "From").contains("<sip:19118@127.0.0.1:5060>"),
        "{invite}"
    );
}

#[test]
fn an_answered_caller_keeps_no_copy_of_its_invite() {
    let mut ua = ua();
    let now = Instant::now();
    let (session, _) = ringing_caller(&mut ua, now, phone());
    assert!(ua.sessions[&session].invite.is_some());
    ua.answer(now, session);
    let ok = transmitted(&mut ua);
    assert!(ok[0].bytes.starts_with(b"SIP/2.0 200 OK"));
    assert!(ua.sessions[&session].invite.is_none());
    // Nothing more can be said on the INVITE: no late 180 after the 2xx.
    ua.ring(now, session);
    assert!(transmitted(&mut ua).is_empty());
}

/// A caller's INVITE, offered, accepted and rung (180 sent) from `peer`.
fn ringing_caller(ua: &mut UserAgent, now: Instant, peer: Peer) -> (SessionId, String) {
    let transport = peer.transport.via_name();
    let invite = format!(
        "INVITE sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/{transport} {};branch=z9hG4bKaaa\r\n\
         Max-Forwards: 70\r\nFrom: <sip:370@127.0.0.1>;tag=c1\r\nTo: <sip:19118@127.0.0.1>\r\n\
         Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:370@{}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{ANSWER_SDP}",
        peer.addr,
        peer.addr,
        ANSWER_SDP.len()
    );
    ua.handle_message(now, peer, invite.as_bytes());
    let Some(UaEvent::Incoming { session, .. }) = events(ua).into_iter().next() else {
        panic!("no incoming call");
    };
    ua.accept(now, session, 30000).unwrap();
    ua.ring(now, session);
    let ringing = transmitted(ua).pop().unwrap();
    let ringing = String::from_utf8(ringing.bytes.to_vec()).unwrap();
    assert!(ringing.starts_with("SIP/2.0 180"), "{ringing}");
    (session, header(&ringing, "To").to_owned())
}

#[test]
fn a_transport_error_fails_only_what_waits_on_that_peer() {
    let mut ua = ua();
    let now = Instant::now();
    // An answered call to the phone, and a caller ringing over TCP from the same address.
    let answered = ua.invite(now, outgoing()).unwrap();
    let invite = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    ua.handle_message(
        now,
        phone(),
        answer(&invite, "200 OK", ANSWER_SDP).as_bytes(),
    );
    events(&mut ua);
    let tcp_phone = Peer {
        transport: TransportKind::Tcp,
        ..phone()
    };
    ringing_caller(&mut ua, now, tcp_phone);
    // A second call to the phone, still ringing.
    let calling = ua.invite(now, outgoing()).unwrap();
    transmitted(&mut ua);

    ua.handle_transport_error(now, phone());
    let failed: Vec<String> = events(&mut ua).iter().map(|e| format!("{e:?}")).collect();
    assert_eq!(
        failed,
        [
            format!("Failed {{ session: {calling:?}, status: 503 }}"),
            format!("Closed {{ session: {calling:?} }}")
        ]
    );
    assert!(transmitted(&mut ua).is_empty(), "no BYE, no final answer");
    assert!(ua.call_id(answered).is_some(), "the answered call goes on");
    ua.handle_transport_error(now, tcp_phone);
    assert!(
        events(&mut ua).is_empty(),
        "a caller's INVITE is no request of ours"
    );
    assert_eq!(ua.stats().sessions, 2);
}

#[test]
fn a_caller_hanging_up_before_the_answer_gets_200_and_its_invite_487() {
    let mut ua = ua();
    let mut now = Instant::now();
    let caller = Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:5090".parse().unwrap(),
    };
    let (session, to) = ringing_caller(&mut ua, now, caller);
    let bye = format!(
        "BYE sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKbbb\r\n\
         Max-Forwards: 70\r\nFrom: <sip:370@127.0.0.1>;tag=c1\r\nTo: {to}\r\n\
         Call-ID: call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    ua.handle_message(now, caller, bye.as_bytes());
    let sent: Vec<String> = transmitted(&mut ua)
        .iter()
        .map(|t| {
            let text = String::from_utf8_lossy(&t.bytes).into_owned();
            format!(
                "{} {}",
                text.lines().next().unwrap_or_default(),
                header(&text, "CSeq")
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            "SIP/2.0 200 OK 2 BYE",
            "SIP/2.0 487 Request Terminated 1 INVITE"
        ]
    );
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::HungUp { session: a }, UaEvent::Closed { session: b }] if *a == session && *b == session
    ));
    // The INVITE's transaction ends on its own (the 487 is ACKed or Timer H runs out).
    for _ in 0..200 {
        now += Duration::from_secs(1);
        ua.handle_timeout(now);
    }
    assert_eq!(ua.stats(), UaStats::default());
}

/// RFC 4475's messages as `(name, expected, bytes with CRLF)` from the project's corpus.
fn rfc4475_corpus() -> Vec<(String, String, Vec<u8>)> {
    const CORPUS: &str = include_str!("../../../tests/fixtures/rfc4475/corpus.sip");
    let mut messages = Vec::new();
    for section in CORPUS.split("\n=== ").skip(1) {
        let (title, text) = section.split_once('\n').unwrap();
        let (name, expected) = title.split_once(' ').unwrap();
        let bytes = text.replace('\n', "\r\n").into_bytes();
        messages.push((name.to_owned(), expected.to_owned(), bytes));
    }
    messages
}

#[test]
fn rfc4475_corpus_through_the_user_agent() {
    let corpus = rfc4475_corpus();
    assert!(corpus.len() >= 30, "corpus read: {}", corpus.len());
    for (name, expected, bytes) in corpus {
        let mut ua = ua();
        ua.enable_registrar(
            crate::sip::registrar::Credentials::parse("realm = \"hotline\"").unwrap(),
        );
        ua.handle_message(Instant::now(), phone(), &bytes);
        let finals: Vec<u16> = transmitted(&mut ua)
            .iter()
            .filter_map(|sent| {
                let text = std::str::from_utf8(&sent.bytes).ok()?;
                text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
            })
            .filter(|status| *status >= 200)
            .collect();
        let offered = events(&mut ua)
            .iter()
            .any(|event| matches!(event, UaEvent::Incoming { .. }));
        let outcome = match (finals.as_slice(), offered) {
            ([], true) => "incoming".to_owned(),
            ([], false) => "silent".to_owned(),
            ([status], false) => status.to_string(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(outcome, expected, "{name}");
    }
}

#[test]
fn server_and_user_agent_name_the_product_without_a_version() {
    let options = "OPTIONS sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-o1\r\n\
        From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:19118@127.0.0.1>\r\n\
        Call-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let mut ua = ua();
    let now = Instant::now();
    ua.handle_message(now, phone(), options.as_bytes());
    let ok = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert_eq!(header(&ok, "Server"), "hotline", "{ok}");
    ua.invite(now, outgoing()).unwrap();
    let invite = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert_eq!(header(&invite, "User-Agent"), "hotline", "{invite}");

    ua.set_server_header("City\r\nX-Injected: 1");
    ua.handle_message(now, phone(), options.replace("o1", "o2").as_bytes());
    let ok = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert_eq!(header(&ok, "Server"), "CityX-Injected: 1");
    assert_eq!(header(&ok, "X-Injected"), "");
}

/// A softphone's REGISTER, with `auth` (an Authorization line) when answering a challenge.
fn register_request(branch: &str, contact: &str, auth: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{branch}\r\n\
         From: <sip:jonas@127.0.0.1>;tag=r\r\nTo: <sip:jonas@127.0.0.1>\r\n\
         Call-ID: reg-{branch}\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\n\
         Max-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_replayed_register_from_another_address_is_challenged_and_the_binding_stays() {
    use crate::sip::registrar::Credentials;
    let md5 = |text: String| hex::encode(<md5::Md5 as md5::Digest>::digest(text.as_bytes()));
    let mut ua = ua();
    let credentials = format!(
        "realm = \"hotline\"\n[users]\njonas = \"{}\"\n",
        Credentials::ha1("jonas", "hotline", "s3cret")
    );
    ua.enable_registrar(Credentials::parse(&credentials).unwrap());
    let now = Instant::now();
    let contact = "<sip:jonas@127.0.0.1:5080>";
    ua.handle_message(now, phone(), register_request("a", contact, "").as_bytes());
    let challenge = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
    let nonce = header(&challenge, "WWW-Authenticate")
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let ha1 = Credentials::ha1("jonas", "hotline", "s3cret");
    let ha2 = md5("REGISTER:sip:127.0.0.1:5060".to_owned());
    let response = md5(format!("{ha1}:{nonce}:00000001:c:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"jonas\", realm=\"hotline\", nonce=\"{nonce}\", \
         uri=\"sip:127.0.0.1:5060\", response=\"{response}\", qop=auth, nc=00000001, cnonce=\"c\"\r\n"
    );
    ua.handle_message(
        now,
        phone(),
        register_request("b", contact, &auth).as_bytes(),
    );
    let ok = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");

    let attacker = Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.3:5066".parse().unwrap(),
    };
    let wipe = register_request("c", "*", &format!("Expires: 0\r\n{auth}"));
    ua.handle_message(now, attacker, wipe.as_bytes());
    let refused = String::from_utf8(transmitted(&mut ua)[0].bytes.to_vec()).unwrap();
    assert!(refused.starts_with("SIP/2.0 401 "), "{refused}");
    assert_eq!(
        ua.registered_contact("jonas", now),
        Some(("sip:jonas@127.0.0.1:5080".to_owned(), phone()))
    );
    assert_eq!(ua.security_stats(now).nonce_replays, 1);
}

#[test]
fn only_admitted_sources_may_start_calls_and_registrations() {
    let mut ua = ua();
    ua.enable_registrar(crate::sip::registrar::Credentials::parse("realm = \"hotline\"").unwrap());
    ua.admit_only(Some(vec!["127.0.0.0/30".parse().unwrap()]));
    let now = Instant::now();
    let stranger = Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.7:5090".parse().unwrap(),
    };
    let request = |method: &str, to_tag: &str| {
        format!(
            "{method} sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.7:5090;branch=z9hG4bK-{method}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.7>;tag=x\r\nTo: <sip:19118@127.0.0.1>{to_tag}\r\n\
             Call-ID: stranger-{method}\r\nCSeq: 1 {method}\r\nContact: <sip:x@127.0.0.7:5090>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let status = |ua: &mut UserAgent, text: String, from: Peer| {
        ua.handle_message(now, from, text.as_bytes());
        let sent = transmitted(ua);
        let last = sent
            .last()
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned());
        last.and_then(|text| text.split(' ').nth(1).map(str::to_owned))
    };
    for method in ["INVITE", "REGISTER", "SUBSCRIBE"] {
        assert_eq!(
            status(&mut ua, request(method, ""), stranger).as_deref(),
            Some("403"),
            "{method}"
        );
    }
    assert!(
        events(&mut ua).is_empty(),
        "no call reaches the switchboard"
    );
    assert_eq!(ua.stats().transactions, 0, "refused statelessly");
    // Inside a dialog (none here) the answer is the usual 481, and OPTIONS is answered.
    assert_eq!(
        status(&mut ua, request("BYE", ";tag=t"), stranger).as_deref(),
        Some("481")
    );
    assert_eq!(
        status(&mut ua, request("OPTIONS", ""), stranger).as_deref(),
        Some("200")
    );
    // From an admitted address the INVITE is a call.
    assert_eq!(
        status(&mut ua, request("INVITE", ""), phone_at("127.0.0.2:5090")).as_deref(),
        Some("100")
    );
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Incoming { .. }]
    ));
}

fn phone_at(addr: &str) -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: addr.parse().unwrap(),
    }
}
