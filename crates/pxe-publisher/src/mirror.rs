//! Artifact mirror: FCOS stream metadata and K3s releases into the
//! content-addressed store.
//!
//! The store keeps each file at `<store>/<sha256>/<name>`, exactly the path
//! the server publishes at `/artifacts/<sha256>/<name>`. A file only reaches
//! that path after its SHA-256 matched; downloads in flight live under
//! `<store>/.partial/` and resume from there with HTTP `Range`. A digest
//! mismatch deletes the download and is an error, never retried into
//! acceptance.
//!
//! Parsing ([`parse_stream`], [`parse_sha256sums`]) is pure; the I/O sits in
//! [`Mirror`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::{PublishError, Result};
use crate::types::{is_safe_artifact_name, ArtifactRef, ArtifactSet, Sha256Digest};

/// One downloadable file as published upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteArtifact {
    /// Where to fetch it.
    pub url: String,
    /// Expected digest.
    pub sha256: Sha256Digest,
    /// Detached signature URL, if upstream publishes one.
    pub signature_url: Option<String>,
}

impl RemoteArtifact {
    /// File name: the URL's last path segment.
    pub fn file_name(&self) -> Result<String> {
        file_name_of(&self.url)
    }
}

/// The x86_64 metal PXE artifacts of one FCOS release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FcosRelease {
    /// Release version, e.g. `41.20250105.3.0`.
    pub release: String,
    /// Live PXE kernel.
    pub kernel: RemoteArtifact,
    /// Live PXE initramfs.
    pub initramfs: RemoteArtifact,
    /// Live rootfs.
    pub rootfs: RemoteArtifact,
    /// Metal disk image (`raw.xz`).
    pub metal: RemoteArtifact,
}

#[derive(Deserialize)]
struct RawArtifact {
    location: String,
    sha256: String,
    #[serde(default)]
    signature: Option<String>,
}

/// Parses FCOS stream metadata: `architectures.x86_64.artifacts.metal` with
/// `.release`, `.formats.pxe.{kernel,initramfs,rootfs}` and
/// `.formats["raw.xz"].disk`.
pub fn parse_stream(json: &[u8]) -> Result<FcosRelease> {
    let v: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| PublishError::StreamMetadata(format!("not JSON: {e}")))?;
    let metal = v
        .pointer("/architectures/x86_64/artifacts/metal")
        .ok_or_else(|| missing("architectures.x86_64.artifacts.metal"))?;
    let release = metal
        .get("release")
        .and_then(|r| r.as_str())
        .ok_or_else(|| missing("architectures.x86_64.artifacts.metal.release"))?
        .to_string();
    let get = |ptr: &str, label: &str| -> Result<RemoteArtifact> {
        let raw = metal
            .pointer(ptr)
            .ok_or_else(|| missing(&format!("architectures.x86_64.artifacts.metal.{label}")))?;
        let raw: RawArtifact = serde_json::from_value(raw.clone())
            .map_err(|e| PublishError::StreamMetadata(format!("metal.{label}: {e}")))?;
        let sha256 = raw.sha256.parse()?;
        file_name_of(&raw.location)?;
        Ok(RemoteArtifact {
            url: raw.location,
            sha256,
            signature_url: raw.signature.filter(|s| !s.is_empty()),
        })
    };
    Ok(FcosRelease {
        release,
        kernel: get("/formats/pxe/kernel", "formats.pxe.kernel")?,
        initramfs: get("/formats/pxe/initramfs", "formats.pxe.initramfs")?,
        rootfs: get("/formats/pxe/rootfs", "formats.pxe.rootfs")?,
        metal: get("/formats/raw.xz/disk", "formats[\"raw.xz\"].disk")?,
    })
}

fn missing(what: &str) -> PublishError {
    PublishError::StreamMetadata(format!("missing {what}"))
}

/// Looks `file` up in `sha256sum`-format text (`<hex>  <name>` or
/// `<hex> *<name>`, one per line).
pub fn parse_sha256sums(text: &str, file: &str) -> Option<Sha256Digest> {
    text.lines().find_map(|line| {
        let (hex, name) = line.trim().split_once(char::is_whitespace)?;
        let name = name.trim_start().trim_start_matches('*');
        let name = name.rsplit('/').next().unwrap_or(name);
        (name == file).then(|| hex.parse().ok()).flatten()
    })
}

