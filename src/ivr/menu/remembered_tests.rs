//! Returning callers in their remembered language, on the shipped routing.toml, with simulated
//! wall-clock times: greeting, the change-language key, and the cases that start as usual.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{TimeZone, Utc};
use chrono_tz::Europe::Vilnius;

use super::*;

fn routing_from(text: &str) -> Arc<Routing> {
    Arc::new(crate::routing::parse(text, "routing.toml").expect("routing parses"))
}

fn shipped() -> Arc<Routing> {
    routing_from(include_str!("../../../routing.toml"))
}

/// Wednesday 2 December 2026, 10:00 in Vilnius: every office is open.
fn morning() -> FlowClock {
    let local = Vilnius.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
    FlowClock {
        now: Instant::now(),
        wall: SystemTime::from(local.with_timezone(&Utc)),
    }
}

fn later(clock: FlowClock, seconds: u64) -> FlowClock {
    FlowClock {
        now: clock.now + Duration::from_secs(seconds),
        wall: clock.wall + Duration::from_secs(seconds),
    }
}

fn p(lang: &str, name: &str) -> PromptRef {
    PromptRef::new(lang, name)
}

fn played(actions: &[FlowAction]) -> Vec<PromptRef> {
    actions
        .iter()
        .filter_map(|a| match a {
            FlowAction::Play(prompts) => Some(prompts.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn language_menu() -> Vec<PromptRef> {
    ["lt", "en", "ru", "pl"]
        .iter()
        .map(|lang| p(lang, &format!("language_menu_{lang}")))
        .collect()
}

fn remembering(routing: Arc<Routing>, language: Option<&str>) -> MenuFlow {
    MenuFlow::new(routing).with_remembered_language(language)
}

#[test]
fn a_remembered_caller_is_welcomed_in_their_language_and_goes_straight_to_the_main_menu() {
    let clock = morning();
    let mut flow = remembering(shipped(), Some("en"));
    let start = flow.handle(clock, FlowEvent::Started);
    assert_eq!(
        played(&start),
        vec![
            p("en", "welcome"),
            p("en", "change_language"),
            p("en", "digit_star"),
            p("en", "main_menu"),
        ]
    );
    assert_eq!(flow.language(), "en");
    let summary = flow.summary();
    assert_eq!(summary.language.as_deref(), Some("en"));
    assert_eq!(
        summary.language_chosen, None,
        "remembered, not chosen: the memory runs from the last real choice"
    );
    assert_eq!(summary.steps[0].1, "remembered_language");

    let heating = flow.handle(later(clock, 3), FlowEvent::Digit('2'));
    assert_eq!(played(&heating), vec![p("en", "transfer_connecting")]);
    flow.handle(later(clock, 5), FlowEvent::PlaybackFinished);
    assert_eq!(
        flow.path_text(),
        "remembered language en > main:2 > queue heating"
    );
    let summary = flow.summary();
    assert_eq!(summary.group.as_deref(), Some("heating"));
    assert_eq!(summary.language_chosen, None);
}

#[test]
fn the_change_key_opens_the_language_menu_and_the_new_choice_is_a_choice() {
    let clock = morning();
    let mut flow = remembering(shipped(), Some("en"));
    flow.handle(clock, FlowEvent::Started);
    let change = flow.handle(later(clock, 2), FlowEvent::Digit('*'));
    assert_eq!(
        change[0],
        FlowAction::StopPlayback,
        "the key cuts the prompt"
    );
    assert_eq!(played(&change), language_menu(), "no second welcome");
    let russian = flow.handle(later(clock, 6), FlowEvent::Digit('3'));
    assert_eq!(played(&russian), vec![p("ru", "main_menu")]);
    assert_eq!(flow.language(), "ru");
    assert_eq!(
        flow.path_text(),
        "remembered language en > main:* (change language) > language ru"
    );
    let summary = flow.summary();
    assert_eq!(summary.language.as_deref(), Some("ru"));
    assert_eq!(summary.language_chosen, Some(later(clock, 6).wall));
    let kinds: Vec<&str> = summary.steps.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(
        kinds,
        ["remembered_language", "change_language", "language"]
    );
}

#[test]
fn silence_in_the_language_menu_after_a_change_keeps_the_remembered_language_unchosen() {
    let clock = morning();
    let mut flow = remembering(shipped(), Some("pl"));
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('*'));
    flow.handle(later(clock, 8), FlowEvent::PlaybackFinished);
    let silence = flow.handle(later(clock, 13), FlowEvent::Timer(DIGIT_TIMER));
    assert_eq!(played(&silence), vec![p("pl", "main_menu")]);
    assert_eq!(flow.summary().language.as_deref(), Some("pl"));
    assert_eq!(flow.summary().language_chosen, None);
}

#[test]
fn the_change_key_counts_only_as_the_first_key_in_the_start_menu() {
    let clock = morning();
    let mut flow = remembering(shipped(), Some("en"));
    flow.handle(clock, FlowEvent::Started);
    // Opening hours, then the main menu again: the offer is not repeated and `*` is no option.
    let hours = flow.handle(later(clock, 1), FlowEvent::Digit('8'));
    assert_eq!(played(&hours), vec![p("en", "opening_hours")]);
    let again = flow.handle(later(clock, 9), FlowEvent::PlaybackFinished);
    assert_eq!(played(&again), vec![p("en", "main_menu")]);
    let star = flow.handle(later(clock, 10), FlowEvent::Digit('*'));
    assert_eq!(
        played(&star),
        vec![p("en", "invalid_choice"), p("en", "main_menu")]
    );
    assert_eq!(
        flow.path_text(),
        "remembered language en > main:8 > main:* (invalid)"
    );
}

#[test]
fn a_silent_remembered_caller_hears_the_offer_again_with_the_menu() {
    // The default menu_no_input = 2: the menu is repeated once after a silence.
    let text = include_str!("../../../routing.toml").replace("menu_no_input = 1", "");
    let mut flow = remembering(routing_from(&text), Some("ru"));
    let clock = morning();
    flow.handle(clock, FlowEvent::Started);
    flow.handle(later(clock, 30), FlowEvent::PlaybackFinished);
    let silence = flow.handle(later(clock, 35), FlowEvent::Timer(DIGIT_TIMER));
    assert_eq!(
        played(&silence),
        vec![
            p("ru", "no_input"),
            p("ru", "change_language"),
            p("ru", "digit_star"),
            p("ru", "main_menu"),
        ]
    );
    // Still the first key: it changes the language.
    let change = flow.handle(later(clock, 40), FlowEvent::Digit('*'));
    assert_eq!(played(&change), language_menu());
}

#[test]
fn the_operator_key_still_goes_to_the_fallback_in_the_remembered_language() {
    let clock = morning();
    let mut flow = remembering(shipped(), Some("ru"));
    flow.handle(clock, FlowEvent::Started);
    let operator = flow.handle(later(clock, 2), FlowEvent::Digit('0'));
    assert_eq!(played(&operator)[0], p("ru", "transfer_connecting"));
    assert_eq!(flow.summary().group.as_deref(), Some("municipality"));
}

#[test]
fn without_a_usable_memory_the_call_starts_with_the_language_menu() {
    let clock = morning();
    let mut usual = vec![p("lt", "welcome")];
    usual.extend(language_menu());
    // Nothing remembered.
    let mut flow = remembering(shipped(), None);
    assert_eq!(played(&flow.handle(clock, FlowEvent::Started)), usual);
    // A language the hotline no longer offers.
    let mut flow = remembering(shipped(), Some("de"));
    assert_eq!(played(&flow.handle(clock, FlowEvent::Started)), usual);
    let without_polish = include_str!("../../../routing.toml")
        .replace(
            "languages = [\"lt\", \"en\", \"ru\", \"pl\"]",
            "languages = [\"lt\", \"en\", \"ru\"]",
        )
        .replace("\"pl\"", "\"ru\"");
    let mut flow = remembering(routing_from(&without_polish), Some("pl"));
    let start = played(&flow.handle(clock, FlowEvent::Started));
    assert_eq!(start[0], p("lt", "welcome"));
    assert_eq!(start[1], p("lt", "language_menu_lt"));
    assert_eq!(flow.path_text(), "");
    // Remembering switched off in routing.toml.
    let off = include_str!("../../../routing.toml")
        .replace("remember_language = \"90d\"", "remember_language = \"0s\"");
    let mut flow = remembering(routing_from(&off), Some("en"));
    assert_eq!(played(&flow.handle(clock, FlowEvent::Started)), usual);
    assert_eq!(flow.summary().language, None);
}

#[test]
fn a_one_language_hotline_ignores_the_memory() {
    let routing = routing_from(include_str!(
        "../../../tests/fixtures/routing/short_en.toml"
    ));
    let mut flow = remembering(routing, Some("en"));
    let start = played(&flow.handle(morning(), FlowEvent::Started));
    assert!(
        !start.iter().any(|prompt| prompt.name == "change_language"),
        "{start:?}"
    );
    assert!(flow.path_text().is_empty());
}
