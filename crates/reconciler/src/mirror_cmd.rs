//! `slipway mirror`: download what cluster.yaml asks for (the FCOS release its stream names,
//! the pinned K3s version) into the content-addressed store, verified, and record it in the
//! artifact index. Only cluster.yaml is read: no secrets, no identity.
//!
//! Resolving the URLs ([`resolve_sources`]) is pure; the downloads go through
//! pxe-publisher's [`Mirror`], and the index is only saved once every file is verified, so a
//! failed mirror leaves the index as it was.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use slipway_model::inventory::{Cluster, K3sRelease, Stream};
use slipway_pxe_publisher::mirror::{K3sSource, Mirror, MirrorConfig, Progress};
use slipway_pxe_publisher::Sha256Digest;

use crate::artifacts::{self, ArtifactIndex, FcosEntry, K3sEntry};
use crate::repo_fs;

/// Where K3s releases are published by default.
pub const DEFAULT_K3S_BASE_URL: &str = "https://github.com/k3s-io/k3s/releases/download";
/// Where the K3s install script is published by default: the script of the same tag as the
/// binary (`{version}` is replaced by the K3s version). The release's checksum file does
/// not list it, so its sha256 comes from `--k3s-install-script-sha256`.
pub const DEFAULT_K3S_INSTALL_SCRIPT_URL: &str =
    "https://raw.githubusercontent.com/k3s-io/k3s/{version}/install.sh";

/// Characters escaped in one URL path segment (a K3s version holds a `+`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'+')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>');

/// `slipway mirror` options.
#[derive(Debug, Clone)]
pub struct MirrorArgs<'a> {
    /// The cluster repository.
    pub repo: &'a Path,
    /// Slipway's state folder.
    pub state: &'a Path,
    /// FCOS stream metadata URL, when cluster.yaml has none.
    pub stream_url: Option<&'a str>,
    /// K3s version overriding cluster.yaml (needed when it only names a channel).
    pub k3s_version: Option<&'a str>,
    /// Base of K3s release downloads.
    pub k3s_base_url: &'a str,
    /// The install script.
    pub k3s_install_script_url: &'a str,
    /// The install script's sha256, when the checksum file does not list it.
    pub k3s_install_script_sha256: Option<&'a str>,
}

/// The URLs one mirror run downloads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// FCOS stream metadata.
    pub stream_url: String,
    /// K3s version.
    pub k3s_version: String,
    /// K3s files.
    pub k3s: K3sUrls,
}

/// Where one K3s version's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sUrls {
    /// The binary.
    pub binary_url: String,
    /// `sha256sum-amd64.txt` of the release.
    pub checksum_url: String,
    /// The install script.
    pub install_script_url: String,
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stable => "stable",
        Stream::Testing => "testing",
        Stream::Next => "next",
    }
}

/// The official stream metadata URL of an FCOS stream.
pub fn official_stream_url(stream: Stream) -> String {
    format!(
        "https://builds.coreos.fedoraproject.org/streams/{}.json",
        stream_name(stream)
    )
}

/// Work out every URL from cluster.yaml and the command-line overrides. cluster.yaml's
/// `fcos.stream_url` wins over `--stream-url`, which wins over the official URL; the K3s
/// version is `--k3s-version`, else the pin (a channel alone cannot be mirrored offline).
pub fn resolve_sources(cluster: &Cluster, args: &MirrorArgs<'_>) -> Result<Sources> {
    let stream_url = cluster
        .fcos
        .stream_url
        .clone()
        .or_else(|| args.stream_url.map(str::to_string))
        .unwrap_or_else(|| official_stream_url(cluster.fcos.stream));
    let k3s_version = match (args.k3s_version, &cluster.k3s.release) {
        (Some(v), _) => v.to_string(),
        (None, K3sRelease::Pinned(v)) => v.clone(),
        (None, K3sRelease::Channel(c)) => bail!(
            "cluster.yaml follows the K3s channel `{c}`, which needs the channel server to resolve: pin `k3s.version` or pass --k3s-version"
        ),
    };
    if k3s_version.trim().is_empty() {
        bail!("the K3s version is empty");
    }
    let base = args.k3s_base_url.trim_end_matches('/');
    let v = utf8_percent_encode(&k3s_version, SEGMENT).to_string();
    Ok(Sources {
        stream_url,
        k3s: K3sUrls {
            binary_url: format!("{base}/{v}/k3s"),
            checksum_url: format!("{base}/{v}/sha256sum-amd64.txt"),
            install_script_url: args.k3s_install_script_url.replace("{version}", &v),
        },
        k3s_version,
    })
}

