//! A simulated FCOS/K3s fleet on loopback, for Slipway's end-to-end tests
//! and benchmarks.
//!
//! Every node is a folder standing for its disk — `root/` (replaced by an
//! install) and `var/` (kept by an install that preserves it) — plus a
//! control folder with the node's run-time state, and a **real OpenSSH
//! sshd** listening on its own 127.0.0.1 port with its own ed25519 host key.
//! sshd's `ForceCommand` runs every command in a private mount namespace,
//! chrooted into the node's root with `/var` bind-mounted, so commands see
//! a busybox userland plus shims for what FCOS and K3s provide
//! (`rpm-ostree`, `efibootmgr`, `systemctl`, `reboot`, `k3s`,
//! `coreos-installer`). The shims are the `slipway-sim` binary, dispatched
//! on `argv[0]`; they read and write the node's state as JSON under an
//! flock. A supervisor thread carries out reboots (sshd down for the boot
//! delay, new boot id, `BootNext` honoured) and injected [`Fault`]s.
//!
//! K3s follows the configuration INSTALLED on each node and checks what it
//! means (see [`k3s`]): the fleet shares one cluster state ([`ClusterState`]:
//! cluster and token hash, etcd members, Node objects, what every machine's
//! K3s does, an event log, split-brains and etcd conflicts) in a folder
//! bind-mounted into every node under an flock. At every boot the supervisor
//! runs the node's `k3s-install.service` (or just starts K3s), retrying a
//! failing K3s the way systemd restarts it; `k3s kubectl` and
//! `k3s etcd-snapshot` answer from that state and fail like the real tools
//! without a reachable API or without etcd quorum.
//!
//! Nodes install the way metal does ([`netboot`]): each node has MACs and a
//! [`Firmware`] (a loopback boot server URL, `pxe-bootnext` or `pxe-always`).
//! When the firmware boots a network entry it asks Slipway's real boot server
//! for its iPXE script, and an install script runs the live installer: kernel,
//! initramfs and rootfs fetched, the one-shot Ignition config fetched, the
//! metal image ([`sim_metal_image`]) checked against its content address and
//! signature, `/var` kept or wiped by the rule of [`netboot`], the OS laid down
//! and the real Ignition (Debian package `ignition`, files stage) run into the
//! new root. A localboot script hands back to the disk. Every network boot is
//! recorded ([`SimNode::netboot_log`]); a failed install leaves the node down
//! with the reason ([`SimNode::down_reason`]). [`SimNode::install`] lays a
//! config down directly (the same code path, without the boot server), and
//! [`SimNode::apply_ignition`] runs Ignition on the current root.
//!
//! What it deliberately does not do (yet): the installed system's own
//! `coreos-installer` (its shim fails clearly; reinstalls go through the
//! firmware), image signatures beyond their presence, pods (a drain evicts
//! nothing), kubelet re-registration of a deleted Node, the node-password check
//! of reinstalled agents, and any isolation beyond a chroot — it runs as root
//! and trusts its callers. It never listens on anything but 127.0.0.1 and
//! never dials anything but loopback, and it does not depend on
//! `slipway-node-ssh`, `slipway-ignition-gen` or `slipway-pxe-publisher` (only
//! its tests do): it is a stand-in for machines, not a client.
//!
//! Processes: [`Fleet::stop`] and `Drop` kill every sshd the fleet started
//! and every process those started (found through `/proc`, frozen, then
//! killed), so no stray process outlives a fleet.

pub mod cluster;
mod enter;
mod fleet;
pub mod k3s;
pub mod kubectl;
pub mod netboot;
mod procs;
pub mod shim;
mod state;

pub use cluster::{
    read_cluster, update_cluster, ClusterEvent, ClusterInfo, ClusterState, Condition, EtcdConflict,
    EtcdMember, EventKind, HostStatus, KubeNode, SplitBrain, Taint, CLUSTER_MOUNT,
};
pub use enter::{
    enter, wrap, NodeDirs, ReceivedCommand, CLUSTER_DIR, COMMANDS_LOG, NODE_PATH, SFTP_SERVER,
};
pub use fleet::{
    locate_sim_binary, Fleet, FleetSpec, SimNode, SimNodeSpec, VarPolicy, BUSYBOX, IGNITION,
    NETBOOT_LOG, SSHD,
};
pub use k3s::NodeView;
pub use netboot::{
    parse_sim_metal_image, sim_metal_image, Fetch, Firmware, NetbootOutcome, NetbootRecord,
};
pub use procs::{descendants, kill_tree};
pub use slipway_model::inventory::ReinstallMethod;
pub use state::{
    checksum_for, default_efi, random_uuid, read_state, update_state, BootSource, Fault, K3sUnit,
    NodeState, SimK3s, SimState, CONTROL_MOUNT,
};

use std::path::{Path, PathBuf};

/// Everything that can go wrong simulating a fleet.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file system or process operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`writing`, `starting`, ...).
        action: &'static str,
        /// The path (or program) concerned.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A tool the simulator needs is not installed.
    #[error("required tool {tool} is missing: {hint}")]
    MissingTool {
        /// The tool's path or name.
        tool: String,
        /// How to get it.
        hint: String,
    },
    /// A node's sshd did not come up.
    #[error("sshd of node {node} did not start: {message}")]
    SshdDidNotStart {
        /// Node name.
        node: String,
        /// Why, with the tail of its log.
        message: String,
    },
    /// A node's state file could not be parsed.
    #[error("corrupt simulator state {path}: {message}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// No node has this name.
    #[error("no simulated node named {0:?}")]
    UnknownNode(String),
    /// The fleet spec is unusable.
    #[error("invalid fleet spec: {0}")]
    InvalidSpec(String),
    /// Something the simulator does not simulate was asked for.
    #[error("not simulated: {0}")]
    Unsupported(String),
    /// A URL the simulator was asked to dial is not `http://` to loopback: it never dials
    /// anything else.
    #[error("refusing to dial {url}: {why}")]
    NotLoopback {
        /// The URL (any token redacted).
        url: String,
        /// Why it is refused.
        why: String,
    },
    /// An HTTP request of the simulated firmware or installer failed (no answer).
    #[error("HTTP request to {url} failed: {message}")]
    Http {
        /// The URL (any token redacted).
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The real Ignition refused a config or failed applying it.
    #[error("Ignition failed on node {node}: {log}")]
    IgnitionFailed {
        /// Node name.
        node: String,
        /// The tail of Ignition's log (lines that mention a token are left out).
        log: String,
    },
}

impl SimError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        SimError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
