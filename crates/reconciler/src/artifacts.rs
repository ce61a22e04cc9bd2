//! The artifact index: which FCOS releases and K3s versions are in Slipway's content-addressed
//! store (`<state>/store/<sha256>/<name>`), recorded in `<state>/artifacts.json`. Filled by
//! `slipway mirror` (downloads, verified) or `slipway artifacts import` (local files, for
//! air-gapped sites and tests); read by everything that renders, to resolve the cluster's
//! FCOS stream/pin and K3s channel/pin to concrete, hashed artifacts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use slipway_ignition_gen::profile::Artifact;
use slipway_model::inventory::{Cluster, K3sRelease};
use slipway_pxe_publisher::{ArtifactRef, ArtifactSet, Sha256Digest};

use crate::repo_fs;

/// An FCOS release's PXE and metal artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcosEntry {
    /// Live kernel.
    pub kernel: ArtifactRef,
    /// Live initramfs.
    pub initramfs: ArtifactRef,
    /// Live rootfs.
    pub rootfs: ArtifactRef,
    /// Metal image coreos-installer writes.
    pub metal: ArtifactRef,
}

/// A K3s version's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sEntry {
    /// The `k3s` binary.
    pub binary: ArtifactRef,
    /// The upstream install script.
    pub install_script: ArtifactRef,
}

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactIndex {
    /// By FCOS release.
    pub fcos: BTreeMap<String, FcosEntry>,
    /// By K3s version.
    pub k3s: BTreeMap<String, K3sEntry>,
    /// Releases a rollout failed with: never chosen again by following a stream or a
    /// channel (a pin still names them), so a bad release is not re-applied in a loop.
    #[serde(default)]
    pub failed: FailedReleases,
}

/// Releases that failed on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedReleases {
    /// FCOS releases.
    #[serde(default)]
    pub fcos: std::collections::BTreeSet<String>,
    /// K3s versions.
    #[serde(default)]
    pub k3s: std::collections::BTreeSet<String>,
}

/// The concrete artifacts a cluster resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// FCOS release.
    pub fcos_release: String,
    /// Its artifacts.
    pub fcos: FcosEntry,
    /// K3s version.
    pub k3s_version: String,
    /// Its artifacts.
    pub k3s: K3sEntry,
}

impl Resolved {
    /// The set the boot server serves.
    pub fn artifact_set(&self) -> ArtifactSet {
        ArtifactSet {
            kernel: self.fcos.kernel.clone(),
            initramfs: self.fcos.initramfs.clone(),
            rootfs: self.fcos.rootfs.clone(),
            metal: self.fcos.metal.clone(),
            k3s_binary: self.k3s.binary.clone(),
            k3s_install_script: self.k3s.install_script.clone(),
        }
    }

    /// The K3s artifacts as the node profile references them.
    pub fn profile_artifacts(&self) -> (Artifact, Artifact) {
        let a = |r: &ArtifactRef| Artifact {
            name: r.name.clone(),
            sha256: r.sha256.to_hex(),
        };
        (a(&self.k3s.binary), a(&self.k3s.install_script))
    }
}

/// `<state>/store`.
pub fn store_dir(state: &Path) -> PathBuf {
    state.join("store")
}

fn index_path(state: &Path) -> PathBuf {
    state.join("artifacts.json")
}

/// Numeric components of a version (`40.20240906.3.0`, `v1.30.4+k3s1`), for ordering.
pub fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

