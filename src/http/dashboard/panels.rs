//! The dashboard's panels other than the agents table and the time charts: the period picker,
//! the live queues, agents by state, outcomes, trunks, bans, and service level and abandonment
//! by enterprise or language.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::charts::{horizontal_bars, mini_bar, state_colour, Bar, NONE_COLOUR};
use super::csv::Table;
use super::period::{Period, PeriodKind};
use super::{abandonment, duration, esc, href, key, percent, seconds, View};
use crate::cdr::{Dimension, StatsRow};

/// Quick links (today, this week, this month, previous, next) and a form for any period.
pub fn period_picker(html: &mut String, view: &View) {
    let texts = view.texts();
    let period = &view.data.period;
    let lang = view.lang;
    let link = |target: Period, text: &str| {
        let class = if target == *period {
            " class=\"on\""
        } else {
            ""
        };
        format!(
            "<a{class} href=\"{}\">{}</a>",
            href("/", Some(&target), lang, ""),
            esc(text)
        )
    };
    let _ = write!(
        html,
        "<div class=\"panel wide\" id=\"period-picker\"><div class=\"picker\"><b>{}:</b>{}{}{}",
        texts.period,
        link(Period::day(view.today), texts.today),
        link(Period::week(view.today), texts.this_week),
        link(Period::month(view.today), texts.this_month),
    );
    if let Some(previous) = period.shifted(-1) {
        html.push_str(&link(previous, texts.previous));
    }
    if let Some(next) = period.shifted(1) {
        html.push_str(&link(next, texts.next));
    }
    html.push_str("<form method=\"get\" action=\"/\"><select name=\"period\">");
    for kind in PeriodKind::ALL {
        let _ = write!(
            html,
            "<option value=\"{}\"{}>{}</option>",
            kind.as_str(),
            if kind == period.kind { " selected" } else { "" },
            kind.label(lang)
        );
    }
    let _ = write!(
        html,
        "</select><label>{day} <input type=\"date\" name=\"day\" value=\"{first}\"></label>\
         <label>{from} <input type=\"date\" name=\"from\" value=\"{first}\"></label>\
         <label>{to} <input type=\"date\" name=\"to\" value=\"{last}\"></label>",
        day = texts.day,
        from = texts.from,
        to = texts.to_inclusive,
        first = period.first.format("%Y-%m-%d"),
        last = period.last.format("%Y-%m-%d"),
    );
    if lang != super::Lang::default() {
        let _ = write!(
            html,
            "<input type=\"hidden\" name=\"lang\" value=\"{}\">",
            lang.code()
        );
    }
    let _ = writeln!(
        html,
        "<button type=\"submit\">{}</button></form><span id=\"period-label\">{}</span></div></div>",
        texts.show,
        esc(&period.label(lang))
    );
}

/// Cards (calls, waiting, longest wait, agents available) and every group's queue.
pub fn live_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    let snapshot = view.snapshot;
    let waiting: usize = snapshot.queues.iter().map(|queue| queue.waiting).sum();
    let longest = snapshot
        .queues
        .iter()
        .map(|queue| queue.longest_wait_s)
        .max()
        .unwrap_or(0);
    let available = snapshot
        .agents
        .iter()
        .filter(|agent| agent.state == "idle")
        .count();
    let _ = write!(
        html,
        "<div class=\"panel half\"><h2>{}</h2><div class=\"cards\">\
         <div class=\"card\"><b id=\"calls-in-progress\">{}</b><span>{}</span></div>\
         <div class=\"card\"><b id=\"waiting\">{waiting}</b><span>{}</span></div>\
         <div class=\"card\"><b id=\"longest-wait\">{}</b><span>{}</span></div>\
         <div class=\"card\"><b id=\"agents-available\">{available}/{}</b><span>{}</span></div></div>",
        texts.live,
        snapshot.calls.len(),
        texts.calls_in_progress,
        texts.callers_waiting,
        duration(longest),
        texts.longest_wait,
        snapshot.agents.len(),
        texts.agents_available,
    );
    let _ = write!(
        html,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        texts.enterprise, texts.waiting, texts.longest_wait, texts.agents_available
    );
    if snapshot.queues.is_empty() {
        let _ = write!(
            html,
            "<tr><td class=\"empty\" colspan=\"4\">{}</td></tr>",
            texts.no_queues
        );
    }
    let mut queues: Vec<(String, &crate::http::live::QueueLive)> = snapshot
        .queues
        .iter()
        .map(|queue| (view.group_name(&queue.group), queue))
        .collect();
    queues.sort_by_cached_key(|(name, _)| super::collation_key(name));
    for (name, queue) in queues {
        let style = if queue.waiting > 0 && queue.agents_available == 0 {
            " style=\"color:#d62728;font-weight:600\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<tr{style}><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&queue.group),
            esc(&name),
            queue.waiting,
            duration(queue.longest_wait_s),
            queue.agents_available,
        );
    }
    html.push_str("</table></div>\n");
}

