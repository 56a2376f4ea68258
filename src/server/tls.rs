//! SIP over TLS (rustls with the ring provider; no OpenSSL). The listener's certificate and
//! key (`sip.tls_cert`, `sip.tls_key`, PEM) make a server configuration held in an `ArcSwap`:
//! SIGHUP reads them again and swaps it, so new handshakes use the new certificate while
//! connections already up keep theirs (a bad new pair is logged and the old one stays).
//! Accepted connections shake hands under `tcp.message_timeout` inside their connection slot;
//! a failed or slow handshake is one log line and a freed slot, never more.
//!
//! Outgoing connections (trunks with `transport = "tls"`, agents whose URI says `sips:` or
//! `transport=tls` with no connection up) check the server's certificate against the system's
//! roots, or a trunk's `tls_ca`, and its name: the trunk's host name, else the IP address
//! (an IP SAN) the connection goes to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, error, info, warn};

use super::tcp::Upgrade;
use crate::settings::{split_host_port, Settings};
use crate::sip::transport::TransportKind;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The listener's certificate, as loaded now, and where it is read from again on SIGHUP.
pub(super) struct ServerTls {
    config: Arc<ArcSwap<ServerConfig>>,
    cert: PathBuf,
    key: PathBuf,
}

impl ServerTls {
    /// Reads `sip.tls_cert` and `sip.tls_key`; the error names the setting and the file.
    pub(super) fn load(cert: &Path, key: &Path) -> Result<ServerTls, String> {
        let config = server_config(cert, key)?;
        Ok(ServerTls {
            config: Arc::new(ArcSwap::from_pointee(config)),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// SIGHUP: the files again; on any problem the certificate in use stays.
    pub(super) fn reload(&self) {
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(problem) => {
                error!("TLS certificate not reloaded, the previous one stays in use: {problem}")
            }
        }
    }

    /// The upgrade accepted connections go through: a handshake within `timeout`.
    pub(super) fn acceptor(&self, timeout: Duration) -> Accept {
        Accept {
            config: self.config.clone(),
            timeout,
            failures: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The certificate chain and key as a rustls server configuration.
fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let read_error = |setting: &str, path: &Path, error: &dyn std::fmt::Display| {
        format!("{setting}: cannot use {}: {error}", path.display())
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| read_error("sip.tls_cert", cert, &pem_problem(error, "certificate")))?;
    if chain.is_empty() {
        return Err(read_error(
            "sip.tls_cert",
            cert,
            &"no PEM certificate in it",
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| read_error("sip.tls_key", key, &pem_problem(error, "private key")))?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS set-up: {error}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|error| {
            format!(
                "sip.tls_cert/sip.tls_key: {} and {} do not make a usable pair: {error}",
                cert.display(),
                key.display()
            )
        })
}

/// A PEM reading error in words ("no items found" says little about a key file).
fn pem_problem(error: rustls_pki_types::pem::Error, wanted: &str) -> String {
    match error {
        rustls_pki_types::pem::Error::NoItemsFound => format!("no PEM {wanted} in it"),
        other => other.to_string(),
    }
}

/// Accepted connections' TLS handshake.
#[derive(Clone)]
pub(super) struct Accept {
    config: Arc<ArcSwap<ServerConfig>>,
    timeout: Duration,
    /// Failed handshakes since start: the first and every thousandth are logged at info, so a
    /// scan cannot flood the log.
    failures: Arc<AtomicU64>,
}

impl Upgrade for Accept {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;
    const TRANSPORT: TransportKind = TransportKind::Tls;

    async fn upgrade(&self, stream: TcpStream, peer: SocketAddr) -> Option<Self::Stream> {
        let acceptor = TlsAcceptor::from(self.config.load_full());
        let reason = match tokio::time::timeout(self.timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("not finished within {:?}", self.timeout),
        };
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures % 1000 == 1 {
            info!(%peer, %reason, failures, "TLS handshake failed; connection closed");
        } else {
            debug!(%peer, %reason, failures, "TLS handshake failed; connection closed");
        }
        None
    }
}

/// How to shake hands with one server we connect to.
pub(super) struct Dial {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Dial {
    /// The client handshake within `timeout`; the error says why (an expired or unknown
    /// certificate, a wrong name, no answer).
    pub(super) async fn handshake(
        self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = name_text(&self.name);
        match tokio::time::timeout(timeout, self.connector.connect(self.name, stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(format!("TLS handshake with {name} failed: {error}")),
            Err(_) => Err(format!(
                "TLS handshake with {name} not finished within {timeout:?}"
            )),
        }
    }
}

fn name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(name) => name.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => "the server".to_owned(),
    }
}

/// A trunk's host as TLS checks it: its name (or address), and the roots to check against.
#[derive(Clone)]
struct Target {
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

/// The servers we connect to over TLS and how each is checked.
pub(super) struct Clients {
    /// The system's roots, read at the first use.
    system: OnceLock<Arc<ClientConfig>>,
    /// TLS trunks' hosts (`host`, `backup_host` as written), until their address is known.
    by_host: HashMap<String, Target>,
    /// Addresses of TLS trunks' hosts.
    by_addr: HashMap<SocketAddr, Target>,
}

impl Clients {
    /// The TLS trunks: each `tls_ca` read now (a bad file stops the start, naming it).
    pub(super) fn from_settings(settings: &Settings) -> Result<Clients, String> {
        let mut clients = Clients {
            system: OnceLock::new(),
            by_host: HashMap::new(),
            by_addr: HashMap::new(),
        };
        for (name, trunk) in &settings.trunks {
            if TransportKind::from(trunk.transport) != TransportKind::Tls {
                continue;
            }
            let config = match &trunk.tls_ca {
                Some(path) => Arc::new(client_config(ca_roots(path).map_err(|error| {
                    format!(
                        "trunks.{name}.tls_ca: cannot use {}: {error}",
                        path.display()
                    )
                })?)),
                None => clients.system_config(),
            };
            for host in std::iter::once(&trunk.host).chain(&trunk.backup_host) {
                let Some((server, port)) = split_host_port(host) else {
                    continue;
                };
                let name = server_name(server)
                    .ok_or_else(|| format!("trunks.{name}: `{host}` is no TLS server name"))?;
                let target = Target {
                    name,
                    config: config.clone(),
                };
                if let Ok(ip) = server.parse::<IpAddr>() {
                    let port = port.unwrap_or(TransportKind::Tls.default_port());
                    clients
                        .by_addr
                        .insert(SocketAddr::new(ip, port), target.clone());
                }
                clients.by_host.insert(host.clone(), target);
            }
        }
        Ok(clients)
    }

    /// A trunk host's name resolved: connections to that address check that name.
    pub(super) fn resolved(&mut self, host: &str, addr: SocketAddr) {
        if let Some(target) = self.by_host.get(host) {
            self.by_addr.insert(addr, target.clone());
        }
    }

    /// How to dial `addr`: as a trunk's host, else (an agent's phone) by its IP address
    /// against the system's roots.
    pub(super) fn dial(&self, addr: SocketAddr) -> Dial {
        let target = self.by_addr.get(&addr).cloned().unwrap_or_else(|| Target {
            name: ServerName::IpAddress(addr.ip().into()),
            config: self.system_config(),
        });
        Dial {
            connector: TlsConnector::from(target.config),
            name: target.name,
        }
    }

    fn system_config(&self) -> Arc<ClientConfig> {
        self.system
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                for problem in &found.errors {
                    warn!(%problem, "reading the system's TLS roots");
                }
                let mut roots = RootCertStore::empty();
                let (added, ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    warn!("no system TLS roots found: servers' certificates cannot be checked");
                }
                debug!(added, ignored, "system TLS roots loaded");
                Arc::new(client_config(roots))
            })
            .clone()
    }
}

/// A host as a name to check the certificate against: an IP address or a DNS name.
fn server_name(host: &str) -> Option<ServerName<'static>> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_owned()).ok(),
    }
}

/// The CA certificates of a PEM file as roots (at least one).
fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| pem_problem(error, "CA certificate"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CA certificate in it".into());
    }
    Ok(roots)
}

fn client_config(roots: RootCertStore) -> ClientConfig {
    // The provider's defaults are always valid, so this only fails if ring loses TLS 1.2/1.3.
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|error| panic!("rustls ring provider without TLS versions: {error}"))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
