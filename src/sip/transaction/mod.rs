//! RFC 3261 §17 transaction layer, with the RFC 6026 corrections, as one sans-I/O state machine.
//!
//! It owns matching messages to transactions (§17.1.3, §17.2.3 incl. the RFC 2543 fallback),
//! request/response retransmission over UDP, timers A–M, the ACK for non-2xx final responses
//! (§17.1.1.3) and building CANCEL (§9.1). Inputs are parsed [`rsip::SipMessage`]s, TU calls and
//! `now`; outputs are queued [`TxOutput`]s (bytes to send, events for the TU).
//!
//! Behaviour worth knowing when integrating:
//! - **2xx to INVITE is not retransmitted here.** Per RFC 3261 §13.3.1.4 that is the UAS core's
//!   job (the dialog layer). While the server transaction is in RFC 6026 "Accepted" (Timer L,
//!   64·T1) the TU may pass 2xx retransmissions through [`TransactionLayer::respond`]; after it
//!   ends, use [`TransactionLayer::send_stateless`]. Likewise the ACK for a 2xx is the UAC
//!   core's, sent with `send_stateless`; this layer only ACKs non-2xx finals.
//! - **100 Trying is sent immediately** when an INVITE server transaction is created, rather
//!   than after 200 ms (§17.2.1 allows either); it stops the caller's Timer A early.
//! - **Symmetric response routing**: a server transaction sends every response to the [`Peer`]
//!   the request came from, not to the Via sent-by. Via headers are copied verbatim, so the
//!   receive path should already have added `received`/`rport` to the top Via.
//! - **CANCEL race**: [`TxEvent::Cancel`] names the INVITE server transaction whenever it still
//!   exists, whatever its state. If a final response was already sent, [`TransactionLayer::state`]
//!   says so and a 487 on it is refused with [`TxError::InvalidState`]; the TU should still
//!   answer the CANCEL itself with 200 (§9.2).
//! - **CANCEL client transactions** started by [`TransactionLayer::cancel`] belong to this
//!   layer: their responses, timeouts and termination are not surfaced. If no final response
//!   to the INVITE arrives within 64·T1 of sending the CANCEL, the INVITE transaction reports
//!   [`TxEvent::Timeout`] and ends (§9.1).
//! - A non-INVITE server transaction the TU never answers is dropped after 64·T1 (the client
//!   gave up at Timer F by then). INVITE server transactions wait for the TU indefinitely.
//! - Timer D is 32 s on UDP. Reliable transports run Timers D, I, J, K as zero (the transaction
//!   ends at once) and never start A, E, G; B, F, H, L, M stay 64·T1.
//! - Retransmission timers are re-armed from their deadline, not from the (possibly late)
//!   `now` passed to [`TransactionLayer::handle_timeout`], so the schedule stays exact.

mod client;
mod key;
mod server;

pub use key::{Malformed, TxKey, MAGIC_COOKIE};

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::distributions::Alphanumeric;
use rand::Rng;
use rsip::{Method, Request, Response, SipMessage};
use tracing::debug;

use super::transport::Peer;
use client::{InviteClient, NonInviteClient};
use key::{ClientId, ServerId};
use server::{InviteServer, NonInviteServer};

/// RFC 3261 timer base values (Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; base of retransmission and timeout timers.
    pub t1: Duration,
    /// Cap on non-INVITE request and INVITE response retransmission intervals.
    pub t2: Duration,
    /// Longest time a message stays in the network.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J (UDP), L, M.
    fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Timer D on unreliable transports (RFC 3261 Table 4: "> 32 s").
const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// Something the driver must do.
// Boxing the event would cost an allocation per event to shrink a short-lived queue entry.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutput {
    Transmit { to: Peer, bytes: Bytes },
    Event(TxEvent),
}

/// What the transaction user (UA core / dialog layer) needs to hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxEvent {
    /// New request for the TU (INVITE, BYE, OPTIONS, INFO, REFER, NOTIFY, REGISTER, ...).
    Request {
        key: TxKey,
        request: Request,
        from: Peer,
    },
    /// CANCEL (a non-INVITE server transaction of its own) plus the INVITE server transaction
    /// it cancels, if one still exists (§9.2). The TU answers 200/481 on `key` and 487 on
    /// `invite` (the latter only while the INVITE is still Proceeding).
    Cancel {
        key: TxKey,
        invite: Option<TxKey>,
        request: Request,
        from: Peer,
    },
    /// ACK that matched no INVITE transaction in Completed/Confirmed, i.e. the ACK for a 2xx
    /// (including ACKs arriving while the INVITE server transaction is in "Accepted").
    Ack { request: Request, from: Peer },
    /// Response on a client transaction: provisional and final; for INVITE every 2xx
    /// retransmission too, so the TU can re-ACK.
    Response { key: TxKey, response: Response },
    /// A 2xx to INVITE that matches no client transaction.
    Stray2xx { response: Response, from: Peer },
    /// Client transaction timed out (Timer B or F, or no final 64·T1 after CANCEL): treat as 408.
    Timeout { key: TxKey },
    /// INVITE server transaction sent a 3xx-6xx final and no ACK came before Timer H.
    AckTimeout { key: TxKey },
    /// Transaction finished and was removed.
    Terminated { key: TxKey },
}

