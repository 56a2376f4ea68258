//! The 19118 call flow driven by `routing.toml`: language menu, the start menu and its
//! submenus, opening hours at the moment of choice, transfer to a group's agent, and the
//! no-input / invalid-input / transfer-failure paths that end at the `fallback` group.
//! Pure: the routing snapshot a call starts with stays its routing to the end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc, Weekday};

use super::{
    CallFlow, FlowAction, FlowClock, FlowEnding, FlowEvent, FlowSummary, PromptRef, QueueCall,
};
use crate::routing::check::{ANNOUNCED_QUEUE_POSITIONS, ANNOUNCED_WAIT_MINUTES};
use crate::routing::model::{Action, AfterPlay, AgentTarget, Transfer, WhenClosed};
use crate::routing::{RelativeDay, Routing};

/// The flow's only timer: waiting for a key after a menu prompt ended.
const DIGIT_TIMER: u32 = 1;

/// What happens when the prompts queued now have been heard in full.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// Wait `digit_timeout` for a key.
    AwaitDigit,
    ReplayMenu,
    Back,
    EnterMenu(String),
    RouteGroup(String),
    Transfer {
        group: String,
        target: String,
    },
    Queue(QueueCall),
    /// In a queue: the hold prompt again after each announcement or hold prompt.
    Hold,
    HangUp,
    /// Transferring, or the call is ending: keys no longer matter.
    Nothing,
}

/// Where the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    LanguageMenu,
    /// The menu stack; the last is the current menu.
    Menus(Vec<String>),
    /// Past the menus: being routed, transferred or hung up.
    Leaving,
}

/// One step of the caller's path, for logs, call records and `hotline simulate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Language(String),
    Key { menu: String, digit: char },
    Invalid { menu: String, digit: char },
    NoInput { menu: String },
    Closed { group: String },
    Transfer { group: String, target: String },
    TransferFailed { group: String, status: u16 },
    Fallback,
    Queued { group: String },
    QueueGaveUp,
    HangUp,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Language(language) => write!(f, "language {language}"),
            Step::Key { menu, digit } => write!(f, "{menu}:{digit}"),
            Step::Invalid { menu, digit } => write!(f, "{menu}:{digit} (invalid)"),
            Step::NoInput { menu } => write!(f, "{menu}: no key"),
            Step::Closed { group } => write!(f, "{group} closed"),
            Step::Transfer { group, target } => write!(f, "group {group} -> {target}"),
            Step::TransferFailed { group, status } => {
                write!(f, "{group} transfer failed ({status})")
            }
            Step::Fallback => f.write_str("fallback"),
            Step::Queued { group } => write!(f, "queue {group}"),
            Step::QueueGaveUp => f.write_str("queue gave up"),
            Step::HangUp => f.write_str("hang up"),
        }
    }
}

#[derive(Debug)]
pub struct MenuFlow {
    routing: Arc<Routing>,
    language: String,
    place: Place,
    next: Next,
    attempts: u32,
    /// Groups tried in this routing attempt, so `when_closed` chains cannot loop.
    routed: Vec<String>,
    /// Sent back to the menu by a closed group: the caller's next choice starts a new wait.
    choosing_again: bool,
    steps: Vec<Step>,
    summary: FlowSummary,
    /// Wall time of the event being handled (opening hours are decided at the moment of choice).
    wall: SystemTime,
}

impl MenuFlow {
    pub fn new(routing: Arc<Routing>) -> Self {
        let language = routing.hotline.default_language.value.clone();
        Self {
            routing,
            language,
            place: Place::LanguageMenu,
            next: Next::Nothing,
            attempts: 0,
            routed: Vec::new(),
            choosing_again: false,
            steps: Vec::new(),
            summary: FlowSummary::default(),
            wall: SystemTime::UNIX_EPOCH,
        }
    }

