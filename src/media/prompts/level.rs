//! Level check of a loaded prompt: clipping and near-silence are worth a warning, since both
//! usually mean a bad export rather than a deliberate choice.

/// -0.1 dBFS: samples at or above this count as clipped.
const CLIP_LEVEL: f32 = 0.988_553;
/// More clipped samples than this (1 ms at 8 kHz) is clipping rather than one hot peak.
const CLIPPED_SAMPLES_ALLOWED: usize = 8;
/// Below -45 dBFS RMS a prompt is close to inaudible on a phone line.
const NEAR_SILENCE_RMS_DBFS: f32 = -45.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Levels {
    /// Largest magnitude, full scale 1.0.
    pub peak: f32,
    /// Root mean square, full scale 1.0.
    pub rms: f32,
    pub clipped_samples: usize,
}

impl Levels {
    pub fn measure(samples: &[f32]) -> Self {
        let mut peak = 0.0f32;
        let mut sum_of_squares = 0.0f64;
        let mut clipped_samples = 0;
        for &sample in samples {
            let magnitude = sample.abs();
            peak = peak.max(magnitude);
            sum_of_squares += f64::from(sample) * f64::from(sample);
            if magnitude >= CLIP_LEVEL {
                clipped_samples += 1;
            }
        }
        let rms = if samples.is_empty() {
            0.0
        } else {
            (sum_of_squares / samples.len() as f64).sqrt() as f32
        };
        Self {
            peak,
            rms,
            clipped_samples,
        }
    }

    pub fn clipping(&self) -> bool {
        self.clipped_samples > CLIPPED_SAMPLES_ALLOWED
    }

    pub fn near_silent(&self) -> bool {
        self.rms_dbfs() < NEAR_SILENCE_RMS_DBFS
    }

    pub fn rms_dbfs(&self) -> f32 {
        20.0 * self.rms.max(1e-10).log10()
    }
}
