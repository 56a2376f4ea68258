//! TLS with certificates minted here (rcgen): loading and reloading the listener's pair,
//! handshakes that succeed, and the ones that must fail without harm (unknown or expired
//! certificate, wrong name, a peer that speaks no TLS or nothing at all).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for `names` signed by `ca` (PEM certificate, PEM key).
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str], expired: bool) -> (String, String) {
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_listeners_pair_loads_and_bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("test CA");
    let (cert, key) = leaf(&authority, &["127.0.0.1"], false);
    let cert_path = write(dir.path(), "cert.pem", &cert);
    let key_path = write(dir.path(), "key.pem", &key);
    assert!(ServerTls::load(&cert_path, &key_path).is_ok());

    let missing = dir.path().join("missing.pem");
    let garbage = write(dir.path(), "garbage.pem", "this is no PEM\n");
    let (_, other_key) = leaf(&authority, &["127.0.0.1"], false);
    let other_key = write(dir.path(), "other-key.pem", &other_key);
    let cases = [
        (&missing, &key_path, "sip.tls_cert"),
        (&garbage, &key_path, "sip.tls_cert"),
        (&cert_path, &garbage, "sip.tls_key"),
        (&cert_path, &missing, "sip.tls_key"),
        (&cert_path, &other_key, "usable pair"),
    ];
    for (cert, key, wanted) in cases {
        let Err(message) = ServerTls::load(cert, key) else {
            panic!("{} and {} loaded", cert.display(), key.display());
        };
        assert!(message.contains(wanted), "{message}");
        let named = if wanted == "sip.tls_key" { key } else { cert };
        assert!(message.contains(&named.display().to_string()), "{message}");
    }
}

#[test]
fn a_reload_swaps_a_good_pair_and_keeps_the_old_one_for_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("test CA");
    let (cert, key) = leaf(&authority, &["127.0.0.1"], false);
    let cert_path = write(dir.path(), "cert.pem", &cert);
    let key_path = write(dir.path(), "key.pem", &key);
    let server = ServerTls::load(&cert_path, &key_path).unwrap();
    let first = server.config.load_full();

    std::fs::write(&key_path, "broken").unwrap();
    server.reload();
    assert!(Arc::ptr_eq(&first, &server.config.load_full()));

    let (cert, key) = leaf(&authority, &["127.0.0.1"], false);
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    server.reload();
    assert!(!Arc::ptr_eq(&first, &server.config.load_full()));
}

/// A TLS listener on loopback with `cert`/`key`; what each accepted connection's upgrade gave
/// (and, when it worked, the first bytes read from it).
async fn listener(
    cert: &str,
    key: &str,
    timeout: Duration,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<Option<Vec<u8>>>) {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "cert.pem", cert);
    let key = write(dir.path(), "key.pem", key);
    let accept = ServerTls::load(&cert, &key).unwrap().acceptor(timeout);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, reports) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let accept = accept.clone();
            let report = report.clone();
            tokio::spawn(async move {
                let outcome = match accept.upgrade(stream, peer).await {
                    Some(mut stream) => {
                        let mut buffer = vec![0u8; 64];
                        let len = stream.read(&mut buffer).await.unwrap_or(0);
                        buffer.truncate(len);
                        Some(buffer)
                    }
                    None => None,
                };
                let _ = report.send(outcome).await;
            });
        }
    });
    (addr, reports)
}

/// Clients that know one TLS trunk at `host` with `ca` as its CA.
fn trunk_clients(host: &str, ca: &str) -> Clients {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", ca);
    let settings = write(
        dir.path(),
        "hotline.toml",
        &format!("[trunks.carrier]\nhost = \"{host}\"\ntransport = \"tls\"\ntls_ca = {ca:?}\n"),
    );
    let settings = Settings::load(Some(&settings)).unwrap();
    Clients::from_settings(&settings).unwrap()
}

async fn dial(clients: &Clients, addr: SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut stream = clients.dial(addr).handshake(stream, TIMEOUT).await?;
    stream.write_all(b"OPTIONS").await.unwrap();
    stream.flush().await.unwrap();
    Ok(())
}

#[tokio::test]
async fn a_trunk_is_reached_when_its_certificate_chains_to_its_ca_and_names_it() {
    let authority = ca("carrier CA");
    let (cert, key) = leaf(&authority, &["127.0.0.1", "sip.carrier.test"], false);
    let (addr, mut accepted) = listener(&cert, &key, TIMEOUT).await;

    // By address: the IP SAN.
    let clients = trunk_clients(&addr.to_string(), &authority.pem());
    dial(&clients, addr).await.unwrap();
    assert_eq!(accepted.recv().await, Some(Some(b"OPTIONS".to_vec())));

    // By name, once the name resolved to the address.
    let host = format!("sip.carrier.test:{}", addr.port());
    let mut clients = trunk_clients(&host, &authority.pem());
    clients.resolved(&host, addr);
    dial(&clients, addr).await.unwrap();
    assert_eq!(accepted.recv().await, Some(Some(b"OPTIONS".to_vec())));

    // Another CA's certificate is refused, and so is a name the certificate lacks.
    let stranger = ca("someone else");
    let error = dial(&trunk_clients(&addr.to_string(), &stranger.pem()), addr)
        .await
        .unwrap_err();
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(accepted.recv().await, Some(None));
    let host = format!("sip.other.test:{}", addr.port());
    let mut clients = trunk_clients(&host, &authority.pem());
    clients.resolved(&host, addr);
    let error = dial(&clients, addr).await.unwrap_err();
    assert!(error.contains("sip.other.test"), "{error}");
    assert_eq!(accepted.recv().await, Some(None));
}

#[tokio::test]
async fn an_expired_certificate_is_refused_with_a_reason() {
    let authority = ca("carrier CA");
    let (cert, key) = leaf(&authority, &["127.0.0.1"], true);
    let (addr, mut accepted) = listener(&cert, &key, TIMEOUT).await;
    let clients = trunk_clients(&addr.to_string(), &authority.pem());
    let error = dial(&clients, addr).await.unwrap_err();
    assert!(error.to_lowercase().contains("expired"), "{error}");
    assert_eq!(accepted.recv().await, Some(None));
}

#[tokio::test]
async fn plain_text_and_silence_on_the_tls_port_end_the_connection() {
    let authority = ca("test CA");
    let (cert, key) = leaf(&authority, &["127.0.0.1"], false);
    let (addr, mut accepted) = listener(&cert, &key, Duration::from_millis(300)).await;

    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(accepted.recv().await, Some(None));
    // The service closes the connection: the client reads an alert or nothing, then EOF.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, plain.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection stayed open");

    let _silent = TcpStream::connect(addr).await.unwrap();
    let waited = tokio::time::timeout(TIMEOUT, accepted.recv()).await;
    assert_eq!(waited.ok().flatten(), Some(None));
}

#[test]
fn a_trunk_ca_file_without_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", "no certificates here\n");
    let settings = write(
        dir.path(),
        "hotline.toml",
        &format!("[trunks.c]\nhost = \"192.0.2.1\"\ntransport = \"tls\"\ntls_ca = {ca:?}\n"),
    );
    let settings = Settings::load(Some(&settings)).unwrap();
    let Err(message) = Clients::from_settings(&settings) else {
        panic!("a CA file without certificates was accepted");
    };
    assert!(
        message.contains("trunks.c.tls_ca") && message.contains(&ca.display().to_string()),
        "{message}"
    );
}
