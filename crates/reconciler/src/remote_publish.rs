//! `slipway publish --to sftp://user@host[:port]/path`: upload a generation's
//! static boot site ([`slipway_pxe_publisher::static_site`]) to a remote web
//! root — the homelab pattern of an OpenWRT router serving HTTP and TFTP.
//!
//! The upload is atomic as far as SFTP allows (see
//! [`slipway_node_ssh::replace_tree`]): the site is written beside the
//! public folder and swapped in with two renames, so the web server always
//! serves a complete site, the previous one or the new one. Ignition files
//! (secrets) are part of the site only when the caller built it with them
//! (`--allow-secrets`); the report says which files are secret.
//!
//! A site with install scripts (secrets allowed) also needs the artifacts
//! they download. Those are large and rarely change, so they live outside
//! every site, in the persistent folder `<parent>/<name>.artifacts/<sha256>/<file>`
//! ([`RemoteTarget::artifacts_dir`]), each uploaded once (to a temporary
//! name, then renamed, so a present file is always complete) and skipped
//! when already there with the right size. Each site reaches them through
//! its `artifacts` symbolic link to `../<name>.artifacts`, made in the
//! upload before the swap, so the URLs [`site_artifact_path`] gives resolve
//! as soon as the site is public. Artifacts of older generations are not
//! removed.
//!
//! [`site_artifact_path`]: slipway_pxe_publisher::site::site_artifact_path

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use slipway_node_ssh::{
    replace_tree, Auth, HostKeyPin, NodeConn, NodeTarget, RemoteFile, RemoteKind,
};
use slipway_pxe_publisher::site::SITE_ARTIFACTS_DIR;
use slipway_pxe_publisher::{ArtifactSet, SiteFile};

/// Where a site is published: `sftp://user@host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteTarget {
    /// Remote login.
    pub user: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// sshd's TCP port (22 unless given).
    pub port: u16,
    /// Absolute path of the published folder, e.g. `/www/slipway`; never `/`.
    pub path: String,
}

impl RemoteTarget {
    /// The folder holding the published folder (`/www` for `/www/slipway`).
    pub fn parent(&self) -> &str {
        match self.path.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &self.path[..i],
        }
    }

    /// The published folder's own name (`slipway` for `/www/slipway`).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The persistent folder of the artifacts every published site links to:
    /// `<parent>/<name>.artifacts` (beside the site, so the web server serves
    /// it too, and never replaced by a publish).
    pub fn artifacts_dir(&self) -> String {
        join(self.parent(), &format!("{}.artifacts", self.name()))
    }

    /// The SSH target to connect to, with the given authentication and host
    /// key pin (never trust on first use).
    pub fn node_target(&self, auth: Auth, host_key: HostKeyPin) -> NodeTarget {
        NodeTarget {
            name: self.host.clone(),
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            auth,
            host_key,
        }
    }
}

impl fmt::Display for RemoteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "sftp://{}@{host}:{}{}", self.user, self.port, self.path)
    }
}

/// Parses `sftp://user@host[:port]/absolute/path`. The user is required
/// (there is no sensible default for a router); a password in the URL is
/// refused (authentication is by key only); the path must name a folder
/// below `/` without `.` or `..` segments.
pub fn parse_sftp_url(raw: &str) -> anyhow::Result<RemoteTarget> {
    let url = url::Url::parse(raw).with_context(|| format!("parsing remote target {raw:?}"))?;
    if url.scheme() != "sftp" {
        bail!("remote target {raw:?}: the scheme must be sftp://");
    }
    if url.password().is_some() {
        bail!("remote target: a password in the URL is refused; authenticate with --ssh-key");
    }
    let user = percent_encoding::percent_decode_str(url.username())
        .decode_utf8()
        .context("remote target: the user is not UTF-8")?
        .into_owned();
    if user.is_empty() {
        bail!(
            "remote target {raw:?}: name the remote user, e.g. sftp://root@192.168.1.1/www/slipway"
        );
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => bail!("remote target {raw:?}: missing host"),
    };
    if url.query().is_some() || url.fragment().is_some() {
        bail!("remote target {raw:?}: must not carry a query or fragment");
    }
    let decoded = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .context("remote target: the path is not UTF-8")?;
    let path = decoded.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if path.is_empty() || segments.is_empty() {
        bail!("remote target {raw:?}: give the folder to publish into, e.g. /www/slipway (never / itself)");
    }
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('\0'))
    {
        bail!("remote target {raw:?}: the path must not contain empty, `.` or `..` segments");
    }
    Ok(RemoteTarget {
        user,
        host,
        port: url.port().unwrap_or(22),
        path: path.to_string(),
    })
}

