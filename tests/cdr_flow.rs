//! Supervisor statistics are exact for calls driven through the real call flow. Seventeen scripted
//! callers of known outcome walk the menus of `tests/fixtures/routing/stats.toml` through the SIP
//! switchboard (`Switchboard` running `MenuFlow`, the ACD and the bundled prompts) in simulated
//! time (`call::sim::Simulator`, whose media driver ends each prompt after its real length), callers press keys at fixed
//! offsets and hang up on cue, and fake agents' phones answer after a set time, refuse with 486
//! or ring until cancelled. The call records must carry the scripted outcome, language,
//! enterprise, agent, wait and talk (to the millisecond) at the simulated instants; stored in
//! SQLite and in a real PostgreSQL server, `CdrStore::stats`, `hotline stats` and
//! `GET /api/stats` must give exactly the hand-computed counts, service level, ASA and longest
//! wait, the CLI and the API byte for byte.

// Only `start` and `url` are used here; the module serves other tests too.
#[allow(dead_code)]
mod pg_server;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, TimeZone, Utc};
use hotline::call::sim::Simulator;
use hotline::call::{IncomingCall, Input, Output, Record, Switchboard, SwitchboardConfig};
use hotline::cdr::{
    CallEvent, CallRecord, CallStart, CdrStore, Delivery, Dimension, Outcome, StatsQuery, StatsRow,
    Thresholds,
};
use hotline::http::live::{LiveSnapshot, ReloadRequest};
use hotline::http::{serve, HttpState};
use hotline::ivr::menu::MenuFlow;
use hotline::ivr::CallFlow;
use hotline::media::dtmf::DtmfSource;
use hotline::media::leg::{LegId, MediaCommand, MediaEvent};
use hotline::media::prompts::PromptLibrary;
use hotline::sip::transaction::TimerConfig;
use hotline::sip::transport::{Peer, TransportKind};
use hotline::sip::ua::UaConfig;
use pg_server::TestPostgres;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "stats-token";
/// The local day of the calls (Europe/Vilnius, UTC+2 in December) and the day after.
const DAY: &str = "2026-12-02";
const NEXT_DAY: &str = "2026-12-03";
const CALLERS: &str = "127.0.0.1:6000";
/// The flow plays this at the instant a caller is routed to an open group.
const CHOICE_PROMPT: &str = "transfer_connecting";

/// Wednesday 2 December 2026, 10:00 in Vilnius: the simulated start. `registry` opens at 13:00.
fn start_wall() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap()
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

// ---- the script ----------------------------------------------------------------------------

/// Who ends a bridged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Agent,
}

/// What an agent's phone does when it rings for a caller.
#[derive(Debug, Clone, Copy)]
enum Pickup {
    /// 180 at once, 200 OK when the caller has waited `wait` since the group choice; `ends`
    /// hangs up `talk` after the answer.
    Answer {
        wait: Duration,
        talk: Duration,
        ends: Side,
    },
    /// 486 Busy Here at once.
    Busy,
    /// Rings (180) until the hotline cancels.
    Ring,
}

/// When the caller hangs up by themselves.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// This long after arriving.
    At(Duration),
    /// This long after the group choice (when the flow starts the "connecting" prompt).
    AfterChoice(Duration),
    /// Never: the agent or the hotline ends the call (or the caller after the scripted talk).
    Never,
}

/// What the record of a call must say.
#[derive(Debug, Clone)]
struct Expected {
    outcome: Outcome,
    language: Option<&'static str>,
    enterprise: Option<&'static str>,
    menu_path: &'static str,
    wait_ms: Option<i64>,
    talk_ms: Option<i64>,
    agent: Option<&'static str>,
}

struct Caller {
    id: &'static str,
    arrive: Duration,
    /// Offers only G.729, which the hotline does not speak.
    g729: bool,
    /// (seconds after arrival, key)
    keys: &'static [(u64, char)],
    hang_up: HangUp,
    /// The agents rung for this caller, in order, and what each does.
    rings: Vec<(&'static str, Pickup)>,
    expected: Expected,
}

fn answer(wait_s: u64, talk_s: u64, ends: Side) -> Pickup {
    Pickup::Answer {
        wait: secs(wait_s),
        talk: secs(talk_s),
        ends,
    }
}

/// `sip:<user>@127.0.0.1:<port>` as the fixture names each agent.
fn agent_uri(user: &str) -> &'static str {
    match user {
        "water-1" => "sip:water-1@127.0.0.1:5401",
        "heating-1" => "sip:heating-1@127.0.0.1:5402",
        "waste-1" => "sip:waste-1@127.0.0.1:5403",
        "registry-1" => "sip:registry-1@127.0.0.1:5404",
        "operator-1" => "sip:operator-1@127.0.0.1:5405",
        other => panic!("no agent {other} in stats.toml"),
    }
}

