//! The node profile: what Slipway itself puts on every node, rendered from the inventory
//! into Butane and then through the same translator as the operator's overlays.
//!
//! The working shape from the field, without its failures:
//! - the FQDN is written as the hostname, but names are only ever compared by their short
//!   form, and "bootstrap or join" is an explicit input ([`ClusterState`]), never inferred
//!   from the hostname;
//! - the K3s binaries Ignition writes under `/usr/local/bin` get their SELinux labels fixed
//!   by a unit ordered before the installer, so systemd may execute them;
//! - a one-shot `k3s-install.service` runs the upstream install script (which creates *and
//!   starts* `k3s.service`), guarded by a stamp file in `/etc` — on the root file system, so
//!   a reinstall runs it again even though `/var` is kept;
//! - the K3s binary and install script come from Slipway's own artifact server, checked by
//!   Ignition against their sha256 (`verification.hash`): no `curl | sh` from the internet;
//! - the disk layout keeps `/var` across reinstalls (a `var` partition, `wipe_filesystem:
//!   false`).
//!
//! [`render_node`] layers the overlays (all nodes, role, node) and the profile with
//! Ignition's merge rules, computes the config hash, and adds `/etc/slipway/applied.json`
//! (commit, config hash, OS and K3s versions) so the reconciler can read back what a node runs.
//! [`Renderer`] renders many nodes, doing the work nodes of a role share once (see
//! `profile/render.rs` for its shortcuts, each checked to give the same bytes).

use serde::Serialize;
use serde_json::{json, Value};
use slipway_model::check::Secrets;
use slipway_model::diag::Diagnostic;
use slipway_model::inventory::{
    Cluster, Inventory, K3sComponent, Network, Node, Role, ZincatiMode,
};
use slipway_model::secrets::Secret;

use crate::butane::{self, ButaneVersion, TranslateOptions};
use crate::files::FileSource;
use crate::ignition::{self as ign, Config};

mod render;
pub use render::Renderer;

/// Where K3s keeps its config; the token is in it, so it is 0600.
pub const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// What Slipway reads back from a node.
pub const APPLIED_JSON: &str = "/etc/slipway/applied.json";
/// The API endpoints a joining node tries, one per line.
pub const K3S_SERVERS: &str = "/etc/slipway/k3s-servers";
/// Stamp of a completed K3s install; on the root file system so a reinstall runs it again.
pub const K3S_STAMP: &str = "/etc/slipway/k3s-installed";
/// The canary folder the rollout writes into (kept with /var).
pub const SLIPWAY_VAR: &str = "/var/lib/slipway";

/// An artifact on Slipway's artifact server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// File name.
    pub name: String,
    /// Lowercase hex sha256.
    pub sha256: String,
}

impl Artifact {
    /// Its URL under the boot server: `<base>/artifacts/<sha256>/<name>`.
    pub fn url(&self, base: &str) -> String {
        format!(
            "{}/artifacts/{}/{}",
            base.trim_end_matches('/'),
            self.sha256,
            self.name
        )
    }
}

/// Whether the cluster exists yet. Decided by the reconciler from what the servers report,
/// never from host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// No server runs a cluster: the bootstrap server initialises it (`cluster-init`).
    New,
    /// A cluster runs: every node, the bootstrap server included, joins it.
    Exists,
}

/// Everything a node's profile depends on beyond the inventory.
#[derive(Debug, Clone)]
pub struct ProfileInputs<'a> {
    /// The commit being applied.
    pub commit: &'a str,
    /// New cluster or existing.
    pub cluster_state: ClusterState,
    /// The FCOS release the node will run.
    pub os_version: &'a str,
    /// The K3s version the binary is.
    pub k3s_version: &'a str,
    /// The K3s binary.
    pub k3s_binary: &'a Artifact,
    /// The upstream K3s install script.
    pub k3s_install_script: &'a Artifact,
}

/// A rendered node configuration. The Ignition holds secrets: it prints as `(sensitive)`.
#[derive(Debug, Clone)]
pub struct RenderedNode {
    /// The final Ignition JSON (compact, deterministic).
    pub ignition: Secret,
    /// sha256 of the config without `applied.json` (which records this hash).
    pub config_hash: String,
    /// The layers in merge order. The node's own profile layer holds secrets.
    pub layers: Vec<Layer>,
}

