//! Callback requests that outlast a call, through the switchboard in simulated time: every
//! change written, a request claimed by another node left to it, a reload or a restart that
//! neither loses nor doubles a dial, and the resident calling again (keep or cancel).

use super::tests::*;
use crate::call::tests::{header, in_dialog, invite_with, to_tag, udp, Harness, PCMU_OFFER};
use crate::call::*;
use crate::cdr::CallbackStatus;

#[test]
fn every_change_of_a_request_is_written_and_the_number_blanked_when_it_is_over() {
    let mut h = harness();
    a_asks_for_a_callback(&mut h);
    agent_takes_the_callback(&mut h);
    let invite = resident_invite(&mut h);
    h.receive(carrier(), &answer(&invite, "200 OK", "resident"));
    wait(&mut h, 1);
    let states: Vec<(CallbackStatus, u32, String)> = h
        .callback_rows
        .iter()
        .map(|row| (row.state, row.attempts, row.number.clone()))
        .collect();
    assert_eq!(
        states,
        vec![
            (CallbackStatus::Pending, 0, RESIDENT.to_owned()),
            (CallbackStatus::Dialling, 1, RESIDENT.to_owned()),
            (CallbackStatus::Connected, 1, String::new()),
        ]
    );
    assert!(h.callback_rows.iter().all(|row| row.id == "cb-a"));
    assert!(h.callback_rows[0].queue_entered < h.callback_rows[0].requested);
}

#[test]
fn a_request_another_node_claimed_frees_the_agent_and_is_left_to_it() {
    let mut h = harness();
    a_asks_for_a_callback(&mut h);
    h.grant_claims = false;
    agent_takes_the_callback(&mut h);
    let sent = h.take_sent();
    let dials = sent
        .iter()
        .filter(|(_, to, text)| *to == carrier() && text.starts_with("INVITE"));
    assert_eq!(dials.count(), 0, "no second dial");
    let byes = sent
        .iter()
        .filter(|(_, to, text)| *to == agent() && text.starts_with("BYE"));
    assert_eq!(byes.count(), 1, "the agent is released at once");
    let now = h.sim.now;
    assert!(h.switchboard().live(now).callbacks.is_empty());
    let written = h.callback_rows.len();
    wait(&mut h, 900);
    assert_eq!(
        h.callback_rows.len(),
        written,
        "the other node owns its row"
    );
}

#[test]
fn a_reload_while_the_resident_is_dialled_does_not_dial_again() {
    let mut h = harness();
    a_asks_for_a_callback(&mut h);
    agent_takes_the_callback(&mut h);
    resident_invite(&mut h);
    let now = h.sim.now;
    h.switchboard().set_routing(now, routing());
    h.collect();
    wait(&mut h, 5);
    let again: Vec<String> = requests_to(&mut h, carrier(), "INVITE")
        .into_iter()
        .filter(|invite| invite.contains("CSeq: 1 INVITE"))
        .collect();
    let call_ids: std::collections::BTreeSet<Option<&str>> = again
        .iter()
        .map(|invite| header(invite, "Call-ID"))
        .collect();
    assert!(
        call_ids.len() <= 1,
        "only the first dial's retransmissions: {again:?}"
    );
    assert!(requests_to(&mut h, agent(), "INVITE").is_empty());
}

#[test]
fn a_pending_request_taken_up_after_a_restart_keeps_its_place() {
    let mut h = harness();
    a_asks_for_a_callback(&mut h);
    let row = h.callback_rows.last().cloned().unwrap();
    assert_eq!(row.state, CallbackStatus::Pending);

    // A new service: the agent still paused, the wall clock later than the request.
    let mut h = harness();
    wait(&mut h, 200);
    let now = h.sim.now;
    h.switchboard().restore_callbacks(now, vec![row]);
    h.collect();
    queued_caller(&mut h, "cb-c", "37062222222");
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert_eq!(live.callbacks.len(), 1);
    assert_eq!(live.callbacks[0].position, Some(1), "{:?}", live.callbacks);
    let invite = agent_takes_the_callback(&mut h);
    assert!(
        invite.contains("[CB]"),
        "the request before the caller who came later"
    );
    let dial = resident_invite(&mut h);
    assert!(dial.starts_with("INVITE sip:+37060000000@"), "{dial}");
}

/// The resident calls again while their request waits: answered, told so; their leg.
fn calls_again(h: &mut Harness, call_id: &str) -> LegId {
    let branch = format!("z9hG4bK-{call_id}");
    let invite = invite_with(call_id, &branch, "", "application/sdp", PCMU_OFFER);
    h.receive(udp(), &invite);
    let sent = h.take_sent();
    let ok = sent
        .iter()
        .find(|(_, _, text)| text.starts_with("SIP/2.0 200") && text.contains(call_id))
        .expect("200 OK");
    let tag = to_tag(&ok.2);
    let before = h.media.len();
    let ack = in_dialog("ACK", call_id, &tag, 1, &format!("{branch}-ack"), "");
    h.receive(udp(), &ack);
    let leg = h
        .media
        .iter()
        .rev()
        .find_map(|command| match command {
            MediaCommand::Start { leg, .. } => Some(*leg),
            _ => None,
        })
        .expect("media started");
    assert_eq!(played(h, leg, before), vec!["callback_pending"]);
    leg
}

#[test]
fn a_resident_calling_again_may_cancel_the_pending_request_and_go_on() {
    let mut h = harness();
    a_asks_for_a_callback(&mut h);
    let leg = calls_again(&mut h, "cb-again");
    let before = h.media.len();
    press(&mut h, leg, "2");
    wait(&mut h, 1);
    let heard = played(&h, leg, before);
    assert_eq!(
        heard[..2],
        ["callback_cancelled".to_owned(), "welcome".to_owned()],
        "{heard:?}"
    );
    let now = h.sim.now;
    assert!(h.switchboard().live(now).callbacks.is_empty());
    let last = h.callback_rows.last().unwrap();
    assert_eq!(
        (last.state, last.number.as_str()),
        (CallbackStatus::Cancelled, "")
    );
    // Nobody is called back: the agent, available again, gets caller B instead.
    let now = h.sim.now;
    h.switchboard()
        .set_agent_pause(now, AGENT, None, "supervisor");
    h.collect();
    let invites = requests_to(&mut h, agent(), "INVITE");
    assert!(!invites[0].contains("[CB]"), "{}", invites[0]);
}

#[test]
fn a_resident_calling_again_may_keep_the_pending_request() {
    let mut h = harness();
    a_asks_for_a_callback(&mut h);
    let leg = calls_again(&mut h, "cb-keep");
    let before = h.media.len();
    press(&mut h, leg, "1");
    wait(&mut h, 1);
    assert_eq!(played(&h, leg, before), vec!["callback_kept"]);
    assert!(
        requests_to(&mut h, udp(), "BYE")
            .iter()
            .any(|bye| bye.contains("Call-ID: cb-keep\r\n")),
        "we hang up"
    );
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert_eq!(live.callbacks.len(), 1, "kept");
    assert_eq!(live.callbacks[0].position, Some(1));
}
