//! The tokio driver around the switchboard. `startup` binds and opens everything; the event
//! loop here only moves inputs (datagrams, TCP and TLS messages, media events, timers,
//! signals, reloads) into the switchboard and its outputs to the sockets (opening a TCP or TLS
//! connection when a request must go out over one), the media driver (whose answers go back
//! in) and the call-record writer, then follows the graceful stop (`shutdown`).

mod dns;
mod media;
mod routing;
mod shutdown;
mod startup;
mod tcp;
mod tls;

pub use startup::raise_worker_priority;

pub use routing::BUILTIN_ECHO;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::call::{Input, Output, Record, Switchboard};
use crate::http::live::{Command, LiveSnapshot, OutcomeCount};
use crate::media::leg::{MediaCommand, MediaEvent};
use crate::settings::Settings;
use crate::sip::transport::{Peer, TransportKind};
use crate::sip::ua::TransmitKind;

/// What the socket tasks tell the loop that owns the switchboard. Connections (TCP or TLS)
/// are known by their peer: transport and remote address.
#[derive(Debug)]
pub(crate) enum DriverInput {
    ConnectionOpened {
        peer: Peer,
        writer: mpsc::Sender<Bytes>,
    },
    ConnectionMessage {
        peer: Peer,
        bytes: Bytes,
    },
    ConnectionClosed {
        peer: Peer,
    },
    /// A connection we opened to send to `peer` could not be made (or its TLS handshake
    /// failed).
    ConnectFailed {
        peer: Peer,
    },
    Media(MediaEvent),
    /// A trunk host's name looked up (None: it does not resolve).
    Resolved {
        host: String,
        addr: Option<std::net::SocketAddr>,
    },
    /// The store's answer to a callback claim.
    CallbackClaimed {
        request: u64,
        granted: bool,
    },
}

/// Prompts play in this language until the caller picks one (routing.toml will say).
const DEFAULT_LANGUAGE: &str = "lt";

