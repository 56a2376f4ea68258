//! Mandatory-header and syntax checks on a parsed head (RFC 3261 §8.1.1).

use super::parse::{Head, ParseError, StartLine};
use super::syntax::{
    invalid, is_digits, is_token, method_from_token, parse_address, snippet, split_params,
    uri_scheme, WSP,
};

/// What validation learned that parsing still needs.
pub(super) struct Facts {
    pub(super) content_length: Option<usize>,
}

pub(super) fn validate(head: &Head<'_>) -> Result<Facts, ParseError> {
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
pub(super) fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let (number, method) = value.trim_matches(WSP).split_once(WSP)?;
    let method = method.trim_matches(WSP);
    if !is_digits(number) || !is_token(method) {
        return None;
    }
    let number = number.parse::<u32>().ok().filter(|n| *n < 1 << 31)?;
    Some((number, method))
}

/// Max-Forwards is `1*DIGIT` in the range 0–255 (RFC 3261 §20.22).
pub(super) fn parse_max_forwards(value: &str) -> Option<u32> {
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
