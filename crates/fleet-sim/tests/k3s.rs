#![allow(clippy::unwrap_used)]
//! K3s in the simulator follows the configuration Slipway INSTALLED on each node and checks
//! what it means. Every node here is installed with the Ignition `slipway-ignition-gen`
//! renders, applied by the real Ignition (Debian package `ignition`); commands go over real
//! SSH (slipway-node-ssh) to real sshd.

mod common;

use common::profile::{secrets, Lab, K3S_VERSION};
use common::*;
use serde_json::Value;
use slipway_fleet_sim::{ClusterState, EventKind, NodeState, VarPolicy};
use slipway_ignition_gen::profile::ClusterState::{Exists, New};

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn fresh(_: usize) -> NodeState {
    NodeState::fresh("39.20240101.3.0")
}

/// Install nodes concurrently (as a rollout of several agents would).
fn install_all(t: &TestFleet, configs: &[(&str, String)]) {
    std::thread::scope(|s| {
        for (name, config) in configs {
            let node = t.fleet.node(name).unwrap();
            s.spawn(move || node.install(config, VarPolicy::Keep).unwrap());
        }
    });
}

fn cluster(t: &TestFleet) -> ClusterState {
    t.fleet.cluster().unwrap()
}

fn node_list(t: &TestFleet, on: &str) -> Vec<Value> {
    let out = t.ssh_ok(on, "k3s kubectl get nodes -o json");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["kind"], "List");
    list["items"].as_array().unwrap().clone()
}

fn item<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {items:?}"))
}

