//! Queued callbacks on the switchboard. A waiting caller who asks to be called back leaves
//! the line; their ACD entry becomes the request and keeps its place. When it reaches an
//! agent, the agent's phone rings first (`[CB][LANG] Enterprise` and the resident's number);
//! once the agent answers, the resident is dialled through the group's trunk on a line of
//! its own, which is then a caller's call like any other: its record links to the original
//! call (`callback_of`), it hears "this is 19118 calling you back" and the group's name, then
//! the two are bridged. A resident not reached frees the agent at once and the request comes
//! back after `retry_after`, with its first arrival, up to `max_attempts` dials; outside the
//! group's hours (or its `window`) attempts wait. One request has at most one dial at a time:
//! its state says which line is being dialled, and before each dial the node claims the
//! request in the store, so another node sharing the database cannot dial it too. Every
//! change of a request is written (`callbacks`), and pending requests are taken up at start.

mod dial;
#[cfg(test)]
mod lasting_tests;
mod queue;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use tracing::{info, warn};

use super::agent::AgentCall;
use super::Switchboard;
use crate::acd::{AcdInput, AgentId, CallId};
use crate::cdr::{CallbackRow, CallbackStatus};
use crate::ivr::{CallFlow, FlowAction, FlowClock, FlowEvent, FlowSummary, PromptRef};
use crate::sip::ua::SessionId;

/// ACD call ids of callback requests start here, clear of the user agent's session ids.
pub(super) const CALLBACK_IDS: u64 = 1 << 48;

#[derive(Debug, Clone)]
pub(super) struct CallbackRequest {
    /// The original call's SIP Call-ID: every attempt's record names it (`callback_of`).
    pub(super) original: String,
    pub(super) group: String,
    pub(super) language: String,
    /// E.164.
    pub(super) number: String,
    /// What the agent's phone shows, e.g. `[CB][LT] Vilnius Heating Networks`.
    pub(super) display: String,
    pub(super) path: String,
    /// First arrival in the queue: the place the request keeps.
    pub(super) arrived: Instant,
    pub(super) requested: SystemTime,
    /// Dials made so far.
    pub(super) attempts: u32,
    pub(super) state: RequestState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestState {
    /// In its group's queue (ringing agents included).
    Queued,
    /// This agent leg answered; the store is asked whether this node may dial.
    Claiming(SessionId),
    /// The resident is being dialled, or talks, on this line.
    OnLine(SessionId),
    /// Out of the queue until then (retry delay, or outside the window).
    Waiting { until: Instant },
}

#[derive(Default)]
pub(super) struct Callbacks {
    pub(super) requests: BTreeMap<u64, CallbackRequest>,
    next: u64,
    /// Residents' lines → their request.
    lines: HashMap<SessionId, u64>,
}

/// The flow of a resident's line: the intro plays once media runs; the switchboard bridges
/// the agent when it ends. Its summary makes the attempt's record.
#[derive(Debug)]
struct CallbackFlow {
    summary: FlowSummary,
    intro: Vec<PromptRef>,
}

impl CallFlow for CallbackFlow {
    fn handle(&mut self, _clock: FlowClock, event: FlowEvent) -> Vec<FlowAction> {
        match event {
            FlowEvent::Started => vec![FlowAction::Play(std::mem::take(&mut self.intro))],
            _ => Vec::new(),
        }
    }

    fn summary(&self) -> FlowSummary {
        self.summary.clone()
    }
}

impl Switchboard {
    pub(super) fn is_callback(&self, call: CallId) -> bool {
        call.0 >= CALLBACK_IDS
    }

