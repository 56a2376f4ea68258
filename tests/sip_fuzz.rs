//! Robustness of the SIP front door: 10,000 random and mutated UDP datagrams (byte flips,
//! truncation, duplicated/removed lines, huge headers, binary junk, empty datagrams, non-SIP
//! text, compact headers, bad Content-Length) must neither kill `hotline serve` nor stop it
//! answering, and malformed requests that still carry every mandatory header get 400.
//! Set HOTLINE_FUZZ_SEED to replay a run; the seed is printed when the test fails.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::Service;

const DATAGRAMS: usize = 10_000;
const DEFAULT_SEED: u64 = 0x1911_8F00_D5EE_D001;
/// Responses are drained after this many datagrams so our receive buffer never overflows.
const DRAIN_EVERY: usize = 50;
/// The service must still be running at each of these checkpoints.
const LIVENESS_EVERY: usize = 500;
/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// Call-IDs of requests that are malformed but carry all mandatory headers: these deserve 400.
const MALFORMED_PREFIX: &str = "fuzz-malformed-";
/// How long the service gets to answer the closing OPTIONS.
const ANSWER_DEADLINE: Duration = Duration::from_secs(15);
/// Retransmission interval of the closing OPTIONS (RFC 3261 T1).
const RETRANSMIT_EVERY: Duration = Duration::from_millis(500);

#[test]
fn survives_ten_thousand_hostile_datagrams_and_keeps_answering() {
    // Mutated INVITEs may set up calls; they must not outlive the test by much.
    let mut service = Service::start(&[("HOTLINE__SIP__MAX_CALL_DURATION", "2")]);
    let target = service.sip_addr();
    let seed = std::env::var("HOTLINE_FUZZ_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    // RTP for calls that get answered goes here and is never read.
    let media_sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let context = Context {
        local: socket.local_addr().unwrap(),
        target,
        media_port: media_sink.local_addr().unwrap().port(),
    };
    let mut generator = Generator {
        rng: Rng::new(seed),
        context,
        counter: 0,
    };
    let mut tally = Tally::default();
    let mut recent: VecDeque<Vec<u8>> = VecDeque::new();

    for index in 0..DATAGRAMS {
        let datagram = generator.next_datagram();
        send(&socket, &datagram, target, &mut tally);
        if recent.len() == 64 {
            recent.pop_front();
        }
        recent.push_back(datagram);
        if index % DRAIN_EVERY == DRAIN_EVERY - 1 {
            drain(&socket, &mut tally);
        }
        if index % LIVENESS_EVERY == LIVENESS_EVERY - 1 {
            if let Some(status) = service.exit_status() {
                let saved = save_recent(&service, &recent);
                panic!(
                    "hotline exited ({status}) after datagram {index} (seed {seed}); the last {} datagrams are in {saved}",
                    recent.len()
                );
            }
        }
    }
    drain(&socket, &mut tally);
    eprintln!("fuzz seed {seed}: {tally:?}");

    let call_id = format!("fuzz-final-{seed}");
    let options = generator.options_request(&call_id);
    let answered = wait_for_200(&socket, &options, target, &call_id, &mut tally);
    if let Some(status) = service.exit_status() {
        let saved = save_recent(&service, &recent);
        panic!("hotline exited ({status}) during the fuzz run (seed {seed}); last datagrams in {saved}");
    }
    assert!(
        answered,
        "no `SIP/2.0 200` with Call-ID {call_id} within {ANSWER_DEADLINE:?} after the fuzz run (seed {seed}); {tally:?}"
    );
    assert!(
        tally.malformed_answered_400 > 0,
        "no 400 for any malformed request that had all mandatory headers (seed {seed}); {tally:?}"
    );
}

/// Addresses the generated messages need.
struct Context {
    local: SocketAddr,
    target: SocketAddr,
    media_port: u16,
}

#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    send_errors: u64,
    responses_by_status: BTreeMap<u16, u64>,
    malformed_answered_400: u64,
    requests_from_service: u64,
    unrecognised: u64,
}

impl Tally {
    fn record(&mut self, datagram: &[u8]) {
        let text = String::from_utf8_lossy(datagram);
        if let Some(status) = status_code(&text) {
            *self.responses_by_status.entry(status).or_default() += 1;
            let malformed = call_id_of(&text).is_some_and(|id| id.starts_with(MALFORMED_PREFIX));
            if status == 400 && malformed {
                self.malformed_answered_400 += 1;
            }
        } else if text.contains(" SIP/2.0\r\n") {
            // BYE for calls that mutated INVITEs set up, once max_call_duration passes.
            self.requests_from_service += 1;
        } else {
            self.unrecognised += 1;
        }
    }
}

