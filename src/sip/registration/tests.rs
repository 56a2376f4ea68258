use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;

use super::*;
use crate::sip::registrar::{Credentials, RegisterOutcome, Registrar};
use crate::sip::transport::Peer;

const USER: &str = "hotline19118";

fn config(backup: bool) -> RegistrationConfig {
    RegistrationConfig {
        trunk: "carrier".into(),
        host: "carrier.example:5060".into(),
        backup_host: backup.then(|| "backup.example".into()),
        transport: TransportKind::Udp,
        username: USER.into(),
        auth_username: USER.into(),
        password: Secret::new("s3cret"),
        expires: Duration::from_secs(600),
        contact_addr: "10.0.0.5:5060".parse().unwrap(),
        request_timeout: Duration::from_secs(32),
    }
}

/// A carrier registrar (this crate's own, so the digest is checked for real).
struct Carrier {
    registrar: Registrar,
    nonces: u32,
}

impl Carrier {
    fn with_password(password: &str) -> Self {
        let text = format!(
            "realm = \"carrier\"\n[users]\n{USER} = \"{}\"\n",
            Credentials::ha1(USER, "carrier", password)
        );
        Self {
            registrar: Registrar::new(Credentials::parse(&text).unwrap()),
            nonces: 0,
        }
    }

    fn answer(&mut self, now: Instant, request: &rsip::Request) -> rsip::Response {
        self.nonces += 1;
        let source = Peer {
            transport: TransportKind::Udp,
            addr: "10.0.0.5:5060".parse().unwrap(),
        };
        let nonce = format!("nonce{}", self.nonces);
        match self.registrar.register(now, request, source, nonce) {
            RegisterOutcome::Challenge(value) => {
                reply(request, 401, &[("WWW-Authenticate", &value)])
            }
            RegisterOutcome::Registered { contacts, .. } => {
                let listed: Vec<String> = contacts
                    .iter()
                    .map(|(uri, expires)| format!("<{uri}>;expires={expires}"))
                    .collect();
                let listed = listed.join(", ");
                let extra: Vec<(&str, &str)> = if listed.is_empty() {
                    vec![]
                } else {
                    vec![("Contact", listed.as_str())]
                };
                reply(request, 200, &extra)
            }
            RegisterOutcome::Forbidden => reply(request, 403, &[]),
            RegisterOutcome::IntervalTooBrief(minimum) => {
                reply(request, 423, &[("Min-Expires", &minimum.to_string())])
            }
            RegisterOutcome::BadRequest(reason) => panic!("carrier says 400 {reason}"),
        }
    }
}

/// A response to `request` as it would arrive over the wire.
fn reply(request: &rsip::Request, status: u16, extra: &[(&str, &str)]) -> rsip::Response {
    let mut response = message::response_for(request, message::status(status), Some("carrier"));
    for (name, value) in extra {
        response
            .headers
            .push(rsip::Header::Other((*name).to_owned(), (*value).to_owned()));
    }
    match message::parse_datagram(response.to_string().as_bytes()).unwrap() {
        rsip::SipMessage::Response(response) => response,
        rsip::SipMessage::Request(_) => unreachable!(),
    }
}

/// REGISTERs the machine asked to send since the last call, re-parsed from their wire form.
fn sent(registration: &mut Registration) -> Vec<(Server, String, rsip::Request)> {
    let mut requests = Vec::new();
    while let Some(output) = registration.poll_output() {
        if let RegOutput::Send {
            server,
            host,
            request,
        } = output
        {
            let parsed = match message::parse_datagram(request.to_string().as_bytes()).unwrap() {
                rsip::SipMessage::Request(request) => request,
                rsip::SipMessage::Response(_) => unreachable!(),
            };
            requests.push((server, host, parsed));
        }
    }
    requests
}

fn only(registration: &mut Registration) -> (Server, rsip::Request) {
    let mut requests = sent(registration);
    assert_eq!(requests.len(), 1, "expected one REGISTER");
    let (server, _, request) = requests.remove(0);
    (server, request)
}

fn header<'r>(request: &'r rsip::Request, name: &str) -> Option<&'r str> {
    message::header_value(request, name)
}