    pub fn language(&self) -> &str {
        &self.language
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The steps as one line, e.g. `language en > main:2 > group heating -> sip:...`.
    pub fn path_text(&self) -> String {
        let parts: Vec<String> = self.steps.iter().map(Step::to_string).collect();
        parts.join(" > ")
    }

    /// Records a step with the time it happened and what it means for the call record.
    fn step(&mut self, step: Step) {
        let at = self.wall;
        let summary = &mut self.summary;
        match &step {
            Step::Language(language) => {
                summary.language = Some(language.clone());
                summary.language_chosen = Some(at);
            }
            Step::Key { .. } => summary.chose_something = true,
            Step::Closed { group } => {
                summary.group = Some(group.clone());
                summary.group_chosen.get_or_insert(at);
                summary.ending = Some(FlowEnding::Closed);
            }
            Step::Transfer { group, .. } => {
                summary.group = Some(group.clone());
                summary.group_chosen.get_or_insert(at);
            }
            Step::Queued { group } => {
                summary.group = Some(group.clone());
                summary.group_chosen.get_or_insert(at);
                summary.queue_entered.get_or_insert(at);
            }
            Step::TransferFailed { .. } => summary.ending = Some(FlowEnding::TransferFailed),
            Step::QueueGaveUp => summary.ending = Some(FlowEnding::QueueGaveUp),
            Step::Fallback if !summary.chose_something => {
                summary.ending = Some(FlowEnding::NoInput)
            }
            _ => {}
        }
        let kind = match &step {
            Step::Language(_) => "language",
            Step::Key { .. } => "key",
            Step::Invalid { .. } => "invalid_key",
            Step::NoInput { .. } => "no_input",
            Step::Closed { .. } => "closed",
            Step::Transfer { .. } => "transfer",
            Step::TransferFailed { .. } => "transfer_failed",
            Step::Fallback => "fallback",
            Step::Queued { .. } => "queued",
            Step::QueueGaveUp => "queue_gave_up",
            Step::HangUp => "hang_up",
        };
        summary.steps.push((at, kind.to_owned(), step.to_string()));
        self.steps.push(step);
        self.summary.path = self.path_text();
    }

    fn prompt(&self, name: &str) -> PromptRef {
        PromptRef::new(&self.language, name)
    }

    fn languages(&self) -> Vec<String> {
        self.routing
            .hotline
            .languages
            .value
            .iter()
            .map(|l| l.value.clone())
            .collect()
    }

    fn current_menu(&self) -> Option<&str> {
        match &self.place {
            Place::Menus(stack) => stack.last().map(String::as_str),
            _ => None,
        }
    }

    fn menu_prompt(&self) -> Vec<PromptRef> {
        match &self.place {
            Place::LanguageMenu => self.language_menu(),
            Place::Menus(stack) => stack
                .last()
                .and_then(|menu| self.routing.menus.get(menu))
                .map(|menu| vec![self.prompt(&menu.prompt.value)])
                .unwrap_or_default(),
            Place::Leaving => vec![],
        }
    }

    /// Each option in its own language: the caller may not understand the default one.
    fn language_menu(&self) -> Vec<PromptRef> {
        self.languages()
            .iter()
            .map(|lang| PromptRef::new(lang, &format!("language_menu_{lang}")))
            .collect()
    }

    /// Cut what plays, forget the key timer, queue `prompts`, then `next`.
    fn say(&mut self, prompts: Vec<PromptRef>, next: Next) -> Vec<FlowAction> {
        self.next = next;
        let mut actions = vec![
            FlowAction::StopPlayback,
            FlowAction::CancelTimer(DIGIT_TIMER),
        ];
        if prompts.is_empty() {
            // Nothing to wait for: act as if it had been heard.
            actions.extend(self.after_playback());
        } else {
            actions.push(FlowAction::Play(prompts));
        }
        actions
    }

    fn enter_menu(&mut self, menu: &str, push: bool) -> Vec<FlowAction> {
        match &mut self.place {
            Place::Menus(stack) if push => stack.push(menu.to_owned()),
            Place::Menus(stack) => {
                stack.pop();
                stack.push(menu.to_owned());
            }
            _ => self.place = Place::Menus(vec![menu.to_owned()]),
        }
        self.attempts = 0;
        let prompts = self.menu_prompt();
        self.say(prompts, Next::AwaitDigit)
    }

    fn go_back(&mut self) -> Vec<FlowAction> {
        if let Place::Menus(stack) = &mut self.place {
            if stack.len() > 1 {
                stack.pop();
            }
        }
        self.attempts = 0;
        let prompts = self.menu_prompt();
        self.say(prompts, Next::AwaitDigit)
    }

    fn choose_language(&mut self, language: String) -> Vec<FlowAction> {
        self.step(Step::Language(language.clone()));
        self.language = language;
        let start = self.routing.hotline.start.value.clone();
        self.enter_menu(&start, false)
    }

    /// No input or an invalid key: try again, up to `max_attempts`, then give up.
    fn retry(&mut self, apology: &str) -> Vec<FlowAction> {
        self.attempts += 1;
        if self.attempts >= self.routing.hotline.max_attempts {
            return self.give_up();
        }
        let mut prompts = vec![self.prompt(apology)];
        prompts.extend(self.menu_prompt());
        self.say(prompts, Next::AwaitDigit)
    }

    fn give_up(&mut self) -> Vec<FlowAction> {
        match self.place {
            // Nobody chose a language: serve them in the default one.
            Place::LanguageMenu => {
                let default = self.routing.hotline.default_language.value.clone();
                self.choose_language(default)
            }
            _ => {
                self.step(Step::Fallback);
                let fallback = self.routing.hotline.fallback.value.clone();
                self.route_group(&fallback)
            }
        }
    }

    fn digit(&mut self, digit: char) -> Vec<FlowAction> {
        match self.place.clone() {
            Place::LanguageMenu => {
                let languages = self.languages();
                let chosen = digit
                    .to_digit(10)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|index| languages.get(index).cloned());
                match chosen {
                    Some(language) => self.choose_language(language),
                    None => {
                        self.step(Step::Invalid {
                            menu: "language".into(),
                            digit,
                        });
                        self.retry("invalid_choice")
                    }
                }
            }
            Place::Menus(stack) => {
                let Some(menu_name) = stack.last().cloned() else {
                    return vec![];
                };
                let action = self
                    .routing
                    .menus
                    .get(&menu_name)
                    .and_then(|menu| menu.options.get(&digit.to_string()))
                    .map(|option| option.action.clone());
                let Some(action) = action else {
                    self.step(Step::Invalid {
                        menu: menu_name,
                        digit,
                    });
                    return self.retry("invalid_choice");
                };
                self.step(Step::Key {
                    menu: menu_name,
                    digit,
                });
                self.apply(action)
            }
            Place::Leaving => vec![],
        }
    }

