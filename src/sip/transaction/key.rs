//! Transaction identities: how a message is matched to a transaction (RFC 3261 §17.1.3 for
//! client transactions, §17.2.3 for server transactions, including the RFC 2543 fallback).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rsip::headers::ToTypedHeader;
use rsip::headers::UntypedHeader;
use rsip::message::HeadersExt;
use rsip::{typed, Header, Method, Request};

/// Branches starting with this cookie were built by RFC 3261 elements and are unique.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Opaque transaction identifier. Cloning only bumps a reference count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxKey(Arc<KeyId>);

#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyId {
    Server(ServerId),
    Client(ClientId),
}

/// What a message header did not provide for transaction matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("unparsable {header} header: {reason}")]
    UnparsableHeader {
        header: &'static str,
        reason: String,
    },
    #[error("top Via has no branch starting with z9hG4bK")]
    MissingBranch,
    #[error("CSeq method {cseq} does not match request method {request}")]
    CSeqMethodMismatch { request: Method, cseq: Method },
}

/// `rsip::Method` without `Hash`; every variant is field-less so the discriminant is the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MethodKey(Method);

impl Hash for MethodKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(&self.0).hash(state);
    }
}

/// Client transaction identity (§17.1.3): branch of our top Via plus the CSeq method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientId {
    branch: String,
    method: MethodKey,
}

/// Server transaction identity (§17.2.3). ACK is folded into INVITE; CANCEL stays separate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ServerId {
    Branch {
        branch: String,
        sent_by: String,
        method: MethodKey,
    },
    /// RFC 2543 peers: no magic cookie, so identity comes from the dialog-ish headers.
    /// `to_tag` is left out for INVITE (an ACK carries the response's tag instead) and is
    /// checked separately by the INVITE server transaction.
    Legacy {
        request_uri: String,
        top_via: String,
        call_id: String,
        from_tag: Option<String>,
        to_tag: Option<String>,
        cseq: u32,
        method: MethodKey,
    },
}

impl TxKey {
    pub(super) fn server(id: ServerId) -> Self {
        Self(Arc::new(KeyId::Server(id)))
    }

    pub(super) fn client(id: ClientId) -> Self {
        Self(Arc::new(KeyId::Client(id)))
    }

    /// Method of the request that created the transaction.
    pub fn method(&self) -> Method {
        match &*self.0 {
            KeyId::Client(ClientId { method, .. })
            | KeyId::Server(ServerId::Branch { method, .. })
            | KeyId::Server(ServerId::Legacy { method, .. }) => method.0,
        }
    }

    /// True when matched with the RFC 2543 rules (no magic cookie in the branch).
    pub fn is_legacy(&self) -> bool {
        matches!(&*self.0, KeyId::Server(ServerId::Legacy { .. }))
    }
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            KeyId::Client(ClientId { branch, method }) => {
                write!(f, "client {} {branch}", method.0)
            }
            KeyId::Server(ServerId::Branch {
                branch,
                sent_by,
                method,
            }) => write!(f, "server {} {branch} from {sent_by}", method.0),
            KeyId::Server(ServerId::Legacy {
                call_id,
                cseq,
                method,
                ..
            }) => write!(f, "server {} rfc2543 {call_id} cseq {cseq}", method.0),
        }
    }
}

impl ClientId {
    /// Identity of a request we are about to send; insists on an RFC 3261 branch.
    pub(super) fn for_request(request: &Request) -> Result<Self, Malformed> {
        let cseq = typed_cseq(request)?;
        if cseq.method != request.method {
            return Err(Malformed::CSeqMethodMismatch {
                request: request.method,
                cseq: cseq.method,
            });
        }
        let branch = cookie_branch(&top_via(request)?).ok_or(Malformed::MissingBranch)?;
        Ok(Self {
            branch,
            method: MethodKey(request.method),
        })
    }

