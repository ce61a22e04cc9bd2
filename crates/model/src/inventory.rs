//! The inventory: `cluster.yaml`, `nodes/*.yaml`, `butane/` overlays — raw, then validated.
//!
//! Loading goes in stages (like zincati's config): raw serde types that mirror the files and
//! keep positions ([`Spanned`]) → [`load`] checks every file and every cross-file rule,
//! collecting all problems → [`Inventory`], whose types cannot hold the illegal states the
//! checks ruled out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::Ipv4Net;
use marked_yaml::Spanned;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::{did_you_mean, Diagnostic, Diagnostics, Location};
use crate::net::MacAddr;
use crate::repo::RepoFiles;
use crate::yaml::location_of;

/// The cluster file at the repository root.
pub const CLUSTER_FILE: &str = "cluster.yaml";
/// The folder holding one file per node.
pub const NODES_DIR: &str = "nodes";
/// The folder holding Butane overlays.
pub const BUTANE_DIR: &str = "butane";

// ---------------------------------------------------------------------------------------
// Raw types: what the files say.
// ---------------------------------------------------------------------------------------

/// `cluster.yaml`: settings shared by every node.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Cluster name: a DNS label, used in artifact and snapshot names.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Fedora CoreOS stream and optional pin.
    pub fcos: RawFcos,
    /// K3s version, network and components.
    pub k3s: RawK3s,
    /// Where nodes fetch boot artifacts and Ignition.
    pub boot_server: RawBootServer,
    /// SSH access for the `core` user.
    pub ssh: RawSsh,
    /// How reinstalls and upgrades roll through the fleet.
    #[serde(default)]
    pub rollout: RawRollout,
    /// When disruptive actions may start. Empty: any time.
    #[serde(default)]
    pub maintenance_windows: Vec<RawWindow>,
    /// Install defaults for every node.
    #[serde(default)]
    pub install: RawInstall,
    /// Ignition spec version of the generated configs.
    #[serde(default)]
    pub ignition: RawIgnition,
    /// What to do with Zincati, FCOS's own update agent.
    #[serde(default)]
    pub zincati: RawZincati,
}

/// FCOS release selection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFcos {
    /// `stable`, `testing` or `next`.
    pub stream: Stream,
    /// Pin an exact release, e.g. `40.20240906.3.0`; otherwise the stream's newest.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub release: Option<Spanned<String>>,
    /// Never roll out a release newer than this one.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub no_newer_than: Option<Spanned<String>>,
    /// Stream metadata URL; defaults to the official one for the stream.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub stream_url: Option<Spanned<String>>,
}

/// FCOS update streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Production.
    Stable,
    /// Next stable, two weeks early.
    Testing,
    /// Next Fedora major.
    Next,
}

/// K3s settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawK3s {
    /// Release channel (`stable`, `latest`, `v1.30`), when no version is pinned.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub channel: Option<Spanned<String>>,
    /// Pinned version, e.g. `v1.30.4+k3s1`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub version: Option<Spanned<String>>,
    /// The channel server's JSON (`slipway serve` follows `channel` there); default: K3s's.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub channel_url: Option<Spanned<String>>,
    /// Following a channel, never go past this version (e.g. `v1.30.99+k3s9` stays on 1.30).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub no_newer_than: Option<Spanned<String>>,
    /// Where release files are downloaded from (`<download_url>/<version>/k3s` and
    /// `sha256sum-amd64.txt`); default: K3s's GitHub releases.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub download_url: Option<Spanned<String>>,
    /// Pod network, set explicitly (K3s's flannel needs it).
    #[schemars(with = "String")]
    pub cluster_cidr: Spanned<String>,
    /// Service network, set explicitly.
    #[schemars(with = "String")]
    pub service_cidr: Spanned<String>,
    /// Packaged components to turn off.
    #[serde(default)]
    #[schemars(with = "Vec<K3sComponent>")]
    pub disable: Vec<Spanned<K3sComponent>>,
    /// API endpoints joining nodes use, e.g. `https://server1.lab.example:6443` (list several).
    #[schemars(with = "Vec<String>")]
    pub api_endpoints: Vec<Spanned<String>>,
    /// Mode of the kubeconfig K3s writes (`--write-kubeconfig-mode`).
    #[serde(default = "default_kubeconfig_mode")]
    pub write_kubeconfig_mode: String,
}

fn default_kubeconfig_mode() -> String {
    "0644".into()
}

/// K3s packaged components that can be disabled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum K3sComponent {
    /// Traefik ingress.
    Traefik,
    /// ServiceLB (klipper-lb).
    Servicelb,
    /// local-path storage.
    LocalStorage,
    /// metrics-server.
    MetricsServer,
    /// The embedded network policy controller (`--disable-network-policy`).
    NetworkPolicy,
}

/// The boot server as nodes see it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBootServer {
    /// Base URL nodes use, e.g. `http://192.168.1.2:8080`.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// What an unknown MAC gets.
    #[serde(default)]
    pub unknown_mac: UnknownMacPolicy,
}

/// What the boot server answers to a MAC it does not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownMacPolicy {
    /// Boot from the local disk (logged).
    #[default]
    Localboot,
    /// Refuse (404), so the firmware falls through to its next boot entry.
    Refuse,
}

/// SSH access.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    /// Login user; FCOS's is `core`.
    #[serde(default = "default_user")]
    pub user: String,
    /// Public keys allowed to log in as that user.
    #[schemars(with = "Vec<String>")]
    pub authorized_keys: Vec<Spanned<String>>,
}

fn default_user() -> String {
    "core".into()
}

/// Rollout policy.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    /// How many agents may be down at once (servers always go one at a time).
    #[serde(default)]
    pub max_unavailable_agents: Option<u32>,
    /// Timeouts per step, as durations like `10m` or `1h 30m`.
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

