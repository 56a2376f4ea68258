//! Call records and statistics through the running service, with SIPp callers of known
//! outcomes (bridged to a SIPp UAS agent, abandoned in the queue after 8 s and after 3 s,
//! abandoned in the menus, refused for want of a codec): `hotline stats` (the binary) and
//! `GET /api/stats` give exactly the expected counts and service level, the same bytes, and an
//! ASA and longest wait that agree with the records of `/api/calls`; each record carries the
//! RTP the caller sent. On SQLite and on a real PostgreSQL. Then PostgreSQL goes away: down
//! when the service starts, back, down again during 50 calls, back: every call is recorded
//! exactly once.

mod common;
mod pg_server;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use chrono_tz::Europe::Vilnius;
use common::{log_field, wait_for_count, Service, Sipp, SippRun, SippUas};
use hotline::cdr::{CallFilter, CallRecord, CdrStore, Outcome, Page};
use pg_server::TestPostgres;
use serde_json::Value;

const TOKEN: &str = "cdr-service-test-token";
/// Every call of a run ends within this after SIPp returns (BYE answered, record sent).
const RECORD_DEADLINE: Duration = Duration::from_secs(20);
/// The writer retries the spool every 10 s; PostgreSQL needs a moment to start.
const REPLAY_DEADLINE: Duration = Duration::from_secs(40);
/// `dtmf_2833_1.pcap` and `dtmf_2833_2.pcap`: 10 RTP packets, sequence numbers 7984..=7991
/// (the end of the event sent three times), so nothing is lost.
const DTMF_PCAP_PACKETS: u64 = 10;

/// The fixture routing with the desk agents moved onto `uas`.
fn routing_for(uas: &SippUas) -> PathBuf {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/routing/cdr_sipp.toml");
    let routing = fs::read_to_string(&fixture)
        .unwrap()
        .replace("127.0.0.1:5601", &format!("127.0.0.1:{}", uas.port));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cdr-sipp-{}-{}.toml",
        std::process::id(),
        uas.port
    ));
    fs::write(&path, routing).unwrap();
    path
}

fn start_service(routing: &Path, database_url: &str) -> Service {
    Service::start(&[
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
        ("HOTLINE__DATABASE__URL", database_url),
        ("HOTLINE__HTTP__TOKEN", TOKEN),
    ])
}

fn http_addr(service: &Service) -> SocketAddr {
    let line = service
        .wait_for_log_line(
            |line| line.contains("HTTP API and dashboard listening"),
            Duration::from_secs(5),
        )
        .expect("the service logs its HTTP address");
    log_field(&line, "http_addr")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no http_addr in {line:?}"))
}

/// One HTTP/1.0 GET with the token; returns the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The local days around today, so calls near midnight are in range too: `(from, to)`.
fn day_range() -> (String, String) {
    let today = Utc::now().with_timezone(&Vilnius).date_naive();
    let from = today - Days::new(1);
    let to = today + Days::new(2);
    (from.to_string(), to.to_string())
}

