//! Inline SVG charts: service level and abandonment over the period as lines (per day, or per
//! hour for one day), calls over the period stacked by enterprise, labelled horizontal bars
//! and the small bars in table cells.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{Datelike, NaiveDate, Weekday};

use super::csv::Table;
use super::{abandonment, esc, key, percent, seconds, View};
use crate::cdr::stats::NONE_KEY;
use crate::cdr::{Dimension, StatsRow};

/// Bar colours per enterprise, in key order; `(none)` is always grey.
pub const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];
pub const NONE_COLOUR: &str = "#9e9e9e";
const SL_COLOUR: &str = "#2ca02c";
const ABANDON_COLOUR: &str = "#d62728";

/// The colour of an agent state, the same in the bars and the agents table.
pub fn state_colour(state: &str) -> &'static str {
    match state {
        "idle" => "#2ca02c",
        "ringing" => "#ff7f0e",
        "on_call" => "#1f77b4",
        "wrap_up" => "#9467bd",
        "paused" | "auto_paused" => "#bc7a00",
        // A phone that does not answer needs someone to look at it.
        "unreachable" => ABANDON_COLOUR,
        _ => NONE_COLOUR,
    }
}

/// One labelled horizontal bar.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
    pub colour: &'static str,
}

/// Labelled horizontal bars; `scale` fixes the full width (1.0 for rates), else the largest bar.
pub fn horizontal_bars(html: &mut String, bars: &[Bar], scale: Option<f64>, label_width: f64) {
    let full = scale
        .unwrap_or_else(|| bars.iter().map(|bar| bar.value).fold(0.0, f64::max))
        .max(f64::MIN_POSITIVE);
    let (bar_width, row_height) = (200.0, 20.0);
    let height = row_height * bars.len() as f64 + 4.0;
    let width = label_width + bar_width + 60.0;
    let _ = write!(
        html,
        "<svg role=\"img\" width=\"{width}\" height=\"{height}\" style=\"max-width:100%\" \
         viewBox=\"0 0 {width} {height}\">"
    );
    for (index, bar) in bars.iter().enumerate() {
        let y = index as f64 * row_height + 2.0;
        let length = bar_width * (bar.value / full).clamp(0.0, 1.0);
        let _ = write!(
            html,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_width}\" y=\"{y}\" width=\"{bar_width}\" height=\"{}\" fill=\"#f0f0f0\"/>\
             <rect x=\"{label_width}\" y=\"{y}\" width=\"{length}\" height=\"{}\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" font-weight=\"600\">{}</text>",
            label_width - 6.0,
            y + 13.0,
            esc(&bar.label),
            row_height - 6.0,
            row_height - 6.0,
            bar.colour,
            label_width + bar_width + 6.0,
            y + 13.0,
            esc(&bar.text),
        );
    }
    html.push_str("</svg>");
}

/// A 0–100 % bar to put before a figure in a table cell (nothing when undefined).
pub fn mini_bar(fraction: Option<f64>, colour: &str) -> String {
    let Some(fraction) = fraction else {
        return String::new();
    };
    let length = 50.0 * fraction.clamp(0.0, 1.0);
    format!(
        "<svg width=\"52\" height=\"10\" style=\"margin-right:6px\" aria-hidden=\"true\">\
         <rect width=\"52\" height=\"10\" fill=\"#f0f0f0\"/>\
         <rect width=\"{length:.1}\" height=\"10\" fill=\"{colour}\"/></svg>"
    )
}

/// How a step of the time axis is labelled: `09` for an hour, `03-02` for a day.
fn axis_label(time_key: &str) -> String {
    match NaiveDate::parse_from_str(time_key, "%Y-%m-%d") {
        Ok(day) => day.format("%m-%d").to_string(),
        Err(_) => time_key.to_owned(),
    }
}

fn is_weekend(time_key: &str) -> bool {
    NaiveDate::parse_from_str(time_key, "%Y-%m-%d")
        .is_ok_and(|day| matches!(day.weekday(), Weekday::Sat | Weekday::Sun))
}

/// Geometry shared by the two time charts.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    plot_height: f64,
    steps: usize,
}

impl Frame {
    fn new(steps: usize) -> Frame {
        Frame {
            left: 44.0,
            top: 14.0,
            width: 1300.0,
            plot_height: 200.0,
            steps: steps.max(1),
        }
    }

