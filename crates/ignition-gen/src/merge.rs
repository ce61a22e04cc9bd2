//! Ignition config merging, with the semantics of Ignition's `config/merge`:
//!
//! - structs merge field by field; a value set in the child replaces the parent's;
//! - keyed lists merge entries with the same key and append the child's new entries after
//!   the parent's (files, directories and links by path; units and drop-ins by name; users
//!   and groups by name; disks and filesystems by device; partitions by number, else label;
//!   RAID and LUKS by name; config and CA references by source; HTTP headers and Tang servers
//!   by name/URL; lists of strings by value);
//! - `append` lists are concatenated; a child HTTP header without a value removes the parent's;
//! - files, directories and links share one key space, as do `shouldExist` and
//!   `shouldNotExist` kernel arguments: a key that moves to the other list leaves the first.
//!
//! Ignition silently lets a later config turn a file into a directory or link; for Slipway's
//! layers that is almost always a mistake, so [`merge`] reports it, naming both layers.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};
use slipway_model::diag::{Diagnostic, Location};

use crate::ignition::{
    Config, File, Ignition, IgnitionConfig, KernelArguments, NodeOwner, Passwd, PasswdUser, Proxy,
    Resource, Security, SpecVersion, Storage, Systemd, Timeouts, Verification,
};

/// The name of one merge layer (e.g. `overlays/cluster.bu`, `node node-01`).
pub type SourceName = String;

