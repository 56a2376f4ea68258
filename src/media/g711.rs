//! G.711 companding: µ-law and A-law encode/decode of 16-bit linear PCM, slice helpers for whole
//! frames, and the G.711 µ-law↔A-law transcoding tables (for relaying between call legs).
//!
//! Reference behaviour: bit-exact with the ITU-T G.191 Software Tool Library `g711.c`
//! (`ulaw_compress`/`ulaw_expand`, `alaw_compress`/`alaw_expand`) applied to 16-bit samples.
//! G.191 takes the magnitude of a negative sample as its ones' complement (`!x`, i.e. `-x - 1`),
//! not `-x`. That puts every negative decision threshold one LSB lower than the two's-complement
//! encoders derived from Sun's classic `g711.c` (`linear2ulaw`/`linear2alaw`), so those encoders
//! give a µ-law code one step apart from ours (one step closer to zero here) on 508 negative
//! inputs: the 4 samples of each of the 127 negative 14-bit decision thresholds (e.g. -1 → 0x7F,
//! "negative zero", where Sun's gives 0x7E). Sun's A-law already uses `-x - 1`, so A-law has no
//! such set. We follow G.191 deliberately (the ITU reference, and what the test oracle crate
//! implements: zero differences against it); `g711_one_step_differences_vs_twos_complement_encoders`
//! pins that exact set.
//!
//! Encoding computes the segment with `leading_zeros` instead of a table. Measured here
//! (`cargo bench --bench media`), a 16 KiB µ-law table indexed by the top 14 bits is faster in a
//! hot-cache microbenchmark (~64 vs ~160 ns per 160-sample frame), but both are ~1e-5 of the
//! frame's 20 ms, prompts are normally stored already encoded, and under load with many calls a
//! 16 KiB table per law would evict per-call state from L1. Decoding is a 256-entry table.
//! Everything here is allocation-free.

/// µ-law code of a zero sample (what silence/comfort frames are filled with).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law code of a zero sample (A-law has no zero level: this is the smallest positive one, +8).
pub const ALAW_SILENCE: u8 = 0xD5;

static ULAW_DECODE: [i16; 256] = build_ulaw_decode_table();
static ALAW_DECODE: [i16; 256] = build_alaw_decode_table();
static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw_table();
static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw_table();

/// Encodes one linear sample to µ-law (G.191 `ulaw_compress` on the top 14 bits).
#[inline]
pub fn encode_ulaw(sample: i16) -> u8 {
    // Ones' complement magnitude, as G.191 does (see module docs).
    let magnitude = if sample < 0 { !sample } else { sample };
    // 14-bit magnitude plus the µ-law bias (33), clipped to the 13-bit range of the last segment.
    let biased = ((magnitude as u16 >> 2) + 33).min(0x1FFF);
    // `biased` is 33..=8191, so its top bit is bit 5..=12 and `segment` is 0..=7.
    let segment = 16 - biased.leading_zeros() - 6;
    let mantissa = (biased >> (segment + 1)) & 0x0F;
    let code = ((segment << 4) as u16 | mantissa) as u8 ^ 0x7F;
    if sample >= 0 {
        code | 0x80
    } else {
        code
    }
}

/// Decodes one µ-law code to a linear sample.
#[inline]
pub fn decode_ulaw(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Encodes one linear sample to A-law (G.191 `alaw_compress` on the top 12 bits).
#[inline]
pub fn encode_alaw(sample: i16) -> u8 {
    let magnitude = if sample < 0 { !sample } else { sample };
    let level = (magnitude >> 4) as u16; // 0..=2047
                                         // Segments 0 and 1 share a step size, so the mantissa shift is `segment - 1`, floored at 0.
    let segment = (16 - (level | 0x0F).leading_zeros()) - 4; // 0..=7
    let mantissa = (level >> segment.saturating_sub(1)) & 0x0F;
    let code = ((segment << 4) as u16 | mantissa) as u8;
    let signed = if sample >= 0 { code | 0x80 } else { code };
    signed ^ 0x55
}

/// Decodes one A-law code to a linear sample.
#[inline]
pub fn decode_alaw(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

/// Transcodes a µ-law code to A-law per G.711 Table 3 (not `encode_alaw(decode_ulaw(c))`:
/// the G.711 table keeps µ→A→µ transparent except for the least significant bit of 8 codes).
#[inline]
pub fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[usize::from(code)]
}

/// Transcodes an A-law code to µ-law per G.711 Table 4.
#[inline]
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[usize::from(code)]
}

