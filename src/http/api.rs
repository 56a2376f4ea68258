//! The JSON API: statistics (the same rows and text as `hotline stats`, computed by the same
//! `CdrStore::stats` and rendered by the same `cdr::format`), call listings and audit trails,
//! the live snapshot, and routing reload through the service loop.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Vilnius;
use serde_json::json;
use tokio::sync::oneshot;

use super::live::ReloadRequest;
use super::server::{text_error, HttpState};
use crate::cdr::format::{render, OutputFormat};
use crate::cdr::{CallFilter, CdrError, Dimension, Outcome, Page, StatsQuery, Thresholds};

/// `/api/calls` page size when `limit` is not given, and the largest one allowed.
pub const DEFAULT_CALLS_LIMIT: u32 = 100;
pub const MAX_CALLS_LIMIT: u32 = 1000;
/// How long `POST /api/reload` waits for the service loop's answer.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /api/stats?from=&to=&by=&short_abandon=&sl_threshold=&format=`: dates are local
/// (Europe/Vilnius) `YYYY-MM-DD`, `to` exclusive, default today; `by` repeats or takes a comma
/// list; `format` is `json` (default), `csv` or `table`.
pub async fn stats(State(state): State<HttpState>, uri: Uri) -> Response {
    let (query, format) =
        match query_pairs(&uri).and_then(|pairs| stats_request(&pairs, state.thresholds)) {
            Ok(request) => request,
            Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
        };
    let rows = match state.store.stats(&query).await {
        Ok(rows) => rows,
        Err(error) => return store_error("computing statistics", &error),
    };
    match render(&rows, format) {
        Ok(text) => ([(header::CONTENT_TYPE, content_type(format))], text).into_response(),
        Err(error) => internal_error("formatting statistics", &error),
    }
}

/// `GET /api/calls?from=&to=&enterprise=&outcome=&limit=&offset=`: completed calls, newest
/// first. `from`/`to` are local dates or RFC 3339 times.
pub async fn calls(State(state): State<HttpState>, uri: Uri) -> Response {
    let (filter, page) = match query_pairs(&uri).and_then(|pairs| calls_request(&pairs)) {
        Ok(request) => request,
        Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
    };
    match state.store.calls(&filter, page).await {
        Ok(calls) => Json(json!({
            "limit": page.limit,
            "offset": page.offset,
            "calls": calls,
        }))
        .into_response(),
        Err(error) => store_error("listing calls", &error),
    }
}

/// `GET /api/calls/{call_id}`: the call's audit trail; 404 when nothing is recorded.
pub async fn call_events(State(state): State<HttpState>, Path(call_id): Path<String>) -> Response {
    match state.store.events(&call_id).await {
        Ok(events) if events.is_empty() => text_error(
            StatusCode::NOT_FOUND,
            format!("no events recorded for call {call_id:?}"),
        ),
        Ok(events) => Json(json!({ "call_id": call_id, "events": events })).into_response(),
        Err(error) => store_error("reading call events", &error),
    }
}

/// `GET /api/live`: the latest snapshot the service published.
pub async fn live(State(state): State<HttpState>) -> Response {
    let snapshot = state.live.borrow().clone();
    Json(snapshot).into_response()
}

/// `POST /api/reload`: 200 `{"hash"}` when the new routing is active, 422 `{"problems"}` when
/// it was refused (the running version stays), 503/504 when the service loop does not answer.
pub async fn reload(State(state): State<HttpState>) -> Response {
    let (reply, answer) = oneshot::channel();
    let exchange = async {
        state
            .reload
            .send(ReloadRequest { reply })
            .await
            .map_err(|_| "the service loop is not running")?;
        answer
            .await
            .map_err(|_| "the service loop dropped the reload request")
    };
    match tokio::time::timeout(RELOAD_TIMEOUT, exchange).await {
        Ok(Ok(Ok(hash))) => Json(json!({ "hash": hash })).into_response(),
        Ok(Ok(Err(problems))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "problems": problems })),
        )
            .into_response(),
        Ok(Err(message)) => text_error(StatusCode::SERVICE_UNAVAILABLE, message),
        Err(_) => text_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer from the service loop within {RELOAD_TIMEOUT:?}"),
        ),
    }
}

