//! Rendering many nodes: [`Renderer`].
//!
//! The general path translates every Butane layer of a node and merges them with
//! [`merge::merge`]. Most of that work is the same for every node of a role, so the renderer
//! keeps, per role, the shared layers and their merged config, and for a node without
//! overlays of its own:
//! - builds the node's own profile layer straight into its Ignition config
//!   ([`NodeProfile::config`], what translating its Butane text gives),
//! - merges it onto the role's config on the typed structs, as [`merge::merge_node_layer`]
//!   does, but only the parts it touches (files, users, kernel arguments),
//! - serializes only those: the role's config is kept as JSON pieces ([`BaseJson`]) and the
//!   node's parts are put between them; the config hash is over that JSON, and
//!   `applied.json` is spliced into it at the end of `storage.files`, where appending it to
//!   the config puts it,
//! - reuses data URLs (gzip included) of contents that repeat across nodes (the join
//!   endpoints file of every agent, say).
//!
//! Each shortcut gives the same bytes as the general path (checked by `tests/render_paths.rs`
//! on a varied inventory); anything outside what a shortcut covers (a node's own overlays, a
//! conflict, an error, an old spec version) takes the general path, which also names the
//! layers in errors.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use slipway_model::check::Secrets;
use slipway_model::diag::{Diagnostic, Location};
use slipway_model::inventory::{Inventory, Node, Role};
use slipway_model::secrets::Secret;

use super::{
    applied_json, layers, shared_profile_butane, translate_layer, Artifact, ClusterState, Layer,
    NodeProfile, ProfileInputs, RenderedNode, APPLIED_JSON,
};
use crate::butane;
use crate::files::FileSource;
use crate::ignition::{self as ign, Config, SpecVersion};
use crate::json::to_go_json;
use crate::merge;

/// What every node of a role shares, for one pair of K3s artifacts.
struct RoleShared {
    role: Role,
    k3s_binary: Artifact,
    k3s_install_script: Artifact,
    /// Overlays for all nodes and for the role, then the role's generated profile.
    layers: Vec<Layer>,
    /// Those layers translated and merged; `None` when that failed (the general path then
    /// reports why).
    merged: Option<Config>,
    /// `merged` serialized, in pieces around what a node's profile layer changes.
    json: Option<BaseJson>,
}

/// A role's merged config as compact Go JSON, in the pieces a node's profile layer leaves
/// alone: `{"ignition":IGNITION[,"kernelArguments":…][,"passwd":…],"storage":{BEFORE,
/// "files":[FILES],AFTER}[,"systemd":SYSTEMD]}`, in the field order of the typed config.
struct BaseJson {
    version: SpecVersion,
    ignition: String,
    /// `directories` and `disks` members (no braces; empty when both are).
    before_files: String,
    /// The `files` array's elements (no brackets).
    files: String,
    /// `filesystems`, `links`, `luks` and `raid` members.
    after_files: String,
    systemd: Option<String>,
}

impl BaseJson {
    fn new(base: &Config) -> Option<Self> {
        let members = |storage: &ign::Storage| -> Option<String> {
            let json = to_go_json(storage, false);
            Some(json.strip_prefix('{')?.strip_suffix('}')?.to_string())
        };
        let s = &base.storage;
        let before = ign::Storage {
            directories: s.directories.clone(),
            disks: s.disks.clone(),
            ..Default::default()
        };
        let after = ign::Storage {
            filesystems: s.filesystems.clone(),
            links: s.links.clone(),
            luks: s.luks.clone(),
            raid: s.raid.clone(),
            ..Default::default()
        };
        let files = to_go_json(&s.files, false);
        Some(BaseJson {
            version: base.spec_version()?,
            ignition: to_go_json(&base.ignition, false),
            before_files: members(&before)?,
            files: files.strip_prefix('[')?.strip_suffix(']')?.to_string(),
            after_files: members(&after)?,
            systemd: (base.systemd != ign::Systemd::default())
                .then(|| to_go_json(&base.systemd, false)),
        })
    }
}

/// Data URLs of contents seen more than once. A content's first sighting only records its
/// hash, so contents unique to a node (its host key, its K3s token file) are never kept.
#[derive(Default)]
struct DataUrls {
    /// Hashes of contents seen once.
    seen: HashSet<u64>,
    /// Content hash → the content, its URL and compression.
    urls: HashMap<u64, (String, String, Option<String>)>,
}

