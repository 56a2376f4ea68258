//! `GET /wallboard`: the big-screen view for the contact-centre room. Per enterprise (every
//! configured group, by display name): callers waiting, the longest wait, agents available
//! now, and today's service level; totals on top. Large type that scales with the screen,
//! no scripts or external resources, reloads itself every [`REFRESH_S`] seconds. Same access
//! as the dashboard: bearer token, or `?token=` once, swapped for the page cookie.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use chrono::NaiveDate;
use chrono_tz::Europe::Vilnius;

use super::api::{query_pairs, today};
use super::dashboard::{
    collation_key, duration, esc, href, load, percent, redirect_storing_token, GroupNames, Lang,
    Period,
};
use super::live::LiveSnapshot;
use super::server::{text_error, HttpState};
use crate::cdr::{Dimension, StatsRow, Thresholds};

/// Seconds between automatic reloads of the wallboard.
pub const REFRESH_S: u32 = 5;

pub async fn page(State(state): State<HttpState>, uri: Uri) -> Response {
    let pairs = match query_pairs(&uri) {
        Ok(pairs) => pairs,
        Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
    };
    let (mut lang, mut lang_given, mut token_given) = (Lang::default(), false, false);
    for (name, value) in &pairs {
        match name.as_str() {
            "token" => token_given = true,
            "lang" => match Lang::parse(value) {
                Ok(parsed) => {
                    lang = parsed;
                    lang_given = true;
                }
                Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
            },
            other => {
                return text_error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other:?}: expected lang or token"),
                )
            }
        }
    }
    if token_given {
        let location = if lang_given {
            format!("/wallboard?lang={}", lang.code())
        } else {
            "/wallboard".to_owned()
        };
        return redirect_storing_token(&location, state.token.as_deref());
    }
    let day = today();
    let data = match load(&state, Period::day(day)).await {
        Ok(data) => data,
        Err((status, message)) => {
            tracing::error!(%message, "wallboard statistics");
            return text_error(status, message);
        }
    };
    let snapshot = state.live.borrow().clone();
    Html(render(
        &snapshot,
        &data.by_enterprise,
        data.thresholds,
        lang,
        day,
    ))
    .into_response()
}

/// One enterprise's line.
struct Line {
    group: String,
    name: String,
    waiting: usize,
    longest_wait_s: u64,
    available: Option<usize>,
    today: Option<StatsRow>,
}

