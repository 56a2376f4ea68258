//! The supervisors' dashboard and wallboard over two weeks of seeded calls: the shipped
//! routing's enterprises (display names in Lithuanian and English), agents in every state,
//! the period picker (day, week, month, custom), the agents table with calls and talk per
//! period, service level and abandonment per day as a line chart, CSV downloads of the same
//! tables, the wallboard, and the agents' buttons (forms with a CSRF field that pause, log out
//! or free an agent through the service loop), queued callbacks (the requests pending now and
//! the period's callback figures). Expected figures are recomputed here from the seeded script
//! by the README's definitions; headless Chromium renders the pages into PNGs under target/.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Vilnius;
use hotline::acd::{AgentId, PauseReason};
use hotline::cdr::{CallRecord, CallStart, CdrStore, DtmfMode, Outcome, Thresholds, TransferMode};
use hotline::http::live::{
    AgentLive, CallOrder, CallbackLive, Command, LiveCall, LiveSnapshot, QueueLive, ReloadRequest,
};
use hotline::http::{serve, HttpState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const TOKEN: &str = "wallboard-token";
/// Two ISO weeks: Monday 23 February to Sunday 8 March 2026 (weeks 9 and 10).
const FIRST: &str = "2026-02-23";
const LAST: &str = "2026-03-08";
/// Sunday 1 March: no calls at all (a gap in the trend lines).
const QUIET: &str = "2026-03-01";
const ENTERPRISES: [&str; 7] = [
    "water",
    "heating",
    "transport_tickets",
    "waste",
    "housing",
    "registry",
    "municipality",
];

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn local(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    Vilnius
        .from_local_datetime(&day.and_hms_opt(hour, minute, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn routing() -> hotline::routing::Routing {
    hotline::routing::parse(include_str!("../routing.toml"), "routing.toml").unwrap()
}

/// Each group's agents as the switchboard names them.
fn agents_of(routing: &hotline::routing::Routing, group: &str) -> Vec<String> {
    routing.groups[group]
        .agents
        .iter()
        .map(|agent| AgentId::of(&agent.target).0)
        .collect()
}

/// One seeded call.
#[derive(Clone)]
struct Call {
    id: String,
    day: NaiveDate,
    arrived: DateTime<Utc>,
    enterprise: &'static str,
    language: &'static str,
    outcome: Outcome,
    wait_s: i64,
    talk_s: i64,
    agent: Option<String>,
}

/// A varied but fixed day of calls per enterprise: 3 to 6 calls each, waits 0–44 s, every
/// fifth call abandoned, the rest answered by the group's agents in turn.
fn script(routing: &hotline::routing::Routing, first: NaiveDate, days: u64) -> Vec<Call> {
    let mut calls = Vec::new();
    for (d, day) in first.iter_days().take(days as usize).enumerate() {
        if day == date(QUIET) {
            continue;
        }
        for (e, enterprise) in ENTERPRISES.iter().enumerate() {
            let agents = agents_of(routing, enterprise);
            for k in 0..(3 + (d + e) % 4) {
                let wait_s = ((d * 7 + e * 3 + k * 11) % 45) as i64;
                let abandoned = k % 5 == 4 && wait_s >= 5;
                let minute = (e * 7 + k * 37) as u32;
                calls.push(Call {
                    id: format!("{day}-{enterprise}-{k}"),
                    day,
                    arrived: local(day, 8 + minute / 60, minute % 60),
                    enterprise,
                    language: ["lt", "lt", "en", "ru", "pl"][(d + k) % 5],
                    outcome: if abandoned {
                        Outcome::AbandonedQueue
                    } else {
                        Outcome::Connected
                    },
                    wait_s,
                    talk_s: if abandoned { 0 } else { 60 + 15 * k as i64 },
                    agent: (!abandoned).then(|| agents[(d + k) % agents.len()].clone()),
                });
            }
        }
    }
    calls
}

fn record_of(call: &Call) -> CallRecord {
    let chosen = call.arrived + chrono::Duration::seconds(30);
    let answered = call
        .agent
        .as_ref()
        .map(|_| chosen + chrono::Duration::seconds(call.wait_s));
    let ended = match answered {
        Some(at) => at + chrono::Duration::seconds(call.talk_s),
        None => chosen + chrono::Duration::seconds(call.wait_s),
    };
    CallRecord {
        call_id: call.id.clone(),
        caller: None,
        trunk: "127.0.0.1:5080".into(),
        arrived: call.arrived,
        ivr_answered: Some(call.arrived + chrono::Duration::seconds(1)),
        language_chosen: Some(call.arrived + chrono::Duration::seconds(10)),
        group_chosen: Some(chosen),
        queue_entered: Some(chosen),
        agent_answered: answered,
        ended,
        language: Some(call.language.into()),
        menu_path: format!(
            "language {} > main > group {}",
            call.language, call.enterprise
        ),
        dtmf_mode: DtmfMode::Rfc4733,
        enterprise: Some(call.enterprise.into()),
        agent: call.agent.clone(),
        transfer_mode: answered.map(|_| TransferMode::Bridge),
        outcome: call.outcome,
        rtp_packets: 100,
        rtp_lost: 0,
        rtp_jitter_ms: 0.5,
        callback_of: None,
    }
}

/// The day with queued callbacks (Wednesday of week 10).
const CALLBACK_DAY: &str = "2026-03-04";

/// Two heating callers on `CALLBACK_DAY` who asked to be called back after 95 s in the queue
/// (at 10:00 and 10:05): the first is dialled 4 min after asking and bridged 20 s later (net
/// wait 4:20), the second is dialled twice and not reached. Neither request is an answered or
/// abandoned call, and the dials are no calls at all: the day's service level is the script's.
fn callback_records(routing: &hotline::routing::Routing) -> Vec<CallRecord> {
    let day = date(CALLBACK_DAY);
    let agent = agents_of(routing, "heating")[0].clone();
    let request = |id: &str, minute: u32, language: &'static str| {
        let call = Call {
            id: id.into(),
            day,
            arrived: local(day, 10, minute),
            enterprise: "heating",
            language,
            outcome: Outcome::CallbackRequested,
            wait_s: 95,
            talk_s: 0,
            agent: None,
        };
        let mut record = record_of(&call);
        record
            .menu_path
            .push_str(" > queue heating > callback offered > callback requested");
        record
    };
    let attempt = |id: &str, original: &CallRecord, after_s: i64, bridged: bool| {
        let asked = original.ended;
        let arrived = asked + chrono::Duration::seconds(after_s);
        let answered = bridged.then(|| arrived + chrono::Duration::seconds(20));
        CallRecord {
            call_id: id.into(),
            arrived,
            ivr_answered: answered,
            language_chosen: None,
            group_chosen: Some(asked),
            queue_entered: Some(asked),
            agent_answered: answered,
            ended: answered.map_or(arrived + chrono::Duration::seconds(30), |at| {
                at + chrono::Duration::seconds(180)
            }),
            menu_path: format!("{} > callback attempt", original.menu_path),
            dtmf_mode: DtmfMode::None,
            agent: Some(agent.clone()),
            transfer_mode: answered.map(|_| TransferMode::Bridge),
            outcome: if bridged {
                Outcome::Connected
            } else {
                Outcome::NotReached
            },
            callback_of: Some(original.call_id.clone()),
            ..original.clone()
        }
    };
    let first = request("cb-1", 0, "lt");
    let second = request("cb-2", 5, "en");
    vec![
        attempt("cb-1-1", &first, 240, true),
        attempt("cb-2-1", &second, 180, false),
        attempt("cb-2-2", &second, 480, false),
        first,
        second,
    ]
}

/// The README's service level: answered within 20 s / (answered + abandoned (wait >= 5 s)).
fn service_level(calls: &[&Call]) -> Option<f64> {
    let answered: Vec<_> = calls.iter().filter(|c| c.agent.is_some()).collect();
    let in_sl = answered.iter().filter(|c| c.wait_s <= 20).count();
    let abandoned = calls
        .iter()
        .filter(|c| c.outcome == Outcome::AbandonedQueue && c.wait_s >= 5)
        .count();
    let counted = answered.len() + abandoned;
    (counted > 0).then(|| in_sl as f64 / counted as f64)
}

/// Agents in every state the dashboard shows, with the routing's groups and languages.
fn live_agents(routing: &hotline::routing::Routing) -> Vec<AgentLive> {
    let states: BTreeMap<&str, (&str, u64, Option<&str>)> = [
        (
            "sip:water-1@127.0.0.1:5301",
            ("on_call", 125, Some("water")),
        ),
        ("sip:water-2@127.0.0.1:5302", ("idle", 340, None)),
        (
            "sip:heating-1@127.0.0.1:5311",
            ("ringing", 6, Some("heating")),
        ),
        ("sip:heating-2@127.0.0.1:5312", ("paused", 900, None)),
        ("sip:tickets-1@127.0.0.1:5321", ("wrap_up", 12, None)),
        ("sip:parking-1@127.0.0.1:5322", ("auto_paused", 75, None)),
        ("sip:routes-1@127.0.0.1:5323", ("logged_out", 4000, None)),
        ("sip:waste-1@127.0.0.1:5331", ("unreachable", 300, None)),
    ]
    .into_iter()
    .collect();
    let mut agents: BTreeMap<String, AgentLive> = BTreeMap::new();
    for (key, group) in &routing.groups {
        for member in &group.agents {
            let id = AgentId::of(&member.target).0;
            let (state, since_s, call_group) = states
                .get(id.as_str())
                .copied()
                .unwrap_or(("idle", 60, None));
            let agent = agents.entry(id.clone()).or_insert_with(|| AgentLive {
                agent: id.clone(),
                state: state.into(),
                since_s,
                call_group: call_group.map(Into::into),
                ..AgentLive::default()
            });
            agent.groups.push(key.clone());
            for language in &member.languages {
                if !agent.languages.contains(&language.value) {
                    agent.languages.push(language.value.clone());
                }
            }
        }
    }
    agents.into_values().collect()
}

fn snapshot(routing: &hotline::routing::Routing) -> LiveSnapshot {
    let agents = live_agents(routing);
    let waiting: BTreeMap<&str, (usize, u64)> = [
        ("water", (2, 48)),
        ("heating", (1, 9)),
        ("registry", (1, 31)),
    ]
    .into_iter()
    .collect();
    let queues = routing
        .groups
        .iter()
        .map(|(key, group)| {
            let (waiting, longest_wait_s) = waiting.get(key.as_str()).copied().unwrap_or((0, 0));
            QueueLive {
                group: key.clone(),
                waiting,
                longest_wait_s,
                names: group.name.value.clone(),
                agents_available: agents
                    .iter()
                    .filter(|agent| agent.state == "idle" && agent.groups.contains(key))
                    .count(),
            }
        })
        .collect();
    let call = |id: &str, state: &str, group: &str, since_s| LiveCall {
        call_id: id.into(),
        state: state.into(),
        language: Some("lt".into()),
        group: Some(group.into()),
        since_s,
    };
    LiveSnapshot {
        at: Some(Utc::now()),
        calls: vec![
            call("w1", "queued", "water", 48),
            call("w2", "queued", "water", 20),
            call("h1", "ringing", "heating", 9),
            call("r1", "queued", "registry", 31),
            call("w0", "connected", "water", 180),
        ],
        queues,
        agents,
        callbacks: vec![
            pending(
                "heating",
                "lt",
                "+37061234567",
                "queued",
                0,
                310,
                Some(1),
                None,
            ),
            pending(
                "water",
                "en",
                "+447700900123",
                "calling",
                1,
                905,
                None,
                None,
            ),
            pending(
                "heating",
                "lt",
                "+37069876543",
                "waiting",
                2,
                1260,
                None,
                Some(170),
            ),
        ],
        ..LiveSnapshot::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn pending(
    group: &str,
    language: &str,
    number: &str,
    state: &str,
    attempts: u32,
    waiting_s: u64,
    position: Option<u32>,
    next_attempt_s: Option<u64>,
) -> CallbackLive {
    CallbackLive {
        group: group.into(),
        language: language.into(),
        number: number.into(),
        state: state.into(),
        attempts,
        waiting_s,
        position,
        next_attempt_s,
    }
}

struct Server {
    addr: SocketAddr,
    calls: Vec<Call>,
    /// The callers' calls and the dials of `callback_records`.
    callbacks: Vec<CallRecord>,
    /// Calls seeded today (for the wallboard), separately from the two weeks.
    today: Vec<Call>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let routing = routing();
    let dir = tempfile::tempdir().unwrap();
    let store = CdrStore::connect(
        &format!("sqlite:{}", dir.path().join("cdr.sqlite").display()),
        &dir.path().join("spool.jsonl"),
    )
    .await
    .unwrap();
    let calls = script(&routing, date(FIRST), 14);
    let today_date = Utc::now().with_timezone(&Vilnius).date_naive();
    // For the wallboard: the first seeded day's calls again, today at 00:01-00:59 so they are
    // in today whenever the test runs (unless today is one of the seeded days anyway).
    let seeded = date(FIRST) <= today_date && today_date <= date(LAST);
    let today: Vec<Call> = script(&routing, date(FIRST), 1)
        .into_iter()
        .filter(|_| !seeded)
        .enumerate()
        .map(|(index, mut call)| {
            call.id = format!("today-{index}");
            call.day = today_date;
            call.arrived = local(today_date, 0, 1 + (index as u32 % 59));
            call
        })
        .collect();
    for call in calls.iter().chain(&today) {
        store
            .call_started(CallStart {
                call_id: call.id.clone(),
                caller: None,
                trunk: "127.0.0.1:5080".into(),
                arrived: call.arrived,
            })
            .await
            .unwrap();
        store.call_ended(record_of(call), Vec::new()).await.unwrap();
    }
    let callbacks = callback_records(&routing);
    for record in &callbacks {
        store
            .call_started(CallStart {
                call_id: record.call_id.clone(),
                caller: None,
                trunk: record.trunk.clone(),
                arrived: record.arrived,
            })
            .await
            .unwrap();
        store.call_ended(record.clone(), Vec::new()).await.unwrap();
    }
    // The pages only read the snapshot; nobody answers reloads, calls or commands here.
    let (_, live_rx) = watch::channel(snapshot(&routing));
    let (reload, _) = mpsc::channel::<ReloadRequest>(1);
    let (orders, _) = mpsc::channel::<CallOrder>(1);
    let (commands, _) = mpsc::channel::<Command>(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = HttpState {
        token: Some(TOKEN.into()),
        store: Arc::new(store),
        thresholds: Thresholds::default(),
        live: live_rx,
        reload,
        calls: orders,
        commands,
    };
    tokio::spawn(async move { serve(listener, state).await });
    Server {
        addr,
        calls,
        callbacks,
        today,
        _dir: dir,
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// One GET with the bearer token over HTTP/1.1 (the body may be chunked).
async fn get(addr: SocketAddr, path: &str) -> Reply {
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    send(addr, "GET", path, &bearer, "").await
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
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

/// Renders `url` with headless Chromium into `png` (a window of `size`, e.g. `1400,2600`);
/// the query token is swapped for the page cookie by a redirect, as in a supervisor's browser.
fn screenshot(url: &str, png: &Path, size: &str) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test (it installs the Debian package chromium)"
    );
    let _ = std::fs::remove_file(png);
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
            "--lang=lt",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={size}"))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // A blank or error page compresses to a few kilobytes; charts and tables do not.
    assert!(
        bytes.len() > 40_000,
        "{} is only {} bytes",
        png.display(),
        bytes.len()
    );
    println!("screenshot: {}", png.display());
}

async fn screenshot_async(url: String, name: &str, size: &'static str) -> PathBuf {
    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let target = png.clone();
    tokio::task::spawn_blocking(move || screenshot(&url, &target, size))
        .await
        .unwrap();
    png
}

fn duration(total: u64) -> String {
    if total >= 3600 {
        format!(
            "{}:{:02}:{:02}",
            total / 3600,
            total % 3600 / 60,
            total % 60
        )
    } else {
        format!("{}:{:02}", total / 60, total % 60)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_weeks_with_the_agents_table_period_picker_and_trend_in_chromium() {
    let server = start().await;
    let query = format!("period=custom&from={FIRST}&to={LAST}");
    let page = get(server.addr, &format!("/?{query}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let html = &page.body;
    // Lithuanian by default, self-refreshing, nothing external.
    assert!(html.contains("<html lang=\"lt\">"));
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("<h1>19118 miesto linija — 2026-02-23 – 2026-03-08</h1>"));

    // The period picker: quick links, the form with the period's days, previous/next.
    assert!(html.contains("<div class=\"panel wide\" id=\"period-picker\">"));
    assert!(html.contains("<option value=\"custom\" selected>Pasirinktas</option>"));
    assert!(html.contains(&format!(
        "<input type=\"date\" name=\"from\" value=\"{FIRST}\">"
    )));
    assert!(html.contains(&format!(
        "<input type=\"date\" name=\"to\" value=\"{LAST}\">"
    )));
    assert!(html.contains(
        "<a href=\"/?period=custom&amp;from=2026-02-09&amp;to=2026-02-22\">‹ Ankstesnis</a>"
    ));
    assert!(html.contains(">Šiandien</a>") && html.contains(">Šis mėnuo</a>"));

    // The trend: one SL point per day with offered calls (the quiet Sunday is a gap, so the
    // line is two runs), each at the README's service level.
    let points = html.matches("class=\"sl-point\"").count();
    assert_eq!(points, 13, "13 days with calls");
    assert_eq!(html.matches("class=\"trend-sl\"").count(), 2);
    assert!(!html.contains(&format!("data-key=\"{QUIET}\"")));
    for day in [FIRST, "2026-03-04", LAST] {
        let calls: Vec<&Call> = server
            .calls
            .iter()
            .filter(|call| call.day == date(day))
            .collect();
        let expected = format!(
            "<title>{day}: {:.1}%</title>",
            service_level(&calls).unwrap() * 100.0
        );
        assert!(html.contains(&expected), "trend lacks {expected}");
    }
    assert!(html.contains("Aptarnavimo lygis ir atsisakę skambučiai pagal dieną"));
    // Calls per day, stacked by enterprise: 13 day totals matching the script.
    let totals: Vec<u64> = html
        .split("class=\"day-total\"")
        .skip(1)
        .map(|part| {
            part.split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(totals.len(), 13);
    // The callers who asked for a callback are calls; the dials of residents are not.
    let requests = server
        .callbacks
        .iter()
        .filter(|record| record.callback_of.is_none())
        .count();
    assert_eq!(
        totals.iter().sum::<u64>(),
        (server.calls.len() + requests) as u64
    );

    // The agents table: Lithuanian group names, languages, state with reason and duration,
    // calls answered and talk over the period.
    let tables = without_svg(html);
    let water_1: Vec<&Call> = server
        .calls
        .iter()
        .filter(|call| call.agent.as_deref() == Some("sip:water-1@127.0.0.1:5301"))
        .collect();
    let talk: i64 = water_1.iter().map(|call| call.talk_s).sum();
    let expected = format!(
        "<tr class=\"agent\"><td title=\"sip:water-1@127.0.0.1:5301\">water-1</td>\
         <td class=\"text wrap\">Vilniaus vandenys</td><td class=\"text\">LT, RU</td>\
         <td class=\"text\"><span class=\"state\" style=\"background:#1f77b4\">Kalba 2:05 · \
         Vilniaus vandenys</span></td><td>{}</td><td>{}</td>",
        water_1.len(),
        duration(talk as u64)
    );
    assert!(tables.contains(&expected), "agents table lacks {expected}");
    for state in [
        "Pristabdytas: pertrauka 15:00",
        "Pristabdytas: neatsiliepė 1:15",
        "Pristabdytas: atsijungė 1:06:40",
        "Skamba 0:06 · Vilniaus šilumos tinklai",
        "Po pokalbio 0:12",
        "background:#d62728\">Nepasiekiamas 5:00<",
        "Laisvas 5:40",
    ] {
        assert!(tables.contains(state), "agents table lacks {state}");
    }
    assert_eq!(tables.matches("<tr class=\"agent\">").count(), 12);
    // Enterprises by display name in the rates table.
    assert!(tables.contains("title=\"municipality\">Vilniaus miesto savivaldybė</td>"));
    assert!(tables.contains("title=\"en\">anglų</td>"));

    // Queued callbacks: the requests pending now, oldest first, and the period's figures
    // (offered 2, asked 2, 3 dials, 1 connected within 15 min after 4:20, 1 failed).
    for pending in [
        "<h2>Laukiantys perskambinimai <span id=\"callbacks-pending-count\">(3)</span></h2>",
        "<tr class=\"callback\"><td title=\"heating\">Vilniaus šilumos tinklai</td>\
         <td class=\"text\">lietuvių</td><td class=\"text\">+37061234567</td>\
         <td class=\"text\">eilėje</td><td>0</td><td>5:10</td><td>1</td></tr>",
        "<td title=\"water\">Vilniaus vandenys</td><td class=\"text\">anglų</td>\
         <td class=\"text\">+447700900123</td><td class=\"text\">skambinama</td><td>1</td>\
         <td>15:05</td><td>–</td>",
        "<td class=\"text\">laukia kito bandymo</td><td>2</td><td>21:00</td><td>po 2:50</td>",
        "<h2>Perskambinimai pagal įmonę",
        "<td title=\"heating\">Vilniaus šilumos tinklai</td><td>2</td><td>2</td><td>3</td>\
         <td>1</td><td>1</td><td>50.0%</td><td>4:20</td>",
        "<td class=\"total\">Iš viso</td><td>2</td><td>2</td><td>3</td><td>1</td><td>1</td>\
         <td>50.0%</td><td>4:20</td>",
        "SL = sujungta per 15 min nuo prašymo",
    ] {
        assert!(tables.contains(pending), "dashboard lacks {pending}");
    }
    // Only heating had callbacks; the dials are in the outcomes.
    assert_eq!(tables.matches("<tr class=\"callback-figures\">").count(), 2);
    assert!(html.contains(">paprašė perskambinti</text>"));
    assert!(html.contains(">neprisiskambinta</text>"));

    let png = screenshot_async(
        format!("http://{}/?token={TOKEN}&{query}", server.addr),
        "dashboard-two-weeks.png",
        "1400,2500",
    )
    .await;
    println!("dashboard over two weeks (lt): {}", png.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn week_month_and_english_pages_name_their_period() {
    let server = start().await;
    let week = get(server.addr, "/?period=week&day=2026-03-04&lang=en").await;
    assert_eq!(week.status, 200, "{}", week.body);
    let html = &week.body;
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("<span id=\"period-label\">2026-03-02 – 2026-03-08 (week 10)</span>"));
    assert!(html.contains("<option value=\"week\" selected>Week</option>"));
    assert!(html.contains("<input type=\"hidden\" name=\"lang\" value=\"en\">"));
    assert!(
        html.contains("<a href=\"/?period=week&amp;day=2026-02-23&amp;lang=en\">‹ Previous</a>")
    );
    // 2 March to 8 March, all with calls: 7 points; English names.
    assert_eq!(html.matches("class=\"sl-point\"").count(), 7);
    // The callbacks of 4 March are in the week; the pending ones in English.
    let tables = without_svg(html);
    for callbacks in [
        "<h2>Pending callbacks <span id=\"callbacks-pending-count\">(3)</span></h2>",
        "<td class=\"text\">waiting to retry</td><td>2</td><td>21:00</td><td>in 2:50</td>",
        "<td title=\"heating\">Vilnius Heating Networks</td><td>2</td><td>2</td><td>3</td>\
         <td>1</td><td>1</td><td>50.0%</td><td>4:20</td>",
        "<td class=\"total\">Total</td>",
    ] {
        assert!(tables.contains(callbacks), "week page lacks {callbacks}");
    }
    // The week before has none, but requests pend now.
    let before = get(server.addr, "/?period=week&day=2026-02-23&lang=en").await;
    assert!(before
        .body
        .contains("<p class=\"empty\">no callbacks in this period</p>"));
    assert!(html.contains("Service level and abandonment per day"));
    assert!(html.contains("title=\"water\">Vilnius Water</td>"));
    assert!(html.contains("<b>EN</b>"));
    assert!(html.contains("<a href=\"/?period=week&amp;day=2026-03-02\">LT</a>"));

    let month = get(server.addr, "/?period=month&day=2026-02-10").await;
    assert_eq!(month.status, 200, "{}", month.body);
    assert!(month
        .body
        .contains("<span id=\"period-label\">2026 m. vasaris</span>"));
    // February's seeded days: 23-28 (6 points).
    assert_eq!(month.body.matches("class=\"sl-point\"").count(), 6);

    // One day: per hour, and the form's blank fields are ignored.
    let day = get(
        server.addr,
        &format!("/?period=day&day={FIRST}&from=&to=&lang=en"),
    )
    .await;
    assert_eq!(day.status, 200, "{}", day.body);
    assert!(day.body.contains("Service level and abandonment per hour"));
    assert!(day.body.contains("class=\"hour-total\""));

    for (path, problem) in [
        ("/?period=year", "period \"year\""),
        (
            "/?period=custom&from=2025-01-01&to=2026-03-01",
            "at most 366 days",
        ),
        ("/?lang=de", "lang \"de\""),
        ("/?day=yesterday", "expected YYYY-MM-DD"),
        ("/dashboard.csv?table=everything", "table \"everything\""),
        ("/wallboard?day=2026-03-02", "unknown parameter \"day\""),
    ] {
        let reply = get(server.addr, path).await;
        assert_eq!(reply.status, 400, "{path}");
        assert!(reply.body.contains(problem), "{path}: {}", reply.body);
    }
}

#[tokio::test]
async fn csv_downloads_carry_the_tables_of_the_page() {
    let server = start().await;
    let trend = get(
        server.addr,
        &format!("/dashboard.csv?period=custom&from={FIRST}&to={LAST}&table=trend"),
    )
    .await;
    assert_eq!(trend.status, 200, "{}", trend.body);
    assert!(trend
        .headers
        .contains("content-type: text/csv; charset=utf-8"));
    assert!(trend.headers.contains(
        "content-disposition: attachment; filename=\"hotline-trend-2026-02-23_2026-03-08.csv\""
    ));
    let lines: Vec<&str> = trend.body.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines[0],
        "day,calls,offered,answered,answered_in_sl,abandoned,short_abandoned,service_level,\
         abandonment,asa_s,avg_talk_s,max_wait_s"
    );
    assert_eq!(lines.len(), 15, "a header and all 14 days");
    assert_eq!(lines[7], format!("{QUIET},0,0,0,0,0,0,,,,,"));
    let first: Vec<&Call> = server
        .calls
        .iter()
        .filter(|call| call.day == date(FIRST))
        .collect();
    assert!(lines[1].starts_with(&format!("{FIRST},{n},{n},", n = first.len())));
    assert!(lines[1].contains(&format!(",{:.4},", service_level(&first).unwrap())));

    let agents = get(
        server.addr,
        &format!("/?format=csv&table=agents&period=custom&from={FIRST}&to={LAST}&lang=en"),
    )
    .await;
    assert_eq!(agents.status, 200, "{}", agents.body);
    let water_1: Vec<&Call> = server
        .calls
        .iter()
        .filter(|call| call.agent.as_deref() == Some("sip:water-1@127.0.0.1:5301"))
        .collect();
    let talk: i64 = water_1.iter().map(|call| call.talk_s).sum();
    let expected = format!(
        "sip:water-1@127.0.0.1:5301,water-1,Vilnius Water,lt ru,on_call,125,Vilnius Water,{},{talk}.000,",
        water_1.len()
    );
    assert!(agents.body.contains(&expected), "{}", agents.body);

    let enterprises = get(
        server.addr,
        &format!("/dashboard.csv?period=week&day={FIRST}&lang=en"),
    )
    .await;
    assert_eq!(enterprises.status, 200, "{}", enterprises.body);
    assert!(enterprises
        .body
        .starts_with("\u{feff}enterprise,name,calls,offered,"));
    assert!(enterprises
        .body
        .contains("\r\nheating,Vilnius Heating Networks,"));
    // Every seeded call of the week is in one enterprise row.
    let week_calls: usize = enterprises
        .body
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(2).unwrap().parse::<usize>().unwrap())
        .sum();
    let expected_week = server
        .calls
        .iter()
        .filter(|call| call.day <= date(FIRST).checked_add_days(Days::new(6)).unwrap())
        .count();
    assert_eq!(week_calls, expected_week);

    let callbacks = get(
        server.addr,
        &format!("/dashboard.csv?period=custom&from={FIRST}&to={LAST}&table=callbacks&lang=en"),
    )
    .await;
    assert_eq!(callbacks.status, 200, "{}", callbacks.body);
    assert_eq!(
        callbacks.body.trim_start_matches('\u{feff}'),
        "enterprise,name,callback_offered,callback_accepted,callback_attempts,\
         callback_connected,callback_connected_in_sl,callback_failed,callback_service_level,\
         callback_asa_s\r\nheating,Vilnius Heating Networks,2,2,3,1,1,1,0.5000,260.000\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallboard_shows_each_enterprise_in_large_type() {
    let server = start().await;
    let page = get(server.addr, "/wallboard").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("<b id=\"total-waiting\" class=\"bad\">4</b>"));
    assert!(html.contains("<b id=\"total-longest\" class=\"bad\">0:48</b>"));
    // All nine configured groups, by Lithuanian name.
    assert_eq!(html.matches("<tr class=\"enterprise\"").count(), 9);
    let today = Utc::now().with_timezone(&Vilnius).date_naive();
    let water_today: Vec<&Call> = server
        .today
        .iter()
        .chain(&server.calls)
        .filter(|call| call.enterprise == "water" && call.day == today)
        .collect();
    let sl = service_level(&water_today).unwrap();
    let class = if sl >= 0.8 {
        "ok"
    } else if sl >= 0.6 {
        "warn"
    } else {
        "bad"
    };
    let answered = water_today
        .iter()
        .filter(|call| call.agent.is_some())
        .count();
    let expected = format!(
        "<tr class=\"enterprise\" data-group=\"water\"><td>Vilniaus vandenys</td>\
         <td class=\"big bad\">2</td><td class=\"bad\">0:48</td><td class=\"big ok\">1</td>\
         <td class=\"big {class}\" title=\"{answered}/{}\">{:.1}%</td></tr>",
        water_today.len(),
        sl * 100.0
    );
    assert!(
        html.contains(&expected),
        "wallboard lacks {expected}\n{html}"
    );
    // Heating: a caller waiting 9 s (under the 20 s target), nobody free.
    assert!(html.contains(
        "<td>Vilniaus šilumos tinklai</td><td class=\"big warn\">1</td><td class=\"warn\">0:09</td>\
         <td class=\"big bad\">0</td>"
    ));
    let english = get(server.addr, "/wallboard?lang=en").await;
    assert!(english.body.contains("<td>Civil Registry Office</td>"));

    let png = screenshot_async(
        format!("http://{}/wallboard?token={TOKEN}", server.addr),
        "wallboard.png",
        "1920,1080",
    )
    .await;
    println!("wallboard: {}", png.display());
}

/// A dashboard without seeded calls whose service loop answers the agents' commands: known
/// for the snapshot's agents (each change reported on `changes`, then published in the
/// snapshot as the real loop does a moment later), unknown otherwise.
struct FormServer {
    addr: SocketAddr,
    changes: mpsc::UnboundedReceiver<(String, Option<PauseReason>)>,
    _dir: tempfile::TempDir,
}

async fn start_forms(token: Option<&str>) -> FormServer {
    let routing = routing();
    let dir = tempfile::tempdir().unwrap();
    let store = CdrStore::connect(
        &format!("sqlite:{}", dir.path().join("cdr.sqlite").display()),
        &dir.path().join("spool.jsonl"),
    )
    .await
    .unwrap();
    let (live, live_rx) = watch::channel(snapshot(&routing));
    let (reload, _) = mpsc::channel::<ReloadRequest>(1);
    let (orders, _) = mpsc::channel::<CallOrder>(1);
    let (commands, mut received) = mpsc::channel::<Command>(4);
    let (changed, changes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(command) = received.recv().await {
            match command {
                Command::SetAgentState {
                    agent,
                    pause,
                    reply,
                } => {
                    let known = live.borrow().agents.iter().any(|a| a.agent == agent);
                    if known {
                        changed.send((agent.clone(), pause)).unwrap();
                    }
                    let _ = reply.send(known);
                    if known {
                        live.send_modify(|snapshot| {
                            for live in snapshot.agents.iter_mut().filter(|a| a.agent == agent) {
                                live.state = pause.map_or("idle", PauseReason::as_str).into();
                                live.since_s = 0;
                            }
                        });
                    }
                }
                Command::LiftBan { reply, .. } => {
                    let _ = reply.send(0);
                }
            }
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = HttpState {
        token: token.map(Into::into),
        store: Arc::new(store),
        thresholds: Thresholds::default(),
        live: live_rx,
        reload,
        calls: orders,
        commands,
    };
    tokio::spawn(async move { serve(listener, state).await });
    FormServer {
        addr,
        changes,
        _dir: dir,
    }
}

/// One request with the given extra header lines (`Name: value\r\n` each) and body.
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("reply within 30 s")
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body,
    }
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

fn cookie() -> String {
    format!("Cookie: hotline_token={}\r\n", hex::encode(TOKEN))
}

/// The value of the first hidden CSRF field of a page.
fn csrf_of(html: &str) -> String {
    let marker = "<input type=\"hidden\" name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// The agent's form on the page (from its action to `</form>`).
fn form_of<'a>(html: &'a str, action: &str) -> &'a str {
    let start = html
        .find(&format!("action=\"{action}"))
        .unwrap_or_else(|| panic!("no form posting to {action}"));
    &html[start..start + html[start..].find("</form>").unwrap()]
}

const WATER_2: &str = "sip:water-2@127.0.0.1:5302";
const HEATING_2: &str = "sip:heating-2@127.0.0.1:5312";

#[tokio::test]
async fn agent_buttons_post_forms_with_the_cookie_and_the_csrf_field() {
    let mut server = start_forms(Some(TOKEN)).await;
    let addr = server.addr;
    // The page (opened with the cookie, as a browser does after `?token=`): one form per
    // configured agent, each with the CSRF field, buttons by state, posting to the page's query.
    let page = send(
        addr,
        "GET",
        "/?period=week&day=2026-03-04&lang=en",
        &cookie(),
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let html = &page.body;
    let csrf = csrf_of(html);
    assert_eq!(csrf.len(), 64);
    assert_eq!(
        html.matches("<form class=\"agent-state\" method=\"post\"")
            .count(),
        html.matches(&format!("name=\"csrf\" value=\"{csrf}\""))
            .count()
    );
    assert!(html.matches("<form class=\"agent-state\"").count() >= 8);
    assert!(html.contains("<th class=\"text\">Actions</th>"));
    let query = "?period=week&amp;day=2026-03-02&amp;lang=en\"";
    let idle = form_of(html, &format!("/agents/{WATER_2}/state{query}"));
    assert!(idle.contains("<button type=\"submit\" name=\"state\" value=\"paused\">Pause</button>"));
    assert!(idle
        .contains("<button type=\"submit\" name=\"state\" value=\"logged_out\">Log out</button>"));
    assert!(!idle.contains("value=\"available\""));
    let paused = form_of(html, &format!("/agents/{HEATING_2}/state{query}"));
    assert!(paused.contains("value=\"available\">Make available</button>"));
    assert!(!paused.contains("value=\"paused\""));
    let logged_out = form_of(html, "/agents/sip:routes-1@127.0.0.1:5323/state");
    assert!(
        logged_out.contains("value=\"available\"") && !logged_out.contains("value=\"logged_out\"")
    );
    // In Lithuanian by default.
    let lt = send(addr, "GET", "/", &cookie(), "").await;
    assert!(
        lt.body.contains(">Pertrauka</button>") && lt.body.contains(">Grąžinti į darbą</button>")
    );
    assert_eq!(csrf_of(&lt.body), csrf);

    // Cookie + CSRF: the service loop is asked, and the answer leads back to the same page,
    // which shows the new state.
    let headers = format!("{}{FORM}", cookie());
    let path = format!("/agents/{WATER_2}/state?period=week&day=2026-03-02&lang=en");
    let body = format!("csrf={csrf}&state=paused");
    let reply = send(addr, "POST", &path, &headers, &body).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert!(
        reply
            .headers
            .contains("\r\nlocation: /?period=week&day=2026-03-02&lang=en#agents"),
        "{}",
        reply.headers
    );
    assert!(!reply.headers.contains("set-cookie"));
    assert_eq!(
        server.changes.try_recv().unwrap(),
        (WATER_2.to_owned(), Some(PauseReason::Break))
    );
    let after = send(
        addr,
        "GET",
        "/?period=week&day=2026-03-02&lang=en",
        &cookie(),
        "",
    )
    .await;
    let row = form_of(&after.body, &format!("/agents/{WATER_2}/state"));
    assert!(row.contains("value=\"available\""), "{row}");
    assert!(after.body.contains("Paused: break 0:00"));

    for (agent, state, pause) in [
        (WATER_2, "logged_out", Some(PauseReason::LoggedOut)),
        (HEATING_2, "available", None),
    ] {
        // The agent's id percent-encoded, as the page writes it (here nothing to encode
        // but `:`/`@`, which stay), today's page in Lithuanian: back to `/`.
        let reply = send(
            addr,
            "POST",
            &format!("/agents/{agent}/state"),
            &headers,
            &format!("state={state}&csrf={csrf}"),
        )
        .await;
        assert_eq!(reply.status, 303, "{state}: {}", reply.body);
        assert!(
            reply.headers.contains("\r\nlocation: /#agents"),
            "{}",
            reply.headers
        );
        assert_eq!(
            server.changes.try_recv().unwrap(),
            (agent.to_owned(), pause)
        );
    }

    // Without the CSRF field, or a wrong one: 403 and the service is not asked.
    let wrong = format!(
        "{}{}",
        &csrf[..63],
        if csrf.ends_with('0') { '1' } else { '0' }
    );
    for body in [
        "state=paused".to_owned(),
        format!("csrf={wrong}&state=paused"),
        "csrf=&state=paused".to_owned(),
        format!("csrf={}&state=paused", hex::encode(TOKEN)),
        format!("csrf={csrf}&csrf={csrf}&state=paused"),
    ] {
        let reply = send(
            addr,
            "POST",
            &format!("/agents/{WATER_2}/state"),
            &headers,
            &body,
        )
        .await;
        assert_eq!(reply.status, 403, "{body}: {}", reply.body);
        assert!(reply.body.contains("csrf"), "{}", reply.body);
    }
    // A body that is no form at all cannot carry the field either.
    let json = send(
        addr,
        "POST",
        &format!("/agents/{WATER_2}/state"),
        &format!("{}Content-Type: application/json\r\n", cookie()),
        "{\"state\": \"paused\"}",
    )
    .await;
    assert_eq!(json.status, 403, "{}", json.body);

    // Without the cookie: 401, whatever the form holds; a token in the query does not count
    // for a post, and the cookie does not open the JSON API.
    let body = format!("csrf={csrf}&state=paused");
    for (path, headers) in [
        (format!("/agents/{WATER_2}/state"), FORM.to_owned()),
        (
            format!("/agents/{WATER_2}/state?token={TOKEN}"),
            FORM.to_owned(),
        ),
        (
            format!("/agents/{WATER_2}/state"),
            format!("Cookie: hotline_token={}\r\n{FORM}", hex::encode("wrong")),
        ),
    ] {
        let reply = send(addr, "POST", &path, &headers, &body).await;
        assert_eq!(reply.status, 401, "{path} {headers}: {}", reply.body);
    }
    let api = send(
        addr,
        "POST",
        &format!("/api/agents/{WATER_2}/state"),
        &format!("{}Content-Type: application/json\r\n", cookie()),
        "{\"state\": \"paused\"}",
    )
    .await;
    assert_eq!(api.status, 401);

    // Unknown agent: 404; a bad state or page query: 400.
    let reply = send(addr, "POST", "/agents/user:nobody/state", &headers, &body).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(
        reply.body.contains("no agent user:nobody"),
        "{}",
        reply.body
    );
    let reply = send(
        addr,
        "POST",
        &format!("/agents/{WATER_2}/state"),
        &headers,
        &format!("csrf={csrf}&state=auto_paused"),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = send(
        addr,
        "POST",
        &format!("/agents/{WATER_2}/state?next=//evil.example"),
        &headers,
        &body,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        server.changes.try_recv().is_err(),
        "nothing else reached the service"
    );
}

#[tokio::test]
async fn without_a_token_the_forms_still_need_the_csrf_field() {
    let mut server = start_forms(None).await;
    let addr = server.addr;
    let page = send(addr, "GET", "/?lang=en", "", "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    assert_eq!(csrf.len(), 64);
    // Keyed with the process's random secret, not with some well-known value.
    assert_ne!(
        csrf,
        csrf_of(
            &send(
                start_forms(Some(TOKEN)).await.addr,
                "GET",
                "/",
                &cookie(),
                ""
            )
            .await
            .body
        )
    );
    let path = format!("/agents/{WATER_2}/state?lang=en");
    let reply = send(addr, "POST", &path, FORM, "state=paused").await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let reply = send(
        addr,
        "POST",
        &path,
        FORM,
        &format!("state=paused&csrf={}", "0".repeat(64)),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(server.changes.try_recv().is_err());
    let reply = send(
        addr,
        "POST",
        &path,
        FORM,
        &format!("state=paused&csrf={csrf}"),
    )
    .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert!(
        reply.headers.contains("\r\nlocation: /?lang=en#agents"),
        "{}",
        reply.headers
    );
    assert_eq!(
        server.changes.try_recv().unwrap(),
        (WATER_2.to_owned(), Some(PauseReason::Break))
    );
    let reply = send(
        addr,
        "POST",
        "/agents/user:nobody/state",
        FORM,
        &format!("state=paused&csrf={csrf}"),
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
}
