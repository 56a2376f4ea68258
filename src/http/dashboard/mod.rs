//! `GET /`: the supervisors' dashboard, one server-rendered HTML page with inline SVG charts
//! (no scripts, no external resources: the service runs on a closed network). It shows the live
//! snapshot and one local day's statistics (default today, Europe/Vilnius; `?day=YYYY-MM-DD` for
//! another), computed by `CdrStore::stats` like the API, and reloads itself every 10 s. Every
//! text that comes from data is HTML-escaped: group, agent and language names are
//! configuration or caller-influenced and must not inject markup.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use chrono::NaiveDate;
use chrono_tz::Europe::Vilnius;

use super::api::{local_date, local_midnight, next_day, query_pairs, today};
use super::live::LiveSnapshot;
use super::server::{text_error, token_cookie, HttpState};
use crate::cdr::{Dimension, StatsQuery, StatsRow, Thresholds};

/// Seconds between automatic reloads of the page.
pub const REFRESH_S: u32 = 10;

/// Bar colours per enterprise, in key order; `(none)` is always grey.
const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];
const NONE_COLOUR: &str = "#9e9e9e";

/// One day's figures shown on the page.
#[derive(Debug, Clone, Default)]
pub struct DayStats {
    pub by_enterprise_hour: Vec<StatsRow>,
    pub by_outcome: Vec<StatsRow>,
    pub by_enterprise: Vec<StatsRow>,
    pub by_language: Vec<StatsRow>,
    /// The thresholds these figures were computed with.
    pub thresholds: Thresholds,
}

