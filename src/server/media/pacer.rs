//! Pacing within a media shard: every call's own RTP (prompts, comfort silence) on a shared
//! 20 ms clock, in phases so each stream keeps a steady send instant. An SRTP leg's packet is
//! protected in place in the shard's one buffer, which keeps room for the tag: no allocation
//! per packet.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::{DriverInput, Shared};
use crate::media::leg::{LegId, MediaEvent};
use crate::media::srtp::{SrtpSender, MAX_TAG_LEN};
use crate::media::stream::{Outbound, PACKET_LEN};

pub(super) const FRAME: Duration = Duration::from_millis(20);
/// The pacer's packet buffer: one G.711 packet and the longest SRTP tag.
const BUFFER_LEN: usize = PACKET_LEN + MAX_TAG_LEN;

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
    packet: [u8; BUFFER_LEN],
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            phases: Default::default(),
            index: HashMap::new(),
            packet: [0; BUFFER_LEN],
        }
    }
}

impl Phases {
    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
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
        let packet = &mut self.packet;
        for paced in &mut self.phases[phase] {
            if !paced.started {
                paced.started = true;
                continue;
            }
            let tick = paced.outbound.tick(packet);
            if tick.len > 0 && !paced.shared.relayed.load(Ordering::Relaxed) {
                if let Some(remote) = paced.shared.remote.load().as_deref() {
                    let len = protect(
                        paced.shared.leg,
                        paced.srtp.as_deref_mut(),
                        packet,
                        tick.len,
                    );
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
                events.push_back(DriverInput::Media(MediaEvent::PlaybackFinished {
                    leg: paced.shared.leg,
                    generation: paced.outbound.generation(),
                }));
            }
        }
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