/// Keys: language 1 = lt, 2 = en; main menu 1 water, 2 heating, 3 waste, 4 registry (closed),
/// 8 information. Every caller types ahead over the prompts, 2 s apart. A wait runs from the
/// group choice (the key, or the menu giving up) to the agent's answer or the end of the call.
fn script(queue_timeout_wait_ms: i64) -> Vec<Caller> {
    use Outcome::*;
    use Side::{Agent, Caller as ByCaller};
    let queued =
        |outcome, language, enterprise, path, wait_ms: i64, talk_s: Option<i64>, agent| Expected {
            outcome,
            language: Some(language),
            enterprise: Some(enterprise),
            menu_path: path,
            wait_ms: Some(wait_ms),
            talk_ms: talk_s.map(|talk| talk * 1000),
            agent,
        };
    let menus_only = |outcome, language, path| Expected {
        outcome,
        language,
        enterprise: None,
        menu_path: path,
        wait_ms: None,
        talk_ms: None,
        agent: None,
    };
    let water = Some("sip:water-1@127.0.0.1:5401");
    let call = |id, arrive_s, keys, hang_up, rings, expected| Caller {
        id,
        arrive: secs(arrive_s),
        g729: false,
        keys,
        hang_up,
        rings,
        expected,
    };
    vec![
        // Answered 8 s after the choice, 60 s of talk, the caller hangs up.
        call(
            "c01",
            0,
            &[(2, '1'), (4, '1')],
            HangUp::Never,
            vec![("water-1", answer(8, 60, ByCaller))],
            queued(
                Connected,
                "lt",
                "water",
                "language lt > main:1 > queue water",
                8_000,
                Some(60),
                water,
            ),
        ),
        // Hangs up in the main menu without choosing.
        call(
            "c05",
            10,
            &[(2, '1')],
            HangUp::At(secs(6)),
            vec![],
            menus_only(AbandonedMenu, Some("lt"), "language lt"),
        ),
        // waste-1 answers 40 s after the choice (outside the service level), 90 s of talk.
        call(
            "c10",
            20,
            &[(2, '2'), (4, '3')],
            HangUp::Never,
            vec![("waste-1", answer(40, 90, ByCaller))],
            queued(
                Connected,
                "en",
                "waste",
                "language en > main:3 > queue waste",
                40_000,
                Some(90),
                Some("sip:waste-1@127.0.0.1:5403"),
            ),
        ),
        // waste-1 is busy with c10 for the whole 30 s max_wait: "call later", the hotline hangs up.
        call(
            "c09",
            40,
            &[(2, '2'), (4, '3')],
            HangUp::Never,
            vec![],
            queued(
                QueueTimeout,
                "en",
                "waste",
                "language en > main:3 > queue waste > queue gave up",
                queue_timeout_wait_ms,
                None,
                None,
            ),
        ),
        // heating-1 is busy (486); after heating's 10 s max_wait the call overflows to the
        // operator, who answers 16 s after the choice: connected, enterprise stays heating.
        call(
            "c11",
            50,
            &[(2, '1'), (4, '2')],
            HangUp::Never,
            vec![
                ("heating-1", Pickup::Busy),
                ("operator-1", answer(16, 45, ByCaller)),
            ],
            queued(
                Connected,
                "lt",
                "heating",
                "language lt > main:2 > queue heating",
                16_000,
                Some(45),
                Some("sip:operator-1@127.0.0.1:5405"),
            ),
        ),
        // Presses nothing: the language menu gives up (default lt), then the main menu sends
        // the caller to the fallback group (offered to it); they hang up 0.5 s later, while
        // "connecting" plays.
        call(
            "c06",
            60,
            &[],
            HangUp::AfterChoice(Duration::from_millis(500)),
            vec![],
            Expected {
                outcome: NoInput,
                language: Some("lt"),
                enterprise: Some("operator"),
                menu_path: "language: no key > language: no key > language lt > main: no key > \
                            main: no key > fallback",
                wait_ms: Some(500),
                talk_ms: None,
                agent: None,
            },
        ),
        // Opening hours, then hangs up.
        call(
            "c07",
            90,
            &[(2, '2'), (4, '8')],
            HangUp::At(secs(12)),
            vec![],
            menus_only(InfoOnly, Some("en"), "language en > main:8"),
        ),
        // Answered after 25 s (outside the 20 s service level); the agent ends after 30 s.
        call(
            "c02",
            100,
            &[(2, '2'), (4, '1')],
            HangUp::Never,
            vec![("water-1", answer(25, 30, Agent))],
            queued(
                Connected,
                "en",
                "water",
                "language en > main:1 > queue water",
                25_000,
                Some(30),
                water,
            ),
        ),
        // registry is closed at 10:00; the caller hangs up 2 s into the closed message.
        call(
            "c08",
            130,
            &[(2, '2'), (4, '4')],
            HangUp::At(secs(6)),
            vec![],
            Expected {
                outcome: Closed,
                language: Some("en"),
                enterprise: Some("registry"),
                menu_path: "language en > main:4 > registry closed",
                // The closed message is no wait.
                wait_ms: Some(0),
                talk_ms: None,
                agent: None,
            },
        ),
        // heating-1 busy, overflow to the operator, who rings; the caller gives up 18 s after
        // the choice: overflowed.
        call(
            "c12",
            150,
            &[(2, '2'), (4, '2')],
            HangUp::AfterChoice(secs(18)),
            vec![("heating-1", Pickup::Busy), ("operator-1", Pickup::Ring)],
            queued(
                Overflowed,
                "en",
                "heating",
                "language en > main:2 > queue heating",
                18_000,
                None,
                None,
            ),
        ),
        // Offers G.729 only: refused with 488, still one record.
        Caller {
            g729: true,
            ..call(
                "c14",
                170,
                &[],
                HangUp::Never,
                vec![],
                menus_only(Rejected, None, ""),
            )
        },
        // Abandons 12 s after the choice while water-1 rings.
        call(
            "c03",
            200,
            &[(2, '1'), (4, '1')],
            HangUp::AfterChoice(secs(12)),
            vec![("water-1", Pickup::Ring)],
            queued(
                AbandonedQueue,
                "lt",
                "water",
                "language lt > main:1 > queue water",
                12_000,
                None,
                None,
            ),
        ),
        // heating-1 answers 5 s after the choice and ends the call after 20 s.
        call(
            "c13",
            200,
            &[(2, '2'), (4, '2')],
            HangUp::Never,
            vec![("heating-1", answer(5, 20, Agent))],
            queued(
                Connected,
                "en",
                "heating",
                "language en > main:2 > queue heating",
                5_000,
                Some(20),
                Some("sip:heating-1@127.0.0.1:5402"),
            ),
        ),
        // Short abandon: hangs up in the queue 3 s after the choice.
        call(
            "c04",
            240,
            &[(2, '2'), (4, '1')],
            HangUp::AfterChoice(secs(3)),
            vec![("water-1", Pickup::Ring)],
            queued(
                AbandonedQueue,
                "en",
                "water",
                "language en > main:1 > queue water",
                3_000,
                None,
                None,
            ),
        ),
        // Answered exactly 20 s after the choice: inside the service level (inclusive).
        call(
            "c15",
            270,
            &[(2, '1'), (4, '1')],
            HangUp::Never,
            vec![("water-1", answer(20, 10, ByCaller))],
            queued(
                Connected,
                "lt",
                "water",
                "language lt > main:1 > queue water",
                20_000,
                Some(10),
                water,
            ),
        ),
        // Hangs up 1 s after choosing water, before the queue: a short abandon in the menus.
        call(
            "c17",
            300,
            &[(2, '2'), (4, '1')],
            HangUp::AfterChoice(secs(1)),
            vec![],
            Expected {
                outcome: AbandonedMenu,
                language: Some("en"),
                enterprise: Some("water"),
                menu_path: "language en > main:1",
                wait_ms: Some(1000),
                talk_ms: None,
                agent: None,
            },
        ),
        // Abandons after exactly 5 s: counted as abandoned (short means under 5 s).
        call(
            "c16",
            330,
            &[(2, '1'), (4, '1')],
            HangUp::AfterChoice(secs(5)),
            vec![("water-1", Pickup::Ring)],
            queued(
                AbandonedQueue,
                "lt",
                "water",
                "language lt > main:1 > queue water",
                5_000,
                None,
                None,
            ),
        ),
    ]
}

