//! Queued callback end to end (issue 15, "Done when"): a SIPp resident calls the hotline
//! through a real Kamailio playing the carrier (tests/common/kamailio.rs,
//! tests/fixtures/kamailio/carrier.cfg) and waits in a group whose only agent is paused. Past
//! `offer_after` the queue offers a callback; the resident presses the key, hears their number
//! read back (the carrier presents it nationally, 868712345: +37068712345), confirms with 1,
//! hears the thanks and the service hangs up. The agent is made available: the service rings
//! the agent first (`[CB][LT] ...`, `X-Hotline-Caller`), then dials the resident through the
//! carrier. The first attempt finds the resident busy (486): the agent gets BYE at once and the
//! request comes back after `retry_after`; the retry is answered, the resident hears the intro
//! and the group's name, and resident and agent are bridged, tone heard both ways.
//!
//! Addresses: the hotline on 127.0.0.1 (the agent's SIPp phone too), the carrier on 127.0.0.5,
//! the resident's phone behind the carrier ("the PSTN", where the carrier relays the hotline's
//! calls) on 127.0.0.6, the resident calling in on 127.0.0.8.
//!
//! The resident's keys are RFC 4733 telephone-events: copies of SIPp's `dtmf_2833_1.pcap` with
//! shifted timestamps and sequence numbers, one per press (the same copy twice is one press).
//! The resident presses the callback key and the confirmation only once the loopback capture
//! (dumpcap) shows the prompt that asks for it reaching their phone: the test cues the SIPp
//! scenario with a bare MESSAGE in the call, as tests/ivr_interop.rs does. The agent hangs up
//! on such a cue too, once the capture shows the tone both ways. Audio is judged from the
//! capture: the service sends prompts bit-exact and relays RTP with SSRC and payload intact.
//!
//! `scripts/test` installs SIPp (sip-tester), Kamailio (kamailio) and dumpcap (tshark).

mod common;

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::capture::{
    describe, frame_time, pieces, Capture, Datagram, Frame, Prompts, RtpPacket, FRAME_LEN, SILENCE,
};
use common::kamailio::{free_udp_port, wait_until_udp_bound, Carrier, TRUNK_USER};
use common::{free_port, http_get, log_field, Service};
use serde_json::Value;

const CARRIER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const PSTN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const RESIDENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 8);
const AGENT_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
const PASSWORD: &str = "callback-s3cret";
/// The hotline's DID as residents dial it.
const DID: &str = "19118";
/// The resident's number as the carrier presents it (national form, the scenario's From),
/// and in E.164: what the request holds and the service dials.
const CALLER_NATIONAL: &str = "868712345";
const CALLER_E164: &str = "+37068712345";
const GROUP: &str = "heating";
const GROUP_NAME: &str = "Vilniaus šilumos tinklai";

/// The group's callback settings and the queue's announcement period, short for the test.
const OFFER_AFTER: Duration = Duration::from_secs(5);
const ANNOUNCE_EVERY: Duration = Duration::from_secs(6);
const RETRY_AFTER: Duration = Duration::from_secs(3);
const MAX_ATTEMPTS: u32 = 3;

/// Registration, a state change in /api/live, a SIPp phone binding its port: well within this.
const SIGNALLING_DEADLINE: Duration = Duration::from_secs(15);
/// From the call's answer to the offer: the menu key, "connecting you", the announce prompt,
/// the entry announcement, then the first announcement composed past `offer_after` (about
/// 15 s with the Lithuanian prompts).
const OFFER_DEADLINE: Duration = Duration::from_secs(35);
/// From the callback key to "press 1 to confirm": the number read back digit by digit.
const READ_BACK_DEADLINE: Duration = Duration::from_secs(20);
/// From the retry's answer to the bridge: the intro and the group's name (about 12 s).
const BRIDGE_DEADLINE: Duration = Duration::from_secs(30);
/// Records are written as calls end.
const RECORD_DEADLINE: Duration = Duration::from_secs(10);
/// A SIPp process must have finished its calls within this once they are over.
const PEER_DEADLINE: Duration = Duration::from_secs(20);
/// A resident not reached frees the agent "at once": BYE within this of the busy answer.
const AGENT_FREED_WITHIN: Duration = Duration::from_secs(1);
/// Tone heard each way after the bridge before the agent hangs up: one second.
const TALK_PACKETS: usize = 50;
const POLL: Duration = Duration::from_millis(100);

/// Lithuanian prompts the test recognises in the capture.
const PROMPTS: &[&str] = &[
    "welcome",
    "transfer_connecting",
    "queue_waiting_for",
    "group_heating",
    "all_agents_busy",
    "queue_position_prefix",
    "number_1",
    "queue_position_suffix",
    "queue_hold",
    "callback_offer",
    "callback_your_number",
    "number_plus",
    "digit_0",
    "digit_1",
    "digit_2",
    "digit_3",
    "digit_4",
    "digit_5",
    "digit_6",
    "digit_7",
    "digit_8",
    "digit_9",
    "callback_confirm",
    "callback_accepted",
    "callback_intro",
];

