//! The cluster-wide K3s state every node of a fleet shares: whether the cluster exists (and
//! the sha256 of its token — never the token), its etcd members, the Kubernetes Node objects,
//! what each simulated machine's K3s is doing, an event log, and the split-brains and etcd
//! conflicts that must never happen.
//!
//! It lives as JSON in the fleet's cluster folder (bind-mounted into every node at
//! [`CLUSTER_MOUNT`]), guarded by an flock. Lock order everywhere: a node's runtime mutex,
//! then its state lock, then this one.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::state::K3sUnit;
use crate::SimError;

/// File name of the cluster state inside the cluster folder.
pub const CLUSTER_FILE: &str = "cluster.json";
/// Lock file guarding [`CLUSTER_FILE`].
pub const CLUSTER_LOCK: &str = "cluster.lock";
/// Where the cluster folder is visible inside every node's root.
pub const CLUSTER_MOUNT: &str = "/run/slipway-sim-cluster";

/// The cluster once a server initialised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// A random id (etcd's cluster id stand-in).
    pub id: String,
    /// Lowercase hex sha256 of the cluster's token (the token itself is never stored).
    pub token_sha256: String,
    /// The simulated machine that initialised it.
    pub created_by: String,
    /// When (Unix time, milliseconds).
    pub created_at_unix_ms: u64,
}

/// One etcd member (a server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// Member id (16 hex digits, as etcd prints them).
    pub id: String,
    /// The Kubernetes node name it registered with.
    pub name: String,
    /// The simulated machine running it.
    pub host: String,
    /// When it joined (Unix time, milliseconds).
    pub joined_at_unix_ms: u64,
}

/// A taint on a Node object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value, if any.
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A Kubernetes Node object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeNode {
    /// `metadata.name`.
    pub name: String,
    /// The simulated machine whose kubelet registered it.
    pub host: String,
    /// Server or agent.
    pub role: K3sUnit,
    /// Labels (K3s's own plus `node-label`).
    pub labels: BTreeMap<String, String>,
    /// `node-taint` taints (the cordon taint is added when rendering).
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Whether a drain completed since the last uncordon.
    pub drained: bool,
    /// The K3s version its kubelet reported at its last start.
    pub kubelet_version: String,
    /// `node-ip`, if configured.
    pub internal_ip: Option<String>,
    /// When it was registered (Unix time, milliseconds).
    pub created_at_unix_ms: u64,
}

/// What one simulated machine's K3s is doing (mirrored from the machine's own state by the
/// simulator whenever it changes, so every node can judge every other one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Powered and booted.
    pub up: bool,
    /// The K3s unit installed, if any.
    pub unit: Option<K3sUnit>,
    /// Whether the K3s process runs (`k3s`/`k3s-agent` active).
    pub active: bool,
    /// Why the last K3s start failed, while it keeps failing.
    pub failure: Option<String>,
    /// The `K3sNeverReady` fault is set.
    pub never_ready: bool,
    /// `node-ip` from its K3s config (endpoints given as IP addresses map through it).
    pub node_ip: Option<String>,
    /// The Kubernetes node name its K3s uses.
    pub node_name: Option<String>,
    /// It started a second cluster (see [`ClusterState::split_brain`]).
    pub split_brain: bool,
    /// Set by the cluster (its etcd member was removed while it ran): the machine's K3s
    /// process must exit. The simulator applies and clears it.
    pub kill: Option<String>,
}

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A server initialised the cluster.
    ClusterCreated,
    /// A node joined (new etcd member for a server).
    Joined,
    /// A server rejoined as the member it already was (kept `/var`).
    Rejoined,
    /// K3s started on an installed node.
    Started,
    /// K3s was stopped.
    Stopped,
    /// A K3s start failed (recorded when the reason changes).
    StartFailed,
    /// A second `cluster-init` (or standalone server) while the cluster exists.
    SplitBrain,
    /// A server without its etcd data whose old member is still listed.
    EtcdConflict,
    /// An etcd member was removed.
    MemberRemoved,
    /// A Node object was deleted.
    NodeDeleted,
    /// `kubectl cordon` (or the cordon of a drain).
    Cordoned,
    /// `kubectl uncordon`.
    Uncordoned,
    /// `kubectl drain` completed.
    Drained,
    /// `k3s etcd-snapshot save`.
    Snapshot,
    /// K3s ignored something in its configuration.
    ConfigWarning,
}

/// One entry of the cluster's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// When (Unix time, milliseconds).
    pub at_unix_ms: u64,
    /// The simulated machine it concerns.
    pub host: String,
    /// What happened.
    pub kind: EventKind,
    /// Details (never a secret).
    pub message: String,
}

