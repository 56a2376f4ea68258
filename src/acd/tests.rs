//! Simulated-time tests of the ACD: strategies, timers, languages, queue and overflow,
//! hang-ups, reconfiguration, and a seeded random walk checking invariants.

use super::*;
use crate::routing::model::parse;

const HEADER: &str = r#"[hotline]
languages = ["lt", "en", "ru"]
default_language = "lt"
timezone = "Europe/Vilnius"
fallback = "desk"
start = "main"

[menus.main]
prompt = "main_menu"
options."1" = { group = "desk" }
"#;

/// One `[groups.<name>]` table; agents are (name, languages, priority), `user:` names are
/// registered users, others become `sip:<name>@127.0.0.1`.
pub(super) fn group(name: &str, settings: &str, agents: &[(&str, &[&str], u32)]) -> String {
    let agents: Vec<String> = agents
        .iter()
        .map(|(agent, languages, priority)| {
            let target = match agent.strip_prefix("user:") {
                Some(user) => format!("user = \"{user}\""),
                None => format!("uri = \"sip:{agent}@127.0.0.1\""),
            };
            let languages: Vec<String> = languages.iter().map(|l| format!("\"{l}\"")).collect();
            format!(
                "{{ {target}, languages = [{}], priority = {priority} }}",
                languages.join(", ")
            )
        })
        .collect();
    format!(
        "\n[groups.{name}]\nname = {{ lt = \"G\", en = \"G\", ru = \"G\" }}\n{settings}\nagents = [{}]\n",
        agents.join(", ")
    )
}

fn routing(groups: &[String]) -> Arc<Routing> {
    let text = format!("{HEADER}{}", groups.concat());
    Arc::new(parse(&text, "test.toml").unwrap())
}

pub(super) fn a(name: &str) -> AgentId {
    match name.strip_prefix("user:") {
        Some(user) => AgentId::user(user),
        None => AgentId(format!("sip:{name}@127.0.0.1")),
    }
}

pub(super) const ALL: &[&str] = &["lt", "en", "ru"];

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) struct Sim {
    pub(super) acd: Acd,
    t0: Instant,
    now: Instant,
}

impl Sim {
    pub(super) fn new(groups: &[String]) -> Sim {
        Sim::with(groups, AcdSettings::default())
    }

    pub(super) fn with(groups: &[String], settings: AcdSettings) -> Sim {
        Sim::from_routing(routing(groups), settings)
    }

    pub(super) fn from_routing(routing: Arc<Routing>, settings: AcdSettings) -> Sim {
        let t0 = Instant::now();
        Sim {
            acd: Acd::new(routing, settings, t0),
            t0,
            now: t0,
        }
    }

    fn drain(&mut self) -> Vec<AcdOutput> {
        std::iter::from_fn(|| self.acd.poll_output()).collect()
    }

    pub(super) fn input(&mut self, input: AcdInput) -> Vec<AcdOutput> {
        self.acd.handle_input(input, self.now).unwrap();
        self.drain()
    }

    /// Fires every timer up to `t0 + at`, in order, and returns all outputs.
    pub(super) fn run_to(&mut self, at: Duration) -> Vec<AcdOutput> {
        let target = self.t0 + at;
        let mut outputs = Vec::new();
        while let Some(next) = self.acd.poll_timeout().filter(|next| *next <= target) {
            assert!(next >= self.now, "timer in the past");
            self.now = next;
            self.acd.handle_timeout(next);
            outputs.extend(self.drain());
        }
        self.now = target;
        self.acd.handle_timeout(target);
        outputs.extend(self.drain());
        outputs
    }

    pub(super) fn enqueue(&mut self, call: u64, group: &str, language: &str) -> Vec<AcdOutput> {
        self.input(AcdInput::Enqueue {
            call: CallId(call),
            group: group.into(),
            language: language.into(),
        })
    }

    pub(super) fn answer(&mut self, call: u64, agent: &str) -> Vec<AcdOutput> {
        self.input(AcdInput::AgentAnswered {
            call: CallId(call),
            agent: a(agent),
        })
    }

    pub(super) fn fail(&mut self, call: u64, agent: &str, reason: FailReason) -> Vec<AcdOutput> {
        self.input(AcdInput::AgentFailed {
            call: CallId(call),
            agent: a(agent),
            reason,
        })
    }

    pub(super) fn end(&mut self, call: u64) -> Vec<AcdOutput> {
        self.input(AcdInput::CallEnded { call: CallId(call) })
    }

    fn leave(&mut self, call: u64) -> Vec<AcdOutput> {
        self.input(AcdInput::CallerLeft { call: CallId(call) })
    }

    /// The instant `at` after the simulation's start.
    pub(super) fn instant(&self, at: Duration) -> Instant {
        self.t0 + at
    }

    pub(super) fn state(&self, agent: &str) -> AgentState {
        self.snapshot(agent).state
    }

    fn snapshot(&self, agent: &str) -> AgentSnapshot {
        let id = a(agent);
        self.acd
            .agent_states()
            .into_iter()
            .find(|s| s.agent == id)
            .unwrap()
    }

    /// Rings `call` → answered by whoever rang → ended, leaving that agent free (wrap_up 0).
    fn serve(&mut self, call: u64, group: &str) -> AgentId {
        let outputs = self.enqueue(call, group, "lt");
        let rung = rings(&outputs);
        assert_eq!(rung.len(), 1, "{outputs:?}");
        let agent = rung[0].1.clone();
        self.acd
            .handle_input(
                AcdInput::AgentAnswered {
                    call: CallId(call),
                    agent: agent.clone(),
                },
                self.now,
            )
            .unwrap();
        self.end(call);
        agent
    }
}