    /// Requests not yet connected, oldest first, for the live snapshot.
    pub(super) fn callbacks_live(&self, now: Instant) -> Vec<super::live::CallbackLive> {
        let wall = self.wall(now);
        let mut live: Vec<(Instant, super::live::CallbackLive)> = self
            .callbacks
            .requests
            .iter()
            .map(|(id, request)| {
                let (state, next) = match request.state {
                    RequestState::Queued => ("queued", None),
                    RequestState::Claiming(_) | RequestState::OnLine(_) => ("calling", None),
                    RequestState::Waiting { until } => (
                        "waiting",
                        Some(until.saturating_duration_since(now).as_secs()),
                    ),
                };
                let position = self
                    .acd
                    .as_ref()
                    .and_then(|acd| acd.queue_position(CallId(*id)));
                let waited = wall.duration_since(request.requested).unwrap_or_default();
                let entry = super::live::CallbackLive {
                    group: request.group.clone(),
                    language: request.language.clone(),
                    number: request.number.clone(),
                    state: state.to_owned(),
                    attempts: request.attempts,
                    waiting_s: waited.as_secs(),
                    position,
                    next_attempt_s: next,
                };
                (request.arrived, entry)
            })
            .collect();
        live.sort_by_key(|(arrived, _)| *arrived);
        live.into_iter().map(|(_, entry)| entry).collect()
    }

    /// The queued caller `id` confirmed a callback on `number`: their ACD entry continues as
    /// the request; the call ends after the flow's thanks.
    pub(super) fn callback_requested(&mut self, now: Instant, id: SessionId, number: String) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(queued) = call.queue.clone() else {
            return warn!("callback asked for by a caller who is not queued");
        };
        let arrived = self
            .acd
            .as_ref()
            .and_then(|acd| acd.arrival(CallId(id.0)))
            .unwrap_or(now);
        let request = CALLBACK_IDS + self.callbacks.next;
        self.callbacks.next += 1;
        let input = AcdInput::ToCallback {
            call: CallId(id.0),
            callback: CallId(request),
        };
        let converted = self
            .acd
            .as_mut()
            .is_some_and(|acd| acd.handle_input(input, now).is_ok());
        if !converted {
            return warn!("callback asked for by a caller no longer waiting: not recorded");
        }
        call.span.in_scope(
            || info!(group = %queued.group, %number, request, "callback requested: the request keeps the caller's place"),
        );
        let display = format!("[CB]{}", queued.display);
        let inserted = self.callbacks.requests.insert(
            request,
            CallbackRequest {
                original: call.call_id.clone(),
                group: queued.group,
                language: queued.language,
                number,
                display,
                path: queued.path,
                arrived,
                requested: self.wall(now),
                attempts: 0,
                state: RequestState::Queued,
            },
        );
        debug_assert!(inserted.is_none());
        self.write_callback(now, request, CallbackStatus::Pending);
    }

    /// Writes a request's row (the number only while it may still be dialled).
    fn write_callback(&mut self, now: Instant, request_id: u64, state: CallbackStatus) {
        let Some(request) = self.callbacks.requests.get(&request_id) else {
            return;
        };
        let wall = self.wall(now);
        let queue_entered = wall
            .checked_sub(now.saturating_duration_since(request.arrived))
            .unwrap_or(wall);
        let open = matches!(state, CallbackStatus::Pending | CallbackStatus::Dialling);
        let row = CallbackRow {
            id: request.original.clone(),
            group: request.group.clone(),
            language: request.language.clone(),
            number: if open {
                request.number.clone()
            } else {
                String::new()
            },
            display: request.display.clone(),
            path: request.path.clone(),
            requested: request.requested.into(),
            queue_entered: queue_entered.into(),
            attempts: request.attempts,
            state,
            updated: wall.into(),
        };
        self.push(super::Output::Callback(row));
    }

