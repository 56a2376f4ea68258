//! Live routing: the version new calls get, reloaded at once on SIGHUP and `hotline reload`,
//! and when the file changes once it has held still for `routing_settle` (so a file saved
//! half-way through an edit, even a valid one, never goes live). A file with problems is
//! logged and the running version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use crate::call::FlowFactory;
use crate::ivr::echo::EchoFlow;
use crate::ivr::menu::MenuFlow;
use crate::media::prompts::{PromptError, PromptLibrary};
use crate::routing::active::{load_checked, ActiveRouting};
use crate::routing::{Problem, Routing};

/// `routing = "builtin:echo"` runs the key-echo test flow instead of menus (media tests).
pub const BUILTIN_ECHO: &str = "builtin:echo";

pub(super) struct RoutingSource {
    path: PathBuf,
    prompts: Arc<PromptLibrary>,
    prompt_errors: Vec<PromptError>,
    /// File stamp of the active version, and of a change seen but not yet loaded with the
    /// time it was first seen (it loads once unchanged for `settle`).
    active_stamp: Option<FileStamp>,
    pending_stamp: Option<(Option<FileStamp>, Instant)>,
    settle: Duration,
    /// Where applied versions are kept for `hotline reload --rollback` (None: not kept).
    history: Option<PathBuf>,
}

/// Default of the `routing_settle` setting.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

type FileStamp = (SystemTime, u64);

impl RoutingSource {
    pub(super) fn new(
        path: PathBuf,
        prompts: Arc<PromptLibrary>,
        prompt_errors: Vec<PromptError>,
    ) -> Self {
        Self {
            path,
            prompts,
            prompt_errors,
            active_stamp: None,
            pending_stamp: None,
            settle: DEFAULT_SETTLE,
            history: None,
        }
    }

    /// Keep each applied version in `folder` (see `cli::history`).
    pub(super) fn with_history(mut self, folder: PathBuf) -> Self {
        self.history = Some(folder);
        self
    }

    /// How long a changed file must stay unchanged before the watcher loads it.
    pub(super) fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    pub(super) fn is_builtin_echo(&self) -> bool {
        self.path.as_os_str() == BUILTIN_ECHO
    }

    /// The first version; the service does not start without one.
    pub(super) fn initial(&mut self, default_language: &str) -> Result<Loaded, Vec<Problem>> {
        if self.is_builtin_echo() {
            warn!("routing = builtin:echo: every call gets the key-echo test flow, no menus");
            let language = default_language.to_owned();
            return Ok(Loaded {
                flows: Box::new(move |_| Box::new(EchoFlow::new(&language))),
                routing: None,
                hash: BUILTIN_ECHO.to_owned(),
            });
        }
        let active = self.load()?;
        Ok(loaded(active))
    }

    /// SIGHUP or `hotline reload`: the new version, or None (problems logged, old version stays).
    pub(super) fn reload(&mut self) -> Option<Loaded> {
        self.reload_reporting().ok()
    }

    /// Like `reload`, with the problems for whoever asked (the HTTP API).
    pub(super) fn reload_reporting(&mut self) -> Result<Loaded, Vec<String>> {
        if self.is_builtin_echo() {
            return Err(vec![
                "routing = builtin:echo: there is no routing file to reload".to_owned(),
            ]);
        }
        match self.load() {
            Ok(active) => Ok(loaded(active)),
            Err(problems) => {
                for problem in &problems {
                    error!("{problem}");
                }
                error!(
                    file = %self.path.display(),
                    problems = problems.len(),
                    "routing not reloaded: the running version stays"
                );
                // Do not retry the same broken content on every poll.
                self.active_stamp = stamp(&self.path);
                Err(problems.iter().map(ToString::to_string).collect())
            }
        }
    }

    /// Polled about once a second: reloads once a change has held still for `settle`.
    pub(super) fn poll_file(&mut self) -> Option<Loaded> {
        self.poll_file_at(Instant::now())
    }

    fn poll_file_at(&mut self, now: Instant) -> Option<Loaded> {
        if self.is_builtin_echo() {
            return None;
        }
        let current = stamp(&self.path);
        if current == self.active_stamp {
            self.pending_stamp = None;
            return None;
        }
        match self.pending_stamp {
            Some((seen, since)) if seen == current => {
                if now.saturating_duration_since(since) < self.settle {
                    return None;
                }
            }
            // New, or changed again: the wait starts over.
            _ => {
                self.pending_stamp = Some((current, now));
                return None;
            }
        }
        self.pending_stamp = None;
        info!(file = %self.path.display(), settled = ?self.settle, "routing file changed");
        self.reload()
    }