/// How long `POST /api/trunks/{trunk}/calls` waits for a placed call to end (ringing, prompt, hang-up).
const PLACED_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

#[derive(Debug, serde::Deserialize)]
pub struct PlaceCall {
    number: String,
    #[serde(default = "default_language")]
    language: String,
    #[serde(default = "default_prompt")]
    prompt: String,
}

fn default_language() -> String {
    "lt".to_owned()
}

fn default_prompt() -> String {
    "welcome".to_owned()
}

/// `POST /api/trunks/{trunk}/calls` `{"number","language"?,"prompt"?}`: the service calls the
/// number through the trunk, plays the prompt and hangs up. 200 `{"answered_after_ms","talked_ms"}`
/// when answered, 502 `{"status","reason"}` when not (SIP status, or the service's reason).
pub async fn place_call(
    State(state): State<HttpState>,
    axum::extract::Path(trunk): axum::extract::Path<String>,
    Json(order): Json<PlaceCall>,
) -> Response {
    let (reply, answer) = oneshot::channel();
    let order = crate::http::live::CallOrder {
        trunk,
        number: order.number,
        language: order.language,
        prompt: order.prompt,
        reply,
    };
    let exchange = async {
        state
            .calls
            .send(order)
            .await
            .map_err(|_| "the service loop is not running")?;
        answer
            .await
            .map_err(|_| "the service loop dropped the call")
    };
    match tokio::time::timeout(PLACED_CALL_TIMEOUT, exchange).await {
        Ok(Ok(crate::call::TrunkCallResult::Answered {
            answered_after,
            talked,
        })) => Json(json!({
            "answered_after_ms": answered_after.as_millis() as u64,
            "talked_ms": talked.as_millis() as u64,
        }))
        .into_response(),
        Ok(Ok(crate::call::TrunkCallResult::Failed { status, reason })) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "status": status, "reason": reason })),
        )
            .into_response(),
        Ok(Err(message)) => text_error(StatusCode::SERVICE_UNAVAILABLE, message),
        Err(_) => text_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the call did not end within {PLACED_CALL_TIMEOUT:?}"),
        ),
    }
}

/// `DELETE /api/bans/{ip}`: lifts every ban on the address (flood, scanner, failed logins).
/// 200 `{"lifted": n}`, 404 when none was in force, 400 for a malformed address.
pub async fn lift_ban(
    State(state): State<HttpState>,
    axum::extract::Path(ip): axum::extract::Path<String>,
) -> Response {
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return text_error(
            StatusCode::BAD_REQUEST,
            format!("{ip:?} is not an IP address"),
        );
    };
    let (reply, answer) = oneshot::channel();
    let command = crate::http::live::Command::LiftBan { ip, reply };
    match ask(&state, command, answer).await {
        Ok(0) => text_error(StatusCode::NOT_FOUND, format!("no ban in force on {ip}")),
        Ok(lifted) => Json(json!({ "lifted": lifted })).into_response(),
        Err(response) => response,
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct AgentStateChange {
    /// `available`, `paused` or `logged_out`.
    state: String,
}

/// `POST /api/agents/{agent}/state` `{"state": "paused"|"available"|"logged_out"}`: the agent
/// (`ona` for a registering user, else its static URI) is paused or made available. 200 with
/// the new state, 404 when no group has the agent, 400 for another state.
pub async fn set_agent_state(
    State(state): State<HttpState>,
    axum::extract::Path(agent): axum::extract::Path<String>,
    Json(change): Json<AgentStateChange>,
) -> Response {
    let pause = match change.state.as_str() {
        "available" => None,
        "paused" => Some(crate::acd::PauseReason::Break),
        "logged_out" => Some(crate::acd::PauseReason::LoggedOut),
        other => {
            return text_error(
                StatusCode::BAD_REQUEST,
                format!("state {other:?}: expected available, paused or logged_out"),
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    let command = crate::http::live::Command::SetAgentState {
        agent: agent.clone(),
        pause,
        reply,
    };
    match ask(&state, command, answer).await {
        Ok(true) => Json(json!({ "agent": agent, "state": change.state })).into_response(),
        Ok(false) => text_error(
            StatusCode::NOT_FOUND,
            format!("no agent {agent} in any group"),
        ),
        Err(response) => response,
    }
}

/// Sends a command to the service loop and waits for its answer (an error response when the
/// loop is gone or silent).
pub(crate) async fn ask<T>(
    state: &HttpState,
    command: crate::http::live::Command,
    answer: oneshot::Receiver<T>,
) -> Result<T, Response> {
    let exchange = async {
        state
            .commands
            .send(command)
            .await
            .map_err(|_| "the service loop is not running")?;
        answer
            .await
            .map_err(|_| "the service loop dropped the request")
    };
    match tokio::time::timeout(RELOAD_TIMEOUT, exchange).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(text_error(StatusCode::SERVICE_UNAVAILABLE, message)),
        Err(_) => Err(text_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer from the service loop within {RELOAD_TIMEOUT:?}"),
        )),
    }
}

/// 503 with the reason while the database cannot be reached (the service is fine, the
/// figures are not available now); 500 for anything else.
fn store_error(context: &str, error: &CdrError) -> Response {
    if error.is_unavailable() {
        tracing::warn!(%error, "{context}: the call-record database is unavailable");
        return text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{context}: the call-record database is unavailable: {error}"),
        );
    }
    internal_error(context, error)
}

fn internal_error(context: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "{context}");
    text_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{context}: {error}"),
    )
}

