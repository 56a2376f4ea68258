use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_rs::RtpReader;

use super::*;

fn tone_prompt(name: &str, frames: usize) -> Arc<Prompt> {
    let samples: Vec<f32> = (0..frames * FRAME_SAMPLES)
        .map(|i| 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 8000.0).sin())
        .collect();
    Arc::new(Prompt::from_samples(name, "en", &samples))
}

fn start() -> StreamStart {
    StreamStart {
        ssrc: 0x1234_5678,
        sequence: 65534,
        timestamp: u32::MAX - 200,
    }
}

struct Sent {
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload_type: u8,
    payload: Vec<u8>,
}

fn run(outbound: &mut Outbound, ticks: usize) -> (Vec<Option<Sent>>, Vec<usize>) {
    let mut buffer = [0u8; PACKET_LEN];
    let mut sent = Vec::new();
    let mut finished = Vec::new();
    for tick in 0..ticks {
        let result = outbound.tick(&mut buffer);
        if result.playback_finished {
            finished.push(tick);
        }
        sent.push((result.len > 0).then(|| {
            let packet = RtpReader::new(&buffer[..result.len]).unwrap();
            Sent {
                seq: u16::from(packet.sequence_number()),
                timestamp: packet.timestamp(),
                marker: packet.mark(),
                payload_type: packet.payload_type(),
                payload: packet.payload().to_vec(),
            }
        }));
    }
    (sent, finished)
}

#[test]
fn prompts_play_in_order_with_marker_on_each_start_and_timestamps_step_160() {
    let mut outbound = Outbound::new(start(), Codec::Pcmu, 0, IdleAudio::Silence);
    let a = tone_prompt("a", 3);
    let b = tone_prompt("b", 2);
    outbound.play([a.clone(), b.clone()], 1);
    let (sent, finished) = run(&mut outbound, 7);
    let sent: Vec<Sent> = sent.into_iter().map(Option::unwrap).collect();
    let markers: Vec<bool> = sent.iter().map(|p| p.marker).collect();
    assert_eq!(markers, vec![true, false, false, true, false, false, false]);
    for pair in sent.windows(2) {
        assert_eq!(
            pair[1].timestamp,
            pair[0].timestamp.wrapping_add(160),
            "timestamps wrap cleanly"
        );
        assert_eq!(
            pair[1].seq,
            pair[0].seq.wrapping_add(1),
            "sequence wraps cleanly"
        );
    }
    assert_eq!(sent[0].payload, a.frame(0, Codec::Pcmu).unwrap().to_vec());
    assert_eq!(sent[3].payload, b.frame(0, Codec::Pcmu).unwrap().to_vec());
    assert_eq!(
        sent[5].payload,
        vec![0xFF; 160],
        "µ-law silence after the playlist"
    );
    assert!(sent.iter().all(|p| p.payload_type == 0));
    assert_eq!(
        finished,
        vec![4],
        "finished once, on the last frame of the last prompt"
    );
}

#[test]
fn stop_cuts_the_prompt_on_the_next_frame_and_idle_nothing_sends_nothing() {
    let mut outbound = Outbound::new(start(), Codec::Pcma, 8, IdleAudio::Nothing);
    outbound.play([tone_prompt("long", 50)], 1);
    let (first, _) = run(&mut outbound, 10);
    assert!(first.iter().all(Option::is_some));
    assert!(outbound.stop());
    let (after, finished) = run(&mut outbound, 3);
    assert!(
        after.iter().all(Option::is_none),
        "nothing after stop with IdleAudio::Nothing"
    );
    assert!(
        finished.is_empty(),
        "a stopped prompt does not report finishing"
    );
    outbound.play([tone_prompt("next", 1)], 2);
    let (resumed, _) = run(&mut outbound, 1);
    let resumed = resumed[0].as_ref().unwrap();
    let last_before = first[9].as_ref().unwrap();
    assert_eq!(
        resumed.seq,
        last_before.seq.wrapping_add(1),
        "no sequence gap for unsent ticks"
    );
    assert_eq!(
        resumed.timestamp,
        last_before.timestamp.wrapping_add(160 * 4),
        "media time kept"
    );
    assert!(resumed.marker);
}

fn rtp(seq: u16, timestamp: u32, payload_type: u8, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 12 + payload.len()];
    let len = RtpPacketBuilder::new()
        .payload_type(payload_type)
        .ssrc(99)
        .sequence(Seq::from(seq))
        .timestamp(timestamp)
        .marked(marker)
        .payload(payload)
        .build_into(&mut out)
        .unwrap();
    out.truncate(len);
    out
}

#[test]
fn inbound_latches_first_source_and_ignores_others() {
    let epoch = Instant::now();
    let mut inbound = Inbound::new(Codec::Pcmu, 0, Some(101), epoch);
    let caller: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let intruder: SocketAddr = "127.0.0.1:7002".parse().unwrap();
    assert_eq!(
        inbound.on_packet(epoch, caller, &rtp(1, 0, 0, false, &[0xFF; 160])),
        (Received::Audio, true)
    );
    assert_eq!(
        inbound.on_packet(epoch, intruder, &rtp(2, 160, 0, false, &[0xFF; 160])),
        (Received::Ignored, false)
    );
    assert_eq!(
        inbound.on_packet(epoch, caller, b"not rtp"),
        (Received::Ignored, false)
    );
    assert_eq!(inbound.latched(), Some(caller));
}

