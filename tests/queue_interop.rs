//! The queue end to end with real peers: SIPp residents call the real `hotline serve`, SIPp
//! phones answer (or register and dial feature codes) as agents.
//!
//! - A waiting caller hears the group's `announce` prompt, the whole entry position
//!   announcement (it waits for the announce prompt to end) and then the group's music,
//!   judged bit-exact against the prompt files in a loopback capture (dumpcap).
//! - A group nobody can serve sends its callers to its overflow at once (`when_empty`).
//! - A registered agent pauses with `*21` (confirmation, BYE, `paused` in /api/live, not rung:
//!   the next caller hears "please call later") and resumes with `*22` (rung again).
//! - An agent's blind transfer: REFER to an outside number is refused with 403, REFER to a
//!   group is accepted (202, NOTIFY 200), the agent leg ends and the caller's voice reaches the
//!   new group's agent.
//!
//! `scripts/test` installs SIPp (sip-tester) and dumpcap (tshark).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::capture::{
    describe, frame_time, pieces, Capture, Datagram, Frame, Prompts, RtpPacket, FRAME_LEN,
};
use common::{
    free_port, http_get, log_field as field, Service, Sipp, SippPorts, SippRun, SippStats, SippUas,
    Transport,
};

/// Registration, ringing, answering, a state change reaching /api/live: each well within this
/// on loopback.
const SIGNALLING_DEADLINE: Duration = Duration::from_secs(15);
/// How long an agent phone (background SIPp) may take to bind its port.
const PHONE_BIND_DEADLINE: Duration = Duration::from_secs(15);
/// A group nobody can serve must send the caller on within this of the queueing (heating's
/// max_wait in queue_overflow.toml is 40 s).
const OVERFLOW_AT_ONCE: Duration = Duration::from_secs(2);
/// Music the queued caller must hear (bit-exact) after the announcement: 3 s.
const MUSIC_FRAMES: usize = 150;
/// Time on the line beyond what the prompts take: the key, the menu, scheduling.
const MARGIN: Duration = Duration::from_millis(1500);

// ---- tests ----------------------------------------------------------------------------------

