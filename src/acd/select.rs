//! Agent selection for one waiting call: eligibility (free, not backing off, language),
//! priority tiers, then the group's strategy.

use super::types::{AgentId, AgentRecord, AgentState};
use crate::routing::model::{Agent, Group, Strategy};
use std::collections::BTreeMap;
use std::time::Instant;

/// An agent without a language list takes callers of any language.
pub(super) fn speaks(agent: &Agent, language: &str) -> bool {
    agent.languages.is_empty()
        || agent
            .languages
            .iter()
            .any(|spoken| spoken.value.eq_ignore_ascii_case(language))
}

struct Candidate<'a> {
    id: AgentId,
    /// Position in the group's agent list: the last tie-break and round-robin's order.
    index: usize,
    record: &'a AgentRecord,
}

/// The agents to ring now for a caller of `group` (empty: nobody eligible is free).
pub(super) fn choose(
    group: &Group,
    language: &str,
    widened: bool,
    agents: &BTreeMap<AgentId, AgentRecord>,
    last_rung: Option<&AgentId>,
    now: Instant,
) -> Vec<AgentId> {
    let mut candidates: Vec<(u32, Candidate)> = Vec::new();
    for (index, agent) in group.agents.iter().enumerate() {
        let id = AgentId::of(&agent.target);
        if candidates.iter().any(|(_, c)| c.id == id) {
            continue;
        }
        let Some(record) = agents.get(&id) else {
            continue;
        };
        let free = record.state == AgentState::Idle
            && record.paused.is_none()
            && record.backoff_until.is_none_or(|until| until <= now);
        if free && (widened || speaks(agent, language)) {
            candidates.push((agent.priority, Candidate { id, index, record }));
        }
    }
    let Some(best) = candidates.iter().map(|(priority, _)| *priority).min() else {
        return Vec::new();
    };
    let tier: Vec<Candidate> = candidates
        .into_iter()
        .filter(|(priority, _)| *priority == best)
        .map(|(_, candidate)| candidate)
        .collect();
    let pick = match group.strategy {
        Strategy::RingAll => return tier.into_iter().map(|c| c.id).collect(),
        Strategy::RoundRobin => {
            let last_index = last_rung.and_then(|last| {
                group
                    .agents
                    .iter()
                    .position(|agent| AgentId::of(&agent.target) == *last)
            });
            // The first candidate after the last one rung, wrapping around the list.
            match last_index {
                Some(last) => tier
                    .iter()
                    .find(|c| c.index > last)
                    .or_else(|| tier.first()),
                None => tier.first(),
            }
        }
        Strategy::LongestIdle => tier.iter().min_by_key(|c| (c.record.since, c.index)),
        Strategy::FewestCalls => tier
            .iter()
            .min_by_key(|c| (c.record.calls_answered, c.record.since, c.index)),
    };
    pick.map(|c| vec![c.id.clone()]).unwrap_or_default()
}
