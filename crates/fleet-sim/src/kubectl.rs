//! `k3s kubectl` and `k3s etcd-snapshot` on a simulated node: pure functions over the
//! cluster state (plus the node's snapshot folder), answering the way the real tools do —
//! including failing when the API is unreachable or etcd has no quorum.
//!
//! Simulated: `get nodes|node [NAME...] [-o json|name]` (a table without `-o`), `cordon`,
//! `uncordon`, `drain` (the simulated cluster runs a DaemonSet on every node, so
//! `--ignore-daemonsets` is required, as on any real homelab), `delete node`;
//! `etcd-snapshot save [--name N]` and `etcd-snapshot ls`. Pods are not simulated.
//! Everything else fails with exit status 1 and says so.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cluster::{ClusterState, Condition, EventKind, KubeNode};
use crate::k3s::{snapshot_dir, NodeView, SNAPSHOT_DIR};
use crate::shim::ShimOutput;
use crate::state::K3sUnit;
use crate::SimError;

/// Flags that take a value (as `--flag value` or `--flag=value`).
const VALUE_FLAGS: &[&str] = &[
    "-o",
    "--output",
    "--timeout",
    "--grace-period",
    "--name",
    "--dir",
];

#[derive(Debug, Default)]
struct Args {
    positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut out = Args::default();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if a.starts_with('-') && a.len() > 1 {
                match a.split_once('=') {
                    Some((flag, value)) => out.flags.push((flag.into(), Some(value.into()))),
                    None if VALUE_FLAGS.contains(&a.as_str()) => {
                        i += 1;
                        let value = args
                            .get(i)
                            .ok_or_else(|| format!("error: flag needs an argument: {a}"))?;
                        out.flags.push((a.clone(), Some(value.clone())));
                    }
                    None => out.flags.push((a.clone(), None)),
                }
            } else {
                out.positional.push(a.clone());
            }
            i += 1;
        }
        Ok(out)
    }

    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .flags
            .iter()
            .find(|(f, _)| !allowed.contains(&f.as_str()))
        {
            Some((f, _)) => Err(format!("error: unknown flag: {f}")),
            None => Ok(()),
        }
    }

    fn value(&self, names: &[&str]) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, _)| names.contains(&f.as_str()))
            .and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.flags
            .iter()
            .any(|(f, v)| f == name && v.as_deref().is_none_or(|v| v == "true"))
    }
}

fn fail(message: impl Into<String>) -> ShimOutput {
    let mut m = message.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    ShimOutput {
        stdout: String::new(),
        stderr: m,
        code: 1,
    }
}

fn ok(stdout: String) -> ShimOutput {
    ShimOutput {
        stdout,
        stderr: String::new(),
        code: 0,
    }
}

fn not_found(name: &str) -> ShimOutput {
    fail(format!(
        "Error from server (NotFound): nodes \"{name}\" not found"
    ))
}

/// Whether this machine can reach a working API server: only servers have a kubeconfig,
/// their K3s must run, and etcd needs quorum.
fn api_gate(cluster: &ClusterState, host: &str) -> Result<(), ShimOutput> {
    let status = cluster.hosts.get(host).cloned().unwrap_or_default();
    if status.unit != Some(K3sUnit::Server) {
        return Err(fail(
            "The connection to the server localhost:8080 was refused - did you specify the right host or port?",
        ));
    }
    if status.split_brain {
        return Err(fail(format!(
            "simulator: {host} started a second cluster (see the split_brain record); its API is not simulated"
        )));
    }
    if !status.active
        || cluster.cluster.is_none()
        || !cluster.members.iter().any(|m| m.host == host)
    {
        return Err(fail(
            "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?",
        ));
    }
    if !cluster.has_quorum() {
        return Err(fail("Error from server: etcdserver: request timed out"));
    }
    Ok(())
}

