//! In-band DTMF detection on 8 kHz linear PCM (decode G.711 first): Goertzel filters at the
//! eight DTMF frequencies with ITU-T Q.24-style acceptance checks, reporting each press once.
//!
//! Design, and why:
//! - Analysis window 204 samples (25.5 ms, ≈ the classic 205), not ~102: the longer window's
//!   ~39 Hz resolution is what separates ±1.5 % (accept) from ±3.5 % (reject) tones. In a
//!   102-sample, 78 Hz-wide bin the two offsets of 697 Hz differ by under 1.5 dB.
//! - The window slides in 34-sample (4.25 ms) sub-blocks. Each filter runs Goertzel over one
//!   sub-block and keeps its complex DFT value; a window, its halves and thirds are exact sums of
//!   phase-rotated sub-block values, so overlap costs nothing per sample. The fine hop makes the
//!   duration rule sharp: with a 25.5 ms hop no threshold both rejects 30 ms and accepts 40 ms
//!   tones at every alignment.
//! - Frequency by phase: a tone's phase advance between consecutive sub-windows gives its
//!   frequency offset, accepted within ±2.5 % (between Q.24's 1.5 % accept and 3.5 % reject).
//!   Rows compare the two 102-sample halves (least disturbed by leakage from the column tone);
//!   columns compare 68-sample thirds, whose ±59 Hz unambiguous range covers 3.5 % of 1633 Hz,
//!   so a far-off column tone cannot alias back into range.
//! - Per window: both tones above -30 dBm0; each the clear peak of its group (8 dB); twist within
//!   Q.24 limits; each tone steady across the window halves (so a window counts only when the tone
//!   fills it, which pins the duration rule); and the two tones holding ≥ 70 % of the window's
//!   energy, the check that rejects speech and music (espeak speech peaks at ~61 %).
//! - A digit is reported after 5 consecutive qualifying windows (tones of ≥ 40 ms always, ≤ 30 ms
//!   never, at any alignment; Q.24: accept ≥ 40 ms, reject < 23 ms), and not again until 12
//!   consecutive non-qualifying windows: dropouts up to 25 ms are bridged, 40 ms pauses always
//!   split presses (Q.24: bridge 10 ms, recognise 40 ms). So a long press is one digit.
//!
//! Levels: 0 dBm0 is taken as a sine of peak 22 730 (G.711 full scale is +3.14 dBm0).

use std::f32::consts::PI;

const SAMPLE_RATE_HZ: f32 = 8000.0;
/// Hop between analysis windows (4.25 ms).
const SUB_BLOCK_LEN: usize = 34;
const SUB_BLOCKS_PER_WINDOW: usize = 6;
const WINDOW_LEN: usize = SUB_BLOCK_LEN * SUB_BLOCKS_PER_WINDOW;
const HALF_WINDOW_SUB_BLOCKS: usize = SUB_BLOCKS_PER_WINDOW / 2;
const HALF_WINDOW_LEN: usize = SUB_BLOCK_LEN * HALF_WINDOW_SUB_BLOCKS;

const ROW_FREQS_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COL_FREQS_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Sub-blocks per sub-window used for the phase (frequency) check; see module docs.
const ROW_GROUP_SUB_BLOCKS: usize = 3;
const COL_GROUP_SUB_BLOCKS: usize = 2;

/// Largest accepted relative frequency offset.
const FREQUENCY_TOLERANCE: f32 = 0.025;
/// Quietest accepted tone: -30 dBm0 per frequency.
const MIN_TONE_AMPLITUDE: f32 = 719.0;
/// Energy of such a tone over one window.
const MIN_TONE_ENERGY: f32 = MIN_TONE_AMPLITUDE * MIN_TONE_AMPLITUDE / 2.0 * WINDOW_LEN as f32;
/// Q.24 twist: the low (row) tone may exceed the high (column) one by 8 dB ("normal", what
/// line loss produces), the high may exceed the low by 4 dB ("reverse"). Energy ratios.
const NORMAL_TWIST: f32 = 6.31;
const REVERSE_TWIST: f32 = 2.51;
/// Each tone must beat every other frequency of its group by 8 dB.
const RELATIVE_PEAK: f32 = 6.31;
/// Share of the window's energy the two tones must hold.
const MIN_TONE_FRACTION: f32 = 0.7;
/// Weaker window half of a tone relative to the stronger (energy). A tone must fill the window,
/// which makes the duration rule independent of the silence around it; 0.35 leaves room for
/// leakage from the other group's tone at the full 8 dB twist.
const MIN_STEADINESS: f32 = 0.35;
/// Consecutive qualifying windows before a digit is reported.
const HITS_TO_REPORT: u32 = 5;
/// Consecutive non-qualifying windows that end a press.
const MISSES_TO_RELEASE: u32 = 12;
/// Digits completed within one `process` call beyond the one it returns wait here. Only a
/// chunk holding more than this many presses (over ~1.3 s of dense dialling) would overflow it;
/// the excess digits are then dropped rather than growing memory.
const PENDING_CAPACITY: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
struct Complex {
    re: f32,
    im: f32,
}

