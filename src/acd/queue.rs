//! Queue handling: callers entering, leaving and being answered, rings and their timeouts,
//! overflow on `max_wait`, and dispatching waiting callers to free agents.

use super::types::{
    after, due, AcdError, AcdOutput, AgentId, AgentState, CallId, CallPhase, CallRecord, FailReason,
};
use super::{select, Acd};
use crate::routing::model::{Group, WhenEmpty};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

impl Acd {
    pub(super) fn enqueue(
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
            callback: false,
        };
        self.enter(call, record, group, now);
        Ok(())
    }

    /// A call enters `group` (or its overflow chain; `QueueFull` says where, or that no group
    /// had room) and is rung or announced at once.
    fn enter(&mut self, call: CallId, record: CallRecord, group: String, now: Instant) {
        match self.place(call, record, group, now) {
            Some((_, false)) => {}
            Some((to, true)) => self.emit(AcdOutput::QueueFull { call, to: Some(to) }),
            None => self.emit(AcdOutput::QueueFull { call, to: None }),
        }
        // A caller rung at once hears ringback; one left waiting hears its position now.
        self.dispatch(now);
        self.announce_new(call, now);
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
            let nobody = !self.staffed(group);
            if nobody && group.when_empty == WhenEmpty::Message {
                return None;
            }
            if nobody && group.when_empty == WhenEmpty::Overflow {
                diverted = true;
                target = group.overflow.as_ref().map(|o| o.value.clone());
                continue;
            }
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

    pub(super) fn caller_left(&mut self, call: CallId, now: Instant) -> Result<(), AcdError> {
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
    pub(super) fn stop_rings(&mut self, call: CallId, phase: CallPhase, now: Instant) {
        if let CallPhase::Ringing(rings) = phase {
            for agent in rings.into_keys() {
                self.set_agent(&agent, AgentState::Idle, now);
                self.emit(AcdOutput::StopRinging { call, agent });
            }
        }
    }

    pub(super) fn answered(
        &mut self,
        call: CallId,
        agent: AgentId,
        now: Instant,
    ) -> Result<(), AcdError> {
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
            record.missed_in_a_row = 0;
        }
        self.emit(AcdOutput::Connected { call, agent });
        Ok(())
    }

    pub(super) fn failed(
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
        let group = record.group.clone();
        self.back_off(agent, reason, &group, now);
        Ok(())
    }

    pub(super) fn ended(&mut self, call: CallId, now: Instant) -> Result<(), AcdError> {
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
            None => self.set_agent(&agent, AgentState::Offline, now),
        }
        self.settle_agent(&agent, now);
        Ok(())
    }

    /// A connected call moved by its agent to another group: the agent's call ends (wrap-up,
    /// handle time counted), the caller queues in `group` keeping its first arrival, so it is
    /// served before callers who came later. The target's `when_empty` and overflow apply.
    pub(super) fn transfer(
        &mut self,
        call: CallId,
        group: String,
        now: Instant,
    ) -> Result<(), AcdError> {
        if !self.routing.groups.contains_key(&group) {
            return Err(AcdError::UnknownGroup { call, group });
        }
        let Some(mut record) = self.calls.get(&call).cloned() else {
            return Err(AcdError::UnknownCall { call });
        };
        self.ended(call, now)?;
        record.visited.clear();
        self.enter(call, record, group, now);
        Ok(())
    }

    pub(super) fn expire_rings(&mut self, now: Instant) {
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
            let group = self
                .calls
                .get(&call)
                .map(|record| record.group.clone())
                .unwrap_or_default();
            self.drop_ring(call, &agent);
            self.emit(AcdOutput::StopRinging {
                call,
                agent: agent.clone(),
            });
            self.back_off(&agent, FailReason::NoAnswer, &group, at);
        }
    }

    /// Overflows waiting calls past `max_wait`; true when some re-entered another queue.
    pub(super) fn expire_max_wait(&mut self, now: Instant) -> bool {
        self.send_on(now, |acd, record| {
            let group = acd.routing.groups.get(&record.group)?;
            let waited = !record.callback && due(after(record.entered, group.max_wait), now);
            waited.then_some(true)
        })
    }

    /// Callers waiting in a group whose last agent went away (unregistered, paused, logged
    /// out) go on as its `when_empty` says; true when any was placed in another group.
    pub(super) fn empty_groups(&mut self, now: Instant) -> bool {
        self.send_on(now, |acd, record| {
            let group = acd.routing.groups.get(&record.group)?;
            (!record.callback && group.when_empty != WhenEmpty::Wait && !acd.staffed(group))
                .then_some(group.when_empty == WhenEmpty::Overflow)
        })
    }

    /// Takes the waiting calls `leaving` picks (first come first) out of their queue: to the
    /// group's overflow when it answers `Some(true)`, out of the ACD when `Some(false)` or
    /// when the overflow chain has no room; true when any re-entered another queue.
    fn send_on(
        &mut self,
        now: Instant,
        leaving: impl Fn(&Acd, &CallRecord) -> Option<bool>,
    ) -> bool {
        let mut picked: Vec<((Instant, u64), CallId, bool)> = self
            .calls
            .iter()
            .filter(|(_, record)| matches!(record.phase, CallPhase::Waiting))
            .filter_map(|(call, record)| {
                leaving(self, record).map(|overflow| (record.order(), *call, overflow))
            })
            .collect();
        picked.sort();
        let mut requeued = false;
        for (_, call, use_overflow) in picked {
            let Some(record) = self.calls.remove(&call) else {
                continue;
            };
            let overflow = self
                .routing
                .groups
                .get(&record.group)
                .filter(|_| use_overflow)
                .and_then(|group| group.overflow.as_ref())
                .map(|overflow| overflow.value.clone());
            let to = overflow.and_then(|target| {
                self.place(call, record, target, now)
                    .map(|(group, _)| group)
            });
            requeued |= to.is_some();
            self.emit(AcdOutput::Overflow { call, to });
        }
        requeued
    }

    /// Whether any agent of `group` can take calls now or soon: registered and not paused
    /// (busy agents count, they will be free).
    pub(super) fn staffed(&self, group: &Group) -> bool {
        self.group_agent_ids(group).any(|id| {
            self.agents
                .get(&id)
                .is_some_and(|agent| agent.state != AgentState::Offline && agent.paused.is_none())
        })
    }

    /// The caller may be offered to any agent of the group, whatever their languages.
    pub(super) fn widened(&self, call: &CallRecord, group: &Group, now: Instant) -> bool {
        due(after(call.entered, group.language_wait), now)
            || !group
                .agents
                .iter()
                .any(|agent| select::speaks(agent, &call.language))
    }

    /// Offers free agents to waiting callers, oldest caller first across all groups, so an
    /// agent who frees up takes the longest-waiting caller it is eligible for.
    pub(super) fn dispatch(&mut self, now: Instant) {
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
