//! The AES-128 counter-mode primitives of RFC 3711: the key derivation PRF (§4.3, key derivation
//! rate 0), the per-packet counter block (§4.1.1) and the keystream XOR, on a pre-expanded cipher.

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};
use aes::Aes128;

use super::{MasterKey, MASTER_SALT_LEN};

/// Session key labels (RFC 3711 §4.3.1).
pub(super) const LABEL_ENCRYPTION: u8 = 0x00;
pub(super) const LABEL_AUTHENTICATION: u8 = 0x01;
pub(super) const LABEL_SALT: u8 = 0x02;

/// HMAC-SHA1 session authentication key length for both suites (RFC 4568 §6.2).
pub(super) const AUTH_KEY_LEN: usize = 20;

/// AES-128 in counter mode over a borrowed, already expanded key: no key schedule per packet.
type Aes128CtrCore<'a> = ctr::CtrCore<&'a Aes128, ctr::flavors::Ctr128BE>;

/// The session keys of one SRTP stream.
pub(super) struct SessionKeys {
    pub cipher: Aes128,
    pub salt: [u8; MASTER_SALT_LEN],
    pub auth_key: [u8; AUTH_KEY_LEN],
}

/// Derives the session keys with key derivation rate 0 (RFC 3711 §4.3.1): `index DIV kdr` is 0.
pub(super) fn derive_session_keys(master: &MasterKey) -> SessionKeys {
    let master_cipher = new_cipher(master.key());
    let mut encryption_key = [0u8; 16];
    let mut salt = [0u8; MASTER_SALT_LEN];
    let mut auth_key = [0u8; AUTH_KEY_LEN];
    derive(
        &master_cipher,
        master.salt(),
        LABEL_ENCRYPTION,
        &mut encryption_key,
    );
    derive(&master_cipher, master.salt(), LABEL_SALT, &mut salt);
    derive(
        &master_cipher,
        master.salt(),
        LABEL_AUTHENTICATION,
        &mut auth_key,
    );
    SessionKeys {
        cipher: new_cipher(&encryption_key),
        salt,
        auth_key,
    }
}

pub(super) fn new_cipher(key: &[u8; 16]) -> Aes128 {
    Aes128::new(key.into())
}

/// PRF_n(k_master, x) with `x = key_id XOR master_salt` and `key_id = label || 0^48` (kdr 0):
/// AES-CM keystream from the IV `x * 2^16`, truncated to `out.len()` bytes.
pub(super) fn derive(
    master_cipher: &Aes128,
    master_salt: &[u8; MASTER_SALT_LEN],
    label: u8,
    out: &mut [u8],
) {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(master_salt);
    // key_id is 7 bytes, right-aligned against the 14-byte salt: the label lands on byte 7.
    iv[7] ^= label;
    out.fill(0);
    apply_keystream(master_cipher, &iv, out);
}

/// The counter block for a packet (RFC 3711 §4.1.1):
/// `IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)`, with `i` the 48-bit packet index.
pub(super) fn packet_iv(salt: &[u8; MASTER_SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(salt);
    for (byte, value) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *byte ^= value;
    }
    // The low 48 bits of the index, big-endian, in bytes 8..14.
    for (byte, value) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *byte ^= value;
    }
    iv
}

/// XORs `data` with the AES-CM keystream that starts at counter block `iv`.
pub(super) fn apply_keystream(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    let core = Aes128CtrCore::inner_iv_init(cipher, iv.into());
    StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
}
