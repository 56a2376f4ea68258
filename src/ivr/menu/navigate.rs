//! Moving through the menus: keys, actions, going back, retries and the no-input /
//! invalid-input path to the fallback group, and what follows a finished prompt; the start
//! in a remembered language and the way from there to the language menu.

use super::{prompts, MenuFlow, Next, Place, Step, DIGIT_TIMER};
use crate::ivr::FlowAction;
use crate::routing::model::{Action, AfterPlay};

impl MenuFlow {
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
        self.silences = 0;
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
        self.silences = 0;
        let prompts = self.menu_prompt();
        self.say(prompts, Next::AwaitDigit)
    }

    /// On to the start menu in `language`; `chosen` when the caller pressed its key (not when
    /// silence left them in the language they were greeted in).
    fn choose_language(&mut self, language: String, chosen: bool) -> Vec<FlowAction> {
        self.step(Step::Language(language.clone()));
        if chosen {
            self.summary.language_chosen = Some(self.wall);
        }
        self.language = language;
        let start = self.routing.hotline.start.value.clone();
        self.enter_menu(&start, false)
    }

    /// Welcome in the remembered language, then the change-language offer and the start menu.
    pub(super) fn start_remembered(&mut self, language: String) -> Vec<FlowAction> {
        self.step(Step::RememberedLanguage(language.clone()));
        self.language = language;
        self.offering_change = true;
        let start = self.routing.hotline.start.value.clone();
        self.place = Place::Menus(vec![start]);
        let mut said = vec![self.prompt(prompts::WELCOME)];
        said.extend(self.menu_prompt());
        self.say(said, Next::AwaitDigit)
    }

    /// The change-language key: the language menu, as a new caller hears it after the welcome.
    fn change_language(&mut self, menu: String, digit: char) -> Vec<FlowAction> {
        self.step(Step::ChangeLanguage { menu, digit });
        self.place = Place::LanguageMenu;
        self.attempts = 0;
        self.silences = 0;
        let menu = self.language_menu();
        self.say(menu, Next::AwaitDigit)
    }

    /// No input or an invalid key: try again, up to `max_attempts` tries, and for silence up
    /// to `language_no_input` / `menu_no_input`, then give up: a silent caller reaches a person
    /// quickly instead of hearing every menu again.
    pub(super) fn retry(&mut self, apology: &str) -> Vec<FlowAction> {
        self.attempts += 1;
        let hotline = &self.routing.hotline;
        let silence_limit = match self.place {
            Place::LanguageMenu => hotline.language_no_input,
            _ => hotline.menu_no_input,
        };
        if self.attempts >= hotline.max_attempts || self.silences >= silence_limit {
            if apology == "no_input" && self.place != Place::LanguageMenu {
                // "We did not receive your choice", then the fallback's own prompts.
                self.preface = vec![self.prompt(apology)];
            }
            return self.give_up();
        }
        let mut prompts = vec![self.prompt(apology)];
        prompts.extend(self.menu_prompt());
        self.say(prompts, Next::AwaitDigit)
    }

    fn give_up(&mut self) -> Vec<FlowAction> {
        self.offering_change = false;
        match self.place {
            // Nobody chose a language: serve them in the one they were greeted in (the
            // default, or the remembered one of a caller who asked to change it).
            Place::LanguageMenu => {
                let greeted = self.language.clone();
                self.choose_language(greeted, false)
            }
            _ => {
                self.step(Step::Fallback);
                let fallback = self.routing.hotline.fallback.value.clone();
                self.route_group(&fallback)
            }
        }
    }

    /// The operator key: straight to the fallback group in the current language (the default
    /// one in the language menu), from wherever the caller is in the menus.
    fn operator(&mut self, digit: char) -> Vec<FlowAction> {
        let menu = self.current_menu().unwrap_or("language").to_owned();
        if self.place == Place::LanguageMenu {
            self.summary.language = Some(self.language.clone());
        }
        self.step(Step::Operator { menu, digit });
        let fallback = self.routing.hotline.fallback.value.clone();
        self.route_group(&fallback)
    }

    pub(super) fn digit(&mut self, digit: char) -> Vec<FlowAction> {
        if self.next == Next::AwaitCallbackKey && self.place != Place::Leaving {
            // The start's "your callback is pending" question.
            return self.callback_digit(digit).unwrap_or_default();
        }
        // The change-language key counts only as the first key in the start menu.
        let offered = std::mem::take(&mut self.offering_change);
        let operator = self.routing.hotline.operator_key.as_ref().map(|k| k.value);
        if operator == Some(digit) && self.place != Place::Leaving {
            return self.operator(digit);
        }
        if offered && digit == self.routing.hotline.change_language_key.value {
            if let Some(menu) = self.current_menu().map(str::to_owned) {
                return self.change_language(menu, digit);
            }
        }
        match self.place.clone() {
            Place::LanguageMenu => {
                let languages = self.languages();
                let chosen = digit
                    .to_digit(10)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|index| languages.get(index).cloned());
                match chosen {
                    Some(language) => self.choose_language(language, true),
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
            Place::Leaving if matches!(self.next, Next::Hold | Next::AwaitCallbackKey) => {
                self.callback_digit(digit).unwrap_or_default()
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

    pub(super) fn hang_up(&mut self) -> Vec<FlowAction> {
        self.step(Step::HangUp);
        self.place = Place::Leaving;
        let goodbye = vec![self.prompt("goodbye")];
        self.say(goodbye, Next::HangUp)
    }

    pub(super) fn after_playback(&mut self) -> Vec<FlowAction> {
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
                self.queued(queued)
            }
            Next::Hold => {
                self.next = Next::Hold;
                self.hold()
            }
            Next::Start => self.start(),
            Next::AwaitCallbackKey => {
                self.next = Next::AwaitCallbackKey;
                vec![FlowAction::StartTimer {
                    id: DIGIT_TIMER,
                    after: self.routing.hotline.digit_timeout,
                }]
            }
            Next::HangUp => vec![FlowAction::HangUp],
            Next::Nothing => vec![],
        }
    }
}
