//! A group's `media_encryption` through the switchboard: the agent's INVITE offers SRTP per the
//! policy (signalling forced secure with the user agent's override, as TLS is not on this
//! branch), the agreed keys reach the media driver for the agent's leg only, and the plain
//! caller's leg is bridged to it; `required` without secure signalling never rings the agent.

use std::sync::Arc;

use super::tests::{agent, answered_and_agent_invite, config, header, Harness, StraightToAgent};
use crate::media::leg::{LegId, MediaCommand};
use crate::media::srtp::SrtpProfile;
use crate::sdp::CryptoAttribute;

const AGENT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";

/// The shipped routing with heating's `media_encryption`; every caller queued for heating.
fn harness(encryption: &str, secure: bool) -> Harness {
    let mut h = Harness::new(config());
    h.switchboard()
        .set_flow_factory(Box::new(|_| Box::new(StraightToAgent)));
    let text = include_str!("../../routing.toml").replacen(
        "[groups.heating]\n",
        &format!("[groups.heating]\nmedia_encryption = \"{encryption}\"\n"),
        1,
    );
    let routing = crate::routing::parse(&text, "routing.toml").unwrap();
    assert_eq!(
        routing.groups["heating"].media_encryption.as_str(),
        encryption
    );
    let now = h.sim.now;
    h.switchboard().set_routing(now, Arc::new(routing));
    h.switchboard().ua.assume_secure_signalling(secure);
    h
}

fn crypto_lines(message: &str) -> Vec<CryptoAttribute> {
    message
        .lines()
        .filter_map(|line| line.strip_prefix("a=crypto:"))
        .map(|value| CryptoAttribute::parse(value).unwrap())
        .collect()
}

/// The agent's 200 with `media` as its SDP's m-section.
fn agent_ok(invite: &str, media: &str) -> String {
    let body = format!(
        "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}"
    );
    format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=ag\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\nContact: <sip:heating-2@127.0.0.1:5312>\r\n\
         Content-Length: {}\r\n\r\n{body}",
        header(invite, "Via").unwrap(),
        header(invite, "From").unwrap(),
        header(invite, "To").unwrap(),
        header(invite, "Call-ID").unwrap(),
        body.len()
    )
}

/// The session each leg's media was started with.
fn started(h: &Harness, leg: u64) -> crate::media::leg::MediaSession {
    h.media
        .iter()
        .find_map(|command| match command {
            MediaCommand::Start {
                leg: l, session, ..
            } if *l == LegId(leg) => Some(session.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("leg {leg} not started: {:?}", h.media))
}

#[test]
fn a_required_group_rings_its_agent_with_srtp_and_bridges_the_plain_caller() {
    let mut h = harness("required", true);
    let (_, invite) = answered_and_agent_invite(&mut h, "srtp-1");
    assert!(
        invite.contains("m=audio 30002 RTP/SAVP 0 8 101"),
        "{invite}"
    );
    let ours = crypto_lines(&invite);
    assert_eq!(ours.len(), 2, "{invite}");

    let answer = format!(
        "m=audio 7010 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{AGENT_KEY}\r\n"
    );
    h.receive(agent(), &agent_ok(&invite, &answer));
    let keys = started(&h, 2).srtp.expect("the agent's leg is SRTP");
    assert_eq!(keys.profile, SrtpProfile::Aes128CmHmacSha1_80);
    assert_eq!(Some(&keys.local), ours[0].master_key());
    assert_eq!(
        keys.remote.to_bytes().to_vec(),
        (0u8..30).collect::<Vec<_>>()
    );
    assert_eq!(started(&h, 1).srtp, None, "the caller's leg stays plain");
    assert!(h.media.iter().any(|m| matches!(
        m,
        MediaCommand::Bridge {
            caller: LegId(1),
            agent: LegId(2)
        }
    )));
}

#[test]
fn an_agent_answering_a_required_offer_without_keys_is_hung_up() {
    let mut h = harness("required", true);
    let (_, invite) = answered_and_agent_invite(&mut h, "srtp-2");
    h.receive(agent(), &agent_ok(&invite, "m=audio 7010 RTP/SAVP 0\r\n"));
    let sent = h.take_sent();
    assert!(
        sent.iter()
            .any(|(_, to, text)| *to == agent() && text.starts_with("BYE ")),
        "{sent:?}"
    );
    assert!(!h
        .media
        .iter()
        .any(|m| matches!(m, MediaCommand::Start { leg: LegId(2), .. })));
}

#[test]
fn an_optional_group_takes_a_plain_answer() {
    let mut h = harness("optional", true);
    let (_, invite) = answered_and_agent_invite(&mut h, "srtp-3");
    assert!(invite.contains("m=audio 30002 RTP/AVP 0 8 101"), "{invite}");
    assert_eq!(crypto_lines(&invite).len(), 2, "best-effort offer");
    h.receive(agent(), &agent_ok(&invite, "m=audio 7010 RTP/AVP 0\r\n"));
    assert_eq!(started(&h, 2).srtp, None);
}

#[test]
fn required_without_secure_signalling_never_rings_the_agent() {
    let mut h = harness("required", false);
    super::tests::answered_call(&mut h, "srtp-4");
    let sent = h.take_sent();
    assert!(
        !sent
            .iter()
            .any(|(_, to, text)| *to == agent() && text.starts_with("INVITE ")),
        "{sent:?}"
    );
}
