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

fn boots(lab: &Lab, node: &str) -> u32 {
    lab.fleet.node(node).unwrap().state().unwrap().boots
}

/// Commit a change that only `node` sees (a label value).
fn relabel(lab: &Lab, node: &str, value: &str) {
    slipway::lab::edit_yaml(&lab.repo.join(format!("nodes/{node}.yaml")), |n| {
        n["labels"]
            .as_mapping_mut()
            .unwrap()
            .insert("slipway.test/round".into(), value.into());
        Ok(())
    })
    .unwrap();
    lab.commit(&format!("{node}: round {value}")).unwrap();
}

#[test]
fn slipway_killed_at_every_step_resumes_without_a_second_reinstall_or_a_skipped_check() {
    use std::os::unix::process::ExitStatusExt as _;
    let (_t, lab) = lab(&LabOptions::default());
    ok(&reconcile(&lab, &[]));
    let others = ["lenovo1", "lenovo3", "worker1", "worker2"];
    let other_boots: Vec<u32> = others.iter().map(|n| boots(&lab, n)).collect();
    let points = [
        "preflight",
        "snapshot",
        "drain",
        "write-canary",
        "netboot",
        "netboot/sent",
        "await-boot",
        "await-ready",
        "check-canary",
        "uncordon",
    ];
    for (round, point) in points.iter().enumerate() {
        relabel(&lab, "lenovo2", &round.to_string());
        let before = installs(&lab, "lenovo2");
        let killed = reconcile(
            &lab,
            &[("SLIPWAY_TEST_KILL_AT", &format!("lenovo2:{point}"))],
        );
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "killed at {point}: {}{}",
            text(&killed.stdout),
            text(&killed.stderr)
        );
        let j = Journal::load(&lab.state)
            .unwrap()
            .expect("the journal survives");
        assert_eq!(j.state, RolloutState::Running, "at {point}");
        let rec = &j.nodes[0];
        assert_eq!(rec.node, "lenovo2");
        let at = point.split('/').next().unwrap();
        assert_eq!(
            rec.current().map(|s| s.name()),
            Some(at),
            "journal at {point}"
        );
        assert!(
            rec.started,
            "the step was journaled as started before it acted"
        );

        // A second Slipway refuses a new reconcile while the rollout is unfinished.
        let refused = reconcile(&lab, &[]);
        assert_eq!(refused.status.code(), Some(1));
        assert!(
            text(&refused.stderr).contains("rollout resume"),
            "{}",
            text(&refused.stderr)
        );

        let all = ok(&resume(&lab, &[]));
        assert!(all.contains("done"), "{all}");
        assert_eq!(
            installs(&lab, "lenovo2"),
            before + 1,
            "exactly one reinstall when killed at {point}"
        );
        let done = last_rollout(&lab);
        let rec = &done.nodes[0];
        assert!(rec.is_done(), "every step ran, none skipped: {rec:?}");
        assert_healthy(&lab);
        let now: Vec<u32> = others.iter().map(|n| boots(&lab, n)).collect();
        assert_eq!(
            now, other_boots,
            "no other node rebooted (quorum kept) at {point}"
        );
    }
}

