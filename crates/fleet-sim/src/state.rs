//! A simulated node's state: what the caller asks for ([`NodeState`]), what
//! lives on the node's "disk" at run time ([`SimState`], JSON under flock),
//! and the faults that can be injected ([`Fault`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};
use slipway_model::facts::{AppliedConfig, BootEntries, Deployment, EfiEntry};

use crate::SimError;

/// File name of the run-time state inside a node's control directory.
pub const STATE_FILE: &str = "state.json";
/// Lock file guarding [`STATE_FILE`].
pub const STATE_LOCK: &str = "state.lock";
/// Where the control directory is visible inside the node's root.
pub const CONTROL_MOUNT: &str = "/run/slipway-sim";

/// Which K3s unit a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum K3sUnit {
    /// `k3s.service` (a server).
    Server,
    /// `k3s-agent.service` (an agent).
    Agent,
}

/// K3s as installed on a simulated node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimK3s {
    /// What `k3s --version` reports (e.g. `v1.30.2+k3s1`).
    pub version: String,
    /// Which unit runs it.
    pub unit: K3sUnit,
    /// Whether the unit is active right now.
    pub active: bool,
    /// Why its last start failed, while it keeps failing (the supervisor retries it).
    #[serde(default)]
    pub failure: Option<String>,
    /// Installed from the node's files (`k3s-install.service`, `config.yaml`): the
    /// cluster semantics are simulated. False for the opaque K3s of
    /// [`NodeState::installed`], which runs in no cluster.
    #[serde(default)]
    pub follows_config: bool,
}

/// The state a simulated node starts in (or is "installed" with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// The booted OS deployment.
    pub os: Deployment,
    /// A deployment staged for the next boot, if any.
    pub pending_os: Option<Deployment>,
    /// K3s, if installed.
    pub k3s: Option<SimK3s>,
    /// `/etc/slipway/applied.json` on the node's root, if any.
    pub applied: Option<AppliedConfig>,
    /// `/var/lib/slipway/canary` on the node's `/var`, if any.
    pub var_canary: Option<String>,
    /// The firmware's EFI boot entries.
    pub efi: BootEntries,
    /// How long a reboot takes (sshd down) before faults add to it.
    pub boot_delay_ms: u64,
}

impl NodeState {
    /// A node installed by Slipway: FCOS `os_version`, K3s `k3s_version`
    /// running as `unit`, booted from disk (entry 0001) with a PXE entry (0002)
    /// later in the boot order, `applied.json` and the canary written.
    pub fn installed(os_version: &str, k3s_version: &str, unit: K3sUnit) -> Self {
        NodeState {
            os: Deployment {
                version: os_version.to_string(),
                checksum: checksum_for(os_version),
            },
            pending_os: None,
            k3s: Some(SimK3s {
                version: k3s_version.to_string(),
                unit,
                active: true,
                failure: None,
                follows_config: false,
            }),
            applied: Some(AppliedConfig {
                commit: "0000000000000000000000000000000000000000".into(),
                config_hash: format!("sha256:{}", checksum_for(k3s_version)),
                os_version: os_version.to_string(),
                k3s_version: k3s_version.to_string(),
            }),
            var_canary: Some("slipway-canary".into()),
            efi: default_efi(),
            boot_delay_ms: 100,
        }
    }

    /// A machine Slipway never touched: FCOS booted, no K3s, no applied.json, no canary.
    pub fn fresh(os_version: &str) -> Self {
        NodeState {
            k3s: None,
            applied: None,
            var_canary: None,
            ..NodeState::installed(os_version, "", K3sUnit::Agent)
        }
    }
}

/// A deterministic fake ostree checksum for a version string.
pub fn checksum_for(version: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(version.as_bytes()))
}

/// Disk entry 0001 booted and first; a PXE entry 0002 second.
pub fn default_efi() -> BootEntries {
    BootEntries {
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
                label: "UEFI PXEv4 (MAC:525400000001)".into(),
                active: true,
                is_network: true,
            },
        ],
    }
}

/// A fault injected into one simulated node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// After the next reboot the node stays down forever.
    NeverReturnsAfterReboot,
    /// Every boot takes this much longer.
    SlowBoot {
        /// Extra boot time in milliseconds.
        delay_ms: u64,
    },
    /// sshd is stopped: connections are refused until the fault is cleared.
    SshRefuses,
    /// This program (`rpm-ostree`, `efibootmgr`, `systemctl`, `k3s`) prints garbage.
    MalformedOutput {
        /// The shim's program name.
        program: String,
    },
    /// K3s runs but the node never becomes Ready.
    K3sNeverReady,
    /// The firmware ignores `BootNext` and boots the `BootOrder` head.
    FirmwareIgnoresBootNext,
}

