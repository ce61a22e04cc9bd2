//! The one error type of the git source, with variants named for what went wrong.

use std::path::PathBuf;

use super::CommitId;

/// Why a fetched commit was not accepted. Every refusal keeps the last good commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The commit carries no signature at all.
    #[error("it is not signed (sign commits with `git commit -S` and gpg.format=ssh)")]
    Unsigned,
    /// The commit is signed, but not with an SSH signature (e.g. OpenPGP or X.509).
    #[error("its signature is not an SSH signature (only gpg.format=ssh signatures are accepted)")]
    NotSshSignature,
    /// The SSH signature armor could not be decoded.
    #[error("its SSH signature is malformed: {0}")]
    MalformedSignature(String),
    /// The signature was made for another namespace than `git`.
    #[error("it is signed for namespace {found:?}, not \"git\"")]
    WrongSignatureNamespace {
        /// The namespace inside the signature.
        found: String,
    },
    /// The signing key is not listed in allowed_signers.
    #[error("it is signed by key {fingerprint}, which is not in allowed_signers")]
    UnknownKey {
        /// SHA256 fingerprint of the signing key.
        fingerprint: String,
    },
    /// The signing key is listed, but its allowed_signers options forbid this use.
    #[error("it is signed by {principal} ({fingerprint}), but allowed_signers {why}")]
    KeyNotValid {
        /// The principals field of the matching allowed_signers line.
        principal: String,
        /// SHA256 fingerprint of the signing key.
        fingerprint: String,
        /// Which option forbids it (namespaces, valid-after, valid-before).
        why: String,
    },
    /// The signature does not verify against the commit's content.
    #[error("its signature by {fingerprint} does not verify (the commit was altered or the signature is forged)")]
    BadSignature {
        /// SHA256 fingerprint of the key named by the signature.
        fingerprint: String,
    },
}

/// Everything that can go wrong while fetching, verifying and reading the cluster repo.
///
/// No variant ever carries a token, a private key, a webhook secret or a webhook body.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The remote could not be fetched (gone, unreachable, authentication failed...).
    /// Transient: the last good commit is kept and the poll backs off.
    #[error("fetching {remote}: {cause}")]
    RemoteUnreachable {
        /// The remote, with any password in its URL removed.
        remote: String,
        /// What failed, as git reported it.
        cause: String,
    },
    /// The fetch worked but the remote has no such branch.
    #[error("the remote {remote} has no branch {branch:?}")]
    BranchMissing {
        /// The remote, with any password in its URL removed.
        remote: String,
        /// The configured branch.
        branch: String,
    },
    /// The SSH server's host is not in the pinned known_hosts file.
    #[error("no pinned host key for {host} in {known_hosts} (add it with ssh-keyscan; Slipway never trusts on first use)")]
    HostKeyNotPinned {
        /// The host (or `[host]:port`) looked up.
        host: String,
        /// The known_hosts file searched.
        known_hosts: PathBuf,
    },
    /// The SSH server presented a host key other than the pinned one.
    #[error("host key mismatch for {host}: the server presented {presented}, which {known_hosts} does not pin")]
    HostKeyMismatch {
        /// The host (or `[host]:port`).
        host: String,
        /// SHA256 fingerprint of the key the server presented.
        presented: String,
        /// The known_hosts file searched.
        known_hosts: PathBuf,
    },
    /// The head of the branch failed the trust checks.
    #[error("refused commit {commit}: {reason}")]
    Refused {
        /// The refused commit.
        commit: CommitId,
        /// Why.
        reason: Refusal,
    },
    /// The head does not descend from the last applied (or last good) commit: history was
    /// rewritten or rolled back. Allowed only with `allow_rewind`.
    #[error("refused commit {head}: it does not descend from the {which} commit {since} (history was rewound or force-pushed; set allow_rewind to accept it)")]
    Rewind {
        /// The fetched head.
        head: CommitId,
        /// The commit it should descend from.
        since: CommitId,
        /// "last applied" or "last good".
        which: &'static str,
    },
    /// The remote string is not one Slipway can use.
    #[error("unsupported remote {remote:?}: {why}")]
    UnsupportedRemote {
        /// The remote as configured (password removed).
        remote: String,
        /// Why, and what to use instead.
        why: String,
    },
    /// The credentials do not fit the remote, or could not be loaded.
    #[error("credentials for {remote}: {why}")]
    Credentials {
        /// The remote, with any password in its URL removed.
        remote: String,
        /// What is wrong (never the secret itself).
        why: String,
    },
    /// The allowed_signers configuration has errors (all of them are listed).
    #[error("allowed_signers{}: {}", origin.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(), problems.join("; "))]
    AllowedSigners {
        /// The file, when it was read from one.
        origin: Option<PathBuf>,
        /// One message per bad line, `line N: ...`.
        problems: Vec<String>,
    },
    /// The known_hosts file could not be read or parsed.
    #[error("known_hosts {path}: {why}")]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A commit id that is not in the local clone (never fetched, or not a commit).
    #[error("commit {commit} is not in the local clone: {why}")]
    UnknownCommit {
        /// The commit asked for.
        commit: String,
        /// What git said.
        why: String,
    },
    /// A branch name git would not accept.
    #[error("invalid branch name {0:?}")]
    InvalidBranch(String),
    /// `<state>/source.json` exists but cannot be understood.
    #[error("reading {path}: {why}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A local git operation on the state clone failed.
    #[error("{action}: {source}")]
    Git {
        /// What Slipway was doing ("opening the state clone", ...).
        action: String,
        /// The git error.
        source: git2::Error,
    },
    /// A local file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What Slipway was doing ("writing", "reading"...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file watcher could not be set up.
    #[error("watching {path}: {why}")]
    Watch {
        /// The watched folder.
        path: PathBuf,
        /// What the watcher said.
        why: String,
    },
}

impl SourceError {
    /// True for failures that may heal by themselves (the remote is down, the network is
    /// out): the caller keeps the last good commit and retries after the backoff delay.
    /// Refusals and configuration errors are not transient: retrying the same head gives
    /// the same answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::RemoteUnreachable { .. } | SourceError::BranchMissing { .. }
        )
    }

    pub(crate) fn git(action: impl Into<String>, source: git2::Error) -> Self {
        SourceError::Git {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        SourceError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
