//! DTMF carried in SIP INFO bodies: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) and
//! `application/dtmf` (the body is just the digit), as phones and gateways actually send them.

use super::{digit_from_event, event_from_digit};

/// Longest offending text copied into an error, so a hostile body cannot bloat logs.
const MAX_QUOTED_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfInfoError {
    #[error(
        "content type {content_type:?} is neither application/dtmf-relay nor application/dtmf"
    )]
    UnsupportedContentType { content_type: String },
    #[error("DTMF INFO body is not UTF-8")]
    BodyNotUtf8,
    #[error("application/dtmf-relay body has no Signal line")]
    MissingSignal,
    #[error("{value:?} is neither a DTMF digit nor an event code 0-15")]
    InvalidSignal { value: String },
}

/// Extracts the digit from a SIP INFO DTMF body. `content_type` is the Content-Type header
/// value; parameters and letter case are ignored. Digits come back as '0'-'9', '*', '#', 'A'-'D';
/// numeric event codes 10-15 (sent by some phones instead of '*', '#', 'A'-'D') are mapped.
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Result<char, DtmfInfoError> {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    let is_relay = media_type.eq_ignore_ascii_case("application/dtmf-relay");
    if !is_relay && !media_type.eq_ignore_ascii_case("application/dtmf") {
        return Err(DtmfInfoError::UnsupportedContentType {
            content_type: quoted(content_type),
        });
    }
    let body = std::str::from_utf8(body).map_err(|_| DtmfInfoError::BodyNotUtf8)?;
    let value = if is_relay {
        relay_signal(body).ok_or(DtmfInfoError::MissingSignal)?
    } else {
        body
    };
    signal_digit(value).ok_or_else(|| DtmfInfoError::InvalidSignal {
        value: quoted(value.trim()),
    })
}

/// The value of the first `Signal=` line (key case-insensitive, blanks around `=` allowed).
fn relay_signal(body: &str) -> Option<&str> {
    body.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        key.trim().eq_ignore_ascii_case("signal").then_some(value)
    })
}

/// A single digit character, or a decimal RFC 4733 event code 0-15.
fn signal_digit(value: &str) -> Option<char> {
    let value = value.trim();
    let mut chars = value.chars();
    if let (Some(only), None) = (chars.next(), chars.next()) {
        return event_from_digit(only).and_then(digit_from_event);
    }
    if value.len() <= 2 && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u8>().ok().and_then(digit_from_event);
    }
    None
}

fn quoted(text: &str) -> String {
    text.chars().take(MAX_QUOTED_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "application/dtmf-relay";

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(
            parse_info_dtmf(RELAY, b"Signal=5\r\nDuration=160\r\n"),
            Ok('5')
        );
        assert_eq!(parse_info_dtmf(RELAY, b"Signal=5\nDuration=160"), Ok('5'));
        assert_eq!(
            parse_info_dtmf(RELAY, b"Duration=250\r\nSignal=9\r\n"),
            Ok('9')
        );
        assert_eq!(parse_info_dtmf(RELAY, b"signal=1\r\nduration=100"), Ok('1'));
        assert_eq!(parse_info_dtmf(RELAY, b"SIGNAL = 0 \r\n"), Ok('0'));
        assert_eq!(
            parse_info_dtmf(RELAY, b"Signal= *\r\nDuration=160"),
            Ok('*')
        );
        assert_eq!(parse_info_dtmf(RELAY, b"Signal=#\r\nDuration=160"), Ok('#'));
        assert_eq!(
            parse_info_dtmf(RELAY, b"Signal=10\r\nDuration=160"),
            Ok('*')
        );
        assert_eq!(
            parse_info_dtmf(RELAY, b"Signal=11\r\nDuration=160"),
            Ok('#')
        );
        assert_eq!(parse_info_dtmf(RELAY, b"Signal=12"), Ok('A'));
        assert_eq!(parse_info_dtmf(RELAY, b"Signal=d"), Ok('D'));
        assert_eq!(parse_info_dtmf(RELAY, b"Signal=05"), Ok('5'));
    }

    #[test]
    fn dtmf_bodies() {
        assert_eq!(parse_info_dtmf("application/dtmf", b"5"), Ok('5'));
        assert_eq!(parse_info_dtmf("application/dtmf", b"#\r\n"), Ok('#'));
        assert_eq!(parse_info_dtmf("application/dtmf", b" 11 "), Ok('#'));
        assert_eq!(parse_info_dtmf("application/dtmf", b"10"), Ok('*'));
        assert_eq!(parse_info_dtmf("application/dtmf", b"B"), Ok('B'));
    }

    #[test]
    fn content_type_params_and_case_are_ignored() {
        let body = b"Signal=7\r\nDuration=160";
        assert_eq!(parse_info_dtmf("Application/DTMF-Relay", body), Ok('7'));
        assert_eq!(
            parse_info_dtmf(" application/dtmf-relay ; charset=utf-8", body),
            Ok('7')
        );
        assert_eq!(parse_info_dtmf("APPLICATION/DTMF;x=1", b"3"), Ok('3'));
    }

    #[test]
    fn rejects_what_is_not_dtmf() {
        assert_eq!(
            parse_info_dtmf("application/sdp", b"v=0"),
            Err(DtmfInfoError::UnsupportedContentType {
                content_type: "application/sdp".into()
            })
        );
        assert!(matches!(
            parse_info_dtmf("application/dtmf-relayx", b"Signal=1"),
            Err(DtmfInfoError::UnsupportedContentType { .. })
        ));
        assert!(matches!(
            parse_info_dtmf("", b"Signal=1"),
            Err(DtmfInfoError::UnsupportedContentType { .. })
        ));
        assert_eq!(
            parse_info_dtmf(RELAY, b"Duration=160"),
            Err(DtmfInfoError::MissingSignal)
        );
        assert_eq!(
            parse_info_dtmf(RELAY, b""),
            Err(DtmfInfoError::MissingSignal)
        );
        for (body, value) in [
            (&b"Signal=16"[..], "16"),
            (b"Signal=", ""),
            (b"Signal=55", "55"),
            (b"Signal=E", "E"),
            (b"Signal=12345", "12345"),
            (b"Signal=-1", "-1"),
        ] {
            assert_eq!(
                parse_info_dtmf(RELAY, body),
                Err(DtmfInfoError::InvalidSignal {
                    value: value.into()
                }),
                "{value}"
            );
        }
        assert_eq!(
            parse_info_dtmf(RELAY, &[b'S', 0xff, 0xfe]),
            Err(DtmfInfoError::BodyNotUtf8)
        );
        assert!(matches!(
            parse_info_dtmf("application/dtmf", b""),
            Err(DtmfInfoError::InvalidSignal { .. })
        ));
    }

    #[test]
    fn error_text_is_bounded() {
        let long = format!("Signal={}", "9".repeat(10_000));
        match parse_info_dtmf(RELAY, long.as_bytes()) {
            Err(DtmfInfoError::InvalidSignal { value }) => assert_eq!(value.len(), MAX_QUOTED_LEN),
            other => panic!("unexpected {other:?}"),
        }
    }
}
