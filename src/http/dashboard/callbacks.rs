//! The dashboard's queued-callback panels: the requests pending now (from the live snapshot)
//! and the period's callback figures per enterprise (offered, requested, attempts, connected,
//! failed, service level on the net wait, mean net wait). Shown when callbacks are in use: a
//! request pends now or the period has a callback offer, request or attempt.

use std::fmt::Write;

use super::charts::mini_bar;
use super::csv::Table;
use super::panels::rate_rows;
use super::{duration, esc, percent, View};
use crate::cdr::{CallbackFigures, Dimension};

/// Whether the page has the callback panels.
pub fn in_use(view: &View) -> bool {
    !view.snapshot.callbacks.is_empty() || !view.data.total.callback.is_empty()
}

/// Requests not yet connected, oldest first: enterprise, language, number, state, dials made,
/// time since the request, and the place in the queue or the time to the next dial.
pub fn pending_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    let pending = &view.snapshot.callbacks;
    let _ = write!(
        html,
        "<div class=\"panel half\" id=\"callbacks-pending\"><h2>{} \
         <span id=\"callbacks-pending-count\">({})</span></h2>\
         <table><tr><th>{}</th><th class=\"text\">{}</th><th class=\"text\">{}</th>\
         <th class=\"text\">{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        texts.callbacks_pending,
        pending.len(),
        texts.enterprise,
        texts.language,
        texts.number,
        texts.state,
        texts.attempts,
        texts.waiting_since_request,
        texts.position_or_next_try,
    );
    if pending.is_empty() {
        let _ = write!(
            html,
            "<tr><td class=\"empty\" colspan=\"7\">{}</td></tr>",
            texts.no_callbacks_pending
        );
    }
    for request in pending {
        let place = match (request.position, request.next_attempt_s) {
            (Some(position), _) => position.to_string(),
            (None, Some(next)) => format!("{} {}", texts.in_time, duration(next)),
            (None, None) => "–".to_owned(),
        };
        let _ = write!(
            html,
            "<tr class=\"callback\"><td title=\"{}\">{}</td><td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            esc(&request.group),
            esc(&view.group_name(&request.group)),
            esc(&view.lang.language_name(&request.language)),
            esc(&request.number),
            esc(&view.lang.callback_state(&request.state)),
            request.attempts,
            duration(request.waiting_s),
            esc(&place),
        );
    }
    html.push_str("</table></div>\n");
}

/// The period's callback figures per enterprise with callbacks, and their total.
pub fn figures_panel(html: &mut String, view: &View) {
    let texts = view.texts();
    let data = view.data;
    let minutes = data.callback_sl_threshold_s / 60;
    let _ = write!(
        html,
        "<div class=\"panel half\" id=\"callbacks\"><h2>{}{}</h2>",
        texts.callbacks_by_enterprise,
        view.csv_link(Table::Callbacks)
    );
    if data.total.callback.is_empty() {
        let _ = write!(html, "<p class=\"empty\">{}</p>", texts.no_callbacks);
    } else {
        let _ = write!(
            html,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             <th>SL ≤ {minutes} min</th><th>{}</th></tr>",
            texts.enterprise,
            texts.offered,
            texts.requested,
            texts.attempts,
            texts.connected,
            texts.failed,
            texts.avg_net_wait,
        );
        for (name, row) in rate_rows(view, Dimension::Enterprise)
            .into_iter()
            .filter(|(_, row)| !row.callback.is_empty())
        {
            let title = esc(super::key(row, Dimension::Enterprise));
            figures_row(html, &format!(" title=\"{title}\""), &name, &row.callback);
        }
        figures_row(html, " class=\"total\"", texts.total, &data.total.callback);
        html.push_str("</table>");
    }
    let _ = writeln!(
        html,
        "<p class=\"sub\">{}</p></div>",
        texts
            .callback_definitions
            .replace("{min}", &minutes.to_string())
    );
}

fn figures_row(html: &mut String, attributes: &str, name: &str, figures: &CallbackFigures) {
    let _ = write!(
        html,
        "<tr class=\"callback-figures\"><td{attributes}>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
        esc(name),
        figures.offered,
        figures.accepted,
        figures.attempts,
        figures.connected,
        figures.failed,
        mini_bar(figures.service_level, "#2ca02c"),
        percent(figures.service_level),
        figures
            .asa_s
            .map_or("–".to_owned(), |s| duration(s.round() as u64)),
    );
}
