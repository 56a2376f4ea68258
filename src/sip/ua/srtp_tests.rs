//! The user agent's SRTP decisions: keys only over secure signalling (here forced with the lab
//! override, as TLS is not on this branch), 488 with a Warning where the SDP is at fault, our
//! offers per policy and the answers to them checked.

use std::time::Instant;

use super::tests::{answer, events, header, outgoing, phone, transmitted, ua};
use super::*;
use crate::media::srtp::SrtpProfile;
use crate::sdp::{CryptoAttribute, MediaEncryption, NegotiationError};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";

fn sdp_with(media: &str) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}")
}

fn savp_sdp() -> String {
    sdp_with(&format!(
        "m=audio 7000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
    ))
}

/// A caller's INVITE carrying `sdp`; the `Incoming` session.
fn incoming(ua: &mut UserAgent, now: Instant, sdp: &str) -> SessionId {
    let invite = format!(
        "INVITE sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKs1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:370@127.0.0.1>;tag=c1\r\nTo: <sip:19118@127.0.0.1>\r\n\
         Call-ID: srtp-1\r\nCSeq: 1 INVITE\r\nContact: <sip:370@127.0.0.1:5080>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    ua.handle_message(now, phone(), invite.as_bytes());
    match events(ua).into_iter().next() {
        Some(UaEvent::Incoming { session, .. }) => session,
        other => panic!("{other:?}"),
    }
}

fn text(transmit: &Transmit) -> String {
    String::from_utf8(transmit.bytes.to_vec()).unwrap()
}

fn crypto_lines(message: &str) -> Vec<CryptoAttribute> {
    message
        .lines()
        .filter_map(|line| line.strip_prefix("a=crypto:"))
        .map(|value| CryptoAttribute::parse(value).unwrap())
        .collect()
}

#[test]
fn only_tls_counts_as_secure_and_the_override_is_explicit() {
    let mut ua = ua();
    assert!(!transport_is_secure(
        crate::sip::transport::TransportKind::Udp
    ));
    assert!(!transport_is_secure(
        crate::sip::transport::TransportKind::Tcp
    ));
    assert!(!ua.signalling_secure(phone()));
    ua.assume_secure_signalling(true);
    assert!(ua.signalling_secure(phone()));
}

#[test]
fn srtp_offer_over_insecure_signalling_gets_488_with_a_warning() {
    let mut ua = ua();
    let now = Instant::now();
    let session = incoming(&mut ua, now, &savp_sdp());
    assert_eq!(
        ua.accept_with(now, session, 30000, MediaEncryption::Optional),
        Err(488)
    );
    let refused = text(&transmitted(&mut ua).pop().unwrap());
    assert!(refused.starts_with("SIP/2.0 488"), "{refused}");
    assert_eq!(
        header(&refused, "Warning"),
        "399 hotline \"SRTP keys only over TLS\""
    );
    assert_eq!(ua.stats().sessions, 0);
}

#[test]
fn unknown_suites_get_488_naming_the_attribute() {
    let mut ua = ua();
    ua.assume_secure_signalling(true);
    let now = Instant::now();
    let offer = sdp_with(&format!(
        "m=audio 7000 RTP/SAVP 0\r\na=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}{KEY}\r\n"
    ));
    let session = incoming(&mut ua, now, &offer);
    assert_eq!(
        ua.accept_with(now, session, 30000, MediaEncryption::Required),
        Err(488)
    );
    let refused = text(&transmitted(&mut ua).pop().unwrap());
    assert_eq!(
        header(&refused, "Warning"),
        "306 hotline \"Attribute not understood\""
    );
}

#[test]
fn a_plain_caller_on_a_required_trunk_gets_488() {
    let mut ua = ua();
    ua.assume_secure_signalling(true);
    let now = Instant::now();
    let session = incoming(&mut ua, now, &sdp_with("m=audio 7000 RTP/AVP 0\r\n"));
    assert_eq!(
        ua.accept_with(now, session, 30000, MediaEncryption::Required),
        Err(488)
    );
    let refused = text(&transmitted(&mut ua).pop().unwrap());
    assert_eq!(
        header(&refused, "Warning"),
        "399 hotline \"Media encryption required\""
    );
}

#[test]
fn an_srtp_caller_is_answered_with_our_key_and_the_keys_reach_the_media_event() {
    let mut ua = ua();
    ua.assume_secure_signalling(true);
    let now = Instant::now();
    let session = incoming(&mut ua, now, &savp_sdp());
    ua.accept_with(now, session, 30000, MediaEncryption::Optional)
        .unwrap();
    ua.answer(now, session);
    let ok = text(&transmitted(&mut ua).pop().unwrap());
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("m=audio 30000 RTP/SAVP 0\r\n"), "{ok}");
    let ours = crypto_lines(&ok);
    assert_eq!(ours.len(), 1, "{ok}");
    let ack = format!(
        "ACK sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKs2\r\n\
         Max-Forwards: 70\r\nFrom: <sip:370@127.0.0.1>;tag=c1\r\nTo: {}\r\nCall-ID: srtp-1\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "To")
    );
    ua.handle_message(now, phone(), ack.as_bytes());
    match events(&mut ua).as_slice() {
        [UaEvent::Media { negotiated, .. }] => {
            let keys = negotiated.srtp.as_ref().expect("SRTP");
            assert_eq!(keys.profile, SrtpProfile::Aes128CmHmacSha1_80);
            assert_eq!(Some(&keys.local), ours[0].master_key());
            assert_eq!(
                keys.remote.to_bytes().to_vec(),
                (0u8..30).collect::<Vec<_>>()
            );
        }
        other => panic!("{other:?}"),
    }

    // The caller re-offers the same line (e.g. a new address): our key stays.
    let sdp = savp_sdp().replace("o=- 1 1", "o=- 1 2");
    let reinvite = format!(
        "INVITE sip:19118@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKs3\r\n\
         Max-Forwards: 70\r\nFrom: <sip:370@127.0.0.1>;tag=c1\r\nTo: {}\r\nCall-ID: srtp-1\r\n\
         CSeq: 2 INVITE\r\nContact: <sip:370@127.0.0.1:5080>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        header(&ok, "To"),
        sdp.len()
    );
    ua.handle_message(now, phone(), reinvite.as_bytes());
    let reanswered = text(&transmitted(&mut ua).pop().unwrap());
    assert!(reanswered.starts_with("SIP/2.0 200"), "{reanswered}");
    assert_eq!(crypto_lines(&reanswered), ours);
    match events(&mut ua).as_slice() {
        [UaEvent::Media { negotiated, .. }] => {
            let kept = negotiated.srtp.as_ref().map(|keys| &keys.local);
            assert_eq!(kept, ours[0].master_key());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn required_to_an_insecure_peer_is_not_even_sent() {
    let mut ua = ua();
    let call = OutgoingCall {
        media_encryption: MediaEncryption::Required,
        ..outgoing()
    };
    let error = ua.invite(Instant::now(), call).unwrap_err();
    assert!(
        matches!(
            error,
            PlaceError::Media(NegotiationError::KeysNeedSecureSignalling)
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("TLS"), "{error}");
    assert!(transmitted(&mut ua).is_empty());
    assert_eq!(ua.stats().sessions, 0);
}

#[test]
fn optional_to_an_insecure_peer_offers_plain_rtp_without_keys() {
    let mut ua = ua();
    let call = OutgoingCall {
        media_encryption: MediaEncryption::Optional,
        ..outgoing()
    };
    ua.invite(Instant::now(), call).unwrap();
    let invite = text(&transmitted(&mut ua)[0]);
    assert!(invite.contains("m=audio 30000 RTP/AVP 0 8 101"), "{invite}");
    assert!(!invite.contains("a=crypto"), "{invite}");
}

/// Our INVITE under `encryption` over forced-secure signalling, answered with `answer_media`.
fn placed_and_answered(
    encryption: MediaEncryption,
    answer_media: impl Fn(&[CryptoAttribute]) -> String,
) -> (String, Option<crate::sdp::Negotiated>) {
    let mut ua = ua();
    ua.assume_secure_signalling(true);
    let now = Instant::now();
    let call = OutgoingCall {
        media_encryption: encryption,
        ..outgoing()
    };
    ua.invite(now, call).unwrap();
    let invite = text(&transmitted(&mut ua)[0]);
    let ours = crypto_lines(&invite);
    let ok = answer(&invite, "200 OK", &sdp_with(&answer_media(&ours)));
    ua.handle_message(now, phone(), ok.as_bytes());
    match events(&mut ua).into_iter().next() {
        Some(UaEvent::Answered { negotiated, .. }) => (invite, negotiated),
        other => panic!("{other:?}"),
    }
}

#[test]
fn required_offers_savp_and_takes_the_answers_key() {
    let (invite, negotiated) = placed_and_answered(MediaEncryption::Required, |_| {
        format!("m=audio 7000 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\n")
    });
    assert!(
        invite.contains("m=audio 30000 RTP/SAVP 0 8 101"),
        "{invite}"
    );
    let ours = crypto_lines(&invite);
    assert_eq!(ours.len(), 2);
    let keys = negotiated.expect("usable answer").srtp.expect("SRTP");
    assert_eq!(
        (keys.tag, keys.profile),
        (2, SrtpProfile::Aes128CmHmacSha1_32)
    );
    assert_eq!(Some(&keys.local), ours[1].master_key());

    // An answer without keys to a SAVP offer is unusable.
    let (_, refused) = placed_and_answered(MediaEncryption::Required, |_| {
        "m=audio 7000 RTP/SAVP 0\r\n".into()
    });
    assert_eq!(refused, None);
}

#[test]
fn optional_offers_best_effort_and_a_plain_answer_is_plain() {
    let (invite, negotiated) = placed_and_answered(MediaEncryption::Optional, |_| {
        "m=audio 7000 RTP/AVP 0\r\n".into()
    });
    assert!(invite.contains("m=audio 30000 RTP/AVP 0 8 101"), "{invite}");
    assert_eq!(crypto_lines(&invite).len(), 2);
    assert_eq!(negotiated.expect("usable").srtp, None);
}

#[test]
fn keys_come_from_their_own_generator() {
    let key_of = |seed: Option<[u8; 32]>| {
        let mut ua = ua();
        ua.assume_secure_signalling(true);
        if let Some(seed) = seed {
            ua.seed_key_generator(seed);
        }
        let call = OutgoingCall {
            media_encryption: MediaEncryption::Required,
            ..outgoing()
        };
        ua.invite(Instant::now(), call).unwrap();
        let invite = text(&transmitted(&mut ua)[0]);
        (
            crypto_lines(&invite)[0].clone(),
            header(&invite, "Call-ID").to_owned(),
        )
    };
    let (default_key, default_call_id) = key_of(None);
    assert_eq!(key_of(None).0, default_key, "deterministic by default");
    let (seeded_key, seeded_call_id) = key_of(Some([7; 32]));
    assert_ne!(seeded_key, default_key);
    assert_eq!(
        seeded_call_id, default_call_id,
        "tags and Call-IDs are unaffected"
    );
}
