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

/// A caller's call to heating at 09:`minute` (Vilnius) that heard the callback offer and
/// asked for one when `requested`, else was answered after 30 s.
fn callback_call(id: &str, minute: i64, requested: bool) -> CallRecord {
    use crate::cdr::{DtmfMode, Outcome};
    let arrived = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 2, 7, 0, 0).unwrap()
        + chrono::Duration::minutes(minute);
    let chosen = arrived + chrono::Duration::seconds(20);
    let answered = (!requested).then(|| chosen + chrono::Duration::seconds(30));
    CallRecord {
        call_id: id.into(),
        caller: None,
        trunk: "carrier".into(),
        arrived,
        ivr_answered: Some(arrived),
        language_chosen: None,
        group_chosen: Some(chosen),
        queue_entered: Some(chosen),
        agent_answered: answered,
        ended: chosen + chrono::Duration::seconds(90),
        language: Some("lt".into()),
        menu_path: if requested {
            "language lt > main:2 > queue heating > callback offered > callback requested".into()
        } else {
            "language lt > main:2 > queue heating > callback offered".into()
        },
        dtmf_mode: DtmfMode::Rfc4733,
        enterprise: Some("heating".into()),
        agent: answered.map(|_| "user:ona".into()),
        transfer_mode: None,
        outcome: if requested {
            Outcome::CallbackRequested
        } else {
            Outcome::Connected
        },
        rtp_packets: 0,
        rtp_lost: 0,
        rtp_jitter_ms: 0.0,
        callback_of: None,
    }
}

/// A dial of the resident who asked in `original`, `after_s` after the request, connected
/// 10 min after the request or not reached.
fn callback_attempt(id: &str, original: &CallRecord, after_s: i64, connected: bool) -> CallRecord {
    use crate::cdr::Outcome;
    let requested = original.ended;
    let answered = connected.then(|| requested + chrono::Duration::minutes(10));
    CallRecord {
        call_id: id.into(),
        caller: Some("+37060000000".into()),
        arrived: requested + chrono::Duration::seconds(after_s),
        ivr_answered: None,
        group_chosen: Some(requested),
        queue_entered: Some(requested),
        agent_answered: answered,
        ended: requested + chrono::Duration::minutes(20),
        dtmf_mode: crate::cdr::DtmfMode::None,
        menu_path: format!("{} > callback attempt 1", original.menu_path),
        agent: Some("user:ona".into()),
        outcome: if connected {
            Outcome::Connected
        } else {
            Outcome::NotReached
        },
        callback_of: Some(original.call_id.clone()),
        ..original.clone()
    }
}

#[test]
fn callback_panels_show_pending_requests_and_the_periods_figures() {
    let day = date("2026-03-02");
    let heating = QueueLive {
        group: "heating".into(),
        names: [
            ("lt".to_owned(), "Vilniaus šilumos tinklai".to_owned()),
            ("en".to_owned(), "Vilnius Heating Networks".to_owned()),
        ]
        .into_iter()
        .collect(),
        ..QueueLive::default()
    };
    let mut snapshot = LiveSnapshot {
        queues: vec![heating],
        ..LiveSnapshot::default()
    };
    // Without callbacks (no offer, request or dial; none pending): no panels.
    let mut plain = callback_call("x", 0, false);
    plain.menu_path = "language lt > main:2 > queue heating".into();
    let data = PeriodData::compute(&[plain], Period::day(day), Thresholds::default()).unwrap();
    let html = render(&View::new(&snapshot, &data, Lang::En, day));
    assert!(!html.contains("id=\"callbacks"), "no callback panels");

    let (b, c) = (callback_call("b", 1, true), callback_call("c", 2, true));
    let records = vec![
        callback_call("a", 0, false),
        callback_attempt("b1", &b, 60, false),
        callback_attempt("b2", &b, 400, true),
        callback_attempt("c1", &c, 60, false),
        callback_attempt("c2", &c, 400, false),
        b,
        c,
        callback_call("d", 3, true),
    ];
    let data = PeriodData::compute(&records, Period::day(day), Thresholds::default()).unwrap();
    assert_eq!(data.total.calls, 4, "attempts are not calls");
    snapshot.callbacks = vec![
        crate::http::live::CallbackLive {
            group: "heating".into(),
            language: "lt".into(),
            number: "+37060000000".into(),
            state: "queued".into(),
            attempts: 0,
            waiting_s: 125,
            position: Some(2),
            next_attempt_s: None,
        },
        crate::http::live::CallbackLive {
            group: "<b>odd</b>".into(),
            language: "en".into(),
            number: "+447700900123".into(),
            state: "waiting".into(),
            attempts: 1,
            waiting_s: 3700,
            position: None,
            next_attempt_s: Some(250),
        },
    ];
    let html = render(&View::new(&snapshot, &data, Lang::En, day));
    for expected in [
        "<h2>Pending callbacks <span id=\"callbacks-pending-count\">(2)</span></h2>",
        "<tr class=\"callback\"><td title=\"heating\">Vilnius Heating Networks</td>\
         <td class=\"text\">Lithuanian</td><td class=\"text\">+37060000000</td>\
         <td class=\"text\">queued</td><td>0</td><td>2:05</td><td>2</td></tr>",
        "<td title=\"&lt;b&gt;odd&lt;/b&gt;\">&lt;b&gt;odd&lt;/b&gt;</td>\
         <td class=\"text\">English</td><td class=\"text\">+447700900123</td>\
         <td class=\"text\">waiting to retry</td><td>1</td><td>1:01:40</td><td>in 4:10</td>",
        "<h2>Callbacks by enterprise",
        "<th>SL ≤ 15 min</th>",
    ] {
        assert!(html.contains(expected), "page lacks {expected}");
    }
    assert!(!html.contains("<b>odd</b>"));
    // offered 4, requested 3, attempts 4, connected 1, failed 1, SL 1/2, wait 10:00.
    let tables = html.replace(&charts::mini_bar(Some(0.5), "#2ca02c"), "");
    for row in [
        "<td title=\"heating\">Vilnius Heating Networks</td><td>4</td><td>3</td><td>4</td>\
         <td>1</td><td>1</td><td>50.0%</td><td>10:00</td>",
        "<td class=\"total\">Total</td><td>4</td><td>3</td><td>4</td><td>1</td><td>1</td>\
         <td>50.0%</td><td>10:00</td>",
    ] {
        assert!(tables.contains(row), "callback figures lack {row}");
    }
    // The outcomes count the dials too; the CSV has the same figures.
    assert!(html.contains(">not reached</text>"));
    let csv = csv::render(
        &View::new(&snapshot, &data, Lang::En, day),
        Table::Callbacks,
    );
    assert_eq!(
        csv.trim_start_matches('\u{feff}'),
        "enterprise,name,callback_offered,callback_accepted,callback_attempts,\
         callback_connected,callback_connected_in_sl,callback_failed,callback_service_level,\
         callback_asa_s\r\nheating,Vilnius Heating Networks,4,3,4,1,1,1,0.5000,600.000\r\n"
    );
    // In Lithuanian.
    let lt = render(&View::new(&snapshot, &data, Lang::Lt, day));
    for text in [
        "Laukiantys perskambinimai",
        "Vilniaus šilumos tinklai",
        ">eilėje<",
        ">laukia kito bandymo<",
        ">po 4:10<",
        "Perskambinimai pagal įmonę",
        ">Iš viso<",
        ">paprašė perskambinti</text>",
        ">neprisiskambinta</text>",
    ] {
        assert!(lt.contains(text), "Lithuanian page lacks {text}");
    }
}
