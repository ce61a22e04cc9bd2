//! Node profiles, proven by the real Ignition: every config of cluster-repo-example and of a
//! generated 50-node inventory passes `ignition-validate`, and the real `ignition` binary
//! (Debian package `ignition`) applies them into scratch roots, fetching the K3s artifacts
//! from a local HTTP server and checking their sha256 itself. The tests then assert what
//! landed: files, modes, enabled units, and what the K3s flags mean.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use slipway_ignition_gen::files::NoFiles;
use slipway_ignition_gen::profile::{
    render_node, Artifact, ClusterState, ProfileInputs, RenderedNode,
};
use slipway_model::check::{check_repo, Secrets};
use slipway_model::inventory::Inventory;
use slipway_model::repo::RepoFiles;
use slipway_model::secrets::{Identities, Secret};

const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-repo-example")
}

fn read_tree(root: &Path) -> RepoFiles {
    let mut files = RepoFiles::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    files
}

/// The example repo with its boot server moved to `base` (tests never dial its LAN address).
fn example(base: &str) -> (Inventory, Secrets) {
    let mut files = read_tree(&example_dir());
    let cluster = files
        .text("cluster.yaml")
        .unwrap()
        .replace("http://192.168.26.2:8080", base);
    files.insert("cluster.yaml", cluster);
    let ids = Identities::parse(
        &std::fs::read_to_string(example_dir().join(".slipway/DEMO-ONLY-age-identity.txt"))
            .unwrap(),
    )
    .unwrap();
    let c = check_repo(&files, Some(&ids));
    assert!(!c.diagnostics.has_errors(), "{}", c.diagnostics);
    (c.inventory.unwrap(), c.secrets.unwrap())
}

fn generated(n: usize, base: &str) -> (Inventory, Secrets) {
    let mut f = RepoFiles::new();
    f.insert(
        "cluster.yaml",
        format!(
            "name: big\nfcos: {{stream: stable}}\nk3s:\n  version: v1.30.4+k3s1\n  cluster_cidr: 10.42.0.0/16\n  service_cidr: 10.43.0.0/16\n  disable: [traefik]\n  api_endpoints: [https://n0.big.example:6443, https://n1.big.example:6443, https://n2.big.example:6443]\nboot_server: {{url: \"{base}\"}}\nssh:\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY t]\ninstall: {{disk: /dev/disk/by-id/nvme-x, kernel_args: [mitigations=auto]}}\n"
        ),
    );
    let mut host_keys = BTreeMap::new();
    for i in 0..n {
        let role = if i < 3 { "server" } else { "agent" };
        let boot = if i == 0 { "bootstrap: true\n" } else { "" };
        let net = if i % 2 == 0 {
            format!(
                "  address: 10.1.{}.{}/16\n  gateway: 10.1.0.1\n  dns: [10.1.0.1]\n",
                i / 200,
                i % 200 + 2
            )
        } else {
            "  dhcp: true\n".into()
        };
        f.insert(
            format!("nodes/n{i}.yaml"),
            format!("hostname: n{i}.big.example\nrole: {role}\n{boot}mac_address: \"52:54:00:aa:00:{i:02x}\"\nnetwork:\n{net}labels: {{rack: r{}}}\n", i % 4),
        );
        let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        host_keys.insert(
            format!("n{i}"),
            Secret::new(key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_str()),
        );
    }
    let (inv, d) = slipway_model::inventory::load(&f);
    let inv = inv.unwrap_or_else(|| panic!("{d}"));
    let secrets = Secrets {
        k3s_token: Secret::new("0123456789abcdef0123456789abcdef"),
        core_password_hash: None,
        host_keys,
    };
    (inv, secrets)
}

struct Artifacts {
    binary: Artifact,
    script: Artifact,
    files: BTreeMap<String, Vec<u8>>,
}

