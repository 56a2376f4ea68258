//! SIP message parsing and response building on top of rsip 0.4.
//!
//! Owns the wire-format work rsip skips: compact header names, header folding, bare-LF line
//! endings, leading CRLFs, multi-value Via lines and LWS around `;`/`=`/`/` (RFC 3261 §7.3),
//! datagram Content-Length handling (§18.3), mandatory-header checks (§8.1.1), robust
//! name-addr / parameter accessors, and responses: §8.2.6 ones from a parsed request, and
//! lenient 4xx/5xx ones built from raw bytes that failed to parse.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use rsip::headers::UntypedHeader;
use rsip::message::HasHeaders;
use rsip::{Header, Method, SipMessage};

#[cfg(test)]
mod tests;

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

/// Compact header forms (RFC 3261 §7.3.3 and the IANA SIP header registry).
const COMPACT_FORMS: [(u8, &str); 20] = [
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Headers holding name-addr / addr-spec values, whose LWS around `;`, `=` and `,` we remove.
const ADDRESS_HEADERS: [&str; 10] = [
    "From",
    "To",
    "Contact",
    "Route",
    "Record-Route",
    "Reply-To",
    "Refer-To",
    "Referred-By",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
];

const ADDRESS_SEPARATORS: &[char] = &[';', '=', ','];
/// Via also allows LWS around the `/` of sent-protocol and the `:` of sent-by.
const VIA_SEPARATORS: &[char] = &[';', '=', ',', '/', ':'];
const WSP: &[char] = &[' ', '\t'];

/// The long form of a single-letter compact header name, if `name` is one.
pub fn expand_compact_name(name: &str) -> Option<&'static str> {
    match name.as_bytes() {
        [letter] => {
            let letter = letter.to_ascii_lowercase();
            COMPACT_FORMS
                .iter()
                .find(|(compact, _)| *compact == letter)
                .map(|(_, long)| *long)
        }
        _ => None,
    }
}

/// Whether a raw header name (any case, long or compact form) denotes `canonical`.
pub(crate) fn header_name_is(raw: &[u8], canonical: &str) -> bool {
    if raw.eq_ignore_ascii_case(canonical.as_bytes()) {
        return true;
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(expand_compact_name)
        .is_some_and(|long| long.eq_ignore_ascii_case(canonical))
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_token_char)
}

fn is_token_byte(byte: u8) -> bool {
    is_token_char(char::from(byte))
}

