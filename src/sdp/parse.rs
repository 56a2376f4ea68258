//! SDP text → [`SessionDescription`]: strict about the lines we act on (v, o, c, m and the
//! rtpmap/fmtp/ptime/direction attributes), tolerant of everything else (LF-only line ends,
//! trailing whitespace, unknown lines and attributes, missing s=/t=), with bounded work.

use std::borrow::Cow;
use std::net::IpAddr;

use super::Direction;

/// Larger bodies are refused before looking at them; real offers (even WebRTC ones) are a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Non-empty lines accepted in one body.
pub const MAX_LINES: usize = 2048;
/// `m=` sections accepted in one body.
pub const MAX_MEDIA_SECTIONS: usize = 32;
/// Formats on one `m=` line; bounds the format × rtpmap matching during negotiation.
pub const MAX_FORMATS_PER_MEDIA: usize = 128;
/// Offending text quoted in errors is cut to this many characters, so logs stay readable.
const MAX_QUOTED_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body is empty")]
    Empty,
    #[error("SDP body is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("SDP body has more than {max} lines")]
    TooManyLines { max: usize },
    #[error("line {line}: more than {max} media sections")]
    TooManyMediaSections { line: usize, max: usize },
    #[error("line {line}: {what}: {found:?}")]
    Invalid {
        line: usize,
        what: &'static str,
        found: String,
    },
    #[error("SDP body has no {kind}= line")]
    MissingLine { kind: char },
    #[error("line {line}: media section has no c= line and there is no session-level c= line")]
    MissingConnection { line: usize },
}

impl SdpError {
    /// Line number (1-based) the error refers to, when it refers to one.
    pub fn line(&self) -> Option<usize> {
        match self {
            SdpError::TooManyMediaSections { line, .. }
            | SdpError::Invalid { line, .. }
            | SdpError::MissingConnection { line } => Some(*line),
            SdpError::Empty
            | SdpError::TooLarge { .. }
            | SdpError::TooManyLines { .. }
            | SdpError::MissingLine { .. } => None,
        }
    }
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    /// Bumped by the sender whenever the description changes (RFC 3264 §8).
    pub session_version: u64,
    /// IP literal or host name; only informational for us.
    pub address: String,
}

/// `m=` media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaType {
    Audio,
    Video,
    /// text, application, message, image (T.38) or anything newer, kept verbatim.
    Other(String),
}

impl MediaType {
    fn from_token(token: &str) -> MediaType {
        match token {
            "audio" => MediaType::Audio,
            "video" => MediaType::Video,
            other => MediaType::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Audio => "audio",
            MediaType::Video => "video",
            MediaType::Other(token) => token,
        }
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding_name: String,
    pub clock_rate: u32,
    /// Channel count for audio, e.g. `2` in `opus/48000/2`.
    pub encoding_parameters: Option<String>,
}

/// `a=fmtp:<format> <format specific parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    pub format: String,
    pub parameters: String,
}

/// Any attribute we keep without interpreting: `a=<name>` or `a=<name>:<value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// One `m=` section with the attributes the negotiation needs already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media_type: MediaType,
    /// 0 means the stream is disabled or rejected.
    pub port: u16,
    /// `<port>/<number of ports>` for layered encodings; `None` when absent.
    pub port_count: Option<u16>,
    /// Transport protocol, e.g. `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, `udptl`.
    pub proto: String,
    /// Format tokens in preference order; RTP payload type numbers for RTP profiles.
    pub formats: Vec<String>,
    /// Media-level `c=` address; `None` means the session-level one applies.
    pub connection_address: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<Fmtp>,
    /// `a=ptime` in milliseconds.
    pub ptime: Option<u32>,
    /// Media-level direction; `None` means the session-level one (or sendrecv) applies.
    pub direction: Option<Direction>,
    pub other_attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// Whether the proto is plain RTP/AVP (RFC 3551).
    pub fn is_rtp_avp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP")
    }

    /// Whether the proto is RTP/SAVP (RFC 3711), SRTP keyed by `a=crypto` (RFC 4568).
    pub fn is_rtp_savp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/SAVP")
    }

    /// Formats that are RTP payload type numbers, in offer order; other tokens are skipped.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| parse_payload_type(f))
    }

    /// First rtpmap for `payload_type`; later duplicates are ignored.
    pub fn rtpmap(&self, payload_type: u8) -> Option<&RtpMap> {
        self.rtpmaps
            .iter()
            .find(|map| map.payload_type == payload_type)
    }

    /// fmtp parameters for the format written as `payload_type`.
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|fmtp| parse_payload_type(&fmtp.format) == Some(payload_type))
            .map(|fmtp| fmtp.parameters.as_str())
    }
}