// ---- SIP text --------------------------------------------------------------------------------

const PCMU_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

const G729_OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6002 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";

const AGENT_ANSWER: &str =
    "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7010 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn caller_number(index: usize) -> String {
    format!("3706000{index:04}")
}

fn invite(call_id: &str, number: &str, offer: &str) -> String {
    format!(
        "INVITE sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CALLERS};branch=z9hG4bK-{call_id}-invite\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{number}@127.0.0.1>;tag=caller\r\n\
         To: <sip:19118@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{CALLERS}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{offer}",
        offer.len()
    )
}

/// ACK (CSeq 1) or BYE (CSeq 2) from the caller inside the call's dialog.
fn caller_request(method: &str, call_id: &str, number: &str, to_tag: &str) -> String {
    let cseq = if method == "ACK" { 1 } else { 2 };
    format!(
        "{method} sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CALLERS};branch=z9hG4bK-{call_id}-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{number}@127.0.0.1>;tag=caller\r\n\
         To: <sip:19118@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        method.to_ascii_lowercase()
    )
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

fn to_tag(message: &str) -> Option<String> {
    let to = header(message, "To")?;
    let tag = to.split(";tag=").nth(1)?;
    Some(tag.split(';').next().unwrap_or_default().to_owned())
}

/// A response to `request` (the To tag added when it has none), with extra header lines and an
/// SDP body when given.
fn reply(request: &str, status: &str, tag: &str, extra: &str, sdp: &str) -> String {
    let to = header(request, "To").unwrap();
    let to = if to.contains(";tag=") {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    let content_type = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{sdp}",
        header(request, "Via").unwrap(),
        header(request, "From").unwrap(),
        header(request, "Call-ID").unwrap(),
        header(request, "CSeq").unwrap(),
        sdp.len()
    )
}

// ---- the simulation ----------------------------------------------------------------------------

/// A scripted happening, at its simulated instant.
#[derive(Debug, Clone, Copy)]
enum Step {
    Arrive(usize),
    Key(usize, char),
    CallerBye(usize),
    AgentAnswers(usize),
    AgentBye(usize),
}

/// What a caller saw and did, with the simulated instants.
#[derive(Debug, Default)]
struct CallerLog {
    call: Option<LegId>,
    to_tag: Option<String>,
    /// Every Play command: (instant, prompt names).
    plays: Vec<(Instant, Vec<String>)>,
    /// First instant each prompt began.
    first_play: HashMap<String, Instant>,
    /// The group choice: the flow starts "connecting" at that instant.
    chosen_at: Option<Instant>,
    /// Queue entry: the hold music starts then.
    queued_at: Option<Instant>,
    answered_at: Option<Instant>,
    /// When the hotline sent BYE (queue timeout, agent hung up...).
    hotline_bye_at: Option<Instant>,
    /// When the caller sent BYE.
    caller_bye_at: Option<Instant>,
    recorded_at: Option<Instant>,
    /// Agents rung for this caller, in order.
    rung: Vec<String>,
    /// What the agents rung next will do.
    plan: VecDeque<(&'static str, Pickup)>,
}

/// One INVITE the hotline sent to an agent's phone.
struct AgentLeg {
    caller: usize,
    invite: String,
    peer: Peer,
    pickup: Pickup,
    cancelled: bool,
}

struct Sim {
    sim: Simulator,
    callers: Vec<Caller>,
    logs: Vec<CallerLog>,
    by_call_id: HashMap<String, usize>,
    by_number: HashMap<String, usize>,
    /// The caller whose INVITE is being handled: its media Start names its LegId.
    arriving: Option<usize>,
    by_ref: HashMap<LegId, usize>,
    agenda: BTreeMap<(Instant, u64), Step>,
    next_seq: u64,
    legs: Vec<AgentLeg>,
    leg_by_call_id: HashMap<String, usize>,
    starts: Vec<CallStart>,
    records: Vec<(CallRecord, Vec<CallEvent>)>,
    /// Every SIP message the switchboard sent, with its simulated time: a replay must match.
    transcript: String,
}

fn config() -> SwitchboardConfig {
    SwitchboardConfig {
        sip: UaConfig {
            local: "127.0.0.1:5060".parse().unwrap(),
            public_ip: "127.0.0.1".parse().unwrap(),
            timers: TimerConfig {
                t1: Duration::from_millis(500),
                t2: secs(4),
                t4: secs(5),
            },
            max_message_size: 16384,
        },
        max_call_duration: secs(3600),
        answer_delay: Duration::ZERO,
        rtp_timeout: secs(30),
        rtp_port_min: 30000,
        rtp_port_max: 30100,
    }
}

fn udp(addr: &str) -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: addr.parse().unwrap(),
    }
}

impl Sim {
    fn new(prompts: Arc<PromptLibrary>, routing_path: &Path, callers: Vec<Caller>) -> Sim {
        let routing = hotline::routing::active::load_checked(routing_path, &prompts, &[])
            .unwrap_or_else(|problems| panic!("{problems:?}"))
            .routing;
        let for_flows = routing.clone();
        let switchboard = Switchboard::new(
            config(),
            prompts,
            Box::new(move |_: &IncomingCall| -> Box<dyn CallFlow> {
                Box::new(MenuFlow::new(for_flows.clone()))
            }),
            11,
        );
        let wall = SystemTime::from(start_wall());
        let mut sim = Simulator::new(switchboard, Instant::now(), wall, true);
        let t0 = sim.t0;
        sim.switchboard.set_routing(t0, routing);
        let logs = callers
            .iter()
            .map(|caller| CallerLog {
                plan: caller.rings.iter().copied().collect(),
                ..CallerLog::default()
            })
            .collect();
        let by_call_id = callers
            .iter()
            .enumerate()
            .map(|(index, caller)| (caller.id.to_owned(), index))
            .collect();
        let by_number = (0..callers.len())
            .map(|index| (caller_number(index), index))
            .collect();
        Sim {
            sim,
            callers,
            logs,
            by_call_id,
            by_number,
            arriving: None,
            by_ref: HashMap::new(),
            agenda: BTreeMap::new(),
            next_seq: 0,
            legs: Vec::new(),
            leg_by_call_id: HashMap::new(),
            starts: Vec::new(),
            records: Vec::new(),
            transcript: String::new(),
        }
    }

