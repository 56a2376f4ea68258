//! SDES-SRTP (RFC 4568) on the agent leg end to end (issue 16), against the real `hotline serve`
//! with `sip.tls_listen` and a group whose `media_encryption = "required"`
//! (tests/fixtures/agents/srtp.toml):
//! - a baresip agent registered over TLS with `mediaenc=srtp-mand` (its `srtp` module) is rung
//!   with `RTP/SAVP` and `a=crypto` lines, answers, and is bridged to a SIPp caller on plain
//!   RTP over UDP. Tone both ways: baresip decodes the caller's tone (its `sndfile` recording)
//!   and the caller gets baresip's tone relayed in the clear. A loopback capture (dumpcap) shows
//!   the agent leg carrying SRTP (the payload longer by the authentication tag, its bytes never
//!   the caller's G.711 nor what the caller got of baresip's), and no plaintext SIP on the TLS
//!   port;
//! - the same baresip registered over plain UDP is never rung: the offer cannot carry keys, so
//!   the service gives up on that agent before any INVITE, and the caller waits unbridged.
//!
//! `scripts/test` installs SIPp (sip-tester), baresip (baresip-core) and dumpcap (tshark).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::baresip::{tone_share, Baresip, BaresipOptions, BaresipPorts, Signalling};
use common::capture::{Capture, Datagram, Frame, RtpPacket, FRAME_LEN, PCMU};
use common::tls::Pki;
use common::{
    free_port, http_get, log_field as field, wait_for_count, Service, Sipp, SippPorts, SippRun,
    SippStats, Transport,
};

/// Registration, ringing, answering, handshakes: each well within this on loopback.
const DEADLINE: Duration = Duration::from_secs(15);
/// From the caller's INVITE to enough of the tone both ways: the menu prompt, the group's
/// announcements, ringing and answering, then `TALK_PACKETS` packets.
const TALK_DEADLINE: Duration = Duration::from_secs(30);
/// Packets (20 ms each) of tone that must get through each way.
const TALK_PACKETS: usize = 100;
/// The caller's tone; its period divides a frame, so every frame of its stream is the same.
const CALLER_TONE_HZ: f64 = 1000.0;
/// baresip's tone, told apart from the caller's by pitch.
const AGENT_TONE_HZ: f64 = 400.0;
/// A frame whose power at a pitch is at least this share of the whole is that tone (a pure
/// tone gives 0.5, another pitch or silence about 0).
const TONE_SHARE: f64 = 0.35;

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("srtp-interop-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// The service with a TLS listener on a free loopback port, the SRTP-required group and the
/// agents' credentials.
fn srtp_service(pki: &Pki) -> (Service, SocketAddr) {
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], free_port(true, false)));
    let listen = tls_addr.to_string();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents");
    let routing = fixtures.join("srtp.toml");
    let credentials = fixtures.join("credentials.toml");
    let service = Service::start(&[
        ("HOTLINE__SIP__TLS_LISTEN", listen.as_str()),
        ("HOTLINE__SIP__TLS_CERT", pki.cert_file.to_str().unwrap()),
        ("HOTLINE__SIP__TLS_KEY", pki.key_file.to_str().unwrap()),
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
        ("HOTLINE__SIP__CREDENTIALS", credentials.to_str().unwrap()),
    ]);
    service
        .wait_for_log_line(|l| l.contains("SIP listening on TLS"), DEADLINE)
        .expect("the service never said it listens on TLS");
    (service, tls_addr)
}

/// Waits for anna's registration and returns its log line.
fn wait_for_registration(service: &Service, anna: &Baresip) -> String {
    service
        .wait_for_log_line(
            |l| l.contains("agent registration") && field(l, "user").as_deref() == Some("anna"),
            DEADLINE,
        )
        .unwrap_or_else(|| {
            panic!(
                "anna never registered; baresip said:\n{}",
                anna.lines().join("\n")
            )
        })
}

// ---- tests ----------------------------------------------------------------------------------

