//! The 19118 flow on the shipped routing.toml, with simulated wall-clock times.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{TimeZone, Utc};
use chrono_tz::Europe::Vilnius;

use super::*;

fn shipped_as_is() -> Arc<Routing> {
    let text = include_str!("../../../routing.toml");
    Arc::new(crate::routing::parse(text, "routing.toml").expect("shipped routing.toml parses"))
}

/// The shipped menus with every group in REFER mode, where the flow itself picks the agent.
fn shipped() -> Arc<Routing> {
    let mut text = String::new();
    for line in include_str!("../../../routing.toml").lines() {
        text.push_str(line);
        text.push('\n');
        if line.starts_with("[groups.") {
            text.push_str("transfer = \"refer\"\n");
        }
    }
    let text = text.replace("transfer = \"bridge\"\n", "");
    Arc::new(crate::routing::parse(&text, "routing.toml").expect("refer variant parses"))
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> FlowClock {
    let local = Vilnius
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("unambiguous local time");
    FlowClock {
        now: Instant::now(),
        wall: SystemTime::from(local.with_timezone(&Utc)),
    }
}

/// Wednesday 2 December 2026, 10:00 in Vilnius: every office is open.
fn weekday_morning() -> FlowClock {
    at(2026, 12, 2, 10, 0)
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

/// Where the caller is sent, by REFER or by bridging (the shipped groups bridge).
fn transfer_target(actions: &[FlowAction]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        FlowAction::Transfer { target } => Some(target.clone()),
        FlowAction::Queue(queued) => Some(format!("queue {}", queued.group)),
        _ => None,
    })
}

#[test]
fn english_caller_pressing_2_2_is_transferred_to_the_english_speaking_heating_agent() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped());
    let start = flow.handle(clock, FlowEvent::Started);
    assert_eq!(
        played(&start),
        vec![
            p("lt", "welcome"),
            p("lt", "language_menu_lt"),
            p("en", "language_menu_en"),
            p("ru", "language_menu_ru"),
            p("pl", "language_menu_pl"),
        ],
        "each language offered in its own language"
    );
    // Type-ahead: both keys arrive while prompts still play.
    let english = flow.handle(clock, FlowEvent::Digit('2'));
    assert_eq!(
        english[0],
        FlowAction::StopPlayback,
        "the key cuts the prompt"
    );
    assert_eq!(played(&english), vec![p("en", "main_menu")]);
    let heating = flow.handle(clock, FlowEvent::Digit('2'));
    assert_eq!(played(&heating), vec![p("en", "transfer_connecting")]);
    assert_eq!(
        transfer_target(&heating),
        None,
        "transfer after the connecting prompt"
    );
    let done = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        transfer_target(&done).as_deref(),
        Some("sip:heating-2@127.0.0.1:5312")
    );
    assert_eq!(flow.language(), "en");
    assert_eq!(
        flow.steps(),
        &[
            Step::Language("en".into()),
            Step::Key {
                menu: "main".into(),
                digit: '2'
            },
            Step::Transfer {
                group: "heating".into(),
                target: "sip:heating-2@127.0.0.1:5312".into()
            },
        ]
    );
    assert!(
        flow.handle(clock, FlowEvent::Digit('1')).is_empty(),
        "keys after the choice are ignored"
    );
}

#[test]
fn russian_caller_gets_the_russian_speaking_agent() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('3'));
    flow.handle(clock, FlowEvent::Digit('2'));
    let done = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        transfer_target(&done).as_deref(),
        Some("sip:heating-1@127.0.0.1:5311")
    );
}

/// Runs a caller who never presses a key, every prompt heard in full; returns what was heard,
/// the transfer target and the digit waits started.
fn silent_caller(routing: Arc<Routing>) -> (Vec<PromptRef>, Option<String>, usize) {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(routing);
    let mut heard = played(&flow.handle(clock, FlowEvent::Started));
    let mut waits = 0;
    for _ in 0..20 {
        let after_prompt = flow.handle(clock, FlowEvent::PlaybackFinished);
        heard.extend(played(&after_prompt));
        if let Some(target) = transfer_target(&after_prompt) {
            return (heard, Some(target), waits);
        }
        assert!(
            after_prompt.contains(&FlowAction::StartTimer {
                id: DIGIT_TIMER,
                after: Duration::from_secs(5)
            }),
            "{after_prompt:?}"
        );
        waits += 1;
        let timeout = flow.handle(clock, FlowEvent::Timer(DIGIT_TIMER));
        heard.extend(played(&timeout));
    }
    (heard, None, waits)
}

