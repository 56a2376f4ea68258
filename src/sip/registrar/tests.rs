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

fn source() -> Peer {
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
    authorization_with(user, password, nonce, 1, "sip:127.0.0.1:5060")
}

fn authorization_with(user: &str, password: &str, nonce: &str, nc: u32, uri: &str) -> String {
    let ha1 = hex_md5(&format!("{user}:hotline:{password}"));
    let ha2 = hex_md5(&format!("REGISTER:{uri}"));
    let response = hex_md5(&format!("{ha1}:{nonce}:{nc:08x}:abc123:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc:08x}, cnonce=\"abc123\""
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
    let nonce = challenged_nonce(registrar.register(t0, &request, source(), "n1".into()));
    assert_eq!(nonce, "n1");
    let auth = format!(
        "Authorization: {}\r\n",
        authorization("jonas", "s3cret", &nonce)
    );
    let request = register("jonas", "<sip:jonas@127.0.0.1:5080>;expires=120", &auth);
    assert_eq!(
        registrar.register(t0, &request, source(), "n2".into()),
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
    let mut attempt = |aor: &str, user: &str, password: &str| {
        let nonce = challenged_nonce(registrar.register(
            t0,
            &register(aor, "<sip:j@127.0.0.1>", ""),
            source(),
            format!("n-{user}-{password}"),
        ));
        let auth = format!(
            "Authorization: {}\r\n",
            authorization(user, password, &nonce)
        );
        registrar.register(
            t0,
            &register(aor, "<sip:j@127.0.0.1>", &auth),
            source(),
            "m".into(),
        )
    };
    assert_eq!(
        attempt("jonas", "jonas", "guess"),
        RegisterOutcome::Forbidden
    );
    assert_eq!(attempt("petras", "petras", "x"), RegisterOutcome::Forbidden);
    // Ona's valid credentials do not let her register Jonas's address.
    assert_eq!(attempt("jonas", "ona", "pa55"), RegisterOutcome::Forbidden);
    assert!(!registrar.is_registered("jonas", t0));
}

#[test]
fn an_old_nonce_gets_a_stale_challenge() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let nonce = challenged_nonce(registrar.register(
        t0,
        &register("jonas", "<sip:j@127.0.0.1>", ""),
        source(),
        "old".into(),
    ));
    let auth = format!(
        "Authorization: {}\r\n",
        authorization("jonas", "s3cret", &nonce)
    );
    let later = t0 + AuthPolicy::default().nonce_lifetime + Duration::from_secs(1);
    let RegisterOutcome::Challenge(header) = registrar.register(
        later,
        &register("jonas", "<sip:j@127.0.0.1>", &auth),
        source(),
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
        source(),
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
        source(),
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

fn peer(addr: &str) -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: addr.parse().unwrap(),
    }
}

/// A challenge to `from`, then the answer with `password`, `nc` and `uri`: the outcome and
/// the Authorization header sent (for replaying it).
fn login(
    registrar: &mut Registrar,
    now: Instant,
    from: Peer,
    user: &str,
    password: &str,
    nonce: &str,
) -> (RegisterOutcome, String) {
    let contact = format!("<sip:{user}@{}>", from.addr);
    let nonce = challenged_nonce(registrar.register(
        now,
        &register(user, &contact, ""),
        from,
        nonce.into(),
    ));
    let auth = format!(
        "Authorization: {}\r\n",
        authorization(user, password, &nonce)
    );
    let outcome = registrar.register(now, &register(user, &contact, &auth), from, "next".into());
    (outcome, auth)
}

fn contacts_of(registrar: &Registrar, user: &str, now: Instant) -> Vec<String> {
    registrar
        .contacts(user, now)
        .iter()
        .map(|binding| binding.contact.clone())
        .collect()
}

#[test]
fn a_captured_authorization_replayed_from_elsewhere_is_refused_and_changes_nothing() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let agent = peer("127.0.0.4:5080");
    let (outcome, captured) = login(&mut registrar, t0, agent, "jonas", "s3cret", "n1");
    assert!(matches!(outcome, RegisterOutcome::Registered { .. }));
    let before = contacts_of(&registrar, "jonas", t0);
    assert_eq!(before, vec!["sip:jonas@127.0.0.4:5080".to_owned()]);

    let attacker = peer("127.0.0.3:6666");
    let add = register("jonas", "<sip:evil@127.0.0.3:6666>", &captured);
    let wipe = register("jonas", "*", &format!("Expires: 0\r\n{captured}"));
    for request in [&add, &wipe] {
        let outcome = registrar.register(t0, request, attacker, "x".into());
        assert!(
            matches!(&outcome, RegisterOutcome::Challenge(h) if !h.contains("stale")),
            "{outcome:?}"
        );
        // The same bytes from the agent's own address (spoofed UDP): the count was used.
        let outcome = registrar.register(t0, request, agent, "y".into());
        assert!(
            matches!(outcome, RegisterOutcome::Challenge(_)),
            "{outcome:?}"
        );
    }
    assert_eq!(contacts_of(&registrar, "jonas", t0), before);
    assert_eq!(registrar.security_stats(t0).nonce_replays, 4);
    assert_eq!(registrar.security_stats(t0).auth_failures, 0);
}

#[test]
fn nonce_counts_must_increase() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let agent = source();
    let (_, _) = login(&mut registrar, t0, agent, "jonas", "s3cret", "n1");
    let uri = "sip:127.0.0.1:5060";
    let with_nc = |nc: u32| {
        format!(
            "Authorization: {}\r\n",
            authorization_with("jonas", "s3cret", "n1", nc, uri)
        )
    };
    let contact = "<sip:jonas@127.0.0.1:5080>";
    let outcome = registrar.register(
        t0,
        &register("jonas", contact, &with_nc(3)),
        agent,
        "a".into(),
    );
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
    for stale_count in [3, 2] {
        let outcome = registrar.register(
            t0,
            &register("jonas", contact, &with_nc(stale_count)),
            agent,
            "b".into(),
        );
        assert!(
            matches!(outcome, RegisterOutcome::Challenge(_)),
            "nc {stale_count}: {outcome:?}"
        );
    }
    let outcome = registrar.register(
        t0,
        &register("jonas", contact, &with_nc(4)),
        agent,
        "c".into(),
    );
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
}