/// Largest UDP datagram we read; larger ones are truncated by the kernel and rejected as such.
const UDP_BUFFER: usize = 65_535;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let startup::Service {
        udp,
        mut switchboard,
        mut routing,
        records,
        store,
        mut media,
        mut inputs,
        mut writers,
        live,
        mut reloads,
        mut placed_calls,
        mut commands,
        mut hangups,
        mut stop_signals,
        mut shutdown,
        mut totals,
        tcp,
        server_tls,
        mut tls_clients,
    } = startup::start(settings).await?;
    let mut file_poll = tokio::time::interval(Duration::from_secs(1));
    let mut last_summary = None;
    // Answers the media driver gives at once (a stopped leg's statistics), fed back after the
    // outputs that caused them.
    let mut media_answers: Vec<MediaEvent> = Vec::new();

    // Who waits for each placed call's result, by the request number given to the switchboard.
    let mut call_replies = std::collections::HashMap::new();
    let mut next_call_request = 0_u64;

    let mut buffer = vec![0u8; UDP_BUFFER];
    loop {
        switchboard.handle_input(Instant::now(), Input::WallClock(SystemTime::now()));
        let sleep = sleep_until(switchboard.poll_timeout());
        let stop_phase_over = sleep_until(shutdown.deadline());
        tokio::select! {
            received = udp.recv_from(&mut buffer) => match received {
                Ok((len, addr)) => {
                    let from = Peer { transport: TransportKind::Udp, addr };
                    switchboard.handle_input(Instant::now(), Input::Sip { from, bytes: &buffer[..len] });
                }
                // ICMP port unreachable from an earlier send surfaces here on Linux; not fatal.
                Err(error) => debug!(%error, "UDP receive error"),
            },
            Some(input) = inputs.recv() => match input {
                DriverInput::ConnectionOpened { peer, writer } => { writers.insert(peer, writer); }
                DriverInput::ConnectionClosed { peer } => { writers.remove(&peer); }
                DriverInput::ConnectFailed { peer } => {
                    // Gone before the switchboard reacts, which may send to the same address.
                    writers.remove(&peer);
                    switchboard.handle_input(Instant::now(), Input::TransportError(peer));
                }
                DriverInput::ConnectionMessage { peer, bytes } => {
                    switchboard.handle_input(Instant::now(), Input::Sip { from: peer, bytes: &bytes });
                }
                DriverInput::Media(event) => switchboard.handle_input(Instant::now(), Input::Media(event)),
                DriverInput::CallbackClaimed { request, granted } => {
                    switchboard.handle_input(Instant::now(), Input::CallbackClaimed { request, granted });
                }
                DriverInput::Resolved { host, addr } => {
                    if let Some(addr) = addr {
                        tls_clients.resolved(&host, addr);
                    }
                    switchboard.handle_input(Instant::now(), Input::Resolved { host, addr });
                }
            },
            () = sleep => switchboard.handle_input(Instant::now(), Input::Timeout),
            Some(()) = hangups.recv() => {
                info!("SIGHUP: reloading routing");
                if let Some(server_tls) = &server_tls {
                    server_tls.reload();
                }
                if let Some(loaded) = routing.reload() {
                    apply_routing(&mut switchboard, loaded);
                }
            }
            Some(order) = placed_calls.recv() => {
                next_call_request += 1;
                call_replies.insert(next_call_request, order.reply);
                let request = crate::call::TrunkCallRequest {
                    request: next_call_request,
                    trunk: order.trunk,
                    number: order.number,
                    language: order.language,
                    prompt: order.prompt,
                };
                switchboard.handle_input(Instant::now(), Input::PlaceTrunkCall(request));
            }
            Some(command) = commands.recv() => match command {
                Command::LiftBan { ip, reply } => {
                    let lifted = switchboard.lift_bans(Instant::now(), ip);
                    info!(%ip, lifted, "bans lifted by a supervisor");
                    let _ = reply.send(lifted);
                }
                Command::SetAgentState { agent, pause, reply } => {
                    let known = switchboard.set_agent_pause(Instant::now(), &agent, pause, "supervisor");
                    let _ = reply.send(known);
                }
            },
            Some(request) = reloads.recv() => {
                let answer = routing.reload_reporting().map(|loaded| {
                    let hash = loaded.hash.clone();
                    apply_routing(&mut switchboard, loaded);
                    hash
                });
                let _ = request.reply.send(answer);
            }
            _ = file_poll.tick() => {
                if let Some(loaded) = routing.poll_file() {
                    apply_routing(&mut switchboard, loaded);
                }
                let mut snapshot = switchboard.live(Instant::now());
                totals.fill(&mut snapshot);
                live.send_replace(snapshot);
                // What the service holds, logged when it changes: leaks show up here.
                let stats = switchboard.stats();
                if last_summary != Some(stats) {
                    last_summary = Some(stats);
                    info!(
                        calls = stats.calls,
                        agent_legs = stats.agent_legs,
                        sip_sessions = stats.sip_sessions,
                        transactions = stats.transactions,
                        rtp_ports = stats.rtp_ports_in_use,
                        agents_idle = stats.agents_idle,
                        agents_busy = stats.agents_busy,
                        agents_offline = stats.agents_offline,
                        "state"
                    );
                }
            }
            Some(signal) = stop_signals.recv() => {
                shutdown.signal(signal, &mut switchboard, Instant::now());
            }
            () = stop_phase_over => shutdown.expired(&mut switchboard, Instant::now()),
        }
        loop {
            while let Some(output) = switchboard.poll_output() {
                match output {
                    Output::Transmit(transmit) => match transmit.to.transport {
                        TransportKind::Udp => {
                            if let Err(error) = udp.send_to(&transmit.bytes, transmit.to.addr).await
                            {
                                debug!(%error, peer = %transmit.to.addr, "UDP send failed");
                            }
                        }
                        TransportKind::Tcp | TransportKind::Tls => {
                            let to = transmit.to;
                            // A request opens a connection when there is none (an agent reached
                            // over TCP or TLS, a trunk; a caller whose connection closed, which
                            // then fails fast and ends the call); a response only goes back on
                            // the request's connection.
                            if transmit.kind == TransmitKind::Request && !writers.contains_key(&to)
                            {
                                let dial = (to.transport == TransportKind::Tls)
                                    .then(|| tls_clients.dial(to.addr));
                                let writer = tcp::connect(to, tcp.clone(), dial);
                                writers.insert(to, writer);
                            }
                            match writers.get(&to) {
                                Some(writer) => {
                                    if writer.try_send(transmit.bytes).is_err() {
                                        warn!(peer = %to, "connection backed up or closed; message dropped");
                                    }
                                }
                                None => {
                                    debug!(peer = %to, "no connection for a response; dropped")
                                }
                            }
                        }
                    },
                    Output::Media(command) => {
                        let stopped = match &command {
                            MediaCommand::Stop { leg } => Some(*leg),
                            _ => None,
                        };
                        let received = media.handle(command);
                        if let Some(leg) = stopped {
                            let rtp = received.unwrap_or_default();
                            media_answers.push(MediaEvent::Stopped { leg, rtp });
                        }
                    }
                    Output::Resolve { host, transport } => {
                        resolve(host, transport, tcp.inputs.clone())
                    }
                    Output::Callback(row) => {
                        if records.callback_changed(row).is_err() {
                            error!("call-record writer stopped: callback request change lost");
                        }
                    }
                    Output::ClaimCallback {
                        request,
                        id,
                        attempt,
                    } => claim_callback(store.clone(), request, id, attempt, tcp.inputs.clone()),
                    Output::AgentState(change) => {
                        if records.agent_state_changed(change).is_err() {
                            error!("call-record writer stopped: agent state change lost");
                        }
                    }
                    Output::TrunkCallEnded { request, result } => {
                        if let Some(reply) = call_replies.remove(&request) {
                            let _ = reply.send(result);
                        }
                    }
                    Output::Record(Record::Started(start)) => {
                        if records.call_started(start).is_err() {
                            error!("call-record writer stopped: record lost");
                        }
                    }
                    Output::Record(Record::Ended { record, events, .. }) => {
                        totals.count(&record);
                        if records.call_ended(*record, events).is_err() {
                            error!("call-record writer stopped: record lost");
                        }
                    }
                }
            }
            if media_answers.is_empty() {
                break;
            }
            for event in media_answers.drain(..) {
                switchboard.handle_input(Instant::now(), Input::Media(event));
            }
        }
        if shutdown.finished(&switchboard) {
            break;
        }
    }
    info!("stopping: writing the last call records");
    match records.close().await {
        Ok(()) => info!("stopped: call records written"),
        Err(_) => error!("stopped: the call-record writer had stopped; records may be lost"),
    }
    Ok(())
}

