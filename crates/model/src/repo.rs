//! An in-memory snapshot of a cluster repository.
//!
//! The binary fills it from a working directory or from a git tree; everything in `model`
//! reads only from it, so loading and validation are pure and testable without a disk.

use std::collections::BTreeMap;

/// Files of a cluster repository, keyed by `/`-separated path relative to the repo root.
#[derive(Debug, Clone, Default)]
pub struct RepoFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl RepoFiles {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a file.
    pub fn insert(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), contents.into());
    }

    /// Remove a file (used by tests that build broken repos).
    pub fn remove(&mut self, path: &str) -> Option<Vec<u8>> {
        self.files.remove(path)
    }

    /// The bytes of a file.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// The file as UTF-8 text, if it exists and is text.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// True when the file exists.
    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Paths directly inside folder `dir` (not in sub-folders) ending in `suffix`, sorted.
    pub fn list(&self, dir: &str, suffix: &str) -> Vec<&str> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.files
            .keys()
            .filter(|p| p.starts_with(&prefix) && p.ends_with(suffix))
            .filter(|p| !p[prefix.len()..].contains('/'))
            .map(String::as_str)
            .collect()
    }

    /// All paths with their bytes, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}
