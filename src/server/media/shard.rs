//! A media shard: one thread that owns a share of the legs and does all their RTP work: it
//! paces their own streams (prompts, comfort silence) in phases of the 20 ms frame, and between
//! ticks waits on one epoll set for their sockets (two per leg: `sockets`), reading a datagram
//! from each ready socket and relaying it to the other leg of a bridge, whichever shard owns
//! that leg (its sockets and address are shared; the relay state is this leg's), at the end of
//! the round in one batch (`batch`). No task, channel or allocation per packet; commands
//! arrive on a channel with an eventfd wake-up. The service runs one shard per core
//! (`rtp.threads`).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::batch::SendBatch;
use super::pacer::{PacedCall, Phases, FRAME, PHASES};
use super::poll::{Epoll, Wake};
use super::receive::{Forward, Receiver};
use super::DriverInput;
use crate::media::leg::{LegId, MediaEvent, MediaSession};
use crate::media::prompts::Prompt;
use crate::media::srtp::{SrtpSender, MAX_TAG_LEN};

/// Falling further behind than this (machine stalled) resynchronises instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(200);
/// After handling what arrived, the shard reads its sockets again at most this much later:
/// the longest a datagram waits for its relay under load, and at most 1,000 wake-ups a second
/// whatever the packet rate. Idle, the first datagram wakes the shard at once.
const RECEIVE_PAUSE: Duration = Duration::from_millis(1);
/// How often legs are checked for their inactivity timeout.
const SWEEP: Duration = Duration::from_millis(250);
/// The epoll token of the shard's wake-up eventfd. A leg's sockets have tokens from its slab
/// index: twice it for the listener, and one more for the sender.
const WAKE_TOKEN: u64 = u64::MAX;
/// Largest datagram read; the buffer keeps room after it for an SRTP tag added when relaying.
const DATAGRAM_LEN: usize = 2048;
const RECEIVE_LEN: usize = DATAGRAM_LEN + MAX_TAG_LEN;

/// What the driver asks of a shard, for one of its legs.
pub(super) enum ShardCommand {
    Add {
        paced: PacedCall,
        receiver: Box<Receiver>,
    },
    /// A re-INVITE's description; `srtp` is Some when the sending keys changed (a new
    /// context, or plain RTP).
    Update {
        leg: LegId,
        session: MediaSession,
        srtp: Option<Option<Box<SrtpSender>>>,
    },
    Play {
        leg: LegId,
        prompts: Vec<Arc<Prompt>>,
        generation: u64,
    },
    StopPlayback {
        leg: LegId,
    },
    /// Relay the leg's RTP to the other leg of a bridge, or (None) stop.
    Forward {
        leg: LegId,
        forward: Option<Forward>,
    },
    Remove {
        leg: LegId,
    },
}

/// The driver's side of a shard: its command channel and wake-up, and how many legs it has.
pub(super) struct ShardHandle {
    commands: Option<std_mpsc::Sender<ShardCommand>>,
    wake: Arc<Wake>,
    pub(super) legs: usize,
}

impl ShardHandle {
    pub(super) fn spawn(index: usize, events: mpsc::Sender<DriverInput>) -> io::Result<Self> {
        let (commands, receiver) = std_mpsc::channel();
        let wake = Arc::new(Wake::new()?);
        let epoll = Epoll::new()?;
        epoll.add(wake.raw_fd(), WAKE_TOKEN)?;
        let shard = Shard {
            index,
            commands: receiver,
            wake: wake.clone(),
            epoll,
            phases: Phases::default(),
            slots: Vec::new(),
            free: Vec::new(),
            tokens: HashMap::new(),
            buffer: Box::new([0; RECEIVE_LEN]),
            relays: None,
            events: VecDeque::new(),
            sink: events,
        };
        std::thread::Builder::new()
            .name(format!("rtp-media-{index}"))
            .spawn(move || shard.run())?;
        Ok(ShardHandle {
            commands: Some(commands),
            wake,
            legs: 0,
        })
    }

    pub(super) fn send(&self, command: ShardCommand) {
        let sent = self.commands.as_ref().map(|c| c.send(command).is_ok());
        if sent != Some(true) {
            warn!("RTP media thread is gone");
        }
        self.wake.notify();
    }
}

impl Drop for ShardHandle {
    /// Closing the channel and waking the thread ends it.
    fn drop(&mut self) {
        self.commands = None;
        self.wake.notify();
    }
}

/// A leg as its shard holds it.
struct Slot {
    receiver: Box<Receiver>,
    /// False once the leg went silent for its timeout and was reported: its socket is out
    /// of the epoll set until the leg is removed.
    listening: bool,
}

