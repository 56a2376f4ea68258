//! `CdrStore`: writes call records to the database (upserts keyed by `call_id`, events by
//! `call_id` + `seq`, so any write may be repeated safely), falls back to the spool when the
//! database is down or slow, replays the spool in order, and reads records back for statistics,
//! listings and retention, and closes the records a killed run of this node left open. The
//! concerns live in `write`, `read`, `retention` and `interrupted`; this file holds the store,
//! its set-up and the path of every write (database, else spool).

mod callbacks;
mod interrupted;
mod read;
mod retention;
mod write;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::AnyPool;
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use super::backend::{lazy_pool, prepare, DatabaseUrl};
use super::health::RecordHealth;
use super::model::{pseudonymise, CallEvent, CallRecord, CallStart, Outcome};
use super::spool::{Spool, SpoolEntry};
use super::{CdrError, CdrSettings};

pub use interrupted::close_interrupted_at_start;
pub use retention::PurgeMode;

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
    /// Stamped on every row this store writes (setting `node.name`).
    node: String,
    /// Calls whose start this store recorded and whose end it has not: they are up in this
    /// run, so closing interrupted records never touches them (see `interrupted`).
    live_here: std::sync::Mutex<HashSet<String>>,
    /// Records closed as `interrupted` by this store, for `/metrics`.
    interrupted_closed: AtomicU64,
    health: RecordHealth,
}

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
            .with_write_timeout(settings.write_timeout)
            .with_node(&settings.node);
        let database = match store.pool().await {
            Ok(_) => store.probe_database_write().await,
            Err(error) => Err(error),
        };
        let spool = store.spool.lock().await.probe().await;
        match (database, spool) {
            (Ok(()), spool) => {
                if let Err(error) = spool {
                    tracing::warn!(
                        %error,
                        "CDR spool not writable: records are stored while the database takes them"
                    );
                }
                store.replay_at_start().await?;
            }
            (Err(error), Ok(())) => tracing::warn!(
                %error,
                spool = %settings.spool_path.display(),
                "CDR database unreachable at start: records are spooled until it is back"
            ),
            // Every call's record would be lost from the first call on.
            (Err(database), Err(spool)) => {
                return Err(CdrError::Unwritable {
                    database: database.to_string(),
                    spool: spool.to_string(),
                })
            }
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
            node: crate::settings::host_name(),
            live_here: std::sync::Mutex::new(HashSet::new()),
            interrupted_closed: AtomicU64::new(0),
            health: RecordHealth::default(),
        })
    }

    /// A write that changes nothing, so a database that can be read but not written (a
    /// read-only SQLite file or folder, a read-only PostgreSQL) is found before calls come.
    async fn probe_database_write(&self) -> Result<(), CdrError> {
        let probe = sqlx::query("UPDATE calls SET node = node WHERE call_id = $1")
            .bind(String::new())
            .execute(self.pool().await?);
        match tokio::time::timeout(self.write_timeout, probe).await {
            Ok(result) => result.map(drop).map_err(|source| CdrError::Database {
                context: "checking that records can be written",
                source,
            }),
            Err(_) => Err(CdrError::Timeout(self.write_timeout)),
        }
    }

    /// Whether records can be stored now, how many wait in memory, how many were lost.
    pub fn health(&self) -> &RecordHealth {
        &self.health
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

    /// The node name stamped on every row this store writes (default: the host name).
    pub fn with_node(mut self, node: &str) -> Self {
        node.clone_into(&mut self.node);
        self
    }

    /// The node name this store stamps on its rows.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records a call's arrival. Fails only if neither the database nor the spool took it.
    pub async fn call_started(&self, mut start: CallStart) -> Result<Delivery, CdrError> {
        start.caller = self.caller_as_stored(start.caller);
        // Marked live before it can reach the database, so it is never taken for a call of a
        // previous run.
        self.live_here_set().insert(start.call_id.clone());
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
        let call_id = record.call_id.clone();
        let delivery = self
            .submit(SpoolEntry::Ended {
                record: Box::new(record),
                events,
            })
            .await;
        // Unmarked only once the end is in the database or the spool: until then a closing
        // of interrupted records (which replays the spool first) must leave the call alone.
        self.live_here_set().remove(&call_id);
        delivery
    }

    /// Records a change of an agent's availability (audit trail). Fails only if neither the
    /// database nor the spool took it.
    pub async fn agent_state_changed(
        &self,
        change: crate::cdr::AgentStateChange,
    ) -> Result<Delivery, CdrError> {
        self.submit(SpoolEntry::AgentState(change)).await
    }

    /// Records a callback request's new state. Fails only if neither the database nor the
    /// spool took it.
    pub async fn callback_changed(
        &self,
        row: crate::cdr::CallbackRow,
    ) -> Result<Delivery, CdrError> {
        self.submit(SpoolEntry::Callback(row)).await
    }

    fn live_here_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.live_here
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        self.flush_locked(&mut spool).await
    }

    /// `flush_spool` for a caller that already holds the spool's lock.
    async fn flush_locked(
        &self,
        spool: &mut MutexGuard<'_, Spool>,
    ) -> Result<FlushReport, CdrError> {
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
}
