//! Simulated-time tests for the transaction layer: every scenario runs its timers out and
//! checks that no transaction is left behind.

use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;
use rsip::message::HeadersExt;
use rsip::{Header, Method, Request, Response, SipMessage, StatusCode, Version};

use super::*;
use crate::sip::transport::{Peer, TransportKind};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const T4: Duration = Duration::from_secs(5);
const T64: Duration = Duration::from_secs(32);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(TimerConfig::default())
}

fn udp() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:40000".parse().unwrap(),
    }
}

fn tcp() -> Peer {
    Peer {
        transport: TransportKind::Tcp,
        addr: "127.0.0.1:40001".parse().unwrap(),
    }
}

/// A request as it would arrive from a caller; `via_params` e.g. `;branch=z9hG4bKa`.
fn incoming(method: &str, via_params: &str, to_tag: Option<&str>) -> SipMessage {
    let to_tag = to_tag.map(|tag| format!(";tag={tag}")).unwrap_or_default();
    let text = format!(
        "{method} sip:19118@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070{via_params}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=caller1\r\n\
         To: <sip:19118@127.0.0.1>{to_tag}\r\n\
         Call-ID: call-1@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    SipMessage::try_from(text.as_str()).unwrap()
}

fn branch(value: &str) -> String {
    format!(";branch={value}")
}

/// A request we send as UAC, with a Route so ACK/CANCEL copying can be checked.
fn outgoing(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:agent@127.0.0.1:5080 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
         Route: <sip:127.0.0.1:5090;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:19118@127.0.0.1>;tag=uac1\r\n\
         To: <sip:agent@127.0.0.1>\r\n\
         Call-ID: out-1@127.0.0.1\r\n\
         CSeq: 7 {method}\r\n\
         Contact: <sip:19118@127.0.0.1:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).unwrap()
}

fn as_request(message: &SipMessage) -> Request {
    Request::try_from(message.clone()).unwrap()
}

/// A response to `request` as the answering side would build it.
fn reply(request: &Request, status: u16, to_tag: Option<&str>) -> Response {
    let mut headers: Vec<Header> = request
        .headers
        .iter()
        .filter_map(|header| match header {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                Some(header.clone())
            }
            Header::To(to) => Some(match to_tag {
                Some(tag) => {
                    Header::To(rsip::headers::To::new(format!("{};tag={tag}", to.value())))
                }
                None => header.clone(),
            }),
            _ => None,
        })
        .collect();
    headers.push(Header::ContentLength(Default::default()));
    Response {
        status_code: StatusCode::from(status),
        version: Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

/// `reply` after a trip through text, as it would come off the wire.
fn wire_reply(request: &Request, status: u16, to_tag: Option<&str>) -> SipMessage {
    SipMessage::try_from(reply(request, status, to_tag).to_string()).unwrap()
}

#[derive(Default, Debug)]
struct Out {
    sent: Vec<(Peer, Bytes, SipMessage)>,
    events: Vec<TxEvent>,
}

impl Out {
    fn statuses(&self) -> Vec<u16> {
        self.sent
            .iter()
            .filter_map(|(_, _, message)| match message {
                SipMessage::Response(response) => Some(response.status_code.code()),
                SipMessage::Request(_) => None,
            })
            .collect()
    }

    fn methods(&self) -> Vec<Method> {
        self.sent
            .iter()
            .filter_map(|(_, _, message)| match message {
                SipMessage::Request(request) => Some(request.method),
                SipMessage::Response(_) => None,
            })
            .collect()
    }

    fn only_request(&self) -> Request {
        assert_eq!(
            self.sent.len(),
            1,
            "expected one request, got {:?}",
            self.sent
        );
        as_request(&self.sent[0].2)
    }

    fn is_empty(&self) -> bool {
        self.sent.is_empty() && self.events.is_empty()
    }
}

fn drain(layer: &mut TransactionLayer) -> Out {
    let mut out = Out::default();
    while let Some(output) = layer.poll_output() {
        match output {
            TxOutput::Transmit { to, bytes } => {
                let message = SipMessage::try_from(bytes.clone()).unwrap();
                out.sent.push((to, bytes, message));
            }
            TxOutput::Event(event) => out.events.push(event),
        }
    }
    out
}

/// Follow `poll_timeout` up to `until`, firing each deadline; returns what each firing produced.
fn drive(layer: &mut TransactionLayer, until: Instant) -> Vec<(Instant, Out)> {
    let mut firings = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > until {
            break;
        }
        layer.handle_timeout(at);
        firings.push((at, drain(layer)));
    }
    firings
}

/// Offsets from `t0` of firings that transmitted something.
fn transmit_offsets(firings: &[(Instant, Out)], t0: Instant) -> Vec<Duration> {
    firings
        .iter()
        .filter(|(_, out)| !out.sent.is_empty())
        .map(|(at, _)| *at - t0)
        .collect()
}

fn request_key(out: &Out) -> TxKey {
    match out.events.as_slice() {
        [TxEvent::Request { key, .. }] => key.clone(),
        other => panic!("expected one Request event, got {other:?}"),
    }
}

fn secs(offsets: &[u64]) -> Vec<Duration> {
    offsets.iter().map(|&m| ms(m)).collect()
}

/// Run all remaining timers and require the layer to be empty afterwards.
fn finish(layer: &mut TransactionLayer, t0: Instant) -> Vec<(Instant, Out)> {
    let firings = drive(layer, t0 + Duration::from_secs(600));
    assert_eq!(layer.len(), 0, "transactions leaked");
    assert!(layer.is_empty());
    assert_eq!(layer.poll_timeout(), None);
    firings
}

// ---------------------------------------------------------------- INVITE server

#[test]
fn invite_server_sends_100_trying_at_once_and_surfaces_the_invite() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKinv1"), None);
    layer.handle_message(t0, invite.clone(), udp());
    let out = drain(&mut layer);

    assert_eq!(out.statuses(), vec![100]);
    let (to, _, trying) = &out.sent[0];
    assert_eq!(*to, udp());
    let trying = Response::try_from(trying.clone()).unwrap();
    assert_eq!(trying.via_header().unwrap(), invite.via_header().unwrap());
    assert_eq!(trying.cseq_header().unwrap().value(), "1 INVITE");
    assert_eq!(trying.call_id_header().unwrap().value(), "call-1@127.0.0.1");
    assert_eq!(trying.to_header().unwrap().tag().unwrap(), None);

    match out.events.as_slice() {
        [TxEvent::Request { key, request, from }] => {
            assert_eq!(*request, as_request(&invite));
            assert_eq!(*from, udp());
            assert_eq!(key.method(), Method::Invite);
            assert!(!key.is_legacy());
            assert_eq!(layer.state(key), Some(TxState::Proceeding));
        }
        other => panic!("unexpected events {other:?}"),
    }
    assert_eq!(layer.len(), 1);
    // An unanswered INVITE waits for the TU: no timer runs.
    assert_eq!(layer.poll_timeout(), None);
}

