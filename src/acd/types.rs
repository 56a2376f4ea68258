//! The ACD's vocabulary: caller and agent ids, inputs and outputs, errors, agent states and
//! settings, plus the per-agent and per-call records the state machine keeps.

use crate::routing::model::{AgentTarget, Routing};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Identifies one caller for its whole stay in the ACD (assigned by the SIP side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// Stable agent key: the URI text of a static agent, `user:<name>` for a registered user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(pub String);

impl AgentId {
    pub fn of(target: &AgentTarget) -> AgentId {
        match target {
            AgentTarget::Uri(uri) => AgentId(uri.value.clone()),
            AgentTarget::User(user) => AgentId::user(&user.value),
        }
    }

    /// The id of a registered user agent, as `Registered` inputs name it.
    pub fn user(name: &str) -> AgentId {
        AgentId(format!("user:{name}"))
    }

    pub fn is_user(&self) -> bool {
        self.0.starts_with("user:")
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an offered ring did not lead to an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// 486 Busy Here.
    Busy,
    /// 408, 503, transport timeout.
    Unreachable,
    /// 603 Decline.
    Declined,
    /// Rang for `ring_timeout` without an answer.
    NoAnswer,
}

#[derive(Debug, Clone)]
pub enum AcdInput {
    /// A caller chose an open group; `language` is the caller's language code.
    Enqueue {
        call: CallId,
        group: String,
        language: String,
    },
    /// The caller hung up (in queue, while agents ring, or during the bridged call).
    CallerLeft { call: CallId },
    /// An agent answered; the first answer wins.
    AgentAnswered { call: CallId, agent: AgentId },
    /// An agent's leg failed; it is skipped and offered again after a backoff.
    AgentFailed {
        call: CallId,
        agent: AgentId,
        reason: FailReason,
    },
    /// The bridged call finished (either side hung up): the agent goes to wrap-up.
    CallEnded { call: CallId },
    /// A user agent registered or unregistered; a static agent's phone answered an OPTIONS
    /// probe, or stopped answering.
    Online { agent: AgentId, online: bool },
    /// The agent connected to `call` transfers it to `group`: the agent goes to wrap-up and
    /// the caller waits in `group` ahead of those who came later (its first arrival counts).
    Transfer { call: CallId, group: String },
    /// An agent pauses (`Some`) or takes calls again (`None`).
    SetPause {
        agent: AgentId,
        pause: Option<PauseReason>,
    },
    /// The waiting caller `call` asked to be called back: the entry continues as `callback`,
    /// keeping its place (first arrival).
    ToCallback { call: CallId, callback: CallId },
    /// A callback request enters `group` again (retry, window opened, restart) with the
    /// arrival it first had.
    EnqueueCallback {
        call: CallId,
        group: String,
        language: String,
        arrived: Instant,
    },
    /// The agent took the callback `call` and the resident is being dialled on the line
    /// `caller`: the connected entry continues under that id, as any caller's.
    CallbackDialled { call: CallId, caller: CallId },
    /// The resident dialled on `call` was not reached: the agent is free at once (no
    /// wrap-up) and the entry leaves the queue.
    CallbackNotReached { call: CallId },
    /// Live reload: group settings apply at once, agents keep their state, queued calls
    /// keep their group (calls whose group vanished overflow to "call later").
    Reconfigure(Arc<Routing>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdOutput {
    /// Ring `agent` for `call`; the ACD itself gives up after `timeout` (emits `StopRinging`).
    Ring {
        call: CallId,
        agent: AgentId,
        timeout: Duration,
    },
    /// Cancel the ring of `agent` for `call`.
    StopRinging { call: CallId, agent: AgentId },
    /// Informational: `agent` answered `call`; bridge them.
    Connected { call: CallId, agent: AgentId },
    /// Tell the waiting caller its 1-based queue position (and a wait estimate when confident).
    Announce {
        call: CallId,
        position: u32,
        estimated_wait: Option<Duration>,
    },
    /// `max_wait` reached: `Some(group)` = the call now waits in that group's queue;
    /// `None` = "please call later" and hang up (the call left the ACD). A caller whose
    /// agent is ringing at that instant overflows only if that ring fails.
    Overflow { call: CallId, to: Option<String> },
    /// The group already held `max_queue` callers not yet connected (waiting or ringing):
    /// same meaning of `to` as in `Overflow` (the first group of the chain with room).
    QueueFull { call: CallId, to: Option<String> },
    /// An agent's pause changed (by themselves, a supervisor or `max_no_answer`): an audit row.
    PauseChanged {
        agent: AgentId,
        from: Option<PauseReason>,
        to: Option<PauseReason>,
    },
}

impl AcdOutput {
    /// The call an output is about (None: it is about an agent only).
    pub fn call(&self) -> Option<CallId> {
        match self {
            AcdOutput::Ring { call, .. }
            | AcdOutput::StopRinging { call, .. }
            | AcdOutput::Connected { call, .. }
            | AcdOutput::Announce { call, .. }
            | AcdOutput::Overflow { call, .. }
            | AcdOutput::QueueFull { call, .. } => Some(*call),
            AcdOutput::PauseChanged { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("cannot enqueue {call}: no group \"{group}\" in the routing")]
    UnknownGroup { call: CallId, group: String },
    #[error("cannot enqueue {call}: it is already in the ACD")]
    DuplicateCall { call: CallId },
    #[error("{call} is not in the ACD (already left or never entered)")]
    UnknownCall { call: CallId },
    #[error("agent {agent} is not ringing for {call} (stopped, timed out or another answered)")]
    NotRinging { call: CallId, agent: AgentId },
    #[error("{call} is not connected to an agent")]
    NotConnected { call: CallId },
    #[error("no agent {agent} in any group")]
    UnknownAgent { agent: AgentId },
}

/// An agent's global state (shared by all its groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Idle,
    Ringing(CallId),
    OnCall(CallId),
    /// After a call, until `until` (the group's `wrap_up` later).
    WrapUp {
        until: Instant,
    },
    /// Cannot be rung: a user agent not registered, or a static agent whose phone does not
    /// answer OPTIONS probes.
    Offline,
}

/// Why an agent takes no calls although registered: they said so, or missed rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PauseReason {
    /// A break (`*21`, the API); `*22` resumes.
    Break,
    /// Logged out of all groups (`*23`); `*24` logs in.
    LoggedOut,
    /// `max_no_answer` rings in a row went unanswered; the agent resumes by `*22`/`*24`.
    NoAnswer,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Break => "paused",
            PauseReason::LoggedOut => "logged_out",
            PauseReason::NoAnswer => "auto_paused",
        }
    }
}

/// One agent's state for statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSnapshot {
    pub agent: AgentId,
    pub state: AgentState,
    /// When `state` was entered.
    pub since: Instant,
    /// Calls answered since start or the last [`Acd::reset_call_counts`].
    pub calls_answered: u64,
    /// The agent is skipped until then after a failed ring.
    pub backoff_until: Option<Instant>,
    /// Paused agents are never rung, whatever their state.
    pub paused: Option<PauseReason>,
}

/// Tunables not in routing.toml (the retry times and `max_no_answer` are each group's, the
/// announcement period the hotline's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcdSettings {
    /// Completed calls needed in `estimate_window` before a wait estimate is given.
    pub estimate_min_calls: usize,
    pub estimate_window: Duration,
    /// An agent whose phone could not be reached is not rung again for this long.
    pub backoff_unreachable: Duration,
}

