//! K3s on a simulated node, following the configuration that is INSTALLED on it and checking
//! what it means.
//!
//! A node's K3s is driven by the files Slipway's Ignition writes: the one-shot
//! `k3s-install.service` (enabled by a systemd preset, its role in `ExecStart`, skipped once
//! its stamp exists), `/etc/rancher/k3s/config.yaml` (+ `config.yaml.d/*.yaml`),
//! `/etc/slipway/k3s-servers` and the K3s binary `/usr/local/bin/k3s`. At every boot (and on
//! `systemctl start|restart`, and while it keeps failing, on the supervisor's retries) the
//! simulator runs the installer or just starts K3s, with the checks real K3s makes:
//! - `cluster-init` creates the cluster — or, when one exists, is a split-brain (recorded);
//! - a joiner must reach a live cluster member through its endpoints (hosts mapped to
//!   simulated machines by short name, or by `node-ip`) and present the cluster's token;
//! - a server joins etcd (needs quorum), rejoins as the same member when `/var` kept its
//!   etcd data, and is refused while a member of its name is still listed without its data
//!   (an etcd conflict, recorded);
//! - a server whose member was removed cannot start until its etcd data is deleted.
//!
//! Nodes set up with [`crate::NodeState::installed`] and no install unit keep an opaque K3s
//! (active, in no cluster): the round-one behaviour.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use slipway_model::inventory::short_name;

use crate::cluster::{
    ClusterInfo, ClusterState, EtcdConflict, EtcdMember, EventKind, KubeNode, SplitBrain, Taint,
    CLUSTER_MOUNT,
};
use crate::state::{Fault, K3sUnit, SimK3s, SimState, CONTROL_MOUNT};
use crate::SimError;

/// The K3s binary Ignition downloads.
pub const K3S_BINARY: &str = "/usr/local/bin/k3s";
/// K3s's configuration file.
pub const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// Drop-in configuration files, merged in name order after [`K3S_CONFIG`].
pub const K3S_CONFIG_D: &str = "/etc/rancher/k3s/config.yaml.d";
/// The API endpoints a joiner tries, one per line.
pub const K3S_SERVERS: &str = "/etc/slipway/k3s-servers";
/// The one-shot installer unit.
pub const INSTALL_UNIT: &str = "/etc/systemd/system/k3s-install.service";
/// Where systemd presets live.
pub const PRESET_DIR: &str = "/etc/systemd/system-preset";
/// The drop-in the install wrapper writes with the server it joined through.
pub const SERVER_DROP_IN: &str = "/etc/rancher/k3s/config.yaml.d/10-slipway-server.yaml";
/// A server's etcd data folder (kept with `/var`).
pub const ETCD_DIR: &str = "/var/lib/rancher/k3s/server/db/etcd";
/// The simulator's stand-in for a server's etcd data: which member of which cluster it is.
pub const MEMBER_MARKER: &str = "/var/lib/rancher/k3s/server/db/etcd/slipway-sim-member.json";
/// Where `k3s etcd-snapshot save` writes.
pub const SNAPSHOT_DIR: &str = "/var/lib/rancher/k3s/server/db/snapshots";

/// The longest the installed K3s binary may take to print its version.
const VERSION_LIMIT: Duration = Duration::from_secs(10);

/// Where a node's file systems are: seen from the host (the supervisor, tests) or from inside
/// the node's chroot (the shims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The simulated machine's name.
    pub host: String,
    /// Its root file system.
    pub root: PathBuf,
    /// Its `/var`.
    pub var: PathBuf,
    /// Its control folder (state).
    pub control: PathBuf,
    /// The fleet's cluster folder.
    pub cluster: PathBuf,
}

impl NodeView {
    /// The view from inside a node (paths as the node sees them).
    pub fn inside(host: &str) -> Self {
        NodeView {
            host: host.to_string(),
            root: PathBuf::from("/"),
            var: PathBuf::from("/var"),
            control: PathBuf::from(CONTROL_MOUNT),
            cluster: PathBuf::from(CLUSTER_MOUNT),
        }
    }

    /// Where the node's absolute path `abs` is in this view.
    pub fn path(&self, abs: &str) -> PathBuf {
        let rel = abs.trim_start_matches('/');
        match rel.strip_prefix("var") {
            Some("") => self.var.clone(),
            Some(rest) if rest.starts_with('/') => self.var.join(rest.trim_start_matches('/')),
            _ => self.root.join(rel),
        }
    }

    fn read(&self, abs: &str) -> Result<Option<String>, String> {
        match std::fs::read_to_string(self.path(abs)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {abs}: {e}")),
        }
    }

    fn write(&self, abs: &str, contents: &str) -> Result<(), SimError> {
        let path = self.path(abs);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SimError::io("creating", parent, e))?;
        }
        std::fs::write(&path, contents).map_err(|e| SimError::io("writing", &path, e))
    }
}

/// Lowercase hex sha256 of a token.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn member_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The merged K3s configuration (config.yaml, then the drop-ins in name order; a key ending
/// in `+` appends to the list of the key without it, as K3s does).
#[derive(Debug, Clone, Default)]
pub(crate) struct K3sConfig {
    values: Vec<(String, Value)>,
}

impl K3sConfig {
    pub(crate) fn parse_layers(layers: &[(String, String)]) -> Result<Self, String> {
        let mut config = K3sConfig::default();
        for (name, text) in layers {
            let doc: Value =
                serde_yaml::from_str(text).map_err(|e| format!("parsing {name}: {e}"))?;
            let map = match doc {
                Value::Null => continue,
                Value::Mapping(map) => map,
                _ => return Err(format!("{name}: not a YAML mapping")),
            };
            for (k, v) in map {
                let Some(key) = k.as_str() else {
                    return Err(format!("{name}: a key is not a string"));
                };
                match key.strip_suffix('+') {
                    Some(base) => {
                        let mut list = config.list(base);
                        list.extend(as_list(&v));
                        config.set(
                            base,
                            Value::Sequence(list.into_iter().map(Value::String).collect()),
                        );
                    }
                    None => config.set(key, v),
                }
            }
        }
        Ok(config)
    }

