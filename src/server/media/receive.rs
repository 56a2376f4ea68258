//! One leg's receive side, as the shard that owns the leg runs it for every datagram: SRTP
//! unprotected in place first (a packet failing authentication or replayed is dropped and
//! counted before anything else sees it, so it can neither latch nor press a key), then
//! latching, DTMF and statistics, and, while bridged, the relay to the other leg: payload type
//! mapped, G.711 law converted, and protected for that leg when it is SRTP. Contexts are made
//! when the keys or the bridge change, never per packet; the hot path neither allocates nor
//! locks.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Shared;
use crate::media::g711;
use crate::media::leg::{MediaEvent, MediaSession};
use crate::media::srtp::{MasterKey, SrtpError, SrtpProfile, SrtpReceiver, SrtpSender};
use crate::media::stream::{Inbound, Received, RTP_HEADER_LEN};
use crate::sdp::{Codec, SdesKeys};

/// Packets a relayed source may arrive late by and merely be dropped; further back, its
/// numbering restarted and the relay starts a new SRTP context.
const MAX_REORDER: u64 = 64;

/// The other leg of a bridge, as seen by one leg's receive side.
#[derive(Clone)]
pub(super) struct Forward {
    pub(super) to: Arc<Shared>,
    pub(super) from: MediaSession,
    pub(super) into: MediaSession,
}

/// One leg's receive side.
pub(super) struct Receiver {
    pub(super) shared: Arc<Shared>,
    inbound: Inbound,
    unprotect: Option<Box<Unprotect>>,
    rejected: u64,
    relay: Option<Relay>,
    /// Silence longer than this ends the call (None: none expected, the caller holds us).
    timeout: Option<Duration>,
    /// The last datagram or session change: the inactivity timeout counts from it.
    last_heard: Instant,
}

/// The leg's receiving SRTP context and the keys it was made from.
struct Unprotect {
    keys: SdesKeys,
    receiver: SrtpReceiver,
}

impl Unprotect {
    fn for_keys(keys: Option<&SdesKeys>) -> Option<Box<Unprotect>> {
        keys.map(|keys| {
            Box::new(Unprotect {
                keys: keys.clone(),
                receiver: SrtpReceiver::new(keys.profile, &keys.remote),
            })
        })
    }
}

impl Receiver {
    pub(super) fn new(shared: Arc<Shared>, session: &MediaSession, now: Instant) -> Receiver {
        Receiver {
            shared,
            inbound: Inbound::new(
                session.codec,
                session.payload_type,
                session.telephone_event,
                now,
            ),
            unprotect: Unprotect::for_keys(session.srtp.as_ref()),
            rejected: 0,
            relay: None,
            timeout: session.inactivity_timeout,
            last_heard: now,
        }
    }

    /// A re-INVITE's new description: format, timeout, and a new context only for a new key
    /// (the peer's stream goes on under an unchanged one, and so does our context).
    pub(super) fn update(&mut self, session: &MediaSession, now: Instant) {
        self.inbound
            .set_format(session.codec, session.payload_type, session.telephone_event);
        self.timeout = session.inactivity_timeout;
        self.last_heard = now;
        let receiving = |keys: &SdesKeys| (keys.profile, keys.remote.clone());
        let current = self.unprotect.as_ref().map(|srtp| receiving(&srtp.keys));
        if current != session.srtp.as_ref().map(receiving) {
            self.unprotect = Unprotect::for_keys(session.srtp.as_ref());
        }
    }

    /// Relay what arrives to the other leg of a bridge, or (None) stop relaying.
    pub(super) fn forward(&mut self, forward: Option<Forward>) {
        self.relay = forward.map(Relay::new);
    }

    /// Whether the leg has been silent for its inactivity timeout at `now`.
    pub(super) fn inactive(&self, now: Instant) -> bool {
        self.timeout
            .is_some_and(|limit| now.saturating_duration_since(self.last_heard) >= limit)
    }

