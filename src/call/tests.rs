//! Switchboard scenarios driven with simulated time (`sim::Simulator`): every timer is an
//! input, so minutes of call run in microseconds.

use std::time::{Duration, Instant, SystemTime};

use super::sim::Simulator;
use super::*;
use crate::media::dtmf::DtmfSource;
use crate::media::leg::{LegId, MediaCommand, MediaEvent};
use crate::media::prompts::Prompt;
use crate::sdp::Codec;
use crate::sip::transaction::TimerConfig;
use crate::sip::transport::TransportKind;
use crate::sip::ua::{UaConfig, ALLOW};

/// Short tones standing in for the welcome, digit and goodbye prompts.
fn test_prompts() -> PromptLibrary {
    let names = [
        "welcome",
        "goodbye",
        "digit_5",
        "digit_pound",
        "agent_paused",
        "agent_available",
        "music_on_hold",
    ];
    PromptLibrary::from_prompts(
        names
            .iter()
            .map(|name| Prompt::from_samples(name, "en", &[0.1; 400])),
    )
}

const CALLER: &str = "127.0.0.1:6000";

/// The switchboard settings of every scenario here (and of other modules' tests).
pub(crate) fn config() -> SwitchboardConfig {
    SwitchboardConfig {
        sip: UaConfig {
            local: "127.0.0.1:5060".parse().unwrap(),
            public_ip: "127.0.0.1".parse().unwrap(),
            timers: TimerConfig {
                t1: Duration::from_millis(500),
                t2: Duration::from_secs(4),
                t4: Duration::from_secs(5),
            },
            max_message_size: 16384,
        },
        max_call_duration: Duration::from_secs(180),
        answer_delay: Duration::ZERO,
        rtp_timeout: Duration::from_secs(30),
        rtp_port_min: 30000,
        rtp_port_max: 30010,
    }
}

pub(super) fn udp() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: CALLER.parse().unwrap(),
    }
}

fn tcp() -> Peer {
    Peer {
        transport: TransportKind::Tcp,
        addr: CALLER.parse().unwrap(),
    }
}

pub(super) const PCMU_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

pub(super) fn invite_with(
    call_id: &str,
    branch: &str,
    extra: &str,
    content_type: &str,
    body: &str,
) -> String {
    let content_type = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {content_type}\r\n")
    };
    format!(
        "INVITE sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6000;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:37060000000@127.0.0.1>;tag=caller\r\n\
         To: <sip:19118@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@127.0.0.1:6000>\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn invite(call_id: &str) -> String {
    invite_with(call_id, "z9hG4bK-inv-1", "", "application/sdp", PCMU_OFFER)
}

/// An in-dialog request from the caller (ACK, BYE, INFO, re-INVITE...).
pub(super) fn in_dialog(
    method: &str,
    call_id: &str,
    to_tag: &str,
    cseq: u32,
    branch: &str,
    body: &str,
) -> String {
    let cseq_method = if method == "ACK" && cseq == 1 {
        "ACK"
    } else {
        method
    };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6000;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:37060000000@127.0.0.1>;tag=caller\r\n\
         To: <sip:19118@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {cseq_method}\r\n\
         Contact: <sip:caller@127.0.0.1:6000>\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(super) struct Harness {
    pub(super) sim: Simulator,
    pub(super) sent: Vec<(Duration, Peer, String)>,
    pub(super) media: Vec<MediaCommand>,
    ended: Vec<(String, EndReason)>,
    started: Vec<String>,
    pub(super) records: Vec<crate::cdr::CallRecord>,
    /// Host names the switchboard asked the driver to look up.
    pub(super) resolves: Vec<String>,
    /// Results of calls placed through trunks.
    pub(super) placed: Vec<(u64, TrunkCallResult)>,
    /// Agents' availability changes (audit rows).
    pub(super) agent_states: Vec<crate::cdr::AgentStateChange>,
    /// Callback requests' rows as written.
    pub(super) callback_rows: Vec<crate::cdr::CallbackRow>,
    /// Claims of callback requests are answered with this (another node has it when false).
    pub(super) grant_claims: bool,
}

impl Harness {
    pub(super) fn new(config: SwitchboardConfig) -> Self {
        Self::with_seed(config, 7)
    }

    fn with_seed(config: SwitchboardConfig, seed: u64) -> Self {
        Self::build(config, seed, test_prompts(), false)
    }

    /// With these prompts, each ending after its length as the media driver's would.
    pub(super) fn with_prompts(config: SwitchboardConfig, prompts: PromptLibrary) -> Self {
        Self::build(config, 7, prompts, true)
    }

    fn build(
        config: SwitchboardConfig,
        seed: u64,
        prompts: PromptLibrary,
        finish_prompts: bool,
    ) -> Self {
        let switchboard = Switchboard::new(
            config,
            Arc::new(prompts),
            Box::new(|_| Box::new(crate::ivr::echo::EchoFlow::new("en"))),
            seed,
        );
        Self {
            sim: Simulator::new(
                switchboard,
                Instant::now(),
                SystemTime::UNIX_EPOCH,
                finish_prompts,
            ),
            sent: Vec::new(),
            media: Vec::new(),
            ended: Vec::new(),
            started: Vec::new(),
            records: Vec::new(),
            resolves: Vec::new(),
            placed: Vec::new(),
            agent_states: Vec::new(),
            callback_rows: Vec::new(),
            grant_claims: true,
        }
    }

    pub(super) fn switchboard(&mut self) -> &mut Switchboard {
        &mut self.sim.switchboard
    }

    pub(super) fn receive(&mut self, from: Peer, text: &str) {
        self.input(Input::Sip {
            from,
            bytes: text.as_bytes(),
        });
    }

    pub(super) fn input(&mut self, input: Input<'_>) {
        self.sim.input(input);
        self.collect();
    }

    fn media_event(&mut self, event: MediaEvent) {
        self.input(Input::Media(event));
    }

    pub(super) fn collect(&mut self) {
        self.sim.collect();
        let mut claims = Vec::new();
        while let Some((at, output)) = self.sim.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    let text = String::from_utf8_lossy(&transmit.bytes).into_owned();
                    self.sent.push((at - self.sim.t0, transmit.to, text));
                }
                Output::Media(command) => self.media.push(command),
                Output::Resolve { host, .. } => self.resolves.push(host),
                Output::TrunkCallEnded { request, result } => self.placed.push((request, result)),
                Output::AgentState(change) => self.agent_states.push(change),
                Output::Callback(row) => self.callback_rows.push(row),
                Output::ClaimCallback { request, .. } => claims.push(request),
                Output::Record(Record::Started(start)) => self.started.push(start.call_id),
                Output::Record(Record::Ended { record, reason, .. }) => {
                    if !matches!(reason, EndReason::Rejected(_)) || record.ivr_answered.is_some() {
                        self.ended.push((record.call_id.clone(), reason));
                    }
                    self.records.push(*record);
                }
            }
        }
        // The store answers a claim at once (a database round trip in the service).
        for request in claims {
            let granted = self.grant_claims;
            self.sim.input(Input::CallbackClaimed { request, granted });
            self.collect();
        }
    }

    /// Advances simulated time firing every timer on the way, like the driver does.
    pub(super) fn advance_to(&mut self, offset: Duration) {
        let target = self.sim.t0 + offset;
        while let Some(at) = self.sim.next_event().filter(|at| *at <= target) {
            self.sim.run_until(at);
            self.collect();
        }
        self.sim.run_until(target);
    }

    pub(super) fn take_sent(&mut self) -> Vec<(Duration, Peer, String)> {
        std::mem::take(&mut self.sent)
    }

    fn first_lines(&mut self) -> Vec<String> {
        self.take_sent()
            .into_iter()
            .map(|(_, _, text)| text.lines().next().unwrap_or_default().to_string())
            .collect()
    }
}