    /// Requests the store still holds as pending (this node's restart, or another node's
    /// requests): each enters its group's queue with the place it had, when its window is open.
    pub fn restore_callbacks(&mut self, now: Instant, rows: Vec<CallbackRow>) {
        let wall = self.wall(now);
        for row in rows {
            let waited = wall
                .duration_since(SystemTime::from(row.queue_entered))
                .unwrap_or_default();
            let request = CALLBACK_IDS + self.callbacks.next;
            self.callbacks.next += 1;
            info!(id = %row.id, group = %row.group, attempts = row.attempts, "pending callback taken up");
            self.callbacks.requests.insert(
                request,
                CallbackRequest {
                    original: row.id,
                    group: row.group,
                    language: row.language,
                    number: row.number,
                    display: row.display,
                    path: row.path,
                    arrived: now.checked_sub(waited).unwrap_or(now),
                    requested: row.requested.into(),
                    attempts: row.attempts,
                    state: RequestState::Waiting { until: now },
                },
            );
        }
    }

    /// The ACD chose `agent` for a callback request: the agent's phone rings first.
    pub(super) fn ring_for_callback(&mut self, now: Instant, call: CallId, agent: AgentId) {
        let Some(request) = self.callbacks.requests.get(&call.0) else {
            return self.report_to_acd(now, AcdInput::CallerLeft { call });
        };
        if !self.callback_window_open(&request.group, self.wall(now)) {
            // Outside the hours residents are called in: out of the queue until they come.
            info!(request = call.0, "callback outside its window: it waits");
            if let Some(request) = self.callbacks.requests.get_mut(&call.0) {
                request.state = RequestState::Waiting {
                    until: now + queue::WINDOW_RECHECK,
                };
            }
            return self.report_to_acd(now, AcdInput::CallerLeft { call });
        }
        let ring = AgentCall {
            target: String::new(),
            media_encryption: self.group_media_encryption(&request.group),
            display: request.display.clone(),
            language: request.language.clone(),
            path: request.path.clone(),
            caller_number: request.number.clone(),
        };
        self.ring_chosen_agent(now, SessionId(call.0), agent, ring);
    }

    /// A group offering callbacks through a trunk that is not configured: said once the
    /// trunks and the routing are both known (at start, and on each reload).
    pub(super) fn warn_unusable_callbacks(&self) {
        let (Some(acd), Some(_)) = (&self.acd, &self.trunks.rules) else {
            return;
        };
        for (name, group) in &acd.routing().groups {
            let Some(callback) = &group.callback else {
                continue;
            };
            if !self.has_trunk(&callback.trunk.value) {
                warn!(group = %name, trunk = %callback.trunk.value, "callback through a trunk that is not configured ([trunks.NAME]): its requests cannot be dialled");
            }
        }
    }

    /// The language of `caller`'s request still waiting to be dialled, if they have one.
    pub(super) fn pending_callback_of(&self, caller: &str) -> Option<String> {
        let rules = self.trunks.rules.as_ref()?;
        self.waiting_request_of(caller, rules)
            .and_then(|id| self.callbacks.requests.get(&id))
            .map(|request| request.language.clone())
    }

    /// A request of this number's that no agent has taken yet.
    fn waiting_request_of(&self, caller: &str, rules: &crate::numbers::NumberRules) -> Option<u64> {
        self.callbacks
            .requests
            .iter()
            .find(|(_, request)| {
                matches!(
                    request.state,
                    RequestState::Queued | RequestState::Waiting { .. }
                ) && rules.same_number(&request.number, caller)
            })
            .map(|(id, _)| *id)
    }

    /// The caller `id` cancelled their pending request: it leaves the queue (a request already
    /// being dialled goes on: it cannot be taken back from the agent).
    pub(super) fn cancel_callback(&mut self, now: Instant, id: SessionId) {
        let Some(caller) = self.calls.get(&id).map(|call| call.facts.caller.clone()) else {
            return;
        };
        let Some(rules) = self.trunks.rules.clone() else {
            return;
        };
        let Some(request) = self.waiting_request_of(&caller, &rules) else {
            return info!("callback cancel: no request waiting any more");
        };
        info!(request, "callback request cancelled by the resident");
        self.report_to_acd(
            now,
            AcdInput::CallerLeft {
                call: CallId(request),
            },
        );
        self.write_callback(now, request, CallbackStatus::Cancelled);
        self.callbacks.requests.remove(&request);
    }
}