/// The Butane variant version that produces Ignition spec `spec`.
pub fn butane_version_for(spec: &str) -> &'static str {
    match spec {
        "3.4.0" => "1.5.0",
        "3.5.0" => "1.6.0",
        _ => "1.4.0",
    }
}

fn file(path: &str, mode: u32, contents: &str) -> Value {
    json!({"path": path, "mode": mode, "overwrite": true, "contents": {"inline": contents}})
}

fn remote(path: &str, mode: u32, url: &str, sha256: &str) -> Value {
    json!({
        "path": path,
        "mode": mode,
        "overwrite": true,
        "contents": {"source": url, "verification": {"hash": format!("sha256-{sha256}")}}
    })
}

/// Generated Butane is emitted as JSON, which is valid YAML and an order of magnitude
/// cheaper to write than block YAML. [`to_human_yaml`] shows it to people.
fn butane_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A generated (JSON-form) Butane layer as block YAML, for `slipway render --butane`.
pub fn to_human_yaml(butane: &str) -> String {
    serde_json::from_str::<Value>(butane)
        .ok()
        .and_then(|v| serde_yaml::to_string(&v).ok())
        .unwrap_or_else(|| butane.to_string())
}

/// A flat mapping as block YAML: one `key: value` line per scalar (JSON scalars are valid
/// YAML and quote everything that needs quoting), lists as `- item` lines.
fn flat_yaml(map: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    for (k, v) in map {
        match v {
            Value::Array(items) => {
                out.push_str(k);
                out.push_str(":\n");
                for item in items {
                    out.push_str("  - ");
                    out.push_str(&item.to_string());
                    out.push('\n');
                }
            }
            other => {
                out.push_str(k);
                out.push_str(": ");
                out.push_str(&other.to_string());
                out.push('\n');
            }
        }
    }
    out
}

/// The K3s configuration file of a node (server flags only on servers).
pub fn k3s_config(cluster: &Cluster, node: &Node, token: &str, state: ClusterState) -> String {
    let mut c = serde_json::Map::new();
    c.insert("token".into(), json!(token));
    c.insert("node-name".into(), json!(node.short_name()));
    if let Network::Static { address, .. } = &node.network {
        c.insert("node-ip".into(), json!(address.addr().to_string()));
    }
    if node.role == Role::Server {
        if node.bootstrap && state == ClusterState::New {
            c.insert("cluster-init".into(), json!(true));
        }
        c.insert(
            "write-kubeconfig-mode".into(),
            json!(cluster.k3s.write_kubeconfig_mode),
        );
        c.insert(
            "cluster-cidr".into(),
            json!(cluster.k3s.cluster_cidr.to_string()),
        );
        c.insert(
            "service-cidr".into(),
            json!(cluster.k3s.service_cidr.to_string()),
        );
        let disable: Vec<&str> = cluster
            .k3s
            .disable
            .iter()
            .filter_map(|d| match d {
                K3sComponent::Traefik => Some("traefik"),
                K3sComponent::Servicelb => Some("servicelb"),
                K3sComponent::LocalStorage => Some("local-storage"),
                K3sComponent::MetricsServer => Some("metrics-server"),
                K3sComponent::NetworkPolicy => None,
            })
            .collect();
        if !disable.is_empty() {
            c.insert("disable".into(), json!(disable));
        }
        if cluster.k3s.disable.contains(&K3sComponent::NetworkPolicy) {
            c.insert("disable-network-policy".into(), json!(true));
        }
        c.insert("tls-san".into(), json!([node.hostname, node.short_name()]));
    }
    if !node.labels.is_empty() {
        let labels: Vec<String> = node
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        c.insert("node-label".into(), json!(labels));
    }
    if !node.taints.is_empty() {
        c.insert("node-taint".into(), json!(node.taints));
    }
    c.insert("kubelet-arg".into(), json!(["cgroup-driver=systemd"]));
    flat_yaml(&c)
}

