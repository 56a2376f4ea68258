//! A resident's call from arrival to its record: accepting it (RTP port, flow), answering
//! (at once or after the ring delay), starting and updating its media, and ending it — by
//! either side — with the agents and queue place released and the record written.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use rsip::headers::UntypedHeader;
use tracing::{info, warn};

use super::record::{CallFacts, EndReason};
use super::timers::Timer;
use super::{leg_of, IncomingCall, Switchboard};
use crate::acd::{AcdInput, CallId};
use crate::ivr::{CallFlow, FlowEvent, QueueCall};
use crate::media::dtmf::DtmfSource;
use crate::media::leg::{MediaCommand, MediaSession, RtpReceived};
use crate::sdp::{Direction, MediaEncryption, Negotiated};
use crate::sip::message;
use crate::sip::transport::Peer;
use crate::sip::ua::{SessionId, TransferOutcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    /// Accepted, ringing until the answer delay is over.
    Ringing,
    Answered,
    /// We hung up and wait for the SIP session to close.
    Ending,
}

/// Where the caller's media leg is; a stopped leg's statistics come back from the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaState {
    NotStarted,
    Running,
    Stopped,
}

#[derive(Debug)]
pub(super) struct Call {
    pub(super) span: tracing::Span,
    pub(super) call_id: String,
    pub(super) state: CallState,
    pub(super) rtp_port: u16,
    pub(super) media: MediaState,
    pub(super) end_reason: Option<EndReason>,
    pub(super) flow: Box<dyn CallFlow>,
    /// Generation of each running flow timer: a restarted or cancelled timer's old firing is stale.
    pub(super) flow_timers: HashMap<u32, u64>,
    /// A REFER the flow asked for is under way.
    pub(super) transferring: bool,
    /// How the caller's keys arrived (first key decides), for the call record.
    pub(super) dtmf_source: Option<DtmfSource>,
    /// Bumped by every Play and StopPlayback sent to the media driver.
    pub(super) play_generation: u64,
    /// Agent legs ringing (several with ring-all) or answered for this caller.
    pub(super) agent_legs: Vec<SessionId>,
    /// RTP is relayed to the agent: keys go to the agent, not to the flow.
    pub(super) bridged: bool,
    /// The queue the flow put the caller in, with what agents' phones show.
    pub(super) queue: Option<QueueCall>,
    pub(super) facts: CallFacts,
    /// Where the INVITE came from (calls per source are limited).
    pub(super) source: std::net::IpAddr,
    /// The carrier trunk the call came through (its `max_calls` count).
    pub(super) trunk_line: Option<usize>,
    /// What the caller's media received, once it stopped.
    pub(super) rtp: Option<RtpReceived>,
}

