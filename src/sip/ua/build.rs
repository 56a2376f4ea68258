//! Building what the user agent sends: responses (in and outside sessions), Via and Contact,
//! stateless rejections, and the 2xx resend timer every session shares.

use std::time::Instant;

use bytes::Bytes;
use rsip::headers::UntypedHeader;
use rsip::prelude::HasHeaders;
use tracing::warn;

use super::session::{Pending2xx, SessionState};
use super::{SessionId, Timer, UaEvent, UserAgent, ACCEPT, ALLOW};
use crate::sip::message;
use crate::sip::transaction::{new_branch, TxKey};
use crate::sip::transport::{Peer, TransportKind};

impl UserAgent {
    pub(super) fn respond(&mut self, now: Instant, key: &TxKey, response: rsip::Response) {
        if let Err(error) = self.transactions.respond(now, key, response) {
            tracing::debug!(%error, "response on a finished transaction dropped");
        }
        self.drain_transactions(now);
    }

    pub(super) fn response(
        &self,
        request: &rsip::Request,
        status: u16,
        to_tag: Option<&str>,
        extra: Vec<rsip::Header>,
    ) -> rsip::Response {
        let tag_owned;
        let to_tag = match to_tag {
            Some(tag) => Some(tag),
            // Final responses outside a dialog still need a To tag (§8.2.6.2).
            None if status >= 200 && message::to_tag(request).is_none() => {
                tag_owned = format!("{:x}", stateless_tag(request));
                Some(tag_owned.as_str())
            }
            None => None,
        };
        let mut response = message::response_for(request, message::status(status), to_tag);
        response
            .headers
            .push(rsip::headers::Server::new(self.product.clone()).into());
        for header in extra {
            response.headers.push(header);
        }
        response
    }

    pub(super) fn response_with_reason(
        &self,
        request: &rsip::Request,
        status: u16,
        reason: &str,
    ) -> rsip::Response {
        let mut response = self.response(request, status, None, vec![]);
        response.status_code = rsip::StatusCode::Other(status, reason.to_string());
        response
    }

    /// A response on the session's INVITE transaction with our tag, Contact and Record-Route.
    pub(super) fn session_response(
        &self,
        id: SessionId,
        status: u16,
        extra: Vec<rsip::Header>,
        sdp_body: Option<String>,
    ) -> Option<rsip::Response> {
        let session = self.sessions.get(&id)?;
        let invite = session.invite.as_ref()?;
        let mut headers = extra;
        if status < 300 {
            headers.extend(self.contact_headers(session.peer.transport));
            headers.extend(
                invite
                    .headers()
                    .iter()
                    .filter(|h| matches!(h, rsip::Header::RecordRoute(_)))
                    .cloned(),
            );
        }
        let mut response = self.response(invite, status, Some(&session.local_tag), headers);
        if let Some(body) = sdp_body {
            set_sdp(&mut response, body);
        }
        Some(response)
    }

    /// Contact (with the transport the peer uses), Allow and Accept.
    pub(super) fn contact_headers(&self, transport: TransportKind) -> Vec<rsip::Header> {
        let mut headers = vec![rsip::headers::Contact::new(format!(
            "<sip:19118@{}{}>",
            self.host_port_for(transport),
            transport.uri_param()
        ))
        .into()];
        headers.extend(options_headers());
        headers
    }

    /// Sends a 2xx to an INVITE or re-INVITE of the session and resends it (UDP) until the ACK.
    pub(super) fn send_2xx(
        &mut self,
        now: Instant,
        id: SessionId,
        key: &TxKey,
        response: rsip::Response,
        cseq: u32,
        awaiting_answer: bool,
    ) {
        let bytes = Bytes::from(response.to_string());
        let pending = Pending2xx::new(bytes, cseq, awaiting_answer, now, &self.config.timers);
        if let Some(session) = self.sessions.get_mut(&id) {
            session.state = SessionState::AwaitingAck;
            session.pending_2xx = Some(pending);
        }
        self.push_timer(now + self.config.timers.t1, Timer::Retransmit2xx(id));
        self.respond(now, key, response);
    }