/// Registers against `carrier` from a fresh start; returns the machine at `now`.
fn registered(carrier: &mut Carrier, backup: bool, now: Instant) -> Registration {
    let mut registration = Registration::new(config(backup), 7);
    registration.handle_input(now, RegInput::Start);
    for _ in 0..2 {
        let (_, request) = only(&mut registration);
        let response = carrier.answer(now, &request);
        registration.handle_input(now, RegInput::Response(response));
    }
    assert_eq!(registration.status().state, RegState::Registered);
    registration
}

#[test]
fn challenge_answered_with_qop_auth_then_refreshed_before_expiry_with_the_next_nonce_count() {
    let t0 = Instant::now();
    let mut carrier = Carrier::with_password("s3cret");
    let mut registration = Registration::new(config(false), 1);
    assert_eq!(registration.status().state, RegState::Idle);
    registration.handle_input(t0, RegInput::Start);
    let (server, first) = only(&mut registration);
    assert_eq!(server, Server::Primary);
    assert_eq!(first.uri.to_string(), "sip:carrier.example:5060");
    assert!(header(&first, "Authorization").is_none());
    assert_eq!(header(&first, "Expires"), Some("600"));
    assert_eq!(
        header(&first, "Contact"),
        Some("<sip:hotline19118@10.0.0.5:5060>")
    );
    assert!(header(&first, "To")
        .unwrap()
        .contains("sip:hotline19118@carrier.example>"));
    assert_eq!(registration.status().state, RegState::Registering);

    registration.handle_input(t0, RegInput::Response(reply(&first, 100, &[])));
    assert!(sent(&mut registration).is_empty(), "a 100 changes nothing");
    let challenge = carrier.answer(t0, &first);
    assert_eq!(challenge.status_code.code(), 401);
    registration.handle_input(t0, RegInput::Response(challenge));
    let (_, second) = only(&mut registration);
    let authorization = header(&second, "Authorization").unwrap();
    assert!(authorization.contains("qop=auth"), "{authorization}");
    assert!(authorization.contains("nc=00000001"), "{authorization}");
    assert_eq!(message::call_id(&second), message::call_id(&first));
    assert_eq!(message::cseq(&second).unwrap().0, 2);

    let ok = carrier.answer(t0, &second);
    assert_eq!(ok.status_code.code(), 200, "the carrier accepts our digest");
    registration.handle_input(t0, RegInput::Response(ok));
    let status = registration.status();
    assert_eq!(status.state, RegState::Registered);
    assert!(registration.is_up(t0));
    assert_eq!(status.registered_until, Some(t0 + Duration::from_secs(600)));
    assert_eq!(status.last_error, None);
    let refresh = registration.poll_timeout().unwrap();
    assert_eq!(
        refresh,
        t0 + Duration::from_secs(540),
        "refreshed a minute early"
    );
    assert!(sent(&mut registration).is_empty());

    registration.handle_timeout(refresh);
    let (_, third) = only(&mut registration);
    let authorization = header(&third, "Authorization").unwrap();
    assert!(authorization.contains("nc=00000002"), "{authorization}");
    // The carrier's clock is its own: within its nonce lifetime the cached nonce is good.
    let ok = carrier.answer(t0 + Duration::from_secs(60), &third);
    assert_eq!(ok.status_code.code(), 200, "the cached nonce is still good");
    registration.handle_input(refresh, RegInput::Response(ok));
    assert_eq!(
        registration.status().registered_until,
        Some(refresh + Duration::from_secs(600))
    );
}

#[test]
fn a_stale_nonce_is_answered_again_without_reporting_an_error() {
    let t0 = Instant::now();
    let mut carrier = Carrier::with_password("s3cret");
    let mut registration = registered(&mut carrier, false, t0);
    // Past the carrier's nonce lifetime (5 min) the refresh gets a stale=true challenge.
    let refresh = registration.poll_timeout().unwrap();
    registration.handle_timeout(refresh);
    let (_, request) = only(&mut registration);
    let stale = carrier.answer(refresh, &request);
    assert!(header_of(&stale, "WWW-Authenticate").contains("stale=true"));
    registration.handle_input(refresh, RegInput::Response(stale));
    let (_, retried) = only(&mut registration);
    let ok = carrier.answer(refresh, &retried);
    assert_eq!(ok.status_code.code(), 200);
    registration.handle_input(refresh, RegInput::Response(ok));
    assert_eq!(registration.status().state, RegState::Registered);
    assert_eq!(registration.status().last_error, None);
}

