//! SRTP in the offer/answer exchange (issue 16): a leg's `media_encryption` policy and whether
//! its signalling is secure decide which transport and RFC 4568 `a=crypto` lines we offer, which
//! offers we answer (and how), and whether an answer to our offer is acceptable.
//!
//! Keys are only ever sent or taken over secure signalling (TLS): SDES carries them in the clear
//! inside the SDP (RFC 4568 §8.3). Whether the signalling is secure is an input here, decided by
//! the user agent from the peer's transport.
//!
//! Besides `RTP/SAVP` with `a=crypto` we take "best-effort" SRTP: `RTP/AVP` with `a=crypto`
//! lines, as Asterisk's `media_encryption_optimistic` and baresip's `mediaenc=srtp` offer it. An
//! `optional` leg offers exactly that (plain phones ignore the lines and answer plain RTP); a
//! `required` leg offers `RTP/SAVP`. RFC 5939 capability negotiation is not supported.

use rand::RngCore;

use super::crypto::{
    accept_answer_crypto, answer_media_crypto, crypto_attributes, offer_crypto, CryptoAttribute,
    SdesKeys, CRYPTO_ATTRIBUTE,
};
use super::{MediaDescription, NegotiationError};
use crate::media::srtp::SrtpProfile;

/// Transport of an SRTP stream keyed by SDES.
pub const RTP_SAVP: &str = "RTP/SAVP";
/// Plain RTP (RFC 3551).
pub const RTP_AVP: &str = "RTP/AVP";

/// A routing group's or trunk's `media_encryption`: whether its legs use SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaEncryption {
    /// Plain RTP only; `RTP/SAVP` offers get 488.
    #[default]
    Off,
    /// SRTP when the peer takes it (and the signalling is secure), plain RTP otherwise.
    Optional,
    /// SRTP or no call: plain offers, and any offer over insecure signalling, get 488.
    Required,
}

impl MediaEncryption {
    /// The policy a `media_encryption` value names.
    pub fn parse(text: &str) -> Option<MediaEncryption> {
        match text {
            "off" => Some(MediaEncryption::Off),
            "optional" => Some(MediaEncryption::Optional),
            "required" => Some(MediaEncryption::Required),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaEncryption::Off => "off",
            MediaEncryption::Optional => "optional",
            MediaEncryption::Required => "required",
        }
    }
}

impl std::fmt::Display for MediaEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What decides SRTP for one leg's negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SrtpPolicy {
    pub encryption: MediaEncryption,
    /// The leg's signalling is confidential (SIP over TLS), so SDES keys may travel in it.
    pub secure_signalling: bool,
}

impl SrtpPolicy {
    /// Plain RTP only.
    pub const OFF: SrtpPolicy = SrtpPolicy {
        encryption: MediaEncryption::Off,
        secure_signalling: false,
    };

    pub fn new(encryption: MediaEncryption, secure_signalling: bool) -> SrtpPolicy {
        SrtpPolicy {
            encryption,
            secure_signalling,
        }
    }

    /// Whether SDES keys may be offered or accepted: encryption wanted and signalling secure.
    pub fn keys_allowed(self) -> bool {
        self.encryption != MediaEncryption::Off && self.secure_signalling
    }

    /// Our offer's transport and `a=crypto` lines (fresh keys from `rng`, both suites, 80-bit
    /// tag first). `required` over insecure signalling cannot be offered at all.
    pub fn offer(self, rng: &mut (impl RngCore + ?Sized)) -> Result<SrtpOffer, NegotiationError> {
        match self.encryption {
            MediaEncryption::Required if !self.secure_signalling => {
                Err(NegotiationError::KeysNeedSecureSignalling)
            }
            MediaEncryption::Off => Ok(SrtpOffer::plain()),
            _ if !self.secure_signalling => Ok(SrtpOffer::plain()),
            encryption => Ok(SrtpOffer {
                savp: encryption == MediaEncryption::Required,
                crypto: offer_crypto(&SrtpProfile::ALL, rng),
            }),
        }
    }
}

/// What our offer said about SRTP, kept to check the answer against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SrtpOffer {
    /// `RTP/SAVP` on the m-line (else `RTP/AVP`, with `crypto` as a best-effort offer).
    pub savp: bool,
    /// Our `a=crypto` lines with our keys; empty: plain RTP.
    pub crypto: Vec<CryptoAttribute>,
}

impl SrtpOffer {
    /// Plain RTP/AVP, no keys.
    pub fn plain() -> SrtpOffer {
        SrtpOffer::default()
    }

