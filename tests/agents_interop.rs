//! Agent groups end to end: SIPp callers go through the menus of the real `hotline serve` into
//! a bridge group's queue, and real softphones answer as the group's agents. baresip instances
//! register with digest auth as `user` agents (auto-answering, talking from a WAV file); for the
//! leak test, a SIPp UAS answers as 30 static agents.
//!
//! The proof that the caller hears the agent comes from a loopback capture (dumpcap), as in
//! tests/media_interop.rs: the service relays the agent's RTP packets with only the payload type
//! mapped, so what reaches SIPp's media port after bridging must carry the SSRC, sequence
//! numbers and payload bytes baresip sent to the service's agent-leg port. Queue announcements
//! are judged against the prompt files, whose frames the service sends bit-exact.
//! `scripts/test` installs SIPp (sip-tester), baresip (baresip-core) and dumpcap (tshark).

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::capture::{Capture, Datagram, Prompts, RtpPacket, PCMU, SILENCE};
use common::{
    free_port, http_get, log_field as field, wait_for_count, Service, Sipp, SippPorts, SippRun,
    SippStats, SippUas, Transport,
};

/// Registration, ringing, answering: each well within this on loopback.
const SIGNALLING_DEADLINE: Duration = Duration::from_secs(15);
/// How long baresip may take to print `baresip is ready`.
const BARESIP_READY_DEADLINE: Duration = Duration::from_secs(15);
/// UDP transactions linger up to 32 s (RFC 3261 Timer D/J) after the last call ends.
const DRAIN_DEADLINE: Duration = Duration::from_secs(45);

/// The group's `wrap_up` in tests/fixtures/agents/registered.toml.
const WRAP_UP: Duration = Duration::from_secs(1);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(name)
}

fn all_calls_succeeded(run: &SippRun, calls: u64) {
    assert_eq!(
        run.stats,
        SippStats {
            successful: calls,
            failed: 0
        },
        "SIPp's calls\n{}",
        run.diagnostics()
    );
    assert_eq!(run.exit_code, Some(0));
}

// ---- tests ----------------------------------------------------------------------------------

