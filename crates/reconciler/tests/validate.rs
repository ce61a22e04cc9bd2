//! `slipway validate` against fixture repos: one fixture per validation error, each
//! asserting the exact message and location. A fixture (tests/fixtures/validate/*.yaml)
//! patches a copy of cluster-repo-example and lists the lines the report must contain.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// file → list of [from, to] replacements (each `from` must occur).
    #[serde(default)]
    patch: BTreeMap<String, Vec<(String, String)>>,
    /// file → new contents.
    #[serde(default)]
    write: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
    /// `stranger`: use a fresh identity that is not a recipient.
    #[serde(default)]
    identity: Option<String>,
    #[serde(default = "one")]
    exit: i32,
    expect: Vec<String>,
}

fn one() -> i32 {
    1
}

fn apply(repo: &Path, f: &Fixture) {
    for (file, reps) in &f.patch {
        let p = repo.join(file);
        let mut s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (from, to) in reps {
            assert!(
                s.contains(from.as_str()),
                "fixture patch: `{from}` not found in {file}"
            );
            s = s.replacen(from.as_str(), to, 1);
        }
        std::fs::write(&p, s).unwrap();
    }
    for (file, contents) in &f.write {
        let p = repo.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    for file in &f.remove {
        std::fs::remove_file(repo.join(file)).unwrap_or_else(|e| panic!("remove {file}: {e}"));
    }
}

#[test]
fn example_repo_is_valid() {
    let mut c = slipway();
    c.args(["validate", "--repo"])
        .arg(example_repo())
        .arg("--identity")
        .arg(demo_identity());
    let out = run(c);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout.trim(),
        "ok: cluster homelab: 5 nodes (3 servers, 2 agents), 4 overlays, secrets decrypted"
    );
}

#[test]
fn without_identity_secrets_are_not_checked_but_structure_is() {
    let mut c = slipway();
    c.args(["validate", "--repo"]).arg(example_repo());
    let out = run(c);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: secrets were not decrypted: no identity given"),
        "{stdout}"
    );
}

#[test]
fn every_validation_fixture() {
    let dir = workspace().join("tests/fixtures/validate");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 20,
        "fixtures missing from {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let f: Fixture = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_t, repo) = example_copy();
        apply(&repo, &f);
        let mut subst = BTreeMap::new();
        let identity = match f.identity.as_deref() {
            Some("stranger") => {
                let key = age::x25519::Identity::generate();
                subst.insert("{stranger}", key.to_public().to_string());
                let p = repo.join("../stranger.txt");
                use age::secrecy::ExposeSecret;
                std::fs::write(&p, format!("{}\n", key.to_string().expose_secret())).unwrap();
                p
            }
            Some(other) => panic!("{name}: unknown identity {other}"),
            None => demo_identity(),
        };
        let mut c = slipway();
        c.args(["validate", "--repo"])
            .arg(&repo)
            .arg("--identity")
            .arg(identity);
        let out = run(c);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let mut problems = Vec::new();
        if out.status.code() != Some(f.exit) {
            problems.push(format!("exit {:?}, want {}", out.status.code(), f.exit));
        }
        for want in &f.expect {
            let mut want = want.clone();
            for (k, v) in &subst {
                want = want.replace(k, v);
            }
            if !lines.contains(&want.as_str()) {
                problems.push(format!("missing line: {want}"));
            }
        }
        // No error beyond the expected ones: one bad value must not cascade.
        let want_errors = f.expect.iter().filter(|l| l.contains(": error: ")).count();
        let got_errors = lines.iter().filter(|l| l.contains(": error: ")).count();
        if got_errors != want_errors {
            problems.push(format!(
                "{got_errors} errors reported, {want_errors} expected"
            ));
        }
        if stdout.contains("panicked") || text(&out.stderr).contains("panicked") {
            problems.push("panicked".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}:\n  {}\n--- output:\n{stdout}{}",
                problems.join("\n  "),
                text(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_report_is_versioned_and_lists_locations() {
    let (_t, repo) = example_copy();
    let p = repo.join("nodes/worker1.yaml");
    let s = std::fs::read_to_string(&p)
        .unwrap()
        .replace("role: agent", "role: worker");
    std::fs::write(&p, s).unwrap();
    let mut c = slipway();
    c.args(["validate", "--output", "json", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity());
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["diagnostics"][0]["location"]["file"],
        "nodes/worker1.yaml"
    );
    assert_eq!(v["diagnostics"][0]["location"]["line"], 3);
    assert_eq!(v["diagnostics"][0]["severity"], "error");
}

#[test]
fn a_missing_repo_is_a_clear_error() {
    let mut c = slipway();
    c.args(["validate", "--repo", "/nonexistent/slipway-repo"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/slipway-repo is not a folder"),
        "{}",
        text(&out.stderr)
    );
}
