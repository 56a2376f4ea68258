//! RFC 3264 offer/answer for the IVR: pick one G.711 audio stream (plus RFC 4733
//! telephone-event), reject every other stream with port 0, and write our SDP text.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use super::{Codec, Direction, MediaDescription, MediaType, SessionDescription};

/// Payload type we put telephone-event on in our own offers (the de-facto common choice).
const OUR_TELEPHONE_EVENT_PT: u8 = 101;
/// RFC 4733 events we handle: DTMF 0-9, *, #, A-D and flash (16).
const OUR_TELEPHONE_EVENTS: &str = "0-16";
/// Packetisation we send; 20 ms is what every G.711 peer expects.
const OUR_PTIME_MS: u32 = 20;
/// Codec preference when the caller of [`offer`]/[`parse_answer`] names none.
const DEFAULT_CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];
/// `o=` username, `s=` text and Warning agent.
const AGENT: &str = "hotline";
/// Longest offered format summary quoted in [`NegotiationError::NoCommonCodec`].
const MAX_DESCRIBED_FORMATS: usize = 8;

/// Our side of the media: where we receive RTP and the `o=` session identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub rtp_port: u16,
    pub session_id: u64,
    /// Must grow whenever a later description of the same session differs (RFC 3264 §8).
    pub session_version: u64,
}

/// Outcome of an offer/answer exchange for the one audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// Payload type to send and expect for `codec`: 0/8, or the peer's dynamic PT for G.711.
    pub payload_type: u8,
    /// The peer's payload type for telephone-event/8000, when it does RFC 4733 DTMF.
    pub telephone_event: Option<u8>,
    /// Where to send RTP; `None` when the peer gave the 0.0.0.0/`::` hold address.
    pub remote_rtp: Option<SocketAddr>,
    /// The peer's direction for this stream, with c=0.0.0.0 hold folded in (peer will not receive).
    pub remote_direction: Direction,
    /// The peer's `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
}

impl Negotiated {
    /// Our direction for this stream: the mirror of the peer's.
    pub fn local_direction(&self) -> Direction {
        self.remote_direction.reversed()
    }
}

/// Why no audio stream could be agreed; every variant maps to SIP 488 Not Acceptable Here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("no active audio stream in the session description")]
    MediaTypeNotAvailable,
    #[error("audio offered only over transport {proto}, we do RTP/AVP only")]
    IncompatibleTransport { proto: String },
    #[error("no PCMU or PCMA among the offered audio formats: {offered_formats}")]
    NoCommonCodec { offered_formats: String },
}

impl NegotiationError {
    /// RFC 3261 §20.43 warn-code.
    pub fn warning_code(&self) -> u16 {
        match self {
            NegotiationError::IncompatibleTransport { .. } => 302,
            NegotiationError::MediaTypeNotAvailable => 304,
            NegotiationError::NoCommonCodec { .. } => 305,
        }
    }

    /// Value for the `Warning:` header of the 488, e.g. `305 hotline "Incompatible media format"`.
    pub fn warning_header(&self) -> String {
        let text = match self {
            NegotiationError::IncompatibleTransport { .. } => "Incompatible transport protocol",
            NegotiationError::MediaTypeNotAvailable => "Media type not available",
            NegotiationError::NoCommonCodec { .. } => "Incompatible media format",
        };
        format!("{} {AGENT} \"{text}\"", self.warning_code())
    }
}

/// Builds our answer to `offer`: the first audio RTP/AVP stream offering PCMU or PCMA gets
/// `local.rtp_port` and the first of those codecs in the offer's order; every other stream is
/// rejected with port 0, keeping the offer's m-line count and order (RFC 3264 §6).
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<(Negotiated, String), NegotiationError> {
    let (chosen_index, media, codec, payload_type) = choose_audio_stream(offer)?;
    let telephone_event = find_telephone_event(media);
    let (remote_rtp, remote_direction) = remote_endpoint(offer, media);
    let negotiated = Negotiated {
        codec,
        payload_type,
        telephone_event,
        remote_rtp,
        remote_direction,
        ptime: media.ptime,
    };

    let mut sdp = String::with_capacity(512);
    write_session_header(&mut sdp, local);
    for (index, offered) in offer.media.iter().enumerate() {
        if index != chosen_index {
            // RFC 3264 §6: a rejected stream still needs a format; it is ignored.
            let format = offered.formats.first().map_or("0", String::as_str);
            let media_type = offered.media_type.as_str();
            sdp_line(
                &mut sdp,
                format_args!("m={media_type} 0 {} {format}", offered.proto),
            );
            continue;
        }
        let media_line_end = match telephone_event {
            Some(event_pt) => format!("{payload_type} {event_pt}"),
            None => payload_type.to_string(),
        };
        let (port, proto) = (local.rtp_port, &media.proto);
        sdp_line(
            &mut sdp,
            format_args!("m=audio {port} {proto} {media_line_end}"),
        );
        write_rtpmap(&mut sdp, payload_type, codec.encoding_name());
        if let Some(event_pt) = telephone_event {
            write_rtpmap(&mut sdp, event_pt, "telephone-event");
            // Echo the peer's event list only if well-formed: it is copied into our own output.
            if let Some(events) = media.fmtp(event_pt).filter(|e| is_event_list(e)) {
                sdp_line(&mut sdp, format_args!("a=fmtp:{event_pt} {events}"));
            }
        }
        sdp_line(&mut sdp, format_args!("a=ptime:{OUR_PTIME_MS}"));
        let direction = negotiated.local_direction().attribute_name();
        sdp_line(&mut sdp, format_args!("a={direction}"));
    }
    Ok((negotiated, sdp))
}