#[test]
fn the_digest_uri_must_be_the_request_uri() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let nonce = challenged_nonce(registrar.register(
        t0,
        &register("jonas", "<sip:j@127.0.0.1>", ""),
        source(),
        "n".into(),
    ));
    let elsewhere = format!(
        "Authorization: {}\r\n",
        authorization_with("jonas", "s3cret", &nonce, 1, "sip:other.example.com")
    );
    assert_eq!(
        registrar.register(
            t0,
            &register("jonas", "<sip:j@127.0.0.1>", &elsewhere),
            source(),
            "m".into()
        ),
        RegisterOutcome::BadRequest("Digest URI Mismatch")
    );
    assert!(!registrar.is_registered("jonas", t0));
    assert_eq!(registrar.security_stats(t0).uri_mismatches, 1);
}

#[test]
fn an_unknown_authorization_scheme_is_challenged() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let request = register(
        "jonas",
        "<sip:j@127.0.0.1>",
        "Authorization: NoOneKnowsThisScheme opaque-data=here\r\n",
    );
    let outcome = registrar.register(t0, &request, source(), "n".into());
    assert!(
        matches!(outcome, RegisterOutcome::Challenge(_)),
        "{outcome:?}"
    );
}

#[test]
fn guessing_bans_the_guesser_not_the_agent_and_the_ban_expires() {
    let t0 = Instant::now();
    let policy = AuthPolicy::default();
    let mut registrar = Registrar::new(credentials());
    let attacker = peer("127.0.0.3:5070");
    for guess in 0..policy.max_failures {
        let (outcome, _) = login(
            &mut registrar,
            t0,
            attacker,
            "jonas",
            &format!("pw{guess}"),
            &format!("g{guess}"),
        );
        assert_eq!(outcome, RegisterOutcome::Forbidden);
    }
    // Banned: even the right password is refused, and no challenge is handed out any more.
    let (outcome, _) = login(&mut registrar, t0, attacker, "jonas", "s3cret", "late");
    assert_eq!(outcome, RegisterOutcome::Forbidden);
    assert_eq!(registrar.security_stats(t0).current_bans, 1);
    assert_eq!(
        registrar.bans(t0),
        vec![(
            BanKey::UserAt("jonas".into(), attacker.addr.ip()),
            t0 + policy.ban_time
        )]
    );
    // The agent at its own address logs in meanwhile; so does Ona from the attacker's address.
    let (outcome, _) = login(&mut registrar, t0, source(), "jonas", "s3cret", "agent");
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
    let (outcome, _) = login(&mut registrar, t0, attacker, "ona", "pa55", "ona");
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
    // After the ban time the right password works from there again.
    let later = t0 + policy.ban_time;
    let (outcome, _) = login(&mut registrar, later, attacker, "jonas", "s3cret", "after");
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
    assert_eq!(registrar.security_stats(later).current_bans, 0);
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let t0 = Instant::now();
    let policy = AuthPolicy::default();
    let mut registrar = Registrar::new(credentials());
    let attacker = peer("127.0.0.3:5070");
    for guess in 0..(policy.max_failures - 1) * 2 {
        // Spread out: never max_failures within one window.
        let at = t0 + policy.failure_window / (policy.max_failures - 1) * guess;
        let (outcome, _) = login(
            &mut registrar,
            at,
            attacker,
            "jonas",
            "bad",
            &format!("w{guess}"),
        );
        assert_eq!(outcome, RegisterOutcome::Forbidden);
    }
    assert_eq!(registrar.security_stats(t0).bans, 0);
}

