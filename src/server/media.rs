//! Media driver: one pacing thread sends every call's RTP on a shared 20 ms clock (absolute
//! deadlines, so no drift), and one small tokio task per call receives its RTP (latching,
//! DTMF, statistics, inactivity). The per-call logic lives in `media::stream`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::DriverInput;
use crate::media::prompts::Prompt;
use crate::media::stream::{IdleAudio, Inbound, Outbound, Received, StreamStart, PACKET_LEN};
use crate::sip::endpoint::{CallRef, MediaCommand, MediaEvent, MediaSession};

const FRAME: Duration = Duration::from_millis(20);
/// Falling further behind than this (machine stalled) resynchronises instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(200);

/// Commands for the pacing thread.
enum PacerCommand {
    Add {
        call: CallRef,
        socket: std::net::UdpSocket,
        remote: Option<SocketAddr>,
        outbound: Outbound,
    },
    Remote {
        call: CallRef,
        remote: SocketAddr,
    },
    Format {
        call: CallRef,
        session: MediaSession,
    },
    Play {
        call: CallRef,
        prompts: Vec<Arc<Prompt>>,
        generation: u64,
    },
    StopPlayback {
        call: CallRef,
    },
    Remove {
        call: CallRef,
    },
}

pub(super) struct MediaDriver {
    bind_ip: IpAddr,
    events: mpsc::Sender<DriverInput>,
    pacer: std_mpsc::Sender<PacerCommand>,
    receivers: HashMap<CallRef, watch::Sender<Option<MediaSession>>>,
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
            receivers: HashMap::new(),
            idle,
        })
    }

    pub(super) fn handle(&mut self, command: MediaCommand) {
        match command {
            MediaCommand::Start {
                call,
                local_port,
                session,
            } => self.start(call, local_port, session),
            MediaCommand::Update { call, session } => {
                if let Some(updates) = self.receivers.get(&call) {
                    let _ = updates.send(Some(session.clone()));
                }
                self.send(PacerCommand::Format { call, session });
            }
            MediaCommand::Play {
                call,
                prompts,
                generation,
            } => self.send(PacerCommand::Play {
                call,
                prompts,
                generation,
            }),
            MediaCommand::StopPlayback { call } => self.send(PacerCommand::StopPlayback { call }),
            MediaCommand::Stop { call } => {
                if let Some(updates) = self.receivers.remove(&call) {
                    let _ = updates.send(None);
                }
                self.send(PacerCommand::Remove { call });
            }
        }
    }

    fn send(&self, command: PacerCommand) {
        if self.pacer.send(command).is_err() {
            warn!("RTP pacer thread is gone");
        }
    }

    fn start(&mut self, call: CallRef, local_port: u16, session: MediaSession) {
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
                    .try_send(DriverInput::Media(MediaEvent::Failed { call, reason }));
                return;
            }
        };
        let mut rng = rand::thread_rng();
        let start = StreamStart {
            ssrc: rng.gen(),
            sequence: rng.gen(),
            timestamp: rng.gen(),
        };
        let outbound = Outbound::new(start, session.codec, session.payload_type, self.idle);
        self.send(PacerCommand::Add {
            call,
            socket: send_socket,
            remote: session.remote,
            outbound,
        });
        let (updates, watched) = watch::channel(Some(session));
        self.receivers.insert(call, updates);
        let events = self.events.clone();
        let pacer = self.pacer.clone();
        match UdpSocket::from_std(receive_socket) {
            Ok(socket) => {
                tokio::spawn(receive(call, socket, watched, events, pacer));
            }
            Err(error) => {
                let reason = format!("registering RTP port {addr}: {error}");
                let _ = self
                    .events
                    .try_send(DriverInput::Media(MediaEvent::Failed { call, reason }));
            }
        }
    }
}

struct PacedCall {
    call: CallRef,
    socket: std::net::UdpSocket,
    remote: Option<SocketAddr>,
    outbound: Outbound,
}

