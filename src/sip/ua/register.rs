//! REGISTER requests from agents' softphones, answered from the registrar's verdict.

use std::time::Instant;

use rand::Rng;
use rsip::headers::UntypedHeader;
use tracing::info;

use super::{UaEvent, UserAgent};
use crate::sip::registrar::RegisterOutcome;
use crate::sip::transaction::TxKey;
use crate::sip::transport::Peer;

impl UserAgent {
    pub(super) fn handle_register(
        &mut self,
        now: Instant,
        key: TxKey,
        request: &rsip::Request,
        from: Peer,
    ) {
        let nonce = format!("{:032x}", self.rng.gen::<u128>());
        let Some(registrar) = self.registrar.as_mut() else {
            // No credentials configured: nobody may register, and saying so beats 405.
            let response = self.response_with_reason(request, 403, "Registration Not Enabled");
            return self.respond(now, &key, response);
        };
        let outcome = registrar.register(now, request, from, nonce);
        let response = match outcome {
            RegisterOutcome::Challenge(challenge) => {
                let header =
                    rsip::Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(challenge));
                self.response(request, 401, None, vec![header])
            }
            RegisterOutcome::Forbidden => self.response(request, 403, None, vec![]),
            RegisterOutcome::IntervalTooBrief(minimum) => {
                let header =
                    rsip::Header::MinExpires(rsip::headers::MinExpires::new(minimum.to_string()));
                self.response(request, 423, None, vec![header])
            }
            RegisterOutcome::BadRequest(reason) => self.response_with_reason(request, 400, reason),
            RegisterOutcome::Registered { user, contacts } => {
                let transport = from.transport.via_name();
                let peer = from.addr;
                info!(%user, contacts = contacts.len(), %peer, transport, "agent registration");
                let headers = contacts
                    .iter()
                    .map(|(uri, expires)| {
                        rsip::headers::Contact::new(format!("<{uri}>;expires={expires}")).into()
                    })
                    .collect();
                self.events.push_back(UaEvent::Registration {
                    registered: !contacts.is_empty(),
                    user,
                });
                self.response(request, 200, None, headers)
            }
        };
        self.respond(now, &key, response);
    }
}