fn ready(item: &Value) -> String {
    item["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn three_servers_and_two_agents_install_from_their_configs_into_one_cluster() {
    let lab = Lab::new(&["s1", "s2", "s3"], &["a1", "a2"], &["s1", "s2", "s3"]);
    let t = start_named_fleet(&names(&["s1", "s2", "s3", "a1", "a2"]), fresh);

    // The bootstrap server initialises the cluster.
    t.fleet
        .node("s1")
        .unwrap()
        .install(&lab.ignition("s1", New), VarPolicy::Keep)
        .unwrap();
    let c = cluster(&t);
    assert_eq!(c.cluster.as_ref().unwrap().created_by, "s1");
    assert_eq!(c.members.len(), 1);
    assert!(c.is_ready("s1"), "{c:#?}");

    // Everybody else joins, rendered for the same new cluster (no cluster-init for them).
    install_all(
        &t,
        &["s2", "s3", "a1", "a2"].map(|n| (n, lab.ignition(n, New))),
    );
    let c = cluster(&t);
    let members: Vec<&str> = c.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(members.len(), 3, "{members:?}");
    for s in ["s1", "s2", "s3"] {
        assert!(members.contains(&s), "{members:?}");
    }
    assert_eq!(c.ready_nodes(), names(&["a1", "a2", "s1", "s2", "s3"]));
    assert!(c.split_brain.is_empty() && c.conflicts.is_empty());
    // s2's endpoints are s1 then s3 (never itself): it joined through the first.
    let joined = c
        .events_of("s2")
        .into_iter()
        .find(|e| e.kind == EventKind::Joined)
        .unwrap();
    assert!(
        joined.message.contains("https://s1.lab.example:6443"),
        "{joined:?}"
    );

    // What Slipway reads back over SSH: versions, units, applied config.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let facts = rt.block_on(slipway_node_ssh::gather_fleet(t.targets(), 5, options()));
    for (name, f) in &facts {
        assert_eq!(f.errors, vec![], "{name}");
        assert_eq!(f.k3s_version.as_deref(), Some(K3S_VERSION), "{name}");
        let svc = f.k3s_service.as_ref().unwrap();
        let server = name.starts_with('s');
        assert_eq!(
            svc.server == slipway_model::facts::UnitState::Active,
            server,
            "{name}"
        );
        assert_eq!(
            svc.agent == slipway_model::facts::UnitState::Active,
            !server,
            "{name}"
        );
        assert_eq!(f.applied.as_ref().unwrap().k3s_version, K3S_VERSION);
        assert_eq!(f.os.as_ref().unwrap().booted.version, "40.20240906.3.0");
    }

    // kubectl on a server sees the cluster; an agent has no kubeconfig.
    let items = node_list(&t, "s2");
    assert_eq!(items.len(), 5);
    for i in &items {
        assert_eq!(ready(i), "True", "{i}");
        assert_eq!(i["status"]["nodeInfo"]["kubeletVersion"], K3S_VERSION);
        assert!(i["spec"].get("unschedulable").is_none());
    }
    let s1 = item(&items, "s1");
    assert_eq!(
        s1["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        "true"
    );
    assert_eq!(s1["metadata"]["labels"]["rack"], "r0");
    assert!(item(&items, "a1")["metadata"]["labels"]
        .get("node-role.kubernetes.io/control-plane")
        .is_none());
    let (status, _, stderr) = t.ssh("a1", "k3s kubectl get nodes -o json");
    assert_eq!(status, 1);
    assert!(stderr.contains("localhost:8080 was refused"), "{stderr}");

    // Cordon, drain, uncordon and delete are visible in the NodeList.
    t.ssh_ok("s1", "k3s kubectl cordon a1");
    let out = t.ssh_ok(
        "s1",
        "k3s kubectl drain a2 --ignore-daemonsets --delete-emptydir-data --timeout=120s",
    );
    assert_eq!(out, "node/a2 cordoned\nnode/a2 drained\n");
    let items = node_list(&t, "s3");
    for n in ["a1", "a2"] {
        let i = item(&items, n);
        assert_eq!(i["spec"]["unschedulable"], true, "{n}");
        assert!(i["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unschedulable"));
    }
    let c = cluster(&t);
    assert!(c.node("a2").unwrap().drained && !c.node("a1").unwrap().drained);
    t.ssh_ok("s1", "k3s kubectl uncordon a1");
    t.ssh_ok("s1", "k3s kubectl uncordon a2");
    let items = node_list(&t, "s1");
    assert!(item(&items, "a1")["spec"].get("unschedulable").is_none());
    assert!(!cluster(&t).node("a2").unwrap().drained);
    assert_eq!(
        t.ssh_ok("s1", "k3s kubectl delete node a2"),
        "node \"a2\" deleted\n"
    );
    let items = node_list(&t, "s1");
    assert_eq!(items.len(), 4);
    let (status, _, stderr) = t.ssh("s1", "k3s kubectl cordon a2");
    assert_eq!(status, 1);
    assert!(stderr.contains("NotFound"), "{stderr}");
    // Restarting its K3s registers the node again (the checks run again, and pass).
    t.ssh_ok("a2", "systemctl restart k3s-agent");
    assert!(cluster(&t).is_ready("a2"));

    // etcd snapshots land in the server's /var; agents have no etcd.
    let (status, _, stderr) = t.ssh("s2", "k3s etcd-snapshot save --name pre-upgrade");
    assert_eq!(status, 0, "{stderr}");
    let dir = t
        .fleet
        .node("s2")
        .unwrap()
        .var()
        .join("lib/rancher/k3s/server/db/snapshots");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with("pre-upgrade-s2-"), "{files:?}");
    assert!(stderr.contains(&files[0]));
    assert!(t.ssh_ok("s2", "k3s etcd-snapshot ls").contains(&files[0]));
    let (status, _, stderr) = t.ssh("a1", "k3s etcd-snapshot save");
    assert_eq!(status, 1, "{stderr}");

    // An agent rebooted over SSH comes back through the server its install recorded.
    let a1 = t.fleet.node("a1").unwrap();
    let boots = a1.state().unwrap().boots;
    t.ssh_may_drop("a1", "systemctl reboot");
    eventually("a1 rebooted", || {
        (a1.state().ok()?.boots > boots).then_some(())
    });
    eventually("a1 Ready again", || a1.k3s_ready().unwrap().then_some(()));
    assert_eq!(
        cluster(&t).events_of("a1").last().unwrap().kind,
        EventKind::Started
    );

    // Unknown commands fail clearly.
    for command in [
        "k3s frobnicate",
        "k3s kubectl apply -f x.yaml",
        "k3s kubectl get pods",
    ] {
        let (status, stdout, stderr) = t.ssh("s1", command);
        assert_eq!((status, stdout.as_str()), (1, ""), "{command}");
        assert!(stderr.contains("not simulated"), "{command}: {stderr}");
    }

    // The token is on the nodes (config.yaml, 0600) and nowhere in the simulator's state.
    for dir in [t.fleet.cluster_dir().to_path_buf()]
        .into_iter()
        .chain(t.fleet.nodes().iter().map(|n| n.control()))
    {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains(common::profile::TOKEN),
                "token leaked into {dir:?}"
            );
        }
    }
}

