//! Tests for SRTP in offer/answer: which offers each policy answers (and how), our offers, and
//! the checks on answers to them.

use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::media::srtp::{SrtpReceiver, SrtpSender};
use crate::sdp::{
    answer_with, offer_with, parse_answer_with, Codec, LocalMedia, Negotiated, SessionDescription,
};

/// 30 bytes 00..1d.
const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
const KEY_B: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn rng() -> StdRng {
    StdRng::seed_from_u64(16)
}

fn local() -> LocalMedia {
    LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        rtp_port: 40000,
        session_id: 7,
        session_version: 1,
    }
}

fn sdp(media: &str) -> SessionDescription {
    let text = format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}"
    );
    SessionDescription::parse(text.as_bytes()).expect("test SDP parses")
}

fn policy(encryption: MediaEncryption, secure: bool) -> SrtpPolicy {
    SrtpPolicy::new(encryption, secure)
}

fn answer(media: &str, policy: SrtpPolicy) -> Result<(Negotiated, String), NegotiationError> {
    answer_with(&sdp(media), &local(), policy, &mut rng())
}

fn savp_offer() -> String {
    format!(
        "m=audio 5000 RTP/SAVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^31\r\n\
         a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}\r\n"
    )
}

fn crypto_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("a=crypto:")).collect()
}

#[test]
fn policy_names_parse_and_default_is_off() {
    for (name, policy) in [
        ("off", MediaEncryption::Off),
        ("optional", MediaEncryption::Optional),
        ("required", MediaEncryption::Required),
    ] {
        assert_eq!(MediaEncryption::parse(name), Some(policy));
        assert_eq!(policy.to_string(), name);
    }
    assert_eq!(MediaEncryption::parse("Required"), None);
    assert_eq!(MediaEncryption::default(), MediaEncryption::Off);
    assert!(!SrtpPolicy::default().keys_allowed());
    assert!(!policy(MediaEncryption::Required, false).keys_allowed());
    assert!(policy(MediaEncryption::Optional, true).keys_allowed());
}

#[test]
fn savp_offer_over_secure_signalling_is_answered_with_our_key() {
    for encryption in [MediaEncryption::Optional, MediaEncryption::Required] {
        let (negotiated, text) = answer(&savp_offer(), policy(encryption, true)).expect("answer");
        assert_eq!(negotiated.codec, Codec::Pcma);
        let keys = negotiated.srtp.as_ref().expect("SRTP agreed");
        assert_eq!(keys.tag, 1);
        assert_eq!(keys.profile, SrtpProfile::Aes128CmHmacSha1_80);
        assert_eq!(
            keys.remote.to_bytes().to_vec(),
            (0u8..30).collect::<Vec<_>>()
        );
        assert!(text.contains("m=audio 40000 RTP/SAVP 8 101\r\n"), "{text}");
        let lines = crypto_lines(&text);
        assert_eq!(lines.len(), 1, "{text}");
        let ours = CryptoAttribute::parse(lines[0].trim_start_matches("a=crypto:")).unwrap();
        assert_eq!((ours.tag, ours.profile()), (1, Some(keys.profile)));
        assert_eq!(ours.master_key(), Some(&keys.local));
        assert_ne!(keys.local, keys.remote);
    }
}

#[test]
fn the_key_comes_from_the_callers_generator() {
    let secure = policy(MediaEncryption::Optional, true);
    let first = answer(&savp_offer(), secure).unwrap().0.srtp.unwrap();
    let again = answer(&savp_offer(), secure).unwrap().0.srtp.unwrap();
    assert_eq!(first.local, again.local, "same seed, same key");
    let other = answer_with(
        &sdp(&savp_offer()),
        &local(),
        secure,
        &mut StdRng::seed_from_u64(17),
    )
    .unwrap()
    .0
    .srtp
    .unwrap();
    assert_ne!(first.local, other.local);
}

#[test]
fn the_32_bit_suite_is_taken_when_it_is_the_only_known_one() {
    let offer = format!(
        "m=audio 5000 RTP/SAVP 0\r\n\
         a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_A}{KEY_A}\r\n\
         a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}\r\n"
    );
    let (negotiated, text) = answer(&offer, policy(MediaEncryption::Required, true)).unwrap();
    let keys = negotiated.srtp.unwrap();
    assert_eq!(
        (keys.tag, keys.profile),
        (7, SrtpProfile::Aes128CmHmacSha1_32)
    );
    assert!(
        crypto_lines(&text)[0].starts_with("a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:"),
        "{text}"
    );
}

