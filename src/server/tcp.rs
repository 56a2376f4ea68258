//! SIP over connections, TCP or TLS: one task per connection (accepted, or opened to reach an
//! agent whose URI says `transport=tcp`/`tls` or a trunk), framing by Content-Length (the pure
//! framer in `sip::framing`), keep-alive pings answered with a pong, writes through a channel.
//! Accepted connections are limited in number (in all and per address, per listener), and a
//! connection that idles, or trickles a message slower than `tcp.message_timeout`, is closed.
//! What TLS adds (the handshake, certificates) is in `tls`; the stream is generic here.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{tls, DriverInput};
use crate::settings::TcpSettings;
use crate::sip::framing::{Frame, FramingLimits, StreamFramer};
use crate::sip::message;
use crate::sip::transport::{Peer, TransportKind};

/// Messages queued for one connection before it counts as stuck.
const WRITE_QUEUE: usize = 256;
/// An agent's phone that does not accept a connection within this is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What every connection task needs: where to report, and the limits it runs under.
#[derive(Clone)]
pub(super) struct TcpContext {
    pub(super) inputs: mpsc::Sender<DriverInput>,
    pub(super) max_message: usize,
    pub(super) limits: TcpSettings,
}

/// Accepted connections by source address, so the limits hold however fast they arrive.
#[derive(Default)]
struct Slots {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One accepted connection's place; given back when the connection ends.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    address: IpAddr,
}

impl Slot {
    fn take(slots: &Arc<Mutex<Slots>>, address: IpAddr, limits: &TcpSettings) -> Option<Slot> {
        let mut taken = slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_address = taken.by_address.get(&address).copied().unwrap_or(0);
        if taken.total >= limits.max_connections || from_address >= limits.max_per_address {
            return None;
        }
        taken.total += 1;
        taken.by_address.insert(address, from_address + 1);
        Some(Slot {
            slots: slots.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        taken.total = taken.total.saturating_sub(1);
        if let Some(count) = taken.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                taken.by_address.remove(&self.address);
            }
        }
    }
}

/// What an accepted TCP connection becomes before SIP flows: itself (TCP), or the TLS stream
/// after a handshake (None: the handshake failed; the connection is dropped).
pub(super) trait Upgrade: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    const TRANSPORT: TransportKind;
    fn upgrade(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Option<Self::Stream>> + Send;
}

/// Plain SIP over TCP.
#[derive(Clone)]
pub(super) struct Plain;

impl Upgrade for Plain {
    type Stream = TcpStream;
    const TRANSPORT: TransportKind = TransportKind::Tcp;
    async fn upgrade(&self, stream: TcpStream, _peer: SocketAddr) -> Option<TcpStream> {
        Some(stream)
    }
}

