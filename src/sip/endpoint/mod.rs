//! The SIP user-agent core of the service (RFC 3261 §8, §12–15) as one sans-I/O state machine:
//! bytes and timer firings in; datagrams to send, media commands and call events out.
//! It answers INVITEs as a UAS, keeps each call's dialog, and ends calls by BYE.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsip::headers::UntypedHeader;
use rsip::prelude::HasHeaders;
use tracing::{debug, info, warn};

use super::dialog::{Dialog, DialogKey};
use super::message;
use super::registrar::{Credentials, Registrar};
use super::transaction::{new_branch, TimerConfig, TransactionLayer, TxEvent, TxKey, TxOutput};
use super::transport::{Peer, TransportKind};
use crate::acd::{Acd, AcdInput, CallId};
use crate::ivr::{CallFlow, FlowClock, FlowEvent};
use crate::media::dtmf::DtmfSource;
use crate::media::ports::PortAllocator;
use crate::media::prompts::{Prompt, PromptLibrary};
use crate::sdp::{self, Codec, Direction, LocalMedia, Negotiated, SessionDescription};

/// Methods this service understands; everything else gets 405 with this list.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, REGISTER";
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";
const USER_AGENT: &str = concat!("hotline/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The address SIP is bound to (port used in Via and Contact).
    pub local: SocketAddr,
    /// The address written into Via, Contact and SDP.
    pub public_ip: IpAddr,
    pub timers: TimerConfig,
    pub max_call_duration: Duration,
    pub answer_delay: Duration,
    pub rtp_timeout: Duration,
    pub max_message_size: usize,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Language of the prompts a call hears before it chooses one.
    pub default_language: String,
}

/// Our handle for one call, stable for its whole life (the media engine uses it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

impl std::fmt::Display for CallRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Bind `local_port` and exchange RTP with `remote` (None: wait for the first packet).
    Start {
        call: CallRef,
        local_port: u16,
        session: MediaSession,
    },
    /// A re-INVITE changed the far end (hold, new address).
    Update {
        call: CallRef,
        session: MediaSession,
    },
    /// Queue prompts after whatever plays (shared, pre-encoded frames).
    Play {
        call: CallRef,
        prompts: Vec<Arc<Prompt>>,
        /// Comes back with the end of playback, so an end that crossed a newer command is known.
        generation: u64,
    },
    /// Relay RTP between a caller and the agent leg that answered (B2BUA).
    Bridge { caller: CallRef, agent: CallRef },
    /// Cut the current prompt at the next frame and drop the queue (barge-in).
    StopPlayback { call: CallRef },
    Stop {
        call: CallRef,
        /// A caller's leg: its receive statistics go into the call's record, which follows
        /// (at once, or once our BYE is answered). Agent legs have no record of their own.
        recorded: bool,
    },
}

/// What the media engine needs to know about a negotiated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSession {
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    /// Silence longer than this ends the call; None while the caller holds us (no RTP expected).
    pub inactivity_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP arrived for the session's inactivity timeout.
    Inactive { call: CallRef },
    /// The engine could not set the session up (port taken by another program...).
    Failed { call: CallRef, reason: String },
    /// A DTMF key from the RTP stream (RFC 4733 or in-band tones).
    Digit {
        call: CallRef,
        digit: char,
        source: DtmfSource,
    },
    /// The last queued prompt has been sent in full.
    PlaybackFinished { call: CallRef, generation: u64 },
}

/// Why a call ended; becomes the call record's outcome in later issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    CallerHungUp,
    CallerCancelled,
    MaxDuration,
    RtpTimeout,
    AckTimeout,
    MediaFailed,
    /// The call flow finished (goodbye played) and hung up.
    FlowEnded,
    /// The caller was transferred by REFER and the transfer succeeded.
    Transferred,
    /// Bridged to an agent, who hung up first.
    AgentHungUp,
    Rejected(u16),
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerHungUp => "caller_hung_up",
            EndReason::CallerCancelled => "caller_cancelled",
            EndReason::MaxDuration => "max_duration",
            EndReason::RtpTimeout => "rtp_timeout",
            EndReason::AckTimeout => "ack_timeout",
            EndReason::MediaFailed => "media_failed",
            EndReason::FlowEnded => "flow_ended",
            EndReason::Transferred => "transferred",
            EndReason::AgentHungUp => "agent_hung_up",
            EndReason::Rejected(_) => "rejected",
        }
    }
}

#[derive(Debug)]
pub enum Output {
    Transmit {
        to: Peer,
        bytes: Bytes,
    },
    Media(MediaCommand),
    CallEnded {
        call: CallRef,
        call_id: String,
        reason: EndReason,
    },
    /// A call arrived: the record's first row, so live calls are visible.
    CallStarted(crate::cdr::CallStart),
    /// A call ended (or was refused): its complete record and audit steps. `call` names the
    /// answered call, whose media driver adds the caller's RTP receive statistics (taken when
    /// its media stopped, `MediaCommand::Stop { recorded: true }`); refused calls have none.
    CallRecorded {
        call: Option<CallRef>,
        record: Box<crate::cdr::CallRecord>,
        events: Vec<crate::cdr::CallEvent>,
    },
}

