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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Service, Sipp, SippPorts, SippRun, SippStats, Transport};

/// Bytes (and samples) in one 20 ms G.711 frame.
const FRAME_LEN: usize = 160;
const FRAME: Duration = Duration::from_millis(20);
type Frame = [u8; FRAME_LEN];
/// µ-law silence, which the service sends between prompts and pads prompts with.
const SILENCE: Frame = [0xFF; FRAME_LEN];
const PCMU: u8 = 0;
/// The telephone-event payload type of SIPp's `dtmf_2833_*.pcap` files and of the offers.
const TELEPHONE_EVENT: u8 = 101;
/// The echo flow speaks Lithuanian.
const PROMPT_LANG: &str = "lt";

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
    let prompts = Prompts::load();
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
    let prompts = Prompts::load();
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
    let prompts = Prompts::load();
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
    let prompts = Prompts::load();
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
    let prompts = Prompts::load();
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
    let prompts = Prompts::load();
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
    let prompts = Prompts::load();
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
        let capture = Capture::start(service.dir(), ports);
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

/// The prompts the echo flow plays, as the µ-law frames in their files.
struct Prompts {
    by_name: Vec<(&'static str, Vec<Frame>)>,
}

impl Prompts {
    const NAMES: [&'static str; 14] = [
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

    fn load() -> Prompts {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("prompts")
            .join(PROMPT_LANG);
        let by_name = Self::NAMES
            .iter()
            .map(|&name| (name, ulaw_wav_frames(&dir.join(format!("{name}.wav")))))
            .collect();
        Prompts { by_name }
    }

    fn frames(&self, name: &str) -> &[Frame] {
        self.by_name
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, frames)| frames.as_slice())
            .unwrap_or_else(|| panic!("no prompt {name}"))
    }
}

/// The data chunk of an 8 kHz mono µ-law WAV file in 20 ms frames, the last one padded with
/// silence as the service pads it.
fn ulaw_wav_frames(path: &Path) -> Vec<Frame> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a WAV file",
        path.display()
    );
    let mut format = None;
    let mut data = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + size).min(bytes.len())];
        match id {
            b"fmt " => format = Some(body.to_vec()),
            b"data" => data = Some(body.to_vec()),
            _ => {}
        }
        at += 8 + size + (size & 1);
    }
    let format = format.unwrap_or_else(|| panic!("{} has no fmt chunk", path.display()));
    let le16 = |offset: usize| u16::from_le_bytes([format[offset], format[offset + 1]]);
    let rate = u32::from_le_bytes(format[4..8].try_into().unwrap());
    assert_eq!(
        (le16(0), le16(2), rate, le16(14)),
        (7, 1, 8000, 8),
        "{} must be µ-law (format 7), mono, 8000 Hz, 8 bits",
        path.display()
    );
    let data = data.unwrap_or_else(|| panic!("{} has no data chunk", path.display()));
    data.chunks(FRAME_LEN)
        .map(|chunk| {
            let mut frame = SILENCE;
            frame[..chunk.len()].copy_from_slice(chunk);
            frame
        })
        .collect()
}

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
        let mut matches: Vec<(&'static str, usize, usize)> = prompts
            .by_name
            .iter()
            .map(|(name, frames)| {
                let played = part
                    .iter()
                    .zip(frames)
                    .take_while(|(packet, frame)| packet.payload == **frame)
                    .count();
                (*name, played, frames.len())
            })
            .collect();
        matches.sort_by_key(|&(_, played, _)| std::cmp::Reverse(played));
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

// ---- loopback capture -----------------------------------------------------------------------

/// A UDP datagram captured on loopback.
#[derive(Clone)]
struct Datagram {
    /// Capture time since the Unix epoch.
    at: Duration,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Datagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} at {:?}, {} bytes",
            self.src,
            self.dst,
            self.at,
            self.payload.len()
        )
    }
}

#[derive(Debug, Clone)]
struct RtpPacket {
    at: Duration,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

impl RtpPacket {
    /// RFC 3550 §5.1 fixed header, CSRCs, extension and padding.
    fn parse(datagram: &Datagram) -> Option<RtpPacket> {
        let bytes = &datagram.payload;
        if bytes.len() < 12 || bytes[0] >> 6 != 2 {
            return None;
        }
        let mut start = 12 + 4 * usize::from(bytes[0] & 0x0f);
        if bytes[0] & 0x10 != 0 {
            let words = u16::from_be_bytes([*bytes.get(start + 2)?, *bytes.get(start + 3)?]);
            start += 4 + 4 * usize::from(words);
        }
        let mut end = bytes.len();
        if bytes[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*bytes.last()?))?;
        }
        Some(RtpPacket {
            at: datagram.at,
            marker: bytes[1] & 0x80 != 0,
            payload_type: bytes[1] & 0x7f,
            sequence: u16::from_be_bytes([bytes[2], bytes[3]]),
            timestamp: u32::from_be_bytes(bytes[4..8].try_into().ok()?),
            ssrc: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
            payload: bytes.get(start..end)?.to_vec(),
        })
    }
}

/// How long dumpcap may take to start capturing.
const CAPTURE_START_DEADLINE: Duration = Duration::from_secs(20);
/// How long the closing sentinel may take to show up in the capture.
const CAPTURE_END_DEADLINE: Duration = Duration::from_secs(10);
/// Payload of the datagram that marks the end of a capture.
const SENTINEL: &[u8] = b"hotline media_interop: end of capture";

