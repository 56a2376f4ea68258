//! Certificates and TLS peers for the TLS tests: a test CA (rcgen) and the server
//! certificates it signs as PEM files, a blocking TLS client of the service (rustls), and a
//! carrier that answers SIP requests over TLS.
//! Not every test binary uses all of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
};
use tokio_rustls::rustls;

/// Reads and handshakes wait at most this.
const TIMEOUT: Duration = Duration::from_secs(15);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA and a certificate for 127.0.0.1 it signed, as PEM files.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Pki {
    /// A new CA (`ca.pem`) and a certificate for 127.0.0.1 (`cert.pem`, `key.pem`) in `dir`.
    pub fn mint(dir: &Path) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "hotline test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.join("ca.pem");
        fs::write(&ca_file, ca.pem()).unwrap();
        let pki = Pki {
            ca,
            ca_file,
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
        };
        pki.issue();
        pki
    }

    /// A new certificate for 127.0.0.1 and its key into `cert.pem`/`key.pem`; its DER.
    pub fn issue(&self) -> Vec<u8> {
        let (cert, key) = self.certificate(false);
        fs::write(&self.cert_file, &cert.1).unwrap();
        fs::write(&self.key_file, key).unwrap();
        cert.0
    }

    /// A certificate for 127.0.0.1 (expired in 2021 when `expired`): (DER, PEM) and key PEM.
    pub fn certificate(&self, expired: bool) -> ((Vec<u8>, String), String) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        ((cert.der().to_vec(), cert.pem()), key.serialize_pem())
    }

    /// A TLS client configuration that trusts the test CA.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A TLS server configuration with a certificate for 127.0.0.1 from this CA.
    pub fn server(&self, expired: bool) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let ((der, _), key) = self.certificate(expired);
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.into()], key)
            .unwrap();
        Arc::new(config)
    }
}

/// Reads one SIP message head (up to the blank line; the tests' messages have no body).
fn read_head(stream: &mut impl Read) -> Result<String, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => {
                return Err(format!(
                    "{other:?} after {:?}",
                    String::from_utf8_lossy(&head)
                ))
            }
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// One TLS connection to the service, SIP messages written and read through it.
pub struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    local: SocketAddr,
}

impl TlsClient {
    pub fn connect(pki: &Pki, addr: SocketAddr) -> TlsClient {
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let local = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let connection = rustls::ClientConnection::new(pki.client(), name).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .unwrap_or_else(|error| panic!("TLS handshake with the service: {error}"));
        }
        TlsClient { stream, local }
    }

    /// The certificate the service presented.
    pub fn server_certificate(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// Sends an OPTIONS and returns the response's head.
    pub fn options(&mut self, branch: &str) -> String {
        let local = self.local;
        let request = format!(
            "OPTIONS sip:19118@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@127.0.0.1>;tag={branch}\r\n\
             To: <sip:19118@127.0.0.1>\r\n\
             Call-ID: {branch}@tls-interop\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        self.stream.write_all(request.as_bytes()).unwrap();
        self.stream.flush().unwrap();
        read_head(&mut self.stream)
            .unwrap_or_else(|problem| panic!("no response to OPTIONS over TLS: {problem}"))
    }
}

/// A carrier's SIP server over TLS on loopback: answers every request with 200 OK on the
/// connection it came on, and keeps what it received and each handshake's outcome.
pub struct TlsCarrier {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub handshake_errors: Arc<Mutex<Vec<String>>>,
}

impl TlsCarrier {
    pub fn start(config: Arc<rustls::ServerConfig>) -> TlsCarrier {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handshake_errors = Arc::new(Mutex::new(Vec::new()));
        let (received, errors) = (requests.clone(), handshake_errors.clone());
        // Ends with the test process; each connection ends when the service closes it.
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (config, received, errors) = (config.clone(), received.clone(), errors.clone());
                thread::spawn(move || serve(stream, config, &received, &errors));
            }
        });
        TlsCarrier {
            addr,
            requests,
            handshake_errors,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn handshake_errors(&self) -> Vec<String> {
        self.handshake_errors.lock().unwrap().clone()
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    received: &Mutex<Vec<String>>,
    errors: &Mutex<Vec<String>>,
) {
    tcp.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let connection = rustls::ServerConnection::new(config).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        if let Err(error) = stream.conn.complete_io(&mut stream.sock) {
            errors.lock().unwrap().push(error.to_string());
            return;
        }
    }
    while let Ok(request) = read_head(&mut stream) {
        let header = |name: &str| {
            request
                .lines()
                .find(|line| {
                    line.split_once(':')
                        .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                })
                .unwrap_or_default()
                .to_owned()
        };
        let to = header("To");
        let to = if to.contains(";tag=") {
            to
        } else {
            format!("{to};tag=carrier")
        };
        let response = format!(
            "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{to}\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
            header("Via"),
            header("From"),
            header("Call-ID"),
            header("CSeq"),
        );
        received.lock().unwrap().push(request);
        if stream.write_all(response.as_bytes()).is_err() || stream.flush().is_err() {
            return;
        }
    }
}
