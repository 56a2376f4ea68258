//! The queued-callback dialogue of a waiting caller: the offer in the queue announcements
//! once the expected wait passes the group's `offer_after`, the caller's number read back
//! digit by digit, confirmation with 1 or another number typed and ended with #, checked
//! (Lithuanian mobile or landline, or a full foreign number), and the thanks before the call
//! ends. The caller stays queued throughout: an agent freed meanwhile still takes the call.

use std::time::Duration;

use super::prompts::{
    CALLBACK_ACCEPTED, CALLBACK_CANCELLED, CALLBACK_CONFIRM, CALLBACK_ENTER_NUMBER,
    CALLBACK_INVALID_NUMBER, CALLBACK_KEPT, CALLBACK_OFFER, CALLBACK_PENDING, CALLBACK_YOUR_NUMBER,
    NUMBER_PLUS,
};
use super::{MenuFlow, Next, Place, Step};
use crate::ivr::{digit_prompt, FlowAction, PromptRef};
use crate::numbers::NumberRules;
use crate::routing::model::Callback;

/// Longest number a caller may type (E.164 is at most 15 digits, plus an international prefix).
const MAX_TYPED_DIGITS: usize = 18;
/// Refused numbers in a row before the caller is left to wait on (the offer stays).
const MAX_INVALID_NUMBERS: u32 = 2;

/// Where the caller is in the callback dialogue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum Dialogue {
    /// Nothing offered yet (the group has no callback, or the wait is short).
    #[default]
    NotOffered,
    /// The announcements offer it: the group's key asks for a callback.
    Offered,
    /// The caller's number was read back: 1 confirms, a digit starts another number.
    Confirming { number: String },
    /// Typing another number, ended with #.
    Typing { digits: String },
    /// Asked for: the call ends after the thanks.
    Requested,
    /// A caller whose earlier request is still pending was told so: 1 keeps it, 2 cancels.
    Pending,
}

/// What the flow knows for the dialogue: the caller's number and the country's dialling rules.
#[derive(Debug, Clone, Default)]
pub(super) struct CallbackState {
    pub(super) dialogue: Dialogue,
    /// The caller's number when it may be called back (E.164), else they are asked to type one.
    pub(super) caller: Option<String>,
    pub(super) rules: Option<NumberRules>,
    /// The trunks residents can be dialled through.
    trunks: Vec<String>,
    invalid_numbers: u32,
    /// The caller has a request pending (in this language): they hear so first.
    pub(super) pending_on_start: bool,
    pending_language: Option<String>,
}

impl MenuFlow {
    /// The caller's number (as the switchboard knows it), the dialling rules that check
    /// numbers typed for a callback and the trunks configured; without them, or without the
    /// group's trunk among them, no callback is offered.
    pub fn with_callback_numbers(
        mut self,
        caller: Option<&str>,
        rules: NumberRules,
        trunks: &[String],
    ) -> Self {
        self.callback.caller = caller.and_then(|caller| rules.callback_number(caller).ok());
        self.callback.rules = Some(rules);
        self.callback.trunks = trunks.to_vec();
        self
    }

    /// The caller already asked to be called back (the request, in `language`, is pending):
    /// the call starts by saying so, and lets them keep or cancel it.
    pub fn with_pending_callback(mut self, language: Option<&str>) -> Self {
        self.callback.pending_on_start = language.is_some();
        self.callback.pending_language = language.map(str::to_owned);
        self
    }

    /// "You have already asked us to call you back: 1 keeps it, 2 cancels it."
    pub(super) fn pending_callback(&mut self) -> Vec<FlowAction> {
        self.callback.dialogue = Dialogue::Pending;
        self.step(Step::CallbackPending);
        let prompts = vec![self.pending_prompt(CALLBACK_PENDING)];
        self.say(prompts, Next::AwaitCallbackKey)
    }

    fn pending_prompt(&self, name: &str) -> PromptRef {
        let language = self.callback.pending_language.as_deref();
        PromptRef::new(language.unwrap_or(&self.language), name)
    }

    /// A key after the pending request was mentioned.
    fn pending_digit(&mut self, digit: char) -> Vec<FlowAction> {
        match digit {
            '1' => {
                self.callback.dialogue = Dialogue::NotOffered;
                self.step(Step::CallbackKept);
                self.summary.heard_information = true;
                self.place = Place::Leaving;
                let prompts = vec![self.pending_prompt(CALLBACK_KEPT)];
                self.say(prompts, Next::HangUp)
            }
            '2' => {
                self.callback.dialogue = Dialogue::NotOffered;
                self.step(Step::CallbackCancelled);
                let mut actions = vec![FlowAction::CancelCallback];
                let prompts = vec![self.pending_prompt(CALLBACK_CANCELLED)];
                actions.extend(self.say(prompts, Next::Start));
                actions
            }
            _ => Vec::new(),
        }
    }

    /// The queued group's callback settings, when a callback can be offered at all.
    fn callback_settings(&self) -> Option<&Callback> {
        self.callback.rules.as_ref()?;
        let group = self.summary.group.as_ref()?;
        let callback = self.routing.groups.get(group)?.callback.as_ref()?;
        self.callback
            .trunks
            .contains(&callback.trunk.value)
            .then_some(callback)
    }

