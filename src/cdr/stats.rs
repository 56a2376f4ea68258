//! Call statistics computed in Rust from fetched records, so that both database backends give
//! identical figures and every figure follows `super::DEFINITIONS` literally. Hours and days are
//! taken in the hotline's time zone, Europe/Vilnius.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Europe::Vilnius;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::model::{CallRecord, Outcome, UnknownValue};
use super::stats_callback::{self as callback, CallbackTotals, Requests};
pub use super::stats_callback::{CallbackFigures, DEFAULT_CALLBACK_SL_THRESHOLD_S};

/// Default: abandons with a wait shorter than this many seconds are not counted as abandoned.
pub const DEFAULT_SHORT_ABANDON_S: u32 = 5;
/// Default service-level threshold in seconds.
pub const DEFAULT_SL_THRESHOLD_S: u32 = 20;

/// Key shown for a call without a value in the grouped dimension (e.g. no group chosen).
pub const NONE_KEY: &str = "(none)";

/// A grouping key for statistics rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// The group chosen (`enterprise` column).
    Enterprise,
    /// The language chosen.
    Language,
    /// Hour of day of `arrived` in Europe/Vilnius, `00`..`23`.
    Hour,
    /// Date of `arrived` in Europe/Vilnius, `YYYY-MM-DD`.
    Day,
    /// The call's outcome.
    Outcome,
    /// The last step of the menu path: where the caller left the menus.
    MenuNode,
}

impl Dimension {
    pub const ALL: &'static [Dimension] = &[
        Dimension::Enterprise,
        Dimension::Language,
        Dimension::Hour,
        Dimension::Day,
        Dimension::Outcome,
        Dimension::MenuNode,
    ];

    /// The column name of this key in rows and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Enterprise => "enterprise",
            Dimension::Language => "language",
            Dimension::Hour => "hour",
            Dimension::Day => "day",
            Dimension::Outcome => "outcome",
            Dimension::MenuNode => "menu_node",
        }
    }

    fn key_of(self, record: &CallRecord) -> String {
        let local = record.arrived.with_timezone(&Vilnius);
        match self {
            Dimension::Enterprise => record.enterprise.as_deref().unwrap_or(NONE_KEY).to_owned(),
            Dimension::Language => record.language.as_deref().unwrap_or(NONE_KEY).to_owned(),
            Dimension::Hour => local.format("%H").to_string(),
            Dimension::Day => local.format("%Y-%m-%d").to_string(),
            Dimension::Outcome => record.outcome.as_str().to_owned(),
            Dimension::MenuNode => record.last_menu_node().to_owned(),
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dimension {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dimension::ALL
            .iter()
            .copied()
            .find(|dimension| dimension.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "dimension",
                value: s.to_owned(),
            })
    }
}

/// Which calls to count and how to group them.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsQuery {
    /// Calls that arrived at or after this instant…
    pub from: DateTime<Utc>,
    /// …and before this one.
    pub to: DateTime<Utc>,
    /// Group rows by these keys, in this order; empty gives one total row.
    pub by: Vec<Dimension>,
    /// Abandons with a wait under this many seconds are short abandons, not abandoned.
    pub short_abandon_s: u32,
    /// Answered within this many seconds (inclusive) counts toward the service level.
    pub sl_threshold_s: u32,
    /// A callback request connected within this many seconds (inclusive) of being asked for
    /// counts toward the callback service level; [`DEFAULT_CALLBACK_SL_THRESHOLD_S`] unless
    /// set (no setting yet).
    pub callback_sl_threshold_s: u32,
}

impl StatsQuery {
    /// A query with the default thresholds.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, by: Vec<Dimension>) -> Self {
        StatsQuery::with_thresholds(from, to, by, Thresholds::default())
    }

    pub fn with_thresholds(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        by: Vec<Dimension>,
        thresholds: Thresholds,
    ) -> Self {
        StatsQuery {
            from,
            to,
            by,
            short_abandon_s: thresholds.short_abandon_s,
            sl_threshold_s: thresholds.sl_threshold_s,
            callback_sl_threshold_s: DEFAULT_CALLBACK_SL_THRESHOLD_S,
        }
    }
}

