//! Tests for `a=crypto` parsing, writing and the SDES offer/answer helpers.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::media::srtp::{SrtpReceiver, SrtpSender};
use crate::sdp::SessionDescription;

/// 30 bytes 00..1d.
const KEY_0_TO_29: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
/// The key of the baresip/Asterisk documentation example.
const DOC_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn rng() -> StdRng {
    StdRng::seed_from_u64(4568)
}

fn key_0_to_29() -> MasterKey {
    MasterKey::from_slice(&(0u8..30).collect::<Vec<_>>()).expect("30 bytes")
}

#[test]
fn parses_a_plain_inline_line() {
    let line = CryptoAttribute::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29}"))
        .expect("parse");
    assert_eq!(line.tag, 1);
    assert_eq!(line.profile(), Some(SrtpProfile::Aes128CmHmacSha1_80));
    assert_eq!(line.master_key(), Some(&key_0_to_29()));
    assert!(line.session_params.is_empty());
}

#[test]
fn parses_lifetime_and_session_params() {
    let value = format!("2 AES_CM_128_HMAC_SHA1_32 inline:{DOC_KEY}|2^20 WSH=64 UNENCRYPTED_SRTCP");
    let line = CryptoAttribute::parse(&value).expect("parse");
    assert_eq!(line.tag, 2);
    assert_eq!(
        line.suite,
        CryptoSuite::Srtp(SrtpProfile::Aes128CmHmacSha1_32)
    );
    let KeyParams::Inline {
        master_key,
        lifetime,
    } = &line.key_params
    else {
        panic!("inline expected");
    };
    assert_eq!(
        hex::encode(master_key.to_bytes()),
        "59535f5f5f73656d63746c202829207b093232303b7d0a7d0a756e6c6573"
    );
    assert_eq!(lifetime.as_deref(), Some("2^20"));
    assert_eq!(line.session_params, ["WSH=64", "UNENCRYPTED_SRTCP"]);
    // Decimal lifetimes and a lower-case key method are accepted too.
    assert!(CryptoAttribute::parse(&format!(
        "3 AES_CM_128_HMAC_SHA1_80 INLINE:{DOC_KEY}|1048576"
    ))
    .is_ok());
}

#[test]
fn real_world_mki_lines_are_refused_clearly() {
    // baresip/Asterisk documentation and RFC 4568's own example both carry an MKI.
    for value in [
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{DOC_KEY}|2^20|1:4"),
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
            .to_owned(),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{DOC_KEY}|1:4"),
    ] {
        let error = CryptoAttribute::parse(&value).expect_err("MKI");
        assert_eq!(error, CryptoError::MkiUnsupported, "{value}");
        assert!(error.to_string().contains("MKI"));
    }
}

#[test]
fn unknown_suites_are_kept_verbatim() {
    let value = "1 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4;\
                 inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP";
    let line = CryptoAttribute::parse(value).expect("unknown suites parse");
    assert_eq!(
        line.suite,
        CryptoSuite::Unknown("F8_128_HMAC_SHA1_80".into())
    );
    assert_eq!(line.profile(), None);
    assert_eq!(line.master_key(), None);
    assert!(matches!(&line.key_params, KeyParams::Other(raw) if raw.ends_with("|2:4")));
    assert_eq!(line.session_params, ["FEC_ORDER=FEC_SRTP"]);
    assert_eq!(line.to_string(), value);

    let aes256 = "7 AES_256_CM_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let line = CryptoAttribute::parse(aes256).expect("parse");
    assert_eq!(line.suite.as_str(), "AES_256_CM_HMAC_SHA1_80");
    // Suite names are case-sensitive: a lower-case one is just unknown.
    let lower = format!("1 aes_cm_128_hmac_sha1_80 inline:{KEY_0_TO_29}");
    assert_eq!(
        CryptoAttribute::parse(&lower).expect("parse").profile(),
        None
    );
}