/// Shortens attacker-controlled text before it lands in an error message or log line.
fn snippet(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

fn invalid(name: &'static str, value: &str) -> ParseError {
    ParseError::InvalidHeader {
        name,
        value: snippet(value),
    }
}

/// rsip's `Method` for an exact (case-sensitive, RFC 3261 §7.1) method token.
pub fn method_from_token(token: &str) -> Option<Method> {
    Some(match token {
        "ACK" => Method::Ack,
        "BYE" => Method::Bye,
        "CANCEL" => Method::Cancel,
        "INFO" => Method::Info,
        "INVITE" => Method::Invite,
        "MESSAGE" => Method::Message,
        "NOTIFY" => Method::Notify,
        "OPTIONS" => Method::Options,
        "PRACK" => Method::PRack,
        "PUBLISH" => Method::Publish,
        "REFER" => Method::Refer,
        "REGISTER" => Method::Register,
        "SUBSCRIBE" => Method::Subscribe,
        "UPDATE" => Method::Update,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Datagram parsing
// ---------------------------------------------------------------------------------------------

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

fn skip_leading_line_breaks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| !matches!(byte, b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

struct HeadSplit<'a> {
    /// Start line and header lines, each with its line terminator; no blank line.
    head: &'a [u8],
    /// `head` plus the blank line, valid to hand to rsip when `canonical_blank_line`.
    head_with_blank_line: &'a [u8],
    body: &'a [u8],
    /// The head ended with a CRLF blank line (not bare LF, not end of datagram).
    canonical_blank_line: bool,
}

fn split_head(message: &[u8]) -> Result<HeadSplit<'_>, ParseError> {
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
enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { code: &'a str, reason: &'a str },
}

#[derive(Debug)]
struct Field<'a> {
    name: &'a str,
    value: Cow<'a, str>,
}

#[derive(Debug)]
struct Head<'a> {
    start: StartLine<'a>,
    fields: Vec<Field<'a>>,
    /// Rendering `start` and `fields` reproduces the raw head byte for byte.
    canonical: bool,
}

impl Head<'_> {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
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

fn parse_head(head: &str, canonical_blank_line: bool) -> Result<Head<'_>, ParseError> {
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
    Ok((StartLine::Request { method, uri }, version == "SIP/2.0"))
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

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// The scheme of a URI (`ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":"`), if it has one.
fn uri_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first_is_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_valid = chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (first_is_alpha && rest_valid).then_some(scheme)
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
            out.push_str(uri);
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

/// What validation learned that parsing still needs.
struct Facts {
    content_length: Option<usize>,
}

fn validate(head: &Head<'_>) -> Result<Facts, ParseError> {
    let vias: Vec<&str> = head.values("Via").collect();
    if vias.is_empty() {
        return Err(ParseError::MissingHeader("Via"));
    }
    let from = single_value(head, "From")?.ok_or(ParseError::MissingHeader("From"))?;
    let to = single_value(head, "To")?.ok_or(ParseError::MissingHeader("To"))?;
    let call_id = single_value(head, "Call-ID")?.ok_or(ParseError::MissingHeader("Call-ID"))?;
    let cseq = single_value(head, "CSeq")?.ok_or(ParseError::MissingHeader("CSeq"))?;

    if call_id.is_empty() || call_id.contains(WSP) {
        return Err(invalid("Call-ID", call_id));
    }
    let (_, cseq_method) = parse_cseq(cseq).ok_or_else(|| invalid("CSeq", cseq))?;
    if let StartLine::Request { method, .. } = head.start {
        if method != cseq_method {
            return Err(ParseError::CSeqMethodMismatch {
                request_method: snippet(method),
                cseq_method: snippet(cseq_method),
            });
        }
    }
    if let Some(max_forwards) = single_value(head, "Max-Forwards")? {
        if parse_max_forwards(max_forwards).is_none() {
            return Err(invalid("Max-Forwards", max_forwards));
        }
    }
    let content_length = match single_value(head, "Content-Length")? {
        Some(text) if is_digits(text) => Some(
            text.parse::<usize>()
                .map_err(|_| invalid("Content-Length", text))?,
        ),
        Some(text) => return Err(invalid("Content-Length", text)),
        None => None,
    };

    if let Some(bad) = vias.iter().find(|via| !is_valid_via(via)) {
        return Err(invalid("Via", bad));
    }
    if !is_valid_address_list(from, true) {
        return Err(invalid("From", from));
    }
    if !is_valid_address_list(to, true) {
        return Err(invalid("To", to));
    }
    if let Some(bad) = head
        .values("Contact")
        .find(|contact| !is_valid_contact(contact))
    {
        return Err(invalid("Contact", bad));
    }

    if let StartLine::Request { method, uri } = head.start {
        let scheme = uri_scheme(uri).unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Err(ParseError::UnsupportedUriScheme(snippet(scheme)));
        }
        if method_from_token(method).is_none() {
            return Err(ParseError::UnsupportedMethod(snippet(method)));
        }
    }
    Ok(Facts { content_length })
}

/// The value of a header that must not repeat (RFC 4475 multi01 and mcl01 expect a 400).
fn single_value<'h>(head: &'h Head<'_>, name: &'static str) -> Result<Option<&'h str>, ParseError> {
    let mut values = head.values(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(ParseError::DuplicateHeader(name));
    }
    Ok(first)
}