#[test]
fn invite_server_responds_to_the_source_peer_not_the_via() {
    let t0 = Instant::now();
    let mut layer = layer();
    let text = incoming("INVITE", &branch("z9hG4bKnat"), None)
        .to_string()
        .replace("127.0.0.1:5070", "10.1.2.3:5060");
    let behind_nat = Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:61000".parse().unwrap(),
    };
    layer.handle_message(t0, SipMessage::try_from(text).unwrap(), behind_nat);
    let out = drain(&mut layer);
    let key = request_key(&out);
    assert_eq!(out.sent[0].0, behind_nat);

    let request = match &out.events[0] {
        TxEvent::Request { request, .. } => request.clone(),
        _ => unreachable!(),
    };
    layer
        .respond(t0, &key, reply(&request, 486, Some("uas")))
        .unwrap();
    assert_eq!(drain(&mut layer).sent[0].0, behind_nat);
    let firings = drive(&mut layer, t0 + ms(600));
    assert!(firings
        .iter()
        .all(|(_, out)| out.sent.iter().all(|(to, _, _)| *to == behind_nat)));
}

#[test]
fn invite_server_retransmits_non_2xx_final_with_timer_g_until_ack() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKg"), None);
    layer.handle_message(t0, invite.clone(), udp());
    let key = request_key(&drain(&mut layer));

    layer
        .respond(t0, &key, reply(&as_request(&invite), 486, Some("uas")))
        .unwrap();
    let out = drain(&mut layer);
    assert_eq!(out.statuses(), vec![486]);
    let first_bytes = out.sent[0].1.clone();
    assert_eq!(layer.state(&key), Some(TxState::Completed));

    let firings = drive(&mut layer, t0 + ms(16_000));
    // Intervals T1, 2T1, 4T1, 8T1, then capped at T2.
    assert_eq!(
        transmit_offsets(&firings, t0),
        secs(&[500, 1_500, 3_500, 7_500, 11_500, 15_500])
    );
    let offsets = transmit_offsets(&firings, t0);
    assert_eq!(offsets[0], T1);
    assert_eq!(offsets[5] - offsets[4], T2, "Timer G is capped at T2");
    for (_, out) in &firings {
        assert_eq!(out.statuses(), vec![486]);
        assert_eq!(out.sent[0].1, first_bytes);
        // Serialised once: every retransmission shares the original buffer.
        assert_eq!(out.sent[0].1.as_ptr(), first_bytes.as_ptr());
        assert!(out.events.is_empty());
    }

    let ack_at = t0 + ms(16_000);
    layer.handle_message(
        ack_at,
        incoming("ACK", &branch("z9hG4bKg"), Some("uas")),
        udp(),
    );
    assert!(
        drain(&mut layer).is_empty(),
        "ACK for a non-2xx is absorbed"
    );
    assert_eq!(layer.state(&key), Some(TxState::Confirmed));
    // Timer G is gone; the next deadline is Timer I.
    assert_eq!(layer.poll_timeout(), Some(ack_at + T4));

    // A retransmitted ACK is absorbed as well.
    layer.handle_message(
        ack_at + ms(10),
        incoming("ACK", &branch("z9hG4bKg"), Some("uas")),
        udp(),
    );
    assert!(drain(&mut layer).is_empty());

    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, ack_at + T4);
    assert!(firings[0].1.sent.is_empty());
    assert_eq!(firings[0].1.events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn invite_server_reports_ack_timeout_at_exactly_64_t1() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKh"), None);
    layer.handle_message(t0, invite.clone(), udp());
    let key = request_key(&drain(&mut layer));
    layer
        .respond(t0, &key, reply(&as_request(&invite), 603, Some("uas")))
        .unwrap();
    drain(&mut layer);

    layer.handle_timeout(t0 + T64 - ms(1));
    let before = drain(&mut layer);
    assert!(before.events.is_empty(), "no AckTimeout before 64*T1");
    // 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5.
    assert_eq!(before.statuses(), vec![603; 10]);
    assert_eq!(layer.len(), 1);

    layer.handle_timeout(t0 + T64);
    let out = drain(&mut layer);
    assert!(out.sent.is_empty());
    assert_eq!(
        out.events,
        vec![
            TxEvent::AckTimeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    finish(&mut layer, t0);
}

#[test]
fn retransmitted_invite_gets_the_latest_response_for_each_state() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKre"), None);
    layer.handle_message(t0, invite.clone(), udp());
    let key = request_key(&drain(&mut layer));

    layer.handle_message(t0 + ms(100), invite.clone(), udp());
    let out = drain(&mut layer);
    assert_eq!(out.statuses(), vec![100], "Proceeding resends the 100");
    assert!(out.events.is_empty(), "retransmission is not passed up");

    layer
        .respond(
            t0 + ms(200),
            &key,
            reply(&as_request(&invite), 180, Some("uas")),
        )
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![180]);
    layer.handle_message(t0 + ms(300), invite.clone(), udp());
    assert_eq!(drain(&mut layer).statuses(), vec![180]);

    layer
        .respond(
            t0 + ms(400),
            &key,
            reply(&as_request(&invite), 486, Some("uas")),
        )
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![486]);
    layer.handle_message(t0 + ms(450), invite.clone(), udp());
    let out = drain(&mut layer);
    assert_eq!(out.statuses(), vec![486], "Completed resends the final");
    assert!(out.events.is_empty());

    layer.handle_message(
        t0 + ms(460),
        incoming("ACK", &branch("z9hG4bKre"), Some("uas")),
        udp(),
    );
    assert!(drain(&mut layer).is_empty());
    layer.handle_message(t0 + ms(470), invite, udp());
    assert!(drain(&mut layer).is_empty(), "Confirmed absorbs INVITEs");

    let firings = finish(&mut layer, t0);
    assert_eq!(firings.last().unwrap().0, t0 + ms(460) + T4);
}

