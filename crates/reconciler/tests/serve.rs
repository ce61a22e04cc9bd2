//! `slipway serve` end to end: the daemon follows a signed branch of a lab repository, keeps a
//! simulated fleet (real sshd per node, real Ignition, Slipway's boot server) converged,
//! waits for maintenance windows (injectable clock), shares its FleetLock with a client
//! speaking Zincati's protocol byte for byte, follows an FCOS stream served on loopback, and
//! never retries a release that failed. Metrics are scraped over HTTP and parsed.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use slipway::lab::{edit_yaml, free_loopback_port, Lab, LabOptions};
use slipway_fleet_sim::{Fault, NetbootOutcome};

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

/// Wait for `f` to give a value (generous limit: this is not a timing test).
fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Signing {
    home: PathBuf,
    key: PathBuf,
    allowed: PathBuf,
}

impl Signing {
    fn new(dir: &Path) -> Signing {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let key = dir.join("admin_key");
        let out = Command::new(require_tool("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "admin", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let allowed = dir.join("allowed_signers");
        std::fs::write(
            &allowed,
            format!("admin@lab.example namespaces=\"git\" {}\n", public.trim()),
        )
        .unwrap();
        Signing { home, key, allowed }
    }

    /// Commit every change of the lab repository, signed.
    fn commit(&self, lab: &Lab, message: &str) -> String {
        lab.commit(message).unwrap();
        let out = Command::new(require_tool("git"))
            .current_dir(&lab.repo)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                "user.name=Admin",
                "-c",
                "user.email=admin@lab.example",
            ])
            .args(["-c", "gpg.format=ssh", "-c"])
            .arg(format!("user.signingkey={}", self.key.display()))
            .args(["commit", "-q", "--amend", "--no-edit", "-S"])
            .output()
            .unwrap();
        assert!(out.status.success(), "signing: {}", text(&out.stderr));
        let head = Command::new("git")
            .current_dir(&lab.repo)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        text(&head.stdout).trim().to_string()
    }
}

struct Daemon {
    child: Child,
    api: SocketAddr,
    log: PathBuf,
    /// What the daemon told "systemd" (its `NOTIFY_SOCKET`).
    systemd: std::os::unix::net::UnixDatagram,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(lab: &Lab, signing: &Signing, fake_now: Option<&str>) -> Daemon {
        Daemon::start_with(lab, signing, fake_now, None)
    }

    fn start_with(
        lab: &Lab,
        signing: &Signing,
        fake_now: Option<&str>,
        notify: Option<&str>,
    ) -> Daemon {
        let api = free_loopback_port().unwrap();
        let config = lab.dir.join("slipway.toml");
        std::fs::write(
            &config,
            format!(
                r#"[repo]
url = "{repo}"
branch = "main"
poll_interval = "5s"
allowed_signers = "{allowed}"

[state]
dir = "{state}"

[secrets]
age_identity_file = "{identity}"
node_ssh_key_file = "{key}"

[http]
boot_listen = "{boot}"
api_listen = "{api}"

[reconcile]
interval = "2s"

[log]
format = "json"
{notify}"#,
                repo = lab.repo.display(),
                allowed = signing.allowed.display(),
                state = lab.state.display(),
                identity = demo_identity().display(),
                key = lab.client_key.display(),
                boot = lab.boot_listen,
                notify = notify
                    .map(|u| format!("\n[notify]\nwebhook_url = \"{u}\"\n"))
                    .unwrap_or_default(),
            ),
        )
        .unwrap();
        let log = lab.dir.join(format!("serve-{}.log", api.port()));
        let mut c = slipway();
        c.args(["--log-format", "json", "serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(lab.dir.join("serve.stdout")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(t) = fake_now {
            c.env("SLIPWAY_FAKE_NOW", t);
        }
        // Stand in for systemd: Type=notify's socket, and a 10 s watchdog.
        let socket = lab.dir.join(format!("notify-{}.sock", api.port()));
        let systemd = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
        systemd
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        c.env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "10000000");
        let child = c.spawn().unwrap();
        let d = Daemon {
            child,
            api,
            log,
            systemd,
        };
        eventually("the daemon to be ready", Duration::from_secs(60), || {
            (http(d.api, "GET", "/readyz", &[], "").map(|r| r.0) == Some(200)).then_some(())
        });
        d
    }

