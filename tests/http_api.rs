//! The supervisors' HTTP API and dashboard end to end: a scripted day of calls in a temporary
//! SQLite store, the real `serve` on 127.0.0.1 with a token, a published live snapshot and a
//! fake service loop answering reloads. Statistics must equal `hotline stats` byte for byte,
//! `/metrics` must pass a strict text-format parser, and the dashboard is rendered by headless
//! Chromium into a screenshot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hotline::call::{RegistrationCounts, TrunkCallResult};
use hotline::cdr::{
    CallEvent, CallRecord, CallStart, CdrStore, Dimension, DtmfMode, Outcome, StatsQuery,
    Thresholds, TransferMode,
};
use hotline::http::live::{
    AgentLive, BanLive, CallOrder, CallbackLive, Command, LiveCall, LiveSnapshot, OutcomeCount,
    QueueLive, ReloadRequest, SecurityLive, TrunkLive,
};
use hotline::http::{check_bind, serve, HttpState};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const TOKEN: &str = "s3cret-token";
/// The seeded local day (Europe/Vilnius, UTC+2 in March).
const DAY: &str = "2026-03-02";
/// The next day: a few calls and queued callbacks (`callback_day`).
const CALLBACK_DAY: &str = "2026-03-03";

/// 09:00 in Vilnius on the seeded day.
fn nine_local() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap()
}

fn secs(seconds: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((seconds * 1000.0) as i64)
}

/// One scripted call: arrival, language, group, outcome, wait and talk in seconds.
struct Script {
    id: &'static str,
    arrived: DateTime<Utc>,
    language: Option<&'static str>,
    enterprise: Option<&'static str>,
    outcome: Outcome,
    wait_s: f64,
    talk_s: f64,
}

fn script() -> Vec<Script> {
    use Outcome::*;
    let at = |offset_s: i64| nine_local() + chrono::Duration::seconds(offset_s);
    let call = |id, arrived, language, enterprise, outcome, wait_s, talk_s| Script {
        id,
        arrived,
        language,
        enterprise,
        outcome,
        wait_s,
        talk_s,
    };
    vec![
        // 09:xx local
        call(
            "a01",
            at(0),
            Some("lt"),
            Some("heating"),
            Connected,
            10.0,
            120.0,
        ),
        call(
            "a02",
            at(60),
            Some("lt"),
            Some("heating"),
            Connected,
            25.0,
            60.0,
        ),
        call(
            "a03",
            at(120),
            Some("en"),
            Some("heating"),
            AbandonedQueue,
            40.0,
            0.0,
        ),
        call(
            "a04",
            at(180),
            Some("lt"),
            Some("heating"),
            AbandonedQueue,
            3.0,
            0.0,
        ),
        call(
            "a05",
            at(240),
            Some("ru"),
            Some("water"),
            Transferred,
            15.0,
            0.0,
        ),
        call(
            "a06",
            at(300),
            Some("lt"),
            Some("water"),
            QueueTimeout,
            300.0,
            0.0,
        ),
        // 10:xx local
        call(
            "a07",
            at(3600),
            Some("en"),
            Some("water"),
            Connected,
            20.0,
            30.5,
        ),
        call("a08", at(3660), Some("lt"), None, InfoOnly, 0.0, 0.0),
        call("a09", at(3720), Some("pl"), None, NoInput, 0.0, 0.0),
        call("a10", at(3780), None, None, Rejected, 0.0, 0.0),
        // 11:xx local
        call(
            "a11",
            at(7200),
            Some("lt"),
            Some("transport"),
            Connected,
            5.0,
            90.0,
        ),
        call(
            "a12",
            at(7260),
            Some("pl"),
            Some("transport"),
            AbandonedQueue,
            12.0,
            0.0,
        ),
        // 00:10 local on the day, still 1 March in UTC: inside the local day.
        call(
            "b01",
            Utc.with_ymd_and_hms(2026, 3, 1, 22, 10, 0).unwrap(),
            Some("lt"),
            Some("heating"),
            Connected,
            5.0,
            10.0,
        ),
        // 00:30 local the next day (still 2 March in UTC) and the day before: outside.
        call(
            "x01",
            Utc.with_ymd_and_hms(2026, 3, 2, 22, 30, 0).unwrap(),
            Some("lt"),
            Some("water"),
            Connected,
            1.0,
            10.0,
        ),
        call(
            "x02",
            at(-86_400),
            Some("lt"),
            Some("heating"),
            Connected,
            1.0,
            10.0,
        ),
    ]
}

fn record_of(script: &Script) -> (CallRecord, Vec<CallEvent>) {
    let answered = matches!(script.outcome, Outcome::Connected | Outcome::Transferred);
    let group_chosen = script.enterprise.map(|_| script.arrived + secs(30.0));
    let agent_answered = group_chosen
        .filter(|_| answered)
        .map(|chosen| chosen + secs(script.wait_s));
    let ended = match (group_chosen, agent_answered) {
        (_, Some(answer)) => answer + secs(script.talk_s),
        (Some(chosen), None) => chosen + secs(script.wait_s),
        (None, None) => script.arrived + secs(60.0),
    };
    let record = CallRecord {
        call_id: script.id.into(),
        caller: Some(format!("+3706000{}", &script.id[1..])),
        trunk: "127.0.0.1:5080".into(),
        arrived: script.arrived,
        ivr_answered: Some(script.arrived + secs(1.0)),
        language_chosen: script.language.map(|_| script.arrived + secs(10.0)),
        group_chosen,
        queue_entered: group_chosen,
        agent_answered,
        ended,
        language: script.language.map(Into::into),
        menu_path: match script.enterprise {
            Some(group) => format!("language > main > group {group}"),
            None => "language > main".into(),
        },
        dtmf_mode: DtmfMode::Rfc4733,
        enterprise: script.enterprise.map(Into::into),
        agent: agent_answered.map(|_| "agent-7".into()),
        transfer_mode: match script.outcome {
            Outcome::Connected => Some(TransferMode::Bridge),
            Outcome::Transferred => Some(TransferMode::Refer),
            _ => None,
        },
        outcome: script.outcome,
        rtp_packets: 100,
        rtp_lost: 0,
        rtp_jitter_ms: 0.5,
        callback_of: None,
    };
    let event = |seq, at, kind: &str, detail: &str| CallEvent {
        call_id: script.id.into(),
        seq,
        at,
        kind: kind.into(),
        detail: detail.into(),
    };
    let events = vec![
        event(0, script.arrived, "arrive", ""),
        event(1, ended, "end", script.outcome.as_str()),
    ];
    (record, events)
}