impl Switchboard {
    /// A new INVITE the user agent found sound: an RTP port, a flow, then ring or answer.
    pub(super) fn incoming(
        &mut self,
        now: Instant,
        id: SessionId,
        from: Peer,
        invite: rsip::Request,
    ) {
        if self.feature_code(now, id, from, &invite) {
            return;
        }
        let trunk = match self.identify_trunk(from, &invite) {
            Ok(trunk) => trunk,
            Err(status) => {
                info!(status, "the trunk does not deliver the dialled number");
                self.ua.reject(now, id, status, vec![]);
                return self.record_rejected(now, &invite, from, status);
            }
        };
        if let Some(trunk) = &trunk {
            if !self.trunk_line_taken(now, trunk.line) {
                let retry = vec![rsip::headers::RetryAfter::new("5").into()];
                self.ua.reject(now, id, 503, retry);
                return self.record_rejected(now, &invite, from, 503);
            }
        }
        let trunk_line = trunk.as_ref().map(|trunk| trunk.line);
        if trunk_line.is_none() && self.source_at_its_limit(from) {
            warn!(
                "SECURITY event=max_calls_per_source src={} user=- calls={}",
                from.addr.ip(),
                self.max_calls_per_source.unwrap_or_default()
            );
            let retry = vec![rsip::headers::RetryAfter::new("30").into()];
            self.ua.reject(now, id, 503, retry);
            return self.record_rejected(now, &invite, from, 503);
        }
        let Some(rtp_port) = self.ports.allocate() else {
            warn!("no free RTP port: rejecting call");
            if let Some(line) = trunk_line {
                self.trunk_line_released(line);
            }
            let retry = vec![rsip::headers::RetryAfter::new("5").into()];
            self.ua.reject(now, id, 503, retry);
            return self.record_rejected(now, &invite, from, 503);
        };
        let encryption = trunk_line.map_or(MediaEncryption::Off, |line| {
            self.trunk_media_encryption(line)
        });
        if let Err(status) = self.ua.accept_with(now, id, rtp_port, encryption) {
            self.ports.release(rtp_port);
            if let Some(line) = trunk_line {
                self.trunk_line_released(line);
            }
            return self.record_rejected(now, &invite, from, status);
        }
        let header = |name| {
            message::header_value(&invite, name)
                .unwrap_or_default()
                .to_owned()
        };
        let call_id = message::call_id(&invite).unwrap_or_default().to_owned();
        let facts = self.call_facts(&invite, from, now);
        self.record_start(&call_id, &facts);
        let remembered_language = self.languages.recall(&facts.caller, self.wall(now));
        let span = self.ua.span(id);
        if let Some(language) = &remembered_language {
            span.in_scope(|| info!(%language, "returning caller: remembered language"));
        }
        let flow = (self.flows)(&IncomingCall {
            call_id: call_id.clone(),
            from: header("From"),
            to: header("To"),
            remembered_language,
            caller: facts.caller.clone(),
            numbers: self
                .trunks
                .rules
                .clone()
                .filter(|_| !self.trunks.lines.is_empty()),
            trunks: self.trunk_names(),
            pending_callback: self.pending_callback_of(&facts.caller),
        });
        self.calls.insert(
            id,
            Box::new(Call {
                span,
                call_id,
                state: CallState::Ringing,
                rtp_port,
                media: MediaState::NotStarted,
                end_reason: None,
                flow,
                flow_timers: HashMap::new(),
                transferring: false,
                dtmf_source: None,
                play_generation: 0,
                agent_legs: Vec::new(),
                bridged: false,
                queue: None,
                facts,
                source: from.addr.ip(),
                trunk_line,
                rtp: None,
            }),
        );
        if self.config.answer_delay.is_zero() {
            self.answer(now, id);
        } else {
            self.ua.ring(now, id);
            self.timers
                .start(now + self.config.answer_delay, Timer::Answer(id));
        }
    }

    fn answer(&mut self, now: Instant, id: SessionId) {
        let wall = self.wall(now);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state != CallState::Ringing {
            return;
        }
        call.state = CallState::Answered;
        call.facts.ivr_answered = Some(wall);
        self.timers
            .start(now + self.config.max_call_duration, Timer::MaxDuration(id));
        self.ua.answer(now, id);
    }