/// One artifact file to put into the remote artifacts folder, from the
/// local content-addressed store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalArtifact {
    /// `<sha256>/<file>`: its path under the artifacts folder and under the
    /// site's `artifacts/` (the store path; for a signature, `<file>.sig`).
    pub store_path: String,
    /// The file in the local store.
    pub local: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Every file of `set` in the local store `store` (`<state>/store`), once
/// each, plus the metal image's detached signature when the store has it.
/// Fails, naming the file, when one is missing or has another size than
/// the generation recorded: before anything remote is touched.
pub fn local_artifacts(set: &ArtifactSet, store: &Path) -> anyhow::Result<Vec<LocalArtifact>> {
    let mut out: Vec<LocalArtifact> = Vec::new();
    for (role, a) in set.iter() {
        let store_path = a.store_path();
        if out.iter().any(|l| l.store_path == store_path) {
            continue;
        }
        let local = store.join(&store_path);
        let size = std::fs::metadata(&local)
            .with_context(|| {
                format!(
                    "the {role} artifact {} is not in the store at {} (import or mirror it)",
                    a.name,
                    local.display()
                )
            })?
            .len();
        if size != a.size {
            bail!(
                "the {role} artifact {} has {size} bytes, the generation recorded {}: the store at {} is damaged",
                a.name,
                a.size,
                local.display()
            );
        }
        out.push(LocalArtifact {
            store_path,
            local,
            size,
        });
        if role == "metal" {
            let sig_path = format!("{}.sig", a.store_path());
            let sig = store.join(&sig_path);
            if let Ok(meta) = std::fs::metadata(&sig) {
                out.push(LocalArtifact {
                    store_path: sig_path,
                    local: sig,
                    size: meta.len(),
                });
            } else if a.signature_available {
                bail!(
                    "the metal image's signature is not in the store at {} (import or mirror it)",
                    sig.display()
                );
            }
        }
    }
    Ok(out)
}

/// What [`publish_remote`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishReport {
    /// Where the site went (no credentials in it).
    pub target: String,
    /// Files uploaded.
    pub files: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Paths (relative to the site) of the secret files uploaded (Ignition),
    /// empty unless the site was built with secrets allowed.
    pub secret_files: Vec<String>,
    /// Whether an earlier site was replaced.
    pub replaced_previous: bool,
    /// Whether a site left at its backup name by an interrupted publish was
    /// put back first.
    pub restored_interrupted: bool,
    /// Leftovers of interrupted publishes that were removed.
    pub removed_leftovers: Vec<String>,
    /// Remote paths that could not be removed (the publish succeeded).
    pub not_removed: Vec<String>,
    /// The artifacts folder the site links to (`None`: no artifacts were
    /// published with this site).
    pub artifacts_dir: Option<String>,
    /// Store paths (`<sha256>/<file>`) of the artifacts uploaded this time.
    pub artifacts_uploaded: Vec<String>,
    /// Bytes of those artifacts.
    pub artifact_bytes: u64,
    /// Artifacts already on the remote with the right size (not uploaded).
    pub artifacts_present: usize,
}