impl Complex {
    fn from_angle(radians: f32) -> Self {
        Self {
            re: radians.cos(),
            im: radians.sin(),
        }
    }

    fn mul(self, other: Self) -> Self {
        Self {
            re: self.re * other.re - self.im * other.im,
            im: self.re * other.im + self.im * other.re,
        }
    }

    fn add(self, other: Self) -> Self {
        Self {
            re: self.re + other.re,
            im: self.im + other.im,
        }
    }

    fn conj(self) -> Self {
        Self {
            re: self.re,
            im: -self.im,
        }
    }

    fn norm_sqr(self) -> f32 {
        self.re * self.re + self.im * self.im
    }

    fn arg(self) -> f32 {
        self.im.atan2(self.re)
    }
}

/// Per-frequency constants, computed once in `new`.
#[derive(Debug, Clone, Copy)]
struct Filter {
    /// Goertzel output from the last two states: `y = s1 - e^{-jω} s2`.
    cos: f32,
    sin: f32,
    /// `e^{-jω(L-1)}`: turns the Goertzel output into the DFT referenced to the sub-block start.
    to_start: Complex,
    /// `e^{-jωL}`: re-references a sub-block's DFT one sub-block later in a sum.
    step: Complex,
    /// `e^{-jω·lag}`: removes the nominal phase advance between sub-windows.
    nominal_advance: Complex,
    group_sub_blocks: usize,
    /// Phase deviation between sub-windows allowed by `FREQUENCY_TOLERANCE`, capped at π.
    max_phase: f32,
}

impl Filter {
    fn new(freq_hz: f32, group_sub_blocks: usize) -> Self {
        let omega = 2.0 * PI * freq_hz / SAMPLE_RATE_HZ;
        let lag = (group_sub_blocks * SUB_BLOCK_LEN) as f32;
        let step = Complex::from_angle(-omega * SUB_BLOCK_LEN as f32);
        Self {
            cos: omega.cos(),
            sin: omega.sin(),
            to_start: Complex::from_angle(-omega * (SUB_BLOCK_LEN - 1) as f32),
            step,
            nominal_advance: Complex::from_angle(-omega * lag),
            group_sub_blocks,
            max_phase: (2.0 * PI * FREQUENCY_TOLERANCE * freq_hz * lag / SAMPLE_RATE_HZ).min(PI),
        }
    }
}

/// What one window says about one frequency.
#[derive(Debug, Clone, Copy, Default)]
struct ToneMeasure {
    /// Energy of the component over the whole window (same units as the sum of squares).
    energy: f32,
    /// Whether the component is present at a steady level in both window halves.
    steady: bool,
}

#[derive(Debug, Clone, Copy)]
struct DigitQueue {
    digits: [char; PENDING_CAPACITY],
    head: usize,
    len: usize,
}

