//! A leg's two UDP sockets on its one RTP port: the listener, which takes datagrams from any
//! address (so a caller whose media comes from elsewhere than its SDP, behind NAT, is heard
//! and latched), and the sender, connected to where the leg's RTP goes. A connected socket
//! skips the route lookup of every `sendto` and is what io_uring batches (bench/README.md,
//! "Syscalls"); the kernel hands it the datagrams of its peer, so both are read.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

pub(super) struct LegSockets {
    pub(super) listener: UdpSocket,
    pub(super) sender: UdpSocket,
}

impl LegSockets {
    /// Both sockets bound to `local` (sharing it through `SO_REUSEPORT`), non-blocking, the
    /// sender connected to `remote` when there is one.
    pub(super) fn bind(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<LegSockets> {
        let listener = bind_shared(local)?;
        let sender = bind_shared(local)?;
        if let Some(remote) = remote {
            sender.connect(remote)?;
        }
        Ok(LegSockets { listener, sender })
    }

    /// Points the sender at `remote` (a re-INVITE's address, or where the far end's RTP was
    /// latched from); its next datagram goes there.
    pub(super) fn connect(&self, remote: SocketAddr) -> io::Result<()> {
        self.sender.connect(remote)
    }
}

fn bind_shared(local: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buffer = [0u8; 64];
        let received = socket.recv_from(&mut buffer).ok();
        socket.set_nonblocking(true).unwrap();
        received.map(|(len, from)| (buffer[..len].to_vec(), from))
    }

    #[test]
    fn the_peer_reaches_the_sender_and_strangers_the_listener() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let leg = LegSockets::bind(local, Some(peer.local_addr().unwrap())).unwrap();

        leg.sender.send(b"ours").unwrap();
        let (bytes, from) = receive(&peer).unwrap();
        assert_eq!((bytes.as_slice(), from), (&b"ours"[..], local));

        peer.send_to(b"peer", local).unwrap();
        stranger.send_to(b"stranger", local).unwrap();
        assert_eq!(receive(&leg.sender).unwrap().0, b"peer");
        let (bytes, from) = receive(&leg.listener).unwrap();
        assert_eq!(
            (bytes.as_slice(), from),
            (&b"stranger"[..], stranger.local_addr().unwrap())
        );

        // Latched to the stranger: it now reaches the sender, and our RTP goes to it.
        leg.connect(stranger.local_addr().unwrap()).unwrap();
        stranger.send_to(b"again", local).unwrap();
        assert_eq!(receive(&leg.sender).unwrap().0, b"again");
        leg.sender.send(b"to you").unwrap();
        assert_eq!(receive(&stranger).unwrap().0, b"to you");
    }

    fn free_port() -> u16 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    }
}
