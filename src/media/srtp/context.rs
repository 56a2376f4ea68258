//! The per-direction SRTP crypto contexts: the sender's index/ROC tracking and the receiver's
//! index estimation (RFC 3711 §3.3.1, Appendix A), tag check and replay window (§3.3.2), around
//! the AES-CM and HMAC-SHA1 transforms, all in place on the caller's buffer.

use aes::Aes128;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::kdf::{self, SessionKeys};
use super::{MasterKey, SrtpError, SrtpProfile, MASTER_SALT_LEN};

type HmacSha1 = Hmac<Sha1>;

/// Packets a receiver remembers behind the newest one (RFC 3711 asks for at least 64).
pub const REPLAY_WINDOW: u64 = 128;
/// Fixed RTP header length before CSRCs and extension.
const RTP_FIXED_HEADER: usize = 12;
/// Largest packet index: 32-bit ROC and 16-bit sequence number.
const MAX_INDEX: u64 = (1 << 48) - 1;
/// SSRCs a receiver keeps separate ROC and replay state for (the peer may restart its stream
/// with a new SSRC, e.g. after hold or a transfer on its side); the least recently used goes.
const RECEIVE_STREAMS: usize = 4;

/// What both directions hold: the expanded session cipher, the session salt and the keyed HMAC.
struct Transform {
    profile: SrtpProfile,
    cipher: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    /// Keyed once; cloned per packet (a plain copy of the two SHA-1 states, no allocation).
    mac: HmacSha1,
}

impl Transform {
    fn new(profile: SrtpProfile, master: &MasterKey) -> Transform {
        let SessionKeys {
            cipher,
            salt,
            auth_key,
        } = kdf::derive_session_keys(master);
        let mac =
            <HmacSha1 as Mac>::new_from_slice(&auth_key).expect("HMAC accepts keys of any length");
        Transform {
            profile,
            cipher,
            salt,
            mac,
        }
    }

    /// HMAC-SHA1 over the authenticated portion and the ROC (RFC 3711 §4.2).
    fn mac(&self, authenticated: &[u8], index: u64) -> HmacSha1 {
        let mut mac = self.mac.clone();
        mac.update(authenticated);
        mac.update(&roc(index).to_be_bytes());
        mac
    }

    fn crypt(&self, ssrc: u32, index: u64, payload: &mut [u8]) {
        let iv = kdf::packet_iv(&self.salt, ssrc, index);
        kdf::apply_keystream(&self.cipher, &iv, payload);
    }
}

/// Encrypts and authenticates the RTP packets we send on one call leg.
pub struct SrtpSender {
    transform: Transform,
    /// SSRC and index of the last packet protected.
    last: Option<(u32, u64)>,
}

impl SrtpSender {
    pub fn new(profile: SrtpProfile, master: &MasterKey) -> SrtpSender {
        SrtpSender {
            transform: Transform::new(profile, master),
            last: None,
        }
    }

    pub fn profile(&self) -> SrtpProfile {
        self.transform.profile
    }

    /// Bytes `protect` appends to a packet.
    pub fn tag_len(&self) -> usize {
        self.transform.profile.tag_len()
    }

    /// Turns the RTP packet in `buf[..len]` into SRTP in place: encrypts the payload and writes
    /// the tag into `buf[len..]`, returning the SRTP length (`len + tag_len()`). The ROC starts
    /// at 0 for each new SSRC and follows sequence number wraps. A packet that would reuse an
    /// index already sent on this SSRC is refused, since it would reuse keystream.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.tag_len();
        let needed = len + tag_len;
        if buf.len() < needed {
            return Err(SrtpError::BufferTooSmall {
                needed,
                capacity: buf.len(),
            });
        }
        let packet = &buf[..len];
        let header_len = rtp_header_len(packet)?;
        let (seq, ssrc) = seq_and_ssrc(packet);
        let index = match self.last {
            Some((last_ssrc, last)) if last_ssrc == ssrc => match estimate_index(last, seq) {
                Ok(index) if index > last => index,
                Ok(index) => return Err(SrtpError::IndexNotIncreasing { index, last }),
                Err(SrtpError::TooOld { index }) => {
                    return Err(SrtpError::IndexNotIncreasing { index, last })
                }
                Err(error) => return Err(error),
            },
            _ => u64::from(seq),
        };

        self.transform.crypt(ssrc, index, &mut buf[header_len..len]);
        let tag = self
            .transform
            .mac(&buf[..len], index)
            .finalize()
            .into_bytes();
        buf[len..needed].copy_from_slice(&tag[..tag_len]);
        self.last = Some((ssrc, index));
        Ok(needed)
    }

    /// [`SrtpSender::protect`] on a whole `Vec`: grows it by the tag, which allocates only when
    /// its capacity is short (keep `MAX_TAG_LEN` spare to avoid that). Unchanged on error.
    pub fn protect_vec(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = packet.len();
        packet.resize(len + self.tag_len(), 0);
        match self.protect(packet, len) {
            Ok(_) => Ok(()),
            Err(error) => {
                packet.truncate(len);
                Err(error)
            }
        }
    }
}

impl std::fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSender")
            .field("profile", &self.transform.profile)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// ROC and replay state for one SSRC the receiver has authenticated packets from.