pub(super) fn rings(outputs: &[AcdOutput]) -> Vec<(u64, AgentId)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            AcdOutput::Ring { call, agent, .. } => Some((call.0, agent.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn stops(outputs: &[AcdOutput]) -> Vec<(u64, AgentId)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            AcdOutput::StopRinging { call, agent } => Some((call.0, agent.clone())),
            _ => None,
        })
        .collect()
}

fn announces(outputs: &[AcdOutput]) -> Vec<(u64, u32, Option<Duration>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            AcdOutput::Announce {
                call,
                position,
                estimated_wait,
            } => Some((call.0, *position, *estimated_wait)),
            _ => None,
        })
        .collect()
}

pub(super) const FAST: &str = "ring_timeout = \"10s\"\nwrap_up = \"0s\"";

pub(super) fn three(strategy: &str) -> Vec<String> {
    vec![group(
        "desk",
        &format!("strategy = \"{strategy}\"\n{FAST}"),
        &[("a", ALL, 1), ("b", ALL, 1), ("c", ALL, 1)],
    )]
}

#[test]
fn ring_all_rings_every_free_agent_and_the_first_answer_wins() {
    let mut sim = Sim::new(&three("ring-all"));
    let out = sim.enqueue(1, "desk", "lt");
    assert_eq!(rings(&out), vec![(1, a("a")), (1, a("b")), (1, a("c"))]);
    assert!(
        announces(&out).is_empty(),
        "a caller rung at once is not announced"
    );
    assert!(matches!(out[0], AcdOutput::Ring { timeout, .. } if timeout == secs(10)));
    let out = sim.answer(1, "b");
    assert_eq!(stops(&out), vec![(1, a("a")), (1, a("c"))]);
    assert!(out.contains(&AcdOutput::Connected {
        call: CallId(1),
        agent: a("b")
    }));
    assert_eq!(sim.state("b"), AgentState::OnCall(CallId(1)));
    assert_eq!(sim.state("a"), AgentState::Idle);
    assert_eq!(sim.snapshot("b").calls_answered, 1);
    // A late second answer is refused: the SIP side hangs that leg up.
    let late = sim.acd.handle_input(
        AcdInput::AgentAnswered {
            call: CallId(1),
            agent: a("c"),
        },
        sim.now,
    );
    assert_eq!(
        late,
        Err(AcdError::NotRinging {
            call: CallId(1),
            agent: a("c")
        })
    );
    // The next caller rings the two still free.
    let out = sim.enqueue(2, "desk", "lt");
    assert_eq!(rings(&out), vec![(2, a("a")), (2, a("c"))]);
}

#[test]
fn round_robin_remembers_its_position() {
    let mut sim = Sim::new(&three("round-robin"));
    let order: Vec<AgentId> = (1..=5).map(|call| sim.serve(call, "desk")).collect();
    assert_eq!(order, vec![a("a"), a("b"), a("c"), a("a"), a("b")]);
    // Busy agents are skipped, the cursor continues after the agent actually rung.
    sim.enqueue(10, "desk", "lt"); // c
    sim.answer(10, "c");
    let out = sim.enqueue(11, "desk", "lt");
    assert_eq!(rings(&out), vec![(11, a("a"))]);
    let out = sim.enqueue(12, "desk", "lt");
    assert_eq!(rings(&out), vec![(12, a("b"))]);
}

#[test]
fn longest_idle_takes_the_agent_free_the_longest() {
    let mut sim = Sim::new(&three("longest-idle"));
    for call in 1..=3 {
        let out = sim.enqueue(call, "desk", "lt");
        let (_, agent) = rings(&out)[0].clone();
        sim.acd
            .handle_input(
                AcdInput::AgentAnswered {
                    call: CallId(call),
                    agent,
                },
                sim.now,
            )
            .unwrap();
    }
    // Equal idle times at start: configuration order a, b, c.
    assert_eq!(sim.state("a"), AgentState::OnCall(CallId(1)));
    assert_eq!(sim.state("c"), AgentState::OnCall(CallId(3)));
    sim.run_to(secs(10));
    sim.end(3); // c free at 10 s
    sim.run_to(secs(20));
    sim.end(1); // a free at 20 s
    sim.run_to(secs(30));
    sim.end(2); // b free at 30 s
    sim.run_to(secs(40));
    let order: Vec<AgentId> = (4..=6)
        .map(|call| rings(&sim.enqueue(call, "desk", "lt"))[0].1.clone())
        .collect();
    assert_eq!(order, vec![a("c"), a("a"), a("b")]);
}

#[test]
fn fewest_calls_prefers_the_least_loaded_then_the_longest_idle() {
    let mut sim = Sim::new(&three("fewest-calls"));
    // a answers two calls, b one, c none; ties broken by idle time.
    assert_eq!(sim.serve(1, "desk"), a("a")); // all 0: longest idle = config order
    sim.run_to(secs(1));
    assert_eq!(sim.serve(2, "desk"), a("b")); // b and c 0 calls, b first in order
    sim.run_to(secs(2));
    assert_eq!(sim.serve(3, "desk"), a("c"));
    sim.run_to(secs(3));
    // All 1 call: a idle since 0 s is the longest idle.
    assert_eq!(sim.serve(4, "desk"), a("a"));
    sim.run_to(secs(4));
    assert_eq!(sim.serve(5, "desk"), a("b"));
    sim.run_to(secs(5));
    assert_eq!(sim.serve(6, "desk"), a("c"));
    assert_eq!(sim.snapshot("a").calls_answered, 2);
    sim.acd.reset_call_counts();
    assert_eq!(sim.snapshot("a").calls_answered, 0);
}