fn header_of<'r>(response: &'r rsip::Response, name: &str) -> &'r str {
    message::header_value(response, name).unwrap()
}

#[test]
fn interval_too_brief_raises_expires_to_min_expires() {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(false), 2);
    registration.handle_input(t0, RegInput::Start);
    let (_, first) = only(&mut registration);
    registration.handle_input(
        t0,
        RegInput::Response(reply(&first, 423, &[("Min-Expires", "1800")])),
    );
    let (_, second) = only(&mut registration);
    assert_eq!(header(&second, "Expires"), Some("1800"));
    // A 423 that does not ask for more is not followed in a loop.
    registration.handle_input(
        t0,
        RegInput::Response(reply(&second, 423, &[("Min-Expires", "60")])),
    );
    assert!(sent(&mut registration).is_empty());
    assert_eq!(registration.status().state, RegState::Refused);
}

#[test]
fn a_wrong_password_is_reported_down_and_retried_only_a_few_times_an_hour() {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(false), 3);
    registration.handle_input(t0, RegInput::Start);
    let mut now = t0;
    let mut requests = 0;
    let mut changes = Vec::new();
    loop {
        while let Some(output) = registration.poll_output() {
            match output {
                RegOutput::Send { request, .. } => {
                    requests += 1;
                    // What Kamailio or Asterisk do with a wrong password: challenge again.
                    let challenge =
                        format!("Digest realm=\"carrier\", nonce=\"n{requests}\", qop=\"auth\"");
                    let response = reply(&request, 401, &[("WWW-Authenticate", &challenge)]);
                    registration.handle_input(now, RegInput::Response(response));
                }
                RegOutput::StateChanged(status) => changes.push(status),
            }
        }
        let next = registration.poll_timeout().unwrap();
        if next >= t0 + Duration::from_secs(3600) {
            break;
        }
        now = next;
        registration.handle_timeout(now);
    }
    // Each attempt is one unauthenticated and one authenticated REGISTER.
    assert!(requests <= 12, "{requests} REGISTERs in an hour");
    assert!(requests >= 4, "it does retry: {requests}");
    let status = registration.status();
    assert_eq!(status.state, RegState::Refused);
    assert!(!registration.is_up(now));
    let error = status.last_error.unwrap();
    assert!(
        error.contains("401") && error.contains("credentials refused"),
        "{error}"
    );
    let next = status.next_retry.unwrap();
    assert!(next >= now + Duration::from_secs(12 * 60), "retried slowly");
    // One state change reported when it went down, not one per attempt.
    let refused = changes
        .iter()
        .filter(|status| status.state == RegState::Refused)
        .count();
    assert_eq!(refused, 1, "{changes:?}");
}

#[test]
fn forbidden_is_refused_with_its_reason() {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(true), 4);
    registration.handle_input(t0, RegInput::Start);
    let (_, first) = only(&mut registration);
    registration.handle_input(t0, RegInput::Response(reply(&first, 403, &[])));
    assert!(
        sent(&mut registration).is_empty(),
        "no failover on a refusal"
    );
    let status = registration.status();
    assert_eq!(status.state, RegState::Refused);
    assert_eq!(status.last_error.as_deref(), Some("403 Forbidden"));
    assert!(status.next_retry.unwrap() >= t0 + Duration::from_secs(12 * 60));
}

/// Delays between attempts while every REGISTER gets `answer` (None: times out).
fn outage_delays(seed: u64, status: Option<u16>, attempts: usize) -> Vec<Duration> {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(false), seed);
    registration.handle_input(t0, RegInput::Start);
    let mut now = t0;
    let mut last_sent = t0;
    let mut delays = Vec::new();
    for _ in 0..attempts {
        let (_, request) = only(&mut registration);
        delays.push(now - last_sent);
        last_sent = now;
        match status {
            Some(code) => {
                registration.handle_input(now, RegInput::Response(reply(&request, code, &[])));
            }
            None => {
                // The transaction layer's Timer F.
                now += Duration::from_secs(32);
                registration.handle_input(now, RegInput::Timeout);
            }
        }
        assert_eq!(registration.status().state, RegState::Retrying);
        now = registration.poll_timeout().unwrap();
        registration.handle_timeout(now);
    }
    delays.remove(0);
    delays
}

