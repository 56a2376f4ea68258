//! Requests inside a session's dialog, whichever side placed the call: BYE, re-INVITE (hold,
//! resume, new address), INFO keys, NOTIFY for our REFER; and ending a session from our side.

use std::time::Instant;

use rsip::headers::UntypedHeader;
use tracing::{debug, info};

use super::build::{self, cseq_number, set_sdp};
use super::session::{Role, SessionState, TxPurpose};
use super::{SessionId, UaEvent, UserAgent};
use crate::media::dtmf::info::parse_info_dtmf;
use crate::sdp::SessionDescription;
use crate::sip::dialog::DialogKey;
use crate::sip::message;
use crate::sip::transaction::TxKey;
use crate::sip::transport::Peer;

impl UserAgent {
    pub(super) fn handle_in_dialog(
        &mut self,
        now: Instant,
        key: TxKey,
        request: rsip::Request,
        local_tag: String,
        from: Peer,
    ) {
        let call_id = message::call_id(&request).unwrap_or_default().to_owned();
        let dialog_key = DialogKey { call_id, local_tag };
        let Some(&id) = self.by_dialog.get(&dialog_key) else {
            let response = self.response(&request, 481, None, vec![]);
            return self.respond(now, &key, response);
        };
        let cseq = cseq_number(&request).unwrap_or(0);
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let in_order = session
            .dialog
            .as_mut()
            .map(|dialog| dialog.accept_remote_cseq(cseq, &request.method));
        match in_order {
            None => {
                let response = self.response(&request, 481, None, vec![]);
                return self.respond(now, &key, response);
            }
            Some(false) => {
                let response = self.response_with_reason(&request, 500, "CSeq Out of Order");
                return self.respond(now, &key, response);
            }
            Some(true) => {}
        }
        let span = session.span.clone();
        let _entered = span.enter();
        debug!(method = %request.method, peer = %from.addr, "in-dialog request");
        match request.method {
            rsip::Method::Bye => {
                let response = self.response(&request, 200, None, vec![]);
                self.respond(now, &key, response);
                // A caller hanging up before we answered: its INVITE ends with 487 (§15.1.2).
                if let Some(invite) = self.sessions.get_mut(&id).and_then(|s| s.invite_tx.take()) {
                    if let Some(terminated) = self.session_response(id, 487, vec![], None) {
                        self.by_tx.remove(&invite);
                        self.respond(now, &invite, terminated);
                    }
                }
                let ours_first = self
                    .sessions
                    .get(&id)
                    .is_some_and(|s| s.state == SessionState::Terminating);
                if !ours_first {
                    self.events.push_back(UaEvent::HungUp { session: id });
                }
                self.close(id);
            }
            rsip::Method::Invite => self.handle_reinvite(now, key, id, request),
            rsip::Method::Info => self.handle_info(now, key, id, &request),
            rsip::Method::Notify => {
                let response = self.response(&request, 200, None, vec![]);
                self.respond(now, &key, response);
                self.transfer_progress(id, &request);
            }
            rsip::Method::Options => {
                let response = self.response(&request, 200, None, vec![]);
                self.respond(now, &key, response);
            }
            rsip::Method::Refer => self.handle_refer(now, key, id, request),
            _ => {
                let response = self.response(&request, 405, None, build::allow_header());
                self.respond(now, &key, response);
            }
        }
    }