impl fmt::Display for PublishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "published {} files ({} bytes) to {}{}",
            self.files,
            self.bytes,
            self.target,
            if self.replaced_previous {
                ", replacing the previous site"
            } else {
                ""
            }
        )?;
        if self.secret_files.is_empty() {
            writeln!(
                f,
                "Ignition left out: known machines chain to Slipway's own server, which serves each \
Ignition once with a one-shot token (pass --allow-secrets to put Ignition on the remote)"
            )?;
        } else {
            writeln!(
                f,
                "secret Ignition uploaded with mode 0600: {} — the listed nodes reinstall on every \
network boot until a publish leaves them out",
                self.secret_files.join(", ")
            )?;
        }
        if let Some(dir) = &self.artifacts_dir {
            writeln!(
                f,
                "artifacts in {dir}: {} uploaded ({} bytes), {} already there",
                self.artifacts_uploaded.len(),
                self.artifact_bytes,
                self.artifacts_present
            )?;
        }
        if self.restored_interrupted {
            writeln!(
                f,
                "an earlier interrupted publish was repaired first (the previous site was put back)"
            )?;
        }
        for p in &self.not_removed {
            writeln!(
                f,
                "warning: could not remove {p}; the next publish will retry"
            )?;
        }
        Ok(())
    }
}

/// Uploads `site` as the complete content of `target.path` over `conn` (an
/// authenticated SFTP-capable session to `target`), replacing the previous
/// site atomically. On any error the previously published site is still
/// served (the error says so when it could not be guaranteed).
///
/// With `artifacts` (empty: none), those are first put into
/// [`RemoteTarget::artifacts_dir`] (each once; see the [module docs](self))
/// and the new site gets its `artifacts` link to that folder; `site` must
/// then not hold files under `artifacts/` itself.
pub fn publish_remote(
    site: &[SiteFile],
    artifacts: &[LocalArtifact],
    target: &RemoteTarget,
    conn: &mut impl NodeConn,
) -> anyhow::Result<PublishReport> {
    let link_target = format!("../{}.artifacts", target.name());
    let mut files: Vec<RemoteFile<'_>> = site
        .iter()
        .map(|f| RemoteFile::file(&f.path, &f.bytes, f.mode))
        .collect();
    if !artifacts.is_empty() {
        if let Some(f) = site.iter().find(|f| {
            f.path == SITE_ARTIFACTS_DIR || f.path.starts_with(&format!("{SITE_ARTIFACTS_DIR}/"))
        }) {
            bail!(
                "the site holds {} itself: it cannot also link {SITE_ARTIFACTS_DIR}/ to the artifacts folder",
                f.path
            );
        }
        files.push(RemoteFile::symlink(SITE_ARTIFACTS_DIR, &link_target));
    }
    let id = publish_id();
    let uploaded = if artifacts.is_empty() {
        None
    } else {
        Some(
            upload_artifacts(conn, target, artifacts, &id)
                .with_context(|| format!("uploading the artifacts to {target}"))?,
        )
    };
    let done = replace_tree(
        conn,
        &target.host,
        target.parent(),
        target.name(),
        &id,
        &files,
    )
    .with_context(|| format!("publishing the boot site to {target}"))?;
    let (artifacts_uploaded, artifact_bytes, artifacts_present) = match uploaded {
        Some(u) => (u.uploaded, u.bytes, u.present),
        None => (Vec::new(), 0, 0),
    };
    Ok(PublishReport {
        target: target.to_string(),
        files: done.files,
        bytes: done.bytes,
        secret_files: site
            .iter()
            .filter(|f| f.secret)
            .map(|f| f.path.clone())
            .collect(),
        replaced_previous: done.replaced_previous,
        restored_interrupted: done.restored_interrupted,
        removed_leftovers: done.removed_leftovers,
        not_removed: done.not_removed,
        artifacts_dir: (!artifacts.is_empty()).then(|| target.artifacts_dir()),
        artifacts_uploaded,
        artifact_bytes,
        artifacts_present,
    })
}

/// What [`upload_artifacts`] did.
struct ArtifactUploads {
    uploaded: Vec<String>,
    bytes: u64,
    present: usize,
}

/// Mode of the artifact files and their folders' files: public.
const ARTIFACT_MODE: u32 = 0o644;
/// Mode of the folders created for the artifacts.
const DIR_MODE: u32 = 0o755;
/// Marks a partial upload: `.<file>.slipway-part-<id>`.
const PART_MARK: &str = ".slipway-part-";

