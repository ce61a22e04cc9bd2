//! The plan over real rendered configs: the example repository's nodes rendered by the node
//! profile (ignition-gen), decoded back into files by `RawFiles::from_ignition`, redacted
//! with the decrypted secrets, and planned. Proves the extraction reads what the renderer
//! writes (data URLs, gzip, units), that `cluster-init` is seen exactly where the profile
//! puts it, and that no secret reaches a rendered plan.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use slipway::plan::{
    self, Action, Actual, ActualNode, Contents, Desired, DesiredNode, NodeFiles, Policy, RawFiles,
    SENSITIVE,
};
use slipway_ignition_gen::files::NoFiles;
use slipway_ignition_gen::profile::{
    render_node, Artifact, ClusterState, ProfileInputs, K3S_CONFIG,
};
use slipway_model::check::{check_repo, Secrets};
use slipway_model::facts::{
    AppliedConfig, Deployment, K3sService, NodeFacts, OsStatus, Reachability, UnitState,
};
use slipway_model::inventory::{Inventory, Role};
use slipway_model::secrets::Identities;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-repo-example")
}

fn example() -> (Inventory, Secrets) {
    let root = example_dir();
    let files = slipway::repo_fs::read_repo(&root).unwrap();
    let ids = Identities::parse(
        &std::fs::read_to_string(root.join(".slipway/DEMO-ONLY-age-identity.txt")).unwrap(),
    )
    .unwrap();
    let c = check_repo(&files, Some(&ids));
    assert!(!c.diagnostics.has_errors(), "{}", c.diagnostics);
    (c.inventory.unwrap(), c.secrets.unwrap())
}

fn secret_values(s: &Secrets) -> Vec<String> {
    let mut v = vec![s.k3s_token.expose().to_string()];
    v.extend(s.core_password_hash.iter().map(|h| h.expose().to_string()));
    v.extend(s.host_keys.values().map(|k| k.expose().to_string()));
    v
}

struct Rendered {
    files: NodeFiles,
    hash: String,
}

fn render(
    inv: &Inventory,
    secrets: &Secrets,
    node: &str,
    state: ClusterState,
    commit: &str,
) -> Rendered {
    let binary = Artifact {
        name: "k3s".into(),
        sha256: "a".repeat(64),
    };
    let script = Artifact {
        name: "install.sh".into(),
        sha256: "b".repeat(64),
    };
    let inputs = ProfileInputs {
        commit,
        cluster_state: state,
        os_version: "40.20240906.3.0",
        k3s_version: "v1.30.4+k3s1",
        k3s_binary: &binary,
        k3s_install_script: &script,
    };
    let n = inv.node(node).unwrap();
    let r = render_node(inv, n, secrets, &inputs, &NoFiles).unwrap_or_else(|d| panic!("{d:?}"));
    let raw = RawFiles::from_ignition(r.ignition.expose()).unwrap();
    let values = secret_values(secrets);
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    Rendered {
        files: raw.redact(&refs),
        hash: r.config_hash,
    }
}

fn facts(hash: &str, role: Role) -> NodeFacts {
    let (server, agent) = match role {
        Role::Server => (UnitState::Active, UnitState::Inactive),
        Role::Agent => (UnitState::Inactive, UnitState::Active),
    };
    NodeFacts {
        reachability: Reachability::Reachable,
        boot_id: None,
        uptime_seconds: None,
        os: Some(OsStatus {
            booted: Deployment {
                version: "40.20240906.3.0".into(),
                checksum: "c".into(),
            },
            pending: None,
        }),
        k3s_version: Some("v1.30.4+k3s1".into()),
        k3s_service: Some(K3sService { server, agent }),
        applied: Some(AppliedConfig {
            commit: "0000000000000000000000000000000000000001".into(),
            config_hash: hash.into(),
            os_version: "40.20240906.3.0".into(),
            k3s_version: "v1.30.4+k3s1".into(),
        }),
        var_canary: None,
        boot_entries: None,
        errors: Vec::new(),
    }
}

