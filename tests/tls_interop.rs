//! SIP over TLS end to end against the real `hotline serve` with `sip.tls_listen` on loopback
//! and a certificate for 127.0.0.1 minted here (rcgen, signed by a test CA):
//! - a baresip agent registers over TLS and is rung over its TLS connection when a SIPp
//!   caller (UDP) picks its group; it answers and the call is bridged (log and call record);
//! - a plain TCP client on the TLS port (a SIP message, garbage) is disconnected, and the
//!   service still answers over UDP;
//! - a TLS client's OPTIONS gets 200; SIGHUP swaps in a new certificate for new connections
//!   while an open connection keeps working, and a bad new pair leaves the old one in use;
//! - bad certificate files stop the start, naming the setting and the file;
//! - a trunk with `transport = "tls"` probes its carrier (a rustls server here) over TLS, and
//!   carriers with an expired certificate or one from another CA are refused with a reason.
//!
//! `scripts/test` installs SIPp (sip-tester) and baresip (baresip-core).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::baresip::{Baresip, BaresipOptions, BaresipPorts, Signalling};
use common::tls::{Pki, TlsCarrier, TlsClient};
use common::{free_port, http_get, log_field as field, Service, Sipp, SippStats};

/// Registration, ringing, answering, handshakes: each well within this on loopback.
const DEADLINE: Duration = Duration::from_secs(15);

/// The service with a TLS listener on a free loopback port (and `extra` settings).
fn tls_service(pki: &Pki, extra: &[(&str, &str)]) -> (Service, SocketAddr) {
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], free_port(true, false)));
    let listen = tls_addr.to_string();
    let mut env = vec![
        ("HOTLINE__SIP__TLS_LISTEN", listen.as_str()),
        ("HOTLINE__SIP__TLS_CERT", pki.cert_file.to_str().unwrap()),
        ("HOTLINE__SIP__TLS_KEY", pki.key_file.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    let service = Service::start(&env);
    service
        .wait_for_log_line(|l| l.contains("SIP listening on TLS"), DEADLINE)
        .expect("the service never said it listens on TLS");
    (service, tls_addr)
}

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-interop-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

// ---- tests ----------------------------------------------------------------------------------

/// A Lithuanian caller (SIPp over UDP) picks the group; its one registered agent, a baresip
/// phone registered over TLS, is rung over that connection, answers and is bridged.
#[test]
fn an_agent_registered_over_tls_is_rung_over_it_and_bridged() {
    let dir = test_dir("agent");
    let pki = Pki::mint(&dir);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents");
    let routing = fixtures.join("registered.toml");
    let credentials = fixtures.join("credentials.toml");
    let (service, tls_addr) = tls_service(
        &pki,
        &[
            ("HOTLINE__ROUTING", routing.to_str().unwrap()),
            ("HOTLINE__SIP__CREDENTIALS", credentials.to_str().unwrap()),
        ],
    );
    let anna = Baresip::start(
        &dir,
        &BaresipOptions {
            ports: BaresipPorts::pick(),
            user: "anna",
            password: "anna-secret",
            signalling: Signalling::Tls {
                addr: tls_addr,
                ca_file: pki.ca_file.clone(),
            },
            mediaenc: None,
            tone_hz: 440.0,
        },
    );
    let registered = service.wait_for_log_line(
        |l| l.contains("agent registration") && field(l, "user").as_deref() == Some("anna"),
        DEADLINE,
    );
    let registered = registered.unwrap_or_else(|| {
        panic!(
            "anna never registered; baresip said:\n{}",
            anna.lines().join("\n")
        )
    });
    assert_eq!(
        field(&registered, "transport").as_deref(),
        Some("TLS"),
        "{registered}"
    );

    let run = Sipp::new("agents_lt_talk.xml").run(&service);
    assert_eq!(
        run.stats,
        SippStats {
            successful: 1,
            failed: 0
        },
        "SIPp's call\n{}\nbaresip said:\n{}",
        run.diagnostics(),
        anna.lines().join("\n")
    );
    let log = service.log_lines();
    let ringing = log
        .iter()
        .find(|l| l.contains("ringing agent"))
        .expect("no agent was rung");
    assert!(ringing.contains("transport=tls"), "{ringing}");
    assert!(
        log.iter().any(|l| l.contains("agent answered: bridging")),
        "anna never answered; baresip said:\n{}",
        anna.lines().join("\n")
    );
    assert!(log.iter().any(|l| l.contains("media bridged")));
    assert!(
        anna.wait_for(|l| l.contains("Call established"), DEADLINE)
            .is_some(),
        "baresip never established the call:\n{}",
        anna.lines().join("\n")
    );

    // The caller's BYE reached anna over TLS too.
    assert!(
        anna.wait_for(|l| l.contains("terminated"), DEADLINE)
            .is_some(),
        "baresip's call never ended:\n{}",
        anna.lines().join("\n")
    );

    // The call record: answered by anna.
    let record = wait_for_record(&service);
    assert!(
        record["agent"].as_str().is_some_and(|a| a.contains("anna")),
        "{record}"
    );
    assert!(record["agent_answered"].is_string(), "{record}");
}

/// Plain TCP on the TLS port (a SIP message, then garbage) ends that connection with a log
/// line and nothing else: UDP is still answered.
#[test]
fn plain_text_on_the_tls_port_is_closed_and_the_service_goes_on() {
    let dir = test_dir("plain");
    let pki = Pki::mint(&dir);
    let (service, tls_addr) = tls_service(&pki, &[]);
    let plain_sip = b"OPTIONS sip:19118@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKplain\r\nContent-Length: 0\r\n\r\n";
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    for bytes in [&plain_sip[..], &garbage[..]] {
        let mut stream = TcpStream::connect_timeout(&tls_addr, DEADLINE).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        // The service may close before all is written: a reset is fine too.
        let _ = stream.write_all(bytes);
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert!(
            started.elapsed() < DEADLINE,
            "the connection stayed open ({read:?})"
        );
        assert!(
            !String::from_utf8_lossy(&rest).contains("SIP/2.0"),
            "answered in plain text: {}",
            String::from_utf8_lossy(&rest)
        );
    }
    let failures = service.wait_for_log_line(|l| l.contains("TLS handshake failed"), DEADLINE);
    assert!(failures.is_some(), "no log line about the failed handshake");

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(DEADLINE)).unwrap();
    let local = udp.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:19118@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKudpafter\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=udp\r\n\
         To: <sip:19118@127.0.0.1>\r\n\
         Call-ID: udp-after@tls-interop\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    udp.send_to(options.as_bytes(), service.sip_addr()).unwrap();
    let mut buffer = [0u8; 4096];
    let (len, _) = udp.recv_from(&mut buffer).expect("no answer over UDP");
    let answer = String::from_utf8_lossy(&buffer[..len]);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
}

