//! Publishing a generation's static boot site over SFTP to a real sshd on
//! 127.0.0.1 (one simulated node standing in for an OpenWRT router), host key
//! pinned: contents and modes, the atomic swap, secrets only when allowed,
//! a connection killed mid-upload leaving the published site intact, the
//! artifacts uploaded once and reached through the site's `artifacts` link,
//! and the `slipway publish --to` command end to end.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::*;
use slipway::remote_publish::{local_artifacts, parse_sftp_url, publish_remote, RemoteTarget};
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
            if meta.is_symlink() {
                // Links (the artifacts folder) are checked on their own.
                continue;
            } else if meta.is_dir() {
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

/// Names in `/var/www` other than the published folder and its artifacts.
fn side_folders(www: &Path) -> Vec<String> {
    std::fs::read_dir(www)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "slipway" && n != "slipway.artifacts")
        .collect()
}

#[test]
fn publishes_without_secrets_then_swaps_in_a_site_with_secrets() {
    let r = Router::start();
    let mut conn = r.connect();

    // 1. Secrets not allowed: no Ignition reaches the router.
    let (g1, input1) = generation("aaaa1111", &[2, 3]);
    let site1 = static_site(&g1, None, &router_url()).unwrap();
    let report = publish_remote(&site1, &[], &r.target, &mut conn).unwrap();
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
    let report = publish_remote(&site2, &[], &r.target, &mut conn).unwrap();
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
    publish_remote(&site1, &[], &r.target, &mut conn).unwrap();
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
    publish_remote(&site1, &[], &r.target, &mut r.connect()).unwrap();

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
    let err = publish_remote(&site2, &[], &r.target, &mut dying).unwrap_err();
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
    let report = publish_remote(&site2, &[], &r.target, &mut r.connect()).unwrap();
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

/// A local content-addressed store holding the test generation's artifacts
/// (each file's bytes are its name, as `art` hashes them) and the metal
/// image's signature.
fn local_store(dir: &Path, input: &GenerationInput) -> PathBuf {
    let store = dir.join("store");
    for (_, a) in input.artifacts.iter() {
        let p = store.join(a.store_path());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, a.name.as_bytes()).unwrap();
    }
    let metal = &input.artifacts.metal;
    std::fs::write(
        store.join(format!("{}.sig", metal.store_path())),
        b"SIGNATURE",
    )
    .unwrap();
    store
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn artifacts_are_uploaded_once_and_reached_through_the_sites_link() {
    let r = Router::start();
    let dir = tempfile::tempdir().unwrap();
    let (g1, input1) = generation("aaaa1111", &[2, 3]);
    let store = local_store(dir.path(), &input1);
    let arts = local_artifacts(&input1.artifacts, &store).unwrap();
    assert_eq!(arts.len(), 7, "six artifacts and the metal signature");
    let all: BTreeMap<String, SecretIgnition> = input1
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.ignition.clone()))
        .collect();
    let site1 = static_site(&g1, Some(&all), &router_url()).unwrap();
    let report = publish_remote(&site1, &arts, &r.target, &mut r.connect()).unwrap();
    assert_eq!(report.artifacts_uploaded.len(), 7);
    assert_eq!(report.artifacts_present, 0);
    assert_eq!(
        report.artifacts_dir.as_deref(),
        Some("/var/www/slipway.artifacts")
    );
    assert!(report.to_string().contains("7 uploaded"), "{report}");

    // The site is exactly the built files plus its link to the artifacts
    // folder (the link's target proves SFTP's symlink argument order).
    assert_eq!(tree(&r.published()), expected(&site1));
    let link = r.published().join("artifacts");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("../slipway.artifacts")
    );
    // Every artifact URL the install scripts use resolves, with the right bytes.
    let script = String::from_utf8(
        tree(&r.published())["ipxe/52-54-00-00-00-02.ipxe"]
            .0
            .clone(),
    )
    .unwrap();
    let base = format!("{}/", router_url().as_str());
    let mut reached = 0;
    for url in script
        .split_whitespace()
        .filter_map(|w| w.rsplit('=').next())
    {
        if let Some(rel) = url
            .strip_prefix(&base)
            .filter(|p| p.starts_with("artifacts/"))
        {
            let name = rel.rsplit('/').next().unwrap();
            assert_eq!(
                std::fs::read(r.published().join(rel)).unwrap(),
                name.as_bytes()
            );
            reached += 1;
        }
    }
    assert_eq!(
        reached, 4,
        "kernel, initramfs, rootfs, metal image: {script}"
    );
    for (_, a) in input1.artifacts.iter() {
        let p = link.join(a.store_path());
        assert_eq!(std::fs::read(&p).unwrap(), a.name.as_bytes());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
    let sig = link.join(format!("{}.sig", input1.artifacts.metal.store_path()));
    assert_eq!(std::fs::read(sig).unwrap(), b"SIGNATURE");

    // A second publish (another generation, same artifacts) uploads none of
    // them: the very same files stay.
    let kernel = r
        .www()
        .join("slipway.artifacts")
        .join(input1.artifacts.kernel.store_path());
    let before = inode(&kernel);
    let (g2, input2) = generation("bbbb2222", &[2]);
    let w1 = BTreeMap::from([(
        input2.nodes[1].name.clone(),
        input2.nodes[1].ignition.clone(),
    )]);
    let site2 = static_site(&g2, Some(&w1), &router_url()).unwrap();
    let report = publish_remote(&site2, &arts, &r.target, &mut r.connect()).unwrap();
    assert!(report.artifacts_uploaded.is_empty(), "{report:?}");
    assert_eq!((report.artifacts_present, report.artifact_bytes), (7, 0));
    assert_eq!(inode(&kernel), before);
    assert_eq!(tree(&r.published()), expected(&site2));
    assert_eq!(std::fs::read(&kernel).unwrap(), b"kernel");
    assert_eq!(side_folders(&r.www()), Vec::<String>::new());

    // A damaged remote copy (wrong size) is replaced; a partial upload left
    // by an interrupted publish is removed.
    std::fs::write(&kernel, b"kern").unwrap();
    let part = kernel.with_file_name(".kernel.slipway-part-1-dead");
    std::fs::write(&part, b"ke").unwrap();
    let report = publish_remote(&site2, &arts, &r.target, &mut r.connect()).unwrap();
    assert_eq!(
        report.artifacts_uploaded,
        vec![input1.artifacts.kernel.store_path()]
    );
    assert_eq!(std::fs::read(&kernel).unwrap(), b"kernel");
    assert!(!part.exists());

    // Without artifacts the site has no link, and the artifacts stay.
    publish_remote(&site2, &[], &r.target, &mut r.connect()).unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(kernel.is_file());
}