    /// The next message the daemon sent to "systemd".
    fn systemd_says(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .systemd
            .recv(&mut buf)
            .expect("a message on NOTIFY_SOCKET");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Wait for a message on NOTIFY_SOCKET containing `what`.
    fn wait_systemd(&self, what: &str) {
        for _ in 0..200 {
            if self.systemd_says().contains(what) {
                return;
            }
        }
        panic!("the daemon never told systemd {what}");
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let Some((status, body)) = http(self.api, "GET", "/metrics", &[], "") else {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!("scraping /metrics failed; the daemon's log ends with:\n{tail:#?}");
        };
        assert_eq!(status, 200);
        parse_metrics(&body)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        eventually("the daemon to stop", Duration::from_secs(120), || {
            self.child.try_wait().unwrap()
        })
    }
}

/// One HTTP/1.1 request on loopback; `None` when nothing answers.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, dechunk(&body)))
}

/// Undo chunked transfer encoding when present (axum chunks some bodies).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// `series{labels} value` lines into a map (comments skipped).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        m.insert(series.to_string(), value.parse::<f64>().expect("a number"));
    }
    m
}

fn series(m: &BTreeMap<String, f64>, prefix: &str) -> Vec<(String, f64)> {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn has(m: &BTreeMap<String, f64>, name: &str, label: &str) -> bool {
    m.iter()
        .any(|(k, v)| k.starts_with(name) && k.contains(label) && *v > 0.0)
}

/// A notification webhook receiver on loopback: every POSTed JSON body.
fn webhook_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slipway", listener.local_addr().unwrap());
    let got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body by content-length.
            let (head_end, len) = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text[..i]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    break (Some(i + 4), len);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + len {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            if let Ok(v) = serde_json::from_slice(&buf[start..(start + len).min(buf.len())]) {
                sink.lock().unwrap().push(v);
            }
            let _ = conn.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (url, got)
}

fn installs(lab: &Lab, node: &str) -> usize {
    lab.fleet
        .node(node)
        .unwrap()
        .netboot_log()
        .unwrap()
        .iter()
        .filter(|r| matches!(r.outcome, NetbootOutcome::Installed { .. }))
        .count()
}

fn relabel(lab: &Lab, node: &str, value: &str) {
    edit_yaml(&lab.repo.join(format!("nodes/{node}.yaml")), |n| {
        n["labels"]
            .as_mapping_mut()
            .unwrap()
            .insert("slipway.test/round".into(), value.into());
        Ok(())
    })
    .unwrap();
}

fn lab(opts: &LabOptions) -> (tempfile::TempDir, Lab, Signing) {
    require_tool("ignition-validate");
    let t = tempfile::tempdir().unwrap();
    let lab = Lab::start(t.path(), &example_repo(), &demo_identity(), opts).unwrap();
    let signing = Signing::new(t.path());
    (t, lab, signing)
}

fn applied(d: &Daemon, commit: &str) -> bool {
    has(&d.metrics(), "slipway_applied_commit", commit)
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[test]
fn serve_installs_then_waits_for_the_window_and_shares_its_lock_with_zincati() {
    let (_t, lab, signing) = lab(&LabOptions::default());
    edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        c.as_mapping_mut().unwrap().insert(
            "maintenance_windows".into(),
            serde_yaml::from_str(
                "[{days: [sat], start: \"03:00\", length: 2h, time_zone: Europe/Paris}]",
            )
            .unwrap(),
        );
        Ok(())
    })
    .unwrap();
    let c1 = signing.commit(&lab, "windows: Saturday night");

    // Monday noon in Paris: the window is closed, but installing from nothing disrupts
    // nothing, so the daemon installs the cluster.
    let monday = "2026-11-23T11:00:00Z";
    let d = Daemon::start(&lab, &signing, Some(monday));
    // Type=notify: READY once the servers listen, then watchdog keep-alives.
    d.wait_systemd("READY=1");
    d.wait_systemd("WATCHDOG=1");
    eventually("the cluster installed", Duration::from_secs(300), || {
        applied(&d, &c1).then_some(())
    });
    for n in ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"] {
        assert_eq!(installs(&lab, n), 1, "{n}");
    }

    // A change that needs a reinstall: planned and exported, not executed while closed.
    relabel(&lab, "worker1", "1");
    let c2 = signing.commit(&lab, "worker1: round 1");
    let m = eventually("the new commit planned", Duration::from_secs(120), || {
        let m = d.metrics();
        (has(&m, "slipway_fetched_commit", &c2)
            && m.get("slipway_plan_actions{action=\"reinstall\"}") == Some(&1.0)
            && m.get("slipway_maintenance_window_open") == Some(&0.0))
        .then_some(m)
    });
    assert!(!has(&m, "slipway_applied_commit", &c2));
    assert_eq!(
        installs(&lab, "worker1"),
        1,
        "nothing disruptive ran while closed"
    );
    // `slipway reconcile --now` asks the running daemon, which overrides the window once.
    let mut now = slipway();
    now.args(["reconcile", "--now"]).args(lab.args());
    let out = run(now);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("asked the running slipway serve"),
        "{out:?}"
    );
    eventually("the reinstall asked for", Duration::from_secs(300), || {
        applied(&d, &c2).then_some(())
    });
    assert_eq!(installs(&lab, "worker1"), 2);
    assert!(
        !lab.state.join("reconcile-now").exists(),
        "the request is taken once"
    );
    relabel(&lab, "worker1", "1b");
    let c2 = signing.commit(&lab, "worker1: round 1b");
    eventually(
        "a later change waits again",
        Duration::from_secs(120),
        || {
            let m = d.metrics();
            (has(&m, "slipway_fetched_commit", &c2)
                && m.get("slipway_plan_actions{action=\"reinstall\"}") == Some(&1.0))
            .then_some(())
        },
    );
    assert_eq!(installs(&lab, "worker1"), 2, "closed again after --now");
    // SIGTERM stops it cleanly.
    let systemd = d.systemd.try_clone().unwrap();
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    let mut buf = [0u8; 4096];
    let mut said = Vec::new();
    systemd
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while let Ok(n) = systemd.recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(said.iter().any(|m| m.contains("STOPPING=1")), "{said:?}");
    assert!(!lab.state.join("serve.pid").exists());

    // Saturday 03:30 in Paris: the window is open, the rollout runs and is announced.
    let (hook, events) = webhook_receiver();
    let d = Daemon::start_with(&lab, &signing, Some("2026-11-28T02:30:00Z"), Some(&hook));
    eventually(
        "the reinstall inside the window",
        Duration::from_secs(300),
        || applied(&d, &c2).then_some(()),
    );
    assert_eq!(installs(&lab, "worker1"), 3);
    let seen = eventually("the notifications", Duration::from_secs(30), || {
        let e = events.lock().unwrap().clone();
        (e.len() >= 2).then_some(e)
    });
    assert_eq!(seen[0]["event"], "rollout-started", "{seen:?}");
    assert_eq!(seen[1]["event"], "rollout-succeeded", "{seen:?}");
    assert_eq!(seen[1]["commit"], c2.as_str());
    assert_eq!(seen[1]["nodes"][0]["node"], "worker1");

    // Suspended: the next change is planned, not applied, until resumed.
    let mut s = slipway();
    s.args(["suspend", "--state"]).arg(&lab.state);
    assert!(run(s).status.success());
    relabel(&lab, "worker1", "2");
    let c2b = signing.commit(&lab, "worker1: round 2");
    eventually("the suspended plan", Duration::from_secs(120), || {
        let m = d.metrics();
        (has(&m, "slipway_fetched_commit", &c2b)
            && m.get("slipway_suspended") == Some(&1.0)
            && m.get("slipway_plan_actions{action=\"reinstall\"}") == Some(&1.0))
        .then_some(())
    });
    for _ in 0..4 {
        let _ = d.metrics();
        std::thread::sleep(Duration::from_millis(600));
    }
    assert_eq!(
        installs(&lab, "worker1"),
        3,
        "nothing applied while suspended"
    );
    let mut r = slipway();
    r.args(["resume", "--state"]).arg(&lab.state);
    assert!(run(r).status.success());
    eventually(
        "the change applied after resume",
        Duration::from_secs(300),
        || applied(&d, &c2b).then_some(()),
    );
    assert_eq!(installs(&lab, "worker1"), 4);

    // Zincati on worker2 takes the reboot lock, exactly as Zincati asks for it.
    let zincati = |path: &str| {
        http(
            d.api,
            "POST",
            path,
            &[("fleet-lock-protocol", "true"), ("accept", "*/*")],
            "{\n  \"client_params\": {\n    \"id\": \"e0f3745b108f471cbd4883c6fbed8cdd\",\n    \"group\": \"default\"\n  }\n}",
        )
        .unwrap()
    };
    assert_eq!(zincati("/v1/pre-reboot").0, 200);
    assert_eq!(
        zincati("/v1/pre-reboot").0,
        200,
        "recursive for the same id"
    );
    eventually("the holder in the metrics", Duration::from_secs(30), || {
        has(
            &d.metrics(),
            "slipway_fleet_lock_holder",
            "e0f3745b108f471cbd4883c6fbed8cdd",
        )
        .then_some(())
    });
    relabel(&lab, "worker2", "1");
    let c3 = signing.commit(&lab, "worker2: round 1");
    eventually("the change planned", Duration::from_secs(120), || {
        let m = d.metrics();
        (has(&m, "slipway_fetched_commit", &c3)
            && m.get("slipway_plan_actions{action=\"reinstall\"}") == Some(&1.0))
        .then_some(())
    });
    // Give the daemon a few more ticks: while Zincati holds the lock nothing reboots.
    let ticks = |n| {
        for _ in 0..n {
            let _ = d.metrics();
            std::thread::sleep(Duration::from_millis(600));
        }
    };
    ticks(5);
    assert_eq!(
        installs(&lab, "worker2"),
        1,
        "no rollout while Zincati holds the lock"
    );
    assert!(d.log().contains("FleetLock is held"), "{}", d.log());

    // Zincati reports steady state; the rollout takes the lock and a slow-booting worker2
    // keeps it long enough to see a second Zincati node refused.
    lab.fleet
        .node("worker2")
        .unwrap()
        .inject(Fault::SlowBoot { delay_ms: 4000 })
        .unwrap();
    assert_eq!(zincati("/v1/steady-state").0, 200);
    eventually(
        "the rollout holding the lock",
        Duration::from_secs(60),
        || has(&d.metrics(), "slipway_fleet_lock_holder", "slipway-rollout").then_some(()),
    );
    let (status, body) = http(
        d.api,
        "POST",
        "/v1/pre-reboot",
        &[("fleet-lock-protocol", "true")],
        r#"{"client_params":{"id":"another-node","group":"default"}}"#,
    )
    .unwrap();
    assert_ne!(
        status, 200,
        "refused while a rollout holds the lock: {body}"
    );
    assert!(
        body.contains("failed_lock") && body.contains("slipway-rollout"),
        "{body}"
    );
    eventually("the rollout done", Duration::from_secs(300), || {
        applied(&d, &c3).then_some(())
    });
    assert_eq!(installs(&lab, "worker2"), 2);
    // The lock is free again and the metrics say so.
    let m = d.metrics();
    assert_eq!(
        m.get("slipway_fleet_lock_held"),
        Some(&0.0),
        "{:?}",
        series(&m, "slipway_fleet_lock")
    );
    assert!(d.terminate().success());
}

