//! `POST /agents/{agent}/state`: the agents table's buttons (pause, log out, make available)
//! as plain HTML forms, so they work without scripts.
//!
//! A browser sends the page cookie with any form it posts, also one that another site made
//! it post, so this route asks for more than the cookie: a `csrf` field whose value only a
//! page of this dashboard carries. It is HMAC-SHA256 of a fixed label keyed with the HTTP
//! token, or, with no token configured (loopback only, everything open), keyed with a random
//! secret drawn once per process; it is checked in constant time on every post, whatever the
//! request authenticated with. The answer is a 303 back to the dashboard with the page's
//! period and language (the form's own query), once the live snapshot shows the change
//! (waiting at most [`SNAPSHOT_WAIT`]), so the page the browser loads next shows it.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Form;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;

use super::Params;
use crate::acd::PauseReason;
use crate::http::api::{query_pairs, today};
use crate::http::live::{Command, LiveSnapshot};
use crate::http::server::{text_error, HttpState};

/// The form field holding the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// What the HMAC signs: names the purpose, so the value is good for nothing else.
const CSRF_LABEL: &[u8] = b"hotline dashboard: agent state forms, v1";
/// How long the answer waits for a snapshot showing the change (one is published about
/// every second) before redirecting anyway.
pub const SNAPSHOT_WAIT: Duration = Duration::from_millis(1500);

/// What the agents table needs to render its forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    /// The CSRF token for the hidden field.
    pub csrf: String,
    /// The page's own query (period and language it named), empty for today in Lithuanian;
    /// the forms post to it so the answer leads back to the same page.
    pub query: String,
}

impl Actions {
    pub fn new(state: &HttpState, params: &Params) -> Actions {
        let page = Params {
            csv: None,
            token_given: false,
            ..params.clone()
        };
        let location = page.location("/");
        Actions {
            csrf: csrf_token(state.token.as_deref()),
            query: location
                .split_once('?')
                .map(|(_, query)| query.to_owned())
                .unwrap_or_default(),
        }
    }

    /// Where an agent's form posts (`&amp;`-escaped for HTML).
    pub fn action(&self, agent: &str) -> String {
        let mut action = format!("/agents/{}/state", encode_segment(agent));
        if !self.query.is_empty() {
            action.push('?');
            action.push_str(&self.query);
        }
        super::esc(&action)
    }
}

/// The buttons for an agent in `state` (as the snapshot names it): the states it can be moved
/// to, as the form's `state` values. Ringing, talking, unregistered and unreachable agents may be paused
/// or not (the snapshot shows the call, not the pause), so they get all three.
pub fn choices(state: &str) -> &'static [&'static str] {
    match state {
        "idle" | "wrap_up" => &["paused", "logged_out"],
        "paused" | "auto_paused" => &["available", "logged_out"],
        "logged_out" => &["available"],
        _ => &["paused", "logged_out", "available"],
    }
}

/// `available`, `paused`, `logged_out` → the pause to set (as the API reads them).
pub fn pause_of(state: &str) -> Result<Option<PauseReason>, String> {
    match state {
        "available" => Ok(None),
        "paused" => Ok(Some(PauseReason::Break)),
        "logged_out" => Ok(Some(PauseReason::LoggedOut)),
        other => Err(format!(
            "state {other:?}: expected available, paused or logged_out"
        )),
    }
}

/// Whether `path` is an agent form's address (`/agents/{agent}/state`); the page cookie is
/// accepted there for `POST`, and the handler then insists on the CSRF field.
pub fn is_form_path(path: &str) -> bool {
    path.strip_prefix("/agents/")
        .and_then(|rest| rest.strip_suffix("/state"))
        .is_some_and(|agent| !agent.is_empty() && !agent.contains('/'))
}

/// The secret the CSRF token is keyed with when no HTTP token is configured: random, drawn
/// at the first use (the router draws it at start), never leaving the process.
fn process_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        use rand::RngCore;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        secret
    })
}

/// Draws the process secret now, so it exists before the first page is served.
pub fn init() {
    process_secret();
}

fn mac(token: Option<&str>) -> Hmac<Sha256> {
    let key: &[u8] = match token {
        Some(token) => token.as_bytes(),
        None => process_secret(),
    };
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(CSRF_LABEL);
    mac
}

