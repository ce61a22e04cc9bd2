//! Helpers the daemon and rollout benchmarks share.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Copy a folder recursively.
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

/// Run a command that must succeed; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `slipway` binary under benchmark.
pub fn slipway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway"));
    c.env("NO_COLOR", "1");
    c
}

/// git in `repo` with a private HOME and a fixed identity.
pub fn git(repo: &Path, home: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@lab.example",
        ]);
    c
}

/// A copy of cluster-repo-example in `dest` with FCOS pinned: a daemon following the stream
/// would fetch the official stream metadata, and benchmarks only ever dial loopback.
pub fn pinned_example_copy(dest: &Path) {
    copy_dir(&workspace().join("cluster-repo-example"), dest);
    let cluster_yaml = dest.join("cluster.yaml");
    let pinned = std::fs::read_to_string(&cluster_yaml)
        .unwrap()
        .replace("  # release: 40.20240906.3.0", "  release: 40.20240906.3.0");
    assert!(
        pinned.contains("\n  release: 40.20240906.3.0"),
        "the example's pin line moved"
    );
    std::fs::write(&cluster_yaml, pinned).unwrap();
}

/// Stand-in FCOS 40.20240906.3.0 and K3s v1.30.4+k3s1 files (written under `dir`) imported
/// into the state folder with `slipway artifacts import`.
pub fn import_stand_in_artifacts(dir: &Path, state: &Path) {
    std::fs::create_dir_all(dir).unwrap();
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
    run(slipway()
        .args(["artifacts", "import", "--state"])
        .arg(state)
        .args(["--fcos-release", "40.20240906.3.0", "--kernel"])
        .arg(dir.join("kernel"))
        .arg("--initramfs")
        .arg(dir.join("initramfs.img"))
        .arg("--rootfs")
        .arg(dir.join("rootfs.img"))
        .arg("--metal")
        .arg(dir.join("metal.raw.xz"))
        .args(["--k3s-version", "v1.30.4+k3s1", "--k3s-binary"])
        .arg(dir.join("k3s"))
        .arg("--k3s-install-script")
        .arg(dir.join("install.sh")));
}

/// A fresh ed25519 key pair at `path` (+ `.pub`), made by ssh-keygen.
pub fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path));
}