#[test]
fn malformed_lines_are_refused() {
    let suite = "AES_CM_128_HMAC_SHA1_80";
    let cases = [
        (String::new(), CryptoError::InvalidTag),
        (
            format!("x {suite} inline:{KEY_0_TO_29}"),
            CryptoError::InvalidTag,
        ),
        (
            format!("1234567890 {suite} inline:{KEY_0_TO_29}"),
            CryptoError::InvalidTag,
        ),
        ("1".to_owned(), CryptoError::MissingSuite),
        (format!("1 {suite}"), CryptoError::MissingKeyParams),
        (format!("1 {suite} {KEY_0_TO_29}"), CryptoError::NotInline),
        (
            format!("1 {suite} uri:{KEY_0_TO_29}"),
            CryptoError::NotInline,
        ),
        (
            format!("1 {suite} inline:{KEY_0_TO_29};inline:{DOC_KEY}"),
            CryptoError::SeveralKeys,
        ),
        (
            format!("1 {suite} inline:***notbase64***"),
            CryptoError::BadBase64,
        ),
        (
            format!("1 {suite} inline:"),
            CryptoError::KeyLength { len: 0 },
        ),
        (
            format!("1 {suite} inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw="),
            CryptoError::KeyLength { len: 29 },
        ),
        (
            format!("1 {suite} inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            CryptoError::KeyLength { len: 32 },
        ),
        (
            format!("1 {suite} inline:{KEY_0_TO_29}|2^x"),
            CryptoError::BadLifetime {
                found: "2^x".into(),
            },
        ),
        (
            format!("1 {suite} inline:{KEY_0_TO_29}|"),
            CryptoError::BadLifetime {
                found: String::new(),
            },
        ),
        (
            format!("1 {suite} inline:{KEY_0_TO_29}|2^20|2^20"),
            CryptoError::MkiUnsupported,
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(CryptoAttribute::parse(&value), Err(expected), "{value:?}");
    }
}

#[test]
fn errors_never_quote_the_key() {
    let value = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29}x");
    let error = CryptoAttribute::parse(&value).expect_err("bad");
    assert!(!error.to_string().contains(KEY_0_TO_29));
    assert!(!format!("{error:?}").contains(KEY_0_TO_29));
}

#[test]
fn format_then_parse_round_trips() {
    let mut rng = rng();
    for profile in SrtpProfile::ALL {
        let line = CryptoAttribute::new(5, profile, MasterKey::generate(&mut rng));
        let text = line.to_sdp_line();
        let value = text.strip_prefix("a=crypto:").expect("prefix");
        assert_eq!(CryptoAttribute::parse(value), Ok(line));
    }
    let value = format!("9 AES_CM_128_HMAC_SHA1_32 inline:{DOC_KEY}|2^31 WSH=128");
    let line = CryptoAttribute::parse(&value).expect("parse");
    assert_eq!(line.to_string(), value);
    assert_eq!(
        CryptoAttribute::new(1, SrtpProfile::Aes128CmHmacSha1_80, key_0_to_29()).to_sdp_line(),
        format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29}")
    );
}

#[test]
fn answer_picks_the_first_supported_line_in_offer_order() {
    let offered = [
        "1 AEAD_AES_256_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKis="
            .to_owned(),
        format!("2 AES_CM_128_HMAC_SHA1_80 inline:{DOC_KEY}|2^20|1:4"),
        format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29} UNENCRYPTED_SRTP"),
        format!("4 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29} KDR=1"),
        format!("5 AES_CM_128_HMAC_SHA1_32 inline:{KEY_0_TO_29} WSH=64"),
        format!("6 AES_CM_128_HMAC_SHA1_80 inline:{DOC_KEY}"),
    ];
    let (keys, answer) = answer_crypto(
        offered.iter().map(String::as_str),
        &SrtpProfile::ALL,
        &mut rng(),
    )
    .expect("answer");
    assert_eq!(keys.tag, 5);
    assert_eq!(keys.profile, SrtpProfile::Aes128CmHmacSha1_32);
    assert_eq!(keys.remote, key_0_to_29());
    assert_ne!(keys.local, keys.remote);
    assert_eq!(answer.tag, 5);
    assert_eq!(answer.profile(), Some(SrtpProfile::Aes128CmHmacSha1_32));
    assert_eq!(answer.master_key(), Some(&keys.local));
    assert!(answer.session_params.is_empty());

    // Supporting only _80 skips line 5 and takes line 6.
    let (keys, _) = answer_crypto(
        offered.iter().map(String::as_str),
        &[SrtpProfile::Aes128CmHmacSha1_80],
        &mut rng(),
    )
    .expect("answer");
    assert_eq!(
        (keys.tag, keys.profile),
        (6, SrtpProfile::Aes128CmHmacSha1_80)
    );
}

