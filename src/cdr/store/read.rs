//! Reading back: statistics, listings, live calls, a call's audit trail and callers' latest
//! language choices, and decoding rows into the model.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{CallFilter, CdrStore, Page};
use crate::cdr::model::{
    CallEvent, CallRecord, CallStart, DtmfMode, LanguageChoice, Outcome, TransferMode,
};
use crate::cdr::stats::{compute_stats, StatsQuery, StatsRow};
use crate::cdr::CdrError;

const RECORD_COLUMNS: &str = "call_id, caller, trunk, arrived_ms, ivr_answered_ms, \
     language_chosen_ms, group_chosen_ms, queue_entered_ms, agent_answered_ms, ended_ms, \
     language, menu_path, dtmf_mode, enterprise, agent, transfer_mode, outcome, rtp_packets, \
     rtp_lost, rtp_jitter_ms, callback_of";

impl CdrStore {
    /// Figures per `query.by` group over completed calls that arrived in `[from, to)`.
    /// Grouping and arithmetic happen in Rust so both backends give identical results.
    pub async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsRow>, CdrError> {
        let records = self.completed_records(query.from, query.to).await?;
        Ok(compute_stats(&records, query))
    }

    /// Completed calls that arrived in `[from, to)`, oldest first: what statistics are computed
    /// from (the dashboard fetches them once and computes several groupings).
    pub async fn completed_records(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CallRecord>, CdrError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM calls WHERE arrived_ms >= $1 AND arrived_ms < $2 \
             AND ended_ms IS NOT NULL ORDER BY arrived_ms, call_id"
        );
        let rows = sqlx::query(&sql)
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .fetch_all(self.pool().await?)
            .await
            .map_err(|source| CdrError::Database {
                context: "reading calls for statistics",
                source,
            })?;
        rows.iter().map(record_from_row).collect()
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

    /// Each caller's latest choice in the language menu made at `since` or later, oldest
    /// first: calls with a caller (as stored: the pseudonym when keyed) and a chosen language.
    /// Retention deletes or blanks old callers, so what it removed is not found here either.
    pub async fn language_choices(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<LanguageChoice>, CdrError> {
        let rows = sqlx::query(
            "SELECT call_id, caller, language, language_chosen_ms FROM calls \
             WHERE caller IS NOT NULL AND caller <> '' AND language IS NOT NULL \
             AND language_chosen_ms IS NOT NULL AND language_chosen_ms >= $1 \
             ORDER BY language_chosen_ms, call_id",
        )
        .bind(since.timestamp_millis())
        .fetch_all(self.pool().await?)
        .await
        .map_err(|source| CdrError::Database {
            context: "reading callers' language choices",
            source,
        })?;
        let mut latest: std::collections::HashMap<String, (String, DateTime<Utc>)> =
            std::collections::HashMap::new();
        for row in &rows {
            let call_id: String = get(row, "call_id")?;
            let chosen = time(
                &call_id,
                "language_chosen_ms",
                get(row, "language_chosen_ms")?,
            )?;
            // Rows come oldest first: a later choice replaces an earlier one.
            latest.insert(get(row, "caller")?, (get(row, "language")?, chosen));
        }
        let mut choices: Vec<LanguageChoice> = latest
            .into_iter()
            .map(|(caller, (language, chosen))| LanguageChoice {
                caller,
                language,
                chosen,
            })
            .collect();
        choices.sort_by(|a, b| (a.chosen, &a.caller).cmp(&(b.chosen, &b.caller)));
        Ok(choices)
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
        callback_of: get(row, "callback_of")?,
        call_id,
    })
}
