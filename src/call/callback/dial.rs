//! A callback's dial: the agent who answered, the claim, the resident's line placed
//! through the trunk (a caller's call of its own), the intro and the bridge, and what a
//! resident not reached leads to (the agent freed at once, a retry or the end).

use std::collections::HashMap;
use std::time::Instant;

use tracing::{info, warn};

use super::{CallbackFlow, CallbackRequest, RequestState};
use crate::acd::{AcdInput, CallId};
use crate::call::caller::{Call, CallState, MediaState};
use crate::call::record::{CallFacts, EndReason};
use crate::call::Switchboard;
use crate::cdr::CallbackStatus;
use crate::ivr::{FlowSummary, PromptRef};
use crate::sdp::Negotiated;
use crate::sip::ua::{OutgoingCall, SessionId};

impl Switchboard {
    /// The agent answered a callback: the resident is dialled through the group's trunk, on
    /// a line that from now on carries the ACD entry (and the agent's call).
    pub(in crate::call) fn callback_agent_answered(
        &mut self,
        now: Instant,
        leg_id: SessionId,
        negotiated: Option<Negotiated>,
    ) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (call, agent) = (CallId(leg.caller.0), leg.agent.clone());
        let request = self.callbacks.requests.get(&call.0).cloned();
        let accepted = request.is_some()
            && negotiated.is_some()
            && self.acd.as_mut().is_some_and(|acd| {
                let input = AcdInput::AgentAnswered {
                    call,
                    agent: agent.clone(),
                };
                acd.handle_input(input, now).is_ok()
            });
        let (Some(request), Some(negotiated), true) = (request, negotiated, accepted) else {
            return self.hang_up_leg(now, leg_id);
        };
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.media_started = true;
            let local_port = leg.rtp_port;
            let session = crate::call::caller::media_session(&negotiated, None);
            self.media(crate::media::leg::MediaCommand::Start {
                leg: crate::call::leg_of(leg_id),
                local_port,
                session,
            });
        }
        if let Some(request) = self.callbacks.requests.get_mut(&call.0) {
            request.state = RequestState::Claiming(leg_id);
        }
        self.push(crate::call::Output::ClaimCallback {
            request: call.0,
            id: request.original.clone(),
            attempt: request.attempts + 1,
        });
    }

    /// The store answered the claim: dial (granted), or leave the request to the node that has
    /// it (the agent is freed at once). An agent who hung up meanwhile sends the request back
    /// to its queue.
    pub(in crate::call) fn callback_claimed(
        &mut self,
        now: Instant,
        request_id: u64,
        granted: bool,
    ) {
        let call = CallId(request_id);
        let Some(request) = self.callbacks.requests.get(&request_id).cloned() else {
            return;
        };
        let RequestState::Claiming(leg_id) = request.state else {
            return;
        };
        if !granted {
            info!(request = request_id, id = %request.original, "callback dialled by another node: left to it");
            self.report_to_acd(now, AcdInput::CallbackNotReached { call });
            self.hang_up_leg(now, leg_id);
            self.callbacks.requests.remove(&request_id);
            return;
        }
        if !self.legs.contains_key(&leg_id) {
            if let Some(request) = self.callbacks.requests.get_mut(&request_id) {
                request.state = RequestState::Waiting { until: now };
            }
            return self.write_callback(now, request_id, CallbackStatus::Pending);
        }
        let Some(resident) = self.dial_resident(now, call.0, &request) else {
            // Not even dialled (no trunk, no port): the agent is free, the request retries.
            self.report_to_acd(now, AcdInput::CallbackNotReached { call });
            self.hang_up_leg(now, leg_id);
            return self.callback_attempt_failed(now, call.0);
        };
        self.report_to_acd(
            now,
            AcdInput::CallbackDialled {
                call,
                caller: CallId(resident.0),
            },
        );
        let agent = self.legs.get_mut(&leg_id).map(|leg| {
            leg.caller = resident;
            leg.span
                .in_scope(|| info!("agent answered the callback: dialling the resident"));
            leg.agent.0.clone()
        });
        if let Some(line) = self.calls.get_mut(&resident) {
            line.agent_legs.push(leg_id);
            line.facts.agent = agent;
        }
        self.write_callback(now, request_id, CallbackStatus::Dialling);
    }

    /// Places the INVITE to the resident; the line is a caller's call from the start.
    fn dial_resident(
        &mut self,
        now: Instant,
        request_id: u64,
        request: &CallbackRequest,
    ) -> Option<SessionId> {
        let trunk = self
            .acd
            .as_ref()
            .and_then(|acd| acd.routing().groups.get(&request.group))
            .and_then(|group| group.callback.as_ref())
            .map(|callback| callback.trunk.value.clone())?;
        let target = match self.trunk_call_target(&trunk, &request.number) {
            Ok(target) => target,
            Err((status, reason)) => {
                warn!(%trunk, status, %reason, "callback cannot be dialled");
                return None;
            }
        };
        let rtp_port = self.ports.allocate()?;
        let outgoing = OutgoingCall {
            target: target.uri,
            peer: target.peer,
            display: "19118".into(),
            from_user: target.caller_id,
            headers: Vec::new(),
            rtp_port,
            credentials: target.credentials,
            media_encryption: target.media_encryption,
        };
        let resident = match self.ua.invite(now, outgoing) {
            Ok(resident) => resident,
            Err(error) => {
                warn!(%error, "callback INVITE not sent");
                self.ports.release(rtp_port);
                return None;
            }
        };
        let attempt = request.attempts + 1;
        let span = self.ua.span(resident);
        span.in_scope(|| info!(number = %request.number, %trunk, attempt, callback_of = %request.original, "calling the resident back"));
        let wall = self.wall(now);
        let facts = CallFacts {
            caller: request.number.clone(),
            trunk,
            arrived: Some(wall),
            callback_of: Some(request.original.clone()),
            ..CallFacts::default()
        };
        let call_id = self.ua.call_id(resident).unwrap_or_default().to_owned();
        self.record_start(&call_id, &facts);
        let mut intro = vec![PromptRef::new(
            &request.language,
            crate::ivr::menu::prompts::CALLBACK_INTRO,
        )];
        let announce = self
            .acd
            .as_ref()
            .and_then(|acd| acd.routing().groups.get(&request.group))
            .and_then(|group| group.announce.clone());
        intro.extend(announce.map(|name| PromptRef::new(&request.language, &name.value)));
        let requested = request.requested;
        let flow = CallbackFlow {
            intro,
            summary: FlowSummary {
                language: Some(request.language.clone()),
                group: Some(request.group.clone()),
                // The callback's wait runs from the request to the resident's answer.
                group_chosen: Some(requested),
                queue_entered: Some(requested),
                path: format!("{} > callback attempt {attempt}", request.path),
                ..FlowSummary::default()
            },
        };
        self.calls.insert(
            resident,
            Box::new(Call {
                span,
                call_id,
                state: CallState::Ringing,
                rtp_port,
                media: MediaState::NotStarted,
                end_reason: None,
                flow: Box::new(flow),
                flow_timers: HashMap::new(),
                transferring: false,
                dtmf_source: None,
                play_generation: 0,
                agent_legs: Vec::new(),
                bridged: false,
                queue: Some(crate::ivr::QueueCall {
                    group: request.group.clone(),
                    display: request.display.clone(),
                    language: request.language.clone(),
                    path: request.path.clone(),
                }),
                facts,
                source: std::net::IpAddr::from([0, 0, 0, 0]),
                trunk_line: None,
                rtp: None,
            }),
        );
        self.callbacks.lines.insert(resident, request_id);
        if let Some(request) = self.callbacks.requests.get_mut(&request_id) {
            request.attempts = attempt;
            request.state = RequestState::OnLine(resident);
        }
        Some(resident)
    }

    /// Whether `session` is a resident's line being called back.
    pub(in crate::call) fn is_callback_line(&self, session: SessionId) -> bool {
        self.callbacks.lines.contains_key(&session)
    }

    /// The resident answered: their media starts and the intro plays (the flow's start).
    pub(in crate::call) fn callback_line_answered(
        &mut self,
        now: Instant,
        resident: SessionId,
        negotiated: Option<Negotiated>,
    ) {
        let Some(negotiated) = negotiated else {
            return self.hang_up(now, resident, EndReason::Rejected(488));
        };
        if let Some(line) = self.calls.get_mut(&resident) {
            line.state = CallState::Answered;
            line.span
                .in_scope(|| info!("the resident answered: intro, then the agent"));
        }
        self.timers.start(
            now + self.config.max_call_duration,
            crate::call::timers::Timer::MaxDuration(resident),
        );
        self.media_agreed(now, resident, &negotiated);
    }

    /// The intro ended on a resident's line not yet bridged: the agent is bridged now. True
    /// when that was the case.
    pub(in crate::call) fn callback_intro_finished(
        &mut self,
        now: Instant,
        resident: SessionId,
    ) -> bool {
        if !self.is_callback_line(resident) {
            return false;
        }
        let wall = self.wall(now);
        let Some(line) = self.calls.get_mut(&resident) else {
            return false;
        };
        if line.bridged || line.state != CallState::Answered {
            return false;
        }
        let Some(&agent_leg) = line.agent_legs.first() else {
            return false;
        };
        line.bridged = true;
        line.facts.agent_answered = Some(wall);
        line.span
            .in_scope(|| info!("callback connected: bridging the resident and the agent"));
        self.media(crate::media::leg::MediaCommand::Bridge {
            caller: crate::call::leg_of(resident),
            agent: crate::call::leg_of(agent_leg),
        });
        if let Some(request) = self.callbacks.lines.remove(&resident) {
            self.write_callback(now, request, CallbackStatus::Connected);
            self.callbacks.requests.remove(&request);
        }
        true
    }

    /// The resident's line failed before an answer (busy, no answer, refused): the agent is
    /// freed at once and the request tries again later.
    pub(in crate::call) fn callback_line_failed(
        &mut self,
        now: Instant,
        resident: SessionId,
        status: u16,
    ) {
        let Some(request) = self.callbacks.lines.remove(&resident) else {
            return;
        };
        self.set_end_reason(resident, EndReason::NotReached(status));
        let legs = self
            .calls
            .get_mut(&resident)
            .map(|line| std::mem::take(&mut line.agent_legs))
            .unwrap_or_default();
        self.report_to_acd(
            now,
            AcdInput::CallbackNotReached {
                call: CallId(resident.0),
            },
        );
        for leg in legs {
            self.hang_up_leg(now, leg);
        }
        if let Some(line) = self.calls.get(&resident) {
            line.span
                .in_scope(|| info!(status, "the resident was not reached"));
        }
        self.callback_attempt_failed(now, request);
    }

    /// Another try after `retry_after`, or the request fails after `max_attempts` dials.
    fn callback_attempt_failed(&mut self, now: Instant, request_id: u64) {
        let settings = self
            .callbacks
            .requests
            .get(&request_id)
            .and_then(|request| {
                let acd = self.acd.as_ref()?;
                let callback = acd
                    .routing()
                    .groups
                    .get(&request.group)?
                    .callback
                    .as_ref()?;
                Some((callback.max_attempts, callback.retry_after))
            });
        let Some(request) = self.callbacks.requests.get_mut(&request_id) else {
            return;
        };
        match settings {
            Some((max_attempts, retry_after)) if request.attempts < max_attempts => {
                info!(request = request_id, attempts = request.attempts, retry_in = ?retry_after, "callback: trying again later");
                request.state = RequestState::Waiting {
                    until: now + retry_after,
                };
                self.write_callback(now, request_id, CallbackStatus::Pending);
            }
            _ => {
                warn!(request = request_id, attempts = request.attempts, number = %request.number, "callback failed: the resident was not reached");
                self.write_callback(now, request_id, CallbackStatus::Failed);
                self.callbacks.requests.remove(&request_id);
            }
        }
    }
}
