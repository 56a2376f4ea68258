//! Automatic call distribution: the sans-I/O state machine that queues callers per agent group
//! and decides which agents ring for whom. It owns agent states (global across groups), the
//! per-group queues, ring/wrap-up/backoff/language/max-wait/announcement timers and the
//! wait-time statistics. The SIP side rings agents, relays audio and plays prompts; it feeds
//! results back as [`AcdInput`]s and drains [`AcdOutput`]s. Time only enters through `now`.
//!
//! Policies: callers are served first come first served by their first arrival (kept across
//! overflow), so a free agent takes the longest-waiting caller it may serve in any of its
//! groups; a caller is offered only to speakers of its language until `language_wait` has
//! passed (or at once to anybody when no agent of the group speaks it). Waiting callers hear
//! their position on entry and every `announce_every`; ringing ones hear ringback instead.
//!
//! Files: `types` (inputs, outputs, records), `queue` (callers, rings, dispatch), `agents`
//! (agent state and configuration), `announce` (position and wait announcements), `select`
//! (which agents ring).

mod agents;
mod announce;
#[cfg(test)]
mod availability_tests;
mod callback;
#[cfg(test)]
mod callback_tests;
mod queue;
mod select;
#[cfg(test)]
mod tests;
mod types;

use types::{after, AgentRecord, CallPhase, CallRecord};
pub use types::{
    AcdError, AcdInput, AcdOutput, AcdSettings, AgentId, AgentSnapshot, AgentState, CallId,
    FailReason, PauseReason,
};

use crate::routing::model::Routing;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ACD state machine; see the module documentation.
#[derive(Debug)]
pub struct Acd {
    routing: Arc<Routing>,
    settings: AcdSettings,
    now: Instant,
    agents: BTreeMap<AgentId, AgentRecord>,
    /// User agents currently registered (also those not, or not yet, in any group).
    registered_users: BTreeSet<AgentId>,
    /// Static agents whose phones stopped answering OPTIONS (they start out reachable).
    unreachable_phones: BTreeSet<AgentId>,
    calls: BTreeMap<CallId, CallRecord>,
    next_seq: u64,
    /// Round-robin memory: the agent rung last, per group.
    last_rung: BTreeMap<String, AgentId>,
    /// Recent completed calls per group: (ended, handle time).
    handled: BTreeMap<String, VecDeque<(Instant, Duration)>>,
    outputs: VecDeque<AcdOutput>,
}

impl Acd {
    pub fn new(routing: Arc<Routing>, settings: AcdSettings, now: Instant) -> Acd {
        let mut acd = Acd {
            routing,
            settings,
            now,
            agents: BTreeMap::new(),
            registered_users: BTreeSet::new(),
            unreachable_phones: BTreeSet::new(),
            calls: BTreeMap::new(),
            next_seq: 0,
            last_rung: BTreeMap::new(),
            handled: BTreeMap::new(),
            outputs: VecDeque::new(),
        };
        acd.sync_agents(now);
        acd
    }

    /// Applies one input at `now` (timers due by `now` fire first). An input refused with an
    /// error changed nothing; the timers that were due still fired.
    pub fn handle_input(&mut self, input: AcdInput, now: Instant) -> Result<(), AcdError> {
        let now = self.advance(now);
        // Timers due first: e.g. an answer arriving after the ring timeout is stale.
        self.step(now);
        let result = match input {
            AcdInput::Enqueue {
                call,
                group,
                language,
            } => self.enqueue(call, group, language, now),
            AcdInput::CallerLeft { call } => self.caller_left(call, now),
            AcdInput::AgentAnswered { call, agent } => self.answered(call, agent, now),
            AcdInput::AgentFailed {
                call,
                agent,
                reason,
            } => self.failed(call, &agent, reason, now),
            AcdInput::CallEnded { call } => self.ended(call, now),
            AcdInput::Online { agent, online } => {
                self.set_online(agent, online, now);
                Ok(())
            }
            AcdInput::SetPause { agent, pause } => self.set_pause(&agent, pause),
            AcdInput::Transfer { call, group } => self.transfer(call, group, now),
            AcdInput::ToCallback { call, callback } => self.turn_into_callback(call, callback, now),
            AcdInput::EnqueueCallback {
                call,
                group,
                language,
                arrived,
            } => self.enqueue_callback(call, group, language, arrived, now),
            AcdInput::CallbackDialled { call, caller } => self.callback_dialled(call, caller),
            AcdInput::CallbackNotReached { call } => self.callback_not_reached(call, now),
            AcdInput::Reconfigure(routing) => {
                self.reconfigure(routing, now);
                Ok(())
            }
        };
        self.step(now);
        result
    }

