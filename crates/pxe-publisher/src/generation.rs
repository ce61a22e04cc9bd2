//! Atomic on-disk generations of boot scripts and manifests.
//!
//! Layout under the state directory:
//!
//! ```text
//! generations/<id>/manifest.json      node, MACs, ignition sha256, artifact refs
//! generations/<id>/boot.ipxe          chain script
//! generations/<id>/localboot.ipxe
//! generations/<id>/unknown.ipxe       what unknown MACs get
//! generations/<id>/mac/<aa-bb-..>.ipxe  per-MAC install script (token placeholder)
//! current -> generations/<id>         swapped atomically (symlink + rename)
//! ```
//!
//! A generation is built in `generations/.tmp-<id>`, every file and directory
//! fsynced, then renamed into place; only then is `current` switched. A
//! failure at any step leaves `current` untouched and no half-built
//! directory under a visible name. Ignition bytes are never written: the
//! manifest records only their sha256.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{PublishError, Result};
use crate::ipxe::{self, InstallParams, MAGIC};
use crate::types::{
    is_safe_artifact_name, validate_node_name, ArtifactSet, BaseUrl, GenerationInput, MacAddr,
    NodeRole, Sha256Digest, UnknownMacPolicy,
};

const GENERATIONS: &str = "generations";
const CURRENT: &str = "current";
const MANIFEST: &str = "manifest.json";
const MANIFEST_FORMAT: u32 = 1;

/// A generation's name: `<sequence, 8 digits>-<commit, up to 12 chars>`.
/// Sequence order is publish order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GenerationId(String);

impl GenerationId {
    fn new(seq: u64, commit: &str) -> Self {
        let short: String = commit.chars().take(12).collect();
        GenerationId(format!("{seq:08}-{short}"))
    }

    /// Parses a directory name; `None` if it is not a generation.
    pub fn parse(name: &str) -> Option<Self> {
        let (seq, rest) = name.split_once('-')?;
        let ok = seq.len() == 8
            && seq.bytes().all(|b| b.is_ascii_digit())
            && !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| GenerationId(name.to_string()))
    }

    /// Publish sequence number.
    pub fn sequence(&self) -> u64 {
        self.0
            .split_once('-')
            .and_then(|(s, _)| s.parse().ok())
            .unwrap_or(0)
    }

    /// The directory name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GenerationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node as recorded in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestNode {
    /// Node name.
    pub name: String,
    /// K3s role.
    pub role: NodeRole,
    /// MACs served this node's scripts.
    pub macs: Vec<MacAddr>,
    /// Install disk.
    pub install_device: String,
    /// Extra kernel arguments.
    pub kargs: Vec<String>,
    /// Digest of the rendered Ignition (the bytes stay in memory).
    pub ignition_sha256: Sha256Digest,
}

/// The non-secret record of a generation, written as `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// Generation id.
    pub id: GenerationId,
    /// Cluster repository commit.
    pub commit: String,
    /// Seconds since the Unix epoch at publish time.
    pub created_unix: u64,
    /// Base URL the scripts point at.
    pub base_url: BaseUrl,
    /// Artifact set.
    pub artifacts: ArtifactSet,
    /// Whether install lines carry `coreos.inst.insecure` (metal image
    /// verified by sha256 only, no signature available).
    pub metal_image_insecure: bool,
    /// What unknown MACs get.
    pub unknown_mac: UnknownMacPolicy,
    /// Nodes in input order.
    pub nodes: Vec<ManifestNode>,
}

/// A generation loaded into memory: manifest plus rendered scripts.
#[derive(Clone, Debug)]
pub struct Generation {
    manifest: Manifest,
    /// Install templates by node name.
    install: HashMap<String, String>,
    /// Owner of each known MAC.
    owner: HashMap<MacAddr, String>,
    chain: String,
    localboot: String,
    unknown: String,
}

impl Generation {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Generation id.
    pub fn id(&self) -> &GenerationId {
        &self.manifest.id
    }

    /// Node owning `mac`, if any.
    pub fn node_for_mac(&self, mac: &MacAddr) -> Option<&str> {
        self.owner.get(mac).map(String::as_str)
    }

