//! Returning callers keep their language: the latest language each caller chose in the
//! language menu, by number (its pseudonym when `database.pseudonymise_key` is set, so it
//! matches the call records), kept for `remember_language` (`[hotline]`, zero: off) and never
//! longer than the records keep the caller (`database.retention_days`). The driver fills it at
//! start from the records; each call that ends with a choice updates it. Withheld numbers
//! (none, `anonymous`...) are never remembered nor looked up. Pure: times come from the caller.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::Switchboard;
use crate::cdr::{pseudonymise, LanguageChoice};
use crate::numbers::is_withheld;

/// How often, at most, choices past their time are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
pub(super) struct LanguageMemory {
    /// `remember_language` of the routing new calls get (zero: nothing is remembered).
    window: Duration,
    /// How long the records keep a caller's number (None: for ever).
    retention: Option<Duration>,
    /// `database.pseudonymise_key`: callers are kept by their pseudonym under it.
    key: Option<Vec<u8>>,
    /// Caller (or pseudonym) → the language and when it was chosen.
    choices: HashMap<String, (String, SystemTime)>,
    next_sweep: Option<SystemTime>,
}

impl LanguageMemory {
    /// How long a choice counts: the window, cut to the retention.
    fn lasts(&self) -> Duration {
        self.retention
            .map_or(self.window, |retention| retention.min(self.window))
    }

    fn fresh(&self, chosen: SystemTime, now: SystemTime) -> bool {
        let lasts = self.lasts();
        // A choice stamped a little ahead of `now` (clocks of two nodes) is fresh.
        !lasts.is_zero() && now.duration_since(chosen).map_or(true, |age| age <= lasts)
    }

    /// The caller as kept here; None for a withheld number.
    fn key_of(&self, caller: &str) -> Option<String> {
        if is_withheld(caller) {
            return None;
        }
        Some(match &self.key {
            Some(key) => pseudonymise(key, caller),
            None => caller.to_owned(),
        })
    }

    pub(super) fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// The language `caller` chose within the window, if any.
    pub(super) fn recall(&self, caller: &str, now: SystemTime) -> Option<String> {
        let (language, chosen) = self.choices.get(&self.key_of(caller)?)?;
        self.fresh(*chosen, now).then(|| language.clone())
    }

    /// `caller` chose `language` at `chosen` (a call of theirs ended, at `now`).
    pub(super) fn remember(
        &mut self,
        caller: &str,
        language: &str,
        chosen: SystemTime,
        now: SystemTime,
    ) {
        if self.lasts().is_zero() {
            return;
        }
        let Some(caller) = self.key_of(caller) else {
            return;
        };
        self.keep(caller, language.to_owned(), chosen);
        if self.next_sweep.is_none_or(|at| at <= now) {
            self.sweep(now);
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
    }

    /// Keeps the later of two choices of one caller.
    fn keep(&mut self, caller: String, language: String, chosen: SystemTime) {
        let entry = self
            .choices
            .entry(caller)
            .or_insert((language.clone(), chosen));
        if chosen >= entry.1 {
            *entry = (language, chosen);
        }
    }

    fn sweep(&mut self, now: SystemTime) {
        let before = self.choices.len();
        let lasts = self.lasts();
        self.choices.retain(|_, (_, chosen)| {
            !lasts.is_zero() && now.duration_since(*chosen).map_or(true, |age| age <= lasts)
        });
        let dropped = before - self.choices.len();
        if dropped > 0 {
            tracing::debug!(
                dropped,
                kept = self.choices.len(),
                "old language choices forgotten"
            );
        }
    }

    pub(super) fn len(&self) -> usize {
        self.choices.len()
    }
}

impl Switchboard {
    /// Remember callers' languages (with the routing's `remember_language`): callers kept as
    /// pseudonyms under `pseudonymise_key` when set, for no longer than `retention`, starting
    /// with `choices` read from the call records (callers as stored there).
    pub fn set_language_memory(
        &mut self,
        pseudonymise_key: Option<&str>,
        retention: Option<Duration>,
        choices: Vec<LanguageChoice>,
    ) {
        let memory = &mut self.languages;
        memory.key = pseudonymise_key.map(|key| key.as_bytes().to_vec());
        memory.retention = retention;
        memory.choices.clear();
        for choice in choices {
            memory.keep(
                choice.caller,
                choice.language,
                SystemTime::from(choice.chosen),
            );
        }
    }

    /// Callers whose language is remembered now (choices past their time may still count
    /// until the next sweep).
    pub fn remembered_languages(&self) -> usize {
        self.languages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + DAY * days as u32
    }

    fn memory(window_days: u32) -> LanguageMemory {
        LanguageMemory {
            window: DAY * window_days,
            ..LanguageMemory::default()
        }
    }

    #[test]
    fn a_choice_is_recalled_within_the_window_only() {
        let mut memory = memory(90);
        memory.remember("+37060000001", "en", at(0), at(0));
        assert_eq!(memory.recall("+37060000001", at(90)).as_deref(), Some("en"));
        assert_eq!(memory.recall("+37060000001", at(91)), None);
        assert_eq!(memory.recall("+37060000002", at(1)), None);
        // A later choice replaces it; an older one arriving late does not.
        memory.remember("+37060000001", "ru", at(5), at(5));
        memory.remember("+37060000001", "pl", at(3), at(6));
        assert_eq!(memory.recall("+37060000001", at(6)).as_deref(), Some("ru"));
    }

    #[test]
    fn withheld_numbers_are_never_remembered() {
        let mut memory = memory(90);
        for caller in ["", "anonymous", "Anonymous"] {
            memory.remember(caller, "en", at(0), at(0));
            assert_eq!(memory.recall(caller, at(0)), None, "{caller:?}");
        }
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn off_remembers_nothing_and_retention_cuts_the_window() {
        let mut off = memory(0);
        off.remember("+37060000001", "en", at(0), at(0));
        assert_eq!(off.recall("+37060000001", at(0)), None);
        assert_eq!(off.len(), 0);
        let mut cut = LanguageMemory {
            retention: Some(DAY * 30),
            ..memory(90)
        };
        cut.remember("+37060000001", "en", at(0), at(0));
        assert_eq!(cut.recall("+37060000001", at(30)).as_deref(), Some("en"));
        assert_eq!(cut.recall("+37060000001", at(31)), None);
    }

    #[test]
    fn keyed_callers_are_kept_as_their_pseudonyms_and_old_choices_are_swept() {
        let mut memory = LanguageMemory {
            key: Some(b"s3cret".to_vec()),
            ..memory(10)
        };
        memory.remember("+37060000001", "lt", at(0), at(0));
        let pseudonym = pseudonymise(b"s3cret", "+37060000001");
        assert!(memory.choices.contains_key(&pseudonym));
        assert!(!memory.choices.contains_key("+37060000001"));
        assert_eq!(memory.recall("+37060000001", at(1)).as_deref(), Some("lt"));
        // Eleven days later another call ends: the sweep forgets the first choice.
        memory.remember("+37060000002", "en", at(11), at(11));
        assert_eq!(memory.len(), 1);
    }
}
