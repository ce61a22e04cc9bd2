//! End-to-end: real iPXE firmware in QEMU network-boots through our server.
//!
//! Tools (QEMU, SeaBIOS, Debian's iPXE ROM, a Debian kernel) are prepared by
//! `tests/e2e/prepare-tools.sh` (unpacked, not installed; cached). The
//! "installer" is that kernel with a busybox-static initramfs built here,
//! whose `/init` (`tests/e2e/init.sh`) prints the kernel command line,
//! fetches `coreos.inst.ignition_url`, prints its sha256, tries the URL a
//! second time and powers off. Everything is asserted from the serial log.
//!
//! The guest reaches the host's 127.0.0.1 as 10.0.2.2 through QEMU user-mode
//! networking; nothing else is dialed. This test FAILS (never skips) when
//! the tools cannot be prepared.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use slipway_pxe_publisher::{
    ipxe, ArtifactRef, ArtifactSet, BaseUrl, BootEvent, GenerationInput, MacAddr, NodeBootStatus,
    NodeInput, NodeRole, Publisher, ScriptKind, SecretIgnition, ServerState, Sha256Digest,
    UnknownMacPolicy,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const CRATE_DIR: &str = env!("CARGO_MANIFEST_DIR");
const NODE_MAC: &str = "52:54:00:5e:00:01";
const UNKNOWN_MAC: &str = "52:54:00:5e:00:99";
const MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

struct Tools {
    qemu: PathBuf,
    ld_library_path: String,
    data_dirs: Vec<PathBuf>,
    ipxe_rom: PathBuf,
    kernel: PathBuf,
    modules_dir: PathBuf,
}

fn prepare_tools() -> Tools {
    let script = Path::new(CRATE_DIR).join("tests/e2e/prepare-tools.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("E2E SETUP FAILED: cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "E2E SETUP FAILED: {} exited with {}:\n{}\n{}\n\
         The end-to-end test needs apt-get access to Debian's qemu-system-x86, \
         qemu-system-data, seabios, ipxe-qemu and linux-image-amd64 packages.",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let env_file = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let text = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("E2E SETUP FAILED: reading {env_file}: {e}"));
    let get = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("E2E SETUP FAILED: {env_file} lacks {key}"))
            .to_string()
    };
    let tools = Tools {
        qemu: get("QEMU").into(),
        ld_library_path: get("QEMU_LD_LIBRARY_PATH"),
        data_dirs: get("QEMU_DATA_DIRS")
            .split(':')
            .map(PathBuf::from)
            .collect(),
        ipxe_rom: get("IPXE_ROM").into(),
        kernel: get("KERNEL").into(),
        modules_dir: get("MODULES_DIR").into(),
    };
    for p in [
        &tools.qemu,
        &tools.ipxe_rom,
        &tools.kernel,
        &tools.modules_dir,
    ] {
        assert!(p.exists(), "E2E SETUP FAILED: {} missing", p.display());
    }
    tools
}

/// Minimal cpio "newc" writer.
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn new() -> Self {
        Cpio {
            out: vec![],
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let name_z = format!("{name}\0");
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name_z.len(),
            0
        );
        self.ino += 1;
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name_z.as_bytes());
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, data, (0, 0));
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if let Some(found) = find_module(&p, name) {
                return Some(found);
            }
        } else if p.file_name().and_then(|n| n.to_str()) == Some(&format!("{name}.ko")) {
            return Some(p);
        }
    }
    None
}

fn build_initramfs(tools: &Tools) -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").unwrap_or_else(|e| {
        panic!("E2E SETUP FAILED: /bin/busybox (Debian package busybox-static) not readable: {e}")
    });
    let mut c = Cpio::new();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "lib",
        "lib/modules",
    ] {
        c.dir(d);
    }
    c.entry("dev/console", 0o020600, &[], (5, 1));
    c.file("bin/busybox", 0o755, &busybox);
    c.entry("bin/sh", 0o120777, b"busybox", (0, 0));
    let e2e = Path::new(CRATE_DIR).join("tests/e2e");
    c.file("init", 0o755, &std::fs::read(e2e.join("init.sh")).unwrap());
    c.file(
        "bin/udhcpc.script",
        0o755,
        &std::fs::read(e2e.join("udhcpc.script")).unwrap(),
    );
    for m in MODULES {
        let path = find_module(&tools.modules_dir.join("kernel"), m).unwrap_or_else(|| {
            panic!(
                "E2E SETUP FAILED: module {m}.ko not found (uncompressed) under {}",
                tools.modules_dir.display()
            )
        });
        c.file(
            &format!("lib/modules/{m}.ko"),
            0o644,
            &std::fs::read(path).unwrap(),
        );
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&c.finish()).unwrap();
    gz.finish().unwrap()
}