/// Transaction states, as named in RFC 3261 §17 and RFC 6026.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxState {
    /// INVITE client, request sent, nothing heard yet.
    Calling,
    /// Non-INVITE (client or server) before any response.
    Trying,
    Proceeding,
    Completed,
    /// INVITE server, ACK for the non-2xx final received.
    Confirmed,
    /// INVITE (client or server) after a 2xx final (RFC 6026).
    Accepted,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no live transaction {0}")]
    UnknownTransaction(TxKey),
    #[error("{key} is not {expected}")]
    WrongKind { key: TxKey, expected: &'static str },
    #[error("cannot {action} on {key} in state {state:?}")]
    InvalidState {
        key: TxKey,
        state: TxState,
        action: &'static str,
    },
    #[error("status code {0} is outside 100..=699")]
    InvalidStatus(u16),
    #[error("request cannot start a client transaction: {0}")]
    InvalidRequest(#[from] Malformed),
    #[error("ACK is not sent through a transaction; use send_stateless")]
    AckIsNotATransaction,
    #[error("transaction {0} already exists (branch reused)")]
    DuplicateTransaction(TxKey),
}

/// A fresh RFC 3261 branch: magic cookie plus 24 random alphanumerics (~142 bits).
pub fn new_branch() -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{MAGIC_COOKIE}{random}")
}

/// All live transactions plus the timer wheel and output queue they share.
pub struct TransactionLayer {
    transactions: HashMap<TxKey, Transaction>,
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
            Machine::InviteServer(_) | Machine::NonInviteServer(_) => Flow::Continue,
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
                Machine::InviteClient(client) => Some((client.begin_cancel(ctx), ctx.peer)),
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
            Transaction {
                peer,
                owner,
                slots,
                machine,
            },
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

    fn apply(&mut self, now: Instant, key: &TxKey, flow: Flow) {
        match flow {
            Flow::Continue => {}
            Flow::Terminate => {
                if let Some(tx) = self.transactions.remove(key) {
                    if tx.owner == Owner::Tu {
                        self.io.emit(TxEvent::Terminated { key: key.clone() });
                    }
                }
            }
            Flow::SendCancel => self.start_cancel(now, key),
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

struct Transaction {
    /// Where our messages go: the request's source for server transactions.
    peer: Peer,
    owner: Owner,
    slots: TimerSlots,
    machine: Machine,
}

/// Who hears about a transaction: the TU, or only the layer (CANCEL it sent on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Tu,
    Layer,
}

enum Machine {
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
}

/// What the layer must do with a transaction after it handled an input.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Terminate,
    /// INVITE client got its first provisional while a CANCEL was waiting for one.
    SendCancel,
}

/// Each transaction has at most one retransmission timer (A, E, G) and one timer that ends
/// a state (B, D, F, H, I, J, K, L, M) pending at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Retransmit,
    Lifetime,
}

/// Sequence number of the heap entry currently valid for each slot; anything else is stale.
#[derive(Default)]
struct TimerSlots {
    retransmit: Option<u64>,
    lifetime: Option<u64>,
}

impl TimerSlots {
    fn get(&self, slot: Slot) -> Option<u64> {
        match slot {
            Slot::Retransmit => self.retransmit,
            Slot::Lifetime => self.lifetime,
        }
    }

    fn get_mut(&mut self, slot: Slot) -> &mut Option<u64> {
        match slot {
            Slot::Retransmit => &mut self.retransmit,
            Slot::Lifetime => &mut self.lifetime,
        }
    }
}

struct TimerEntry {
    at: Instant,
    seq: u64,
    slot: Slot,
    key: TxKey,
}

// Ordered by deadline, then by arming order; `seq` is unique so this is a total order.
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl Eq for TimerEntry {}

/// Min-heap of deadlines with lazy deletion (see [`TimerSlots`]).
#[derive(Default)]
struct TimerQueue {
    heap: BinaryHeap<Reverse<TimerEntry>>,
    next_seq: u64,
}

impl TimerQueue {
    fn push(&mut self, at: Instant, slot: Slot, key: TxKey) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(TimerEntry { at, seq, slot, key }));
        seq
    }

    fn peek(&self) -> Option<&TimerEntry> {
        self.heap.peek().map(|Reverse(entry)| entry)
    }

    fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        if self.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }
}

/// State shared by all transactions.
struct Io {
    config: TimerConfig,
    timers: TimerQueue,
    outputs: VecDeque<TxOutput>,
}

impl Io {
    fn emit(&mut self, event: TxEvent) {
        self.outputs.push_back(TxOutput::Event(event));
    }
}

/// One transaction's view of the layer while it handles an input.
struct Ctx<'a> {
    now: Instant,
    key: &'a TxKey,
    peer: Peer,
    owner: Owner,
    slots: &'a mut TimerSlots,
    io: &'a mut Io,
}

impl Ctx<'_> {
    fn config(&self) -> TimerConfig {
        self.io.config
    }

    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }

    fn transmit(&mut self, bytes: &Bytes) {
        self.io.outputs.push_back(TxOutput::Transmit {
            to: self.peer,
            bytes: bytes.clone(),
        });
    }

    fn emit(&mut self, event: TxEvent) {
        match self.owner {
            Owner::Tu => self.io.emit(event),
            Owner::Layer => debug!(?event, "layer-owned transaction event consumed"),
        }
    }

    /// (Re)start a slot's timer; any earlier entry for the slot becomes stale.
    fn arm(&mut self, slot: Slot, after: Duration) {
        let seq = self
            .io
            .timers
            .push(self.now + after, slot, self.key.clone());
        *self.slots.get_mut(slot) = Some(seq);
    }

    fn disarm(&mut self, slot: Slot) {
        *self.slots.get_mut(slot) = None;
    }
}

/// Status class helpers shared by the machines.
fn is_provisional(status: u16) -> bool {
    (100..200).contains(&status)
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests;
