//! SDES (RFC 4568) `a=crypto` attributes: parsing and writing the attribute value, picking the
//! first acceptable offered line for our answer, building our offer's lines and checking the
//! answer to them. Sans-I/O: fresh keys come from a caller-provided RNG. Only the two
//! AES_CM_128_HMAC_SHA1 suites with a single `inline:` key are usable; other suites are kept as
//! [`CryptoSuite::Unknown`] so negotiation can skip them. MKI is refused, lifetimes are ignored.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::MediaDescription;
use crate::media::srtp::{MasterKey, SrtpProfile};

/// Attribute name, as in `a=crypto:...`.
pub const CRYPTO_ATTRIBUTE: &str = "crypto";
/// RFC 4568 §9.1: a tag is 1 to 9 digits.
const MAX_TAG_DIGITS: usize = 9;
/// Most offered lines looked at, and most suites quoted in errors.
const MAX_CRYPTO_LINES: usize = 16;

/// The crypto-suite field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    Srtp(SrtpProfile),
    /// A suite we do not implement (AES_256_CM_..., AEAD_AES_128_GCM, F8_128_..., ...), verbatim.
    Unknown(String),
}

impl CryptoSuite {
    pub fn parse(name: &str) -> CryptoSuite {
        SrtpProfile::from_sdes_name(name)
            .map_or_else(|| CryptoSuite::Unknown(name.to_owned()), CryptoSuite::Srtp)
    }

    pub fn as_str(&self) -> &str {
        match self {
            CryptoSuite::Srtp(profile) => profile.sdes_name(),
            CryptoSuite::Unknown(name) => name,
        }
    }

    pub fn profile(&self) -> Option<SrtpProfile> {
        match self {
            CryptoSuite::Srtp(profile) => Some(*profile),
            CryptoSuite::Unknown(_) => None,
        }
    }
}

/// The key-params field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyParams {
    /// One `inline:<base64 key||salt>[|lifetime]` for a suite we know. The lifetime is kept for
    /// writing the line back but not enforced.
    Inline {
        master_key: MasterKey,
        lifetime: Option<String>,
    },
    /// Key parameters of an unknown suite, not interpreted.
    Other(String),
}

/// One parsed `a=crypto` value: `<tag> <crypto-suite> <key-params> [<session-param> ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub suite: CryptoSuite,
    pub key_params: KeyParams,
    /// Session parameters (`WSH=64`, `UNENCRYPTED_SRTCP`, ...), verbatim and in order.
    pub session_params: Vec<String>,
}

/// Why an `a=crypto` value could not be used. Never quotes key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("a=crypto tag must be 1 to 9 digits")]
    InvalidTag,
    #[error("a=crypto has no crypto-suite")]
    MissingSuite,
    #[error("a=crypto has no key parameters")]
    MissingKeyParams,
    #[error("a=crypto key method is not inline:")]
    NotInline,
    #[error("a=crypto carries several keys (only usable with MKI, which we do not support)")]
    SeveralKeys,
    #[error("a=crypto inline key is not valid base64")]
    BadBase64,
    #[error("a=crypto inline key is {len} bytes, the suite needs 30 (16 key + 14 salt)")]
    KeyLength { len: usize },
    #[error("a=crypto lifetime {found:?} is not a number or 2^number")]
    BadLifetime { found: String },
    #[error("a=crypto uses an MKI, which we do not support")]
    MkiUnsupported,
}

impl CryptoAttribute {
    /// A line for `profile` carrying `master_key`, with no lifetime or session parameters.
    pub fn new(tag: u32, profile: SrtpProfile, master_key: MasterKey) -> CryptoAttribute {
        CryptoAttribute {
            tag,
            suite: CryptoSuite::Srtp(profile),
            key_params: KeyParams::Inline {
                master_key,
                lifetime: None,
            },
            session_params: Vec::new(),
        }
    }

