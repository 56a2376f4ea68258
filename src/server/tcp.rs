//! SIP over TCP: one task per connection (accepted, or opened to reach an agent whose URI says
//! `transport=tcp`), framing by Content-Length (the pure framer in `sip::framing`), keep-alive
//! pings answered with a pong, writes through a channel.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::DriverInput;
use crate::sip::framing::{Frame, FramingLimits, StreamFramer};
use crate::sip::message;

/// Messages queued for one connection before it counts as stuck.
const WRITE_QUEUE: usize = 256;
/// An agent's phone that does not accept a connection within this is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) async fn accept_loop(
    listener: TcpListener,
    inputs: mpsc::Sender<DriverInput>,
    max_message: usize,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, inputs.clone(), max_message));
            }
            Err(error) => {
                // EMFILE and friends: back off a little instead of spinning.
                warn!(%error, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Opens a connection to `peer` for messages the driver has to send there. The returned
/// writer queues them at once; they go out once connected. A failed connect is reported as
/// `TcpConnectFailed` (then `TcpClosed`), so the endpoint can give up on that peer now.
pub(super) fn connect(
    peer: SocketAddr,
    inputs: mpsc::Sender<DriverInput>,
    max_message: usize,
) -> mpsc::Sender<Bytes> {
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = write_tx.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                serve(stream, peer, inputs, max_message, write_tx, write_rx).await;
            }
            failed => {
                let reason = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {CONNECT_TIMEOUT:?}"),
                };
                warn!(%peer, %reason, "TCP connection to a peer failed");
                let _ = inputs.send(DriverInput::TcpConnectFailed { peer }).await;
                let _ = inputs.send(DriverInput::TcpClosed { peer }).await;
            }
        }
    });
    writer
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    inputs: mpsc::Sender<DriverInput>,
    max_message: usize,
) {
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    if inputs
        .send(DriverInput::TcpOpened {
            peer,
            writer: write_tx.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    serve(stream, peer, inputs, max_message, write_tx, write_rx).await;
}

/// Reads and writes one connection until either side closes it.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    inputs: mpsc::Sender<DriverInput>,
    max_message: usize,
    write_tx: mpsc::Sender<Bytes>,
    mut write_rx: mpsc::Receiver<Bytes>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = write_rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::with_limits(FramingLimits {
        max_head_bytes: max_message,
        ..FramingLimits::default()
    });
    let mut buffer = vec![0u8; 16 * 1024];
    'read: loop {
        let len = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(len) => len,
        };
        framer.push(&buffer[..len]);
        for frame in framer.by_ref() {
            match frame {
                Ok(Frame::Message(bytes)) => {
                    if inputs
                        .send(DriverInput::TcpMessage { peer, bytes })
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
                    debug!(%peer, %error, "closing TCP connection after a framing error");
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
    }
    let _ = inputs.send(DriverInput::TcpClosed { peer }).await;
    drop(write_tx);
    let _ = write_task.await;
}