fn artifacts() -> Artifacts {
    let bin = b"#!/bin/sh\necho k3s version v1.30.4+k3s1\n".to_vec();
    let script = b"#!/bin/sh\n# stand-in for the upstream install script\n".to_vec();
    let a = |name: &str, b: &[u8]| Artifact {
        name: name.into(),
        sha256: hex::encode(Sha256::digest(b)),
    };
    let binary = a("k3s", &bin);
    let inst = a("install.sh", &script);
    let mut files = BTreeMap::new();
    files.insert(format!("/artifacts/{}/k3s", binary.sha256), bin);
    files.insert(format!("/artifacts/{}/install.sh", inst.sha256), script);
    Artifacts {
        binary,
        script: inst,
        files,
    }
}

/// A tiny HTTP/1.0 file server on 127.0.0.1 for the artifacts Ignition fetches.
fn serve(files: BTreeMap<String, Vec<u8>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            match files.get(&path) {
                Some(b) => {
                    let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len());
                    let _ = s.write_all(b);
                }
                None => {
                    let _ = write!(s, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    format!("http://{addr}")
}

fn inputs<'a>(a: &'a Artifacts, state: ClusterState) -> ProfileInputs<'a> {
    ProfileInputs {
        commit: "0123abcd",
        cluster_state: state,
        os_version: "40.20240906.3.0",
        k3s_version: "v1.30.4+k3s1",
        k3s_binary: &a.binary,
        k3s_install_script: &a.script,
    }
}

fn render(
    inv: &Inventory,
    secrets: &Secrets,
    node: &str,
    a: &Artifacts,
    state: ClusterState,
) -> RenderedNode {
    let n = inv.node(node).unwrap();
    render_node(inv, n, secrets, &inputs(a, state), &NoFiles).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run ./tests/run, it installs the Debian package `ignition`"
    );
}

