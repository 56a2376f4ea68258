//! Returning callers keep their language, through the switchboard in simulated time: the
//! second call from a number starts in the language chosen on the first, a withheld number is
//! never remembered, choices read from the records count (by pseudonym when keyed), and
//! `remember_language = "0s"` switches it off.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tests::{config, in_dialog, invite_with, to_tag, udp, Harness, PCMU_OFFER};
use super::*;
use crate::cdr::{pseudonymise, CallRecord, LanguageChoice};
use crate::ivr::menu::MenuFlow;
use crate::media::dtmf::DtmfSource;
use crate::routing::Routing;

const NUMBER: &str = "37060000000";

fn routing(text: &str) -> Arc<Routing> {
    Arc::new(crate::routing::parse(text, "routing.toml").expect("routing parses"))
}

fn shipped() -> Arc<Routing> {
    routing(include_str!("../../routing.toml"))
}

/// A switchboard running the menus of `routing` as the service does, noting the language each
/// new call was remembered in.
fn menu_harness(routing: Arc<Routing>) -> (Harness, Arc<Mutex<Vec<Option<String>>>>) {
    let mut h = Harness::new(config());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    let for_flows = routing.clone();
    h.switchboard()
        .set_flow_factory(Box::new(move |incoming: &IncomingCall| {
            noted
                .lock()
                .unwrap()
                .push(incoming.remembered_language.clone());
            let flow = MenuFlow::new(for_flows.clone());
            Box::new(flow.with_remembered_language(incoming.remembered_language.as_deref()))
        }));
    let now = h.sim.now;
    h.switchboard().set_routing(now, routing);
    (h, seen)
}

/// One call from `from` (a SIP user): answered, `keys` pressed, hung up by the caller a minute
/// later; its record.
fn call(h: &mut Harness, call_id: &str, from: &str, keys: &str) -> CallRecord {
    let from_line = |text: String| {
        text.replace(
            "From: <sip:37060000000@127.0.0.1>",
            &format!("From: <sip:{from}@127.0.0.1>"),
        )
    };
    let branch = format!("z9hG4bK-{call_id}");
    let invite = invite_with(call_id, &branch, "", "application/sdp", PCMU_OFFER);
    h.receive(udp(), &from_line(invite));
    let sent = h.take_sent();
    let ok = sent
        .iter()
        .find(|(_, _, text)| {
            text.starts_with("SIP/2.0 200")
                && text.contains(&format!("Call-ID: {call_id}\r\n"))
                && text.contains("INVITE\r\n")
        })
        .expect("200 OK");
    let tag = to_tag(&ok.2);
    let ack = in_dialog("ACK", call_id, &tag, 1, &format!("{branch}-ack"), "");
    h.receive(udp(), &from_line(ack));
    let leg = h
        .media
        .iter()
        .rev()
        .find_map(|command| match command {
            MediaCommand::Start { leg, .. } => Some(*leg),
            _ => None,
        })
        .expect("media started");
    for digit in keys.chars() {
        let offset = h.sim.elapsed() + Duration::from_secs(2);
        h.advance_to(offset);
        h.input(Input::Media(MediaEvent::Digit {
            leg,
            digit,
            source: DtmfSource::Rfc4733,
        }));
    }
    let offset = h.sim.elapsed() + Duration::from_secs(3);
    h.advance_to(offset);
    let bye = in_dialog("BYE", call_id, &tag, 2, &format!("{branch}-bye"), "");
    h.receive(udp(), &from_line(bye));
    let offset = h.sim.elapsed() + Duration::from_secs(60);
    h.advance_to(offset);
    h.records
        .iter()
        .rev()
        .find(|record| record.call_id == call_id)
        .cloned()
        .unwrap_or_else(|| {
            let sent: Vec<String> = h.take_sent().into_iter().map(|m| m.2).collect();
            panic!(
                "no record of {call_id}: {:?}\n{}",
                h.records,
                sent.join("\n----\n")
            )
        })
}

