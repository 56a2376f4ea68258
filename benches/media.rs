//! Per-frame cost of the media algorithms: G.711 on 160-sample (20 ms) frames, the in-band DTMF
//! detector, RFC 4733 packet handling, SRTP protect/unprotect of a 20 ms G.711 packet, and the
//! pacer's per-leg work for a plain and an SRTP leg (next frame, then protect in place).
//! Throughput is reported per frame/packet.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hotline::media::dtmf::inband::InbandDetector;
use hotline::media::dtmf::rfc4733::{encode_event, Rfc4733Receiver};
use hotline::media::g711;
use hotline::media::srtp::{MasterKey, SrtpProfile, SrtpReceiver, SrtpSender, MAX_TAG_LEN};
use hotline::media::stream::{IdleAudio, Outbound, StreamStart, PACKET_LEN};
use hotline::sdp::Codec;

const FRAME: usize = 160;

/// Speech-like test signal: a gliding tone, a steady one, and deterministic noise.
fn test_signal(samples: usize) -> Vec<i16> {
    let mut noise = 0x2545_f491u32;
    (0..samples)
        .map(|i| {
            let t = i as f32 / 8000.0;
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let jitter = (noise >> 20) as f32 - 2048.0;
            let voice = 6000.0 * (std::f32::consts::TAU * (220.0 + 30.0 * t) * t).sin()
                + 3000.0 * (std::f32::consts::TAU * 1100.0 * t).sin();
            (voice + jitter) as i16
        })
        .collect()
}

/// The alternative encoder design: a µ-law table indexed by the top 14 bits (16 KiB).
fn ulaw_table() -> Vec<u8> {
    (0..1u32 << 14)
        .map(|index| g711::encode_ulaw(((index << 2) as u16) as i16))
        .collect()
}

fn g711_frames(c: &mut Criterion) {
    let pcm = test_signal(FRAME);
    let mut ulaw = [0u8; FRAME];
    let mut alaw = [0u8; FRAME];
    g711::encode_ulaw_into(&pcm, &mut ulaw);
    g711::encode_alaw_into(&pcm, &mut alaw);
    let mut group = c.benchmark_group("g711_160_sample_frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_ulaw", |b| {
        let mut out = [0u8; FRAME];
        b.iter(|| g711::encode_ulaw_into(black_box(&pcm), &mut out))
    });
    group.bench_function("encode_ulaw_via_16k_table", |b| {
        let table = ulaw_table();
        let mut out = [0u8; FRAME];
        b.iter(|| {
            for (code, &sample) in out.iter_mut().zip(black_box(&pcm)) {
                *code = table[usize::from(sample as u16 >> 2)];
            }
        })
    });
    group.bench_function("decode_ulaw", |b| {
        let mut out = [0i16; FRAME];
        b.iter(|| g711::decode_ulaw_into(black_box(&ulaw), &mut out))
    });
    group.bench_function("encode_alaw", |b| {
        let mut out = [0u8; FRAME];
        b.iter(|| g711::encode_alaw_into(black_box(&pcm), &mut out))
    });
    group.bench_function("decode_alaw", |b| {
        let mut out = [0i16; FRAME];
        b.iter(|| g711::decode_alaw_into(black_box(&alaw), &mut out))
    });
    group.bench_function("ulaw_to_alaw", |b| {
        let mut out = [0u8; FRAME];
        b.iter(|| g711::ulaw_to_alaw_into(black_box(&ulaw), &mut out))
    });
    group.finish();
}

/// A continuous DTMF '5' (770 + 1336 Hz, -10 dBm0 each): every check runs on every window.
fn dtmf_signal(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f32 / 8000.0;
            let tone = |hz: f32| 7190.0 * (std::f32::consts::TAU * hz * t).sin();
            (tone(770.0) + tone(1336.0)) as i16
        })
        .collect()
}

fn inband_detector(c: &mut Criterion) {
    let mut group = c.benchmark_group("inband_dtmf_160_sample_frame");
    group.throughput(Throughput::Elements(1));
    for (name, pcm) in [
        ("speech_like", test_signal(8000)),
        ("dtmf_tone", dtmf_signal(8000)),
    ] {
        group.bench_function(name, |b| {
            let mut detector = InbandDetector::new();
            let mut frames = pcm.chunks_exact(FRAME).cycle();
            b.iter(|| detector.process(black_box(frames.next().unwrap_or(&[]))))
        });
    }
    group.finish();
}

