//! The live picture for supervisors (HTTP API, metrics, dashboard): calls, queues and agents
//! as the switchboard sees them now, plus the counts since start the driver adds. The HTTP
//! layer serves it as JSON; the driver republishes it about once a second.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::caller::CallState;
use super::Switchboard;
use crate::acd::{Acd, AgentState};

#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveSnapshot {
    pub at: Option<DateTime<Utc>>,
    pub calls: Vec<LiveCall>,
    pub queues: Vec<QueueLive>,
    pub agents: Vec<AgentLive>,
    /// Carrier trunks: registration or keep-alive state, last error, next retry, calls.
    pub trunks: Vec<super::TrunkLive>,
    /// The public edge's defences: events since start and the bans in force.
    pub security: SecurityLive,
    /// Since the service started: calls by outcome, group and language.
    pub outcomes: Vec<OutcomeCount>,
    /// Since the service started: calls by DTMF mode (rfc4733, sip-info, inband, none).
    pub dtmf_modes: BTreeMap<String, u64>,
    /// Callback requests not yet connected, oldest first.
    pub callbacks: Vec<CallbackLive>,
}

/// A resident waiting to be called back.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackLive {
    pub group: String,
    pub language: String,
    /// E.164.
    pub number: String,
    /// `queued` (in the group's queue, keeping the caller's place), `calling` (an agent took
    /// it and the resident is being dialled) or `waiting` (the next attempt comes later).
    pub state: String,
    /// Dials made so far.
    pub attempts: u32,
    /// Since the resident asked.
    pub waiting_s: u64,
    /// Place in the group's queue while queued.
    pub position: Option<u32>,
    /// Seconds until the next attempt while waiting.
    pub next_attempt_s: Option<u64>,
}

/// Security counters since start and the bans in force now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SecurityLive {
    /// Events since start, by name: `auth_failed`, `login_banned`, `banned_request`,
    /// `nonce_replay`, `uri_mismatch`, `flood`, `scanner`, `dropped`.
    pub events: BTreeMap<String, u64>,
    pub bans: Vec<BanLive>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BanLive {
    pub address: String,
    /// `flood`, `scanner` (silenced), `login` (REGISTER refused from the address) or
    /// `login:USER` (that user from that address).
    pub reason: String,
    pub seconds_left: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    /// `menu`, `queued`, `ringing`, `connected`, `ending`.
    pub state: String,
    pub language: Option<String>,
    pub group: Option<String>,
    pub since_s: u64,
}

