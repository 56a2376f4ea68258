//! Conversion of decoded prompts to 8 kHz with rubato's FFT resampler: band-limited (its
//! anti-aliasing filter removes everything above 4 kHz) and exact for a fixed ratio, which is
//! all an offline, whole-file conversion needs.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::{PromptErrorReason, SAMPLE_RATE};

/// Input chunk the FFT resampler works in; any size works for whole clips, this one keeps
/// its FFTs small and fast.
const CHUNK_FRAMES: usize = 1024;

/// One resampler per input rate, reused across files: building one plans FFTs and filters.
#[derive(Default)]
pub(super) struct Resamplers {
    by_input_rate: HashMap<u32, Fft<f32>>,
}

impl Resamplers {
    /// `samples` (mono, at `rate`) at 8 kHz; untouched when already there.
    pub fn resample_to_prompt_rate(
        &mut self,
        samples: Vec<f32>,
        rate: u32,
    ) -> Result<Vec<f32>, PromptErrorReason> {
        if rate == SAMPLE_RATE {
            return Ok(samples);
        }
        let failed = |detail: String| PromptErrorReason::Resample { rate, detail };
        let resampler = match self.by_input_rate.entry(rate) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(
                Fft::new(
                    rate as usize,
                    SAMPLE_RATE as usize,
                    CHUNK_FRAMES,
                    1,
                    FixedSync::Both,
                )
                .map_err(|error| failed(error.to_string()))?,
            ),
        };
        let input = InterleavedSlice::new(&samples, 1, samples.len())
            .map_err(|error| failed(error.to_string()))?;
        let output = resampler
            .process_all(&input, samples.len(), None)
            .map_err(|error| failed(error.to_string()))?;
        Ok(output.take_data())
    }
}
