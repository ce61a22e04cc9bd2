//! Benchmark: validating generated inventories (no network, no disk). Prints table rows in
//! the format `tests/bench` collects: `bench-row<TAB>area<TAB>case<TAB>value<TAB>unit<TAB>target`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use slipway_model::check::check_repo;
use slipway_model::inventory;
use slipway_model::repo::RepoFiles;
use slipway_model::secrets::{self, Identities, Recipient};

const CLUSTER: &str = "name: bench
fcos: {stream: stable}
k3s:
  version: v1.30.4+k3s1
  cluster_cidr: 10.42.0.0/16
  service_cidr: 10.43.0.0/16
  api_endpoints: [https://s0.bench.example:6443, https://s1.bench.example:6443, https://s2.bench.example:6443]
boot_server: {url: http://10.0.0.2:8080}
ssh:
  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY bench]
install: {disk: /dev/disk/by-id/nvme-bench}
";

fn inventory(n: usize) -> RepoFiles {
    let mut f = RepoFiles::new();
    f.insert("cluster.yaml", CLUSTER);
    f.insert(
        ".slipway/recipients",
        "age1e96y60hn7telhqgz9gdm9n7pnxfqkdclzm79q5c7tg2r038w436qysgaa0\n",
    );
    for i in 0..n {
        let role = if i < 3 { "server" } else { "agent" };
        let bootstrap = if i == 0 { "bootstrap: true\n" } else { "" };
        let (a, b) = (i / 250, i % 250 + 1);
        f.insert(
            format!("nodes/n{i}.yaml"),
            format!(
                "hostname: n{i}.bench.example\nrole: {role}\n{bootstrap}mac_address: \"52:54:00:00:{:02x}:{:02x}\"\nnetwork:\n  address: 10.{a}.0.{b}/16\n  gateway: 10.{a}.255.254\nlabels: {{zone: z{}}}\n",
                i / 256,
                i % 256,
                i % 3
            ),
        );
    }
    f
}

fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    for n in [100usize, 1_000, 10_000] {
        let files = inventory(n);
        let runs = if n >= 10_000 { 3 } else { 10 };
        let best = best_of(runs, || {
            let (inv, d) = inventory::load(&files);
            assert!(inv.is_some(), "{d}");
        });
        println!(
            "bench-row\tvalidate\tinventory of {n} nodes\t{:.1}\tms\t-",
            best * 1e3
        );
        println!(
            "bench-row\tvalidate\tinventory, per node ({n})\t{:.1}\tµs\t-",
            best * 1e6 / n as f64
        );
    }
    // With secrets: every node's host key file decrypted (X25519 per file).
    let n = 100;
    let key = age::x25519::Identity::generate();
    let recipients = vec![Recipient::X25519(key.to_public())];
    let mut files = inventory(n);
    files.insert(".slipway/recipients", format!("{}\n", key.to_public()));
    let host_key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
        .unwrap()
        .to_openssh(ssh_key::LineEnding::LF)
        .unwrap();
    let node_doc = format!(
        "ssh_host_ed25519_key: {}\n",
        serde_json::to_string(host_key.as_str()).unwrap()
    );
    files.insert(
        "secrets/cluster.age",
        secrets::encrypt(
            b"k3s_token: 0123456789abcdef0123456789abcdef\n",
            &recipients,
        )
        .unwrap(),
    );
    for i in 0..n {
        files.insert(
            format!("secrets/nodes/n{i}.age"),
            secrets::encrypt(node_doc.as_bytes(), &recipients).unwrap(),
        );
    }
    let ids = Identities::from_keys(vec![key]);
    let best = best_of(5, || {
        let c = check_repo(&files, Some(&ids));
        assert!(c.secrets.is_some(), "{}", c.diagnostics);
    });
    println!(
        "bench-row\tvalidate\t{n} nodes with secrets decrypted\t{:.1}\tms\t-",
        best * 1e3
    );
}
