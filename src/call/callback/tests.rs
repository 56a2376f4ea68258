//! Queued callbacks through the switchboard in simulated time, prompts ending after their
//! length: the offer once the caller has waited `offer_after`, the number read back and
//! confirmed (or another typed), the request keeping its place ahead of a later caller, the
//! agent rung first and the resident dialled through the trunk, the intro, the bridge, the
//! records linked to the original call, and a resident not reached tried again, then given up.

use std::sync::Arc;
use std::time::Duration;

use crate::acd::PauseReason;
use crate::call::tests::{
    config, header, in_dialog, invite_with, ok_to, to_tag, udp, Harness, PCMU_OFFER,
};
use crate::call::*;
use crate::cdr::Outcome;
use crate::ivr::menu::MenuFlow;
use crate::media::dtmf::DtmfSource;
use crate::media::prompts::Prompt;
use crate::numbers::NumberRules;
use crate::settings::CallerIdHeader;
use crate::sip::registration::keepalive::{Keepalive, KeepaliveConfig};
use crate::sip::transport::TransportKind;

pub(super) const ROUTING: &str = r#"[hotline]
languages = ["en"]
default_language = "en"
timezone = "Europe/Vilnius"
fallback = "desk"
start = "main"
announce_every = "20s"

[menus.main]
prompt = "main_menu"
options."1" = { group = "desk" }

[groups.desk]
name = { en = "Heating" }
announce = "group_heating"
when_empty = "wait"
wrap_up = "0s"
ring_timeout = "10s"
max_wait = "30m"
callback = { trunk = "carrier", offer_after = "30s", retry_after = "5m", max_attempts = 2 }
agents = [{ uri = "sip:desk-1@127.0.0.1:5301" }]
"#;

pub(super) const AGENT: &str = "sip:desk-1@127.0.0.1:5301";
pub(super) const RESIDENT: &str = "+37060000000";

pub(super) fn agent() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:5301".parse().unwrap(),
    }
}

pub(super) fn carrier() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.5:5060".parse().unwrap(),
    }
}

pub(super) fn rules() -> NumberRules {
    NumberRules {
        country_code: "370".into(),
        national_prefix: "8".into(),
        international_prefix: "00".into(),
    }
}

pub(super) fn routing() -> Arc<crate::routing::Routing> {
    Arc::new(crate::routing::parse(ROUTING, "routing.toml").unwrap())
}

/// Every prompt the menus can play, each 0.1 s long.
pub(super) fn prompts(routing: &crate::routing::Routing) -> PromptLibrary {
    let mut names = crate::ivr::menu::prompts::flow_prompts(routing);
    names.extend(["main_menu", "group_heating", "music_on_hold"].map(String::from));
    names.extend((1..=9).map(|n| format!("number_{n}")));
    PromptLibrary::from_prompts(
        names
            .iter()
            .map(|name| Prompt::from_samples(name, "en", &[0.1; 800])),
    )
}

/// The routing's menus as the service runs them, a trunk to the carrier, the agent paused.
pub(super) fn harness() -> Harness {
    let routing = routing();
    let mut h = Harness::with_prompts(config(), prompts(&routing));
    let for_flows = routing.clone();
    h.switchboard()
        .set_flow_factory(Box::new(move |incoming: &IncomingCall| {
            let flow = MenuFlow::new(for_flows.clone());
            Box::new(
                flow.with_callback_numbers(Some(&incoming.caller), rules(), &incoming.trunks)
                    .with_pending_callback(incoming.pending_callback.as_deref()),
            )
        }));
    let now = h.sim.now;
    let keepalive = KeepaliveConfig {
        trunk: "carrier".into(),
        host: "127.0.0.5:5060".into(),
        backup_host: None,
        transport: TransportKind::Udp,
        interval: Duration::from_secs(3600),
        local_addr: "127.0.0.1:5060".parse().unwrap(),
        request_timeout: Duration::from_secs(32),
    };
    let trunk = TrunkSetup {
        name: "carrier".into(),
        host: "127.0.0.5:5060".into(),
        backup_host: None,
        transport: TransportKind::Udp,
        from_user: Some("hotline19118".into()),
        credentials: None,
        inbound: Vec::new(),
        numbers: vec!["19118".into()],
        caller_id: CallerIdHeader::Pai,
        max_calls: None,
        max_cps: None,
        media_encryption: crate::sdp::MediaEncryption::Off,
        watch: TrunkWatch::Probe(Box::new(Keepalive::new(keepalive, 3))),
    };
    h.switchboard().set_trunks(now, rules(), vec![trunk]);
    h.switchboard().set_routing(now, routing);
    let paused =
        h.switchboard()
            .set_agent_pause(now, AGENT, Some(PauseReason::Break), "supervisor");
    assert!(paused);
    h.collect();
    h
}