/// Per-step timeouts.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Draining a node.
    #[schemars(with = "Option<String>")]
    #[serde(default)]
    pub drain: Option<Spanned<String>>,
    /// From reboot until the node fetched its Ignition.
    #[schemars(with = "Option<String>")]
    #[serde(default)]
    pub install: Option<Spanned<String>>,
    /// From reboot until SSH answers with the new configuration.
    #[schemars(with = "Option<String>")]
    #[serde(default)]
    pub boot: Option<Spanned<String>>,
    /// Until the node is Ready in K3s.
    #[schemars(with = "Option<String>")]
    #[serde(default)]
    pub ready: Option<Spanned<String>>,
}

/// A maintenance window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Days it starts on: `mon` … `sun`.
    #[schemars(with = "Vec<Weekday>")]
    pub days: Vec<Spanned<Weekday>>,
    /// Start time, `hh:mm` (24 h).
    #[schemars(with = "String")]
    pub start: Spanned<String>,
    /// Length, e.g. `4h`.
    #[schemars(with = "String")]
    pub length: Spanned<String>,
    /// IANA time zone, e.g. `Europe/Paris`.
    #[schemars(with = "String")]
    pub time_zone: Spanned<String>,
    /// Roles it applies to; empty: all.
    #[serde(default)]
    pub roles: Vec<Role>,
}

/// Days of the week.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Install defaults.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInstall {
    /// Default install disk (`/dev/disk/by-id/...`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub disk: Option<Spanned<String>>,
    /// Kernel arguments added to every node's install and installed system.
    #[serde(default)]
    pub kernel_args: Vec<String>,
}

/// Ignition output settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIgnition {
    /// `3.3.0` (default), `3.4.0` or `3.5.0`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub spec_version: Option<Spanned<String>>,
}

/// Zincati settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawZincati {
    /// `disabled` (Slipway owns updates) or `fleetlock` (Zincati updates, coordinated by Slipway).
    #[serde(default)]
    pub mode: ZincatiMode,
}

/// How Zincati is configured on nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZincatiMode {
    /// Zincati off; Slipway rolls OS upgrades.
    #[default]
    Disabled,
    /// Zincati on, asking Slipway's FleetLock endpoint before each reboot.
    Fleetlock,
}

/// `nodes/<name>.yaml`: one machine.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Fully qualified host name; the short name is its first label.
    #[schemars(with = "String")]
    pub hostname: Spanned<String>,
    /// `server` (control plane + etcd) or `agent`.
    #[schemars(with = "Role")]
    pub role: Spanned<Role>,
    /// True on exactly one server: the one that initialises a new cluster.
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub bootstrap: Option<Spanned<bool>>,
    /// The MAC address of the NIC this machine netboots from.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub mac_address: Option<Spanned<String>>,
    /// More MAC addresses of the same machine (other NICs that may netboot).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub mac_addresses: Vec<Spanned<String>>,
    /// `dhcp: true`, or a static address.
    pub network: RawNetwork,
    /// Install disk; defaults to cluster.yaml's `install.disk`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub install_disk: Option<Spanned<String>>,
    /// Kubernetes node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Kubernetes taints, `key=value:Effect`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub taints: Vec<Spanned<String>>,
    /// Butane overlays for this node only, relative to the repo root.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub butane: Vec<Spanned<String>>,
    /// How the node is made to netboot for a reinstall.
    #[serde(default)]
    pub reinstall_method: ReinstallMethod,
    /// Extra kernel arguments for this node.
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Where Slipway reaches the node over SSH, `host` or `host:port`; by default the static
    /// address (or the host name with DHCP), port 22.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ssh_address: Option<Spanned<String>>,
}

/// Node roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Control plane with embedded etcd.
    Server,
    /// Worker.
    Agent,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Agent => "agent",
        })
    }
}

/// How a reinstall makes the machine netboot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReinstallMethod {
    /// Set EFI BootNext to the network entry, then reboot (the disk stays first in the order).
    #[default]
    PxeBootnext,
    /// The firmware always netboots first; the boot server answers localboot unless armed.
    PxeAlways,
}

/// Network configuration of a node.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// Use DHCP instead of a static address.
    #[serde(default)]
    pub dhcp: bool,
    /// Static address with prefix, e.g. `192.168.1.21/24`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
    /// Default gateway.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub gateway: Option<Spanned<String>>,
    /// DNS servers.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub dns: Vec<Spanned<String>>,
    /// Interface name; by default the connection is bound to the first MAC.
    #[serde(default)]
    pub interface: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validated types.
// ---------------------------------------------------------------------------------------

/// A whole, validated inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    /// cluster.yaml.
    pub cluster: Cluster,
    /// Nodes, sorted by name.
    pub nodes: Vec<Node>,
    /// Overlays for all nodes and per role (node overlays are on each node).
    pub overlays: Overlays,
}

impl Inventory {
    /// Look a node up by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Servers, in name order.
    pub fn servers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Server)
    }

    /// Agents, in name order.
    pub fn agents(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Agent)
    }

    /// The bootstrap server (exactly one exists in a valid inventory).
    pub fn bootstrap(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.bootstrap)
    }
}

/// Butane overlay sources, by scope. Node overlays live on [`Node::overlays`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overlays {
    /// `butane/*.bu`: every node.
    pub all: Vec<Source>,
    /// `butane/server/*.bu`.
    pub server: Vec<Source>,
    /// `butane/agent/*.bu`.
    pub agent: Vec<Source>,
}

impl Overlays {
    /// The overlays of a role.
    pub fn for_role(&self, role: Role) -> &[Source] {
        match role {
            Role::Server => &self.server,
            Role::Agent => &self.agent,
        }
    }
}

/// A source file with its path, kept for rendering and for error messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Path relative to the repository root.
    pub path: String,
    /// UTF-8 contents.
    pub text: String,
}