/// `hotline stats` run as a supervisor would, against the service's database.
fn cli_stats(service: &Service, database_url: &str, by: &str) -> String {
    let (from, to) = day_range();
    let output = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["stats", "--from", &from, "--to", &to, "--by", by])
        .args(["--format", "json"])
        .env("HOTLINE__DATABASE__URL", database_url)
        .current_dir(service.dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hotline stats failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn api_stats(addr: SocketAddr, by: &str) -> String {
    let (from, to) = day_range();
    let (status, body) = get(
        addr,
        &format!("/api/stats?from={from}&to={to}&by={by}&format=json"),
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// The completed records, as the API lists them.
fn api_calls(addr: SocketAddr) -> Vec<CallRecord> {
    let (from, to) = day_range();
    let (status, body) = get(addr, &format!("/api/calls?from={from}&to={to}&limit=1000"));
    assert_eq!(status, 200, "{body}");
    let listing: Value = serde_json::from_str(&body).unwrap();
    serde_json::from_value(listing["calls"].clone()).unwrap()
}

/// Waits (polling the API) until `count` completed records are stored.
fn wait_for_records(addr: SocketAddr, count: usize) -> Vec<CallRecord> {
    let deadline = Instant::now() + RECORD_DEADLINE;
    loop {
        let calls = api_calls(addr);
        if calls.len() >= count || Instant::now() > deadline {
            return calls;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn all_succeeded(run: &SippRun, calls: u64) {
    assert_eq!(
        (run.exit_code, run.stats.successful, run.stats.failed),
        (Some(0), calls, 0),
        "{}",
        run.diagnostics()
    );
}

/// The row of a `--by` statistics listing whose `key` column is `value`.
fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|row| row[key] == value)
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {rows:#}"))
}

/// The counts of a statistics row, by column name.
fn counts(row: &Value, names: &[&str]) -> BTreeMap<String, u64> {
    names
        .iter()
        .map(|name| {
            let count = row[*name]
                .as_u64()
                .unwrap_or_else(|| panic!("no count {name} in {row}"));
            ((*name).to_owned(), count)
        })
        .collect()
}

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(name, count)| ((*name).to_owned(), *count))
        .collect()
}

fn millis(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

const FIGURES: &[&str] = &[
    "calls",
    "offered",
    "answered",
    "answered_in_sl",
    "abandoned",
    "short_abandoned",
    "connected",
    "abandoned_queue",
    "abandoned_menu",
    "rejected",
];

/// Eleven calls of known outcome through the running service, then the statistics.
fn scripted_calls_give_exact_statistics(database_url: &str) {
    let uas = SippUas::start();
    let service = start_service(&routing_for(&uas), database_url);
    let http = http_addr(&service);

    // The callers run side by side; each script's outcome does not depend on the others.
    thread::scope(|scope| {
        let runs = [
            scope.spawn(|| {
                (
                    6,
                    Sipp::new("agents_load.xml").calls(6).rate(10).run(&service),
                )
            }),
            scope.spawn(|| {
                let run = Sipp::new("cdr_key2_hold.xml").pause(Duration::from_secs(8));
                (1, run.run(&service))
            }),
            scope.spawn(|| {
                // Longer than the 2.3 s "connecting you" after the key, so the caller is surely
                // queued before hanging up; still a short abandon (under 5 s).
                let run = Sipp::new("cdr_key2_hold.xml").pause(Duration::from_secs(3));
                (1, run.run(&service))
            }),
            scope.spawn(|| (1, Sipp::new("uac_basic.xml").run(&service))),
            scope.spawn(|| (2, Sipp::new("uac_g729.xml").calls(2).run(&service))),
        ];
        for run in runs {
            let (calls, run) = run.join().unwrap();
            all_succeeded(&run, calls);
        }
    });

    let records = wait_for_records(http, 11);
    assert_eq!(records.len(), 11, "{records:#?}");
    let outcomes: BTreeMap<Outcome, usize> =
        records.iter().fold(BTreeMap::new(), |mut counts, record| {
            *counts.entry(record.outcome).or_default() += 1;
            counts
        });
    assert_eq!(
        outcomes,
        BTreeMap::from([
            (Outcome::Connected, 6),
            (Outcome::AbandonedMenu, 1),
            (Outcome::AbandonedQueue, 2),
            (Outcome::Rejected, 2),
        ])
    );
    // The caller's RTP (the key's events) is in every record of a call that pressed a key.
    for record in records.iter().filter(|r| r.enterprise.is_some()) {
        assert_eq!(
            (record.rtp_packets, record.rtp_lost),
            (DTMF_PCAP_PACKETS, 0),
            "{record:#?}"
        );
        // Only telephone-events (one timestamp for the whole key press): no audio packet,
        // so no jitter, where counting the events would have read ~6.4 ms of it.
        assert_eq!(record.rtp_jitter_ms, 0.0, "{record:#?}");
    }

    for by in ["enterprise", "outcome", "language"] {
        assert_eq!(
            cli_stats(&service, database_url, by),
            api_stats(http, by),
            "`hotline stats --by {by}` and /api/stats?by={by} differ"
        );
    }
    let by_enterprise: Value =
        serde_json::from_str(&cli_stats(&service, database_url, "enterprise")).unwrap();
    let desk = row(&by_enterprise, "enterprise", "desk");
    let backlog = row(&by_enterprise, "enterprise", "backlog");
    let nowhere = row(&by_enterprise, "enterprise", "(none)");
    assert_eq!(
        counts(desk, FIGURES),
        expected(&[
            ("calls", 6),
            ("offered", 6),
            ("answered", 6),
            ("answered_in_sl", 6),
            ("abandoned", 0),
            ("short_abandoned", 0),
            ("connected", 6),
            ("abandoned_queue", 0),
            ("abandoned_menu", 0),
            ("rejected", 0),
        ])
    );
    assert_eq!(desk["service_level"], 1.0);
    // backlog: the 8 s wait is an abandon, the 3 s one a short abandon.
    assert_eq!(
        counts(backlog, FIGURES),
        expected(&[
            ("calls", 2),
            ("offered", 2),
            ("answered", 0),
            ("answered_in_sl", 0),
            ("abandoned", 1),
            ("short_abandoned", 1),
            ("connected", 0),
            ("abandoned_queue", 2),
            ("abandoned_menu", 0),
            ("rejected", 0),
        ])
    );
    assert_eq!(backlog["service_level"], 0.0);
    assert_eq!(backlog["asa_s"], Value::Null);
    assert_eq!(
        counts(nowhere, FIGURES),
        expected(&[
            ("calls", 3),
            ("offered", 0),
            ("answered", 0),
            ("answered_in_sl", 0),
            ("abandoned", 0),
            ("short_abandoned", 0),
            ("connected", 0),
            ("abandoned_queue", 0),
            ("abandoned_menu", 1),
            ("rejected", 2),
        ])
    );
    assert_eq!(nowhere["service_level"], Value::Null);

    // Over all calls: SL = 6 answered in 20 s / (6 answered + 1 abandoned).
    let by_language: Value =
        serde_json::from_str(&cli_stats(&service, database_url, "language")).unwrap();
    let english = row(&by_language, "language", "en");
    assert_eq!(english["calls"], 9, "{by_language:#}");
    assert_eq!(english["service_level"], 6.0 / 7.0_f64);

    // ASA and the longest wait agree with the records themselves.
    let waits = |enterprise: &str| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.enterprise.as_deref() == Some(enterprise))
            .map(|r| r.wait_seconds().unwrap())
            .collect()
    };
    let desk_waits = waits("desk");
    // The definitions: the mean of the millisecond waits, rounded to the millisecond.
    let sum_ms: i64 = desk_waits.iter().map(|wait| millis(*wait)).sum();
    let mean_ms = (sum_ms as f64 / desk_waits.len() as f64).round() as i64;
    assert_eq!(millis(desk["asa_s"].as_f64().unwrap()), mean_ms);
    let mean = mean_ms as f64 / 1000.0;
    // The wait holds the 1.78 s connecting prompt (its last frame leaves 20 ms before its
    // end); then the UAS answers at once.
    assert!((1.7..2.5).contains(&mean), "ASA {mean} s");
    let backlog_waits = waits("backlog");
    let longest = backlog_waits.iter().cloned().fold(0.0, f64::max);
    assert_eq!(
        millis(backlog["max_wait_s"].as_f64().unwrap()),
        millis(longest)
    );
    // The key ends 140 ms into the 8 s hold: the wait is the rest of it.
    assert!((7.0..8.5).contains(&longest), "{backlog_waits:?}");
    let shortest = backlog_waits.iter().cloned().fold(f64::MAX, f64::min);
    assert!((2.0..3.5).contains(&shortest), "{backlog_waits:?}");
}

#[test]
fn sipp_calls_give_exact_statistics_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cdr.db").display());
    scripted_calls_give_exact_statistics(&url);
}

#[test]
fn sipp_calls_give_exact_statistics_on_postgres() {
    let postgres = TestPostgres::start();
    scripted_calls_give_exact_statistics(&postgres.url());
}

/// `hotline_cdr_spooled_records` from `/metrics`.
fn spooled_records(addr: SocketAddr) -> u64 {
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("hotline_cdr_spooled_records "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hotline_cdr_spooled_records in {metrics}"))
}

/// The Call-IDs SIPp used, from its message trace.
fn sipp_call_ids(run: &SippRun) -> BTreeSet<String> {
    let trace = fs::read_to_string(run.dir.join("messages.log")).unwrap();
    trace
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Call-ID:"))
        .map(|id| id.trim().to_owned())
        .collect()
}

#[test]
fn postgres_outage_during_fifty_calls_loses_and_duplicates_no_record() {
    const CALLS: u32 = 50;
    let postgres = TestPostgres::start();
    postgres.stop();
    let uas = SippUas::start();
    // The service starts although its database is down: records wait in the spool.
    let service = start_service(&routing_for(&uas), &postgres.url());
    assert!(service
        .wait_for_log_line(
            |line| line.contains("CDR database unreachable at start"),
            Duration::from_secs(10)
        )
        .is_some());

    let run = thread::scope(|scope| {
        let callers = scope.spawn(|| {
            Sipp::new("agents_load.xml")
                .calls(CALLS)
                .rate(2)
                .limit(10)
                .run(&service)
        });
        // Back after ten calls: the spool is replayed while calls go on...
        assert!(wait_for_count(
            &service,
            "call ended",
            10,
            RECORD_DEADLINE * 2
        ));
        postgres.start_again();
        assert!(
            wait_for_count(&service, "CDR spool replayed", 1, REPLAY_DEADLINE),
            "no spool replay after PostgreSQL came back"
        );
        // ...then down again while the remaining calls are still coming in.
        postgres.stop();
        callers.join().unwrap()
    });
    all_succeeded(&run, u64::from(CALLS));
    assert!(wait_for_count(
        &service,
        "call ended",
        CALLS as usize,
        RECORD_DEADLINE
    ));
    let log = service.log_lines();
    let spooled_during_second_outage = log
        .iter()
        .skip_while(|line| !line.contains("CDR spool replayed"))
        .any(|line| line.contains("CDR write failed; spooling"));
    assert!(
        spooled_during_second_outage,
        "the second outage spooled nothing: stopped too late to test anything"
    );
    let http = http_addr(&service);
    assert!(
        spooled_records(http) > 0,
        "/metrics shows no record waiting while PostgreSQL is down"
    );
    postgres.start_again();
    assert!(
        wait_for_count(&service, "CDR spool replayed", 2, REPLAY_DEADLINE),
        "no second spool replay"
    );
    let replays = service.log_lines();
    let last_replay = replays
        .iter()
        .rev()
        .find(|line| line.contains("CDR spool replayed"))
        .unwrap();
    assert_eq!(log_field(last_replay, "remaining").as_deref(), Some("0"));
    assert_eq!(spooled_records(http), 0);

    // Exactly SIPp's calls, each complete, with its whole audit trail numbered 0..n.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = CdrStore::connect(&postgres.url(), &service.dir().join("reader-spool.jsonl"))
            .await
            .unwrap();
        let page = Page {
            limit: 1000,
            offset: 0,
        };
        let records = store.calls(&CallFilter::default(), page).await.unwrap();
        let stored: BTreeSet<String> = records.iter().map(|r| r.call_id.clone()).collect();
        assert_eq!(records.len(), stored.len(), "a call stored twice");
        assert_eq!(stored, sipp_call_ids(&run));
        let mut trail_lengths = BTreeSet::new();
        for record in &records {
            assert_eq!(record.outcome, Outcome::Connected, "{record:#?}");
            let events = store.events(&record.call_id).await.unwrap();
            let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (0..events.len() as u32).collect::<Vec<_>>());
            trail_lengths.insert(events.len());
        }
        assert_eq!(
            trail_lengths.len(),
            1,
            "the same script leaves trails of different lengths: {trail_lengths:?}"
        );
    });
}