/// 2026-03-03 from 09:00 local: five calls to heating and water, three of them asking for a
/// callback, and the dials of two of those residents.
///
/// | call | group   | path                                | outcome            | wait |
/// |------|---------|-------------------------------------|--------------------|------|
/// | c01  | heating | offer heard, declined               | connected          | 70 s |
/// | c02  | heating | callback requested                  | callback_requested | 90 s |
/// | c03  | heating | callback requested (English)        | callback_requested | 60 s |
/// | c04  | water   | no offer                            | connected          | 10 s |
/// | c05  | heating | callback requested, never dialled   | callback_requested | 120 s|
///
/// c02 is dialled 2 min after the request (busy) and 8 min after it (bridged 30 s later: a net
/// wait of 510 s); c03 twice, not reached either time. The day also holds `x01` (water, 00:30,
/// answered after 1 s, talk 10 s) of the main script.
fn callback_day() -> Vec<CallRecord> {
    let nine = Utc.with_ymd_and_hms(2026, 3, 3, 7, 0, 0).unwrap();
    let call = |id: &str, minute: i64, group: &str, steps: &str, outcome: Outcome, wait_s| {
        let arrived = nine + chrono::Duration::minutes(minute);
        let chosen = arrived + secs(30.0);
        let answered = (outcome == Outcome::Connected).then(|| chosen + secs(wait_s));
        CallRecord {
            call_id: id.into(),
            caller: Some("+37060000001".into()),
            trunk: "127.0.0.1:5080".into(),
            arrived,
            ivr_answered: Some(arrived + secs(1.0)),
            language_chosen: Some(arrived + secs(10.0)),
            group_chosen: Some(chosen),
            queue_entered: Some(chosen),
            agent_answered: answered,
            ended: answered.map_or(chosen + secs(wait_s), |at| at + secs(60.0)),
            language: Some(if id == "c03" { "en" } else { "lt" }.into()),
            menu_path: format!("language > main > group {group}{steps}"),
            dtmf_mode: DtmfMode::Rfc4733,
            enterprise: Some(group.into()),
            agent: answered.map(|_| "agent-7".into()),
            transfer_mode: answered.map(|_| TransferMode::Bridge),
            outcome,
            rtp_packets: 100,
            rtp_lost: 0,
            rtp_jitter_ms: 0.5,
            callback_of: None,
        }
    };
    let requested = " > callback offered > callback requested";
    let c01 = call(
        "c01",
        0,
        "heating",
        " > callback offered",
        Outcome::Connected,
        70.0,
    );
    let c02 = call(
        "c02",
        1,
        "heating",
        requested,
        Outcome::CallbackRequested,
        90.0,
    );
    let c03 = call(
        "c03",
        2,
        "heating",
        requested,
        Outcome::CallbackRequested,
        60.0,
    );
    let c04 = call("c04", 3, "water", "", Outcome::Connected, 10.0);
    let c05 = call(
        "c05",
        4,
        "heating",
        requested,
        Outcome::CallbackRequested,
        120.0,
    );
    let attempt = |id: &str, original: &CallRecord, after_s: f64, bridged_s: Option<f64>| {
        let request = original.ended;
        let arrived = request + secs(after_s);
        let answered = bridged_s.map(|s| arrived + secs(s));
        CallRecord {
            call_id: id.into(),
            caller: Some("+37060000001".into()),
            arrived,
            ivr_answered: answered,
            language_chosen: None,
            group_chosen: Some(request),
            queue_entered: Some(request),
            agent_answered: answered,
            ended: answered.map_or(arrived + secs(30.0), |at| at + secs(120.0)),
            menu_path: format!("language > main > group heating > callback attempt {id}"),
            dtmf_mode: DtmfMode::None,
            agent: Some("agent-7".into()),
            transfer_mode: answered.map(|_| TransferMode::Bridge),
            outcome: if answered.is_some() {
                Outcome::Connected
            } else {
                Outcome::NotReached
            },
            callback_of: Some(original.call_id.clone()),
            ..original.clone()
        }
    };
    vec![
        attempt("c02-1", &c02, 120.0, None),
        attempt("c02-2", &c02, 480.0, Some(30.0)),
        attempt("c03-1", &c03, 120.0, None),
        attempt("c03-2", &c03, 420.0, None),
        c01,
        c02,
        c03,
        c04,
        c05,
    ]
}

fn database_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("cdr.sqlite").display())
}

async fn seeded_store(dir: &Path) -> Arc<CdrStore> {
    let store = CdrStore::connect(&database_url(dir), &dir.join("spool.jsonl"))
        .await
        .unwrap();
    for call in script() {
        store
            .call_started(CallStart {
                call_id: call.id.into(),
                caller: None,
                trunk: "127.0.0.1:5080".into(),
                arrived: call.arrived,
            })
            .await
            .unwrap();
        let (record, events) = record_of(&call);
        store.call_ended(record, events).await.unwrap();
    }
    for record in callback_day() {
        store
            .call_started(CallStart {
                call_id: record.call_id.clone(),
                caller: None,
                trunk: record.trunk.clone(),
                arrived: record.arrived,
            })
            .await
            .unwrap();
        store.call_ended(record, Vec::new()).await.unwrap();
    }
    Arc::new(store)
}

