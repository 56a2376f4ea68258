//! The supervisor's routing tools as they are run from a shell: `hotline check` on the shipped
//! routing.toml and on deliberately broken fixtures (exit status, and every problem as
//! `FILE:LINE: key: message` on stdout), and `hotline simulate` on the shipped file at fixed
//! local times. Fixtures live in `tests/fixtures/routing/`; the `broken_*` ones are broken on
//! purpose, every other one must pass `hotline check`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped routing.toml changed by `edit`, written into a fresh folder (kept alive by the
/// returned guard).
fn shipped_routing_with(edit: impl FnOnce(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(manifest_dir().join("routing.toml")).unwrap();
    let routing = dir.path().join("routing.toml");
    std::fs::write(&routing, edit(text)).unwrap();
    (dir, routing)
}

fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/routing").join(name)
}

/// Runs `hotline ARGS` from the crate folder (so `routing.toml` and `prompts/` are the
/// shipped ones) with no `HOTLINE__*` settings but `env`.
fn hotline(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
    command
        .args(args)
        .current_dir(manifest_dir())
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HOTLINE__") {
            command.env_remove(&key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("running hotline")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `hotline check FIXTURE` must fail with exactly `problems` on stdout, in order.
/// `problems` name the fixture by its file name; `check` prints its full path.
fn assert_check_fails_with(name: &str, problems: &[&str]) {
    let output = hotline(&["check", fixture(name).to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let printed = stdout(&output);
    let printed: Vec<&str> = printed.lines().collect();
    let folder = fixture(name).parent().unwrap().display().to_string();
    let problems: Vec<String> = problems.iter().map(|p| format!("{folder}/{p}")).collect();
    assert_eq!(printed, problems);
    assert!(
        stderr(&output).contains(&format!(
            "{} problem(s); not fit to go live",
            problems.len()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_accepts_the_shipped_routing() {
    let output = hotline(&["check", "routing.toml"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let summary = stdout(&output);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.starts_with("routing.toml: OK (hash ")
            && summary.contains("languages lt, en, ru, pl, 2 menus, 9 groups, 12 agents"),
        "{summary}"
    );
}

#[test]
fn check_without_a_file_checks_the_routing_setting() {
    let broken = fixture("broken_references.toml");
    let output = hotline(
        &["check"],
        &[("HOTLINE__ROUTING", broken.to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).starts_with(&format!("{}:12: ", broken.display())),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_reports_every_value_problem_a_key_typo_a_bad_time_and_an_unknown_strategy() {
    assert_check_fails_with(
        "broken_values.toml",
        &[
            "broken_values.toml:17: groups.desk.anounce: unknown key (expected one of: name, \
             announce, music, hours, when_closed, when_empty, transfer, strategy, ring_timeout, wrap_up, \
             language_wait, max_wait, max_queue, overflow, retry_after_busy, retry_after_no_answer, \
             max_no_answer, agents, callback, media_encryption)",
            "broken_values.toml:19: groups.desk.strategy: unknown strategy \"random\" (expected \
             ring-all, round-robin, longest-idle or fewest-calls)",
            "broken_values.toml:23: hours.office.weekly.tue: bad time \"25:00\": expected HH:MM \
             (00:00-23:59)",
        ],
    );
}

#[test]
fn check_reports_an_undefined_group_and_a_missing_prompt() {
    assert_check_fails_with(
        "broken_references.toml",
        &[
            "broken_references.toml:12: menus.main.prompt: prompt \"main_menu_v2\" is missing \
             in: en, lt",
            "broken_references.toml:14: menus.main.options.2.group: group \"hetaing\" is not a \
             defined group",
        ],
    );
}

#[test]
fn check_reports_a_digit_given_twice() {
    // TOML itself forbids the duplicate key, so the problem comes from the TOML parser and
    // names no key of ours.
    assert_check_fails_with(
        "broken_duplicate_digit.toml",
        &["broken_duplicate_digit.toml:14: : duplicate key `1` in table `menus.main`"],
    );
}

#[test]
fn every_fixture_passes_check_unless_it_is_broken_on_purpose() {
    let mut seen = 0;
    for entry in fs::read_dir(manifest_dir().join("tests/fixtures/routing")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Registering agents need their credentials: the queue tests' file has theirs.
        let credentials = manifest_dir().join("tests/fixtures/agents/queue_credentials.toml");
        let env = [("HOTLINE__SIP__CREDENTIALS", credentials.to_str().unwrap())];
        let output = hotline(&["check", path.to_str().unwrap()], &env);
        let expected = if name.starts_with("broken_") { 1 } else { 0 };
        assert_eq!(
            output.status.code(),
            Some(expected),
            "hotline check {name}:\n{}{}",
            stdout(&output),
            stderr(&output)
        );
    }
    assert!(seen >= 8, "only {seen} routing fixtures found");
}

#[test]
fn simulate_english_caller_on_a_wednesday_morning_is_queued_for_heating() {
    let output = hotline(
        &["simulate", "--lang", "en", "--at", "2026-12-02 10:00", "2"],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("play [en] main_menu"),
        "the language choice leads to the English main menu:\n{printed}"
    );
    // The shipped heating group uses the default transfer, a bridge through its queue.
    assert!(
        printed.contains("QUEUE for group heating")
            && printed.contains("\"[EN] Vilnius Heating Networks\""),
        "{printed}"
    );
    assert!(!printed.contains("HANG UP"), "{printed}");
    assert_eq!(
        printed.lines().last(),
        Some("path: language en > main:2 > queue heating")
    );
    // Each prompt is shown when it really starts: after the ones queued before it.
    let plays: Vec<(f64, f64)> = printed
        .lines()
        .filter(|line| line.contains(" play ["))
        .take(5)
        .map(|line| {
            let start = line
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('s');
            let length = line.rsplit('(').next().unwrap().trim_end_matches("s)");
            (start.parse().unwrap(), length.parse().unwrap())
        })
        .collect();
    for pair in plays.windows(2) {
        let ((start, length), (next, _)) = (pair[0], pair[1]);
        assert!((start + length - next).abs() < 0.11, "{printed}");
    }
}

#[test]
fn simulate_a_refer_group_names_its_agent() {
    let routing = fixture("short_en.toml");
    let output = hotline(
        &["simulate", "--routing", routing.to_str().unwrap(), "1"],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("TRANSFER (REFER) to sip:desk-1@127.0.0.1:5401"),
        "{printed}"
    );
    assert_eq!(
        printed.lines().last(),
        Some("path: main:1 > group desk -> sip:desk-1@127.0.0.1:5401")
    );
}

#[test]
fn simulate_on_a_saturday_says_heating_is_closed_until_monday_and_hangs_up() {
    let output = hotline(
        &["simulate", "--at", "2026-12-05 10:00", "--lang", "en", "2"],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    // What plays after the second key (heating), the first one having chosen English.
    let (_, after_heating_key) = printed
        .rsplit_once("caller presses 2")
        .unwrap_or_else(|| panic!("no key pressed:\n{printed}"));
    let closed_message: Vec<&str> = after_heating_key
        .lines()
        .filter_map(|line| line.split("play [en] ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(
        closed_message,
        [
            "closed_prefix",
            "day_mon",
            "time_at",
            "hour_08",
            "minute_00",
            "goodbye"
        ],
        "{printed}"
    );
    assert!(printed.contains("HANG UP"), "{printed}");
    assert!(!printed.contains("TRANSFER"), "{printed}");
    assert_eq!(
        printed.lines().last(),
        Some("path: language en > main:2 > heating closed")
    );
}

#[test]
fn simulate_a_returning_caller_greeted_in_their_remembered_language() {
    let output = hotline(
        &[
            "simulate",
            "--remembered",
            "en",
            "--at",
            "2026-12-02 10:00",
            "2",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let played: Vec<&str> = printed
        .lines()
        .filter_map(|line| line.split("play ").nth(1))
        .map(|rest| rest.split("  (").next().unwrap_or_default())
        .collect();
    assert_eq!(
        played[..4],
        [
            "[en] welcome",
            "[en] change_language",
            "[en] digit_star",
            "[en] main_menu"
        ],
        "no language menu:\n{printed}"
    );
    assert!(printed.contains("language en remembered"), "{printed}");
    assert_eq!(
        printed.lines().last(),
        Some("path: remembered language en > main:2 > queue heating")
    );

    // The change-language key, first key in the main menu, opens the language menu.
    let output = hotline(
        &[
            "simulate",
            "--remembered",
            "en",
            "--at",
            "2026-12-02 10:00",
            "*",
            "3",
            "2",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(printed.contains("play [pl] language_menu_pl"), "{printed}");
    assert_eq!(
        printed.lines().last(),
        Some("path: remembered language en > main:* (change language) > language ru > main:2 > queue heating")
    );

    let output = hotline(&["simulate", "--remembered", "de", "2"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("language `de` is not in [hotline] languages"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn simulate_refuses_keys_a_telephone_cannot_send() {
    let output = hotline(&["simulate", "--lang", "en", "2x"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("key 'x' cannot be pressed on a telephone"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    let output = hotline(&["simulate", "--lang", "en", "2", "#"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// A fresh folder with no database: `hotline stats` run there.
fn stats_in_empty_folder(extra: &[&str]) -> (Output, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("var/hotline.db");
    let url = format!("sqlite://{}", database.display());
    let mut args = vec!["stats", "--from", "2026-03-02"];
    args.extend_from_slice(extra);
    let output = hotline(&args, &[("HOTLINE__DATABASE__URL", &url)]);
    (output, database, dir)
}

#[test]
fn stats_where_no_database_exists_is_refused_unless_allowed() {
    let (output, database, _dir) = stats_in_empty_folder(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "no call-record database at sqlite://{}",
            database.display()
        )) && message.contains("--allow-empty"),
        "{message}"
    );
    assert!(!database.exists(), "nothing is created");

    let (output, database, _dir) = stats_in_empty_folder(&["--allow-empty", "--format", "csv"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("calls,"), "{}", stdout(&output));
    assert!(database.exists());
}

#[test]
fn stats_from_after_to_is_an_error() {
    let (output, _, _dir) = stats_in_empty_folder(&["--to", "2026-03-01", "--allow-empty"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--from 2026-03-02 is not before --to 2026-03-01"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn simulate_a_silent_caller_on_the_shipped_routing_reaches_a_group_within_60_seconds() {
    // No keys on the command line and no input: the caller stays silent to the end.
    let output = hotline(&["simulate", "--at", "2026-12-02 10:00"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let reached = printed
        .lines()
        .find_map(|line| line.strip_prefix("reached group municipality after "))
        .unwrap_or_else(|| panic!("no group reached:\n{printed}"));
    let seconds: f64 = reached
        .trim_end_matches("s of simulated time")
        .parse()
        .unwrap_or_else(|_| panic!("bad time {reached:?}"));
    assert!(
        (30.0..=60.0).contains(&seconds),
        "a silent caller waits {seconds} s for a person:\n{printed}"
    );
    assert_eq!(
        printed.lines().last(),
        Some("path: language: no key > language lt > main: no key > fallback > queue municipality")
    );
}

#[test]
fn simulate_the_operator_key_from_the_language_menu() {
    let output = hotline(&["simulate", "--at", "2026-12-02 10:00", "0"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("QUEUE for group municipality")
            && printed.contains("\"[LT] Vilnius City Municipality\""),
        "{printed}"
    );
    assert_eq!(
        printed.lines().last(),
        Some("path: language:0 (operator) > queue municipality")
    );
}

#[test]
fn diff_tells_what_a_change_does_and_refuses_a_new_file_unfit_to_go_live() {
    let shipped = manifest_dir().join("routing.toml");
    let (_dir, changed) = shipped_routing_with(|text| {
        text.replacen("max_wait = \"5m\"", "max_wait = \"3m\"", 1)
            .replace("# the first menu", "# a comment that does not count")
    });
    let output = hotline(
        &["diff", shipped.to_str().unwrap(), changed.to_str().unwrap()],
        &[],
    );
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let text_out = stdout(&output);
    let changes: Vec<&str> = text_out
        .lines()
        .filter(|l| l.starts_with(['~', '+', '-']))
        .collect();
    assert_eq!(changes.len(), 1, "{text_out}");
    assert!(
        changes[0].ends_with(": max_wait: \"5m\" -> \"3m\""),
        "{text_out}"
    );

    let broken = fixture("broken_values.toml");
    let output = hotline(
        &["diff", shipped.to_str().unwrap(), broken.to_str().unwrap()],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("unknown key"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_requires_a_credentials_entry_for_each_registering_agent() {
    let (_dir, routing) = shipped_routing_with(|text| {
        text.replace("uri = \"sip:water-1@127.0.0.1:5301\"", "user = \"zoe\"")
            .replace("uri = \"sip:water-2@127.0.0.1:5302\"", "user = \"anna\"")
    });
    let credentials = manifest_dir().join("tests/fixtures/agents/credentials.toml");
    let env = [("HOTLINE__SIP__CREDENTIALS", credentials.to_str().unwrap())];
    let output = hotline(&["check", routing.to_str().unwrap()], &env);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let problems: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("groups.water.agents[0].user: agent \"zoe\" has no entry in")
            && problems[0].ends_with("it could never register"),
        "{problems:?}"
    );
    // Without a credentials file nobody could register.
    let output = hotline(&["check", routing.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("no sip.credentials file is set"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_names_an_opening_time_off_the_quarter_hour_as_the_cause() {
    let (_dir, routing) = shipped_routing_with(|text| {
        text.replacen("mon = \"08:00-17:00\"", "mon = \"08:10-17:00\"", 1)
    });
    let output = hotline(&["check", routing.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    assert!(
        out.contains("opening time 08:10 is off the quarter hour"),
        "{out}"
    );
    assert!(!out.contains("minute_10"), "{out}");
}

#[test]
fn check_reports_value_problems_and_missing_prompts_in_one_pass() {
    let (_dir, routing) = shipped_routing_with(|text| {
        text.replacen("strategy = \"longest-idle\"", "strategy = \"random\"", 1)
            .replacen("prompt = \"main_menu\"", "prompt = \"main_menu_v9\"", 1)
    });
    let output = hotline(&["check", routing.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    assert!(out.contains("unknown strategy \"random\""), "{out}");
    assert!(out.contains("prompt \"main_menu_v9\" is missing"), "{out}");
}
