//! Loopback capture for the media tests: dumpcap on `lo` writing classic pcap to a pipe, parsed
//! into UDP datagrams and RTP packets (and the payloads of TCP segments, when the filter lets
//! TCP through), plus the prompt files' µ-law frames that the service's RTP is judged against
//! (it sends them bit-exact).
//! Not every test binary uses all of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes (and samples) in one 20 ms G.711 frame.
pub const FRAME_LEN: usize = 160;
pub type Frame = [u8; FRAME_LEN];
/// µ-law silence, which the service sends between prompts and pads prompts with.
pub const SILENCE: Frame = [0xFF; FRAME_LEN];
pub const PCMU: u8 = 0;

/// A UDP datagram captured on loopback, or the payload of a TCP segment (`tcp`).
#[derive(Clone)]
pub struct Datagram {
    /// Capture time since the Unix epoch.
    pub at: Duration,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
    /// A TCP segment's payload (segments without payload are left out); a UDP datagram if not.
    pub tcp: bool,
}

impl std::fmt::Debug for Datagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} -> {} at {:?}, {} bytes",
            if self.tcp { "TCP " } else { "" },
            self.src,
            self.dst,
            self.at,
            self.payload.len()
        )
    }
}

#[derive(Debug, Clone)]
pub struct RtpPacket {
    pub at: Duration,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

impl RtpPacket {
    /// RFC 3550 §5.1 fixed header, CSRCs, extension and padding; RTCP is no RTP.
    pub fn parse(datagram: &Datagram) -> Option<RtpPacket> {
        let bytes = &datagram.payload;
        if bytes.len() < 12 || bytes[0] >> 6 != 2 || (200..=204).contains(&bytes[1]) {
            return None;
        }
        let mut start = 12 + 4 * usize::from(bytes[0] & 0x0f);
        if bytes[0] & 0x10 != 0 {
            let words = u16::from_be_bytes([*bytes.get(start + 2)?, *bytes.get(start + 3)?]);
            start += 4 + 4 * usize::from(words);
        }
        let mut end = bytes.len();
        if bytes[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*bytes.last()?))?;
        }
        Some(RtpPacket {
            at: datagram.at,
            marker: bytes[1] & 0x80 != 0,
            payload_type: bytes[1] & 0x7f,
            sequence: u16::from_be_bytes([bytes[2], bytes[3]]),
            timestamp: u32::from_be_bytes(bytes[4..8].try_into().ok()?),
            ssrc: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
            payload: bytes.get(start..end)?.to_vec(),
        })
    }
}

/// How long dumpcap may take to start capturing.
const CAPTURE_START_DEADLINE: Duration = Duration::from_secs(20);
/// How long the closing sentinel may take to show up in the capture.
const CAPTURE_END_DEADLINE: Duration = Duration::from_secs(10);
/// Payload of the datagram that marks the end of a capture.
/// Named after the test binary, so a capture file says whose it is.
const SENTINEL: &[u8] =
    concat!("hotline ", env!("CARGO_CRATE_NAME"), ": end of capture").as_bytes();

/// dumpcap capturing loopback UDP (and TCP, if the filter asks for it) matching a filter whose
/// first clause is `udp port N`, writing classic pcap to a pipe that a thread parses and copies
/// into a file.
pub struct Capture {
    dumpcap: Child,
    datagrams: mpsc::Receiver<Datagram>,
    /// What [`Capture::wait_for`] has read so far; [`Capture::finish`] returns it too.
    seen: Vec<Datagram>,
    sentinel_to: SocketAddrV4,
    file: PathBuf,
}