fn snapshot() -> LiveSnapshot {
    let agent = |name: &str, state: &str| AgentLive {
        agent: name.into(),
        state: state.into(),
        since_s: 30,
        calls_answered: 4,
        ..AgentLive::default()
    };
    let live_call = |id: &str, state: &str, group: Option<&str>, since_s| LiveCall {
        call_id: id.into(),
        state: state.into(),
        language: Some("lt".into()),
        group: group.map(Into::into),
        since_s,
    };
    let outcome = |outcome: &str, group: &str, language: &str, calls| OutcomeCount {
        outcome: outcome.into(),
        group: group.into(),
        language: language.into(),
        calls,
    };
    LiveSnapshot {
        at: Some(Utc.with_ymd_and_hms(2026, 3, 2, 9, 15, 0).unwrap()),
        calls: vec![
            live_call("l1", "queued", Some("heating"), 95),
            live_call("l2", "queued", Some("heating"), 40),
            live_call("l3", "queued", Some("heating"), 7),
            live_call("l4", "queued", Some("water"), 12),
            live_call("l5", "connected", Some("water"), 300),
            live_call("l6", "menu", None, 4),
        ],
        queues: vec![
            QueueLive {
                group: "heating".into(),
                waiting: 3,
                longest_wait_s: 95,
                names: [
                    ("lt".to_owned(), "Vilniaus šilumos tinklai".to_owned()),
                    ("en".to_owned(), "Vilnius Heating Networks".to_owned()),
                ]
                .into_iter()
                .collect(),
                agents_available: 2,
            },
            QueueLive {
                group: "water".into(),
                waiting: 1,
                longest_wait_s: 12,
                names: [
                    ("lt".to_owned(), "Vilniaus vandenys".to_owned()),
                    ("en".to_owned(), "Vilnius Water".to_owned()),
                ]
                .into_iter()
                .collect(),
                agents_available: 0,
            },
            QueueLive {
                group: "<img src=x onerror=alert(1)>".into(),
                waiting: 0,
                longest_wait_s: 0,
                ..QueueLive::default()
            },
        ],
        agents: vec![
            agent("ona", "idle"),
            agent("petras", "idle"),
            agent("jonas", "on_call"),
            agent("rasa", "wrap_up"),
        ],
        outcomes: vec![
            outcome("connected", "heating", "lt", 7),
            outcome("abandoned_queue", "water", "en", 2),
            outcome("connected", "he\"at\\ing", "lt", 1),
        ],
        dtmf_modes: [("rfc4733".to_owned(), 9), ("inband".to_owned(), 1)]
            .into_iter()
            .collect(),
        callbacks: vec![
            CallbackLive {
                group: "heating".into(),
                language: "lt".into(),
                number: "+37060000005".into(),
                state: "queued".into(),
                attempts: 0,
                waiting_s: 200,
                position: Some(1),
                next_attempt_s: None,
            },
            CallbackLive {
                group: "heating".into(),
                language: "en".into(),
                number: "+37060000003".into(),
                state: "waiting".into(),
                attempts: 2,
                waiting_s: 1500,
                position: None,
                next_attempt_s: Some(95),
            },
        ],
        trunks: vec![TrunkLive {
            trunk: "carrier".into(),
            state: "refused".into(),
            up: false,
            server: "primary".into(),
            last_error: Some("401 credentials refused".into()),
            next_retry_s: Some(754),
            calls_active: 0,
            calls_total: 3,
            registrations: RegistrationCounts {
                ok: 1,
                challenged: 2,
                refused: 4,
                failed: 0,
            },
        }],
        security: SecurityLive {
            events: [("auth_failed".to_owned(), 12), ("flood".to_owned(), 1)]
                .into_iter()
                .collect(),
            bans: vec![BanLive {
                address: "127.0.0.3".into(),
                reason: "flood".into(),
                seconds_left: 281,
            }],
        },
    }
}

/// A running server with its live channel and the reloads its fake service loop answered.
struct Harness {
    addr: SocketAddr,
    store: Arc<CdrStore>,
    dir: tempfile::TempDir,
    live: watch::Sender<LiveSnapshot>,
}

/// Starts `serve`; the fake service loop answers the first reload with a hash and every later
/// one with problems.
async fn start() -> Harness {
    start_with(Thresholds::default()).await
}

/// `start` with the statistics' thresholds the supervisors set.
async fn start_with(thresholds: Thresholds) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path()).await;
    let (live_tx, live_rx) = watch::channel(snapshot());
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    tokio::spawn(async move {
        let mut answered = 0;
        while let Some(request) = reload_rx.recv().await {
            let answer = if answered == 0 {
                Ok("9f2c1e".to_owned())
            } else {
                Err(vec![
                    "routing.toml:12: groups.water.agents: unknown agent \"zz\"".to_owned(),
                    "routing.toml:30: menus.main.2: unknown group \"heat\"".to_owned(),
                ])
            };
            answered += 1;
            let _ = request.reply.send(answer);
        }
    });
    // The service loop's side of placed calls: the trunk "carrier" answers, others do not exist.
    let (calls_tx, mut calls_rx) = mpsc::channel::<CallOrder>(4);
    tokio::spawn(async move {
        while let Some(order) = calls_rx.recv().await {
            let result = if order.trunk == "carrier" && order.prompt == "welcome" {
                TrunkCallResult::Answered {
                    answered_after: Duration::from_millis(1200),
                    talked: Duration::from_millis(3100),
                }
            } else {
                TrunkCallResult::Failed {
                    status: 404,
                    reason: format!("no trunk named {}", order.trunk),
                }
            };
            let _ = order.reply.send(result);
        }
    });
    // Its side of supervisors' commands: 127.0.0.3 has two bans, nobody else any; the agent
    // "ona" exists.
    let (commands_tx, mut commands_rx) = mpsc::channel::<Command>(4);
    tokio::spawn(async move {
        while let Some(command) = commands_rx.recv().await {
            match command {
                Command::LiftBan { ip, reply } => {
                    let _ = reply.send(if ip.to_string() == "127.0.0.3" { 2 } else { 0 });
                }
                Command::SetAgentState { agent, reply, .. } => {
                    let _ = reply.send(agent == "ona");
                }
            }
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = HttpState {
        token: Some(TOKEN.into()),
        store: store.clone(),
        thresholds,
        live: live_rx,
        reload: reload_tx,
        calls: calls_tx,
        commands: commands_tx,
    };
    tokio::spawn(async move { serve(listener, state).await });
    Harness {
        addr,
        store,
        dir,
        live: live_tx,
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client (one request per connection).
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, method, path, headers, "").await
}

async fn http_with_body(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    send(addr, "POST", path, headers, body).await
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    let (name, value) = bearer();
    http(addr, "GET", path, &[(name, &value)]).await
}

fn local_day_query(by: Vec<Dimension>) -> StatsQuery {
    StatsQuery::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 22, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 3, 2, 22, 0, 0).unwrap(),
        by,
    )
}