/// A caller waits (the group's only agent never registered; `when_empty = "wait"`): after
/// "connecting you" they hear "you are waiting for" + the group's announce prompt, then the
/// entry announcement whole ("all our consultants are busy", "you are number one in the
/// queue"), which waited for the announce prompt to end, then the group's music (not the
/// hotline's).
#[test]
fn a_waiting_caller_hears_the_announce_the_whole_position_and_the_group_music() {
    let started = Instant::now();
    let prompts = Prompts::load(
        "en",
        &[
            // Not digit_1: in English it is the same "one" as number_1.
            "welcome",
            "transfer_connecting",
            "queue_waiting_for",
            "group_water",
            "all_agents_busy",
            "queue_position_prefix",
            "number_1",
            "queue_position_suffix",
            "music_on_hold",
            "queue_hold",
            "call_later",
        ],
    );
    let frames = |name: &str| prompts.frames(name).len();
    let announce = ["queue_waiting_for", "group_water"];
    let announcement = [
        "all_agents_busy",
        "queue_position_prefix",
        "number_1",
        "queue_position_suffix",
    ];
    let before_music: usize = ["transfer_connecting"]
        .iter()
        .chain(&announce)
        .chain(&announcement)
        .map(|name| frames(name))
        .sum();
    let stay = frame_time(before_music + MUSIC_FRAMES) + MARGIN;

    let routing = fixture("routing/queue_music.toml");
    let service = Service::start(&[("HOTLINE__ROUTING", routing.to_str().unwrap())]);
    let ports = SippPorts::pick(Transport::Udp);
    let capture = Capture::start(service.dir(), &format!("udp port {}", ports.media));
    let run = caller(stay).ports(ports).run(&service);
    let datagrams = capture.finish();
    all_calls_succeeded(&run, 1);

    let to_caller = rtp_to(&datagrams, ports.media);
    let pieces = pieces(&to_caller, &prompts);
    println!("the queued caller heard {}", describe(&pieces));
    let at = pieces
        .iter()
        .position(|p| p.name == "transfer_connecting")
        .unwrap_or_else(|| panic!("no transfer_connecting in {}", describe(&pieces)));
    let expected: Vec<&str> = ["transfer_connecting"]
        .iter()
        .chain(&announce)
        .chain(&announcement)
        .chain(&["music_on_hold"])
        .copied()
        .collect();
    let heard: Vec<&str> = pieces[at..].iter().map(|p| p.name).collect();
    assert_eq!(
        heard,
        expected,
        "what the caller heard once queued: {}",
        describe(&pieces[at..])
    );
    // Each prompt whole, and the next one at once: the announcement waited for the announce
    // prompt to end (the ACD asked for it when the caller was queued, as that prompt began),
    // and no dead air in between.
    for piece in &pieces[at..pieces.len() - 1] {
        assert_eq!(
            piece.played,
            piece.frames,
            "{} was cut: {}",
            piece.name,
            describe(&pieces[at..])
        );
        assert!(
            piece.len <= piece.frames + 1,
            "{} frames of silence after {}: {}",
            piece.len - piece.frames,
            piece.name,
            describe(&pieces[at..])
        );
    }

    // The announcement: its four prompts back to back, as long as their files (± 1 frame).
    let first = at + 1 + announce.len();
    let sent: usize = pieces[first..first + announcement.len()]
        .iter()
        .map(|p| p.len)
        .sum();
    let files: usize = announcement.iter().map(|name| frames(name)).sum();
    println!(
        "announcement: {sent} frames sent ({:.2} s), the prompt files {files} frames ({:.2} s)",
        frame_time(sent).as_secs_f64(),
        frame_time(files).as_secs_f64()
    );
    assert!(
        sent.abs_diff(files) <= 1,
        "the announcement lasted {sent} frames, its prompts {files}"
    );

    // When each began, against the queueing.
    let queued = service
        .wait_for_log_line(|l| l.contains("queued for agents"), SIGNALLING_DEADLINE)
        .expect("the caller was never queued");
    let announce_piece = &pieces[at + 1];
    let announcement_piece = &pieces[first];
    let announce_frames: usize = announce.iter().map(|name| frames(name)).sum();
    println!(
        "queued at {}; the announce prompt started {:+.3} s after, the announcement {:+.3} s \
         after ({:.2} s of announce prompt)",
        timestamp(&queued),
        announce_piece.at.as_secs_f64() - seconds(&queued),
        announcement_piece.at.as_secs_f64() - seconds(&queued),
        frame_time(announce_frames).as_secs_f64()
    );

    // Then the group's own music, bit-exact from its start, until the caller hung up.
    let music = pieces.last().unwrap();
    assert_eq!(
        music.played, music.len,
        "the music was not music_on_hold throughout"
    );
    assert!(
        music.played >= MUSIC_FRAMES - 25,
        "only {} frames of music after the announcement",
        music.played
    );
    assert_eq!(
        field(
            &service
                .wait_for_log_line(caller_call_ended, SIGNALLING_DEADLINE)
                .expect("the call never ended"),
            "outcome"
        )
        .as_deref(),
        Some("caller_hung_up")
    );
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

/// `heating` has one agent, a registered user who never registered: nobody can serve it, so
/// `when_empty` (default `overflow` with an overflow group) sends the caller to `water` at once,
/// whose SIPp agent is rung and answers, long before heating's 40 s max_wait.
#[test]
fn a_group_nobody_can_serve_overflows_at_once() {
    let started = Instant::now();
    let prompts = Prompts::load("en", &["transfer_connecting"]);
    let uas = SippUas::start();
    let routing = routing_with(
        "queue_overflow.toml",
        &[("127.0.0.1:5301", &format!("127.0.0.1:{}", uas.port))],
    );
    let service = Service::start(&[("HOTLINE__ROUTING", routing.to_str().unwrap())]);
    let stay = frame_time(prompts.frames("transfer_connecting").len()) + Duration::from_secs(3);
    let run = caller(stay).run(&service);
    all_calls_succeeded(&run, 1);

    let log = service.log_lines();
    let queued = log
        .iter()
        .find(|l| l.contains("queued for agents"))
        .expect("the caller was never queued");
    assert_eq!(field(queued, "group").as_deref(), Some("heating"));
    let overflowed = log
        .iter()
        .find(|l| l.contains("overflowed to another group"))
        .expect("the caller never overflowed");
    assert_eq!(field(overflowed, "group").as_deref(), Some("water"));
    let rung = log
        .iter()
        .find(|l| l.contains("ringing agent"))
        .expect("no agent was rung");
    assert!(
        field(rung, "agent").is_some_and(|a| a.ends_with(&format!(":{}", uas.port))),
        "rang someone other than water's agent: {rung}"
    );
    let answered = log
        .iter()
        .find(|l| l.contains("agent answered: bridging"))
        .expect("water's agent never answered");
    let to_overflow = seconds(overflowed) - seconds(queued);
    let to_ring = seconds(rung) - seconds(queued);
    let to_answer = seconds(answered) - seconds(queued);
    println!(
        "queued in heating; overflowed after {to_overflow:.3} s, water's agent rung after \
         {to_ring:.3} s, answered after {to_answer:.3} s"
    );
    assert!(
        to_ring < OVERFLOW_AT_ONCE.as_secs_f64(),
        "water's agent was rung only {to_ring:.3} s after the caller queued in heating"
    );
    assert!(
        log.iter().any(|l| l.contains("media bridged")),
        "the caller was never bridged to water's agent"
    );
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

/// olga registers (digest) from a SIPp phone, dials *21: 200, the confirmation, BYE; she is
/// `paused` in /api/live and a caller for her group is not rung to her (her phone gets no
/// INVITE; `when_empty = "message"` sends the caller away). *22 makes her available, and the
/// next caller rings her phone, which answers.
#[test]
fn an_agent_pauses_with_star_21_is_not_rung_and_resumes_with_star_22() {
    let started = Instant::now();
    let routing = fixture("routing/queue_features.toml");
    let credentials = fixture("agents/queue_credentials.toml");
    let service = Service::start(&[
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
        ("HOTLINE__SIP__CREDENTIALS", credentials.to_str().unwrap()),
    ]);
    // Confirmations are in the routing's default language (en here).
    let confirmations = Prompts::load("en", &["agent_paused", "agent_available"]);
    let goodbyes = Prompts::load(
        "en",
        &["welcome", "transfer_connecting", "call_later", "goodbye"],
    );
    let phone = SippPorts::pick(Transport::Udp);
    let olga = "user:olga";

    let run = Sipp::new("queue_agent_register.xml")
        .ports(phone)
        .run(&service);
    all_calls_succeeded(&run, 1);
    let registered = service
        .wait_for_log_line(
            |l| l.contains("agent registration") && field(l, "user").as_deref() == Some("olga"),
            SIGNALLING_DEADLINE,
        )
        .expect("olga never registered");
    assert_eq!(
        field(&registered, "peer"),
        Some(format!("127.0.0.1:{}", phone.signalling))
    );
    wait_for_agent_state(&service, olga, "idle");

    // *21: answered, the confirmation whole, then the service's BYE.
    let heard = feature_code(&service, "queue_agent_pause.xml", phone, &confirmations);
    assert_eq!(heard.as_slice(), [("agent_paused", true)], "olga heard");
    let hung_up = Instant::now();
    let shown = wait_for_agent_state(&service, olga, "paused");
    println!(
        "*21: confirmed, hung up; `paused` in /api/live {:.2} s after the hang-up",
        shown.duration_since(hung_up).as_secs_f64()
    );
    let changed = service
        .wait_for_log_line(|l| l.contains("agent state changed"), SIGNALLING_DEADLINE)
        .expect("no log line for olga's pause");
    assert_eq!(
        field(&changed, "to").as_deref(),
        Some("paused"),
        "{changed}"
    );

    // A caller now: nobody can serve the group; olga's phone must not ring.
    let mut idle_phone =
        AgentPhone::start(&service, "olga-paused", "queue_agent_answer.xml", phone);
    let ports = SippPorts::pick(Transport::Udp);
    let capture = Capture::start(service.dir(), &format!("udp port {}", ports.media));
    let sent_away_at = Instant::now();
    let run = Sipp::new("queue_caller_sent_away.xml")
        .ports(ports)
        .run(&service);
    let datagrams = capture.finish();
    all_calls_succeeded(&run, 1);
    let sent_away = sent_away_at.elapsed();
    let heard = pieces(&rtp_to(&datagrams, ports.media), &goodbyes);
    let tail: Vec<(&str, bool)> = heard
        .iter()
        .skip_while(|p| p.name != "transfer_connecting")
        .map(|p| (p.name, p.played == p.frames))
        .collect();
    assert_eq!(
        tail,
        [
            ("transfer_connecting", true),
            ("call_later", true),
            ("goodbye", true)
        ],
        "the caller of a group nobody serves heard {}",
        describe(&heard)
    );
    let ended = service
        .wait_for_log_line(caller_call_ended, SIGNALLING_DEADLINE)
        .expect("the first caller's call never ended");
    idle_phone.stop();
    let messages = idle_phone.messages();
    assert!(
        !messages.contains("INVITE sip:"),
        "the paused agent's phone was rung:\n{messages}"
    );
    assert!(
        !service
            .log_lines()
            .iter()
            .any(|l| l.contains("ringing agent")),
        "the service rang an agent while olga was paused"
    );
    println!(
        "caller while olga paused: sent away (BYE) {:.2} s after dialling, outcome {:?}; \
         olga's phone got no INVITE",
        sent_away.as_secs_f64(),
        field(&ended, "outcome")
    );
    drop(idle_phone);

    // *22: available again, and the next caller rings her.
    let heard = feature_code(&service, "queue_agent_resume.xml", phone, &confirmations);
    assert_eq!(heard.as_slice(), [("agent_available", true)], "olga heard");
    wait_for_agent_state(&service, olga, "idle");
    let mut answering = AgentPhone::start(&service, "olga-back", "queue_agent_answer.xml", phone);
    let run = caller(Duration::from_secs(4)).run(&service);
    all_calls_succeeded(&run, 1);
    assert_eq!(
        answering.wait(SIGNALLING_DEADLINE),
        Some(0),
        "olga's phone did not take the call\n{}",
        answering.diagnostics()
    );
    let rung = service
        .wait_for_log_line(|l| l.contains("ringing agent"), SIGNALLING_DEADLINE)
        .expect("olga was never rung after *22");
    assert!(
        field(&rung, "agent").is_some_and(|a| a.ends_with(&format!(":{}", phone.signalling))),
        "{rung}"
    );
    assert!(
        service
            .wait_for_log_line(|l| l.contains("media bridged"), SIGNALLING_DEADLINE)
            .is_some(),
        "the caller was never bridged to olga"
    );
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

/// The heating agent (SIPp) answers, then REFERs the caller: to an outside number (403), then
/// to `water` (202, NOTIFY with a 200 sipfrag, BYE to the agent). Water's agent (SIPp) is rung,
/// answers, and gets the caller's voice (a 1 kHz tone the caller's SIPp streams) relayed.
#[test]
fn an_agent_transfers_the_caller_to_another_group_and_an_outside_refer_is_refused() {
    let started = Instant::now();
    let prompts = Prompts::load("en", &["transfer_connecting", "group_water"]);
    let heating_ports = SippPorts::pick(Transport::Udp);
    let water_ports = SippPorts::pick(Transport::Udp);
    let routing = routing_with(
        "queue_transfer.toml",
        &[
            (
                "127.0.0.1:5311",
                &format!("127.0.0.1:{}", heating_ports.signalling),
            ),
            (
                "127.0.0.1:5301",
                &format!("127.0.0.1:{}", water_ports.signalling),
            ),
        ],
    );
    let service = Service::start(&[("HOTLINE__ROUTING", routing.to_str().unwrap())]);
    let mut heating =
        AgentPhone::start(&service, "heating", "queue_agent_refer.xml", heating_ports);
    let mut water = AgentPhone::start(&service, "water", "queue_agent_answer.xml", water_ports);
    // Connecting (twice), the heating agent's second, water's announce, then 3 s with water.
    let stay = frame_time(
        2 * prompts.frames("transfer_connecting").len() + prompts.frames("group_water").len(),
    ) + Duration::from_secs(4)
        + MARGIN;
    let capture = Capture::start(service.dir(), &format!("udp port {}", water_ports.media));
    let run = caller(stay).run(&service);
    let datagrams = capture.finish();
    all_calls_succeeded(&run, 1);
    assert_eq!(
        heating.wait(SIGNALLING_DEADLINE),
        Some(0),
        "the heating agent's transfer did not go as expected (403, then 202, NOTIFY 200, BYE)\n{}",
        heating.diagnostics()
    );
    assert_eq!(
        water.wait(SIGNALLING_DEADLINE),
        Some(0),
        "water's agent did not take the call\n{}",
        water.diagnostics()
    );

    let heating_messages = heating.messages();
    assert!(
        heating_messages.contains("SIP/2.0 403"),
        "no 403 to the outside REFER:\n{heating_messages}"
    );
    let log = service.log_lines();
    let refused = log
        .iter()
        .find(|l| l.contains("event=transfer_refused"))
        .expect("no SECURITY line for the refused REFER");
    assert!(
        refused.contains("sip:+37060000001@example.com"),
        "{refused}"
    );
    let bridged_to_heating = log
        .iter()
        .find(|l| l.contains("media bridged"))
        .expect("the caller was never bridged to heating");
    assert!(
        seconds(bridged_to_heating) <= seconds(refused),
        "the outside REFER came before the call was bridged, so its 403 proves nothing"
    );
    let moved = log
        .iter()
        .find(|l| l.contains("transferred by the agent to another group"))
        .expect("the service never moved the caller");
    assert_eq!(field(moved, "group").as_deref(), Some("water"));
    let rung: Vec<&String> = log.iter().filter(|l| l.contains("ringing agent")).collect();
    assert_eq!(
        rung.len(),
        2,
        "heating's then water's agent rung: {rung:#?}"
    );
    assert!(
        field(rung[1], "agent")
            .is_some_and(|a| a.ends_with(&format!(":{}", water_ports.signalling))),
        "{}",
        rung[1]
    );
    let water_answered = log
        .iter()
        .filter(|l| l.contains("agent answered: bridging"))
        .nth(1)
        .expect("water's agent never answered");
    println!(
        "REFER accepted at {}; water's agent rung {:+.3} s after, answered {:+.3} s after",
        timestamp(moved),
        seconds(rung[1]) - seconds(moved),
        seconds(water_answered) - seconds(moved)
    );

    // The caller's voice at water's agent: the service relays the caller's packets.
    let tone_frame = tone_frame();
    let at_water = rtp_to(&datagrams, water_ports.media);
    let voice = at_water
        .iter()
        .filter(|p| p.payload[..] == tone_frame[..])
        .count();
    println!(
        "water's agent got {} RTP packets, {voice} of them the caller's tone",
        at_water.len()
    );
    assert!(
        voice >= 100,
        "only {voice} packets of the caller's voice reached water's agent ({} RTP packets)",
        at_water.len()
    );
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

// ---- callers and agent phones ---------------------------------------------------------------

/// The resident of `queue_caller.xml`: presses 1, talks (the tone), stays `stay`, hangs up.
fn caller(stay: Duration) -> Sipp {
    Sipp::new("queue_caller.xml")
        .pause(stay)
        .working_file("tone.ul", tone_ul())
}

/// Runs a feature-code scenario from olga's phone and returns the prompts the service played
/// to the phone, with whether each was whole.
fn feature_code(
    service: &Service,
    scenario: &str,
    phone: SippPorts,
    prompts: &Prompts,
) -> Vec<(&'static str, bool)> {
    let capture = Capture::start(service.dir(), &format!("udp port {}", phone.media));
    let run = Sipp::new(scenario).ports(phone).run(service);
    let datagrams = capture.finish();
    all_calls_succeeded(&run, 1);
    let pieces = pieces(&rtp_to(&datagrams, phone.media), prompts);
    println!("{scenario}: olga heard {}", describe(&pieces));
    pieces
        .iter()
        .map(|p| (p.name, p.played == p.frames))
        .collect()
}

/// An agent's phone: SIPp running a UAS scenario from `tests/sipp/` once (`-m 1`) in the
/// background on given ports, every message traced. Killed when dropped.
struct AgentPhone {
    child: Child,
    dir: PathBuf,
    exit_code: Option<Option<i32>>,
}

impl AgentPhone {
    /// Starts SIPp and returns once it has bound its SIP port.
    fn start(service: &Service, name: &str, scenario: &str, ports: SippPorts) -> AgentPhone {
        let dir = service.dir().join(format!("phone-{name}"));
        fs::create_dir_all(&dir).unwrap();
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &ports.signalling.to_string()])
            .args(["-mp", &ports.media.to_string()])
            .args(["-cp", &free_port(false, false).to_string()])
            .args(["-t", "u1", "-m", "1", "-max_socket", "512", "-nostdin"])
            .args(["-timeout", "60s", "-timeout_error"])
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting sipp for the {name} phone: {error}"));
        let phone = AgentPhone {
            child,
            dir,
            exit_code: None,
        };
        // Bound once the kernel lists the port (looked up without binding it, so no race).
        let bound = format!("0100007F:{:04X} ", ports.signalling);
        let deadline = Instant::now() + PHONE_BIND_DEADLINE;
        while !fs::read_to_string("/proc/net/udp")
            .unwrap_or_default()
            .contains(&bound)
        {
            assert!(
                Instant::now() < deadline,
                "the {name} phone never bound {}\n{}",
                ports.signalling,
                phone.diagnostics()
            );
            thread::sleep(Duration::from_millis(20));
        }
        phone
    }

    /// SIPp's exit code once it has finished its call (0: the scenario went as written);
    /// `None` if it is still running after `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.exit_code {
                return code;
            }
            match self.child.try_wait() {
                Ok(Some(status)) => self.exit_code = Some(status.code()),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => return None,
                Err(error) => panic!("waiting for sipp: {error}"),
            }
        }
    }

    /// Stops the phone (a phone that got no call never finishes by itself).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every SIP message the phone sent and received.
    fn messages(&self) -> String {
        fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default()
    }

    fn diagnostics(&self) -> String {
        let read = |file: &str| fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        format!(
            "---- phone in {} ----\n-- errors.log --\n{}\n-- screen.log --\n{}\n-- messages.log --\n{}",
            self.dir.display(),
            read("errors.log"),
            read("screen.log"),
            read("messages.log")
        )
    }
}

