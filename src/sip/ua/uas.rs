//! Sessions we answer (UAS, RFC 3261 §13.3): a new INVITE checked and reported, then accepted
//! with an RTP port (SDP answer or our offer), rung, answered or rejected; its ACK and CANCEL.

use std::time::Instant;

use rand::Rng;
use rsip::headers::UntypedHeader;
use tracing::{debug, info, warn};

use super::build::{self, cseq_number};
use super::session::{Role, SdpState, Session, SessionState, TxPurpose};
use super::{SessionId, UaEvent, UserAgent};
use crate::sdp::{Codec, MediaEncryption, SessionDescription};
use crate::sip::dialog::{Dialog, DialogKey};
use crate::sip::message;
use crate::sip::transaction::TxKey;
use crate::sip::transport::Peer;

impl UserAgent {
    pub(super) fn handle_new_invite(
        &mut self,
        now: Instant,
        key: TxKey,
        invite: rsip::Request,
        from: Peer,
    ) {
        if !self.accepting {
            let response = self.response(&invite, 503, None, build::retry_after());
            return self.refuse(now, &key, response, invite, from);
        }
        // Our answer carries SDP: a caller that accepts none gets 406 (RFC 4475 sdp01).
        if !message::accepts_sdp(&invite) {
            let accept = vec![rsip::headers::Accept::new("application/sdp").into()];
            let response = self.response(&invite, 406, None, accept);
            return self.refuse(now, &key, response, invite, from);
        }
        let has_body = !invite.body.is_empty();
        if has_body && !message::is_sdp(&invite) {
            let accept = vec![rsip::headers::Accept::new("application/sdp").into()];
            let response = self.response(&invite, 415, None, accept);
            return self.refuse(now, &key, response, invite, from);
        }
        if has_body {
            if let Err(error) = SessionDescription::parse(&invite.body) {
                debug!(%error, "malformed SDP offer");
                let response = self.response_with_reason(&invite, 400, "Malformed SDP");
                return self.refuse(now, &key, response, invite, from);
            }
        }
        // An RFC 2543 caller (no magic cookie in its branch) may omit Contact: reach it at
        // its From URI (RFC 4475 inv2543). RFC 3261 callers must send one (§8.1.1.8).
        let rfc2543 = !message::top_via_branch(&invite).is_some_and(|b| b.starts_with("z9hG4bK"));
        let target = message::contact_uri(&invite).or_else(|| {
            let contactless = message::header_value(&invite, "Contact").is_none();
            (rfc2543 && contactless)
                .then(|| message::from_uri(&invite))
                .flatten()
        });
        let Some(remote_target) = target else {
            let response = self.response_with_reason(&invite, 400, "Missing Contact");
            return self.refuse(now, &key, response, invite, from);
        };
        let local_tag = self.random_token();
        let first_cseq = self.rng.gen_range(1..10_000);
        let dialog = match Dialog::from_invite(&invite, &local_tag, remote_target, first_cseq) {
            Ok(dialog) => dialog,
            Err(error) => {
                let response = self.response_with_reason(&invite, 400, &error.to_string());
                return self.refuse(now, &key, response, invite, from);
            }
        };
        let call_id = dialog.key.call_id.clone();
        let span = tracing::info_span!("call", call_id = %call_id, remote = %from.addr);
        span.in_scope(|| info!(transport = from.transport.via_name(), "incoming call"));
        let id = self.new_session_id();
        self.by_dialog.insert(dialog.key.clone(), id);
        self.by_tx.insert(key.clone(), (id, TxPurpose::Invite));
        self.sessions.insert(
            id,
            Box::new(Session {
                role: Role::Uas,
                span,
                state: SessionState::Offered,
                call_id,
                local_tag,
                invite: Some(Box::new(invite.clone())),
                invite_tx: Some(key),
                peer: from,
                dialog: Some(dialog),
                sdp: None,
                pending_2xx: None,
                ack: None,
                confirmed: false,
                transfer: None,
                pending_refer: None,
                credentials: None,
            }),
        );
        self.events.push_back(UaEvent::Incoming {
            session: id,
            from,
            invite: Box::new(invite),
        });
    }