fn rfc4733_receiver(c: &mut Criterion) {
    let mut group = c.benchmark_group("rfc4733");
    group.throughput(Throughput::Elements(1));
    group.bench_function("on_packet", |b| {
        let mut receiver = Rfc4733Receiver::new();
        let mut timestamp = 0u32;
        let mut step = 0u16;
        b.iter(|| {
            // One press every 10 packets: start, continuations, end.
            let mut payload = [0u8; 4];
            let end = step == 9;
            let _ = encode_event('5', end, step * 160, 10, &mut payload);
            let digit = receiver.on_packet(timestamp, step == 0, black_box(&payload));
            step += 1;
            if step == 10 {
                step = 0;
                timestamp = timestamp.wrapping_add(3200);
            }
            digit
        })
    });
    group.bench_function("encode_event", |b| {
        let mut payload = [0u8; 4];
        b.iter(|| encode_event(black_box('#'), true, 1280, 10, &mut payload))
    });
    group.finish();
}

/// A 172-byte RTP packet: 12-byte header (PT 0, SSRC 0x01020304) and 160 bytes of µ-law.
fn rtp_packet(seq: u16) -> [u8; 172] {
    let mut packet = [0xd5u8; 172];
    packet[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet
}

fn srtp(c: &mut Criterion) {
    let profile = SrtpProfile::Aes128CmHmacSha1_80;
    let master = MasterKey::from_bytes(&[0x5a; 30]);
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));
    group.bench_function("protect_172_byte_packet_sha1_80", |b| {
        let mut sender = SrtpSender::new(profile, &master);
        let plain = rtp_packet(0);
        let mut buf = [0u8; 172 + MAX_TAG_LEN];
        let mut seq = 0u16;
        b.iter(|| {
            // The copy (172 bytes) stands in for the pacer writing the next packet.
            buf[..172].copy_from_slice(&plain);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            seq = seq.wrapping_add(1);
            sender.protect(black_box(&mut buf), 172)
        })
    });
    group.bench_function("unprotect_182_byte_packet_sha1_80", |b| {
        // Packets are protected in untimed batches so the receiver always sees new indexes.
        const BATCH: usize = 1024;
        let mut sender = SrtpSender::new(profile, &master);
        let mut receiver = SrtpReceiver::new(profile, &master);
        let mut batch = vec![[0u8; 172 + MAX_TAG_LEN]; BATCH];
        let mut seq = 0u16;
        b.iter_custom(|iters| {
            let mut elapsed = std::time::Duration::ZERO;
            let mut remaining = iters;
            while remaining > 0 {
                let count = remaining.min(BATCH as u64) as usize;
                for packet in &mut batch[..count] {
                    packet[..172].copy_from_slice(&rtp_packet(seq));
                    seq = seq.wrapping_add(1);
                    assert!(sender.protect(packet, 172).is_ok());
                }
                let mut accepted = 0;
                let start = std::time::Instant::now();
                for packet in &mut batch[..count] {
                    accepted += usize::from(receiver.unprotect(black_box(packet)).is_ok());
                }
                elapsed += start.elapsed();
                assert_eq!(accepted, count);
                remaining -= count as u64;
            }
            elapsed
        })
    });
    group.finish();
}

/// What the pacer does per leg and tick (without the send): the next comfort-silence frame into
/// its one buffer, and for an SRTP leg the protect in place into the buffer's spare room.
fn pacer_leg(c: &mut Criterion) {
    let start = StreamStart {
        ssrc: 0x0102_0304,
        sequence: 0,
        timestamp: 0,
    };
    let mut group = c.benchmark_group("pacer_leg_tick");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plain", |b| {
        let mut outbound = Outbound::new(start, Codec::Pcmu, 0, IdleAudio::Silence);
        let mut buffer = [0u8; PACKET_LEN + MAX_TAG_LEN];
        b.iter(|| outbound.tick(black_box(&mut buffer)).len)
    });
    for profile in [
        SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfile::Aes128CmHmacSha1_32,
    ] {
        group.bench_function(format!("srtp_{}", profile.sdes_name()), |b| {
            let mut outbound = Outbound::new(start, Codec::Pcmu, 0, IdleAudio::Silence);
            let mut sender = SrtpSender::new(profile, &MasterKey::from_bytes(&[0x5a; 30]));
            let mut buffer = [0u8; PACKET_LEN + MAX_TAG_LEN];
            b.iter(|| {
                let len = outbound.tick(black_box(&mut buffer)).len;
                sender.protect(&mut buffer, len)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    g711_frames,
    inband_detector,
    rfc4733_receiver,
    srtp,
    pacer_leg
);
criterion_main!(benches);
