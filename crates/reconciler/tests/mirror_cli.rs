//! `slipway mirror` through the real binary against a stand-in download site on 127.0.0.1:
//! FCOS stream metadata in the upstream format, small fake artifacts, a K3s release folder
//! with its `sha256sum-amd64.txt`. The mirrored store then renders; a corrupted artifact
//! fails the command and leaves the index as it was.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use sha2::{Digest, Sha256};

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A tiny HTTP/1.1 server for GET on 127.0.0.1; 404 for unknown paths. Returns its base URL.
fn serve(files: Files) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let files = Arc::clone(&files);
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body = files.lock().unwrap().get(&path).cloned();
                let _ = match body {
                    Some(b) => s
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|()| s.write_all(&b)),
                    None => s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            });
        }
    });
    base
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Publish an FCOS release at `/streams/stable.json`; `corrupt` serves a kernel whose bytes
/// do not match the digest the stream promises.
fn publish_fcos(files: &Files, base: &str, release: &str, corrupt: bool) {
    let mut f = files.lock().unwrap();
    let mut entry = |name: &str, body: &[u8]| -> serde_json::Value {
        let path = format!("/fcos/{release}/{name}");
        let digest = sha(body);
        let served = if corrupt && name.contains("kernel") {
            b"not the kernel".to_vec()
        } else {
            body.to_vec()
        };
        f.insert(path.clone(), served);
        f.insert(format!("{path}.sig"), format!("sig of {name}").into_bytes());
        serde_json::json!({
            "location": format!("{base}{path}"),
            "signature": format!("{base}{path}.sig"),
            "sha256": digest,
        })
    };
    let stream = serde_json::json!({
        "stream": "stable",
        "metadata": {"last-modified": "2025-01-21T18:32:44Z"},
        "architectures": {"x86_64": {"artifacts": {"metal": {
            "release": release,
            "formats": {
                "pxe": {
                    "kernel": entry(&format!("fedora-coreos-{release}-live-kernel-x86_64"), format!("kernel {release}").as_bytes()),
                    "initramfs": entry(&format!("fedora-coreos-{release}-live-initramfs.x86_64.img"), b"initramfs"),
                    "rootfs": entry(&format!("fedora-coreos-{release}-live-rootfs.x86_64.img"), b"rootfs"),
                },
                "raw.xz": {"disk": entry(&format!("fedora-coreos-{release}-metal.x86_64.raw.xz"), b"metal image")},
            }
        }}}}
    });
    f.insert(
        "/streams/stable.json".into(),
        serde_json::to_vec(&stream).unwrap(),
    );
}

/// A K3s release folder (the version's `+` is percent-encoded in the path) and a script.
fn publish_k3s(files: &Files) {
    let mut f = files.lock().unwrap();
    let bin = b"#!/bin/sh\necho k3s\n".to_vec();
    let script = b"#!/bin/sh\necho install\n".to_vec();
    f.insert(
        "/k3s/v1.30.4%2Bk3s1/sha256sum-amd64.txt".into(),
        format!(
            "{}  k3s\n{}  k3s-airgap-images-amd64.tar\n{}  install.sh\n",
            sha(&bin),
            sha(b"x"),
            sha(&script)
        )
        .into_bytes(),
    );
    f.insert("/k3s/v1.30.4%2Bk3s1/k3s".into(), bin);
    f.insert("/scripts/install.sh".into(), script);
}

fn mirror(repo: &Path, state: &Path, base: &str) -> std::process::Output {
    let mut c = slipway();
    c.arg("mirror")
        .arg("--repo")
        .arg(repo)
        .arg("--state")
        .arg(state)
        .arg("--k3s-base-url")
        .arg(format!("{base}/k3s"))
        .arg("--k3s-install-script-url")
        .arg(format!("{base}/scripts/install.sh"));
    run(c)
}

fn point_stream(repo: &Path, base: &str) {
    let p = repo.join("cluster.yaml");
    let s = std::fs::read_to_string(&p).unwrap().replace(
        "  stream: stable\n",
        &format!("  stream: stable\n  stream_url: {base}/streams/stable.json\n"),
    );
    std::fs::write(p, s).unwrap();
}

