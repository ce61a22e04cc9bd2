//! Helpers shared by the binary's integration tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The example repository.
pub fn example_repo() -> PathBuf {
    workspace().join("cluster-repo-example")
}

/// The demo identity of the example repository.
pub fn demo_identity() -> PathBuf {
    example_repo().join(".slipway/DEMO-ONLY-age-identity.txt")
}

/// Copy a folder recursively (skipping nothing: tests copy small repos).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// A private copy of the example repo in a temp dir.
pub fn example_copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    copy_dir(&example_repo(), &repo);
    (t, repo)
}

/// The `slipway` binary under test, with a clean environment.
pub fn slipway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway"));
    c.env_remove("SLIPWAY_AGE_IDENTITY")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    c
}

/// Run and capture, with stdin closed.
pub fn run(mut c: Command) -> Output {
    c.stdin(std::process::Stdio::null())
        .output()
        .expect("running slipway")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fail loudly when a tool the test needs is missing.
pub fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "required tool `{name}` is missing: run ./tests/run (it installs the Debian packages the tests need)"
    );
    PathBuf::from(text(&out.stdout).trim())
}

/// Put small stand-in FCOS and K3s artifacts into a state folder with `slipway artifacts import`
/// (FCOS 40.20240906.3.0, K3s v1.30.4+k3s1, as cluster-repo-example pins).
pub fn import_artifacts(dir: &Path, state: &Path) {
    for (name, body) in [
        ("kernel", "k"),
        ("initramfs.img", "i"),
        ("rootfs.img", "r"),
        ("metal.raw.xz", "m"),
        ("k3s", "#!/bin/sh\n"),
        ("install.sh", "#!/bin/sh\n"),
    ] {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let mut c = slipway();
    c.args(["artifacts", "import", "--state"]).arg(state);
    c.args(["--fcos-release", "40.20240906.3.0"]);
    for (flag, f) in [
        ("--kernel", "kernel"),
        ("--initramfs", "initramfs.img"),
        ("--rootfs", "rootfs.img"),
        ("--metal", "metal.raw.xz"),
    ] {
        c.arg(flag).arg(dir.join(f));
    }
    c.args(["--k3s-version", "v1.30.4+k3s1", "--k3s-binary"])
        .arg(dir.join("k3s"));
    c.arg("--k3s-install-script").arg(dir.join("install.sh"));
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `slipway render --node NODE` of `repo` with the demo identity and the given state folder.
pub fn render(repo: &Path, state: &Path, node: &str) -> Output {
    let mut c = slipway();
    c.args(["render", "--node", node, "--repo"])
        .arg(repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg("--state")
        .arg(state);
    run(c)
}
