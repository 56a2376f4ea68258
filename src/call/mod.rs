//! The switchboard: the service's one state machine. It composes the SIP user agent, the ACD,
//! the callers' menu flows, prompt lookup and the RTP port allocator. Inputs (SIP bytes, media
//! events, timer firings, supervisor commands) go in through [`Switchboard::handle_input`];
//! what to send, media commands and call records come out of [`Switchboard::poll_output`].
//! Sub-machines never call back into it: their events are routed in one loop at the end of
//! each input (`route`), so nothing is re-entered half-way.

mod agent;
mod agent_probe;
#[cfg(test)]
mod agent_probe_tests;
mod agent_transfer;
#[cfg(test)]
mod agent_transfer_tests;
mod callback;
mod caller;
mod events;
mod feature;
#[cfg(test)]
mod feature_tests;
mod flow;
mod language_memory;
#[cfg(test)]
mod language_tests;
pub mod live;
mod outbound;
mod queue;
mod record;
pub mod sim;
#[cfg(test)]
mod srtp_tests;
#[cfg(test)]
pub(crate) mod tests;
mod timers;
mod trunk;
#[cfg(test)]
mod trunk_tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::acd::Acd;
use crate::cdr::{CallEvent, CallRecord, CallStart};
use crate::ivr::{CallFlow, FlowClock, FlowEvent};
use crate::media::leg::{LegId, MediaCommand, MediaEvent};
use crate::media::ports::PortAllocator;
use crate::media::prompts::PromptLibrary;
use crate::sip::registrar::{AuthPolicy, Credentials};
use crate::sip::transport::Peer;
use crate::sip::ua::{SessionId, Transmit, UaConfig, UserAgent};

pub use feature::FeatureCodes;
pub use outbound::{TrunkCallRequest, TrunkCallResult};
pub use record::EndReason;
pub use trunk::{RegistrationCounts, TrunkLive, TrunkSetup, TrunkWatch};

#[derive(Debug, Clone)]
pub struct SwitchboardConfig {
    pub sip: UaConfig,
    pub max_call_duration: Duration,
    pub answer_delay: Duration,
    pub rtp_timeout: Duration,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
}

/// Everything that can happen to the switchboard.
#[derive(Debug)]
pub enum Input<'a> {
    /// One SIP message from a transport: a UDP datagram or a framed TCP message.
    Sip {
        from: Peer,
        bytes: &'a [u8],
    },
    Media(MediaEvent),
    /// The time `poll_timeout` named has come.
    Timeout,
    /// A connection to `peer` could not be made (TCP connect failed).
    TransportError(Peer),
    /// The wall-clock time at `now` (opening hours need the date; timers do not).
    WallClock(SystemTime),
    /// A trunk host's name resolved (None: it did not), as asked by [`Output::Resolve`].
    Resolved {
        host: String,
        addr: Option<std::net::SocketAddr>,
    },
    /// Place a call through a trunk (a test call): [`Output::TrunkCallEnded`] answers.
    PlaceTrunkCall(TrunkCallRequest),
    /// The store's answer to [`Output::ClaimCallback`]: whether this node may dial.
    CallbackClaimed {
        request: u64,
        granted: bool,
    },
    /// Graceful stop begins: new calls get 503, calls in progress go on, trunks unregister.
    Drain,
    /// Graceful stop ends: every call is hung up (records follow as the calls finish).
    HangUpAll,
}

/// A call record, as the call arrives and when it is over.
#[derive(Debug)]
pub enum Record {
    /// A call arrived: the record's first row, so live calls are visible.
    Started(CallStart),
    /// A call ended (or was refused): its complete record and audit steps.
    Ended {
        record: Box<CallRecord>,
        events: Vec<CallEvent>,
        reason: EndReason,
    },
}

