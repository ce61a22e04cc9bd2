//! `slipway demo`: the whole story on one machine, on loopback only. A simulated fleet of
//! cluster-repo-example's nodes (3 servers, 2 agents; one real sshd each) in a temporary
//! folder; Slipway serves PXE, installs the cluster from nothing, then a commit changes a K3s
//! flag and Slipway rolls a reinstall across the fleet, after a file was written into a
//! server's `/var` that is shown to survive. It ends with a summary and removes everything
//! on exit or Ctrl-C.
//!
//! The rollouts run as child `slipway reconcile` processes (what a user would type), so a
//! Ctrl-C stops the child, then the fleet and the folder are cleaned up.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::lab::{edit_yaml, Lab, LabOptions};

/// Tools the simulator needs, with the Debian package that has each.
pub const NEEDED: &[(&str, &str)] = &[
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/lib/openssh/sftp-server", "openssh-sftp-server"),
    ("/bin/busybox", "busybox-static"),
    ("/usr/bin/unshare", "util-linux"),
    ("/usr/lib/dracut/modules.d/30ignition/ignition", "ignition"),
];

/// `slipway demo`.
pub fn run(repo: &Path, identity: Option<&Path>, keep: bool) -> Result<ExitCode> {
    prerequisites()?;
    let identity = identity
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo.join(".slipway/DEMO-ONLY-age-identity.txt"));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let dir = tempfile::Builder::new()
        .prefix("slipway-demo-")
        .tempdir()
        .context("creating the demo folder")?;
    say(&format!(
        "Building a lab in {}: the nodes of {} as simulated machines on 127.0.0.1 (a real sshd each), their firmware pointed at Slipway's boot server.",
        dir.path().display(),
        repo.display()
    ));
    let started = Instant::now();
    let lab = Lab::start(dir.path(), repo, &identity, &LabOptions::default())?;
    for n in lab.fleet.nodes() {
        println!("  {:<10} ssh 127.0.0.1:{}", n.name(), n.port());
    }
    let result = story(&lab, &stop);
    let summary = summary(&lab);
    drop(lab);
    if keep {
        let kept = dir.keep();
        say(&format!("Kept the lab folder: {}", kept.display()));
    }
    match result {
        Ok(()) => {
            print!("{summary}");
            say(&format!(
                "Done in {:.0?}; the simulated fleet is stopped and its folder removed.",
                started.elapsed()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if stop.load(Ordering::SeqCst) => {
            say(&format!(
                "Interrupted ({e}); the simulated fleet is stopped and its folder removed."
            ));
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e),
    }
}

fn say(s: &str) {
    println!("\n==> {s}");
}

fn story(lab: &Lab, stop: &AtomicBool) -> Result<()> {
    say("1. Install the cluster from nothing: `slipway reconcile` plans, serves PXE, and installs the bootstrap server first, then the others one at a time, then the agents.");
    reconcile(lab, stop)?;
    show_cluster(lab)?;

    let marker = lab
        .fleet
        .node("lenovo2")
        .map_err(|e| anyhow!("{e}"))?
        .var()
        .join("lib/demo/precious.txt");
    std::fs::create_dir_all(marker.parent().unwrap_or(Path::new("/")))
        .context("writing into lenovo2's /var")?;
    std::fs::write(&marker, "written before the reinstall\n")
        .context("writing into lenovo2's /var")?;
    say("2. Wrote /var/lib/demo/precious.txt on lenovo2. Now a commit changes a K3s flag (servers stop disabling the network-policy controller; agents get a node label).");
    edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        if let Some(d) = c["k3s"]["disable"].as_sequence_mut() {
            d.retain(|v| v.as_str() != Some("network-policy"));
        }
        Ok(())
    })?;
    for agent in lab
        .fleet
        .nodes()
        .iter()
        .map(|n| n.name())
        .filter(|n| n.starts_with("worker"))
    {
        edit_yaml(&lab.repo.join(format!("nodes/{agent}.yaml")), |n| {
            if let Some(labels) = n["labels"].as_mapping_mut() {
                labels.insert("demo.slipway/changed".into(), "true".into());
            }
            Ok(())
        })?;
    }
    let commit = lab.commit("k3s: keep the network policy controller; label the agents")?;
    println!("  committed {}", &commit[..12.min(commit.len())]);
    say("3. Roll it out: each node is drained, its /var canary written, netbooted and reinstalled with /var kept, checked Ready, its canary verified, uncordoned; servers one at a time (the bootstrap server last, rejoining), agents in batches.");
    reconcile(lab, stop)?;
    let kept = std::fs::read_to_string(&marker).unwrap_or_default();
    if kept != "written before the reinstall\n" {
        bail!("/var/lib/demo/precious.txt did not survive on lenovo2");
    }
    say("4. /var/lib/demo/precious.txt on lenovo2 survived its reinstall: \"written before the reinstall\".");
    show_cluster(lab)
}

