//! The registrar agents' softphones REGISTER with (RFC 3261 §10): digest authentication
//! (RFC 2617 MD5, qop=auth) against HA1 hashes from a credentials file, bindings with expiry,
//! several contacts per user, unregistration. Pure: time and nonces are inputs.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::message;
use super::transport::Peer;

/// Nonces older than this are answered with a fresh challenge marked `stale=true`.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// At most this many outstanding nonces are remembered (oldest dropped first).
const MAX_NONCES: usize = 10_000;
pub const MIN_EXPIRES: u32 = 60;
pub const MAX_EXPIRES: u32 = 3600;
const DEFAULT_EXPIRES: u32 = 3600;
/// A user registering more contacts than this is refused: a phone, a backup, a laptop...
const MAX_CONTACTS_PER_USER: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
}

/// Agents' SIP credentials: user name → HA1 = MD5(user:realm:password), never the password.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    realm: String,
    ha1: HashMap<String, String>,
}

impl Credentials {
    /// File format (TOML): `realm = "hotline"` and a `[users]` table of `name = "<HA1 hex>"`.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| CredentialsError::Format {
            path: shown,
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let document: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| e.to_string())?;
        let realm = document
            .get("realm")
            .and_then(|item| item.as_str())
            .ok_or("`realm` (a string) is required")?
            .to_owned();
        let mut ha1 = HashMap::new();
        if let Some(users) = document.get("users").and_then(|item| item.as_table()) {
            for (user, value) in users.iter() {
                let hash = value
                    .as_str()
                    .filter(|hash| hash.len() == 32 && hash.chars().all(|c| c.is_ascii_hexdigit()))
                    .ok_or_else(|| {
                        format!(
                            "users.{user}: expected the 32 hex digits of MD5(user:realm:password)"
                        )
                    })?;
                ha1.insert(user.to_owned(), hash.to_ascii_lowercase());
            }
        }
        Ok(Self { realm, ha1 })
    }

    /// HA1 for a user and password (for writing credentials files and tests).
    pub fn ha1(user: &str, realm: &str, password: &str) -> String {
        md5_hex(&format!("{user}:{realm}:{password}"))
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }
}

/// One registered contact of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered (where to send INVITEs).
    pub contact: String,
    pub expires_at: Instant,
    /// The flow the REGISTER came over: agents behind NAT are reached through it.
    pub flow: Peer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// 403: authenticated as someone else than the address being registered, or unknown user.
    Forbidden,
    /// 423 with `Min-Expires`.
    IntervalTooBrief(u32),
    BadRequest(&'static str),
    /// 200 listing the user's current bindings with their remaining seconds.
    Registered {
        user: String,
        contacts: Vec<(String, u32)>,
    },
}

#[derive(Debug)]
pub struct Registrar {
    credentials: Credentials,
    nonces: HashMap<String, Instant>,
    bindings: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            nonces: HashMap::new(),
            bindings: HashMap::new(),
        }
    }

    /// Handles a REGISTER. `fresh_nonce` is used when a challenge must be sent.
    pub fn register(
        &mut self,
        now: Instant,
        request: &rsip::Request,
        from: Peer,
        fresh_nonce: String,
    ) -> RegisterOutcome {
        self.nonces
            .retain(|_, issued| now.saturating_duration_since(*issued) < NONCE_LIFETIME);
        let Some(authorization) = message::header_value(request, "Authorization") else {
            return self.challenge(now, fresh_nonce, false);
        };
        let Some(digest) = DigestResponse::parse(authorization) else {
            return RegisterOutcome::BadRequest("Malformed Authorization");
        };
        let Some(ha1) = self.credentials.ha1.get(&digest.username).cloned() else {
            return RegisterOutcome::Forbidden;
        };
        if !self.nonces.contains_key(&digest.nonce) {
            return self.challenge(now, fresh_nonce, true);
        }
        if !digest.verify(&ha1, "REGISTER") || digest.realm != self.credentials.realm {
            return RegisterOutcome::Forbidden;
        }
        // One may only register one's own address of record.
        let aor_user = message::header_value(request, "To").and_then(address_user);
        if aor_user.as_deref() != Some(digest.username.as_str()) {
            return RegisterOutcome::Forbidden;
        }
        self.apply_bindings(now, request, from, digest.username)
    }

    fn challenge(&mut self, now: Instant, nonce: String, stale: bool) -> RegisterOutcome {
        if self.nonces.len() >= MAX_NONCES {
            if let Some(oldest) = self
                .nonces
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(n, _)| n.clone())
            {
                self.nonces.remove(&oldest);
            }
        }
        let value = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{}",
            self.credentials.realm,
            if stale { ", stale=true" } else { "" }
        );
        self.nonces.insert(nonce, now);
        RegisterOutcome::Challenge(value)
    }

    fn apply_bindings(
        &mut self,
        now: Instant,
        request: &rsip::Request,
        from: Peer,
        user: String,
    ) -> RegisterOutcome {
        let default_expires = message::header_value(request, "Expires")
            .and_then(|value| value.trim().parse::<u32>().ok())
            .unwrap_or(DEFAULT_EXPIRES);
        let contacts: Vec<String> = message::header_values(request, "Contact")
            .into_iter()
            .flat_map(split_contacts)
            .collect();
        let bindings = self.bindings.entry(user.clone()).or_default();
        bindings.retain(|binding| binding.expires_at > now);
        if contacts.iter().any(|contact| contact.trim() == "*") {
            // RFC 3261 §10.3 step 6: `*` only with Expires: 0 and alone.
            if default_expires != 0 || contacts.len() != 1 {
                return RegisterOutcome::BadRequest("Contact * needs Expires: 0");
            }
            bindings.clear();
        } else {
            for contact in &contacts {
                let Some((uri, expires)) = parse_contact(contact, default_expires) else {
                    return RegisterOutcome::BadRequest("Malformed Contact");
                };
                if expires != 0 && expires < MIN_EXPIRES {
                    return RegisterOutcome::IntervalTooBrief(MIN_EXPIRES);
                }
                bindings.retain(|binding| binding.contact != uri);
                if expires > 0 {
                    if bindings.len() >= MAX_CONTACTS_PER_USER {
                        return RegisterOutcome::BadRequest("Too Many Contacts");
                    }
                    bindings.push(Binding {
                        contact: uri,
                        expires_at: now + Duration::from_secs(u64::from(expires.min(MAX_EXPIRES))),
                        flow: from,
                    });
                }
            }
        }
        let listed = bindings
            .iter()
            .map(|binding| {
                let left = binding.expires_at.saturating_duration_since(now).as_secs();
                (
                    binding.contact.clone(),
                    u32::try_from(left).unwrap_or(u32::MAX),
                )
            })
            .collect();
        if bindings.is_empty() {
            self.bindings.remove(&user);
        }
        RegisterOutcome::Registered {
            user,
            contacts: listed,
        }
    }

    /// Live bindings of `user`, most recently registered last.
    pub fn contacts(&self, user: &str, now: Instant) -> Vec<&Binding> {
        self.bindings
            .get(user)
            .map(|bindings| bindings.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default()
    }

    /// Drops expired bindings; returns users who have no binding left.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        self.bindings.retain(|user, bindings| {
            bindings.retain(|binding| binding.expires_at > now);
            if bindings.is_empty() {
                gone.push(user.clone());
            }
            !bindings.is_empty()
        });
        gone
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.bindings
            .values()
            .flatten()
            .map(|binding| binding.expires_at)
            .min()
    }

    pub fn is_registered(&self, user: &str, now: Instant) -> bool {
        !self.contacts(user, now).is_empty()
    }
}

