//! Shared SIP grammar pieces: compact header names, tokens, URI schemes, method tokens,
//! name-addr / addr-spec values and their parameters.

use rsip::Method;

use super::parse::ParseError;

/// Compact header forms (RFC 3261 §7.3.3 and the IANA SIP header registry).
pub(super) const COMPACT_FORMS: [(u8, &str); 20] = [
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
pub(super) const ADDRESS_HEADERS: [&str; 10] = [
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

pub(super) const ADDRESS_SEPARATORS: &[char] = &[';', '=', ','];
/// Via also allows LWS around the `/` of sent-protocol and the `:` of sent-by.
pub(super) const VIA_SEPARATORS: &[char] = &[';', '=', ',', '/', ':'];
pub(super) const WSP: &[char] = &[' ', '\t'];

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

pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_token_char)
}

pub(super) fn is_token_byte(byte: u8) -> bool {
    is_token_char(char::from(byte))
}

/// Shortens attacker-controlled text before it lands in an error message or log line.
pub(super) fn snippet(text: &str) -> String {
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

pub(super) fn invalid(name: &'static str, value: &str) -> ParseError {
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
pub(super) fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// The scheme of a URI (`ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":"`), if it has one.
pub(super) fn uri_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first_is_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_valid = chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (first_is_alpha && rest_valid).then_some(scheme)
}

/// One element of a From/To/Contact/Route-style value, split syntactically.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Address<'a> {
    display_name: Option<&'a str>,
    pub(super) uri: &'a str,
    /// Header parameters as written, starting at the first `;` (or empty).
    pub(super) params: &'a str,
    bracketed: bool,
}

impl Address<'_> {
    pub(super) fn is_well_formed(&self) -> bool {
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
pub(super) fn parse_address(value: &str) -> Option<(Address<'_>, Option<&str>)> {
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
pub(super) struct MalformedParams;

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
pub(super) fn split_params(text: &str) -> Result<(&str, Option<&str>), MalformedParams> {
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
pub(super) fn find_param<'a>(params_text: &'a str, name: &str) -> Option<Option<&'a str>> {
    params(params_text)
        .find(|(param, _)| param.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Strips the surrounding quotes of a quoted-string parameter value (escapes are kept).
pub(super) fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}