/// `k3s kubectl ARGS` run on machine `host`.
pub(crate) fn kubectl(
    cluster: &mut ClusterState,
    host: &str,
    args: &[String],
    now: u64,
) -> ShimOutput {
    let parsed = match Args::parse(args) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let Some(verb) = parsed.positional.first().cloned() else {
        return fail(
            "kubectl: a command is required (simulated: get, cordon, uncordon, drain, delete)",
        );
    };
    if !matches!(
        verb.as_str(),
        "get" | "cordon" | "uncordon" | "drain" | "delete"
    ) {
        return fail(format!("kubectl: `{verb}` is not simulated"));
    }
    if let Err(out) = api_gate(cluster, host) {
        return out;
    }
    let result = match verb.as_str() {
        "get" => get(cluster, &parsed, now),
        "cordon" | "uncordon" => cordon(cluster, host, &parsed, verb == "cordon", now),
        "drain" => drain(cluster, host, &parsed, now),
        _ => delete(cluster, host, &parsed, now),
    };
    result.unwrap_or_else(fail)
}

fn is_nodes(resource: Option<&String>) -> Result<(), String> {
    match resource.map(String::as_str) {
        Some("nodes" | "node" | "no") => Ok(()),
        Some(other) => Err(format!(
            "kubectl: resource `{other}` is not simulated (only nodes)"
        )),
        None => Err("error: you must specify the type of resource to get".into()),
    }
}

fn get(cluster: &ClusterState, args: &Args, now: u64) -> Result<ShimOutput, String> {
    args.only(&["-o", "--output", "--no-headers"])?;
    is_nodes(args.positional.get(1))?;
    let names = &args.positional[2..];
    let mut nodes: Vec<&KubeNode> = Vec::new();
    for name in names {
        nodes.push(cluster.node(name).ok_or_else(|| not_found(name).stderr)?);
    }
    if names.is_empty() {
        nodes = cluster.nodes.iter().collect();
    }
    match args.value(&["-o", "--output"]) {
        Some("json") => {
            let items: Vec<Value> = nodes.iter().map(|n| node_json(cluster, n)).collect();
            let doc = if names.len() == 1 {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
            };
            Ok(ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )))
        }
        Some("name") => Ok(ok(nodes
            .iter()
            .map(|n| format!("node/{}\n", n.name))
            .collect())),
        Some(other) => Err(format!(
            "kubectl: output format `{other}` is not simulated (json, name)"
        )),
        None => {
            if nodes.is_empty() {
                return Ok(ShimOutput {
                    stdout: String::new(),
                    stderr: "No resources found\n".into(),
                    code: 0,
                });
            }
            let mut rows = Vec::new();
            if !args.has("--no-headers") {
                rows.push(
                    ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
                        .map(String::from)
                        .to_vec(),
                );
            }
            for n in nodes {
                rows.push(vec![
                    n.name.clone(),
                    status_word(cluster, n),
                    roles(n),
                    age(now.saturating_sub(n.created_at_unix_ms)),
                    n.kubelet_version.clone(),
                ]);
            }
            Ok(ok(table(&rows)))
        }
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
                .collect();
            format!("{}\n", line.join("   ").trim_end())
        })
        .collect()
}

fn status_word(cluster: &ClusterState, n: &KubeNode) -> String {
    let ready = match cluster.node_condition(n) {
        Condition::True => "Ready",
        _ => "NotReady",
    };
    if n.unschedulable {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_string()
    }
}

