//! OPTIONS probes of static agents' phones (`uri = "sip:..."` in a group), as Asterisk's
//! `qualify`: a phone that does not answer is offline (shown unreachable, never rung) until it
//! answers again. Registered agents need none: their registration says whether they are there.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tracing::debug;

use super::Switchboard;
use crate::acd::{AcdInput, AgentId};
use crate::routing::model::AgentTarget;
use crate::routing::Routing;
use crate::sip::ua::RequestId;

/// Every static agent's next probe, and the probes awaiting an answer.
#[derive(Default)]
pub(super) struct AgentProbes {
    /// Zero: phones are not probed (and count as reachable).
    interval: Duration,
    /// Static agents' URIs and when each is probed next (None while a probe is out).
    next: BTreeMap<String, Option<Instant>>,
    in_flight: HashMap<RequestId, String>,
}

impl AgentProbes {
    fn next_due(&self) -> Option<Instant> {
        self.next.values().flatten().min().copied()
    }
}

impl Switchboard {
    /// Probes every static agent's phone this often (`sip.agent_probe`; zero: never).
    pub fn set_agent_probe(&mut self, interval: Duration) {
        self.probes.interval = interval;
        if interval.is_zero() {
            self.probes.next.clear();
        }
    }

    /// Keeps the probed phones in step with the routing: new static agents are first probed
    /// one interval from now (a phone that starts after the service is not marked down).
    pub(super) fn sync_probes(&mut self, now: Instant, routing: &Routing) {
        if self.probes.interval.is_zero() {
            return;
        }
        let uris: std::collections::BTreeSet<&str> = routing
            .groups
            .values()
            .flat_map(|group| &group.agents)
            .filter_map(|agent| match &agent.target {
                AgentTarget::Uri(uri) => Some(uri.value.as_str()),
                AgentTarget::User(_) => None,
            })
            .collect();
        let probes = &mut self.probes;
        probes.next.retain(|uri, _| uris.contains(uri.as_str()));
        probes
            .in_flight
            .retain(|_, uri| uris.contains(uri.as_str()));
        for uri in uris {
            probes
                .next
                .entry(uri.to_owned())
                .or_insert(Some(now + probes.interval));
        }
    }

    pub(super) fn probes_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .probes
            .next
            .iter()
            .filter(|(_, at)| at.is_some_and(|at| at <= now))
            .map(|(uri, _)| uri.clone())
            .collect();
        for uri in due {
            let sent = super::agent::agent_peer(&uri)
                .ok_or_else(|| "no IP address and port in the URI".to_owned())
                .and_then(|peer| {
                    self.ua
                        .send_options(now, &uri, peer)
                        .map_err(|error| error.to_string())
                });
            match sent {
                Ok(request) => {
                    self.probes.next.insert(uri.clone(), None);
                    self.probes.in_flight.insert(request, uri);
                }
                Err(reason) => {
                    debug!(%uri, %reason, "agent's phone cannot be probed");
                    self.probes
                        .next
                        .insert(uri.clone(), Some(now + self.probes.interval));
                    self.phone_reachable(now, uri, false);
                }
            }
        }
    }

    pub(super) fn probes_poll_timeout(&self) -> Option<Instant> {
        self.probes.next_due()
    }

    /// The answer (any final response: the phone is there) or failure of a request, if it
    /// was a probe; false when the request is someone else's.
    pub(super) fn probe_answered(
        &mut self,
        now: Instant,
        request: RequestId,
        answered: bool,
    ) -> bool {
        let Some(uri) = self.probes.in_flight.remove(&request) else {
            return false;
        };
        if let Some(next) = self.probes.next.get_mut(&uri) {
            *next = Some(now + self.probes.interval);
        }
        self.phone_reachable(now, uri, answered);
        true
    }

    fn phone_reachable(&mut self, now: Instant, uri: String, reachable: bool) {
        let input = AcdInput::Online {
            agent: AgentId(uri),
            online: reachable,
        };
        self.report_to_acd(now, input);
    }
}
