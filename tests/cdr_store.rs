//! The CDR store end to end on SQLite (temp file) and a real PostgreSQL server: the same
//! scripted calls must give the same exact figures on both; outage, slow-database, writer,
//! idempotence and retention behaviour; closing the records a killed run left open.

mod pg_server;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hotline::cdr::{
    pseudonymise, CallEvent, CallFilter, CallRecord, CallStart, CallbackRow, CallbackStatus,
    CdrError, CdrSettings, CdrStore, CdrWriter, Delivery, Dimension, DtmfMode, Outcome, Page,
    PurgeMode, StatsQuery, StatsRow, TransferMode,
};
use pg_server::TestPostgres;
use sqlx::Connection;

/// 09:00 in Vilnius on 2 March 2026 (UTC+2).
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap()
}

fn ms(millis: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(millis)
}

/// One scripted call. Offsets in milliseconds.
struct Script {
    id: &'static str,
    arrive_ms: i64,
    language: Option<&'static str>,
    enterprise: Option<&'static str>,
    path: &'static str,
    outcome: Outcome,
    wait_ms: i64,
    talk_ms: i64,
}

fn script() -> Vec<Script> {
    let call =
        |id, arrive_s: i64, language, enterprise, path, outcome, wait_s: i64, talk_ms| Script {
            id,
            arrive_ms: arrive_s * 1000,
            language,
            enterprise,
            path,
            outcome,
            wait_ms: wait_s * 1000,
            talk_ms,
        };
    use Outcome::*;
    vec![
        call(
            "c01",
            0,
            Some("lt"),
            Some("heating"),
            "language lt > main:2 > group heating",
            Connected,
            10,
            120_000,
        ),
        call(
            "c02",
            60,
            Some("lt"),
            Some("heating"),
            "language lt > main:2 > group heating",
            Connected,
            25,
            60_000,
        ),
        call(
            "c03",
            120,
            Some("en"),
            Some("heating"),
            "language en > main:2 > group heating",
            AbandonedQueue,
            40,
            0,
        ),
        call(
            "c04",
            180,
            Some("lt"),
            Some("heating"),
            "language lt > main:2 > group heating",
            AbandonedQueue,
            3,
            0,
        ),
        call(
            "c05",
            240,
            Some("ru"),
            Some("water"),
            "language ru > main:1 > group water",
            Transferred,
            15,
            0,
        ),
        call(
            "c06",
            300,
            Some("lt"),
            Some("water"),
            "language lt > main:1 > group water",
            QueueTimeout,
            300,
            0,
        ),
        call(
            "c07",
            3600,
            Some("en"),
            Some("water"),
            "language en > main:1 > group water",
            Connected,
            20,
            30_500,
        ),
        call(
            "c08",
            3660,
            Some("lt"),
            None,
            "language lt > main:9 > info hours",
            InfoOnly,
            0,
            0,
        ),
        call(
            "c09",
            3720,
            Some("pl"),
            None,
            "language pl > main",
            NoInput,
            0,
            0,
        ),
        call("c10", 3780, None, None, "", Rejected, 0, 0),
        call(
            "c11",
            3840,
            Some("lt"),
            Some("water"),
            "language lt > main:1 > group water > water menu",
            AbandonedMenu,
            8,
            0,
        ),
        // The day before: outside every query window below.
        call(
            "c00",
            -86_400,
            Some("lt"),
            Some("heating"),
            "language lt > main:2 > group heating",
            Connected,
            5,
            10_000,
        ),
    ]
}

fn start_of(script: &Script) -> CallStart {
    CallStart {
        call_id: script.id.into(),
        caller: Some(format!("+3706{}", &script.id[1..])),
        trunk: "127.0.0.1:5080".into(),
        arrived: base() + ms(script.arrive_ms),
    }
}

fn record_of(script: &Script) -> (CallRecord, Vec<CallEvent>) {
    let arrived = base() + ms(script.arrive_ms);
    let answered = matches!(script.outcome, Outcome::Connected | Outcome::Transferred);
    let group_chosen = script.enterprise.map(|_| arrived + ms(30_000));
    let agent_answered = group_chosen
        .filter(|_| answered)
        .map(|g| g + ms(script.wait_ms));
    let ended = match (group_chosen, agent_answered) {
        (_, Some(answer)) => answer + ms(script.talk_ms),
        (Some(chosen), None) => chosen + ms(script.wait_ms),
        (None, None) => arrived + ms(60_000),
    };
    let rejected = script.outcome == Outcome::Rejected;
    let record = CallRecord {
        call_id: script.id.into(),
        caller: start_of(script).caller,
        trunk: "127.0.0.1:5080".into(),
        arrived,
        ivr_answered: (!rejected).then(|| arrived + ms(1000)),
        language_chosen: script.language.map(|_| arrived + ms(10_000)),
        group_chosen,
        queue_entered: group_chosen
            .filter(|_| script.outcome != Outcome::AbandonedMenu)
            .map(|g| g + ms(1000).min(ms(script.wait_ms))),
        agent_answered,
        ended,
        language: script.language.map(Into::into),
        menu_path: script.path.into(),
        dtmf_mode: if rejected {
            DtmfMode::None
        } else {
            DtmfMode::Rfc4733
        },
        enterprise: script.enterprise.map(Into::into),
        agent: agent_answered.map(|_| "agent-7".into()),
        transfer_mode: match script.outcome {
            Outcome::Connected => Some(TransferMode::Bridge),
            Outcome::Transferred => Some(TransferMode::Refer),
            _ => None,
        },
        outcome: script.outcome,
        rtp_packets: if rejected { 0 } else { 1500 },
        rtp_lost: if rejected { 0 } else { 3 },
        rtp_jitter_ms: if rejected { 0.0 } else { 1.25 },
        callback_of: None,
    };
    let events = vec![
        CallEvent {
            call_id: script.id.into(),
            seq: 0,
            at: arrived,
            kind: "arrive".into(),
            detail: String::new(),
        },
        CallEvent {
            call_id: script.id.into(),
            seq: 1,
            at: ended,
            kind: "end".into(),
            detail: script.outcome.as_str().into(),
        },
    ];
    (record, events)
}

