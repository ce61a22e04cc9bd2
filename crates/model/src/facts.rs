//! Observed state of one node: what Slipway read over SSH, as plain values.
//!
//! These types are the "actual" half of `plan(desired, actual)`. They are
//! pure data: no I/O happens here, and nothing in this module knows how the
//! facts were gathered (that is `slipway-node-ssh`'s job). A fact that could
//! not be read or parsed is recorded as a [`FactError`] next to the facts
//! that could, so one malformed command output never hides the rest.

use serde::{Deserialize, Serialize};

/// Everything Slipway observed about one node in one fact gathering.
///
/// Every field except [`NodeFacts::reachability`] and [`NodeFacts::errors`] is
/// an `Option`: `None` means "not observed" — either the node was unreachable,
/// the fact does not exist on this node (e.g. no K3s installed yet), or reading
/// it failed, in which case a matching entry is in [`NodeFacts::errors`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Whether an authenticated SSH session to the node could be opened.
    pub reachability: Reachability,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`); changes on every boot.
    pub boot_id: Option<String>,
    /// Seconds since boot, rounded down (`/proc/uptime`).
    pub uptime_seconds: Option<u64>,
    /// OS deployments as reported by `rpm-ostree status --json`.
    pub os: Option<OsStatus>,
    /// K3s version from `k3s --version` (e.g. `v1.30.2+k3s1`); `None` when K3s is not installed.
    pub k3s_version: Option<String>,
    /// State of the `k3s` (server) and `k3s-agent` units from `systemctl is-active`.
    pub k3s_service: Option<K3sService>,
    /// Contents of `/etc/slipway/applied.json`; `None` on a machine Slipway never installed.
    pub applied: Option<AppliedConfig>,
    /// Contents of the `/var` canary (`/var/lib/slipway/canary`); `None` when absent.
    ///
    /// The canary survives a reinstall only if `/var` was kept, so its value
    /// tells whether an install preserved or wiped the data partition.
    pub var_canary: Option<String>,
    /// EFI boot entries from `efibootmgr -v`.
    pub boot_entries: Option<BootEntries>,
    /// Facts that could not be read or parsed, one entry per failing command.
    pub errors: Vec<FactError>,
}

impl NodeFacts {
    /// Facts for a node that could not be reached: every fact is unknown.
    pub fn unreachable(reason: impl Into<String>) -> Self {
        NodeFacts {
            reachability: Reachability::Unreachable {
                reason: reason.into(),
            },
            boot_id: None,
            uptime_seconds: None,
            os: None,
            k3s_version: None,
            k3s_service: None,
            applied: None,
            var_canary: None,
            boot_entries: None,
            errors: Vec::new(),
        }
    }

    /// Whether the node answered over SSH.
    pub fn is_reachable(&self) -> bool {
        matches!(self.reachability, Reachability::Reachable)
    }
}

/// Whether a node could be reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reachability {
    /// An authenticated session was opened and the fact commands ran.
    Reachable,
    /// No usable session: connection refused, timeout, authentication failed,
    /// host key mismatch, ... The reason is a human-readable summary.
    Unreachable {
        /// Why the node could not be reached.
        reason: String,
    },
}

/// The OS deployments of an rpm-ostree system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsStatus {
    /// The deployment the node is running right now.
    pub booted: Deployment,
    /// A deployment that will become the booted one on the next reboot, if any
    /// (staged or finalized, listed before the booted deployment).
    pub pending: Option<Deployment>,
}

/// One rpm-ostree deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The OS version string (e.g. `40.20240616.3.0`); empty if rpm-ostree reported none.
    pub version: String,
    /// The ostree commit checksum of the deployment.
    pub checksum: String,
}

/// The systemd state of the K3s units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sService {
    /// State of `k3s.service` (servers run this unit).
    pub server: UnitState,
    /// State of `k3s-agent.service` (agents run this unit).
    pub agent: UnitState,
}

impl K3sService {
    /// Whether either K3s unit is active.
    pub fn is_active(&self) -> bool {
        self.server == UnitState::Active || self.agent == UnitState::Active
    }
}

/// A systemd unit's active state, as printed by `systemctl is-active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// `active`
    Active,
    /// `activating`
    Activating,
    /// `deactivating`
    Deactivating,
    /// `inactive` (also what systemd prints for a unit that does not exist)
    Inactive,
    /// `failed`
    Failed,
    /// Anything else systemd printed (e.g. `reloading`, `unknown`), kept verbatim.
    Other(String),
}

