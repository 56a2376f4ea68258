//! The SIP user agent (RFC 3261 §8, §12–15) as one sans-I/O state machine: bytes, timer firings
//! and commands in; datagrams to send and session events out. It owns the transaction layer,
//! the registrar and one [`Session`](session::Session) per INVITE dialog, answered (UAS) or
//! placed (UAC), so both roles share one 2xx retransmitter, one re-INVITE and one BYE path.
//! It knows SIP and SDP only: what a call means is the switchboard's business (`call/`).

mod build;
mod edge;
mod in_dialog;
mod media_security;
mod refer;
mod register;
mod request;
mod session;
#[cfg(test)]
mod srtp_tests;
#[cfg(test)]
mod tests;
mod uac;
mod uas;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::debug;

use super::cidr::Cidr;
use super::dialog::DialogKey;
use super::flood::{FloodGuard, Verdict};
use super::message;
use super::registrar::{AuthPolicy, Credentials, Registrar};
use super::transaction::{TimerConfig, TransactionLayer, TxEvent, TxKey, TxOutput};
use super::transport::Peer;
use crate::sdp::Negotiated;
use session::{Session, SessionState, TxPurpose};

pub use media_security::transport_is_secure;
pub use request::RequestId;
pub use session::DigestCredentials;
pub use uac::{OutgoingCall, PlaceError};

/// Methods this service understands; everything else gets 405 with this list.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, REGISTER";
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";
/// What Server and User-Agent say unless `sip.server_header` says otherwise: no version, which
/// would tell scanners which exploits to try.
pub const DEFAULT_PRODUCT: &str = "hotline";

#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The address SIP is bound to (port used in Via and Contact).
    pub local: SocketAddr,
    /// The address written into Via, Contact and SDP.
    pub public_ip: IpAddr,
    pub timers: TimerConfig,
    pub max_message_size: usize,
}

/// The user agent's handle for one INVITE session (a dialog once established).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    Request,
    Response,
}

/// Bytes for the driver to send; a request may open a connection, a response never does.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub to: Peer,
    pub kind: TransmitKind,
    pub bytes: Bytes,
}

/// How a REFER we sent ended (RFC 3515: its response, then the NOTIFYs' sipfrag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    Succeeded,
    /// The SIP status that failed it; 408 when no final word came.
    Failed(u16),
}

/// What the user agent tells whoever runs the calls.
#[derive(Debug)]
pub enum UaEvent {
    /// A new INVITE: `accept` it (with an RTP port), `reject` it, or let it ring.
    Incoming {
        session: SessionId,
        from: Peer,
        invite: Box<rsip::Request>,
    },
    /// An INVITE refused before a session existed (bad body, no Contact, not accepting).
    Rejected {
        invite: Box<rsip::Request>,
        from: Peer,
        status: u16,
    },
    /// The session's media is agreed, first or anew (ACK answer, re-INVITE).
    Media {
        session: SessionId,
        negotiated: Negotiated,
    },
    /// Our INVITE was answered; `None` when its SDP answer is unusable.
    Answered {
        session: SessionId,
        negotiated: Option<Negotiated>,
    },
    /// An INVITE we sent failed with this final status (408: no answer; 503: unreachable).
    Failed { session: SessionId, status: u16 },
    /// A key sent by SIP INFO.
    Digit { session: SessionId, digit: char },
    /// The far end sent BYE.
    HungUp { session: SessionId },
    /// The caller cancelled its INVITE before we answered.
    Cancelled { session: SessionId },
    /// No ACK came for our 2xx within 64·T1.
    AckTimeout { session: SessionId },
    /// The ACK carried no usable answer to the offer in our 2xx (§13.2.2.4).
    AnswerUnusable { session: SessionId },
    Transfer {
        session: SessionId,
        outcome: TransferOutcome,
    },
    /// The session is over on the wire (our BYE answered or timed out, or theirs answered);
    /// its id is no longer valid.
    Closed { session: SessionId },
    /// An agent's softphone registered (or its last binding went away).
    Registration { user: String, registered: bool },
    /// The far end of a call we placed (an agent's phone) asks us by REFER to transfer the
    /// other party to `target`: answer with [`UserAgent::answer_transfer_request`].
    TransferRequested { session: SessionId, target: String },
    /// The final response to a request sent with [`UserAgent::send_request`].
    RequestAnswered {
        request: RequestId,
        response: Box<rsip::Response>,
    },
    /// That request timed out or could not be delivered.
    RequestFailed { request: RequestId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retransmit2xx(SessionId),
    /// An accepted REFER's final NOTIFY is overdue.
    TransferWait(SessionId),
}

/// Counts for leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UaStats {
    pub sessions: usize,
    pub transactions: usize,
}

