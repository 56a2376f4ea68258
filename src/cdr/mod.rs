//! Call detail records (CDR) and call statistics: one row per call in SQLite (default) or
//! PostgreSQL, an audit trail of steps per call, a spool so no record is lost while the database
//! is away, retention, closing at start the records a killed run of this node left open
//! (`interrupted`), and statistics with the declared definitions in [`DEFINITIONS`].
//!
//! Backend choice: one `sqlx::AnyPool` rather than an enum over two pools. The schema and every
//! query are written once in portable SQL (`$N` parameters, `ON CONFLICT … DO UPDATE/NOTHING`,
//! BIGINT epoch milliseconds for times, TEXT, DOUBLE PRECISION), so both backends run literally
//! the same statements and one migration set serves both. `Any` cannot bind chrono types, which
//! is why times are stored as UTC epoch milliseconds; that also makes comparisons and durations
//! identical on both backends. What truly differs (URL parsing, creating the SQLite file and its
//! folder in WAL mode, pool size) is in `backend.rs`. Statistics are computed in Rust from the
//! fetched rows, so no backend date function is involved.

mod backend;
pub mod format;
pub mod health;
pub mod model;
mod spool;
pub mod stats;
mod stats_callback;
pub mod store;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use backend::{mask_password, DatabaseUrl};
pub use model::{
    pseudonymise, AgentStateChange, CallEvent, CallRecord, CallStart, CallbackRow, CallbackStatus,
    DtmfMode, LanguageChoice, Outcome, TransferMode,
};
pub use spool::SpoolEntry;
pub use stats::{
    compute_agent_stats, compute_stats, AgentRow, CallbackFigures, Dimension, StatsQuery, StatsRow,
    Thresholds, DEFAULT_CALLBACK_SL_THRESHOLD_S,
};
pub use store::{
    close_interrupted_at_start, CallFilter, CdrStore, Delivery, FlushReport, Page, PurgeMode,
};
pub use writer::{CdrWriter, WriterStopped};

/// The definitions of every statistic, shown by `hotline stats --help` and in the README (a
/// test keeps the README's copy identical).
pub const DEFINITIONS: &str = "\
Call statistics: definitions
Population: completed calls (end recorded) whose arrival time is in [from, to). Live calls are
not counted. Times are stored in UTC to the millisecond; `hour` (00-23) and `day` (YYYY-MM-DD)
are the arrival time in Europe/Vilnius. The records of callback attempts (see below; their
arrival is the dial) are in the population but are not calls: they count only in the callback
figures and in the outcome counts.
wait            seconds from the group choice (group_chosen) to agent answer, or to the end of the
                call if no agent answered; 0 for `closed` calls (the closed message is no wait).
                Only calls with a group choice have a wait.
talk            seconds from agent answer to the end of the call, for `connected` calls only
                (after a REFER transfer the hotline no longer sees the call).
calls           number of calls in the population (callback attempts are not calls).
offered         calls offered to a group = calls in which a group (enterprise) was chosen.
answered        offered calls whose outcome is `connected` or `transferred`.
answered_in_sl  answered calls whose wait <= sl_threshold (setting stats.sl_threshold, 20 s
                unless changed; --sl-threshold overrides it).
abandoned       offered calls whose outcome is `abandoned_queue` or `abandoned_menu` (caller hung
                up after choosing the group) and whose wait >= short_abandon (setting
                stats.short_abandon, 5 s unless changed; --short-abandon overrides it).
short_abandoned the same abandons with wait < short_abandon; excluded from abandoned and from
                the service level.
service_level   answered_in_sl / (answered + abandoned); empty when that is 0/0. Calls ending as
                queue_timeout, overflowed, closed, callback_requested, transfer_failed, error,
                interrupted, ... are in offered only.
asa_s           average speed of answer: mean wait of answered calls.
avg_talk_s      mean talk of connected calls.
max_wait_s      the longest wait of any offered call, whatever its outcome.
<outcome>       one count per outcome (connected, transferred, abandoned_menu, abandoned_queue,
                queue_timeout, overflowed, closed, no_input, info_only, callback_requested,
                not_reached, transfer_failed, rejected, error, interrupted) over all calls and
                callback attempts; every record has exactly one outcome, so the counts add up to
                calls + callback_attempts.
interrupted     the service stopped or was killed while the call was up: its record is closed at
                the next start of the same node (setting node.name), its end the last time known
                for the call (its last step, else its arrival). Counted like error: in calls, and
                in offered when a group was chosen, never answered or abandoned.