/// Agents per state: the four working states always, pauses and the rest when present.
pub fn agent_state_panel(html: &mut String, view: &View) {
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for state in ["idle", "ringing", "on_call", "wrap_up"] {
        states.insert(state, 0);
    }
    for agent in &view.snapshot.agents {
        *states.entry(&agent.state).or_default() += 1;
    }
    const ORDER: [&str; 9] = [
        "idle",
        "ringing",
        "on_call",
        "wrap_up",
        "paused",
        "auto_paused",
        "logged_out",
        "unregistered",
        "unreachable",
    ];
    let mut ordered: Vec<(&str, usize)> = states.into_iter().collect();
    ordered.sort_by_key(|(state, _)| ORDER.iter().position(|known| known == state));
    let bars: Vec<Bar> = ordered
        .into_iter()
        .map(|(state, count)| Bar {
            label: view.lang.agent_state(state).to_owned(),
            value: count as f64,
            text: count.to_string(),
            colour: state_colour(state),
        })
        .collect();
    let _ = write!(
        html,
        "<div class=\"panel half\"><h2>{}</h2>",
        view.texts().agents_by_state
    );
    horizontal_bars(html, &bars, None, 170.0);
    html.push_str("</div>\n");
}

/// The records of each outcome in a row of the outcome grouping: its calls and its callback
/// attempts (a dial of a resident has an outcome too, `not_reached` only such dials).
pub fn outcome_records(row: &StatsRow) -> u64 {
    row.calls + row.callback.attempts
}

/// Calls (and callback attempts) per outcome.
pub fn outcome_panel(html: &mut String, view: &View) {
    let bars: Vec<Bar> = view
        .data
        .by_outcome
        .iter()
        .filter(|row| outcome_records(row) > 0)
        .map(|row| {
            let outcome = key(row, Dimension::Outcome);
            let colour = match outcome {
                "connected" | "transferred" => "#2ca02c",
                "abandoned_queue" | "abandoned_menu" => "#d62728",
                "queue_timeout" | "overflowed" | "transfer_failed" | "error" | "interrupted"
                | "not_reached" => "#ff7f0e",
                "callback_requested" => "#1f77b4",
                _ => NONE_COLOUR,
            };
            let records = outcome_records(row);
            Bar {
                label: view.lang.outcome(outcome),
                value: records as f64,
                text: records.to_string(),
                colour,
            }
        })
        .collect();
    let _ = write!(
        html,
        "<div class=\"panel\"><h2>{}{}</h2>",
        view.texts().outcomes,
        view.csv_link(Table::Outcomes)
    );
    if bars.is_empty() {
        let _ = write!(html, "<p class=\"empty\">{}</p>", view.texts().no_calls);
    } else {
        horizontal_bars(html, &bars, None, 170.0);
    }
    html.push_str("</div>\n");
}

