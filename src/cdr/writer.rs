//! `CdrWriter`: the handle the call logic uses. Sending never blocks (unbounded channel); one
//! task owns the writes, so records reach the store in the order they were sent, and it retries
//! the spool on a timer while the database is away.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::model::{CallEvent, CallRecord, CallStart};
use super::store::CdrStore;

/// Default pause between attempts to replay the spool while the database is down.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// The writer task has stopped; the record was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the CDR writer task has stopped")]
pub struct WriterStopped;

enum Message {
    Started(CallStart),
    Ended(Box<CallRecord>, Vec<CallEvent>),
}

/// Cheap to clone; every clone feeds the same writer task.
#[derive(Clone)]
pub struct CdrWriter {
    sender: mpsc::UnboundedSender<Message>,
}

impl CdrWriter {
    /// Starts the writer task. It ends, after a last spool replay attempt, once every
    /// `CdrWriter` clone is dropped and the queue is drained.
    pub fn spawn(store: Arc<CdrStore>, retry_interval: Duration) -> (CdrWriter, JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, receiver, retry_interval));
        (CdrWriter { sender }, task)
    }

    pub fn call_started(&self, start: CallStart) -> Result<(), WriterStopped> {
        self.sender
            .send(Message::Started(start))
            .map_err(|_| WriterStopped)
    }

    pub fn call_ended(
        &self,
        record: CallRecord,
        events: Vec<CallEvent>,
    ) -> Result<(), WriterStopped> {
        self.sender
            .send(Message::Ended(Box::new(record), events))
            .map_err(|_| WriterStopped)
    }
}

async fn run(
    store: Arc<CdrStore>,
    mut receiver: mpsc::UnboundedReceiver<Message>,
    retry_interval: Duration,
) {
    let mut retry = tokio::time::interval(retry_interval);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = receiver.recv() => {
                let Some(message) = message else { break };
                let result = match message {
                    Message::Started(start) => store.call_started(start).await,
                    Message::Ended(record, events) => store.call_ended(*record, events).await,
                };
                if let Err(error) = result {
                    tracing::error!(%error, "CDR record lost: neither the database nor the spool took it");
                }
            }
            _ = retry.tick() => {
                if store.spooled().await > 0 {
                    match store.flush_spool().await {
                        Ok(report) if report.written > 0 => tracing::info!(
                            written = report.written,
                            remaining = report.remaining,
                            "CDR spool replayed"
                        ),
                        Ok(_) => {}
                        Err(error) => tracing::error!(%error, "CDR spool replay failed"),
                    }
                }
            }
        }
    }
    if store.spooled().await > 0 {
        if let Err(error) = store.flush_spool().await {
            tracing::error!(%error, "CDR spool replay at shutdown failed; it stays on disk");
        }
    }
}