pub struct UserAgent {
    config: UaConfig,
    transactions: TransactionLayer,
    /// Agents' softphones register here; None when no credentials are configured.
    registrar: Option<Registrar>,
    /// While false (the service drains), new INVITEs and OPTIONS get 503.
    accepting: bool,
    /// Who may start calls and registrations; None: anyone.
    admitted: Option<Vec<Cidr>>,
    /// Request limits per source address; None: unlimited.
    flood: Option<FloodGuard>,
    /// Server header of responses and User-Agent of requests.
    product: String,
    rng: StdRng,
    /// SRTP master keys come from here only (see `media_security`).
    key_rng: StdRng,
    /// Lab/test override: every peer's signalling counts as secure.
    assume_secure_signalling: bool,
    next_session: u64,
    /// Boxed: a session is ~1.2 KB, and a map holding it inline would keep that for every
    /// empty slot too (up to half the table after it grows).
    sessions: HashMap<SessionId, Box<Session>>,
    by_dialog: HashMap<DialogKey, SessionId>,
    by_tx: HashMap<TxKey, (SessionId, TxPurpose)>,
    /// Our own out-of-dialog requests (a trunk's REGISTER, OPTIONS) awaiting a final answer.
    requests: HashMap<TxKey, (RequestId, Peer)>,
    next_request: u64,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    events: VecDeque<UaEvent>,
    transmits: VecDeque<Transmit>,
    /// The port of `sip.tls_listen`, for Via and Contact over TLS.
    tls_port: Option<u16>,
}

impl UserAgent {
    pub fn new(config: UaConfig, seed: u64) -> Self {
        Self {
            transactions: TransactionLayer::new(config.timers),
            config,
            registrar: None,
            accepting: true,
            admitted: None,
            flood: None,
            product: DEFAULT_PRODUCT.to_owned(),
            rng: StdRng::seed_from_u64(seed),
            key_rng: media_security::default_key_generator(seed),
            assume_secure_signalling: false,
            next_session: 1,
            sessions: HashMap::new(),
            by_dialog: HashMap::new(),
            by_tx: HashMap::new(),
            requests: HashMap::new(),
            next_request: 1,
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            tls_port: None,
        }
    }

    /// The port SIP over TLS listens on (Via and Contact of messages sent over TLS).
    pub fn set_tls_port(&mut self, port: Option<u16>) {
        self.tls_port = port;
    }

    /// Lets agents register with these credentials.
    pub fn enable_registrar(&mut self, credentials: Credentials) {
        self.enable_registrar_with(credentials, AuthPolicy::default());
    }

    /// Lets agents register, with failed logins and nonces handled by `policy` (`[security]`).
    pub fn enable_registrar_with(&mut self, credentials: Credentials, policy: AuthPolicy) {
        self.registrar = Some(Registrar::with_policy(credentials, policy));
    }

    /// The Server and User-Agent header value (`sip.server_header`); CR/LF are dropped.
    pub fn set_server_header(&mut self, product: &str) {
        self.product = product.chars().filter(|c| !c.is_control()).collect();
    }

    /// Stops (or resumes) taking new calls: INVITE and OPTIONS get 503 with Retry-After.
    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    pub fn stats(&self) -> UaStats {
        UaStats {
            sessions: self.sessions.len(),
            transactions: self.transactions.len(),
        }
    }

    /// The registered contact of `user` to call, and the address it registered from.
    pub fn registered_contact(&self, user: &str, now: Instant) -> Option<(String, Peer)> {
        let registrar = self.registrar.as_ref()?;
        let binding = registrar.contacts(user, now).last().copied()?;
        Some((binding.contact.clone(), binding.source))
    }