    fn schedule(&mut self, at: Instant, step: Step) {
        self.next_seq += 1;
        self.agenda.insert((at, self.next_seq), step);
    }

    /// Runs the script, firing the switchboard's timers, prompt ends and scripted steps in time
    /// order, until nothing is left to happen before `t0 + horizon`.
    fn run(&mut self, horizon: Duration) {
        for index in 0..self.callers.len() {
            let arrive = self.sim.t0 + self.callers[index].arrive;
            self.schedule(arrive, Step::Arrive(index));
            for &(after_s, key) in self.callers[index].keys {
                self.schedule(arrive + secs(after_s), Step::Key(index, key));
            }
            if let HangUp::At(after) = self.callers[index].hang_up {
                self.schedule(arrive + after, Step::CallerBye(index));
            }
        }
        let end = self.sim.t0 + horizon;
        for _ in 0..1_000_000 {
            let by_itself = self.sim.next_event();
            let step = self.agenda.keys().next().copied();
            let next = [by_itself, step.map(|s| s.0)].into_iter().flatten().min();
            let Some(next) = next.filter(|next| *next <= end) else {
                return;
            };
            self.sim.now = self.sim.now.max(next);
            if by_itself.is_some_and(|at| at <= self.sim.now) {
                self.sim.fire_due();
            } else if let Some(key) = step {
                if let Some(step) = self.agenda.remove(&key) {
                    self.step(step);
                }
            }
            self.drain();
        }
        panic!("the simulation did not settle");
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Arrive(index) => {
                let caller = &self.callers[index];
                let offer = if caller.g729 { G729_OFFER } else { PCMU_OFFER };
                let text = invite(caller.id, &caller_number(index), offer);
                self.arriving = Some(index);
                self.input(udp(CALLERS), &text);
                self.drain();
                self.arriving = None;
            }
            Step::Key(index, digit) => {
                if let Some(call) = self.logs[index].call {
                    let event = MediaEvent::Digit {
                        leg: call,
                        digit,
                        source: DtmfSource::Rfc4733,
                    };
                    self.sim.input(Input::Media(event));
                }
            }
            Step::CallerBye(index) => {
                let log = &mut self.logs[index];
                // A caller the hotline already hung up on has nobody to say goodbye to.
                if log.hotline_bye_at.is_some()
                    || log.caller_bye_at.is_some()
                    || log.recorded_at.is_some()
                {
                    return;
                }
                let Some(tag) = log.to_tag.clone() else {
                    return;
                };
                log.caller_bye_at = Some(self.sim.now);
                let text =
                    caller_request("BYE", self.callers[index].id, &caller_number(index), &tag);
                self.input(udp(CALLERS), &text);
            }
            Step::AgentAnswers(leg) => {
                let AgentLeg {
                    caller,
                    ref invite,
                    peer,
                    pickup,
                    cancelled,
                } = self.legs[leg];
                let invite = invite.clone();
                let invite = &invite;
                let Pickup::Answer { talk, ends, .. } = pickup else {
                    return;
                };
                if cancelled {
                    return;
                }
                let contact = format!(
                    "Contact: <{}>\r\n",
                    header(invite, "To").unwrap().trim_matches(['<', '>'])
                );
                let ok = reply(
                    invite,
                    "200 OK",
                    &format!("agent-{leg}"),
                    &contact,
                    AGENT_ANSWER,
                );
                self.logs[caller].answered_at = Some(self.sim.now);
                self.input(peer, &ok);
                let hang_up = match ends {
                    Side::Caller => Step::CallerBye(caller),
                    Side::Agent => Step::AgentBye(leg),
                };
                self.schedule(self.sim.now + talk, hang_up);
            }
            Step::AgentBye(leg) => {
                let AgentLeg {
                    ref invite, peer, ..
                } = self.legs[leg];
                let invite = invite.clone();
                let invite = &invite;
                let bye = format!(
                    "BYE sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {};branch=z9hG4bK-agent-bye-{leg}\r\n\
                     Max-Forwards: 70\r\n\
                     From: {};tag=agent-{leg}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\
                     Content-Length: 0\r\n\r\n",
                    peer.addr,
                    header(invite, "To").unwrap(),
                    header(invite, "From").unwrap(),
                    header(invite, "Call-ID").unwrap(),
                );
                self.input(peer, &bye);
            }
        }
    }

    /// Everything the switchboard produced, including what our answers to it produce.
    fn drain(&mut self) {
        while let Some((_, output)) = self.sim.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    let to = transmit.to;
                    let text = String::from_utf8(transmit.bytes.to_vec()).unwrap();
                    let at = self.sim.elapsed();
                    self.transcript += &format!("{at:?} {to}\n{text}\n");
                    if to == udp(CALLERS) {
                        self.caller_receives(&text);
                    } else {
                        self.agent_receives(to, &text);
                    }
                }
                Output::Media(command) => self.media(command),
                Output::Resolve { host, .. } => {
                    panic!("no trunk here, yet asked to resolve {host}")
                }
                Output::TrunkCallEnded { request, .. } => {
                    panic!("no call placed, yet {request} ended")
                }
                Output::Callback(row) => panic!("no callback here, yet {row:?}"),
                Output::ClaimCallback { id, .. } => panic!("no callback here, yet {id} claimed"),
                Output::AgentState(_) => {}
                Output::Record(Record::Started(start)) => self.starts.push(start),
                Output::Record(Record::Ended { record, events, .. }) => {
                    if let Some(&index) = self.by_call_id.get(&record.call_id) {
                        self.logs[index].recorded_at = Some(self.sim.now);
                    }
                    self.records.push((*record, events));
                }
            }
        }
    }

    fn caller_receives(&mut self, text: &str) {
        let call_id = header(text, "Call-ID").unwrap_or_default();
        let Some(&index) = self.by_call_id.get(call_id) else {
            panic!("message for an unknown caller: {text}");
        };
        if text.starts_with("SIP/2.0 200") && header(text, "CSeq") == Some("1 INVITE") {
            let tag = to_tag(text).unwrap();
            self.logs[index].to_tag = Some(tag.clone());
            let ack = caller_request("ACK", call_id, &caller_number(index), &tag);
            self.input(udp(CALLERS), &ack);
        } else if text.starts_with("BYE ") {
            self.logs[index].hotline_bye_at = Some(self.sim.now);
            let ok = reply(text, "200 OK", "caller", "", "");
            self.input(udp(CALLERS), &ok);
        }
    }

    fn agent_receives(&mut self, peer: Peer, text: &str) {
        let call_id = header(text, "Call-ID").unwrap_or_default().to_owned();
        if text.starts_with("INVITE ") {
            let number = header(text, "X-Hotline-Caller").unwrap_or_default();
            let Some(&caller) = self.by_number.get(number) else {
                panic!("agent rung for an unknown caller: {text}");
            };
            let target = header(text, "To").unwrap().trim_matches(['<', '>']);
            let log = &mut self.logs[caller];
            log.rung.push(target.to_owned());
            // A ring the script did not plan for just rings; the rung list shows it.
            let pickup = match log.plan.pop_front() {
                Some((user, pickup)) if agent_uri(user) == target => pickup,
                _ => Pickup::Ring,
            };
            let leg = self.legs.len();
            self.legs.push(AgentLeg {
                caller,
                invite: text.to_owned(),
                peer,
                pickup,
                cancelled: false,
            });
            self.leg_by_call_id.insert(call_id, leg);
            let tag = format!("agent-{leg}");
            let response = match pickup {
                Pickup::Busy => reply(text, "486 Busy Here", &tag, "", ""),
                Pickup::Ring | Pickup::Answer { .. } => reply(text, "180 Ringing", &tag, "", ""),
            };
            self.input(peer, &response);
            if let Pickup::Answer { wait, .. } = pickup {
                let chosen = self.logs[caller].chosen_at.unwrap_or(self.sim.now);
                self.schedule((chosen + wait).max(self.sim.now), Step::AgentAnswers(leg));
            }
        } else if text.starts_with("CANCEL ") {
            let leg = self.leg_by_call_id[&call_id];
            self.legs[leg].cancelled = true;
            let tag = format!("agent-{leg}");
            let ok = reply(text, "200 OK", &tag, "", "");
            self.input(peer, &ok);
            let terminated = reply(
                &self.legs[leg].invite,
                "487 Request Terminated",
                &tag,
                "",
                "",
            );
            self.input(peer, &terminated);
        } else if text.starts_with("BYE ") {
            let ok = reply(text, "200 OK", "agent", "", "");
            self.input(peer, &ok);
        }
    }

    /// What the simulated media driver is told: which leg is whose, and what each caller hears
    /// (the simulator ends the prompts after their length).
    fn media(&mut self, command: MediaCommand) {
        match command {
            MediaCommand::Start { leg: call, .. } => {
                if let Some(index) = self.arriving.filter(|_| !self.by_ref.contains_key(&call)) {
                    self.by_ref.insert(call, index);
                    self.logs[index].call = Some(call);
                }
            }
            MediaCommand::Play {
                leg: call, prompts, ..
            } => {
                if let Some(&index) = self.by_ref.get(&call) {
                    let names: Vec<String> = prompts.iter().map(|p| p.name.clone()).collect();
                    self.played(index, names);
                }
            }
            _ => {}
        }
    }

    /// One SIP message from a caller or an agent.
    fn input(&mut self, from: Peer, text: &str) {
        let bytes = text.as_bytes();
        self.sim.input(Input::Sip { from, bytes });
    }

    fn played(&mut self, index: usize, names: Vec<String>) {
        let now = self.sim.now;
        for name in &names {
            if self.logs[index].first_play.contains_key(name) {
                continue;
            }
            self.logs[index].first_play.insert(name.clone(), now);
            if name == "queue_hold" {
                self.logs[index].queued_at = Some(now);
            }
            if name == CHOICE_PROMPT {
                self.logs[index].chosen_at = Some(now);
                if let HangUp::AfterChoice(after) = self.callers[index].hang_up {
                    self.schedule(now + after, Step::CallerBye(index));
                }
            }
        }
        self.logs[index].plays.push((now, names));
    }

    fn wall(&self, at: Instant) -> DateTime<Utc> {
        start_wall() + chrono::Duration::from_std(at - self.sim.t0).unwrap()
    }
}