/// A caller from `number` answered, in the desk's queue a second later; their leg.
pub(super) fn queued_caller(h: &mut Harness, call_id: &str, number: &str) -> (LegId, String) {
    let branch = format!("z9hG4bK-{call_id}");
    let from = |text: String| text.replace("sip:37060000000@", &format!("sip:{number}@"));
    let invite = invite_with(call_id, &branch, "", "application/sdp", PCMU_OFFER);
    h.receive(udp(), &from(invite));
    let sent = h.take_sent();
    let ok = sent
        .iter()
        .find(|(_, _, text)| text.starts_with("SIP/2.0 200") && text.contains(call_id))
        .expect("200 OK");
    let tag = to_tag(&ok.2);
    let ack = in_dialog("ACK", call_id, &tag, 1, &format!("{branch}-ack"), "");
    h.receive(udp(), &from(ack));
    let leg = h
        .media
        .iter()
        .rev()
        .find_map(|command| match command {
            MediaCommand::Start { leg, .. } => Some(*leg),
            _ => None,
        })
        .expect("media started");
    press(h, leg, "1");
    (leg, tag)
}

pub(super) fn press(h: &mut Harness, leg: LegId, keys: &str) {
    for digit in keys.chars() {
        let offset = h.sim.elapsed() + Duration::from_millis(500);
        h.advance_to(offset);
        h.input(Input::Media(MediaEvent::Digit {
            leg,
            digit,
            source: DtmfSource::Rfc4733,
        }));
    }
}

pub(super) fn wait(h: &mut Harness, seconds: u64) {
    let offset = h.sim.elapsed() + Duration::from_secs(seconds);
    h.advance_to(offset);
}

/// The prompts played on `leg` since `from` (an index into the media commands).
pub(super) fn played(h: &Harness, leg: LegId, from: usize) -> Vec<String> {
    h.media[from..]
        .iter()
        .filter_map(|command| match command {
            MediaCommand::Play {
                leg: on, prompts, ..
            } if *on == leg => Some(prompts),
            _ => None,
        })
        .flatten()
        .map(|prompt| prompt.name.clone())
        .collect()
}

pub(super) fn requests_to(h: &mut Harness, peer: Peer, method: &str) -> Vec<String> {
    h.take_sent()
        .into_iter()
        .filter(|(_, to, text)| *to == peer && text.starts_with(method))
        .map(|(_, _, text)| text)
        .collect()
}

/// The answer of a phone to our INVITE, with SDP when 2xx.
pub(super) fn answer(invite: &str, status: &str, tag: &str) -> String {
    let body = if status.starts_with("200") {
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7010 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    } else {
        ""
    };
    let extra = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\nContact: <sip:phone@127.0.0.1:7000>\r\n".to_owned()
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag={tag}\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        header(invite, "Via").unwrap(),
        header(invite, "From").unwrap(),
        header(invite, "To").unwrap(),
        header(invite, "Call-ID").unwrap(),
        body.len()
    )
}

pub(super) fn record<'a>(h: &'a Harness, call_id: &str) -> &'a crate::cdr::CallRecord {
    h.records
        .iter()
        .find(|record| record.call_id == call_id)
        .unwrap_or_else(|| panic!("no record of {call_id}: {:#?}", h.records))
}

