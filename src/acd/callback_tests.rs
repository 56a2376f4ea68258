//! Queued callbacks in the ACD, in simulated time: a request keeps its caller's place, hears
//! nothing, never times out, frees the agent at once when the resident is not reached, and
//! enters again with its first arrival.

use super::tests::{a, group, rings, secs, stops, Sim, ALL};
use super::*;

/// One agent, wrap-up 2 s, a short `max_wait`: a caller would overflow to "call later".
fn desk() -> Sim {
    let settings =
        "ring_timeout = \"10s\"\nwrap_up = \"2s\"\nmax_wait = \"60s\"\nwhen_empty = \"wait\"";
    Sim::new(&[group("desk", settings, &[("a", ALL, 1)])])
}

/// Agent `a` takes call 1 and stays on it.
fn busy_agent(sim: &mut Sim) {
    let out = sim.enqueue(1, "desk", "lt");
    assert_eq!(rings(&out), vec![(1, a("a"))]);
    sim.answer(1, "a");
}

#[test]
fn a_callback_requested_first_is_served_before_a_caller_who_came_later() {
    let mut sim = desk();
    busy_agent(&mut sim);
    sim.run_to(secs(600)); // 10:00
    sim.enqueue(2, "desk", "lt");
    let out = sim.input(AcdInput::ToCallback {
        call: CallId(2),
        callback: CallId(1002),
    });
    assert!(rings(&out).is_empty(), "the agent is busy");
    sim.run_to(secs(900)); // 10:05
    sim.enqueue(3, "desk", "lt");
    assert_eq!(sim.acd.queue_position(CallId(1002)), Some(1));
    assert_eq!(sim.acd.queue_position(CallId(3)), Some(2));
    assert_eq!(
        sim.acd.queue_position(CallId(2)),
        None,
        "the caller's line is gone"
    );
    sim.end(1);
    let out = sim.run_to(secs(905));
    assert_eq!(
        rings(&out),
        vec![(1002, a("a"))],
        "the callback first: {out:?}"
    );
}

#[test]
fn a_callback_hears_nothing_and_never_times_out() {
    let mut sim = desk();
    busy_agent(&mut sim);
    sim.enqueue(2, "desk", "lt");
    sim.input(AcdInput::ToCallback {
        call: CallId(2),
        callback: CallId(1002),
    });
    let out = sim.run_to(secs(3600));
    let about_callback = out.iter().any(|output| {
        matches!(output,
            AcdOutput::Announce { call, .. } | AcdOutput::Overflow { call, .. }
                if *call == CallId(1002))
    });
    assert!(!about_callback, "{out:?}");
    assert_eq!(sim.acd.queue_position(CallId(1002)), Some(1));
}

#[test]
fn ringing_for_the_caller_moves_to_the_callback() {
    let mut sim = desk();
    let out = sim.enqueue(2, "desk", "lt");
    assert_eq!(rings(&out), vec![(2, a("a"))]);
    let out = sim.input(AcdInput::ToCallback {
        call: CallId(2),
        callback: CallId(1002),
    });
    assert_eq!(stops(&out), vec![(2, a("a"))]);
    assert_eq!(rings(&out), vec![(1002, a("a"))]);
}

#[test]
fn a_resident_not_reached_frees_the_agent_at_once_and_the_retry_keeps_the_place() {
    let mut sim = desk();
    sim.enqueue(2, "desk", "lt");
    sim.input(AcdInput::ToCallback {
        call: CallId(2),
        callback: CallId(1002),
    });
    let arrived = sim.instant(secs(0));
    sim.answer(1002, "a");
    sim.input(AcdInput::CallbackDialled {
        call: CallId(1002),
        caller: CallId(5),
    });
    assert_eq!(sim.state("a"), AgentState::OnCall(CallId(5)));
    sim.run_to(secs(30));
    sim.enqueue(3, "desk", "lt");
    let out = sim.input(AcdInput::CallbackNotReached { call: CallId(5) });
    assert_eq!(
        sim.state("a"),
        AgentState::Ringing(CallId(3)),
        "no wrap-up: {out:?}"
    );
    assert_eq!(sim.acd.queue_position(CallId(5)), None);
    // Call 3 is not answered; the retry comes back ahead of it.
    sim.input(AcdInput::AgentFailed {
        call: CallId(3),
        agent: a("a"),
        reason: FailReason::Declined,
    });
    sim.input(AcdInput::EnqueueCallback {
        call: CallId(1002),
        group: "desk".into(),
        language: "lt".into(),
        arrived,
    });
    assert_eq!(sim.acd.queue_position(CallId(1002)), Some(1));
    assert_eq!(sim.acd.queue_position(CallId(3)), Some(2));
}