fn member_id(c: &ClusterState, name: &str) -> String {
    c.member(name)
        .unwrap_or_else(|| panic!("{name} is no member: {:#?}", c.members))
        .id
        .clone()
}

#[test]
fn quorum_reinstalls_etcd_conflicts_and_split_brain() {
    let lab = Lab::new(&["s1", "s2", "s3"], &[], &["s1", "s2", "s3"]);
    let t = start_named_fleet(&names(&["s1", "s2", "s3"]), fresh);
    t.fleet
        .node("s1")
        .unwrap()
        .install(&lab.ignition("s1", New), VarPolicy::Keep)
        .unwrap();
    install_all(&t, &["s2", "s3"].map(|n| (n, lab.ignition(n, New))));
    assert_eq!(cluster(&t).ready_nodes(), names(&["s1", "s2", "s3"]));

    // Quorum: with 2 of 3 servers stopped, the API and etcd refuse on the third.
    t.ssh_ok("s2", "systemctl stop k3s");
    t.ssh_ok("s3", "systemctl stop k3s");
    let (status, stdout, _) = t.ssh("s2", "systemctl is-active k3s");
    assert_eq!((status, stdout.as_str()), (3, "inactive\n"));
    for command in ["k3s kubectl get nodes -o json", "k3s etcd-snapshot save"] {
        let (status, _, stderr) = t.ssh("s1", command);
        assert_eq!(status, 1, "{command}");
        assert!(
            stderr.contains("etcdserver: request timed out"),
            "{command}: {stderr}"
        );
    }
    let c = cluster(&t);
    assert!(!c.has_quorum());
    assert!(c.ready_nodes().is_empty(), "no quorum, nobody Ready");
    // One back: 2 of 3 is a majority again.
    t.ssh_ok("s2", "systemctl start k3s");
    assert_eq!(node_list(&t, "s1").len(), 3);
    t.ssh_ok("s3", "systemctl restart k3s");
    assert_eq!(cluster(&t).ready_nodes().len(), 3);

    // A cold start: every server reboots at once; K3s starts from what the install left
    // (stamp present, etcd data in /var) and quorum comes back.
    let boots: Vec<u32> = t
        .fleet
        .nodes()
        .iter()
        .map(|n| n.state().unwrap().boots)
        .collect();
    for name in ["s1", "s2", "s3"] {
        t.fleet.node(name).unwrap().reboot().unwrap();
    }
    for (node, before) in t.fleet.nodes().iter().zip(boots) {
        eventually("rebooted", || {
            (node.state().ok()?.boots > before).then_some(())
        });
    }
    eventually("all Ready after a cold start", || {
        (cluster(&t).ready_nodes().len() == 3).then_some(())
    });
    let c = cluster(&t);
    assert_eq!(c.members.len(), 3);
    assert_eq!(c.events_of("s2").last().unwrap().kind, EventKind::Started);

    // A server reinstalled with its /var kept rejoins as the same etcd member.
    let before = member_id(&cluster(&t), "s2");
    t.fleet
        .node("s2")
        .unwrap()
        .install(&lab.ignition("s2", Exists), VarPolicy::Keep)
        .unwrap();
    let c = cluster(&t);
    assert_eq!(member_id(&c, "s2"), before);
    assert_eq!(c.members.len(), 3);
    assert!(c.is_ready("s2"));
    assert_eq!(c.events_of("s2").last().unwrap().kind, EventKind::Rejoined);

    // With /var lost, the old member is still listed: an etcd conflict, K3s refuses...
    let old = member_id(&c, "s3");
    let s3 = t.fleet.node("s3").unwrap();
    s3.install(&lab.ignition("s3", Exists), VarPolicy::Wipe)
        .unwrap();
    let c = cluster(&t);
    let open: Vec<_> = c
        .open_conflicts()
        .into_iter()
        .map(|x| (x.host.clone(), x.member_id.clone()))
        .collect();
    assert_eq!(open, vec![("s3".to_string(), old.clone())]);
    assert!(!c.is_ready("s3"));
    let (status, stdout, _) = t.ssh("s3", "systemctl is-active k3s");
    assert_eq!((status, stdout.as_str()), (3, "failed\n"));
    assert!(c.hosts["s3"]
        .failure
        .as_ref()
        .unwrap()
        .contains("duplicate node name"));
    // ...until the old member is removed (what Slipway does before replacing a server):
    // systemd keeps restarting K3s, and it joins as a new member.
    t.ssh_ok("s1", "k3s kubectl delete node s3");
    let c = eventually("s3 joined again", || {
        let c = cluster(&t);
        c.is_ready("s3").then_some(c)
    });
    let new = member_id(&c, "s3");
    assert_ne!(new, old);
    assert!(c.open_conflicts().is_empty());
    assert_eq!(c.members.len(), 3);

    // A second cluster-init while the cluster exists is a split-brain, and is recorded.
    assert!(c.split_brain.is_empty());
    t.fleet
        .node("s1")
        .unwrap()
        .install(&lab.ignition("s1", New), VarPolicy::Wipe)
        .unwrap();
    let c = cluster(&t);
    assert_eq!(c.split_brain.len(), 1, "{:#?}", c.split_brain);
    assert_eq!(c.split_brain[0].host, "s1");
    assert_eq!(
        c.split_brain[0].existing_cluster,
        c.cluster.as_ref().unwrap().id
    );
    assert!(c
        .events_of("s1")
        .iter()
        .any(|e| e.kind == EventKind::SplitBrain));
}

