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

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use slipway_model::check::Secrets;
use slipway_model::diag::{Diagnostic, Location};
use slipway_model::inventory::{
    Cluster, Inventory, K3sComponent, Network, Node, Role, ZincatiMode,
};
use slipway_model::secrets::Secret;

use crate::butane::{self, TranslateOptions};
use crate::files::FileSource;
use crate::ignition::Config;
use crate::merge;

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

/// The part of the profile that is this node's own: host name, K3s configuration (with the
/// token), join endpoints, network keyfile, SSH host key, core user, node kernel arguments.
pub fn node_profile_butane(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
) -> Secret {
    let cluster = &inv.cluster;
    let mut files = vec![
        file("/etc/hostname", 0o644, &format!("{}\n", node.hostname)),
        file(
            K3S_CONFIG,
            0o600,
            &k3s_config(
                cluster,
                node,
                secrets.k3s_token.expose(),
                inputs.cluster_state,
            ),
        ),
    ];
    let endpoints = join_endpoints(cluster, node, inputs.cluster_state);
    if !endpoints.is_empty() {
        files.push(file(
            K3S_SERVERS,
            0o644,
            &format!("{}\n", endpoints.join("\n")),
        ));
    }
    if let Some(keyfile) = nm_keyfile(node) {
        files.push(file(
            "/etc/NetworkManager/system-connections/slipway.nmconnection",
            0o600,
            &keyfile,
        ));
    }
    if let Some(key) = secrets.host_keys.get(&node.name) {
        files.push(file("/etc/ssh/ssh_host_ed25519_key", 0o600, key.expose()));
        if let Some(public) = secrets.host_public_key(&node.name) {
            files.push(file(
                "/etc/ssh/ssh_host_ed25519_key.pub",
                0o644,
                &format!("{public}\n"),
            ));
        }
    }
    let mut core =
        json!({"name": cluster.ssh_user, "ssh_authorized_keys": cluster.ssh_authorized_keys});
    if let Some(hash) = &secrets.core_password_hash {
        core["password_hash"] = json!(hash.expose());
    }
    let mut doc = json!({
        "variant": "fcos",
        "version": butane_version_for(&cluster.ignition_spec),
        "passwd": {"users": [core]},
        "storage": {"files": files}
    });
    if !node.kernel_args.is_empty() {
        doc["kernel_arguments"] = json!({"should_exist": node.kernel_args});
    }
    Secret::new(butane_text(&doc))
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

/// Renders node configurations, translating layers that nodes share only once.
pub struct Renderer<'a> {
    inv: &'a Inventory,
    files: &'a dyn FileSource,
    cache: std::cell::RefCell<std::collections::HashMap<(String, String), Config>>,
    /// Merged shared prefixes (overlays + shared profile), keyed by their layers' texts.
    merged: std::cell::RefCell<std::collections::HashMap<Vec<(String, String)>, Config>>,
}

impl<'a> Renderer<'a> {
    /// A renderer for one inventory; local overlay files come from `files`.
    pub fn new(inv: &'a Inventory, files: &'a dyn FileSource) -> Self {
        Self {
            inv,
            files,
            cache: std::cell::RefCell::default(),
            merged: std::cell::RefCell::default(),
        }
    }

    fn translate(&self, layer: &Layer, diags: &mut Vec<Diagnostic>) -> Option<Config> {
        if !layer.shared {
            return translate_layer(&layer.name, layer.text.expose(), self.files, diags);
        }
        let key = (layer.name.clone(), layer.text.expose().to_string());
        if let Some(c) = self.cache.borrow().get(&key) {
            return Some(c.clone());
        }
        let c = translate_layer(&layer.name, layer.text.expose(), self.files, diags)?;
        self.cache.borrow_mut().insert(key, c.clone());
        Some(c)
    }

