//! Tests of the routing model, opening hours and checks, including the shipped routing.toml.

use super::check::{check, PromptLoadFailure};
use super::hours::{easter_sunday, is_lithuanian_holiday, OpeningHours, RelativeDay, TimeRange};
use super::model::parse;
use chrono::{DateTime, NaiveDate, TimeZone, Utc, Weekday};
use std::collections::BTreeSet;
use std::path::Path;

const SHIPPED: &str = include_str!("../../routing.toml");

/// A minimal valid file; tests append or replace lines to provoke one problem each.
const BASE: &str = r#"[hotline]
languages = ["lt", "en"]
default_language = "lt"
timezone = "Europe/Vilnius"
fallback = "desk"
start = "main"

[menus.main]
prompt = "main_menu"
options."1" = { group = "desk" }
options."2" = { menu = "sub" }

[menus.sub]
prompt = "sub_menu"
options."1" = { group = "desk" }
options."*" = { back = true }

[groups.desk]
name = { lt = "Skyrius", en = "Desk" }
hours = "office"
agents = [{ uri = "sip:desk@127.0.0.1:5301", languages = ["lt"] }]

[hours.office]
weekly = { mon = "08:00-17:00" }
"#;

fn all_prompts(_: &str, _: &str) -> bool {
    true
}