    /// Identity a response claims (§17.1.3): top Via branch and CSeq method.
    pub(super) fn for_response(response: &rsip::Response) -> Result<Self, Malformed> {
        let cseq = typed_cseq(response)?;
        let branch = cookie_branch(&top_via(response)?).ok_or(Malformed::MissingBranch)?;
        Ok(Self {
            branch,
            method: MethodKey(cseq.method),
        })
    }
}

impl ServerId {
    /// Identity of the transaction an incoming request belongs to (ACK maps to its INVITE).
    pub(super) fn for_request(request: &Request) -> Result<Self, Malformed> {
        let via = top_via(request)?;
        let cseq = typed_cseq(request)?;
        if cseq.method != request.method {
            return Err(Malformed::CSeqMethodMismatch {
                request: request.method,
                cseq: cseq.method,
            });
        }
        let method = match request.method {
            Method::Ack => Method::Invite,
            other => other,
        };
        if let Some(branch) = cookie_branch(&via) {
            return Ok(Self::Branch {
                branch,
                sent_by: via.uri.host_with_port.to_string().to_ascii_lowercase(),
                method: MethodKey(method),
            });
        }
        let call_id = request
            .call_id_header()
            .map_err(|_| Malformed::MissingHeader("Call-ID"))?
            .value()
            .to_string();
        Ok(Self::Legacy {
            request_uri: request.uri.to_string(),
            top_via: via.to_string(),
            call_id,
            from_tag: from_tag(request),
            to_tag: if method == Method::Invite {
                None
            } else {
                to_tag(request)
            },
            cseq: cseq.seq,
            method: MethodKey(method),
        })
    }

    /// The INVITE transaction a CANCEL with this identity targets (§9.2).
    pub(super) fn cancelled_invite(&self) -> Self {
        let invite = MethodKey(Method::Invite);
        match self {
            Self::Branch {
                branch, sent_by, ..
            } => Self::Branch {
                branch: branch.clone(),
                sent_by: sent_by.clone(),
                method: invite,
            },
            Self::Legacy {
                request_uri,
                top_via,
                call_id,
                from_tag,
                cseq,
                ..
            } => Self::Legacy {
                request_uri: request_uri.clone(),
                top_via: top_via.clone(),
                call_id: call_id.clone(),
                from_tag: from_tag.clone(),
                to_tag: None,
                cseq: *cseq,
                method: invite,
            },
        }
    }
}

/// The first Via value (a comma-joined line yields its first element).
fn top_via<M: HeadersExt>(message: &M) -> Result<typed::Via, Malformed> {
    let via = message
        .headers()
        .iter()
        .find_map(|header| match header {
            Header::Via(via) => Some(via),
            _ => None,
        })
        .ok_or(Malformed::MissingHeader("Via"))?;
    via.typed().map_err(|e| Malformed::UnparsableHeader {
        header: "Via",
        reason: e.to_string(),
    })
}

fn cookie_branch(via: &typed::Via) -> Option<String> {
    via.branch()
        .map(|branch| branch.value())
        .filter(|branch| branch.starts_with(MAGIC_COOKIE))
        .map(str::to_string)
}

pub(super) fn typed_cseq<M: HeadersExt>(message: &M) -> Result<typed::CSeq, Malformed> {
    message
        .cseq_header()
        .map_err(|_| Malformed::MissingHeader("CSeq"))?
        .typed()
        .map_err(|e| Malformed::UnparsableHeader {
            header: "CSeq",
            reason: e.to_string(),
        })
}

/// To tag, treating an unparsable To like an absent tag (identity only needs consistency).
pub(super) fn to_tag<M: HeadersExt>(message: &M) -> Option<String> {
    let tag = message.to_header().ok()?.tag().ok()??;
    Some(tag.value().to_string())
}

fn from_tag<M: HeadersExt>(message: &M) -> Option<String> {
    let tag = message.from_header().ok()?.tag().ok()??;
    Some(tag.value().to_string())
}