enterprise      the group the caller chose. A call its group sent on to the overflow group
                (max_wait or max_queue) keeps that enterprise: `connected` if an agent of the
                overflow group answered, else `overflowed`. A closed group's `when_closed`
                group takes the call over (the wait still runs from the caller's choice); after
                `when_closed = back` the caller's next choice starts a new wait.
menu_node       grouping key: the last step of the call's menu path, i.e. where the caller left
                the menus; `calls` per menu_node shows where callers drop off.
Queued callback: a waiting caller may ask to be called back, keeping their place in the queue;
each dial of the resident is then a record of its own, a callback attempt, that names the
caller's call in callback_of, its wait starting at the request (group_chosen).
callback_offered
                calls whose menu path has the step `callback offered` (the caller heard the
                offer, whether they took it or not).
callback_accepted
                calls whose outcome is `callback_requested`: the caller asked for a callback and
                left the queue. Such calls count in offered, never in answered or abandoned.
callback_attempts
                records of callback attempts: `connected` when the resident was bridged to the
                agent, `not_reached` when busy, not answering or refusing the call (else any
                other outcome, e.g. error or interrupted). Attempts are in none of the figures
                above (calls, offered, answered, abandoned, service_level, asa_s, avg_talk_s,
                max_wait_s), only in the outcome counts and here.
net wait        seconds from the callback request to the resident bridged to the agent (the
                connected attempt's group_chosen to its agent_answered).
callback_connected
                requests (distinct callback_of) with a `connected` attempt in the population.
callback_failed requests with attempts in the population, none of them `connected`. A request
                is judged on its attempts in the population: one still waiting for its next dial
                counts as failed until it is reached, one reached in a later period counts as
                failed in the earlier one.
callback_connected_in_sl
                connected requests whose net wait <= callback_sl_threshold (15 min, fixed: no
                setting or option yet).
callback_service_level
                callback_connected_in_sl / (callback_connected + callback_failed); empty when
                that is 0/0.
callback_asa_s  mean net wait of connected requests.
                Offers and requests count in the row of the caller's call. Each request is
                connected or failed once per query, in the row of the attempt that decides it:
                its connected attempt, else its last one. Requests without an attempt in the
                population (still queued, or dropped) are in callback_accepted only.
Means are rounded to the millisecond. `(none)` is the key of calls without that value.
Columns: CSV and JSON rows carry the --by keys under their own names (enterprise, language,
outcome, hour, day, menu_node), then the figures under the names above, then one count per
outcome. In CSV and JSON service_level is a fraction 0-1 and seconds have millisecond
precision; in JSON an undefined figure is null, in CSV empty, in the table `-`. The table
leaves out the callback_* columns when no row has a callback offer, request or attempt.
";

/// Settings of the `[cdr]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrSettings {
    /// `postgres://…`, or an SQLite path (`sqlite:PATH` or a bare path).
    pub database: String,
    pub spool_path: PathBuf,
    /// Key for HMAC-SHA256 caller pseudonyms; `None` keeps numbers raw.
    pub pseudonymise_key: Option<String>,
    /// Records older than this many days are purged; `None` keeps them forever.
    pub retention_days: Option<u32>,
    pub retention_mode: PurgeMode,
    pub write_timeout: Duration,
    /// This service's name (setting `node.name`), stamped on every record it writes; at start
    /// it closes only its own interrupted records.
    pub node: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    #[error("unsupported CDR database URL {0:?}: expected postgres://… or an SQLite file path")]
    Url(String),
    #[error("CDR database, {context}: {source}")]
    Database {
        context: &'static str,
        source: sqlx::Error,
    },
    #[error("migrating the CDR database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating the CDR database folder {path}: {source}")]
    CreateFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CDR spool {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding a CDR spool entry for {path}: {source}")]
    SpoolEncode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{0} CDR spool entries are not in the database yet; open records stay open until they are"
    )]
    SpoolNotReplayed(usize),
    #[error(
        "call records cannot be stored: the database fails ({database}) and the spool cannot \
         be written ({spool})"
    )]
    Unwritable { database: String, spool: String },
    #[error("CDR database write took longer than {0:?}")]
    Timeout(Duration),
    #[error("call {call_id}: column {column} holds {value:?}, which is not valid")]
    BadValue {
        call_id: String,
        column: &'static str,
        value: String,
    },
}

impl CdrError {
    /// The database cannot be reached or answer now (down, refusing connections, too slow):
    /// a passing condition, unlike a bad query or bad data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            CdrError::Timeout(_) | CdrError::CreateFolder { .. } => true,
            CdrError::Database { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || matches!(
                    source,
                    // PostgreSQL: connection exceptions (08…) and a server shutting down or
                    // starting (57P…).
                    sqlx::Error::Database(error) if error
                        .code()
                        .is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
                )
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_carries_the_definitions_word_for_word() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(super::DEFINITIONS),
            "README.md must contain cdr::DEFINITIONS verbatim (copy it from `hotline stats --help`)"
        );
    }
}