/// baresip over TLS with SRTP mandatory, bridged to a plain caller: tone both ways, SRTP on the
/// agent leg only, nothing readable on the TLS connection.
#[test]
fn an_agent_over_tls_talks_srtp_with_a_plain_caller() {
    let started = Instant::now();
    let dir = test_dir("tls");
    let pki = Pki::mint(&dir);
    let (service, tls_addr) = srtp_service(&pki);
    let caller = SippPorts::pick(Transport::Udp);
    let agent = BaresipPorts::pick();
    // From before baresip connects: the TLS connection from its first byte.
    let mut capture = Capture::start(
        service.dir(),
        &format!(
            "udp port {} or udp port {} or udp portrange {}-{} or tcp port {} or tcp port {}",
            caller.media,
            caller.signalling,
            agent.rtp.start(),
            agent.rtp.end(),
            tls_addr.port(),
            agent.sip
        ),
    );
    let anna = Baresip::start(
        &dir,
        &BaresipOptions {
            ports: agent.clone(),
            user: "anna",
            password: "anna-secret",
            signalling: Signalling::Tls {
                addr: tls_addr,
                ca_file: pki.ca_file.clone(),
            },
            mediaenc: Some("srtp-mand"),
            tone_hz: AGENT_TONE_HZ,
        },
    );
    let registered = wait_for_registration(&service, &anna);
    assert_eq!(
        field(&registered, "transport").as_deref(),
        Some("TLS"),
        "{registered}"
    );

    let caller_frame = ulaw_tone(CALLER_TONE_HZ);
    let (run, talked) = thread::scope(|scope| {
        let sipp = scope.spawn(|| {
            Sipp::new("srtp_caller.xml")
                .ports(caller)
                .working_file("caller_tone.ul", caller_frame.repeat(50))
                .run(&service)
        });
        let call_id = caller_call_id(&mut capture, caller.signalling);
        // Both ways at once: what baresip sends and gets, and what the caller gets of it.
        let count = RefCell::new(TalkCount::default());
        let talked = capture
            .wait_for(TALK_DEADLINE, |d| {
                count.borrow_mut().add(d, &agent, caller.media)
            })
            .is_some();
        if !talked {
            eprintln!("after {TALK_DEADLINE:?}: {:?}", count.borrow());
        }
        cue(caller.signalling, &call_id);
        (sipp.join().expect("the SIPp thread panicked"), talked)
    });
    assert!(
        talked,
        "no tone both ways\n{}\nthe service said:\n{}",
        run.diagnostics(),
        service.stderr_tail()
    );
    all_calls_succeeded(&run);
    assert!(
        anna.wait_for(|l| l.contains("terminated"), DEADLINE)
            .is_some(),
        "baresip's call never ended"
    );
    // Both legs' receive tasks report when they stop.
    assert!(
        wait_for_count(&service, "RTP received", 2, DEADLINE),
        "the legs' RTP reports are missing"
    );
    let datagrams = capture.finish();
    println!("call over after {:.1} s", started.elapsed().as_secs_f64());

    // The signalling: rung over TLS, answered, bridged; the record says so.
    let log = service.log_lines();
    let ringing = log
        .iter()
        .find(|l| l.contains("ringing agent"))
        .expect("no agent was rung");
    assert!(ringing.contains("transport=tls"), "{ringing}");
    assert!(log.iter().any(|l| l.contains("agent answered: bridging")));
    assert!(log.iter().any(|l| l.contains("media bridged")));
    let record = wait_for_record(&service);
    assert_eq!(record["outcome"], "connected", "{record}");
    assert!(
        record["agent"].as_str().is_some_and(|a| a.contains("anna")),
        "{record}"
    );
    assert!(record["agent_answered"].is_string(), "{record}");

    // The SDP, from baresip's SIP trace: RTP/SAVP both ways, our two suites offered, one taken.
    let sdp = Sdp::from_trace(&anna.lines());
    println!("the service offered:\n  {}", sdp.offer.join("\n  "));
    println!("baresip answered:\n  {}", sdp.answer.join("\n  "));
    let offered_m = sdp.line(&sdp.offer, "m=audio ");
    assert!(offered_m.contains(" RTP/SAVP "), "{offered_m}");
    let offered: Vec<(String, String)> = sdp.crypto(&sdp.offer);
    let suites: Vec<&str> = offered.iter().map(|(_, suite)| suite.as_str()).collect();
    assert_eq!(
        suites,
        ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"],
        "{:?}",
        sdp.offer
    );
    let answered_m = sdp.line(&sdp.answer, "m=audio ");
    assert!(answered_m.contains(" RTP/SAVP "), "{answered_m}");
    let answered = sdp.crypto(&sdp.answer);
    assert_eq!(answered.len(), 1, "{:?}", sdp.answer);
    assert!(offered.contains(&answered[0]), "{answered:?} not offered");
    let suite = answered[0].1.as_str();
    let tag_len = match suite {
        "AES_CM_128_HMAC_SHA1_80" => 10,
        "AES_CM_128_HMAC_SHA1_32" => 4,
        other => panic!("baresip took {other}"),
    };
    let enabled = anna
        .lines()
        .into_iter()
        .find(|l| l.contains("SRTP is Enabled"))
        .expect("baresip never said SRTP is on");
    assert!(enabled.contains(suite), "{enabled}");

    // The agent leg: one UDP port pair, SRTP both ways.
    let from_anna = rtp_from(&datagrams, |d| agent.rtp.contains(&d.src.port()));
    assert!(!from_anna.is_empty(), "baresip sent no RTP");
    let anna_port = from_anna[0].0.src;
    let leg_port = from_anna[0].0.dst;
    println!("agent leg: baresip {anna_port} <-> service {leg_port}, {suite}");
    // ... the ports each side put in its SDP.
    assert!(offered_m.starts_with(&format!("m=audio {} ", leg_port.port())));
    assert!(answered_m.starts_with(&format!("m=audio {} ", anna_port.port())));
    let from_anna: Vec<RtpPacket> = from_anna
        .into_iter()
        .filter(|(d, _)| d.src == anna_port && d.dst == leg_port)
        .map(|(_, p)| p)
        .collect();
    let to_anna: Vec<RtpPacket> = rtp_from(&datagrams, |d| d.src == leg_port && d.dst == anna_port)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    for (way, packets) in [("from baresip", &from_anna), ("to baresip", &to_anna)] {
        assert!(
            packets.len() >= TALK_PACKETS,
            "{} RTP packets {way}",
            packets.len()
        );
        for packet in packets.iter() {
            assert_eq!(
                (packet.payload_type, packet.payload.len()),
                (PCMU, FRAME_LEN + tag_len),
                "{way}: sequence {}: not G.711 with a {tag_len}-byte tag",
                packet.sequence
            );
        }
    }
    let other_agent_traffic: Vec<&Datagram> = datagrams
        .iter()
        .filter(|d| {
            !d.tcp && (agent.rtp.contains(&d.src.port()) || agent.rtp.contains(&d.dst.port()))
        })
        .filter(|d| RtpPacket::parse(d).is_some())
        .filter(|d| ![(anna_port, leg_port), (leg_port, anna_port)].contains(&(d.src, d.dst)))
        .collect();
    assert!(
        other_agent_traffic.is_empty(),
        "RTP off the agent leg's port pair: {other_agent_traffic:?}"
    );

    // The caller's side: its tone out, baresip's tone in, in the clear.
    let from_caller: Vec<RtpPacket> = rtp_from(&datagrams, |d| d.src.port() == caller.media)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let caller_tone: Vec<&RtpPacket> = from_caller
        .iter()
        .filter(|p| p.payload[..] == caller_frame[..])
        .collect();
    assert!(
        caller_tone.len() >= TALK_PACKETS,
        "the caller sent {} packets of its tone",
        caller_tone.len()
    );
    let caller_payloads: HashSet<&[u8]> = from_caller.iter().map(|p| &p.payload[..]).collect();
    let to_caller: Vec<RtpPacket> = rtp_from(&datagrams, |d| d.dst.port() == caller.media)
        .into_iter()
        .map(|(_, p)| p)
        .collect();

    // Agent to caller: what the caller got with baresip's SSRC is what baresip sent, decrypted.
    let anna_ssrc = from_anna[0].ssrc;
    let encrypted: HashMap<u16, &RtpPacket> = from_anna.iter().map(|p| (p.sequence, p)).collect();
    let relayed: Vec<&RtpPacket> = to_caller.iter().filter(|p| p.ssrc == anna_ssrc).collect();
    let mut matched = 0;
    for packet in &relayed {
        assert_eq!(packet.payload.len(), FRAME_LEN, "{packet:?}");
        let Some(sent) = encrypted.get(&packet.sequence) else {
            continue;
        };
        matched += 1;
        assert_eq!(sent.timestamp, packet.timestamp, "{packet:?}");
        assert_ne!(
            sent.payload[..FRAME_LEN],
            packet.payload[..],
            "baresip's packet {} went out in the clear",
            packet.sequence
        );
    }
    let heard_anna = relayed
        .iter()
        .filter(|p| tone_share(&decode(&p.payload), AGENT_TONE_HZ) >= TONE_SHARE)
        .count();
    println!(
        "the caller got {} of baresip's {} SRTP packets decrypted ({matched} matched by \
         sequence), {heard_anna} of them its {AGENT_TONE_HZ} Hz tone",
        relayed.len(),
        from_anna.len()
    );
    assert!(
        matched >= TALK_PACKETS,
        "only {matched} of baresip's packets reached the caller"
    );
    assert!(
        heard_anna >= TALK_PACKETS,
        "the caller heard baresip's tone in {heard_anna} packets"
    );

    // Caller to agent: the caller's packets went on encrypted, under another SSRC.
    let caller_sequences: HashSet<u16> = caller_tone.iter().map(|p| p.sequence).collect();
    let tone_relayed = to_anna
        .iter()
        .filter(|p| caller_sequences.contains(&p.sequence))
        .count();
    assert!(
        tone_relayed >= TALK_PACKETS,
        "{tone_relayed} of the caller's tone packets reached baresip"
    );
    for packet in &to_anna {
        let body = &packet.payload[..FRAME_LEN];
        assert!(
            !caller_payloads.contains(body) && !caller_payloads.contains(&packet.payload[..]),
            "packet {} to baresip carries the caller's G.711 in the clear",
            packet.sequence
        );
        assert_ne!(
            packet.ssrc, caller_tone[0].ssrc,
            "the caller's SSRC went on under the agent leg's key (the relay's SRTP stream is \
             its own, RFC 3711 §9.1)"
        );
    }
    // Baresip 1.0 drops a relayed stream that follows one of our own frames as late (another
    // SSRC, lower sequence numbers): the agent leg's first packet is already the relay's.
    assert_eq!(
        to_anna[0].ssrc,
        to_anna[to_anna.len() / 2].ssrc,
        "the agent leg sent its own stream before the relayed one"
    );
    // ... and baresip decrypted and decoded them: its recording is the caller's tone.
    let heard = anna.heard();
    let heard = heard.last().expect("baresip recorded nothing");
    let samples: Vec<f64> = heard.iter().map(|&s| f64::from(s)).collect();
    let heard_caller = samples
        .chunks_exact(FRAME_LEN)
        .filter(|frame| tone_share(frame, CALLER_TONE_HZ) >= TONE_SHARE)
        .count();
    println!(
        "baresip got {} SRTP packets, {tone_relayed} of them the caller's; it decoded {} ms, \
         {heard_caller} frames of the caller's {CALLER_TONE_HZ} Hz tone",
        to_anna.len(),
        heard.len() / 8
    );
    assert!(
        heard_caller >= TALK_PACKETS,
        "baresip heard the caller's tone in {heard_caller} frames"
    );
    let complaints: Vec<String> = anna
        .lines()
        .into_iter()
        .filter(|l| l.contains("failed to decrypt") || l.contains("failed to encrypt"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
    let reports: Vec<&String> = log.iter().filter(|l| l.contains("RTP received")).collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    for report in &reports {
        println!("{}", &report[report.find("RTP received").unwrap_or(0)..]);
        assert_eq!(
            field(report, "srtp_rejected").as_deref(),
            Some("0"),
            "{report}"
        );
        let packets: usize = field(report, "packets")
            .and_then(|packets| packets.parse().ok())
            .unwrap_or_default();
        assert!(packets >= TALK_PACKETS, "{report}");
    }
    assert!(!log.iter().any(|l| l.contains("SRTP packet rejected")));

    // TCP between baresip and the service (its TLS port, and baresip's SIP port should the
    // service connect there): TLS records, and nothing else, both ways; SIP (REGISTER, the
    // INVITE with the keys, BYE) inside them, never in the clear.
    let mut streams: Vec<((SocketAddr, SocketAddr), Vec<u8>)> = Vec::new();
    for segment in datagrams.iter().filter(|d| d.tcp) {
        let way = (SocketAddr::V4(segment.src), SocketAddr::V4(segment.dst));
        match streams.iter_mut().find(|(known, _)| *known == way) {
            Some((_, bytes)) => bytes.extend_from_slice(&segment.payload),
            None => streams.push((way, segment.payload.clone())),
        }
    }
    for ((from, to), bytes) in &streams {
        let records = tls_records(bytes)
            .unwrap_or_else(|problem| panic!("TCP {from} -> {to} is not TLS: {problem}"));
        let application = records.iter().filter(|&&kind| kind == 0x17).count();
        println!(
            "TCP {from} -> {to}: {} bytes in {} TLS records, {application} of application data",
            bytes.len(),
            records.len()
        );
        assert!(
            application >= 3,
            "{from} -> {to}: {application} records of application data"
        );
        for plain in [
            "SIP/2.0",
            "REGISTER sip:",
            "INVITE sip:",
            "a=crypto",
            "inline:",
        ] {
            assert!(
                !contains(bytes, plain.as_bytes()),
                "{plain:?} in the clear from {from} to {to}"
            );
        }
    }
    let tls_port = |(from, to): &(SocketAddr, SocketAddr)| {
        (from.port() == tls_addr.port()) as u8 + (to.port() == tls_addr.port()) as u8
    };
    assert_eq!(
        streams.iter().map(|(way, _)| tls_port(way)).sum::<u8>(),
        2,
        "one connection to the TLS port, both ways: {:?}",
        streams.iter().map(|(way, _)| way).collect::<Vec<_>>()
    );
    assert_eq!(
        streams.len(),
        2,
        "other TCP between baresip and the service: {:?}",
        streams.iter().map(|(way, _)| way).collect::<Vec<_>>()
    );
    // baresip's trace shows those messages did go over it.
    let trace = anna.lines().join("\n");
    for message in ["REGISTER sip:", "INVITE sip:", "SIP/2.0 200 OK", "BYE sip:"] {
        assert!(trace.contains(message), "no {message:?} in baresip's trace");
    }
}

/// baresip registered over UDP: keys cannot be offered to it, so the group's `required` leaves
/// it out: no INVITE reaches it, and the caller waits in the queue unbridged.
#[test]
fn an_agent_registered_without_tls_is_not_rung_when_srtp_is_required() {
    let dir = test_dir("udp");
    let pki = Pki::mint(&dir);
    let (service, _) = srtp_service(&pki);
    let caller = SippPorts::pick(Transport::Udp);
    let agent = BaresipPorts::pick();
    let mut capture = Capture::start(
        service.dir(),
        &format!(
            "udp port {} or udp port {} or udp port {} or udp portrange {}-{}",
            caller.media,
            caller.signalling,
            agent.sip,
            agent.rtp.start(),
            agent.rtp.end()
        ),
    );
    let anna = Baresip::start(
        &dir,
        &BaresipOptions {
            ports: agent.clone(),
            user: "anna",
            password: "anna-secret",
            signalling: Signalling::Udp {
                addr: service.sip_addr(),
            },
            mediaenc: Some("srtp-mand"),
            tone_hz: AGENT_TONE_HZ,
        },
    );
    let registered = wait_for_registration(&service, &anna);
    assert_eq!(
        field(&registered, "transport").as_deref(),
        Some("UDP"),
        "{registered}"
    );

    let caller_frame = ulaw_tone(CALLER_TONE_HZ);
    let (run, refused) = thread::scope(|scope| {
        let sipp = scope.spawn(|| {
            Sipp::new("srtp_caller.xml")
                .ports(caller)
                .working_file("caller_tone.ul", caller_frame.repeat(50))
                .run(&service)
        });
        let call_id = caller_call_id(&mut capture, caller.signalling);
        let refused = service.wait_for_log_line(
            |l| l.contains("agent could not be called") && l.contains("anna"),
            TALK_DEADLINE,
        );
        // The caller stays queued, hearing the service, for a second (50 packets) after that:
        // anna is not rung meanwhile (checked below).
        let given_up = since_epoch();
        let heard = Cell::new(0);
        capture.wait_for(DEADLINE, |d| {
            if d.at > given_up && d.dst.port() == caller.media && RtpPacket::parse(d).is_some() {
                heard.set(heard.get() + 1);
            }
            heard.get() >= 50
        });
        cue(caller.signalling, &call_id);
        (sipp.join().expect("the SIPp thread panicked"), refused)
    });
    let refused = refused.unwrap_or_else(|| {
        panic!(
            "the service never gave up on anna\n{}\nthe service said:\n{}",
            run.diagnostics(),
            service.stderr_tail()
        )
    });
    println!("{refused}");
    assert!(
        refused.contains("only exchanged over secure signalling (TLS)"),
        "{refused}"
    );
    all_calls_succeeded(&run);
    let record = wait_for_record(&service);
    let datagrams = capture.finish();

    let log = service.log_lines();
    let attempts = log
        .iter()
        .filter(|l| l.contains("agent could not be called"))
        .count();
    assert_eq!(attempts, 1, "anna was tried {attempts} times");
    for never in ["ringing agent", "agent answered", "media bridged"] {
        assert!(
            !log.iter().any(|l| l.contains(never)),
            "the service logged {never:?}"
        );
    }
    let invites: Vec<&Datagram> = datagrams
        .iter()
        .filter(|d| d.dst.port() == agent.sip && d.payload.starts_with(b"INVITE "))
        .collect();
    assert!(invites.is_empty(), "anna was sent {invites:?}");
    assert!(
        !anna.lines().iter().any(|l| l.starts_with("INVITE sip:")),
        "baresip got an INVITE"
    );
    let media: Vec<&Datagram> = datagrams
        .iter()
        .filter(|d| agent.rtp.contains(&d.src.port()) || agent.rtp.contains(&d.dst.port()))
        .collect();
    assert!(media.is_empty(), "media with baresip: {media:?}");
    let to_caller = rtp_from(&datagrams, |d| d.dst.port() == caller.media);
    assert!(!to_caller.is_empty(), "the caller heard nothing");
    let ssrcs: HashSet<u32> = to_caller.iter().map(|(_, p)| p.ssrc).collect();
    let from_caller: HashSet<u32> = rtp_from(&datagrams, |d| d.src.port() == caller.media)
        .iter()
        .map(|(_, p)| p.ssrc)
        .collect();
    assert!(
        ssrcs.is_disjoint(&from_caller),
        "the caller got its own stream back"
    );

    assert_eq!(record["outcome"], "abandoned_queue", "{record}");
    assert!(record["agent"].is_null(), "{record}");
    assert!(record["agent_answered"].is_null(), "{record}");
}

// ---- helpers --------------------------------------------------------------------------------

fn all_calls_succeeded(run: &SippRun) {
    assert_eq!(
        run.stats,
        SippStats {
            successful: 1,
            failed: 0
        },
        "SIPp's call\n{}",
        run.diagnostics()
    );
}

/// How much has got through so far, counted as the capture comes in.
#[derive(Debug, Default)]
struct TalkCount {
    /// RTP from baresip, and to it.
    from_agent: usize,
    to_agent: usize,
    /// Packets of baresip's tone the caller got.
    agent_tone_to_caller: usize,
}

impl TalkCount {
    /// Counts `datagram`; true once each way has `TALK_PACKETS`, and baresip has been sent half
    /// a second more (what its jitter buffer holds back is not in its recording yet).
    fn add(&mut self, datagram: &Datagram, agent: &BaresipPorts, caller_media: u16) -> bool {
        if let Some(packet) = RtpPacket::parse(datagram).filter(|_| !datagram.tcp) {
            if agent.rtp.contains(&datagram.src.port()) {
                self.from_agent += 1;
            } else if agent.rtp.contains(&datagram.dst.port()) {
                self.to_agent += 1;
            } else if datagram.dst.port() == caller_media
                && tone_share(&decode(&packet.payload), AGENT_TONE_HZ) >= TONE_SHARE
            {
                self.agent_tone_to_caller += 1;
            }
        }
        self.from_agent.min(self.agent_tone_to_caller) >= TALK_PACKETS
            && self.to_agent >= TALK_PACKETS + 25
    }
}

/// The RTP packets of the UDP datagrams for which `wanted` holds, with their datagrams.
fn rtp_from(
    datagrams: &[Datagram],
    wanted: impl Fn(&Datagram) -> bool,
) -> Vec<(&Datagram, RtpPacket)> {
    datagrams
        .iter()
        .filter(|d| !d.tcp && wanted(d))
        .filter_map(|d| Some((d, RtpPacket::parse(d)?)))
        .collect()
}

/// The Call-ID of the caller's INVITE, from the capture.
fn caller_call_id(capture: &mut Capture, caller_sip: u16) -> String {
    let invite = capture
        .wait_for(DEADLINE, |d| {
            d.src.port() == caller_sip && d.payload.starts_with(b"INVITE ")
        })
        .expect("the caller's INVITE was not captured");
    let text = String::from_utf8_lossy(&invite.payload).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("Call-ID:"))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no Call-ID in {text}"))
}

/// Sends SIPp a bare MESSAGE in the call `call_id`: the scenario's cue to hang up.
fn cue(sipp_port: u16, call_id: &str) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the cue socket");
    let local = socket.local_addr().expect("the cue socket's address");
    let sipp = SocketAddr::from((Ipv4Addr::LOCALHOST, sipp_port));
    let message = format!(
        "MESSAGE sip:sipp@{sipp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-srtp-cue\r\n\
         From: <sip:test@{local}>;tag=srtp-cue\r\n\
         To: <sip:sipp@{sipp}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket
        .send_to(message.as_bytes(), sipp)
        .expect("cueing SIPp");
}

/// Waits (polling the API) for the first completed call record.
fn wait_for_record(service: &Service) -> serde_json::Value {
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Days::new(1);
    let to = today + chrono::Days::new(2);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let path = format!("/api/calls?from={from}&to={to}&limit=10");
        let (status, body) = http_get(service.http_addr(), &path, None);
        assert_eq!(status, 200, "{body}");
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(record) = listing["calls"].get(0) {
            return record.clone();
        }
        assert!(Instant::now() < deadline, "no call record: {body}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The SDP bodies in baresip's SIP trace: the offer in the INVITE it got, its answer in the
/// 200 it sent.
struct Sdp {
    offer: Vec<String>,
    answer: Vec<String>,
}

impl Sdp {
    fn from_trace(lines: &[String]) -> Sdp {
        // Each traced message starts at its first line; its SDP lines follow.
        let (mut offer, mut answer) = (Vec::new(), Vec::new());
        // Where SDP lines go: 1 the offer, 2 the answer, 0 nowhere.
        let mut into = 0;
        for line in lines {
            let line = line.trim();
            if line.starts_with("INVITE sip:") {
                into = if offer.is_empty() { 1 } else { 0 };
            } else if line.starts_with("SIP/2.0 200") && answer.is_empty() && !offer.is_empty() {
                into = 2;
            } else if line.starts_with("SIP/2.0 ") || line.ends_with(" SIP/2.0") {
                into = 0;
            } else if into != 0 && line.len() > 2 && line.as_bytes()[1] == b'=' {
                match into {
                    1 => offer.push(line.to_owned()),
                    _ => answer.push(line.to_owned()),
                }
            }
        }
        assert!(!offer.is_empty(), "no INVITE with SDP in baresip's trace");
        assert!(!answer.is_empty(), "no 200 with SDP in baresip's trace");
        Sdp { offer, answer }
    }

    fn line<'a>(&self, body: &'a [String], prefix: &str) -> &'a str {
        body.iter()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {body:?}"))
    }

    /// `a=crypto` lines as (tag, suite).
    fn crypto(&self, body: &[String]) -> Vec<(String, String)> {
        body.iter()
            .filter_map(|line| line.strip_prefix("a=crypto:"))
            .map(|rest| {
                let mut parts = rest.split_whitespace();
                let tag = parts.next().unwrap_or_default().to_owned();
                let suite = parts.next().unwrap_or_default().to_owned();
                (tag, suite)
            })
            .collect()
    }
}

/// One 20 ms µ-law frame of a sine at -10 dBm0 whose period divides the frame: looped, every
/// frame of the stream is this one.
fn ulaw_tone(frequency: f64) -> Frame {
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

/// µ-law bytes as linear samples.
fn decode(payload: &[u8]) -> Vec<f64> {
    payload
        .iter()
        .map(|&byte| f64::from(audio_codec_algorithms::decode_ulaw(byte)))
        .collect()
}

/// The content types of the TLS records (RFC 8446 §5.1: type, version, length, fragment)
/// that make up `stream` exactly, or what is wrong with it.
fn tls_records(stream: &[u8]) -> Result<Vec<u8>, String> {
    let mut kinds = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let header = stream
            .get(at..at + 5)
            .ok_or_else(|| format!("a cut record header at byte {at}"))?;
        if !(0x14..=0x17).contains(&header[0]) || header[1] != 0x03 {
            return Err(format!("no record header at byte {at}: {:02x?}", header));
        }
        at += 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
        kinds.push(header[0]);
    }
    match at == stream.len() {
        true => Ok(kinds),
        false => Err(format!(
            "the last record is cut ({at} of {} bytes)",
            stream.len()
        )),
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
