//! `GET /`: the supervisors' dashboard, one server-rendered HTML page with inline SVG charts
//! (no scripts, no external resources: the service runs on a closed network), in Lithuanian
//! (default) or English (`?lang=lt|en`). It shows the live snapshot (queues by enterprise,
//! agents with their state, trunks, bans) and the statistics of a period picked on the page:
//! `?period=day|week|month&day=YYYY-MM-DD` (the day, ISO week or month holding that day;
//! default today in Europe/Vilnius) or `?period=custom&from=YYYY-MM-DD&to=YYYY-MM-DD` (both
//! days included), computed with `cdr::compute_stats` like the API. It reloads itself every
//! 10 s. With queued callbacks in use it lists the requests pending now and the period's
//! callback figures per enterprise. `GET /dashboard.csv` (or `/?format=csv`) with the same parameters and `table=` gives
//! any of the page's tables as CSV. The agents table has buttons that pause, log out or free
//! each agent (`POST /agents/{agent}/state`, see [`actions`]). Every text that comes from data
//! is HTML-escaped: group, agent and language names are configuration or caller-influenced and
//! must not inject markup.

pub mod actions;
mod agents;
mod callbacks;
mod charts;
mod csv;
mod panels;
pub mod period;
pub mod text;

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use chrono::NaiveDate;
use chrono_tz::Europe::Vilnius;

use super::api::{local_date, query_pairs, today};
use super::live::LiveSnapshot;
use super::server::{text_error, token_cookie, HttpState};
use crate::cdr::stats::NONE_KEY;
use crate::cdr::{
    compute_agent_stats, compute_stats, AgentRow, CallRecord, Dimension, StatsQuery, StatsRow,
    Thresholds,
};

pub use actions::set_state as set_agent_state;
pub use csv::Table;
pub use period::{Period, PeriodKind};
pub use text::Lang;

/// Seconds between automatic reloads of the page.
pub const REFRESH_S: u32 = 10;

/// What a request to `/` or `/dashboard.csv` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub period: Period,
    /// The request named its period (else it is today's and stays so at every reload).
    pub period_given: bool,
    pub lang: Lang,
    pub lang_given: bool,
    /// `format=csv` (or the `/dashboard.csv` route): this table as CSV.
    pub csv: Option<Table>,
    /// The token came as `?token=` (to be swapped for the cookie).
    pub token_given: bool,
}

impl Params {
    /// Reads the query; blank values (empty form fields) are ignored.
    /// `csv_route`: the request is for `/dashboard.csv`, CSV whatever `format` says.
    pub fn parse(
        pairs: &[(String, String)],
        today: NaiveDate,
        csv_route: bool,
    ) -> Result<Params, String> {
        let (mut kind, mut day, mut from, mut to) = (None, None, None, None);
        let (mut lang, mut lang_given, mut token_given) = (Lang::default(), false, false);
        let (mut csv, mut table) = (false, None);
        for (name, value) in pairs {
            let value = value.trim();
            match name.as_str() {
                "token" => token_given = true,
                "period" | "day" | "from" | "to" | "lang" | "format" | "table"
                    if value.is_empty() => {}
                "period" => kind = Some(PeriodKind::parse(value)?),
                "day" => day = Some(local_date("day", value)?),
                "from" => from = Some(local_date("from", value)?),
                "to" => to = Some(local_date("to", value)?),
                "lang" => {
                    lang = Lang::parse(value)?;
                    lang_given = true;
                }
                "format" => {
                    csv = match value {
                        "html" => false,
                        "csv" => true,
                        other => return Err(format!("format {other:?}: expected html or csv")),
                    }
                }
                "table" => table = Some(Table::parse(value)?),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: expected period, day, from, to, lang, \
                         format, table or token"
                    ))
                }
            }
        }
        let period_given = kind.is_some() || day.is_some() || from.is_some() || to.is_some();
        let kind = kind.unwrap_or(if from.is_some() || to.is_some() {
            PeriodKind::Custom
        } else {
            PeriodKind::Day
        });
        let period = match kind {
            PeriodKind::Custom => {
                let from = from.or(day).or(to).unwrap_or(today);
                Period::custom(from, to.unwrap_or(from))?
            }
            kind => Period::of_kind(kind, day.unwrap_or(today)),
        };
        Ok(Params {
            period,
            period_given,
            lang,
            lang_given,
            csv: (csv || csv_route).then(|| table.unwrap_or(Table::Enterprises)),
            token_given,
        })
    }

    /// This request's address on `path` without the token (and without a period or language
    /// it did not name, so "today" stays today).
    pub fn location(&self, path: &str) -> String {
        let mut query = Vec::new();
        if self.period_given {
            query.push(self.period.query());
        }
        if self.lang_given {
            query.push(format!("lang={}", self.lang.code()));
        }
        match self.csv {
            Some(table) if path == "/dashboard.csv" => {
                query.push(format!("table={}", table.as_str()))
            }
            Some(table) => query.push(format!("format=csv&table={}", table.as_str())),
            None => {}
        }
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        }
    }
}