    fn apply(&mut self, action: Action) -> Vec<FlowAction> {
        match action {
            Action::Group(group) => self.route_group(&group.value),
            Action::Menu(menu) => self.enter_menu(&menu.value, true),
            Action::Play { prompt, then } => {
                self.summary.heard_information = true;
                let next = match then {
                    AfterPlay::Repeat => Next::ReplayMenu,
                    AfterPlay::Hangup => {
                        self.place = Place::Leaving;
                        return self.say(
                            vec![self.prompt(&prompt.value), self.prompt("goodbye")],
                            Next::HangUp,
                        );
                    }
                    AfterPlay::Back => Next::Back,
                    AfterPlay::Menu(menu) => Next::EnterMenu(menu.value),
                };
                let prompts = vec![self.prompt(&prompt.value)];
                self.say(prompts, next)
            }
            Action::Repeat => {
                let prompts = self.menu_prompt();
                self.say(prompts, Next::AwaitDigit)
            }
            Action::Back => self.go_back(),
            Action::Hangup => self.hang_up(),
        }
    }

    fn hang_up(&mut self) -> Vec<FlowAction> {
        self.step(Step::HangUp);
        self.place = Place::Leaving;
        let goodbye = vec![self.prompt("goodbye")];
        self.say(goodbye, Next::HangUp)
    }