/// The parameters of a `Digest` Authorization header this registrar needs.
#[derive(Debug, Default)]
struct DigestResponse {
    username: String,
    realm: String,
    nonce: String,
    uri: String,
    response: String,
    qop: Option<String>,
    nc: Option<String>,
    cnonce: Option<String>,
}

impl DigestResponse {
    fn parse(header: &str) -> Option<Self> {
        let rest = header.trim().strip_prefix("Digest")?.trim_start();
        let mut digest = Self::default();
        let mut algorithm_md5 = true;
        for (key, value) in split_auth_params(rest) {
            match key.to_ascii_lowercase().as_str() {
                "username" => digest.username = value,
                "realm" => digest.realm = value,
                "nonce" => digest.nonce = value,
                "uri" => digest.uri = value,
                "response" => digest.response = value.to_ascii_lowercase(),
                "qop" => digest.qop = Some(value),
                "nc" => digest.nc = Some(value),
                "cnonce" => digest.cnonce = Some(value),
                "algorithm" => algorithm_md5 = value.eq_ignore_ascii_case("MD5"),
                _ => {}
            }
        }
        let complete =
            !digest.username.is_empty() && !digest.nonce.is_empty() && !digest.response.is_empty();
        (complete && algorithm_md5).then_some(digest)
    }

    fn verify(&self, ha1: &str, method: &str) -> bool {
        let ha2 = md5_hex(&format!("{method}:{}", self.uri));
        let expected = match (&self.qop, &self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) if qop.eq_ignore_ascii_case("auth") => {
                md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce))
            }
            (None, _, _) => md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce)),
            _ => return false,
        };
        // Compare without an early exit on the first differing byte.
        expected.len() == self.response.len()
            && expected
                .bytes()
                .zip(self.response.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// `key=value, key="quoted, value"` pairs.
fn split_auth_params(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.trim().is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_owned(), &quoted[end + 1..]),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_owned(), &after[end..]),
                None => (after.trim().to_owned(), ""),
            }
        };
        pairs.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',');
    }
    pairs
}

/// Splits a Contact header value listing several contacts (commas outside `<>` and quotes).
fn split_contacts(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut angle, mut quoted, mut start) = (false, false, 0);
    for (index, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..index].trim().to_owned());
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim().to_owned());
    parts.retain(|part| !part.is_empty());
    parts
}

/// `"Name" <sip:uri;param>;expires=60;+sip.instance="<urn:...>"` → (`sip:uri;param`, expires).
fn parse_contact(contact: &str, default_expires: u32) -> Option<(String, u32)> {
    // The first `>` after `<` closes the URI: quoted parameters may contain `<...>` themselves.
    let open = contact.find('<');
    let close = open.and_then(|open| contact[open..].find('>').map(|offset| open + offset));
    let (uri, params) = match (open, close) {
        (Some(open), Some(close)) => (&contact[open + 1..close], &contact[close + 1..]),
        _ => match contact.split_once(';') {
            Some((uri, params)) => (uri, params),
            None => (contact, ""),
        },
    };
    let uri = uri.trim();
    if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
        return None;
    }
    let expires = params
        .split(';')
        .filter_map(|param| param.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("expires"))
        .map(|(_, value)| value.trim().trim_matches('"').parse().ok())
        .unwrap_or(Some(default_expires))?;
    Some((uri.to_owned(), expires))
}

/// The user part of a name-addr (`"Jonas" <sip:jonas@host>;tag=x` → `jonas`).
fn address_user(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split(';').next()?,
    };
    let without_scheme = uri
        .trim()
        .strip_prefix("sips:")
        .or_else(|| uri.trim().strip_prefix("sip:"))?;
    let user = without_scheme.split_once('@')?.0;
    Some(user.split(':').next()?.to_owned())
}

#[cfg(test)]
mod tests;
