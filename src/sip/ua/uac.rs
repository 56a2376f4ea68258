//! Sessions we place (UAC, RFC 3261 §13.2): the INVITE with our SDP offer, its responses
//! (ACK for every 2xx, the answer parsed), and failures reported with their status.

use std::time::Instant;

use bytes::Bytes;
use rand::Rng;
use rsip::headers::UntypedHeader;
use tracing::{info, warn};

use super::session::{DigestCredentials, Role, SdpState, Session, SessionState, TxPurpose};
use super::{SessionId, UaEvent, UserAgent};
use crate::sdp::{Codec, MediaEncryption, NegotiationError, SessionDescription};
use crate::sip::dialog::{Dialog, DialogKey};
use crate::sip::message;
use crate::sip::registration::auth;
use crate::sip::transaction::TxKey;
use crate::sip::transport::Peer;

/// A call to place: where, what the callee's phone shows, and our RTP port.
#[derive(Debug, Clone)]
pub struct OutgoingCall {
    /// The Request-URI, e.g. `sip:agent@127.0.0.1:5080`.
    pub target: String,
    pub peer: Peer,
    /// Display name in our From header (what the phone shows).
    pub display: String,
    /// The user of our From URI: the number the callee's phone shows and calls back (the
    /// caller's, for an agent); the service's own number when None or unusable in a URI.
    pub from_user: Option<String>,
    /// Extra headers (`X-...`), values kept on one line.
    pub headers: Vec<(String, String)>,
    pub rtp_port: u16,
    /// Answers one digest challenge (401/407) to the INVITE: a carrier trunk's account.
    pub credentials: Option<DigestCredentials>,
    /// The agent group's or trunk's SRTP policy; keys are offered only over secure signalling.
    pub media_encryption: MediaEncryption,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("target URI {0:?} does not parse")]
    Target(String),
    #[error("INVITE could not be sent: {0}")]
    Send(String),
    #[error("no acceptable offer to make: {0}")]
    Media(#[from] NegotiationError),
}

impl UserAgent {
    /// Sends an INVITE with our offer; `Answered` or `Failed` follows.
    pub fn invite(&mut self, now: Instant, call: OutgoingCall) -> Result<SessionId, PlaceError> {
        let target_uri = rsip::Uri::try_from(call.target.as_str())
            .map_err(|_| PlaceError::Target(call.target.clone()))?;
        let policy = self.srtp_policy(call.peer, call.media_encryption);
        let session_id = self.rng.gen_range(1..u64::from(u32::MAX));
        let mut sdp_state = SdpState::new(call.rtp_port, session_id, policy);
        let local = sdp_state.local(self.config.public_ip);
        // Before any other state: `required` to a peer without TLS is refused here.
        let offer = sdp_state.make_offer(&local, &[Codec::Pcmu, Codec::Pcma], &mut self.key_rng)?;
        let local_tag = self.random_token();
        let call_id = format!("{}@{}", self.random_token(), self.host_port());
        let host = self.host_port();
        let display = call.display.replace(['"', '\\', '\r', '\n'], "");
        let from_user = call
            .from_user
            .as_deref()
            .filter(|user| is_uri_user(user))
            .unwrap_or("19118");
        let mut headers = rsip::Headers::default();
        headers.push(rsip::headers::Via::new(self.via(call.peer.transport)).into());
        headers.push(rsip::headers::MaxForwards::new("70").into());
        headers.push(
            rsip::headers::From::new(format!(
                "\"{display}\" <sip:{from_user}@{host}>;tag={local_tag}"
            ))
            .into(),
        );
        headers.push(rsip::headers::To::new(format!("<{}>", call.target)).into());
        headers.push(rsip::headers::CallId::new(call_id.clone()).into());
        headers.push(rsip::headers::CSeq::new("1 INVITE").into());
        // Where the callee sends its in-dialog requests: over the transport it was reached by.
        let transport = call.peer.transport;
        headers.push(
            rsip::headers::Contact::new(format!(
                "<sip:19118@{}{}>",
                self.host_port_for(transport),
                transport.uri_param()
            ))
            .into(),
        );
        headers.push(self.user_agent());
        for (name, value) in call.headers {
            headers.push(rsip::Header::Other(name, one_line(&value)));
        }
        let mut invite = rsip::Request {
            method: rsip::Method::Invite,
            uri: target_uri,
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        };
        message::set_body(
            &mut invite.headers,
            &mut invite.body,
            "application/sdp",
            offer.into_bytes(),
        );
        let key = self
            .transactions
            .send_request(now, invite.clone(), call.peer)
            .map_err(|error| PlaceError::Send(error.to_string()))?;
        let span = tracing::info_span!("leg", call_id = %call_id, target = %call.target);
        span.in_scope(|| info!("calling"));
        let id = self.new_session_id();
        self.by_tx.insert(key.clone(), (id, TxPurpose::Invite));
        self.by_dialog.insert(
            DialogKey {
                call_id: call_id.clone(),
                local_tag: local_tag.clone(),
            },
            id,
        );
        self.sessions.insert(
            id,
            Box::new(Session {
                role: Role::Uac,
                span,
                state: SessionState::Early,
                call_id,
                local_tag,
                invite: Some(Box::new(invite)),
                invite_tx: Some(key),
                peer: call.peer,
                dialog: None,
                sdp: Some(sdp_state),
                pending_2xx: None,
                ack: None,
                confirmed: false,
                transfer: None,
                pending_refer: None,
                credentials: call.credentials,
            }),
        );
        self.drain_transactions(now);
        Ok(id)
    }