pub(super) fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

pub(super) fn to_tag(message: &str) -> String {
    let to = header(message, "To").unwrap();
    to.split(";tag=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Answers a call, has the caller ACK it (media starts then) and returns our To tag.
pub(super) fn answered_call(h: &mut Harness, call_id: &str) -> String {
    h.receive(udp(), &invite(call_id));
    let sent = h.take_sent();
    let ok = sent
        .iter()
        .find(|(_, _, text)| text.starts_with("SIP/2.0 200"))
        .expect("200 OK");
    let tag = to_tag(&ok.2);
    h.receive(
        udp(),
        &in_dialog("ACK", call_id, &tag, 1, "z9hG4bK-ack-1", ""),
    );
    tag
}

#[test]
fn basic_call_is_answered_with_sdp_and_ended_by_caller_bye() {
    let mut h = Harness::new(config());
    h.receive(udp(), &invite("basic-1"));
    let sent = h.take_sent();
    let lines: Vec<_> = sent
        .iter()
        .map(|(_, _, t)| t.lines().next().unwrap())
        .collect();
    assert_eq!(lines, vec!["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]);
    let ok = &sent[1].2;
    assert!(ok.contains("m=audio 30000 RTP/AVP 0 101"), "{ok}");
    assert!(ok.contains("a=ptime:20"), "{ok}");
    assert!(header(ok, "Contact")
        .unwrap()
        .contains("sip:19118@127.0.0.1:5060"));
    assert_eq!(header(ok, "Content-Type"), Some("application/sdp"));
    let tag = to_tag(ok);
    assert!(
        h.media.is_empty(),
        "no RTP before the ACK confirms the caller"
    );

    h.receive(
        udp(),
        &in_dialog("ACK", "basic-1", &tag, 1, "z9hG4bK-ack-1", ""),
    );
    assert!(
        matches!(&h.media[..], [MediaCommand::Start { local_port: 30000, session, .. }, ..]
        if session.remote == Some("127.0.0.1:6002".parse().unwrap()) && session.telephone_event == Some(101))
    );
    h.advance_to(Duration::from_secs(10));
    assert!(h.take_sent().is_empty(), "no 2xx retransmission after ACK");

    h.receive(
        udp(),
        &in_dialog("BYE", "basic-1", &tag, 2, "z9hG4bK-bye-1", ""),
    );
    assert_eq!(h.first_lines(), vec!["SIP/2.0 200 OK"]);
    assert_eq!(
        h.ended,
        vec![("basic-1".to_string(), EndReason::CallerHungUp)]
    );
    assert!(matches!(h.media.last(), Some(MediaCommand::Stop { .. })));
    h.advance_to(Duration::from_secs(60));
    assert_eq!(
        h.switchboard().stats(),
        SwitchboardStats::default(),
        "nothing leaks"
    );
}

#[test]
fn unacknowledged_2xx_is_resent_at_t1_doubling_to_t2_then_bye_after_64_t1() {
    // A spoofed INVITE (the real owner of the address never ACKs) gets no RTP at all.
    let mut h = Harness::new(config());
    h.receive(udp(), &invite("noack-1"));
    h.take_sent();
    h.advance_to(Duration::from_secs(40));
    let sent = h.take_sent();
    let ok_times: Vec<u64> = sent
        .iter()
        .filter(|(_, _, t)| t.starts_with("SIP/2.0 200"))
        .map(|(at, _, _)| at.as_millis() as u64)
        .collect();
    // T1 = 500 ms: resends at 0.5, 1.5, 3.5, 7.5 s, then every T2 = 4 s until 64·T1 = 32 s.
    assert_eq!(
        ok_times,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    let bye: Vec<_> = sent
        .iter()
        .filter(|(_, _, t)| t.starts_with("BYE "))
        .collect();
    assert_eq!(bye[0].0, Duration::from_secs(32), "BYE exactly at 64·T1");
    assert!(bye[0].2.contains("CSeq: "), "{}", bye[0].2);
    assert_eq!(
        header(&bye[0].2, "To").unwrap(),
        "<sip:37060000000@127.0.0.1>;tag=caller"
    );
    // The caller never answers the BYE either: Timer F ends the transaction and the call.
    h.advance_to(Duration::from_secs(120));
    assert_eq!(
        h.ended,
        vec![("noack-1".to_string(), EndReason::AckTimeout)]
    );
    assert!(
        h.media.is_empty(),
        "no media for an unconfirmed caller: {:?}",
        h.media
    );
    assert_eq!(h.switchboard().stats(), SwitchboardStats::default());
}

#[test]
fn tcp_calls_get_no_2xx_retransmissions() {
    let mut h = Harness::new(config());
    h.receive(
        tcp(),
        &invite("tcp-1").replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
    );
    h.take_sent();
    h.advance_to(Duration::from_secs(31));
    assert!(h
        .take_sent()
        .iter()
        .all(|(_, _, t)| !t.starts_with("SIP/2.0 200")));
}

#[test]
fn cancel_while_ringing_gets_200_and_the_invite_487() {
    let mut h = Harness::new(SwitchboardConfig {
        answer_delay: Duration::from_secs(2),
        ..config()
    });
    h.receive(udp(), &invite("cancel-1"));
    assert_eq!(
        h.first_lines(),
        vec!["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing"]
    );
    h.advance_to(Duration::from_millis(800));
    let cancel = invite_with("cancel-1", "z9hG4bK-inv-1", "", "application/sdp", "")
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    h.receive(udp(), &cancel);
    let sent = h.take_sent();
    let lines: Vec<_> = sent
        .iter()
        .map(|(_, _, t)| (t.lines().next().unwrap(), header(t, "CSeq").unwrap()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("SIP/2.0 200 OK", "1 CANCEL"),
            ("SIP/2.0 487 Request Terminated", "1 INVITE")
        ]
    );
    assert_eq!(
        h.ended,
        vec![("cancel-1".to_string(), EndReason::CallerCancelled)]
    );
    // The answer timer must not resurrect the call.
    h.advance_to(Duration::from_secs(5));
    assert!(h
        .take_sent()
        .iter()
        .all(|(_, _, t)| !t.starts_with("SIP/2.0 200")));
    assert_eq!(h.switchboard().stats().calls, 0);
    assert_eq!(h.switchboard().stats().rtp_ports_in_use, 0);
}

#[test]
fn cancel_after_answer_only_answers_the_cancel() {
    let mut h = Harness::new(config());
    let _tag = answered_call(&mut h, "late-cancel");
    let cancel = invite_with("late-cancel", "z9hG4bK-inv-1", "", "application/sdp", "")
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    h.receive(udp(), &cancel);
    let lines = h.first_lines();
    assert!(lines.iter().all(|l| !l.contains("487")), "{lines:?}");
    assert_eq!(
        h.switchboard().stats().calls,
        1,
        "the answered call goes on"
    );
}

#[test]
fn retransmitted_invite_is_absorbed() {
    let mut h = Harness::new(SwitchboardConfig {
        answer_delay: Duration::from_secs(1),
        ..config()
    });
    h.receive(udp(), &invite("dup-1"));
    h.take_sent();
    h.receive(udp(), &invite("dup-1"));
    assert_eq!(
        h.first_lines(),
        vec!["SIP/2.0 180 Ringing"],
        "last provisional resent"
    );
    assert_eq!(h.switchboard().stats().calls, 1);
    h.advance_to(Duration::from_millis(1100));
    h.take_sent();
    h.receive(udp(), &invite("dup-1"));
    assert!(h.first_lines().is_empty(), "absorbed after the 2xx");
    assert_eq!(h.switchboard().stats().calls, 1);
}

#[test]
fn max_call_duration_hangs_up_with_bye() {
    let mut h = Harness::new(config());
    let tag = answered_call(&mut h, "long-1");
    h.receive(
        udp(),
        &in_dialog("ACK", "long-1", &tag, 1, "z9hG4bK-ack", ""),
    );
    h.advance_to(Duration::from_secs(179));
    assert!(h.take_sent().is_empty());
    h.advance_to(Duration::from_secs(180));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    let bye = &sent[0].2;
    assert!(
        bye.starts_with("BYE sip:caller@127.0.0.1:6000 SIP/2.0"),
        "{bye}"
    );
    let response = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: long-1\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(bye, "Via").unwrap(),
        header(bye, "From").unwrap(),
        header(bye, "To").unwrap(),
        header(bye, "CSeq").unwrap()
    );
    h.receive(udp(), &response);
    assert_eq!(
        h.ended,
        vec![("long-1".to_string(), EndReason::MaxDuration)]
    );
}

#[test]
fn rtp_inactivity_hangs_up() {
    let mut h = Harness::new(config());
    let tag = answered_call(&mut h, "dead-1");
    h.receive(
        udp(),
        &in_dialog("ACK", "dead-1", &tag, 1, "z9hG4bK-ack", ""),
    );
    h.media_event(MediaEvent::Inactive { leg: LegId(1) });
    h.collect();
    assert!(h.first_lines()[0].starts_with("BYE "));
}

#[test]
fn offer_with_only_g729_gets_488_with_warning() {
    let mut h = Harness::new(config());
    let offer = PCMU_OFFER
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    h.receive(
        udp(),
        &invite_with("g729", "z9hG4bK-g", "", "application/sdp", &offer),
    );
    let sent = h.take_sent();
    let reject = &sent.last().unwrap().2;
    assert!(reject.starts_with("SIP/2.0 488"), "{reject}");
    assert!(
        header(reject, "Warning").unwrap().starts_with("305"),
        "{reject}"
    );
    assert_eq!(h.switchboard().stats().rtp_ports_in_use, 0);
}

#[test]
fn options_gets_200_with_allow_and_accept() {
    let mut h = Harness::new(config());
    let options = invite_with("opt-1", "z9hG4bK-o", "", "", "")
        .replacen("INVITE sip", "OPTIONS sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    h.receive(udp(), &options);
    let sent = h.take_sent();
    let ok = &sent.last().unwrap().2;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(header(ok, "Allow"), Some(ALLOW));
    assert!(header(ok, "Accept").unwrap().contains("application/sdp"));
}

#[test]
fn max_forwards_zero_gets_483_and_unsupported_require_420() {
    let mut h = Harness::new(config());
    h.receive(
        udp(),
        &invite("mf0").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    assert_eq!(h.first_lines(), vec!["SIP/2.0 483 Too Many Hops"]);
    h.receive(
        udp(),
        &invite_with(
            "req",
            "z9hG4bK-r",
            "Require: 100rel\r\n",
            "application/sdp",
            PCMU_OFFER,
        ),
    );
    let sent = h.take_sent();
    assert!(sent[0].2.starts_with("SIP/2.0 420"), "{}", sent[0].2);
    assert_eq!(header(&sent[0].2, "Unsupported"), Some("100rel"));
    assert_eq!(h.switchboard().stats().calls, 0);
}

#[test]
fn requests_needing_a_dialog_get_481() {
    let mut h = Harness::new(config());
    h.receive(
        udp(),
        &in_dialog("BYE", "nobody", "ghost", 2, "z9hG4bK-b", ""),
    );
    assert_eq!(
        h.first_lines(),
        vec!["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
    let info = invite_with("info", "z9hG4bK-i", "", "", "")
        .replacen("INVITE sip", "INFO sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 INFO");
    h.receive(udp(), &info);
    assert!(h.first_lines()[0].starts_with("SIP/2.0 481"));
}

#[test]
fn unknown_method_gets_405_with_allow() {
    let mut h = Harness::new(config());
    let foo = invite_with("foo", "z9hG4bK-f", "", "", "")
        .replacen("INVITE sip", "FOO sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 FOO");
    h.receive(udp(), &foo);
    let sent = h.take_sent();
    assert!(sent[0].2.starts_with("SIP/2.0 405"), "{}", sent[0].2);
    assert_eq!(header(&sent[0].2, "Allow"), Some(ALLOW));
}

#[test]
fn garbage_gets_400_when_answerable_and_silence_otherwise() {
    let mut h = Harness::new(config());
    h.receive(udp(), "this is not SIP at all");
    assert!(h.take_sent().is_empty());
    let broken = invite("cl").replace(
        &format!("Content-Length: {}", PCMU_OFFER.len()),
        "Content-Length: 9999",
    );
    h.receive(udp(), &broken);
    assert!(h.first_lines()[0].starts_with("SIP/2.0 400"));
}

#[test]
fn hold_reinvite_is_answered_recvonly_and_stops_the_inactivity_watch() {
    let mut h = Harness::new(config());
    let tag = answered_call(&mut h, "hold-1");
    h.receive(
        udp(),
        &in_dialog("ACK", "hold-1", &tag, 1, "z9hG4bK-ack", ""),
    );
    let hold = PCMU_OFFER.replace("a=fmtp:101 0-15\r\n", "a=fmtp:101 0-15\r\na=sendonly\r\n");
    h.receive(
        udp(),
        &in_dialog("INVITE", "hold-1", &tag, 2, "z9hG4bK-hold", &hold),
    );
    let sent = h.take_sent();
    let ok = sent
        .iter()
        .find(|(_, _, t)| t.starts_with("SIP/2.0 200"))
        .expect("200 to re-INVITE");
    assert!(ok.2.contains("a=recvonly"), "{}", ok.2);
    assert!(
        ok.2.contains("o=hotline ") && ok.2.contains(" 2 IN IP4"),
        "version bumped: {}",
        ok.2
    );
    assert!(
        matches!(h.media.last(), Some(MediaCommand::Update { session, .. }) if session.inactivity_timeout.is_none())
    );
    h.receive(
        udp(),
        &in_dialog("ACK", "hold-1", &tag, 2, "z9hG4bK-ack2", ""),
    );
    h.advance_to(Duration::from_secs(10));
    assert!(h.take_sent().is_empty());
}

#[test]
fn offerless_invite_gets_our_offer_and_media_starts_on_the_ack_answer() {
    let mut h = Harness::new(config());
    h.receive(udp(), &invite_with("noffer", "z9hG4bK-n", "", "", ""));
    let sent = h.take_sent();
    let ok = &sent.last().unwrap().2;
    assert!(ok.contains("m=audio 30000 RTP/AVP 0 8 101"), "{ok}");
    assert!(h.media.is_empty(), "no media before the answer");
    let answer = PCMU_OFFER;
    h.receive(
        udp(),
        &in_dialog("ACK", "noffer", &to_tag(ok), 1, "z9hG4bK-a", answer),
    );
    assert!(
        matches!(h.media.first(), Some(MediaCommand::Start { .. })),
        "{:?}",
        h.media
    );
}

fn played(media: &[MediaCommand]) -> Vec<String> {
    media
        .iter()
        .filter_map(|command| match command {
            MediaCommand::Play { prompts, .. } => Some(
                prompts
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>()
                    .join("+"),
            ),
            MediaCommand::StopPlayback { .. } => Some("stop".to_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn answered_call_plays_welcome_and_digits_from_rtp_and_info_barge_in() {
    let mut h = Harness::new(config());
    let tag = answered_call(&mut h, "echo-1");
    assert_eq!(played(&h.media), vec!["welcome"]);
    h.media_event(MediaEvent::Digit {
        leg: LegId(1),
        digit: '5',
        source: DtmfSource::Rfc4733,
    });
    h.collect();
    assert_eq!(
        played(&h.media),
        vec!["welcome", "stop", "digit_5"],
        "a key cuts the prompt at once"
    );

    let info = in_dialog("INFO", "echo-1", &tag, 2, "z9hG4bK-info", "")
        .replace("Content-Length: 0\r\n\r\n", "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=#\r\nDuration=160\r\n");
    h.receive(udp(), &info);
    assert_eq!(h.first_lines(), vec!["SIP/2.0 200 OK"]);
    assert_eq!(
        played(&h.media),
        vec!["welcome", "stop", "digit_5", "stop", "goodbye"]
    );
    let stale = MediaEvent::PlaybackFinished {
        leg: LegId(1),
        generation: 1,
    };
    h.media_event(stale);
    h.collect();
    assert!(
        h.take_sent().is_empty(),
        "the end of an interrupted playlist is ignored"
    );
    let generation = h
        .media
        .iter()
        .rev()
        .find_map(|command| match command {
            MediaCommand::Play { generation, .. } => Some(*generation),
            _ => None,
        })
        .unwrap();
    h.media_event(MediaEvent::PlaybackFinished {
        leg: LegId(1),
        generation,
    });
    h.collect();
    assert!(
        h.first_lines()[0].starts_with("BYE "),
        "goodbye played: the service hangs up"
    );
}

#[test]
fn info_with_an_unknown_body_gets_415() {
    let mut h = Harness::new(config());
    let tag = answered_call(&mut h, "info-2");
    let info = in_dialog("INFO", "info-2", &tag, 2, "z9hG4bK-info", "").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    );
    h.receive(udp(), &info);
    assert!(h.first_lines()[0].starts_with("SIP/2.0 415"));
}

#[test]
fn register_is_challenged_then_accepted_with_the_binding_listed() {
    let mut h = Harness::new(config());
    let ok = register_agent(&mut h, "agent1");
    assert_eq!(
        header(&ok, "Contact"),
        Some("<sip:agent1@127.0.0.1:5080>;expires=60")
    );
}

/// Lets `user` (password `pw`) register from `udp()` and returns the final response.
pub(super) fn register_agent(h: &mut Harness, user: &str) -> String {
    use md5::{Digest, Md5};
    let md5 = |text: String| hex::encode(Md5::digest(text.as_bytes()));
    let ha1 = crate::sip::registrar::Credentials::ha1(user, "hotline", "pw");
    let credentials = format!("realm = \"hotline\"\n[users]\n{user} = \"{ha1}\"\n");
    h.switchboard()
        .enable_registrar(crate::sip::registrar::Credentials::parse(&credentials).unwrap());
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-reg{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: reg\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:5080>\r\nExpires: 60\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    };
    h.receive(udp(), &register(1, ""));
    let sent = h.take_sent();
    let challenge = &sent.last().unwrap().2;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let www = header(challenge, "WWW-Authenticate").unwrap();
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let ha2 = md5("REGISTER:sip:127.0.0.1:5060".to_owned());
    let response = md5(format!("{ha1}:{nonce}:00000001:c:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"hotline\", nonce=\"{nonce}\", \
         uri=\"sip:127.0.0.1:5060\", response=\"{response}\", qop=auth, nc=00000001, cnonce=\"c\"\r\n"
    );
    h.receive(udp(), &register(2, &auth));
    let sent = h.take_sent();
    let ok = sent.last().unwrap().2.clone();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    ok
}

/// A flow that puts every caller straight through to one agent (bridge mode).
#[derive(Debug)]
pub(super) struct StraightToAgent;

impl crate::ivr::CallFlow for StraightToAgent {
    fn handle(
        &mut self,
        _clock: crate::ivr::FlowClock,
        event: crate::ivr::FlowEvent,
    ) -> Vec<crate::ivr::FlowAction> {
        match event {
            crate::ivr::FlowEvent::Started => {
                vec![crate::ivr::FlowAction::Queue(crate::ivr::QueueCall {
                    group: "heating".into(),
                    display: "[EN] Vilnius Heating Networks".into(),
                    language: "en".into(),
                    path: "language en > main:2".into(),
                })]
            }
            _ => vec![],
        }
    }
}

/// Answers a caller (who ACKs); returns our To tag and the agent INVITE the flow caused.
pub(super) fn answered_and_agent_invite(h: &mut Harness, call_id: &str) -> (String, String) {
    let tag = answered_call(h, call_id);
    let sent = h.take_sent();
    let agent_invite = sent
        .iter()
        .find(|(_, to, t)| t.starts_with("INVITE ") && *to == agent())
        .expect("agent rung");
    (tag, agent_invite.2.clone())
}

/// The shipped routing: heating's English speaker is heating-2 on 127.0.0.1:5312.
pub(super) fn bridging_harness() -> Harness {
    bridging_harness_with_seed(7)
}

fn bridging_harness_with_seed(seed: u64) -> Harness {
    let mut h = Harness::with_seed(config(), seed);
    h.switchboard()
        .set_flow_factory(Box::new(|_| Box::new(StraightToAgent)));
    let routing =
        crate::routing::parse(include_str!("../../routing.toml"), "routing.toml").unwrap();
    let now = h.sim.now;
    h.switchboard().set_routing(now, Arc::new(routing));
    h
}

pub(super) fn agent() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:5312".parse().unwrap(),
    }
}

/// The agent's answer to our INVITE (`status` with SDP when 2xx).
pub(super) fn agent_response(invite: &str, status: &str, to_tag: &str) -> String {
    let body = if status.starts_with("200") {
        "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7010 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    } else {
        ""
    };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\nContact: <sip:heating-2@127.0.0.1:5312>\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        header(invite, "Via").unwrap(),
        header(invite, "From").unwrap(),
        header(invite, "To").unwrap(),
        header(invite, "Call-ID").unwrap(),
        body.len()
    )
}

#[test]
fn bridge_rings_the_agent_with_the_caller_sorted_then_relays_and_tears_down_both_ways() {
    let mut h = bridging_harness();
    let (_, invite) = answered_and_agent_invite(&mut h, "bridge-1");
    let invite = &invite;
    assert!(
        invite.starts_with("INVITE sip:heating-2@127.0.0.1:5312 SIP/2.0"),
        "{invite}"
    );
    assert!(header(invite, "From")
        .unwrap()
        .starts_with("\"[EN] Vilnius Heating Networks\" <sip:37060000000@"));
    assert_eq!(header(invite, "X-Hotline-Language"), Some("en"));
    assert_eq!(
        header(invite, "X-Hotline-Path"),
        Some("language en > main:2")
    );
    assert_eq!(header(invite, "X-Hotline-Caller"), Some("37060000000"));
    assert!(invite.contains("m=audio 30002 RTP/AVP 0 8 101"), "{invite}");

    h.receive(agent(), &agent_response(invite, "180 Ringing", "ag"));
    h.receive(agent(), &agent_response(invite, "200 OK", "ag"));
    let sent = h.take_sent();
    let ack = &sent
        .iter()
        .find(|(_, to, t)| t.starts_with("ACK ") && *to == agent())
        .expect("ACK to the agent")
        .2;
    assert!(
        ack.starts_with("ACK sip:heating-2@127.0.0.1:5312 SIP/2.0"),
        "{ack}"
    );
    assert!(header(ack, "CSeq").unwrap().starts_with("1 ACK"));
    assert!(
        h.media.iter().any(|m| matches!(
            m,
            MediaCommand::Bridge {
                caller: LegId(1),
                agent: LegId(2)
            }
        )),
        "{:?}",
        h.media
    );
    assert!(h.media.iter().any(|m| matches!(m, MediaCommand::Start { leg: LegId(2), session, .. }
        if session.codec == Codec::Pcma && session.remote == Some("127.0.0.1:7010".parse().unwrap()))));

    // The agent hangs up: the caller gets BYE, the agent 200.
    let bye = format!(
        "BYE sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5312;branch=z9hG4bK-agent-bye\r\n\
         From: {};tag=ag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        header(invite, "To").unwrap(),
        header(invite, "From").unwrap(),
        header(invite, "Call-ID").unwrap()
    );
    h.receive(agent(), &bye);
    let sent = h.take_sent();
    assert!(sent
        .iter()
        .any(|(_, to, t)| *to == agent() && t.starts_with("SIP/2.0 200")));
    let caller_bye = sent
        .iter()
        .find(|(_, to, t)| *to == udp() && t.starts_with("BYE "))
        .expect("caller gets BYE");
    assert!(header(&caller_bye.2, "To").unwrap().ends_with("tag=caller"));
    assert_eq!(h.switchboard().stats().agent_legs, 0);
}

#[test]
fn caller_hanging_up_while_the_agent_rings_cancels_the_agent() {
    let mut h = bridging_harness();
    let (tag, invite) = answered_and_agent_invite(&mut h, "bridge-2");
    h.receive(agent(), &agent_response(&invite, "180 Ringing", "ag"));
    h.receive(
        udp(),
        &in_dialog("ACK", "bridge-2", &tag, 1, "z9hG4bK-ack", ""),
    );
    h.receive(
        udp(),
        &in_dialog("BYE", "bridge-2", &tag, 2, "z9hG4bK-bye", ""),
    );
    let sent = h.take_sent();
    let cancel = sent
        .iter()
        .find(|(_, to, t)| *to == agent() && t.starts_with("CANCEL "))
        .expect("CANCEL");
    assert_eq!(
        header(&cancel.2, "Via"),
        header(&invite, "Via"),
        "CANCEL shares the INVITE's branch"
    );
    h.receive(
        agent(),
        &agent_response(&invite, "487 Request Terminated", "ag"),
    );
    h.advance_to(Duration::from_secs(60));
    let stats = h.switchboard().stats();
    assert_eq!(
        (
            stats.calls,
            stats.agent_legs,
            stats.transactions,
            stats.rtp_ports_in_use,
            stats.agents_busy
        ),
        (0, 0, 0, 0, 0),
        "no leaks, every agent free again: {stats:?}"
    );
    assert!(stats.agents_idle > 0);
}

#[test]
fn an_agent_who_does_not_answer_is_reported_to_the_flow() {
    let mut h = bridging_harness();
    let (_, invite) = answered_and_agent_invite(&mut h, "bridge-3");
    h.receive(agent(), &agent_response(&invite, "486 Busy Here", "ag"));
    let sent = h.take_sent();
    assert!(
        sent.iter()
            .any(|(_, to, t)| *to == agent() && t.starts_with("ACK ")),
        "non-2xx ACKed"
    );
    assert_eq!(h.switchboard().stats().agent_legs, 0);
    assert_eq!(
        h.switchboard().stats().rtp_ports_in_use,
        1,
        "only the caller's port"
    );
}

#[test]
fn every_call_gets_one_start_and_one_record_with_its_outcome() {
    use crate::cdr::Outcome;
    let mut h = Harness::new(config());
    // Hung up in the (echo) flow: abandoned in the menus.
    let tag = answered_call(&mut h, "rec-1");
    h.receive(udp(), &in_dialog("ACK", "rec-1", &tag, 1, "z9hG4bK-a1", ""));
    h.receive(udp(), &in_dialog("BYE", "rec-1", &tag, 2, "z9hG4bK-b1", ""));
    // Refused before answer: still recorded.
    let offer = PCMU_OFFER
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    h.receive(
        udp(),
        &invite_with("rec-2", "z9hG4bK-g", "", "application/sdp", &offer),
    );
    assert_eq!(h.started, vec!["rec-1".to_owned(), "rec-2".to_owned()]);
    let outcomes: Vec<(&str, Outcome)> = h
        .records
        .iter()
        .map(|r| (r.call_id.as_str(), r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("rec-1", Outcome::AbandonedMenu),
            ("rec-2", Outcome::Rejected)
        ]
    );
    assert_eq!(h.records[0].caller.as_deref(), Some("37060000000"));
    assert_eq!(h.records[0].trunk, "udp:127.0.0.1:6000");
    assert!(h.records[0].ivr_answered.is_some());
}

#[test]
fn a_bridged_call_is_recorded_as_connected_with_its_agent_and_group() {
    use crate::cdr::{Outcome, TransferMode};
    let mut h = bridging_harness();
    let (tag, invite) = answered_and_agent_invite(&mut h, "rec-3");
    h.receive(agent(), &agent_response(&invite, "200 OK", "ag"));
    h.receive(udp(), &in_dialog("BYE", "rec-3", &tag, 2, "z9hG4bK-b3", ""));
    let record = h.records.last().expect("record");
    assert_eq!(record.outcome, Outcome::Connected);
    assert_eq!(
        record.agent.as_deref(),
        Some("sip:heating-2@127.0.0.1:5312")
    );
    assert_eq!(record.transfer_mode, Some(TransferMode::Bridge));
    assert!(record.agent_answered.is_some());
}

/// A request from the agent inside the leg's dialog (our INVITE's From/To swapped).
pub(super) fn agent_request(
    invite: &str,
    method: &str,
    cseq: u32,
    branch: &str,
    sdp: &str,
) -> String {
    let content_type = if sdp.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\nContact: <sip:heating-2@127.0.0.1:5312>\r\n".to_owned()
    };
    format!(
        "{method} sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5312;branch={branch}\r\n\
         From: {};tag=ag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {}\r\nMax-Forwards: 70\r\n\
         {content_type}Content-Length: {}\r\n\r\n{sdp}",
        header(invite, "To").unwrap(),
        header(invite, "From").unwrap(),
        header(invite, "Call-ID").unwrap(),
        if method == "ACK" { "ACK" } else { method },
        sdp.len()
    )
}

pub(super) const AGENT_HOLD_OFFER: &str = "v=0\r\no=agent 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7010 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";

/// A bridged call whose agent then puts the caller on hold; returns our INVITE to the agent.
pub(super) fn agent_puts_caller_on_hold(h: &mut Harness, call_id: &str) -> String {
    let (tag, invite) = answered_and_agent_invite(h, call_id);
    h.receive(
        udp(),
        &in_dialog("ACK", call_id, &tag, 1, "z9hG4bK-caller-ack", ""),
    );
    h.receive(agent(), &agent_response(&invite, "200 OK", "ag"));
    h.take_sent();
    h.receive(
        agent(),
        &agent_request(&invite, "INVITE", 2, "z9hG4bK-hold", AGENT_HOLD_OFFER),
    );
    invite
}

fn oks_to_agent(sent: &[(Duration, Peer, String)]) -> Vec<u128> {
    sent.iter()
        .filter(|(_, to, t)| *to == agent() && t.starts_with("SIP/2.0 200"))
        .map(|(at, _, _)| at.as_millis())
        .collect()
}

#[test]
fn our_2xx_to_the_agents_reinvite_is_resent_until_the_ack() {
    let mut h = bridging_harness();
    let invite = agent_puts_caller_on_hold(&mut h, "hold-1");
    let first = h.take_sent();
    let ok = &first
        .iter()
        .find(|(_, to, t)| *to == agent() && t.starts_with("SIP/2.0 200"))
        .expect("200 to the re-INVITE")
        .2;
    assert!(ok.contains("a=recvonly"), "hold answered recvonly: {ok}");
    h.advance_to(Duration::from_millis(2000));
    assert_eq!(oks_to_agent(&h.take_sent()), vec![500, 1500]);
    h.receive(
        agent(),
        &agent_request(&invite, "ACK", 2, "z9hG4bK-hold-ack", ""),
    );
    h.advance_to(Duration::from_secs(40));
    assert!(
        oks_to_agent(&h.take_sent()).is_empty(),
        "no resend after the ACK"
    );
    assert_eq!(h.switchboard().stats().agent_legs, 1, "the call goes on");
}

#[test]
fn an_agent_who_never_acks_our_2xx_ends_the_call_after_64_t1() {
    let mut h = bridging_harness();
    agent_puts_caller_on_hold(&mut h, "hold-2");
    h.take_sent();
    h.advance_to(Duration::from_millis(31_900));
    assert_eq!(
        oks_to_agent(&h.take_sent()),
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(h.ended.is_empty());
    h.advance_to(Duration::from_secs(33));
    let sent = h.take_sent();
    assert!(
        sent.iter()
            .any(|(at, to, t)| *to == agent() && t.starts_with("BYE ") && at.as_secs() == 32),
        "the agent's phone is hung up at once, not after the caller's BYE transaction"
    );
    assert!(sent
        .iter()
        .any(|(_, to, t)| *to == udp() && t.starts_with("BYE ")));
    assert_eq!(h.switchboard().stats().agent_legs, 0);
}

#[test]
fn an_agent_uri_with_transport_tcp_is_rung_over_tcp_and_a_failed_connect_frees_the_caller() {
    let mut h = Harness::new(config());
    h.switchboard()
        .set_flow_factory(Box::new(|_| Box::new(StraightToAgent)));
    let text = include_str!("../../routing.toml").replace(
        "sip:heating-2@127.0.0.1:5312\"",
        "sip:heating-2@127.0.0.1:5312;transport=tcp\"",
    );
    let routing = crate::routing::parse(&text, "routing.toml").unwrap();
    let now = h.sim.now;
    h.switchboard().set_routing(now, Arc::new(routing));
    answered_call(&mut h, "tcp-agent-1");
    let tcp_agent = Peer {
        transport: TransportKind::Tcp,
        addr: "127.0.0.1:5312".parse().unwrap(),
    };
    let sent = h.take_sent();
    let invite = &sent
        .iter()
        .find(|(_, to, t)| *to == tcp_agent && t.starts_with("INVITE "))
        .expect("the agent is rung over TCP")
        .2;
    assert!(
        header(invite, "Via").unwrap().starts_with("SIP/2.0/TCP "),
        "{invite}"
    );
    assert_eq!(h.switchboard().stats().agent_legs, 1);
    h.advance_to(Duration::from_millis(10));
    h.input(Input::TransportError(tcp_agent));
    h.collect();
    assert_eq!(
        h.switchboard().stats().agent_legs,
        0,
        "unreachable at once, not after Timer B (32 s)"
    );
    assert!(h.ended.is_empty(), "the caller waits on for another agent");
}

#[test]
fn an_agent_with_a_sips_uri_is_rung_over_tls_naming_our_tls_port() {
    let mut h = Harness::new(config());
    h.switchboard().set_tls_port(Some(5061));
    h.switchboard()
        .set_flow_factory(Box::new(|_| Box::new(StraightToAgent)));
    let text = include_str!("../../routing.toml").replace(
        "sip:heating-2@127.0.0.1:5312\"",
        "sips:heating-2@127.0.0.1:5312\"",
    );
    let routing = crate::routing::parse(&text, "routing.toml").unwrap();
    let now = h.sim.now;
    h.switchboard().set_routing(now, Arc::new(routing));
    answered_call(&mut h, "tls-agent-1");
    let tls_agent = Peer {
        transport: TransportKind::Tls,
        addr: "127.0.0.1:5312".parse().unwrap(),
    };
    let sent = h.take_sent();
    let invite = &sent
        .iter()
        .find(|(_, to, t)| *to == tls_agent && t.starts_with("INVITE "))
        .expect("the agent is rung over TLS")
        .2;
    let via = header(invite, "Via").unwrap();
    assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:5061;"), "{invite}");
    let contact = header(invite, "Contact").unwrap();
    assert!(contact.contains("127.0.0.1:5061;transport=tls"), "{invite}");
    // Over TLS as over TCP: no retransmissions of the INVITE.
    h.advance_to(Duration::from_secs(2));
    let resent = h.take_sent();
    assert!(
        !resent
            .iter()
            .any(|(_, to, t)| *to == tls_agent && t.starts_with("INVITE ")),
        "INVITE retransmitted over TLS"
    );
}

// ---- graceful stop: drain and hang_up_all -----------------------------------------------------

/// A 200 OK to a request we sent (BYE, CANCEL...), as its recipient answers it.
pub(super) fn ok_to(request: &str, to_tag: Option<&str>) -> String {
    let to = header(request, "To").unwrap();
    let to = match to_tag {
        Some(tag) if !to.contains(";tag=") => format!("{to};tag={tag}"),
        _ => to.to_owned(),
    };
    format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(request, "Via").unwrap(),
        header(request, "From").unwrap(),
        header(request, "Call-ID").unwrap(),
        header(request, "CSeq").unwrap(),
    )
}

fn options(call_id: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6000;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe\r\n\
         To: <sip:19118@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn draining_refuses_new_calls_and_probes_with_503_while_calls_in_progress_go_on() {
    use crate::cdr::Outcome;
    let mut h = Harness::new(config());
    let tag = answered_call(&mut h, "drain-1");
    h.receive(
        udp(),
        &in_dialog("ACK", "drain-1", &tag, 1, "z9hG4bK-d-ack", ""),
    );
    h.input(Input::Drain);

    h.receive(
        udp(),
        &invite_with(
            "drain-2",
            "z9hG4bK-d-inv2",
            "",
            "application/sdp",
            PCMU_OFFER,
        ),
    );
    let sent = h.take_sent();
    let refused = sent
        .iter()
        .map(|(_, _, text)| text)
        .find(|text| text.starts_with("SIP/2.0 5"))
        .expect("a final response to the new INVITE");
    assert!(
        refused.starts_with("SIP/2.0 503 Service Unavailable"),
        "{refused}"
    );
    assert_eq!(header(refused, "Retry-After"), Some("30"));
    assert!(
        header(refused, "To").unwrap().contains(";tag="),
        "{refused}"
    );
    assert!(
        sent.iter().all(|(_, _, t)| !t.starts_with("SIP/2.0 200")),
        "the new call is not answered"
    );
    let last = h.records.last().expect("the refused call is recorded");
    assert_eq!(
        (last.call_id.as_str(), last.outcome),
        ("drain-2", Outcome::Rejected)
    );
    assert_eq!(
        h.switchboard().stats().calls,
        1,
        "only the call in progress"
    );

    h.receive(udp(), &options("drain-probe", "z9hG4bK-d-opt"));
    let probe = h.first_lines();
    assert_eq!(probe, vec!["SIP/2.0 503 Service Unavailable"]);

    // Inside the call everything still works: INFO keys, OPTIONS, and the caller's BYE.
    let info = in_dialog("INFO", "drain-1", &tag, 2, "z9hG4bK-d-info", "")
        .replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
        );
    h.receive(udp(), &info);
    assert_eq!(h.first_lines(), vec!["SIP/2.0 200 OK"]);
    h.receive(
        udp(),
        &in_dialog("OPTIONS", "drain-1", &tag, 3, "z9hG4bK-d-o2", ""),
    );
    assert_eq!(h.first_lines(), vec!["SIP/2.0 200 OK"]);
    assert!(!h.switchboard().stats().is_idle());
    h.receive(
        udp(),
        &in_dialog("BYE", "drain-1", &tag, 4, "z9hG4bK-d-bye", ""),
    );
    assert_eq!(h.first_lines(), vec!["SIP/2.0 200 OK"]);
    assert!(
        h.switchboard().stats().is_idle(),
        "the last call ended by itself"
    );
    assert_eq!(
        h.ended,
        vec![("drain-1".to_owned(), EndReason::CallerHungUp)]
    );
}

#[test]
fn a_switchboard_not_draining_still_answers_options_and_invites() {
    let mut h = Harness::new(config());
    assert!(h.switchboard().stats().is_idle());
    h.receive(udp(), &options("probe-1", "z9hG4bK-p-1"));
    assert_eq!(h.first_lines(), vec!["SIP/2.0 200 OK"]);
    answered_call(&mut h, "not-draining");
    assert!(!h.switchboard().stats().is_idle());
}

#[test]
fn hang_up_all_byes_bridged_and_queued_callers_and_the_agent_then_records_each() {
    use crate::cdr::Outcome;
    let mut h = bridging_harness();
    let (tag, agent_invite) = answered_and_agent_invite(&mut h, "stop-1");
    h.receive(
        udp(),
        &in_dialog("ACK", "stop-1", &tag, 1, "z9hG4bK-s1-ack", ""),
    );
    h.receive(agent(), &agent_response(&agent_invite, "200 OK", "ag"));
    // A second caller waits in the queue: the only English agent is busy.
    h.receive(
        udp(),
        &invite_with(
            "stop-2",
            "z9hG4bK-s2-inv",
            "",
            "application/sdp",
            PCMU_OFFER,
        ),
    );
    h.take_sent();
    assert_eq!(
        (
            h.switchboard().stats().calls,
            h.switchboard().stats().agent_legs
        ),
        (2, 1)
    );

    h.input(Input::Drain);
    h.advance_to(Duration::from_secs(3));
    h.input(Input::HangUpAll);
    h.collect();
    let sent = h.take_sent();
    let mut byes: Vec<(String, std::net::SocketAddr)> = sent
        .iter()
        .filter(|(_, _, t)| t.starts_with("BYE "))
        .map(|(_, to, t)| (header(t, "Call-ID").unwrap().to_owned(), to.addr))
        .collect();
    byes.sort();
    let agent_call_id = header(&agent_invite, "Call-ID").unwrap().to_owned();
    let mut expected = vec![
        ("stop-1".to_owned(), udp().addr),
        ("stop-2".to_owned(), udp().addr),
        (agent_call_id, agent().addr),
    ];
    expected.sort();
    assert_eq!(byes, expected, "BYE to each caller and the bridged agent");
    assert!(
        sent.iter().all(|(_, _, t)| !t.starts_with("INVITE ")),
        "the freed agent is not rung for a caller being hung up"
    );
    assert_eq!(h.switchboard().stats().agent_legs, 0);
    assert!(
        !h.switchboard().stats().is_idle(),
        "the callers' BYEs are unanswered"
    );
    assert!(h.records.is_empty(), "records wait for the BYEs' answers");

    // The callers answer; records follow, with the outcome the stop gave them. The agent's
    // phone answers too: only then is nothing left to wait for.
    for (_, to, text) in &sent {
        if text.starts_with("BYE ") && *to == udp() {
            h.receive(udp(), &ok_to(text, None));
        }
    }
    assert!(
        !h.switchboard().stats().is_idle(),
        "the agent's BYE is unanswered"
    );
    for (_, to, text) in &sent {
        if text.starts_with("BYE ") && *to == agent() {
            h.receive(agent(), &ok_to(text, None));
        }
    }
    assert!(h.switchboard().stats().is_idle());
    let outcomes: Vec<(&str, Outcome)> = h
        .records
        .iter()
        .map(|r| (r.call_id.as_str(), r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("stop-1", Outcome::Connected),
            ("stop-2", Outcome::Interrupted)
        ]
    );
    assert_eq!(
        h.ended,
        vec![
            ("stop-1".to_owned(), EndReason::ServiceStopped),
            ("stop-2".to_owned(), EndReason::ServiceStopped)
        ]
    );
    assert_eq!(EndReason::ServiceStopped.as_str(), "service_stopped");
    assert_eq!(Outcome::Interrupted.as_str(), "interrupted");
    h.advance_to(Duration::from_secs(60));
    let stats = h.switchboard().stats();
    assert_eq!(
        (
            stats.calls,
            stats.agent_legs,
            stats.transactions,
            stats.rtp_ports_in_use
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn hang_up_all_cancels_a_ringing_agent_and_refuses_a_ringing_caller() {
    use crate::cdr::Outcome;
    let mut h = bridging_harness();
    let (tag, agent_invite) = answered_and_agent_invite(&mut h, "ring-1");
    h.receive(
        udp(),
        &in_dialog("ACK", "ring-1", &tag, 1, "z9hG4bK-r1-ack", ""),
    );
    h.receive(agent(), &agent_response(&agent_invite, "180 Ringing", "ag"));
    h.take_sent();

    h.input(Input::HangUpAll);
    h.collect();
    let sent = h.take_sent();
    let cancel = sent
        .iter()
        .find(|(_, to, t)| *to == agent() && t.starts_with("CANCEL "))
        .expect("CANCEL to the ringing agent");
    assert_eq!(header(&cancel.2, "Via"), header(&agent_invite, "Via"));
    assert!(
        sent.iter()
            .any(|(_, to, t)| *to == udp() && t.starts_with("BYE ")),
        "BYE to the caller"
    );
    h.receive(agent(), &ok_to(&cancel.2, Some("ag")));
    h.receive(
        agent(),
        &agent_response(&agent_invite, "487 Request Terminated", "ag"),
    );
    assert_eq!(h.switchboard().stats().agent_legs, 0);
    // The caller never answers our BYE: Timer F (64·T1) ends the call, still recorded.
    assert!(!h.switchboard().stats().is_idle());
    h.advance_to(Duration::from_secs(33));
    assert!(h.switchboard().stats().is_idle());
    assert_eq!(
        h.records.last().map(|r| (r.call_id.as_str(), r.outcome)),
        Some(("ring-1", Outcome::Interrupted))
    );

    // A caller still ringing (answer delay) gets a final 503, not a BYE.
    let mut h = Harness::new(SwitchboardConfig {
        answer_delay: Duration::from_secs(2),
        ..config()
    });
    h.receive(udp(), &invite("ringing-1"));
    h.take_sent();
    h.input(Input::HangUpAll);
    h.collect();
    let sent = h.take_sent();
    let lines: Vec<&str> = sent
        .iter()
        .map(|(_, _, t)| t.lines().next().unwrap())
        .collect();
    assert_eq!(lines, vec!["SIP/2.0 503 Service Unavailable"]);
    assert_eq!(header(&sent[0].2, "Retry-After"), Some("30"));
    assert!(h.switchboard().stats().is_idle());
    assert_eq!(
        h.records.last().map(|r| (r.call_id.as_str(), r.outcome)),
        Some(("ringing-1", Outcome::Interrupted))
    );
    h.advance_to(Duration::from_secs(5));
    assert!(
        h.take_sent()
            .iter()
            .all(|(_, _, t)| !t.starts_with("SIP/2.0 200")),
        "the answer timer does not resurrect the call"
    );
}

// ---- determinism ---------------------------------------------------------------------------

/// Everything the switchboard said in a scenario (bridged call with hold and keys, an echo
/// call whose 2xx is never acknowledged, a refused offer), as text with simulated times.
fn transcript(seed: u64) -> String {
    let mut h = bridging_harness_with_seed(seed);
    let agent_invite = agent_puts_caller_on_hold(&mut h, "det-1");
    h.advance_to(Duration::from_secs(5));
    h.media_event(MediaEvent::Digit {
        leg: LegId(1),
        digit: '5',
        source: DtmfSource::Rfc4733,
    });
    let bye = agent_request(&agent_invite, "BYE", 3, "z9hG4bK-det-bye", "");
    h.receive(agent(), &bye);
    let sent = h.take_sent();
    for (_, to, text) in &sent {
        if text.starts_with("BYE ") && *to == udp() {
            h.receive(udp(), &ok_to(text, None));
        }
    }
    h.switchboard().set_flow_factory(Box::new(|_| {
        Box::new(crate::ivr::echo::EchoFlow::new("en"))
    }));
    h.receive(udp(), &invite("det-2"));
    h.advance_to(Duration::from_secs(60));
    let g729 = PCMU_OFFER
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("PCMU", "G729");
    h.receive(
        udp(),
        &invite_with("det-3", "z9hG4bK-det-3", "", "application/sdp", &g729),
    );
    let mut text = String::new();
    for (at, to, message) in sent.iter().chain(h.sent.iter()) {
        text += &format!("{at:?} {to}\n{message}\n");
    }
    for command in &h.media {
        let line = match command {
            MediaCommand::Play {
                leg,
                prompts,
                generation,
            } => {
                let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
                format!("play {leg} {names:?} {generation}")
            }
            other => format!("{other:?}"),
        };
        text += &line;
        text.push('\n');
    }
    for record in &h.records {
        text += &format!("{record:?}\n");
    }
    text
}

#[test]
fn the_same_seed_gives_byte_identical_outputs() {
    let first = transcript(7);
    assert!(first.contains("SIP/2.0 488"), "{first}");
    assert!(first.contains("Bridge"), "{first}");
    assert_eq!(first, transcript(7));
    assert_ne!(first, transcript(8), "the seed makes tags and branches");
}
