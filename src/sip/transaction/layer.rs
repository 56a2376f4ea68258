//! The transaction layer itself: matching messages and TU calls to transactions, creating
//! them, driving their timers and queueing what the driver must send or report.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use rsip::{Method, Request, Response, SipMessage};
use tracing::debug;

use super::client::{InviteClient, NonInviteClient};
use super::key::{self, ClientId, ServerId};
use super::machine::{Ctx, Io, Machine, Next, Owner, Transaction};
use super::server::{InviteServer, NonInviteServer};
use super::timer::{TimerConfig, TimerQueue, TimerSlots};
use super::{TxError, TxEvent, TxKey, TxOutput, TxState};
use crate::sip::transport::Peer;

/// All live transactions plus the timer wheel and output queue they share.
pub struct TransactionLayer {
    /// Boxed, so the table's empty slots (up to half of it after it grows) stay small.
    transactions: HashMap<TxKey, Box<Transaction>>,
    io: Io,
}

impl TransactionLayer {
    pub fn new(config: TimerConfig) -> Self {
        Self {
            transactions: HashMap::new(),
            io: Io {
                config,
                timers: TimerQueue::default(),
                outputs: VecDeque::new(),
            },
        }
    }

    /// A parsed message arrived from `from`. Retransmitted requests are absorbed (the last
    /// response is resent); new requests surface as events; responses go to their client
    /// transaction, or are dropped, except a 2xx to INVITE which surfaces as `Stray2xx`.
    pub fn handle_message(&mut self, now: Instant, message: SipMessage, from: Peer) {
        match message {
            SipMessage::Request(request) => self.on_request(now, request, from),
            SipMessage::Response(response) => self.on_response(now, response, from),
        }
        self.discard_stale_timers();
    }

    /// Send a response on a server transaction (provisional or final).
    pub fn respond(
        &mut self,
        now: Instant,
        key: &TxKey,
        response: Response,
    ) -> Result<(), TxError> {
        let status = response.status_code.code();
        if !(100..=699).contains(&status) {
            return Err(TxError::InvalidStatus(status));
        }
        let flow = self
            .with_tx(now, key, |machine, ctx| match machine {
                Machine::InviteServer(invite) => invite.respond(&response, status, ctx),
                Machine::NonInviteServer(other) => other.respond(&response, status, ctx),
                Machine::InviteClient(_) | Machine::NonInviteClient(_) => Err(TxError::WrongKind {
                    key: key.clone(),
                    expected: "a server transaction",
                }),
            })
            .ok_or_else(|| TxError::UnknownTransaction(key.clone()))??;
        self.apply(now, key, flow);
        self.discard_stale_timers();
        Ok(())
    }

