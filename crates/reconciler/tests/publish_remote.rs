//! Publishing a generation's static boot site over SFTP to a real sshd on
//! 127.0.0.1 (one simulated node standing in for an OpenWRT router), host key
//! pinned: contents and modes, the atomic swap, secrets only when allowed, and
//! a connection killed mid-upload leaving the published site intact.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::*;
use slipway::remote_publish::{parse_sftp_url, publish_remote, RemoteTarget};
use slipway_fleet_sim::{descendants, locate_sim_binary, Fleet, FleetSpec, NodeState, SimNodeSpec};
use slipway_node_ssh::{
    Auth, CommandOutput, HostKeyPin, NodeConn, NodeConnector, RemoteEntry, Ssh2Conn, Ssh2Connector,
    SshError,
};
use slipway_pxe_publisher::generation::{render_generation, GenerationId};
use slipway_pxe_publisher::{
    static_site, ArtifactRef, ArtifactSet, BaseUrl, Generation, GenerationInput, MacAddr,
    NodeInput, NodeRole, SecretIgnition, Sha256Digest, SiteFile, UnknownMacPolicy,
};
use zeroize::Zeroizing;

/// A throwaway key pair made by ssh-keygen: (private key file, public line).
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = std::process::Command::new(require_tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

struct Router {
    fleet: Fleet,
    target: RemoteTarget,
    client_key: PathBuf,
    host_public: String,
    _dir: tempfile::TempDir,
}

impl Router {
    fn start() -> Router {
        require_tool("sshd");
        let dir = tempfile::tempdir().unwrap();
        let (host_key, host_public) = keypair(dir.path(), "host");
        let (client_key, client_public) = keypair(dir.path(), "client");
        let fleet = Fleet::start(FleetSpec {
            dir: dir.path().join("fleet"),
            sim_binary: locate_sim_binary()
                .expect("build the simulator first: cargo build -p slipway-fleet-sim"),
            nodes: vec![SimNodeSpec::new(
                "router",
                Zeroizing::new(std::fs::read_to_string(&host_key).unwrap()),
                vec![client_public],
                NodeState::fresh("40.20240906.3.0"),
            )],
        })
        .unwrap();
        let port = fleet.node("router").unwrap().port();
        // The simulator's sshd logs in as host users: root here.
        let target =
            parse_sftp_url(&format!("sftp://root@127.0.0.1:{port}/var/www/slipway")).unwrap();
        Router {
            fleet,
            target,
            client_key,
            host_public,
            _dir: dir,
        }
    }

    fn connect(&self) -> Ssh2Conn {
        let t = self.target.node_target(
            Auth::KeyFile(self.client_key.clone()),
            HostKeyPin::PublicKey(self.host_public.clone()),
        );
        Ssh2Connector::default().connect(&t).unwrap()
    }

    /// The node's `/var/www` as seen on this host.
    fn www(&self) -> PathBuf {
        self.fleet.node("router").unwrap().var().join("www")
    }

    fn published(&self) -> PathBuf {
        self.www().join("slipway")
    }

    /// Kill every process serving this node's SSH sessions (not the listener).
    fn kill_sessions(&self) {
        let sshd = self.fleet.node("router").unwrap().sshd_pid().unwrap();
        for pid in descendants(sshd).into_iter().filter(|p| *p != sshd) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn art(name: &str) -> ArtifactRef {
    ArtifactRef {
        name: name.into(),
        sha256: Sha256Digest::of(name.as_bytes()),
        size: name.len() as u64,
        signature_available: true,
    }
}

const SECRET: &str = "K3S-TOKEN-d0c2b8e1f6a7";

fn node(name: &str, macs: &[u8], role: NodeRole) -> NodeInput {
    NodeInput {
        name: name.into(),
        macs: macs
            .iter()
            .map(|m| MacAddr::new([0x52, 0x54, 0, 0, 0, *m]))
            .collect(),
        role,
        install_device: "/dev/vda".into(),
        kargs: vec![],
        ignition: SecretIgnition::new(
            format!("{{\"ignition\":{{\"version\":\"3.4.0\"}},\"token\":\"{SECRET}-{name}\"}}")
                .into_bytes(),
        ),
    }
}

/// A generation of two nodes (the worker with two NICs, or one in `v2`).
fn generation(commit: &str, worker_macs: &[u8]) -> (Generation, GenerationInput) {
    let input = GenerationInput {
        commit: commit.into(),
        base_url: BaseUrl::parse("http://10.0.0.5:8080").unwrap(),
        nodes: vec![
            node("cp1", &[1], NodeRole::Server),
            node("w1", worker_macs, NodeRole::Agent),
        ],
        artifacts: ArtifactSet {
            kernel: art("kernel"),
            initramfs: art("initramfs.img"),
            rootfs: art("rootfs.img"),
            metal: art("metal.raw.xz"),
            k3s_binary: art("k3s"),
            k3s_install_script: art("install.sh"),
        },
        unknown_mac: UnknownMacPolicy::Localboot,
    };
    let id = GenerationId::parse(&format!("00000001-{commit}")).unwrap();
    (render_generation(&input, id, 0).unwrap(), input)
}

fn router_url() -> BaseUrl {
    BaseUrl::parse("http://192.168.1.1/slipway").unwrap()
}

/// Every file under `dir`: relative path → (bytes, mode).
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(
                    rel,
                    (
                        std::fs::read(e.path()).unwrap(),
                        meta.permissions().mode() & 0o7777,
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn expected(site: &[SiteFile]) -> BTreeMap<String, (Vec<u8>, u32)> {
    site.iter()
        .map(|f| (f.path.clone(), (f.bytes.to_vec(), f.mode)))
        .collect()
}

/// Names in `/var/www` other than the published folder.
fn side_folders(www: &Path) -> Vec<String> {
    std::fs::read_dir(www)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "slipway")
        .collect()
}

#[test]
fn publishes_without_secrets_then_swaps_in_a_site_with_secrets() {
    let r = Router::start();
    let mut conn = r.connect();

    // 1. Secrets not allowed: no Ignition reaches the router.
    let (g1, input1) = generation("aaaa1111", &[2, 3]);
    let site1 = static_site(&g1, None, &router_url()).unwrap();
    let report = publish_remote(&site1, &r.target, &mut conn).unwrap();
    assert_eq!(
        (report.files, report.replaced_previous),
        (site1.len(), false)
    );
    assert!(report.secret_files.is_empty());
    assert!(report.to_string().contains("Ignition left out"), "{report}");
    let on_disk = tree(&r.published());
    assert_eq!(on_disk, expected(&site1));
    assert!(on_disk.contains_key("ipxe/52-54-00-00-00-03.ipxe"));
    assert!(!on_disk.keys().any(|p| p.starts_with("ignition")));
    for (path, (bytes, mode)) in &on_disk {
        assert_eq!(*mode, 0o644, "{path}");
        assert!(!String::from_utf8_lossy(bytes).contains(SECRET), "{path}");
    }
    for n in &input1.nodes {
        assert!(on_disk
            .values()
            .all(|(b, _)| b.as_slice() != n.ignition.expose()));
    }
    assert_eq!(side_folders(&r.www()), Vec::<String>::new());

    // 2. A new generation (w1 lost a NIC), secrets allowed for w1 only.
    let (g2, input2) = generation("bbbb2222", &[2]);
    let w1 = &input2.nodes[1];
    let ignitions = BTreeMap::from([(w1.name.clone(), w1.ignition.clone())]);
    let site2 = static_site(&g2, Some(&ignitions), &router_url()).unwrap();
    let report = publish_remote(&site2, &r.target, &mut conn).unwrap();
    assert!(report.replaced_previous);
    assert_eq!(report.secret_files, vec!["ignition/w1.ign".to_string()]);
    let on_disk = tree(&r.published());
    assert_eq!(
        on_disk,
        expected(&site2),
        "exactly the new site, nothing of the old"
    );
    assert!(!on_disk.contains_key("ipxe/52-54-00-00-00-03.ipxe"));
    let (ign, mode) = &on_disk["ignition/w1.ign"];
    assert_eq!((ign.as_slice(), *mode), (w1.ignition.expose(), 0o600));
    // The secret is in that 0600 file and nowhere else; cp1's not at all.
    for (path, (bytes, mode)) in &on_disk {
        let text = String::from_utf8_lossy(bytes);
        if path != "ignition/w1.ign" {
            assert!(!text.contains(SECRET), "{path}");
            assert_eq!(*mode, 0o644, "{path}");
        }
    }
    let script = String::from_utf8(on_disk["ipxe/52-54-00-00-00-02.ipxe"].0.clone()).unwrap();
    assert!(
        script.contains("coreos.inst.ignition_url=http://192.168.1.1/slipway/ignition/w1.ign"),
        "{script}"
    );
    assert_eq!(
        side_folders(&r.www()),
        Vec::<String>::new(),
        "no upload or backup folder left"
    );

    // 3. Back to no secrets: the Ignition file is gone from the router.
    publish_remote(&site1, &r.target, &mut conn).unwrap();
    assert_eq!(tree(&r.published()), expected(&site1));
    assert_eq!(side_folders(&r.www()), Vec::<String>::new());
}

/// Passes everything to a real session, and kills the node's SSH session
/// processes just before the `kill_at`-th file write: a real connection loss
/// in the middle of the upload.
struct KillMidUpload<'a> {
    inner: Ssh2Conn,
    router: &'a Router,
    writes: usize,
    kill_at: usize,
}

impl NodeConn for KillMidUpload<'_> {
    fn exec(&mut self, command: &str) -> Result<CommandOutput, SshError> {
        self.inner.exec(command)
    }
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, SshError> {
        self.inner.read_file(path)
    }
    fn write_file(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), SshError> {
        if self.writes == self.kill_at {
            self.router.kill_sessions();
        }
        self.writes += 1;
        self.inner.write_file(path, contents, mode)
    }
    fn make_dirs(&mut self, path: &str, mode: u32) -> Result<(), SshError> {
        self.inner.make_dirs(path, mode)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), SshError> {
        self.inner.rename(from, to)
    }
    fn remove_all(&mut self, path: &str) -> Result<(), SshError> {
        self.inner.remove_all(path)
    }
    fn list_dir(&mut self, path: &str) -> Result<Vec<RemoteEntry>, SshError> {
        self.inner.list_dir(path)
    }
    fn metadata(&mut self, path: &str) -> Result<Option<RemoteEntry>, SshError> {
        self.inner.metadata(path)
    }
}

#[test]
fn a_connection_killed_mid_upload_leaves_the_published_site_intact() {
    let r = Router::start();
    let (g1, _) = generation("aaaa1111", &[2, 3]);
    let site1 = static_site(&g1, None, &router_url()).unwrap();
    publish_remote(&site1, &r.target, &mut r.connect()).unwrap();

    let (g2, input2) = generation("bbbb2222", &[2]);
    let all: BTreeMap<String, SecretIgnition> = input2
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.ignition.clone()))
        .collect();
    let site2 = static_site(&g2, Some(&all), &router_url()).unwrap();
    let mut dying = KillMidUpload {
        inner: r.connect(),
        router: &r,
        writes: 0,
        kill_at: 3,
    };
    let err = publish_remote(&site2, &r.target, &mut dying).unwrap_err();
    assert_eq!(dying.writes, 4, "the upload stopped at the killed write");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("publishing the boot site to sftp://root@127.0.0.1"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET), "{msg}");

    // The web server still serves the complete previous site.
    assert_eq!(tree(&r.published()), expected(&site1));
    // The dead connection could not clean up; the half upload sits at a side name.
    let left = side_folders(&r.www());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".slipway.slipway-upload-"), "{left:?}");

    // The next publish removes it and swaps in the new site.
    let report = publish_remote(&site2, &r.target, &mut r.connect()).unwrap();
    assert_eq!(
        report.removed_leftovers,
        vec![format!("/var/www/{}", left[0])]
    );
    assert_eq!(tree(&r.published()), expected(&site2));
    assert_eq!(side_folders(&r.www()), Vec::<String>::new());
}

#[test]
fn a_wrong_host_key_is_refused_before_anything_is_written() {
    let r = Router::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, stranger) = keypair(dir.path(), "stranger");
    let t = r.target.node_target(
        Auth::KeyFile(r.client_key.clone()),
        HostKeyPin::PublicKey(stranger),
    );
    let err = Ssh2Connector::default().connect(&t).unwrap_err();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");
    assert!(!r.www().exists());
}