#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    Media(MediaCommand),
    Record(Record),
    /// Look up a trunk host's name (`host[:port]`; without a port its SIP SRV record for
    /// `transport`, then A/AAAA on 5060) and answer with [`Input::Resolved`].
    Resolve {
        host: String,
        transport: crate::sip::transport::TransportKind,
    },
    /// An agent's availability changed: an audit row for `agent_states`.
    AgentState(crate::cdr::AgentStateChange),
    /// How a call placed with [`Input::PlaceTrunkCall`] went.
    TrunkCallEnded {
        request: u64,
        result: TrunkCallResult,
    },
    /// A callback request's new state, for its row in `callbacks`.
    Callback(crate::cdr::CallbackRow),
    /// Ask the store whether this node may dial callback `id` (attempt `attempt`): another
    /// node sharing the database may have it. Answered with [`Input::CallbackClaimed`].
    ClaimCallback {
        request: u64,
        id: String,
        attempt: u32,
    },
}

/// What a new call's flow is chosen from.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub call_id: String,
    pub from: String,
    pub to: String,
    /// The language this caller chose on an earlier call, while `remember_language` keeps it
    /// (never for a withheld number).
    pub remembered_language: Option<String>,
    /// The caller's number (E.164 when it came through a trunk).
    pub caller: String,
    /// The dialling rules of the trunks (`[numbers]`), when there are trunks to call back
    /// through; without them no callback is offered.
    pub numbers: Option<crate::numbers::NumberRules>,
    /// The trunks configured: a group's callback is offered only through one of them.
    pub trunks: Vec<String>,
    /// The caller already has a callback request waiting (in this language).
    pub pending_callback: Option<String>,
}

/// Makes the flow for each new call; replaced on routing reload (calls keep the flow they got).
pub type FlowFactory = Box<dyn Fn(&IncomingCall) -> Box<dyn CallFlow> + Send>;

/// Counts for leak checks and the service's state log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchboardStats {
    pub calls: usize,
    pub sip_sessions: usize,
    pub transactions: usize,
    pub rtp_ports_in_use: usize,
    pub agent_legs: usize,
    /// Agents free to take a call.
    pub agents_idle: usize,
    /// Agents ringing, on a call or in wrap-up.
    pub agents_busy: usize,
    /// Agents unregistered, or whose phones do not answer probes.
    pub agents_offline: usize,
    /// Finished calls whose record waits for the media driver's statistics.
    pub records_pending: usize,
    /// Trunks whose unregistration is still under way.
    pub trunks_unregistering: usize,
}

impl SwitchboardStats {
    /// Nothing is left to finish: a graceful stop may exit.
    pub fn is_idle(&self) -> bool {
        self.calls == 0
            && self.agent_legs == 0
            && self.sip_sessions == 0
            && self.records_pending == 0
            && self.trunks_unregistering == 0
    }
}

/// Work for the routing loop that the switchboard gives itself (a flow event raised while
/// another flow event is being carried out).
#[derive(Debug)]
enum Pending {
    Flow(SessionId, FlowEvent),
}

/// A finished call's record waiting for its media's receive statistics.
#[derive(Debug)]
struct AwaitingRtp {
    record: Box<CallRecord>,
    events: Vec<CallEvent>,
    reason: EndReason,
}

pub struct Switchboard {
    config: SwitchboardConfig,
    ua: UserAgent,
    /// Agent groups: who rings for whom (None until a routing with groups is set).
    acd: Option<Acd>,
    prompts: Arc<PromptLibrary>,
    flows: FlowFactory,
    /// Wall time at an instant, told by the driver.
    wall_anchor: Option<(Instant, SystemTime)>,
    ports: PortAllocator,
    /// Boxed, as the user agent's sessions: a call is ~540 bytes.
    calls: HashMap<SessionId, Box<caller::Call>>,
    legs: HashMap<SessionId, agent::AgentLeg>,
    timers: timers::Timers,
    awaiting_rtp: HashMap<LegId, AwaitingRtp>,
    pending: VecDeque<Pending>,
    trunks: trunk::Trunks,
    /// Who the pause change being routed now came from (`feature_code`, `supervisor`).
    pause_changed_by: Option<&'static str>,
    /// Agents' feature codes (`*21` pause...).
    feature_codes: FeatureCodes,
    /// Calls in progress one address (not a trunk) may have; more get 503.
    max_calls_per_source: Option<u32>,
    /// Calls that play one prompt and end: placed through trunks, agents' feature codes.
    prompt_calls: HashMap<SessionId, outbound::PromptCall>,
    /// Callers' latest language choices, for greeting them in it when they call again.
    languages: language_memory::LanguageMemory,
    probes: agent_probe::AgentProbes,
    callbacks: callback::Callbacks,
    outputs: VecDeque<Output>,
}

