//! Carrier trunks as the switchboard sees them: each trunk's registration (or OPTIONS
//! keep-alive) machine driven through the user agent, its hosts resolved through the driver,
//! where its outbound calls go, and its state for supervisors. The calls it delivers are
//! identified in `inbound`.

mod inbound;

pub(in crate::call) use inbound::uri_user;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{info, warn};

use super::{Output, Switchboard};
use crate::numbers::NumberRules;
use crate::sdp::MediaEncryption;
use crate::settings::CallerIdHeader;
use crate::sip::cidr::Cidr;
use crate::sip::registration::keepalive::{Keepalive, ProbeInput, ProbeOutput};
use crate::sip::registration::Server;
use crate::sip::registration::{RegCounts, RegInput, RegOutput, RegState, Registration};
use crate::sip::transport::{Peer, TransportKind};
use crate::sip::ua::{DigestCredentials, RequestId};

/// How a trunk is watched: registering with the carrier, or probing it with OPTIONS.
#[derive(Debug)]
pub enum TrunkWatch {
    Register(Box<Registration>),
    Probe(Box<Keepalive>),
}

/// One `[trunks.NAME]` as the switchboard runs it.
#[derive(Debug)]
pub struct TrunkSetup {
    pub name: String,
    /// `host[:port]` of the carrier, and the one to fail over to.
    pub host: String,
    pub backup_host: Option<String>,
    pub transport: TransportKind,
    /// The account our calls present (From user) and answer challenges with.
    pub from_user: Option<String>,
    pub credentials: Option<DigestCredentials>,
    /// Where its calls come from; empty: its hosts' addresses once resolved.
    pub inbound: Vec<Cidr>,
    /// The DIDs it delivers.
    pub numbers: Vec<String>,
    pub caller_id: CallerIdHeader,
    pub max_calls: Option<u32>,
    /// New calls per second.
    pub max_cps: Option<u32>,
    /// SRTP on its calls, both ways (`trunks.NAME.media_encryption`).
    pub media_encryption: MediaEncryption,
    pub watch: TrunkWatch,
}

/// A trunk's state for supervisors (`/api/live`, `/metrics`, the dashboard).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrunkLive {
    pub trunk: String,
    /// `registered`, `registering`, `retrying`, `refused`, ... or `answering` / `not_answering`
    /// for a trunk watched by OPTIONS.
    pub state: String,
    pub up: bool,
    /// `primary` or `backup`.
    pub server: String,
    pub last_error: Option<String>,
    /// Seconds until the next registration attempt or probe.
    pub next_retry_s: Option<u64>,
    pub calls_active: u32,
    pub calls_total: u64,
    /// REGISTER outcomes since start: ok, challenged, refused, failed.
    pub registrations: RegistrationCounts,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RegistrationCounts {
    pub ok: u64,
    pub challenged: u64,
    pub refused: u64,
    pub failed: u64,
}

impl From<RegCounts> for RegistrationCounts {
    fn from(counts: RegCounts) -> Self {
        Self {
            ok: counts.ok,
            challenged: counts.challenged,
            refused: counts.refused,
            failed: counts.failed,
        }
    }
}

#[derive(Debug)]
pub(super) struct TrunkLine {
    setup: TrunkSetup,
    /// Addresses its hosts resolved to (its calls' sources when `inbound` is empty).
    resolved: Vec<SocketAddr>,
    pub(super) calls_active: u32,
    calls_total: u64,
    /// `max_cps` bucket: calls it may still take now, as of `refilled`.
    cps_tokens: f64,
    cps_refilled: Option<Instant>,
}

/// What one trunk's machine asked to send.
enum Send {
    Register {
        host: String,
        request: rsip::Request,
    },
    Probe {
        host: String,
        request: rsip::Request,
    },
}

/// The trunks and their requests in flight.
#[derive(Debug, Default)]
pub(super) struct Trunks {
    pub(super) lines: Vec<TrunkLine>,
    pub(super) rules: Option<NumberRules>,
    /// Each request's trunk and the host it went to (looked up again after a failure).
    requests: HashMap<RequestId, (usize, String)>,
    /// Host names resolved by the driver.
    addresses: HashMap<String, SocketAddr>,
    /// Requests waiting for their host's address, by host.
    unresolved: HashMap<String, Vec<(usize, rsip::Request)>>,
}