#[test]
fn a_resident_asks_for_a_callback_and_is_called_back_through_the_carrier_after_a_busy_try() {
    let started = Instant::now();
    let prompts = Prompts::load("lt", PROMPTS);

    // The carrier, relaying the hotline's calls to the resident's phone's address.
    let pstn = reserved_udp_addr(PSTN_IP);
    let carrier = Carrier::start(SocketAddr::new(IpAddr::V4(CARRIER_IP), 0), PASSWORD, pstn)
        .unwrap_or_else(|error| panic!("starting the carrier: {error:#}"));

    // The service, its only agent a static phone whose address is fixed now.
    let agent_sip = SocketAddr::new(IpAddr::V4(AGENT_IP), free_port(false, false));
    let agent_media = free_port(false, true);
    let agent_uri = format!("sip:agent@{agent_sip}");
    let routing = write_routing(&agent_uri);
    let service = Service::start_with_config(&settings(carrier.addr(), &routing), &[]);
    let http = service.http_addr();
    let dir = service.dir().to_path_buf();
    carrier
        .wait_for_registration(true, SIGNALLING_DEADLINE)
        .unwrap_or_else(|error| panic!("the hotline did not register at the carrier: {error:#}"));
    println!(
        "{:5.1} s: carrier and service up, the trunk registered",
        started.elapsed().as_secs_f64()
    );

    // The agent is paused before anyone calls: the resident will wait.
    let mut agent = SippPeer::new(&dir, "agent", "callback_agent.xml", agent_sip, agent_media)
        .calls(2)
        .working_file("agent_tone.ul", tone(1000.0).repeat(50))
        .spawn();
    agent.wait_until_bound();
    set_agent_state(http, &agent_uri, "paused");
    wait_for_agent_state(&service, &agent_uri, "paused");

    // Everything the peers send and receive on their ports from here on.
    let resident_sip = SocketAddr::new(
        IpAddr::V4(RESIDENT_IP),
        free_udp_port(RESIDENT_IP.into(), false),
    );
    let resident_media = free_udp_port(RESIDENT_IP.into(), true);
    let pstn_media = free_udp_port(PSTN_IP.into(), true);
    let mut capture = Capture::start(
        &dir,
        &format!(
            "udp port {resident_media} or udp port {pstn_media} or udp port {agent_media} \
             or udp port {} or udp port {}",
            agent_sip.port(),
            pstn.port()
        ),
    );

    // 1. The resident calls, waits past offer_after, asks for a callback and confirms.
    let mut resident = SippPeer::new(
        &dir,
        "resident",
        "callback_resident.xml",
        resident_sip,
        resident_media,
    )
    .to(carrier.addr(), DID)
    .call_id_prefix("callback-resident")
    .working_file("key_menu.pcap", dtmf_1_pcap(0))
    .working_file("key_offer.pcap", dtmf_1_pcap(1))
    .working_file("key_confirm.pcap", dtmf_1_pcap(2))
    .spawn();
    let incoming = service
        .wait_for_log_line(
            |line| line.contains("incoming call") && line.contains("call_id=callback-resident"),
            SIGNALLING_DEADLINE,
        )
        .expect("the resident's call never reached the hotline");
    let original = log_field(&incoming, "call_id").expect("the incoming call line has a call_id");
    let queued = service
        .wait_for_log_line(|line| line.contains("queued for agents"), OFFER_DEADLINE)
        .expect("the resident was never queued");

    let offer = capture
        .wait_for(OFFER_DEADLINE, |d| {
            is_prompt_frame(d, resident_media, &prompts, "callback_offer")
        })
        .unwrap_or_else(|| {
            panic!(
                "the resident never heard callback_offer\n{}",
                resident.diagnostics()
            )
        });
    resident.cue(&original);
    println!(
        "{:5.1} s: the offer heard: the callback key",
        started.elapsed().as_secs_f64()
    );
    let offer_key_sent = since_epoch();
    let confirm = capture
        .wait_for(READ_BACK_DEADLINE, |d| {
            d.at > offer.at && is_prompt_frame(d, resident_media, &prompts, "callback_confirm")
        })
        .unwrap_or_else(|| {
            panic!(
                "the resident pressed the callback key but never heard callback_confirm\n{}",
                resident.diagnostics()
            )
        });
    resident.cue(&original);
    println!(
        "{:5.1} s: the number read back: 1 confirms",
        started.elapsed().as_secs_f64()
    );

    // The request is pending (the agent is still paused) while the thanks play.
    let pending = wait_for_live_callback(&service, "the confirmed request", |entry| {
        entry["number"] == CALLER_E164
    });
    assert_eq!(pending["state"], "queued", "the pending request: {pending}");
    assert_eq!(pending["group"], GROUP, "the pending request: {pending}");
    assert_eq!(pending["language"], "lt", "the pending request: {pending}");
    assert_eq!(pending["attempts"], 0, "the pending request: {pending}");
    println!(
        "{:5.1} s: the request is pending; the agent is made available",
        started.elapsed().as_secs_f64()
    );

    // 2. The agent becomes available (the resident still hears the thanks); the resident's
    // phone is busy for the first attempt.
    let mut busy = SippPeer::new(
        &dir,
        "pstn-busy",
        "callback_pstn_busy.xml",
        pstn,
        free_udp_port(PSTN_IP.into(), true),
    )
    .spawn();
    busy.wait_until_bound();
    set_agent_state(http, &agent_uri, "available");
    assert_eq!(
        busy.finish(),
        Some(0),
        "the busy attempt\n{}",
        busy.diagnostics()
    );
    // The retry's phone takes the same address once the busy one is gone; meanwhile the
    // request waits for its retry.
    let mut answer = SippPeer::new(
        &dir,
        "pstn-answer",
        "callback_pstn_answer.xml",
        pstn,
        pstn_media,
    )
    .working_file("resident_tone.ul", tone(500.0).repeat(50))
    .spawn();
    let waiting = wait_for_live_callback(&service, "the request waiting for its retry", |entry| {
        entry["number"] == CALLER_E164 && entry["state"] == "waiting"
    });
    assert_eq!(
        waiting["attempts"], 1,
        "the request after the busy attempt: {waiting}"
    );
    assert!(
        waiting["next_attempt_s"]
            .as_u64()
            .is_some_and(|next| next <= RETRY_AFTER.as_secs()),
        "the request after the busy attempt: {waiting}"
    );
    answer.wait_until_bound();

    // 3. The retry: answered, the intro, then the bridge; tone both ways, then the agent
    // hangs up.
    let agent_frame = tone(1000.0);
    let resident_frame = tone(500.0);
    let heard = Cell::new(0);
    capture
        .wait_for(BRIDGE_DEADLINE, |d| {
            if rtp_payload_to(d, PSTN_IP, pstn_media).is_some_and(|p| p == agent_frame) {
                heard.set(heard.get() + 1);
            }
            heard.get() >= TALK_PACKETS
        })
        .unwrap_or_else(|| {
            panic!(
                "the resident heard {} packets of the agent's tone\n{}\n{}",
                heard.get(),
                agent.diagnostics(),
                answer.diagnostics()
            )
        });
    let heard = Cell::new(0);
    capture
        .wait_for(SIGNALLING_DEADLINE, |d| {
            if rtp_payload_to(d, AGENT_IP, agent_media).is_some_and(|p| p == resident_frame) {
                heard.set(heard.get() + 1);
            }
            heard.get() >= TALK_PACKETS
        })
        .unwrap_or_else(|| {
            panic!(
                "the agent heard {} packets of the resident's tone\n{}\n{}",
                heard.get(),
                agent.diagnostics(),
                answer.diagnostics()
            )
        });
    let agent_invites = capture_invites_to(&mut capture, agent_sip, 2);
    agent.cue(&header(&agent_invites[1], "Call-ID").unwrap_or_default());
    println!(
        "{:5.1} s: tone heard both ways: the agent hangs up",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        agent.finish(),
        Some(0),
        "the agent's calls\n{}",
        agent.diagnostics()
    );
    assert_eq!(
        answer.finish(),
        Some(0),
        "the answered attempt\n{}",
        answer.diagnostics()
    );
    assert_eq!(
        resident.finish(),
        Some(0),
        "the resident's call\n{}",
        resident.diagnostics()
    );
    println!(
        "{:5.1} s: every call is over",
        started.elapsed().as_secs_f64()
    );
    let datagrams = capture.finish();

    // ---- what was heard ----------------------------------------------------------------------

    // The offer came once the resident had waited offer_after, and the key after it.
    let queued_at = seconds(&queued);
    let offer_at = offer.at.as_secs_f64();
    println!(
        "queued at {}; the offer {:+.2} s after, the callback key {:+.2} s after, \
         \"press 1 to confirm\" {:+.2} s after",
        timestamp(&queued),
        offer_at - queued_at,
        offer_key_sent.as_secs_f64() - queued_at,
        confirm.at.as_secs_f64() - queued_at,
    );
    assert!(
        offer_at - queued_at >= OFFER_AFTER.as_secs_f64() - 0.05,
        "the offer came {:.2} s after the queueing, before offer_after ({OFFER_AFTER:?})",
        offer_at - queued_at
    );

    // The number read back: "we will call you on" + plus + its digits + "press 1 ...", then
    // (1 cuts the confirmation) the thanks, whole.
    let to_resident = rtp_to(&datagrams, RESIDENT_IP, resident_media);
    let heard_pieces = pieces(&to_resident, &prompts);
    println!("the calling resident heard {}", describe(&heard_pieces));
    let at = heard_pieces
        .iter()
        .position(|p| p.name == "callback_your_number")
        .unwrap_or_else(|| panic!("no callback_your_number in {}", describe(&heard_pieces)));
    let mut expected = vec!["callback_your_number".to_owned(), "number_plus".to_owned()];
    expected.extend(
        CALLER_E164
            .trim_start_matches('+')
            .chars()
            .map(|digit| format!("digit_{digit}")),
    );
    expected.extend([
        "callback_confirm".to_owned(),
        "callback_accepted".to_owned(),
    ]);
    let heard: Vec<&str> = heard_pieces[at..].iter().map(|p| p.name).collect();
    assert_eq!(
        heard,
        expected,
        "after the callback key the resident heard {}",
        describe(&heard_pieces[at..])
    );
    for piece in &heard_pieces[at..at + expected.len() - 2] {
        assert_eq!(
            piece.played,
            piece.frames,
            "{} was cut: {}",
            piece.name,
            describe(&heard_pieces[at..])
        );
    }
    let thanks = heard_pieces.last().expect("the thanks");
    assert_eq!(
        thanks.played,
        thanks.frames,
        "the thanks were cut: {}",
        describe(&heard_pieces)
    );
    let offer_piece = heard_pieces
        .iter()
        .find(|p| p.name == "callback_offer")
        .unwrap_or_else(|| panic!("no callback_offer in {}", describe(&heard_pieces)));
    assert!(
        offer_piece.at <= offer.at,
        "the offer's frame came before its first packet: {}",
        describe(&heard_pieces)
    );

    // The agent was rung for each attempt, the callback shown: [CB], the language, the group,
    // and the resident's number in E.164.
    for (number, invite) in agent_invites.iter().enumerate() {
        let from = header(invite, "From").unwrap_or_default();
        assert!(
            from.starts_with(&format!("\"[CB][LT] {GROUP_NAME}\" <sip:{CALLER_E164}@")),
            "the agent's INVITE {} has From: {from}\n{invite}",
            number + 1
        );
        assert_eq!(
            header(invite, "X-Hotline-Caller").as_deref(),
            Some(CALLER_E164),
            "the agent's INVITE {}:\n{invite}",
            number + 1
        );
        assert_eq!(header(invite, "X-Hotline-Language").as_deref(), Some("lt"));
    }

    // The resident's phone got one INVITE per attempt (one Call-ID each), for +37068712345
    // (the scenarios check the Request-URI too), relayed by the carrier after its challenge.
    let busy_ids = invite_call_ids(&busy.messages());
    let answer_ids = invite_call_ids(&answer.messages());
    assert_eq!(
        busy_ids.len(),
        1,
        "INVITEs of the busy attempt: {busy_ids:?}"
    );
    assert_eq!(answer_ids.len(), 1, "INVITEs of the retry: {answer_ids:?}");
    assert_ne!(
        busy_ids, answer_ids,
        "the retry reused the first attempt's Call-ID"
    );
    let pstn_invites: Vec<String> = datagrams
        .iter()
        .filter(|d| d.dst.port() == pstn.port() && *d.dst.ip() == PSTN_IP)
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .filter(|text| text.starts_with("INVITE "))
        .collect();
    for invite in &pstn_invites {
        assert!(
            invite.starts_with(&format!("INVITE sip:{CALLER_E164}@")),
            "the carrier forwarded {invite}"
        );
    }
    let relayed = carrier
        .log()
        .lines()
        .filter(|line| line.contains("relayed to PSTN") && line.contains(CALLER_E164))
        .count();
    assert_eq!(
        relayed,
        2,
        "INVITEs the carrier relayed to the resident's phone:\n{}",
        carrier.log()
    );

    // The busy answer freed the agent at once: BYE on its first call.
    let busy_at = datagrams
        .iter()
        .find(|d| {
            *d.src.ip() == PSTN_IP
                && d.src.port() == pstn.port()
                && d.payload.starts_with(b"SIP/2.0 486 ")
        })
        .map(|d| d.at)
        .expect("no 486 from the resident's phone captured");
    let first_agent_call = header(&agent_invites[0], "Call-ID");
    let agent_bye_at = datagrams
        .iter()
        .filter(|d| d.dst.port() == agent_sip.port() && d.payload.starts_with(b"BYE "))
        .find(|d| header(&String::from_utf8_lossy(&d.payload), "Call-ID") == first_agent_call)
        .map(|d| d.at)
        .expect("no BYE to the agent's first call captured");
    let freed_after = agent_bye_at.as_secs_f64() - busy_at.as_secs_f64();
    println!(
        "the agent got BYE {:.1} ms after the busy answer",
        freed_after * 1000.0
    );
    assert!(
        (0.0..AGENT_FREED_WITHIN.as_secs_f64()).contains(&freed_after),
        "the agent's first call ended {freed_after:.3} s after the busy answer"
    );

    // The retry came retry_after after the busy answer.
    let log = service.log_lines();
    let attempts: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("calling the resident back"))
        .collect();
    assert_eq!(attempts.len(), 2, "callback attempts: {attempts:#?}");
    let not_reached = log
        .iter()
        .find(|line| line.contains("the resident was not reached"))
        .expect("no \"the resident was not reached\" line");
    assert_eq!(
        log_field(not_reached, "status").as_deref(),
        Some("486"),
        "{not_reached}"
    );
    let retry_gap = seconds(attempts[1]) - seconds(not_reached);
    println!("the retry was dialled {retry_gap:.2} s after the busy answer");
    assert!(
        retry_gap >= RETRY_AFTER.as_secs_f64() - 0.05,
        "the retry came {retry_gap:.2} s after the busy answer, before retry_after ({RETRY_AFTER:?})"
    );

    // The retry: the intro and the group's name, whole, then the agent's own RTP.
    let to_pstn = rtp_to(&datagrams, PSTN_IP, pstn_media);
    let agent_sent: Vec<RtpPacket> = datagrams
        .iter()
        .filter(|d| d.src.port() == agent_media && *d.src.ip() == AGENT_IP)
        .filter_map(RtpPacket::parse)
        .collect();
    let resident_sent: Vec<RtpPacket> = datagrams
        .iter()
        .filter(|d| d.src.port() == pstn_media && *d.src.ip() == PSTN_IP)
        .filter_map(RtpPacket::parse)
        .collect();
    assert!(!agent_sent.is_empty(), "the agent sent no RTP");
    assert!(
        !resident_sent.is_empty(),
        "the answering resident sent no RTP"
    );
    // The bridged call's streams: the agent's second call, the answering resident's only one.
    let agent_ssrc = agent_sent[agent_sent.len() - 1].ssrc;
    let resident_ssrc = resident_sent[0].ssrc;
    assert_ne!(
        agent_ssrc, resident_ssrc,
        "the agent and the resident stream with the same SSRC: it proves nothing"
    );
    let from_agent: Vec<&RtpPacket> = to_pstn.iter().filter(|p| p.ssrc == agent_ssrc).collect();
    let own: Vec<RtpPacket> = to_pstn
        .iter()
        .filter(|p| p.ssrc != agent_ssrc)
        .cloned()
        .collect();
    let intro = pieces(&own, &prompts);
    println!(
        "the called-back resident heard {}, then {} packets relayed from the agent \
         (SSRC {agent_ssrc:#x})",
        describe(&intro),
        from_agent.len()
    );
    let intro_names: Vec<&str> = intro.iter().map(|p| p.name).collect();
    assert_eq!(
        intro_names.get(..2),
        Some(&["callback_intro", "group_heating"][..]),
        "the called-back resident heard {}",
        describe(&intro)
    );
    for piece in &intro[..2] {
        assert_eq!(
            piece.played,
            piece.frames,
            "{} was cut: {}",
            piece.name,
            describe(&intro)
        );
    }
    let bridged_at = from_agent
        .first()
        .map(|p| p.at)
        .expect("nothing relayed from the agent");
    let intro_end = intro[1].at + frame_time(intro[1].frames);
    assert!(
        bridged_at + Duration::from_millis(100) >= intro_end,
        "the agent was heard before the intro ended: {}",
        describe(&intro)
    );

    // Both ways, relayed with the sender's SSRC and payload.
    let agent_heard = from_agent
        .iter()
        .filter(|p| p.payload[..] == agent_frame[..])
        .count();
    assert!(
        agent_heard >= TALK_PACKETS && agent_heard == from_agent.len(),
        "{agent_heard} of {} packets relayed to the resident carry the agent's tone",
        from_agent.len()
    );
    let to_agent = rtp_to(&datagrams, AGENT_IP, agent_media);
    let from_resident: Vec<&RtpPacket> = to_agent
        .iter()
        .filter(|p| p.ssrc == resident_ssrc)
        .collect();
    let resident_heard = from_resident
        .iter()
        .filter(|p| p.payload[..] == resident_frame[..])
        .count();
    println!(
        "the agent got {} packets relayed from the resident (SSRC {resident_ssrc:#x}), {} of them \
         the resident's tone",
        from_resident.len(),
        resident_heard
    );
    assert!(
        resident_heard >= TALK_PACKETS && resident_heard == from_resident.len(),
        "{resident_heard} of {} packets relayed to the agent with the resident's SSRC carry the \
         resident's tone",
        from_resident.len()
    );

    // ---- records and the live view --------------------------------------------------------------

    let records = wait_for_records(&service, &original, 2);
    let original_record = records
        .iter()
        .find(|record| record["call_id"] == original.as_str())
        .expect("the original call's record");
    assert_eq!(
        original_record["outcome"], "callback_requested",
        "{original_record}"
    );
    assert_eq!(
        original_record["caller"], CALLER_E164,
        "the caller of the original call ({CALLER_NATIONAL} via the carrier): {original_record}"
    );
    assert_eq!(original_record["trunk"], "carrier", "{original_record}");
    assert_eq!(original_record["enterprise"], GROUP, "{original_record}");
    let mut tries: Vec<&Value> = records
        .iter()
        .filter(|record| record["callback_of"] == original.as_str())
        .collect();
    tries.sort_by_key(|record| record["arrived"].as_str().unwrap_or_default().to_owned());
    let outcomes: Vec<&str> = tries
        .iter()
        .map(|record| record["outcome"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        outcomes,
        ["not_reached", "connected"],
        "the attempts' records: {tries:#?}"
    );
    for record in &tries {
        assert_eq!(record["caller"], CALLER_E164, "{record}");
        assert_eq!(record["trunk"], "carrier", "{record}");
        assert_eq!(record["enterprise"], GROUP, "{record}");
    }
    assert_eq!(tries[1]["agent"], agent_uri.as_str(), "{}", tries[1]);
    assert_eq!(
        tries[0]["call_id"].as_str(),
        busy_ids.first().map(String::as_str),
        "the first attempt's record is the busy INVITE's call"
    );
    assert_eq!(
        tries[1]["call_id"].as_str(),
        answer_ids.first().map(String::as_str),
        "the second attempt's record is the answered INVITE's call"
    );

    let deadline = Instant::now() + SIGNALLING_DEADLINE;
    loop {
        let callbacks = live(&service)["callbacks"].clone();
        if callbacks.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/api/live still lists callbacks after the bridge: {callbacks}"
        );
        thread::sleep(POLL);
    }
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