fn reconcile(lab: &Lab, stop: &AtomicBool) -> Result<()> {
    let exe = std::env::current_exe().context("finding the slipway binary")?;
    let mut child = Command::new(exe)
        .arg("reconcile")
        .args(lab.args())
        .stdin(Stdio::null())
        .spawn()
        .context("starting slipway reconcile")?;
    loop {
        if let Some(status) = child.try_wait().context("waiting for slipway reconcile")? {
            if status.success() {
                return Ok(());
            }
            bail!("slipway reconcile failed ({status})");
        }
        if stop.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn show_cluster(lab: &Lab) -> Result<()> {
    let c = lab.fleet.cluster().map_err(|e| anyhow!("{e}"))?;
    println!("  K3s nodes (as `kubectl get nodes` would list them):");
    for n in &c.nodes {
        println!(
            "    {:<10} {:<7} {}",
            n.name,
            if lab
                .fleet
                .node(&n.name)
                .ok()
                .and_then(|s| s.k3s_ready().ok())
                .unwrap_or(false)
            {
                "Ready"
            } else {
                "NotReady"
            },
            n.kubelet_version
        );
    }
    println!(
        "  etcd: {} members, {} healthy; split-brains: {}",
        c.members.len(),
        c.healthy_members().len(),
        c.split_brain.len()
    );
    Ok(())
}

fn summary(lab: &Lab) -> String {
    let mut out = String::from(
        "\n==> Summary\n  node        boots  network installs  OS                K3s\n",
    );
    for n in lab.fleet.nodes() {
        let state = n.state().ok();
        let installs = n
            .netboot_log()
            .map(|l| {
                l.iter()
                    .filter(|r| {
                        matches!(
                            r.outcome,
                            slipway_fleet_sim::NetbootOutcome::Installed { .. }
                        )
                    })
                    .count()
            })
            .unwrap_or(0);
        out.push_str(&format!(
            "  {:<10} {:>6} {:>17}  {:<17} {}\n",
            n.name(),
            state.as_ref().map_or(0, |s| s.boots),
            installs,
            state.as_ref().map_or("?".into(), |s| s.os.version.clone()),
            state
                .as_ref()
                .and_then(|s| s.k3s.as_ref().map(|k| k.version.clone()))
                .unwrap_or_else(|| "-".into())
        ));
    }
    out
}

/// The simulator needs root (it chroots each node into its own folder) and a few Debian
/// packages: install them when we may, or say exactly how.
fn prerequisites() -> Result<()> {
    let root = nix::unistd::Uid::effective().is_root();
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        let line = format!(
            "apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
        if !root || !Path::new("/usr/bin/apt-get").exists() {
            bail!(
                "the demo's simulator needs Debian packages that are missing: run `sudo apt-get update && sudo {line}`, then run the demo again (as root)"
            );
        }
        println!(
            "==> Installing what the simulator needs: {}",
            missing.join(" ")
        );
        for args in [vec!["update", "-qq"], {
            let mut v = vec!["install", "-y", "-qq", "--no-install-recommends"];
            v.extend(missing.iter().copied());
            v
        }] {
            let status = Command::new("apt-get")
                .args(&args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .context("running apt-get")?;
            if !status.success() {
                bail!("`apt-get {}` failed: run `{line}` yourself", args.join(" "));
            }
        }
    }
    if !root {
        bail!("the demo's simulator needs root (each simulated node runs chrooted in its own mount namespace): run it with sudo");
    }
    slipway_fleet_sim::locate_sim_binary().map_err(|e| {
        anyhow!("{e}: build it next to slipway with `cargo build --release --workspace --bins`")
    })?;
    Ok(())
}
