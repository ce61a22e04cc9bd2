//! `slipway reconcile --dry-run --offline` plans from what the state folder records
//! (`<state>/applied.json`, written when a rollout is done): unchanged nodes plan `none`, a
//! changed one `reinstall` (with its file diff), a recorded node gone from the inventory
//! `remove`, a node not recorded `install`; and on the simulated lab, after a real rollout,
//! the offline plan is the online plan.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use slipway::lab::{Lab, LabOptions};
use slipway::plan::{Action, Contents, RawFiles};
use slipway::rollout::journal::{self, Journal, NodeRecord, RolloutState};
use slipway::rollout::{AppliedNode, AppliedRecord};
use slipway_model::facts::AppliedConfig;
use slipway_model::inventory::Role;

const NODES: [(&str, Role); 5] = [
    ("lenovo1", Role::Server),
    ("lenovo2", Role::Server),
    ("lenovo3", Role::Server),
    ("worker1", Role::Agent),
    ("worker2", Role::Agent),
];

fn git(repo: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new(require_tool("git"))
        .current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Admin",
            "-c",
            "user.email=admin@lab.example",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// `slipway reconcile --dry-run --offline --detailed-exitcode` with `extra` arguments.
fn offline_plan(extra: &[std::ffi::OsString], json: bool) -> Output {
    let mut c = slipway();
    c.args(["reconcile", "--dry-run", "--offline", "--detailed-exitcode"])
        .args(extra);
    if json {
        c.args(["--output", "json"]);
    }
    run(c)
}

fn repo_args(repo: &Path, state: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--repo".into(),
        repo.into(),
        "--identity".into(),
        demo_identity().into(),
        "--state".into(),
        state.into(),
    ]
}

/// Node → action name, from a JSON plan.
fn actions(out: &Output) -> BTreeMap<String, String> {
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON plan ({e}): {}", text(&out.stdout)));
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect()
}

/// What a node's rendered Ignition records in `/etc/slipway/applied.json`.
fn rendered_applied(repo: &Path, state: &Path, node: &str) -> AppliedConfig {
    let out = render(repo, state, node);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let files = RawFiles::from_ignition(&text(&out.stdout))
        .unwrap()
        .redact(&[]);
    match &files.get("/etc/slipway/applied.json").unwrap().contents {
        Contents::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("applied.json is not text: {other:?}"),
    }
}