fn roles(n: &KubeNode) -> String {
    let roles: Vec<&str> = n
        .labels
        .keys()
        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A Node object as `kubectl get node -o json` prints it (the fields Slipway reads, and
/// the taints Kubernetes adds itself for cordoned and unready nodes).
pub(crate) fn node_json(cluster: &ClusterState, n: &KubeNode) -> Value {
    let condition = cluster.node_condition(n);
    let mut taints: Vec<Value> = n
        .taints
        .iter()
        .map(|t| {
            let mut v = json!({"effect": t.effect, "key": t.key});
            if let Some(value) = &t.value {
                v["value"] = json!(value);
            }
            v
        })
        .collect();
    if n.unschedulable {
        taints.push(json!({"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable", "timeAdded": timestamp(n.created_at_unix_ms)}));
    }
    match condition {
        Condition::Unknown => {
            for effect in ["NoSchedule", "NoExecute"] {
                taints.push(json!({"effect": effect, "key": "node.kubernetes.io/unreachable"}));
            }
        }
        Condition::False => {
            taints.push(json!({"effect": "NoSchedule", "key": "node.kubernetes.io/not-ready"}))
        }
        Condition::True => {}
    }
    let mut spec = json!({"podCIDR": "10.42.0.0/24", "providerID": format!("k3s://{}", n.name)});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    if n.unschedulable {
        spec["unschedulable"] = json!(true);
    }
    let pressure = |kind: &str, reason: &str| {
        let status = match condition {
            Condition::Unknown => "Unknown",
            _ => "False",
        };
        json!({"type": kind, "status": status, "reason": reason})
    };
    let (ready_reason, ready_message) = match condition {
        Condition::True => ("KubeletReady", "kubelet is posting ready status"),
        Condition::False => ("KubeletNotReady", "container runtime network not ready"),
        Condition::Unknown => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
    };
    let mut addresses = Vec::new();
    if let Some(ip) = &n.internal_ip {
        addresses.push(json!({"type": "InternalIP", "address": ip}));
    }
    addresses.push(json!({"type": "Hostname", "address": n.name}));
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": n.name,
            "labels": n.labels,
            "annotations": {"k3s.io/node-args": "[]", "node.alpha.kubernetes.io/ttl": "0"},
            "creationTimestamp": timestamp(n.created_at_unix_ms),
        },
        "spec": spec,
        "status": {
            "addresses": addresses,
            "conditions": [
                pressure("MemoryPressure", "KubeletHasSufficientMemory"),
                pressure("DiskPressure", "KubeletHasNoDiskPressure"),
                pressure("PIDPressure", "KubeletHasSufficientPID"),
                {"type": "Ready", "status": condition.as_str(), "reason": ready_reason, "message": ready_message},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "containerRuntimeVersion": "containerd://1.7.17-k3s1",
                "kernelVersion": "6.9.7-200.fc40.x86_64",
                "kubeProxyVersion": n.kubelet_version,
                "kubeletVersion": n.kubelet_version,
                "operatingSystem": "linux",
                "osImage": "Fedora CoreOS",
            },
        },
    })
}

fn one_node(args: &Args, verb: &str) -> Result<String, String> {
    match &args.positional[1..] {
        [name] => Ok(name.clone()),
        [] => Err(format!("error: USAGE: {verb} NODE [flags]")),
        _ => Err(format!("kubectl {verb}: one node at a time is simulated")),
    }
}

fn cordon(
    cluster: &mut ClusterState,
    host: &str,
    args: &Args,
    on: bool,
    now: u64,
) -> Result<ShimOutput, String> {
    let verb = if on { "cordon" } else { "uncordon" };
    args.only(&[])?;
    let name = one_node(args, verb)?;
    let node = cluster
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .ok_or_else(|| not_found(&name).stderr)?;
    if node.unschedulable == on {
        return Ok(ok(format!("node/{name} already {verb}ed\n")));
    }
    node.unschedulable = on;
    if !on {
        node.drained = false;
    }
    let kind = if on {
        EventKind::Cordoned
    } else {
        EventKind::Uncordoned
    };
    cluster.event(now, host, kind, format!("node {name} {verb}ed"));
    Ok(ok(format!("node/{name} {verb}ed\n")))
}