async fn play_script(store: &CdrStore) {
    for call in script() {
        assert_eq!(
            store.call_started(start_of(&call)).await.unwrap(),
            Delivery::Stored
        );
        let (record, events) = record_of(&call);
        assert_eq!(
            store.call_ended(record, events).await.unwrap(),
            Delivery::Stored
        );
    }
    // A call still in progress: visible as live, not counted.
    store
        .call_started(CallStart {
            call_id: "live".into(),
            caller: None,
            trunk: "127.0.0.1:5080".into(),
            arrived: base() + ms(3_900_000),
        })
        .await
        .unwrap();
}

fn day_query(by: Vec<Dimension>) -> StatsQuery {
    StatsQuery::new(base() - ms(3_600_000), base() + ms(20 * 3_600_000), by)
}

fn keys(row: &StatsRow) -> Vec<&str> {
    row.keys.iter().map(|(_, key)| key.as_str()).collect()
}

/// (keys, counts, service_level, asa_s)
type LanguageSummary<'a> = (Vec<&'a str>, Counts, Option<f64>, Option<f64>);

/// (calls, offered, answered, answered_in_sl, abandoned, short_abandoned)
type Counts = (u64, u64, u64, u64, u64, u64);

/// Counts of a row, in the order of `Counts`.
fn counts(row: &StatsRow) -> Counts {
    (
        row.calls,
        row.offered,
        row.answered,
        row.answered_in_sl,
        row.abandoned,
        row.short_abandoned,
    )
}