    fn load(view: &NodeView) -> Result<Self, String> {
        let mut layers = Vec::new();
        if let Some(text) = view.read(K3S_CONFIG)? {
            layers.push((K3S_CONFIG.to_string(), text));
        }
        let dir = view.path(K3S_CONFIG_D);
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        for name in names {
            let abs = format!("{K3S_CONFIG_D}/{name}");
            if let Some(text) = view.read(&abs)? {
                layers.push((abs, text));
            }
        }
        K3sConfig::parse_layers(&layers)
    }

    fn set(&mut self, key: &str, value: Value) {
        match self.values.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.values.push((key.to_string(), value)),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(crate) fn string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(scalar).filter(|s| !s.is_empty())
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        }
    }

    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map(as_list).unwrap_or_default()
    }

    /// Keys K3s does not know for this role (it warns and skips them).
    fn unknown_keys(&self, role: K3sUnit) -> Vec<String> {
        self.values
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| {
                let known = COMMON_KEYS.contains(&k.as_str())
                    || (role == K3sUnit::Server && SERVER_KEYS.contains(&k.as_str()));
                !known
            })
            .collect()
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

/// Configuration keys both `k3s server` and `k3s agent` accept (the ones a homelab uses).
const COMMON_KEYS: &[&str] = &[
    "token",
    "token-file",
    "server",
    "data-dir",
    "node-name",
    "with-node-id",
    "node-label",
    "node-taint",
    "node-ip",
    "node-external-ip",
    "resolv-conf",
    "flannel-iface",
    "flannel-conf",
    "kubelet-arg",
    "kube-proxy-arg",
    "protect-kernel-defaults",
    "selinux",
    "lb-server-port",
    "pause-image",
    "snapshotter",
    "private-registry",
    "prefer-bundled-bin",
    "container-runtime-endpoint",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "airgap-extra-registry",
    "debug",
    "v",
    "vmodule",
    "log",
    "alsologtostderr",
    "config",
];

/// Keys only `k3s server` accepts (an agent warns and skips them).
const SERVER_KEYS: &[&str] = &[
    "cluster-init",
    "cluster-reset",
    "cluster-cidr",
    "service-cidr",
    "cluster-dns",
    "cluster-domain",
    "disable",
    "disable-network-policy",
    "disable-kube-proxy",
    "disable-cloud-controller",
    "disable-helm-controller",
    "disable-scheduler",
    "write-kubeconfig",
    "write-kubeconfig-mode",
    "tls-san",
    "agent-token",
    "agent-token-file",
    "bind-address",
    "advertise-address",
    "advertise-port",
    "https-listen-port",
    "flannel-backend",
    "flannel-ipv6-masq",
    "egress-selector-mode",
    "secrets-encryption",
    "kube-apiserver-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "etcd-arg",
    "etcd-expose-metrics",
    "etcd-snapshot-schedule-cron",
    "etcd-snapshot-retention",
    "etcd-snapshot-dir",
    "etcd-disable-snapshots",
    "embedded-registry",
    "system-default-registry",
    "node-cidr-mask-size",
    "default-local-storage-path",
    "servicelb-namespace",
];

/// The installer unit as the node has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallUnit {
    /// `server` or `agent`, from `ExecStart`.
    pub role: K3sUnit,
    /// The program `ExecStart` runs.
    pub program: String,
    /// The stamp `ConditionPathExists=!` names (none: the unit runs at every boot).
    pub stamp: Option<String>,
    /// Whether a preset (or a wants symlink) enables it.
    pub enabled: bool,
}

/// Parse the unit text: the role is the `server`/`agent` argument of `ExecStart`.
pub(crate) fn parse_install_unit(text: &str) -> Result<(K3sUnit, String, Option<String>), String> {
    let mut exec = None;
    let mut stamp = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ExecStart=") {
            exec = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("ConditionPathExists=") {
            if let Some(path) = rest.trim().strip_prefix('!') {
                stamp = Some(path.trim().to_string());
            }
        }
    }
    let exec = exec.ok_or("k3s-install.service has no ExecStart")?;
    let words: Vec<&str> = exec.split_whitespace().collect();
    let program = words
        .first()
        .map(|p| p.trim_start_matches(['-', '@', '+', '!']).to_string())
        .ok_or("k3s-install.service has an empty ExecStart")?;
    let role = match words.get(1..).unwrap_or_default() {
        [.., "server"] => K3sUnit::Server,
        [.., "agent"] => K3sUnit::Agent,
        _ => {
            return Err(format!(
                "k3s-install.service: cannot tell server from agent in `ExecStart={exec}`"
            ))
        }
    };
    Ok((role, program, stamp))
}

/// Whether the presets enable `unit` (systemd: files in name order, first match wins).
pub(crate) fn preset_enables(presets: &[(String, String)], unit: &str) -> bool {
    for (_, text) in presets {
        for line in text.lines().map(str::trim) {
            let mut words = line.split_whitespace();
            let (Some(verb), Some(pattern)) = (words.next(), words.next()) else {
                continue;
            };
            if glob_matches(pattern, unit) {
                match verb {
                    "enable" => return true,
                    "disable" => return false,
                    _ => {}
                }
            }
        }
    }
    false
}

pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
    }
}

