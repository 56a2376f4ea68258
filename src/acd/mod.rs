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

mod select;
#[cfg(test)]
mod tests;

use crate::routing::model::{AgentTarget, Group, Routing};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Identifies one caller for its whole stay in the ACD (assigned by the SIP side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// Stable agent key: the URI text of a static agent, `user:<name>` for a registered user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(pub String);

impl AgentId {
    pub fn of(target: &AgentTarget) -> AgentId {
        match target {
            AgentTarget::Uri(uri) => AgentId(uri.value.clone()),
            AgentTarget::User(user) => AgentId::user(&user.value),
        }
    }

    /// The id of a registered user agent, as `Registered` inputs name it.
    pub fn user(name: &str) -> AgentId {
        AgentId(format!("user:{name}"))
    }

    fn is_user(&self) -> bool {
        self.0.starts_with("user:")
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an offered ring did not lead to an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// 486 Busy Here.
    Busy,
    /// 408, 503, transport timeout.
    Unreachable,
    /// 603 Decline.
    Declined,
    /// Rang for `ring_timeout` without an answer.
    NoAnswer,
}

#[derive(Debug, Clone)]
pub enum AcdInput {
    /// A caller chose an open group; `language` is the caller's language code.
    Enqueue {
        call: CallId,
        group: String,
        language: String,
    },
    /// The caller hung up (in queue, while agents ring, or during the bridged call).
    CallerLeft { call: CallId },
    /// An agent answered; the first answer wins.
    AgentAnswered { call: CallId, agent: AgentId },
    /// An agent's leg failed; it is skipped and offered again after a backoff.
    AgentFailed {
        call: CallId,
        agent: AgentId,
        reason: FailReason,
    },
    /// The bridged call finished (either side hung up): the agent goes to wrap-up.
    CallEnded { call: CallId },
    /// A user agent registered or unregistered (ignored for static URI agents).
    Registered { agent: AgentId, registered: bool },
    /// Live reload: group settings apply at once, agents keep their state, queued calls
    /// keep their group (calls whose group vanished overflow to "call later").
    Reconfigure(Arc<Routing>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdOutput {
    /// Ring `agent` for `call`; the ACD itself gives up after `timeout` (emits `StopRinging`).
    Ring {
        call: CallId,
        agent: AgentId,
        timeout: Duration,
    },
    /// Cancel the ring of `agent` for `call`.
    StopRinging { call: CallId, agent: AgentId },
    /// Informational: `agent` answered `call`; bridge them.
    Connected { call: CallId, agent: AgentId },
    /// Tell the waiting caller its 1-based queue position (and a wait estimate when confident).
    Announce {
        call: CallId,
        position: u32,
        estimated_wait: Option<Duration>,
    },
    /// `max_wait` reached: `Some(group)` = the call now waits in that group's queue;
    /// `None` = "please call later" and hang up (the call left the ACD). A caller whose
    /// agent is ringing at that instant overflows only if that ring fails.
    Overflow { call: CallId, to: Option<String> },
    /// The group already held `max_queue` callers not yet connected (waiting or ringing):
    /// same meaning of `to` as in `Overflow` (the first group of the chain with room).
    QueueFull { call: CallId, to: Option<String> },
}

impl AcdOutput {
    pub fn call(&self) -> CallId {
        match self {
            AcdOutput::Ring { call, .. }
            | AcdOutput::StopRinging { call, .. }
            | AcdOutput::Connected { call, .. }
            | AcdOutput::Announce { call, .. }
            | AcdOutput::Overflow { call, .. }
            | AcdOutput::QueueFull { call, .. } => *call,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("cannot enqueue {call}: no group \"{group}\" in the routing")]
    UnknownGroup { call: CallId, group: String },
    #[error("cannot enqueue {call}: it is already in the ACD")]
    DuplicateCall { call: CallId },
    #[error("{call} is not in the ACD (already left or never entered)")]
    UnknownCall { call: CallId },
    #[error("agent {agent} is not ringing for {call} (stopped, timed out or another answered)")]
    NotRinging { call: CallId, agent: AgentId },
    #[error("{call} is not connected to an agent")]
    NotConnected { call: CallId },
}

/// An agent's global state (shared by all its groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Idle,
    Ringing(CallId),
    OnCall(CallId),
    /// After a call, until `until` (the group's `wrap_up` later).
    WrapUp {
        until: Instant,
    },
    /// A user agent not currently registered.
    Unregistered,
}

/// One agent's state for statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSnapshot {
    pub agent: AgentId,
    pub state: AgentState,
    /// When `state` was entered.
    pub since: Instant,
    /// Calls answered since start or the last [`Acd::reset_call_counts`].
    pub calls_answered: u64,
    /// The agent is skipped until then after a failed ring.
    pub backoff_until: Option<Instant>,
}

/// Tunables not in routing.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcdSettings {
    /// Period of position announcements while a caller waits.
    pub announce_every: Duration,
    /// Completed calls needed in `estimate_window` before a wait estimate is given.
    pub estimate_min_calls: usize,
    pub estimate_window: Duration,
    pub backoff_busy: Duration,
    pub backoff_unreachable: Duration,
    pub backoff_declined: Duration,
    pub backoff_no_answer: Duration,
}

impl Default for AcdSettings {
    fn default() -> Self {
        AcdSettings {
            announce_every: Duration::from_secs(30),
            estimate_min_calls: 5,
            estimate_window: Duration::from_secs(3600),
            backoff_busy: Duration::from_secs(15),
            backoff_unreachable: Duration::from_secs(60),
            backoff_declined: Duration::from_secs(15),
            backoff_no_answer: Duration::from_secs(10),
        }
    }
}

impl AcdSettings {
    fn backoff(&self, reason: FailReason) -> Duration {
        match reason {
            FailReason::Busy => self.backoff_busy,
            FailReason::Unreachable => self.backoff_unreachable,
            FailReason::Declined => self.backoff_declined,
            FailReason::NoAnswer => self.backoff_no_answer,
        }
    }
}

#[derive(Debug, Clone)]
struct AgentRecord {
    state: AgentState,
    since: Instant,
    calls_answered: u64,
    backoff_until: Option<Instant>,
}

#[derive(Debug, Clone)]
enum CallPhase {
    Waiting,
    /// Agents ringing for this call, each with its give-up instant.
    Ringing(BTreeMap<AgentId, Option<Instant>>),
    Connected {
        agent: AgentId,
        answered: Instant,
    },
}

#[derive(Debug, Clone)]
struct CallRecord {
    group: String,
    language: String,
    /// First entry into the ACD: the FCFS order, kept across overflow.
    arrived: Instant,
    /// Entry into the current group: `language_wait` and `max_wait` count from here.
    entered: Instant,
    /// Tie-break for equal `arrived` instants.
    seq: u64,
    phase: CallPhase,
    announced: bool,
    next_announce: Option<Instant>,
    /// Groups this call has been placed in, so overflow chains cannot loop.
    visited: BTreeSet<String>,
}

impl CallRecord {
    fn in_queue(&self) -> bool {
        !matches!(self.phase, CallPhase::Connected { .. })
    }

    fn order(&self) -> (Instant, u64) {
        (self.arrived, self.seq)
    }
}

/// `t + d`, or `None` ("never") when the sum does not fit an `Instant`.
fn after(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|at| at <= now)
}

/// The ACD state machine; see the module documentation.
#[derive(Debug)]
pub struct Acd {
    routing: Arc<Routing>,
    settings: AcdSettings,
    now: Instant,
    agents: BTreeMap<AgentId, AgentRecord>,
    /// User agents currently registered (also those not, or not yet, in any group).
    registered_users: BTreeSet<AgentId>,
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
            AcdInput::Registered { agent, registered } => {
                self.registered(agent, registered, now);
                Ok(())
            }
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
                        consider(after(call.entered, group.max_wait));
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
        if self.expire_max_wait(now) {
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
    }

    fn emit(&mut self, output: AcdOutput) {
        self.outputs.push_back(output);
    }

    fn enqueue(
        &mut self,
        call: CallId,
        group: String,
        language: String,
        now: Instant,
    ) -> Result<(), AcdError> {
        if self.calls.contains_key(&call) {
            return Err(AcdError::DuplicateCall { call });
        }
        if !self.routing.groups.contains_key(&group) {
            return Err(AcdError::UnknownGroup { call, group });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let record = CallRecord {
            group: String::new(),
            language,
            arrived: now,
            entered: now,
            seq,
            phase: CallPhase::Waiting,
            announced: false,
            next_announce: None,
            visited: BTreeSet::new(),
        };
        match self.place(call, record, group, now) {
            Some((_, false)) => {}
            Some((to, true)) => self.emit(AcdOutput::QueueFull { call, to: Some(to) }),
            None => self.emit(AcdOutput::QueueFull { call, to: None }),
        }
        // A caller rung at once hears ringback; one left waiting hears its position now.
        self.dispatch(now);
        self.announce_new(call, now);
        Ok(())
    }

    /// Puts a call in `group`'s queue, or in the first group of its overflow chain with room;
    /// returns that group and whether it differs from `group`, or `None` when no group of the
    /// chain had room (or the chain looped): the call then left the ACD.
    fn place(
        &mut self,
        call: CallId,
        mut record: CallRecord,
        group: String,
        now: Instant,
    ) -> Option<(String, bool)> {
        let mut target = Some(group);
        let mut diverted = false;
        while let Some(name) = target {
            let group = self.routing.groups.get(&name)?;
            if !record.visited.insert(name.clone()) {
                return None;
            }
            let capacity = usize::try_from(group.max_queue).unwrap_or(usize::MAX);
            if self.queue_len(&name) < capacity {
                record.group = name.clone();
                record.entered = now;
                record.phase = CallPhase::Waiting;
                record.announced = false;
                record.next_announce = None;
                self.calls.insert(call, record);
                return Some((name, diverted));
            }
            diverted = true;
            target = group.overflow.as_ref().map(|o| o.value.clone());
        }
        None
    }

    fn caller_left(&mut self, call: CallId, now: Instant) -> Result<(), AcdError> {
        let Some(record) = self.calls.get(&call) else {
            return Err(AcdError::UnknownCall { call });
        };
        if matches!(record.phase, CallPhase::Connected { .. }) {
            return self.ended(call, now);
        }
        if let Some(record) = self.calls.remove(&call) {
            self.stop_rings(call, record.phase, now);
        }
        Ok(())
    }

    /// Cancels every ring of a call leaving the queue; the agents are free again at once.
    fn stop_rings(&mut self, call: CallId, phase: CallPhase, now: Instant) {
        if let CallPhase::Ringing(rings) = phase {
            for agent in rings.into_keys() {
                self.set_agent(&agent, AgentState::Idle, now);
                self.emit(AcdOutput::StopRinging { call, agent });
            }
        }
    }

    fn answered(&mut self, call: CallId, agent: AgentId, now: Instant) -> Result<(), AcdError> {
        let Some(record) = self.calls.get_mut(&call) else {
            return Err(AcdError::UnknownCall { call });
        };
        let CallPhase::Ringing(rings) = &mut record.phase else {
            return Err(AcdError::NotRinging { call, agent });
        };
        if rings.remove(&agent).is_none() {
            return Err(AcdError::NotRinging { call, agent });
        }
        let others = std::mem::take(rings);
        record.phase = CallPhase::Connected {
            agent: agent.clone(),
            answered: now,
        };
        record.next_announce = None;
        for other in others.into_keys() {
            self.set_agent(&other, AgentState::Idle, now);
            self.emit(AcdOutput::StopRinging { call, agent: other });
        }
        self.set_agent(&agent, AgentState::OnCall(call), now);
        if let Some(record) = self.agents.get_mut(&agent) {
            record.calls_answered += 1;
        }
        self.emit(AcdOutput::Connected { call, agent });
        Ok(())
    }

    fn failed(
        &mut self,
        call: CallId,
        agent: &AgentId,
        reason: FailReason,
        now: Instant,
    ) -> Result<(), AcdError> {
        let Some(record) = self.calls.get_mut(&call) else {
            return Err(AcdError::UnknownCall { call });
        };
        let not_ringing = || AcdError::NotRinging {
            call,
            agent: agent.clone(),
        };
        let CallPhase::Ringing(rings) = &mut record.phase else {
            return Err(not_ringing());
        };
        if rings.remove(agent).is_none() {
            return Err(not_ringing());
        }
        if rings.is_empty() {
            record.phase = CallPhase::Waiting;
        }
        self.back_off(agent, reason, now);
        Ok(())
    }

    fn back_off(&mut self, agent: &AgentId, reason: FailReason, now: Instant) {
        self.set_agent(agent, AgentState::Idle, now);
        let until = after(now, self.settings.backoff(reason));
        if let Some(record) = self.agents.get_mut(agent) {
            // A failed leg says nothing about the agent once it moved on (e.g. unregistered).
            if record.state == AgentState::Idle {
                record.backoff_until = until;
            }
        }
    }

    fn ended(&mut self, call: CallId, now: Instant) -> Result<(), AcdError> {
        let Some(record) = self.calls.get(&call) else {
            return Err(AcdError::UnknownCall { call });
        };
        let CallPhase::Connected { agent, answered } = &record.phase else {
            return Err(AcdError::NotConnected { call });
        };
        let (agent, answered) = (agent.clone(), *answered);
        let group_name = record.group.clone();
        self.calls.remove(&call);
        let wrap_up = self
            .routing
            .groups
            .get(&group_name)
            .map_or(Duration::ZERO, |group| group.wrap_up);
        let history = self.handled.entry(group_name).or_default();
        history.push_back((now, now.saturating_duration_since(answered)));
        match after(now, wrap_up) {
            Some(until) if until > now => {
                self.set_agent(&agent, AgentState::WrapUp { until }, now);
            }
            Some(_) => self.set_agent(&agent, AgentState::Idle, now),
            // A wrap-up too long for the clock: the agent stays out until re-registered.
            None => self.set_agent(&agent, AgentState::Unregistered, now),
        }
        self.settle_agent(&agent, now);
        Ok(())
    }

    fn registered(&mut self, agent: AgentId, registered: bool, now: Instant) {
        if !agent.is_user() {
            return;
        }
        if registered {
            self.registered_users.insert(agent.clone());
        } else {
            self.registered_users.remove(&agent);
        }
        let Some(state) = self.agents.get(&agent).map(|record| record.state) else {
            return;
        };
        match (state, registered) {
            (AgentState::Unregistered, true) => self.set_agent(&agent, AgentState::Idle, now),
            (AgentState::Idle | AgentState::WrapUp { .. }, false) => {
                self.set_agent(&agent, AgentState::Unregistered, now);
            }
            (AgentState::Ringing(call), false) => {
                self.drop_ring(call, &agent);
                self.set_agent(&agent, AgentState::Unregistered, now);
                self.emit(AcdOutput::StopRinging { call, agent });
            }
            // An agent on a call finishes it; it goes unregistered when the call ends.
            _ => {}
        }
    }

    /// Forgets one ring of a call; the call waits again when nobody else rings.
    fn drop_ring(&mut self, call: CallId, agent: &AgentId) {
        if let Some(record) = self.calls.get_mut(&call) {
            if let CallPhase::Ringing(rings) = &mut record.phase {
                rings.remove(agent);
                if rings.is_empty() {
                    record.phase = CallPhase::Waiting;
                }
            }
        }
    }

    fn reconfigure(&mut self, routing: Arc<Routing>, now: Instant) {
        self.routing = routing;
        self.sync_agents(now);
        let orphans: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, record)| {
                record.in_queue() && !self.routing.groups.contains_key(&record.group)
            })
            .map(|(call, _)| *call)
            .collect();
        for call in orphans {
            if let Some(record) = self.calls.remove(&call) {
                self.stop_rings(call, record.phase, now);
                self.emit(AcdOutput::Overflow { call, to: None });
            }
        }
    }

    /// Adds agents new in the routing; drops free agents no group names any more.
    fn sync_agents(&mut self, now: Instant) {
        let configured = self.configured_agents();
        for id in &configured {
            if !self.agents.contains_key(id) {
                let state = if id.is_user() && !self.registered_users.contains(id) {
                    AgentState::Unregistered
                } else {
                    AgentState::Idle
                };
                self.agents.insert(
                    id.clone(),
                    AgentRecord {
                        state,
                        since: now,
                        calls_answered: 0,
                        backoff_until: None,
                    },
                );
            }
        }
        self.forget_removed_agents();
    }

    fn configured_agents(&self) -> BTreeSet<AgentId> {
        self.routing
            .groups
            .values()
            .flat_map(|group| group.agents.iter().map(|agent| AgentId::of(&agent.target)))
            .collect()
    }

    fn set_agent(&mut self, agent: &AgentId, state: AgentState, now: Instant) {
        if let Some(record) = self.agents.get_mut(agent) {
            record.state = state;
            record.since = now;
            record.backoff_until = None;
        }
    }

    /// An agent leaving a call or wrap-up: it may have unregistered meanwhile.
    fn settle_agent(&mut self, agent: &AgentId, now: Instant) {
        if agent.is_user() && !self.registered_users.contains(agent) {
            self.set_agent(agent, AgentState::Unregistered, now);
        }
    }

    fn expire_rings(&mut self, now: Instant) {
        let mut expired: Vec<(Instant, CallId, AgentId)> = Vec::new();
        for (call, record) in &self.calls {
            if let CallPhase::Ringing(rings) = &record.phase {
                for (agent, deadline) in rings {
                    if let Some(at) = deadline.filter(|at| *at <= now) {
                        expired.push((at, *call, agent.clone()));
                    }
                }
            }
        }
        expired.sort();
        for (at, call, agent) in expired {
            self.drop_ring(call, &agent);
            self.emit(AcdOutput::StopRinging {
                call,
                agent: agent.clone(),
            });
            self.back_off(&agent, FailReason::NoAnswer, at);
        }
    }

    fn expire_agent_timers(&mut self, now: Instant) {
        let mut finished_wrap_up = Vec::new();
        for (id, agent) in &mut self.agents {
            if due(agent.backoff_until, now) {
                agent.backoff_until = None;
            }
            if let AgentState::WrapUp { until } = agent.state {
                if until <= now {
                    // Idle from the exact end of wrap-up, so longest-idle stays exact.
                    agent.state = AgentState::Idle;
                    agent.since = until;
                    finished_wrap_up.push(id.clone());
                }
            }
        }
        for agent in finished_wrap_up {
            self.settle_agent(&agent, now);
        }
    }

    /// Overflows waiting calls past `max_wait`; true when some re-entered another queue.
    fn expire_max_wait(&mut self, now: Instant) -> bool {
        let mut expired: Vec<((Instant, u64), CallId)> = self
            .calls
            .iter()
            .filter(|(_, record)| matches!(record.phase, CallPhase::Waiting))
            .filter(|(_, record)| {
                self.routing
                    .groups
                    .get(&record.group)
                    .is_some_and(|group| due(after(record.entered, group.max_wait), now))
            })
            .map(|(call, record)| (record.order(), *call))
            .collect();
        expired.sort();
        let mut requeued = false;
        for (_, call) in expired {
            let Some(record) = self.calls.remove(&call) else {
                continue;
            };
            let overflow = self
                .routing
                .groups
                .get(&record.group)
                .and_then(|group| group.overflow.as_ref())
                .map(|overflow| overflow.value.clone());
            let to = match overflow {
                Some(target) => self
                    .place(call, record, target, now)
                    .map(|(group, _)| group),
                None => None,
            };
            requeued |= to.is_some();
            self.emit(AcdOutput::Overflow { call, to });
        }
        requeued
    }

    fn announce_new(&mut self, call: CallId, now: Instant) {
        let Some(record) = self.calls.get(&call) else {
            return;
        };
        if matches!(record.phase, CallPhase::Waiting) && !record.announced {
            self.announce(call, now);
        }
    }

    fn announce_due(&mut self, now: Instant) {
        let mut due_calls: Vec<((Instant, u64), CallId)> = self
            .calls
            .iter()
            .filter(|(_, record)| {
                matches!(record.phase, CallPhase::Waiting)
                    && (!record.announced || due(record.next_announce, now))
            })
            .map(|(call, record)| (record.order(), *call))
            .collect();
        due_calls.sort();
        for (_, call) in due_calls {
            self.announce(call, now);
        }
        // Ringing callers hear ringback; their announcement slot moves on.
        let period = self.settings.announce_every;
        for record in self.calls.values_mut() {
            if matches!(record.phase, CallPhase::Ringing(_)) && due(record.next_announce, now) {
                record.next_announce = after(now, period);
            }
        }
    }

    fn announce(&mut self, call: CallId, now: Instant) {
        let Some(position) = self.queue_position(call) else {
            return;
        };
        let estimated_wait = self
            .calls
            .get(&call)
            .and_then(|record| self.estimate(&record.group, position, now));
        let period = self.settings.announce_every;
        if let Some(record) = self.calls.get_mut(&call) {
            record.announced = true;
            record.next_announce = after(now, period);
        }
        self.emit(AcdOutput::Announce {
            call,
            position,
            estimated_wait,
        });
    }

    /// Average handle time of recent calls × position ÷ staffed agents, when enough calls
    /// completed recently to trust the average.
    fn estimate(&self, group_name: &str, position: u32, now: Instant) -> Option<Duration> {
        let group = self.routing.groups.get(group_name)?;
        let window_start = now.checked_sub(self.settings.estimate_window);
        let recent: Vec<Duration> = self
            .handled
            .get(group_name)?
            .iter()
            .filter(|(ended, _)| window_start.is_none_or(|start| *ended >= start))
            .map(|(_, handle)| *handle)
            .collect();
        if recent.len() < self.settings.estimate_min_calls.max(1) {
            return None;
        }
        let count = u32::try_from(recent.len()).ok()?;
        let average = recent.iter().sum::<Duration>() / count;
        let staffed = self.group_agent_ids(group).filter(|id| {
            self.agents
                .get(id)
                .is_some_and(|agent| agent.state != AgentState::Unregistered)
        });
        let staffed = u32::try_from(staffed.count()).ok().filter(|n| *n > 0)?;
        Some(average.checked_mul(position)? / staffed)
    }

    fn group_agent_ids<'a>(&self, group: &'a Group) -> impl Iterator<Item = AgentId> + 'a {
        let mut seen = BTreeSet::new();
        group
            .agents
            .iter()
            .map(|agent| AgentId::of(&agent.target))
            .filter(move |id| seen.insert(id.clone()))
    }

    /// The caller may be offered to any agent of the group, whatever their languages.
    fn widened(&self, call: &CallRecord, group: &Group, now: Instant) -> bool {
        due(after(call.entered, group.language_wait), now)
            || !group
                .agents
                .iter()
                .any(|agent| select::speaks(agent, &call.language))
    }

    fn prune_history(&mut self, now: Instant) {
        if let Some(start) = now.checked_sub(self.settings.estimate_window) {
            for history in self.handled.values_mut() {
                while history.front().is_some_and(|(ended, _)| *ended < start) {
                    history.pop_front();
                }
            }
        }
    }

    /// Offers free agents to waiting callers, oldest caller first across all groups, so an
    /// agent who frees up takes the longest-waiting caller it is eligible for.
    fn dispatch(&mut self, now: Instant) {
        self.prune_history(now);
        let mut waiting: Vec<((Instant, u64), CallId)> = self
            .calls
            .iter()
            .filter(|(_, record)| matches!(record.phase, CallPhase::Waiting))
            .map(|(call, record)| (record.order(), *call))
            .collect();
        waiting.sort();
        for (_, call) in waiting {
            let Some(record) = self.calls.get(&call) else {
                continue;
            };
            let Some(group) = self.routing.groups.get(&record.group) else {
                continue;
            };
            let widened = self.widened(record, group, now);
            let chosen = select::choose(
                group,
                &record.language,
                widened,
                &self.agents,
                self.last_rung.get(&record.group),
                now,
            );
            if chosen.is_empty() {
                continue;
            }
            let ring_timeout = group.ring_timeout;
            let group_name = record.group.clone();
            let deadline = after(now, ring_timeout);
            let mut rings = BTreeMap::new();
            for agent in &chosen {
                rings.insert(agent.clone(), deadline);
                self.set_agent(agent, AgentState::Ringing(call), now);
                self.emit(AcdOutput::Ring {
                    call,
                    agent: agent.clone(),
                    timeout: ring_timeout,
                });
            }
            if let Some(last) = chosen.last() {
                self.last_rung.insert(group_name, last.clone());
            }
            if let Some(record) = self.calls.get_mut(&call) {
                record.phase = CallPhase::Ringing(rings);
            }
        }
    }
}
