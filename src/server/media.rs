//! Media driver: the switchboard's media commands carried out by media shards, one thread per
//! core (`shard`), each owning a share of the legs: it paces their RTP on a shared 20 ms clock
//! (absolute deadlines, so no drift), receives what arrives on their sockets (latching, DTMF,
//! statistics, inactivity) and, once a leg is bridged to an agent, relays it to the other leg.
//! The per-leg logic lives in `media::stream`. SRTP legs (issue 16) get their contexts here,
//! once per start, re-key or bridge: the pacer's for what it sends, the receive side's for
//! what arrives, and the relay's for what it forwards to an encrypted leg.

mod batch;
mod pacer;
mod poll;
mod receive;
mod shard;
mod sockets;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use rand::Rng;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::DriverInput;
use crate::media::leg::{LegId, MediaCommand, MediaEvent, MediaSession, RtpReceived};
use crate::media::srtp::SrtpSender;
use crate::media::stream::{IdleAudio, Outbound, ReceiveStats, StreamStart};
use crate::sdp::SdesKeys;
use pacer::PacedCall;
use receive::{Forward, Receiver};
use shard::{ShardCommand, ShardHandle};
use sockets::LegSockets;

/// What the pacer, the receive side and a relay towards one leg share.
struct Shared {
    leg: LegId,
    sockets: LegSockets,
    /// Where this leg's RTP goes (and its sender is connected to): the SDP address, then where
    /// the far end's RTP comes from.
    remote: ArcSwapOption<SocketAddr>,
    /// Bridged: the relay sends this leg's audio, the pacer stays quiet.
    relayed: AtomicBool,
    /// The SSRC of the pacer's stream on this leg (a relay to it picks another).
    ssrc: u32,
    /// The receive side's latest statistics, so the call record has them the moment the leg
    /// ends (its shard removes it a little later).
    received: ReceivedCounters,
}

impl Shared {
    /// Sends this leg's RTP from now on to `remote`.
    fn set_remote(&self, remote: SocketAddr) {
        if let Err(error) = self.sockets.connect(remote) {
            warn!(leg = %self.leg, %remote, %error, "RTP destination refused");
        }
        self.remote.store(Some(Arc::new(remote)));
    }

    /// Sends one datagram to the leg's remote (nothing while it has none). A full socket
    /// buffer drops it rather than delaying every other leg of the shard.
    fn send(&self, datagram: &[u8]) {
        if self.remote.load().is_none() {
            return;
        }
        if let Err(error) = self.sockets.sender.send(datagram) {
            debug!(leg = %self.leg, %error, "RTP send failed");
        }
    }
}

/// RTP receive statistics published by the receive side: relaxed stores, no lock per packet.
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
    shard: usize,
    partner: Option<LegId>,
}

pub(super) struct MediaDriver {
    bind_ip: IpAddr,
    events: mpsc::Sender<DriverInput>,
    shards: Vec<ShardHandle>,
    sessions: HashMap<LegId, Session>,
    /// Ports of stopped legs whose sockets a shard may still hold: the sockets share their
    /// port (`SO_REUSEPORT`), so a new leg binding it meanwhile would split its datagrams.
    closing: Vec<(u16, Weak<Shared>)>,
    idle: IdleAudio,
}

