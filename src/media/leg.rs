//! The media vocabulary shared by the switchboard and the media driver: a leg (one RTP stream
//! of a call: the caller's, or an agent's), the commands that start, feed, bridge and stop it,
//! and what the driver reports back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::dtmf::DtmfSource;
use super::prompts::Prompt;
use crate::sdp::{Codec, SdesKeys};

/// One RTP stream the media driver runs, stable for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

impl std::fmt::Display for LegId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the media driver needs to know about a negotiated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSession {
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    /// Silence longer than this ends the call; None while the caller holds us (no RTP expected).
    pub inactivity_timeout: Option<Duration>,
    /// SRTP keys when the leg is encrypted: we protect what we send to it with `local` and
    /// unprotect what it sends with `remote`. The bridge re-encrypts between legs as needed.
    pub srtp: Option<SdesKeys>,
}

#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Bind `local_port` and exchange RTP with the session's remote (None: wait for the first
    /// packet).
    Start {
        leg: LegId,
        local_port: u16,
        session: MediaSession,
    },
    /// A re-INVITE changed the far end (hold, new address).
    Update { leg: LegId, session: MediaSession },
    /// Queue prompts after whatever plays (shared, pre-encoded frames).
    Play {
        leg: LegId,
        prompts: Vec<Arc<Prompt>>,
        /// Comes back with the end of playback, so an end that crossed a newer command is known.
        generation: u64,
    },
    /// Relay RTP between a caller and the agent leg that answered (B2BUA).
    Bridge { caller: LegId, agent: LegId },
    /// Stop relaying between them (the agent put the caller on hold): each leg's own pacer
    /// speaks again, so the caller can hear music.
    Unbridge { caller: LegId, agent: LegId },
    /// Cut the current prompt at the next frame and drop the queue (barge-in).
    StopPlayback { leg: LegId },
    /// Release the leg; the driver answers with [`MediaEvent::Stopped`].
    Stop { leg: LegId },
}

/// What a leg received, for the call record.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtpReceived {
    pub packets: u64,
    pub lost: u64,
    pub jitter_ms: f64,
    /// SRTP packets dropped (authentication failed, replayed or malformed); 0 for plain RTP.
    pub srtp_rejected: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// No RTP arrived for the session's inactivity timeout.
    Inactive { leg: LegId },
    /// The driver could not set the leg up (port taken by another program...).
    Failed { leg: LegId, reason: String },
    /// A DTMF key from the RTP stream (RFC 4733 or in-band tones).
    Digit {
        leg: LegId,
        digit: char,
        source: DtmfSource,
    },
    /// The last queued prompt has been sent in full.
    PlaybackFinished { leg: LegId, generation: u64 },
    /// The leg is released (answer to `Stop`), with what it received.
    Stopped { leg: LegId, rtp: RtpReceived },
}