/// A Lithuanian caller reaches a registered baresip agent, hears the agent's own RTP stream and
/// hangs up, which tears the agent leg down on both sides.
#[test]
fn caller_hears_the_registered_agent_and_bye_ends_both_legs() {
    let agents = RegisteredAgents::start();
    let service = &agents.service;
    let ports = SippPorts::pick(Transport::Udp);
    let capture = Capture::start(service.dir(), &agents.capture_filter(ports.media));
    let run = Sipp::new("agents_lt_talk.xml").ports(ports).run(service);
    let datagrams = capture.finish();
    all_calls_succeeded(&run, 1);

    let log = service.log_lines();
    let ringing: Vec<&String> = log.iter().filter(|l| l.contains("ringing agent")).collect();
    assert!(!ringing.is_empty(), "no agent was rung");
    for line in &ringing {
        assert_eq!(field(line, "language").as_deref(), Some("lt"), "{line}");
    }
    let answered = log
        .iter()
        .find(|line| line.contains("agent answered: bridging"))
        .expect("no agent answered");
    let agent = agents.by_log_line(answered);
    assert!(
        log.iter()
            .any(|l| l.contains("ringing agent") && agents.by_log_line(l).user == agent.user),
        "{} answered without being rung",
        agent.user
    );
    assert!(
        log.iter().any(|line| line.contains("media bridged")),
        "the media were never bridged"
    );

    // The INVITE that rang the agent says who calls, in which language, from where.
    let invite = datagrams
        .iter()
        .filter(|d| d.dst.port() == agent.sip_port)
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .find(|text| text.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("no INVITE to {} captured", agent.user));
    let from = header(&invite, "From").unwrap_or_default();
    assert!(
        from.starts_with("\"[LT] Vilniaus šilumos tinklai\" <sip:sipp@"),
        "From: {from}"
    );
    assert_eq!(header(&invite, "X-Hotline-Language").as_deref(), Some("lt"));
    assert_eq!(header(&invite, "X-Hotline-Caller").as_deref(), Some("sipp"));
    let path = header(&invite, "X-Hotline-Path").unwrap_or_default();
    assert!(
        path.contains("lt") && path.contains('3'),
        "X-Hotline-Path: {path}"
    );

    // The capture: what baresip sent to the service, and what the service sent SIPp.
    let agent_rtp: Vec<RtpPacket> = datagrams
        .iter()
        .filter(|d| agent.rtp_ports.contains(&d.src.port()))
        .filter_map(RtpPacket::parse)
        .collect();
    let to_caller: Vec<RtpPacket> = datagrams
        .iter()
        .filter(|d| d.dst.port() == ports.media)
        .filter_map(RtpPacket::parse)
        .collect();
    assert!(
        agent_rtp.len() >= 100,
        "{} (RTP ports {:?}) sent only {} RTP packets to the service; captured: {}",
        agent.user,
        agent.rtp_ports,
        agent_rtp.len(),
        flows(&datagrams)
    );
    let agent_ssrc = agent_rtp[0].ssrc;
    let relayed: Vec<&RtpPacket> = to_caller.iter().filter(|p| p.ssrc == agent_ssrc).collect();
    let own: Vec<&RtpPacket> = to_caller.iter().filter(|p| p.ssrc != agent_ssrc).collect();
    println!(
        "agent {} sent {} packets (SSRC {agent_ssrc:#010x}); the caller got {} of them relayed \
         after {} packets of the service's own",
        agent.user,
        agent_rtp.len(),
        relayed.len(),
        own.len()
    );
    assert!(
        !own.is_empty(),
        "the caller heard the menus from the service first"
    );
    // About 5 s bridged; at least 2 s of it must have reached the caller.
    assert!(
        relayed.len() >= 100,
        "only {} packets with the agent's SSRC reached the caller",
        relayed.len()
    );
    let sent: HashMap<u16, &RtpPacket> = agent_rtp.iter().map(|p| (p.sequence, p)).collect();
    for packet in &relayed {
        let original = sent.get(&packet.sequence).unwrap_or_else(|| {
            panic!(
                "the caller got sequence {} that the agent never sent",
                packet.sequence
            )
        });
        assert_eq!(
            (packet.payload_type, packet.timestamp, &packet.payload),
            (PCMU, original.timestamp, &original.payload),
            "relayed packet {} differs from the agent's",
            packet.sequence
        );
    }
    assert!(
        relayed.iter().any(|p| p.payload[..] != SILENCE[..]),
        "the agent's speech never reached the caller"
    );
    let last_own = own.last().map(|p| p.at).unwrap_or_default();
    assert!(
        relayed.iter().all(|p| p.at >= last_own),
        "the service kept sending its own audio after bridging"
    );

    // SIPp's BYE ended the agent leg: the service sent BYE, baresip closed the call.
    // (Ring-all: the other agent may have answered too, and was hung up at once.)
    let hang_up = service
        .wait_for_log_line(
            |l| {
                l.contains("hanging up the agent")
                    && agents.by_log_line(l).user == agent.user
                    && timestamp(l) > timestamp(answered)
            },
            SIGNALLING_DEADLINE,
        )
        .expect("the service never hung up the agent after the caller's BYE");
    let caller_bye = log
        .iter()
        .find(|l| l.contains("in-dialog request method=BYE"));
    assert!(
        caller_bye.is_some_and(|bye| timestamp(bye) <= timestamp(&hang_up)),
        "the agent was hung up before the caller's BYE: {hang_up}"
    );
    assert!(
        agent
            .wait_for(|l| l.contains("terminated"), SIGNALLING_DEADLINE)
            .is_some(),
        "{}'s baresip never closed the call:\n{}",
        agent.user,
        agent.lines().join("\n")
    );
    let after = timestamp(&hang_up).to_string();
    let idle = service.wait_for_log_line(
        |l| {
            timestamp(l) >= after.as_str()
                && state_is(l, &[("calls", 0), ("agent_legs", 0), ("agents_busy", 0)])
        },
        SIGNALLING_DEADLINE,
    );
    assert!(
        idle.is_some(),
        "no state line with calls=0 agent_legs=0 agents_busy=0 after the hang-up"
    );
}

