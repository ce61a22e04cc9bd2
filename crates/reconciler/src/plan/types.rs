//! The plan's inputs (desired, actual) and its output, as plain values.

use serde::Serialize;
use slipway_model::facts::NodeFacts;
use slipway_model::inventory::{ReinstallMethod, Role};
use slipway_model::net::MacAddr;

use super::files::NodeFiles;

/// The version of the JSON output's schema. Bumped on any incompatible change.
pub const FORMAT_VERSION: &str = "1";

// ---------------------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------------------

/// What Git asks for: the rendered inventory at one commit.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The commit being applied (full hash).
    pub commit: String,
    /// The commit's author, as the caller wants it shown (`Name <email>`).
    pub author: String,
    /// Who signed the commit, as verified by the caller; `None`: unsigned.
    pub signer: Option<String>,
    /// Cluster name.
    pub cluster_name: String,
    /// Every node of the inventory.
    pub nodes: Vec<DesiredNode>,
    /// How changes may roll.
    pub policy: Policy,
}

/// The rollout policy the plan orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Agents that may be down at once; 0 is taken as 1.
    pub max_unavailable_agents: u32,
}

/// One node as the inventory and its rendered Ignition describe it.
#[derive(Debug, Clone)]
pub struct DesiredNode {
    /// Node name (the node file's stem).
    pub name: String,
    /// FQDN.
    pub hostname: String,
    /// Server or agent.
    pub role: Role,
    /// The server that initialises a new cluster.
    pub bootstrap: bool,
    /// Its NICs' MACs, primary first.
    pub macs: Vec<MacAddr>,
    /// The disk it installs to.
    pub install_disk: String,
    /// Hash of the rendered Ignition (as `applied.json` records it).
    pub config_hash: String,
    /// The rendered Ignition's files, redacted.
    pub files: NodeFiles,
    /// The FCOS release it should run.
    pub os_version: String,
    /// The K3s version it should run (`v1.30.4+k3s1`).
    pub k3s_version: String,
    /// How a reinstall makes it netboot.
    pub reinstall_method: ReinstallMethod,
}

/// What is observed: facts per node and the nodes known to exist.
#[derive(Debug, Clone, Default)]
pub struct Actual {
    /// Facts of every node the caller could ask (desired nodes and known ones).
    pub nodes: Vec<ActualNode>,
    /// Nodes known to exist, from the last applied generation and K3s's node list: they
    /// may be gone from the inventory.
    pub known_nodes: Vec<KnownNode>,
    /// Whether a cluster runs (some server reports one). When it does, no config may
    /// initialise a new one.
    pub cluster_exists: bool,
}

/// One node's observed state.
#[derive(Debug, Clone)]
pub struct ActualNode {
    /// Node name.
    pub name: String,
    /// What SSH showed.
    pub facts: NodeFacts,
    /// The node's config re-rendered at the commit its `applied.json` records, redacted
    /// with the same secret list, for an exact diff; `None` when that was not possible.
    pub applied_files: Option<NodeFiles>,
    /// The MACs recorded when it was last installed (empty: none recorded).
    pub recorded_macs: Vec<MacAddr>,
    /// The install disk recorded when it was last installed.
    pub recorded_disk: Option<String>,
}

/// A node known to exist in the cluster or in the last applied generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownNode {
    /// Node name (K3s's node name: the short host name).
    pub name: String,
    /// Its role, when known.
    pub role: Option<Role>,
    /// K3s's `Ready` condition, when read from the node list.
    pub ready: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// Output.
// ---------------------------------------------------------------------------------------

/// The plan: what to do to each node, and in which order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Schema version of this document ([`FORMAT_VERSION`]).
    pub format_version: &'static str,
    /// Cluster name.
    pub cluster: String,
    /// The commit being applied.
    pub commit: String,
    /// Its author.
    pub author: String,
    /// Its verified signer; `None`: unsigned.
    pub signer: Option<String>,
    /// Whether a cluster already runs.
    pub cluster_exists: bool,
    /// One entry per node: servers, then agents, then nodes to remove, each in name order.
    pub nodes: Vec<NodeAction>,
    /// The order changes roll in; blocked and unchanged nodes are in no wave.
    pub waves: Vec<Wave>,
    /// Counts per action.
    pub summary: Summary,
}

/// What happens to one node, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeAction {
    /// Node name.
    pub node: String,
    /// FQDN, when the inventory has the node.
    pub hostname: Option<String>,
    /// Role, when known.
    pub role: Option<Role>,
    /// Whether it is the bootstrap server.
    pub bootstrap: bool,
    /// The action.
    pub action: Action,
    /// For a blocked node: what it would otherwise do.
    pub intended: Option<Action>,
    /// Why: each reason with a stable code and a message for people.
    pub reasons: Vec<Reason>,
    /// What the rollout will do, in order (empty for `none` and `blocked`).
    pub steps: Vec<String>,
    /// What changes in its files (applied → desired), secrets masked.
    pub diff: Vec<FileDiff>,
}

