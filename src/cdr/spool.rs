//! The append-only spool: records that could not be written to the database are appended here
//! as JSON lines (fsynced) and replayed in order once the database is back. The file is only
//! shortened after the database confirmed the writes it held.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::model::{AgentStateChange, CallEvent, CallRecord, CallStart, CallbackRow};
use super::CdrError;

/// One pending database write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SpoolEntry {
    Started(CallStart),
    Ended {
        record: Box<CallRecord>,
        events: Vec<CallEvent>,
    },
    AgentState(AgentStateChange),
    Callback(CallbackRow),
}

pub(crate) struct Spool {
    path: PathBuf,
    /// Entries in the file; zero means writes may go straight to the database.
    pending: usize,
}

impl Spool {
    /// Opens (without creating) the spool and counts what a previous run left in it.
    pub(crate) async fn open(path: &Path) -> Result<Self, CdrError> {
        let mut spool = Spool {
            path: path.to_path_buf(),
            pending: 0,
        };
        spool.pending = spool.read_all().await?.len();
        Ok(spool)
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that entries could be appended now: the folder can be made, a file created in
    /// it (then removed), and an existing spool opened for appending. Writes no entry.
    pub(crate) async fn probe(&self) -> Result<(), CdrError> {
        if let Some(folder) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(folder)
                .await
                .map_err(|source| self.io_error(source))?;
        }
        let mut probe_name = self.path.as_os_str().to_owned();
        probe_name.push(".probe");
        let probe = PathBuf::from(probe_name);
        let mut file = tokio::fs::File::create(&probe)
            .await
            .map_err(|source| self.io_error(source))?;
        let written = async {
            file.write_all(b"probe\n").await?;
            file.sync_data().await
        }
        .await;
        drop(file);
        let removed = tokio::fs::remove_file(&probe).await;
        written
            .and(removed)
            .map_err(|source| self.io_error(source))?;
        match tokio::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.io_error(source)),
        }
    }

    pub(crate) async fn append(&mut self, entry: &SpoolEntry) -> Result<(), CdrError> {
        let mut line = serde_json::to_string(entry).map_err(|source| CdrError::SpoolEncode {
            path: self.path.clone(),
            source,
        })?;
        line.push('\n');
        if let Some(folder) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(folder)
                .await
                .map_err(|source| self.io_error(source))?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|source| self.io_error(source))?;
        file.write_all(line.as_bytes())
            .await
            .map_err(|source| self.io_error(source))?;
        // The record must survive a crash of the service, not just the database being down.
        file.sync_data()
            .await
            .map_err(|source| self.io_error(source))?;
        self.pending += 1;
        Ok(())
    }

    /// All entries in file order. A line that does not parse (e.g. cut short by a crash while
    /// appending) is moved to `<spool>.rejected` for inspection rather than dropped or retried.
    pub(crate) async fn read_all(&self) -> Result<Vec<SpoolEntry>, CdrError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            // No file, or no folder for one (a file in its place): nothing spooled there.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(source) => return Err(self.io_error(source)),
        };
        let mut entries = Vec::new();
        let mut rejected = String::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            match serde_json::from_str::<SpoolEntry>(line) {
                Ok(entry) => entries.push(entry),
                Err(error) => {
                    tracing::error!(path = %self.path.display(), %error, "unreadable CDR spool line set aside");
                    rejected.push_str(line);
                    rejected.push('\n');
                }
            }
        }
        if !rejected.is_empty() {
            let rejected_path = self.rejected_path();
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rejected_path)
                .await
                .map_err(|source| self.io_error(source))?;
            file.write_all(rejected.as_bytes())
                .await
                .map_err(|source| self.io_error(source))?;
            file.sync_data()
                .await
                .map_err(|source| self.io_error(source))?;
            self.rewrite_file(&entries).await?;
        }
        Ok(entries)
    }

    /// Replaces the spool by the entries not yet confirmed (atomically: temp file + rename).
    pub(crate) async fn keep_only(&mut self, remaining: &[SpoolEntry]) -> Result<(), CdrError> {
        self.rewrite_file(remaining).await?;
        self.pending = remaining.len();
        Ok(())
    }

    async fn rewrite_file(&self, entries: &[SpoolEntry]) -> Result<(), CdrError> {
        if entries.is_empty() {
            return match tokio::fs::remove_file(&self.path).await {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(self.io_error(source)),
            };
        }
        let mut text = String::new();
        for entry in entries {
            let line = serde_json::to_string(entry).map_err(|source| CdrError::SpoolEncode {
                path: self.path.clone(),
                source,
            })?;
            text.push_str(&line);
            text.push('\n');
        }
        let temp_path = self.path.with_extension("tmp");
        let mut file = tokio::fs::File::create(&temp_path)
            .await
            .map_err(|source| self.io_error(source))?;
        file.write_all(text.as_bytes())
            .await
            .map_err(|source| self.io_error(source))?;
        file.sync_data()
            .await
            .map_err(|source| self.io_error(source))?;
        tokio::fs::rename(&temp_path, &self.path)
            .await
            .map_err(|source| self.io_error(source))
    }

    fn rejected_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".rejected");
        PathBuf::from(name)
    }

    fn io_error(&self, source: std::io::Error) -> CdrError {
        CdrError::Spool {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn start(id: &str) -> SpoolEntry {
        SpoolEntry::Started(CallStart {
            call_id: id.into(),
            caller: Some("+37060000000".into()),
            trunk: "127.0.0.1:5060".into(),
            arrived: Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
        })
    }

    #[tokio::test]
    async fn entries_survive_reopen_and_cut_lines_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool/cdr.jsonl");
        let mut spool = Spool::open(&path).await.unwrap();
        assert_eq!(spool.pending(), 0);
        spool.append(&start("a")).await.unwrap();
        spool.append(&start("b")).await.unwrap();
        // Simulate a crash in the middle of an append.
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .unwrap();
        file.write_all(b"{\"type\":\"started\",\"call_")
            .await
            .unwrap();
        drop(file);

        let mut reopened = Spool::open(&path).await.unwrap();
        assert_eq!(reopened.pending(), 2);
        assert_eq!(
            reopened.read_all().await.unwrap(),
            vec![start("a"), start("b")]
        );
        let rejected = tokio::fs::read_to_string(reopened.rejected_path())
            .await
            .unwrap();
        assert_eq!(rejected, "{\"type\":\"started\",\"call_\n");

        reopened.keep_only(&[start("b")]).await.unwrap();
        assert_eq!(reopened.read_all().await.unwrap(), vec![start("b")]);
        reopened.keep_only(&[]).await.unwrap();
        assert!(!path.exists());
        assert_eq!(reopened.pending(), 0);
    }

    #[tokio::test]
    async fn the_probe_leaves_nothing_and_fails_where_nothing_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("var/cdr.jsonl"))
            .await
            .unwrap();
        spool.probe().await.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join("var")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // A folder that cannot be made (a file is in the way) fails even for root.
        std::fs::write(dir.path().join("file"), "").unwrap();
        let blocked = Spool::open(&dir.path().join("file/cdr.jsonl"))
            .await
            .unwrap();
        assert!(blocked.probe().await.is_err());
    }
}
