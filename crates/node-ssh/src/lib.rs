//! Slipway's SSH edge: read a node's state over SSH, and nothing more clever.
//!
//! What it is for:
//! - opening sessions to nodes with libssh2 ([`Ssh2Connector`]), with the
//!   server's host key **pinned** ([`HostKeyPin`]): a mismatch is the hard
//!   error [`SshError::HostKeyMismatch`] naming both SHA-256 fingerprints, and
//!   an unknown host is refused — there is no trust on first use;
//! - gathering [`NodeFacts`](slipway_model::facts::NodeFacts) with one fixed
//!   list of read-only commands ([`FACT_COMMANDS`]) sent in a single round
//!   trip ([`gather_facts`]), parsed by pure functions ([`facts_from_output`]
//!   and the `parse_*` functions) so malformed output becomes a
//!   [`FactError`](slipway_model::facts::FactError), never a panic;
//! - fanning out over a fleet with bounded concurrency ([`gather_fleet`]),
//!   where an unreachable node is a fact (`Unreachable { reason }`), not a
//!   failure of the whole call;
//! - small SFTP reads and writes for the reconciler, and the file-system
//!   operations ([`NodeConn::make_dirs`], [`NodeConn::rename`],
//!   [`NodeConn::remove_all`], [`NodeConn::list_dir`], ...) behind
//!   [`replace_tree`]: publishing a whole folder (e.g. a boot site on a
//!   router's web root) so that its public name always holds a complete tree.
//!
//! What it deliberately does not do: decide anything. It does not plan,
//! reboot, install or retry; it has no idea what the desired state is. It
//! never writes keys to disk, never logs secrets, and depends on no other
//! Slipway crate but `slipway-model`. It is the only crate that links ssh2.
//!
//! The [`NodeConnector`]/[`NodeConn`] traits are the seam the reconciler stubs
//! in its tests; everything above them is synchronous, and only
//! [`gather_fleet`] is async (blocking sessions run in `spawn_blocking`).

mod error;
mod fleet;
mod gather;
mod remote;
mod session;
mod target;

pub use error::SshError;
pub use fleet::{gather_fleet, gather_fleet_with};
pub use gather::{
    fact_script, facts_from_output, gather_facts, parse_applied, parse_boot_id, parse_canary,
    parse_efibootmgr, parse_is_active, parse_k3s_version, parse_rpm_ostree_status, parse_uptime,
    split_sections, FactCommand, FactKey, FactSource, Section, SectionStatus, FACT_COMMANDS,
};
pub use remote::{replace_tree, RemoteEntry, RemoteFile, RemoteKind, ReplaceReport};
pub use session::{
    CommandOutput, ConnectOptions, NodeConn, NodeConnector, Ssh2Conn, Ssh2Connector,
    HOST_KEY_PREFERENCE, KEX_PREFERENCE,
};
pub use target::{
    fingerprint_of_blob, fingerprint_of_public, public_key_of_private, Auth, HostKeyPin,
    HostPublicKey, NodeTarget,
};
