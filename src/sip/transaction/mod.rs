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
//!
//! Files: `layer` (the layer and its dispatch), `machine` (a transaction and its context),
//! `timer` (timer values and queue), `key` (matching keys), `client`/`server` (the machines).

mod client;
mod key;
mod layer;
mod machine;
mod server;
mod timer;

pub use key::{Malformed, TxKey, MAGIC_COOKIE};
pub use layer::TransactionLayer;
pub use timer::TimerConfig;

use bytes::Bytes;
use rand::distributions::Alphanumeric;
use rand::Rng;
use rsip::{Request, Response};

use super::transport::Peer;

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

/// A fresh RFC 3261 branch from the caller's generator: magic cookie plus 24 random
/// alphanumerics (~142 bits). The caller seeds it, so runs can be replayed.
pub fn new_branch(rng: &mut impl Rng) -> String {
    let random: String = rng
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{MAGIC_COOKIE}{random}")
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
