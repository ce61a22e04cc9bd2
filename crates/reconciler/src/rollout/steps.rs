//! The per-node state machine, as pure functions: which steps an action takes, what a K3s
//! node list says, whether taking a server down keeps etcd's quorum, and what a reboot step
//! found on resume means.

use serde::{Deserialize, Serialize};
use slipway_model::facts::NodeFacts;
use slipway_model::inventory::Role;

use crate::plan::Action;

/// One step of a node's rollout. Every step is idempotent: run again after a crash, it
/// either finds its work done or does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Every other server Ready, etcd keeps quorum without this node, the node reachable.
    Preflight,
    /// `k3s etcd-snapshot save --name slipway-<node>-<commit>` on the server.
    Snapshot,
    /// Cordon and drain through `k3s kubectl` on another healthy server.
    Drain,
    /// Write a random nonce to `/var/lib/slipway/canary`.
    WriteCanary,
    /// Delete the node object (and with it a server's etcd member): `remove`, `replace`.
    DeleteNode,
    /// Arm the install boot, set `BootNext` (`pxe-bootnext`), reboot, wait for the Ignition
    /// fetch, disarm.
    Netboot,
    /// `rpm-ostree deploy <release>` and reboot (in-place OS upgrade).
    StageOs,
    /// Replace the K3s binary and install script from the artifact store, restart K3s.
    ReplaceK3s,
    /// SSH with a new boot id, `applied.json` equal to the desired config, the desired OS.
    AwaitBoot,
    /// The node Ready in K3s (and running the desired K3s version).
    AwaitReady,
    /// The canary nonce survived: `/var` was kept.
    CheckCanary,
    /// Rewrite `applied.json` after an in-place upgrade.
    RecordApplied,
    /// Uncordon.
    Uncordon,
}

impl Step {
    /// The step's name, as in the journal and the output.
    pub fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Snapshot => "snapshot",
            Step::Drain => "drain",
            Step::WriteCanary => "write-canary",
            Step::DeleteNode => "delete-node",
            Step::Netboot => "netboot",
            Step::StageOs => "stage-os",
            Step::ReplaceK3s => "replace-k3s",
            Step::AwaitBoot => "await-boot",
            Step::AwaitReady => "await-ready",
            Step::CheckCanary => "check-canary",
            Step::RecordApplied => "record-applied",
            Step::Uncordon => "uncordon",
        }
    }

    /// Parse a step name.
    pub fn parse(name: &str) -> Option<Step> {
        ALL_STEPS.iter().copied().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every step.
pub const ALL_STEPS: &[Step] = &[
    Step::Preflight,
    Step::Snapshot,
    Step::Drain,
    Step::WriteCanary,
    Step::DeleteNode,
    Step::Netboot,
    Step::StageOs,
    Step::ReplaceK3s,
    Step::AwaitBoot,
    Step::AwaitReady,
    Step::CheckCanary,
    Step::RecordApplied,
    Step::Uncordon,
];

/// What the executor knows about a node when it lays out its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepContext {
    /// Server or agent.
    pub role: Role,
    /// A cluster runs (else nothing can be snapshotted or drained).
    pub cluster_exists: bool,
    /// The node answers SSH now.
    pub reachable: bool,
    /// K3s lists the node (it can be drained).
    pub in_k3s: bool,
}