#[test]
fn silence_takes_the_default_language_at_once_then_the_fallback_after_menu_no_input() {
    // Defaults: one no-input in the language menu, two in a menu (the menu is repeated once).
    let text = include_str!("../../../routing.toml")
        .replace("menu_no_input = 1", "")
        .replace("language_no_input = 1", "");
    let routing = Arc::new(crate::routing::parse(&text, "routing.toml").expect("parses"));
    assert_eq!(routing.hotline.menu_no_input, 2);
    let (heard, target, waits) = silent_caller(routing);
    assert_eq!(
        heard.iter().filter(|p| p.name == "main_menu").count(),
        2,
        "the main menu once more after the first silence: {heard:?}"
    );
    assert_eq!(waits, 3, "language menu once, main menu twice");
    assert_eq!(
        heard.iter().filter(|p| p.name == "no_input").count(),
        2,
        "before the repeat and before the fallback: {heard:?}"
    );
    assert_eq!(
        heard[heard.len() - 4..],
        [
            p("lt", "no_input"),
            p("lt", "transfer_connecting"),
            p("lt", "queue_waiting_for"),
            p("lt", "group_municipality")
        ]
    );
    assert_eq!(target.as_deref(), Some("queue municipality"));

    // The shipped file: the main menu is not repeated.
    let (heard, target, waits) = silent_caller(shipped_as_is());
    assert_eq!(waits, 2, "{heard:?}");
    assert_eq!(heard.iter().filter(|p| p.name == "main_menu").count(), 1);
    assert_eq!(target.as_deref(), Some("queue municipality"));

    // Counts above max_attempts: max_attempts still ends the menus.
    let text = include_str!("../../../routing.toml")
        .replace("menu_no_input = 1", "menu_no_input = 9")
        .replace("language_no_input = 1", "language_no_input = 9");
    let routing = Arc::new(crate::routing::parse(&text, "routing.toml").expect("parses"));
    let (_, target, waits) = silent_caller(routing);
    assert_eq!(waits, 6, "max_attempts = 3 in each menu");
    assert_eq!(target.as_deref(), Some("queue municipality"));
}

#[test]
fn the_operator_key_goes_to_the_fallback_from_the_language_menu_and_any_menu() {
    let clock = weekday_morning();
    // In the language menu: the default language.
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    let operator = flow.handle(clock, FlowEvent::Digit('0'));
    assert_eq!(operator[0], FlowAction::StopPlayback);
    assert_eq!(played(&operator), vec![p("lt", "transfer_connecting")]);
    let done = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        transfer_target(&done).as_deref(),
        Some("sip:municipality-1@127.0.0.1:5391")
    );
    assert_eq!(
        flow.path_text(),
        "language:0 (operator) > group municipality -> sip:municipality-1@127.0.0.1:5391"
    );
    let summary = flow.summary();
    assert_eq!(summary.language.as_deref(), Some("lt"));
    assert_eq!(summary.ending, None, "a choice, not a no-input ending");

    // In a submenu, in the caller's language, after an invalid key.
    let mut flow = MenuFlow::new(shipped_as_is());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('3'));
    flow.handle(clock, FlowEvent::Digit('3'));
    flow.handle(clock, FlowEvent::Digit('7'));
    let operator = flow.handle(clock, FlowEvent::Digit('0'));
    assert_eq!(played(&operator), vec![p("ru", "transfer_connecting")]);
    let queued = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        transfer_target(&queued).as_deref(),
        Some("queue municipality")
    );
    assert_eq!(
        flow.path_text(),
        "language ru > main:3 > transport:7 (invalid) > transport:0 (operator) > queue municipality"
    );
    assert!(
        flow.handle(clock, FlowEvent::Digit('0')).is_empty(),
        "in the queue the key does nothing"
    );

    // Switched off, 0 is an ordinary (here invalid) key.
    let text = include_str!("../../../routing.toml")
        .replace("operator_key = \"0\"", "operator_key = \"\"");
    let routing = Arc::new(crate::routing::parse(&text, "routing.toml").expect("parses"));
    let mut flow = MenuFlow::new(routing);
    flow.handle(clock, FlowEvent::Started);
    let invalid = flow.handle(clock, FlowEvent::Digit('0'));
    assert_eq!(played(&invalid)[0], p("lt", "invalid_choice"));
}