/// The CSRF token the pages carry (hex).
pub fn csrf_token(token: Option<&str>) -> String {
    hex::encode(mac(token).finalize().into_bytes())
}

/// Whether `offered` is the CSRF token (compared in constant time by `hmac`).
pub fn csrf_matches(token: Option<&str>, offered: &str) -> bool {
    match hex::decode(offered.trim()) {
        Ok(bytes) => mac(token).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// Percent-encodes an agent id for one path segment (everything but unreserved characters,
/// `:` and `@`); axum decodes it back for the handler.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `POST /agents/{agent}/state` with the form fields `csrf` and `state`: 403 without the
/// CSRF token (or without a form), 400 for a bad state or query, 404 when no group has the agent, else 303 back
/// to the dashboard page the form was on.
pub async fn set_state(
    State(state): State<HttpState>,
    Path(agent): Path<String>,
    uri: Uri,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match form {
        Ok(Form(fields)) => fields,
        // No form, no CSRF field: refused like a form without it.
        Err(rejection) => {
            return text_error(
                StatusCode::FORBIDDEN,
                format!("403 Forbidden: expected the dashboard's form (csrf, state): {rejection}"),
            )
        }
    };
    let field = |name: &str| -> Result<Option<&str>, String> {
        let mut values = fields.iter().filter(|(key, _)| key == name);
        let value = values.next().map(|(_, value)| value.as_str());
        match values.next() {
            Some(_) => Err(format!("field {name:?} given more than once")),
            None => Ok(value),
        }
    };
    let csrf_ok = matches!(field(CSRF_FIELD), Ok(Some(offered))
        if csrf_matches(state.token.as_deref(), offered));
    if !csrf_ok {
        return text_error(
            StatusCode::FORBIDDEN,
            "403 Forbidden: the form lacks the dashboard's csrf field; reload the dashboard \
             and use its buttons",
        );
    }
    if let Some((name, _)) = fields
        .iter()
        .find(|(name, _)| name != CSRF_FIELD && name != "state")
    {
        return text_error(
            StatusCode::BAD_REQUEST,
            format!("unknown field {name:?}: expected csrf and state"),
        );
    }
    let pause = match field("state").and_then(|value| pause_of(value.unwrap_or_default())) {
        Ok(pause) => pause,
        Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
    };
    let back = match query_pairs(&uri).and_then(|pairs| Params::parse(&pairs, today(), false)) {
        Ok(params) => Params {
            csv: None,
            token_given: false,
            ..params
        }
        .location("/"),
        Err(message) => return text_error(StatusCode::BAD_REQUEST, message),
    };
    let mut live = state.live.clone();
    let (reply, answer) = oneshot::channel();
    let command = Command::SetAgentState {
        agent: agent.clone(),
        pause,
        reply,
    };
    match crate::http::api::ask(&state, command, answer).await {
        Ok(true) => {}
        Ok(false) => {
            return text_error(
                StatusCode::NOT_FOUND,
                format!("no agent {agent} in any group"),
            )
        }
        Err(response) => return response,
    }
    tracing::info!(
        %agent,
        state = pause.map_or("available", PauseReason::as_str),
        "agent state set from the dashboard"
    );
    // The change is applied; the next snapshot (about a second) shows it. Wait for that one,
    // so the page the browser loads next is not a second behind.
    let shown = matches!(
        tokio::time::timeout(
            SNAPSHOT_WAIT,
            live.wait_for(|snapshot| shows(snapshot, &agent, pause))
        )
        .await,
        Ok(Ok(_))
    );
    if !shown {
        tracing::debug!(%agent, "no snapshot showed the agent's new state in time");
    }
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, format!("{back}#agents"))
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Whether the snapshot is consistent with the agent's new pause: its state names the pause
/// (or its absence), or it shows a call, no registration or an unreachable phone (which hide the pause), or the
/// snapshot does not list the agent.
fn shows(snapshot: &LiveSnapshot, agent: &str, pause: Option<PauseReason>) -> bool {
    let Some(live) = snapshot.agents.iter().find(|live| live.agent == agent) else {
        return true;
    };
    match (live.state.as_str(), pause) {
        ("ringing" | "on_call" | "unregistered" | "unreachable", _) => true,
        (state, Some(reason)) => state == reason.as_str(),
        (state, None) => !matches!(state, "paused" | "logged_out" | "auto_paused"),
    }
}