impl DataUrls {
    fn get(&mut self, contents: &str) -> (String, Option<String>) {
        let mut h = DefaultHasher::new();
        contents.hash(&mut h);
        let key = h.finish();
        match self.urls.get(&key) {
            Some((c, url, compression)) if c == contents => {
                return (url.clone(), compression.clone());
            }
            Some(_) => {} // a hash collision: not cached
            None if !self.seen.insert(key) => {
                let d = butane::make_data_url(contents.as_bytes(), None, true);
                self.urls.insert(
                    key,
                    (contents.to_string(), d.url.clone(), d.compression.clone()),
                );
                return (d.url, d.compression);
            }
            None => {}
        }
        let d = butane::make_data_url(contents.as_bytes(), None, true);
        (d.url, d.compression)
    }
}

/// Renders node configurations, translating and merging what nodes share only once.
pub struct Renderer<'a> {
    inv: &'a Inventory,
    files: &'a dyn FileSource,
    cache: RefCell<HashMap<(String, String), Config>>,
    /// Merged shared prefixes (overlays + shared profile), keyed by their layers' texts.
    merged: RefCell<HashMap<Vec<(String, String)>, Config>>,
    roles: RefCell<Vec<Rc<RoleShared>>>,
    urls: RefCell<DataUrls>,
    /// Length of the last Ignition rendered, to size the next one's buffer.
    output_len: Cell<usize>,
}

impl<'a> Renderer<'a> {
    /// A renderer for one inventory; local overlay files come from `files`.
    pub fn new(inv: &'a Inventory, files: &'a dyn FileSource) -> Self {
        Self {
            inv,
            files,
            cache: RefCell::default(),
            merged: RefCell::default(),
            roles: RefCell::default(),
            urls: RefCell::default(),
            output_len: Cell::new(0),
        }
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
        match self.render_fast(node, secrets, inputs) {
            Some(r) => r,
            None => self.render_layered(node, secrets, inputs),
        }
    }