async fn cli_stats(dir: &Path, by: &[&str], format: &str) -> String {
    cli_stats_on(dir, DAY, by, format).await
}

async fn cli_stats_on(dir: &Path, day: &str, by: &[&str], format: &str) -> String {
    hotline::cli::stats::run(hotline::cli::stats::Options {
        database_url: database_url(dir),
        from: Some(day.into()),
        to: None,
        by: by.iter().map(|key| (*key).to_owned()).collect(),
        format: format.into(),
        thresholds: Thresholds::default(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn health_is_open_and_everything_else_needs_the_token() {
    let server = start().await;
    let health = http(server.addr, "GET", "/health", &[]).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    for (method, path) in [
        ("GET", "/api/stats"),
        ("GET", "/api/calls"),
        ("GET", "/api/calls/a01"),
        ("GET", "/api/live"),
        ("POST", "/api/reload"),
        ("POST", "/api/trunks/carrier/calls"),
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/dashboard.csv"),
        ("GET", "/wallboard"),
    ] {
        let reply = http(server.addr, method, path, &[]).await;
        assert_eq!(reply.status, 401, "{method} {path} without a token");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"hotline\"")
        );
        let wrong = http(
            server.addr,
            method,
            path,
            &[("Authorization", "Bearer s3cret-tokeN")],
        )
        .await;
        assert_eq!(wrong.status, 401, "{method} {path} with a wrong token");
    }
    // The dashboard's query token is swapped for a cookie that opens the page only.
    let login = http(
        server.addr,
        "GET",
        &format!("/?token={TOKEN}&day={DAY}"),
        &[],
    )
    .await;
    assert_eq!(login.status, 303);
    assert_eq!(
        login.header("location"),
        Some("/?period=day&day=2026-03-02")
    );
    let cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = http(
        server.addr,
        "GET",
        "/?day=2026-03-02",
        &[("Cookie", &cookie)],
    )
    .await;
    assert_eq!(page.status, 200);
    // The same cookie opens the other pages a browser shows: the wallboard and the CSV.
    for path in [
        "/wallboard",
        "/dashboard.csv?period=week&day=2026-03-02&table=agents",
    ] {
        let reply = http(server.addr, "GET", path, &[("Cookie", &cookie)]).await;
        assert_eq!(reply.status, 200, "{path} with the cookie: {}", reply.body);
    }
    let wallboard_login = http(
        server.addr,
        "GET",
        &format!("/wallboard?lang=en&token={TOKEN}"),
        &[],
    )
    .await;
    assert_eq!(wallboard_login.status, 303);
    assert_eq!(
        wallboard_login.header("location"),
        Some("/wallboard?lang=en")
    );
    assert!(wallboard_login.header("set-cookie").is_some());
    let api = http(server.addr, "GET", "/api/stats", &[("Cookie", &cookie)]).await;
    assert_eq!(
        api.status, 401,
        "the dashboard cookie must not open the API"
    );
    let wrong_query = http(server.addr, "GET", "/?token=guess", &[]).await;
    assert_eq!(wrong_query.status, 401);
}

#[tokio::test]
async fn stats_match_the_cli_and_the_definitions() {
    let server = start().await;
    let dir = server.dir.path();

    let totals = get(server.addr, &format!("/api/stats?from={DAY}")).await;
    assert_eq!(totals.status, 200, "{}", totals.body);
    assert_eq!(totals.header("content-type"), Some("application/json"));
    assert_eq!(totals.body, cli_stats(dir, &[], "json").await);
    let row = &totals.json()[0];
    assert_eq!(row["calls"], 13);
    assert_eq!(row["offered"], 10);
    assert_eq!(row["answered"], 6);
    assert_eq!(row["answered_in_sl"], 5);
    assert_eq!(row["abandoned"], 2);
    assert_eq!(row["short_abandoned"], 1);
    assert_eq!(row["service_level"], 0.625);
    assert_eq!(row["asa_s"], 13.333);
    assert_eq!(row["avg_talk_s"], 62.1);
    assert_eq!(row["max_wait_s"], 300.0);
    assert_eq!(row["connected"], 5);
    assert_eq!(row["abandoned_queue"], 3);
    assert_eq!(row["rejected"], 1);

    let by_enterprise = get(server.addr, &format!("/api/stats?from={DAY}&by=enterprise")).await;
    assert_eq!(
        by_enterprise.body,
        cli_stats(dir, &["enterprise"], "json").await
    );
    let rendered = hotline::cdr::format::render(
        &server
            .store
            .stats(&local_day_query(vec![Dimension::Enterprise]))
            .await
            .unwrap(),
        hotline::cdr::format::OutputFormat::Json,
    )
    .unwrap();
    assert_eq!(by_enterprise.body, rendered);
    let rows = by_enterprise.json();
    let figures: Vec<(String, u64, u64, Value, Value)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["enterprise"].as_str().unwrap().to_owned(),
                row["calls"].as_u64().unwrap(),
                row["abandoned"].as_u64().unwrap(),
                row["service_level"].clone(),
                row["asa_s"].clone(),
            )
        })
        .collect();
    let f = |value: f64| Value::from(value);
    assert_eq!(
        figures,
        vec![
            ("(none)".into(), 3, 0, Value::Null, Value::Null),
            ("heating".into(), 5, 1, f(0.5), f(13.333)),
            ("transport".into(), 2, 1, f(0.5), f(5.0)),
            ("water".into(), 3, 0, f(1.0), f(17.5)),
        ]
    );

    // Repeated and comma-separated `by`, thresholds and other formats, as on the command line.
    let by_two = get(
        server.addr,
        &format!("/api/stats?from={DAY}&to=2026-03-03&by=language,hour&sl_threshold=30"),
    )
    .await;
    let mut query = local_day_query(vec![Dimension::Language, Dimension::Hour]);
    query.sl_threshold_s = 30;
    let expected = hotline::cdr::format::render(
        &server.store.stats(&query).await.unwrap(),
        hotline::cdr::format::OutputFormat::Json,
    )
    .unwrap();
    assert_eq!(by_two.body, expected);
    let csv = get(
        server.addr,
        &format!("/api/stats?from={DAY}&by=hour&format=csv"),
    )
    .await;
    assert_eq!(csv.body, cli_stats(dir, &["hour"], "csv").await);
    let hours: Vec<&str> = csv.body.lines().skip(1).map(|line| &line[..2]).collect();
    assert_eq!(hours, ["00", "09", "10", "11"]);

    for bad in [
        "/api/stats?from=02.03.2026",
        "/api/stats?by=weekday",
        "/api/stats?sl_threshold=ten",
        "/api/stats?short_abandon=-1",
        "/api/stats?format=xml",
        "/api/stats?form=2026-03-02",
    ] {
        let reply = get(server.addr, bad).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert!(!reply.body.trim().is_empty());
    }
}