#[test]
fn extraction_reads_what_the_profile_renders_and_masks_every_secret() {
    let (inv, secrets) = example();
    let boot = inv.bootstrap().unwrap().name.clone();
    let r = render(&inv, &secrets, &boot, ClusterState::New, "c1");
    // Files, the remote K3s binary and the units of the profile are all there.
    for path in [
        "/etc/hostname",
        K3S_CONFIG,
        "/usr/local/bin/k3s",
        "/usr/local/bin/slipway-k3s-install",
        "/etc/slipway/applied.json",
        "systemd:k3s-install.service",
        "systemd:slipway-selinux-relabel.service",
        "passwd:user/core",
        "directory:/var/lib/slipway",
        "storage:filesystems",
    ] {
        assert!(r.files.get(path).is_some(), "{path} missing");
    }
    let n = inv.node(&boot).unwrap();
    match &r.files.get("/etc/hostname").unwrap().contents {
        Contents::Text(t) => assert_eq!(t, &format!("{}\n", n.hostname)),
        other => panic!("{other:?}"),
    }
    match &r
        .files
        .get("/usr/local/bin/slipway-k3s-install")
        .unwrap()
        .contents
    {
        Contents::Text(t) => assert!(t.starts_with("#!/bin/sh"), "decoded script: {t}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        r.files.get("/usr/local/bin/k3s").unwrap().contents,
        Contents::Remote { .. }
    ));
    match &r.files.get(K3S_CONFIG).unwrap().contents {
        Contents::Text(t) => {
            let token = t.lines().find(|l| l.starts_with("token:")).unwrap();
            assert!(token.contains(SENSITIVE), "{t}");
            assert!(!t.contains(secrets.k3s_token.expose()));
        }
        other => panic!("{other:?}"),
    }
    if r.files.get("/etc/ssh/ssh_host_ed25519_key").is_some() {
        assert_eq!(
            r.files
                .get("/etc/ssh/ssh_host_ed25519_key")
                .unwrap()
                .contents,
            Contents::Sensitive
        );
    }
    let debug = format!("{:?}", r.files);
    for s in secret_values(&secrets) {
        let s = s.trim_end();
        assert!(!debug.contains(s), "a secret in Debug output");
    }
}

#[test]
fn cluster_init_is_seen_exactly_where_the_profile_puts_it() {
    let (inv, secrets) = example();
    for n in &inv.nodes {
        let new = render(&inv, &secrets, &n.name, ClusterState::New, "c1");
        let exists = render(&inv, &secrets, &n.name, ClusterState::Exists, "c1");
        assert_eq!(new.files.cluster_init(), n.bootstrap, "{}", n.name);
        assert!(!exists.files.cluster_init(), "{}", n.name);
    }
}

/// The cluster exists; the bootstrap server still runs the config that created it. The
/// plan over the real renderings says exactly what differs, safely, without a secret.
#[test]
fn plan_over_real_renderings_keeps_the_bootstrap_server_and_leaks_no_secret() {
    let (inv, secrets) = example();
    let commit = "2222222222222222222222222222222222222222";
    let mut desired_nodes = Vec::new();
    let mut actual = Actual {
        cluster_exists: true,
        ..Actual::default()
    };
    for n in &inv.nodes {
        let want = render(&inv, &secrets, &n.name, ClusterState::Exists, commit);
        let installed_state = if n.bootstrap {
            ClusterState::New
        } else {
            ClusterState::Exists
        };
        let have = render(&inv, &secrets, &n.name, installed_state, "0000001");
        actual.nodes.push(ActualNode {
            name: n.name.clone(),
            facts: facts(&have.hash, n.role),
            applied_files: Some(have.files),
            recorded_macs: n.macs.clone(),
            recorded_disk: Some(n.install_disk.clone()),
        });
        desired_nodes.push(DesiredNode {
            name: n.name.clone(),
            hostname: n.hostname.clone(),
            role: n.role,
            bootstrap: n.bootstrap,
            macs: n.macs.clone(),
            install_disk: n.install_disk.clone(),
            config_hash: want.hash,
            files: want.files,
            os_version: "40.20240906.3.0".into(),
            k3s_version: "v1.30.4+k3s1".into(),
            reinstall_method: n.reinstall_method,
        });
    }
    let desired = Desired {
        commit: commit.into(),
        author: "a <a@b>".into(),
        signer: None,
        cluster_name: inv.cluster.name.clone(),
        nodes: desired_nodes,
        policy: Policy {
            max_unavailable_agents: inv.cluster.rollout.max_unavailable_agents,
        },
    };
    let p = plan::plan(&desired, &actual);
    let boot = inv.bootstrap().unwrap().name.clone();
    for n in &p.nodes {
        // The bootstrap server was installed with cluster-init; once the cluster exists its
        // desired config is the joining variant. Its config hash is defined as the joining
        // variant's (ignition-gen), so the one-time cluster-init is not drift: nothing to do.
        assert_eq!(
            n.action,
            Action::None,
            "{} ({}): {n:?}",
            n.node,
            n.node == boot
        );
    }
    let text = plan::render_text(&p, false);
    let json = plan::render_json(&p);
    for s in secret_values(&secrets) {
        for line in s.lines().filter(|l| l.len() > 8) {
            assert!(
                !text.contains(line) && !json.contains(line),
                "secret leaked"
            );
        }
    }
    assert_eq!(plan::detailed_exit_code(&p), 0, "nothing to do");
}
