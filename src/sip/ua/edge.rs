//! The user agent's public edge: which sources may open calls and registrations, per-source
//! rate limits and scanner bans, login bans, and their figures for supervisors.

use std::net::IpAddr;
use std::time::Instant;

use super::UserAgent;
use crate::sip::cidr::Cidr;
use crate::sip::flood::{FloodGuard, FloodStats};
use crate::sip::message;
use crate::sip::registrar::{BanKey, SecurityStats};
use crate::sip::transport::Peer;

impl UserAgent {
    /// The registrar's security counters (all zero without a registrar).
    pub fn security_stats(&self, now: Instant) -> SecurityStats {
        self.registrar
            .as_ref()
            .map(|registrar| registrar.security_stats(now))
            .unwrap_or_default()
    }

    /// Login bans in force and when each ends.
    pub fn bans(&self, now: Instant) -> Vec<(BanKey, Instant)> {
        self.registrar
            .as_ref()
            .map(|registrar| registrar.bans(now))
            .unwrap_or_default()
    }

    /// Lifts the login bans on `ip`; returns how many there were.
    pub fn lift_ban(&mut self, ip: IpAddr) -> usize {
        self.registrar
            .as_mut()
            .map(|registrar| registrar.lift_ban(ip))
            .unwrap_or(0)
    }

    /// Only these address blocks may start calls, registrations or subscriptions (`None`:
    /// anyone); requests inside existing dialogs are not affected.
    pub fn admit_only(&mut self, blocks: Option<Vec<Cidr>>) {
        self.admitted = blocks;
    }

    /// Limits each source's requests outside dialogs (trunks and `exempt` blocks never).
    pub fn limit_sources(&mut self, guard: FloodGuard) {
        self.flood = Some(guard);
    }

    /// Whether `ip` is exempt from the source limits (no limits: everyone is).
    pub fn is_limit_exempt(&self, ip: IpAddr) -> bool {
        self.flood.as_ref().is_none_or(|guard| guard.is_exempt(ip))
    }

    /// The source limits' counters (all zero without limits).
    pub fn flood_stats(&self, now: Instant) -> FloodStats {
        self.flood
            .as_ref()
            .map(|guard| guard.stats(now))
            .unwrap_or_default()
    }

    /// Addresses silenced for flooding or scanning, when each ban ends and why.
    pub fn flood_bans(&self, now: Instant) -> Vec<(IpAddr, Instant, &'static str)> {
        self.flood
            .as_ref()
            .map(|guard| guard.bans(now))
            .unwrap_or_default()
    }

    /// Lifts every ban on `ip` (login bans and flood bans); how many there were.
    pub fn lift_bans(&mut self, now: Instant, ip: IpAddr) -> usize {
        let flood = self.flood.as_mut().is_some_and(|guard| guard.lift(now, ip));
        self.lift_ban(ip) + usize::from(flood)
    }

    /// Whether `from` may send `request`: new INVITE, REGISTER and SUBSCRIBE only from the
    /// admitted blocks; anything inside a dialog (it has our To tag) from anyone.
    pub(super) fn admits(&self, from: Peer, request: &rsip::Request) -> bool {
        let Some(blocks) = &self.admitted else {
            return true;
        };
        let opens_something = matches!(
            request.method,
            rsip::Method::Invite | rsip::Method::Register | rsip::Method::Subscribe
        ) && message::to_tag(request).is_none();
        !opens_something || crate::sip::cidr::in_any(blocks, from.addr.ip())
    }
}
