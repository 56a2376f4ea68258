//! Brute-force defence for the registrar: authentication failures counted per user@address
//! and per address in a sliding window, temporary bans past a threshold, the security log
//! line (`SECURITY event=... src=IP user=...`) and the counters behind it. Pure: time is input.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::warn;

/// Past this many tracked keys, entries with no failure left in the window are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// How the registrar treats failed logins and nonces (settings `[security]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Failures of one user name from one address within `failure_window` before a ban.
    pub max_failures: u32,
    /// Failures from one address (any user names) within `failure_window` before a ban: higher,
    /// so one office behind NAT is not locked out by a single misconfigured phone.
    pub max_failures_per_address: u32,
    pub failure_window: Duration,
    pub ban_time: Duration,
    /// A nonce is usable this long after its challenge, then answered with `stale=true`.
    pub nonce_lifetime: Duration,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            max_failures: 10,
            max_failures_per_address: 30,
            failure_window: Duration::from_secs(15 * 60),
            ban_time: Duration::from_secs(300),
            nonce_lifetime: Duration::from_secs(300),
        }
    }
}

/// Security counters since start (for Prometheus), and current bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecurityStats {
    /// Wrong password, unknown user or wrong realm.
    pub auth_failures: u64,
    /// Bans started (per address or per user@address).
    pub bans: u64,
    /// REGISTERs refused because their address or user@address is banned.
    pub banned_requests: u64,
    /// Nonces reused with an old count, or from an address they were not issued to.
    pub nonce_replays: u64,
    /// Digest `uri` differing from the Request-URI.
    pub uri_mismatches: u64,
    /// Bans in force now.
    pub current_bans: usize,
}

/// Who a failure count or a ban is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanKey {
    Address(IpAddr),
    UserAt(String, IpAddr),
}

impl std::fmt::Display for BanKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanKey::Address(ip) => write!(f, "{ip}"),
            BanKey::UserAt(user, ip) => write!(f, "{}@{ip}", log_safe(user)),
        }
    }
}

#[derive(Debug)]
pub(super) struct Guard {
    pub policy: AuthPolicy,
    failures: HashMap<BanKey, VecDeque<Instant>>,
    bans: HashMap<BanKey, Instant>,
    pub stats: SecurityStats,
}

impl Guard {
    pub fn new(policy: AuthPolicy) -> Self {
        Self {
            policy,
            failures: HashMap::new(),
            bans: HashMap::new(),
            stats: SecurityStats::default(),
        }
    }

    /// Whether requests from `ip` (naming `user`, when known) are refused now.
    pub fn is_banned(&mut self, now: Instant, ip: IpAddr, user: Option<&str>) -> bool {
        self.bans.retain(|_, until| *until > now);
        let banned = self.bans.contains_key(&BanKey::Address(ip))
            || user
                .is_some_and(|user| self.bans.contains_key(&BanKey::UserAt(user.to_owned(), ip)));
        if banned {
            self.stats.banned_requests += 1;
        }
        banned
    }

    /// Counts a failed login of `user` from `ip`; bans what crossed its threshold.
    pub fn failed(&mut self, now: Instant, ip: IpAddr, user: &str) {
        self.stats.auth_failures += 1;
        security_event("auth_failed", ip, Some(user));
        let window = self.policy.failure_window;
        let limits = [
            (
                BanKey::UserAt(user.to_owned(), ip),
                self.policy.max_failures,
            ),
            (BanKey::Address(ip), self.policy.max_failures_per_address),
        ];
        for (key, limit) in limits {
            let times = self.failures.entry(key.clone()).or_default();
            times.retain(|at| now.saturating_duration_since(*at) < window);
            times.push_back(now);
            if times.len() >= limit.max(1) as usize {
                times.clear();
                self.bans.insert(key.clone(), now + self.policy.ban_time);
                self.stats.bans += 1;
                warn!(
                    "SECURITY event=banned src={ip} user={} key={key} seconds={}",
                    log_safe(user),
                    self.policy.ban_time.as_secs()
                );
            }
        }
        if self.failures.len() > PRUNE_ABOVE {
            self.failures.retain(|_, times| {
                times.retain(|at| now.saturating_duration_since(*at) < window);
                !times.is_empty()
            });
        }
    }

    /// A correct login forgets that user's failures from that address (not the address's).
    pub fn succeeded(&mut self, ip: IpAddr, user: &str) {
        self.failures.remove(&BanKey::UserAt(user.to_owned(), ip));
    }

    /// Bans in force, with the instant each ends.
    pub fn bans(&self, now: Instant) -> Vec<(BanKey, Instant)> {
        let mut bans: Vec<_> = self
            .bans
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(key, until)| (key.clone(), *until))
            .collect();
        bans.sort();
        bans
    }

    /// Lifts every ban on `ip` (the address's and its users'); returns how many.
    pub fn lift(&mut self, ip: IpAddr) -> usize {
        let before = self.bans.len();
        self.bans.retain(|key, _| match key {
            BanKey::Address(banned) | BanKey::UserAt(_, banned) => *banned != ip,
        });
        self.failures.retain(|key, _| match key {
            BanKey::Address(failed) | BanKey::UserAt(_, failed) => *failed != ip,
        });
        before - self.bans.len()
    }

    pub fn stats(&self, now: Instant) -> SecurityStats {
        SecurityStats {
            current_bans: self.bans.values().filter(|until| **until > now).count(),
            ..self.stats
        }
    }
}

/// One line per security event, stable for fail2ban: `SECURITY event=NAME src=IP user=NAME`.
pub(super) fn security_event(event: &str, ip: IpAddr, user: Option<&str>) {
    warn!(
        "SECURITY event={event} src={ip} user={}",
        user.map(log_safe).unwrap_or_else(|| "-".to_owned())
    );
}

/// A user name as the attacker sent it, made harmless for a log line (no spaces, `=`,
/// control characters; at most 64 characters).
pub fn log_safe(user: &str) -> String {
    let cleaned: String = user
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "-".to_owned()
    } else {
        cleaned
    }
}
