//! The rollout executor end to end, against a simulated fleet of cluster-repo-example's five
//! nodes (one real sshd per node on 127.0.0.1, the real Ignition laying configs down, K3s
//! semantics checked by the simulator), with Slipway's real boot server: `slipway reconcile`
//! installs the cluster from nothing, rolls config changes, upgrades, and halts on faults.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;

use common::*;
use slipway::lab::{Lab, LabOptions};
use slipway::rollout::journal::{self, Journal, RolloutState};
use slipway_fleet_sim::{ClusterState, Fault, NetbootOutcome};

const SERVERS: [&str; 3] = ["lenovo1", "lenovo2", "lenovo3"];
const AGENTS: [&str; 2] = ["worker1", "worker2"];

fn lab(opts: &LabOptions) -> (tempfile::TempDir, Lab) {
    require_tool("ignition-validate");
    let t = tempfile::tempdir().unwrap();
    let lab = Lab::start(t.path(), &example_repo(), &demo_identity(), opts).unwrap();
    (t, lab)
}

fn reconcile(lab: &Lab, env: &[(&str, &str)]) -> Output {
    let mut c = slipway();
    c.arg("reconcile").args(lab.args());
    for (k, v) in env {
        c.env(k, v);
    }
    run(c)
}

fn resume(lab: &Lab, extra: &[&str]) -> Output {
    let mut c = slipway();
    c.args(["rollout", "resume"]).args(lab.args()).args(extra);
    run(c)
}

fn ok(out: &Output) -> String {
    let all = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "slipway failed:\n{all}");
    all
}

fn installs(lab: &Lab, node: &str) -> usize {
    lab.fleet
        .node(node)
        .unwrap()
        .netboot_log()
        .unwrap()
        .iter()
        .filter(|r| matches!(r.outcome, NetbootOutcome::Installed { .. }))
        .count()
}

fn cluster(lab: &Lab) -> ClusterState {
    lab.fleet.cluster().unwrap()
}

fn last_rollout(lab: &Lab) -> Journal {
    journal::last_archived(&lab.state)
        .unwrap()
        .expect("an archived rollout")
}

/// The order nodes were rebooted by the rollout: the waves of the journal.
fn wave_order(j: &Journal) -> Vec<Vec<String>> {
    j.waves()
        .into_iter()
        .map(|(_, idx)| idx.into_iter().map(|i| j.nodes[i].node.clone()).collect())
        .collect()
}

/// A K3s flag change for every node: disable one component less (`network-policy`).
fn keep_network_policy(lab: &Lab) {
    slipway::lab::edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        let disable = c["k3s"]["disable"].as_sequence_mut().unwrap();
        let before = disable.len();
        disable.retain(|v| v.as_str() != Some("network-policy"));
        assert_eq!(disable.len(), before - 1);
        Ok(())
    })
    .unwrap();
    lab.commit("k3s: keep the network policy controller")
        .unwrap();
}

fn assert_healthy(lab: &Lab) {
    let c = cluster(lab);
    assert!(c.split_brain.is_empty(), "split brain: {:?}", c.split_brain);
    assert_eq!(c.members.len(), 3, "etcd members: {:?}", c.members);
    assert_eq!(c.healthy_members().len(), 3);
    for n in SERVERS.iter().chain(&AGENTS) {
        let node = lab.fleet.node(n).unwrap();
        assert!(node.k3s_ready().unwrap(), "{n} is not Ready");
    }
    for k in &c.nodes {
        assert!(!k.unschedulable, "{} is still cordoned", k.name);
    }
}