#[test]
fn a_second_slipway_on_the_same_state_folder_refuses_to_start() {
    let t = tempfile::tempdir().unwrap();
    let _held = slipway::rollout::journal::StateLock::acquire(t.path()).unwrap();
    let (_r, repo) = example_copy();
    let mut c = slipway();
    c.args(["reconcile", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg("--state")
        .arg(t.path());
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("another Slipway") && e.contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
}

#[test]
fn a_lost_var_halts_everything_with_a_data_loss_alarm() {
    let (_t, lab) = lab(&LabOptions::default());
    ok(&reconcile(&lab, &[]));
    // worker1 reinstalls; while it is down its data disk dies (the simulator's /var of
    // worker1 is emptied between the canary write and the check).
    relabel(&lab, "worker1", "1");
    relabel(&lab, "worker2", "1");
    let killed = reconcile(&lab, &[("SLIPWAY_TEST_KILL_AT", "worker1:check-canary")]);
    assert!(!killed.status.success());
    let var = lab.fleet.node("worker1").unwrap().var();
    for e in std::fs::read_dir(&var).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let out = resume(&lab, &[]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("DATA-LOSS ALARM") && all.contains("worker1"),
        "{all}"
    );
    let j = Journal::load(&lab.state).unwrap().unwrap();
    assert_eq!(j.state, RolloutState::Halted);
    assert!(j.halt.as_ref().unwrap().data_loss);
    // worker2 (the next wave) was not touched.
    assert_eq!(installs(&lab, "worker2"), 1, "{all}");
    // Resuming needs the acknowledgement.
    let refused = resume(&lab, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("--acknowledge-data-loss"));
    ok(&resume(&lab, &["--acknowledge-data-loss"]));
    assert_eq!(installs(&lab, "worker2"), 2);
}

#[test]
fn a_node_added_is_installed_and_a_node_removed_leaves_the_cluster() {
    let (_t, lab) = lab(&LabOptions {
        held_back: vec!["worker2".into()],
        ..LabOptions::default()
    });
    ok(&reconcile(&lab, &[]));
    assert_eq!(installs(&lab, "worker2"), 0, "not in the inventory yet");
    assert!(!cluster(&lab).nodes.iter().any(|n| n.name == "worker2"));

    lab.add_back("worker2").unwrap();
    lab.commit("add worker2").unwrap();
    let all = ok(&reconcile(&lab, &[]));
    let j = last_rollout(&lab);
    assert_eq!(wave_order(&j), vec![vec!["worker2".to_string()]], "{all}");
    assert_eq!(j.nodes[0].action.name(), "install");
    assert_eq!(installs(&lab, "worker2"), 1);
    for n in ["lenovo1", "lenovo2", "lenovo3", "worker1"] {
        assert_eq!(installs(&lab, n), 1, "{n} untouched");
    }
    assert_healthy(&lab);

    lab.remove_node("worker2").unwrap();
    lab.commit("retire worker2").unwrap();
    let all = ok(&reconcile(&lab, &[]));
    let j = last_rollout(&lab);
    assert_eq!(j.nodes.len(), 1, "{all}");
    assert_eq!(j.nodes[0].action.name(), "remove");
    let c = cluster(&lab);
    assert!(
        !c.nodes.iter().any(|n| n.name == "worker2"),
        "worker2's node object is gone"
    );
    assert_eq!(c.members.len(), 3);
}

#[test]
fn k3s_and_os_upgrades_happen_in_place_servers_first() {
    let (_t, lab) = lab(&LabOptions {
        fcos_releases: vec!["40.20240906.3.0".into(), "40.20241019.3.0".into()],
        k3s_versions: vec!["v1.30.4+k3s1".into(), "v1.30.6+k3s1".into()],
        ..LabOptions::default()
    });
    // Pin the older release to install from nothing.
    slipway::lab::edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        c["fcos"]
            .as_mapping_mut()
            .unwrap()
            .insert("release".into(), "40.20240906.3.0".into());
        Ok(())
    })
    .unwrap();
    lab.commit("pin FCOS").unwrap();
    ok(&reconcile(&lab, &[]));
    let marker = lab
        .fleet
        .node("worker1")
        .unwrap()
        .var()
        .join("lib/precious.txt");
    std::fs::write(&marker, "keep\n").unwrap();

    // K3s v1.30.4 → v1.30.6: the binary is replaced and K3s restarted, no reinstall.
    slipway::lab::edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        c["k3s"]
            .as_mapping_mut()
            .unwrap()
            .insert("version".into(), "v1.30.6+k3s1".into());
        Ok(())
    })
    .unwrap();
    lab.commit("k3s v1.30.6").unwrap();
    let all = ok(&reconcile(&lab, &[]));
    let j = last_rollout(&lab);
    assert!(
        j.nodes.iter().all(|n| n.action.name() == "upgrade-k3s"),
        "{all}"
    );
    let order: Vec<String> = wave_order(&j).concat();
    assert_eq!(
        &order[..3],
        &["lenovo2", "lenovo3", "lenovo1"],
        "servers first: {order:?}"
    );
    for n in SERVERS.iter().chain(&AGENTS) {
        assert_eq!(
            installs(&lab, n),
            1,
            "{n}: upgraded in place, not reinstalled"
        );
        let v = lab.fleet.node(n).unwrap().state().unwrap();
        assert_eq!(
            v.k3s.as_ref().map(|k| k.version.as_str()),
            Some("v1.30.6+k3s1"),
            "{n}"
        );
    }
    assert_healthy(&lab);

    // FCOS 40.20240906 → 40.20241019: staged with rpm-ostree, rebooted, no reinstall.
    slipway::lab::edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        c["fcos"]
            .as_mapping_mut()
            .unwrap()
            .insert("release".into(), "40.20241019.3.0".into());
        Ok(())
    })
    .unwrap();
    lab.commit("FCOS 40.20241019.3.0").unwrap();
    let all = ok(&reconcile(&lab, &[]));
    let j = last_rollout(&lab);
    assert!(
        j.nodes.iter().all(|n| n.action.name() == "upgrade-os"),
        "{all}"
    );
    for n in SERVERS.iter().chain(&AGENTS) {
        assert_eq!(installs(&lab, n), 1, "{n}: upgraded in place");
        let s = lab.fleet.node(n).unwrap().state().unwrap();
        assert_eq!(s.os.version, "40.20241019.3.0", "{n}");
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "keep\n");
    assert_healthy(&lab);
    // Nothing left to do.
    let mut c = slipway();
    c.args(["reconcile", "--dry-run", "--detailed-exitcode"]);
    c.args(&lab.args()[..8]);
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
fn disruptive_work_waits_for_the_maintenance_window_unless_now() {
    let (_t, lab) = lab(&LabOptions::default());
    // Installing from nothing disrupts nothing: it runs outside any window.
    slipway::lab::edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        c.as_mapping_mut().unwrap().insert(
            "maintenance_windows".into(),
            serde_yaml::from_str(
                "[{days: [sat], start: \"03:00\", length: 2h, time_zone: Europe/Paris}]",
            )
            .unwrap(),
        );
        Ok(())
    })
    .unwrap();
    lab.commit("windows: Saturday night").unwrap();
    // Monday 2026-11-23 12:00 in Paris: closed.
    let monday = [("SLIPWAY_FAKE_NOW", "2026-11-23T11:00:00Z")];
    ok(&reconcile(&lab, &monday));
    relabel(&lab, "worker1", "1");
    let out = reconcile(&lab, &monday);
    let all = ok(&out);
    assert!(
        all.contains("Not executing") && all.contains("2026-11-28T02:00:00"),
        "{all}"
    );
    assert_eq!(installs(&lab, "worker1"), 1, "nothing disruptive ran");
    // Saturday 03:30 in Paris: open.
    let all = ok(&reconcile(
        &lab,
        &[("SLIPWAY_FAKE_NOW", "2026-11-28T02:30:00Z")],
    ));
    assert!(all.contains("done"), "{all}");
    assert_eq!(installs(&lab, "worker1"), 2);
    // --now overrides a closed window.
    relabel(&lab, "worker1", "2");
    let mut c = slipway();
    c.args(["reconcile", "--now"])
        .args(lab.args())
        .env("SLIPWAY_FAKE_NOW", "2026-11-23T11:00:00Z");
    ok(&run(c));
    assert_eq!(installs(&lab, "worker1"), 3);
}
