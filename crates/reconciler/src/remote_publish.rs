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

use std::fmt;

use anyhow::{bail, Context as _};
use slipway_node_ssh::{replace_tree, Auth, HostKeyPin, NodeConn, NodeTarget, RemoteFile};
use slipway_pxe_publisher::SiteFile;

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
pub fn publish_remote(
    site: &[SiteFile],
    target: &RemoteTarget,
    conn: &mut impl NodeConn,
) -> anyhow::Result<PublishReport> {
    let files: Vec<RemoteFile<'_>> = site
        .iter()
        .map(|f| RemoteFile {
            path: &f.path,
            contents: &f.bytes,
            mode: f.mode,
        })
        .collect();
    let id = publish_id();
    let done = replace_tree(
        conn,
        &target.host,
        target.parent(),
        target.name(),
        &id,
        &files,
    )
    .with_context(|| format!("publishing the boot site to {target}"))?;
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
    })
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
        assert_eq!(t.to_string(), "sftp://root@192.168.1.1:22/www/slipway");
        let t = parse_sftp_url("sftp://admin@[::1]:2222/slipway").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 2222));
        assert_eq!((t.parent(), t.name()), ("/", "slipway"));
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
