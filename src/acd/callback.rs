//! Queued callbacks in the ACD: a caller who asked to be called back leaves the line but not
//! the queue. Their entry keeps its first arrival, so it is served before callers who came
//! later; it hears no announcements, never times out (`max_wait`) nor leaves an unstaffed
//! group, and a resident not reached frees the agent at once (no wrap-up).

use super::types::{AcdError, AgentState, CallId, CallPhase, CallRecord};
use super::Acd;
use std::collections::BTreeSet;
use std::time::Instant;

impl Acd {
    /// The waiting caller `call` asked to be called back: its entry continues as `callback`
    /// (its rings are stopped; the dispatch rings agents for the callback instead).
    pub(super) fn turn_into_callback(
        &mut self,
        call: CallId,
        callback: CallId,
        now: Instant,
    ) -> Result<(), AcdError> {
        if self.calls.contains_key(&callback) {
            return Err(AcdError::DuplicateCall { call: callback });
        }
        match self.calls.get(&call) {
            None => return Err(AcdError::UnknownCall { call }),
            Some(record) if !record.in_queue() => return Err(AcdError::UnknownCall { call }),
            Some(_) => {}
        }
        let Some(mut record) = self.calls.remove(&call) else {
            return Err(AcdError::UnknownCall { call });
        };
        let phase = std::mem::replace(&mut record.phase, CallPhase::Waiting);
        self.stop_rings(call, phase, now);
        record.callback = true;
        record.next_announce = None;
        self.calls.insert(callback, record);
        self.dispatch(now);
        Ok(())
    }

    /// A callback request enters `group` again (a retry, its window opening, a restart) with
    /// the arrival it first had.
    pub(super) fn enqueue_callback(
        &mut self,
        call: CallId,
        group: String,
        language: String,
        arrived: Instant,
        now: Instant,
    ) -> Result<(), AcdError> {
        if self.calls.contains_key(&call) {
            return Err(AcdError::DuplicateCall { call });
        }
        if !self.routing.groups.contains_key(&group) {
            return Err(AcdError::UnknownGroup { call, group });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let record = CallRecord {
            group: group.clone(),
            language,
            arrived,
            entered: now,
            seq,
            phase: CallPhase::Waiting,
            announced: true,
            next_announce: None,
            visited: BTreeSet::from([group]),
            callback: true,
        };
        self.calls.insert(call, record);
        self.dispatch(now);
        Ok(())
    }

    /// The agent took the callback: the resident is dialled on the line `caller`, and the
    /// connected entry (and the agent's call) continue under that id.
    pub(super) fn callback_dialled(
        &mut self,
        call: CallId,
        caller: CallId,
    ) -> Result<(), AcdError> {
        if self.calls.contains_key(&caller) {
            return Err(AcdError::DuplicateCall { call: caller });
        }
        let agent = match self.calls.get(&call).map(|record| &record.phase) {
            None => return Err(AcdError::UnknownCall { call }),
            Some(CallPhase::Connected { agent, .. }) => agent.clone(),
            Some(_) => return Err(AcdError::NotConnected { call }),
        };
        if let Some(record) = self.calls.remove(&call) {
            self.calls.insert(caller, record);
        }
        if let Some(record) = self.agents.get_mut(&agent) {
            record.state = AgentState::OnCall(caller);
        }
        Ok(())
    }

    /// The agent took the callback but the resident did not answer: the agent is free at
    /// once and the request leaves the queue (the switchboard retries it later).
    pub(super) fn callback_not_reached(
        &mut self,
        call: CallId,
        now: Instant,
    ) -> Result<(), AcdError> {
        let agent = match self.calls.get(&call).map(|record| &record.phase) {
            None => return Err(AcdError::UnknownCall { call }),
            Some(CallPhase::Connected { agent, .. }) => agent.clone(),
            Some(_) => return Err(AcdError::NotConnected { call }),
        };
        self.calls.remove(&call);
        self.set_agent(&agent, AgentState::Idle, now);
        self.settle_agent(&agent, now);
        Ok(())
    }
}
