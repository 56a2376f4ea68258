//! Requests outside any dialog that the service sends for its own sake (a trunk's REGISTER and
//! OPTIONS keep-alives): each runs in a client transaction, and its final response or failure
//! comes back as one event naming the request.

use std::time::Instant;

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
