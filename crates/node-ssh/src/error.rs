//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong talking to a node over SSH.
///
/// Messages never contain key material: at most public keys' fingerprints.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection could not be established (refused, unroutable, ...).
    #[error("{node}: cannot connect to {addr}: {message}")]
    Connect {
        /// Node name.
        node: String,
        /// The `host:port` dialled.
        addr: String,
        /// The operating system's reason.
        message: String,
    },
    /// An operation did not finish within its time limit.
    #[error("{node}: timed out while {during}")]
    Timeout {
        /// Node name.
        node: String,
        /// What was being done (`connecting`, `handshaking`, `running <cmd>`, ...).
        during: String,
    },
    /// The SSH protocol handshake failed (not an SSH server, no common algorithm, ...).
    #[error("{node}: SSH handshake failed: {message}")]
    Handshake {
        /// Node name.
        node: String,
        /// libssh2's reason.
        message: String,
    },
    /// The server's host key is not the pinned one. Never trusted on first use.
    #[error(
        "{node}: host key mismatch: expected {expected}, server presented {actual} — refusing to connect"
    )]
    HostKeyMismatch {
        /// Node name.
        node: String,
        /// Fingerprint(s) of the pinned key(s), OpenSSH format (`SHA256:...`).
        expected: String,
        /// Fingerprint of the key the server presented.
        actual: String,
    },
    /// A known_hosts pin has no entry for this host at all.
    #[error(
        "{node}: no entry for {host} in known_hosts file {path} (trust on first use is never done)"
    )]
    UnknownHost {
        /// Node name.
        node: String,
        /// The host (and port) looked up.
        host: String,
        /// The known_hosts file.
        path: PathBuf,
    },
    /// A host key pin, key file or known_hosts file could not be read or parsed.
    #[error("invalid key or pin: {0}")]
    InvalidKey(String),
    /// The server rejected every authentication attempt.
    #[error("{node}: authentication as {user} failed: {message}")]
    AuthFailed {
        /// Node name.
        node: String,
        /// Remote user.
        user: String,
        /// libssh2's reason.
        message: String,
    },
    /// A command could not be started or its output not read.
    #[error("{node}: running `{command}` failed: {message}")]
    Exec {
        /// Node name.
        node: String,
        /// The command.
        command: String,
        /// What went wrong.
        message: String,
    },
    /// A command printed more than the output limit.
    #[error("{node}: `{command}` printed more than {limit} bytes")]
    OutputTooLarge {
        /// Node name.
        node: String,
        /// The command.
        command: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// An SFTP operation failed.
    #[error("{node}: SFTP {operation} {path} failed: {message}")]
    Sftp {
        /// Node name.
        node: String,
        /// `read`, `write`, ...
        operation: &'static str,
        /// Remote path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The connection type does not implement this operation (e.g. a test stub).
    #[error("{operation} is not supported by this connection")]
    Unsupported {
        /// The operation asked for (`mkdir`, `rename`, ...).
        operation: &'static str,
    },
    /// A remote path or name given to a tree upload is not a plain, safe path
    /// (empty, absolute where it must be relative, `..`, `.`, NUL, ...).
    #[error("unsafe remote path {path:?}: {reason}")]
    UnsafeRemotePath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An atomic tree replacement failed after it started changing the remote.
    /// `restored` says whether the previously published tree is back under its
    /// public name.
    #[error("{node}: replacing {path} failed ({step}): {message}{}", if *restored { " — the previous tree is still published" } else { " — the previous tree may be left at the backup name" })]
    SwapFailed {
        /// Node name.
        node: String,
        /// The public path being replaced.
        path: String,
        /// Which step failed (`moving the old tree aside`, `moving the new tree into place`).
        step: &'static str,
        /// What went wrong.
        message: String,
        /// Whether the previous tree is back under its public name.
        restored: bool,
    },
    /// The blocking worker running this node's session died unexpectedly.
    #[error("{node}: worker failed: {message}")]
    Worker {
        /// Node name.
        node: String,
        /// What happened.
        message: String,
    },
}

impl SshError {
    /// The short reason used for [`slipway_model::facts::Reachability::Unreachable`].
    pub fn unreachable_reason(&self) -> String {
        self.to_string()
    }
}