/// OPTIONS over TLS get 200 on the same connection; SIGHUP brings a new certificate for new
/// connections while the open one goes on, and a broken new key changes nothing.
#[test]
fn options_over_tls_are_answered_and_sighup_swaps_the_certificate() {
    let dir = test_dir("options");
    let pki = Pki::mint(&dir);
    let first_cert = fs::read_to_string(&pki.cert_file).unwrap();
    let (service, tls_addr) = tls_service(&pki, &[]);

    let mut open = TlsClient::connect(&pki, tls_addr);
    let answer = open.options("first");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(answer.contains("SIP/2.0/TLS"), "{answer}");
    let first_der = open.server_certificate();
    assert!(first_cert.contains("BEGIN CERTIFICATE"));

    let second_der = pki.issue();
    assert_ne!(first_der, second_der);
    service.send_signal(libc::SIGHUP);
    service
        .wait_for_log_line(|l| l.contains("TLS certificate reloaded"), DEADLINE)
        .expect("SIGHUP did not reload the certificate");
    let mut fresh = TlsClient::connect(&pki, tls_addr);
    assert_eq!(fresh.server_certificate(), second_der, "old certificate");
    assert!(fresh.options("fresh").starts_with("SIP/2.0 200"));
    // The connection opened before the reload is still served.
    assert!(open.options("again").starts_with("SIP/2.0 200"));

    fs::write(&pki.key_file, "not a key\n").unwrap();
    service.send_signal(libc::SIGHUP);
    service
        .wait_for_log_line(|l| l.contains("TLS certificate not reloaded"), DEADLINE)
        .expect("a broken key was not reported");
    let after_bad = TlsClient::connect(&pki, tls_addr);
    assert_eq!(after_bad.server_certificate(), second_der);
}