/// A page address with a period and the page language (`&amp;`-escaped for HTML).
pub(crate) fn href(path: &str, period: Option<&Period>, lang: Lang, extra: &str) -> String {
    let mut query: Vec<String> = Vec::new();
    if let Some(period) = period {
        query.push(period.query());
    }
    if lang != Lang::default() {
        query.push(format!("lang={}", lang.code()));
    }
    if !extra.is_empty() {
        query.push(extra.to_owned());
    }
    if query.is_empty() {
        return path.to_owned();
    }
    esc(&format!("{path}?{}", query.join("&")))
}

pub async fn page(State(state): State<HttpState>, uri: Uri) -> Response {
    respond(state, &uri, "/", false).await
}

/// `GET /dashboard.csv`: a table of the page as CSV (`table=`, default `enterprises`).
pub async fn csv_download(State(state): State<HttpState>, uri: Uri) -> Response {
    respond(state, &uri, "/dashboard.csv", true).await
}

async fn respond(state: HttpState, uri: &Uri, path: &str, csv_route: bool) -> Response {
    let pairs = match query_pairs(uri) {
        Ok(pairs) => pairs,
        Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
    };
    let today = today();
    let params = match Params::parse(&pairs, today, csv_route) {
        Ok(params) => params,
        Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
    };
    if params.token_given {
        // The auth layer has accepted the token; keep it in a cookie, not in the address bar.
        return redirect_storing_token(&params.location(path), state.token.as_deref());
    }
    let data = match load(&state, params.period).await {
        Ok(data) => data,
        Err((status, message)) => {
            tracing::error!(%message, "dashboard statistics");
            return text_error(status, message);
        }
    };
    let snapshot = state.live.borrow().clone();
    let mut view = View::new(&snapshot, &data, params.lang, today);
    view.actions = Some(actions::Actions::new(&state, &params));
    match params.csv {
        Some(table) => csv::response(&view, table),
        None => Html(render(&view)).into_response(),
    }
}

