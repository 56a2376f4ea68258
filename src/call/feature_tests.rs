//! Agents' feature codes through the switchboard: a registered agent dialling `*21` from its
//! phone is paused (answered, confirmation, hang-up), `*22` makes it available again; anyone
//! else dialling a code gets 403.

use super::tests::{
    config, header, in_dialog, invite_with, register_agent, to_tag, udp, Harness, PCMU_OFFER,
};
use super::*;
use crate::media::leg::{MediaCommand, MediaEvent};

const ROUTING: &str = r#"[hotline]
languages = ["en"]
default_language = "en"
timezone = "Europe/Vilnius"
fallback = "desk"
start = "main"

[menus.main]
prompt = "main_menu"
options."1" = { group = "desk" }

[groups.desk]
name = { en = "Desk" }
agents = [{ user = "ona" }]
"#;

fn harness() -> Harness {
    let mut h = Harness::new(config());
    let routing = crate::routing::parse(ROUTING, "routing.toml").unwrap();
    let now = h.sim.now;
    h.switchboard().set_routing(now, Arc::new(routing));
    register_agent(&mut h, "ona");
    h
}

/// The agent dials `code` from its registered address; returns the final response's first line.
fn dial(h: &mut Harness, code: &str, from_user: &str, call_id: &str) -> String {
    let invite = invite_with(
        call_id,
        &format!("z9hG4bK-{call_id}"),
        "",
        "application/sdp",
        PCMU_OFFER,
    )
    .replacen("INVITE sip:19118@", &format!("INVITE sip:{code}@"), 1)
    .replace(
        "From: <sip:37060000000@127.0.0.1>",
        &format!("From: <sip:{from_user}@127.0.0.1>"),
    );
    h.receive(udp(), &invite);
    let sent = h.take_sent();
    let last = sent
        .iter()
        .rev()
        .find(|(_, _, t)| !t.starts_with("SIP/2.0 1"))
        .unwrap();
    last.2.clone()
}

fn agent_state(h: &mut Harness) -> String {
    let now = h.sim.now;
    h.switchboard().live(now).agents[0].state.clone()
}

#[test]
fn a_registered_agent_pauses_and_resumes_with_feature_codes() {
    let mut h = harness();
    assert_eq!(agent_state(&mut h), "idle");
    let ok = dial(&mut h, "*21", "ona", "pause-1");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(agent_state(&mut h), "paused");
    // The ACK brings the media: the confirmation plays, then we hang up.
    let tag = to_tag(&ok);
    h.receive(
        udp(),
        &in_dialog("ACK", "pause-1", &tag, 1, "z9hG4bK-ack-p", ""),
    );
    let (leg, prompt) = h
        .media
        .iter()
        .find_map(|command| match command {
            MediaCommand::Play { leg, prompts, .. } => Some((*leg, prompts[0].name.clone())),
            _ => None,
        })
        .expect("a confirmation");
    assert_eq!(prompt, "agent_paused");
    h.input(Input::Media(MediaEvent::PlaybackFinished {
        leg,
        generation: 1,
    }));
    let bye = h.take_sent();
    assert!(
        bye.iter().any(|(_, _, t)| t.starts_with("BYE ")),
        "{bye:#?}"
    );

    let ok = dial(&mut h, "*22", "ona", "resume-1");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(agent_state(&mut h), "idle");
    // Each change is an audit row saying who made it.
    let rows: Vec<(&str, &str, &str, &str)> = h
        .agent_states
        .iter()
        .map(|c| {
            (
                c.agent.as_str(),
                c.from.as_str(),
                c.to.as_str(),
                c.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("user:ona", "available", "paused", "feature_code"),
            ("user:ona", "paused", "available", "feature_code"),
        ]
    );
    assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
}

#[test]
fn a_code_from_someone_not_registered_there_is_refused() {
    let mut h = harness();
    let refused = dial(&mut h, "*23", "mallory", "stranger-1");
    assert!(refused.starts_with("SIP/2.0 403"), "{refused}");
    assert_eq!(agent_state(&mut h), "idle");
}
