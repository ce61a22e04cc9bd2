//! `slipway facts` against a simulated fleet of cluster-repo-example's five nodes: one real
//! sshd per node on 127.0.0.1, host keys pinned from the example's encrypted secrets.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use slipway_fleet_sim::{locate_sim_binary, Fleet, FleetSpec, K3sUnit, NodeState, SimNodeSpec};
use slipway_model::check::check_repo;
use slipway_model::secrets::Identities;
use zeroize::Zeroizing;

fn client_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("id_ed25519");
    let out = std::process::Command::new(require_tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn start_example_fleet(dir: &Path, authorized: &str) -> Fleet {
    let files = slipway::repo_fs::read_repo(&example_repo()).unwrap();
    let ids = Identities::parse(&std::fs::read_to_string(demo_identity()).unwrap()).unwrap();
    let checked = check_repo(&files, Some(&ids));
    let (inv, secrets) = (checked.inventory.unwrap(), checked.secrets.unwrap());
    let nodes = inv
        .nodes
        .iter()
        .map(|n| {
            SimNodeSpec::new(
                n.name.clone(),
                Zeroizing::new(secrets.host_keys[&n.name].expose().to_string()),
                vec![authorized.to_string()],
                NodeState::installed(
                    "40.20240906.3.0",
                    "v1.30.4+k3s1",
                    if n.role == slipway_model::inventory::Role::Server {
                        K3sUnit::Server
                    } else {
                        K3sUnit::Agent
                    },
                ),
            )
        })
        .collect();
    Fleet::start(FleetSpec {
        dir: dir.to_path_buf(),
        sim_binary: locate_sim_binary()
            .expect("build the simulator first: cargo build -p slipway-fleet-sim"),
        nodes,
    })
    .unwrap()
}

/// Point each node file of `repo` at its simulated node's loopback port. The simulator's
/// sshd runs on this host, where the login user is root (FCOS's `core` does not exist here).
fn point_at(repo: &Path, fleet: &Fleet, swap: Option<(&str, &str)>) {
    let cluster = std::fs::read_to_string(repo.join("cluster.yaml"))
        .unwrap()
        .replace("  user: core", "  user: root");
    std::fs::write(repo.join("cluster.yaml"), cluster).unwrap();
    for name in ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"] {
        let target = match swap {
            Some((a, b)) if a == name => b,
            _ => name,
        };
        let port = fleet.node(target).unwrap().port();
        let p = repo.join(format!("nodes/{name}.yaml"));
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str(&format!("ssh_address: \"127.0.0.1:{port}\"\n"));
        std::fs::write(&p, s).unwrap();
    }
}

#[test]
fn facts_from_every_node_with_pinned_host_keys() {
    let (t, repo) = example_copy();
    let (key, public) = client_key(t.path());
    let fleet = start_example_fleet(&t.path().join("fleet"), &public);
    point_at(&repo, &fleet, None);

    let mut c = slipway();
    c.args(["facts", "--output", "json", "--ssh-key"])
        .arg(&key)
        .arg("--repo")
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity());
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    for n in nodes {
        let f = &n["facts"];
        assert_eq!(f["reachability"]["state"], "reachable", "{n}");
        assert_eq!(f["os"]["booted"]["version"], "40.20240906.3.0", "{n}");
        assert_eq!(f["k3s_version"], "v1.30.4+k3s1", "{n}");
        assert!(f["boot_id"].as_str().is_some_and(|b| b.len() == 36), "{n}");
    }
    // Reading facts sends one read-only script per node, nothing else.
    for node in fleet.nodes() {
        let cmds = node.commands_received().unwrap();
        assert_eq!(cmds.len(), 1, "{}: {cmds:?}", node.name());
        assert_eq!(cmds[0].command, slipway_node_ssh::fact_script());
    }

    // Text output, one node.
    let mut c = slipway();
    c.args(["facts", "--node", "worker2", "--ssh-key"])
        .arg(&key)
        .arg("--repo")
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity());
    let out = run(c);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("worker2  up"),
        "{table}"
    );
}

#[test]
fn a_node_answering_with_another_host_key_is_refused_by_name() {
    let (t, repo) = example_copy();
    let (key, public) = client_key(t.path());
    let fleet = start_example_fleet(&t.path().join("fleet"), &public);
    // worker1's address now leads to worker2's sshd: a different host key.
    point_at(&repo, &fleet, Some(("worker1", "worker2")));
    let mut c = slipway();
    c.args(["facts", "--ssh-key"])
        .arg(&key)
        .arg("--repo")
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity());
    let out = run(c);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unreachable node fails the command"
    );
    let table = text(&out.stdout);
    let note = table
        .lines()
        .find(|l| l.starts_with("worker1: unreachable"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        note.contains("host key") && note.matches("SHA256:").count() == 2,
        "{note}"
    );
    assert!(
        fleet
            .node("worker2")
            .unwrap()
            .commands_received()
            .unwrap()
            .len()
            == 1,
        "only worker2's own gathering reached it"
    );
}

/// `reconcile --dry-run` sends only the read-only fact script to nodes, publishes nothing and
/// arms nothing; the plan names every node and never shows a secret.
#[test]
fn dry_run_reads_and_changes_nothing() {
    let (t, repo) = example_copy();
    let (key, public) = client_key(t.path());
    let fleet = start_example_fleet(&t.path().join("fleet"), &public);
    point_at(&repo, &fleet, None);
    let state = t.path().join("state");
    import_artifacts(t.path(), &state);
    let state_before = listing(&state);

    for output in ["text", "json"] {
        let mut c = slipway();
        c.args([
            "reconcile",
            "--dry-run",
            "--detailed-exitcode",
            "--output",
            output,
            "--ssh-key",
        ])
        .arg(&key)
        .arg("--repo")
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg("--state")
        .arg(&state);
        let out = run(c);
        assert_eq!(
            out.status.code(),
            Some(2),
            "changes planned: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let plan = text(&out.stdout);
        for n in ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"] {
            assert!(plan.contains(n), "{n} missing from the plan");
        }
        let token = text(
            &run({
                let mut c = slipway();
                c.args(["secrets", "decrypt", "--identity"])
                    .arg(demo_identity())
                    .arg(repo.join("secrets/cluster.age"));
                c
            })
            .stdout,
        );
        let token = token
            .trim()
            .trim_start_matches("k3s_token: ")
            .trim_matches('"')
            .to_string();
        assert!(!plan.contains(&token), "the token is in the plan");
        assert!(!plan.contains("PRIVATE KEY"), "a host key is in the plan");
    }
    // Every command any node received is read-only: the fact script, once per plan, and
    // K3s's node list (asked of one server whose K3s runs, to know nodes gone from the
    // inventory).
    for node in fleet.nodes() {
        let cmds = node.commands_received().unwrap();
        let facts = cmds
            .iter()
            .filter(|c| c.command == slipway_node_ssh::fact_script())
            .count();
        assert_eq!(
            facts,
            2,
            "{}: one gathering per plan: {cmds:?}",
            node.name()
        );
        assert!(
            cmds.iter()
                .all(|c| c.command == slipway_node_ssh::fact_script()
                    || c.command == "k3s kubectl get nodes -o json"),
            "{}: {cmds:?}",
            node.name()
        );
    }
    assert_eq!(
        listing(&state),
        state_before,
        "the dry run wrote into the state folder"
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(format!(
                    "{} {}",
                    p.display(),
                    std::fs::metadata(&p).unwrap().len()
                ));
            }
        }
    }
    out.sort();
    out
}
