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
    /// The layers in merge order: (source name, Butane text). The profile's holds secrets.
    pub layers: Vec<(String, Secret)>,
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

fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
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
    yaml(&Value::Object(c))
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

/// The node's generated Butane (everything except `applied.json`).
pub fn profile_butane(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
) -> Secret {
    let cluster = &inv.cluster;
    let base = &cluster.boot_url;
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
            {"name": "k3s-install.service", "enabled": true, "contents": install_unit(node.role)}
        ]}
    });
    let kargs: Vec<&String> = cluster
        .kernel_args
        .iter()
        .chain(&node.kernel_args)
        .collect();
    if !kargs.is_empty() {
        doc["kernel_arguments"] = json!({"should_exist": kargs});
    }
    Secret::new(yaml(&doc))
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
        Ok(t) => {
            diags.extend(t.warnings.into_iter().filter(|w| !w.is_error()));
            Some(t.config)
        }
        Err(ds) => {
            diags.extend(ds);
            None
        }
    }
}

/// The node's Butane layers, in merge order: overlays for all nodes, for its role, for
/// itself, then the generated profile.
pub fn layers(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
) -> Vec<(String, Secret)> {
    let mut out: Vec<(String, Secret)> = inv
        .overlays
        .all
        .iter()
        .chain(inv.overlays.for_role(node.role))
        .chain(&node.overlays)
        .map(|s| (s.path.clone(), Secret::new(s.text.clone())))
        .collect();
    out.push((
        format!("(generated profile of {})", node.name),
        profile_butane(inv, node, secrets, inputs),
    ));
    out
}

/// Render a node's final Ignition. Errors carry the overlay's file and position; a conflict
/// between layers names both.
pub fn render_node(
    inv: &Inventory,
    node: &Node,
    secrets: &Secrets,
    inputs: &ProfileInputs<'_>,
    files: &dyn FileSource,
) -> Result<RenderedNode, Vec<Diagnostic>> {
    let layers = layers(inv, node, secrets, inputs);
    let mut diags = Vec::new();
    let mut configs = Vec::new();
    for (name, text) in &layers {
        if let Some(c) = translate_layer(name, text.expose(), files, &mut diags) {
            configs.push((name.clone(), c));
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    let merged = merge::merge(&configs)?;
    let config_hash = hex::encode(Sha256::digest(merged.to_json(false).as_bytes()));
    let applied = json!({
        "variant": "fcos",
        "version": butane_version_for(&inv.cluster.ignition_spec),
        "storage": {"files": [file(APPLIED_JSON, 0o644, &applied_json(inputs, &config_hash))]}
    });
    let mut scratch = Vec::new();
    let applied = translate_layer("(applied.json)", &yaml(&applied), files, &mut scratch)
        .ok_or_else(|| {
            vec![Diagnostic::error(
                Location::file("(applied.json)"),
                "internal: applied.json did not translate",
            )]
        })?;
    let last = merge::merge(&[
        ("(merged)".to_string(), merged),
        ("(applied.json)".to_string(), applied),
    ])?;
    Ok(RenderedNode {
        ignition: Secret::new(last.to_json(false)),
        config_hash,
        layers,
    })
}