    /// The offer for a queue announcement: made once the expected wait passes `offer_after`
    /// (or, with no estimate yet, once the caller has waited that long), then repeated with
    /// every announcement while the caller waits.
    pub(super) fn callback_offer(&mut self, estimated_wait: Option<Duration>) -> Vec<PromptRef> {
        let Some(callback) = self.callback_settings() else {
            return Vec::new();
        };
        let (offer_after, key) = (callback.offer_after, callback.key.value);
        if self.callback.dialogue == Dialogue::NotOffered {
            let waited = match (self.now, self.queued_at) {
                (Some(now), Some(queued)) => now.saturating_duration_since(queued),
                _ => Duration::ZERO,
            };
            let long = match estimated_wait {
                Some(wait) => wait > offer_after,
                None => waited >= offer_after,
            };
            if !long {
                return Vec::new();
            }
            self.callback.dialogue = Dialogue::Offered;
            self.step(Step::CallbackOffered);
        }
        if self.callback.dialogue != Dialogue::Offered {
            return Vec::new();
        }
        let mut prompts = vec![self.prompt(CALLBACK_OFFER)];
        prompts.extend(digit_prompt(key).map(|name| self.prompt(name)));
        prompts
    }

    /// A key while queued (holding or in the dialogue); false when it means nothing here.
    pub(super) fn callback_digit(&mut self, digit: char) -> Option<Vec<FlowAction>> {
        if self.callback.dialogue == Dialogue::Pending {
            return Some(self.pending_digit(digit));
        }
        let key = self.callback_settings()?.key.value;
        match self.callback.dialogue.clone() {
            Dialogue::Offered if digit == key => Some(self.read_back()),
            Dialogue::Confirming { number } if digit == '1' => Some(self.accept(number)),
            Dialogue::Confirming { .. } | Dialogue::Typing { .. } if digit == '*' => {
                Some(self.back_to_hold())
            }
            Dialogue::Confirming { .. } if digit.is_ascii_digit() => {
                self.callback.dialogue = Dialogue::Typing {
                    digits: digit.to_string(),
                };
                Some(self.say(Vec::new(), Next::AwaitCallbackKey))
            }
            Dialogue::Typing { digits } if digit == '#' => Some(self.typed(&digits)),
            Dialogue::Typing { mut digits } if digit.is_ascii_digit() => {
                digits.push(digit);
                if digits.len() > MAX_TYPED_DIGITS {
                    return Some(self.typed(&digits));
                }
                self.callback.dialogue = Dialogue::Typing { digits };
                Some(self.say(Vec::new(), Next::AwaitCallbackKey))
            }
            _ => None,
        }
    }

    /// No key for a while in the dialogue: back to the music, the offer still open.
    pub(super) fn callback_timed_out(&mut self) -> Vec<FlowAction> {
        if self.callback.dialogue == Dialogue::Pending {
            // No answer: the request stays, and the call goes on as any other.
            self.callback.dialogue = Dialogue::NotOffered;
            return self.start();
        }
        self.back_to_hold()
    }

    /// "We will call you back on the number" + its digits + "press 1 to confirm..."; with no
    /// usable number of the caller's, "please type the number...".
    fn read_back(&mut self) -> Vec<FlowAction> {
        let Some(number) = self.callback.caller.clone() else {
            self.callback.dialogue = Dialogue::Typing {
                digits: String::new(),
            };
            let prompts = vec![self.prompt(CALLBACK_ENTER_NUMBER)];
            return self.say(prompts, Next::AwaitCallbackKey);
        };
        let mut prompts = vec![self.prompt(CALLBACK_YOUR_NUMBER), self.prompt(NUMBER_PLUS)];
        prompts.extend(
            number
                .chars()
                .filter_map(digit_prompt)
                .map(|name| self.prompt(name)),
        );
        prompts.push(self.prompt(CALLBACK_CONFIRM));
        self.callback.dialogue = Dialogue::Confirming { number };
        self.say(prompts, Next::AwaitCallbackKey)
    }

    fn typed(&mut self, digits: &str) -> Vec<FlowAction> {
        let checked = self
            .callback
            .rules
            .as_ref()
            .map(|rules| rules.callback_number(digits));
        match checked {
            Some(Ok(number)) => self.accept(number),
            _ => {
                self.callback.invalid_numbers += 1;
                let mut prompts = vec![self.prompt(CALLBACK_INVALID_NUMBER)];
                if self.callback.invalid_numbers >= MAX_INVALID_NUMBERS {
                    self.callback.invalid_numbers = 0;
                    self.callback.dialogue = Dialogue::Offered;
                    return self.say(prompts, Next::Hold);
                }
                prompts.push(self.prompt(CALLBACK_ENTER_NUMBER));
                self.callback.dialogue = Dialogue::Typing {
                    digits: String::new(),
                };
                self.say(prompts, Next::AwaitCallbackKey)
            }
        }
    }

    fn accept(&mut self, number: String) -> Vec<FlowAction> {
        self.callback.dialogue = Dialogue::Requested;
        self.step(Step::CallbackRequested {
            number: number.clone(),
        });
        let mut actions = vec![FlowAction::RequestCallback { number }];
        actions.extend(self.say(vec![self.prompt(CALLBACK_ACCEPTED)], Next::HangUp));
        actions
    }

    fn back_to_hold(&mut self) -> Vec<FlowAction> {
        self.callback.dialogue = Dialogue::Offered;
        self.say(Vec::new(), Next::Hold)
    }
}
