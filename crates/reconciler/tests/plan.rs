//! Data-driven tests of `plan(desired, actual)` and its rendering.
//!
//! Each `tests/fixtures/plan/<case>.yaml` describes a fleet (desired nodes and what was
//! observed) and the actions, reasons and waves it must produce; `<case>.txt` and
//! `<case>.json` are the expected renderings. Regenerate those two with
//! `SLIPWAY_BLESS=1 cargo test -p slipway --test plan`, then review the diff by hand.
//!
//! Every case carries secret values (the K3s token, host keys); every rendering of every
//! case is searched for them.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use slipway::plan::{
    self, Action, Actual, ActualNode, Desired, DesiredNode, KnownNode, Policy, RawFiles,
};
use slipway_model::facts::{
    AppliedConfig, BootEntries, Deployment, EfiEntry, FactError, K3sService, NodeFacts, OsStatus,
    Reachability, UnitState,
};
use slipway_model::inventory::{ReinstallMethod, Role};
use slipway_model::net::MacAddr;

const DEFAULT_OS: &str = "40.20240906.3.0";
const DEFAULT_K3S: &str = "v1.30.4+k3s1";
const DEFAULT_DISK: &str = "/dev/disk/by-id/nvme-Samsung_SSD_970_0001";
const DEFAULT_TOKEN: &str = "K10canary0secret0value::server:5f3c9a1b7e2d4c6f";
const OLD_COMMIT: &str = "1111111111111111111111111111111111111111";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    #[serde(default = "default_commit")]
    commit: String,
    #[serde(default = "yes")]
    cluster_exists: bool,
    #[serde(default = "one")]
    max_unavailable_agents: u32,
    #[serde(default = "default_token")]
    token: String,
    nodes: Vec<FNode>,
    #[serde(default)]
    removed: Vec<FRemoved>,
    expect: BTreeMap<String, String>,
    #[serde(default)]
    expect_reasons: BTreeMap<String, Vec<String>>,
    expect_waves: Vec<Vec<String>>,
    exit_code: u8,
}