/// Caller A waits, is offered the callback, confirms their own number; caller B queues later
/// (B's dialog tag comes back).
pub(super) fn a_asks_for_a_callback(h: &mut Harness) -> String {
    let (leg, _) = queued_caller(h, "cb-a", "37060000000");
    let before = h.media.len();
    wait(h, 25);
    assert!(
        !played(h, leg, before).contains(&"callback_offer".to_owned()),
        "no offer before offer_after: {:?}",
        played(h, leg, before)
    );
    wait(h, 20);
    let heard = played(h, leg, before);
    let offer = heard.iter().position(|name| name == "callback_offer");
    assert!(offer.is_some(), "offered after 30 s of waiting: {heard:?}");
    assert_eq!(
        heard[offer.unwrap() + 1],
        "digit_1",
        "with its key: {heard:?}"
    );

    let (_, b_tag) = queued_caller(h, "cb-b", "37061111111");
    let before = h.media.len();
    press(h, leg, "1");
    wait(h, 3);
    let heard: Vec<String> = played(h, leg, before)
        .into_iter()
        .filter(|name| name != "queue_hold")
        .collect();
    let mut expected: Vec<String> = vec!["callback_your_number".into(), "number_plus".into()];
    expected.extend(RESIDENT[1..].chars().map(|digit| format!("digit_{digit}")));
    expected.push("callback_confirm".into());
    assert_eq!(heard, expected, "the number read back, digit by digit");
    press(h, leg, "1");
    wait(h, 2);
    assert!(played(h, leg, before).contains(&"callback_accepted".to_owned()));
    let bye = requests_to(h, udp(), "BYE");
    assert!(
        !bye.is_empty() && bye.iter().all(|bye| bye.contains("Call-ID: cb-a\r\n")),
        "we hang up after the thanks: {bye:?}"
    );
    h.receive(udp(), &ok_to(&bye[0], None));
    wait(h, 1);
    let original = record(h, "cb-a");
    assert_eq!(original.outcome, Outcome::CallbackRequested);
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert_eq!(live.callbacks.len(), 1, "{:?}", live.callbacks);
    assert_eq!(live.callbacks[0].number, RESIDENT);
    assert_eq!(live.callbacks[0].state, "queued");
    assert_eq!(live.callbacks[0].position, Some(1), "ahead of caller B");
    b_tag
}

/// The agent comes back: the callback (asked for first) rings them before caller B.
pub(super) fn agent_takes_the_callback(h: &mut Harness) -> String {
    let now = h.sim.now;
    h.switchboard()
        .set_agent_pause(now, AGENT, None, "supervisor");
    h.collect();
    let invites = requests_to(h, agent(), "INVITE");
    assert!(!invites.is_empty(), "the agent is rung");
    let invite = invites[0].clone();
    let call_id = header(&invite, "Call-ID");
    assert!(
        invites
            .iter()
            .all(|again| header(again, "Call-ID") == call_id),
        "one ring (and its retransmissions): {invites:?}"
    );
    assert!(
        header(&invite, "From")
            .unwrap()
            .starts_with("\"[CB][EN] Heating\" <sip:+37060000000@"),
        "{invite}"
    );
    assert_eq!(header(&invite, "X-Hotline-Caller"), Some(RESIDENT));
    h.receive(agent(), &answer(&invite, "200 OK", "agent"));
    invite
}

pub(super) fn resident_invite(h: &mut Harness) -> String {
    let invites = requests_to(h, carrier(), "INVITE");
    assert!(!invites.is_empty(), "the resident is dialled");
    let invite = invites[0].clone();
    let call_id = header(&invite, "Call-ID");
    assert!(
        invites
            .iter()
            .all(|again| header(again, "Call-ID") == call_id),
        "exactly one dial (and its retransmissions): {invites:?}"
    );
    assert!(
        invite.starts_with("INVITE sip:+37060000000@127.0.0.5:5060"),
        "{invite}"
    );
    invite
}

