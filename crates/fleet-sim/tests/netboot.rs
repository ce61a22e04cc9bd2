#![allow(clippy::unwrap_used)]
//! The network install through Slipway's REAL boot server (`slipway-pxe-publisher` on
//! 127.0.0.1): the simulated firmware fetches its iPXE script by MAC, the live installer
//! fetches the one-shot Ignition config and the metal image, checks it, keeps or wipes `/var`,
//! and the real Ignition (Debian package `ignition`) lays the rendered config down; K3s then
//! runs from what landed. Configs are rendered by `slipway-ignition-gen` as Slipway renders
//! them; sshd is real.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::profile::Lab;
use common::*;
use slipway_fleet_sim::netboot::http_get;
use slipway_fleet_sim::{
    sim_metal_image, update_state, BootSource, Fault, Firmware, NetbootOutcome, NetbootRecord,
    NodeState, ReinstallMethod, SimNode, SimNodeSpec, VarPolicy,
};
use slipway_ignition_gen::profile::ClusterState::New;
use slipway_pxe_publisher::{
    ArtifactRef, ArtifactSet, BaseUrl, BootEvent, GenerationInput, MacAddr, NodeBootStatus,
    NodeInput, NodeRole, Publisher, RefusalReason, ScriptKind, SecretIgnition, ServerState,
    Sha256Digest, Token, UnknownMacPolicy,
};
use tokio::sync::broadcast;

/// What the fresh machines run before they are installed.
const OLD_OS: &str = "39.20240101.3.0";
/// What the metal image holds (differs from the version the configs record in
/// applied.json, so the tests see where the booted version comes from).
const IMAGE_OS: &str = "40.20241019.3.0";