#[test]
fn invalid_keys_count_as_attempts() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    let wrong = flow.handle(clock, FlowEvent::Digit('7'));
    assert_eq!(played(&wrong)[0], p("lt", "invalid_choice"));
    flow.handle(clock, FlowEvent::Digit('1'));
    flow.handle(clock, FlowEvent::Digit('#'));
    flow.handle(clock, FlowEvent::Digit('#'));
    let third = flow.handle(clock, FlowEvent::Digit('*'));
    assert_eq!(
        played(&third),
        vec![p("lt", "transfer_connecting")],
        "third miss goes to the fallback"
    );
}

#[test]
fn submenu_back_repeat_and_information() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('4'));
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::Digit('3'))),
        vec![p("pl", "transport_menu")]
    );
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::Digit('9'))),
        vec![p("pl", "transport_menu")]
    );
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::Digit('*'))),
        vec![p("pl", "main_menu")]
    );
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::Digit('8'))),
        vec![p("pl", "opening_hours")]
    );
    let after_info = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        played(&after_info),
        vec![p("pl", "main_menu")],
        "information, then the menu again"
    );
    flow.handle(clock, FlowEvent::Digit('3'));
    flow.handle(clock, FlowEvent::Digit('1'));
    let done = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        transfer_target(&done).as_deref(),
        Some("sip:tickets-1@127.0.0.1:5321")
    );
}

fn closed_message(
    clock: FlowClock,
    language_key: char,
    group_key: char,
) -> (Vec<PromptRef>, Vec<FlowAction>) {
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit(language_key));
    let closed = flow.handle(clock, FlowEvent::Digit(group_key));
    let after = flow.handle(clock, FlowEvent::PlaybackFinished);
    (played(&closed), after)
}

#[test]
fn closed_on_saturday_says_monday_at_eight_and_hangs_up_without_transfer() {
    let (heard, after) = closed_message(at(2026, 12, 5, 10, 0), '2', '2');
    let names: Vec<&str> = heard.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "closed_prefix",
            "day_mon",
            "time_at",
            "hour_08",
            "minute_00",
            "goodbye"
        ]
    );
    assert!(heard.iter().all(|p| p.lang == "en"));
    assert_eq!(after, vec![FlowAction::HangUp]);
    assert_eq!(transfer_target(&after), None);
}

#[test]
fn closed_on_a_weekday_evening_reopens_tomorrow_and_friday_closes_early() {
    let (heard, _) = closed_message(at(2026, 12, 2, 18, 0), '1', '1');
    assert_eq!(heard[1], p("lt", "tomorrow"));
    let (friday, _) = closed_message(at(2026, 12, 4, 15, 50), '1', '1');
    assert_eq!(friday[0].name, "closed_prefix", "Friday closes at 15:45");
    assert_eq!(friday[1].name, "day_mon");
    let (before_opening, _) = closed_message(at(2026, 12, 2, 7, 0), '1', '1');
    assert_eq!(before_opening[1].name, "today");
}

#[test]
fn christmas_eve_is_a_holiday_and_the_office_reopens_after_the_weekend() {
    // Thu 24, Fri 25, Sat 26 are holidays, Sun 27: back on Monday 28 December.
    let (heard, _) = closed_message(at(2026, 12, 24, 10, 0), '1', '2');
    let names: Vec<&str> = heard.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        &names[..5],
        &[
            "closed_prefix",
            "day_mon",
            "time_at",
            "hour_08",
            "minute_00"
        ]
    );
    // Easter Monday 2026 (6 April) is computed, not listed.
    let (easter, _) = closed_message(at(2026, 4, 6, 10, 0), '1', '2');
    assert_eq!(easter[1].name, "tomorrow");
}

#[test]
fn dst_change_moves_opening_by_the_clock_not_by_utc() {
    // Monday after the spring change (29 March 2026): 08:00 local is 05:00 UTC.
    let (before, _) = closed_message(at(2026, 3, 30, 7, 59), '1', '2');
    assert_eq!(before[0].name, "closed_prefix");
    let clock = at(2026, 3, 30, 8, 0);
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('1'));
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::Digit('2'))),
        vec![p("lt", "transfer_connecting")]
    );
}

