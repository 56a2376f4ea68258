//! SDP for the IVR: parsing offers/answers (RFC 8866) from SIP bodies and the RFC 3264
//! offer/answer exchange for a single G.711 audio stream plus RFC 4733 telephone-events, and the
//! RFC 4568 SDES `a=crypto` lines that key SRTP.
//!
//! Own parser rather than the `sdp`/`webrtc-sdp` crates: we need ~10 line types, strict limits on
//! hostile input and line-numbered errors; both crates are WebRTC-sized and add dependencies.

mod crypto;
mod negotiate;
mod parse;
mod security;
#[cfg(test)]
mod tests;

pub use crypto::{
    accept_answer_crypto, answer_crypto, answer_media_crypto, crypto_attributes, offer_crypto,
    CryptoAttribute, CryptoError, CryptoSuite, KeyParams, SdesError, SdesKeys, CRYPTO_ATTRIBUTE,
};
pub use negotiate::{
    answer, answer_with, offer, offer_with, parse_answer, parse_answer_with, reanswer_with,
    LocalMedia, Negotiated, NegotiationError,
};
pub use parse::{
    Attribute, Fmtp, MediaDescription, MediaType, Origin, RtpMap, SdpError, SessionDescription,
    MAX_BODY_BYTES, MAX_FORMATS_PER_MEDIA, MAX_LINES, MAX_MEDIA_SECTIONS,
};
pub use security::{MediaEncryption, SrtpOffer, SrtpPolicy, RTP_AVP, RTP_SAVP};

/// The codecs the IVR speaks: G.711 µ-law and A-law, both 8000 Hz mono with static payload types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// RFC 3551 static payload type.
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// Encoding name as written in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    pub fn clock_rate(self) -> u32 {
        8000
    }

    /// The codec a static payload type stands for when no `a=rtpmap` overrides it.
    pub fn from_static_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The codec an `a=rtpmap` describes; encoding names are case-insensitive (RFC 4855 §3).
    pub fn from_rtpmap(rtpmap: &RtpMap) -> Option<Codec> {
        let mono = matches!(rtpmap.encoding_parameters.as_deref(), None | Some("1"));
        if rtpmap.clock_rate != 8000 || !mono {
            return None;
        }
        [Codec::Pcmu, Codec::Pcma].into_iter().find(|codec| {
            rtpmap
                .encoding_name
                .eq_ignore_ascii_case(codec.encoding_name())
        })
    }
}

/// Media direction attribute (RFC 8866 §6.7), from the point of view of whoever wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction the other side must answer with (RFC 3264 §6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            same => same,
        }
    }

    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote this direction wants to receive media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Attribute name, e.g. `sendrecv` for `a=sendrecv`.
    pub fn attribute_name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    pub fn from_attribute_name(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}
