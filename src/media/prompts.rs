//! The voice prompt library: every `<dir>/<lang>/<name>.{wav,flac,mp3,ogg}` decoded once at
//! start, down-mixed to mono, resampled to 8 kHz and held as G.711 µ-law and A-law in whole
//! 20 ms frames, so playing a prompt is handing out slices of a buffer.

mod decode;
mod level;
mod resample;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::media::g711::{encode_alaw, encode_ulaw};
use crate::sdp::Codec;

use self::resample::Resamplers;

/// Sample rate of every prompt once loaded.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and G.711 bytes) in one 20 ms RTP frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// File extensions the library decodes, in lower case.
pub const EXTENSIONS: [&str; 4] = ["wav", "flac", "mp3", "ogg"];
/// Longest prompt accepted, so a stray hour-long recording cannot eat the memory.
pub const MAX_PROMPT_SECONDS: u64 = 600;

const FRAME_DURATION: Duration = Duration::from_millis(20);

/// One prompt, ready to send: G.711 in both laws, padded with silence to whole frames.
pub struct Prompt {
    pub name: String,
    pub lang: String,
    /// Audio samples at 8 kHz, before the silence that pads the last frame.
    pub samples: usize,
    ulaw: Arc<[u8]>,
    alaw: Arc<[u8]>,
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Prompt({}/{}, {} frames)",
            self.lang,
            self.name,
            self.frames()
        )
    }
}

impl Prompt {
    /// A prompt from 8 kHz mono samples (full scale ±1.0): tones and generated audio in tests
    /// and the built-in fallbacks.
    pub fn from_samples(name: &str, lang: &str, audio: &[f32]) -> Self {
        let (ulaw, alaw) = encode_frames(audio);
        Self {
            name: name.to_owned(),
            lang: lang.to_owned(),
            samples: audio.len(),
            ulaw,
            alaw,
        }
    }

    /// Number of 20 ms frames; the last one is padded with silence.
    pub fn frames(&self) -> usize {
        self.ulaw.len() / FRAME_SAMPLES
    }

    /// Playing time of all frames.
    pub fn duration(&self) -> Duration {
        FRAME_DURATION * u32::try_from(self.frames()).unwrap_or(u32::MAX)
    }

    /// The G.711 payload of frame `index` (0-based), or `None` past the end.
    pub fn frame(&self, index: usize, codec: Codec) -> Option<&[u8; FRAME_SAMPLES]> {
        let start = index.checked_mul(FRAME_SAMPLES)?;
        let end = start.checked_add(FRAME_SAMPLES)?;
        self.payload(codec).get(start..end)?.try_into().ok()
    }

    /// The whole prompt in one law: `frames() * FRAME_SAMPLES` bytes.
    pub fn payload(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.ulaw,
            Codec::Pcma => &self.alaw,
        }
    }
}

/// All prompts, by language and name. Built once by [`PromptLibrary::load`], then read-only.
#[derive(Debug, Default)]
pub struct PromptLibrary {
    by_lang: BTreeMap<String, BTreeMap<String, Arc<Prompt>>>,
}

/// A prompt file that could not be used; the library loads without it.
#[derive(Debug, Error)]
#[error("{}: {reason}", path.display())]
pub struct PromptError {
    pub path: PathBuf,
    pub reason: PromptErrorReason,
}

#[derive(Debug, Error)]
pub enum PromptErrorReason {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("file name is not valid UTF-8")]
    NonUtf8Name,
    #[error("not a prompt file: the extension must be one of wav, flac, mp3, ogg")]
    UnsupportedExtension,
    #[error("same prompt as {}, which is used instead", .0.display())]
    Duplicate(PathBuf),
    #[error("empty file")]
    EmptyFile,
    #[error("not a recognised audio file (no WAV, FLAC, MP3 or Ogg stream found)")]
    Unrecognised,
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    #[error("no audio track")]
    NoAudioTrack,
    #[error("unsupported codec {0}")]
    UnsupportedCodec(String),
    #[error("malformed audio: {0}")]
    Malformed(String),
    #[error("truncated: only {decoded} of {declared} samples could be decoded")]
    Truncated { decoded: u64, declared: u64 },
    #[error("no audio samples")]
    NoSamples,
    #[error("sample rate not given")]
    UnknownSampleRate,
    #[error("sample rate changes mid-file from {first} Hz to {later} Hz")]
    SampleRateChange { first: u32, later: u32 },
    #[error("longer than {MAX_PROMPT_SECONDS} s")]
    TooLong,
    #[error("cannot resample from {rate} Hz: {detail}")]
    Resample { rate: u32, detail: String },
    #[error("decoder crashed: {0}")]
    DecoderPanic(String),
}

