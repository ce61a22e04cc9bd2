//! A simulated lab in one folder: a cluster repository (a git repository), a simulated fleet
//! of its nodes on 127.0.0.1 (one real sshd per node, firmware pointed at Slipway's boot
//! server), a client key, and a state folder with stand-in FCOS and K3s artifacts the
//! simulator installs. `slipway demo` runs in one, and so do the end-to-end tests.
//!
//! The lab's cluster.yaml points `boot_server.url` at a free loopback port, has short
//! rollout timeouts, no maintenance windows (tests that need windows write them) and FCOS
//! pinned to the newest stand-in release, so nothing ever follows an upstream stream.
//! Every node starts as a machine with some older OS and no K3s, reachable over SSH: the
//! first rollout installs the cluster from nothing. Host keys are throwaway keys (the repo
//! copy carries them, encrypted to the repository's recipients). Nothing here dials
//! anything but loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use slipway_fleet_sim::{
    locate_sim_binary, sim_metal_image, Firmware, Fleet, FleetSpec, NodeState, SimNodeSpec,
};
use zeroize::Zeroizing;

use crate::artifacts::{self, ArtifactIndex, FcosEntry, K3sEntry};
use crate::cmdline::RepoArgs;
use crate::sim_cmd::Ready;
use crate::{desired, repo_fs};

/// The OS the lab's machines run before Slipway installs them.
pub const PREVIOUS_OS: &str = "39.20240101.3.0";

/// How the lab is set up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// `rollout.timeouts` for the lab's cluster.yaml (drain, install, boot, ready).
    pub timeouts: [&'static str; 4],
    /// `rollout.max_unavailable_agents`.
    pub max_unavailable_agents: u32,
    /// FCOS releases to put in the store (the newest is installed unless pinned).
    pub fcos_releases: Vec<String>,
    /// K3s versions to put in the store.
    pub k3s_versions: Vec<String>,
    /// Nodes that are simulated machines but left out of the repository's first commit
    /// (their files wait in `<lab>/held-back` for [`Lab::add_back`]).
    pub held_back: Vec<String>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            timeouts: ["60s", "120s", "120s", "120s"],
            max_unavailable_agents: 1,
            fcos_releases: vec!["40.20240906.3.0".into()],
            k3s_versions: vec!["v1.30.4+k3s1".into()],
            held_back: Vec::new(),
        }
    }
}

/// A running lab. Dropping it stops the fleet (every sshd and what it started).
pub struct Lab {
    /// The lab's folder.
    pub dir: PathBuf,
    /// The cluster repository (a git repository).
    pub repo: PathBuf,
    /// Slipway's state folder.
    pub state: PathBuf,
    /// The key Slipway logs in to the nodes with.
    pub client_key: PathBuf,
    /// The age identity that decrypts the repository's secrets.
    pub identity: PathBuf,
    /// Where the boot server must listen (the nodes' firmware asks there).
    pub boot_listen: SocketAddr,
    /// The simulated machines.
    pub fleet: Fleet,
}

