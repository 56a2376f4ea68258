//! Everything that differs between SQLite and PostgreSQL lives here: reading the configured URL,
//! the shared `AnyPool` (lazy: it connects on first use), and preparing the database, which
//! for SQLite means creating the file (and its folder) in WAL mode. All queries elsewhere are
//! portable SQL.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, ConnectOptions, Connection};

use super::CdrError;

/// Where the records live, parsed from the `cdr.database` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An embedded SQLite file (`sqlite:PATH`, `sqlite://PATH` or a bare path).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl FromStr for DatabaseUrl {
    type Err = CdrError;

    fn from_str(url: &str) -> Result<Self, CdrError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path.contains("://") || path.starts_with(":memory:") {
            return Err(CdrError::Url(mask_password(url)));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }
}

/// `url` fit to print: the password of `user:password@` and any `password=` parameter are
/// replaced by `***`. Every message or log line that names the database URL goes through this.
pub fn mask_password(url: &str) -> String {
    let mut masked = url.to_owned();
    if let Some(scheme_end) = masked.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = masked[authority_start..]
            .find(['/', '?', '#'])
            .map_or(masked.len(), |end| authority_start + end);
        // The last `@` ends the user part (a password may itself hold `@`).
        if let Some(at) = masked[authority_start..authority_end].rfind('@') {
            let user_info = authority_start..authority_start + at;
            if let Some(colon) = masked[user_info.clone()].find(':') {
                masked.replace_range(user_info.start + colon + 1..user_info.end, "***");
            }
        }
    }
    let mut searched = 0;
    while let Some(found) = masked[searched..].to_ascii_lowercase().find("password=") {
        let value_start = searched + found + "password=".len();
        let value_end = masked[value_start..]
            .find(['&', ' ', ';', '#'])
            .map_or(masked.len(), |end| value_start + end);
        masked.replace_range(value_start..value_end, "***");
        searched = value_start + 3;
    }
    masked
}

/// How long to wait for a pooled connection before treating the database as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The pool, without touching the database yet: connections are made on first use, so the
/// service can start (and spool) while the database is away.
pub(crate) fn lazy_pool(url: &DatabaseUrl) -> Result<AnyPool, CdrError> {
    sqlx::any::install_default_drivers();
    let (any_url, max_connections) = match url {
        DatabaseUrl::Postgres(url) => (url.clone(), 4),
        // One writer at a time is all SQLite allows; more connections only contend for the lock.
        DatabaseUrl::Sqlite(path) => (format!("sqlite://{}", percent_encode_path(path)), 1),
    };
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy(&any_url)
        .map_err(|source| CdrError::Database {
            context: "reading the database URL",
            source,
        })
}

/// Makes the database usable: for SQLite creates the folder and the file and switches it to
/// WAL (a persistent property of the file, so the pool's connections inherit it); then checks
/// that a connection can be made.
pub(crate) async fn prepare(url: &DatabaseUrl, pool: &AnyPool) -> Result<(), CdrError> {
    if let DatabaseUrl::Sqlite(path) = url {
        prepare_sqlite_file(path).await?;
    }
    pool.acquire()
        .await
        .map(drop)
        .map_err(|source| CdrError::Database {
            context: "connecting",
            source,
        })
}

async fn prepare_sqlite_file(path: &Path) -> Result<(), CdrError> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(folder)
            .await
            .map_err(|source| CdrError::CreateFolder {
                path: folder.to_path_buf(),
                source,
            })?;
    }
    let connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .map_err(|source| CdrError::Database {
            context: "creating the SQLite file",
            source,
        })?;
    connection
        .close()
        .await
        .map_err(|source| CdrError::Database {
            context: "closing the SQLite setup connection",
            source,
        })
}

/// SQLite URLs are percent-decoded by sqlx, so escape everything but plain path characters.
fn percent_encode_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        assert_eq!(
            "postgres://u@127.0.0.1:5432/cdr"
                .parse::<DatabaseUrl>()
                .ok(),
            Some(DatabaseUrl::Postgres(
                "postgres://u@127.0.0.1:5432/cdr".into()
            ))
        );
        assert_eq!(
            "sqlite:var/cdr.db".parse::<DatabaseUrl>().ok(),
            Some(DatabaseUrl::Sqlite("var/cdr.db".into()))
        );
        assert_eq!(
            "/var/lib/hotline/cdr.db".parse::<DatabaseUrl>().ok(),
            Some(DatabaseUrl::Sqlite("/var/lib/hotline/cdr.db".into()))
        );
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
        assert!("".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn passwords_are_masked() {
        for (url, masked) in [
            (
                "postgres://cdr:s3cret@127.0.0.1:5432/cdr",
                "postgres://cdr:***@127.0.0.1:5432/cdr",
            ),
            (
                "postgresql://cdr:p@ss:w@db.example/cdr?sslmode=require",
                "postgresql://cdr:***@db.example/cdr?sslmode=require",
            ),
            (
                "postgres://cdr@127.0.0.1/cdr?password=s3cret&sslmode=disable",
                "postgres://cdr@127.0.0.1/cdr?password=***&sslmode=disable",
            ),
            (
                "postgres://u:a@127.0.0.1/x?PASSWORD=b",
                "postgres://u:***@127.0.0.1/x?PASSWORD=***",
            ),
            (
                "postgres://cdr@127.0.0.1/cdr",
                "postgres://cdr@127.0.0.1/cdr",
            ),
            ("sqlite://var/hotline.db", "sqlite://var/hotline.db"),
            ("/var/lib/hotline/cdr.db", "/var/lib/hotline/cdr.db"),
        ] {
            assert_eq!(mask_password(url), masked, "{url}");
        }
        let error = "mysql://root:s3cret@host/x"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn odd_path_characters_are_escaped() {
        assert_eq!(
            percent_encode_path(Path::new("/tmp/a b?#.db")),
            "/tmp/a%20b%3F%23.db"
        );
    }
}
