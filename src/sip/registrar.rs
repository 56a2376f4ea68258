//! The registrar agents' softphones REGISTER with (RFC 3261 §10): digest authentication
//! (RFC 2617 MD5, qop=auth) against HA1 hashes from a credentials file, with nonces bound to
//! the address they were sent to and used once per count, failures leading to bans (`guard`);
//! bindings with expiry, several contacts per user, unregistration. Pure: time and nonces are
//! inputs.

mod digest;
mod guard;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::message;
use super::transport::Peer;
use digest::DigestResponse;
pub(crate) use digest::{md5_hex, split_auth_params};
pub use guard::{log_safe, AuthPolicy, BanKey, SecurityStats};
use guard::{security_event, Guard};

/// Checked against when the user is unknown, so both cases cost the same (no timing oracle).
const DUMMY_HA1: &str = "00000000000000000000000000000000";
/// At most this many outstanding nonces are remembered (oldest dropped first).
const MAX_NONCES: usize = 10_000;
/// Outstanding nonces per address: a flood of challenges from one address evicts only its own.
const MAX_NONCES_PER_SOURCE: usize = 32;
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

    /// Whether `user` has an entry (may register).
    pub fn has_user(&self, user: &str) -> bool {
        self.ha1.contains_key(user)
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
    /// Where the REGISTER came from (address and transport): agents behind NAT are reached
    /// back through it.
    pub source: Peer,
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

/// A nonce we challenged with: to whom, when, and the highest count used so far.
#[derive(Debug, Clone, Copy)]
struct NonceState {
    issued: Instant,
    source: IpAddr,
    last_nc: u32,
}

#[derive(Debug)]
pub struct Registrar {
    credentials: Credentials,
    nonces: HashMap<String, NonceState>,
    bindings: HashMap<String, Vec<Binding>>,
    guard: Guard,
}

impl Registrar {
    pub fn new(credentials: Credentials) -> Self {
        Self::with_policy(credentials, AuthPolicy::default())
    }

    pub fn with_policy(credentials: Credentials, policy: AuthPolicy) -> Self {
        Self {
            credentials,
            nonces: HashMap::new(),
            bindings: HashMap::new(),
            guard: Guard::new(policy),
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
        let ip = from.addr.ip();
        // Expired nonces are kept one more lifetime to be told apart (stale) from unknown ones.
        let lifetime = self.guard.policy.nonce_lifetime;
        self.nonces
            .retain(|_, nonce| now.saturating_duration_since(nonce.issued) < lifetime * 2);
        if self.guard.is_banned(now, ip, None) {
            return RegisterOutcome::Forbidden;
        }
        // No credentials, or a scheme we do not speak: the answer is our challenge.
        let Some(authorization) = message::header_value(request, "Authorization")
            .filter(|value| digest::is_digest(value))
        else {
            return self.challenge(now, fresh_nonce, ip, false);
        };
        let Some(digest) = DigestResponse::parse(authorization) else {
            return RegisterOutcome::BadRequest("Malformed Authorization");
        };
        // Banned names get the same 403 whether they exist or not.
        if self.guard.is_banned(now, ip, Some(&digest.username)) {
            return RegisterOutcome::Forbidden;
        }
        if !uri_matches(&digest.uri, request) {
            self.guard.stats.uri_mismatches += 1;
            security_event("digest_uri_mismatch", ip, Some(&digest.username));
            return RegisterOutcome::BadRequest("Digest URI Mismatch");
        }
        let Some(nonce) = self.nonces.get(&digest.nonce).copied() else {
            return self.challenge(now, fresh_nonce, ip, false);
        };
        let count = digest.nonce_count();
        // A nonce answers only its own challenge: from the address it was sent to, each
        // count once and in order. A captured header replayed elsewhere proves nothing.
        if nonce.source != ip || count.is_none_or(|count| count <= nonce.last_nc) {
            self.guard.stats.nonce_replays += 1;
            security_event("nonce_replay", ip, Some(&digest.username));
            return self.challenge(now, fresh_nonce, ip, false);
        }
        if now.saturating_duration_since(nonce.issued) >= lifetime {
            return self.challenge(now, fresh_nonce, ip, true);
        }
        if let (Some(state), Some(count)) = (self.nonces.get_mut(&digest.nonce), count) {
            state.last_nc = count;
        }
        let known = self.credentials.ha1.get(&digest.username);
        let verified = digest.verify(known.map_or(DUMMY_HA1, String::as_str), "REGISTER");
        if !(verified && known.is_some() && digest.realm == self.credentials.realm) {
            self.guard.failed(now, ip, &digest.username);
            return RegisterOutcome::Forbidden;
        }
        // One may only register one's own address of record.
        let aor_user = message::header_value(request, "To").and_then(address_user);
        if aor_user.as_deref() != Some(digest.username.as_str()) {
            return RegisterOutcome::Forbidden;
        }
        self.guard.succeeded(ip, &digest.username);
        self.apply_bindings(now, request, from, digest.username)
    }

    fn challenge(
        &mut self,
        now: Instant,
        nonce: String,
        source: IpAddr,
        stale: bool,
    ) -> RegisterOutcome {
        let (mut own, mut own_oldest, mut oldest) = (0, None, None);
        for (key, state) in &self.nonces {
            if state.source == source {
                own += 1;
                if own_oldest.is_none_or(|(_, at)| state.issued < at) {
                    own_oldest = Some((key, state.issued));
                }
            }
            if oldest.is_none_or(|(_, at)| state.issued < at) {
                oldest = Some((key, state.issued));
            }
        }
        let evicted = if own >= MAX_NONCES_PER_SOURCE {
            own_oldest
        } else if self.nonces.len() >= MAX_NONCES {
            oldest
        } else {
            None
        };
        if let Some(key) = evicted.map(|(key, _)| key.clone()) {
            self.nonces.remove(&key);
        }
        let value = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{}",
            self.credentials.realm,
            if stale { ", stale=true" } else { "" }
        );
        self.nonces.insert(
            nonce,
            NonceState {
                issued: now,
                source,
                last_nc: 0,
            },
        );
        RegisterOutcome::Challenge(value)
    }

    /// Security counters and the number of bans in force.
    pub fn security_stats(&self, now: Instant) -> SecurityStats {
        self.guard.stats(now)
    }

    /// Bans in force (address, or user@address) and when each ends.
    pub fn bans(&self, now: Instant) -> Vec<(BanKey, Instant)> {
        self.guard.bans(now)
    }

    /// Lifts the bans on `ip` and forgets its failures; returns how many bans were lifted.
    pub fn lift_ban(&mut self, ip: IpAddr) -> usize {
        self.guard.lift(ip)
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
                        source: from,
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

/// The digest `uri` names the Request-URI (RFC 2617 §3.2.2.5): a header captured from a
/// request to another URI is not accepted here.
fn uri_matches(digest_uri: &str, request: &rsip::Request) -> bool {
    let digest_uri = digest_uri.trim();
    digest_uri == request.uri.to_string()
        || rsip::Uri::try_from(digest_uri).is_ok_and(|uri| uri == request.uri)
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
