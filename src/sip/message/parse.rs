//! Datagram parsing: normalising what rsip cannot read (compact names, folding, bare LF,
//! LWS, multi-value Via) and the errors a message can be rejected with.

use std::borrow::Cow;

use rsip::SipMessage;

use super::syntax::{
    expand_compact_name, is_digits, is_token, snippet, uri_scheme, ADDRESS_HEADERS,
    ADDRESS_SEPARATORS, VIA_SEPARATORS, WSP,
};
use super::validate::validate;

/// Why bytes could not be accepted as a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but line breaks (e.g. a CRLF keep-alive): drop silently.
    #[error("no SIP message in input (empty or only line breaks)")]
    Empty,
    #[error("header section is not terminated by an empty line")]
    UnterminatedHead,
    #[error("header section is not valid UTF-8 (byte {offset})")]
    NonUtf8Head { offset: usize },
    #[error("bare CR inside header line {line}")]
    BareCarriageReturn { line: usize },
    #[error("malformed start line {0:?}")]
    BadStartLine(String),
    /// Answer 505.
    #[error("unsupported SIP version {0:?}")]
    UnsupportedVersion(String),
    /// Answer 405 with Allow: a syntactically valid method this stack (and rsip) does not know.
    #[error("unsupported method {0:?}")]
    UnsupportedMethod(String),
    /// Answer 416.
    #[error("unsupported Request-URI scheme {0:?}")]
    UnsupportedUriScheme(String),
    #[error("malformed header line {0:?}")]
    BadHeaderLine(String),
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    #[error("invalid {name} header value {value:?}")]
    InvalidHeader { name: &'static str, value: String },
    #[error("CSeq method {cseq_method:?} does not match request method {request_method:?}")]
    CSeqMethodMismatch {
        request_method: String,
        cseq_method: String,
    },
    /// Content-Length promises more bytes than the datagram holds (RFC 3261 §18.3: answer 400).
    #[error("Content-Length {declared} exceeds the {received} body bytes received")]
    BodyTruncated { declared: usize, received: usize },
    #[error("rsip rejected the message: {0}")]
    Rsip(String),
}

impl ParseError {
    /// The status code a UAS should answer a request that failed this way with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::UnsupportedVersion(_) => 505,
            // The hotline's contract is 405 + Allow for any method it does not serve.
            Self::UnsupportedMethod(_) => 405,
            Self::UnsupportedUriScheme(_) => 416,
            _ => 400,
        }
    }

    /// A short reason phrase for that response (never contains CR/LF).
    pub fn reason_phrase(&self) -> String {
        match self {
            Self::UnsupportedVersion(_) => "Version Not Supported".to_owned(),
            Self::UnsupportedMethod(_) => "Method Not Allowed".to_owned(),
            Self::UnsupportedUriScheme(_) => "Unsupported URI Scheme".to_owned(),
            Self::MissingHeader(name) => format!("Missing {name}"),
            Self::DuplicateHeader(name) => format!("Duplicate {name}"),
            Self::InvalidHeader { name, .. } => format!("Invalid {name}"),
            Self::CSeqMethodMismatch { .. } => "CSeq Method Mismatch".to_owned(),
            Self::BodyTruncated { .. } => "Content-Length Exceeds Body".to_owned(),
            _ => "Bad Request".to_owned(),
        }
    }
}

