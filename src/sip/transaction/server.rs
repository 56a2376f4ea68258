//! Server transaction state machines: INVITE (RFC 3261 §17.2.1 with the RFC 6026 "Accepted"
//! state) and non-INVITE (§17.2.2).

use bytes::Bytes;
use rsip::{Header, Headers, Request, Response, StatusCode, Version};
use tracing::debug;

use super::key::to_tag;
use super::machine::{Ctx, Next};
use super::timer::Slot;
use super::{is_provisional, is_success, TxError, TxState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InviteServerState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

pub(super) struct InviteServer {
    state: InviteServerState,
    /// Last provisional (Proceeding) or the final (Completed), resent on INVITE retransmits;
    /// empty once nothing is resent (Confirmed, Accepted), so a call does not keep its 2xx.
    last_response: Bytes,
    /// Current Timer G interval.
    retransmit_interval: std::time::Duration,
    /// RFC 2543 matching: To tag of the INVITE and of our final response.
    invite_to_tag: Option<String>,
    final_to_tag: Option<String>,
}

impl InviteServer {
    /// Enter Proceeding and answer 100 Trying right away (§17.2.1 lets us skip the 200 ms wait).
    pub(super) fn start(request: &Request, ctx: &mut Ctx) -> Self {
        let trying = Bytes::from(trying_response(request).to_string());
        ctx.transmit(&trying);
        Self {
            state: InviteServerState::Proceeding,
            last_response: trying,
            retransmit_interval: ctx.config().t1,
            invite_to_tag: to_tag(request),
            final_to_tag: None,
        }
    }

    pub(super) fn state(&self) -> TxState {
        match self.state {
            InviteServerState::Proceeding => TxState::Proceeding,
            InviteServerState::Completed => TxState::Completed,
            InviteServerState::Confirmed => TxState::Confirmed,
            InviteServerState::Accepted => TxState::Accepted,
        }
    }

    pub(super) fn invite_to_tag_is(&self, tag: &Option<String>) -> bool {
        self.invite_to_tag == *tag
    }

    pub(super) fn final_to_tag_is(&self, tag: &Option<String>) -> bool {
        self.final_to_tag == *tag
    }

    pub(super) fn on_retransmission(&mut self, ctx: &mut Ctx) {
        match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed => {
                ctx.transmit(&self.last_response);
            }
            // RFC 6026 §8.5: absorbed in Accepted; the TU already has the INVITE.
            InviteServerState::Confirmed | InviteServerState::Accepted => {}
        }
    }

    /// `None`: the ACK is not this transaction's business and goes to the TU.
    pub(super) fn on_ack(&mut self, ctx: &mut Ctx) -> Option<Next> {
        match self.state {
            InviteServerState::Completed => {
                self.state = InviteServerState::Confirmed;
                self.last_response = Bytes::new();
                ctx.disarm(Slot::Retransmit);
                if ctx.reliable() {
                    return Some(Next::Terminate); // Timer I = 0
                }
                ctx.arm(Slot::Lifetime, ctx.config().t4); // Timer I
                Some(Next::Continue)
            }
            InviteServerState::Confirmed => Some(Next::Continue),
            InviteServerState::Accepted => None,
            InviteServerState::Proceeding => {
                debug!(key = %ctx.key, "ACK before any final response; dropped");
                Some(Next::Continue)
            }
        }
    }

    pub(super) fn respond(
        &mut self,
        response: &Response,
        status: u16,
        ctx: &mut Ctx,
    ) -> Result<Next, TxError> {
        match self.state {
            InviteServerState::Proceeding => {
                let bytes = Bytes::from(response.to_string());
                ctx.transmit(&bytes);
                if is_provisional(status) {
                    self.last_response = bytes;
                    return Ok(Next::Continue);
                }
                self.final_to_tag = to_tag(response);
                let config = ctx.config();
                if is_success(status) {
                    self.last_response = Bytes::new();
                    self.state = InviteServerState::Accepted;
                    ctx.arm(Slot::Lifetime, config.transaction_timeout()); // Timer L
                } else {
                    self.last_response = bytes;
                    self.state = InviteServerState::Completed;
                    if !ctx.reliable() {
                        self.retransmit_interval = config.t1;
                        ctx.arm(Slot::Retransmit, config.t1); // Timer G
                    }
                    ctx.arm(Slot::Lifetime, config.transaction_timeout()); // Timer H
                }
                Ok(Next::Continue)
            }
            // The UAS core retransmits its 2xx through us while we are Accepted (RFC 6026 §8.5).
            InviteServerState::Accepted if is_success(status) => {
                ctx.transmit(&Bytes::from(response.to_string()));
                Ok(Next::Continue)
            }
            _ => Err(TxError::InvalidState {
                key: ctx.key.clone(),
                state: self.state(),
                action: response_action(status),
            }),
        }
    }

    pub(super) fn on_timer(&mut self, slot: Slot, ctx: &mut Ctx) -> Next {
        match (self.state, slot) {
            (InviteServerState::Completed, Slot::Retransmit) => {
                ctx.transmit(&self.last_response);
                self.retransmit_interval = (self.retransmit_interval * 2).min(ctx.config().t2);
                ctx.arm(Slot::Retransmit, self.retransmit_interval);
                Next::Continue
            }
            (InviteServerState::Completed, Slot::Lifetime) => {
                ctx.emit(super::TxEvent::AckTimeout {
                    key: ctx.key.clone(),
                });
                Next::Terminate
            }
            (InviteServerState::Confirmed | InviteServerState::Accepted, Slot::Lifetime) => {
                Next::Terminate
            }
            _ => Next::Continue,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
}

pub(super) struct NonInviteServer {
    state: NonInviteServerState,
    last_response: Option<Bytes>,
}

impl NonInviteServer {
    /// Enter Trying. The TU is given 64·T1 to answer, after which the client has given up.
    pub(super) fn start(ctx: &mut Ctx) -> Self {
        ctx.arm(Slot::Lifetime, ctx.config().transaction_timeout());
        Self {
            state: NonInviteServerState::Trying,
            last_response: None,
        }
    }

    pub(super) fn state(&self) -> TxState {
        match self.state {
            NonInviteServerState::Trying => TxState::Trying,
            NonInviteServerState::Proceeding => TxState::Proceeding,
            NonInviteServerState::Completed => TxState::Completed,
        }
    }

    pub(super) fn on_retransmission(&mut self, ctx: &mut Ctx) {
        if let Some(last) = &self.last_response {
            ctx.transmit(last);
        }
    }

    pub(super) fn respond(
        &mut self,
        response: &Response,
        status: u16,
        ctx: &mut Ctx,
    ) -> Result<Next, TxError> {
        if self.state == NonInviteServerState::Completed {
            return Err(TxError::InvalidState {
                key: ctx.key.clone(),
                state: self.state(),
                action: response_action(status),
            });
        }
        let bytes = Bytes::from(response.to_string());
        ctx.transmit(&bytes);
        self.last_response = Some(bytes);
        if is_provisional(status) {
            self.state = NonInviteServerState::Proceeding;
            return Ok(Next::Continue);
        }
        self.state = NonInviteServerState::Completed;
        if ctx.reliable() {
            return Ok(Next::Terminate); // Timer J = 0
        }
        ctx.arm(Slot::Lifetime, ctx.config().transaction_timeout()); // Timer J
        Ok(Next::Continue)
    }

    pub(super) fn on_timer(&mut self, slot: Slot, ctx: &mut Ctx) -> Next {
        if slot != Slot::Lifetime {
            return Next::Continue;
        }
        if self.state != NonInviteServerState::Completed {
            debug!(key = %ctx.key, "TU never sent a final response; transaction dropped");
        }
        Next::Terminate
    }
}

fn response_action(status: u16) -> &'static str {
    match status {
        100..=199 => "send a provisional response",
        200..=299 => "send a 2xx response",
        _ => "send a non-2xx final response",
    }
}

/// 100 Trying per §8.2.6: Via, From, To, Call-ID, CSeq and Timestamp copied; no To tag added.
fn trying_response(request: &Request) -> Response {
    let mut headers: Headers = request
        .headers
        .iter()
        .filter(|header| {
            matches!(
                header,
                Header::Via(_)
                    | Header::From(_)
                    | Header::To(_)
                    | Header::CallId(_)
                    | Header::CSeq(_)
                    | Header::Timestamp(_)
            )
        })
        .cloned()
        .collect::<Vec<_>>()
        .into();
    headers.push(Header::ContentLength(Default::default()));
    Response {
        status_code: StatusCode::Trying,
        version: Version::V2,
        headers,
        body: Vec::new(),
    }
}