impl Lab {
    /// Build a lab in `dir` from the repository `source` (decrypted with `identity`).
    pub fn start(dir: &Path, source: &Path, identity: &Path, opts: &LabOptions) -> Result<Lab> {
        let loaded = desired::load(&RepoArgs {
            repo: source.to_path_buf(),
            identity: Some(identity.to_path_buf()),
        })?;
        let repo = dir.join("repo");
        let state = dir.join("state");
        std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
        let boot_listen = free_loopback_port()?;
        let boot_url = format!("http://{boot_listen}");

        let client =
            ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
                .map_err(|e| anyhow!("generating the client key: {e}"))?;
        let client_key = dir.join("client_key");
        crate::sim_cmd::write_private(
            &client_key,
            client
                .to_openssh(ssh_key::LineEnding::LF)
                .map_err(|e| anyhow!("encoding the client key: {e}"))?
                .as_bytes(),
        )?;
        let client_public = client
            .public_key()
            .to_openssh()
            .map_err(|e| anyhow!("encoding the client key: {e}"))?;

        let mut host_keys = BTreeMap::new();
        let mut specs = Vec::new();
        for node in &loaded.inventory.nodes {
            let key =
                ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
                    .map_err(|e| anyhow!("generating a host key for {}: {e}", node.name))?;
            let pem = key
                .to_openssh(ssh_key::LineEnding::LF)
                .map_err(|e| anyhow!("encoding a host key for {}: {e}", node.name))?;
            host_keys.insert(
                node.name.clone(),
                slipway_model::secrets::Secret::new(pem.as_str()),
            );
            let mut spec = SimNodeSpec::new(
                node.name.clone(),
                Zeroizing::new(pem.to_string()),
                vec![client_public.clone()],
                NodeState::fresh(PREVIOUS_OS),
            );
            spec.macs = node
                .macs
                .iter()
                .map(|m| m.to_string().parse())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| anyhow!("{}: {e}", node.name))?;
            spec.firmware = Firmware {
                boot_server: Some(boot_url.clone()),
                method: node.reinstall_method,
            };
            specs.push(spec);
        }
        let fleet = Fleet::start(FleetSpec {
            dir: dir.join("fleet"),
            sim_binary: locate_sim_binary().map_err(|e| anyhow!("finding slipway-sim: {e}"))?,
            nodes: specs,
        })
        .map_err(|e| anyhow!("starting the simulated fleet: {e}"))?;
        let ready = Ready::of(&fleet);
        crate::sim_cmd::write_repo_copy(&repo, &loaded, &ready, &host_keys)?;
        let t = opts.timeouts;
        edit_yaml(&repo.join("cluster.yaml"), |c| {
            let m = c
                .as_mapping_mut()
                .context("cluster.yaml is not a mapping")?;
            let boot = m
                .entry("boot_server".into())
                .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
            boot.as_mapping_mut()
                .context("boot_server is not a mapping")?
                .insert("url".into(), boot_url.clone().into());
            let rollout: serde_yaml::Value = serde_yaml::from_str(&format!(
                "max_unavailable_agents: {}\ntimeouts: {{drain: {}, install: {}, boot: {}, ready: {}}}\n",
                opts.max_unavailable_agents, t[0], t[1], t[2], t[3]
            ))?;
            m.insert("rollout".into(), rollout);
            // Any time is maintenance time in a lab (tests that want windows add them).
            m.remove("maintenance_windows");
            // FCOS pinned to the newest stand-in release: a lab never follows the official
            // stream (a test that follows one serves it on loopback and removes the pin).
            if let Some(newest) = opts.fcos_releases.last() {
                let fcos = m
                    .entry("fcos".into())
                    .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
                fcos.as_mapping_mut()
                    .context("fcos is not a mapping")?
                    .insert("release".into(), newest.clone().into());
            }
            Ok(())
        })?;
        let lab = Lab {
            dir: dir.to_path_buf(),
            repo,
            state,
            client_key,
            identity: identity.to_path_buf(),
            boot_listen,
            fleet,
        };
        for name in &opts.held_back {
            for rel in held_back_files(name) {
                let from = lab.repo.join(&rel);
                let to = lab.dir.join("held-back").join(&rel);
                std::fs::create_dir_all(to.parent().unwrap_or(&lab.dir))
                    .with_context(|| format!("creating {}", to.display()))?;
                std::fs::rename(&from, &to)
                    .with_context(|| format!("holding back {}", from.display()))?;
            }
        }
        git_init(&lab.repo)?;
        lab.commit("the cluster, as the lab starts it")?;
        for release in &opts.fcos_releases {
            lab.import_fcos(release)?;
        }
        for version in &opts.k3s_versions {
            lab.import_k3s(version)?;
        }
        Ok(lab)
    }

    /// Put stand-in FCOS artifacts of `release` into the store (the metal image is the
    /// simulator's, which installs `release`).
    pub fn import_fcos(&self, release: &str) -> Result<()> {
        let dir = self.dir.join("artifacts").join(release);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
            Ok(p)
        };
        let metal = artifacts::import_file(
            &self.state,
            &file(
                &format!("fedora-coreos-{release}-metal.x86_64.raw.xz"),
                &sim_metal_image(release),
            )?,
            None,
            false,
        )?;
        let entry = FcosEntry {
            kernel: artifacts::import_file(
                &self.state,
                &file(
                    &format!("fedora-coreos-{release}-live-kernel-x86_64"),
                    b"kernel",
                )?,
                None,
                false,
            )?,
            initramfs: artifacts::import_file(
                &self.state,
                &file(
                    &format!("fedora-coreos-{release}-live-initramfs.x86_64.img"),
                    b"initramfs",
                )?,
                None,
                false,
            )?,
            rootfs: artifacts::import_file(
                &self.state,
                &file(
                    &format!("fedora-coreos-{release}-live-rootfs.x86_64.img"),
                    b"rootfs",
                )?,
                None,
                false,
            )?,
            metal,
        };
        let mut idx = ArtifactIndex::load(&self.state)?;
        idx.fcos.insert(release.to_string(), entry);
        idx.save(&self.state)
    }

    /// Put a stand-in K3s `version` (a script printing that version) into the store.
    pub fn import_k3s(&self, version: &str) -> Result<()> {
        let dir = self.dir.join("artifacts").join(version);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let bin = dir.join("k3s");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\necho 'k3s version {version} (5c1b3d5e)'\necho 'go version go1.22.5'\n"
            ),
        )
        .with_context(|| format!("writing {}", bin.display()))?;
        let script = dir.join("install.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\n# stand-in for the upstream K3s install script\n",
        )
        .with_context(|| format!("writing {}", script.display()))?;
        let entry = K3sEntry {
            binary: artifacts::import_file(&self.state, &bin, Some("k3s"), false)?,
            install_script: artifacts::import_file(
                &self.state,
                &script,
                Some("install.sh"),
                false,
            )?,
        };
        let mut idx = ArtifactIndex::load(&self.state)?;
        idx.k3s.insert(version.to_string(), entry);
        idx.save(&self.state)
    }

    /// Put a held-back node's files into the repository (not committed).
    pub fn add_back(&self, name: &str) -> Result<()> {
        for rel in held_back_files(name) {
            let from = self.dir.join("held-back").join(&rel);
            std::fs::rename(&from, self.repo.join(&rel))
                .with_context(|| format!("adding back {}", from.display()))?;
        }
        Ok(())
    }

    /// Take a node's files out of the repository (not committed).
    pub fn remove_node(&self, name: &str) -> Result<()> {
        for rel in held_back_files(name) {
            let p = self.repo.join(&rel);
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
        Ok(())
    }

    /// Commit every change of the repository; returns the commit id.
    pub fn commit(&self, message: &str) -> Result<String> {
        let repo = git2::Repository::open(&self.repo)
            .map_err(|e| anyhow!("opening {}: {}", self.repo.display(), e.message()))?;
        let git = |e: git2::Error| anyhow!("committing: {}", e.message());
        let mut index = repo.index().map_err(git)?;
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .map_err(git)?;
        index.update_all(["*"], None).map_err(git)?;
        index.write().map_err(git)?;
        let tree = repo
            .find_tree(index.write_tree().map_err(git)?)
            .map_err(git)?;
        let sig = git2::Signature::now("Slipway lab", "lab@slipway.invalid").map_err(git)?;
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(git)?;
        Ok(id.to_string())
    }

    /// Change a file of the repository (not committed).
    pub fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) -> Result<()> {
        let p = self.repo.join(rel);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        repo_fs::write_atomic(&p, f(text).as_bytes())
    }

    /// The arguments every `slipway` command of the lab takes, for `std::process::Command`.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--repo".into(),
            self.repo.clone().into(),
            "--identity".into(),
            self.identity.clone().into(),
            "--state".into(),
            self.state.clone().into(),
            "--ssh-key".into(),
            self.client_key.clone().into(),
            "--boot-listen".into(),
            self.boot_listen.to_string().into(),
        ]
    }
}

/// Rewrite a YAML file through `f` (comments are lost: lab repositories only).
pub fn edit_yaml(path: &Path, f: impl FnOnce(&mut serde_yaml::Value) -> Result<()>) -> Result<()> {
    let mut v: serde_yaml::Value = serde_yaml::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    f(&mut v)?;
    repo_fs::write_atomic(path, serde_yaml::to_string(&v)?.as_bytes())
}

/// A node's files in a repository: its node file and its secrets.
fn held_back_files(name: &str) -> [String; 2] {
    [
        format!("nodes/{name}.yaml"),
        slipway_model::secrets::node_secrets_path(name),
    ]
}

fn git_init(dir: &Path) -> Result<()> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    git2::Repository::init_opts(dir, &opts)
        .map(|_| ())
        .map_err(|e| {
            anyhow!(
                "creating a git repository in {}: {}",
                dir.display(),
                e.message()
            )
        })
}

/// A port on 127.0.0.1 nothing listens on now.
pub fn free_loopback_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    l.local_addr().context("finding a free port")
}