/// Parses one UDP datagram (or one stream frame) into an rsip message.
///
/// Normalises what rsip cannot read (compact names, folding, bare LF, leading CRLFs, LWS in
/// Via/address headers, `Via: a, b` → two Via headers in order), applies Content-Length
/// (RFC 3261 §18.3: longer than the body → error, shorter → body truncated, absent → rest of
/// the datagram), and checks Via/From/To/Call-ID/CSeq presence and syntax, single-valued
/// headers, Max-Forwards, and the CSeq method. The body is kept as raw bytes.
/// When the head already is in canonical form it is handed to rsip without copying.
pub fn parse_datagram(bytes: &[u8]) -> Result<SipMessage, ParseError> {
    let message = skip_leading_line_breaks(bytes);
    if message.is_empty() {
        return Err(ParseError::Empty);
    }
    let split = split_head(message)?;
    let head_text = std::str::from_utf8(split.head).map_err(|error| ParseError::NonUtf8Head {
        offset: (bytes.len() - message.len()) + error.valid_up_to(),
    })?;
    let head = parse_head(head_text, split.canonical_blank_line)?;
    let facts = validate(&head)?;

    let body = match facts.content_length {
        Some(declared) => split
            .body
            .get(..declared)
            .ok_or(ParseError::BodyTruncated {
                declared,
                received: split.body.len(),
            })?,
        None => split.body,
    };

    let rsip_input: Cow<'_, [u8]> = if head.canonical {
        Cow::Borrowed(split.head_with_blank_line)
    } else {
        Cow::Owned(render_head(&head))
    };
    let mut parsed = SipMessage::try_from(rsip_input.as_ref())
        .map_err(|error| ParseError::Rsip(snippet(&error.to_string())))?;
    *parsed.body_mut() = body.to_vec();
    Ok(parsed)
}

pub(super) fn skip_leading_line_breaks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| !matches!(byte, b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

pub(super) struct HeadSplit<'a> {
    /// Start line and header lines, each with its line terminator; no blank line.
    pub(super) head: &'a [u8],
    /// `head` plus the blank line, valid to hand to rsip when `canonical_blank_line`.
    head_with_blank_line: &'a [u8],
    body: &'a [u8],
    /// The head ended with a CRLF blank line (not bare LF, not end of datagram).
    pub(super) canonical_blank_line: bool,
}

pub(super) fn split_head(message: &[u8]) -> Result<HeadSplit<'_>, ParseError> {
    let mut line_start = 0;
    loop {
        let rest = message.get(line_start..).unwrap_or_default();
        let Some(offset) = rest.iter().position(|&byte| byte == b'\n') else {
            if rest.is_empty() {
                // Lenient: the datagram ends right after a header line, without a blank line.
                return Ok(HeadSplit {
                    head: message,
                    head_with_blank_line: message,
                    body: &[],
                    canonical_blank_line: false,
                });
            }
            return Err(ParseError::UnterminatedHead);
        };
        let line_end = line_start + offset;
        let line = message.get(line_start..line_end).unwrap_or_default();
        if line_start > 0 && (line.is_empty() || line == b"\r") {
            let (head_with_blank_line, body) = message.split_at(line_end + 1);
            return Ok(HeadSplit {
                head: message.get(..line_start).unwrap_or_default(),
                head_with_blank_line,
                body,
                canonical_blank_line: line == b"\r",
            });
        }
        line_start = line_end + 1;
    }
}

#[derive(Debug)]
pub(super) enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { code: &'a str, reason: &'a str },
}

#[derive(Debug)]
struct Field<'a> {
    name: &'a str,
    value: Cow<'a, str>,
}

#[derive(Debug)]
pub(super) struct Head<'a> {
    pub(super) start: StartLine<'a>,
    fields: Vec<Field<'a>>,
    /// Rendering `start` and `fields` reproduces the raw head byte for byte.
    pub(super) canonical: bool,
}

impl Head<'_> {
    pub(super) fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.fields
            .iter()
            .filter(move |field| field.name.eq_ignore_ascii_case(name))
            .map(|field| field.value.as_ref())
    }
}

/// One header as written: its first physical line and any folded continuation lines.
struct RawField<'a> {
    line: &'a str,
    continuations: Vec<&'a str>,
    crlf_terminated: bool,
}

