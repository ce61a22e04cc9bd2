//! `<state>/source.json`: the last good and last applied commit ids, written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::SourceError;
use super::CommitId;

/// What the source remembers across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceState {
    /// The newest fetched commit that passed every trust check.
    pub last_good: Option<CommitId>,
    /// The newest commit the reconciler reported as applied.
    pub last_applied: Option<CommitId>,
}

impl SourceState {
    /// The file name under the state folder.
    pub const FILE: &'static str = "source.json";

    /// Read the state; a missing file is the empty state, a corrupt one an error (never
    /// silently reset: that would disable anti-rollback).
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(SourceError::io("reading", path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| SourceError::CorruptState {
            path: path.to_owned(),
            why: e.to_string(),
        })
    }

    /// Write the state atomically (temporary file, fsync, rename, fsync of the folder).
    pub fn save(&self, path: &Path) -> Result<(), SourceError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| SourceError::CorruptState {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        bytes.push(b'\n');
        write_atomic(path, &bytes)
    }
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new content.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SourceError> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| SourceError::io("writing", &dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| SourceError::io("writing", tmp.path().to_owned(), e))?;
    tmp.persist(path)
        .map_err(|e| SourceError::io("replacing", path, e.error))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SourceError::io("syncing", &dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SourceState::FILE);
        assert_eq!(SourceState::load(&path).unwrap(), SourceState::default());
        let id: CommitId = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let s = SourceState {
            last_good: Some(id.clone()),
            last_applied: None,
        };
        s.save(&path).unwrap();
        assert_eq!(SourceState::load(&path).unwrap(), s);
        // Only the state file is left behind: the temporary file was renamed over it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);

        std::fs::write(&path, b"{\"last_good\": \"nothex\"}").unwrap();
        assert!(matches!(
            SourceState::load(&path),
            Err(SourceError::CorruptState { .. })
        ));
    }
}
