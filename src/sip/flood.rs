//! Request limits per source address at the public edge: a token bucket per address for the
//! requests that start something (outside any dialog), a ban for an address that empties its
//! bucket or announces itself as a SIP scanner, and silence for banned addresses. Pure: time
//! comes in, and the map of sources is kept bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::warn;

use super::cidr::{in_any, Cidr};

/// User-Agent words of the common SIP scanners (sipvicious, sipcli, VaxSIPUserAgent, ...).
const SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sip-scan",
    "sipscan",
    "sipcli",
    "sipsak",
    "vaxsipuseragent",
    "iwar",
    "sundayddr",
    "smap",
    "pplsip",
];

/// Sources with a full bucket and no ban are forgotten beyond this many.
const SWEEP_ABOVE: usize = 10_000;

/// `[security]` rate settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodPolicy {
    /// Requests per second a source may sustain.
    pub rate: f64,
    /// Requests a source may send at once.
    pub burst: u32,
    pub ban_time: Duration,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Drop without an answer: the source is banned (or just got banned).
    Silence,
}

/// Counts since start, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodStats {
    /// Sources banned for exceeding the rate.
    pub flood_bans: u64,
    /// Sources banned for a scanner's User-Agent.
    pub scanner_bans: u64,
    /// Requests dropped because their source was banned.
    pub dropped: u64,
    /// Bans in force now.
    pub current_bans: usize,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    tokens: f64,
    refilled: Instant,
    banned_until: Option<Instant>,
    /// `flood` or `scanner`.
    ban_reason: &'static str,
}

#[derive(Debug)]
pub struct FloodGuard {
    policy: FloodPolicy,
    /// Never limited: the trunks' addresses and `security.rate_exempt`.
    exempt: Vec<Cidr>,
    sources: HashMap<IpAddr, Source>,
    stats: FloodStats,
}

impl FloodGuard {
    pub fn new(policy: FloodPolicy, exempt: Vec<Cidr>) -> Self {
        Self {
            policy,
            exempt,
            sources: HashMap::new(),
            stats: FloodStats::default(),
        }
    }

    /// Whether `ip` is never limited (a trunk, `security.rate_exempt`).
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        in_any(&self.exempt, ip)
    }

    /// Whether a message from `ip` is dropped before it is even parsed (the source is banned).
    pub fn is_banned(&mut self, now: Instant, ip: IpAddr) -> bool {
        let banned = self
            .sources
            .get(&ip)
            .and_then(|source| source.banned_until)
            .is_some_and(|until| now < until);
        if banned {
            self.stats.dropped += 1;
        }
        banned
    }

    /// Judges a parsed request: `opens` when it is outside any dialog (it costs a token),
    /// `user_agent` to recognise scanners.
    pub fn check(
        &mut self,
        now: Instant,
        ip: IpAddr,
        opens: bool,
        user_agent: Option<&str>,
    ) -> Verdict {
        if in_any(&self.exempt, ip) {
            return Verdict::Pass;
        }
        if user_agent.is_some_and(is_scanner) {
            self.stats.scanner_bans += 1;
            self.ban(now, ip, "scanner", user_agent);
            return Verdict::Silence;
        }
        if !opens {
            return Verdict::Pass;
        }
        let policy = self.policy;
        let source = self.sources.entry(ip).or_insert(Source {
            tokens: f64::from(policy.burst),
            refilled: now,
            banned_until: None,
            ban_reason: "",
        });
        let elapsed = now.saturating_duration_since(source.refilled).as_secs_f64();
        source.tokens = (source.tokens + elapsed * policy.rate).min(f64::from(policy.burst));
        source.refilled = now;
        if source.tokens >= 1.0 {
            source.tokens -= 1.0;
            if self.sources.len() > SWEEP_ABOVE {
                self.sweep(now);
            }
            return Verdict::Pass;
        }
        self.stats.flood_bans += 1;
        self.ban(now, ip, "flood", None);
        Verdict::Silence
    }

    fn ban(&mut self, now: Instant, ip: IpAddr, event: &'static str, user_agent: Option<&str>) {
        let until = now + self.policy.ban_time;
        let source = self.sources.entry(ip).or_insert(Source {
            tokens: 0.0,
            refilled: now,
            banned_until: None,
            ban_reason: event,
        });
        source.banned_until = Some(until);
        source.ban_reason = event;
        source.tokens = 0.0;
        warn!(
            "SECURITY event={event} src={ip} user=- seconds={} agent={}",
            self.policy.ban_time.as_secs(),
            user_agent.map(log_safe).unwrap_or_else(|| "-".to_owned())
        );
    }

    /// Forgets sources that are back to a full bucket and not banned.
    pub fn sweep(&mut self, now: Instant) {
        let policy = self.policy;
        self.sources.retain(|_, source| {
            let banned = source.banned_until.is_some_and(|until| now < until);
            let elapsed = now.saturating_duration_since(source.refilled).as_secs_f64();
            banned || source.tokens + elapsed * policy.rate < f64::from(policy.burst)
        });
    }

    /// Bans in force, when each ends and why (`flood`, `scanner`), by address.
    pub fn bans(&self, now: Instant) -> Vec<(IpAddr, Instant, &'static str)> {
        let mut bans: Vec<(IpAddr, Instant, &'static str)> = self
            .sources
            .iter()
            .filter_map(|(ip, source)| {
                let until = source.banned_until.filter(|until| now < *until)?;
                Some((*ip, until, source.ban_reason))
            })
            .collect();
        bans.sort();
        bans
    }

    /// Lifts the ban on `ip`; whether there was one.
    pub fn lift(&mut self, now: Instant, ip: IpAddr) -> bool {
        let lifted = self
            .sources
            .get(&ip)
            .and_then(|source| source.banned_until)
            .is_some_and(|until| now < until);
        self.sources.remove(&ip);
        if lifted {
            warn!("SECURITY event=ban_lifted src={ip} user=-");
        }
        lifted
    }

    pub fn stats(&self, now: Instant) -> FloodStats {
        FloodStats {
            current_bans: self.bans(now).len(),
            ..self.stats
        }
    }
}