/// A completed call that arrived `days_ago` days ago.
fn old_call(call_id: &str, days_ago: i64) -> (hotline::cdr::CallStart, CallRecord) {
    let arrived = Utc::now() - chrono::Duration::days(days_ago);
    let ended = arrived + chrono::Duration::seconds(30);
    let start = hotline::cdr::CallStart {
        call_id: call_id.to_owned(),
        caller: Some("37060000000".to_owned()),
        trunk: "udp:127.0.0.1:5060".to_owned(),
        arrived,
    };
    let record = CallRecord {
        call_id: call_id.to_owned(),
        caller: start.caller.clone(),
        trunk: start.trunk.clone(),
        arrived,
        ivr_answered: Some(arrived),
        language_chosen: None,
        group_chosen: None,
        queue_entered: None,
        agent_answered: None,
        ended,
        language: Some("en".to_owned()),
        menu_path: String::new(),
        dtmf_mode: hotline::cdr::DtmfMode::None,
        enterprise: None,
        agent: None,
        transfer_mode: None,
        outcome: Outcome::AbandonedMenu,
        rtp_packets: 0,
        rtp_lost: 0,
        rtp_jitter_ms: 0.0,
        callback_of: None,
    };
    (start, record)
}

#[test]
fn the_service_applies_retention_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cdr.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let spool = dir.path().join("seed-spool.jsonl");
    runtime.block_on(async {
        let store = CdrStore::connect(&url, &spool).await.unwrap();
        for (call_id, days_ago) in [("last-year", 400), ("last-week", 7)] {
            let (start, record) = old_call(call_id, days_ago);
            store.call_started(start).await.unwrap();
            store.call_ended(record, Vec::new()).await.unwrap();
        }
    });
    let service = Service::start(&[
        ("HOTLINE__DATABASE__URL", url.as_str()),
        ("HOTLINE__DATABASE__RETENTION_DAYS", "30"),
    ]);
    let applied = service
        .wait_for_log_line(
            |line| line.contains("call-record retention applied"),
            Duration::from_secs(10),
        )
        .expect("retention runs at start");
    assert_eq!(
        log_field(&applied, "calls").as_deref(),
        Some("1"),
        "{applied}"
    );
    runtime.block_on(async {
        let store = CdrStore::connect(&url, &spool).await.unwrap();
        let page = Page {
            limit: 10,
            offset: 0,
        };
        let left: Vec<String> = store
            .calls(&CallFilter::default(), page)
            .await
            .unwrap()
            .into_iter()
            .map(|record| record.call_id)
            .collect();
        assert_eq!(left, vec!["last-week".to_owned()]);
    });
}