#[test]
fn offline_plans_from_the_recorded_configs() {
    let (t, repo) = example_copy();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let state = t.path().join("state");
    import_artifacts(t.path(), &state);
    git(&repo, &home, &["init", "-q", "-b", "main"]);
    git(&repo, &home, &["add", "-A"]);
    git(
        &repo,
        &home,
        &["commit", "-q", "-m", "the fleet as installed"],
    );
    let installed = git(&repo, &home, &["rev-parse", "HEAD"]);
    let args = repo_args(&repo, &state);

    // Nothing recorded yet: every node is assumed never installed, and the plan says why.
    let out = offline_plan(&args, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Plan: 5 to install"), "{stdout}");
    assert!(
        stdout.contains("which records no finished rollout"),
        "{stdout}"
    );

    // The record a finished rollout of this commit would leave, from the real renders.
    let mut record = AppliedRecord::default();
    for (node, role) in NODES {
        let applied = rendered_applied(&repo, &state, node);
        assert_eq!(applied.commit, installed, "{node} renders at HEAD");
        record.nodes.insert(
            node.to_string(),
            AppliedNode {
                role,
                k3s_name: node.to_string(),
                applied,
            },
        );
    }
    record.save(&state).unwrap();
    assert!(state.join("applied.json").is_file());

    let out = offline_plan(&args, false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "nothing to do:\n{stdout}");
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .starts_with("Offline: no node was contacted; facts come from the state folder"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lenovo1, lenovo2, lenovo3, worker1, worker2 as recorded"),
        "{stdout}"
    );
    let out = offline_plan(&args, true);
    assert_eq!(
        actions(&out),
        expect(&[
            ("lenovo1", "none"),
            ("lenovo2", "none"),
            ("lenovo3", "none"),
            ("worker1", "none"),
            ("worker2", "none"),
        ])
    );
    assert!(
        text(&out.stderr).contains("Offline:"),
        "the note goes to stderr with --output json"
    );

    // worker1 moves rack, worker2 leaves, worker3 arrives.
    slipway::lab::edit_yaml(&repo.join("nodes/worker1.yaml"), |n| {
        n["labels"]["topology.kubernetes.io/zone"] = "rack7".into();
        Ok(())
    })
    .unwrap();
    std::fs::remove_file(repo.join("nodes/worker2.yaml")).unwrap();
    let worker3 = std::fs::read_to_string(repo.join("nodes/worker1.yaml"))
        .unwrap()
        .replace("worker1.lab", "worker3.lab")
        .replace("88:ae:dd:02:00:01", "88:ae:dd:02:00:03")
        .replace("192.168.26.21/", "192.168.26.23/");
    std::fs::write(repo.join("nodes/worker3.yaml"), worker3).unwrap();
    // worker3 is new hardware: it takes over the retired worker2's host key secrets.
    std::fs::rename(
        repo.join("secrets/nodes/worker2.age"),
        repo.join("secrets/nodes/worker3.age"),
    )
    .unwrap();
    git(&repo, &home, &["add", "-A"]);
    git(
        &repo,
        &home,
        &[
            "commit",
            "-q",
            "-m",
            "move worker1, retire worker2, add worker3",
        ],
    );

    let out = offline_plan(&args, true);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        actions(&out),
        expect(&[
            ("lenovo1", "none"),
            ("lenovo2", "none"),
            ("lenovo3", "none"),
            ("worker1", "reinstall"),
            ("worker2", "remove"),
            ("worker3", "install"),
        ])
    );
    let out = offline_plan(&args, false);
    let stdout = text(&out.stdout);
    let note = stdout.lines().next().unwrap();
    assert!(
        note.contains("worker3 not recorded, assumed never installed")
            && note.contains("worker2 recorded but gone from the inventory"),
        "{note}"
    );
    // The diff is against the config re-rendered at the recorded commit.
    assert!(
        stdout.contains("rack1") && stdout.contains("rack7"),
        "worker1's label change is shown:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("applied, commit {}", &installed[..12])),
        "{stdout}"
    );
    // worker2 answers as Slipway left it: it is drained, not skipped as unreachable.
    assert!(stdout.contains("cordon and drain"), "{stdout}");
    assert!(!stdout.contains("the drain is skipped"), "{stdout}");
}