/// The API endpoints a node joins through: every endpoint but its own, in the listed order.
/// Empty for the bootstrap server of a new cluster.
pub fn join_endpoints(cluster: &Cluster, node: &Node, state: ClusterState) -> Vec<String> {
    if node.bootstrap && state == ClusterState::New {
        return Vec::new();
    }
    cluster
        .k3s
        .api_endpoints
        .iter()
        .filter(|e| {
            // Compare hosts by short name: an FQDN and its short form are the same machine.
            let host = url::Url::parse(e)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            slipway_model::inventory::short_name(&host) != node.short_name()
                && node.network.address().is_none_or(|a| host != a.to_string())
        })
        .cloned()
        .collect()
}

const INSTALL_WRAPPER: &str = r#"#!/bin/sh
# Slipway: install K3s from the binary Ignition placed, then start it.
# Joining nodes try each API endpoint in /etc/slipway/k3s-servers until one answers.
set -eu
role="$1"
mkdir -p /etc/rancher/k3s/config.yaml.d
if [ -s /etc/slipway/k3s-servers ]; then
  server=""
  tries=0
  while [ -z "$server" ] && [ "$tries" -lt 60 ]; do
    while read -r url; do
      [ -n "$url" ] || continue
      if curl -sk --max-time 5 -o /dev/null "$url/ping"; then server="$url"; break; fi
    done < /etc/slipway/k3s-servers
    [ -n "$server" ] || { tries=$((tries + 1)); sleep 10; }
  done
  [ -n "$server" ] || { echo "slipway: no K3s API endpoint answered" >&2; exit 1; }
  printf 'server: "%s"\n' "$server" > /etc/rancher/k3s/config.yaml.d/10-slipway-server.yaml
fi
export INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_SELINUX_RPM=true INSTALL_K3S_SELINUX_WARN=true
export INSTALL_K3S_EXEC="$role"
exec /usr/local/bin/k3s-install.sh
"#;

fn selinux_unit() -> String {
    "[Unit]
Description=Slipway: give the K3s files Ignition wrote their SELinux labels
DefaultDependencies=no
After=local-fs.target
Before=k3s-install.service
ConditionPathExists=/usr/local/bin/k3s

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/restorecon -v /usr/local/bin/k3s /usr/local/bin/k3s-install.sh /usr/local/bin/slipway-k3s-install

[Install]
WantedBy=multi-user.target
"
    .to_string()
}

fn install_unit(role: Role) -> String {
    format!(
        "[Unit]
Description=Slipway: install and start K3s ({role}) once per installation
Wants=network-online.target
After=network-online.target slipway-selinux-relabel.service
Requires=slipway-selinux-relabel.service
ConditionPathExists=!{K3S_STAMP}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/bin/slipway-k3s-install {role}
ExecStartPost=/usr/bin/touch {K3S_STAMP}

[Install]
WantedBy=multi-user.target
"
    )
}

fn nm_keyfile(node: &Node) -> Option<String> {
    let Network::Static {
        address,
        gateway,
        dns,
        interface,
    } = &node.network
    else {
        return None;
    };
    let mut s = String::from("[connection]\nid=slipway\ntype=ethernet\nautoconnect-priority=100\n");
    match interface {
        Some(i) => s.push_str(&format!("interface-name={i}\n")),
        None => {
            if let Some(mac) = node.macs.first() {
                s.push_str(&format!(
                    "\n[ethernet]\nmac-address={}\n",
                    mac.to_string().to_uppercase()
                ));
            }
        }
    }
    s.push_str(&format!(
        "\n[ipv4]\nmethod=manual\naddress1={address},{gateway}\nmay-fail=false\n"
    ));
    if !dns.is_empty() {
        let list: Vec<String> = dns.iter().map(|d| format!("{d};")).collect();
        s.push_str(&format!("dns={}\n", list.concat()));
    }
    s.push_str("\n[ipv6]\nmethod=disabled\n");
    Some(s)
}

