//! `slipway secrets`: interop with the real `age` CLI both ways, generation, and `edit`
//! leaving no plaintext behind on any exit path.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn age_decrypt(identity: &Path, file: &Path) -> String {
    let age = require_tool("age");
    let out = Command::new(age)
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "age -d failed: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn files_from_slipway_decrypt_with_age_and_back() {
    let (t, repo) = example_copy();
    // slipway → age
    let input = t.path().join("in.yaml");
    std::fs::write(
        &input,
        "k3s_token: 0123456789abcdef0123456789abcdef\nnote: \"two\\nlines\"\n",
    )
    .unwrap();
    let target = repo.join("secrets/extra.age");
    let mut c = slipway();
    c.args(["secrets", "encrypt", "--repo"])
        .arg(&repo)
        .arg("--input")
        .arg(&input)
        .arg(&target);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let armored = std::fs::read_to_string(&target).unwrap();
    assert!(
        armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "not armored"
    );
    assert!(!armored.contains("0123456789abcdef"));
    let plain = age_decrypt(&demo_identity(), &target);
    assert!(
        plain.contains("k3s_token: \"0123456789abcdef0123456789abcdef\""),
        "{plain}"
    );

    // age → slipway
    let age = require_tool("age");
    let from_age = repo.join("secrets/from-age.age");
    let out = Command::new(age)
        .args(["-a", "-R"])
        .arg(repo.join(".slipway/recipients"))
        .arg("-o")
        .arg(&from_age)
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "age -e: {}", text(&out.stderr));
    let mut c = slipway();
    c.args(["secrets", "decrypt", "--identity"])
        .arg(demo_identity())
        .arg(&from_age);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), std::fs::read_to_string(&input).unwrap());
}

#[test]
fn encrypt_refuses_content_that_is_not_a_secrets_map_and_writes_nothing() {
    let (t, repo) = example_copy();
    let input = t.path().join("bad.yaml");
    std::fs::write(&input, "- just\n- a list hunter2\n").unwrap();
    let target = repo.join("secrets/bad.age");
    let mut c = slipway();
    c.args(["secrets", "encrypt", "--repo"])
        .arg(&repo)
        .arg("--input")
        .arg(&input)
        .arg(&target);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(!target.exists());
    assert!(
        !text(&out.stderr).contains("hunter2"),
        "error quotes the secret: {}",
        text(&out.stderr)
    );
}

#[test]
fn generate_fills_only_what_is_missing_and_validate_then_passes() {
    let (_t, repo) = example_copy();
    std::fs::remove_file(repo.join("secrets/nodes/worker1.age")).unwrap();
    let before = std::fs::read(repo.join("secrets/cluster.age")).unwrap();
    let mut c = slipway();
    c.args(["secrets", "generate", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity());
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("created SSH host key SHA256:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("for worker1 in secrets/nodes/worker1.age"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "only worker1 lacked a secret: {stdout}"
    );
    assert_eq!(
        before,
        std::fs::read(repo.join("secrets/cluster.age")).unwrap(),
        "cluster secrets rewritten"
    );
    // The new key is a real OpenSSH ed25519 key that ssh-keygen reads.
    let plain = age_decrypt(&demo_identity(), &repo.join("secrets/nodes/worker1.age"));
    assert!(plain.contains("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let mut c = slipway();
    c.args(["validate", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity());
    assert_eq!(run(c).status.code(), Some(0));
}

#[test]
fn generated_token_is_strong_and_distinct() {
    let (_t, repo) = example_copy();
    std::fs::remove_file(repo.join("secrets/cluster.age")).unwrap();
    let mut c = slipway();
    c.args(["secrets", "generate", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity());
    assert!(run(c).status.success());
    let plain = age_decrypt(&demo_identity(), &repo.join("secrets/cluster.age"));
    let token = plain
        .trim()
        .strip_prefix("k3s_token: ")
        .unwrap()
        .trim_matches('"');
    assert_eq!(token.len(), 64, "256-bit hex token");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let example = age_decrypt(
        &demo_identity(),
        &example_repo().join("secrets/cluster.age"),
    );
    assert!(!example.contains(token));
}

/// Run `secrets edit` with EDITOR set to a shell script; return (exit code, stderr).
fn edit_with(repo: &Path, runtime: &Path, script: &str) -> (Option<i32>, String) {
    let editor = runtime.parent().unwrap().join("editor.sh");
    std::fs::write(&editor, format!("#!/bin/sh\n{script}\n")).unwrap();
    let mut perms = std::fs::metadata(&editor).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&editor, perms).unwrap();
    let mut c = slipway();
    c.args(["secrets", "edit", "--repo"])
        .arg(repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg(repo.join("secrets/cluster.age"))
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("VISUAL")
        .env("EDITOR", &editor);
    let out = run(c);
    (out.status.code(), text(&out.stderr))
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "plaintext left behind: {left:?}");
}

#[test]
fn edit_reencrypts_and_leaves_no_plaintext_on_any_exit_path() {
    let (t, repo) = example_copy();
    let runtime = t.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let cluster = repo.join("secrets/cluster.age");
    let original = std::fs::read(&cluster).unwrap();

    // Success: the editor appends a value; the file is re-encrypted with both.
    let (code, err) = edit_with(
        &repo,
        &runtime,
        "echo 'core_password_hash: \"$y$j9T$abc\"' >> \"$1\"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_empty(&runtime);
    let plain = age_decrypt(&demo_identity(), &cluster);
    assert!(
        plain.contains("k3s_token:") && plain.contains("core_password_hash:"),
        "{plain}"
    );
    let edited = std::fs::read(&cluster).unwrap();
    assert_ne!(edited, original);

    // The editor fails: nothing changes.
    let (code, err) = edit_with(&repo, &runtime, "echo 'oops: 1' >> \"$1\"; exit 3");
    assert_eq!(code, Some(1));
    assert!(err.contains("was not changed"), "{err}");
    assert_empty(&runtime);
    assert_eq!(std::fs::read(&cluster).unwrap(), edited);

    // Ctrl-C while editing (SIGINT to slipway, as a terminal sends to the foreground group).
    let (code, err) = edit_with(
        &repo,
        &runtime,
        "echo 'oops: 1' >> \"$1\"; kill -INT $PPID; sleep 0.3; exit 130",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("was not changed"), "{err}");
    assert_empty(&runtime);
    assert_eq!(std::fs::read(&cluster).unwrap(), edited);

    // Invalid content: refused, nothing changes, the value is not echoed.
    let (code, err) = edit_with(&repo, &runtime, "echo '- hunter2secret' > \"$1\"");
    assert_eq!(code, Some(1));
    assert!(!err.contains("hunter2"), "{err}");
    assert_empty(&runtime);
    assert_eq!(std::fs::read(&cluster).unwrap(), edited);

    // The plaintext file the editor sees is private (0600, in a 0700 folder).
    let (code, err) = edit_with(
        &repo,
        &runtime,
        "test \"$(stat -c %a \"$1\")\" = 600 && test \"$(stat -c %a \"$(dirname \"$1\")\")\" = 700 || exit 9",
    );
    assert_eq!(code, Some(0), "plaintext not private: {err}");
    assert_empty(&runtime);
}
