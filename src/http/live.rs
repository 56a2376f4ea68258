//! What the HTTP layer serves of the live picture: the switchboard's snapshot (published by
//! the SIP loop about once a second, read without touching that loop) and reload requests.

use tokio::sync::oneshot;

pub use crate::call::live::{
    AgentLive, CallbackLive, LiveCall, LiveSnapshot, OutcomeCount, QueueLive,
};
pub use crate::call::live::{BanLive, SecurityLive};
pub use crate::call::TrunkLive;

/// `POST /api/reload`: validate and apply routing.toml; the answer is the new version's hash
/// or every problem as `FILE:LINE: key: message` (the running version then stays).
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<String, Vec<String>>>,
}

/// `POST /api/trunks/{trunk}/calls`: place a call through a trunk; the answer is how it went.
#[derive(Debug)]
pub struct CallOrder {
    pub trunk: String,
    pub number: String,
    pub language: String,
    pub prompt: String,
    pub reply: oneshot::Sender<crate::call::TrunkCallResult>,
}

/// What supervisors ask the running service through the API, each with its answer.
#[derive(Debug)]
pub enum Command {
    /// `DELETE /api/bans/{ip}`: lift every ban on an address; the answer is how many there were.
    LiftBan {
        ip: std::net::IpAddr,
        reply: oneshot::Sender<usize>,
    },
    /// `POST /api/agents/{agent}/state`: pause (`Some`) or make available; the answer is false
    /// when no group has the agent.
    SetAgentState {
        agent: String,
        pause: Option<crate::acd::PauseReason>,
        reply: oneshot::Sender<bool>,
    },
}
