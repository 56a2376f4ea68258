//! Agents who pause, log out or miss rings: never rung while paused, auto-paused after
//! `max_no_answer` missed rings in a row, and every change reported for the audit trail.

use super::tests::{a, rings, secs, three, Sim};
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
    let settings = AcdSettings {
        max_no_answer: 0,
        ..AcdSettings::default()
    };
    let mut sim = Sim::with(&three("ring-all"), settings);
    sim.enqueue(1, "desk", "lt");
    for ring in 1..=5 {
        let out = sim.run_to(secs(10 * ring + 10 * (ring - 1)));
        assert!(pause_changes(&out).is_empty(), "{out:?}");
    }
}