    /// Start a client transaction. The request must carry its top Via with a `z9hG4bK` branch
    /// (see [`new_branch`]) and a CSeq whose method matches.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        to: Peer,
    ) -> Result<TxKey, TxError> {
        if request.method == Method::Ack {
            return Err(TxError::AckIsNotATransaction);
        }
        let key = TxKey::client(ClientId::for_request(&request)?);
        if self.transactions.contains_key(&key) {
            return Err(TxError::DuplicateTransaction(key));
        }
        self.start_client(now, key.clone(), request, to, Owner::Tu)?;
        Ok(key)
    }

    /// CANCEL a pending INVITE client transaction (§9.1). Sent at once if a provisional
    /// response arrived, otherwise when the first one does (if a final arrives first, nothing
    /// is sent; after a 2xx the TU must ACK and BYE). Repeated calls are no-ops; once a final
    /// response arrived it is refused with [`TxError::InvalidState`].
    pub fn cancel(&mut self, now: Instant, invite: &TxKey) -> Result<(), TxError> {
        let tx = self
            .transactions
            .get_mut(invite)
            .ok_or_else(|| TxError::UnknownTransaction(invite.clone()))?;
        let Machine::InviteClient(client) = &mut tx.machine else {
            return Err(TxError::WrongKind {
                key: invite.clone(),
                expected: "an INVITE client transaction",
            });
        };
        if client.request_cancel(invite)? {
            self.start_cancel(now, invite);
        }
        self.discard_stale_timers();
        Ok(())
    }

    /// Queue a message outside any transaction: ACK for 2xx, 2xx retransmissions after the
    /// server transaction ended, stateless error responses.
    pub fn send_stateless(&mut self, to: Peer, message: &SipMessage) {
        self.io.outputs.push_back(TxOutput::Transmit {
            to,
            bytes: Bytes::from(message.to_string()),
        });
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.io.timers.pop_due(now) {
            let Some(tx) = self.transactions.get_mut(&entry.key) else {
                continue;
            };
            if tx.slots.get(entry.slot) != Some(entry.seq) {
                continue; // re-armed or disarmed since this entry was queued
            }
            *tx.slots.get_mut(entry.slot) = None;
            let mut ctx = Ctx {
                now: entry.at,
                key: &entry.key,
                peer: tx.peer,
                owner: tx.owner,
                slots: &mut tx.slots,
                io: &mut self.io,
            };
            let flow = match &mut tx.machine {
                Machine::InviteServer(invite) => invite.on_timer(entry.slot, &mut ctx),
                Machine::NonInviteServer(other) => other.on_timer(entry.slot, &mut ctx),
                Machine::InviteClient(invite) => invite.on_timer(entry.slot, &mut ctx),
                Machine::NonInviteClient(other) => other.on_timer(entry.slot, &mut ctx),
            };
            self.apply(entry.at, &entry.key, flow);
        }
        self.discard_stale_timers();
    }

    /// Earliest pending timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.io.timers.peek().map(|entry| entry.at)
    }

    /// Next queued output, oldest first.
    pub fn poll_output(&mut self) -> Option<TxOutput> {
        self.io.outputs.pop_front()
    }

    /// Live transactions (including layer-owned CANCEL client transactions).
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Current state of a live transaction.
    pub fn state(&self, key: &TxKey) -> Option<TxState> {
        self.transactions.get(key).map(|tx| match &tx.machine {
            Machine::InviteServer(invite) => invite.state(),
            Machine::NonInviteServer(other) => other.state(),
            Machine::InviteClient(invite) => invite.state(),
            Machine::NonInviteClient(other) => other.state(),
        })
    }

    fn on_request(&mut self, now: Instant, request: Request, from: Peer) {
        let id = match ServerId::for_request(&request) {
            Ok(id) => id,
            Err(reason) => {
                debug!(%reason, method = %request.method, %from, "dropping unmatchable request");
                return;
            }
        };
        match request.method {
            Method::Ack => self.on_ack(now, TxKey::server(id), request, from),
            Method::Cancel => self.on_cancel(now, id, request, from),
            _ => self.on_other_request(now, TxKey::server(id), request, from),
        }
    }

    fn on_ack(&mut self, now: Instant, key: TxKey, request: Request, from: Peer) {
        let legacy_tag = key.is_legacy().then(|| key::to_tag(&request));
        let absorbed = self
            .with_tx(now, &key, |machine, ctx| match machine {
                Machine::InviteServer(invite) => {
                    // RFC 2543: the ACK must carry the To tag of the final we sent.
                    let acks_our_final = legacy_tag
                        .as_ref()
                        .is_none_or(|tag| invite.final_to_tag_is(tag));
                    if acks_our_final {
                        invite.on_ack(ctx)
                    } else {
                        None
                    }
                }
                _ => None,
            })
            .flatten();
        match absorbed {
            Some(flow) => self.apply(now, &key, flow),
            None => self.io.emit(TxEvent::Ack { request, from }),
        }
    }

    fn on_cancel(&mut self, now: Instant, id: ServerId, request: Request, from: Peer) {
        let invite_key = TxKey::server(id.cancelled_invite());
        let key = TxKey::server(id);
        if self.absorb_retransmission(now, &key, &request) {
            return;
        }
        let invite = self
            .transactions
            .get(&invite_key)
            .filter(|tx| matches!(tx.machine, Machine::InviteServer(_)))
            .map(|_| invite_key);
        self.create(now, key.clone(), from, Owner::Tu, |ctx| {
            Machine::NonInviteServer(NonInviteServer::start(ctx))
        });
        self.io.emit(TxEvent::Cancel {
            key,
            invite,
            request,
            from,
        });
    }

    fn on_other_request(&mut self, now: Instant, key: TxKey, request: Request, from: Peer) {
        if self.absorb_retransmission(now, &key, &request) {
            return;
        }
        let is_invite = request.method == Method::Invite;
        self.create(now, key.clone(), from, Owner::Tu, |ctx| {
            if is_invite {
                Machine::InviteServer(InviteServer::start(&request, ctx))
            } else {
                Machine::NonInviteServer(NonInviteServer::start(ctx))
            }
        });
        self.io.emit(TxEvent::Request { key, request, from });
    }

    /// True when `request` belongs to an existing server transaction (and was handled there).
    fn absorb_retransmission(&mut self, now: Instant, key: &TxKey, request: &Request) -> bool {
        let legacy_tag = key.is_legacy().then(|| key::to_tag(request));
        self.with_tx(now, key, |machine, ctx| match machine {
            Machine::InviteServer(invite) => {
                if legacy_tag
                    .as_ref()
                    .is_none_or(|tag| invite.invite_to_tag_is(tag))
                {
                    invite.on_retransmission(ctx);
                } else {
                    debug!(key = %ctx.key, "RFC 2543 INVITE clashes with a live transaction; dropped");
                }
            }
            Machine::NonInviteServer(other) => other.on_retransmission(ctx),
            Machine::InviteClient(_) | Machine::NonInviteClient(_) => {}
        })
        .is_some()
    }

    fn on_response(&mut self, now: Instant, response: Response, from: Peer) {
        let status = response.status_code.code();
        if !(100..=699).contains(&status) {
            debug!(status, %from, "dropping response with impossible status");
            return;
        }
        let key = match ClientId::for_response(&response) {
            Ok(id) => Some(TxKey::client(id)).filter(|key| self.transactions.contains_key(key)),
            Err(reason) => {
                debug!(%reason, status, %from, "response cannot match a client transaction");
                None
            }
        };
        let Some(key) = key else {
            let to_invite = key::typed_cseq(&response).is_ok_and(|c| c.method == Method::Invite);
            if (200..300).contains(&status) && to_invite {
                self.io.emit(TxEvent::Stray2xx { response, from });
            } else {
                debug!(status, %from, "dropping response for no live client transaction");
            }
            return;
        };
        let flow = self.with_tx(now, &key, |machine, ctx| match machine {
            Machine::InviteClient(invite) => invite.on_response(response, status, ctx),
            Machine::NonInviteClient(other) => other.on_response(response, status, ctx),
            Machine::InviteServer(_) | Machine::NonInviteServer(_) => Next::Continue,
        });
        if let Some(flow) = flow {
            self.apply(now, &key, flow);
        }
    }

    fn start_client(
        &mut self,
        now: Instant,
        key: TxKey,
        request: Request,
        to: Peer,
        owner: Owner,
    ) -> Result<(), TxError> {
        let cseq = key::typed_cseq(&request)?.seq;
        self.create(now, key, to, owner, |ctx| {
            if request.method == Method::Invite {
                Machine::InviteClient(InviteClient::start(request, cseq, ctx))
            } else {
                Machine::NonInviteClient(NonInviteClient::start(&request, ctx))
            }
        });
        Ok(())
    }

    /// Send the CANCEL for `invite` now, as a layer-owned non-INVITE client transaction.
    fn start_cancel(&mut self, now: Instant, invite: &TxKey) {
        let started = self
            .with_tx(now, invite, |machine, ctx| match machine {
                Machine::InviteClient(client) => Some((client.begin_cancel(ctx)?, ctx.peer)),
                _ => None,
            })
            .flatten();
        let Some((cancel, peer)) = started else {
            return;
        };
        let key = match ClientId::for_request(&cancel) {
            Ok(id) => TxKey::client(id),
            Err(reason) => {
                debug!(%reason, %invite, "cannot build a CANCEL transaction");
                return;
            }
        };
        if self.transactions.contains_key(&key) {
            debug!(%key, "CANCEL transaction already exists");
            return;
        }
        if let Err(reason) = self.start_client(now, key, cancel, peer, Owner::Layer) {
            debug!(%reason, %invite, "cannot start CANCEL transaction");
        }
    }

    fn create(
        &mut self,
        now: Instant,
        key: TxKey,
        peer: Peer,
        owner: Owner,
        start: impl FnOnce(&mut Ctx) -> Machine,
    ) {
        let mut slots = TimerSlots::default();
        let machine = start(&mut Ctx {
            now,
            key: &key,
            peer,
            owner,
            slots: &mut slots,
            io: &mut self.io,
        });
        self.transactions.insert(
            key,
            Box::new(Transaction {
                peer,
                owner,
                slots,
                machine,
            }),
        );
    }

    /// Run `f` on a live transaction with a context for its outputs and timers.
    fn with_tx<R>(
        &mut self,
        now: Instant,
        key: &TxKey,
        f: impl FnOnce(&mut Machine, &mut Ctx) -> R,
    ) -> Option<R> {
        let tx = self.transactions.get_mut(key)?;
        let mut ctx = Ctx {
            now,
            key,
            peer: tx.peer,
            owner: tx.owner,
            slots: &mut tx.slots,
            io: &mut self.io,
        };
        Some(f(&mut tx.machine, &mut ctx))
    }

    fn apply(&mut self, now: Instant, key: &TxKey, flow: Next) {
        match flow {
            Next::Continue => {}
            Next::Terminate => {
                if let Some(tx) = self.transactions.remove(key) {
                    if tx.owner == Owner::Tu {
                        self.io.emit(TxEvent::Terminated { key: key.clone() });
                    }
                }
            }
            Next::SendCancel => self.start_cancel(now, key),
        }
    }

    /// Pop dead entries off the top of the heap so `poll_timeout` reports a live deadline.
    fn discard_stale_timers(&mut self) {
        while let Some(entry) = self.io.timers.peek() {
            let live = self
                .transactions
                .get(&entry.key)
                .is_some_and(|tx| tx.slots.get(entry.slot) == Some(entry.seq));
            if live {
                break;
            }
            self.io.timers.heap.pop();
        }
    }
}
