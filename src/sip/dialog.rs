//! One SIP dialog (RFC 3261 §12), as UAS or UAC: identifiers, route set, CSeq bookkeeping and
//! building in-dialog requests such as BYE. Pure data; the user agent decides when to use it.

use rsip::headers::UntypedHeader;
use rsip::prelude::{HasHeaders, HeadersExt};

#[derive(Debug, thiserror::Error)]
pub enum DialogError {
    #[error("INVITE lacks a usable {0} header")]
    Header(&'static str),
}

/// What identifies the dialog on our side: Call-ID plus our own (To) tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: String,
    pub local_tag: String,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub key: DialogKey,
    /// The caller's From header as received (carries the remote tag); our To in requests we send.
    remote_party: String,
    /// The To header of the INVITE plus our tag; our From in requests we send.
    local_party: String,
    /// The caller's Contact URI: Request-URI of requests we send.
    remote_target: rsip::Uri,
    /// Record-Route values of the INVITE, in order (UAS keeps them as received, §12.1.1).
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: u32,
}

impl Dialog {
    pub fn from_invite(
        invite: &rsip::Request,
        local_tag: &str,
        remote_target: rsip::Uri,
        first_local_cseq: u32,
    ) -> Result<Self, DialogError> {
        let call_id = invite
            .call_id_header()
            .map_err(|_| DialogError::Header("Call-ID"))?
            .value()
            .to_string();
        let remote_party = invite
            .from_header()
            .map_err(|_| DialogError::Header("From"))?
            .value()
            .to_string();
        let to = invite
            .to_header()
            .map_err(|_| DialogError::Header("To"))?
            .value()
            .to_string();
        let remote_cseq = invite
            .cseq_header()
            .ok()
            .and_then(|cseq| cseq.seq().ok())
            .ok_or(DialogError::Header("CSeq"))?;
        let route_set = invite
            .headers()
            .iter()
            .filter_map(|header| match header {
                rsip::Header::RecordRoute(route) => Some(route.value().to_string()),
                _ => None,
            })
            .flat_map(|value| split_header_list(&value))
            .collect();
        Ok(Self {
            key: DialogKey {
                call_id,
                local_tag: local_tag.to_string(),
            },
            remote_party,
            local_party: format!("{to};tag={local_tag}"),
            remote_target,
            route_set,
            local_cseq: first_local_cseq,
            remote_cseq,
        })
    }

    /// The UAC side (§12.1.2): our INVITE and the 2xx that created the dialog.
    pub fn from_uac(
        invite: &rsip::Request,
        response: &rsip::Response,
        local_tag: &str,
        remote_target: rsip::Uri,
    ) -> Result<Self, DialogError> {
        use crate::sip::message::header_value;
        let owned = |value: Option<&str>, name: &'static str| {
            value.map(str::to_owned).ok_or(DialogError::Header(name))
        };
        let call_id = owned(header_value(invite, "Call-ID"), "Call-ID")?;
        let local_party = owned(header_value(invite, "From"), "From")?;
        let remote_party = owned(header_value(response, "To"), "To")?;
        let local_cseq = crate::sip::message::cseq(invite)
            .map(|(number, _)| number)
            .ok_or(DialogError::Header("CSeq"))?;
        // The UAC takes the 2xx's Record-Route in reverse order.
        let mut route_set: Vec<String> =
            crate::sip::message::header_values(response, "Record-Route")
                .into_iter()
                .flat_map(split_header_list)
                .collect();
        route_set.reverse();
        Ok(Self {
            key: DialogKey {
                call_id,
                local_tag: local_tag.to_owned(),
            },
            remote_party,
            local_party,
            remote_target,
            route_set,
            local_cseq,
            remote_cseq: 0,
        })
    }

    /// The ACK for a 2xx (§13.2.2.4): same CSeq number as the INVITE, its own Via branch.
    pub fn ack(&self, via: String, invite_cseq: u32) -> rsip::Request {
        let mut copy = self.clone();
        copy.local_cseq = invite_cseq.wrapping_sub(1);
        copy.request(rsip::Method::Ack, via, vec![])
    }

    /// RFC 3261 §12.2.2: a request whose CSeq is lower than the last one is out of order.
    pub fn accept_remote_cseq(&mut self, cseq: u32, method: &rsip::Method) -> bool {
        // ACK and CANCEL reuse the CSeq number of the INVITE they belong to.
        if matches!(method, rsip::Method::Ack | rsip::Method::Cancel) {
            return true;
        }
        if cseq <= self.remote_cseq && cseq != 0 && self.remote_cseq != 0 {
            return false;
        }
        self.remote_cseq = cseq;
        true
    }

    pub fn set_remote_target(&mut self, target: rsip::Uri) {
        self.remote_target = target;
    }

    /// Builds an in-dialog request (§12.2.1.1) with a fresh CSeq and the given top Via.
    pub fn request(
        &mut self,
        method: rsip::Method,
        via: String,
        extra: Vec<rsip::Header>,
    ) -> rsip::Request {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        let mut headers = rsip::Headers::default();
        headers.push(rsip::headers::Via::new(via).into());
        headers.push(rsip::headers::MaxForwards::new("70").into());
        for route in &self.route_set {
            headers.push(rsip::headers::Route::new(route.clone()).into());
        }
        headers.push(rsip::headers::From::new(self.local_party.clone()).into());
        headers.push(rsip::headers::To::new(self.remote_party.clone()).into());
        headers.push(rsip::headers::CallId::new(self.key.call_id.clone()).into());
        headers.push(rsip::headers::CSeq::new(format!("{} {}", self.local_cseq, method)).into());
        for header in extra {
            headers.push(header);
        }
        headers.push(rsip::headers::ContentLength::new("0").into());
        rsip::Request {
            method,
            uri: self.remote_target.clone(),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        }
    }
}