#[test]
fn invite_server_accepted_absorbs_invites_and_passes_acks_up() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKok"), None);
    layer.handle_message(t0, invite.clone(), udp());
    let key = request_key(&drain(&mut layer));
    let ok = reply(&as_request(&invite), 200, Some("uas"));

    layer.respond(t0, &key, ok.clone()).unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![200]);
    assert_eq!(layer.state(&key), Some(TxState::Accepted));
    assert_eq!(layer.poll_timeout(), Some(t0 + T64), "only Timer L runs");

    layer.handle_message(t0 + ms(500), invite.clone(), udp());
    assert!(
        drain(&mut layer).is_empty(),
        "Accepted absorbs INVITE retransmissions"
    );

    // The UAS core's own 2xx retransmission goes through.
    layer.respond(t0 + ms(500), &key, ok.clone()).unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![200]);
    let refused = layer.respond(t0 + ms(500), &key, reply(&as_request(&invite), 486, None));
    assert!(matches!(
        refused,
        Err(TxError::InvalidState {
            state: TxState::Accepted,
            ..
        })
    ));
    assert!(layer
        .respond(t0 + ms(500), &key, reply(&as_request(&invite), 180, None))
        .is_err());

    // ACK for the 2xx (new branch) and one reusing the INVITE branch both go to the TU.
    for ack_branch in ["z9hG4bKack2xx", "z9hG4bKok"] {
        let ack = incoming("ACK", &branch(ack_branch), Some("uas"));
        layer.handle_message(t0 + ms(600), ack.clone(), udp());
        let out = drain(&mut layer);
        assert!(out.sent.is_empty());
        assert_eq!(
            out.events,
            vec![TxEvent::Ack {
                request: as_request(&ack),
                from: udp()
            }]
        );
    }

    layer.handle_timeout(t0 + T64 - ms(1));
    assert!(
        drain(&mut layer).is_empty(),
        "the layer never retransmits a 2xx"
    );
    assert_eq!(layer.len(), 1);
    layer.handle_timeout(t0 + T64);
    assert_eq!(drain(&mut layer).events, vec![TxEvent::Terminated { key }]);
    finish(&mut layer, t0);
}

#[test]
fn invite_server_over_tcp_never_retransmits_and_ends_on_ack() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKtcp"), None);
    layer.handle_message(t0, invite.clone(), tcp());
    let out = drain(&mut layer);
    assert_eq!(out.sent[0].0, tcp());
    let key = request_key(&out);

    layer
        .respond(t0, &key, reply(&as_request(&invite), 486, Some("uas")))
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![486]);
    assert_eq!(layer.poll_timeout(), Some(t0 + T64), "only Timer H runs");
    layer.handle_timeout(t0 + ms(20_000));
    assert!(drain(&mut layer).is_empty());

    layer.handle_message(
        t0 + ms(20_000),
        incoming("ACK", &branch("z9hG4bKtcp"), Some("uas")),
        tcp(),
    );
    assert_eq!(
        drain(&mut layer).events,
        vec![TxEvent::Terminated { key }],
        "Timer I = 0"
    );
    finish(&mut layer, t0);
}

#[test]
fn invite_server_over_tcp_still_waits_64_t1_for_the_ack() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKtcph"), None);
    layer.handle_message(t0, invite.clone(), tcp());
    let key = request_key(&drain(&mut layer));
    layer
        .respond(t0, &key, reply(&as_request(&invite), 480, Some("uas")))
        .unwrap();
    drain(&mut layer);
    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, t0 + T64);
    assert!(firings[0].1.sent.is_empty());
    assert_eq!(
        firings[0].1.events,
        vec![
            TxEvent::AckTimeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
}

// ---------------------------------------------------------------- non-INVITE server

#[test]
fn non_invite_server_resends_last_response_and_ends_after_timer_j() {
    let t0 = Instant::now();
    let mut layer = layer();
    let options = incoming("OPTIONS", &branch("z9hG4bKopt"), None);
    layer.handle_message(t0, options.clone(), udp());
    let out = drain(&mut layer);
    assert!(out.sent.is_empty(), "no automatic 100 for non-INVITE");
    let key = request_key(&out);
    assert_eq!(layer.state(&key), Some(TxState::Trying));

    layer.handle_message(t0 + ms(500), options.clone(), udp());
    assert!(
        drain(&mut layer).is_empty(),
        "Trying absorbs retransmissions"
    );

    layer
        .respond(t0 + ms(600), &key, reply(&as_request(&options), 100, None))
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![100]);
    assert_eq!(layer.state(&key), Some(TxState::Proceeding));
    layer.handle_message(t0 + ms(700), options.clone(), udp());
    assert_eq!(drain(&mut layer).statuses(), vec![100]);

    let done = t0 + ms(1_000);
    layer
        .respond(done, &key, reply(&as_request(&options), 200, Some("uas")))
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![200]);
    layer.handle_message(done + ms(100), options.clone(), udp());
    let out = drain(&mut layer);
    assert_eq!(out.statuses(), vec![200]);
    assert!(out.events.is_empty());
    assert!(matches!(
        layer.respond(done, &key, reply(&as_request(&options), 500, None)),
        Err(TxError::InvalidState {
            state: TxState::Completed,
            ..
        })
    ));

    layer.handle_timeout(done + T64 - ms(1));
    assert!(drain(&mut layer).is_empty());
    layer.handle_timeout(done + T64);
    assert_eq!(drain(&mut layer).events, vec![TxEvent::Terminated { key }]);
    finish(&mut layer, t0);
}

#[test]
fn non_invite_server_over_tcp_ends_with_its_final_response() {
    let t0 = Instant::now();
    let mut layer = layer();
    let bye = incoming("BYE", &branch("z9hG4bKbye"), Some("uas"));
    layer.handle_message(t0, bye.clone(), tcp());
    let key = request_key(&drain(&mut layer));
    layer
        .respond(t0, &key, reply(&as_request(&bye), 200, None))
        .unwrap();
    let out = drain(&mut layer);
    assert_eq!(out.statuses(), vec![200]);
    assert_eq!(out.sent[0].0, tcp());
    assert_eq!(out.events, vec![TxEvent::Terminated { key }], "Timer J = 0");
    finish(&mut layer, t0);
}

#[test]
fn unanswered_non_invite_server_transaction_is_dropped_after_64_t1() {
    let t0 = Instant::now();
    let mut layer = layer();
    let info = incoming("INFO", &branch("z9hG4bKinfo"), Some("uas"));
    layer.handle_message(t0, info.clone(), udp());
    let key = request_key(&drain(&mut layer));
    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, t0 + T64);
    assert_eq!(
        firings[0].1.events,
        vec![TxEvent::Terminated { key: key.clone() }]
    );
    assert_eq!(
        layer.respond(t0 + T64, &key, reply(&as_request(&info), 200, None)),
        Err(TxError::UnknownTransaction(key))
    );
}