impl ArtifactIndex {
    /// Load the index (empty when the state folder has none yet).
    pub fn load(state: &Path) -> Result<Self> {
        let p = index_path(state);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Save atomically.
    pub fn save(&self, state: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        repo_fs::write_atomic(&index_path(state), &json)
    }

    /// Exactly these versions (a rollout resumed with what it started with).
    pub fn resolve_exact(&self, fcos_release: &str, k3s_version: &str) -> Result<Resolved> {
        let fcos = self.fcos.get(fcos_release).with_context(|| {
            format!("FCOS {fcos_release} is no longer in the artifact store: import it again")
        })?;
        let k3s = self.k3s.get(k3s_version).with_context(|| {
            format!("K3s {k3s_version} is no longer in the artifact store: import it again")
        })?;
        Ok(Resolved {
            fcos_release: fcos_release.to_string(),
            fcos: fcos.clone(),
            k3s_version: k3s_version.to_string(),
            k3s: k3s.clone(),
        })
    }

    /// Resolve the cluster's FCOS and K3s selection to mirrored artifacts.
    pub fn resolve(&self, cluster: &Cluster) -> Result<Resolved> {
        let fcos_release = match &cluster.fcos.release {
            Some(pin) => {
                if !self.fcos.contains_key(pin) {
                    bail!("FCOS {pin} (pinned in cluster.yaml) is not in the artifact store: run `slipway mirror` or `slipway artifacts import`");
                }
                pin.clone()
            }
            None => {
                let cap = cluster.fcos.no_newer_than.as_deref().map(version_key);
                self.fcos
                    .keys()
                    .filter(|r| !self.failed.fcos.contains(*r))
                    .filter(|r| cap.as_ref().is_none_or(|c| version_key(r) <= *c))
                    .max_by_key(|r| version_key(r))
                    .cloned()
                    .context("no FCOS release is in the artifact store: run `slipway mirror` or `slipway artifacts import`")?
            }
        };
        let k3s_version = match &cluster.k3s.release {
            K3sRelease::Pinned(v) => {
                if !self.k3s.contains_key(v) {
                    bail!("K3s {v} (pinned in cluster.yaml) is not in the artifact store: run `slipway mirror` or `slipway artifacts import`");
                }
                v.clone()
            }
            K3sRelease::Channel(c) => self
                .k3s
                .keys()
                .filter(|v| !self.failed.k3s.contains(*v))
                .filter(|v| {
                    cluster
                        .k3s
                        .no_newer_than
                        .as_deref()
                        .is_none_or(|cap| version_key(v) <= version_key(cap))
                })
                .max_by_key(|v| version_key(v))
                .cloned()
                .with_context(|| format!("no K3s version of channel {c} is in the artifact store: run `slipway mirror`"))?,
        };
        Ok(Resolved {
            fcos: self.fcos[&fcos_release].clone(),
            fcos_release,
            k3s: self.k3s[&k3s_version].clone(),
            k3s_version,
        })
    }
}

/// Copy a local file into the store under its sha256, atomically; returns its reference.
pub fn import_file(
    state: &Path,
    file: &Path,
    name: Option<&str>,
    signature_available: bool,
) -> Result<ArtifactRef> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = match name {
        Some(n) => n.to_string(),
        None => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name", file.display()))?,
    };
    if !slipway_pxe_publisher::is_safe_artifact_name(&name) {
        bail!("`{name}` is not a safe artifact name (letters, digits, `.`, `-`, `_`)");
    }
    let sha = Sha256Digest::of(&bytes);
    let dest = store_dir(state).join(sha.to_hex()).join(&name);
    if !dest.exists() {
        repo_fs::write_atomic(&dest, &bytes)?;
    }
    Ok(ArtifactRef {
        name,
        sha256: sha,
        size: bytes.len() as u64,
        signature_available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert!(version_key("40.20240906.3.0") > version_key("40.20240825.3.0"));
        assert!(version_key("41.20241001.1.0") > version_key("40.20241231.3.0"));
        assert!(version_key("v1.30.10+k3s1") > version_key("v1.30.9+k3s2"));
    }

    fn entry(name: &str) -> ArtifactRef {
        ArtifactRef {
            name: name.into(),
            sha256: slipway_pxe_publisher::Sha256Digest::of(name.as_bytes()),
            size: 1,
            signature_available: false,
        }
    }

    #[test]
    fn following_a_channel_or_stream_skips_failed_releases_and_respects_caps() {
        let mut idx = ArtifactIndex::default();
        for r in ["40.20240906.3.0", "40.20241019.3.0", "40.20241103.3.0"] {
            idx.fcos.insert(
                r.into(),
                FcosEntry {
                    kernel: entry("k"),
                    initramfs: entry("i"),
                    rootfs: entry("r"),
                    metal: entry("m"),
                },
            );
        }
        for v in ["v1.30.4+k3s1", "v1.30.6+k3s1", "v1.31.1+k3s1"] {
            idx.k3s.insert(
                v.into(),
                K3sEntry {
                    binary: entry("k3s"),
                    install_script: entry("install.sh"),
                },
            );
        }
        let files = crate::repo_fs::read_repo(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-repo-example"),
        )
        .unwrap();
        let (inv, _) = slipway_model::inventory::load(&files);
        let mut cluster = inv.unwrap().cluster;
        cluster.k3s.release = K3sRelease::Channel("stable".into());
        let r = idx.resolve(&cluster).unwrap();
        assert_eq!(
            (r.fcos_release.as_str(), r.k3s_version.as_str()),
            ("40.20241103.3.0", "v1.31.1+k3s1")
        );
        idx.failed.fcos.insert("40.20241103.3.0".into());
        idx.failed.k3s.insert("v1.31.1+k3s1".into());
        let r = idx.resolve(&cluster).unwrap();
        assert_eq!(
            (r.fcos_release.as_str(), r.k3s_version.as_str()),
            ("40.20241019.3.0", "v1.30.6+k3s1")
        );
        cluster.k3s.no_newer_than = Some("v1.30.5+k3s1".into());
        cluster.fcos.no_newer_than = Some("40.20241001.3.0".into());
        let r = idx.resolve(&cluster).unwrap();
        assert_eq!(
            (r.fcos_release.as_str(), r.k3s_version.as_str()),
            ("40.20240906.3.0", "v1.30.4+k3s1")
        );
        // A pin still names a failed release (the operator asked for it).
        cluster.fcos.release = Some("40.20241103.3.0".into());
        assert_eq!(
            idx.resolve(&cluster).unwrap().fcos_release,
            "40.20241103.3.0"
        );
    }
}
