//! The HTTP listener: shared state, the route table, and bearer-token access control.
//!
//! Access: every route except `GET /health` needs `Authorization: Bearer <token>`. Browsers
//! cannot send that header on a plain page load, so the pages (`GET /`, `GET /wallboard` and
//! the dashboard's CSV download `GET /dashboard.csv` only) also accept the token once as
//! `?token=<token>`: the answer stores it in an `HttpOnly`, `SameSite=Strict` cookie and
//! redirects to the same page without it (the token leaves the address bar and history), and
//! later loads and refreshes use the cookie. The cookie is accepted on those read-only pages
//! and on one form route, `POST /agents/{agent}/state` (the agents table's buttons), which
//! refuses with 403 any post without the page's CSRF field (see `dashboard::actions`); it can
//! never authorise an API call or `POST /api/reload`. A token in the query is accepted for a
//! `GET` of a page only. With no token configured everything is open (the form route still
//! wants its CSRF field); `check_bind` allows that on loopback addresses only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, watch};

use super::live::{LiveSnapshot, ReloadRequest};
use super::{api, dashboard, metrics, wallboard};
use crate::cdr::{CdrStore, Thresholds};

/// Name of the dashboard's cookie; its value is the token in hex, so any token text is a
/// valid cookie value.
pub const TOKEN_COOKIE: &str = "hotline_token";

/// What every handler reads: the token (if any), the call records, the live snapshot and the
/// service loop's reload channel.
#[derive(Clone)]
pub struct HttpState {
    pub token: Option<String>,
    pub store: Arc<CdrStore>,
    /// The statistics' thresholds unless a request names its own.
    pub thresholds: Thresholds,
    pub live: watch::Receiver<LiveSnapshot>,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Calls to place through trunks (`POST /api/calls`).
    pub calls: mpsc::Sender<super::live::CallOrder>,
    /// Bans to lift, agents to pause (`DELETE /api/bans/{ip}`, `POST /api/agents/{id}/state`).
    pub commands: mpsc::Sender<super::live::Command>,
}

/// Refuses to serve without a token anywhere but on a loopback address, and refuses an empty
/// token (it would make `Authorization: Bearer ` a valid credential).
pub fn check_bind(addr: SocketAddr, token: &Option<String>) -> Result<(), String> {
    match token {
        Some(token) if token.trim().is_empty() => {
            Err("http token is empty: set a non-empty token or remove it".to_owned())
        }
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(format!(
            "http.listen {addr} is not a loopback address: call statistics and reload would be \
             open to the network; set an http token or listen on 127.0.0.1"
        )),
    }
}

/// Serves the supervisors' API and dashboard on `listener` until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, state: HttpState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// The route table; `/health` is outside the token check so load balancers can probe it.
pub fn router(state: HttpState) -> Router {
    dashboard::actions::init();
    Router::new()
        .route("/", get(dashboard::page))
        .route("/agents/:agent/state", post(dashboard::set_agent_state))
        .route("/dashboard.csv", get(dashboard::csv_download))
        .route("/wallboard", get(wallboard::page))
        .route("/metrics", get(metrics::handler))
        .route("/api/stats", get(api::stats))
        .route("/api/calls", get(api::calls))
        .route("/api/calls/:call_id", get(api::call_events))
        .route("/api/live", get(api::live))
        .route("/api/reload", post(api::reload))
        .route("/api/trunks/:trunk/calls", post(api::place_call))
        .route("/api/bans/:ip", axum::routing::delete(api::lift_ban))
        .route("/api/agents/:agent/state", post(api::set_agent_state))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/health", get(health))
        .with_state(state)
}

/// `ok`, or 503 with the reason while call records cannot be stored (they are held in
/// memory meanwhile; see `cdr::writer`).
async fn health(State(state): State<HttpState>) -> Response {
    let health = state.store.health();
    match health.problem() {
        None => "ok".into_response(),
        Some(problem) => text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{problem}\n{} record entries held in memory, {} lost since start",
                health.held(),
                health.lost()
            ),
        ),
    }
}

async fn require_token(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    if bearer_matches(&request, token) || dashboard_credential_matches(&request, token) {
        return next.run(request).await;
    }
    unauthorized()
}

fn bearer_matches(request: &Request, token: &str) -> bool {
    request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.strip_prefix("Bearer "))
        .any(|offered| constant_time_eq(offered.trim().as_bytes(), token.as_bytes()))
}

/// The read-only pages a browser opens: the dashboard, its CSV download, the wallboard.
pub const PAGE_PATHS: &[&str] = &["/", "/dashboard.csv", "/wallboard"];

/// `GET` of a page: the token as `?token=` or as the dashboard cookie; `POST` of an agent
/// form: the cookie (its handler then checks the CSRF field).
fn dashboard_credential_matches(request: &Request, token: &str) -> bool {
    let path = request.uri().path();
    let page = request.method() == Method::GET && PAGE_PATHS.contains(&path);
    let form = request.method() == Method::POST && dashboard::actions::is_form_path(path);
    if !page && !form {
        return false;
    }
    let query_matches = page
        && api::query_pairs(request.uri())
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, _)| name == "token")
            .any(|(_, offered)| constant_time_eq(offered.as_bytes(), token.as_bytes()));
    let expected_cookie = hex::encode(token);
    let cookie_matches = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == TOKEN_COOKIE)
        .any(|(_, value)| constant_time_eq(value.as_bytes(), expected_cookie.as_bytes()));
    query_matches || cookie_matches
}

fn unauthorized() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: send `Authorization: Bearer <token>` (dashboard: open /?token=<token>)\n",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"hotline\""),
    );
    response
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// token was right.
fn constant_time_eq(offered: &[u8], expected: &[u8]) -> bool {
    if offered.len() != expected.len() {
        return false;
    }
    offered
        .iter()
        .zip(expected)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// The `Set-Cookie` value that stores the dashboard token.
pub(crate) fn token_cookie(token: &str) -> String {
    format!(
        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        hex::encode(token)
    )
}

/// A plain-text error response (the API's 400/404/500 bodies).
pub(crate) fn text_error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut text = message.into();
    text.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text))
        .unwrap_or_else(|_| status.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_without_token_only_on_loopback() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_bind(loopback, &None).is_ok());
        assert!(check_bind(v6_loopback, &None).is_ok());
        assert!(check_bind(any, &None).is_err());
        assert!(check_bind(any, &Some("secret".into())).is_ok());
        assert!(check_bind(loopback, &Some(" ".into())).is_err());
    }

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
    }
}