#[test]
fn a_second_call_from_the_same_number_starts_in_the_language_chosen_the_first_time() {
    let (mut h, seen) = menu_harness(shipped());
    let first = call(&mut h, "first", NUMBER, "2");
    assert_eq!(first.caller.as_deref(), Some(NUMBER));
    assert_eq!(first.language.as_deref(), Some("en"));
    assert!(first.language_chosen.is_some());
    assert!(
        first.menu_path.starts_with("language en"),
        "{}",
        first.menu_path
    );
    assert_eq!(h.switchboard().remembered_languages(), 1);

    let second = call(&mut h, "second", NUMBER, "");
    assert_eq!(seen.lock().unwrap().clone(), vec![None, Some("en".into())]);
    assert_eq!(second.language.as_deref(), Some("en"));
    assert_eq!(second.language_chosen, None, "remembered, not chosen");
    assert!(
        second.menu_path.starts_with("remembered language en"),
        "{}",
        second.menu_path
    );

    // The change key, then Russian: the third call starts in Russian.
    let third = call(&mut h, "third", NUMBER, "*3");
    assert!(
        third
            .menu_path
            .starts_with("remembered language en > main:* (change language) > language ru"),
        "{}",
        third.menu_path
    );
    call(&mut h, "fourth", NUMBER, "");
    assert_eq!(
        seen.lock().unwrap().last().cloned(),
        Some(Some("ru".into()))
    );

    // Another number is not this one.
    call(&mut h, "other", "37060000001", "");
    assert_eq!(seen.lock().unwrap().last().cloned(), Some(None));
}

#[test]
fn a_withheld_number_is_never_remembered() {
    let (mut h, seen) = menu_harness(shipped());
    let first = call(&mut h, "anon-1", "anonymous", "2");
    assert_eq!(first.language.as_deref(), Some("en"));
    assert!(first.language_chosen.is_some());
    call(&mut h, "anon-2", "anonymous", "");
    assert_eq!(seen.lock().unwrap().clone(), vec![None, None]);
    assert_eq!(h.switchboard().remembered_languages(), 0);
}

#[test]
fn choices_from_the_records_count_by_pseudonym_and_only_within_the_window() {
    let (mut h, seen) = menu_harness(shipped());
    let now = h.sim.now;
    let wall = h.switchboard().wall(now);
    let chosen = |days_ago: u64| {
        chrono::DateTime::<chrono::Utc>::from(wall - Duration::from_secs(days_ago * 86_400))
    };
    h.switchboard().set_language_memory(
        Some("s3cret"),
        None,
        vec![
            LanguageChoice {
                caller: pseudonymise(b"s3cret", NUMBER),
                language: "pl".into(),
                chosen: chosen(89),
            },
            LanguageChoice {
                caller: pseudonymise(b"s3cret", "37060000001"),
                language: "ru".into(),
                chosen: chosen(91),
            },
        ],
    );
    let record = call(&mut h, "keyed", NUMBER, "");
    assert_eq!(record.language.as_deref(), Some("pl"));
    call(&mut h, "too-old", "37060000001", "");
    assert_eq!(seen.lock().unwrap().clone(), vec![Some("pl".into()), None]);

    // Retention keeps callers 30 days: an 89-day-old choice no longer counts.
    h.switchboard().set_language_memory(
        Some("s3cret"),
        Some(Duration::from_secs(30 * 86_400)),
        vec![LanguageChoice {
            caller: pseudonymise(b"s3cret", NUMBER),
            language: "pl".into(),
            chosen: chosen(89),
        }],
    );
    call(&mut h, "retained", NUMBER, "");
    assert_eq!(seen.lock().unwrap().last().cloned(), Some(None));
}

#[test]
fn remember_language_off_in_the_routing_greets_everyone_alike() {
    let off = include_str!("../../routing.toml")
        .replace("remember_language = \"90d\"", "remember_language = \"0s\"");
    let (mut h, seen) = menu_harness(routing(&off));
    call(&mut h, "off-1", NUMBER, "2");
    let second = call(&mut h, "off-2", NUMBER, "");
    assert_eq!(seen.lock().unwrap().clone(), vec![None, None]);
    assert_eq!(second.language, None);
    assert_eq!(h.switchboard().remembered_languages(), 0);
}