/// A tiny FCOS stream server on loopback: `/stable.json` and the artifacts it names.
struct StreamServer {
    addr: SocketAddr,
    files: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl StreamServer {
    fn start() -> StreamServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>> = Default::default();
        let served = files.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let served = served.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let n = conn.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let mut parts = req.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let body = served.lock().unwrap().get(&path).cloned();
                    let resp = match body {
                        Some(b) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                b.len()
                            )
                            .into_bytes();
                            if method != "HEAD" {
                                r.extend_from_slice(&b);
                            }
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&resp);
                });
            }
        });
        StreamServer { addr, files }
    }

    /// Serve a stream naming `release`, with the simulator's artifacts of it.
    fn publish(&self, release: &str) {
        use sha2::Digest as _;
        let mut files = self.files.lock().unwrap();
        let mut art = serde_json::Map::new();
        let mut add = |key: &str, name: String, bytes: Vec<u8>| {
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            let location = format!("http://{}/{release}/{name}", self.addr);
            files.insert(format!("/{release}/{name}"), bytes);
            files.insert(format!("/{release}/{name}.sig"), b"signature".to_vec());
            art.insert(
                key.into(),
                serde_json::json!({"location": location, "sha256": sha, "signature": format!("{location}.sig")}),
            );
        };
        add(
            "kernel",
            format!("fedora-coreos-{release}-live-kernel-x86_64"),
            b"kernel".to_vec(),
        );
        add(
            "initramfs",
            format!("fedora-coreos-{release}-live-initramfs.x86_64.img"),
            b"initramfs".to_vec(),
        );
        add(
            "rootfs",
            format!("fedora-coreos-{release}-live-rootfs.x86_64.img"),
            b"rootfs".to_vec(),
        );
        add(
            "disk",
            format!("fedora-coreos-{release}-metal.x86_64.raw.xz"),
            slipway_fleet_sim::sim_metal_image(release),
        );
        let stream = serde_json::json!({
            "stream": "stable",
            "architectures": {"x86_64": {"artifacts": {"metal": {
                "release": release,
                "formats": {
                    "pxe": {"kernel": art["kernel"], "initramfs": art["initramfs"], "rootfs": art["rootfs"]},
                    "raw.xz": {"disk": art["disk"]}
                }
            }}}}
        });
        files.insert("/stable.json".into(), serde_json::to_vec(&stream).unwrap());
    }

    /// Serve the K3s channel server's JSON naming `version` for `stable`, and that release's
    /// binary and checksums (`<download_url>/<version>/...`, the version percent-encoded).
    fn publish_k3s(&self, version: &str, binary: &[u8]) {
        use sha2::Digest as _;
        let mut files = self.files.lock().unwrap();
        let dir = format!("/k3s/{}", version.replace('+', "%2B"));
        files.insert(format!("{dir}/k3s"), binary.to_vec());
        files.insert(
            format!("{dir}/sha256sum-amd64.txt"),
            format!("{}  k3s\n", hex::encode(sha2::Sha256::digest(binary))).into_bytes(),
        );
        files.insert(
            "/channels".into(),
            serde_json::to_vec(&serde_json::json!({"data": [
                {"id": "stable", "latest": version},
                {"id": "latest", "latest": "v1.99.0+k3s1"}
            ]}))
            .unwrap(),
        );
    }
}