impl Capture {
    /// Starts dumpcap and returns once it is capturing (it says so on stderr).
    pub fn start(dir: &Path, filter: &str) -> Capture {
        let sentinel_port: u16 = filter
            .strip_prefix("udp port ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .expect("the filter starts with `udp port N`");
        let file = dir.join(format!("capture-{sentinel_port}.pcap"));
        let mut dumpcap = match Command::new("dumpcap")
            .args(["-i", "lo", "-P", "-q", "-f", filter, "-w", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("dumpcap not installed: run scripts/test (installs Debian package tshark)")
            }
            Err(error) => panic!("starting dumpcap: {error}"),
        };
        let stdout = dumpcap.stdout.take().expect("stdout is piped");
        let stderr = dumpcap.stderr.take().expect("stderr is piped");
        let (lines, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let (sender, datagrams) = mpsc::channel();
        let copy = fs::File::create(&file)
            .unwrap_or_else(|error| panic!("creating {}: {error}", file.display()));
        thread::spawn(move || {
            read_pcap_stream(
                Tee {
                    from: stdout,
                    to: copy,
                },
                &sender,
            )
        });
        let deadline = Instant::now() + CAPTURE_START_DEADLINE;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains("Capturing on") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = dumpcap.kill();
                    let _ = dumpcap.wait();
                    panic!(
                        "dumpcap did not start capturing on lo (capturing needs root or \
                         CAP_NET_RAW): {}",
                        said.join("\n")
                    );
                }
            }
        }
        Capture {
            dumpcap,
            datagrams,
            seen: Vec::new(),
            sentinel_to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, sentinel_port),
            file,
        }
    }

    /// While the capture runs: the first datagram captured so far, or arriving within
    /// `timeout`, for which `wanted` holds (`None` if none did). Everything read stays for
    /// [`Capture::finish`].
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Datagram) -> bool,
    ) -> Option<Datagram> {
        if let Some(found) = self.seen.iter().find(|datagram| wanted(datagram)) {
            return Some(found.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.datagrams.recv_timeout(left) {
                Ok(datagram) => {
                    let found = wanted(&datagram).then(|| datagram.clone());
                    self.seen.push(datagram);
                    if found.is_some() {
                        return found;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("dumpcap stopped early; see {}", self.file.display())
                }
            }
        }
    }

    /// Sends a sentinel datagram through the filter and returns everything captured before it:
    /// once it is seen, every earlier datagram has been too.
    pub fn finish(mut self) -> Vec<Datagram> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a UDP socket");
        let deadline = Instant::now() + CAPTURE_END_DEADLINE;
        let mut captured = std::mem::take(&mut self.seen);
        'waiting: while Instant::now() < deadline {
            socket
                .send_to(SENTINEL, self.sentinel_to)
                .expect("sending the capture sentinel");
            let resend_at = Instant::now() + Duration::from_millis(500);
            loop {
                let left = resend_at.saturating_duration_since(Instant::now());
                match self.datagrams.recv_timeout(left) {
                    Ok(datagram) if datagram.payload == SENTINEL => break 'waiting,
                    Ok(datagram) => captured.push(datagram),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        panic!("dumpcap stopped early; see {}", self.file.display())
                    }
                }
            }
        }
        let _ = self.dumpcap.kill();
        let _ = self.dumpcap.wait();
        assert!(
            Instant::now() < deadline,
            "the capture sentinel never showed up in {}",
            self.file.display()
        );
        captured.retain(|datagram| datagram.payload != SENTINEL);
        captured
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.dumpcap.kill();
        let _ = self.dumpcap.wait();
    }
}

/// Copies what is read into a file, for a look at the capture after a failure.
struct Tee<R> {
    from: R,
    to: fs::File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.from.read(buffer)?;
        self.to.write_all(&buffer[..read])?;
        Ok(read)
    }
}

/// Parses a classic pcap stream of Ethernet frames and sends on each IPv4 UDP datagram and TCP
/// segment payload, until the stream ends or nobody listens.
fn read_pcap_stream(mut stream: impl Read, datagrams: &mpsc::Sender<Datagram>) {
    let mut header = [0u8; 24];
    if stream.read_exact(&mut header).is_err() {
        return;
    }
    let magic = u32::from_le_bytes(header[..4].try_into().unwrap());
    let (little_endian, nanoseconds) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        other => panic!("not a classic pcap stream (magic {other:#x})"),
    };
    let number = |bytes: &[u8]| {
        let bytes: [u8; 4] = bytes.try_into().unwrap();
        if little_endian {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    assert_eq!(number(&header[20..24]), 1, "loopback captures are Ethernet");
    let mut record = [0u8; 16];
    while stream.read_exact(&mut record).is_ok() {
        let seconds = number(&record[..4]);
        let fraction = number(&record[4..8]);
        let mut frame = vec![0u8; number(&record[8..12]) as usize];
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let at = Duration::from_secs(u64::from(seconds))
            + if nanoseconds {
                Duration::from_nanos(u64::from(fraction))
            } else {
                Duration::from_micros(u64::from(fraction))
            };
        if let Some(datagram) = parse_frame(at, &frame) {
            if datagrams.send(datagram).is_err() {
                return;
            }
        }
    }
}

fn parse_frame(at: Duration, frame: &[u8]) -> Option<Datagram> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 {
        return None;
    }
    let tcp = match *ip.get(9)? {
        17 => false,
        6 => true,
        _ => return None,
    };
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    // The IP length bounds a TCP payload; 0 (segmentation offload) means the whole frame.
    let total_len = match usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])) {
        0 => ip.len(),
        len => len.min(ip.len()),
    };
    let segment = ip.get(header_len..total_len)?;
    let address = |bytes: &[u8]| Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
    let port = |offset: usize| u16::from_be_bytes([segment[offset], segment[offset + 1]]);
    let payload = if tcp {
        let data_offset = usize::from(*segment.get(12)? >> 4) * 4;
        segment.get(data_offset..)?.to_vec()
    } else {
        let udp_len = usize::from(u16::from_be_bytes([*segment.get(4)?, *segment.get(5)?]));
        segment.get(8..udp_len)?.to_vec()
    };
    if tcp && payload.is_empty() {
        return None;
    }
    Some(Datagram {
        at,
        src: SocketAddrV4::new(address(ip.get(12..16)?), port(0)),
        dst: SocketAddrV4::new(address(ip.get(16..20)?), port(2)),
        payload,
        tcp,
    })
}

