//! Remotes, their credentials, and the fetch itself (the only place that dials).
//!
//! - `file://` URLs and plain local paths: no credentials.
//! - `ssh://[user@]host[:port]/path`: a deploy key file (no passphrase), and the server's
//!   host key PINNED from a known_hosts file. A host missing from the file, or a different
//!   key, fails the fetch: nothing is ever trusted on first use.
//! - `https://`: anonymous, or a token read from a file at each fetch (so it can rotate)
//!   and sent as the password of HTTP basic auth. TLS certificates are checked by libgit2
//!   against the system roots.
//!
//! Plain `http://` and scp-like `user@host:path` remotes are refused with a hint.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use git2::{CertificateCheckStatus, Cred, CredentialType, FetchOptions, RemoteCallbacks};
use hmac::{Hmac, Mac};
use ssh_key::known_hosts::{HostPatterns, KnownHosts, Marker};
use ssh_key::{HashAlg, PublicKey};
use zeroize::Zeroizing;

use super::error::SourceError;
use super::trust::match_pattern_list;

/// Where the cluster repository is fetched from.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// The URL or path handed to git.
    url: String,
    kind: RemoteKind,
}

/// The kind of a [`Remote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteKind {
    /// A `file://` URL or a plain path on this machine.
    Local,
    /// `ssh://`: host and port (22 when not given), the user (`git` when not given).
    Ssh {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Login user.
        user: String,
    },
    /// `https://`: the user name from the URL, if any.
    Https {
        /// Host name.
        host: String,
        /// User name in the URL, if any.
        user: Option<String>,
    },
}

impl Remote {
    /// Classify a remote string. See the module docs for what is accepted.
    pub fn parse(remote: &str) -> Result<Self, SourceError> {
        let remote = remote.trim();
        let unsupported = |why: &str| SourceError::UnsupportedRemote {
            remote: redact(remote),
            why: why.to_owned(),
        };
        if remote.is_empty() {
            return Err(unsupported("it is empty"));
        }
        if let Some((scheme, _)) = remote.split_once("://") {
            let url = url::Url::parse(remote).map_err(|e| unsupported(&e.to_string()))?;
            let kind = match scheme.to_ascii_lowercase().as_str() {
                "file" => RemoteKind::Local,
                "ssh" => {
                    if url.password().is_some() {
                        return Err(unsupported(
                            "ssh remotes authenticate with a deploy key, not a password in the URL",
                        ));
                    }
                    RemoteKind::Ssh {
                        host: host_of(&url).ok_or_else(|| unsupported("it has no host"))?,
                        port: url.port().unwrap_or(22),
                        user: match url.username() {
                            "" => "git".to_owned(),
                            u => u.to_owned(),
                        },
                    }
                }
                "https" => {
                    if url.password().is_some() {
                        return Err(unsupported(
                            "put the token in a token file, not in the URL",
                        ));
                    }
                    RemoteKind::Https {
                        host: host_of(&url).ok_or_else(|| unsupported("it has no host"))?,
                        user: Some(url.username().to_owned()).filter(|u| !u.is_empty()),
                    }
                }
                "http" => {
                    return Err(unsupported(
                        "plain http is not authenticated nor encrypted; use https://, ssh:// or file://",
                    ))
                }
                _ => return Err(unsupported("use https://, ssh://, file:// or a local path")),
            };
            return Ok(Self {
                url: remote.to_owned(),
                kind,
            });
        }
        if looks_scp_like(remote) {
            return Err(unsupported(
                "scp-like `user@host:path` is ambiguous; write it as ssh://user@host/path",
            ));
        }
        Ok(Self {
            url: remote.to_owned(),
            kind: RemoteKind::Local,
        })
    }

    /// The URL or path as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kind of remote.
    pub fn kind(&self) -> &RemoteKind {
        &self.kind
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Remote({:?}, {:?})", redact(&self.url), self.kind)
    }
}

fn host_of(url: &url::Url) -> Option<String> {
    url.host_str()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
}

/// `user@host:path` (git's scp-like syntax): an `@`-free-or-not host part before a `:` that
/// comes before any `/`.
fn looks_scp_like(s: &str) -> bool {
    match (s.find(':'), s.find('/')) {
        (Some(c), Some(sl)) => c < sl && c > 1,
        (Some(c), None) => c > 1,
        _ => false,
    }
}