impl MediaDriver {
    /// Starts `threads` media shards (0: one per core).
    pub(super) fn new(
        bind_ip: IpAddr,
        events: mpsc::Sender<DriverInput>,
        idle: IdleAudio,
        threads: usize,
    ) -> std::io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let shards = (0..threads)
            .map(|index| ShardHandle::spawn(index, events.clone()))
            .collect::<std::io::Result<_>>()?;
        info!(threads, "RTP media threads started");
        Ok(Self {
            bind_ip,
            events,
            shards,
            sessions: HashMap::new(),
            closing: Vec::new(),
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
            } => self.send(
                leg,
                ShardCommand::Play {
                    leg,
                    prompts,
                    generation,
                },
            ),
            MediaCommand::StopPlayback { leg } => {
                self.send(leg, ShardCommand::StopPlayback { leg })
            }
            MediaCommand::Bridge { caller, agent } => self.bridge(caller, agent),
            MediaCommand::Unbridge { caller, agent } => {
                for leg in [caller, agent] {
                    if let Some(session) = self.sessions.get_mut(&leg) {
                        session.partner = None;
                        session.shared.relayed.store(false, Ordering::Relaxed);
                        self.send(leg, ShardCommand::Forward { leg, forward: None });
                    }
                }
                info!(%caller, %agent, "media unbridged (agent hold)");
            }
            MediaCommand::Stop { leg, .. } => {
                let session = self.sessions.remove(&leg)?;
                if let Some(partner) = session.partner {
                    if let Some(other) = self.sessions.get_mut(&partner) {
                        other.partner = None;
                        other.shared.relayed.store(false, Ordering::Relaxed);
                        self.send(
                            partner,
                            ShardCommand::Forward {
                                leg: partner,
                                forward: None,
                            },
                        );
                    }
                }
                let shard = &mut self.shards[session.shard];
                shard.legs -= 1;
                shard.send(ShardCommand::Remove { leg });
                if let Ok(local) = session.shared.sockets.listener.local_addr() {
                    self.closing
                        .push((local.port(), Arc::downgrade(&session.shared)));
                }
                return Some(session.shared.received.snapshot());
            }
        }
        None
    }

    /// Sends a command to the shard that owns `leg` (none: the leg has no media).
    fn send(&self, leg: LegId, command: ShardCommand) {
        if let Some(session) = self.sessions.get(&leg) {
            self.shards[session.shard].send(command);
        }
    }

    fn start(&mut self, leg: LegId, local_port: u16, session: MediaSession) {
        let addr = SocketAddr::new(self.bind_ip, local_port);
        self.closing.retain(|(_, shared)| shared.strong_count() > 0);
        let bound = if self.closing.iter().any(|(port, _)| *port == local_port) {
            Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
        } else {
            LegSockets::bind(addr, session.remote)
        };
        let sockets = match bound {
            Ok(sockets) => sockets,
            Err(error) => {
                let reason = format!("binding RTP port {addr}: {error}");
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
            sockets,
            remote: ArcSwapOption::new(session.remote.map(Arc::new)),
            relayed: AtomicBool::new(false),
            ssrc: start.ssrc,
            received: ReceivedCounters::default(),
        });
        let paced = PacedCall {
            shared: shared.clone(),
            outbound: Outbound::new(start, session.codec, session.payload_type, self.idle),
            srtp: pacer_sender(session.srtp.as_ref()),
            started: false,
        };
        let receiver = Box::new(Receiver::new(shared.clone(), &session, Instant::now()));
        // The shard with the fewest legs takes it.
        let Some((index, shard)) = self
            .shards
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, shard)| shard.legs)
        else {
            return;
        };
        shard.legs += 1;
        shard.send(ShardCommand::Add { paced, receiver });
        self.sessions.insert(
            leg,
            Session {
                shared,
                session,
                shard: index,
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
            existing.shared.set_remote(remote);
        }
        // Only a new sending key makes a new context: an unchanged one keeps its rollover count.
        let sending = |s: &MediaSession| s.srtp.as_ref().map(|k| (k.profile, k.local.clone()));
        let srtp = (sending(&existing.session) != sending(&session))
            .then(|| pacer_sender(session.srtp.as_ref()));
        existing.session = session.clone();
        let partner = existing.partner;
        self.send(leg, ShardCommand::Update { leg, session, srtp });
        if let Some(partner) = partner {
            self.connect(leg, partner);
        }
    }

    fn bridge(&mut self, caller: LegId, agent: LegId) {
        if !self.connect(caller, agent) {
            warn!(%caller, %agent, "bridge of a leg without media");
            return;
        }
        self.send(caller, ShardCommand::StopPlayback { leg: caller });
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
                let forward = Some(forward);
                self.shards[session.shard].send(ShardCommand::Forward { leg, forward });
            }
        }
        true
    }
}

/// The pacer's context for a leg's keys (we send with `local`).
fn pacer_sender(keys: Option<&SdesKeys>) -> Option<Box<SrtpSender>> {
    keys.map(|keys| Box::new(SrtpSender::new(keys.profile, &keys.local)))
}