/// Validated cluster settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// Cluster name.
    pub name: String,
    /// FCOS selection.
    pub fcos: Fcos,
    /// K3s settings.
    pub k3s: K3s,
    /// Boot server as nodes see it.
    pub boot_url: String,
    /// Unknown MAC policy.
    pub unknown_mac: UnknownMacPolicy,
    /// Login user.
    pub ssh_user: String,
    /// Authorized keys for that user.
    pub ssh_authorized_keys: Vec<String>,
    /// Rollout policy.
    pub rollout: Rollout,
    /// Maintenance windows; empty: any time.
    pub maintenance_windows: Vec<Window>,
    /// Default install disk.
    pub install_disk: Option<String>,
    /// Kernel arguments for every node.
    pub kernel_args: Vec<String>,
    /// Ignition spec version to emit.
    pub ignition_spec: String,
    /// Zincati mode.
    pub zincati: ZincatiMode,
}

/// FCOS release selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fcos {
    /// Stream.
    pub stream: Stream,
    /// Pinned release.
    pub release: Option<String>,
    /// Cap.
    pub no_newer_than: Option<String>,
    /// Stream metadata URL override.
    pub stream_url: Option<String>,
}

/// The K3s version source: a pin or a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum K3sRelease {
    /// An exact version.
    Pinned(String),
    /// Follow a channel.
    Channel(String),
}

/// K3s settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct K3s {
    /// Version source.
    pub release: K3sRelease,
    /// The channel server's JSON URL, when not K3s's own.
    pub channel_url: Option<String>,
    /// Following a channel: the newest version allowed.
    pub no_newer_than: Option<String>,
    /// The release download base, when not K3s's own.
    pub download_url: Option<String>,
    /// Pod network.
    pub cluster_cidr: Ipv4Net,
    /// Service network.
    pub service_cidr: Ipv4Net,
    /// Disabled components, sorted, without duplicates.
    pub disable: Vec<K3sComponent>,
    /// API endpoints for joiners.
    pub api_endpoints: Vec<String>,
    /// Kubeconfig mode.
    pub write_kubeconfig_mode: String,
}

/// Rollout policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// Agents down at once (≥ 1).
    pub max_unavailable_agents: u32,
    /// Drain timeout.
    pub drain_timeout: Duration,
    /// Reboot → Ignition fetched.
    pub install_timeout: Duration,
    /// Reboot → SSH with the new configuration.
    pub boot_timeout: Duration,
    /// → Ready in K3s.
    pub ready_timeout: Duration,
}

/// A maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Days it starts on.
    pub days: Vec<Weekday>,
    /// Start, minutes after midnight.
    pub start_minute: u16,
    /// Length.
    pub length: Duration,
    /// IANA time zone.
    pub time_zone: String,
    /// Roles; empty: all.
    pub roles: Vec<Role>,
}

/// A validated node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Name: the node file's stem.
    pub name: String,
    /// FQDN as written.
    pub hostname: String,
    /// Role.
    pub role: Role,
    /// Initialises a new cluster (one server).
    pub bootstrap: bool,
    /// NIC MACs, first is primary.
    pub macs: Vec<MacAddr>,
    /// Network.
    pub network: Network,
    /// Install disk.
    pub install_disk: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<String>,
    /// Node overlays, in the order listed.
    pub overlays: Vec<Source>,
    /// Reinstall method.
    pub reinstall_method: ReinstallMethod,
    /// Extra kernel arguments.
    pub kernel_args: Vec<String>,
    /// SSH host.
    pub ssh_host: String,
    /// SSH port.
    pub ssh_port: u16,
    /// The node file, for messages.
    pub file: String,
}

impl Node {
    /// The short host name: the FQDN's first label. K3s's node name.
    pub fn short_name(&self) -> &str {
        short_name(&self.hostname)
    }
}

/// The first label of a host name. Comparing names always goes through this, so an FQDN
/// and its short form are the same machine.
pub fn short_name(hostname: &str) -> &str {
    hostname.split('.').next().unwrap_or(hostname)
}

/// A node's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Network {
    /// DHCP.
    Dhcp,
    /// Static IPv4.
    Static {
        /// Address with prefix.
        address: Ipv4Net,
        /// Gateway.
        gateway: Ipv4Addr,
        /// DNS servers.
        dns: Vec<IpAddr>,
        /// Interface name, if pinned.
        interface: Option<String>,
    },
}

impl Network {
    /// The static address, if any.
    pub fn address(&self) -> Option<Ipv4Addr> {
        match self {
            Network::Static { address, .. } => Some(address.addr()),
            Network::Dhcp => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading and validation.
// ---------------------------------------------------------------------------------------

struct Ctx {
    diags: Diagnostics,
}

impl Ctx {
    fn err(&mut self, loc: Location, msg: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::error(loc, msg);
        self.diags.push(match hint {
            Some(h) => d.with_hint(h),
            None => d,
        });
    }

    fn warn(&mut self, loc: Location, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(loc, msg).with_hint(hint));
    }
}

/// Load and validate the inventory of a repository. Returns the inventory when there is no
/// error (warnings may be present) and every diagnostic found, sorted by location.
pub fn load(files: &RepoFiles) -> (Option<Inventory>, Diagnostics) {
    let mut cx = Ctx {
        diags: Diagnostics::default(),
    };
    let cluster = load_cluster(&mut cx, files);
    let errors_before_nodes = cx.diags.error_count();
    let nodes = load_nodes(&mut cx, files, cluster.as_ref());
    // Counting servers or bootstraps over a partial fleet would report phantom problems.
    let all_nodes_loaded = cx.diags.error_count() == errors_before_nodes;
    let overlays = load_overlays(&mut cx, files);
    check_duplicates(&mut cx, &nodes);
    if all_nodes_loaded {
        check_roles(&mut cx, &nodes);
    }
    cx.diags.sort();
    let inv = match (cluster, cx.diags.has_errors()) {
        (Some(cluster), false) => Some(Inventory {
            cluster,
            nodes: nodes.into_iter().map(|(n, _)| n).collect(),
            overlays,
        }),
        _ => None,
    };
    (inv, cx.diags)
}

fn text_of<'a>(cx: &mut Ctx, files: &'a RepoFiles, path: &str) -> Option<&'a str> {
    match files.get(path) {
        None => None,
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(t) => Some(t),
            Err(e) => {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                cx.err(
                    Location::new(path, line, 1),
                    "the file is not valid UTF-8",
                    Some("save it as UTF-8 text".into()),
                );
                None
            }
        },
    }
}