fn read_install_unit(view: &NodeView) -> Result<Option<InstallUnit>, String> {
    let Some(text) = view.read(INSTALL_UNIT)? else {
        return Ok(None);
    };
    let (role, program, stamp) = parse_install_unit(&text)?;
    let mut presets = Vec::new();
    if let Ok(entries) = std::fs::read_dir(view.path(PRESET_DIR)) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".preset") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                presets.push((name, text));
            }
        }
    }
    presets.sort();
    let wanted = view
        .path("/etc/systemd/system/multi-user.target.wants/k3s-install.service")
        .exists();
    Ok(Some(InstallUnit {
        role,
        program,
        stamp,
        enabled: wanted || preset_enables(&presets, "k3s-install.service"),
    }))
}

/// Parse `k3s --version` output (`k3s version v1.30.2+k3s1 (faf4d6ff)`).
pub(crate) fn parse_version(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("k3s"), Some("version"), Some(v)) if v.starts_with('v') => Some(v.to_string()),
            _ => None,
        }
    })
}

/// Run the installed K3s binary's `--version` (bounded); its stdout.
pub(crate) fn run_installed_version(view: &NodeView) -> Result<String, String> {
    let bin = view.path(K3S_BINARY);
    if !bin.is_file() {
        return Err(format!("{K3S_BINARY} is missing"));
    }
    let mut child = Command::new(&bin)
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot execute {K3S_BINARY}: {e}"))?;
    let deadline = Instant::now() + VERSION_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{K3S_BINARY} --version did not finish"));
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    Ok(out)
}

fn installed_version(view: &NodeView) -> Result<String, String> {
    let out = run_installed_version(view)?;
    parse_version(&out).ok_or_else(|| format!("`{K3S_BINARY} --version` printed no K3s version"))
}

/// The simulator's record of a server's etcd data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemberMarker {
    cluster_id: String,
    member_id: String,
    name: String,
}

fn read_marker(view: &NodeView) -> Result<Option<MemberMarker>, String> {
    match view.read(MEMBER_MARKER)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("etcd data under {ETCD_DIR} is corrupt: {e}")),
    }
}

/// Everything a K3s start needs.
pub(crate) struct Ctx<'a> {
    pub view: &'a NodeView,
    pub state: &'a mut SimState,
    pub cluster: &'a mut ClusterState,
    pub now: u64,
}

/// Why K3s is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `k3s-install.service` runs (no stamp): a joiner walks `/etc/slipway/k3s-servers`.
    Install,
    /// The stamp exists: `k3s.service`/`k3s-agent.service` starts with what the install left.
    Start,
}

/// What a successful start did.
enum Outcome {
    Created,
    Joined { via: String, member: Option<String> },
    Rejoined { member: String },
    Started,
    SplitBrain,
}