    fn load(&mut self) -> Result<ActiveRouting, Vec<Problem>> {
        let before = stamp(&self.path);
        let active = load_checked(&self.path, &self.prompts, &self.prompt_errors)?;
        self.active_stamp = before;
        self.keep_in_history(&active);
        let loaded_at = chrono::DateTime::<chrono::Utc>::from(active.loaded_at);
        info!(
            file = %self.path.display(),
            hash = %active.hash,
            loaded_at = %loaded_at.to_rfc3339(),
            menus = active.routing.menus.len(),
            groups = active.routing.groups.len(),
            "routing active for new calls"
        );
        Ok(active)
    }
}

impl RoutingSource {
    /// Saves the file just applied, if it still holds that version (it may have changed
    /// since it was read; then the next load saves it).
    fn keep_in_history(&self, active: &ActiveRouting) {
        let Some(folder) = &self.history else { return };
        let saved = std::fs::read(&self.path).and_then(|content| {
            if crate::cli::history::hash(&content) != active.hash {
                return Ok(());
            }
            crate::cli::history::save(folder, &content, active.loaded_at)
        });
        if let Err(error) = saved {
            warn!(%error, folder = %folder.display(), "cannot keep the routing version for rollback");
        }
    }
}

/// A routing version ready for the switchboard: flows for new calls, groups for the ACD.
pub(super) struct Loaded {
    pub(super) flows: FlowFactory,
    pub(super) routing: Option<Arc<Routing>>,
    pub(super) hash: String,
}

fn loaded(active: ActiveRouting) -> Loaded {
    let routing = active.routing;
    let for_flows = routing.clone();
    Loaded {
        flows: Box::new(move |incoming| {
            let mut flow = MenuFlow::new(for_flows.clone())
                .with_remembered_language(incoming.remembered_language.as_deref());
            if let Some(rules) = &incoming.numbers {
                flow = flow
                    .with_callback_numbers(Some(&incoming.caller), rules.clone(), &incoming.trunks)
                    .with_pending_callback(incoming.pending_callback.as_deref());
            }
            Box::new(flow)
        }),
        routing: Some(routing),
        hash: active.hash,
    }
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/routing")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_changed_file_goes_live_only_after_holding_still_for_the_settle_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routing.toml");
        std::fs::write(&path, fixture("reload_a.toml")).unwrap();
        let prompts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let (prompts, errors) = PromptLibrary::load(&prompts_dir);
        let mut source = RoutingSource::new(path.clone(), Arc::new(prompts), errors)
            .with_settle(Duration::from_secs(2));
        let first = source.initial("en").unwrap_or_else(|p| panic!("{p:?}"));

        // Half-way through an edit: a valid file, but not the one meant.
        let finished = fixture("reload_b.toml");
        let half = finished.replace("version-b", "version-half");
        let t0 = Instant::now();
        std::fs::write(&path, &half).unwrap();
        assert!(source.poll_file_at(t0).is_none());
        assert!(source.poll_file_at(t0 + Duration::from_secs(1)).is_none());
        // Saved again before the settle time: the wait starts over.
        std::fs::write(&path, format!("{finished}\n# done\n")).unwrap();
        assert!(source
            .poll_file_at(t0 + Duration::from_millis(1500))
            .is_none());
        assert!(source
            .poll_file_at(t0 + Duration::from_millis(3000))
            .is_none());
        let applied = source
            .poll_file_at(t0 + Duration::from_millis(3600))
            .expect("the finished file goes live once it held still");
        assert_ne!(applied.hash, first.hash);
        let routing = applied.routing.expect("menus");
        let text = format!("{:?}", routing.groups);
        assert!(text.contains("version-b") && !text.contains("version-half"));
        assert!(source.poll_file_at(t0 + Duration::from_secs(10)).is_none());

        // SIGHUP and `hotline reload` do not wait.
        std::fs::write(&path, &half).unwrap();
        let now = source.reload().expect("immediate");
        assert!(format!("{:?}", now.routing.expect("menus").groups).contains("version-half"));
        assert!(source.poll_file_at(t0 + Duration::from_secs(20)).is_none());
    }
}