/// A parsed SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    /// `s=` text; `None` when the line is missing (tolerated though RFC 8866 requires it).
    pub session_name: Option<String>,
    /// Session-level `c=` address.
    pub connection_address: Option<IpAddr>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// Other session-level attributes, uninterpreted.
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body as carried in a SIP message.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        parse_body(body)
    }

    /// The `c=` address that applies to `media`: its own, else the session-level one.
    pub fn effective_connection(&self, media: &MediaDescription) -> Option<IpAddr> {
        media.connection_address.or(self.connection_address)
    }

    /// The direction that applies to `media`: its own, else the session-level one, else sendrecv.
    pub fn effective_direction(&self, media: &MediaDescription) -> Direction {
        media
            .direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }
}

/// Accumulates a description while lines arrive; turned into [`SessionDescription`] at the end.
struct Builder {
    origin: Option<Origin>,
    session_name: Option<String>,
    connection_address: Option<IpAddr>,
    direction: Option<Direction>,
    attributes: Vec<Attribute>,
    media: Vec<MediaDescription>,
    /// Line of the `m=` that opened the current media section, for the c= check.
    current_media_line: usize,
}

fn parse_body(body: &[u8]) -> Result<SessionDescription, SdpError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(SdpError::TooLarge {
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let mut builder = Builder {
        origin: None,
        session_name: None,
        connection_address: None,
        direction: None,
        attributes: Vec::new(),
        media: Vec::new(),
        current_media_line: 0,
    };
    let mut seen_version = false;
    let mut non_empty_lines = 0usize;

    for (index, raw) in body.split(|&byte| byte == b'\n').enumerate() {
        let line_number = index + 1;
        // Lossy: non-UTF-8 only matters on lines we interpret, where it then fails validation.
        let decoded = String::from_utf8_lossy(raw);
        let text = decoded.trim_end_matches([' ', '\t', '\r']);
        if text.is_empty() {
            continue;
        }
        non_empty_lines += 1;
        if non_empty_lines > MAX_LINES {
            return Err(SdpError::TooManyLines { max: MAX_LINES });
        }
        // A bare CR or NUL inside a line would let echoed text break our own output apart.
        if text.contains(['\r', '\0']) {
            return Err(invalid(line_number, "control character inside line", text));
        }
        let mut chars = text.chars();
        let (kind, value) = match (chars.next(), chars.next()) {
            (Some(kind), Some('=')) if kind.is_ascii_alphabetic() => (kind, chars.as_str()),
            _ => return Err(invalid(line_number, "not a <type>=<value> line", text)),
        };
        if !seen_version {
            if kind != 'v' {
                return Err(invalid(line_number, "SDP must start with v=", text));
            }
            if value != "0" {
                return Err(invalid(line_number, "unsupported SDP version", value));
            }
            seen_version = true;
            continue;
        }
        builder.line(line_number, kind, value)?;
    }

    if !seen_version {
        return Err(SdpError::Empty);
    }
    builder.finish()
}

impl Builder {
    fn in_media_section(&self) -> bool {
        !self.media.is_empty()
    }

    fn line(&mut self, line: usize, kind: char, value: &str) -> Result<(), SdpError> {
        match kind {
            'v' => Err(invalid(line, "repeated v= line", value)),
            'o' => {
                if self.in_media_section() {
                    return Err(invalid(line, "o= line inside a media section", value));
                }
                if self.origin.is_some() {
                    return Err(invalid(line, "repeated o= line", value));
                }
                self.origin = Some(parse_origin(line, value)?);
                Ok(())
            }
            's' if !self.in_media_section() => {
                self.session_name.get_or_insert_with(|| value.to_owned());
                Ok(())
            }
            'c' => {
                let address = parse_connection(line, value)?;
                // Several c= lines only occur for layered multicast; the first is the base layer.
                let slot = match self.media.last_mut() {
                    Some(media) => &mut media.connection_address,
                    None => &mut self.connection_address,
                };
                slot.get_or_insert(address);
                Ok(())
            }
            'm' => self.start_media(line, value),
            'a' => self.attribute(line, value),
            // i=, u=, e=, p=, b=, t=, r=, z=, k= and unknown types do not affect negotiation.
            _ => Ok(()),
        }
    }

    fn start_media(&mut self, line: usize, value: &str) -> Result<(), SdpError> {
        self.check_current_media_connection()?;
        if self.media.len() >= MAX_MEDIA_SECTIONS {
            return Err(SdpError::TooManyMediaSections {
                line,
                max: MAX_MEDIA_SECTIONS,
            });
        }
        self.media.push(parse_media_line(line, value)?);
        self.current_media_line = line;
        Ok(())
    }

    /// RFC 8866 §5.7: every active stream needs an address, its own or the session's.
    fn check_current_media_connection(&self) -> Result<(), SdpError> {
        match self.media.last() {
            Some(media)
                if media.port != 0
                    && media.connection_address.is_none()
                    && self.connection_address.is_none() =>
            {
                Err(SdpError::MissingConnection {
                    line: self.current_media_line,
                })
            }
            _ => Ok(()),
        }
    }

    fn attribute(&mut self, line: usize, value: &str) -> Result<(), SdpError> {
        let (name, attribute_value) = match value.split_once(':') {
            Some((name, rest)) => (name, Some(rest)),
            None => (value, None),
        };
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(invalid(line, "invalid attribute name", value));
        }
        if let Some(direction) = Direction::from_attribute_name(name) {
            let slot = match self.media.last_mut() {
                Some(media) => &mut media.direction,
                None => &mut self.direction,
            };
            return match *slot {
                Some(existing) if existing != direction => {
                    Err(invalid(line, "conflicting direction attributes", value))
                }
                _ => {
                    *slot = Some(direction);
                    Ok(())
                }
            };
        }
        let Some(media) = self.media.last_mut() else {
            // rtpmap/fmtp/ptime only mean something per media section; keep them raw here.
            self.attributes.push(Attribute {
                name: name.to_owned(),
                value: attribute_value.map(str::to_owned),
            });
            return Ok(());
        };
        match (name, attribute_value) {
            ("rtpmap", Some(rest)) => media.rtpmaps.push(parse_rtpmap(line, rest)?),
            ("fmtp", Some(rest)) => media.fmtps.push(parse_fmtp(line, rest)?),
            ("ptime", Some(rest)) => {
                let ptime = parse_digits::<u32>(rest.trim())
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| invalid(line, "invalid ptime", rest))?;
                media.ptime = Some(ptime);
            }
            ("rtpmap" | "fmtp" | "ptime", None) => {
                return Err(invalid(line, "attribute needs a value", value));
            }
            _ => media.other_attributes.push(Attribute {
                name: name.to_owned(),
                value: attribute_value.map(str::to_owned),
            }),
        }
        Ok(())
    }

    fn finish(self) -> Result<SessionDescription, SdpError> {
        self.check_current_media_connection()?;
        let origin = self.origin.ok_or(SdpError::MissingLine { kind: 'o' })?;
        Ok(SessionDescription {
            origin,
            session_name: self.session_name,
            connection_address: self.connection_address,
            direction: self.direction,
            attributes: self.attributes,
            media: self.media,
        })
    }
}