fn zincati_config(cluster: &Cluster) -> String {
    match cluster.zincati {
        ZincatiMode::Disabled => "# Slipway rolls OS upgrades; Zincati stays off.\n[updates]\nenabled = false\n".into(),
        ZincatiMode::Fleetlock => format!(
            "# Zincati updates, asking Slipway's FleetLock endpoint before each reboot.\n[updates]\nstrategy = \"fleet_lock\"\n\n[updates.fleet_lock]\nbase_url = \"{}/\"\n",
            cluster.boot_url
        ),
    }
}

/// The part of the profile every node of a role shares (cached across nodes): the core
/// user, the disk layout that keeps `/var`, the K3s binaries from the artifact server, the
/// installer units, Zincati, cluster-wide kernel arguments.
pub fn shared_profile_butane(inv: &Inventory, role: Role, inputs: &ProfileInputs<'_>) -> String {
    let cluster = &inv.cluster;
    let base = &cluster.boot_url;
    let files = vec![
        remote(
            "/usr/local/bin/k3s",
            0o755,
            &inputs.k3s_binary.url(base),
            &inputs.k3s_binary.sha256,
        ),
        remote(
            "/usr/local/bin/k3s-install.sh",
            0o755,
            &inputs.k3s_install_script.url(base),
            &inputs.k3s_install_script.sha256,
        ),
        file("/usr/local/bin/slipway-k3s-install", 0o755, INSTALL_WRAPPER),
        file(
            "/etc/zincati/config.d/90-slipway.toml",
            0o644,
            &zincati_config(cluster),
        ),
    ];
    let mut doc = json!({
        "variant": "fcos",
        "version": butane_version_for(&cluster.ignition_spec),
        "storage": {
            "disks": [{
                "device": "/dev/disk/by-id/coreos-boot-disk",
                "wipe_table": false,
                "partitions": [
                    {"number": 4, "label": "root", "size_mib": 8192, "resize": true},
                    {"label": "var", "size_mib": 0}
                ]
            }],
            "filesystems": [{
                "path": "/var",
                "device": "/dev/disk/by-partlabel/var",
                "format": "xfs",
                "wipe_filesystem": false,
                "with_mount_unit": true
            }],
            "directories": [{"path": SLIPWAY_VAR, "mode": 0o700}],
            "files": files
        },
        "systemd": {"units": [
            {"name": "slipway-selinux-relabel.service", "enabled": true, "contents": selinux_unit()},
            {"name": "k3s-install.service", "enabled": true, "contents": install_unit(role)}
        ]}
    });
    if !cluster.kernel_args.is_empty() {
        doc["kernel_arguments"] = json!({"should_exist": cluster.kernel_args});
    }
    butane_text(&doc)
}

/// The node's own part of the profile as data, rendered two ways: as Butane text (the layer
/// people see with `slipway render --butane`) and straight into the Ignition config that
/// translating that text gives ([`NodeProfile::config`]), which is what [`Renderer`] merges.
/// Holds secrets (the K3s token, the host key).
pub(crate) struct NodeProfile {
    /// The Butane version of the layer.
    pub(crate) version: &'static str,
    /// `(path, mode, inline contents)`, in order.
    pub(crate) files: Vec<(&'static str, u32, String)>,
    /// The core user's name.
    pub(crate) user: String,
    /// Its SSH keys.
    pub(crate) keys: Vec<String>,
    /// Its password hash.
    pub(crate) password_hash: Option<String>,
    /// The node's own kernel arguments.
    pub(crate) kernel_args: Vec<String>,
}

impl NodeProfile {
    pub(crate) fn new(
        inv: &Inventory,
        node: &Node,
        secrets: &Secrets,
        inputs: &ProfileInputs<'_>,
    ) -> Self {
        let cluster = &inv.cluster;
        let mut files = vec![
            ("/etc/hostname", 0o644, format!("{}\n", node.hostname)),
            (
                K3S_CONFIG,
                0o600,
                k3s_config(
                    cluster,
                    node,
                    secrets.k3s_token.expose(),
                    inputs.cluster_state,
                ),
            ),
        ];
        let endpoints = join_endpoints(cluster, node, inputs.cluster_state);
        if !endpoints.is_empty() {
            files.push((K3S_SERVERS, 0o644, format!("{}\n", endpoints.join("\n"))));
        }
        if let Some(keyfile) = nm_keyfile(node) {
            files.push((
                "/etc/NetworkManager/system-connections/slipway.nmconnection",
                0o600,
                keyfile,
            ));
        }
        if let Some(key) = secrets.host_keys.get(&node.name) {
            files.push((
                "/etc/ssh/ssh_host_ed25519_key",
                0o600,
                key.expose().to_string(),
            ));
            if let Some(public) = secrets.host_public_key(&node.name) {
                files.push((
                    "/etc/ssh/ssh_host_ed25519_key.pub",
                    0o644,
                    format!("{public}\n"),
                ));
            }
        }
        NodeProfile {
            version: butane_version_for(&cluster.ignition_spec),
            files,
            user: cluster.ssh_user.clone(),
            keys: cluster.ssh_authorized_keys.clone(),
            password_hash: secrets
                .core_password_hash
                .as_ref()
                .map(|h| h.expose().to_string()),
            kernel_args: node.kernel_args.clone(),
        }
    }