/// Every figure below is worked out by hand from `script()` (see DEFINITIONS).
async fn assert_scripted_statistics(store: &CdrStore) {
    play_script(store).await;

    let total = store.stats(&day_query(vec![])).await.unwrap();
    assert_eq!(total.len(), 1);
    let total = &total[0];
    assert_eq!(counts(total), (11, 8, 4, 3, 2, 1));
    assert_eq!(total.service_level, Some(0.5)); // 3 / (4 + 2)
    assert_eq!(total.asa_s, Some(17.5)); // (10 + 25 + 15 + 20) / 4
    assert_eq!(total.avg_talk_s, Some(70.167)); // (120 + 60 + 30.5) / 3
    assert_eq!(total.max_wait_s, Some(300.0));
    for (outcome, expected) in [
        (Outcome::Connected, 3),
        (Outcome::Transferred, 1),
        (Outcome::AbandonedQueue, 2),
        (Outcome::AbandonedMenu, 1),
        (Outcome::QueueTimeout, 1),
        (Outcome::InfoOnly, 1),
        (Outcome::NoInput, 1),
        (Outcome::Rejected, 1),
        (Outcome::Error, 0),
    ] {
        assert_eq!(total.outcome_count(outcome), expected, "{outcome}");
    }

    let by_enterprise = store
        .stats(&day_query(vec![Dimension::Enterprise]))
        .await
        .unwrap();
    assert_eq!(
        by_enterprise.iter().map(keys).collect::<Vec<_>>(),
        vec![vec!["(none)"], vec!["heating"], vec!["water"]]
    );
    assert_eq!(counts(&by_enterprise[0]), (3, 0, 0, 0, 0, 0));
    assert_eq!(by_enterprise[0].service_level, None);
    assert_eq!(by_enterprise[0].asa_s, None);
    assert_eq!(counts(&by_enterprise[1]), (4, 4, 2, 1, 1, 1));
    assert_eq!(by_enterprise[1].service_level, Some(1.0 / 3.0));
    assert_eq!(by_enterprise[1].asa_s, Some(17.5));
    assert_eq!(by_enterprise[1].avg_talk_s, Some(90.0));
    assert_eq!(by_enterprise[1].max_wait_s, Some(40.0));
    assert_eq!(counts(&by_enterprise[2]), (4, 4, 2, 2, 1, 0));
    assert_eq!(by_enterprise[2].service_level, Some(2.0 / 3.0));
    assert_eq!(by_enterprise[2].asa_s, Some(17.5));
    assert_eq!(by_enterprise[2].avg_talk_s, Some(30.5));
    assert_eq!(by_enterprise[2].max_wait_s, Some(300.0));

    let by_language = store
        .stats(&day_query(vec![Dimension::Language]))
        .await
        .unwrap();
    let summary: Vec<LanguageSummary> = by_language
        .iter()
        .map(|row| (keys(row), counts(row), row.service_level, row.asa_s))
        .collect();
    assert_eq!(
        summary,
        vec![
            (vec!["(none)"], (1, 0, 0, 0, 0, 0), None, None),
            (vec!["en"], (2, 2, 1, 1, 1, 0), Some(0.5), Some(20.0)),
            (vec!["lt"], (6, 5, 2, 1, 1, 1), Some(1.0 / 3.0), Some(17.5)),
            (vec!["pl"], (1, 0, 0, 0, 0, 0), None, None),
            (vec!["ru"], (1, 1, 1, 1, 0, 0), Some(1.0), Some(15.0)),
        ]
    );

    let by_hour = store
        .stats(&day_query(vec![Dimension::Day, Dimension::Hour]))
        .await
        .unwrap();
    assert_eq!(
        by_hour.iter().map(keys).collect::<Vec<_>>(),
        vec![vec!["2026-03-02", "09"], vec!["2026-03-02", "10"]]
    );
    assert_eq!(counts(&by_hour[0]), (6, 6, 3, 2, 1, 1));
    assert_eq!(by_hour[0].service_level, Some(0.5));
    assert_eq!(by_hour[0].asa_s, Some(16.667)); // 50 s / 3
    assert_eq!(counts(&by_hour[1]), (5, 2, 1, 1, 1, 0));
    assert_eq!(by_hour[1].asa_s, Some(20.0));

    let by_node = store
        .stats(&day_query(vec![Dimension::MenuNode]))
        .await
        .unwrap();
    let drop_off: Vec<(Vec<&str>, u64)> =
        by_node.iter().map(|row| (keys(row), row.calls)).collect();
    assert_eq!(
        drop_off,
        vec![
            (vec!["(none)"], 1),
            (vec!["group heating"], 4),
            (vec!["group water"], 3),
            (vec!["info hours"], 1),
            (vec!["main"], 1),
            (vec!["water menu"], 1),
        ]
    );

    // Thresholds are parameters: with SL 10 s only c01 is in SL; with short abandon 0 c04 counts.
    let mut strict = day_query(vec![]);
    strict.sl_threshold_s = 10;
    strict.short_abandon_s = 0;
    let strict = store.stats(&strict).await.unwrap();
    assert_eq!(counts(&strict[0]), (11, 8, 4, 1, 3, 0));
    assert_eq!(strict[0].service_level, Some(1.0 / 7.0));

    // Records read back equal what was written; derived durations are stored too.
    let listed = store
        .calls(
            &CallFilter {
                enterprise: Some("water".into()),
                ..CallFilter::default()
            },
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|r| r.call_id.as_str()).collect();
    assert_eq!(ids, vec!["c11", "c07", "c06", "c05"]);
    assert_eq!(listed[1], record_of(&script()[6]).0);
    assert_eq!(listed[1].talk_seconds(), Some(30.5));
    let page_two = store
        .calls(
            &CallFilter::default(),
            Page {
                limit: 5,
                offset: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page_two
            .iter()
            .map(|r| r.call_id.as_str())
            .collect::<Vec<_>>(),
        vec!["c01", "c00"]
    );
    let connected = store
        .calls(
            &CallFilter {
                outcome: Some(Outcome::Connected),
                from: Some(base()),
                to: Some(base() + ms(3_600_000)),
                ..CallFilter::default()
            },
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        connected
            .iter()
            .map(|r| r.call_id.as_str())
            .collect::<Vec<_>>(),
        vec!["c02", "c01"]
    );

    let live = store.live_calls().await.unwrap();
    assert_eq!(
        live.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
        vec!["live"]
    );
    assert_eq!(
        store.events("c03").await.unwrap(),
        record_of(&script()[2]).1
    );
}

/// Re-delivering the same start/end/events changes nothing (the replay guarantee).
async fn assert_redelivery_is_idempotent(store: &CdrStore) {
    let call = &script()[0];
    let (record, events) = record_of(call);
    store.call_started(start_of(call)).await.unwrap();
    store
        .call_ended(record.clone(), events.clone())
        .await
        .unwrap();
    // A late duplicate start must not wipe the completed record.
    store.call_started(start_of(call)).await.unwrap();
    store
        .call_ended(record.clone(), events.clone())
        .await
        .unwrap();
    let all = all_calls(store).await;
    assert_eq!(all, vec![record]);
    assert_eq!(store.events("c01").await.unwrap(), events);
}

async fn assert_retention(store: &CdrStore) {
    for call in script() {
        let (record, events) = record_of(&call);
        store.call_ended(record, events).await.unwrap();
    }
    let cutoff = base(); // only c00 (the day before) is older
    assert_eq!(
        store
            .purge_before(cutoff, PurgeMode::BlankCaller)
            .await
            .unwrap(),
        1
    );
    let all = all_calls(store).await;
    let old = all.iter().find(|r| r.call_id == "c00").unwrap();
    assert_eq!(old.caller, None);
    assert!(all
        .iter()
        .filter(|r| r.call_id != "c00")
        .all(|r| r.caller.is_some()));

    assert_eq!(
        store.purge_before(cutoff, PurgeMode::Delete).await.unwrap(),
        1
    );
    let all = all_calls(store).await;
    assert_eq!(all.len(), 11);
    assert!(all.iter().all(|r| r.call_id != "c00"));
    assert!(store.events("c00").await.unwrap().is_empty());
    assert_eq!(store.events("c01").await.unwrap().len(), 2);
    // Relative to now: everything scripted is in 2026-03, so a 100000-day window keeps it all.
    assert_eq!(
        store
            .purge_older_than(100_000, PurgeMode::Delete)
            .await
            .unwrap(),
        0
    );
}

async fn sqlite_store(dir: &Path) -> CdrStore {
    // A folder that does not exist yet: the store must create it.
    let url = format!("sqlite:{}", dir.join("db/cdr.sqlite").display());
    CdrStore::connect(&url, &dir.join("spool/cdr.jsonl"))
        .await
        .unwrap()
}

/// The duration columns kept for people querying the database directly.
async fn assert_stored_durations(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows: Vec<(String, Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT call_id, wait_seconds, talk_seconds FROM calls \
         WHERE call_id IN ('c04', 'c07', 'c08') ORDER BY call_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("c04".into(), Some(3.0), None),
            ("c07".into(), Some(20.0), Some(30.5)),
            ("c08".into(), None, None),
        ]
    );
}

