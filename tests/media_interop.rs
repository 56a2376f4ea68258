//! Media interoperability: SIPp calls the real `hotline serve`, listens to its built-in echo
//! flow and presses keys the three ways callers do (RFC 4733 telephone-events, SIP INFO,
//! in-band tones), while dumpcap captures the call on loopback. SIPp never inspects the RTP it
//! receives, so the tests judge the service's RTP from the capture.
//!
//! The oracle is the prompt audio: `prompts/lt/*.wav` are 8 kHz µ-law files the service sends
//! bit-exact, so every packet it sends is either comfort silence or frame N of a prompt, and the
//! marker bit starts each prompt. Cutting the stream at marker bits and matching the frames
//! against the files says which prompt played, from when, and where it was cut.
//! `scripts/test` installs SIPp (sip-tester) and dumpcap (tshark).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::capture::{Capture, Datagram, Frame, Prompts, RtpPacket, FRAME_LEN, PCMU, SILENCE};
use common::{Service, Sipp, SippPorts, SippRun, SippStats, Transport};

const FRAME: Duration = Duration::from_millis(20);
/// The telephone-event payload type of SIPp's `dtmf_2833_*.pcap` files and of the offers.
const TELEPHONE_EVENT: u8 = 101;
/// The echo flow speaks Lithuanian.
const PROMPT_LANG: &str = "lt";
/// The prompts the echo flow plays.
const ECHO_PROMPTS: [&str; 14] = [
    "welcome",
    "goodbye",
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
    "digit_star",
    "digit_pound",
];

/// A key must cut the prompt that plays and start its echo within this (barge-in).
const BARGE_IN_LIMIT: Duration = Duration::from_millis(40);
/// An RFC 4733 or INFO key heard during silence starts its echo within this.
const ECHO_LIMIT: Duration = Duration::from_millis(60);
/// In-band keys are recognised only after 40 ms of tone (ITU-T Q.24), hence the longer limit.
const INBAND_ECHO_LIMIT: Duration = Duration::from_millis(150);

/// The service running the built-in key-echo flow instead of the routing menus.
fn echo_service() -> Service {
    Service::start(&[("HOTLINE__ROUTING", "builtin:echo")])
}