/// `1*DIGIT LWS Method`, the number below 2^31 (RFC 3261 §8.1.1.5).
fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let (number, method) = value.trim_matches(WSP).split_once(WSP)?;
    let method = method.trim_matches(WSP);
    if !is_digits(number) || !is_token(method) {
        return None;
    }
    let number = number.parse::<u32>().ok().filter(|n| *n < 1 << 31)?;
    Some((number, method))
}

/// Max-Forwards is `1*DIGIT` in the range 0–255 (RFC 3261 §20.22).
fn parse_max_forwards(value: &str) -> Option<u32> {
    let value = value.trim_matches(WSP);
    if !is_digits(value) {
        return None;
    }
    value.parse::<u32>().ok().filter(|hops| *hops <= 255)
}

/// `SIP/2.0/transport sent-by *(;param)` — enough structure to route a response.
fn is_valid_via(element: &str) -> bool {
    let Some((protocol, rest)) = element.split_once(' ') else {
        return false;
    };
    let mut protocol_parts = protocol.split('/');
    let protocol_valid = matches!(
        (protocol_parts.next(), protocol_parts.next(), protocol_parts.next(), protocol_parts.next()),
        (Some(name), Some("2.0"), Some(transport), None)
            if name.eq_ignore_ascii_case("SIP") && is_token(transport)
    );
    let (sent_by, params) = match rest.find(';') {
        Some(index) => rest.split_at(index),
        None => (rest, ""),
    };
    protocol_valid
        && !sent_by.is_empty()
        && !sent_by.contains([' ', '\t', ',', '"'])
        && matches!(split_params(params), Ok((_, None)))
}

fn is_valid_contact(value: &str) -> bool {
    value == "*" || is_valid_address_list(value, false)
}