#[tokio::test]
async fn sqlite_scripted_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    assert_scripted_statistics(&store).await;
    assert_stored_durations(&format!(
        "sqlite:{}",
        dir.path().join("db/cdr.sqlite").display()
    ))
    .await;
    // The file is in WAL mode.
    let mut connection = sqlx::SqliteConnection::connect(&format!(
        "sqlite:{}",
        dir.path().join("db/cdr.sqlite").display()
    ))
    .await
    .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn postgres_scripted_statistics() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = CdrStore::connect(&server.url(), &dir.path().join("spool.jsonl"))
        .await
        .unwrap();
    assert_scripted_statistics(&store).await;
    assert_stored_durations(&server.url()).await;
}

#[tokio::test]
async fn sqlite_redelivery_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    assert_redelivery_is_idempotent(&sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn postgres_redelivery_and_retention() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = CdrStore::connect(&server.url(), &dir.path().join("spool.jsonl"))
        .await
        .unwrap();
    assert_redelivery_is_idempotent(&store).await;
    assert_retention(&store).await;
}

#[tokio::test]
async fn sqlite_retention() {
    let dir = tempfile::tempdir().unwrap();
    assert_retention(&sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn caller_numbers_are_pseudonymised_when_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path())
        .await
        .with_pseudonymise_key(Some("s3cret"));
    let call = &script()[0];
    store.call_started(start_of(call)).await.unwrap();
    assert_eq!(
        store.live_calls().await.unwrap()[0].caller.as_deref(),
        Some(pseudonymise(b"s3cret", "+370601").as_str())
    );
    let (record, events) = record_of(call);
    store.call_ended(record, events).await.unwrap();
    let stored = all_calls(&store).await;
    assert_eq!(
        stored[0].caller.as_deref(),
        Some(pseudonymise(b"s3cret", "+370601").as_str())
    );
}

fn numbered_call(n: i64) -> (CallStart, CallRecord, Vec<CallEvent>) {
    let arrived = base() + ms(n * 1000);
    let start = CallStart {
        call_id: format!("outage-{n:02}"),
        caller: Some(format!("+37060000{n:03}")),
        trunk: "127.0.0.1:5080".into(),
        arrived,
    };
    let record = CallRecord {
        call_id: start.call_id.clone(),
        caller: start.caller.clone(),
        trunk: start.trunk.clone(),
        arrived,
        ivr_answered: Some(arrived + ms(500)),
        language_chosen: Some(arrived + ms(5000)),
        group_chosen: Some(arrived + ms(9000)),
        queue_entered: Some(arrived + ms(9000)),
        agent_answered: Some(arrived + ms(19_000)),
        ended: arrived + ms(79_000),
        language: Some("lt".into()),
        menu_path: "language lt > main:4 > group waste".into(),
        dtmf_mode: DtmfMode::SipInfo,
        enterprise: Some("waste".into()),
        agent: Some("agent-1".into()),
        transfer_mode: Some(TransferMode::Bridge),
        outcome: Outcome::Connected,
        rtp_packets: 3000,
        rtp_lost: 0,
        rtp_jitter_ms: 0.5,
        callback_of: None,
    };
    let events = (0..3)
        .map(|seq| CallEvent {
            call_id: start.call_id.clone(),
            seq,
            at: arrived + ms(i64::from(seq) * 1000),
            kind: "step".into(),
            detail: format!("{seq}"),
        })
        .collect();
    (start, record, events)
}

