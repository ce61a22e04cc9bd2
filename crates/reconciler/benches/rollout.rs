//! The rollout's orchestration overhead, on the simulated fleet (loopback only).
//!
//! A lab of 3 servers + 20 agents (`max_unavailable_agents: 5`) is installed from nothing,
//! then a commit changes every node's config and the whole fleet is reinstalled. For each
//! node of the reinstall: its rollout time (first step start → last step end, from the
//! journal), its own boot time (the simulator's: `systemctl reboot` received → booted again
//! with the new config, which covers the firmware, the network install and Ignition), and
//! the difference — what Slipway added (drain, canary, polling, readiness checks).
//! Target: at most 2 s of overhead per node.
//!
//! Run: `cargo bench -p slipway --bench rollout` (needs root, sshd, busybox-static, Ignition:
//! `./tests/run` installs them).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{copy_dir, workspace};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use slipway::lab::{edit_yaml, Lab, LabOptions};
use slipway::rollout::journal::{last_archived, Journal};

const AGENTS: usize = 20;

fn slipway(args: &[&std::ffi::OsStr]) {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slipway {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// cluster-repo-example with workers 3..=20 added (their host keys generated).
fn big_repo(dir: &Path, identity: &Path) -> PathBuf {
    let repo = dir.join("source");
    copy_dir(&workspace().join("cluster-repo-example"), &repo);
    for i in 3..=AGENTS {
        std::fs::write(
            repo.join(format!("nodes/worker{i}.yaml")),
            format!(
                "hostname: worker{i}.lab.home.example.net\nrole: agent\nmac_address: \"88:ae:dd:02:01:{i:02x}\"\nnetwork:\n  address: 192.168.26.{}/24\n  gateway: 192.168.26.1\n  dns: [192.168.26.1]\n",
                40 + i
            ),
        )
        .unwrap();
    }
    slipway(&[
        "secrets".as_ref(),
        "generate".as_ref(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--identity".as_ref(),
        identity.as_os_str(),
    ]);
    repo
}

fn reconcile(lab: &Lab) -> f64 {
    let start = Instant::now();
    let mut args: Vec<std::ffi::OsString> = vec!["reconcile".into()];
    args.extend(lab.args());
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    slipway(&refs);
    start.elapsed().as_secs_f64()
}

/// The node's own time: its last `systemctl reboot` → its current boot.
fn own_time_ms(lab: &Lab, node: &str) -> u64 {
    let n = lab.fleet.node(node).unwrap();
    let booted = n.state().unwrap().booted_at_unix_ms;
    let reboot = n
        .commands_received()
        .unwrap()
        .iter()
        .filter(|c| c.command.contains("systemctl reboot"))
        .map(|c| c.at_unix_ms)
        .max()
        .unwrap();
    booted.saturating_sub(reboot)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("rollout: bench");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let identity = workspace().join("cluster-repo-example/.slipway/DEMO-ONLY-age-identity.txt");
    let source = big_repo(t.path(), &identity);
    let lab = Lab::start(
        &t.path().join("lab"),
        &source,
        &identity,
        &LabOptions {
            max_unavailable_agents: 5,
            ..LabOptions::default()
        },
    )
    .unwrap();
    let install = reconcile(&lab);

    // Every node's config changes: servers keep the network policy controller, agents get a label.
    edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        c["k3s"]["disable"]
            .as_sequence_mut()
            .unwrap()
            .retain(|v| v.as_str() != Some("network-policy"));
        Ok(())
    })
    .unwrap();
    for i in 1..=AGENTS {
        edit_yaml(&lab.repo.join(format!("nodes/worker{i}.yaml")), |n| {
            n.as_mapping_mut().unwrap().insert(
                "labels".into(),
                serde_yaml::from_str("{bench: changed}").unwrap(),
            );
            Ok(())
        })
        .unwrap();
    }
    lab.commit("every node changes").unwrap();
    let reinstall = reconcile(&lab);
    let j: Journal = last_archived(&lab.state).unwrap().unwrap();
    assert_eq!(j.nodes.len(), 3 + AGENTS, "every node was reinstalled");

    let mut rows = Vec::new();
    for n in &j.nodes {
        let total = n.finished_unix_ms.unwrap() - n.started_unix_ms.unwrap();
        let own = own_time_ms(&lab, &n.node);
        rows.push((
            n.node.clone(),
            n.wave,
            total,
            own,
            total.saturating_sub(own),
        ));
    }
    let overheads: Vec<u64> = rows.iter().map(|r| r.4).collect();
    let mean = overheads.iter().sum::<u64>() as f64 / overheads.len() as f64;
    let max = *overheads.iter().max().unwrap();
    println!("\nrollout benchmark: 3 servers + {AGENTS} agents, max_unavailable_agents 5 (simulated fleet, loopback)");
    println!(
        "{:<10} {:>4} {:>12} {:>14} {:>12}",
        "node", "wave", "rollout ms", "own boot ms", "overhead ms"
    );
    for (node, wave, total, own, over) in &rows {
        println!("{node:<10} {wave:>4} {total:>12} {own:>14} {over:>12}");
    }
    println!();
    println!("| measurement | value | target |");
    println!("|---|---|---|");
    println!("| install from nothing, 23 nodes | {install:.1} s | — |");
    println!(
        "| rolling reinstall, 23 nodes, {} waves | {reinstall:.1} s | — |",
        j.waves().len()
    );
    println!(
        "| orchestration overhead per node, mean | {:.2} s | ≤ 2 s |",
        mean / 1000.0
    );
    println!(
        "| orchestration overhead per node, max | {:.2} s | ≤ 2 s |",
        max as f64 / 1000.0
    );
    println!(
        "(machine load: {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
