//! Start-up of the service: settings mapped to the switchboard's configuration, sockets bound,
//! prompts and routing loaded, the call-record store opened (and what a killed run left open
//! closed), the HTTP API, the media driver and the signal listeners started. What the event
//! loop needs is handed over in one `Service`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::media::MediaDriver;
use super::routing::RoutingSource;
use super::{shutdown, tcp, tls, DriverInput, Totals, DEFAULT_LANGUAGE};
use crate::call::{Switchboard, SwitchboardConfig};
use crate::cdr::CdrWriter;
use crate::http::live::{LiveSnapshot, ReloadRequest};
use crate::media::prompts::PromptLibrary;
use crate::media::stream::IdleAudio;
use crate::settings::Settings;
use crate::sip::registrar::Credentials;
use crate::sip::transaction::TimerConfig;
use crate::sip::transport::{Peer, TransportKind};
use crate::sip::ua::UaConfig;

/// Everything the event loop moves inputs and outputs between.
pub(super) struct Service {
    pub(super) udp: UdpSocket,
    pub(super) switchboard: Switchboard,
    pub(super) routing: RoutingSource,
    pub(super) records: CdrWriter,
    /// For what the loop asks the store directly (claims of callback requests).
    pub(super) store: Arc<crate::cdr::CdrStore>,
    pub(super) media: MediaDriver,
    /// What socket tasks and the media driver report.
    pub(super) inputs: mpsc::Receiver<DriverInput>,
    /// Open connections (TCP and TLS), by peer.
    pub(super) writers: HashMap<Peer, mpsc::Sender<Bytes>>,
    pub(super) live: watch::Sender<LiveSnapshot>,
    pub(super) reloads: mpsc::Receiver<ReloadRequest>,
    /// Calls supervisors ask to place through a trunk.
    pub(super) placed_calls: mpsc::Receiver<crate::http::live::CallOrder>,
    /// Bans supervisors lift.
    pub(super) commands: mpsc::Receiver<crate::http::live::Command>,
    pub(super) hangups: mpsc::Receiver<()>,
    pub(super) stop_signals: mpsc::Receiver<&'static str>,
    pub(super) shutdown: shutdown::Shutdown,
    pub(super) totals: Totals,
    /// For connections the loop opens (agents reached over TCP or TLS, trunks).
    pub(super) tcp: tcp::TcpContext,
    /// The TLS listener's certificate (reloaded on SIGHUP); None without `sip.tls_listen`.
    pub(super) server_tls: Option<tls::ServerTls>,
    /// How servers we connect to over TLS are checked.
    pub(super) tls_clients: tls::Clients,
}