#[test]
fn lower_priority_numbers_ring_first_then_the_next_tier() {
    let groups = vec![group(
        "desk",
        &format!("strategy = \"ring-all\"\n{FAST}"),
        &[("a", ALL, 1), ("b", ALL, 1), ("c", ALL, 2)],
    )];
    let mut sim = Sim::new(&groups);
    let out = sim.enqueue(1, "desk", "lt");
    assert_eq!(rings(&out), vec![(1, a("a")), (1, a("b"))]);
    // Tier 1 all ringing: the next caller gets tier 2.
    let out = sim.enqueue(2, "desk", "lt");
    assert_eq!(rings(&out), vec![(2, a("c"))]);
}

#[test]
fn ring_timeout_moves_on_to_the_next_agent_exactly() {
    let mut sim = Sim::new(&three("round-robin"));
    let out = sim.enqueue(1, "desk", "lt");
    assert_eq!(rings(&out), vec![(1, a("a"))]);
    assert_eq!(sim.acd.poll_timeout(), Some(sim.t0 + secs(10)));
    assert!(sim.run_to(secs(10) - ms(1)).is_empty());
    let out = sim.run_to(secs(10));
    assert_eq!(stops(&out), vec![(1, a("a"))]);
    assert_eq!(rings(&out), vec![(1, a("b"))]);
    // a backs off after not answering; c is next, then a again only once its backoff ended.
    let out = sim.run_to(secs(20));
    assert_eq!(rings(&out), vec![(1, a("c"))]);
    assert_eq!(
        sim.snapshot("a").backoff_until,
        None,
        "retry_after_no_answer = 10 s ended at 20 s"
    );
    let out = sim.run_to(secs(30));
    assert_eq!(stops(&out), vec![(1, a("c"))]);
    assert_eq!(rings(&out), vec![(1, a("a"))]);
    // An answer reported at the ring deadline, before the timer was serviced, is too late.
    let late = sim.acd.handle_input(
        AcdInput::AgentAnswered {
            call: CallId(1),
            agent: a("a"),
        },
        sim.t0 + secs(40),
    );
    assert_eq!(
        late,
        Err(AcdError::NotRinging {
            call: CallId(1),
            agent: a("a")
        })
    );
    let out = sim.drain();
    assert_eq!(stops(&out), vec![(1, a("a"))]);
    assert_eq!(rings(&out), vec![(1, a("b"))]);
}

#[test]
fn busy_and_unreachable_agents_are_skipped_then_retried_after_backoff() {
    let groups = vec![group(
        "desk",
        &format!("strategy = \"longest-idle\"\n{FAST}"),
        &[("a", ALL, 1), ("b", ALL, 1)],
    )];
    let mut sim = Sim::new(&groups);
    assert_eq!(rings(&sim.enqueue(1, "desk", "lt")), vec![(1, a("a"))]);
    let out = sim.fail(1, "a", FailReason::Busy);
    assert_eq!(rings(&out), vec![(1, a("b"))], "busy a skipped");
    let out = sim.fail(1, "b", FailReason::Unreachable);
    assert!(rings(&out).is_empty(), "both backing off");
    assert_eq!(announces(&out), vec![(1, 1, None)], "the caller now waits");
    // Busy backoff is 15 s, unreachable 60 s: a is retried exactly at 15 s.
    assert!(rings(&sim.run_to(secs(15) - ms(1))).is_empty());
    assert_eq!(rings(&sim.run_to(secs(15))), vec![(1, a("a"))]);
    sim.fail(1, "a", FailReason::Declined);
    assert!(rings(&sim.run_to(secs(30) - ms(1))).is_empty());
    assert_eq!(rings(&sim.run_to(secs(30))), vec![(1, a("a"))]);
    // Stale reports are refused without changing anything.
    assert_eq!(
        sim.acd.handle_input(
            AcdInput::AgentFailed {
                call: CallId(1),
                agent: a("b"),
                reason: FailReason::Busy
            },
            sim.now
        ),
        Err(AcdError::NotRinging {
            call: CallId(1),
            agent: a("b")
        })
    );
    sim.fail(1, "a", FailReason::Unreachable);
    assert!(rings(&sim.run_to(secs(60) - ms(1))).is_empty());
    assert_eq!(rings(&sim.run_to(secs(60))), vec![(1, a("b"))]);
}

#[test]
fn wrap_up_delays_the_next_offer_by_exactly_wrap_up() {
    let groups = vec![group(
        "desk",
        "ring_timeout = \"20s\"\nwrap_up = \"10s\"",
        &[("a", ALL, 1)],
    )];
    let mut sim = Sim::new(&groups);
    sim.enqueue(1, "desk", "lt");
    sim.answer(1, "a");
    sim.enqueue(2, "desk", "lt");
    sim.run_to(secs(5));
    sim.end(1);
    assert_eq!(
        sim.state("a"),
        AgentState::WrapUp {
            until: sim.t0 + secs(15)
        }
    );
    assert!(rings(&sim.run_to(secs(15) - ms(1))).is_empty());
    let out = sim.run_to(secs(15));
    assert_eq!(rings(&out), vec![(2, a("a"))]);
}

#[test]
fn agent_bye_first_and_caller_bye_first_both_wrap_up_then_idle() {
    let groups = vec![group(
        "desk",
        "ring_timeout = \"20s\"\nwrap_up = \"10s\"",
        &[("a", ALL, 1)],
    )];
    for caller_first in [false, true] {
        let mut sim = Sim::new(&groups);
        sim.enqueue(1, "desk", "lt");
        sim.answer(1, "a");
        sim.run_to(secs(60));
        if caller_first {
            sim.leave(1);
        } else {
            sim.end(1);
        }
        assert_eq!(
            sim.state("a"),
            AgentState::WrapUp {
                until: sim.t0 + secs(70)
            }
        );
        assert_eq!(sim.acd.poll_timeout(), Some(sim.t0 + secs(70)));
        sim.run_to(secs(70));
        let snapshot = sim.snapshot("a");
        assert_eq!(snapshot.state, AgentState::Idle);
        assert_eq!(snapshot.since, sim.t0 + secs(70));
        // The other side's BYE arriving afterwards is a stale report.
        assert_eq!(
            sim.acd
                .handle_input(AcdInput::CallEnded { call: CallId(1) }, sim.now),
            Err(AcdError::UnknownCall { call: CallId(1) })
        );
    }
}

