//! RFC 4733 telephone-event payloads: parsing, encoding (for relaying), and the per-call
//! receiver that turns a stream of event packets into digits, each reported exactly once.

use super::{digit_from_event, event_from_digit};

/// Size of one event block in a telephone-event payload (RFC 4733 §2.3).
pub const EVENT_BLOCK_LEN: usize = 4;

/// Highest volume the 6-bit field carries (-63 dBm0).
pub const MAX_VOLUME: u8 = 63;

/// One 4-byte event block: event code, end bit, volume (-dBm0) and duration (timestamp units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    /// Decodes a block; the reserved R bit is ignored as §2.3 asks of receivers.
    pub fn from_block(block: [u8; EVENT_BLOCK_LEN]) -> Self {
        Self {
            event: block[0],
            end: block[1] & 0x80 != 0,
            volume: block[1] & 0x3F,
            duration: u16::from_be_bytes([block[2], block[3]]),
        }
    }
}

/// The last event of a payload and where it starts relative to the packet's RTP timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastEvent {
    pub event: TelephoneEvent,
    /// Sum of the durations of the events packed before it (RFC 4733 §2.5.1.5: packed events
    /// are contiguous and the packet timestamp is the first one's start).
    pub start_offset: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc4733Error {
    #[error("telephone-event payload of {len} bytes is not a non-empty multiple of 4")]
    BadPayloadLength { len: usize },
    #[error("{digit:?} is not a DTMF digit")]
    NotADigit { digit: char },
    #[error("volume {volume} exceeds the 6-bit field (0..=63, in -dBm0)")]
    VolumeOutOfRange { volume: u8 },
}

/// Parses a telephone-event payload and returns its last event block, which is the one still
/// in progress when several events are packed into one packet.
pub fn parse_last_event(payload: &[u8]) -> Result<LastEvent, Rfc4733Error> {
    if payload.is_empty() || !payload.len().is_multiple_of(EVENT_BLOCK_LEN) {
        return Err(Rfc4733Error::BadPayloadLength { len: payload.len() });
    }
    let mut blocks = payload
        .chunks_exact(EVENT_BLOCK_LEN)
        .filter_map(|chunk| <[u8; EVENT_BLOCK_LEN]>::try_from(chunk).ok())
        .map(TelephoneEvent::from_block);
    let event = blocks
        .next_back()
        .ok_or(Rfc4733Error::BadPayloadLength { len: payload.len() })?;
    // Wrapping: timestamps are modular, and a hostile payload may pack thousands of blocks.
    let start_offset = blocks.fold(0u32, |offset, earlier| {
        offset.wrapping_add(u32::from(earlier.duration))
    });
    Ok(LastEvent {
        event,
        start_offset,
    })
}

/// Writes one event block for sending: `duration` in timestamp units since the event's start,
/// `volume` in -dBm0 (0..=63); the reserved bit is sent as zero.
pub fn encode_event(
    digit: char,
    end: bool,
    duration: u16,
    volume: u8,
    buf: &mut [u8; EVENT_BLOCK_LEN],
) -> Result<(), Rfc4733Error> {
    let event = event_from_digit(digit).ok_or(Rfc4733Error::NotADigit { digit })?;
    if volume > MAX_VOLUME {
        return Err(Rfc4733Error::VolumeOutOfRange { volume });
    }
    let [duration_high, duration_low] = duration.to_be_bytes();
    *buf = [
        event,
        if end { 0x80 } else { 0 } | volume,
        duration_high,
        duration_low,
    ];
    Ok(())
}

/// Events remembered to recognise late packets of earlier presses (reordering across events).
const REMEMBERED_EVENTS: usize = 4;

/// Timestamp step between segments of one event longer than the 16-bit duration (§2.5.1.3).
const LONG_EVENT_SEGMENT: u32 = u16::MAX as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeenEvent {
    start: u32,
    event: u8,
    ended: bool,
}

/// Per-call receiver: feed every telephone-event packet; each press is reported once, at the
/// first packet seen for it (normally its start packet, for the lowest latency; if the start
/// packets were lost, whichever packet of that event arrives first, end packets included).
///
/// An event is identified by its start timestamp (and event code): the retransmitted and the
/// three redundant end packets share it and are ignored; a new start timestamp is a new press
/// even for the same digit. Timestamps are only compared for equality or with wrapping
/// arithmetic, so wraparound is harmless. Call [`Rfc4733Receiver::reset`] when the stream
/// changes (new SSRC), since the new stream's timestamps are unrelated.
#[derive(Debug, Clone, Default)]
pub struct Rfc4733Receiver {
    /// Most recent first.
    seen: [Option<SeenEvent>; REMEMBERED_EVENTS],
}

