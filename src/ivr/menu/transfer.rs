//! Routing to a group at the moment of choice: opening hours and `when_closed`, transfer or
//! queue, expected-wait prompts and what follows a failed transfer.

use std::time::Duration;

use chrono::{DateTime, Utc, Weekday};

use super::prompts::{
    ALL_AGENTS_BUSY, QUEUE_HOLD, QUEUE_POSITION_PREFIX, QUEUE_POSITION_SUFFIX, QUEUE_WAITING_FOR,
};
use super::{MenuFlow, Next, Place, Step};
use crate::ivr::{FlowAction, FlowEnding, PromptRef, QueueCall};
use crate::routing::check::{ANNOUNCED_QUEUE_POSITIONS, ANNOUNCED_WAIT_MINUTES};
use crate::routing::model::{AgentTarget, Transfer, WhenClosed};
use crate::routing::RelativeDay;

impl MenuFlow {
    /// The moment of choice: the group's hours decide between its agents and the closed message.
    pub(super) fn route_group(&mut self, group_name: &str) -> Vec<FlowAction> {
        if self.routed.iter().any(|g| g == group_name) {
            // `when_closed` chains that come back to a group end the call instead of looping.
            return self.hang_up();
        }
        self.routed.push(group_name.to_owned());
        let Some(group) = self.routing.groups.get(group_name).cloned() else {
            return self.hang_up();
        };
        if std::mem::take(&mut self.choosing_again) {
            self.summary.group_chosen = None;
        }
        let now: DateTime<Utc> = DateTime::from(self.wall);
        let schedule = group
            .hours
            .as_ref()
            .and_then(|hours| self.routing.hours.get(&hours.value))
            .map(|hours| hours.schedule.clone());
        if let Some(schedule) = schedule.filter(|schedule| !schedule.is_open(now)) {
            self.step(Step::Closed {
                group: group_name.to_owned(),
            });
            let mut prompts = vec![self.prompt("closed_prefix")];
            if let Some(reopening) = schedule.reopening(now) {
                let day = match reopening.day {
                    RelativeDay::Today => "today".to_owned(),
                    RelativeDay::Tomorrow => "tomorrow".to_owned(),
                    RelativeDay::Later => weekday_prompt(reopening.weekday).to_owned(),
                };
                prompts.push(self.prompt(&day));
                prompts.push(self.prompt("time_at"));
                prompts.push(self.prompt(&format!("hour_{:02}", reopening.hour)));
                prompts.push(self.prompt(&format!("minute_{:02}", reopening.minute)));
            }
            let next = match &group.when_closed {
                WhenClosed::Hangup => {
                    self.place = Place::Leaving;
                    prompts.push(self.prompt("goodbye"));
                    Next::HangUp
                }
                // Back to the menu the choice was made in; the caller may pick another service.
                WhenClosed::Back if matches!(self.place, Place::Menus(_)) => {
                    self.routed.clear();
                    self.choosing_again = true;
                    Next::ReplayMenu
                }
                WhenClosed::Back => {
                    self.place = Place::Leaving;
                    prompts.push(self.prompt("goodbye"));
                    Next::HangUp
                }
                WhenClosed::Group(other) => {
                    self.place = Place::Leaving;
                    Next::RouteGroup(other.value.clone())
                }
            };
            return self.say(prompts, next);
        }
        self.place = Place::Leaving;
        // The caller's wait starts at the choice, before the connecting prompt; a closed group
        // that sent the caller here (`when_closed`) no longer decides the outcome, and the call
        // is this group's.
        self.summary.group = Some(group_name.to_owned());
        self.summary.group_chosen.get_or_insert(self.wall);
        if self.summary.ending == Some(FlowEnding::Closed) {
            self.summary.ending = None;
        }
        if group.transfer == Transfer::Bridge {
            // The agents' phones show the caller sorted: language and the English group name.
            let name = group
                .name
                .value
                .get("en")
                .or_else(|| group.name.value.get(&self.language))
                .cloned()
                .unwrap_or_else(|| group_name.to_owned());
            let queued = QueueCall {
                group: group_name.to_owned(),
                display: format!("[{}] {name}", self.language.to_uppercase()),
                language: self.language.clone(),
                path: self.path_text(),
            };
            let connecting = vec![self.prompt("transfer_connecting")];
            return self.say(connecting, Next::Queue(queued));
        }
        // REFER hands the caller over for good: the first agent who speaks the caller's
        // language (else the first agent) with a static address gets them.
        let uri_of = |agent: &crate::routing::model::Agent| match &agent.target {
            AgentTarget::Uri(uri) => Some(uri.value.clone()),
            AgentTarget::User(_) => None,
        };
        let speaks = |agent: &&crate::routing::model::Agent| {
            agent.languages.iter().any(|l| l.value == self.language)
        };
        let target = group
            .agents
            .iter()
            .filter(speaks)
            .find_map(uri_of)
            .or_else(|| group.agents.iter().find_map(uri_of));
        match target {
            Some(target) => {
                let connecting = vec![self.prompt("transfer_connecting")];
                let next = Next::Transfer {
                    group: group_name.to_owned(),
                    target,
                };
                self.say(connecting, next)
            }
            None => self.transfer_failed(group_name, 404),
        }
    }

