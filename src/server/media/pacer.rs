//! The pacing thread: every call's own RTP (prompts, comfort silence) on a shared 20 ms clock,
//! in phases so each stream keeps a steady send instant. An SRTP leg's packet is protected in
//! place in the pacer's one buffer, which keeps room for the tag: no allocation per packet.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{DriverInput, Shared};
use crate::media::leg::{LegId, MediaEvent, MediaSession};
use crate::media::prompts::Prompt;
use crate::media::srtp::{SrtpSender, MAX_TAG_LEN};
use crate::media::stream::{Outbound, PACKET_LEN};

const FRAME: Duration = Duration::from_millis(20);
/// Falling further behind than this (machine stalled) resynchronises instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(200);
/// The pacer's packet buffer: one G.711 packet and the longest SRTP tag.
const BUFFER_LEN: usize = PACKET_LEN + MAX_TAG_LEN;

/// Commands for the pacing thread.
pub(super) enum PacerCommand {
    Add {
        shared: Arc<Shared>,
        outbound: Outbound,
        /// Protects what the pacer sends when the leg is SRTP.
        srtp: Option<Box<SrtpSender>>,
    },
    Format {
        leg: LegId,
        session: MediaSession,
    },
    /// The leg's sending keys changed (a re-INVITE): a new context, or plain RTP.
    Rekey {
        leg: LegId,
        srtp: Option<Box<SrtpSender>>,
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

struct PacedCall {
    shared: Arc<Shared>,
    outbound: Outbound,
    /// Boxed: plain calls keep the dense vector small.
    srtp: Option<Box<SrtpSender>>,
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
            PacerCommand::Add {
                shared,
                outbound,
                srtp,
            } => {
                let phase = (0..PHASES)
                    .min_by_key(|p| self.phases[*p].len())
                    .unwrap_or(0);
                self.index
                    .insert(shared.leg, (phase, self.phases[phase].len()));
                self.phases[phase].push(PacedCall {
                    shared,
                    outbound,
                    srtp,
                });
            }
            PacerCommand::Format { leg, session } => {
                if let Some(paced) = self.get_mut(leg) {
                    paced
                        .outbound
                        .set_format(session.codec, session.payload_type);
                }
            }
            PacerCommand::Rekey { leg, srtp } => {
                if let Some(paced) = self.get_mut(leg) {
                    paced.srtp = srtp;
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
pub(super) fn pace(commands: std_mpsc::Receiver<PacerCommand>, events: mpsc::Sender<DriverInput>) {
    raise_pacer_priority();
    let mut calls = Phases::default();
    let mut packet = [0u8; BUFFER_LEN];
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
                    let len = protect(paced, &mut packet, tick.len);
                    // A full socket buffer drops this frame rather than delaying every other call.
                    let sent = match len {
                        0 => Ok(0),
                        _ => paced.shared.socket.send_to(&packet[..len], remote),
                    };
                    if let Err(error) = sent {
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

/// The length to send of the `len`-byte packet in `packet`: as it is for a plain leg, SRTP in
/// place (tag appended) for an encrypted one; 0 (nothing to send) if protecting fails.
fn protect(paced: &mut PacedCall, packet: &mut [u8; BUFFER_LEN], len: usize) -> usize {
    let Some(sender) = paced.srtp.as_mut() else {
        return len;
    };
    sender.protect(packet, len).unwrap_or_else(|error| {
        // Cannot happen with the pacer's own growing sequence numbers; never send it plain.
        debug!(leg = %paced.shared.leg, %error, "SRTP protect failed: frame dropped");
        0
    })
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