#[test]
fn failed_transfer_apologises_and_tries_the_fallback_then_gives_up() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('1'));
    flow.handle(clock, FlowEvent::Digit('2'));
    flow.handle(clock, FlowEvent::PlaybackFinished);
    let failed = flow.handle(clock, FlowEvent::TransferFailed(486));
    assert_eq!(played(&failed), vec![p("lt", "transfer_failed")]);
    let fallback = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(played(&fallback), vec![p("lt", "transfer_connecting")]);
    let to_fallback = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        transfer_target(&to_fallback).as_deref(),
        Some("sip:municipality-1@127.0.0.1:5391")
    );
    let failed_again = flow.handle(clock, FlowEvent::TransferFailed(503));
    assert_eq!(
        played(&failed_again),
        vec![p("lt", "transfer_failed"), p("lt", "goodbye")]
    );
    assert_eq!(
        flow.handle(clock, FlowEvent::PlaybackFinished),
        vec![FlowAction::HangUp]
    );
}

#[test]
fn a_stale_digit_timer_is_ignored() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('1'));
    flow.handle(clock, FlowEvent::Digit('2'));
    assert!(flow.handle(clock, FlowEvent::Timer(DIGIT_TIMER)).is_empty());
}

#[test]
fn a_refer_group_transfers_instead_of_bridging() {
    let text = include_str!("../../../routing.toml").replace(
        "[groups.heating]\n",
        "[groups.heating]\ntransfer = \"refer\"\n",
    );
    let routing = Arc::new(crate::routing::parse(&text, "routing.toml").unwrap());
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(routing);
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('2'));
    flow.handle(clock, FlowEvent::Digit('2'));
    let done = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        done,
        vec![FlowAction::Transfer {
            target: "sip:heating-2@127.0.0.1:5312".into()
        }]
    );
}

#[test]
fn bridge_groups_queue_the_caller_with_what_agents_see_then_hold_announce_and_give_up() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped_as_is());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('2'));
    flow.handle(clock, FlowEvent::Digit('2'));
    let queued = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        queued[0],
        FlowAction::Queue(QueueCall {
            group: "heating".into(),
            display: "[EN] Vilnius Heating Networks".into(),
            language: "en".into(),
            path: "language en > main:2".into(),
        })
    );
    assert_eq!(
        played(&queued),
        vec![p("en", "queue_waiting_for"), p("en", "group_heating")],
        "the caller hears whom they wait for"
    );
    // The ACD's entry announcement arrives while the name plays: it waits, nothing is cut.
    let entry = FlowEvent::QueuePosition {
        position: 2,
        estimated_wait: None,
    };
    assert_eq!(flow.handle(clock, entry), vec![]);
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::PlaybackFinished)),
        vec![
            p("en", "all_agents_busy"),
            p("en", "queue_position_prefix"),
            p("en", "number_2"),
            p("en", "queue_position_suffix")
        ],
        "the first announcement says why the caller waits"
    );
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::PlaybackFinished)),
        vec![p("en", "music_on_hold")],
        "then the hotline's music"
    );
    // Later announcements: no "all busy" again; a newer position replaces one not yet heard;
    // past the last recorded position, the hold prompt.
    for (seconds, position) in [(3, 4), (6, 1)] {
        let event = FlowEvent::QueuePosition {
            position,
            estimated_wait: None,
        };
        assert_eq!(flow.handle(after(clock, seconds), event), vec![]);
    }
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::PlaybackFinished)),
        vec![
            p("en", "queue_position_prefix"),
            p("en", "number_1"),
            p("en", "queue_position_suffix")
        ]
    );
    let far = FlowEvent::QueuePosition {
        position: 25,
        estimated_wait: None,
    };
    flow.handle(after(clock, 9), far);
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::PlaybackFinished)),
        vec![p("en", "queue_hold")]
    );
    let gave_up = flow.handle(clock, FlowEvent::QueueGaveUp);
    assert_eq!(
        played(&gave_up),
        vec![p("en", "call_later"), p("en", "goodbye")]
    );
    assert_eq!(
        flow.handle(clock, FlowEvent::PlaybackFinished),
        vec![FlowAction::HangUp]
    );
    assert_eq!(
        flow.path_text(),
        "language en > main:2 > queue heating > queue gave up"
    );
}