/// The last path segment of a URL, if it has one the store can use as a file name.
fn url_file_name(u: &str) -> Option<String> {
    let parsed = url::Url::parse(u).ok()?;
    let name = parsed.path_segments()?.next_back()?.to_string();
    slipway_pxe_publisher::is_safe_artifact_name(&name).then_some(name)
}

/// `slipway mirror`.
pub fn run(args: &MirrorArgs<'_>) -> Result<ExitCode> {
    let files = repo_fs::read_repo(args.repo)?;
    let (inventory, diags) = slipway_model::inventory::load(&files);
    if diags.has_errors() {
        eprint!("{diags}");
        bail!(
            "the repository has {} error(s): nothing was mirrored",
            diags.error_count()
        );
    }
    let inventory = inventory.context("the repository did not load")?;
    let sources = resolve_sources(&inventory.cluster, args)?;
    if url_file_name(&sources.k3s.install_script_url).is_none() {
        bail!(
            "the install script URL {} has no file name to store it under: pass --k3s-install-script-url with a URL ending in a file name (e.g. .../install.sh)",
            sources.k3s.install_script_url
        );
    }
    let script_sha = args
        .k3s_install_script_sha256
        .map(|h| {
            h.parse::<Sha256Digest>()
                .map_err(|e| anyhow!("--k3s-install-script-sha256: {e}"))
        })
        .transpose()?;
    let source = K3sSource {
        binary_url: sources.k3s.binary_url.clone(),
        checksum_url: sources.k3s.checksum_url.clone(),
        install_script_url: sources.k3s.install_script_url.clone(),
        install_script_sha256: script_sha,
    };
    let mirror = Mirror::new(artifacts::store_dir(args.state), MirrorConfig::default())
        .map_err(|e| anyhow!("setting up downloads: {e}"))?;
    let progress = TermProgress::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (fcos, (binary, script)) = rt.block_on(async {
        let fcos = mirror
            .mirror_fcos(&sources.stream_url, &progress)
            .await
            .map_err(|e| anyhow!("mirroring FCOS from {}: {e}", sources.stream_url))?;
        let k3s = mirror.mirror_k3s(&source, &progress).await.map_err(|e| {
            if matches!(e, slipway_pxe_publisher::PublishError::ChecksumMissing { .. }) {
                anyhow!("mirroring K3s {}: {e} (pass --k3s-install-script-sha256 for a script the checksum file does not list)", sources.k3s_version)
            } else {
                anyhow!("mirroring K3s {}: {e}", sources.k3s_version)
            }
        })?;
        anyhow::Ok((fcos, k3s))
    })?;
    progress.clear();
    // Load the index only now: everything is verified, and a concurrent import is kept.
    let mut idx = ArtifactIndex::load(args.state)?;
    idx.fcos.insert(
        fcos.release.clone(),
        FcosEntry {
            kernel: fcos.kernel,
            initramfs: fcos.initramfs,
            rootfs: fcos.rootfs,
            metal: fcos.metal,
        },
    );
    idx.k3s.insert(
        sources.k3s_version.clone(),
        K3sEntry {
            binary,
            install_script: script,
        },
    );
    idx.save(args.state)?;
    println!("mirrored FCOS {}", fcos.release);
    println!("mirrored K3s {}", sources.k3s_version);
    Ok(ExitCode::SUCCESS)
}

