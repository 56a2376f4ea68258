//! Requests waiting out of the queue (a retry delay, a closed window) and their return to
//! it with their first arrival; requests whose group left the routing.

use std::time::{Duration, Instant, SystemTime};

use tracing::warn;

use super::RequestState;
use crate::acd::{AcdInput, CallId};
use crate::call::Switchboard;
use crate::cdr::CallbackStatus;

/// A request outside its window looks again this often.
pub(super) const WINDOW_RECHECK: Duration = Duration::from_secs(60);

impl Switchboard {
    /// The ACD dropped a request (its group left the routing): it ends unserved.
    pub(in crate::call) fn callback_dropped(&mut self, now: Instant, call: CallId) {
        if let Some(request) = self.callbacks.requests.get(&call.0) {
            warn!(request = call.0, group = %request.group, "callback dropped: its group is gone");
            self.write_callback(now, call.0, CallbackStatus::Failed);
            self.callbacks.requests.remove(&call.0);
        }
    }

    /// Requests whose wait is over enter their queue again with their first arrival, when
    /// their window is open; otherwise they look again a minute later.
    pub(in crate::call) fn callbacks_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .callbacks
            .requests
            .iter()
            .filter(|(_, request)| {
                matches!(request.state, RequestState::Waiting { until } if until <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        let wall = self.wall(now);
        for id in due {
            let Some(request) = self.callbacks.requests.get(&id).cloned() else {
                continue;
            };
            if !self.callback_window_open(&request.group, wall) {
                if let Some(request) = self.callbacks.requests.get_mut(&id) {
                    request.state = RequestState::Waiting {
                        until: now + WINDOW_RECHECK,
                    };
                }
                continue;
            }
            let input = AcdInput::EnqueueCallback {
                call: CallId(id),
                group: request.group.clone(),
                language: request.language.clone(),
                arrived: request.arrived,
            };
            let entered = self
                .acd
                .as_mut()
                .is_some_and(|acd| acd.handle_input(input, now).is_ok());
            if let Some(request) = self.callbacks.requests.get_mut(&id) {
                request.state = RequestState::Queued;
            }
            if !entered {
                self.callback_dropped(now, CallId(id));
            }
        }
    }

    pub(in crate::call) fn callbacks_poll_timeout(&self) -> Option<Instant> {
        self.callbacks
            .requests
            .values()
            .filter_map(|request| match request.state {
                RequestState::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Whether attempts may be made now: the callback's `window` hours, else the group's.
    pub(super) fn callback_window_open(&self, group: &str, wall: SystemTime) -> bool {
        let Some(routing) = self.acd.as_ref().map(|acd| acd.routing()) else {
            return false;
        };
        let Some(group) = routing.groups.get(group) else {
            return false;
        };
        let hours = group
            .callback
            .as_ref()
            .and_then(|callback| callback.window.as_ref())
            .or(group.hours.as_ref());
        match hours.and_then(|hours| routing.hours.get(&hours.value)) {
            Some(hours) => hours
                .schedule
                .is_open(chrono::DateTime::<chrono::Utc>::from(wall)),
            None => true,
        }
    }
}
