//! Where a trunk host name points (RFC 3263 §4.2, simplified to what carriers publish): a name
//! with no port is looked up as `_sip._udp.NAME` (or `_sip._tcp`, or `_sips._tcp` for TLS) SRV,
//! the best record (lowest priority, then highest weight) gives the target and port, and that
//! target's A/AAAA the address; without an SRV record the name's own A/AAAA on port 5060 (5061
//! for TLS). A name with a port, or an IP address, needs no SRV. The query and answer are built and read here (pure); the driver
//! sends one datagram to the first `nameserver` of /etc/resolv.conf.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::debug;

use crate::sip::transport::TransportKind;

const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// One SRV record: where and how preferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The address of `host` (`name`, `name:port`, `ip`, `ip:port`) for SIP over `transport`;
/// None when nothing resolves.
pub async fn resolve_sip_host(host: &str, transport: TransportKind) -> Option<SocketAddr> {
    let (name, port) = crate::settings::split_host_port(host)?;
    let default_port = transport.default_port();
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port.unwrap_or(default_port)));
    }
    if let Some(port) = port {
        return lookup(name, port).await;
    }
    let service = match transport {
        TransportKind::Udp => format!("_sip._udp.{name}"),
        TransportKind::Tcp => format!("_sip._tcp.{name}"),
        TransportKind::Tls => format!("_sips._tcp.{name}"),
    };
    match query_srv(&service).await {
        Some(record) => {
            debug!(%service, target = %record.target, port = record.port, "SRV record");
            lookup(&record.target, record.port).await
        }
        None => lookup(name, default_port).await,
    }
}

async fn lookup(name: &str, port: u16) -> Option<SocketAddr> {
    tokio::net::lookup_host((name, port)).await.ok()?.next()
}

/// The best SRV record for `service`, asking the system's first name server.
async fn query_srv(service: &str) -> Option<SrvRecord> {
    let resolv = tokio::fs::read_to_string("/etc/resolv.conf").await.ok()?;
    let server = first_nameserver(&resolv)?;
    query_srv_at(service, SocketAddr::new(server, 53)).await
}

/// The best SRV record for `service` from the name server at `server`.
pub async fn query_srv_at(service: &str, server: SocketAddr) -> Option<SrvRecord> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).await.ok()?;
    let id = rand::random::<u16>();
    let query = srv_query(id, service)?;
    socket.send_to(&query, server).await.ok()?;
    let mut buffer = [0u8; 1500];
    let read = tokio::time::timeout(QUERY_TIMEOUT, socket.recv_from(&mut buffer)).await;
    let (len, from) = read.ok()?.ok()?;
    if from != server {
        return None;
    }
    best(parse_srv_answer(id, &buffer[..len])?)
}

fn first_nameserver(resolv: &str) -> Option<IpAddr> {
    resolv.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// A recursive query for `name`'s SRV records (RFC 1035 §4.1).
pub fn srv_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|len| (1..64).contains(len))?;
        packet.push(len);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&TYPE_SRV.to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(packet)
}

/// The SRV records of an answer to query `id` (None: not our answer, or an error code).
pub fn parse_srv_answer(id: u16, packet: &[u8]) -> Option<Vec<SrvRecord>> {
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]))
    };
    if word(0)? != id || packet.get(2)? & 0x80 == 0 || word(2)? & 0x000f != 0 {
        return None;
    }
    let questions = word(4)?;
    let answers = word(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let kind = word(at)?;
        let length = usize::from(word(at + 8)?);
        let data = at + 10;
        if kind == TYPE_SRV && length >= 7 {
            let (target, _) = read_name(packet, data + 6)?;
            records.push(SrvRecord {
                priority: word(data)?,
                weight: word(data + 2)?,
                port: word(data + 4)?,
                target,
            });
        }
        at = data + length;
    }
    Some(records)
}

/// Lowest priority, then highest weight (a deterministic pick within RFC 2782's rules).
fn best(mut records: Vec<SrvRecord>) -> Option<SrvRecord> {
    records.retain(|record| record.target != ".");
    records.sort_by_key(|record| (record.priority, std::cmp::Reverse(record.weight)));
    records.into_iter().next()
}