#[test]
fn the_wait_starts_at_the_choice_not_after_the_connecting_prompt() {
    let choice = weekday_morning();
    let later = |seconds| FlowClock {
        now: choice.now + Duration::from_secs(seconds),
        wall: choice.wall + Duration::from_secs(seconds),
    };
    let mut flow = MenuFlow::new(shipped_as_is());
    flow.handle(choice, FlowEvent::Started);
    flow.handle(choice, FlowEvent::Digit('2'));
    flow.handle(choice, FlowEvent::Digit('2'));
    let summary = flow.summary();
    assert_eq!(summary.group.as_deref(), Some("heating"));
    assert_eq!(summary.group_chosen, Some(choice.wall));
    assert_eq!(
        summary.queue_entered, None,
        "still hearing the connecting prompt"
    );
    flow.handle(later(2), FlowEvent::PlaybackFinished);
    let summary = flow.summary();
    assert_eq!(summary.group_chosen, Some(choice.wall));
    assert_eq!(summary.queue_entered, Some(later(2).wall));
    assert_eq!(summary.language.as_deref(), Some("en"));
    assert_eq!(summary.language_chosen, Some(choice.wall));
}

#[test]
fn a_one_language_hotline_records_that_language_without_a_choice() {
    let routing = crate::routing::parse(
        include_str!("../../../tests/fixtures/routing/short_en.toml"),
        "short_en.toml",
    )
    .unwrap();
    let mut flow = MenuFlow::new(Arc::new(routing));
    flow.handle(weekday_morning(), FlowEvent::Started);
    let summary = flow.summary();
    assert_eq!(summary.language.as_deref(), Some("en"));
    assert_eq!(summary.language_chosen, None);
}

/// The flow-test hotline (tests/fixtures/routing/stats.toml), its registry closed at 10:00 and
/// sending callers on as `when_closed` says.
fn registry_closed(when_closed: &str) -> Arc<Routing> {
    let text = include_str!("../../../tests/fixtures/routing/stats.toml").replace(
        "when_closed = \"hangup\"",
        &format!("when_closed = \"{when_closed}\""),
    );
    Arc::new(crate::routing::parse(&text, "stats.toml").unwrap())
}

fn after(clock: FlowClock, seconds: u64) -> FlowClock {
    FlowClock {
        now: clock.now + Duration::from_secs(seconds),
        wall: clock.wall + Duration::from_secs(seconds),
    }
}

#[test]
fn back_from_a_closed_group_starts_a_new_wait_at_the_next_choice() {
    let t0 = weekday_morning();
    let mut flow = MenuFlow::new(registry_closed("back"));
    flow.handle(t0, FlowEvent::Started);
    flow.handle(t0, FlowEvent::Digit('2'));
    flow.handle(after(t0, 2), FlowEvent::Digit('4'));
    let summary = flow.summary();
    assert_eq!(summary.ending, Some(FlowEnding::Closed));
    assert_eq!(summary.group.as_deref(), Some("registry"));
    // Back in the menu after the closed message; the caller picks water 14 s later.
    flow.handle(after(t0, 10), FlowEvent::PlaybackFinished);
    flow.handle(after(t0, 16), FlowEvent::Digit('1'));
    let summary = flow.summary();
    assert_eq!(summary.group.as_deref(), Some("water"));
    assert_eq!(summary.group_chosen, Some(after(t0, 16).wall));
    assert_eq!(summary.ending, None, "closed no longer decides the outcome");
}

#[test]
fn a_closed_group_sending_callers_on_hands_them_the_call_and_keeps_their_wait() {
    let t0 = weekday_morning();
    let mut flow = MenuFlow::new(registry_closed("water"));
    flow.handle(t0, FlowEvent::Started);
    flow.handle(t0, FlowEvent::Digit('2'));
    flow.handle(after(t0, 2), FlowEvent::Digit('4'));
    // The closed message ends; the flow routes on to water by itself.
    let routed = flow.handle(after(t0, 9), FlowEvent::PlaybackFinished);
    assert_eq!(played(&routed), vec![p("en", "transfer_connecting")]);
    let summary = flow.summary();
    assert_eq!(summary.group.as_deref(), Some("water"));
    assert_eq!(
        summary.group_chosen,
        Some(after(t0, 2).wall),
        "the caller has waited since their choice"
    );
    assert_eq!(summary.ending, None);
}