/// Counts for leak checks and the debug endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointStats {
    pub calls: usize,
    pub transactions: usize,
    pub rtp_ports_in_use: usize,
    pub agent_legs: usize,
    /// Agents free to take a call.
    pub agents_idle: usize,
    /// Agents ringing, on a call or in wrap-up.
    pub agents_busy: usize,
    pub agents_unregistered: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// 180 sent, waiting for the answer delay.
    Ringing,
    /// 2xx sent, retransmitting until the ACK.
    AwaitingAck,
    Confirmed,
    /// We sent BYE and wait for its response.
    Terminating,
}

/// A 2xx to (re-)INVITE that the UAS core retransmits until ACK (§13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    bytes: Bytes,
    cseq: u32,
    interval: Duration,
    give_up_at: Instant,
    /// Offer-less INVITE: our offer went in the 2xx and the answer comes in the ACK.
    awaiting_answer: bool,
}

impl Pending2xx {
    /// A 2xx just sent: resent after T1, given up after 64·T1 (RFC 3261 §13.3.1.4).
    fn new(bytes: Bytes, cseq: u32, now: Instant, timers: &TimerConfig) -> Self {
        Pending2xx {
            bytes,
            cseq,
            interval: timers.t1,
            give_up_at: now + timers.t1 * 64,
            awaiting_answer: false,
        }
    }

    /// After a resend: when the next one is due (the interval doubles up to T2).
    fn next_resend(&mut self, now: Instant, t2: Duration) -> Instant {
        self.interval = (self.interval * 2).min(t2);
        (now + self.interval).min(self.give_up_at)
    }
}

#[derive(Debug)]
struct Call {
    span: tracing::Span,
    state: CallState,
    dialog: Dialog,
    invite: rsip::Request,
    invite_tx: Option<TxKey>,
    rtp_port: u16,
    negotiated: Option<Negotiated>,
    /// Pending offer/answer for an offer-less INVITE.
    our_offer: Option<String>,
    /// SDP o= session id and version: the id stays, the version grows with each new answer.
    sdp_session_id: u64,
    sdp_version: u64,
    pending_2xx: Option<Pending2xx>,
    media_started: bool,
    end_reason: Option<EndReason>,
    flow: Box<dyn CallFlow>,
    /// Generation of each running flow timer: a restarted or cancelled timer's old firing is stale.
    flow_timers: HashMap<u32, u64>,
    /// The REFER in progress, if the flow asked for a transfer.
    transfer: Option<transfer::Transfer>,
    /// How the caller's keys arrived (first key decides), for the call record.
    dtmf_source: Option<DtmfSource>,
    /// Bumped by every Play and StopPlayback sent to the media engine.
    play_generation: u64,
    /// Agent legs ringing (several with ring-all) or answered for this caller (bridge mode).
    agent_legs: Vec<CallRef>,
    /// RTP is relayed to the agent: keys go to the agent, not to the flow.
    bridged: bool,
    /// The queue the flow put the caller in, with what agents' phones show.
    queue: Option<crate::ivr::QueueCall>,
    facts: record::CallFacts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Answer(CallRef),
    Retransmit2xx(CallRef),
    /// Our 2xx to an agent leg's re-INVITE awaits the agent's ACK.
    LegRetransmit2xx(CallRef),
    MaxDuration(CallRef),
    /// A flow timer: call, timer id, generation.
    Flow(CallRef, u32, u64),
    /// The REFER was accepted but no final NOTIFY came.
    TransferWait(CallRef),
}

/// What a new call's flow is chosen from.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub call_id: String,
    pub from: String,
    pub to: String,
}

/// Makes the flow for each new call; replaced on routing reload (calls keep the flow they got).
pub type FlowFactory = Box<dyn Fn(&IncomingCall) -> Box<dyn CallFlow> + Send>;

pub struct Endpoint {
    config: EndpointConfig,
    /// Agent groups: who rings for whom (None until a routing with groups is set).
    acd: Option<Acd>,
    /// Agents' softphones register here; None when no credentials file is configured.
    registrar: Option<Registrar>,
    prompts: Arc<PromptLibrary>,
    flows: FlowFactory,
    /// Wall time at an instant, set by the driver: opening hours need the date, timers do not.
    wall_anchor: (Instant, SystemTime),
    next_timer_generation: u64,
    by_refer_tx: HashMap<TxKey, CallRef>,
    legs: HashMap<CallRef, agent::AgentLeg>,
    by_leg_invite_tx: HashMap<TxKey, CallRef>,
    by_leg_dialog: HashMap<DialogKey, CallRef>,
    transactions: TransactionLayer,
    rng: StdRng,
    ports: PortAllocator,
    next_call: u64,
    calls: HashMap<CallRef, Call>,
    by_dialog: HashMap<DialogKey, CallRef>,
    by_invite_tx: HashMap<TxKey, CallRef>,
    by_bye_tx: HashMap<TxKey, CallRef>,
    timers: BinaryHeap<Reverse<(Instant, TimerKind)>>,
    outputs: VecDeque<Output>,
}