/// Requests are kept in the database: a service started on it takes up the pending ones
/// (with the attempts they had), and not those that are over.
#[test]
fn pending_requests_in_the_database_are_taken_up_at_start() {
    use hotline::cdr::{CallbackRow, CallbackStatus, CdrStore};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "callback-restart-{}-{}",
        std::process::id(),
        free_port(false, false)
    ));
    fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("hotline.db").display());
    let requested = chrono::Utc::now() - chrono::Duration::minutes(10);
    let row = |id: &str, state: CallbackStatus, number: &str| CallbackRow {
        id: id.into(),
        group: GROUP.into(),
        language: "lt".into(),
        number: number.into(),
        display: format!("[CB][LT] {GROUP_NAME}"),
        path: "main:1".into(),
        requested,
        queue_entered: requested - chrono::Duration::minutes(2),
        attempts: 1,
        state,
        updated: requested,
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = CdrStore::connect(&url, &dir.join("spool.jsonl"))
            .await
            .unwrap();
        store
            .callback_changed(row("waiting@before", CallbackStatus::Pending, CALLER_E164))
            .await
            .unwrap();
        store
            .callback_changed(row("done@before", CallbackStatus::Connected, ""))
            .await
            .unwrap();
    });
    // Nobody answers at the agent's or the carrier's address: the request just waits.
    let agent = format!("sip:heating-1@127.0.0.1:{}", free_port(false, false));
    let routing = write_routing(&agent);
    let carrier = SocketAddr::new(
        IpAddr::V4(CARRIER_IP),
        free_udp_port(IpAddr::V4(CARRIER_IP), false),
    );
    let service = Service::start_with_config(
        &settings(carrier, &routing),
        &[("HOTLINE__DATABASE__URL", url.as_str())],
    );
    let entry = wait_for_live_callback(&service, "the stored request", |entry| {
        entry["number"] == CALLER_E164
    });
    assert_eq!(entry["group"], GROUP);
    assert_eq!(entry["language"], "lt");
    assert_eq!(entry["attempts"], 1);
    assert!(entry["waiting_s"].as_u64().unwrap_or(0) >= 600, "{entry}");
    let callbacks = live(&service)["callbacks"].clone();
    assert_eq!(
        callbacks.as_array().map(Vec::len),
        Some(1),
        "only the pending one: {callbacks}"
    );
    assert!(
        service
            .log_lines()
            .iter()
            .any(|line| line.contains("pending callback requests taken up")
                && line.contains("callbacks=1")),
        "the start says so"
    );
}

