//! Live routing: the version new calls get, reloaded on SIGHUP and when the file changes
//! (debounced). A file with problems is logged and the running version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{error, info, warn};

use crate::ivr::echo::EchoFlow;
use crate::ivr::menu::MenuFlow;
use crate::media::prompts::{PromptError, PromptLibrary};
use crate::routing::active::{load_checked, ActiveRouting};
use crate::routing::{Problem, Routing};
use crate::sip::endpoint::FlowFactory;

/// `routing = "builtin:echo"` runs the key-echo test flow instead of menus (media tests).
pub const BUILTIN_ECHO: &str = "builtin:echo";

pub(super) struct RoutingSource {
    path: PathBuf,
    prompts: Arc<PromptLibrary>,
    prompt_errors: Vec<PromptError>,
    /// File stamp of the active version and of a change seen but not yet loaded (debounce).
    active_stamp: Option<FileStamp>,
    pending_stamp: Option<FileStamp>,
}

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
        }
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

    /// Polled about once a second: reloads once a change has held still for one poll.
    pub(super) fn poll_file(&mut self) -> Option<Loaded> {
        if self.is_builtin_echo() {
            return None;
        }
        let current = stamp(&self.path);
        if current == self.active_stamp {
            self.pending_stamp = None;
            return None;
        }
        if current != self.pending_stamp {
            self.pending_stamp = current;
            return None;
        }
        self.pending_stamp = None;
        info!(file = %self.path.display(), "routing file changed");
        self.reload()
    }

    fn load(&mut self) -> Result<ActiveRouting, Vec<Problem>> {
        let before = stamp(&self.path);
        let active = load_checked(&self.path, &self.prompts, &self.prompt_errors)?;
        self.active_stamp = before;
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

/// A routing version ready for the endpoint: flows for new calls, groups for the ACD.
pub(super) struct Loaded {
    pub(super) flows: FlowFactory,
    pub(super) routing: Option<Arc<Routing>>,
    pub(super) hash: String,
}

fn loaded(active: ActiveRouting) -> Loaded {
    let routing = active.routing;
    let for_flows = routing.clone();
    Loaded {
        flows: Box::new(move |_| Box::new(MenuFlow::new(for_flows.clone()))),
        routing: Some(routing),
        hash: active.hash,
    }
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}