    pub(super) fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Answer(id) => self.answer(now, id),
            Timer::MaxDuration(id) => self.hang_up(now, id, EndReason::MaxDuration),
            Timer::Flow(id, timer, generation) => self.flow_timer(now, id, timer, generation),
        }
    }

    /// The user agent agreed media for a session: the caller's starts its flow, an agent's
    /// follows a hold or a new address.
    pub(super) fn media_agreed(&mut self, now: Instant, id: SessionId, negotiated: &Negotiated) {
        if let Some(leg) = self.legs.get(&id) {
            if leg.media_started {
                let session = media_session(negotiated, None);
                self.media(MediaCommand::Update {
                    leg: leg_of(id),
                    session,
                });
                let holds = matches!(
                    negotiated.remote_direction,
                    Direction::SendOnly | Direction::Inactive
                ) || negotiated.remote_rtp.is_none();
                self.agent_hold(id, holds);
            }
            return;
        }
        // Any hold (sendonly, inactive, c=0.0.0.0) may legitimately stop the caller's RTP: only
        // a full two-way stream is watched for the dead-caller timeout.
        let watched =
            negotiated.remote_direction == Direction::SendRecv && negotiated.remote_rtp.is_some();
        let session = media_session(negotiated, watched.then_some(self.config.rtp_timeout));
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match call.media {
            MediaState::Running => {
                return self.media(MediaCommand::Update {
                    leg: leg_of(id),
                    session,
                })
            }
            MediaState::Stopped => return,
            MediaState::NotStarted => call.media = MediaState::Running,
        }
        let local_port = call.rtp_port;
        self.media(MediaCommand::Start {
            leg: leg_of(id),
            local_port,
            session,
        });
        self.flow_event(now, id, FlowEvent::Started);
    }

    pub(super) fn digit(&mut self, now: Instant, id: SessionId, digit: char, source: DtmfSource) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.dtmf_source.get_or_insert(source);
        call.span.in_scope(|| info!(%digit, %source, "DTMF"));
        self.flow_event(now, id, FlowEvent::Digit(digit));
    }

    pub(super) fn set_end_reason(&mut self, id: SessionId, reason: EndReason) {
        if let Some(call) = self.calls.get_mut(&id) {
            if call.state != CallState::Ending {
                call.end_reason = Some(reason);
            }
        }
    }

    /// BYE from the caller, or from an agent (which ends the caller's call too).
    pub(super) fn far_end_hung_up(&mut self, now: Instant, id: SessionId) {
        if self.calls.contains_key(&id) {
            return self.set_end_reason(id, EndReason::CallerHungUp);
        }
        let Some(leg) = self.remove_leg(id) else {
            return;
        };
        leg.span.in_scope(|| info!("agent hung up"));
        let call = CallId(leg.caller.0);
        self.report_to_acd(now, AcdInput::CallEnded { call });
        self.hang_up(now, leg.caller, EndReason::AgentHungUp);
    }

    pub(super) fn transfer_ended(&mut self, now: Instant, id: SessionId, outcome: TransferOutcome) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !std::mem::take(&mut call.transferring) {
            return;
        }
        match outcome {
            TransferOutcome::Succeeded => self.hang_up(now, id, EndReason::Transferred),
            TransferOutcome::Failed(status) => {
                self.flow_event(now, id, FlowEvent::TransferFailed(status))
            }
        }
    }

    /// Ends a caller's call from our side; the record follows when the SIP session closes.
    pub(super) fn hang_up(&mut self, now: Instant, id: SessionId, reason: EndReason) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state == CallState::Ending {
            return;
        }
        call.end_reason.get_or_insert(reason);
        call.state = CallState::Ending;
        call.span
            .in_scope(|| info!(reason = reason.as_str(), "hanging up"));
        // The agent and the queue need not wait for the caller to answer our BYE (a dead
        // caller never does, and Timer F is 32 s).
        self.release_media_and_agents(now, id);
        self.ua.hang_up(now, id);
    }

    /// Stops the caller's media, hangs up its agent legs and takes it out of the ACD. Repeated
    /// at `finish` after our own hang-up, which changes nothing (the ACD ignores the second
    /// report).
    fn release_media_and_agents(&mut self, now: Instant, id: SessionId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let legs = call.agent_legs.clone();
        if call.media == MediaState::Running {
            call.media = MediaState::Stopped;
            self.media(MediaCommand::Stop { leg: leg_of(id) });
        }
        for leg in legs {
            self.hang_up_leg(now, leg);
        }
        self.report_to_acd(now, AcdInput::CallerLeft { call: CallId(id.0) });
    }

    /// Whether `from` has as many calls in progress as one address may (`max_calls_per_source`).
    fn source_at_its_limit(&self, from: Peer) -> bool {
        let Some(max) = self.max_calls_per_source else {
            return false;
        };
        let ip = from.addr.ip();
        if self.ua.is_limit_exempt(ip) {
            return false;
        }
        let calls = self
            .calls
            .values()
            .filter(|call| call.trunk_line.is_none() && call.source == ip)
            .count();
        calls >= max as usize
    }

    /// The caller's SIP session is over: everything released, the record written.
    pub(super) fn finish(&mut self, now: Instant, id: SessionId) {
        self.release_media_and_agents(now, id);
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        self.ports.release(call.rtp_port);
        if let Some(line) = call.trunk_line {
            self.trunk_line_released(line);
        }
        let reason = call.end_reason.unwrap_or(EndReason::CallerHungUp);
        let dtmf = call.dtmf_source.map(DtmfSource::as_str).unwrap_or("none");
        call.span
            .in_scope(|| info!(outcome = reason.as_str(), dtmf, "call ended"));
        let (record, events) = self.record_end(now, &call, reason);
        if let (Some(caller), Some(language), Some(chosen)) =
            (&record.caller, &record.language, record.language_chosen)
        {
            let wall = self.wall(now);
            self.languages
                .remember(caller, language, SystemTime::from(chosen), wall);
        }
        match call.rtp {
            Some(rtp) => self.emit_record(record, events, reason, rtp),
            // Its media stops now: the driver's answer brings the statistics.
            None if call.media == MediaState::Stopped => {
                let waiting = super::AwaitingRtp {
                    record,
                    events,
                    reason,
                };
                self.awaiting_rtp.insert(leg_of(id), waiting);
            }
            None => self.emit_record(record, events, reason, RtpReceived::default()),
        }
    }
}

/// The one mapping from agreed SDP to what the media driver runs, for callers and agents.
pub(super) fn media_session(
    negotiated: &Negotiated,
    inactivity_timeout: Option<std::time::Duration>,
) -> MediaSession {
    MediaSession {
        remote: negotiated.remote_rtp,
        codec: negotiated.codec,
        payload_type: negotiated.payload_type,
        telephone_event: negotiated.telephone_event,
        inactivity_timeout,
        srtp: negotiated.srtp.clone(),
    }
}
