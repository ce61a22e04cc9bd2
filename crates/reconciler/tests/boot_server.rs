//! `slipway artifacts import`, `slipway render` and `slipway boot-server` through the real
//! binary on 127.0.0.1: an armed node gets the installer and its Ignition exactly once (the
//! same bytes `render` prints), then falls back to localboot; nothing secret reaches disk.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use common::*;

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    // A server may reset after its last byte; what arrived is the response.
    let _ = s.read_to_end(&mut bytes);
    let buf = String::from_utf8_lossy(&bytes).into_owned();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response to GET {path}: {:?}", bytes));
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn armed_node_gets_its_ignition_once_then_localboot() {
    let (t, repo) = example_copy();
    // Nodes would reach the boot server here; this test fetches from the bound address only.
    let cluster = std::fs::read_to_string(repo.join("cluster.yaml"))
        .unwrap()
        .replace("http://192.168.26.2:8080", "http://127.0.0.1:8080");
    std::fs::write(repo.join("cluster.yaml"), cluster).unwrap();
    let state = t.path().join("state");
    import_artifacts(t.path(), &state);

    let rendered = render(&repo, &state, "worker1");
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let rendered = text(&rendered.stdout);
    assert!(rendered.starts_with("{\"ignition\":{\"version\":\"3.3.0\"}"));

    let mut c = slipway();
    c.args([
        "boot-server",
        "--listen",
        "127.0.0.1:0",
        "--arm",
        "worker1",
        "--repo",
    ])
    .arg(&repo)
    .arg("--identity")
    .arg(demo_identity())
    .arg("--state")
    .arg(&state)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut server = Server(c.spawn().unwrap());
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first.trim().rsplit("http://").next().unwrap().to_string();
    assert!(first.starts_with("serving generation "), "{first}");

    let (code, body) = http_get(&addr, "/healthz");
    assert_eq!(code, 200, "{body}");
    let (code, script) = http_get(&addr, "/ipxe?mac=88-AE-DD-02-00-01");
    assert_eq!(code, 200);
    assert!(script.starts_with("#!ipxe"), "{script}");
    for karg in [
        "coreos.inst.install_dev=/dev/disk/by-id/nvme-Samsung_SSD_980_500GB",
        "coreos.inst.save_partlabel=var",
        "ignition.firstboot",
        "ignition.platform.id=metal",
        "coreos.inst.insecure",
    ] {
        assert!(script.contains(karg), "{karg} missing: {script}");
    }
    let url = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("coreos.inst.ignition_url="))
        .unwrap();
    let path = url.strip_prefix("http://127.0.0.1:8080").unwrap();
    assert!(path.starts_with("/ignition/worker1?token="));

    let (code, ignition) = http_get(&addr, path);
    assert_eq!(code, 200);
    assert_eq!(
        ignition.trim_end(),
        rendered.trim_end(),
        "served Ignition differs from `slipway render`"
    );
    let (code, _) = http_get(&addr, path);
    assert_eq!(code, 403, "a token works once");
    let (_, again) = http_get(&addr, "/ipxe?mac=88:ae:dd:02:00:01");
    assert!(!again.contains("coreos.inst"), "no reinstall loop: {again}");
    let (_, unarmed) = http_get(&addr, "/ipxe?mac=88-ae-dd-01-00-01");
    assert!(
        !unarmed.contains("coreos.inst"),
        "lenovo1 was not armed: {unarmed}"
    );
    let (_, unknown) = http_get(&addr, "/ipxe?mac=02-00-00-00-00-99");
    assert!(unknown.starts_with("#!ipxe") && !unknown.contains("coreos.inst"));
    drop(server);

    // Nothing secret on disk: the state folder holds no token line and no host key.
    let token_line = rendered_token(&rendered);
    let mut stack = vec![state.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let s = String::from_utf8_lossy(&bytes);
                assert!(!s.contains(&token_line), "token on disk in {}", p.display());
                assert!(
                    !s.contains("OPENSSH PRIVATE KEY"),
                    "host key on disk in {}",
                    p.display()
                );
            }
        }
    }
}

/// The cluster's K3s token (the value the rendered config carries).
fn rendered_token(ignition: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(ignition).unwrap();
    let files = v["storage"]["files"].as_array().unwrap();
    assert!(files
        .iter()
        .any(|f| f["path"] == "/etc/rancher/k3s/config.yaml"));
    let out = run({
        let mut c = slipway();
        c.args(["secrets", "decrypt", "--identity"])
            .arg(demo_identity())
            .arg(example_repo().join("secrets/cluster.age"));
        c
    });
    let plain = text(&out.stdout);
    plain
        .trim()
        .trim_start_matches("k3s_token: ")
        .trim_matches('"')
        .to_string()
}

#[test]
fn a_bad_repository_publishes_nothing() {
    let (t, repo) = example_copy();
    let state = t.path().join("state");
    import_artifacts(t.path(), &state);
    let p = repo.join("nodes/worker1.yaml");
    std::fs::write(
        &p,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("role: agent", "role: worker"),
    )
    .unwrap();
    let mut c = slipway();
    c.args(["boot-server", "--listen", "127.0.0.1:0", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg("--state")
        .arg(&state);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nodes/worker1.yaml:3:7: error: unknown variant `worker`"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !state.join("generations").exists(),
        "a generation was published from a bad repo"
    );
}

#[test]
fn render_without_mirrored_artifacts_says_how_to_fix_it() {
    let (t, repo) = example_copy();
    let out = render(&repo, &t.path().join("empty"), "worker1");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("in the artifact store: run `slipway mirror` or `slipway artifacts import`"),
        "{}",
        text(&out.stderr)
    );
}
