//! `slipway reconcile --dry-run --allowed-signers FILE`: an unsigned or untrusted HEAD is
//! refused (naming the commit, nothing planned); a HEAD signed by an allowed key is planned,
//! with its signer in the plan's header. Real git, real ssh-keygen keys.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn git(repo: &Path, home: &Path, args: &[&str]) {
    let out = Command::new(require_tool("git"))
        .current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Admin",
            "-c",
            "user.email=admin@lab.example",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

fn keygen(path: &Path) -> String {
    let out = Command::new(require_tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "admin", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn plan(repo: &Path, state: &Path, allowed: &Path) -> std::process::Output {
    let mut c = slipway();
    c.args(["reconcile", "--dry-run", "--offline", "--repo"])
        .arg(repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg("--state")
        .arg(state)
        .arg("--allowed-signers")
        .arg(allowed);
    run(c)
}

#[test]
fn only_a_head_signed_by_an_allowed_key_is_planned() {
    let (t, repo) = example_copy();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let state = t.path().join("state");
    import_artifacts(t.path(), &state);
    let admin = t.path().join("admin");
    let admin_pub = keygen(&admin);
    let stranger = t.path().join("stranger");
    keygen(&stranger);
    let allowed = t.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("admin@lab.example namespaces=\"git\" {admin_pub}\n"),
    )
    .unwrap();

    git(&repo, &home, &["init", "-q", "-b", "main"]);
    git(&repo, &home, &["add", "-A"]);
    git(&repo, &home, &["commit", "-q", "-m", "unsigned"]);
    let out = plan(&repo, &state, &allowed);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is refused: it is not signed") && err.contains("nothing was planned"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "a plan was printed for a refused commit"
    );

    let sign = |key: &Path, msg: &str| {
        let key = key.to_string_lossy().into_owned();
        git(
            &repo,
            &home,
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={key}"),
                "commit",
                "-q",
                "-S",
                "--allow-empty",
                "-m",
                msg,
            ],
        );
    };
    sign(&stranger, "signed by a stranger");
    let out = plan(&repo, &state, &allowed);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("which is not in allowed_signers"),
        "{}",
        text(&out.stderr)
    );

    sign(&admin, "signed by the admin");
    let out = plan(&repo, &state, &allowed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let signer = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("signer:"))
        .unwrap();
    assert!(signer.contains("admin@lab.example (SHA256:"), "{signer}");
    assert!(stdout.contains("Plan: 5 to install"), "{stdout}");
}