    /// The session's tracing span (carries the Call-ID).
    pub fn span(&self, session: SessionId) -> tracing::Span {
        self.sessions
            .get(&session)
            .map(|s| s.span.clone())
            .unwrap_or_else(tracing::Span::none)
    }

    /// The SIP Call-ID of a session.
    pub fn call_id(&self, session: SessionId) -> Option<&str> {
        self.sessions.get(&session).map(|s| s.call_id.as_str())
    }

    /// One SIP message from a transport: a UDP datagram or a framed TCP message.
    pub fn handle_message(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        // A banned source costs no parsing and gets no answer.
        if let Some(guard) = self.flood.as_mut() {
            if guard.is_banned(now, from.addr.ip()) {
                return;
            }
        }
        if bytes.len() > self.config.max_message_size {
            self.reject_unparsed(from, bytes, 513, "Message Too Large");
            return;
        }
        match message::parse_datagram(bytes) {
            Ok(mut parsed) => {
                if let rsip::SipMessage::Request(request) = &mut parsed {
                    message::stamp_received(request, from.addr);
                    if let Some(guard) = self.flood.as_mut() {
                        let opens = message::to_tag(request).is_none()
                            && request.method != rsip::Method::Ack;
                        let agent = message::header_value(request, "User-Agent");
                        if guard.check(now, from.addr.ip(), opens, agent) == Verdict::Silence {
                            return;
                        }
                    }
                    if !self.admits(from, request) {
                        // Stateless: a stranger's requests cost no transaction state.
                        debug!(peer = %from.addr, method = %request.method, "not a trusted source: 403");
                        self.send_stateless(from, request, (403, vec![]));
                        return;
                    }
                    if let Some(status) = build::stateless_rejection(request) {
                        self.send_stateless(from, request, status);
                        return;
                    }
                }
                self.transactions.handle_message(now, parsed, from);
                self.drain_transactions(now);
            }
            Err(error) => {
                debug!(peer = %from.addr, %error, "unparsable SIP message");
                self.reject_unparsed(from, bytes, error.status_code(), &error.reason_phrase());
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.registrar.as_ref().and_then(Registrar::next_expiry),
            self.timers.peek().map(|Reverse((at, _))| *at),
            self.transactions.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = self
            .registrar
            .as_mut()
            .map(|registrar| registrar.expire(now))
            .unwrap_or_default();
        expired.sort();
        for user in expired {
            tracing::info!(%user, "agent registration expired");
            self.events.push_back(UaEvent::Registration {
                user,
                registered: false,
            });
        }
        self.transactions.handle_timeout(now);
        self.drain_transactions(now);
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Retransmit2xx(id) => self.retransmit_2xx(now, id),
                Timer::TransferWait(id) => self.transfer_wait_expired(id),
            }
            self.drain_transactions(now);
        }
    }

    /// The transport could not reach `peer` (a TCP connect failed): calls being placed there
    /// fail now, not after Timer B, and a BYE there will not be answered (RFC 3261 §17.1.1.2).
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        // Only what we are waiting on there: our INVITEs not yet answered, and our BYEs. An
        // answered call or a caller's INVITE on the same peer is not affected.
        let mut affected: Vec<(SessionId, TxPurpose, TxKey)> = self
            .by_tx
            .iter()
            .filter(|(_, (id, purpose))| {
                self.sessions.get(id).is_some_and(|s| {
                    s.peer == peer
                        && match purpose {
                            TxPurpose::Invite => {
                                s.role == session::Role::Uac
                                    && matches!(
                                        s.state,
                                        SessionState::Early | SessionState::Cancelling
                                    )
                            }
                            TxPurpose::Bye => true,
                            TxPurpose::Refer => false,
                        }
                })
            })
            .map(|(key, (id, purpose))| (*id, *purpose, key.clone()))
            .collect();
        affected.sort_by_key(|(id, purpose, _)| (*id, *purpose as u8));
        self.requests_unreachable(peer);
        for (id, purpose, key) in affected {
            self.by_tx.remove(&key);
            match purpose {
                TxPurpose::Invite => self.invite_failed(id, 503),
                _ => self.close(id),
            }
        }
        self.drain_transactions(now);
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn drain_transactions(&mut self, now: Instant) {
        while let Some(output) = self.transactions.poll_output() {
            match output {
                TxOutput::Transmit { to, bytes } => self.transmit(to, bytes),
                TxOutput::Event(event) => self.handle_tx_event(now, event),
            }
        }
    }

