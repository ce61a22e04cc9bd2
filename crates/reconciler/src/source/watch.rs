//! Watching a local working copy for instant pick-up while editing.
//!
//! Events are debounced (a burst of writes, e.g. an editor's save or a `git commit`, yields
//! one [`RepoChanged`]) and `.git/` internals are ignored except ref updates (`HEAD`,
//! `refs/...`, `packed-refs`), so a commit or a checkout is noticed but object writes are
//! not. Access events (open/close/read) are ignored.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::error::SourceError;

/// The default quiet time that ends a burst of changes.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

/// One debounced batch of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoChanged {
    /// Changed paths relative to the watched folder, sorted, without duplicates. A hint,
    /// not an inventory: a file written right after its new folder may show up as the
    /// folder only. Treat any event as "re-read the repository".
    pub paths: Vec<PathBuf>,
}

/// A running watch. Dropping it stops the watcher and its thread.
#[derive(Debug)]
pub struct RepoWatcher {
    events: tokio::sync::mpsc::Receiver<RepoChanged>,
    _watcher: RecommendedWatcher,
}

impl RepoWatcher {
    /// The next batch of changes (`None` once the watcher has stopped).
    pub async fn changed(&mut self) -> Option<RepoChanged> {
        self.events.recv().await
    }

    /// The next batch of changes, blocking the thread (not for use inside an async task).
    pub fn blocking_changed(&mut self) -> Option<RepoChanged> {
        self.events.blocking_recv()
    }

    /// The next batch if one is ready, without waiting.
    pub fn try_changed(&mut self) -> Option<RepoChanged> {
        self.events.try_recv().ok()
    }
}

/// Watch the working copy at `root` recursively; changes arrive `debounce` after the last
/// write of a burst.
pub fn watch_repo(root: &Path, debounce: Duration) -> Result<RepoWatcher, SourceError> {
    let root = root
        .canonicalize()
        .map_err(|e| SourceError::io("watching", root, e))?;
    let watch_err = |e: notify::Error| SourceError::Watch {
        path: root.clone(),
        why: e.to_string(),
    };
    let (raw_tx, raw_rx) = mpsc::channel::<PathBuf>();
    let base = root.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            let rel = path.strip_prefix(&base).unwrap_or(&path).to_owned();
            if relevant(&rel) {
                // The receiver is gone only when the watch is being dropped.
                let _ = raw_tx.send(rel);
            }
        }
    })
    .map_err(watch_err)?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(watch_err)?;

    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::Builder::new()
        .name("slipway-watch".into())
        .spawn(move || debounce_loop(&raw_rx, &tx, debounce))
        .map_err(|e| SourceError::io("starting the watcher thread for", &root, e))?;
    Ok(RepoWatcher {
        events: rx,
        _watcher: watcher,
    })
}

/// Collect paths until `quiet` passes with no new one, then send the batch. Ends when the
/// watcher (the sender) or the [`RepoWatcher`] (the receiver) is dropped.
fn debounce_loop(
    raw: &mpsc::Receiver<PathBuf>,
    out: &tokio::sync::mpsc::Sender<RepoChanged>,
    quiet: Duration,
) {
    while let Ok(first) = raw.recv() {
        let mut paths = BTreeSet::from([first]);
        let mut closed = false;
        loop {
            match raw.recv_timeout(quiet) {
                Ok(p) => {
                    paths.insert(p);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let batch = RepoChanged {
            paths: paths.into_iter().collect(),
        };
        if out.blocking_send(batch).is_err() || closed {
            return;
        }
    }
}

/// Does a change to `rel` (relative to the repo root) matter? Everything outside `.git/`;
/// inside it only ref updates, and never lock files.
fn relevant(rel: &Path) -> bool {
    let mut parts = rel.components().filter_map(|c| match c {
        Component::Normal(s) => s.to_str(),
        _ => None,
    });
    if parts.next() != Some(".git") {
        return true;
    }
    if rel.extension().is_some_and(|e| e == "lock") {
        return false;
    }
    matches!(parts.next(), Some("HEAD" | "refs" | "packed-refs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_internals_are_ignored_except_refs() {
        for yes in [
            "nodes/n1.yaml",
            "cluster.yaml",
            ".git/HEAD",
            ".git/refs/heads/main",
            ".git/packed-refs",
            ".slipway/recipients.txt",
        ] {
            assert!(relevant(Path::new(yes)), "{yes}");
        }
        for no in [
            ".git/objects/ab/cdef",
            ".git/index",
            ".git/refs/heads/main.lock",
            ".git/logs/HEAD",
            ".git/COMMIT_EDITMSG",
            ".git",
        ] {
            assert!(!relevant(Path::new(no)), "{no}");
        }
    }
}
