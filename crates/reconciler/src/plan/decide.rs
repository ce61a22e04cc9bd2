//! `plan(desired, actual)`: the action per node, the safety rules, and the rollout order.

use std::collections::{BTreeSet, HashMap};

use slipway_model::facts::{NodeFacts, UnitState};
use slipway_model::inventory::{short_name, ReinstallMethod, Role};

use super::diff::diff_files;
use super::types::{
    Action, Actual, ActualNode, Desired, DesiredNode, FileDiff, KnownNode, NodeAction, Plan,
    Reason, ReasonCode, Summary, Wave, WaveKind, FORMAT_VERSION,
};

/// Files whose change alone is a K3s upgrade in place, not a reinstall.
const K3S_FILES: &[&str] = &["/usr/local/bin/k3s", "/usr/local/bin/k3s-install.sh"];

/// Compute the plan. Pure: the same inputs give the same plan, byte for byte.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    let by_name: HashMap<&str, &ActualNode> =
        actual.nodes.iter().map(|a| (a.name.as_str(), a)).collect();
    let known: HashMap<&str, &KnownNode> = actual
        .known_nodes
        .iter()
        .map(|k| (k.name.as_str(), k))
        .collect();
    let find = |d: &DesiredNode| {
        let short = short_name(&d.hostname);
        (
            by_name
                .get(d.name.as_str())
                .or_else(|| by_name.get(short))
                .copied(),
            known
                .get(d.name.as_str())
                .or_else(|| known.get(short))
                .copied(),
        )
    };

    let mut desired_nodes: Vec<&DesiredNode> = desired.nodes.iter().collect();
    desired_nodes.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));

    let mut drafts: Vec<Draft> = desired_nodes
        .iter()
        .map(|d| {
            let (a, k) = find(d);
            decide_node(d, a, k, &desired.commit)
        })
        .collect();

    // Nodes that exist but are gone from the inventory.
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for d in &desired.nodes {
        claimed.insert(d.name.as_str());
        claimed.insert(short_name(&d.hostname));
    }
    let mut gone: BTreeSet<&str> = BTreeSet::new();
    gone.extend(actual.known_nodes.iter().map(|k| k.name.as_str()));
    gone.extend(actual.nodes.iter().map(|a| a.name.as_str()));
    for name in gone.into_iter().filter(|n| !claimed.contains(n)) {
        drafts.push(decide_removal(
            name,
            by_name.get(name).copied(),
            known.get(name).copied(),
        ));
    }

    bootstrap_rules(&mut drafts, actual.cluster_exists);
    quorum_rules(&mut drafts);
    new_cluster_rules(&mut drafts, actual.cluster_exists);
    server_skew_rule(&mut drafts);
    servers_first_rule(&mut drafts);

    let waves = order(
        &drafts,
        actual.cluster_exists,
        desired.policy.max_unavailable_agents,
    );
    let nodes: Vec<NodeAction> = drafts.into_iter().map(|d| d.action).collect();
    let mut summary = Summary::default();
    for n in &nodes {
        match n.action {
            Action::Install => summary.install += 1,
            Action::Reinstall => summary.reinstall += 1,
            Action::Replace => summary.replace += 1,
            Action::UpgradeOs | Action::UpgradeK3s => summary.upgrade += 1,
            Action::Remove => summary.remove += 1,
            Action::None => summary.unchanged += 1,
            Action::Blocked => summary.blocked += 1,
        }
    }
    Plan {
        format_version: FORMAT_VERSION,
        cluster: desired.cluster_name.clone(),
        commit: desired.commit.clone(),
        author: desired.author.clone(),
        signer: desired.signer.clone(),
        cluster_exists: actual.cluster_exists,
        nodes,
        waves,
        summary,
    }
}

/// A node's action while the cross-node rules are applied.
struct Draft {
    action: NodeAction,
    /// Whether the config it applies sets `cluster-init` (installs, reinstalls, replaces).
    cluster_init: bool,
    /// K3s version now, when known.
    k3s_now: Option<String>,
    /// K3s version after the plan, when it changes.
    k3s_target: Option<String>,
    /// For servers: why it does not count as a healthy etcd member now (`None`: healthy).
    down: Option<String>,
    /// Whether it is an etcd member now.
    member: bool,
}