fn file_name_of(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url)
        .map_err(|_| PublishError::StreamMetadata(format!("not a URL: {url:?}")))?;
    let name = parsed
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_string();
    if is_safe_artifact_name(&name) {
        Ok(name)
    } else {
        Err(PublishError::InvalidArtifactName(name))
    }
}

/// Receives download progress; the binary draws the bar.
pub trait Progress: Send + Sync {
    /// A download of `name` starts; `total` if known, `resumed_from` bytes
    /// already on disk.
    fn started(&self, name: &str, total: Option<u64>, resumed_from: u64);
    /// `bytes` more arrived.
    fn advanced(&self, name: &str, bytes: u64);
    /// `name` is verified and in the store.
    fn finished(&self, name: &str);
}

/// Progress sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn started(&self, _: &str, _: Option<u64>, _: u64) {}
    fn advanced(&self, _: &str, _: u64) {}
    fn finished(&self, _: &str) {}
}

/// Download behaviour.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// Attempts per file (at least 1).
    pub attempts: u32,
    /// Pause before attempt n+1 is `backoff * n`.
    pub backoff: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest pause between two received chunks.
    pub read_timeout: Duration,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            attempts: 5,
            backoff: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Where K3s comes from.
#[derive(Clone, Debug)]
pub struct K3sSource {
    /// The `k3s` binary.
    pub binary_url: String,
    /// A `sha256sum`-format file listing the binary (e.g. the release's
    /// `sha256sum-amd64.txt`).
    pub checksum_url: String,
    /// The install script.
    pub install_script_url: String,
    /// The script's digest when the checksum file does not list it.
    pub install_script_sha256: Option<Sha256Digest>,
}

/// The FCOS part of an artifact set, mirrored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredFcos {
    /// Release version.
    pub release: String,
    /// Kernel.
    pub kernel: ArtifactRef,
    /// Initramfs.
    pub initramfs: ArtifactRef,
    /// Rootfs.
    pub rootfs: ArtifactRef,
    /// Metal image; `signature_available` if its `.sig` was mirrored.
    pub metal: ArtifactRef,
}

impl MirroredFcos {
    /// Completes an [`ArtifactSet`] with the K3s files.
    pub fn with_k3s(self, k3s_binary: ArtifactRef, k3s_install_script: ArtifactRef) -> ArtifactSet {
        ArtifactSet {
            kernel: self.kernel,
            initramfs: self.initramfs,
            rootfs: self.rootfs,
            metal: self.metal,
            k3s_binary,
            k3s_install_script,
        }
    }
}

/// Downloads into the content-addressed store.
#[derive(Debug, Clone)]
pub struct Mirror {
    client: reqwest::Client,
    store: PathBuf,
    config: MirrorConfig,
}