fn bilingual() -> Vec<String> {
    vec![group(
        "desk",
        "strategy = \"longest-idle\"\nring_timeout = \"20s\"\nwrap_up = \"0s\"\nlanguage_wait = \"30s\"",
        &[("lt", &["lt"], 1), ("en", &["en"], 1)],
    )]
}

#[test]
fn language_widens_exactly_at_language_wait() {
    let mut sim = Sim::new(&bilingual());
    sim.enqueue(1, "desk", "en");
    sim.answer(1, "en"); // the English speaker is busy
    let out = sim.enqueue(2, "desk", "en");
    assert!(
        rings(&out).is_empty(),
        "lt agent not offered an en caller yet"
    );
    assert_eq!(sim.acd.poll_timeout(), Some(sim.t0 + secs(30)));
    assert!(rings(&sim.run_to(secs(30) - ms(1))).is_empty());
    assert_eq!(rings(&sim.run_to(secs(30))), vec![(2, a("lt"))]);
}

#[test]
fn a_language_nobody_speaks_widens_at_once() {
    let mut sim = Sim::new(&bilingual());
    let out = sim.enqueue(1, "desk", "ru");
    assert_eq!(rings(&out), vec![(1, a("lt"))]);
}

#[test]
fn a_caller_whose_language_nobody_free_speaks_does_not_block_others() {
    let mut sim = Sim::new(&bilingual());
    sim.enqueue(1, "desk", "en");
    sim.answer(1, "en");
    sim.enqueue(2, "desk", "lt");
    sim.answer(2, "lt");
    sim.run_to(secs(1));
    sim.enqueue(3, "desk", "en"); // waits for en
    sim.run_to(secs(2));
    sim.enqueue(4, "desk", "lt");
    sim.run_to(secs(3));
    // The lt agent frees first: caller 3 (en, not widened) cannot take it, caller 4 can.
    let out = sim.end(2);
    assert_eq!(rings(&out), vec![(4, a("lt"))]);
    sim.answer(4, "lt");
    sim.run_to(secs(5));
    sim.enqueue(5, "desk", "lt");
    // After widening, caller 3 competes by arrival: it takes the next free agent before 5.
    sim.run_to(secs(40));
    let out = sim.end(4);
    assert_eq!(rings(&out), vec![(3, a("lt"))]);
    let out = sim.end(1);
    assert_eq!(rings(&out), vec![(5, a("en"))], "widened too by now");
}

#[test]
fn positions_are_announced_and_move_up() {
    let groups = vec![group("desk", FAST, &[("a", ALL, 1)])];
    assert_eq!(
        routing(&groups).hotline.announce_every,
        secs(45),
        "the default period"
    );
    let text = format!("{HEADER}{}", groups.concat()).replacen(
        "[hotline]\n",
        "[hotline]\nannounce_every = \"30s\"\n",
        1,
    );
    let routing = Arc::new(parse(&text, "test.toml").unwrap());
    let mut sim = Sim::from_routing(routing, AcdSettings::default());
    sim.enqueue(1, "desk", "lt");
    sim.answer(1, "a");
    assert_eq!(announces(&sim.enqueue(2, "desk", "lt")), vec![(2, 1, None)]);
    sim.run_to(secs(10));
    assert_eq!(announces(&sim.enqueue(3, "desk", "lt")), vec![(3, 2, None)]);
    sim.run_to(secs(20));
    assert_eq!(announces(&sim.enqueue(4, "desk", "lt")), vec![(4, 3, None)]);
    // Every 30 s after each caller's last announcement.
    assert!(announces(&sim.run_to(secs(30) - ms(1))).is_empty());
    assert_eq!(announces(&sim.run_to(secs(30))), vec![(2, 1, None)]);
    // Caller 2 hangs up in the queue: the others move up.
    sim.run_to(secs(35));
    sim.leave(2);
    assert_eq!(sim.acd.queue_position(CallId(3)), Some(1));
    assert_eq!(sim.acd.queue_position(CallId(4)), Some(2));
    assert_eq!(sim.acd.queue_position(CallId(2)), None);
    assert_eq!(announces(&sim.run_to(secs(40))), vec![(3, 1, None)]);
    assert_eq!(announces(&sim.run_to(secs(50))), vec![(4, 2, None)]);
    // Served callers leave the queue; the next announcement shows it.
    let out = sim.end(1);
    assert_eq!(rings(&out), vec![(3, a("a"))]);
    assert_eq!(
        sim.acd.queue_position(CallId(4)),
        Some(2),
        "ringing 3 is still ahead"
    );
    sim.answer(3, "a");
    assert_eq!(sim.acd.queue_position(CallId(4)), Some(1));
    assert_eq!(announces(&sim.run_to(secs(80))), vec![(4, 1, None)]);
}