/// The pacing loop: every 20 ms, one packet per call, in one pass over a dense vector.
fn pace(commands: std_mpsc::Receiver<PacerCommand>, events: mpsc::Sender<DriverInput>) {
    let mut calls: Vec<PacedCall> = Vec::new();
    let mut index: HashMap<CallRef, usize> = HashMap::new();
    let mut packet = [0u8; PACKET_LEN];
    let mut next_tick = Instant::now();
    loop {
        // Idle: block until there is a call, then restart the clock.
        if calls.is_empty() {
            match commands.recv() {
                Ok(command) => apply(command, &mut calls, &mut index),
                Err(_) => return,
            }
            next_tick = Instant::now();
        }
        loop {
            match commands.try_recv() {
                Ok(command) => apply(command, &mut calls, &mut index),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        }
        for paced in &mut calls {
            let tick = paced.outbound.tick(&mut packet);
            if let (true, Some(remote)) = (tick.len > 0, paced.remote) {
                // A full socket buffer drops this frame rather than delaying every other call.
                if let Err(error) = paced.socket.send_to(&packet[..tick.len], remote) {
                    debug!(call = %paced.call, %error, "RTP send failed");
                }
            }
            if tick.playback_finished {
                let event = DriverInput::Media(MediaEvent::PlaybackFinished {
                    call: paced.call,
                    generation: paced.outbound.generation(),
                });
                if events.try_send(event).is_err() {
                    warn!(call = %paced.call, "event queue full: playback end dropped");
                }
            }
        }
        next_tick += FRAME;
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

fn apply(command: PacerCommand, calls: &mut Vec<PacedCall>, index: &mut HashMap<CallRef, usize>) {
    let find = |index: &HashMap<CallRef, usize>, call: CallRef| index.get(&call).copied();
    match command {
        PacerCommand::Add {
            call,
            socket,
            remote,
            outbound,
        } => {
            index.insert(call, calls.len());
            calls.push(PacedCall {
                call,
                socket,
                remote,
                outbound,
            });
        }
        PacerCommand::Remote { call, remote } => {
            if let Some(i) = find(index, call) {
                calls[i].remote = Some(remote);
            }
        }
        PacerCommand::Format { call, session } => {
            if let Some(i) = find(index, call) {
                calls[i]
                    .outbound
                    .set_format(session.codec, session.payload_type);
                if session.remote.is_some() {
                    calls[i].remote = session.remote;
                }
            }
        }
        PacerCommand::Play {
            call,
            prompts,
            generation,
        } => {
            if let Some(i) = find(index, call) {
                calls[i].outbound.play(prompts, generation);
            }
        }
        PacerCommand::StopPlayback { call } => {
            if let Some(i) = find(index, call) {
                calls[i].outbound.stop();
            }
        }
        PacerCommand::Remove { call } => {
            if let Some(i) = index.remove(&call) {
                calls.swap_remove(i);
                if let Some(moved) = calls.get(i) {
                    index.insert(moved.call, i);
                }
            }
        }
    }
}

/// Receives one call's RTP until the call stops or goes silent for its inactivity timeout.
async fn receive(
    call: CallRef,
    socket: UdpSocket,
    mut updates: watch::Receiver<Option<MediaSession>>,
    events: mpsc::Sender<DriverInput>,
    pacer: std_mpsc::Sender<PacerCommand>,
) {
    let Some(session) = updates.borrow().clone() else {
        return;
    };
    let mut inbound = Inbound::new(
        session.codec,
        session.payload_type,
        session.telephone_event,
        Instant::now(),
    );
    let mut timeout = session.inactivity_timeout;
    let mut buffer = [0u8; 2048];
    loop {
        let idle = async {
            match timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = socket.recv_from(&mut buffer) => {
                let (len, from) = match received {
                    Ok(ok) => ok,
                    Err(error) => {
                        debug!(%call, %error, "RTP receive error");
                        continue;
                    }
                };
                let (what, latched) = inbound.on_packet(Instant::now(), from, &buffer[..len]);
                if latched {
                    let _ = pacer.send(PacerCommand::Remote { call, remote: from });
                }
                if let Received::Digit(digit, source) = what {
                    let _ = events.send(DriverInput::Media(MediaEvent::Digit { call, digit, source })).await;
                }
            }
            changed = updates.changed() => {
                let session = if changed.is_ok() { updates.borrow().clone() } else { None };
                let Some(session) = session else { break };
                inbound.set_format(session.codec, session.payload_type, session.telephone_event);
                timeout = session.inactivity_timeout;
            }
            () = idle => {
                let _ = events.send(DriverInput::Media(MediaEvent::Inactive { call })).await;
                break;
            }
        }
    }
    let stats = inbound.stats();
    info!(%call, packets = stats.packets, lost = stats.lost(), jitter_ms = stats.jitter_ms(), "RTP received");
}