    /// The caller's place (and expected wait) in the queue, played when what plays now ends:
    /// the first one tells them everyone is busy, which is why they wait. A newer position
    /// replaces one not yet heard.
    pub(super) fn queue_announcement(&mut self, position: u32, estimated_wait: Option<Duration>) {
        let mut prompts = Vec::new();
        if !std::mem::replace(&mut self.queue_announced, true) {
            prompts.push(self.prompt(ALL_AGENTS_BUSY));
        }
        if (1..=ANNOUNCED_QUEUE_POSITIONS).contains(&position) {
            prompts.extend([
                self.prompt(QUEUE_POSITION_PREFIX),
                self.prompt(&format!("number_{position}")),
                self.prompt(QUEUE_POSITION_SUFFIX),
            ]);
        } else if prompts.is_empty() {
            prompts.push(self.prompt(QUEUE_HOLD));
        }
        if let Some(wait) = estimated_wait {
            prompts.extend(self.expected_wait(wait));
        }
        prompts.extend(self.callback_offer(estimated_wait));
        self.pending_announcement = Some(prompts);
    }

    /// In the queue, after a prompt ended: the pending announcement, else the next piece of
    /// music (or the hold prompt). Each piece plays whole, so an announcement falls at a
    /// natural break and the music goes on after it.
    pub(super) fn hold(&mut self) -> Vec<FlowAction> {
        let prompts = match self.pending_announcement.take() {
            Some(announcement) => {
                self.hold_started = None;
                announcement
            }
            None => {
                self.hold_started = self.now;
                vec![self.hold_music()]
            }
        };
        vec![FlowAction::Play(prompts)]
    }

    /// The group's music, else the hotline's, else the spoken hold prompt.
    fn hold_music(&self) -> PromptRef {
        let group = self.routed.last().and_then(|g| self.routing.groups.get(g));
        let music =
            group
                .and_then(|group| group.music.as_ref())
                .or(self.routing.hotline.music.as_ref());
        let name = music.map_or(QUEUE_HOLD, |music| music.value.as_str());
        self.prompt(name)
    }

    /// Queued: "you are waiting for <organisation>" when the group names one, else the hold
    /// audio.
    pub(super) fn queued(&mut self, queued: QueueCall) -> Vec<FlowAction> {
        self.queued_at = self.now;
        let announce = self
            .routing
            .groups
            .get(&queued.group)
            .and_then(|group| group.announce.as_ref())
            .map(|announce| announce.value.clone());
        let prompts = match announce {
            Some(name) => vec![self.prompt(QUEUE_WAITING_FOR), self.prompt(&name)],
            None => {
                self.hold_started = self.now;
                vec![self.hold_music()]
            }
        };
        vec![FlowAction::Queue(queued), FlowAction::Play(prompts)]
    }

    /// "The expected waiting time is about N minutes", rounded up so callers are not promised
    /// less than the estimate; past the longest phrase recorded, "more than ... minutes".
    pub(super) fn expected_wait(&self, wait: Duration) -> Vec<PromptRef> {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        match u32::try_from(minutes) {
            Ok(minutes) if minutes <= ANNOUNCED_WAIT_MINUTES => vec![
                self.prompt("queue_wait_prefix"),
                self.prompt(&format!("wait_minutes_{minutes}")),
            ],
            _ => vec![self.prompt("queue_wait_long")],
        }
    }

    pub(super) fn transfer_failed(&mut self, group: &str, status: u16) -> Vec<FlowAction> {
        self.step(Step::TransferFailed {
            group: group.to_owned(),
            status,
        });
        let fallback = self.routing.hotline.fallback.value.clone();
        let mut prompts = vec![self.prompt("transfer_failed")];
        if self.routed.contains(&fallback) {
            prompts.push(self.prompt("goodbye"));
            return self.say(prompts, Next::HangUp);
        }
        self.step(Step::Fallback);
        self.say(prompts, Next::RouteGroup(fallback))
    }
}

fn weekday_prompt(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "day_mon",
        Weekday::Tue => "day_tue",
        Weekday::Wed => "day_wed",
        Weekday::Thu => "day_thu",
        Weekday::Fri => "day_fri",
        Weekday::Sat => "day_sat",
        Weekday::Sun => "day_sun",
    }
}