/// Remove a password from a URL before it is shown anywhere.
pub(crate) fn redact(remote: &str) -> String {
    match url::Url::parse(remote) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => remote.to_owned(),
    }
}

/// How Slipway authenticates to the remote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No credentials (local remotes, public https repositories).
    #[default]
    None,
    /// An SSH deploy key, and the pinned host keys of the server.
    SshKey {
        /// The private key file (OpenSSH format, no passphrase).
        private_key: PathBuf,
        /// A known_hosts file pinning the server's host key.
        known_hosts: PathBuf,
    },
    /// An access token, read from a file and sent as the basic-auth password.
    Token {
        /// The file holding the token (surrounding whitespace is ignored).
        token_file: PathBuf,
        /// The basic-auth user name; default: the URL's user, else `git`.
        username: Option<String>,
    },
}

impl Auth {
    /// Check the credentials fit the remote: ssh needs a key and pinned host keys; a token
    /// is only sent over https; a key only over ssh.
    pub fn check_fits(&self, remote: &Remote) -> Result<(), SourceError> {
        let err = |why: &str| {
            Err(SourceError::Credentials {
                remote: remote.to_string(),
                why: why.to_owned(),
            })
        };
        match (remote.kind(), self) {
            (RemoteKind::Ssh { .. }, Auth::SshKey { .. }) => Ok(()),
            (RemoteKind::Ssh { .. }, _) => err(
                "an ssh remote needs a deploy key and a known_hosts file pinning the server (Slipway never trusts a host key on first use)",
            ),
            (RemoteKind::Https { .. }, Auth::None | Auth::Token { .. }) => Ok(()),
            (RemoteKind::Https { .. }, Auth::SshKey { .. }) => {
                err("an https remote takes a token file, not an ssh key")
            }
            (RemoteKind::Local, Auth::None) => Ok(()),
            (RemoteKind::Local, _) => err("a local remote takes no credentials"),
        }
    }
}

/// A credential decided for one request from libgit2 (pure; see [`choose_credential`]).
#[derive(PartialEq, Eq)]
pub enum CredentialChoice {
    /// Authenticate with this SSH key as this user.
    SshKey {
        /// Login user.
        user: String,
        /// Private key file.
        private_key: PathBuf,
    },
    /// HTTP basic auth with the token as password.
    UserPassword {
        /// Basic-auth user.
        user: String,
        /// The token. Never printed: `Debug` redacts it.
        password: Zeroizing<String>,
    },
}

impl fmt::Debug for CredentialChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialChoice::SshKey { user, private_key } => f
                .debug_struct("SshKey")
                .field("user", user)
                .field("private_key", private_key)
                .finish(),
            CredentialChoice::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Decide which credential answers libgit2's request, given what it allows and the user
/// name in the URL. Reads the token file (so a rotated token is picked up on next fetch).
pub fn choose_credential(
    remote: &Remote,
    auth: &Auth,
    allowed: CredentialType,
    username_from_url: Option<&str>,
) -> Result<CredentialChoice, SourceError> {
    let fail = |why: String| SourceError::Credentials {
        remote: remote.to_string(),
        why,
    };
    match auth {
        Auth::SshKey { private_key, .. } if allowed.contains(CredentialType::SSH_KEY) => {
            let user = match remote.kind() {
                RemoteKind::Ssh { user, .. } => user.clone(),
                _ => username_from_url.unwrap_or("git").to_owned(),
            };
            Ok(CredentialChoice::SshKey {
                user,
                private_key: private_key.clone(),
            })
        }
        Auth::Token {
            token_file,
            username,
        } if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
            let raw =
                Zeroizing::new(std::fs::read_to_string(token_file).map_err(|e| {
                    fail(format!("reading token file {}: {e}", token_file.display()))
                })?);
            let token = Zeroizing::new(raw.trim().to_owned());
            if token.is_empty() {
                return Err(fail(format!(
                    "token file {} is empty",
                    token_file.display()
                )));
            }
            let user = username
                .clone()
                .or_else(|| username_from_url.map(str::to_owned))
                .unwrap_or_else(|| "git".to_owned());
            Ok(CredentialChoice::UserPassword {
                user,
                password: token,
            })
        }
        Auth::None => Err(fail(
            "the remote asks for credentials and none are configured".to_owned(),
        )),
        _ => Err(fail(format!(
            "the remote asks for {allowed:?} credentials, which the configured ones are not"
        ))),
    }
}

