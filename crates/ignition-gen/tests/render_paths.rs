//! The renderer's shortcuts (per-role caches, the node profile built straight into Ignition,
//! typed merging, one serialization with `applied.json` spliced in, reused data URLs) give
//! the same bytes as the plain definition: translate every Butane layer of the node, merge
//! them all with `merge::merge`, hash the JSON, append `applied.json`, serialize.
//!
//! Checked on inventories that vary everything the profile depends on (roles, bootstrap and
//! cluster state, static/DHCP networks, interfaces, several MACs, DNS, labels, taints, kernel
//! arguments that move between `shouldExist` and `shouldNotExist`, a missing host key, a
//! password hash, Zincati modes, spec versions 3.3.0 to 3.5.0, overlays for all nodes, per
//! role and per node that touch the profile's own files and user) and on errors.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;

use rand::SeedableRng;
use sha2::{Digest, Sha256};
use slipway_ignition_gen::butane::{make_data_url, translate, TranslateOptions};
use slipway_ignition_gen::files::NoFiles;
use slipway_ignition_gen::ignition::{self as ign, Config};
use slipway_ignition_gen::merge::merge;
use slipway_ignition_gen::profile::{
    applied_json, layers, render_node, Artifact, ClusterState, ProfileInputs, Renderer,
    APPLIED_JSON,
};
use slipway_model::check::Secrets;
use slipway_model::inventory::{Inventory, Node};
use slipway_model::repo::RepoFiles;
use slipway_model::secrets::Secret;

const COMMON: &str = r#"variant: fcos
version: 1.4.0
kernel_arguments:
  should_exist: [console=ttyS0]
  should_not_exist: [quiet, nosmt]
passwd:
  users:
    - name: core
      groups: [wheel]
      ssh_authorized_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY a
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY extra
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
"#;

const SERVERS: &str = r##"variant: fcos
version: 1.4.0
storage:
  files:
    - path: /etc/hostname
      mode: 0640
      overwrite: true
      user:
        name: root
      group:
        id: 0
      contents:
        inline: placeholder
      append:
        - inline: "# appended\n"
    - path: /etc/remote.conf
      contents:
        source: http://127.0.0.1:9/remote.conf
        http_headers:
          - name: X-Token
            value: abc
        verification:
          hash: sha256-abababababababababababababababababababababababababababababababab
"##;

const AGENTS: &str = r#"variant: fcos
version: 1.5.0
storage:
  directories:
    - path: /var/lib/extra
      mode: 0750
  files:
    - path: /etc/systemd/journald.conf.d/size.conf
      contents:
        inline: "[Journal]\nSystemMaxUse=200M\n"
systemd:
  units:
    - name: k3s-install.service
      dropins:
        - name: 10-env.conf
          contents: "[Service]\nEnvironment=A=1\n"
"#;

const NODE_OVERLAY: &str = r#"variant: fcos
version: 1.4.0
kernel_arguments:
  should_exist: [nosmt]
storage:
  files:
    - path: /etc/k3s-extra
      contents:
        inline: extra
"#;

fn cluster_yaml(extra: &str) -> String {
    format!(
        "name: paths\nfcos: {{stream: stable}}\nk3s:\n  version: v1.30.4+k3s1\n  cluster_cidr: 10.42.0.0/16\n  service_cidr: 10.43.0.0/16\n  disable: [traefik, servicelb, local-storage, metrics-server, network-policy]\n  api_endpoints: [https://s0.p.example:6443, https://10.0.0.11:6443, https://s2.p.example:6443]\nboot_server: {{url: \"http://127.0.0.1:9\"}}\n{extra}"
    )
}

