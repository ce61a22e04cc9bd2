//! Benchmark of the planning core: 10,000 nodes with realistic file sets, some changed.
//!
//! Times `plan` (decisions, file diffs, waves) plus both renderings, the work of one
//! `slipway reconcile --dry-run` after the facts are in. Building and redacting the inputs
//! is the caller's work and is not timed. Prints a `bench-row` line for `tests/bench`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use slipway::plan::{
    self, Actual, ActualNode, Desired, DesiredNode, KnownNode, NodeFiles, Policy, RawFiles,
};
use slipway_model::facts::{
    AppliedConfig, Deployment, K3sService, NodeFacts, OsStatus, Reachability, UnitState,
};
use slipway_model::inventory::{ReinstallMethod, Role};
use slipway_model::net::MacAddr;

const NODES: usize = 10_000;
const SERVERS: usize = 5;
const TOKEN: &str = "K10benchtoken0000000000000000000000::server:0123456789abcdef";
const OS: &str = "40.20240906.3.0";
const K3S: &str = "v1.30.4+k3s1";

fn files(i: usize, role: Role, variant: usize) -> (NodeFiles, String) {
    let name = node_name(i, role);
    let mut raw = RawFiles::new();
    raw.file(
        "/etc/hostname",
        Some(0o644),
        None,
        format!("{name}.lab.example\n"),
    );
    raw.file(
        "/etc/rancher/k3s/config.yaml",
        Some(0o600),
        None,
        format!("token: {TOKEN}\nnode-name: {name}\nnode-ip: 10.0.{}.{}\nkubelet-arg:\n- cgroup-driver=systemd\nnode-label:\n- rack=r{}\n", i / 250, i % 250, i % 40),
    );
    raw.file(
        "/etc/NetworkManager/system-connections/slipway.nmconnection",
        Some(0o600),
        None,
        format!("[connection]\nid=slipway\ntype=ethernet\n\n[ipv4]\nmethod=manual\naddress1=10.0.{}.{}/16,10.0.0.1\ndns=10.0.0.1;\n\n[ipv6]\nmethod=disabled\n", i / 250, i % 250),
    );
    raw.file(
        "/etc/zincati/config.d/90-slipway.toml",
        Some(0o644),
        None,
        "[updates]\nenabled = false\n",
    );
    let mut sysctl = String::new();
    for k in 0..40 {
        let v = if k == 7 {
            1_048_576 * (variant + 1)
        } else {
            k * 10
        };
        sysctl.push_str(&format!("net.lab.setting{k} = {v}\n"));
    }
    raw.file("/etc/sysctl.d/90-lab.conf", Some(0o644), None, sysctl);
    let script: String = (0..120)
        .map(|l| format!("echo 'slipway install step {l} of the K3s wrapper script'\n"))
        .collect();
    raw.file(
        "/usr/local/bin/slipway-k3s-install",
        Some(0o755),
        None,
        script,
    );
    raw.file(
        "/etc/ssh/ssh_host_ed25519_key",
        Some(0o600),
        None,
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAB{i:08}\n-----END OPENSSH PRIVATE KEY-----\n"),
    );
    raw.remote(
        "/usr/local/bin/k3s",
        Some(0o755),
        "http://10.0.0.2:8080/artifacts/0123abcd/k3s",
        Some("sha256-0123abcd"),
    );
    raw.unit(
        "k3s-install.service",
        Some(true),
        false,
        Some("[Unit]\nDescription=Slipway: install K3s\nConditionPathExists=!/etc/slipway/k3s-installed\n\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/slipway-k3s-install agent\n"),
    );
    raw.unit(
        "slipway-selinux-relabel.service",
        Some(true),
        false,
        Some("[Unit]\nDescription=relabel\n\n[Service]\nType=oneshot\nExecStart=/usr/sbin/restorecon -v /usr/local/bin/k3s\n"),
    );
    let host_key = format!("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAB{i:08}\n-----END OPENSSH PRIVATE KEY-----\n");
    let redacted = raw.redact(&[TOKEN, &host_key]);
    (redacted, format!("hash-{i}-{variant}"))
}

fn node_name(i: usize, role: Role) -> String {
    match role {
        Role::Server => format!("server{i}"),
        Role::Agent => format!("agent{i:05}"),
    }
}

