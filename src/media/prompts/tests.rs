//! Tests of the prompt library. Inputs are made in a temporary folder with sox and lame
//! (Debian: sox libsox-fmt-all lame); the shipped `prompts/` folder is checked against its
//! catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::PI;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::decode::decode_mono;
use super::level::Levels;
use super::resample::Resamplers;
use super::*;
use crate::media::g711::encode_ulaw;

/// A folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("hotline-prompts-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fails the test with a clear message when `tool` is missing.
fn require_tool(tool: &str, debian_packages: &str) -> String {
    let output = Command::new(tool).arg("--help").output().unwrap_or_else(|error| {
        panic!("{tool} is needed to make test inputs ({error}); install Debian packages: {debian_packages}")
    });
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails the test with a clear message when sox (or its writer for `format`) is missing.
fn require_sox(format: &str) {
    let help = require_tool("sox", "sox libsox-fmt-all");
    let formats = help
        .lines()
        .find(|line| line.starts_with("AUDIO FILE FORMATS:"))
        .unwrap_or_default();
    assert!(
        formats.split_whitespace().any(|name| name == format),
        "sox cannot write {format}; install Debian packages: sox libsox-fmt-all"
    );
}

/// Runs `sox -D -n <output options> <path> synth <synth...>`; `-D`: no dither, so repeatable.
/// MP3 goes through `lame`, whose LAME tag records the encoder delay and padding: without it
/// no decoder can trim them and every MP3 is some 50 ms too long. (64 kbit/s: at lame's
/// default for 16 kHz the frames are too small to hold the tag.)
fn synth(path: &Path, output_options: &str, synth: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let format = path.extension().unwrap().to_str().unwrap();
    if format == "mp3" {
        require_tool("lame", "lame");
        let wav = path.with_extension("mp3.wav");
        run_sox(&wav, output_options, synth);
        let status = Command::new("lame")
            .args(["--quiet", "-b", "64"])
            .arg(&wav)
            .arg(path)
            .status()
            .expect("run lame");
        assert!(status.success(), "lame failed to make {}", path.display());
        fs::remove_file(wav).unwrap();
    } else {
        require_sox(format);
        run_sox(path, output_options, synth);
    }
}

fn run_sox(path: &Path, output_options: &str, synth: &str) {
    let status = Command::new("sox")
        .arg("-D")
        .arg("-n")
        .args(output_options.split_whitespace())
        .arg(path)
        .arg("synth")
        .args(synth.split_whitespace())
        .status()
        .expect("run sox");
    assert!(status.success(), "sox failed to make {}", path.display());
}

/// 8 kHz mono samples as the library makes them, before G.711 encoding.
fn pcm_8k(path: &Path) -> Vec<f32> {
    let extension = path.extension().unwrap().to_str().unwrap();
    let decoded = decode_mono(path, extension).unwrap();
    Resamplers::default()
        .resample_to_prompt_rate(decoded.samples, decoded.sample_rate)
        .unwrap()
}

/// Amplitude of the `frequency` component (Goertzel), full scale 1.0.
fn tone_amplitude(samples: &[f32], frequency: f64) -> f64 {
    let coefficient = 2.0 * (2.0 * PI * frequency / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &sample in samples {
        let s0 = f64::from(sample) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    2.0 * power.sqrt() / samples.len() as f64
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// Middle part of a clip, away from the resampler's edges.
fn middle(samples: &[f32]) -> &[f32] {
    &samples[samples.len() / 4..samples.len() * 3 / 4]
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.log10()
}

/// (file name, sox output options): one second of 440 Hz at half scale in each.
const FORMATS: [(&str, &str); 16] = [
    ("wav_8k", "-r 8000 -c 1 -b 16"),
    ("wav_16k", "-r 16000 -c 1 -b 16"),
    ("wav_44k1_stereo", "-r 44100 -c 2 -b 16"),
    ("wav_48k", "-r 48000 -c 1 -b 16"),
    ("wav_22k05_8bit", "-r 22050 -c 1 -b 8 -e unsigned-integer"),
    ("wav_48k_24bit", "-r 48000 -c 2 -b 24"),
    ("wav_32k_32bit", "-r 32000 -c 1 -b 32 -e signed-integer"),
    ("wav_44k1_float", "-r 44100 -c 2 -b 32 -e floating-point"),
    ("wav_48k_6ch", "-r 48000 -c 6 -b 16"),
    ("wav_ulaw", "-r 8000 -c 1 -e u-law"),
    ("wav_alaw", "-r 8000 -c 1 -e a-law"),
    ("flac_44k1_stereo", "-r 44100 -c 2 -b 16"),
    ("flac_48k_24bit", "-r 48000 -c 1 -b 24"),
    ("mp3_44k1_stereo", "-r 44100 -c 2"),
    ("mp3_16k", "-r 16000 -c 1"),
    ("ogg_48k_stereo", "-r 48000 -c 2"),
];

fn format_file(dir: &Path, name: &str) -> PathBuf {
    let extension = name.split('_').next().unwrap();
    dir.join("en").join(format!("{name}.{extension}"))
}

#[test]
fn every_format_loads_as_one_second_of_8k_mono() {
    let dir = TempDir::new("formats");
    for (name, options) in FORMATS {
        synth(
            &format_file(dir.path(), name),
            options,
            "1 sine 440 gain -6",
        );
    }
    let (library, errors) = PromptLibrary::load(dir.path());
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(library.languages().collect::<Vec<_>>(), ["en"]);
    assert_eq!(library.len(), FORMATS.len());
    for (name, _) in FORMATS {
        let prompt = library
            .get("en", name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(prompt.name, name);
        assert_eq!(prompt.lang, "en");
        assert!(
            prompt.samples.abs_diff(8000) <= FRAME_SAMPLES,
            "{name}: {} samples, expected 8000 ± one frame",
            prompt.samples
        );
        assert_eq!(
            prompt.frames(),
            prompt.samples.div_ceil(FRAME_SAMPLES),
            "{name}"
        );
        assert!(
            (49..=51).contains(&prompt.frames()),
            "{name}: {}",
            prompt.frames()
        );
        for codec in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(prompt.payload(codec).len(), prompt.frames() * FRAME_SAMPLES);
        }
    }
    let expected_bytes: usize = FORMATS
        .iter()
        .map(|(name, _)| library.get("en", name).unwrap().frames() * FRAME_SAMPLES * 2)
        .sum();
    assert_eq!(library.bytes(), expected_bytes);
}

#[test]
fn resampled_sine_keeps_its_pitch_and_level() {
    let dir = TempDir::new("pitch");
    for (name, options) in [
        ("wav_8k", "-r 8000 -c 1 -b 16"),
        ("wav_16k", "-r 16000 -c 1 -b 16"),
        ("wav_44k1_stereo", "-r 44100 -c 2 -b 16"),
        ("wav_48k", "-r 48000 -c 1 -b 16"),
        ("mp3_44k1_stereo", "-r 44100 -c 2"),
        ("ogg_48k_stereo", "-r 48000 -c 2"),
    ] {
        let path = format_file(dir.path(), name);
        synth(&path, options, "1 sine 440 gain -6");
        let pcm = pcm_8k(&path);
        let pcm = middle(&pcm);
        let at_440 = tone_amplitude(pcm, 440.0);
        let at_880 = tone_amplitude(pcm, 880.0);
        let at_400 = tone_amplitude(pcm, 400.0);
        assert!(
            (db(at_440) - db(0.5)).abs() < 0.5,
            "{name}: 440 Hz at {:.1} dBFS, expected -6",
            db(at_440)
        );
        assert!(db(at_440 / at_880) > 30.0, "{name}: 880 Hz too strong");
        assert!(db(at_440 / at_400) > 20.0, "{name}: 400 Hz too strong");
    }
}

#[test]
fn content_above_4_khz_is_filtered_not_aliased() {
    let dir = TempDir::new("aliasing");
    for (name, rate, frequency) in [
        ("wav_48k_6000", 48000, 6000.0),
        ("wav_44k1_6000", 44100, 6000.0),
        ("wav_16k_6000", 16000, 6000.0),
        ("wav_48k_5000", 48000, 5000.0),
    ] {
        let path = format_file(dir.path(), name);
        synth(
            &path,
            &format!("-r {rate} -c 1 -b 16"),
            &format!("1 sine {frequency} gain -6"),
        );
        let pcm = pcm_8k(&path);
        // A 6 kHz tone sampled at 8 kHz would alias to 2 kHz (5 kHz to 3 kHz).
        let alias = tone_amplitude(middle(&pcm), f64::from(SAMPLE_RATE) - frequency);
        let input_level = 0.5f64;
        assert!(
            db(input_level / alias) >= 40.0,
            "{name}: alias only {:.1} dB down",
            db(input_level / alias)
        );
        assert!(
            db(0.5 / std::f64::consts::SQRT_2 / rms(&pcm)) >= 40.0,
            "{name}: output RMS only {:.1} dB below the input",
            db(0.5 / std::f64::consts::SQRT_2 / rms(&pcm))
        );
    }
}

#[test]
fn ulaw_8k_wav_passes_through_bit_exact() {
    let dir = TempDir::new("ulaw_exact");
    let wav = dir.path().join("en/exact.wav");
    let raw = dir.path().join("exact.ul");
    synth(&wav, "-r 8000 -c 1 -e u-law", "0.5 sine 300-3000 gain -3");
    synth(&raw, "-r 8000 -c 1 -e u-law", "0.5 sine 300-3000 gain -3");
    let (library, errors) = PromptLibrary::load(dir.path());
    assert!(errors.is_empty(), "{errors:#?}");
    let prompt = library.get("en", "exact").unwrap();
    let original = fs::read(&raw).unwrap();
    assert_eq!(prompt.samples, original.len());
    assert!(
        prompt.payload(Codec::Pcmu)[..original.len()] == original[..],
        "µ-law bytes changed on the way through"
    );
}

#[test]
fn frames_are_whole_and_padded_with_silence() {
    let dir = TempDir::new("frames");
    synth(
        &dir.path().join("lt/short.wav"),
        "-r 8000 -c 1 -b 16",
        "0.125 sine 440 gain -6",
    );
    let (library, errors) = PromptLibrary::load(dir.path());
    assert!(errors.is_empty(), "{errors:#?}");
    let prompt = library.get("lt", "short").unwrap();
    assert_eq!(prompt.samples, 1000);
    assert_eq!(prompt.frames(), 7);
    assert_eq!(prompt.duration(), Duration::from_millis(140));
    let last = prompt.frame(6, Codec::Pcmu).unwrap();
    assert!(last[1000 - 960..]
        .iter()
        .all(|&byte| byte == encode_ulaw(0)));
    let last_alaw = prompt.frame(6, Codec::Pcma).unwrap();
    assert!(last_alaw[1000 - 960..].iter().all(|&byte| byte == 0xD5));
    assert!(last[..1000 - 960]
        .iter()
        .any(|&byte| byte != encode_ulaw(0)));
    assert!(prompt.frame(7, Codec::Pcmu).is_none());
    assert!(prompt.frame(usize::MAX, Codec::Pcma).is_none());
    let first = prompt.frame(0, Codec::Pcma).unwrap();
    assert_eq!(&first[..], &prompt.payload(Codec::Pcma)[..FRAME_SAMPLES]);
    assert!(library.get("lt", "missing").is_none());
    assert!(library.get("xx", "short").is_none());
    assert_eq!(library.names("lt").collect::<Vec<_>>(), ["short"]);
    assert_eq!(library.names("xx").count(), 0);
}

/// Same bytes every run, so the "corrupt" file is the same one every time.
fn noise_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn broken_files_are_reported_with_their_path_and_the_rest_loads() {
    let dir = TempDir::new("broken");
    let lang = dir.path().join("en");
    synth(
        &lang.join("good.wav"),
        "-r 8000 -c 1 -b 16",
        "0.5 sine 440 gain -6",
    );
    fs::write(lang.join("corrupt.wav"), noise_bytes(4096)).unwrap();
    fs::write(lang.join("empty.wav"), b"").unwrap();
    synth(
        &lang.join("whole.flac"),
        "-r 44100 -c 1 -b 16",
        "2 sine 440 gain -6",
    );
    let flac = fs::read(lang.join("whole.flac")).unwrap();
    fs::write(lang.join("truncated.flac"), &flac[..flac.len() / 2]).unwrap();
    fs::remove_file(lang.join("whole.flac")).unwrap();
    synth(
        &lang.join("header_only.wav"),
        "-r 8000 -c 1 -b 16",
        "1 sine 440",
    );
    let wav = fs::read(lang.join("header_only.wav")).unwrap();
    fs::write(lang.join("header_only.wav"), &wav[..wav.len() / 3]).unwrap();
    synth(
        &lang.join("adpcm.wav"),
        "-r 8000 -c 1 -e ima-adpcm",
        "0.5 sine 440 gain -6",
    );
    fs::write(lang.join("notes.txt"), b"not audio").unwrap();
    fs::write(lang.join(".gitkeep"), b"").unwrap();
    synth(
        &lang.join("good.flac"),
        "-r 8000 -c 1 -b 16",
        "0.5 sine 440 gain -6",
    );
    fs::write(
        dir.path().join("catalog.toml"),
        b"# ignored: not in a language folder",
    )
    .unwrap();

    let (library, errors) = PromptLibrary::load(dir.path());

    assert_eq!(library.names("en").collect::<Vec<_>>(), ["good"]);
    let by_file: BTreeMap<String, &PromptError> = errors
        .iter()
        .map(|error| {
            (
                error
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                error,
            )
        })
        .collect();
    let expected = [
        "adpcm.wav",
        "corrupt.wav",
        "empty.wav",
        "good.wav",
        "header_only.wav",
        "notes.txt",
        "truncated.flac",
    ];
    assert_eq!(
        by_file.keys().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    for error in &errors {
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("{}: ", error.path.display())),
            "error does not start with its path: {shown}"
        );
    }
    let reason = |file: &str| &by_file[file].reason;
    assert!(matches!(reason("empty.wav"), PromptErrorReason::EmptyFile));
    assert!(by_file["empty.wav"]
        .to_string()
        .ends_with("en/empty.wav: empty file"));
    assert!(
        matches!(reason("corrupt.wav"), PromptErrorReason::Unrecognised),
        "{}",
        by_file["corrupt.wav"]
    );
    assert!(
        matches!(
            reason("truncated.flac"),
            PromptErrorReason::Truncated { .. }
        ),
        "{}",
        by_file["truncated.flac"]
    );
    assert!(
        matches!(
            reason("header_only.wav"),
            PromptErrorReason::Truncated { .. }
        ),
        "{}",
        by_file["header_only.wav"]
    );
    assert!(
        matches!(reason("adpcm.wav"), PromptErrorReason::UnsupportedCodec(name) if name == "IMA ADPCM"),
        "{}",
        by_file["adpcm.wav"]
    );
    assert!(matches!(
        reason("notes.txt"),
        PromptErrorReason::UnsupportedExtension
    ));
    assert!(
        matches!(reason("good.wav"), PromptErrorReason::Duplicate(first) if first.ends_with("en/good.flac")),
        "{}",
        by_file["good.wav"]
    );
}

#[test]
fn missing_folder_is_one_error_and_an_empty_library() {
    let dir = TempDir::new("missing");
    let (library, errors) = PromptLibrary::load(&dir.path().join("nowhere"));
    assert!(library.is_empty());
    assert_eq!(library.bytes(), 0);
    assert_eq!(errors.len(), 1);
    assert!(matches!(errors[0].reason, PromptErrorReason::Io(_)));
    assert!(errors[0].to_string().contains("nowhere: cannot read"));
}

#[test]
fn levels_flag_clipping_and_near_silence() {
    let square: Vec<f32> = (0..8000)
        .map(|i| if i % 20 < 10 { 1.0 } else { -1.0 })
        .collect();
    let clipping = Levels::measure(&square);
    assert!(clipping.clipping());
    assert!(!clipping.near_silent());

    let one_hot_peak: Vec<f32> = (0..8000)
        .map(|i| if i == 100 { 1.0 } else { 0.1 })
        .collect();
    assert!(!Levels::measure(&one_hot_peak).clipping());

    let whisper = vec![0.003f32; 8000]; // about -50 dBFS
    assert!(Levels::measure(&whisper).near_silent());
    let normal = vec![0.1f32; 8000]; // -20 dBFS
    assert!(!Levels::measure(&normal).near_silent());
}

#[test]
fn clipped_and_silent_files_still_load() {
    let dir = TempDir::new("levels");
    synth(
        &dir.path().join("pl/loud.wav"),
        "-r 8000 -c 1 -b 16",
        "0.5 square 440",
    );
    synth(
        &dir.path().join("pl/quiet.wav"),
        "-r 8000 -c 1 -b 16",
        "0.5 sine 440 gain -60",
    );
    let (library, errors) = PromptLibrary::load(dir.path());
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(library.names("pl").collect::<Vec<_>>(), ["loud", "quiet"]);
}

/// The languages the hotline offers; `language_menu_<lang>` exists only in its own language.
const LANGUAGES: [&str; 4] = ["lt", "en", "ru", "pl"];

#[test]
fn shipped_prompts_cover_the_catalog_in_every_language() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let catalog_text = fs::read_to_string(root.join("catalog.toml")).unwrap();
    let catalog: BTreeMap<String, BTreeMap<String, String>> =
        toml::from_str(&catalog_text).unwrap();

    let (library, errors) = PromptLibrary::load(&root);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        library.languages().collect::<BTreeSet<_>>(),
        BTreeSet::from(LANGUAGES)
    );

    for (name, texts) in &catalog {
        let expected: BTreeSet<&str> = match name.strip_prefix("language_menu_") {
            Some(own) => BTreeSet::from([own]),
            None => BTreeSet::from(LANGUAGES),
        };
        let written: BTreeSet<&str> = texts.keys().map(String::as_str).collect();
        assert_eq!(written, expected, "catalog languages of {name}");
        for lang in &expected {
            let prompt = library
                .get(lang, name)
                .unwrap_or_else(|| panic!("prompts/{lang}/{name} is missing"));
            assert!(prompt.frames() > 0, "{lang}/{name} is empty");
        }
    }
    for lang in LANGUAGES {
        for name in library.names(lang) {
            assert!(
                catalog
                    .get(name)
                    .is_some_and(|texts| texts.contains_key(lang)),
                "prompts/{lang}/{name} is not in the catalog"
            );
        }
    }
}
