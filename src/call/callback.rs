//! Queued callbacks on the switchboard. A waiting caller who asks to be called back leaves
//! the line; their ACD entry becomes the request and keeps its place. When it reaches an
//! agent, the agent's phone rings first (`[CB][LANG] Enterprise` and the resident's number);
//! once the agent answers, the resident is dialled through the group's trunk on a line of
//! its own, which is then a caller's call like any other: its record links to the original
//! call (`callback_of`), it hears "this is 19118 calling you back" and the group's name, then
//! the two are bridged. A resident not reached frees the agent at once and the request comes
//! back after `retry_after`, with its first arrival, up to `max_attempts` dials; outside the
//! group's hours (or its `window`) attempts wait. One request has at most one dial at a time:
//! its state says which line is being dialled.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::agent::AgentCall;
use super::caller::{Call, CallState, MediaState};
use super::record::{CallFacts, EndReason};
use super::Switchboard;
use crate::acd::{AcdInput, AgentId, CallId};
use crate::ivr::{CallFlow, FlowAction, FlowClock, FlowEvent, FlowSummary, PromptRef};
use crate::sdp::Negotiated;
use crate::sip::ua::{OutgoingCall, SessionId};

/// ACD call ids of callback requests start here, clear of the user agent's session ids.
pub(super) const CALLBACK_IDS: u64 = 1 << 48;
/// A request outside its window looks again this often.
const WINDOW_RECHECK: Duration = Duration::from_secs(60);

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
                    RequestState::OnLine(_) => ("calling", None),
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
        self.callbacks.requests.insert(
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
    }

    /// The ACD chose `agent` for a callback request: the agent's phone rings first.
    pub(super) fn ring_for_callback(&mut self, now: Instant, call: CallId, agent: AgentId) {
        let Some(request) = self.callbacks.requests.get(&call.0) else {
            return self.report_to_acd(now, AcdInput::CallerLeft { call });
        };
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

    /// The agent answered a callback: the resident is dialled through the group's trunk, on
    /// a line that from now on carries the ACD entry (and the agent's call).
    pub(super) fn callback_agent_answered(
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
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.caller = resident;
            leg.media_started = true;
            leg.span
                .in_scope(|| info!("agent answered the callback: dialling the resident"));
            let local_port = leg.rtp_port;
            let session = super::caller::media_session(&negotiated, None);
            self.media(crate::media::leg::MediaCommand::Start {
                leg: super::leg_of(leg_id),
                local_port,
                session,
            });
        }
        if let Some(line) = self.calls.get_mut(&resident) {
            line.agent_legs.push(leg_id);
            line.facts.agent = Some(agent.0);
        }
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
            Call {
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
            },
        );
        self.callbacks.lines.insert(resident, request_id);
        if let Some(request) = self.callbacks.requests.get_mut(&request_id) {
            request.attempts = attempt;
            request.state = RequestState::OnLine(resident);
        }
        Some(resident)
    }

    /// Whether `session` is a resident's line being called back.
    pub(super) fn is_callback_line(&self, session: SessionId) -> bool {
        self.callbacks.lines.contains_key(&session)
    }

    /// The resident answered: their media starts and the intro plays (the flow's start).
    pub(super) fn callback_line_answered(
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
            super::timers::Timer::MaxDuration(resident),
        );
        self.media_agreed(now, resident, &negotiated);
    }

    /// The intro ended on a resident's line not yet bridged: the agent is bridged now. True
    /// when that was the case.
    pub(super) fn callback_intro_finished(&mut self, now: Instant, resident: SessionId) -> bool {
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
            caller: super::leg_of(resident),
            agent: super::leg_of(agent_leg),
        });
        if let Some(request) = self.callbacks.lines.remove(&resident) {
            self.callbacks.requests.remove(&request);
        }
        true
    }

    /// The resident's line failed before an answer (busy, no answer, refused): the agent is
    /// freed at once and the request tries again later.
    pub(super) fn callback_line_failed(&mut self, now: Instant, resident: SessionId, status: u16) {
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
            }
            _ => {
                warn!(request = request_id, attempts = request.attempts, number = %request.number, "callback failed: the resident was not reached");
                self.callbacks.requests.remove(&request_id);
            }
        }
    }

    /// The ACD dropped a request (its group left the routing): it ends unserved.
    pub(super) fn callback_dropped(&mut self, call: CallId) {
        if let Some(request) = self.callbacks.requests.remove(&call.0) {
            warn!(request = call.0, group = %request.group, "callback dropped: its group is gone");
        }
    }

    /// Requests whose wait is over enter their queue again with their first arrival, when
    /// their window is open; otherwise they look again a minute later.
    pub(super) fn callbacks_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .callbacks
            .requests
            .iter()
            .filter(|(_, request)| {
                matches!(request.state, RequestState::Waiting { until } if until <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        let wall = self.wall(now);
        for id in due {
            let Some(request) = self.callbacks.requests.get(&id).cloned() else {
                continue;
            };
            if !self.callback_window_open(&request.group, wall) {
                if let Some(request) = self.callbacks.requests.get_mut(&id) {
                    request.state = RequestState::Waiting {
                        until: now + WINDOW_RECHECK,
                    };
                }
                continue;
            }
            let input = AcdInput::EnqueueCallback {
                call: CallId(id),
                group: request.group.clone(),
                language: request.language.clone(),
                arrived: request.arrived,
            };
            let entered = self
                .acd
                .as_mut()
                .is_some_and(|acd| acd.handle_input(input, now).is_ok());
            if let Some(request) = self.callbacks.requests.get_mut(&id) {
                request.state = RequestState::Queued;
            }
            if !entered {
                self.callback_dropped(CallId(id));
            }
        }
    }

    pub(super) fn callbacks_poll_timeout(&self) -> Option<Instant> {
        self.callbacks
            .requests
            .values()
            .filter_map(|request| match request.state {
                RequestState::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Whether attempts may be made now: the callback's `window` hours, else the group's.
    fn callback_window_open(&self, group: &str, wall: SystemTime) -> bool {
        let Some(routing) = self.acd.as_ref().map(|acd| acd.routing()) else {
            return false;
        };
        let Some(group) = routing.groups.get(group) else {
            return false;
        };
        let hours = group
            .callback
            .as_ref()
            .and_then(|callback| callback.window.as_ref())
            .or(group.hours.as_ref());
        match hours.and_then(|hours| routing.hours.get(&hours.value)) {
            Some(hours) => hours
                .schedule
                .is_open(chrono::DateTime::<chrono::Utc>::from(wall)),
            None => true,
        }
    }
}