fn is_valid_address_list(value: &str, single: bool) -> bool {
    let mut rest = value;
    loop {
        let Some((address, next)) = parse_address(rest) else {
            return false;
        };
        if !address.is_well_formed() {
            return false;
        }
        match next {
            None => return true,
            Some(_) if single => return false,
            Some(next) => rest = next,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// name-addr / addr-spec and parameters
// ---------------------------------------------------------------------------------------------

/// One element of a From/To/Contact/Route-style value, split syntactically.
#[derive(Debug, PartialEq, Eq)]
struct Address<'a> {
    display_name: Option<&'a str>,
    uri: &'a str,
    /// Header parameters as written, starting at the first `;` (or empty).
    params: &'a str,
    bracketed: bool,
}

impl Address<'_> {
    fn is_well_formed(&self) -> bool {
        let uri_valid = uri_scheme(self.uri).is_some()
            && !self.uri.contains([' ', '\t', '<', '>', '"'])
            // RFC 3261 §20.10: an addr-spec with `?` or `,` must be bracketed.
            && (self.bracketed || !self.uri.contains(['?', ',']));
        let display_valid = match self.display_name {
            None => true,
            Some(quoted) if quoted.starts_with('"') => true,
            Some(tokens) => tokens.split(WSP).filter(|w| !w.is_empty()).all(is_token),
        };
        uri_valid && display_valid
    }
}

/// Splits the first address of `value`; also returns the text after the comma that follows
/// it, if any. `None` when the syntax is broken (unbalanced quotes or brackets, junk).
fn parse_address(value: &str) -> Option<(Address<'_>, Option<&str>)> {
    let text = value.trim_start_matches(WSP);
    let (display_name, rest) = if text.starts_with('"') {
        let (quoted, rest) = text.split_at(quoted_string_end(text)?);
        (Some(quoted), rest.trim_start_matches(WSP))
    } else {
        match text.find(['<', ';', ',', '"']) {
            Some(index) if text.as_bytes().get(index) == Some(&b'<') => {
                let (name, rest) = text.split_at(index);
                let name = name.trim_end_matches(WSP);
                ((!name.is_empty()).then_some(name), rest)
            }
            _ => (None, text),
        }
    };

    if let Some(inside) = rest.strip_prefix('<') {
        let (uri, after) = inside.split_once('>')?;
        let (params, next) = split_params(after).ok()?;
        let address = Address {
            display_name,
            uri,
            params,
            bracketed: true,
        };
        return Some((address, next));
    }
    if display_name.is_some() {
        return None;
    }
    let uri_end = rest.find([';', ',']).unwrap_or(rest.len());
    let (uri, after) = rest.split_at(uri_end);
    let (params, next) = split_params(after).ok()?;
    let address = Address {
        display_name: None,
        uri: uri.trim_end_matches(WSP),
        params,
        bracketed: false,
    };
    Some((address, next))
}

/// Byte index just past the closing quote of the quoted string `text` starts with.
fn quoted_string_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut index = 1;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

#[derive(Debug)]
struct MalformedParams;

type Param<'a> = (&'a str, Option<&'a str>);

/// Reads one `;name[=value]` at the start of `text`; `None` at the end of the list
/// (end of text or a `,`).
fn next_param(text: &str) -> Result<Option<(Param<'_>, &str)>, MalformedParams> {
    let text = text.trim_start_matches(WSP);
    if text.is_empty() || text.starts_with(',') {
        return Ok(None);
    }
    let text = text
        .strip_prefix(';')
        .ok_or(MalformedParams)?
        .trim_start_matches(WSP);
    let name_end = text.find(|c| !is_token_char(c)).unwrap_or(text.len());
    let (name, rest) = text.split_at(name_end);
    if name.is_empty() {
        return Err(MalformedParams);
    }
    let rest = rest.trim_start_matches(WSP);
    let Some(value_text) = rest.strip_prefix('=') else {
        return Ok(Some(((name, None), rest)));
    };
    let value_text = value_text.trim_start_matches(WSP);
    let value_end = if value_text.starts_with('"') {
        quoted_string_end(value_text).ok_or(MalformedParams)?
    } else {
        value_text
            .find([';', ',', ' ', '\t', '"', '<', '>'])
            .unwrap_or(value_text.len())
    };
    let (value, rest) = value_text.split_at(value_end);
    if value.is_empty() {
        return Err(MalformedParams);
    }
    Ok(Some(((name, Some(value)), rest)))
}

/// Splits a parameter list off the front of `text`: (the params as written, the text after
/// a following comma if there is one).
fn split_params(text: &str) -> Result<(&str, Option<&str>), MalformedParams> {
    let mut rest = text;
    while let Some((_, after)) = next_param(rest)? {
        rest = after;
    }
    let consumed = text.len() - rest.len();
    let params = text.get(..consumed).unwrap_or_default();
    let rest = rest.trim_start_matches(WSP);
    Ok((params, rest.strip_prefix(',')))
}

fn params(text: &str) -> impl Iterator<Item = Param<'_>> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let (param, after) = next_param(rest).ok()??;
        rest = after;
        Some(param)
    })
}