fn store_file(store: &Path, name: &str, bytes: &[u8], sig: bool) -> ArtifactRef {
    let sha = Sha256Digest::of(bytes);
    let dir = store.join(sha.to_hex());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    ArtifactRef {
        name: name.to_string(),
        sha256: sha,
        size: bytes.len() as u64,
        signature_available: sig,
    }
}

struct Boot {
    serial: String,
}

/// Boots one VM with `mac`; stops when `stop_marker` shows up on the serial
/// console or QEMU exits. Always bounded by `timeout`.
async fn boot(tools: &Tools, port: u16, mac: &str, stop_marker: &str, log_path: &Path) -> Boot {
    let stderr_path = log_path.with_extension("stderr");
    let stderr_file = std::fs::File::create(&stderr_path).unwrap();
    // `timeout` bounds QEMU even if this test process dies; a TERM sent to
    // `timeout` is forwarded to QEMU.
    let mut cmd = tokio::process::Command::new("timeout");
    cmd.arg("--kill-after=5").arg("150").arg(&tools.qemu);
    for d in &tools.data_dirs {
        cmd.arg("-L").arg(d);
    }
    cmd.args(["-accel", "tcg", "-nographic", "-no-reboot", "-m", "512"])
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,bootfile=http://10.0.2.2:{port}/boot.ipxe"
        ))
        .arg("-device")
        // Debian's ROM declares the virtio 1.0 device id (1af4:1041);
        // SeaBIOS only runs a ROM whose id matches, hence disable-legacy.
        .arg(format!(
            "virtio-net-pci,disable-legacy=on,netdev=n0,mac={mac},romfile={}",
            tools.ipxe_rom.display()
        ))
        .args(["-boot", "n"])
        .env("LD_LIBRARY_PATH", &tools.ld_library_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr_file));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("E2E: cannot start QEMU via timeout: {e}"));
    let pid = child.id().expect("child pid");
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout).split(b'\n');
    let mut serial = String::new();
    // Bounded twice: `timeout` above and this deadline.
    let _ = tokio::time::timeout(Duration::from_secs(160), async {
        while let Ok(Some(line)) = reader.next_segment().await {
            let line = String::from_utf8_lossy(&line).replace('\r', "");
            serial.push_str(&line);
            serial.push('\n');
            if line.contains(stop_marker) {
                break;
            }
        }
    })
    .await;
    // Ask `timeout` to stop QEMU (it forwards TERM), keep draining stdout
    // so QEMU never blocks on a full pipe, then reap.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = reader.next_segment().await {} });
    let status = child.wait().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    std::fs::write(log_path, &serial).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    eprintln!(
        "--- QEMU boot of {mac} ({status:?}), serial log in {} ---\n{}\n{stderr}",
        log_path.display(),
        tail(&serial, 25)
    );
    Boot { serial }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The value after `key` on its serial line. A kernel message that still lands on the same