#[test]
fn inbound_reports_each_telephone_event_once() {
    let epoch = Instant::now();
    let mut inbound = Inbound::new(Codec::Pcmu, 0, Some(101), epoch);
    let caller: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let mut digits = Vec::new();
    // Digit 5: start (marker), two updates, three redundant end packets, all at timestamp 8000.
    for (i, (end, duration)) in [
        (false, 160u16),
        (false, 320),
        (false, 480),
        (true, 640),
        (true, 640),
        (true, 640),
    ]
    .into_iter()
    .enumerate()
    {
        let flags = if end { 0x80 } else { 0 } | 10;
        let payload = [5, flags, (duration >> 8) as u8, duration as u8];
        let (received, _) = inbound.on_packet(
            epoch,
            caller,
            &rtp(10 + i as u16, 8000, 101, i == 0, &payload),
        );
        if let Received::Digit(digit, source) = received {
            digits.push((digit, source));
        }
    }
    assert_eq!(digits, vec![('5', DtmfSource::Rfc4733)]);
}

#[test]
fn inband_tones_are_detected_when_no_telephone_event_was_offered() {
    let epoch = Instant::now();
    let mut inbound = Inbound::new(Codec::Pcmu, 0, None, epoch);
    assert_eq!(inbound.dtmf_source(), DtmfSource::Inband);
    let caller: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    // Digit 7: 852 Hz + 1209 Hz for 100 ms, then 100 ms silence.
    let mut digits = Vec::new();
    for frame in 0..10u32 {
        let mut payload = [0xFFu8; 160];
        if frame < 5 {
            for (i, byte) in payload.iter_mut().enumerate() {
                let t = (frame as usize * 160 + i) as f32 / 8000.0;
                let s = 0.25 * (2.0 * std::f32::consts::PI * 852.0 * t).sin()
                    + 0.25 * (2.0 * std::f32::consts::PI * 1209.0 * t).sin();
                *byte = g711::encode_ulaw((s * 32767.0) as i16);
            }
        }
        let arrival = epoch + Duration::from_millis(20 * u64::from(frame));
        let (received, _) = inbound.on_packet(
            arrival,
            caller,
            &rtp(frame as u16, frame * 160, 0, false, &payload),
        );
        if let Received::Digit(digit, source) = received {
            digits.push((digit, source));
        }
    }
    assert_eq!(digits, vec![('7', DtmfSource::Inband)]);
}

#[test]
fn receive_stats_count_loss_across_sequence_wrap_and_measure_jitter() {
    let epoch = Instant::now();
    let mut inbound = Inbound::new(Codec::Pcmu, 0, Some(101), epoch);
    let caller: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    // 20 packets from seq 65530, wrapping; 3 lost; steady 20 ms spacing = zero jitter.
    for i in 0u16..20 {
        if [3, 7, 15].contains(&i) {
            continue;
        }
        let arrival = epoch + Duration::from_millis(20 * u64::from(i));
        inbound.on_packet(
            arrival,
            caller,
            &rtp(
                65530u16.wrapping_add(i),
                u32::from(i) * 160,
                0,
                false,
                &[0xFF; 160],
            ),
        );
    }
    let stats = inbound.stats();
    assert_eq!(stats.expected(), 20);
    assert_eq!(stats.lost(), 3);
    assert!(stats.jitter_ms() < 0.01, "{}", stats.jitter_ms());

    // Alternating 10 ms early/late arrivals give jitter converging towards 10 ms·(some share).
    let mut jittery = Inbound::new(Codec::Pcmu, 0, Some(101), epoch);
    for i in 0u32..200 {
        let skew = if i % 2 == 0 { 0 } else { 10 };
        let arrival = epoch + Duration::from_millis(20 * u64::from(i) + skew);
        jittery.on_packet(
            arrival,
            caller,
            &rtp(i as u16, i * 160, 0, false, &[0xFF; 160]),
        );
    }
    let jitter = jittery.stats().jitter_ms();
    assert!(
        (9.0..=10.5).contains(&jitter),
        "RFC 3550 jitter of a ±10 ms alternation: {jitter}"
    );
}

#[test]
fn a_key_press_between_steady_audio_adds_no_jitter() {
    let epoch = Instant::now();
    let mut inbound = Inbound::new(Codec::Pcmu, 0, Some(101), epoch);
    let caller: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    // Audio every 20 ms; packets 10..20 are a telephone-event whose timestamp stays at the
    // key's start (RFC 4733), then audio again on the same sequence and clock.
    for i in 0u32..40 {
        let arrival = epoch + Duration::from_millis(20 * u64::from(i));
        let packet = if (10..20).contains(&i) {
            let duration = ((i - 9) * 160) as u16;
            let mut event = vec![5, 10];
            event.extend_from_slice(&duration.to_be_bytes());
            rtp(i as u16, 10 * 160, 101, i == 10, &event)
        } else {
            rtp(i as u16, i * 160, 0, false, &[0xFF; 160])
        };
        inbound.on_packet(arrival, caller, &packet);
    }
    let stats = inbound.stats();
    assert_eq!((stats.packets, stats.lost()), (40, 0));
    assert!(stats.jitter_ms() < 0.01, "jitter {} ms", stats.jitter_ms());
}
