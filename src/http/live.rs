//! The live picture the service publishes for supervisors (HTTP API, metrics, dashboard):
//! a snapshot rebuilt by the SIP loop about once a second, read without touching that loop.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveSnapshot {
    pub at: Option<DateTime<Utc>>,
    pub calls: Vec<LiveCall>,
    pub queues: Vec<QueueLive>,
    pub agents: Vec<AgentLive>,
    /// Since the service started: calls by outcome, group and language.
    pub outcomes: Vec<OutcomeCount>,
    /// Since the service started: calls by DTMF mode (rfc4733, sip-info, inband, none).
    pub dtmf_modes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    /// `menu`, `queued`, `ringing`, `connected`, `ending`.
    pub state: String,
    pub language: Option<String>,
    pub group: Option<String>,
    pub since_s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueLive {
    pub group: String,
    pub waiting: usize,
    pub longest_wait_s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentLive {
    pub agent: String,
    /// `idle`, `ringing`, `on_call`, `wrap_up`, `unregistered`.
    pub state: String,
    pub since_s: u64,
    pub calls_answered: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct OutcomeCount {
    pub outcome: String,
    pub group: String,
    pub language: String,
    pub calls: u64,
}

/// `POST /api/reload`: validate and apply routing.toml; the answer is the new version's hash
/// or every problem as `FILE:LINE: key: message` (the running version then stays).
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<String, Vec<String>>>,
}