/// dumpcap capturing one SIPp run's SIP and RTP on loopback (`udp port SIP or udp port RTP`),
/// writing classic pcap to a pipe that a thread parses and copies into a file.
struct Capture {
    dumpcap: Child,
    datagrams: mpsc::Receiver<Datagram>,
    sentinel_to: SocketAddrV4,
    file: PathBuf,
}

impl Capture {
    /// Starts dumpcap and returns once it is capturing (it says so on stderr).
    fn start(dir: &Path, ports: SippPorts) -> Capture {
        let file = dir.join(format!("capture-{}.pcap", ports.media));
        let filter = format!("udp port {} or udp port {}", ports.signalling, ports.media);
        let mut dumpcap = match Command::new("dumpcap")
            .args(["-i", "lo", "-P", "-q", "-f", &filter, "-w", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("dumpcap not installed: run scripts/test (installs Debian package tshark)")
            }
            Err(error) => panic!("starting dumpcap: {error}"),
        };
        let stdout = dumpcap.stdout.take().expect("stdout is piped");
        let stderr = dumpcap.stderr.take().expect("stderr is piped");

        let (lines, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let (sender, datagrams) = mpsc::channel();
        let copy = std::fs::File::create(&file)
            .unwrap_or_else(|error| panic!("creating {}: {error}", file.display()));
        thread::spawn(move || {
            read_pcap_stream(
                Tee {
                    from: stdout,
                    to: copy,
                },
                &sender,
            )
        });

        let deadline = Instant::now() + CAPTURE_START_DEADLINE;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains("Capturing on") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = dumpcap.kill();
                    let _ = dumpcap.wait();
                    panic!(
                        "dumpcap did not start capturing on lo (capturing needs root or \
                         CAP_NET_RAW): {}",
                        said.join("\n")
                    );
                }
            }
        }
        Capture {
            dumpcap,
            datagrams,
            sentinel_to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports.media),
            file,
        }
    }

    /// Sends a sentinel datagram through the filter and returns everything captured before it:
    /// once it is seen, every earlier datagram has been too.
    fn finish(mut self) -> Vec<Datagram> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a UDP socket");
        let deadline = Instant::now() + CAPTURE_END_DEADLINE;
        let mut captured = Vec::new();
        'waiting: while Instant::now() < deadline {
            socket
                .send_to(SENTINEL, self.sentinel_to)
                .expect("sending the capture sentinel");
            let resend_at = Instant::now() + Duration::from_millis(500);
            loop {
                let left = resend_at.saturating_duration_since(Instant::now());
                match self.datagrams.recv_timeout(left) {
                    Ok(datagram) if datagram.payload == SENTINEL => break 'waiting,
                    Ok(datagram) => captured.push(datagram),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        panic!("dumpcap stopped early; see {}", self.file.display())
                    }
                }
            }
        }
        let _ = self.dumpcap.kill();
        let _ = self.dumpcap.wait();
        assert!(
            Instant::now() < deadline,
            "the capture sentinel never showed up in {}",
            self.file.display()
        );
        captured.retain(|datagram| datagram.payload != SENTINEL);
        captured
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.dumpcap.kill();
        let _ = self.dumpcap.wait();
    }
}

/// Copies what is read into a file, for a look at the capture after a failure.
struct Tee<R> {
    from: R,
    to: std::fs::File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.from.read(buffer)?;
        self.to.write_all(&buffer[..read])?;
        Ok(read)
    }
}

/// Parses a classic pcap stream of Ethernet frames and sends on each IPv4 UDP datagram, until
/// the stream ends or nobody listens.
fn read_pcap_stream(mut stream: impl Read, datagrams: &mpsc::Sender<Datagram>) {
    let mut header = [0u8; 24];
    if stream.read_exact(&mut header).is_err() {
        return;
    }
    let magic = u32::from_le_bytes(header[..4].try_into().unwrap());
    let (little_endian, nanoseconds) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        other => panic!("not a classic pcap stream (magic {other:#x})"),
    };
    let number = |bytes: &[u8]| {
        let bytes: [u8; 4] = bytes.try_into().unwrap();
        if little_endian {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    assert_eq!(number(&header[20..24]), 1, "loopback captures are Ethernet");
    let mut record = [0u8; 16];
    while stream.read_exact(&mut record).is_ok() {
        let seconds = number(&record[..4]);
        let fraction = number(&record[4..8]);
        let mut frame = vec![0u8; number(&record[8..12]) as usize];
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let at = Duration::from_secs(u64::from(seconds))
            + if nanoseconds {
                Duration::from_nanos(u64::from(fraction))
            } else {
                Duration::from_micros(u64::from(fraction))
            };
        if let Some(datagram) = parse_udp_frame(at, &frame) {
            if datagrams.send(datagram).is_err() {
                return;
            }
        }
    }
}

fn parse_udp_frame(at: Duration, frame: &[u8]) -> Option<Datagram> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let udp = ip.get(header_len..)?;
    let address = |bytes: &[u8]| Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
    let port = |offset: usize| u16::from_be_bytes([udp[offset], udp[offset + 1]]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    Some(Datagram {
        at,
        src: SocketAddrV4::new(address(ip.get(12..16)?), port(0)),
        dst: SocketAddrV4::new(address(ip.get(16..20)?), port(2)),
        payload: udp.get(8..udp_len)?.to_vec(),
    })
}