fn send(socket: &UdpSocket, datagram: &[u8], target: SocketAddr, tally: &mut Tally) {
    // A full send buffer is the only reason to try again; make room by reading responses.
    for _ in 0..1000 {
        match socket.send_to(datagram, target) {
            Ok(_) => {
                tally.sent += 1;
                return;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => drain(socket, tally),
            Err(_) => {
                tally.send_errors += 1;
                return;
            }
        }
    }
    tally.send_errors += 1;
}

/// Reads every datagram already waiting, without blocking.
fn drain(socket: &UdpSocket, tally: &mut Tally) {
    let mut buffer = vec![0u8; 70_000];
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((len, _)) => tally.record(&buffer[..len]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            // ICMP errors from earlier sends surface here on Linux; keep reading.
            Err(_) => continue,
        }
    }
}

/// Sends `request` (retransmitting every T1) until a 200 with `call_id` arrives or the
/// deadline passes; other datagrams are tallied and ignored.
fn wait_for_200(
    socket: &UdpSocket,
    request: &[u8],
    target: SocketAddr,
    call_id: &str,
    tally: &mut Tally,
) -> bool {
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(RETRANSMIT_EVERY)).unwrap();
    let deadline = Instant::now() + ANSWER_DEADLINE;
    let mut buffer = vec![0u8; 70_000];
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            socket.send_to(request, target).unwrap();
            next_send = Instant::now() + RETRANSMIT_EVERY;
        }
        match socket.recv_from(&mut buffer) {
            Ok((len, _)) => {
                let text = String::from_utf8_lossy(&buffer[..len]);
                if status_code(&text) == Some(200) && call_id_of(&text) == Some(call_id) {
                    return true;
                }
                tally.record(&buffer[..len]);
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {}
        }
    }
    false
}

fn save_recent(service: &Service, recent: &VecDeque<Vec<u8>>) -> String {
    let dir = service.dir().join("last-datagrams");
    let _ = std::fs::create_dir_all(&dir);
    for (index, datagram) in recent.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("{index:02}.bin")), datagram);
    }
    dir.display().to_string()
}

fn status_code(text: &str) -> Option<u16> {
    let rest = text.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

fn call_id_of(text: &str) -> Option<&str> {
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("Call-ID") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim())
    })
}

/// SplitMix64: tiny, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A SIP message as lines, so line-level mutations stay simple.
struct Message {
    start: String,
    headers: Vec<String>,
    body: String,
}

impl Message {
    fn to_bytes(&self) -> Vec<u8> {
        let mut text = String::new();
        text.push_str(&self.start);
        text.push_str("\r\n");
        for header in &self.headers {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text.push_str(&self.body);
        text.into_bytes()
    }

    fn set_header(&mut self, name: &str, value: &str) {
        let line = format!("{name}: {value}");
        match self
            .headers
            .iter()
            .position(|h| header_name(h).eq_ignore_ascii_case(name))
        {
            Some(index) => self.headers[index] = line,
            None => self.headers.push(line),
        }
    }
}

fn header_name(line: &str) -> &str {
    line.split(':').next().unwrap_or("").trim()
}

struct Generator {
    rng: Rng,
    context: Context,
    counter: u64,
}

const METHODS: [&str; 6] = ["INVITE", "OPTIONS", "BYE", "REGISTER", "CANCEL", "ACK"];

impl Generator {
    fn next_datagram(&mut self) -> Vec<u8> {
        // Anything that could steer the service's RTP away from loopback is regenerated.
        loop {
            let datagram = self.candidate();
            if datagram.len() <= MAX_DATAGRAM && only_loopback_addresses(&datagram) {
                return datagram;
            }
        }
    }

    fn candidate(&mut self) -> Vec<u8> {
        match self.rng.below(100) {
            0..=4 => self.valid_message().to_bytes(),
            5..=9 => compact(self.valid_message()).to_bytes(),
            10..=21 => self.malformed_with_mandatory_headers().to_bytes(),
            22..=51 => {
                let bytes = self.valid_message().to_bytes();
                self.mutate_bytes(bytes)
            }
            52..=66 => self.mutate_lines(),
            67..=74 => {
                let bytes = self.valid_message().to_bytes();
                let protected = protected_mask(&bytes);
                let cut = self.cut_point(&protected);
                bytes[..cut].to_vec()
            }
            75..=79 => self.bad_content_length().to_bytes(),
            80..=86 => {
                let len = self.rng.below(1500);
                (0..len).map(|_| self.rng.byte()).collect()
            }
            87..=88 => Vec::new(),
            _ => self.non_sip_text(),
        }
    }