impl CredentialChoice {
    fn to_cred(&self) -> Result<Cred, git2::Error> {
        match self {
            CredentialChoice::SshKey { user, private_key } => {
                Cred::ssh_key(user, None, private_key, None)
            }
            CredentialChoice::UserPassword { user, password } => {
                Cred::userpass_plaintext(user, password)
            }
        }
    }
}

/// Host keys pinned for SSH remotes, from a known_hosts file.
#[derive(Debug, Clone)]
pub struct PinnedHosts {
    path: PathBuf,
    entries: Vec<ssh_key::known_hosts::Entry>,
}

impl PinnedHosts {
    /// Read a known_hosts file. `@cert-authority` lines are ignored (certificates are not
    /// supported); `@revoked` lines reject their key for the hosts they name.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| SourceError::io("reading", path, e))?;
        Self::parse(&text, path)
    }

    /// Parse known_hosts text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, SourceError> {
        let entries = KnownHosts::new(text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SourceError::KnownHosts {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    /// Is `presented` (an SSH wire-format public key blob) the pinned key of `host:port`?
    pub fn check(&self, host: &str, port: u16, presented: &[u8]) -> Result<(), SourceError> {
        let name = if port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        let presented_key = PublicKey::from_bytes(presented);
        let fingerprint = match &presented_key {
            Ok(k) => k.fingerprint(HashAlg::Sha256).to_string(),
            Err(_) => "an unparsable key".to_owned(),
        };
        let mut pinned_any = false;
        for entry in &self.entries {
            if !host_matches(entry.host_patterns(), &name) {
                continue;
            }
            let same = presented_key
                .as_ref()
                .is_ok_and(|k| k.key_data() == entry.public_key().key_data());
            match entry.marker() {
                Some(Marker::CertAuthority) => continue,
                Some(Marker::Revoked) if same => break,
                Some(Marker::Revoked) => continue,
                None => {
                    pinned_any = true;
                    if same {
                        return Ok(());
                    }
                }
            }
        }
        if pinned_any || presented_key.is_err() {
            Err(SourceError::HostKeyMismatch {
                host: name,
                presented: fingerprint,
                known_hosts: self.path.clone(),
            })
        } else {
            Err(SourceError::HostKeyNotPinned {
                host: name,
                known_hosts: self.path.clone(),
            })
        }
    }
}

fn host_matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::Patterns(p) => match_pattern_list(name, p),
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
    }
}