// ---------------------------------------------------------------- INVITE client

#[test]
fn invite_client_retransmits_with_timer_a_and_times_out_with_timer_b() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = outgoing("INVITE", "z9hG4bKuac1");
    let key = layer.send_request(t0, invite.clone(), udp()).unwrap();
    let out = drain(&mut layer);
    assert_eq!(out.only_request(), invite);
    assert_eq!(out.sent[0].0, udp());
    let original = out.sent[0].1.clone();
    assert_eq!(layer.state(&key), Some(TxState::Calling));

    layer.handle_timeout(t0 + T64 - ms(1));
    let mut retransmits = drain(&mut layer);
    assert!(retransmits.events.is_empty());
    assert_eq!(retransmits.methods(), vec![Method::Invite; 6]);
    assert!(retransmits
        .sent
        .iter()
        .all(|(_, bytes, _)| bytes.as_ptr() == original.as_ptr()));
    retransmits.sent.clear();

    // Same run with exact firing times: T1, 2T1, 4T1, ... doubling without a cap.
    let mut layer2 = self::layer();
    layer2.send_request(t0, invite, udp()).unwrap();
    drain(&mut layer2);
    let firings = drive(&mut layer2, t0 + T64 - ms(1));
    assert_eq!(
        transmit_offsets(&firings, t0),
        secs(&[500, 1_500, 3_500, 7_500, 15_500, 31_500])
    );

    layer.handle_timeout(t0 + T64);
    let out = drain(&mut layer);
    assert!(out.sent.is_empty());
    assert_eq!(
        out.events,
        vec![
            TxEvent::Timeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    finish(&mut layer, t0);
}

#[test]
fn invite_client_acks_a_non_2xx_final_on_the_same_branch() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = outgoing("INVITE", "z9hG4bKuac2");
    let key = layer.send_request(t0, invite.clone(), udp()).unwrap();
    drain(&mut layer);

    layer.handle_message(t0 + ms(200), wire_reply(&invite, 180, Some("agent")), udp());
    let out = drain(&mut layer);
    assert!(out.sent.is_empty());
    match out.events.as_slice() {
        [TxEvent::Response { key: k, response }] => {
            assert_eq!(*k, key);
            assert_eq!(response.status_code.code(), 180);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(layer.state(&key), Some(TxState::Proceeding));
    assert_eq!(layer.poll_timeout(), None, "no Timer A/B once Proceeding");

    let final_at = t0 + ms(60_000);
    layer.handle_message(final_at, wire_reply(&invite, 486, Some("agent")), udp());
    let out = drain(&mut layer);
    let ack = out.only_request();
    assert_eq!(out.sent[0].0, udp());
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    assert_eq!(ack.via_header().unwrap(), invite.via_header().unwrap());
    assert_eq!(
        ack.transaction_id().unwrap().unwrap().to_string(),
        "z9hG4bKuac2"
    );
    assert_eq!(ack.cseq_header().unwrap().value(), "7 ACK");
    assert_eq!(
        ack.to_header().unwrap().tag().unwrap().unwrap().to_string(),
        "agent"
    );
    assert_eq!(ack.from_header().unwrap(), invite.from_header().unwrap());
    assert_eq!(
        ack.call_id_header().unwrap(),
        invite.call_id_header().unwrap()
    );
    assert_eq!(ack.route_header(), invite.route_header());
    assert!(matches!(
        out.events.as_slice(),
        [TxEvent::Response { response, .. }] if response.status_code.code() == 486
    ));
    let ack_bytes = out.sent[0].1.clone();

    layer.handle_message(
        final_at + ms(500),
        wire_reply(&invite, 486, Some("agent")),
        udp(),
    );
    let out = drain(&mut layer);
    assert!(
        out.events.is_empty(),
        "retransmitted final is not passed up"
    );
    assert_eq!(out.sent.len(), 1);
    assert_eq!(
        out.sent[0].1.as_ptr(),
        ack_bytes.as_ptr(),
        "ACK resent as is"
    );

    assert_eq!(
        layer.cancel(final_at, &key),
        Err(TxError::InvalidState {
            key: key.clone(),
            state: TxState::Completed,
            action: "CANCEL"
        })
    );

    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, final_at + Duration::from_secs(32), "Timer D");
    assert_eq!(firings[0].1.events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn invite_client_passes_every_2xx_up_while_accepted() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = outgoing("INVITE", "z9hG4bKuac3");
    let key = layer.send_request(t0, invite.clone(), udp()).unwrap();
    drain(&mut layer);

    for at in [ms(100), ms(600), ms(1_600)] {
        layer.handle_message(t0 + at, wire_reply(&invite, 200, Some("agent")), udp());
        let out = drain(&mut layer);
        assert!(out.sent.is_empty(), "the 2xx ACK is the TU's job");
        assert!(matches!(
            out.events.as_slice(),
            [TxEvent::Response { key: k, response }]
                if *k == key && response.status_code.code() == 200
        ));
    }
    assert_eq!(layer.state(&key), Some(TxState::Accepted));
    layer.handle_message(
        t0 + ms(1_700),
        wire_reply(&invite, 486, Some("other")),
        udp(),
    );
    assert!(
        drain(&mut layer).is_empty(),
        "non-2xx after a 2xx is absorbed"
    );

    let firings = drive(&mut layer, t0 + ms(100) + T64);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, t0 + ms(100) + T64, "Timer M");
    assert!(firings[0].1.sent.is_empty(), "Timer A stopped at the 2xx");
    assert_eq!(firings[0].1.events, vec![TxEvent::Terminated { key }]);

    let late = wire_reply(&invite, 200, Some("agent"));
    layer.handle_message(t0 + ms(40_000), late.clone(), udp());
    assert_eq!(
        drain(&mut layer).events,
        vec![TxEvent::Stray2xx {
            response: Response::try_from(late).unwrap(),
            from: udp()
        }]
    );
    finish(&mut layer, t0);
}

#[test]
fn invite_client_over_tcp_has_no_timer_a_and_no_timer_d() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = outgoing("INVITE", "z9hG4bKuac4");
    let key = layer.send_request(t0, invite.clone(), tcp()).unwrap();
    assert_eq!(drain(&mut layer).sent[0].0, tcp());
    assert_eq!(layer.poll_timeout(), Some(t0 + T64), "only Timer B");

    layer.handle_message(t0 + ms(3_000), wire_reply(&invite, 404, Some("x")), tcp());
    let out = drain(&mut layer);
    assert_eq!(out.methods(), vec![Method::Ack]);
    assert_eq!(out.sent[0].0, tcp());
    assert!(matches!(out.events.as_slice(),
        [TxEvent::Response { .. }, TxEvent::Terminated { key: k }] if *k == key));
    finish(&mut layer, t0);

    let key = layer
        .send_request(t0, outgoing("INVITE", "z9hG4bKuac5"), tcp())
        .unwrap();
    drain(&mut layer);
    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, t0 + T64);
    assert!(firings[0].1.sent.is_empty());
    assert_eq!(
        firings[0].1.events,
        vec![
            TxEvent::Timeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
}

// ---------------------------------------------------------------- non-INVITE client

#[test]
fn non_invite_client_timer_e_caps_at_t2_and_timer_f_times_out() {
    let t0 = Instant::now();
    let mut layer = layer();
    let key = layer
        .send_request(t0, outgoing("OPTIONS", "z9hG4bKo1"), udp())
        .unwrap();
    assert_eq!(drain(&mut layer).methods(), vec![Method::Options]);

    let firings = drive(&mut layer, t0 + T64 - ms(1));
    assert_eq!(
        transmit_offsets(&firings, t0),
        secs(&[500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500])
    );
    assert!(firings
        .iter()
        .all(|(_, out)| out.events.is_empty() && out.methods() == vec![Method::Options]));

    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, t0 + T64, "Timer F");
    assert_eq!(
        firings[0].1.events,
        vec![
            TxEvent::Timeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
}

#[test]
fn non_invite_client_retransmits_at_t2_after_a_provisional_and_ends_with_timer_k() {
    let t0 = Instant::now();
    let mut layer = layer();
    let bye = outgoing("BYE", "z9hG4bKb1");
    let key = layer.send_request(t0, bye.clone(), udp()).unwrap();
    drain(&mut layer);

    let firings = drive(&mut layer, t0 + ms(600));
    assert_eq!(transmit_offsets(&firings, t0), secs(&[500]));
    layer.handle_message(t0 + ms(600), wire_reply(&bye, 100, None), udp());
    let out = drain(&mut layer);
    assert!(
        matches!(out.events.as_slice(), [TxEvent::Response { response, .. }]
        if response.status_code.code() == 100)
    );
    assert_eq!(layer.state(&key), Some(TxState::Proceeding));

    // Timer E already armed for 1.5 s still fires, then repeats every T2.
    let firings = drive(&mut layer, t0 + ms(10_000));
    assert_eq!(transmit_offsets(&firings, t0), secs(&[1_500, 5_500, 9_500]));

    let final_at = t0 + ms(10_000);
    layer.handle_message(final_at, wire_reply(&bye, 200, None), udp());
    let out = drain(&mut layer);
    assert!(out.sent.is_empty());
    assert!(
        matches!(out.events.as_slice(), [TxEvent::Response { response, .. }]
        if response.status_code.code() == 200)
    );
    assert_eq!(layer.state(&key), Some(TxState::Completed));
    layer.handle_message(final_at + ms(1), wire_reply(&bye, 200, None), udp());
    assert!(drain(&mut layer).is_empty(), "retransmitted final absorbed");

    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, final_at + T4, "Timer K");
    assert!(firings[0].1.sent.is_empty());
    assert_eq!(firings[0].1.events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn non_invite_client_over_tcp_ends_on_its_final_response() {
    let t0 = Instant::now();
    let mut layer = layer();
    let register = outgoing("REGISTER", "z9hG4bKr1");
    let key = layer.send_request(t0, register.clone(), tcp()).unwrap();
    drain(&mut layer);
    assert_eq!(layer.poll_timeout(), Some(t0 + T64), "only Timer F");
    layer.handle_message(t0 + ms(100), wire_reply(&register, 200, None), tcp());
    let out = drain(&mut layer);
    assert!(matches!(out.events.as_slice(),
        [TxEvent::Response { .. }, TxEvent::Terminated { key: k }] if *k == key));
    finish(&mut layer, t0);
}

// ---------------------------------------------------------------- CANCEL, server side

#[test]
fn cancel_is_matched_to_its_invite_server_transaction() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKc1"), None);
    layer.handle_message(t0, invite.clone(), udp());
    let invite_key = request_key(&drain(&mut layer));

    let cancel = incoming("CANCEL", &branch("z9hG4bKc1"), None);
    layer.handle_message(t0 + ms(100), cancel.clone(), udp());
    let out = drain(&mut layer);
    assert!(out.sent.is_empty());
    let cancel_key = match out.events.as_slice() {
        [TxEvent::Cancel {
            key,
            invite,
            request,
            from,
        }] => {
            assert_eq!(invite.as_ref(), Some(&invite_key));
            assert_eq!(*request, as_request(&cancel));
            assert_eq!(*from, udp());
            assert_ne!(*key, invite_key);
            assert_eq!(key.method(), Method::Cancel);
            key.clone()
        }
        other => panic!("unexpected {other:?}"),
    };

    layer
        .respond(
            t0 + ms(100),
            &cancel_key,
            reply(&as_request(&cancel), 200, Some("uas")),
        )
        .unwrap();
    layer
        .respond(
            t0 + ms(100),
            &invite_key,
            reply(&as_request(&invite), 487, Some("uas")),
        )
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![200, 487]);

    layer.handle_message(t0 + ms(200), cancel, udp());
    let out = drain(&mut layer);
    assert_eq!(
        out.statuses(),
        vec![200],
        "CANCEL retransmission gets its 200 again"
    );
    assert!(out.events.is_empty());
    layer.handle_message(
        t0 + ms(300),
        incoming("ACK", &branch("z9hG4bKc1"), Some("uas")),
        udp(),
    );
    assert!(drain(&mut layer).is_empty());
    assert_eq!(layer.state(&invite_key), Some(TxState::Confirmed));

    let terminated: Vec<TxEvent> = finish(&mut layer, t0)
        .into_iter()
        .flat_map(|(_, out)| out.events)
        .collect();
    assert_eq!(
        terminated,
        vec![
            TxEvent::Terminated { key: invite_key },
            TxEvent::Terminated { key: cancel_key }
        ]
    );
}

#[test]
fn cancel_for_an_unknown_invite_names_none() {
    let t0 = Instant::now();
    let mut layer = layer();
    let cancel = incoming("CANCEL", &branch("z9hG4bKnone"), None);
    layer.handle_message(t0, cancel.clone(), udp());
    let out = drain(&mut layer);
    let key = match out.events.as_slice() {
        [TxEvent::Cancel {
            key, invite: None, ..
        }] => key.clone(),
        other => panic!("unexpected {other:?}"),
    };
    layer
        .respond(t0, &key, reply(&as_request(&cancel), 481, Some("x")))
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![481]);
    finish(&mut layer, t0);
}