    /// Answers an INVITE that got no session, and says so (it is still a call to record).
    fn refuse(
        &mut self,
        now: Instant,
        key: &TxKey,
        response: rsip::Response,
        invite: rsip::Request,
        from: Peer,
    ) {
        let status = response.status_code.code();
        self.respond(now, key, response);
        self.events.push_back(UaEvent::Rejected {
            invite: Box::new(invite),
            from,
            status,
        });
    }

    /// Takes an offered call with media on `rtp_port`, plain RTP only; see [`Self::accept_with`].
    pub fn accept(&mut self, now: Instant, id: SessionId, rtp_port: u16) -> Result<(), u16> {
        self.accept_with(now, id, rtp_port, MediaEncryption::Off)
    }

    /// Takes an offered call with media on `rtp_port` under the caller's SRTP policy (its
    /// trunk's `media_encryption`): negotiates the SDP answer (or prepares our offer). On a
    /// failed negotiation the INVITE is answered 488 (with a Warning) and the status returned.
    pub fn accept_with(
        &mut self,
        now: Instant,
        id: SessionId,
        rtp_port: u16,
        encryption: MediaEncryption,
    ) -> Result<(), u16> {
        let session_id = self.rng.gen_range(1..u64::from(u32::MAX));
        let public_ip = self.config.public_ip;
        let Some(peer) = self.sessions.get(&id).map(|session| session.peer) else {
            return Err(481);
        };
        let policy = self.srtp_policy(peer, encryption);
        let Some(session) = self.sessions.get_mut(&id) else {
            return Err(481);
        };
        if session.state != SessionState::Offered {
            return Err(481);
        }
        let mut state = SdpState::new(rtp_port, session_id, policy);
        let local = state.local(public_ip);
        let Some(invite) = session.invite.as_ref() else {
            return Err(481);
        };
        let answered = if invite.body.is_empty() {
            state
                .make_offer(&local, &[Codec::Pcmu, Codec::Pcma], &mut self.key_rng)
                .map(|offer| state.pending_body = Some(offer))
                .map_err(Some)
        } else {
            SessionDescription::parse(&invite.body)
                .map_err(|_| None)
                .and_then(|offer| {
                    state
                        .answer(&offer, &local, &mut self.key_rng)
                        .map_err(Some)
                })
                .map(|(negotiated, answer)| {
                    let srtp = negotiated
                        .srtp
                        .as_ref()
                        .map(|keys| keys.profile.sdes_name());
                    session
                        .span
                        .in_scope(|| info!(codec = ?negotiated.codec, srtp, "offer accepted"));
                    state.negotiated = Some(negotiated);
                    state.pending_body = Some(answer);
                })
        };
        if let Err(error) = answered {
            if let Some(error) = &error {
                session
                    .span
                    .in_scope(|| warn!(%error, %encryption, "SDP not acceptable: 488"));
            }
            let warning =
                error.map(|error| rsip::headers::Warning::new(error.warning_header()).into());
            self.reject(now, id, 488, warning.into_iter().collect());
            return Err(488);
        }
        session.sdp = Some(state);
        session.state = SessionState::Early;
        Ok(())
    }

    /// 180 Ringing on an accepted call.
    pub fn ring(&mut self, now: Instant, id: SessionId) {
        let key = self.sessions.get(&id).and_then(|s| s.invite_tx.clone());
        if let (Some(key), Some(ringing)) = (key, self.session_response(id, 180, vec![], None)) {
            self.respond(now, &key, ringing);
        }
    }