/// A call a trunk delivers, identified.
#[derive(Debug, Clone)]
pub(super) struct TrunkCall {
    pub(super) line: usize,
    pub(super) name: String,
    /// The caller's number in E.164 (empty when withheld).
    pub(super) caller: String,
}

impl Switchboard {
    /// Sets up the carrier trunks and starts registering or probing them.
    pub(super) fn trunk_names(&self) -> Vec<String> {
        self.trunks
            .lines
            .iter()
            .map(|line| line.setup.name.clone())
            .collect()
    }

    /// Whether a trunk of this name is configured.
    pub(super) fn has_trunk(&self, name: &str) -> bool {
        self.trunks.lines.iter().any(|line| line.setup.name == name)
    }

    pub fn set_trunks(&mut self, now: Instant, rules: NumberRules, setups: Vec<TrunkSetup>) {
        self.trunks.rules = Some(rules);
        self.trunks.lines = setups
            .into_iter()
            .map(|setup| TrunkLine {
                setup,
                resolved: Vec::new(),
                calls_active: 0,
                calls_total: 0,
                cps_tokens: 0.0,
                cps_refilled: None,
            })
            .collect();
        for line in 0..self.trunks.lines.len() {
            self.trunk_input(now, line, TrunkEvent::Start);
        }
        self.warn_unusable_callbacks();
        self.route(now);
    }

    /// The driver resolved (or failed to resolve) a trunk host's name.
    pub(super) fn host_resolved(&mut self, now: Instant, host: &str, addr: Option<SocketAddr>) {
        let waiting = self.trunks.unresolved.remove(host).unwrap_or_default();
        match addr {
            Some(addr) => {
                self.trunks.addresses.insert(host.to_owned(), addr);
                for (line, _) in &waiting {
                    let line = &mut self.trunks.lines[*line];
                    if !line.resolved.contains(&addr) {
                        line.resolved.push(addr);
                    }
                }
                for (line, request) in waiting {
                    self.send_trunk_request(now, line, host, addr, request);
                }
            }
            None => {
                warn!(%host, "trunk host does not resolve");
                for (line, _) in waiting {
                    self.trunk_input(now, line, TrunkEvent::Failed);
                }
            }
        }
    }

    /// The final answer to a trunk's REGISTER or OPTIONS (None: it failed); others' are ignored.
    pub(super) fn trunk_response(
        &mut self,
        now: Instant,
        request: RequestId,
        response: Option<rsip::Response>,
    ) {
        let Some((line, host)) = self.trunks.requests.remove(&request) else {
            return;
        };
        let event = match response {
            Some(response) => TrunkEvent::Response(Box::new(response)),
            None => {
                // The carrier may have moved: its name is looked up again next time.
                self.trunks.addresses.remove(&host);
                TrunkEvent::Failed
            }
        };
        self.trunk_input(now, line, event);
    }

    pub(super) fn trunks_timeout(&mut self, now: Instant) {
        for line in 0..self.trunks.lines.len() {
            let due = self.trunk_poll_timeout(line).is_some_and(|at| at <= now);
            if due {
                self.trunk_input(now, line, TrunkEvent::Timeout);
            }
        }
    }

    pub(super) fn trunks_poll_timeout(&self) -> Option<Instant> {
        (0..self.trunks.lines.len())
            .filter_map(|line| self.trunk_poll_timeout(line))
            .min()
    }

    /// Graceful stop: registered trunks unregister, probes stop.
    pub(super) fn stop_trunks(&mut self, now: Instant) {
        for line in 0..self.trunks.lines.len() {
            self.trunk_input(now, line, TrunkEvent::Stop);
        }
    }

    /// Trunks still unregistering (a graceful stop waits for them).
    pub(super) fn trunks_unregistering(&self) -> usize {
        self.trunks
            .lines
            .iter()
            .filter(|line| match &line.setup.watch {
                TrunkWatch::Register(machine) => machine.status().state == RegState::Unregistering,
                TrunkWatch::Probe(_) => false,
            })
            .count()
    }