    /// The moment of choice: the group's hours decide between its agents and the closed message.
    fn route_group(&mut self, group_name: &str) -> Vec<FlowAction> {
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

    /// "The expected waiting time is about N minutes", rounded up so callers are not promised
    /// less than the estimate; past the longest phrase recorded, "more than ... minutes".
    fn expected_wait(&self, wait: Duration) -> Vec<PromptRef> {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        match u32::try_from(minutes) {
            Ok(minutes) if minutes <= ANNOUNCED_WAIT_MINUTES => vec![
                self.prompt("queue_wait_prefix"),
                self.prompt(&format!("wait_minutes_{minutes}")),
            ],
            _ => vec![self.prompt("queue_wait_long")],
        }
    }

    fn transfer_failed(&mut self, group: &str, status: u16) -> Vec<FlowAction> {
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

    fn after_playback(&mut self) -> Vec<FlowAction> {
        match std::mem::replace(&mut self.next, Next::Nothing) {
            Next::AwaitDigit => {
                self.next = Next::AwaitDigit;
                vec![FlowAction::StartTimer {
                    id: DIGIT_TIMER,
                    after: self.routing.hotline.digit_timeout,
                }]
            }
            Next::ReplayMenu => {
                let prompts = self.menu_prompt();
                self.say(prompts, Next::AwaitDigit)
            }
            Next::Back => self.go_back(),
            Next::EnterMenu(menu) => self.enter_menu(&menu, true),
            Next::RouteGroup(group) => self.route_group(&group),
            Next::Transfer { group, target } => {
                self.step(Step::Transfer {
                    group,
                    target: target.clone(),
                });
                vec![FlowAction::Transfer { target }]
            }
            Next::Queue(queued) => {
                self.step(Step::Queued {
                    group: queued.group.clone(),
                });
                self.next = Next::Hold;
                vec![
                    FlowAction::Queue(queued),
                    FlowAction::Play(vec![self.prompt("queue_hold")]),
                ]
            }
            Next::Hold => {
                self.next = Next::Hold;
                vec![FlowAction::Play(vec![self.prompt("queue_hold")])]
            }
            Next::HangUp => vec![FlowAction::HangUp],
            Next::Nothing => vec![],
        }
    }
}

impl CallFlow for MenuFlow {
    fn summary(&self) -> FlowSummary {
        self.summary.clone()
    }

    fn handle(&mut self, clock: FlowClock, event: FlowEvent) -> Vec<FlowAction> {
        self.wall = clock.wall;
        match event {
            FlowEvent::Started => {
                let mut prompts = vec![self.prompt("welcome")];
                if self.languages().len() > 1 {
                    prompts.extend(self.language_menu());
                    self.say(prompts, Next::AwaitDigit)
                } else {
                    // One language: no language menu; the welcome leads into the start menu.
                    // The caller is served in it, although they did not choose it.
                    self.summary.language = Some(self.language.clone());
                    let start = self.routing.hotline.start.value.clone();
                    self.place = Place::Menus(vec![start]);
                    prompts.extend(self.menu_prompt());
                    self.say(prompts, Next::AwaitDigit)
                }
            }
            FlowEvent::Digit(digit) => self.digit(digit),
            FlowEvent::PlaybackFinished => self.after_playback(),
            FlowEvent::Timer(DIGIT_TIMER) if self.next == Next::AwaitDigit => {
                let menu = self.current_menu().unwrap_or("language").to_owned();
                self.step(Step::NoInput { menu });
                self.retry("no_input")
            }
            FlowEvent::Timer(_) => vec![],
            FlowEvent::QueuePosition {
                position,
                estimated_wait,
            } if self.next == Next::Hold => {
                let mut prompts = if (1..=ANNOUNCED_QUEUE_POSITIONS).contains(&position) {
                    vec![
                        self.prompt("queue_position_prefix"),
                        self.prompt(&format!("number_{position}")),
                        self.prompt("queue_position_suffix"),
                    ]
                } else {
                    vec![self.prompt("queue_hold")]
                };
                if let Some(wait) = estimated_wait {
                    prompts.extend(self.expected_wait(wait));
                }
                self.say(prompts, Next::Hold)
            }
            FlowEvent::QueuePosition { .. } => vec![],
            FlowEvent::QueueGaveUp => {
                self.step(Step::QueueGaveUp);
                let prompts = vec![self.prompt("call_later"), self.prompt("goodbye")];
                self.say(prompts, Next::HangUp)
            }
            FlowEvent::TransferFailed(status) => {
                let group = self.routed.last().cloned().unwrap_or_default();
                self.transfer_failed(&group, status)
            }
        }
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

#[cfg(test)]
mod tests;