    /// One datagram of `len` bytes in `buffer` (which has room for an SRTP tag after it) from
    /// `from`; a key pressed comes back as an event. While bridged, the datagram is made ready
    /// for the other leg in place: that leg and the length to send it are returned with it.
    pub(super) fn on_datagram(
        &mut self,
        now: Instant,
        buffer: &mut [u8],
        len: usize,
        from: SocketAddr,
    ) -> (Option<MediaEvent>, Option<(&Shared, usize)>) {
        self.last_heard = now;
        let leg = self.shared.leg;
        let len = match self.unprotect.as_mut() {
            None => len,
            Some(srtp) => match srtp.receiver.unprotect(&mut buffer[..len]) {
                Ok(len) => len,
                Err(error) => {
                    self.rejected += 1;
                    let rejected = &self.shared.received.srtp_rejected;
                    rejected.store(self.rejected, Ordering::Relaxed);
                    if self.rejected == 1 {
                        warn!(%leg, peer = %from, %error, "SRTP packet rejected and dropped (further ones are only counted)");
                    } else {
                        debug!(%leg, peer = %from, %error, "SRTP packet rejected");
                    }
                    return (None, None);
                }
            },
        };
        let (what, latched) = self.inbound.on_packet(now, from, &buffer[..len]);
        self.shared.received.publish(&self.inbound.stats());
        if latched {
            self.shared.set_remote(from);
        }
        let relayed = match self.relay.as_mut() {
            Some(relay) if what != Received::Ignored => relay.prepare(buffer, len),
            _ => None,
        };
        let event = match what {
            Received::Digit(digit, source) => Some(MediaEvent::Digit { leg, digit, source }),
            _ => None,
        };
        (event, relayed)
    }

    /// Logs what the leg received, as it ends.
    pub(super) fn finish(&self) {
        let stats = self.inbound.stats();
        info!(leg = %self.shared.leg, packets = stats.packets, lost = stats.lost(), jitter_ms = stats.jitter_ms(), srtp_rejected = self.rejected, "RTP received");
    }
}

/// The bridge towards the other leg as this leg's receive side runs it.
struct Relay {
    forward: Forward,
    /// Protection for the other leg when it is SRTP.
    srtp: Option<Box<RelaySrtp>>,
}

/// What we relay to an SRTP leg goes out as a stream of its own: a random SSRC, new with each
/// context (each bridge, re-key, or new source stream), so a fresh context under the same key
/// never repeats the keystream of an earlier one (RFC 3711 §9.1: unique SSRC per key), whatever
/// sequence numbers the source uses.
struct RelaySrtp {
    profile: SrtpProfile,
    key: MasterKey,
    sender: SrtpSender,
    /// The source stream this context carries.
    source_ssrc: Option<u32>,
    ssrc: u32,
}

impl Relay {
    fn new(forward: Forward) -> Relay {
        let srtp = forward.into.srtp.as_ref().map(|keys| {
            Box::new(RelaySrtp {
                profile: keys.profile,
                key: keys.local.clone(),
                sender: SrtpSender::new(keys.profile, &keys.local),
                source_ssrc: None,
                ssrc: 0,
            })
        });
        Relay { forward, srtp }
    }

    /// Makes the received RTP packet in `buffer[..len]` the other leg's, in place: payload
    /// type mapped, G.711 law converted when the legs differ, telephone-events passed on only
    /// if the other leg negotiated them, and SRTP-protected (`buffer` has room for the tag)
    /// when the other leg is encrypted. Returns that leg and the length to send, if any.
    fn prepare(&mut self, buffer: &mut [u8], len: usize) -> Option<(&Shared, usize)> {
        let forward = &self.forward;
        let packet = buffer
            .get_mut(..len)
            .filter(|p| p.len() >= RTP_HEADER_LEN)?;
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
        packet[1] = (packet[1] & 0x80) | (mapped? & 0x7F);
        let len = match self.srtp.as_mut() {
            None => len,
            Some(srtp) => srtp.protect(buffer, len, forward.to.ssrc)?,
        };
        let to = &*self.forward.to;
        to.remote.load().is_some().then_some((to, len))
    }
}