    pub(super) fn trunks_live(&self, now: Instant) -> Vec<TrunkLive> {
        let seconds_until =
            |at: Option<Instant>| at.map(|at| at.saturating_duration_since(now).as_secs());
        self.trunks
            .lines
            .iter()
            .map(|line| {
                let (state, up, server, last_error, next, counts) = match &line.setup.watch {
                    TrunkWatch::Register(machine) => {
                        let status = machine.status();
                        (
                            reg_state_name(status.state).to_owned(),
                            machine.is_up(now),
                            status.server,
                            status.last_error,
                            status.next_retry,
                            machine.counts().into(),
                        )
                    }
                    TrunkWatch::Probe(machine) => {
                        let status = machine.status();
                        let state = if status.up {
                            "answering"
                        } else {
                            "not_answering"
                        };
                        (
                            state.to_owned(),
                            status.up,
                            status.server,
                            status.last_error,
                            status.next_probe,
                            RegistrationCounts::default(),
                        )
                    }
                };
                TrunkLive {
                    trunk: line.setup.name.clone(),
                    state,
                    up,
                    server: server_name(server).to_owned(),
                    last_error,
                    next_retry_s: seconds_until(next),
                    calls_active: line.calls_active,
                    calls_total: line.calls_total,
                    registrations: counts,
                }
            })
            .collect()
    }

    /// The SRTP policy of the trunk on `line` (off for a line that is gone).
    pub(super) fn trunk_media_encryption(&self, line: usize) -> MediaEncryption {
        self.trunks
            .lines
            .get(line)
            .map_or(MediaEncryption::Off, |line| line.setup.media_encryption)
    }