#[tokio::test]
async fn postgres_outage_spools_and_replays_in_order_exactly_once() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let spool_path = dir.path().join("spool/cdr.jsonl");
    let store = CdrStore::connect(&server.url(), &spool_path)
        .await
        .unwrap()
        .with_write_timeout(Duration::from_secs(2));

    // Calls 0..20 are stored normally; call 20 starts before the outage and ends during it.
    for n in 0..20 {
        let (start, record, events) = numbered_call(n);
        assert_eq!(store.call_started(start).await.unwrap(), Delivery::Stored);
        assert_eq!(
            store.call_ended(record, events).await.unwrap(),
            Delivery::Stored
        );
    }
    let (start, record_20, events_20) = numbered_call(20);
    assert_eq!(store.call_started(start).await.unwrap(), Delivery::Stored);

    server.stop();
    assert_eq!(
        store.call_ended(record_20, events_20).await.unwrap(),
        Delivery::Spooled
    );
    for n in 21..50 {
        let (start, record, events) = numbered_call(n);
        assert_eq!(store.call_started(start).await.unwrap(), Delivery::Spooled);
        assert_eq!(
            store.call_ended(record, events).await.unwrap(),
            Delivery::Spooled
        );
    }
    assert_eq!(store.spooled().await, 1 + 29 * 2);
    assert!(spool_path.exists());
    // Still down: a replay attempt keeps everything.
    let report = store.flush_spool().await.unwrap();
    assert_eq!((report.written, report.remaining), (0, 59));

    server.start_again();
    let report = store.flush_spool().await.unwrap();
    assert_eq!((report.written, report.remaining), (59, 0));
    assert_eq!(store.spooled().await, 0);
    assert!(
        !spool_path.exists(),
        "spool must be removed after a confirmed replay"
    );
    // Writes go straight to the database again.
    let (start, _, _) = numbered_call(50);
    assert_eq!(store.call_started(start).await.unwrap(), Delivery::Stored);

    let mut listed = all_calls(&store).await;
    listed.reverse(); // oldest first
    let expected: Vec<CallRecord> = (0..50).map(|n| numbered_call(n).1).collect();
    assert_eq!(listed, expected);
    for n in [0, 20, 49] {
        assert_eq!(
            store.events(&format!("outage-{n:02}")).await.unwrap(),
            numbered_call(n).2
        );
    }
    assert_eq!(store.live_calls().await.unwrap().len(), 1);
}

#[tokio::test]
async fn spool_left_by_a_previous_run_is_replayed_at_connect() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let spool_path = dir.path().join("cdr.jsonl");
    let url = server.url();
    {
        let store = CdrStore::connect(&url, &spool_path).await.unwrap();
        server.stop();
        for n in 0..3 {
            let (start, record, events) = numbered_call(n);
            store.call_started(start).await.unwrap();
            store.call_ended(record, events).await.unwrap();
        }
        assert_eq!(store.spooled().await, 6);
    }
    server.start_again();
    let store = CdrStore::connect(&url, &spool_path).await.unwrap();
    assert_eq!(store.spooled().await, 0);
    let listed = all_calls(&store).await;
    assert_eq!(listed.len(), 3);
}

#[tokio::test]
async fn slow_sqlite_write_goes_to_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path())
        .await
        .with_write_timeout(Duration::from_millis(300));
    // Another connection holds the write lock, so the store's write waits (busy timeout 5 s).
    let mut locker = sqlx::SqliteConnection::connect(&format!(
        "sqlite:{}",
        dir.path().join("db/cdr.sqlite").display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    let (start, record, events) = numbered_call(1);
    assert_eq!(store.call_started(start).await.unwrap(), Delivery::Spooled);
    assert_eq!(
        store.call_ended(record.clone(), events).await.unwrap(),
        Delivery::Spooled
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

    let report = store.flush_spool().await.unwrap();
    assert_eq!((report.written, report.remaining), (2, 0));
    let listed = all_calls(&store).await;
    assert_eq!(listed, vec![record]);
}

#[tokio::test]
async fn writer_task_delivers_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(sqlite_store(dir.path()).await);
    let (writer, task) = CdrWriter::spawn(store.clone(), Duration::from_secs(10));
    for n in 0..20 {
        let (start, record, events) = numbered_call(n);
        writer.call_started(start).unwrap();
        writer.call_ended(record, events).unwrap();
    }
    drop(writer);
    task.await.unwrap();
    let mut listed = all_calls(&store).await;
    listed.reverse();
    assert_eq!(
        listed,
        (0..20).map(|n| numbered_call(n).1).collect::<Vec<_>>()
    );
}

/// `close` returns once every record sent before it is stored, while a clone of the writer is
/// still alive (the service holds several); sends after it are refused.
#[tokio::test]
async fn writer_close_stores_everything_sent_before_and_refuses_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(sqlite_store(dir.path()).await);
    let (writer, task) = CdrWriter::spawn(store.clone(), Duration::from_secs(10));
    let clone = writer.clone();
    for n in 0..20 {
        let (start, record, events) = numbered_call(n);
        clone.call_started(start).unwrap();
        clone.call_ended(record, events).unwrap();
    }
    writer.close().await.unwrap();
    assert_eq!(
        all_calls(&store).await.len(),
        20,
        "stored before close returned"
    );
    assert!(store.live_calls().await.unwrap().is_empty());
    let (start, record, events) = numbered_call(20);
    assert!(clone.call_started(start).is_err());
    assert!(clone.call_ended(record, events).is_err());
    assert!(writer.close().await.is_err(), "closed already");
    task.await.unwrap();
}