impl Drop for AgentPhone {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
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

// ---- the caller's voice ---------------------------------------------------------------------

/// 0 dBm0 as the peak of a 16-bit sine.
const ZERO_DBM0_PEAK: f64 = 22_730.0;

/// One 20 ms frame of a 1 kHz tone at -10 dBm0 in µ-law: 8 samples a period, so every frame
/// of the looped second is this same frame.
fn tone_frame() -> Frame {
    let peak = ZERO_DBM0_PEAK * 10f64.powf(-10.0 / 20.0);
    let mut frame = [0u8; FRAME_LEN];
    for (n, byte) in frame.iter_mut().enumerate() {
        let t = n as f64 / 8000.0;
        let value = peak * (2.0 * std::f64::consts::PI * 1000.0 * t).sin();
        *byte = audio_codec_algorithms::encode_ulaw(value.round() as i16);
    }
    frame
}

/// One second of the tone as raw µ-law, for SIPp's `rtp_stream` (payload type 0).
fn tone_ul() -> Vec<u8> {
    tone_frame().repeat(50)
}

// ---- what the service sent, judged against the prompt files ---------------------------------

/// The service's RTP packets to `port`, in sequence order.
fn rtp_to(datagrams: &[Datagram], port: u16) -> Vec<RtpPacket> {
    let mut packets: Vec<RtpPacket> = datagrams
        .iter()
        .filter(|d| d.dst.port() == port)
        .filter_map(RtpPacket::parse)
        .collect();
    packets.sort_by_key(|p| p.at);
    packets
}

// ---- fixtures, the service's log and API ----------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A routing fixture with agents' ports rewritten, written to a private file.
fn routing_with(name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = fs::read_to_string(fixture("routing").join(name)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "queue-{}-{}-{name}",
        std::process::id(),
        free_port(false, false)
    ));
    fs::write(&path, text).unwrap();
    path
}