/// The steps `action` takes for a node, in order.
pub fn steps_for(action: Action, ctx: StepContext) -> Vec<Step> {
    let server = ctx.role == Role::Server && ctx.cluster_exists && ctx.reachable;
    let drain = ctx.cluster_exists && ctx.in_k3s;
    let mut s = Vec::new();
    let mut push = |cond: bool, step: Step| {
        if cond {
            s.push(step)
        }
    };
    match action {
        Action::Install => {
            push(true, Step::Preflight);
            push(true, Step::Netboot);
            push(true, Step::AwaitBoot);
            push(true, Step::AwaitReady);
        }
        Action::Reinstall => {
            push(true, Step::Preflight);
            push(server, Step::Snapshot);
            push(drain, Step::Drain);
            push(ctx.reachable, Step::WriteCanary);
            push(true, Step::Netboot);
            push(true, Step::AwaitBoot);
            push(true, Step::AwaitReady);
            push(ctx.reachable, Step::CheckCanary);
            push(drain, Step::Uncordon);
        }
        Action::Replace => {
            push(true, Step::Preflight);
            push(ctx.in_k3s, Step::DeleteNode);
            push(true, Step::Netboot);
            push(true, Step::AwaitBoot);
            push(true, Step::AwaitReady);
        }
        Action::UpgradeOs => {
            push(true, Step::Preflight);
            push(server, Step::Snapshot);
            push(drain, Step::Drain);
            push(true, Step::WriteCanary);
            push(true, Step::StageOs);
            push(true, Step::AwaitBoot);
            push(true, Step::AwaitReady);
            push(true, Step::CheckCanary);
            push(true, Step::RecordApplied);
            push(drain, Step::Uncordon);
        }
        Action::UpgradeK3s => {
            push(true, Step::Preflight);
            push(server, Step::Snapshot);
            push(drain, Step::Drain);
            push(true, Step::ReplaceK3s);
            push(true, Step::AwaitReady);
            push(true, Step::RecordApplied);
            push(drain, Step::Uncordon);
        }
        Action::Remove => {
            push(drain && ctx.reachable, Step::Drain);
            push(ctx.in_k3s, Step::DeleteNode);
        }
        Action::None | Action::Blocked => {}
    }
    s
}

/// One node as `k3s kubectl get nodes -o json` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeNodeStatus {
    /// Node name.
    pub name: String,
    /// Runs the control plane (a server).
    pub server: bool,
    /// `Ready` condition is `True`.
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    /// kubelet version (`v1.30.4+k3s1`).
    pub kubelet_version: Option<String>,
}

/// Parse `kubectl get nodes -o json` (a `List`) or `get node X -o json` (one `Node`).
pub fn parse_kube_nodes(json: &str) -> Result<Vec<KubeNodeStatus>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("kubectl printed no JSON: {e}"))?;
    let items: Vec<&serde_json::Value> = match v.get("items").and_then(|i| i.as_array()) {
        Some(items) => items.iter().collect(),
        None if v.get("kind").and_then(|k| k.as_str()) == Some("Node") => vec![&v],
        None => return Err("kubectl's JSON is neither a node nor a list of nodes".into()),
    };
    items
        .into_iter()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .ok_or("a node without metadata.name")?
                .to_string();
            let labels = &n["metadata"]["labels"];
            let server = ["control-plane", "master", "etcd"]
                .iter()
                .any(|r| labels.get(format!("node-role.kubernetes.io/{r}")).is_some());
            let ready = n["status"]["conditions"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
                .unwrap_or(false);
            Ok(KubeNodeStatus {
                name,
                server,
                ready,
                unschedulable: n["spec"]["unschedulable"].as_bool().unwrap_or(false),
                kubelet_version: n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .map(str::to_string),
            })
        })
        .collect()
}

/// Whether taking `target` down keeps etcd's quorum: the Ready servers other than it must
/// be a majority of all servers. `Err` explains the arithmetic.
pub fn quorum_without(nodes: &[KubeNodeStatus], target: &str) -> Result<(), String> {
    let servers: Vec<&KubeNodeStatus> = nodes.iter().filter(|n| n.server).collect();
    if servers.len() <= 1 {
        return Ok(()); // a single server: nothing to keep (the plan said the API goes down)
    }
    let others_ready = servers
        .iter()
        .filter(|n| n.name != target && n.ready)
        .count();
    let quorum = servers.len() / 2 + 1;
    if others_ready >= quorum {
        Ok(())
    } else {
        let not_ready: Vec<&str> = servers
            .iter()
            .filter(|n| n.name != target && !n.ready)
            .map(|n| n.name.as_str())
            .collect();
        Err(format!(
            "{} of {} servers would be Ready without {target}, quorum needs {quorum} (not Ready: {})",
            others_ready,
            servers.len(),
            if not_ready.is_empty() {
                "none".to_string()
            } else {
                not_ready.join(", ")
            }
        ))
    }
}

