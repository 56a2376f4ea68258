//! Media driver for answered calls: binds each call's RTP port and watches for inactivity.
//! Prompt playback and DTMF arrive with the media engine (issue 3); this only keeps the
//! "dead caller" rule: no RTP for the session's timeout ends the call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::DriverInput;
use crate::sip::endpoint::{CallRef, MediaCommand, MediaEvent, MediaSession};

pub(super) struct MediaDriver {
    bind_ip: IpAddr,
    events: mpsc::Sender<DriverInput>,
    sessions: HashMap<CallRef, watch::Sender<Option<MediaSession>>>,
}

impl MediaDriver {
    pub(super) fn new(bind_ip: IpAddr, events: mpsc::Sender<DriverInput>) -> Self {
        Self {
            bind_ip,
            events,
            sessions: HashMap::new(),
        }
    }

    pub(super) fn handle(&mut self, command: MediaCommand) {
        match command {
            MediaCommand::Start {
                call,
                local_port,
                session,
            } => {
                let (updates, watched) = watch::channel(Some(session));
                self.sessions.insert(call, updates);
                let addr = SocketAddr::new(self.bind_ip, local_port);
                tokio::spawn(watch_session(call, addr, watched, self.events.clone()));
            }
            MediaCommand::Update { call, session } => {
                if let Some(updates) = self.sessions.get(&call) {
                    let _ = updates.send(Some(session));
                }
            }
            MediaCommand::Stop { call } => {
                if let Some(updates) = self.sessions.remove(&call) {
                    let _ = updates.send(None);
                }
            }
        }
    }
}

async fn watch_session(
    call: CallRef,
    addr: SocketAddr,
    mut updates: watch::Receiver<Option<MediaSession>>,
    events: mpsc::Sender<DriverInput>,
) {
    let socket = match UdpSocket::bind(addr).await {
        Ok(socket) => socket,
        Err(error) => {
            let reason = format!("binding RTP port {addr}: {error}");
            let _ = events
                .send(DriverInput::Media(MediaEvent::Failed { call, reason }))
                .await;
            return;
        }
    };
    let mut buffer = [0u8; 2048];
    loop {
        let Some(timeout) = updates.borrow().as_ref().map(|s| s.inactivity_timeout) else {
            return;
        };
        let idle = async {
            match timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = socket.recv_from(&mut buffer) => {
                if let Err(error) = received {
                    debug!(%call, %error, "RTP receive error");
                }
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = idle => {
                let _ = events.send(DriverInput::Media(MediaEvent::Inactive { call })).await;
                return;
            }
        }
    }
}
