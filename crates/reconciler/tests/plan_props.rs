//! Properties of the plan over generated inputs: no secret value ever reaches the text or
//! JSON rendering, whatever the files look like and wherever the secret sits in them, and
//! the plan is a function of its inputs.
#![allow(missing_docs, clippy::unwrap_used)]

use proptest::prelude::*;
use slipway::plan::{self, Actual, ActualNode, Desired, DesiredNode, Policy, RawFiles};
use slipway_model::facts::{
    AppliedConfig, Deployment, K3sService, NodeFacts, OsStatus, Reachability, UnitState,
};
use slipway_model::inventory::{ReinstallMethod, Role};
use slipway_model::net::MacAddr;

/// File bodies: lines of text, some holding the secret (as a whole line, inside a line, or
/// as the whole file), some not.
fn body(secret: &str, lines: &[(u8, String)]) -> String {
    let mut out = String::new();
    for (kind, text) in lines {
        match kind % 4 {
            0 => out.push_str(&format!("{text}\n")),
            1 => out.push_str(&format!("key: {secret}\n")),
            2 => out.push_str(&format!("{text}{secret}{text}\n")),
            _ => out.push_str(&format!("{secret}\n")),
        }
    }
    out
}

fn facts(hash: &str) -> NodeFacts {
    NodeFacts {
        reachability: Reachability::Reachable,
        boot_id: None,
        uptime_seconds: None,
        os: Some(OsStatus {
            booted: Deployment {
                version: "40.1".into(),
                checksum: "c".into(),
            },
            pending: None,
        }),
        k3s_version: Some("v1.30.4+k3s1".into()),
        k3s_service: Some(K3sService {
            server: UnitState::Inactive,
            agent: UnitState::Active,
        }),
        applied: Some(AppliedConfig {
            commit: "1".repeat(40),
            config_hash: hash.into(),
            os_version: "40.1".into(),
            k3s_version: "v1.30.4+k3s1".into(),
        }),
        var_canary: None,
        boot_entries: None,
        errors: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn no_secret_reaches_any_rendering(
        old_secret in "[A-Za-z0-9]{12,40}",
        new_secret in "[A-Za-z0-9]{12,40}",
        old_lines in prop::collection::vec((any::<u8>(), "[ -~]{0,30}"), 0..12),
        new_lines in prop::collection::vec((any::<u8>(), "[ -~]{0,30}"), 0..12),
        binary in any::<bool>(),
    ) {
        let mut old = RawFiles::new();
        let mut new = RawFiles::new();
        old.file("/etc/a", Some(0o600), None, body(&old_secret, &old_lines));
        new.file("/etc/a", Some(0o600), None, body(&new_secret, &new_lines));
        if binary {
            let mut bytes = vec![0xff, 0xfe];
            bytes.extend_from_slice(new_secret.as_bytes());
            new.file("/etc/b", None, None, bytes);
        }
        new.remote("/usr/local/bin/k3s", None, &format!("http://h/{new_secret}/k3s"), None);
        let secrets = [old_secret.as_str(), new_secret.as_str()];
        let desired = Desired {
            commit: "2".repeat(40),
            author: "a".into(),
            signer: None,
            cluster_name: "c".into(),
            nodes: vec![DesiredNode {
                name: "agent1".into(),
                hostname: "agent1.lab".into(),
                role: Role::Agent,
                bootstrap: false,
                macs: vec![MacAddr([2, 0, 0, 0, 0, 1])],
                install_disk: "/dev/sda".into(),
                config_hash: "new".into(),
                files: new.redact(&secrets),
                os_version: "40.1".into(),
                k3s_version: "v1.30.4+k3s1".into(),
                reinstall_method: ReinstallMethod::PxeAlways,
            }],
            policy: Policy { max_unavailable_agents: 1 },
        };
        let actual = Actual {
            nodes: vec![ActualNode {
                name: "agent1".into(),
                facts: facts("old"),
                applied_files: Some(old.redact(&secrets)),
                recorded_macs: vec![MacAddr([2, 0, 0, 0, 0, 1])],
                recorded_disk: Some("/dev/sda".into()),
            }],
            known_nodes: Vec::new(),
            cluster_exists: true,
        };
        let p = plan::plan(&desired, &actual);
        prop_assert_eq!(&p, &plan::plan(&desired, &actual));
        let outputs = [
            plan::render_text(&p, false),
            plan::render_text(&p, true),
            plan::render_json(&p),
            format!("{p:?}"),
        ];
        for out in &outputs {
            prop_assert!(!out.contains(&old_secret), "old secret leaked:\n{}", out);
            prop_assert!(!out.contains(&new_secret), "new secret leaked:\n{}", out);
        }
        // A change only in the secret is still reported.
        if old_lines == new_lines && old_secret != new_secret
            && old_lines.iter().any(|(k, _)| k % 4 != 0)
        {
            prop_assert!(p.nodes[0].diff.iter().any(|f| f.path == "/etc/a" && f.secret_changed));
        }
    }
}