/// What a reboot step sees when it looks at the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebootProbe {
    /// The step's goal is reached (installed / booted into the new release).
    Arrived,
    /// The node is down or has not rebooted yet after the reboot was sent: wait.
    Wait,
    /// The reboot was never sent (or got lost before the journal knew): send it.
    SendReboot,
    /// The node came back from a reboot without the change (a netboot that fell through
    /// to the disk, a release not staged): try again with this as the new "before".
    CameBackUnchanged {
        /// The boot id it came back with.
        boot_id: String,
    },
}

/// Decide the next move of a reboot step from the node's facts. `arrived` says whether the
/// facts show the goal (e.g. `applied.json` equals the desired config).
pub fn reboot_probe(
    facts: &NodeFacts,
    boot_id_before: Option<&str>,
    reboot_sent: bool,
    arrived: bool,
) -> RebootProbe {
    if !facts.is_reachable() {
        return RebootProbe::Wait;
    }
    let Some(now) = facts.boot_id.as_deref() else {
        return RebootProbe::Wait;
    };
    match boot_id_before {
        Some(before) if before == now => {
            if reboot_sent {
                RebootProbe::Wait
            } else {
                RebootProbe::SendReboot
            }
        }
        // Booted since the step began (or the step never saw it up) with the change.
        _ if arrived => RebootProbe::Arrived,
        Some(_) => RebootProbe::CameBackUnchanged {
            boot_id: now.to_string(),
        },
        None => RebootProbe::SendReboot,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use slipway_model::facts::Reachability;

    fn ctx(role: Role, exists: bool, reachable: bool, in_k3s: bool) -> StepContext {
        StepContext {
            role,
            cluster_exists: exists,
            reachable,
            in_k3s,
        }
    }

    #[test]
    fn a_server_reinstall_takes_every_step_in_the_issue_order() {
        let steps = steps_for(Action::Reinstall, ctx(Role::Server, true, true, true));
        assert_eq!(
            steps,
            vec![
                Step::Preflight,
                Step::Snapshot,
                Step::Drain,
                Step::WriteCanary,
                Step::Netboot,
                Step::AwaitBoot,
                Step::AwaitReady,
                Step::CheckCanary,
                Step::Uncordon
            ]
        );
        // An agent takes no snapshot; a new cluster drains nothing.
        let agent = steps_for(Action::Reinstall, ctx(Role::Agent, true, true, true));
        assert!(!agent.contains(&Step::Snapshot));
        let fresh = steps_for(Action::Install, ctx(Role::Server, false, true, false));
        assert_eq!(
            fresh,
            vec![
                Step::Preflight,
                Step::Netboot,
                Step::AwaitBoot,
                Step::AwaitReady
            ]
        );
        // Names round-trip.
        for s in ALL_STEPS {
            assert_eq!(Step::parse(s.name()), Some(*s));
        }
    }

    #[test]
    fn in_place_upgrades_use_the_same_frame() {
        let os = steps_for(Action::UpgradeOs, ctx(Role::Server, true, true, true));
        assert_eq!(&os[..3], &[Step::Preflight, Step::Snapshot, Step::Drain]);
        assert_eq!(os.last(), Some(&Step::Uncordon));
        assert!(os.contains(&Step::StageOs) && os.contains(&Step::CheckCanary));
        let k3s = steps_for(Action::UpgradeK3s, ctx(Role::Agent, true, true, true));
        assert_eq!(
            k3s,
            vec![
                Step::Preflight,
                Step::Drain,
                Step::ReplaceK3s,
                Step::AwaitReady,
                Step::RecordApplied,
                Step::Uncordon
            ]
        );
        assert!(steps_for(Action::None, ctx(Role::Agent, true, true, true)).is_empty());
    }

    const LIST: &str = r#"{"kind":"List","items":[
      {"kind":"Node","metadata":{"name":"s1","labels":{"node-role.kubernetes.io/control-plane":"true","node-role.kubernetes.io/etcd":"true"}},
       "spec":{},"status":{"conditions":[{"type":"Ready","status":"True"}],"nodeInfo":{"kubeletVersion":"v1.30.4+k3s1"}}},
      {"kind":"Node","metadata":{"name":"s2","labels":{"node-role.kubernetes.io/control-plane":"true"}},
       "spec":{"unschedulable":true},"status":{"conditions":[{"type":"Ready","status":"False"}],"nodeInfo":{}}},
      {"kind":"Node","metadata":{"name":"s3","labels":{"node-role.kubernetes.io/etcd":"true"}},
       "spec":{},"status":{"conditions":[{"type":"Ready","status":"True"}]}},
      {"kind":"Node","metadata":{"name":"a1","labels":{}},"spec":{},"status":{"conditions":[{"type":"Ready","status":"True"}]}}
    ]}"#;

    #[test]
    fn node_lists_parse_and_quorum_is_counted_from_ready_servers() {
        let nodes = parse_kube_nodes(LIST).unwrap();
        assert_eq!(nodes.len(), 4);
        assert!(nodes[0].server && nodes[0].ready);
        assert!(nodes[1].unschedulable && !nodes[1].ready);
        assert!(!nodes[3].server);
        assert_eq!(nodes[0].kubelet_version.as_deref(), Some("v1.30.4+k3s1"));
        // 3 servers, quorum 2: s2 is down, so s1 can't go (only s3 left) but s2 can.
        let e = quorum_without(&nodes, "s1").unwrap_err();
        assert!(
            e.contains("1 of 3 servers") && e.contains("quorum needs 2") && e.contains("s2"),
            "{e}"
        );
        quorum_without(&nodes, "s2").unwrap();
        // An agent going down costs etcd nothing.
        quorum_without(&nodes, "a1").unwrap();
        let one = parse_kube_nodes(
            r#"{"kind":"Node","metadata":{"name":"x"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        )
        .unwrap();
        assert_eq!(one[0].name, "x");
        assert!(parse_kube_nodes("garbage").is_err());
        assert!(parse_kube_nodes(r#"{"kind":"Pod"}"#).is_err());
    }

    fn facts(boot: Option<&str>) -> NodeFacts {
        let mut f = NodeFacts::unreachable("x");
        if let Some(b) = boot {
            f.reachability = Reachability::Reachable;
            f.boot_id = Some(b.into());
        }
        f
    }

    #[test]
    fn a_reboot_step_resumes_without_rebooting_twice_or_missing_a_reboot() {
        use RebootProbe::*;
        // Down or not yet rebooted: wait.
        assert_eq!(reboot_probe(&facts(None), Some("b1"), true, false), Wait);
        assert_eq!(
            reboot_probe(&facts(Some("b1")), Some("b1"), true, false),
            Wait
        );
        // Killed before the reboot was sent (or before the journal knew): send it.
        assert_eq!(
            reboot_probe(&facts(Some("b1")), Some("b1"), false, false),
            SendReboot
        );
        // Back with the change: done, whatever the journal knew about sending.
        assert_eq!(
            reboot_probe(&facts(Some("b2")), Some("b1"), false, true),
            Arrived
        );
        assert_eq!(
            reboot_probe(&facts(Some("b2")), Some("b1"), true, true),
            Arrived
        );
        // Back without it: go again.
        assert_eq!(
            reboot_probe(&facts(Some("b2")), Some("b1"), true, false),
            CameBackUnchanged {
                boot_id: "b2".into()
            }
        );
        // Never seen up before (a new machine powered on by hand): up with its old OS means
        // it booted its disk, so make it netboot; up with the change means it installed.
        assert_eq!(
            reboot_probe(&facts(Some("b1")), None, false, false),
            SendReboot
        );
        assert_eq!(reboot_probe(&facts(Some("b1")), None, false, true), Arrived);
    }
}