/// The action for one node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A new machine: netboot and install.
    Install,
    /// Its config changed: drain, netboot, install again (keeping `/var`).
    Reinstall,
    /// Only the OS release moved: `rpm-ostree deploy` and reboot, in place.
    UpgradeOs,
    /// Only K3s moved: new binary and restart, in place.
    UpgradeK3s,
    /// Gone from the inventory: drain, delete the node object, disarm its boot.
    Remove,
    /// Same host name on new hardware (MAC) or a new install disk: retire the old, install anew.
    Replace,
    /// Nothing to do.
    None,
    /// Something to do, but not safe now.
    Blocked,
}

impl Action {
    /// The action's name, as in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Reinstall => "reinstall",
            Action::UpgradeOs => "upgrade-os",
            Action::UpgradeK3s => "upgrade-k3s",
            Action::Remove => "remove",
            Action::Replace => "replace",
            Action::None => "none",
            Action::Blocked => "blocked",
        }
    }

    /// Whether the node is taken out of service by it.
    pub fn is_disruptive(self) -> bool {
        !matches!(self, Action::None | Action::Blocked | Action::Install)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One reason for an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Stable code for scripts.
    pub code: ReasonCode,
    /// For people.
    pub message: String,
}

impl Reason {
    pub(crate) fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Stable reason codes (`snake_case` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Never installed and never known.
    NewNode,
    /// Known, but without `applied.json`: not installed by Slipway.
    NotInstalledBySlipway,
    /// The config hash differs from `applied.json`'s.
    ConfigChanged,
    /// Files differ (listed).
    FilesChanged,
    /// A secret value differs (not shown).
    SecretChanged,
    /// The hash differs but no file does: the change is outside what the plan can show.
    ChangeNotShown,
    /// The applied commit's config could not be re-rendered: no file diff.
    NoAppliedFiles,
    /// The OS release moves.
    OsChanged,
    /// The K3s version moves.
    K3sChanged,
    /// The netboot MAC changed.
    MacChanged,
    /// The install disk changed.
    DiskChanged,
    /// Gone from the inventory.
    RemovedFromInventory,
    /// Unreachable over SSH.
    Unreachable,
    /// A fact needed for the decision could not be read.
    FactMissing,
    /// Taking it down would lose etcd quorum.
    Quorum,
    /// The only server: the API is down while it changes.
    SingleServer,
    /// The K3s upgrade skips a minor version.
    K3sSkippedMinor,
    /// The K3s change is a minor downgrade.
    K3sDowngrade,
    /// An agent would run a newer K3s than a server.
    K3sServersFirst,
    /// Servers would end up more than one minor version apart.
    K3sServerSkew,
    /// A K3s version string could not be read.
    K3sVersionUnreadable,
    /// The bootstrap server's config would initialise a cluster that exists.
    BootstrapReinit,
    /// No cluster exists and the bootstrap server's config joins instead of initialising.
    BootstrapJoinsNothing,
    /// Waits for the bootstrap server, which is blocked.
    WaitsForBootstrap,
    /// No network boot entry: the node cannot be made to netboot.
    NoNetbootEntry,
    /// The drain is skipped: the node is unreachable.
    DrainSkipped,
}

/// One file that differs between applied and desired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// Path or pseudo-path (`systemd:k3s.service`).
    pub path: String,
    /// Added, removed or modified.
    pub change: FileChange,
    /// Attributes that changed (mode, owner, enabled, masked, kind).
    pub attributes: Vec<AttributeChange>,
    /// Whether a secret value in it changed (the value is never shown).
    pub secret_changed: bool,
    /// Unified diff of the decoded contents (secrets as `(sensitive)`), when they are text
    /// and differ.
    pub diff: Option<String>,
    /// A summary when contents differ but cannot be shown as text (binary).
    pub note: Option<String>,
}

/// How a file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileChange {
    /// Only in the desired config.
    Added,
    /// Only in the applied config.
    Removed,
    /// In both, different.
    Modified,
}

/// One attribute's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributeChange {
    /// `mode`, `owner`, `enabled`, `masked` or `kind`.
    pub name: &'static str,
    /// Applied value, if set.
    pub before: Option<String>,
    /// Desired value, if set.
    pub after: Option<String>,
}

/// A step of the rollout: nodes that change together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wave {
    /// 1-based position.
    pub number: usize,
    /// Servers (always one) or agents (a batch).
    pub kind: WaveKind,
    /// The nodes, in name order.
    pub nodes: Vec<String>,
}

/// What a wave holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveKind {
    /// One server.
    Server,
    /// New agents, not serving yet: all at once.
    NewAgents,
    /// At most `max_unavailable_agents` serving agents.
    Agents,
}

/// Counts per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `install`.
    pub install: usize,
    /// `reinstall`.
    pub reinstall: usize,
    /// `replace`.
    pub replace: usize,
    /// `upgrade-os` and `upgrade-k3s`.
    pub upgrade: usize,
    /// `remove`.
    pub remove: usize,
    /// `none`.
    pub unchanged: usize,
    /// `blocked`.
    pub blocked: usize,
}

impl Summary {
    /// Whether anything differs from the desired state (blocked nodes included).
    pub fn has_changes(&self) -> bool {
        self.install + self.reinstall + self.replace + self.upgrade + self.remove + self.blocked > 0
    }
}