fn content_type(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Json => "application/json",
        OutputFormat::Csv => "text/csv; charset=utf-8",
        OutputFormat::Table => "text/plain; charset=utf-8",
    }
}

/// The decoded `name=value` pairs of the query string, in order.
pub(crate) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, String> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|axum::extract::Query(pairs)| pairs)
        .map_err(|error| format!("bad query string: {error}"))
}

/// Parses the statistics parameters exactly as `hotline stats` reads its options.
pub(crate) fn stats_request(
    pairs: &[(String, String)],
    defaults: Thresholds,
) -> Result<(StatsQuery, OutputFormat), String> {
    let mut from = None;
    let mut to = None;
    let mut by = Vec::new();
    let mut thresholds = defaults;
    let mut format = OutputFormat::Json;
    for (name, value) in pairs {
        match name.as_str() {
            "from" => from = Some(local_date("from", value)?),
            "to" => to = Some(local_date("to", value)?),
            "by" => {
                for key in value
                    .split(',')
                    .map(str::trim)
                    .filter(|key| !key.is_empty())
                {
                    by.push(
                        key.parse::<Dimension>()
                            .map_err(|error| format!("by: {error}"))?,
                    );
                }
            }
            "short_abandon" => thresholds.short_abandon_s = seconds(name, value)?,
            "sl_threshold" => thresholds.sl_threshold_s = seconds(name, value)?,
            "format" => {
                format = match value.as_str() {
                    "json" => OutputFormat::Json,
                    "csv" => OutputFormat::Csv,
                    "table" => OutputFormat::Table,
                    other => return Err(format!("format {other:?}: expected json, csv or table")),
                }
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: expected from, to, by, short_abandon, \
                     sl_threshold or format"
                ))
            }
        }
    }
    let from = from.unwrap_or_else(today);
    let to = match to {
        Some(to) => to,
        None => next_day(from)?,
    };
    if from >= to {
        return Err(format!(
            "from {from} is not before to {to} (to is the day after the last one)"
        ));
    }
    let query =
        StatsQuery::with_thresholds(local_midnight(from)?, local_midnight(to)?, by, thresholds);
    Ok((query, format))
}

fn calls_request(pairs: &[(String, String)]) -> Result<(CallFilter, Page), String> {
    let mut filter = CallFilter::default();
    let mut page = Page {
        limit: DEFAULT_CALLS_LIMIT,
        offset: 0,
    };
    for (name, value) in pairs {
        match name.as_str() {
            "from" => filter.from = Some(instant(name, value)?),
            "to" => filter.to = Some(instant(name, value)?),
            "enterprise" => filter.enterprise = Some(value.clone()),
            "outcome" => {
                filter.outcome = Some(
                    value
                        .parse::<Outcome>()
                        .map_err(|error| format!("outcome: {error}"))?,
                )
            }
            "limit" => {
                page.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|limit| (1..=MAX_CALLS_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        format!("limit {value:?}: expected a number from 1 to {MAX_CALLS_LIMIT}")
                    })?
            }
            "offset" => {
                page.offset = value
                    .parse::<u64>()
                    .map_err(|_| format!("offset {value:?}: expected a whole number"))?
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: expected from, to, enterprise, outcome, limit \
                     or offset"
                ))
            }
        }
    }
    Ok((filter, page))
}