#[test]
fn install_from_nothing_then_a_k3s_flag_change_rolls_through_keeping_var() {
    let (_t, lab) = lab(&LabOptions::default());
    let out = reconcile(&lab, &[]);
    let all = ok(&out);
    assert!(all.contains("install"), "{all}");
    assert_healthy(&lab);
    let first = last_rollout(&lab);
    assert_eq!(first.state, RolloutState::Done);
    // The bootstrap server first, alone; then the other servers one at a time; agents last.
    let order = wave_order(&first);
    assert_eq!(order[0], vec!["lenovo1"], "{order:?}");
    assert!(order[1..3].iter().all(|w| w.len() == 1), "{order:?}");
    for n in SERVERS.iter().chain(&AGENTS) {
        assert_eq!(installs(&lab, n), 1, "{n} installed once");
    }
    let members_before: Vec<String> = cluster(&lab).members.iter().map(|m| m.id.clone()).collect();

    // Data the cluster keeps in /var, which a reinstall must keep.
    let marker = lab
        .fleet
        .node("lenovo2")
        .unwrap()
        .var()
        .join("lib/precious.txt");
    std::fs::write(&marker, "do not lose me\n").unwrap();

    // A K3s flag change: servers disable one component less, agents get a node label.
    for w in AGENTS {
        slipway::lab::edit_yaml(&lab.repo.join(format!("nodes/{w}.yaml")), |n| {
            n.as_mapping_mut().unwrap().insert(
                "labels".into(),
                serde_yaml::from_str("{topology.kubernetes.io/zone: rack1, storage: fast}")
                    .unwrap(),
            );
            Ok(())
        })
        .unwrap();
    }
    keep_network_policy(&lab);

    let out = reconcile(&lab, &[]);
    let all = ok(&out);
    assert!(all.contains("reinstall"), "{all}");
    assert_healthy(&lab);
    let second = last_rollout(&lab);
    let order = wave_order(&second);
    // Servers one at a time, the bootstrap server last (it rejoins), agents one by one
    // (max_unavailable_agents: 1).
    assert!(order.iter().all(|w| w.len() == 1), "{order:?}");
    let flat: Vec<&str> = order.iter().map(|w| w[0].as_str()).collect();
    assert_eq!(&flat[..3], &["lenovo2", "lenovo3", "lenovo1"], "{flat:?}");
    for n in SERVERS.iter().chain(&AGENTS) {
        assert_eq!(installs(&lab, n), 2, "{n} reinstalled exactly once");
        let rec = second.nodes.iter().find(|r| &r.node == n).unwrap();
        assert!(rec.canary.is_some(), "{n} got a canary");
    }
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "do not lose me\n"
    );
    // Every server rejoined as the same etcd member; the bootstrap server joined (no second cluster).
    let members_after: Vec<String> = cluster(&lab).members.iter().map(|m| m.id.clone()).collect();
    assert_eq!(members_before, members_after);
    // Nothing is left to do.
    let mut c = slipway();
    c.args(["reconcile", "--dry-run", "--detailed-exitcode"]);
    let args = lab.args();
    c.args(&args[..8]);
    let out = run(c);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_node_that_never_returns_halts_the_rollout_and_stays_cordoned() {
    let (_t, lab) = lab(&LabOptions {
        timeouts: ["30s", "20s", "20s", "30s"],
        ..LabOptions::default()
    });
    ok(&reconcile(&lab, &[]));
    keep_network_policy(&lab);
    lab.fleet
        .node("lenovo2")
        .unwrap()
        .inject(Fault::NeverReturnsAfterReboot)
        .unwrap();

    let out = reconcile(&lab, &[]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("HALTED"), "{all}");
    assert!(all.contains("lenovo2 failed at step netboot"), "{all}");
    assert!(all.contains("still cordoned"), "{all}");
    // Every other node untouched: installed once, still Ready and schedulable.
    for n in ["lenovo1", "lenovo3", "worker1", "worker2"] {
        assert_eq!(installs(&lab, n), 1, "{n} must be untouched");
    }
    let c = cluster(&lab);
    let l2 = c.nodes.iter().find(|n| n.name == "lenovo2").unwrap();
    assert!(l2.unschedulable, "the failing node stays cordoned");
    // Status tells the same; a new reconcile refuses while the rollout is halted.
    let mut s = slipway();
    s.args(["rollout", "status", "--state"]).arg(&lab.state);
    let status = text(&run(s).stdout);
    assert!(
        status.contains("HALTED") && status.contains("lenovo2"),
        "{status}"
    );
    let again = reconcile(&lab, &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("halted"),
        "{}",
        text(&again.stderr)
    );
}