#[test]
fn a_missing_local_artifact_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, input) = generation("aaaa1111", &[2]);
    let store = local_store(dir.path(), &input);
    std::fs::remove_file(store.join(input.artifacts.rootfs.store_path())).unwrap();
    let err = format!(
        "{:#}",
        local_artifacts(&input.artifacts, &store).unwrap_err()
    );
    assert!(
        err.contains("rootfs artifact rootfs.img is not in the store"),
        "{err}"
    );
    std::fs::write(store.join(input.artifacts.rootfs.store_path()), b"short").unwrap();
    let err = format!(
        "{:#}",
        local_artifacts(&input.artifacts, &store).unwrap_err()
    );
    assert!(err.contains("has 5 bytes"), "{err}");
}

/// `slipway publish --to` with the example repository, pinned to the router's host key.
struct Cli<'a> {
    router: &'a Router,
    repo: PathBuf,
    state: PathBuf,
    host_key: PathBuf,
}

impl Cli<'_> {
    fn publish(&self, extra: &[&str]) -> std::process::Output {
        let mut c = slipway();
        c.arg("publish")
            .arg("--to")
            .arg(format!(
                "sftp://root@127.0.0.1:{}/var/www/slipway",
                self.router.target.port
            ))
            .arg("--host-key-file")
            .arg(&self.host_key)
            .arg("--ssh-key")
            .arg(&self.router.client_key)
            .arg("--repo")
            .arg(&self.repo)
            .arg("--identity")
            .arg(demo_identity())
            .arg("--state")
            .arg(&self.state)
            .args(extra);
        run(c)
    }
}