/// Looks a parameter up by name (case-insensitive): `Some(None)` for a flag parameter.
fn find_param<'a>(params_text: &'a str, name: &str) -> Option<Option<&'a str>> {
    params(params_text)
        .find(|(param, _)| param.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Strips the surrounding quotes of a quoted-string parameter value (escapes are kept).
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

// ---------------------------------------------------------------------------------------------
// Accessors on parsed messages
// ---------------------------------------------------------------------------------------------

/// The RFC 3261 name and the raw value of any rsip header.
fn name_and_value(header: &Header) -> (&str, &str) {
    macro_rules! by_variant {
        ($($variant:ident => $name:literal),* $(,)?) => {
            match header {
                $(Header::$variant(inner) => ($name, inner.value()),)*
                Header::Other(name, value) => (name.as_str(), value.as_str()),
            }
        };
    }
    by_variant!(
        Accept => "Accept",
        AcceptEncoding => "Accept-Encoding",
        AcceptLanguage => "Accept-Language",
        AlertInfo => "Alert-Info",
        Allow => "Allow",
        AuthenticationInfo => "Authentication-Info",
        Authorization => "Authorization",
        CSeq => "CSeq",
        CallId => "Call-ID",
        CallInfo => "Call-Info",
        Contact => "Contact",
        ContentDisposition => "Content-Disposition",
        ContentEncoding => "Content-Encoding",
        ContentLanguage => "Content-Language",
        ContentLength => "Content-Length",
        ContentType => "Content-Type",
        Date => "Date",
        ErrorInfo => "Error-Info",
        Event => "Event",
        Expires => "Expires",
        From => "From",
        InReplyTo => "In-Reply-To",
        MaxForwards => "Max-Forwards",
        MimeVersion => "MIME-Version",
        MinExpires => "Min-Expires",
        Organization => "Organization",
        Priority => "Priority",
        ProxyAuthenticate => "Proxy-Authenticate",
        ProxyAuthorization => "Proxy-Authorization",
        ProxyRequire => "Proxy-Require",
        RecordRoute => "Record-Route",
        ReplyTo => "Reply-To",
        Require => "Require",
        RetryAfter => "Retry-After",
        Route => "Route",
        Server => "Server",
        Subject => "Subject",
        SubscriptionState => "Subscription-State",
        Supported => "Supported",
        Timestamp => "Timestamp",
        To => "To",
        Unsupported => "Unsupported",
        UserAgent => "User-Agent",
        Via => "Via",
        Warning => "Warning",
        WwwAuthenticate => "WWW-Authenticate",
    )
}

/// All values of header `name` (case-insensitive, compact forms accepted), in message order,
/// whether rsip typed the header or kept it as `Header::Other`.
pub fn header_values<'m>(msg: &'m impl HasHeaders, name: &str) -> Vec<&'m str> {
    let wanted = expand_compact_name(name).unwrap_or(name);
    msg.headers()
        .iter()
        .map(name_and_value)
        .filter(|(header_name, _)| header_name.eq_ignore_ascii_case(wanted))
        .map(|(_, value)| value)
        .collect()
}

/// The first value of header `name` (case-insensitive, compact forms accepted).
pub fn header_value<'m>(msg: &'m impl HasHeaders, name: &str) -> Option<&'m str> {
    let wanted = expand_compact_name(name).unwrap_or(name);
    msg.headers()
        .iter()
        .map(name_and_value)
        .find(|(header_name, _)| header_name.eq_ignore_ascii_case(wanted))
        .map(|(_, value)| value)
}

fn address_param<'m>(msg: &'m impl HasHeaders, header: &str, param: &str) -> Option<&'m str> {
    let (address, _) = parse_address(header_value(msg, header)?)?;
    find_param(address.params, param).flatten().map(unquote)
}

/// The `tag` parameter of the From header.
pub fn from_tag(msg: &impl HasHeaders) -> Option<&str> {
    address_param(msg, "From", "tag")
}

/// The `tag` parameter of the To header (`None` outside a dialog).
pub fn to_tag(msg: &impl HasHeaders) -> Option<&str> {
    address_param(msg, "To", "tag")
}

pub fn call_id(msg: &impl HasHeaders) -> Option<&str> {
    header_value(msg, "Call-ID").map(|value| value.trim_matches(WSP))
}

/// CSeq number and method; `None` if absent, malformed, or an extension method.
pub fn cseq(msg: &impl HasHeaders) -> Option<(u32, Method)> {
    let (number, method) = parse_cseq(header_value(msg, "CSeq")?)?;
    Some((number, method_from_token(method)?))
}

/// The `branch` parameter of the topmost Via (the transaction key, RFC 3261 §17.2.3).
pub fn top_via_branch(msg: &impl HasHeaders) -> Option<&str> {
    let top = header_value(msg, "Via")?;
    let params_start = top.find(';')?;
    find_param(top.get(params_start..)?, "branch").flatten()
}

pub fn max_forwards(msg: &impl HasHeaders) -> Option<u32> {
    parse_max_forwards(header_value(msg, "Max-Forwards")?)
}