pub(super) async fn start(settings: Settings) -> anyhow::Result<Service> {
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
    let tls_listener = bind_tls(&settings).await?;
    let tls_clients = tls::Clients::from_settings(&settings).map_err(anyhow::Error::msg)?;
    let public_ip = settings
        .sip
        .public_addr
        .unwrap_or_else(|| default_public_ip(local.ip()));
    let config = SwitchboardConfig {
        sip: UaConfig {
            local,
            public_ip,
            timers: TimerConfig {
                t1: settings.sip.t1,
                t2: settings.sip.t2,
                t4: settings.sip.t4,
            },
            max_message_size: settings.sip.max_message_size,
        },
        max_call_duration: settings.sip.max_call_duration,
        answer_delay: settings.sip.answer_delay,
        rtp_timeout: settings.sip.rtp_timeout,
        rtp_port_min: settings.rtp.port_min,
        rtp_port_max: settings.rtp.port_max,
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
    let mut routing = RoutingSource::new(settings.routing.clone(), prompts.clone(), prompt_errors)
        .with_settle(settings.routing_settle)
        .with_history(crate::cli::history::folder(&settings.pid_file));
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
        write_timeout: Duration::from_secs(5),
        node: settings.node.name.clone(),
    };
    let store = Arc::new(
        crate::cdr::CdrStore::open(&cdr_settings)
            .await
            .with_context(|| {
                format!(
                    "opening the call-record database (setting database.url = {})",
                    crate::cdr::mask_password(&settings.database.url)
                )
            })?,
    );
    info!(
        database = %crate::cdr::mask_password(&settings.database.url),
        spool = %settings.database.spool.display(),
        "call-record store opened"
    );
    // Records a killed run of this node left open: closed now, or once the database is reached.
    crate::cdr::close_interrupted_at_start(store.clone()).await;
    let (records, _writer_task) =
        crate::cdr::CdrWriter::spawn(store.clone(), Duration::from_secs(10));
    if cdr_settings.retention_days.is_some() {
        let store = store.clone();
        let retention = cdr_settings.clone();
        tokio::spawn(async move {
            let mut daily = tokio::time::interval(Duration::from_secs(24 * 3600));
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
    let mut switchboard = Switchboard::new(config, prompts, loaded.flows, rand::random());
    // SRTP master keys: their own 256-bit seed from the OS, not the 64-bit call seed.
    switchboard.seed_key_generator(rand::random());
    switchboard.set_server_header(&settings.sip.server_header);
    switchboard.set_agent_probe(settings.sip.agent_probe);
    let tls_port = tls_listener
        .as_ref()
        .map(|(listener, _)| listener.local_addr().map(|addr| addr.port()))
        .transpose()
        .context("reading the TLS listener's address")?;
    switchboard.set_tls_port(tls_port);
    switchboard.set_feature_codes(crate::call::FeatureCodes {
        pause: settings.features.pause.clone(),
        resume: settings.features.resume.clone(),
        log_out: settings.features.log_out.clone(),
        log_in: settings.features.log_in.clone(),
    });
    switchboard.admit_only(admitted_sources(&settings));
    switchboard.limit_sources(
        source_limits(&settings),
        settings.security.max_calls_per_source,
    );
    if let Some(routing) = loaded.routing {
        let choices = language_choices(&store, &routing, &cdr_settings).await;
        switchboard.set_language_memory(
            cdr_settings.pseudonymise_key.as_deref(),
            retention(&cdr_settings),
            choices,
        );
        switchboard.set_routing(Instant::now(), routing);
    }
    if let Some(path) = &settings.sip.credentials {
        let credentials = Credentials::load(path)
            .context("loading agent credentials (setting sip.credentials)")?;
        info!(realm = credentials.realm(), "agent registration enabled");
        switchboard.enable_registrar_with(credentials, (&settings.security).into());
    }
    write_pid_file(&settings.pid_file);
    let trunks = trunk_setups(&settings, public_ip, local.port(), tls_port)?;
    if !trunks.is_empty() {
        info!(trunks = trunks.len(), "carrier trunks starting");
    }
    switchboard.set_trunks(Instant::now(), settings.numbers.rules(), trunks);
    // Callback requests still pending (this node's last run, or others'): queued again.
    switchboard.handle_input(
        Instant::now(),
        crate::call::Input::WallClock(std::time::SystemTime::now()),
    );
    match store.pending_callbacks().await {
        Ok(rows) => {
            if !rows.is_empty() {
                info!(callbacks = rows.len(), "pending callback requests taken up");
            }
            switchboard.restore_callbacks(Instant::now(), rows);
        }
        Err(error) => {
            warn!(%error, "pending callback requests could not be read; the next start tries again")
        }
    }
    let hangups = hangup_signal()?;
    let (live, live_readers) = tokio::sync::watch::channel(LiveSnapshot::default());
    let (reload_requests, reloads) = mpsc::channel::<ReloadRequest>(4);
    let (call_orders, placed_calls) = mpsc::channel::<crate::http::live::CallOrder>(4);
    let (command_sender, commands) = mpsc::channel::<crate::http::live::Command>(8);
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
        calls: call_orders,
        commands: command_sender,
    };
    tokio::spawn(async move {
        if let Err(error) = crate::http::serve(http_listener, http_state).await {
            error!(%error, "HTTP API stopped");
        }
    });
    info!(%http_addr, "HTTP API and dashboard listening");
    // `hotline reload` finds the API here, also when the system chose the port.
    let address_file = crate::cli::reload::address_file(&settings.pid_file);
    if let Err(error) = std::fs::write(&address_file, format!("{http_addr}\n")) {
        warn!(%error, file = %address_file.display(), "cannot write the HTTP address file; `hotline reload` uses http.listen");
    }
    let (input_tx, inputs) = mpsc::channel::<DriverInput>(8192);
    let tcp = tcp::TcpContext {
        inputs: input_tx.clone(),
        max_message: settings.sip.max_message_size,
        limits: settings.tcp,
    };
    tokio::spawn(tcp::accept_loop(listener, tcp.clone(), tcp::Plain));
    let server_tls = tls_listener.map(|(listener, server_tls)| {
        let handshake_timeout = settings.tcp.message_timeout;
        tokio::spawn(tcp::accept_loop(
            listener,
            tcp.clone(),
            server_tls.acceptor(handshake_timeout),
        ));
        server_tls
    });
    let media = MediaDriver::new(
        local.ip(),
        input_tx.clone(),
        IdleAudio::Silence,
        settings.rtp.threads,
    )
    .context("starting the RTP media threads")?;
    let stop_signals = shutdown::stop_signals()?;
    let shutdown = shutdown::Shutdown::new(settings.shutdown.grace, settings.sip.t1);
    info!(%local, %public_ip, "SIP listening on UDP and TCP");
    if let Some(port) = tls_port {
        info!(tls = %SocketAddr::new(local.ip(), port), "SIP listening on TLS");
    }
    // The one line test harnesses and operators wait for.
    println!("hotline listening sip={local} (udp+tcp)");
    Ok(Service {
        udp,
        switchboard,
        routing,
        records,
        store,
        media,
        inputs,
        writers: HashMap::new(),
        live,
        reloads,
        placed_calls,
        commands,
        hangups,
        stop_signals,
        shutdown,
        totals: Totals::default(),
        tcp,
        server_tls,
        tls_clients,
    })
}

/// The TLS listener (`sip.tls_listen`) and its certificate; a file that cannot be used stops
/// the start with the setting and the path.
async fn bind_tls(settings: &Settings) -> anyhow::Result<Option<(TcpListener, tls::ServerTls)>> {
    let Some(address) = settings.sip.tls_listen else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&settings.sip.tls_cert, &settings.sip.tls_key) else {
        anyhow::bail!("sip.tls_listen is set: sip.tls_cert and sip.tls_key are required");
    };
    let server_tls = tls::ServerTls::load(cert, key).map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("binding SIP TLS listener to {address} (setting sip.tls_listen)")
    })?;
    Ok(Some((listener, server_tls)))
}