fn validate(json: &str) {
    require("/usr/bin/ignition-validate");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cfg.ign");
    std::fs::write(&p, json).unwrap();
    let out = Command::new("ignition-validate").arg(&p).output().unwrap();
    assert!(
        out.status.success(),
        "ignition-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Apply a config with the real Ignition (fetch-offline, then files) into a fresh root, in a
/// private mount namespace with its own /run. Returns the root, or Ignition's log on failure.
fn apply(json: &str) -> Result<(tempfile::TempDir, PathBuf), String> {
    require(IGNITION);
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc/selinux")).unwrap();
    std::fs::write(
        root.join("etc/selinux/config"),
        "SELINUX=disabled\nSELINUXTYPE=targeted\n",
    )
    .unwrap();
    // SELinux relabeling can't run here: a no-op setfiles stands in (labels are not tested).
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("setfiles"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(bin.join("setfiles"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = t.path().join("cfg.ign");
    std::fs::write(&cfg, json).unwrap();
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /run; export IGNITION_CONFIG_FILE={cfg}; \
         {IGNITION} --platform file --stage fetch-offline --log-to-stdout; \
         {IGNITION} --platform file --stage files --root {root} --log-to-stdout",
        cfg = cfg.display(),
        root = root.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
        )
        .output()
        .unwrap();
    if out.status.success() {
        Ok((t, root))
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn mode(root: &Path, p: &str) -> u32 {
    std::fs::metadata(root.join(p.trim_start_matches('/')))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn k3s_config(root: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&read(root, "/etc/rancher/k3s/config.yaml")).unwrap()
}

#[test]
fn example_configs_pass_ignition_validate_and_are_deterministic() {
    let a = artifacts();
    let (inv, secrets) = example("http://127.0.0.1:9");
    for node in &inv.nodes {
        for state in [ClusterState::New, ClusterState::Exists] {
            let r1 = render(&inv, &secrets, &node.name, &a, state);
            let r2 = render(&inv, &secrets, &node.name, &a, state);
            assert_eq!(
                r1.ignition.expose(),
                r2.ignition.expose(),
                "{} not deterministic",
                node.name
            );
            assert_eq!(r1.config_hash, r2.config_hash);
            assert_eq!(r1.config_hash.len(), 64);
            assert!(r1
                .ignition
                .expose()
                .starts_with("{\"ignition\":{\"version\":\"3.3.0\"}"));
            validate(r1.ignition.expose());
            // The rendered config holds secrets; its Debug never shows them.
            assert!(!format!("{r1:?}").contains(secrets.k3s_token.expose()));
        }
    }
}

#[test]
fn fifty_generated_configs_pass_ignition_validate() {
    let a = artifacts();
    let (inv, secrets) = generated(50, "http://127.0.0.1:9");
    let mut hashes = std::collections::BTreeSet::new();
    for node in &inv.nodes {
        let r = render(&inv, &secrets, &node.name, &a, ClusterState::New);
        validate(r.ignition.expose());
        hashes.insert(r.config_hash);
    }
    assert_eq!(
        hashes.len(),
        50,
        "every node's config differs (hostname, keys)"
    );
}

#[test]
fn bootstrap_server_initialises_only_a_new_cluster() {
    let a = artifacts();
    let base = serve(a.files.clone());
    let (inv, secrets) = example(&base);
    let (_t, root) = apply(
        render(&inv, &secrets, "lenovo1", &a, ClusterState::New)
            .ignition
            .expose(),
    )
    .unwrap();
    let cfg = k3s_config(&root);
    assert_eq!(cfg["cluster-init"], serde_yaml::Value::Bool(true));
    assert!(cfg.get("server").is_none());
    assert!(
        !root.join("etc/slipway/k3s-servers").exists(),
        "the cluster's first server joins nobody"
    );

    // Its config hash is that of its joining configuration, so once the cluster exists the
    // one-time cluster-init is not drift and does not trigger a reinstall.
    let new = render(&inv, &secrets, "lenovo1", &a, ClusterState::New);
    let joining = render(&inv, &secrets, "lenovo1", &a, ClusterState::Exists);
    assert_eq!(new.config_hash, joining.config_hash);
    assert_ne!(new.ignition.expose(), joining.ignition.expose());
    let applied: serde_json::Value =
        serde_json::from_str(&read(&root, "/etc/slipway/applied.json")).unwrap();
    assert_eq!(applied["config_hash"], joining.config_hash.as_str());
    // Once the cluster exists, the bootstrap server rejoins like the others: no second cluster.
    let (_t, root) = apply(
        render(&inv, &secrets, "lenovo1", &a, ClusterState::Exists)
            .ignition
            .expose(),
    )
    .unwrap();
    let cfg = k3s_config(&root);
    assert!(
        cfg.get("cluster-init").is_none(),
        "cluster-init on an existing cluster splits it"
    );
    assert_eq!(
        read(&root, "/etc/slipway/k3s-servers"),
        "https://lenovo2.lab.home.example.net:6443\nhttps://lenovo3.lab.home.example.net:6443\n"
    );
}

#[test]
fn servers_and_agents_get_the_flags_they_need_and_only_those() {
    let a = artifacts();
    let base = serve(a.files.clone());
    let (inv, secrets) = example(&base);
    let token = secrets.k3s_token.expose().to_string();

    let (_t, root) = apply(
        render(&inv, &secrets, "lenovo2", &a, ClusterState::New)
            .ignition
            .expose(),
    )
    .unwrap();
    let cfg = k3s_config(&root);
    assert_eq!(cfg["token"].as_str(), Some(token.as_str()));
    assert_eq!(cfg["node-name"].as_str(), Some("lenovo2"));
    assert!(cfg.get("cluster-init").is_none());
    assert_eq!(cfg["cluster-cidr"].as_str(), Some("10.42.0.0/16"));
    assert_eq!(cfg["service-cidr"].as_str(), Some("10.43.0.0/16"));
    assert_eq!(cfg["disable-network-policy"], serde_yaml::Value::Bool(true));
    let disabled: Vec<&str> = cfg["disable"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        disabled,
        ["traefik", "servicelb", "local-storage", "metrics-server"]
    );
    assert_eq!(
        cfg["kubelet-arg"][0].as_str(),
        Some("cgroup-driver=systemd")
    );
    assert_eq!(cfg["write-kubeconfig-mode"].as_str(), Some("0644"));
    // A joining server tries the other servers, never itself (FQDN vs short name included).
    let servers = read(&root, "/etc/slipway/k3s-servers");
    assert!(!servers.contains("lenovo2"), "{servers}");
    assert!(servers.contains("lenovo1") && servers.contains("lenovo3"));

    let (_t, root) = apply(
        render(&inv, &secrets, "worker2", &a, ClusterState::New)
            .ignition
            .expose(),
    )
    .unwrap();
    let cfg = k3s_config(&root);
    for server_only in [
        "cluster-init",
        "cluster-cidr",
        "service-cidr",
        "disable",
        "write-kubeconfig-mode",
        "tls-san",
    ] {
        assert!(
            cfg.get(server_only).is_none(),
            "agent got server flag {server_only}"
        );
    }
    assert_eq!(
        cfg["node-taint"][0].as_str(),
        Some("storage=hdd:PreferNoSchedule")
    );
    assert_eq!(
        cfg["node-label"][0].as_str(),
        Some("topology.kubernetes.io/zone=rack1")
    );
    assert_eq!(read(&root, "/etc/slipway/k3s-servers").lines().count(), 3);
    assert!(read(&root, "/etc/systemd/system/k3s-install.service")
        .contains("ExecStart=/usr/local/bin/slipway-k3s-install agent"));
    // worker2's own overlay: the data disk's mount unit, as Butane generates it.
    assert!(read(&root, "/etc/systemd/system/var-mnt-data.mount").contains("Where=/var/mnt/data"));
}

#[test]
fn what_lands_on_the_node() {
    let a = artifacts();
    let base = serve(a.files.clone());
    let (inv, secrets) = example(&base);
    let rendered = render(&inv, &secrets, "lenovo3", &a, ClusterState::New);
    let (_t, root) = apply(rendered.ignition.expose()).unwrap();

    assert_eq!(
        read(&root, "/etc/hostname"),
        "lenovo3.lab.home.example.net\n"
    );
    assert_eq!(
        mode(&root, "/etc/rancher/k3s/config.yaml"),
        0o600,
        "the token file is private"
    );
    let nm = "/etc/NetworkManager/system-connections/slipway.nmconnection";
    assert_eq!(
        mode(&root, nm),
        0o600,
        "NetworkManager ignores keyfiles that are not 0600"
    );
    let keyfile = read(&root, nm);
    assert!(
        keyfile.contains("mac-address=88:AE:DD:01:00:03"),
        "{keyfile}"
    );
    assert!(
        keyfile.contains("address1=192.168.26.13/24,192.168.26.1"),
        "{keyfile}"
    );
    assert!(keyfile.contains("dns=192.168.26.1;"), "{keyfile}");
    // The host key Slipway pins is the one the node gets.
    assert_eq!(mode(&root, "/etc/ssh/ssh_host_ed25519_key"), 0o600);
    assert_eq!(
        read(&root, "/etc/ssh/ssh_host_ed25519_key"),
        secrets.host_keys["lenovo3"].expose()
    );
    assert_eq!(
        read(&root, "/etc/ssh/ssh_host_ed25519_key.pub").trim(),
        secrets.host_public_key("lenovo3").unwrap()
    );
    assert!(
        !root.join("etc/ssh/sshd_config.d").exists(),
        "sshd's configuration is not weakened"
    );
    // K3s binaries came from the artifact server, verified by Ignition's own sha256 check.
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/k3s")).unwrap(),
        a.files[&format!("/artifacts/{}/k3s", a.binary.sha256)]
    );
    assert_eq!(mode(&root, "/usr/local/bin/k3s"), 0o755);
    assert_eq!(mode(&root, "/usr/local/bin/slipway-k3s-install"), 0o755);
    // Units: the SELinux fix runs before the one-shot installer, which is stamped on /etc.
    let preset = read(&root, "/etc/systemd/system-preset/20-ignition.preset");
    assert!(
        preset.contains("enable k3s-install.service")
            && preset.contains("enable slipway-selinux-relabel.service"),
        "{preset}"
    );
    let install = read(&root, "/etc/systemd/system/k3s-install.service");
    assert!(install.contains("After=network-online.target slipway-selinux-relabel.service"));
    assert!(install.contains("ConditionPathExists=!/etc/slipway/k3s-installed"));
    let relabel = read(&root, "/etc/systemd/system/slipway-selinux-relabel.service");
    assert!(relabel.contains("Before=k3s-install.service") && relabel.contains("restorecon"));
    // Slipway owns updates by default.
    assert!(read(&root, "/etc/zincati/config.d/90-slipway.toml").contains("enabled = false"));
    // applied.json records what the reconciler reads back.
    let applied: serde_json::Value =
        serde_json::from_str(&read(&root, "/etc/slipway/applied.json")).unwrap();
    assert_eq!(applied["commit"], "0123abcd");
    assert_eq!(applied["config_hash"], rendered.config_hash.as_str());
    assert_eq!(applied["os_version"], "40.20240906.3.0");
    assert_eq!(applied["k3s_version"], "v1.30.4+k3s1");
    assert_eq!(mode(&root, "/var/lib/slipway"), 0o700);
    // Overlays landed too (all nodes + servers).
    assert!(read(&root, "/etc/sysctl.d/90-inotify.conf").contains("max_user_watches"));
    assert!(read(&root, "/etc/sysctl.d/90-etcd.conf").contains("dirty_background_ratio"));
    assert!(
        !root.join("etc/systemd/journald.conf.d/size.conf").exists(),
        "agent overlay on a server"
    );
    // The core user and its key.
    assert!(read(&root, "/etc/passwd").contains("core:"));
    assert!(read(&root, "/home/core/.ssh/authorized_keys.d/ignition").contains("slipway@homelab"));
}

#[test]
fn ignition_refuses_an_artifact_whose_hash_does_not_match() {
    let a = artifacts();
    let mut tampered = a.files.clone();
    tampered.insert(
        format!("/artifacts/{}/k3s", a.binary.sha256),
        b"#!/bin/sh\necho evil\n".to_vec(),
    );
    let base = serve(tampered);
    let (inv, secrets) = example(&base);
    let log = apply(
        render(&inv, &secrets, "worker1", &a, ClusterState::New)
            .ignition
            .expose(),
    )
    .unwrap_err();
    assert!(
        log.contains("hash") || log.contains("verification"),
        "{log}"
    );
}

#[test]
fn a_conflicting_overlay_names_both_sources() {
    let a = artifacts();
    let (mut inv, secrets) = example("http://127.0.0.1:9");
    inv.overlays.all.push(slipway_model::inventory::Source {
        path: "butane/bad.bu".into(),
        text:
            "variant: fcos\nversion: 1.4.0\nstorage:\n  directories:\n    - path: /etc/hostname\n"
                .into(),
    });
    let n = inv.node("worker1").unwrap().clone();
    let err =
        render_node(&inv, &n, &secrets, &inputs(&a, ClusterState::New), &NoFiles).unwrap_err();
    let text: Vec<String> = err.iter().map(ToString::to_string).collect();
    let text = text.join("\n");
    assert!(
        text.contains("butane/bad.bu") && text.contains("generated profile of worker1"),
        "{text}"
    );
    assert!(!text.contains(secrets.k3s_token.expose()));
}