/// Option tags listed in all headers named `name` (Require, Supported, Proxy-Require, ...).
pub fn option_tags<'m>(msg: &'m impl HasHeaders, name: &str) -> Vec<&'m str> {
    header_values(msg, name)
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim_matches(WSP))
        .filter(|tag| !tag.is_empty())
        .collect()
}

/// Option tags the peer requires (RFC 3261 §20.32); a UAS rejects unknown ones with 420.
pub fn require(msg: &impl HasHeaders) -> Vec<&str> {
    option_tags(msg, "Require")
}

/// The first Contact address, as written (no rsip typed parsing involved).
fn first_contact(msg: &impl HasHeaders) -> Option<Address<'_>> {
    let value = header_value(msg, "Contact")?;
    if value.trim_matches(WSP) == "*" {
        return None;
    }
    parse_address(value).map(|(address, _)| address)
}

/// The URI of the first Contact, robust to quoted display names and quoted header
/// parameters (`+sip.instance="<urn:...>"`) that break rsip's typed Contact. URI headers
/// (`?...`) are dropped because rsip cannot represent them; non-SIP URIs give `None`.
pub fn contact_uri(msg: &impl HasHeaders) -> Option<rsip::Uri> {
    let address = first_contact(msg)?;
    let uri = address
        .uri
        .split_once('?')
        .map_or(address.uri, |(uri, _)| uri);
    let scheme = uri_scheme(uri)?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    rsip::Uri::try_from(uri).ok()
}

/// A header parameter of the first Contact (quotes stripped); `Some("")` for a flag.
pub fn contact_param<'m>(msg: &'m impl HasHeaders, name: &str) -> Option<&'m str> {
    let address = first_contact(msg)?;
    find_param(address.params, name).map(|value| value.map_or("", unquote))
}