    /// Render a node's final Ignition. Errors carry the overlay's file and position; a
    /// conflict between layers names both.
    ///
    /// The config hash of the bootstrap server is always that of its *joining* configuration:
    /// `cluster-init` is a one-time act of a new cluster, and must not make Slipway reinstall
    /// the server once the cluster exists.
    pub fn render(
        &self,
        node: &Node,
        secrets: &Secrets,
        inputs: &ProfileInputs<'_>,
    ) -> Result<RenderedNode, Vec<Diagnostic>> {
        let (merged, layers) = self.merged(node, secrets, inputs)?;
        // Serialize once: the hash is over the config without applied.json, which is then
        // appended to the same JSON value.
        let mut value = merged.to_value();
        let config_hash = if node.bootstrap && inputs.cluster_state == ClusterState::New {
            let joining = ProfileInputs {
                cluster_state: ClusterState::Exists,
                ..inputs.clone()
            };
            let (alt, _) = self.merged(node, secrets, &joining)?;
            hex::encode(Sha256::digest(alt.to_json(false).as_bytes()))
        } else {
            hex::encode(Sha256::digest(
                crate::json::to_go_json(&value, false).as_bytes(),
            ))
        };
        add_applied_json(&mut value, &applied_json(inputs, &config_hash))?;
        Ok(RenderedNode {
            ignition: Secret::new(crate::json::to_go_json(&value, false)),
            config_hash,
            layers,
        })
    }

    /// The merged configuration of a node without `applied.json`, and its layers.
    fn merged(
        &self,
        node: &Node,
        secrets: &Secrets,
        inputs: &ProfileInputs<'_>,
    ) -> Result<(Config, Vec<Layer>), Vec<Diagnostic>> {
        let layers = layers(self.inv, node, secrets, inputs);
        let mut diags = Vec::new();
        // Layers before the node's own are, for nodes without overlays of their own, the same
        // for every node of a role: merge them once. Ignition's merge is associative, so the
        // result is the same; a conflict is re-derived layer by layer to name both sources.
        let shared_prefix = layers.iter().take_while(|l| l.shared).count();
        let key: Vec<(String, String)> = layers[..shared_prefix]
            .iter()
            .map(|l| (l.name.clone(), l.text.expose().to_string()))
            .collect();
        let cached = self.merged.borrow().get(&key).cloned();
        let mut configs = Vec::with_capacity(layers.len());
        let rest = match cached {
            Some(base) => {
                configs.push(("(shared layers)".to_string(), base));
                &layers[shared_prefix..]
            }
            None => &layers[..],
        };
        for layer in rest {
            if let Some(c) = self.translate(layer, &mut diags) {
                configs.push((layer.name.clone(), c));
            }
        }
        if diags.iter().any(Diagnostic::is_error) {
            return Err(diags);
        }
        if rest.len() == layers.len() && shared_prefix > 0 {
            if let Ok(base) = merge::merge(&configs[..shared_prefix]) {
                self.merged.borrow_mut().insert(key, base);
            }
        }
        let merged = match merge::merge(&configs) {
            Ok(m) => m,
            Err(_) if rest.len() < layers.len() => {
                // Name the real layers in the conflict: merge them one by one.
                let mut all = Vec::with_capacity(layers.len());
                for layer in &layers {
                    if let Some(c) = self.translate(layer, &mut diags) {
                        all.push((layer.name.clone(), c));
                    }
                }
                merge::merge(&all)?
            }
            Err(e) => return Err(e),
        };
        Ok((merged, layers))
    }
}

/// Append `/etc/slipway/applied.json` to a config's JSON value as Butane would write it
/// (data URL, mode 0644, the field order of Ignition's `File`).
fn add_applied_json(config: &mut Value, contents: &str) -> Result<(), Vec<Diagnostic>> {
    let err = |m: &str| {
        vec![Diagnostic::error(
            Location::file("(generated profile)"),
            m.to_string(),
        )]
    };
    let url = butane::make_data_url(contents.as_bytes(), None, true);
    let file: crate::ignition::File = serde_json::from_value(json!({
        "overwrite": true,
        "path": APPLIED_JSON,
        "contents": {"compression": url.compression.unwrap_or_default(), "source": url.url},
        "mode": 0o644
    }))
    .map_err(|e| err(&format!("internal: applied.json: {e}")))?;
    let file =
        serde_json::to_value(&file).map_err(|e| err(&format!("internal: applied.json: {e}")))?;
    let Some(root) = config.as_object_mut() else {
        return Err(err("internal: the merged config is not a JSON object"));
    };
    let storage = root.entry("storage").or_insert_with(|| json!({}));
    let Some(storage) = storage.as_object_mut() else {
        return Err(err("internal: storage is not a JSON object"));
    };
    let files = storage.entry("files").or_insert_with(|| json!([]));
    let Some(files) = files.as_array_mut() else {
        return Err(err("internal: storage.files is not a list"));
    };
    if files.iter().any(|f| f["path"] == APPLIED_JSON) {
        return Err(err(
            "an overlay writes /etc/slipway/applied.json, which Slipway owns: remove it from the overlay",
        ));
    }
    files.push(file);
    Ok(())
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
