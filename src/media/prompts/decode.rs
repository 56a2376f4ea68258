//! Decoding one prompt file with symphonia into mono f32 samples at the file's own rate.

use std::fs::File;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{self, CodecType, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::Sample;

use super::{PromptErrorReason, MAX_PROMPT_SECONDS};

/// Decoded audio, channels averaged.
#[derive(Debug)]
pub(super) struct Decoded {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// A file may end this many samples short of the length its header declares before it counts
/// as truncated: MP3 and Vorbis lengths are only exact to within a few codec frames.
const TRUNCATION_TOLERANCE: u64 = 4 * 1152;

/// Decodes the first audio track of `path`. Symphonia has panicked on malformed input before,
/// so a panic inside it is turned into an error: one broken prompt must not stop the service.
pub(super) fn decode_mono(path: &Path, extension: &str) -> Result<Decoded, PromptErrorReason> {
    let file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Err(PromptErrorReason::EmptyFile);
    }
    panic::catch_unwind(AssertUnwindSafe(|| decode_file(file, path, extension))).unwrap_or_else(
        |panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(PromptErrorReason::DecoderPanic(message))
        },
    )
}

fn decode_file(file: File, path: &Path, extension: &str) -> Result<Decoded, PromptErrorReason> {
    let source = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    // Gapless trims MP3 encoder delay and padding, so the prompt starts on its first word.
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, source, &format_options, &MetadataOptions::default())
        .map_err(|error| match error {
            // The probe scans for a known header and meets the end of the file (or its limit).
            SymphoniaError::IoError(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                PromptErrorReason::Unrecognised
            }
            SymphoniaError::Unsupported(what) if what.starts_with("core (probe)") => {
                PromptErrorReason::Unrecognised
            }
            SymphoniaError::Unsupported(what) => PromptErrorReason::UnsupportedFormat(what.into()),
            other => malformed(other),
        })?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(PromptErrorReason::NoAudioTrack)?;
    let track_id = track.id;
    let declared_frames = track.codec_params.n_frames;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|error| match error {
            SymphoniaError::Unsupported(_) => {
                PromptErrorReason::UnsupportedCodec(codec_name(track.codec_params.codec))
            }
            other => malformed(other),
        })?;

    let mut samples = Vec::new();
    let mut sample_rate = None;
    let mut skipped_packets = 0usize;
    let mut last_skip_reason = "";
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                break
            }
            // A chained stream starts a new track; a prompt is only the first one.
            Err(SymphoniaError::ResetRequired) => break,
            Err(error) => return Err(malformed(error)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = match decoder.decode(&packet) {
            Ok(audio) => audio,
            // One bad packet (common at the start of an MP3) costs a few ms, not the prompt.
            Err(SymphoniaError::DecodeError(reason)) => {
                skipped_packets += 1;
                last_skip_reason = reason;
                continue;
            }
            Err(SymphoniaError::IoError(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(error) => return Err(malformed(error)),
        };
        let rate = audio.spec().rate;
        match sample_rate {
            None => sample_rate = Some(rate),
            Some(first) if first != rate => {
                return Err(PromptErrorReason::SampleRateChange { first, later: rate })
            }
            Some(_) => {}
        }
        mix_down(&audio, &mut samples);
        if samples.len() as u64 > MAX_PROMPT_SECONDS * u64::from(rate) {
            return Err(PromptErrorReason::TooLong);
        }
    }

    if samples.is_empty() {
        return Err(if skipped_packets > 0 {
            PromptErrorReason::Malformed(last_skip_reason.to_owned())
        } else {
            PromptErrorReason::NoSamples
        });
    }
    if skipped_packets > 0 {
        tracing::warn!(
            path = %path.display(),
            skipped_packets,
            reason = last_skip_reason,
            "prompt has undecodable packets, skipped them"
        );
    }
    let decoded = samples.len() as u64;
    if let Some(declared) = declared_frames {
        if decoded.saturating_add(TRUNCATION_TOLERANCE) < declared {
            return Err(PromptErrorReason::Truncated { decoded, declared });
        }
    }
    let sample_rate = sample_rate
        .filter(|&rate| rate > 0)
        .ok_or(PromptErrorReason::UnknownSampleRate)?;
    Ok(Decoded {
        samples,
        sample_rate,
    })
}

fn malformed(error: SymphoniaError) -> PromptErrorReason {
    match error {
        SymphoniaError::IoError(error) if error.kind() != io::ErrorKind::UnexpectedEof => {
            PromptErrorReason::Io(error)
        }
        SymphoniaError::IoError(_) => PromptErrorReason::Malformed("file ends too early".into()),
        SymphoniaError::DecodeError(reason) => PromptErrorReason::Malformed(reason.into()),
        other => PromptErrorReason::Malformed(other.to_string()),
    }
}

/// Appends the average of all channels, frame by frame.
fn mix_down(audio: &AudioBufferRef<'_>, out: &mut Vec<f32>) {
    match audio {
        AudioBufferRef::U8(buffer) => mix(buffer, out),
        AudioBufferRef::U16(buffer) => mix(buffer, out),
        AudioBufferRef::U24(buffer) => mix(buffer, out),
        AudioBufferRef::U32(buffer) => mix(buffer, out),
        AudioBufferRef::S8(buffer) => mix(buffer, out),
        AudioBufferRef::S16(buffer) => mix(buffer, out),
        AudioBufferRef::S24(buffer) => mix(buffer, out),
        AudioBufferRef::S32(buffer) => mix(buffer, out),
        AudioBufferRef::F32(buffer) => mix(buffer, out),
        AudioBufferRef::F64(buffer) => mix(buffer, out),
    }
}

fn mix<S>(buffer: &AudioBuffer<S>, out: &mut Vec<f32>)
where
    S: Sample + IntoSample<f32>,
{
    let planes = buffer.planes();
    let planes = planes.planes();
    if planes.is_empty() {
        return;
    }
    let scale = 1.0 / planes.len() as f32;
    out.reserve(buffer.frames());
    for frame in 0..buffer.frames() {
        let sum: f32 = planes
            .iter()
            .filter_map(|plane| plane.get(frame))
            .map(|&sample| -> f32 { sample.into_sample() })
            .sum();
        out.push(sum * scale);
    }
}

/// A readable name for codecs symphonia knows of but this build cannot decode.
fn codec_name(codec: CodecType) -> String {
    let name = match codec {
        codecs::CODEC_TYPE_ADPCM_IMA_WAV | codecs::CODEC_TYPE_ADPCM_IMA_QT => "IMA ADPCM",
        codecs::CODEC_TYPE_ADPCM_MS => "Microsoft ADPCM",
        codecs::CODEC_TYPE_AAC => "AAC",
        codecs::CODEC_TYPE_ALAC => "ALAC",
        codecs::CODEC_TYPE_OPUS => "Opus",
        codecs::CODEC_TYPE_SPEEX => "Speex",
        codecs::CODEC_TYPE_MP1 => "MPEG-1 Layer I",
        codecs::CODEC_TYPE_MP2 => "MPEG-1 Layer II",
        _ => return format!("(symphonia codec id {codec})"),
    };
    name.to_owned()
}