#[tokio::test]
async fn callback_figures_match_the_cli_and_stay_out_of_the_inbound_figures() {
    let server = start().await;
    let dir = server.dir.path();
    let totals = get(server.addr, &format!("/api/stats?from={CALLBACK_DAY}")).await;
    assert_eq!(totals.status, 200, "{}", totals.body);
    assert_eq!(
        totals.body,
        cli_stats_on(dir, CALLBACK_DAY, &[], "json").await
    );
    let row = &totals.json()[0];
    // The callers' calls (c01-c05, x01): the dials of residents are not among them, and the
    // requests are offered but neither answered nor abandoned.
    assert_eq!(row["calls"], 6);
    assert_eq!(row["offered"], 6);
    assert_eq!(row["answered"], 3);
    assert_eq!(row["answered_in_sl"], 2);
    assert_eq!(row["abandoned"], 0);
    assert_eq!(row["service_level"], 2.0 / 3.0);
    assert_eq!(row["asa_s"], 27.0);
    assert_eq!(row["avg_talk_s"], 43.333);
    assert_eq!(row["max_wait_s"], 120.0, "not the 510 s of the callback");
    // The callbacks: c02 connected once (after a busy dial) within 15 min, c03 failed once.
    assert_eq!(row["callback_offered"], 4);
    assert_eq!(row["callback_accepted"], 3);
    assert_eq!(row["callback_attempts"], 4);
    assert_eq!(row["callback_connected"], 1);
    assert_eq!(row["callback_connected_in_sl"], 1);
    assert_eq!(row["callback_failed"], 1);
    assert_eq!(row["callback_service_level"], 0.5);
    assert_eq!(row["callback_asa_s"], 510.0);
    // Every record has its outcome: 6 calls + 4 dials.
    assert_eq!(row["connected"], 4);
    assert_eq!(row["callback_requested"], 3);
    assert_eq!(row["not_reached"], 3);

    let by_enterprise = get(
        server.addr,
        &format!("/api/stats?from={CALLBACK_DAY}&by=enterprise"),
    )
    .await;
    assert_eq!(
        by_enterprise.body,
        cli_stats_on(dir, CALLBACK_DAY, &["enterprise"], "json").await
    );
    let rows = by_enterprise.json();
    let figures: Vec<(&str, u64, u64, u64, u64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["enterprise"].as_str().unwrap(),
                row["calls"].as_u64().unwrap(),
                row["callback_accepted"].as_u64().unwrap(),
                row["callback_connected"].as_u64().unwrap(),
                row["callback_failed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(figures, [("heating", 4, 3, 1, 1), ("water", 2, 0, 0, 0)]);
    // The other day has no callbacks: the columns are there, all 0 or null.
    let other = get(server.addr, &format!("/api/stats?from={DAY}")).await;
    let other = &other.json()[0];
    assert_eq!(other["callback_accepted"], 0);
    assert_eq!(other["callback_service_level"], Value::Null);

    // The CLI table shows the callback columns in blocks of at most 120 characters; CSV has
    // them after the call figures.
    let table = cli_stats_on(dir, CALLBACK_DAY, &["enterprise"], "table").await;
    assert!(
        table.lines().all(|line| line.chars().count() <= 120),
        "{table}"
    );
    assert!(table.contains("callback_connected"), "{table}");
    let plain = cli_stats_on(dir, DAY, &["enterprise"], "table").await;
    assert!(
        !plain.contains("callback_"),
        "no callbacks that day: {plain}"
    );
    let csv = get(
        server.addr,
        &format!("/api/stats?from={CALLBACK_DAY}&format=csv"),
    )
    .await;
    assert_eq!(csv.body, cli_stats_on(dir, CALLBACK_DAY, &[], "csv").await);
    assert!(
        csv.body.starts_with(
            "calls,offered,answered,answered_in_sl,abandoned,short_abandoned,service_level,\
             asa_s,avg_talk_s,max_wait_s,callback_offered,callback_accepted,callback_attempts,\
             callback_connected,callback_connected_in_sl,callback_failed,\
             callback_service_level,callback_asa_s,connected,"
        ),
        "{}",
        csv.body
    );
    assert!(csv
        .body
        .contains("\r\n6,6,3,2,0,0,0.6667,27.000,43.333,120.000,4,3,4,1,1,1,0.5000,510.000,4,"));

    // The dashboard's callback table for that day.
    let page = get(server.addr, &format!("/?day={CALLBACK_DAY}&lang=en")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let tables = without_svg(&page.body);
    for figure in [
        "<td title=\"heating\">Vilnius Heating Networks</td><td>4</td><td>3</td><td>4</td>\
         <td>1</td><td>1</td><td>50.0%</td><td>8:30</td>",
        "<td class=\"total\">Total</td><td>4</td><td>3</td><td>4</td><td>1</td><td>1</td>\
         <td>50.0%</td><td>8:30</td>",
    ] {
        assert!(tables.contains(figure), "dashboard lacks {figure}");
    }
    let csv = get(
        server.addr,
        &format!("/dashboard.csv?day={CALLBACK_DAY}&table=callbacks&lang=en"),
    )
    .await;
    assert!(
        csv.body
            .contains("\r\nheating,Vilnius Heating Networks,4,3,4,1,1,1,0.5000,510.000\r\n"),
        "{}",
        csv.body
    );
}

#[tokio::test]
async fn the_supervisors_thresholds_apply_to_the_api_and_the_dashboard() {
    let thresholds = Thresholds {
        short_abandon_s: 5,
        sl_threshold_s: 10,
    };
    let server = start_with(thresholds).await;
    let totals = get(server.addr, &format!("/api/stats?from={DAY}")).await;
    assert_eq!(totals.status, 200, "{}", totals.body);
    let mut query = local_day_query(Vec::new());
    query.sl_threshold_s = 10;
    let expected = hotline::cdr::format::render(
        &server.store.stats(&query).await.unwrap(),
        hotline::cdr::format::OutputFormat::Json,
    )
    .unwrap();
    assert_eq!(totals.body, expected);
    assert_eq!(
        totals.json()[0]["answered_in_sl"],
        3,
        "two answers took 10-20 s"
    );
    let page = get(server.addr, &format!("/?day={DAY}&lang=en")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("SL = answered within 10 s")
            && page.body.contains("a wait of 5 s or more"),
        "the dashboard states the thresholds it used"
    );
}

#[tokio::test]
async fn calls_are_listed_by_page_with_their_events() {
    let server = start().await;
    let first = get(
        server.addr,
        &format!("/api/calls?from={DAY}&to=2026-03-03&limit=5"),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let ids = |reply: &Reply| -> Vec<String> {
        reply.json()["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|call| call["call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["a12", "a11", "a10", "a09", "a08"]);
    let second = get(
        server.addr,
        &format!("/api/calls?from={DAY}&to=2026-03-03&limit=5&offset=10"),
    )
    .await;
    assert_eq!(ids(&second), ["a02", "a01", "b01"]);
    let abandoned = get(
        server.addr,
        "/api/calls?enterprise=heating&outcome=abandoned_queue",
    )
    .await;
    assert_eq!(ids(&abandoned), ["a04", "a03"]);
    let call = &abandoned.json()["calls"][0];
    assert_eq!(call["outcome"], "abandoned_queue");
    assert_eq!(call["enterprise"], "heating");

    let events = get(server.addr, "/api/calls/a03").await;
    assert_eq!(events.status, 200);
    let events = events.json();
    assert_eq!(events["events"][0]["kind"], "arrive");
    assert_eq!(events["events"][1]["detail"], "abandoned_queue");
    assert_eq!(get(server.addr, "/api/calls/nope").await.status, 404);
    for bad in [
        "/api/calls?limit=0",
        "/api/calls?limit=100000",
        "/api/calls?outcome=hung_up",
        "/api/calls?from=yesterday",
    ] {
        assert_eq!(get(server.addr, bad).await.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn live_returns_the_published_snapshot_and_reload_round_trips() {
    let server = start().await;
    let live = get(server.addr, "/api/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(live.json(), serde_json::to_value(snapshot()).unwrap());

    // A newer snapshot is what the next request sees.
    let mut newer = snapshot();
    newer.queues.truncate(1);
    newer.queues[0].waiting = 9;
    server.live.send(newer.clone()).unwrap();
    let live = get(server.addr, "/api/live").await;
    assert_eq!(live.json(), serde_json::to_value(newer).unwrap());

    let (name, value) = bearer();
    let accepted = http(server.addr, "POST", "/api/reload", &[(name, &value)]).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.json(), serde_json::json!({ "hash": "9f2c1e" }));
    let refused = http(server.addr, "POST", "/api/reload", &[(name, &value)]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.json()["problems"],
        serde_json::json!([
            "routing.toml:12: groups.water.agents: unknown agent \"zz\"",
            "routing.toml:30: menus.main.2: unknown group \"heat\"",
        ])
    );
    assert_eq!(get(server.addr, "/api/reload").await.status, 405);
}

#[tokio::test]
async fn a_supervisor_places_a_call_through_a_trunk_and_hears_how_it_went() {
    let server = start().await;
    let (name, value) = bearer();
    let json = [(name, value.as_str()), ("Content-Type", "application/json")];
    let answered = http_with_body(
        server.addr,
        "/api/trunks/carrier/calls",
        &json,
        r#"{"number":"861234567"}"#,
    )
    .await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert_eq!(
        answered.json(),
        serde_json::json!({ "answered_after_ms": 1200, "talked_ms": 3100 })
    );
    let failed = http_with_body(
        server.addr,
        "/api/trunks/nosuch/calls",
        &json,
        r#"{"number":"861234567"}"#,
    )
    .await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert_eq!(
        failed.json(),
        serde_json::json!({ "status": 404, "reason": "no trunk named nosuch" })
    );
    // The CLI reads the same answers.
    assert_eq!(
        hotline::cli::call::answer(failed.status, &failed.body),
        Ok(hotline::cli::call::Outcome::Failed {
            status: 404,
            reason: "no trunk named nosuch".into()
        })
    );
}

#[test]
fn binding_without_a_token_is_refused_off_loopback() {
    let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let lan: SocketAddr = "192.168.10.5:8080".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert!(check_bind(public, &None)
        .unwrap_err()
        .contains("0.0.0.0:8080"));
    assert!(check_bind(lan, &None).is_err());
    assert!(check_bind(loopback, &None).is_ok());
    assert!(check_bind(lan, &Some(TOKEN.into())).is_ok());
}

/// A strict parser of the Prometheus text format 0.0.4: every sample belongs to a family
/// declared by `# TYPE` before it, families are contiguous and declared once, names and label
/// names are valid, label values use only the allowed escapes, no series repeats.
fn parse_prometheus(text: &str) -> BTreeMap<String, (String, f64)> {
    assert!(text.ends_with('\n'), "exposition must end with a line feed");
    let valid_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').unwrap();
            let (name, value) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "bad metric name {name:?}");
            match keyword {
                "HELP" => {
                    assert!(!helped.contains(&name.to_owned()), "second HELP for {name}");
                    helped.push(name.to_owned());
                }
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&value),
                        "bad type {value}"
                    );
                    assert!(
                        types.insert(name.into(), value.into()).is_none(),
                        "second TYPE for {name}"
                    );
                    if let Some(previous) = current.replace(name.to_owned()) {
                        finished.push(previous);
                    }
                }
                other => panic!("unknown comment keyword {other}"),
            }
            continue;
        }
        assert!(
            !line.is_empty() && !line.starts_with('#'),
            "bad line {line:?}"
        );
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(valid_name(name), "bad sample name {name:?}");
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample {name} outside its family"
        );
        assert!(!finished.contains(&name.to_owned()));
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            loop {
                let (start, _) = *chars.peek().unwrap();
                let eq = inner[start..].find('=').unwrap() + start;
                let label = &inner[start..eq];
                assert!(
                    valid_name(label) && !label.contains(':'),
                    "bad label {label:?}"
                );
                while chars.peek().unwrap().0 <= eq {
                    chars.next();
                }
                assert_eq!(chars.next().unwrap().1, '"');
                let mut value = String::new();
                loop {
                    match chars.next().unwrap().1 {
                        '\\' => match chars.next().unwrap().1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw line feed in label value"),
                        other => value.push(other),
                    }
                }
                labels.push(format!("{label}={value:?}"));
                match chars.next().unwrap() {
                    (_, ',') => continue,
                    (end, '}') => {
                        rest = &inner[end + 1..];
                        break;
                    }
                    (_, other) => panic!("unexpected {other:?} after a label"),
                }
            }
        }
        let value = rest.strip_prefix(' ').unwrap();
        assert!(!value.contains(' '), "timestamps are not expected: {line}");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let key = format!("{name}{{{}}}", labels.join(","));
        assert!(
            samples.insert(key, (types[name].clone(), value)).is_none(),
            "repeated series {line}"
        );
    }
    for family in types.keys() {
        assert!(helped.contains(family), "no HELP for {family}");
    }
    samples
}