fn one_call_succeeded(run: &SippRun) {
    assert_eq!(
        run.stats,
        SippStats {
            successful: 1,
            failed: 0
        },
        "the SIPp call failed"
    );
    assert_eq!(run.exit_code, Some(0));
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn welcome_prompt_is_paced_and_bit_exact() {
    let prompts = Prompts::load(PROMPT_LANG, &ECHO_PROMPTS);
    let service = echo_service();
    let call = CapturedCall::run(&service, Sipp::new("media_welcome.xml"));
    one_call_succeeded(&call.run);

    let packets = &call.service_rtp;
    let steps = assert_continuous_stream(packets, PCMU);
    let first = packets[0].at;
    let in_five_seconds = packets
        .iter()
        .filter(|packet| packet.at - first < Duration::from_secs(5))
        .count();
    let span = packets[packets.len() - 1].at - first;
    let rate = (packets.len() - 1) as f64 / span.as_secs_f64();
    println!(
        "welcome: {} packets, {in_five_seconds} in the first 5 s, {rate:.2} packets/s, \
         {steps} timestamp steps all +160, sequence steps all +1",
        packets.len()
    );
    assert!(
        (245..=255).contains(&in_five_seconds),
        "{in_five_seconds} packets in the first 5 s, expected 250 (50 per second)"
    );

    let segments = segments(packets, &prompts);
    assert_eq!(
        prompt_names(&segments),
        ["welcome"],
        "one prompt start (marker bit) for the whole call"
    );
    let welcome = &segments[0];
    assert!(
        welcome.start <= 5,
        "the welcome prompt began only after {} packets of silence",
        welcome.start
    );
    assert_eq!(
        welcome.end,
        packets.len(),
        "every packet after the marker is the next welcome frame, in order"
    );
    assert!(
        welcome.played >= 250,
        "5.5 s of call played only {} welcome frames",
        welcome.played
    );
    assert!(call.logged_digits().is_empty(), "no key was pressed");
}

#[test]
fn rfc4733_keys_are_detected_once_and_echoed() {
    let prompts = Prompts::load(PROMPT_LANG, &ECHO_PROMPTS);
    let service = echo_service();
    let call = CapturedCall::run(&service, Sipp::new("media_rfc4733.xml"));
    one_call_succeeded(&call.run);
    assert_continuous_stream(&call.service_rtp, PCMU);

    let presses = call.telephone_event_presses();
    assert_eq!(
        press_keys(&presses),
        "159*",
        "the keys SIPp sent, as captured"
    );
    assert_eq!(
        call.logged_digits(),
        keys_from("159*", "rfc4733", &call.call_id),
        "each key detected exactly once, as RFC 4733"
    );

    let segments = segments(&call.service_rtp, &prompts);
    assert_eq!(
        prompt_names(&segments),
        ["welcome", "digit_1", "digit_5", "digit_9", "digit_star"]
    );
    for echo in &segments[1..] {
        assert!(echo.complete(), "{} was cut: {echo:?}", echo.prompt);
    }
    let latencies = echo_latencies(&call.service_rtp, &presses, &segments[1..]);
    println!("rfc4733: key to echo start {}", show(&latencies));
    for latency in latencies {
        assert!(
            latency <= ECHO_LIMIT,
            "echo started {latency:?} after the key"
        );
    }
}

#[test]
fn sip_info_keys_are_detected_once_and_echoed() {
    let prompts = Prompts::load(PROMPT_LANG, &ECHO_PROMPTS);
    let service = echo_service();
    let call = CapturedCall::run(&service, Sipp::new("media_info.xml"));
    one_call_succeeded(&call.run);
    assert_continuous_stream(&call.service_rtp, PCMU);

    let infos = call.requests_from_caller("INFO");
    assert_eq!(infos.len(), 3, "SIPp sent three INFO requests");
    assert_eq!(
        call.logged_digits(),
        keys_from("370", "sip-info", &call.call_id),
        "each key detected exactly once, from SIP INFO"
    );

    let segments = segments(&call.service_rtp, &prompts);
    assert_eq!(
        prompt_names(&segments),
        ["welcome", "digit_3", "digit_7", "digit_0"]
    );
    let presses: Vec<Press> = "370"
        .chars()
        .zip(&infos)
        .map(|(key, &at)| Press { key, at })
        .collect();
    let latencies = echo_latencies(&call.service_rtp, &presses, &segments[1..]);
    println!("sip-info: INFO to echo start {}", show(&latencies));
    for latency in latencies {
        assert!(latency <= ECHO_LIMIT, "echo started {latency:?} after INFO");
    }
}

#[test]
fn inband_tones_are_detected_once_and_echoed() {
    // A repeated key: the 100 ms pause must split the two presses.
    let keys = "1559*0";
    let prompts = Prompts::load(PROMPT_LANG, &ECHO_PROMPTS);
    let service = echo_service();
    let sipp = Sipp::new("media_inband.xml").working_file("inband_dtmf.pcap", tone_pcap(keys));
    let call = CapturedCall::run(&service, sipp);
    one_call_succeeded(&call.run);
    assert_continuous_stream(&call.service_rtp, PCMU);
    assert!(
        call.caller_rtp
            .iter()
            .all(|packet| packet.payload_type == PCMU),
        "the caller sent PCMU only"
    );

    let presses = tone_presses(&call.caller_rtp, keys);
    assert_eq!(
        presses.len(),
        keys.len(),
        "the capture shows every tone SIPp sent"
    );
    assert_eq!(
        call.logged_digits(),
        keys_from(keys, "inband", &call.call_id),
        "each tone detected exactly once, in-band"
    );

    let segments = segments(&call.service_rtp, &prompts);
    assert_eq!(
        prompt_names(&segments),
        [
            "welcome",
            "digit_1",
            "digit_5",
            "digit_5",
            "digit_9",
            "digit_star",
            "digit_0"
        ]
    );
    assert!(segments[6].complete(), "the last echo plays out");
    let latencies = echo_latencies(&call.service_rtp, &presses, &segments[1..]);
    println!("inband: tone start to echo start {}", show(&latencies));
    for latency in latencies {
        assert!(
            latency <= INBAND_ECHO_LIMIT,
            "echo started {latency:?} after the tone began"
        );
    }
}

#[test]
fn speech_is_not_taken_for_inband_keys() {
    let prompts = Prompts::load(PROMPT_LANG, &ECHO_PROMPTS);
    let welcome = prompts.frames("welcome").to_vec();
    let service = echo_service();
    let sipp =
        Sipp::new("media_talk_off.xml").working_file("welcome_as_caller.pcap", rtp_pcap(&welcome));
    let call = CapturedCall::run(&service, sipp);
    one_call_succeeded(&call.run);

    let speech_sent = call
        .caller_rtp
        .iter()
        .filter(|packet| packet.payload != SILENCE)
        .count();
    let speech_in_prompt = welcome.iter().filter(|frame| **frame != SILENCE).count();
    assert_eq!(
        speech_sent, speech_in_prompt,
        "the whole welcome prompt reached the service as caller audio"
    );
    assert_eq!(call.logged_digits(), [], "speech detected as keys");
    let segments = segments(&call.service_rtp, &prompts);
    assert_eq!(prompt_names(&segments), ["welcome"]);
    assert!(segments[0].complete(), "no key cut the welcome prompt");
}

#[test]
fn key_cuts_the_playing_prompt_within_40_ms() {
    let prompts = Prompts::load(PROMPT_LANG, &ECHO_PROMPTS);
    let service = echo_service();
    let call = CapturedCall::run(&service, Sipp::new("media_barge_in.xml"));
    one_call_succeeded(&call.run);
    assert_continuous_stream(&call.service_rtp, PCMU);

    let presses = call.telephone_event_presses();
    assert_eq!(press_keys(&presses), "59");
    assert_eq!(
        call.logged_digits(),
        keys_from("59", "rfc4733", &call.call_id)
    );
    let segments = segments(&call.service_rtp, &prompts);
    assert_eq!(prompt_names(&segments), ["welcome", "digit_5", "digit_9"]);
    for (cut, press) in segments.iter().zip(&presses) {
        assert!(
            !cut.complete() && cut.played > 5,
            "{press:?} came while {} was playing: {cut:?}",
            cut.prompt
        );
    }
    let latencies = echo_latencies(&call.service_rtp, &presses, &segments[1..]);
    for (cut, next) in segments.iter().zip(&segments[1..]) {
        assert_eq!(
            cut.end, next.start,
            "{} must run until the packet that starts {}",
            cut.prompt, next.prompt
        );
    }
    println!(
        "barge-in: first telephone-event packet to first packet of the echo {} \
         (cutting welcome after {} frames, digit_5 after {} frames)",
        show(&latencies),
        segments[0].played,
        segments[1].played
    );
    for latency in latencies {
        assert!(
            latency <= BARGE_IN_LIMIT,
            "the prompt was cut {latency:?} after the key, over {BARGE_IN_LIMIT:?}"
        );
    }
}

#[test]
fn pound_says_goodbye_then_hangs_up() {
    let prompts = Prompts::load(PROMPT_LANG, &ECHO_PROMPTS);
    let service = echo_service();
    let call = CapturedCall::run(&service, Sipp::new("media_pound.xml"));
    one_call_succeeded(&call.run);
    assert_continuous_stream(&call.service_rtp, PCMU);

    assert_eq!(press_keys(&call.telephone_event_presses()), "#");
    assert_eq!(
        call.logged_digits(),
        keys_from("#", "rfc4733", &call.call_id)
    );
    let segments = segments(&call.service_rtp, &prompts);
    assert_eq!(prompt_names(&segments), ["welcome", "goodbye"]);
    let goodbye = &segments[1];
    assert!(goodbye.complete(), "goodbye plays out: {goodbye:?}");

    let byes = call.requests_to_caller("BYE");
    assert_eq!(byes.len(), 1, "the service hung up with one BYE");
    let bye = byes[0];
    let last_goodbye_frame = call.service_rtp[goodbye.end - 1].at;
    assert!(
        bye >= last_goodbye_frame,
        "BYE came {:?} before goodbye ended",
        last_goodbye_frame - bye
    );
    let after_goodbye = bye - last_goodbye_frame;
    println!("pound: BYE {after_goodbye:?} after the last goodbye frame");
    assert!(after_goodbye <= Duration::from_millis(100));
    let last_rtp = call.service_rtp[call.service_rtp.len() - 1].at;
    assert!(
        last_rtp <= bye + Duration::from_millis(40),
        "RTP went on {:?} after BYE",
        last_rtp - bye
    );
}

// ---- one captured call ----------------------------------------------------------------------

/// A key press as seen in the capture: when its first packet (or request) went to the service.
#[derive(Debug, Clone, Copy)]
struct Press {
    key: char,
    at: Duration,
}

/// One key as the service logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoggedDigit {
    digit: String,
    source: String,
    call_id: String,
}

