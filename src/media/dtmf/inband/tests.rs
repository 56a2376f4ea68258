//! Synthetic tones (generated here) and speech fixtures against the in-band detector.
//!
//! tests/fixtures/speech_{lt,en,ru,pl}.wav (5-9 s each, 8 kHz mono 16-bit PCM) were made with
//! `espeak-ng -v VOICE -w x.wav "TEXT"` (voices lt, en+f3, ru, pl+f2; hotline-greeting texts)
//! and `sox x.wav -r 8000 -c 1 -b 16 -e signed-integer speech_LANG.wav`. espeak's steady,
//! monotone pitch is a harsh talk-off case: its harmonics can sit on DTMF pairs for 40 ms.

use super::*;
use crate::media::g711::{decode_ulaw, encode_ulaw};
use std::f32::consts::TAU;

const RATE: f32 = 8000.0;

fn samples_for_ms(ms: f32) -> usize {
    (ms * RATE / 1000.0).round() as usize
}

/// Peak amplitude of a sine at `dbm0` (0 dBm0 = 22 730, as in the detector).
fn amplitude(dbm0: f32) -> f32 {
    22_730.0 * 10f32.powf(dbm0 / 20.0)
}

/// Deterministic pseudo-random generator so tests never flake.
struct Lcg(u32);

impl Lcg {
    fn next_unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.0 >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }
}

/// Builds a test signal in f32, then converts to i16 with a little noise so nothing is exact.
struct Signal {
    samples: Vec<f32>,
    noise: Lcg,
}

impl Signal {
    fn new() -> Self {
        Self {
            samples: Vec::new(),
            noise: Lcg(12345),
        }
    }

    fn silence(self, ms: f32) -> Self {
        self.silent_samples(samples_for_ms(ms))
    }

    fn silent_samples(mut self, n: usize) -> Self {
        self.samples.extend(std::iter::repeat_n(0.0, n));
        self
    }

    fn tones(mut self, tones: &[(f32, f32)], ms: f32) -> Self {
        let n = samples_for_ms(ms);
        let start = self.samples.len();
        for i in 0..n {
            let t = (start + i) as f32 / RATE;
            self.samples
                .push(tones.iter().map(|&(f, a)| a * (TAU * f * t).sin()).sum());
        }
        self
    }

    fn digit(self, digit: char, dbm0: f32, ms: f32) -> Self {
        let (row, col) = freqs(digit);
        self.tones(&[(row, amplitude(dbm0)), (col, amplitude(dbm0))], ms)
    }