#[test]
fn a_confirmed_callback_keeps_its_place_rings_the_agent_first_then_bridges_the_resident() {
    let mut h = harness();
    a_asks_for_a_callback(&mut h);
    agent_takes_the_callback(&mut h);
    let invite = resident_invite(&mut h);
    let media_before = h.media.len();
    h.receive(carrier(), &answer(&invite, "200 OK", "resident"));
    wait(&mut h, 1);
    let call_id = header(&invite, "Call-ID").unwrap().to_owned();
    let resident_leg = h.media[media_before..]
        .iter()
        .find_map(|command| match command {
            MediaCommand::Start { leg, .. } => Some(*leg),
            _ => None,
        })
        .expect("the resident's media");
    assert_eq!(
        played(&h, resident_leg, media_before),
        vec!["callback_intro", "group_heating"]
    );
    assert!(
        h.media[media_before..].iter().any(|command| matches!(
            command,
            MediaCommand::Bridge { caller, .. } if *caller == resident_leg
        )),
        "bridged after the intro"
    );
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert!(live.callbacks.is_empty(), "connected: {:?}", live.callbacks);
    assert!(
        requests_to(&mut h, agent(), "INVITE").is_empty(),
        "caller B waits: the agent is on the callback"
    );

    // The resident hangs up: the attempt's record is linked to the original call.
    let bye = format!(
        "BYE sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK-rbye\r\nFrom: {};tag=resident\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&invite, "To").unwrap(),
        header(&invite, "From").unwrap(),
    );
    h.receive(carrier(), &bye);
    wait(&mut h, 40);
    let attempt = record(&h, &call_id);
    assert_eq!(attempt.outcome, Outcome::Connected);
    assert_eq!(attempt.callback_of.as_deref(), Some("cb-a"));
    assert_eq!(attempt.caller.as_deref(), Some(RESIDENT));
    assert_eq!(attempt.trunk, "carrier");
    assert_eq!(attempt.enterprise.as_deref(), Some("desk"));
    assert_eq!(attempt.agent.as_deref(), Some(AGENT));
    assert!(attempt.agent_answered.is_some());
}

#[test]
fn a_resident_not_reached_frees_the_agent_and_is_tried_again_then_given_up() {
    let mut h = harness();
    let b_tag = a_asks_for_a_callback(&mut h);
    // Caller B leaves: the agent's next ring can only be the retry.
    let bye = in_dialog("BYE", "cb-b", &b_tag, 2, "z9hG4bK-b-bye", "")
        .replace("sip:37060000000@", "sip:37061111111@");
    h.receive(udp(), &bye);
    agent_takes_the_callback(&mut h);
    let invite = resident_invite(&mut h);
    h.receive(carrier(), &answer(&invite, "486 Busy Here", "resident"));
    let agent_bye = requests_to(&mut h, agent(), "BYE");
    assert_eq!(agent_bye.len(), 1, "the agent is released at once");
    h.receive(agent(), &ok_to(&agent_bye[0], None));
    wait(&mut h, 1);
    let first = record(&h, header(&invite, "Call-ID").unwrap()).clone();
    assert_eq!(first.outcome, Outcome::NotReached);
    assert_eq!(first.callback_of.as_deref(), Some("cb-a"));
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert_eq!(live.callbacks[0].state, "waiting");
    assert_eq!(live.callbacks[0].attempts, 1);
    let agent_state = |h: &mut Harness| {
        let now = h.sim.now;
        h.switchboard().live(now).agents[0].state.clone()
    };
    assert_eq!(
        agent_state(&mut h),
        "idle",
        "no wrap-up after a resident not reached"
    );

    // retry_after (5 min): the agent first again, then the second and last dial.
    wait(&mut h, 290);
    assert!(
        requests_to(&mut h, agent(), "INVITE").is_empty(),
        "not before retry_after"
    );
    wait(&mut h, 15);
    agent_takes_the_callback(&mut h);
    let second = resident_invite(&mut h);
    assert_ne!(header(&second, "Call-ID"), header(&invite, "Call-ID"));
    h.receive(
        carrier(),
        &answer(&second, "480 Temporarily Unavailable", "resident"),
    );
    let agent_bye = requests_to(&mut h, agent(), "BYE");
    h.receive(agent(), &ok_to(&agent_bye[0], None));
    wait(&mut h, 1);
    assert_eq!(
        record(&h, header(&second, "Call-ID").unwrap()).outcome,
        Outcome::NotReached
    );
    let now = h.sim.now;
    assert!(
        h.switchboard().live(now).callbacks.is_empty(),
        "given up after max_attempts"
    );
    wait(&mut h, 900);
    assert!(requests_to(&mut h, agent(), "INVITE").is_empty());
    assert!(requests_to(&mut h, carrier(), "INVITE").is_empty());
}