#[test]
fn the_publish_command_uploads_the_site_and_with_secrets_the_artifacts_once() {
    let r = Router::start();
    let (t, repo) = example_copy();
    let state = t.path().join("state");
    import_artifacts(t.path(), &state);
    let host_key = t.path().join("router.pub");
    std::fs::write(&host_key, format!("{}\n", r.host_public)).unwrap();
    let cli = Cli {
        router: &r,
        repo: repo.clone(),
        state: state.clone(),
        host_key: host_key.clone(),
    };
    let base = ["--base-url", "http://192.168.1.1/slipway"];

    // Bad input fails before the remote is touched.
    let (_, stranger) = keypair(t.path(), "stranger");
    let wrong = Cli {
        host_key: t.path().join("stranger.pub"),
        repo: repo.clone(),
        state: state.clone(),
        router: &r,
    };
    std::fs::write(&wrong.host_key, &stranger).unwrap();
    let out = wrong.publish(&base);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("connecting to sftp://root@127.0.0.1"), "{err}");
    assert!(err.to_lowercase().contains("host key"), "{err}");
    let out = cli.publish(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--base-url"),
        "{}",
        text(&out.stderr)
    );
    let out = cli.publish(&["--base-url", "not a url"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--base-url"),
        "{}",
        text(&out.stderr)
    );
    assert!(!r.www().exists(), "nothing may reach the remote");

    // Without secrets: the site, no Ignition, no artifacts.
    let out = cli.publish(&base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("to sftp://root@127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("Ignition left out"), "{stdout}");
    let site = tree(&r.published());
    assert!(site.contains_key("boot.ipxe") && site.contains_key("manifest.json"));
    let worker1 = "ipxe/88-ae-dd-02-00-01.ipxe";
    assert!(
        text(&site[worker1].0)
            .contains("chain http://192.168.26.2:8080/ipxe?mac=88-ae-dd-02-00-01"),
        "{}",
        text(&site[worker1].0)
    );
    assert!(!site.keys().any(|p| p.starts_with("ignition/")));
    assert!(!r.published().join("artifacts").exists());
    assert!(!r.www().join("slipway.artifacts").exists());

    // With secrets, for worker1 only: its Ignition (exactly what `render` prints) at 0600,
    // and every artifact its install script downloads.
    let armed = ["--allow-secrets", "--arm", "worker1"];
    let out = cli.publish(&[&base[..], &armed[..]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("secret Ignition uploaded with mode 0600: ignition/worker1.ign"),
        "{stdout}"
    );
    assert!(stdout.contains("6 uploaded"), "{stdout}");
    let site = tree(&r.published());
    let rendered = render(&repo, &state, "worker1");
    assert!(rendered.status.success());
    let (ign, mode) = &site["ignition/worker1.ign"];
    assert_eq!(
        (text(ign).trim(), *mode),
        (text(&rendered.stdout).trim(), 0o600)
    );
    assert_eq!(
        site.keys().filter(|p| p.starts_with("ignition/")).count(),
        1,
        "only the armed node's Ignition"
    );
    let script = text(&site[worker1].0);
    assert!(
        script.contains("coreos.inst.ignition_url=http://192.168.1.1/slipway/ignition/worker1.ign"),
        "{script}"
    );
    let mut reached = 0;
    for url in script
        .split_whitespace()
        .filter_map(|w| w.rsplit('=').next())
    {
        if let Some(rel) = url.strip_prefix("http://192.168.1.1/slipway/") {
            assert!(r.published().join(rel).is_file(), "{rel} is not served");
            reached += 1;
        }
    }
    assert_eq!(
        reached, 5,
        "kernel, initramfs, rootfs, metal image, Ignition: {script}"
    );
    for (name, body) in [
        ("kernel", "k"),
        ("initramfs.img", "i"),
        ("rootfs.img", "r"),
        ("metal.raw.xz", "m"),
        ("k3s", "#!/bin/sh\n"),
        ("install.sh", "#!/bin/sh\n"),
    ] {
        let sha = Sha256Digest::of(body.as_bytes()).to_hex();
        let p = r.published().join("artifacts").join(&sha).join(name);
        assert_eq!(std::fs::read(&p).unwrap(), body.as_bytes(), "{name}");
    }
    let kernel = r
        .www()
        .join("slipway.artifacts")
        .join(Sha256Digest::of(b"k").to_hex())
        .join("kernel");
    let before = inode(&kernel);

    // Again: nothing to upload.
    let out = cli.publish(&[&base[..], &armed[..]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("0 uploaded (0 bytes), 6 already there"),
        "{stdout}"
    );
    assert_eq!(inode(&kernel), before);
    assert_eq!(side_folders(&r.www()), Vec::<String>::new());
}
