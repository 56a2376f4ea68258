//! `CdrStore`: writes call records to the database (upserts keyed by `call_id`, events by
//! `call_id` + `seq`, so any write may be repeated safely), falls back to the spool when the
//! database is down or slow, replays the spool in order, and reads records back for statistics,
//! listings and retention.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokio::sync::{Mutex, OnceCell};

use super::backend::{lazy_pool, prepare, DatabaseUrl};
use super::model::{
    pseudonymise, CallEvent, CallRecord, CallStart, DtmfMode, Outcome, TransferMode,
};
use super::spool::{Spool, SpoolEntry};
use super::stats::{compute_stats, StatsQuery, StatsRow};
use super::{CdrError, CdrSettings};

/// Default limit for one database write before the record goes to the spool instead.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit for reaching the database and applying the migrations: longer than a write, so a
/// slow migration is not cut off (and retried) forever; an unreachable server fails at once.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a submitted record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Confirmed by the database.
    Stored,
    /// Appended to the spool; written when the database is back.
    Spooled,
}

/// Result of one spool replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Entries confirmed by the database and removed from the spool.
    pub written: usize,
    /// Entries still in the spool (non-zero when the database failed again mid-replay).
    pub remaining: usize,
}

/// What retention does to old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeMode {
    /// Delete the calls and their events.
    Delete,
    /// Keep the calls for statistics but set the caller number to NULL.
    BlankCaller,
}

/// Narrows `CdrStore::calls`. Times select on `arrived`: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub enterprise: Option<String>,
    pub outcome: Option<Outcome>,
}

/// One page of a listing, newest call first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

pub struct CdrStore {
    database: DatabaseUrl,
    pool: AnyPool,
    /// Set once the database was reached and migrated; until then every use retries that.
    ready: OnceCell<()>,
    spool: Mutex<Spool>,
    /// `spool.pending()` as of the last change, readable without waiting for the spool's lock
    /// (a replay holds it while the database is slow).
    spooled_records: AtomicUsize,
    pseudonymise_key: Option<Vec<u8>>,
    write_timeout: Duration,
}

const INSERT_START: &str = "INSERT INTO calls (call_id, caller, trunk, arrived_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (call_id) DO NOTHING";

const UPSERT_RECORD: &str = "INSERT INTO calls (call_id, caller, trunk, arrived_ms, \
     ivr_answered_ms, language_chosen_ms, group_chosen_ms, queue_entered_ms, agent_answered_ms, \
     ended_ms, language, menu_path, dtmf_mode, enterprise, agent, transfer_mode, outcome, \
     wait_seconds, talk_seconds, rtp_packets, rtp_lost, rtp_jitter_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     CAST($18 AS DOUBLE PRECISION) / 1000.0, CAST($19 AS DOUBLE PRECISION) / 1000.0, \
     $20, $21, $22) \
     ON CONFLICT (call_id) DO UPDATE SET caller = excluded.caller, trunk = excluded.trunk, \
     arrived_ms = excluded.arrived_ms, ivr_answered_ms = excluded.ivr_answered_ms, \
     language_chosen_ms = excluded.language_chosen_ms, group_chosen_ms = excluded.group_chosen_ms, \
     queue_entered_ms = excluded.queue_entered_ms, agent_answered_ms = excluded.agent_answered_ms, \
     ended_ms = excluded.ended_ms, language = excluded.language, menu_path = excluded.menu_path, \
     dtmf_mode = excluded.dtmf_mode, enterprise = excluded.enterprise, agent = excluded.agent, \
     transfer_mode = excluded.transfer_mode, outcome = excluded.outcome, \
     wait_seconds = excluded.wait_seconds, talk_seconds = excluded.talk_seconds, \
     rtp_packets = excluded.rtp_packets, rtp_lost = excluded.rtp_lost, \
     rtp_jitter_ms = excluded.rtp_jitter_ms";

const INSERT_EVENT: &str = "INSERT INTO call_events (call_id, seq, at_ms, kind, detail) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id, seq) DO NOTHING";

const RECORD_COLUMNS: &str = "call_id, caller, trunk, arrived_ms, ivr_answered_ms, \
     language_chosen_ms, group_chosen_ms, queue_entered_ms, agent_answered_ms, ended_ms, \
     language, menu_path, dtmf_mode, enterprise, agent, transfer_mode, outcome, rtp_packets, \
     rtp_lost, rtp_jitter_ms";