/// Both agents busy: a third caller is queued, hears its position (bit-exact prompts), and gets
/// the first agent to come free once its wrap-up is over.
#[test]
fn third_caller_waits_hears_the_position_and_gets_the_freed_agent() {
    let agents = RegisteredAgents::start();
    let service = &agents.service;
    // The first two callers in one background SIPp (the harness's runs block and the service
    // handle stays on this thread); the third, captured, once both talk to an agent.
    let mut first_two = BackgroundSipp::start(service, "agents_lt_hold12.xml", 2);
    assert!(
        wait_for_count(
            service,
            "media bridged",
            2,
            SIGNALLING_DEADLINE + Duration::from_secs(10)
        ),
        "the first two callers were not both connected"
    );
    let ports = SippPorts::pick(Transport::Udp);
    let capture = Capture::start(service.dir(), &format!("udp port {}", ports.media));
    let third = Sipp::new("agents_lt_queued.xml").ports(ports).run(service);
    let datagrams = capture.finish();
    all_calls_succeeded(&third, 1);
    first_two.wait_for_success();
    let log = service.log_lines();
    let queued: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("queued for agents"))
        .collect();
    assert_eq!(queued.len(), 3, "three callers queued");
    let bridges: Vec<&String> = log.iter().filter(|l| l.contains("media bridged")).collect();
    assert_eq!(bridges.len(), 3, "three callers connected");
    let first_free = log
        .iter()
        .find(|l| l.contains("call ended"))
        .expect("the first two callers never hung up");
    assert_eq!(
        field(first_free, "outcome").as_deref(),
        Some("caller_hung_up"),
        "{first_free}"
    );
    let third_queued = seconds(queued[2]);
    let freed = seconds(first_free);
    let third_bridged = seconds(bridges[2]);
    println!(
        "third caller: queued at +0 s, an agent freed at +{:.3} s, connected at +{:.3} s",
        freed - third_queued,
        third_bridged - third_queued
    );
    assert!(
        seconds(bridges[1]) < third_queued && third_queued < freed,
        "the third caller must be queued while both agents talk"
    );
    assert!(
        third_bridged - freed >= WRAP_UP.as_secs_f64() - 0.01,
        "the freed agent was rung before its {WRAP_UP:?} wrap-up ended"
    );
    assert!(
        third_bridged - freed < WRAP_UP.as_secs_f64() + 3.0,
        "the freed agent took the waiting caller only after {:.3} s",
        third_bridged - freed
    );

    // What the third caller heard: the position (1st) while waiting, then the agent.
    let to_caller: Vec<RtpPacket> = datagrams.iter().filter_map(RtpPacket::parse).collect();
    let service_ssrc = to_caller[0].ssrc;
    let own: Vec<RtpPacket> = to_caller
        .iter()
        .filter(|p| p.ssrc == service_ssrc)
        .cloned()
        .collect();
    let prompts = Prompts::load(
        "lt",
        &[
            "welcome",
            "language_menu_lt",
            "ru/language_menu_ru",
            "digit_3",
            "transfer_connecting",
            "queue_hold",
            "all_agents_busy",
            "queue_position_prefix",
            "number_1",
            "queue_position_suffix",
        ],
    );
    let heard = played_prompts(&own, &prompts);
    println!("third caller heard {heard:?}");
    let announcement = ["queue_position_prefix", "number_1", "queue_position_suffix"];
    let at = heard
        .windows(3)
        .position(|w| {
            w.iter()
                .map(|(name, _)| *name)
                .eq(announcement.iter().copied())
        })
        .unwrap_or_else(|| panic!("no position announcement in {heard:?}"));
    for (name, complete) in &heard[at..at + 3] {
        assert!(complete, "{name} was cut short");
    }
    let relayed = to_caller.iter().filter(|p| p.ssrc != service_ssrc).count();
    assert!(
        relayed >= 100,
        "the third caller got only {relayed} packets from the agent"
    );
}