    fn column(&self) -> f64 {
        (self.width - self.left - 12.0) / self.steps as f64
    }

    fn x(&self, index: usize) -> f64 {
        self.left + (index as f64 + 0.5) * self.column()
    }

    fn y(&self, fraction: f64) -> f64 {
        self.top + self.plot_height * (1.0 - fraction.clamp(0.0, 1.0))
    }

    fn height(&self) -> f64 {
        self.top + self.plot_height + 36.0
    }

    /// Opening tag, weekend shading, horizontal grid with `label(fraction)` and the time axis.
    fn open(&self, html: &mut String, name: &str, keys: &[String], label: &dyn Fn(f64) -> String) {
        let _ = write!(
            html,
            "<svg role=\"img\" aria-label=\"{}\" width=\"100%\" viewBox=\"0 0 {} {}\">",
            esc(name),
            self.width,
            self.height()
        );
        for (index, time_key) in keys.iter().enumerate() {
            if is_weekend(time_key) {
                let _ = write!(
                    html,
                    "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"#f3f3f7\"/>",
                    self.x(index) - self.column() / 2.0,
                    self.top,
                    self.column(),
                    self.plot_height
                );
            }
        }
        for step in 0..=4 {
            let fraction = f64::from(step) / 4.0;
            let y = self.y(fraction);
            let _ = write!(
                html,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e3e3e3\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{}</text>",
                self.left,
                self.width - 12.0,
                self.left - 6.0,
                y + 4.0,
                label(fraction)
            );
        }
        // At most about 31 labels, evenly thinned.
        let every = keys.len().div_ceil(31).max(1);
        for (index, time_key) in keys.iter().enumerate().step_by(every) {
            let _ = write!(
                html,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
                self.x(index),
                self.top + self.plot_height + 16.0,
                esc(&axis_label(time_key))
            );
        }
    }
}

fn legend(html: &mut String, entries: &[(String, &str)]) {
    html.push_str("<div class=\"legend\">");
    for (label, colour) in entries {
        let _ = write!(
            html,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            esc(label)
        );
    }
    html.push_str("</div>");
}

/// Service level and abandonment per step of the period, as two lines broken where a step had
/// no offered call; below, the same figures as a table that opens on demand.
pub fn trend_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    let data = view.data;
    let hourly = data.time() == Dimension::Hour;
    let title = if hourly {
        texts.trend_per_hour
    } else {
        texts.trend_per_day
    };
    let _ = write!(
        html,
        "<div class=\"panel wide\" id=\"trend\"><h2>{}{}</h2>",
        esc(title),
        view.csv_link(Table::Trend)
    );
    let keys = data.time_keys();
    let rows: BTreeMap<&str, &StatsRow> = data
        .trend
        .iter()
        .map(|row| (key(row, data.time()), row))
        .collect();
    legend(
        html,
        &[
            (texts.service_level.to_owned(), SL_COLOUR),
            (texts.abandonment.to_owned(), ABANDON_COLOUR),
        ],
    );
    let frame = Frame::new(keys.len());
    frame.open(html, title, &keys, &|fraction| {
        format!("{:.0}%", fraction * 100.0)
    });
    type Figure = fn(&StatsRow) -> Option<f64>;
    let series: [(&str, &str, Figure); 2] = [
        ("sl", SL_COLOUR, |row| row.service_level),
        ("abandonment", ABANDON_COLOUR, abandonment),
    ];
    for (class, colour, value_of) in &series {
        let values: Vec<Option<f64>> = keys
            .iter()
            .map(|time_key| rows.get(time_key.as_str()).and_then(|row| value_of(row)))
            .collect();
        // One polyline per run of defined values.
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, html: &mut String| {
            if run.len() > 1 {
                let _ = write!(
                    html,
                    "<polyline class=\"trend-{class}\" fill=\"none\" stroke=\"{colour}\" \
                     stroke-width=\"2.5\" points=\"{}\"/>",
                    run.join(" ")
                );
            }
            run.clear();
        };
        for (index, value) in values.iter().enumerate() {
            match value {
                Some(value) => run.push(format!("{:.1},{:.1}", frame.x(index), frame.y(*value))),
                None => flush(&mut run, html),
            }
        }
        flush(&mut run, html);
        for (index, value) in values.iter().enumerate() {
            let (Some(value), Some(time_key)) = (value, keys.get(index)) else {
                continue;
            };
            let _ = write!(
                html,
                "<circle class=\"{class}-point\" data-key=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" \
                 fill=\"{colour}\"><title>{}: {}</title></circle>",
                esc(time_key),
                frame.x(index),
                frame.y(*value),
                esc(time_key),
                percent(Some(*value)),
            );
        }
    }
    html.push_str("</svg>");
    let _ = write!(
        html,
        "<details><summary>{}</summary><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>SL</th><th>{}</th><th>{}</th></tr>",
        if hourly {
            texts.table_by_hour
        } else {
            texts.table_by_day
        },
        if hourly { texts.hour } else { texts.date },
        texts.calls,
        texts.offered,
        texts.answered,
        texts.abandoned,
        texts.abandoned_share,
        texts.asa
    );
    for time_key in &keys {
        let Some(row) = rows.get(time_key.as_str()) else {
            continue;
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            esc(time_key),
            row.calls,
            row.offered,
            row.answered,
            row.abandoned,
            percent(row.service_level),
            percent(abandonment(row)),
            seconds(row.asa_s)
        );
    }
    html.push_str("</table></details></div>\n");
}

