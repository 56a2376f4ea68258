//! The endpoint's side of the ACD: callers queued by their flow, agents rung as the ACD
//! decides, announcements and give-ups handed back to the flow, and every agent-side
//! outcome (answer, failure, BYE, registration) reported so the ACD's picture stays true.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::agent::AgentCall;
use super::{CallRef, Endpoint};
use crate::acd::{Acd, AcdInput, AcdOutput, AcdSettings, AgentId, CallId};
use crate::ivr::{FlowEvent, QueueCall};
use crate::routing::Routing;

impl Endpoint {
    /// The routing new calls use: groups and agents for the ACD (agents keep their state).
    pub fn set_routing(&mut self, now: Instant, routing: Arc<Routing>) {
        match self.acd.as_mut() {
            Some(acd) => {
                if let Err(error) = acd.handle_input(AcdInput::Reconfigure(routing), now) {
                    warn!(%error, "ACD reconfiguration");
                }
            }
            None => self.acd = Some(Acd::new(routing, AcdSettings::default(), now)),
        }
        self.drain_acd(now);
    }

    pub(super) fn enqueue(&mut self, now: Instant, id: CallRef, queued: QueueCall) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.span.in_scope(
            || info!(group = %queued.group, language = %queued.language, "queued for agents"),
        );
        let input = AcdInput::Enqueue {
            call: CallId(id.0),
            group: queued.group.clone(),
            language: queued.language.clone(),
        };
        call.queue = Some(queued);
        call.facts.transfer_mode = Some(crate::cdr::TransferMode::Bridge);
        if self.acd.is_none() {
            warn!("no agent groups configured: the caller cannot be queued");
            return self.flow_event(now, id, FlowEvent::QueueGaveUp);
        }
        self.report_to_acd(now, input);
    }

    /// Hands the ACD one fact and carries out what it decides.
    pub(super) fn report_to_acd(&mut self, now: Instant, input: AcdInput) {
        let Some(acd) = self.acd.as_mut() else { return };
        if let Err(error) = acd.handle_input(input, now) {
            // Late or duplicate reports (a BYE after the caller left...) change nothing.
            debug!(%error, "ACD input ignored");
        }
        self.drain_acd(now);
    }

    pub(super) fn drain_acd(&mut self, now: Instant) {
        while let Some(output) = self.acd.as_mut().and_then(Acd::poll_output) {
            match output {
                AcdOutput::Ring { call, agent, .. } => {
                    self.ring_for_acd(now, CallRef(call.0), agent)
                }
                AcdOutput::StopRinging { call, agent } => {
                    let legs: Vec<CallRef> = self
                        .legs
                        .iter()
                        .filter(|(_, leg)| leg.caller == CallRef(call.0) && leg.agent == agent)
                        .map(|(id, _)| *id)
                        .collect();
                    for leg in legs {
                        self.hang_up_leg(now, leg);
                    }
                }
                AcdOutput::Connected { call, agent } => {
                    if let Some(caller) = self.calls.get(&CallRef(call.0)) {
                        caller.span.in_scope(|| info!(%agent, "connected to agent"));
                    }
                }
                AcdOutput::Announce {
                    call,
                    position,
                    estimated_wait,
                } => {
                    let event = FlowEvent::QueuePosition {
                        position,
                        estimated_wait,
                    };
                    self.flow_event(now, CallRef(call.0), event);
                }
                AcdOutput::Overflow { call, to } | AcdOutput::QueueFull { call, to } => match to {
                    Some(group) => {
                        let wall = self.wall(now);
                        if let Some(caller) = self.calls.get_mut(&CallRef(call.0)) {
                            caller
                                .span
                                .in_scope(|| info!(%group, "overflowed to another group"));
                            caller.facts.overflowed_to = Some((wall, group.to_string()));
                        }
                    }
                    None => self.flow_event(now, CallRef(call.0), FlowEvent::QueueGaveUp),
                },
            }
        }
    }

    /// Where the ACD's chosen agent is: a static URI, or the user's registered contact.
    fn ring_for_acd(&mut self, now: Instant, caller: CallRef, agent: AgentId) {
        let Some(queued) = self.calls.get(&caller).and_then(|call| call.queue.clone()) else {
            return self.report_to_acd(
                now,
                AcdInput::CallerLeft {
                    call: CallId(caller.0),
                },
            );
        };
        let resolved = match agent.0.strip_prefix("user:") {
            Some(user) => self.registrar.as_ref().and_then(|registrar| {
                registrar
                    .contacts(user, now)
                    .last()
                    .map(|binding| (binding.contact.clone(), Some(binding.flow)))
            }),
            None => Some((agent.0.clone(), None)),
        };
        let target = resolved.and_then(|(target, flow)| {
            let peer = flow.or_else(|| super::agent::agent_peer(&target))?;
            Some((target, peer))
        });
        let Some((target, peer)) = target else {
            warn!(%agent, "agent has no reachable address");
            return self.agent_unreachable(now, caller, agent);
        };
        let call = AgentCall {
            target,
            display: queued.display,
            language: queued.language,
            path: queued.path,
        };
        self.ring_agent(now, caller, agent, call, peer);
    }
}