impl Mirror {
    /// A mirror writing into `store`.
    pub fn new(store: impl Into<PathBuf>, config: MirrorConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PublishError::DownloadFailed {
                url: String::new(),
                attempts: 0,
                last_error: format!("building HTTP client: {e}"),
            })?;
        Ok(Mirror {
            client,
            store: store.into(),
            config,
        })
    }

    /// Path of a stored artifact.
    pub fn store_path(&self, sha256: &Sha256Digest, name: &str) -> PathBuf {
        self.store.join(sha256.to_hex()).join(name)
    }

    /// Fetches the stream metadata at `stream_url` and mirrors the release
    /// it names (kernel, initramfs, rootfs, metal image and its signature).
    pub async fn mirror_fcos(
        &self,
        stream_url: &str,
        progress: &dyn Progress,
    ) -> Result<MirroredFcos> {
        let json = self.get_small(stream_url).await?;
        let release = parse_stream(&json)?;
        tracing::info!(release = %release.release, "mirroring Fedora CoreOS release");
        let kernel = self
            .fetch(&release.kernel.url, release.kernel.sha256, progress)
            .await?;
        let initramfs = self
            .fetch(&release.initramfs.url, release.initramfs.sha256, progress)
            .await?;
        let rootfs = self
            .fetch(&release.rootfs.url, release.rootfs.sha256, progress)
            .await?;
        let mut metal = self
            .fetch(&release.metal.url, release.metal.sha256, progress)
            .await?;
        if let Some(sig_url) = &release.metal.signature_url {
            let path = self.store_path(&metal.sha256, &format!("{}.sig", metal.name));
            if tokio::fs::metadata(&path).await.is_err() {
                let sig = self.get_small(sig_url).await?;
                write_atomic(&path, &sig).await?;
            }
            metal.signature_available = true;
        } else {
            tracing::warn!(image = %metal.name, "no signature published for the metal image; installs will use coreos.inst.insecure (sha256-verified)");
        }
        Ok(MirroredFcos {
            release: release.release,
            kernel,
            initramfs,
            rootfs,
            metal,
        })
    }

    /// Mirrors the K3s binary and install script; returns (binary, script).
    pub async fn mirror_k3s(
        &self,
        source: &K3sSource,
        progress: &dyn Progress,
    ) -> Result<(ArtifactRef, ArtifactRef)> {
        let sums = self.get_small(&source.checksum_url).await?;
        let sums = String::from_utf8_lossy(&sums);
        let bin_name = file_name_of(&source.binary_url)?;
        let bin_sha =
            parse_sha256sums(&sums, &bin_name).ok_or_else(|| PublishError::ChecksumMissing {
                file: bin_name.clone(),
                checksum_url: source.checksum_url.clone(),
            })?;
        let script_name = file_name_of(&source.install_script_url)?;
        let script_sha = parse_sha256sums(&sums, &script_name)
            .or(source.install_script_sha256)
            .ok_or_else(|| PublishError::ChecksumMissing {
                file: script_name.clone(),
                checksum_url: source.checksum_url.clone(),
            })?;
        let bin = self.fetch(&source.binary_url, bin_sha, progress).await?;
        let script = self
            .fetch(&source.install_script_url, script_sha, progress)
            .await?;
        Ok((bin, script))
    }

    /// Downloads `url` into the store as `<sha256>/<file name>` unless it is
    /// already there, verifying the digest. Resumes partial downloads and
    /// retries transient failures up to `attempts` times.
    pub async fn fetch(
        &self,
        url: &str,
        sha256: Sha256Digest,
        progress: &dyn Progress,
    ) -> Result<ArtifactRef> {
        let name = file_name_of(url)?;
        let dest = self.store_path(&sha256, &name);
        if let Ok(meta) = tokio::fs::metadata(&dest).await {
            tracing::debug!(name, "already in the store");
            return Ok(ArtifactRef {
                name,
                sha256,
                size: meta.len(),
                signature_available: false,
            });
        }
        let partial_dir = self.store.join(".partial");
        tokio::fs::create_dir_all(&partial_dir)
            .await
            .map_err(|e| PublishError::io("creating", &partial_dir, e))?;
        let partial = partial_dir.join(format!("{}-{}", sha256.to_hex(), name));
        let attempts = self.config.attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.backoff * (attempt - 1)).await;
            }
            match self.try_download(url, &name, &partial, progress).await {
                Ok(()) => {
                    let actual = hash_file(&partial).await?;
                    if actual != sha256 {
                        let _ = tokio::fs::remove_file(&partial).await;
                        return Err(PublishError::DigestMismatch {
                            name,
                            expected: sha256.to_hex(),
                            actual: actual.to_hex(),
                        });
                    }
                    let size = finalize(&partial, &dest).await?;
                    progress.finished(&name);
                    tracing::info!(name, sha256 = %sha256, size, "artifact mirrored and verified");
                    return Ok(ArtifactRef {
                        name,
                        sha256,
                        size,
                        signature_available: false,
                    });
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    tracing::warn!(url, attempt, attempts, error = %e, "download attempt failed");
                    last_error = e;
                }
            }
        }
        Err(PublishError::DownloadFailed {
            url: url.to_string(),
            attempts,
            last_error,
        })
    }

    async fn try_download(
        &self,
        url: &str,
        name: &str,
        partial: &Path,
        progress: &dyn Progress,
    ) -> std::result::Result<(), Attempt> {
        let have = tokio::fs::metadata(partial)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let mut req = self.client.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Attempt::Retry(e.to_string()))?;
        let status = resp.status();
        let (mut file, offset) = match status.as_u16() {
            206 if have > 0 => {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if start != Some(have) {
                    let _ = tokio::fs::remove_file(partial).await;
                    return Err(Attempt::Retry(format!(
                        "server resumed at {start:?}, wanted {have}"
                    )));
                }
                let f = tokio::fs::OpenOptions::new()
                    .append(true)
                    .open(partial)
                    .await
                    .map_err(|e| Attempt::Fatal(PublishError::io("opening", partial, e)))?;
                (f, have)
            }
            200 => {
                let f = tokio::fs::File::create(partial)
                    .await
                    .map_err(|e| Attempt::Fatal(PublishError::io("creating", partial, e)))?;
                (f, 0)
            }
            // The partial file is already complete: let the digest decide.
            416 if have > 0 => return Ok(()),
            s if (400..500).contains(&s) && s != 408 && s != 429 => {
                return Err(Attempt::Fatal(PublishError::DownloadFailed {
                    url: url.to_string(),
                    attempts: 1,
                    last_error: format!("HTTP {status}"),
                }))
            }
            _ => return Err(Attempt::Retry(format!("HTTP {status}"))),
        };
        let total = resp.content_length().map(|l| l + offset);
        progress.started(name, total, offset);
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Attempt::Retry(format!("body: {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| Attempt::Fatal(PublishError::io("writing", partial, e)))?;
            progress.advanced(name, chunk.len() as u64);
        }
        file.sync_all()
            .await
            .map_err(|e| Attempt::Fatal(PublishError::io("syncing", partial, e)))?;
        Ok(())
    }

    async fn get_small(&self, url: &str) -> Result<Vec<u8>> {
        let attempts = self.config.attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.backoff * (attempt - 1)).await;
            }
            let result = async {
                let resp = self.client.get(url).send().await?.error_for_status()?;
                resp.bytes().await
            }
            .await;
            match result {
                Ok(b) if b.len() <= 16 * 1024 * 1024 => return Ok(b.to_vec()),
                Ok(b) => last_error = format!("response too large ({} bytes)", b.len()),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(PublishError::DownloadFailed {
            url: url.to_string(),
            attempts,
            last_error,
        })
    }
}