fn facts(reachable: bool, os: &str, applied: AppliedConfig, role: Role) -> NodeFacts {
    if !reachable {
        return NodeFacts::unreachable("connect: connection timed out");
    }
    let (server, agent) = match role {
        Role::Server => (UnitState::Active, UnitState::Inactive),
        Role::Agent => (UnitState::Inactive, UnitState::Active),
    };
    NodeFacts {
        reachability: Reachability::Reachable,
        boot_id: Some("b".into()),
        uptime_seconds: Some(100),
        os: Some(OsStatus {
            booted: Deployment {
                version: os.into(),
                checksum: "c".into(),
            },
            pending: None,
        }),
        k3s_version: Some(applied.k3s_version.clone()),
        k3s_service: Some(K3sService { server, agent }),
        applied: Some(applied),
        var_canary: None,
        boot_entries: None,
        errors: Vec::new(),
    }
}

fn fleet() -> (Desired, Actual) {
    let mut desired = Vec::with_capacity(NODES);
    let mut actual = Actual {
        cluster_exists: true,
        ..Actual::default()
    };
    for i in 0..NODES {
        let role = if i < SERVERS {
            Role::Server
        } else {
            Role::Agent
        };
        let name = node_name(i, role);
        let mac = MacAddr([0x52, 0x54, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        // 10% changed a file, 2% moved the OS, 0.5% unreachable, 1% new.
        let changed = i % 10 == 3;
        let os_moved = i % 50 == 7;
        let unreachable = i % 200 == 11;
        let new = i % 100 == 42;
        let (want, hash) = files(i, role, usize::from(changed));
        desired.push(DesiredNode {
            name: name.clone(),
            hostname: format!("{name}.lab.example"),
            role,
            bootstrap: i == 0,
            macs: vec![mac],
            install_disk: "/dev/disk/by-id/nvme-bench".into(),
            config_hash: hash,
            files: want,
            os_version: OS.into(),
            k3s_version: K3S.into(),
            reinstall_method: ReinstallMethod::PxeBootnext,
        });
        if new {
            continue;
        }
        let (have, have_hash) = files(i, role, 0);
        let applied = AppliedConfig {
            commit: "1111111111111111111111111111111111111111".into(),
            config_hash: have_hash,
            os_version: OS.into(),
            k3s_version: K3S.into(),
        };
        let os = if os_moved { "40.20240801.3.0" } else { OS };
        actual.known_nodes.push(KnownNode {
            name: name.clone(),
            role: Some(role),
            ready: Some(!unreachable),
        });
        actual.nodes.push(ActualNode {
            name,
            facts: facts(!unreachable, os, applied, role),
            applied_files: Some(have),
            recorded_macs: vec![mac],
            recorded_disk: Some("/dev/disk/by-id/nvme-bench".into()),
        });
    }
    (
        Desired {
            commit: "2222222222222222222222222222222222222222".into(),
            author: "Bench <bench@lab.example>".into(),
            signer: None,
            cluster_name: "bench".into(),
            nodes: desired,
            policy: Policy {
                max_unavailable_agents: 10,
            },
        },
        actual,
    )
}

fn main() {
    let (desired, actual) = fleet();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let start = Instant::now();
        let p = plan::plan(&desired, &actual);
        let text = plan::render_text(&p, false);
        let json = plan::render_json(&p);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(!text.contains(TOKEN) && !json.contains(TOKEN));
        last = Some((p, text.len(), json.len()));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if let Some((p, text, json)) = last {
        let s = p.summary;
        eprintln!(
            "plan: {} install, {} reinstall, {} upgrade, {} unchanged, {} blocked; {} waves; text {} KiB, JSON {} KiB; runs (ms): {:?}",
            s.install,
            s.reinstall,
            s.upgrade,
            s.unchanged,
            s.blocked,
            p.waves.len(),
            text / 1024,
            json / 1024,
            times.iter().map(|t| t.round()).collect::<Vec<_>>()
        );
        assert!(s.reinstall > 0 && s.upgrade > 0 && s.install > 0 && s.blocked > 0);
    }
    println!("bench-row\tplan\t10,000 nodes: plan + diff + order\t{median:.0}\tms\t≤ 1000 ms");
}
