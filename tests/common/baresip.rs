//! A baresip softphone as one registered agent, for the SRTP tests: registers over TLS or plain
//! UDP, auto-answers, talks a pure tone from a WAV file (the `aufile` source), may require SRTP
//! (`mediaenc=srtp-mand`, the `srtp` module), traces its SIP (`-s`, so the SDP it got and sent
//! can be read from its output) and records the audio it decoded (the `sndfile` module).
//! Not every test binary uses all of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::free_port;

/// How long baresip may take to print `baresip is ready`.
const READY_DEADLINE: Duration = Duration::from_secs(15);
/// Audio sample rate of the tone and of baresip's recordings (G.711).
pub const RATE: u32 = 8000;

/// How the phone reaches the service.
#[derive(Debug, Clone)]
pub enum Signalling {
    /// SIP over TLS to `addr`, trusting the CA in `ca_file`.
    Tls { addr: SocketAddr, ca_file: PathBuf },
    /// SIP over UDP to `addr`.
    Udp { addr: SocketAddr },
}

/// baresip's loopback ports, chosen before it starts (e.g. for a capture filter).
#[derive(Debug, Clone)]
pub struct BaresipPorts {
    /// SIP (UDP, and TCP for TLS).
    pub sip: u16,
    /// baresip takes its RTP and RTCP ports from here.
    pub rtp: std::ops::RangeInclusive<u16>,
}

impl BaresipPorts {
    /// Ports that are free right now (see [`free_port`]).
    pub fn pick() -> BaresipPorts {
        // baresip rounds its RTP port down to even (RTCP on the odd one above).
        let rtp_first = free_port(false, true) & !1;
        BaresipPorts {
            sip: free_port(true, false),
            rtp: rtp_first..=rtp_first + 3,
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct BaresipOptions {
    pub ports: BaresipPorts,
    pub user: &'static str,
    pub password: &'static str,
    pub signalling: Signalling,
    /// The account's `mediaenc` (e.g. `srtp-mand`); loads the `srtp` module when set.
    pub mediaenc: Option<&'static str>,
    /// The pitch of the tone the phone talks.
    pub tone_hz: f64,
}

pub struct Baresip {
    pub user: &'static str,
    /// baresip's SIP port (UDP and TCP/TLS).
    pub sip_port: u16,
    /// baresip takes its RTP and RTCP ports from here.
    pub rtp_ports: std::ops::RangeInclusive<u16>,
    child: Child,
    output: Arc<(Mutex<Vec<String>>, Condvar)>,
    dir: PathBuf,
    voice: PathBuf,
    /// Where the `sndfile` module writes what baresip decoded (`dump-*-dec.wav`) and encoded.
    recordings: PathBuf,
}

impl Baresip {
    /// Starts baresip with its configuration in `dir/baresip-USER` and waits until it is ready.
    pub fn start(dir: &Path, options: &BaresipOptions) -> Baresip {
        let user = options.user;
        let dir = dir.join(format!("baresip-{user}"));
        fs::create_dir_all(&dir).unwrap();
        let sip_port = options.ports.sip;
        let rtp_ports = options.ports.rtp.clone();
        // baresip hangs up when its audio file ends: the tone outlasts the test call. It also
        // cuts file names at 127 bytes, too short for the test folder.
        let short = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let voice = short.join(format!(
            "baresip-tone-{}-{sip_port}.wav",
            std::process::id()
        ));
        fs::write(&voice, tone_wav(options.tone_hz, Duration::from_secs(120))).unwrap();
        let recordings = short.join(format!("baresip-heard-{}-{sip_port}", std::process::id()));
        let _ = fs::remove_dir_all(&recordings);
        fs::create_dir_all(&recordings).unwrap();

        let mut config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             dns_server 127.0.0.1:53\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             audio_source aufile,{voice}\n\
             rtp_ports {}-{}\n\
             snd_path {recordings}\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aubridge.so\n\
             module aufile.so\n\
             module sndfile.so\n\
             module_tmp account.so\n\
             module_app menu.so\n",
            rtp_ports.start(),
            rtp_ports.end(),
            voice = voice.display(),
            recordings = recordings.display(),
        );
        if options.mediaenc.is_some() {
            config.push_str("module srtp.so\n");
        }
        let (aor, outbound) = match &options.signalling {
            Signalling::Tls { addr, ca_file } => {
                config.push_str(&format!("sip_cafile {}\n", ca_file.display()));
                (
                    format!("sip:{user}@127.0.0.1;transport=tls"),
                    format!("sip:{addr};transport=tls"),
                )
            }
            Signalling::Udp { addr } => (format!("sip:{user}@{addr}"), format!("sip:{addr}")),
        };
        fs::write(dir.join("config"), config).unwrap();
        let mediaenc = options
            .mediaenc
            .map(|mediaenc| format!(";mediaenc={mediaenc}"))
            .unwrap_or_default();
        let account = format!(
            "<{aor}>;auth_pass={};outbound=\"{outbound}\";regint=60;answermode=auto;\
             audio_codecs=PCMU{mediaenc}\n",
            options.password
        );
        fs::write(dir.join("accounts"), account).unwrap();

        let mut child = match Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-n", "127.0.0.1", "-t", "120", "-s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("baresip not installed: run scripts/test (installs baresip-core)")
            }
            Err(error) => panic!("starting baresip: {error}"),
        };
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string();
                    output.0.lock().unwrap().push(line);
                    output.1.notify_all();
                }
            });
        }
        let baresip = Baresip {
            user,
            sip_port,
            rtp_ports,
            child,
            output,
            dir,
            voice,
            recordings,
        };
        assert!(
            baresip
                .wait_for(|l| l.contains("baresip is ready"), READY_DEADLINE)
                .is_some(),
            "{user}'s baresip never got ready:\n{}",
            baresip.lines().join("\n")
        );
        baresip
    }

    /// Everything baresip printed so far (its SIP trace included).
    pub fn lines(&self) -> Vec<String> {
        self.output.0.lock().unwrap().clone()
    }

    /// Waits for an output line for which `wanted` holds (earlier lines count too).
    pub fn wait_for(&self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.output.0.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| wanted(l)) {
                return Some(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = self.output.1.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// The samples baresip decoded from the network in its calls (the `sndfile` module's
    /// `dump-*-dec.wav`, 16-bit mono), one vector per call.
    pub fn heard(&self) -> Vec<Vec<i16>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.recordings)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|path| path.to_string_lossy().ends_with("-dec.wav"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().map(|file| wav_samples(file)).collect()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.voice);
        let _ = fs::remove_dir_all(&self.recordings);
        let _ = fs::write(self.dir.join("output.log"), self.lines().join("\n"));
        if thread::panicking() {
            eprintln!(
                "---- baresip {} (sip 127.0.0.1:{}) ----\n{}\n---- end of baresip {} ----",
                self.user,
                self.sip_port,
                self.lines().join("\n"),
                self.user
            );
        }
    }
}