#[test]
fn a_confident_estimate_is_announced_in_whole_minutes_rounded_up() {
    let clock = weekday_morning();
    let mut flow = MenuFlow::new(shipped_as_is());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('3'));
    flow.handle(clock, FlowEvent::Digit('2'));
    flow.handle(clock, FlowEvent::PlaybackFinished);
    let mut now = clock;
    let mut announce = |position, seconds| {
        let event = FlowEvent::QueuePosition {
            position,
            estimated_wait: Some(Duration::from_secs(seconds)),
        };
        now = after(now, 30);
        assert!(
            flow.handle(now, event).is_empty(),
            "the announcement waits for the hold prompt to end"
        );
        let prompts = played(&flow.handle(clock, FlowEvent::PlaybackFinished));
        flow.handle(clock, FlowEvent::PlaybackFinished);
        prompts
    };
    assert_eq!(
        announce(3, 121),
        vec![
            p("ru", "all_agents_busy"),
            p("ru", "queue_position_prefix"),
            p("ru", "number_3"),
            p("ru", "queue_position_suffix"),
            p("ru", "queue_wait_prefix"),
            p("ru", "wait_minutes_3"),
        ],
        "2 min 1 s is announced as about three minutes, never less than the estimate"
    );
    assert_eq!(
        announce(1, 20)[3..],
        [p("ru", "queue_wait_prefix"), p("ru", "wait_minutes_1")]
    );
    assert_eq!(
        announce(2, 900)[3..],
        [p("ru", "queue_wait_prefix"), p("ru", "wait_minutes_15")]
    );
    assert_eq!(announce(2, 901)[3..], [p("ru", "queue_wait_long")]);
    assert_eq!(
        announce(30, 3000),
        vec![p("ru", "queue_hold"), p("ru", "queue_wait_long")],
        "past the positions recorded: hold prompt, then the wait"
    );
}

#[test]
fn music_plays_piece_by_piece_and_an_announcement_waits_for_the_piece_to_end() {
    let clock = weekday_morning();
    // The water group has its own music; heating has neither music nor a name.
    let text = include_str!("../../../routing.toml")
        .replace(
            "announce = \"group_water\"",
            "announce = \"group_water\"\nmusic = \"water_music\"",
        )
        .replace("announce = \"group_heating\"\n", "")
        .replace("music = \"music_on_hold\"", "");
    let routing = Arc::new(crate::routing::parse(&text, "routing.toml").expect("parses"));

    let mut flow = MenuFlow::new(routing.clone());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('4'));
    flow.handle(clock, FlowEvent::Digit('1'));
    let queued = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(
        played(&queued),
        vec![p("pl", "queue_waiting_for"), p("pl", "group_water")]
    );
    let mut pieces = 0;
    for _ in 0..3 {
        let next = flow.handle(clock, FlowEvent::PlaybackFinished);
        assert_eq!(next, vec![FlowAction::Play(vec![p("pl", "water_music")])]);
        pieces += 1;
    }
    // Mid-piece, the ACD says it is time: nothing is stopped, the announcement follows the
    // piece, then the music goes on.
    let position = FlowEvent::QueuePosition {
        position: 3,
        estimated_wait: None,
    };
    let during = flow.handle(after(clock, 5), position);
    assert!(
        !during.contains(&FlowAction::StopPlayback) && played(&during).is_empty(),
        "{during:?}"
    );
    let announcement = played(&flow.handle(clock, FlowEvent::PlaybackFinished));
    assert_eq!(announcement[0], p("pl", "all_agents_busy"));
    assert_eq!(announcement[2], p("pl", "number_3"));
    assert_eq!(
        played(&flow.handle(clock, FlowEvent::PlaybackFinished)),
        vec![p("pl", "water_music")]
    );
    assert_eq!(pieces, 3);
    // Only the caller's own key or the end of the queue cuts anything.
    let gave_up = flow.handle(clock, FlowEvent::QueueGaveUp);
    assert_eq!(gave_up[0], FlowAction::StopPlayback);

    // No music anywhere: the spoken hold prompt, in the caller's language.
    let mut flow = MenuFlow::new(routing.clone());
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('2'));
    flow.handle(clock, FlowEvent::Digit('2'));
    let queued = flow.handle(clock, FlowEvent::PlaybackFinished);
    assert_eq!(played(&queued), vec![p("en", "queue_hold")]);
    // An announcement into a hold prompt already playing waits for its end.
    let later = FlowEvent::QueuePosition {
        position: 2,
        estimated_wait: None,
    };
    assert!(flow.handle(after(clock, 1), later).is_empty());

    // All busy at entry: the ACD announces at the very instant of queueing, so the hold
    // prompt that has not sounded yet gives way and the announcement plays first, whole.
    let mut flow = MenuFlow::new(routing);
    flow.handle(clock, FlowEvent::Started);
    flow.handle(clock, FlowEvent::Digit('1'));
    flow.handle(clock, FlowEvent::Digit('2'));
    let queued_at = after(clock, 8);
    let queued = flow.handle(queued_at, FlowEvent::PlaybackFinished);
    assert_eq!(played(&queued), vec![p("lt", "queue_hold")]);
    let entry = flow.handle(
        queued_at,
        FlowEvent::QueuePosition {
            position: 1,
            estimated_wait: None,
        },
    );
    assert_eq!(entry[0], FlowAction::StopPlayback);
    assert_eq!(
        played(&entry),
        vec![
            p("lt", "all_agents_busy"),
            p("lt", "queue_position_prefix"),
            p("lt", "number_1"),
            p("lt", "queue_position_suffix")
        ]
    );
}