fn k3s_stand_in(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho 'k3s version {version} (5c1b3d5e)'\necho 'go version go1.22.5'\n")
        .into_bytes()
}

fn os_of(lab: &Lab, node: &str) -> String {
    lab.fleet.node(node).unwrap().state().unwrap().os.version
}

#[test]
fn serve_follows_the_fcos_stream_and_never_retries_a_release_that_failed() {
    let (_t, lab, signing) = lab(&LabOptions {
        timeouts: ["30s", "15s", "15s", "60s"],
        ..LabOptions::default()
    });
    let stream = StreamServer::start();
    stream.publish("40.20240906.3.0");
    stream.publish_k3s("v1.30.4+k3s1", &k3s_stand_in("v1.30.4+k3s1"));
    edit_yaml(&lab.repo.join("cluster.yaml"), |c| {
        c["fcos"].as_mapping_mut().unwrap().insert(
            "stream_url".into(),
            format!("http://{}/stable.json", stream.addr).into(),
        );
        // Follow the (loopback) stream: no pin.
        c["fcos"].as_mapping_mut().unwrap().remove("release");
        let k3s = c["k3s"].as_mapping_mut().unwrap();
        k3s.remove("version");
        k3s.insert("channel".into(), "stable".into());
        k3s.insert(
            "channel_url".into(),
            format!("http://{}/channels", stream.addr).into(),
        );
        k3s.insert(
            "download_url".into(),
            format!("http://{}/k3s", stream.addr).into(),
        );
        Ok(())
    })
    .unwrap();
    let c1 = signing.commit(
        &lab,
        "follow the stable FCOS stream and K3s channel from the local mirror",
    );
    let d = Daemon::start(&lab, &signing, None);
    eventually("the cluster installed", Duration::from_secs(300), || {
        applied(&d, &c1).then_some(())
    });
    assert_eq!(os_of(&lab, "lenovo1"), "40.20240906.3.0");

    // A new release appears in the stream: mirrored, verified, rolled out in place.
    stream.publish("40.20241019.3.0");
    eventually(
        "every node on the new release",
        Duration::from_secs(400),
        || {
            ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"]
                .iter()
                .all(|n| os_of(&lab, n) == "40.20241019.3.0")
                .then_some(())
        },
    );
    let idx = slipway::artifacts::ArtifactIndex::load(&lab.state).unwrap();
    assert!(idx.fcos.contains_key("40.20241019.3.0"));
    let m = d.metrics();
    assert!(
        has(&m, "slipway_mirror_state", "40.20241019.3.0"),
        "{:?}",
        series(&m, "slipway_mirror")
    );
    for n in ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"] {
        assert_eq!(
            installs(&lab, n),
            1,
            "{n}: upgraded in place, not reinstalled"
        );
    }

    // The K3s channel moves on: the binary is mirrored (verified against the release's
    // checksums) and every node upgraded in place, servers first.
    stream.publish_k3s("v1.30.6+k3s1", &k3s_stand_in("v1.30.6+k3s1"));
    let k3s_of = |n: &str| {
        lab.fleet
            .node(n)
            .unwrap()
            .state()
            .unwrap()
            .k3s
            .map(|k| k.version)
            .unwrap_or_default()
    };
    eventually(
        "every node on the new K3s",
        Duration::from_secs(400),
        || {
            ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"]
                .iter()
                .all(|n| k3s_of(n) == "v1.30.6+k3s1")
                .then_some(())
        },
    );
    // The rollout finishes (record, uncordon) a moment after the last binary is replaced.
    let upgrade = eventually("the K3s rollout archived", Duration::from_secs(120), || {
        let j = slipway::rollout::journal::last_archived(&lab.state).ok()??;
        j.nodes
            .iter()
            .any(|n| n.action.name() == "upgrade-k3s")
            .then_some(j)
    });
    let k3s_rollout = slipway::rollout::summary(&upgrade);
    assert!(
        upgrade
            .nodes
            .iter()
            .all(|n| n.action.name() == "upgrade-k3s"),
        "{k3s_rollout}"
    );
    assert_eq!(
        upgrade.nodes[0].role,
        slipway_model::inventory::Role::Server
    );
    for n in ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"] {
        assert_eq!(
            installs(&lab, n),
            1,
            "{n}: upgraded in place, not reinstalled"
        );
    }

    // The next release breaks the first server it reaches (it never comes back).
    for n in ["lenovo1", "lenovo2", "lenovo3"] {
        lab.fleet
            .node(n)
            .unwrap()
            .inject(Fault::NeverReturnsAfterReboot)
            .unwrap();
    }
    stream.publish("40.20241103.3.0");
    eventually("the rollout halted", Duration::from_secs(300), || {
        let j = slipway::rollout::journal::Journal::load(&lab.state).ok()??;
        (j.state == slipway::rollout::journal::RolloutState::Halted).then_some(())
    });
    let halted = slipway::rollout::journal::Journal::load(&lab.state)
        .unwrap()
        .unwrap();
    let failed_node = halted.halt.as_ref().unwrap().node.clone();
    eventually("the release marked failed", Duration::from_secs(60), || {
        let idx = slipway::artifacts::ArtifactIndex::load(&lab.state).ok()?;
        idx.failed.fcos.contains("40.20241103.3.0").then_some(())
    });
    let boots: Vec<u32> = ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"]
        .iter()
        .map(|n| lab.fleet.node(n).unwrap().state().unwrap().boots)
        .collect();
    // Many ticks later: nothing retried, no other node touched.
    for _ in 0..10 {
        let _ = d.metrics();
        std::thread::sleep(Duration::from_millis(700));
    }
    let after: Vec<u32> = ["lenovo1", "lenovo2", "lenovo3", "worker1", "worker2"]
        .iter()
        .map(|n| lab.fleet.node(n).unwrap().state().unwrap().boots)
        .collect();
    assert_eq!(
        boots, after,
        "a halted rollout is never retried by the daemon"
    );
    let j = slipway::rollout::journal::Journal::load(&lab.state)
        .unwrap()
        .unwrap();
    assert_eq!(j.state, slipway::rollout::journal::RolloutState::Halted);
    assert_eq!(j.halt.unwrap().node, failed_node);
    for n in ["worker1", "worker2"] {
        assert_eq!(os_of(&lab, n), "40.20241019.3.0", "{n} untouched");
    }
    assert!(d.log().contains("not retried"), "{}", d.log());
    assert!(d.terminate().success());
}