/// Calls per step of the period, stacked by enterprise, with each step's total above it.
pub fn calls_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    let data = view.data;
    let time = data.time();
    let hourly = time == Dimension::Hour;
    let title = if hourly {
        texts.calls_per_hour
    } else {
        texts.calls_per_day
    };
    let mut enterprises: Vec<&str> = Vec::new();
    let mut per_step: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for row in &data.by_enterprise_time {
        let enterprise = key(row, Dimension::Enterprise);
        if !enterprises.contains(&enterprise) {
            enterprises.push(enterprise);
        }
        per_step
            .entry(key(row, time))
            .or_default()
            .push((enterprise, row.calls));
    }
    enterprises.sort_unstable();
    let colour_of = |enterprise: &str| -> &'static str {
        if enterprise == NONE_KEY {
            return NONE_COLOUR;
        }
        let index = enterprises
            .iter()
            .filter(|name| **name != NONE_KEY)
            .position(|name| *name == enterprise)
            .unwrap_or(0);
        PALETTE
            .get(index % PALETTE.len())
            .copied()
            .unwrap_or(NONE_COLOUR)
    };
    let _ = write!(
        html,
        "<div class=\"panel wide\" id=\"calls\"><h2>{}{}</h2>",
        esc(title),
        view.csv_link(Table::Calls)
    );
    if per_step.is_empty() {
        let _ = writeln!(html, "<p class=\"empty\">{}</p></div>", texts.no_calls);
        return;
    }
    let legend_entries: Vec<(String, &str)> = enterprises
        .iter()
        .map(|enterprise| (view.group_name(enterprise), colour_of(enterprise)))
        .collect();
    legend(html, &legend_entries);
    let keys = data.time_keys();
    let max_total = per_step
        .values()
        .map(|parts| parts.iter().map(|(_, calls)| calls).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let frame = Frame::new(keys.len());
    frame.open(html, title, &keys, &|fraction| {
        let value = max_total as f64 * fraction;
        if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.1}")
        }
    });
    let total_class = if hourly { "hour-total" } else { "day-total" };
    let bar_width = frame.column() * 0.7;
    for (index, time_key) in keys.iter().enumerate() {
        let Some(parts) = per_step.get(time_key.as_str()) else {
            continue;
        };
        let mut stacked = 0u64;
        for (enterprise, calls) in parts {
            let bottom = frame.y(stacked as f64 / max_total as f64);
            stacked += calls;
            let top = frame.y(stacked as f64 / max_total as f64);
            let _ = write!(
                html,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{bar_width:.1}\" height=\"{:.1}\" \
                 fill=\"{}\"><title>{} {}: {calls}</title></rect>",
                frame.x(index) - bar_width / 2.0,
                bottom - top,
                colour_of(enterprise),
                esc(&axis_label(time_key)),
                esc(&view.group_name(enterprise))
            );
        }
        let _ = write!(
            html,
            "<text class=\"{total_class}\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"{}\" \
             font-weight=\"600\" text-anchor=\"middle\">{stacked}</text>",
            frame.x(index),
            frame.y(stacked as f64 / max_total as f64) - 5.0,
            if keys.len() > 31 { 8 } else { 12 }
        );
    }
    html.push_str("</svg></div>\n");
}
