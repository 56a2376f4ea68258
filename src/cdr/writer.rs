//! `CdrWriter`: the handle the call logic uses. Sending never blocks (unbounded channel); one
//! task owns the writes, so records reach the store in the order they were sent, and it retries
//! the spool on a timer while the database is away. When neither the database nor the spool
//! takes a record (read-only or full disk), it is held in memory (bounded, in order) and tried
//! again every second; meanwhile the store's health says why (`/health` answers 503), and what
//! does not fit is counted as lost. `close` flushes it before the service exits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::model::{AgentStateChange, CallEvent, CallRecord, CallStart, CallbackRow};
use super::store::CdrStore;

/// Default pause between attempts to replay the spool while the database is down.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Record entries held in memory at most while nothing can be stored (a busy hour's calls).
pub const MAX_HELD: usize = 20_000;
/// Pause between attempts to store the held entries.
const HELD_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The writer task has stopped; the record was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the CDR writer task has stopped")]
pub struct WriterStopped;

enum Message {
    Started(CallStart),
    Ended(Box<CallRecord>, Vec<CallEvent>),
    AgentState(AgentStateChange),
    Callback(CallbackRow),
    /// Everything sent before is stored or spooled: stop, and say so.
    Close(oneshot::Sender<()>),
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

    /// An agent's availability changed (audit row).
    pub fn agent_state_changed(&self, change: AgentStateChange) -> Result<(), WriterStopped> {
        self.sender
            .send(Message::AgentState(change))
            .map_err(|_| WriterStopped)
    }

    /// A callback request's new state (its row in `callbacks`).
    pub fn callback_changed(&self, row: CallbackRow) -> Result<(), WriterStopped> {
        self.sender
            .send(Message::Callback(row))
            .map_err(|_| WriterStopped)
    }

    /// Writes (or spools) every record sent before, tries a last spool replay and stops the
    /// task; records sent afterwards, through any clone, are refused with `WriterStopped`.
    /// Returns once all that is done.
    pub async fn close(&self) -> Result<(), WriterStopped> {
        let (done, finished) = oneshot::channel();
        self.sender
            .send(Message::Close(done))
            .map_err(|_| WriterStopped)?;
        finished.await.map_err(|_| WriterStopped)
    }
}

/// A record entry not stored yet.
enum Entry {
    Started(CallStart),
    Ended(Box<CallRecord>, Vec<CallEvent>),
    AgentState(AgentStateChange),
    Callback(CallbackRow),
}