#[test]
fn mirrors_what_cluster_yaml_asks_for_and_the_store_renders() {
    let (t, repo) = example_copy();
    let files: Files = Arc::default();
    let base = serve(Arc::clone(&files));
    publish_fcos(&files, &base, "40.20240906.3.0", false);
    publish_k3s(&files);
    point_stream(&repo, &base);
    let state = t.path().join("state");

    let out = mirror(&repo, &state, &base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("mirrored FCOS 40.20240906.3.0"), "{stdout}");
    assert!(stdout.contains("mirrored K3s v1.30.4+k3s1"), "{stdout}");

    let mut c = slipway();
    c.args(["artifacts", "list", "--state"]).arg(&state);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    assert!(
        list.contains(&format!(
            "fcos 40.20240906.3.0: kernel, initramfs, rootfs, metal {}\n",
            sha(b"metal image")
        )),
        "{list}"
    );
    assert!(
        list.contains(&format!(
            "k3s v1.30.4+k3s1: binary {}, install script {}",
            sha(b"#!/bin/sh\necho k3s\n"),
            sha(b"#!/bin/sh\necho install\n")
        )),
        "{list}"
    );
    // The verified files are in the store under their digests, the signature beside the image.
    let store = state.join("store");
    assert_eq!(
        std::fs::read(
            store
                .join(sha(b"rootfs"))
                .join("fedora-coreos-40.20240906.3.0-live-rootfs.x86_64.img")
        )
        .unwrap(),
        b"rootfs"
    );
    assert!(store
        .join(sha(b"metal image"))
        .join("fedora-coreos-40.20240906.3.0-metal.x86_64.raw.xz.sig")
        .is_file());

    let out = render(&repo, &state, "worker1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ign = text(&out.stdout);
    assert!(
        ign.contains(&sha(b"#!/bin/sh\necho k3s\n")),
        "the rendered Ignition pins the mirrored k3s binary"
    );
}

#[test]
fn a_corrupted_artifact_fails_and_leaves_the_index_unchanged() {
    let (t, repo) = example_copy();
    let files: Files = Arc::default();
    let base = serve(Arc::clone(&files));
    publish_fcos(&files, &base, "40.20240906.3.0", false);
    publish_k3s(&files);
    point_stream(&repo, &base);
    let state = t.path().join("state");
    let out = mirror(&repo, &state, &base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = std::fs::read(state.join("artifacts.json")).unwrap();

    // The stream moves on to a release whose kernel download is corrupted.
    publish_fcos(&files, &base, "41.20250105.3.0", true);
    let out = mirror(&repo, &state, &base);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("fedora-coreos-41.20250105.3.0-live-kernel-x86_64"),
        "{err}"
    );
    assert!(err.contains("sha256") || err.contains("digest"), "{err}");
    assert_eq!(std::fs::read(state.join("artifacts.json")).unwrap(), before);
    // Nothing unverified reached the store.
    assert!(!state
        .join("store")
        .join(sha(b"kernel 41.20250105.3.0"))
        .exists());
}

#[test]
fn an_install_script_url_without_a_file_name_fails_before_downloading() {
    let (t, repo) = example_copy();
    let state = t.path().join("state");
    // Port 9 on loopback: nothing must be fetched anyway.
    point_stream(&repo, "http://127.0.0.1:9");
    let mut c = slipway();
    c.arg("mirror")
        .arg("--repo")
        .arg(&repo)
        .arg("--state")
        .arg(&state)
        .args(["--k3s-base-url", "http://127.0.0.1:9/k3s"])
        .args(["--k3s-install-script-url", "http://127.0.0.1:9/"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("has no file name"), "{err}");
    assert!(!state.join("artifacts.json").exists());
}

#[test]
fn a_k3s_channel_without_a_version_fails_clearly() {
    let (t, repo) = example_copy();
    let p = repo.join("cluster.yaml");
    let s = std::fs::read_to_string(&p)
        .unwrap()
        .replace("  version: v1.30.4+k3s1 ", "  channel: stable ");
    std::fs::write(&p, s).unwrap();
    point_stream(&repo, "http://127.0.0.1:9");
    let mut c = slipway();
    c.arg("mirror")
        .arg("--repo")
        .arg(&repo)
        .arg("--state")
        .arg(t.path().join("state"))
        .args(["--k3s-base-url", "http://127.0.0.1:9/k3s"])
        .args(["--k3s-install-script-url", "http://127.0.0.1:9/install.sh"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("channel `stable`") && err.contains("--k3s-version"),
        "{err}"
    );
}