#[test]
fn wait_estimate_only_after_enough_completed_calls() {
    let groups = vec![group(
        "desk",
        "strategy = \"round-robin\"\nring_timeout = \"10s\"\nwrap_up = \"0s\"\nmax_wait = \"1h\"",
        &[("a", ALL, 1), ("b", ALL, 1)],
    )];
    let mut sim = Sim::new(&groups);
    let mut t = 0;
    for call in 1..=4 {
        let agent = rings(&sim.enqueue(call, "desk", "lt"))[0].1.clone();
        sim.acd
            .handle_input(
                AcdInput::AgentAnswered {
                    call: CallId(call),
                    agent,
                },
                sim.now,
            )
            .unwrap();
        t += 60;
        sim.run_to(secs(t));
        sim.end(call);
    }
    // Both agents busy, four calls done: not yet confident (needs five).
    sim.enqueue(10, "desk", "lt");
    sim.answer(10, "a");
    sim.enqueue(11, "desk", "lt");
    sim.answer(11, "b");
    assert_eq!(
        announces(&sim.enqueue(12, "desk", "lt")),
        vec![(12, 1, None)]
    );
    t += 60;
    sim.run_to(secs(t));
    let out = sim.end(10); // fifth call, 60 s handle time; a takes caller 12
    assert_eq!(rings(&out), vec![(12, a("a"))]);
    // 60 s average × position 3 ÷ 2 staffed agents = 90 s.
    sim.enqueue(13, "desk", "lt");
    let out = sim.enqueue(14, "desk", "lt");
    assert_eq!(announces(&out), vec![(14, 3, Some(secs(90)))]);
}

fn overflowing(overflow: Option<&str>) -> Vec<String> {
    let overflow = overflow.map_or(String::new(), |o| format!("\noverflow = \"{o}\""));
    vec![
        group(
            "first",
            &format!("{FAST}\nmax_wait = \"60s\"\nmax_queue = 2{overflow}"),
            &[("a", ALL, 1)],
        ),
        group("second", FAST, &[("b", ALL, 1)]),
    ]
}

#[test]
fn max_wait_overflows_to_the_overflow_group() {
    let mut sim = Sim::new(&overflowing(Some("second")));
    sim.enqueue(1, "first", "lt");
    sim.answer(1, "a");
    sim.enqueue(9, "second", "lt");
    sim.answer(9, "b");
    sim.run_to(secs(5));
    sim.enqueue(2, "first", "lt");
    assert!(sim
        .run_to(secs(65) - ms(1))
        .iter()
        .all(|o| !matches!(o, AcdOutput::Overflow { .. })));
    let out = sim.run_to(secs(65));
    assert!(out.contains(&AcdOutput::Overflow {
        call: CallId(2),
        to: Some("second".into())
    }));
    assert_eq!(
        announces(&out),
        vec![(2, 1, None)],
        "announced in its new queue"
    );
    assert_eq!(sim.acd.call_group(CallId(2)), Some("second"));
    // It is served by the overflow group's agent, and does not bounce back.
    let out = sim.end(9);
    assert_eq!(rings(&out), vec![(2, a("b"))]);
}

#[test]
fn max_wait_without_overflow_says_call_later() {
    let mut sim = Sim::new(&overflowing(None));
    sim.enqueue(1, "first", "lt");
    sim.answer(1, "a");
    sim.enqueue(2, "first", "lt");
    let out = sim.run_to(secs(60));
    assert_eq!(
        out,
        vec![
            AcdOutput::Announce {
                call: CallId(2),
                position: 1,
                estimated_wait: None
            },
            AcdOutput::Overflow {
                call: CallId(2),
                to: None
            }
        ],
        "announced at 30 s, overflowed at 60 s"
    );
    assert_eq!(sim.acd.queue_len("first"), 0);
    assert_eq!(
        sim.acd
            .handle_input(AcdInput::CallerLeft { call: CallId(2) }, sim.now),
        Err(AcdError::UnknownCall { call: CallId(2) })
    );
}

#[test]
fn overflow_chains_do_not_loop() {
    let groups = vec![
        group(
            "first",
            &format!("{FAST}\nmax_wait = \"60s\"\noverflow = \"second\""),
            &[("a", ALL, 1)],
        ),
        group(
            "second",
            &format!("{FAST}\nmax_wait = \"60s\"\noverflow = \"first\""),
            &[("a", ALL, 1)],
        ),
    ];
    let mut sim = Sim::new(&groups);
    sim.enqueue(1, "first", "lt");
    sim.answer(1, "a");
    sim.enqueue(2, "first", "lt");
    let out = sim.run_to(secs(60));
    assert!(out.contains(&AcdOutput::Overflow {
        call: CallId(2),
        to: Some("second".into())
    }));
    let out = sim.run_to(secs(120));
    assert!(out.contains(&AcdOutput::Overflow {
        call: CallId(2),
        to: None
    }));
}

#[test]
fn max_queue_diverts_further_callers() {
    for overflow in [None, Some("second")] {
        let mut sim = Sim::new(&overflowing(overflow));
        sim.enqueue(1, "first", "lt");
        sim.answer(1, "a");
        sim.enqueue(2, "first", "lt");
        sim.enqueue(3, "first", "lt");
        let out = sim.enqueue(4, "first", "lt");
        assert_eq!(
            out.first(),
            Some(&AcdOutput::QueueFull {
                call: CallId(4),
                to: overflow.map(String::from)
            })
        );
        match overflow {
            None => assert_eq!(out.len(), 1),
            // The overflow group's agent is free: the caller rings there at once.
            Some(_) => assert_eq!(rings(&out), vec![(4, a("b"))]),
        }
        assert_eq!(sim.acd.queue_len("first"), 2);
    }
}

#[test]
fn caller_hanging_up_while_ringing_stops_the_rings() {
    let mut sim = Sim::new(&three("ring-all"));
    sim.enqueue(1, "desk", "lt");
    let out = sim.leave(1);
    assert_eq!(stops(&out), vec![(1, a("a")), (1, a("b")), (1, a("c"))]);
    for agent in ["a", "b", "c"] {
        assert_eq!(sim.state(agent), AgentState::Idle);
        assert_eq!(sim.snapshot(agent).backoff_until, None);
    }
    assert_eq!(sim.acd.poll_timeout(), None, "no ring timer left behind");
}

