//! The queued-callback figures of the statistics (see `super::DEFINITIONS`): offers and
//! requests are read from the callers' own calls, attempts and their results from the records
//! of the dials (`callback_of`). A request is judged once per query, on its attempts in the
//! population, and counted in the row of the attempt that decides it, so no request is counted
//! twice, in one row or across rows.

use std::collections::BTreeMap;

use super::model::{CallRecord, Outcome, MENU_PATH_SEPARATOR};

/// Default callback service-level threshold: a request counts toward the callback service
/// level when the resident was connected within this many seconds of asking (net wait).
pub const DEFAULT_CALLBACK_SL_THRESHOLD_S: u32 = 15 * 60;

/// The menu-path step of a call that heard the callback offer (`ivr::menu::Step`'s text).
pub const CALLBACK_OFFERED_STEP: &str = "callback offered";

/// One row's callback figures; see `super::DEFINITIONS`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallbackFigures {
    /// Calls whose menu path has the step `callback offered`.
    pub offered: u64,
    /// Calls whose outcome is `callback_requested`.
    pub accepted: u64,
    /// Records of dials of residents (`callback_of` set).
    pub attempts: u64,
    /// Requests with a `connected` attempt.
    pub connected: u64,
    /// Connected requests whose net wait is within the callback threshold.
    pub connected_in_sl: u64,
    /// Requests with attempts, none of them connected.
    pub failed: u64,
    /// `connected_in_sl / (connected + failed)`; `None` when 0/0.
    pub service_level: Option<f64>,
    /// Mean net wait (request to connected) of connected requests, in seconds.
    pub asa_s: Option<f64>,
}

impl CallbackFigures {
    /// Nothing about callbacks in this row (no offer, no request, no attempt).
    pub fn is_empty(&self) -> bool {
        self.offered == 0 && self.accepted == 0 && self.attempts == 0
    }
}

/// Whether `record` is a dial of a resident, not a caller's call.
pub(super) fn is_attempt(record: &CallRecord) -> bool {
    record.callback_of.is_some()
}

/// Whether the caller heard the callback offer.
fn heard_offer(record: &CallRecord) -> bool {
    record
        .menu_path
        .split(MENU_PATH_SEPARATOR)
        .any(|step| step.trim() == CALLBACK_OFFERED_STEP)
}

/// Running callback sums for one row, in integer milliseconds.
#[derive(Default)]
pub(super) struct CallbackTotals {
    offered: u64,
    accepted: u64,
    attempts: u64,
    connected: u64,
    connected_in_sl: u64,
    failed: u64,
    waited: u64,
    wait_ms: i64,
}

impl CallbackTotals {
    /// A caller's call (not an attempt).
    pub(super) fn add_call(&mut self, record: &CallRecord) {
        if heard_offer(record) {
            self.offered += 1;
        }
        if record.outcome == Outcome::CallbackRequested {
            self.accepted += 1;
        }
    }

    pub(super) fn add_attempt(&mut self) {
        self.attempts += 1;
    }

    /// A request decided by `attempt` (its connected attempt, else its last one).
    fn add_request(&mut self, attempt: &CallRecord, connected: bool, threshold_s: u32) {
        if !connected {
            self.failed += 1;
            return;
        }
        self.connected += 1;
        if let Some(wait_ms) = attempt.wait_ms() {
            self.waited += 1;
            self.wait_ms += wait_ms;
            if wait_ms <= i64::from(threshold_s) * 1000 {
                self.connected_in_sl += 1;
            }
        }
    }

    pub(super) fn figures(&self) -> CallbackFigures {
        let judged = self.connected + self.failed;
        CallbackFigures {
            offered: self.offered,
            accepted: self.accepted,
            attempts: self.attempts,
            connected: self.connected,
            connected_in_sl: self.connected_in_sl,
            failed: self.failed,
            service_level: (judged > 0).then(|| self.connected_in_sl as f64 / judged as f64),
            asa_s: super::stats::mean_seconds(self.wait_ms, self.waited),
        }
    }
}

