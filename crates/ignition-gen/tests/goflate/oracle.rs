//! The Go oracle shared by the goflate and golden tests: a tiny stdlib-only Go program
//! (`oracle.go`) built once per test binary in a temporary GOPATH/GOCACHE with the network
//! shut off (`GOPROXY=off`, `GOTOOLCHAIN=local`, `GOFLAGS=-mod=mod`), fed framed inputs on
//! stdin.
//!
//! The port reproduces Go 1.7 to 1.26. Go 1.27 replaced the `compress/flate` encoder, so
//! an oracle built with Go 1.27 or later is refused with a clear message rather than
//! compared (see the module docs of `goflate.rs`).

#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const GO_SOURCE: &str = include_str!("oracle.go");

/// The built oracle binary and the Go version that built it.
pub struct Oracle {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    /// `go version` output, e.g. `go version go1.19.8 linux/amd64`.
    pub version: String,
}

fn find_go() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect())
        .unwrap_or_default();
    candidates.push(PathBuf::from("/usr/lib/go/bin/go"));
    candidates.push(PathBuf::from("/usr/local/go/bin/go"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Go toolchain is missing: these tests compare our gzip with Go's \
             compress/gzip byte for byte. Install the Debian package `golang-go` \
             (apt-get install -y golang-go)."
            )
        })
}

fn go_command(go: &Path, dir: &Path) -> Command {
    let mut c = Command::new(go);
    c.current_dir(dir)
        .env("GOPATH", dir.join("gopath"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0");
    c
}

/// Minor version of a `go version` line (`go1.19.8` -> 19).
fn minor(version: &str) -> Option<u32> {
    let v = version.split_whitespace().nth(2)?.strip_prefix("go1.")?;
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn build() -> Oracle {
    let go = find_go();
    let dir = tempfile::tempdir().expect("temp dir for the Go oracle");
    let out = go_command(&go, dir.path())
        .arg("version")
        .output()
        .expect("running `go version`");
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let m = minor(&version).unwrap_or_else(|| panic!("cannot parse `{version}`"));
    assert!(
        (7..=26).contains(&m),
        "the oracle Go is `{version}`, but goflate reproduces Go 1.7 to 1.26: Go 1.27 \
         replaced compress/flate (a port of klauspost/compress) and its BestCompression \
         output differs. Use a Go from 1.7 to 1.26 (Debian's golang-go is 1.19)."
    );
    std::fs::write(dir.path().join("main.go"), GO_SOURCE).unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        "module goflateoracle\n\ngo 1.17\n",
    )
    .unwrap();
    let bin = dir.path().join("oracle");
    let out = go_command(&go, dir.path())
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .output()
        .expect("running `go build`");
    assert!(
        out.status.success(),
        "building the Go oracle failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Oracle {
        _dir: dir,
        bin,
        version,
    }
}

/// The oracle, built on first use.
pub fn oracle() -> &'static Oracle {
    static ORACLE: OnceLock<Oracle> = OnceLock::new();
    ORACLE.get_or_init(build)
}

impl Oracle {
    /// Go's gzip (BestCompression, one Write, Close) of each input, in one process.
    pub fn gzip_all(&self, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut child = Command::new(&self.bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the Go oracle");
        let mut stdin = child.stdin.take().unwrap();
        let frames: Vec<u8> = inputs
            .iter()
            .flat_map(|i| {
                let mut f = (i.len() as u32).to_le_bytes().to_vec();
                f.extend_from_slice(i);
                f
            })
            .collect();
        // Write from another thread so a full stdout pipe cannot deadlock us.
        let writer = std::thread::spawn(move || {
            stdin.write_all(&frames).unwrap();
        });
        let mut raw = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut raw).unwrap();
        writer.join().unwrap();
        assert!(child.wait().unwrap().success(), "the Go oracle failed");
        let mut outs = Vec::with_capacity(inputs.len());
        let mut rest = &raw[..];
        while !rest.is_empty() {
            let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            outs.push(rest[4..4 + n].to_vec());
            rest = &rest[4 + n..];
        }
        assert_eq!(outs.len(), inputs.len(), "the Go oracle lost inputs");
        outs
    }

    /// Go's gzip of one input.
    pub fn gzip(&self, input: &[u8]) -> Vec<u8> {
        self.gzip_all(&[input.to_vec()]).remove(0)
    }
}