impl UnitState {
    /// Parse one line of `systemctl is-active` output.
    pub fn parse(word: &str) -> Self {
        match word.trim() {
            "active" => UnitState::Active,
            "activating" => UnitState::Activating,
            "deactivating" => UnitState::Deactivating,
            "inactive" => UnitState::Inactive,
            "failed" => UnitState::Failed,
            other => UnitState::Other(other.to_string()),
        }
    }
}

/// What Slipway last applied to a node, as written to `/etc/slipway/applied.json`
/// by the installed Ignition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedConfig {
    /// The git commit of the cluster repository the config was rendered from.
    pub commit: String,
    /// Hash of the rendered Ignition config.
    pub config_hash: String,
    /// The OS version that was installed.
    pub os_version: String,
    /// The K3s version that was installed.
    pub k3s_version: String,
}

/// The firmware's EFI boot configuration, from `efibootmgr -v`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootEntries {
    /// The entry the machine booted from this time (`BootCurrent`).
    pub current: Option<u16>,
    /// The one-shot entry for the next boot (`BootNext`), if set.
    pub next: Option<u16>,
    /// The persistent boot order (`BootOrder`).
    pub order: Vec<u16>,
    /// Every boot entry, in the order efibootmgr listed them.
    pub entries: Vec<EfiEntry>,
}

impl BootEntries {
    /// The first network (PXE/HTTP) boot entry, if any.
    pub fn network_entry(&self) -> Option<&EfiEntry> {
        self.entries.iter().find(|e| e.is_network)
    }

    /// The entry with the given number, if listed.
    pub fn entry(&self, number: u16) -> Option<&EfiEntry> {
        self.entries.iter().find(|e| e.number == number)
    }
}

/// One EFI boot entry (`BootXXXX`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EfiEntry {
    /// The entry number (the hex `XXXX` in `BootXXXX`).
    pub number: u16,
    /// The entry's description.
    pub label: String,
    /// Whether the entry is active (`*` after the number).
    pub active: bool,
    /// Whether the entry boots from the network (its device path names
    /// `MAC(`, `IPv4(`, `IPv6(`, `PXE`, `HTTP` or `Network`).
    pub is_network: bool,
}

/// A fact that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactError {
    /// The command whose output was unusable (e.g. `rpm-ostree status --json`).
    pub command: String,
    /// What went wrong, for a human.
    pub message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_round_trips_through_json_with_a_tagged_state() {
        let facts = NodeFacts::unreachable("connection refused");
        let json = serde_json::to_value(&facts).unwrap();
        assert_eq!(json["reachability"]["state"], "unreachable");
        assert_eq!(json["reachability"]["reason"], "connection refused");
        let back: NodeFacts = serde_json::from_value(json).unwrap();
        assert_eq!(back, facts);
        assert!(!back.is_reachable());
    }

    #[test]
    fn unit_state_parses_systemd_words_and_keeps_unknown_ones() {
        assert_eq!(UnitState::parse("active\n"), UnitState::Active);
        assert_eq!(UnitState::parse("failed"), UnitState::Failed);
        assert_eq!(
            UnitState::parse("reloading"),
            UnitState::Other("reloading".into())
        );
        let svc = K3sService {
            server: UnitState::Inactive,
            agent: UnitState::Active,
        };
        assert!(svc.is_active());
    }

    #[test]
    fn network_entry_is_the_first_flagged_one() {
        let entries = BootEntries {
            current: Some(1),
            next: None,
            order: vec![1, 2],
            entries: vec![
                EfiEntry {
                    number: 1,
                    label: "Fedora CoreOS".into(),
                    active: true,
                    is_network: false,
                },
                EfiEntry {
                    number: 2,
                    label: "UEFI PXEv4".into(),
                    active: true,
                    is_network: true,
                },
            ],
        };
        assert_eq!(entries.network_entry().map(|e| e.number), Some(2));
        assert_eq!(
            entries.entry(1).map(|e| e.label.as_str()),
            Some("Fedora CoreOS")
        );
        assert!(entries.entry(9).is_none());
    }
}