struct Shard {
    index: usize,
    commands: std_mpsc::Receiver<ShardCommand>,
    wake: Arc<Wake>,
    epoll: Epoll,
    phases: Phases,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    tokens: HashMap<LegId, usize>,
    buffer: Box<[u8; RECEIVE_LEN]>,
    /// Relayed packets go out in batches where io_uring works (`buffer` is used otherwise).
    relays: Option<SendBatch<RECEIVE_LEN>>,
    /// Events not yet taken by the switchboard's queue: kept, never dropped, never waited for.
    events: VecDeque<DriverInput>,
    sink: mpsc::Sender<DriverInput>,
}

impl Shard {
    fn run(mut self) {
        raise_priority(self.index);
        match SendBatch::new().and_then(|paced| Ok((paced, SendBatch::new()?))) {
            Ok((paced, relayed)) => {
                self.phases.batch_sends(paced);
                self.relays = Some(relayed);
            }
            Err(error) => {
                warn!(shard = self.index, %error, "io_uring unavailable: RTP is sent one packet per system call")
            }
        }
        let sub_tick = FRAME / PHASES as u32;
        let mut next_tick = Instant::now();
        let mut phase = 0;
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let idle = self.phases.is_empty();
            if !self.apply_commands() {
                return;
            }
            let now = Instant::now();
            if idle {
                // The clock restarts with the first leg (no catching up on idle time).
                next_tick = now;
            }
            if !self.phases.is_empty() && now >= next_tick {
                self.phases.pace(phase, &mut self.events);
                phase = (phase + 1) % PHASES;
                next_tick += sub_tick;
                let now = Instant::now();
                if now > next_tick + MAX_LAG {
                    warn!(
                        shard = self.index,
                        lag_ms = (now - next_tick).as_millis() as u64,
                        "RTP pacer fell behind; resynchronising"
                    );
                    next_tick = now;
                }
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP;
            }
            self.flush_events();
            let timeout = if !self.phases.is_empty() {
                Some(next_tick.saturating_duration_since(Instant::now()))
            } else if !self.events.is_empty() {
                Some(SWEEP)
            } else {
                None
            };
            if self.receive(timeout) > 0 {
                // Busy: let datagrams gather for a moment (up to the next tick) instead of
                // sleeping and waking for each one; a context switch per packet cost more
                // than the packet (bench/README.md, "Media on every core").
                let pause_until = (Instant::now() + RECEIVE_PAUSE).min(next_tick);
                let pause = pause_until.saturating_duration_since(Instant::now());
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
        }
    }