/// A Russian caller rings only the agent who speaks Russian (the group rings all, so a missing
/// language filter would ring the Lithuanian-only agent too).
#[test]
fn russian_caller_rings_only_the_russian_speaking_agent() {
    let agents = RegisteredAgents::start();
    let service = &agents.service;
    let run = Sipp::new("agents_ru_talk.xml").run(service);
    all_calls_succeeded(&run, 1);
    service
        .wait_for_log_line(|l| l.contains("call ended"), SIGNALLING_DEADLINE)
        .expect("the call never ended");

    let log = service.log_lines();
    let ringing: Vec<&String> = log.iter().filter(|l| l.contains("ringing agent")).collect();
    println!(
        "{}",
        ringing
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!ringing.is_empty(), "no agent was rung");
    let russian = &agents.agents[0];
    assert_eq!(russian.user, "anna");
    for line in &ringing {
        assert_eq!(
            agents.by_log_line(line).user,
            "anna",
            "rang someone other than the Russian-speaking agent: {line}"
        );
        assert_eq!(field(line, "language").as_deref(), Some("ru"), "{line}");
    }
    let answered = log
        .iter()
        .find(|l| l.contains("agent answered: bridging"))
        .expect("no agent answered");
    assert_eq!(agents.by_log_line(answered).user, "anna");
}

/// Agents whose URI says `transport=tcp` are rung over a TCP connection the service opens; an
/// agent whose phone refuses the connection is skipped at once for the next one.
#[test]
fn static_agents_over_tcp_take_calls_and_a_refused_connection_is_skipped_at_once() {
    const CALLS: u64 = 3;
    let uas = SippUas::start_on(Transport::TcpSingleConnection);
    let closed_port = free_port(true, false);
    // agent1 (first in round-robin order) refuses connections; the others are the TCP UAS.
    let routing = fs::read_to_string(fixture("load.toml"))
        .unwrap()
        .replacen(
            "127.0.0.1:5601\"",
            &format!("127.0.0.1:{closed_port};transport=tcp\""),
            1,
        )
        .replace(
            "127.0.0.1:5601\"",
            &format!("127.0.0.1:{};transport=tcp\"", uas.port),
        );
    let routing_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "agents-tcp-{}-{}.toml",
        std::process::id(),
        uas.port
    ));
    fs::write(&routing_file, routing).unwrap();
    let service = Service::start(&[("HOTLINE__ROUTING", routing_file.to_str().unwrap())]);

    let run = Sipp::new("agents_load.xml")
        .calls(CALLS as u32)
        .rate(1)
        .run(&service);
    all_calls_succeeded(&run, CALLS);
    assert!(
        wait_for_count(
            &service,
            "media bridged",
            CALLS as usize,
            SIGNALLING_DEADLINE
        ),
        "every call bridged to a TCP agent"
    );
    let log = service.log_lines();
    let refused = log
        .iter()
        .find(|l| l.contains("TCP connection to a peer failed"))
        .expect("the refused connection is reported");
    assert!(
        refused.contains(&format!("127.0.0.1:{closed_port}")),
        "{refused}"
    );
    let skipped = log
        .iter()
        .find(|l| l.contains("agent did not take the call"))
        .expect("the unreachable agent is given up");
    assert_eq!(
        field(skipped, "status").as_deref(),
        Some("503"),
        "{skipped}"
    );
    // Given up on the failed connect, not after Timer B (32 s): every call was answered while
    // SIPp ran (4.5 s per call), so the first caller waited for the next agent only briefly.
    let answered = log
        .iter()
        .filter(|l| l.contains("agent answered: bridging"))
        .count();
    assert_eq!(answered, CALLS as usize);
    let first_answer = log
        .iter()
        .find(|l| l.contains("agent answered: bridging"))
        .unwrap();
    assert!(
        seconds(first_answer) - seconds(skipped) < 1.0,
        "the next agent was rung right after the failed connect:\n{skipped}\n{first_answer}"
    );
}