/// The `expires` parameter of the first Contact, in seconds.
pub fn contact_expires(msg: &impl HasHeaders) -> Option<u32> {
    let value = contact_param(msg, "expires")?;
    if !is_digits(value) {
        return None;
    }
    value.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A response to `request` per RFC 3261 §8.2.6: all Via (in order), From, Call-ID, CSeq, To
/// (with `to_tag` added unless it already has one), Timestamp for 100, Content-Length: 0.
/// Dialog-creating responses also need Contact and Record-Route: the caller adds those.
pub fn response_for(
    request: &rsip::Request,
    status: rsip::StatusCode,
    to_tag: Option<&str>,
) -> rsip::Response {
    let is_trying = status.code() == 100;
    let mut headers: Vec<Header> = Vec::with_capacity(8);
    for header in request.headers.iter() {
        match header {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(header.clone());
            }
            Header::Timestamp(_) if is_trying => headers.push(header.clone()),
            Header::To(to) => headers.push(Header::To(to_with_tag(to, to_tag))),
            _ => {}
        }
    }
    headers.push(Header::ContentLength(
        rsip::headers::ContentLength::default(),
    ));
    rsip::Response {
        status_code: status,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

fn to_with_tag(to: &rsip::headers::To, tag: Option<&str>) -> rsip::headers::To {
    let value = to.value();
    let has_tag = parse_address(value)
        .is_some_and(|(address, _)| find_param(address.params, "tag").is_some());
    match tag {
        Some(tag) if !has_tag => {
            rsip::headers::To::new(format!("{};tag={tag}", value.trim_end_matches(WSP)))
        }
        _ => to.clone(),
    }
}

/// A `400` answer built leniently from raw bytes that failed to parse; see [`error_response`].
pub fn bad_request_response(raw: &[u8], reason: &str) -> Option<Vec<u8>> {
    error_response(raw, 400, reason, &[])
}

/// The answer [`ParseError::status_code`] recommends, built leniently from the raw bytes.
pub fn rejection_response(
    raw: &[u8],
    error: &ParseError,
    extra: &[(&str, &str)],
) -> Option<Vec<u8>> {
    error_response(raw, error.status_code(), &error.reason_phrase(), extra)
}

/// Builds `SIP/2.0 <status> <reason>` for raw bytes that look like a request other than ACK
/// and in which Via, From, To, Call-ID and CSeq lines can be found (any case, compact forms,
/// folding). Copies every Via line, From, To (adding a tag derived from the request so
/// retransmissions get the same one), Call-ID and CSeq, then `Content-Length: 0`.
/// `None` (drop the message) otherwise, or if `status` is not 400–699. `extra` headers (such as
/// Allow for a 405) are appended as given.
pub fn error_response(
    raw: &[u8],
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
) -> Option<Vec<u8>> {
    if !(400..=699).contains(&status) {
        return None;
    }
    let message = skip_leading_line_breaks(raw);
    let start_line = first_line(message);
    if !looks_like_request(start_line) {
        return None;
    }
    let fields = lenient_fields(message);
    let find = |name: &str| {
        fields
            .iter()
            .find(|field| header_name_is(field.name, name))
            .map(|field| field.value.as_ref())
    };
    let vias: Vec<&[u8]> = fields
        .iter()
        .filter(|field| header_name_is(field.name, "Via"))
        .map(|field| field.value.as_ref())
        .collect();
    let (from, to, call_id, cseq) = (find("From")?, find("To")?, find("Call-ID")?, find("CSeq")?);
    let top_via = *vias.first()?;
    let copied = || vias.iter().chain([&from, &to, &call_id, &cseq]);
    // A stray CR could split the header line at the receiver: refuse rather than echo it.
    if copied().any(|value| value.is_empty() || value.contains(&b'\r')) {
        return None;
    }

    let to_has_tag = parse_address(&String::from_utf8_lossy(to))
        .map(|(address, _)| find_param(address.params, "tag").is_some())
        .unwrap_or(false);
    let reason = sanitise_reason(reason, status);
    let mut out = Vec::with_capacity(128 + copied().map(|value| value.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("SIP/2.0 {status} {reason}\r\n").as_bytes());
    for via in &vias {
        push_header(&mut out, "Via", via);
    }
    push_header(&mut out, "From", from);
    if to_has_tag {
        push_header(&mut out, "To", to);
    } else {
        let tag = derived_tag(&[call_id, cseq, from, top_via]);
        push_header(&mut out, "To", &[to, b";tag=", tag.as_bytes()].concat());
    }
    push_header(&mut out, "Call-ID", call_id);
    push_header(&mut out, "CSeq", cseq);
    for (name, value) in extra {
        push_header(&mut out, name, value.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(out)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn first_line(message: &[u8]) -> &[u8] {
    let line = message
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `token SP ... SP SIP/x` that is not a status line and not an ACK (never answered).
fn looks_like_request(start_line: &[u8]) -> bool {
    let mut words = start_line
        .split(|byte| byte.is_ascii_whitespace())
        .filter(|word| !word.is_empty());
    let (Some(method), Some(_), Some(version)) = (words.next(), words.next(), words.next_back())
    else {
        return false;
    };
    method.iter().all(|&byte| is_token_byte(byte))
        && method != b"ACK"
        && version.len() > 4
        && version
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"SIP/"))
}

/// A To tag that is the same for retransmissions of one request and differs between requests.
fn derived_tag(parts: &[&[u8]]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Reason phrases are free text but must stay on the status line.
fn sanitise_reason(reason: &str, status: u16) -> String {
    const MAX_CHARS: usize = 100;
    let cleaned: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if !cleaned.is_empty() {
        return cleaned.to_owned();
    }
    reason_phrase(status).to_owned()
}

/// RFC 3261 §21 reason phrases; rsip would write its enum names (`RequestTerminated`).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        603 => "Decline",
        _ => "Error",
    }
}

/// A status code that prints with its standard reason phrase.
pub fn status(code: u16) -> rsip::StatusCode {
    rsip::StatusCode::Other(code, reason_phrase(code).to_owned())
}

/// A header field found by [`lenient_fields`]: raw name, unfolded and trimmed value.
pub(crate) struct LenientField<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: Cow<'a, [u8]>,
}

/// Header fields of a raw message (starting at its start line, which is skipped), up to the
/// blank line or the end. Tolerates anything: lines without a colon are skipped, folded
/// lines are joined, bytes need not be UTF-8.
pub(crate) fn lenient_fields(message: &[u8]) -> Vec<LenientField<'_>> {
    let mut fields: Vec<LenientField<'_>> = Vec::new();
    let mut continuing = false;
    let lines = message
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip(1);
    for line in lines {
        match line.first() {
            None => break,
            Some(b' ' | b'\t') => {
                let piece = trim_bytes(line);
                if let (true, Some(field), false) =
                    (continuing, fields.last_mut(), piece.is_empty())
                {
                    let value = field.value.to_mut();
                    if !value.is_empty() {
                        value.push(b' ');
                    }
                    value.extend_from_slice(piece);
                }
            }
            Some(_) => {
                continuing = false;
                let Some(colon) = line.iter().position(|&byte| byte == b':') else {
                    continue;
                };
                let (name, value) = line.split_at(colon);
                let name = trim_bytes(name);
                if name.is_empty() || !name.iter().all(|&byte| is_token_byte(byte)) {
                    continue;
                }
                fields.push(LenientField {
                    name,
                    value: Cow::Borrowed(trim_bytes(value.get(1..).unwrap_or_default())),
                });
                continuing = true;
            }
        }
    }
    fields
}

fn trim_bytes(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| matches!(byte, b' ' | b'\t');
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// True when the message's Content-Type is `application/sdp` (parameters and case ignored).
pub fn is_sdp(msg: &impl HasHeaders) -> bool {
    header_value(msg, "Content-Type")
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/sdp"))
}

/// Replaces the body with `body` of `content_type`, keeping Content-Type and Content-Length true.
pub fn set_body(
    headers: &mut rsip::Headers,
    body_slot: &mut Vec<u8>,
    content_type: &str,
    body: Vec<u8>,
) {
    headers.retain(|header| {
        !matches!(
            header,
            rsip::Header::ContentLength(_) | rsip::Header::ContentType(_)
        )
    });
    headers.push(rsip::headers::ContentType::new(content_type).into());
    headers.push(rsip::headers::ContentLength::new(body.len().to_string()).into());
    *body_slot = body;
}

/// Notes in the top Via where a request really came from (RFC 3261 §18.2.1 `received`,
/// RFC 3581 `rport`), so responses and anything routed by Via reach callers behind NAT.
pub fn stamp_received(request: &mut rsip::Request, source: std::net::SocketAddr) {
    let Some(via) = request.headers.iter_mut().find_map(|header| match header {
        Header::Via(via) => Some(via),
        _ => None,
    }) else {
        return;
    };
    let value = via.value();
    let (sent_by_part, params) = value.split_once(';').unwrap_or((value, ""));
    let sent_by = sent_by_part.split_whitespace().last().unwrap_or_default();
    let host = match sent_by.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => sent_by.split(':').next().unwrap_or_default(),
    };
    let mut kept: Vec<String> = Vec::new();
    let mut wants_rport = false;
    for param in params.split(';').filter(|p| !p.trim().is_empty()) {
        let name = param.split('=').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("rport") {
            wants_rport = true;
        } else if !name.eq_ignore_ascii_case("received") {
            kept.push(param.trim().to_owned());
        }
    }
    let ip = source.ip().to_string();
    if !wants_rport && host == ip {
        return;
    }
    let mut stamped = format!("{};received={ip}", sent_by_part.trim_end());
    if wants_rport {
        stamped.push_str(&format!(";rport={}", source.port()));
    }
    for param in kept {
        stamped.push(';');
        stamped.push_str(&param);
    }
    *via = rsip::headers::Via::new(stamped);
}
