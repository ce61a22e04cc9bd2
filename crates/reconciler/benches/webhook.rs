//! Webhook to plan: how long after a forge's push webhook `slipway serve` has fetched the new
//! commit, verified its signature, planned it and exported the plan in `/metrics`.
//!
//! The repository is cluster-repo-example with every node's SSH address pointing at a closed
//! port on 127.0.0.1 (nothing else is ever dialled), committed and signed (ssh-keygen + git);
//! the daemon runs suspended (it plans, never rolls out) with a webhook secret. Ten times: a
//! new node file is committed and signed (not timed), then the clock starts, a GitHub-style
//! `POST /hooks/git` is sent (`X-GitHub-Event: push`, `X-Hub-Signature-256: sha256=<HMAC of
//! the body>`), and the clock stops when `/metrics` shows both
//! `slipway_fetched_commit{commit="<new>"}` and the plan with the new node to install.
//! `/metrics` is polled every 5 ms, which bounds the resolution.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    git, import_stand_in_artifacts, keygen, pinned_example_copy, run, slipway, workspace,
};

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const ROUNDS: usize = 10;
const SECRET: &str = "bench-webhook-secret";

/// One HTTP/1.1 request on loopback; (status, whole response).
fn request(addr: &str, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some((out.split(' ').nth(1)?.parse().ok()?, out))
}

fn metrics(api: &str) -> Option<String> {
    match request(
        api,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"",
    ) {
        Some((200, body)) => Some(body),
        _ => None,
    }
}

/// Whether the scrape shows `commit` fetched and a plan installing `install` nodes.
fn shows(body: &str, commit: &str, install: usize) -> bool {
    let fetched = body
        .lines()
        .any(|l| l.starts_with(&format!("slipway_fetched_commit{{commit=\"{commit}\"}} 1")));
    let planned = body
        .lines()
        .any(|l| l == format!("slipway_plan_actions{{action=\"install\"}} {install}"));
    fetched && planned
}

/// Wait until the scrape shows `commit` planned with `install` installs; the time it took.
fn wait_for(api: &str, commit: &str, install: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if metrics(api).is_some_and(|b| shows(&b, commit, install)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "serve never planned commit {commit} with {install} installs:\n{}",
            metrics(api).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn push_hook(api: &str, commit: &str) -> u16 {
    let body = format!(
        "{{\"ref\":\"refs/heads/main\",\"before\":\"0000000000000000000000000000000000000000\",\"after\":\"{commit}\",\"repository\":{{\"full_name\":\"lab/cluster\"}},\"pusher\":{{\"name\":\"bench\"}}}}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let head = format!(
        "POST /hooks/git HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nx-github-event: push\r\nx-github-delivery: bench-{commit}\r\nx-hub-signature-256: sha256={sig}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    request(api, &head, body.as_bytes()).unwrap().0
}

fn add_node(repo: &Path, i: usize) {
    std::fs::write(
        repo.join(format!("nodes/worker{i}.yaml")),
        format!(
            "hostname: worker{i}.lab.home.example.net\nrole: agent\nmac_address: \"88:ae:dd:03:00:{i:02x}\"\nnetwork:\n  address: 192.168.26.{}/24\n  gateway: 192.168.26.1\n  dns: [192.168.26.1]\nssh_address: \"127.0.0.1:9\"\n",
            100 + i
        ),
    )
    .unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("webhook: bench");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let identity = workspace().join("cluster-repo-example/.slipway/DEMO-ONLY-age-identity.txt");
    let repo = t.path().join("repo");
    pinned_example_copy(&repo);
    // Every node answers nothing: a closed loopback port.
    for e in std::fs::read_dir(repo.join("nodes")).unwrap() {
        let p = e.unwrap().path();
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str("ssh_address: \"127.0.0.1:9\"\n");
        std::fs::write(&p, s).unwrap();
    }
    let key = t.path().join("signer");
    keygen(&key);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = t.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("bench@lab.example namespaces=\"git\" {}", public.trim()),
    )
    .unwrap();
    let commit = |message: &str| -> String {
        run(slipway()
            .args(["secrets", "generate", "--repo"])
            .arg(&repo)
            .arg("--identity")
            .arg(&identity));
        run(git(&repo, &home).args(["add", "-A"]));
        run(git(&repo, &home)
            .args(["-c", "gpg.format=ssh", "-c"])
            .arg(format!("user.signingkey={}", key.display()))
            .args(["commit", "-q", "-S", "-m", message]));
        run(git(&repo, &home).args(["rev-parse", "HEAD"]))
            .trim()
            .to_string()
    };
    run(git(&repo, &home).args(["init", "-q", "-b", "main"]));
    let mut head = commit("five nodes");

    let state = t.path().join("state");
    import_stand_in_artifacts(&t.path().join("artifacts"), &state);
    let node_key = t.path().join("node_key");
    keygen(&node_key);
    let secret_file = t.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (boot, api) = (free(), free());
    let config = t.path().join("slipway.toml");
    std::fs::write(
        &config,
        format!(
            "[repo]\nurl = \"{}\"\nallowed_signers = \"{}\"\n[state]\ndir = \"{}\"\n[secrets]\nage_identity_file = \"{}\"\nnode_ssh_key_file = \"{}\"\nwebhook_secret_file = \"{}\"\n[http]\nboot_listen = \"{boot}\"\napi_listen = \"{api}\"\n[reconcile]\nsuspended = true\n",
            repo.display(),
            allowed.display(),
            state.display(),
            identity.display(),
            node_key.display(),
            secret_file.display()
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
    // Ready, and the first commit planned: five nodes, every one to install.
    wait_for(&api, &head, 5, Duration::from_secs(300));

    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let i = 3 + round;
        add_node(&repo, i);
        head = commit(&format!("add worker{i}"));
        let start = Instant::now();
        assert_eq!(push_hook(&api, &head), 202, "the webhook was not accepted");
        wait_for(&api, &head, 5 + round + 1, Duration::from_secs(120));
        samples.push(start.elapsed());
    }
    // A forged signature is refused and plans nothing.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"not the secret").unwrap();
    mac.update(b"{}");
    let forged = format!(
        "POST /hooks/git HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-github-event: push\r\nx-hub-signature-256: sha256={}\r\ncontent-length: 2\r\n\r\n",
        hex::encode(mac.finalize().into_bytes())
    );
    assert_eq!(request(&api, &forged, b"{}").unwrap().0, 401);
    let _ = child.kill();
    let _ = child.wait();

    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (min, median, max) = (
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    );
    println!("\nwebhook to plan, {ROUNDS} signed pushes, 6-15 nodes (all unreachable), suspended");
    println!("| measurement | min | median | max |");
    println!("|---|---|---|---|");
    println!("| POST /hooks/git → fetched, verified, planned, in /metrics | {min:.0} ms | {median:.0} ms | {max:.0} ms |");
    println!("bench-row\twebhook\tpush webhook to plan in /metrics, min\t{min:.0}\tms\t-");
    println!("bench-row\twebhook\tpush webhook to plan in /metrics, median\t{median:.0}\tms\t-");
    println!("bench-row\twebhook\tpush webhook to plan in /metrics, max\t{max:.0}\tms\t-");
}