pub(super) fn parse_head(head: &str, canonical_blank_line: bool) -> Result<Head<'_>, ParseError> {
    let mut lines = head.split_inclusive('\n').enumerate().map(|(index, raw)| {
        let (text, crlf) = match raw.strip_suffix("\r\n") {
            Some(text) => (text, true),
            None => (raw.strip_suffix('\n').unwrap_or(raw), false),
        };
        if text.contains('\r') {
            Err(ParseError::BareCarriageReturn { line: index + 1 })
        } else {
            Ok((text, crlf))
        }
    });

    let (start_text, start_crlf) = lines.next().ok_or(ParseError::Empty)??;
    let (start, start_canonical) = parse_start_line(start_text)?;

    let mut raw_fields: Vec<RawField<'_>> = Vec::new();
    for line in lines {
        let (text, crlf) = line?;
        if text.starts_with(WSP) {
            let Some(field) = raw_fields.last_mut() else {
                return Err(ParseError::BadHeaderLine(snippet(text)));
            };
            field.continuations.push(text);
            field.crlf_terminated = false;
        } else {
            raw_fields.push(RawField {
                line: text,
                continuations: Vec::new(),
                crlf_terminated: crlf,
            });
        }
    }

    let mut canonical = canonical_blank_line && start_canonical && start_crlf;
    let mut fields = Vec::with_capacity(raw_fields.len() + 2);
    for raw in &raw_fields {
        canonical &= normalise_field(raw, &mut fields)?;
    }
    Ok(Head {
        start,
        fields,
        canonical,
    })
}

/// Parses the start line; the flag says whether it is already in canonical form.
fn parse_start_line(line: &str) -> Result<(StartLine<'_>, bool), ParseError> {
    let is_response = line
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("SIP/"));
    if is_response {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        let reason = parts.next();
        check_version(version, line)?;
        let code_valid = code.len() == 3
            && code.bytes().all(|byte| byte.is_ascii_digit())
            && code.starts_with(|c: char| ('1'..='6').contains(&c));
        if !code_valid {
            return Err(ParseError::BadStartLine(snippet(line)));
        }
        let canonical = version == "SIP/2.0" && reason.is_some();
        let reason = reason.unwrap_or_default();
        return Ok((StartLine::Response { code, reason }, canonical));
    }

    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine(snippet(line)));
    };
    if !is_token(method) || uri.is_empty() {
        return Err(ParseError::BadStartLine(snippet(line)));
    }
    check_version(version, line)?;
    if uri_scheme(uri).is_none() || uri.contains(['<', '>', '"', '\t']) {
        return Err(ParseError::BadStartLine(snippet(line)));
    }
    let canonical = version == "SIP/2.0" && matches!(rsip_request_uri(uri), Cow::Borrowed(_));
    Ok((StartLine::Request { method, uri }, canonical))
}

/// rsip 0.4 cannot read `;` in a SIP URI's user part, which RFC 3261 allows (RFC 4475
/// semiuri): it gets `;` and `=` there escaped, an equivalent URI (RFC 3261 §19.1.4).
fn rsip_request_uri(uri: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Cow::Borrowed(uri);
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(';') => Cow::Owned(format!(
            "{scheme}:{}@{host}",
            user.replace(';', "%3B").replace('=', "%3D")
        )),
        _ => Cow::Borrowed(uri),
    }
}

