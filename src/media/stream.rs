//! One call's RTP as pure state: what to send on each 20 ms tick (prompt frames, comfort
//! silence) and what received packets mean (latching, digits, loss and jitter per RFC 3550).
//! The pacing driver calls `Outbound::tick` for every call once per tick; the receive driver
//! calls `Inbound::on_packet` for every datagram. Neither allocates per packet.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

use super::dtmf::inband::InbandDetector;
use super::dtmf::rfc4733::Rfc4733Receiver;
use super::dtmf::DtmfSource;
use super::g711;
use super::prompts::{Prompt, FRAME_SAMPLES};
use crate::sdp::Codec;

/// RTP header without CSRCs or extensions.
pub const RTP_HEADER_LEN: usize = 12;
/// One 20 ms G.711 packet.
pub const PACKET_LEN: usize = RTP_HEADER_LEN + FRAME_SAMPLES;
/// RTP timestamp units per 20 ms frame at 8 kHz.
pub const TIMESTAMP_STEP: u32 = FRAME_SAMPLES as u32;

const ULAW_SILENCE: [u8; FRAME_SAMPLES] = [0xFF; FRAME_SAMPLES];
const ALAW_SILENCE: [u8; FRAME_SAMPLES] = [0xD5; FRAME_SAMPLES];

/// What to send while no prompt plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAudio {
    /// G.711 silence frames keep NAT bindings and jitter buffers alive.
    Silence,
    Nothing,
}

/// Random starting points of an RTP stream (RFC 3550 §5.1: they must not be predictable).
#[derive(Debug, Clone, Copy)]
pub struct StreamStart {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

/// Result of one tick: bytes written into the caller's buffer and whether the playlist ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub len: usize,
    pub playback_finished: bool,
}

/// The per-packet header fields that change as the stream goes on.
#[derive(Debug)]
struct Header {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    payload_type: u8,
    /// The next packet begins a talkspurt (first frame of a prompt): set the marker bit.
    marker: bool,
}

impl Header {
    fn write(&mut self, timestamp: u32, payload: &[u8], out: &mut [u8]) -> usize {
        let len = RtpPacketBuilder::new()
            .payload_type(self.payload_type)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.sequence))
            .timestamp(timestamp)
            .marked(self.marker)
            .payload(payload)
            .build_into(out)
            .unwrap_or(0);
        self.sequence = self.sequence.wrapping_add(1);
        self.marker = false;
        len
    }
}

#[derive(Debug)]
pub struct Outbound {
    header: Header,
    codec: Codec,
    idle: IdleAudio,
    playlist: VecDeque<Arc<Prompt>>,
    playing: Option<(Arc<Prompt>, usize)>,
    /// Tag of the latest `play`, reported with the end of playback so a stale end is known.
    generation: u64,
}

impl Outbound {
    pub fn new(start: StreamStart, codec: Codec, payload_type: u8, idle: IdleAudio) -> Self {
        Self {
            header: Header {
                ssrc: start.ssrc,
                sequence: start.sequence,
                timestamp: start.timestamp,
                payload_type,
                marker: false,
            },
            codec,
            idle,
            playlist: VecDeque::new(),
            playing: None,
            generation: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.header.ssrc
    }

    /// Re-negotiation (re-INVITE) may change codec and payload type; the stream continues.
    pub fn set_format(&mut self, codec: Codec, payload_type: u8) {
        self.codec = codec;
        self.header.payload_type = payload_type;
    }

    /// Queues prompts after whatever is playing; `generation` tags the end of this playlist.
    pub fn play(&mut self, prompts: impl IntoIterator<Item = Arc<Prompt>>, generation: u64) {
        self.playlist.extend(prompts);
        self.generation = generation;
    }

    /// The tag of the latest `play`.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Stops the current prompt and drops the queue; true when something was playing.
    pub fn stop(&mut self) -> bool {
        let was_playing = self.is_playing();
        self.playing = None;
        self.playlist.clear();
        was_playing
    }

    pub fn is_playing(&self) -> bool {
        self.playing.is_some() || !self.playlist.is_empty()
    }

    /// Produces this tick's packet into the start of `out` (at least [`PACKET_LEN`] bytes; the
    /// pacer leaves room behind it for an SRTP tag). The timestamp advances every tick, sent or
    /// not, so the receiver sees true media time across silences (RFC 3550 §5.1).
    pub fn tick(&mut self, out: &mut [u8]) -> Tick {
        let timestamp = self.header.timestamp;
        self.header.timestamp = timestamp.wrapping_add(TIMESTAMP_STEP);
        if self.playing.is_none() {
            if let Some(next) = self.playlist.pop_front() {
                self.playing = Some((next, 0));
                self.header.marker = true;
            }
        }
        let (len, prompt_ended) = match &mut self.playing {
            Some((prompt, index)) => {
                let len = match prompt.frame(*index, self.codec) {
                    Some(frame) => self.header.write(timestamp, frame, out),
                    None => 0,
                };
                *index += 1;
                (len, *index >= prompt.frames())
            }
            None => {
                let len = match (self.idle, self.codec) {
                    (IdleAudio::Silence, Codec::Pcmu) => {
                        self.header.write(timestamp, &ULAW_SILENCE, out)
                    }
                    (IdleAudio::Silence, Codec::Pcma) => {
                        self.header.write(timestamp, &ALAW_SILENCE, out)
                    }
                    (IdleAudio::Nothing, _) => 0,
                };
                (len, false)
            }
        };
        if prompt_ended {
            self.playing = None;
        }
        Tick {
            len,
            playback_finished: prompt_ended && self.playlist.is_empty(),
        }
    }
}

/// What one received datagram meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Not RTP, a foreign source after latching, or an unknown payload type.
    Ignored,
    Audio,
    /// A telephone-event packet that did not start a new press.
    Event,
    Digit(char, DtmfSource),
}