#[test]
fn another_number_typed_is_checked_before_it_is_accepted() {
    let mut h = harness();
    let (leg, _) = queued_caller(&mut h, "cb-typed", "37060000000");
    wait(&mut h, 45);
    let before = h.media.len();
    // The offer key, then another number instead of 1: a freephone number first (refused).
    press(&mut h, leg, "1");
    wait(&mut h, 3);
    press(&mut h, leg, "880012345#");
    wait(&mut h, 1);
    let heard = played(&h, leg, before);
    assert!(
        heard.contains(&"callback_invalid_number".to_owned()),
        "{heard:?}"
    );
    assert!(
        heard.contains(&"callback_enter_number".to_owned()),
        "{heard:?}"
    );
    press(&mut h, leg, "867012345#");
    wait(&mut h, 3);
    assert!(played(&h, leg, before).contains(&"callback_accepted".to_owned()));
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert_eq!(live.callbacks.len(), 1);
    assert_eq!(live.callbacks[0].number, "+37067012345");
}

#[test]
fn a_caller_who_does_not_answer_the_read_back_goes_back_to_waiting() {
    let mut h = harness();
    let (leg, _) = queued_caller(&mut h, "cb-silent", "37060000000");
    wait(&mut h, 45);
    press(&mut h, leg, "1");
    wait(&mut h, 30);
    let before = h.media.len();
    wait(&mut h, 25);
    let heard = played(&h, leg, before);
    assert!(
        heard.contains(&"queue_hold".to_owned()),
        "back on hold: {heard:?}"
    );
    assert!(
        heard.contains(&"callback_offer".to_owned()),
        "still offered: {heard:?}"
    );
    let now = h.sim.now;
    assert!(h.switchboard().live(now).callbacks.is_empty());
}

#[test]
fn attempts_wait_for_the_window_and_are_made_once_it_opens() {
    // The harness's clock starts on Thursday 1 January 1970; the window is Sundays only.
    let text = ROUTING.replace(
        "max_attempts = 2 }",
        "max_attempts = 2, window = \"sundays\" }",
    ) + "\n[hours.sundays]\nweekly = { sun = \"00:00-23:59\" }\n";
    let routing = Arc::new(crate::routing::parse(&text, "routing.toml").unwrap());
    let mut h = harness();
    let now = h.sim.now;
    h.switchboard().set_routing(now, routing.clone());
    let for_flows = routing;
    h.switchboard()
        .set_flow_factory(Box::new(move |incoming: &IncomingCall| {
            let flow = MenuFlow::new(for_flows.clone());
            Box::new(flow.with_callback_numbers(Some(&incoming.caller), rules(), &incoming.trunks))
        }));
    let b_tag = a_asks_for_a_callback(&mut h);
    let bye = in_dialog("BYE", "cb-b", &b_tag, 2, "z9hG4bK-b-bye", "")
        .replace("sip:37060000000@", "sip:37061111111@");
    h.receive(udp(), &bye);
    let now = h.sim.now;
    h.switchboard()
        .set_agent_pause(now, AGENT, None, "supervisor");
    h.collect();
    let invites = requests_to(&mut h, agent(), "INVITE");
    assert!(invites.is_empty(), "no callback on a Thursday: {invites:?}");
    let now = h.sim.now;
    assert_eq!(h.switchboard().live(now).callbacks[0].state, "waiting");
    for day in 1..=3 {
        wait(&mut h, 86_400);
        let rung: Vec<String> = requests_to(&mut h, agent(), "INVITE")
            .into_iter()
            .filter(|invite| invite.contains("[CB]"))
            .collect();
        let sunday = day == 3;
        assert_eq!(!rung.is_empty(), sunday, "day {day}: {rung:?}");
    }
}

#[test]
fn no_offer_when_the_groups_trunk_is_not_configured() {
    let text = ROUTING.replace("trunk = \"carrier\"", "trunk = \"elsewhere\"");
    let routing = Arc::new(crate::routing::parse(&text, "routing.toml").unwrap());
    let mut h = harness();
    let now = h.sim.now;
    h.switchboard().set_routing(now, routing.clone());
    h.switchboard()
        .set_flow_factory(Box::new(move |incoming: &IncomingCall| {
            let flow = MenuFlow::new(routing.clone());
            Box::new(flow.with_callback_numbers(Some(&incoming.caller), rules(), &incoming.trunks))
        }));
    let (leg, _) = queued_caller(&mut h, "cb-nowhere", "37060000000");
    let before = h.media.len();
    wait(&mut h, 90);
    let heard = played(&h, leg, before);
    assert!(
        heard.contains(&"all_agents_busy".to_owned()) || heard.contains(&"queue_hold".to_owned()),
        "{heard:?}"
    );
    assert!(!heard.contains(&"callback_offer".to_owned()), "{heard:?}");
}
