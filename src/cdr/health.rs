//! Whether call records can be stored right now: the reason when neither the database nor the
//! spool takes them, how many wait in memory meanwhile, and how many were lost. Set by the
//! writer task, read by `/health` and `/metrics`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct RecordHealth {
    /// Why records cannot be stored now; `None` while the database or the spool takes them.
    problem: Mutex<Option<String>>,
    held: AtomicUsize,
    lost: AtomicU64,
}

impl RecordHealth {
    /// Why records cannot be stored now, if they cannot.
    pub fn problem(&self) -> Option<String> {
        self.problem_slot().clone()
    }

    /// Record entries (a call's start, its end) kept in memory until they can be stored.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Record entries dropped since start (memory full, or the service stopped with some held).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    pub(crate) fn set_problem(&self, problem: Option<String>) {
        *self.problem_slot() = problem;
    }

    pub(crate) fn set_held(&self, held: usize) {
        self.held.store(held, Ordering::Relaxed);
    }

    pub(crate) fn count_lost(&self, entries: u64) {
        self.lost.fetch_add(entries, Ordering::Relaxed);
    }

    fn problem_slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
