//! Static agents' phones probed with OPTIONS through the switchboard: one that stops
//! answering is shown unreachable and not rung; it comes back when it answers again.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{answered_call, bridging_harness, in_dialog, ok_to, udp, Harness};
use crate::sip::transport::Peer;

const INTERVAL: Duration = Duration::from_secs(10);
const HEATING_1: &str = "127.0.0.1:5311";
const HEATING_2: &str = "127.0.0.1:5312";

/// The shipped routing with every static agent probed every 10 s.
fn probing_harness() -> Harness {
    let mut h = bridging_harness();
    let routing =
        crate::routing::parse(include_str!("../../routing.toml"), "routing.toml").unwrap();
    let now = h.sim.now;
    h.switchboard().set_agent_probe(INTERVAL);
    h.switchboard().set_routing(now, Arc::new(routing));
    h
}

fn state(h: &mut Harness, agent: &str) -> String {
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    let agent = live
        .agents
        .iter()
        .find(|live| live.agent.contains(agent))
        .unwrap_or_else(|| panic!("{agent} in the live snapshot"));
    agent.state.clone()
}

/// The OPTIONS sent since the last look, by the address they went to.
fn probes(h: &mut Harness) -> Vec<(Peer, String)> {
    h.take_sent()
        .into_iter()
        .filter(|(_, _, text)| text.starts_with("OPTIONS "))
        .map(|(_, to, text)| (to, text))
        .collect()
}

/// Every phone but `silent` answers its probe (one with 404: any answer shows it is there).
fn answer_all_but(h: &mut Harness, sent: &[(Peer, String)], silent: &str) {
    for (to, probe) in sent {
        if to.addr.to_string() == silent {
            continue;
        }
        let answer = ok_to(probe, Some("phone")).replacen("200 OK", "404 Not Found", 1);
        h.receive(*to, &answer);
    }
}

/// Runs to `until` second by second, every phone but `silent` answering its probes; returns
/// where INVITEs went meanwhile.
fn run_answering(h: &mut Harness, until: Duration, silent: &str) -> Vec<String> {
    let mut rung = Vec::new();
    while h.sim.now - h.sim.t0 < until {
        let next = h.sim.now - h.sim.t0 + Duration::from_secs(1);
        h.advance_to(next);
        let sent = h.take_sent();
        rung.extend(
            sent.iter()
                .filter(|(_, _, text)| text.starts_with("INVITE "))
                .map(|(_, to, _)| to.addr.to_string()),
        );
        let probes: Vec<(Peer, String)> = sent
            .into_iter()
            .filter(|(_, _, text)| text.starts_with("OPTIONS "))
            .map(|(_, to, text)| (to, text))
            .collect();
        answer_all_but(h, &probes, silent);
    }
    rung
}

#[test]
fn a_phone_that_stops_answering_is_unreachable_and_not_rung_until_it_answers() {
    let mut h = probing_harness();
    assert_eq!(
        state(&mut h, HEATING_2),
        "idle",
        "phones start out reachable"
    );
    h.advance_to(INTERVAL - Duration::from_millis(1));
    assert!(probes(&mut h).is_empty(), "no probe before one interval");

    h.advance_to(INTERVAL);
    let sent = probes(&mut h);
    let to: Vec<String> = sent.iter().map(|(to, _)| to.addr.to_string()).collect();
    assert!(
        to.contains(&HEATING_1.to_owned()) && to.contains(&HEATING_2.to_owned()),
        "{to:?}"
    );
    assert!(sent[0].1.contains("CSeq: 1 OPTIONS"), "{}", sent[0].1);
    answer_all_but(&mut h, &sent, HEATING_2);
    assert_eq!(state(&mut h, HEATING_1), "idle");

    // No answer within the transaction's 64·T1 (32 s): unreachable.
    run_answering(&mut h, INTERVAL + Duration::from_secs(33), HEATING_2);
    assert_eq!(state(&mut h, HEATING_2), "unreachable");
    assert_eq!(state(&mut h, HEATING_1), "idle", "heating-1 answers");

    // An English caller: heating-2 speaks English but is unreachable, so only heating-1
    // (once the language preference widens) is rung.
    let tag = answered_call(&mut h, "probe-caller");
    let rung = run_answering(&mut h, Duration::from_secs(120), HEATING_2);
    assert!(!rung.is_empty(), "somebody is rung");
    assert!(rung.iter().all(|to| to == HEATING_1), "{rung:?}");
    assert_eq!(state(&mut h, HEATING_2), "unreachable");
    let bye = in_dialog("BYE", "probe-caller", &tag, 2, "z9hG4bK-bye-probe", "");
    h.receive(udp(), &bye);

    // Its next probe is answered: it may be rung again.
    run_answering(&mut h, Duration::from_secs(200), "nobody");
    assert_eq!(state(&mut h, HEATING_2), "idle");
}

#[test]
fn probing_off_sends_nothing_and_a_drain_stops_it() {
    let mut h = bridging_harness();
    h.advance_to(INTERVAL * 20);
    assert!(probes(&mut h).is_empty(), "probing is off unless set");

    let mut h = probing_harness();
    h.input(super::Input::Drain);
    h.advance_to(INTERVAL * 3);
    assert!(
        probes(&mut h).is_empty(),
        "a stopping service probes nobody"
    );
}
