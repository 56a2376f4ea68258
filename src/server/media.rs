//! Media driver: one pacing thread sends every call's RTP on a shared 20 ms clock (absolute
//! deadlines, so no drift), and one small tokio task per leg receives its RTP (latching,
//! DTMF, statistics, inactivity) and, once the leg is bridged to an agent, relays it to the
//! other leg. The per-leg logic lives in `media::stream`. SRTP legs (issue 16) get their
//! contexts here, once per start, re-key or bridge: the pacer's for what it sends, the receive
//! task's for what arrives, and the relay's for what it forwards to an encrypted leg.

mod pacer;
mod receive;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rand::Rng;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::DriverInput;
use crate::media::leg::{LegId, MediaCommand, MediaEvent, MediaSession, RtpReceived};
use crate::media::srtp::SrtpSender;
use crate::media::stream::{IdleAudio, Outbound, ReceiveStats, StreamStart};
use crate::sdp::SdesKeys;
use pacer::PacerCommand;
use receive::{Forward, Receiver};

/// What the pacer and the receive task of one leg share.
struct Shared {
    leg: LegId,
    socket: std::net::UdpSocket,
    /// Where this leg's RTP goes: the SDP address, then where the far end's RTP comes from.
    remote: ArcSwapOption<SocketAddr>,
    /// Bridged: the relay sends this leg's audio, the pacer stays quiet.
    relayed: AtomicBool,
    /// The SSRC of the pacer's stream on this leg (a relay to it picks another).
    ssrc: u32,
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
    /// SRTP packets dropped: authentication failed, replayed, or malformed.
    srtp_rejected: AtomicU64,
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
            srtp_rejected: self.srtp_rejected.load(Ordering::Relaxed),
        }
    }
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
            .spawn(move || pacer::pace(commands, pacer_events))?;
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
            MediaCommand::Update { leg, session } => self.update(leg, session),
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
            ssrc: start.ssrc,
            received: ReceivedCounters::default(),
        });
        let outbound = Outbound::new(start, session.codec, session.payload_type, self.idle);
        self.send(PacerCommand::Add {
            shared: shared.clone(),
            outbound,
            srtp: pacer_sender(session.srtp.as_ref()),
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

    /// A re-INVITE's new description: address, format, keys (new contexts only when they
    /// changed), and the bridge's relays in both directions when the leg is bridged.
    fn update(&mut self, leg: LegId, session: MediaSession) {
        let Some(existing) = self.sessions.get_mut(&leg) else {
            return;
        };
        if let Some(remote) = session.remote {
            existing.shared.remote.store(Some(Arc::new(remote)));
        }
        // Only a new sending key makes a new context: an unchanged one keeps its rollover count.
        let sending = |s: &MediaSession| s.srtp.as_ref().map(|k| (k.profile, k.local.clone()));
        let rekeyed = sending(&existing.session) != sending(&session);
        existing.session = session.clone();
        let _ = existing.updates.send(Some(session.clone()));
        let partner = existing.partner;
        if rekeyed {
            let srtp = pacer_sender(session.srtp.as_ref());
            self.send(PacerCommand::Rekey { leg, srtp });
        }
        self.send(PacerCommand::Format { leg, session });
        if let Some(partner) = partner {
            self.connect(leg, partner);
        }
    }

    fn bridge(&mut self, caller: LegId, agent: LegId) {
        if !self.connect(caller, agent) {
            warn!(%caller, %agent, "bridge of a leg without media");
            return;
        }
        self.send(PacerCommand::StopPlayback { leg: caller });
        info!(%caller, %agent, "media bridged");
    }

    /// Points each leg's relay at the other with both sessions as they are now; false when
    /// either leg has no media.
    fn connect(&mut self, caller: LegId, agent: LegId) -> bool {
        let (Some(a), Some(b)) = (self.sessions.get(&caller), self.sessions.get(&agent)) else {
            return false;
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
        true
    }
}

/// The pacer's context for a leg's keys (we send with `local`).
fn pacer_sender(keys: Option<&SdesKeys>) -> Option<Box<SrtpSender>> {
    keys.map(|keys| Box::new(SrtpSender::new(keys.profile, &keys.local)))
}