fn keys_from(keys: &str, source: &str, call_id: &str) -> Vec<LoggedDigit> {
    keys.chars()
        .map(|key| LoggedDigit {
            digit: key.to_string(),
            source: source.to_string(),
            call_id: call_id.to_string(),
        })
        .collect()
}

fn press_keys(presses: &[Press]) -> String {
    presses.iter().map(|press| press.key).collect()
}

/// One SIPp run against the service, captured on loopback, split by direction.
struct CapturedCall<'a> {
    service: &'a Service,
    run: SippRun,
    /// The call's Call-ID, from the captured INVITE.
    call_id: String,
    /// RTP the service sent to SIPp's media port.
    service_rtp: Vec<RtpPacket>,
    /// RTP SIPp sent from its media port to the service.
    caller_rtp: Vec<RtpPacket>,
    /// SIP datagrams with SIPp, and whether SIPp sent them.
    sip: Vec<(Datagram, bool)>,
}

impl<'a> CapturedCall<'a> {
    fn run(service: &'a Service, sipp: Sipp) -> CapturedCall<'a> {
        let ports = SippPorts::pick(Transport::Udp);
        let capture = Capture::start(
            service.dir(),
            &format!("udp port {} or udp port {}", ports.media, ports.signalling),
        );
        let run = sipp.ports(ports).run(service);
        let datagrams = capture.finish();
        // Every DTMF line precedes the call's end, so from then on the log is complete.
        let ended =
            service.wait_for_log_line(|line| line.contains("call ended"), Duration::from_secs(10));
        assert!(ended.is_some(), "the service never logged the call's end");

        let mut service_rtp = Vec::new();
        let mut caller_rtp = Vec::new();
        let mut sip = Vec::new();
        let mut service_rtp_source = None;
        for datagram in datagrams {
            if datagram.src.port() == ports.signalling || datagram.dst.port() == ports.signalling {
                let from_sipp = datagram.src.port() == ports.signalling;
                sip.push((datagram, from_sipp));
            } else if datagram.dst.port() == ports.media {
                let packet = RtpPacket::parse(&datagram)
                    .unwrap_or_else(|| panic!("the service sent a non-RTP datagram: {datagram:?}"));
                let source = *service_rtp_source.get_or_insert(datagram.src);
                assert_eq!(
                    datagram.src, source,
                    "the service's RTP came from two sources"
                );
                service_rtp.push(packet);
            } else if datagram.src.port() == ports.media {
                let packet = RtpPacket::parse(&datagram)
                    .unwrap_or_else(|| panic!("SIPp sent a non-RTP datagram: {datagram:?}"));
                if let Some(source) = service_rtp_source {
                    assert_eq!(datagram.dst, source, "symmetric RTP: one port both ways");
                }
                caller_rtp.push(packet);
            }
        }
        assert!(!service_rtp.is_empty(), "the service sent no RTP");
        let call_id = sip
            .iter()
            .find(|(datagram, from_sipp)| *from_sipp && datagram.payload.starts_with(b"INVITE "))
            .and_then(|(datagram, _)| header(&datagram.payload, "Call-ID"))
            .expect("the capture holds SIPp's INVITE with a Call-ID");
        let answer_port = sip
            .iter()
            .filter(|(_, from_sipp)| !from_sipp)
            .find_map(|(datagram, _)| audio_port(&datagram.payload))
            .expect("the capture holds the service's SDP answer");
        assert_eq!(
            service_rtp_source.map(|source| source.port()),
            Some(answer_port),
            "the service sends RTP from the port in its SDP answer"
        );
        CapturedCall {
            service,
            run,
            call_id,
            service_rtp,
            caller_rtp,
            sip,
        }
    }

    /// When SIPp sent each `method` request (retransmissions included).
    fn requests_from_caller(&self, method: &str) -> Vec<Duration> {
        self.requests(method, true)
    }

    /// When the service sent each `method` request to SIPp.
    fn requests_to_caller(&self, method: &str) -> Vec<Duration> {
        self.requests(method, false)
    }

    fn requests(&self, method: &str, from_sipp: bool) -> Vec<Duration> {
        let start = format!("{method} ");
        self.sip
            .iter()
            .filter(|(datagram, sent_by_sipp)| {
                *sent_by_sipp == from_sipp && datagram.payload.starts_with(start.as_bytes())
            })
            .map(|(datagram, _)| datagram.at)
            .collect()
    }

    /// The caller's telephone-event presses: one per event start timestamp, at its first packet.
    fn telephone_event_presses(&self) -> Vec<Press> {
        const KEYS: &[u8; 16] = b"0123456789*#ABCD";
        let mut presses: Vec<(u32, Press)> = Vec::new();
        for packet in &self.caller_rtp {
            if packet.payload_type != TELEPHONE_EVENT {
                continue;
            }
            if presses.iter().any(|(start, _)| *start == packet.timestamp) {
                continue;
            }
            let event = packet.payload.first().map(|&event| usize::from(event));
            let key = event
                .and_then(|event| KEYS.get(event))
                .map_or('?', |&key| char::from(key));
            presses.push((packet.timestamp, Press { key, at: packet.at }));
        }
        presses.into_iter().map(|(_, press)| press).collect()
    }

    /// The keys the service logged, in order (lines `... DTMF digit=5 source=rfc4733`).
    fn logged_digits(&self) -> Vec<LoggedDigit> {
        self.service
            .log_lines()
            .iter()
            .filter_map(|line| parse_dtmf_line(line))
            .collect()
    }
}

fn parse_dtmf_line(line: &str) -> Option<LoggedDigit> {
    let (span, message) = line.split_once(": DTMF ")?;
    let field = |text: &str, name: &str| -> Option<String> {
        let start = text.find(&format!("{name}="))? + name.len() + 1;
        let value: String = text[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '}')
            .collect();
        Some(value.trim_matches('"').to_string())
    };
    Some(LoggedDigit {
        digit: field(message, "digit")?,
        source: field(message, "source")?,
        call_id: field(span, "call_id").unwrap_or_default(),
    })
}

/// A header's value from a SIP message.
fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// The audio port of an SDP body inside a SIP message.
fn audio_port(message: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(message);
    text.lines()
        .find_map(|line| line.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn show(latencies: &[Duration]) -> String {
    let shown: Vec<String> = latencies
        .iter()
        .map(|latency| format!("{:.1} ms", latency.as_secs_f64() * 1000.0))
        .collect();
    shown.join(", ")
}

/// For each press, the time from it to the first packet of its echo prompt.
fn echo_latencies(packets: &[RtpPacket], presses: &[Press], echoes: &[Segment]) -> Vec<Duration> {
    assert_eq!(presses.len(), echoes.len(), "one echo per key");
    presses
        .iter()
        .zip(echoes)
        .map(|(press, echo)| {
            let started = packets[echo.start].at;
            assert!(
                started >= press.at,
                "{} started before its key {press:?}",
                echo.prompt
            );
            started - press.at
        })
        .collect()
}

// ---- the service's RTP, judged against the prompt files -------------------------------------

/// Asserts one RTP stream without gaps: one SSRC, the payload type, 20 ms of G.711 per packet,
/// sequence numbers +1 and timestamps +160. Returns the number of steps checked.
fn assert_continuous_stream(packets: &[RtpPacket], payload_type: u8) -> usize {
    assert!(!packets.is_empty(), "no RTP");
    let first = &packets[0];
    for (index, packet) in packets.iter().enumerate() {
        assert_eq!(
            (packet.payload_type, packet.ssrc, packet.payload.len()),
            (payload_type, first.ssrc, FRAME_LEN),
            "packet {index}: payload type, SSRC, payload length"
        );
    }
    for (index, pair) in packets.windows(2).enumerate() {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence.wrapping_add(1),
            "sequence step at packet {}",
            index + 1
        );
        assert_eq!(
            pair[1].timestamp.wrapping_sub(pair[0].timestamp),
            FRAME_LEN as u32,
            "timestamp step at packet {}",
            index + 1
        );
    }
    packets.len() - 1
}

/// One prompt as played: from its marker packet, `played` frames in order from its first.
#[derive(Debug, Clone)]
struct Segment {
    prompt: &'static str,
    /// Index of its first packet, the one with the marker bit.
    start: usize,
    played: usize,
    /// Frames in the prompt.
    frames: usize,
    /// Index of the first packet after it (silence, or the next prompt's first packet).
    end: usize,
}

impl Segment {
    fn complete(&self) -> bool {
        self.played == self.frames
    }
}

fn prompt_names(segments: &[Segment]) -> Vec<&'static str> {
    segments.iter().map(|segment| segment.prompt).collect()
}

/// Splits the service's stream at marker bits and names the prompt each part plays. Everything
/// else must be comfort silence: before the first prompt, and after a prompt ends or is cut.
fn segments(packets: &[RtpPacket], prompts: &Prompts) -> Vec<Segment> {
    let starts: Vec<usize> = (0..packets.len())
        .filter(|&index| packets[index].marker)
        .collect();
    let first_start = starts.first().copied().unwrap_or(packets.len());
    for (index, packet) in packets[..first_start].iter().enumerate() {
        assert_eq!(
            packet.payload, SILENCE,
            "packet {index} before the first prompt is not silence"
        );
    }
    let mut segments = Vec::new();
    for (number, &start) in starts.iter().enumerate() {
        let next = starts.get(number + 1).copied().unwrap_or(packets.len());
        let part = &packets[start..next];
        let matches = prompts.ranked_matches(part);
        let (prompt, played, frames) = matches[0];
        // Prompts begin with two silent frames; a third is needed to tell them apart.
        assert!(
            played >= 3 && played > matches[1].1,
            "packets {start}..{next} (marker at {start}) are no prompt's beginning: best \
             matches {:?}",
            &matches[..3]
        );
        for (offset, packet) in part[played..].iter().enumerate() {
            assert_eq!(
                packet.payload,
                SILENCE,
                "packet {} after {prompt} (frame {played} of {frames}) is neither its next frame \
                 nor silence",
                start + played + offset
            );
        }
        segments.push(Segment {
            prompt,
            start,
            played,
            frames,
            end: start + played,
        });
    }
    segments
}

/// The caller's in-band presses: runs of non-silent PCMU packets, at the first of each run.
fn tone_presses(packets: &[RtpPacket], keys: &str) -> Vec<Press> {
    let mut presses = Vec::new();
    let mut in_tone = false;
    let mut keys = keys.chars();
    for packet in packets {
        let tone = packet.payload != SILENCE;
        if tone && !in_tone {
            presses.push(Press {
                key: keys.next().unwrap_or('?'),
                at: packet.at,
            });
        }
        in_tone = tone;
    }
    presses
}

// ---- generated caller audio -----------------------------------------------------------------

/// 0 dBm0 as the peak of a 16-bit sine (G.711's full-scale sine is +3.14 dBm0).
const ZERO_DBM0_PEAK: f64 = 22_730.0;
/// Each frequency of a key at -10 dBm0, a typical phone's level.
const TONE_LEVEL_DBM0: f64 = -10.0;
const TONE_FRAMES: usize = 5;
const PAUSE_FRAMES: usize = 5;

/// PCMU audio of `keys` dialled: 100 ms of silence, then per key a 100 ms dual tone and 100 ms
/// of silence. At most 1.3 s, which `media_inband.xml` waits for.
fn tone_pcap(keys: &str) -> Vec<u8> {
    assert!(keys.len() <= 6, "media_inband.xml waits for 6 keys at most");
    let peak = ZERO_DBM0_PEAK * 10f64.powf(TONE_LEVEL_DBM0 / 20.0);
    let mut frames = vec![SILENCE; PAUSE_FRAMES];
    for key in keys.chars() {
        let (low, high) = dtmf_frequencies(key);
        let mut samples = (0..TONE_FRAMES * FRAME_LEN).map(|n| {
            let t = n as f64 / 8000.0;
            let value = peak
                * ((2.0 * std::f64::consts::PI * low * t).sin()
                    + (2.0 * std::f64::consts::PI * high * t).sin());
            audio_codec_algorithms::encode_ulaw(value.round() as i16)
        });
        for _ in 0..TONE_FRAMES {
            let mut frame = SILENCE;
            for byte in &mut frame {
                *byte = samples.next().unwrap();
            }
            frames.push(frame);
        }
        frames.extend([SILENCE; PAUSE_FRAMES]);
    }
    rtp_pcap(&frames)
}

fn dtmf_frequencies(key: char) -> (f64, f64) {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYPAD: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    for (row, keys) in KEYPAD.iter().enumerate() {
        if let Some(column) = keys.find(key) {
            return (ROWS[row], COLUMNS[column]);
        }
    }
    panic!("{key:?} is not a DTMF key")
}

/// A classic pcap of PCMU RTP packets, one per frame every 20 ms, as SIPp's `play_pcap_audio`
/// reads it (Ethernet, IPv4, UDP; SIPp takes only the UDP payload and the timing, and sends it
/// from its media port to the service's).
fn rtp_pcap(frames: &[Frame]) -> Vec<u8> {
    const SSRC: u32 = 0x4854_4c4e;
    const SOURCE: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 1), 49_000);
    const DESTINATION: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 2), 10_000);
    let mut pcap = Vec::new();
    // Global header: microsecond timestamps, link type Ethernet.
    pcap.extend(0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend(2u16.to_le_bytes());
    pcap.extend(4u16.to_le_bytes());
    pcap.extend(0i32.to_le_bytes());
    pcap.extend(0u32.to_le_bytes());
    pcap.extend(65_535u32.to_le_bytes());
    pcap.extend(1u32.to_le_bytes());
    for (index, frame) in frames.iter().enumerate() {
        let mut rtp = Vec::with_capacity(12 + FRAME_LEN);
        rtp.push(0x80);
        rtp.push(if index == 0 { 0x80 } else { 0 } | PCMU);
        rtp.extend((1000 + index as u16).to_be_bytes());
        rtp.extend((160 * index as u32).to_be_bytes());
        rtp.extend(SSRC.to_be_bytes());
        rtp.extend(frame);
        let udp_len = 8 + rtp.len() as u16;
        let mut udp = Vec::with_capacity(usize::from(udp_len));
        udp.extend(SOURCE.1.to_be_bytes());
        udp.extend(DESTINATION.1.to_be_bytes());
        udp.extend(udp_len.to_be_bytes());
        udp.extend(0u16.to_be_bytes()); // no checksum (IPv4); SIPp computes its own
        udp.extend(&rtp);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        ip.extend(SOURCE.0.octets());
        ip.extend(DESTINATION.0.octets());
        let checksum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut packet = vec![0u8; 12];
        packet.extend(0x0800u16.to_be_bytes());
        packet.extend(&ip);
        packet.extend(&udp);

        let at = FRAME * index as u32;
        pcap.extend((at.as_secs() as u32).to_le_bytes());
        pcap.extend(at.subsec_micros().to_le_bytes());
        pcap.extend((packet.len() as u32).to_le_bytes());
        pcap.extend((packet.len() as u32).to_le_bytes());
        pcap.extend(&packet);
    }
    pcap
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    !((folded & 0xffff) + (folded >> 16)) as u16
}

