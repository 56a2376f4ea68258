//! Who can take calls: agents who pause, log out or miss rings (never rung while paused,
//! auto-paused after `max_no_answer` missed rings in a row, every change reported for the
//! audit trail), and groups nobody can serve (`when_empty`), at entry and while callers wait.

use super::tests::{a, group, rings, secs, three, Sim, ALL, FAST};
use super::*;

fn pause_changes(
    outputs: &[AcdOutput],
) -> Vec<(AgentId, Option<PauseReason>, Option<PauseReason>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            AcdOutput::PauseChanged { agent, from, to } => Some((agent.clone(), *from, *to)),
            _ => None,
        })
        .collect()
}

fn set_pause(sim: &mut Sim, agent: &str, pause: Option<PauseReason>) -> Vec<AcdOutput> {
    sim.input(AcdInput::SetPause {
        agent: a(agent),
        pause,
    })
}

#[test]
fn a_paused_agent_is_not_rung_until_it_resumes() {
    let mut sim = Sim::new(&three("round-robin"));
    let out = set_pause(&mut sim, "a", Some(PauseReason::Break));
    assert_eq!(
        pause_changes(&out),
        [(a("a"), None, Some(PauseReason::Break))]
    );
    let out = set_pause(&mut sim, "b", Some(PauseReason::LoggedOut));
    assert_eq!(
        pause_changes(&out),
        [(a("b"), None, Some(PauseReason::LoggedOut))]
    );
    let out = sim.enqueue(1, "desk", "lt");
    assert_eq!(rings(&out), [(1, a("c"))]);
    sim.answer(1, "c");
    // Only paused agents are free: the next caller waits.
    let out = sim.enqueue(2, "desk", "lt");
    assert!(rings(&out).is_empty(), "{out:?}");
    let out = set_pause(&mut sim, "a", None);
    assert_eq!(
        pause_changes(&out),
        [(a("a"), Some(PauseReason::Break), None)]
    );
    assert_eq!(
        rings(&out),
        [(2, a("a"))],
        "resuming takes the waiting caller"
    );
    // Pausing twice is one change; an unknown agent is refused.
    assert!(pause_changes(&set_pause(&mut sim, "b", Some(PauseReason::LoggedOut))).is_empty());
    let unknown = sim.acd.handle_input(
        AcdInput::SetPause {
            agent: a("zz"),
            pause: None,
        },
        sim.acd.now,
    );
    assert_eq!(unknown, Err(AcdError::UnknownAgent { agent: a("zz") }));
}

#[test]
fn two_missed_rings_in_a_row_pause_the_agent_and_an_answer_resets_the_count() {
    let mut sim = Sim::new(&three("round-robin"));
    // a: rung at 0, missed at 10 (1); b rings, answers.
    sim.enqueue(1, "desk", "lt");
    let out = sim.run_to(secs(10));
    assert_eq!(rings(&out), [(1, a("b"))]);
    sim.answer(1, "b");
    // c then a for the next caller; a misses again: paused (2 in a row).
    let out = sim.enqueue(2, "desk", "lt");
    assert_eq!(rings(&out), [(2, a("c"))]);
    let out = sim.run_to(secs(20));
    assert_eq!(rings(&out), [(2, a("a"))]);
    let out = sim.run_to(secs(30));
    assert_eq!(
        pause_changes(&out),
        [(a("a"), None, Some(PauseReason::NoAnswer))]
    );
    let paused = |sim: &Sim, agent: &str| sim.acd.agents[&a(agent)].paused;
    assert_eq!(paused(&sim, "a"), Some(PauseReason::NoAnswer));
    // c (missed once at 20 s) is rung again, answers: its count starts again.
    assert_eq!(rings(&out), [(2, a("c"))]);
    assert_eq!(sim.acd.agents[&a("c")].missed_in_a_row, 1);
    sim.answer(2, "c");
    let record = &sim.acd.agents[&a("c")];
    assert_eq!(record.missed_in_a_row, 0);
    assert_eq!(record.paused, None);
}

#[test]
fn max_no_answer_zero_never_pauses() {
    let settings = format!("strategy = \"ring-all\"\nmax_no_answer = 0\n{FAST}");
    let groups = vec![group(
        "desk",
        &settings,
        &[("a", ALL, 1), ("b", ALL, 1), ("c", ALL, 1)],
    )];
    let mut sim = Sim::new(&groups);
    sim.enqueue(1, "desk", "lt");
    for ring in 1..=5 {
        let out = sim.run_to(secs(10 * ring + 10 * (ring - 1)));
        assert!(pause_changes(&out).is_empty(), "{out:?}");
    }
}