const STYLE: &str = "
html { background: #10161f; }
body { font-family: system-ui, sans-serif; margin: 1.5vh 2vw; color: #eef2f7; background: #10161f; }
header { display: flex; justify-content: space-between; align-items: baseline; }
h1 { font-size: min(2.6vw, 4.6vh); margin: 0; font-weight: 600; }
.clock { font-size: min(2.2vw, 3.9vh); color: #9fb0c4; }
.clock a { color: #9fb0c4; font-size: min(1.2vw, 2.2vh); margin-left: 1vw; }
.totals { display: flex; gap: 2vw; margin: 1.5vh 0; }
.total { flex: 1; background: #1b2430; border-radius: 0.8vw; padding: 0.8vh 1.2vw; }
.total b { display: block; font-size: min(5vw, 8.5vh); line-height: 1.1; }
.total span { font-size: min(1.4vw, 2.5vh); color: #9fb0c4; }
table { width: 100%; border-collapse: collapse; font-size: min(2.3vw, 3.6vh); }
th { font-size: min(1.3vw, 2.3vh); color: #9fb0c4; font-weight: 500; text-align: right; padding: 0.3vh 1vw; }
th:first-child, td:first-child { text-align: left; }
td { padding: 0.5vh 1vw; border-top: 1px solid #2a3544; text-align: right; font-variant-numeric: tabular-nums; }
td:first-child { font-size: min(2vw, 3.4vh); }
td.big { font-size: min(3.2vw, 5vh); font-weight: 700; line-height: 1.15; }
.ok { color: #4cd07d; } .warn { color: #ffb347; } .bad { color: #ff5d5d; } .dim { color: #6c7a8c; }
footer { margin-top: 1vh; font-size: min(1.1vw, 1.9vh); color: #6c7a8c; }
";

fn sl_class(service_level: Option<f64>) -> &'static str {
    match service_level {
        None => "dim",
        Some(level) if level >= 0.8 => "ok",
        Some(level) if level >= 0.6 => "warn",
        Some(_) => "bad",
    }
}

/// The whole wallboard.
pub fn render(
    snapshot: &LiveSnapshot,
    today_by_enterprise: &[StatsRow],
    thresholds: Thresholds,
    lang: Lang,
    day: NaiveDate,
) -> String {
    let texts = lang.texts();
    let names = GroupNames::of(snapshot);
    let mut today: BTreeMap<&str, &StatsRow> = today_by_enterprise
        .iter()
        .filter_map(|row| {
            row.keys
                .iter()
                .find(|(dimension, _)| *dimension == Dimension::Enterprise)
                .map(|(_, key)| (key.as_str(), row))
        })
        .collect();
    let mut lines: Vec<Line> = snapshot
        .queues
        .iter()
        .map(|queue| Line {
            group: queue.group.clone(),
            name: names.name(&queue.group, lang),
            waiting: queue.waiting,
            longest_wait_s: queue.longest_wait_s,
            available: Some(queue.agents_available),
            today: today.remove(queue.group.as_str()).cloned(),
        })
        .collect();
    // Enterprises with calls today but no queue now (routing changed), except "no group".
    lines.extend(
        today
            .into_iter()
            .filter(|(group, _)| *group != crate::cdr::stats::NONE_KEY)
            .map(|(group, row)| Line {
                group: group.to_owned(),
                name: names.name(group, lang),
                waiting: 0,
                longest_wait_s: 0,
                available: None,
                today: Some(row.clone()),
            }),
    );
    lines.sort_by_cached_key(|line| collation_key(&line.name));
    let waiting: usize = lines.iter().map(|line| line.waiting).sum();
    let longest = lines
        .iter()
        .map(|line| line.longest_wait_s)
        .max()
        .unwrap_or(0);
    let available = snapshot
        .agents
        .iter()
        .filter(|agent| agent.state == "idle")
        .count();
    let (answered_in_sl, counted) =
        today_by_enterprise
            .iter()
            .fold((0, 0), |(in_sl, counted), row| {
                (
                    in_sl + row.answered_in_sl,
                    counted + row.answered + row.abandoned,
                )
            });
    let overall_sl = (counted > 0).then(|| answered_in_sl as f64 / counted as f64);
    let clock = snapshot
        .at
        .map(|at| at.with_timezone(&Vilnius).format("%H:%M:%S").to_string())
        .unwrap_or_else(|| texts.no_snapshot.to_owned());
    let sl_limit = u64::from(thresholds.sl_threshold_s);
    let wait_class = |waiting: usize, longest: u64| match (waiting, longest) {
        (0, _) => "dim",
        (_, longest) if longest > sl_limit => "bad",
        _ => "warn",
    };
    let other = match lang {
        Lang::Lt => Lang::En,
        Lang::En => Lang::Lt,
    };
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{code}\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} — {wallboard}</title>\n<style>{STYLE}</style></head><body>\n\
         <header><h1>{title}</h1><div class=\"clock\">{day} <b id=\"clock\">{clock}</b>\
         <a href=\"{other_href}\">{other_code}</a><a href=\"{dashboard_href}\">{dashboard}</a>\
         </div></header>\n<div class=\"totals\">\
         <div class=\"total\"><b id=\"total-waiting\" class=\"{waiting_class}\">{waiting}</b><span>{callers_waiting}</span></div>\
         <div class=\"total\"><b id=\"total-longest\" class=\"{waiting_class}\">{longest_text}</b><span>{longest_wait}</span></div>\
         <div class=\"total\"><b id=\"total-available\">{available}</b><span>{agents_available}</span></div>\
         <div class=\"total\"><b id=\"total-sl\" class=\"{sl_class}\">{sl_text}</b><span>{sl_today}</span></div>\
         </div>\n<table><tr><th>{enterprise}</th><th>{waiting_head}</th><th>{longest_wait}</th>\
         <th>{agents_available}</th><th>{sl_today}</th></tr>\n",
        code = lang.code(),
        title = esc(texts.title),
        wallboard = texts.wallboard,
        other_href = href("/wallboard", None, other, &format!("lang={}", other.code())),
        other_code = other.code().to_uppercase(),
        dashboard_href = href("/", None, lang, ""),
        dashboard = texts.dashboard,
        waiting_class = wait_class(waiting, longest),
        longest_text = duration(longest),
        longest_wait = texts.longest_wait,
        callers_waiting = texts.callers_waiting,
        agents_available = texts.agents_available,
        sl_class = sl_class(overall_sl),
        sl_text = percent(overall_sl),
        sl_today = texts.sl_today,
        enterprise = texts.enterprise,
        waiting_head = texts.waiting,
    );
    for line in &lines {
        let sl = line.today.as_ref().and_then(|row| row.service_level);
        let available_class = match (line.available, line.waiting) {
            (Some(0), waiting) if waiting > 0 => "bad",
            (Some(0), _) | (None, _) => "dim",
            _ => "ok",
        };
        let answered = line.today.as_ref().map_or(0, |row| row.answered);
        let offered = line.today.as_ref().map_or(0, |row| row.offered);
        let _ = writeln!(
            html,
            "<tr class=\"enterprise\" data-group=\"{}\"><td>{}</td><td class=\"big {}\">{}</td>\
             <td class=\"{}\">{}</td><td class=\"big {available_class}\">{}</td>\
             <td class=\"big {}\" title=\"{answered}/{offered}\">{}</td></tr>",
            esc(&line.group),
            esc(&line.name),
            wait_class(line.waiting, line.longest_wait_s),
            line.waiting,
            wait_class(line.waiting, line.longest_wait_s),
            duration(line.longest_wait_s),
            line.available
                .map_or("–".to_owned(), |count| count.to_string()),
            sl_class(sl),
            percent(sl),
        );
    }
    let _ = write!(
        html,
        "</table>\n<footer>{}</footer>\n</body></html>\n",
        texts
            .definitions
            .replace("{sl}", &thresholds.sl_threshold_s.to_string())
            .replace("{short}", &thresholds.short_abandon_s.to_string())
    );
    html
}