/// A bar per download on a terminal, plain lines on stderr otherwise.
struct TermProgress {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl TermProgress {
    fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        TermProgress { bars }
    }

    fn bar(&self, name: &str) -> Option<ProgressBar> {
        let (_, map) = self.bars.as_ref()?;
        map.lock().ok()?.get(name).cloned()
    }

    fn clear(&self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

impl Progress for TermProgress {
    fn started(&self, name: &str, total: Option<u64>, resumed_from: u64) {
        let Some((multi, map)) = &self.bars else {
            let size = total.map(|t| format!(" ({t} bytes)")).unwrap_or_default();
            let resumed = if resumed_from > 0 {
                format!(", resuming at {resumed_from}")
            } else {
                String::new()
            };
            eprintln!("downloading {name}{size}{resumed}");
            return;
        };
        let bar = multi.add(match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        });
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(name.to_string());
        bar.set_position(resumed_from);
        if let Ok(mut m) = map.lock() {
            m.insert(name.to_string(), bar);
        }
    }

    fn advanced(&self, name: &str, bytes: u64) {
        if let Some(bar) = self.bar(name) {
            bar.inc(bytes);
        }
    }

    fn finished(&self, name: &str) {
        match self.bar(name) {
            Some(bar) => bar.finish_with_message(format!("{name} verified")),
            None => eprintln!("{name}: verified and stored"),
        }
    }
}

/// Mirror the FCOS release cluster.yaml's stream currently names into the store (the
/// daemon's scheduled upgrades): downloaded and verified before the index records it, so a
/// release is only ever rolled out once all its files are here. Returns the release.
pub fn mirror_stream_release(cluster: &Cluster, state: &Path) -> Result<String> {
    let stream_url = cluster
        .fcos
        .stream_url
        .clone()
        .unwrap_or_else(|| official_stream_url(cluster.fcos.stream));
    let mirror = Mirror::new(artifacts::store_dir(state), MirrorConfig::default())
        .map_err(|e| anyhow!("setting up downloads: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let fcos = rt
        .block_on(mirror.mirror_fcos(&stream_url, &slipway_pxe_publisher::mirror::NoProgress))
        .map_err(|e| anyhow!("mirroring FCOS from {stream_url}: {e}"))?;
    let mut idx = ArtifactIndex::load(state)?;
    if !idx.fcos.contains_key(&fcos.release) {
        idx.fcos.insert(
            fcos.release.clone(),
            FcosEntry {
                kernel: fcos.kernel,
                initramfs: fcos.initramfs,
                rootfs: fcos.rootfs,
                metal: fcos.metal,
            },
        );
        idx.save(state)?;
    }
    Ok(fcos.release)
}

/// K3s's channel server.
pub const DEFAULT_K3S_CHANNEL_URL: &str = "https://update.k3s.io/v1-release/channels";

/// The version a channel names in the channel server's JSON
/// (`{"data": [{"id": "stable", "latest": "v1.30.4+k3s1"}, ...]}`).
pub fn channel_latest(json: &[u8], channel: &str) -> Result<String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).context("the channel server's answer is not JSON")?;
    let data = v
        .get("data")
        .and_then(|d| d.as_array())
        .context("the channel server's JSON has no `data` list")?;
    let entry = data
        .iter()
        .find(|c| c.get("id").and_then(|i| i.as_str()) == Some(channel))
        .with_context(|| {
            let ids: Vec<&str> = data
                .iter()
                .filter_map(|c| c.get("id").and_then(|i| i.as_str()))
                .collect();
            format!("no K3s channel `{channel}` (channels: {})", ids.join(", "))
        })?;
    let latest = entry
        .get("latest")
        .and_then(|l| l.as_str())
        .with_context(|| format!("channel `{channel}` names no `latest` version"))?;
    if !latest.starts_with('v') || latest.contains(['/', ' ', '\\']) {
        bail!("channel `{channel}` names `{latest}`, which is not a K3s version");
    }
    Ok(latest.to_string())
}

/// Follow cluster.yaml's K3s channel (the daemon's scheduled upgrades): ask the channel
/// server which version it names; when the store lacks it, download its binary verified by
/// the release's `sha256sum-amd64.txt`, and record it (with the install script of the newest
/// version already mirrored: the script is version-independent) before anything may use it.
/// Returns the version, or `None` when cluster.yaml pins one.
pub fn mirror_channel_release(cluster: &Cluster, state: &Path) -> Result<Option<String>> {
    let K3sRelease::Channel(channel) = &cluster.k3s.release else {
        return Ok(None);
    };
    let get = |url: &str| -> Result<Vec<u8>> {
        let resp = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .get(url)
            .call()
            .map_err(|e| anyhow!("fetching {url}: {e}"))?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(resp.into_reader(), 1 << 20),
            &mut body,
        )
        .with_context(|| format!("reading {url}"))?;
        Ok(body)
    };
    let channels_url = cluster
        .k3s
        .channel_url
        .as_deref()
        .unwrap_or(DEFAULT_K3S_CHANNEL_URL);
    let version = channel_latest(&get(channels_url)?, channel)?;
    if let Some(cap) = &cluster.k3s.no_newer_than {
        if artifacts::version_key(&version) > artifacts::version_key(cap) {
            tracing::info!(%version, %cap, "the K3s channel is past k3s.no_newer_than: not mirrored");
            return Ok(None);
        }
    }
    let mut idx = ArtifactIndex::load(state)?;
    if idx.k3s.contains_key(&version) || idx.failed.k3s.contains(&version) {
        return Ok(Some(version));
    }
    let script = idx
        .k3s
        .iter()
        .max_by_key(|(v, _)| artifacts::version_key(v))
        .map(|(_, e)| e.install_script.clone())
        .context("no K3s install script is in the store yet: mirror one K3s version first (`slipway mirror`)")?;
    let base = cluster
        .k3s
        .download_url
        .as_deref()
        .unwrap_or(DEFAULT_K3S_BASE_URL)
        .trim_end_matches('/');
    let v = utf8_percent_encode(&version, SEGMENT).to_string();
    let sums =
        String::from_utf8_lossy(&get(&format!("{base}/{v}/sha256sum-amd64.txt"))?).into_owned();
    let sha = slipway_pxe_publisher::mirror::parse_sha256sums(&sums, "k3s")
        .with_context(|| format!("the checksums of K3s {version} do not list `k3s`"))?;
    let mirror = Mirror::new(artifacts::store_dir(state), MirrorConfig::default())
        .map_err(|e| anyhow!("setting up downloads: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let binary = rt
        .block_on(mirror.fetch(
            &format!("{base}/{v}/k3s"),
            sha,
            &slipway_pxe_publisher::mirror::NoProgress,
        ))
        .map_err(|e| anyhow!("mirroring K3s {version}: {e}"))?;
    idx.k3s.insert(
        version.clone(),
        K3sEntry {
            binary,
            install_script: script,
        },
    );
    idx.save(state)?;
    Ok(Some(version))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_channel_names_its_latest_version_and_unknown_channels_list_the_known_ones() {
        let json = br#"{"data":[{"id":"stable","latest":"v1.30.5+k3s1"},{"id":"latest","latest":"v1.31.1+k3s1"}]}"#;
        assert_eq!(
            super::channel_latest(json, "stable").unwrap(),
            "v1.30.5+k3s1"
        );
        assert_eq!(
            super::channel_latest(json, "latest").unwrap(),
            "v1.31.1+k3s1"
        );
        let e = super::channel_latest(json, "v1.29")
            .unwrap_err()
            .to_string();
        assert!(e.contains("stable, latest"), "{e}");
        assert!(super::channel_latest(b"nope", "stable").is_err());
        assert!(super::channel_latest(
            br#"{"data":[{"id":"stable","latest":"../etc"}]}"#,
            "stable"
        )
        .is_err());
    }

    use super::*;

    fn cluster(extra_fcos: &str, k3s: &str) -> Cluster {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-repo-example");
        let mut files = repo_fs::read_repo(&example).unwrap();
        let text = files.text("cluster.yaml").unwrap().to_string();
        let text = text
            .replace(
                "  stream: stable\n",
                &format!("  stream: stable\n{extra_fcos}"),
            )
            .replace("  version: v1.30.4+k3s1 ", &format!("  {k3s} "));
        files.insert("cluster.yaml".to_string(), text.into_bytes());
        let (inv, diags) = slipway_model::inventory::load(&files);
        assert!(!diags.has_errors(), "{diags}");
        inv.unwrap().cluster
    }

    fn args() -> MirrorArgs<'static> {
        MirrorArgs {
            repo: Path::new("."),
            state: Path::new("."),
            stream_url: None,
            k3s_version: None,
            k3s_base_url: "http://127.0.0.1:9/k3s/",
            k3s_install_script_url: "http://127.0.0.1:9/install.sh",
            k3s_install_script_sha256: None,
        }
    }

    #[test]
    fn a_pinned_version_is_percent_encoded_in_the_path() {
        let s = resolve_sources(&cluster("", "version: v1.30.4+k3s1"), &args()).unwrap();
        assert_eq!(s.k3s_version, "v1.30.4+k3s1");
        assert_eq!(
            s.k3s.binary_url,
            "http://127.0.0.1:9/k3s/v1.30.4%2Bk3s1/k3s"
        );
        assert_eq!(
            s.k3s.checksum_url,
            "http://127.0.0.1:9/k3s/v1.30.4%2Bk3s1/sha256sum-amd64.txt"
        );
        assert_eq!(
            s.stream_url,
            "https://builds.coreos.fedoraproject.org/streams/stable.json"
        );
    }

    #[test]
    fn stream_url_precedence_is_cluster_then_flag_then_official() {
        let mut a = args();
        a.stream_url = Some("http://127.0.0.1:9/flag.json");
        let plain = cluster("", "version: v1.30.4+k3s1");
        assert_eq!(
            resolve_sources(&plain, &a).unwrap().stream_url,
            "http://127.0.0.1:9/flag.json"
        );
        let with = cluster(
            "  stream_url: http://127.0.0.1:9/cluster.json\n",
            "version: v1.30.4+k3s1",
        );
        assert_eq!(
            resolve_sources(&with, &a).unwrap().stream_url,
            "http://127.0.0.1:9/cluster.json"
        );
    }

    #[test]
    fn a_channel_needs_a_version_override() {
        let c = cluster("", "channel: stable");
        let err = resolve_sources(&c, &args()).unwrap_err().to_string();
        assert!(err.contains("channel `stable`"), "{err}");
        assert!(err.contains("--k3s-version"), "{err}");
        let mut a = args();
        a.k3s_version = Some("v1.31.0+k3s1");
        assert_eq!(
            resolve_sources(&c, &a).unwrap().k3s.binary_url,
            "http://127.0.0.1:9/k3s/v1.31.0%2Bk3s1/k3s"
        );
        // The install script of the same tag, by default.
        a.k3s_install_script_url = DEFAULT_K3S_INSTALL_SCRIPT_URL;
        let script = resolve_sources(&c, &a).unwrap().k3s.install_script_url;
        assert_eq!(
            script,
            "https://raw.githubusercontent.com/k3s-io/k3s/v1.31.0%2Bk3s1/install.sh"
        );
        assert_eq!(url_file_name(&script).as_deref(), Some("install.sh"));
    }

    #[test]
    fn install_script_urls_without_a_file_name_are_recognised() {
        assert_eq!(url_file_name("https://get.k3s.io"), None);
        assert_eq!(
            url_file_name("http://127.0.0.1:9/x/install.sh").as_deref(),
            Some("install.sh")
        );
    }
}