#[test]
fn an_agent_in_two_groups_is_never_rung_twice() {
    let groups = vec![
        group("x", FAST, &[("shared", ALL, 1)]),
        group("y", FAST, &[("shared", ALL, 1), ("other", ALL, 2)]),
    ];
    let mut sim = Sim::new(&groups);
    assert_eq!(rings(&sim.enqueue(1, "x", "lt")), vec![(1, a("shared"))]);
    assert_eq!(rings(&sim.enqueue(2, "y", "lt")), vec![(2, a("other"))]);
    assert!(rings(&sim.enqueue(3, "y", "lt")).is_empty());
    // Shared agent answers in x; freed later, it goes to the oldest eligible caller (3).
    sim.answer(1, "shared");
    let out = sim.end(1);
    assert_eq!(rings(&out), vec![(3, a("shared"))]);
}

#[test]
fn duplicated_agent_entries_ring_once() {
    let groups = vec![group(
        "desk",
        &format!("strategy = \"ring-all\"\n{FAST}"),
        &[("a", ALL, 1), ("a", ALL, 1)],
    )];
    let mut sim = Sim::new(&groups);
    assert_eq!(rings(&sim.enqueue(1, "desk", "lt")), vec![(1, a("a"))]);
}

#[test]
fn reconfigure_keeps_agent_states_and_queued_calls() {
    let mut sim = Sim::new(&[group("desk", FAST, &[("a", ALL, 1)])]);
    sim.enqueue(1, "desk", "lt");
    sim.answer(1, "a");
    sim.enqueue(2, "desk", "lt");
    sim.run_to(secs(5));
    let reloaded = routing(&[group(
        "desk",
        "ring_timeout = \"7s\"\nwrap_up = \"3s\"",
        &[("a", ALL, 1), ("user:bob", ALL, 1)],
    )]);
    let out = sim.input(AcdInput::Reconfigure(reloaded));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(sim.state("a"), AgentState::OnCall(CallId(1)));
    assert_eq!(sim.snapshot("a").since, sim.t0);
    assert_eq!(sim.state("user:bob"), AgentState::Offline);
    assert_eq!(sim.acd.call_group(CallId(2)), Some("desk"));
    // New settings apply: bob registers and rings with the new timeout; a wraps up 3 s.
    let out = sim.input(AcdInput::Online {
        agent: a("user:bob"),
        online: true,
    });
    assert_eq!(
        out,
        vec![AcdOutput::Ring {
            call: CallId(2),
            agent: a("user:bob"),
            timeout: secs(7)
        }]
    );
    sim.end(1);
    assert_eq!(
        sim.state("a"),
        AgentState::WrapUp {
            until: sim.now + secs(3)
        }
    );
    // Removing a group while a caller waits there: "call later".
    sim.enqueue(3, "desk", "lt");
    let out = sim.input(AcdInput::Reconfigure(routing(&[group(
        "other",
        FAST,
        &[("a", ALL, 1)],
    )])));
    assert!(out.contains(&AcdOutput::Overflow {
        call: CallId(3),
        to: None
    }));
    assert!(stops(&out).contains(&(2, a("user:bob"))));
    assert!(sim
        .acd
        .agent_states()
        .iter()
        .all(|s| s.agent != a("user:bob")));
}

#[test]
fn user_agents_follow_registration() {
    let groups = vec![group(
        "desk",
        &format!("strategy = \"longest-idle\"\n{FAST}"),
        &[("user:ann", ALL, 1), ("b", ALL, 2)],
    )];
    let mut sim = Sim::new(&groups);
    assert_eq!(sim.state("user:ann"), AgentState::Offline);
    assert_eq!(
        sim.state("b"),
        AgentState::Idle,
        "static agents are always registered"
    );
    sim.input(AcdInput::Online {
        agent: a("user:ann"),
        online: true,
    });
    assert_eq!(
        rings(&sim.enqueue(1, "desk", "lt")),
        vec![(1, a("user:ann"))]
    );
    // Unregistering while ringing stops the ring and moves on.
    let out = sim.input(AcdInput::Online {
        agent: a("user:ann"),
        online: false,
    });
    assert_eq!(stops(&out), vec![(1, a("user:ann"))]);
    assert_eq!(rings(&out), vec![(1, a("b"))]);
    assert_eq!(sim.state("user:ann"), AgentState::Offline);
    // Unregistering during a call: the call goes on, then no wrap-up but unregistered.
    sim.answer(1, "b");
    sim.input(AcdInput::Online {
        agent: a("user:ann"),
        online: true,
    });
    assert_eq!(
        rings(&sim.enqueue(2, "desk", "lt")),
        vec![(2, a("user:ann"))]
    );
    sim.answer(2, "user:ann");
    sim.input(AcdInput::Online {
        agent: a("user:ann"),
        online: false,
    });
    assert_eq!(sim.state("user:ann"), AgentState::OnCall(CallId(2)));
    sim.end(2);
    assert_eq!(sim.state("user:ann"), AgentState::Offline);
    // A static agent whose phone stops answering probes mid-call goes offline when the call
    // ends, and is idle again once it answers.
    sim.input(AcdInput::Online {
        agent: a("b"),
        online: false,
    });
    assert_eq!(sim.state("b"), AgentState::OnCall(CallId(1)));
    sim.end(1);
    assert_eq!(sim.state("b"), AgentState::Offline);
    sim.input(AcdInput::Online {
        agent: a("b"),
        online: true,
    });
    assert_eq!(sim.state("b"), AgentState::Idle);
}

