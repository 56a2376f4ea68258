//! Writing: the SQL of a call start and of a completed record with its events, each bounded
//! by the write limit.

use chrono::{DateTime, Utc};

use super::CdrStore;
use crate::cdr::model::{CallEvent, CallRecord, TransferMode};
use crate::cdr::spool::SpoolEntry;
use crate::cdr::CdrError;

/// Every row carries the name of the node that wrote it (setting `node.name`), so a node closes
/// only its own interrupted calls when it starts.
const INSERT_START: &str = "INSERT INTO calls (call_id, caller, trunk, arrived_ms, node) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id) DO NOTHING";

const UPSERT_RECORD: &str = "INSERT INTO calls (call_id, caller, trunk, arrived_ms, \
     ivr_answered_ms, language_chosen_ms, group_chosen_ms, queue_entered_ms, agent_answered_ms, \
     ended_ms, language, menu_path, dtmf_mode, enterprise, agent, transfer_mode, outcome, \
     wait_seconds, talk_seconds, rtp_packets, rtp_lost, rtp_jitter_ms, node, callback_of) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     CAST($18 AS DOUBLE PRECISION) / 1000.0, CAST($19 AS DOUBLE PRECISION) / 1000.0, \
     $20, $21, $22, $23, $24) \
     ON CONFLICT (call_id) DO UPDATE SET caller = excluded.caller, trunk = excluded.trunk, \
     arrived_ms = excluded.arrived_ms, ivr_answered_ms = excluded.ivr_answered_ms, \
     language_chosen_ms = excluded.language_chosen_ms, group_chosen_ms = excluded.group_chosen_ms, \
     queue_entered_ms = excluded.queue_entered_ms, agent_answered_ms = excluded.agent_answered_ms, \
     ended_ms = excluded.ended_ms, language = excluded.language, menu_path = excluded.menu_path, \
     dtmf_mode = excluded.dtmf_mode, enterprise = excluded.enterprise, agent = excluded.agent, \
     transfer_mode = excluded.transfer_mode, outcome = excluded.outcome, \
     wait_seconds = excluded.wait_seconds, talk_seconds = excluded.talk_seconds, \
     rtp_packets = excluded.rtp_packets, rtp_lost = excluded.rtp_lost, \
     rtp_jitter_ms = excluded.rtp_jitter_ms, node = excluded.node, \
     callback_of = excluded.callback_of";

const INSERT_AGENT_STATE: &str = "INSERT INTO agent_states (agent, from_state, to_state, \
     reason, at_ms, node) VALUES ($1, $2, $3, $4, $5, $6)";

/// A request's row follows its state; a node only takes over a row still pending, or one
/// it is dialling itself (its own writes may arrive after its claim).
const UPSERT_CALLBACK: &str = "INSERT INTO callbacks (id, group_name, language, number, \
     display, path, requested_ms, queue_entered_ms, attempts, state, node, updated_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (id) DO UPDATE SET number = excluded.number, attempts = excluded.attempts, \
     state = excluded.state, node = excluded.node, updated_ms = excluded.updated_ms \
     WHERE callbacks.state IN ('pending', 'dialling') \
     AND (callbacks.node IS NULL OR callbacks.node = excluded.node OR callbacks.state = 'pending')";

pub(super) const INSERT_EVENT: &str =
    "INSERT INTO call_events (call_id, seq, at_ms, kind, detail) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id, seq) DO NOTHING";

impl CdrStore {
    pub(super) async fn write_with_timeout(&self, entry: &SpoolEntry) -> Result<(), CdrError> {
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
                .bind(self.node.clone())
                .execute(self.pool().await?)
                .await
                .map(drop)
                .map_err(|source| CdrError::Database {
                    context: "recording call start",
                    source,
                }),
            SpoolEntry::Ended { record, events } => self.write_ended(record, events).await,
            SpoolEntry::Callback(row) => sqlx::query(UPSERT_CALLBACK)
                .bind(row.id.clone())
                .bind(row.group.clone())
                .bind(row.language.clone())
                .bind(row.number.clone())
                .bind(row.display.clone())
                .bind(row.path.clone())
                .bind(row.requested.timestamp_millis())
                .bind(row.queue_entered.timestamp_millis())
                .bind(i64::from(row.attempts))
                .bind(row.state.as_str())
                .bind(self.node.clone())
                .bind(row.updated.timestamp_millis())
                .execute(self.pool().await?)
                .await
                .map(drop)
                .map_err(|source| CdrError::Database {
                    context: "recording a callback request",
                    source,
                }),
            SpoolEntry::AgentState(change) => sqlx::query(INSERT_AGENT_STATE)
                .bind(change.agent.clone())
                .bind(change.from.clone())
                .bind(change.to.clone())
                .bind(change.reason.clone())
                .bind(change.at.timestamp_millis())
                .bind(self.node.clone())
                .execute(self.pool().await?)
                .await
                .map(drop)
                .map_err(|source| CdrError::Database {
                    context: "recording an agent state change",
                    source,
                }),
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
            .bind(self.node.clone())
            .bind(record.callback_of.clone())
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
