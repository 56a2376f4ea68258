//! Where the user agent's SRTP decisions get their inputs (issue 16): whether a peer's
//! signalling is secure enough to carry SDES keys, and the generator the keys come from.
//!
//! The one place that says which transports are secure is [`transport_is_secure`]: an
//! exhaustive match, so a new transport (SIP over TLS) cannot be added without deciding here.
//! Everything else asks [`UserAgent::signalling_secure`].

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::UserAgent;
use crate::sdp::{MediaEncryption, SrtpPolicy};
use crate::sip::transport::{Peer, TransportKind};

/// Whether SIP over `transport` is confidential, so SDES keys (RFC 4568 §8.3) may go over it.
pub fn transport_is_secure(transport: TransportKind) -> bool {
    match transport {
        TransportKind::Udp | TransportKind::Tcp => false,
        TransportKind::Tls => true,
    }
}

/// Mixed into the call seed for the default (deterministic) key generator, so its stream is
/// not the one tags and Call-IDs come from.
const KEY_SEED_SALT: u64 = 0x5352_5450_4b45_5953;

/// The key generator of a user agent made with `seed`, until [`UserAgent::seed_key_generator`].
pub(super) fn default_key_generator(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ KEY_SEED_SALT)
}

impl UserAgent {
    /// Seeds the generator SRTP master keys come from. The service calls this once at start
    /// with 32 bytes from the operating system, so keys do not depend on the 64-bit call seed
    /// whose other outputs (tags, Call-IDs) are public; tests keep the deterministic default.
    pub fn seed_key_generator(&mut self, seed: [u8; 32]) {
        self.key_rng = StdRng::from_seed(seed);
    }

    /// Treats every peer's signalling as secure (SDES keys may be exchanged over UDP/TCP).
    /// For tests and lab set-ups only: the keys then travel in the clear.
    pub fn assume_secure_signalling(&mut self, assume: bool) {
        self.assume_secure_signalling = assume;
    }

    /// Whether signalling with `peer` is secure: its transport (TLS), or the lab override.
    pub fn signalling_secure(&self, peer: Peer) -> bool {
        self.assume_secure_signalling || transport_is_secure(peer.transport)
    }

    /// The SRTP inputs for a leg with `peer` under `encryption`.
    pub(super) fn srtp_policy(&self, peer: Peer, encryption: MediaEncryption) -> SrtpPolicy {
        SrtpPolicy::new(encryption, self.signalling_secure(peer))
    }
}