/// `(node name, node file)`: every shape of node file the profile reads.
fn node_files() -> Vec<(&'static str, String)> {
    let mut nodes = vec![
        ("s0", "hostname: s0.p.example\nrole: server\nbootstrap: true\nmac_address: \"52:54:00:00:00:01\"\nnetwork:\n  address: 10.0.0.10/24\n  gateway: 10.0.0.1\n  dns: [10.0.0.1, 9.9.9.9]\nlabels: {rack: r1, zone: a}\ntaints: [\"dedicated=control:NoSchedule\"]\n".to_string()),
        ("s1", "hostname: s1.p.example\nrole: server\nmac_address: \"52:54:00:00:00:02\"\nnetwork:\n  address: 10.0.0.11/24\n  gateway: 10.0.0.1\n  interface: eno1\n".to_string()),
        ("s2", "hostname: s2.p.example\nrole: server\nmac_addresses: [\"52:54:00:00:00:03\", \"52:54:00:00:01:03\"]\nnetwork: {dhcp: true}\nkernel_args: [quiet]\n".to_string()),
        ("a3", "hostname: a3.p.example\nrole: agent\nmac_address: \"52:54:00:00:00:04\"\nnetwork:\n  address: 10.0.0.13/24\n  gateway: 10.0.0.1\nkernel_args: [quiet, console=ttyS0]\n".to_string()),
        ("a4", "hostname: a4.p.example\nrole: agent\nmac_address: \"52:54:00:00:00:05\"\nnetwork: {dhcp: true}\nlabels: {gpu: \"true\"}\n".to_string()),
        ("a5", "hostname: a5.p.example\nrole: agent\nmac_address: \"52:54:00:00:00:06\"\nnetwork: {dhcp: true}\nbutane: [butane/nodes/a5.bu]\n".to_string()),
        ("a6", "hostname: a6.p.example\nrole: agent\nmac_address: \"52:54:00:00:00:07\"\nnetwork:\n  address: 10.0.0.16/24\n  gateway: 10.0.0.1\n  dns: [10.0.0.1]\n".to_string()),
    ];
    for i in 7..12 {
        nodes.push((
            ["a7", "a8", "a9", "a10", "a11"][i - 7],
            format!(
                "hostname: a{i}.p.example\nrole: agent\nmac_address: \"52:54:00:00:10:{i:02x}\"\nnetwork:\n  address: 10.0.1.{i}/16\n  gateway: 10.0.0.1\nlabels: {{rack: r{}}}\ntaints: [\"t{i}=x:NoExecute\"]\n",
                i % 3
            ),
        ));
    }
    nodes
}

fn inventory(cluster_extra: &str, overlays: &[(&str, &str)]) -> (Inventory, Secrets) {
    let mut f = RepoFiles::new();
    f.insert("cluster.yaml", cluster_yaml(cluster_extra));
    for (path, text) in overlays {
        f.insert(*path, *text);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut host_keys = BTreeMap::new();
    for (name, text) in node_files() {
        f.insert(format!("nodes/{name}.yaml"), text);
        let key = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).unwrap();
        // a6 has no host key: its profile writes none.
        if name != "a6" {
            let key = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
            host_keys.insert(name.to_string(), Secret::new(key.as_str()));
        }
    }
    let (inv, d) = slipway_model::inventory::load(&f);
    let inv = inv.unwrap_or_else(|| panic!("{d}"));
    let secrets = Secrets {
        k3s_token: Secret::new("K10token::server:0123456789abcdef"),
        core_password_hash: Some(Secret::new("$y$j9T$salt$hash")),
        host_keys,
    };
    (inv, secrets)
}

fn all_overlays() -> Vec<(&'static str, &'static str)> {
    vec![
        ("butane/common.bu", COMMON),
        ("butane/server/servers.bu", SERVERS),
        ("butane/agent/agents.bu", AGENTS),
        ("butane/nodes/a5.bu", NODE_OVERLAY),
    ]
}