    /// Parses an attribute value, i.e. what follows `a=crypto:`.
    pub fn parse(value: &str) -> Result<CryptoAttribute, CryptoError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields
            .next()
            .filter(|tag| tag.len() <= MAX_TAG_DIGITS && tag.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|tag| tag.parse::<u32>().ok())
            .ok_or(CryptoError::InvalidTag)?;
        let suite = CryptoSuite::parse(fields.next().ok_or(CryptoError::MissingSuite)?);
        let raw_key_params = fields.next().ok_or(CryptoError::MissingKeyParams)?;
        let key_params = match suite {
            CryptoSuite::Srtp(_) => parse_inline(raw_key_params)?,
            CryptoSuite::Unknown(_) => KeyParams::Other(raw_key_params.to_owned()),
        };
        Ok(CryptoAttribute {
            tag,
            suite,
            key_params,
            session_params: fields.map(str::to_owned).collect(),
        })
    }

    pub fn profile(&self) -> Option<SrtpProfile> {
        self.suite.profile()
    }

    pub fn master_key(&self) -> Option<&MasterKey> {
        match &self.key_params {
            KeyParams::Inline { master_key, .. } => Some(master_key),
            KeyParams::Other(_) => None,
        }
    }

    /// The whole SDP line, `a=crypto:<value>` without line end.
    pub fn to_sdp_line(&self) -> String {
        format!("a={CRYPTO_ATTRIBUTE}:{self}")
    }

    /// A suite we implement with session parameters we can honour: none, or only ones that
    /// change nothing for us. Refused: UNENCRYPTED_SRTP, UNAUTHENTICATED_SRTP (we always do
    /// both), KDR (we derive once), FEC_ORDER/FEC_KEY, and parameters we do not know
    /// (RFC 4568 §6.3: an answerer not understanding one must not use the line).
    fn usable_with(&self, supported: &[SrtpProfile]) -> Option<(SrtpProfile, &MasterKey)> {
        let profile = self.profile().filter(|p| supported.contains(p))?;
        let harmless = |param: &String| {
            // WSH: replay window size hint; ours is 128. SRTCP: we send none.
            param.starts_with("WSH=") || param == "UNENCRYPTED_SRTCP"
        };
        if !self.session_params.iter().all(harmless) {
            return None;
        }
        Some((profile, self.master_key()?))
    }
}

/// Writes the attribute value (what follows `a=crypto:`).
impl fmt::Display for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.tag, self.suite.as_str())?;
        match &self.key_params {
            KeyParams::Inline {
                master_key,
                lifetime,
            } => {
                write!(f, "inline:{}", BASE64.encode(master_key.to_bytes()))?;
                if let Some(lifetime) = lifetime {
                    write!(f, "|{lifetime}")?;
                }
            }
            KeyParams::Other(raw) => f.write_str(raw)?,
        }
        for param in &self.session_params {
            write!(f, " {param}")?;
        }
        Ok(())
    }
}

/// `inline:<key||salt>[|lifetime][|mki:length]`, exactly one of it.
fn parse_inline(raw: &str) -> Result<KeyParams, CryptoError> {
    if raw.contains(';') {
        return Err(CryptoError::SeveralKeys);
    }
    let (method, info) = raw.split_once(':').ok_or(CryptoError::NotInline)?;
    if !method.eq_ignore_ascii_case("inline") {
        return Err(CryptoError::NotInline);
    }
    let mut parts = info.split('|');
    let encoded = parts.next().unwrap_or_default();
    let mut lifetime = None;
    for part in parts {
        // An MKI is `value:length`; a lifetime never has a colon.
        if part.contains(':') || lifetime.is_some() {
            return Err(CryptoError::MkiUnsupported);
        }
        let digits = part.strip_prefix("2^").unwrap_or(part);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoError::BadLifetime {
                found: part.chars().take(16).collect(),
            });
        }
        lifetime = Some(part.to_owned());
    }
    let bytes = BASE64.decode(encoded).map_err(|_| CryptoError::BadBase64)?;
    let master_key =
        MasterKey::from_slice(&bytes).ok_or(CryptoError::KeyLength { len: bytes.len() })?;
    Ok(KeyParams::Inline {
        master_key,
        lifetime,
    })
}

/// The `a=crypto` values of a media section, in offer order, parsed one by one.
pub fn crypto_attributes(
    media: &MediaDescription,
) -> impl Iterator<Item = Result<CryptoAttribute, CryptoError>> + '_ {
    media
        .other_attributes
        .iter()
        .filter(|attribute| attribute.name == CRYPTO_ATTRIBUTE)
        .map(|attribute| CryptoAttribute::parse(attribute.value.as_deref().unwrap_or_default()))
}

/// The keys of an agreed SDES exchange: we protect with `local`, they with `remote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesKeys {
    pub tag: u32,
    pub profile: SrtpProfile,
    /// Our key: for the [`crate::media::srtp::SrtpSender`].
    pub local: MasterKey,
    /// Their key: for the [`crate::media::srtp::SrtpReceiver`].
    pub remote: MasterKey,
}

