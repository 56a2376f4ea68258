//! The wire side of a registration: building REGISTER requests (Via, Contact, digest
//! answer) and reading what responses say (our address as seen, the expiry granted).

use rand::Rng;
use rsip::headers::UntypedHeader;

use super::Registration;
use crate::sip::message;
use crate::sip::transaction::new_branch;
use crate::sip::transport::TransportKind;

impl Registration {
    /// Adopts the address the carrier saw us at (top Via `received`, `rport` on UDP).
    pub(super) fn learn_address(&mut self, response: &rsip::Response, registered: bool) -> bool {
        let Some(via) = message::header_value(response, "Via") else {
            return false;
        };
        let via = via.split(',').next().unwrap_or_default();
        let param = |name: &str| {
            via.split(';').skip(1).find_map(|param| {
                let (key, value) = param.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let mut seen = self.contact_addr;
        if let Some(ip) = param("received").and_then(|ip| ip.parse().ok()) {
            seen.set_ip(ip);
        }
        if self.config.transport == TransportKind::Udp {
            if let Some(port) = param("rport").and_then(|port| port.parse().ok()) {
                seen.set_port(port);
            }
        }
        if seen == self.contact_addr {
            return false;
        }
        if registered {
            self.stale_contact = Some(self.contact_addr);
        }
        self.contact_addr = seen;
        true
    }

    /// Seconds the registrar granted our Contact: its `expires` parameter, else Expires.
    pub(super) fn granted_expires(&self, response: &rsip::Response) -> u32 {
        let ours = format!("@{}", self.contact_addr);
        let from_contact = message::header_values(response, "Contact")
            .into_iter()
            .flat_map(|value| value.split(','))
            .filter(|contact| contact.contains(&ours))
            .find_map(|contact| {
                contact
                    .rsplit_once('>')
                    .map_or(contact, |(_, p)| p)
                    .split(';')
                    .find_map(|param| {
                        let (key, value) = param.split_once('=')?;
                        key.trim()
                            .eq_ignore_ascii_case("expires")
                            .then(|| value.trim().parse().ok())?
                    })
            });
        from_contact
            .or_else(|| {
                message::header_value(response, "Expires").and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(self.expires)
    }

    pub(super) fn build(&mut self, host: &str, unregister: bool) -> rsip::Request {
        let suffix = self.config.transport.uri_param();
        // The host was validated with the settings; a bad one still yields a request the
        // carrier will refuse rather than a panic.
        let request_uri =
            rsip::Uri::try_from(format!("sip:{host}{suffix}").as_str()).unwrap_or_default();
        // The digest's `uri` must be the Request-URI exactly as it goes on the wire.
        let uri = request_uri.to_string();
        let domain = crate::settings::split_host_port(host).map_or(host, |(name, _)| name);
        let domain = if domain.contains(':') {
            format!("[{domain}]")
        } else {
            domain.to_owned()
        };
        let user = &self.config.username;
        let aor = format!("<sip:{user}@{domain}>");
        let branch = new_branch(&mut self.rng);
        let expires = if unregister { 0 } else { self.expires };
        let mut headers = rsip::Headers::default();
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.config.transport.via_name(),
            self.contact_addr
        );
        headers.push(rsip::headers::Via::new(via).into());
        headers.push(rsip::headers::MaxForwards::new("70").into());
        headers.push(rsip::headers::From::new(format!("{aor};tag={}", self.from_tag)).into());
        headers.push(rsip::headers::To::new(aor).into());
        headers.push(rsip::headers::CallId::new(self.call_id.clone()).into());
        headers.push(rsip::headers::CSeq::new(format!("{} REGISTER", self.cseq)).into());
        let mut contact = format!("<sip:{user}@{}{suffix}>", self.contact_addr);
        if let Some(stale) = self.stale_contact.filter(|_| !unregister) {
            contact.push_str(&format!(", <sip:{user}@{stale}{suffix}>;expires=0"));
        }
        headers.push(rsip::headers::Contact::new(contact).into());
        headers.push(rsip::headers::Expires::new(expires.to_string()).into());
        headers.push(rsip::headers::UserAgent::new("hotline").into());
        if let Some(challenge) = self.challenge.as_mut() {
            let cnonce = format!("{:016x}", self.rng.gen::<u64>());
            let value = challenge.answer(
                "REGISTER",
                &uri,
                &self.config.auth_username,
                self.config.password.expose(),
                &cnonce,
            );
            headers.push(rsip::Header::Other(challenge.header.to_owned(), value));
        }
        headers.push(rsip::headers::ContentLength::default().into());
        rsip::Request {
            method: rsip::Method::Register,
            uri: request_uri,
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        }
    }
}

pub(super) fn status_text(response: &rsip::Response) -> String {
    let code = response.status_code.code();
    match &response.status_code {
        rsip::StatusCode::Other(_, reason) if !reason.is_empty() => format!("{code} {reason}"),
        _ => format!("{code} {}", message::reason_phrase(code)),
    }
}
