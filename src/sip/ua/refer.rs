//! Blind transfer by REFER (RFC 3515, RFC 5589), both ways: we ask the far end to call the
//! target, follow the implicit subscription's NOTIFYs (message/sipfrag) and report how it
//! ended; and an agent's phone asks us to move its caller (accepted with 202 and a final
//! NOTIFY, or refused with 403, as the switchboard decides).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::session::{Role, Transfer, TxPurpose};
use super::{SessionId, Timer, TransferOutcome, UaEvent, UserAgent};
use crate::sip::message;

/// How long the target may ring before an accepted REFER counts as failed.
const FINAL_NOTIFY_WAIT: Duration = Duration::from_secs(60);

impl UserAgent {
    /// A REFER inside a session: only the phone of a call we placed may transfer (a caller
    /// asking the city hotline to transfer itself gets 603), one at a time.
    pub(super) fn handle_refer(
        &mut self,
        now: Instant,
        key: crate::sip::transaction::TxKey,
        id: SessionId,
        request: rsip::Request,
    ) {
        let target = message::header_value(&request, "Refer-To").map(|value| {
            let value = value.trim();
            let inner = match (value.find('<'), value.find('>')) {
                (Some(start), Some(end)) if start < end => &value[start + 1..end],
                _ => value,
            };
            inner.split('?').next().unwrap_or_default().to_owned()
        });
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let status = match (&target, session.role) {
            (_, Role::Uas) => Some(603),
            (None, _) => Some(400),
            _ if session.pending_refer.is_some() => Some(491),
            _ => None,
        };
        if let Some(status) = status {
            let response = self.response(&request, status, None, vec![]);
            return self.respond(now, &key, response);
        }
        session.pending_refer = Some(Box::new((key, request)));
        let target = target.unwrap_or_default();
        session
            .span
            .in_scope(|| info!(%target, "the agent transfers the call"));
        self.events.push_back(UaEvent::TransferRequested {
            session: id,
            target,
        });
    }

    /// Answers the REFER `TransferRequested` announced: accepted → 202, then a NOTIFY saying
    /// the transfer is done (`SIP/2.0 200 OK`, subscription terminated), after which the phone
    /// hangs up (or we do); refused → 403 (no open relay).
    pub fn answer_transfer_request(&mut self, now: Instant, id: SessionId, accept: bool) {
        let Some((key, request)) = self
            .sessions
            .get_mut(&id)
            .and_then(|s| s.pending_refer.take())
            .map(|pending| *pending)
        else {
            return;
        };
        let status = if accept { 202 } else { 403 };
        let response = self.response(&request, status, None, vec![]);
        self.respond(now, &key, response);
        if !accept {
            return;
        }
        let Some(transport) = self.sessions.get(&id).map(|s| s.peer.transport) else {
            return;
        };
        let via = self.via(transport);
        let headers = vec![
            rsip::Header::Other("Event".into(), "refer".into()),
            rsip::Header::Other(
                "Subscription-State".into(),
                "terminated;reason=noresource".into(),
            ),
            self.user_agent(),
        ];
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(mut notify) = session
            .dialog
            .as_mut()
            .map(|dialog| dialog.request(rsip::Method::Notify, via, headers))
        else {
            return;
        };
        message::set_body(
            &mut notify.headers,
            &mut notify.body,
            "message/sipfrag;version=2.0",
            b"SIP/2.0 200 OK\r\n".to_vec(),
        );
        let peer = session.peer;
        // Its answer concerns nobody: the transaction runs on its own.
        if let Err(error) = self.transactions.send_request(now, notify, peer) {
            warn!(%error, "NOTIFY for the accepted REFER could not be sent");
        }
        self.drain_transactions(now);
    }

    /// Asks the session's far end to call `target`; a `Transfer` event tells the outcome.
    pub fn refer(&mut self, now: Instant, id: SessionId, target: &str) {
        let Some(transport) = self.sessions.get(&id).map(|s| s.peer.transport) else {
            return;
        };
        let via = self.via(transport);
        let referred_by = format!("<sip:19118@{}>", self.host_port());
        let contact = self
            .contact_headers(transport)
            .into_iter()
            .filter(|h| matches!(h, rsip::Header::Contact(_)));
        let mut extra = vec![
            rsip::Header::Other("Refer-To".into(), format!("<{target}>")),
            rsip::Header::Other("Referred-By".into(), referred_by),
            self.user_agent(),
        ];
        extra.extend(contact);
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(refer) = session
            .dialog
            .as_mut()
            .map(|dialog| dialog.request(rsip::Method::Refer, via, extra))
        else {
            return;
        };
        session.transfer = Some(Transfer {
            target: target.to_owned(),
            accepted: false,
        });
        session
            .span
            .in_scope(|| info!(%target, "transferring by REFER"));
        let peer = session.peer;
        match self.transactions.send_request(now, refer, peer) {
            Ok(key) => {
                self.by_tx.insert(key, (id, TxPurpose::Refer));
            }
            Err(error) => {
                warn!(%error, "REFER could not be sent");
                self.transfer_failed(id, 500);
            }
        }
        self.drain_transactions(now);
    }

    /// A final response to our REFER.
    pub(super) fn refer_response(&mut self, now: Instant, id: SessionId, status: u16) {
        if !(200..300).contains(&status) {
            return self.transfer_failed(id, status);
        }
        if let Some(transfer) = self
            .sessions
            .get_mut(&id)
            .and_then(|session| session.transfer.as_mut())
        {
            transfer.accepted = true;
        }
        self.push_timer(now + FINAL_NOTIFY_WAIT, Timer::TransferWait(id));
    }

    /// The accepted REFER never reported a final outcome.
    pub(super) fn transfer_wait_expired(&mut self, id: SessionId) {
        let overdue = self
            .sessions
            .get(&id)
            .and_then(|session| session.transfer.as_ref())
            .is_some_and(|transfer| transfer.accepted);
        if overdue {
            self.transfer_failed(id, 408);
        }
    }

    /// An in-dialog NOTIFY: for `Event: refer` its sipfrag body says how the transfer goes.
    pub(super) fn transfer_progress(&mut self, id: SessionId, notify: &rsip::Request) {
        let is_refer_event = message::header_value(notify, "Event").is_some_and(|event| {
            event
                .split(';')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("refer"))
        });
        if !is_refer_event {
            return;
        }
        let Some(status) = sipfrag_status(&notify.body).filter(|status| *status >= 200) else {
            return;
        };
        if !(200..300).contains(&status) {
            return self.transfer_failed(id, status);
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Some(transfer) = session.transfer.take() {
            let target = transfer.target;
            session
                .span
                .in_scope(|| info!(%target, "transfer succeeded"));
            self.events.push_back(UaEvent::Transfer {
                session: id,
                outcome: TransferOutcome::Succeeded,
            });
        }
    }

    pub(super) fn transfer_failed(&mut self, id: SessionId, status: u16) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(Transfer { target, .. }) = session.transfer.take() else {
            return;
        };
        session
            .span
            .in_scope(|| warn!(%target, status, "transfer failed"));
        self.events.push_back(UaEvent::Transfer {
            session: id,
            outcome: TransferOutcome::Failed(status),
        });
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
