//! Benchmark: render every node config (overlays + profile, translated and merged) of
//! generated 1,000- and 10,000-node inventories on one thread. Prints a table (nodes, time per
//! node, total, peak memory, Ignition size) and the same figures as `bench-row` lines for
//! `tests/bench`.
//!
//! Each size is rendered in a few passes and the fastest counts. Every node has its own SSH
//! host key (deterministic, from a seeded generator), so nothing a real fleet would not share
//! is shared here. Sizes can be given as arguments (`cargo bench -p slipway-ignition-gen
//! --bench render -- 1000`), e.g. to run it under `valgrind --tool=callgrind` quickly. Pin it
//! to one core with `taskset -c 1`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use rand::SeedableRng;
use slipway_ignition_gen::files::NoFiles;
use slipway_ignition_gen::profile::{Artifact, ClusterState, ProfileInputs, Renderer};
use slipway_model::check::Secrets;
use slipway_model::inventory::Inventory;
use slipway_model::repo::RepoFiles;
use slipway_model::secrets::Secret;

const OVERLAY: &str = "variant: fcos
version: 1.4.0
storage:
  files:
    - path: /etc/sysctl.d/90-inotify.conf
      mode: 0644
      contents:
        inline: |
          fs.inotify.max_user_instances=8192
          fs.inotify.max_user_watches=524288
  links:
    - path: /etc/localtime
      target: ../usr/share/zoneinfo/UTC
";

pub fn inventory(n: usize) -> (Inventory, Secrets) {
    let mut f = RepoFiles::new();
    f.insert(
        "cluster.yaml",
        "name: bench\nfcos: {stream: stable}\nk3s:\n  version: v1.30.4+k3s1\n  cluster_cidr: 10.42.0.0/16\n  service_cidr: 10.43.0.0/16\n  disable: [traefik, servicelb]\n  api_endpoints: [https://n0.b.example:6443, https://n1.b.example:6443, https://n2.b.example:6443]\nboot_server: {url: \"http://127.0.0.1:9\"}\nssh:\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY t]\ninstall: {disk: /dev/disk/by-id/nvme-x}\n",
    );
    f.insert("butane/common.bu", OVERLAY);
    f.insert("butane/agent/journald.bu", "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/systemd/journald.conf.d/size.conf\n      contents:\n        inline: \"[Journal]\\nSystemMaxUse=200M\\n\"\n");
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut host_keys = BTreeMap::new();
    for i in 0..n {
        let role = if i < 3 { "server" } else { "agent" };
        let boot = if i == 0 { "bootstrap: true\n" } else { "" };
        f.insert(
            format!("nodes/n{i}.yaml"),
            format!(
                "hostname: n{i}.b.example\nrole: {role}\n{boot}mac_address: \"52:54:00:{:02x}:{:02x}:{:02x}\"\nnetwork:\n  address: 10.{}.{}.{}/8\n  gateway: 10.0.0.1\nlabels: {{rack: r{}}}\n",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255,
                (i + 2) >> 16 & 255,
                (i + 2) >> 8 & 255,
                (i + 2) & 255,
                i % 8
            ),
        );
        let key = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).unwrap();
        let key = Secret::new(key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_str());
        host_keys.insert(format!("n{i}"), key);
    }
    let (inv, d) = slipway_model::inventory::load(&f);
    let inv = inv.unwrap_or_else(|| panic!("{d}"));
    (
        inv,
        Secrets {
            k3s_token: Secret::new("0123456789abcdef0123456789abcdef"),
            core_password_hash: None,
            host_keys,
        },
    )
}

/// Peak resident memory of this process (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Reset the peak (`VmHWM`) to the current resident size, so each size gets its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Row {
    nodes: usize,
    ms_per_node: f64,
    total_s: f64,
    peak_mib: f64,
    bytes_per_node: usize,
}

/// Passes over the whole inventory, each with a fresh renderer; the fastest one counts, so
/// another process taking the core for a moment does not show as rendering time.
const PASSES: usize = 3;

fn run(n: usize, inputs: &ProfileInputs<'_>) -> Row {
    reset_peak_rss();
    let (inv, secrets) = inventory(n);
    let mut best = f64::INFINITY;
    let mut bytes = 0usize;
    for _ in 0..PASSES {
        let t = Instant::now();
        bytes = 0;
        let renderer = Renderer::new(&inv, &NoFiles);
        for node in &inv.nodes {
            let r = renderer.render(node, &secrets, inputs).unwrap();
            bytes += r.ignition.expose().len();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Row {
        nodes: n,
        ms_per_node: best * 1e3 / n as f64,
        total_s: best,
        peak_mib: peak_rss_mib(),
        bytes_per_node: bytes / n,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let a = |n: &str| Artifact {
        name: n.into(),
        sha256: "ab".repeat(32),
    };
    let (bin, script) = (a("k3s"), a("install.sh"));
    let inputs = ProfileInputs {
        commit: "0123abcd",
        cluster_state: ClusterState::Exists,
        os_version: "40.20240906.3.0",
        k3s_version: "v1.30.4+k3s1",
        k3s_binary: &bin,
        k3s_install_script: &script,
    };
    let rows: Vec<Row> = sizes.iter().map(|&n| run(n, &inputs)).collect();
    println!("render, one thread, fastest of {PASSES} passes (target: at most 0.1 ms per node)");
    println!(
        "{:>8} | {:>8} | {:>8} | {:>14} | {:>11}",
        "nodes", "ms/node", "total s", "peak RSS (MiB)", "bytes/node"
    );
    for r in &rows {
        println!(
            "{:>8} | {:>8.3} | {:>8.2} | {:>14.0} | {:>11}",
            r.nodes, r.ms_per_node, r.total_s, r.peak_mib, r.bytes_per_node
        );
    }
    for r in &rows {
        let n = r.nodes;
        println!(
            "bench-row\trender\t{n} nodes, per node (1 core)\t{:.3}\tms\t≤ 0.1 ms",
            r.ms_per_node
        );
        println!(
            "bench-row\trender\t{n} nodes, total\t{:.2}\ts\t-",
            r.total_s
        );
        println!(
            "bench-row\trender\t{n} nodes, Ignition bytes per node\t{}\tB\t-",
            r.bytes_per_node
        );
        println!(
            "bench-row\trender\tpeak memory, {n} nodes\t{:.0}\tMiB\t-",
            r.peak_mib
        );
    }
}