/// The bundled prompts, the fixture routing and the script, run to the end.
struct Run {
    sim: Sim,
    prompts: Arc<PromptLibrary>,
}

fn prompt_ms(prompts: &PromptLibrary, lang: &str, name: &str) -> i64 {
    let prompt = prompts
        .get(lang, name)
        .unwrap_or_else(|| panic!("bundled prompt {lang}/{name} missing"));
    i64::try_from(prompt.duration().as_millis()).unwrap()
}

/// The queue-timeout caller hears "connecting", waits the 30 s max_wait in the queue, then
/// hears "call later" and "goodbye" before the hotline hangs up; the wait runs to that end.
fn queue_timeout_wait_ms(prompts: &PromptLibrary) -> i64 {
    let prompts_ms: i64 = ["transfer_connecting", "call_later", "goodbye"]
        .iter()
        .map(|name| prompt_ms(prompts, "en", name))
        .sum();
    30_000 + prompts_ms
}

/// The script's timing leans on a few prompt lengths; a new recording that breaks one should
/// say so rather than shift an outcome.
fn check_prompt_lengths(prompts: &PromptLibrary) {
    for lang in ["lt", "en"] {
        let connecting = prompt_ms(prompts, lang, CHOICE_PROMPT);
        assert!(
            (1_000..3_000).contains(&connecting),
            "{lang}/{CHOICE_PROMPT} lasts {connecting} ms: c17 hangs up 1 s after the choice \
             (before the queue), c04 3 s after (in the queue)"
        );
    }
    let closed = prompt_ms(prompts, "en", "closed_prefix");
    assert!(
        closed > 2_000,
        "c08 hangs up 2 s into en/closed_prefix ({closed} ms)"
    );
    let queue_timeout = queue_timeout_wait_ms(prompts);
    assert!(
        queue_timeout < 40_000,
        "c09's wait ({queue_timeout} ms) must stay under c10's 40 s, the longest wait"
    );
}

fn simulate() -> Run {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (library, errors) = PromptLibrary::load(&root.join("prompts"));
    assert!(errors.is_empty(), "bundled prompts: {errors:?}");
    check_prompt_lengths(&library);
    let prompts = Arc::new(library);
    let callers = script(queue_timeout_wait_ms(&prompts));
    let routing = root.join("tests/fixtures/routing/stats.toml");
    let mut sim = Sim::new(prompts.clone(), &routing, callers);
    sim.run(secs(900));
    Run { sim, prompts }
}

// ---- the records -------------------------------------------------------------------------------