#[tokio::test]
async fn settings_apply_key_timeout_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CdrSettings {
        database: dir.path().join("cdr.sqlite").display().to_string(),
        spool_path: dir.path().join("cdr.jsonl"),
        pseudonymise_key: Some("k".into()),
        retention_days: Some(2),
        retention_mode: PurgeMode::Delete,
        write_timeout: Duration::from_secs(5),
        node: "node-a".into(),
    };
    let store = CdrStore::open(&settings).await.unwrap();
    let now = Utc::now();
    for (id, age_hours) in [("old", 49), ("recent", 47)] {
        store
            .call_started(CallStart {
                call_id: id.into(),
                caller: Some("+37060000000".into()),
                trunk: "127.0.0.1".into(),
                arrived: now - chrono::Duration::hours(age_hours),
            })
            .await
            .unwrap();
    }
    assert_eq!(store.apply_retention(&settings).await.unwrap(), 1);
    let live = store.live_calls().await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].call_id, "recent");
    assert_eq!(
        live[0].caller.as_deref(),
        Some(pseudonymise(b"k", "+37060000000").as_str())
    );
}

/// Every stored record, newest first (the scripted sets are far below the limit).
async fn all_calls(store: &CdrStore) -> Vec<CallRecord> {
    let page = Page {
        limit: 1000,
        offset: 0,
    };
    store.calls(&CallFilter::default(), page).await.unwrap()
}

/// A call that arrived `at_s` seconds after `base()`.
fn call_start(id: &str, at_s: i64) -> CallStart {
    CallStart {
        call_id: id.into(),
        caller: Some("+37060000000".into()),
        trunk: "127.0.0.1:5080".into(),
        arrived: base() + ms(at_s * 1000),
    }
}

/// Interrupted records of node `node-a` closed by its next run; node `node-b`'s live call, a
/// row from before the node column, and the new run's own live call stay open.
async fn assert_close_interrupted(url: &str, dir: &Path) {
    let run_a = CdrStore::connect(url, &dir.join("a1.jsonl"))
        .await
        .unwrap()
        .with_node("node-a");
    let node_b = CdrStore::connect(url, &dir.join("b.jsonl"))
        .await
        .unwrap()
        .with_node("node-b");
    for (id, at_s) in [("a-menu", 0), ("a-queue", 10)] {
        assert_eq!(
            run_a.call_started(call_start(id, at_s)).await.unwrap(),
            Delivery::Stored
        );
    }
    let (start, completed, events) = numbered_call(7);
    run_a.call_started(start).await.unwrap();
    run_a.call_ended(completed.clone(), events).await.unwrap();
    node_b.call_started(call_start("b-live", 20)).await.unwrap();
    // Steps of a-queue that reached the database before the crash, and a row written before
    // rows carried their node.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for (seq, at_s, kind) in [(0_i64, 12_i64, "menu"), (1, 40, "queue_enter")] {
        sqlx::query(
            "INSERT INTO call_events (call_id, seq, at_ms, kind, detail) \
             VALUES ('a-queue', $1, $2, $3, '')",
        )
        .bind(seq)
        .bind((base() + ms(at_s * 1000)).timestamp_millis())
        .bind(kind)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO calls (call_id, trunk, arrived_ms) VALUES ('legacy', 'x', $1)")
        .bind((base() + ms(30_000)).timestamp_millis())
        .execute(&pool)
        .await
        .unwrap();
    drop(run_a); // killed

    let run_a2 = CdrStore::connect(url, &dir.join("a2.jsonl"))
        .await
        .unwrap()
        .with_node("node-a");
    // Up in the new run before the closing: its own, not interrupted.
    run_a2.call_started(call_start("a-now", 50)).await.unwrap();
    assert_eq!(run_a2.close_interrupted("node-a").await.unwrap(), 2);
    assert_eq!(run_a2.interrupted_closed(), 2);

    let filter = CallFilter {
        outcome: Some(Outcome::Interrupted),
        ..CallFilter::default()
    };
    let page = Page {
        limit: 100,
        offset: 0,
    };
    let closed = run_a2.calls(&filter, page).await.unwrap();
    let summary: Vec<(&str, DateTime<Utc>, DateTime<Utc>)> = closed
        .iter()
        .map(|r| (r.call_id.as_str(), r.arrived, r.ended))
        .collect();
    // End: the last event when there is one, else the arrival.
    assert_eq!(
        summary,
        vec![
            ("a-queue", base() + ms(10_000), base() + ms(40_000)),
            ("a-menu", base(), base()),
        ]
    );
    for record in &closed {
        assert_eq!(
            (
                record.dtmf_mode,
                record.enterprise.as_deref(),
                record.wait_seconds()
            ),
            (DtmfMode::None, None, None),
            "{record:#?}"
        );
    }
    let trail = |events: Vec<CallEvent>| -> Vec<(u32, DateTime<Utc>, String)> {
        events.into_iter().map(|e| (e.seq, e.at, e.kind)).collect()
    };
    assert_eq!(
        trail(run_a2.events("a-menu").await.unwrap()),
        vec![(0, base(), "interrupted".to_owned())]
    );
    assert_eq!(
        trail(run_a2.events("a-queue").await.unwrap()),
        vec![
            (0, base() + ms(12_000), "menu".to_owned()),
            (1, base() + ms(40_000), "queue_enter".to_owned()),
            (2, base() + ms(40_000), "interrupted".to_owned()),
        ]
    );
    let mut live: Vec<String> = run_a2
        .live_calls()
        .await
        .unwrap()
        .into_iter()
        .map(|start| start.call_id)
        .collect();
    live.sort();
    assert_eq!(live, vec!["a-now", "b-live", "legacy"]);
    // Done once: a second start closes nothing more; the completed call is as it was.
    assert_eq!(run_a2.close_interrupted("node-a").await.unwrap(), 0);
    let all = all_calls(&run_a2).await;
    assert!(all.contains(&completed), "{all:#?}");

    // Every row written names its node.
    let nodes: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT call_id, node FROM calls ORDER BY call_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let node = |name: &str| Some(name.to_owned());
    assert_eq!(
        nodes,
        vec![
            ("a-menu".into(), node("node-a")),
            ("a-now".into(), node("node-a")),
            ("a-queue".into(), node("node-a")),
            ("b-live".into(), node("node-b")),
            ("legacy".into(), None),
            ("outage-07".into(), node("node-a")),
        ]
    );

    let total = run_a2.stats(&day_query(vec![])).await.unwrap();
    assert_eq!(total[0].outcome_count(Outcome::Interrupted), 2);
    assert_eq!(total[0].calls, 3);
    pool.close().await;
}

