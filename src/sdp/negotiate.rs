//! RFC 3264 offer/answer for the IVR: pick one G.711 audio stream (plus RFC 4733
//! telephone-event), reject every other stream with port 0, and write our SDP text. Whether the
//! stream is SRTP (and with which keys) is the `security` module's decision, made here per
//! stream under the leg's [`SrtpPolicy`].

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use rand::RngCore;

use super::crypto::{CryptoAttribute, SdesKeys};
use super::security::{self, SrtpOffer, SrtpPolicy, StreamRefusal};
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// SRTP keys agreed by SDES (RFC 4568); `None`: plain RTP.
    pub srtp: Option<SdesKeys>,
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
    #[error("audio offered only over transport {proto}, which this leg does not take (RTP/AVP, and RTP/SAVP where media encryption is on)")]
    IncompatibleTransport { proto: String },
    #[error("no PCMU or PCMA among the offered audio formats: {offered_formats}")]
    NoCommonCodec { offered_formats: String },
    #[error("SRTP keys (a=crypto) are only exchanged over secure signalling (TLS), and this leg's is not")]
    KeysNeedSecureSignalling,
    #[error("media encryption is required but the offer is plain {proto} without a=crypto")]
    EncryptionRequired { proto: String },
    #[error("no acceptable SRTP crypto: {reason}")]
    NoAcceptableCrypto { reason: String },
}

impl NegotiationError {
    /// RFC 3261 §20.43 warn-code.
    pub fn warning_code(&self) -> u16 {
        match self {
            NegotiationError::IncompatibleTransport { .. } => 302,
            NegotiationError::MediaTypeNotAvailable => 304,
            NegotiationError::NoCommonCodec { .. } => 305,
            NegotiationError::NoAcceptableCrypto { .. } => 306,
            NegotiationError::KeysNeedSecureSignalling
            | NegotiationError::EncryptionRequired { .. } => 399,
        }
    }

    /// Value for the `Warning:` header of the 488, e.g. `305 hotline "Incompatible media format"`.
    pub fn warning_header(&self) -> String {
        let text = match self {
            NegotiationError::IncompatibleTransport { .. } => "Incompatible transport protocol",
            NegotiationError::MediaTypeNotAvailable => "Media type not available",
            NegotiationError::NoCommonCodec { .. } => "Incompatible media format",
            NegotiationError::NoAcceptableCrypto { .. } => "Attribute not understood",
            NegotiationError::KeysNeedSecureSignalling => "SRTP keys only over TLS",
            NegotiationError::EncryptionRequired { .. } => "Media encryption required",
        };
        format!("{} {AGENT} \"{text}\"", self.warning_code())
    }
}

/// [`answer_with`] for a plain-RTP leg: RTP/SAVP offers are refused.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<(Negotiated, String), NegotiationError> {
    // Policy off never draws a key, so this generator is never used.
    let mut unused = rand::rngs::mock::StepRng::new(0, 0);
    answer_with(offer, local, SrtpPolicy::OFF, &mut unused)
}

/// Builds our answer to `offer`: the first audio stream we can take (RTP/AVP, or RTP/SAVP under
/// `policy`) offering PCMU or PCMA gets `local.rtp_port` and the first of those codecs in the
/// offer's order, and our `a=crypto` line (a fresh key from `rng`) when it is SRTP; every other
/// stream is rejected with port 0, keeping the offer's m-line count and order (RFC 3264 §6).
pub fn answer_with(
    offer: &SessionDescription,
    local: &LocalMedia,
    policy: SrtpPolicy,
    rng: &mut (impl RngCore + ?Sized),
) -> Result<(Negotiated, String), NegotiationError> {
    reanswer_with(offer, local, policy, None, rng)
}

/// [`answer_with`] for a new offer within a session whose SRTP keys are `current`: when the
/// offer repeats the line in use (same tag, suite and key), our key stays too, so neither
/// side's crypto context (and its rollover counter) starts over (RFC 4568 §7.1.4).
pub fn reanswer_with(
    offer: &SessionDescription,
    local: &LocalMedia,
    policy: SrtpPolicy,
    current: Option<&SdesKeys>,
    rng: &mut (impl RngCore + ?Sized),
) -> Result<(Negotiated, String), NegotiationError> {
    let chosen = choose_audio_stream(offer, policy, current, rng)?;
    let (chosen_index, media, codec, payload_type) = (
        chosen.index,
        chosen.media,
        chosen.codec,
        chosen.payload_type,
    );
    let telephone_event = find_telephone_event(media);
    let (remote_rtp, remote_direction) = remote_endpoint(offer, media);
    let (srtp, our_crypto) = chosen.srtp.unzip();
    let negotiated = Negotiated {
        codec,
        payload_type,
        telephone_event,
        remote_rtp,
        remote_direction,
        ptime: media.ptime,
        srtp,
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
        if let Some(line) = &our_crypto {
            sdp_line(&mut sdp, format_args!("{}", line.to_sdp_line()));
        }
        sdp_line(&mut sdp, format_args!("a=ptime:{OUR_PTIME_MS}"));
        let direction = negotiated.local_direction().attribute_name();
        sdp_line(&mut sdp, format_args!("a={direction}"));
    }
    Ok((negotiated, sdp))
}

