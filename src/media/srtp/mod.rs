//! SRTP (RFC 3711) for calls keyed with SDES (RFC 4568): the two suites we speak,
//! AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32, as one sending and one receiving crypto
//! context per call direction. Sans-I/O and in place: [`SrtpSender::protect`] encrypts an RTP
//! packet in the caller's buffer and appends the tag into its spare room, and
//! [`SrtpReceiver::unprotect`] checks the tag (constant time) and the replay window before it
//! decrypts in place. Keys are derived once (key derivation rate 0) and kept expanded, so a packet
//! costs no heap allocation. SRTCP and MKI are not supported.

mod context;
mod kdf;
#[cfg(test)]
mod tests;

use std::fmt;

pub use context::{SrtpReceiver, SrtpSender, REPLAY_WINDOW};

/// Master key length of both suites (AES-128).
pub const MASTER_KEY_LEN: usize = 16;
/// Master salt length of both suites (112 bits).
pub const MASTER_SALT_LEN: usize = 14;
/// Key and salt as carried together in an SDES `inline:` parameter.
pub const MASTER_KEY_SALT_LEN: usize = MASTER_KEY_LEN + MASTER_SALT_LEN;
/// Longest authentication tag of the suites we support; spare room `protect` may need.
pub const MAX_TAG_LEN: usize = 10;

/// An SRTP crypto suite (RFC 4568 §6.2): AES-128 counter mode with an HMAC-SHA1 tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// 80-bit tag; the suite every SDES endpoint must support.
    Aes128CmHmacSha1_80,
    /// 32-bit tag; saves 6 bytes a packet, weaker authentication.
    Aes128CmHmacSha1_32,
}

impl SrtpProfile {
    /// Both suites, strongest first: a sensible default preference.
    pub const ALL: [SrtpProfile; 2] = [
        SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfile::Aes128CmHmacSha1_32,
    ];

    /// Bytes of authentication tag appended to each packet.
    pub fn tag_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 10,
            SrtpProfile::Aes128CmHmacSha1_32 => 4,
        }
    }

    /// The suite name as written in `a=crypto`.
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpProfile::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite an `a=crypto` name stands for; names are case-sensitive (RFC 4568 §9.2).
    pub fn from_sdes_name(name: &str) -> Option<SrtpProfile> {
        SrtpProfile::ALL
            .into_iter()
            .find(|profile| profile.sdes_name() == name)
    }
}

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdes_name())
    }
}

/// A master key and master salt. `Debug` does not print them.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

impl MasterKey {
    pub fn new(key: [u8; MASTER_KEY_LEN], salt: [u8; MASTER_SALT_LEN]) -> MasterKey {
        MasterKey { key, salt }
    }

    /// Key followed by salt, the layout of an SDES `inline:` parameter.
    pub fn from_bytes(bytes: &[u8; MASTER_KEY_SALT_LEN]) -> MasterKey {
        let mut key = [0u8; MASTER_KEY_LEN];
        let mut salt = [0u8; MASTER_SALT_LEN];
        key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        MasterKey { key, salt }
    }

    /// Like [`MasterKey::from_bytes`]; `None` unless `bytes` is exactly 30 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<MasterKey> {
        let bytes: &[u8; MASTER_KEY_SALT_LEN] = bytes.try_into().ok()?;
        Some(MasterKey::from_bytes(bytes))
    }

    /// A fresh key and salt from `rng`, which must be a cryptographically secure generator.
    pub fn generate(rng: &mut (impl rand::RngCore + ?Sized)) -> MasterKey {
        let mut bytes = [0u8; MASTER_KEY_SALT_LEN];
        rng.fill_bytes(&mut bytes);
        MasterKey::from_bytes(&bytes)
    }

    /// Key followed by salt.
    pub fn to_bytes(&self) -> [u8; MASTER_KEY_SALT_LEN] {
        let mut bytes = [0u8; MASTER_KEY_SALT_LEN];
        bytes[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        bytes[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        bytes
    }

    pub fn key(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.key
    }

    pub fn salt(&self) -> &[u8; MASTER_SALT_LEN] {
        &self.salt
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Why a packet was not protected or not accepted. Nothing here carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("packet of {len} bytes is too short for an SRTP packet")]
    TooShort { len: usize },
    #[error("not an RTP version 2 packet")]
    NotRtp,
    #[error("RTP header (CSRCs or extension) runs past the end of the packet")]
    BadHeader,
    #[error("buffer of {capacity} bytes has no room for the {needed}-byte protected packet")]
    BufferTooSmall { needed: usize, capacity: usize },
    #[error("authentication tag mismatch")]
    AuthenticationFailed,
    #[error("packet index {index} was already received")]
    Replayed { index: u64 },
    #[error("packet index {index} is older than the replay window")]
    TooOld { index: u64 },
    #[error(
        "packet index {index} is not after the last one sent ({last}); the keystream would repeat"
    )]
    IndexNotIncreasing { index: u64, last: u64 },
    #[error("packet index space (2^48) exhausted; the stream needs new keys")]
    IndexExhausted,
}
