//! The carrier-facing settings: `[numbers]` (E.164 rules), `[trunks.NAME]` tables and the
//! address-block type `sip.trusted` and trunks' `inbound` lists use, with their validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, SettingsError};
use crate::numbers::NumberRules;
use crate::sdp::MediaEncryption;

pub use crate::sip::cidr::{in_any, Cidr};

/// A password: never shown by `Debug` or `Display`, read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[numbers]`: how caller and dialled numbers are brought to E.164.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumbersSettings {
    pub country_code: String,
    pub national_prefix: String,
    pub international_prefix: String,
}

impl NumbersSettings {
    pub fn rules(&self) -> NumberRules {
        NumberRules {
            country_code: self.country_code.clone(),
            national_prefix: self.national_prefix.clone(),
            international_prefix: self.international_prefix.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    Udp,
    Tcp,
    /// SIP over TLS; the carrier's certificate is checked (system roots, or `tls_ca`).
    Tls,
}

/// Which header of a trunk's INVITE carries the caller's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerIdHeader {
    /// `P-Asserted-Identity`, falling back to From.
    Pai,
    /// `Remote-Party-ID`, falling back to From.
    Rpid,
    From,
}

/// `[trunks.NAME]`: a carrier's SIP trunk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSettings {
    /// `host[:port]`; without a port and with a name: DNS SRV, then A.
    pub host: String,
    /// Failover target for REGISTER, OPTIONS and calls.
    #[serde(default)]
    pub backup_host: Option<String>,
    #[serde(default = "udp")]
    pub transport: TrunkTransport,
    /// With `transport = "tls"`: the CA certificates (PEM) the carrier's certificate must chain
    /// to, instead of the system's roots.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Register with the carrier (else OPTIONS keep-alives tell whether it answers).
    #[serde(default)]
    pub register: bool,
    #[serde(default)]
    pub username: Option<String>,
    /// Digest user name, when it differs from `username`.
    #[serde(default)]
    pub auth_username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password (trailing line break ignored), instead of `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "ten_minutes", deserialize_with = "duration")]
    pub expires: Duration,
    /// DIDs this trunk delivers; others get 404.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Source addresses of its calls; empty: the host's resolved addresses.
    #[serde(default)]
    pub inbound: Vec<Cidr>,
    #[serde(default = "pai")]
    pub caller_id: CallerIdHeader,
    /// Simultaneous calls; more get 503. Unset: no limit.
    #[serde(default)]
    pub max_calls: Option<u32>,
    /// New calls per second (a second's worth may come at once); more get 503. Unset: no limit.
    #[serde(default)]
    pub max_cps: Option<u32>,
    #[serde(default = "thirty_seconds", deserialize_with = "duration")]
    pub options_interval: Duration,
    /// SRTP on calls with this carrier (`off`, `optional`, `required`); SDES keys only ever
    /// travel over a secure transport, so `optional` stays plain RTP without one.
    #[serde(default)]
    pub media_encryption: MediaEncryption,
}

fn udp() -> TrunkTransport {
    TrunkTransport::Udp
}
fn pai() -> CallerIdHeader {
    CallerIdHeader::Pai
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

impl TrunkSettings {
    /// The digest user name: `auth_username`, else `username`.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_username.as_deref().or(self.username.as_deref())
    }

    /// The password, from `password` or read from `password_file`.
    pub fn resolve_password(&self) -> Result<Option<Secret>, String> {
        if let Some(password) = &self.password {
            return Ok(Some(password.clone()));
        }
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))))
    }
}

/// `host[:port]` as written in `host`/`backup_host`: `None` unless it is a host name or
/// address with an optional valid port (`[v6]:port` for IPv6 with a port).
pub fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        address.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((address, None)),
            _ => Some((address, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some((text, None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().ok()?)),
        None => (text, None),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    valid.then_some((host, port))
}

/// Whether SIP over this transport may carry SRTP keys.
fn secure_transport(transport: TrunkTransport) -> bool {
    crate::sip::ua::transport_is_secure(transport.into())
}

/// Trunk checks serde cannot make: hosts, credentials, and DIDs claimed by two trunks.
pub(super) fn validate(
    trunks: &BTreeMap<String, TrunkSettings>,
    numbers: &NumbersSettings,
) -> Result<(), SettingsError> {
    let key_error = |key: String, message: String| SettingsError::Key { key, message };
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(&numbers.country_code) {
        return Err(key_error(
            "numbers.country_code".into(),
            "expected the digits of a country calling code".into(),
        ));
    }
    let rules = numbers.rules();
    let mut claimed: BTreeMap<String, &str> = BTreeMap::new();
    for (name, trunk) in trunks {
        let key = |field: &str| format!("trunks.{name}.{field}");
        if split_host_port(&trunk.host).is_none() {
            return Err(key_error(
                key("host"),
                format!("`{}` is not host[:port]", trunk.host),
            ));
        }
        if let Some(backup) = &trunk.backup_host {
            if split_host_port(backup).is_none() {
                return Err(key_error(
                    key("backup_host"),
                    format!("`{backup}` is not host[:port]"),
                ));
            }
        }
        if trunk.password.is_some() && trunk.password_file.is_some() {
            return Err(key_error(
                key("password_file"),
                "give either password or password_file, not both".into(),
            ));
        }
        if let Some(path) = &trunk.password_file {
            // Readable now rather than at the first registration; the content is not shown.
            std::fs::File::open(path).map_err(|error| {
                key_error(
                    key("password_file"),
                    format!("cannot read {}: {error}", path.display()),
                )
            })?;
        }
        if trunk.register {
            if trunk.username.as_deref().is_none_or(str::is_empty) {
                return Err(key_error(
                    key("username"),
                    "required when register = true".into(),
                ));
            }
            if trunk.password.is_none() && trunk.password_file.is_none() {
                return Err(key_error(
                    key("password"),
                    "required (or password_file) when register = true".into(),
                ));
            }
            if trunk.expires.as_secs() < 1 {
                return Err(key_error(key("expires"), "must be at least 1s".into()));
            }
        }
        if trunk.media_encryption == MediaEncryption::Required && !secure_transport(trunk.transport)
        {
            return Err(key_error(
                key("media_encryption"),
                "\"required\" needs SIP over TLS: SRTP keys are never sent in the clear".into(),
            ));
        }
        if trunk.options_interval.is_zero() {
            return Err(key_error(key("options_interval"), "must be above 0".into()));
        }
        if trunk.max_cps == Some(0) {
            return Err(key_error(
                key("max_cps"),
                "0 would refuse every call; leave it unset for no limit".into(),
            ));
        }
        if trunk.max_calls == Some(0) {
            return Err(key_error(
                key("max_calls"),
                "0 would refuse every call; leave it unset for no limit".into(),
            ));
        }
        for (index, number) in trunk.numbers.iter().enumerate() {
            let Some(normal) = rules.normalise(number) else {
                return Err(key_error(
                    format!("trunks.{name}.numbers[{index}]"),
                    format!("`{number}` is not a number"),
                ));
            };
            if let Some(other) = claimed.insert(normal.clone(), name) {
                return Err(key_error(
                    format!("trunks.{name}.numbers[{index}]"),
                    format!("`{number}` ({normal}) is also a number of trunk `{other}`"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_match_and_refuse_nonsense() {
        let block: Cidr = "10.20.0.0/16".parse().unwrap();
        assert!(block.contains("10.20.3.4".parse().unwrap()));
        assert!(!block.contains("10.21.0.1".parse().unwrap()));
        assert!(block.contains("::ffff:10.20.0.9".parse().unwrap()));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        // Host bits are masked away.
        assert_eq!("10.20.1.1/16".parse::<Cidr>().unwrap(), block);
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.1".parse().unwrap()));
        assert!(!any.contains("::1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0/8", "ten", "10.0.0.0/x", "::1/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("sip.carrier.example:5060"),
            Some(("sip.carrier.example", Some(5060)))
        );
        assert_eq!(split_host_port("192.0.2.1"), Some(("192.0.2.1", None)));
        assert_eq!(split_host_port("[::1]:5070"), Some(("::1", Some(5070))));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        for bad in ["", "host:port", "a b", "host:70000", "[::1"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }
}
