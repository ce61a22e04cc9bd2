//! The rollout journal: what the executor has done and is doing, written to the state folder
//! before every action (temp file, fsync, rename, fsync of the folder), so a Slipway killed at
//! any moment resumes exactly where it was. And the state folder's lock, so that two
//! Slipways never drive one fleet.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::steps::Step;
use crate::plan::Action;
use slipway_model::inventory::Role;

/// The journal's schema version.
pub const JOURNAL_FORMAT: &str = "1";

/// Where the journal lives inside the state folder.
pub fn journal_path(state: &Path) -> PathBuf {
    state.join("rollout").join("journal.json")
}

/// Where finished journals are kept (one file per rollout).
pub fn history_dir(state: &Path) -> PathBuf {
    state.join("rollout").join("history")
}

/// A rollout: one commit's plan, executed wave by wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// [`JOURNAL_FORMAT`].
    pub format_version: String,
    /// Unique id: `<unix seconds>-<commit prefix>`.
    pub id: String,
    /// The commit being applied.
    pub commit: String,
    /// When it started (Unix seconds).
    pub started_unix: u64,
    /// Whether a cluster ran when it started (the bootstrap server's config depends on it).
    pub cluster_exists: bool,
    /// The FCOS release it installs.
    pub os_version: String,
    /// The K3s version it installs.
    pub k3s_version: String,
    /// Where it stands.
    pub state: RolloutState,
    /// Why it stopped, when halted.
    pub halt: Option<Halt>,
    /// Why it waits, when paused (a maintenance window closed, Slipway stopped).
    #[serde(default)]
    pub paused: Option<String>,
    /// Every node with something to do, in execution order.
    pub nodes: Vec<NodeRecord>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Being executed (or the process driving it died: resume it).
    Running,
    /// Stopped on a failure; `rollout resume` retries the failed step.
    Halted,
    /// Waiting between nodes (a window closed) or steps (Slipway stopped); resumed by the
    /// next window or `rollout resume`.
    Paused,
    /// Every node is done.
    Done,
    /// Given up by `rollout abort`.
    Aborted,
}

/// Why a rollout halted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The node that failed.
    pub node: String,
    /// The step that failed.
    pub step: Step,
    /// What went wrong.
    pub message: String,
    /// What to do next.
    pub hint: String,
    /// `/var` was lost: resuming needs `--acknowledge-data-loss`.
    pub data_loss: bool,
}

/// One node's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name.
    pub node: String,
    /// K3s's name for it (the short host name).
    pub k3s_name: String,
    /// Its role.
    pub role: Role,
    /// What happens to it.
    pub action: Action,
    /// Its wave (1-based).
    pub wave: usize,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// How many of `steps` are finished.
    pub done: usize,
    /// Whether the step at `done` has started (its effects may have happened).
    pub started: bool,
    /// The config hash it must end with.
    pub desired_hash: String,
    /// The nonce written to `/var/lib/slipway/canary` before the reboot.
    pub canary: Option<String>,
    /// The boot id seen before the reboot this step asked for.
    pub boot_id_before: Option<String>,
    /// Whether the reboot command returned.
    pub reboot_sent: bool,
    /// Reboots that came back without the expected change (netboot fell through to disk).
    pub reboot_attempts: u32,
    /// Whether Slipway cordoned it (and must uncordon it).
    pub cordoned: bool,
    /// The last failure, if any.
    pub error: Option<String>,
    /// When its first step started (Unix milliseconds).
    #[serde(default)]
    pub started_unix_ms: Option<u64>,
    /// When its last step finished (Unix milliseconds).
    #[serde(default)]
    pub finished_unix_ms: Option<u64>,
}

impl NodeRecord {
    /// The step to run next, or `None` when finished.
    pub fn current(&self) -> Option<Step> {
        self.steps.get(self.done).copied()
    }

    /// Whether every step is finished.
    pub fn is_done(&self) -> bool {
        self.done >= self.steps.len()
    }
}

impl Journal {
    /// Waves in order, each with the indexes of its nodes.
    pub fn waves(&self) -> Vec<(usize, Vec<usize>)> {
        let mut waves: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            match waves.iter_mut().find(|(w, _)| *w == n.wave) {
                Some((_, v)) => v.push(i),
                None => waves.push((n.wave, vec![i])),
            }
        }
        waves.sort_by_key(|(w, _)| *w);
        waves
    }

    /// Load the journal, if there is one.
    pub fn load(state: &Path) -> Result<Option<Journal>> {
        let path = journal_path(state);
        let Some(j): Option<Journal> = read_json(
            &path,
            "the rollout journal is corrupt",
            "inspect it, then move it away to start over",
        )?
        else {
            return Ok(None);
        };
        if j.format_version != JOURNAL_FORMAT {
            bail!(
                "{}: journal format {} is not {JOURNAL_FORMAT}: finish or abort that rollout with the Slipway that started it",
                path.display(),
                j.format_version
            );
        }
        Ok(Some(j))
    }

    /// Write the journal durably: temp file, fsync, rename over, fsync the folder.
    pub fn save(&self, state: &Path) -> Result<()> {
        let path = journal_path(state);
        let bytes = serde_json::to_vec_pretty(self).context("encoding the journal")?;
        write_durably(&path, &bytes)
    }

    /// Move a finished journal into the history folder.
    pub fn archive(&self, state: &Path) -> Result<()> {
        let dir = history_dir(state);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let bytes = serde_json::to_vec_pretty(self).context("encoding the journal")?;
        write_durably(&dir.join(format!("{}.json", self.id)), &bytes)?;
        let path = journal_path(state);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        sync_dir(path.parent().unwrap_or(state))
    }
}

