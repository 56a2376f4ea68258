//! The tokio driver around the pure SIP endpoint: owns the UDP socket, the TCP listener and
//! connections (opening one when a request must go to a peer over TCP), the timer, the call
//! records' writer (adding the caller's RTP statistics the media driver measured), the HTTP
//! API, and hands media commands to the media driver. No SIP logic here.

mod media;
mod routing;
mod tcp;

pub use routing::BUILTIN_ECHO;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::http::live::{LiveSnapshot, OutcomeCount, ReloadRequest};
use crate::media::prompts::PromptLibrary;
use crate::media::stream::IdleAudio;
use crate::settings::Settings;
use crate::sip::endpoint::{CallRef, Endpoint, EndpointConfig, MediaCommand, MediaEvent, Output};
use crate::sip::registrar::Credentials;
use crate::sip::transaction::TimerConfig;
use crate::sip::transport::{Peer, TransportKind};

/// What the socket tasks tell the loop that owns the endpoint.
#[derive(Debug)]
pub(crate) enum DriverInput {
    TcpOpened {
        peer: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    },
    TcpMessage {
        peer: SocketAddr,
        bytes: Bytes,
    },
    TcpClosed {
        peer: SocketAddr,
    },
    /// A connection we opened to send to `peer` could not be made.
    TcpConnectFailed {
        peer: SocketAddr,
    },
    Media(MediaEvent),
}

/// Prompts play in this language until the caller picks one (routing.toml will say).
const DEFAULT_LANGUAGE: &str = "lt";