/// 303 to `location`, setting the dashboard cookie.
pub(crate) fn redirect_storing_token(location: &str, token: Option<&str>) -> Response {
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

/// The statistics of one period, all computed from one read of its records.
#[derive(Debug, Clone)]
pub struct PeriodData {
    pub period: Period,
    /// The thresholds these figures were computed with.
    pub thresholds: Thresholds,
    pub by_enterprise: Vec<StatsRow>,
    pub by_language: Vec<StatsRow>,
    pub by_outcome: Vec<StatsRow>,
    /// By enterprise and [`PeriodData::time`].
    pub by_enterprise_time: Vec<StatsRow>,
    /// By [`PeriodData::time`] alone.
    pub trend: Vec<StatsRow>,
    /// The whole period in one row.
    pub total: StatsRow,
    pub agents: Vec<AgentRow>,
    /// The callback service level's threshold these figures were computed with, in seconds.
    pub callback_sl_threshold_s: u32,
}

impl PeriodData {
    /// Figures over `records` (those outside the period are ignored).
    pub fn compute(
        records: &[CallRecord],
        period: Period,
        thresholds: Thresholds,
    ) -> Result<PeriodData, String> {
        let (from, to) = period.instants()?;
        let base = StatsQuery::with_thresholds(from, to, Vec::new(), thresholds);
        let query = |by: Vec<Dimension>| compute_stats(records, &StatsQuery { by, ..base.clone() });
        let time = PeriodData::time_of(&period);
        Ok(PeriodData {
            period,
            thresholds,
            by_enterprise: query(vec![Dimension::Enterprise]),
            by_language: query(vec![Dimension::Language]),
            by_outcome: query(vec![Dimension::Outcome]),
            by_enterprise_time: query(vec![Dimension::Enterprise, time]),
            trend: query(vec![time]),
            total: query(Vec::new()).into_iter().next().unwrap_or_default(),
            agents: compute_agent_stats(records, from, to),
            callback_sl_threshold_s: base.callback_sl_threshold_s,
        })
    }

    /// Hours for one day, days for longer periods.
    pub fn time(&self) -> Dimension {
        PeriodData::time_of(&self.period)
    }

    fn time_of(period: &Period) -> Dimension {
        if period.single_day() {
            Dimension::Hour
        } else {
            Dimension::Day
        }
    }

    /// The keys of every step of the time axis, in order (`00`..`23` or each date).
    pub fn time_keys(&self) -> Vec<String> {
        match self.time() {
            Dimension::Hour => (0..24).map(|hour| format!("{hour:02}")).collect(),
            _ => self
                .period
                .days()
                .map(|day| day.format("%Y-%m-%d").to_string())
                .collect(),
        }
    }
}

/// The period's figures; 503 while the database cannot be reached, else 500 on failure.
pub(crate) async fn load(
    state: &HttpState,
    period: Period,
) -> Result<PeriodData, (StatusCode, String)> {
    let internal = |message: String| (StatusCode::INTERNAL_SERVER_ERROR, message);
    let (from, to) = period.instants().map_err(internal)?;
    let records = state
        .store
        .completed_records(from, to)
        .await
        .map_err(|error| {
            let status = if error.is_unavailable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (
                status,
                format!("reading the call records for the dashboard: {error}"),
            )
        })?;
    PeriodData::compute(&records, period, state.thresholds).map_err(internal)
}

/// Groups' display names per language, from the snapshot's queues (the routing's `name`).
#[derive(Debug, Clone, Default)]
pub struct GroupNames(BTreeMap<String, BTreeMap<String, String>>);

impl GroupNames {
    pub fn of(snapshot: &LiveSnapshot) -> GroupNames {
        GroupNames(
            snapshot
                .queues
                .iter()
                .filter(|queue| !queue.names.is_empty())
                .map(|queue| (queue.group.clone(), queue.names.clone()))
                .collect(),
        )
    }

    /// The name in `lang`, else in Lithuanian or English, else the group's key.
    pub fn name(&self, group: &str, lang: Lang) -> String {
        if group == NONE_KEY {
            return lang.texts().no_group.to_owned();
        }
        self.0
            .get(group)
            .and_then(|names| {
                names
                    .get(lang.code())
                    .or_else(|| names.get("lt"))
                    .or_else(|| names.get("en"))
            })
            .cloned()
            .unwrap_or_else(|| group.to_owned())
    }
}

/// A sort key that orders names as Lithuanian does (`š` after `s`, before `t`), case-blind.
pub fn collation_key(name: &str) -> Vec<(char, u8)> {
    name.chars()
        .flat_map(char::to_lowercase)
        .map(|character| match character {
            'ą' => ('a', 1),
            'č' => ('c', 1),
            'ę' => ('e', 1),
            'ė' => ('e', 2),
            'į' => ('i', 1),
            'y' => ('i', 3),
            'š' => ('s', 1),
            'ų' => ('u', 1),
            'ū' => ('u', 2),
            'ž' => ('z', 1),
            other => (other, 0),
        })
        .collect()
}

/// Everything one page or CSV is made of.
pub struct View<'a> {
    pub snapshot: &'a LiveSnapshot,
    pub data: &'a PeriodData,
    pub lang: Lang,
    pub today: NaiveDate,
    pub names: GroupNames,
    /// The agents table's buttons (pause, log out, make available); none without.
    pub actions: Option<actions::Actions>,
}

