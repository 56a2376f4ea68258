//! Blind transfer by REFER (RFC 3515, RFC 5589): we ask the caller's side to call the agent,
//! follow the implicit subscription's NOTIFYs (message/sipfrag), and on success leave the call.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;
use tracing::{info, warn};

use super::{CallRef, EndReason, Endpoint, TimerKind, USER_AGENT};
use crate::ivr::FlowEvent;
use crate::sip::message;
use crate::sip::transaction::TxKey;

/// How long the agent's phone may ring before an accepted REFER counts as failed.
const FINAL_NOTIFY_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) target: String,
    pub(super) accepted: bool,
}

impl Endpoint {
    pub(super) fn start_transfer(&mut self, now: Instant, id: CallRef, target: &str) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let via = self.via(call.dialog.flow.transport);
        let contact = self.contact_headers(id);
        let referred_by = format!("<sip:19118@{}>", self.host_port());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut extra = vec![
            rsip::Header::Other("Refer-To".into(), format!("<{target}>")),
            rsip::Header::Other("Referred-By".into(), referred_by),
            rsip::headers::UserAgent::new(USER_AGENT).into(),
        ];
        extra.extend(
            contact
                .into_iter()
                .filter(|h| matches!(h, rsip::Header::Contact(_))),
        );
        let refer = call.dialog.request(rsip::Method::Refer, via, extra);
        let flow = call.dialog.flow;
        call.facts.transfer_mode = Some(crate::cdr::TransferMode::Refer);
        call.facts.agent = Some(target.to_owned());
        call.transfer = Some(Transfer {
            target: target.to_owned(),
            accepted: false,
        });
        call.span
            .in_scope(|| info!(%target, "transferring by REFER"));
        match self.transactions.send_request(now, refer, flow) {
            Ok(key) => {
                self.by_refer_tx.insert(key, id);
            }
            Err(error) => {
                warn!(%error, "REFER could not be sent");
                self.transfer_failed(now, id, 500);
            }
        }
    }

    /// A final response to our REFER.
    pub(super) fn refer_response(&mut self, now: Instant, key: &TxKey, status: u16) {
        let Some(id) = self.by_refer_tx.remove(key) else {
            return;
        };
        if (200..300).contains(&status) {
            if let Some(transfer) = self
                .calls
                .get_mut(&id)
                .and_then(|call| call.transfer.as_mut())
            {
                transfer.accepted = true;
            }
            self.timers.push(Reverse((
                now + FINAL_NOTIFY_WAIT,
                TimerKind::TransferWait(id),
            )));
        } else {
            self.transfer_failed(now, id, status);
        }
    }

    pub(super) fn refer_timeout(&mut self, now: Instant, key: &TxKey) -> bool {
        match self.by_refer_tx.remove(key) {
            Some(id) => {
                self.transfer_failed(now, id, 408);
                true
            }
            None => false,
        }
    }

    /// The accepted REFER never reported a final outcome.
    pub(super) fn transfer_wait_expired(&mut self, now: Instant, id: CallRef) {
        let pending = self
            .calls
            .get(&id)
            .and_then(|call| call.transfer.as_ref())
            .is_some_and(|transfer| transfer.accepted);
        if pending {
            self.transfer_failed(now, id, 408);
        }
    }

    /// An in-dialog NOTIFY: for `Event: refer` its sipfrag body says how the transfer goes.
    /// Returns the status of the sipfrag when it was a final one.
    pub(super) fn transfer_progress(&mut self, now: Instant, id: CallRef, notify: &rsip::Request) {
        let is_refer_event = message::header_value(notify, "Event").is_some_and(|event| {
            event
                .split(';')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("refer"))
        });
        if !is_refer_event {
            return;
        }
        let Some(status) = sipfrag_status(&notify.body) else {
            return;
        };
        if status < 200 {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.take() else {
            return;
        };
        if (200..300).contains(&status) {
            call.span
                .in_scope(|| info!(target = %transfer.target, "transfer succeeded"));
            self.hang_up(now, id, EndReason::Transferred);
        } else {
            call.transfer = Some(transfer);
            self.transfer_failed(now, id, status);
        }
    }

    fn transfer_failed(&mut self, now: Instant, id: CallRef, status: u16) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.take() else {
            return;
        };
        call.span
            .in_scope(|| warn!(target = %transfer.target, status, "transfer failed"));
        self.flow_event(now, id, FlowEvent::TransferFailed(status));
    }
}

/// The status code of a `message/sipfrag` body's status line (`SIP/2.0 200 OK`).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let mut words = line.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    words
        .next()?
        .parse()
        .ok()
        .filter(|code| (100..700).contains(code))
}

#[cfg(test)]
mod tests {
    use super::sipfrag_status;

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying\r\n"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK"), Some(200));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n"),
            Some(486)
        );
        assert_eq!(sipfrag_status(b"garbage"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 999 Nope"), None);
        assert_eq!(sipfrag_status(&[0xff, 0xfe]), None);
    }
}