/// One group's queue. Every configured group is listed, with 0 waiting when nobody waits.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueLive {
    pub group: String,
    pub waiting: usize,
    pub longest_wait_s: u64,
    /// The group's display name per language (routing `name`); empty for a group no longer
    /// configured.
    pub names: BTreeMap<String, String>,
    /// Agents of the group who are idle and not paused: they can take a caller now.
    pub agents_available: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentLive {
    pub agent: String,
    /// `idle`, `ringing`, `on_call`, `wrap_up`, `unregistered`, or, when free but not taking
    /// calls, `paused`, `logged_out` or `auto_paused`.
    pub state: String,
    pub since_s: u64,
    pub calls_answered: u64,
    /// The groups (routing keys) whose agent list names this agent, in key order.
    pub groups: Vec<String>,
    /// The languages the agent takes in any of its groups, in first-seen order; empty when
    /// a group lists the agent without languages (any language).
    pub languages: Vec<String>,
    /// While ringing or on a call: the group of that call.
    pub call_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct OutcomeCount {
    pub outcome: String,
    pub group: String,
    pub language: String,
    pub calls: u64,
}

impl Switchboard {
    /// Calls, queues and agents as a supervisor sees them now.
    pub fn live(&self, now: Instant) -> LiveSnapshot {
        let wall = self.wall(now);
        let seconds_since = |then: Option<SystemTime>| {
            then.and_then(|then| wall.duration_since(then).ok())
                .map_or(0, |d| d.as_secs())
        };
        let mut queues: BTreeMap<String, QueueLive> = BTreeMap::new();
        let mut calls = Vec::with_capacity(self.calls.len());
        for (id, call) in &self.calls {
            let summary = call.flow.summary();
            let state = if call.state == CallState::Ending {
                "ending"
            } else if self.is_callback_line(*id) && !call.bridged {
                "calling_back"
            } else if call.bridged {
                "connected"
            } else if !call.agent_legs.is_empty() {
                "ringing"
            } else if call.queue.is_some() {
                "queued"
            } else {
                "menu"
            };
            if let (Some(queued), "queued" | "ringing") = (&call.queue, state) {
                let waited = seconds_since(summary.queue_entered);
                let entry = queues.entry(queued.group.clone()).or_insert(QueueLive {
                    group: queued.group.clone(),
                    waiting: 0,
                    longest_wait_s: 0,
                    names: BTreeMap::new(),
                    agents_available: 0,
                });
                entry.waiting += 1;
                entry.longest_wait_s = entry.longest_wait_s.max(waited);
            }
            calls.push(LiveCall {
                call_id: call.call_id.clone(),
                state: state.to_owned(),
                language: summary.language.clone(),
                group: summary.group.clone(),
                since_s: seconds_since(call.facts.arrived),
            });
        }
        // Longest first, so the snapshot reads the same whatever order the calls are kept in.
        calls.sort_by(|a, b| b.since_s.cmp(&a.since_s).then(a.call_id.cmp(&b.call_id)));
        let routing = self.acd.as_ref().map(Acd::routing);
        // Each agent's groups and languages, from the routing the ACD works with.
        let mut membership: BTreeMap<String, (Vec<String>, Vec<String>, bool)> = BTreeMap::new();
        for (key, group) in routing.map(|routing| &routing.groups).into_iter().flatten() {
            for member in &group.agents {
                let id = crate::acd::AgentId::of(&member.target).0;
                let (groups, languages, any_language) = membership.entry(id).or_default();
                if !groups.contains(key) {
                    groups.push(key.clone());
                }
                *any_language |= member.languages.is_empty();
                for language in &member.languages {
                    if !languages.contains(&language.value) {
                        languages.push(language.value.clone());
                    }
                }
            }
        }
        let agents: Vec<AgentLive> = self
            .acd
            .as_ref()
            .map(Acd::agent_states)
            .unwrap_or_default()
            .into_iter()
            .map(|agent| {
                let (groups, languages, any_language) =
                    membership.get(&agent.agent.0).cloned().unwrap_or_default();
                let call_group = match agent.state {
                    AgentState::Ringing(call) | AgentState::OnCall(call) => self
                        .acd
                        .as_ref()
                        .and_then(|acd| acd.call_group(call))
                        .map(str::to_owned),
                    _ => None,
                };
                let registers = agent.agent.is_user();
                AgentLive {
                    agent: agent.agent.0,
                    state: match (agent.state, agent.paused) {
                        (AgentState::Idle | AgentState::WrapUp { .. }, Some(pause)) => {
                            pause.as_str()
                        }
                        (state, _) => match state {
                            AgentState::Idle => "idle",
                            AgentState::Ringing(_) => "ringing",
                            AgentState::OnCall(_) => "on_call",
                            AgentState::WrapUp { .. } => "wrap_up",
                            AgentState::Offline if registers => "unregistered",
                            AgentState::Offline => "unreachable",
                        },
                    }
                    .to_owned(),
                    since_s: now.saturating_duration_since(agent.since).as_secs(),
                    calls_answered: agent.calls_answered,
                    groups,
                    languages: if any_language { Vec::new() } else { languages },
                    call_group,
                }
            })
            .collect();
        // Every configured group has a queue entry, so gauges read 0 rather than vanish.
        for (key, group) in routing.map(|routing| &routing.groups).into_iter().flatten() {
            let entry = queues.entry(key.clone()).or_insert_with(|| QueueLive {
                group: key.clone(),
                waiting: 0,
                longest_wait_s: 0,
                names: BTreeMap::new(),
                agents_available: 0,
            });
            entry.names = group.name.value.clone();
            entry.agents_available = agents
                .iter()
                .filter(|agent| agent.state == "idle" && agent.groups.contains(key))
                .count();
        }
        LiveSnapshot {
            at: Some(DateTime::<Utc>::from(wall)),
            calls,
            queues: queues.into_values().collect(),
            agents,
            trunks: self.trunks_live(now),
            security: self.security_live(now),
            callbacks: self.callbacks_live(now),
            ..LiveSnapshot::default()
        }
    }
}

impl Switchboard {
    fn security_live(&self, now: Instant) -> SecurityLive {
        let logins = self.ua.security_stats(now);
        let flood = self.ua.flood_stats(now);
        let events = [
            ("auth_failed", logins.auth_failures),
            ("login_banned", logins.bans),
            ("banned_request", logins.banned_requests),
            ("nonce_replay", logins.nonce_replays),
            ("uri_mismatch", logins.uri_mismatches),
            ("flood", flood.flood_bans),
            ("scanner", flood.scanner_bans),
            ("dropped", flood.dropped),
        ]
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
        let seconds_left = |until: Instant| until.saturating_duration_since(now).as_secs();
        let mut bans: Vec<BanLive> = self
            .ua
            .flood_bans(now)
            .into_iter()
            .map(|(ip, until, reason)| BanLive {
                address: ip.to_string(),
                reason: reason.to_owned(),
                seconds_left: seconds_left(until),
            })
            .collect();
        bans.extend(self.ua.bans(now).into_iter().map(|(key, until)| {
            let (address, reason) = match key {
                crate::sip::registrar::BanKey::Address(ip) => (ip.to_string(), "login".to_owned()),
                crate::sip::registrar::BanKey::UserAt(user, ip) => {
                    (ip.to_string(), format!("login:{user}"))
                }
            };
            BanLive {
                address,
                reason,
                seconds_left: seconds_left(until),
            }
        }));
        SecurityLive { events, bans }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{answered_and_agent_invite, bridging_harness};

    #[test]
    fn the_snapshot_lists_every_group_and_each_agents_groups_and_languages() {
        let mut h = bridging_harness();
        let now = h.sim.now;
        let live = h.switchboard().live(now);
        let groups: Vec<&str> = live.queues.iter().map(|q| q.group.as_str()).collect();
        assert!(
            groups.contains(&"water") && groups.contains(&"registry"),
            "{groups:?}"
        );
        assert!(live.queues.iter().all(|queue| queue.waiting == 0));
        let heating = live.queues.iter().find(|q| q.group == "heating").unwrap();
        assert_eq!(heating.names["en"], "Vilnius Heating Networks");
        assert_eq!(heating.names["lt"], "Vilniaus šilumos tinklai");
        assert_eq!(heating.agents_available, 2);
        let agent = |live: &super::LiveSnapshot, id: &str| {
            live.agents
                .iter()
                .find(|agent| agent.agent == id)
                .cloned()
                .unwrap()
        };
        let heating_2 = agent(&live, "sip:heating-2@127.0.0.1:5312");
        assert_eq!(heating_2.groups, ["heating"]);
        assert_eq!(heating_2.languages, ["lt", "en"]);
        assert_eq!(heating_2.call_group, None);

        // Rung for an English caller of heating: ringing, for heating, no longer available.
        answered_and_agent_invite(&mut h, "live-1");
        let now = h.sim.now;
        let live = h.switchboard().live(now);
        let heating_2 = agent(&live, "sip:heating-2@127.0.0.1:5312");
        assert_eq!(heating_2.state, "ringing");
        assert_eq!(heating_2.call_group.as_deref(), Some("heating"));
        let heating = live.queues.iter().find(|q| q.group == "heating").unwrap();
        assert_eq!((heating.waiting, heating.agents_available), (1, 1));
    }
}
