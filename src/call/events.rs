//! The switchboard's reactions to what the user agent and the media driver report: each SIP
//! or media event goes to the caller, agent leg, placed call or callback line it concerns.

use std::time::Instant;

use super::record::EndReason;
use super::{session_of, Switchboard};
use crate::ivr::FlowEvent;
use crate::media::leg::{LegId, MediaEvent, RtpReceived};
use crate::sip::ua::UaEvent;

impl Switchboard {
    pub(super) fn ua_event(&mut self, now: Instant, event: UaEvent) {
        match event {
            UaEvent::Incoming {
                session,
                from,
                invite,
            } => self.incoming(now, session, from, *invite),
            UaEvent::Rejected {
                invite,
                from,
                status,
            } => self.record_rejected(now, &invite, from, status),
            UaEvent::Media {
                session,
                negotiated,
            } if self.is_prompt_call(session) => {
                self.prompt_call_answered(now, session, Some(negotiated))
            }
            UaEvent::Media {
                session,
                negotiated,
            } => self.media_agreed(now, session, &negotiated),
            UaEvent::Answered {
                session,
                negotiated,
            } if self.is_prompt_call(session) => {
                self.prompt_call_answered(now, session, negotiated)
            }
            UaEvent::Answered {
                session,
                negotiated,
            } if self.is_callback_line(session) => {
                self.callback_line_answered(now, session, negotiated)
            }
            UaEvent::Answered {
                session,
                negotiated,
            } => self.leg_answered(now, session, negotiated),
            UaEvent::Failed { session, status } if self.is_prompt_call(session) => {
                self.prompt_call_failed(session, status)
            }
            UaEvent::Failed { session, status } if self.is_callback_line(session) => {
                self.callback_line_failed(now, session, status)
            }
            UaEvent::Failed { session, status } => self.leg_failed(now, session, status),
            UaEvent::Digit { session, digit } => {
                self.digit(now, session, digit, crate::media::dtmf::DtmfSource::SipInfo)
            }
            UaEvent::HungUp { session } => self.far_end_hung_up(now, session),
            UaEvent::Cancelled { session } => {
                self.set_end_reason(session, EndReason::CallerCancelled)
            }
            UaEvent::AckTimeout { session } => {
                let caller = self.legs.get(&session).map_or(session, |leg| leg.caller);
                self.hang_up(now, caller, EndReason::AckTimeout);
            }
            UaEvent::AnswerUnusable { session } => {
                let caller = self.legs.get(&session).map_or(session, |leg| leg.caller);
                self.hang_up(now, caller, EndReason::Rejected(488))
            }
            UaEvent::Transfer { session, outcome } => self.transfer_ended(now, session, outcome),
            UaEvent::Closed { session } if self.is_prompt_call(session) => {
                self.prompt_call_closed(now, session)
            }
            UaEvent::Closed { session } => {
                if self.calls.contains_key(&session) {
                    self.finish(now, session);
                } else {
                    self.remove_leg(session);
                }
            }
            UaEvent::Registration { user, registered } => {
                let input = crate::acd::AcdInput::Online {
                    agent: crate::acd::AgentId::user(&user),
                    online: registered,
                };
                self.report_to_acd(now, input);
            }
            UaEvent::TransferRequested { session, target } => {
                self.agent_transfer_requested(now, session, &target)
            }
            UaEvent::RequestAnswered { request, response } => {
                if !self.probe_answered(now, request, true) {
                    self.trunk_response(now, request, Some(*response))
                }
            }
            UaEvent::RequestFailed { request } => {
                if !self.probe_answered(now, request, false) {
                    self.trunk_response(now, request, None)
                }
            }
        }
    }

    pub(super) fn media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::Inactive { leg } | MediaEvent::Failed { leg, .. }
                if self.is_prompt_call(session_of(leg)) =>
            {
                self.prompt_call_done(now, session_of(leg))
            }
            MediaEvent::Inactive { leg } => {
                self.hang_up(now, session_of(leg), EndReason::RtpTimeout)
            }
            MediaEvent::Failed { leg, reason } => {
                tracing::warn!(%leg, %reason, "media failed");
                let id = session_of(leg);
                let caller = self.legs.get(&id).map_or(id, |leg| leg.caller);
                self.hang_up(now, caller, EndReason::MediaFailed);
            }
            MediaEvent::Digit { leg, digit, source } => {
                self.digit(now, session_of(leg), digit, source)
            }
            MediaEvent::PlaybackFinished { leg, .. } if self.is_prompt_call(session_of(leg)) => {
                self.prompt_call_done(now, session_of(leg))
            }
            MediaEvent::PlaybackFinished { leg, generation }
                if self.held_by_agent(session_of(leg)) =>
            {
                let id = session_of(leg);
                if self.calls.get(&id).map(|c| c.play_generation) == Some(generation) {
                    self.play_hold_music(id);
                }
            }
            MediaEvent::PlaybackFinished { leg, generation }
                if self.is_callback_line(session_of(leg))
                    && self.calls.get(&session_of(leg)).map(|c| c.play_generation)
                        == Some(generation) =>
            {
                self.callback_intro_finished(now, session_of(leg));
            }
            MediaEvent::PlaybackFinished { leg, generation } => {
                let id = session_of(leg);
                // An end that crossed a newer Play or a StopPlayback is not this flow's news.
                if self.calls.get(&id).map(|c| c.play_generation) == Some(generation) {
                    self.flow_event(now, id, FlowEvent::PlaybackFinished);
                }
            }
            MediaEvent::Stopped { leg, rtp } => self.media_stopped(leg, rtp),
        }
    }

    /// The caller's receive statistics reach its record, wherever the call has got to.
    fn media_stopped(&mut self, leg: LegId, rtp: RtpReceived) {
        if let Some(call) = self.calls.get_mut(&session_of(leg)) {
            call.rtp = Some(rtp);
        } else if let Some(waiting) = self.awaiting_rtp.remove(&leg) {
            self.emit_record(waiting.record, waiting.events, waiting.reason, rtp);
        }
    }
}