/// How long the records keep a caller's number (`database.retention_days`).
fn retention(settings: &crate::cdr::CdrSettings) -> Option<Duration> {
    settings
        .retention_days
        .map(|days| Duration::from_secs(u64::from(days) * 24 * 3600))
}

/// Returning callers' languages, from the records of the last `remember_language` (no longer
/// than the retention). A database that does not answer in time only means nobody is
/// remembered from before this start.
async fn language_choices(
    store: &crate::cdr::CdrStore,
    routing: &crate::routing::Routing,
    settings: &crate::cdr::CdrSettings,
) -> Vec<crate::cdr::LanguageChoice> {
    let hotline = &routing.hotline;
    let mut window = hotline.remember_language.value;
    if let Some(retention) = retention(settings) {
        window = window.min(retention);
    }
    if window.is_zero() || hotline.languages.value.len() < 2 {
        return Vec::new();
    }
    let since = chrono::Duration::from_std(window)
        .ok()
        .and_then(|window| chrono::Utc::now().checked_sub_signed(window))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let read = tokio::time::timeout(Duration::from_secs(10), store.language_choices(since));
    match read.await {
        Ok(Ok(choices)) => {
            info!(
                callers = choices.len(),
                days = window.as_secs() / 86_400,
                "returning callers' languages read from the call records"
            );
            choices
        }
        Ok(Err(error)) => {
            warn!(%error, "cannot read callers' languages: only new choices are remembered");
            Vec::new()
        }
        Err(_) => {
            warn!("reading callers' languages took too long: only new choices are remembered");
            Vec::new()
        }
    }
}

/// Nice level asked for the runtime's threads, which carry SIP and the supervisors' HTTP.
const WORKER_NICE: i32 = -10;

