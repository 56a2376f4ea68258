//! The prompts the menu flow plays by itself (not named in `routing.toml`), and which of them
//! a given routing can make it play: `hotline check` requires exactly these, in every language.

use crate::routing::check::{ANNOUNCED_QUEUE_POSITIONS, ANNOUNCED_WAIT_MINUTES};
use crate::routing::model::Transfer;
use crate::routing::Routing;

pub const WELCOME: &str = "welcome";
pub const INVALID_CHOICE: &str = "invalid_choice";
pub const NO_INPUT: &str = "no_input";
pub const GOODBYE: &str = "goodbye";
pub const TRANSFER_CONNECTING: &str = "transfer_connecting";
pub const TRANSFER_FAILED: &str = "transfer_failed";
pub const CLOSED_PREFIX: &str = "closed_prefix";
pub const QUEUE_WAITING_FOR: &str = "queue_waiting_for";
pub const ALL_AGENTS_BUSY: &str = "all_agents_busy";
pub const QUEUE_HOLD: &str = "queue_hold";
pub const QUEUE_POSITION_PREFIX: &str = "queue_position_prefix";
pub const QUEUE_POSITION_SUFFIX: &str = "queue_position_suffix";
pub const QUEUE_WAIT_PREFIX: &str = "queue_wait_prefix";
pub const QUEUE_WAIT_LONG: &str = "queue_wait_long";
pub const CALL_LATER: &str = "call_later";
/// Said with the change-language key to a caller greeted in their remembered language.
pub const CHANGE_LANGUAGE: &str = "change_language";
/// The queued callback: offer (+ the key's name), number read back, confirmation, thanks.
pub const CALLBACK_OFFER: &str = "callback_offer";
pub const CALLBACK_YOUR_NUMBER: &str = "callback_your_number";
pub const NUMBER_PLUS: &str = "number_plus";
pub const CALLBACK_CONFIRM: &str = "callback_confirm";
pub const CALLBACK_ENTER_NUMBER: &str = "callback_enter_number";
pub const CALLBACK_INVALID_NUMBER: &str = "callback_invalid_number";
pub const CALLBACK_ACCEPTED: &str = "callback_accepted";
/// Said to the resident called back, before the group's `announce` prompt.
pub const CALLBACK_INTRO: &str = "callback_intro";
/// A caller whose request is pending: keep it (1) or cancel it (2).
pub const CALLBACK_PENDING: &str = "callback_pending";
pub const CALLBACK_KEPT: &str = "callback_kept";
pub const CALLBACK_CANCELLED: &str = "callback_cancelled";

/// Every prompt the flow itself can play with this routing (menus, `play` options, group
/// names, `language_menu_*` and the opening-time `hour_*`/`minute_*` are the file's own and
/// checked at their keys). Derived from the flow's paths: the closed message only when a
/// group has hours, the queue's prompts only when a group bridges, the change-language
/// prompt and its key's name only when languages are remembered and there is a choice.
pub fn flow_prompts(routing: &Routing) -> Vec<String> {
    let mut names: Vec<String> = [
        WELCOME,
        INVALID_CHOICE,
        NO_INPUT,
        GOODBYE,
        TRANSFER_CONNECTING,
        TRANSFER_FAILED,
    ]
    .map(String::from)
    .to_vec();
    let hotline = &routing.hotline;
    if !hotline.remember_language.value.is_zero() && hotline.languages.value.len() > 1 {
        names.push(CHANGE_LANGUAGE.to_owned());
        if let Some(key) = crate::ivr::digit_prompt(hotline.change_language_key.value) {
            names.push(key.to_owned());
        }
    }
    let groups = || routing.groups.values();
    if groups().any(|group| group.hours.is_some()) {
        names.extend(["closed_prefix", "today", "tomorrow", "time_at"].map(String::from));
        // "opens again on <day>" for every day a group with hours opens.
        let mut days = std::collections::BTreeSet::new();
        for hours in routing.hours.values() {
            for (weekday, _) in &hours.weekly_at {
                days.insert(weekday.num_days_from_monday());
            }
        }
        let day_names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        for day in days {
            if let Some(name) = day_names.get(day as usize) {
                names.push(format!("day_{name}"));
            }
        }
    }
    if groups().any(|group| group.transfer == Transfer::Bridge) {
        names.extend(
            [
                ALL_AGENTS_BUSY,
                QUEUE_HOLD,
                QUEUE_POSITION_PREFIX,
                QUEUE_POSITION_SUFFIX,
                QUEUE_WAIT_PREFIX,
                QUEUE_WAIT_LONG,
                CALL_LATER,
            ]
            .map(String::from),
        );
        names.extend((1..=ANNOUNCED_QUEUE_POSITIONS).map(|n| format!("number_{n}")));
        names.extend((1..=ANNOUNCED_WAIT_MINUTES).map(|n| format!("wait_minutes_{n}")));
        let named =
            groups().any(|group| group.transfer == Transfer::Bridge && group.announce.is_some());
        if named {
            names.push(QUEUE_WAITING_FOR.to_owned());
        }
    }
    let callbacks: Vec<char> = groups()
        .filter(|group| group.transfer == Transfer::Bridge)
        .filter_map(|group| group.callback.as_ref().map(|callback| callback.key.value))
        .collect();
    if !callbacks.is_empty() {
        names.extend(
            [
                CALLBACK_OFFER,
                CALLBACK_YOUR_NUMBER,
                NUMBER_PLUS,
                CALLBACK_CONFIRM,
                CALLBACK_ENTER_NUMBER,
                CALLBACK_INVALID_NUMBER,
                CALLBACK_ACCEPTED,
                CALLBACK_INTRO,
                CALLBACK_PENDING,
                CALLBACK_KEPT,
                CALLBACK_CANCELLED,
            ]
            .map(String::from),
        );
        // The number read back digit by digit, and each offer's key.
        names.extend(
            ('0'..='9')
                .filter_map(crate::ivr::digit_prompt)
                .map(String::from),
        );
        names.extend(
            callbacks
                .into_iter()
                .filter_map(crate::ivr::digit_prompt)
                .map(String::from),
        );
        names.sort();
        names.dedup();
    }
    names
}