impl Default for AcdSettings {
    fn default() -> Self {
        AcdSettings {
            estimate_min_calls: 5,
            estimate_window: Duration::from_secs(3600),
            backoff_unreachable: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct AgentRecord {
    pub(super) state: AgentState,
    pub(super) since: Instant,
    pub(super) calls_answered: u64,
    pub(super) backoff_until: Option<Instant>,
    pub(super) paused: Option<PauseReason>,
    /// Rings missed in a row (no answer); an answer resets it.
    pub(super) missed_in_a_row: u32,
}

#[derive(Debug, Clone)]
pub(super) enum CallPhase {
    Waiting,
    /// Agents ringing for this call, each with its give-up instant.
    Ringing(BTreeMap<AgentId, Option<Instant>>),
    Connected {
        agent: AgentId,
        answered: Instant,
    },
}

#[derive(Debug, Clone)]
pub(super) struct CallRecord {
    pub(super) group: String,
    pub(super) language: String,
    /// First entry into the ACD: the FCFS order, kept across overflow.
    pub(super) arrived: Instant,
    /// Entry into the current group: `language_wait` and `max_wait` count from here.
    pub(super) entered: Instant,
    /// Tie-break for equal `arrived` instants.
    pub(super) seq: u64,
    pub(super) phase: CallPhase,
    pub(super) announced: bool,
    pub(super) next_announce: Option<Instant>,
    /// Groups this call has been placed in, so overflow chains cannot loop.
    pub(super) visited: BTreeSet<String>,
    /// A callback request: no caller on the line, so no announcements, no `max_wait`.
    pub(super) callback: bool,
}

impl CallRecord {
    pub(super) fn in_queue(&self) -> bool {
        !matches!(self.phase, CallPhase::Connected { .. })
    }

    pub(super) fn order(&self) -> (Instant, u64) {
        (self.arrived, self.seq)
    }
}

/// `t + d`, or `None` ("never") when the sum does not fit an `Instant`.
pub(super) fn after(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

pub(super) fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|at| at <= now)
}
