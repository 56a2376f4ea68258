//! The switchboard's own timers (answer delay, maximum call duration, flow timers), kept in
//! one heap; SIP timers live in the user agent, queue timers in the ACD.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::sip::ua::SessionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The call has rung for `answer_delay`.
    Answer(SessionId),
    MaxDuration(SessionId),
    /// A flow timer: call, timer id, generation (a restarted timer's old firing is stale).
    Flow(SessionId, u32, u64),
}

#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    next_generation: u64,
}

impl Timers {
    pub(super) fn start(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// A fresh generation for a (re)started flow timer.
    pub(super) fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let Reverse((at, timer)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some(timer)
    }
}