    /// Sends the 2xx with our SDP and resends it until the ACK, which confirms the caller's
    /// address: the agreed media is reported then (with the answer, for an offer-less INVITE).
    pub fn answer(&mut self, now: Instant, id: SessionId) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if session.state != SessionState::Early || session.role != Role::Uas {
            return;
        }
        let Some(key) = session.invite_tx.take() else {
            return;
        };
        let body = session.sdp.as_mut().and_then(|sdp| sdp.pending_body.take());
        // No agreed media yet: our 2xx carries an offer, answered in the ACK.
        let offered = session
            .sdp
            .as_ref()
            .is_none_or(|sdp| sdp.negotiated.is_none());
        let cseq = session.invite.as_deref().and_then(cseq_number).unwrap_or(0);
        self.by_tx.remove(&key);
        let Some(response) = self.session_response(id, 200, vec![], body) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&id) {
            session.invite = None;
        }
        self.send_2xx(now, id, &key, response, cseq, offered);
    }

    /// Refuses an offered or ringing call with a final status; the session is forgotten
    /// without a `Closed` event (it never was a call on the wire).
    pub fn reject(&mut self, now: Instant, id: SessionId, status: u16, extra: Vec<rsip::Header>) {
        let key = self.sessions.get(&id).and_then(|s| s.invite_tx.clone());
        let response = self.session_response(id, status, extra, None);
        if let Some(session) = self.sessions.remove(&id) {
            self.by_dialog.remove(&session.dialog_key());
            self.by_tx.retain(|_, (owner, _)| *owner != id);
        }
        if let (Some(key), Some(response)) = (key, response) {
            self.respond(now, &key, response);
        }
    }

    pub(super) fn handle_ack(&mut self, ack: &rsip::Request) {
        let (Some(call_id), Some(local_tag)) = (message::call_id(ack), message::to_tag(ack)) else {
            return;
        };
        let key = DialogKey {
            call_id: call_id.to_owned(),
            local_tag: local_tag.to_owned(),
        };
        let Some(&id) = self.by_dialog.get(&key) else {
            debug!("ACK for no dialog dropped");
            return;
        };
        let cseq = cseq_number(ack).unwrap_or(0);
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(pending) = &session.pending_2xx else {
            return;
        };
        if pending.cseq != cseq {
            return;
        }
        let awaiting_answer = pending.awaiting_answer;
        session.pending_2xx = None;
        if session.state == SessionState::AwaitingAck {
            session.state = SessionState::Confirmed;
        }
        let first_ack = !std::mem::replace(&mut session.confirmed, true);
        let Some(sdp) = session.sdp.as_mut() else {
            return;
        };
        if !awaiting_answer {
            if let Some(negotiated) = sdp.negotiated.clone().filter(|_| first_ack) {
                self.events.push_back(UaEvent::Media {
                    session: id,
                    negotiated,
                });
            }
            return;
        }
        let answer = if message::is_sdp(ack) {
            SessionDescription::parse(&ack.body)
                .ok()
                .and_then(|answer| {
                    sdp.read_answer(&answer)
                        .map_err(|error| {
                            session
                                .span
                                .in_scope(|| warn!(%error, "ACK's SDP answer unusable"))
                        })
                        .ok()
                })
        } else {
            None
        };
        match answer {
            Some(negotiated) => {
                sdp.negotiated = Some(negotiated.clone());
                sdp.pending_body = None;
                self.events.push_back(UaEvent::Media {
                    session: id,
                    negotiated,
                });
            }
            None => {
                session
                    .span
                    .in_scope(|| warn!("ACK carried no usable SDP answer"));
                self.events
                    .push_back(UaEvent::AnswerUnusable { session: id });
            }
        }
    }

    pub(super) fn handle_cancel(
        &mut self,
        now: Instant,
        key: TxKey,
        invite: Option<TxKey>,
        request: &rsip::Request,
    ) {
        let Some(invite) = invite else {
            let response = self.response(request, 481, None, vec![]);
            return self.respond(now, &key, response);
        };
        let ok = self.response(request, 200, None, vec![]);
        self.respond(now, &key, ok);
        let Some(&(id, TxPurpose::Invite)) = self.by_tx.get(&invite) else {
            return;
        };
        let Some(terminated) = self.session_response(id, 487, vec![], None) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&id) {
            session.invite_tx = None;
        }
        self.by_tx.remove(&invite);
        self.respond(now, &invite, terminated);
        self.events.push_back(UaEvent::Cancelled { session: id });
        self.close(id);
    }
}