    /// The layer as (JSON-form) Butane.
    pub(crate) fn butane(&self) -> Secret {
        #[derive(Serialize)]
        struct Doc<'a> {
            variant: &'static str,
            version: &'static str,
            passwd: Passwd<'a>,
            storage: Storage<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kernel_arguments: Option<KernelArgs<'a>>,
        }
        #[derive(Serialize)]
        struct Passwd<'a> {
            users: [User<'a>; 1],
        }
        #[derive(Serialize)]
        struct User<'a> {
            name: &'a str,
            ssh_authorized_keys: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            password_hash: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Storage<'a> {
            files: Vec<InlineFile<'a>>,
        }
        #[derive(Serialize)]
        struct InlineFile<'a> {
            path: &'a str,
            mode: u32,
            overwrite: bool,
            contents: Inline<'a>,
        }
        #[derive(Serialize)]
        struct Inline<'a> {
            inline: &'a str,
        }
        #[derive(Serialize)]
        struct KernelArgs<'a> {
            should_exist: &'a [String],
        }
        let doc = Doc {
            variant: "fcos",
            version: self.version,
            passwd: Passwd {
                users: [User {
                    name: &self.user,
                    ssh_authorized_keys: &self.keys,
                    password_hash: self.password_hash.as_deref(),
                }],
            },
            storage: Storage {
                files: self
                    .files
                    .iter()
                    .map(|(path, mode, inline)| InlineFile {
                        path,
                        mode: *mode,
                        overwrite: true,
                        contents: Inline { inline },
                    })
                    .collect(),
            },
            kernel_arguments: (!self.kernel_args.is_empty()).then_some(KernelArgs {
                should_exist: &self.kernel_args,
            }),
        };
        Secret::new(serde_json::to_string(&doc).unwrap_or_default())
    }

    /// The Ignition config that translating [`NodeProfile::butane`] gives, built directly;
    /// `data_url` makes the data URL of inline contents (`make_data_url(.., None, true)`).
    /// `None` where the translator would report an error instead (a repeated kernel argument).
    pub(crate) fn config(
        &self,
        mut data_url: impl FnMut(&str) -> (String, Option<String>),
    ) -> Option<Config> {
        let spec = ButaneVersion::parse(self.version)?.ignition();
        for (i, a) in self.kernel_args.iter().enumerate() {
            if self.kernel_args[..i].contains(a) {
                return None;
            }
        }
        let mut config = Config::new(spec);
        config.kernel_arguments.should_exist = self.kernel_args.clone();
        config.passwd.users.push(ign::PasswdUser {
            name: self.user.clone(),
            ssh_authorized_keys: self.keys.clone(),
            password_hash: self.password_hash.clone(),
            ..Default::default()
        });
        config.storage.files = self
            .files
            .iter()
            .map(|(path, mode, contents)| {
                let (url, compression) = data_url(contents);
                ign::File {
                    overwrite: Some(true),
                    path: (*path).to_string(),
                    contents: ign::Resource {
                        compression,
                        source: Some(url),
                        ..Default::default()
                    },
                    mode: Some(i64::from(*mode)),
                    ..Default::default()
                }
            })
            .collect();
        Some(config)
    }
}