// ---- the service's settings ---------------------------------------------------------------------

fn settings(carrier: SocketAddr, routing: &Path) -> String {
    format!(
        r#"
routing = "{routing}"

[sip]
trusted = ["127.0.0.1/32"]

[trunks.carrier]
host = "{carrier}"
register = true
username = "{TRUNK_USER}"
password = "{PASSWORD}"
numbers = ["{DID}"]
"#,
        routing = routing.display()
    )
}

/// One language; key 1 of the start menu queues the caller for `heating`, whose only agent
/// is the SIPp phone at `agent_uri`; `when_empty = "wait"` keeps callers queued while it is
/// paused. The callback key is the default, 1.
fn write_routing(agent_uri: &str) -> PathBuf {
    let text = format!(
        r#"[hotline]
languages = ["lt"]
default_language = "lt"
timezone = "Europe/Vilnius"
digit_timeout = "10s"
max_attempts = 2
fallback = "{GROUP}"
start = "main"
announce_every = "{announce}s"

[menus.main]
prompt = "digit_1"
options."1" = {{ group = "{GROUP}" }}

[groups.{GROUP}]
name = {{ lt = "{GROUP_NAME}" }}
announce = "group_heating"
transfer = "bridge"
when_empty = "wait"
ring_timeout = "10s"
wrap_up = "0s"
max_wait = "5m"
callback = {{ trunk = "carrier", offer_after = "{offer}s", key = "1", max_attempts = {MAX_ATTEMPTS}, retry_after = "{retry}s" }}
agents = [{{ uri = "{agent_uri}", languages = ["lt"] }}]
"#,
        announce = ANNOUNCE_EVERY.as_secs(),
        offer = OFFER_AFTER.as_secs(),
        retry = RETRY_AFTER.as_secs(),
    );
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "callback-{}-{}.toml",
        std::process::id(),
        free_port(false, false)
    ));
    fs::write(&path, text).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    path
}

