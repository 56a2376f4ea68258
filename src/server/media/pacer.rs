//! Pacing within a media shard: every call's own RTP (prompts, comfort silence) on a shared
//! 20 ms clock, in phases so each stream keeps a steady send instant. An SRTP leg's packet is
//! protected in place in the shard's one buffer, which keeps room for the tag: no allocation
//! per packet.

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::batch::SendBatch;
use super::{DriverInput, Shared};
use crate::media::leg::{LegId, MediaEvent};
use crate::media::srtp::{SrtpSender, MAX_TAG_LEN};
use crate::media::stream::{Outbound, PACKET_LEN};

pub(super) const FRAME: Duration = Duration::from_millis(20);
/// A packet buffer of the pacer: one G.711 packet and the longest SRTP tag.
pub(super) const BUFFER_LEN: usize = PACKET_LEN + MAX_TAG_LEN;

pub(super) struct PacedCall {
    pub(super) shared: Arc<Shared>,
    pub(super) outbound: Outbound,
    /// Protects what the pacer sends when the leg is SRTP; boxed, so plain calls keep the
    /// dense vector small.
    pub(super) srtp: Option<Box<SrtpSender>>,
    /// Skips its first pass: a leg's own stream begins a frame after its start, by which time
    /// a leg started and bridged at once (an agent answering) is relayed. Otherwise one frame
    /// of ours before the relayed stream makes some phones (baresip 1.0) drop the relayed
    /// stream as late: another SSRC, with lower sequence numbers.
    pub(super) started: bool,
}

/// Calls are spread over this many phases of the 20 ms frame, each phase served on its own
/// sub-tick: serving a quarter of a shard's calls at a time keeps each stream's send instant
/// within its frame steady (measured in bench/README.md).
pub(super) const PHASES: usize = 4;

/// A shard's paced calls, by phase; a leg keeps its phase for life so its packets stay 20 ms
/// apart.
pub(super) struct Phases {
    phases: [Vec<PacedCall>; PHASES],
    index: HashMap<LegId, (usize, usize)>,
    /// A phase's packets go out together through io_uring where the kernel allows it...
    batch: Option<SendBatch<BUFFER_LEN>>,
    /// ...and otherwise one by one from this buffer.
    packet: [u8; BUFFER_LEN],
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            phases: Default::default(),
            index: HashMap::new(),
            batch: None,
            packet: [0; BUFFER_LEN],
        }
    }
}

impl Phases {
    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sends through `batch` from now on.
    pub(super) fn batch_sends(&mut self, batch: SendBatch<BUFFER_LEN>) {
        self.batch = Some(batch);
    }

    pub(super) fn get_mut(&mut self, leg: LegId) -> Option<&mut PacedCall> {
        let (phase, slot) = *self.index.get(&leg)?;
        self.phases[phase].get_mut(slot)
    }

    /// Adds a call to the phase with the fewest.
    pub(super) fn add(&mut self, paced: PacedCall) {
        let phase = (0..PHASES)
            .min_by_key(|p| self.phases[*p].len())
            .unwrap_or(0);
        self.index
            .insert(paced.shared.leg, (phase, self.phases[phase].len()));
        self.phases[phase].push(paced);
    }

    pub(super) fn remove(&mut self, leg: LegId) {
        if let Some((phase, slot)) = self.index.remove(&leg) {
            let calls = &mut self.phases[phase];
            calls.swap_remove(slot);
            if let Some(moved) = calls.get(slot) {
                self.index.insert(moved.shared.leg, (phase, slot));
            }
        }
    }

    /// Sends the next 20 ms frame of every call in `phase` (those not relayed), in one pass
    /// over a dense vector; a finished playback is reported through `events`.
    pub(super) fn pace(&mut self, phase: usize, events: &mut VecDeque<DriverInput>) {
        let Phases {
            phases,
            batch,
            packet,
            ..
        } = self;
        let mut batch = batch.as_mut().filter(|batch| !batch.failed());
        for paced in &mut phases[phase] {
            if !paced.started {
                paced.started = true;
                continue;
            }
            let playback_finished = match batch.as_deref_mut() {
                Some(batch) => {
                    let (len, finished) = paced.frame(batch.next_buffer());
                    if len > 0 {
                        let shared = &paced.shared;
                        batch.queue(shared.sockets.sender.as_raw_fd(), len, shared.leg.0);
                    }
                    finished
                }
                None => {
                    let (len, finished) = paced.frame(packet);
                    if len > 0 {
                        paced.shared.send(&packet[..len]);
                    }
                    finished
                }
            };
            if playback_finished {
                events.push_back(DriverInput::Media(MediaEvent::PlaybackFinished {
                    leg: paced.shared.leg,
                    generation: paced.outbound.generation(),
                }));
            }
        }
        if let Some(batch) = batch {
            batch.flush();
        }
    }
}

impl PacedCall {
    /// Writes the call's next frame into `buffer`: the length to send (0: nothing, as when
    /// relayed or without a destination), and whether its playback just finished.
    fn frame(&mut self, buffer: &mut [u8; BUFFER_LEN]) -> (usize, bool) {
        let tick = self.outbound.tick(buffer);
        let shared = &self.shared;
        let sending = !shared.relayed.load(Ordering::Relaxed) && shared.remote.load().is_some();
        let len = match tick.len {
            0 => 0,
            _ if !sending => 0,
            len => protect(shared.leg, self.srtp.as_deref_mut(), buffer, len),
        };
        (len, tick.playback_finished)
    }
}

/// The length to send of the `len`-byte packet in `packet`: as it is for a plain leg, SRTP in
/// place (tag appended) for an encrypted one; 0 (nothing to send) if protecting fails.
fn protect(
    leg: LegId,
    srtp: Option<&mut SrtpSender>,
    packet: &mut [u8; BUFFER_LEN],
    len: usize,
) -> usize {
    let Some(sender) = srtp else {
        return len;
    };
    sender.protect(packet, len).unwrap_or_else(|error| {
        // Cannot happen with the pacer's own growing sequence numbers; never send it plain.
        debug!(%leg, %error, "SRTP protect failed: frame dropped");
        0
    })
}
