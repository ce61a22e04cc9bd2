//! Watching a working copy: an edit, or a commit, arrives as one debounced event;
//! git's object writes do not.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway::source::{watch_repo, RepoChanged, RepoWatcher, DEFAULT_DEBOUNCE};

/// Generous bound so a loaded CI machine does not flake; typical latency is printed.
const PATIENCE: Duration = Duration::from_secs(10);

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "A")
        .env("GIT_AUTHOR_EMAIL", "a@example.org")
        .env("GIT_COMMITTER_NAME", "A")
        .env("GIT_COMMITTER_EMAIL", "a@example.org")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("this test needs git (Debian package git): {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn next(w: &mut RepoWatcher) -> RepoChanged {
    tokio::time::timeout(PATIENCE, w.changed())
        .await
        .expect("no change event within 10 s")
        .expect("the watcher stopped")
}

fn repo() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("work");
    std::fs::create_dir_all(&root).unwrap();
    git(&root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join("cluster.yaml"), "v: 1\n").unwrap();
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "first"]);
    (t, root)
}

#[tokio::test]
async fn an_edit_arrives_as_one_debounced_event() {
    let (_t, root) = repo();
    let mut w = watch_repo(&root, DEFAULT_DEBOUNCE).unwrap();
    let start = Instant::now();
    // A burst: several writes to two files.
    for i in 0..5 {
        std::fs::write(root.join("cluster.yaml"), format!("v: {i}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("nodes")).unwrap();
    std::fs::write(root.join("nodes/n1.yaml"), "mac: aa\n").unwrap();
    let ev = next(&mut w).await;
    eprintln!(
        "watch latency (debounce {DEFAULT_DEBOUNCE:?}): {:?}",
        start.elapsed()
    );
    assert!(ev.paths.contains(&PathBuf::from("cluster.yaml")), "{ev:?}");
    // A file written right after its new folder may be seen only as the folder (inotify
    // watches a new folder once it exists): either names the change.
    assert!(ev.paths.iter().any(|p| p.starts_with("nodes")), "{ev:?}");
    // The burst was one event: the next one carries only a later, separate edit.
    std::fs::write(root.join("sentinel"), "s").unwrap();
    let ev = next(&mut w).await;
    assert_eq!(ev.paths, [PathBuf::from("sentinel")]);
}

/// Events until one names `wanted` (a burst may be split in two under heavy load).
async fn until(w: &mut RepoWatcher, wanted: &str) -> Vec<PathBuf> {
    let mut seen = Vec::new();
    loop {
        let ev = next(w).await;
        let done = ev.paths.iter().any(|p| p == Path::new(wanted));
        seen.extend(ev.paths);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_commit_is_noticed_through_its_ref_but_object_writes_are_not() {
    let (_t, root) = repo();
    let mut w = watch_repo(&root, DEFAULT_DEBOUNCE).unwrap();

    // A blob written into .git/objects, then a work-tree sentinel: every event up to the
    // sentinel names the sentinel only, no git internals.
    git(&root, &["hash-object", "-w", "cluster.yaml"]);
    std::fs::write(root.join("sentinel"), "s").unwrap();
    let seen = until(&mut w, "sentinel").await;
    assert!(seen.iter().all(|p| p == Path::new("sentinel")), "{seen:?}");

    // An empty commit changes nothing in the tree: only the branch ref announces it.
    git(&root, &["commit", "-q", "--allow-empty", "-m", "second"]);
    let seen = until(&mut w, ".git/refs/heads/main").await;
    assert!(
        seen.iter().all(|p| !p.starts_with(".git/objects")
            && !p.ends_with("index")
            && !p.starts_with(".git/logs")),
        "{seen:?}"
    );
}