#[test]
fn cancel_racing_a_2xx_still_names_the_accepted_invite() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKrace"), None);
    layer.handle_message(t0, invite.clone(), udp());
    let invite_key = request_key(&drain(&mut layer));
    layer
        .respond(
            t0,
            &invite_key,
            reply(&as_request(&invite), 200, Some("uas")),
        )
        .unwrap();
    drain(&mut layer);

    let cancel = incoming("CANCEL", &branch("z9hG4bKrace"), None);
    layer.handle_message(t0 + ms(10), cancel.clone(), udp());
    let cancel_key = match drain(&mut layer).events.as_slice() {
        [TxEvent::Cancel { key, invite, .. }] => {
            assert_eq!(invite.as_ref(), Some(&invite_key));
            key.clone()
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(layer.state(&invite_key), Some(TxState::Accepted));
    assert!(matches!(
        layer.respond(
            t0 + ms(10),
            &invite_key,
            reply(&as_request(&invite), 487, Some("uas"))
        ),
        Err(TxError::InvalidState { .. })
    ));
    layer
        .respond(
            t0 + ms(10),
            &cancel_key,
            reply(&as_request(&cancel), 200, Some("uas")),
        )
        .unwrap();
    assert_eq!(drain(&mut layer).statuses(), vec![200]);
    finish(&mut layer, t0);
}

// ---------------------------------------------------------------- CANCEL, client side

#[test]
fn client_cancel_waits_for_the_first_provisional() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = outgoing("INVITE", "z9hG4bKcc1");
    let key = layer.send_request(t0, invite.clone(), udp()).unwrap();
    drain(&mut layer);

    layer.cancel(t0 + ms(100), &key).unwrap();
    assert!(
        drain(&mut layer).is_empty(),
        "no CANCEL before a provisional"
    );
    layer.handle_timeout(t0 + ms(500));
    assert_eq!(
        drain(&mut layer).methods(),
        vec![Method::Invite],
        "Timer A keeps going"
    );

    let ringing_at = t0 + ms(600);
    layer.handle_message(ringing_at, wire_reply(&invite, 180, Some("agent")), udp());
    let out = drain(&mut layer);
    assert!(matches!(out.events.as_slice(), [TxEvent::Response { .. }]));
    let cancel = out.only_request();
    assert_eq!(out.sent[0].0, udp());
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, invite.uri);
    assert_eq!(cancel.via_header().unwrap(), invite.via_header().unwrap());
    assert_eq!(cancel.cseq_header().unwrap().value(), "7 CANCEL");
    assert_eq!(cancel.to_header().unwrap(), invite.to_header().unwrap());
    assert_eq!(cancel.from_header().unwrap(), invite.from_header().unwrap());
    assert_eq!(
        cancel.call_id_header().unwrap(),
        invite.call_id_header().unwrap()
    );
    assert_eq!(cancel.route_header(), invite.route_header());
    assert_eq!(layer.len(), 2);

    layer.cancel(ringing_at, &key).unwrap();
    assert!(drain(&mut layer).is_empty(), "second cancel is a no-op");

    // The CANCEL is retransmitted by its own Timer E; the INVITE is not.
    let firings = drive(&mut layer, ringing_at + ms(500));
    assert_eq!(transmit_offsets(&firings, ringing_at), secs(&[500]));
    assert_eq!(firings[0].1.methods(), vec![Method::Cancel]);

    layer.handle_message(
        ringing_at + ms(600),
        wire_reply(&cancel, 200, Some("agent")),
        udp(),
    );
    assert!(
        drain(&mut layer).is_empty(),
        "CANCEL responses stay inside the layer"
    );
    layer.handle_message(
        ringing_at + ms(700),
        wire_reply(&invite, 487, Some("agent")),
        udp(),
    );
    let out = drain(&mut layer);
    assert_eq!(out.methods(), vec![Method::Ack]);
    assert!(
        matches!(out.events.as_slice(), [TxEvent::Response { response, .. }]
        if response.status_code.code() == 487)
    );

    let events: Vec<TxEvent> = finish(&mut layer, t0)
        .into_iter()
        .flat_map(|(_, out)| out.events)
        .collect();
    assert_eq!(
        events,
        vec![TxEvent::Terminated { key }],
        "only the INVITE is reported"
    );
}

