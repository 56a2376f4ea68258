//! Agent state: registration, wrap-up and backoff timers, and keeping the agent set in step
//! with the routing configuration.

use super::types::{
    after, due, AcdError, AcdOutput, AgentId, AgentRecord, AgentState, CallId, CallPhase,
    FailReason, PauseReason,
};
use super::Acd;
use crate::routing::model::{Group, Routing};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Acd {
    /// An agent's ring failed for a caller of `group`: it is left alone for the group's
    /// retry time, and paused after the group's `max_no_answer` missed rings in a row.
    pub(super) fn back_off(
        &mut self,
        agent: &AgentId,
        reason: FailReason,
        group: &str,
        now: Instant,
    ) {
        self.set_agent(agent, AgentState::Idle, now);
        let group = self.routing.groups.get(group);
        // A group gone in a reload leaves its caller's agent without a retry time or a limit.
        let retry = match reason {
            FailReason::Unreachable => self.settings.backoff_unreachable,
            FailReason::Busy | FailReason::Declined => {
                group.map_or(Duration::ZERO, |group| group.retry_after_busy)
            }
            FailReason::NoAnswer => {
                group.map_or(Duration::ZERO, |group| group.retry_after_no_answer)
            }
        };
        if reason == FailReason::NoAnswer {
            let limit = group.map_or(0, |group| group.max_no_answer);
            let missed = self.agents.get_mut(agent).map(|record| {
                record.missed_in_a_row += 1;
                record.missed_in_a_row
            });
            if limit > 0 && missed.is_some_and(|missed| missed >= limit) {
                tracing::warn!(%agent, missed = limit, "agent missed rings in a row: paused until they resume");
                let _ = self.set_pause(agent, Some(PauseReason::NoAnswer));
            }
        }
        let until = after(now, retry);
        if let Some(record) = self.agents.get_mut(agent) {
            // A failed leg says nothing about the agent once it moved on (e.g. unregistered).
            if record.state == AgentState::Idle {
                record.backoff_until = until;
            }
        }
    }

    pub(super) fn set_online(&mut self, agent: AgentId, online: bool, now: Instant) {
        let changed = match (agent.is_user(), online) {
            (true, true) => self.registered_users.insert(agent.clone()),
            (true, false) => self.registered_users.remove(&agent),
            (false, true) => self.unreachable_phones.remove(&agent),
            (false, false) => self.unreachable_phones.insert(agent.clone()),
        };
        if changed && !agent.is_user() {
            tracing::info!(%agent, reachable = online, "static agent's phone {}", if online { "answers again" } else { "does not answer OPTIONS: not rung" });
        }
        let Some(state) = self.agents.get(&agent).map(|record| record.state) else {
            return;
        };
        match (state, online) {
            (AgentState::Offline, true) => self.set_agent(&agent, AgentState::Idle, now),
            (AgentState::Idle | AgentState::WrapUp { .. }, false) => {
                self.set_agent(&agent, AgentState::Offline, now);
            }
            (AgentState::Ringing(call), false) => {
                self.drop_ring(call, &agent);
                self.set_agent(&agent, AgentState::Offline, now);
                self.emit(AcdOutput::StopRinging { call, agent });
            }
            // An agent on a call finishes it; it goes unregistered when the call ends.
            _ => {}
        }
    }

    /// Pauses an agent (never rung while paused) or makes it available again; unknown agents
    /// are refused. A ring in progress goes on (the agent may still answer it).
    pub(super) fn set_pause(
        &mut self,
        agent: &AgentId,
        pause: Option<PauseReason>,
    ) -> Result<(), AcdError> {
        let Some(record) = self.agents.get_mut(agent) else {
            return Err(AcdError::UnknownAgent {
                agent: agent.clone(),
            });
        };
        let from = record.paused;
        if from == pause {
            return Ok(());
        }
        record.paused = pause;
        if pause.is_none() {
            record.missed_in_a_row = 0;
            record.backoff_until = None;
        }
        self.emit(AcdOutput::PauseChanged {
            agent: agent.clone(),
            from,
            to: pause,
        });
        Ok(())
    }

    /// Forgets one ring of a call; the call waits again when nobody else rings.
    pub(super) fn drop_ring(&mut self, call: CallId, agent: &AgentId) {
        if let Some(record) = self.calls.get_mut(&call) {
            if let CallPhase::Ringing(rings) = &mut record.phase {
                rings.remove(agent);
                if rings.is_empty() {
                    record.phase = CallPhase::Waiting;
                }
            }
        }
    }

    pub(super) fn reconfigure(&mut self, routing: Arc<Routing>, now: Instant) {
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
    pub(super) fn sync_agents(&mut self, now: Instant) {
        let configured = self.configured_agents();
        for id in &configured {
            if !self.agents.contains_key(id) {
                let state = if !self.is_online(id) {
                    AgentState::Offline
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
                        paused: None,
                        missed_in_a_row: 0,
                    },
                );
            }
        }
        self.forget_removed_agents();
    }

    pub(super) fn configured_agents(&self) -> BTreeSet<AgentId> {
        self.routing
            .groups
            .values()
            .flat_map(|group| group.agents.iter().map(|agent| AgentId::of(&agent.target)))
            .collect()
    }

    pub(super) fn set_agent(&mut self, agent: &AgentId, state: AgentState, now: Instant) {
        if let Some(record) = self.agents.get_mut(agent) {
            record.state = state;
            record.since = now;
            record.backoff_until = None;
        }
    }

    /// Registered (user agents) or answering probes (static agents).
    fn is_online(&self, agent: &AgentId) -> bool {
        if agent.is_user() {
            self.registered_users.contains(agent)
        } else {
            !self.unreachable_phones.contains(agent)
        }
    }

    /// An agent leaving a call or wrap-up: it may have gone offline meanwhile.
    pub(super) fn settle_agent(&mut self, agent: &AgentId, now: Instant) {
        if !self.is_online(agent) {
            self.set_agent(agent, AgentState::Offline, now);
        }
    }

    pub(super) fn expire_agent_timers(&mut self, now: Instant) {
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

    pub(super) fn group_agent_ids<'a>(
        &self,
        group: &'a Group,
    ) -> impl Iterator<Item = AgentId> + 'a {
        let mut seen = BTreeSet::new();
        group
            .agents
            .iter()
            .map(|agent| AgentId::of(&agent.target))
            .filter(move |id| seen.insert(id.clone()))
    }
}