/// Encodes `min(pcm.len(), out.len())` samples; returns how many were written.
pub fn encode_ulaw_into(pcm: &[i16], out: &mut [u8]) -> usize {
    map_into(pcm, out, encode_ulaw)
}

/// Decodes `min(codes.len(), out.len())` codes; returns how many were written.
pub fn decode_ulaw_into(codes: &[u8], out: &mut [i16]) -> usize {
    map_into(codes, out, decode_ulaw)
}

/// Encodes `min(pcm.len(), out.len())` samples; returns how many were written.
pub fn encode_alaw_into(pcm: &[i16], out: &mut [u8]) -> usize {
    map_into(pcm, out, encode_alaw)
}

/// Decodes `min(codes.len(), out.len())` codes; returns how many were written.
pub fn decode_alaw_into(codes: &[u8], out: &mut [i16]) -> usize {
    map_into(codes, out, decode_alaw)
}

/// Transcodes `min(ulaw.len(), alaw.len())` codes; returns how many were written.
pub fn ulaw_to_alaw_into(ulaw: &[u8], alaw: &mut [u8]) -> usize {
    map_into(ulaw, alaw, ulaw_to_alaw)
}

/// Transcodes `min(alaw.len(), ulaw.len())` codes; returns how many were written.
pub fn alaw_to_ulaw_into(alaw: &[u8], ulaw: &mut [u8]) -> usize {
    map_into(alaw, ulaw, alaw_to_ulaw)
}

#[inline]
fn map_into<I: Copy, O>(input: &[I], output: &mut [O], convert: impl Fn(I) -> O) -> usize {
    let written = input.len().min(output.len());
    for (out, &value) in output.iter_mut().zip(input) {
        *out = convert(value);
    }
    written
}

/// G.191 `ulaw_expand`, scaled to 16 bits.
const fn build_ulaw_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        let inverted = !(code as u8);
        let exponent = ((inverted >> 4) & 0x07) as i32;
        let mantissa = (inverted & 0x0F) as i32;
        let step = 4 << (exponent + 1);
        let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
        table[code] = if code < 0x80 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        code += 1;
    }
    table
}

/// G.191 `alaw_expand`, scaled to 16 bits.
const fn build_alaw_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        let toggled = (code as u8 ^ 0x55) & 0x7F;
        let exponent = (toggled >> 4) as i32;
        let mut mantissa = (toggled & 0x0F) as i32;
        if exponent > 0 {
            mantissa += 16;
        }
        let mut magnitude = (mantissa << 4) + 8;
        if exponent > 1 {
            magnitude <<= exponent - 1;
        }
        table[code] = if code > 127 {
            magnitude as i16
        } else {
            -magnitude as i16
        };
        code += 1;
    }
    table
}

/// G.711 Table 3, "µ-law → A-law": A-law decoder output value number (1..=128) for each µ-law
/// decoder output value number (0..=127). Sign is carried through unchanged.
const ULAW_NUMBER_TO_ALAW_NUMBER: [u8; 128] = [
    1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    21, 22, 23, 24, 25, 27, 29, 31, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 48, 49, 50,
    51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75,
    76, 77, 78, 79, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99,
    100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118,
    119, 120, 121, 122, 123, 124, 125, 126, 127, 128,
];

/// G.711 Table 4, "A-law → µ-law": µ-law decoder output value number (0..=127) for each A-law
/// decoder output value number (1..=128, index = number - 1).
const ALAW_NUMBER_TO_ULAW_NUMBER: [u8; 128] = [
    1, 3, 5, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    32, 33, 33, 34, 34, 35, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 48, 49, 49, 50,
    51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73,
    74, 75, 76, 77, 78, 79, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96,
    97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115,
    116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
];

// G.711 numbers the quantised values per sign; the character signal is the number with the sign
// bit, µ-law with all bits inverted, A-law with the even bits inverted (and numbered from 1).

const fn build_ulaw_to_alaw_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        let ulaw_signal = code as u8 ^ 0xFF;
        let sign = ulaw_signal & 0x80;
        let alaw_number = ULAW_NUMBER_TO_ALAW_NUMBER[(ulaw_signal & 0x7F) as usize];
        table[code] = (sign | (alaw_number - 1)) ^ 0xD5;
        code += 1;
    }
    table
}

