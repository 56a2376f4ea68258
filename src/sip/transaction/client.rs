//! Client transaction state machines: INVITE (RFC 3261 §17.1.1 with the RFC 6026 "Accepted"
//! state) and non-INVITE (§17.1.2), plus the ACK (§17.1.1.3) and CANCEL (§9.1) they build.

use std::time::Duration;

use bytes::Bytes;
use rsip::{typed, Header, Headers, Method, Request, Response, Version};
use tracing::debug;

use super::machine::{Ctx, Next};
use super::timer::{Slot, TIMER_D_UNRELIABLE};
use super::{is_provisional, is_success, TxError, TxEvent, TxKey, TxState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InviteClientState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelProgress {
    NotRequested,
    /// The TU asked to cancel before any provisional; §9.1 says wait for one.
    AwaitingProvisional,
    Sent,
}

pub(super) struct InviteClient {
    state: InviteClientState,
    /// Kept to build the ACK and the CANCEL until the final response (then `None`: an
    /// answered call keeps no copy of its INVITE here for Timer M's 32 s). Boxed: inline it
    /// made every transaction in the layer's table this one's size.
    request: Option<Box<Request>>,
    cseq: u32,
    /// Resent by Timer A while Calling; empty after the first response.
    request_bytes: Bytes,
    /// Current Timer A interval.
    retransmit_interval: Duration,
    /// ACK for our non-2xx final, resent on every retransmission of that final.
    ack: Option<Bytes>,
    cancel: CancelProgress,
}

impl InviteClient {
    /// Send the INVITE and enter Calling (Timer A on UDP, Timer B).
    pub(super) fn start(request: Request, cseq: u32, ctx: &mut Ctx) -> Self {
        let request_bytes = Bytes::from(request.to_string());
        ctx.transmit(&request_bytes);
        let config = ctx.config();
        if !ctx.reliable() {
            ctx.arm(Slot::Retransmit, config.t1);
        }
        ctx.arm(Slot::Lifetime, config.transaction_timeout());
        Self {
            state: InviteClientState::Calling,
            request: Some(Box::new(request)),
            cseq,
            request_bytes,
            retransmit_interval: config.t1,
            ack: None,
            cancel: CancelProgress::NotRequested,
        }
    }

    pub(super) fn state(&self) -> TxState {
        match self.state {
            InviteClientState::Calling => TxState::Calling,
            InviteClientState::Proceeding => TxState::Proceeding,
            InviteClientState::Completed => TxState::Completed,
            InviteClientState::Accepted => TxState::Accepted,
        }
    }

    pub(super) fn on_response(&mut self, response: Response, status: u16, ctx: &mut Ctx) -> Next {
        match self.state {
            InviteClientState::Calling | InviteClientState::Proceeding => {}
            InviteClientState::Completed if !is_provisional(status) && !is_success(status) => {
                if let Some(ack) = &self.ack {
                    ctx.transmit(ack);
                }
                return Next::Continue;
            }
            InviteClientState::Accepted if is_success(status) => {
                ctx.emit(TxEvent::Response {
                    key: ctx.key.clone(),
                    response,
                });
                return Next::Continue;
            }
            InviteClientState::Completed | InviteClientState::Accepted => {
                debug!(key = %ctx.key, status, "late response absorbed");
                return Next::Continue;
            }
        }
        ctx.disarm(Slot::Retransmit);
        self.request_bytes = Bytes::new();
        let config = ctx.config();
        if is_provisional(status) {
            if self.state == InviteClientState::Calling {
                self.state = InviteClientState::Proceeding;
                ctx.disarm(Slot::Lifetime); // Timer B only runs in Calling
            }
            ctx.emit(TxEvent::Response {
                key: ctx.key.clone(),
                response,
            });
            if self.cancel == CancelProgress::AwaitingProvisional {
                return Next::SendCancel;
            }
            return Next::Continue;
        }
        let request = self.request.take();
        if is_success(status) {
            self.state = InviteClientState::Accepted;
            ctx.arm(Slot::Lifetime, config.transaction_timeout()); // Timer M
            ctx.emit(TxEvent::Response {
                key: ctx.key.clone(),
                response,
            });
            return Next::Continue;
        }
        if let Some(request) = request {
            let ack = Bytes::from(build_ack(&request, self.cseq, &response).to_string());
            ctx.transmit(&ack);
            self.ack = Some(ack);
        }
        self.state = InviteClientState::Completed;
        ctx.emit(TxEvent::Response {
            key: ctx.key.clone(),
            response,
        });
        if ctx.reliable() {
            return Next::Terminate; // Timer D = 0
        }
        ctx.arm(Slot::Lifetime, TIMER_D_UNRELIABLE);
        Next::Continue
    }

    pub(super) fn on_timer(&mut self, slot: Slot, ctx: &mut Ctx) -> Next {
        match (self.state, slot) {
            (InviteClientState::Calling, Slot::Retransmit) => {
                ctx.transmit(&self.request_bytes);
                // Timer A doubles without the T2 cap (§17.1.1.2).
                self.retransmit_interval *= 2;
                ctx.arm(Slot::Retransmit, self.retransmit_interval);
                Next::Continue
            }
            // Timer B in Calling, or no final 64·T1 after our CANCEL in Proceeding (§9.1).
            (InviteClientState::Calling | InviteClientState::Proceeding, Slot::Lifetime) => {
                ctx.emit(TxEvent::Timeout {
                    key: ctx.key.clone(),
                });
                Next::Terminate
            }
            // Timer D or Timer M.
            (InviteClientState::Completed | InviteClientState::Accepted, Slot::Lifetime) => {
                Next::Terminate
            }
            _ => Next::Continue,
        }
    }

    /// Record the TU's wish to cancel; `true` when the CANCEL must go out now.
    pub(super) fn request_cancel(&mut self, key: &TxKey) -> Result<bool, TxError> {
        match (self.state, self.cancel) {
            (InviteClientState::Completed | InviteClientState::Accepted, _) => {
                Err(TxError::InvalidState {
                    key: key.clone(),
                    state: self.state(),
                    action: "CANCEL",
                })
            }
            (_, CancelProgress::AwaitingProvisional | CancelProgress::Sent) => Ok(false),
            (InviteClientState::Calling, CancelProgress::NotRequested) => {
                self.cancel = CancelProgress::AwaitingProvisional;
                Ok(false)
            }
            (InviteClientState::Proceeding, CancelProgress::NotRequested) => Ok(true),
        }
    }

    /// Build the CANCEL and give the INVITE 64·T1 more to reach a final response; `None` once
    /// a final response came (nothing left to cancel).
    pub(super) fn begin_cancel(&mut self, ctx: &mut Ctx) -> Option<Request> {
        let cancel = build_cancel(self.request.as_deref()?, self.cseq);
        self.cancel = CancelProgress::Sent;
        ctx.arm(Slot::Lifetime, ctx.config().transaction_timeout());
        Some(cancel)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
}

pub(super) struct NonInviteClient {
    state: NonInviteClientState,
    request_bytes: Bytes,
    /// Current Timer E interval.
    retransmit_interval: Duration,
}

impl NonInviteClient {
    /// Send the request and enter Trying (Timer E on UDP, Timer F).
    pub(super) fn start(request: &Request, ctx: &mut Ctx) -> Self {
        let request_bytes = Bytes::from(request.to_string());
        ctx.transmit(&request_bytes);
        let config = ctx.config();
        if !ctx.reliable() {
            ctx.arm(Slot::Retransmit, config.t1);
        }
        ctx.arm(Slot::Lifetime, config.transaction_timeout());
        Self {
            state: NonInviteClientState::Trying,
            request_bytes,
            retransmit_interval: config.t1,
        }
    }

    pub(super) fn state(&self) -> TxState {
        match self.state {
            NonInviteClientState::Trying => TxState::Trying,
            NonInviteClientState::Proceeding => TxState::Proceeding,
            NonInviteClientState::Completed => TxState::Completed,
        }
    }

    pub(super) fn on_response(&mut self, response: Response, status: u16, ctx: &mut Ctx) -> Next {
        if self.state == NonInviteClientState::Completed {
            return Next::Continue; // retransmitted final, absorbed
        }
        ctx.emit(TxEvent::Response {
            key: ctx.key.clone(),
            response,
        });
        if is_provisional(status) {
            self.state = NonInviteClientState::Proceeding;
            return Next::Continue;
        }
        self.state = NonInviteClientState::Completed;
        ctx.disarm(Slot::Retransmit);
        if ctx.reliable() {
            return Next::Terminate; // Timer K = 0
        }
        ctx.arm(Slot::Lifetime, ctx.config().t4); // Timer K
        Next::Continue
    }

    pub(super) fn on_timer(&mut self, slot: Slot, ctx: &mut Ctx) -> Next {
        let config = ctx.config();
        match (self.state, slot) {
            (NonInviteClientState::Trying, Slot::Retransmit) => {
                ctx.transmit(&self.request_bytes);
                self.retransmit_interval = (self.retransmit_interval * 2).min(config.t2);
                ctx.arm(Slot::Retransmit, self.retransmit_interval);
                Next::Continue
            }
            (NonInviteClientState::Proceeding, Slot::Retransmit) => {
                ctx.transmit(&self.request_bytes);
                self.retransmit_interval = config.t2;
                ctx.arm(Slot::Retransmit, config.t2);
                Next::Continue
            }
            // Timer F
            (NonInviteClientState::Trying | NonInviteClientState::Proceeding, Slot::Lifetime) => {
                ctx.emit(TxEvent::Timeout {
                    key: ctx.key.clone(),
                });
                Next::Terminate
            }
            // Timer K
            (NonInviteClientState::Completed, Slot::Lifetime) => Next::Terminate,
            (NonInviteClientState::Completed, Slot::Retransmit) => Next::Continue,
        }
    }
}

/// ACK for a non-2xx final (§17.1.1.3): same Request-URI, top Via (so the same branch), From,
/// Call-ID, Route and CSeq number as the INVITE; To from the response.
fn build_ack(invite: &Request, cseq: u32, response: &Response) -> Request {
    let to = response
        .headers
        .iter()
        .chain(invite.headers.iter())
        .find(|header| matches!(header, Header::To(_)))
        .cloned();
    hop_by_hop_request(invite, Method::Ack, cseq, to)
}

/// CANCEL (§9.1): Request-URI, Call-ID, To, From, CSeq number, Route and top Via of the INVITE.
fn build_cancel(invite: &Request, cseq: u32) -> Request {
    let to = invite
        .headers
        .iter()
        .find(|header| matches!(header, Header::To(_)))
        .cloned();
    hop_by_hop_request(invite, Method::Cancel, cseq, to)
}

fn hop_by_hop_request(invite: &Request, method: Method, cseq: u32, to: Option<Header>) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = invite
        .headers
        .iter()
        .find(|header| matches!(header, Header::Via(_)))
    {
        headers.push(via.clone());
    }
    headers.push(Header::MaxForwards(Default::default()));
    for header in invite.headers.iter() {
        if matches!(
            header,
            Header::Route(_) | Header::From(_) | Header::CallId(_)
        ) {
            headers.push(header.clone());
        }
    }
    if let Some(to) = to {
        headers.push(to);
    }
    headers.push(typed::CSeq { seq: cseq, method }.into());
    headers.push(Header::ContentLength(Default::default()));
    Request {
        method,
        uri: invite.uri.clone(),
        version: Version::V2,
        headers,
        body: Vec::new(),
    }
}