#[test]
fn outages_back_off_exponentially_with_jitter_up_to_ten_minutes() {
    let delays = outage_delays(5, Some(503), 12);
    let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
    assert!(
        (15..=30).contains(&secs[0]),
        "first retry within 30 s: {secs:?}"
    );
    assert!((30..=60).contains(&secs[1]), "{secs:?}");
    assert!((60..=120).contains(&secs[2]), "{secs:?}");
    assert!(secs.iter().all(|s| *s <= 600), "capped at 10 min: {secs:?}");
    assert!(
        secs[8..].iter().all(|s| *s >= 300),
        "stays near the cap: {secs:?}"
    );
    let other = outage_delays(6, Some(503), 12);
    assert_ne!(delays, other, "jitter differs between seeds");
    assert_eq!(delays, outage_delays(5, Some(503), 12), "and is replayable");

    let timeouts: Vec<u64> = outage_delays(5, None, 4)
        .iter()
        .map(Duration::as_secs)
        .collect();
    // The wait includes Timer F (32 s) before the backoff starts.
    assert!((32 + 15..=32 + 30).contains(&timeouts[0]), "{timeouts:?}");
    assert!(timeouts[2] > timeouts[0], "{timeouts:?}");
}

#[test]
fn retry_after_on_503_is_honoured_within_the_cap() {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(false), 8);
    registration.handle_input(t0, RegInput::Start);
    let (_, first) = only(&mut registration);
    registration.handle_input(
        t0,
        RegInput::Response(reply(&first, 503, &[("Retry-After", "120")])),
    );
    let status = registration.status();
    assert_eq!(status.next_retry, Some(t0 + Duration::from_secs(120)));
    assert!(status.last_error.unwrap().contains("503"));
}

#[test]
fn an_unanswered_request_is_given_up_at_its_deadline() {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(false), 9);
    registration.handle_input(t0, RegInput::Start);
    let (_, request) = only(&mut registration);
    assert_eq!(
        registration.poll_timeout(),
        Some(t0 + Duration::from_secs(32))
    );
    registration.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(registration.status().state, RegState::Retrying);
    // Its late answer is ignored.
    let late = reply(&request, 200, &[]);
    registration.handle_input(t0 + Duration::from_secs(33), RegInput::Response(late));
    assert_eq!(registration.status().state, RegState::Retrying);
}

#[test]
fn fails_over_to_the_backup_and_comes_back_at_the_next_refresh() {
    let t0 = Instant::now();
    let mut backup = Carrier::with_password("s3cret");
    let mut primary = Carrier::with_password("s3cret");
    let mut registration = Registration::new(config(true), 10);
    registration.handle_input(t0, RegInput::Start);
    let (server, _) = only(&mut registration);
    assert_eq!(server, Server::Primary);
    let t1 = t0 + Duration::from_secs(32);
    registration.handle_input(t1, RegInput::Timeout);
    let requests = sent(&mut registration);
    assert_eq!(requests.len(), 1);
    let (server, host, request) = &requests[0];
    assert_eq!((*server, host.as_str()), (Server::Backup, "backup.example"));
    assert_eq!(request.uri.to_string(), "sip:backup.example");
    let challenge = backup.answer(t1, request);
    registration.handle_input(t1, RegInput::Response(challenge));
    let (server, request) = only(&mut registration);
    assert_eq!(server, Server::Backup);
    registration.handle_input(t1, RegInput::Response(backup.answer(t1, &request)));
    let status = registration.status();
    assert_eq!(
        (status.state, status.server),
        (RegState::Registered, Server::Backup)
    );

    // The refresh tries the primary first; it is back.
    let refresh = registration.poll_timeout().unwrap();
    registration.handle_timeout(refresh);
    let (server, request) = only(&mut registration);
    assert_eq!(server, Server::Primary);
    registration.handle_input(
        refresh,
        RegInput::Response(primary.answer(refresh, &request)),
    );
    let (server, request) = only(&mut registration);
    assert_eq!(server, Server::Primary);
    registration.handle_input(
        refresh,
        RegInput::Response(primary.answer(refresh, &request)),
    );
    let status = registration.status();
    assert_eq!(
        (status.state, status.server),
        (RegState::Registered, Server::Primary)
    );

    // Both down: the backup is tried at once, then the round backs off and starts again at
    // the primary; the binding stays up until it expires.
    let refresh = registration.poll_timeout().unwrap();
    registration.handle_timeout(refresh);
    let (server, request) = only(&mut registration);
    assert_eq!(server, Server::Primary);
    registration.handle_input(refresh, RegInput::Response(reply(&request, 500, &[])));
    let (server, request) = only(&mut registration);
    assert_eq!(server, Server::Backup);
    registration.handle_input(refresh, RegInput::Response(reply(&request, 503, &[])));
    assert!(sent(&mut registration).is_empty());
    let status = registration.status();
    assert_eq!(
        status.state,
        RegState::Registered,
        "still bound until expiry"
    );
    assert!(status.last_error.unwrap().contains("backup.example: 503"));
    let retry = status.next_retry.unwrap();
    assert!(retry <= refresh + Duration::from_secs(30));
    registration.handle_timeout(retry);
    let (server, _) = only(&mut registration);
    assert_eq!(server, Server::Primary);
}