#[test]
fn unknown_suites_only_is_488_naming_them() {
    let offer = format!(
        "m=audio 5000 RTP/SAVP 0\r\n\
         a=crypto:1 AEAD_AES_128_GCM inline:{KEY_A}\r\n\
         a=crypto:2 F8_128_HMAC_SHA1_80 inline:{KEY_B}|2^20|1:4\r\n\
         a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^20|1:4\r\n\
         a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A} UNAUTHENTICATED_SRTP\r\n"
    );
    let error = answer(&offer, policy(MediaEncryption::Optional, true)).unwrap_err();
    let NegotiationError::NoAcceptableCrypto { reason } = &error else {
        panic!("{error:?}");
    };
    for named in [
        "1 AEAD_AES_128_GCM",
        "2 F8_128_HMAC_SHA1_80",
        "3 AES_CM_128_HMAC_SHA1_80 (MKI)",
        "4 AES_CM_128_HMAC_SHA1_80",
    ] {
        assert!(reason.contains(named), "{reason}");
    }
    assert!(
        !error.to_string().contains(KEY_A),
        "no key material in logs"
    );
    assert_eq!(
        error.warning_header(),
        "306 hotline \"Attribute not understood\""
    );
    // Without any a=crypto line at all.
    let bare = answer(
        "m=audio 5000 RTP/SAVP 0\r\n",
        policy(MediaEncryption::Required, true),
    )
    .unwrap_err();
    assert!(
        matches!(&bare, NegotiationError::NoAcceptableCrypto { reason } if reason == "no a=crypto line"),
        "{bare:?}"
    );
}

#[test]
fn savp_is_refused_when_encryption_is_off_or_signalling_insecure() {
    let off = answer(&savp_offer(), policy(MediaEncryption::Off, true)).unwrap_err();
    assert_eq!(
        off,
        NegotiationError::IncompatibleTransport {
            proto: "RTP/SAVP".into()
        }
    );
    assert_eq!(off.warning_code(), 302);
    for encryption in [MediaEncryption::Optional, MediaEncryption::Required] {
        let error = answer(&savp_offer(), policy(encryption, false)).unwrap_err();
        assert_eq!(error, NegotiationError::KeysNeedSecureSignalling);
        assert_eq!(
            error.warning_header(),
            "399 hotline \"SRTP keys only over TLS\""
        );
    }
}

#[test]
fn required_refuses_plain_offers() {
    let plain = "m=audio 5000 RTP/AVP 0\r\n";
    let error = answer(plain, policy(MediaEncryption::Required, true)).unwrap_err();
    assert_eq!(
        error,
        NegotiationError::EncryptionRequired {
            proto: "RTP/AVP".into()
        }
    );
    assert_eq!(
        error.warning_header(),
        "399 hotline \"Media encryption required\""
    );
    assert_eq!(
        answer(plain, policy(MediaEncryption::Required, false)).unwrap_err(),
        NegotiationError::KeysNeedSecureSignalling
    );
    // Optional takes the plain offer as it is.
    let (negotiated, text) = answer(plain, policy(MediaEncryption::Optional, true)).unwrap();
    assert_eq!(negotiated.srtp, None);
    assert!(crypto_lines(&text).is_empty());
}

#[test]
fn best_effort_avp_with_crypto_is_srtp_when_allowed_and_plain_otherwise() {
    let offer =
        format!("m=audio 5000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}\r\n");
    for encryption in [MediaEncryption::Optional, MediaEncryption::Required] {
        let (negotiated, text) = answer(&offer, policy(encryption, true)).unwrap();
        assert!(negotiated.srtp.is_some());
        assert!(text.contains("m=audio 40000 RTP/AVP 0\r\n"), "{text}");
        assert_eq!(crypto_lines(&text).len(), 1, "{text}");
    }
    for plain in [
        policy(MediaEncryption::Off, true),
        policy(MediaEncryption::Off, false),
        policy(MediaEncryption::Optional, false),
    ] {
        let (negotiated, text) = answer(&offer, plain).unwrap();
        assert_eq!(negotiated.srtp, None, "{plain:?}");
        assert!(
            crypto_lines(&text).is_empty(),
            "keys never go out in the clear"
        );
    }
    let unusable = "m=audio 5000 RTP/AVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:x\r\n";
    let (negotiated, _) = answer(unusable, policy(MediaEncryption::Optional, true)).unwrap();
    assert_eq!(negotiated.srtp, None, "optional falls back to plain");
    assert!(matches!(
        answer(unusable, policy(MediaEncryption::Required, true)),
        Err(NegotiationError::NoAcceptableCrypto { .. })
    ));
}