/// Polls /api/live (republished about once a second) until `agent` is in `state`; returns
/// when it was seen.
fn wait_for_agent_state(service: &Service, agent: &str, state: &str) -> Instant {
    let http = service.http_addr();
    let deadline = Instant::now() + SIGNALLING_DEADLINE;
    loop {
        let (status, body) = http_get(http, "/api/live", None);
        assert_eq!(status, 200, "GET /api/live: {body}");
        let live: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("/api/live is no JSON ({error}): {body}"));
        let seen = live["agents"]
            .as_array()
            .and_then(|agents| agents.iter().find(|a| a["agent"] == agent))
            .and_then(|a| a["state"].as_str())
            .unwrap_or("(not listed)")
            .to_owned();
        if seen == state {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{agent} is still {seen:?} in /api/live, not {state:?}: {}",
            live["agents"]
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The line a caller's call ends with (not a feature code's `prompt call ended`).
fn caller_call_ended(line: &str) -> bool {
    line.contains("call ended") && field(line, "outcome").is_some()
}

/// The RFC 3339 timestamp that starts each line.
fn timestamp(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or_default()
}

/// Seconds since the Unix epoch of a line's timestamp (comparable with capture times).
fn seconds(line: &str) -> f64 {
    let at = chrono::DateTime::parse_from_rfc3339(timestamp(line))
        .unwrap_or_else(|error| panic!("no timestamp in {line:?}: {error}"));
    at.timestamp_micros() as f64 / 1e6
}