/// Polls /api/live until every agent is in `state`; the states seen last otherwise.
fn wait_for_all_agents(service: &Service, state: &str, deadline: Duration) -> Result<(), String> {
    let until = Instant::now() + deadline;
    loop {
        let (status, body) = http_get(service.http_addr(), "/api/live", None);
        assert_eq!(status, 200, "GET /api/live: {body}");
        let live: serde_json::Value = serde_json::from_str(&body).expect("/api/live is JSON");
        let states: Vec<String> = live["agents"]
            .as_array()
            .map(|agents| agents.iter().map(|a| a["state"].to_string()).collect())
            .unwrap_or_default();
        if !states.is_empty() && states.iter().all(|seen| seen == &format!("\"{state}\"")) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(states.join(" "));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Static agents whose phone gives no answer to OPTIONS are shown unreachable (API, metrics)
/// and not rung; once a phone answers on their address, they are idle and take the call.
#[test]
fn static_agents_are_unreachable_until_their_phone_answers_options() {
    let port = free_port(false, false);
    let routing = fs::read_to_string(fixture("load.toml"))
        .unwrap()
        .replace("127.0.0.1:5601\"", &format!("127.0.0.1:{port}\""));
    let routing_file = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("agents-probe-{}-{port}.toml", std::process::id()));
    fs::write(&routing_file, routing).unwrap();
    // T1 of 50 ms: an unanswered probe fails after 64·T1 = 3.2 s.
    let service = Service::start(&[
        ("HOTLINE__ROUTING", routing_file.to_str().unwrap()),
        ("HOTLINE__SIP__AGENT_PROBE", "1s"),
        ("HOTLINE__SIP__T1", "50ms"),
    ]);
    let started = Instant::now();
    wait_for_all_agents(&service, "unreachable", SIGNALLING_DEADLINE)
        .unwrap_or_else(|states| panic!("not all unreachable: {states}"));
    let unreachable_after = started.elapsed();
    let (_, metrics) = http_get(service.http_addr(), "/metrics", None);
    assert!(
        metrics.contains("hotline_agents{state=\"unreachable\"} 30"),
        "{}",
        metrics
            .lines()
            .filter(|line| line.starts_with("hotline_agents"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !service
            .log_lines()
            .iter()
            .any(|line| line.contains("ringing agent")),
        "nobody rang an unreachable phone"
    );

    // The phone comes up: the next probes are answered.
    let uas = SippUas::start_at(Transport::Udp, port);
    let up = Instant::now();
    wait_for_all_agents(&service, "idle", SIGNALLING_DEADLINE)
        .unwrap_or_else(|states| panic!("not all idle again: {states}"));
    eprintln!(
        "all 30 unreachable {:.1} s after start; idle {:.1} s after the phone came up",
        unreachable_after.as_secs_f64(),
        up.elapsed().as_secs_f64()
    );
    let run = Sipp::new("agents_load.xml").calls(1).run(&service);
    all_calls_succeeded(&run, 1);
    assert!(
        wait_for_count(&service, "media bridged", 1, SIGNALLING_DEADLINE),
        "the call reached an agent on the phone that came up"
    );
    drop(uas);
}

/// 200 short bridged calls (SIPp callers, a SIPp UAS as 30 static agents) leave nothing behind.
#[test]
fn two_hundred_bridged_calls_leave_no_leak() {
    const CALLS: u64 = 200;
    let uas = SippUas::start();
    let routing = fs::read_to_string(fixture("load.toml"))
        .unwrap()
        .replace("127.0.0.1:5601", &format!("127.0.0.1:{}", uas.port));
    let routing_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "agents-load-{}-{}.toml",
        std::process::id(),
        uas.port
    ));
    fs::write(&routing_file, routing).unwrap();
    let service = Service::start(&[("HOTLINE__ROUTING", routing_file.to_str().unwrap())]);

    let started = Instant::now();
    let run = Sipp::new("agents_load.xml")
        .calls(CALLS as u32)
        .rate(10)
        .limit(30)
        .run(&service);
    let sipp_time = started.elapsed();
    all_calls_succeeded(&run, CALLS);

    assert!(
        wait_for_count(&service, "media bridged", CALLS as usize, DRAIN_DEADLINE),
        "not every call was bridged"
    );
    // The state lines from before the calls said the same: only later ones count.
    let calls_over = service.log_lines().last().cloned().unwrap_or_default();
    let calls_over = timestamp(&calls_over).to_string();
    let drained = service.wait_for_log_line(
        |l| {
            timestamp(l) > calls_over.as_str()
                && state_is(
                    l,
                    &[
                        ("calls", 0),
                        ("agent_legs", 0),
                        ("transactions", 0),
                        ("rtp_ports", 0),
                        ("agents_busy", 0),
                        ("agents_idle", 30),
                    ],
                )
        },
        DRAIN_DEADLINE,
    );
    let log = service.log_lines();
    let count = |text: &str| log.iter().filter(|l| l.contains(text)).count();
    println!(
        "{CALLS} calls in {sipp_time:?}; drained after {:?}; bridged {}, agents hung up {}",
        started.elapsed(),
        count("media bridged"),
        count("hanging up the agent")
    );
    assert!(
        drained.is_some(),
        "no state line with nothing held within {DRAIN_DEADLINE:?}; last: {:?}",
        log.iter().rev().find(|l| l.contains(" state "))
    );
    assert_eq!(count("media bridged"), CALLS as usize, "every call bridged");
    assert_eq!(
        count("hanging up the agent"),
        CALLS as usize,
        "every agent leg ended by the caller's BYE"
    );
}

/// A header's value from a SIP message.
fn header(message: &str, name: &str) -> Option<String> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// Datagram counts per source and destination port, for failure messages.
fn flows(datagrams: &[Datagram]) -> String {
    let mut counts: HashMap<(u16, u16), usize> = HashMap::new();
    for datagram in datagrams {
        *counts
            .entry((datagram.src.port(), datagram.dst.port()))
            .or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    counts
        .iter()
        .map(|((from, to), count)| format!("{from}->{to}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- the service's log ----------------------------------------------------------------------

/// Whether `line` is a `state` line with these counters.
fn state_is(line: &str, wanted: &[(&str, u64)]) -> bool {
    line.contains(" state ")
        && wanted
            .iter()
            .all(|(name, value)| field(line, name).and_then(|v| v.parse().ok()) == Some(*value))
}

/// The RFC 3339 timestamp that starts each line (fixed width, so it compares as text).
fn timestamp(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or_default()
}

/// Seconds since midnight (UTC) of a line's timestamp.
fn seconds(line: &str) -> f64 {
    let time = timestamp(line)
        .split_once('T')
        .map(|(_, time)| time.trim_end_matches('Z'))
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    time.split(':')
        .map(|part| part.parse::<f64>().unwrap())
        .fold(0.0, |total, part| total * 60.0 + part)
}

// ---- baresip agents -------------------------------------------------------------------------

/// The service with tests/fixtures/agents/registered.toml and two registered baresip agents:
/// anna (lt, ru) and boris (lt).
struct RegisteredAgents {
    agents: Vec<Baresip>,
    service: Service,
}

impl RegisteredAgents {
    fn start() -> RegisteredAgents {
        let routing = fixture("registered.toml");
        let credentials = fixture("credentials.toml");
        let service = Service::start(&[
            ("HOTLINE__ROUTING", routing.to_str().unwrap()),
            ("HOTLINE__SIP__CREDENTIALS", credentials.to_str().unwrap()),
        ]);
        let agents: Vec<Baresip> = [("anna", "anna-secret"), ("boris", "boris-secret")]
            .iter()
            .map(|(user, password)| Baresip::start(&service, user, password))
            .collect();
        for agent in &agents {
            let user = agent.user;
            let registered = service.wait_for_log_line(
                |l| l.contains("agent registration") && field(l, "user").as_deref() == Some(user),
                SIGNALLING_DEADLINE,
            );
            let registered = registered.unwrap_or_else(|| {
                panic!(
                    "{user} never registered; baresip said:\n{}",
                    agent.lines().join("\n")
                )
            });
            assert_eq!(field(&registered, "contacts").as_deref(), Some("1"));
            assert_eq!(
                field(&registered, "peer"),
                Some(format!("127.0.0.1:{}", agent.sip_port)),
                "{user} registered from its own port"
            );
        }
        RegisteredAgents { agents, service }
    }

    /// The agent a `ringing agent` (or other agent-leg) line is about, by its contact's port.
    fn by_log_line(&self, line: &str) -> &Baresip {
        let target = field(line, "agent").unwrap_or_else(|| panic!("no agent= in {line}"));
        self.agents
            .iter()
            .find(|a| {
                let contact_port = target.rsplit_once(':').map(|(_, port)| port);
                contact_port.and_then(|port| port.split(';').next())
                    == Some(&a.sip_port.to_string())
            })
            .unwrap_or_else(|| panic!("{target} is no baresip agent's contact"))
    }

    /// Captures the caller's media port and the agents' SIP and RTP.
    fn capture_filter(&self, caller_media: u16) -> String {
        let mut filter = format!("udp port {caller_media}");
        for agent in &self.agents {
            filter.push_str(&format!(
                " or udp port {} or udp portrange {}-{}",
                agent.sip_port,
                agent.rtp_ports.start(),
                agent.rtp_ports.end()
            ));
        }
        filter
    }
}

/// A baresip softphone registered as one agent: auto-answers and talks (a warbling tone).
struct Baresip {
    user: &'static str,
    sip_port: u16,
    rtp_ports: std::ops::RangeInclusive<u16>,
    child: Child,
    output: Arc<(Mutex<Vec<String>>, Condvar)>,
    dir: PathBuf,
    voice: PathBuf,
}

impl Baresip {
    fn start(service: &Service, user: &'static str, password: &str) -> Baresip {
        let dir = service.dir().join(format!("baresip-{user}"));
        fs::create_dir_all(&dir).unwrap();
        let sip_port = free_port(true, false);
        // baresip rounds its RTP port down to even (RTCP on the odd one above).
        let rtp_first = free_port(false, true) & !1;
        let rtp_ports = rtp_first..=rtp_first + 3;
        // baresip hangs up when its audio file ends: the voice outlasts every test call. It
        // also cuts file names at 127 bytes, too short for the test folder.
        let voice = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "agents-voice-{}-{sip_port}.wav",
            std::process::id()
        ));
        fs::write(&voice, voice_wav(Duration::from_secs(120))).unwrap();
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             dns_server 127.0.0.1:53\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             audio_source aufile,{voice}\n\
             rtp_ports {}-{}\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aubridge.so\n\
             module aufile.so\n\
             module_tmp account.so\n\
             module_app menu.so\n",
            rtp_ports.start(),
            rtp_ports.end(),
            voice = voice.display(),
        );
        fs::write(dir.join("config"), config).unwrap();
        let service_addr = service.sip_addr();
        let account = format!(
            "<sip:{user}@{service_addr}>;auth_pass={password};\
             outbound=\"sip:{service_addr}\";regint=60;answermode=auto;audio_codecs=PCMU\n"
        );
        fs::write(dir.join("accounts"), account).unwrap();

        let mut child = match Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-n", "127.0.0.1", "-t", "170"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("baresip not installed: run scripts/test (installs baresip-core)")
            }
            Err(error) => panic!("starting baresip: {error}"),
        };
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string();
                    output.0.lock().unwrap().push(line);
                    output.1.notify_all();
                }
            });
        }
        let baresip = Baresip {
            user,
            sip_port,
            rtp_ports,
            child,
            output,
            dir,
            voice,
        };
        assert!(
            baresip
                .wait_for(|l| l.contains("baresip is ready"), BARESIP_READY_DEADLINE)
                .is_some(),
            "{user}'s baresip never got ready:\n{}",
            baresip.lines().join("\n")
        );
        baresip
    }

    fn lines(&self) -> Vec<String> {
        self.output.0.lock().unwrap().clone()
    }

    /// Waits for an output line for which `wanted` holds (earlier lines count too).
    fn wait_for(&self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.output.0.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| wanted(l)) {
                return Some(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = self.output.1.wait_timeout(lines, left).unwrap().0;
        }
    }
}

