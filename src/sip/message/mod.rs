//! SIP message parsing and response building on top of rsip 0.4.
//!
//! Owns the wire-format work rsip skips: compact header names, header folding, bare-LF line
//! endings, leading CRLFs, multi-value Via lines and LWS around `;`/`=`/`/` (RFC 3261 §7.3),
//! datagram Content-Length handling (§18.3), mandatory-header checks (§8.1.1), robust
//! name-addr / parameter accessors, and responses: §8.2.6 ones from a parsed request, and
//! lenient 4xx/5xx ones built from raw bytes that failed to parse.
//!
//! Split by concern: `parse` (datagrams and [`ParseError`]), `validate` (mandatory headers),
//! `syntax` (grammar shared by all), `headers` (accessors) and `build` (responses, bodies).

mod build;
mod headers;
mod parse;
mod syntax;
mod validate;

pub(crate) use build::lenient_fields;
pub use build::{
    bad_request_response, error_response, reason_phrase, rejection_response, response_for,
    set_body, stamp_received, status,
};
pub use headers::{
    accepts_sdp, call_id, contact_expires, contact_param, contact_uri, cseq, from_tag, from_uri,
    header_value, header_values, is_sdp, max_forwards, option_tags, require, to_tag,
    top_via_branch,
};
pub use parse::{parse_datagram, ParseError};
pub(crate) use syntax::header_name_is;
pub use syntax::{expand_compact_name, method_from_token};

// The unit tests reach the private helpers of every part.
#[cfg(test)]
use {
    parse::*,
    rsip::{Header, Method, SipMessage},
    syntax::*,
};

#[cfg(test)]
mod tests;