#[test]
fn known_and_unknown_users_get_identical_answers_and_one_address_is_banned_for_all() {
    let t0 = Instant::now();
    let policy = AuthPolicy::default();
    let mut registrar = Registrar::new(credentials());
    let outcomes = |registrar: &mut Registrar, from: Peer, user: &str| -> Vec<RegisterOutcome> {
        (0..policy.max_failures + 2)
            .map(|guess| {
                let (outcome, _) = login(
                    registrar,
                    t0,
                    from,
                    user,
                    "wrong",
                    &format!("{user}{guess}"),
                );
                match outcome {
                    // Challenges differ only by their nonce, which is ours to choose.
                    RegisterOutcome::Challenge(h) => {
                        RegisterOutcome::Challenge(h.replace(&format!("{user}{guess}"), "N"))
                    }
                    other => other,
                }
            })
            .collect()
    };
    let known = outcomes(&mut registrar, peer("127.0.0.5:1"), "jonas");
    let unknown = outcomes(&mut registrar, peer("127.0.0.6:1"), "nobody");
    assert_eq!(known, unknown);
    assert!(known.iter().all(|o| *o == RegisterOutcome::Forbidden));

    // Many names from one address: the address is banned, whatever name comes next.
    let scanner = peer("127.0.0.7:1");
    for n in 0..policy.max_failures_per_address {
        let (outcome, _) = login(
            &mut registrar,
            t0,
            scanner,
            &format!("u{n}"),
            "x",
            &format!("s{n}"),
        );
        assert_eq!(outcome, RegisterOutcome::Forbidden);
    }
    let first = registrar.register(
        t0,
        &register("ona", "<sip:o@127.0.0.7>", ""),
        scanner,
        "z".into(),
    );
    assert_eq!(
        first,
        RegisterOutcome::Forbidden,
        "no challenge for a banned address"
    );
    assert!(registrar
        .bans(t0)
        .contains(&(BanKey::Address(scanner.addr.ip()), t0 + policy.ban_time)));
    assert_eq!(registrar.lift_ban(scanner.addr.ip()), 1);
    let (outcome, _) = login(&mut registrar, t0, scanner, "ona", "pa55", "lifted");
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
}

#[test]
fn a_blind_spoofer_cannot_get_an_address_banned() {
    // Failures count only with a nonce sent to that address: someone who never receives our
    // challenges (forged source) only gets new challenges, never a ban on the victim.
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let victim = peer("127.0.0.4:5080");
    for guess in 0..50 {
        let auth = format!(
            "Authorization: {}\r\n",
            authorization("jonas", "guess", &format!("forged{guess}"))
        );
        let outcome = registrar.register(
            t0,
            &register("jonas", "<sip:j@127.0.0.4>", &auth),
            victim,
            format!("c{guess}"),
        );
        assert!(matches!(outcome, RegisterOutcome::Challenge(_)));
    }
    assert_eq!(registrar.security_stats(t0).auth_failures, 0);
    let (outcome, _) = login(&mut registrar, t0, victim, "jonas", "s3cret", "real");
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
}

#[test]
fn security_log_values_cannot_forge_fields() {
    assert_eq!(log_safe("jonas"), "jonas");
    assert_eq!(log_safe("a b=c\nSECURITY"), "a?b?c?SECURITY");
    assert_eq!(log_safe(""), "-");
    assert_eq!(log_safe(&"x".repeat(100)).len(), 64);
}

#[test]
fn a_flood_of_challenges_from_one_address_keeps_other_addresses_nonces() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new(credentials());
    let agent = peer("127.0.0.4:5080");
    let nonce = challenged_nonce(registrar.register(
        t0,
        &register("jonas", "<sip:jonas@127.0.0.4:5080>", ""),
        agent,
        "agent-nonce".into(),
    ));
    let flooder = peer("127.0.0.3:5070");
    for n in 0..20_000 {
        registrar.register(
            t0,
            &register("x", "<sip:x@127.0.0.3>", ""),
            flooder,
            format!("f{n}"),
        );
    }
    assert!(registrar.nonces.len() <= 1 + MAX_NONCES_PER_SOURCE);
    let auth = format!(
        "Authorization: {}\r\n",
        authorization("jonas", "s3cret", &nonce)
    );
    let outcome = registrar.register(
        t0,
        &register("jonas", "<sip:jonas@127.0.0.4:5080>", &auth),
        agent,
        "unused".into(),
    );
    assert!(
        matches!(outcome, RegisterOutcome::Registered { .. }),
        "{outcome:?}"
    );
}