impl Endpoint {
    pub fn new(
        config: EndpointConfig,
        prompts: Arc<PromptLibrary>,
        flows: FlowFactory,
        seed: u64,
    ) -> Self {
        Self {
            acd: None,
            registrar: None,
            prompts,
            flows,
            wall_anchor: (Instant::now(), SystemTime::UNIX_EPOCH),
            next_timer_generation: 0,
            by_refer_tx: HashMap::new(),
            legs: HashMap::new(),
            by_leg_invite_tx: HashMap::new(),
            by_leg_dialog: HashMap::new(),
            transactions: TransactionLayer::new(config.timers),
            ports: PortAllocator::new(config.rtp_port_min, config.rtp_port_max),
            rng: StdRng::seed_from_u64(seed),
            config,
            next_call: 1,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            by_invite_tx: HashMap::new(),
            by_bye_tx: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// Lets agents register with these credentials.
    pub fn enable_registrar(&mut self, credentials: Credentials) {
        self.registrar = Some(Registrar::new(credentials));
    }

    /// New calls get flows from this factory; calls in progress keep theirs.
    pub fn set_flow_factory(&mut self, flows: FlowFactory) {
        self.flows = flows;
    }

    /// Tells the endpoint the wall-clock time at `now` (the driver calls this as time goes on).
    pub fn set_wall_clock(&mut self, now: Instant, wall: SystemTime) {
        self.wall_anchor = (now, wall);
    }

    fn clock(&self, now: Instant) -> FlowClock {
        let (anchor, wall) = self.wall_anchor;
        let wall = match now.checked_duration_since(anchor) {
            Some(ahead) => wall + ahead,
            None => wall - anchor.duration_since(now),
        };
        FlowClock { now, wall }
    }

    pub fn stats(&self) -> EndpointStats {
        let mut stats = EndpointStats {
            calls: self.calls.len(),
            transactions: self.transactions.len(),
            rtp_ports_in_use: self.ports.in_use(),
            agent_legs: self.legs.len(),
            ..EndpointStats::default()
        };
        for agent in self.acd.as_ref().map(Acd::agent_states).unwrap_or_default() {
            match agent.state {
                crate::acd::AgentState::Idle => stats.agents_idle += 1,
                crate::acd::AgentState::Unregistered => stats.agents_unregistered += 1,
                _ => stats.agents_busy += 1,
            }
        }
        stats
    }

    /// One SIP message from a transport: a UDP datagram or a framed TCP message.
    pub fn handle_message(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        if bytes.len() > self.config.max_message_size {
            self.reject_unparsed(from, bytes, 513, "Message Too Large");
            return;
        }
        match message::parse_datagram(bytes) {
            Ok(mut parsed) => {
                if let rsip::SipMessage::Request(request) = &mut parsed {
                    message::stamp_received(request, from.addr);
                    if let Some(status) = self.stateless_rejection(request) {
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

    pub fn handle_media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::Inactive { call } => self.hang_up(now, call, EndReason::RtpTimeout),
            MediaEvent::Failed { call, reason } => {
                warn!(%call, %reason, "media failed");
                self.hang_up(now, call, EndReason::MediaFailed);
            }
            MediaEvent::Digit {
                call,
                digit,
                source,
            } => self.digit(now, call, digit, source),
            MediaEvent::PlaybackFinished { call, generation } => {
                // An end that crossed a newer Play or a StopPlayback is not this flow's news.
                let current = self.calls.get(&call).map(|c| c.play_generation);
                if current == Some(generation) {
                    self.flow_event(now, call, FlowEvent::PlaybackFinished);
                }
            }
        }
        self.drain_transactions(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = [
            self.registrar.as_ref().and_then(Registrar::next_expiry),
            self.acd.as_ref().and_then(Acd::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        let ours = match (self.timers.peek().map(|Reverse((at, _))| *at), expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (ours, self.transactions.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired = self
            .registrar
            .as_mut()
            .map(|registrar| registrar.expire(now))
            .unwrap_or_default();
        for user in expired {
            info!(%user, "agent registration expired");
            let input = AcdInput::Registered {
                agent: crate::acd::AgentId::user(&user),
                registered: false,
            };
            self.report_to_acd(now, input);
        }
        if let Some(acd) = self.acd.as_mut() {
            acd.handle_timeout(now);
        }
        self.drain_acd(now);
        self.transactions.handle_timeout(now);
        self.drain_transactions(now);
        while let Some(Reverse((at, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(now, kind);
            self.drain_transactions(now);
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ---- requests ------------------------------------------------------------------------

    /// Checks every request gets before a transaction exists (ACK never gets a response).
    fn stateless_rejection(&self, request: &rsip::Request) -> Option<(u16, Vec<rsip::Header>)> {
        if request.method == rsip::Method::Ack {
            return None;
        }
        if message::max_forwards(request) == Some(0) {
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

    fn drain_transactions(&mut self, now: Instant) {
        while let Some(output) = self.transactions.poll_output() {
            match output {
                TxOutput::Transmit { to, bytes } => {
                    self.outputs.push_back(Output::Transmit { to, bytes })
                }
                TxOutput::Event(event) => self.handle_tx_event(now, event),
            }
        }
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
            TxEvent::Ack { request, .. } => self.handle_ack(now, &request),
            TxEvent::Response { key, response } => {
                if !self.leg_response(now, &key, &response) {
                    self.handle_response(now, &key, &response);
                }
            }
            TxEvent::Timeout { key } => {
                if let Some(call) = self.by_bye_tx.remove(&key) {
                    self.finish(now, call);
                } else if !self.leg_timeout(now, &key) {
                    self.refer_timeout(now, &key);
                }
            }
            TxEvent::AckTimeout { key } | TxEvent::Terminated { key } => {
                self.by_invite_tx.remove(&key);
                self.by_bye_tx.remove(&key);
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
            rsip::Method::Options => {
                let response = self.response(&request, 200, None, options_headers());
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
                let response = self.response(&request, 405, None, allow_header());
                self.respond(now, &key, response);
            }
        }
    }

    fn handle_new_invite(&mut self, now: Instant, key: TxKey, invite: rsip::Request, from: Peer) {
        let has_body = !invite.body.is_empty();
        if has_body && !message::is_sdp(&invite) {
            let accept = vec![rsip::headers::Accept::new("application/sdp").into()];
            let response = self.response(&invite, 415, None, accept);
            self.record_rejected(now, &invite, from, 415);
            return self.respond(now, &key, response);
        }
        let offer = if has_body {
            match SessionDescription::parse(&invite.body) {
                Ok(offer) => Some(offer),
                Err(error) => {
                    debug!(%error, "malformed SDP offer");
                    let response = self.response_with_reason(&invite, 400, "Malformed SDP");
                    self.record_rejected(now, &invite, from, 400);
                    return self.respond(now, &key, response);
                }
            }
        } else {
            None
        };
        let Some(remote_target) = message::contact_uri(&invite) else {
            let response = self.response_with_reason(&invite, 400, "Missing Contact");
            self.record_rejected(now, &invite, from, 400);
            return self.respond(now, &key, response);
        };
        let Some(rtp_port) = self.ports.allocate() else {
            warn!("no free RTP port: rejecting call");
            let retry = vec![rsip::headers::RetryAfter::new("5").into()];
            let response = self.response(&invite, 503, None, retry);
            self.record_rejected(now, &invite, from, 503);
            return self.respond(now, &key, response);
        };
        let sdp_session_id = self.rng.gen_range(1..u64::from(u32::MAX));
        let local = self.local_media(rtp_port, sdp_session_id, 1);
        let (negotiated, answer) = match &offer {
            Some(offer) => match sdp::answer(offer, &local) {
                Ok((negotiated, answer)) => (Some(negotiated), answer),
                Err(error) => {
                    self.ports.release(rtp_port);
                    let warning = vec![rsip::headers::Warning::new(error.warning_header()).into()];
                    let response = self.response(&invite, 488, None, warning);
                    self.record_rejected(now, &invite, from, 488);
                    return self.respond(now, &key, response);
                }
            },
            None => (None, sdp::offer(&local, &[Codec::Pcmu, Codec::Pcma])),
        };
        let local_tag = self.random_token();
        let first_cseq = self.rng.gen_range(1..10_000);
        let dialog = match Dialog::from_invite(&invite, &local_tag, remote_target, from, first_cseq)
        {
            Ok(dialog) => dialog,
            Err(error) => {
                self.ports.release(rtp_port);
                let response = self.response_with_reason(&invite, 400, &error.to_string());
                self.record_rejected(now, &invite, from, 400);
                return self.respond(now, &key, response);
            }
        };
        let facts = record::CallFacts::new(&invite, from, self.wall(now));
        self.record_start(&dialog.key.call_id.clone(), &facts);
        let id = CallRef(self.next_call);
        self.next_call += 1;
        let flow = (self.flows)(&IncomingCall {
            call_id: dialog.key.call_id.clone(),
            from: message::header_value(&invite, "From")
                .unwrap_or_default()
                .to_owned(),
            to: message::header_value(&invite, "To")
                .unwrap_or_default()
                .to_owned(),
        });
        let span = tracing::info_span!(
            "call",
            call_id = %dialog.key.call_id,
            remote = %from.addr,
            outcome = tracing::field::Empty
        );
        span.in_scope(|| {
            info!(
                %id,
                transport = from.transport.via_name(),
                codec = ?negotiated.as_ref().map(|n| n.codec),
                "incoming call"
            )
        });
        self.by_dialog.insert(dialog.key.clone(), id);
        self.by_invite_tx.insert(key.clone(), id);
        let offerless = negotiated.is_none();
        self.calls.insert(
            id,
            Call {
                span,
                state: CallState::Ringing,
                dialog,
                invite,
                invite_tx: Some(key.clone()),
                rtp_port,
                negotiated,
                our_offer: offerless.then(|| answer.clone()),
                sdp_session_id,
                sdp_version: 1,
                pending_2xx: None,
                media_started: false,
                end_reason: None,
                flow,
                flow_timers: HashMap::new(),
                transfer: None,
                dtmf_source: None,
                play_generation: 0,
                agent_legs: Vec::new(),
                bridged: false,
                queue: None,
                facts: facts.clone(),
            },
        );
        if self.config.answer_delay.is_zero() {
            self.answer(now, id, answer);
        } else {
            let ringing = self.call_response(id, 180, vec![], None);
            if let Some(ringing) = ringing {
                self.respond(now, &key, ringing);
            }
            self.timers.push(Reverse((
                now + self.config.answer_delay,
                TimerKind::Answer(id),
            )));
            if let Some(call) = self.calls.get_mut(&id) {
                call.our_offer = Some(answer);
            }
        }
    }

    /// Sends the 2xx with our SDP and starts retransmitting it until the ACK.
    fn answer(&mut self, now: Instant, id: CallRef, sdp_body: String) {
        let Some(response) = self.call_response(id, 200, vec![], Some(sdp_body)) else {
            return;
        };
        let wall = self.wall(now);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.facts.ivr_answered = Some(wall);
        let Some(key) = call.invite_tx.take() else {
            return;
        };
        let cseq = cseq_number(&call.invite).unwrap_or(0);
        let awaiting_answer = call.negotiated.is_none();
        call.state = CallState::AwaitingAck;
        let bytes = Bytes::from(response.to_string());
        call.pending_2xx = Some(Pending2xx {
            awaiting_answer,
            ..Pending2xx::new(bytes, cseq, now, &self.config.timers)
        });
        self.timers.push(Reverse((
            now + self.config.timers.t1,
            TimerKind::Retransmit2xx(id),
        )));
        self.timers.push(Reverse((
            now + self.config.max_call_duration,
            TimerKind::MaxDuration(id),
        )));
        self.by_invite_tx.remove(&key);
        self.respond(now, &key, response);
        if !awaiting_answer {
            self.start_media(now, id);
        }
    }

    fn handle_in_dialog(
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
            if let Some(&leg) = self.by_leg_dialog.get(&dialog_key) {
                return self.leg_request(now, key, leg, &request);
            }
            let response = self.response(&request, 481, None, vec![]);
            return self.respond(now, &key, response);
        };
        let cseq = cseq_number(&request).unwrap_or(0);
        let in_order = self
            .calls
            .get_mut(&id)
            .map(|call| call.dialog.accept_remote_cseq(cseq, &request.method))
            .unwrap_or(false);
        if !in_order {
            let response = self.response_with_reason(&request, 500, "CSeq Out of Order");
            return self.respond(now, &key, response);
        }
        let span = self
            .calls
            .get(&id)
            .map(|call| call.span.clone())
            .unwrap_or_else(tracing::Span::none);
        let _entered = span.enter();
        debug!(method = %request.method, peer = %from.addr, "in-dialog request");
        match request.method {
            rsip::Method::Bye => {
                let response = self.response(&request, 200, None, vec![]);
                self.respond(now, &key, response);
                if let Some(call) = self.calls.get_mut(&id) {
                    if call.state != CallState::Terminating {
                        call.end_reason = Some(EndReason::CallerHungUp);
                    }
                }
                self.finish(now, id);
            }
            rsip::Method::Invite => self.handle_reinvite(now, key, id, request),
            rsip::Method::Info => self.handle_info(now, key, id, &request),
            rsip::Method::Notify => {
                let response = self.response(&request, 200, None, vec![]);
                self.respond(now, &key, response);
                self.transfer_progress(now, id, &request);
            }
            rsip::Method::Options => {
                let response = self.response(&request, 200, None, vec![]);
                self.respond(now, &key, response);
            }
            // A caller asking the city hotline to transfer itself is not something we honour.
            rsip::Method::Refer => {
                let response = self.response_with_reason(&request, 603, "Transfer Not Allowed");
                self.respond(now, &key, response);
            }
            rsip::Method::Update | rsip::Method::PRack => {
                let response = self.response(&request, 405, None, allow_header());
                self.respond(now, &key, response);
            }
            _ => {
                let response = self.response(&request, 405, None, allow_header());
                self.respond(now, &key, response);
            }
        }
    }

    fn handle_reinvite(&mut self, now: Instant, key: TxKey, id: CallRef, request: rsip::Request) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.state != CallState::Confirmed {
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
        let version = call.sdp_version + 1;
        let local = self.local_media(call.rtp_port, call.sdp_session_id, version);
        let (negotiated, body) = if request.body.is_empty() {
            let codecs = call
                .negotiated
                .as_ref()
                .map(|n| vec![n.codec])
                .unwrap_or(vec![Codec::Pcmu, Codec::Pcma]);
            (None, sdp::offer(&local, &codecs))
        } else {
            let offer = match SessionDescription::parse(&request.body) {
                Ok(offer) => offer,
                Err(_) => {
                    let response = self.response_with_reason(&request, 400, "Malformed SDP");
                    return self.respond(now, &key, response);
                }
            };
            match sdp::answer(&offer, &local) {
                Ok((negotiated, answer)) => (Some(negotiated), answer),
                Err(error) => {
                    // §14.2: a rejected re-offer leaves the session as it was.
                    let warning = vec![rsip::headers::Warning::new(error.warning_header()).into()];
                    let response = self.response(&request, 488, None, warning);
                    return self.respond(now, &key, response);
                }
            }
        };
        if let Some(target) = message::contact_uri(&request) {
            if let Some(call) = self.calls.get_mut(&id) {
                call.dialog.set_remote_target(target);
            }
        }
        let cseq = cseq_number(&request).unwrap_or(0);
        let local_tag = self
            .calls
            .get(&id)
            .map(|c| c.dialog.key.local_tag.clone())
            .unwrap_or_default();
        let mut response = self.response(&request, 200, Some(&local_tag), self.contact_headers(id));
        message::set_body(
            &mut response.headers,
            &mut response.body,
            "application/sdp",
            body.clone().into_bytes(),
        );
        let bytes = Bytes::from(response.to_string());
        let awaiting_answer = negotiated.is_none();
        if let Some(call) = self.calls.get_mut(&id) {
            call.sdp_version = version;
            call.state = CallState::AwaitingAck;
            if let Some(negotiated) = negotiated {
                call.negotiated = Some(negotiated);
            } else {
                call.our_offer = Some(body);
            }
            call.pending_2xx = Some(Pending2xx {
                awaiting_answer,
                ..Pending2xx::new(bytes, cseq, now, &self.config.timers)
            });
        }
        self.timers.push(Reverse((
            now + self.config.timers.t1,
            TimerKind::Retransmit2xx(id),
        )));
        self.respond(now, &key, response);
        if !awaiting_answer {
            self.update_media(now, id);
        }
    }

    fn handle_ack(&mut self, now: Instant, ack: &rsip::Request) {
        let (Some(call_id), Some(local_tag)) = (message::call_id(ack), message::to_tag(ack)) else {
            return;
        };
        let (call_id, local_tag) = (call_id.to_owned(), local_tag.to_owned());
        let key = DialogKey { call_id, local_tag };
        let cseq = cseq_number(ack).unwrap_or(0);
        let Some(&id) = self.by_dialog.get(&key) else {
            match self.by_leg_dialog.get(&key) {
                Some(&leg) => self.leg_ack(leg, cseq),
                None => debug!("ACK for no dialog dropped"),
            }
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pending) = &call.pending_2xx else {
            return;
        };
        if pending.cseq != cseq {
            return;
        }
        let awaiting_answer = pending.awaiting_answer;
        call.pending_2xx = None;
        if call.state == CallState::AwaitingAck {
            call.state = CallState::Confirmed;
        }
        if !awaiting_answer {
            return;
        }
        let offered = match call.negotiated.as_ref() {
            Some(n) => vec![n.codec],
            None => vec![Codec::Pcmu, Codec::Pcma],
        };
        let answer = if message::is_sdp(ack) {
            SessionDescription::parse(&ack.body)
                .ok()
                .and_then(|answer| sdp::parse_answer(&offered, &answer).ok())
        } else {
            None
        };
        match answer {
            Some(negotiated) => {
                let first = call.negotiated.is_none();
                call.negotiated = Some(negotiated);
                call.our_offer = None;
                if first && !call.media_started {
                    self.start_media(now, id);
                } else {
                    self.update_media(now, id);
                }
            }
            None => {
                // RFC 3261 §13.2.2.4: an unusable answer in the ACK is ended with BYE.
                call.span
                    .in_scope(|| warn!("ACK carried no usable SDP answer"));
                self.hang_up(now, id, EndReason::Rejected(488));
            }
        }
    }

    fn handle_cancel(
        &mut self,
        now: Instant,
        key: TxKey,
        invite: Option<TxKey>,
        request: &rsip::Request,
    ) {
        let call = invite
            .as_ref()
            .and_then(|invite| self.by_invite_tx.get(invite).copied());
        let Some(invite) = invite else {
            let response = self.response(request, 481, None, vec![]);
            return self.respond(now, &key, response);
        };
        let ok = self.response(request, 200, None, vec![]);
        self.respond(now, &key, ok);
        let Some(id) = call else { return };
        let Some(terminated) = self.call_response(id, 487, vec![], None) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.invite_tx = None;
            call.end_reason = Some(EndReason::CallerCancelled);
        }
        self.by_invite_tx.remove(&invite);
        self.respond(now, &invite, terminated);
        self.finish(now, id);
    }

    // ---- responses to our requests -------------------------------------------------------

    fn handle_response(&mut self, now: Instant, key: &TxKey, response: &rsip::Response) {
        let status = response.status_code.code();
        if status < 200 {
            return;
        }
        if let Some(id) = self.by_bye_tx.remove(key) {
            self.finish(now, id);
        } else if self.by_refer_tx.contains_key(key) {
            self.refer_response(now, key, status);
        }
    }

    // ---- timers ---------------------------------------------------------------------------

    fn fire(&mut self, now: Instant, kind: TimerKind) {
        match kind {
            TimerKind::Answer(id) => {
                let Some(call) = self.calls.get(&id) else {
                    return;
                };
                if call.state != CallState::Ringing {
                    return;
                }
                let body = call.our_offer.clone().unwrap_or_default();
                if let Some(call) = self.calls.get_mut(&id) {
                    if call.negotiated.is_some() {
                        call.our_offer = None;
                    }
                }
                self.answer(now, id, body);
            }
            TimerKind::Retransmit2xx(id) => {
                let t2 = self.config.timers.t2;
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                let Some(pending) = call.pending_2xx.as_mut() else {
                    return;
                };
                if now >= pending.give_up_at {
                    // §13.3.1.4: no ACK after 64·T1 — confirm the dialog and end it with BYE.
                    call.pending_2xx = None;
                    call.state = CallState::Confirmed;
                    call.span
                        .in_scope(|| warn!("no ACK for our 2xx: hanging up"));
                    self.hang_up(now, id, EndReason::AckTimeout);
                    return;
                }
                let bytes = pending.bytes.clone();
                // Reliable transports deliver the 2xx once; only UDP needs the resends.
                if !call.dialog.flow.transport.is_reliable() {
                    self.outputs.push_back(Output::Transmit {
                        to: call.dialog.flow,
                        bytes,
                    });
                }
                let next = pending.next_resend(now, t2);
                self.timers
                    .push(Reverse((next, TimerKind::Retransmit2xx(id))));
            }
            TimerKind::Flow(id, timer, generation) => self.flow_timer(now, id, timer, generation),
            TimerKind::TransferWait(id) => self.transfer_wait_expired(now, id),
            TimerKind::LegRetransmit2xx(id) => self.leg_retransmit_2xx(now, id),
            TimerKind::MaxDuration(id) => {
                if self.calls.contains_key(&id) {
                    self.hang_up(now, id, EndReason::MaxDuration);
                }
            }
        }
    }

    // ---- call teardown --------------------------------------------------------------------

    /// Ends an answered call from our side with BYE (§15.1.1); the call lingers until the BYE
    /// transaction completes so its response is matched.
    fn hang_up(&mut self, now: Instant, id: CallRef, reason: EndReason) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let via = self.via(call.dialog.flow.transport);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state == CallState::Terminating {
            return;
        }
        call.end_reason.get_or_insert(reason);
        call.state = CallState::Terminating;
        call.pending_2xx = None;
        let agent = rsip::headers::UserAgent::new(USER_AGENT).into();
        let bye = call.dialog.request(rsip::Method::Bye, via, vec![agent]);
        let flow = call.dialog.flow;
        call.span
            .in_scope(|| info!(reason = reason.as_str(), "hanging up"));
        // The agent and the queue need not wait for the caller to answer our BYE (a dead
        // caller never does, and Timer F is 32 s).
        self.release_media_and_agents(now, id);
        match self.transactions.send_request(now, bye, flow) {
            Ok(key) => {
                self.by_bye_tx.insert(key, id);
            }
            Err(error) => {
                debug!(%error, "BYE could not be sent");
                self.finish(now, id);
            }
        }
    }

    /// Stops the caller's media, hangs up its agent legs and takes it out of the ACD. After our
    /// own hang-up `finish` repeats it, which changes nothing (the ACD ignores the second
    /// report).
    fn release_media_and_agents(&mut self, now: Instant, id: CallRef) {
        self.stop_media(id);
        let legs = self
            .calls
            .get(&id)
            .map(|call| call.agent_legs.clone())
            .unwrap_or_default();
        for leg in legs {
            self.hang_up_leg(now, leg);
        }
        self.report_to_acd(now, AcdInput::CallerLeft { call: CallId(id.0) });
    }

    /// Forgets the call: media stopped, port returned, outcome logged.
    fn finish(&mut self, now: Instant, id: CallRef) {
        self.release_media_and_agents(now, id);
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        self.by_dialog.remove(&call.dialog.key);
        if let Some(key) = &call.invite_tx {
            self.by_invite_tx.remove(key);
        }
        self.by_bye_tx.retain(|_, owner| *owner != id);
        self.by_refer_tx.retain(|_, owner| *owner != id);
        self.ports.release(call.rtp_port);
        let reason = call.end_reason.unwrap_or(EndReason::CallerHungUp);
        self.record_end(now, id, &call, reason);
        call.span.record("outcome", reason.as_str());
        let dtmf = call.dtmf_source.map(DtmfSource::as_str).unwrap_or("none");
        call.span
            .in_scope(|| info!(outcome = reason.as_str(), dtmf, "call ended"));
        self.outputs.push_back(Output::CallEnded {
            call: id,
            call_id: call.dialog.key.call_id.clone(),
            reason,
        });
    }

    // ---- media ----------------------------------------------------------------------------

    fn media_session(&self, call: &Call) -> Option<MediaSession> {
        let negotiated = call.negotiated.as_ref()?;
        // Any hold (sendonly, inactive, c=0.0.0.0) may legitimately stop the caller's RTP: only a
        // full two-way stream is watched for the dead-caller timeout.
        let watched =
            negotiated.remote_direction == Direction::SendRecv && negotiated.remote_rtp.is_some();
        Some(MediaSession {
            remote: negotiated.remote_rtp,
            codec: negotiated.codec,
            payload_type: negotiated.payload_type,
            telephone_event: negotiated.telephone_event,
            inactivity_timeout: watched.then_some(self.config.rtp_timeout),
        })
    }

    fn start_media(&mut self, now: Instant, id: CallRef) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(session) = self.media_session(call) else {
            return;
        };
        let local_port = call.rtp_port;
        if let Some(call) = self.calls.get_mut(&id) {
            call.media_started = true;
        }
        self.outputs.push_back(Output::Media(MediaCommand::Start {
            call: id,
            local_port,
            session,
        }));
        self.flow_event(now, id, FlowEvent::Started);
    }

    fn update_media(&mut self, now: Instant, id: CallRef) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if !call.media_started {
            return self.start_media(now, id);
        }
        let Some(session) = self.media_session(call) else {
            return;
        };
        self.outputs
            .push_back(Output::Media(MediaCommand::Update { call: id, session }));
    }

    fn stop_media(&mut self, id: CallRef) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if std::mem::take(&mut call.media_started) {
            self.outputs.push_back(Output::Media(MediaCommand::Stop {
                call: id,
                recorded: true,
            }));
        }
    }

    // ---- building messages ----------------------------------------------------------------

    fn respond(&mut self, now: Instant, key: &TxKey, response: rsip::Response) {
        if let Err(error) = self.transactions.respond(now, key, response) {
            debug!(%error, "response on a finished transaction dropped");
        }
        self.drain_transactions(now);
    }

    fn response(
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
                tag_owned = format!("{:x}", self.local_tag_for_stateless(request));
                Some(tag_owned.as_str())
            }
            None => None,
        };
        let mut response = message::response_for(request, message::status(status), to_tag);
        response.headers.push(server_header());
        for header in extra {
            response.headers.push(header);
        }
        response
    }

    fn response_with_reason(
        &self,
        request: &rsip::Request,
        status: u16,
        reason: &str,
    ) -> rsip::Response {
        let mut response = self.response(request, status, None, vec![]);
        response.status_code = rsip::StatusCode::Other(status, reason.to_string());
        response
    }

    /// A response on the call's INVITE transaction with our tag, Contact and Record-Route.
    fn call_response(
        &self,
        id: CallRef,
        status: u16,
        extra: Vec<rsip::Header>,
        sdp_body: Option<String>,
    ) -> Option<rsip::Response> {
        let call = self.calls.get(&id)?;
        let mut headers = extra;
        if status < 300 {
            headers.extend(self.contact_headers(id));
            headers.extend(
                call.invite
                    .headers()
                    .iter()
                    .filter(|h| matches!(h, rsip::Header::RecordRoute(_)))
                    .cloned(),
            );
        }
        let mut response = self.response(
            &call.invite,
            status,
            Some(&call.dialog.key.local_tag),
            headers,
        );
        if let Some(body) = sdp_body {
            message::set_body(
                &mut response.headers,
                &mut response.body,
                "application/sdp",
                body.into_bytes(),
            );
        }
        Some(response)
    }

    fn contact_headers(&self, id: CallRef) -> Vec<rsip::Header> {
        let transport = self
            .calls
            .get(&id)
            .map(|c| c.dialog.flow.transport)
            .unwrap_or(TransportKind::Udp);
        let suffix = if transport == TransportKind::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        let mut headers = vec![rsip::headers::Contact::new(format!(
            "<sip:19118@{}{}>",
            self.host_port(),
            suffix
        ))
        .into()];
        headers.extend(options_headers());
        headers
    }

    fn send_stateless(
        &mut self,
        to: Peer,
        request: &rsip::Request,
        (status, extra): (u16, Vec<rsip::Header>),
    ) {
        let response = self.response(request, status, None, extra);
        self.outputs.push_back(Output::Transmit {
            to,
            bytes: Bytes::from(response.to_string()),
        });
    }

    fn reject_unparsed(&mut self, to: Peer, raw: &[u8], status: u16, reason: &str) {
        let extra: &[(&str, &str)] = if status == 405 {
            &[("Allow", ALLOW)]
        } else {
            &[]
        };
        if let Some(bytes) = message::error_response(raw, status, reason, extra) {
            self.outputs.push_back(Output::Transmit {
                to,
                bytes: Bytes::from(bytes),
            });
        }
    }

    fn via(&self, transport: TransportKind) -> String {
        format!(
            "SIP/2.0/{} {};branch={};rport",
            transport.via_name(),
            self.host_port(),
            new_branch()
        )
    }

    fn host_port(&self) -> String {
        match self.config.public_ip {
            IpAddr::V4(ip) => format!("{ip}:{}", self.config.local.port()),
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.config.local.port()),
        }
    }

    fn local_media(&self, rtp_port: u16, session_id: u64, session_version: u64) -> LocalMedia {
        LocalMedia {
            addr: self.config.public_ip,
            rtp_port,
            session_id,
            session_version,
        }
    }

    fn random_token(&mut self) -> String {
        format!("{:016x}", self.rng.gen::<u64>())
    }

    /// A stable To tag for stateless/non-dialog responses: retransmissions must get the same one.
    fn local_tag_for_stateless(&self, request: &rsip::Request) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        message::call_id(request).hash(&mut hasher);
        message::top_via_branch(request).hash(&mut hasher);
        hasher.finish()
    }
}

/// Responses name the software in `Server`, requests in `User-Agent` (§20.35, §20.41).
fn server_header() -> rsip::Header {
    rsip::headers::Server::new(USER_AGENT).into()
}

fn allow_header() -> Vec<rsip::Header> {
    vec![rsip::headers::Allow::new(ALLOW).into()]
}

fn options_headers() -> Vec<rsip::Header> {
    vec![
        rsip::headers::Allow::new(ALLOW).into(),
        rsip::headers::Accept::new(ACCEPT).into(),
    ]
}

mod agent;
mod flow;
mod queue;
mod record;
mod register;
#[cfg(test)]
mod tests;
mod transfer;

fn cseq_number(request: &rsip::Request) -> Option<u32> {
    message::cseq(request).map(|(number, _)| number)
}