#[test]
fn bad_inputs_are_refused_without_effect() {
    let mut sim = Sim::new(&three("ring-all"));
    let now = sim.now;
    assert_eq!(
        sim.acd.handle_input(
            AcdInput::Enqueue {
                call: CallId(1),
                group: "nope".into(),
                language: "lt".into()
            },
            now
        ),
        Err(AcdError::UnknownGroup {
            call: CallId(1),
            group: "nope".into()
        })
    );
    assert!(sim.drain().is_empty());
    sim.enqueue(1, "desk", "lt");
    assert_eq!(
        sim.acd.handle_input(
            AcdInput::Enqueue {
                call: CallId(1),
                group: "desk".into(),
                language: "lt".into()
            },
            now
        ),
        Err(AcdError::DuplicateCall { call: CallId(1) })
    );
    assert_eq!(
        sim.acd
            .handle_input(AcdInput::CallEnded { call: CallId(1) }, now),
        Err(AcdError::NotConnected { call: CallId(1) })
    );
    assert!(sim.drain().is_empty());
}

#[test]
fn the_shipped_routing_loads_every_agent() {
    let text = include_str!("../../routing.toml");
    let routing = Arc::new(parse(text, "routing.toml").unwrap());
    let expected: BTreeSet<AgentId> = routing
        .groups
        .values()
        .flat_map(|g| g.agents.iter().map(|agent| AgentId::of(&agent.target)))
        .collect();
    let acd = Acd::new(routing, AcdSettings::default(), Instant::now());
    let states = acd.agent_states();
    assert_eq!(states.len(), expected.len());
    assert!(states.iter().all(|s| expected.contains(&s.agent)));
}

/// SplitMix64: a tiny seeded generator so the random walk is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_groups() -> Vec<String> {
    vec![
        group(
            "g1",
            "strategy = \"ring-all\"\nring_timeout = \"8s\"\nwrap_up = \"5s\"\nlanguage_wait = \"20s\"\nmax_wait = \"120s\"\nmax_queue = 4\noverflow = \"g2\"",
            &[("a", &["lt"], 1), ("b", &["en"], 1), ("user:u", &["ru"], 2)],
        ),
        group(
            "g2",
            "strategy = \"round-robin\"\nring_timeout = \"6s\"\nwrap_up = \"3s\"\nlanguage_wait = \"10s\"\nmax_wait = \"90s\"\nmax_queue = 3",
            &[("b", &["en", "lt"], 1), ("c", &["ru"], 1), ("d", ALL, 2)],
        ),
        group(
            "g3",
            "strategy = \"longest-idle\"\nring_timeout = \"5s\"\nwrap_up = \"0s\"\nmax_wait = \"60s\"\noverflow = \"g1\"",
            &[("c", &["lt"], 1), ("user:u", ALL, 1)],
        ),
        group(
            "g4",
            "strategy = \"fewest-calls\"\nring_timeout = \"7s\"\nwrap_up = \"2s\"\nmax_wait = \"300s\"",
            &[("a", ALL, 1), ("d", ALL, 1)],
        ),
    ]
}

/// Invariants that must hold after every step.
fn check_invariants(
    acd: &Acd,
    seen: &BTreeSet<CallId>,
    outputs: &[AcdOutput],
    before: &BTreeSet<CallId>,
) {
    let mut busy_for: BTreeMap<AgentId, CallId> = BTreeMap::new();
    for snapshot in acd.agent_states() {
        if let AgentState::Ringing(call) | AgentState::OnCall(call) = snapshot.state {
            assert!(
                acd.calls.contains_key(&call),
                "agent {} busy for gone {call}",
                snapshot.agent
            );
            busy_for.insert(snapshot.agent.clone(), call);
        }
    }
    for (call, record) in &acd.calls {
        match &record.phase {
            CallPhase::Ringing(rings) => {
                assert!(!rings.is_empty());
                for agent in rings.keys() {
                    assert_eq!(busy_for.get(agent), Some(call), "{agent} rings {call}");
                }
            }
            CallPhase::Connected { agent, .. } => {
                assert_eq!(busy_for.get(agent), Some(call));
            }
            CallPhase::Waiting => {}
        }
    }
    // Each busy agent is claimed by exactly the call it names (no double booking).
    for (agent, call) in &busy_for {
        let claimed = match &acd.calls[call].phase {
            CallPhase::Ringing(rings) => rings.contains_key(agent),
            CallPhase::Connected { agent: on, .. } => on == agent,
            CallPhase::Waiting => false,
        };
        assert!(claimed, "{agent} thinks it serves {call}");
    }
    for output in outputs {
        let Some(call) = output.call() else {
            continue;
        };
        assert!(
            seen.contains(&call),
            "output for never-enqueued {call}: {output:?} in {outputs:?}"
        );
        match output {
            AcdOutput::Ring { .. } | AcdOutput::Connected { .. } | AcdOutput::Announce { .. } => {
                assert!(
                    acd.calls.contains_key(&call),
                    "{output:?} for a call not in the ACD: {outputs:?}"
                );
            }
            AcdOutput::StopRinging { .. } => {
                assert!(
                    before.contains(&call) || acd.calls.contains_key(&call),
                    "{output:?}"
                );
            }
            AcdOutput::Overflow { to: None, .. } | AcdOutput::QueueFull { to: None, .. } => {
                assert!(
                    !acd.calls.contains_key(&call),
                    "{output:?} but still queued"
                );
            }
            AcdOutput::Overflow {
                to: Some(group), ..
            }
            | AcdOutput::QueueFull {
                to: Some(group), ..
            } => {
                assert_eq!(acd.call_group(call), Some(group.as_str()), "{output:?}");
            }
            AcdOutput::PauseChanged { .. } => unreachable!("not about a call"),
        }
    }
}

