//! `CdrStore::language_choices` on SQLite (temp file) and a real PostgreSQL server: each
//! caller's latest choice in the language menu since a time, never a call without a caller or
//! without a choice (remembered or defaulted languages), pseudonyms when keyed, and nothing of
//! what retention deleted or blanked.

#[allow(dead_code)]
mod pg_server;

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use hotline::cdr::{
    pseudonymise, CallRecord, CdrStore, DtmfMode, LanguageChoice, Outcome, PurgeMode,
};
use pg_server::TestPostgres;

/// 09:00 in Vilnius on 2 March 2026 (UTC+2).
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap()
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// A finished call arriving `at` minutes after `base()` (negative: before); `chosen` says
/// whether the caller pressed the language's key (else the language was remembered).
fn call(
    id: &str,
    at: i64,
    caller: Option<&str>,
    language: Option<&str>,
    chosen: bool,
) -> CallRecord {
    let arrived = base() + minutes(at);
    CallRecord {
        call_id: id.into(),
        caller: caller.map(Into::into),
        trunk: "127.0.0.1:5080".into(),
        arrived,
        ivr_answered: Some(arrived),
        language_chosen: language.filter(|_| chosen).map(|_| arrived + minutes(1)),
        group_chosen: None,
        queue_entered: None,
        agent_answered: None,
        ended: arrived + minutes(2),
        language: language.map(Into::into),
        menu_path: match (language, chosen) {
            (Some(language), true) => format!("language {language}"),
            (Some(language), false) => format!("remembered language {language}"),
            (None, _) => String::new(),
        },
        dtmf_mode: DtmfMode::Rfc4733,
        enterprise: None,
        agent: None,
        transfer_mode: None,
        outcome: Outcome::AbandonedMenu,
        rtp_packets: 100,
        rtp_lost: 0,
        rtp_jitter_ms: 0.0,
        callback_of: None,
    }
}

fn choice(caller: &str, language: &str, chosen_at: i64) -> LanguageChoice {
    LanguageChoice {
        caller: caller.into(),
        language: language.into(),
        chosen: base() + minutes(chosen_at + 1),
    }
}

async fn store_calls(store: &CdrStore) {
    let calls = [
        call("a1", 0, Some("+37060000001"), Some("lt"), true),
        // A later call of the same caller: its choice wins...
        call("a2", 60, Some("+37060000001"), Some("en"), true),
        // ...and a remembered language is no new choice.
        call("a3", 120, Some("+37060000001"), Some("en"), false),
        call("b1", 30, Some("+37060000002"), Some("ru"), false),
        call("c1", 40, None, Some("pl"), true),
        call("d1", 50, Some("+37060000004"), None, false),
        // Two days before: out of a one-day window, and older than the retention cut below.
        call("e1", -2 * 24 * 60, Some("+37060000005"), Some("pl"), true),
        call("f1", 90, Some("+37060000006"), Some("ru"), true),
    ];
    for record in calls {
        store.call_ended(record, vec![]).await.unwrap();
    }
}

async fn assert_language_choices(store: &CdrStore) {
    store_calls(store).await;
    let day_before = base() - chrono::Duration::days(1);
    assert_eq!(
        store.language_choices(day_before).await.unwrap(),
        vec![
            choice("+37060000001", "en", 60),
            choice("+37060000006", "ru", 90),
        ]
    );
    let week_before = base() - chrono::Duration::days(7);
    assert_eq!(
        store.language_choices(week_before).await.unwrap(),
        vec![
            choice("+37060000005", "pl", -2 * 24 * 60),
            choice("+37060000001", "en", 60),
            choice("+37060000006", "ru", 90),
        ]
    );
    // Retention that keeps the calls but not their callers: the old choice is gone.
    assert_eq!(
        store
            .purge_before(day_before, PurgeMode::BlankCaller)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.language_choices(week_before).await.unwrap().len(), 2);
    assert_eq!(
        store
            .purge_before(base() + minutes(80), PurgeMode::Delete)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        store.language_choices(week_before).await.unwrap(),
        vec![choice("+37060000006", "ru", 90)]
    );
}

async fn sqlite_store(dir: &Path) -> CdrStore {
    let url = format!("sqlite:{}", dir.join("cdr.sqlite").display());
    CdrStore::connect(&url, &dir.join("spool.jsonl"))
        .await
        .unwrap()
}

#[tokio::test]
async fn sqlite_language_choices_are_each_callers_latest() {
    let dir = tempfile::tempdir().unwrap();
    assert_language_choices(&sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn postgres_language_choices_are_each_callers_latest() {
    let server = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = CdrStore::connect(&server.url(), &dir.path().join("spool.jsonl"))
        .await
        .unwrap();
    assert_language_choices(&store).await;
}

#[tokio::test]
async fn keyed_stores_give_the_callers_pseudonyms() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path())
        .await
        .with_pseudonymise_key(Some("s3cret"));
    store
        .call_ended(
            call("k1", 0, Some("+37060000001"), Some("lt"), true),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        store.language_choices(base()).await.unwrap(),
        vec![choice(&pseudonymise(b"s3cret", "+37060000001"), "lt", 0)]
    );
}