/// A split-brain: a server started a second cluster while one existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrain {
    /// The machine that did it.
    pub host: String,
    /// When (Unix time, milliseconds).
    pub at_unix_ms: u64,
    /// The id of the cluster that already existed.
    pub existing_cluster: String,
    /// Why (`cluster-init` or a standalone server).
    pub reason: String,
}

/// An etcd conflict: a server without its etcd data tried to join while its old member is
/// still listed. K3s refuses to start until the old member is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdConflict {
    /// The machine.
    pub host: String,
    /// The node name it registers with.
    pub name: String,
    /// The stale member's id.
    pub member_id: String,
    /// When it was first seen (Unix time, milliseconds).
    pub at_unix_ms: u64,
}

/// The cluster-wide state of a simulated fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster, once initialised.
    pub cluster: Option<ClusterInfo>,
    /// etcd members, in join order.
    pub members: Vec<EtcdMember>,
    /// Node objects, sorted by name.
    pub nodes: Vec<KubeNode>,
    /// Every simulated machine of the fleet, by its simulator name.
    pub hosts: BTreeMap<String, HostStatus>,
    /// Everything that happened, oldest first.
    pub events: Vec<ClusterEvent>,
    /// Split-brains (must stay empty).
    pub split_brain: Vec<SplitBrain>,
    /// etcd conflicts, as first seen (see [`ClusterState::open_conflicts`]).
    pub conflicts: Vec<EtcdConflict>,
}

impl ClusterState {
    /// Whether a member is healthy: its machine is up and its K3s process runs (in this
    /// cluster, not in a split-brain one).
    pub fn member_healthy(&self, member: &EtcdMember) -> bool {
        self.hosts
            .get(&member.host)
            .is_some_and(|h| h.up && h.active && !h.split_brain && h.unit == Some(K3sUnit::Server))
    }

    /// The healthy etcd members.
    pub fn healthy_members(&self) -> Vec<&EtcdMember> {
        self.members
            .iter()
            .filter(|m| self.member_healthy(m))
            .collect()
    }

    /// Whether a majority of the etcd members is healthy (false without a cluster).
    pub fn has_quorum(&self) -> bool {
        self.cluster.is_some()
            && !self.members.is_empty()
            && self.healthy_members().len() * 2 > self.members.len()
    }

    /// The Node object named `name`.
    pub fn node(&self, name: &str) -> Option<&KubeNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The etcd member named `name`.
    pub fn member(&self, name: &str) -> Option<&EtcdMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Whether Node `name` is Ready: registered, its machine up, its K3s running, not
    /// faulted with `K3sNeverReady`, and the cluster has quorum.
    pub fn is_ready(&self, name: &str) -> bool {
        self.node(name)
            .is_some_and(|n| self.node_condition(n) == Condition::True)
    }

    /// The names of the Ready nodes, sorted.
    pub fn ready_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| self.node_condition(n) == Condition::True)
            .map(|n| n.name.clone())
            .collect()
    }

    /// Conflicts whose stale member is still listed.
    pub fn open_conflicts(&self) -> Vec<&EtcdConflict> {
        self.conflicts
            .iter()
            .filter(|c| self.members.iter().any(|m| m.id == c.member_id))
            .collect()
    }

    /// Events about `host`.
    pub fn events_of(&self, host: &str) -> Vec<&ClusterEvent> {
        self.events.iter().filter(|e| e.host == host).collect()
    }

    /// The Ready condition of a Node object: `Unknown` when its kubelet does not run
    /// (machine down, K3s stopped or failing), `False` when K3s runs but the node is not
    /// ready (fault, or no etcd quorum), `True` otherwise.
    pub fn node_condition(&self, node: &KubeNode) -> Condition {
        match self.hosts.get(&node.host) {
            Some(h) if h.up && h.active && h.node_name.as_deref() == Some(&node.name) => {
                if h.never_ready || !self.has_quorum() {
                    Condition::False
                } else {
                    Condition::True
                }
            }
            _ => Condition::Unknown,
        }
    }

    pub(crate) fn host_mut(&mut self, host: &str) -> &mut HostStatus {
        self.hosts.entry(host.to_string()).or_default()
    }

    pub(crate) fn event(&mut self, at: u64, host: &str, kind: EventKind, message: String) {
        tracing::debug!(host, ?kind, %message, "cluster event");
        self.events.push(ClusterEvent {
            at_unix_ms: at,
            host: host.to_string(),
            kind,
            message,
        });
    }
}

/// A Node condition's status, as Kubernetes prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown` (the kubelet stopped posting status).
    Unknown,
}