/// The two thresholds of the definitions, as the supervisors set them (settings `[stats]`);
/// the CLI's options and the API's parameters override them per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub short_abandon_s: u32,
    pub sl_threshold_s: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            short_abandon_s: DEFAULT_SHORT_ABANDON_S,
            sl_threshold_s: DEFAULT_SL_THRESHOLD_S,
        }
    }
}

/// One group's figures; see `super::DEFINITIONS` for each field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsRow {
    /// `(dimension name, key)` in `StatsQuery::by` order.
    pub keys: Vec<(Dimension, String)>,
    pub calls: u64,
    pub offered: u64,
    pub answered: u64,
    pub answered_in_sl: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    /// `answered_in_sl / (answered + abandoned)` as a fraction 0..=1; `None` when 0/0.
    pub service_level: Option<f64>,
    /// Seconds, rounded to the millisecond; `None` when nothing to average.
    pub asa_s: Option<f64>,
    pub avg_talk_s: Option<f64>,
    pub max_wait_s: Option<f64>,
    /// The queued-callback figures (`callback_*` columns).
    pub callback: CallbackFigures,
    /// Count per outcome over calls and callback attempts, in `Outcome::ALL` order (zeros
    /// included).
    pub outcomes: Vec<(Outcome, u64)>,
}

/// A cell of a rendered row.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Key(String),
    Count(u64),
    Seconds(Option<f64>),
    Fraction(Option<f64>),
}

impl StatsRow {
    /// All columns with their stable snake_case names, in output order: keys, figures, the
    /// callback figures, then one count per outcome named by the outcome.
    pub fn fields(&self) -> Vec<(&'static str, FieldValue)> {
        let mut fields: Vec<(&'static str, FieldValue)> = self
            .keys
            .iter()
            .map(|(dimension, key)| (dimension.as_str(), FieldValue::Key(key.clone())))
            .collect();
        fields.extend([
            ("calls", FieldValue::Count(self.calls)),
            ("offered", FieldValue::Count(self.offered)),
            ("answered", FieldValue::Count(self.answered)),
            ("answered_in_sl", FieldValue::Count(self.answered_in_sl)),
            ("abandoned", FieldValue::Count(self.abandoned)),
            ("short_abandoned", FieldValue::Count(self.short_abandoned)),
            ("service_level", FieldValue::Fraction(self.service_level)),
            ("asa_s", FieldValue::Seconds(self.asa_s)),
            ("avg_talk_s", FieldValue::Seconds(self.avg_talk_s)),
            ("max_wait_s", FieldValue::Seconds(self.max_wait_s)),
        ]);
        let callback = &self.callback;
        fields.extend([
            ("callback_offered", FieldValue::Count(callback.offered)),
            ("callback_accepted", FieldValue::Count(callback.accepted)),
            ("callback_attempts", FieldValue::Count(callback.attempts)),
            ("callback_connected", FieldValue::Count(callback.connected)),
            (
                "callback_connected_in_sl",
                FieldValue::Count(callback.connected_in_sl),
            ),
            ("callback_failed", FieldValue::Count(callback.failed)),
            (
                "callback_service_level",
                FieldValue::Fraction(callback.service_level),
            ),
            ("callback_asa_s", FieldValue::Seconds(callback.asa_s)),
        ]);
        fields.extend(
            self.outcomes
                .iter()
                .map(|(outcome, count)| (outcome.as_str(), FieldValue::Count(*count))),
        );
        fields
    }

    /// The count of one outcome.
    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        self.outcomes
            .iter()
            .find(|(candidate, _)| *candidate == outcome)
            .map_or(0, |(_, count)| *count)
    }
}

impl Serialize for StatsRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.fields();
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (name, value) in &fields {
            match value {
                FieldValue::Key(key) => map.serialize_entry(name, key)?,
                FieldValue::Count(count) => map.serialize_entry(name, count)?,
                FieldValue::Seconds(value) | FieldValue::Fraction(value) => {
                    map.serialize_entry(name, value)?
                }
            }
        }
        map.end()
    }
}