/// Put each artifact into `<artifacts_dir>/<sha256>/<file>` unless a file
/// of the right size is there: streamed to a hidden temporary name in the
/// same folder, then renamed, so the final name only ever holds a complete
/// file. Partial uploads of earlier, interrupted publishes in the folders
/// written to are removed.
fn upload_artifacts(
    conn: &mut impl NodeConn,
    target: &RemoteTarget,
    artifacts: &[LocalArtifact],
    id: &str,
) -> anyhow::Result<ArtifactUploads> {
    let root = target.artifacts_dir();
    let mut done = ArtifactUploads {
        uploaded: Vec::new(),
        bytes: 0,
        present: 0,
    };
    for a in artifacts {
        let Some((sha, file)) = a.store_path.split_once('/') else {
            bail!("artifact path {:?} is not <sha256>/<file>", a.store_path);
        };
        let dir = join(&root, sha);
        let dest = join(&dir, file);
        match conn.metadata(&dest)? {
            Some(e) if e.kind == RemoteKind::File && e.size == a.size => {
                done.present += 1;
                continue;
            }
            Some(_) => conn.remove_all(&dest)?,
            None => {}
        }
        conn.make_dirs(&dir, DIR_MODE)?;
        for e in conn.list_dir(&dir)? {
            if e.name.starts_with('.') && e.name.contains(PART_MARK) {
                conn.remove_all(&join(&dir, &e.name))?;
            }
        }
        let part = join(&dir, &format!(".{file}{PART_MARK}{id}"));
        let mut local = std::fs::File::open(&a.local)
            .with_context(|| format!("opening {}", a.local.display()))?;
        let sent = conn
            .upload(&part, &mut local, ARTIFACT_MODE)
            .and_then(|n| conn.rename(&part, &dest).map(|()| n));
        let sent = match sent {
            Ok(n) => n,
            Err(e) => {
                let _ = conn.remove_all(&part);
                return Err(e.into());
            }
        };
        if sent != a.size {
            let _ = conn.remove_all(&dest);
            bail!(
                "{} changed while it was uploaded ({sent} bytes sent, {} expected)",
                a.local.display(),
                a.size
            );
        }
        tracing::info!(artifact = %a.store_path, bytes = sent, "uploaded artifact");
        done.uploaded.push(a.store_path.clone());
        done.bytes += sent;
    }
    Ok(done)
}

/// `dir/name` without doubling a `/`.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A name for this publish's temporary folders: time plus randomness, so a
/// crashed publish's leftovers never collide with the next one's.
fn publish_id() -> String {
    use rand::Rng as _;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}-{:08x}", rand::thread_rng().gen::<u32>())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sftp_urls_parse_into_user_host_port_and_folder() {
        let t = parse_sftp_url("sftp://root@192.168.1.1/www/slipway/").unwrap();
        assert_eq!(
            t,
            RemoteTarget {
                user: "root".into(),
                host: "192.168.1.1".into(),
                port: 22,
                path: "/www/slipway".into()
            }
        );
        assert_eq!((t.parent(), t.name()), ("/www", "slipway"));
        assert_eq!(t.artifacts_dir(), "/www/slipway.artifacts");
        assert_eq!(t.to_string(), "sftp://root@192.168.1.1:22/www/slipway");
        let t = parse_sftp_url("sftp://admin@[::1]:2222/slipway").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 2222));
        assert_eq!((t.parent(), t.name()), ("/", "slipway"));
        assert_eq!(t.artifacts_dir(), "/slipway.artifacts");
        assert_eq!(t.to_string(), "sftp://admin@[::1]:2222/slipway");
        let t = parse_sftp_url("sftp://me@router.lan/srv/boot%20site").unwrap();
        assert_eq!(t.path, "/srv/boot site");
    }

    #[test]
    fn bad_sftp_urls_are_refused_with_a_reason() {
        for (raw, why) in [
            ("http://root@h/www", "scheme"),
            ("sftp://h/www", "user"),
            ("sftp://root:pw@h/www", "password"),
            ("sftp://root@h/", "never / itself"),
            ("sftp://root@h", "never / itself"),
            ("sftp://root@h/www/a%00b", "segments"),
            ("sftp://root@h/www//x", "segments"),
            ("sftp://root@h/www?x=1", "query"),
            ("not a url", "parsing"),
        ] {
            let err = format!("{:#}", parse_sftp_url(raw).unwrap_err());
            assert!(err.contains(why), "{raw}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }
}