/// Merge `layers` in order (later wins). The result has the highest spec version among them.
pub fn merge(layers: &[(SourceName, Config)]) -> Result<Config, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    // path -> (kind, layer) of its first definition
    let mut owners: HashMap<String, (&'static str, &str)> = HashMap::new();
    let mut version = None::<SpecVersion>;
    for (name, cfg) in layers {
        match cfg.spec_version() {
            Some(v) => version = version.max(Some(v)),
            None => diags.push(Diagnostic::error(
                Location::file(name.as_str()),
                format!("unsupported Ignition version {:?}", cfg.ignition.version),
            )),
        }
        let nodes = cfg
            .storage
            .files
            .iter()
            .map(|f| (&f.path, "file"))
            .chain(
                cfg.storage
                    .directories
                    .iter()
                    .map(|d| (&d.path, "directory")),
            )
            .chain(cfg.storage.links.iter().map(|l| (&l.path, "link")));
        for (path, kind) in nodes {
            match owners.get(path.as_str()) {
                Some((k, first)) if *k != kind => diags.push(
                    Diagnostic::error(
                        Location::file(name.as_str()),
                        format!("{path} is a {k} in {first} but a {kind} in {name}"),
                    )
                    .with_hint(
                        "a path must keep one kind across layers; rename or remove one of them",
                    ),
                ),
                Some(_) => {}
                None => {
                    owners.insert(path.clone(), (kind, name.as_str()));
                }
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut acc: Option<Value> = None;
    for (_, cfg) in layers {
        let v = serde_json::to_value(cfg).unwrap_or(Value::Null);
        acc = Some(match acc {
            None => v,
            Some(parent) => merge_values(parent, v),
        });
    }
    let mut out: Config = match acc {
        None => return Ok(Config::new(SpecVersion::V3_5)),
        Some(v) => serde_json::from_value(v).map_err(|e| {
            vec![Diagnostic::error(
                Location::file("merge"),
                format!("merged config is invalid: {e}"),
            )]
        })?,
    };
    if let Some(v) = version {
        out.ignition.version = v.as_str().to_string();
    }
    Ok(out)
}

/// Merge one `child` layer over `base` directly on the typed config, for a child that sets
/// nothing but `storage.files`, `passwd.users` and `kernelArguments` (a generated node
/// profile). The result is exactly what [`merge`] gives for `[base, child]`, without the
/// trip through JSON values.
///
/// `None` when the child sets anything else, when either version is unknown, or when one of
/// the child's files is a directory or a link in `base` (a conflict: call [`merge`], which
/// reports it with both layers). `base` must be a merge result (no path with two kinds).
pub fn merge_node_layer(base: &Config, child: &Config) -> Option<Config> {
    let version = node_layer_version(base, child)?;
    let mut out = base.clone();
    out.ignition.version = version.as_str().to_string();
    merge_kernel_args(&mut out.kernel_arguments, &child.kernel_arguments);
    merge_users(&mut out.passwd.users, &child.passwd.users);
    merge_files(&mut out.storage.files, &child.storage.files);
    Some(out)
}

/// The version of [`merge_node_layer`]'s result, or `None` where it declines.
pub(crate) fn node_layer_version(base: &Config, child: &Config) -> Option<SpecVersion> {
    if !only_files_users_kernel_args(child) {
        return None;
    }
    let version = base.spec_version()?.max(child.spec_version()?);
    let dirs_and_links = base
        .storage
        .directories
        .iter()
        .map(|d| &d.path)
        .chain(base.storage.links.iter().map(|l| &l.path));
    for path in dirs_and_links {
        if child.storage.files.iter().any(|f| &f.path == path) {
            return None;
        }
    }
    Some(version)
}

/// Users merged by name, as [`merge`] merges `passwd.users`.
pub(crate) fn merge_users(parent: &mut Vec<PasswdUser>, child: &[PasswdUser]) {
    merge_keyed(parent, child, |u| &u.name, merge_user, |_| false);
}

/// Files merged by path, as [`merge`] merges `storage.files` when the child has no
/// directories or links.
pub(crate) fn merge_files(parent: &mut Vec<File>, child: &[File]) {
    merge_keyed(parent, child, |f| &f.path, merge_file, |_| false);
}

fn only_files_users_kernel_args(c: &Config) -> bool {
    // Exhaustive patterns: a field added to the types must be considered here.
    let Config {
        ignition,
        kernel_arguments: _,
        passwd: Passwd { groups, users: _ },
        storage,
        systemd,
    } = c;
    let Ignition {
        config,
        proxy,
        security,
        timeouts,
        version: _,
    } = ignition;
    let Storage {
        directories,
        disks,
        files: _,
        filesystems,
        links,
        luks,
        raid,
    } = storage;
    *config == IgnitionConfig::default()
        && *proxy == Proxy::default()
        && *security == Security::default()
        && *timeouts == Timeouts::default()
        && groups.is_empty()
        && *systemd == Systemd::default()
        && directories.is_empty()
        && disks.is_empty()
        && filesystems.is_empty()
        && links.is_empty()
        && luks.is_empty()
        && raid.is_empty()
}

/// `Some` in the child replaces the parent's value.
fn replace<T: Clone>(parent: &mut Option<T>, child: &Option<T>) {
    if child.is_some() {
        parent.clone_from(child);
    }
}

/// A keyed list as [`merge_lists`] merges it, typed. An empty parent takes the child's list
/// as is, an empty child leaves the parent's; otherwise parent entries keep their place
/// (merged with the child's last entry of the same key, or dropped when `merge_item` says so
/// or the child `moved` the key to another list) and the child's new keys follow in order.
fn merge_keyed<T: Clone>(
    parent: &mut Vec<T>,
    child: &[T],
    key: impl Fn(&T) -> &str,
    merge_item: impl Fn(&mut T, &T) -> bool,
    moved: impl Fn(&str) -> bool,
) {
    if child.is_empty() {
        parent.retain(|p| !moved(key(p)));
        return;
    }
    if parent.is_empty() {
        *parent = child.to_vec();
        return;
    }
    // `done[i]`: the key of the child's last entry `i` is in the parent, or was appended.
    let mut done = vec![false; child.len()];
    let mut out = Vec::with_capacity(parent.len() + child.len());
    for mut p in std::mem::take(parent) {
        let k = key(&p);
        if let Some(i) = child.iter().rposition(|c| key(c) == k) {
            done[i] = true;
            if merge_item(&mut p, &child[i]) {
                out.push(p);
            }
        } else if !moved(k) {
            out.push(p);
        }
    }
    for c in child {
        let k = key(c);
        if let Some(i) = child.iter().rposition(|c| key(c) == k) {
            if !done[i] {
                done[i] = true;
                out.push(child[i].clone());
            }
        }
    }
    *parent = out;
}

fn merge_strings(parent: &mut Vec<String>, child: &[String]) {
    merge_keyed(parent, child, |s| s, |_, _| true, |_| false);
}

pub(crate) fn merge_kernel_args(parent: &mut KernelArguments, child: &KernelArguments) {
    if *child == KernelArguments::default() {
        return;
    }
    if *parent == KernelArguments::default() {
        parent.clone_from(child);
        return;
    }
    // One key space: an argument the child lists under the other list leaves this one.
    let in_not_exist = |k: &str| child.should_not_exist.iter().any(|a| a == k);
    let in_exist = |k: &str| child.should_exist.iter().any(|a| a == k);
    merge_keyed(
        &mut parent.should_exist,
        &child.should_exist,
        |s| s,
        |_, _| true,
        in_not_exist,
    );
    merge_keyed(
        &mut parent.should_not_exist,
        &child.should_not_exist,
        |s| s,
        |_, _| true,
        in_exist,
    );
}

fn merge_user(p: &mut PasswdUser, c: &PasswdUser) -> bool {
    let PasswdUser {
        gecos,
        groups,
        home_dir,
        name: _, // the key
        no_create_home,
        no_log_init,
        no_user_group,
        password_hash,
        primary_group,
        ssh_authorized_keys,
        shell,
        should_exist,
        system,
        uid,
    } = c;
    replace(&mut p.gecos, gecos);
    merge_strings(&mut p.groups, groups);
    replace(&mut p.home_dir, home_dir);
    replace(&mut p.no_create_home, no_create_home);
    replace(&mut p.no_log_init, no_log_init);
    replace(&mut p.no_user_group, no_user_group);
    replace(&mut p.password_hash, password_hash);
    replace(&mut p.primary_group, primary_group);
    merge_strings(&mut p.ssh_authorized_keys, ssh_authorized_keys);
    replace(&mut p.shell, shell);
    replace(&mut p.should_exist, should_exist);
    replace(&mut p.system, system);
    replace(&mut p.uid, uid);
    true
}

fn merge_owner(p: &mut NodeOwner, c: &NodeOwner) {
    let NodeOwner { id, name } = c;
    replace(&mut p.id, id);
    replace(&mut p.name, name);
}

fn merge_resource(p: &mut Resource, c: &Resource) {
    let Resource {
        compression,
        http_headers,
        source,
        verification: Verification { hash },
    } = c;
    replace(&mut p.compression, compression);
    // A child header without a value removes the parent's.
    merge_keyed(
        &mut p.http_headers,
        http_headers,
        |h| &h.name,
        |ph, ch| {
            if ch.value.is_none() {
                return false;
            }
            ph.value.clone_from(&ch.value);
            true
        },
        |_| false,
    );
    replace(&mut p.source, source);
    replace(&mut p.verification.hash, hash);
}

fn merge_file(p: &mut File, c: &File) -> bool {
    let File {
        group,
        overwrite,
        path: _, // the key
        user,
        append,
        contents,
        mode,
    } = c;
    merge_owner(&mut p.group, group);
    replace(&mut p.overwrite, overwrite);
    merge_owner(&mut p.user, user);
    p.append.extend(append.iter().cloned());
    merge_resource(&mut p.contents, contents);
    replace(&mut p.mode, mode);
    true
}

/// Merge two configs of the same shape, child over parent (Ignition's `Merge(parent, child)`),
/// without any conflict check. The version is the child's.
pub fn merge_two(parent: &Config, child: &Config) -> Config {
    let p = serde_json::to_value(parent).unwrap_or(Value::Null);
    let c = serde_json::to_value(child).unwrap_or(Value::Null);
    serde_json::from_value(merge_values(p, c)).unwrap_or_else(|_| child.clone())
}

fn merge_values(parent: Value, child: Value) -> Value {
    match (parent, child) {
        (Value::Object(p), Value::Object(c)) => Value::Object(merge_objects(p, c)),
        (_, c) => c,
    }
}

/// Groups of list fields that share one key space.
fn merged_key_group(field: &str) -> Option<&'static [&'static str]> {
    match field {
        "files" | "directories" | "links" => Some(&["directories", "files", "links"]),
        "shouldExist" | "shouldNotExist" => Some(&["shouldExist", "shouldNotExist"]),
        _ => None,
    }
}

fn merge_objects(mut p: Map<String, Value>, mut c: Map<String, Value>) -> Map<String, Value> {
    // Keys the child holds in each merged-key group, and which list holds them.
    let mut child_group_keys: HashMap<&'static str, HashMap<String, String>> = HashMap::new();
    for (field, v) in &c {
        if let (Some(group), Value::Array(items)) = (merged_key_group(field), v) {
            let m = child_group_keys.entry(group[0]).or_default();
            for it in items {
                m.insert(item_key(field, it), field.clone());
            }
        }
    }
    let mut fields: Vec<String> = p.keys().cloned().collect();
    for k in c.keys() {
        if !p.contains_key(k) {
            fields.push(k.clone());
        }
    }
    let mut out = Map::new();
    for field in fields {
        let pv = p.remove(&field);
        let cv = c.remove(&field);
        let merged = match (pv, cv) {
            (Some(Value::Array(pa)), Some(Value::Array(ca))) => {
                Value::Array(merge_lists(&field, pa, ca, &child_group_keys))
            }
            (Some(Value::Array(pa)), None) => {
                Value::Array(merge_lists(&field, pa, Vec::new(), &child_group_keys))
            }
            (Some(pv), Some(cv)) => merge_values(pv, cv),
            (Some(pv), None) => pv,
            (None, Some(cv)) => cv,
            (None, None) => continue,
        };
        if matches!(&merged, Value::Array(a) if a.is_empty()) {
            continue;
        }
        out.insert(field, merged);
    }
    // Partition numbers are plain Go ints: the child's (even 0) replaces the parent's.
    out
}

fn item_key(field: &str, item: &Value) -> String {
    match item {
        Value::Object(o) => {
            let s = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            match field {
                "files" | "directories" | "links" => s("path"),
                "disks" | "filesystems" => s("device"),
                "partitions" => match o.get("number").and_then(Value::as_i64) {
                    Some(n) if n != 0 => n.to_string(),
                    _ => s("label"),
                },
                "merge" | "certificateAuthorities" => s("source"),
                "tang" => s("url"),
                _ => s("name"),
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn merge_lists(
    field: &str,
    parent: Vec<Value>,
    child: Vec<Value>,
    child_group_keys: &HashMap<&'static str, HashMap<String, String>>,
) -> Vec<Value> {
    if field == "append" {
        return parent.into_iter().chain(child).collect();
    }
    let group = merged_key_group(field).and_then(|g| child_group_keys.get(g[0]));
    let mut child_by_key: BTreeMap<String, Value> = BTreeMap::new();
    let mut child_order = Vec::new();
    for it in child {
        let k = item_key(field, &it);
        child_order.push(k.clone());
        child_by_key.insert(k, it);
    }
    let mut parent_keys = HashSet::new();
    let mut out = Vec::with_capacity(parent.len() + child_by_key.len());
    for it in parent {
        let k = item_key(field, &it);
        parent_keys.insert(k.clone());
        if let Some(ci) = child_by_key.get(&k) {
            if field == "httpHeaders" && ci.get("value").is_none() {
                continue;
            }
            let merged = match (it, ci.clone()) {
                (Value::Object(po), Value::Object(co)) => {
                    let is_part = field == "partitions";
                    let child_number = co.get("number").cloned();
                    let mut m = merge_objects(po, co);
                    if is_part {
                        match child_number {
                            Some(n) => {
                                m.insert("number".into(), n);
                            }
                            None => {
                                m.remove("number");
                            }
                        }
                    }
                    Value::Object(m)
                }
                (_, c) => c,
            };
            out.push(merged);
        } else if group
            .and_then(|g| g.get(&k))
            .is_some_and(|list| list != field)
        {
            // The child moved this key to another list of the group: drop the parent's.
        } else {
            out.push(it);
        }
    }
    for k in child_order {
        if !parent_keys.contains(&k) {
            if let Some(it) = child_by_key.remove(&k) {
                out.push(it);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Config {
        Config::from_json(json).unwrap()
    }

    #[test]
    fn primitive_lists_union_in_order() {
        let a =
            cfg(r#"{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldExist":["a","b"]}}"#);
        let b = cfg(
            r#"{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldExist":["c"],"shouldNotExist":["a"]}}"#,
        );
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m.kernel_arguments.should_exist, ["b", "c"]);
        assert_eq!(m.kernel_arguments.should_not_exist, ["a"]);
    }
}