fn check_version(version: &str, line: &str) -> Result<(), ParseError> {
    if version.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let numbers = version.get(4..).unwrap_or_default();
    let looks_like_version = version.len() > 4
        && version
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("SIP/"))
        && numbers
            .split_once('.')
            .is_some_and(|(major, minor)| is_digits(major) && is_digits(minor));
    if looks_like_version {
        Err(ParseError::UnsupportedVersion(snippet(version)))
    } else {
        Err(ParseError::BadStartLine(snippet(line)))
    }
}
/// Turns one raw header into normalised fields (several for a multi-value Via).
/// Returns whether the raw line was already exactly `Name: value` + CRLF.
fn normalise_field<'a>(
    raw: &RawField<'a>,
    fields: &mut Vec<Field<'a>>,
) -> Result<bool, ParseError> {
    let Some((raw_name, first_value)) = raw.line.split_once(':') else {
        return Err(ParseError::BadHeaderLine(snippet(raw.line)));
    };
    let written_name = raw_name.trim_end_matches(WSP);
    if !is_token(written_name) {
        return Err(ParseError::BadHeaderLine(snippet(raw.line)));
    }
    let name = expand_compact_name(written_name).unwrap_or(written_name);

    let first_value = first_value.trim_matches(WSP);
    let unfolded: Cow<'a, str> = if raw.continuations.is_empty() {
        Cow::Borrowed(first_value)
    } else {
        // RFC 3261 §7.3.1: a folded line break and its surrounding whitespace equal one SP.
        let pieces = std::iter::once(first_value)
            .chain(raw.continuations.iter().map(|line| line.trim_matches(WSP)))
            .filter(|piece| !piece.is_empty());
        Cow::Owned(pieces.collect::<Vec<_>>().join(" "))
    };

    let is_via = name.eq_ignore_ascii_case("Via");
    let value = if is_via {
        tighten_separators(unfolded, VIA_SEPARATORS)
    } else if ADDRESS_HEADERS
        .iter()
        .any(|address| name.eq_ignore_ascii_case(address))
    {
        tighten_separators(unfolded, ADDRESS_SEPARATORS)
    } else if name.eq_ignore_ascii_case("CSeq") {
        tighten_separators(unfolded, &[])
    } else {
        unfolded
    };

    let renders_identically = raw.crlf_terminated
        && raw.continuations.is_empty()
        && matches!(value, Cow::Borrowed(_))
        && raw.line.len() == name.len() + 2 + value.len()
        && raw.line.starts_with(name)
        && raw.line.get(name.len()..name.len() + 2) == Some(": ")
        && raw.line.ends_with(value.as_ref());

    if is_via {
        let elements = split_top_level_commas(value);
        let single = elements.len() == 1;
        fields.extend(elements.into_iter().map(|value| Field { name, value }));
        Ok(renders_identically && single)
    } else {
        fields.push(Field { name, value });
        Ok(renders_identically)
    }
}

/// Removes LWS around `separators` and collapses other LWS runs to one SP, leaving quoted
/// strings and `<...>` URIs untouched (RFC 3261 §7.3.1 allows both rewrites).
fn tighten_separators<'a>(value: Cow<'a, str>, separators: &[char]) -> Cow<'a, str> {
    let text = value.as_ref();
    let mut out = String::with_capacity(text.len());
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    let mut pending_space = false;
    let mut after_separator = true;
    for c in text.chars() {
        if in_quotes {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        if in_angle {
            out.push(c);
            in_angle = c != '>';
            continue;
        }
        if c == ' ' || c == '\t' {
            pending_space = true;
            continue;
        }
        if separators.contains(&c) {
            out.push(c);
            pending_space = false;
            after_separator = true;
            continue;
        }
        if pending_space && !after_separator {
            out.push(' ');
        }
        pending_space = false;
        after_separator = false;
        in_quotes = c == '"';
        in_angle = c == '<';
        out.push(c);
    }
    if out == text {
        value
    } else {
        Cow::Owned(out)
    }
}

/// Splits a list value at commas outside quoted strings and `<...>`.
fn split_top_level_commas(value: Cow<'_, str>) -> Vec<Cow<'_, str>> {
    let text = value.as_ref();
    let mut bounds = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    for (index, c) in text.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' if !in_angle => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                bounds.push((start, index));
                start = index + 1;
            }
            _ => {}
        }
    }
    bounds.push((start, text.len()));
    if bounds.len() == 1 {
        return vec![value];
    }
    bounds
        .into_iter()
        .map(|(from, to)| {
            let element = text.get(from..to).unwrap_or_default().trim_matches(WSP);
            Cow::Owned(element.to_owned())
        })
        .collect()
}

fn render_head(head: &Head<'_>) -> Vec<u8> {
    let size = 64
        + head
            .fields
            .iter()
            .map(|field| field.name.len() + field.value.len() + 4)
            .sum::<usize>();
    let mut out = String::with_capacity(size);
    match head.start {
        StartLine::Request { method, uri } => {
            out.push_str(method);
            out.push(' ');
            out.push_str(&rsip_request_uri(uri));
            out.push_str(" SIP/2.0\r\n");
        }
        StartLine::Response { code, reason } => {
            out.push_str("SIP/2.0 ");
            out.push_str(code);
            out.push(' ');
            out.push_str(reason);
            out.push_str("\r\n");
        }
    }
    for field in &head.fields {
        out.push_str(field.name);
        out.push_str(": ");
        out.push_str(&field.value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}
