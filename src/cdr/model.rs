//! The call-record data model: what the call logic hands to the store (`CallStart` at arrival,
//! `CallRecord` + `CallEvent`s at the end) and the closed vocabularies (`Outcome`, `DtmfMode`,
//! `TransferMode`) with their stable text forms, plus caller-number pseudonymisation.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Error for a text value that is not one of a closed vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Defines a text-backed enum with `as_str`, `ALL`, `Display`, `FromStr` and serde as that text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: $kind, value: s.to_owned() }),
                }
            }
        }
    };
}

text_enum!(
    /// How a call ended: exactly one per completed call.
    Outcome, "outcome", {
        /// An agent answered (bridged by the hotline).
        Connected => "connected",
        /// The call was handed off with REFER and the REFER was accepted.
        Transferred => "transferred",
        /// Caller hung up in the menus (before reaching a queue).
        AbandonedMenu => "abandoned_menu",
        /// Caller hung up while waiting in a queue.
        AbandonedQueue => "abandoned_queue",
        /// The queue's maximum wait expired.
        QueueTimeout => "queue_timeout",
        /// The group was full and the call was sent to its overflow destination.
        Overflowed => "overflowed",
        /// The group (or hotline) was closed by its schedule.
        Closed => "closed",
        /// The caller pressed nothing and the menu gave up.
        NoInput => "no_input",
        /// The caller heard an information prompt and left.
        InfoOnly => "info_only",
        /// The caller left the queue asking to be called back (keeping their place).
        CallbackRequested => "callback_requested",
        /// A callback attempt: the resident did not answer, was busy or refused the call.
        NotReached => "not_reached",
        /// A transfer to the agent or group failed.
        TransferFailed => "transfer_failed",
        /// Refused before answer (488 Not Acceptable Here / 486 Busy Here).
        Rejected => "rejected",
        /// Internal error ended the call.
        Error => "error",
        /// The service stopped, or was killed, while the call was up: a graceful stop records
        /// it so itself; a killed run's open records are closed so at the node's next start.
        Interrupted => "interrupted",
    }
);

text_enum!(
    /// How the caller's digits were received.
    DtmfMode, "dtmf mode", {
        Rfc4733 => "rfc4733",
        SipInfo => "sip-info",
        Inband => "inband",
        None => "none",
    }
);

text_enum!(
    /// How the call was handed to the agent.
    TransferMode, "transfer mode", {
        Bridge => "bridge",
        Refer => "refer",
    }
);

text_enum!(
    /// Where a queued callback request is (`callbacks.state`).
    CallbackStatus, "callback state", {
        /// Waiting for an agent (in the queue, or for its next attempt).
        Pending => "pending",
        /// An agent took it and the resident is being dialled by `node`.
        Dialling => "dialling",
        /// The resident was reached and bridged to an agent.
        Connected => "connected",
        /// Not reached in `max_attempts` dials (or its group left the routing).
        Failed => "failed",
        /// The resident cancelled it when calling again.
        Cancelled => "cancelled",
    }
);

/// A queued callback request as stored (table `callbacks`, one row per request, kept up to
/// date): pending requests survive a restart, and the row is what two nodes sharing the
/// database claim before dialling, so a request is never dialled twice at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRow {
    /// The Call-ID of the call in which the resident asked.
    pub id: String,
    pub group: String,
    pub language: String,
    /// E.164; blanked once the request is over (connected, failed, cancelled).
    pub number: String,
    /// What the agent's phone shows, e.g. `[CB][LT] Vilniaus šilumos tinklai`.
    pub display: String,
    pub path: String,
    pub requested: DateTime<Utc>,
    /// When the caller entered the queue: the place the request keeps.
    pub queue_entered: DateTime<Utc>,
    pub attempts: u32,
    pub state: CallbackStatus,
    pub updated: DateTime<Utc>,
}

/// What is known when a call arrives; stored at once so live calls are visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStart {
    pub call_id: String,
    /// Caller number as received; the store pseudonymises it when a key is configured.
    pub caller: Option<String>,
    /// Peer address of the trunk the call came in on.
    pub trunk: String,
    pub arrived: DateTime<Utc>,
}