/// The attempts of each request seen in the population, reduced to the one that decides it.
#[derive(Default)]
pub(super) struct Requests<'a> {
    deciding: BTreeMap<&'a str, &'a CallRecord>,
}

impl<'a> Requests<'a> {
    pub(super) fn add(&mut self, attempt: &'a CallRecord) {
        let Some(original) = attempt.callback_of.as_deref() else {
            return;
        };
        let entry = self.deciding.entry(original).or_insert(attempt);
        if decides_over(attempt, entry) {
            *entry = attempt;
        }
    }

    /// Each request's deciding attempt, and whether the request was connected.
    pub(super) fn decided(self) -> impl Iterator<Item = (&'a CallRecord, bool)> {
        self.deciding
            .into_values()
            .map(|attempt| (attempt, attempt.outcome == Outcome::Connected))
    }
}

/// The first connected attempt decides; without one, the last attempt (by arrival, then by
/// Call-ID so the choice does not depend on the records' order).
fn decides_over(candidate: &CallRecord, current: &CallRecord) -> bool {
    let connected = |record: &CallRecord| record.outcome == Outcome::Connected;
    let order = |record: &CallRecord| (record.arrived, record.call_id.clone());
    match (connected(candidate), connected(current)) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => order(candidate) < order(current),
        (false, false) => order(candidate) > order(current),
    }
}