/// The part of the profile that is this node's own: host name, K3s configuration (with the
/// token), join endpoints, network keyfile, SSH host key, core user, node kernel arguments.
pub fn node_profile_butane(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
) -> Secret {
    NodeProfile::new(inv, node, secrets, inputs).butane()
}

/// What `applied.json` records.
pub fn applied_json(inputs: &ProfileInputs<'_>, config_hash: &str) -> String {
    let v = json!({
        "commit": inputs.commit,
        "config_hash": config_hash,
        "os_version": inputs.os_version,
        "k3s_version": inputs.k3s_version,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

fn translate_layer(
    name: &str,
    text: &str,
    files: &dyn FileSource,
    diags: &mut Vec<Diagnostic>,
) -> Option<Config> {
    match butane::translate(name, text, &TranslateOptions::default(), files) {
        Ok(t) => Some(t.config),
        Err(ds) => {
            diags.extend(ds);
            None
        }
    }
}

/// One Butane layer of a node, in merge order.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The overlay's path, or a `(generated …)` name.
    pub name: String,
    /// Butane text. Generated layers are JSON-form Butane; the node's own holds secrets.
    pub text: Secret,
    /// Shared by other nodes (no secrets): its translation can be cached.
    pub shared: bool,
}

/// The node's Butane layers, in merge order: overlays for all nodes, for its role, for
/// itself, then the generated profile (its shared part, then its own part).
pub fn layers(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
) -> Vec<Layer> {
    let overlay = |s: &slipway_model::inventory::Source, shared: bool| Layer {
        name: s.path.clone(),
        text: Secret::new(s.text.clone()),
        shared,
    };
    let mut out: Vec<Layer> = inv
        .overlays
        .all
        .iter()
        .chain(inv.overlays.for_role(node.role))
        .map(|s| overlay(s, true))
        .chain(node.overlays.iter().map(|s| overlay(s, false)))
        .collect();
    out.push(Layer {
        name: format!("(generated profile of {}s)", node.role),
        text: Secret::new(shared_profile_butane(inv, node.role, inputs)),
        shared: true,
    });
    out.push(Layer {
        name: format!("(generated profile of {})", node.name),
        text: node_profile_butane(inv, node, secrets, inputs),
        shared: false,
    });
    out
}

/// Render one node's final Ignition (see [`Renderer`] to render many).
pub fn render_node(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
    files: &dyn FileSource,
) -> Result<RenderedNode, Vec<Diagnostic>> {
    Renderer::new(inv, files).render(node, secrets, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_layer_is_json_butane_in_a_fixed_key_order() {
        let mut p = NodeProfile {
            version: "1.4.0",
            files: vec![("/etc/hostname", 0o644, "n1\n".into())],
            user: "core".into(),
            keys: vec!["ssh-ed25519 AAAA k".into()],
            password_hash: None,
            kernel_args: Vec::new(),
        };
        let want = json!({
            "variant": "fcos",
            "version": "1.4.0",
            "passwd": {"users": [{"name": "core", "ssh_authorized_keys": ["ssh-ed25519 AAAA k"]}]},
            "storage": {"files": [
                {"path": "/etc/hostname", "mode": 420, "overwrite": true, "contents": {"inline": "n1\n"}}
            ]}
        });
        assert_eq!(p.butane().expose(), want.to_string());
        p.password_hash = Some("$y$h".into());
        p.kernel_args = vec!["quiet".into()];
        let want = json!({
            "variant": "fcos",
            "version": "1.4.0",
            "passwd": {"users": [{"name": "core", "ssh_authorized_keys": ["ssh-ed25519 AAAA k"], "password_hash": "$y$h"}]},
            "storage": {"files": [
                {"path": "/etc/hostname", "mode": 420, "overwrite": true, "contents": {"inline": "n1\n"}}
            ]},
            "kernel_arguments": {"should_exist": ["quiet"]}
        });
        assert_eq!(p.butane().expose(), want.to_string());
    }
}
