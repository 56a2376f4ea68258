//! What callers hear and where they go: call flows as pure state machines. A flow gets
//! events (start, key, prompt finished, its own timer, transfer result) with the time, and
//! answers with actions (play, stop, timers, transfer, hang up). The switchboard runs them.

pub mod echo;
pub mod menu;

use std::time::{Duration, Instant, SystemTime};

/// A prompt in a given language (the language menu plays each option in its own language).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PromptRef {
    pub lang: String,
    pub name: String,
}

impl PromptRef {
    pub fn new(lang: &str, name: &str) -> Self {
        Self {
            lang: lang.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// Time as a flow sees it: `now` for timers, `wall` for opening hours.
#[derive(Debug, Clone, Copy)]
pub struct FlowClock {
    pub now: Instant,
    pub wall: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    /// The call is answered and media runs.
    Started,
    Digit(char),
    /// The last queued prompt has been played in full.
    PlaybackFinished,
    /// A timer the flow set with [`FlowAction::StartTimer`] fired.
    Timer(u32),
    /// The transfer the flow asked for failed (SIP status, or 408 when nobody answered).
    TransferFailed(u16),
    /// In the queue at this place (announced on entry and periodically), with the expected wait
    /// when the ACD has enough recent calls to estimate it.
    QueuePosition {
        position: u32,
        estimated_wait: Option<Duration>,
    },
    /// The queue gave up (max_wait or max_queue with no overflow group): "please call later".
    QueueGaveUp,
    /// The agent transferred the caller to `group`, where they now wait (already queued).
    MovedToGroup {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowAction {
    /// Queue these prompts after whatever plays.
    Play(Vec<PromptRef>),
    /// Cut the prompt that plays now (barge-in) and drop the queue.
    StopPlayback,
    /// (Re)start the flow's timer `id`; a restarted timer fires only once, at its new time.
    StartTimer {
        id: u32,
        after: Duration,
    },
    CancelTimer(u32),
    /// Blind transfer of the caller (REFER) to this SIP URI; success ends the call.
    Transfer {
        target: String,
    },
    /// Queue the caller for the group's agents; the first to answer is bridged to them.
    Queue(QueueCall),
    /// The queued caller asked to be called back on `number` (E.164), keeping their place;
    /// the call ends after the confirmation.
    RequestCallback {
        number: String,
    },
    /// The caller cancelled their pending callback request.
    CancelCallback,
    HangUp,
}

/// A caller put in a group's queue, with what the agents' phones will show about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCall {
    pub group: String,
    /// Display name for the agent's phone, e.g. `[EN] Vilnius Heating Networks`.
    pub display: String,
    pub language: String,
    /// The caller's way through the menus, e.g. `language en > main:2`.
    pub path: String,
}

/// What the flow knows about the call, for its record: choices with their times and how the
/// menus ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowSummary {
    pub language: Option<String>,
    pub language_chosen: Option<SystemTime>,
    pub group: Option<String>,
    pub group_chosen: Option<SystemTime>,
    pub queue_entered: Option<SystemTime>,
    /// The menu path, e.g. `language en > main:2 > queue heating`.
    pub path: String,
    /// Each step with its time (kind, detail), for the audit trail.
    pub steps: Vec<(SystemTime, String, String)>,
    pub ending: Option<FlowEnding>,
    /// An information prompt (opening hours...) was played.
    pub heard_information: bool,
    /// The caller pressed at least one valid key.
    pub chose_something: bool,
}

/// How the menus ended when they did not hand the caller to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnding {
    Closed,
    /// max_wait passed (or the queue was full) with no overflow group: "call later".
    QueueGaveUp,
    TransferFailed,
    /// max_attempts of silence reached the fallback.
    NoInput,
    /// The caller left the queue asking to be called back.
    CallbackRequested,
}

/// One call's flow. `Send` because the switchboard lives in a tokio task.
pub trait CallFlow: Send + std::fmt::Debug {
    fn handle(&mut self, clock: FlowClock, event: FlowEvent) -> Vec<FlowAction>;

    /// For the call record; flows without menus have nothing to say.
    fn summary(&self) -> FlowSummary {
        FlowSummary::default()
    }
}

/// The prompt that says a DTMF key's name.
pub fn digit_prompt(digit: char) -> Option<&'static str> {
    const NAMES: [(char, &str); 12] = [
        ('0', "digit_0"),
        ('1', "digit_1"),
        ('2', "digit_2"),
        ('3', "digit_3"),
        ('4', "digit_4"),
        ('5', "digit_5"),
        ('6', "digit_6"),
        ('7', "digit_7"),
        ('8', "digit_8"),
        ('9', "digit_9"),
        ('*', "digit_star"),
        ('#', "digit_pound"),
    ];
    NAMES
        .iter()
        .find(|(key, _)| *key == digit)
        .map(|(_, name)| *name)
}