/// An 8 kHz mono 16-bit WAV of a tone whose pitch wanders (300..700 Hz), so no two frames of
/// the agent's stream look alike.
fn voice_wav(length: Duration) -> Vec<u8> {
    const RATE: u32 = 8000;
    let samples = RATE * length.as_secs() as u32;
    let mut wav = Vec::with_capacity(44 + 2 * samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + 2 * samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(2 * RATE).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(2 * samples).to_le_bytes());
    let mut phase = 0.0f64;
    for n in 0..samples {
        let t = f64::from(n) / f64::from(RATE);
        let pitch = 500.0 + 200.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
        phase += 2.0 * std::f64::consts::PI * pitch / f64::from(RATE);
        let sample = (8000.0 * phase.sin()) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.voice);
        let _ = fs::write(self.dir.join("output.log"), self.lines().join("\n"));
        if thread::panicking() {
            eprintln!(
                "---- baresip {} (sip 127.0.0.1:{}) ----\n{}\n---- end of baresip {} ----",
                self.user,
                self.sip_port,
                self.lines().join("\n"),
                self.user
            );
        }
    }
}

/// A SIPp caller run in the background against the service, with the harness's settings.
struct BackgroundSipp {
    child: Child,
    dir: PathBuf,
}

impl BackgroundSipp {
    fn start(service: &Service, scenario: &str, calls: u32) -> BackgroundSipp {
        let dir = service.dir().join(format!(
            "sipp-background-{}",
            scenario.trim_end_matches(".xml")
        ));
        fs::create_dir_all(&dir).unwrap();
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        let child = Command::new("sipp")
            .arg(service.sip_addr().to_string())
            .arg("-sf")
            .arg(&scenario)
            .args(["-s", "19118", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &free_port(false, false).to_string()])
            .args(["-mp", &free_port(false, true).to_string()])
            .args(["-cp", &free_port(false, false).to_string()])
            .args(["-t", "u1", "-m", &calls.to_string(), "-r", "10"])
            .args(["-max_socket", "512", "-timeout", "60s", "-timeout_error"])
            .args([
                "-recv_timeout",
                "10s",
                "-nostdin",
                "-trace_err",
                "-trace_screen",
            ])
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .arg("-screen_file")
            .arg(dir.join("screen.log"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting sipp: {error}"));
        BackgroundSipp { child, dir }
    }

    /// Waits for SIPp to finish (its own `-timeout` bounds it) and asserts all calls succeeded.
    fn wait_for_success(&mut self) {
        let status = self.child.wait().expect("waiting for sipp");
        assert_eq!(
            status.code(),
            Some(0),
            "background SIPp failed; see {}:\n{}\n{}",
            self.dir.display(),
            fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default(),
            fs::read_to_string(self.dir.join("screen.log")).unwrap_or_default()
        );
    }
}

impl Drop for BackgroundSipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the service's RTP, judged against the prompt files -------------------------------------

/// The prompts the service played in `packets` (its own stream), in order: each starts at a
/// marker bit and is named by the file whose frames it repeats longest; `true` when complete.
fn played_prompts(packets: &[RtpPacket], prompts: &Prompts) -> Vec<(&'static str, bool)> {
    let starts: Vec<usize> = (0..packets.len())
        .filter(|&index| packets[index].marker)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(number, &start)| {
            let next = starts.get(number + 1).copied().unwrap_or(packets.len());
            let part = &packets[start..next];
            let matches = prompts.ranked_matches(part);
            let (name, played, frames) = matches[0];
            // Prompts begin with two silent frames; a third tells them apart.
            assert!(
                played >= 3 && played > matches[1].1,
                "packets from {start} (a marker) are no known prompt: best matches {:?}",
                &matches[..3]
            );
            (name, played == frames)
        })
        .collect()
}