#[test]
fn learns_its_public_address_from_via_and_reregisters_the_corrected_contact() {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(false), 11);
    registration.handle_input(t0, RegInput::Start);
    let (_, request) = only(&mut registration);
    let mut ok = reply(
        &request,
        200,
        &[("Contact", "<sip:hotline19118@10.0.0.5:5060>;expires=600")],
    );
    // What the carrier's stack adds to our Via (RFC 3581).
    let via = header_of(&ok, "Via").to_owned();
    ok.headers.retain(|h| !matches!(h, rsip::Header::Via(_)));
    ok.headers.push(
        rsip::headers::Via::new(
            format!("{via};received=203.0.113.5").replace(";rport", ";rport=40000"),
        )
        .into(),
    );
    registration.handle_input(t0, RegInput::Response(ok));
    let (_, corrected) = only(&mut registration);
    let contact = header(&corrected, "Contact").unwrap();
    assert!(
        contact.starts_with("<sip:hotline19118@203.0.113.5:40000>"),
        "{contact}"
    );
    assert!(
        contact.contains("<sip:hotline19118@10.0.0.5:5060>;expires=0"),
        "{contact}"
    );
    assert!(header(&corrected, "Via")
        .unwrap()
        .contains("203.0.113.5:40000"));
    let status = registration.status();
    assert_eq!(status.contact_addr, "203.0.113.5:40000".parse().unwrap());
    assert_eq!(status.state, RegState::Registered);

    let ok = reply(
        &corrected,
        200,
        &[(
            "Contact",
            "<sip:hotline19118@203.0.113.5:40000>;expires=300",
        )],
    );
    registration.handle_input(t0, RegInput::Response(ok));
    assert_eq!(
        registration.status().registered_until,
        Some(t0 + Duration::from_secs(300)),
        "the carrier's expires for our Contact wins"
    );
    // The next refresh no longer removes the old contact.
    registration.handle_timeout(registration.poll_timeout().unwrap());
    let (_, refresh) = only(&mut registration);
    assert_eq!(
        header(&refresh, "Contact"),
        Some("<sip:hotline19118@203.0.113.5:40000>")
    );
}

#[test]
fn stop_unregisters_with_expires_zero() {
    let t0 = Instant::now();
    let mut carrier = Carrier::with_password("s3cret");
    let mut registration = registered(&mut carrier, false, t0);
    let t1 = t0 + Duration::from_secs(10);
    registration.handle_input(t1, RegInput::Stop);
    let (_, request) = only(&mut registration);
    assert_eq!(header(&request, "Expires"), Some("0"));
    assert!(header(&request, "Authorization").is_some());
    assert_eq!(registration.status().state, RegState::Unregistering);
    let ok = carrier.answer(t1, &request);
    assert_eq!(ok.status_code.code(), 200);
    assert!(
        !carrier.registrar.is_registered(USER, t1),
        "the binding is gone"
    );
    registration.handle_input(t1, RegInput::Response(ok));
    assert_eq!(registration.status().state, RegState::Stopped);
    assert!(!registration.is_up(t1));
    assert_eq!(registration.poll_timeout(), None);

    // Not registered: stops at once, sending nothing.
    let mut idle = Registration::new(config(false), 12);
    idle.handle_input(t0, RegInput::Start);
    let (_, request) = only(&mut idle);
    idle.handle_input(t0, RegInput::Response(reply(&request, 503, &[])));
    idle.handle_input(t0, RegInput::Stop);
    assert!(sent(&mut idle).is_empty());
    assert_eq!(idle.status().state, RegState::Stopped);
    assert_eq!(idle.poll_timeout(), None);
}

