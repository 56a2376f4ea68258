//! The typed `routing.toml` model: what a routing file says, every value with the line and
//! dotted path of its key. Reading the TOML into it is `reader`'s job.

use crate::routing::hours::OpeningHours;
use crate::sdp::MediaEncryption;
use chrono::Weekday;
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::time::Duration;

pub use super::reader::{key_segment, load, parse, parse_duration};

/// One finding in a routing file; Display is `FILE:LINE: key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// Where a value came from: the 1-based line of its key and its dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub line: usize,
    pub key: String,
}

/// A value with the place of its key, so later checks can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub at: Place,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// The file name problems are reported against.
    pub file: String,
    pub hotline: Hotline,
    pub menus: BTreeMap<String, Menu>,
    pub groups: BTreeMap<String, Group>,
    pub hours: BTreeMap<String, Hours>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hotline {
    pub at: Place,
    /// Language menu order: digit 1 selects the first language.
    pub languages: Located<Vec<Located<String>>>,
    pub default_language: Located<String>,
    pub timezone: Located<Tz>,
    pub digit_timeout: Duration,
    pub inter_digit_timeout: Duration,
    pub max_attempts: u32,
    /// No-inputs in the language menu before the default language is taken.
    pub language_no_input: u32,
    /// No-inputs in a menu before the caller goes to `fallback` (2: the menu is repeated once).
    pub menu_no_input: u32,
    /// The key that goes straight to `fallback` from every menu and the language menu
    /// (`None`: switched off with `operator_key = ""`).
    pub operator_key: Option<Located<char>>,
    pub fallback: Located<String>,
    pub start: Located<String>,
    /// Music on hold for queued callers (a prompt of the default language; none: `queue_hold`).
    pub music: Option<Located<String>>,
    /// How long a caller's language choice is remembered: calling again within it, they are
    /// greeted in that language without the language menu (zero: never remembered).
    pub remember_language: Located<Duration>,
    /// For a caller greeted in their remembered language: their first key in the start menu,
    /// if it is this one, takes them to the language menu.
    pub change_language_key: Located<char>,
    /// Queued callers hear their position this often (at the next natural break).
    pub announce_every: Duration,
}

/// Default of `remember_language`.
pub const DEFAULT_REMEMBER_LANGUAGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default of `change_language_key` (`9` repeats the shipped main menu).
pub const DEFAULT_CHANGE_LANGUAGE_KEY: char = '*';

#[derive(Debug, Clone, PartialEq)]
pub struct Menu {
    pub at: Place,
    pub prompt: Located<String>,
    /// Keyed by the digit as written ("1", "*", "#").
    pub options: BTreeMap<String, MenuOption>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MenuOption {
    pub at: Place,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Group(Located<String>),
    Menu(Located<String>),
    Play {
        prompt: Located<String>,
        then: AfterPlay,
    },
    Repeat,
    Back,
    Hangup,
}

/// What follows an informational `play` option.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterPlay {
    Repeat,
    Hangup,
    Back,
    Menu(Located<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WhenClosed {
    Hangup,
    Back,
    Group(Located<String>),
}

/// What a group does with callers while none of its agents can take calls (all unregistered,
/// paused or logged out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenEmpty {
    /// On to the group's `overflow` at once.
    Overflow,
    /// Say nobody can take the call now (`call_later`) and end it.
    Message,
    /// Queue anyway until `max_wait`.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Bridge,
    Refer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RingAll,
    RoundRobin,
    LongestIdle,
    FewestCalls,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub at: Place,
    /// Display name per language.
    pub name: Located<BTreeMap<String, String>>,
    /// Prompt naming the organisation when it is announced (e.g. "group_water").
    pub announce: Option<Located<String>>,
    /// This group's music on hold instead of `[hotline] music`.
    pub music: Option<Located<String>>,
    pub hours: Option<Located<String>>,
    pub when_closed: WhenClosed,
    /// Default: `overflow` when the group has one, else `message`.
    pub when_empty: WhenEmpty,
    pub transfer: Transfer,
    pub strategy: Strategy,
    pub ring_timeout: Duration,
    pub wrap_up: Duration,
    pub language_wait: Duration,
    pub max_wait: Duration,
    pub max_queue: u32,
    /// An agent who was busy (or declined) is not rung again for this long.
    pub retry_after_busy: Duration,
    /// An agent who did not answer is not rung again for this long.
    pub retry_after_no_answer: Duration,
    /// Rings in a row an agent may miss before being paused (`auto_paused`); 0 = never.
    pub max_no_answer: u32,
    pub overflow: Option<Located<String>>,
    pub agents: Vec<Agent>,
    /// Queued callback offered to this group's waiting callers (bridge groups only).
    pub callback: Option<Callback>,
    /// SRTP on the agents' legs (`off`, `optional`, `required`); keys only over TLS.
    pub media_encryption: MediaEncryption,
}

/// A group's queued callback (`callback = { ... }`): once the expected wait passes
/// `offer_after`, waiting callers are offered to be called back, keeping their place.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub at: Place,
    pub offer_after: Duration,
    /// The key that accepts the offer while waiting.
    pub key: Located<char>,
    /// Dial attempts per request before it fails.
    pub max_attempts: u32,
    /// Wait between a failed attempt (no answer, busy) and the next.
    pub retry_after: Duration,
    /// The carrier trunk (`[trunks.NAME]` of the service settings) residents are dialled through.
    pub trunk: Located<String>,
    /// When attempts may be made: `hours` (the group's opening hours) or an `[hours.NAME]`.
    pub window: Option<Located<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgentTarget {
    Uri(Located<String>),
    User(Located<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub at: Place,
    pub target: AgentTarget,
    pub languages: Vec<Located<String>>,
    /// Lower rings first; agents of equal priority share by `strategy`.
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hours {
    pub at: Place,
    pub schedule: OpeningHours,
    /// Where each configured weekday's ranges were written, Monday first.
    pub weekly_at: Vec<(Weekday, Place)>,
}
