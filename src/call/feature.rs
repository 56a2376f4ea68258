//! Feature codes agents dial from their own registered phone: pause (a break), resume, log out
//! of all groups and log in. The call is answered with a short confirmation and hung up; only
//! a registered agent calling from the address it registered from may use them.

use std::time::Instant;

use tracing::{info, warn};

use super::Switchboard;
use crate::acd::PauseReason;
use crate::sip::message;
use crate::sip::transport::Peer;
use crate::sip::ua::SessionId;

/// The codes (`[features]` settings). Confirmations are in the routing's default language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    pub pause: String,
    pub resume: String,
    pub log_out: String,
    pub log_in: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        Self {
            pause: "*21".into(),
            resume: "*22".into(),
            log_out: "*23".into(),
            log_in: "*24".into(),
        }
    }
}

impl FeatureCodes {
    /// What a dialled code does (None: not a code) and the prompt confirming it.
    fn action(&self, dialled: &str) -> Option<(Option<PauseReason>, &'static str)> {
        if dialled == self.pause {
            Some((Some(PauseReason::Break), "agent_paused"))
        } else if dialled == self.resume {
            Some((None, "agent_available"))
        } else if dialled == self.log_out {
            Some((Some(PauseReason::LoggedOut), "agent_logged_out"))
        } else if dialled == self.log_in {
            Some((None, "agent_available"))
        } else {
            None
        }
    }
}

impl Switchboard {
    /// New codes (`[features]`).
    pub fn set_feature_codes(&mut self, codes: FeatureCodes) {
        self.feature_codes = codes;
    }

    /// Handles the INVITE if it dials a feature code; false: it is an ordinary call.
    pub(super) fn feature_code(
        &mut self,
        now: Instant,
        id: SessionId,
        from: Peer,
        invite: &rsip::Request,
    ) -> bool {
        let Some(dialled) = invite.uri.user() else {
            return false;
        };
        let Some((pause, prompt)) = self.feature_codes.action(dialled) else {
            return false;
        };
        let caller = message::header_value(invite, "From").and_then(super::trunk::uri_user);
        let registered_here = caller.as_deref().is_some_and(|user| {
            self.ua
                .registered_contact(user, now)
                .is_some_and(|(_, source)| source == from)
        });
        let Some(user) = caller.filter(|_| registered_here) else {
            warn!(
                "SECURITY event=feature_code_refused src={} user=- code={dialled}",
                from.addr.ip()
            );
            self.ua.reject(now, id, 403, vec![]);
            return true;
        };
        if !self.set_agent_pause(now, &user, pause, "feature_code") {
            self.ua.reject(now, id, 404, vec![]);
            return true;
        }
        info!(agent = %user, code = %dialled, state = pause.map_or("available", PauseReason::as_str), "feature code");
        let language = self
            .acd
            .as_ref()
            .map(|acd| acd.routing().hotline.default_language.value.clone())
            .unwrap_or_default();
        self.answer_with_prompt(now, id, &language, prompt);
        true
    }
}