#[tokio::test]
async fn sqlite_close_interrupted_closes_only_this_nodes_records_of_earlier_runs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cdr.sqlite").display());
    assert_close_interrupted(&url, dir.path()).await;
}

#[tokio::test]
async fn postgres_close_interrupted_closes_only_this_nodes_records_of_earlier_runs() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    assert_close_interrupted(&server.url(), dir.path()).await;
}

#[tokio::test]
async fn an_end_waiting_in_the_spool_is_written_not_taken_for_an_interruption() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let spool_path = dir.path().join("cdr.jsonl");
    let (start_1, ended_1, events_1) = numbered_call(1);
    let (start_2, _, _) = numbered_call(2);
    {
        let run = CdrStore::connect(&server.url(), &spool_path)
            .await
            .unwrap()
            .with_node("node-a")
            .with_write_timeout(Duration::from_secs(2));
        assert_eq!(run.call_started(start_1).await.unwrap(), Delivery::Stored);
        assert_eq!(run.call_started(start_2).await.unwrap(), Delivery::Stored);
        server.stop();
        // Call 1 ends during the outage; call 2 is up when the service is killed.
        assert_eq!(
            run.call_ended(ended_1.clone(), events_1).await.unwrap(),
            Delivery::Spooled
        );
    }
    // The next run starts while the database is still down.
    let settings = CdrSettings {
        database: server.url(),
        spool_path: spool_path.clone(),
        pseudonymise_key: None,
        retention_days: None,
        retention_mode: PurgeMode::Delete,
        write_timeout: Duration::from_secs(2),
        node: "node-a".into(),
    };
    let run = CdrStore::open(&settings).await.unwrap();
    assert!(matches!(
        run.close_interrupted("node-a").await,
        Err(CdrError::SpoolNotReplayed(1))
    ));
    assert_eq!(run.spooled().await, 1);

    server.start_again();
    assert_eq!(run.close_interrupted("node-a").await.unwrap(), 1);
    assert_eq!(run.spooled().await, 0);
    let mut listed = all_calls(&run).await;
    listed.reverse();
    assert_eq!(listed[0], ended_1);
    assert_eq!(
        (
            listed[1].call_id.as_str(),
            listed[1].outcome,
            listed[1].ended
        ),
        ("outage-02", Outcome::Interrupted, listed[1].arrived)
    );
    assert_eq!(listed.len(), 2);
}