/// One change of an agent's availability, for the audit trail (`agent_states`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStateChange {
    pub agent: String,
    /// `available`, `paused`, `logged_out` or `auto_paused`.
    pub from: String,
    pub to: String,
    /// Who changed it: `feature_code`, `supervisor` or `missed_rings`.
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The complete record of a finished call. Times are UTC, stored at millisecond precision;
/// `None` means the call never reached that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub caller: Option<String>,
    pub trunk: String,
    pub arrived: DateTime<Utc>,
    pub ivr_answered: Option<DateTime<Utc>>,
    /// When the caller pressed a language's key in the language menu. `None` when they were
    /// served in a language they did not pick there: one language only, silence (the
    /// language they were greeted in), the operator key, or their remembered language.
    /// Only such choices are remembered for the caller's next calls.
    pub language_chosen: Option<DateTime<Utc>>,
    /// The moment the call was offered to a group (enterprise); starts the wait.
    pub group_chosen: Option<DateTime<Utc>>,
    pub queue_entered: Option<DateTime<Utc>>,
    pub agent_answered: Option<DateTime<Utc>>,
    pub ended: DateTime<Utc>,
    /// `lt`, `en`, `ru` or `pl`: the language the caller was served in, once known.
    pub language: Option<String>,
    /// Steps taken, joined by `" > "`, e.g. `language en > main:2 > group heating`.
    pub menu_path: String,
    pub dtmf_mode: DtmfMode,
    /// The group (enterprise) chosen, e.g. `heating`.
    pub enterprise: Option<String>,
    pub agent: Option<String>,
    pub transfer_mode: Option<TransferMode>,
    pub outcome: Outcome,
    pub rtp_packets: u64,
    pub rtp_lost: u64,
    pub rtp_jitter_ms: f64,
    /// A callback attempt: the Call-ID of the call in which the resident asked for it.
    /// (Spooled records written before this field existed have none.)
    #[serde(default)]
    pub callback_of: Option<String>,
}

/// Separator between steps of `CallRecord::menu_path`.
pub const MENU_PATH_SEPARATOR: &str = " > ";

impl CallRecord {
    /// Seconds from `group_chosen` to `agent_answered` (answered) or to `ended` (not answered);
    /// `None` when no group was chosen.
    pub fn wait_seconds(&self) -> Option<f64> {
        self.wait_ms().map(ms_to_seconds)
    }

    /// Seconds from `agent_answered` to `ended` for `connected` calls; `None` otherwise (after a
    /// REFER the hotline is no longer in the call, so the talk time is unknown to it).
    pub fn talk_seconds(&self) -> Option<f64> {
        self.talk_ms().map(ms_to_seconds)
    }

    pub(crate) fn wait_ms(&self) -> Option<i64> {
        let start = self.group_chosen?;
        // A closed group's caller hears when it opens again: that is no wait for an agent.
        if self.outcome == Outcome::Closed {
            return Some(0);
        }
        let stop = self.agent_answered.unwrap_or(self.ended);
        Some(millis_between(start, stop))
    }

    pub(crate) fn talk_ms(&self) -> Option<i64> {
        if self.outcome != Outcome::Connected {
            return None;
        }
        let answered = self.agent_answered?;
        Some(millis_between(answered, self.ended))
    }

    /// The last step of the menu path: the node where the call left the menus.
    pub fn last_menu_node(&self) -> &str {
        self.menu_path
            .rsplit(MENU_PATH_SEPARATOR)
            .next()
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .unwrap_or("(none)")
    }
}

/// One step of a call, kept for audit (like Asterisk's queue_log). `seq` numbers the steps of a
/// call from 0 and, with `call_id`, identifies the event (re-delivery is idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    pub call_id: String,
    pub seq: u32,
    pub at: DateTime<Utc>,
    /// Short machine-readable step name, e.g. `menu`, `dtmf`, `queue_enter`, `agent_answer`.
    pub kind: String,
    pub detail: String,
}

/// A caller's latest choice in the language menu, as the records hold it: `caller` is the
/// pseudonym when the store is keyed. Returning callers are greeted in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageChoice {
    pub caller: String,
    pub language: String,
    pub chosen: DateTime<Utc>,
}

/// Millisecond difference, computed on epoch milliseconds so it equals what the database holds.
fn millis_between(start: DateTime<Utc>, stop: DateTime<Utc>) -> i64 {
    stop.timestamp_millis() - start.timestamp_millis()
}

fn ms_to_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Keyed pseudonym of a caller number: lowercase hex HMAC-SHA256(key, number). The same number
/// always maps to the same pseudonym under one key (repeat callers stay countable), and without
/// the key the number cannot be recovered by hashing all possible numbers.
pub fn pseudonymise(key: &[u8], number: &str) -> String {
    // HMAC accepts keys of any length, so this constructor cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(number.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_text_round_trips() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(*outcome));
        }
        assert!("hung_up".parse::<Outcome>().is_err());
        assert_eq!("sip-info".parse::<DtmfMode>(), Ok(DtmfMode::SipInfo));
    }

    #[test]
    fn pseudonym_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            pseudonymise(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