/// A certificate or key the service cannot use stops the start with the setting and the file;
/// `sip.tls_listen` without a key is a settings error naming the key.
#[test]
fn a_bad_certificate_or_a_missing_key_stops_the_start() {
    let dir = test_dir("bad-start");
    let pki = Pki::mint(&dir);
    let garbage = dir.join("garbage.pem");
    fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n",
    )
    .unwrap();
    let garbage = garbage.to_str().unwrap();
    let key = pki.key_file.to_str().unwrap();
    let cert = pki.cert_file.to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("HOTLINE__SIP__TLS_CERT", garbage),
                ("HOTLINE__SIP__TLS_KEY", key),
            ],
            "sip.tls_cert",
        ),
        (
            &[
                ("HOTLINE__SIP__TLS_CERT", cert),
                ("HOTLINE__SIP__TLS_KEY", cert),
            ],
            "sip.tls_key",
        ),
        (&[("HOTLINE__SIP__TLS_CERT", cert)], "sip.tls_key"),
    ];
    for (settings, wanted) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HOTLINE__") {
                command.env_remove(&key);
            }
        }
        let output = command
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("HOTLINE__SIP__LISTEN", "127.0.0.1:0")
            .env("HOTLINE__HTTP__LISTEN", "127.0.0.1:0")
            .env("HOTLINE__SIP__TLS_LISTEN", "127.0.0.1:0")
            .env("HOTLINE__PID_FILE", dir.join("hotline.pid"))
            .env(
                "HOTLINE__DATABASE__URL",
                format!("sqlite://{}", dir.join("db").display()),
            )
            .env("HOTLINE__DATABASE__SPOOL", dir.join("spool.jsonl"))
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started with {settings:?}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("hotline: ") && last.contains(wanted),
            "{settings:?}: {stderr}"
        );
        let file = settings
            .iter()
            .find(|(key, _)| key.ends_with(&wanted[4..].to_ascii_uppercase()))
            .map(|(_, file)| *file);
        if let Some(file) = file {
            assert!(last.contains(file), "{settings:?}: {last}");
        }
    }
}

/// Trunks over TLS: the carrier whose certificate chains to `tls_ca` and names its address
/// gets OPTIONS over TLS and the trunk is up; an expired certificate and one from another CA
/// fail the handshake with a log line saying why, and nothing is sent to them.
#[test]
fn a_tls_trunk_is_probed_over_tls_and_bad_carrier_certificates_are_refused() {
    let dir = test_dir("trunk");
    let pki = Pki::mint(&dir);
    let good = TlsCarrier::start(pki.server(false));
    let expired = TlsCarrier::start(pki.server(true));
    let stranger = TlsCarrier::start(Pki::mint(&dir.join("stranger")).server(false));
    let mut config = String::new();
    for (name, carrier) in [
        ("good", &good),
        ("expired", &expired),
        ("stranger", &stranger),
    ] {
        config.push_str(&format!(
            "[trunks.{name}]\nhost = \"{}\"\ntransport = \"tls\"\ntls_ca = {:?}\n\
             options_interval = \"1s\"\n",
            carrier.addr, pki.ca_file
        ));
    }
    let service = Service::start_with_config(&config, &[]);

    let up = service.wait_for_log_line(
        |l| {
            l.contains("trunk keep-alive")
                && field(l, "trunk").as_deref() == Some("good")
                && field(l, "up").as_deref() == Some("true")
        },
        DEADLINE,
    );
    assert!(
        up.is_some(),
        "the TLS trunk never came up; the carrier got {:?}, handshake errors {:?}",
        good.requests(),
        good.handshake_errors()
    );
    let requests = good.requests();
    let options = requests.first().expect("no request reached the carrier");
    // (URI parameter values are case-insensitive; the carrier's URI is parsed and re-written.)
    let request_line = format!("options sip:{};transport=tls sip/2.0", good.addr);
    assert!(
        options.to_ascii_lowercase().starts_with(&request_line),
        "{options}"
    );
    assert!(options.contains("Via: SIP/2.0/TLS "), "{options}");

    for (carrier, reason) in [
        (&expired, "expired"),
        (&stranger, "invalid peer certificate"),
    ] {
        let port = format!("127.0.0.1:{}", carrier.addr.port());
        let refused = service.wait_for_log_line(
            |l| l.contains("TLS connection to a peer failed") && l.contains(&port),
            DEADLINE,
        );
        let refused = refused.unwrap_or_else(|| panic!("no log line about {port}"));
        assert!(refused.to_ascii_lowercase().contains(reason), "{refused}");
        assert!(carrier.requests().is_empty(), "{:?}", carrier.requests());
    }
    let down = service.wait_for_log_line(
        |l| {
            l.contains("trunk not answering OPTIONS")
                && field(l, "trunk").as_deref() == Some("expired")
        },
        DEADLINE,
    );
    assert!(
        down.is_some(),
        "the trunk with the expired certificate is not reported down"
    );
}

/// Waits (polling the API) for the first completed call record.
fn wait_for_record(service: &Service) -> serde_json::Value {
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Days::new(1);
    let to = today + chrono::Days::new(2);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let path = format!("/api/calls?from={from}&to={to}&limit=10");
        let (status, body) = http_get(service.http_addr(), &path, None);
        assert_eq!(status, 200, "{body}");
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(record) = listing["calls"].get(0) {
            return record.clone();
        }
        assert!(Instant::now() < deadline, "no call record: {body}");
        thread::sleep(Duration::from_millis(100));
    }
}