impl CdrStore {
    /// Opens the database (`postgres://…`, else an SQLite file created on first use), applies
    /// the migrations and replays whatever a previous run left in the spool. Fails when the
    /// database cannot be reached: for readers such as `hotline stats`.
    pub async fn connect(url: &str, spool_path: &Path) -> Result<Self, CdrError> {
        let store = CdrStore::unconnected(url, spool_path).await?;
        store.pool().await?;
        store.replay_at_start().await?;
        Ok(store)
    }

    /// For the service, which must take calls whatever the database does: like `connect` with
    /// the `[cdr]` settings applied, but a database that cannot be reached now only means the
    /// records are spooled until it can. Fails only on a bad URL or an unusable spool file.
    pub async fn open(settings: &CdrSettings) -> Result<Self, CdrError> {
        let store = CdrStore::unconnected(&settings.database, &settings.spool_path)
            .await?
            .with_pseudonymise_key(settings.pseudonymise_key.as_deref())
            .with_write_timeout(settings.write_timeout);
        match store.pool().await {
            Ok(_) => store.replay_at_start().await?,
            Err(error) => tracing::warn!(
                %error,
                spool = %settings.spool_path.display(),
                "CDR database unreachable at start: records are spooled until it is back"
            ),
        }
        Ok(store)
    }

    async fn unconnected(url: &str, spool_path: &Path) -> Result<Self, CdrError> {
        let database: DatabaseUrl = url.parse()?;
        let spool = Spool::open(spool_path).await?;
        Ok(CdrStore {
            pool: lazy_pool(&database)?,
            database,
            ready: OnceCell::new(),
            spooled_records: AtomicUsize::new(spool.pending()),
            spool: Mutex::new(spool),
            pseudonymise_key: None,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        })
    }

    async fn replay_at_start(&self) -> Result<(), CdrError> {
        let report = self.flush_spool().await?;
        if report.written > 0 || report.remaining > 0 {
            tracing::info!(
                written = report.written,
                remaining = report.remaining,
                "replayed CDR spool at start"
            );
        }
        Ok(())
    }

    /// The pool, once the database has been reached and migrated (tried again on every call
    /// until it succeeds).
    async fn pool(&self) -> Result<&AnyPool, CdrError> {
        let setup = self.ready.get_or_try_init(|| async {
            prepare(&self.database, &self.pool).await?;
            sqlx::migrate!("./migrations").run(&self.pool).await?;
            Ok::<(), CdrError>(())
        });
        match tokio::time::timeout(READY_TIMEOUT, setup).await {
            Ok(result) => result.map(|()| &self.pool),
            Err(_) => Err(CdrError::Timeout(READY_TIMEOUT)),
        }
    }

    /// Applies the retention settings; returns the number of calls affected (0 when retention
    /// is off).
    pub async fn apply_retention(&self, settings: &CdrSettings) -> Result<u64, CdrError> {
        match settings.retention_days {
            Some(days) => self.purge_older_than(days, settings.retention_mode).await,
            None => Ok(0),
        }
    }

    /// Store caller numbers as HMAC-SHA256 pseudonyms under `key` (setting
    /// `cdr.pseudonymise_key`); `None` stores them raw.
    pub fn with_pseudonymise_key(mut self, key: Option<&str>) -> Self {
        self.pseudonymise_key = key.map(|key| key.as_bytes().to_vec());
        self
    }

    /// Longest a database write may take before the record is spooled instead.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Records a call's arrival. Fails only if neither the database nor the spool took it.
    pub async fn call_started(&self, mut start: CallStart) -> Result<Delivery, CdrError> {
        start.caller = self.caller_as_stored(start.caller);
        self.submit(SpoolEntry::Started(start)).await
    }

    /// Completes a call's record and stores its events. Fails only if neither the database nor
    /// the spool took it.
    pub async fn call_ended(
        &self,
        mut record: CallRecord,
        events: Vec<CallEvent>,
    ) -> Result<Delivery, CdrError> {
        record.caller = self.caller_as_stored(record.caller);
        self.submit(SpoolEntry::Ended {
            record: Box::new(record),
            events,
        })
        .await
    }

    /// Entries waiting in the spool.
    pub async fn spooled(&self) -> usize {
        self.spool.lock().await.pending()
    }

    /// Entries waiting in the spool as of the last write or replay, without waiting.
    pub fn spooled_records(&self) -> usize {
        self.spooled_records.load(Ordering::Relaxed)
    }