/// Like `Sim::run_to`, checking the invariants after every timer step.
fn checked_run_to(sim: &mut Sim, at: Duration, seen: &BTreeSet<CallId>) -> Vec<AcdOutput> {
    let target = sim.t0 + at;
    let mut all = Vec::new();
    loop {
        let before: BTreeSet<CallId> = sim.acd.calls.keys().copied().collect();
        let next = sim.acd.poll_timeout().filter(|next| *next <= target);
        sim.now = next.unwrap_or(target);
        sim.acd.handle_timeout(sim.now);
        let outputs = sim.drain();
        check_invariants(&sim.acd, seen, &outputs, &before);
        all.extend(outputs);
        if next.is_none() {
            return all;
        }
    }
}

#[test]
fn random_walks_keep_the_invariants_and_drain_the_queue() {
    let groups_list = ["g1", "g2", "g3", "g4"];
    let languages = ["lt", "en", "ru", "pl"];
    let agents = ["a", "b", "c", "d", "user:u"];
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let mut sim = Sim::new(&random_groups());
        let mut seen = BTreeSet::new();
        let mut next_call = 1;
        let mut elapsed = Duration::ZERO;
        for _ in 0..300 {
            let before: BTreeSet<CallId> = sim.acd.calls.keys().copied().collect();
            let live: Vec<CallId> = before.iter().copied().collect();
            let pick_call = |rng: &mut Rng| -> CallId {
                if live.is_empty() || rng.below(10) == 0 {
                    CallId(rng.below(next_call + 2))
                } else {
                    live[rng.below(live.len() as u64) as usize]
                }
            };
            let agent = a(agents[rng.below(agents.len() as u64) as usize]);
            let input = match rng.below(9) {
                0 | 1 => {
                    let call = CallId(next_call);
                    next_call += 1;
                    seen.insert(call);
                    Some(AcdInput::Enqueue {
                        call,
                        group: groups_list[rng.below(4) as usize].into(),
                        language: languages[rng.below(4) as usize].into(),
                    })
                }
                2 => Some(AcdInput::CallerLeft {
                    call: pick_call(&mut rng),
                }),
                3 | 4 => Some(AcdInput::AgentAnswered {
                    call: pick_call(&mut rng),
                    agent,
                }),
                5 => Some(AcdInput::AgentFailed {
                    call: pick_call(&mut rng),
                    agent,
                    reason: [
                        FailReason::Busy,
                        FailReason::Unreachable,
                        FailReason::Declined,
                        FailReason::NoAnswer,
                    ][rng.below(4) as usize],
                }),
                6 => Some(AcdInput::CallEnded {
                    call: pick_call(&mut rng),
                }),
                7 => Some(AcdInput::Online {
                    agent: a("user:u"),
                    online: rng.below(2) == 0,
                }),
                _ => None,
            };
            let outputs = match input {
                Some(input) => {
                    // Errors are fine (stale or random reports); the invariants still hold.
                    let _ = sim.acd.handle_input(input, sim.now);
                    sim.drain()
                }
                None => {
                    elapsed += ms(rng.below(20_000));
                    let outputs = checked_run_to(&mut sim, elapsed, &seen);
                    for output in &outputs {
                        *kinds.entry(kind(output)).or_default() += 1;
                    }
                    Vec::new()
                }
            };
            check_invariants(&sim.acd, &seen, &outputs, &before);
            for output in &outputs {
                *kinds.entry(kind(output)).or_default() += 1;
            }
        }
        // Drain: every agent registered and answering, every call ending: the ACD empties.
        sim.input(AcdInput::Online {
            agent: a("user:u"),
            online: true,
        });
        for _ in 0..2000 {
            if sim.acd.calls.is_empty() {
                break;
            }
            let before: BTreeSet<CallId> = sim.acd.calls.keys().copied().collect();
            let ringing: Vec<(CallId, AgentId)> = sim
                .acd
                .calls
                .iter()
                .filter_map(|(call, record)| match &record.phase {
                    CallPhase::Ringing(rings) => {
                        rings.keys().next().map(|agent| (*call, agent.clone()))
                    }
                    _ => None,
                })
                .collect();
            let connected: Vec<CallId> = sim
                .acd
                .calls
                .iter()
                .filter(|(_, record)| matches!(record.phase, CallPhase::Connected { .. }))
                .map(|(call, _)| *call)
                .collect();
            let mut outputs = Vec::new();
            for (call, agent) in ringing {
                sim.acd
                    .handle_input(AcdInput::AgentAnswered { call, agent }, sim.now)
                    .unwrap();
                outputs.extend(sim.drain());
            }
            for call in connected {
                sim.acd
                    .handle_input(AcdInput::CallEnded { call }, sim.now)
                    .unwrap();
                outputs.extend(sim.drain());
            }
            check_invariants(&sim.acd, &seen, &outputs, &before);
            elapsed += secs(1);
            checked_run_to(&mut sim, elapsed, &seen);
        }
        assert!(
            sim.acd.calls.is_empty(),
            "seed {seed}: calls left {:?}",
            sim.acd.calls.keys()
        );
        assert!(sim
            .acd
            .agent_states()
            .iter()
            .all(|s| !matches!(s.state, AgentState::Ringing(_) | AgentState::OnCall(_))));
    }
    // The walk reached every kind of output, so the invariants were exercised on them.
    for expected in [
        "Ring",
        "StopRinging",
        "Connected",
        "Announce",
        "Overflow",
        "QueueFull",
    ] {
        assert!(
            kinds.get(expected).is_some_and(|n| *n > 10),
            "{expected}: {kinds:?}"
        );
    }
}

fn kind(output: &AcdOutput) -> &'static str {
    match output {
        AcdOutput::Ring { .. } => "Ring",
        AcdOutput::StopRinging { .. } => "StopRinging",
        AcdOutput::Connected { .. } => "Connected",
        AcdOutput::Announce { .. } => "Announce",
        AcdOutput::Overflow { .. } => "Overflow",
        AcdOutput::QueueFull { .. } => "QueueFull",
        AcdOutput::PauseChanged { .. } => "PauseChanged",
    }
}