    /// Where a call through trunk `name` to `number` goes: the carrier host in use (the
    /// backup after a failover), resolved; else a status and reason to fail it with.
    pub(super) fn trunk_call_target(
        &self,
        name: &str,
        number: &str,
    ) -> Result<super::outbound::TrunkTarget, (u16, String)> {
        let line = self
            .trunks
            .lines
            .iter()
            .find(|line| line.setup.name == name)
            .ok_or_else(|| (404, format!("no trunk named {name}")))?;
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '+') {
            return Err((484, format!("{number:?} is not a telephone number")));
        }
        let server = match &line.setup.watch {
            TrunkWatch::Register(machine) => machine.status().server,
            TrunkWatch::Probe(machine) => machine.active_server(),
        };
        let host = match (server, &line.setup.backup_host) {
            (Server::Backup, Some(backup)) => backup,
            _ => &line.setup.host,
        };
        let addr = literal_address(host, line.setup.transport)
            .or_else(|| self.trunks.addresses.get(host).copied())
            .ok_or_else(|| (503, format!("trunk host {host} is not resolved yet")))?;
        Ok(super::outbound::TrunkTarget {
            uri: format!("sip:{number}@{host}"),
            peer: Peer {
                transport: line.setup.transport,
                addr,
            },
            caller_id: line.setup.from_user.clone(),
            credentials: line.setup.credentials.clone(),
            media_encryption: line.setup.media_encryption,
        })
    }

    fn trunk_poll_timeout(&self, line: usize) -> Option<Instant> {
        match &self.trunks.lines[line].setup.watch {
            TrunkWatch::Register(machine) => machine.poll_timeout(),
            TrunkWatch::Probe(machine) => machine.poll_timeout(),
        }
    }

    /// Feeds one event to a trunk's machine and carries out what it asks for.
    fn trunk_input(&mut self, now: Instant, line: usize, event: TrunkEvent) {
        let mut sends = Vec::new();
        let trunk = &mut self.trunks.lines[line];
        let name = trunk.setup.name.clone();
        match &mut trunk.setup.watch {
            TrunkWatch::Register(machine) => {
                match event {
                    TrunkEvent::Start => machine.handle_input(now, RegInput::Start),
                    TrunkEvent::Stop => machine.handle_input(now, RegInput::Stop),
                    TrunkEvent::Response(response) => {
                        machine.handle_input(now, RegInput::Response(*response))
                    }
                    TrunkEvent::Failed => machine.handle_input(now, RegInput::Timeout),
                    TrunkEvent::Timeout => machine.handle_timeout(now),
                }
                while let Some(output) = machine.poll_output() {
                    match output {
                        RegOutput::Send { host, request, .. } => {
                            sends.push(Send::Register { host, request })
                        }
                        RegOutput::StateChanged(status) => {
                            let state = reg_state_name(status.state);
                            let server = server_name(status.server);
                            match (&status.last_error, status.state) {
                                (Some(error), RegState::Refused | RegState::Retrying) => warn!(
                                    trunk = %name, state, server, error = %error,
                                    retry_in_s = status.next_retry.map(|at| at.saturating_duration_since(now).as_secs()),
                                    "trunk registration"
                                ),
                                _ => info!(
                                    trunk = %name, state, server, contact = %status.contact_addr,
                                    "trunk registration"
                                ),
                            }
                        }
                    }
                }
            }
            TrunkWatch::Probe(machine) => {
                match event {
                    TrunkEvent::Start => machine.handle_input(now, ProbeInput::Start),
                    TrunkEvent::Stop => machine.handle_input(now, ProbeInput::Stop),
                    TrunkEvent::Response(response) => {
                        machine.handle_input(now, ProbeInput::Response(*response))
                    }
                    TrunkEvent::Failed => machine.handle_input(now, ProbeInput::Timeout),
                    TrunkEvent::Timeout => machine.handle_timeout(now),
                }
                while let Some(output) = machine.poll_output() {
                    match output {
                        ProbeOutput::Send { host, request, .. } => {
                            sends.push(Send::Probe { host, request })
                        }
                        ProbeOutput::StateChanged(status) => {
                            let server = server_name(status.server);
                            match (&status.last_error, status.up) {
                                (Some(error), false) => {
                                    warn!(trunk = %name, server, error = %error, "trunk not answering OPTIONS")
                                }
                                _ => {
                                    info!(trunk = %name, server, up = status.up, "trunk keep-alive")
                                }
                            }
                        }
                    }
                }
            }
        }
        for send in sends {
            let (Send::Register { host, request } | Send::Probe { host, request }) = send;
            let transport = self.trunks.lines[line].setup.transport;
            match literal_address(&host, transport)
                .or_else(|| self.trunks.addresses.get(&host).copied())
            {
                Some(addr) => {
                    let line_ref = &mut self.trunks.lines[line];
                    if !line_ref.resolved.contains(&addr) {
                        line_ref.resolved.push(addr);
                    }
                    self.send_trunk_request(now, line, &host, addr, request);
                }
                None => {
                    let waiting = self.trunks.unresolved.entry(host.clone()).or_default();
                    let first = waiting.is_empty();
                    waiting.push((line, request));
                    if first {
                        self.push(Output::Resolve { host, transport });
                    }
                }
            }
        }
    }

    fn send_trunk_request(
        &mut self,
        now: Instant,
        line: usize,
        host: &str,
        addr: SocketAddr,
        request: rsip::Request,
    ) {
        let peer = Peer {
            transport: self.trunks.lines[line].setup.transport,
            addr,
        };
        match self.ua.send_request(now, request, peer) {
            Ok(id) => {
                self.trunks.requests.insert(id, (line, host.to_owned()));
            }
            Err(error) => {
                warn!(trunk = %self.trunks.lines[line].setup.name, %error, "trunk request not sent");
                self.trunk_input(now, line, TrunkEvent::Failed);
            }
        }
    }
}

enum TrunkEvent {
    Start,
    Stop,
    Response(Box<rsip::Response>),
    Failed,
    Timeout,
}

/// `host[:port]` that is an IP address: no lookup needed (the transport's port when none is
/// given: 5061 for TLS).
fn literal_address(host: &str, transport: TransportKind) -> Option<SocketAddr> {
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, transport.default_port()))
}

fn reg_state_name(state: RegState) -> &'static str {
    match state {
        RegState::Idle => "idle",
        RegState::Registering => "registering",
        RegState::Registered => "registered",
        RegState::Retrying => "retrying",
        RegState::Refused => "refused",
        RegState::Unregistering => "unregistering",
        RegState::Stopped => "stopped",
    }
}

fn server_name(server: Server) -> &'static str {
    match server {
        Server::Primary => "primary",
        Server::Backup => "backup",
    }
}