    /// A new offer (or none, asking for ours) inside the session: same port, new version.
    fn handle_reinvite(&mut self, now: Instant, key: TxKey, id: SessionId, request: rsip::Request) {
        let public_ip = self.config.public_ip;
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if session.state != SessionState::Confirmed {
            // §14.2: a re-INVITE while our previous 2xx is unacknowledged waits its turn.
            let retry = vec![rsip::headers::RetryAfter::new("1").into()];
            let response = self.response(&request, 500, None, retry);
            return self.respond(now, &key, response);
        }
        if !request.body.is_empty() && !message::is_sdp(&request) {
            let accept = vec![rsip::headers::Accept::new("application/sdp").into()];
            let response = self.response(&request, 415, None, accept);
            return self.respond(now, &key, response);
        }
        let Some(sdp_state) = session.sdp.as_mut() else {
            let response = self.response(&request, 488, None, vec![]);
            return self.respond(now, &key, response);
        };
        let mut local = sdp_state.local(public_ip);
        local.session_version += 1;
        let negotiation = if request.body.is_empty() {
            // Our offer (fresh SRTP keys where the policy allows) replaces any earlier one only
            // once sent; a failure leaves the session as it was.
            let codecs = sdp_state.offer_codecs();
            let previous = sdp_state.srtp_offer.clone();
            let offer = sdp_state.make_offer(&local, &codecs, &mut self.key_rng);
            if offer.is_err() {
                sdp_state.srtp_offer = previous;
            }
            offer.map(|offer| (None, offer))
        } else {
            let Ok(offer) = SessionDescription::parse(&request.body) else {
                let response = self.response_with_reason(&request, 400, "Malformed SDP");
                return self.respond(now, &key, response);
            };
            sdp_state
                .answer(&offer, &local, &mut self.key_rng)
                .map(|(negotiated, answer)| (Some(negotiated), answer))
        };
        let (negotiated, body) = match negotiation {
            Ok(agreed) => agreed,
            Err(error) => {
                // §14.2: a rejected re-offer leaves the session as it was.
                info!(%error, "re-INVITE's SDP not acceptable: 488");
                let warning = vec![rsip::headers::Warning::new(error.warning_header()).into()];
                let response = self.response(&request, 488, None, warning);
                return self.respond(now, &key, response);
            }
        };
        let transport = session.peer.transport;
        let local_tag = session.local_tag.clone();
        let mut response = self.response(
            &request,
            200,
            Some(&local_tag),
            self.contact_headers(transport),
        );
        set_sdp(&mut response, body.clone());
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if let (Some(target), Some(dialog)) =
            (message::contact_uri(&request), session.dialog.as_mut())
        {
            dialog.set_remote_target(target);
        }
        if let Some(sdp_state) = session.sdp.as_mut() {
            sdp_state.version = local.session_version;
            match &negotiated {
                Some(negotiated) => sdp_state.negotiated = Some(negotiated.clone()),
                None => sdp_state.pending_body = Some(body),
            }
        }
        let cseq = cseq_number(&request).unwrap_or(0);
        self.send_2xx(now, id, &key, response, cseq, negotiated.is_none());
        if let Some(negotiated) = negotiated {
            self.events.push_back(UaEvent::Media {
                session: id,
                negotiated,
            });
        }
    }

    fn handle_info(&mut self, now: Instant, key: TxKey, id: SessionId, request: &rsip::Request) {
        let content_type = message::header_value(request, "Content-Type").unwrap_or_default();
        if request.body.is_empty() {
            // An empty INFO is a keep-alive probe (RFC 6086 §4.2.2 allows it).
            let response = self.response(request, 200, None, vec![]);
            return self.respond(now, &key, response);
        }
        match parse_info_dtmf(content_type, &request.body) {
            Ok(digit) => {
                let response = self.response(request, 200, None, vec![]);
                self.respond(now, &key, response);
                self.events.push_back(UaEvent::Digit { session: id, digit });
            }
            Err(error) => {
                debug!(%error, "INFO body not understood");
                let accept = rsip::headers::Accept::new("application/dtmf-relay, application/dtmf");
                let response = self.response(request, 415, None, vec![accept.into()]);
                self.respond(now, &key, response);
            }
        }
    }

    /// Ends a session from our side: CANCEL while our INVITE rings, a final response to an
    /// INVITE we have not answered, BYE once answered (§15.1.1). `Closed` follows when done.
    pub fn hang_up(&mut self, now: Instant, id: SessionId) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        match (session.role, session.state) {
            (_, SessionState::Terminating | SessionState::Cancelling) => {}
            // Not answered yet, so no BYE (§15): the INVITE gets a final "come back later".
            (Role::Uas, SessionState::Offered | SessionState::Early) => {
                let response = self.session_response(id, 503, build::retry_after(), None);
                let key = session.invite_tx.clone();
                if let (Some(key), Some(response)) = (key, response) {
                    self.by_tx.remove(&key);
                    self.respond(now, &key, response);
                }
                self.close(id);
            }
            (Role::Uac, SessionState::Offered | SessionState::Early) => {
                let Some(key) = session.invite_tx.clone() else {
                    return;
                };
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.state = SessionState::Cancelling;
                }
                if let Err(error) = self.transactions.cancel(now, &key) {
                    debug!(%error, "INVITE could not be cancelled");
                }
                // Its final response (487, or a late 2xx that gets ACK + BYE) ends the session.
                self.drain_transactions(now);
            }
            (_, SessionState::AwaitingAck | SessionState::Confirmed) => self.send_bye(now, id),
        }
    }

    pub(super) fn send_bye(&mut self, now: Instant, id: SessionId) {
        let Some(transport) = self.sessions.get(&id).map(|s| s.peer.transport) else {
            return;
        };
        let via = self.via(transport);
        let user_agent = self.user_agent();
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.state = SessionState::Terminating;
        session.pending_2xx = None;
        let peer = session.peer;
        let Some(bye) = session
            .dialog
            .as_mut()
            .map(|dialog| dialog.request(rsip::Method::Bye, via, vec![user_agent]))
        else {
            return self.close(id);
        };
        session.span.in_scope(|| info!("sending BYE"));
        match self.transactions.send_request(now, bye, peer) {
            Ok(key) => {
                self.by_tx.insert(key, (id, TxPurpose::Bye));
            }
            Err(error) => {
                debug!(%error, "BYE could not be sent");
                self.close(id);
            }
        }
        self.drain_transactions(now);
    }
}
