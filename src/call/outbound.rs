//! Calls whose whole content is one prompt, then our hang-up: those the service places through
//! a carrier trunk (`hotline call --trunk NAME NUMBER`: the INVITE goes to the trunk's host with
//! its account's credentials for a digest challenge, and the driver hears how it went), and an
//! agent's feature-code call (`*21`...), answered with a confirmation.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::caller::media_session;
use super::{leg_of, Output, Switchboard};
use crate::media::leg::MediaCommand;
use crate::sdp::Negotiated;
use crate::sip::transport::Peer;
use crate::sip::ua::{OutgoingCall, SessionId};

/// A call to place through a trunk.
#[derive(Debug, Clone)]
pub struct TrunkCallRequest {
    /// Chosen by the driver; comes back with the result.
    pub request: u64,
    pub trunk: String,
    /// The number to dial, as the carrier expects it.
    pub number: String,
    pub language: String,
    pub prompt: String,
}

/// How a placed call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkCallResult {
    /// Answered; the prompt played (unless the far end hung up first) and the call ended.
    Answered {
        /// From the INVITE to the answer.
        answered_after: Duration,
        /// From the answer to the end.
        talked: Duration,
    },
    /// Not placed or not answered: the SIP status (or the service's reason) says why.
    Failed { status: u16, reason: String },
}

#[derive(Debug)]
pub(super) struct PromptCall {
    /// A trunk call's request number, reported back when it ends; None for a feature code.
    request: Option<u64>,
    rtp_port: u16,
    language: String,
    prompt: String,
    started: Instant,
    answered: Option<Instant>,
    media_started: bool,
}

impl Switchboard {
    /// Places a call through a trunk; [`Output::TrunkCallEnded`] tells how it went.
    pub(super) fn place_trunk_call(&mut self, now: Instant, call: TrunkCallRequest) {
        let target = match self.trunk_call_target(&call.trunk, &call.number) {
            Ok(target) => target,
            Err((status, reason)) => {
                return self.report_placed_call_failure(call.request, status, reason)
            }
        };
        let Some(rtp_port) = self.ports.allocate() else {
            return self.report_placed_call_failure(call.request, 503, "no free RTP port".into());
        };
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
        match self.ua.invite(now, outgoing) {
            Ok(id) => {
                self.ua
                    .span(id)
                    .in_scope(|| info!(trunk = %call.trunk, number = %call.number, "placing a call through the trunk"));
                self.prompt_calls.insert(
                    id,
                    PromptCall {
                        request: Some(call.request),
                        rtp_port,
                        language: call.language,
                        prompt: call.prompt,
                        started: now,
                        answered: None,
                        media_started: false,
                    },
                );
            }
            Err(error) => {
                self.ports.release(rtp_port);
                self.report_placed_call_failure(call.request, 503, error.to_string());
            }
        }
    }

    /// Answers an agent's feature-code call; `prompt` confirms what it did.
    pub(super) fn answer_with_prompt(
        &mut self,
        now: Instant,
        id: SessionId,
        language: &str,
        prompt: &str,
    ) {
        let Some(rtp_port) = self.ports.allocate() else {
            return self.ua.reject(now, id, 503, vec![]);
        };
        if self.ua.accept(now, id, rtp_port).is_err() {
            return self.ports.release(rtp_port);
        }
        self.prompt_calls.insert(
            id,
            PromptCall {
                request: None,
                rtp_port,
                language: language.to_owned(),
                prompt: prompt.to_owned(),
                started: now,
                answered: None,
                media_started: false,
            },
        );
        self.ua.answer(now, id);
    }

    pub(super) fn is_prompt_call(&self, id: SessionId) -> bool {
        self.prompt_calls.contains_key(&id)
    }

    /// Answered (or, for a call we answered, media agreed): the prompt plays, and when it ends
    /// we hang up.
    pub(super) fn prompt_call_answered(
        &mut self,
        now: Instant,
        id: SessionId,
        negotiated: Option<Negotiated>,
    ) {
        let Some(placed) = self.prompt_calls.get_mut(&id) else {
            return;
        };
        if placed.media_started {
            return;
        }
        placed.answered = Some(now);
        let Some(negotiated) = negotiated else {
            warn!("the answer has no usable SDP: hanging up");
            return self.ua.hang_up(now, id);
        };
        placed.media_started = true;
        let local_port = placed.rtp_port;
        let prompt = self.prompts.get(&placed.language, &placed.prompt);
        self.media(MediaCommand::Start {
            leg: leg_of(id),
            local_port,
            session: media_session(&negotiated, None),
        });
        match prompt {
            Some(prompt) => self.media(MediaCommand::Play {
                leg: leg_of(id),
                prompts: vec![prompt],
                generation: 1,
            }),
            None => self.ua.hang_up(now, id),
        }
    }

    /// The prompt is over (or the media failed): we hang up.
    pub(super) fn prompt_call_done(&mut self, now: Instant, id: SessionId) {
        if self.prompt_calls.contains_key(&id) {
            self.ua.hang_up(now, id);
        }
    }

    /// The INVITE failed: nobody answered, or the carrier refused.
    pub(super) fn prompt_call_failed(&mut self, id: SessionId, status: u16) {
        if let Some(placed) = self.prompt_calls.remove(&id) {
            self.ports.release(placed.rtp_port);
            if let Some(request) = placed.request {
                self.report_placed_call_failure(request, status, reason_phrase(status));
            }
        }
    }

    /// The call is over on the wire.
    pub(super) fn prompt_call_closed(&mut self, now: Instant, id: SessionId) {
        let Some(placed) = self.prompt_calls.remove(&id) else {
            return;
        };
        if placed.media_started {
            self.media(MediaCommand::Stop { leg: leg_of(id) });
        }
        self.ports.release(placed.rtp_port);
        let result = match placed.answered {
            Some(answered) => TrunkCallResult::Answered {
                answered_after: answered.saturating_duration_since(placed.started),
                talked: now.saturating_duration_since(answered),
            },
            None => TrunkCallResult::Failed {
                status: 487,
                reason: "ended before an answer".into(),
            },
        };
        info!(?result, "prompt call ended");
        if let Some(request) = placed.request {
            self.push(Output::TrunkCallEnded { request, result });
        }
    }

    fn report_placed_call_failure(&mut self, request: u64, status: u16, reason: String) {
        info!(status, %reason, "placed call failed");
        self.push(Output::TrunkCallEnded {
            request,
            result: TrunkCallResult::Failed { status, reason },
        });
    }
}

/// Where a trunk call goes and how it presents itself.
pub(super) struct TrunkTarget {
    pub(super) uri: String,
    pub(super) peer: Peer,
    pub(super) caller_id: Option<String>,
    pub(super) credentials: Option<crate::sip::ua::DigestCredentials>,
    pub(super) media_encryption: crate::sdp::MediaEncryption,
}

fn reason_phrase(status: u16) -> String {
    match status {
        401 | 407 => "the carrier refused our credentials".into(),
        403 => "forbidden by the carrier".into(),
        404 | 484 => "the number does not exist".into(),
        408 => "no answer from the carrier (timeout)".into(),
        480 | 487 => "not answered".into(),
        486 | 600 => "busy".into(),
        503 => "carrier unreachable".into(),
        603 => "declined".into(),
        status => format!("failed with {status}"),
    }
}