/// Each carrier trunk: up or not, its state, last error and when it is tried again.
pub fn trunk_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    if view.snapshot.trunks.is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<div class=\"panel\"><h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th></tr>",
        texts.trunks,
        texts.trunk,
        texts.state.to_lowercase(),
        texts.calls,
        texts.last_error,
        texts.next_try
    );
    for trunk in &view.snapshot.trunks {
        let colour = if trunk.up { "#2ca02c" } else { "#d62728" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td style=\"color:{colour}\">{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&trunk.trunk),
            esc(&trunk.state),
            esc(&trunk.server),
            trunk.calls_active,
            esc(trunk.last_error.as_deref().unwrap_or("")),
            trunk.next_retry_s.map(duration).unwrap_or_default(),
        );
    }
    html.push_str("</table></div>\n");
}

/// Addresses banned now, why and for how long (lifted with `DELETE /api/bans/{ip}`).
pub fn ban_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    if view.snapshot.security.bans.is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<div class=\"panel\"><h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        texts.bans, texts.address, texts.reason, texts.ends_in
    );
    for ban in &view.snapshot.security.bans {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&ban.address),
            esc(&ban.reason),
            duration(ban.seconds_left),
        );
    }
    html.push_str("</table></div>\n");
}

/// The rows of the enterprise or language table, with each row's display name.
pub fn rate_rows<'a>(view: &'a View, dimension: Dimension) -> Vec<(String, &'a StatsRow)> {
    let rows = match dimension {
        Dimension::Language => &view.data.by_language,
        _ => &view.data.by_enterprise,
    };
    let mut rows: Vec<(String, &StatsRow)> = rows
        .iter()
        .map(|row| {
            let name_key = key(row, dimension);
            let name = match dimension {
                Dimension::Language => view.lang.language_name(name_key),
                _ => view.group_name(name_key),
            };
            (name, row)
        })
        .collect();
    // By name, calls without a group or language last.
    rows.sort_by_cached_key(|(name, row)| {
        (
            key(row, dimension) == crate::cdr::stats::NONE_KEY,
            super::collation_key(name),
        )
    });
    rows
}

/// Service level and abandonment per enterprise or language, with the figures behind them.
pub fn rate_panel(html: &mut String, view: &View, dimension: Dimension) {
    let texts = view.texts();
    let (title, column, table) = match dimension {
        Dimension::Language => (texts.rates_by_language, texts.language, Table::Languages),
        _ => (
            texts.rates_by_enterprise,
            texts.enterprise,
            Table::Enterprises,
        ),
    };
    let _ = write!(
        html,
        "<div class=\"panel wide\" id=\"rates-{}\"><h2>{}{}</h2>",
        dimension.as_str(),
        esc(title),
        view.csv_link(table)
    );
    let rows = rate_rows(view, dimension);
    if rows.iter().all(|(_, row)| row.offered == 0) {
        let _ = writeln!(
            html,
            "<p class=\"empty\">{}</p></div>",
            texts.nothing_offered
        );
        return;
    }
    let _ = write!(
        html,
        "<table><tr><th>{column}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>SL</th>\
         <th>{}</th><th>{}</th><th>{}</th></tr>",
        texts.calls,
        texts.offered,
        texts.answered,
        texts.abandoned,
        texts.abandoned_share,
        texts.asa,
        texts.max_wait,
    );
    for (name, row) in rows {
        let abandoned_share = abandonment(row);
        let _ = write!(
            html,
            "<tr><td class=\"wrap\" title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            esc(key(row, dimension)),
            esc(&name),
            row.calls,
            row.offered,
            row.answered,
            row.abandoned,
            mini_bar(row.service_level, "#2ca02c"),
            percent(row.service_level),
            mini_bar(abandoned_share, "#d62728"),
            percent(abandoned_share),
            seconds(row.asa_s),
            seconds(row.max_wait_s),
        );
    }
    html.push_str("</table></div>\n");
}
