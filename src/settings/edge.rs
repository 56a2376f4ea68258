//! The settings of the service's edge and of agents' phones: `[security]` (failed logins,
//! request rates, bans) and `[features]` (the codes agents dial).

use std::time::Duration;

use serde::Deserialize;

use super::{duration, Cidr};

/// Codes agents dial from their registered phone (`[features]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// Take a break: not rung until `resume`.
    pub pause: String,
    pub resume: String,
    /// Out of all groups until `log_in` (still registered).
    pub log_out: String,
    pub log_in: String,
}

/// Defences of the public edge: failed logins, request rates and bans (`[security]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Failed logins of one user name from one address within `auth_failure_window` before
    /// that user@address is banned for `ban_time`.
    pub max_auth_failures: u32,
    /// Failed logins from one address (any user names) before the address is banned.
    pub max_auth_failures_per_address: u32,
    #[serde(deserialize_with = "duration")]
    pub auth_failure_window: Duration,
    #[serde(deserialize_with = "duration")]
    pub ban_time: Duration,
    /// A digest nonce is usable this long, then answered with `stale=true`.
    #[serde(deserialize_with = "duration")]
    pub nonce_lifetime: Duration,
    /// Requests outside dialogs per second one address may sustain (trunks exempt); beyond
    /// `burst` at once the address is silenced for `ban_time`.
    pub rate: f64,
    pub burst: u32,
    /// Address blocks never rate-limited (a SIP front on this host); trunks are exempt anyway.
    pub rate_exempt: Vec<Cidr>,
    /// Calls in progress from one address (not a trunk's) beyond which new INVITEs get 503.
    pub max_calls_per_source: u32,
}

impl SecuritySettings {
    pub fn flood_policy(&self) -> crate::sip::flood::FloodPolicy {
        crate::sip::flood::FloodPolicy {
            rate: self.rate,
            burst: self.burst,
            ban_time: self.ban_time,
        }
    }
}

impl From<&SecuritySettings> for crate::sip::registrar::AuthPolicy {
    fn from(security: &SecuritySettings) -> Self {
        crate::sip::registrar::AuthPolicy {
            max_failures: security.max_auth_failures,
            max_failures_per_address: security.max_auth_failures_per_address,
            failure_window: security.auth_failure_window,
            ban_time: security.ban_time,
            nonce_lifetime: security.nonce_lifetime,
        }
    }
}
