use super::*;
use crate::http::live::QueueLive;

#[test]
fn data_text_cannot_inject_markup() {
    let snapshot = LiveSnapshot {
        queues: vec![QueueLive {
            group: "<script>alert('x')</script>".into(),
            waiting: 2,
            longest_wait_s: 75,
            ..QueueLive::default()
        }],
        ..LiveSnapshot::default()
    };
    let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let data = PeriodData::compute(&[], Period::day(day), Thresholds::default()).unwrap();
    let html = render(&View::new(&snapshot, &data, Lang::En, day));
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("1:15"));
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

#[test]
fn parameters_default_to_today_in_lithuanian_and_ignore_blank_form_fields() {
    let today = date("2026-03-04");
    let params = Params::parse(&[], today, false).unwrap();
    assert_eq!(params.period, Period::day(today));
    assert_eq!((params.lang, params.csv), (Lang::Lt, None));
    assert_eq!(params.location("/"), "/");

    // The form sends every field; only the chosen kind's are used.
    let form = pairs(&[
        ("period", "week"),
        ("day", "2026-02-25"),
        ("from", ""),
        ("to", "2026-03-01"),
        ("lang", "en"),
    ]);
    let params = Params::parse(&form, today, false).unwrap();
    assert_eq!(params.period, Period::week(date("2026-02-25")));
    assert_eq!(params.location("/"), "/?period=week&day=2026-02-23&lang=en");

    // from/to alone mean a custom period; the CSV route is CSV whatever `format` says.
    let custom = pairs(&[("to", "2026-03-01"), ("from", "2026-02-20"), ("token", "x")]);
    let params = Params::parse(&custom, today, true).unwrap();
    assert_eq!(params.period.kind, PeriodKind::Custom);
    assert_eq!(params.period.len_days(), 10);
    assert!(params.token_given);
    assert_eq!(params.csv, Some(Table::Enterprises));
    assert_eq!(
        params.location("/dashboard.csv"),
        "/dashboard.csv?period=custom&from=2026-02-20&to=2026-03-01&table=enterprises"
    );
    let csv = Params::parse(
        &pairs(&[("format", "csv"), ("table", "agents")]),
        today,
        false,
    );
    assert_eq!(csv.unwrap().csv, Some(Table::Agents));

    for bad in [
        ("period", "year"),
        ("lang", "ru"),
        ("format", "xlsx"),
        ("table", "x"),
        ("day", "4 March"),
        ("colour", "red"),
    ] {
        assert!(
            Params::parse(&pairs(&[bad]), today, false).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn names_sort_in_lithuanian_order_and_agents_show_their_user() {
    let mut names = vec![
        "Vilniaus vandenys",
        "Vilniaus šilumos tinklai",
        "Vilniaus savivaldybė",
    ];
    names.sort_by_cached_key(|name| collation_key(name));
    assert_eq!(
        names,
        [
            "Vilniaus savivaldybė",
            "Vilniaus šilumos tinklai",
            "Vilniaus vandenys"
        ]
    );
    assert_eq!(agents::display_name("user:ona"), "ona");
    assert_eq!(
        agents::display_name("sip:water-1@127.0.0.1:5301"),
        "water-1"
    );
    assert_eq!(agents::display_name("agent-7"), "agent-7");
}

#[test]
fn group_names_fall_back_to_lithuanian_then_the_key() {
    let snapshot = LiveSnapshot {
        queues: vec![QueueLive {
            group: "water".into(),
            names: [("lt".to_owned(), "Vilniaus vandenys".to_owned())]
                .into_iter()
                .collect(),
            ..QueueLive::default()
        }],
        ..LiveSnapshot::default()
    };
    let names = GroupNames::of(&snapshot);
    assert_eq!(names.name("water", Lang::En), "Vilniaus vandenys");
    assert_eq!(names.name("heating", Lang::En), "heating");
    assert_eq!(names.name(NONE_KEY, Lang::Lt), "(be grupės)");
}

#[test]
fn csv_cells_are_quoted_and_cannot_start_a_formula() {
    let day = date("2026-03-02");
    let snapshot = LiveSnapshot {
        agents: vec![crate::http::live::AgentLive {
            agent: "=cmd|' /C calc'!A0".into(),
            state: "idle".into(),
            groups: vec!["a,b".into()],
            ..Default::default()
        }],
        ..LiveSnapshot::default()
    };
    let data = PeriodData::compute(&[], Period::day(day), Thresholds::default()).unwrap();
    let text = csv::render(&View::new(&snapshot, &data, Lang::En, day), Table::Agents);
    let line = text.lines().nth(1).unwrap();
    assert!(
        line.starts_with("'=cmd|' /C calc'!A0,'=cmd|' /C calc'!A0,\"a,b\",,idle,"),
        "{line}"
    );
    // 24 hours, each with empty ratios, for a day's trend.
    let trend = csv::render(&View::new(&snapshot, &data, Lang::En, day), Table::Trend);
    assert_eq!(trend.lines().count(), 25);
    assert!(trend.contains("\r\n09,0,0,0,0,0,0,,,,,\r\n"));
}

#[test]
fn agent_forms_carry_the_csrf_field_and_the_buttons_of_the_state() {
    let day = date("2026-03-02");
    let agent = |id: &str, state: &str| crate::http::live::AgentLive {
        agent: id.into(),
        state: state.into(),
        groups: vec!["water".into()],
        ..Default::default()
    };
    let snapshot = LiveSnapshot {
        agents: vec![
            agent("user:ona", "idle"),
            agent("sip:a b/\"c\"@10.0.0.5", "paused"),
            agent("user:jonas", "logged_out"),
            agent("user:rasa", "on_call"),
        ],
        ..LiveSnapshot::default()
    };
    let data = PeriodData::compute(&[], Period::day(day), Thresholds::default()).unwrap();
    let plain = render(&View::new(&snapshot, &data, Lang::En, day));
    assert!(!plain.contains("<form class=\"agent-state\""));
    assert!(!plain.contains(">Actions</th>"));

    let mut view = View::new(&snapshot, &data, Lang::En, day);
    view.actions = Some(actions::Actions {
        csrf: actions::csrf_token(Some("secret")),
        query: "period=week&day=2026-03-02&lang=en".into(),
    });
    let html = render(&view);
    assert!(html.contains(">Actions</th>"));
    let csrf = actions::csrf_token(Some("secret"));
    assert_eq!(
        html.matches(&format!("name=\"csrf\" value=\"{csrf}\""))
            .count(),
        4
    );
    assert!(html.contains(
        "<form class=\"agent-state\" method=\"post\" \
         action=\"/agents/user:ona/state?period=week&amp;day=2026-03-02&amp;lang=en\">\
         <input type=\"hidden\" name=\"csrf\" value=\""
    ));
    let form_of = |id: &str| {
        let action = format!("action=\"/agents/{}/state", actions::encode_segment(id));
        let start = html
            .find(&action)
            .unwrap_or_else(|| panic!("no form for {id}"));
        let end = start + html[start..].find("</form>").unwrap();
        html[start..end].to_owned()
    };
    let ona = form_of("user:ona");
    assert!(ona.contains("<button type=\"submit\" name=\"state\" value=\"paused\">Pause</button>"));
    assert!(ona.contains("value=\"logged_out\">Log out</button>"));
    assert!(!ona.contains("value=\"available\""));
    // The id is percent-encoded in the path: no quote can end the attribute.
    let odd = form_of("sip:a b/\"c\"@10.0.0.5");
    assert!(odd.starts_with("action=\"/agents/sip:a%20b%2F%22c%22@10.0.0.5/state?"));
    assert!(odd.contains("value=\"available\">Make available</button>"));
    assert!(odd.contains("value=\"logged_out\""));
    let jonas = form_of("user:jonas");
    assert!(jonas.contains("value=\"available\"") && !jonas.contains("value=\"paused\""));
    let rasa = form_of("user:rasa");
    for choice in ["paused", "logged_out", "available"] {
        assert!(rasa.contains(&format!("value=\"{choice}\"")), "{choice}");
    }
    // Lithuanian buttons.
    view.lang = Lang::Lt;
    let lt = render(&view);
    for label in [
        ">Veiksmai</th>",
        ">Pertrauka</button>",
        ">Atjungti</button>",
        ">Grąžinti į darbą</button>",
    ] {
        assert!(lt.contains(label), "{label}");
    }
}

#[test]
fn the_csrf_token_is_keyed_and_checked_whole() {
    let token = actions::csrf_token(Some("secret"));
    assert_eq!(token.len(), 64);
    assert!(actions::csrf_matches(Some("secret"), &token));
    assert!(!actions::csrf_matches(Some("other"), &token));
    assert!(!actions::csrf_matches(Some("secret"), &token[..62]));
    assert!(!actions::csrf_matches(Some("secret"), ""));
    assert!(!actions::csrf_matches(Some("secret"), "not hex"));
    // Without an HTTP token: a per-process random key, stable within the process.
    let open = actions::csrf_token(None);
    assert_eq!(open, actions::csrf_token(None));
    assert_ne!(open, token);
    assert!(actions::csrf_matches(None, &open));
    assert!(!actions::csrf_matches(None, &token));
}

#[test]
fn agent_form_paths_and_states() {
    assert!(actions::is_form_path("/agents/user:ona/state"));
    assert!(actions::is_form_path("/agents/sip:a%2Fb@h/state"));
    assert!(!actions::is_form_path("/agents//state"));
    assert!(!actions::is_form_path("/agents/a/b/state"));
    assert!(!actions::is_form_path("/api/agents/a/state"));
    assert_eq!(actions::encode_segment("user:ona"), "user:ona");
    assert_eq!(actions::encode_segment("a b+č?#"), "a%20b%2B%C4%8D%3F%23");
    assert_eq!(actions::pause_of("available"), Ok(None));
    assert_eq!(
        actions::pause_of("logged_out"),
        Ok(Some(crate::acd::PauseReason::LoggedOut))
    );
    assert!(actions::pause_of("auto_paused").is_err());
}