/// Parse problems if any, else check problems (with every prompt present), as displayed.
fn problems(text: &str) -> Vec<String> {
    match parse(text, "routing.toml") {
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
        Ok(routing) => check(&routing, &all_prompts, &[])
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

fn with(replace: &str, by: &str) -> String {
    assert!(BASE.contains(replace), "{replace}");
    BASE.replacen(replace, by, 1)
}

#[test]
fn base_is_clean() {
    assert_eq!(problems(BASE), Vec::<String>::new());
}

#[test]
fn syntax_error_has_its_line() {
    let text = with("start = \"main\"", "start = \"main");
    let found = problems(&text);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("routing.toml:6: : "), "{found:?}");
}

#[test]
fn duplicate_digit_is_reported_with_its_line() {
    let text = with(
        "options.\"2\" = { menu = \"sub\" }",
        "options.\"1\" = { menu = \"sub\" }",
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("routing.toml:11: "), "{found:?}");
    assert!(found[0].contains("duplicate key"), "{found:?}");
}

#[test]
fn unknown_keys_are_all_reported() {
    let text = with("fallback = \"desk\"", "fallbak = \"desk\"")
        .replace("hours = \"office\"", "hour = \"office\"");
    assert_eq!(
        problems(&text),
        vec![
            "routing.toml:5: hotline.fallbak: unknown key (expected one of: languages, default_language, timezone, digit_timeout, inter_digit_timeout, max_attempts, language_no_input, menu_no_input, operator_key, fallback, start, music, remember_language, change_language_key, announce_every)",
            "routing.toml:1: hotline.fallback: missing required key",
            "routing.toml:20: groups.desk.hour: unknown key (expected one of: name, announce, music, hours, when_closed, when_empty, transfer, strategy, ring_timeout, wrap_up, language_wait, max_wait, max_queue, overflow, retry_after_busy, retry_after_no_answer, max_no_answer, agents, callback, media_encryption)",
        ]
    );
}

#[test]
fn bad_duration() {
    let text = with(
        "start = \"main\"",
        "start = \"main\"\ndigit_timeout = \"5 sec\"",
    );
    assert_eq!(
        problems(&text),
        vec!["routing.toml:7: hotline.digit_timeout: bad duration \"5 sec\": expected a number and ms, s, m, h or d (e.g. \"5s\")"]
    );
}

#[test]
fn undefined_references() {
    let text = with(
        "{ group = \"desk\" }\noptions.\"2\"",
        "{ group = \"dsk\" }\noptions.\"2\"",
    )
    .replace("hours = \"office\"", "hours = \"ofice\"")
    .replace("start = \"main\"", "start = \"mian\"");
    assert_eq!(
        problems(&text),
        vec![
            "routing.toml:6: hotline.start: menu \"mian\" is not defined",
            "routing.toml:8: menus.main: menu is not reachable from start menu \"mian\"",
            "routing.toml:10: menus.main.options.1.group: group \"dsk\" is not a defined group",
            "routing.toml:13: menus.sub: menu is not reachable from start menu \"mian\"",
            "routing.toml:20: groups.desk.hours: hours \"ofice\" are not defined",
        ]
    );
}

#[test]
fn unreachable_menu() {
    let text = with(
        "options.\"2\" = { menu = \"sub\" }",
        "options.\"2\" = { repeat = true }",
    );
    assert_eq!(
        problems(&text),
        vec!["routing.toml:13: menus.sub: menu is not reachable from start menu \"main\""]
    );
}

#[test]
fn loop_without_exit() {
    let text = with(
        "options.\"1\" = { group = \"desk\" }\noptions.\"*\"",
        "options.\"1\" = { menu = \"main\" }\noptions.\"*\"",
    )
    .replace(
        "options.\"1\" = { group = \"desk\" }\noptions.\"2\"",
        "options.\"1\" = { play = \"main_menu\", then = \"sub\" }\noptions.\"2\"",
    );
    assert_eq!(
        problems(&text),
        vec![
            "routing.toml:8: menus.main: loop without exit: no choice from this menu ever reaches a group or a hangup",
            "routing.toml:13: menus.sub: loop without exit: no choice from this menu ever reaches a group or a hangup",
        ]
    );
}

#[test]
fn back_to_a_menu_with_an_exit_is_an_exit() {
    // sub has no group of its own, but `back` returns to main, which has one.
    let text = with(
        "options.\"1\" = { group = \"desk\" }\noptions.\"*\"",
        "options.\"1\" = { repeat = true }\noptions.\"*\"",
    );
    assert_eq!(problems(&text), Vec::<String>::new());
}

#[test]
fn invalid_digit() {
    let text = with(
        "options.\"2\" = { menu = \"sub\" }",
        "options.\"2\" = { menu = \"sub\" }\noptions.\"12\" = { repeat = true }",
    );
    assert_eq!(
        problems(&text),
        vec!["routing.toml:12: menus.main.options.12: invalid digit \"12\" (expected one of 0-9, *, #)"]
    );
}

#[test]
fn a_menu_option_on_the_operator_key_is_a_problem() {
    let on_zero = with(
        "options.\"2\" = { menu = \"sub\" }",
        "options.\"2\" = { menu = \"sub\" }\noptions.\"0\" = { repeat = true }",
    );
    assert_eq!(
        problems(&on_zero),
        vec!["routing.toml:12: menus.main.options.0: key \"0\" is the operator key (hotline.operator_key): this option could never be chosen"]
    );
    // Another operator key frees 0; the menu's own `*` now clashes with it (the
    // change-language key moves off its default `*`).
    let star = on_zero.replace(
        "start = \"main\"",
        "start = \"main\"\noperator_key = \"*\"\nchange_language_key = \"#\"",
    );
    assert_eq!(
        problems(&star),
        vec!["routing.toml:19: menus.sub.options.\"*\": key \"*\" is the operator key (hotline.operator_key): this option could never be chosen"]
    );
    let off = on_zero.replace("start = \"main\"", "start = \"main\"\noperator_key = \"\"");
    assert_eq!(problems(&off), Vec::<String>::new());
    let routing = parse(&off, "routing.toml").expect("parses");
    assert_eq!(routing.hotline.operator_key, None);
}

#[test]
fn operator_key_must_be_one_key_and_not_a_language_digit() {
    let two = with("start = \"main\"", "start = \"main\"\noperator_key = \"2\"");
    assert_eq!(
        problems(&two),
        vec![
            "routing.toml:7: hotline.operator_key: operator key \"2\" also picks a language in the language menu",
            "routing.toml:12: menus.main.options.2: key \"2\" is the operator key (hotline.operator_key): this option could never be chosen",
        ]
    );
    let long = with(
        "start = \"main\"",
        "start = \"main\"\noperator_key = \"00\"",
    );
    assert_eq!(
        problems(&long),
        vec!["routing.toml:7: hotline.operator_key: bad operator key \"00\" (expected one key of 0-9, * or #, or \"\" for none)"]
    );
    let three = with("start = \"main\"", "start = \"main\"\noperator_key = \"3\"");
    assert_eq!(
        problems(&three),
        Vec::<String>::new(),
        "two languages: 3 is free"
    );
}

#[test]
fn no_input_counts_default_to_one_and_two_and_must_be_at_least_one() {
    let routing = parse(BASE, "routing.toml").expect("parses");
    assert_eq!(
        (
            routing.hotline.language_no_input,
            routing.hotline.menu_no_input
        ),
        (1, 2)
    );
    let zero = with(
        "start = \"main\"",
        "start = \"main\"\nlanguage_no_input = 0\nmenu_no_input = 3",
    );
    assert_eq!(
        problems(&zero),
        vec!["routing.toml:7: hotline.language_no_input: must be at least 1"]
    );
}

/// Check problems with every prompt present except `absent`.
fn problems_without(text: &str, absent: &[&str]) -> Vec<String> {
    let routing = parse(text, "routing.toml").expect("parses");
    let exists = |_: &str, name: &str| !absent.contains(&name);
    check(&routing, &exists, &[])
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn check_requires_only_the_prompts_the_flow_can_play() {
    let queue_only = [
        "queue_hold",
        "all_agents_busy",
        "number_3",
        "queue_waiting_for",
    ];
    // A bridging group without `announce`: the queue prompts, not the organisation's name.
    assert_eq!(
        problems_without(BASE, &queue_only),
        vec![
            "routing.toml:2: hotline.languages: prompt \"all_agents_busy\" is missing in: lt, en",
            "routing.toml:2: hotline.languages: prompt \"number_3\" is missing in: lt, en",
            "routing.toml:2: hotline.languages: prompt \"queue_hold\" is missing in: lt, en",
        ]
    );
    let announced = with(
        "hours = \"office\"",
        "hours = \"office\"\nannounce = \"group_desk\"",
    );
    assert_eq!(
        problems_without(&announced, &["queue_waiting_for", "group_desk"]),
        vec![
            "routing.toml:2: hotline.languages: prompt \"queue_waiting_for\" is missing in: lt, en",
            "routing.toml:21: groups.desk.announce: prompt \"group_desk\" is missing in: lt, en",
        ]
    );
    // REFER hands the caller over: no queue, no name, nothing of it is required.
    let refer = announced.replace(
        "hours = \"office\"",
        "hours = \"office\"\ntransfer = \"refer\"",
    );
    assert_eq!(
        problems_without(&refer, &["group_desk", "call_later"]),
        Vec::<String>::new()
    );
    assert_eq!(problems_without(&refer, &queue_only), Vec::<String>::new());
    // Without opening hours there is no closed message; the office opens on Mondays only.
    let always_open = BASE.replace("hours = \"office\"\n", "");
    assert_eq!(
        problems_without(&always_open, &["closed_prefix", "day_mon", "day_tue"]),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_without(BASE, &["closed_prefix", "day_mon", "day_tue"]),
        vec![
            "routing.toml:2: hotline.languages: prompt \"closed_prefix\" is missing in: lt, en",
            "routing.toml:2: hotline.languages: prompt \"day_mon\" is missing in: lt, en",
        ]
    );
}

#[test]
fn music_is_needed_only_for_bridging_groups() {
    let music = with("start = \"main\"", "start = \"main\"\nmusic = \"tune\"");
    assert_eq!(
        problems_without(&music, &["tune"]),
        vec!["routing.toml:7: hotline.music: prompt \"tune\" is missing in: lt, en"]
    );
    let group_music = with(
        "hours = \"office\"",
        "hours = \"office\"\nmusic = \"desk_tune\"",
    );
    assert_eq!(
        problems_without(&group_music, &["desk_tune"]),
        vec!["routing.toml:21: groups.desk.music: prompt \"desk_tune\" is missing in: lt, en"]
    );
    let refer = group_music.replace(
        "hours = \"office\"",
        "hours = \"office\"\ntransfer = \"refer\"",
    );
    assert_eq!(
        problems_without(&refer, &["desk_tune"]),
        Vec::<String>::new()
    );
}

#[test]
fn bad_times() {
    let text = with(
        "{ mon = \"08:00-17:00\" }",
        "{ mon = \"25:00-26:00\", tue = \"17:00-08:00\", wed = \"8-17\" }",
    );
    assert_eq!(
        problems(&text),
        vec![
            "routing.toml:24: hours.office.weekly.mon: bad time \"25:00\": expected HH:MM (00:00-23:59)",
            "routing.toml:24: hours.office.weekly.tue: bad time range \"17:00-08:00\": end must be after start (ranges cannot cross midnight)",
            "routing.toml:24: hours.office.weekly.wed: bad time \"8\": expected HH:MM (00:00-23:59)",
        ]
    );
}

#[test]
fn unknown_strategy() {
    let text = with(
        "hours = \"office\"",
        "hours = \"office\"\nstrategy = \"random\"",
    );
    assert_eq!(
        problems(&text),
        vec!["routing.toml:21: groups.desk.strategy: unknown strategy \"random\" (expected ring-all, round-robin, longest-idle or fewest-calls)"]
    );
}

#[test]
fn later_group_keys_are_accepted() {
    let text = with(
        "hours = \"office\"",
        "hours = \"office\"\ntransfer = \"refer\"\nstrategy = \"fewest-calls\"\nring_timeout = \"15s\"\nwrap_up = \"500ms\"\nlanguage_wait = \"1m\"\nmax_wait = \"2m\"\nmax_queue = 5\noverflow = \"desk\"",
    )
    .replace("uri = \"sip:desk@127.0.0.1:5301\"", "user = \"desk1\", priority = 2");
    assert_eq!(problems(&text), Vec::<String>::new());
}

#[test]
fn default_language_not_in_languages() {
    let text = with("default_language = \"lt\"", "default_language = \"de\"");
    assert_eq!(
        problems(&text),
        vec!["routing.toml:3: hotline.default_language: default language \"de\" is not in `languages`"]
    );
}

#[test]
fn more_than_nine_languages() {
    let ten = r#"languages = ["lt", "en", "a", "b", "c", "d", "e", "f", "g", "h"]"#;
    let text = with("languages = [\"lt\", \"en\"]", ten)
        .replace("name = { lt = \"Skyrius\", en = \"Desk\" }", "name = { lt = \"Skyrius\", en = \"Desk\", a = \"\", b = \"\", c = \"\", d = \"\", e = \"\", f = \"\", g = \"\", h = \"\" }");
    assert_eq!(
        problems(&text),
        vec!["routing.toml:2: hotline.languages: 10 languages configured, but the language menu has only digits 1-9"]
    );
}

#[test]
fn fallback_and_overflow_must_be_groups() {
    let text = with("fallback = \"desk\"", "fallback = \"main\"").replace(
        "hours = \"office\"",
        "hours = \"office\"\noverflow = \"nobody\"",
    );
    assert_eq!(
        problems(&text),
        vec![
            "routing.toml:5: hotline.fallback: fallback \"main\" is not a defined group",
            "routing.toml:21: groups.desk.overflow: overflow \"nobody\" is not a defined group",
        ]
    );
}

#[test]
fn bad_agent_uri() {
    let text = with("sip:desk@127.0.0.1:5301", "http://desk");
    assert_eq!(
        problems(&text),
        vec!["routing.toml:21: groups.desk.agents[0].uri: bad agent URI \"http://desk\": expected a sip: or sips: URI"]
    );
    let text = with("sip:desk@127.0.0.1:5301", "sip:desk@127.0.0.1:99999");
    assert_eq!(
        problems(&text),
        vec!["routing.toml:21: groups.desk.agents[0].uri: bad agent URI \"sip:desk@127.0.0.1:99999\": bad port \"99999\""]
    );
}

#[test]
fn missing_prompt_in_one_language() {
    let routing = parse(BASE, "routing.toml").unwrap();
    let prompts = |language: &str, name: &str| !(language == "en" && name == "sub_menu");
    let found: Vec<String> = check(&routing, &prompts, &[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        vec!["routing.toml:14: menus.sub.prompt: prompt \"sub_menu\" is missing in: en"]
    );
}

#[test]
fn opening_time_needs_hour_and_minute_prompts_and_quarter_hours() {
    let text = with("{ mon = \"08:00-17:00\" }", "{ mon = \"08:30-17:00\" }");
    let routing = parse(&text, "routing.toml").unwrap();
    let prompts = |_: &str, name: &str| name != "minute_30";
    let found: Vec<String> = check(&routing, &prompts, &[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        vec![
            "routing.toml:24: hours.office.weekly.mon: prompt \"minute_30\" is missing in: lt, en"
        ]
    );
    // Off the quarter hour: the cause is named, not the prompt it would need.
    let text = with("{ mon = \"08:00-17:00\" }", "{ mon = \"08:20-17:00\" }");
    let routing = parse(&text, "routing.toml").unwrap();
    let found: Vec<String> = check(&routing, &|_: &str, _: &str| true, &[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        vec!["routing.toml:24: hours.office.weekly.mon: opening time 08:20 is off the quarter hour: the closed message says times on :00, :15, :30 or :45 only"]
    );
}

#[test]
fn undecodable_prompt_is_reported_at_its_key() {
    let routing = parse(BASE, "routing.toml").unwrap();
    let failures = [PromptLoadFailure {
        language: "lt".into(),
        name: "main_menu".into(),
        reason: "not a WAV file".into(),
    }];
    let found: Vec<String> = check(&routing, &all_prompts, &failures)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found, vec!["routing.toml:9: menus.main.prompt: prompt \"main_menu\" (lt) does not decode: not a WAV file"]);
}

#[test]
fn shipped_routing_passes_against_shipped_prompts() {
    let routing = parse(SHIPPED, "routing.toml").unwrap_or_else(|p| panic!("{p:?}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let prompts =
        |language: &str, name: &str| dir.join(language).join(format!("{name}.wav")).is_file();
    assert!(
        prompts("lt", "main_menu"),
        "prompts folder not found at {}",
        dir.display()
    );
    let found: Vec<String> = check(&routing, &prompts, &[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found, Vec::<String>::new());
    assert_eq!(routing.menus["main"].options.len(), 9);
    assert_eq!(routing.groups.len(), 9);
}

// ---- opening hours ----

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn office() -> OpeningHours {
    let weekday = TimeRange::parse_list("08:00-12:00,13:00-17:00").unwrap();
    OpeningHours {
        timezone: chrono_tz::Europe::Vilnius,
        weekly: [
            weekday.clone(),
            weekday.clone(),
            weekday.clone(),
            weekday,
            TimeRange::parse_list("08:00-15:45").unwrap(),
            vec![],
            vec![],
        ],
        public_holidays: Some(super::hours::HolidayCalendar::Lithuania),
        closed_dates: BTreeSet::from([date(2026, 12, 31)]),
    }
}

#[test]
fn easter_dates_2025_to_2030() {
    let known = [
        (2025, 4, 20),
        (2026, 4, 5),
        (2027, 3, 28),
        (2028, 4, 16),
        (2029, 4, 1),
        (2030, 4, 21),
    ];
    for (y, m, d) in known {
        assert_eq!(easter_sunday(y), Some(date(y, m, d)));
        assert!(is_lithuanian_holiday(date(y, m, d)));
        assert!(
            is_lithuanian_holiday(date(y, m, d).succ_opt().unwrap()),
            "Easter Monday {y}"
        );
        assert!(
            !is_lithuanian_holiday(date(y, m, d).pred_opt().unwrap()),
            "Holy Saturday {y}"
        );
    }
}

#[test]
fn lithuanian_holidays_2025_to_2030() {
    for y in 2025..=2030 {
        for (m, d) in [
            (1, 1),
            (2, 16),
            (3, 11),
            (5, 1),
            (6, 24),
            (7, 6),
            (8, 15),
            (11, 1),
            (11, 2),
            (12, 24),
            (12, 25),
            (12, 26),
        ] {
            assert!(is_lithuanian_holiday(date(y, m, d)), "{y}-{m}-{d}");
        }
        let count = (1..=366)
            .filter_map(|n| NaiveDate::from_yo_opt(y, n))
            .filter(|d| is_lithuanian_holiday(*d))
            .count();
        assert_eq!(count, 16, "{y}");
    }
    // First Sundays of May and June 2026: May 3, June 7; the second Sundays are not holidays.
    assert!(is_lithuanian_holiday(date(2026, 5, 3)));
    assert!(is_lithuanian_holiday(date(2026, 6, 7)));
    assert!(!is_lithuanian_holiday(date(2026, 5, 10)));
    assert!(!is_lithuanian_holiday(date(2026, 6, 14)));
    assert!(!is_lithuanian_holiday(date(2026, 12, 27)));
}

#[test]
fn weekday_weekend_holiday_and_closed_date() {
    let hours = office();
    // Wed 2026-01-14 10:00 local (UTC+2) is open; the lunch break is closed.
    assert!(hours.is_open(utc(2026, 1, 14, 8, 0)));
    assert!(!hours.is_open(utc(2026, 1, 14, 10, 30)));
    assert!(!hours.is_open(utc(2026, 1, 14, 5, 59)));
    // Friday closes at 15:45 local.
    assert!(hours.is_open(utc(2026, 1, 16, 13, 44)));
    assert!(!hours.is_open(utc(2026, 1, 16, 13, 45)));
    // Saturday, Monday Feb 16 (holiday), Thursday Dec 31 (closed date).
    assert!(!hours.is_open(utc(2026, 1, 17, 9, 0)));
    assert!(!hours.is_open(utc(2026, 2, 16, 9, 0)));
    assert!(hours.is_open(utc(2026, 12, 30, 9, 0)));
    assert!(!hours.is_open(utc(2026, 12, 31, 9, 0)));
}

#[test]
fn dst_change_days() {
    let hours = office();
    // Spring forward Sun 2026-03-29: Monday 08:00 local is 05:00 UTC, the Friday before 06:00 UTC.
    assert!(!hours.is_open(utc(2026, 3, 27, 5, 59)));
    assert!(hours.is_open(utc(2026, 3, 27, 6, 0)));
    assert!(!hours.is_open(utc(2026, 3, 30, 4, 59)));
    assert!(hours.is_open(utc(2026, 3, 30, 5, 0)));
    // Fall back Sun 2026-10-25: Monday 08:00 local is 06:00 UTC again.
    assert!(!hours.is_open(utc(2026, 10, 26, 5, 59)));
    assert!(hours.is_open(utc(2026, 10, 26, 6, 0)));
    // A range starting inside the spring gap (03:00-04:00 does not exist) opens at 04:00.
    let mut night = office();
    night.weekly[6] = TimeRange::parse_list("03:30-05:00").unwrap();
    let opening = night.next_opening(utc(2026, 3, 28, 22, 0)).unwrap();
    assert_eq!(opening.with_timezone(&Utc), utc(2026, 3, 29, 1, 0));
    // On the autumn day, 08:00 local is UTC+2: 06:00 UTC.
    let mut sunday = office();
    sunday.weekly[6] = TimeRange::parse_list("08:00-09:00").unwrap();
    let opening = sunday.next_opening(utc(2026, 10, 25, 0, 0)).unwrap();
    assert_eq!(opening.with_timezone(&Utc), utc(2026, 10, 25, 6, 0));
}

#[test]
fn next_opening_across_weekend_and_holiday() {
    let hours = office();
    // Fri 2026-02-13 16:00 local → Mon Feb 16 is a holiday → Tue Feb 17 08:00 (06:00 UTC).
    let reopening = hours.reopening(utc(2026, 2, 13, 14, 0)).unwrap();
    assert_eq!(reopening.at.with_timezone(&Utc), utc(2026, 2, 17, 6, 0));
    assert_eq!(
        (
            reopening.weekday,
            reopening.hour,
            reopening.minute,
            reopening.day
        ),
        (Weekday::Tue, 8, 0, RelativeDay::Later)
    );
    // Thu evening → Friday morning is "tomorrow"; lunch break → "today" at 13:00.
    let tomorrow = hours.reopening(utc(2026, 1, 15, 18, 0)).unwrap();
    assert_eq!(
        (tomorrow.weekday, tomorrow.hour, tomorrow.day),
        (Weekday::Fri, 8, RelativeDay::Tomorrow)
    );
    let today = hours.reopening(utc(2026, 1, 14, 10, 30)).unwrap();
    assert_eq!(
        (today.hour, today.minute, today.day),
        (13, 0, RelativeDay::Today)
    );
    // Open now → now.
    assert_eq!(
        hours
            .next_opening(utc(2026, 1, 14, 8, 0))
            .unwrap()
            .with_timezone(&Utc),
        utc(2026, 1, 14, 8, 0)
    );
    // Easter 2026: Sat Apr 4 → Sun Easter, Mon Easter Monday → Tue Apr 7 08:00 (UTC+3).
    assert_eq!(
        hours
            .next_opening(utc(2026, 4, 4, 9, 0))
            .unwrap()
            .with_timezone(&Utc),
        utc(2026, 4, 7, 5, 0)
    );
    // Never open → None.
    let never = OpeningHours {
        weekly: Default::default(),
        ..office()
    };
    assert_eq!(never.next_opening(utc(2026, 1, 14, 8, 0)), None);
}

#[test]
fn a_group_callback_is_read_with_its_defaults_and_checked() {
    let text = with(
        "hours = \"office\"\n",
        "hours = \"office\"\ncallback = { trunk = \"carrier\", offer_after = \"90s\" }\n",
    );
    assert_eq!(problems(&text), Vec::<String>::new());
    let routing = parse(&text, "routing.toml").unwrap();
    let callback = routing.groups["desk"].callback.as_ref().unwrap();
    assert_eq!(callback.offer_after, std::time::Duration::from_secs(90));
    assert_eq!(callback.key.value, '1');
    assert_eq!(callback.max_attempts, 3);
    assert_eq!(callback.retry_after, std::time::Duration::from_secs(300));
    assert_eq!(callback.trunk.value, "carrier");
    assert_eq!(callback.window, None, "attempts follow the group's hours");

    let bad = with(
        "hours = \"office\"\n",
        "hours = \"office\"\ncallback = { key = \"#\", window = \"evenings\", colour = 1 }\n",
    );
    assert_eq!(
        problems(&bad),
        vec![
            "routing.toml:21: groups.desk.callback.colour: unknown key (expected one of: offer_after, key, max_attempts, retry_after, trunk, window)",
            "routing.toml:21: groups.desk.callback.key: bad callback key \"#\": expected one digit 0-9",
            "routing.toml:21: groups.desk.callback.trunk: missing required key",
        ]
    );
    let no_trunk = with(
        "hours = \"office\"\n",
        "hours = \"office\"\ncallback = { window = \"evenings\" }\n",
    );
    assert_eq!(
        problems(&no_trunk),
        vec!["routing.toml:21: groups.desk.callback.trunk: missing required key"]
    );
    let unknown_window = with(
        "hours = \"office\"\n",
        "hours = \"office\"\ntransfer = \"refer\"\ncallback = { trunk = \"carrier\", window = \"evenings\" }\n",
    );
    assert_eq!(
        problems(&unknown_window),
        vec![
            "routing.toml:22: groups.desk.callback: a callback needs a queue: the group's transfer must be bridge",
            "routing.toml:22: groups.desk.callback.window: hours \"evenings\" are not defined (window is \"hours\", the group's, or an [hours.NAME])",
        ]
    );
}