/// Our own plain-RTP offer; see [`offer_with`].
pub fn offer(local: &LocalMedia, codecs: &[Codec]) -> String {
    offer_with(local, codecs, &SrtpOffer::plain())
}

/// Our own offer (when calling out): one audio stream with `codecs` in preference order (empty →
/// PCMU, PCMA; duplicates dropped), telephone-event/8000 on PT 101, ptime 20, sendrecv, on the
/// transport and with the `a=crypto` lines of `srtp` (from [`SrtpPolicy::offer`]).
pub fn offer_with(local: &LocalMedia, codecs: &[Codec], srtp: &SrtpOffer) -> String {
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
            "m=audio {} {} {payload_types}{OUR_TELEPHONE_EVENT_PT}",
            local.rtp_port,
            srtp.proto()
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
    for line in &srtp.crypto {
        sdp_line(&mut sdp, format_args!("{}", line.to_sdp_line()));
    }
    sdp_line(&mut sdp, format_args!("a=ptime:{OUR_PTIME_MS}"));
    sdp_line(&mut sdp, format_args!("a=sendrecv"));
    sdp
}

/// Reads the peer's answer to our plain [`offer`]; see [`parse_answer_with`].
pub fn parse_answer(
    our_offer: &[Codec],
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    parse_answer_with(our_offer, &SrtpOffer::plain(), answer)
}

/// Reads the peer's answer to our [`offer_with`] made with `our_offer` codecs and `our_srtp`. The
/// answer mirrors our single m-line, so its first m-line is our audio stream; the peer's PTs are
/// used as given, and its `a=crypto` must answer one of ours (RFC 4568 §7.1.3).
pub fn parse_answer_with(
    our_offer: &[Codec],
    our_srtp: &SrtpOffer,
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    let offered = effective_codecs(our_offer);
    let media = answer
        .media
        .first()
        .filter(|media| media.media_type == MediaType::Audio && media.port != 0)
        .ok_or(NegotiationError::MediaTypeNotAvailable)?;
    if !media.is_rtp_avp() && !media.is_rtp_savp() {
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
    let srtp = security::accept_answer(our_srtp, media)?;
    let (remote_rtp, remote_direction) = remote_endpoint(answer, media);
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: find_telephone_event(media),
        remote_rtp,
        remote_direction,
        ptime: media.ptime,
        srtp,
    })
}

/// The offered stream we take and what we agreed on it.
struct Chosen<'a> {
    index: usize,
    media: &'a MediaDescription,
    codec: Codec,
    payload_type: u8,
    /// Keys and our `a=crypto` line when the stream is SRTP.
    srtp: Option<(SdesKeys, CryptoAttribute)>,
}

/// The first audio stream we can take under `policy`, with the offer's first G.711 codec on it.
fn choose_audio_stream<'a>(
    offer: &'a SessionDescription,
    policy: SrtpPolicy,
    current: Option<&SdesKeys>,
    rng: &mut (impl RngCore + ?Sized),
) -> Result<Chosen<'a>, NegotiationError> {
    let mut refusal: Option<StreamRefusal> = None;
    let mut refuse = |candidate: StreamRefusal| {
        // The most specific reason wins (security, then codecs, then transport); ties: first.
        if refusal.as_ref().is_none_or(|r| candidate.rank > r.rank) {
            refusal = Some(candidate);
        }
    };
    for (index, media) in offer.media.iter().enumerate() {
        if media.media_type != MediaType::Audio || media.port == 0 {
            continue;
        }
        if !security::transport_usable(media, policy) {
            refuse(StreamRefusal {
                rank: 1,
                error: NegotiationError::IncompatibleTransport {
                    proto: media.proto.clone(),
                },
            });
            continue;
        }
        let first_g711 = media
            .payload_types()
            .find_map(|pt| codec_for_payload_type(media, pt).map(|codec| (codec, pt)));
        let Some((codec, payload_type)) = first_g711 else {
            refuse(StreamRefusal {
                rank: 2,
                error: NegotiationError::NoCommonCodec {
                    offered_formats: describe_formats(media),
                },
            });
            continue;
        };
        match security::answer_stream(media, policy, current, rng) {
            Ok(srtp) => {
                return Ok(Chosen {
                    index,
                    media,
                    codec,
                    payload_type,
                    srtp,
                })
            }
            Err(security_refusal) => refuse(security_refusal),
        }
    }
    Err(refusal.map_or(NegotiationError::MediaTypeNotAvailable, |r| r.error))
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
