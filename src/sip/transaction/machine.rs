//! What one transaction is (its state machine, owner, timers) and the context a machine
//! works through while it handles an input.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::client::{InviteClient, NonInviteClient};
use super::server::{InviteServer, NonInviteServer};
use super::timer::{Slot, TimerConfig, TimerQueue, TimerSlots};
use super::{TxEvent, TxKey, TxOutput};
use crate::sip::transport::Peer;

pub(super) struct Transaction {
    /// Where our messages go: the request's source for server transactions.
    pub(super) peer: Peer,
    pub(super) owner: Owner,
    pub(super) slots: TimerSlots,
    pub(super) machine: Machine,
}

/// Who hears about a transaction: the TU, or only the layer (CANCEL it sent on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    Tu,
    Layer,
}

pub(super) enum Machine {
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
}

/// What the layer must do with a transaction after it handled an input.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    Terminate,
    /// INVITE client got its first provisional while a CANCEL was waiting for one.
    SendCancel,
}

/// State shared by all transactions.
pub(super) struct Io {
    pub(super) config: TimerConfig,
    pub(super) timers: TimerQueue,
    pub(super) outputs: VecDeque<TxOutput>,
}

impl Io {
    pub(super) fn emit(&mut self, event: TxEvent) {
        self.outputs.push_back(TxOutput::Event(event));
    }
}

/// One transaction's view of the layer while it handles an input.
pub(super) struct Ctx<'a> {
    pub(super) now: Instant,
    pub(super) key: &'a TxKey,
    pub(super) peer: Peer,
    pub(super) owner: Owner,
    pub(super) slots: &'a mut TimerSlots,
    pub(super) io: &'a mut Io,
}

impl Ctx<'_> {
    pub(super) fn config(&self) -> TimerConfig {
        self.io.config
    }

    pub(super) fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }

    pub(super) fn transmit(&mut self, bytes: &Bytes) {
        self.io.outputs.push_back(TxOutput::Transmit {
            to: self.peer,
            bytes: bytes.clone(),
        });
    }

    pub(super) fn emit(&mut self, event: TxEvent) {
        match self.owner {
            Owner::Tu => self.io.emit(event),
            Owner::Layer => debug!(?event, "layer-owned transaction event consumed"),
        }
    }

    /// (Re)start a slot's timer; any earlier entry for the slot becomes stale.
    pub(super) fn arm(&mut self, slot: Slot, after: Duration) {
        let seq = self
            .io
            .timers
            .push(self.now + after, slot, self.key.clone());
        *self.slots.get_mut(slot) = Some(seq);
    }

    pub(super) fn disarm(&mut self, slot: Slot) {
        *self.slots.get_mut(slot) = None;
    }
}