const fn build_alaw_to_ulaw_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        let alaw_signal = code as u8 ^ 0xD5;
        let sign = alaw_signal & 0x80;
        let ulaw_number = ALAW_NUMBER_TO_ULAW_NUMBER[(alaw_signal & 0x7F) as usize];
        table[code] = (sign | ulaw_number) ^ 0xFF;
        code += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_codec_algorithms as oracle;

    fn all_samples() -> impl Iterator<Item = i16> {
        i16::MIN..=i16::MAX
    }

    #[test]
    fn encoders_match_oracle_on_all_65536_samples() {
        // The oracle (G.191-generated reference data) and we agree everywhere: no deliberate
        // differences, so the mismatch set is empty.
        let ulaw_mismatches: Vec<i16> = all_samples()
            .filter(|&s| encode_ulaw(s) != oracle::encode_ulaw(s))
            .collect();
        let alaw_mismatches: Vec<i16> = all_samples()
            .filter(|&s| encode_alaw(s) != oracle::encode_alaw(s))
            .collect();
        assert_eq!(ulaw_mismatches, Vec::<i16>::new());
        assert_eq!(alaw_mismatches, Vec::<i16>::new());
    }

    #[test]
    fn decoders_match_oracle_on_all_256_codes() {
        for code in 0..=255u8 {
            assert_eq!(
                decode_ulaw(code),
                oracle::decode_ulaw(code),
                "µ-law {code:#04x}"
            );
            assert_eq!(
                decode_alaw(code),
                oracle::decode_alaw(code),
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn transcoding_matches_oracle_g711_tables_on_all_256_codes() {
        for code in 0..=255u8 {
            assert_eq!(
                ulaw_to_alaw(code),
                oracle::convert_ulaw_to_alaw(code),
                "{code:#04x}"
            );
            assert_eq!(
                alaw_to_ulaw(code),
                oracle::convert_alaw_to_ulaw(code),
                "{code:#04x}"
            );
        }
    }

    #[test]
    fn g711_tables_differ_from_decode_then_encode_on_a_known_set() {
        // Going through linear would be lossier than G.711's tables on these codes; pinning the
        // sets documents why the tables are kept.
        let via_linear_u2a: Vec<u8> = (0..=255u8)
            .filter(|&c| ulaw_to_alaw(c) != encode_alaw(decode_ulaw(c)))
            .collect();
        let via_linear_a2u: Vec<u8> = (0..=255u8)
            .filter(|&c| alaw_to_ulaw(c) != encode_ulaw(decode_alaw(c)))
            .collect();
        assert_eq!(via_linear_u2a.len(), 46);
        assert_eq!(via_linear_u2a, VIA_LINEAR_U2A_DIFFERENCES);
        assert_eq!(via_linear_a2u.len(), 34);
        assert_eq!(via_linear_a2u, VIA_LINEAR_A2U_DIFFERENCES);
    }

    /// 46 µ-law codes whose G.711 Table 3 A-law code differs from `encode_alaw(decode_ulaw(c))`.
    const VIA_LINEAR_U2A_DIFFERENCES: &[u8] = &[
        0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e,
        0x2f, 0x3f, 0x4e, 0x4f, 0x71, 0x73, 0x75, 0x77, 0x79, 0x7b, 0x7d, 0x7f, 0xa0, 0xa1, 0xa2,
        0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xbf, 0xce,
        0xcf,
    ];
    /// 34 A-law codes whose G.711 Table 4 µ-law code differs from `encode_ulaw(decode_alaw(c))`.
    const VIA_LINEAR_A2U_DIFFERENCES: &[u8] = &[
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x1a, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c,
        0x8d, 0x8e, 0x8f, 0x9a,
    ];

    #[test]
    fn double_transcoding_changes_only_the_lsb_of_the_codes_g711_lists() {
        // G.711 Table 3 note 2: µ-law values 0, 2, ..., 14 (by number) come back one higher.
        for code in 0..=255u8 {
            let number = (code ^ 0xFF) & 0x7F;
            let back = alaw_to_ulaw(ulaw_to_alaw(code));
            if number <= 14 && number % 2 == 0 {
                assert_eq!(back, code ^ 0x01, "{code:#04x}");
            } else {
                assert_eq!(back, code, "{code:#04x}");
            }
        }
        // Table 4 note 2: A-law numbers 26, 28, 30, 32, 45, 47, 63, 80 change in bit 8 only.
        for code in 0..=255u8 {
            let number = ((code ^ 0xD5) & 0x7F) + 1;
            let back = ulaw_to_alaw(alaw_to_ulaw(code));
            if [26, 28, 30, 32, 45, 47, 63, 80].contains(&number) {
                assert_eq!(back, code ^ 0x01, "{code:#04x}");
            } else {
                assert_eq!(back, code, "{code:#04x}");
            }
        }
    }

    #[test]
    fn silence_codes() {
        assert_eq!(encode_ulaw(0), ULAW_SILENCE);
        assert_eq!(decode_ulaw(ULAW_SILENCE), 0);
        assert_eq!(encode_alaw(0), ALAW_SILENCE);
        assert_eq!(decode_alaw(ALAW_SILENCE), 8);
        // -1 is µ-law "negative zero" under G.191; it still decodes to 0.
        assert_eq!(encode_ulaw(-1), 0x7F);
        assert_eq!(decode_ulaw(0x7F), 0);
    }

    #[test]
    fn every_code_round_trips_except_ulaw_negative_zero() {
        let ulaw_non_round_trip: Vec<u8> = (0..=255u8)
            .filter(|&c| encode_ulaw(decode_ulaw(c)) != c)
            .collect();
        assert_eq!(
            ulaw_non_round_trip,
            vec![0x7F],
            "0x7F decodes to 0, which encodes to 0xFF"
        );
        for code in 0..=255u8 {
            assert_eq!(encode_alaw(decode_alaw(code)), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn requantising_is_idempotent_and_monotonic() {
        let mut previous_ulaw = i16::MIN;
        let mut previous_alaw = i16::MIN;
        for sample in all_samples() {
            let ulaw = decode_ulaw(encode_ulaw(sample));
            let alaw = decode_alaw(encode_alaw(sample));
            assert_eq!(decode_ulaw(encode_ulaw(ulaw)), ulaw, "µ-law {sample}");
            assert_eq!(decode_alaw(encode_alaw(alaw)), alaw, "A-law {sample}");
            assert!(ulaw >= previous_ulaw, "µ-law not monotonic at {sample}");
            assert!(alaw >= previous_alaw, "A-law not monotonic at {sample}");
            previous_ulaw = ulaw;
            previous_alaw = alaw;
        }
    }

    #[test]
    fn quantisation_error_stays_within_half_a_step() {
        // Inside the non-clipping range each law's error is at most half its local step
        // (+1 LSB of the 14/13-bit input truncation). Step = distance to the next decoded level.
        for sample in -32124i16..=32124 {
            let decoded = decode_ulaw(encode_ulaw(sample));
            let ulaw_error = (i32::from(decoded) - i32::from(sample)).abs();
            // A sample on a segment edge may round into the coarser neighbour segment.
            let ulaw_step = ulaw_step_at(sample).max(ulaw_step_at(decoded));
            assert!(
                ulaw_error <= ulaw_step / 2 + 4,
                "µ-law {sample}: {ulaw_error}"
            );
        }
        for sample in -32256i16..=32256 {
            let decoded = decode_alaw(encode_alaw(sample));
            let alaw_error = (i32::from(decoded) - i32::from(sample)).abs();
            let alaw_step = alaw_step_at(sample).max(alaw_step_at(decoded));
            assert!(
                alaw_error <= alaw_step / 2 + 8,
                "A-law {sample}: {alaw_error}"
            );
        }
    }

    fn ulaw_step_at(sample: i16) -> i32 {
        let magnitude = i32::from(sample).abs();
        // Segment k spans up to (256 << k) - 132 with step 8 << k.
        (0..8)
            .map(|k| (k, (256 << k) - 132))
            .find(|&(_, end)| magnitude <= end)
            .map_or(1024, |(k, _)| 8 << k)
    }

    fn alaw_step_at(sample: i16) -> i32 {
        // Segments 0 and 1 (below 512) step by 16; segment k >= 2 spans [256 << (k-1), 512 << (k-1))
        // with step 16 << (k-1).
        let magnitude = i32::from(sample).unsigned_abs().max(1);
        let top_bit = 31 - magnitude.leading_zeros() as i32;
        16 << (top_bit - 8).max(0)
    }

    #[test]
    fn decoding_is_sign_symmetric() {
        for code in 0..=127u8 {
            assert_eq!(
                decode_ulaw(code),
                -decode_ulaw(code | 0x80),
                "µ-law {code:#04x}"
            );
            assert_eq!(
                decode_alaw(code),
                -decode_alaw(code | 0x80),
                "A-law {code:#04x}"
            );
        }
    }

    /// Sun `g711.c` `linear2ulaw` (two's-complement magnitude), used only to pin where this
    /// common alternative differs from G.191.
    fn sun_ulaw(sample: i16) -> u8 {
        let mut value = i32::from(sample) >> 2;
        let mask = if value < 0 {
            value = -value;
            0x7F
        } else {
            0xFF
        };
        let biased = (value + 33).min(0x1FFF);
        let segment = 32 - biased.leading_zeros() as i32 - 6;
        let code = ((segment << 4) | ((biased >> (segment + 1)) & 0x0F)) as u8;
        code ^ mask
    }

    /// Sun `g711.c` `linear2alaw`: it already uses `-x - 1` for negatives, i.e. G.191's rule.
    fn sun_alaw(sample: i16) -> u8 {
        let mut value = i32::from(sample) >> 3;
        let mask = if value >= 0 {
            0xD5
        } else {
            value = -value - 1;
            0x55
        };
        let segment = (32 - (value | 0x1F).leading_zeros() as i32) - 5;
        let shift = if segment < 2 { 1 } else { segment };
        let code = ((segment << 4) | ((value >> shift) & 0x0F)) as u8;
        code ^ mask
    }

    #[test]
    fn g711_one_step_differences_vs_twos_complement_encoders() {
        // µ-law: exactly the negative samples whose two's-complement 14-bit magnitude m sits on a
        // decision threshold (m + 33 a multiple of its segment's step, below the clip level):
        // 127 thresholds x 4 samples sharing the same 14-bit value = 508 samples. There G.191
        // (magnitude m - 1) picks the neighbouring code one step closer to zero.
        let on_negative_threshold = |sample: i16| {
            let biased = -(i32::from(sample) >> 2) + 33;
            let segment = 32 - biased.leading_zeros() as i32 - 6;
            sample < 0 && biased <= 0x1FFF && biased % (2 << segment) == 0
        };
        let differing: Vec<i16> = all_samples()
            .filter(|&s| encode_ulaw(s) != sun_ulaw(s))
            .collect();
        let expected: Vec<i16> = all_samples()
            .filter(|&s| on_negative_threshold(s))
            .collect();
        assert_eq!(differing.len(), 508);
        assert_eq!(differing, expected);
        for &sample in &differing {
            assert_eq!(
                encode_ulaw(sample),
                sun_ulaw(sample) + 1,
                "one step apart at {sample}"
            );
        }
        // A-law: Sun's encoder already uses -x - 1 for negatives, so it equals G.191 everywhere.
        assert!(all_samples().all(|s| encode_alaw(s) == sun_alaw(s)));
    }

    #[test]
    fn slice_helpers_convert_the_common_prefix() {
        let pcm = [0i16, -1, 1000, -1000, 32767, -32768];
        let mut ulaw = [0u8; 6];
        assert_eq!(encode_ulaw_into(&pcm, &mut ulaw), 6);
        assert_eq!(
            ulaw.to_vec(),
            pcm.iter().map(|&s| encode_ulaw(s)).collect::<Vec<_>>()
        );
        let mut short = [0u8; 4];
        assert_eq!(encode_alaw_into(&pcm, &mut short), 4);
        assert_eq!(
            short.to_vec(),
            pcm[..4].iter().map(|&s| encode_alaw(s)).collect::<Vec<_>>()
        );
        let mut decoded = [0i16; 8];
        assert_eq!(decode_ulaw_into(&ulaw, &mut decoded), 6);
        assert_eq!(&decoded[..6], &ulaw.map(decode_ulaw)[..]);
        assert_eq!(&decoded[6..], &[0, 0], "untouched past the input");
        let mut alaw = [0u8; 6];
        assert_eq!(ulaw_to_alaw_into(&ulaw, &mut alaw), 6);
        assert_eq!(alaw, ulaw.map(ulaw_to_alaw));
        let mut back = [0u8; 6];
        assert_eq!(alaw_to_ulaw_into(&alaw, &mut back), 6);
        assert_eq!(back, alaw.map(alaw_to_ulaw));
        let mut linear = [0i16; 6];
        assert_eq!(decode_alaw_into(&alaw, &mut linear), 6);
        assert_eq!(linear, alaw.map(decode_alaw));
    }
}
