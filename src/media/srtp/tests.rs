//! Known answers (RFC 3711 Appendix B.2 and B.3, libsrtp) and the sender/receiver behaviour:
//! ROC across the sequence number wrap, tag checks, replay window.

use super::context::{estimate_index, rtp_header_len};
use super::kdf;
use super::*;

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    hex::decode(text).expect("test hex")
}

fn rfc_master_key() -> MasterKey {
    let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    MasterKey::new(
        key.try_into().expect("16 bytes"),
        salt.try_into().expect("14 bytes"),
    )
}

/// An RTP packet: V=2, PT 0, `seq`, SSRC, `payload_len` bytes of a pattern; room for the tag.
fn rtp_packet(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(31) ^ seq as u8));
    packet
}

fn protect(sender: &mut SrtpSender, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + MAX_TAG_LEN, 0);
    let len = sender.protect(&mut buf, plain.len()).expect("protect");
    buf.truncate(len);
    buf
}

fn pair(profile: SrtpProfile) -> (SrtpSender, SrtpReceiver) {
    let master = MasterKey::from_bytes(&[7u8; MASTER_KEY_SALT_LEN]);
    (
        SrtpSender::new(profile, &master),
        SrtpReceiver::new(profile, &master),
    )
}

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let session_key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C")
        .try_into()
        .expect("16 bytes");
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")
        .try_into()
        .expect("14 bytes");
    let iv = kdf::packet_iv(&salt, 0, 0);
    assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));

    const BLOCKS: usize = 65282;
    let mut keystream = vec![0u8; BLOCKS * 16];
    kdf::apply_keystream(&kdf::new_cipher(&session_key), &iv, &mut keystream);
    let block = |n: usize| keystream[n * 16..(n + 1) * 16].to_vec();
    assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