#[test]
fn client_cancel_after_a_provisional_goes_out_at_once_and_bounds_the_invite() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = outgoing("INVITE", "z9hG4bKcc2");
    let key = layer.send_request(t0, invite.clone(), udp()).unwrap();
    layer.handle_message(
        t0 + ms(1_000),
        wire_reply(&invite, 183, Some("agent")),
        udp(),
    );
    drain(&mut layer);

    let cancel_at = t0 + ms(2_000);
    layer.cancel(cancel_at, &key).unwrap();
    assert_eq!(drain(&mut layer).methods(), vec![Method::Cancel]);
    // A later provisional must not clear the post-CANCEL deadline.
    layer.handle_message(
        cancel_at + ms(100),
        wire_reply(&invite, 180, Some("agent")),
        udp(),
    );
    drain(&mut layer);

    // Nobody answers: the CANCEL times out silently, the INVITE reports Timeout (§9.1).
    layer.handle_timeout(cancel_at + T64 - ms(1));
    let out = drain(&mut layer);
    assert!(out.events.is_empty());
    assert!(out.methods().iter().all(|m| *m == Method::Cancel));
    layer.handle_timeout(cancel_at + T64);
    assert_eq!(
        drain(&mut layer).events,
        vec![
            TxEvent::Timeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    finish(&mut layer, t0);
}

#[test]
fn client_cancel_rejects_wrong_targets() {
    let t0 = Instant::now();
    let mut layer = layer();
    let options = layer
        .send_request(t0, outgoing("OPTIONS", "z9hG4bKw1"), udp())
        .unwrap();
    assert!(matches!(
        layer.cancel(t0, &options),
        Err(TxError::WrongKind { .. })
    ));
    let invite = outgoing("INVITE", "z9hG4bKw2");
    let key = layer.send_request(t0, invite.clone(), udp()).unwrap();
    layer.handle_message(t0, wire_reply(&invite, 200, Some("a")), udp());
    assert!(matches!(
        layer.cancel(t0, &key),
        Err(TxError::InvalidState {
            state: TxState::Accepted,
            ..
        })
    ));
    finish(&mut layer, t0);
    assert_eq!(
        layer.cancel(t0, &key),
        Err(TxError::UnknownTransaction(key))
    );
}

// ---------------------------------------------------------------- RFC 2543 fallback

#[test]
fn rfc2543_invite_retransmission_and_ack_match_without_a_branch() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", "", None);
    layer.handle_message(t0, invite.clone(), udp());
    let key = request_key(&drain(&mut layer));
    assert!(key.is_legacy());

    layer.handle_message(t0 + ms(500), invite.clone(), udp());
    let out = drain(&mut layer);
    assert_eq!(out.statuses(), vec![100]);
    assert!(out.events.is_empty());
    assert_eq!(layer.len(), 1);

    layer
        .respond(
            t0 + ms(600),
            &key,
            reply(&as_request(&invite), 486, Some("srv")),
        )
        .unwrap();
    drain(&mut layer);
    layer.handle_message(t0 + ms(700), invite.clone(), udp());
    assert_eq!(drain(&mut layer).statuses(), vec![486]);

    // An ACK carrying another To tag acknowledges some other response: TU's business.
    let foreign = incoming("ACK", "", Some("elsewhere"));
    layer.handle_message(t0 + ms(800), foreign.clone(), udp());
    assert_eq!(
        drain(&mut layer).events,
        vec![TxEvent::Ack {
            request: as_request(&foreign),
            from: udp()
        }]
    );
    assert_eq!(layer.state(&key), Some(TxState::Completed));

    layer.handle_message(t0 + ms(900), incoming("ACK", "", Some("srv")), udp());
    assert!(drain(&mut layer).is_empty());
    assert_eq!(layer.state(&key), Some(TxState::Confirmed));
    finish(&mut layer, t0);
}

