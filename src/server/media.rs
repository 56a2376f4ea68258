//! Media driver: one pacing thread sends every call's RTP on a shared 20 ms clock (absolute
//! deadlines, so no drift), and one small tokio task per leg receives its RTP (latching,
//! DTMF, statistics, inactivity) and, once the leg is bridged to an agent, relays it to the
//! other leg. The per-leg logic lives in `media::stream`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use rand::Rng;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::DriverInput;
use crate::media::g711;
use crate::media::leg::{LegId, MediaCommand, MediaEvent, MediaSession, RtpReceived};
use crate::media::prompts::Prompt;
use crate::media::stream::{
    IdleAudio, Inbound, Outbound, ReceiveStats, Received, StreamStart, PACKET_LEN, RTP_HEADER_LEN,
};
use crate::sdp::Codec;

const FRAME: Duration = Duration::from_millis(20);
/// Falling further behind than this (machine stalled) resynchronises instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(200);

/// What the pacer and the receive task of one leg share.
struct Shared {
    leg: LegId,
    socket: std::net::UdpSocket,
    /// Where this leg's RTP goes: the SDP address, then where the far end's RTP comes from.
    remote: ArcSwapOption<SocketAddr>,
    /// Bridged: the relay sends this leg's audio, the pacer stays quiet.
    relayed: AtomicBool,
    /// The receive task's latest statistics, so the call record has them the moment the leg
    /// ends (the task itself stops a little later).
    received: ReceivedCounters,
}

/// RTP receive statistics published by the receive task: relaxed stores, no lock per packet.
#[derive(Default)]
struct ReceivedCounters {
    packets: AtomicU64,
    lost: AtomicU64,
    jitter_us: AtomicU64,
}

