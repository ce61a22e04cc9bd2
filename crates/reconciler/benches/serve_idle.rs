//! `slipway serve` at rest: resident memory and CPU over 60 s with a 100-node inventory, and
//! the stripped release binary's size. Targets: ≤ 25 MB RSS, about 0 % CPU, ≤ 20 MB binary.
//!
//! The inventory is cluster-repo-example plus 95 agents, every node's SSH address pointing at
//! a closed port on 127.0.0.1 (nothing else is ever dialled), committed and signed; the
//! daemon fetches it, plans once (every node unreachable), then idles with the default
//! configuration (fetch every minute, plan every 10 minutes), serving nothing (suspended: with every node unreachable the plan would install
//! them all, and a rollout waiting for machines to be powered on is not idle). RSS is read from /proc after the first plan; CPU is the
//! process's user+system time over the next 60 s.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    git, import_stand_in_artifacts, keygen, pinned_example_copy, run, slipway, workspace,
};

use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::time::{Duration, Instant};

const NODES: usize = 100;

fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some((out.split(' ').nth(1)?.parse().ok()?, out))
}

/// A `/proc/PID/status` line's value in bytes (`VmRSS:   1234 kB`).
fn status_bytes(status: &str, key: &str) -> u64 {
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

/// (RSS bytes, user+system clock ticks) of a process; prints how the RSS splits.
fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status_bytes(&status, "VmRSS:");
    println!(
        "RSS {:.1} MB: heap and other anonymous {:.1} MB, mapped files (binary, libraries) {:.1} MB",
        rss as f64 / 1e6,
        status_bytes(&status, "RssAnon:") as f64 / 1e6,
        status_bytes(&status, "RssFile:") as f64 / 1e6,
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0], utime is field 14 overall → [11], stime → [12].
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    (rss, ticks)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("serve_idle: bench");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let identity = workspace().join("cluster-repo-example/.slipway/DEMO-ONLY-age-identity.txt");
    let repo = t.path().join("repo");
    pinned_example_copy(&repo);
    for i in 3..=(NODES - 3) {
        std::fs::write(
            repo.join(format!("nodes/worker{i}.yaml")),
            format!(
                "hostname: worker{i}.lab.home.example.net\nrole: agent\nmac_address: \"88:ae:dd:03:{:02x}:{:02x}\"\nnetwork:\n  address: 10.20.{}.{}/16\n  gateway: 10.20.0.1\n  dns: [10.20.0.1]\n",
                i / 256,
                i % 256,
                i / 200,
                1 + i % 200
            ),
        )
        .unwrap();
    }
    // Every node answers nothing: a closed loopback port.
    for e in std::fs::read_dir(repo.join("nodes")).unwrap() {
        let p = e.unwrap().path();
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str("ssh_address: \"127.0.0.1:9\"\n");
        std::fs::write(&p, s).unwrap();
    }
    run(slipway()
        .args(["secrets", "generate", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(&identity));
    let key = t.path().join("signer");
    keygen(&key);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = t.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("bench@lab.example namespaces=\"git\" {}", public.trim()),
    )
    .unwrap();
    run(git(&repo, &home).args(["init", "-q", "-b", "main"]));
    run(git(&repo, &home).args(["add", "-A"]));
    run(git(&repo, &home)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("user.signingkey={}", key.display()))
        .args(["commit", "-q", "-S", "-m", "100 nodes"]));

    let state = t.path().join("state");
    import_stand_in_artifacts(&t.path().join("artifacts"), &state);
    let node_key = t.path().join("node_key");
    keygen(&node_key);
    let boot = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = t.path().join("slipway.toml");
    std::fs::write(
        &config,
        format!(
            "[repo]\nurl = \"{}\"\nallowed_signers = \"{}\"\n[state]\ndir = \"{}\"\n[secrets]\nage_identity_file = \"{}\"\nnode_ssh_key_file = \"{}\"\n[http]\nboot_listen = \"{boot}\"\napi_listen = \"{api}\"\n[reconcile]\nsuspended = true\n",
            repo.display(),
            allowed.display(),
            state.display(),
            identity.display(),
            node_key.display()
        ),
    )
    .unwrap();
    let mut child = slipway()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let api = api.to_string();
    let start = Instant::now();
    // Ready, and the first plan exported (every node unreachable: blocked or install).
    let mut before_plan = false;
    loop {
        if let Some((200, body)) = get(&api, "/metrics") {
            if !before_plan {
                before_plan = true;
                print!("before the first plan: ");
                sample(child.id());
            }
            if body.contains("slipway_plan_actions") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "serve never planned"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    let (rss0, ticks0) = sample(pid);
    let window = Duration::from_secs(
        std::env::var("SLIPWAY_BENCH_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    std::thread::sleep(window);
    let (rss1, ticks1) = sample(pid);
    let _ = child.kill();
    let _ = child.wait();
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (ticks1 - ticks0) as f64 / hz / window.as_secs_f64() * 100.0;
    let rss_mb = rss0.max(rss1) as f64 / 1e6;
    let bin = std::fs::metadata(env!("CARGO_BIN_EXE_slipway"))
        .unwrap()
        .len() as f64
        / 1e6;
    println!("\nslipway serve idle, {NODES}-node inventory, 60 s");
    println!("| measurement | value | target |");
    println!("|---|---|---|");
    println!("| resident memory (max of start, end) | {rss_mb:.1} MB | ≤ 25 MB |");
    println!("| CPU over 60 s idle | {cpu:.2} % | ≈ 0 % |");
    println!("| stripped release binary | {bin:.1} MB | ≤ 20 MB |");
    println!("bench-row\tserve\tidle RSS, {NODES} nodes\t{rss_mb:.1}\tMB\t<= 25");
    println!("bench-row\tserve\tidle CPU over 60 s\t{cpu:.2}\t%\t~0");
    println!("bench-row\tserve\tstripped binary\t{bin:.1}\tMB\t<= 20");
}