impl Rfc4733Receiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every event, e.g. when the RTP stream (SSRC) changes.
    pub fn reset(&mut self) {
        self.seen = [None; REMEMBERED_EVENTS];
    }

    /// Handles one telephone-event packet; returns the digit if this packet starts a new press.
    /// Malformed payloads and non-DTMF events (flash, tones) are ignored.
    pub fn on_packet(&mut self, rtp_timestamp: u32, marker: bool, payload: &[u8]) -> Option<char> {
        let last = parse_last_event(payload).ok()?;
        let digit = digit_from_event(last.event.event)?;
        let packet_event = SeenEvent {
            start: rtp_timestamp.wrapping_add(last.start_offset),
            event: last.event.event,
            ended: last.event.end,
        };

        if let Some(known) = self
            .seen
            .iter_mut()
            .flatten()
            .find(|seen| seen.start == packet_event.start && seen.event == packet_event.event)
        {
            known.ended |= packet_event.ended;
            return None;
        }

        let continues_long_event = self.seen[0].is_some_and(|newest| {
            !marker
                && !newest.ended
                && newest.event == packet_event.event
                && newest.start.wrapping_add(LONG_EVENT_SEGMENT) == packet_event.start
        });
        self.seen.rotate_right(1);
        self.seen[0] = Some(packet_event);
        if continues_long_event {
            None
        } else {
            Some(digit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
        let [high, low] = duration.to_be_bytes();
        [event, if end { 0x80 } else { 0 } | volume, high, low]
    }

    /// The packets a typical sender emits for one press: start (marker), continuations, and
    /// three identical end packets, all with the event's start timestamp.
    fn press(event: u8, start: u32) -> Vec<(u32, bool, [u8; 4])> {
        let mut packets = vec![(start, true, block(event, false, 10, 0))];
        for step in 1..=5u16 {
            packets.push((start, false, block(event, false, 10, step * 160)));
        }
        for _ in 0..3 {
            packets.push((start, false, block(event, true, 10, 960)));
        }
        packets
    }

    fn feed(receiver: &mut Rfc4733Receiver, packets: &[(u32, bool, [u8; 4])]) -> String {
        packets
            .iter()
            .filter_map(|(ts, marker, payload)| receiver.on_packet(*ts, *marker, payload))
            .collect()
    }

    #[test]
    fn parses_a_single_block() {
        let last = parse_last_event(&[0x0b, 0x8a, 0x08, 0xc0]).unwrap();
        assert_eq!(
            last.event,
            TelephoneEvent {
                event: 11,
                end: true,
                volume: 10,
                duration: 2240
            }
        );
        assert_eq!(last.start_offset, 0);
        // The reserved bit is ignored.
        assert_eq!(parse_last_event(&[5, 0x4a, 0, 0]).unwrap().event.volume, 10);
    }

    #[test]
    fn packed_payload_yields_last_block_and_its_start_offset() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&block(1, true, 10, 800));
        payload.extend_from_slice(&block(2, true, 10, 640));
        payload.extend_from_slice(&block(3, false, 10, 160));
        let last = parse_last_event(&payload).unwrap();
        assert_eq!(last.event.event, 3);
        assert!(!last.event.end);
        assert_eq!(last.start_offset, 1440);
    }

    #[test]
    fn rejects_bad_lengths() {
        for len in [0usize, 1, 3, 5, 7] {
            assert_eq!(
                parse_last_event(&vec![0u8; len]),
                Err(Rfc4733Error::BadPayloadLength { len })
            );
        }
    }

    #[test]
    fn encode_round_trips_and_validates() {
        let mut buf = [0u8; 4];
        encode_event('#', true, 2240, 10, &mut buf).unwrap();
        assert_eq!(
            buf,
            [0x0b, 0x8a, 0x08, 0xc0],
            "as in SIPp's dtmf_2833_pound.pcap"
        );
        for digit in "0123456789*#ABCD".chars() {
            encode_event(digit, false, 160, 63, &mut buf).unwrap();
            let event = parse_last_event(&buf).unwrap().event;
            assert_eq!(digit_from_event(event.event), Some(digit));
            assert_eq!((event.end, event.volume, event.duration), (false, 63, 160));
        }
        assert_eq!(
            encode_event('x', false, 0, 10, &mut buf),
            Err(Rfc4733Error::NotADigit { digit: 'x' })
        );
        assert_eq!(
            encode_event('1', false, 0, 64, &mut buf),
            Err(Rfc4733Error::VolumeOutOfRange { volume: 64 })
        );
    }

    #[test]
    fn one_press_is_reported_once_at_its_first_packet() {
        let mut receiver = Rfc4733Receiver::new();
        let packets = press(5, 1000);
        assert_eq!(
            receiver.on_packet(packets[0].0, packets[0].1, &packets[0].2),
            Some('5')
        );
        assert_eq!(feed(&mut receiver, &packets[1..]), "");
    }

    #[test]
    fn lost_start_packets_still_report_once() {
        let mut receiver = Rfc4733Receiver::new();
        assert_eq!(feed(&mut receiver, &press(7, 1000)[3..]), "7");
        // Only the end packets survived.
        let mut receiver = Rfc4733Receiver::new();
        assert_eq!(feed(&mut receiver, &press(7, 1000)[6..]), "7");
    }

    #[test]
    fn reordered_and_duplicated_packets_report_once() {
        let mut receiver = Rfc4733Receiver::new();
        let mut packets = press(3, 5000);
        packets.swap(0, 4);
        packets.swap(2, 8);
        let duplicated: Vec<_> = packets.iter().flat_map(|p| [*p, *p]).collect();
        assert_eq!(feed(&mut receiver, &duplicated), "3");
    }

    #[test]
    fn late_packets_of_the_previous_press_are_not_a_new_press() {
        let mut receiver = Rfc4733Receiver::new();
        let first = press(1, 1000);
        let second = press(2, 3000);
        let mut stream = first[..6].to_vec();
        stream.extend_from_slice(&second[..2]);
        stream.extend_from_slice(&first[6..]); // first's end packets arrive late
        stream.extend_from_slice(&second[2..]);
        assert_eq!(feed(&mut receiver, &stream), "12");
    }

    #[test]
    fn same_digit_twice_back_to_back_is_two_presses() {
        let mut receiver = Rfc4733Receiver::new();
        let mut stream = press(9, 1000);
        stream.extend(press(9, 2120));
        assert_eq!(feed(&mut receiver, &stream), "99");
        // Even when the second press's start packets were lost.
        let mut receiver = Rfc4733Receiver::new();
        let mut stream = press(9, 1000);
        stream.extend(press(9, 2120).into_iter().skip(2));
        assert_eq!(feed(&mut receiver, &stream), "99");
    }

    #[test]
    fn timestamp_wraparound_is_harmless() {
        let mut receiver = Rfc4733Receiver::new();
        let mut stream = press(4, u32::MAX - 100);
        stream.extend(press(4, 1020)); // after the wrap
        stream.extend(press(6, 3000));
        assert_eq!(feed(&mut receiver, &stream), "446");
        // A packed event whose start lies past the wrap.
        let mut receiver = Rfc4733Receiver::new();
        let mut payload = block(1, true, 10, 800).to_vec();
        payload.extend_from_slice(&block(2, false, 10, 0));
        assert_eq!(receiver.on_packet(u32::MAX - 10, true, &payload), Some('2'));
        assert_eq!(
            receiver.on_packet(789, false, &block(2, true, 10, 960)),
            None
        );
    }

    #[test]
    fn long_event_segments_are_one_press() {
        // §2.5.1.3: past 0xFFFF units the sender starts a new segment 0xFFFF later, no marker.
        let mut receiver = Rfc4733Receiver::new();
        let start = u32::MAX - 30_000;
        assert_eq!(
            receiver.on_packet(start, true, &block(0, false, 10, 160)),
            Some('0')
        );
        assert_eq!(
            receiver.on_packet(start, false, &block(0, false, 10, 65535)),
            None
        );
        let next = start.wrapping_add(65535);
        assert_eq!(
            receiver.on_packet(next, false, &block(0, false, 10, 160)),
            None
        );
        assert_eq!(
            receiver.on_packet(next, false, &block(0, true, 10, 800)),
            None
        );
        // A marked packet at that spot would be a genuine new press.
        let mut receiver = Rfc4733Receiver::new();
        receiver.on_packet(start, true, &block(0, false, 10, 160));
        assert_eq!(
            receiver.on_packet(next, true, &block(0, false, 10, 0)),
            Some('0')
        );
    }

    #[test]
    fn garbage_and_non_dtmf_events_are_ignored() {
        let mut receiver = Rfc4733Receiver::new();
        assert_eq!(receiver.on_packet(1, true, &[]), None);
        assert_eq!(receiver.on_packet(1, true, &[1, 2, 3]), None);
        assert_eq!(
            receiver.on_packet(1, true, &[16, 0x0a, 0, 0]),
            None,
            "flash"
        );
        assert_eq!(receiver.on_packet(1, true, &[255, 0xff, 0xff, 0xff]), None);
        // Deterministic pseudo-random payloads of every small length: no panic.
        let mut state = 0x1234_5678u32;
        for round in 0..2000u32 {
            let len = (round % 17) as usize;
            let payload: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 24) as u8
                })
                .collect();
            let _ = receiver.on_packet(state, round % 3 == 0, &payload);
        }
        // Thousands of packed blocks: the start offset wraps instead of overflowing.
        let huge: Vec<u8> = (0..20_000)
            .flat_map(|_| block(1, true, 10, u16::MAX))
            .collect();
        assert!(parse_last_event(&huge).is_ok());
        let _ = receiver.on_packet(7, true, &huge);
        // Still works afterwards.
        receiver.reset();
        assert_eq!(feed(&mut receiver, &press(8, 42)), "8");
    }

    /// An RTP packet as far as the receiver cares.
    struct RtpPacket {
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: Vec<u8>,
    }

    /// Tiny classic-pcap reader: Ethernet (optionally 802.1Q) or Linux cooked capture, IPv4,
    /// UDP, RTP (CSRCs, header extension and padding skipped). Other packets are skipped.
    fn read_rtp_from_pcap(bytes: &[u8]) -> Vec<RtpPacket> {
        let u16_at = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let magic = &bytes[0..4];
        let little_endian = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            other => panic!("not a classic pcap file: magic {other:02x?}"),
        };
        let header_u32 = |i: usize| {
            let raw: [u8; 4] = bytes[i..i + 4].try_into().unwrap();
            if little_endian {
                u32::from_le_bytes(raw)
            } else {
                u32::from_be_bytes(raw)
            }
        };
        let link_type = header_u32(20);
        let mut packets = Vec::new();
        let mut pos = 24;
        while pos + 16 <= bytes.len() {
            let captured = header_u32(pos + 8) as usize;
            let frame = &bytes[pos + 16..pos + 16 + captured];
            pos += 16 + captured;
            let ip = match link_type {
                1 => {
                    let (mut ethertype, mut offset) = (u16_at(frame, 12), 14);
                    if ethertype == 0x8100 {
                        (ethertype, offset) = (u16_at(frame, 16), 18);
                    }
                    if ethertype != 0x0800 {
                        continue;
                    }
                    &frame[offset..]
                }
                113 if u16_at(frame, 14) == 0x0800 => &frame[16..],
                113 => continue,
                other => panic!("unsupported link type {other}"),
            };
            if ip[0] >> 4 != 4 || ip[9] != 17 {
                continue;
            }
            let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
            let udp_len = usize::from(u16_at(udp, 4));
            let rtp = &udp[8..udp_len];
            assert_eq!(rtp[0] >> 6, 2, "RTP version");
            let mut header_len = 12 + usize::from(rtp[0] & 0x0f) * 4;
            if rtp[0] & 0x10 != 0 {
                header_len += 4 + usize::from(u16_at(rtp, header_len + 2)) * 4;
            }
            let padding = if rtp[0] & 0x20 != 0 {
                usize::from(rtp[rtp.len() - 1])
            } else {
                0
            };
            packets.push(RtpPacket {
                payload_type: rtp[1] & 0x7f,
                marker: rtp[1] & 0x80 != 0,
                timestamp: u32::from_be_bytes(rtp[4..8].try_into().unwrap()),
                payload: rtp[header_len..rtp.len() - padding].to_vec(),
            });
        }
        packets
    }

    #[test]
    fn sipp_rfc2833_captures_yield_their_digit_once() {
        // Shipped by Debian's `sip-tester` package (SIPp).
        let dir = "/usr/share/sip-tester";
        let captures = [
            ("0", '0'),
            ("1", '1'),
            ("2", '2'),
            ("3", '3'),
            ("4", '4'),
            ("5", '5'),
            ("6", '6'),
            ("7", '7'),
            ("8", '8'),
            ("9", '9'),
            ("star", '*'),
            ("pound", '#'),
        ];
        for (name, digit) in captures {
            let path = format!("{dir}/dtmf_2833_{name}.pcap");
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{path}: {e} (apt-get install sip-tester)"));
            let packets = read_rtp_from_pcap(&bytes);
            assert!(packets.len() >= 4, "{path}: {} RTP packets", packets.len());
            assert!(packets.iter().all(|p| p.payload_type == 101));
            assert!(
                packets.iter().filter(|p| p.payload[1] & 0x80 != 0).count() >= 3,
                "{path}: the capture has redundant end packets"
            );
            let mut receiver = Rfc4733Receiver::new();
            let digits: String = packets
                .iter()
                .filter_map(|p| receiver.on_packet(p.timestamp, p.marker, &p.payload))
                .collect();
            assert_eq!(digits, digit.to_string(), "{path}");
            // Played twice in a row (same timestamps): still one press.
            let again: String = packets
                .iter()
                .filter_map(|p| receiver.on_packet(p.timestamp, p.marker, &p.payload))
                .collect();
            assert_eq!(again, "", "{path} replayed");
        }
    }

    #[test]
    fn reset_forgets_previous_events() {
        let mut receiver = Rfc4733Receiver::new();
        assert_eq!(feed(&mut receiver, &press(2, 100)), "2");
        receiver.reset();
        assert_eq!(feed(&mut receiver, &press(2, 100)), "2");
    }
}