enum Attempt {
    Retry(String),
    Fatal(PublishError),
}

fn content_range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

async fn hash_file(path: &Path) -> Result<Sha256Digest> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| PublishError::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| PublishError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
}

async fn finalize(partial: &Path, dest: &Path) -> Result<u64> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| PublishError::io("creating", dir, e))?;
    tokio::fs::rename(partial, dest)
        .await
        .map_err(|e| PublishError::io("renaming", dest, e))?;
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
    tokio::fs::metadata(dest)
        .await
        .map(|m| m.len())
        .map_err(|e| PublishError::io("reading", dest, e))
}

async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| PublishError::io("creating", dir, e))?;
    let tmp = path.with_extension("tmp-write");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| PublishError::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .await
        .map_err(|e| PublishError::io("writing", &tmp, e))?;
    f.sync_all()
        .await
        .map_err(|e| PublishError::io("syncing", &tmp, e))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| PublishError::io("renaming", path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STREAM: &str = include_str!("../tests/fixtures/stream.json");

    #[test]
    fn parses_fixture_stream() {
        let r = parse_stream(STREAM.as_bytes()).unwrap();
        assert_eq!(r.release, "41.20250105.3.0");
        assert!(r.kernel.url.ends_with("-live-kernel-x86_64"));
        assert_eq!(
            r.kernel.file_name().unwrap(),
            "fedora-coreos-41.20250105.3.0-live-kernel-x86_64"
        );
        assert!(r.metal.url.ends_with("metal.x86_64.raw.xz"));
        assert!(r
            .metal
            .signature_url
            .as_deref()
            .unwrap()
            .ends_with(".raw.xz.sig"));
        assert_eq!(
            r.rootfs.sha256.to_hex(),
            "3333333333333333333333333333333333333333333333333333333333333333"
        );
    }

    #[test]
    fn stream_errors_name_the_missing_field() {
        let mut v: serde_json::Value = serde_json::from_str(STREAM).unwrap();
        v["architectures"]["x86_64"]["artifacts"]["metal"]["formats"]
            .as_object_mut()
            .unwrap()
            .remove("raw.xz");
        let err = parse_stream(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("raw.xz"), "{err}");
        let err = parse_stream(b"{}").unwrap_err().to_string();
        assert!(
            err.contains("architectures.x86_64.artifacts.metal"),
            "{err}"
        );
        assert!(parse_stream(b"not json").is_err());
    }

    #[test]
    fn stream_refuses_traversing_file_names() {
        let bad = STREAM.replace("-live-kernel-x86_64\"", "/..\"");
        assert!(parse_stream(bad.as_bytes()).is_err());
    }

    #[test]
    fn sha256sums_lookup() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let text = format!("{a}  k3s\n{b} *dist/install.sh\nnot a line\n");
        assert_eq!(parse_sha256sums(&text, "k3s").unwrap().to_hex(), a);
        assert_eq!(parse_sha256sums(&text, "install.sh").unwrap().to_hex(), b);
        assert!(parse_sha256sums(&text, "k3s-arm64").is_none());
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
    }
}