#[test]
fn with_both_transports_offered_the_first_we_can_take_wins() {
    let offer = format!("{}m=audio 5002 RTP/AVP 0\r\n", savp_offer());
    let (negotiated, text) = answer(&offer, policy(MediaEncryption::Optional, true)).unwrap();
    assert!(negotiated.srtp.is_some());
    assert_eq!(negotiated.remote_rtp.unwrap().port(), 5000);
    assert!(text.contains("m=audio 0 RTP/AVP 0\r\n"), "{text}");
    // Off or insecure: the plain stream.
    for plain in [
        policy(MediaEncryption::Off, false),
        policy(MediaEncryption::Optional, false),
    ] {
        let (negotiated, text) = answer(&offer, plain).unwrap();
        assert_eq!(negotiated.srtp, None);
        assert_eq!(negotiated.remote_rtp.unwrap().port(), 5002);
        assert!(text.contains("m=audio 0 RTP/SAVP 8\r\n"), "{text}");
        assert!(crypto_lines(&text).is_empty());
    }
}

#[test]
fn security_refusals_beat_codec_and_transport_ones() {
    let offer = format!(
        "m=audio 5000 RTP/AVP 18\r\nm=audio 5002 UDP/TLS/RTP/SAVPF 0\r\n{}",
        savp_offer()
    );
    assert_eq!(
        answer(&offer, policy(MediaEncryption::Optional, false)).unwrap_err(),
        NegotiationError::KeysNeedSecureSignalling
    );
    // Off: the SAVP stream is a foreign transport, and the codec mismatch is more specific.
    assert_eq!(
        answer(&offer, policy(MediaEncryption::Off, false))
            .unwrap_err()
            .warning_code(),
        305
    );
}

