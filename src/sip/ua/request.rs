//! Requests outside any dialog that the service sends for its own sake (a trunk's REGISTER and
//! OPTIONS keep-alives, probes of static agents' phones): each runs in a client transaction, and its final response or failure
//! comes back as one event naming the request.

use std::time::Instant;

use rsip::headers::UntypedHeader;

use super::{PlaceError, UaEvent, UserAgent};
use crate::sip::transport::Peer;

/// The user agent's handle for one out-of-dialog request it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl UserAgent {
    /// Sends a complete request (top Via with a fresh branch, CSeq) to `peer`;
    /// [`UaEvent::RequestAnswered`] or [`UaEvent::RequestFailed`] follows.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: rsip::Request,
        peer: Peer,
    ) -> Result<RequestId, PlaceError> {
        if !request
            .headers
            .iter()
            .any(|header| matches!(header, rsip::Header::UserAgent(_)))
        {
            request.headers.push(self.user_agent());
        }
        let key = self
            .transactions
            .send_request(now, request, peer)
            .map_err(|error| PlaceError::Send(error.to_string()))?;
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.requests.insert(key, (id, peer));
        self.drain_transactions(now);
        Ok(id)
    }

    /// Asks `target` (reached at `peer`) whether it is there: an OPTIONS outside any dialog.
    /// Any final response means it is; [`UaEvent::RequestFailed`] means it did not answer.
    pub fn send_options(
        &mut self,
        now: Instant,
        target: &str,
        peer: Peer,
    ) -> Result<RequestId, PlaceError> {
        let uri = rsip::Uri::try_from(target).map_err(|_| PlaceError::Target(target.to_owned()))?;
        let host = self.host_port();
        let tag = self.random_token();
        let call_id = format!("{}@{host}", self.random_token());
        let mut headers = rsip::Headers::default();
        headers.push(rsip::headers::Via::new(self.via(peer.transport)).into());
        headers.push(rsip::headers::MaxForwards::new("70").into());
        headers.push(rsip::headers::From::new(format!("<sip:19118@{host}>;tag={tag}")).into());
        headers.push(rsip::headers::To::new(format!("<{target}>")).into());
        headers.push(rsip::headers::CallId::new(call_id).into());
        headers.push(rsip::headers::CSeq::new("1 OPTIONS").into());
        headers.push(rsip::headers::Accept::new("application/sdp").into());
        headers.push(rsip::headers::ContentLength::default().into());
        let request = rsip::Request {
            method: rsip::Method::Options,
            uri,
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        };
        self.send_request(now, request, peer)
    }

    /// A final response to one of our own requests; provisional ones are not news.
    pub(super) fn request_response(
        &mut self,
        key: &crate::sip::transaction::TxKey,
        response: &rsip::Response,
    ) {
        if response.status_code.code() < 200 {
            return;
        }
        if let Some((request, _)) = self.requests.remove(key) {
            self.events.push_back(UaEvent::RequestAnswered {
                request,
                response: Box::new(response.clone()),
            });
        }
    }

    /// One of our own requests timed out or could not be delivered.
    pub(super) fn request_failed(&mut self, key: &crate::sip::transaction::TxKey) {
        if let Some((request, _)) = self.requests.remove(key) {
            self.events.push_back(UaEvent::RequestFailed { request });
        }
    }

    /// `peer` cannot be reached: our requests waiting there fail now.
    pub(super) fn requests_unreachable(&mut self, peer: Peer) {
        let mut failed: Vec<(RequestId, crate::sip::transaction::TxKey)> = self
            .requests
            .iter()
            .filter(|(_, (_, to))| *to == peer)
            .map(|(key, (id, _))| (*id, key.clone()))
            .collect();
        failed.sort_by_key(|(id, _)| *id);
        for (_, key) in failed {
            self.request_failed(&key);
        }
    }
}