/// A caller whose line goes dead is hung up once no RTP came for `sip.rtp_timeout`, and not
/// while it still streams (SIPp fails the call on a BYE during its 3 s of audio).
#[test]
fn a_caller_who_goes_silent_is_hung_up_after_the_rtp_timeout() {
    let service = Service::start(&[
        ("HOTLINE__ROUTING", "builtin:echo"),
        ("HOTLINE__SIP__RTP_TIMEOUT", "1s"),
    ]);
    // One second of A-law silence, looped by SIPp's rtp_stream in 20 ms packets.
    let silence = vec![0xD5_u8; 8000];
    let run = Sipp::new("media_caller_goes_silent.xml")
        .working_file("silence.al", silence)
        .run(&service);
    one_call_succeeded(&run);
    let hang_up = service
        .wait_for_log_line(|l| l.contains("hanging up"), Duration::from_secs(5))
        .expect("the service hung up");
    assert!(hang_up.contains("reason=\"rtp_timeout\""), "{hang_up}");
    let received = service
        .wait_for_log_line(|l| l.contains("RTP received"), Duration::from_secs(5))
        .expect("the receive task reports what it got");
    let packets: u64 = common::log_field(&received, "packets")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(
        (140..=160).contains(&packets),
        "about 3 s of 20 ms packets before the line went dead: {received}"
    );
    // The call's record (written once the caller answered our BYE) keeps what was received.
    let database = format!("sqlite://{}", service.dir().join("hotline.db").display());
    let reader_spool = service.dir().join("reader-spool.jsonl");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let record = runtime.block_on(async {
        let store = hotline::cdr::CdrStore::connect(&database, &reader_spool)
            .await
            .unwrap();
        let page = hotline::cdr::Page {
            limit: 10,
            offset: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let calls = store
                .calls(&hotline::cdr::CallFilter::default(), page)
                .await
                .unwrap();
            if let Some(record) = calls.into_iter().next() {
                return record;
            }
            assert!(Instant::now() < deadline, "no call record written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(
        (record.rtp_packets, record.rtp_lost),
        (packets, 0),
        "{record:#?}"
    );
}