async fn run(
    store: Arc<CdrStore>,
    mut receiver: mpsc::UnboundedReceiver<Message>,
    retry_interval: Duration,
) {
    let mut retry = tokio::time::interval(retry_interval);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held_retry = tokio::time::interval(HELD_RETRY_INTERVAL);
    held_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = Held::default();
    let closed = loop {
        tokio::select! {
            message = receiver.recv() => {
                let Some(message) = message else { break None };
                match message {
                    Message::Started(start) => held.write(&store, Entry::Started(start)).await,
                    Message::Ended(record, events) => {
                        held.write(&store, Entry::Ended(record, events)).await
                    }
                    Message::AgentState(change) => {
                        held.write(&store, Entry::AgentState(change)).await
                    }
                    Message::Callback(row) => held.write(&store, Entry::Callback(row)).await,
                    Message::Close(done) => break Some(done),
                }
            }
            _ = held_retry.tick(), if !held.entries.is_empty() => held.retry(&store).await,
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
    };
    // Later sends fail at once; what was queued behind the close is still written.
    receiver.close();
    let mut waiting: Vec<oneshot::Sender<()>> = closed.into_iter().collect();
    while let Ok(message) = receiver.try_recv() {
        match message {
            Message::Started(start) => held.write(&store, Entry::Started(start)).await,
            Message::Ended(record, events) => {
                held.write(&store, Entry::Ended(record, events)).await
            }
            Message::AgentState(change) => held.write(&store, Entry::AgentState(change)).await,
            Message::Callback(row) => held.write(&store, Entry::Callback(row)).await,
            Message::Close(done) => waiting.push(done),
        }
    }
    held.retry(&store).await;
    if !held.entries.is_empty() {
        tracing::error!(
            records = held.entries.len(),
            "CDR records lost at shutdown: neither the database nor the spool took them"
        );
        held.lose(&store, held.entries.len());
    }
    if store.spooled().await > 0 {
        if let Err(error) = store.flush_spool().await {
            tracing::error!(%error, "CDR spool replay at shutdown failed; it stays on disk");
        }
    }
    for done in waiting {
        let _ = done.send(());
    }
}

/// Entries neither the database nor the spool took, oldest first; later entries wait behind
/// them so the store sees every call's start before its end.
#[derive(Default)]
struct Held {
    entries: VecDeque<Entry>,
}

impl Held {
    async fn write(&mut self, store: &CdrStore, entry: Entry) {
        if !self.entries.is_empty() {
            self.hold(store, entry);
            return;
        }
        if let Err(error) = store_entry(store, &entry).await {
            tracing::error!(
                %error,
                "CDR record not stored: neither the database nor the spool took it; kept in \
                 memory until one does"
            );
            store.health().set_problem(Some(format!(
                "call records cannot be stored (kept in memory until the database or the \
                 spool takes them): {error}"
            )));
            self.hold(store, entry);
        }
    }

    fn hold(&mut self, store: &CdrStore, entry: Entry) {
        if self.entries.len() >= MAX_HELD {
            tracing::error!(
                held = self.entries.len(),
                "CDR record lost: memory for unstored records is full"
            );
            store.health().count_lost(1);
            return;
        }
        self.entries.push_back(entry);
        store.health().set_held(self.entries.len());
    }

    /// Tries the held entries in order, stopping at the first that still fails.
    async fn retry(&mut self, store: &CdrStore) {
        while let Some(entry) = self.entries.front() {
            if store_entry(store, entry).await.is_err() {
                return;
            }
            self.entries.pop_front();
            store.health().set_held(self.entries.len());
        }
        if store.health().problem().is_some() {
            tracing::info!("CDR records are stored again; none held in memory");
            store.health().set_problem(None);
        }
    }

    fn lose(&mut self, store: &CdrStore, count: usize) {
        let dropped = count.min(self.entries.len());
        self.entries.drain(..dropped);
        store.health().count_lost(count as u64);
        store.health().set_held(self.entries.len());
    }
}

/// One attempt (database, else spool); the entry stays with the caller for another.
async fn store_entry(store: &CdrStore, entry: &Entry) -> Result<(), super::CdrError> {
    match entry {
        Entry::Started(start) => store.call_started(start.clone()).await.map(drop),
        Entry::Ended(record, events) => store
            .call_ended((**record).clone(), events.clone())
            .await
            .map(drop),
        Entry::AgentState(change) => store.agent_state_changed(change.clone()).await.map(drop),
        Entry::Callback(row) => store.callback_changed(row.clone()).await.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use chrono::Utc;

    use super::*;
    use crate::cdr::{CdrError, CdrSettings, PurgeMode};

    fn settings(dir: &Path) -> CdrSettings {
        CdrSettings {
            // The database's folder is a file: it can never be created, even by root.
            database: format!("sqlite://{}", dir.join("blocked/hotline.db").display()),
            spool_path: dir.join("var/cdr.jsonl"),
            pseudonymise_key: None,
            retention_days: None,
            retention_mode: PurgeMode::Delete,
            write_timeout: Duration::from_secs(1),
            node: "test".into(),
        }
    }

    /// `var/` replaced by a file (`true`) or an empty folder again (`false`).
    fn block_var(dir: &Path, blocked: bool) {
        let var = dir.join("var");
        let _ = std::fs::remove_dir_all(&var);
        let _ = std::fs::remove_file(&var);
        if blocked {
            std::fs::write(&var, "").unwrap();
        } else {
            std::fs::create_dir(&var).unwrap();
        }
    }

    async fn wait_for(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn start_is_refused_when_neither_database_nor_spool_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocked"), "").unwrap();
        block_var(dir.path(), true);
        match CdrStore::open(&settings(dir.path())).await {
            Err(CdrError::Unwritable { database, spool }) => {
                assert!(database.contains("blocked"), "{database}");
                assert!(spool.contains("var"), "{spool}");
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("opened a store that can write nowhere"),
        }
        block_var(dir.path(), false);
        assert!(CdrStore::open(&settings(dir.path())).await.is_ok());
    }

    #[tokio::test]
    async fn records_are_held_in_memory_while_nothing_can_be_written_then_stored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocked"), "").unwrap();
        let store = Arc::new(CdrStore::open(&settings(dir.path())).await.unwrap());
        let (writer, task) = CdrWriter::spawn(store.clone(), Duration::from_secs(3600));
        block_var(dir.path(), true);
        for id in ["a", "b"] {
            writer
                .call_started(CallStart {
                    call_id: id.into(),
                    caller: None,
                    trunk: "127.0.0.1:5060".into(),
                    arrived: Utc::now(),
                })
                .unwrap();
        }
        wait_for("both starts held", || store.health().held() == 2).await;
        let problem = store.health().problem().expect("the reason is published");
        assert!(problem.contains("cannot be stored"), "{problem}");

        block_var(dir.path(), false);
        wait_for("held records stored", || {
            store.health().held() == 0 && store.health().problem().is_none()
        })
        .await;
        assert_eq!(store.spooled().await, 2, "both went to the spool, in order");
        let spool = std::fs::read_to_string(dir.path().join("var/cdr.jsonl")).unwrap();
        let ids: Vec<&str> = spool
            .lines()
            .filter_map(|line| line.split("\"call_id\":\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        writer.close().await.unwrap();
        task.await.unwrap();
        assert_eq!(store.health().lost(), 0);
    }
}