#[test]
fn rfc2543_cancel_and_non_invite_requests_match_without_a_cookie() {
    let t0 = Instant::now();
    let mut layer = layer();
    // A branch without the magic cookie is treated like no branch at all.
    let old_branch = branch("1a2b3c");
    layer.handle_message(t0, incoming("INVITE", &old_branch, None), udp());
    let invite_key = request_key(&drain(&mut layer));
    assert!(invite_key.is_legacy());

    layer.handle_message(t0 + ms(10), incoming("CANCEL", &old_branch, None), udp());
    assert!(matches!(
        drain(&mut layer).events.as_slice(),
        [TxEvent::Cancel { invite: Some(k), .. }] if *k == invite_key
    ));

    let options = incoming("OPTIONS", "", None);
    layer.handle_message(t0, options.clone(), udp());
    let key = request_key(&drain(&mut layer));
    layer
        .respond(t0, &key, reply(&as_request(&options), 200, Some("o")))
        .unwrap();
    drain(&mut layer);
    layer.handle_message(t0 + ms(10), options, udp());
    let out = drain(&mut layer);
    assert_eq!(out.statuses(), vec![200]);
    assert!(out.events.is_empty());

    // The INVITE was never answered: its transaction waits for the TU; answer and run out.
    layer
        .respond(
            t0,
            &invite_key,
            reply(
                &as_request(&incoming("INVITE", &old_branch, None)),
                487,
                Some("i"),
            ),
        )
        .unwrap();
    layer.handle_message(t0 + ms(20), incoming("ACK", &old_branch, Some("i")), udp());
    drain(&mut layer);
    finish(&mut layer, t0);
}

// ---------------------------------------------------------------- matching details

#[test]
fn same_branch_from_different_sent_by_is_a_different_transaction() {
    let t0 = Instant::now();
    let mut layer = layer();
    let first = incoming("OPTIONS", &branch("z9hG4bKdup"), None);
    let second = SipMessage::try_from(
        first
            .to_string()
            .replace("127.0.0.1:5070", "127.0.0.2:5070"),
    )
    .unwrap();
    layer.handle_message(t0, first, udp());
    layer.handle_message(t0, second, udp());
    let out = drain(&mut layer);
    assert_eq!(out.events.len(), 2);
    assert_eq!(layer.len(), 2);
    finish(&mut layer, t0);
}

#[test]
fn malformed_input_is_dropped_without_panicking() {
    let t0 = Instant::now();
    let mut layer = layer();
    let good = incoming("INVITE", &branch("z9hG4bKm"), None).to_string();
    let broken = [
        good.replace("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKm\r\n", ""),
        good.replace(
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKm",
            "Via: garbage",
        ),
        good.replace("CSeq: 1 INVITE", "CSeq: one INVITE"),
        good.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
        good.replace("CSeq: 1 INVITE\r\n", ""),
        // RFC 2543 fallback needs a Call-ID.
        good.replace(";branch=z9hG4bKm", "")
            .replace("Call-ID: call-1@127.0.0.1\r\n", ""),
    ];
    for text in broken {
        let message = SipMessage::try_from(text.as_str()).unwrap();
        layer.handle_message(t0, message, udp());
        assert!(drain(&mut layer).is_empty(), "accepted: {text}");
    }
    // Missing From/To tags are fine for RFC 2543 matching.
    let no_tags = good
        .replace(";branch=z9hG4bKm", "")
        .replace(";tag=caller1", "");
    layer.handle_message(t0, SipMessage::try_from(no_tags.as_str()).unwrap(), udp());
    let key = request_key(&drain(&mut layer));
    layer.handle_message(t0, SipMessage::try_from(no_tags.as_str()).unwrap(), udp());
    assert_eq!(drain(&mut layer).statuses(), vec![100]);
    layer
        .respond(
            t0,
            &key,
            reply(
                &as_request(&SipMessage::try_from(no_tags.as_str()).unwrap()),
                500,
                Some("e"),
            ),
        )
        .unwrap();
    drain(&mut layer);

    let invite = outgoing("INVITE", "z9hG4bKm2");
    let mut no_via = reply(&invite, 486, Some("a"));
    no_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    let mut impossible = reply(&invite, 200, Some("a"));
    impossible.status_code = StatusCode::from(99);
    let options_ok = reply(&outgoing("OPTIONS", "z9hG4bKm3"), 200, Some("a"));
    for response in [
        no_via,
        impossible,
        reply(&invite, 486, Some("a")),
        options_ok,
    ] {
        layer.handle_message(t0, SipMessage::Response(response), udp());
        assert!(drain(&mut layer).is_empty());
    }
    // A stray 2xx to INVITE surfaces even without a usable branch, for the UAC core to ACK.
    let mut stray = reply(&invite, 200, Some("a"));
    stray.headers.retain(|h| !matches!(h, Header::Via(_)));
    layer.handle_message(t0, SipMessage::Response(stray.clone()), udp());
    assert_eq!(
        drain(&mut layer).events,
        vec![TxEvent::Stray2xx {
            response: stray,
            from: udp()
        }]
    );
    finish(&mut layer, t0);
}