fn parse_origin(line: usize, value: &str) -> Result<Origin, SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, session_id, session_version, _nettype, _addrtype, address] = fields[..] else {
        return Err(invalid(line, "o= needs 6 fields", value));
    };
    Ok(Origin {
        username: username.to_owned(),
        session_id: parse_digits(session_id)
            .ok_or_else(|| invalid(line, "invalid o= session id", session_id))?,
        session_version: parse_digits(session_version)
            .ok_or_else(|| invalid(line, "invalid o= session version", session_version))?,
        address: address.to_owned(),
    })
}

/// `c=IN IP4|IP6 <address>[/ttl[/count]]`. Only IP literals: a host name would need a DNS lookup
/// we cannot do here, and SIP user agents do not send them.
fn parse_connection(line: usize, value: &str) -> Result<IpAddr, SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [nettype, addrtype, address] = fields[..] else {
        return Err(invalid(line, "c= needs 3 fields", value));
    };
    if nettype != "IN" {
        return Err(invalid(line, "unsupported c= network type", nettype));
    }
    if addrtype != "IP4" && addrtype != "IP6" {
        return Err(invalid(line, "unsupported c= address type", addrtype));
    }
    let literal = address.split('/').next().unwrap_or(address);
    literal
        .parse::<IpAddr>()
        .map_err(|_| invalid(line, "c= address is not an IP literal", address))
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`.
fn parse_media_line(line: usize, value: &str) -> Result<MediaDescription, SdpError> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(media), Some(port_field), Some(proto)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(invalid(
            line,
            "m= needs media, port, proto and formats",
            value,
        ));
    };
    if !media.chars().all(is_token_char) {
        return Err(invalid(line, "invalid m= media type", media));
    }
    if !proto
        .split('/')
        .all(|part| !part.is_empty() && part.chars().all(is_token_char))
    {
        return Err(invalid(line, "invalid m= proto", proto));
    }
    let (port_text, count_text) = match port_field.split_once('/') {
        Some((port, count)) => (port, Some(count)),
        None => (port_field, None),
    };
    let port = parse_digits::<u16>(port_text)
        .ok_or_else(|| invalid(line, "invalid m= port", port_field))?;
    let port_count = match count_text {
        Some(text) => Some(
            parse_digits::<u16>(text)
                .filter(|&count| count > 0)
                .ok_or_else(|| invalid(line, "invalid m= port count", port_field))?,
        ),
        None => None,
    };
    let mut formats = Vec::new();
    for format in fields {
        if formats.len() >= MAX_FORMATS_PER_MEDIA {
            return Err(invalid(line, "too many formats on m= line", value));
        }
        if !format.chars().all(is_token_char) {
            return Err(invalid(line, "invalid m= format", format));
        }
        formats.push(format.to_owned());
    }
    // Some user agents drop the formats when disabling a stream; an active one must have some.
    if formats.is_empty() && port != 0 {
        return Err(invalid(line, "m= line has no formats", value));
    }
    Ok(MediaDescription {
        media_type: MediaType::from_token(media),
        port,
        port_count,
        proto: proto.to_owned(),
        formats,
        connection_address: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: None,
        other_attributes: Vec::new(),
    })
}

/// Value of `a=rtpmap:`, e.g. `101 telephone-event/8000` or `111 opus/48000/2`.
fn parse_rtpmap(line: usize, value: &str) -> Result<RtpMap, SdpError> {
    let Some((payload_type, encoding)) = value.trim().split_once([' ', '\t']) else {
        return Err(invalid(
            line,
            "rtpmap needs a payload type and an encoding",
            value,
        ));
    };
    let payload_type = parse_payload_type(payload_type)
        .ok_or_else(|| invalid(line, "invalid rtpmap payload type", payload_type))?;
    let mut parts = encoding.trim().splitn(3, '/');
    let (Some(encoding_name), Some(clock_rate)) = (parts.next(), parts.next()) else {
        return Err(invalid(
            line,
            "rtpmap encoding needs <name>/<clock rate>",
            value,
        ));
    };
    if encoding_name.is_empty() || !encoding_name.chars().all(is_token_char) {
        return Err(invalid(line, "invalid rtpmap encoding name", encoding_name));
    }
    let clock_rate = parse_digits::<u32>(clock_rate)
        .filter(|&rate| rate > 0)
        .ok_or_else(|| invalid(line, "invalid rtpmap clock rate", clock_rate))?;
    Ok(RtpMap {
        payload_type,
        encoding_name: encoding_name.to_owned(),
        clock_rate,
        encoding_parameters: parts.next().map(str::to_owned),
    })
}

/// Value of `a=fmtp:`, e.g. `101 0-16`. Parameters may be empty.
fn parse_fmtp(line: usize, value: &str) -> Result<Fmtp, SdpError> {
    let value = value.trim();
    let (format, parameters) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if format.is_empty() || !format.chars().all(is_token_char) {
        return Err(invalid(line, "invalid fmtp format", value));
    }
    Ok(Fmtp {
        format: format.to_owned(),
        parameters: parameters.trim().to_owned(),
    })
}

/// RTP payload types are 7 bits (RFC 3550 §5.1).
pub(super) fn parse_payload_type(text: &str) -> Option<u8> {
    parse_digits::<u8>(text).filter(|&pt| pt <= 127)
}

/// Digits only: `str::parse` alone would also take a leading `+`.
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// RFC 8866 `token-char`: visible ASCII except the separators.
fn is_token_char(c: char) -> bool {
    matches!(c, '!' | '#'..='\'' | '*' | '+' | '-' | '.' | '0'..='9' | 'A'..='Z' | '^'..='~')
}

fn invalid(line: usize, what: &'static str, found: &str) -> SdpError {
    let found: Cow<'_, str> = match found.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", found.get(..cut).unwrap_or(found))),
        None => Cow::Borrowed(found),
    };
    SdpError::Invalid {
        line,
        what,
        found: found.into_owned(),
    }
}