/// A JSON file of the state folder: `None` when absent; a parse error names the file, the
/// line and column, what is wrong (`what`) and what to do (`remedy`).
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    remedy: &str,
) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        anyhow!(
            "{}:{}:{}: {what}: {e}; {remedy}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// The most recent finished rollout, if any.
pub fn last_archived(state: &Path) -> Result<Option<Journal>> {
    let dir = history_dir(state);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut best: Option<Journal> = None;
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(j) = serde_json::from_str::<Journal>(&text) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|b| j.started_unix >= b.started_unix)
        {
            best = Some(j);
        }
    }
    Ok(best)
}

/// Write `bytes` to `path` so that a crash leaves the old file or the new one, never a mix.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a journal path has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// The state folder's exclusive lock, held for the life of the process (or of this value).
/// A second Slipway on the same folder is refused, naming the holder's pid.
pub struct StateLock {
    _lock: Flock<File>,
}

impl StateLock {
    /// Take the lock of `state` (created if needed) without waiting.
    pub fn acquire(state: &Path) -> Result<StateLock> {
        std::fs::create_dir_all(state)
            .with_context(|| format!("creating the state folder {}", state.display()))?;
        let path = state.join("slipway.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                bail!(
                    "another Slipway ({}) is driving the fleet from the state folder {}: wait for it to finish, or stop it",
                    if holder.is_empty() { "pid unknown".to_string() } else { format!("pid {holder}") },
                    state.display()
                );
            }
            Err((_, errno)) => {
                return Err(anyhow!("locking {}: {errno}", path.display()));
            }
        };
        lock.set_len(0)
            .and_then(|_| writeln!(&*lock, "{}", std::process::id()))
            .and_then(|_| lock.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(StateLock { _lock: lock })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(node: &str, wave: usize) -> NodeRecord {
        NodeRecord {
            node: node.into(),
            k3s_name: node.into(),
            role: Role::Agent,
            action: Action::Reinstall,
            wave,
            steps: vec![Step::Drain, Step::Netboot],
            done: 0,
            started: false,
            desired_hash: "h".into(),
            canary: None,
            boot_id_before: None,
            reboot_sent: false,
            reboot_attempts: 0,
            cordoned: false,
            error: None,
            started_unix_ms: None,
            finished_unix_ms: None,
        }
    }

    fn journal() -> Journal {
        Journal {
            format_version: JOURNAL_FORMAT.into(),
            id: "1-abc".into(),
            commit: "abc".into(),
            started_unix: 1,
            cluster_exists: true,
            os_version: "40.20240906.3.0".into(),
            k3s_version: "v1.30.4+k3s1".into(),
            state: RolloutState::Running,
            halt: None,
            paused: None,
            nodes: vec![record("b", 2), record("a", 1), record("c", 2)],
        }
    }

    #[test]
    fn journal_round_trips_and_archives() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(Journal::load(t.path()).unwrap(), None);
        let j = journal();
        j.save(t.path()).unwrap();
        assert_eq!(Journal::load(t.path()).unwrap(), Some(j.clone()));
        assert_eq!(j.waves(), vec![(1, vec![1]), (2, vec![0, 2])]);
        j.archive(t.path()).unwrap();
        assert_eq!(Journal::load(t.path()).unwrap(), None);
        assert_eq!(last_archived(t.path()).unwrap(), Some(j));
    }

    #[test]
    fn a_corrupt_journal_is_an_error_with_its_location() {
        let t = tempfile::tempdir().unwrap();
        let p = journal_path(t.path());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "{\n  \"format_version\": \"1\",\n  oops\n}").unwrap();
        let e = Journal::load(t.path()).unwrap_err().to_string();
        assert!(e.contains("journal.json:3:"), "{e}");
        assert!(e.contains("corrupt"), "{e}");
    }

    #[test]
    fn the_state_lock_is_exclusive_and_released_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(t.path()).unwrap();
        let e = StateLock::acquire(t.path()).err().unwrap().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        StateLock::acquire(t.path()).unwrap();
    }
}