// ---- the prompt files -----------------------------------------------------------------------

/// Prompts of one language, as the µ-law frames in their files.
pub struct Prompts {
    by_name: Vec<(&'static str, Vec<Frame>)>,
}

impl Prompts {
    /// Loads `prompts/<language>/<name>.wav` for each name; a name like "ru/language_menu_ru"
    /// is a prompt of another language.
    pub fn load(language: &str, names: &[&'static str]) -> Prompts {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("prompts")
            .join(language);
        let by_name = names
            .iter()
            .map(|&name| {
                let path = match name.contains('/') {
                    true => dir.join("..").join(format!("{name}.wav")),
                    false => dir.join(format!("{name}.wav")),
                };
                (name, ulaw_wav_frames(&path))
            })
            .collect();
        Prompts { by_name }
    }

    /// Every prompt with how many of its frames `packets` repeat from its first, most first
    /// (ties in loading order), as `(name, frames played, frames in the prompt)`.
    pub fn ranked_matches(&self, packets: &[RtpPacket]) -> Vec<(&'static str, usize, usize)> {
        let mut matches: Vec<(&'static str, usize, usize)> = self
            .by_name
            .iter()
            .map(|(name, frames)| {
                let played = packets
                    .iter()
                    .zip(frames)
                    .take_while(|(packet, frame)| packet.payload[..] == frame[..])
                    .count();
                (*name, played, frames.len())
            })
            .collect();
        matches.sort_by_key(|&(_, played, _)| std::cmp::Reverse(played));
        matches
    }

    pub fn frames(&self, name: &str) -> &[Frame] {
        self.by_name
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, frames)| frames.as_slice())
            .unwrap_or_else(|| panic!("no prompt {name}"))
    }
}

/// The data chunk of an 8 kHz mono µ-law WAV file in 20 ms frames, the last one padded with
/// silence as the service pads it.
pub fn ulaw_wav_frames(path: &Path) -> Vec<Frame> {
    let bytes =
        fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a WAV file",
        path.display()
    );
    let mut format = None;
    let mut data = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + size).min(bytes.len())];
        match id {
            b"fmt " => format = Some(body.to_vec()),
            b"data" => data = Some(body.to_vec()),
            _ => {}
        }
        at += 8 + size + (size & 1);
    }
    let format = format.unwrap_or_else(|| panic!("{} has no fmt chunk", path.display()));
    let le16 = |offset: usize| u16::from_le_bytes([format[offset], format[offset + 1]]);
    let rate = u32::from_le_bytes(format[4..8].try_into().unwrap());
    assert_eq!(
        (le16(0), le16(2), rate, le16(14)),
        (7, 1, 8000, 8),
        "{} must be µ-law (format 7), mono, 8000 Hz, 8 bits",
        path.display()
    );
    let data = data.unwrap_or_else(|| panic!("{} has no data chunk", path.display()));
    data.chunks(FRAME_LEN)
        .map(|chunk| {
            let mut frame = SILENCE;
            frame[..chunk.len()].copy_from_slice(chunk);
            frame
        })
        .collect()
}

/// One prompt as the service played it: from a marker bit to the next.
pub struct Piece {
    /// The prompt whose frames it repeats longest from the start (`?` if none does).
    pub name: &'static str,
    /// Frames equal to the prompt's, from its first.
    pub played: usize,
    /// Frames in the prompt.
    pub frames: usize,
    /// Packets from this marker to the next (or the end).
    pub len: usize,
    /// Capture time of its first packet (since the Unix epoch).
    pub at: Duration,
}

/// The service's packets cut at marker bits, each piece named by the prompt it plays.
pub fn pieces(packets: &[RtpPacket], prompts: &Prompts) -> Vec<Piece> {
    let starts: Vec<usize> = (0..packets.len()).filter(|&i| packets[i].marker).collect();
    starts
        .iter()
        .enumerate()
        .map(|(number, &start)| {
            let end = starts.get(number + 1).copied().unwrap_or(packets.len());
            let part = &packets[start..end];
            let matches = prompts.ranked_matches(part);
            let (name, played, frames) = matches[0];
            // Prompts begin with silent frames; a unique longest match names the prompt.
            let known = played >= 3 && matches.get(1).is_none_or(|m| m.1 < played);
            Piece {
                name: if known { name } else { "?" },
                played,
                frames,
                len: part.len(),
                at: part[0].at,
            }
        })
        .collect()
}

/// Pieces as one line, e.g. `welcome 120/120 (120 sent), ? 0/0 (3 sent)`.
pub fn describe(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| format!("{} {}/{} ({} sent)", p.name, p.played, p.frames, p.len))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long `frames` 20 ms frames last.
pub fn frame_time(frames: usize) -> Duration {
    Duration::from_millis(20 * frames as u64)
}