impl RelaySrtp {
    /// Protects the RTP packet in `buffer[..len]` under the relay's own SSRC (never `avoid`, the
    /// other leg's own stream); the SRTP length, or `None` to drop it.
    fn protect(&mut self, buffer: &mut [u8], len: usize, avoid: u32) -> Option<usize> {
        let source = u32::from_be_bytes(buffer.get(8..12)?.try_into().ok()?);
        if self.source_ssrc != Some(source) {
            self.restart(source, avoid);
        }
        buffer[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        match self.sender.protect(buffer, len) {
            Ok(len) => Some(len),
            // The source numbered its stream anew (far behind what we sent): a new context, so
            // the stream goes on instead of waiting for its numbers to catch up.
            Err(SrtpError::IndexNotIncreasing { index, last }) if last - index > MAX_REORDER => {
                self.restart(source, avoid);
                buffer[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
                self.sender.protect(buffer, len).ok()
            }
            // A late packet (reordered on the way): sending it would reuse keystream.
            Err(error) => {
                debug!(%error, "SRTP protect of a relayed packet failed: dropped");
                None
            }
        }
    }

    /// A fresh context under a new random SSRC for the source stream `source`.
    fn restart(&mut self, source: u32, avoid: u32) {
        self.source_ssrc = Some(source);
        self.ssrc = loop {
            let candidate = rand::random::<u32>();
            if candidate != avoid {
                break candidate;
            }
        };
        self.sender = SrtpSender::new(self.profile, &self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = RTP_HEADER_LEN + 160;

    fn relay_srtp() -> (RelaySrtp, SrtpReceiver) {
        let key = MasterKey::from_bytes(&[9; 30]);
        let profile = SrtpProfile::Aes128CmHmacSha1_32;
        let relay = RelaySrtp {
            profile,
            key: key.clone(),
            sender: SrtpSender::new(profile, &key),
            source_ssrc: None,
            ssrc: 0,
        };
        (relay, SrtpReceiver::new(profile, &key))
    }

    /// A relayed packet of source stream `ssrc` with `seq`, protected; its SSRC on the wire.
    fn relay_one(relay: &mut RelaySrtp, ssrc: u32, seq: u16) -> Option<(u32, [u8; 2048])> {
        let mut buffer = [0u8; 2048];
        buffer[0] = 0x80;
        buffer[2..4].copy_from_slice(&seq.to_be_bytes());
        buffer[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let len = relay.protect(&mut buffer, LEN, 77)?;
        assert_eq!(len, LEN + 4);
        let wire = u32::from_be_bytes([buffer[8], buffer[9], buffer[10], buffer[11]]);
        Some((wire, buffer))
    }

    #[test]
    fn each_source_stream_gets_a_fresh_context_under_a_new_ssrc() {
        let (mut relay, mut receiver) = relay_srtp();
        let (first, mut packet) = relay_one(&mut relay, 1, 500).unwrap();
        assert_ne!(first, 1, "the source's SSRC is not reused");
        assert_ne!(first, 77, "nor the other leg's own");
        assert_eq!(receiver.unprotect(&mut packet[..LEN + 4]), Ok(LEN));
        let (same, mut packet) = relay_one(&mut relay, 1, 501).unwrap();
        assert_eq!(same, first);
        assert_eq!(receiver.unprotect(&mut packet[..LEN + 4]), Ok(LEN));
        // A new source stream starting lower: its own SSRC, so no index is ever reused.
        let (second, mut packet) = relay_one(&mut relay, 2, 10).unwrap();
        assert_ne!(second, first);
        assert_eq!(receiver.unprotect(&mut packet[..LEN + 4]), Ok(LEN));
    }

    #[test]
    fn a_late_packet_is_dropped_and_a_renumbered_stream_restarts() {
        let (mut relay, mut receiver) = relay_srtp();
        let (ssrc, _) = relay_one(&mut relay, 1, 1000).unwrap();
        relay_one(&mut relay, 1, 1001).unwrap();
        assert!(
            relay_one(&mut relay, 1, 999).is_none(),
            "would reuse keystream"
        );
        let (restarted, mut packet) = relay_one(&mut relay, 1, 100).unwrap();
        assert_ne!(restarted, ssrc);
        assert_eq!(receiver.unprotect(&mut packet[..LEN + 4]), Ok(LEN));
    }
}
