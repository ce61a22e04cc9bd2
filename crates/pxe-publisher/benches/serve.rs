//! Throughput of the boot server next to nginx serving the same bytes.
//!
//! Run: `cargo bench -p slipway-pxe-publisher --bench serve`.
//! Needs `wrk` and `nginx` (Debian packages `wrk`, `nginx`); fails loudly
//! without them. Everything listens on and dials 127.0.0.1 only; each wrk
//! run is bounded (`-d`, plus `timeout`).
//!
//! Endpoints compared:
//! * `/ipxe?mac=` for an armed node (renders the install script with a
//!   fresh token derivation) vs nginx serving that script as a static file;
//! * `/ignition/<node>?token=<wrong>` (the refusal path: the success path
//!   is one-shot by design, so only refusals can be driven in bulk) vs
//!   nginx serving the Ignition JSON statically;
//! * a 1 GiB artifact (sparse file) streamed whole, vs nginx `sendfile`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may unwrap

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use slipway_pxe_publisher::{
    ArtifactRef, ArtifactSet, BaseUrl, GenerationInput, NodeInput, NodeRole, Publisher,
    SecretIgnition, ServerState, Sha256Digest, UnknownMacPolicy,
};

const GIB: u64 = 1 << 30;

fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        || Path::new(&format!("/usr/sbin/{tool}")).exists();
    assert!(
        found,
        "BENCH SETUP FAILED: `{tool}` not found; install the Debian package `{package}`"
    );
}

fn wrk(url: &str, connections: u32, secs: u32) -> (f64, String) {
    let out = Command::new("timeout")
        .args([
            "60",
            "wrk",
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            url,
        ])
        .output()
        .expect("running wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed on {url}:\n{text}");
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let rps = field("Requests/sec:").parse().unwrap_or(0.0);
    (rps, field("Transfer/sec:"))
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; only run for real
    // when invoked by `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("serve bench: skipped (run with `cargo bench`)");
        return;
    }
    need("wrk", "wrk");
    need("nginx", "nginx");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");

    let put = |name: &str, bytes: &[u8]| -> ArtifactRef {
        let sha = Sha256Digest::of(bytes);
        std::fs::create_dir_all(store.join(sha.to_hex())).unwrap();
        std::fs::write(store.join(sha.to_hex()).join(name), bytes).unwrap();
        ArtifactRef {
            name: name.into(),
            sha256: sha,
            size: bytes.len() as u64,
            signature_available: true,
        }
    };
    let mut artifacts = ArtifactSet {
        kernel: put("vmlinuz", b"kernel"),
        initramfs: put("initramfs.img", b"initramfs"),
        rootfs: put("rootfs.img", b"rootfs"),
        metal: put("metal.raw.xz", b"metal"),
        k3s_binary: put("k3s", b"k3s"),
        k3s_install_script: put("install.sh", b"#!/bin/sh"),
    };
    // 1 GiB sparse artifact; its digest is not checked at serve time, so a
    // stand-in digest names the directory.
    let big_sha = Sha256Digest::of(b"bench-1gib-stand-in");
    std::fs::create_dir_all(store.join(big_sha.to_hex())).unwrap();
    let big = std::fs::File::create(store.join(big_sha.to_hex()).join("metal-1g.raw.xz")).unwrap();
    big.set_len(GIB).unwrap();
    artifacts.metal = ArtifactRef {
        name: "metal-1g.raw.xz".into(),
        sha256: big_sha,
        size: GIB,
        signature_available: true,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let ours = format!("http://{}", listener.local_addr().unwrap());
    let ignition =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ignition.json"))
            .unwrap();
    let input = GenerationInput {
        commit: "bench".into(),
        base_url: BaseUrl::parse(&ours).unwrap(),
        nodes: vec![NodeInput {
            name: "w1".into(),
            macs: vec!["52:54:00:00:00:01".parse().unwrap()],
            role: NodeRole::Agent,
            install_device: "/dev/sda".into(),
            kargs: vec![],
            ignition: SecretIgnition::new(ignition.clone()),
        }],
        artifacts: artifacts.clone(),
        unknown_mac: UnknownMacPolicy::Localboot,
    };
    let publisher = Publisher::open(dir.path().join("state"), 1).unwrap();
    let id = publisher.publish(&input).unwrap();
    let state = ServerState::new(&store);
    state.activate(publisher.load(&id).unwrap(), input.ignitions());
    let token = state.arm("w1", Duration::from_secs(3600)).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(slipway_pxe_publisher::serve(
        listener,
        state.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let script = rt
        .block_on(async {
            reqwest::get(format!("{ours}/ipxe?mac=52-54-00-00-00-01"))
                .await?
                .text()
                .await
        })
        .unwrap();
    assert!(script.contains(token.expose()));

    // nginx with the same bytes.
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("ipxe"), &script).unwrap();
    std::fs::write(www.join("ignition.json"), &ignition).unwrap();
    let nginx_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
events {{ worker_connections 1024; }}\n\
http {{\n  access_log off;\n  sendfile on;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  default_type application/octet-stream;\n\
  server {{\n    listen 127.0.0.1:{nginx_port};\n    location /artifacts/ {{ alias {store}/; }}\n    location / {{ root {www}; }}\n  }}\n}}\n",
            d = dir.path().display(),
            store = store.display(),
            www = www.display(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let mut nginx = Command::new("nginx")
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            dir.path().to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting nginx");
    let theirs = format!("http://127.0.0.1:{nginx_port}");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", nginx_port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        up,
        "nginx did not start; see {}/error.log",
        dir.path().display()
    );

    let big_path = format!("/artifacts/{big_sha}/metal-1g.raw.xz");
    let rows = [
        (
            "ipxe script (armed node)",
            format!("{ours}/ipxe?mac=52-54-00-00-00-01"),
            format!("{theirs}/ipxe"),
            32,
            5,
        ),
        (
            "ignition (ours: 403 refusal)",
            format!("{ours}/ignition/w1?token=wrong"),
            format!("{theirs}/ignition.json"),
            32,
            5,
        ),
        (
            "1 GiB artifact",
            format!("{ours}{big_path}"),
            format!("{theirs}{big_path}"),
            2,
            10,
        ),
    ];
    println!(
        "\n{:<30} {:>14} {:>14} {:>14} {:>14}",
        "endpoint", "slipway req/s", "slipway xfer", "nginx req/s", "nginx xfer"
    );
    for (label, a, b, conns, secs) in rows {
        let (ra, ta) = wrk(&a, conns, secs);
        let (rb, tb) = wrk(&b, conns, secs);
        println!("{label:<30} {ra:>14.0} {ta:>14} {rb:>14.0} {tb:>14}");
    }
    println!("(wrk -t2, loopback, 2-core machine shared by client and server)");

    let _ = Command::new("kill")
        .args(["-QUIT", &nginx.id().to_string()])
        .status();
    let _ = nginx.wait();
    let _ = stop_tx.send(());
    rt.block_on(server).unwrap().unwrap();
}
