//! Transaction timers: the RFC 3261 base values and the deadline queue every transaction's
//! retransmission and lifetime timers share.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::TxKey;

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
    pub(super) fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Timer D on unreliable transports (RFC 3261 Table 4: "> 32 s").
pub(super) const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// Each transaction has at most one retransmission timer (A, E, G) and one timer that ends
/// a state (B, D, F, H, I, J, K, L, M) pending at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Retransmit,
    Lifetime,
}

/// Sequence number of the heap entry currently valid for each slot; anything else is stale.
#[derive(Default)]
pub(super) struct TimerSlots {
    pub(super) retransmit: Option<u64>,
    pub(super) lifetime: Option<u64>,
}

impl TimerSlots {
    pub(super) fn get(&self, slot: Slot) -> Option<u64> {
        match slot {
            Slot::Retransmit => self.retransmit,
            Slot::Lifetime => self.lifetime,
        }
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> &mut Option<u64> {
        match slot {
            Slot::Retransmit => &mut self.retransmit,
            Slot::Lifetime => &mut self.lifetime,
        }
    }
}

pub(super) struct TimerEntry {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) slot: Slot,
    pub(super) key: TxKey,
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
pub(super) struct TimerQueue {
    pub(super) heap: BinaryHeap<Reverse<TimerEntry>>,
    pub(super) next_seq: u64,
}

impl TimerQueue {
    pub(super) fn push(&mut self, at: Instant, slot: Slot, key: TxKey) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(TimerEntry { at, seq, slot, key }));
        seq
    }

    pub(super) fn peek(&self) -> Option<&TimerEntry> {
        self.heap.peek().map(|Reverse(entry)| entry)
    }

    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        if self.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }
}