impl Switchboard {
    pub fn new(
        config: SwitchboardConfig,
        prompts: Arc<PromptLibrary>,
        flows: FlowFactory,
        seed: u64,
    ) -> Self {
        Self {
            ua: UserAgent::new(config.sip.clone(), seed),
            acd: None,
            prompts,
            flows,
            wall_anchor: None,
            ports: PortAllocator::new(config.rtp_port_min, config.rtp_port_max),
            config,
            calls: HashMap::new(),
            legs: HashMap::new(),
            timers: timers::Timers::default(),
            awaiting_rtp: HashMap::new(),
            pending: VecDeque::new(),
            trunks: trunk::Trunks::default(),
            prompt_calls: HashMap::new(),
            max_calls_per_source: None,
            feature_codes: FeatureCodes::default(),
            pause_changed_by: None,
            languages: language_memory::LanguageMemory::default(),
            probes: agent_probe::AgentProbes::default(),
            callbacks: callback::Callbacks::default(),
            outputs: VecDeque::new(),
        }
    }

    /// Lets agents register with these credentials.
    pub fn enable_registrar(&mut self, credentials: Credentials) {
        self.ua.enable_registrar(credentials);
    }

    /// Lets agents register, with the digest failure limits and bans of `policy`.
    pub fn enable_registrar_with(&mut self, credentials: Credentials, policy: AuthPolicy) {
        self.ua.enable_registrar_with(credentials, policy);
    }

    /// Only these address blocks may start calls and registrations (`sip.trusted` and the
    /// trunks' `inbound`); others get 403.
    pub fn admit_only(&mut self, blocks: Vec<crate::sip::cidr::Cidr>) {
        self.ua.admit_only(Some(blocks));
    }

    /// Limits each source's requests (flood bans, scanners) and calls in progress; trunks are
    /// exempt (their `max_calls` applies).
    pub fn limit_sources(
        &mut self,
        guard: crate::sip::flood::FloodGuard,
        max_calls_per_source: u32,
    ) {
        self.ua.limit_sources(guard);
        self.max_calls_per_source = Some(max_calls_per_source);
    }

    /// Lifts every ban on `ip` (failed logins, flood, scanner); how many there were.
    pub fn lift_bans(&mut self, now: Instant, ip: std::net::IpAddr) -> usize {
        self.ua.lift_bans(now, ip)
    }

    /// What the Server and User-Agent headers say (`sip.server_header`).
    pub fn set_server_header(&mut self, product: &str) {
        self.ua.set_server_header(product);
    }

    /// The port of `sip.tls_listen` (Via and Contact of what goes out over TLS).
    pub fn set_tls_port(&mut self, port: Option<u16>) {
        self.ua.set_tls_port(port);
    }

