//! Closing the records a run of this node left open: a call that was up when the service was
//! killed (or the machine lost power) has a start row and never gets its end. The next start of
//! the same node closes each such row as `interrupted`, its end the last time known for the
//! call, with an `interrupted` audit event. Rows of other nodes sharing the database are live
//! calls of theirs and are never touched; rows without a node (written before the node column
//! existed) are left as they are, since nobody can tell whose they are.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::write::INSERT_EVENT;
use super::CdrStore;
use crate::cdr::model::{DtmfMode, Outcome};
use crate::cdr::writer::DEFAULT_RETRY_INTERVAL;
use crate::cdr::CdrError;

/// The audit event written for each record closed here.
pub const INTERRUPTED_EVENT: &str = "interrupted";

/// Open rows of one node, with every time known for them. The step columns are NULL on an
/// open row today (they are written with the end), but are taken into account all the same.
const OPEN_ROWS: &str = "SELECT c.call_id, c.arrived_ms, c.ivr_answered_ms, \
     c.language_chosen_ms, c.group_chosen_ms, c.queue_entered_ms, c.agent_answered_ms, \
     MAX(e.at_ms) AS last_event_ms, MAX(e.seq) AS last_seq \
     FROM calls c LEFT JOIN call_events e ON e.call_id = c.call_id \
     WHERE c.node = $1 AND c.ended_ms IS NULL \
     GROUP BY c.call_id, c.arrived_ms, c.ivr_answered_ms, c.language_chosen_ms, \
     c.group_chosen_ms, c.queue_entered_ms, c.agent_answered_ms \
     ORDER BY c.arrived_ms, c.call_id";

/// `dtmf_mode` is NOT NULL for a completed record (it is read back as a closed vocabulary);
/// an interrupted call's mode is unknown, `none` says no key was recorded.
const CLOSE_ROW: &str = "UPDATE calls SET ended_ms = $1, outcome = $2, \
     dtmf_mode = COALESCE(dtmf_mode, $3) \
     WHERE call_id = $4 AND node = $5 AND ended_ms IS NULL";

/// One open row and the time its record is closed at.
struct OpenRow {
    call_id: String,
    last_known_ms: i64,
    next_seq: i64,
}

impl CdrStore {
    /// Closes every open record of `node` as `interrupted`, its end the latest of its arrival,
    /// its steps and its audit events, and writes an `interrupted` event for each; returns how
    /// many were closed. Calls this store itself recorded as started and not yet ended are up
    /// now and left alone.
    ///
    /// The spool is replayed first, holding its lock until the closing is done: a call that
    /// ended while the database was away has its end in the spool only, and must be completed
    /// by that end, not closed as interrupted (and no write of this run can slip in between).
    /// If the replay stops short (the database failed again), nothing is closed and the error
    /// says so: the caller tries again later.
    pub async fn close_interrupted(&self, node: &str) -> Result<u64, CdrError> {
        let mut spool = self.spool.lock().await;
        let report = self.flush_locked(&mut spool).await?;
        if report.written > 0 {
            // The same line as the writer's replay: whoever replays, the log tells it once.
            tracing::info!(
                written = report.written,
                remaining = report.remaining,
                "CDR spool replayed"
            );
        }
        if report.remaining > 0 {
            return Err(CdrError::SpoolNotReplayed(report.remaining));
        }
        // Reaching (and migrating) the database has its own, longer limit; the closing itself
        // is bounded like a write, since every record of this run waits for the spool's lock
        // meanwhile. Cut short, the transaction is rolled back and closes nothing.
        self.pool().await?;
        let closed =
            match tokio::time::timeout(self.write_timeout, self.close_open_rows(node)).await {
                Ok(result) => result?,
                Err(_) => return Err(CdrError::Timeout(self.write_timeout)),
            };
        drop(spool);
        self.interrupted_closed.fetch_add(closed, Ordering::Relaxed);
        Ok(closed)
    }

    async fn close_open_rows(&self, node: &str) -> Result<u64, CdrError> {
        let database_error = |source| CdrError::Database {
            context: "closing interrupted calls",
            source,
        };
        let mut tx = self.pool().await?.begin().await.map_err(database_error)?;
        let rows = sqlx::query(OPEN_ROWS)
            .bind(node.to_owned())
            .fetch_all(&mut *tx)
            .await
            .map_err(database_error)?;
        let open = rows.iter().map(open_row).collect::<Result<Vec<_>, _>>()?;
        let live_here = self.live_here_set().clone();
        let mut closed = 0;
        for row in open.iter().filter(|row| !live_here.contains(&row.call_id)) {
            let updated = sqlx::query(CLOSE_ROW)
                .bind(row.last_known_ms)
                .bind(Outcome::Interrupted.as_str())
                .bind(DtmfMode::None.as_str())
                .bind(row.call_id.clone())
                .bind(node.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(database_error)?
                .rows_affected();
            if updated == 0 {
                continue;
            }
            sqlx::query(INSERT_EVENT)
                .bind(row.call_id.clone())
                .bind(row.next_seq)
                .bind(row.last_known_ms)
                .bind(INTERRUPTED_EVENT)
                .bind(format!(
                    "closed when node {node} started again: the service stopped while the call was up"
                ))
                .execute(&mut *tx)
                .await
                .map_err(database_error)?;
            closed += updated;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(closed)
    }

    /// Records closed as `interrupted` by this store since it was opened.
    pub fn interrupted_closed(&self) -> u64 {
        self.interrupted_closed.load(Ordering::Relaxed)
    }
}

fn open_row(row: &AnyRow) -> Result<OpenRow, CdrError> {
    let get = |column: &'static str| -> Result<Option<i64>, CdrError> {
        row.try_get(column).map_err(|source| CdrError::Database {
            context: "decoding an open call row",
            source,
        })
    };
    let call_id: String = row
        .try_get("call_id")
        .map_err(|source| CdrError::Database {
            context: "decoding an open call row",
            source,
        })?;
    let mut last_known_ms = get("arrived_ms")?.unwrap_or(i64::MIN);
    for column in [
        "ivr_answered_ms",
        "language_chosen_ms",
        "group_chosen_ms",
        "queue_entered_ms",
        "agent_answered_ms",
        "last_event_ms",
    ] {
        if let Some(ms) = get(column)? {
            last_known_ms = last_known_ms.max(ms);
        }
    }
    let next_seq = get("last_seq")?.map_or(0, |seq| seq + 1);
    Ok(OpenRow {
        call_id,
        last_known_ms,
        next_seq,
    })
}

/// At service start: closes the records a previous run of the store's node left open, now if
/// the database was reached when the store was opened, else in the background once it is
/// (tried on the spool replay's interval, like the spool itself). Logs how many were closed.
pub async fn close_interrupted_at_start(store: Arc<CdrStore>) {
    if store.ready.initialized() && close_and_log(&store).await {
        return;
    }
    tokio::spawn(async move {
        let mut retry = tokio::time::interval(DEFAULT_RETRY_INTERVAL);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once.
        retry.tick().await;
        loop {
            retry.tick().await;
            if close_and_log(&store).await {
                return;
            }
        }
    });
}

/// One attempt; `true` once done.
async fn close_and_log(store: &CdrStore) -> bool {
    match store.close_interrupted(store.node()).await {
        Ok(closed) => {
            tracing::info!(
                closed,
                node = store.node(),
                "closed the call records a stopped run left open (outcome interrupted)"
            );
            true
        }
        Err(error) => {
            tracing::warn!(
                %error,
                node = store.node(),
                "cannot close interrupted call records yet; trying again"
            );
            false
        }
    }
}