    /// The m-line transport.
    pub fn proto(&self) -> &'static str {
        if self.savp {
            RTP_SAVP
        } else {
            RTP_AVP
        }
    }
}

/// How one offered audio stream fails; the most specific reason across streams is reported.
#[derive(Debug)]
pub(super) struct StreamRefusal {
    /// Higher is more specific: 1 transport, 2 codec, 3 security.
    pub(super) rank: u8,
    pub(super) error: NegotiationError,
}

/// Whether we could carry this offered stream at all (before codecs): RTP/AVP always, RTP/SAVP
/// only when the policy wants encryption. Others are refused as a foreign transport.
pub(super) fn transport_usable(media: &MediaDescription, policy: SrtpPolicy) -> bool {
    media.is_rtp_avp() || (media.is_rtp_savp() && policy.encryption != MediaEncryption::Off)
}

/// The SRTP part of answering an offered stream whose transport and codec suit us: the keys and
/// our `a=crypto` line, or `None` for plain RTP. When the offered line taken is the one of
/// `current` (same tag, suite and peer key), our key of `current` is kept.
pub(super) fn answer_stream(
    media: &MediaDescription,
    policy: SrtpPolicy,
    current: Option<&SdesKeys>,
    rng: &mut (impl RngCore + ?Sized),
) -> Result<Option<(SdesKeys, CryptoAttribute)>, StreamRefusal> {
    let refuse = |error| StreamRefusal { rank: 3, error };
    let required = policy.encryption == MediaEncryption::Required;
    if (required || media.is_rtp_savp()) && !policy.secure_signalling {
        return Err(refuse(NegotiationError::KeysNeedSecureSignalling));
    }
    let takes_keys = policy.keys_allowed() && crypto_attributes(media).next().is_some();
    if !media.is_rtp_savp() && !takes_keys {
        // Plain RTP/AVP, or best-effort lines we may not take: plain unless SRTP is a must.
        return match required {
            true => Err(refuse(NegotiationError::EncryptionRequired {
                proto: media.proto.clone(),
            })),
            false => Ok(None),
        };
    }
    match answer_media_crypto(media, &SrtpProfile::ALL, rng) {
        Ok((keys, line)) => Ok(Some(keep_current(keys, line, current))),
        // Best-effort lines we cannot use leave an optional leg plain.
        Err(_) if !media.is_rtp_savp() && !required => Ok(None),
        Err(error) => Err(refuse(NegotiationError::NoAcceptableCrypto {
            reason: error.to_string(),
        })),
    }
}

/// The agreed keys and our line, with our key of `current` when the peer's side is unchanged.
fn keep_current(
    keys: SdesKeys,
    line: CryptoAttribute,
    current: Option<&SdesKeys>,
) -> (SdesKeys, CryptoAttribute) {
    match current {
        Some(current)
            if (current.tag, current.profile, &current.remote)
                == (keys.tag, keys.profile, &keys.remote) =>
        {
            let line = CryptoAttribute::new(line.tag, keys.profile, current.local.clone());
            (current.clone(), line)
        }
        _ => (keys, line),
    }
}

/// Checks the SRTP part of the peer's answer (its first m-line) against our offer: the keys in
/// use, or `None` for plain RTP.
pub(super) fn accept_answer(
    ours: &SrtpOffer,
    media: &MediaDescription,
) -> Result<Option<SdesKeys>, NegotiationError> {
    let foreign = || NegotiationError::IncompatibleTransport {
        proto: media.proto.clone(),
    };
    let savp_answered = media.is_rtp_savp();
    if savp_answered != ours.savp || !(media.is_rtp_avp() || savp_answered) {
        // RFC 3264 §6: the answer keeps the offered transport.
        return Err(foreign());
    }
    if ours.crypto.is_empty() {
        // A plain offer: stray a=crypto lines in the answer mean nothing.
        return Ok(None);
    }
    let answered: Vec<&str> = media
        .other_attributes
        .iter()
        .filter(|attribute| attribute.name == CRYPTO_ATTRIBUTE)
        .map(|attribute| attribute.value.as_deref().unwrap_or_default())
        .collect();
    if answered.is_empty() && !ours.savp {
        // A best-effort offer answered by a phone without SRTP.
        return Ok(None);
    }
    accept_answer_crypto(&ours.crypto, answered)
        .map(Some)
        .map_err(|error| NegotiationError::NoAcceptableCrypto {
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests;