    /// A node's manifest entry.
    pub fn node(&self, name: &str) -> Option<&ManifestNode> {
        self.manifest.nodes.iter().find(|n| n.name == name)
    }

    /// A node's install script with the token placeholder.
    pub fn install_template(&self, node: &str) -> Option<&str> {
        self.install.get(node).map(String::as_str)
    }

    /// `boot.ipxe`.
    pub fn chain_script(&self) -> &str {
        &self.chain
    }

    /// `localboot.ipxe`.
    pub fn localboot_script(&self) -> &str {
        &self.localboot
    }

    /// What unknown MACs get.
    pub fn unknown_script(&self) -> &str {
        &self.unknown
    }

    /// Every file of the generation as (relative path, contents), for
    /// writing or exporting.
    pub fn files(&self) -> Result<Vec<(PathBuf, Vec<u8>)>> {
        let manifest = serde_json::to_vec_pretty(&self.manifest).map_err(|e| {
            PublishError::CorruptManifest {
                path: PathBuf::from(MANIFEST),
                source: e,
            }
        })?;
        let mut files = vec![
            (PathBuf::from(MANIFEST), manifest),
            (PathBuf::from("boot.ipxe"), self.chain.clone().into_bytes()),
            (
                PathBuf::from("localboot.ipxe"),
                self.localboot.clone().into_bytes(),
            ),
            (
                PathBuf::from("unknown.ipxe"),
                self.unknown.clone().into_bytes(),
            ),
        ];
        let mut by_mac: BTreeMap<MacAddr, &str> = BTreeMap::new();
        for (mac, node) in &self.owner {
            by_mac.insert(*mac, node);
        }
        for (mac, node) in by_mac {
            if let Some(t) = self.install.get(node) {
                files.push((mac_file(&mac), t.clone().into_bytes()));
            }
        }
        Ok(files)
    }
}

fn mac_file(mac: &MacAddr) -> PathBuf {
    PathBuf::from("mac").join(format!("{}.ipxe", mac.hyphenated()))
}

/// Validates `input` and renders the generation it describes. Pure.
pub fn render_generation(
    input: &GenerationInput,
    id: GenerationId,
    created_unix: u64,
) -> Result<Generation> {
    validate_commit(&input.commit)?;
    for (_, a) in input.artifacts.iter() {
        if !is_safe_artifact_name(&a.name) {
            return Err(PublishError::InvalidArtifactName(a.name.clone()));
        }
    }
    let unknown = match &input.unknown_mac {
        UnknownMacPolicy::Localboot => ipxe::localboot_script(),
        UnknownMacPolicy::Script { name, body } => {
            if body.lines().next().map(str::trim_end) != Some(MAGIC) {
                return Err(PublishError::ScriptWithoutMagic(name.clone()));
            }
            body.clone()
        }
    };
    let mut owner: HashMap<MacAddr, String> = HashMap::new();
    let mut install = HashMap::new();
    let mut nodes = Vec::with_capacity(input.nodes.len());
    for node in &input.nodes {
        validate_node_name(&node.name)?;
        if install.contains_key(&node.name) {
            return Err(PublishError::DuplicateNode(node.name.clone()));
        }
        if node.macs.is_empty() {
            return Err(PublishError::NodeWithoutMac(node.name.clone()));
        }
        for mac in &node.macs {
            if let Some(first) = owner.get(mac) {
                return Err(PublishError::DuplicateMac {
                    mac: mac.to_string(),
                    first: first.clone(),
                    second: node.name.clone(),
                });
            }
            owner.insert(*mac, node.name.clone());
        }
        let template = ipxe::install_script_template(&InstallParams {
            base: &input.base_url,
            node: &node.name,
            install_device: &node.install_device,
            kargs: &node.kargs,
            artifacts: &input.artifacts,
        })?;
        install.insert(node.name.clone(), template);
        nodes.push(ManifestNode {
            name: node.name.clone(),
            role: node.role,
            macs: node.macs.clone(),
            install_device: node.install_device.clone(),
            kargs: node.kargs.clone(),
            ignition_sha256: node.ignition.sha256(),
        });
    }
    Ok(Generation {
        manifest: Manifest {
            format: MANIFEST_FORMAT,
            id,
            commit: input.commit.clone(),
            created_unix,
            base_url: input.base_url.clone(),
            artifacts: input.artifacts.clone(),
            metal_image_insecure: input.artifacts.metal_image_insecure(),
            unknown_mac: input.unknown_mac.clone(),
            nodes,
        },
        install,
        owner,
        chain: ipxe::chain_script(&input.base_url),
        localboot: ipxe::localboot_script(),
        unknown,
    })
}

