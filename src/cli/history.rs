//! The last routing versions the service applied, kept on disk so `hotline reload --rollback`
//! can return to the one before: `<pid file's folder>/routing-history/<UTC time>-<hash>.toml`,
//! the newest [`KEEP`], a version applied twice in a row kept once.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// How many applied versions stay on disk.
pub const KEEP: usize = 10;

/// Next to the pid file, like the HTTP address file.
pub fn folder(pid_file: &Path) -> PathBuf {
    pid_file
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join("routing-history")
}

/// One applied version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub path: PathBuf,
    pub hash: String,
    /// UTC, `YYYYMMDDTHHMMSS.mmmZ`.
    pub applied: String,
}

/// The content hash as `routing::active` computes it (first 12 hex digits of SHA-256).
pub fn hash(content: &[u8]) -> String {
    Sha256::digest(content)
        .iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Keeps `content` (applied as version `hash` at `at`) and drops all but the newest [`KEEP`].
pub fn save(folder: &Path, content: &[u8], at: SystemTime) -> std::io::Result<()> {
    let hash = hash(content);
    if list(folder)?
        .last()
        .is_some_and(|newest| newest.hash == hash)
    {
        return Ok(());
    }
    std::fs::create_dir_all(folder)?;
    let applied = chrono::DateTime::<chrono::Utc>::from(at).format("%Y%m%dT%H%M%S%.3fZ");
    let path = folder.join(format!("{applied}-{hash}.toml"));
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, content)?;
    std::fs::rename(&temporary, &path)?;
    let versions = list(folder)?;
    for old in &versions[..versions.len().saturating_sub(KEEP)] {
        std::fs::remove_file(&old.path)?;
    }
    Ok(())
}

/// The kept versions, oldest first; none when the folder does not exist.
pub fn list(folder: &Path) -> std::io::Result<Vec<Version>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".toml"))
        else {
            continue;
        };
        if let Some((applied, hash)) = stem.rsplit_once('-') {
            versions.push(Version {
                applied: applied.to_owned(),
                hash: hash.to_owned(),
                path: path.clone(),
            });
        }
    }
    versions.sort_by(|a, b| a.applied.cmp(&b.applied));
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_newest_versions_are_kept_once_each_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        for n in 0..(KEEP + 3) {
            let at = start + Duration::from_secs(n as u64);
            save(dir.path(), format!("v{n}").as_bytes(), at).unwrap();
            // The same content applied again adds nothing.
            save(
                dir.path(),
                format!("v{n}").as_bytes(),
                at + Duration::from_millis(500),
            )
            .unwrap();
        }
        let versions = list(dir.path()).unwrap();
        assert_eq!(versions.len(), KEEP);
        let contents: Vec<String> = versions
            .iter()
            .map(|v| std::fs::read_to_string(&v.path).unwrap())
            .collect();
        let expected: Vec<String> = (3..KEEP + 3).map(|n| format!("v{n}")).collect();
        assert_eq!(contents, expected);
        assert_eq!(versions[0].hash, hash(b"v3"));
        assert!(
            versions[0].applied.ends_with('Z'),
            "{}",
            versions[0].applied
        );
    }
}
