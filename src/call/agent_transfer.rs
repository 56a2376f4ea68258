//! An agent moving its caller to another enterprise: a blind REFER from the agent's phone whose
//! Refer-To names a group (`sip:water@<hotline>`). The REFER is accepted (202, NOTIFY 200), the
//! agent's leg ends, and the caller waits in the new group ahead of later callers, hearing where
//! they are going; anything but a configured group is refused with 403 (no open relay).

use std::time::Instant;

use tracing::{info, warn};

use super::Switchboard;
use crate::acd::{AcdInput, CallId};
use crate::ivr::FlowEvent;
use crate::sip::ua::SessionId;

impl Switchboard {
    pub(super) fn agent_transfer_requested(&mut self, now: Instant, leg: SessionId, target: &str) {
        let caller = self.legs.get(&leg).map(|leg| leg.caller);
        let connected =
            caller.filter(|caller| self.calls.get(caller).is_some_and(|call| call.bridged));
        let group = self.group_named_by(target);
        let (Some(caller), Some(group)) = (connected, group) else {
            warn!(%target, "SECURITY event=transfer_refused src=- user=- target={target}");
            return self.ua.answer_transfer_request(now, leg, false);
        };
        self.ua.answer_transfer_request(now, leg, true);
        let language = self
            .calls
            .get(&caller)
            .and_then(|call| call.queue.as_ref())
            .map(|queued| queued.language.clone())
            .unwrap_or_default();
        let display = self.transfer_display(&language, &group);
        if let Some(call) = self.calls.get_mut(&caller) {
            call.span
                .in_scope(|| info!(%group, "transferred by the agent to another group"));
            if let Some(queued) = call.queue.as_mut() {
                queued.group = group.clone();
                queued.display = display;
            }
        }
        // The agent's part is over: its leg ends now (the phone may also say BYE).
        self.hang_up_leg(now, leg);
        let call = CallId(caller.0);
        self.report_to_acd(
            now,
            AcdInput::Transfer {
                call,
                group: group.clone(),
            },
        );
        self.flow_event(now, caller, FlowEvent::MovedToGroup { group });
    }

    /// The group a Refer-To names: the user part of its URI (or the bare text) is a group's
    /// name in the routing.
    fn group_named_by(&self, target: &str) -> Option<String> {
        let routing = self.acd.as_ref()?.routing();
        let text = target.trim();
        let user = text
            .strip_prefix("sip:")
            .or_else(|| text.strip_prefix("sips:"))
            .map_or(text, |rest| {
                rest.split(['@', ';', '?']).next().unwrap_or_default()
            });
        routing.groups.contains_key(user).then(|| user.to_owned())
    }

    /// What the next agent's phone shows: `[LANG] Group name` (English name when there is one).
    fn transfer_display(&self, language: &str, group: &str) -> String {
        let name = self
            .acd
            .as_ref()
            .and_then(|acd| acd.routing().groups.get(group).cloned())
            .and_then(|group| {
                group
                    .name
                    .value
                    .get("en")
                    .or_else(|| group.name.value.get(language))
                    .cloned()
            })
            .unwrap_or_else(|| group.to_owned());
        format!("[{}] {name}", language.to_uppercase())
    }
}
