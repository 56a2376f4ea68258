//! Transport identities shared by the SIP layers and the socket drivers.
use std::fmt;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    /// SIP over TLS over TCP: a connection like TCP's, encrypted.
    Tls,
}

impl TransportKind {
    /// Connection-oriented: no retransmissions of our own (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        matches!(self, TransportKind::Tcp | TransportKind::Tls)
    }

    pub fn via_name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }

    /// The URI parameter naming this transport (none for UDP, the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Self::Udp => "",
            Self::Tcp => ";transport=tcp",
            Self::Tls => ";transport=tls",
        }
    }

    /// The port a SIP URI without one means (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Self::Udp | Self::Tcp => 5060,
            Self::Tls => 5061,
        }
    }

    /// Where a URI says to send: `sips:` or `transport=tls` is TLS, `transport=tcp` TCP,
    /// anything else UDP.
    pub fn of_uri(uri: &str) -> TransportKind {
        let lower = uri.trim().to_ascii_lowercase();
        let lower = lower
            .strip_prefix('<')
            .unwrap_or(&lower)
            .split('>')
            .next()
            .unwrap_or_default();
        let has_param = |param: &str| lower.split(';').skip(1).any(|p| p.trim() == param);
        if lower.starts_with("sips:") || has_param("transport=tls") {
            TransportKind::Tls
        } else if has_param("transport=tcp") {
            TransportKind::Tcp
        } else {
            TransportKind::Udp
        }
    }
}

impl From<crate::settings::TrunkTransport> for TransportKind {
    fn from(transport: crate::settings::TrunkTransport) -> Self {
        match transport {
            crate::settings::TrunkTransport::Udp => TransportKind::Udp,
            crate::settings::TrunkTransport::Tcp => TransportKind::Tcp,
            crate::settings::TrunkTransport::Tls => TransportKind::Tls,
        }
    }
}

/// Where a message came from / goes to. For TCP and TLS the remote address identifies the
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.via_name(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_reliable_and_named_in_via_and_uris() {
        assert!(TransportKind::Tls.is_reliable());
        assert!(TransportKind::Tcp.is_reliable());
        assert!(!TransportKind::Udp.is_reliable());
        assert_eq!(TransportKind::Tls.via_name(), "TLS");
        assert_eq!(TransportKind::Tls.uri_param(), ";transport=tls");
        assert_eq!(TransportKind::Udp.uri_param(), "");
        assert_eq!(TransportKind::Tls.default_port(), 5061);
        assert_eq!(TransportKind::Tcp.default_port(), 5060);
    }

    #[test]
    fn uris_say_their_transport() {
        let cases = [
            ("sip:a@10.0.0.7:5070", TransportKind::Udp),
            ("sip:a@10.0.0.7:5070;transport=tcp", TransportKind::Tcp),
            ("sip:a@10.0.0.7:5070;Transport=TLS", TransportKind::Tls),
            ("sips:a@10.0.0.7", TransportKind::Tls),
            ("<sips:a@10.0.0.7>;expires=60", TransportKind::Tls),
            ("<sip:a@10.0.0.7>;x=transport=tls", TransportKind::Udp),
            ("sip:transport=tls@10.0.0.7", TransportKind::Udp),
        ];
        for (uri, transport) in cases {
            assert_eq!(TransportKind::of_uri(uri), transport, "{uri}");
        }
    }
}
