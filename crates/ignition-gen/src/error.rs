//! The crate's error type.

use thiserror::Error;

/// What can go wrong outside of diagnostics on the operator's Butane input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// `local:` or `trees:` used without a files directory (Butane's `-d/--files-dir`).
    #[error("local file paths are relative to a files directory that must be specified with -d/--files-dir")]
    NoFilesDir,
    /// A local path climbs out of the files directory with `..`.
    #[error("local file path traverses outside the files directory")]
    FilesDirEscape,
    /// The named local file does not exist.
    #[error("local file {0:?} does not exist in the files directory")]
    LocalFileNotFound(String),
    /// The local path names a directory where a file was expected, or the reverse.
    #[error("local path {0:?} is not a regular file")]
    NotAFile(String),
    /// A tree's root is not a directory.
    #[error("root of tree must be a directory")]
    TreeNotDirectory,
    /// Reading a local file failed for another reason.
    #[error("reading local file {path:?}: {reason}")]
    LocalFileUnreadable {
        /// The relative path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Ignition JSON could not be parsed.
    #[error("invalid Ignition JSON: {0}")]
    InvalidIgnitionJson(String),
    /// Ignition JSON declares a version this crate does not handle.
    #[error("unsupported Ignition config version {0:?} (supported: 3.0.0 to 3.5.0)")]
    UnsupportedIgnitionVersion(String),
}
