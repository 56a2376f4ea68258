//! `remember_language` and `change_language_key`: reading, defaults, the key's collisions and
//! the prompts they make the flow play.

use std::time::Duration;

use super::check::check;
use super::model::parse;

/// Two languages; `main` uses 1, 2 and 9, the operator key is the default 0.
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
options."9" = { repeat = true }

[menus.sub]
prompt = "sub_menu"
options."1" = { group = "desk" }
options."*" = { back = true }

[groups.desk]
name = { lt = "Skyrius", en = "Desk" }
transfer = "refer"
agents = [{ uri = "sip:desk@127.0.0.1:5301" }]
"#;

/// `lines` added at the end of `[hotline]`.
fn hotline_with(lines: &str) -> String {
    BASE.replacen(
        "start = \"main\"\n",
        &format!("start = \"main\"\n{lines}"),
        1,
    )
}

fn problems_without(text: &str, absent: &[&str]) -> Vec<String> {
    let routing = match parse(text, "routing.toml") {
        Ok(routing) => routing,
        Err(problems) => return problems.iter().map(ToString::to_string).collect(),
    };
    let exists = |_: &str, name: &str| !absent.contains(&name);
    check(&routing, &exists, &[])
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn problems(text: &str) -> Vec<String> {
    problems_without(text, &[])
}

#[test]
fn languages_are_remembered_90_days_by_default_and_changed_with_star() {
    let routing = parse(BASE, "routing.toml").unwrap();
    let hotline = &routing.hotline;
    assert_eq!(
        hotline.remember_language.value,
        Duration::from_secs(90 * 86_400)
    );
    assert_eq!(hotline.change_language_key.value, '*');
    assert_eq!(problems(BASE), Vec::<String>::new());

    let set = hotline_with("remember_language = \"30d\"\nchange_language_key = \"#\"\n");
    let routing = parse(&set, "routing.toml").unwrap();
    assert_eq!(
        routing.hotline.remember_language.value,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(routing.hotline.change_language_key.value, '#');
    assert_eq!(routing.hotline.change_language_key.at.line, 8);

    let off = parse(
        &hotline_with("remember_language = \"0s\"\n"),
        "routing.toml",
    )
    .unwrap();
    assert!(off.hotline.remember_language.value.is_zero());
}

#[test]
fn a_bad_change_key_or_window_is_reported_at_its_line() {
    assert_eq!(
        problems(&hotline_with("change_language_key = \"99\"\n")),
        vec![
            "routing.toml:7: hotline.change_language_key: bad change-language key \"99\" \
             (expected one key of 0-9, * or #)"
        ]
    );
    assert_eq!(
        problems(&hotline_with("change_language_key = \"\"\n")),
        vec![
            "routing.toml:7: hotline.change_language_key: bad change-language key \"\" \
             (expected one key of 0-9, * or #)"
        ]
    );
    assert_eq!(
        problems(&hotline_with("remember_language = \"3 months\"\n")),
        vec![
            "routing.toml:7: hotline.remember_language: bad duration \"3 months\": expected a \
             number and ms, s, m, h or d (e.g. \"5s\")"
        ]
    );
}

#[test]
fn the_change_key_must_not_be_a_start_menu_option_nor_the_operator_key() {
    assert_eq!(
        problems(&hotline_with("change_language_key = \"9\"\n")),
        vec![
            "routing.toml:7: hotline.change_language_key: change-language key \"9\" is also \
             option \"9\" of the start menu \"main\" (line 13): choose another key or another \
             option"
        ]
    );
    assert_eq!(
        problems(&hotline_with("change_language_key = \"0\"\n")),
        vec![
            "routing.toml:7: hotline.change_language_key: change-language key \"0\" is the \
             operator key: choose another key"
        ]
    );
    // A submenu's option is no collision: the key only counts in the start menu.
    let back_in_sub = hotline_with("change_language_key = \"*\"\n");
    assert_eq!(problems(&back_in_sub), Vec::<String>::new());
    // Not remembering, or nothing to choose: the key is never pressed, so it may be anything.
    let off = hotline_with("remember_language = \"0s\"\nchange_language_key = \"9\"\n");
    assert_eq!(problems(&off), Vec::<String>::new());
    let one_language = hotline_with("change_language_key = \"9\"\n")
        .replace("languages = [\"lt\", \"en\"]", "languages = [\"lt\"]")
        .replace(
            "name = { lt = \"Skyrius\", en = \"Desk\" }",
            "name = { lt = \"Skyrius\" }",
        );
    assert_eq!(problems(&one_language), Vec::<String>::new());
}

#[test]
fn the_change_prompt_and_its_key_name_are_required_only_when_remembering() {
    let absent = ["change_language", "digit_star", "digit_pound"];
    assert_eq!(
        problems_without(BASE, &absent),
        vec![
            "routing.toml:2: hotline.languages: prompt \"change_language\" is missing in: lt, en",
            "routing.toml:2: hotline.languages: prompt \"digit_star\" is missing in: lt, en",
        ]
    );
    let pound = hotline_with("change_language_key = \"#\"\n");
    assert_eq!(
        problems_without(&pound, &absent),
        vec![
            "routing.toml:2: hotline.languages: prompt \"change_language\" is missing in: lt, en",
            "routing.toml:2: hotline.languages: prompt \"digit_pound\" is missing in: lt, en",
        ]
    );
    let off = hotline_with("remember_language = \"0s\"\n");
    assert_eq!(problems_without(&off, &absent), Vec::<String>::new());
}
