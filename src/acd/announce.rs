//! Queue announcements: position and estimated wait, on entry and every `announce_every`,
//! from the recent handle times kept per group.

use super::types::{after, due, AcdOutput, AgentState, CallId, CallPhase};
use super::Acd;
use std::time::{Duration, Instant};

impl Acd {
    pub(super) fn announce_new(&mut self, call: CallId, now: Instant) {
        let Some(record) = self.calls.get(&call) else {
            return;
        };
        if matches!(record.phase, CallPhase::Waiting) && !record.announced && !record.callback {
            self.announce(call, now);
        }
    }

    pub(super) fn announce_due(&mut self, now: Instant) {
        let mut due_calls: Vec<((Instant, u64), CallId)> = self
            .calls
            .iter()
            .filter(|(_, record)| {
                matches!(record.phase, CallPhase::Waiting)
                    && !record.callback
                    && (!record.announced || due(record.next_announce, now))
            })
            .map(|(call, record)| (record.order(), *call))
            .collect();
        due_calls.sort();
        for (_, call) in due_calls {
            self.announce(call, now);
        }
        // Ringing callers hear ringback; their announcement slot moves on.
        let period = self.routing.hotline.announce_every;
        for record in self.calls.values_mut() {
            if matches!(record.phase, CallPhase::Ringing(_)) && due(record.next_announce, now) {
                record.next_announce = after(now, period);
            }
        }
    }

    fn announce(&mut self, call: CallId, now: Instant) {
        let Some(position) = self.queue_position(call) else {
            return;
        };
        let estimated_wait = self
            .calls
            .get(&call)
            .and_then(|record| self.estimate(&record.group, position, now));
        let period = self.routing.hotline.announce_every;
        if let Some(record) = self.calls.get_mut(&call) {
            record.announced = true;
            record.next_announce = after(now, period);
        }
        self.emit(AcdOutput::Announce {
            call,
            position,
            estimated_wait,
        });
    }

    /// Average handle time of recent calls × position ÷ staffed agents, when enough calls
    /// completed recently to trust the average.
    fn estimate(&self, group_name: &str, position: u32, now: Instant) -> Option<Duration> {
        let group = self.routing.groups.get(group_name)?;
        let window_start = now.checked_sub(self.settings.estimate_window);
        let recent: Vec<Duration> = self
            .handled
            .get(group_name)?
            .iter()
            .filter(|(ended, _)| window_start.is_none_or(|start| *ended >= start))
            .map(|(_, handle)| *handle)
            .collect();
        if recent.len() < self.settings.estimate_min_calls.max(1) {
            return None;
        }
        let count = u32::try_from(recent.len()).ok()?;
        let average = recent.iter().sum::<Duration>() / count;
        let staffed = self.group_agent_ids(group).filter(|id| {
            self.agents
                .get(id)
                .is_some_and(|agent| agent.state != AgentState::Offline)
        });
        let staffed = u32::try_from(staffed.count()).ok().filter(|n| *n > 0)?;
        Some(average.checked_mul(position)? / staffed)
    }

    pub(super) fn prune_history(&mut self, now: Instant) {
        if let Some(start) = now.checked_sub(self.settings.estimate_window) {
            for history in self.handled.values_mut() {
                while history.front().is_some_and(|(ended, _)| *ended < start) {
                    history.pop_front();
                }
            }
        }
    }
}