fn node_record(node: &str, role: Role, action: Action, hash: &str) -> NodeRecord {
    NodeRecord {
        node: node.into(),
        k3s_name: node.into(),
        role,
        action,
        wave: 1,
        steps: Vec::new(),
        done: 0,
        started: false,
        desired_hash: hash.into(),
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

fn journal(commit: &str, nodes: Vec<NodeRecord>) -> Journal {
    Journal {
        format_version: journal::JOURNAL_FORMAT.into(),
        id: format!("1-{commit}"),
        commit: commit.into(),
        started_unix: 1,
        cluster_exists: true,
        os_version: format!("os-{commit}"),
        k3s_version: format!("k3s-{commit}"),
        state: RolloutState::Done,
        halt: None,
        paused: None,
        nodes,
    }
}

#[test]
fn a_finished_rollout_updates_what_it_touched_and_forgets_what_it_removed() {
    let mut r = AppliedRecord::default();
    r.apply(&journal(
        "c1",
        vec![
            node_record("s1", Role::Server, Action::Install, "h-s1"),
            node_record("a1", Role::Agent, Action::Install, "h-a1"),
            node_record("a2", Role::Agent, Action::Install, "h-a2"),
        ],
    ));
    assert_eq!(r.nodes.len(), 3);
    r.apply(&journal(
        "c2",
        vec![
            node_record("a1", Role::Agent, Action::Reinstall, "h-a1-new"),
            node_record("a2", Role::Agent, Action::Remove, ""),
        ],
    ));
    assert_eq!(
        r.nodes.keys().collect::<Vec<_>>(),
        ["a1", "s1"],
        "the removed node left the record"
    );
    let a1 = &r.nodes["a1"];
    assert_eq!(
        (
            a1.role,
            a1.applied.commit.as_str(),
            a1.applied.config_hash.as_str()
        ),
        (Role::Agent, "c2", "h-a1-new")
    );
    assert_eq!(a1.applied.os_version, "os-c2");
    let s1 = &r.nodes["s1"];
    assert_eq!(
        (s1.applied.commit.as_str(), s1.applied.k3s_version.as_str()),
        ("c1", "k3s-c1"),
        "a node the rollout did not touch keeps its entry"
    );
    // An in-place upgrade moves the versions, the config stays the one the journal names.
    r.apply(&journal(
        "c3",
        vec![node_record("s1", Role::Server, Action::UpgradeK3s, "h-s1")],
    ));
    assert_eq!(r.nodes["s1"].applied.k3s_version, "k3s-c3");
    assert_eq!(r.nodes["s1"].applied.config_hash, "h-s1");

    // Round trip through the state folder.
    let t = tempfile::tempdir().unwrap();
    assert!(AppliedRecord::load(t.path()).unwrap().is_none());
    r.save(t.path()).unwrap();
    assert_eq!(AppliedRecord::load(t.path()).unwrap(), Some(r));
    std::fs::write(t.path().join("applied.json"), "{ not json").unwrap();
    let e = AppliedRecord::load(t.path()).unwrap_err().to_string();
    assert!(
        e.contains("applied.json:1:") && e.contains("corrupt"),
        "{e}"
    );
}

#[test]
fn after_a_real_rollout_the_offline_plan_is_the_online_plan() {
    require_tool("ignition-validate");
    let t = tempfile::tempdir().unwrap();
    let lab = Lab::start(
        t.path(),
        &example_repo(),
        &demo_identity(),
        &LabOptions {
            held_back: vec!["worker2".into()],
            ..LabOptions::default()
        },
    )
    .unwrap();
    let mut c = slipway();
    c.arg("reconcile").args(lab.args());
    let out = run(c);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let done = journal::last_archived(&lab.state).unwrap().unwrap();
    assert_eq!(done.state, RolloutState::Done);

    // The record holds what the rollout applied to each node, as the nodes themselves do.
    let record = AppliedRecord::load(&lab.state)
        .unwrap()
        .expect("applied.json after a finished rollout");
    assert_eq!(
        record.nodes.keys().collect::<Vec<_>>(),
        ["lenovo1", "lenovo2", "lenovo3", "worker1"]
    );
    for n in &done.nodes {
        let rec = &record.nodes[&n.node];
        assert_eq!(rec.role, n.role);
        assert_eq!(rec.applied.commit, done.commit);
        assert_eq!(rec.applied.config_hash, n.desired_hash);
        assert_eq!(rec.applied.os_version, done.os_version);
        assert_eq!(rec.applied.k3s_version, done.k3s_version);
    }

    let plans = |lab: &Lab| -> (Output, Output) {
        let mut online = slipway();
        online
            .args(["reconcile", "--dry-run", "--output", "json"])
            .args(lab.args());
        let offline = offline_plan(&lab.args(), true);
        (run(online), offline)
    };
    let (online, offline) = plans(&lab);
    assert!(online.status.success(), "{}", text(&online.stderr));
    let all_none = expect(&[
        ("lenovo1", "none"),
        ("lenovo2", "none"),
        ("lenovo3", "none"),
        ("worker1", "none"),
    ]);
    assert_eq!(actions(&online), all_none);
    assert_eq!(actions(&offline), all_none);
    assert_eq!(offline.status.code(), Some(0));

    // A change of one node, and a node added: both plans agree.
    slipway::lab::edit_yaml(&lab.repo.join("nodes/worker1.yaml"), |n| {
        n["labels"]["topology.kubernetes.io/zone"] = "rack7".into();
        Ok(())
    })
    .unwrap();
    lab.add_back("worker2").unwrap();
    lab.commit("move worker1, add worker2").unwrap();
    let (online, offline) = plans(&lab);
    assert!(online.status.success(), "{}", text(&online.stderr));
    let changed = expect(&[
        ("lenovo1", "none"),
        ("lenovo2", "none"),
        ("lenovo3", "none"),
        ("worker1", "reinstall"),
        ("worker2", "install"),
    ]);
    assert_eq!(actions(&online), changed);
    assert_eq!(actions(&offline), changed);
    let waves = |o: &Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["waves"].clone()
    };
    assert_eq!(waves(&offline), waves(&online), "the same rollout order");
}