/// Looks up a trunk host (SRV, then A/AAAA; see `dns`) off the loop and reports back.
fn resolve(host: String, transport: TransportKind, inputs: mpsc::Sender<DriverInput>) {
    tokio::spawn(async move {
        let addr = dns::resolve_sip_host(&host, transport).await;
        if addr.is_none() {
            warn!(%host, "trunk host does not resolve (SRV, A, AAAA)");
        }
        let _ = inputs.send(DriverInput::Resolved { host, addr }).await;
    });
}

/// Sleeps until `at`; forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Counters since start for the metrics: calls by outcome, group and language; DTMF modes.
#[derive(Default)]
struct Totals {
    outcomes: std::collections::BTreeMap<(String, String, String), u64>,
    dtmf_modes: std::collections::BTreeMap<String, u64>,
}

impl Totals {
    fn count(&mut self, record: &crate::cdr::CallRecord) {
        let key = (
            record.outcome.as_str().to_owned(),
            record
                .enterprise
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
            record.language.clone().unwrap_or_else(|| "none".to_owned()),
        );
        *self.outcomes.entry(key).or_default() += 1;
        *self
            .dtmf_modes
            .entry(record.dtmf_mode.as_str().to_owned())
            .or_default() += 1;
    }

    fn fill(&self, snapshot: &mut LiveSnapshot) {
        snapshot.outcomes = self
            .outcomes
            .iter()
            .map(|((outcome, group, language), calls)| OutcomeCount {
                outcome: outcome.clone(),
                group: group.clone(),
                language: language.clone(),
                calls: *calls,
            })
            .collect();
        snapshot.dtmf_modes = self.dtmf_modes.clone();
    }
}

fn apply_routing(switchboard: &mut Switchboard, loaded: routing::Loaded) {
    switchboard.set_flow_factory(loaded.flows);
    if let Some(routing) = loaded.routing {
        switchboard.set_routing(Instant::now(), routing);
    }
}

/// Asks the store whether this node may dial a callback request; a store that cannot answer
/// (database away) does not stop a lone node from calling residents back.
fn claim_callback(
    store: std::sync::Arc<crate::cdr::CdrStore>,
    request: u64,
    id: String,
    attempt: u32,
    inputs: mpsc::Sender<DriverInput>,
) {
    tokio::spawn(async move {
        let granted = match store.claim_callback(&id, attempt, chrono::Utc::now()).await {
            Ok(granted) => granted,
            Err(error) => {
                warn!(%error, %id, "callback claim not checked (database away): dialling");
                true
            }
        };
        let _ = inputs
            .send(DriverInput::CallbackClaimed { request, granted })
            .await;
    });
}