impl Condition {
    /// `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::True => "True",
            Condition::False => "False",
            Condition::Unknown => "Unknown",
        }
    }
}

fn lock(dir: &Path, op: FlockOperation) -> Result<File, SimError> {
    crate::state::lock_path(&dir.join(CLUSTER_LOCK), op)
}

fn read_unlocked(dir: &Path) -> Result<ClusterState, SimError> {
    Ok(crate::state::read_json(&dir.join(CLUSTER_FILE))?.unwrap_or_default())
}

fn write_unlocked(dir: &Path, state: &ClusterState) -> Result<(), SimError> {
    crate::state::write_json(&dir.join(CLUSTER_FILE), state)
}

/// Read the cluster state in `dir` (the cluster folder) under a shared lock. A folder
/// without a state file holds the empty state.
pub fn read_cluster(dir: &Path) -> Result<ClusterState, SimError> {
    let _guard = lock(dir, FlockOperation::LockShared)?;
    read_unlocked(dir)
}

/// Read, change and write back the cluster state under an exclusive lock.
pub fn update_cluster<T>(
    dir: &Path,
    change: impl FnOnce(&mut ClusterState) -> T,
) -> Result<T, SimError> {
    let _guard = lock(dir, FlockOperation::LockExclusive)?;
    let mut state = read_unlocked(dir)?;
    let result = change(&mut state);
    write_unlocked(dir, &state)?;
    Ok(result)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(id: &str, host: &str) -> EtcdMember {
        EtcdMember {
            id: id.into(),
            name: host.into(),
            host: host.into(),
            joined_at_unix_ms: 0,
        }
    }

    fn server(up: bool, active: bool) -> HostStatus {
        HostStatus {
            up,
            unit: Some(K3sUnit::Server),
            active,
            ..HostStatus::default()
        }
    }

    #[test]
    fn quorum_needs_a_majority_of_members_up_and_running() {
        let mut c = ClusterState {
            cluster: Some(ClusterInfo {
                id: "c".into(),
                token_sha256: "t".into(),
                created_by: "a".into(),
                created_at_unix_ms: 0,
            }),
            members: vec![member("1", "a"), member("2", "b"), member("3", "c")],
            ..ClusterState::default()
        };
        c.hosts.insert("a".into(), server(true, true));
        c.hosts.insert("b".into(), server(true, true));
        c.hosts.insert("c".into(), server(true, true));
        assert!(c.has_quorum());
        c.hosts.insert("b".into(), server(false, true));
        assert!(c.has_quorum(), "2 of 3");
        c.hosts.insert("c".into(), server(true, false));
        assert!(!c.has_quorum(), "1 of 3");
        c.members.retain(|m| m.id != "3");
        assert!(!c.has_quorum(), "1 of 2 is no majority");
        c.members.retain(|m| m.id != "2");
        assert!(c.has_quorum(), "1 of 1");
        c.cluster = None;
        assert!(!c.has_quorum(), "no cluster, no quorum");
    }

    #[test]
    fn readiness_follows_the_kubelet_the_fault_and_quorum() {
        let mut c = ClusterState {
            cluster: Some(ClusterInfo {
                id: "c".into(),
                token_sha256: "t".into(),
                created_by: "a".into(),
                created_at_unix_ms: 0,
            }),
            members: vec![member("1", "a")],
            ..ClusterState::default()
        };
        let mut a = server(true, true);
        a.node_name = Some("a".into());
        c.hosts.insert("a".into(), a);
        c.nodes.push(KubeNode {
            name: "a".into(),
            host: "a".into(),
            role: K3sUnit::Server,
            labels: BTreeMap::new(),
            taints: vec![],
            unschedulable: false,
            drained: false,
            kubelet_version: "v1".into(),
            internal_ip: None,
            created_at_unix_ms: 0,
        });
        assert!(c.is_ready("a"));
        assert!(!c.is_ready("b"), "no such node");
        c.host_mut("a").never_ready = true;
        assert_eq!(c.node_condition(&c.nodes[0]), Condition::False);
        c.host_mut("a").never_ready = false;
        c.host_mut("a").up = false;
        assert_eq!(c.node_condition(&c.nodes[0]), Condition::Unknown);
        assert_eq!(c.ready_nodes(), Vec::<String>::new());
    }

    #[test]
    fn missing_file_reads_as_empty_and_updates_persist() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_cluster(dir.path()).unwrap(), ClusterState::default());
        update_cluster(dir.path(), |c| c.host_mut("n1").up = true).unwrap();
        assert!(read_cluster(dir.path()).unwrap().hosts["n1"].up);
    }
}