/// RFC 3550 Appendix A.1/A.8 receive statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiveStats {
    pub packets: u64,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    started: bool,
    /// Interarrival jitter in timestamp units (1/8000 s), RFC 3550 §6.4.1.
    jitter: f64,
    last_transit: Option<i64>,
}

impl ReceiveStats {
    /// One packet: every packet counts for loss (they share one sequence space); only audio
    /// for jitter, since a telephone-event's timestamp stays at the key's start for its whole
    /// length and would read as delay.
    fn update(&mut self, seq: u16, rtp_timestamp: u32, arrival_units: i64, audio: bool) {
        self.packets += 1;
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            }
        }
        if !audio {
            return;
        }
        let transit = arrival_units - i64::from(rtp_timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        u64::from(self.cycles + u32::from(self.max_seq)) - u64::from(self.base_seq) + 1
    }

    /// Packets never received (duplicates can make the raw difference negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets)
    }

    pub fn jitter_ms(&self) -> f64 {
        self.jitter / 8.0
    }
}

#[derive(Debug)]
pub struct Inbound {
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
    /// Where RTP comes from once the first packet arrived (symmetric RTP for callers behind NAT).
    latched: Option<SocketAddr>,
    ssrc: Option<u32>,
    rfc4733: Rfc4733Receiver,
    /// Only when the offer had no telephone-event: callers' tones are then in the audio.
    inband: Option<Box<InbandDetector>>,
    stats: ReceiveStats,
    epoch: Instant,
}

impl Inbound {
    pub fn new(
        codec: Codec,
        payload_type: u8,
        telephone_event: Option<u8>,
        epoch: Instant,
    ) -> Self {
        Self {
            codec,
            payload_type,
            telephone_event,
            latched: None,
            ssrc: None,
            rfc4733: Rfc4733Receiver::new(),
            inband: telephone_event
                .is_none()
                .then(|| Box::new(InbandDetector::new())),
            stats: ReceiveStats::default(),
            epoch,
        }
    }

    /// How this call's digits arrive, as far as the media can tell.
    pub fn dtmf_source(&self) -> DtmfSource {
        if self.telephone_event.is_some() {
            DtmfSource::Rfc4733
        } else {
            DtmfSource::Inband
        }
    }

    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    pub fn stats(&self) -> ReceiveStats {
        self.stats
    }

    pub fn set_format(&mut self, codec: Codec, payload_type: u8, telephone_event: Option<u8>) {
        self.codec = codec;
        self.payload_type = payload_type;
        self.telephone_event = telephone_event;
        if telephone_event.is_some() {
            self.inband = None;
        } else if self.inband.is_none() {
            self.inband = Some(Box::new(InbandDetector::new()));
        }
    }

    /// Returns what the datagram meant and whether it latched the remote address just now.
    pub fn on_packet(
        &mut self,
        arrival: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> (Received, bool) {
        let Ok(packet) = RtpReader::new(bytes) else {
            return (Received::Ignored, false);
        };
        if packet.version() != 2 {
            return (Received::Ignored, false);
        }
        let newly_latched = match self.latched {
            Some(addr) if addr != from => return (Received::Ignored, false),
            Some(_) => false,
            None => {
                self.latched = Some(from);
                true
            }
        };
        let ssrc = packet.ssrc();
        if self.ssrc.is_some_and(|known| known != ssrc) {
            // A new stream (e.g. after a trunk re-anchors media): its timestamps are unrelated.
            self.rfc4733.reset();
            self.stats = ReceiveStats::default();
        }
        self.ssrc = Some(ssrc);
        let arrival_units =
            (arrival.saturating_duration_since(self.epoch).as_micros() as i64) * 8 / 1000;
        let payload_type = packet.payload_type();
        self.stats.update(
            u16::from(packet.sequence_number()),
            packet.timestamp(),
            arrival_units,
            payload_type == self.payload_type,
        );

        if Some(payload_type) == self.telephone_event {
            let received =
                match self
                    .rfc4733
                    .on_packet(packet.timestamp(), packet.mark(), packet.payload())
                {
                    Some(digit) => Received::Digit(digit, DtmfSource::Rfc4733),
                    None => Received::Event,
                };
            return (received, newly_latched);
        }
        if payload_type != self.payload_type {
            return (Received::Ignored, newly_latched);
        }
        if let Some(detector) = self.inband.as_mut() {
            let mut pcm = [0i16; FRAME_SAMPLES];
            let payload = packet.payload();
            let take = payload.len().min(FRAME_SAMPLES);
            let decoded = match self.codec {
                Codec::Pcmu => g711::decode_ulaw_into(&payload[..take], &mut pcm),
                Codec::Pcma => g711::decode_alaw_into(&payload[..take], &mut pcm),
            };
            if let Some(digit) = detector.process(&pcm[..decoded]) {
                return (Received::Digit(digit, DtmfSource::Inband), newly_latched);
            }
        }
        (Received::Audio, newly_latched)
    }
}

#[cfg(test)]
mod tests;
