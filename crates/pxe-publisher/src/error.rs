//! The crate's one error type.

use std::path::PathBuf;

use crate::types::Sha256Digest;

/// Everything that can go wrong while publishing generations, serving boot
/// state or mirroring artifacts.
///
/// No variant ever carries a token, an Ignition config or any other secret.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A MAC address was not six hex octets separated by `:` or `-`.
    #[error("invalid MAC address {0:?}: expected six hex octets separated by ':' or '-'")]
    InvalidMac(String),
    /// A SHA-256 digest was not 64 hex characters.
    #[error("invalid sha256 digest {0:?}: expected 64 hex characters")]
    InvalidDigest(String),
    /// The boot server's base URL is unusable in an iPXE script.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A node name cannot be used in URLs and file names.
    #[error("invalid node name {0:?}: use 1-63 characters from [A-Za-z0-9._-], not starting with '.' or '-'")]
    InvalidNodeName(String),
    /// An artifact name cannot be used in URLs and file names.
    #[error("invalid artifact file name {0:?}: use [A-Za-z0-9._+-], not starting with '.'")]
    InvalidArtifactName(String),
    /// A commit id contains characters unsafe in a directory name.
    #[error("invalid commit id {0:?}: use 1-64 characters from [A-Za-z0-9._-]")]
    InvalidCommit(String),
    /// Text destined for an iPXE `kernel` line would be re-interpreted by iPXE
    /// (variable expansion, quoting, comments, command chaining) or split.
    #[error("{what} {value:?} cannot be placed on an iPXE kernel line: {reason}")]
    UnsafeIpxeText {
        /// Which input the text came from (e.g. "kernel argument of node w1").
        what: String,
        /// The refused text.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The same MAC address is claimed by two nodes.
    #[error("MAC {mac} is claimed by both {first} and {second}")]
    DuplicateMac {
        /// The MAC, canonical form.
        mac: String,
        /// First node claiming it.
        first: String,
        /// Second node claiming it.
        second: String,
    },
    /// Two nodes share a name.
    #[error("node {0} appears twice in the generation input")]
    DuplicateNode(String),
    /// A node has no MAC address, so it could never be served.
    #[error("node {0} has no MAC address")]
    NodeWithoutMac(String),
    /// A custom iPXE script for unknown MACs does not start with `#!ipxe`.
    #[error("unknown-MAC script {0:?} must start with a '#!ipxe' line (iPXE hangs otherwise)")]
    ScriptWithoutMagic(String),
    /// The node is not part of the generation being served.
    #[error("node {0} is not in the active generation")]
    UnknownNode(String),
    /// Ignition bytes handed in for a node differ from the digest its
    /// generation recorded (stale or mixed-up input).
    #[error("the Ignition given for node {node} is not the one its generation was rendered with (sha256 {expected})")]
    IgnitionMismatch {
        /// Node name.
        node: String,
        /// The digest the generation recorded.
        expected: Sha256Digest,
    },
    /// No generation has been published or activated yet.
    #[error("no generation is active")]
    NoActiveGeneration,
    /// `rollback` found no generation older than the current one.
    #[error("no previous generation to roll back to")]
    NoPreviousGeneration,
    /// The named generation is not on disk.
    #[error("generation {0} not found")]
    GenerationNotFound(String),
    /// A generation's manifest could not be parsed.
    #[error("generation manifest {path} is corrupt: {source}")]
    CorruptManifest {
        /// The manifest file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing ("writing", "renaming", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The FCOS stream metadata lacks a required field or is not JSON.
    #[error("stream metadata: {0}")]
    StreamMetadata(String),
    /// A K3s checksum file does not list the wanted file.
    #[error("checksum file {checksum_url} lists no entry for {file}")]
    ChecksumMissing {
        /// File name looked up.
        file: String,
        /// Checksum file URL.
        checksum_url: String,
    },
    /// A downloaded artifact's SHA-256 differs from the published one; the
    /// download was deleted.
    #[error("{name}: sha256 mismatch (expected {expected}, got {actual}); download deleted")]
    DigestMismatch {
        /// Artifact file name.
        name: String,
        /// Digest we were promised.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },
    /// A download kept failing after all retries.
    #[error("downloading {url} failed after {attempts} attempts: {last_error}")]
    DownloadFailed {
        /// What we tried to fetch.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure, as text.
        last_error: String,
    },
    /// Binding or running the HTTP server failed.
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
}

impl PublishError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        PublishError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = PublishError> = std::result::Result<T, E>;