/// Largest UDP datagram we read; larger ones are truncated by the kernel and rejected as such.
const UDP_BUFFER: usize = 65_535;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Each call holds an RTP socket (two descriptors: pacer and receiver); 1024 is far too few.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!(limit, "open file limit"),
        Err(error) => warn!(%error, "cannot raise the open file limit"),
    }
    let udp = UdpSocket::bind(settings.sip.listen)
        .await
        .with_context(|| {
            format!(
                "binding SIP UDP socket to {} (setting sip.listen)",
                settings.sip.listen
            )
        })?;
    let local = udp
        .local_addr()
        .context("reading the SIP socket's address")?;
    let listener = TcpListener::bind(local)
        .await
        .with_context(|| format!("binding SIP TCP listener to {local} (setting sip.listen)"))?;
    let public_ip = settings
        .sip
        .public_addr
        .unwrap_or_else(|| default_public_ip(local.ip()));
    let config = EndpointConfig {
        local,
        public_ip,
        timers: TimerConfig {
            t1: settings.sip.t1,
            t2: settings.sip.t2,
            t4: settings.sip.t4,
        },
        max_call_duration: settings.sip.max_call_duration,
        answer_delay: settings.sip.answer_delay,
        rtp_timeout: settings.sip.rtp_timeout,
        max_message_size: settings.sip.max_message_size,
        rtp_port_min: settings.rtp.port_min,
        rtp_port_max: settings.rtp.port_max,
        default_language: DEFAULT_LANGUAGE.to_owned(),
    };
    let (prompts, prompt_errors) = PromptLibrary::load(&settings.prompts);
    for problem in &prompt_errors {
        warn!("prompt not usable: {problem}");
    }
    info!(
        prompts = prompts.len(),
        bytes = prompts.bytes(),
        folder = %settings.prompts.display(),
        "prompts loaded"
    );
    let prompts = Arc::new(prompts);
    let mut routing =
        routing::RoutingSource::new(settings.routing.clone(), prompts.clone(), prompt_errors);
    let loaded = routing.initial(DEFAULT_LANGUAGE).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "{}\nrouting has {} problem(s): not starting",
            lines.join("\n"),
            problems.len()
        )
    })?;
    let cdr_settings = crate::cdr::CdrSettings {
        database: settings.database.url.clone(),
        spool_path: settings.database.spool.clone(),
        pseudonymise_key: settings.database.pseudonymise_key.clone(),
        retention_days: settings.database.retention_days,
        retention_mode: match settings.database.retention_mode.as_str() {
            "blank_caller" => crate::cdr::PurgeMode::BlankCaller,
            _ => crate::cdr::PurgeMode::Delete,
        },
        write_timeout: std::time::Duration::from_secs(5),
    };
    let store = Arc::new(
        crate::cdr::CdrStore::open(&cdr_settings)
            .await
            .with_context(|| {
                format!(
                    "opening the call-record database (setting database.url = {})",
                    settings.database.url
                )
            })?,
    );
    let (records, _writer_task) =
        crate::cdr::CdrWriter::spawn(store.clone(), std::time::Duration::from_secs(10));
    if cdr_settings.retention_days.is_some() {
        let store = store.clone();
        let retention = cdr_settings.clone();
        tokio::spawn(async move {
            let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
            loop {
                daily.tick().await;
                match store.apply_retention(&retention).await {
                    Ok(calls) => info!(
                        calls,
                        days = retention.retention_days,
                        "call-record retention applied"
                    ),
                    Err(error) => warn!(%error, "applying the call-record retention"),
                }
            }
        });
    }
    let mut endpoint = Endpoint::new(config, prompts, loaded.flows, rand::random());
    if let Some(routing) = loaded.routing {
        endpoint.set_routing(Instant::now(), routing);
    }
    if let Some(path) = &settings.sip.credentials {
        let credentials = Credentials::load(path)
            .context("loading agent credentials (setting sip.credentials)")?;
        info!(realm = credentials.realm(), "agent registration enabled");
        endpoint.enable_registrar(credentials);
    }
    write_pid_file(&settings.pid_file);
    let mut hangup = hangup_signal()?;
    let mut file_poll = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut last_summary = None;
    let (live, live_readers) = tokio::sync::watch::channel(LiveSnapshot::default());
    let (reload_requests, mut reloads) = mpsc::channel::<ReloadRequest>(4);
    crate::http::check_bind(settings.http.listen, &settings.http.token)
        .map_err(|problem| anyhow::anyhow!("http.listen: {problem}"))?;
    let http_listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| {
            format!(
                "binding the HTTP API to {} (setting http.listen)",
                settings.http.listen
            )
        })?;
    let http_addr = http_listener
        .local_addr()
        .context("reading the HTTP address")?;
    let http_state = crate::http::HttpState {
        token: settings.http.token.clone(),
        store: store.clone(),
        thresholds: settings.stats.into(),
        live: live_readers,
        reload: reload_requests,
    };
    tokio::spawn(async move {
        if let Err(error) = crate::http::serve(http_listener, http_state).await {
            error!(%error, "HTTP API stopped");
        }
    });
    info!(%http_addr, "HTTP API and dashboard listening");
    let mut totals = Totals::default();
    let (input_tx, mut inputs) = mpsc::channel::<DriverInput>(8192);
    tokio::spawn(tcp::accept_loop(
        listener,
        input_tx.clone(),
        settings.sip.max_message_size,
    ));
    let mut media = media::MediaDriver::new(local.ip(), input_tx.clone(), IdleAudio::Silence)
        .context("starting the RTP pacer thread")?;
    let mut tcp_writers: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    // Receive statistics of callers' media, from its stop until the call's record (at once
    // when the caller hung up; after our BYE is answered when we did).
    let mut stopped_callers: HashMap<CallRef, media::RtpReceived> = HashMap::new();

    info!(%local, %public_ip, "SIP listening on UDP and TCP");
    // The one line test harnesses and operators wait for.
    println!("hotline listening sip={local} (udp+tcp)");

    let mut buffer = vec![0u8; UDP_BUFFER];
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        endpoint.set_wall_clock(Instant::now(), SystemTime::now());
        let deadline = endpoint.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = udp.recv_from(&mut buffer) => match received {
                Ok((len, addr)) => {
                    let from = Peer { transport: TransportKind::Udp, addr };
                    endpoint.handle_message(Instant::now(), from, &buffer[..len]);
                }
                // ICMP port unreachable from an earlier send surfaces here on Linux; not fatal.
                Err(error) => debug!(%error, "UDP receive error"),
            },
            Some(input) = inputs.recv() => match input {
                DriverInput::TcpOpened { peer, writer } => { tcp_writers.insert(peer, writer); }
                DriverInput::TcpClosed { peer } => { tcp_writers.remove(&peer); }
                DriverInput::TcpConnectFailed { peer } => {
                    // Gone before the endpoint reacts, which may send to the same address.
                    tcp_writers.remove(&peer);
                    let peer = Peer { transport: TransportKind::Tcp, addr: peer };
                    endpoint.handle_transport_error(Instant::now(), peer);
                }
                DriverInput::TcpMessage { peer, bytes } => {
                    let from = Peer { transport: TransportKind::Tcp, addr: peer };
                    endpoint.handle_message(Instant::now(), from, &bytes);
                }
                DriverInput::Media(event) => endpoint.handle_media_event(Instant::now(), event),
            },
            () = sleep => endpoint.handle_timeout(Instant::now()),
            Some(()) = hangup.recv() => {
                info!("SIGHUP: reloading routing");
                if let Some(loaded) = routing.reload() {
                    apply_routing(&mut endpoint, loaded);
                }
            }
            Some(request) = reloads.recv() => {
                let answer = routing.reload_reporting().map(|loaded| {
                    let hash = loaded.hash.clone();
                    apply_routing(&mut endpoint, loaded);
                    hash
                });
                let _ = request.reply.send(answer);
            }
            _ = file_poll.tick() => {
                if let Some(loaded) = routing.poll_file() {
                    apply_routing(&mut endpoint, loaded);
                }
                let mut snapshot = endpoint.live(Instant::now());
                totals.fill(&mut snapshot);
                live.send_replace(snapshot);
                // What the service holds, logged when it changes: leaks show up here.
                let stats = endpoint.stats();
                if last_summary != Some(stats) {
                    last_summary = Some(stats);
                    info!(
                        calls = stats.calls,
                        agent_legs = stats.agent_legs,
                        transactions = stats.transactions,
                        rtp_ports = stats.rtp_ports_in_use,
                        agents_idle = stats.agents_idle,
                        agents_busy = stats.agents_busy,
                        agents_unregistered = stats.agents_unregistered,
                        "state"
                    );
                }
            }
            () = &mut shutdown => {
                info!("shutting down");
                return Ok(());
            }
        }
        while let Some(output) = endpoint.poll_output() {
            match output {
                Output::Transmit { to, bytes } => match to.transport {
                    TransportKind::Udp => {
                        if let Err(error) = udp.send_to(&bytes, to.addr).await {
                            debug!(%error, peer = %to.addr, "UDP send failed");
                        }
                    }
                    TransportKind::Tcp => {
                        // A request opens a connection when there is none (an agent reached
                        // over TCP; a caller whose connection closed, which then fails fast and
                        // ends the call); a response only goes back on the request's connection.
                        let is_request = !bytes.starts_with(b"SIP/2.0 ");
                        if is_request && !tcp_writers.contains_key(&to.addr) {
                            let writer = tcp::connect(
                                to.addr,
                                input_tx.clone(),
                                settings.sip.max_message_size,
                            );
                            tcp_writers.insert(to.addr, writer);
                        }
                        match tcp_writers.get(&to.addr) {
                            Some(writer) => {
                                if writer.try_send(bytes).is_err() {
                                    warn!(peer = %to.addr, "TCP connection backed up or closed; message dropped");
                                }
                            }
                            None => {
                                debug!(peer = %to.addr, "no TCP connection for a response; dropped")
                            }
                        }
                    }
                },
                Output::Media(command) => {
                    let recorded = match &command {
                        MediaCommand::Stop {
                            call,
                            recorded: true,
                        } => Some(*call),
                        _ => None,
                    };
                    if let (Some(call), Some(received)) = (recorded, media.handle(command)) {
                        stopped_callers.insert(call, received);
                    }
                }
                Output::CallEnded { .. } => {}
                Output::CallStarted(start) => {
                    if records.call_started(start).is_err() {
                        error!("call-record writer stopped: record lost");
                    }
                }
                Output::CallRecorded {
                    call,
                    mut record,
                    events,
                } => {
                    if let Some(received) = call.and_then(|call| stopped_callers.remove(&call)) {
                        record.rtp_packets = received.packets;
                        record.rtp_lost = received.lost;
                        record.rtp_jitter_ms = received.jitter_ms;
                    }
                    totals.count(&record);
                    if records.call_ended(*record, events).is_err() {
                        error!("call-record writer stopped: record lost");
                    }
                }
            }
        }
    }
}