    fn next_call_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}-{:x}", self.counter, self.rng.next_u64())
    }

    fn valid_message(&mut self) -> Message {
        let method = *self.rng.pick(&METHODS);
        let call_id = self.next_call_id("fuzz-");
        self.request(method, &call_id)
    }

    /// A well-formed request with every header RFC 3261 8.1.1 requires.
    fn request(&mut self, method: &str, call_id: &str) -> Message {
        let Context {
            local,
            target,
            media_port,
        } = self.context;
        let branch = format!("z9hG4bK{:x}", self.rng.next_u64());
        let tag = format!("{:x}", self.rng.next_u32());
        let uri = if method == "REGISTER" {
            format!("sip:{target}")
        } else {
            format!("sip:19118@{target}")
        };
        let mut headers = vec![
            format!("Via: SIP/2.0/UDP {local};branch={branch};rport"),
            "Max-Forwards: 70".to_string(),
            format!("From: \"fuzz\" <sip:fuzz@{local}>;tag={tag}"),
            format!("To: <sip:19118@{target}>"),
            format!("Call-ID: {call_id}"),
            format!("CSeq: {} {method}", 1 + self.rng.below(1000)),
            format!("Contact: <sip:fuzz@{local}>"),
            "User-Agent: hotline-fuzz".to_string(),
        ];
        let mut body = String::new();
        if method == "INVITE" {
            body = format!(
                "v=0\r\no=fuzz 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {media_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
                 a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
            );
            headers.push("Content-Type: application/sdp".to_string());
        }
        if method == "REGISTER" {
            headers.push("Expires: 3600".to_string());
        }
        headers.push(format!("Content-Length: {}", body.len()));
        Message {
            start: format!("{method} {uri} SIP/2.0"),
            headers,
            body,
        }
    }

    /// OPTIONS with every mandatory header present but one of them broken.
    fn malformed_with_mandatory_headers(&mut self) -> Message {
        let call_id = self.next_call_id(MALFORMED_PREFIX);
        let mut message = self.request("OPTIONS", &call_id);
        match self.rng.below(7) {
            0 => message.set_header("Content-Length", "9999"),
            1 => message.set_header("CSeq", "abc OPTIONS"),
            2 => message.set_header("CSeq", "1 INVITE"),
            3 => message.set_header("Max-Forwards", "seventy"),
            4 => message.set_header("Content-Length", "-5"),
            5 => message.set_header("From", "no uri here;tag=1"),
            _ => message.start = "OPTIONS not-a-uri SIP/2.0".to_string(),
        }
        message
    }

    fn bad_content_length(&mut self) -> Message {
        let mut message = self.valid_message();
        let actual = message.body.len();
        let value = match self.rng.below(6) {
            0 => (actual + 1 + self.rng.below(5000)).to_string(),
            1 => actual.saturating_sub(1 + self.rng.below(50)).to_string(),
            2 => "-1".to_string(),
            3 => "".to_string(),
            4 => "99999999999999999999999".to_string(),
            _ => "twelve".to_string(),
        };
        message.set_header("Content-Length", &value);
        message
    }

    fn mutate_bytes(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        let protected = protected_mask(&bytes);
        let free: Vec<usize> = (0..bytes.len()).filter(|&i| !protected[i]).collect();
        if free.is_empty() {
            return bytes;
        }
        let edits = 1 + self.rng.below(8);
        let mut deleted = Vec::new();
        for _ in 0..edits {
            let position = *self.rng.pick(&free);
            match self.rng.below(4) {
                0 => bytes[position] ^= 1 << self.rng.below(8),
                1 => bytes[position] = self.rng.byte(),
                2 => bytes[position] = *self.rng.pick(b"\r\n\0 :;,<>\"@=\t"),
                _ => deleted.push(position),
            }
        }
        deleted.sort_unstable();
        deleted.dedup();
        for position in deleted.into_iter().rev() {
            bytes.remove(position);
        }
        bytes
    }

    fn mutate_lines(&mut self) -> Vec<u8> {
        let mut message = self.valid_message();
        let count = message.headers.len();
        match self.rng.below(6) {
            0 => {
                let line = message.headers[self.rng.below(count)].clone();
                let at = self.rng.below(count + 1);
                message.headers.insert(at, line);
            }
            1 => {
                message.headers.remove(self.rng.below(count));
            }
            2 => {
                let (a, b) = (self.rng.below(count), self.rng.below(count));
                message.headers.swap(a, b);
            }
            3 => {
                let size = *self.rng.pick(&[1_000, 10_000, 20_000, 60_000]);
                let value: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                let name = *self
                    .rng
                    .pick(&["Subject", "X-Huge", "Via", "Call-ID", "User-Agent"]);
                if name == "Via" {
                    // A huge Via still names only loopback.
                    message.headers.insert(
                        0,
                        format!("Via: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK{value}"),
                    );
                } else {
                    message.headers.push(format!("{name}: {value}"));
                }
            }
            4 => {
                let junk: String = (0..self.rng.below(200))
                    .map(|_| (32 + self.rng.below(95) as u8) as char)
                    .filter(|c| !c.is_ascii_digit())
                    .collect();
                let at = self.rng.below(count + 1);
                message.headers.insert(at, junk);
            }
            _ => {
                // Header folding (obsolete but legal in RFC 3261).
                let index = self.rng.below(count);
                message.headers[index].push_str("\r\n   folded-continuation");
            }
        }
        message.to_bytes()
    }

    fn cut_point(&mut self, protected: &[bool]) -> usize {
        loop {
            let cut = self.rng.below(protected.len() + 1);
            if cut == protected.len() || !protected[cut] || cut == 0 || !protected[cut - 1] {
                return cut;
            }
        }
    }

    fn non_sip_text(&mut self) -> Vec<u8> {
        let local = self.context.local;
        let texts: [Vec<u8>; 9] = [
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            b"hello\n".to_vec(),
            b"\r\n\r\n".to_vec(),
            b"\r\n".to_vec(),
            b"SIP/2.0 200 OK\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\n\r\n".to_vec(),
            format!("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKstray\r\nFrom: <sip:a@{local}>;tag=1\r\nTo: <sip:b@{local}>\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            // A STUN binding request header, as sent by ICE agents to SIP ports by mistake.
            vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            "ÄÖÜ ünïcödé ☎ SIP/2.0\r\n\r\n".as_bytes().to_vec(),
            b"INVITE\r\n\r\n".to_vec(),
        ];
        self.rng.pick(&texts).clone()
    }

    /// The valid OPTIONS used to check the service still answers.
    fn options_request(&mut self, call_id: &str) -> Vec<u8> {
        self.request("OPTIONS", call_id).to_bytes()
    }
}

