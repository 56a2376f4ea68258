//! What an agent does with a connected caller, through the switchboard: a blind transfer to
//! another enterprise (REFER naming a group is accepted with 202 and NOTIFY 200, the agent's
//! leg ends and the caller's next ring is an agent of that group; anything else gets 403), and
//! hold (the caller hears the music until the agent resumes).

use super::tests::{
    agent, agent_puts_caller_on_hold, agent_request, agent_response, answered_and_agent_invite,
    bridging_harness, header, Harness, AGENT_HOLD_OFFER,
};

/// A bridged call (caller on heating-2); returns the agent's INVITE.
fn bridged(h: &mut Harness) -> String {
    let (_, invite) = answered_and_agent_invite(h, "moved-1");
    h.receive(agent(), &agent_response(&invite, "200 OK", "ag"));
    h.take_sent();
    invite
}

fn refer_to(invite: &str, target: &str) -> String {
    agent_request(invite, "REFER", 2, "z9hG4bK-agent-refer", "").replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nRefer-To: <{target}>\r\nContact: <sip:heating-2@127.0.0.1:5312>\r\n"),
    )
}

#[test]
fn an_agent_transfers_the_caller_to_another_group() {
    let mut h = bridging_harness();
    let invite = bridged(&mut h);
    h.receive(agent(), &refer_to(&invite, "sip:water@127.0.0.1"));
    let sent = h.take_sent();
    let lines: Vec<&str> = sent
        .iter()
        .map(|(_, _, t)| t.lines().next().unwrap())
        .collect();
    assert_eq!(lines[0], "SIP/2.0 202 Accepted", "{lines:?}");
    let notify = sent
        .iter()
        .find(|(_, _, t)| t.starts_with("NOTIFY "))
        .expect("NOTIFY")
        .2
        .clone();
    assert_eq!(header(&notify, "Event"), Some("refer"));
    assert!(notify.ends_with("SIP/2.0 200 OK\r\n"), "{notify}");
    assert!(
        lines.iter().any(|l| l.starts_with("BYE sip:heating-2@")),
        "{lines:?}"
    );
    // The caller is rung at water now (its English speaker water-2), shown as water.
    let next = sent
        .iter()
        .find(|(_, _, t)| t.starts_with("INVITE sip:water-"))
        .map(|(_, _, t)| t.clone())
        .expect("a water agent rung");
    assert!(
        header(&next, "From")
            .unwrap()
            .starts_with("\"[EN] Vilnius Water\""),
        "{next}"
    );
    let now = h.sim.now;
    let live = h.switchboard().live(now);
    assert_eq!(live.calls[0].state, "ringing");
}

#[test]
fn a_transfer_to_anything_but_a_group_is_refused() {
    let mut h = bridging_harness();
    let invite = bridged(&mut h);
    h.receive(
        agent(),
        &refer_to(&invite, "sip:+37060000001@carrier.example"),
    );
    let sent = h.take_sent();
    let lines: Vec<&str> = sent
        .iter()
        .map(|(_, _, t)| t.lines().next().unwrap())
        .collect();
    assert_eq!(lines, ["SIP/2.0 403 Forbidden"]);
    let now = h.sim.now;
    assert_eq!(h.switchboard().live(now).calls[0].state, "connected");
}

#[test]
fn the_caller_hears_music_while_the_agent_holds_and_the_agent_again_on_resume() {
    use crate::media::leg::{LegId, MediaCommand, MediaEvent};
    let mut h = bridging_harness();
    let invite = agent_puts_caller_on_hold(&mut h, "held-1");
    h.receive(
        agent(),
        &agent_request(&invite, "ACK", 2, "z9hG4bK-hold-ack", ""),
    );
    let media = std::mem::take(&mut h.media);
    let unbridged = media.iter().position(|m| {
        matches!(
            m,
            MediaCommand::Unbridge {
                caller: LegId(1),
                agent: LegId(2)
            }
        )
    });
    let music = media.iter().position(|m| matches!(m, MediaCommand::Play { leg: LegId(1), prompts, .. } if prompts[0].name == "music_on_hold"));
    assert!(unbridged.is_some() && music > unbridged, "{media:?}");
    // The piece ends: it plays again while the hold lasts.
    let generation = media.iter().rev().find_map(|m| match m {
        MediaCommand::Play {
            leg: LegId(1),
            generation,
            ..
        } => Some(*generation),
        _ => None,
    });
    h.input(super::Input::Media(MediaEvent::PlaybackFinished {
        leg: LegId(1),
        generation: generation.unwrap(),
    }));
    assert!(
        h.media
            .iter()
            .any(|m| matches!(m, MediaCommand::Play { leg: LegId(1), .. })),
        "{:?}",
        h.media
    );
    h.media.clear();
    // Resume (sendrecv): the music stops, the relay starts again.
    let resume = AGENT_HOLD_OFFER
        .replace("a=sendonly", "a=sendrecv")
        .replace("o=agent 1 2", "o=agent 1 3");
    h.receive(
        agent(),
        &agent_request(&invite, "INVITE", 3, "z9hG4bK-resume", &resume),
    );
    h.receive(
        agent(),
        &agent_request(&invite, "ACK", 3, "z9hG4bK-resume-ack", ""),
    );
    assert!(
        h.media
            .iter()
            .any(|m| matches!(m, MediaCommand::StopPlayback { leg: LegId(1) })),
        "{:?}",
        h.media
    );
    assert!(
        h.media.iter().any(|m| matches!(
            m,
            MediaCommand::Bridge {
                caller: LegId(1),
                agent: LegId(2)
            }
        )),
        "{:?}",
        h.media
    );
}
