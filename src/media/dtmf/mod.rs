//! DTMF digits as `char`s ('0'-'9', '*', '#', 'A'-'D'), their RFC 4733 §3.2 event codes, and the
//! three ways a call can deliver them: RTP telephone-events, SIP INFO, or in-band tones.

use std::fmt;

pub mod inband;
pub mod info;
pub mod rfc4733;

/// Digits indexed by their RFC 4733 §3.2 event code (0-15).
const DIGITS_BY_EVENT: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The DTMF digit for an RFC 4733 event code, or `None` for codes that are not DTMF (16+).
pub fn digit_from_event(event: u8) -> Option<char> {
    DIGITS_BY_EVENT.get(usize::from(event)).copied()
}

/// The RFC 4733 event code for a DTMF digit; 'a'-'d' are accepted as 'A'-'D'.
pub fn event_from_digit(digit: char) -> Option<u8> {
    let digit = digit.to_ascii_uppercase();
    DIGITS_BY_EVENT
        .iter()
        .position(|&d| d == digit)
        .and_then(|code| u8::try_from(code).ok())
}

/// How a call delivers DTMF; logged per call and chosen from the SDP/offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfSource {
    /// RTP telephone-event packets (RFC 4733, formerly RFC 2833).
    Rfc4733,
    /// SIP INFO requests with `application/dtmf-relay` or `application/dtmf` bodies.
    SipInfo,
    /// Tones inside the audio, found by the Goertzel detector.
    Inband,
}

impl DtmfSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            DtmfSource::Rfc4733 => "rfc4733",
            DtmfSource::SipInfo => "sip-info",
            DtmfSource::Inband => "inband",
        }
    }
}

impl fmt::Display for DtmfSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_follow_rfc4733_section_3_2() {
        let expected = "0123456789*#ABCD";
        for (code, digit) in (0u8..).zip(expected.chars()) {
            assert_eq!(digit_from_event(code), Some(digit));
            assert_eq!(event_from_digit(digit), Some(code));
        }
        assert_eq!(digit_from_event(16), None, "16 is flash, not a digit");
        assert_eq!(digit_from_event(255), None);
        assert_eq!(event_from_digit('d'), Some(15));
        assert_eq!(event_from_digit('E'), None);
        assert_eq!(event_from_digit(' '), None);
    }

    #[test]
    fn source_displays_as_logged() {
        assert_eq!(DtmfSource::Rfc4733.to_string(), "rfc4733");
        assert_eq!(DtmfSource::SipInfo.to_string(), "sip-info");
        assert_eq!(DtmfSource::Inband.to_string(), "inband");
    }
}