/// Full header names with an RFC 3261 7.3.3 compact form.
const COMPACT_FORMS: [(&str, &str); 7] = [
    ("Via", "v"),
    ("From", "f"),
    ("To", "t"),
    ("Call-ID", "i"),
    ("Contact", "m"),
    ("Content-Type", "c"),
    ("Content-Length", "l"),
];

fn compact(mut message: Message) -> Message {
    for header in &mut message.headers {
        let name = header_name(header).to_string();
        if let Some((_, short)) = COMPACT_FORMS
            .iter()
            .find(|(long, _)| long.eq_ignore_ascii_case(&name))
        {
            let value = header
                .split_once(':')
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            *header = format!("{short}:{value}");
        }
    }
    message
}

/// Bytes that mutations must not touch: every `127.0.0.1[:port]` with one byte either side,
/// and the SDP media port, so no mutation can point the service at another host or port.
fn protected_mask(bytes: &[u8]) -> Vec<bool> {
    let mut mask = vec![false; bytes.len()];
    let needle = b"127.0.0.1";
    let mut start = 0;
    while let Some(found) = find(&bytes[start..], needle) {
        let at = start + found;
        let mut end = at + needle.len();
        if bytes.get(end) == Some(&b':') {
            end += 1;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        let from = at.saturating_sub(1);
        let to = (end + 1).min(bytes.len());
        mask[from..to].fill(true);
        start = at + needle.len();
    }
    let media = b"m=audio ";
    if let Some(found) = find(bytes, media) {
        let mut end = found + media.len();
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let to = (end + 1).min(bytes.len());
        mask[found..to].fill(true);
    }
    mask
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// True when every dotted IPv4-looking token and every SDP connection address is in
/// 127.0.0.0/8: tests may only send traffic to loopback, and the service sends RTP to the
/// address in `c=`.
fn only_loopback_addresses(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    for line in text.split(['\r', '\n']) {
        let trimmed = line.trim_start();
        if trimmed
            .get(..2)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("c="))
        {
            let address = trimmed.rsplit(' ').next().unwrap_or("");
            if !address.starts_with("127.") {
                return false;
            }
        }
    }
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index].is_ascii_digit() {
            let start = index;
            while index < bytes.len() && (bytes[index].is_ascii_digit() || bytes[index] == b'.') {
                index += 1;
            }
            let token = &bytes[start..index];
            let after_slash_or_word =
                start > 0 && (bytes[start - 1] == b'/' || bytes[start - 1].is_ascii_alphanumeric());
            let dots = token.iter().filter(|&&b| b == b'.').count();
            // `SIP/2.0`, `hotline/0.1.0` and words like `IP4` are versions, not hosts.
            if dots >= 1 && !after_slash_or_word && !token.starts_with(b"127.") {
                return false;
            }
        } else {
            index += 1;
        }
    }
    true
}