impl Ctx<'_> {
    fn host(&self) -> String {
        self.view.host.clone()
    }

    /// Mirror this machine's K3s facts into the cluster state.
    pub(crate) fn sync(&mut self, up: bool) {
        let host = self.host();
        let never_ready = self.state.has(&Fault::K3sNeverReady);
        let h = self.cluster.host_mut(&host);
        h.up = up;
        h.never_ready = never_ready;
        match &self.state.k3s {
            Some(k) => {
                h.unit = Some(k.unit);
                h.active = up && k.active;
                h.failure = k.failure.clone();
            }
            None => {
                h.unit = None;
                h.active = false;
                h.failure = None;
            }
        }
        if !h.active {
            h.split_brain = false;
        }
    }

    /// The node booted: run the installer, start K3s, or (opaque K3s) just run it.
    pub(crate) fn boot(&mut self) -> Result<(), SimError> {
        match read_install_unit(self.view) {
            Ok(Some(unit)) => {
                let stamped = unit
                    .stamp
                    .as_deref()
                    .is_some_and(|s| self.view.path(s).exists());
                if stamped {
                    let role = self.state.k3s.as_ref().map_or(unit.role, |k| k.unit);
                    self.attempt(role, Phase::Start, Some(&unit))?;
                } else if unit.enabled {
                    self.attempt(unit.role, Phase::Install, Some(&unit))?;
                } else if self.state.k3s.as_ref().is_some_and(|k| k.follows_config) {
                    self.state.k3s = None;
                }
            }
            Ok(None) => match self.state.k3s.as_mut() {
                // The root was replaced without K3s: it is gone.
                Some(k) if k.follows_config => self.state.k3s = None,
                Some(k) => {
                    k.active = true;
                    k.failure = None;
                }
                None => {}
            },
            Err(reason) => {
                let host = self.host();
                self.cluster.event(
                    self.now,
                    &host,
                    EventKind::StartFailed,
                    format!("k3s-install.service: {reason}"),
                );
                self.state.k3s = None;
            }
        }
        self.sync(true);
        Ok(())
    }

    /// The power went off: K3s stops with the machine.
    pub(crate) fn power_off(&mut self) {
        if let Some(k) = self.state.k3s.as_mut() {
            if k.follows_config {
                k.active = false;
                k.failure = None;
            }
        }
        self.sync(false);
    }

    /// `systemctl start|restart` of the K3s unit, or a supervisor retry of a failing one.
    /// An unfinished install runs the installer again.
    pub(crate) fn start(&mut self) -> Result<(), SimError> {
        let Some(k) = self.state.k3s.clone() else {
            return Ok(());
        };
        if !k.follows_config {
            if let Some(k) = self.state.k3s.as_mut() {
                k.active = true;
            }
            self.sync(true);
            return Ok(());
        }
        let unit = read_install_unit(self.view).ok().flatten();
        let stamped = unit
            .as_ref()
            .and_then(|u| u.stamp.as_deref())
            .is_some_and(|s| self.view.path(s).exists());
        let phase = if stamped || unit.is_none() {
            Phase::Start
        } else {
            Phase::Install
        };
        self.attempt(k.unit, phase, unit.as_ref())?;
        self.sync(true);
        Ok(())
    }

    /// `systemctl stop` of the K3s unit.
    pub(crate) fn stop(&mut self) {
        if let Some(k) = self.state.k3s.as_mut() {
            let was = k.active;
            k.active = false;
            k.failure = None;
            if was {
                let host = self.host();
                self.cluster
                    .event(self.now, &host, EventKind::Stopped, "K3s stopped".into());
            }
        }
        self.sync(true);
    }

    /// If the cluster asked this machine's K3s to exit (its etcd member was removed while
    /// it ran), it exits and keeps failing.
    pub(crate) fn apply_kill(&mut self) {
        let host = self.host();
        let Some(reason) = self.cluster.host_mut(&host).kill.take() else {
            return;
        };
        if let Some(k) = self.state.k3s.as_mut() {
            if k.active {
                k.active = false;
                k.failure = Some(reason.clone());
                self.cluster
                    .event(self.now, &host, EventKind::StartFailed, reason);
            }
        }
        self.sync(true);
    }

    fn attempt(
        &mut self,
        role: K3sUnit,
        phase: Phase,
        unit: Option<&InstallUnit>,
    ) -> Result<(), SimError> {
        let previous = self.state.k3s.as_ref().map(|k| k.version.clone());
        self.state.k3s = Some(SimK3s {
            version: previous.unwrap_or_default(),
            unit: role,
            active: false,
            failure: None,
            follows_config: true,
        });
        let result = self.run(role, phase, unit);
        let host = self.host();
        match result {
            Ok((outcome, config)) => {
                if phase == Phase::Install {
                    if let Some(stamp) = unit.and_then(|u| u.stamp.as_deref()) {
                        self.view.write(stamp, "")?;
                    }
                }
                for key in config.unknown_keys(role) {
                    self.cluster.event(
                        self.now,
                        &host,
                        EventKind::ConfigWarning,
                        format!("Unknown flag --{key} found in config.yaml, skipping"),
                    );
                }
                let (kind, message) = match outcome {
                    Outcome::Created => (
                        EventKind::ClusterCreated,
                        "initialised the cluster".to_string(),
                    ),
                    Outcome::Joined {
                        via,
                        member: Some(id),
                    } => (
                        EventKind::Joined,
                        format!("joined as etcd member {id} via {via}"),
                    ),
                    Outcome::Joined { via, member: None } => {
                        (EventKind::Joined, format!("joined via {via}"))
                    }
                    Outcome::Rejoined { member } => (
                        EventKind::Rejoined,
                        format!("rejoined as etcd member {member} (etcd data kept in /var)"),
                    ),
                    Outcome::Started => (EventKind::Started, "K3s started".to_string()),
                    Outcome::SplitBrain => (
                        EventKind::Started,
                        "K3s started a cluster of its own (split-brain)".to_string(),
                    ),
                };
                self.cluster.event(self.now, &host, kind, message);
                if let Some(k) = self.state.k3s.as_mut() {
                    k.active = true;
                    k.failure = None;
                }
            }
            Err(reason) => {
                let repeated = self
                    .cluster
                    .hosts
                    .get(&host)
                    .and_then(|h| h.failure.as_ref())
                    == Some(&reason);
                if !repeated {
                    tracing::info!(host, %reason, "K3s start failed");
                    self.cluster
                        .event(self.now, &host, EventKind::StartFailed, reason.clone());
                }
                if let Some(k) = self.state.k3s.as_mut() {
                    k.failure = Some(reason);
                }
            }
        }
        Ok(())
    }

    fn run(
        &mut self,
        role: K3sUnit,
        phase: Phase,
        unit: Option<&InstallUnit>,
    ) -> Result<(Outcome, K3sConfig), String> {
        if phase == Phase::Install {
            if let Some(u) = unit {
                if !self.view.path(&u.program).is_file() {
                    return Err(format!(
                        "k3s-install.service: {}: No such file or directory (status=203/EXEC)",
                        u.program
                    ));
                }
            }
        }
        let version = installed_version(self.view)?;
        if let Some(k) = self.state.k3s.as_mut() {
            k.version = version.clone();
        }
        let config = K3sConfig::load(self.view)?;
        let token = match config.string("token-file") {
            Some(file) => Some(
                self.view
                    .read(&file)?
                    .map(|t| t.trim().to_string())
                    .ok_or_else(|| format!("token file {file} does not exist"))?,
            ),
            None => config.string("token"),
        };
        let name = match config.string("node-name") {
            Some(name) => name,
            None => self
                .view
                .read("/etc/hostname")?
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| self.host()),
        };
        let node_ip = config.string("node-ip");
        let host = self.host();
        {
            let h = self.cluster.host_mut(&host);
            h.node_ip = node_ip.clone();
            h.node_name = Some(name.clone());
        }
        let endpoints = self.endpoints(phase, &config)?;
        let reg = Registration {
            name,
            role,
            version,
            node_ip,
            labels: config.list("node-label"),
            taints: config.list("node-taint"),
        };
        let outcome = match role {
            K3sUnit::Server => self.run_server(&reg, token, &config, &endpoints, phase)?,
            K3sUnit::Agent => self.run_agent(&reg, token, &endpoints, phase)?,
        };
        Ok((outcome, config))
    }

    /// The endpoints to join through: the installer walks `/etc/slipway/k3s-servers`
    /// (else `server:`); a plain start uses `server:` (which the installer recorded).
    fn endpoints(&self, phase: Phase, config: &K3sConfig) -> Result<Vec<String>, String> {
        let listed: Vec<String> = self
            .view
            .read(K3S_SERVERS)?
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let configured: Vec<String> = config.string("server").into_iter().collect();
        Ok(match phase {
            Phase::Install if !listed.is_empty() => listed,
            _ => configured,
        })
    }

    fn run_server(
        &mut self,
        reg: &Registration,
        token: Option<String>,
        config: &K3sConfig,
        endpoints: &[String],
        phase: Phase,
    ) -> Result<Outcome, String> {
        let host = self.host();
        if let Some(marker) = read_marker(self.view)? {
            // etcd starts from its own data: it needs no server to join through.
            let cluster = self.cluster.cluster.clone();
            match cluster {
                Some(c) if c.id == marker.cluster_id => {
                    if token.as_deref().is_some_and(|t| token_sha256(t) != c.token_sha256) {
                        return Err("bootstrap data already found and encrypted with different token".into());
                    }
                }
                _ => {
                    return Err(format!(
                        "etcd data in {ETCD_DIR} belongs to cluster {}, which does not run here; remove {ETCD_DIR} to join",
                        marker.cluster_id
                    ))
                }
            }
            if !self
                .cluster
                .members
                .iter()
                .any(|m| m.id == marker.member_id)
            {
                return Err(format!(
                    "etcd member {} has been permanently removed from the cluster: data-dir used by this member must be removed ({ETCD_DIR})",
                    marker.member_id
                ));
            }
            self.check_name_free(&reg.name)?;
            for m in self.cluster.members.iter_mut() {
                if m.id == marker.member_id {
                    m.host = host.clone();
                    m.name = reg.name.clone();
                }
            }
            self.register(reg);
            return Ok(match phase {
                Phase::Install => Outcome::Rejoined {
                    member: marker.member_id,
                },
                Phase::Start => Outcome::Started,
            });
        }
        if endpoints.is_empty() {
            let reason = if config.flag("cluster-init") {
                "cluster-init"
            } else {
                "a server without cluster-init and without a server to join (standalone SQLite)"
            };
            if let Some(existing) = self.cluster.cluster.clone() {
                tracing::warn!(host, "split-brain: a second cluster was started");
                self.cluster.split_brain.push(SplitBrain {
                    host: host.clone(),
                    at_unix_ms: self.now,
                    existing_cluster: existing.id.clone(),
                    reason: reason.to_string(),
                });
                self.cluster.event(
                    self.now,
                    &host,
                    EventKind::SplitBrain,
                    format!(
                        "{reason} while cluster {} exists: a second cluster",
                        existing.id
                    ),
                );
                self.cluster.host_mut(&host).split_brain = true;
                return Ok(Outcome::SplitBrain);
            }
            if !config.flag("cluster-init") {
                return Err(format!("not simulated: {reason}"));
            }
            // K3s generates a token when none is configured; nobody else knows it then.
            let token = token.unwrap_or_else(crate::state::random_uuid);
            let id = crate::state::random_uuid();
            self.cluster.cluster = Some(ClusterInfo {
                id: id.clone(),
                token_sha256: token_sha256(&token),
                created_by: host.clone(),
                created_at_unix_ms: self.now,
            });
            self.add_member(&id, reg).map_err(|e| e.to_string())?;
            self.register(reg);
            return Ok(Outcome::Created);
        }
        let token =
            token.ok_or("token is required to join a cluster (set `token` in config.yaml)")?;
        let (via, cluster) = self.reach(endpoints, phase)?;
        if token_sha256(&token) != cluster.token_sha256 {
            return Err(format!(
                "failed to validate connection to cluster at {via}: 401 Unauthorized (the token is not the cluster's)"
            ));
        }
        if !self.cluster.has_quorum() {
            return Err(
                "etcd cluster join failed: etcdserver: unhealthy cluster (no quorum)".into(),
            );
        }
        if let Some(stale) = self.cluster.member(&reg.name).cloned() {
            if !self
                .cluster
                .conflicts
                .iter()
                .any(|c| c.member_id == stale.id)
            {
                self.cluster.conflicts.push(EtcdConflict {
                    host: host.clone(),
                    name: reg.name.clone(),
                    member_id: stale.id.clone(),
                    at_unix_ms: self.now,
                });
                self.cluster.event(
                    self.now,
                    &host,
                    EventKind::EtcdConflict,
                    format!(
                        "no etcd data in /var, but member {} named {} is still listed",
                        stale.id, reg.name
                    ),
                );
            }
            return Err(
                "etcd cluster join failed: duplicate node name found, please use a unique name for this node"
                    .into(),
            );
        }
        self.check_name_free(&reg.name)?;
        let member = self
            .add_member(&cluster.id, reg)
            .map_err(|e| e.to_string())?;
        self.register(reg);
        Ok(Outcome::Joined {
            via,
            member: Some(member),
        })
    }

    fn run_agent(
        &mut self,
        reg: &Registration,
        token: Option<String>,
        endpoints: &[String],
        phase: Phase,
    ) -> Result<Outcome, String> {
        let token = token.ok_or("--token is required")?;
        if endpoints.is_empty() {
            return Err("--server is required".into());
        }
        let (via, cluster) = self.reach(endpoints, phase)?;
        if token_sha256(&token) != cluster.token_sha256 {
            return Err(format!(
                "failed to get CA certs: {via}/cacerts: 401 Unauthorized (the token is not the cluster's)"
            ));
        }
        if !self.cluster.has_quorum() {
            return Err(format!(
                "failed to register node {}: the server's etcd has no quorum",
                reg.name
            ));
        }
        self.check_name_free(&reg.name)?;
        let known = self
            .cluster
            .node(&reg.name)
            .is_some_and(|n| n.host == self.view.host);
        self.register(reg);
        Ok(if known && phase == Phase::Start {
            Outcome::Started
        } else {
            Outcome::Joined { via, member: None }
        })
    }

    /// Walk the endpoints in order; the first whose machine is up, runs K3s, and is a
    /// member of the cluster answers. A plain start of an agent also falls back to any
    /// live member (K3s's load balancer remembers every server).
    fn reach(
        &mut self,
        endpoints: &[String],
        phase: Phase,
    ) -> Result<(String, ClusterInfo), String> {
        let mut tried = Vec::new();
        let mut found = None;
        for url in endpoints {
            match self.answers(url) {
                Ok(()) => {
                    found = Some(url.clone());
                    break;
                }
                Err(why) => tried.push(format!("{url}: {why}")),
            }
        }
        if found.is_none() && phase == Phase::Start {
            found = self
                .cluster
                .healthy_members()
                .iter()
                .find(|m| m.host != self.view.host)
                .map(|m| format!("https://{}:6443", m.host));
        }
        let Some(via) = found else {
            return Err(format!(
                "no K3s API endpoint answered ({})",
                if tried.is_empty() {
                    "none listed".to_string()
                } else {
                    tried.join("; ")
                }
            ));
        };
        if phase == Phase::Install && self.view.path(K3S_SERVERS).exists() {
            // What the install wrapper records before it runs the upstream installer.
            let _ = self
                .view
                .write(SERVER_DROP_IN, &format!("server: \"{via}\"\n"));
        }
        let cluster = self
            .cluster
            .cluster
            .clone()
            .ok_or_else(|| format!("{via}: no cluster"))?;
        Ok((via, cluster))
    }

    /// Whether `url` reaches a live member of the cluster.
    fn answers(&self, url: &str) -> Result<(), String> {
        let host = resolve_endpoint(self.cluster, url)?;
        if host == self.view.host {
            return Err("that is this machine".into());
        }
        let status = self.cluster.hosts.get(&host).cloned().unwrap_or_default();
        if !status.up {
            return Err(format!("no route to host ({host} is down)"));
        }
        if !status.active || status.unit != Some(K3sUnit::Server) {
            return Err("connection refused".into());
        }
        if status.split_brain || !self.cluster.members.iter().any(|m| m.host == host) {
            return Err(format!("{host} is not a member of the cluster"));
        }
        Ok(())
    }

    fn check_name_free(&self, name: &str) -> Result<(), String> {
        match self.cluster.node(name) {
            Some(n) if n.host != self.view.host => Err(format!(
                "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry (node {name} belongs to {})",
                n.host
            )),
            _ => Ok(()),
        }
    }

    fn add_member(&mut self, cluster_id: &str, reg: &Registration) -> Result<String, SimError> {
        let id = member_id();
        self.cluster.members.push(EtcdMember {
            id: id.clone(),
            name: reg.name.clone(),
            host: self.host(),
            joined_at_unix_ms: self.now,
        });
        let marker = MemberMarker {
            cluster_id: cluster_id.to_string(),
            member_id: id.clone(),
            name: reg.name.clone(),
        };
        let json = serde_json::to_string_pretty(&marker).map_err(|e| SimError::CorruptState {
            path: self.view.path(MEMBER_MARKER),
            message: e.to_string(),
        })?;
        self.view.write(MEMBER_MARKER, &json)?;
        Ok(id)
    }

    /// Create or refresh the Node object (labels and taints apply at registration only).
    fn register(&mut self, reg: &Registration) {
        let host = self.host();
        let now = self.now;
        if let Some(node) = self.cluster.nodes.iter_mut().find(|n| n.name == reg.name) {
            node.kubelet_version = reg.version.clone();
            node.internal_ip = reg.node_ip.clone();
            node.role = reg.role;
            return;
        }
        let mut labels = std::collections::BTreeMap::new();
        for (k, v) in [
            ("beta.kubernetes.io/arch", "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/os", "linux"),
            ("node.kubernetes.io/instance-type", "k3s"),
        ] {
            labels.insert(k.to_string(), v.to_string());
        }
        labels.insert("kubernetes.io/hostname".into(), reg.name.clone());
        if reg.role == K3sUnit::Server {
            for role in ["control-plane", "etcd", "master"] {
                labels.insert(format!("node-role.kubernetes.io/{role}"), "true".into());
            }
        }
        for label in &reg.labels {
            let (k, v) = label.split_once('=').unwrap_or((label, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        let taints = reg.taints.iter().filter_map(|t| parse_taint(t)).collect();
        self.cluster.nodes.push(KubeNode {
            name: reg.name.clone(),
            host,
            role: reg.role,
            labels,
            taints,
            unschedulable: false,
            drained: false,
            kubelet_version: reg.version.clone(),
            internal_ip: reg.node_ip.clone(),
            created_at_unix_ms: now,
        });
        self.cluster.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

struct Registration {
    name: String,
    role: K3sUnit,
    version: String,
    node_ip: Option<String>,
    labels: Vec<String>,
    taints: Vec<String>,
}

/// `key=value:Effect` or `key:Effect`.
pub(crate) fn parse_taint(text: &str) -> Option<Taint> {
    let (kv, effect) = text.rsplit_once(':')?;
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute").then(|| Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
    })
}

/// The simulated machine an API endpoint URL reaches: its host's first DNS label names the
/// machine (an FQDN and its short name are the same machine); an IP address maps through
/// the machines' `node-ip`. K3s serves on https port 6443.
pub fn resolve_endpoint(cluster: &ClusterState, url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    if parsed.scheme() != "https" {
        return Err(format!("scheme {} (K3s serves https)", parsed.scheme()));
    }
    let port = parsed.port_or_known_default().unwrap_or(0);
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => {
            let short = short_name(d);
            cluster
                .hosts
                .keys()
                .find(|h| short_name(h).eq_ignore_ascii_case(short))
                .cloned()
                .ok_or_else(|| format!("no such host {d}"))?
        }
        Some(url::Host::Ipv4(ip)) => by_ip(cluster, &ip.to_string())?,
        Some(url::Host::Ipv6(ip)) => by_ip(cluster, &ip.to_string())?,
        None => return Err("no host".into()),
    };
    if port != 6443 {
        return Err(format!(
            "connection refused on port {port} (K3s listens on 6443)"
        ));
    }
    Ok(host)
}

fn by_ip(cluster: &ClusterState, ip: &str) -> Result<String, String> {
    cluster
        .hosts
        .iter()
        .find(|(_, h)| h.node_ip.as_deref() == Some(ip))
        .map(|(name, _)| name.clone())
        .ok_or_else(|| format!("no machine has node-ip {ip}"))
}

/// The snapshot folder of a view, for `etcd-snapshot`.
pub(crate) fn snapshot_dir(view: &NodeView) -> PathBuf {
    view.path(SNAPSHOT_DIR)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::state::{BootSource, NodeState};
    use std::os::unix::fs::PermissionsExt;

    /// A machine with Slipway's K3s files written directly (no Ignition, no sshd).
    fn machine(
        base: &std::path::Path,
        name: &str,
        role: &str,
        config: &str,
        servers: &[&str],
    ) -> (NodeView, SimState) {
        let view = NodeView {
            host: name.into(),
            root: base.join(name).join("root"),
            var: base.join(name).join("var"),
            control: base.join(name).join("control"),
            cluster: base.join("cluster"),
        };
        let files = [
            (INSTALL_UNIT, format!("[Unit]\nConditionPathExists=!/etc/slipway/k3s-installed\n[Service]\nExecStart=/usr/local/bin/slipway-k3s-install {role}\n")),
            ("/etc/systemd/system-preset/20-ignition.preset", "enable k3s-install.service\n".into()),
            ("/usr/local/bin/slipway-k3s-install", "#!/bin/sh\n".into()),
            (K3S_BINARY, "#!/bin/sh\necho 'k3s version v1.30.4+k3s1 (x)'\n".into()),
            (K3S_CONFIG, config.into()),
        ];
        for (path, text) in files {
            view.write(path, &text).unwrap();
        }
        std::fs::set_permissions(
            view.path(K3S_BINARY),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        if !servers.is_empty() {
            let list: String = servers
                .iter()
                .map(|s| format!("https://{s}.lab:6443\n"))
                .collect();
            view.write(K3S_SERVERS, &list).unwrap();
        }
        let n = NodeState::fresh("40");
        let state = SimState {
            name: name.into(),
            boot_id: String::new(),
            booted_at_unix_ms: 0,
            boots: 1,
            last_boot_source: BootSource::Disk,
            os: n.os,
            pending_os: None,
            k3s: None,
            efi: n.efi,
            faults: vec![],
            reboot_requested: false,
            boot_delay_ms: 0,
            down_reason: None,
        };
        (view, state)
    }

    fn boot(view: &NodeView, state: &mut SimState, cluster: &mut ClusterState) {
        Ctx {
            view,
            state,
            cluster,
            now: 1,
        }
        .boot()
        .unwrap();
    }

    #[test]
    fn a_removed_member_with_kept_data_refuses_until_its_etcd_data_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ClusterState::default();
        let (v1, mut st1) = machine(
            dir.path(),
            "s1",
            "server",
            "token: t\ncluster-init: true\n",
            &[],
        );
        let (v2, mut st2) = machine(dir.path(), "s2", "server", "token: t\n", &["s1"]);
        c.host_mut("s1");
        c.host_mut("s2");
        boot(&v1, &mut st1, &mut c);
        boot(&v2, &mut st2, &mut c);
        assert_eq!(c.members.len(), 2, "{c:#?}");
        assert!(v2.path(K3S_SERVERS).exists() && v2.path("/etc/slipway/k3s-installed").exists());
        let old = c.member("s2").unwrap().id.clone();
        // The member goes (kubectl delete node s2), the machine keeps its /var.
        c.members.retain(|m| m.name != "s2");
        c.nodes.retain(|n| n.name != "s2");
        boot(&v2, &mut st2, &mut c);
        let failure = st2.k3s.as_ref().unwrap().failure.clone().unwrap();
        assert!(failure.contains("permanently removed"), "{failure}");
        assert!(c.member("s2").is_none());
        // Deleting the etcd data lets it join again, as a new member.
        std::fs::remove_dir_all(v2.path(ETCD_DIR)).unwrap();
        Ctx {
            view: &v2,
            state: &mut st2,
            cluster: &mut c,
            now: 2,
        }
        .start()
        .unwrap();
        assert!(st2.k3s.as_ref().unwrap().active);
        assert_ne!(c.member("s2").unwrap().id, old);
    }

    #[test]
    fn install_checks_what_the_files_mean() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ClusterState::default();
        for h in ["s1", "a1", "a2", "a3", "s9"] {
            c.host_mut(h);
        }
        let (v1, mut st1) = machine(
            dir.path(),
            "s1",
            "server",
            "token: t\ncluster-init: true\nnode-name: s1\n",
            &[],
        );
        boot(&v1, &mut st1, &mut c);
        // An agent without a token, one with server flags, one that is not enabled.
        let (va, mut sa) = machine(dir.path(), "a1", "agent", "node-name: a1\n", &["s1"]);
        boot(&va, &mut sa, &mut c);
        assert_eq!(
            sa.k3s.as_ref().unwrap().failure.as_deref(),
            Some("--token is required")
        );
        let (vb, mut sb) = machine(
            dir.path(),
            "a2",
            "agent",
            "token: t\ncluster-cidr: 10.42.0.0/16\n",
            &["s1"],
        );
        boot(&vb, &mut sb, &mut c);
        assert!(sb.k3s.as_ref().unwrap().active);
        assert!(c
            .events_of("a2")
            .iter()
            .any(|e| e.kind == EventKind::ConfigWarning && e.message.contains("--cluster-cidr")));
        let (vc, mut sc) = machine(dir.path(), "a3", "agent", "token: t\n", &["s1"]);
        std::fs::write(
            vc.path("/etc/systemd/system-preset/20-ignition.preset"),
            "disable k3s-install.service\n",
        )
        .unwrap();
        boot(&vc, &mut sc, &mut c);
        assert_eq!(sc.k3s, None, "a disabled installer never runs");
        // A server without cluster-init and with nowhere to join starts a second cluster.
        let (vs, mut ss) = machine(dir.path(), "s9", "server", "token: t\n", &[]);
        boot(&vs, &mut ss, &mut c);
        assert_eq!(c.split_brain.len(), 1);
        assert!(c.split_brain[0].reason.contains("standalone"));
        assert_eq!(
            c.members.len(),
            1,
            "the split-brain server is no member of this cluster"
        );
        // A missing K3s binary fails the install.
        std::fs::remove_file(va.path(K3S_BINARY)).unwrap();
        boot(&va, &mut sa, &mut c);
        assert!(sa
            .k3s
            .as_ref()
            .unwrap()
            .failure
            .as_ref()
            .unwrap()
            .contains("missing"));
    }

    #[test]
    fn config_layers_replace_and_append_like_k3s() {
        let c = K3sConfig::parse_layers(&[
            (
                "config.yaml".into(),
                "token: abc\nnode-label: [a=1]\ncluster-init: true\n".into(),
            ),
            (
                "config.yaml.d/10.yaml".into(),
                "server: \"https://x:6443\"\nnode-label+: [b=2]\ntoken: def\n".into(),
            ),
        ])
        .unwrap();
        assert_eq!(c.string("token").as_deref(), Some("def"));
        assert_eq!(c.list("node-label"), vec!["a=1", "b=2"]);
        assert!(c.flag("cluster-init"));
        assert_eq!(c.string("server").as_deref(), Some("https://x:6443"));
        assert!(K3sConfig::parse_layers(&[("c".into(), "- a\n".into())]).is_err());
    }

    #[test]
    fn agents_skip_server_only_keys() {
        let c = K3sConfig::parse_layers(&[(
            "c".into(),
            "token: t\ncluster-cidr: 10.42.0.0/16\nbogus: 1\n".into(),
        )])
        .unwrap();
        assert_eq!(c.unknown_keys(K3sUnit::Server), vec!["bogus"]);
        assert_eq!(
            c.unknown_keys(K3sUnit::Agent),
            vec!["cluster-cidr", "bogus"]
        );
    }

    #[test]
    fn install_unit_role_and_stamp() {
        let unit = "[Unit]\nConditionPathExists=!/etc/slipway/k3s-installed\n[Service]\nExecStart=/usr/local/bin/slipway-k3s-install agent\n";
        assert_eq!(
            parse_install_unit(unit).unwrap(),
            (
                K3sUnit::Agent,
                "/usr/local/bin/slipway-k3s-install".to_string(),
                Some("/etc/slipway/k3s-installed".to_string())
            )
        );
        assert!(parse_install_unit("[Service]\nExecStart=/bin/true\n").is_err());
        assert!(parse_install_unit("[Service]\n").is_err());
    }

    #[test]
    fn presets_first_match_wins() {
        let presets = vec![
            (
                "20-ignition.preset".into(),
                "enable k3s-install.service\n".into(),
            ),
            ("99-default.preset".into(), "disable *\n".into()),
        ];
        assert!(preset_enables(&presets, "k3s-install.service"));
        assert!(!preset_enables(&presets, "other.service"));
        assert!(!preset_enables(&[], "k3s-install.service"));
    }

    #[test]
    fn endpoints_map_by_short_name_or_node_ip_on_6443() {
        let mut c = ClusterState::default();
        c.host_mut("n0");
        c.host_mut("n1").node_ip = Some("10.0.0.11".into());
        assert_eq!(
            resolve_endpoint(&c, "https://n0.lab.example:6443").unwrap(),
            "n0"
        );
        assert_eq!(resolve_endpoint(&c, "https://N0:6443").unwrap(), "n0");
        assert_eq!(
            resolve_endpoint(&c, "https://10.0.0.11:6443").unwrap(),
            "n1"
        );
        assert!(resolve_endpoint(&c, "https://n0.lab.example").is_err());
        assert!(resolve_endpoint(&c, "http://n0:6443").is_err());
        assert!(resolve_endpoint(&c, "https://n9:6443").is_err());
    }

    #[test]
    fn taints_and_versions_parse() {
        assert_eq!(
            parse_taint("storage=hdd:PreferNoSchedule"),
            Some(Taint {
                key: "storage".into(),
                value: Some("hdd".into()),
                effect: "PreferNoSchedule".into()
            })
        );
        assert_eq!(parse_taint("dedicated:NoExecute").unwrap().value, None);
        assert_eq!(parse_taint("x=y:Sometimes"), None);
        assert_eq!(
            parse_version("k3s version v1.30.4+k3s1 (abc)\ngo version go1.22\n").as_deref(),
            Some("v1.30.4+k3s1")
        );
        assert_eq!(parse_version("hello"), None);
    }

    #[test]
    fn view_maps_var_to_the_var_folder() {
        let v = NodeView {
            host: "n".into(),
            root: "/r".into(),
            var: "/v".into(),
            control: "/c".into(),
            cluster: "/k".into(),
        };
        assert_eq!(v.path("/var/lib/x"), PathBuf::from("/v/lib/x"));
        assert_eq!(v.path("/var"), PathBuf::from("/v"));
        assert_eq!(v.path("/variable"), PathBuf::from("/r/variable"));
        assert_eq!(v.path("/etc/x"), PathBuf::from("/r/etc/x"));
    }
}