fn parse_duration(
    cx: &mut Ctx,
    file: &str,
    v: &Option<Spanned<String>>,
    default: Duration,
) -> Duration {
    let Some(v) = v else { return default };
    match humantime::parse_duration(v) {
        Ok(d) if d > Duration::ZERO => d,
        Ok(_) => {
            cx.err(
                location_of(file, v.span()),
                "a timeout must be longer than zero",
                None,
            );
            default
        }
        Err(e) => {
            cx.err(
                location_of(file, v.span()),
                format!("`{}` is not a duration: {e}", v.as_str()),
                Some("write durations like `90s`, `10m` or `1h 30m`".into()),
            );
            default
        }
    }
}

fn parse_cidr(cx: &mut Ctx, file: &str, v: &Spanned<String>, what: &str) -> Option<Ipv4Net> {
    match v.parse::<Ipv4Net>() {
        Ok(n) if n.network() == n.addr() => Some(n),
        Ok(n) => {
            cx.err(
                location_of(file, v.span()),
                format!("{what} `{}` has host bits set", v.as_str()),
                Some(format!("did you mean `{}`?", n.trunc())),
            );
            None
        }
        Err(_) => {
            cx.err(
                location_of(file, v.span()),
                format!("{what} `{}` is not an IPv4 network", v.as_str()),
                Some("write it as address/prefix, like `10.42.0.0/16`".into()),
            );
            None
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn load_cluster(cx: &mut Ctx, files: &RepoFiles) -> Option<Cluster> {
    let file = CLUSTER_FILE;
    let Some(text) = text_of(cx, files, file) else {
        if !files.contains(file) {
            cx.err(
                Location::file(file),
                "cluster.yaml is missing",
                Some("copy cluster-repo-example/cluster.yaml and adapt it".into()),
            );
        }
        return None;
    };
    let raw: RawCluster = match crate::yaml::load(file, text) {
        Ok(r) => r,
        Err(ds) => {
            cx.diags.extend(ds);
            return None;
        }
    };
    let before = cx.diags.error_count();

    if !is_dns_label(&raw.name) {
        cx.err(
            location_of(file, raw.name.span()),
            format!("cluster name `{}` is not a DNS label", raw.name.as_str()),
            Some("use lowercase letters, digits and `-`, at most 63 characters".into()),
        );
    }
    let release = match (&raw.k3s.version, &raw.k3s.channel) {
        (Some(v), Some(c)) => {
            cx.err(
                location_of(file, c.span()),
                "k3s: set either `version` (a pin) or `channel`, not both",
                Some(format!("remove `channel` to stay on {}", v.as_str())),
            );
            K3sRelease::Pinned(v.to_string())
        }
        (Some(v), None) => {
            if !is_k3s_version(v) {
                cx.err(
                    location_of(file, v.span()),
                    format!("`{}` is not a K3s version", v.as_str()),
                    Some("K3s versions look like `v1.30.4+k3s1`".into()),
                );
            }
            K3sRelease::Pinned(v.to_string())
        }
        (None, Some(c)) => K3sRelease::Channel(c.to_string()),
        (None, None) => K3sRelease::Channel("stable".into()),
    };
    if let Some(cap) = &raw.k3s.no_newer_than {
        if !is_k3s_version(cap) {
            cx.err(
                location_of(file, cap.span()),
                format!("`{}` is not a K3s version", cap.as_str()),
                Some("K3s versions look like `v1.30.4+k3s1`".into()),
            );
        } else if raw.k3s.version.is_some() {
            cx.err(
                location_of(file, cap.span()),
                "k3s: `no_newer_than` caps a channel, but `version` pins one",
                Some("remove `no_newer_than`, or follow a `channel` instead of the pin".into()),
            );
        }
    }
    let cluster_cidr = parse_cidr(cx, file, &raw.k3s.cluster_cidr, "cluster_cidr");
    let service_cidr = parse_cidr(cx, file, &raw.k3s.service_cidr, "service_cidr");
    if let (Some(a), Some(b)) = (cluster_cidr, service_cidr) {
        if a.contains(&b.network()) || b.contains(&a.network()) {
            cx.err(
                location_of(file, raw.k3s.service_cidr.span()),
                format!("service_cidr {b} overlaps cluster_cidr {a}"),
                Some(
                    "K3s's defaults are 10.42.0.0/16 for pods and 10.43.0.0/16 for services".into(),
                ),
            );
        }
    }
    let mut disable: Vec<K3sComponent> = raw.k3s.disable.iter().map(|s| **s).collect();
    disable.sort();
    disable.dedup();
    let mut endpoints = Vec::new();
    for e in &raw.k3s.api_endpoints {
        match url::Url::parse(e) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {
                endpoints.push(e.trim_end_matches('/').to_string())
            }
            _ => cx.err(
                location_of(file, e.span()),
                format!("API endpoint `{}` is not an https URL", e.as_str()),
                Some("write it like `https://server1.lab.example:6443`".into()),
            ),
        }
    }
    if raw.k3s.api_endpoints.is_empty() {
        cx.err(
            Location::file(file),
            "k3s.api_endpoints is empty: joining nodes need at least one server URL",
            Some("list every server, like `https://server1.lab.example:6443`".into()),
        );
    }
    for (key, value, example) in [
        (
            "fcos.stream_url",
            &raw.fcos.stream_url,
            "http://mirror.lab.example/streams/stable.json",
        ),
        (
            "k3s.channel_url",
            &raw.k3s.channel_url,
            "http://mirror.lab.example/k3s/channels",
        ),
        (
            "k3s.download_url",
            &raw.k3s.download_url,
            "http://mirror.lab.example/k3s/releases",
        ),
    ] {
        let Some(v) = value else { continue };
        match url::Url::parse(v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => cx.err(
                location_of(file, v.span()),
                format!("{key} `{}` is not an http(s) URL", v.as_str()),
                Some(format!(
                    "write a whole URL, like `{example}`, or remove the key to use the default"
                )),
            ),
        }
    }
    let boot_url = match url::Url::parse(&raw.boot_server.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            raw.boot_server.url.trim_end_matches('/').to_string()
        }
        _ => {
            cx.err(
                location_of(file, raw.boot_server.url.span()),
                format!(
                    "boot_server.url `{}` is not an http(s) URL",
                    raw.boot_server.url.as_str()
                ),
                Some(
                    "write the address nodes reach Slipway at, like `http://192.168.1.2:8080`"
                        .into(),
                ),
            );
            String::new()
        }
    };
    let mut keys = Vec::new();
    for k in &raw.ssh.authorized_keys {
        if is_ssh_public_key(k) {
            keys.push(k.trim().to_string());
        } else {
            cx.err(
                location_of(file, k.span()),
                "not an SSH public key",
                Some(
                    "paste one whole line of a `.pub` file, like `ssh-ed25519 AAAA... you@laptop`"
                        .into(),
                ),
            );
        }
    }
    if raw.ssh.authorized_keys.is_empty() {
        cx.err(
            Location::file(file),
            "ssh.authorized_keys is empty: nobody (not even Slipway) could log in to the nodes",
            Some("add the public key Slipway connects with".into()),
        );
    }
    let t = &raw.rollout.timeouts;
    let rollout = Rollout {
        max_unavailable_agents: match raw.rollout.max_unavailable_agents {
            Some(0) => {
                cx.err(
                    Location::file(file),
                    "rollout.max_unavailable_agents must be at least 1",
                    None,
                );
                1
            }
            Some(n) => n,
            None => 1,
        },
        drain_timeout: parse_duration(cx, file, &t.drain, Duration::from_secs(600)),
        install_timeout: parse_duration(cx, file, &t.install, Duration::from_secs(1800)),
        boot_timeout: parse_duration(cx, file, &t.boot, Duration::from_secs(1800)),
        ready_timeout: parse_duration(cx, file, &t.ready, Duration::from_secs(600)),
    };
    let mut windows = Vec::new();
    for w in &raw.maintenance_windows {
        let start_minute = match parse_hhmm(&w.start) {
            Some(m) => m,
            None => {
                cx.err(
                    location_of(file, w.start.span()),
                    format!("`{}` is not a time of day", w.start.as_str()),
                    Some("write it as hh:mm in 24-hour time, like \"02:30\" (quoted)".into()),
                );
                0
            }
        };
        let length = parse_duration(cx, file, &Some(w.length.clone()), Duration::from_secs(3600));
        if length > Duration::from_secs(7 * 24 * 3600) {
            cx.err(
                location_of(file, w.length.span()),
                "a window cannot be longer than a week",
                None,
            );
        }
        if w.time_zone.parse::<chrono_tz::Tz>().is_err() {
            let tz = w.time_zone.as_str();
            let hint = did_you_mean(tz, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()))
                .map_or_else(
                    || "use an IANA name like `Europe/Paris` or `UTC`".to_string(),
                    |s| format!("did you mean `{s}`?"),
                );
            cx.err(
                location_of(file, w.time_zone.span()),
                format!("unknown time zone `{tz}`"),
                Some(hint),
            );
        }
        if w.days.is_empty() {
            cx.err(
                location_of(file, w.start.span()),
                "a maintenance window needs at least one day",
                None,
            );
        }
        windows.push(Window {
            days: w.days.iter().map(|d| **d).collect(),
            start_minute,
            length,
            time_zone: w.time_zone.to_string(),
            roles: w.roles.clone(),
        });
    }
    let ignition_spec = match &raw.ignition.spec_version {
        None => "3.3.0".to_string(),
        Some(v) if matches!(v.as_str(), "3.3.0" | "3.4.0" | "3.5.0") => v.to_string(),
        Some(v) => {
            cx.err(
                location_of(file, v.span()),
                format!(
                    "Ignition spec version `{}` is not supported for generated configs",
                    v.as_str()
                ),
                Some(
                    "use 3.3.0 (the default; FCOS and Debian's ignition read it), 3.4.0 or 3.5.0"
                        .into(),
                ),
            );
            "3.3.0".into()
        }
    };
    let install_disk = raw.install.disk.as_ref().map(|d| {
        check_disk(cx, file, d);
        d.to_string()
    });
    let spanned_opt = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.to_string());

    if cx.diags.error_count() > before {
        return None;
    }
    Some(Cluster {
        name: raw.name.to_string(),
        fcos: Fcos {
            stream: raw.fcos.stream,
            release: spanned_opt(&raw.fcos.release),
            no_newer_than: spanned_opt(&raw.fcos.no_newer_than),
            stream_url: spanned_opt(&raw.fcos.stream_url),
        },
        k3s: K3s {
            release,
            channel_url: spanned_opt(&raw.k3s.channel_url),
            no_newer_than: spanned_opt(&raw.k3s.no_newer_than),
            download_url: spanned_opt(&raw.k3s.download_url),
            cluster_cidr: cluster_cidr?,
            service_cidr: service_cidr?,
            disable,
            api_endpoints: endpoints,
            write_kubeconfig_mode: raw.k3s.write_kubeconfig_mode,
        },
        boot_url,
        unknown_mac: raw.boot_server.unknown_mac,
        ssh_user: raw.ssh.user,
        ssh_authorized_keys: keys,
        rollout,
        maintenance_windows: windows,
        install_disk,
        kernel_args: raw.install.kernel_args,
        ignition_spec,
        zincati: raw.zincati.mode,
    })
}