/// A UDP address on `ip` that is free now, below Linux's ephemeral range (32768+) and above
/// the services' RTP ranges: no `port 0` socket can be handed it while the busy phone has
/// left it and the answering one has not yet bound it (as in tests/trunk_interop.rs).
fn reserved_udp_addr(ip: Ipv4Addr) -> SocketAddr {
    const FIRST: u16 = 12_000;
    const COUNT: u16 = 8_000;
    let start = u16::try_from(std::process::id() % u32::from(COUNT)).unwrap_or(0);
    (0..COUNT)
        .map(|step| SocketAddr::new(IpAddr::V4(ip), FIRST + (start + step) % COUNT))
        .find(|addr| UdpSocket::bind(addr).is_ok())
        .unwrap_or_else(|| panic!("no free UDP port on {ip} in {FIRST}..{}", FIRST + COUNT))
}

// ---- the HTTP API ----------------------------------------------------------------------------------

fn live(service: &Service) -> Value {
    let (status, body) = http_get(service.http_addr(), "/api/live", None);
    assert_eq!(status, 200, "GET /api/live: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("/api/live: {error}: {body}"))
}

/// Polls /api/live (republished every second) until `callbacks[]` has an entry for which
/// `wanted` holds, and returns it.
fn wait_for_live_callback(service: &Service, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SIGNALLING_DEADLINE;
    loop {
        let callbacks = live(service)["callbacks"].clone();
        let found = callbacks
            .as_array()
            .and_then(|entries| entries.iter().find(|entry| wanted(entry)))
            .cloned();
        if let Some(entry) = found {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not in /api/live callbacks within {SIGNALLING_DEADLINE:?}: {callbacks}"
        );
        thread::sleep(POLL);
    }
}

fn wait_for_agent_state(service: &Service, agent: &str, state: &str) {
    let deadline = Instant::now() + SIGNALLING_DEADLINE;
    loop {
        let agents = live(service)["agents"].clone();
        let seen = agents
            .as_array()
            .and_then(|all| all.iter().find(|entry| entry["agent"] == agent))
            .and_then(|entry| entry["state"].as_str())
            .unwrap_or("(not listed)")
            .to_owned();
        if seen == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{agent} is {seen:?} in /api/live, not {state:?}: {agents}"
        );
        thread::sleep(POLL);
    }
}

