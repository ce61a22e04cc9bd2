//! The committed JSON schemas (editors use them to validate and complete the YAML) must match
//! the Rust types. Regenerate with `cargo run -p slipway -- schema --out cluster-repo-example/.slipway/schema`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn committed_schemas_are_current() {
    let t = tempfile::tempdir().unwrap();
    let mut c = slipway();
    c.args(["schema", "--out"]).arg(t.path());
    assert!(run(c).status.success());
    for name in ["cluster.schema.json", "node.schema.json"] {
        let fresh = std::fs::read_to_string(t.path().join(name)).unwrap();
        let committed = std::fs::read_to_string(example_repo().join(".slipway/schema").join(name))
            .unwrap_or_default();
        assert!(
            fresh == committed,
            "{name} is stale: run `cargo run -p slipway -- schema --out cluster-repo-example/.slipway/schema`"
        );
    }
    // The schema knows the keys a node file may have, so editors can complete them.
    let node: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("node.schema.json")).unwrap())
            .unwrap();
    let props = node["properties"].as_object().unwrap();
    for key in [
        "hostname",
        "role",
        "bootstrap",
        "mac_address",
        "network",
        "install_disk",
        "reinstall_method",
    ] {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
    assert_eq!(node["additionalProperties"], false);
}