    fn transmit(&mut self, to: Peer, bytes: Bytes) {
        let kind = if bytes.starts_with(b"SIP/2.0 ") {
            TransmitKind::Response
        } else {
            TransmitKind::Request
        };
        self.transmits.push_back(Transmit { to, kind, bytes });
    }

    fn handle_tx_event(&mut self, now: Instant, event: TxEvent) {
        match event {
            TxEvent::Request { key, request, from } => self.handle_request(now, key, request, from),
            TxEvent::Cancel {
                key,
                invite,
                request,
                ..
            } => self.handle_cancel(now, key, invite, &request),
            TxEvent::Ack { request, .. } => self.handle_ack(&request),
            TxEvent::Response { key, response } => self.handle_response(now, &key, &response),
            TxEvent::Timeout { key } => {
                let Some((id, purpose)) = self.by_tx.remove(&key) else {
                    return self.request_failed(&key);
                };
                match purpose {
                    TxPurpose::Invite => self.invite_failed(id, 408),
                    TxPurpose::Bye => self.close(id),
                    TxPurpose::Refer => self.transfer_failed(id, 408),
                }
            }
            // A transaction's end: client ones were settled by their final response (an
            // INVITE's is kept until now so 2xx retransmissions are still ACKed).
            TxEvent::AckTimeout { key } | TxEvent::Terminated { key } => {
                self.by_tx.remove(&key);
            }
            TxEvent::Stray2xx { .. } => {}
        }
    }

    fn handle_request(&mut self, now: Instant, key: TxKey, request: rsip::Request, from: Peer) {
        if let Some(tag) = message::to_tag(&request).map(str::to_owned) {
            return self.handle_in_dialog(now, key, request, tag, from);
        }
        match request.method {
            rsip::Method::Invite => self.handle_new_invite(now, key, request, from),
            rsip::Method::Register => self.handle_register(now, key, &request, from),
            rsip::Method::Options if !self.accepting => {
                let response = self.response(&request, 503, None, build::retry_after());
                self.respond(now, &key, response);
            }
            rsip::Method::Options => {
                let response = self.response(&request, 200, None, build::options_headers());
                self.respond(now, &key, response);
            }
            rsip::Method::Bye
            | rsip::Method::Info
            | rsip::Method::Notify
            | rsip::Method::Refer
            | rsip::Method::Update
            | rsip::Method::PRack => {
                let response = self.response(&request, 481, None, vec![]);
                self.respond(now, &key, response);
            }
            _ => {
                let response = self.response(&request, 405, None, build::allow_header());
                self.respond(now, &key, response);
            }
        }
    }

    fn handle_response(&mut self, now: Instant, key: &TxKey, response: &rsip::Response) {
        let Some(&(id, purpose)) = self.by_tx.get(key) else {
            return self.request_response(key, response);
        };
        let status = response.status_code.code();
        match purpose {
            TxPurpose::Invite => self.invite_response(now, key, id, response),
            _ if status < 200 => {}
            TxPurpose::Bye => {
                self.by_tx.remove(key);
                self.close(id);
            }
            TxPurpose::Refer => {
                self.by_tx.remove(key);
                self.refer_response(now, id, status);
            }
        }
    }

    fn new_session_id(&mut self) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        id
    }

    fn random_token(&mut self) -> String {
        format!("{:016x}", self.rng.gen::<u64>())
    }

    /// Forgets a session for good and says so.
    fn close(&mut self, id: SessionId) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        self.by_dialog.remove(&session.dialog_key());
        self.by_tx.retain(|_, (owner, _)| *owner != id);
        self.events.push_back(UaEvent::Closed { session: id });
    }

    fn push_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }
}