/// Running sums for one group, all in integer milliseconds so the result is exact.
#[derive(Default)]
pub(super) struct Totals {
    calls: u64,
    offered: u64,
    answered: u64,
    answered_in_sl: u64,
    abandoned: u64,
    short_abandoned: u64,
    answered_wait_ms: i64,
    connected_with_talk: u64,
    talk_ms: i64,
    max_wait_ms: Option<i64>,
    outcomes: BTreeMap<Outcome, u64>,
    pub(super) callbacks: CallbackTotals,
}

impl Totals {
    fn add(&mut self, record: &CallRecord, query: &StatsQuery) {
        *self.outcomes.entry(record.outcome).or_default() += 1;
        // A dial of a resident called back is no call to the hotline: it counts in the
        // callback figures (and its outcome) only.
        if callback::is_attempt(record) {
            self.callbacks.add_attempt();
            return;
        }
        self.calls += 1;
        self.callbacks.add_call(record);
        if let Some(talk_ms) = record.talk_ms() {
            self.connected_with_talk += 1;
            self.talk_ms += talk_ms;
        }
        // Offered = a group was chosen; every queue figure below is about offered calls only.
        let Some(wait_ms) = record.wait_ms() else {
            return;
        };
        self.offered += 1;
        self.max_wait_ms = Some(self.max_wait_ms.map_or(wait_ms, |max| max.max(wait_ms)));
        match record.outcome {
            Outcome::Connected | Outcome::Transferred => {
                self.answered += 1;
                self.answered_wait_ms += wait_ms;
                if wait_ms <= i64::from(query.sl_threshold_s) * 1000 {
                    self.answered_in_sl += 1;
                }
            }
            Outcome::AbandonedQueue | Outcome::AbandonedMenu => {
                if wait_ms < i64::from(query.short_abandon_s) * 1000 {
                    self.short_abandoned += 1;
                } else {
                    self.abandoned += 1;
                }
            }
            // queue_timeout, overflowed, closed, callback_requested, transfer_failed, error,
            // interrupted, ...: offered, neither answered nor abandoned.
            _ => {}
        }
    }

