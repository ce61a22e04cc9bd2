//! The planning core: `plan(desired, actual) -> Plan`, and its rendering.
//!
//! [`plan`] is a pure function: no I/O, no clock, no randomness. The caller (the
//! `reconcile` command) gathers the inputs — the inventory rendered at a commit
//! ([`Desired`]) and what SSH and K3s report ([`Actual`]) — and this module decides, per
//! node, one [`Action`] with its [`Reason`]s and file diffs, then orders the changes into
//! [`Wave`]s. [`render_text`] prints it like `terraform plan`; [`render_json`] prints the
//! versioned JSON documented below; [`detailed_exit_code`] gives `--detailed-exitcode`.
//!
//! What it deliberately does not do: run anything (the rollout executes a plan), read a
//! clock (maintenance windows are the rollout's), or see a secret. File contents enter
//! only through [`RawFiles::redact`], which replaces every secret value by `(sensitive)`
//! before the plan sees them; a secret that changed is reported as "a secret changed",
//! never shown.
//!
//! # Actions and rules
//! - `install`: never installed (no `applied.json`) and never known. The only action an
//!   unreachable node can get besides `replace` and `remove`.
//! - `reinstall`: the config hash differs from `applied.json`'s (changed files listed
//!   with unified diffs), or the node is in the cluster without `applied.json`.
//! - `upgrade-os`: only the OS release moved (in place: `rpm-ostree deploy`, reboot).
//! - `upgrade-k3s`: only K3s moved (the only changed files are the K3s binary and install
//!   script, or the node's K3s drifted from an unchanged config).
//!   When both the OS and K3s move, or anything else changed, the node is reinstalled.
//! - `remove`: known (K3s's node list, last generation) but gone from the inventory. An
//!   unreachable node is removed without the drain (said so in its reasons).
//! - `replace`: same name, but none of the recorded MACs is in the inventory any more, or
//!   the install disk changed. The old machine may be dead, so unreachability does not
//!   block it; for servers the etcd member is removed first.
//! - `none`, or `blocked` with the reasons why and the action it would otherwise take.
//!
//! Blocking rules: a known node that is unreachable; a K3s change that skips a minor
//! version or lowers the minor; a server upgrade that would leave servers more than one
//! minor apart; an agent whose K3s would be newer than a server's after this plan; a
//! config that sets `cluster-init` anywhere but on the bootstrap server of a new cluster
//! (and, in a new cluster, a bootstrap config that joins instead); every joining node of a
//! new cluster while the bootstrap server is blocked; a server step that would leave etcd
//! below quorum (members and healthy members counted from facts and K3s's `Ready`; the
//! arithmetic is in the reason); a `pxe-bootnext` reinstall on a node whose EFI boot
//! entries show no network entry. A single-server cluster is not blocked (there is no
//! other way to change it); its reason says the API will be down.
//!
//! Waves: servers one per wave — the bootstrap server first when the cluster is new,
//! otherwise new servers first and the bootstrap server last — then all new agents in
//! one wave (they serve nothing yet), then serving agents in batches of
//! `max_unavailable_agents`.
//!
//! # JSON output, `format_version` "1"
//!
//! ```text
//! {
//!   "format_version": "1",
//!   "cluster": "homelab",
//!   "commit": "<full hash>",
//!   "author": "Name <email>",
//!   "signer": "<who signed>" | null,
//!   "cluster_exists": true,
//!   "nodes": [{
//!     "node": "server1",
//!     "hostname": "server1.lab.example" | null,        // null for nodes to remove
//!     "role": "server" | "agent" | null,
//!     "bootstrap": false,
//!     "action": "install" | "reinstall" | "upgrade-os" | "upgrade-k3s" | "remove"
//!             | "replace" | "none" | "blocked",
//!     "intended": <action> | null,                     // set when "blocked"
//!     "reasons": [{"code": "<reason code>", "message": "<for people>"}],
//!     "steps": ["cordon and drain", ...],              // empty for none and blocked
//!     "diff": [{
//!       "path": "/etc/hostname" | "systemd:<unit>" | "systemd:<unit>.d/<dropin>"
//!             | "link:<path>" | "directory:<path>" | "passwd:user/<name>"
//!             | "kernel_arguments" | "storage:<disks|filesystems|raid|luks>",
//!       "change": "added" | "removed" | "modified",
//!       "attributes": [{"name": "mode" | "owner" | "enabled" | "masked" | "kind",
//!                       "before": "0644" | null, "after": "0600" | null}],
//!       "secret_changed": false,                       // the value is never shown
//!       "diff": "<unified diff, secrets as (sensitive)>" | null,
//!       "note": "<summary for binary contents>" | null
//!     }]
//!   }],
//!   "waves": [{"number": 1, "kind": "server" | "new_agents" | "agents",
//!              "nodes": ["server2"]}],
//!   "summary": {"install": 0, "reinstall": 1, "replace": 0, "upgrade": 0,
//!               "remove": 0, "unchanged": 4, "blocked": 0}
//! }
//! ```
//!
//! Reason codes (stable): `new_node`, `not_installed_by_slipway`, `config_changed`,
//! `files_changed`, `secret_changed`, `change_not_shown`, `no_applied_files`,
//! `os_changed`, `k3s_changed`, `mac_changed`, `disk_changed`, `removed_from_inventory`,
//! `unreachable`, `fact_missing`, `quorum`, `single_server`, `k3s_skipped_minor`,
//! `k3s_downgrade`, `k3s_servers_first`, `k3s_server_skew`, `k3s_version_unreadable`,
//! `bootstrap_reinit`, `bootstrap_joins_nothing`, `waits_for_bootstrap`,
//! `no_netboot_entry`, `drain_skipped`.
//!
//! Compatible additions (new fields, new reason codes, new actions) keep version "1";
//! renaming or removing a field or changing its meaning bumps it.

mod decide;
mod diff;
mod files;
mod render;
mod types;

pub use decide::plan;
pub use diff::diff_files;
pub use files::{Contents, FileEntry, NodeFiles, RawFiles, SENSITIVE};
pub use render::{detailed_exit_code, render_json, render_text};
pub use types::{
    Action, Actual, ActualNode, AttributeChange, Desired, DesiredNode, FileChange, FileDiff,
    KnownNode, NodeAction, Plan, Policy, Reason, ReasonCode, Summary, Wave, WaveKind,
    FORMAT_VERSION,
};

/// Why a node's files could not be read from its Ignition config. Messages name the file
/// and the problem, never its contents (which may hold secrets).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The Ignition config is not JSON.
    #[error("the Ignition config is not valid JSON (line {line}, column {column})")]
    IgnitionSyntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A field has the wrong type.
    #[error("Ignition field `{field}` is not {expected}")]
    IgnitionShape {
        /// Which field.
        field: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A `data:` URL could not be decoded.
    #[error("the data URL of {path} cannot be decoded: {reason}")]
    BadDataUrl {
        /// The file.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Contents marked gzip are not gzip.
    #[error("the contents of {path} are marked gzip but do not decompress")]
    BadGzip {
        /// The file.
        path: String,
    },
    /// A compression other than gzip.
    #[error("{path} uses compression `{compression}`; Ignition supports only gzip")]
    UnsupportedCompression {
        /// The file.
        path: String,
        /// The named compression.
        compression: String,
    },
    /// Decoded contents over the limit.
    #[error("{path} decodes to more than {limit} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit in bytes.
        limit: usize,
    },
}
