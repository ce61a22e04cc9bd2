//! `slipway facts`: what each node actually runs, read over SSH with pinned host keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use slipway_model::check::Secrets;
use slipway_model::facts::{NodeFacts, Reachability};
use slipway_model::inventory::Inventory;
use slipway_node_ssh::{gather_fleet, Auth, ConnectOptions, HostKeyPin, NodeTarget};

use crate::cmdline::{Output, RepoArgs};
use crate::desired;

/// Nodes gathered at once.
pub const FAN_OUT: usize = 32;

/// How Slipway logs in to nodes.
pub fn auth(ssh_key: Option<&Path>) -> Auth {
    match ssh_key {
        Some(p) => Auth::KeyFile(p.to_path_buf()),
        None => Auth::Agent,
    }
}

/// One SSH target per node (or the named one): host keys pinned from the node's secrets, or
/// from `known_hosts` when given.
pub fn targets(
    inv: &Inventory,
    secrets: &Secrets,
    only: Option<&str>,
    auth: &Auth,
    known_hosts: Option<&Path>,
) -> Result<Vec<NodeTarget>> {
    let mut out = Vec::new();
    for node in &inv.nodes {
        if only.is_some_and(|o| o != node.name) {
            continue;
        }
        let host_key = match known_hosts {
            Some(k) => HostKeyPin::KnownHosts(k.to_path_buf()),
            None => HostKeyPin::PublicKey(
                secrets
                    .host_public_key(&node.name)
                    .with_context(|| format!("deriving the host key of {}", node.name))?,
            ),
        };
        out.push(NodeTarget {
            name: node.name.clone(),
            host: node.ssh_host.clone(),
            port: node.ssh_port,
            user: inv.cluster.ssh_user.clone(),
            auth: auth.clone(),
            host_key,
        });
    }
    if let Some(o) = only {
        if out.is_empty() {
            bail!("no node named `{o}`");
        }
    }
    Ok(out)
}

/// Gather facts from every target, `FAN_OUT` at a time.
pub fn gather(targets: Vec<NodeTarget>) -> Result<Vec<(String, NodeFacts)>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    Ok(rt.block_on(gather_fleet(targets, FAN_OUT, ConnectOptions::default())))
}

/// `slipway facts`.
pub fn run(
    repo: &RepoArgs,
    node: Option<&str>,
    ssh_key: Option<&PathBuf>,
    known_hosts: Option<&PathBuf>,
    output: Output,
) -> Result<ExitCode> {
    let loaded = desired::load(repo)?;
    let auth = auth(ssh_key.map(PathBuf::as_path));
    let targets = targets(
        &loaded.inventory,
        &loaded.secrets,
        node,
        &auth,
        known_hosts.map(PathBuf::as_path),
    )?;
    let facts = gather(targets)?;
    match output {
        Output::Json => {
            let v: Vec<serde_json::Value> = facts
                .iter()
                .map(|(n, f)| serde_json::json!({"node": n, "facts": f}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"format_version": "1", "nodes": v})
                )?
            );
        }
        Output::Text => print!("{}", table(&facts)),
    }
    let unreachable = facts.iter().filter(|(_, f)| !f.is_reachable()).count();
    Ok(if unreachable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The facts as an aligned table, one node per line, then one line per problem.
pub fn table(facts: &[(String, NodeFacts)]) -> String {
    let mut rows = vec![
        ["NODE", "STATE", "OS", "PENDING", "K3S", "APPLIED", "UPTIME"]
            .map(String::from)
            .to_vec(),
    ];
    let mut notes = Vec::new();
    for (name, f) in facts {
        let state = match &f.reachability {
            Reachability::Reachable => match &f.k3s_service {
                Some(s) if s.is_active() => "up, k3s active".to_string(),
                Some(_) => "up, k3s inactive".to_string(),
                None => "up".to_string(),
            },
            Reachability::Unreachable { reason } => {
                notes.push(format!("{name}: unreachable: {reason}"));
                "unreachable".to_string()
            }
        };
        let os =
            f.os.as_ref()
                .map_or("-".into(), |o| o.booted.version.clone());
        let pending =
            f.os.as_ref()
                .and_then(|o| o.pending.as_ref())
                .map_or("-".into(), |p| p.version.clone());
        let k3s = f.k3s_version.clone().unwrap_or_else(|| "-".into());
        let applied = f
            .applied
            .as_ref()
            .map_or("-".into(), |a| a.commit.chars().take(12).collect());
        let uptime = f.uptime_seconds.map_or("-".into(), |s| {
            humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
        });
        for e in &f.errors {
            notes.push(format!("{name}: `{}`: {}", e.command, e.message));
        }
        rows.push(vec![name.clone(), state, os, pending, k3s, applied, uptime]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}
