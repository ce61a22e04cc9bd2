//! Killing a process and everything it started, without leaving strays.
//!
//! sshd's session processes call `setsid()`, so killing sshd's process group
//! is not enough: the tree is found through `/proc/<pid>/stat` parent links,
//! frozen with SIGSTOP (a stopped process cannot fork), re-scanned until no
//! new descendant appears, then killed with SIGKILL.

use std::collections::{BTreeSet, HashMap};

use rustix::process::{kill_process, Pid, Signal};

/// Parent pid and state letter of every process, from `/proc`.
fn process_table() -> HashMap<u32, (u32, char)> {
    let mut table = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) S ppid ...`: comm may contain spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if let Some(ppid) = fields.next().and_then(|s| s.parse::<u32>().ok()) {
            table.insert(pid, (ppid, state));
        }
    }
    table
}

/// `root` and all its live (non-zombie) descendants.
pub fn descendants(root: u32) -> BTreeSet<u32> {
    let table = process_table();
    let mut found = BTreeSet::new();
    if table.get(&root).is_some_and(|(_, s)| *s != 'Z') {
        found.insert(root);
    }
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, (ppid, state)) in &table {
            if *ppid == parent && *state != 'Z' && found.insert(*pid) {
                frontier.push(*pid);
            }
        }
    }
    found
}

fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // The process may already be gone; that is the goal anyway.
        let _ = kill_process(pid, sig);
    }
}

/// Freeze, then kill, `root` and every process descending from it.
pub fn kill_tree(root: u32) {
    let mut frozen = BTreeSet::new();
    loop {
        let tree = descendants(root);
        let fresh: Vec<u32> = tree.difference(&frozen).copied().collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            signal(pid, Signal::STOP);
            frozen.insert(pid);
        }
    }
    for &pid in &frozen {
        signal(pid, Signal::KILL);
    }
    // SIGKILL is asynchronous: wait (bounded) until every process is gone or
    // a zombie, so callers can rely on nothing running any more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let table = process_table();
        if frozen
            .iter()
            .all(|pid| table.get(pid).is_none_or(|(_, state)| *state == 'Z'))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kills_a_tree_including_setsid_grandchildren() {
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("setsid sleep 300 & sleep 300 & wait")
            .spawn()
            .expect("/bin/sh and setsid are required");
        let pid = child.id();
        // Wait until both sleeps exist (bounded; no timing assertion).
        for _ in 0..500 {
            if descendants(pid).len() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let before = descendants(pid);
        assert!(before.len() >= 3, "tree not started: {before:?}");
        kill_tree(pid);
        let _ = child.wait();
        let table = process_table();
        for p in before {
            assert!(
                table.get(&p).is_none_or(|(_, state)| *state == 'Z'),
                "process {p} survived"
            );
        }
    }
}