#[test]
fn rfc3711_b3_key_derivation() {
    let master = rfc_master_key();
    let cipher = kdf::new_cipher(master.key());

    let mut encryption_key = [0u8; 16];
    kdf::derive(
        &cipher,
        master.salt(),
        kdf::LABEL_ENCRYPTION,
        &mut encryption_key,
    );
    assert_eq!(
        encryption_key.to_vec(),
        hex("C61E7A93744F39EE10734AFE3FF7A087")
    );

    let mut salt = [0u8; 14];
    kdf::derive(&cipher, master.salt(), kdf::LABEL_SALT, &mut salt);
    assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));

    // The RFC walks through a 94-octet auth key; HMAC-SHA1 uses its first 20.
    let mut auth_key = [0u8; 94];
    kdf::derive(
        &cipher,
        master.salt(),
        kdf::LABEL_AUTHENTICATION,
        &mut auth_key,
    );
    assert_eq!(
        auth_key.to_vec(),
        hex(
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
        )
    );

    let keys = kdf::derive_session_keys(&master);
    assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(
        keys.auth_key.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

/// libsrtp's own known answer (srtp_driver.c): the RFC master key, SSRC 0xCAFEBABE, SEQ 0x1234.
#[test]
fn libsrtp_reference_packet_80() {
    let plain = hex("800f1234decafbadcafebabe abababababababababababababababab");
    let expected =
        hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    let master = rfc_master_key();
    let mut sender = SrtpSender::new(SrtpProfile::Aes128CmHmacSha1_80, &master);
    assert_eq!(protect(&mut sender, &plain), expected);

    let mut receiver = SrtpReceiver::new(SrtpProfile::Aes128CmHmacSha1_80, &master);
    let mut buf = expected.clone();
    let len = receiver.unprotect(&mut buf).expect("unprotect");
    assert_eq!(&buf[..len], &plain[..]);
}

/// Packets protected by libsrtp 2 (through Python's pylibsrtp) after 65534 and 65535, so ROC 1:
/// the `_32` one also has a CSRC and a header extension, which stay in the clear.
#[test]
fn libsrtp_cross_check_after_wrap_both_suites() {
    let master = MasterKey::from_slice(&(0x40..0x40 + 30).collect::<Vec<u8>>()).expect("30");
    let payload = "030a11181f262d343b424950575e656c737a81888f969da4";
    let cases = [
        (
            SrtpProfile::Aes128CmHmacSha1_80,
            "800000000000000012345678",
            "5ee13c83e5e86375f45010b1924a46ea2a4a656156d0aa96 6cca6020b01dc35bdb20",
        ),
        (
            SrtpProfile::Aes128CmHmacSha1_32,
            "91000000000000001234567801020304bede000110aa0000",
            "5ee13c83e5e86375f45010b1924a46ea2a4a656156d0aa96 e70ae504",
        ),
    ];
    for (profile, header, protected_payload) in cases {
        let mut sender = SrtpSender::new(profile, &master);
        let mut receiver = SrtpReceiver::new(profile, &master);
        for seq in [65534u16, 65535, 0] {
            let mut plain = hex(header);
            plain[2..4].copy_from_slice(&seq.to_be_bytes());
            plain[4..8].copy_from_slice(&(160 * u32::from(seq)).to_be_bytes());
            plain.extend(hex(payload));
            let mut srtp = protect(&mut sender, &plain);
            if seq == 0 {
                assert_eq!(
                    srtp,
                    hex(&format!("{header}{protected_payload}")),
                    "{profile}"
                );
            }
            let len = receiver.unprotect(&mut srtp).expect("unprotect");
            assert_eq!(&srtp[..len], &plain[..], "{profile}");
        }
    }
}

#[test]
fn round_trip_across_sequence_wrap_both_suites() {
    for profile in SrtpProfile::ALL {
        let (mut sender, mut receiver) = pair(profile);
        let mut seq = 65_500u16;
        for _ in 0..100 {
            let plain = rtp_packet(seq, 0xdead_beef, 160);
            let srtp = protect(&mut sender, &plain);
            assert_eq!(srtp.len(), plain.len() + profile.tag_len());
            assert_ne!(srtp[12..plain.len()], plain[12..], "payload is encrypted");
            assert_eq!(srtp[..12], plain[..12], "header stays in the clear");
            let mut buf = srtp.clone();
            let len = receiver.unprotect(&mut buf).expect("unprotect");
            assert_eq!(&buf[..len], &plain[..]);
            seq = seq.wrapping_add(1);
        }
    }
}

#[test]
fn roc_makes_the_same_sequence_number_differ_after_wrap() {
    let (mut sender, _) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let first = protect(&mut sender, &rtp_packet(5, 1, 40));
    for seq in (6..=u16::MAX).step_by(1000).chain([u16::MAX, 0, 4]) {
        protect(&mut sender, &rtp_packet(seq, 1, 40));
    }
    // Same plaintext and SEQ, ROC 0 then 1: different keystream and tag.
    let second = protect(&mut sender, &rtp_packet(5, 1, 40));
    assert_ne!(first, second);
}

#[test]
fn tampered_packet_fails_authentication_and_is_left_encrypted() {
    for profile in SrtpProfile::ALL {
        let (mut sender, mut receiver) = pair(profile);
        let srtp = protect(&mut sender, &rtp_packet(100, 9, 160));
        for position in [1, 3, 11, 12, 100, srtp.len() - 1] {
            let mut buf = srtp.clone();
            buf[position] ^= 0x01;
            assert_eq!(
                receiver.unprotect(&mut buf),
                Err(SrtpError::AuthenticationFailed),
                "{profile} byte {position}"
            );
            buf[position] ^= 0x01;
            assert_eq!(buf, srtp, "a rejected packet is not decrypted");
        }
        // The untouched packet is still accepted: failures changed no state.
        let mut buf = srtp.clone();
        assert!(receiver.unprotect(&mut buf).is_ok());
    }
}

#[test]
fn wrong_key_fails_authentication() {
    let (mut sender, _) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let other = MasterKey::from_bytes(&[8u8; MASTER_KEY_SALT_LEN]);
    let mut receiver = SrtpReceiver::new(SrtpProfile::Aes128CmHmacSha1_80, &other);
    let mut buf = protect(&mut sender, &rtp_packet(1, 1, 160));
    assert_eq!(
        receiver.unprotect(&mut buf),
        Err(SrtpError::AuthenticationFailed)
    );
}

#[test]
fn replayed_packet_is_refused() {
    let (mut sender, mut receiver) = pair(SrtpProfile::Aes128CmHmacSha1_32);
    let srtp = protect(&mut sender, &rtp_packet(10, 3, 160));
    let mut buf = srtp.clone();
    receiver.unprotect(&mut buf).expect("first copy");
    let mut buf = srtp.clone();
    assert_eq!(
        receiver.unprotect(&mut buf),
        Err(SrtpError::Replayed { index: 10 })
    );
    assert_eq!(buf, srtp);
}

#[test]
fn out_of_order_within_window_accepted_once_and_too_old_refused() {
    let (mut sender, mut receiver) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let packets: Vec<Vec<u8>> = (0..300u16)
        .map(|seq| protect(&mut sender, &rtp_packet(seq, 3, 20)))
        .collect();
    for seq in [0usize, 1, 2, 200] {
        receiver
            .unprotect(&mut packets[seq].clone())
            .expect("in order");
    }
    // 150 and 73 are behind 200 but inside the 128-packet window; 72 is exactly outside it.
    for seq in [150usize, 199, 73] {
        receiver
            .unprotect(&mut packets[seq].clone())
            .expect("late but in window");
        assert_eq!(
            receiver.unprotect(&mut packets[seq].clone()),
            Err(SrtpError::Replayed { index: seq as u64 })
        );
    }
    assert_eq!(
        receiver.unprotect(&mut packets[72].clone()),
        Err(SrtpError::TooOld { index: 72 })
    );
    assert_eq!(
        receiver.unprotect(&mut packets[2].clone()),
        Err(SrtpError::TooOld { index: 2 })
    );
    // A jump far ahead clears the window; the old newest is now too old.
    receiver.unprotect(&mut packets[299].clone()).expect("jump");
    assert_eq!(
        receiver.unprotect(&mut packets[200].clone()),
        Err(SrtpError::Replayed { index: 200 })
    );
    assert_eq!(
        receiver.unprotect(&mut packets[171].clone()),
        Err(SrtpError::TooOld { index: 171 })
    );
    receiver
        .unprotect(&mut packets[172].clone())
        .expect("edge of window");
}

#[test]
fn late_packet_from_before_the_wrap_uses_the_previous_roc() {
    let (mut sender, mut receiver) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let before = protect(&mut sender, &rtp_packet(65_530, 4, 20));
    let after: Vec<Vec<u8>> = [65_531u16, 65_535, 0, 3]
        .iter()
        .map(|&seq| protect(&mut sender, &rtp_packet(seq, 4, 20)))
        .collect();
    receiver.unprotect(&mut after[0].clone()).expect("65531");
    receiver.unprotect(&mut after[3].clone()).expect("3, ROC 1");
    receiver
        .unprotect(&mut before.clone())
        .expect("65530, ROC 0, late");
    receiver
        .unprotect(&mut after[2].clone())
        .expect("0, ROC 1, late");
    receiver
        .unprotect(&mut after[1].clone())
        .expect("65535, ROC 0, late");
}

#[test]
fn each_ssrc_has_its_own_roc_and_window() {
    let (mut sender_a, mut receiver) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let (mut sender_b, _) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let a = protect(&mut sender_a, &rtp_packet(1000, 0xaaaa, 20));
    let b = protect(&mut sender_b, &rtp_packet(40_000, 0xbbbb, 20));
    receiver.unprotect(&mut a.clone()).expect("a");
    receiver.unprotect(&mut b.clone()).expect("b");
    assert!(matches!(
        receiver.unprotect(&mut a.clone()),
        Err(SrtpError::Replayed { .. })
    ));
    let a2 = protect(&mut sender_a, &rtp_packet(1001, 0xaaaa, 20));
    receiver.unprotect(&mut a2.clone()).expect("a continues");
}

#[test]
fn sender_refuses_to_reuse_an_index() {
    let (mut sender, _) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    protect(&mut sender, &rtp_packet(7, 1, 20));
    let mut buf = rtp_packet(7, 1, 20);
    let len = buf.len();
    buf.resize(len + MAX_TAG_LEN, 0);
    assert_eq!(
        sender.protect(&mut buf, len),
        Err(SrtpError::IndexNotIncreasing { index: 7, last: 7 })
    );
    // A new SSRC is a new stream with its own indexes.
    protect(&mut sender, &rtp_packet(7, 2, 20));
}

#[test]
fn buffer_and_header_errors() {
    let (mut sender, mut receiver) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let mut plain = rtp_packet(1, 1, 160);
    let len = plain.len();
    assert_eq!(
        sender.protect(&mut plain, len),
        Err(SrtpError::BufferTooSmall {
            needed: len + 10,
            capacity: len
        })
    );
    let mut v1 = rtp_packet(1, 1, 20);
    v1[0] = 0x40;
    v1.extend([0; 10]);
    assert_eq!(sender.protect(&mut v1, 32), Err(SrtpError::NotRtp));
    let mut csrc = rtp_packet(1, 1, 4);
    csrc[0] |= 0x02; // two CSRCs need 8 bytes, there are 4.
    csrc.extend([0; 10]);
    assert_eq!(sender.protect(&mut csrc, 16), Err(SrtpError::BadHeader));

    assert_eq!(
        receiver.unprotect(&mut [0x80; 21]),
        Err(SrtpError::TooShort { len: 21 })
    );
    // Header only, no payload: valid SRTP (the tag still covers the header).
    let mut empty = protect(&mut sender, &rtp_packet(2, 1, 0));
    assert_eq!(receiver.unprotect(&mut empty), Ok(12));
}

#[test]
fn protect_vec_appends_the_tag_and_leaves_the_vec_alone_on_error() {
    let (mut sender, mut receiver) = pair(SrtpProfile::Aes128CmHmacSha1_32);
    let plain = rtp_packet(3, 3, 160);
    let mut packet = Vec::with_capacity(plain.len() + MAX_TAG_LEN);
    packet.extend_from_slice(&plain);
    let capacity = packet.capacity();
    sender.protect_vec(&mut packet).expect("protect");
    assert_eq!(packet.len(), plain.len() + 4);
    assert_eq!(packet.capacity(), capacity);
    assert_eq!(receiver.unprotect(&mut packet), Ok(plain.len()));

    let mut short = vec![0x80, 0, 0];
    assert_eq!(
        sender.protect_vec(&mut short),
        Err(SrtpError::TooShort { len: 3 })
    );
    assert_eq!(short, [0x80, 0, 0]);
}

#[test]
fn index_estimate_follows_rfc3711_appendix_a() {
    assert_eq!(estimate_index(10, 11), Ok(11));
    assert_eq!(estimate_index(65_535, 0), Ok(65_536));
    assert_eq!(estimate_index(65_536, 65_535), Ok(65_535));
    assert_eq!(estimate_index(0x1_0005, 0xfff0), Ok(0xfff0));
    assert_eq!(estimate_index(100, 100 + 32_767), Ok(32_867));
    assert_eq!(estimate_index(40_000, 7_232), Ok(7_232));
    assert_eq!(
        estimate_index(10, 65_530),
        Err(SrtpError::TooOld { index: 0 })
    );
    assert_eq!(
        estimate_index((1 << 48) - 1, 0),
        Err(SrtpError::IndexExhausted)
    );
}

#[test]
fn header_length_counts_csrcs_and_extension() {
    assert_eq!(rtp_header_len(&rtp_packet(1, 1, 0)), Ok(12));
    let with_ext = hex("91000000000000001234567801020304bede000110aa0000ffff");
    assert_eq!(rtp_header_len(&with_ext), Ok(24));
    assert_eq!(rtp_header_len(&with_ext[..22]), Err(SrtpError::BadHeader));
}

#[test]
fn profiles_and_master_key_helpers() {
    assert_eq!(
        SrtpProfile::from_sdes_name("AES_CM_128_HMAC_SHA1_32"),
        Some(SrtpProfile::Aes128CmHmacSha1_32)
    );
    assert_eq!(SrtpProfile::from_sdes_name("aes_cm_128_hmac_sha1_80"), None);
    let master = rfc_master_key();
    assert_eq!(MasterKey::from_bytes(&master.to_bytes()), master);
    assert_eq!(MasterKey::from_slice(&[0; 29]), None);
    assert_eq!(format!("{master:?}"), "MasterKey(..)");
    let (sender, _) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    assert!(!format!("{sender:?}").contains("07070707"));
}