#[test]
fn state_changes_are_reported_once_each() {
    let t0 = Instant::now();
    let mut carrier = Carrier::with_password("s3cret");
    let mut registration = Registration::new(config(false), 13);
    registration.handle_input(t0, RegInput::Start);
    let mut states = Vec::new();
    for _ in 0..3 {
        while let Some(output) = registration.poll_output() {
            match output {
                RegOutput::Send { request, .. } => {
                    let response = carrier.answer(t0, &request);
                    registration.handle_input(t0, RegInput::Response(response));
                }
                RegOutput::StateChanged(status) => states.push(status.state),
            }
        }
    }
    assert_eq!(states, vec![RegState::Registering, RegState::Registered]);
    let shown = format!("{:?}", registration);
    assert!(
        !shown.contains("s3cret"),
        "the password leaks through Debug"
    );
}

#[test]
fn an_expired_cached_nonce_is_not_mistaken_for_a_wrong_password() {
    let t0 = Instant::now();
    let mut carrier = Carrier::with_password("s3cret");
    let mut registration = registered(&mut carrier, false, t0);
    let refresh = registration.poll_timeout().unwrap();
    registration.handle_timeout(refresh);
    let (_, cached) = only(&mut registration);
    assert!(header(&cached, "Authorization").is_some());
    // A carrier that forgot the nonce without saying stale=true.
    let challenge = "Digest realm=\"carrier\", nonce=\"forgotten\", qop=\"auth\", opaque=\"o1\"";
    registration.handle_input(
        refresh,
        RegInput::Response(reply(&cached, 401, &[("WWW-Authenticate", challenge)])),
    );
    let (_, answered) = only(&mut registration);
    let authorization = header(&answered, "Authorization").unwrap();
    assert!(
        authorization.contains("nonce=\"forgotten\""),
        "{authorization}"
    );
    assert!(authorization.contains("nc=00000001"), "{authorization}");
    assert!(authorization.contains("opaque=\"o1\""), "{authorization}");
    assert_eq!(registration.status().state, RegState::Registered);
    assert_eq!(registration.status().last_error, None);
    let counts = registration.counts();
    assert_eq!((counts.ok, counts.challenged, counts.refused), (1, 2, 0));
}

#[test]
fn a_proxy_challenge_is_answered_with_proxy_authorization() {
    let t0 = Instant::now();
    let mut registration = Registration::new(config(false), 14);
    registration.handle_input(t0, RegInput::Start);
    let (_, first) = only(&mut registration);
    let challenge = "Digest realm=\"edge\", nonce=\"p1\", algorithm=MD5";
    registration.handle_input(
        t0,
        RegInput::Response(reply(&first, 407, &[("Proxy-Authenticate", challenge)])),
    );
    let (_, second) = only(&mut registration);
    let answer = header(&second, "Proxy-Authorization").unwrap();
    assert!(answer.contains("realm=\"edge\""), "{answer}");
    // Without qop the RFC 2069 form: no nonce count, no cnonce.
    assert!(!answer.contains("nc="), "{answer}");
    assert!(header(&second, "Authorization").is_none());

    // An algorithm it cannot compute is a refusal with the reason, not a loop.
    let sha = "Digest realm=\"edge\", nonce=\"p2\", algorithm=SHA-512-256";
    registration.handle_input(
        t0,
        RegInput::Response(reply(&second, 407, &[("Proxy-Authenticate", sha)])),
    );
    assert!(sent(&mut registration).is_empty());
    let error = registration.status().last_error.unwrap();
    assert!(error.contains("SHA-512-256"), "{error}");
}

