//! The calls a trunk delivers: which trunk a new INVITE comes through (its source address;
//! with several trunks on one address, the one delivering the dialled number), whether the
//! trunk delivers that number (else 404), the caller's number in E.164, and `max_calls`.

use std::time::Instant;

use tracing::warn;

use super::TrunkCall;
use crate::call::Switchboard;
use crate::settings::CallerIdHeader;
use crate::sip::cidr::in_any;
use crate::sip::message;
use crate::sip::transport::Peer;

impl Switchboard {
    /// Which trunk an INVITE from `from` comes through, if any, with the caller's number; a
    /// dialled number the trunk does not deliver is refused with 404.
    pub(in crate::call) fn identify_trunk(
        &self,
        from: Peer,
        invite: &rsip::Request,
    ) -> Result<Option<TrunkCall>, u16> {
        let Some(call) = self.identify_trunk_quietly(from, invite) else {
            return Ok(None);
        };
        if self.delivers(call.line, invite) {
            Ok(Some(call))
        } else {
            Err(404)
        }
    }

    /// Whether the trunk delivers the number the INVITE dials: the Request-URI user, or (when
    /// the carrier calls our registered Contact) the To user, one of its `numbers`.
    fn delivers(&self, line: usize, invite: &rsip::Request) -> bool {
        let (Some(rules), Some(line)) = (&self.trunks.rules, self.trunks.lines.get(line)) else {
            return false;
        };
        let delivers = |user: Option<String>| {
            user.is_some_and(|user| rules.is_one_of(&user, &line.setup.numbers))
        };
        let to_user = message::header_value(invite, "To").and_then(uri_user);
        delivers(invite.uri.user().map(str::to_owned)) || delivers(to_user)
    }

    /// The trunk `from` belongs to and the caller's number it gives, without judging the call.
    /// Several trunks on one carrier address: the one delivering the dialled number.
    pub(in crate::call) fn identify_trunk_quietly(
        &self,
        from: Peer,
        invite: &rsip::Request,
    ) -> Option<TrunkCall> {
        let rules = self.trunks.rules.as_ref()?;
        let candidates: Vec<usize> = (0..self.trunks.lines.len())
            .filter(|line| {
                let setup = &self.trunks.lines[*line].setup;
                if setup.inbound.is_empty() {
                    self.trunks.lines[*line]
                        .resolved
                        .iter()
                        .any(|addr| addr.ip() == from.addr.ip())
                } else {
                    in_any(&setup.inbound, from.addr.ip())
                }
            })
            .collect();
        let line = candidates
            .iter()
            .copied()
            .find(|line| self.delivers(*line, invite))
            .or_else(|| candidates.first().copied())?;
        let setup = &self.trunks.lines[line].setup;
        let from_header = message::header_value(invite, "From");
        let identity = match setup.caller_id {
            CallerIdHeader::Pai => message::header_value(invite, "P-Asserted-Identity"),
            CallerIdHeader::Rpid => message::header_value(invite, "Remote-Party-ID"),
            CallerIdHeader::From => None,
        }
        .or(from_header);
        let caller = identity
            .and_then(uri_user)
            .and_then(|user| rules.normalise(&user))
            .unwrap_or_default();
        Some(TrunkCall {
            line,
            name: setup.name.clone(),
            caller,
        })
    }

    /// Takes a trunk call if the trunk's `max_calls` and `max_cps` allow; false: refuse with 503.
    pub(in crate::call) fn trunk_line_taken(&mut self, now: Instant, line: usize) -> bool {
        let line = &mut self.trunks.lines[line];
        if line
            .setup
            .max_calls
            .is_some_and(|max| line.calls_active >= max)
        {
            warn!(trunk = %line.setup.name, max = line.calls_active, "trunk at max_calls: 503");
            return false;
        }
        if let Some(cps) = line.setup.max_cps.map(f64::from) {
            let elapsed = line.cps_refilled.map_or(cps, |at| {
                now.saturating_duration_since(at).as_secs_f64() * cps
            });
            line.cps_tokens = (line.cps_tokens + elapsed).min(cps);
            line.cps_refilled = Some(now);
            if line.cps_tokens < 1.0 {
                warn!(trunk = %line.setup.name, cps, "trunk at max_cps: 503");
                return false;
            }
            line.cps_tokens -= 1.0;
        }
        line.calls_active += 1;
        line.calls_total += 1;
        true
    }

    pub(in crate::call) fn trunk_line_released(&mut self, line: usize) {
        if let Some(line) = self.trunks.lines.get_mut(line) {
            line.calls_active = line.calls_active.saturating_sub(1);
        }
    }
}

/// The user part of a name-addr or URI header value (`"Name" <sip:868712345@host>;tag=x`).
pub(in crate::call) fn uri_user(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(start), Some(end)) if start < end => &value[start + 1..end],
        _ => value.split(';').next().unwrap_or_default(),
    };
    let rest = uri
        .trim()
        .strip_prefix("sip:")
        .or_else(|| uri.trim().strip_prefix("sips:"))
        .or_else(|| uri.trim().strip_prefix("tel:"))?;
    let user = match rest.split_once('@') {
        Some((user, _)) => user,
        None if uri.trim().starts_with("tel:") => rest,
        None => return None,
    };
    let user = user.split(';').next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::uri_user;

    #[test]
    fn the_user_of_name_addrs_and_uris() {
        assert_eq!(
            uri_user("\"Jonas\" <sip:868712345@carrier.example>;tag=1").as_deref(),
            Some("868712345")
        );
        assert_eq!(
            uri_user("<tel:+37068712345>").as_deref(),
            Some("+37068712345")
        );
        assert_eq!(
            uri_user("sip:19118@127.0.0.5;user=phone").as_deref(),
            Some("19118")
        );
        assert_eq!(uri_user("<sip:carrier.example>"), None);
    }
}