fn drain(
    cluster: &mut ClusterState,
    host: &str,
    args: &Args,
    now: u64,
) -> Result<ShimOutput, String> {
    args.only(&[
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--delete-local-data",
        "--force",
        "--timeout",
        "--grace-period",
        "--disable-eviction",
    ])?;
    let name = one_node(args, "drain")?;
    if let Some(t) = args.value(&["--timeout"]) {
        if t != "0" {
            humantime::parse_duration(t).map_err(|_| {
                format!("error: invalid argument \"{t}\" for \"--timeout\" flag: time: invalid duration \"{t}\"")
            })?;
        }
    }
    let node = cluster
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .ok_or_else(|| not_found(&name).stderr)?;
    let mut out = if node.unschedulable {
        format!("node/{name} already cordoned\n")
    } else {
        format!("node/{name} cordoned\n")
    };
    node.unschedulable = true;
    if !args.has("--ignore-daemonsets") {
        cluster.event(
            now,
            host,
            EventKind::Cordoned,
            format!("node {name} cordoned"),
        );
        return Ok(ShimOutput {
            stdout: out,
            stderr: format!("error: unable to drain node \"{name}\" due to error: cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/slipway-sim-ds-{name}, continuing command...\nThere are pending nodes to be drained:\n {name}\n"),
            code: 1,
        });
    }
    node.drained = true;
    out.push_str(&format!("node/{name} drained\n"));
    cluster.event(
        now,
        host,
        EventKind::Drained,
        format!("node {name} drained"),
    );
    Ok(ok(out))
}

fn delete(
    cluster: &mut ClusterState,
    host: &str,
    args: &Args,
    now: u64,
) -> Result<ShimOutput, String> {
    args.only(&["--ignore-not-found", "--wait"])?;
    is_nodes(args.positional.get(1))?;
    let names = &args.positional[2..];
    if names.is_empty() {
        return Err("error: resource(s) were provided, but no name was specified".into());
    }
    let mut out = ShimOutput {
        stdout: String::new(),
        stderr: String::new(),
        code: 0,
    };
    for name in names {
        let Some(pos) = cluster.nodes.iter().position(|n| &n.name == name) else {
            if !args.has("--ignore-not-found") {
                out.stderr.push_str(&not_found(name).stderr);
                out.code = 1;
            }
            continue;
        };
        let node = cluster.nodes.remove(pos);
        cluster.event(
            now,
            host,
            EventKind::NodeDeleted,
            format!("node {name} deleted"),
        );
        if node.role == K3sUnit::Server {
            if let Some(mpos) = cluster.members.iter().position(|m| &m.name == name) {
                let member = cluster.members.remove(mpos);
                cluster.event(
                    now,
                    &member.host,
                    EventKind::MemberRemoved,
                    format!("etcd member {} ({name}) removed", member.id),
                );
                let h = cluster.host_mut(&member.host);
                if h.active {
                    h.kill = Some(format!(
                        "etcd member {} has been permanently removed from the cluster: data-dir used by this member must be removed",
                        member.id
                    ));
                }
            }
        }
        out.stdout.push_str(&format!("node \"{name}\" deleted\n"));
    }
    Ok(out)
}