    /// New calls get flows from this factory; calls in progress keep theirs.
    pub fn set_flow_factory(&mut self, flows: FlowFactory) {
        self.flows = flows;
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Sip { from, bytes } => self.ua.handle_message(now, from, bytes),
            Input::Media(event) => self.media_event(now, event),
            Input::Timeout => {
                self.ua.handle_timeout(now);
                if let Some(acd) = self.acd.as_mut() {
                    acd.handle_timeout(now);
                }
                self.trunks_timeout(now);
                self.probes_timeout(now);
                self.callbacks_timeout(now);
                // What the SIP and queue timers caused comes before the switchboard's own.
                self.route(now);
                while let Some(timer) = self.timers.pop_due(now) {
                    self.fire(now, timer);
                    self.route(now);
                }
            }
            Input::TransportError(peer) => self.ua.handle_transport_error(now, peer),
            Input::WallClock(wall) => self.wall_anchor = Some((now, wall)),
            Input::Resolved { host, addr } => self.host_resolved(now, &host, addr),
            Input::PlaceTrunkCall(call) => self.place_trunk_call(now, call),
            Input::CallbackClaimed { request, granted } => {
                self.callback_claimed(now, request, granted)
            }
            Input::Drain => {
                tracing::info!(calls = self.calls.len(), "draining: new calls get 503");
                self.ua.set_accepting(false);
                self.stop_trunks(now);
                self.set_agent_probe(Duration::ZERO);
            }
            Input::HangUpAll => {
                let mut calls: Vec<SessionId> = self.calls.keys().copied().collect();
                calls.sort();
                tracing::info!(calls = calls.len(), "hanging up every call");
                // Every caller leaves the queues first, so an agent freed by one hang-up is not
                // rung for a caller about to be hung up too.
                for id in &calls {
                    let call = crate::acd::CallId(id.0);
                    self.report_to_acd(now, crate::acd::AcdInput::CallerLeft { call });
                }
                for id in calls {
                    self.hang_up(now, id, EndReason::ServiceStopped);
                }
                let mut placed: Vec<SessionId> = self.prompt_calls.keys().copied().collect();
                placed.sort();
                for id in placed {
                    self.ua.hang_up(now, id);
                }
            }
        }
        self.route(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.flush_transmits();
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ua.poll_timeout(),
            self.acd.as_ref().and_then(Acd::poll_timeout),
            self.timers.next(),
            self.trunks_poll_timeout(),
            self.probes_poll_timeout(),
            self.callbacks_poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn stats(&self) -> SwitchboardStats {
        let ua = self.ua.stats();
        let mut stats = SwitchboardStats {
            calls: self.calls.len() + self.prompt_calls.len(),
            sip_sessions: ua.sessions,
            transactions: ua.transactions,
            rtp_ports_in_use: self.ports.in_use(),
            agent_legs: self.legs.len(),
            records_pending: self.awaiting_rtp.len(),
            trunks_unregistering: self.trunks_unregistering(),
            ..SwitchboardStats::default()
        };
        for agent in self.acd.as_ref().map(Acd::agent_states).unwrap_or_default() {
            match agent.state {
                crate::acd::AgentState::Idle => stats.agents_idle += 1,
                crate::acd::AgentState::Offline => stats.agents_offline += 1,
                _ => stats.agents_busy += 1,
            }
        }
        stats
    }

    /// Routes what the sub-machines produced until none has anything left to say.
    fn route(&mut self, now: Instant) {
        loop {
            self.flush_transmits();
            if let Some(event) = self.ua.poll_event() {
                self.ua_event(now, event);
            } else if let Some(output) = self.acd.as_mut().and_then(Acd::poll_output) {
                self.acd_output(now, output);
            } else if let Some(Pending::Flow(id, event)) = self.pending.pop_front() {
                self.flow_event(now, id, event);
            } else {
                break;
            }
        }
    }

    fn clock(&self, now: Instant) -> FlowClock {
        let wall = match self.wall_anchor {
            None => SystemTime::UNIX_EPOCH,
            Some((anchor, wall)) => match now.checked_duration_since(anchor) {
                Some(ahead) => wall + ahead,
                None => wall - anchor.duration_since(now),
            },
        };
        FlowClock { now, wall }
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.clock(now).wall
    }

    fn push(&mut self, output: Output) {
        // What the user agent sent so far goes first: outputs keep the order they were made in.
        self.flush_transmits();
        self.outputs.push_back(output);
    }

    fn flush_transmits(&mut self) {
        while let Some(transmit) = self.ua.poll_transmit() {
            self.outputs.push_back(Output::Transmit(transmit));
        }
    }

    fn media(&mut self, command: MediaCommand) {
        self.push(Output::Media(command));
    }
}

/// Media legs are numbered as the SIP sessions they carry.
fn leg_of(session: SessionId) -> LegId {
    LegId(session.0)
}

fn session_of(leg: LegId) -> SessionId {
    SessionId(leg.0)
}