#[derive(Debug, Clone, Copy)]
struct ReceiveStream {
    ssrc: u32,
    /// Highest index authenticated: ROC in the top 32 bits, s_l in the low 16.
    highest: u64,
    /// Bit `n` set: index `highest - n` was received.
    window: u128,
    /// Receiver clock at the last packet, to pick the stream to forget.
    last_used: u64,
}

impl ReceiveStream {
    /// RFC 3711 §3.3.2, before authentication: refuse indexes seen or too far behind.
    fn check_replay(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        let age = self.highest - index;
        if age >= REPLAY_WINDOW {
            return Err(SrtpError::TooOld { index });
        }
        if self.window >> age & 1 == 1 {
            return Err(SrtpError::Replayed { index });
        }
        Ok(())
    }

    /// After authentication: record `index`, moving the window forward when it is the newest.
    fn accept(&mut self, index: u64) {
        if index > self.highest {
            let shift = index - self.highest;
            self.window = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.window << shift
            };
            self.window |= 1;
            self.highest = index;
        } else {
            self.window |= 1 << (self.highest - index);
        }
    }
}

/// Authenticates and decrypts the SRTP packets we receive on one call leg.
pub struct SrtpReceiver {
    transform: Transform,
    streams: [Option<ReceiveStream>; RECEIVE_STREAMS],
    clock: u64,
}

impl SrtpReceiver {
    pub fn new(profile: SrtpProfile, master: &MasterKey) -> SrtpReceiver {
        SrtpReceiver {
            transform: Transform::new(profile, master),
            streams: [None; RECEIVE_STREAMS],
            clock: 0,
        }
    }

    pub fn profile(&self) -> SrtpProfile {
        self.transform.profile
    }

    /// Turns the SRTP packet filling `buf` back into RTP in place and returns the RTP length
    /// (the tag is left behind it in `buf`). Order of checks: header sanity, index estimate
    /// and replay window, tag (constant time), and only then decryption and window update, so
    /// a forged or replayed packet changes neither the buffer's payload nor any state.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.transform.profile.tag_len();
        if buf.len() < RTP_FIXED_HEADER + tag_len {
            return Err(SrtpError::TooShort { len: buf.len() });
        }
        let len = buf.len() - tag_len;
        let (packet, tag) = buf.split_at(len);
        let header_len = rtp_header_len(packet)?;
        let (seq, ssrc) = seq_and_ssrc(packet);

        let slot = self
            .streams
            .iter()
            .position(|stream| stream.as_ref().is_some_and(|stream| stream.ssrc == ssrc));
        let index = match slot.and_then(|slot| self.streams[slot]) {
            Some(stream) => {
                let index = estimate_index(stream.highest, seq)?;
                stream.check_replay(index)?;
                index
            }
            // RFC 3711 §3.3.1: a new stream starts with ROC 0 and s_l = its first SEQ.
            None => u64::from(seq),
        };

        self.transform
            .mac(packet, index)
            .verify_truncated_left(tag)
            .map_err(|_| SrtpError::AuthenticationFailed)?;

        self.transform.crypt(ssrc, index, &mut buf[header_len..len]);

        self.clock += 1;
        let clock = self.clock;
        match slot {
            Some(slot) => {
                if let Some(stream) = self.streams[slot].as_mut() {
                    stream.accept(index);
                    stream.last_used = clock;
                }
            }
            None => {
                let free = self
                    .streams
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, stream)| stream.map_or(0, |stream| stream.last_used))
                    .map_or(0, |(slot, _)| slot);
                self.streams[free] = Some(ReceiveStream {
                    ssrc,
                    highest: index,
                    window: 1,
                    last_used: clock,
                });
            }
        }
        Ok(len)
    }
}

impl std::fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("profile", &self.transform.profile)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

/// The index closest to `highest` whose low 16 bits are `seq` (RFC 3711 §3.3.1, Appendix A):
/// up to 32767 ahead or 32768 behind. Below 0 (before the stream's first ROC) is
/// [`SrtpError::TooOld`] with index 0, past 2^48 - 1 is [`SrtpError::IndexExhausted`].
pub(super) fn estimate_index(highest: u64, seq: u16) -> Result<u64, SrtpError> {
    let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
    // `highest` is at most 2^48 - 1, so neither the cast nor the sum overflows.
    let index = highest as i64 + delta;
    match u64::try_from(index) {
        Err(_) => Err(SrtpError::TooOld { index: 0 }),
        Ok(index) if index > MAX_INDEX => Err(SrtpError::IndexExhausted),
        Ok(index) => Ok(index),
    }
}

/// The rollover counter part of a packet index.
fn roc(index: u64) -> u32 {
    (index >> 16) as u32
}

/// Length of the RTP header (fixed part, CSRCs and extension): what stays in the clear.
pub(super) fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    if packet.len() < RTP_FIXED_HEADER {
        return Err(SrtpError::TooShort { len: packet.len() });
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::NotRtp);
    }
    let csrc_count = usize::from(packet[0] & 0x0f);
    let mut len = RTP_FIXED_HEADER + 4 * csrc_count;
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4).ok_or(SrtpError::BadHeader)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if len > packet.len() {
        return Err(SrtpError::BadHeader);
    }
    Ok(len)
}

/// Sequence number and SSRC of a packet at least 12 bytes long.
fn seq_and_ssrc(packet: &[u8]) -> (u16, u32) {
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    (seq, ssrc)
}
