//! The client side of digest authentication (RFC 2617 / RFC 3261 §22): parsing a carrier's
//! challenge and answering it with MD5, qop=auth, a nonce count and a client nonce.

use crate::sip::registrar::{md5_hex, split_auth_params};

/// A challenge from the registrar (or a proxy before it), reused until it goes stale.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    /// `Authorization` (401) or `Proxy-Authorization` (407).
    pub header: &'static str,
    realm: String,
    nonce: String,
    opaque: Option<String>,
    qop_auth: bool,
    /// Requests sent with this nonce so far (the `nc` of the last one).
    count: u32,
}

/// What a 401/407 says besides the challenge itself.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub challenge: Challenge,
    pub stale: bool,
}

/// Parses a `WWW-Authenticate`/`Proxy-Authenticate` value; the error says what is unusable.
pub(crate) fn parse(value: &str, proxy: bool) -> Result<Parsed, String> {
    let rest = value
        .trim()
        .strip_prefix("Digest")
        .ok_or_else(|| "challenge is not Digest".to_owned())?;
    let mut challenge = Challenge {
        header: if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        },
        realm: String::new(),
        nonce: String::new(),
        opaque: None,
        qop_auth: false,
        count: 0,
    };
    let mut stale = false;
    let mut qop_offered = None;
    for (key, value) in split_auth_params(rest) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => challenge.realm = value,
            "nonce" => challenge.nonce = value,
            "opaque" => challenge.opaque = Some(value),
            "stale" => stale = value.eq_ignore_ascii_case("true"),
            "qop" => qop_offered = Some(value),
            "algorithm" if !value.eq_ignore_ascii_case("MD5") => {
                return Err(format!("digest algorithm {value} is not supported"));
            }
            _ => {}
        }
    }
    if challenge.nonce.is_empty() {
        return Err("challenge without a nonce".to_owned());
    }
    if let Some(offered) = qop_offered {
        challenge.qop_auth = offered
            .split(',')
            .any(|qop| qop.trim().eq_ignore_ascii_case("auth"));
        if !challenge.qop_auth {
            return Err(format!("digest qop {offered} is not supported"));
        }
    }
    Ok(Parsed { challenge, stale })
}

impl Challenge {
    /// The header value answering this challenge for one more request (the nonce count grows).
    pub fn answer(
        &mut self,
        method: &str,
        uri: &str,
        user: &str,
        password: &str,
        cnonce: &str,
    ) -> String {
        self.count += 1;
        let ha1 = md5_hex(&format!("{user}:{}:{password}", self.realm));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let mut value = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", ",
            self.realm, self.nonce
        );
        if self.qop_auth {
            let nc = format!("{:08x}", self.count);
            let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce));
            value.push_str(&format!(
                "response=\"{response}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
            ));
        } else {
            let response = md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce));
            value.push_str(&format!("response=\"{response}\", algorithm=MD5"));
        }
        if let Some(opaque) = &self.opaque {
            value.push_str(&format!(", opaque=\"{opaque}\""));
        }
        value
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }
}