/// An 8 kHz mono 16-bit WAV of a sine at `frequency`.
pub fn tone_wav(frequency: f64, length: Duration) -> Vec<u8> {
    let samples = RATE * length.as_secs() as u32;
    let mut wav = Vec::with_capacity(44 + 2 * samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + 2 * samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(2 * RATE).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(2 * samples).to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(RATE);
        let sample = (8000.0 * (2.0 * std::f64::consts::PI * frequency * t).sin()) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// The 16-bit mono samples of a WAV file's data chunk, up to the end of the file (a recording
/// cut short has its sizes unset).
fn wav_samples(path: &Path) -> Vec<i16> {
    let bytes =
        fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a WAV file",
        path.display()
    );
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if id == b"fmt " {
            let format = &bytes[at + 8..(at + 8 + size).min(bytes.len())];
            let le16 = |offset: usize| u16::from_le_bytes([format[offset], format[offset + 1]]);
            let rate = u32::from_le_bytes(format[4..8].try_into().unwrap());
            assert_eq!(
                (le16(0), le16(2), rate, le16(14)),
                (1, 1, RATE, 16),
                "{}: not 16-bit mono PCM at {RATE} Hz",
                path.display()
            );
        }
        if id == b"data" {
            return bytes[at + 8..]
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .collect();
        }
        at += 8 + size + (size & 1);
    }
    panic!("{} has no data chunk", path.display())
}

/// The power of `samples` at `frequency` (Goertzel), relative to their total power: near 0.5
/// for a pure tone at that pitch, near 0 for other pitches or silence.
pub fn tone_share(samples: &[f64], frequency: f64) -> f64 {
    let total: f64 = samples.iter().map(|s| s * s).sum();
    if total == 0.0 || samples.is_empty() {
        return 0.0;
    }
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / f64::from(RATE)).cos();
    let (mut previous, mut before) = (0.0, 0.0);
    for sample in samples {
        let current = sample + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    let power = previous * previous + before * before - coefficient * previous * before;
    // A full-scale sine of N samples gives N²/4 here and N/2 as the sum of squares.
    power / (samples.len() as f64 * total)
}
