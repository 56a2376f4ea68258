//! Header accessors on parsed messages (tags, Call-ID, CSeq, Via branch, Contact, option
//! tags), robust to what rsip's typed headers get wrong.

use rsip::headers::UntypedHeader;
use rsip::message::HasHeaders;
use rsip::{Header, Method};

use super::syntax::{
    expand_compact_name, find_param, is_digits, method_from_token, parse_address, unquote,
    uri_scheme, Address, WSP,
};
use super::validate::{parse_cseq, parse_max_forwards};

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
    sip_uri(first_contact(msg)?.uri)
}

/// The URI of From: where an RFC 2543 caller that sent no Contact is reached (its §6.13).
pub fn from_uri(msg: &impl HasHeaders) -> Option<rsip::Uri> {
    let (address, _) = parse_address(header_value(msg, "From")?)?;
    sip_uri(address.uri)
}

fn sip_uri(uri: &str) -> Option<rsip::Uri> {
    let uri = uri.split_once('?').map_or(uri, |(uri, _)| uri);
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
/// Whether the sender accepts an `application/sdp` body: no Accept header, or one listing
/// `application/sdp`, `application/*` or `*/*` (RFC 3261 §20.1: an empty Accept accepts none).
pub fn accepts_sdp(msg: &impl HasHeaders) -> bool {
    let values = header_values(msg, "Accept");
    values.is_empty()
        || values
            .iter()
            .flat_map(|value| value.split(','))
            .filter_map(|range| range.split(';').next())
            .map(|range| range.trim_matches(WSP))
            .any(|range| {
                ["application/sdp", "application/*", "*/*"]
                    .iter()
                    .any(|accepted| range.eq_ignore_ascii_case(accepted))
            })
}

/// True when the message's Content-Type is `application/sdp` (parameters and case ignored).
pub fn is_sdp(msg: &impl HasHeaders) -> bool {
    header_value(msg, "Content-Type")
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/sdp"))
}
