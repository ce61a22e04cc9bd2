//! HTTP behaviour of the boot server, over real loopback sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use slipway_pxe_publisher::{
    ArtifactRef, ArtifactSet, BaseUrl, BootEvent, GenerationInput, MacAddr, ManualClock,
    NodeBootStatus, NodeInput, NodeRole, Publisher, RefusalReason, ScriptKind, SecretIgnition,
    ServerState, Sha256Digest, UnknownMacPolicy,
};

fn art(store: &Path, name: &str, bytes: &[u8], sig: bool) -> ArtifactRef {
    let sha = Sha256Digest::of(bytes);
    let dir = store.join(sha.to_hex());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    ArtifactRef {
        name: name.into(),
        sha256: sha,
        size: bytes.len() as u64,
        signature_available: sig,
    }
}

const SECRET: &str = "K10-very-secret-cluster-token";

struct Fixture {
    _dir: tempfile::TempDir,
    state: ServerState,
    clock: ManualClock,
    base: String,
    input: GenerationInput,
    publisher: Publisher,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    artifacts: ArtifactSet,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn input(base: &str, artifacts: &ArtifactSet, unknown: UnknownMacPolicy) -> GenerationInput {
    let node = |name: &str, macs: &[&str]| NodeInput {
        name: name.into(),
        macs: macs.iter().map(|m| m.parse().unwrap()).collect(),
        role: NodeRole::Agent,
        install_device: "/dev/sda".into(),
        kargs: vec![],
        ignition: SecretIgnition::new(
            format!(r#"{{"ignition":{{"version":"3.3.0"}},"k3s":"{SECRET}","node":"{name}"}}"#)
                .into_bytes(),
        ),
    };
    GenerationInput {
        commit: "abc123".into(),
        base_url: BaseUrl::parse(base).unwrap(),
        nodes: vec![
            node("w1", &["52:54:00:00:00:01", "52:54:00:00:00:02"]),
            node("w2", &["52:54:00:00:00:03"]),
        ],
        artifacts: artifacts.clone(),
        unknown_mac: unknown,
    }
}

async fn start(unknown: UnknownMacPolicy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let artifacts = ArtifactSet {
        kernel: art(&store, "vmlinuz", &big, true),
        initramfs: art(&store, "initramfs.img", b"initramfs", true),
        rootfs: art(&store, "rootfs.img", b"rootfs", true),
        metal: art(&store, "metal.raw.xz", b"metal", true),
        k3s_binary: art(&store, "k3s", b"k3s", false),
        k3s_install_script: art(&store, "install.sh", b"#!/bin/sh", false),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let input = input(&base, &artifacts, unknown);
    let publisher = Publisher::open(dir.path().join("state"), 3).unwrap();
    let id = publisher.publish(&input).unwrap();
    let clock = ManualClock::default();
    let state = ServerState::with_clock(&store, Arc::new(clock.clone()));
    state.activate(publisher.load(&id).unwrap(), input.ignitions());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(slipway_pxe_publisher::serve(
        listener,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Fixture {
        _dir: dir,
        state,
        clock,
        base,
        input,
        publisher,
        stop: Some(tx),
        artifacts,
    }
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

async fn text(url: &str) -> (u16, String) {
    let (s, _, b) = get(url).await;
    (s, String::from_utf8(b).unwrap())
}

#[tokio::test]
async fn boot_ipxe_chains_to_mac_endpoint() {
    let f = start(UnknownMacPolicy::Localboot).await;
    let (s, body) = text(&format!("{}/boot.ipxe", f.base)).await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        format!("#!ipxe\nchain {}/ipxe?mac=${{net0/mac:hexhyp}}\n", f.base)
    );
    assert_eq!(text(&format!("{}/healthz", f.base)).await.0, 200);
}

#[tokio::test]
async fn mac_forms_are_equivalent_and_malformed_is_400() {
    let f = start(UnknownMacPolicy::Localboot).await;
    f.state.arm("w1", Duration::from_secs(60)).unwrap();
    for q in [
        "52-54-00-00-00-02",
        "52:54:00:00:00:02",
        "52%3A54%3A00%3A00%3A00%3A02",
        "52%2d54%2D00-00-00-02",
    ] {
        let (s, body) = text(&format!("{}/ipxe?mac={q}", f.base)).await;
        assert_eq!(s, 200, "{q}");
        assert!(body.starts_with("#!ipxe\n"), "{q}");
        assert!(body.contains("coreos.inst.ignition_url="), "{q}: {body}");
        assert!(body.contains("/ignition/w1?token="), "{q}");
    }
    for q in [
        "",
        "mac=",
        "mac=zz-54-00-00-00-02",
        "mac=52:54:00:00:00",
        "x=1",
    ] {
        let (s, _) = text(&format!("{}/ipxe?{q}", f.base)).await;
        assert_eq!(s, 400, "{q:?}");
    }
}

#[tokio::test]
async fn full_install_cycle_is_one_shot_and_observable() {
    let f = start(UnknownMacPolicy::Localboot).await;
    let mut events = f.state.subscribe();
    // Not armed: localboot.
    let (_, body) = text(&format!("{}/ipxe?mac=52-54-00-00-00-01", f.base)).await;
    assert!(body.contains("\nexit\n"), "{body}");

    let token = f.state.arm("w1", Duration::from_secs(600)).unwrap();
    assert!(matches!(f.state.status("w1"), NodeBootStatus::Armed { .. }));
    // Either MAC of the node gets the install script with this token; other
    // nodes are unaffected.
    let (_, body) = text(&format!("{}/ipxe?mac=52-54-00-00-00-01", f.base)).await;
    assert!(body.contains(&format!("/ignition/w1?token={}", token.expose())));
    let (_, other) = text(&format!("{}/ipxe?mac=52-54-00-00-00-03", f.base)).await;
    assert!(!other.contains("kernel"), "{other}");

    // Token bound to w1 does not open w2.
    let (s, _) = text(&format!("{}/ignition/w2?token={}", f.base, token.expose())).await;
    assert_eq!(s, 403);
    // Wrong token.
    let (s, _) = text(&format!("{}/ignition/w1?token=AAAA", f.base)).await;
    assert_eq!(s, 403);

    let waiter = {
        let state = f.state.clone();
        tokio::spawn(async move { state.wait_ignition_fetched("w1").await })
    };
    let (s, headers, body) = get(&format!("{}/ignition/w1?token={}", f.base, token.expose())).await;
    assert_eq!(s, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(Sha256Digest::of(&body), f.input.nodes[0].ignition.sha256());
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("waiter resolves after the fetch")
        .unwrap();

    // Second fetch refused; the node is back to localboot by itself.
    let (s, _) = text(&format!("{}/ignition/w1?token={}", f.base, token.expose())).await;
    assert_eq!(s, 403);
    let (_, body) = text(&format!("{}/ipxe?mac=52:54:00:00:00:02", f.base)).await;
    assert!(
        body.contains("\nexit\n") && !body.contains("kernel"),
        "{body}"
    );

    // Neither the token nor the Ignition ever reached the disk.
    for path in walk(f._dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(token.expose()), "token in {}", path.display());
        assert!(
            !hay.contains(SECRET),
            "Ignition secret in {}",
            path.display()
        );
    }

    let mut seen = vec![];
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(seen.contains(&BootEvent::IgnitionFetched { node: "w1".into() }));
    assert!(seen.contains(&BootEvent::IgnitionRefused {
        node: "w1".into(),
        reason: RefusalReason::AlreadyUsed
    }));
    assert!(seen.contains(&BootEvent::IgnitionRefused {
        node: "w2".into(),
        reason: RefusalReason::NotArmed
    }));
    assert!(seen.contains(&BootEvent::ScriptServed {
        node: Some("w1".into()),
        mac: "52:54:00:00:00:01".parse::<MacAddr>().unwrap(),
        script: ScriptKind::Install
    }));
}

#[tokio::test]
async fn expired_token_falls_back_to_localboot() {
    let f = start(UnknownMacPolicy::Localboot).await;
    let token = f.state.arm("w2", Duration::from_secs(7200)).unwrap();
    f.clock.advance(Duration::from_secs(7200));
    let (_, body) = text(&format!("{}/ipxe?mac=52-54-00-00-00-03", f.base)).await;
    assert!(!body.contains("kernel"), "{body}");
    let (s, _) = text(&format!("{}/ignition/w2?token={}", f.base, token.expose())).await;
    assert_eq!(s, 403);
    // Disarm works and re-arming issues a fresh token.
    let t2 = f.state.arm("w2", Duration::from_secs(60)).unwrap();
    assert_ne!(t2.expose(), token.expose());
    assert!(f.state.disarm("w2").unwrap());
    let (s, _) = text(&format!("{}/ignition/w2?token={}", f.base, t2.expose())).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn unknown_mac_gets_policy_script() {
    let f = start(UnknownMacPolicy::Localboot).await;
    let (s, body) = text(&format!("{}/ipxe?mac=de-ad-be-ef-00-01", f.base)).await;
    assert_eq!(s, 200);
    assert!(body.starts_with("#!ipxe\n") && body.contains("\nexit\n"));

    let g = start(UnknownMacPolicy::Script {
        name: "discovery".into(),
        body: "#!ipxe\necho discovery\nshell\n".into(),
    })
    .await;
    let (_, body) = text(&format!("{}/ipxe?mac=de-ad-be-ef-00-01", g.base)).await;
    assert_eq!(body, "#!ipxe\necho discovery\nshell\n");
}

#[tokio::test]
async fn artifacts_support_range_head_and_etag() {
    let f = start(UnknownMacPolicy::Localboot).await;
    let k = &f.artifacts.kernel;
    let url = format!("{}/artifacts/{}/{}", f.base, k.sha256, k.name);
    let (s, h, body) = get(&url).await;
    assert_eq!(s, 200);
    assert_eq!(h["etag"], format!("\"{}\"", k.sha256));
    assert_eq!(Sha256Digest::of(&body), k.sha256);

    let client = reqwest::Client::new();
    let r = client
        .get(&url)
        .header("Range", "bytes=1000-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    let part = r.bytes().await.unwrap();
    assert_eq!(&part[..], &body[1000..1100]);

    let r = client.head(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-length"], k.size.to_string());
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn hostile_requests_get_400_or_404_never_a_crash() {
    let f = start(UnknownMacPolicy::Localboot).await;
    let k = &f.artifacts.kernel;
    let cases = [
        (
            format!("/artifacts/{}/..%2F..%2Fetc%2Fpasswd", k.sha256),
            400,
        ),
        (format!("/artifacts/{}/.hidden", k.sha256), 400),
        ("/artifacts/not-a-sha/vmlinuz".to_string(), 400),
        (format!("/artifacts/{}/vmlinuz", "0".repeat(64)), 404),
        ("/artifacts/../../etc/passwd".to_string(), 404),
        ("/ignition/..%2Fx?token=a".to_string(), 400),
        ("/ignition/w1".to_string(), 400),
        (format!("/ipxe?mac={}", "a".repeat(5000)), 400),
        ("/nope".to_string(), 404),
    ];
    for (path, want) in cases {
        let (s, _) = text(&format!("{}{}", f.base, path)).await;
        assert_eq!(s, want, "{path}");
    }
    // Still alive.
    assert_eq!(text(&format!("{}/healthz", f.base)).await.0, 200);
}

#[tokio::test]
async fn publish_rollback_and_missing_ignition() {
    let f = start(UnknownMacPolicy::Localboot).await;
    // A restart without re-publish: the Ignition is not in memory, so the
    // server refuses with 503 and keeps the token usable.
    let fresh = ServerState::new(f._dir.path().join("store"));
    fresh.activate(f.publisher.current().unwrap().unwrap(), Vec::new());
    assert!(!fresh.has_ignition("w1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(slipway_pxe_publisher::serve(
        listener,
        fresh.clone(),
        std::future::pending(),
    ));
    let t = fresh.arm("w1", Duration::from_secs(60)).unwrap();
    let (s, _) = text(&format!("{base}/ignition/w1?token={}", t.expose())).await;
    assert_eq!(s, 503);
    assert!(matches!(fresh.status("w1"), NodeBootStatus::Armed { .. }));

    // Rolling back on disk + re-activating keeps serving the old Ignition.
    let mut next = f.input.clone();
    next.commit = "def456".into();
    next.nodes[0].ignition =
        SecretIgnition::new(b"{\"ignition\":{\"version\":\"3.3.0\"}}".to_vec());
    let id2 = f.publisher.publish(&next).unwrap();
    f.state
        .activate(f.publisher.load(&id2).unwrap(), next.ignitions());
    let back = f.publisher.rollback().unwrap();
    f.state
        .activate(f.publisher.load(&back).unwrap(), Vec::new());
    assert!(f.state.has_ignition("w1"));
    let t = f.state.arm("w1", Duration::from_secs(60)).unwrap();
    let (s, _, body) = get(&format!("{}/ignition/w1?token={}", f.base, t.expose())).await;
    assert_eq!(s, 200);
    assert_eq!(Sha256Digest::of(&body), f.input.nodes[0].ignition.sha256());
}

#[tokio::test]
async fn arm_unknown_node_is_an_error_and_debug_hides_secrets() {
    let f = start(UnknownMacPolicy::Localboot).await;
    assert!(f.state.arm("ghost", Duration::from_secs(1)).is_err());
    let t = f.state.arm("w1", Duration::from_secs(1)).unwrap();
    let dbg = format!("{:?} {:?} {:?}", t, f.state, f.input);
    assert!(!dbg.contains(t.expose()));
    assert!(!dbg.contains(SECRET), "{dbg}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(walk(&e.path()));
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    out
}