impl PromptLibrary {
    /// Loads every prompt under `dir` (`<dir>/<lang>/<name>.<ext>`). Files that cannot be used
    /// are skipped and returned as errors naming the path, so the service still starts. Hidden
    /// entries (`.name`), files directly in `dir` (catalog, README) and deeper folders are
    /// ignored. When one name has two files, the first in file name order wins.
    pub fn load(dir: &Path) -> (PromptLibrary, Vec<PromptError>) {
        let mut library = PromptLibrary::default();
        let mut errors = Vec::new();
        let mut resamplers = Resamplers::default();
        let lang_dirs = match sorted_entries(dir) {
            Ok(entries) => entries,
            Err(error) => {
                errors.push(PromptError::new(dir, error.into()));
                return (library, errors);
            }
        };
        for lang_dir in lang_dirs.into_iter().filter(|path| path.is_dir()) {
            let Some(lang) = lang_dir.file_name().and_then(|name| name.to_str()) else {
                errors.push(PromptError::new(&lang_dir, PromptErrorReason::NonUtf8Name));
                continue;
            };
            let lang = lang.to_owned();
            let files = match sorted_entries(&lang_dir) {
                Ok(files) => files,
                Err(error) => {
                    errors.push(PromptError::new(&lang_dir, error.into()));
                    continue;
                }
            };
            let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
            for path in files.into_iter().filter(|path| !path.is_dir()) {
                match library.load_file(&lang, &path, &sources, &mut resamplers) {
                    Ok(name) => {
                        sources.insert(name, path);
                    }
                    Err(reason) => errors.push(PromptError::new(&path, reason)),
                }
            }
        }
        tracing::info!(
            dir = %dir.display(),
            prompts = library.len(),
            bytes = library.bytes(),
            errors = errors.len(),
            "prompt library loaded"
        );
        (library, errors)
    }

    /// The prompt `name` in `lang` (e.g. `"lt"`, `"welcome"`).
    /// A library of prompts made in memory (tests, generated audio).
    pub fn from_prompts(prompts: impl IntoIterator<Item = Prompt>) -> Self {
        let mut library = Self::default();
        for prompt in prompts {
            library
                .by_lang
                .entry(prompt.lang.clone())
                .or_default()
                .insert(prompt.name.clone(), Arc::new(prompt));
        }
        library
    }

    pub fn get(&self, lang: &str, name: &str) -> Option<Arc<Prompt>> {
        self.by_lang.get(lang)?.get(name).cloned()
    }

    /// Languages that have at least one prompt, in sorted order.
    pub fn languages(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_lang.keys().map(String::as_str)
    }

    /// Prompt names available in `lang`, in sorted order (none for an unknown language).
    pub fn names<'a>(&'a self, lang: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_lang
            .get(lang)
            .into_iter()
            .flat_map(|prompts| prompts.keys().map(String::as_str))
    }

    /// Number of prompts over all languages.
    pub fn len(&self) -> usize {
        self.by_lang.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_lang.is_empty()
    }

    /// G.711 bytes held, both laws together.
    pub fn bytes(&self) -> usize {
        self.by_lang
            .values()
            .flat_map(BTreeMap::values)
            .map(|prompt| prompt.ulaw.len() + prompt.alaw.len())
            .sum()
    }

    /// Decodes one file into the library; returns the prompt name it was stored under.
    fn load_file(
        &mut self,
        lang: &str,
        path: &Path,
        loaded: &BTreeMap<String, PathBuf>,
        resamplers: &mut Resamplers,
    ) -> Result<String, PromptErrorReason> {
        let (name, extension) = prompt_name(path)?;
        if let Some(first) = loaded.get(&name) {
            return Err(PromptErrorReason::Duplicate(first.clone()));
        }
        let decoded = decode::decode_mono(path, &extension)?;
        let audio = resamplers.resample_to_prompt_rate(decoded.samples, decoded.sample_rate)?;
        let levels = level::Levels::measure(&audio);
        if levels.clipping() {
            tracing::warn!(
                path = %path.display(),
                clipped_samples = levels.clipped_samples,
                peak = levels.peak,
                "prompt is clipping: re-record or lower its level"
            );
        }
        if levels.near_silent() {
            tracing::warn!(
                path = %path.display(),
                rms_dbfs = levels.rms_dbfs(),
                "prompt is nearly silent: check the recording"
            );
        }
        let prompt = Prompt::from_samples(&name, lang, &audio);
        tracing::debug!(path = %path.display(), frames = prompt.frames(), "prompt loaded");
        self.by_lang
            .entry(lang.to_owned())
            .or_default()
            .insert(name.clone(), Arc::new(prompt));
        Ok(name)
    }
}

impl PromptError {
    fn new(path: &Path, reason: PromptErrorReason) -> Self {
        Self {
            path: path.to_owned(),
            reason,
        }
    }
}

/// Entries of `dir` without hidden ones, sorted so loading is deterministic.
fn sorted_entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// `welcome.wav` -> (`welcome`, `wav`); the extension is matched case-insensitively.
fn prompt_name(path: &Path) -> Result<(String, String), PromptErrorReason> {
    let stem = path
        .file_stem()
        .ok_or(PromptErrorReason::UnsupportedExtension)?;
    let stem = stem.to_str().ok_or(PromptErrorReason::NonUtf8Name)?;
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase)
        .filter(|extension| EXTENSIONS.contains(&extension.as_str()))
        .ok_or(PromptErrorReason::UnsupportedExtension)?;
    Ok((stem.to_owned(), extension))
}

/// Quantises to 16 bits, pads with silence to whole frames and encodes both laws.
fn encode_frames(audio: &[f32]) -> (Arc<[u8]>, Arc<[u8]>) {
    let padded_len = audio.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES;
    let pcm: Vec<i16> = audio
        .iter()
        .map(|&sample| to_i16(sample))
        .chain(std::iter::repeat(0))
        .take(padded_len)
        .collect();
    let ulaw = pcm.iter().map(|&sample| encode_ulaw(sample)).collect();
    let alaw = pcm.iter().map(|&sample| encode_alaw(sample)).collect();
    (ulaw, alaw)
}

/// Full scale is ±1.0; overshoot from resampling is clamped (NaN becomes silence).
fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}
