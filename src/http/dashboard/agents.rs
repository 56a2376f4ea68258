//! The agents table: every agent the switchboard knows (name, groups, languages, state and
//! for how long, the call's enterprise while ringing or talking) with the calls they answered
//! and their talk time over the chosen period, from the call records. Agents found only in
//! the records (no longer configured) are listed too, so the period's totals add up. On the
//! page (not in the CSV) a last column holds each configured agent's buttons: a form posting
//! to `/agents/{agent}/state` with the CSRF field (see [`super::actions`]).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::actions::{choices, Actions, CSRF_FIELD};
use super::charts::state_colour;
use super::csv::Table;
use super::{duration, esc, View};

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentLine {
    /// As the switchboard and the records name the agent (`user:ona`, a URI).
    pub id: String,
    pub name: String,
    /// Display names of the agent's groups.
    pub groups: Vec<String>,
    /// Language codes; empty: any language.
    pub languages: Vec<String>,
    /// `None` for an agent known only from the records.
    pub state: Option<String>,
    pub since_s: u64,
    /// Display name of the group of the call ringing or in progress.
    pub call_group: Option<String>,
    pub calls: u64,
    pub talk_s: f64,
    pub avg_talk_s: Option<f64>,
}

/// `user:ona` → `ona`, `sip:water-1@10.0.0.5:5060` → `water-1`, anything else as it is.
pub fn display_name(id: &str) -> String {
    if let Some(user) = id.strip_prefix("user:") {
        return user.to_owned();
    }
    let without_scheme = id
        .strip_prefix("sip:")
        .or_else(|| id.strip_prefix("sips:"))
        .unwrap_or(id);
    match without_scheme.split_once('@') {
        Some((user, _)) if !user.is_empty() => user.to_owned(),
        _ => without_scheme.to_owned(),
    }
}

/// The table's rows, by name.
pub fn lines(view: &View) -> Vec<AgentLine> {
    let mut period: BTreeMap<&str, &crate::cdr::AgentRow> = view
        .data
        .agents
        .iter()
        .map(|row| (row.agent.as_str(), row))
        .collect();
    let mut lines: Vec<AgentLine> = view
        .snapshot
        .agents
        .iter()
        .map(|agent| {
            let figures = period.remove(agent.agent.as_str());
            AgentLine {
                id: agent.agent.clone(),
                name: display_name(&agent.agent),
                groups: agent
                    .groups
                    .iter()
                    .map(|group| view.group_name(group))
                    .collect(),
                languages: agent.languages.clone(),
                state: Some(agent.state.clone()),
                since_s: agent.since_s,
                call_group: agent
                    .call_group
                    .as_deref()
                    .map(|group| view.group_name(group)),
                calls: figures.map_or(0, |row| row.calls),
                talk_s: figures.map_or(0.0, |row| row.talk_s),
                avg_talk_s: figures.and_then(|row| row.avg_talk_s),
            }
        })
        .collect();
    lines.extend(period.into_values().map(|row| AgentLine {
        id: row.agent.clone(),
        name: display_name(&row.agent),
        groups: Vec::new(),
        languages: Vec::new(),
        state: None,
        since_s: 0,
        call_group: None,
        calls: row.calls,
        talk_s: row.talk_s,
        avg_talk_s: row.avg_talk_s,
    }));
    lines.sort_by(|a, b| {
        (a.state.is_none(), &a.name, &a.id).cmp(&(b.state.is_none(), &b.name, &b.id))
    });
    lines
}

/// The state as shown: label, then how long, then the call's enterprise.
pub fn state_text(view: &View, line: &AgentLine) -> String {
    let Some(state) = &line.state else {
        return format!("({})", view.texts().not_configured);
    };
    let mut text = view.lang.agent_state(state).to_owned();
    if state != "unregistered" {
        let _ = write!(text, " {}", duration(line.since_s));
    }
    if let Some(group) = &line.call_group {
        let _ = write!(text, " · {group}");
    }
    text
}

pub fn agents_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    let _ = write!(
        html,
        "<div class=\"panel wide\" id=\"agents\"><h2>{} ({}){}</h2>\
         <table><tr><th>{}</th><th class=\"text\">{}</th><th class=\"text\">{}</th>\
         <th class=\"text\">{}</th><th>{}</th><th>{}</th><th>{}</th>{}</tr>",
        texts.agents_table,
        esc(&view.data.period.label(view.lang)),
        view.csv_link(Table::Agents),
        texts.agent,
        texts.groups,
        texts.languages,
        texts.state,
        texts.calls_handled,
        texts.talk_time,
        texts.avg_talk,
        view.actions.as_ref().map_or(String::new(), |_| format!(
            "<th class=\"text\">{}</th>",
            texts.actions
        )),
    );
    let columns = if view.actions.is_some() { 8 } else { 7 };
    let lines = lines(view);
    if lines.is_empty() {
        let _ = write!(
            html,
            "<tr><td class=\"empty\" colspan=\"{columns}\">{}</td></tr>",
            texts.no_agents
        );
    }
    for line in &lines {
        let languages = if line.languages.is_empty() {
            texts.any_language.to_owned()
        } else {
            line.languages
                .iter()
                .map(|code| code.to_uppercase())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let state = line.state.as_deref().unwrap_or("");
        let _ = write!(
            html,
            "<tr class=\"agent\"><td title=\"{}\">{}</td><td class=\"text wrap\">{}</td>\
             <td class=\"text\">{}</td><td class=\"text\"><span class=\"state\" \
             style=\"background:{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&line.id),
            esc(&line.name),
            esc(&line.groups.join(", ")),
            esc(&languages),
            state_colour(state),
            esc(&state_text(view, line)),
            line.calls,
            duration(line.talk_s.round() as u64),
            line.avg_talk_s
                .map(|avg| duration(avg.round() as u64))
                .unwrap_or_else(|| "–".to_owned()),
        );
        if let Some(actions) = &view.actions {
            html.push_str("<td class=\"text\">");
            if let Some(state) = &line.state {
                buttons(html, view, actions, &line.id, state);
            }
            html.push_str("</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></div>\n");
}

/// One agent's form: the CSRF field and a button per state it can be moved to.
fn buttons(html: &mut String, view: &View, actions: &Actions, agent: &str, state: &str) {
    let texts = view.texts();
    let _ = write!(
        html,
        "<form class=\"agent-state\" method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
        actions.action(agent),
        esc(&actions.csrf),
    );
    for choice in choices(state) {
        let label = match *choice {
            "paused" => texts.pause,
            "logged_out" => texts.log_out,
            _ => texts.make_available,
        };
        let _ = write!(
            html,
            "<button type=\"submit\" name=\"state\" value=\"{choice}\">{label}</button>"
        );
    }
    html.push_str("</form>");
}