/// `POST /api/agents/{agent}/state` (HTTP/1.0, the service closes after the answer).
fn set_agent_state(http: SocketAddr, agent: &str, state: &str) {
    let id = agent.replace(':', "%3A").replace('@', "%40");
    let path = format!("/api/agents/{id}/state");
    let body = format!(r#"{{"state": "{state}"}}"#);
    let mut stream = TcpStream::connect_timeout(&http, Duration::from_secs(5))
        .unwrap_or_else(|error| panic!("connecting to {http}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("setting the read timeout");
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {http}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap_or_else(|error| panic!("sending POST {path}: {error}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|error| panic!("reading the answer to POST {path}: {error}"));
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "POST {path} {body}: {response}"
    );
}

/// The original call's record and (at least) `attempts` records naming it in `callback_of`,
/// from `GET /api/calls`, waiting until they are written.
fn wait_for_records(service: &Service, original: &str, attempts: usize) -> Vec<Value> {
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
        let calls = listing["calls"].as_array().cloned().unwrap_or_default();
        let has_original = calls.iter().any(|call| call["call_id"] == original);
        let linked = calls
            .iter()
            .filter(|call| call["callback_of"] == original)
            .count();
        if has_original && linked >= attempts {
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: the original call {original} (found: {has_original}) and {attempts} \
             attempts (found {linked}) not recorded within {RECORD_DEADLINE:?}: {body}"
        );
        thread::sleep(POLL);
    }
}

// ---- SIPp peers ---------------------------------------------------------------------------------

/// One SIPp process in the background on its own loopback address (scenario from tests/sipp/),
/// with its logs in `dir/NAME/`; killed if dropped unfinished (and its logs printed if the
/// test is failing).
struct SippPeer {
    name: String,
    dir: PathBuf,
    sip: SocketAddr,
    command: Command,
    child: Option<Child>,
    exit_code: Option<Option<i32>>,
}

impl SippPeer {
    fn new(dir: &Path, name: &str, scenario: &str, sip: SocketAddr, media: u16) -> SippPeer {
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        assert!(scenario.is_file(), "no scenario {}", scenario.display());
        let dir = dir.join(name);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        let ip = sip.ip().to_string();
        let mut command = Command::new("sipp");
        command
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", &ip, "-mi", &ip])
            .args(["-p", &sip.port().to_string(), "-mp", &media.to_string()])
            .args(["-cp", &free_port(false, false).to_string()])
            .args(["-t", "u1", "-m", "1", "-nostdin"])
            // A backstop: every wait of the scenarios has its own timeout.
            .args(["-timeout", "90s", "-timeout_error"])
            // The service probes static agents' phones with OPTIONS.
            .arg("-aa")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(dir.join("screen.log"))
            .current_dir(&dir)
            .stdin(Stdio::null());
        SippPeer {
            name: name.to_owned(),
            dir,
            sip,
            command,
            child: None,
            exit_code: None,
        }
    }

    /// A UAC calling `number@target`.
    fn to(mut self, target: SocketAddr, number: &str) -> SippPeer {
        self.command.arg(target.to_string()).args(["-s", number]);
        self
    }

    /// Calls to take or place (`-m`; the last one given counts).
    fn calls(mut self, calls: u32) -> SippPeer {
        self.command.args(["-m", &calls.to_string()]);
        self
    }

    /// Call-IDs `PREFIX-N-PID@IP`, so the test finds the call in the service's log.
    fn call_id_prefix(mut self, prefix: &str) -> SippPeer {
        self.command
            .args(["-cid_str", &format!("{prefix}-%u-%p@%s")]);
        self
    }

    /// A file in SIPp's working folder (audio or DTMF for the scenario).
    fn working_file(self, name: &str, contents: Vec<u8>) -> SippPeer {
        let path = self.dir.join(name);
        fs::write(&path, contents)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        self
    }

    fn spawn(mut self) -> SippPeer {
        let output = File::create(self.dir.join("output.log")).expect("creating SIPp's output log");
        let output_err = output.try_clone().expect("cloning SIPp's output log");
        let child = self
            .command
            .stdout(output)
            .stderr(output_err)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "starting sipp {} (Debian package sip-tester): {error}",
                    self.name
                )
            });
        self.child = Some(child);
        self
    }

    /// Waits until SIPp has bound its SIP port (looked up in /proc/net/udp, without binding).
    fn wait_until_bound(&mut self) {
        if let Err(error) = wait_until_udp_bound(self.sip, SIGNALLING_DEADLINE) {
            panic!("sipp {}: {error:#}\n{}", self.name, self.diagnostics());
        }
    }

    /// Sends SIPp a bare MESSAGE in the call `call_id`: the scenario's cue to go on.
    fn cue(&self, call_id: &str) {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the cue socket");
        let local = socket.local_addr().expect("the cue socket's address");
        let sipp = self.sip;
        let message = format!(
            "MESSAGE sip:sipp@{sipp} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-test-cue-{}\r\n\
             From: <sip:test@{local}>;tag=test-cue\r\n\
             To: <sip:sipp@{sipp}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 MESSAGE\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            since_epoch().as_micros()
        );
        socket
            .send_to(message.as_bytes(), sipp)
            .unwrap_or_else(|error| panic!("cueing sipp {}: {error}", self.name));
    }

    /// SIPp's exit code once it has finished (0: every call went as its scenario says);
    /// panics if it runs past [`PEER_DEADLINE`].
    fn finish(&mut self) -> Option<i32> {
        if let Some(code) = self.exit_code {
            return code;
        }
        let child = self.child.as_mut().expect("sipp was started");
        let deadline = Instant::now() + PEER_DEADLINE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => panic!(
                    "sipp {} still running after {PEER_DEADLINE:?}\n{}",
                    self.name,
                    self.diagnostics()
                ),
                Err(error) => panic!("waiting for sipp {}: {error}", self.name),
            }
        };
        self.exit_code = Some(status.code());
        status.code()
    }

    /// Every SIP message SIPp sent and received.
    fn messages(&self) -> String {
        fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default()
    }

    fn diagnostics(&self) -> String {
        let read = |file: &str| fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        format!(
            "---- sipp {} in {} ----\n-- errors.log --\n{}\n-- output.log --\n{}\n-- screen.log --\n{}\n-- messages.log --\n{}",
            self.name,
            self.dir.display(),
            read("errors.log"),
            read("output.log"),
            read("screen.log"),
            read("messages.log")
        )
    }
}