/// Fetch `branch` of `remote` into `refspec_dst` of `repo`; returns the fetched head.
///
/// The destination ref is deleted first, so a branch that vanished on the remote is
/// reported as [`SourceError::BranchMissing`] instead of silently reusing a stale head.
pub(crate) fn fetch(
    repo: &git2::Repository,
    remote: &Remote,
    auth: &Auth,
    branch: &str,
    dst_ref: &str,
) -> Result<git2::Oid, SourceError> {
    auth.check_fits(remote)?;
    let pinned = match (remote.kind(), auth) {
        (RemoteKind::Ssh { .. }, Auth::SshKey { known_hosts, .. }) => {
            Some(PinnedHosts::load(known_hosts)?)
        }
        _ => None,
    };
    if let Ok(mut r) = repo.find_reference(dst_ref) {
        r.delete()
            .map_err(|e| SourceError::git(format!("clearing {dst_ref}"), e))?;
    }

    // Errors raised inside callbacks are kept here: libgit2 only reports "callback failed".
    let callback_error: RefCell<Option<SourceError>> = RefCell::new(None);
    let mut attempts = 0u32;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, username, allowed| {
        attempts += 1;
        if attempts > 1 {
            // libgit2 asks again after a rejected credential: stop instead of looping.
            return Err(git2::Error::from_str(
                "authentication failed: the remote rejected the credentials",
            ));
        }
        match choose_credential(remote, auth, allowed, username) {
            Ok(choice) => choice.to_cred(),
            Err(e) => {
                let msg = e.to_string();
                *callback_error.borrow_mut() = Some(e);
                Err(git2::Error::from_str(&msg))
            }
        }
    });
    callbacks.certificate_check(|cert, _host| {
        let (Some(pins), RemoteKind::Ssh { host, port, .. }) = (&pinned, remote.kind()) else {
            // TLS: let libgit2 verify the chain against the system roots.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let verdict = match cert.as_hostkey().and_then(|h| h.hostkey()) {
            Some(raw) => pins.check(host, *port, raw),
            None => Err(SourceError::HostKeyMismatch {
                host: host.clone(),
                presented: "no raw host key (libgit2 built without it)".to_owned(),
                known_hosts: pins.path.clone(),
            }),
        };
        match verdict {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(e) => {
                let msg = e.to_string();
                *callback_error.borrow_mut() = Some(e);
                Err(git2::Error::from_str(&msg))
            }
        }
    });

    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks)
        .download_tags(git2::AutotagOption::None)
        .update_fetchhead(false);
    let refspec = format!("+refs/heads/{branch}:{dst_ref}");
    let result = repo
        .remote_anonymous(remote.url())
        .and_then(|mut r| r.fetch(&[refspec.as_str()], Some(&mut opts), None));
    drop(opts);
    if let Some(e) = callback_error.into_inner() {
        return Err(e);
    }
    result.map_err(|e| SourceError::RemoteUnreachable {
        remote: remote.to_string(),
        cause: e.message().to_owned(),
    })?;
    let head = repo
        .find_reference(dst_ref)
        .ok()
        .and_then(|r| r.target())
        .ok_or_else(|| SourceError::BranchMissing {
            remote: remote.to_string(),
            branch: branch.to_owned(),
        })?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_remotes() {
        assert_eq!(
            Remote::parse("/srv/cluster").unwrap().kind(),
            &RemoteKind::Local
        );
        assert_eq!(
            Remote::parse("file:///srv/cluster").unwrap().kind(),
            &RemoteKind::Local
        );
        assert_eq!(
            Remote::parse("ssh://deploy@git.lan:2222/cluster.git")
                .unwrap()
                .kind(),
            &RemoteKind::Ssh {
                host: "git.lan".into(),
                port: 2222,
                user: "deploy".into()
            }
        );
        assert_eq!(
            Remote::parse("ssh://git.lan/cluster.git").unwrap().kind(),
            &RemoteKind::Ssh {
                host: "git.lan".into(),
                port: 22,
                user: "git".into()
            }
        );
        assert_eq!(
            Remote::parse("https://git.lan/org/cluster.git")
                .unwrap()
                .kind(),
            &RemoteKind::Https {
                host: "git.lan".into(),
                user: None
            }
        );
        for bad in [
            "",
            "http://git.lan/x",
            "git@git.lan:org/cluster.git",
            "ftp://x/y",
            "https://u:hunter2@git.lan/x",
        ] {
            let err = Remote::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(matches!(
                Remote::parse(bad),
                Err(SourceError::UnsupportedRemote { .. })
            ));
        }
    }

    #[test]
    fn credentials_must_fit_the_remote() {
        let ssh = Remote::parse("ssh://git.lan/x").unwrap();
        let https = Remote::parse("https://git.lan/x").unwrap();
        let local = Remote::parse("/tmp/x").unwrap();
        let key = Auth::SshKey {
            private_key: "k".into(),
            known_hosts: "kh".into(),
        };
        let token = Auth::Token {
            token_file: "t".into(),
            username: None,
        };
        assert!(key.check_fits(&ssh).is_ok());
        assert!(Auth::None
            .check_fits(&ssh)
            .unwrap_err()
            .to_string()
            .contains("never trusts"));
        assert!(token.check_fits(&ssh).is_err());
        assert!(token.check_fits(&https).is_ok());
        assert!(Auth::None.check_fits(&https).is_ok());
        assert!(key.check_fits(&https).is_err());
        assert!(Auth::None.check_fits(&local).is_ok());
        assert!(token.check_fits(&local).is_err());
    }

    #[test]
    fn a_token_becomes_the_basic_auth_password_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cr3t-token\n").unwrap();
        let https = Remote::parse("https://git.lan/org/x.git").unwrap();
        let auth = Auth::Token {
            token_file: file.clone(),
            username: None,
        };
        let choice =
            choose_credential(&https, &auth, CredentialType::USER_PASS_PLAINTEXT, None).unwrap();
        let CredentialChoice::UserPassword { user, password } = &choice else {
            panic!("{choice:?}")
        };
        assert_eq!(user, "git");
        assert_eq!(password.as_str(), "s3cr3t-token");
        assert!(!format!("{choice:?}").contains("s3cr3t"));
        // libgit2 turns it into a real credential.
        assert!(choice.to_cred().unwrap().has_username());

        let named = Auth::Token {
            token_file: file.clone(),
            username: Some("slipway-bot".into()),
        };
        let c = choose_credential(
            &https,
            &named,
            CredentialType::USER_PASS_PLAINTEXT,
            Some("u"),
        );
        assert!(
            matches!(c, Ok(CredentialChoice::UserPassword { user, .. }) if user == "slipway-bot")
        );

        std::fs::write(&file, "\n").unwrap();
        let e = choose_credential(&https, &auth, CredentialType::USER_PASS_PLAINTEXT, None);
        assert!(e.unwrap_err().to_string().contains("is empty"));
        // The server asking for a kind of credential we do not have.
        let e = choose_credential(&https, &auth, CredentialType::SSH_KEY, None);
        assert!(matches!(e, Err(SourceError::Credentials { .. })));
    }

    #[test]
    fn host_keys_are_pinned_by_name_and_port() {
        let k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArU9uV40NH7tlSYt/30DaRrHzQAuwS1LsaMHAwvr8ql";
        let kh = format!("git.lan {k1}\n[127.0.0.1]:2222 {k1}\n");
        let pins = PinnedHosts::parse(&kh, Path::new("kh")).unwrap();
        let blob = PublicKey::from_openssh(k1).unwrap().to_bytes().unwrap();
        assert!(pins.check("git.lan", 22, &blob).is_ok());
        assert!(pins.check("127.0.0.1", 2222, &blob).is_ok());
        assert!(matches!(
            pins.check("127.0.0.1", 22, &blob),
            Err(SourceError::HostKeyNotPinned { .. })
        ));
        assert!(matches!(
            pins.check("other.lan", 22, &blob),
            Err(SourceError::HostKeyNotPinned { .. })
        ));
        let other = ssh_key::PrivateKey::random(&mut rand_core_rng(), ssh_key::Algorithm::Ed25519)
            .unwrap()
            .public_key()
            .to_bytes()
            .unwrap();
        assert!(matches!(
            pins.check("git.lan", 22, &other),
            Err(SourceError::HostKeyMismatch { .. })
        ));
        let revoked =
            PinnedHosts::parse(&format!("@revoked * {k1}\n{kh}"), Path::new("kh")).unwrap();
        assert!(revoked.check("git.lan", 22, &blob).is_err());
    }

    #[test]
    fn hashed_known_hosts_entries_match() {
        // `ssh-keygen -H` form of "git.lan", salt = 20 zero bytes.
        let salt = [0u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"git.lan");
        let hash: [u8; 20] = mac.finalize().into_bytes().into();
        let hashed = HostPatterns::HashedName {
            salt: salt.to_vec(),
            hash,
        };
        let k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArU9uV40NH7tlSYt/30DaRrHzQAuwS1LsaMHAwvr8ql";
        let line = format!("{} {k1}\n", hashed.to_string());
        let pins = PinnedHosts::parse(&line, Path::new("kh")).unwrap();
        let blob = PublicKey::from_openssh(k1).unwrap().to_bytes().unwrap();
        assert!(pins.check("git.lan", 22, &blob).is_ok());
        assert!(pins.check("git2.lan", 22, &blob).is_err());
    }

    fn rand_core_rng() -> rand::rngs::OsRng {
        rand::rngs::OsRng
    }
}