/// What a record says about a call, in the terms of the script.
#[derive(Debug, PartialEq)]
struct Summary {
    outcome: Outcome,
    language: Option<String>,
    enterprise: Option<String>,
    menu_path: String,
    wait_ms: Option<i64>,
    talk_ms: Option<i64>,
    agent: Option<String>,
}

fn summary_of(record: &CallRecord) -> Summary {
    let ms = |seconds: f64| (seconds * 1000.0).round() as i64;
    Summary {
        outcome: record.outcome,
        language: record.language.clone(),
        enterprise: record.enterprise.clone(),
        menu_path: record.menu_path.clone(),
        wait_ms: record.wait_seconds().map(ms),
        talk_ms: record.talk_seconds().map(ms),
        agent: record.agent.clone(),
    }
}

fn summary_expected(expected: &Expected) -> Summary {
    Summary {
        outcome: expected.outcome,
        language: expected.language.map(str::to_owned),
        enterprise: expected.enterprise.map(str::to_owned),
        menu_path: expected.menu_path.to_owned(),
        wait_ms: expected.wait_ms,
        talk_ms: expected.talk_ms,
        agent: expected.agent.map(str::to_owned),
    }
}

/// Every caller has one start and one record, each with what the script made happen.
fn check_records(run: &Run) {
    let sim = &run.sim;
    let ids: Vec<&str> = sim.callers.iter().map(|caller| caller.id).collect();
    let mut started: Vec<&str> = sim.starts.iter().map(|s| s.call_id.as_str()).collect();
    let mut recorded: Vec<&str> = sim.records.iter().map(|r| r.0.call_id.as_str()).collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort_unstable();
    started.sort_unstable();
    recorded.sort_unstable();
    assert_eq!(started, sorted_ids, "one CallStarted per call");
    assert_eq!(recorded, sorted_ids, "one CallRecorded per call");

    let record_of = |id: &str| &sim.records.iter().find(|(r, _)| r.call_id == id).unwrap().0;
    let got: Vec<(&str, Summary)> = ids
        .iter()
        .map(|id| (*id, summary_of(record_of(id))))
        .collect();
    let want: Vec<(&str, Summary)> = sim
        .callers
        .iter()
        .map(|caller| (caller.id, summary_expected(&caller.expected)))
        .collect();
    assert_eq!(
        got, want,
        "outcome, language, enterprise, path, wait, talk, agent per call"
    );

    let rung: Vec<(&str, Vec<String>)> = sim
        .callers
        .iter()
        .zip(&sim.logs)
        .map(|(caller, log)| (caller.id, log.rung.clone()))
        .collect();
    let planned: Vec<(&str, Vec<String>)> = sim
        .callers
        .iter()
        .map(|caller| {
            let agents = caller
                .rings
                .iter()
                .map(|(user, _)| agent_uri(user).to_owned());
            (caller.id, agents.collect())
        })
        .collect();
    assert_eq!(rung, planned, "the agents rung for each caller, in order");

    // The record's times are the simulated instants, read on the wall clock set at t0.
    for (caller, log) in sim.callers.iter().zip(&sim.logs) {
        let record = record_of(caller.id);
        let id = caller.id;
        assert_eq!(
            record.arrived,
            sim.wall(sim.sim.t0 + caller.arrive),
            "{id}: arrived"
        );
        // A call ends with its BYE (ours answered at once); a refused one when it arrived.
        let ended = match (log.caller_bye_at, log.hotline_bye_at) {
            (Some(at), None) | (None, Some(at)) => Some(sim.wall(at)),
            (None, None) if caller.g729 => Some(sim.wall(sim.sim.t0 + caller.arrive)),
            _ => None,
        };
        assert_eq!(Some(record.ended), ended, "{id}: ended");
        assert_eq!(
            log.recorded_at.map(|at| sim.wall(at)),
            ended,
            "{id}: recorded"
        );
        assert_eq!(
            record.agent_answered,
            log.answered_at.map(|at| sim.wall(at)),
            "{id}: agent_answered is when the agent's 200 OK came"
        );
        // A group chosen by key is chosen at the key; the fallback when the menu gives up.
        let chosen = match caller.keys.last() {
            Some((after_s, _)) if caller.expected.enterprise.is_some() => {
                Some(sim.wall(sim.sim.t0 + caller.arrive + secs(*after_s)))
            }
            _ => log.chosen_at.map(|at| sim.wall(at)),
        };
        assert_eq!(record.group_chosen, chosen, "{id}: group_chosen");
        if chosen.is_some() && caller.expected.outcome != Outcome::Closed {
            assert_eq!(
                log.chosen_at.map(|at| sim.wall(at)),
                chosen,
                "{id}: connecting"
            );
        }
        let queued = log.queued_at.map(|at| sim.wall(at));
        assert_eq!(record.queue_entered, queued, "{id}: queue_entered");
        let ivr_answered = (!caller.g729).then(|| sim.wall(sim.sim.t0 + caller.arrive));
        assert_eq!(record.ivr_answered, ivr_answered, "{id}: ivr_answered");
    }

    // c08 hears when registry opens: today at 13:00 (the wall clock reached the flow).
    let closed = &sim.logs[sim.by_call_id["c08"]];
    let message = closed
        .plays
        .iter()
        .find(|(_, names)| names.first().map(String::as_str) == Some("closed_prefix"))
        .map(|(at, names)| (sim.wall(*at), names.join(" ")));
    let key_pressed = sim.wall(sim.sim.t0 + secs(134));
    assert_eq!(
        message,
        Some((
            key_pressed,
            "closed_prefix today time_at hour_13 minute_00 goodbye".to_owned()
        ))
    );

    // c11's overflow to the operator is in its audit trail, 10 s (heating's max_wait) after
    // it entered the queue.
    let c11 = &sim.logs[sim.by_call_id["c11"]];
    let events = &sim
        .records
        .iter()
        .find(|(r, _)| r.call_id == "c11")
        .unwrap()
        .1;
    let overflow: Vec<(DateTime<Utc>, &str)> = events
        .iter()
        .filter(|event| event.kind == "overflowed")
        .map(|event| (event.at, event.detail.as_str()))
        .collect();
    assert_eq!(
        overflow,
        vec![(
            sim.wall(c11.queued_at.unwrap() + secs(10)),
            "to group operator"
        )]
    );

    // c09 waited out max_wait while waste-1 talked to c10, then the hotline hung up.
    let c09 = &sim.logs[sim.by_call_id["c09"]];
    assert!(
        c09.hotline_bye_at.is_some() && c09.caller_bye_at.is_none(),
        "c09: the hotline ends a queue timeout"
    );
    assert_eq!(
        c09.first_play.get("call_later").copied(),
        c09.queued_at.map(|at| at + secs(30))
    );

    // Nothing is left behind: calls, agent legs, ports, transactions.
    let stats = sim.sim.switchboard.stats();
    assert_eq!(
        (
            stats.calls,
            stats.agent_legs,
            stats.rtp_ports_in_use,
            stats.transactions
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn the_same_seed_replays_the_day_byte_for_byte() {
    let first = simulate().sim;
    let second = simulate().sim;
    assert!(first.transcript.contains("SIP/2.0 200 OK"));
    assert_eq!(first.transcript, second.transcript);
    assert_eq!(
        format!("{:?}", first.records),
        format!("{:?}", second.records)
    );
    assert_eq!(
        format!("{:?}", first.starts),
        format!("{:?}", second.starts)
    );
}

#[test]
fn scripted_calls_end_with_their_outcomes_and_exact_waits() {
    check_records(&simulate());
}

// ---- the statistics ------------------------------------------------------------------------------

/// One statistics row in comparable form: key, counts, ratios/seconds, non-zero outcomes.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    key: String,
    /// calls, offered, answered, answered_in_sl, abandoned, short_abandoned
    counts: [u64; 6],
    service_level: Option<f64>,
    asa_s: Option<f64>,
    avg_talk_s: Option<f64>,
    max_wait_s: Option<f64>,
    outcomes: Vec<(String, u64)>,
}

#[allow(clippy::too_many_arguments)]
fn row(
    key: &str,
    counts: [u64; 6],
    service_level: Option<f64>,
    asa_s: Option<f64>,
    avg_talk_s: Option<f64>,
    max_wait_s: Option<f64>,
    outcomes: &[(&str, u64)],
) -> Figures {
    Figures {
        key: key.to_owned(),
        counts,
        service_level,
        asa_s,
        avg_talk_s,
        max_wait_s,
        outcomes: outcomes
            .iter()
            .map(|(name, count)| ((*name).to_owned(), *count))
            .collect(),
    }
}

fn figures_of_row(stats: &StatsRow) -> Figures {
    Figures {
        key: stats
            .keys
            .first()
            .map_or("total".to_owned(), |(_, key)| key.clone()),
        counts: [
            stats.calls,
            stats.offered,
            stats.answered,
            stats.answered_in_sl,
            stats.abandoned,
            stats.short_abandoned,
        ],
        service_level: stats.service_level,
        asa_s: stats.asa_s,
        avg_talk_s: stats.avg_talk_s,
        max_wait_s: stats.max_wait_s,
        outcomes: stats
            .outcomes
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(outcome, count)| (outcome.as_str().to_owned(), *count))
            .collect(),
    }
}

fn figures_of_json(json: &Value, by: Option<&str>) -> Figures {
    let count = |name: &str| {
        json[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    let figure = |name: &str| match &json[name] {
        Value::Null => None,
        value => Some(value.as_f64().unwrap_or_else(|| panic!("{name} in {json}"))),
    };
    Figures {
        key: by.map_or("total".to_owned(), |by| {
            json[by].as_str().unwrap().to_owned()
        }),
        counts: [
            count("calls"),
            count("offered"),
            count("answered"),
            count("answered_in_sl"),
            count("abandoned"),
            count("short_abandoned"),
        ],
        service_level: figure("service_level"),
        asa_s: figure("asa_s"),
        avg_talk_s: figure("avg_talk_s"),
        max_wait_s: figure("max_wait_s"),
        outcomes: Outcome::ALL
            .iter()
            .map(|outcome| (outcome.as_str().to_owned(), count(outcome.as_str())))
            .filter(|(_, count)| *count > 0)
            .collect(),
    }
}

/// The figures hand-computed from the script (see `DEFINITIONS`: wait from group choice, SL =
/// answered within 20 s / (answered + abandoned of 5 s or more), ASA = mean wait of answered).
/// Waits: answered c01 8, c02 25, c10 40, c11 16, c13 5, c15 20 (in SL: 8 16 5 20); abandoned
/// c03 12, c16 5; short c04 3, c17 1; closed c08 0 (its message is no wait); no input c06 0.5; overflowed c12 18;
/// queue timeout c09 under 40. Talks: 60 30 90 45 20 10. Not offered: c05, c07, c14.
fn expected(by: Option<Dimension>, queue_timeout_wait_s: f64) -> Vec<Figures> {
    let third = 1.0 / 3.0;
    match by {
        None => vec![row(
            "total",
            [17, 14, 6, 4, 2, 2],
            Some(0.5),
            Some(19.0),
            Some(42.5),
            Some(40.0),
            &[
                ("connected", 6),
                ("abandoned_menu", 2),
                ("abandoned_queue", 3),
                ("queue_timeout", 1),
                ("overflowed", 1),
                ("closed", 1),
                ("no_input", 1),
                ("info_only", 1),
                ("rejected", 1),
            ],
        )],
        Some(Dimension::Enterprise) => vec![
            row(
                "(none)",
                [3, 0, 0, 0, 0, 0],
                None,
                None,
                None,
                None,
                &[("abandoned_menu", 1), ("info_only", 1), ("rejected", 1)],
            ),
            row(
                "heating",
                [3, 3, 2, 2, 0, 0],
                Some(1.0),
                Some(10.5),
                Some(32.5),
                Some(18.0),
                &[("connected", 2), ("overflowed", 1)],
            ),
            row(
                "operator",
                [1, 1, 0, 0, 0, 0],
                None,
                None,
                None,
                Some(0.5),
                &[("no_input", 1)],
            ),
            row(
                "registry",
                [1, 1, 0, 0, 0, 0],
                None,
                None,
                None,
                Some(0.0),
                &[("closed", 1)],
            ),
            row(
                "waste",
                [2, 2, 1, 0, 0, 0],
                Some(0.0),
                Some(40.0),
                Some(90.0),
                Some(40.0),
                &[("connected", 1), ("queue_timeout", 1)],
            ),
            row(
                "water",
                [7, 7, 3, 2, 2, 2],
                Some(0.4),
                Some(17.667),
                Some(33.333),
                Some(25.0),
                &[
                    ("connected", 3),
                    ("abandoned_menu", 1),
                    ("abandoned_queue", 3),
                ],
            ),
        ],
        Some(Dimension::Language) => vec![
            row(
                "(none)",
                [1, 0, 0, 0, 0, 0],
                None,
                None,
                None,
                None,
                &[("rejected", 1)],
            ),
            row(
                "en",
                [9, 8, 3, 1, 0, 2],
                Some(third),
                Some(23.333),
                Some(46.667),
                Some(40.0),
                &[
                    ("connected", 3),
                    ("abandoned_menu", 1),
                    ("abandoned_queue", 1),
                    ("queue_timeout", 1),
                    ("overflowed", 1),
                    ("closed", 1),
                    ("info_only", 1),
                ],
            ),
            row(
                "lt",
                [7, 6, 3, 3, 2, 0],
                Some(0.6),
                Some(14.667),
                Some(38.333),
                Some(20.0),
                &[
                    ("connected", 3),
                    ("abandoned_menu", 1),
                    ("abandoned_queue", 2),
                    ("no_input", 1),
                ],
            ),
        ],
        Some(Dimension::Outcome) => vec![
            row(
                "abandoned_menu",
                [2, 1, 0, 0, 0, 1],
                None,
                None,
                None,
                Some(1.0),
                &[("abandoned_menu", 2)],
            ),
            row(
                "abandoned_queue",
                [3, 3, 0, 0, 2, 1],
                Some(0.0),
                None,
                None,
                Some(12.0),
                &[("abandoned_queue", 3)],
            ),
            row(
                "closed",
                [1, 1, 0, 0, 0, 0],
                None,
                None,
                None,
                Some(0.0),
                &[("closed", 1)],
            ),
            row(
                "connected",
                [6, 6, 6, 4, 0, 0],
                Some(4.0 / 6.0),
                Some(19.0),
                Some(42.5),
                Some(40.0),
                &[("connected", 6)],
            ),
            row(
                "info_only",
                [1, 0, 0, 0, 0, 0],
                None,
                None,
                None,
                None,
                &[("info_only", 1)],
            ),
            row(
                "no_input",
                [1, 1, 0, 0, 0, 0],
                None,
                None,
                None,
                Some(0.5),
                &[("no_input", 1)],
            ),
            row(
                "overflowed",
                [1, 1, 0, 0, 0, 0],
                None,
                None,
                None,
                Some(18.0),
                &[("overflowed", 1)],
            ),
            row(
                "queue_timeout",
                [1, 1, 0, 0, 0, 0],
                None,
                None,
                None,
                Some(queue_timeout_wait_s),
                &[("queue_timeout", 1)],
            ),
            row(
                "rejected",
                [1, 0, 0, 0, 0, 0],
                None,
                None,
                None,
                None,
                &[("rejected", 1)],
            ),
        ],
        Some(other) => panic!("no expectation for --by {other}"),
    }
}

/// Local midnight of 2 and 3 December in Vilnius (UTC+2).
fn day_query(by: Option<Dimension>) -> StatsQuery {
    StatsQuery::new(
        Utc.with_ymd_and_hms(2026, 12, 1, 22, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 12, 2, 22, 0, 0).unwrap(),
        by.into_iter().collect(),
    )
}

async fn cli_stats(database_url: &str, by: Option<Dimension>) -> String {
    hotline::cli::stats::run(hotline::cli::stats::Options {
        database_url: database_url.to_owned(),
        from: Some(DAY.into()),
        to: Some(NEXT_DAY.into()),
        by: by.iter().map(|by| by.as_str().to_owned()).collect(),
        format: "json".into(),
        thresholds: Thresholds::default(),
    })
    .await
    .unwrap()
}

/// A minimal HTTP/1.0 GET with the bearer token (so the body comes whole, never chunked);
/// returns status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Stores the run's records in `database_url`, then checks the store, the CLI and the HTTP API
/// against the hand-computed figures.
async fn check_backend(run: &Run, database_url: &str, spool: &Path) {
    let store = Arc::new(CdrStore::connect(database_url, spool).await.unwrap());
    for start in &run.sim.starts {
        let delivery = store.call_started(start.clone()).await.unwrap();
        assert_eq!(delivery, Delivery::Stored);
    }
    for (record, events) in &run.sim.records {
        let delivery = store
            .call_ended(record.clone(), events.clone())
            .await
            .unwrap();
        assert_eq!(delivery, Delivery::Stored);
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_live_tx, live_rx) = tokio::sync::watch::channel(LiveSnapshot::default());
    let (reload_tx, _reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(1);
    let (calls_tx, _calls_rx) = tokio::sync::mpsc::channel(1);
    let (commands_tx, _commands_rx) = tokio::sync::mpsc::channel(1);
    let state = HttpState {
        token: Some(TOKEN.into()),
        store: store.clone(),
        thresholds: Thresholds::default(),
        live: live_rx,
        reload: reload_tx,
        calls: calls_tx,
        commands: commands_tx,
    };
    let server = tokio::spawn(async move { serve(listener, state).await });

    let queue_timeout_wait_s = queue_timeout_wait_ms(&run.prompts) as f64 / 1000.0;
    for by in [
        None,
        Some(Dimension::Enterprise),
        Some(Dimension::Language),
        Some(Dimension::Outcome),
    ] {
        let want = expected(by, queue_timeout_wait_s);
        let label = by.map_or("total", Dimension::as_str);
        let rows = store.stats(&day_query(by)).await.unwrap();
        let got: Vec<Figures> = rows.iter().map(figures_of_row).collect();
        assert_eq!(got, want, "CdrStore::stats by {label} on {database_url}");

        let cli = cli_stats(database_url, by).await;
        let json: Value = serde_json::from_str(&cli).unwrap();
        let by_name = by.map(Dimension::as_str);
        let got: Vec<Figures> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|row| figures_of_json(row, by_name))
            .collect();
        assert_eq!(got, want, "hotline stats by {label} on {database_url}");

        let by_param = by_name.map_or(String::new(), |by| format!("&by={by}"));
        let path = format!("/api/stats?from={DAY}&to={NEXT_DAY}{by_param}&format=json");
        let (status, body) = get(addr, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body, cli, "{path} must equal `hotline stats` byte for byte");
    }
    server.abort();
}

#[tokio::test]
async fn statistics_are_exact_on_sqlite() {
    let run = simulate();
    check_records(&run);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cdr.sqlite").display());
    check_backend(&run, &url, &dir.path().join("spool.jsonl")).await;
}

#[tokio::test]
async fn statistics_are_exact_on_postgres() {
    let run = simulate();
    check_records(&run);
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    check_backend(&run, &server.url(), &dir.path().join("spool.jsonl")).await;
}
