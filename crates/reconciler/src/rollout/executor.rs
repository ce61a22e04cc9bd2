//! Drives a [`Journal`] to its end: wave by wave, each node through its steps, every step
//! recorded before it acts. Any failure or timeout halts the rollout: no further node is
//! touched, the failing node keeps its cordon, and the journal says what failed and what to
//! do next.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use rand::RngCore as _;
use slipway_model::facts::{AppliedConfig, NodeFacts};
use slipway_model::inventory::{ReinstallMethod, Role};

use super::effects::Effects;
use super::journal::{Halt, Journal, NodeRecord, RolloutState};
use super::progress::Progress;
use super::steps::{
    parse_kube_nodes, quorum_without, reboot_probe, KubeNodeStatus, RebootProbe, Step,
};
use crate::plan::Action;

/// How often waits look again.
pub const POLL: Duration = Duration::from_millis(250);

/// Reboots that may come back unchanged before the step gives up.
const MAX_REBOOT_ATTEMPTS: u32 = 2;

/// Where `/var`'s canary lives on a node.
pub const CANARY: &str = "/var/lib/slipway/canary";

/// What a node must end up as.
#[derive(Debug, Clone)]
pub struct NodeGoal {
    /// Node name.
    pub name: String,
    /// K3s's name for it.
    pub k3s_name: String,
    /// Server or agent.
    pub role: Role,
    /// The config hash `applied.json` must show.
    pub config_hash: String,
    /// The FCOS release it must boot.
    pub os_version: String,
    /// The K3s version it must run.
    pub k3s_version: String,
    /// How it is made to netboot.
    pub method: ReinstallMethod,
}

/// Where a node fetches the K3s artifacts of an in-place upgrade.
#[derive(Debug, Clone)]
pub struct K3sArtifacts {
    /// The binary's URL on the boot server.
    pub binary_url: String,
    /// Its sha256.
    pub binary_sha256: String,
    /// The install script's URL.
    pub script_url: String,
    /// Its sha256.
    pub script_sha256: String,
}

/// Time limits, from `cluster.yaml`'s `rollout.timeouts`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Drain.
    pub drain: Duration,
    /// Reboot → Ignition fetched (or the release staged and booted).
    pub install: Duration,
    /// → SSH with the new configuration.
    pub boot: Duration,
    /// → Ready in K3s.
    pub ready: Duration,
}

/// Everything the executor needs besides the journal.
pub struct Executor<'a, E: Effects> {
    /// The world.
    pub effects: &'a E,
    /// Where the journal is written.
    pub state: &'a Path,
    /// Every node of the inventory (not only those in the journal): goals and roles.
    pub goals: BTreeMap<String, NodeGoal>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Progress display.
    pub progress: &'a dyn Progress,
    /// K3s artifacts for `replace-k3s`.
    pub k3s: K3sArtifacts,
    /// Test hook: `node:step` or `node:step/sent` — the process kills itself (SIGKILL) there.
    pub kill_at: Option<String>,
    /// Asked before a wave starts ([`Gate::Wave`]: a maintenance window that closed)
    /// and between steps ([`Gate::Step`]: a shutdown): `Some(why)` pauses the rollout there,
    /// the journal consistent, to be resumed later.
    pub gate: Option<&'a (dyn Fn(Gate) -> Option<String> + Sync)>,
}

/// Where the executor asks whether it may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Before a wave starts (between nodes), with the roles it takes out of service
    /// (empty when it only installs new machines).
    Wave(Vec<Role>),
    /// Between two steps of a node.
    Step,
}

/// How one node's run ended.
enum NodeEnd {
    Finished,
    Halted(Halt),
    Paused(String),
}

/// What a reboot step waits for.
struct RebootGoal<'a> {
    node: &'a str,
    limit: Duration,
    what: &'a str,
    /// The facts show the goal reached.
    arrived: &'a dyn Fn(&NodeFacts) -> bool,
    /// The boot server saw the Ignition fetched (the install is under way).
    fetched: &'a dyn Fn() -> bool,
    /// Run before each reboot (BootNext, staging a release).
    before_reboot: &'a dyn Fn(&NodeFacts) -> StepResult,
}

/// A failed step.
#[derive(Debug, Clone)]
struct StepError {
    message: String,
    hint: String,
    data_loss: bool,
}

fn fail(message: impl Into<String>, hint: impl Into<String>) -> StepError {
    StepError {
        message: message.into(),
        hint: hint.into(),
        data_loss: false,
    }
}

type StepResult = std::result::Result<(), StepError>;