    /// Timer for a session's unacknowledged 2xx: resend, or give up after 64·T1.
    pub(super) fn retransmit_2xx(&mut self, now: Instant, id: SessionId) {
        let t2 = self.config.timers.t2;
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(pending) = session.pending_2xx.as_mut() else {
            return;
        };
        if now >= pending.give_up_at {
            // §13.3.1.4: no ACK after 64·T1 — the dialog is confirmed, and is ended with BYE.
            session.pending_2xx = None;
            session.state = SessionState::Confirmed;
            session.span.in_scope(|| warn!("no ACK for our 2xx"));
            self.events.push_back(UaEvent::AckTimeout { session: id });
            return;
        }
        let bytes = pending.bytes.clone();
        let next = pending.next_resend(now, t2);
        let peer = session.peer;
        // Reliable transports deliver the 2xx once; only UDP needs the resends.
        if !peer.transport.is_reliable() {
            self.transmit(peer, bytes);
        }
        self.push_timer(next, Timer::Retransmit2xx(id));
    }

    pub(super) fn send_stateless(
        &mut self,
        to: Peer,
        request: &rsip::Request,
        (status, extra): (u16, Vec<rsip::Header>),
    ) {
        let response = self.response(request, status, None, extra);
        self.transmit(to, Bytes::from(response.to_string()));
    }

    pub(super) fn reject_unparsed(&mut self, to: Peer, raw: &[u8], status: u16, reason: &str) {
        let extra: &[(&str, &str)] = if status == 405 {
            &[("Allow", ALLOW)]
        } else {
            &[]
        };
        if let Some(bytes) = message::error_response(raw, status, reason, extra) {
            self.transmit(to, Bytes::from(bytes));
        }
    }

    /// A Via for a request we send, with a branch from the seeded generator.
    pub(super) fn via(&mut self, transport: TransportKind) -> String {
        let branch = new_branch(&mut self.rng);
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.via_name(),
            self.host_port_for(transport),
        )
    }

    /// User-Agent for requests we send: the product name, no version to look up exploits by.
    pub(super) fn user_agent(&self) -> rsip::Header {
        rsip::headers::UserAgent::new(self.product.clone()).into()
    }

    pub(super) fn host_port(&self) -> String {
        self.host_port_for(TransportKind::Udp)
    }

    /// Our address for Via and Contact over `transport`: TLS has its own listening port
    /// (`sip.tls_listen`); without one, the shared UDP/TCP port.
    pub(super) fn host_port_for(&self, transport: TransportKind) -> String {
        let port = match (transport, self.tls_port) {
            (TransportKind::Tls, Some(port)) => port,
            _ => self.config.local.port(),
        };
        match self.config.public_ip {
            std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        }
    }
}

/// Checks every request gets before a transaction exists (ACK never gets a response).
pub(super) fn stateless_rejection(request: &rsip::Request) -> Option<(u16, Vec<rsip::Header>)> {
    if request.method == rsip::Method::Ack {
        return None;
    }
    // Max-Forwards guards forwarding (RFC 3261 §16.3); this service forwards nothing, and an
    // OPTIONS with 0 asks the element itself (§11, RFC 4475 zeromf). Other methods keep 483 as
    // loop protection for calls a trunk might route back to us.
    if message::max_forwards(request) == Some(0) && request.method != rsip::Method::Options {
        return Some((483, vec![]));
    }
    let unsupported: Vec<&str> = message::require(request)
        .into_iter()
        .filter(|tag| !tag.is_empty())
        .collect();
    if !unsupported.is_empty() && request.method != rsip::Method::Cancel {
        return Some((
            420,
            vec![rsip::headers::Unsupported::new(unsupported.join(", ")).into()],
        ));
    }
    None
}

pub(super) fn set_sdp(response: &mut rsip::Response, body: String) {
    message::set_body(
        &mut response.headers,
        &mut response.body,
        "application/sdp",
        body.into_bytes(),
    );
}

/// A stable To tag for stateless/non-dialog responses: retransmissions must get the same one.
fn stateless_tag(request: &rsip::Request) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    message::call_id(request).hash(&mut hasher);
    message::top_via_branch(request).hash(&mut hasher);
    hasher.finish()
}

pub(super) fn allow_header() -> Vec<rsip::Header> {
    vec![rsip::headers::Allow::new(ALLOW).into()]
}

pub(super) fn options_headers() -> Vec<rsip::Header> {
    vec![
        rsip::headers::Allow::new(ALLOW).into(),
        rsip::headers::Accept::new(ACCEPT).into(),
    ]
}

/// While the service drains, callers and dispatchers are told to come back later.
pub(super) fn retry_after() -> Vec<rsip::Header> {
    vec![rsip::headers::RetryAfter::new("30").into()]
}

pub(super) fn cseq_number(request: &rsip::Request) -> Option<u32> {
    message::cseq(request).map(|(number, _)| number)
}