/// Our own offer (when calling out): one audio stream with `codecs` in preference order (empty →
/// PCMU, PCMA; duplicates dropped), telephone-event/8000 on PT 101, ptime 20, sendrecv.
pub fn offer(local: &LocalMedia, codecs: &[Codec]) -> String {
    let codecs = effective_codecs(codecs);
    let mut payload_types = String::new();
    for codec in &codecs {
        payload_types.push_str(&codec.static_payload_type().to_string());
        payload_types.push(' ');
    }
    let mut sdp = String::with_capacity(512);
    write_session_header(&mut sdp, local);
    sdp_line(
        &mut sdp,
        format_args!(
            "m=audio {} RTP/AVP {payload_types}{OUR_TELEPHONE_EVENT_PT}",
            local.rtp_port
        ),
    );
    for codec in &codecs {
        write_rtpmap(&mut sdp, codec.static_payload_type(), codec.encoding_name());
    }
    write_rtpmap(&mut sdp, OUR_TELEPHONE_EVENT_PT, "telephone-event");
    sdp_line(
        &mut sdp,
        format_args!("a=fmtp:{OUR_TELEPHONE_EVENT_PT} {OUR_TELEPHONE_EVENTS}"),
    );
    sdp_line(&mut sdp, format_args!("a=ptime:{OUR_PTIME_MS}"));
    sdp_line(&mut sdp, format_args!("a=sendrecv"));
    sdp
}

/// Reads the peer's answer to our [`offer`] made with `our_offer` codecs. The answer mirrors our
/// single m-line, so its first m-line is our audio stream; the peer's PTs are used as given.
pub fn parse_answer(
    our_offer: &[Codec],
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    let offered = effective_codecs(our_offer);
    let media = answer
        .media
        .first()
        .filter(|media| media.media_type == MediaType::Audio && media.port != 0)
        .ok_or(NegotiationError::MediaTypeNotAvailable)?;
    if !media.is_rtp_avp() {
        return Err(NegotiationError::IncompatibleTransport {
            proto: media.proto.clone(),
        });
    }
    let (codec, payload_type) = media
        .payload_types()
        .find_map(|pt| {
            codec_for_payload_type(media, pt)
                .filter(|codec| offered.contains(codec))
                .map(|codec| (codec, pt))
        })
        .ok_or_else(|| NegotiationError::NoCommonCodec {
            offered_formats: describe_formats(media),
        })?;
    let (remote_rtp, remote_direction) = remote_endpoint(answer, media);
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: find_telephone_event(media),
        remote_rtp,
        remote_direction,
        ptime: media.ptime,
    })
}

/// The stream we take, its index, and the offer's first G.711 codec on it with its PT.
fn choose_audio_stream(
    offer: &SessionDescription,
) -> Result<(usize, &MediaDescription, Codec, u8), NegotiationError> {
    let mut codecless_audio: Option<&MediaDescription> = None;
    let mut foreign_transport: Option<&str> = None;
    for (index, media) in offer.media.iter().enumerate() {
        if media.media_type != MediaType::Audio || media.port == 0 {
            continue;
        }
        if !media.is_rtp_avp() {
            foreign_transport.get_or_insert(&media.proto);
            continue;
        }
        let first_g711 = media
            .payload_types()
            .find_map(|pt| codec_for_payload_type(media, pt).map(|codec| (codec, pt)));
        match first_g711 {
            Some((codec, pt)) => return Ok((index, media, codec, pt)),
            None => {
                codecless_audio.get_or_insert(media);
            }
        }
    }
    // The most specific reason wins: wrong codecs on RTP/AVP, then wrong transport, then no audio.
    Err(match (codecless_audio, foreign_transport) {
        (Some(media), _) => NegotiationError::NoCommonCodec {
            offered_formats: describe_formats(media),
        },
        (None, Some(proto)) => NegotiationError::IncompatibleTransport {
            proto: proto.to_owned(),
        },
        (None, None) => NegotiationError::MediaTypeNotAvailable,
    })
}