fn is_k3s_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let (ver, build) = rest.split_once('+').unwrap_or((rest, ""));
    let parts: Vec<&str> = ver.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && (build.is_empty() || build.starts_with("k3s"))
}

fn is_ssh_public_key(k: &str) -> bool {
    let mut it = k.split_whitespace();
    matches!(
        (it.next(), it.next()),
        (Some(t), Some(b)) if t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-")
            && b.len() > 16
    ) && k.split_whitespace().nth(1).is_some_and(|b| b.len() > 16)
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn check_disk(cx: &mut Ctx, file: &str, d: &Spanned<String>) {
    if !d.starts_with("/dev/") {
        cx.err(
            location_of(file, d.span()),
            format!("install disk `{}` is not a device path", d.as_str()),
            Some("use a stable path like `/dev/disk/by-id/nvme-Samsung_SSD_980_S123`".into()),
        );
    } else if !d.starts_with("/dev/disk/by-") {
        cx.warn(
            location_of(file, d.span()),
            format!(
                "install disk `{}` may change name between boots",
                d.as_str()
            ),
            "prefer a stable path under /dev/disk/by-id/ or /dev/disk/by-path/",
        );
    }
}

/// A node with the positions of the values cross-file checks point at.
struct NodeSpans {
    hostname: Location,
    role: Location,
    bootstrap: Location,
    macs: Vec<Location>,
    address: Option<Location>,
}

fn load_nodes(
    cx: &mut Ctx,
    files: &RepoFiles,
    cluster: Option<&Cluster>,
) -> Vec<(Node, NodeSpans)> {
    let mut out = Vec::new();
    let paths = files.list(NODES_DIR, ".yaml");
    for other in files.list(NODES_DIR, ".yml") {
        cx.err(
            Location::file(other),
            "node files must end in `.yaml`",
            Some("rename it; `.yml` files are not read".into()),
        );
    }
    for file in paths {
        let name = file
            .trim_start_matches("nodes/")
            .trim_end_matches(".yaml")
            .to_string();
        if !is_dns_label(&name) {
            cx.err(
                Location::file(file),
                format!("node name `{name}` (the file name) is not a DNS label"),
                Some("use lowercase letters, digits and `-`".into()),
            );
            continue;
        }
        let Some(text) = text_of(cx, files, file) else {
            continue;
        };
        let raw: RawNode = match crate::yaml::load(file, text) {
            Ok(r) => r,
            Err(ds) => {
                cx.diags.extend(ds);
                continue;
            }
        };
        if let Some(n) = validate_node(cx, files, file, name, raw, cluster) {
            out.push(n);
        }
    }
    out
}

fn validate_node(
    cx: &mut Ctx,
    files: &RepoFiles,
    file: &str,
    name: String,
    raw: RawNode,
    cluster: Option<&Cluster>,
) -> Option<(Node, NodeSpans)> {
    let before = cx.diags.error_count();
    let loc = |s: &marked_yaml::Span| location_of(file, s);
    let host = raw.hostname.as_str();
    if !is_hostname(host) {
        cx.err(
            loc(raw.hostname.span()),
            format!("`{host}` is not a valid host name"),
            Some("use a fully qualified name like `lenovo1.lab.example.net` (lowercase labels of letters, digits, `-`)".into()),
        );
    } else if short_name(host) != name {
        cx.warn(
            loc(raw.hostname.span()),
            format!(
                "the file is named `{name}` but the host's short name is `{}`",
                short_name(host)
            ),
            format!(
                "rename the file to nodes/{}.yaml so names match everywhere",
                short_name(host)
            ),
        );
    }
    let bootstrap = raw.bootstrap.as_ref().is_some_and(|b| **b);
    let bootstrap_loc = raw
        .bootstrap
        .as_ref()
        .map_or_else(|| loc(raw.role.span()), |b| loc(b.span()));
    if bootstrap && *raw.role == Role::Agent {
        cx.err(
            bootstrap_loc.clone(),
            "an agent cannot be the bootstrap node",
            Some("set `bootstrap: true` on one server instead".into()),
        );
    }
    let mut macs = Vec::new();
    let mut mac_locs = Vec::new();
    let items: Vec<&Spanned<String>> = raw.mac_address.iter().chain(&raw.mac_addresses).collect();
    if items.is_empty() {
        cx.err(
            loc(raw.hostname.span()),
            "no MAC address: the boot server recognises machines by MAC",
            Some("add `mac_address: aa:bb:cc:dd:ee:ff` (the NIC the machine netboots from)".into()),
        );
    }
    for m in items {
        match m.parse::<MacAddr>() {
            Ok(mac) if mac.is_multicast() || mac.0 == [0; 6] => cx.err(
                loc(m.span()),
                format!(
                    "`{}` is not a NIC address (multicast or all zeros)",
                    m.as_str()
                ),
                Some("copy the MAC from the machine's firmware or `ip link`".into()),
            ),
            Ok(mac) => {
                macs.push(mac);
                mac_locs.push(loc(m.span()));
            }
            Err(e) => cx.err(
                loc(m.span()),
                format!("`{}` is not a MAC address", m.as_str()),
                Some(e.to_string()),
            ),
        }
    }
    let (network, address_loc) = validate_network(cx, file, &raw.network);
    let install_disk = match (
        &raw.install_disk,
        cluster.and_then(|c| c.install_disk.clone()),
    ) {
        (Some(d), _) => {
            check_disk(cx, file, d);
            d.to_string()
        }
        (None, Some(d)) => d,
        (None, None) => {
            if cluster.is_some() {
                cx.err(
                    Location::file(file),
                    "no install disk: set `install_disk` here or `install.disk` in cluster.yaml",
                    Some("use a stable path like `/dev/disk/by-id/nvme-...`".into()),
                );
            }
            String::new()
        }
    };
    let mut taints = Vec::new();
    for t in &raw.taints {
        if is_taint(t) {
            taints.push(t.to_string());
        } else {
            cx.err(
                loc(t.span()),
                format!("`{}` is not a taint", t.as_str()),
                Some("write `key=value:Effect` or `key:Effect`, Effect one of NoSchedule, PreferNoSchedule, NoExecute".into()),
            );
        }
    }
    for (k, v) in &raw.labels {
        if k.is_empty()
            || k.len() > 253
            || v.len() > 63
            || k.contains(char::is_whitespace)
            || v.contains(char::is_whitespace)
        {
            cx.err(
                Location::file(file),
                format!("label `{k}={v}` is not a valid Kubernetes label"),
                Some("keys are `[prefix/]name`, values at most 63 characters, no spaces".into()),
            );
        }
    }
    let mut overlays = Vec::new();
    for b in &raw.butane {
        let path = b.trim_start_matches("./");
        match files.text(path) {
            Some(text) if path.ends_with(".bu") => overlays.push(Source {
                path: path.to_string(),
                text: text.to_string(),
            }),
            Some(_) => cx.err(
                loc(b.span()),
                format!("overlay `{path}` is not a `.bu` file"),
                None,
            ),
            None => {
                let all: Vec<&str> = files
                    .iter()
                    .map(|(p, _)| p)
                    .filter(|p| p.ends_with(".bu"))
                    .collect();
                let hint = did_you_mean(path, all.iter().copied()).map_or_else(
                    || {
                        "paths are relative to the repository root, like `butane/nodes/lenovo1.bu`"
                            .to_string()
                    },
                    |s| format!("did you mean `{s}`?"),
                );
                cx.err(
                    loc(b.span()),
                    format!("overlay `{path}` does not exist"),
                    Some(hint),
                );
            }
        }
    }
    let (ssh_host, ssh_port) = match &raw.ssh_address {
        Some(a) => match parse_host_port(a) {
            Some(hp) => hp,
            None => {
                cx.err(
                    loc(a.span()),
                    format!("`{}` is not an SSH address", a.as_str()),
                    Some(
                        "write `host` or `host:port`, like `192.168.26.11` or `127.0.0.1:2201`"
                            .into(),
                    ),
                );
                (String::new(), 22)
            }
        },
        None => (
            network
                .address()
                .map_or_else(|| host.to_string(), |a| a.to_string()),
            22,
        ),
    };
    if cx.diags.error_count() > before {
        return None;
    }
    let spans = NodeSpans {
        hostname: loc(raw.hostname.span()),
        role: loc(raw.role.span()),
        bootstrap: bootstrap_loc,
        macs: mac_locs,
        address: address_loc,
    };
    Some((
        Node {
            name,
            hostname: host.to_string(),
            role: *raw.role,
            bootstrap,
            macs,
            network,
            install_disk,
            labels: raw.labels,
            taints,
            overlays,
            reinstall_method: raw.reinstall_method,
            kernel_args: raw.kernel_args,
            ssh_host,
            ssh_port,
            file: file.to_string(),
        },
        spans,
    ))
}

fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)?),
        None => (s, 22),
    };
    let ok = host.parse::<Ipv4Addr>().is_ok() || is_hostname(host);
    ok.then(|| (host.to_string(), port))
}