/// Accepts connections within the limits; each is upgraded (TLS: its handshake, holding its
/// slot meanwhile) and served in its own task.
pub(super) async fn accept_loop<U: Upgrade>(
    listener: TcpListener,
    context: TcpContext,
    upgrade: U,
) {
    let transport = U::TRANSPORT.via_name();
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut refused: u64 = 0;
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let Some(slot) = Slot::take(&slots, addr.ip(), &context.limits) else {
                    // Closed at once; logged for the first and then every thousandth, so a
                    // flood cannot flood the log too.
                    refused += 1;
                    if refused % 1000 == 1 {
                        warn!(peer = %addr, refused, transport, "connection refused: connection limit reached");
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let context = context.clone();
                let upgrade = upgrade.clone();
                tokio::spawn(async move {
                    if let Some(stream) = upgrade.upgrade(stream, addr).await {
                        let peer = Peer {
                            transport: U::TRANSPORT,
                            addr,
                        };
                        connection(stream, peer, context).await;
                    }
                    drop(slot);
                });
            }
            Err(error) => {
                // EMFILE and friends: back off a little instead of spinning.
                warn!(%error, transport, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Opens a connection to `peer` (over TLS when `tls` says how to check the server) for
/// messages the driver has to send there. The returned writer queues them at once; they go
/// out once connected. A failed connect or handshake is reported as `ConnectFailed` (then
/// `ConnectionClosed`), so the switchboard can give up on that peer now.
pub(super) fn connect(
    peer: Peer,
    context: TcpContext,
    tls: Option<tls::Dial>,
) -> mpsc::Sender<Bytes> {
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = write_tx.clone();
    tokio::spawn(async move {
        let addr = peer.addr;
        let failed = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                match tls {
                    None => return serve(stream, peer, context, write_tx, write_rx).await,
                    Some(dial) => match dial.handshake(stream, CONNECT_TIMEOUT).await {
                        Ok(stream) => {
                            return serve(stream, peer, context, write_tx, write_rx).await
                        }
                        Err(reason) => reason,
                    },
                }
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
        };
        match peer.transport {
            TransportKind::Tls => warn!(%peer, reason = %failed, "TLS connection to a peer failed"),
            _ => warn!(%peer, reason = %failed, "TCP connection to a peer failed"),
        }
        let inputs = &context.inputs;
        let _ = inputs.send(DriverInput::ConnectFailed { peer }).await;
        let _ = inputs.send(DriverInput::ConnectionClosed { peer }).await;
    });
    writer
}

async fn connection<S>(stream: S, peer: Peer, context: TcpContext)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    if context
        .inputs
        .send(DriverInput::ConnectionOpened {
            peer,
            writer: write_tx.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    serve(stream, peer, context, write_tx, write_rx).await;
}

/// Reads and writes one connection until either side closes it, or it idles or trickles
/// past its limits.
async fn serve<S>(
    stream: S,
    peer: Peer,
    context: TcpContext,
    write_tx: mpsc::Sender<Bytes>,
    mut write_rx: mpsc::Receiver<Bytes>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = write_rx.recv().await {
            // Flushed per message: TLS buffers records until then.
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        // A clean end (TLS close_notify, TCP FIN) once the reader is done with the connection.
        let _ = writer.shutdown().await;
    });
    let TcpContext {
        inputs,
        max_message,
        limits,
    } = context;
    let mut framer = StreamFramer::with_limits(FramingLimits {
        max_head_bytes: max_message,
        ..FramingLimits::default()
    });
    let mut buffer = vec![0u8; 16 * 1024];
    // Until the first message is complete, the connection is on the message deadline.
    let mut message_started = Some(tokio::time::Instant::now());
    'read: loop {
        let deadline = match message_started {
            Some(started) => started + limits.message_timeout,
            None => tokio::time::Instant::now() + limits.idle_timeout,
        };
        let len = match tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(len)) => len,
            Err(_) => {
                let why = if message_started.is_some() {
                    "a message took too long"
                } else {
                    "idle"
                };
                debug!(%peer, why, "closing the connection");
                break;
            }
        };
        framer.push(&buffer[..len]);
        for frame in framer.by_ref() {
            match frame {
                Ok(Frame::Message(bytes)) => {
                    if inputs
                        .send(DriverInput::ConnectionMessage { peer, bytes })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Ok(Frame::KeepAlivePing) => {
                    let _ = write_tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Err(error) => {
                    // Answer what can be answered (e.g. 400 for a missing Content-Length), then close:
                    // after a framing error the stream position is unknowable.
                    debug!(%peer, %error, "closing the connection after a framing error");
                    let reason = error.to_string();
                    if let Some(response) = error.head().and_then(|head| {
                        message::error_response(head, error.status_code(), &reason, &[])
                    }) {
                        let _ = write_tx.try_send(Bytes::from(response));
                    }
                    break 'read;
                }
            }
        }
        // Bytes of an unfinished message keep (or start) the message deadline.
        message_started = match (framer.buffered_len(), message_started) {
            (0, _) => None,
            (_, Some(started)) => Some(started),
            (_, None) => Some(tokio::time::Instant::now()),
        };
    }
    let _ = inputs.send(DriverInput::ConnectionClosed { peer }).await;
    drop(write_tx);
    let _ = write_task.await;
}