    /// Writes the spooled entries in order; the spool keeps only what was not confirmed.
    pub async fn flush_spool(&self) -> Result<FlushReport, CdrError> {
        let mut spool = self.spool.lock().await;
        if spool.pending() == 0 {
            return Ok(FlushReport {
                written: 0,
                remaining: 0,
            });
        }
        let entries = spool.read_all().await?;
        let mut written = 0;
        for entry in &entries {
            if let Err(error) = self.write_with_timeout(entry).await {
                tracing::warn!(%error, spool = %spool.path().display(), "CDR spool replay paused");
                break;
            }
            written += 1;
        }
        let remaining = entries.get(written..).unwrap_or_default();
        spool.keep_only(remaining).await?;
        self.spooled_records
            .store(spool.pending(), Ordering::Relaxed);
        Ok(FlushReport {
            written,
            remaining: remaining.len(),
        })
    }

    /// Figures per `query.by` group over completed calls that arrived in `[from, to)`.
    /// Grouping and arithmetic happen in Rust so both backends give identical results.
    pub async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsRow>, CdrError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM calls WHERE arrived_ms >= $1 AND arrived_ms < $2 \
             AND ended_ms IS NOT NULL ORDER BY arrived_ms, call_id"
        );
        let rows = sqlx::query(&sql)
            .bind(query.from.timestamp_millis())
            .bind(query.to.timestamp_millis())
            .fetch_all(self.pool().await?)
            .await
            .map_err(|source| CdrError::Database {
                context: "reading calls for statistics",
                source,
            })?;
        let records = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(compute_stats(&records, query))
    }

    /// Completed calls matching `filter`, newest first.
    pub async fn calls(
        &self,
        filter: &CallFilter,
        page: Page,
    ) -> Result<Vec<CallRecord>, CdrError> {
        let mut conditions = vec!["ended_ms IS NOT NULL".to_owned()];
        let mut next_param = 1;
        let mut placeholder = || {
            let text = format!("${next_param}");
            next_param += 1;
            text
        };
        if filter.from.is_some() {
            conditions.push(format!("arrived_ms >= {}", placeholder()));
        }
        if filter.to.is_some() {
            conditions.push(format!("arrived_ms < {}", placeholder()));
        }
        if filter.enterprise.is_some() {
            conditions.push(format!("enterprise = {}", placeholder()));
        }
        if filter.outcome.is_some() {
            conditions.push(format!("outcome = {}", placeholder()));
        }
        let limit = placeholder();
        let offset = placeholder();
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM calls WHERE {} \
             ORDER BY arrived_ms DESC, call_id DESC LIMIT {limit} OFFSET {offset}",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(&sql);
        if let Some(from) = filter.from {
            query = query.bind(from.timestamp_millis());
        }
        if let Some(to) = filter.to {
            query = query.bind(to.timestamp_millis());
        }
        if let Some(enterprise) = &filter.enterprise {
            query = query.bind(enterprise.clone());
        }
        if let Some(outcome) = filter.outcome {
            query = query.bind(outcome.as_str());
        }
        let rows = query
            .bind(i64::from(page.limit))
            .bind(i64::try_from(page.offset).unwrap_or(i64::MAX))
            .fetch_all(self.pool().await?)
            .await
            .map_err(|source| CdrError::Database {
                context: "listing calls",
                source,
            })?;
        rows.iter().map(record_from_row).collect()
    }

    /// Calls that started and have not ended yet, oldest first.
    pub async fn live_calls(&self) -> Result<Vec<CallStart>, CdrError> {
        let rows = sqlx::query(
            "SELECT call_id, caller, trunk, arrived_ms FROM calls WHERE ended_ms IS NULL \
             ORDER BY arrived_ms, call_id",
        )
        .fetch_all(self.pool().await?)
        .await
        .map_err(|source| CdrError::Database {
            context: "listing live calls",
            source,
        })?;
        rows.iter()
            .map(|row| {
                let call_id: String = get(row, "call_id")?;
                Ok(CallStart {
                    caller: get(row, "caller")?,
                    trunk: get(row, "trunk")?,
                    arrived: time(&call_id, "arrived_ms", get(row, "arrived_ms")?)?,
                    call_id,
                })
            })
            .collect()
    }

    /// The audit trail of one call, in `seq` order.
    pub async fn events(&self, call_id: &str) -> Result<Vec<CallEvent>, CdrError> {
        let rows = sqlx::query(
            "SELECT call_id, seq, at_ms, kind, detail FROM call_events WHERE call_id = $1 \
             ORDER BY seq",
        )
        .bind(call_id.to_owned())
        .fetch_all(self.pool().await?)
        .await
        .map_err(|source| CdrError::Database {
            context: "reading call events",
            source,
        })?;
        rows.iter()
            .map(|row| {
                let call_id: String = get(row, "call_id")?;
                let seq: i64 = get(row, "seq")?;
                Ok(CallEvent {
                    seq: u32::try_from(seq).map_err(|_| bad_value(&call_id, "seq", seq))?,
                    at: time(&call_id, "at_ms", get(row, "at_ms")?)?,
                    kind: get(row, "kind")?,
                    detail: get(row, "detail")?,
                    call_id,
                })
            })
            .collect()
    }

    /// Retention: applies `mode` to calls that arrived more than `days` days ago.
    pub async fn purge_older_than(&self, days: u32, mode: PurgeMode) -> Result<u64, CdrError> {
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
        self.purge_before(cutoff, mode).await
    }

    /// Applies `mode` to calls that arrived before `cutoff`; returns the number of calls affected.
    pub async fn purge_before(
        &self,
        cutoff: DateTime<Utc>,
        mode: PurgeMode,
    ) -> Result<u64, CdrError> {
        let cutoff_ms = cutoff.timestamp_millis();
        let database_error = |source| CdrError::Database {
            context: "purging old calls",
            source,
        };
        let mut tx = self.pool().await?.begin().await.map_err(database_error)?;
        let affected = match mode {
            PurgeMode::Delete => {
                sqlx::query(
                    "DELETE FROM call_events WHERE call_id IN \
                     (SELECT call_id FROM calls WHERE arrived_ms < $1)",
                )
                .bind(cutoff_ms)
                .execute(&mut *tx)
                .await
                .map_err(database_error)?;
                sqlx::query("DELETE FROM calls WHERE arrived_ms < $1")
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(database_error)?
                    .rows_affected()
            }
            PurgeMode::BlankCaller => sqlx::query(
                "UPDATE calls SET caller = NULL WHERE arrived_ms < $1 AND caller IS NOT NULL",
            )
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?
            .rows_affected(),
        };
        tx.commit().await.map_err(database_error)?;
        Ok(affected)
    }

    fn caller_as_stored(&self, caller: Option<String>) -> Option<String> {
        match (&self.pseudonymise_key, caller) {
            (Some(key), Some(number)) => Some(pseudonymise(key, &number)),
            (_, caller) => caller,
        }
    }

    /// Straight to the database while nothing is spooled (order is kept by never overtaking
    /// spooled entries); otherwise, or if the write fails or is too slow, to the spool.
    async fn submit(&self, entry: SpoolEntry) -> Result<Delivery, CdrError> {
        let mut spool = self.spool.lock().await;
        if spool.pending() == 0 {
            match self.write_with_timeout(&entry).await {
                Ok(()) => return Ok(Delivery::Stored),
                Err(error) => tracing::warn!(%error, "CDR write failed; spooling"),
            }
        }
        spool.append(&entry).await?;
        self.spooled_records
            .store(spool.pending(), Ordering::Relaxed);
        Ok(Delivery::Spooled)
    }

    async fn write_with_timeout(&self, entry: &SpoolEntry) -> Result<(), CdrError> {
        // Reaching the database (and migrating it, the first time) has its own, longer limit.
        self.pool().await?;
        match tokio::time::timeout(self.write_timeout, self.write(entry)).await {
            Ok(result) => result,
            Err(_) => Err(CdrError::Timeout(self.write_timeout)),
        }
    }

    async fn write(&self, entry: &SpoolEntry) -> Result<(), CdrError> {
        match entry {
            SpoolEntry::Started(start) => sqlx::query(INSERT_START)
                .bind(start.call_id.clone())
                .bind(start.caller.clone())
                .bind(start.trunk.clone())
                .bind(start.arrived.timestamp_millis())
                .execute(self.pool().await?)
                .await
                .map(drop)
                .map_err(|source| CdrError::Database {
                    context: "recording call start",
                    source,
                }),
            SpoolEntry::Ended { record, events } => self.write_ended(record, events).await,
        }
    }

    async fn write_ended(&self, record: &CallRecord, events: &[CallEvent]) -> Result<(), CdrError> {
        let database_error = |source| CdrError::Database {
            context: "recording call end",
            source,
        };
        let millis = |time: Option<DateTime<Utc>>| time.map(|t| t.timestamp_millis());
        let mut tx = self.pool().await?.begin().await.map_err(database_error)?;
        sqlx::query(UPSERT_RECORD)
            .bind(record.call_id.clone())
            .bind(record.caller.clone())
            .bind(record.trunk.clone())
            .bind(record.arrived.timestamp_millis())
            .bind(millis(record.ivr_answered))
            .bind(millis(record.language_chosen))
            .bind(millis(record.group_chosen))
            .bind(millis(record.queue_entered))
            .bind(millis(record.agent_answered))
            .bind(record.ended.timestamp_millis())
            .bind(record.language.clone())
            .bind(record.menu_path.clone())
            .bind(record.dtmf_mode.as_str())
            .bind(record.enterprise.clone())
            .bind(record.agent.clone())
            .bind(record.transfer_mode.map(TransferMode::as_str))
            .bind(record.outcome.as_str())
            // Durations are bound as integer milliseconds and divided in SQL: sqlx 0.8's `Any`
            // binds a NULL f64 as float4 on PostgreSQL, which breaks the cached statement.
            .bind(record.wait_ms())
            .bind(record.talk_ms())
            .bind(i64::try_from(record.rtp_packets).unwrap_or(i64::MAX))
            .bind(i64::try_from(record.rtp_lost).unwrap_or(i64::MAX))
            .bind(record.rtp_jitter_ms)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        for event in events {
            sqlx::query(INSERT_EVENT)
                .bind(event.call_id.clone())
                .bind(i64::from(event.seq))
                .bind(event.at.timestamp_millis())
                .bind(event.kind.clone())
                .bind(event.detail.clone())
                .execute(&mut *tx)
                .await
                .map_err(database_error)?;
        }
        tx.commit().await.map_err(database_error)
    }
}

fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T, CdrError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|source| CdrError::Database {
        context: "decoding a call row",
        source,
    })
}

fn bad_value(call_id: &str, column: &'static str, value: impl ToString) -> CdrError {
    CdrError::BadValue {
        call_id: call_id.to_owned(),
        column,
        value: value.to_string(),
    }
}

fn time(call_id: &str, column: &'static str, ms: i64) -> Result<DateTime<Utc>, CdrError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| bad_value(call_id, column, ms))
}

fn optional_time(
    row: &AnyRow,
    call_id: &str,
    column: &'static str,
) -> Result<Option<DateTime<Utc>>, CdrError> {
    get::<Option<i64>>(row, column)?
        .map(|ms| time(call_id, column, ms))
        .transpose()
}

fn parsed<T: std::str::FromStr>(
    call_id: &str,
    column: &'static str,
    text: String,
) -> Result<T, CdrError> {
    text.parse().map_err(|_| bad_value(call_id, column, text))
}

fn record_from_row(row: &AnyRow) -> Result<CallRecord, CdrError> {
    let call_id: String = get(row, "call_id")?;
    let ended = optional_time(row, &call_id, "ended_ms")?
        .ok_or_else(|| bad_value(&call_id, "ended_ms", "NULL"))?;
    let outcome: Option<String> = get(row, "outcome")?;
    let outcome = parsed::<Outcome>(&call_id, "outcome", outcome.unwrap_or_default())?;
    let dtmf_mode: Option<String> = get(row, "dtmf_mode")?;
    let dtmf_mode = parsed::<DtmfMode>(&call_id, "dtmf_mode", dtmf_mode.unwrap_or_default())?;
    let transfer_mode = get::<Option<String>>(row, "transfer_mode")?
        .map(|text| parsed::<TransferMode>(&call_id, "transfer_mode", text))
        .transpose()?;
    let count = |column: &'static str| -> Result<u64, CdrError> {
        let value: Option<i64> = get(row, column)?;
        let value = value.unwrap_or(0);
        u64::try_from(value).map_err(|_| bad_value(&call_id, column, value))
    };
    Ok(CallRecord {
        caller: get(row, "caller")?,
        trunk: get(row, "trunk")?,
        arrived: time(&call_id, "arrived_ms", get(row, "arrived_ms")?)?,
        ivr_answered: optional_time(row, &call_id, "ivr_answered_ms")?,
        language_chosen: optional_time(row, &call_id, "language_chosen_ms")?,
        group_chosen: optional_time(row, &call_id, "group_chosen_ms")?,
        queue_entered: optional_time(row, &call_id, "queue_entered_ms")?,
        agent_answered: optional_time(row, &call_id, "agent_answered_ms")?,
        ended,
        language: get(row, "language")?,
        menu_path: get(row, "menu_path")?,
        dtmf_mode,
        enterprise: get(row, "enterprise")?,
        agent: get(row, "agent")?,
        transfer_mode,
        outcome,
        rtp_packets: count("rtp_packets")?,
        rtp_lost: count("rtp_lost")?,
        rtp_jitter_ms: get::<Option<f64>>(row, "rtp_jitter_ms")?.unwrap_or(0.0),
        call_id,
    })
}
