//! `GET /dashboard.csv?table=...` (or `/?format=csv&table=...`): one of the page's tables for
//! the same period and language, as RFC 4180 CSV with a header line (UTF-8 with a byte-order
//! mark so spreadsheets read the Lithuanian letters). Keys keep their configured names next to
//! the display name; service level and abandonment are fractions 0–1, seconds have
//! millisecond precision, undefined figures are empty, as in `/api/stats?format=csv`.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::agents;
use super::panels::{outcome_records, rate_rows};
use super::{abandonment, key, View};
use crate::cdr::{CallbackFigures, Dimension, StatsRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Enterprises,
    Languages,
    Outcomes,
    Agents,
    /// Service level and abandonment per day (per hour for one day).
    Trend,
    /// Calls per day (hour) and enterprise.
    Calls,
    /// Callback figures per enterprise with callbacks.
    Callbacks,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Enterprises,
        Table::Languages,
        Table::Outcomes,
        Table::Agents,
        Table::Trend,
        Table::Calls,
        Table::Callbacks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Enterprises => "enterprises",
            Table::Languages => "languages",
            Table::Outcomes => "outcomes",
            Table::Agents => "agents",
            Table::Trend => "trend",
            Table::Calls => "calls",
            Table::Callbacks => "callbacks",
        }
    }

    pub fn parse(value: &str) -> Result<Table, String> {
        Table::ALL
            .into_iter()
            .find(|table| table.as_str() == value.trim())
            .ok_or_else(|| {
                format!(
                    "table {value:?}: expected enterprises, languages, outcomes, agents, trend, \
                     calls or callbacks"
                )
            })
    }
}

pub fn response(view: &View, table: Table) -> Response {
    let period = &view.data.period;
    let span = if period.single_day() {
        period.first.to_string()
    } else {
        format!("{}_{}", period.first, period.last)
    };
    let disposition = format!(
        "attachment; filename=\"hotline-{}-{span}.csv\"",
        table.as_str()
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        render(view, table),
    )
        .into_response()
}

/// The CSV text of one table.
pub fn render(view: &View, table: Table) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    let data = view.data;
    match table {
        Table::Enterprises | Table::Languages => {
            let dimension = if table == Table::Languages {
                Dimension::Language
            } else {
                Dimension::Enterprise
            };
            lines.push(
                [dimension.as_str(), "name"]
                    .into_iter()
                    .chain(FIGURES)
                    .map(str::to_owned)
                    .collect(),
            );
            for (name, row) in rate_rows(view, dimension) {
                let mut line = vec![key(row, dimension).to_owned(), name];
                line.extend(figures(row));
                lines.push(line);
            }
        }
        Table::Outcomes => {
            lines.push(vec!["outcome".into(), "name".into(), "calls".into()]);
            for row in data
                .by_outcome
                .iter()
                .filter(|row| outcome_records(row) > 0)
            {
                let outcome = key(row, Dimension::Outcome);
                lines.push(vec![
                    outcome.to_owned(),
                    view.lang.outcome(outcome),
                    outcome_records(row).to_string(),
                ]);
            }
        }
        Table::Agents => {
            lines.push(
                [
                    "agent",
                    "name",
                    "groups",
                    "languages",
                    "state",
                    "state_seconds",
                    "call_group",
                    "calls",
                    "talk_s",
                    "avg_talk_s",
                ]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            );
            for line in agents::lines(view) {
                lines.push(vec![
                    line.id.clone(),
                    line.name.clone(),
                    line.groups.join("; "),
                    line.languages.join(" "),
                    line.state.clone().unwrap_or_default(),
                    line.state
                        .as_ref()
                        .map(|_| line.since_s.to_string())
                        .unwrap_or_default(),
                    line.call_group.clone().unwrap_or_default(),
                    line.calls.to_string(),
                    format!("{:.3}", line.talk_s),
                    seconds(line.avg_talk_s),
                ]);
            }
        }
        Table::Trend => {
            lines.push(
                [data.time().as_str()]
                    .into_iter()
                    .chain(FIGURES)
                    .map(str::to_owned)
                    .collect(),
            );
            for time_key in data.time_keys() {
                let row = data
                    .trend
                    .iter()
                    .find(|row| key(row, data.time()) == time_key);
                let empty = StatsRow::default();
                let mut line = vec![time_key];
                line.extend(figures(row.unwrap_or(&empty)));
                lines.push(line);
            }
        }
        Table::Calls => {
            lines.push(vec![
                data.time().as_str().to_owned(),
                "enterprise".into(),
                "name".into(),
                "calls".into(),
            ]);
            for row in &data.by_enterprise_time {
                let enterprise = key(row, Dimension::Enterprise);
                lines.push(vec![
                    key(row, data.time()).to_owned(),
                    enterprise.to_owned(),
                    view.group_name(enterprise),
                    row.calls.to_string(),
                ]);
            }
        }
        Table::Callbacks => {
            lines.push(
                ["enterprise", "name"]
                    .into_iter()
                    .chain(CALLBACK_FIGURES)
                    .map(str::to_owned)
                    .collect(),
            );
            for (name, row) in rate_rows(view, Dimension::Enterprise) {
                if row.callback.is_empty() {
                    continue;
                }
                let mut line = vec![key(row, Dimension::Enterprise).to_owned(), name];
                line.extend(callback_figures(&row.callback));
                lines.push(line);
            }
        }
    }
    let mut out = String::from("\u{feff}");
    for line in lines {
        let cells: Vec<String> = line.iter().map(|cell| field(cell)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

const FIGURES: [&str; 11] = [
    "calls",
    "offered",
    "answered",
    "answered_in_sl",
    "abandoned",
    "short_abandoned",
    "service_level",
    "abandonment",
    "asa_s",
    "avg_talk_s",
    "max_wait_s",
];

fn figures(row: &StatsRow) -> Vec<String> {
    vec![
        row.calls.to_string(),
        row.offered.to_string(),
        row.answered.to_string(),
        row.answered_in_sl.to_string(),
        row.abandoned.to_string(),
        row.short_abandoned.to_string(),
        fraction(row.service_level),
        fraction(abandonment(row)),
        seconds(row.asa_s),
        seconds(row.avg_talk_s),
        seconds(row.max_wait_s),
    ]
}

const CALLBACK_FIGURES: [&str; 8] = [
    "callback_offered",
    "callback_accepted",
    "callback_attempts",
    "callback_connected",
    "callback_connected_in_sl",
    "callback_failed",
    "callback_service_level",
    "callback_asa_s",
];

fn callback_figures(figures: &CallbackFigures) -> Vec<String> {
    vec![
        figures.offered.to_string(),
        figures.accepted.to_string(),
        figures.attempts.to_string(),
        figures.connected.to_string(),
        figures.connected_in_sl.to_string(),
        figures.failed.to_string(),
        fraction(figures.service_level),
        seconds(figures.asa_s),
    ]
}

fn fraction(value: Option<f64>) -> String {
    value.map_or(String::new(), |f| format!("{f:.4}"))
}

fn seconds(value: Option<f64>) -> String {
    value.map_or(String::new(), |s| format!("{s:.3}"))
}

/// Quoted when needed; text a spreadsheet would run as a formula gets a leading `'`.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}