impl ReceivedCounters {
    fn publish(&self, stats: &ReceiveStats) {
        self.packets.store(stats.packets, Ordering::Relaxed);
        self.lost.store(stats.lost(), Ordering::Relaxed);
        // Whole microseconds are ample for a jitter figure kept to 0.001 ms.
        let jitter_us = (stats.jitter_ms() * 1000.0).round() as u64;
        self.jitter_us.store(jitter_us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RtpReceived {
        RtpReceived {
            packets: self.packets.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            jitter_ms: self.jitter_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// The other leg of a bridge, as seen by one receive task.
#[derive(Clone)]
struct Forward {
    to: Arc<Shared>,
    from: MediaSession,
    into: MediaSession,
}

/// Commands for the pacing thread.
enum PacerCommand {
    Add {
        shared: Arc<Shared>,
        outbound: Outbound,
    },
    Format {
        leg: LegId,
        session: MediaSession,
    },
    Play {
        leg: LegId,
        prompts: Vec<Arc<Prompt>>,
        generation: u64,
    },
    StopPlayback {
        leg: LegId,
    },
    Remove {
        leg: LegId,
    },
}

struct Session {
    shared: Arc<Shared>,
    session: MediaSession,
    updates: watch::Sender<Option<MediaSession>>,
    forward: watch::Sender<Option<Forward>>,
    partner: Option<LegId>,
}

pub(super) struct MediaDriver {
    bind_ip: IpAddr,
    events: mpsc::Sender<DriverInput>,
    pacer: std_mpsc::Sender<PacerCommand>,
    sessions: HashMap<LegId, Session>,
    idle: IdleAudio,
}

impl MediaDriver {
    pub(super) fn new(
        bind_ip: IpAddr,
        events: mpsc::Sender<DriverInput>,
        idle: IdleAudio,
    ) -> std::io::Result<Self> {
        let (pacer, commands) = std_mpsc::channel();
        let pacer_events = events.clone();
        std::thread::Builder::new()
            .name("rtp-pacer".into())
            .spawn(move || pace(commands, pacer_events))?;
        Ok(Self {
            bind_ip,
            events,
            pacer,
            sessions: HashMap::new(),
            idle,
        })
    }

    /// Carries out one command; stopping a leg returns what that leg received.
    pub(super) fn handle(&mut self, command: MediaCommand) -> Option<RtpReceived> {
        match command {
            MediaCommand::Start {
                leg,
                local_port,
                session,
            } => self.start(leg, local_port, session),
            MediaCommand::Update { leg, session } => {
                if let Some(existing) = self.sessions.get_mut(&leg) {
                    if let Some(remote) = session.remote {
                        existing.shared.remote.store(Some(Arc::new(remote)));
                    }
                    existing.session = session.clone();
                    let _ = existing.updates.send(Some(session.clone()));
                }
                self.send(PacerCommand::Format { leg, session });
            }
            MediaCommand::Play {
                leg,
                prompts,
                generation,
            } => self.send(PacerCommand::Play {
                leg,
                prompts,
                generation,
            }),
            MediaCommand::StopPlayback { leg } => self.send(PacerCommand::StopPlayback { leg }),
            MediaCommand::Bridge { caller, agent } => self.bridge(caller, agent),
            MediaCommand::Unbridge { caller, agent } => {
                for leg in [caller, agent] {
                    if let Some(session) = self.sessions.get_mut(&leg) {
                        session.partner = None;
                        session.shared.relayed.store(false, Ordering::Relaxed);
                        let _ = session.forward.send(None);
                    }
                }
                info!(%caller, %agent, "media unbridged (agent hold)");
            }
            MediaCommand::Stop { leg, .. } => {
                let received = self.sessions.remove(&leg).map(|session| {
                    let _ = session.updates.send(None);
                    if let Some(partner) = session.partner.and_then(|p| self.sessions.get_mut(&p)) {
                        partner.partner = None;
                        partner.shared.relayed.store(false, Ordering::Relaxed);
                        let _ = partner.forward.send(None);
                    }
                    session.shared.received.snapshot()
                });
                self.send(PacerCommand::Remove { leg });
                return received;
            }
        }
        None
    }

    fn send(&self, command: PacerCommand) {
        if self.pacer.send(command).is_err() {
            warn!("RTP pacer thread is gone");
        }
    }

    fn start(&mut self, leg: LegId, local_port: u16, session: MediaSession) {
        let addr = SocketAddr::new(self.bind_ip, local_port);
        let bound = std::net::UdpSocket::bind(addr)
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            .and_then(|socket| socket.try_clone().map(|clone| (socket, clone)));
        let (send_socket, receive_socket) = match bound {
            Ok(pair) => pair,
            Err(error) => {
                let reason = format!("binding RTP port {addr}: {error}");
                let _ = self
                    .events
                    .try_send(DriverInput::Media(MediaEvent::Failed { leg, reason }));
                return;
            }
        };
        // Readable only: the pacer sends on this socket, and a writable interest would wake a
        // tokio worker on every packet sent (bench/README.md, "What dominates").
        // SAFETY: the AsyncFd owns this UdpSocket, so its descriptor stays open and the same
        // socket for as long as the registration lives.
        let registered =
            unsafe { AsyncFd::register_with_interest(receive_socket, Interest::READABLE) };
        let receive_socket = match registered.map_err(|error| error.into_parts().1) {
            Ok(socket) => socket,
            Err(error) => {
                let reason = format!("registering RTP port {addr}: {error}");
                let _ = self
                    .events
                    .try_send(DriverInput::Media(MediaEvent::Failed { leg, reason }));
                return;
            }
        };
        let mut rng = rand::thread_rng();
        let start = StreamStart {
            ssrc: rng.gen(),
            sequence: rng.gen(),
            timestamp: rng.gen(),
        };
        let shared = Arc::new(Shared {
            leg,
            socket: send_socket,
            remote: ArcSwapOption::new(session.remote.map(Arc::new)),
            relayed: AtomicBool::new(false),
            received: ReceivedCounters::default(),
        });
        let outbound = Outbound::new(start, session.codec, session.payload_type, self.idle);
        self.send(PacerCommand::Add {
            shared: shared.clone(),
            outbound,
        });
        let (updates, watched) = watch::channel(Some(session.clone()));
        let (forward, forwards) = watch::channel(None);
        let task = Receiver {
            leg,
            socket: receive_socket,
            shared: shared.clone(),
            updates: watched,
            forwards,
            events: self.events.clone(),
        };
        tokio::spawn(task.run());
        self.sessions.insert(
            leg,
            Session {
                shared,
                session,
                updates,
                forward,
                partner: None,
            },
        );
    }

    fn bridge(&mut self, caller: LegId, agent: LegId) {
        let (Some(a), Some(b)) = (self.sessions.get(&caller), self.sessions.get(&agent)) else {
            warn!(%caller, %agent, "bridge of a leg without media");
            return;
        };
        let to_agent = Forward {
            to: b.shared.clone(),
            from: a.session.clone(),
            into: b.session.clone(),
        };
        let to_caller = Forward {
            to: a.shared.clone(),
            from: b.session.clone(),
            into: a.session.clone(),
        };
        for (leg, forward, partner) in [(caller, to_agent, agent), (agent, to_caller, caller)] {
            if let Some(session) = self.sessions.get_mut(&leg) {
                session.partner = Some(partner);
                session.shared.relayed.store(true, Ordering::Relaxed);
                let _ = session.forward.send(Some(forward));
            }
        }
        self.send(PacerCommand::StopPlayback { leg: caller });
        info!(%caller, %agent, "media bridged");
    }
}

struct PacedCall {
    shared: Arc<Shared>,
    outbound: Outbound,
}

/// Calls are spread over this many phases of the 20 ms frame, each phase served on its own
/// sub-tick: one pass over 2,000 calls takes ~13 ms of sends, and serving a quarter at a time
/// keeps each stream's send instant within its frame steady (measured in bench/README.md).
const PHASES: usize = 4;

/// The pacer's calls, by phase; a leg keeps its phase for life so its packets stay 20 ms apart.
#[derive(Default)]
struct Phases {
    phases: [Vec<PacedCall>; PHASES],
    index: HashMap<LegId, (usize, usize)>,
}

impl Phases {
    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn get_mut(&mut self, leg: LegId) -> Option<&mut PacedCall> {
        let (phase, slot) = *self.index.get(&leg)?;
        self.phases[phase].get_mut(slot)
    }

    fn apply(&mut self, command: PacerCommand) {
        match command {
            PacerCommand::Add { shared, outbound } => {
                let phase = (0..PHASES)
                    .min_by_key(|p| self.phases[*p].len())
                    .unwrap_or(0);
                self.index
                    .insert(shared.leg, (phase, self.phases[phase].len()));
                self.phases[phase].push(PacedCall { shared, outbound });
            }
            PacerCommand::Format { leg, session } => {
                if let Some(paced) = self.get_mut(leg) {
                    paced
                        .outbound
                        .set_format(session.codec, session.payload_type);
                }
            }
            PacerCommand::Play {
                leg,
                prompts,
                generation,
            } => {
                if let Some(paced) = self.get_mut(leg) {
                    paced.outbound.play(prompts, generation);
                }
            }
            PacerCommand::StopPlayback { leg } => {
                if let Some(paced) = self.get_mut(leg) {
                    paced.outbound.stop();
                }
            }
            PacerCommand::Remove { leg } => {
                if let Some((phase, slot)) = self.index.remove(&leg) {
                    let calls = &mut self.phases[phase];
                    calls.swap_remove(slot);
                    if let Some(moved) = calls.get(slot) {
                        self.index.insert(moved.shared.leg, (phase, slot));
                    }
                }
            }
        }
    }
}

/// The pacing loop: every 5 ms one phase's calls each send their next 20 ms frame, in one pass
/// over a dense vector, so every leg sends once per 20 ms on an absolute clock.
fn pace(commands: std_mpsc::Receiver<PacerCommand>, events: mpsc::Sender<DriverInput>) {
    raise_pacer_priority();
    let mut calls = Phases::default();
    let mut packet = [0u8; PACKET_LEN];
    let mut next_tick = Instant::now();
    let mut phase = 0;
    let sub_tick = FRAME / PHASES as u32;
    loop {
        // Idle: block until there is a leg, then restart the clock.
        if calls.is_empty() {
            match commands.recv() {
                Ok(command) => calls.apply(command),
                Err(_) => return,
            }
            next_tick = Instant::now();
        }
        loop {
            match commands.try_recv() {
                Ok(command) => calls.apply(command),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        }
        for paced in &mut calls.phases[phase] {
            let tick = paced.outbound.tick(&mut packet);
            if tick.len > 0 && !paced.shared.relayed.load(Ordering::Relaxed) {
                if let Some(remote) = paced.shared.remote.load().as_deref() {
                    // A full socket buffer drops this frame rather than delaying every other call.
                    if let Err(error) = paced.shared.socket.send_to(&packet[..tick.len], remote) {
                        debug!(leg = %paced.shared.leg, %error, "RTP send failed");
                    }
                }
            }
            if tick.playback_finished {
                let event = DriverInput::Media(MediaEvent::PlaybackFinished {
                    leg: paced.shared.leg,
                    generation: paced.outbound.generation(),
                });
                if events.try_send(event).is_err() {
                    warn!(leg = %paced.shared.leg, "event queue full: playback end dropped");
                }
            }
        }
        phase = (phase + 1) % PHASES;
        next_tick += sub_tick;
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
        } else if now - next_tick > MAX_LAG {
            warn!(
                lag_ms = (now - next_tick).as_millis() as u64,
                "RTP pacer fell behind; resynchronising"
            );
            next_tick = now;
        }
    }
}

/// One call's receive side.
struct Receiver {
    leg: LegId,
    socket: AsyncFd<std::net::UdpSocket>,
    shared: Arc<Shared>,
    updates: watch::Receiver<Option<MediaSession>>,
    forwards: watch::Receiver<Option<Forward>>,
    events: mpsc::Sender<DriverInput>,
}

impl Receiver {
    /// Receives until the leg stops or goes silent for its inactivity timeout.
    async fn run(mut self) {
        let Some(session) = self.updates.borrow().clone() else {
            return;
        };
        let mut inbound = Inbound::new(
            session.codec,
            session.payload_type,
            session.telephone_event,
            Instant::now(),
        );
        let mut timeout = session.inactivity_timeout;
        // A local copy: the relay path reads it per packet without touching the watch's lock.
        let mut forward: Option<Forward> = None;
        let mut buffer = [0u8; 2048];
        loop {
            let idle = async {
                match timeout {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = receive_from(&self.socket, &mut buffer) => {
                    let (len, from) = match received {
                        Ok(ok) => ok,
                        Err(error) => {
                            debug!(leg = %self.leg, %error, "RTP receive error");
                            continue;
                        }
                    };
                    let (what, latched) = inbound.on_packet(Instant::now(), from, &buffer[..len]);
                    self.shared.received.publish(&inbound.stats());
                    if latched {
                        self.shared.remote.store(Some(Arc::new(from)));
                    }
                    if let Some(forward) = &forward {
                        if what != Received::Ignored {
                            relay(forward, &mut buffer[..len]);
                        }
                    }
                    if let Received::Digit(digit, source) = what {
                        let event = MediaEvent::Digit { leg: self.leg, digit, source };
                        let _ = self.events.send(DriverInput::Media(event)).await;
                    }
                }
                changed = self.updates.changed() => {
                    let session = if changed.is_ok() { self.updates.borrow().clone() } else { None };
                    let Some(session) = session else { break };
                    inbound.set_format(session.codec, session.payload_type, session.telephone_event);
                    timeout = session.inactivity_timeout;
                }
                changed = self.forwards.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    forward = self.forwards.borrow().clone();
                }
                () = idle => {
                    let _ = self.events.send(DriverInput::Media(MediaEvent::Inactive { leg: self.leg })).await;
                    break;
                }
            }
        }
        let stats = inbound.stats();
        info!(leg = %self.leg, packets = stats.packets, lost = stats.lost(), jitter_ms = stats.jitter_ms(), "RTP received");
    }
}

/// One datagram from a socket registered for readability only.
async fn receive_from(
    socket: &AsyncFd<std::net::UdpSocket>,
    buffer: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        let mut ready = socket.readable().await?;
        if let Ok(result) = ready.try_io(|inner| inner.get_ref().recv_from(buffer)) {
            return result;
        }
    }
}

/// Real-time priority for the pacer where the service may have it (root or CAP_SYS_NICE): on a
/// busy machine a preempted pass delays every leg behind it. Without it the pacer still runs.
fn raise_pacer_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain syscall on the calling thread with a valid parameter struct.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if result == 0 {
            info!("RTP pacer runs with real-time priority (SCHED_FIFO 10)");
        } else {
            warn!(error = %std::io::Error::last_os_error(), "RTP pacer keeps normal priority");
        }
    }
}

/// Sends one received packet on to the other leg: payload type mapped, G.711 law converted
/// when the legs differ, telephone-events passed on only if the other leg negotiated them.
fn relay(forward: &Forward, packet: &mut [u8]) {
    if packet.len() < RTP_HEADER_LEN {
        return;
    }
    let payload_type = packet[1] & 0x7F;
    let mapped = if payload_type == forward.from.payload_type {
        let payload = &mut packet[RTP_HEADER_LEN..];
        match (forward.from.codec, forward.into.codec) {
            (Codec::Pcmu, Codec::Pcma) => payload
                .iter_mut()
                .for_each(|byte| *byte = g711::ulaw_to_alaw(*byte)),
            (Codec::Pcma, Codec::Pcmu) => payload
                .iter_mut()
                .for_each(|byte| *byte = g711::alaw_to_ulaw(*byte)),
            _ => {}
        }
        Some(forward.into.payload_type)
    } else if Some(payload_type) == forward.from.telephone_event {
        forward.into.telephone_event
    } else {
        None
    };
    let Some(mapped) = mapped else { return };
    packet[1] = (packet[1] & 0x80) | (mapped & 0x7F);
    if let Some(remote) = forward.to.remote.load().as_deref() {
        if let Err(error) = forward.to.socket.send_to(packet, remote) {
            debug!(leg = %forward.to.leg, %error, "relay send failed");
        }
    }
}