    /// Applies every waiting command; false once the driver is gone.
    fn apply_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(command),
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, command: ShardCommand) {
        match command {
            ShardCommand::Add { paced, receiver } => self.add(paced, receiver),
            ShardCommand::Update { leg, session, srtp } => {
                if let Some(paced) = self.phases.get_mut(leg) {
                    paced
                        .outbound
                        .set_format(session.codec, session.payload_type);
                    if let Some(srtp) = srtp {
                        paced.srtp = srtp;
                    }
                }
                if let Some(slot) = self.slot(leg) {
                    slot.receiver.update(&session, Instant::now());
                }
            }
            ShardCommand::Play {
                leg,
                prompts,
                generation,
            } => {
                if let Some(paced) = self.phases.get_mut(leg) {
                    paced.outbound.play(prompts, generation);
                }
            }
            ShardCommand::StopPlayback { leg } => {
                if let Some(paced) = self.phases.get_mut(leg) {
                    paced.outbound.stop();
                }
            }
            ShardCommand::Forward { leg, forward } => {
                if let Some(slot) = self.slot(leg) {
                    slot.receiver.forward(forward);
                }
            }
            ShardCommand::Remove { leg } => self.remove(leg),
        }
    }

    fn add(&mut self, paced: PacedCall, receiver: Box<Receiver>) {
        let leg = paced.shared.leg;
        let token = self.free.pop().unwrap_or(self.slots.len());
        let sockets = &paced.shared.sockets;
        let watched = self
            .epoll
            .add(sockets.listener.as_raw_fd(), 2 * token as u64)
            .and_then(|()| {
                self.epoll
                    .add(sockets.sender.as_raw_fd(), 2 * token as u64 + 1)
            });
        if let Err(error) = watched {
            self.epoll.delete(sockets.listener.as_raw_fd());
            let reason = format!("watching the RTP socket: {error}");
            self.events
                .push_back(DriverInput::Media(MediaEvent::Failed { leg, reason }));
            self.free.push(token);
            return;
        }
        let slot = Slot {
            receiver,
            listening: true,
        };
        match self.slots.get_mut(token) {
            Some(free) => *free = Some(slot),
            None => self.slots.push(Some(slot)),
        }
        self.tokens.insert(leg, token);
        self.phases.add(paced);
    }

    fn remove(&mut self, leg: LegId) {
        self.phases.remove(leg);
        let Some(token) = self.tokens.remove(&leg) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(token).and_then(Option::take) {
            if slot.listening {
                unwatch(&self.epoll, &slot.receiver);
            }
            slot.receiver.finish();
            self.free.push(token);
        }
    }

    fn slot(&mut self, leg: LegId) -> Option<&mut Slot> {
        let token = *self.tokens.get(&leg)?;
        self.slots.get_mut(token)?.as_mut()
    }

    /// Reports legs silent for their inactivity timeout (once each) and stops listening to
    /// them; the switchboard ends their calls.
    fn sweep(&mut self, now: Instant) {
        for slot in self.slots.iter_mut().flatten() {
            if slot.listening && slot.receiver.inactive(now) {
                slot.listening = false;
                unwatch(&self.epoll, &slot.receiver);
                let leg = slot.receiver.shared.leg;
                self.events
                    .push_back(DriverInput::Media(MediaEvent::Inactive { leg }));
            }
        }
    }

    fn flush_events(&mut self) {
        while let Some(event) = self.events.pop_front() {
            match self.sink.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.events.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.events.clear();
                    return;
                }
            }
        }
    }

    /// Waits up to `timeout` for the legs' sockets (or a command) and handles what arrived:
    /// one datagram per ready socket (one `recvfrom`; the epoll is level-triggered, so a socket
    /// with more waiting comes back at once), which measured cheaper than `recvmmsg` or reading
    /// until `EAGAIN` at a packet per socket per 20 ms (bench/README.md). Returns how many
    /// sockets and wake-ups were ready.
    fn receive(&mut self, timeout: Option<Duration>) -> usize {
        let Shard {
            epoll,
            slots,
            buffer,
            relays,
            events,
            wake,
            ..
        } = self;
        let mut ready = 0;
        for token in epoll.wait(timeout) {
            ready += 1;
            if token == WAKE_TOKEN {
                wake.clear();
                continue;
            }
            let Some(slot) = usize::try_from(token / 2)
                .ok()
                .and_then(|index| slots.get_mut(index))
                .and_then(Option::as_mut)
            else {
                continue;
            };
            let receiver = &mut slot.receiver;
            let now = Instant::now();
            // While a relay batch works, each datagram is read into a buffer of its own and
            // the round's relayed packets go out together.
            let event = match relays.as_mut().filter(|batch| !batch.failed()) {
                Some(batch) => {
                    let buffer = batch.next_buffer();
                    let Some((len, from)) = read(receiver, token, buffer) else {
                        continue;
                    };
                    let (event, relayed) = receiver.on_datagram(now, buffer, len, from);
                    if let Some((to, len)) = relayed {
                        batch.queue(to.sockets.sender.as_raw_fd(), len, to.leg.0);
                    }
                    event
                }
                None => {
                    let Some((len, from)) = read(receiver, token, &mut buffer[..]) else {
                        continue;
                    };
                    let (event, relayed) = receiver.on_datagram(now, &mut buffer[..], len, from);
                    if let Some((to, len)) = relayed {
                        to.send(&buffer[..len]);
                    }
                    event
                }
            };
            if let Some(event) = event {
                events.push_back(DriverInput::Media(event));
            }
        }
        if let Some(batch) = relays {
            batch.flush();
        }
        ready
    }
}

/// Reads one datagram from the socket of `receiver`'s leg that `token` names into `buffer`.
fn read(receiver: &Receiver, token: u64, buffer: &mut [u8]) -> Option<(usize, SocketAddr)> {
    let sockets = &receiver.shared.sockets;
    let socket = match token % 2 {
        0 => &sockets.listener,
        _ => &sockets.sender,
    };
    match socket.recv_from(&mut buffer[..DATAGRAM_LEN]) {
        Ok(received) => Some(received),
        Err(error) => {
            if error.kind() != io::ErrorKind::WouldBlock {
                debug!(leg = %receiver.shared.leg, %error, "RTP receive error");
            }
            None
        }
    }
}

fn unwatch(epoll: &Epoll, receiver: &Receiver) {
    let sockets = &receiver.shared.sockets;
    epoll.delete(sockets.listener.as_raw_fd());
    epoll.delete(sockets.sender.as_raw_fd());
}

/// Real-time priority for a media thread where the service may have it (root or
/// CAP_SYS_NICE): on a busy machine a preempted pass delays every leg behind it. Without it
/// the thread still runs.
fn raise_priority(shard: usize) {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if result == 0 {
        info!(
            shard,
            "RTP media thread runs with real-time priority (SCHED_FIFO 10)"
        );
    } else {
        let error = io::Error::last_os_error();
        warn!(shard, %error, "RTP media thread keeps normal priority");
    }
}