impl Drop for SippPeer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// The distinct Call-IDs of the INVITEs in a SIPp message log, in order.
fn invite_call_ids(messages: &str) -> Vec<String> {
    let invites = messages
        .split("----------------------------------------------- ")
        .filter(|block| block.contains("message received") && block.contains("\nINVITE "))
        .filter_map(|block| header(block, "Call-ID"));
    distinct(invites)
}

// ---- the resident's keys and the parties' voices --------------------------------------------------

/// SIPp's RFC 2833 capture of key 1 with its RTP timestamps moved on by `press` × 2 s and its
/// sequence numbers by `press` × 100 (UDP checksum zeroed), so that each copy is a press of
/// its own: replayed unchanged, a second copy would repeat the first press's event.
fn dtmf_1_pcap(press: u32) -> Vec<u8> {
    const PCAP: &str = "/usr/share/sip-tester/dtmf_2833_1.pcap";
    let mut bytes = fs::read(PCAP)
        .unwrap_or_else(|error| panic!("{PCAP}: {error} (apt-get install sip-tester)"));
    assert_eq!(
        bytes[..4],
        0xa1b2_c3d4u32.to_le_bytes(),
        "{PCAP} is not a little-endian classic pcap"
    );
    assert_eq!(bytes[20..24], 1u32.to_le_bytes(), "{PCAP} is not Ethernet");
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = at + 16;
        at = frame + length;
        assert_eq!(
            bytes[frame + 12..frame + 14],
            [0x08, 0x00],
            "{PCAP}: not IPv4"
        );
        let udp = frame + 14 + usize::from(bytes[frame + 14] & 0x0f) * 4;
        let rtp = udp + 8;
        bytes[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
        let sequence = u16::from_be_bytes([bytes[rtp + 2], bytes[rtp + 3]]);
        let shifted = sequence.wrapping_add(u16::try_from(press * 100).unwrap());
        bytes[rtp + 2..rtp + 4].copy_from_slice(&shifted.to_be_bytes());
        let timestamp = u32::from_be_bytes(bytes[rtp + 4..rtp + 8].try_into().unwrap());
        let shifted = timestamp.wrapping_add(press * 16_000);
        bytes[rtp + 4..rtp + 8].copy_from_slice(&shifted.to_be_bytes());
    }
    bytes
}