/// Agents' availability changes become rows of `agent_states`, in order, with the node.
async fn assert_agent_states_stored(store: &CdrStore, url: &str) {
    let change = |to: &str, from: &str, reason: &str, second: i64| hotline::cdr::AgentStateChange {
        agent: "user:ona".into(),
        from: from.into(),
        to: to.into(),
        reason: reason.into(),
        at: base() + chrono::Duration::seconds(second),
    };
    store
        .agent_state_changed(change("paused", "available", "feature_code", 1))
        .await
        .unwrap();
    store
        .agent_state_changed(change("available", "paused", "supervisor", 9))
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT agent, from_state, to_state, reason, at_ms FROM agent_states ORDER BY at_ms",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let at = |second: i64| (base() + chrono::Duration::seconds(second)).timestamp_millis();
    assert_eq!(
        rows,
        vec![
            (
                "user:ona".into(),
                "available".into(),
                "paused".into(),
                "feature_code".into(),
                at(1)
            ),
            (
                "user:ona".into(),
                "paused".into(),
                "available".into(),
                "supervisor".into(),
                at(9)
            ),
        ]
    );
}

#[tokio::test]
async fn agent_state_changes_are_stored_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let url = format!("sqlite:{}", dir.path().join("db/cdr.sqlite").display());
    assert_agent_states_stored(&store, &url).await;
}

#[tokio::test]
async fn agent_state_changes_are_stored_on_postgres() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = CdrStore::connect(&server.url(), &dir.path().join("spool.jsonl"))
        .await
        .unwrap();
    assert_agent_states_stored(&store, &server.url()).await;
}

/// Callback requests (`callbacks`): a pending row is taken up at start; a node claims a row
/// before each dial and a second node sharing the database is refused; a node's own row is
/// claimed again after a failed attempt; an unknown request (its row still on its way) may be
/// dialled; a request over is no longer pending and its number is blanked.
async fn assert_callback_claims(url: &str, dir: &Path) {
    let node_a = CdrStore::connect(url, &dir.join("a.jsonl"))
        .await
        .unwrap()
        .with_node("node-a");
    let node_b = CdrStore::connect(url, &dir.join("b.jsonl"))
        .await
        .unwrap()
        .with_node("node-b");
    let row = |state: CallbackStatus, attempts: u32, number: &str| CallbackRow {
        id: "call-1@resident".into(),
        group: "heating".into(),
        language: "lt".into(),
        number: number.into(),
        display: "[CB][LT] Vilniaus šilumos tinklai".into(),
        path: "language lt > main:2".into(),
        requested: base() + chrono::Duration::seconds(70),
        queue_entered: base() + chrono::Duration::seconds(10),
        attempts,
        state,
        updated: base() + chrono::Duration::seconds(70),
    };
    node_a
        .callback_changed(row(CallbackStatus::Pending, 0, "+37068712345"))
        .await
        .unwrap();
    let pending = node_b.pending_callbacks().await.unwrap();
    assert_eq!(
        pending,
        vec![row(CallbackStatus::Pending, 0, "+37068712345")]
    );

    let at = base() + chrono::Duration::seconds(100);
    assert!(node_a
        .claim_callback("call-1@resident", 1, at)
        .await
        .unwrap());
    assert!(
        !node_b
            .claim_callback("call-1@resident", 1, at)
            .await
            .unwrap(),
        "one dial at a time: node-a has it"
    );
    assert!(
        node_a.pending_callbacks().await.unwrap().len() == 1,
        "node-a's own dial"
    );
    assert!(
        node_b.pending_callbacks().await.unwrap().is_empty(),
        "node-a dials it"
    );
    // node-a's own dialling row, written after its claim, changes nothing for the claim.
    node_a
        .callback_changed(row(CallbackStatus::Dialling, 1, "+37068712345"))
        .await
        .unwrap();
    assert!(node_a
        .claim_callback("call-1@resident", 1, at)
        .await
        .unwrap());
    // Not reached: pending again, then anyone may claim the next attempt.
    node_a
        .callback_changed(row(CallbackStatus::Pending, 1, "+37068712345"))
        .await
        .unwrap();
    assert!(node_b
        .claim_callback("call-1@resident", 2, at)
        .await
        .unwrap());
    // node-a's late write of an old state cannot take the row back from node-b.
    node_a
        .callback_changed(row(CallbackStatus::Pending, 1, "+37068712345"))
        .await
        .unwrap();
    assert!(!node_a
        .claim_callback("call-1@resident", 2, at)
        .await
        .unwrap());
    node_b
        .callback_changed(row(CallbackStatus::Connected, 2, ""))
        .await
        .unwrap();
    assert!(node_a.pending_callbacks().await.unwrap().is_empty());
    assert!(node_b.pending_callbacks().await.unwrap().is_empty());
    assert!(
        !node_a
            .claim_callback("call-1@resident", 3, at)
            .await
            .unwrap(),
        "over"
    );
    assert!(node_a
        .claim_callback("unknown@resident", 1, at)
        .await
        .unwrap());

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let stored: (String, String, String, i64) =
        sqlx::query_as("SELECT number, state, node, attempts FROM callbacks WHERE id = $1")
            .bind("call-1@resident")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        (String::new(), "connected".into(), "node-b".into(), 2),
        "the number is blanked once the request is over"
    );
}

#[tokio::test]
async fn callback_requests_are_claimed_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cdr.sqlite").display());
    assert_callback_claims(&url, dir.path()).await;
}

#[tokio::test]
async fn callback_requests_are_claimed_once_on_postgres() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    assert_callback_claims(&server.url(), dir.path()).await;
}
