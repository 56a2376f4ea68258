//! `GET /metrics`: the live snapshot (plus the records closed as interrupted at start), the
//! call-record spool's length and the records held in memory or lost, in the Prometheus
//! text exposition format 0.0.4. Counters count since the service started (Prometheus handles
//! the reset at restart); gauges are the state at the snapshot's time.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::live::{LiveSnapshot, OutcomeCount};
use super::server::HttpState;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Agent states always exported, so a state with no agents reads 0 rather than vanishing.
const AGENT_STATES: &[&str] = &[
    "idle",
    "ringing",
    "on_call",
    "wrap_up",
    "unregistered",
    "unreachable",
    "paused",
    "logged_out",
    "auto_paused",
];
/// DTMF modes always exported (see `cdr::DtmfMode`).
const DTMF_MODES: &[&str] = &["rfc4733", "sip-info", "inband", "none"];
/// States of a pending callback request, always exported (see `LiveSnapshot::callbacks`).
const CALLBACK_STATES: &[&str] = &["queued", "calling", "waiting"];

pub async fn handler(State(state): State<HttpState>) -> impl IntoResponse {
    let mut snapshot = state.live.borrow().clone();
    add_interrupted(&mut snapshot, state.store.interrupted_closed());
    let mut text = render(&snapshot);
    family(
        &mut text,
        "hotline_cdr_spooled_records",
        "gauge",
        "Call-record entries (a call's start, its end) waiting in the spool for the database.",
    );
    sample(
        &mut text,
        "hotline_cdr_spooled_records",
        &[],
        state.store.spooled_records() as u64,
    );
    let health = state.store.health();
    family(
        &mut text,
        "hotline_cdr_held_records",
        "gauge",
        "Call-record entries kept in memory because neither the database nor the spool takes them.",
    );
    sample(
        &mut text,
        "hotline_cdr_held_records",
        &[],
        health.held() as u64,
    );
    family(
        &mut text,
        "hotline_cdr_lost_records_total",
        "counter",
        "Call-record entries lost since start (memory for unstored records full, or held at stop).",
    );
    sample(
        &mut text,
        "hotline_cdr_lost_records_total",
        &[],
        health.lost(),
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// Records this service closed as `interrupted` at start (calls a killed run left open) are
/// calls completed since the service started too: counted under that outcome, without group
/// and language (an open record has neither).
fn add_interrupted(snapshot: &mut LiveSnapshot, closed: u64) {
    if closed > 0 {
        snapshot.outcomes.push(OutcomeCount {
            outcome: crate::cdr::Outcome::Interrupted.as_str().to_owned(),
            group: "none".to_owned(),
            language: "none".to_owned(),
            calls: closed,
        });
    }
}

/// The exposition text for one snapshot.
pub fn render(snapshot: &LiveSnapshot) -> String {
    let mut out = String::new();

    // The service may report the same key twice; one series per label set is required.
    let mut outcomes: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for count in &snapshot.outcomes {
        *outcomes
            .entry((&count.outcome, &count.group, &count.language))
            .or_default() += count.calls;
    }
    family(
        &mut out,
        "hotline_calls_total",
        "counter",
        "Calls completed since the service started, by outcome, group and language.",
    );
    for ((outcome, group, language), calls) in &outcomes {
        sample(
            &mut out,
            "hotline_calls_total",
            &[
                ("outcome", outcome),
                ("group", group),
                ("language", language),
            ],
            *calls,
        );
    }

    family(
        &mut out,
        "hotline_calls_in_progress",
        "gauge",
        "Calls in progress (menus, queued, ringing, connected or ending).",
    );
    sample(
        &mut out,
        "hotline_calls_in_progress",
        &[],
        snapshot.calls.len() as u64,
    );

    // The snapshot lists every configured group, so each has its gauges, 0 when empty.
    let mut queues: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for queue in &snapshot.queues {
        let entry = queues.entry(&queue.group).or_default();
        entry.0 += queue.waiting as u64;
        entry.1 = entry.1.max(queue.longest_wait_s);
        entry.2 = entry.2.max(queue.agents_available as u64);
    }
    family(
        &mut out,
        "hotline_queue_waiting_calls",
        "gauge",
        "Callers waiting in each group's queue.",
    );
    for (group, (waiting, _, _)) in &queues {
        sample(
            &mut out,
            "hotline_queue_waiting_calls",
            &[("group", group)],
            *waiting,
        );
    }
    family(
        &mut out,
        "hotline_queue_longest_wait_seconds",
        "gauge",
        "Wait of the caller waiting longest in each group's queue.",
    );
    for (group, (_, longest, _)) in &queues {
        sample(
            &mut out,
            "hotline_queue_longest_wait_seconds",
            &[("group", group)],
            *longest,
        );
    }
    family(
        &mut out,
        "hotline_queue_agents_available",
        "gauge",
        "Agents of each group who are idle and not paused.",
    );
    for (group, (_, _, available)) in &queues {
        sample(
            &mut out,
            "hotline_queue_agents_available",
            &[("group", group)],
            *available,
        );
    }

    let mut agents: BTreeMap<&str, u64> = AGENT_STATES.iter().map(|state| (*state, 0)).collect();
    for agent in &snapshot.agents {
        *agents.entry(&agent.state).or_default() += 1;
    }
    family(
        &mut out,
        "hotline_agents",
        "gauge",
        "Agents by state (idle, ringing, on_call, wrap_up, unregistered, unreachable, paused, logged_out, auto_paused).",
    );
    for (state, count) in &agents {
        sample(&mut out, "hotline_agents", &[("state", state)], *count);
    }

    let mut modes: BTreeMap<&str, u64> = DTMF_MODES.iter().map(|mode| (*mode, 0)).collect();
    for (mode, calls) in &snapshot.dtmf_modes {
        *modes.entry(mode).or_default() += calls;
    }
    family(
        &mut out,
        "hotline_dtmf_mode_calls_total",
        "counter",
        "Calls since the service started, by how the caller's keys were received.",
    );
    for (mode, calls) in &modes {
        sample(
            &mut out,
            "hotline_dtmf_mode_calls_total",
            &[("mode", mode)],
            *calls,
        );
    }
    add_callbacks(&mut out, snapshot);
    add_trunks(&mut out, snapshot);
    add_security(&mut out, snapshot);
    out
}

fn add_callbacks(out: &mut String, snapshot: &LiveSnapshot) {
    let mut states: BTreeMap<&str, u64> = CALLBACK_STATES.iter().map(|state| (*state, 0)).collect();
    for request in &snapshot.callbacks {
        *states.entry(&request.state).or_default() += 1;
    }
    family(
        out,
        "hotline_callbacks_pending",
        "gauge",
        "Callback requests not yet connected, by state (queued, calling, waiting for the next try).",
    );
    for (state, count) in &states {
        sample(
            out,
            "hotline_callbacks_pending",
            &[("state", state)],
            *count,
        );
    }
}

fn add_security(out: &mut String, snapshot: &LiveSnapshot) {
    family(
        out,
        "hotline_security_events_total",
        "counter",
        "Security events since start: failed logins, bans, replayed nonces, floods, scanners, requests dropped from banned addresses.",
    );
    for (event, count) in &snapshot.security.events {
        sample(
            out,
            "hotline_security_events_total",
            &[("event", event)],
            *count,
        );
    }
    family(
        out,
        "hotline_security_bans",
        "gauge",
        "Bans in force (addresses silenced for floods or scanning, logins refused).",
    );
    let bans = snapshot.security.bans.len() as u64;
    sample(out, "hotline_security_bans", &[], bans);
}

fn add_trunks(out: &mut String, snapshot: &LiveSnapshot) {
    family(
        out,
        "hotline_trunk_up",
        "gauge",
        "1 while the trunk is registered (or answers OPTIONS), else 0.",
    );
    for trunk in &snapshot.trunks {
        sample(
            out,
            "hotline_trunk_up",
            &[("trunk", &trunk.trunk)],
            u64::from(trunk.up),
        );
    }
    family(
        out,
        "hotline_trunk_registrations_total",
        "counter",
        "REGISTER outcomes since start: ok, challenged, refused (credentials, 403), failed (timeouts, 5xx).",
    );
    for trunk in &snapshot.trunks {
        let counts = &trunk.registrations;
        for (result, count) in [
            ("ok", counts.ok),
            ("challenged", counts.challenged),
            ("refused", counts.refused),
            ("failed", counts.failed),
        ] {
            sample(
                out,
                "hotline_trunk_registrations_total",
                &[("trunk", &trunk.trunk), ("result", result)],
                count,
            );
        }
    }
    family(
        out,
        "hotline_trunk_calls_in_progress",
        "gauge",
        "Calls the trunk delivered that are in progress.",
    );
    for trunk in &snapshot.trunks {
        let active = u64::from(trunk.calls_active);
        sample(
            out,
            "hotline_trunk_calls_in_progress",
            &[("trunk", &trunk.trunk)],
            active,
        );
    }
    family(
        out,
        "hotline_trunk_calls_total",
        "counter",
        "Calls the trunk delivered since start.",
    );
    for trunk in &snapshot.trunks {
        sample(
            out,
            "hotline_trunk_calls_total",
            &[("trunk", &trunk.trunk)],
            trunk.calls_total,
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (index, (label, text)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            push_label_value(out, text);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape `\`, `"` and line feed, as the text format requires.
fn push_label_value(out: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::live::{AgentLive, QueueLive};

    #[test]
    fn label_values_are_escaped_and_duplicates_summed() {
        let count = |group: &str, calls| OutcomeCount {
            outcome: "connected".into(),
            group: group.into(),
            language: "lt".into(),
            calls,
        };
        let snapshot = LiveSnapshot {
            outcomes: vec![count("a\"b\\c\nd", 2), count("a\"b\\c\nd", 3)],
            agents: vec![AgentLive {
                agent: "x".into(),
                state: "idle".into(),
                ..AgentLive::default()
            }],
            ..LiveSnapshot::default()
        };
        let text = render(&snapshot);
        assert!(text.contains(
            "hotline_calls_total{outcome=\"connected\",group=\"a\\\"b\\\\c\\nd\",language=\"lt\"} 5\n"
        ));
        assert!(text.contains("hotline_agents{state=\"idle\"} 1\n"));
        assert!(text.contains("hotline_agents{state=\"wrap_up\"} 0\n"));
        assert!(text.contains("hotline_dtmf_mode_calls_total{mode=\"inband\"} 0\n"));
        assert!(text.contains("hotline_calls_in_progress 0\n"));
        assert!(text.contains("hotline_callbacks_pending{state=\"waiting\"} 0\n"));
    }

    #[test]
    fn pending_callbacks_are_counted_by_state() {
        let request = |state: &str| crate::http::live::CallbackLive {
            group: "heating".into(),
            language: "lt".into(),
            number: "+37060000000".into(),
            state: state.into(),
            attempts: 1,
            waiting_s: 60,
            position: None,
            next_attempt_s: None,
        };
        let snapshot = LiveSnapshot {
            callbacks: vec![request("queued"), request("waiting"), request("queued")],
            ..LiveSnapshot::default()
        };
        let text = render(&snapshot);
        for line in [
            "hotline_callbacks_pending{state=\"queued\"} 2\n",
            "hotline_callbacks_pending{state=\"calling\"} 0\n",
            "hotline_callbacks_pending{state=\"waiting\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn records_closed_as_interrupted_are_counted_under_their_outcome() {
        let mut snapshot = LiveSnapshot::default();
        add_interrupted(&mut snapshot, 0);
        assert!(!render(&snapshot).contains("interrupted"));
        add_interrupted(&mut snapshot, 2);
        assert!(render(&snapshot).contains(
            "hotline_calls_total{outcome=\"interrupted\",group=\"none\",language=\"none\"} 2\n"
        ));
    }

    #[test]
    fn every_configured_group_has_its_queue_gauges_even_when_nobody_waits() {
        let queue = |group: &str, waiting, longest_wait_s, agents_available| QueueLive {
            group: group.into(),
            waiting,
            longest_wait_s,
            agents_available,
            ..QueueLive::default()
        };
        let snapshot = LiveSnapshot {
            queues: vec![queue("heating", 0, 0, 2), queue("water", 2, 41, 0)],
            ..LiveSnapshot::default()
        };
        let text = render(&snapshot);
        for line in [
            "hotline_queue_waiting_calls{group=\"heating\"} 0\n",
            "hotline_queue_waiting_calls{group=\"water\"} 2\n",
            "hotline_queue_longest_wait_seconds{group=\"heating\"} 0\n",
            "hotline_queue_longest_wait_seconds{group=\"water\"} 41\n",
            "hotline_queue_agents_available{group=\"heating\"} 2\n",
            "hotline_queue_agents_available{group=\"water\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