/// Why no SDES keys were agreed; on an offer this maps to 488 Not Acceptable Here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    #[error("no a=crypto line")]
    NoCrypto,
    #[error("no usable a=crypto line among: {offered}")]
    NoAcceptableCrypto { offered: String },
    #[error("the answer has {count} a=crypto lines, it must have exactly one")]
    AnswerLineCount { count: usize },
    #[error("the answer's a=crypto matches no line of our offer, or asks for what we cannot do")]
    AnswerNotAcceptable,
    #[error(transparent)]
    Invalid(#[from] CryptoError),
}

/// Answers SDES: the first offered line (offer order is the offerer's preference) whose suite is
/// in `supported` and that we can honour, answered with the same tag and suite and a fresh key
/// from `rng`. Lines that do not parse (e.g. MKI) are skipped like unknown suites. Returns the
/// keys and our answer line.
pub fn answer_crypto<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    supported: &[SrtpProfile],
    rng: &mut (impl rand::RngCore + ?Sized),
) -> Result<(SdesKeys, CryptoAttribute), SdesError> {
    let mut seen = Vec::new();
    for value in offered.into_iter().take(MAX_CRYPTO_LINES) {
        let parsed = CryptoAttribute::parse(value);
        seen.push(describe(value, parsed.as_ref().err()));
        let Ok(line) = parsed else { continue };
        let Some((profile, remote)) = line.usable_with(supported) else {
            continue;
        };
        let local = MasterKey::generate(rng);
        let keys = SdesKeys {
            tag: line.tag,
            profile,
            local: local.clone(),
            remote: remote.clone(),
        };
        return Ok((keys, CryptoAttribute::new(line.tag, profile, local)));
    }
    if seen.is_empty() {
        return Err(SdesError::NoCrypto);
    }
    Err(SdesError::NoAcceptableCrypto {
        offered: seen.join(", "),
    })
}

/// [`answer_crypto`] over the `a=crypto` attributes of an offered media section.
pub fn answer_media_crypto(
    media: &MediaDescription,
    supported: &[SrtpProfile],
    rng: &mut (impl rand::RngCore + ?Sized),
) -> Result<(SdesKeys, CryptoAttribute), SdesError> {
    let values = media
        .other_attributes
        .iter()
        .filter(|attribute| attribute.name == CRYPTO_ATTRIBUTE)
        .map(|attribute| attribute.value.as_deref().unwrap_or_default());
    answer_crypto(values, supported, rng)
}

/// Our offer's lines: one per profile in preference order, tags 1, 2, ..., each with its own
/// fresh key from `rng`. Keep them to check the answer with [`accept_answer_crypto`].
pub fn offer_crypto(
    profiles: &[SrtpProfile],
    rng: &mut (impl rand::RngCore + ?Sized),
) -> Vec<CryptoAttribute> {
    (1u32..)
        .zip(profiles)
        .map(|(tag, &profile)| CryptoAttribute::new(tag, profile, MasterKey::generate(rng)))
        .collect()
}

/// Checks the answer to our offer (RFC 4568 §7.1.3): exactly one line, whose tag and suite are
/// those of one of our lines; the keys are ours from that line and theirs from the answer.
pub fn accept_answer_crypto<'a>(
    our_offer: &[CryptoAttribute],
    answered: impl IntoIterator<Item = &'a str>,
) -> Result<SdesKeys, SdesError> {
    let answered: Vec<&str> = answered.into_iter().take(MAX_CRYPTO_LINES).collect();
    let [value] = answered[..] else {
        return Err(SdesError::AnswerLineCount {
            count: answered.len(),
        });
    };
    let line = CryptoAttribute::parse(value)?;
    let ours = our_offer
        .iter()
        .find(|ours| ours.tag == line.tag && ours.suite == line.suite)
        .ok_or(SdesError::AnswerNotAcceptable)?;
    let profile = ours.profile().ok_or(SdesError::AnswerNotAcceptable)?;
    let (Some(local), Some((_, remote))) = (ours.master_key(), line.usable_with(&[profile])) else {
        return Err(SdesError::AnswerNotAcceptable);
    };
    Ok(SdesKeys {
        tag: line.tag,
        profile,
        local: local.clone(),
        remote: remote.clone(),
    })
}

/// `<tag> <suite>` of an offered line for error messages, with why it failed to parse.
fn describe(value: &str, error: Option<&CryptoError>) -> String {
    let head: Vec<&str> = value.split_ascii_whitespace().take(2).collect();
    let head: String = head.join(" ").chars().take(48).collect();
    match error {
        Some(CryptoError::MkiUnsupported) => format!("{head} (MKI)"),
        Some(_) => format!("{head} (invalid)"),
        None => head,
    }
}

#[cfg(test)]
mod tests;