    fn into_pcm(mut self) -> Vec<i16> {
        let noise_amplitude = amplitude(-55.0);
        self.samples
            .iter()
            .map(|&s| {
                (s + noise_amplitude * self.noise.next_unit())
                    .round()
                    .clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }
}

fn freqs(digit: char) -> (f32, f32) {
    for (r, row) in KEYPAD.iter().enumerate() {
        for (c, &d) in row.iter().enumerate() {
            if d == digit {
                return (ROW_FREQS_HZ[r], COL_FREQS_HZ[c]);
            }
        }
    }
    panic!("not a digit {digit}");
}

fn detect(pcm: &[i16], frame: usize) -> String {
    let mut detector = InbandDetector::new();
    let mut digits: String = pcm
        .chunks(frame)
        .filter_map(|f| detector.process(f))
        .collect();
    while let Some(d) = detector.process(&[]) {
        digits.push(d);
    }
    digits
}

const ALL_DIGITS: &str = "123A456B789C*0#D";

fn digit_press(digit: char, ms: f32) -> Vec<i16> {
    Signal::new()
        .silence(50.0)
        .digit(digit, -10.0, ms)
        .silence(60.0)
        .into_pcm()
}

#[test]
fn every_digit_is_detected_once() {
    for ms in [60.0, 80.0, 100.0] {
        let mut signal = Signal::new().silence(40.0);
        for digit in ALL_DIGITS.chars() {
            signal = signal.digit(digit, -10.0, ms).silence(60.0);
        }
        assert_eq!(detect(&signal.into_pcm(), 160), ALL_DIGITS, "{ms} ms tones");
    }
}

#[test]
fn duration_rule_holds_at_every_alignment() {
    // Every phase of the tone start against the 34-sample hop. Q.24: below 23 ms must be
    // rejected, 40 ms and longer accepted; we reject up to 30 ms (the acceptance edge lies at
    // 32-40 ms depending on digit and alignment).
    let cases = [(28.0, false), (30.0, false), (40.0, true), (45.0, true)];
    for offset in 0..SUB_BLOCK_LEN {
        for (ms, accepted) in cases {
            let pcm = Signal::new()
                .silent_samples(100 + offset)
                .digit('7', -10.0, ms)
                .silence(80.0)
                .into_pcm();
            let expected = if accepted { "7" } else { "" };
            assert_eq!(detect(&pcm, 160), expected, "{ms} ms at offset {offset}");
        }
    }
    for digit in ALL_DIGITS.chars() {
        for offset in [0, 9, 17, 26] {
            for (ms, accepted) in cases {
                let pcm = Signal::new()
                    .silent_samples(100 + offset)
                    .digit(digit, -10.0, ms)
                    .silence(80.0)
                    .into_pcm();
                let expected = if accepted {
                    digit.to_string()
                } else {
                    String::new()
                };
                assert_eq!(
                    detect(&pcm, 160),
                    expected,
                    "{digit} {ms} ms at offset {offset}"
                );
            }
        }
    }
}

#[test]
fn a_long_press_is_one_digit() {
    assert_eq!(detect(&digit_press('9', 2000.0), 160), "9");
}

#[test]
fn short_dropouts_are_bridged_but_pauses_split_presses() {
    // Q.24: interruptions up to 10 ms must not split a digit; pauses of 40 ms must.
    for digit in ALL_DIGITS.chars() {
        for offset in [0, 11, 23] {
            let with_gap = |gap_ms: f32| {
                Signal::new()
                    .silent_samples(80 + offset)
                    .digit(digit, -10.0, 100.0)
                    .silence(gap_ms)
                    .digit(digit, -10.0, 100.0)
                    .silence(80.0)
                    .into_pcm()
            };
            let once = digit.to_string();
            let twice = format!("{digit}{digit}");
            assert_eq!(
                detect(&with_gap(10.0), 160),
                once,
                "{digit}: 10 ms dropout, offset {offset}"
            );
            assert_eq!(
                detect(&with_gap(20.0), 160),
                once,
                "{digit}: 20 ms dropout, offset {offset}"
            );
            assert_eq!(
                detect(&with_gap(40.0), 160),
                twice,
                "{digit}: 40 ms pause, offset {offset}"
            );
            assert_eq!(
                detect(&with_gap(50.0), 160),
                twice,
                "{digit}: 50 ms pause, offset {offset}"
            );
        }
    }
    // Two different digits with the minimum Q.24 timing (40 ms on, 40 ms off).
    let pcm = Signal::new()
        .silence(30.0)
        .digit('1', -10.0, 45.0)
        .silence(40.0)
        .digit('2', -10.0, 45.0)
        .silence(60.0)
        .into_pcm();
    assert_eq!(detect(&pcm, 160), "12");
}

#[test]
fn any_frame_size_gives_the_same_digits() {
    let mut signal = Signal::new().silence(30.0);
    for digit in "159#".chars() {
        signal = signal.digit(digit, -10.0, 70.0).silence(60.0);
    }
    let pcm = signal.into_pcm();
    for frame in [1, 7, 34, 80, 160, 240, 333, pcm.len()] {
        assert_eq!(detect(&pcm, frame), "159#", "frames of {frame} samples");
    }
}

#[test]
fn digits_completed_in_one_long_chunk_come_out_in_order() {
    let mut signal = Signal::new().silence(30.0);
    for digit in "2468".chars() {
        signal = signal.digit(digit, -10.0, 70.0).silence(60.0);
    }
    let pcm = signal.into_pcm();
    let mut detector = InbandDetector::new();
    assert_eq!(detector.process(&pcm), Some('2'));
    assert_eq!(detector.process(&[]), Some('4'));
    assert_eq!(detector.process(&[0; 160]), Some('6'));
    assert_eq!(detector.process(&[]), Some('8'));
    assert_eq!(detector.process(&[]), None);
}

#[test]
fn an_oversized_chunk_keeps_the_first_digits_it_can_queue() {
    let presses = "0123456789*#ABCD0123";
    let mut signal = Signal::new().silence(30.0);
    for digit in presses.chars() {
        signal = signal.digit(digit, -10.0, 70.0).silence(60.0);
    }
    let pcm = signal.into_pcm();
    let mut detector = InbandDetector::new();
    let mut digits = String::new();
    let mut next = detector.process(&pcm);
    while let Some(digit) = next {
        digits.push(digit);
        next = detector.process(&[]);
    }
    assert_eq!(digits, presses[..PENDING_CAPACITY]);
}

fn off_frequency_press(digit: char, row_factor: f32, col_factor: f32) -> Vec<i16> {
    let (row, col) = freqs(digit);
    let a = amplitude(-10.0);
    Signal::new()
        .silence(40.0)
        .tones(&[(row * row_factor, a), (col * col_factor, a)], 80.0)
        .silence(60.0)
        .into_pcm()
}

#[test]
fn frequency_offsets_within_1_5_percent_are_accepted() {
    for digit in ALL_DIGITS.chars() {
        for (row_factor, col_factor) in [
            (1.015, 1.015),
            (0.985, 0.985),
            (1.015, 0.985),
            (0.985, 1.015),
        ] {
            let pcm = off_frequency_press(digit, row_factor, col_factor);
            assert_eq!(
                detect(&pcm, 160),
                digit.to_string(),
                "{digit} row x{row_factor} col x{col_factor}"
            );
        }
    }
}

#[test]
fn frequency_offsets_of_3_5_percent_are_rejected() {
    for digit in ALL_DIGITS.chars() {
        for factor in [1.035, 0.965] {
            for (row_factor, col_factor) in [(factor, 1.0), (1.0, factor), (factor, factor)] {
                let pcm = off_frequency_press(digit, row_factor, col_factor);
                assert_eq!(
                    detect(&pcm, 160),
                    "",
                    "{digit} row x{row_factor} col x{col_factor}"
                );
            }
        }
    }
}

fn twisted_press(digit: char, row_dbm0: f32, col_dbm0: f32) -> Vec<i16> {
    let (row, col) = freqs(digit);
    Signal::new()
        .silence(40.0)
        .tones(
            &[(row, amplitude(row_dbm0)), (col, amplitude(col_dbm0))],
            80.0,
        )
        .silence(60.0)
        .into_pcm()
}

#[test]
fn twist_within_q24_limits_is_accepted_and_beyond_rejected() {
    for digit in ALL_DIGITS.chars() {
        let expected = digit.to_string();
        // Normal twist: low group louder, up to 8 dB.
        assert_eq!(
            detect(&twisted_press(digit, -6.0, -13.0), 160),
            expected,
            "{digit} +7 dB low"
        );
        assert_eq!(
            detect(&twisted_press(digit, -6.0, -16.0), 160),
            "",
            "{digit} +10 dB low"
        );
        // Reverse twist: high group louder, up to 4 dB.
        assert_eq!(
            detect(&twisted_press(digit, -13.0, -10.0), 160),
            expected,
            "{digit} +3 dB high"
        );
        assert_eq!(
            detect(&twisted_press(digit, -16.0, -10.0), 160),
            "",
            "{digit} +6 dB high"
        );
    }
}

#[test]
fn levels_down_to_minus_28_dbm0_are_accepted_quieter_rejected() {
    assert_eq!(
        detect(&twisted_press('5', 0.0, 0.0), 160),
        "5",
        "0 dBm0 per tone"
    );
    assert_eq!(detect(&twisted_press('5', -28.0, -28.0), 160), "5");
    assert_eq!(detect(&twisted_press('5', -33.0, -33.0), 160), "");
}

#[test]
fn non_dtmf_signals_give_no_digit() {
    let mut noise = Lcg(99);
    let white_noise: Vec<i16> = (0..16_000)
        .map(|_| (amplitude(-15.0) * noise.next_unit()) as i16)
        .collect();
    assert_eq!(detect(&white_noise, 160), "", "white noise");
    assert_eq!(detect(&[0i16; 16_000], 160), "", "digital silence");
    assert_eq!(
        detect(&Signal::new().silence(2000.0).into_pcm(), 160),
        "",
        "line noise"
    );
    let a = amplitude(-10.0);
    let single = Signal::new().tones(&[(1000.0, a)], 2000.0).into_pcm();
    assert_eq!(detect(&single, 160), "", "1 kHz tone");
    let dial_tone = Signal::new()
        .tones(&[(350.0, a), (440.0, a)], 2000.0)
        .into_pcm();
    assert_eq!(detect(&dial_tone, 160), "", "350+440 Hz dial tone");
    let chord = Signal::new()
        .tones(&[(523.25, a), (659.25, a), (783.99, a)], 2000.0)
        .into_pcm();
    assert_eq!(detect(&chord, 160), "", "C major chord");
    let three_tones = Signal::new()
        .tones(&[(697.0, a), (1209.0, a), (1336.0, a)], 2000.0)
        .into_pcm();
    assert_eq!(detect(&three_tones, 160), "", "two column tones at once");
    let single_row = Signal::new().tones(&[(852.0, a)], 2000.0).into_pcm();
    assert_eq!(detect(&single_row, 160), "", "one DTMF frequency alone");
}

/// Minimal RIFF/WAVE reader for the 8 kHz mono 16-bit PCM fixtures.
fn read_wav(name: &str) -> Vec<i16> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let mut pos = 12;
    let mut format_ok = false;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            let format = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            let bits = u16::from_le_bytes([body[14], body[15]]);
            assert_eq!((format, channels, rate, bits), (1, 1, 8000, 16), "{name}");
            format_ok = true;
        } else if id == b"data" {
            assert!(format_ok, "{name}: data before fmt");
            return body
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{name}: no data chunk");
}

const SPEECH: [&str; 4] = [
    "speech_lt.wav",
    "speech_en.wav",
    "speech_ru.wav",
    "speech_pl.wav",
];

fn through_ulaw(pcm: &[i16]) -> Vec<i16> {
    pcm.iter().map(|&s| decode_ulaw(encode_ulaw(s))).collect()
}

fn with_gain(pcm: &[i16], gain: f32) -> Vec<i16> {
    pcm.iter()
        .map(|&s| (f32::from(s) * gain).clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[test]
fn speech_gives_no_digits() {
    for name in SPEECH {
        let speech = read_wav(name);
        assert!(speech.len() > 8000 * 4, "{name} holds a few seconds");
        assert_eq!(detect(&speech, 160), "", "{name}");
        assert_eq!(detect(&through_ulaw(&speech), 160), "", "{name} via µ-law");
        assert_eq!(
            detect(&with_gain(&speech, 0.25), 160),
            "",
            "{name} at -12 dB"
        );
        let clipped = with_gain(&speech, 2.0);
        assert_eq!(detect(&clipped, 160), "", "{name} at +6 dB, clipping");
    }
}

#[test]
fn a_digit_over_speech_is_detected_once() {
    for name in SPEECH {
        let speech = read_wav(name);
        for start_ms in [700.0, 1500.0, 2600.0] {
            let mut mixed = speech.clone();
            let start = samples_for_ms(start_ms);
            let tone = Signal::new().digit('8', -6.0, 120.0).into_pcm();
            for (out, t) in mixed[start..].iter_mut().zip(&tone) {
                *out = out.saturating_add(*t);
            }
            assert_eq!(detect(&mixed, 160), "8", "{name} with '8' at {start_ms} ms");
            assert_eq!(
                detect(&through_ulaw(&mixed), 160),
                "8",
                "{name} with '8' at {start_ms} ms via µ-law"
            );
        }
    }
}