    /// Fires every timer due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.step(now);
    }

    /// The next instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for agent in self.agents.values() {
            if let AgentState::WrapUp { until } = agent.state {
                consider(Some(until));
            }
            consider(agent.backoff_until);
        }
        for call in self.calls.values() {
            match &call.phase {
                CallPhase::Ringing(rings) => rings.values().for_each(|&at| consider(at)),
                CallPhase::Waiting => {
                    if let Some(group) = self.routing.groups.get(&call.group) {
                        if !call.callback {
                            consider(after(call.entered, group.max_wait));
                        }
                        if !self.widened(call, group, self.now) {
                            consider(after(call.entered, group.language_wait));
                        }
                    }
                }
                CallPhase::Connected { .. } => {}
            }
            if call.in_queue() {
                consider(call.next_announce);
            }
        }
        next
    }

    pub fn poll_output(&mut self) -> Option<AcdOutput> {
        self.outputs.pop_front()
    }

    /// The routing the ACD works with (groups, agents).
    /// When a call first entered the ACD (its place in the queue).
    pub fn arrival(&self, call: CallId) -> Option<Instant> {
        self.calls.get(&call).map(|record| record.arrived)
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Every known agent's state, for statistics.
    pub fn agent_states(&self) -> Vec<AgentSnapshot> {
        self.agents
            .iter()
            .map(|(id, agent)| AgentSnapshot {
                agent: id.clone(),
                state: agent.state,
                since: agent.since,
                calls_answered: agent.calls_answered,
                backoff_until: agent.backoff_until,
                paused: agent.paused,
            })
            .collect()
    }

    /// The 1-based position of a call not yet connected, in its group's queue.
    pub fn queue_position(&self, call: CallId) -> Option<u32> {
        let record = self.calls.get(&call)?;
        if !record.in_queue() {
            return None;
        }
        let ahead = self
            .calls
            .values()
            .filter(|other| {
                other.in_queue() && other.group == record.group && other.order() < record.order()
            })
            .count();
        Some(u32::try_from(ahead).unwrap_or(u32::MAX).saturating_add(1))
    }

    /// Callers of `group` not yet connected.
    pub fn queue_len(&self, group: &str) -> usize {
        self.calls
            .values()
            .filter(|call| call.in_queue() && call.group == group)
            .count()
    }

    /// The group a call currently waits in or was connected through.
    pub fn call_group(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).map(|record| record.group.as_str())
    }

    /// Starts a new counting period for `fewest-calls` (e.g. at local midnight).
    pub fn reset_call_counts(&mut self) {
        for agent in self.agents.values_mut() {
            agent.calls_answered = 0;
        }
    }

    /// Time never runs backwards inside the machine, whatever the caller passes.
    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Timers, then distribution, then what could not be distributed.
    fn step(&mut self, now: Instant) {
        self.expire_rings(now);
        self.expire_agent_timers(now);
        self.dispatch(now);
        if self.expire_max_wait(now) | self.empty_groups(now) {
            self.dispatch(now);
        }
        self.announce_due(now);
        self.forget_removed_agents();
    }

    /// Agents no group names any more are kept only until their ring or call is over.
    fn forget_removed_agents(&mut self) {
        let configured = self.configured_agents();
        self.agents.retain(|id, record| {
            configured.contains(id)
                || matches!(record.state, AgentState::Ringing(_) | AgentState::OnCall(_))
        });
        self.unreachable_phones.retain(|id| configured.contains(id));
    }

    fn emit(&mut self, output: AcdOutput) {
        self.outputs.push_back(output);
    }
}
