//! The 19118 call flow driven by `routing.toml`: language menu, the start menu and its
//! submenus, opening hours at the moment of choice, transfer to a group's agent, and the
//! no-input / invalid-input / transfer-failure paths that end at the `fallback` group.
//! Pure: the routing snapshot a call starts with stays its routing to the end.
//!
//! A returning caller whose language is remembered (`remember_language`; the switchboard
//! knows their number) is greeted in it and goes straight to the start menu, told that the
//! change-language key, as their first key there, opens the language menu. The record then
//! has that language but no `language_chosen`: only a key pressed in the language menu is a
//! choice (and only a choice is remembered; its time starts the memory again).
//!
//! Files: this one holds the flow's state, its steps and the event entry point; `navigate`
//! moves through the menus, `transfer` routes to a group.

mod callback;
mod navigate;
pub mod prompts;
mod transfer;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{
    CallFlow, FlowAction, FlowClock, FlowEnding, FlowEvent, FlowSummary, PromptRef, QueueCall,
};
use crate::routing::Routing;

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
    /// In the queued-callback dialogue: wait `digit_timeout` for the caller's next key.
    AwaitCallbackKey,
    /// The call's start (after a pending callback was cancelled).
    Start,
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
    /// Greeted in the language the caller chose on an earlier call; no language menu.
    RememberedLanguage(String),
    /// The change-language key, first key in the start menu: to the language menu.
    ChangeLanguage {
        menu: String,
        digit: char,
    },
    Key {
        menu: String,
        digit: char,
    },
    Invalid {
        menu: String,
        digit: char,
    },
    NoInput {
        menu: String,
    },
    /// The routing-wide operator key, straight to the fallback group.
    Operator {
        menu: String,
        digit: char,
    },
    Closed {
        group: String,
    },
    Transfer {
        group: String,
        target: String,
    },
    TransferFailed {
        group: String,
        status: u16,
    },
    Fallback,
    Queued {
        group: String,
    },
    QueueGaveUp,
    /// Heard the queued-callback offer (once per call).
    CallbackOffered,
    /// Told at the start that their earlier request is pending.
    CallbackPending,
    /// Kept the pending request (and left).
    CallbackKept,
    /// Cancelled the pending request.
    CallbackCancelled,
    /// Asked to be called back on this number (E.164).
    CallbackRequested {
        number: String,
    },
    HangUp,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Language(language) => write!(f, "language {language}"),
            Step::RememberedLanguage(language) => write!(f, "remembered language {language}"),
            Step::ChangeLanguage { menu, digit } => write!(f, "{menu}:{digit} (change language)"),
            Step::Key { menu, digit } => write!(f, "{menu}:{digit}"),
            Step::Invalid { menu, digit } => write!(f, "{menu}:{digit} (invalid)"),
            Step::NoInput { menu } => write!(f, "{menu}: no key"),
            Step::Operator { menu, digit } => write!(f, "{menu}:{digit} (operator)"),
            Step::Closed { group } => write!(f, "{group} closed"),
            Step::Transfer { group, target } => write!(f, "group {group} -> {target}"),
            Step::TransferFailed { group, status } => {
                write!(f, "{group} transfer failed ({status})")
            }
            Step::Fallback => f.write_str("fallback"),
            Step::Queued { group } => write!(f, "queue {group}"),
            Step::QueueGaveUp => f.write_str("queue gave up"),
            Step::CallbackOffered => f.write_str("callback offered"),
            Step::CallbackPending => f.write_str("callback pending"),
            Step::CallbackKept => f.write_str("callback kept"),
            Step::CallbackCancelled => f.write_str("callback cancelled"),
            Step::CallbackRequested { .. } => f.write_str("callback requested"),
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
    /// No-inputs in the current menu (a subset of `attempts`).
    silences: u32,
    /// Groups tried in this routing attempt, so `when_closed` chains cannot loop.
    routed: Vec<String>,
    /// Sent back to the menu by a closed group: the caller's next choice starts a new wait.
    choosing_again: bool,
    steps: Vec<Step>,
    /// The queue announcement waiting for the prompt that plays to end (never cut mid-word).
    pending_announcement: Option<Vec<PromptRef>>,
    /// When the hold piece (music or `queue_hold`) now playing started; an announcement
    /// arriving at that very instant (the ACD's entry announcement) replaces it unheard.
    hold_started: Option<Instant>,
    /// `now` of the event being handled.
    now: Option<Instant>,
    /// The first announcement in the queue opens with "all our consultants are busy".
    queue_announced: bool,
    /// Said before the next prompts (the no-input apology when silence leads to `fallback`).
    preface: Vec<PromptRef>,
    summary: FlowSummary,
    /// Wall time of the event being handled (opening hours are decided at the moment of choice).
    wall: SystemTime,
    /// The language this caller chose on an earlier call, when this routing greets them in it.
    remembered: Option<String>,
    /// Greeted in the remembered language and no key pressed yet in the start menu: the
    /// change-language key opens the language menu, and the start menu's prompt says so.
    offering_change: bool,
    /// When the caller entered the queue (a callback is offered after `offer_after` of it).
    queued_at: Option<Instant>,
    callback: callback::CallbackState,
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
            silences: 0,
            routed: Vec::new(),
            choosing_again: false,
            steps: Vec::new(),
            pending_announcement: None,
            queue_announced: false,
            hold_started: None,
            now: None,
            preface: Vec::new(),
            summary: FlowSummary::default(),
            wall: SystemTime::UNIX_EPOCH,
            remembered: None,
            offering_change: false,
            queued_at: None,
            callback: callback::CallbackState::default(),
        }
    }

    /// The caller chose `language` on an earlier call (as the switchboard remembers it): they
    /// are greeted in it, when this routing remembers languages, offers more than one and
    /// still has this one. Otherwise the call starts as any other.
    pub fn with_remembered_language(mut self, language: Option<&str>) -> Self {
        let hotline = &self.routing.hotline;
        let usable = !hotline.remember_language.value.is_zero() && self.languages().len() > 1;
        self.remembered = language
            .filter(|_| usable)
            .filter(|language| self.languages().iter().any(|l| l == language))
            .map(str::to_owned);
        self
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
            Step::Language(language) | Step::RememberedLanguage(language) => {
                summary.language = Some(language.clone());
            }
            Step::Key { .. } | Step::Operator { .. } => summary.chose_something = true,
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
            Step::CallbackRequested { .. } => summary.ending = Some(FlowEnding::CallbackRequested),
            Step::Fallback if !summary.chose_something => {
                summary.ending = Some(FlowEnding::NoInput)
            }
            _ => {}
        }
        let kind = match &step {
            Step::Language(_) => "language",
            Step::RememberedLanguage(_) => "remembered_language",
            Step::ChangeLanguage { .. } => "change_language",
            Step::Key { .. } => "key",
            Step::Invalid { .. } => "invalid_key",
            Step::NoInput { .. } => "no_input",
            Step::Operator { .. } => "operator",
            Step::Closed { .. } => "closed",
            Step::Transfer { .. } => "transfer",
            Step::TransferFailed { .. } => "transfer_failed",
            Step::Fallback => "fallback",
            Step::Queued { .. } => "queued",
            Step::QueueGaveUp => "queue_gave_up",
            Step::CallbackOffered => "callback_offered",
            Step::CallbackPending => "callback_pending",
            Step::CallbackKept => "callback_kept",
            Step::CallbackCancelled => "callback_cancelled",
            Step::CallbackRequested { .. } => "callback_requested",
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
            Place::Menus(stack) => {
                let mut said = Vec::new();
                if self.offering_change {
                    // "To change the language, press" + the key's name, before the menu.
                    let key = self.routing.hotline.change_language_key.value;
                    said.push(self.prompt(prompts::CHANGE_LANGUAGE));
                    said.extend(super::digit_prompt(key).map(|name| self.prompt(name)));
                }
                let menu = stack.last().and_then(|menu| self.routing.menus.get(menu));
                said.extend(menu.map(|menu| self.prompt(&menu.prompt.value)));
                said
            }
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

    /// The call's start: the welcome and the language menu, or straight into the start
    /// menu in the remembered (or only) language.
    fn start(&mut self) -> Vec<FlowAction> {
        if let Some(language) = self.remembered.clone() {
            return self.start_remembered(language);
        }
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

    /// Cut what plays, forget the key timer, queue `prompts`, then `next`.
    fn say(&mut self, prompts: Vec<PromptRef>, next: Next) -> Vec<FlowAction> {
        self.next = next;
        let mut prompts = prompts;
        if !self.preface.is_empty() {
            prompts.splice(0..0, std::mem::take(&mut self.preface));
        }
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
}

impl CallFlow for MenuFlow {
    fn summary(&self) -> FlowSummary {
        self.summary.clone()
    }

    fn handle(&mut self, clock: FlowClock, event: FlowEvent) -> Vec<FlowAction> {
        self.wall = clock.wall;
        self.now = Some(clock.now);
        match event {
            FlowEvent::Started if self.callback.pending_on_start => self.pending_callback(),
            FlowEvent::Started => self.start(),
            FlowEvent::Digit(digit) => self.digit(digit),
            FlowEvent::PlaybackFinished => self.after_playback(),
            FlowEvent::Timer(DIGIT_TIMER) if self.next == Next::AwaitDigit => {
                let menu = self.current_menu().unwrap_or("language").to_owned();
                self.step(Step::NoInput { menu });
                self.silences += 1;
                self.retry("no_input")
            }
            FlowEvent::Timer(DIGIT_TIMER) if self.next == Next::AwaitCallbackKey => {
                self.callback_timed_out()
            }
            FlowEvent::Timer(_) => vec![],
            FlowEvent::QueuePosition {
                position,
                estimated_wait,
            } if self.next == Next::Hold => {
                self.queue_announcement(position, estimated_wait);
                if self.hold_started.is_some() && self.hold_started == self.now {
                    // Not a word of the hold piece heard yet: the announcement goes first.
                    let mut actions = vec![FlowAction::StopPlayback];
                    actions.extend(self.hold());
                    return actions;
                }
                vec![]
            }
            FlowEvent::QueuePosition { .. } => vec![],
            FlowEvent::QueueGaveUp => {
                self.step(Step::QueueGaveUp);
                let prompts = vec![self.prompt("call_later"), self.prompt("goodbye")];
                self.say(prompts, Next::HangUp)
            }
            FlowEvent::MovedToGroup { group } => {
                // The group's queue already holds the caller; they hear where they are going.
                self.step(Step::Queued {
                    group: group.clone(),
                });
                let mut prompts = vec![self.prompt("transfer_connecting")];
                let announce = self
                    .routing
                    .groups
                    .get(&group)
                    .and_then(|group| group.announce.as_ref())
                    .map(|announce| announce.value.clone());
                prompts.extend(announce.map(|name| self.prompt(&name)));
                self.queue_announced = false;
                self.say(prompts, Next::Hold)
            }
            FlowEvent::TransferFailed(status) => {
                let group = self.routed.last().cloned().unwrap_or_default();
                self.transfer_failed(&group, status)
            }
        }
    }
}

#[cfg(test)]
mod remembered_tests;
#[cfg(test)]
mod tests;