/// The offset after a (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            len if len & 0xc0 == 0xc0 => return Some(at + 2),
            len => at += 1 + usize::from(len),
        }
    }
}

/// The dotted name at `at`, following compression pointers (at most 16, against loops).
fn read_name(packet: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..16 {
        let len = *packet.get(at)?;
        if len == 0 {
            let name = if labels.is_empty() {
                ".".to_owned()
            } else {
                labels.join(".")
            };
            return Some((name, end.unwrap_or(at + 1)));
        }
        if len & 0xc0 == 0xc0 {
            end.get_or_insert(at + 2);
            at = usize::from(u16::from_be_bytes([len & 0x3f, *packet.get(at + 1)?]));
            continue;
        }
        let label = packet.get(at + 1..at + 1 + usize::from(len))?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += 1 + usize::from(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's answer to `query` with these SRV records (targets written out, the question
    /// name compressed in the answers).
    fn answer(query: &[u8], records: &[(u16, u16, u16, &str)]) -> Vec<u8> {
        let mut packet = query.to_vec();
        packet[2] |= 0x80; // QR
        packet[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (priority, weight, port, target) in records {
            packet.extend_from_slice(&[0xc0, 12]);
            packet.extend_from_slice(&TYPE_SRV.to_be_bytes());
            packet.extend_from_slice(&CLASS_IN.to_be_bytes());
            packet.extend_from_slice(&300u32.to_be_bytes());
            let mut data = Vec::new();
            for value in [priority, weight, port] {
                data.extend_from_slice(&value.to_be_bytes());
            }
            for label in target.split('.') {
                data.push(label.len() as u8);
                data.extend_from_slice(label.as_bytes());
            }
            data.push(0);
            packet.extend_from_slice(&(data.len() as u16).to_be_bytes());
            packet.extend_from_slice(&data);
        }
        packet
    }

    #[test]
    fn the_best_srv_record_is_read_from_an_answer() {
        let query = srv_query(0x1234, "_sip._udp.carrier.example").unwrap();
        let reply = answer(
            &query,
            &[
                (20, 10, 5060, "backup.carrier.example"),
                (10, 5, 5070, "sip-b.carrier.example"),
                (10, 60, 5080, "sip-a.carrier.example"),
            ],
        );
        let records = parse_srv_answer(0x1234, &reply).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(
            best(records),
            Some(SrvRecord {
                priority: 10,
                weight: 60,
                port: 5080,
                target: "sip-a.carrier.example".into()
            })
        );
        assert_eq!(
            parse_srv_answer(0x9999, &reply),
            None,
            "another query's answer"
        );
        assert_eq!(
            parse_srv_answer(0x1234, &reply[..20]).map(|r| r.len()),
            None
        );
    }

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text = "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        assert_eq!(first_nameserver(text), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(first_nameserver("search x\n"), None);
    }

    #[tokio::test]
    async fn a_name_without_a_port_follows_its_srv_record_to_the_target() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            let (len, from) = server.recv_from(&mut buffer).await.unwrap();
            let reply = answer(&buffer[..len], &[(10, 0, 5099, "localhost")]);
            server.send_to(&reply, from).await.unwrap();
        });
        let record = query_srv_at("_sip._udp.carrier.test", server_addr)
            .await
            .unwrap();
        serve.await.unwrap();
        assert_eq!((record.target.as_str(), record.port), ("localhost", 5099));
        assert_eq!(
            resolve_sip_host("127.0.0.5", TransportKind::Udp).await,
            Some("127.0.0.5:5060".parse().unwrap())
        );
        assert_eq!(
            resolve_sip_host("127.0.0.5", TransportKind::Tls).await,
            Some("127.0.0.5:5061".parse().unwrap())
        );
        assert_eq!(
            resolve_sip_host("localhost:5071", TransportKind::Udp)
                .await
                .map(|a| a.port()),
            Some(5071)
        );
    }
}