/// Slipway's boot server on 127.0.0.1, with its content-addressed artifact store.
struct BootServer {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    base: String,
    state: ServerState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for BootServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl BootServer {
    fn start() -> BootServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = ServerState::new(&store);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(slipway_pxe_publisher::serve(
            listener,
            state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        BootServer {
            rt,
            dir,
            base,
            state,
            stop: Some(tx),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Put `bytes` into the store under the sha256 `address` (normally their own).
    fn put_at(&self, address: Sha256Digest, name: &str, bytes: &[u8], sig: bool) -> ArtifactRef {
        let dir = self.store().join(address.to_hex());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        if sig {
            std::fs::write(dir.join(format!("{name}.sig")), b"not a real signature").unwrap();
        }
        ArtifactRef {
            name: name.into(),
            sha256: address,
            size: bytes.len() as u64,
            signature_available: sig,
        }
    }

    fn put(&self, name: &str, bytes: &[u8], sig: bool) -> ArtifactRef {
        self.put_at(Sha256Digest::of(bytes), name, bytes, sig)
    }

    /// The live PXE artifacts, `metal` and the lab's K3s artifacts.
    fn artifacts(&self, lab: &Lab, metal: ArtifactRef) -> ArtifactSet {
        let (binary, script) = lab.k3s_artifacts();
        let stored = |a: &slipway_ignition_gen::profile::Artifact| {
            let sha: Sha256Digest = a.sha256.parse().unwrap();
            let size = std::fs::metadata(self.store().join(&a.sha256).join(&a.name))
                .unwrap()
                .len();
            ArtifactRef {
                name: a.name.clone(),
                sha256: sha,
                size,
                signature_available: false,
            }
        };
        ArtifactSet {
            kernel: self.put("fedora-coreos-live-kernel-x86_64", b"kernel", true),
            initramfs: self.put("fedora-coreos-live-initramfs.x86_64.img", b"initrd", true),
            rootfs: self.put("fedora-coreos-live-rootfs.x86_64.img", b"rootfs", true),
            metal,
            k3s_binary: stored(binary),
            k3s_install_script: stored(script),
        }
    }

    /// Publish a generation of these nodes (name, MACs, role, Ignition) and serve it.
    fn publish(&self, artifacts: ArtifactSet, nodes: Vec<(&str, Vec<MacAddr>, String)>) {
        let input = GenerationInput {
            commit: "5e1f0000".into(),
            base_url: BaseUrl::parse(&self.base).unwrap(),
            nodes: nodes
                .into_iter()
                .map(|(name, macs, ignition)| NodeInput {
                    name: name.into(),
                    macs,
                    role: if name.starts_with('s') {
                        NodeRole::Server
                    } else {
                        NodeRole::Agent
                    },
                    install_device: "/dev/disk/by-id/nvme-x".into(),
                    kargs: vec![],
                    ignition: SecretIgnition::new(ignition.into_bytes()),
                })
                .collect(),
            artifacts,
            unknown_mac: UnknownMacPolicy::Localboot,
        };
        let publisher = Publisher::open(self.dir.path().join("state"), 3).unwrap();
        let id = publisher.publish(&input).unwrap();
        self.state
            .activate(publisher.load(&id).unwrap(), input.ignitions());
    }

    fn arm(&self, node: &str) -> Token {
        let _guard = self.rt.enter();
        self.state.arm(node, Duration::from_secs(600)).unwrap()
    }

    fn fetched(&self, node: &str) -> bool {
        matches!(
            self.state.status(node),
            NodeBootStatus::IgnitionFetched { .. }
        )
    }
}

fn pxe_macs(macs: &[slipway_model::net::MacAddr]) -> Vec<MacAddr> {
    macs.iter().map(|m| MacAddr::new(m.0)).collect()
}

fn events(rx: &mut broadcast::Receiver<BootEvent>) -> Vec<BootEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn fresh(_: usize) -> NodeState {
    NodeState::fresh(OLD_OS)
}

/// Node firmware pointing at `boot`, with `method`.
fn firmware(boot: &BootServer, method: ReinstallMethod) -> Firmware {
    Firmware {
        boot_server: Some(boot.base.clone()),
        method,
    }
}

/// Wait until the node has booted `boots` times and its sshd accepts (or it stayed down).
fn settled(node: &SimNode<'_>, boots: u32) {
    eventually(&format!("{} to boot ({boots} boots)", node.name()), || {
        let state = node.state().ok()?;
        let up = node.is_up()
            && state.boots >= boots
            && std::net::TcpStream::connect(("127.0.0.1", node.port())).is_ok();
        let settled = up || state.down_reason.is_some();
        (settled && !node.is_netbooting()).then_some(())
    });
}

fn set_boot_next_network(node: &SimNode<'_>) {
    update_state(&node.control(), |s| s.efi.next = Some(2)).unwrap();
}

fn outcomes(log: &[NetbootRecord]) -> Vec<String> {
    log.iter()
        .map(|r| match &r.outcome {
            NetbootOutcome::Installed { .. } => "installed".to_string(),
            NetbootOutcome::Localboot => "localboot".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn assert_install_fetches(record: &NetbootRecord, mac: &MacAddr) {
    let scripts = record.fetched("boot script");
    assert_eq!(scripts.len(), 2, "{record}");
    assert!(scripts[0].url.ends_with("/boot.ipxe"), "{record}");
    assert!(
        scripts[1]
            .url
            .ends_with(&format!("/ipxe?mac={}", mac.hyphenated())),
        "{record}"
    );
    for what in ["kernel", "initramfs", "rootfs", "image signature"] {
        let f = record.fetched(what);
        assert_eq!(f.len(), 1, "{what}: {record}");
        assert_eq!((f[0].method.as_str(), f[0].status), ("HEAD", Some(200)));
    }
    let ignition = record.fetched("ignition");
    assert_eq!(ignition.len(), 1, "{record}");
    assert_eq!(ignition[0].status, Some(200));
    assert!(
        ignition[0].url.ends_with("?token=(redacted)"),
        "{}",
        ignition[0].url
    );
    let image = record.fetched("metal image");
    assert_eq!(
        (image[0].status, image[0].bytes),
        (Some(200), sim_metal_image(IMAGE_OS).len() as u64)
    );
}

#[test]
fn armed_nodes_install_over_the_network_then_boot_their_disks() {
    let boot = BootServer::start();
    let lab = Lab::served_by(&["s1"], &["a1", "a2"], &["s1"], &boot.base, &boot.store());
    let image = boot.put(
        "fedora-coreos-metal.x86_64.raw.xz",
        &sim_metal_image(IMAGE_OS),
        true,
    );
    let artifacts = boot.artifacts(&lab, image);
    boot.publish(
        artifacts,
        ["s1", "a1", "a2"]
            .iter()
            .map(|n| (*n, pxe_macs(&lab.macs(n)), lab.ignition(n, New)))
            .collect(),
    );
    let t = start_configured_fleet(&names(&["s1", "a1", "a2"]), fresh, |i, spec| {
        spec.macs = lab.macs(&spec.name);
        spec.firmware = firmware(
            &boot,
            if i == 2 {
                ReinstallMethod::PxeAlways
            } else {
                ReinstallMethod::PxeBootnext
            },
        );
    });
    // pxe-always puts the network entry first; pxe-bootnext keeps the disk first.
    let efi = |n: &str| t.fleet.node(n).unwrap().state().unwrap().efi;
    assert_eq!((efi("a1").order, efi("a2").order), (vec![1, 2], vec![2, 1]));

    // The bootstrap server is laid down directly; the agents come over the network.
    t.fleet
        .node("s1")
        .unwrap()
        .install(&lab.ignition("s1", New), VarPolicy::Keep)
        .unwrap();
    let (a1, a2) = (t.fleet.node("a1").unwrap(), t.fleet.node("a2").unwrap());
    for node in [&a1, &a2] {
        let kept = node.var().join("lib/rancher/kept-by-the-install");
        std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
        std::fs::write(&kept, "written before the install\n").unwrap();
    }

    let mut rx = boot.state.subscribe();
    let tokens = [boot.arm("a1"), boot.arm("a2")];
    // As the rollout does: BootNext to the network entry (a1 only), then reboot.
    t.ssh_ok("a1", "efibootmgr -n 0002");
    t.ssh_may_drop("a1", "systemctl reboot");
    t.ssh_may_drop("a2", "systemctl reboot");
    for node in [&a1, &a2] {
        settled(node, 2);
        assert_eq!(node.down_reason().unwrap(), None);
    }

    // The boot server saw both fetch their Ignition (token spent, back to localboot).
    let seen = events(&mut rx);
    for n in ["a1", "a2"] {
        assert!(boot.fetched(n), "{n}: {:?}", boot.state.status(n));
        assert!(
            seen.contains(&BootEvent::IgnitionFetched { node: n.into() }),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|e| matches!(e, BootEvent::ScriptServed { node: Some(x), script: ScriptKind::Install, .. } if x == n)),
            "{seen:?}"
        );
    }

    for (node, token) in [(&a1, &tokens[0]), (&a2, &tokens[1])] {
        let name = node.name();
        let log = node.netboot_log().unwrap();
        // After the install the firmware starts over at BootOrder's head: the disk for
        // pxe-bootnext, the network (now localboot) for pxe-always.
        let expected: &[&str] = if name == "a1" {
            &["installed"]
        } else {
            &["installed", "localboot"]
        };
        assert_eq!(outcomes(&log), expected, "{name}");
        let install = &log[0];
        assert_install_fetches(install, &node.macs()[0].to_string().parse().unwrap());
        assert_eq!(
            install.outcome,
            NetbootOutcome::Installed {
                os_version: IMAGE_OS.into(),
                var_kept: true
            }
        );
        assert!(
            install
                .decisions
                .iter()
                .any(|d| d.starts_with("/var kept") && d.contains("wipeFilesystem false")),
            "{install}"
        );
        // The token never reaches the log.
        let raw =
            std::fs::read_to_string(node.control().join(slipway_fleet_sim::NETBOOT_LOG)).unwrap();
        assert!(!raw.contains(token.expose()), "{name}: token in the log");

        // The image's OS, the rendered files, /var kept, K3s joined.
        let state = node.state().unwrap();
        assert_eq!(state.os.version, IMAGE_OS);
        assert_eq!(
            (state.efi.current, state.last_boot_source),
            (Some(1), BootSource::Disk)
        );
        assert!(t
            .ssh_ok(&name, "cat /etc/os-release")
            .contains(&format!("VERSION=\"{IMAGE_OS} (CoreOS)\"")));
        let k3s_config = t.ssh_ok(&name, "cat /etc/rancher/k3s/config.yaml");
        assert!(k3s_config.contains(&format!("node-name: \"{name}\"")));
        let servers = t.ssh_ok(&name, "cat /etc/slipway/k3s-servers");
        assert!(servers.contains("https://s1.lab.example:6443"), "{servers}");
        assert!(t
            .ssh_ok(&name, "cat /etc/hostname")
            .contains(&format!("{name}.lab.example")));
        assert_eq!(
            t.ssh_ok(&name, "cat /var/lib/rancher/kept-by-the-install"),
            "written before the install\n"
        );
    }
    let cluster = eventually("both agents Ready", || {
        let c = t.fleet.cluster().ok()?;
        (c.is_ready("a1") && c.is_ready("a2")).then_some(c)
    });
    assert_eq!(cluster.ready_nodes(), names(&["a1", "a2", "s1"]));

    // A second reboot boots the disk: no reinstall loop, even with BootNext to the network
    // (a1) or the network first in BootOrder (a2).
    set_boot_next_network(&a1);
    a1.reboot().unwrap();
    a2.reboot().unwrap();
    for node in [&a1, &a2] {
        settled(node, 3);
        let log = node.netboot_log().unwrap();
        let expected: &[&str] = if node.name() == "a1" {
            &["installed", "localboot"]
        } else {
            &["installed", "localboot", "localboot"]
        };
        assert_eq!(outcomes(&log), expected);
        let last = log.last().unwrap();
        assert_eq!(last.fetched("ignition").len(), 0, "{last}");
        let state = node.state().unwrap();
        assert_eq!((state.os.version.as_str(), state.boots), (IMAGE_OS, 3));
        assert!(node.var().join("lib/rancher/kept-by-the-install").exists());
    }
    let seen = events(&mut rx);
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            BootEvent::ScriptServed {
                script: ScriptKind::Install,
                ..
            }
        )),
        "{seen:?}"
    );
    eventually("agents Ready again", || {
        let c = t.fleet.cluster().ok()?;
        (c.is_ready("a1") && c.is_ready("a2")).then_some(())
    });
}

/// A single bootstrap server armed with `ignition`, its firmware pointing at the boot server.
fn one_server(
    boot: &BootServer,
    lab: &Lab,
    metal: ArtifactRef,
    ignition: String,
) -> (TestFleet, Token) {
    let artifacts = boot.artifacts(lab, metal);
    boot.publish(artifacts, vec![("s1", pxe_macs(&lab.macs("s1")), ignition)]);
    let t = start_configured_fleet(&names(&["s1"]), fresh, |_, spec: &mut SimNodeSpec| {
        spec.macs = lab.macs("s1");
        spec.firmware = firmware(boot, ReinstallMethod::PxeBootnext);
    });
    let token = boot.arm("s1");
    (t, token)
}

#[test]
fn a_config_that_wipes_the_var_filesystem_loses_var() {
    let boot = BootServer::start();
    let lab = Lab::served_by(&["s1"], &[], &["s1"], &boot.base, &boot.store());
    let mut config: serde_json::Value = serde_json::from_str(&lab.ignition("s1", New)).unwrap();
    let filesystems = config["storage"]["filesystems"].as_array_mut().unwrap();
    let var = filesystems
        .iter_mut()
        .find(|f| f["device"] == "/dev/disk/by-partlabel/var")
        .expect("Slipway's profile declares the var filesystem");
    assert_eq!(var["wipeFilesystem"], false);
    var["wipeFilesystem"] = serde_json::json!(true);
    let image = boot.put("metal.raw.xz", &sim_metal_image(IMAGE_OS), true);
    let (t, _token) = one_server(&boot, &lab, image, config.to_string());
    let node = t.fleet.node("s1").unwrap();
    std::fs::write(node.var().join("lost"), "gone after the install\n").unwrap();

    set_boot_next_network(&node);
    node.reboot().unwrap();
    settled(&node, 2);

    assert_eq!(node.down_reason().unwrap(), None);
    let log = node.netboot_log().unwrap();
    assert_eq!(
        log[0].outcome,
        NetbootOutcome::Installed {
            os_version: IMAGE_OS.into(),
            var_kept: false
        }
    );
    assert!(
        log[0]
            .decisions
            .iter()
            .any(|d| d.starts_with("/var wiped") && d.contains("wipeFilesystem: true")),
        "{}",
        log[0]
    );
    assert!(!node.var().join("lost").exists());
    // The new /var holds what Ignition put there and K3s what it made.
    assert!(node.var().join("lib/slipway").is_dir());
    eventually("the server initialises its cluster", || {
        t.fleet.cluster().ok()?.is_ready("s1").then_some(())
    });
}

#[test]
fn a_metal_image_that_does_not_match_its_address_fails_the_install() {
    let boot = BootServer::start();
    let lab = Lab::served_by(&["s1"], &[], &["s1"], &boot.base, &boot.store());
    // Served under the address of other bytes: the download does not hash to its URL.
    let image = boot.put_at(
        Sha256Digest::of(b"the image that was mirrored"),
        "metal.raw.xz",
        &sim_metal_image(IMAGE_OS),
        true,
    );
    let (t, _token) = one_server(&boot, &lab, image, lab.ignition("s1", New));
    let node = t.fleet.node("s1").unwrap();
    set_boot_next_network(&node);
    node.reboot().unwrap();
    settled(&node, 2);

    // Stuck in the live environment: down, with the reason.
    let reason = node.down_reason().unwrap().expect("a reason");
    assert!(reason.contains("sha256 mismatch"), "{reason}");
    assert!(!node.is_up());
    assert!(std::net::TcpStream::connect(("127.0.0.1", node.port())).is_err());
    let log = node.netboot_log().unwrap();
    assert!(
        matches!(&log[0].outcome, NetbootOutcome::InstallFailed { reason } if reason.contains("sha256 mismatch")),
        "{}",
        log[0]
    );
    // coreos-installer fetched the Ignition before the image: the token is spent.
    assert!(boot.fetched("s1"));

    // The disk was never written: a power cycle boots the old system (localboot now).
    node.power_cycle().unwrap();
    settled(&node, 2);
    assert!(node.is_up());
    let state = node.state().unwrap();
    assert_eq!(
        (state.os.version.as_str(), state.down_reason),
        (OLD_OS, None)
    );
    assert_eq!(t.ssh_ok("s1", "cat /etc/hostname"), "s1\n");
}

/// The `coreos.inst.ignition_url=` argument of an install script.
fn ignition_url(script: &str) -> String {
    script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("coreos.inst.ignition_url="))
        .unwrap()
        .to_string()
}

#[test]
fn a_spent_or_missing_ignition_token_fails_the_install() {
    let boot = BootServer::start();
    let lab = Lab::served_by(&["s1"], &[], &["s1"], &boot.base, &boot.store());
    let image = boot.put("metal.raw.xz", &sim_metal_image(IMAGE_OS), true);
    let (t, _token) = one_server(&boot, &lab, image, lab.ignition("s1", New));
    let node = t.fleet.node("s1").unwrap();
    let mac = pxe_macs(&node.macs())[0];

    // Somebody else fetches the node's script and spends its token first.
    let mut rx = boot.state.subscribe();
    let script = http_get(&format!("{}/ipxe?mac={}", boot.base, mac.hyphenated())).unwrap();
    let script = String::from_utf8(script.body).unwrap();
    let url = ignition_url(&script);
    assert!(url.contains("?token="), "{script}");
    assert_eq!(http_get(&url).unwrap().status, 200);

    let log = node.boot_script(&script).unwrap();
    assert_eq!(log.len(), 1);
    match &log[0].outcome {
        NetbootOutcome::InstallFailed { reason } => {
            assert!(reason.contains("HTTP 403"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!node.is_up());
    let reason = node.down_reason().unwrap().unwrap();
    assert!(reason.contains("token"), "{reason}");
    assert!(!reason.contains(url.split("token=").nth(1).unwrap()));
    assert!(events(&mut rx).contains(&BootEvent::IgnitionRefused {
        node: "s1".into(),
        reason: RefusalReason::AlreadyUsed
    }));

    // A script whose Ignition URL lost its token fails the same way (the server says 400).
    let without = script.replace(&url, url.split('?').next().unwrap());
    let log = node.boot_script(&without).unwrap();
    match &log[0].outcome {
        NetbootOutcome::InstallFailed { reason } => {
            assert!(reason.contains("HTTP 400"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!node.is_up());
    // Nothing was laid down.
    assert_eq!(node.state().unwrap().os.version, OLD_OS);
}

#[test]
fn unknown_macs_get_localboot_and_firmware_ignoring_bootnext_never_netboots() {
    let boot = BootServer::start();
    let lab = Lab::served_by(&["s1"], &["a1"], &["s1"], &boot.base, &boot.store());
    let image = boot.put("metal.raw.xz", &sim_metal_image(IMAGE_OS), true);
    let artifacts = boot.artifacts(&lab, image);
    boot.publish(
        artifacts,
        vec![("a1", pxe_macs(&lab.macs("a1")), lab.ignition("a1", New))],
    );
    let stranger: slipway_model::net::MacAddr = "52:54:00:ff:ff:01".parse().unwrap();
    let t = start_configured_fleet(&names(&["stranger", "a1"]), fresh, |i, spec| {
        if i == 0 {
            spec.macs = vec![stranger];
            spec.firmware = firmware(&boot, ReinstallMethod::PxeAlways);
        } else {
            spec.macs = lab.macs("a1");
            spec.firmware = firmware(&boot, ReinstallMethod::PxeBootnext);
        }
    });
    let (unknown, a1) = (
        t.fleet.node("stranger").unwrap(),
        t.fleet.node("a1").unwrap(),
    );
    let _token = boot.arm("a1");
    let mut rx = boot.state.subscribe();
    a1.inject(Fault::FirmwareIgnoresBootNext).unwrap();
    set_boot_next_network(&a1);
    unknown.reboot().unwrap();
    a1.reboot().unwrap();
    settled(&unknown, 2);
    settled(&a1, 2);

    let log = unknown.netboot_log().unwrap();
    assert_eq!(outcomes(&log), ["localboot"]);
    assert!(log[0].fetched("boot script")[1]
        .url
        .ends_with("/ipxe?mac=52-54-00-ff-ff-01"));
    let state = unknown.state().unwrap();
    assert_eq!(
        (state.os.version.as_str(), state.efi.current),
        (OLD_OS, Some(1))
    );
    assert!(events(&mut rx).iter().any(|e| matches!(
        e,
        BootEvent::ScriptServed {
            node: None,
            script: ScriptKind::UnknownMac,
            ..
        }
    )));

    // The firmware ignored BootNext: the disk booted, the token is still unspent.
    assert!(a1.netboot_log().unwrap().is_empty());
    assert!(matches!(
        boot.state.status("a1"),
        NodeBootStatus::Armed { .. }
    ));
    assert_eq!(a1.state().unwrap().os.version, OLD_OS);
    assert!(a1.is_up());
}

#[test]
fn never_returning_nodes_stay_down_after_a_network_install() {
    let boot = BootServer::start();
    let lab = Lab::served_by(&["s1"], &[], &["s1"], &boot.base, &boot.store());
    let image = boot.put("metal.raw.xz", &sim_metal_image(IMAGE_OS), false);
    let (t, _token) = one_server(&boot, &lab, image, lab.ignition("s1", New));
    let node = t.fleet.node("s1").unwrap();
    let script = http_get(&format!(
        "{}/ipxe?mac={}",
        boot.base,
        pxe_macs(&node.macs())[0].hyphenated()
    ))
    .unwrap();
    let script = String::from_utf8(script.body).unwrap();
    // No signature mirrored: the install line says insecure, and the installer accepts it.
    assert!(script.contains("coreos.inst.insecure"));
    node.inject(Fault::NeverReturnsAfterReboot).unwrap();
    let log = node.boot_script(&script).unwrap();
    assert_eq!(outcomes(&log), ["installed"]);
    assert!(log[0].fetched("image signature").is_empty());
    assert!(log[0]
        .decisions
        .iter()
        .any(|d| d.contains("coreos.inst.insecure")));
    assert!(!node.is_up());
    assert_eq!(
        node.down_reason().unwrap().as_deref(),
        Some("the NeverReturnsAfterReboot fault")
    );
    assert_eq!(node.state().unwrap().os.version, IMAGE_OS);
    assert!(node.root().join("etc/rancher/k3s/config.yaml").exists());
}