    pub(super) fn invite_response(
        &mut self,
        now: Instant,
        key: &TxKey,
        id: SessionId,
        response: &rsip::Response,
    ) {
        let status = response.status_code.code();
        if status < 200 {
            return;
        }
        if matches!(status, 401 | 407) && self.answer_challenge(now, key, id, response) {
            return;
        }
        if status >= 300 {
            self.by_tx.remove(key);
            return self.invite_failed(id, status);
        }
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        if let Some(ack) = &session.ack {
            // A retransmitted 2xx: our ACK was lost.
            let (peer, bytes) = (session.peer, ack.clone());
            return self.transmit(peer, bytes);
        }
        let transport = session.peer.transport;
        let via = self.via(transport);
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(invite) = session.invite.take().map(|invite| *invite) else {
            return;
        };
        let target = message::contact_uri(response).unwrap_or_else(|| invite.uri.clone());
        let dialog = match Dialog::from_uac(&invite, response, &session.local_tag, target) {
            Ok(dialog) => dialog,
            Err(error) => {
                session.span.in_scope(|| warn!(%error, "2xx unusable"));
                self.by_tx.remove(key);
                return self.invite_failed(id, 502);
            }
        };
        let invite_cseq = message::cseq(&invite).map_or(1, |(number, _)| number);
        let ack = Bytes::from(dialog.ack(via, invite_cseq).to_string());
        let cancelled = session.state == SessionState::Cancelling;
        session.ack = Some(ack.clone());
        session.dialog = Some(dialog);
        session.state = SessionState::Confirmed;
        session.confirmed = true;
        session.invite_tx = None;
        let span = session.span.clone();
        let negotiated = session.sdp.as_mut().and_then(|sdp| {
            let answer = SessionDescription::parse(&response.body)
                .map_err(|error| span.in_scope(|| warn!(%error, "2xx SDP answer does not parse")))
                .ok()?;
            let negotiated = sdp
                .read_answer(&answer)
                .map_err(|error| span.in_scope(|| warn!(%error, "2xx SDP answer unusable")))
                .ok()?;
            sdp.negotiated = Some(negotiated.clone());
            Some(negotiated)
        });
        let peer = session.peer;
        self.transmit(peer, ack);
        if cancelled {
            // Answered as our CANCEL crossed it: nobody wants this call any more.
            self.events.push_back(UaEvent::Failed {
                session: id,
                status: 487,
            });
            return self.send_bye(now, id);
        }
        self.events.push_back(UaEvent::Answered {
            session: id,
            negotiated,
        });
    }

    /// Sends the INVITE again with credentials answering a carrier's 401/407 (once per
    /// call: a second challenge means they were refused). False when it cannot be answered.
    fn answer_challenge(
        &mut self,
        now: Instant,
        key: &TxKey,
        id: SessionId,
        response: &rsip::Response,
    ) -> bool {
        let proxy = response.status_code.code() == 407;
        let header = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let cnonce = self.random_token();
        let via = self.via_for(id);
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        if session.state != SessionState::Early {
            return false;
        }
        let (Some(credentials), Some(value)) = (
            session.credentials.take(),
            message::header_value(response, header),
        ) else {
            return false;
        };
        let mut challenge = match auth::parse(value, proxy) {
            Ok(parsed) => parsed.challenge,
            Err(error) => {
                session
                    .span
                    .in_scope(|| warn!(%error, "carrier's challenge unusable"));
                return false;
            }
        };
        let Some(invite) = session.invite.as_ref() else {
            return false;
        };
        let uri = invite.uri.to_string();
        let answer = challenge.answer(
            "INVITE",
            &uri,
            &credentials.username,
            &credentials.password,
            &cnonce,
        );
        let mut invite = rsip::Request::clone(invite);
        let cseq = message::cseq(&invite).map_or(1, |(number, _)| number) + 1;
        invite.headers.retain(|h| {
            !matches!(h, rsip::Header::Via(_) | rsip::Header::CSeq(_))
                && !matches!(h, rsip::Header::Other(name, _) if name.eq_ignore_ascii_case(challenge.header))
        });
        invite.headers.push(rsip::headers::Via::new(via).into());
        invite
            .headers
            .push(rsip::headers::CSeq::new(format!("{cseq} INVITE")).into());
        invite
            .headers
            .push(rsip::Header::Other(challenge.header.to_owned(), answer));
        let peer = session.peer;
        let Ok(new_key) = self.transactions.send_request(now, invite.clone(), peer) else {
            return false;
        };
        session.span.in_scope(|| {
            info!(
                status = response.status_code.code(),
                "answering the carrier's challenge"
            )
        });
        session.invite = Some(Box::new(invite));
        session.invite_tx = Some(new_key.clone());
        self.by_tx.remove(key);
        self.by_tx.insert(new_key, (id, TxPurpose::Invite));
        true
    }

    fn via_for(&mut self, id: SessionId) -> String {
        let transport = self
            .sessions
            .get(&id)
            .map_or(crate::sip::transport::TransportKind::Udp, |s| {
                s.peer.transport
            });
        self.via(transport)
    }

    /// Our INVITE ended without a dialog.
    pub(super) fn invite_failed(&mut self, id: SessionId, status: u16) {
        if let Some(session) = self.sessions.get(&id) {
            session.span.in_scope(|| info!(status, "call not answered"));
        }
        self.events.push_back(UaEvent::Failed {
            session: id,
            status,
        });
        self.close(id);
    }
}

/// A caller number fit for a SIP URI's user part as it is (digits, a leading +, * and #, and
/// the unreserved characters of RFC 3261 §25.1); anything else is not put in our From.
fn is_uri_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+*#-_.!~".contains(c))
}

/// Header values built from caller input must stay on one line.
fn one_line(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}