#[test]
fn stopping_while_the_first_register_is_in_flight_still_unregisters() {
    let t0 = Instant::now();
    let mut carrier = Carrier::with_password("s3cret");
    let mut registration = Registration::new(config(false), 15);
    registration.handle_input(t0, RegInput::Start);
    let (_, first) = only(&mut registration);
    let challenge = carrier.answer(t0, &first);
    registration.handle_input(t0, RegInput::Response(challenge));
    let (_, in_flight) = only(&mut registration);
    registration.handle_input(t0, RegInput::Stop);
    let (_, unregister) = only(&mut registration);
    assert_eq!(header(&unregister, "Expires"), Some("0"));
    // The carrier took the in-flight REGISTER; the unregister removes its binding.
    assert_eq!(carrier.answer(t0, &in_flight).status_code.code(), 200);
    registration.handle_input(t0, RegInput::Stop);
    assert!(
        sent(&mut registration).is_empty(),
        "a second stop sends nothing more"
    );
    assert_eq!(carrier.answer(t0, &unregister).status_code.code(), 200);
    assert!(!carrier.registrar.is_registered(USER, t0));
}

#[test]
fn the_configuration_comes_from_the_trunk_settings() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-file\n").unwrap();
    let text = format!(
        "[trunks.carrier]\nhost = \"carrier.example\"\ntransport = \"tcp\"\nregister = true\n\
         username = \"u\"\nauth_username = \"a\"\npassword_file = \"{}\"\nexpires = \"300s\"\n",
        secret.display()
    );
    let path = dir.path().join("hotline.toml");
    std::fs::write(&path, text).unwrap();
    let settings = crate::settings::Settings::load(Some(&path)).unwrap();
    let contact = "192.0.2.1:5060".parse().unwrap();
    let config = RegistrationConfig::from_settings(
        "carrier",
        &settings.trunks["carrier"],
        contact,
        Duration::from_secs(32),
    )
    .unwrap();
    assert_eq!(config.transport, TransportKind::Tcp);
    assert_eq!(
        (config.username.as_str(), config.auth_username.as_str()),
        ("u", "a")
    );
    assert_eq!(config.password.expose(), "from-file");
    assert_eq!(config.expires, Duration::from_secs(300));
    let mut registration = Registration::new(config, 16);
    registration.handle_input(Instant::now(), RegInput::Start);
    let (_, request) = only(&mut registration);
    // rsip writes the parameter's value in capitals; it is case-insensitive.
    assert!(request
        .uri
        .to_string()
        .eq_ignore_ascii_case("sip:carrier.example;transport=tcp"));
    assert!(header(&request, "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP 192.0.2.1:5060"));
    assert_eq!(
        header(&request, "Contact"),
        Some("<sip:u@192.0.2.1:5060;transport=tcp>")
    );
    let challenge = "Digest realm=\"c\", nonce=\"n\", qop=\"auth\"";
    registration.handle_input(
        Instant::now(),
        RegInput::Response(reply(&request, 401, &[("WWW-Authenticate", challenge)])),
    );
    let (_, answered) = only(&mut registration);
    let authorization = header(&answered, "Authorization").unwrap();
    assert!(
        authorization.contains(&format!("uri=\"{}\"", answered.uri)),
        "the digest uri is the Request-URI as sent: {authorization}"
    );
}

#[test]
fn the_trunk_goes_down_when_the_binding_lapses_during_an_outage() {
    let t0 = Instant::now();
    let mut carrier = Carrier::with_password("s3cret");
    let mut registration = registered(&mut carrier, false, t0);
    let until = registration.status().registered_until.unwrap();
    let mut now = t0;
    let mut changes = Vec::new();
    while now <= until + Duration::from_secs(1) {
        while let Some(output) = registration.poll_output() {
            match output {
                RegOutput::Send { request, .. } => {
                    registration.handle_input(now, RegInput::Response(reply(&request, 503, &[])));
                }
                RegOutput::StateChanged(status) => changes.push(status.state),
            }
        }
        now = registration.poll_timeout().unwrap();
        registration.handle_timeout(now);
    }
    assert!(!registration.is_up(now));
    assert_eq!(registration.status().state, RegState::Retrying);
    assert_eq!(registration.status().registered_until, None);
    assert!(changes.contains(&RegState::Retrying), "{changes:?}");
}