/// Adds each decided request to the totals of its deciding attempt's row.
pub(super) fn add_requests<'a, K: Ord>(
    requests: Requests<'a>,
    key_of: impl Fn(&CallRecord) -> K,
    rows: &mut BTreeMap<K, super::stats::Totals>,
    threshold_s: u32,
) {
    for (attempt, connected) in requests.decided() {
        rows.entry(key_of(attempt))
            .or_default()
            .callbacks
            .add_request(attempt, connected, threshold_s);
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{compute_stats, Dimension, StatsQuery};
    use super::*;
    use crate::cdr::model::DtmfMode;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn at(minutes: i64) -> DateTime<Utc> {
        // 09:00 in Vilnius (UTC+2 in March).
        Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn day() -> StatsQuery {
        let from = Utc.with_ymd_and_hms(2026, 3, 1, 22, 0, 0).unwrap();
        StatsQuery::new(from, from + Duration::days(1), vec![])
    }

    /// A caller's call to `group` at `minute`, waiting `wait_s` from its group choice.
    fn call(
        id: &str,
        minute: i64,
        group: &str,
        path: &str,
        outcome: Outcome,
        wait_s: i64,
    ) -> CallRecord {
        let arrived = at(minute);
        let chosen = arrived + Duration::seconds(20);
        let answered = (outcome == Outcome::Connected).then(|| chosen + Duration::seconds(wait_s));
        CallRecord {
            call_id: id.into(),
            caller: None,
            trunk: "carrier".into(),
            arrived,
            ivr_answered: Some(arrived),
            language_chosen: None,
            group_chosen: Some(chosen),
            queue_entered: Some(chosen),
            agent_answered: answered,
            ended: match answered {
                Some(answered) => answered + Duration::seconds(60),
                None => chosen + Duration::seconds(wait_s),
            },
            language: Some("lt".into()),
            menu_path: format!("language lt > main:2 > queue {group}{path}"),
            dtmf_mode: DtmfMode::Rfc4733,
            enterprise: Some(group.into()),
            agent: answered.map(|_| "user:ona".into()),
            transfer_mode: None,
            outcome,
            rtp_packets: 0,
            rtp_lost: 0,
            rtp_jitter_ms: 0.0,
            callback_of: None,
        }
    }

    /// The caller `original` asked at `requested_minute`; this dial starts at `minute` and,
    /// when connected, the resident is bridged `connected_s` later.
    fn attempt(
        id: &str,
        original: &str,
        requested_minute: i64,
        minute: i64,
        connected_s: Option<i64>,
    ) -> CallRecord {
        let requested = at(requested_minute);
        let arrived = at(minute);
        let answered = connected_s.map(|s| arrived + Duration::seconds(s));
        CallRecord {
            call_id: id.into(),
            caller: Some("+37060000000".into()),
            trunk: "carrier".into(),
            arrived,
            ivr_answered: None,
            language_chosen: None,
            group_chosen: Some(requested),
            queue_entered: Some(requested),
            agent_answered: answered,
            ended: answered.unwrap_or(arrived + Duration::seconds(30)) + Duration::seconds(120),
            language: Some("lt".into()),
            menu_path: "language lt > main:2 > queue heating > callback attempt 1".into(),
            dtmf_mode: DtmfMode::None,
            enterprise: Some("heating".into()),
            agent: Some("user:ona".into()),
            transfer_mode: None,
            outcome: if answered.is_some() {
                Outcome::Connected
            } else {
                Outcome::NotReached
            },
            rtp_packets: 0,
            rtp_lost: 0,
            rtp_jitter_ms: 0.0,
            callback_of: Some(original.into()),
        }
    }

    const OFFERED: &str = " > callback offered";
    const REQUESTED: &str = " > callback offered > callback requested";

    #[test]
    fn the_step_is_the_ivrs_text() {
        assert_eq!(
            crate::ivr::menu::Step::CallbackOffered.to_string(),
            CALLBACK_OFFERED_STEP
        );
    }

    #[test]
    fn offers_requests_and_their_results_are_each_counted_once() {
        let records = [
            // Heard the offer, declined, answered after 40 s.
            call("a", 0, "heating", OFFERED, Outcome::Connected, 40),
            // Asked after 90 s: busy once, connected at the second dial (net wait 12 min).
            call("b", 1, "heating", REQUESTED, Outcome::CallbackRequested, 90),
            attempt("b1", "b", 3, 4, None),
            attempt("b2", "b", 3, 14, Some(60)),
            // Asked; not reached twice: failed once.
            call("c", 2, "heating", REQUESTED, Outcome::CallbackRequested, 60),
            attempt("c1", "c", 3, 5, None),
            attempt("c2", "c", 3, 10, None),
            // Asked; connected after 20 min: outside the 15-minute threshold.
            call("d", 3, "heating", REQUESTED, Outcome::CallbackRequested, 30),
            attempt("d1", "d", 4, 23, Some(30)),
            // Asked; not dialled yet: accepted only.
            call(
                "e",
                4,
                "heating",
                REQUESTED,
                Outcome::CallbackRequested,
                300,
            ),
            // No offer.
            call("f", 5, "heating", "", Outcome::Connected, 10),
        ];
        let row = &compute_stats(&records, &day())[0];
        let callbacks = &row.callback;
        assert_eq!(
            (callbacks.offered, callbacks.accepted, callbacks.attempts),
            (5, 4, 5)
        );
        assert_eq!(
            (
                callbacks.connected,
                callbacks.connected_in_sl,
                callbacks.failed
            ),
            (2, 1, 1)
        );
        assert_eq!(callbacks.service_level, Some(1.0 / 3.0));
        // b: requested 09:03, bridged 09:15 (720 s); d: 09:04 to 09:23:30 (1170 s).
        assert_eq!(callbacks.asa_s, Some(945.0));

        // The attempts are in no inbound figure; the requests are offered, neither answered
        // nor abandoned; every record still has its outcome.
        assert_eq!((row.calls, row.offered, row.answered), (6, 6, 2));
        assert_eq!((row.abandoned, row.short_abandoned), (0, 0));
        assert_eq!(row.service_level, Some(0.5), "f in 20 s, a not");
        assert_eq!(row.asa_s, Some(25.0));
        assert_eq!(row.max_wait_s, Some(300.0), "not the callbacks' net waits");
        assert_eq!(row.avg_talk_s, Some(60.0), "callers' talk only");
        assert_eq!(row.outcome_count(Outcome::Connected), 4);
        assert_eq!(row.outcome_count(Outcome::NotReached), 3);
        assert_eq!(row.outcome_count(Outcome::CallbackRequested), 4);
        let outcomes: u64 = row.outcomes.iter().map(|(_, count)| count).sum();
        assert_eq!(outcomes, row.calls + callbacks.attempts);
    }

    #[test]
    fn a_request_is_counted_in_the_row_of_the_attempt_that_decides_it() {
        let records = [
            call("b", 1, "heating", REQUESTED, Outcome::CallbackRequested, 90),
            // Not reached at 09:04, connected at 10:10: the 10 o'clock row has it.
            attempt("b1", "b", 3, 4, None),
            attempt("b2", "b", 3, 70, Some(10)),
            call("c", 2, "heating", REQUESTED, Outcome::CallbackRequested, 60),
            // Two dials not reached, the last at 11:00: failed there, once.
            attempt("c2", "c", 3, 120, None),
            attempt("c1", "c", 3, 5, None),
        ];
        let mut query = day();
        query.by = vec![Dimension::Hour];
        let rows = compute_stats(&records, &query);
        let figures: Vec<(&str, u64, u64, u64, u64, u64)> = rows
            .iter()
            .map(|row| {
                let c = &row.callback;
                (
                    row.keys[0].1.as_str(),
                    row.calls,
                    c.accepted,
                    c.attempts,
                    c.connected,
                    c.failed,
                )
            })
            .collect();
        assert_eq!(
            figures,
            [
                ("09", 2, 2, 2, 0, 0),
                ("10", 0, 0, 1, 1, 0),
                ("11", 0, 0, 1, 0, 1)
            ]
        );
        // b: requested 09:03, bridged 10:10:10.
        assert_eq!(rows[1].callback.asa_s, Some(4030.0));
        assert_eq!(rows[1].callback.service_level, Some(0.0));
        // By outcome: the connected attempt's row and the not-reached one.
        query.by = vec![Dimension::Outcome];
        let rows = compute_stats(&records, &query);
        let by_outcome: Vec<(&str, u64, u64, u64)> = rows
            .iter()
            .map(|row| {
                (
                    row.keys[0].1.as_str(),
                    row.callback.attempts,
                    row.callback.connected,
                    row.callback.failed,
                )
            })
            .collect();
        assert_eq!(
            by_outcome,
            [
                ("callback_requested", 0, 0, 0),
                ("connected", 1, 1, 0),
                ("not_reached", 3, 0, 1)
            ]
        );
    }

    #[test]
    fn a_period_judges_a_request_on_its_attempts_in_the_period() {
        let records = [
            attempt("b1", "b", 3, 4, None),
            attempt("b2", "b", 3, 60 * 24, Some(10)),
        ];
        // The first day sees one dial not reached: failed there; the two days together see
        // it connected, once.
        let first = &compute_stats(&records, &day())[0].callback;
        assert_eq!((first.attempts, first.connected, first.failed), (1, 0, 1));
        let mut both = day();
        both.to += Duration::days(1);
        let both = &compute_stats(&records, &both)[0].callback;
        assert_eq!((both.attempts, both.connected, both.failed), (2, 1, 0));
        assert_eq!(both.service_level, Some(0.0), "a day is past 15 minutes");
    }

    #[test]
    fn the_threshold_is_inclusive_and_a_query_field() {
        let records = [attempt("b1", "b", 0, 14, Some(60))];
        let mut query = day();
        let figures = &compute_stats(&records, &query)[0].callback;
        assert_eq!(figures.service_level, Some(1.0), "exactly 15 min is within");
        query.callback_sl_threshold_s = 899;
        let figures = &compute_stats(&records, &query)[0].callback;
        assert_eq!(figures.service_level, Some(0.0));
        assert_eq!(figures.asa_s, Some(900.0));
    }

    #[test]
    fn without_callbacks_the_figures_are_empty() {
        let records = [call("f", 5, "heating", "", Outcome::Connected, 10)];
        let row = &compute_stats(&records, &day())[0];
        assert!(row.callback.is_empty());
        assert_eq!(row.callback.service_level, None);
        assert_eq!(row.callback.asa_s, None);
    }
}