fn seconds(name: &str, value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{name} {value:?}: expected whole seconds"))
}

pub(crate) fn local_date(name: &str, value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{name} {value:?}: expected YYYY-MM-DD"))
}

/// A local date (its Vilnius midnight) or an RFC 3339 time.
fn instant(name: &str, value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value.trim()) {
        return Ok(time.with_timezone(&Utc));
    }
    local_midnight(
        local_date(name, value)
            .map_err(|_| format!("{name} {value:?}: expected YYYY-MM-DD or an RFC 3339 time"))?,
    )
}

/// Today's date in Europe/Vilnius.
pub(crate) fn today() -> NaiveDate {
    Utc::now().with_timezone(&Vilnius).date_naive()
}

pub(crate) fn next_day(date: NaiveDate) -> Result<NaiveDate, String> {
    date.checked_add_days(Days::new(1))
        .ok_or_else(|| format!("{date} has no next day"))
}

/// The first instant of a local date (DST changes in Vilnius happen at 03:00/04:00, so
/// midnight always exists; `earliest` covers any zone rule change).
pub(crate) fn local_midnight(date: NaiveDate) -> Result<DateTime<Utc>, String> {
    Vilnius
        .from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|local| local.with_timezone(&Utc))
        .ok_or_else(|| format!("{date} has no midnight in Europe/Vilnius"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn stats_parameters_follow_the_cli() {
        let settings = Thresholds {
            short_abandon_s: 8,
            sl_threshold_s: 15,
        };
        let (query, format) = stats_request(
            &pairs(&[
                ("from", "2026-03-02"),
                ("by", "enterprise,hour"),
                ("by", "language"),
                ("sl_threshold", "30"),
            ]),
            settings,
        )
        .unwrap();
        assert_eq!(format, OutputFormat::Json);
        assert_eq!(
            query.from,
            Utc.with_ymd_and_hms(2026, 3, 1, 22, 0, 0).unwrap()
        );
        assert_eq!(
            query.to,
            Utc.with_ymd_and_hms(2026, 3, 2, 22, 0, 0).unwrap()
        );
        assert_eq!(
            query.by,
            vec![Dimension::Enterprise, Dimension::Hour, Dimension::Language]
        );
        assert_eq!(
            (query.sl_threshold_s, query.short_abandon_s),
            (30, 8),
            "the request's threshold, else the settings'"
        );
        for bad in [
            ("from", "2026-13-01"),
            ("by", "weekday"),
            ("sl_threshold", "-1"),
            ("format", "xml"),
            ("colour", "red"),
        ] {
            assert!(stats_request(&pairs(&[bad]), settings).is_err(), "{bad:?}");
        }
        let backwards = stats_request(
            &pairs(&[("from", "2026-03-05"), ("to", "2026-03-02")]),
            settings,
        )
        .unwrap_err();
        assert!(backwards.contains("not before"), "{backwards}");
        assert!(stats_request(
            &pairs(&[("from", "2026-03-02"), ("to", "2026-03-02")]),
            settings
        )
        .is_err());
    }

    #[test]
    fn calls_parameters_are_checked() {
        let (filter, page) = calls_request(&pairs(&[
            ("from", "2026-03-02T07:00:00Z"),
            ("outcome", "connected"),
            ("limit", "10"),
            ("offset", "20"),
        ]))
        .unwrap();
        assert_eq!(filter.outcome, Some(Outcome::Connected));
        assert_eq!(
            filter.from,
            Some(Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap())
        );
        assert_eq!((page.limit, page.offset), (10, 20));
        assert!(calls_request(&pairs(&[("limit", "0")])).is_err());
        assert!(calls_request(&pairs(&[("limit", "5000")])).is_err());
        assert!(calls_request(&pairs(&[("outcome", "hung_up")])).is_err());
    }
}