/// Runs on each tokio thread as it starts: a raised priority (where the service may have it:
/// root or CAP_SYS_NICE) so SIP messages do not wait behind other processes for a CPU on a
/// busy machine. Without the privilege the threads keep normal priority.
pub fn raise_worker_priority() {
    // Also called on the main thread, which runs the SIP loop (`block_on`); the media threads
    // have SCHED_FIFO, above any nice level.
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

/// Who may start calls and registrations: `sip.trusted`, and each trunk's `inbound` blocks
/// (or, without them, its host when that is an address; a host name is resolved by the trunk
/// wiring, not yet here).
/// The switchboard's view of `[trunks.NAME]`: identification and a registration or keep-alive
/// machine each (a password in a file is read now: a missing file stops the start).
fn trunk_setups(
    settings: &Settings,
    public_ip: IpAddr,
    port: u16,
    tls_port: Option<u16>,
) -> anyhow::Result<Vec<crate::call::TrunkSetup>> {
    use crate::sip::registration::keepalive::{Keepalive, KeepaliveConfig};
    use crate::sip::registration::{Registration, RegistrationConfig};
    // A request unanswered this long has failed (the transaction layer's 64·T1).
    let request_timeout = settings.sip.t1 * 64;
    let mut setups = Vec::new();
    for (name, trunk) in &settings.trunks {
        let transport = TransportKind::from(trunk.transport);
        // Over TLS the carrier reaches us on the TLS listener, when there is one.
        let contact = match (transport, tls_port) {
            (TransportKind::Tls, Some(tls_port)) => SocketAddr::new(public_ip, tls_port),
            _ => SocketAddr::new(public_ip, port),
        };
        let watch = if trunk.register {
            let config = RegistrationConfig::from_settings(name, trunk, contact, request_timeout)
                .map_err(anyhow::Error::msg)?;
            crate::call::TrunkWatch::Register(Box::new(Registration::new(config, rand::random())))
        } else {
            let config = KeepaliveConfig::from_settings(name, trunk, contact, request_timeout);
            crate::call::TrunkWatch::Probe(Box::new(Keepalive::new(config, rand::random())))
        };
        let password = trunk
            .resolve_password()
            .map_err(|error| anyhow::anyhow!("trunks.{name}.password_file: {error}"))?;
        let credentials = trunk
            .username
            .as_ref()
            .zip(password)
            .map(|(username, password)| crate::sip::ua::DigestCredentials {
                username: trunk.auth_user().unwrap_or(username).to_owned(),
                password: password.expose().to_owned(),
            });
        setups.push(crate::call::TrunkSetup {
            name: name.clone(),
            host: trunk.host.clone(),
            backup_host: trunk.backup_host.clone(),
            from_user: trunk.username.clone(),
            credentials,
            transport,
            inbound: trunk.inbound.clone(),
            numbers: trunk.numbers.clone(),
            caller_id: trunk.caller_id,
            max_calls: trunk.max_calls,
            max_cps: trunk.max_cps,
            media_encryption: trunk.media_encryption,
            watch,
        });
    }
    Ok(setups)
}

/// The trunks' source blocks: their `inbound`, else their host when it is an IP address.
fn trunk_sources(settings: &Settings) -> Vec<crate::sip::cidr::Cidr> {
    let mut blocks = Vec::new();
    for (name, trunk) in &settings.trunks {
        if !trunk.inbound.is_empty() {
            blocks.extend(trunk.inbound.iter().copied());
            continue;
        }
        let address = crate::settings::split_host_port(&trunk.host)
            .and_then(|(host, _)| host.parse::<IpAddr>().ok());
        match address {
            Some(address) => {
                let host_bits = if address.is_ipv4() { 32 } else { 128 };
                blocks.extend(crate::sip::cidr::Cidr::new(address, host_bits));
            }
            None => warn!(
                trunk = %name,
                host = %trunk.host,
                "trunk calls are not admitted: set its inbound addresses"
            ),
        }
    }
    blocks
}

/// Who may start calls and registrations: `sip.trusted` and the trunks.
fn admitted_sources(settings: &Settings) -> Vec<crate::sip::cidr::Cidr> {
    let mut blocks = settings.sip.trusted.clone();
    blocks.extend(trunk_sources(settings));
    info!(
        blocks = blocks.len(),
        "new calls and registrations admitted from sip.trusted and trunks"
    );
    blocks
}

/// The source limits: `[security]` rates, with the trunks and `security.rate_exempt` exempt.
fn source_limits(settings: &Settings) -> crate::sip::flood::FloodGuard {
    let mut exempt = settings.security.rate_exempt.clone();
    exempt.extend(trunk_sources(settings));
    crate::sip::flood::FloodGuard::new(settings.security.flood_policy(), exempt)
}