/// `k3s etcd-snapshot ARGS` on the machine of `view`.
pub(crate) fn etcd_snapshot(
    cluster: &mut ClusterState,
    view: &NodeView,
    args: &[String],
    now: u64,
) -> Result<ShimOutput, SimError> {
    let parsed = match Args::parse(args) {
        Ok(p) => p,
        Err(e) => return Ok(fail(e)),
    };
    let host = view.host.as_str();
    let status = cluster.hosts.get(host).cloned().unwrap_or_default();
    let sub = parsed.positional.first().map(String::as_str);
    if !matches!(sub, Some("save" | "ls" | "list")) {
        return Ok(fail(format!(
            "k3s etcd-snapshot: `{}` is not simulated (save, ls)",
            sub.unwrap_or("")
        )));
    }
    if status.unit != Some(K3sUnit::Server) || !cluster.members.iter().any(|m| m.host == host) {
        return Ok(fail(
            "k3s etcd-snapshot: etcd is not running on this node (not an etcd member)",
        ));
    }
    if !status.active {
        return Ok(fail("k3s etcd-snapshot: failed to get etcd status: dial tcp 127.0.0.1:2379: connect: connection refused"));
    }
    if !cluster.has_quorum() {
        return Ok(fail("k3s etcd-snapshot: etcdserver: request timed out"));
    }
    let dir = snapshot_dir(view);
    if sub == Some("save") {
        if let Err(e) = parsed.only(&["--name"]) {
            return Ok(fail(e));
        }
        let name = parsed.value(&["--name"]).unwrap_or("on-demand");
        let node_name = status.node_name.clone().unwrap_or_else(|| host.to_string());
        let file = format!("{name}-{node_name}-{}", now / 1000);
        let content = json!({
            "simulated_etcd_snapshot": true,
            "cluster": cluster.cluster.as_ref().map(|c| c.id.clone()),
            "members": cluster.members.iter().map(|m| json!({"id": m.id, "name": m.name})).collect::<Vec<_>>(),
            "nodes": cluster.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
            "taken_at": timestamp(now),
        });
        std::fs::create_dir_all(&dir).map_err(|e| SimError::io("creating", &dir, e))?;
        let path = dir.join(&file);
        std::fs::write(&path, format!("{content:#}\n"))
            .map_err(|e| SimError::io("writing", &path, e))?;
        cluster.event(
            now,
            host,
            EventKind::Snapshot,
            format!("etcd snapshot {file} saved"),
        );
        return Ok(ShimOutput {
            stdout: String::new(),
            stderr: format!("INFO[0000] Snapshot {file} saved.\n"),
            code: 0,
        });
    }
    if let Err(e) = parsed.only(&[]) {
        return Ok(fail(e));
    }
    let mut rows = vec![["Name", "Location", "Size", "Created"]
        .map(String::from)
        .to_vec()];
    let mut entries: Vec<(String, u64, String)> = Vec::new();
    if let Ok(list) = std::fs::read_dir(&dir) {
        for e in list.flatten() {
            let meta = e.metadata().ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let created = meta
                .and_then(|m| m.modified().ok())
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_default();
            entries.push((e.file_name().to_string_lossy().into_owned(), size, created));
        }
    }
    entries.sort();
    for (name, size, created) in entries {
        rows.push(vec![
            name.clone(),
            format!("file://{SNAPSHOT_DIR}/{name}"),
            size.to_string(),
            created,
        ]);
    }
    Ok(ok(table(&rows)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterInfo, EtcdMember, HostStatus};
    use std::collections::BTreeMap;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn node(name: &str, role: K3sUnit) -> KubeNode {
        KubeNode {
            name: name.into(),
            host: name.into(),
            role,
            labels: BTreeMap::new(),
            taints: vec![],
            unschedulable: false,
            drained: false,
            kubelet_version: "v1.30.4+k3s1".into(),
            internal_ip: None,
            created_at_unix_ms: 0,
        }
    }

    /// s0, s1 (servers, members) and a0 (agent), all up.
    fn cluster() -> ClusterState {
        let mut c = ClusterState {
            cluster: Some(ClusterInfo {
                id: "cid".into(),
                token_sha256: "x".into(),
                created_by: "s0".into(),
                created_at_unix_ms: 0,
            }),
            ..ClusterState::default()
        };
        for (name, role) in [
            ("s0", K3sUnit::Server),
            ("s1", K3sUnit::Server),
            ("a0", K3sUnit::Agent),
        ] {
            c.hosts.insert(
                name.into(),
                HostStatus {
                    up: true,
                    unit: Some(role),
                    active: true,
                    node_name: Some(name.into()),
                    ..HostStatus::default()
                },
            );
            c.nodes.push(node(name, role));
            if role == K3sUnit::Server {
                c.members.push(EtcdMember {
                    id: format!("id-{name}"),
                    name: name.into(),
                    host: name.into(),
                    joined_at_unix_ms: 0,
                });
            }
        }
        c
    }

    #[test]
    fn only_servers_with_quorum_answer() {
        let mut c = cluster();
        let out = kubectl(&mut c, "a0", &args(&["get", "nodes"]), 0);
        assert!(out.stderr.contains("localhost:8080"), "{out:?}");
        assert_eq!(kubectl(&mut c, "s0", &args(&["get", "nodes"]), 0).code, 0);
        c.hosts.get_mut("s1").unwrap().up = false;
        let out = kubectl(&mut c, "s0", &args(&["get", "nodes", "-o", "json"]), 0);
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("etcdserver: request timed out"));
        c.hosts.get_mut("s0").unwrap().active = false;
        let out = kubectl(&mut c, "s0", &args(&["get", "nodes"]), 0);
        assert!(out.stderr.contains("127.0.0.1:6443 was refused"));
    }

    #[test]
    fn unknown_things_fail_loudly() {
        let mut c = cluster();
        for a in [
            vec!["apply", "-f", "x"],
            vec!["get", "pods"],
            vec!["get", "nodes", "-o", "yaml"],
            vec!["cordon", "nope"],
            vec!["drain", "s1", "--bogus"],
            vec!["drain", "s1", "--ignore-daemonsets", "--timeout=soon"],
            vec![],
        ] {
            let out = kubectl(&mut c, "s0", &args(&a), 0);
            assert_eq!(out.code, 1, "{a:?} should fail: {out:?}");
            assert!(!out.stderr.is_empty());
        }
        assert_eq!(c.nodes.iter().filter(|n| n.unschedulable).count(), 0);
    }

    #[test]
    fn drain_needs_ignore_daemonsets_and_uncordon_clears_it() {
        let mut c = cluster();
        let out = kubectl(&mut c, "s0", &args(&["drain", "a0"]), 0);
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("--ignore-daemonsets"));
        assert!(c.node("a0").unwrap().unschedulable && !c.node("a0").unwrap().drained);
        let out = kubectl(
            &mut c,
            "s0",
            &args(&[
                "drain",
                "a0",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=2m30s",
            ]),
            0,
        );
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "node/a0 already cordoned\nnode/a0 drained\n")
        );
        let json: Value = serde_json::from_str(
            &kubectl(&mut c, "s0", &args(&["get", "node", "a0", "-o", "json"]), 0).stdout,
        )
        .unwrap();
        assert_eq!(json["kind"], "Node");
        assert_eq!(json["spec"]["unschedulable"], true);
        assert_eq!(
            json["spec"]["taints"][0]["key"],
            "node.kubernetes.io/unschedulable"
        );
        kubectl(&mut c, "s0", &args(&["uncordon", "a0"]), 0);
        let a0 = c.node("a0").unwrap();
        assert!(!a0.unschedulable && !a0.drained);
    }

    #[test]
    fn deleting_a_running_server_removes_its_member_and_stops_it() {
        let mut c = cluster();
        let out = kubectl(&mut c, "s0", &args(&["delete", "node", "s1"]), 0);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "node \"s1\" deleted\n")
        );
        assert!(c.member("s1").is_none() && c.node("s1").is_none());
        assert!(c.hosts["s1"].kill.is_some());
        assert!(c.has_quorum(), "1 of 1 member left");
        let out = kubectl(&mut c, "s0", &args(&["delete", "node", "s1"]), 0);
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("NotFound"));
    }

    #[test]
    fn node_list_json_has_what_slipway_reads() {
        let mut c = cluster();
        c.hosts.get_mut("a0").unwrap().never_ready = true;
        let out = kubectl(&mut c, "s1", &args(&["get", "nodes", "-o", "json"]), 0);
        let list: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(list["kind"], "List");
        let items = list["items"].as_array().unwrap();
        let names: Vec<&str> = items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["s0", "s1", "a0"]);
        let ready = |i: &Value| {
            i["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()["status"]
                .clone()
        };
        assert_eq!(ready(&items[0]), "True");
        assert_eq!(ready(&items[2]), "False");
        assert_eq!(
            items[0]["status"]["nodeInfo"]["kubeletVersion"],
            "v1.30.4+k3s1"
        );
        let table = kubectl(&mut c, "s1", &args(&["get", "nodes"]), 0).stdout;
        assert!(table.starts_with("NAME"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["a0", "NotReady"])),
            "{table}"
        );
    }
}