#[tokio::test]
async fn metrics_parse_and_carry_the_snapshot() {
    let server = start().await;
    let reply = get(server.addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse_prometheus(&reply.body);
    let value = |key: &str| {
        samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{}", reply.body))
            .clone()
    };
    let counter = |v: f64| ("counter".to_owned(), v);
    let gauge = |v: f64| ("gauge".to_owned(), v);
    assert_eq!(
        value(r#"hotline_calls_total{outcome="connected",group="heating",language="lt"}"#),
        counter(7.0)
    );
    assert_eq!(
        value(r#"hotline_calls_total{outcome="abandoned_queue",group="water",language="en"}"#),
        counter(2.0)
    );
    assert_eq!(
        value(r#"hotline_calls_total{outcome="connected",group="he\"at\\ing",language="lt"}"#),
        counter(1.0)
    );
    assert_eq!(value("hotline_calls_in_progress{}"), gauge(6.0));
    assert_eq!(
        value(r#"hotline_queue_waiting_calls{group="heating"}"#),
        gauge(3.0)
    );
    assert_eq!(
        value(r#"hotline_queue_waiting_calls{group="water"}"#),
        gauge(1.0)
    );
    assert_eq!(
        value(r#"hotline_queue_longest_wait_seconds{group="heating"}"#),
        gauge(95.0)
    );
    assert_eq!(value(r#"hotline_agents{state="idle"}"#), gauge(2.0));
    assert_eq!(value(r#"hotline_agents{state="on_call"}"#), gauge(1.0));
    assert_eq!(value(r#"hotline_agents{state="wrap_up"}"#), gauge(1.0));
    assert_eq!(value(r#"hotline_agents{state="ringing"}"#), gauge(0.0));
    assert_eq!(
        value(r#"hotline_dtmf_mode_calls_total{mode="rfc4733"}"#),
        counter(9.0)
    );
    assert_eq!(
        value(r#"hotline_dtmf_mode_calls_total{mode="inband"}"#),
        counter(1.0)
    );
    assert_eq!(
        value(r#"hotline_dtmf_mode_calls_total{mode="sip-info"}"#),
        counter(0.0)
    );
    assert_eq!(value(r#"hotline_trunk_up{trunk="carrier"}"#), gauge(0.0));
    assert_eq!(
        value(r#"hotline_trunk_registrations_total{trunk="carrier",result="refused"}"#),
        counter(4.0)
    );
    assert_eq!(
        value(r#"hotline_trunk_calls_total{trunk="carrier"}"#),
        counter(3.0)
    );
    assert_eq!(
        value(r#"hotline_security_events_total{event="auth_failed"}"#),
        counter(12.0)
    );
    assert_eq!(value("hotline_security_bans{}"), gauge(1.0));
    assert_eq!(
        value(r#"hotline_callbacks_pending{state="queued"}"#),
        gauge(1.0)
    );
    assert_eq!(
        value(r#"hotline_callbacks_pending{state="waiting"}"#),
        gauge(1.0)
    );
    assert_eq!(
        value(r#"hotline_callbacks_pending{state="calling"}"#),
        gauge(0.0)
    );
}

#[tokio::test]
async fn a_supervisor_lifts_a_ban() {
    let server = start().await;
    let (name, value) = bearer();
    let auth = [(name, value.as_str())];
    let lifted = http(server.addr, "DELETE", "/api/bans/127.0.0.3", &auth).await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    assert_eq!(lifted.json(), serde_json::json!({ "lifted": 2 }));
    let none = http(server.addr, "DELETE", "/api/bans/127.0.0.9", &auth).await;
    assert_eq!(none.status, 404, "{}", none.body);
    let bad = http(server.addr, "DELETE", "/api/bans/not-an-ip", &auth).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let anonymous = http(server.addr, "DELETE", "/api/bans/127.0.0.3", &[]).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn a_supervisor_pauses_an_agent() {
    let server = start().await;
    let (name, value) = bearer();
    let json = [(name, value.as_str()), ("Content-Type", "application/json")];
    let paused = http_with_body(
        server.addr,
        "/api/agents/ona/state",
        &json,
        r#"{"state":"paused"}"#,
    )
    .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(
        paused.json(),
        serde_json::json!({ "agent": "ona", "state": "paused" })
    );
    let unknown = http_with_body(
        server.addr,
        "/api/agents/zz/state",
        &json,
        r#"{"state":"available"}"#,
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let nonsense = http_with_body(
        server.addr,
        "/api/agents/ona/state",
        &json,
        r#"{"state":"asleep"}"#,
    )
    .await;
    assert_eq!(nonsense.status, 400, "{}", nonsense.body);
}

/// The page with every inline SVG removed (the tables' cells hold small bars).
fn without_svg(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("</svg>")
            .map_or("", |end| &rest[start + end + "</svg>".len()..]);
    }
    out.push_str(rest);
    out
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Renders `url` with headless Chromium into `png`.
fn screenshot(url: &str, png: &Path) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test (it installs the Debian package chromium)"
    );
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("timeout")
        .args(["120", CHROMIUM])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1400,1000")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_seeded_day_in_chromium() {
    let server = start().await;
    let page = get(server.addr, &format!("/?day={DAY}&lang=en")).await;
    assert_eq!(page.status, 200);
    let html = &page.body;
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    // Live panel: 6 calls, 4 waiting, longest 1:35; the hostile group name is inert text.
    assert!(html.contains("<b id=\"calls-in-progress\">6</b>"));
    assert!(html.contains("<b id=\"waiting\">4</b>"));
    assert!(html.contains("<b id=\"longest-wait\">1:35</b>"));
    assert!(html.contains("<td>carrier</td><td style=\"color:#d62728\">refused (primary)</td>"));
    assert!(html.contains("<td>401 credentials refused</td><td>12:34</td>"));
    assert!(html.contains("<tr><td>127.0.0.3</td><td>flood</td><td>4:41</td></tr>"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<img src=x"));
    // Queues by display name; water has a caller and nobody free.
    assert!(html.contains(
        "<td title=\"heating\">Vilnius Heating Networks</td><td>3</td><td>1:35</td><td>2</td>"
    ));
    assert!(html.contains(
        "<tr style=\"color:#d62728;font-weight:600\"><td title=\"water\">Vilnius Water</td>"
    ));
    // Calls per local hour: 1 at 00, 6 at 09, 4 at 10, 2 at 11.
    let totals: Vec<&str> = html
        .split("class=\"hour-total\"")
        .skip(1)
        .map(|part| part.split('>').nth(1).unwrap().split('<').next().unwrap())
        .collect();
    assert_eq!(totals, ["1", "6", "4", "2"]);
    // Outcomes and the per-enterprise / per-language figures (the cells' small bars aside).
    assert!(html.contains(">connected</text>"));
    let tables = without_svg(html);
    for figure in [
        "<td class=\"wrap\" title=\"heating\">Vilnius Heating Networks</td><td>5</td><td>5</td><td>3</td><td>1</td><td>50.0%</td><td>20.0%</td><td>13.3 s</td><td>40.0 s</td>",
        "<td class=\"wrap\" title=\"water\">Vilnius Water</td><td>3</td><td>3</td><td>2</td><td>0</td><td>100.0%</td><td>0.0%</td><td>17.5 s</td><td>300.0 s</td>",
        "<td class=\"wrap\" title=\"transport\">transport</td><td>2</td><td>2</td><td>1</td><td>1</td><td>50.0%</td><td>50.0%</td><td>5.0 s</td><td>12.0 s</td>",
        "<td class=\"wrap\" title=\"lt\">Lithuanian</td><td>7</td>",
    ] {
        assert!(tables.contains(figure), "dashboard lacks {figure}");
    }
    // The callbacks pending now, by display name; none in the day's figures.
    for pending in [
        "<span id=\"callbacks-pending-count\">(2)</span>",
        "<tr class=\"callback\"><td title=\"heating\">Vilnius Heating Networks</td>\
         <td class=\"text\">Lithuanian</td><td class=\"text\">+37060000005</td>\
         <td class=\"text\">queued</td><td>0</td><td>3:20</td><td>1</td></tr>",
        "<td class=\"text\">waiting to retry</td><td>2</td><td>25:00</td><td>in 1:35</td>",
        "<p class=\"empty\">no callbacks in this period</p>",
    ] {
        assert!(tables.contains(pending), "dashboard lacks {pending}");
    }

    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    // The query token is exchanged for a cookie by a redirect, as a supervisor's browser does.
    let url = format!("http://{}/?token={TOKEN}&day={DAY}&lang=en", server.addr);
    let target = png.clone();
    tokio::task::spawn_blocking(move || screenshot(&url, &target))
        .await
        .unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // A blank or error page compresses to a few kilobytes; charts and tables do not.
    assert!(
        bytes.len() > 40_000,
        "screenshot is only {} bytes",
        bytes.len()
    );
    println!("dashboard screenshot: {}", png.display());
}
