//! The client's half of digest authentication (RFC 2617 MD5, qop=auth): parsing an
//! `Authorization: Digest ...` value and checking its response against an HA1.

use md5::{Digest, Md5};

/// The parameters of a `Digest` Authorization header the registrar needs.
#[derive(Debug, Default)]
pub(super) struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// Whether an Authorization value uses the Digest scheme (scheme names are case-insensitive).
pub(super) fn is_digest(header: &str) -> bool {
    header
        .trim_start()
        .split(|c: char| c.is_ascii_whitespace())
        .next()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("Digest"))
}

impl DigestResponse {
    pub(super) fn parse(header: &str) -> Option<Self> {
        let header = header.trim_start();
        if !is_digest(header) {
            return None;
        }
        let rest = header.get("Digest".len()..)?.trim_start();
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

    /// The nonce count: `nc` (8 hex digits) with qop, else 1 (a qop-less nonce is single-use).
    pub(super) fn nonce_count(&self) -> Option<u32> {
        match (&self.qop, &self.nc) {
            (None, _) => Some(1),
            (Some(_), Some(nc)) if nc.len() == 8 => u32::from_str_radix(nc, 16).ok(),
            (Some(_), _) => None,
        }
    }

    pub(super) fn verify(&self, ha1: &str, method: &str) -> bool {
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

pub(crate) fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// `key=value, key="quoted, value"` pairs.
pub(crate) fn split_auth_params(text: &str) -> Vec<(String, String)> {
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
