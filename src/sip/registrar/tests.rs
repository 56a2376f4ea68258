use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::*;
use crate::sip::transport::TransportKind;

fn credentials() -> Credentials {
    let text = format!(
        "realm = \"hotline\"\n[users]\njonas = \"{}\"\nona = \"{}\"\n",
        Credentials::ha1("jonas", "hotline", "s3cret"),
        Credentials::ha1("ona", "hotline", "pa55")
    );
    Credentials::parse(&text).unwrap()
}

fn flow() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: "127.0.0.1:5080".parse().unwrap(),
    }
}

fn hex_md5(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// What a softphone sends after a challenge (RFC 2617 with qop=auth).
fn authorization(user: &str, password: &str, nonce: &str) -> String {
    let uri = "sip:127.0.0.1:5060";
    let ha1 = hex_md5(&format!("{user}:hotline:{password}"));
    let ha2 = hex_md5(&format!("REGISTER:{uri}"));
    let response = hex_md5(&format!("{ha1}:{nonce}:00000001:abc123:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc123\""
    )
}

fn register(aor_user: &str, contact: &str, extra: &str) -> rsip::Request {
    let text = format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-r\r\n\
         From: <sip:{aor_user}@127.0.0.1>;tag=a\r\n\
         To: <sip:{aor_user}@127.0.0.1>\r\n\
         Call-ID: reg-1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: {contact}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    );
    match message::parse_datagram(text.as_bytes()).unwrap() {
        rsip::SipMessage::Request(request) => request,
        rsip::SipMessage::Response(_) => unreachable!(),
    }
}

fn challenged_nonce(outcome: RegisterOutcome) -> String {
    let RegisterOutcome::Challenge(header) = outcome else {
        panic!("expected a challenge, got {outcome:?}")
    };
    header
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn digest_challenge_then_registration_with_expiry() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let request = register("jonas", "<sip:jonas@127.0.0.1:5080>;expires=120", "");
    let nonce = challenged_nonce(registrar.register(t0, &request, flow(), "n1".into()));
    assert_eq!(nonce, "n1");
    let auth = format!(
        "Authorization: {}\r\n",
        authorization("jonas", "s3cret", &nonce)
    );
    let request = register("jonas", "<sip:jonas@127.0.0.1:5080>;expires=120", &auth);
    assert_eq!(
        registrar.register(t0, &request, flow(), "n2".into()),
        RegisterOutcome::Registered {
            user: "jonas".into(),
            contacts: vec![("sip:jonas@127.0.0.1:5080".into(), 120)]
        }
    );
    assert!(registrar.is_registered("jonas", t0 + Duration::from_secs(119)));
    assert!(
        !registrar.is_registered("jonas", t0 + Duration::from_secs(120)),
        "expiry honoured"
    );
    assert_eq!(registrar.next_expiry(), Some(t0 + Duration::from_secs(120)));
    assert_eq!(
        registrar.expire(t0 + Duration::from_secs(121)),
        vec!["jonas".to_owned()]
    );
}

#[test]
fn wrong_password_unknown_user_and_foreign_aor_are_forbidden() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let nonce = challenged_nonce(registrar.register(
        t0,
        &register("jonas", "<sip:j@127.0.0.1>", ""),
        flow(),
        "n".into(),
    ));
    let wrong = format!(
        "Authorization: {}\r\n",
        authorization("jonas", "guess", &nonce)
    );
    let outcome = registrar.register(
        t0,
        &register("jonas", "<sip:j@127.0.0.1>", &wrong),
        flow(),
        "m".into(),
    );
    assert_eq!(outcome, RegisterOutcome::Forbidden);
    let stranger = format!(
        "Authorization: {}\r\n",
        authorization("petras", "x", &nonce)
    );
    let outcome = registrar.register(
        t0,
        &register("petras", "<sip:p@127.0.0.1>", &stranger),
        flow(),
        "m".into(),
    );
    assert_eq!(outcome, RegisterOutcome::Forbidden);
    // Ona's valid credentials do not let her register Jonas's address.
    let ona = format!(
        "Authorization: {}\r\n",
        authorization("ona", "pa55", &nonce)
    );
    let outcome = registrar.register(
        t0,
        &register("jonas", "<sip:o@127.0.0.1>", &ona),
        flow(),
        "m".into(),
    );
    assert_eq!(outcome, RegisterOutcome::Forbidden);
}