#[test]
fn joiners_need_a_live_endpoint_and_the_clusters_token() {
    // Agents try s2, then s1, then s3 (FQDNs; the simulator maps them by short name).
    let lab = Lab::new(
        &["s1", "s2", "s3"],
        &["a1", "a2", "a3"],
        &["s2", "s1", "s3"],
    );
    let t = start_named_fleet(&names(&["s1", "s2", "s3", "a1", "a2", "a3"]), fresh);
    t.fleet
        .node("s1")
        .unwrap()
        .install(&lab.ignition("s1", New), VarPolicy::Keep)
        .unwrap();
    for down in ["s2", "s3"] {
        let node = t.fleet.node(down).unwrap();
        node.inject(slipway_fleet_sim::Fault::NeverReturnsAfterReboot)
            .unwrap();
        node.reboot().unwrap();
        eventually("powered off", || (!node.is_up()).then_some(()));
    }

    // First endpoint down, second up: it joins through the second.
    let a1 = t.fleet.node("a1").unwrap();
    a1.install(&lab.ignition("a1", New), VarPolicy::Keep)
        .unwrap();
    let c = cluster(&t);
    assert!(c.is_ready("a1"), "{:#?}", c.hosts["a1"]);
    let joined = c
        .events_of("a1")
        .into_iter()
        .find(|e| e.kind == EventKind::Joined)
        .unwrap();
    assert!(
        joined.message.contains("via https://s1.lab.example:6443"),
        "{joined:?}"
    );
    assert_eq!(
        std::fs::read_to_string(
            a1.root()
                .join("etc/rancher/k3s/config.yaml.d/10-slipway-server.yaml")
        )
        .unwrap(),
        "server: \"https://s1.lab.example:6443\"\n"
    );

    // Every endpoint down: the joiner stays NotReady, its unit failing...
    t.ssh_ok("s1", "systemctl stop k3s");
    let a2 = t.fleet.node("a2").unwrap();
    a2.install(&lab.ignition("a2", New), VarPolicy::Keep)
        .unwrap();
    let c = cluster(&t);
    assert!(c.node("a2").is_none() && !a2.k3s_ready().unwrap());
    let failure = c.hosts["a2"].failure.clone().unwrap();
    assert!(
        failure.contains("no K3s API endpoint answered"),
        "{failure}"
    );
    for why in ["s2 is down", "connection refused", "s3 is down"] {
        assert!(failure.contains(why), "{failure}");
    }
    let (status, stdout, _) = t.ssh("a2", "systemctl is-active k3s-agent");
    assert_eq!((status, stdout.as_str()), (3, "failed\n"));
    // ...and joins once a server answers (systemd keeps retrying it).
    t.ssh_ok("s1", "systemctl start k3s");
    eventually("a2 joined", || a2.k3s_ready().unwrap().then_some(()));

    // A wrong token never gets in, however often K3s retries.
    let a3 = t.fleet.node("a3").unwrap();
    a3.install(
        &lab.ignition_with("a3", New, &secrets("not-the-cluster-token")),
        VarPolicy::Keep,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let c = cluster(&t);
    assert!(c.node("a3").is_none() && !a3.k3s_ready().unwrap());
    assert!(c.hosts["a3"]
        .failure
        .as_ref()
        .unwrap()
        .contains("401 Unauthorized"));
    let failures = c
        .events_of("a3")
        .into_iter()
        .filter(|e| e.kind == EventKind::StartFailed)
        .count();
    assert_eq!(failures, 1, "a failure is logged once, not at every retry");
    let (status, _, stderr) = t.ssh("a3", "systemctl restart k3s-agent");
    assert_eq!(status, 1);
    assert!(stderr.contains("k3s-agent.service failed"), "{stderr}");

    // K3sNeverReady: K3s runs, the node is not Ready.
    a1.inject(slipway_fleet_sim::Fault::K3sNeverReady).unwrap();
    assert_eq!(ready(item(&node_list(&t, "s1"), "a1")), "False");
    assert_eq!(t.ssh_ok("a1", "systemctl is-active k3s-agent"), "active\n");
    a1.clear(&slipway_fleet_sim::Fault::K3sNeverReady).unwrap();
    assert_eq!(ready(item(&node_list(&t, "s1"), "a1")), "True");
}

#[test]
fn a_config_ignition_refuses_fails_the_install_and_the_node_stays_down() {
    let t = start_named_fleet(&names(&["n1"]), fresh);
    let node = t.fleet.node("n1").unwrap();
    let err = node
        .install(r#"{"ignition":{"version":"9.9.9"}}"#, VarPolicy::Keep)
        .unwrap_err();
    match &err {
        slipway_fleet_sim::SimError::IgnitionFailed { node, log } => {
            assert_eq!(node, "n1");
            assert!(log.contains("version"), "{log}");
        }
        other => panic!("expected IgnitionFailed, got {other:?}"),
    }
    assert!(!node.is_up());
    assert!(t.fleet.cluster().unwrap().hosts["n1"].unit.is_none());
}