/// `hotline check` requires what `prompts::flow_prompts` lists: every prompt the flow plays in
/// these walks is there or named by the file itself.
#[test]
fn every_prompt_the_flow_plays_is_one_check_requires() {
    let routing = shipped_as_is();
    let mut allowed: Vec<String> = super::prompts::flow_prompts(&routing);
    for menu in routing.menus.values() {
        allowed.push(menu.prompt.value.clone());
        for option in menu.options.values() {
            if let crate::routing::model::Action::Play { prompt, .. } = &option.action {
                allowed.push(prompt.value.clone());
            }
        }
    }
    for group in routing.groups.values() {
        allowed.extend(group.announce.iter().map(|a| a.value.clone()));
    }
    allowed.extend(routing.hotline.music.iter().map(|m| m.value.clone()));
    allowed.extend(
        [
            "language_menu_lt",
            "language_menu_en",
            "language_menu_ru",
            "language_menu_pl",
        ]
        .map(String::from),
    );
    allowed.extend(["hour_08", "hour_09", "minute_00", "minute_30"].map(String::from));

    let mut heard = Vec::new();
    let walks: [(FlowClock, &[char]); 5] = [
        (weekday_morning(), &['2', '2']),
        (weekday_morning(), &['1', '3', '*', '8', '9', '#', '#', '#']),
        (at(2026, 12, 5, 10, 0), &['3', '2']),
        (at(2026, 12, 5, 10, 0), &['1', '3', '1']),
        (weekday_morning(), &['0']),
    ];
    for (clock, keys) in walks {
        let mut flow = MenuFlow::new(routing.clone());
        heard.extend(played(&flow.handle(clock, FlowEvent::Started)));
        for key in keys {
            heard.extend(played(&flow.handle(clock, FlowEvent::Digit(*key))));
        }
        for (step, event) in [
            FlowEvent::PlaybackFinished,
            FlowEvent::QueuePosition {
                position: 3,
                estimated_wait: Some(Duration::from_secs(200)),
            },
            FlowEvent::PlaybackFinished,
            FlowEvent::PlaybackFinished,
            FlowEvent::QueuePosition {
                position: 30,
                estimated_wait: Some(Duration::from_secs(2000)),
            },
            FlowEvent::PlaybackFinished,
            FlowEvent::QueueGaveUp,
            FlowEvent::PlaybackFinished,
        ]
        .into_iter()
        .enumerate()
        {
            let now = after(clock, 10 * step as u64 + 10);
            heard.extend(played(&flow.handle(now, event)));
        }
    }
    let names: std::collections::BTreeSet<&str> = heard.iter().map(|p| p.name.as_str()).collect();
    for expected in [
        "all_agents_busy",
        "queue_waiting_for",
        "music_on_hold",
        "closed_prefix",
        "call_later",
        "queue_wait_long",
    ] {
        assert!(
            names.contains(expected),
            "{expected} never played: {names:?}"
        );
    }
    for name in names {
        assert!(
            allowed.iter().any(|a| a == name),
            "{name} is played but not required"
        );
    }
}