#[test]
fn answer_without_acceptable_line_says_what_was_offered() {
    assert_eq!(
        answer_crypto([], &SrtpProfile::ALL, &mut rng()),
        Err(SdesError::NoCrypto)
    );
    let mki = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{DOC_KEY}|2^20|1:4");
    let gcm = "2 AEAD_AES_128_GCM inline:whatever";
    let error = answer_crypto([mki.as_str(), gcm], &SrtpProfile::ALL, &mut rng())
        .expect_err("none acceptable");
    assert_eq!(
        error.to_string(),
        "no usable a=crypto line among: 1 AES_CM_128_HMAC_SHA1_80 (MKI), 2 AEAD_AES_128_GCM"
    );
    assert!(!error.to_string().contains(DOC_KEY));
}

#[test]
fn answer_from_a_parsed_savp_offer_keys_working_contexts() {
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
         m=audio 5004 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{DOC_KEY}|2^20\r\n\
         a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_0_TO_29}\r\n"
    );
    let offer = SessionDescription::parse(body.as_bytes()).expect("sdp");
    let media = &offer.media[0];
    assert_eq!(crypto_attributes(media).filter(Result::is_ok).count(), 2);
    let (keys, answer) = answer_media_crypto(media, &SrtpProfile::ALL, &mut rng()).expect("answer");
    assert_eq!(
        (keys.tag, keys.profile),
        (1, SrtpProfile::Aes128CmHmacSha1_80)
    );

    // Their sender (keyed with the offered key) reaches our receiver, and ours reaches theirs.
    let mut their_sender = SrtpSender::new(keys.profile, &keys.remote);
    let mut our_receiver = SrtpReceiver::new(keys.profile, &keys.remote);
    let answered_key = answer.master_key().expect("inline");
    let mut our_sender = SrtpSender::new(keys.profile, &keys.local);
    let mut their_receiver = SrtpReceiver::new(keys.profile, answered_key);
    for (sender, receiver) in [
        (&mut their_sender, &mut our_receiver),
        (&mut our_sender, &mut their_receiver),
    ] {
        let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        packet.extend([0xd5; 160]);
        sender.protect_vec(&mut packet).expect("protect");
        assert_eq!(receiver.unprotect(&mut packet), Ok(172));
    }
}

#[test]
fn offer_lines_and_answer_check() {
    let mut rng = rng();
    let offer = offer_crypto(&SrtpProfile::ALL, &mut rng);
    assert_eq!(offer.len(), 2);
    assert_eq!((offer[0].tag, offer[1].tag), (1, 2));
    assert_eq!(offer[0].profile(), Some(SrtpProfile::Aes128CmHmacSha1_80));
    assert_ne!(offer[0].master_key(), offer[1].master_key());

    // The peer answers our second line with its own key.
    let values: Vec<String> = offer.iter().map(ToString::to_string).collect();
    let (their_keys, their_answer) =
        answer_crypto([values[1].as_str()], &SrtpProfile::ALL, &mut rng).expect("answer");
    let answer_value = their_answer.to_string();
    let keys = accept_answer_crypto(&offer, [answer_value.as_str()]).expect("accept");
    assert_eq!(keys.tag, 2);
    assert_eq!(keys.profile, SrtpProfile::Aes128CmHmacSha1_32);
    assert_eq!(Some(&keys.local), offer[1].master_key());
    assert_eq!(keys.local, their_keys.remote);
    assert_eq!(keys.remote, their_keys.local);

    assert_eq!(
        accept_answer_crypto(&offer, []),
        Err(SdesError::AnswerLineCount { count: 0 })
    );
    assert_eq!(
        accept_answer_crypto(&offer, [answer_value.as_str(), answer_value.as_str()]),
        Err(SdesError::AnswerLineCount { count: 2 })
    );
    let wrong_suite = format!("1 AES_CM_128_HMAC_SHA1_32 inline:{KEY_0_TO_29}");
    let unknown_tag = format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29}");
    let unencrypted = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29} UNENCRYPTED_SRTP");
    for value in [wrong_suite, unknown_tag, unencrypted] {
        assert_eq!(
            accept_answer_crypto(&offer, [value.as_str()]),
            Err(SdesError::AnswerNotAcceptable),
            "{value}"
        );
    }
    let mki = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_0_TO_29}|1:4");
    assert_eq!(
        accept_answer_crypto(&offer, [mki.as_str()]),
        Err(SdesError::Invalid(CryptoError::MkiUnsupported))
    );
}
