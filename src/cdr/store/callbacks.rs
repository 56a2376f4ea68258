//! Queued callback requests (table `callbacks`): the pending ones a node takes up at start,
//! and the claim a node makes before each dial, so two nodes never dial one request at once.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;

use super::CdrStore;
use crate::cdr::model::{CallbackRow, CallbackStatus};
use crate::cdr::CdrError;

/// The claim before a dial: granted (one row changed) only while the row is pending, or
/// already this node's.
const CLAIM_CALLBACK: &str = "UPDATE callbacks SET state = 'dialling', node = $1, \
     attempts = $2, updated_ms = $3 WHERE id = $4 \
     AND (state = 'pending' OR (state = 'dialling' AND node = $1))";

/// Pending requests, and those this node was dialling when it stopped (that dial is over).
const PENDING_CALLBACKS: &str = "SELECT id, group_name, language, number, display, path, \
     requested_ms, queue_entered_ms, attempts, state, updated_ms FROM callbacks \
     WHERE state = 'pending' OR (state = 'dialling' AND node = $1) \
     ORDER BY queue_entered_ms, id";

impl CdrStore {
    /// The requests this node should serve at start, oldest place first: pending ones, and
    /// its own that were being dialled when it stopped (pending again).
    pub async fn pending_callbacks(&self) -> Result<Vec<CallbackRow>, CdrError> {
        let database_error = |source| CdrError::Database {
            context: "reading pending callback requests",
            source,
        };
        let rows = sqlx::query(PENDING_CALLBACKS)
            .bind(self.node.clone())
            .fetch_all(self.pool().await?)
            .await
            .map_err(database_error)?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in &rows {
            let text = |column: &str| row.try_get::<String, _>(column);
            let millis = |column: &str| row.try_get::<i64, _>(column);
            let time = |ms: i64| Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
            pending.push(CallbackRow {
                id: text("id").map_err(database_error)?,
                group: text("group_name").map_err(database_error)?,
                language: text("language").map_err(database_error)?,
                number: text("number").map_err(database_error)?,
                display: text("display").map_err(database_error)?,
                path: text("path").map_err(database_error)?,
                requested: time(millis("requested_ms").map_err(database_error)?),
                queue_entered: time(millis("queue_entered_ms").map_err(database_error)?),
                attempts: u32::try_from(millis("attempts").map_err(database_error)?).unwrap_or(0),
                state: CallbackStatus::Pending,
                updated: time(millis("updated_ms").map_err(database_error)?),
            });
        }
        Ok(pending)
    }

    /// Claims a callback request for this node's dial number `attempt`: true when this node
    /// may dial (the row was pending, or is already this node's), false when another node
    /// has it or it is over.
    pub async fn claim_callback(
        &self,
        id: &str,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, CdrError> {
        let claimed = sqlx::query(CLAIM_CALLBACK)
            .bind(self.node.clone())
            .bind(i64::from(attempt))
            .bind(at.timestamp_millis())
            .bind(id.to_owned())
            .execute(self.pool().await?)
            .await
            .map_err(|source| CdrError::Database {
                context: "claiming a callback request",
                source,
            })?;
        if claimed.rows_affected() == 1 {
            return Ok(true);
        }
        // No row at all: this node's own request whose first row is still on its way (or in
        // the spool); nobody else can know of it.
        let exists = sqlx::query("SELECT id FROM callbacks WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.pool().await?)
            .await
            .map_err(|source| CdrError::Database {
                context: "claiming a callback request",
                source,
            })?;
        Ok(exists.is_none())
    }
}