impl<'a> View<'a> {
    pub fn new(
        snapshot: &'a LiveSnapshot,
        data: &'a PeriodData,
        lang: Lang,
        today: NaiveDate,
    ) -> View<'a> {
        View {
            snapshot,
            data,
            lang,
            today,
            names: GroupNames::of(snapshot),
            actions: None,
        }
    }

    pub fn texts(&self) -> &'static text::Texts {
        self.lang.texts()
    }

    pub fn group_name(&self, group: &str) -> String {
        self.names.name(group, self.lang)
    }

    /// A `CSV` link for one table of the page.
    pub fn csv_link(&self, table: Table) -> String {
        format!(
            "<a class=\"csv\" href=\"{}\" download>{}</a>",
            href(
                "/dashboard.csv",
                Some(&self.data.period),
                self.lang,
                &format!("table={}", table.as_str())
            ),
            self.texts().csv
        )
    }
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 16px 24px; color: #222; background: #f6f7f9; }
h1 { font-size: 22px; margin: 0 0 4px; display: inline-block; }
h2 { font-size: 16px; margin: 0 0 8px; }
nav.top { float: right; font-size: 14px; }
nav.top a, nav.top b { margin-left: 10px; }
.sub { color: #666; font-size: 13px; margin-bottom: 14px; }
.grid { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; }
.grid > .panel { grid-column: span 2; min-width: 0; }
.grid > .wide { grid-column: 1 / -1; }
.grid > .half { grid-column: span 3; }
.grid > .third { grid-column: span 2; }
@media (max-width: 1000px) { .grid > .panel { grid-column: 1 / -1; } }
.panel { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: 12px 14px; }
.panel h2 a.csv { float: right; font-size: 12px; font-weight: 400; }
.cards { display: flex; gap: 24px; margin-bottom: 8px; }
.card b { display: block; font-size: 26px; }
.card span { color: #666; font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; margin-top: 6px; }
th, td { padding: 3px 6px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
td:first-child, td.wrap { white-space: normal; }
th { color: #555; font-weight: 600; white-space: normal; vertical-align: bottom; }
.legend span { display: inline-block; margin-right: 14px; font-size: 13px; }
.legend i { display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px; }
svg text { font-family: system-ui, sans-serif; }
.empty { color: #888; font-style: italic; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.picker { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 18px; font-size: 14px; }
.picker form { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; }
.picker a.on { font-weight: 700; text-decoration: none; color: #222; }
.picker label { color: #555; }
form.agent-state { display: flex; gap: 4px; margin: 0; }
form.agent-state button { font-size: 12px; padding: 1px 6px; cursor: pointer; }
tr.callback-figures td.total { font-weight: 600; }
details summary { cursor: pointer; font-size: 13px; color: #444; margin-top: 6px; }
";

/// The whole page.
pub fn render(view: &View) -> String {
    let texts = view.texts();
    let data = view.data;
    let mut html = String::with_capacity(64 * 1024);
    let snapshot_time = view
        .snapshot
        .at
        .map(|at| {
            at.with_timezone(&Vilnius)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| texts.no_snapshot.to_owned());
    let label = esc(&data.period.label(view.lang));
    let here = Some(&data.period);
    let other_lang = match view.lang {
        Lang::Lt => format!(
            "<b>LT</b><a href=\"{}\">EN</a>",
            href("/", here, Lang::En, "")
        ),
        Lang::En => format!(
            "<a href=\"{}\">LT</a><b>EN</b>",
            href("/", here, Lang::Lt, "")
        ),
    };
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{code}\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} — {label}</title>\n<style>{STYLE}</style></head><body>\n\
         <nav class=\"top\">{other_lang}<a href=\"{wallboard_href}\">{wallboard}</a></nav>\n\
         <h1>{title} — {label}</h1>\n\
         <div class=\"sub\">{live} {snapshot_time} (Europe/Vilnius) · {stats_for} {label}, \
         {completed} · {refreshes} {REFRESH_S} s</div>\n<div class=\"grid\">\n",
        code = view.lang.code(),
        title = esc(texts.title),
        wallboard_href = href("/wallboard", None, view.lang, ""),
        wallboard = texts.wallboard,
        live = texts.live_snapshot,
        snapshot_time = esc(&snapshot_time),
        stats_for = texts.statistics_for,
        completed = texts.completed_only,
        refreshes = texts.refreshes_every,
    );
    panels::period_picker(&mut html, view);
    panels::live_panel(&mut html, view);
    panels::agent_state_panel(&mut html, view);
    if callbacks::in_use(view) {
        callbacks::pending_panel(&mut html, view);
        callbacks::figures_panel(&mut html, view);
    }
    panels::outcome_panel(&mut html, view);
    panels::trunk_panel(&mut html, view);
    panels::ban_panel(&mut html, view);
    agents::agents_panel(&mut html, view);
    charts::trend_panel(&mut html, view);
    charts::calls_panel(&mut html, view);
    panels::rate_panel(&mut html, view, Dimension::Enterprise);
    panels::rate_panel(&mut html, view, Dimension::Language);
    let Thresholds {
        short_abandon_s,
        sl_threshold_s,
    } = data.thresholds;
    let _ = write!(
        html,
        "</div>\n<p class=\"sub\">{}</p>\n</body></html>\n",
        texts
            .definitions
            .replace("{sl}", &sl_threshold_s.to_string())
            .replace("{short}", &short_abandon_s.to_string())
    );
    html
}

/// The key of `row` in `dimension`, `(none)` when absent.
pub(crate) fn key(row: &StatsRow, dimension: Dimension) -> &str {
    row.keys
        .iter()
        .find(|(candidate, _)| *candidate == dimension)
        .map(|(_, key)| key.as_str())
        .unwrap_or(NONE_KEY)
}

/// Abandoned calls as a share of offered calls; `None` when nothing was offered.
pub(crate) fn abandonment(row: &StatsRow) -> Option<f64> {
    (row.offered > 0).then(|| row.abandoned as f64 / row.offered as f64)
}

pub(crate) fn percent(fraction: Option<f64>) -> String {
    fraction.map_or("–".to_owned(), |f| format!("{:.1}%", f * 100.0))
}

pub(crate) fn seconds(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |s| format!("{s:.1} s"))
}

/// `m:ss`, or `h:mm:ss` from an hour on.
pub(crate) fn duration(total: u64) -> String {
    if total >= 3600 {
        format!(
            "{}:{:02}:{:02}",
            total / 3600,
            total % 3600 / 60,
            total % 60
        )
    } else {
        format!("{}:{:02}", total / 60, total % 60)
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
mod tests;