/// `desk` (one registering agent, `when_empty` as given, overflow to `other` if `overflow`) and
/// `other` (one static agent).
fn desk_and_other(when_empty: Option<&str>, overflow: bool) -> Vec<String> {
    let mut settings = String::new();
    if let Some(policy) = when_empty {
        settings.push_str(&format!("when_empty = \"{policy}\"\n"));
    }
    if overflow {
        settings.push_str("overflow = \"other\"\n");
    }
    vec![
        group("desk", &settings, &[("user:ona", ALL, 1)]),
        group("other", "", &[("b", ALL, 1)]),
    ]
}

fn register(sim: &mut Sim, user: &str) -> Vec<AcdOutput> {
    sim.input(AcdInput::Online {
        agent: AgentId::user(user),
        online: true,
    })
}

#[test]
fn nobody_logged_in_sends_the_caller_to_the_overflow_at_once() {
    let mut sim = Sim::new(&desk_and_other(None, true));
    let out = sim.enqueue(1, "desk", "lt");
    assert!(
        out.iter()
            .any(|o| matches!(o, AcdOutput::QueueFull { to: Some(g), .. } if g == "other")),
        "{out:?}"
    );
    assert_eq!(rings(&out), [(1, a("b"))]);
    assert_eq!(sim.acd.call_group(CallId(1)), Some("other"));
}

#[test]
fn nobody_logged_in_and_no_overflow_is_said_at_once() {
    let mut sim = Sim::new(&desk_and_other(None, false));
    let out = sim.enqueue(1, "desk", "lt");
    assert!(
        out.iter()
            .any(|o| matches!(o, AcdOutput::QueueFull { to: None, .. })),
        "{out:?}"
    );
    assert_eq!(
        sim.acd.call_group(CallId(1)),
        None,
        "the caller left the ACD"
    );
}

#[test]
fn when_empty_wait_keeps_the_caller_until_an_agent_registers() {
    let mut sim = Sim::new(&desk_and_other(Some("wait"), true));
    let out = sim.enqueue(1, "desk", "lt");
    assert!(rings(&out).is_empty(), "{out:?}");
    assert_eq!(sim.acd.call_group(CallId(1)), Some("desk"));
    let out = register(&mut sim, "ona");
    assert_eq!(rings(&out), [(1, a("user:ona"))]);
}

#[test]
fn callers_waiting_when_the_last_agent_pauses_go_on_as_when_empty_says() {
    let mut sim = Sim::new(&desk_and_other(None, true));
    register(&mut sim, "ona");
    sim.enqueue(1, "desk", "lt");
    sim.answer(1, "user:ona");
    // Caller 2 waits for ona, busy with caller 1.
    let out = sim.enqueue(2, "desk", "lt");
    assert!(rings(&out).is_empty(), "{out:?}");
    assert_eq!(sim.acd.call_group(CallId(2)), Some("desk"));
    // ona takes a break after this call: nobody is left for desk, caller 2 moves on.
    let out = set_pause(&mut sim, "user:ona", Some(PauseReason::Break));
    assert!(
        out.iter().any(
            |o| matches!(o, AcdOutput::Overflow { call: CallId(2), to: Some(g) } if g == "other")
        ),
        "{out:?}"
    );
    assert_eq!(rings(&out), [(2, a("b"))]);
}

#[test]
fn a_transferred_caller_waits_in_the_new_group_ahead_of_later_callers() {
    let groups = vec![
        group("heating", "", &[("a", ALL, 1)]),
        group("water", "", &[("b", ALL, 1)]),
    ];
    let mut sim = Sim::new(&groups);
    sim.enqueue(1, "heating", "lt");
    sim.answer(1, "a");
    // b is busy with caller 2; caller 3 then waits for water.
    sim.enqueue(2, "water", "lt");
    sim.answer(2, "b");
    sim.run_to(secs(5));
    sim.enqueue(3, "water", "lt");
    let out = sim.input(AcdInput::Transfer {
        call: CallId(1),
        group: "water".into(),
    });
    assert!(
        matches!(sim.acd.agents[&a("a")].state, AgentState::WrapUp { .. }),
        "a wraps up"
    );
    assert_eq!(sim.acd.call_group(CallId(1)), Some("water"));
    assert_eq!(sim.acd.queue_position(CallId(1)), Some(1), "{out:?}");
    assert_eq!(sim.acd.queue_position(CallId(3)), Some(2));
    sim.end(2);
    let out = sim.run_to(secs(30));
    assert_eq!(rings(&out).first(), Some(&(1, a("b"))), "{out:?}");
    let unknown = sim.acd.handle_input(
        AcdInput::Transfer {
            call: CallId(3),
            group: "nowhere".into(),
        },
        sim.acd.now,
    );
    assert!(unknown.is_err());
}
