//! Retention: old records are deleted, or kept without the caller's number.

use chrono::{DateTime, Utc};

use super::CdrStore;
use crate::cdr::{CdrError, CdrSettings};

/// What retention does to old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeMode {
    /// Delete the calls and their events.
    Delete,
    /// Keep the calls for statistics but set the caller number to NULL.
    BlankCaller,
}

impl CdrStore {
    /// Applies the retention settings; returns the number of calls affected (0 when retention
    /// is off).
    pub async fn apply_retention(&self, settings: &CdrSettings) -> Result<u64, CdrError> {
        match settings.retention_days {
            Some(days) => self.purge_older_than(days, settings.retention_mode).await,
            None => Ok(0),
        }
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
}
