//! The switchboard's side of the ACD: callers queued by their flow, agents rung as the ACD
//! decides, announcements and give-ups handed back to the flow, and every agent-side outcome
//! (answer, failure, BYE, registration) reported so the ACD's picture stays true.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::agent::AgentCall;
use super::{Pending, Switchboard};
use crate::acd::{Acd, AcdInput, AcdOutput, AcdSettings, AgentId, CallId, FailReason};
use crate::cdr::TransferMode;
use crate::ivr::{FlowEvent, QueueCall};
use crate::routing::Routing;
use crate::sip::ua::SessionId;

impl Switchboard {
    /// The routing new calls use: groups and agents for the ACD (agents keep their state).
    pub fn set_routing(&mut self, now: Instant, routing: Arc<Routing>) {
        self.languages
            .set_window(routing.hotline.remember_language.value);
        self.sync_probes(now, &routing);
        match self.acd.as_mut() {
            Some(acd) => {
                if let Err(error) = acd.handle_input(AcdInput::Reconfigure(routing), now) {
                    warn!(%error, "ACD reconfiguration");
                }
            }
            None => self.acd = Some(Acd::new(routing, AcdSettings::default(), now)),
        }
        self.warn_unusable_callbacks();
        self.route(now);
    }

    pub(super) fn enqueue(&mut self, now: Instant, id: SessionId, queued: QueueCall) {
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
        call.facts.transfer_mode = Some(TransferMode::Bridge);
        if self.acd.is_none() {
            warn!("no agent groups configured: the caller cannot be queued");
            return self
                .pending
                .push_back(Pending::Flow(id, FlowEvent::QueueGaveUp));
        }
        self.report_to_acd(now, input);
    }

    /// Hands the ACD one fact; what it decides is routed after the current input.
    pub(super) fn report_to_acd(&mut self, now: Instant, input: AcdInput) {
        let Some(acd) = self.acd.as_mut() else { return };
        if let Err(error) = acd.handle_input(input, now) {
            // Late or duplicate reports (a BYE after the caller left...) change nothing.
            debug!(%error, "ACD input ignored");
        }
    }

    /// The ACD's choice could not even be rung: it tries someone else.
    pub(super) fn agent_unreachable(&mut self, now: Instant, caller: SessionId, agent: AgentId) {
        let input = AcdInput::AgentFailed {
            call: CallId(caller.0),
            agent,
            reason: FailReason::Unreachable,
        };
        self.report_to_acd(now, input);
    }

    pub(super) fn acd_output(&mut self, now: Instant, output: AcdOutput) {
        match output {
            AcdOutput::Ring { call, agent, .. } if self.is_callback(call) => {
                self.ring_for_callback(now, call, agent)
            }
            AcdOutput::Ring { call, agent, .. } => self.ring_for_acd(now, SessionId(call.0), agent),
            AcdOutput::StopRinging { call, agent } => {
                let mut legs: Vec<SessionId> = self
                    .legs
                    .iter()
                    .filter(|(_, leg)| leg.caller == SessionId(call.0) && leg.agent == agent)
                    .map(|(id, _)| *id)
                    .collect();
                legs.sort();
                for leg in legs {
                    self.hang_up_leg(now, leg);
                }
            }
            AcdOutput::Connected { call, agent } => {
                if let Some(caller) = self.calls.get(&SessionId(call.0)) {
                    caller.span.in_scope(|| info!(%agent, "connected to agent"));
                }
            }
            AcdOutput::Overflow { call, .. } | AcdOutput::QueueFull { call, .. }
                if self.is_callback(call) =>
            {
                self.callback_dropped(now, call)
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
                self.flow_event(now, SessionId(call.0), event);
            }
            AcdOutput::Overflow { call, to } | AcdOutput::QueueFull { call, to } => match to {
                Some(group) => {
                    let wall = self.wall(now);
                    if let Some(caller) = self.calls.get_mut(&SessionId(call.0)) {
                        caller
                            .span
                            .in_scope(|| info!(%group, "overflowed to another group"));
                        caller.facts.overflowed_to = Some((wall, group.to_string()));
                    }
                }
                None => self.flow_event(now, SessionId(call.0), FlowEvent::QueueGaveUp),
            },
            AcdOutput::PauseChanged { agent, from, to } => {
                let name = |pause: Option<crate::acd::PauseReason>| {
                    pause.map_or("available", crate::acd::PauseReason::as_str)
                };
                let reason = match to {
                    Some(crate::acd::PauseReason::NoAnswer) => "missed_rings",
                    _ => self.pause_changed_by.unwrap_or("supervisor"),
                };
                info!(%agent, from = name(from), to = name(to), reason, "agent state changed");
                let change = crate::cdr::AgentStateChange {
                    agent: agent.0,
                    from: name(from).to_owned(),
                    to: name(to).to_owned(),
                    reason: reason.to_owned(),
                    at: chrono::DateTime::<chrono::Utc>::from(self.wall(now)),
                };
                self.push(super::Output::AgentState(change));
            }
        }
    }

    /// A supervisor (API, `by` = "supervisor") or the agent (`by` = "feature_code") pauses or
    /// resumes an agent; false when no group has that agent.
    pub fn set_agent_pause(
        &mut self,
        now: Instant,
        agent: &str,
        pause: Option<crate::acd::PauseReason>,
        by: &'static str,
    ) -> bool {
        let Some(acd) = self.acd.as_mut() else {
            return false;
        };
        let id = if agent.contains(':') {
            AgentId(agent.to_owned())
        } else {
            AgentId::user(agent)
        };
        let accepted = acd
            .handle_input(AcdInput::SetPause { agent: id, pause }, now)
            .is_ok();
        // The audit row says who made the change.
        self.pause_changed_by = Some(by);
        self.route(now);
        self.pause_changed_by = None;
        accepted
    }

    /// Where the ACD's chosen agent is: a static URI, or the user's registered contact.
    fn ring_for_acd(&mut self, now: Instant, caller: SessionId, agent: AgentId) {
        let waiting = self
            .calls
            .get(&caller)
            .filter(|call| call.state != super::caller::CallState::Ending);
        let Some((queued, caller_number)) =
            waiting.and_then(|call| Some((call.queue.clone()?, call.facts.caller.clone())))
        else {
            let call = CallId(caller.0);
            return self.report_to_acd(now, AcdInput::CallerLeft { call });
        };
        let ring = AgentCall {
            target: String::new(),
            media_encryption: self.group_media_encryption(&queued.group),
            display: queued.display,
            language: queued.language,
            path: queued.path,
            caller_number,
        };
        self.ring_chosen_agent(now, caller, agent, ring);
    }

    /// Rings the agent the ACD chose, at its static URI or registered contact.
    pub(super) fn ring_chosen_agent(
        &mut self,
        now: Instant,
        caller: SessionId,
        agent: AgentId,
        mut ring: AgentCall,
    ) {
        let target = match agent.0.strip_prefix("user:") {
            Some(user) => self.ua.registered_contact(user, now),
            None => super::agent::agent_peer(&agent.0).map(|peer| (agent.0.clone(), peer)),
        };
        let Some((target, peer)) = target else {
            warn!(%agent, "agent has no reachable address");
            return self.agent_unreachable(now, caller, agent);
        };
        ring.target = target;
        self.ring_agent(now, caller, agent, ring, peer);
    }
}
