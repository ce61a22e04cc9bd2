//! `slipway sim up | fault | down` through the real binary: a background fleet of
//! cluster-repo-example's five nodes (real sshd each, on 127.0.0.1) that `slipway facts`
//! reaches through the repository copy `sim up` writes. Needs root, openssh-server,
//! busybox-static and the `slipway-sim` binary (`cargo build -p slipway-fleet-sim`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::*;

/// Stops the fleet even when an assertion fails half-way.
struct Down(PathBuf);
impl Drop for Down {
    fn drop(&mut self) {
        let mut c = slipway();
        c.args(["sim", "down", "--state"]).arg(&self.0);
        let _ = run(c);
    }
}

fn facts(state: &Path) -> serde_json::Value {
    let mut c = slipway();
    c.args(["facts", "--output", "json", "--repo"])
        .arg(state.join("sim/repo"))
        .arg("--ssh-key")
        .arg(state.join("sim/client_key"))
        .arg("--identity")
        .arg(demo_identity());
    let out = run(c);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "facts printed no JSON ({e}): stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

fn reachability(v: &serde_json::Value) -> Vec<(String, String)> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or_default().to_string(),
                n["facts"]["reachability"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|st| st != "Z" && st != "X")
}

#[test]
fn sim_up_fault_down() {
    let sim_bin = Path::new(env!("CARGO_BIN_EXE_slipway"))
        .parent()
        .unwrap()
        .join("slipway-sim");
    assert!(
        sim_bin.is_file(),
        "{} is missing: build the simulator first (cargo build -p slipway-fleet-sim)",
        sim_bin.display()
    );
    let (t, repo) = example_copy();
    let state = t.path().join("state");

    let mut c = slipway();
    c.args(["sim", "up", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg("--state")
        .arg(&state);
    let out = run(c);
    let _down = Down(state.clone());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("sim/repo"), "{printed}");
    assert!(printed.contains("sim/client_key"), "{printed}");

    let key = state.join("sim/client_key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pid: u64 = std::fs::read_to_string(state.join("sim/pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid), "the fleet process outlives `sim up`");
    let ready: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("sim/ready.json")).unwrap()).unwrap();
    let ready = ready["nodes"].as_object().unwrap().clone();
    assert_eq!(ready.len(), 5);
    let sshd_pids: Vec<u64> = ready
        .values()
        .map(|n| n["sshd_pid"].as_u64().unwrap())
        .collect();
    let ports: Vec<u64> = ready
        .values()
        .map(|n| n["port"].as_u64().unwrap())
        .collect();
    // The copy logs in as root on loopback; the original repository is untouched.
    let copy = std::fs::read_to_string(state.join("sim/repo/nodes/worker1.yaml")).unwrap();
    assert!(
        copy.contains(&format!(
            "ssh_address: \"127.0.0.1:{}\"",
            ready["worker1"]["port"]
        )),
        "{copy}"
    );
    assert!(!std::fs::read_to_string(repo.join("nodes/worker1.yaml"))
        .unwrap()
        .contains("ssh_address"));

    let all = reachability(&facts(&state));
    assert_eq!(all.len(), 5, "{all:?}");
    for (node, r) in &all {
        assert_eq!(r, "reachable", "{node}: {all:?}");
    }

    // The real nodes' host keys never reach the disk: the simulator runs throwaway keys, and
    // the copy's secrets (pinned by `facts` above) hold those, encrypted.
    let decrypt = |file: &Path| {
        let mut c = slipway();
        c.args(["secrets", "decrypt", "--identity"])
            .arg(demo_identity())
            .arg(file);
        text(&run(c).stdout)
    };
    let body = |pem: &str| {
        pem.lines()
            .map(|l| l.trim().trim_start_matches("ssh_host_ed25519_key: |"))
            .filter(|l| l.len() > 40 && !l.contains("PRIVATE KEY"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut stack = vec![state.clone()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::metadata(&p).is_ok_and(|m| m.len() < 1 << 20) {
                // Key files are tiny; the node roots' copied binaries are not worth reading.
                files.push(
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned(),
                );
            }
        }
    }
    for node in ["lenovo1", "worker1"] {
        let real = body(&decrypt(&repo.join(format!("secrets/nodes/{node}.age"))));
        let simulated = body(&decrypt(
            &state.join(format!("sim/repo/secrets/nodes/{node}.age")),
        ));
        assert!(!real.is_empty() && !simulated.is_empty());
        assert_ne!(
            real, simulated,
            "{node}: the simulator uses the real host key"
        );
        // Lines every ed25519 key shares (the format header) say nothing: check the others.
        for line in real.iter().filter(|l| !simulated.contains(l)) {
            assert!(
                !files.iter().any(|f| f.contains(line.as_str())),
                "{node}'s real host key is on disk under the state folder"
            );
        }
    }

    let mut c = slipway();
    c.args([
        "sim",
        "fault",
        "--node",
        "worker1",
        "ssh-refuses",
        "--state",
    ])
    .arg(&state);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (node, r) in reachability(&facts(&state)) {
        if node == "worker1" {
            assert_ne!(r, "reachable", "worker1 refuses SSH now");
        } else {
            assert_eq!(r, "reachable", "{node}");
        }
    }

    let mut c = slipway();
    c.args([
        "sim",
        "fault",
        "--node",
        "worker1",
        "ssh-refuses",
        "--clear",
        "--state",
    ])
    .arg(&state);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (node, r) in reachability(&facts(&state)) {
        assert_eq!(r, "reachable", "{node} after clearing the fault");
    }

    // An unknown node is an error, reported by name.
    let mut c = slipway();
    c.args([
        "sim",
        "fault",
        "--node",
        "nope",
        "k3s-never-ready",
        "--state",
    ])
    .arg(&state);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));

    let mut c = slipway();
    c.args(["sim", "down", "--state"]).arg(&state);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!state.join("sim/pid").exists());
    assert!(!alive(pid));
    for p in sshd_pids {
        assert!(!alive(p), "sshd {p} outlived `sim down`");
    }
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
            "port {port} still accepts connections"
        );
    }
}