fn is_hostname(h: &str) -> bool {
    h.len() <= 253 && h.split('.').all(is_dns_label)
}

fn is_taint(t: &str) -> bool {
    let Some((kv, effect)) = t.rsplit_once(':') else {
        return false;
    };
    let key = kv.split_once('=').map_or(kv, |(k, _)| k);
    !key.is_empty()
        && !key.contains(char::is_whitespace)
        && matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
}

fn validate_network(cx: &mut Ctx, file: &str, n: &RawNetwork) -> (Network, Option<Location>) {
    if n.dhcp {
        if let Some(a) = &n.address {
            cx.err(
                location_of(file, a.span()),
                "`dhcp: true` and a static `address` contradict each other",
                Some("remove one of them".into()),
            );
        }
        return (Network::Dhcp, None);
    }
    let Some(addr) = &n.address else {
        cx.err(
            Location::file(file),
            "network: neither `dhcp: true` nor a static `address`",
            Some("add `address: 192.168.1.21/24` and `gateway:`, or `dhcp: true`".into()),
        );
        return (Network::Dhcp, None);
    };
    let aloc = location_of(file, addr.span());
    let address = match addr.parse::<Ipv4Net>() {
        Ok(a) if a.prefix_len() > 30 => {
            cx.err(
                aloc.clone(),
                format!("prefix /{} leaves no room for a gateway", a.prefix_len()),
                Some("use the prefix of the LAN, like /24".into()),
            );
            None
        }
        Ok(a) if a.addr() == a.network() || a.addr() == a.broadcast() => {
            cx.err(
                aloc.clone(),
                format!(
                    "{} is the network or broadcast address of {}",
                    a.addr(),
                    a.trunc()
                ),
                None,
            );
            None
        }
        Ok(a) => Some(a),
        Err(_) if addr.parse::<Ipv4Addr>().is_ok() => {
            cx.err(
                aloc.clone(),
                format!("address `{}` has no prefix", addr.as_str()),
                Some(format!(
                    "write it with its prefix, like `{}/24`",
                    addr.as_str()
                )),
            );
            None
        }
        Err(_) => {
            cx.err(
                aloc.clone(),
                format!("`{}` is not an IPv4 address with prefix", addr.as_str()),
                Some("write it like `192.168.1.21/24`".into()),
            );
            None
        }
    };
    let gateway = match &n.gateway {
        None => {
            cx.err(aloc.clone(), "a static address needs a `gateway`", None);
            None
        }
        Some(g) => match g.parse::<Ipv4Addr>() {
            Ok(gw) => {
                if let Some(a) = address {
                    if gw == a.addr() {
                        cx.err(
                            location_of(file, g.span()),
                            format!("the gateway {gw} is the node's own address"),
                            Some("the gateway is the router's address".into()),
                        );
                    } else if !a.contains(&gw) {
                        cx.err(
                            location_of(file, g.span()),
                            format!("gateway {gw} is outside the node's subnet {}", a.trunc()),
                            Some("check the address's prefix or the gateway".into()),
                        );
                    }
                }
                Some(gw)
            }
            Err(_) => {
                cx.err(
                    location_of(file, g.span()),
                    format!("`{}` is not an IPv4 address", g.as_str()),
                    None,
                );
                None
            }
        },
    };
    let mut dns = Vec::new();
    for d in &n.dns {
        match d.parse::<IpAddr>() {
            Ok(ip) => dns.push(ip),
            Err(_) => cx.err(
                location_of(file, d.span()),
                format!("DNS server `{}` is not an IP address", d.as_str()),
                None,
            ),
        }
    }
    match (address, gateway) {
        (Some(address), Some(gateway)) => (
            Network::Static {
                address,
                gateway,
                dns,
                interface: n.interface.clone(),
            },
            Some(aloc),
        ),
        _ => (Network::Dhcp, Some(aloc)),
    }
}

