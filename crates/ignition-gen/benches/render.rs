//! Benchmark: render every node config (overlays + profile, translated and merged) of
//! generated 1,000- and 10,000-node inventories on one core. Prints time per node and the
//! process's peak memory as `bench-row` lines for `tests/bench`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

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
    // One host key reused: key generation is not what this measures.
    let key =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let key = Secret::new(key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_str());
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
        host_keys.insert(format!("n{i}"), key.clone());
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

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
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
    for n in [1_000usize, 10_000] {
        let (inv, secrets) = inventory(n);
        let t = Instant::now();
        let mut bytes = 0usize;
        let renderer = Renderer::new(&inv, &NoFiles);
        for node in &inv.nodes {
            let r = renderer.render(node, &secrets, &inputs).unwrap();
            bytes += r.ignition.expose().len();
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "bench-row\trender\t{n} nodes, per node (1 core)\t{:.3}\tms\t≤ 0.1 ms",
            dt * 1e3 / n as f64
        );
        println!("bench-row\trender\t{n} nodes, total\t{:.2}\ts\t-", dt);
        println!(
            "bench-row\trender\t{n} nodes, Ignition bytes per node\t{}\tB\t-",
            bytes / n
        );
        println!(
            "bench-row\trender\tpeak memory after {n} nodes\t{:.0}\tMiB\t-",
            peak_rss_mib()
        );
    }
}