/// Where the next boot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootSource {
    /// A disk entry: the installed OS boots.
    Disk,
    /// A network entry without a boot server configured: the installed OS boots again.
    /// (With a boot server the firmware netboots, then boots a disk entry: `Disk`.)
    Network,
}

/// The run-time state of a simulated node, shared by the simulator and the
/// shims running inside the node (JSON, guarded by an flock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    /// The machine's name in the fleet.
    #[serde(default)]
    pub name: String,
    /// Current boot id (a UUID).
    pub boot_id: String,
    /// Unix time of the current boot, in milliseconds.
    pub booted_at_unix_ms: u64,
    /// How many times the node booted (1 after start).
    pub boots: u32,
    /// Where the current boot came from.
    pub last_boot_source: BootSource,
    /// Booted deployment.
    pub os: Deployment,
    /// Staged deployment.
    pub pending_os: Option<Deployment>,
    /// K3s, if installed.
    pub k3s: Option<SimK3s>,
    /// EFI boot configuration.
    pub efi: BootEntries,
    /// Injected faults.
    pub faults: Vec<Fault>,
    /// Set by `systemctl reboot`; the simulator reboots the node and clears it.
    pub reboot_requested: bool,
    /// Base boot delay in milliseconds.
    pub boot_delay_ms: u64,
    /// Why the node stays down, while it does (a failed network install, a reinstall loop,
    /// no bootable entry, the `NeverReturnsAfterReboot` fault); cleared when it boots.
    #[serde(default)]
    pub down_reason: Option<String>,
}

impl SimState {
    /// Whether `program`'s output should be garbage.
    pub fn malformed(&self, program: &str) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::MalformedOutput { program: p } if p == program))
    }

    /// Whether a fault of the same kind is injected.
    pub fn has(&self, fault: &Fault) -> bool {
        self.faults.contains(fault)
    }
}

/// A random version-4 UUID, as the kernel's boot id looks.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Take a `flock` on `path` (created if missing); released when the file is dropped.
pub(crate) fn lock_path(path: &Path, op: FlockOperation) -> Result<File, SimError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| SimError::io("opening", path, e))?;
    flock(&file, op).map_err(|e| SimError::io("locking", path, e.into()))?;
    Ok(file)
}

/// The JSON document at `path`, or `None` when there is no file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, SimError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SimError::io("reading", path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| SimError::CorruptState {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The records of a JSON-lines file at `path` (empty when there is no file).
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, SimError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SimError::io("reading", path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| SimError::CorruptState {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Write `value` as pretty JSON to `path`, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SimError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| SimError::CorruptState {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &json)
}

fn lock(control: &Path, op: FlockOperation) -> Result<File, SimError> {
    lock_path(&control.join(STATE_LOCK), op)
}

fn read_unlocked(control: &Path) -> Result<SimState, SimError> {
    let path = control.join(STATE_FILE);
    read_json(&path)?.ok_or_else(|| {
        SimError::io(
            "reading",
            &path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

/// Write `contents` to `path` atomically (temp file + rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), SimError> {
    let tmp: PathBuf = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(|e| SimError::io("creating", &tmp, e))?;
    file.write_all(contents)
        .map_err(|e| SimError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SimError::io("renaming", path, e))
}

/// Read the state under a shared lock.
pub fn read_state(control: &Path) -> Result<SimState, SimError> {
    let _guard = lock(control, FlockOperation::LockShared)?;
    read_unlocked(control)
}

/// Read, change and write back the state under an exclusive lock.
pub fn update_state<T>(
    control: &Path,
    change: impl FnOnce(&mut SimState) -> T,
) -> Result<T, SimError> {
    let _guard = lock(control, FlockOperation::LockExclusive)?;
    let mut state = read_unlocked(control)?;
    let result = change(&mut state);
    write_state_unlocked(control, &state)?;
    Ok(result)
}

/// Write the state (creating it) under an exclusive lock.
pub fn write_state(control: &Path, state: &SimState) -> Result<(), SimError> {
    let _guard = lock(control, FlockOperation::LockExclusive)?;
    write_state_unlocked(control, state)
}

fn write_state_unlocked(control: &Path, state: &SimState) -> Result<(), SimError> {
    write_json(&control.join(STATE_FILE), state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_boot_ids_and_differ() {
        let a = random_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, random_uuid());
    }

    #[test]
    fn fault_json_is_tagged() {
        let json = serde_json::to_string(&Fault::MalformedOutput {
            program: "rpm-ostree".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"kind":"malformed_output","program":"rpm-ostree"}"#
        );
    }

    #[test]
    fn checksums_are_stable_and_distinct() {
        assert_eq!(checksum_for("40.1"), checksum_for("40.1"));
        assert_ne!(checksum_for("40.1"), checksum_for("40.2"));
        assert_eq!(checksum_for("40.1").len(), 64);
    }
}