/// Splits a comma-separated header value (Record-Route may carry several) outside `<>` and quotes.
fn split_header_list(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (index, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                parts.push(value[start..index].trim().to_string());
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim().to_string());
    parts.retain(|part| !part.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> rsip::Request {
        let text = "INVITE sip:19118@127.0.0.1:5060 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-1\r\n\
            Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
            Record-Route: <sip:p3.example;lr>\r\n\
            From: \"Jonas\" <sip:jonas@127.0.0.1>;tag=abc\r\n\
            To: <sip:19118@127.0.0.1>\r\n\
            Call-ID: call-1@127.0.0.1\r\n\
            CSeq: 7 INVITE\r\n\
            Contact: <sip:jonas@127.0.0.1:6000>\r\n\
            Content-Length: 0\r\n\r\n";
        rsip::Request::try_from(text).unwrap()
    }

    #[test]
    fn bye_swaps_parties_keeps_route_order_and_counts_cseq() {
        let request = invite();
        let target = rsip::Uri::try_from("sip:jonas@127.0.0.1:6000").unwrap();
        let mut dialog = Dialog::from_invite(&request, "ourtag", target, 100).unwrap();
        let bye = dialog.request(
            rsip::Method::Bye,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx".into(),
            vec![],
        );
        let text = bye.to_string();
        assert!(
            text.starts_with("BYE sip:jonas@127.0.0.1:6000 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("From: <sip:19118@127.0.0.1>;tag=ourtag\r\n"),
            "{text}"
        );
        assert!(
            text.contains("To: \"Jonas\" <sip:jonas@127.0.0.1>;tag=abc\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 101 BYE\r\n"), "{text}");
        let routes: Vec<_> = text.lines().filter(|l| l.starts_with("Route:")).collect();
        assert_eq!(
            routes,
            vec![
                "Route: <sip:p1.example;lr>",
                "Route: <sip:p2.example;lr>",
                "Route: <sip:p3.example;lr>"
            ]
        );
        let second = dialog.request(
            rsip::Method::Bye,
            "SIP/2.0/UDP h;branch=z9hG4bKy".into(),
            vec![],
        );
        assert!(second.to_string().contains("CSeq: 102 BYE\r\n"));
    }

    #[test]
    fn remote_cseq_must_grow_except_for_ack_and_cancel() {
        let target = rsip::Uri::try_from("sip:jonas@127.0.0.1:6000").unwrap();
        let mut dialog = Dialog::from_invite(&invite(), "t", target, 1).unwrap();
        assert!(dialog.accept_remote_cseq(7, &rsip::Method::Ack));
        assert!(!dialog.accept_remote_cseq(7, &rsip::Method::Bye));
        assert!(dialog.accept_remote_cseq(8, &rsip::Method::Info));
        assert!(!dialog.accept_remote_cseq(6, &rsip::Method::Bye));
        assert!(dialog.accept_remote_cseq(9, &rsip::Method::Bye));
    }
}