#[test]
fn send_request_and_respond_reject_misuse() {
    let t0 = Instant::now();
    let mut layer = layer();
    let mut no_via = outgoing("OPTIONS", "z9hG4bKx");
    no_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    assert_eq!(
        layer.send_request(t0, no_via, udp()),
        Err(TxError::InvalidRequest(Malformed::MissingHeader("Via")))
    );
    assert_eq!(
        layer.send_request(t0, outgoing("OPTIONS", "plainbranch"), udp()),
        Err(TxError::InvalidRequest(Malformed::MissingBranch))
    );
    assert_eq!(
        layer.send_request(t0, outgoing("ACK", "z9hG4bKack"), udp()),
        Err(TxError::AckIsNotATransaction)
    );
    let mismatched = Request::try_from(
        outgoing("BYE", "z9hG4bKmm")
            .to_string()
            .replace("CSeq: 7 BYE", "CSeq: 7 INFO"),
    )
    .unwrap();
    assert!(matches!(
        layer.send_request(t0, mismatched, udp()),
        Err(TxError::InvalidRequest(
            Malformed::CSeqMethodMismatch { .. }
        ))
    ));
    assert!(drain(&mut layer).is_empty());

    let options = outgoing("OPTIONS", "z9hG4bKy");
    let key = layer.send_request(t0, options.clone(), udp()).unwrap();
    assert_eq!(
        layer.send_request(t0, options.clone(), udp()),
        Err(TxError::DuplicateTransaction(key.clone()))
    );
    assert!(matches!(
        layer.respond(t0, &key, reply(&options, 200, None)),
        Err(TxError::WrongKind { .. })
    ));
    let mut bogus = reply(&options, 200, None);
    bogus.status_code = StatusCode::from(700);
    assert_eq!(
        layer.respond(t0, &key, bogus),
        Err(TxError::InvalidStatus(700))
    );
    finish(&mut layer, t0);
}

#[test]
fn send_stateless_queues_the_serialised_message() {
    let mut layer = layer();
    let ack = SipMessage::Request(outgoing("ACK", "z9hG4bKs"));
    layer.send_stateless(udp(), &ack);
    let out = drain(&mut layer);
    assert_eq!(out.sent.len(), 1);
    assert_eq!(out.sent[0].0, udp());
    assert_eq!(out.sent[0].2, ack);
    assert_eq!(layer.len(), 0);
}

#[test]
fn new_branch_has_the_cookie_and_is_unique() {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let a = new_branch(&mut rng);
    let b = new_branch(&mut rng);
    assert!(a.starts_with(MAGIC_COOKIE));
    assert!(a.len() > MAGIC_COOKIE.len() + 16);
    assert_ne!(a, b);
}

#[test]
fn late_handle_timeout_fires_everything_due_in_order() {
    let t0 = Instant::now();
    let mut layer = layer();
    let key = layer
        .send_request(t0, outgoing("INVITE", "z9hG4bKlate"), udp())
        .unwrap();
    drain(&mut layer);
    // One call long after the fact: every retransmission, then Timer B, then nothing leaks.
    layer.handle_timeout(t0 + Duration::from_secs(100));
    let out = drain(&mut layer);
    assert_eq!(out.methods(), vec![Method::Invite; 6]);
    assert_eq!(
        out.events,
        vec![
            TxEvent::Timeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    finish(&mut layer, t0);
}

#[test]
fn many_interleaved_transactions_all_drain() {
    let t0 = Instant::now();
    let mut layer = layer();
    let mut server_keys = Vec::new();
    for n in 0..50 {
        let invite = incoming("INVITE", &branch(&format!("z9hG4bKmany{n}")), None);
        layer.handle_message(t0 + ms(n), invite.clone(), udp());
        server_keys.push((request_key(&drain(&mut layer)), as_request(&invite)));
        layer
            .send_request(
                t0 + ms(n),
                outgoing("OPTIONS", &format!("z9hG4bKout{n}")),
                udp(),
            )
            .unwrap();
    }
    for (n, (key, invite)) in server_keys.iter().enumerate() {
        let status = if n % 2 == 0 { 200 } else { 486 };
        layer
            .respond(t0 + ms(100), key, reply(invite, status, Some("t")))
            .unwrap();
    }
    assert_eq!(layer.len(), 100);
    drain(&mut layer);
    let terminated = finish(&mut layer, t0)
        .into_iter()
        .flat_map(|(_, out)| out.events)
        .filter(|event| matches!(event, TxEvent::Terminated { .. }))
        .count();
    assert_eq!(terminated, 100);
}

#[test]
fn rfc2543_non_invite_requests_differing_in_to_tag_are_separate() {
    let t0 = Instant::now();
    let mut layer = layer();
    layer.handle_message(t0, incoming("BYE", "", Some("leg-a")), udp());
    layer.handle_message(t0, incoming("BYE", "", Some("leg-b")), udp());
    let out = drain(&mut layer);
    assert_eq!(
        out.events.len(),
        2,
        "each To tag starts its own transaction"
    );
    assert_eq!(layer.len(), 2);
    finish(&mut layer, t0);
}

#[test]
fn invite_server_over_tcp_keeps_timer_l_at_64_t1() {
    let t0 = Instant::now();
    let mut layer = layer();
    let invite = incoming("INVITE", &branch("z9hG4bKtcpl"), None);
    layer.handle_message(t0, invite.clone(), tcp());
    let key = request_key(&drain(&mut layer));
    layer
        .respond(t0, &key, reply(&as_request(&invite), 200, Some("uas")))
        .unwrap();
    drain(&mut layer);
    let firings = finish(&mut layer, t0);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].0, t0 + T64);
    assert_eq!(firings[0].1.events, vec![TxEvent::Terminated { key }]);
}