#[test]
fn an_old_nonce_gets_a_stale_challenge() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let nonce = challenged_nonce(registrar.register(
        t0,
        &register("jonas", "<sip:j@127.0.0.1>", ""),
        flow(),
        "old".into(),
    ));
    let auth = format!(
        "Authorization: {}\r\n",
        authorization("jonas", "s3cret", &nonce)
    );
    let later = t0 + NONCE_LIFETIME + Duration::from_secs(1);
    let RegisterOutcome::Challenge(header) = registrar.register(
        later,
        &register("jonas", "<sip:j@127.0.0.1>", &auth),
        flow(),
        "new".into(),
    ) else {
        panic!("expected a challenge")
    };
    assert!(
        header.contains("stale=true") && header.contains("nonce=\"new\""),
        "{header}"
    );
}

fn registered(
    registrar: &mut Registrar,
    now: Instant,
    contact: &str,
    extra: &str,
    nonce: &str,
) -> RegisterOutcome {
    let first = registrar.register(
        now,
        &register("jonas", contact, extra),
        flow(),
        nonce.into(),
    );
    let nonce = challenged_nonce(first);
    let auth = format!(
        "{extra}Authorization: {}\r\n",
        authorization("jonas", "s3cret", &nonce)
    );
    registrar.register(
        now,
        &register("jonas", contact, &auth),
        flow(),
        "unused".into(),
    )
}

#[test]
fn several_contacts_quoted_params_unregister_and_wildcard() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let two = "<sip:jonas@127.0.0.1:5080>;+sip.instance=\"<urn:uuid:1;x>\", <sip:jonas@127.0.0.1:5082>;expires=600";
    let RegisterOutcome::Registered { contacts, .. } =
        registered(&mut registrar, t0, two, "Expires: 300\r\n", "a")
    else {
        panic!()
    };
    assert_eq!(
        contacts,
        vec![
            ("sip:jonas@127.0.0.1:5080".to_owned(), 300),
            ("sip:jonas@127.0.0.1:5082".to_owned(), 600)
        ]
    );
    let RegisterOutcome::Registered { contacts, .. } = registered(
        &mut registrar,
        t0,
        "<sip:jonas@127.0.0.1:5080>;expires=0",
        "",
        "b",
    ) else {
        panic!()
    };
    assert_eq!(
        contacts,
        vec![("sip:jonas@127.0.0.1:5082".to_owned(), 600)],
        "one contact unregistered"
    );
    assert_eq!(
        registered(
            &mut registrar,
            t0,
            "<sip:jonas@127.0.0.1:5084>;expires=10",
            "",
            "c"
        ),
        RegisterOutcome::IntervalTooBrief(MIN_EXPIRES)
    );
    assert_eq!(
        registered(&mut registrar, t0, "*", "", "d"),
        RegisterOutcome::BadRequest("Contact * needs Expires: 0")
    );
    let outcome = registered(&mut registrar, t0, "*", "Expires: 0\r\n", "e");
    assert_eq!(
        outcome,
        RegisterOutcome::Registered {
            user: "jonas".into(),
            contacts: vec![]
        }
    );
    assert!(!registrar.is_registered("jonas", t0));
}

#[test]
fn credentials_files_are_checked() {
    assert!(Credentials::parse("[users]\na = \"x\"")
        .unwrap_err()
        .contains("realm"));
    assert!(Credentials::parse("realm = \"r\"\n[users]\na = \"short\"")
        .unwrap_err()
        .contains("users.a"));
    assert_eq!(Credentials::ha1("jonas", "hotline", "s3cret").len(), 32);
}