impl<E: Effects> Executor<'_, E> {
    /// Run the journal until it is done, halts or pauses. Returns the final journal.
    pub fn run(&self, journal: Journal) -> Result<Journal> {
        let journal = Mutex::new(journal);
        {
            let mut j = lock(&journal);
            j.state = RolloutState::Running;
            j.halt = None;
            j.paused = None;
            j.save(self.state)?;
        }
        let waves = lock(&journal).waves();
        for (wave, members) in waves {
            let pending: Vec<usize> = members
                .into_iter()
                .filter(|&i| !lock(&journal).nodes[i].is_done())
                .collect();
            if pending.is_empty() {
                continue;
            }
            let mut roles: Vec<Role> = pending
                .iter()
                .map(|&i| lock(&journal).nodes[i].clone())
                .filter(|n| n.action.is_disruptive())
                .map(|n| n.role)
                .collect();
            roles.dedup();
            if let Some(why) = self.gate.and_then(|g| g(Gate::Wave(roles))) {
                return self.pause(&journal, why);
            }
            let _span = tracing::info_span!("wave", wave).entered();
            let results: Vec<Result<NodeEnd>> = std::thread::scope(|scope| {
                let handles: Vec<_> = pending
                    .iter()
                    .map(|&i| {
                        let journal = &journal;
                        scope.spawn(move || self.run_node(journal, i))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("a node's thread panicked")))
                    })
                    .collect()
            });
            let mut halt = None;
            let mut paused = None;
            for r in results {
                match r? {
                    NodeEnd::Finished => {}
                    NodeEnd::Halted(h) => {
                        halt.get_or_insert(h);
                    }
                    NodeEnd::Paused(why) => {
                        paused.get_or_insert(why);
                    }
                }
            }
            if let (None, Some(why)) = (&halt, paused) {
                return self.pause(&journal, why);
            }
            if let Some(h) = halt {
                let mut j = lock(&journal);
                j.state = RolloutState::Halted;
                j.halt = Some(h);
                j.save(self.state)?;
                return Ok(j.clone());
            }
        }
        let mut j = lock(&journal);
        j.state = RolloutState::Done;
        j.save(self.state)?;
        Ok(j.clone())
    }

    fn pause(&self, journal: &Mutex<Journal>, why: String) -> Result<Journal> {
        let mut j = lock(journal);
        j.state = RolloutState::Paused;
        j.paused = Some(why);
        j.save(self.state)?;
        Ok(j.clone())
    }

    /// One node through its remaining steps.
    fn run_node(&self, journal: &Mutex<Journal>, i: usize) -> Result<NodeEnd> {
        let node = lock(journal).nodes[i].node.clone();
        let _span = tracing::info_span!("node", node = %node).entered();
        let mut first = true;
        loop {
            let (step, total, done) = {
                let mut j = lock(journal);
                let rec = &mut j.nodes[i];
                let Some(step) = rec.current() else {
                    return Ok(NodeEnd::Finished);
                };
                // Between nodes the wave loop asks; between steps, here (a shutdown stops
                // a node after a step, never mid-step).
                if !first {
                    if let Some(why) = self.gate.and_then(|g| g(Gate::Step)) {
                        return Ok(NodeEnd::Paused(why));
                    }
                }
                first = false;
                rec.started = true;
                rec.error = None;
                rec.started_unix_ms.get_or_insert_with(unix_ms);
                let (total, done) = (rec.steps.len(), rec.done);
                j.save(self.state)?;
                (step, total, done)
            };
            self.kill_hook(&node, step.name());
            let _step_span = tracing::info_span!("step", step = %step).entered();
            self.progress.step_started(&node, step, done, total);
            match self.run_step(journal, i, step) {
                Ok(()) => {
                    let mut j = lock(journal);
                    let rec = &mut j.nodes[i];
                    rec.done += 1;
                    rec.started = false;
                    if rec.is_done() {
                        rec.finished_unix_ms = Some(unix_ms());
                    }
                    rec.boot_id_before = None;
                    rec.reboot_sent = false;
                    rec.reboot_attempts = 0;
                    j.save(self.state)?;
                    self.progress.step_done(&node, step, done + 1, total);
                }
                Err(e) => {
                    let mut j = lock(journal);
                    let rec = &mut j.nodes[i];
                    rec.error = Some(e.message.clone());
                    let cordoned = rec.cordoned;
                    let k3s_name = rec.k3s_name.clone();
                    j.save(self.state)?;
                    drop(j);
                    self.progress.step_failed(&node, step, &e.message);
                    let mut hint = e.hint;
                    if cordoned {
                        hint.push_str(&format!(
                            "; {node} is still cordoned (Slipway leaves it so): `slipway rollout resume` uncordons it when it finishes, or run `k3s kubectl uncordon {}` yourself",
                            k3s_name
                        ));
                    }
                    return Ok(NodeEnd::Halted(Halt {
                        node,
                        step,
                        message: e.message,
                        hint,
                        data_loss: e.data_loss,
                    }));
                }
            }
        }
    }

    fn kill_hook(&self, node: &str, point: &str) {
        if self
            .kill_at
            .as_deref()
            .is_some_and(|k| k == format!("{node}:{point}"))
        {
            tracing::warn!(node, point, "SLIPWAY_TEST_KILL_AT: killing this process");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
        }
    }

    fn record(&self, journal: &Mutex<Journal>, i: usize) -> NodeRecord {
        lock(journal).nodes[i].clone()
    }

    fn update(
        &self,
        journal: &Mutex<Journal>,
        i: usize,
        f: impl FnOnce(&mut NodeRecord),
    ) -> StepResult {
        let mut j = lock(journal);
        f(&mut j.nodes[i]);
        j.save(self.state).map_err(|e| {
            fail(
                format!("writing the journal: {e:#}"),
                "check the state folder's disk",
            )
        })
    }

    fn commit(&self, journal: &Mutex<Journal>) -> String {
        lock(journal).commit.clone()
    }

    fn run_step(&self, journal: &Mutex<Journal>, i: usize, step: Step) -> StepResult {
        let rec = self.record(journal, i);
        let goal = self.goals.get(&rec.node).cloned();
        match step {
            Step::Preflight => self.preflight(&rec),
            Step::Snapshot => {
                let commit = self.commit(journal);
                let name = format!(
                    "slipway-{}-{}",
                    rec.node,
                    commit.chars().take(12).collect::<String>()
                );
                self.run_ok(
                    &rec.node,
                    &format!("k3s etcd-snapshot save --name {name}"),
                    "etcd snapshot",
                    "check etcd on the node (`k3s etcd-snapshot ls`), then `slipway rollout resume`",
                )
            }
            Step::Drain => {
                self.update(journal, i, |r| r.cordoned = true)?;
                let (ctl, _) = self.kube_nodes(Some(&rec.node))?;
                let secs = self.timeouts.drain.as_secs().max(1);
                let out = self
                    .effects
                    .exec(
                        &ctl,
                        &format!(
                            "k3s kubectl drain {} --ignore-daemonsets --delete-emptydir-data --timeout={secs}s",
                            rec.k3s_name
                        ),
                    )
                    .map_err(|e| fail(format!("draining through {ctl}: {e}"), "check the server, then `slipway rollout resume`"))?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.success() || stderr.contains("NotFound") || stderr.contains("not found") {
                    Ok(())
                } else {
                    Err(fail(
                        format!("drain through {ctl} failed: {}", stderr.trim()),
                        "see why pods could not be evicted (PodDisruptionBudgets?), fix it, then `slipway rollout resume`",
                    ))
                }
            }
            Step::WriteCanary => {
                let nonce = match rec.canary.clone() {
                    Some(n) => n,
                    None => {
                        let mut b = [0u8; 16];
                        rand::rngs::OsRng.fill_bytes(&mut b);
                        let n = hex::encode(b);
                        let keep = n.clone();
                        self.update(journal, i, |r| r.canary = Some(keep))?;
                        n
                    }
                };
                self.run_ok(
                    &rec.node,
                    &format!(
                        "mkdir -p /var/lib/slipway && printf '%s\\n' {nonce} > {CANARY}.tmp && mv -f {CANARY}.tmp {CANARY} && sync"
                    ),
                    "writing the /var canary",
                    "check that /var is writable on the node, then `slipway rollout resume`",
                )
            }
            Step::DeleteNode => {
                let (ctl, _) = self.kube_nodes(Some(&rec.node))?;
                let out = self
                    .effects
                    .exec(&ctl, &format!("k3s kubectl delete node {}", rec.k3s_name))
                    .map_err(|e| {
                        fail(
                            format!("deleting the node through {ctl}: {e}"),
                            "then `slipway rollout resume`",
                        )
                    })?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.success() || stderr.contains("NotFound") || stderr.contains("not found") {
                    Ok(())
                } else {
                    Err(fail(
                        format!("deleting node {} failed: {}", rec.k3s_name, stderr.trim()),
                        "check the cluster, then `slipway rollout resume`",
                    ))
                }
            }
            Step::Netboot => self.netboot(journal, i, goal.as_ref()),
            Step::StageOs => self.stage_os(journal, i, goal.as_ref()),
            Step::ReplaceK3s => self.replace_k3s(&rec, goal.as_ref()),
            Step::AwaitBoot => self.await_boot(&rec, goal.as_ref()),
            Step::AwaitReady => self.await_ready(&rec, goal.as_ref()),
            Step::CheckCanary => {
                let facts = self.effects.facts(&rec.node);
                if !facts.is_reachable() {
                    return Err(fail(
                        format!("{} is unreachable: cannot read the /var canary", rec.node),
                        "bring the node back, then `slipway rollout resume`",
                    ));
                }
                match (&rec.canary, &facts.var_canary) {
                    (Some(want), Some(got)) if got.trim() == want => Ok(()),
                    (want, got) => Err(StepError {
                        message: format!(
                            "DATA-LOSS ALARM: /var on {} did not survive (canary {} expected, {} found): K3s and etcd data on it are gone",
                            rec.node,
                            want.as_deref().unwrap_or("(none)"),
                            match got { Some(g) => format!("`{}`", g.trim()), None => "none".into() }
                        ),
                        hint: "the rollout is halted and no other node will be touched: find out why /var was wiped (the var partition, wipe_filesystem, coreos.inst.save_partlabel), restore from the etcd snapshot if needed, then `slipway rollout resume --acknowledge-data-loss` (or `slipway rollout abort`)".into(),
                        data_loss: true,
                    }),
                }
            }
            Step::RecordApplied => {
                let Some(goal) = goal else {
                    return Err(fail(
                        format!("{} is not in the inventory", rec.node),
                        "abort the rollout",
                    ));
                };
                let applied = AppliedConfig {
                    commit: self.commit(journal),
                    config_hash: goal.config_hash.clone(),
                    os_version: goal.os_version.clone(),
                    k3s_version: goal.k3s_version.clone(),
                };
                let json = serde_json::to_string(&applied)
                    .map_err(|e| fail(format!("encoding applied.json: {e}"), "report this bug"))?;
                self.run_ok(
                    &rec.node,
                    &format!(
                        "mkdir -p /etc/slipway && cat > /etc/slipway/applied.json.tmp <<'SLIPWAY_EOF'\n{json}\nSLIPWAY_EOF\nmv -f /etc/slipway/applied.json.tmp /etc/slipway/applied.json && sync"
                    ),
                    "recording applied.json",
                    "check /etc on the node, then `slipway rollout resume`",
                )
            }
            Step::Uncordon => {
                let (ctl, _) = self.kube_nodes(None)?;
                let out = self
                    .effects
                    .exec(&ctl, &format!("k3s kubectl uncordon {}", rec.k3s_name))
                    .map_err(|e| {
                        fail(
                            format!("uncordoning through {ctl}: {e}"),
                            "then `slipway rollout resume`",
                        )
                    })?;
                if !out.success() {
                    return Err(fail(
                        format!(
                            "uncordon failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                        "then `slipway rollout resume`",
                    ));
                }
                self.update(journal, i, |r| r.cordoned = false)
            }
        }
    }

    fn run_ok(&self, node: &str, command: &str, what: &str, hint: &str) -> StepResult {
        let out = self
            .effects
            .exec(node, command)
            .map_err(|e| fail(format!("{what} on {node}: {e}"), hint))?;
        if out.success() {
            Ok(())
        } else {
            Err(fail(
                format!(
                    "{what} on {node} failed (exit {}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                hint,
            ))
        }
    }

    /// A server that answers `kubectl get nodes`, preferring one other than `avoid`, and
    /// the node list it printed.
    fn kube_nodes(&self, avoid: Option<&str>) -> Result<(String, Vec<KubeNodeStatus>), StepError> {
        let mut servers: Vec<&NodeGoal> = self
            .goals
            .values()
            .filter(|g| g.role == Role::Server)
            .collect();
        servers.sort_by_key(|g| avoid == Some(g.name.as_str()));
        let mut tried = Vec::new();
        for s in servers {
            match self.effects.exec(&s.name, "k3s kubectl get nodes -o json") {
                Ok(out) if out.success() => {
                    match parse_kube_nodes(&String::from_utf8_lossy(&out.stdout)) {
                        Ok(nodes) => return Ok((s.name.clone(), nodes)),
                        Err(e) => tried.push(format!("{}: {e}", s.name)),
                    }
                }
                Ok(out) => tried.push(format!(
                    "{}: {}",
                    s.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => tried.push(format!("{}: {e}", s.name)),
            }
        }
        Err(fail(
            format!("no server answers `k3s kubectl get nodes` ({})", tried.join("; ")),
            "bring a server back (check `systemctl status k3s` on the servers), then `slipway rollout resume`",
        ))
    }

    fn any_server_runs_k3s(&self) -> bool {
        self.goals
            .values()
            .filter(|g| g.role == Role::Server)
            .any(|g| {
                let f = self.effects.facts(&g.name);
                f.applied.is_some() && f.k3s_service.as_ref().is_some_and(|k| k.is_active())
            })
    }

    fn preflight(&self, rec: &NodeRecord) -> StepResult {
        let new_machine = matches!(rec.action, Action::Install | Action::Replace);
        if !new_machine && !self.effects.facts(&rec.node).is_reachable() {
            return Err(fail(
                format!("{} is unreachable over SSH", rec.node),
                "bring the node back (or fix its ssh_address), then `slipway rollout resume`",
            ));
        }
        let nodes = match self.kube_nodes(Some(&rec.node)) {
            Ok((_, nodes)) => nodes,
            // A new cluster: nothing to keep healthy yet.
            Err(_) if rec.action == Action::Install && !self.any_server_runs_k3s() => return Ok(()),
            Err(e) => return Err(e),
        };
        let not_ready: Vec<&str> = nodes
            .iter()
            .filter(|n| n.server && n.name != rec.k3s_name && !n.ready)
            .map(|n| n.name.as_str())
            .collect();
        if !not_ready.is_empty() {
            return Err(fail(
                format!("servers not Ready: {}", not_ready.join(", ")),
                "a rollout only starts a node when every other server is Ready: fix them, then `slipway rollout resume`",
            ));
        }
        if rec.role == Role::Server && rec.action.is_disruptive() {
            quorum_without(&nodes, &rec.k3s_name).map_err(|e| {
                fail(
                    format!("etcd would lose quorum: {e}"),
                    "bring the other servers back first, then `slipway rollout resume`",
                )
            })?;
        }
        Ok(())
    }

    /// Reboot until `arrived(facts)`, sending the reboot once per boot: the heart of
    /// `netboot` and `stage-os`, and of their resumption after a crash.
    fn reboot_until(&self, journal: &Mutex<Journal>, i: usize, r: RebootGoal<'_>) -> StepResult {
        let RebootGoal {
            node,
            limit,
            what,
            arrived,
            fetched,
            before_reboot,
        } = r;
        let node = node.to_string();
        if self.record(journal, i).boot_id_before.is_none() {
            let f = self.effects.facts(&node);
            if let Some(b) = f.boot_id.clone().filter(|_| f.is_reachable()) {
                self.update(journal, i, |r| r.boot_id_before = Some(b))?;
            } else {
                self.progress.note(
                    &node,
                    "not reachable: power it on (its firmware must netboot) — waiting for it",
                );
            }
        }
        let deadline = self.effects.now() + limit;
        let mut last = String::from("nothing seen yet");
        loop {
            if fetched() {
                return Ok(());
            }
            let rec = self.record(journal, i);
            let facts = self.effects.facts(&node);
            match reboot_probe(
                &facts,
                rec.boot_id_before.as_deref(),
                rec.reboot_sent,
                arrived(&facts),
            ) {
                RebootProbe::Arrived => return Ok(()),
                RebootProbe::Wait => {
                    last = match &facts.reachability {
                        slipway_model::facts::Reachability::Unreachable { reason } => {
                            format!("unreachable: {reason}")
                        }
                        _ => "still up on the old boot (reboot pending)".into(),
                    };
                }
                RebootProbe::SendReboot => {
                    before_reboot(&facts)?;
                    // The connection may drop as the node goes down: that is a sent reboot.
                    let _ = self.effects.exec(&node, "systemctl reboot");
                    let boot = facts.boot_id.clone();
                    self.update(journal, i, |r| {
                        r.reboot_sent = true;
                        if r.boot_id_before.is_none() {
                            r.boot_id_before = boot;
                        }
                    })?;
                    self.kill_hook(
                        &node,
                        &format!(
                            "{}/sent",
                            self.record(journal, i).current().map_or("", |s| s.name())
                        ),
                    );
                    self.progress.note(&node, "rebooting");
                }
                RebootProbe::CameBackUnchanged { boot_id } => {
                    let attempts = rec.reboot_attempts + 1;
                    if attempts > MAX_REBOOT_ATTEMPTS {
                        return Err(fail(
                            format!("{node} rebooted {attempts} times without {what}"),
                            "check the firmware's boot order and BootNext support and that the node reaches the boot server (boot_server.url), then `slipway rollout resume`",
                        ));
                    }
                    self.progress
                        .note(&node, &format!("came back without {what}: trying again"));
                    self.update(journal, i, |r| {
                        r.reboot_attempts = attempts;
                        r.boot_id_before = Some(boot_id);
                        r.reboot_sent = false;
                    })?;
                    continue;
                }
            }
            if self.effects.now() >= deadline {
                return Err(fail(
                    format!(
                        "{node}: no {what} within {} (last seen: {last})",
                        humantime::format_duration(limit)
                    ),
                    format!(
                        "look at the node's console: did it netboot and reach {}? Fix it, then `slipway rollout resume` (or `slipway rollout abort`)",
                        "the boot server"
                    ),
                ));
            }
            self.effects.sleep(POLL);
        }
    }

    fn netboot(&self, journal: &Mutex<Journal>, i: usize, goal: Option<&NodeGoal>) -> StepResult {
        let Some(goal) = goal else {
            return Err(fail(
                "the node is not in the inventory",
                "abort the rollout",
            ));
        };
        self.effects.arm(&goal.name).map_err(|e| {
            fail(
                format!("arming {}: {e}", goal.name),
                "check the boot server",
            )
        })?;
        let hash = goal.config_hash.clone();
        let method = goal.method;
        let node = goal.name.clone();
        let r = self.reboot_until(
            journal,
            i,
            RebootGoal {
                node: &goal.name,
                limit: self.timeouts.install,
                what: "an install",
                arrived: &|f: &NodeFacts| f.applied.as_ref().is_some_and(|a| a.config_hash == hash),
                fetched: &|| self.effects.ignition_fetched(&node),
                before_reboot: &|f: &NodeFacts| {
                if method == ReinstallMethod::PxeBootnext {
                    let entry = f
                        .boot_entries
                        .as_ref()
                        .and_then(|b| b.network_entry())
                        .ok_or_else(|| {
                            fail(
                                format!("{node} has no network boot entry (efibootmgr)"),
                                "enable network boot in its firmware, or set reinstall_method: pxe-always, then `slipway rollout resume`",
                            )
                        })?;
                    self.run_ok(
                        &node,
                        &format!("efibootmgr --bootnext {:04X}", entry.number),
                        "setting BootNext",
                        "then `slipway rollout resume`",
                    )?;
                }
                Ok(())
            },
            },
        );
        self.effects.disarm(&goal.name);
        r
    }

    fn stage_os(&self, journal: &Mutex<Journal>, i: usize, goal: Option<&NodeGoal>) -> StepResult {
        let Some(goal) = goal else {
            return Err(fail(
                "the node is not in the inventory",
                "abort the rollout",
            ));
        };
        let os = goal.os_version.clone();
        let node = goal.name.clone();
        let what = format!("booting FCOS {os}");
        self.reboot_until(
            journal,
            i,
            RebootGoal {
                node: &goal.name,
                limit: self.timeouts.install,
                what: &what,
                arrived: &|f: &NodeFacts| booted_os(f) == Some(os.as_str()),
                fetched: &|| false,
                before_reboot: &|_f: &NodeFacts| {
                    self.run_ok(
                        &node,
                        &format!("rpm-ostree deploy --bypass-driver {os}"),
                        "staging the release",
                        "check `rpm-ostree status` and that the node's update source has the release, then `slipway rollout resume`",
                    )
                },
            },
        )
    }

    fn replace_k3s(&self, rec: &NodeRecord, goal: Option<&NodeGoal>) -> StepResult {
        let Some(goal) = goal else {
            return Err(fail(
                "the node is not in the inventory",
                "abort the rollout",
            ));
        };
        let k = &self.k3s;
        let unit = if goal.role == Role::Server {
            "k3s"
        } else {
            "k3s-agent"
        };
        let script = format!(
            "set -e\n\
             fetch() {{ curl -fsSL -o \"$2\" \"$1\" 2>/dev/null || wget -q -O \"$2\" \"$1\"; }}\n\
             d=/usr/local/bin\n\
             fetch '{bin}' $d/.k3s.slipway\n\
             echo '{bsha}  '$d/.k3s.slipway | sha256sum -c - >/dev/null\n\
             fetch '{scr}' $d/.k3s-install.sh.slipway\n\
             echo '{ssha}  '$d/.k3s-install.sh.slipway | sha256sum -c - >/dev/null\n\
             chmod 0755 $d/.k3s.slipway $d/.k3s-install.sh.slipway\n\
             mv -f $d/.k3s.slipway $d/k3s\n\
             mv -f $d/.k3s-install.sh.slipway $d/k3s-install.sh\n\
             if command -v restorecon >/dev/null 2>&1; then restorecon $d/k3s $d/k3s-install.sh; fi\n\
             systemctl restart {unit}\n",
            bin = k.binary_url,
            bsha = k.binary_sha256,
            scr = k.script_url,
            ssha = k.script_sha256,
        );
        self.run_ok(
            &rec.node,
            &script,
            &format!("installing K3s {}", goal.k3s_version),
            "check that the node reaches the boot server's /artifacts and the unit's log (`journalctl -u k3s`), then `slipway rollout resume`",
        )
    }

    fn await_boot(&self, rec: &NodeRecord, goal: Option<&NodeGoal>) -> StepResult {
        let Some(goal) = goal else {
            return Err(fail(
                "the node is not in the inventory",
                "abort the rollout",
            ));
        };
        let check_config = rec.action != Action::UpgradeOs;
        let deadline = self.effects.now() + self.timeouts.boot;
        let mut last = String::from("nothing seen yet");
        loop {
            let f = self.effects.facts(&goal.name);
            if f.is_reachable() {
                let applied = f.applied.as_ref().map(|a| a.config_hash.as_str());
                let os = booted_os(&f);
                let config_ok = !check_config || applied == Some(goal.config_hash.as_str());
                let os_ok = os == Some(goal.os_version.as_str());
                if config_ok && os_ok {
                    return Ok(());
                }
                last = format!(
                    "up, applied config {}, FCOS {}",
                    applied.map_or("none".to_string(), |h| h.chars().take(12).collect()),
                    os.unwrap_or("unknown")
                );
            } else if let slipway_model::facts::Reachability::Unreachable { reason } =
                &f.reachability
            {
                last = format!("unreachable: {reason}");
            }
            if self.effects.now() >= deadline {
                return Err(fail(
                    format!(
                        "{} did not come back with config {} on FCOS {} within {} (last seen: {last})",
                        goal.name,
                        goal.config_hash.chars().take(12).collect::<String>(),
                        goal.os_version,
                        humantime::format_duration(self.timeouts.boot)
                    ),
                    "look at the node's console (did the install or Ignition fail?); fix it, then `slipway rollout resume`",
                ));
            }
            self.effects.sleep(POLL);
        }
    }

    fn await_ready(&self, rec: &NodeRecord, goal: Option<&NodeGoal>) -> StepResult {
        let want_version = goal.map(|g| g.k3s_version.clone());
        let deadline = self.effects.now() + self.timeouts.ready;
        loop {
            let last = match self.kube_nodes(None) {
                Ok((_, nodes)) => match nodes.iter().find(|n| n.name == rec.k3s_name) {
                    Some(n) => {
                        let version_ok = rec.action != Action::UpgradeK3s
                            || n.kubelet_version.as_deref() == want_version.as_deref();
                        if n.ready && version_ok {
                            return Ok(());
                        }
                        format!(
                            "{} (K3s {})",
                            if n.ready { "Ready" } else { "NotReady" },
                            n.kubelet_version.as_deref().unwrap_or("?")
                        )
                    }
                    None => "not registered yet".into(),
                },
                Err(e) => e.message,
            };
            if self.effects.now() >= deadline {
                return Err(fail(
                    format!(
                        "{} not Ready in K3s within {} (last seen: {last})",
                        rec.k3s_name,
                        humantime::format_duration(self.timeouts.ready)
                    ),
                    "check K3s on the node (`journalctl -u k3s` / `k3s-agent`), then `slipway rollout resume`",
                ));
            }
            self.effects.sleep(POLL);
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn booted_os(f: &NodeFacts) -> Option<&str> {
    f.os.as_ref().map(|o| o.booted.version.as_str())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use slipway_model::facts::{Deployment, NodeFacts, OsStatus, Reachability};
    use slipway_node_ssh::CommandOutput;

    use super::*;
    use crate::rollout::journal::{Journal, NodeRecord, RolloutState, JOURNAL_FORMAT};
    use crate::rollout::progress::Lines;
    use crate::rollout::steps::{steps_for, StepContext};

    /// (boots, canary, installed) of a fake node.
    type FakeNode = (u32, Option<String>, bool);

    /// An in-memory fleet: every command succeeds, a reboot installs the desired config,
    /// K3s lists every node Ready. `fail_netboot` makes that node never fetch its Ignition.
    struct Fake {
        goals: BTreeMap<String, NodeGoal>,
        state: Mutex<BTreeMap<String, FakeNode>>,
        log: Mutex<Vec<String>>,
        fail_netboot: Option<String>,
        clock: Mutex<Instant>,
    }

    impl Fake {
        fn new(goals: &BTreeMap<String, NodeGoal>, fail_netboot: Option<&str>) -> Fake {
            Fake {
                goals: goals.clone(),
                state: Mutex::new(
                    goals
                        .keys()
                        .map(|n| (n.clone(), (1, None, false)))
                        .collect(),
                ),
                log: Mutex::new(Vec::new()),
                fail_netboot: fail_netboot.map(str::to_string),
                clock: Mutex::new(Instant::now()),
            }
        }
        fn touched(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("systemctl reboot"))
                .map(|l| l.split(':').next().unwrap().to_string())
                .collect();
            v.dedup();
            v
        }
    }

    fn ok(stdout: &str) -> CommandOutput {
        CommandOutput {
            status: 0,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    impl Effects for Fake {
        fn exec(&self, node: &str, command: &str) -> Result<CommandOutput, String> {
            self.log.lock().unwrap().push(format!("{node}: {command}"));
            let mut st = self.state.lock().unwrap();
            if command.starts_with("k3s kubectl get nodes") {
                let items: Vec<serde_json::Value> = self
                    .goals
                    .values()
                    .map(|g| {
                        serde_json::json!({
                            "kind": "Node",
                            "metadata": {"name": g.k3s_name, "labels": if g.role == Role::Server {
                                serde_json::json!({"node-role.kubernetes.io/control-plane": "true"})
                            } else { serde_json::json!({}) }},
                            "spec": {},
                            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                       "nodeInfo": {"kubeletVersion": g.k3s_version}},
                        })
                    })
                    .collect();
                return Ok(ok(
                    &serde_json::json!({"kind": "List", "items": items}).to_string()
                ));
            }
            if let Some(rest) = command.split("printf '%s\\n' ").nth(1) {
                let nonce = rest.split_whitespace().next().unwrap().to_string();
                st.get_mut(node).unwrap().1 = Some(nonce);
            }
            if command == "systemctl reboot" && self.fail_netboot.as_deref() != Some(node) {
                let s = st.get_mut(node).unwrap();
                s.0 += 1;
                s.2 = true;
            }
            Ok(ok(""))
        }
        fn facts(&self, node: &str) -> NodeFacts {
            let st = self.state.lock().unwrap();
            let (boots, canary, installed) = st[node].clone();
            let g = &self.goals[node];
            let mut f = NodeFacts::unreachable("");
            f.reachability = Reachability::Reachable;
            f.boot_id = Some(format!("boot-{boots}"));
            f.var_canary = canary;
            f.os = Some(OsStatus {
                booted: Deployment {
                    version: g.os_version.clone(),
                    checksum: "c".into(),
                },
                pending: None,
            });
            f.applied = Some(slipway_model::facts::AppliedConfig {
                commit: "c".into(),
                config_hash: if installed {
                    g.config_hash.clone()
                } else {
                    "old".into()
                },
                os_version: g.os_version.clone(),
                k3s_version: g.k3s_version.clone(),
            });
            f
        }
        fn arm(&self, _node: &str) -> Result<(), String> {
            Ok(())
        }
        fn disarm(&self, _node: &str) {}
        fn ignition_fetched(&self, _node: &str) -> bool {
            false
        }
        fn sleep(&self, d: Duration) {
            *self.clock.lock().unwrap() += d;
        }
        fn now(&self) -> Instant {
            *self.clock.lock().unwrap()
        }
    }

    fn goals() -> BTreeMap<String, NodeGoal> {
        [
            ("s1", Role::Server),
            ("s2", Role::Server),
            ("s3", Role::Server),
            ("a1", Role::Agent),
            ("a2", Role::Agent),
        ]
        .into_iter()
        .map(|(n, role)| {
            (
                n.to_string(),
                NodeGoal {
                    name: n.into(),
                    k3s_name: n.into(),
                    role,
                    config_hash: format!("new-{n}"),
                    os_version: "40.20240906.3.0".into(),
                    k3s_version: "v1.30.4+k3s1".into(),
                    method: ReinstallMethod::PxeAlways,
                },
            )
        })
        .collect()
    }

    fn journal(goals: &BTreeMap<String, NodeGoal>) -> Journal {
        let order = ["s2", "s3", "s1", "a1", "a2"];
        Journal {
            format_version: JOURNAL_FORMAT.into(),
            id: "1-c".into(),
            commit: "c".into(),
            started_unix: 1,
            cluster_exists: true,
            os_version: "40.20240906.3.0".into(),
            k3s_version: "v1.30.4+k3s1".into(),
            state: RolloutState::Running,
            halt: None,
            paused: None,
            nodes: order
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let g = &goals[*n];
                    NodeRecord {
                        node: n.to_string(),
                        k3s_name: n.to_string(),
                        role: g.role,
                        action: Action::Reinstall,
                        wave: i + 1,
                        steps: steps_for(
                            Action::Reinstall,
                            StepContext {
                                role: g.role,
                                cluster_exists: true,
                                reachable: true,
                                in_k3s: true,
                            },
                        ),
                        done: 0,
                        started: false,
                        desired_hash: g.config_hash.clone(),
                        canary: None,
                        boot_id_before: None,
                        reboot_sent: false,
                        reboot_attempts: 0,
                        cordoned: false,
                        error: None,
                        started_unix_ms: None,
                        finished_unix_ms: None,
                    }
                })
                .collect(),
        }
    }

    fn executor<'a>(
        fake: &'a Fake,
        state: &'a Path,
        gate: Option<&'a (dyn Fn(Gate) -> Option<String> + Sync)>,
    ) -> Executor<'a, Fake> {
        Executor {
            effects: fake,
            state,
            goals: fake.goals.clone(),
            timeouts: Timeouts {
                drain: Duration::from_secs(60),
                install: Duration::from_secs(60),
                boot: Duration::from_secs(60),
                ready: Duration::from_secs(60),
            },
            progress: &Lines,
            k3s: K3sArtifacts {
                binary_url: String::new(),
                binary_sha256: String::new(),
                script_url: String::new(),
                script_sha256: String::new(),
            },
            kill_at: None,
            gate,
        }
    }

    #[test]
    fn a_closing_window_pauses_between_nodes_and_the_rollout_resumes_where_it_stopped() {
        let t = tempfile::tempdir().unwrap();
        let g = goals();
        let fake = Fake::new(&g, None);
        // The window closes once two waves have started.
        let waves_started = Mutex::new(0);
        let gate = |p: Gate| -> Option<String> {
            match p {
                Gate::Wave(roles) => {
                    assert!(!roles.is_empty(), "reinstalls disrupt");
                    let mut n = waves_started.lock().unwrap();
                    *n += 1;
                    (*n > 2).then(|| "the window closed".to_string())
                }
                Gate::Step => None,
            }
        };
        let j = executor(&fake, t.path(), Some(&gate))
            .run(journal(&g))
            .unwrap();
        assert_eq!(j.state, RolloutState::Paused);
        assert_eq!(j.paused.as_deref(), Some("the window closed"));
        assert_eq!(
            fake.touched(),
            vec!["s2", "s3"],
            "two nodes, then a pause between nodes"
        );
        assert!(j.nodes[..2].iter().all(|n| n.is_done() && !n.cordoned));
        assert!(j.nodes[2..].iter().all(|n| n.done == 0 && !n.started));
        // The journal on disk says the same; the next window resumes it.
        assert_eq!(Journal::load(t.path()).unwrap().unwrap(), j);
        let j = executor(&fake, t.path(), None).run(j).unwrap();
        assert_eq!(j.state, RolloutState::Done);
        assert_eq!(
            fake.touched(),
            vec!["s2", "s3", "s1", "a1", "a2"],
            "each node rebooted once"
        );
    }

    #[test]
    fn a_shutdown_checkpoints_between_steps_and_a_failure_halts_with_the_node_cordoned() {
        let t = tempfile::tempdir().unwrap();
        let g = goals();
        let fake = Fake::new(&g, None);
        let steps = Mutex::new(0);
        let gate = |p: Gate| -> Option<String> {
            let mut n = steps.lock().unwrap();
            if matches!(p, Gate::Step) {
                *n += 1;
            }
            (*n >= 3).then(|| "slipway serve was stopped".to_string())
        };
        let j = executor(&fake, t.path(), Some(&gate))
            .run(journal(&g))
            .unwrap();
        assert_eq!(j.state, RolloutState::Paused);
        let s2 = &j.nodes[0];
        assert_eq!(
            s2.done, 3,
            "stopped after a finished step, never mid-step: {s2:?}"
        );
        assert!(!s2.started);

        // A node whose netboot never happens: the rollout halts there, others untouched.
        let t = tempfile::tempdir().unwrap();
        let fake = Fake::new(&g, Some("s3"));
        let j = executor(&fake, t.path(), None).run(journal(&g)).unwrap();
        assert_eq!(j.state, RolloutState::Halted);
        let h = j.halt.clone().unwrap();
        assert_eq!((h.node.as_str(), h.step), ("s3", Step::Netboot));
        assert!(h.hint.contains("still cordoned"), "{}", h.hint);
        assert!(j.nodes[1].cordoned);
        assert!(
            j.nodes[2..].iter().all(|n| n.done == 0),
            "no node after s3 was touched"
        );
        assert!(!fake
            .touched()
            .iter()
            .any(|n| n == "s1" || n.starts_with('a')));
    }
}