/// Whether a User-Agent (or Server) value names a known SIP scanner.
pub fn is_scanner(user_agent: &str) -> bool {
    let lower = user_agent.to_ascii_lowercase();
    SCANNERS.iter().any(|word| lower.contains(word))
}

/// Untrusted text in a log line: spaces, `=` and control characters replaced, length capped.
fn log_safe(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| {
            if c.is_control() || c == ' ' || c == '=' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> FloodGuard {
        let policy = FloodPolicy {
            rate: 8.0,
            burst: 16,
            ban_time: Duration::from_secs(300),
        };
        FloodGuard::new(
            policy,
            vec![Cidr::new("127.0.0.1".parse().unwrap(), 32).unwrap()],
        )
    }

    const FLOODER: &str = "127.0.0.3";
    const CALLER: &str = "127.0.0.4";

    #[test]
    fn a_source_within_its_rate_passes_and_a_flood_is_banned_and_silenced_for_the_ban_time() {
        let mut guard = guard();
        let t0 = Instant::now();
        let flooder: IpAddr = FLOODER.parse().unwrap();
        let caller: IpAddr = CALLER.parse().unwrap();
        // 5 calls a second for a minute: always within 8/s.
        for tick in 0..300u64 {
            let now = t0 + Duration::from_millis(tick * 200);
            assert_eq!(guard.check(now, caller, true, Some("SIPp")), Verdict::Pass);
        }
        // The burst passes, the 17th request at once does not.
        for _ in 0..16 {
            assert_eq!(guard.check(t0, flooder, true, None), Verdict::Pass);
        }
        assert_eq!(guard.check(t0, flooder, true, None), Verdict::Silence);
        assert!(guard.is_banned(t0 + Duration::from_secs(299), flooder));
        assert!(!guard.is_banned(t0 + Duration::from_secs(300), flooder));
        assert_eq!(guard.stats(t0).flood_bans, 1);
        assert_eq!(
            guard.bans(t0),
            [(flooder, t0 + Duration::from_secs(300), "flood")]
        );
        // Requests inside dialogs cost nothing.
        let other: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(guard.check(t0, other, false, None), Verdict::Pass);
        }
    }

    #[test]
    fn scanners_are_banned_at_once_exempt_sources_never_and_a_ban_can_be_lifted() {
        let mut guard = guard();
        let now = Instant::now();
        let scanner: IpAddr = "127.0.0.7".parse().unwrap();
        let verdict = guard.check(now, scanner, true, Some("friendly-scanner"));
        assert_eq!(verdict, Verdict::Silence);
        assert!(guard.is_banned(now, scanner));
        assert_eq!(guard.stats(now).scanner_bans, 1);
        assert!(guard.lift(now, scanner));
        assert!(!guard.is_banned(now, scanner));
        let front: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert_eq!(
                guard.check(now, front, true, Some("sipvicious")),
                Verdict::Pass
            );
        }
        assert!(is_scanner("VaxSIPUserAgent/3.1"));
        assert!(!is_scanner("baresip v3.0.0 (x86_64/linux)"));
    }

    #[test]
    fn sources_back_to_a_full_bucket_are_forgotten() {
        let mut guard = guard();
        let t0 = Instant::now();
        for n in 0..100u8 {
            let ip = IpAddr::from([10, 0, 0, n]);
            guard.check(t0, ip, true, None);
        }
        guard.sweep(t0 + Duration::from_secs(1));
        assert!(guard.sources.is_empty());
    }
}