fn load_overlays(cx: &mut Ctx, files: &RepoFiles) -> Overlays {
    let mut read = |dir: &str| -> Vec<Source> {
        files
            .list(dir, ".bu")
            .into_iter()
            .filter_map(|p| {
                text_of(cx, files, p).map(|t| Source {
                    path: p.to_string(),
                    text: t.to_string(),
                })
            })
            .collect()
    };
    Overlays {
        all: read(BUTANE_DIR),
        server: read("butane/server"),
        agent: read("butane/agent"),
    }
}

fn check_duplicates(cx: &mut Ctx, nodes: &[(Node, NodeSpans)]) {
    let mut hostnames: BTreeMap<String, &Location> = BTreeMap::new();
    let mut macs: BTreeMap<MacAddr, &Location> = BTreeMap::new();
    let mut ips: BTreeMap<Ipv4Addr, &Location> = BTreeMap::new();
    for (n, s) in nodes {
        // Short names must be unique too: K3s names nodes by them.
        let key = short_name(&n.hostname).to_string();
        if let Some(first) = hostnames.get(&key) {
            cx.err(
                s.hostname.clone(),
                format!("host name `{}` is already used by {first}", n.hostname),
                Some("every node needs its own host name (short names must differ too)".into()),
            );
        } else {
            hostnames.insert(key, &s.hostname);
        }
        for (mac, loc) in n.macs.iter().zip(&s.macs) {
            if let Some(first) = macs.get(mac) {
                cx.err(
                    loc.clone(),
                    format!("MAC {mac} is already used by {first}"),
                    Some("each NIC belongs to one node".into()),
                );
            } else {
                macs.insert(*mac, loc);
            }
        }
        if let (Some(ip), Some(loc)) = (n.network.address(), &s.address) {
            if let Some(first) = ips.get(&ip) {
                cx.err(
                    loc.clone(),
                    format!("address {ip} is already used by {first}"),
                    None,
                );
            } else {
                ips.insert(ip, loc);
            }
        }
    }
}