#[test]
fn our_offer_follows_the_policy() {
    let mut rng = rng();
    assert_eq!(SrtpPolicy::OFF.offer(&mut rng).unwrap(), SrtpOffer::plain());
    assert_eq!(
        policy(MediaEncryption::Optional, false)
            .offer(&mut rng)
            .unwrap(),
        SrtpOffer::plain()
    );
    assert_eq!(
        policy(MediaEncryption::Required, false).offer(&mut rng),
        Err(NegotiationError::KeysNeedSecureSignalling)
    );
    let optional = policy(MediaEncryption::Optional, true)
        .offer(&mut rng)
        .unwrap();
    let text = offer_with(&local(), &[], &optional);
    assert!(text.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{text}");
    let lines = crypto_lines(&text);
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert!(lines[1].starts_with("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"));
    let required = policy(MediaEncryption::Required, true)
        .offer(&mut rng)
        .unwrap();
    assert!(required.savp);
    assert_ne!(
        required.crypto[0], optional.crypto[0],
        "fresh keys per offer"
    );
    let text = offer_with(&local(), &[Codec::Pcma], &required);
    assert!(text.contains("m=audio 40000 RTP/SAVP 8 101\r\n"), "{text}");
    // Our offer parses back and is answerable.
    SessionDescription::parse(text.as_bytes()).expect("our offer parses");
}

/// Our offer, answered by a peer running the same code, read back: both sides hold mirrored
/// keys, and what one protects the other unprotects.
#[test]
fn offer_answer_round_trip_keys_a_working_srtp_pair() {
    let mut rng = rng();
    for encryption in [MediaEncryption::Optional, MediaEncryption::Required] {
        let ours = policy(encryption, true).offer(&mut rng).unwrap();
        let offer_text = offer_with(&local(), &[], &ours);
        let offer = SessionDescription::parse(offer_text.as_bytes()).unwrap();
        let (theirs, answer_text) =
            answer_with(&offer, &local(), policy(encryption, true), &mut rng).unwrap();
        let answer = SessionDescription::parse(answer_text.as_bytes()).unwrap();
        let agreed = parse_answer_with(&[], &ours, &answer).unwrap();
        let (ours_keys, their_keys) = (agreed.srtp.unwrap(), theirs.srtp.unwrap());
        assert_eq!(ours_keys.local, their_keys.remote);
        assert_eq!(ours_keys.remote, their_keys.local);
        assert_eq!(ours_keys.profile, SrtpProfile::Aes128CmHmacSha1_80);

        let mut sender = SrtpSender::new(ours_keys.profile, &ours_keys.local);
        let mut receiver = SrtpReceiver::new(their_keys.profile, &their_keys.remote);
        let mut packet = [0u8; 12 + 160 + 10];
        packet[0] = 0x80;
        packet[12..172].fill(0xD5);
        let len = sender.protect(&mut packet, 172).unwrap();
        assert_ne!(&packet[12..172], &[0xD5; 160][..]);
        assert_eq!(receiver.unprotect(&mut packet[..len]), Ok(172));
        assert_eq!(&packet[12..172], &[0xD5; 160][..]);
    }
}

#[test]
fn answers_to_our_offers_are_checked() {
    let mut rng = rng();
    let required = policy(MediaEncryption::Required, true)
        .offer(&mut rng)
        .unwrap();
    let optional = policy(MediaEncryption::Optional, true)
        .offer(&mut rng)
        .unwrap();
    let check = |ours: &SrtpOffer, media: &str| parse_answer_with(&[], ours, &sdp(media));

    // Tag 2 answers our 32-bit line.
    let answered = check(
        &required,
        &format!(
            "m=audio 6000 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}\r\n"
        ),
    )
    .unwrap()
    .srtp
    .unwrap();
    assert_eq!(answered.profile, SrtpProfile::Aes128CmHmacSha1_32);
    assert_eq!(Some(&answered.local), required.crypto[1].master_key());

    let wrong_tag = check(
        &required,
        &format!(
            "m=audio 6000 RTP/SAVP 0\r\na=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}\r\n"
        ),
    );
    assert!(matches!(
        wrong_tag,
        Err(NegotiationError::NoAcceptableCrypto { .. })
    ));
    let keyless = check(&required, "m=audio 6000 RTP/SAVP 0\r\n");
    assert!(matches!(
        keyless,
        Err(NegotiationError::NoAcceptableCrypto { .. })
    ));
    let downgraded = check(&required, "m=audio 6000 RTP/AVP 0\r\n");
    assert_eq!(downgraded.unwrap_err().warning_code(), 302);

    // Best effort: a plain answer is plain RTP, a crypto answer is SRTP, a bad one is refused.
    assert_eq!(
        check(&optional, "m=audio 6000 RTP/AVP 0\r\n").unwrap().srtp,
        None
    );
    let taken = check(
        &optional,
        &format!("m=audio 6000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}\r\n"),
    );
    assert!(taken.unwrap().srtp.is_some());
    let two_lines = check(
        &optional,
        &format!(
            "m=audio 6000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}\r\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}\r\n"
        ),
    );
    assert!(matches!(
        two_lines,
        Err(NegotiationError::NoAcceptableCrypto { .. })
    ));

    // A plain offer ignores stray crypto and refuses SAVP.
    let plain = SrtpOffer::plain();
    assert_eq!(
        check(
            &plain,
            &format!(
                "m=audio 6000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}\r\n"
            ),
        )
        .unwrap()
        .srtp,
        None
    );
    assert_eq!(
        check(&plain, "m=audio 6000 RTP/SAVP 0\r\n")
            .unwrap_err()
            .warning_code(),
        302
    );
}

#[test]
fn a_repeated_line_keeps_our_key_and_a_new_peer_key_gets_a_new_one() {
    let secure = policy(MediaEncryption::Optional, true);
    let (first, first_text) = answer(&savp_offer(), secure).unwrap();
    let current = first.srtp.clone().unwrap();
    let reanswer = |media: &str, seed: u64| {
        crate::sdp::reanswer_with(
            &sdp(media),
            &local(),
            secure,
            Some(&current),
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap()
    };
    // Same tag, suite and key offered again (a hold, a new address): nothing changes.
    let (kept, kept_text) = reanswer(&savp_offer(), 99);
    assert_eq!(kept.srtp.as_ref(), Some(&current));
    assert_eq!(crypto_lines(&kept_text), crypto_lines(&first_text));
    // The peer re-keys: so do we.
    let rekeyed = savp_offer().replace(KEY_A, KEY_B);
    let (new, _) = reanswer(&rekeyed, 99);
    let new = new.srtp.unwrap();
    assert_ne!(new.local, current.local);
    assert_ne!(new.remote, current.remote);
    // The peer picks another suite first: a new key too.
    let swapped =
        format!("m=audio 5000 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_A}\r\n");
    assert_ne!(reanswer(&swapped, 99).0.srtp.unwrap().local, current.local);
}
