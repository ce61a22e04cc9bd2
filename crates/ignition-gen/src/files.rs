//! Local files that a Butane config embeds (`local:`, `contents_local`,
//! `ssh_authorized_keys_local`, `trees`), reached through the [`FileSource`] trait so this
//! crate never touches the filesystem itself.
//!
//! Paths are checked here, before any [`FileSource`] sees them, with Butane's `--files-dir`
//! rules: the path is joined to the files directory (a leading `/` does not make it absolute),
//! and after resolving `.` and `..` it must stay inside that directory.

use std::collections::BTreeMap;

use crate::Error;

/// What a tree walk found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntryKind {
    /// A regular file; `executable` when any execute bit is set.
    File {
        /// Any of the `0o111` bits set.
        executable: bool,
    },
    /// A directory (not embedded itself; its contents are).
    Directory,
    /// A symbolic link and its target, as `readlink` returns it.
    Symlink {
        /// The link target.
        target: String,
    },
    /// Anything else (socket, device, fifo): Butane rejects these.
    Other,
}

/// One entry below a tree root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the tree root, `/`-separated, never empty.
    pub path: String,
    /// What it is.
    pub kind: TreeEntryKind,
}

/// Read access to the files directory. Paths given to it are already normalized, relative,
/// `/`-separated and known not to escape the directory (`""` is the directory itself).
pub trait FileSource {
    /// False when no files directory was given; every local reference is then an error.
    fn is_configured(&self) -> bool {
        true
    }
    /// The bytes of the regular file at `rel`.
    fn read(&self, rel: &str) -> Result<Vec<u8>, Error>;
    /// Every entry below directory `rel`, depth first, each directory's entries sorted by
    /// name (the order of Go's `filepath.Walk`). Errors with [`Error::TreeNotDirectory`]
    /// when `rel` is not a directory.
    fn list_tree(&self, rel: &str) -> Result<Vec<TreeEntry>, Error>;
}

/// The source used when no files directory was given.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl FileSource for NoFiles {
    fn is_configured(&self) -> bool {
        false
    }
    fn read(&self, _rel: &str) -> Result<Vec<u8>, Error> {
        Err(Error::NoFilesDir)
    }
    fn list_tree(&self, _rel: &str) -> Result<Vec<TreeEntry>, Error> {
        Err(Error::NoFilesDir)
    }
}

/// Resolve a config's local path against the files directory: `/`-separated, `.` and `..`
/// applied, a leading `/` ignored (Butane joins it to the directory). Returns the normalized
/// relative path (`""` for the directory itself) or [`Error::FilesDirEscape`].
pub fn resolve_local(path: &str) -> Result<String, Error> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Error::FilesDirEscape);
                }
            }
            s => parts.push(s),
        }
    }
    Ok(parts.join("/"))
}

/// An in-memory files directory, for tests and for callers that already hold the files.
#[derive(Debug, Clone, Default)]
pub struct MemFileSource {
    entries: BTreeMap<String, MemEntry>,
}

#[derive(Debug, Clone)]
enum MemEntry {
    File { data: Vec<u8>, executable: bool },
    Symlink(String),
    Other,
}

impl MemFileSource {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The files of a repository snapshot below folder `dir` (e.g. `butane/files`), as a
    /// files directory for overlays' `local:` references. Git trees carry no modes here, so
    /// every file is a regular, non-executable file.
    pub fn from_repo(files: &slipway_model::repo::RepoFiles, dir: &str) -> Self {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut src = Self::new();
        for (path, bytes) in files.iter() {
            if let Some(rel) = path.strip_prefix(&prefix) {
                src = src.file(rel, bytes.to_vec());
            }
        }
        src
    }

    /// Add a regular, non-executable file.
    #[must_use]
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>) -> Self {
        self.entries.insert(
            path.to_string(),
            MemEntry::File {
                data: data.into(),
                executable: false,
            },
        );
        self
    }

    /// Add an executable file.
    #[must_use]
    pub fn executable(mut self, path: &str, data: impl Into<Vec<u8>>) -> Self {
        self.entries.insert(
            path.to_string(),
            MemEntry::File {
                data: data.into(),
                executable: true,
            },
        );
        self
    }

    /// Add a symbolic link.
    #[must_use]
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries
            .insert(path.to_string(), MemEntry::Symlink(target.to_string()));
        self
    }

    /// Add a special file (fifo, socket...).
    #[must_use]
    pub fn special(mut self, path: &str) -> Self {
        self.entries.insert(path.to_string(), MemEntry::Other);
        self
    }

    fn is_dir(&self, rel: &str) -> bool {
        if rel.is_empty() {
            return true;
        }
        let prefix = format!("{rel}/");
        self.entries.keys().any(|k| k.starts_with(&prefix))
    }
}

impl FileSource for MemFileSource {
    fn read(&self, rel: &str) -> Result<Vec<u8>, Error> {
        match self.entries.get(rel) {
            Some(MemEntry::File { data, .. }) => Ok(data.clone()),
            Some(_) => Err(Error::NotAFile(rel.to_string())),
            None if self.is_dir(rel) => Err(Error::NotAFile(rel.to_string())),
            None => Err(Error::LocalFileNotFound(rel.to_string())),
        }
    }

    fn list_tree(&self, rel: &str) -> Result<Vec<TreeEntry>, Error> {
        if self.entries.contains_key(rel) {
            return Err(Error::TreeNotDirectory);
        }
        if !self.is_dir(rel) {
            return Err(Error::LocalFileNotFound(rel.to_string()));
        }
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        let mut out: Vec<(Vec<String>, TreeEntryKind)> = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for (k, v) in &self.entries {
            let Some(sub) = k.strip_prefix(&prefix) else {
                continue;
            };
            let comps: Vec<String> = sub.split('/').map(str::to_string).collect();
            for i in 1..comps.len() {
                dirs.insert(comps[..i].to_vec());
            }
            let kind = match v {
                MemEntry::File { executable, .. } => TreeEntryKind::File {
                    executable: *executable,
                },
                MemEntry::Symlink(t) => TreeEntryKind::Symlink { target: t.clone() },
                MemEntry::Other => TreeEntryKind::Other,
            };
            out.push((comps, kind));
        }
        out.extend(dirs.into_iter().map(|d| (d, TreeEntryKind::Directory)));
        // Comparing component lists gives filepath.Walk's order: depth first, names sorted.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out
            .into_iter()
            .map(|(c, kind)| TreeEntry {
                path: c.join("/"),
                kind,
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_butane_rules() {
        assert_eq!(resolve_local("a/./b//c").unwrap(), "a/b/c");
        assert_eq!(resolve_local("/etc/x").unwrap(), "etc/x");
        assert_eq!(resolve_local("a/../b").unwrap(), "b");
        assert_eq!(resolve_local("a/../../b"), Err(Error::FilesDirEscape));
        assert_eq!(resolve_local(".."), Err(Error::FilesDirEscape));
    }

    #[test]
    fn tree_order_is_walk_order() {
        let fs = MemFileSource::new()
            .file("t/a.txt", "1")
            .file("t/a/x", "2")
            .symlink("t/b", "a.txt");
        let names: Vec<_> = fs
            .list_tree("t")
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(names, ["a", "a/x", "a.txt", "b"]);
        assert_eq!(fs.list_tree("t/a.txt"), Err(Error::TreeNotDirectory));
    }
}