fn check_roles(cx: &mut Ctx, nodes: &[(Node, NodeSpans)]) {
    let servers: Vec<&(Node, NodeSpans)> = nodes
        .iter()
        .filter(|(n, _)| n.role == Role::Server)
        .collect();
    let agents = nodes.len() - servers.len();
    let bootstraps: Vec<&(Node, NodeSpans)> = nodes.iter().filter(|(n, _)| n.bootstrap).collect();
    if !servers.is_empty() && bootstraps.is_empty() {
        cx.err(
            servers[0].1.role.clone(),
            "no server has `bootstrap: true`: nothing would initialise the cluster",
            Some(format!(
                "set `bootstrap: true` on exactly one server, e.g. in {}",
                servers[0].0.file
            )),
        );
    }
    if bootstraps.len() > 1 {
        let names: Vec<&str> = bootstraps.iter().map(|(n, _)| n.name.as_str()).collect();
        for (_, s) in &bootstraps[1..] {
            cx.err(
                s.bootstrap.clone(),
                format!(
                    "{} servers have `bootstrap: true` ({}): two would start two separate clusters",
                    bootstraps.len(),
                    names.join(", ")
                ),
                Some("keep `bootstrap: true` on exactly one server".into()),
            );
        }
    }
    if servers.is_empty() && agents > 0 {
        cx.err(
            Location::file(CLUSTER_FILE),
            format!("{agents} agent(s) but no server: agents have nothing to join"),
            Some("add a node with `role: server` and `bootstrap: true`".into()),
        );
    }
    if !servers.is_empty() && servers.len() % 2 == 0 {
        cx.warn(
            servers[servers.len() - 1].1.role.clone(),
            format!(
                "{} servers: etcd needs a majority ({} of {}) to work, so an even count tolerates no more failures than {} servers",
                servers.len(),
                servers.len() / 2 + 1,
                servers.len(),
                servers.len() - 1
            ),
            "run an odd number of servers (1, 3 or 5)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hosts() {
        assert_eq!(short_name("lenovo1.lab.home.example"), "lenovo1");
        assert_eq!(short_name("lenovo1"), "lenovo1");
        assert!(is_hostname("a.b-c.d"));
        assert!(!is_hostname("A.b"));
        assert!(!is_hostname("a..b"));
        assert!(is_k3s_version("v1.30.4+k3s1"));
        assert!(!is_k3s_version("1.30.4"));
        assert!(is_taint("dedicated=gpu:NoSchedule"));
        assert!(is_taint("gpu:NoExecute"));
        assert!(!is_taint("gpu=true"));
        assert_eq!(parse_hhmm("02:30"), Some(150));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(
            parse_host_port("127.0.0.1:2201"),
            Some(("127.0.0.1".into(), 2201))
        );
        assert_eq!(
            parse_host_port("n1.lab.example"),
            Some(("n1.lab.example".into(), 22))
        );
        assert_eq!(parse_host_port("n1:0"), None);
        assert_eq!(parse_host_port("bad host:22"), None);
    }
}