/// The definition: every layer translated, all merged at once, hashed, `applied.json` added.
fn oracle(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
) -> Result<(String, String), Vec<String>> {
    let merged = |inputs: &ProfileInputs<'_>| -> Result<Config, Vec<String>> {
        let mut configs = Vec::new();
        let mut errors = Vec::new();
        for l in layers(inv, node, secrets, inputs) {
            match translate(
                &l.name,
                l.text.expose(),
                &TranslateOptions::default(),
                &NoFiles,
            ) {
                Ok(t) => configs.push((l.name.clone(), t.config)),
                Err(d) => errors.extend(d.iter().map(ToString::to_string)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        merge(&configs).map_err(|d| d.iter().map(ToString::to_string).collect())
    };
    let mut config = merged(inputs)?;
    let hashed = if node.bootstrap && inputs.cluster_state == ClusterState::New {
        merged(&ProfileInputs {
            cluster_state: ClusterState::Exists,
            ..inputs.clone()
        })?
    } else {
        config.clone()
    };
    let hash = hex::encode(Sha256::digest(hashed.to_json(false).as_bytes()));
    if config.storage.files.iter().any(|f| f.path == APPLIED_JSON) {
        return Err(vec!["applied.json written by an overlay".into()]);
    }
    let url = make_data_url(applied_json(inputs, &hash).as_bytes(), None, true);
    config.storage.files.push(ign::File {
        overwrite: Some(true),
        path: APPLIED_JSON.into(),
        contents: ign::Resource {
            compression: Some(url.compression.unwrap_or_default()),
            source: Some(url.url),
            ..Default::default()
        },
        mode: Some(0o644),
        ..Default::default()
    });
    Ok((config.to_json(false), hash))
}

fn artifacts() -> (Artifact, Artifact) {
    let a = |n: &str, c: char| Artifact {
        name: n.into(),
        sha256: c.to_string().repeat(64),
    };
    (a("k3s", 'a'), a("install.sh", 'b'))
}

fn inputs<'a>(bin: &'a Artifact, script: &'a Artifact, state: ClusterState) -> ProfileInputs<'a> {
    ProfileInputs {
        commit: "0123abcd",
        cluster_state: state,
        os_version: "40.20240906.3.0",
        k3s_version: "v1.30.4+k3s1",
        k3s_binary: bin,
        k3s_install_script: script,
    }
}

/// Render every node with one renderer (its caches warm after the first node of a role) and
/// each with a fresh one, in both cluster states, and compare with the definition.
fn check_same_bytes(inv: &Inventory, secrets: &Secrets) -> usize {
    let (bin, script) = artifacts();
    let mut checked = 0;
    for state in [ClusterState::New, ClusterState::Exists] {
        let inputs = inputs(&bin, &script, state);
        let renderer = Renderer::new(inv, &NoFiles);
        // Twice over: the second round hits every cache.
        for node in inv.nodes.iter().chain(&inv.nodes) {
            let want = oracle(inv, node, secrets, &inputs);
            for got in [
                renderer.render(node, secrets, &inputs),
                render_node(inv, node, secrets, &inputs, &NoFiles),
            ] {
                let got = got
                    .map(|r| (r.ignition.expose().to_string(), r.config_hash))
                    .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>());
                assert_eq!(got, want, "node {} ({state:?})", node.name);
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn a_varied_inventory_renders_to_the_same_bytes_as_translating_and_merging_every_layer() {
    let (inv, secrets) = inventory(
        "ssh:\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY a, ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY b]\ninstall: {disk: /dev/disk/by-id/nvme-x, kernel_args: [mitigations=auto]}\nzincati: {mode: fleetlock}\n",
        &all_overlays(),
    );
    assert_eq!(check_same_bytes(&inv, &secrets), 2 * 2 * 2 * 12);
}

#[test]
fn later_spec_versions_and_another_user_render_to_the_same_bytes() {
    for spec in ["3.4.0", "3.5.0"] {
        let (inv, secrets) = inventory(
            &format!("ssh:\n  user: admin\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY a]\ninstall: {{disk: /dev/disk/by-id/nvme-x}}\nignition: {{spec_version: {spec}}}\n"),
            &all_overlays(),
        );
        check_same_bytes(&inv, &secrets);
    }
}

#[test]
fn without_overlays_the_profile_alone_renders_to_the_same_bytes() {
    let (inv, secrets) = inventory(
        "ssh:\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY a]\ninstall: {disk: /dev/disk/by-id/nvme-x}\n",
        &[("butane/nodes/a5.bu", NODE_OVERLAY)],
    );
    check_same_bytes(&inv, &secrets);
}

#[test]
fn errors_are_the_same_as_the_definition_gives() {
    let ssh = "ssh:\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY a]\ninstall: {disk: /dev/disk/by-id/nvme-x}\n";
    let cases = [
        // A file of the profile declared as a directory: a conflict naming both layers.
        "variant: fcos\nversion: 1.4.0\nstorage:\n  directories:\n    - path: /etc/hostname\n",
        // The file Slipway owns.
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/slipway/applied.json\n      contents:\n        inline: x\n",
        // An overlay that does not translate.
        "variant: fcos\nversion: 1.4.0\nstorage:\n  filez: []\n",
    ];
    for overlay in cases {
        let (inv, secrets) = inventory(
            ssh,
            &[
                ("butane/agent/bad.bu", overlay),
                ("butane/nodes/a5.bu", NODE_OVERLAY),
            ],
        );
        let (bin, script) = artifacts();
        let inputs = inputs(&bin, &script, ClusterState::Exists);
        let renderer = Renderer::new(&inv, &NoFiles);
        let mut errors = 0;
        for node in &inv.nodes {
            let want = oracle(&inv, node, &secrets, &inputs);
            let got = renderer
                .render(node, &secrets, &inputs)
                .map(|r| (r.ignition.expose().to_string(), r.config_hash))
                .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>());
            match (&got, &want) {
                (Err(_), Err(w)) if w[0].starts_with("applied.json") => {
                    let g = got.as_ref().unwrap_err();
                    assert!(g[0].contains("/etc/slipway/applied.json"), "{g:?}");
                }
                _ => assert_eq!(got, want, "node {}", node.name),
            }
            errors += usize::from(got.is_err());
        }
        assert_eq!(errors, 9, "every agent fails: {overlay}");
    }
}
