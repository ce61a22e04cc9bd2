//! `slipway butane` as a drop-in for `butane`: every golden fixture of ignition-gen through
//! the binary (files from a real directory), stdin/stdout, and errors with locations.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn golden_fixtures_through_the_binary() {
    let dir = workspace().join("crates/ignition-gen/tests/fixtures/butane");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for case in cases {
        let expected = std::fs::read_to_string(case.join("expected.ign")).unwrap();
        let mut c = slipway();
        c.arg("butane");
        if case.join("files").is_dir() {
            c.arg("--files-dir").arg(case.join("files"));
        }
        c.arg(case.join("input.bu"));
        let out = run(c);
        let got = text(&out.stdout);
        if !out.status.success() {
            failures.push(format!(
                "{}: exit {:?}: {}",
                case.display(),
                out.status.code(),
                text(&out.stderr)
            ));
            continue;
        }
        // gzip streams differ from Go's deflate byte-wise (documented); compare the rest exactly.
        if !expected.contains("\"compression\":\"gzip\"") && got.trim_end() != expected.trim_end() {
            failures.push(format!(
                "{}:\n got: {got}\nwant: {expected}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn stdin_pretty_and_errors() {
    let mut c = slipway();
    c.args(["butane", "--pretty"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"variant: fcos\nversion: 1.4.0\npasswd:\n  users:\n    - name: core\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "{\n  \"ignition\": {\n    \"version\": \"3.3.0\"\n  },\n  \"passwd\": {\n    \"users\": [\n      {\n        \"name\": \"core\"\n      }\n    ]\n  }\n}\n"
    );

    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("bad.bu");
    std::fs::write(
        &f,
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: etc/motd\n",
    )
    .unwrap();
    let mut c = slipway();
    c.arg("butane").arg(&f);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing printed on error");
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{}:5:", f.display())), "{err}");
}