fn validate_commit(commit: &str) -> Result<()> {
    let ok = !commit.is_empty()
        && commit.len() <= 64
        && !commit.starts_with('.')
        && commit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PublishError::InvalidCommit(
            commit.chars().take(80).collect(),
        ))
    }
}

/// Owns the state directory's generations. One `Publisher` per state
/// directory (publishes are serialized inside the process; two processes
/// must not publish into the same directory at once).
#[derive(Debug)]
pub struct Publisher {
    state_dir: PathBuf,
    keep: usize,
    lock: Mutex<()>,
    #[cfg(test)]
    fail_after_files: Option<usize>,
}

impl Publisher {
    /// Opens (creating if needed) `state_dir`, keeping `keep` generations
    /// besides the current one. Removes leftovers of interrupted publishes.
    pub fn open(state_dir: impl Into<PathBuf>, keep: usize) -> Result<Self> {
        let state_dir = state_dir.into();
        let gens = state_dir.join(GENERATIONS);
        fs::create_dir_all(&gens).map_err(|e| PublishError::io("creating", &gens, e))?;
        let entries = fs::read_dir(&gens).map_err(|e| PublishError::io("listing", &gens, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") || name.starts_with(".trash-") {
                tracing::warn!(dir = %name, "removing leftover of an interrupted publish");
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let _ = fs::remove_file(state_dir.join(".current.tmp"));
        Ok(Publisher {
            state_dir,
            keep,
            lock: Mutex::new(()),
            #[cfg(test)]
            fail_after_files: None,
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Directory of a generation (for export, e.g. upload to a remote boot
    /// server). Holds no secrets.
    pub fn generation_dir(&self, id: &GenerationId) -> PathBuf {
        self.state_dir.join(GENERATIONS).join(id.as_str())
    }

    /// Renders `input` into a new generation and makes it current.
    pub fn publish(&self, input: &GenerationInput) -> Result<GenerationId> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let next = self.list()?.last().map_or(1, |id| id.sequence() + 1);
        let id = GenerationId::new(next, &input.commit);
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let generation = render_generation(input, id.clone(), created)?;
        self.write_generation(&generation)?;
        self.switch_current(&id)?;
        tracing::info!(generation = %id, commit = %input.commit, nodes = input.nodes.len(), "published generation");
        self.prune(&id);
        Ok(id)
    }

    fn write_generation(&self, generation: &Generation) -> Result<()> {
        let gens = self.state_dir.join(GENERATIONS);
        let tmp = gens.join(format!(".tmp-{}", generation.id()));
        let _ = fs::remove_dir_all(&tmp);
        let result = (|| {
            fs::create_dir_all(tmp.join("mac"))
                .map_err(|e| PublishError::io("creating", &tmp, e))?;
            let files = generation.files()?;
            for (i, (rel, contents)) in files.iter().enumerate() {
                #[cfg(test)]
                if self.fail_after_files == Some(i) {
                    return Err(PublishError::io(
                        "writing",
                        tmp.join(rel),
                        std::io::Error::other("injected failure"),
                    ));
                }
                let _ = i;
                write_synced(&tmp.join(rel), contents)?;
            }
            sync_dir(&tmp.join("mac"))?;
            sync_dir(&tmp)?;
            let dest = gens.join(generation.id().as_str());
            fs::rename(&tmp, &dest).map_err(|e| PublishError::io("renaming", &dest, e))?;
            sync_dir(&gens)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn switch_current(&self, id: &GenerationId) -> Result<()> {
        let link_tmp = self.state_dir.join(".current.tmp");
        let _ = fs::remove_file(&link_tmp);
        let target = Path::new(GENERATIONS).join(id.as_str());
        std::os::unix::fs::symlink(&target, &link_tmp)
            .map_err(|e| PublishError::io("creating symlink", &link_tmp, e))?;
        let current = self.state_dir.join(CURRENT);
        if let Err(e) = fs::rename(&link_tmp, &current) {
            let _ = fs::remove_file(&link_tmp);
            return Err(PublishError::io("switching", &current, e));
        }
        sync_dir(&self.state_dir)
    }

    /// Generations on disk, oldest first.
    pub fn list(&self) -> Result<Vec<GenerationId>> {
        let gens = self.state_dir.join(GENERATIONS);
        let mut ids: Vec<GenerationId> = fs::read_dir(&gens)
            .map_err(|e| PublishError::io("listing", &gens, e))?
            .flatten()
            .filter_map(|e| GenerationId::parse(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_by_key(|id| (id.sequence(), id.clone()));
        Ok(ids)
    }

    /// The generation `current` points at, if any.
    pub fn current_id(&self) -> Result<Option<GenerationId>> {
        let current = self.state_dir.join(CURRENT);
        match fs::read_link(&current) {
            Ok(target) => Ok(target
                .file_name()
                .and_then(|n| GenerationId::parse(&n.to_string_lossy()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PublishError::io("reading", &current, e)),
        }
    }

    /// Loads the current generation, if any.
    pub fn current(&self) -> Result<Option<Generation>> {
        match self.current_id()? {
            Some(id) => self.load(&id).map(Some),
            None => Ok(None),
        }
    }

    /// Switches `current` back to the newest generation older than it.
    pub fn rollback(&self) -> Result<GenerationId> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current_id()?.ok_or(PublishError::NoActiveGeneration)?;
        let previous = self
            .list()?
            .into_iter()
            .rfind(|id| id.sequence() < current.sequence())
            .ok_or(PublishError::NoPreviousGeneration)?;
        self.load(&previous)?;
        self.switch_current(&previous)?;
        tracing::warn!(from = %current, to = %previous, "rolled back boot generation");
        Ok(previous)
    }

    /// Reads a generation from disk.
    pub fn load(&self, id: &GenerationId) -> Result<Generation> {
        let dir = self.generation_dir(id);
        if !dir.is_dir() {
            return Err(PublishError::GenerationNotFound(id.to_string()));
        }
        let read = |rel: &Path| -> Result<String> {
            let p = dir.join(rel);
            fs::read_to_string(&p).map_err(|e| PublishError::io("reading", p, e))
        };
        let manifest_path = dir.join(MANIFEST);
        let manifest: Manifest =
            serde_json::from_str(&read(Path::new(MANIFEST))?).map_err(|e| {
                PublishError::CorruptManifest {
                    path: manifest_path,
                    source: e,
                }
            })?;
        let mut install = HashMap::new();
        let mut owner = HashMap::new();
        for node in &manifest.nodes {
            for mac in &node.macs {
                owner.insert(*mac, node.name.clone());
                if !install.contains_key(&node.name) {
                    install.insert(node.name.clone(), read(&mac_file(mac))?);
                }
            }
        }
        Ok(Generation {
            install,
            owner,
            chain: read(Path::new("boot.ipxe"))?,
            localboot: read(Path::new("localboot.ipxe"))?,
            unknown: read(Path::new("unknown.ipxe"))?,
            manifest,
        })
    }

    /// Removes generations beyond `keep`, never the current one.
    fn prune(&self, current: &GenerationId) {
        let Ok(ids) = self.list() else { return };
        let keep: HashSet<&GenerationId> = ids
            .iter()
            .rev()
            .filter(|id| *id != current)
            .take(self.keep)
            .chain(std::iter::once(current))
            .collect();
        let gens = self.state_dir.join(GENERATIONS);
        for id in ids.iter().filter(|id| !keep.contains(id)) {
            let trash = gens.join(format!(".trash-{id}"));
            if fs::rename(gens.join(id.as_str()), &trash).is_ok() {
                let _ = fs::remove_dir_all(&trash);
                tracing::debug!(generation = %id, "pruned old generation");
            }
        }
    }
}

fn write_synced(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| PublishError::io("creating", path, e))?;
    f.write_all(contents)
        .map_err(|e| PublishError::io("writing", path, e))?;
    f.sync_all()
        .map_err(|e| PublishError::io("syncing", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PublishError::io("syncing", dir, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_support::sample_input;

    #[test]
    fn publish_writes_manifest_and_scripts_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::open(dir.path(), 2).unwrap();
        let input = sample_input("c0ffee1234567890");
        let id = p.publish(&input).unwrap();
        assert_eq!(p.current_id().unwrap(), Some(id.clone()));
        let g = p.load(&id).unwrap();
        assert_eq!(g.node_for_mac(&input.nodes[1].macs[1]), Some("w1"));
        assert_eq!(
            g.node("w1").unwrap().ignition_sha256,
            input.nodes[1].ignition.sha256()
        );
        // No file of the generation contains the Ignition's secret text.
        for entry in walk(dir.path()) {
            let text = fs::read(&entry).unwrap();
            let hay = String::from_utf8_lossy(&text);
            assert!(!hay.contains("SECRET-K3S-TOKEN"), "{}", entry.display());
        }
        let script = fs::read_to_string(
            p.generation_dir(&id)
                .join("mac")
                .join(format!("{}.ipxe", input.nodes[1].macs[1].hyphenated())),
        )
        .unwrap();
        assert!(script.starts_with("#!ipxe\n"));
        assert!(script.contains(crate::ipxe::TOKEN_PLACEHOLDER));
    }

    #[test]
    fn keeps_n_previous_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::open(dir.path(), 2).unwrap();
        let ids: Vec<_> = (0..5)
            .map(|i| p.publish(&sample_input(&format!("commit{i}"))).unwrap())
            .collect();
        assert_eq!(p.list().unwrap(), ids[2..].to_vec());
        assert_eq!(p.rollback().unwrap(), ids[3]);
        assert_eq!(p.current_id().unwrap(), Some(ids[3].clone()));
        assert_eq!(p.current().unwrap().unwrap().manifest().commit, "commit3");
        assert_eq!(p.rollback().unwrap(), ids[2]);
        assert!(matches!(
            p.rollback(),
            Err(PublishError::NoPreviousGeneration)
        ));
        // Publishing after a rollback continues the sequence.
        let next = p.publish(&sample_input("after")).unwrap();
        assert_eq!(next.sequence(), 6);
    }

    #[test]
    fn failed_publish_keeps_previous_and_leaves_no_partial_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Publisher::open(dir.path(), 3).unwrap();
        let first = p.publish(&sample_input("good")).unwrap();
        p.fail_after_files = Some(2);
        let err = p.publish(&sample_input("bad")).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(p.current_id().unwrap(), Some(first.clone()));
        assert_eq!(p.list().unwrap(), vec![first]);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join(GENERATIONS))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn invalid_input_is_refused_before_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::open(dir.path(), 3).unwrap();
        let first = p.publish(&sample_input("good")).unwrap();
        let mut dup = sample_input("dup");
        let mac = dup.nodes[0].macs[0];
        dup.nodes[1].macs.push(mac);
        assert!(matches!(
            p.publish(&dup),
            Err(PublishError::DuplicateMac { .. })
        ));
        let mut bad_script = sample_input("s");
        bad_script.unknown_mac = UnknownMacPolicy::Script {
            name: "discover".into(),
            body: "chain http://x/\n".into(),
        };
        assert!(matches!(
            p.publish(&bad_script),
            Err(PublishError::ScriptWithoutMagic(_))
        ));
        assert_eq!(p.list().unwrap(), vec![first]);
    }

    #[test]
    fn open_cleans_interrupted_publish() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("generations/.tmp-00000009-x/mac")).unwrap();
        let p = Publisher::open(dir.path(), 1).unwrap();
        assert!(!dir.path().join("generations/.tmp-00000009-x").exists());
        assert!(p.list().unwrap().is_empty());
        assert!(p.current().unwrap().is_none());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !e.file_type().unwrap().is_symlink() {
                out.extend(walk(&p));
            } else if p.is_file() {
                out.push(p);
            }
        }
        out
    }
}
