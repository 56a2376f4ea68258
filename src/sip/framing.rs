//! Sans-I/O framing of SIP over stream transports (TCP/TLS, RFC 3261 §18.3).
//!
//! Owns cutting a byte stream into whole messages (head + Content-Length body), recognising
//! RFC 5626 §3.5.1 keep-alive pings (a double CRLF between messages, answered with a single
//! CRLF pong) and bounding buffered memory. Parsing the frames is `message::parse_datagram`'s job.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

use super::message::{header_name_is, lenient_fields};

#[cfg(test)]
mod tests;

/// Size bounds that keep one connection's buffered bytes finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingLimits {
    /// Start line plus headers plus the blank line.
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
}

impl Default for FramingLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message: head, blank line and exactly Content-Length body bytes.
    Message(Bytes),
    /// A `CRLF CRLF` keep-alive ping; answer with a single `CRLF` pong.
    KeepAlivePing,
}

/// The stream can no longer be framed; close the connection (after answering `head`, if
/// given, with e.g. `message::error_response`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message header section exceeds {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("message has no Content-Length, which stream transports require")]
    MissingContentLength { head: Bytes },
    #[error("invalid or repeated Content-Length {value:?}")]
    InvalidContentLength { head: Bytes, value: String },
    #[error("body of {declared} bytes exceeds the {limit}-byte limit")]
    BodyTooLarge {
        head: Bytes,
        declared: usize,
        limit: usize,
    },
}

impl FramingError {
    /// The complete header section of the offending message, when one was read.
    pub fn head(&self) -> Option<&Bytes> {
        match self {
            Self::HeadTooLarge { .. } => None,
            Self::MissingContentLength { head }
            | Self::InvalidContentLength { head, .. }
            | Self::BodyTooLarge { head, .. } => Some(head),
        }
    }

    /// The status code to answer the offending request with before closing.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::BodyTooLarge { .. } => 413,
            Self::HeadTooLarge { .. } => 513,
            Self::MissingContentLength { .. } | Self::InvalidContentLength { .. } => 400,
        }
    }
}

const PING: &[u8] = b"\r\n\r\n";

/// Splits a byte stream into [`Frame`]s: feed reads with [`push`](Self::push), drain with
/// the [`Iterator`] impl until it yields `None`. Works across arbitrary read boundaries.
/// Buffered bytes stay below the limits plus one read. After a [`FramingError`] the framer
/// is dead: it yields `None` and discards pushed bytes.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buffer: BytesMut,
    limits: FramingLimits,
    /// Where to resume searching for the blank line, so byte-by-byte reads stay linear.
    scan_from: usize,
    /// Total length (head + body) of the message whose head has been read.
    pending_message_len: Option<usize>,
    failed: bool,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: FramingLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// Bytes received but not yet returned in a frame.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    fn fail(&mut self, error: FramingError) -> Option<Result<Frame, FramingError>> {
        self.failed = true;
        self.buffer = BytesMut::new();
        self.pending_message_len = None;
        Some(Err(error))
    }

    /// Consumes CRLFs between messages; `Some` when a ping was found or more bytes are
    /// needed to tell a ping from a stray CRLF.
    fn skip_separators(&mut self) -> Option<Option<Frame>> {
        loop {
            if self.buffer.starts_with(PING) {
                self.buffer.advance(PING.len());
                return Some(Some(Frame::KeepAlivePing));
            }
            match self.buffer.first() {
                None => return Some(None),
                Some(b'\n') => self.buffer.advance(1),
                Some(b'\r') if PING.starts_with(&self.buffer) => return Some(None),
                Some(b'\r') if self.buffer.starts_with(b"\r\n") => self.buffer.advance(2),
                Some(_) => return None,
            }
        }
    }
}

/// The Content-Length of a complete head (`l:` and folding count). A repeated header is
/// refused like `message::parse_datagram` does: the body boundary would be ambiguous.
fn body_length(head: &[u8], limits: &FramingLimits) -> Result<usize, FramingError> {
    let head_bytes = || Bytes::copy_from_slice(head);
    let mut declared: Option<Cow<'_, [u8]>> = None;
    for field in lenient_fields(head) {
        if !header_name_is(field.name, "Content-Length") {
            continue;
        }
        if declared.is_some() {
            return Err(FramingError::InvalidContentLength {
                head: head_bytes(),
                value: String::from_utf8_lossy(&field.value).into_owned(),
            });
        }
        declared = Some(field.value);
    }
    let Some(text) = declared else {
        return Err(FramingError::MissingContentLength { head: head_bytes() });
    };
    let length = std::str::from_utf8(&text)
        .ok()
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<usize>().ok())
        .ok_or_else(|| FramingError::InvalidContentLength {
            head: head_bytes(),
            value: String::from_utf8_lossy(&text).into_owned(),
        })?;
    if length > limits.max_body_bytes {
        return Err(FramingError::BodyTooLarge {
            head: head_bytes(),
            declared: length,
            limit: limits.max_body_bytes,
        });
    }
    Ok(length)
}

impl Iterator for StreamFramer {
    type Item = Result<Frame, FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.pending_message_len.is_none() {
            if let Some(outcome) = self.skip_separators() {
                return outcome.map(Ok);
            }
            let head_len = match find_head_end(&self.buffer, self.scan_from) {
                Ok(head_len) => head_len,
                Err(resume_from) => {
                    if self.buffer.len() > self.limits.max_head_bytes {
                        let limit = self.limits.max_head_bytes;
                        return self.fail(FramingError::HeadTooLarge { limit });
                    }
                    self.scan_from = resume_from;
                    return None;
                }
            };
            if head_len > self.limits.max_head_bytes {
                let limit = self.limits.max_head_bytes;
                return self.fail(FramingError::HeadTooLarge { limit });
            }
            let head = self.buffer.get(..head_len).unwrap_or_default();
            match body_length(head, &self.limits) {
                Ok(body_len) => self.pending_message_len = Some(head_len + body_len),
                Err(error) => return self.fail(error),
            }
        }
        let message_len = self.pending_message_len?;
        if self.buffer.len() < message_len {
            return None;
        }
        self.pending_message_len = None;
        self.scan_from = 0;
        Some(Ok(Frame::Message(
            self.buffer.split_to(message_len).freeze(),
        )))
    }
}

/// Length of the head including its blank line (`\n\n` or `\n\r\n`), or where to resume
/// the search once more bytes arrived.
fn find_head_end(buffer: &[u8], from: usize) -> Result<usize, usize> {
    let mut search_from = from;
    loop {
        let rest = buffer.get(search_from..).unwrap_or_default();
        let Some(offset) = rest.iter().position(|&byte| byte == b'\n') else {
            return Err(buffer.len());
        };
        let newline = search_from + offset;
        match (buffer.get(newline + 1), buffer.get(newline + 2)) {
            (Some(b'\n'), _) => return Ok(newline + 2),
            (Some(b'\r'), Some(b'\n')) => return Ok(newline + 3),
            (None, _) | (Some(b'\r'), None) => return Err(newline),
            _ => search_from = newline + 1,
        }
    }
}