    fn into_row(self, keys: Vec<(Dimension, String)>) -> StatsRow {
        let answered_or_abandoned = self.answered + self.abandoned;
        StatsRow {
            keys,
            calls: self.calls,
            offered: self.offered,
            answered: self.answered,
            answered_in_sl: self.answered_in_sl,
            abandoned: self.abandoned,
            short_abandoned: self.short_abandoned,
            service_level: (answered_or_abandoned > 0)
                .then(|| self.answered_in_sl as f64 / answered_or_abandoned as f64),
            asa_s: mean_seconds(self.answered_wait_ms, self.answered),
            avg_talk_s: mean_seconds(self.talk_ms, self.connected_with_talk),
            max_wait_s: self.max_wait_ms.map(|ms| ms as f64 / 1000.0),
            callback: self.callbacks.figures(),
            outcomes: Outcome::ALL
                .iter()
                .map(|outcome| (*outcome, self.outcomes.get(outcome).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

/// Mean of a millisecond sum over `count` items, rounded to the millisecond, in seconds.
pub(super) fn mean_seconds(sum_ms: i64, count: u64) -> Option<f64> {
    (count > 0).then(|| (sum_ms as f64 / count as f64).round() / 1000.0)
}

/// Groups and totals completed records. Records outside `[from, to)` are ignored, so the result
/// does not depend on how the caller fetched them. Rows are sorted by their keys.
pub fn compute_stats(records: &[CallRecord], query: &StatsQuery) -> Vec<StatsRow> {
    let mut groups: BTreeMap<Vec<String>, Totals> = BTreeMap::new();
    if query.by.is_empty() {
        groups.insert(Vec::new(), Totals::default());
    }
    let key_of = |record: &CallRecord| -> Vec<String> {
        query
            .by
            .iter()
            .map(|dimension| dimension.key_of(record))
            .collect()
    };
    let mut requests = Requests::default();
    for record in records
        .iter()
        .filter(|record| record.arrived >= query.from && record.arrived < query.to)
    {
        groups.entry(key_of(record)).or_default().add(record, query);
        requests.add(record);
    }
    callback::add_requests(requests, key_of, &mut groups, query.callback_sl_threshold_s);
    groups
        .into_iter()
        .map(|(key, totals)| totals.into_row(query.by.iter().copied().zip(key).collect()))
        .collect()
}

/// One agent's work over a period: calls the agent answered and their talk.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentRow {
    /// The agent as recorded (`user:NAME` or its URI, as in the live snapshot).
    pub agent: String,
    /// Calls this agent answered (the record names the agent and has an answer time), whatever
    /// their outcome (`connected`, `transferred`, …); a callback attempt counts once the
    /// resident was bridged to the agent.
    pub calls: u64,
    /// Talk summed over this agent's `connected` calls, in seconds to the millisecond.
    pub talk_s: f64,
    /// Mean talk of those calls; `None` when there is none.
    pub avg_talk_s: Option<f64>,
}

/// Calls answered and talk per agent over completed records that arrived in `[from, to)`,
/// sorted by agent. Calls no agent answered are not counted.
pub fn compute_agent_stats(
    records: &[CallRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<AgentRow> {
    let mut per_agent: BTreeMap<&str, (u64, i64, u64)> = BTreeMap::new();
    for record in records
        .iter()
        .filter(|record| record.arrived >= from && record.arrived < to)
        .filter(|record| record.agent_answered.is_some())
    {
        let Some(agent) = record.agent.as_deref() else {
            continue;
        };
        let (calls, talk_ms, talked) = per_agent.entry(agent).or_default();
        *calls += 1;
        if let Some(ms) = record.talk_ms() {
            *talk_ms += ms;
            *talked += 1;
        }
    }
    per_agent
        .into_iter()
        .map(|(agent, (calls, talk_ms, talked))| AgentRow {
            agent: agent.to_owned(),
            calls,
            talk_s: talk_ms as f64 / 1000.0,
            avg_talk_s: mean_seconds(talk_ms, talked),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::model::DtmfMode;
    use chrono::TimeZone;

    fn record(id: &str, wait_s: Option<i64>, outcome: Outcome) -> CallRecord {
        let arrived = Utc.with_ymd_and_hms(2026, 3, 2, 7, 30, 0).unwrap();
        let group_chosen = wait_s.map(|_| arrived + chrono::Duration::seconds(10));
        let answered = matches!(outcome, Outcome::Connected | Outcome::Transferred);
        let agent_answered = match (group_chosen, wait_s) {
            (Some(chosen), Some(wait)) if answered => {
                Some(chosen + chrono::Duration::seconds(wait))
            }
            _ => None,
        };
        let ended = match (group_chosen, wait_s) {
            (Some(chosen), Some(wait)) if !answered => chosen + chrono::Duration::seconds(wait),
            _ => arrived + chrono::Duration::seconds(300),
        };
        CallRecord {
            call_id: id.into(),
            caller: None,
            trunk: "127.0.0.1".into(),
            arrived,
            ivr_answered: Some(arrived),
            language_chosen: None,
            group_chosen,
            queue_entered: group_chosen,
            agent_answered,
            ended,
            language: Some("lt".into()),
            menu_path: "language lt > main:1".into(),
            dtmf_mode: DtmfMode::Rfc4733,
            enterprise: wait_s.map(|_| "water".into()),
            agent: None,
            transfer_mode: None,
            outcome,
            rtp_packets: 0,
            rtp_lost: 0,
            rtp_jitter_ms: 0.0,
            callback_of: None,
        }
    }

    #[test]
    fn thresholds_are_inclusive_for_sl_and_exclusive_for_short_abandon() {
        let records = [
            record("a", Some(20), Outcome::Connected), // in SL (20 <= 20)
            record("b", Some(21), Outcome::Connected), // out of SL
            record("c", Some(5), Outcome::AbandonedQueue), // counted (5 is not < 5)
            record("d", Some(4), Outcome::AbandonedQueue), // short abandon
            record("e", None, Outcome::InfoOnly),      // not offered
        ];
        let from = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let query = StatsQuery::new(from, from + chrono::Duration::days(1), vec![]);
        let rows = compute_stats(&records, &query);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(
            (row.calls, row.offered, row.answered, row.answered_in_sl),
            (5, 4, 2, 1)
        );
        assert_eq!((row.abandoned, row.short_abandoned), (1, 1));
        assert_eq!(row.service_level, Some(1.0 / 3.0));
        assert_eq!(row.asa_s, Some(20.5));
        assert_eq!(row.max_wait_s, Some(21.0));
        assert_eq!(row.outcome_count(Outcome::AbandonedQueue), 2);
        // Hour is local: 07:30 UTC is 09:30 in Vilnius in March (UTC+2).
        let by_hour = compute_stats(
            &records,
            &StatsQuery::new(
                from,
                from + chrono::Duration::days(1),
                vec![Dimension::Hour],
            ),
        );
        assert_eq!(by_hour[0].keys, vec![(Dimension::Hour, "09".to_owned())]);
    }

    #[test]
    fn empty_window_gives_one_zero_row_without_ratios() {
        let from = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let rows = compute_stats(&[], &StatsQuery::new(from, from, vec![]));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].calls, 0);
        assert_eq!(rows[0].service_level, None);
        assert_eq!(rows[0].asa_s, None);
    }

    #[test]
    fn a_closed_groups_message_is_no_wait() {
        let records = [
            record("a", Some(12), Outcome::Closed),
            record("b", Some(4), Outcome::QueueTimeout),
        ];
        let from = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let query = StatsQuery::new(from, from + chrono::Duration::days(1), vec![]);
        let row = &compute_stats(&records, &query)[0];
        assert_eq!((row.offered, row.max_wait_s), (2, Some(4.0)));
    }

    #[test]
    fn interrupted_calls_count_like_errors() {
        let records = [
            record("a", Some(30), Outcome::Interrupted), // offered, wait up to the last time known
            record("b", None, Outcome::Interrupted),     // closed in the menus: not offered
            record("c", Some(10), Outcome::Error),
        ];
        let from = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let query = StatsQuery::new(from, from + chrono::Duration::days(1), vec![]);
        let row = &compute_stats(&records, &query)[0];
        assert_eq!(
            (row.calls, row.offered, row.answered, row.abandoned),
            (3, 2, 0, 0)
        );
        assert_eq!(row.short_abandoned, 0);
        assert_eq!(row.service_level, None);
        assert_eq!(row.max_wait_s, Some(30.0));
        assert_eq!(row.outcome_count(Outcome::Interrupted), 2);
        assert_eq!(row.outcome_count(Outcome::Error), 1);
        assert!(compute_agent_stats(&records, from, from + chrono::Duration::days(1)).is_empty());
        assert!(row
            .fields()
            .iter()
            .any(|(name, value)| *name == "interrupted" && *value == FieldValue::Count(2)));
    }

    #[test]
    fn agents_count_answered_calls_and_talk_of_connected_ones() {
        let mut a = record("a", Some(10), Outcome::Connected); // talk 300 - 20 = 280 s
        a.agent = Some("user:ona".into());
        let mut b = record("b", Some(30), Outcome::Transferred); // handled, talk unknown
        b.agent = Some("user:ona".into());
        let mut c = record("c", Some(50), Outcome::Connected); // talk 240 s
        c.agent = Some("sip:water-1@127.0.0.1".into());
        let mut d = record("d", Some(5), Outcome::AbandonedQueue); // never answered
        d.agent = Some("user:ona".into());
        let records = [a, b, c, d];
        let from = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let rows = compute_agent_stats(&records, from, from + chrono::Duration::days(1));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].agent, "sip:water-1@127.0.0.1");
        assert_eq!((rows[0].calls, rows[0].talk_s), (1, 240.0));
        assert_eq!(rows[1].agent, "user:ona");
        assert_eq!((rows[1].calls, rows[1].talk_s), (2, 280.0));
        assert_eq!(rows[1].avg_talk_s, Some(280.0));
        let later = from + chrono::Duration::days(1);
        assert!(compute_agent_stats(&records, later, later).is_empty());
    }
}