fn default_commit() -> String {
    "2222222222222222222222222222222222222222".into()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_token() -> String {
    DEFAULT_TOKEN.into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FNode {
    name: String,
    role: Role,
    #[serde(default)]
    bootstrap: bool,
    #[serde(default)]
    macs: Vec<String>,
    #[serde(default)]
    disk: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    k3s: Option<String>,
    /// Overrides `cluster-init` in the desired K3s config (default: bootstrap of a new cluster).
    #[serde(default)]
    cluster_init: Option<bool>,
    #[serde(default)]
    files: BTreeMap<String, Option<String>>,
    #[serde(default)]
    reinstall_method: ReinstallMethod,
    #[serde(default)]
    actual: Option<FActual>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FActual {
    #[serde(default)]
    unreachable: Option<String>,
    /// In K3s's node list / the last generation.
    #[serde(default)]
    known: bool,
    #[serde(default)]
    ready: Option<bool>,
    #[serde(default = "active")]
    k3s_service: String,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    k3s: Option<String>,
    #[serde(default)]
    applied: Option<FApplied>,
    #[serde(default)]
    applied_error: Option<String>,
    #[serde(default)]
    recorded_macs: Vec<String>,
    #[serde(default)]
    recorded_disk: Option<String>,
    #[serde(default)]
    no_netboot_entry: bool,
}

fn active() -> String {
    "active".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FApplied {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    k3s: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    cluster_init: Option<bool>,
    #[serde(default)]
    files: BTreeMap<String, Option<String>>,
    /// false: the applied commit cannot be re-rendered.
    #[serde(default = "yes")]
    rendered: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FRemoved {
    name: String,
    role: Role,
    #[serde(default)]
    unreachable: Option<String>,
    #[serde(default = "active")]
    k3s_service: String,
}

struct Params<'a> {
    name: &'a str,
    role: Role,
    k3s: &'a str,
    token: &'a str,
    cluster_init: bool,
    overrides: &'a BTreeMap<String, Option<String>>,
}

fn host_key(name: &str) -> String {
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\nhostkey0secret0{name}0b3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
}

/// A realistic node file set, shaped like the node profile's, and its config hash.
fn node_files(p: &Params<'_>) -> (RawFiles, String) {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    files.insert("/etc/hostname".into(), format!("{}.lab.example\n", p.name));
    let mut k3s = format!("token: {}\nnode-name: {}\n", p.token, p.name);
    if p.role == Role::Server {
        if p.cluster_init {
            k3s.push_str("cluster-init: true\n");
        }
        k3s.push_str("write-kubeconfig-mode: '0644'\ncluster-cidr: 10.42.0.0/16\nservice-cidr: 10.43.0.0/16\n");
    }
    k3s.push_str("kubelet-arg:\n- cgroup-driver=systemd\n");
    files.insert("/etc/rancher/k3s/config.yaml".into(), k3s);
    files.insert(
        "systemd:k3s-install.service".into(),
        format!("[Unit]\nDescription=Slipway: install and start K3s ({})\n\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/slipway-k3s-install {}\n", p.role, p.role),
    );
    files.insert(
        "/etc/zincati/config.d/90-slipway.toml".into(),
        "[updates]\nenabled = false\n".into(),
    );
    files.insert("/etc/ssh/ssh_host_ed25519_key".into(), host_key(p.name));
    for (path, text) in p.overrides {
        match text {
            Some(t) => {
                files.insert(path.clone(), t.clone());
            }
            None => {
                files.remove(path);
            }
        }
    }
    let binary = hex::encode(Sha256::digest(p.k3s.as_bytes()));
    let url = format!("http://192.168.1.2:8080/artifacts/{binary}/k3s");
    let mut hasher = Sha256::new();
    let mut raw = RawFiles::new();
    for (path, text) in &files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        if let Some((unit, dropin)) = path
            .strip_prefix("systemd:")
            .and_then(|u| u.split_once(".d/"))
        {
            raw.dropin(unit, dropin, Some(text));
        } else if let Some(unit) = path.strip_prefix("systemd:") {
            raw.unit(unit, Some(true), false, Some(text));
        } else {
            let mode = if path.contains("ssh_host") || path.contains("k3s/config") {
                0o600
            } else {
                0o644
            };
            raw.file(path, Some(mode), None, text.as_bytes());
        }
    }
    hasher.update(url.as_bytes());
    raw.remote(
        "/usr/local/bin/k3s",
        Some(0o755),
        &url,
        Some(&format!("sha256-{binary}")),
    );
    (raw, hex::encode(hasher.finalize()))
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn unit(s: &str) -> UnitState {
    UnitState::parse(s)
}

fn facts_for(a: &FActual, applied: Option<AppliedConfig>, role: Role) -> NodeFacts {
    if let Some(reason) = &a.unreachable {
        return NodeFacts::unreachable(reason.clone());
    }
    let os = a.os.clone().unwrap_or_else(|| {
        applied
            .as_ref()
            .map_or(DEFAULT_OS.into(), |p| p.os_version.clone())
    });
    let k3s = a
        .k3s
        .clone()
        .or_else(|| applied.as_ref().map(|p| p.k3s_version.clone()));
    let (server, agent) = match role {
        Role::Server => (unit(&a.k3s_service), unit("inactive")),
        Role::Agent => (unit("inactive"), unit(&a.k3s_service)),
    };
    let mut entries = vec![EfiEntry {
        number: 1,
        label: "Fedora CoreOS".into(),
        active: true,
        is_network: false,
    }];
    if !a.no_netboot_entry {
        entries.push(EfiEntry {
            number: 2,
            label: "UEFI PXEv4".into(),
            active: true,
            is_network: true,
        });
    }
    NodeFacts {
        reachability: Reachability::Reachable,
        boot_id: Some("b0".into()),
        uptime_seconds: Some(1000),
        os: Some(OsStatus {
            booted: Deployment {
                version: os,
                checksum: "c0".into(),
            },
            pending: None,
        }),
        k3s_version: k3s,
        k3s_service: Some(K3sService { server, agent }),
        applied,
        var_canary: Some("canary".into()),
        boot_entries: Some(BootEntries {
            current: Some(1),
            next: None,
            order: vec![1, 2],
            entries,
        }),
        errors: a
            .applied_error
            .iter()
            .map(|m| FactError {
                command: "cat /etc/slipway/applied.json".into(),
                message: m.clone(),
            })
            .collect(),
    }
}

fn build(case: &Case) -> (Desired, Actual, Vec<String>) {
    let mut secrets = vec![case.token.clone()];
    let mut desired_nodes = Vec::new();
    let mut applied_raw: BTreeMap<String, RawFiles> = BTreeMap::new();
    let mut actual = Actual {
        cluster_exists: case.cluster_exists,
        ..Actual::default()
    };
    for (i, n) in case.nodes.iter().enumerate() {
        secrets.push(host_key(&n.name));
        let k3s = n.k3s.as_deref().unwrap_or(DEFAULT_K3S);
        let cluster_init = n
            .cluster_init
            .unwrap_or(n.bootstrap && !case.cluster_exists);
        let params = Params {
            name: &n.name,
            role: n.role,
            k3s,
            token: &case.token,
            cluster_init,
            overrides: &n.files,
        };
        let (raw, hash) = node_files(&params);
        let macs = if n.macs.is_empty() {
            vec![mac(&format!("52:54:00:00:00:{:02x}", i + 1))]
        } else {
            n.macs.iter().map(|m| mac(m)).collect()
        };
        let disk = n.disk.clone().unwrap_or_else(|| DEFAULT_DISK.into());
        let desired = DesiredNode {
            name: n.name.clone(),
            hostname: format!("{}.lab.example", n.name),
            role: n.role,
            bootstrap: n.bootstrap,
            macs: macs.clone(),
            install_disk: disk.clone(),
            config_hash: hash,
            files: RawFiles::new().redact(&[]),
            os_version: n.os.clone().unwrap_or_else(|| DEFAULT_OS.into()),
            k3s_version: k3s.into(),
            reinstall_method: n.reinstall_method,
        };
        let Some(a) = &n.actual else {
            desired_nodes.push((desired, raw));
            continue;
        };
        let mut applied_files = None;
        let applied = a.applied.as_ref().map(|ap| {
            let token = ap.token.clone().unwrap_or_else(|| case.token.clone());
            if token != case.token && !secrets.contains(&token) {
                secrets.push(token.clone());
            }
            let ak3s = ap.k3s.clone().unwrap_or_else(|| k3s.to_string());
            let aparams = Params {
                name: &n.name,
                role: n.role,
                k3s: &ak3s,
                token: &token,
                cluster_init: ap.cluster_init.unwrap_or(cluster_init),
                overrides: &ap.files,
            };
            let (araw, ahash) = node_files(&aparams);
            if ap.rendered {
                applied_files = Some(araw);
            }
            AppliedConfig {
                commit: OLD_COMMIT.into(),
                config_hash: ahash,
                os_version: ap.os.clone().unwrap_or_else(|| DEFAULT_OS.into()),
                k3s_version: ak3s,
            }
        });
        let facts = facts_for(a, applied, n.role);
        if a.known || a.ready.is_some() {
            actual.known_nodes.push(KnownNode {
                name: n.name.clone(),
                role: Some(n.role),
                ready: a.ready,
            });
        }
        actual.nodes.push(ActualNode {
            name: n.name.clone(),
            facts,
            applied_files: None,
            recorded_macs: if a.recorded_macs.is_empty() && a.applied.is_some() {
                macs
            } else {
                a.recorded_macs.iter().map(|m| mac(m)).collect()
            },
            recorded_disk: a.recorded_disk.clone().or(a.applied.as_ref().map(|_| disk)),
        });
        if let Some(af) = applied_files {
            // Redacted once every secret is known.
            applied_raw.insert(n.name.clone(), af);
        }
        desired_nodes.push((desired, raw));
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let nodes = desired_nodes
        .into_iter()
        .map(|(mut d, raw)| {
            d.files = raw.redact(&refs);
            d
        })
        .collect();
    for a in &mut actual.nodes {
        if let Some(raw) = applied_raw.remove(&a.name) {
            a.applied_files = Some(raw.redact(&refs));
        }
    }
    for r in &case.removed {
        actual.known_nodes.push(KnownNode {
            name: r.name.clone(),
            role: Some(r.role),
            ready: Some(r.unreachable.is_none()),
        });
        let fa = FActual {
            unreachable: r.unreachable.clone(),
            known: true,
            ready: None,
            k3s_service: r.k3s_service.clone(),
            os: None,
            k3s: Some(DEFAULT_K3S.into()),
            applied: None,
            applied_error: None,
            recorded_macs: Vec::new(),
            recorded_disk: None,
            no_netboot_entry: false,
        };
        actual.nodes.push(ActualNode {
            name: r.name.clone(),
            facts: facts_for(&fa, None, r.role),
            applied_files: None,
            recorded_macs: Vec::new(),
            recorded_disk: None,
        });
    }
    let desired = Desired {
        commit: case.commit.clone(),
        author: "Ada Lovelace <ada@lab.example>".into(),
        signer: Some("ssh-ed25519 SHA256:q1w2e3r4t5y6 (ada@lab.example)".into()),
        cluster_name: "homelab".into(),
        nodes,
        policy: Policy {
            max_unavailable_agents: case.max_unavailable_agents,
        },
    };
    (desired, actual, secrets)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan")
}

fn check_golden(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("SLIPWAY_BLESS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run with SLIPWAY_BLESS=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        failures.push(format!(
            "{} differs (SLIPWAY_BLESS=1 regenerates it; review the change):\n{diff}",
            path.display()
        ));
    }
}

fn run_case(path: &Path) -> Vec<String> {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let case: Case = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (desired, actual, secrets) = build(&case);
    let plan = plan::plan(&desired, &actual);
    let mut failures = Vec::new();
    let mut fail = |m: String| failures.push(format!("{name}: {m}"));

    // The plan is a function of its inputs.
    assert_eq!(
        plan,
        plan::plan(&desired, &actual),
        "{name}: not deterministic"
    );

    let got: BTreeMap<String, String> = plan
        .nodes
        .iter()
        .map(|n| (n.node.clone(), n.action.name().to_string()))
        .collect();
    if got != case.expect {
        fail(format!("actions {got:?}, expected {:?}", case.expect));
    }
    for (node, codes) in &case.expect_reasons {
        let Some(n) = plan.nodes.iter().find(|n| &n.node == node) else {
            fail(format!("no node {node}"));
            continue;
        };
        let have: Vec<String> = n
            .reasons
            .iter()
            .map(|r| {
                serde_json::to_value(r.code)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for c in codes {
            if !have.contains(c) {
                fail(format!("{node}: no reason `{c}` among {have:?}"));
            }
        }
    }
    let waves: Vec<Vec<String>> = plan.waves.iter().map(|w| w.nodes.clone()).collect();
    if waves != case.expect_waves {
        fail(format!("waves {waves:?}, expected {:?}", case.expect_waves));
    }
    if plan::detailed_exit_code(&plan) != case.exit_code {
        fail(format!(
            "exit code {}, expected {}",
            plan::detailed_exit_code(&plan),
            case.exit_code
        ));
    }

    let text = plan::render_text(&plan, false);
    let json = plan::render_json(&plan);
    let colored = plan::render_text(&plan, true);
    for s in &secrets {
        for line in s.lines().filter(|l| l.len() > 8) {
            for (what, out) in [
                ("text", &text),
                ("JSON", &json),
                ("coloured text", &colored),
            ] {
                if out.contains(line) {
                    fail(format!("a secret value appears in the {what} output"));
                }
            }
        }
    }
    if strip_ansi(&colored) != text {
        fail("the coloured text is not the plain text plus colour codes".into());
    }
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    if parsed["format_version"] != "1" {
        fail("JSON without format_version 1".into());
    }

    check_golden(&path.with_extension("txt"), &text, &mut failures);
    check_golden(&path.with_extension("json"), &json, &mut failures);
    failures
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn plan_fixtures() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "expected the fixture set, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in &cases {
        failures.extend(run_case(c));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn colour_is_only_added_when_asked() {
    let path = fixtures().join("reinstall_file_changed.yaml");
    let case: Case = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (desired, actual, _) = build(&case);
    let plan = plan::plan(&desired, &actual);
    assert!(!plan::render_text(&plan, false).contains('\x1b'));
    let colored = plan::render_text(&plan, true);
    assert!(colored.contains("\x1b[33m-/+\x1b[0m"), "{colored}");
    assert!(colored.contains("\x1b[32m+"), "added diff lines are green");
}

#[test]
fn nothing_to_do_exits_zero_and_blocked_exits_two() {
    for (file, code) in [("none_unchanged.yaml", 0), ("blocked_unreachable.yaml", 2)] {
        let case: Case =
            serde_yaml::from_str(&std::fs::read_to_string(fixtures().join(file)).unwrap()).unwrap();
        let (desired, actual, _) = build(&case);
        let plan = plan::plan(&desired, &actual);
        assert_eq!(plan::detailed_exit_code(&plan), code, "{file}");
        if code == 0 {
            assert!(plan.nodes.iter().all(|n| n.action == Action::None));
        }
    }
}