    /// The general path: every layer translated (shared ones cached) and merged as JSON.
    pub(crate) fn render_layered(
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
            hex::encode(Sha256::digest(to_go_json(&value, false).as_bytes()))
        };
        add_applied_json(&mut value, &applied_json(inputs, &config_hash))?;
        Ok(RenderedNode {
            ignition: Secret::new(to_go_json(&value, false)),
            config_hash,
            layers,
        })
    }

    /// The shortcut (see the module docs), or `None` where it does not apply.
    fn render_fast(
        &self,
        node: &Node,
        secrets: &Secrets,
        inputs: &ProfileInputs<'_>,
    ) -> Option<Result<RenderedNode, Vec<Diagnostic>>> {
        if !node.overlays.is_empty() {
            return None;
        }
        let shared = self.role_shared(node.role, inputs);
        let profile = NodeProfile::new(self.inv, node, secrets, inputs);
        let (mut json, writes_applied) = self.node_json(&shared, &profile)?;
        let config_hash = if node.bootstrap && inputs.cluster_state == ClusterState::New {
            let joining = ProfileInputs {
                cluster_state: ClusterState::Exists,
                ..inputs.clone()
            };
            let profile = NodeProfile::new(self.inv, node, secrets, &joining);
            let (alt, _) = self.node_json(&shared, &profile)?;
            hex::encode(Sha256::digest(alt.as_bytes()))
        } else {
            hex::encode(Sha256::digest(json.as_bytes()))
        };
        if writes_applied {
            return Some(Err(overlay_writes_applied_json()));
        }
        let applied = applied_file(&applied_json(inputs, &config_hash));
        let end = files_array_end(&json)?;
        let mut applied = to_go_json(&applied, false);
        applied.insert(0, ',');
        json.insert_str(end, &applied);
        self.output_len.set(json.len());
        let mut layers = shared.layers.clone();
        layers.push(Layer {
            name: format!("(generated profile of {})", node.name),
            text: profile.butane(),
            shared: false,
        });
        Some(Ok(RenderedNode {
            ignition: Secret::new(json),
            config_hash,
            layers,
        }))
    }

    /// The compact JSON of the node's profile layer merged onto its role's config (what
    /// serializing [`merge::merge_node_layer`]'s result gives), and whether its files include
    /// `applied.json`. `None` where the shortcut does not apply: an old spec version (whose
    /// JSON differs from its typed form), a newer one in the profile than in the role's
    /// layers, a conflict.
    fn node_json(&self, shared: &RoleShared, profile: &NodeProfile) -> Option<(String, bool)> {
        let (base, pieces) = (shared.merged.as_ref()?, shared.json.as_ref()?);
        let layer = profile.config(|c| self.urls.borrow_mut().get(c))?;
        let version = merge::node_layer_version(base, &layer)?;
        if version != pieces.version || version < SpecVersion::V3_3 {
            return None;
        }
        let mut kernel_arguments = base.kernel_arguments.clone();
        merge::merge_kernel_args(&mut kernel_arguments, &layer.kernel_arguments);
        let mut passwd = base.passwd.clone();
        merge::merge_users(&mut passwd.users, &layer.passwd.users);
        let child_files = &layer.storage.files;
        let overlap = child_files
            .iter()
            .any(|c| base.storage.files.iter().any(|b| b.path == c.path));
        let writes_applied = base
            .storage
            .files
            .iter()
            .chain(child_files)
            .any(|f| f.path == APPLIED_JSON);

        // Room for applied.json too, so splicing it in does not move the (secret) bytes.
        let mut out = String::with_capacity(self.output_len.get() + 512);
        out.push_str("{\"ignition\":");
        out.push_str(&pieces.ignition);
        if kernel_arguments != ign::KernelArguments::default() {
            out.push_str(",\"kernelArguments\":");
            out.push_str(&to_go_json(&kernel_arguments, false));
        }
        if passwd != ign::Passwd::default() {
            out.push_str(",\"passwd\":");
            out.push_str(&to_go_json(&passwd, false));
        }
        let files = if overlap {
            let mut files = base.storage.files.clone();
            merge::merge_files(&mut files, child_files);
            let json = to_go_json(&files, false);
            json.strip_prefix('[')?.strip_suffix(']')?.to_string()
        } else {
            let json = to_go_json(child_files, false);
            let child = json.strip_prefix('[')?.strip_suffix(']')?;
            [pieces.files.as_str(), child]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(",")
        };
        out.push_str(",\"storage\":{");
        let mut first = true;
        for (key, members) in [
            ("", pieces.before_files.as_str()),
            ("\"files\":", files.as_str()),
            ("", pieces.after_files.as_str()),
        ] {
            if members.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            if key.is_empty() {
                out.push_str(members);
            } else {
                out.push_str(key);
                out.push('[');
                out.push_str(members);
                out.push(']');
            }
        }
        out.push('}');
        if let Some(systemd) = &pieces.systemd {
            out.push_str(",\"systemd\":");
            out.push_str(systemd);
        }
        out.push('}');
        // The layer always has files, so storage is never empty (an empty one is omitted).
        if files.is_empty() {
            return None;
        }
        Some((out, writes_applied))
    }

    /// The shared layers of a role and their merged config, computed once per role and pair
    /// of K3s artifacts.
    fn role_shared(&self, role: Role, inputs: &ProfileInputs<'_>) -> Rc<RoleShared> {
        let found = self
            .roles
            .borrow()
            .iter()
            .find(|r| {
                r.role == role
                    && r.k3s_binary == *inputs.k3s_binary
                    && r.k3s_install_script == *inputs.k3s_install_script
            })
            .cloned();
        if let Some(r) = found {
            return r;
        }
        let overlay = |s: &slipway_model::inventory::Source| Layer {
            name: s.path.clone(),
            text: Secret::new(s.text.clone()),
            shared: true,
        };
        let mut layers: Vec<Layer> = self
            .inv
            .overlays
            .all
            .iter()
            .chain(self.inv.overlays.for_role(role))
            .map(overlay)
            .collect();
        layers.push(Layer {
            name: format!("(generated profile of {role}s)"),
            text: Secret::new(shared_profile_butane(self.inv, role, inputs)),
            shared: true,
        });
        let mut diags = Vec::new();
        let configs: Vec<(String, Config)> = layers
            .iter()
            .filter_map(|l| self.translate(l, &mut diags).map(|c| (l.name.clone(), c)))
            .collect();
        let merged = if diags.iter().any(Diagnostic::is_error) {
            None
        } else {
            merge::merge(&configs).ok()
        };
        let json = merged.as_ref().and_then(BaseJson::new);
        let r = Rc::new(RoleShared {
            role,
            k3s_binary: inputs.k3s_binary.clone(),
            k3s_install_script: inputs.k3s_install_script.clone(),
            layers,
            merged,
            json,
        });
        self.roles.borrow_mut().push(r.clone());
        r
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

fn overlay_writes_applied_json() -> Vec<Diagnostic> {
    vec![Diagnostic::error(
        Location::file("(generated profile)"),
        "an overlay writes /etc/slipway/applied.json, which Slipway owns: remove it from the overlay",
    )]
}

/// `/etc/slipway/applied.json` as Butane would write it (data URL, mode 0644).
fn applied_file(contents: &str) -> ign::File {
    let url = butane::make_data_url(contents.as_bytes(), None, true);
    ign::File {
        overwrite: Some(true),
        path: APPLIED_JSON.to_string(),
        contents: ign::Resource {
            compression: Some(url.compression.unwrap_or_default()),
            source: Some(url.url),
            ..Default::default()
        },
        mode: Some(0o644),
        ..Default::default()
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
    let file = serde_json::to_value(applied_file(contents))
        .map_err(|e| err(&format!("internal: applied.json: {e}")))?;
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
        return Err(overlay_writes_applied_json());
    }
    files.push(file);
    Ok(())
}

/// The byte offset of the `]` closing `storage.files` in a config's compact JSON, `None` when
/// it has no files. `"files":[` occurs nowhere else: no other Ignition object has a `files`
/// key, and inside strings every `"` is escaped.
fn files_array_end(json: &str) -> Option<usize> {
    const KEY: &str = "\"files\":[";
    let start = json.find(KEY)? + KEY.len();
    let bytes = json.as_bytes();
    let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::files::NoFiles;
    use slipway_model::repo::RepoFiles;

    fn inventory() -> (Inventory, Secrets) {
        let mut f = RepoFiles::new();
        f.insert(
            "cluster.yaml",
            "name: t\nfcos: {stream: stable}\nk3s:\n  version: v1.30.4+k3s1\n  cluster_cidr: 10.42.0.0/16\n  service_cidr: 10.43.0.0/16\n  api_endpoints: [https://s0.t.example:6443]\nboot_server: {url: \"http://127.0.0.1:9\"}\nssh:\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY t]\ninstall: {disk: /dev/vda}\n",
        );
        f.insert(
            "butane/common.bu",
            "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        inline: hi\n",
        );
        // Touches the profile: its host name file, its user, its kernel arguments.
        f.insert(
            "butane/server/touch.bu",
            "variant: fcos\nversion: 1.4.0\nkernel_arguments:\n  should_not_exist: [quiet]\npasswd:\n  users:\n    - name: core\n      groups: [wheel]\nstorage:\n  directories:\n    - path: /var/d\n  links:\n    - path: /etc/l\n      target: /etc/motd\n  files:\n    - path: /etc/hostname\n      mode: 0600\n      user: {name: root}\n      contents:\n        inline: x\n",
        );
        f.insert(
            "nodes/s0.yaml",
            "hostname: s0.t.example\nrole: server\nbootstrap: true\nmac_address: \"52:54:00:00:00:01\"\nnetwork: {dhcp: true}\nkernel_args: [quiet]\n",
        );
        f.insert(
            "nodes/a1.yaml",
            "hostname: a1.t.example\nrole: agent\nmac_address: \"52:54:00:00:00:02\"\nnetwork:\n  address: 10.0.0.2/24\n  gateway: 10.0.0.1\n",
        );
        let (inv, d) = slipway_model::inventory::load(&f);
        let inv = inv.unwrap_or_else(|| panic!("{d}"));
        let secrets = Secrets {
            k3s_token: Secret::new("token"),
            core_password_hash: None,
            host_keys: Default::default(),
        };
        (inv, secrets)
    }

    #[test]
    fn the_shortcut_is_taken_and_gives_the_bytes_of_the_general_path() {
        let (inv, secrets) = inventory();
        let a = Artifact {
            name: "k3s".into(),
            sha256: "ab".repeat(32),
        };
        for state in [ClusterState::New, ClusterState::Exists] {
            let inputs = ProfileInputs {
                commit: "c0ffee",
                cluster_state: state,
                os_version: "40",
                k3s_version: "v1.30.4+k3s1",
                k3s_binary: &a,
                k3s_install_script: &a,
            };
            let r = Renderer::new(&inv, &NoFiles);
            for node in &inv.nodes {
                let fast = r.render_fast(node, &secrets, &inputs).unwrap().unwrap();
                let general = r.render_layered(node, &secrets, &inputs).unwrap();
                assert_eq!(fast.ignition, general.ignition, "{}", node.name);
                assert_eq!(fast.config_hash, general.config_hash);
                let texts = |l: &[Layer]| -> Vec<(String, String, bool)> {
                    l.iter()
                        .map(|l| (l.name.clone(), l.text.expose().to_string(), l.shared))
                        .collect()
                };
                assert_eq!(texts(&fast.layers), texts(&general.layers));
            }
        }
    }

    #[test]
    fn the_files_array_ends_where_its_brackets_balance() {
        let json = r#"{"passwd":{"users":[{"name":"files\":["}]},"storage":{"files":[{"path":"/a]","contents":{"source":"data:,%5D\\"}},{"path":"/b"}],"links":[{"path":"/c"}]}}"#;
        let end = files_array_end(json).unwrap_or(0);
        assert_eq!(&json[end..end + 11], r#"],"links":["#);
        assert_eq!(files_array_end(r#"{"storage":{"links":[]}}"#), None);
    }
}