/// One 20 ms µ-law frame of a sine at -10 dBm0 whose period divides the frame (1000 Hz,
/// 500 Hz): looped, every frame of the stream is this one.
fn tone(frequency: f64) -> Frame {
    const ZERO_DBM0_PEAK: f64 = 22_730.0;
    let peak = ZERO_DBM0_PEAK * 10f64.powf(-10.0 / 20.0);
    let mut frame = [0u8; FRAME_LEN];
    for (n, byte) in frame.iter_mut().enumerate() {
        let t = n as f64 / 8000.0;
        let value = peak * (2.0 * std::f64::consts::PI * frequency * t).sin();
        *byte = audio_codec_algorithms::encode_ulaw(value.round() as i16);
    }
    frame
}

// ---- the capture --------------------------------------------------------------------------------

/// The RTP payload of `datagram` if it goes to `ip:port`.
fn rtp_payload_to(datagram: &Datagram, ip: Ipv4Addr, port: u16) -> Option<Vec<u8>> {
    if *datagram.dst.ip() != ip || datagram.dst.port() != port {
        return None;
    }
    RtpPacket::parse(datagram).map(|packet| packet.payload)
}

/// Whether `datagram` carries, to the resident's media port, a frame of prompt `name` that
/// no other prompt the test knows has (its first such frame).
fn is_prompt_frame(datagram: &Datagram, port: u16, prompts: &Prompts, name: &str) -> bool {
    let frame = distinctive_frame(prompts, name);
    rtp_payload_to(datagram, RESIDENT_IP, port).is_some_and(|payload| payload[..] == frame[..])
}

fn distinctive_frame(prompts: &Prompts, name: &str) -> Frame {
    let others: Vec<&Frame> = PROMPTS
        .iter()
        .filter(|other| **other != name)
        .flat_map(|other| prompts.frames(other))
        .collect();
    *prompts
        .frames(name)
        .iter()
        .find(|frame| **frame != SILENCE && !others.contains(frame))
        .unwrap_or_else(|| panic!("prompt {name} has no frame of its own"))
}

/// The RTP packets to `ip:port`, in capture order.
fn rtp_to(datagrams: &[Datagram], ip: Ipv4Addr, port: u16) -> Vec<RtpPacket> {
    let mut packets: Vec<RtpPacket> = datagrams
        .iter()
        .filter(|d| *d.dst.ip() == ip && d.dst.port() == port)
        .filter_map(RtpPacket::parse)
        .collect();
    packets.sort_by_key(|p| p.at);
    packets
}

/// The first `count` INVITEs (distinct Call-IDs) captured to `to`, waiting for them.
fn capture_invites_to(capture: &mut Capture, to: SocketAddr, count: usize) -> Vec<String> {
    let invites = std::cell::RefCell::new(Vec::<String>::new());
    capture.wait_for(SIGNALLING_DEADLINE, |d| {
        if d.dst.port() == to.port() && IpAddr::V4(*d.dst.ip()) == to.ip() {
            let text = String::from_utf8_lossy(&d.payload).into_owned();
            let mut invites = invites.borrow_mut();
            let known = invites
                .iter()
                .any(|invite| header(invite, "Call-ID") == header(&text, "Call-ID"));
            if text.starts_with("INVITE ") && !known {
                invites.push(text);
            }
        }
        invites.borrow().len() >= count
    });
    let invites = invites.into_inner();
    assert_eq!(
        invites.len(),
        count,
        "INVITEs captured to {to}: {invites:#?}"
    );
    invites
}

// ---- small helpers ------------------------------------------------------------------------------

/// The value of the first header `name` of a SIP message (full form, case-insensitive).
fn header(message: &str, name: &str) -> Option<String> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The RFC 3339 timestamp that starts each log line.
fn timestamp(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or_default()
}

/// Seconds since the Unix epoch of a log line's timestamp (comparable with capture times).
fn seconds(line: &str) -> f64 {
    let at = chrono::DateTime::parse_from_rfc3339(timestamp(line))
        .unwrap_or_else(|error| panic!("no timestamp in {line:?}: {error}"));
    at.timestamp_micros() as f64 / 1e6
}