pub async fn page(State(state): State<HttpState>, uri: Uri) -> Response {
    let pairs = match query_pairs(&uri) {
        Ok(pairs) => pairs,
        Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
    };
    let mut day = None;
    let mut token_given = false;
    for (name, value) in &pairs {
        match name.as_str() {
            "day" => match local_date("day", value) {
                Ok(date) => day = Some(date),
                Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
            },
            "token" => token_given = true,
            other => {
                return text_error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other:?}: expected day or token"),
                )
            }
        }
    }
    if token_given {
        // The auth layer has accepted the token; keep it in a cookie, not in the address bar.
        return redirect_storing_token(day, state.token.as_deref());
    }
    let day = day.unwrap_or_else(today);
    let stats = match day_stats(&state, day).await {
        Ok(stats) => stats,
        Err(message) => {
            tracing::error!(%message, "dashboard statistics");
            return text_error(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };
    let snapshot = state.live.borrow().clone();
    Html(render(day, &snapshot, &stats)).into_response()
}

fn redirect_storing_token(day: Option<NaiveDate>, token: Option<&str>) -> Response {
    let location = match day {
        Some(day) => format!("/?day={day}"),
        None => "/".to_owned(),
    };
    let mut response = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location);
    if let Some(token) = token {
        response = response.header(header::SET_COOKIE, token_cookie(token));
    }
    response
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn day_stats(state: &HttpState, day: NaiveDate) -> Result<DayStats, String> {
    let from = local_midnight(day)?;
    let to = local_midnight(next_day(day)?)?;
    let query = |by: Vec<Dimension>| StatsQuery::with_thresholds(from, to, by, state.thresholds);
    let enterprise_hour = query(vec![Dimension::Enterprise, Dimension::Hour]);
    let outcome = query(vec![Dimension::Outcome]);
    let enterprise = query(vec![Dimension::Enterprise]);
    let language = query(vec![Dimension::Language]);
    let (by_enterprise_hour, by_outcome, by_enterprise, by_language) = tokio::try_join!(
        state.store.stats(&enterprise_hour),
        state.store.stats(&outcome),
        state.store.stats(&enterprise),
        state.store.stats(&language),
    )
    .map_err(|error| format!("computing the dashboard statistics: {error}"))?;
    Ok(DayStats {
        by_enterprise_hour,
        by_outcome,
        by_enterprise,
        by_language,
        thresholds: state.thresholds,
    })
}

/// The whole page.
pub fn render(day: NaiveDate, snapshot: &LiveSnapshot, stats: &DayStats) -> String {
    let mut html = String::with_capacity(32 * 1024);
    let snapshot_time = snapshot
        .at
        .map(|at| {
            at.with_timezone(&Vilnius)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "no snapshot yet".to_owned());
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>19118 hotline — {day}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px 24px; color: #222; background: #f6f7f9; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
h2 {{ font-size: 16px; margin: 0 0 8px; }}
.sub {{ color: #666; font-size: 13px; margin-bottom: 14px; }}
.grid {{ display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; }}
.grid > .panel {{ grid-column: span 2; min-width: 0; }}
.grid > .wide {{ grid-column: 1 / -1; }}
.grid > .half {{ grid-column: span 3; }}
@media (max-width: 1000px) {{ .grid > .panel {{ grid-column: 1 / -1; }} }}
.panel {{ background: #fff; border: 1px solid #dde; border-radius: 6px; padding: 12px 14px; }}
.cards {{ display: flex; gap: 24px; margin-bottom: 8px; }}
.card b {{ display: block; font-size: 26px; }}
.card span {{ color: #666; font-size: 12px; }}
table {{ border-collapse: collapse; font-size: 13px; width: 100%; margin-top: 6px; }}
th, td {{ padding: 2px 6px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ color: #555; font-weight: 600; }}
.legend span {{ display: inline-block; margin-right: 14px; font-size: 13px; }}
.legend i {{ display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px; }}
svg text {{ font-family: system-ui, sans-serif; }}
.empty {{ color: #888; font-style: italic; }}
</style></head><body>
<h1>19118 city hotline — {day}</h1>
<div class="sub">Live snapshot {snapshot_time} (Europe/Vilnius) · statistics for {day}, completed calls only · refreshes every {REFRESH_S} s</div>
<div class="grid">
"#,
        snapshot_time = esc(&snapshot_time),
    );
    live_panel(&mut html, snapshot);
    outcome_panel(&mut html, &stats.by_outcome);
    hourly_panel(&mut html, &stats.by_enterprise_hour);
    rate_panel(
        &mut html,
        "Service level and abandonment by enterprise",
        "enterprise",
        &stats.by_enterprise,
    );
    rate_panel(
        &mut html,
        "Service level and abandonment by language",
        "language",
        &stats.by_language,
    );
    let Thresholds {
        short_abandon_s,
        sl_threshold_s,
    } = stats.thresholds;
    html.push_str(&format!(
        "</div>\n<p class=\"sub\">SL = answered within {sl_threshold_s} s / (answered + \
         abandoned); abandoned = hung up after choosing a group with a wait of {short_abandon_s} s \
         or more; abandonment = abandoned / offered. Definitions: <code>hotline stats --help</code>.\
         </p>\n</body></html>\n",
    ));
    html
}

fn live_panel(html: &mut String, snapshot: &LiveSnapshot) {
    let waiting: usize = snapshot.queues.iter().map(|queue| queue.waiting).sum();
    let longest = snapshot
        .queues
        .iter()
        .map(|queue| queue.longest_wait_s)
        .max()
        .unwrap_or(0);
    let _ = write!(
        html,
        "<div class=\"panel\"><h2>Live</h2><div class=\"cards\">\
         <div class=\"card\"><b id=\"calls-in-progress\">{}</b><span>calls in progress</span></div>\
         <div class=\"card\"><b id=\"waiting\">{waiting}</b><span>callers waiting</span></div>\
         <div class=\"card\"><b id=\"longest-wait\">{}</b><span>longest wait</span></div>\
         <div class=\"card\"><b>{}</b><span>agents</span></div></div>",
        snapshot.calls.len(),
        minutes_seconds(longest),
        snapshot.agents.len(),
    );
    html.push_str("<table><tr><th>Enterprise queue</th><th>waiting</th><th>longest wait</th></tr>");
    if snapshot.queues.is_empty() {
        html.push_str("<tr><td class=\"empty\" colspan=\"3\">no queues</td></tr>");
    }
    for queue in &snapshot.queues {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&queue.group),
            queue.waiting,
            minutes_seconds(queue.longest_wait_s)
        );
    }
    html.push_str("</table></div>\n");
    trunk_panel(html, snapshot);
    ban_panel(html, snapshot);

    let mut states: BTreeMap<&str, usize> = ["idle", "ringing", "on_call", "wrap_up"]
        .into_iter()
        .map(|state| (state, 0))
        .collect();
    for agent in &snapshot.agents {
        *states.entry(&agent.state).or_default() += 1;
    }
    let bars: Vec<(String, f64, String, &str)> = states
        .iter()
        .map(|(state, count)| {
            let colour = match *state {
                "idle" => "#2ca02c",
                "ringing" => "#ff7f0e",
                "on_call" => "#1f77b4",
                "wrap_up" => "#9467bd",
                _ => NONE_COLOUR,
            };
            (
                (*state).to_owned(),
                *count as f64,
                count.to_string(),
                colour,
            )
        })
        .collect();
    html.push_str("<div class=\"panel\"><h2>Agents by state</h2>");
    horizontal_bars(html, &bars, None);
    html.push_str("</div>\n");
}

/// Stacked bars: calls per local hour, one colour per enterprise, total above each bar.
/// Each carrier trunk: up or not, its state, last error and when it is tried again.
fn trunk_panel(html: &mut String, snapshot: &LiveSnapshot) {
    if snapshot.trunks.is_empty() {
        return;
    }
    html.push_str(
        "<div class=\"panel\"><h2>Carrier trunks</h2><table><tr><th>trunk</th><th>state</th>\
         <th>calls</th><th>last error</th><th>next try</th></tr>",
    );
    for trunk in &snapshot.trunks {
        let colour = if trunk.up { "#2ca02c" } else { "#d62728" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td style=\"color:{colour}\">{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&trunk.trunk),
            esc(&trunk.state),
            esc(&trunk.server),
            trunk.calls_active,
            esc(trunk.last_error.as_deref().unwrap_or("")),
            trunk.next_retry_s.map(minutes_seconds).unwrap_or_default(),
        );
    }
    html.push_str("</table></div>\n");
}

/// Addresses banned now, why and for how long (lifted with `DELETE /api/bans/{ip}`).
fn ban_panel(html: &mut String, snapshot: &LiveSnapshot) {
    if snapshot.security.bans.is_empty() {
        return;
    }
    html.push_str(
        "<div class=\"panel\"><h2>Banned addresses</h2><table><tr><th>address</th>\
         <th>reason</th><th>ends in</th></tr>",
    );
    for ban in &snapshot.security.bans {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&ban.address),
            esc(&ban.reason),
            minutes_seconds(ban.seconds_left),
        );
    }
    html.push_str("</table></div>\n");
}

fn hourly_panel(html: &mut String, rows: &[StatsRow]) {
    let mut enterprises: Vec<&str> = Vec::new();
    let mut per_hour: BTreeMap<u32, Vec<(&str, u64)>> = BTreeMap::new();
    for row in rows {
        let enterprise = key(row, Dimension::Enterprise);
        let Some(hour) = key(row, Dimension::Hour).parse::<u32>().ok() else {
            continue;
        };
        if !enterprises.contains(&enterprise) {
            enterprises.push(enterprise);
        }
        per_hour
            .entry(hour)
            .or_default()
            .push((enterprise, row.calls));
    }
    enterprises.sort_unstable();
    let colour_of = |enterprise: &str| -> &'static str {
        if enterprise == crate::cdr::stats::NONE_KEY {
            return NONE_COLOUR;
        }
        let index = enterprises
            .iter()
            .filter(|name| **name != crate::cdr::stats::NONE_KEY)
            .position(|name| *name == enterprise)
            .unwrap_or(0);
        PALETTE
            .get(index % PALETTE.len())
            .copied()
            .unwrap_or(NONE_COLOUR)
    };
    html.push_str("<div class=\"panel wide\"><h2>Calls per hour by enterprise (local time)</h2>");
    if per_hour.is_empty() {
        html.push_str("<p class=\"empty\">no completed calls this day</p></div>\n");
        return;
    }
    html.push_str("<div class=\"legend\">");
    for enterprise in &enterprises {
        let _ = write!(
            html,
            "<span><i style=\"background:{}\"></i>{}</span>",
            colour_of(enterprise),
            esc(enterprise)
        );
    }
    html.push_str("</div>");

    let max_total = per_hour
        .values()
        .map(|parts| parts.iter().map(|(_, calls)| calls).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (left, top, plot_height, column) = (40.0, 22.0, 170.0, 54.0);
    let width = left + 24.0 * column + 10.0;
    let height = top + plot_height + 30.0;
    let _ = write!(
        html,
        "<svg role=\"img\" aria-label=\"calls per hour\" width=\"100%\" viewBox=\"0 0 {width} {height}\">"
    );
    for step in 0..=4 {
        let value = max_total as f64 * f64::from(step) / 4.0;
        let y = top + plot_height - plot_height * f64::from(step) / 4.0;
        let _ = write!(
            html,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e3e3e3\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{}</text>",
            width - 10.0,
            left - 6.0,
            y + 4.0,
            trim_number(value)
        );
    }
    for hour in 0..24u32 {
        let x = left + f64::from(hour) * column;
        let _ = write!(
            html,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">{hour:02}</text>",
            x + column / 2.0,
            top + plot_height + 16.0
        );
        let Some(parts) = per_hour.get(&hour) else {
            continue;
        };
        let mut stacked = 0u64;
        for (enterprise, calls) in parts {
            let y_bottom = top + plot_height - plot_height * stacked as f64 / max_total as f64;
            stacked += calls;
            let y_top = top + plot_height - plot_height * stacked as f64 / max_total as f64;
            let _ = write!(
                html,
                "<rect x=\"{}\" y=\"{y_top}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{hour:02}:00 {}: {calls}</title></rect>",
                x + 8.0,
                column - 16.0,
                y_bottom - y_top,
                colour_of(enterprise),
                esc(enterprise)
            );
        }
        let _ = write!(
            html,
            "<text class=\"hour-total\" x=\"{}\" y=\"{}\" font-size=\"12\" font-weight=\"600\" text-anchor=\"middle\">{stacked}</text>",
            x + column / 2.0,
            top + plot_height - plot_height * stacked as f64 / max_total as f64 - 5.0
        );
    }
    html.push_str("</svg></div>\n");
}

fn outcome_panel(html: &mut String, rows: &[StatsRow]) {
    let bars: Vec<(String, f64, String, &str)> =
        rows.iter()
            .filter(|row| row.calls > 0)
            .map(|row| {
                let outcome = key(row, Dimension::Outcome);
                let colour = match outcome {
                    "connected" | "transferred" => "#2ca02c",
                    "abandoned_queue" | "abandoned_menu" => "#d62728",
                    "queue_timeout" | "overflowed" | "transfer_failed" | "error"
                    | "interrupted" => "#ff7f0e",
                    _ => NONE_COLOUR,
                };
                (
                    outcome.to_owned(),
                    row.calls as f64,
                    row.calls.to_string(),
                    colour,
                )
            })
            .collect();
    html.push_str("<div class=\"panel\"><h2>Outcomes</h2>");
    if bars.is_empty() {
        html.push_str("<p class=\"empty\">no completed calls this day</p>");
    } else {
        horizontal_bars(html, &bars, None);
    }
    html.push_str("</div>\n");
}

/// SL and abandonment as bars (0–100 %) per group, then the figures behind them.
fn rate_panel(html: &mut String, title: &str, dimension_name: &str, rows: &[StatsRow]) {
    let offered: Vec<&StatsRow> = rows.iter().filter(|row| row.offered > 0).collect();
    let _ = write!(html, "<div class=\"panel half\"><h2>{}</h2>", esc(title));
    if offered.is_empty() {
        html.push_str("<p class=\"empty\">no calls offered to a group this day</p></div>\n");
        return;
    }
    let mut bars = Vec::new();
    for row in &offered {
        let name = row
            .keys
            .first()
            .map(|(_, key)| key.as_str())
            .unwrap_or_default();
        bars.push((
            format!("{name} SL"),
            row.service_level.unwrap_or(0.0),
            percent(row.service_level),
            "#2ca02c",
        ));
        let abandonment = abandonment(row);
        bars.push((
            format!("{name} abandoned"),
            abandonment.unwrap_or(0.0),
            percent(abandonment),
            "#d62728",
        ));
    }
    horizontal_bars(html, &bars, Some(1.0));
    let _ = write!(
        html,
        "<table><tr><th>{}</th><th>calls</th><th>offered</th><th>answered</th>\
         <th>abandoned</th><th>SL</th><th>ASA</th><th>max wait</th></tr>",
        esc(dimension_name)
    );
    for row in rows {
        let name = row
            .keys
            .first()
            .map(|(_, key)| key.as_str())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            row.calls,
            row.offered,
            row.answered,
            row.abandoned,
            percent(row.service_level),
            seconds(row.asa_s),
            seconds(row.max_wait_s),
        );
    }
    html.push_str("</table></div>\n");
}

/// Labelled horizontal bars; `scale` fixes the full width (1.0 for rates), else the largest bar.
fn horizontal_bars(html: &mut String, bars: &[(String, f64, String, &str)], scale: Option<f64>) {
    let full = scale
        .unwrap_or_else(|| bars.iter().map(|bar| bar.1).fold(0.0, f64::max))
        .max(f64::MIN_POSITIVE);
    let (label_width, bar_width, row_height) = (140.0, 220.0, 20.0);
    let height = row_height * bars.len() as f64 + 4.0;
    let width = label_width + bar_width + 60.0;
    let _ = write!(
        html,
        "<svg role=\"img\" width=\"{width}\" height=\"{height}\" style=\"max-width:100%\" \
         viewBox=\"0 0 {width} {height}\">"
    );
    for (index, (label, value, text, colour)) in bars.iter().enumerate() {
        let y = index as f64 * row_height + 2.0;
        let length = bar_width * (value / full).clamp(0.0, 1.0);
        let _ = write!(
            html,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_width}\" y=\"{y}\" width=\"{bar_width}\" height=\"{}\" fill=\"#f0f0f0\"/>\
             <rect x=\"{label_width}\" y=\"{y}\" width=\"{length}\" height=\"{}\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" font-weight=\"600\">{}</text>",
            label_width - 6.0,
            y + 13.0,
            esc(label),
            row_height - 6.0,
            row_height - 6.0,
            label_width + bar_width + 6.0,
            y + 13.0,
            esc(text),
        );
    }
    html.push_str("</svg>");
}

fn key(row: &StatsRow, dimension: Dimension) -> &str {
    row.keys
        .iter()
        .find(|(candidate, _)| *candidate == dimension)
        .map(|(_, key)| key.as_str())
        .unwrap_or(crate::cdr::stats::NONE_KEY)
}

/// Abandoned calls as a share of offered calls; `None` when nothing was offered.
fn abandonment(row: &StatsRow) -> Option<f64> {
    (row.offered > 0).then(|| row.abandoned as f64 / row.offered as f64)
}

fn percent(fraction: Option<f64>) -> String {
    fraction.map_or("–".to_owned(), |f| format!("{:.1}%", f * 100.0))
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |s| format!("{s:.1} s"))
}

fn minutes_seconds(total: u64) -> String {
    format!("{}:{:02}", total / 60, total % 60)
}

fn trim_number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// HTML text and attribute escaping.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::live::QueueLive;

    #[test]
    fn data_text_cannot_inject_markup() {
        let snapshot = LiveSnapshot {
            queues: vec![QueueLive {
                group: "<script>alert('x')</script>".into(),
                waiting: 2,
                longest_wait_s: 75,
            }],
            ..LiveSnapshot::default()
        };
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let html = render(day, &snapshot, &DayStats::default());
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("1:15"));
    }
}