/// Nice level asked for the runtime's threads, which relay bridged calls' RTP.
const WORKER_NICE: i32 = -10;

/// Runs on each tokio thread as it starts: a raised priority (where the service may have it:
/// root or CAP_SYS_NICE) so relayed packets do not wait behind other processes for a CPU;
/// on a busy machine that wait is most of the relay's delay (bench/README.md, "Bridged
/// calls"). Without the privilege the threads keep normal priority.
pub fn raise_worker_priority() {
    // Also called on the main thread, which runs the SIP loop (`block_on`); the pacer has
    // SCHED_FIFO, above any nice level.
    #[cfg(target_os = "linux")]
    {
        static REPORTED: std::sync::Once = std::sync::Once::new();
        // SAFETY: plain syscalls on the calling thread (gettid names it for setpriority).
        let result = unsafe {
            let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, WORKER_NICE)
        };
        let error = (result != 0).then(std::io::Error::last_os_error);
        REPORTED.call_once(|| match error {
            None => info!(
                nice = WORKER_NICE,
                "runtime threads run with raised priority"
            ),
            Some(error) => warn!(%error, "runtime threads keep normal priority"),
        });
    }
}

/// Without `sip.public_addr` and with a wildcard listen address, the address of the interface
/// that routes outward is the best guess for SDP (UDP connect sends no packet).
fn default_public_ip(listen: IpAddr) -> IpAddr {
    if !listen.is_unspecified() {
        return listen;
    }
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| {
            socket
                .connect((Ipv4Addr::new(192, 0, 2, 1), 9))
                .map(|()| socket)
        })
        .and_then(|socket| socket.local_addr());
    match probe {
        Ok(addr) if !addr.ip().is_unspecified() => addr.ip(),
        _ => {
            warn!("cannot guess the public address: using 127.0.0.1; set sip.public_addr");
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
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

fn apply_routing(endpoint: &mut Endpoint, loaded: routing::Loaded) {
    endpoint.set_flow_factory(loaded.flows);
    if let Some(routing) = loaded.routing {
        endpoint.set_routing(Instant::now(), routing);
    }
}

/// `hotline reload` finds the service through this file.
fn write_pid_file(path: &std::path::Path) {
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        let _ = std::fs::create_dir_all(folder);
    }
    if let Err(error) = std::fs::write(path, format!("{}\n", std::process::id())) {
        warn!(%error, file = %path.display(), "cannot write the pid file; `hotline reload` will not find us");
    }
}

/// SIGHUP as a stream of `()`; on other platforms it never fires.
fn hangup_signal() -> anyhow::Result<mpsc::Receiver<()>> {
    let (sender, receiver) = mpsc::channel(4);
    #[cfg(unix)]
    {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if sender.send(()).await.is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(sender);
    Ok(receiver)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
