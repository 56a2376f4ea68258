//! Building and editing messages: §8.2.6 responses to parsed requests, lenient error
//! responses from raw bytes that failed to parse, reason phrases, bodies and Via stamping.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use rsip::headers::UntypedHeader;
use rsip::Header;

use super::parse::{skip_leading_line_breaks, ParseError};
use super::syntax::{find_param, header_name_is, is_token_byte, parse_address, WSP};

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
/// and in which Via and CSeq lines can be found (any case, compact forms, folding): the
/// client matches the answer by them. Copies every Via line, From, To (adding a tag derived
/// from the request so retransmissions get the same one), Call-ID and CSeq, those of From, To
/// and Call-ID that are there (RFC 4475 insuf lacks them and still wants its 400), then
/// `Content-Length: 0`.
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
    let (from, to, call_id) = (find("From"), find("To"), find("Call-ID"));
    let cseq = find("CSeq")?;
    let top_via = *vias.first()?;
    let copied = || {
        vias.iter()
            .copied()
            .chain([from, to, call_id].into_iter().flatten())
            .chain([cseq])
    };
    // A stray CR could split the header line at the receiver: refuse rather than echo it.
    if copied().any(|value| value.is_empty() || value.contains(&b'\r')) {
        return None;
    }

    let to_has_tag = to.is_some_and(|to| {
        parse_address(&String::from_utf8_lossy(to))
            .is_some_and(|(address, _)| find_param(address.params, "tag").is_some())
    });
    let reason = sanitise_reason(reason, status);
    let mut out = Vec::with_capacity(128 + copied().map(|value| value.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("SIP/2.0 {status} {reason}\r\n").as_bytes());
    for via in &vias {
        push_header(&mut out, "Via", via);
    }
    if let Some(from) = from {
        push_header(&mut out, "From", from);
    }
    match to {
        Some(to) if to_has_tag => push_header(&mut out, "To", to),
        Some(to) => {
            let (call_id, from) = (call_id.unwrap_or_default(), from.unwrap_or_default());
            let tag = derived_tag(&[call_id, cseq, from, top_via]);
            push_header(&mut out, "To", &[to, b";tag=", tag.as_bytes()].concat());
        }
        None => {}
    }
    if let Some(call_id) = call_id {
        push_header(&mut out, "Call-ID", call_id);
    }
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
        406 => "Not Acceptable",
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