/// An explicit rtpmap decides; without one only the static PTs 0 and 8 mean G.711.
fn codec_for_payload_type(media: &MediaDescription, payload_type: u8) -> Option<Codec> {
    match media.rtpmap(payload_type) {
        Some(rtpmap) => Codec::from_rtpmap(rtpmap),
        None => Codec::from_static_payload_type(payload_type),
    }
}

/// First listed PT whose rtpmap is telephone-event/8000 (any PT, name case-insensitive).
fn find_telephone_event(media: &MediaDescription) -> Option<u8> {
    media.payload_types().find(|&pt| {
        media.rtpmap(pt).is_some_and(|rtpmap| {
            rtpmap.encoding_name.eq_ignore_ascii_case("telephone-event")
                && rtpmap.clock_rate == 8000
        })
    })
}

/// Where to send and the peer's direction; 0.0.0.0 / `::` is RFC 2543 hold: the peer does not
/// want media, so it at most sends.
fn remote_endpoint(
    description: &SessionDescription,
    media: &MediaDescription,
) -> (Option<SocketAddr>, Direction) {
    let direction = description.effective_direction(media);
    match description.effective_connection(media) {
        Some(ip) if !ip.is_unspecified() => (Some(SocketAddr::new(ip, media.port)), direction),
        _ => {
            let held = match direction {
                Direction::SendRecv => Direction::SendOnly,
                Direction::RecvOnly => Direction::Inactive,
                unchanged => unchanged,
            };
            (None, held)
        }
    }
}

/// `0-15,66,70`-style RFC 4733 event list, bounded so an echoed value stays short.
fn is_event_list(events: &str) -> bool {
    let is_event = |text: &str| {
        !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit())
    };
    events.len() <= 64
        && events.split(',').all(|item| match item.split_once('-') {
            Some((first, last)) => is_event(first) && is_event(last),
            None => is_event(item),
        })
}

/// e.g. `18 G729/8000, 101 telephone-event/8000` for error context.
fn describe_formats(media: &MediaDescription) -> String {
    let mut described = Vec::new();
    for format in media.formats.iter().take(MAX_DESCRIBED_FORMATS) {
        let rtpmap = super::parse::parse_payload_type(format).and_then(|pt| media.rtpmap(pt));
        described.push(match rtpmap {
            Some(map) => format!("{format} {}/{}", map.encoding_name, map.clock_rate),
            None => format.clone(),
        });
    }
    if media.formats.len() > MAX_DESCRIBED_FORMATS {
        described.push("…".to_owned());
    }
    described.join(", ")
}

fn effective_codecs(codecs: &[Codec]) -> Vec<Codec> {
    let mut unique: Vec<Codec> = Vec::with_capacity(DEFAULT_CODECS.len());
    for &codec in codecs {
        if !unique.contains(&codec) {
            unique.push(codec);
        }
    }
    if unique.is_empty() {
        unique.extend(DEFAULT_CODECS);
    }
    unique
}

fn write_session_header(sdp: &mut String, local: &LocalMedia) {
    let address_type = match local.addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let addr = local.addr;
    sdp_line(sdp, format_args!("v=0"));
    sdp_line(
        sdp,
        format_args!(
            "o={AGENT} {} {} IN {address_type} {addr}",
            local.session_id, local.session_version
        ),
    );
    sdp_line(sdp, format_args!("s={AGENT}"));
    sdp_line(sdp, format_args!("c=IN {address_type} {addr}"));
    sdp_line(sdp, format_args!("t=0 0"));
}

fn write_rtpmap(sdp: &mut String, payload_type: u8, encoding_name: &str) {
    sdp_line(
        sdp,
        format_args!("a=rtpmap:{payload_type} {encoding_name}/8000"),
    );
}

fn sdp_line(sdp: &mut String, line: fmt::Arguments<'_>) {
    // Formatting into a String cannot fail; the Result only exists for other writers.
    let _ = sdp.write_fmt(line);
    sdp.push_str("\r\n");
}