/// line (`[    1.995448] ...`, printed before `dmesg -n 1` took effect) is cut off.
fn marker<'a>(serial: &'a str, key: &str) -> Option<&'a str> {
    serial.lines().find_map(|l| {
        let rest = &l[l.find(key)? + key.len()..];
        let end = rest.find("[ ").filter(|&i| {
            rest[i + 1..]
                .trim_start()
                .split(']')
                .next()
                .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.'))
        });
        Some(rest[..end.unwrap_or(rest.len())].trim())
    })
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<BootEvent>) -> Vec<BootEvent> {
    let mut out = vec![];
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipxe_in_qemu_installs_once_then_localboots() {
    let tools = tokio::task::spawn_blocking(prepare_tools).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-serial");
    std::fs::create_dir_all(&logs).unwrap();
    let store = work.path().join("store");

    // Artifacts: the real kernel + our initramfs; the rest are placeholders
    // the stand-in installer never downloads.
    let kernel_name = tools
        .kernel
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let artifacts = ArtifactSet {
        kernel: store_file(
            &store,
            &kernel_name,
            &std::fs::read(&tools.kernel).unwrap(),
            true,
        ),
        initramfs: store_file(
            &store,
            "installer-initramfs.img",
            &build_initramfs(&tools),
            true,
        ),
        rootfs: store_file(&store, "rootfs.img", b"placeholder rootfs", true),
        metal: store_file(&store, "metal.x86_64.raw.xz", b"placeholder metal", false),
        k3s_binary: store_file(&store, "k3s", b"placeholder k3s", false),
        k3s_install_script: store_file(&store, "install.sh", b"#!/bin/sh\n", false),
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = BaseUrl::parse(&format!("http://10.0.2.2:{port}")).unwrap();
    let ignition_bytes =
        std::fs::read(Path::new(CRATE_DIR).join("tests/fixtures/ignition.json")).unwrap();
    let ignition = SecretIgnition::new(ignition_bytes);
    let node = NodeInput {
        name: "e2e-node".into(),
        macs: vec![NODE_MAC.parse().unwrap()],
        role: NodeRole::Server,
        install_device: "/dev/vda".into(),
        kargs: vec!["slipway.cluster=e2e".into(), "slipway.node=e2e-node".into()],
        ignition: ignition.clone(),
    };
    let input = GenerationInput {
        commit: "e2e0123456789".into(),
        base_url: base.clone(),
        nodes: vec![node.clone()],
        artifacts: artifacts.clone(),
        unknown_mac: UnknownMacPolicy::Localboot,
    };
    let publisher = Publisher::open(work.path().join("state"), 2).unwrap();
    let id = publisher.publish(&input).unwrap();
    let state = ServerState::new(&store);
    state.activate(publisher.load(&id).unwrap(), input.ignitions());
    let mut events = state.subscribe();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(slipway_pxe_publisher::serve(
        listener,
        state.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Boot 1: armed -> install script -> Ignition fetched once.
    let token = state
        .arm("e2e-node", slipway_pxe_publisher::DEFAULT_TOKEN_TTL)
        .unwrap();
    let b1 = boot(
        &tools,
        port,
        NODE_MAC,
        "SLIPWAY-DONE",
        &logs.join("boot1-install.log"),
    )
    .await;
    let expected_cmdline = ipxe::install_kernel_args(
        &ipxe::InstallParams {
            base: &base,
            node: "e2e-node",
            install_device: "/dev/vda",
            kargs: &node.kargs,
            artifacts: &artifacts,
        },
        token.expose(),
    )
    .unwrap()
    .join(" ");
    assert_eq!(
        marker(&b1.serial, "SLIPWAY-CMDLINE:"),
        Some(expected_cmdline.as_str()),
        "kernel command line seen by the installer"
    );
    assert!(expected_cmdline.contains("coreos.inst.insecure"));
    assert_eq!(
        marker(&b1.serial, "SLIPWAY-IGNITION-SHA256:"),
        Some(ignition.sha256().to_hex().as_str()),
        "the installer must receive exactly the rendered Ignition"
    );
    let refetch = marker(&b1.serial, "SLIPWAY-REFETCH:").expect("second fetch reported");
    assert!(
        refetch.starts_with("refused") && refetch.contains("403"),
        "token reuse from the guest must get 403, got {refetch:?}"
    );
    assert!(matches!(
        state.status("e2e-node"),
        NodeBootStatus::IgnitionFetched { .. }
    ));
    let ev = drain(&mut events);
    let mac: MacAddr = NODE_MAC.parse().unwrap();
    assert!(ev.contains(&BootEvent::ScriptServed {
        node: Some("e2e-node".into()),
        mac,
        script: ScriptKind::Install
    }));
    assert!(ev.contains(&BootEvent::IgnitionFetched {
        node: "e2e-node".into()
    }));

    // The token cannot be reused from the host either.
    let url = format!(
        "http://127.0.0.1:{port}/ignition/e2e-node?token={}",
        token.expose()
    );
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::FORBIDDEN);

    // Boot 2: same MAC, no longer armed -> localboot.
    let b2 = boot(
        &tools,
        port,
        NODE_MAC,
        "slipway: localboot",
        &logs.join("boot2-same-mac.log"),
    )
    .await;
    assert!(
        b2.serial.contains("slipway: localboot"),
        "second boot of the node must get localboot"
    );
    assert!(!b2.serial.contains("SLIPWAY-CMDLINE"));
    let ev = drain(&mut events);
    assert!(ev.contains(&BootEvent::ScriptServed {
        node: Some("e2e-node".into()),
        mac,
        script: ScriptKind::Localboot
    }));

    // Boot 3: unknown MAC -> unknown-MAC policy (localboot).
    let b3 = boot(
        &tools,
        port,
        UNKNOWN_MAC,
        "slipway: localboot",
        &logs.join("boot3-unknown.log"),
    )
    .await;
    assert!(b3.serial.contains("slipway: localboot"));
    let ev = drain(&mut events);
    assert!(ev.contains(&BootEvent::ScriptServed {
        node: None,
        mac: UNKNOWN_MAC.parse().unwrap(),
        script: ScriptKind::UnknownMac
    }));

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