impl DigitQueue {
    fn new() -> Self {
        Self {
            digits: ['\0'; PENDING_CAPACITY],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, digit: char) {
        if self.len < PENDING_CAPACITY {
            self.digits[(self.head + self.len) % PENDING_CAPACITY] = digit;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<char> {
        if self.len == 0 {
            return None;
        }
        let digit = self.digits[self.head];
        self.head = (self.head + 1) % PENDING_CAPACITY;
        self.len -= 1;
        Some(digit)
    }
}

/// Per-call in-band DTMF detector for 8 kHz linear PCM. Fixed-size state; `process` allocates
/// nothing.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    /// Filters 0-3 are the rows, 4-7 the columns.
    filters: [Filter; 8],
    /// Goertzel coefficients `2cos ω` and states, kept as arrays so the loop vectorises.
    coeffs: [f32; 8],
    s1: [f32; 8],
    s2: [f32; 8],
    sub_block_fill: usize,
    sub_block_energy: f32,
    /// Ring of the last sub-blocks: DFT per filter, and signal energy.
    sub_block_dft: [[Complex; 8]; SUB_BLOCKS_PER_WINDOW],
    sub_block_energies: [f32; SUB_BLOCKS_PER_WINDOW],
    /// Ring slot of the oldest sub-block, i.e. the next one to overwrite.
    oldest: usize,
    sub_blocks_seen: usize,
    candidate: Option<char>,
    candidate_hits: u32,
    reported: Option<char>,
    misses: u32,
    pending: DigitQueue,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    pub fn new() -> Self {
        let filters: [Filter; 8] = std::array::from_fn(|i| match i {
            0..=3 => Filter::new(ROW_FREQS_HZ[i], ROW_GROUP_SUB_BLOCKS),
            _ => Filter::new(COL_FREQS_HZ[i - 4], COL_GROUP_SUB_BLOCKS),
        });
        Self {
            coeffs: filters.map(|f| 2.0 * f.cos),
            filters,
            s1: [0.0; 8],
            s2: [0.0; 8],
            sub_block_fill: 0,
            sub_block_energy: 0.0,
            sub_block_dft: [[Complex::default(); 8]; SUB_BLOCKS_PER_WINDOW],
            sub_block_energies: [0.0; SUB_BLOCKS_PER_WINDOW],
            oldest: 0,
            sub_blocks_seen: 0,
            candidate: None,
            candidate_hits: 0,
            reported: None,
            misses: 0,
            pending: DigitQueue::new(),
        }
    }

    /// Feeds samples of any count (normally a 20 ms frame of 160). Returns a digit when a press
    /// has just been recognised. Should one call complete several presses (a chunk longer than a
    /// press plus pause, ~80 ms), the others are returned by the following calls, in order;
    /// `process(&[])` drains them.
    pub fn process(&mut self, samples: &[i16]) -> Option<char> {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (SUB_BLOCK_LEN - self.sub_block_fill).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            self.accumulate(chunk);
            rest = tail;
            if self.sub_block_fill == SUB_BLOCK_LEN {
                self.finish_sub_block();
            }
        }
        self.pending.pop()
    }

    fn accumulate(&mut self, chunk: &[i16]) {
        for &sample in chunk {
            let x = f32::from(sample);
            self.sub_block_energy += x * x;
            for i in 0..8 {
                let s0 = x + self.coeffs[i] * self.s1[i] - self.s2[i];
                self.s2[i] = self.s1[i];
                self.s1[i] = s0;
            }
        }
        self.sub_block_fill += chunk.len();
    }

    fn finish_sub_block(&mut self) {
        let slot = self.oldest;
        for (i, filter) in self.filters.iter().enumerate() {
            let goertzel = Complex {
                re: self.s1[i] - filter.cos * self.s2[i],
                im: filter.sin * self.s2[i],
            };
            self.sub_block_dft[slot][i] = goertzel.mul(filter.to_start);
        }
        self.sub_block_energies[slot] = self.sub_block_energy;
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.sub_block_energy = 0.0;
        self.sub_block_fill = 0;
        self.oldest = (slot + 1) % SUB_BLOCKS_PER_WINDOW;
        self.sub_blocks_seen = (self.sub_blocks_seen + 1).min(SUB_BLOCKS_PER_WINDOW);
        if self.sub_blocks_seen == SUB_BLOCKS_PER_WINDOW {
            let hit = self.classify_window();
            self.track(hit);
        }
    }

    /// DFT of `count` consecutive sub-blocks starting `first` sub-blocks into the window.
    fn group_dft(&self, filter_index: usize, first: usize, count: usize) -> Complex {
        let step = self.filters[filter_index].step;
        (first..first + count)
            .rev()
            .fold(Complex::default(), |acc, k| {
                let slot = (self.oldest + k) % SUB_BLOCKS_PER_WINDOW;
                acc.mul(step).add(self.sub_block_dft[slot][filter_index])
            })
    }

    fn measure(&self, filter_index: usize) -> ToneMeasure {
        // From the two halves: wide enough that leakage from the other group's tone (up to
        // 8 dB louder) barely moves either half.
        let first_half = self.group_dft(filter_index, 0, HALF_WINDOW_SUB_BLOCKS);
        let second_half =
            self.group_dft(filter_index, HALF_WINDOW_SUB_BLOCKS, HALF_WINDOW_SUB_BLOCKS);
        let (first_energy, second_energy) = (first_half.norm_sqr(), second_half.norm_sqr());
        ToneMeasure {
            // |DFT|² of a sine over n samples is (A·n/2)², its energy A²·n/2.
            energy: (first_energy + second_energy) * 2.0 / HALF_WINDOW_LEN as f32,
            steady: first_energy.min(second_energy)
                >= MIN_STEADINESS * first_energy.max(second_energy),
        }
    }

    /// Whether the tone's phase advance between consecutive sub-windows of the filter's lag
    /// puts its frequency within `FREQUENCY_TOLERANCE` of nominal.
    fn on_frequency(&self, filter_index: usize) -> bool {
        let filter = &self.filters[filter_index];
        let lag = filter.group_sub_blocks;
        let advance =
            (lag..SUB_BLOCKS_PER_WINDOW)
                .step_by(lag)
                .fold(Complex::default(), |sum, start| {
                    let later = self.group_dft(filter_index, start, lag);
                    let earlier = self.group_dft(filter_index, start - lag, lag);
                    sum.add(later.mul(earlier.conj()))
                });
        advance.mul(filter.nominal_advance).arg().abs() <= filter.max_phase
    }

    /// The digit this window shows, if it passes every check (cheapest checks first).
    fn classify_window(&self) -> Option<char> {
        let measures: [ToneMeasure; 8] = std::array::from_fn(|i| self.measure(i));
        let (rows, cols) = measures.split_at(4);
        let (row, row_tone) = strongest(rows)?;
        let (col, col_tone) = strongest(cols)?;
        let total_energy: f32 = self.sub_block_energies.iter().sum();

        let loud_enough = row_tone.energy >= MIN_TONE_ENERGY && col_tone.energy >= MIN_TONE_ENERGY;
        let twist_ok = row_tone.energy <= col_tone.energy * NORMAL_TWIST
            && col_tone.energy <= row_tone.energy * REVERSE_TWIST;
        let tonal = row_tone.energy + col_tone.energy >= MIN_TONE_FRACTION * total_energy;
        let steady = row_tone.steady && col_tone.steady;
        let qualifies = loud_enough
            && twist_ok
            && tonal
            && steady
            && dominates(rows, row)
            && dominates(cols, col)
            && self.on_frequency(row)
            && self.on_frequency(4 + col);
        qualifies.then(|| KEYPAD[row][col])
    }

    fn track(&mut self, hit: Option<char>) {
        let Some(digit) = hit else {
            self.candidate = None;
            self.candidate_hits = 0;
            self.misses = self.misses.saturating_add(1);
            if self.misses >= MISSES_TO_RELEASE {
                self.reported = None;
            }
            return;
        };
        self.misses = 0;
        if self.candidate == Some(digit) {
            self.candidate_hits = self.candidate_hits.saturating_add(1);
        } else {
            self.candidate = Some(digit);
            self.candidate_hits = 1;
        }
        if self.candidate_hits >= HITS_TO_REPORT && self.reported != Some(digit) {
            self.reported = Some(digit);
            self.pending.push(digit);
        }
    }
}

/// Index and measure of the highest-energy tone of a group.
fn strongest(group: &[ToneMeasure]) -> Option<(usize, ToneMeasure)> {
    group
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.energy.total_cmp(&b.1.energy))
}

fn dominates(group: &[ToneMeasure], peak: usize) -> bool {
    let peak_energy = group.get(peak).map_or(0.0, |m| m.energy);
    group
        .iter()
        .enumerate()
        .all(|(i, m)| i == peak || m.energy * RELATIVE_PEAK <= peak_energy)
}

#[cfg(test)]
mod tests;