impl Draft {
    fn role(&self) -> Option<Role> {
        self.action.role
    }

    fn block(&mut self, reason: Reason) {
        let a = &mut self.action;
        if a.action != Action::Blocked {
            // `None` here means the action was never decided (the node could not be read).
            a.intended = Some(a.action).filter(|i| *i != Action::None);
            a.action = Action::Blocked;
            a.steps.clear();
        }
        a.reasons.push(reason);
    }

    /// The K3s version it runs after this plan (its current one when blocked).
    fn k3s_after(&self) -> Option<&str> {
        match (&self.k3s_target, self.action.action) {
            (Some(t), a) if a != Action::Blocked => Some(t),
            _ => self.k3s_now.as_deref(),
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn decide_node(
    d: &DesiredNode,
    a: Option<&ActualNode>,
    known: Option<&KnownNode>,
    commit: &str,
) -> Draft {
    let facts = a.map(|a| &a.facts);
    let applied = facts.and_then(|f| f.applied.as_ref());
    let recorded_macs = a.map_or(&[][..], |a| &a.recorded_macs[..]);
    let is_known = known.is_some() || applied.is_some() || !recorded_macs.is_empty();
    let reachable = facts.is_some_and(NodeFacts::is_reachable);
    let k3s_now = facts
        .and_then(|f| f.k3s_version.clone())
        .or_else(|| applied.map(|p| p.k3s_version.clone()));
    let member = d.role == Role::Server && is_known;
    let mut draft = Draft {
        action: NodeAction {
            node: d.name.clone(),
            hostname: Some(d.hostname.clone()),
            role: Some(d.role),
            bootstrap: d.bootstrap,
            action: Action::None,
            intended: None,
            reasons: Vec::new(),
            steps: Vec::new(),
            diff: Vec::new(),
        },
        cluster_init: false,
        k3s_now: k3s_now.clone(),
        k3s_target: None,
        down: if d.role == Role::Server {
            down_reason(facts, known)
        } else {
            None
        },
        member,
    };
    let labels = (
        format!(
            "applied, commit {}",
            short(applied.map_or("", |p| p.commit.as_str()))
        ),
        format!("desired, commit {}", short(commit)),
    );
    let diff = |a: Option<&ActualNode>| -> Option<Vec<FileDiff>> {
        a.and_then(|a| a.applied_files.as_ref())
            .map(|old| diff_files(old, &d.files, &labels.0, &labels.1))
    };

    // Replace: the name stays, the hardware or disk does not.
    let mut replace = Vec::new();
    if !recorded_macs.is_empty() && !recorded_macs.iter().any(|m| d.macs.contains(m)) {
        replace.push(Reason::new(
            ReasonCode::MacChanged,
            format!(
                "MAC {} → {}: new hardware under the same host name",
                join(recorded_macs),
                join(&d.macs)
            ),
        ));
    }
    if let Some(disk) = a.and_then(|a| a.recorded_disk.as_deref()) {
        if disk != d.install_disk {
            replace.push(Reason::new(
                ReasonCode::DiskChanged,
                format!("install disk {disk} → {}", d.install_disk),
            ));
        }
    }
    if !replace.is_empty() {
        let na = &mut draft.action;
        na.action = Action::Replace;
        na.reasons = replace;
        if !reachable {
            na.reasons.push(Reason::new(
                ReasonCode::DrainSkipped,
                format!(
                    "the old machine is unreachable ({}): the drain is skipped",
                    unreachable_reason(facts)
                ),
            ));
        }
        na.diff = diff(a).unwrap_or_default();
        na.steps = replace_steps(d, reachable);
        draft.cluster_init = d.files.cluster_init();
        draft.k3s_target = Some(d.k3s_version.clone());
        k3s_checks(&mut draft, &d.k3s_version);
        return draft;
    }

    if !is_known {
        let na = &mut draft.action;
        na.action = Action::Install;
        na.reasons.push(Reason::new(
            ReasonCode::NewNode,
            format!(
                "new node: no applied.json and not in the cluster; installs FCOS {} and K3s {} to {} when {} netboots",
                d.os_version,
                d.k3s_version,
                d.install_disk,
                d.macs.first().map_or_else(|| "it".to_string(), |m| m.to_string())
            ),
        ));
        na.steps = install_steps(d);
        draft.cluster_init = d.files.cluster_init();
        draft.k3s_target = Some(d.k3s_version.clone());
        return draft;
    }

    let Some(facts) = facts.filter(|f| f.is_reachable()) else {
        draft.block(Reason::new(
            ReasonCode::Unreachable,
            format!("unreachable: {}", unreachable_reason(facts)),
        ));
        return draft;
    };

    let Some(applied) = applied else {
        if let Some(e) = facts
            .errors
            .iter()
            .find(|e| e.command.contains("applied.json"))
        {
            draft.block(Reason::new(
                ReasonCode::FactMissing,
                format!(
                    "could not read applied.json (`{}`: {}): what it runs is unknown",
                    e.command, e.message
                ),
            ));
            return draft;
        }
        let na = &mut draft.action;
        na.action = Action::Reinstall;
        na.reasons.push(Reason::new(
            ReasonCode::NotInstalledBySlipway,
            "in the cluster, but without /etc/slipway/applied.json: not installed by Slipway",
        ));
        na.steps = reinstall_steps(d);
        draft.cluster_init = d.files.cluster_init();
        draft.k3s_target = Some(d.k3s_version.clone());
        k3s_checks(&mut draft, &d.k3s_version);
        netboot_check(&mut draft, d, facts);
        return draft;
    };

    let os_now = facts
        .os
        .as_ref()
        .map(|o| o.booted.version.clone())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| applied.os_version.clone());
    let k3s_now = k3s_now.unwrap_or_else(|| applied.k3s_version.clone());
    let os_moved = os_now != d.os_version;
    let k3s_moved = k3s_now != d.k3s_version;
    let mut reasons = Vec::new();
    let mut files_only_k3s = false;
    let hash_changed = applied.config_hash != d.config_hash;
    if hash_changed {
        reasons.push(Reason::new(
            ReasonCode::ConfigChanged,
            format!(
                "config hash {} → {} (applied at commit {})",
                short(&applied.config_hash),
                short(&d.config_hash),
                short(&applied.commit)
            ),
        ));
        match diff(a) {
            None => reasons.push(Reason::new(
                ReasonCode::NoAppliedFiles,
                format!(
                    "the config of commit {} could not be re-rendered: no file diff to show",
                    short(&applied.commit)
                ),
            )),
            Some(diffs) => {
                files_only_k3s =
                    !diffs.is_empty() && diffs.iter().all(|f| K3S_FILES.contains(&f.path.as_str()));
                file_reasons(&diffs, &mut reasons);
                draft.action.diff = diffs;
            }
        }
    }
    if os_moved {
        reasons.push(Reason::new(
            ReasonCode::OsChanged,
            format!("FCOS {os_now} → {}", d.os_version),
        ));
    }
    if k3s_moved {
        reasons.push(Reason::new(
            ReasonCode::K3sChanged,
            format!("K3s {k3s_now} → {}", d.k3s_version),
        ));
    }
    let action = match (hash_changed, os_moved, k3s_moved) {
        (false, false, false) => Action::None,
        (false, true, false) => Action::UpgradeOs,
        (false, false, true) => Action::UpgradeK3s,
        (true, false, true) if files_only_k3s => Action::UpgradeK3s,
        _ => Action::Reinstall,
    };
    draft.action.action = action;
    draft.action.reasons = reasons;
    if k3s_moved {
        draft.k3s_target = Some(d.k3s_version.clone());
    }
    match action {
        Action::Reinstall => {
            draft.action.steps = reinstall_steps(d);
            draft.cluster_init = d.files.cluster_init();
            netboot_check(&mut draft, d, facts);
        }
        Action::UpgradeOs => draft.action.steps = upgrade_os_steps(d),
        Action::UpgradeK3s => draft.action.steps = upgrade_k3s_steps(d),
        _ => {}
    }
    if k3s_moved && action != Action::None {
        k3s_checks(&mut draft, &d.k3s_version);
    }
    draft
}

fn file_reasons(diffs: &[FileDiff], reasons: &mut Vec<Reason>) {
    if diffs.is_empty() {
        reasons.push(Reason::new(
            ReasonCode::ChangeNotShown,
            "no file, unit, user, kernel argument or disk layout differs: the change is in a part of the config the plan does not show",
        ));
        return;
    }
    let visible: Vec<&str> = diffs
        .iter()
        .filter(|f| {
            f.diff.is_some()
                || f.note.is_some()
                || !f.attributes.is_empty()
                || f.change != super::types::FileChange::Modified
        })
        .map(|f| f.path.as_str())
        .collect();
    if !visible.is_empty() {
        reasons.push(Reason::new(
            ReasonCode::FilesChanged,
            format!(
                "{} changed: {}",
                plural(visible.len(), "file"),
                list(&visible)
            ),
        ));
    }
    let secret: Vec<&str> = diffs
        .iter()
        .filter(|f| f.secret_changed)
        .map(|f| f.path.as_str())
        .collect();
    if !secret.is_empty() {
        reasons.push(Reason::new(
            ReasonCode::SecretChanged,
            format!("a secret changed in {} (not shown)", list(&secret)),
        ));
    }
}

fn decide_removal(name: &str, a: Option<&ActualNode>, known: Option<&KnownNode>) -> Draft {
    let facts = a.map(|a| &a.facts);
    let role = known.and_then(|k| k.role);
    let reachable = facts.is_some_and(NodeFacts::is_reachable);
    let mut reasons = vec![Reason::new(
        ReasonCode::RemovedFromInventory,
        "no longer in the inventory",
    )];
    if !reachable {
        reasons.push(Reason::new(
            ReasonCode::DrainSkipped,
            format!(
                "unreachable ({}): the drain is skipped; its pods are rescheduled when the node object is deleted",
                unreachable_reason(facts)
            ),
        ));
    }
    let mut steps = Vec::new();
    if reachable {
        steps.push("cordon and drain".to_string());
    }
    if role == Some(Role::Server) {
        steps.push("remove its etcd member".to_string());
    }
    steps.push("delete the node object".to_string());
    steps.push("disarm its boot (the boot server forgets its MACs)".to_string());
    Draft {
        action: NodeAction {
            node: name.to_string(),
            hostname: None,
            role,
            bootstrap: false,
            action: Action::Remove,
            intended: None,
            reasons,
            steps,
            diff: Vec::new(),
        },
        cluster_init: false,
        k3s_now: facts.and_then(|f| f.k3s_version.clone()),
        k3s_target: None,
        down: if role == Some(Role::Server) {
            down_reason(facts, known)
        } else {
            None
        },
        member: role == Some(Role::Server),
    }
}

fn unreachable_reason(facts: Option<&NodeFacts>) -> String {
    match facts.map(|f| &f.reachability) {
        None => "no facts were gathered".to_string(),
        Some(slipway_model::facts::Reachability::Unreachable { reason }) => reason.clone(),
        Some(slipway_model::facts::Reachability::Reachable) => "reachable".to_string(),
    }
}

/// Why a server is not a healthy etcd member now; `None` when it is.
fn down_reason(facts: Option<&NodeFacts>, known: Option<&KnownNode>) -> Option<String> {
    let Some(f) = facts.filter(|f| f.is_reachable()) else {
        return Some(format!("unreachable: {}", unreachable_reason(facts)));
    };
    if known.and_then(|k| k.ready) == Some(false) {
        return Some("NotReady in K3s".into());
    }
    match &f.k3s_service {
        None => Some("K3s state unknown".into()),
        Some(s) if s.server != UnitState::Active => {
            Some(format!("k3s.service is {}", unit_word(&s.server)))
        }
        Some(_) => None,
    }
}

fn unit_word(s: &UnitState) -> &str {
    match s {
        UnitState::Active => "active",
        UnitState::Activating => "activating",
        UnitState::Deactivating => "deactivating",
        UnitState::Inactive => "inactive",
        UnitState::Failed => "failed",
        UnitState::Other(o) => o,
    }
}

fn netboot_check(draft: &mut Draft, d: &DesiredNode, facts: &NodeFacts) {
    if d.reinstall_method != ReinstallMethod::PxeBootnext {
        return;
    }
    if let Some(entries) = &facts.boot_entries {
        if entries.network_entry().is_none() {
            draft.block(Reason::new(
                ReasonCode::NoNetbootEntry,
                "no network boot entry in the EFI boot entries: BootNext cannot make it netboot (enable PXE in the firmware, or use reinstall_method: pxe-always)",
            ));
        }
    }
}

/// A K3s version: `v1.30.4+k3s1` → (1, 30, 4).
fn k3s_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.strip_prefix('v').unwrap_or(v);
    let core = core.split(['+', '-']).next().unwrap_or(core);
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

fn minor_name(major: u64, minor: u64) -> String {
    format!("v{major}.{minor}")
}

/// K3s's upgrade rules against the node's current version: no skipped minor, no minor
/// downgrade.
fn k3s_checks(draft: &mut Draft, target: &str) {
    let Some(now) = draft.k3s_now.clone() else {
        return;
    };
    if now == target {
        return;
    }
    let (Some(from), Some(to)) = (k3s_version(&now), k3s_version(target)) else {
        draft.block(Reason::new(
            ReasonCode::K3sVersionUnreadable,
            format!("cannot compare K3s versions `{now}` and `{target}`"),
        ));
        return;
    };
    if to > from && (to.0 != from.0 || to.1 > from.1 + 1) {
        draft.block(Reason::new(
            ReasonCode::K3sSkippedMinor,
            format!(
                "K3s {now} → {target} skips a minor version: upgrade to {} first",
                minor_name(from.0, from.1 + 1)
            ),
        ));
        return;
    }
    if (to.0, to.1) < (from.0, from.1) {
        draft.block(Reason::new(
            ReasonCode::K3sDowngrade,
            format!(
                "K3s {now} → {target} downgrades the minor version ({} → {}): K3s does not support it",
                minor_name(from.0, from.1),
                minor_name(to.0, to.1)
            ),
        ));
    }
}

/// Configs may set `cluster-init` only on the bootstrap server of a new cluster.
fn bootstrap_rules(drafts: &mut [Draft], cluster_exists: bool) {
    for d in drafts.iter_mut() {
        let applies_config = matches!(
            d.action.action,
            Action::Install | Action::Reinstall | Action::Replace
        );
        if !applies_config {
            continue;
        }
        if d.cluster_init && cluster_exists {
            d.block(Reason::new(
                ReasonCode::BootstrapReinit,
                "unsafe: its desired config sets cluster-init: true, which would initialise a second cluster while one exists; render it as a joining server",
            ));
        } else if d.cluster_init && !d.action.bootstrap {
            d.block(Reason::new(
                ReasonCode::BootstrapReinit,
                "unsafe: its desired config sets cluster-init: true but it is not the bootstrap server; two servers would start two clusters",
            ));
        } else if !cluster_exists && d.action.bootstrap && !d.cluster_init {
            d.block(Reason::new(
                ReasonCode::BootstrapJoinsNothing,
                "no cluster exists and its desired config joins one instead of initialising it (no cluster-init: true)",
            ));
        }
    }
}

/// Servers go one at a time; refuse a step that would leave etcd without quorum.
fn quorum_rules(drafts: &mut [Draft]) {
    let members: Vec<(String, Option<String>)> = drafts
        .iter()
        .filter(|d| d.member)
        .map(|d| (d.action.node.clone(), d.down.clone()))
        .collect();
    let total = members.len();
    let down: Vec<String> = members
        .iter()
        .filter_map(|(n, why)| why.as_ref().map(|w| format!("{n}: {w}")))
        .collect();
    let healthy = total - down.len();
    for d in drafts.iter_mut() {
        let act = d.action.action;
        if !d.member || !act.is_disruptive() {
            continue;
        }
        if total == 1 {
            d.action.reasons.push(Reason::new(
                ReasonCode::SingleServer,
                "the only server: the Kubernetes API is unavailable until it is back",
            ));
            continue;
        }
        let removes = matches!(act, Action::Remove | Action::Replace);
        let after_members = total - usize::from(removes);
        let after_healthy = healthy - usize::from(d.down.is_none());
        let quorum = after_members / 2 + 1;
        if after_healthy < quorum {
            let already = if down.is_empty() {
                "none down now".to_string()
            } else {
                format!("{} down now ({})", down.len(), down.join("; "))
            };
            let verb = if removes { "removing" } else { "taking" };
            let tail = if removes { "" } else { " down" };
            d.block(Reason::new(
                ReasonCode::Quorum,
                format!(
                    "etcd quorum: {total} members, {already}; {verb} {}{tail} leaves {after_healthy} of {after_members} healthy, below the quorum of {quorum}",
                    d.action.node
                ),
            ));
        }
    }
}

/// In a new cluster, every other node waits for the bootstrap server.
fn new_cluster_rules(drafts: &mut [Draft], cluster_exists: bool) {
    if cluster_exists {
        return;
    }
    let Some(boot) = drafts
        .iter()
        .find(|d| d.action.bootstrap && d.action.action == Action::Blocked)
        .map(|d| d.action.node.clone())
    else {
        return;
    };
    for d in drafts.iter_mut() {
        let joins = matches!(
            d.action.action,
            Action::Install | Action::Reinstall | Action::Replace
        );
        if joins && !d.action.bootstrap {
            d.block(Reason::new(
                ReasonCode::WaitsForBootstrap,
                format!("no cluster to join: the bootstrap server {boot} is blocked"),
            ));
        }
    }
}

/// Servers stay within one minor version of each other: a server upgrade that would leave
/// another server (one that is not upgraded) two minors behind waits.
fn server_skew_rule(drafts: &mut [Draft]) {
    // Blocking one server can lower the floor for the others: repeat until nothing changes.
    loop {
        let floor = drafts
            .iter()
            .filter(|d| d.role() == Some(Role::Server) && d.action.action != Action::Remove)
            .filter_map(|d| {
                let v = d.k3s_after()?;
                Some((k3s_version(v)?, d.action.node.clone(), v.to_string()))
            })
            .min();
        let Some(((major, minor, _), server, version)) = floor else {
            return;
        };
        let mut changed = false;
        for d in drafts.iter_mut() {
            if d.role() != Some(Role::Server) || d.action.action == Action::Blocked {
                continue;
            }
            let Some(target) = d.k3s_target.clone() else {
                continue;
            };
            if k3s_version(&target).is_some_and(|t| t.0 > major || t.1 > minor + 1) {
                d.block(Reason::new(
                    ReasonCode::K3sServerSkew,
                    format!(
                        "K3s {target} would be two minor versions ahead of {server}, which stays at {version}: servers stay within one minor of each other; bring {server} to {} first",
                        minor_name(major, minor + 1)
                    ),
                ));
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// K3s upgrades servers before agents: an agent never runs a newer K3s than a server.
fn servers_first_rule(drafts: &mut [Draft]) {
    let floor = drafts
        .iter()
        .filter(|d| d.role() == Some(Role::Server) && d.action.action != Action::Remove)
        .filter_map(|d| {
            let v = d.k3s_after()?;
            Some((k3s_version(v)?, d.action.node.clone(), v.to_string()))
        })
        .min();
    let Some((floor_v, server, server_version)) = floor else {
        return;
    };
    for d in drafts.iter_mut() {
        if d.role() != Some(Role::Agent) || d.action.action == Action::Blocked {
            continue;
        }
        let Some(target) = d.k3s_target.clone() else {
            continue;
        };
        if k3s_version(&target).is_some_and(|t| t > floor_v) {
            d.block(Reason::new(
                ReasonCode::K3sServersFirst,
                format!(
                    "K3s {target} would be newer than {server}'s {server_version}: servers upgrade before agents"
                ),
            ));
        }
    }
}

fn order(drafts: &[Draft], cluster_exists: bool, max_agents: u32) -> Vec<Wave> {
    let acting = |d: &&Draft| !matches!(d.action.action, Action::None | Action::Blocked);
    let servers: Vec<&Draft> = drafts
        .iter()
        .filter(acting)
        .filter(|d| d.role() == Some(Role::Server))
        .collect();
    // Rank: bootstrap of a new cluster, new servers (more members before any goes down),
    // the rest, the bootstrap of an existing cluster; then by name.
    let rank = |d: &Draft| match (d.action.bootstrap, cluster_exists, d.action.action) {
        (true, false, _) => 0,
        (true, true, _) => 3,
        (false, _, Action::Install) => 1,
        _ => 2,
    };
    let mut servers = servers;
    servers.sort_by(|a, b| (rank(a), &a.action.node).cmp(&(rank(b), &b.action.node)));
    let mut waves: Vec<Wave> = servers
        .iter()
        .map(|d| Wave {
            number: 0,
            kind: WaveKind::Server,
            nodes: vec![d.action.node.clone()],
        })
        .collect();
    let agents = drafts
        .iter()
        .filter(acting)
        .filter(|d| d.role() != Some(Role::Server));
    let mut new_agents = Vec::new();
    let mut serving: BTreeSet<&str> = BTreeSet::new();
    for d in agents {
        if d.action.action == Action::Install {
            new_agents.push(d.action.node.clone());
        } else {
            serving.insert(&d.action.node);
        }
    }
    if !new_agents.is_empty() {
        new_agents.sort();
        waves.push(Wave {
            number: 0,
            kind: WaveKind::NewAgents,
            nodes: new_agents,
        });
    }
    let batch = usize::try_from(max_agents.max(1)).unwrap_or(1);
    let serving: Vec<String> = serving.into_iter().map(str::to_string).collect();
    for chunk in serving.chunks(batch) {
        waves.push(Wave {
            number: 0,
            kind: WaveKind::Agents,
            nodes: chunk.to_vec(),
        });
    }
    for (i, w) in waves.iter_mut().enumerate() {
        w.number = i + 1;
    }
    waves
}

fn install_steps(d: &DesiredNode) -> Vec<String> {
    vec![
        format!("serve its iPXE script and Ignition to {}", join(&d.macs)),
        format!(
            "install FCOS {} to {} on its next netboot",
            d.os_version, d.install_disk
        ),
        "wait until it is Ready in K3s".into(),
    ]
}

fn netboot_step(d: &DesiredNode) -> String {
    match d.reinstall_method {
        ReinstallMethod::PxeBootnext => "set EFI BootNext to the network entry and reboot".into(),
        ReinstallMethod::PxeAlways => "arm the boot server for one install and reboot".into(),
    }
}

fn reinstall_steps(d: &DesiredNode) -> Vec<String> {
    vec![
        "cordon and drain".into(),
        netboot_step(d),
        format!(
            "install FCOS {} to {}, keeping /var",
            d.os_version, d.install_disk
        ),
        "wait for SSH with the new config, then Ready in K3s".into(),
        "uncordon".into(),
    ]
}

fn upgrade_os_steps(d: &DesiredNode) -> Vec<String> {
    vec![
        "cordon and drain".into(),
        format!("rpm-ostree deploy {} and reboot", d.os_version),
        "wait until it is Ready in K3s".into(),
        "uncordon".into(),
    ]
}

fn upgrade_k3s_steps(d: &DesiredNode) -> Vec<String> {
    vec![
        "cordon and drain".into(),
        format!(
            "replace the K3s binary with {} and restart K3s",
            d.k3s_version
        ),
        "wait until it is Ready in K3s".into(),
        "uncordon".into(),
    ]
}

fn replace_steps(d: &DesiredNode, reachable: bool) -> Vec<String> {
    let mut s = Vec::new();
    if reachable {
        s.push("cordon and drain the old machine".to_string());
    }
    if d.role == Role::Server {
        s.push("remove the old etcd member first".to_string());
    }
    s.push("delete the old node object".to_string());
    s.push("disarm the old machine's boot".to_string());
    s.extend(install_steps(d));
    s
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(items: &[&str]) -> String {
    const SHOWN: usize = 6;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{} and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3s_versions_parse() {
        assert_eq!(k3s_version("v1.30.4+k3s1"), Some((1, 30, 4)));
        assert_eq!(k3s_version("v1.29.0-rc1+k3s1"), Some((1, 29, 0)));
        assert_eq!(k3s_version("1.28"), Some((1, 28, 0)));
        assert_eq!(k3s_version("latest"), None);
    }
}