impl Endpoint {
    /// Calls, queues and agents as a supervisor sees them now.
    pub fn live(&self, now: Instant) -> crate::http::live::LiveSnapshot {
        use crate::http::live::{AgentLive, LiveCall, LiveSnapshot, QueueLive};
        use std::collections::BTreeMap;
        let wall = self.wall(now);
        let seconds_since = |then: Option<std::time::SystemTime>| {
            then.and_then(|then| wall.duration_since(then).ok())
                .map_or(0, |d| d.as_secs())
        };
        let mut queues: BTreeMap<String, QueueLive> = BTreeMap::new();
        let mut calls = Vec::with_capacity(self.calls.len());
        for call in self.calls.values() {
            let summary = call.flow.summary();
            let state = if call.state == super::CallState::Terminating {
                "ending"
            } else if call.bridged {
                "connected"
            } else if !call.agent_legs.is_empty() {
                "ringing"
            } else if call.queue.is_some() {
                "queued"
            } else {
                "menu"
            };
            if let (Some(queued), "queued" | "ringing") = (&call.queue, state) {
                let waited = seconds_since(summary.queue_entered);
                let entry = queues.entry(queued.group.clone()).or_insert(QueueLive {
                    group: queued.group.clone(),
                    waiting: 0,
                    longest_wait_s: 0,
                });
                entry.waiting += 1;
                entry.longest_wait_s = entry.longest_wait_s.max(waited);
            }
            calls.push(LiveCall {
                call_id: call.dialog.key.call_id.clone(),
                state: state.to_owned(),
                language: summary.language.clone(),
                group: summary.group.clone(),
                since_s: seconds_since(call.facts.arrived),
            });
        }
        let agents = self
            .acd
            .as_ref()
            .map(Acd::agent_states)
            .unwrap_or_default()
            .into_iter()
            .map(|agent| AgentLive {
                agent: agent.agent.0,
                state: match agent.state {
                    crate::acd::AgentState::Idle => "idle",
                    crate::acd::AgentState::Ringing(_) => "ringing",
                    crate::acd::AgentState::OnCall(_) => "on_call",
                    crate::acd::AgentState::WrapUp { .. } => "wrap_up",
                    crate::acd::AgentState::Unregistered => "unregistered",
                }
                .to_owned(),
                since_s: now.saturating_duration_since(agent.since).as_secs(),
                calls_answered: agent.calls_answered,
            })
            .collect();
        LiveSnapshot {
            at: Some(chrono::DateTime::<chrono::Utc>::from(wall)),
            calls,
            queues: queues.into_values().collect(),
            agents,
            ..LiveSnapshot::default()
        }
    }
}
