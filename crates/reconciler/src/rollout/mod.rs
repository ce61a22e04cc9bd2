//! Executing a plan: the rolling reinstall that never loses quorum or `/var`.
//!
//! `slipway reconcile` (without `--dry-run`) plans the repository's HEAD commit, then drives
//! every node with something to do through an explicit state machine ([`steps`]), one wave
//! at a time (servers one by one, agents in batches), while Slipway's boot server runs in
//! this process. Each step is recorded in the journal ([`journal`], in the state folder:
//! fsync + atomic rename) *before* it acts, and every step is idempotent, so a Slipway
//! killed at any moment resumes from the journal (`slipway rollout resume`) without
//! repeating a reinstall that already happened and without skipping a check.
//!
//! Any step that fails or passes its time limit halts the rollout: no other node is
//! touched, the failing node stays cordoned, the exit code is 1 and the output says what
//! failed, where, and what to do next. A lost `/var` (the canary nonce gone) halts with a
//! data-loss alarm that `resume` only passes with `--acknowledge-data-loss`.
//!
//! The state folder is locked (flock) by whoever drives the fleet: a second Slipway on the
//! same folder refuses to start.
//!
//! A finished rollout records what each node it touched now runs in `<state>/applied.json`
//! ([`AppliedRecord`], written by [`finish_done`]): what `slipway reconcile --dry-run
//! --offline` plans from.
//!
//! What it deliberately does not do: decide what to do (that is the plan's), or run outside
//! the waves the plan ordered. Nodes of one agent wave run in parallel; when one of them
//! fails, the others of that wave finish their current work (they are already out of
//! service) and no further wave starts.

pub mod effects;
pub mod executor;
pub mod journal;
pub mod progress;
pub mod steps;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use slipway_ignition_gen::profile::ClusterState;
use slipway_model::facts::AppliedConfig;
use slipway_model::inventory::Role;

use crate::artifacts::ArtifactIndex;
use crate::cmdline::{Output, RepoArgs};
use crate::desired::{self, Loaded};
use crate::facts_cmd;
use crate::plan::{Action, Plan};
use crate::reconcile_cmd::{self, ReconcileArgs};
use effects::{BootEdge, Live};
use executor::{Executor, K3sArtifacts, NodeGoal, Timeouts};
use journal::{Journal, NodeRecord, RolloutState, StateLock, JOURNAL_FORMAT};
use steps::{steps_for, StepContext};

/// The environment variable of the test hook that kills Slipway at a step (`node:step`).
pub const KILL_AT_ENV: &str = "SLIPWAY_TEST_KILL_AT";

/// How Slipway reaches the nodes and serves them while it executes.
#[derive(Debug, Clone)]
pub struct Drive<'a> {
    /// Private key Slipway logs in with; `None`: the ssh-agent.
    pub ssh_key: Option<&'a Path>,
    /// Where the boot server listens; `None`: all addresses, boot_server.url's port.
    pub boot_listen: Option<SocketAddr>,
    /// Start disruptive work outside the maintenance windows too.
    pub now: bool,
}

/// The current time, or the time `SLIPWAY_FAKE_NOW` (RFC 3339) starts a clock at: the
/// injectable clock of maintenance windows, for tests and dry runs of a schedule.
pub fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    static START: std::sync::OnceLock<(std::time::Instant, Option<chrono::DateTime<chrono::Utc>>)> =
        std::sync::OnceLock::new();
    let (t0, fake) = START.get_or_init(|| {
        let fake = std::env::var(FAKE_NOW_ENV)
            .ok()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .map(|d| d.with_timezone(&chrono::Utc));
        (std::time::Instant::now(), fake)
    });
    match fake {
        Some(f) => *f + chrono::Duration::from_std(t0.elapsed()).unwrap_or_default(),
        None => chrono::Utc::now(),
    }
}

/// The environment variable that sets [`wall_clock`]'s start.
pub const FAKE_NOW_ENV: &str = "SLIPWAY_FAKE_NOW";

/// Whether `role`'s maintenance window is open now; `Err(why)` names when it opens.
pub fn window_open(
    cluster: &slipway_model::inventory::Cluster,
    role: Role,
) -> Result<std::result::Result<(), String>> {
    use crate::serve::window::{window_state, WindowState};
    let now = wall_clock();
    Ok(
        match window_state(&cluster.maintenance_windows, role, now)
            .map_err(|e| anyhow!("cluster.yaml maintenance_windows: {e}"))?
        {
            WindowState::AlwaysOpen | WindowState::Open { .. } => Ok(()),
            WindowState::Closed { opens_at } => Err(match opens_at {
                Some(t) => format!(
                    "the {} maintenance window is closed until {}",
                    role_name(role),
                    t.to_rfc3339()
                ),
                None => format!(
                    "no {} maintenance window opens in the next 14 days",
                    role_name(role)
                ),
            }),
        },
    )
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Server => "server",
        Role::Agent => "agent",
    }
}

/// The roles whose nodes the journal still has to take out of service.
pub fn disruptive_roles(j: &Journal) -> Vec<Role> {
    let mut roles: Vec<Role> = j
        .nodes
        .iter()
        .filter(|n| !n.is_done() && n.action.is_disruptive())
        .map(|n| n.role)
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// `slipway reconcile` without `--dry-run`: plan HEAD, then execute the plan.
pub fn execute(args: &ReconcileArgs<'_>, drive: &Drive<'_>) -> Result<ExitCode> {
    let _lock = StateLock::acquire(args.state)?;
    if let Some(j) = Journal::load(args.state)? {
        if matches!(
            j.state,
            RolloutState::Running | RolloutState::Halted | RolloutState::Paused
        ) {
            bail!(
                "the rollout {} of commit {} is {}: see `slipway rollout status`, then `slipway rollout resume` or `slipway rollout abort`; nothing was changed",
                j.id,
                short(&j.commit),
                match j.state {
                    RolloutState::Running => "unfinished (its Slipway stopped)",
                    RolloutState::Paused => "paused",
                    _ => "halted",
                }
            );
        }
    }
    let signer = match args.allowed_signers {
        Some(allowed) => Some(reconcile_cmd::verify_head(&args.repo.repo, allowed)?),
        None => None,
    };
    let commit = desired::head_commit(&args.repo.repo);
    if commit == "working-tree" {
        bail!(
            "{} is not a git repository with a commit: Slipway only executes committed changes (commit, then run again)",
            args.repo.repo.display()
        );
    }
    let loaded = desired::load_at(&args.repo.repo, args.repo.identity.as_deref(), &commit)?;
    let prepared = reconcile_cmd::prepare(args, loaded, signer)?;
    reconcile_cmd::print_plan(&prepared.plan, Output::Text);
    if prepared.plan.waves.is_empty() {
        println!("Nothing to execute.");
        return Ok(ExitCode::SUCCESS);
    }
    let journal = new_journal(&prepared.plan, &prepared, now_unix())?;
    if !drive.now {
        for role in disruptive_roles(&journal) {
            if let Err(why) = window_open(&prepared.loaded.inventory.cluster, role)? {
                println!("Not executing: {why}. Nothing was changed; run again inside the window, or with --now to start anyway.");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    journal.save(args.state)?;
    println!(
        "Executing rollout {} ({} node(s) in {} wave(s)); progress is journaled in {}",
        journal.id,
        journal.nodes.len(),
        journal.waves().len(),
        journal::journal_path(args.state).display()
    );
    drive_journal(args.state, journal, prepared.loaded, drive)
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The journal of a new rollout of `plan`.
pub fn new_journal(plan: &Plan, prepared: &reconcile_cmd::Prepared, now: u64) -> Result<Journal> {
    let inv = &prepared.loaded.inventory;
    let mut nodes = Vec::new();
    for wave in &plan.waves {
        for name in &wave.nodes {
            let action = plan
                .nodes
                .iter()
                .find(|n| &n.node == name)
                .with_context(|| {
                    format!("the plan's wave names {name}, which it has no entry for")
                })?;
            let node = inv.node(name);
            let role = action.role.unwrap_or(Role::Agent);
            let reachable = prepared.facts.get(name).is_some_and(|f| f.is_reachable())
                || (node.is_none()
                    && prepared
                        .known
                        .iter()
                        .any(|k| &k.name == name && k.ready == Some(true)));
            let ctx = StepContext {
                role,
                cluster_exists: prepared.cluster_exists,
                reachable,
                in_k3s: prepared.cluster_exists && action.action != Action::Install,
            };
            let k3s_name = match node {
                Some(n) => n.short_name().to_string(),
                None => name.clone(),
            };
            nodes.push(NodeRecord {
                node: name.clone(),
                k3s_name,
                role,
                action: action.action,
                wave: wave.number,
                steps: steps_for(action.action, ctx),
                done: 0,
                started: false,
                desired_hash: prepared
                    .rendered
                    .get(name)
                    .map(|r| r.config_hash.clone())
                    .unwrap_or_default(),
                canary: None,
                boot_id_before: None,
                reboot_sent: false,
                reboot_attempts: 0,
                cordoned: false,
                error: None,
                started_unix_ms: None,
                finished_unix_ms: None,
            });
        }
    }
    Ok(Journal {
        format_version: JOURNAL_FORMAT.into(),
        id: format!("{now}-{}", short(&plan.commit)),
        commit: plan.commit.clone(),
        started_unix: now,
        cluster_exists: prepared.cluster_exists,
        os_version: prepared.resolved.fcos_release.clone(),
        k3s_version: prepared.resolved.k3s_version.clone(),
        state: RolloutState::Running,
        halt: None,
        paused: None,
        nodes,
    })
}

/// A journal's commit, rendered with the artifacts it started with.
pub struct RenderedCommit {
    /// The repository at the commit.
    pub loaded: Loaded,
    /// The artifacts.
    pub resolved: crate::artifacts::Resolved,
    /// Every node's config.
    pub rendered: BTreeMap<String, slipway_ignition_gen::profile::RenderedNode>,
    /// What the boot server publishes.
    pub input: slipway_pxe_publisher::GenerationInput,
}

/// Render `loaded` (the journal's commit) exactly as the journal started it.
pub fn render_journal(state: &Path, journal: &Journal, loaded: Loaded) -> Result<RenderedCommit> {
    let index = ArtifactIndex::load(state)?;
    let resolved = index.resolve_exact(&journal.os_version, &journal.k3s_version)?;
    let cluster_state = if journal.cluster_exists {
        ClusterState::Exists
    } else {
        ClusterState::New
    };
    let rendered = desired::render(&loaded, &resolved, cluster_state, None)?;
    let input = desired::generation_input(&loaded, &resolved, &rendered)?;
    Ok(RenderedCommit {
        loaded,
        resolved,
        rendered,
        input,
    })
}

/// Where the boot server listens: the flag, else every address on boot_server.url's port.
pub fn boot_listen(
    cluster: &slipway_model::inventory::Cluster,
    flag: Option<SocketAddr>,
) -> Result<SocketAddr> {
    Ok(match flag {
        Some(a) => a,
        None => {
            let url = url::Url::parse(&cluster.boot_url).context("reading boot_server.url")?;
            let port = url.port_or_known_default().unwrap_or(80);
            SocketAddr::from(([0, 0, 0, 0], port))
        }
    })
}

/// Render the journal's commit, serve it, and run the journal to its end or a halt.
fn drive_journal(
    state: &Path,
    journal: Journal,
    loaded: Loaded,
    drive: &Drive<'_>,
) -> Result<ExitCode> {
    let r = render_journal(state, &journal, loaded)?;
    let listen = boot_listen(&r.loaded.inventory.cluster, drive.boot_listen)?;
    let boot = BootEdge::start(state, listen)?;
    boot.publish(state, &r.input)?;
    let done = run_journal(state, journal, &r, &boot, drive.ssh_key, None, None)?;
    print!("{}", summary(&done));
    match done.state {
        RolloutState::Done => {
            finish_done(state, &done)?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(ExitCode::from(1)),
    }
}

/// Where the state folder records what each node runs: `<state>/applied.json`.
pub fn applied_record_path(state: &Path) -> PathBuf {
    state.join("applied.json")
}

/// The format version of `<state>/applied.json`.
pub const APPLIED_RECORD_FORMAT: &str = "1";

/// What the finished rollouts applied, node by node: the state folder's copy of every
/// node's `/etc/slipway/applied.json`, which `slipway reconcile --dry-run --offline` plans
/// from. Written only when a rollout is done; a node a rollout removed leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// [`APPLIED_RECORD_FORMAT`].
    pub format_version: String,
    /// Inventory node name → what it runs.
    pub nodes: BTreeMap<String, AppliedNode>,
}

impl Default for AppliedRecord {
    fn default() -> Self {
        AppliedRecord {
            format_version: APPLIED_RECORD_FORMAT.into(),
            nodes: BTreeMap::new(),
        }
    }
}

/// What one node runs since the last finished rollout that changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedNode {
    /// Its role.
    pub role: Role,
    /// K3s's name for it (the short host name).
    pub k3s_name: String,
    /// The commit, config hash, FCOS release and K3s version it was given.
    #[serde(flatten)]
    pub applied: AppliedConfig,
}

impl AppliedRecord {
    /// Load the record; `None` when no rollout has finished from this state folder.
    pub fn load(state: &Path) -> Result<Option<AppliedRecord>> {
        let path = applied_record_path(state);
        let Some(r): Option<AppliedRecord> = journal::read_json(
            &path,
            "the record of applied configs is corrupt",
            "move it away (the next finished rollout writes it again)",
        )?
        else {
            return Ok(None);
        };
        if r.format_version != APPLIED_RECORD_FORMAT {
            bail!(
                "{}: format {} is not {APPLIED_RECORD_FORMAT}: written by another Slipway version",
                path.display(),
                r.format_version
            );
        }
        Ok(Some(r))
    }

    /// Write the record atomically.
    pub fn save(&self, state: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("encoding applied.json")?;
        crate::repo_fs::write_atomic(&applied_record_path(state), &bytes)
    }

    /// Fold in what a finished rollout did: every node it installed, reinstalled, replaced
    /// or upgraded now runs the journal's commit, config and versions; a node it removed
    /// leaves the record; nodes it did not touch keep their entry.
    pub fn apply(&mut self, j: &Journal) {
        for n in j.nodes.iter().filter(|n| n.is_done()) {
            match n.action {
                Action::Remove => self.nodes.retain(|name, rec| {
                    name != &n.node
                        && rec.k3s_name != n.node
                        && slipway_model::inventory::short_name(name) != n.node
                }),
                Action::Install
                | Action::Reinstall
                | Action::Replace
                | Action::UpgradeOs
                | Action::UpgradeK3s => {
                    self.nodes.insert(
                        n.node.clone(),
                        AppliedNode {
                            role: n.role,
                            k3s_name: n.k3s_name.clone(),
                            applied: AppliedConfig {
                                commit: j.commit.clone(),
                                config_hash: n.desired_hash.clone(),
                                os_version: j.os_version.clone(),
                                k3s_version: j.k3s_version.clone(),
                            },
                        },
                    );
                }
                Action::None | Action::Blocked => {}
            }
        }
    }
}

/// A rollout is done: record what its nodes run now in `<state>/applied.json`, then move its
/// journal to the history. Both `slipway reconcile` and `slipway serve` finish this way.
pub fn finish_done(state: &Path, done: &Journal) -> Result<()> {
    let mut record = AppliedRecord::load(state)?.unwrap_or_default();
    record.apply(done);
    record.save(state)?;
    done.archive(state)
}

/// Run a journal with the boot server `boot` (already serving the journal's generation).
pub fn run_journal(
    state: &Path,
    journal: Journal,
    r: &RenderedCommit,
    boot: &BootEdge,
    ssh_key: Option<&Path>,
    gate: Option<&(dyn Fn(executor::Gate) -> Option<String> + Sync)>,
    progress: Option<&dyn progress::Progress>,
) -> Result<Journal> {
    let (loaded, rendered, resolved) = (&r.loaded, &r.rendered, &r.resolved);
    let cluster = &loaded.inventory.cluster;
    let auth = facts_cmd::auth(ssh_key);
    let targets = facts_cmd::targets(&loaded.inventory, &loaded.secrets, None, &auth, None)?;
    let drain_limit = cluster.rollout.drain_timeout + Duration::from_secs(60);
    let live = Live::new(targets, boot, drain_limit.max(Duration::from_secs(120)));
    let goals: BTreeMap<String, NodeGoal> = loaded
        .inventory
        .nodes
        .iter()
        .filter_map(|n| {
            let r = rendered.get(&n.name)?;
            Some((
                n.name.clone(),
                NodeGoal {
                    name: n.name.clone(),
                    k3s_name: n.short_name().to_string(),
                    role: n.role,
                    config_hash: r.config_hash.clone(),
                    os_version: resolved.fcos_release.clone(),
                    k3s_version: resolved.k3s_version.clone(),
                    method: n.reinstall_method,
                },
            ))
        })
        .collect();
    let base = slipway_pxe_publisher::BaseUrl::parse(&cluster.boot_url)
        .map_err(|e| anyhow!("boot_server.url: {e}"))?;
    let k3s = K3sArtifacts {
        binary_url: slipway_pxe_publisher::ipxe::artifact_url(&base, &resolved.k3s.binary),
        binary_sha256: resolved.k3s.binary.sha256.to_hex(),
        script_url: slipway_pxe_publisher::ipxe::artifact_url(&base, &resolved.k3s.install_script),
        script_sha256: resolved.k3s.install_script.sha256.to_hex(),
    };
    let lines = progress::Lines;
    let bars;
    let progress: &dyn progress::Progress = match progress {
        Some(p) => p,
        None if std::io::stderr().is_terminal() => {
            bars = progress::Bars::new();
            &bars
        }
        None => &lines,
    };
    let exec = Executor {
        effects: &live,
        state,
        goals,
        timeouts: Timeouts {
            drain: cluster.rollout.drain_timeout,
            install: cluster.rollout.install_timeout,
            boot: cluster.rollout.boot_timeout,
            ready: cluster.rollout.ready_timeout,
        },
        progress,
        k3s,
        kill_at: std::env::var(KILL_AT_ENV).ok(),
        gate,
    };
    exec.run(journal)
}

/// A rollout as people read it: one line per node, then the halt.
pub fn summary(j: &Journal) -> String {
    let mut out = format!(
        "Rollout {} of commit {}: {}\n",
        j.id,
        short(&j.commit),
        match j.state {
            RolloutState::Running => "running (or interrupted: `slipway rollout resume`)",
            RolloutState::Halted => "HALTED",
            RolloutState::Paused => "paused",
            RolloutState::Done => "done",
            RolloutState::Aborted => "aborted",
        }
    );
    for n in &j.nodes {
        let where_ = match n.current() {
            None => "done".to_string(),
            Some(s) if n.error.is_some() => format!("FAILED at {s}"),
            Some(s) if n.started => format!("at {s}"),
            Some(s) if n.done == 0 => format!("pending ({s} next)"),
            Some(s) => format!("{s} next"),
        };
        out.push_str(&format!(
            "  wave {:>2}  {:<12} {:<11} {:>2}/{:<2} {}{}\n",
            n.wave,
            n.node,
            n.action.name(),
            n.done,
            n.steps.len(),
            where_,
            if n.cordoned { "  (cordoned)" } else { "" }
        ));
    }
    if let Some(p) = &j.paused {
        out.push_str(&format!("\npaused: {p}\n"));
    }
    if let Some(h) = &j.halt {
        out.push_str(&format!(
            "\n{}: {} failed at step {}: {}\nnext: {}\n",
            if h.data_loss { "DATA LOSS" } else { "halted" },
            h.node,
            h.step,
            h.message,
            h.hint
        ));
    }
    out
}

/// `slipway rollout status`.
pub fn status(state: &Path, output: Output) -> Result<ExitCode> {
    let (j, current) = match Journal::load(state)? {
        Some(j) => (j, true),
        None => match journal::last_archived(state)? {
            Some(j) => (j, false),
            None => {
                println!("No rollout has run from {}.", state.display());
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&j).context("encoding the journal")?
        ),
        Output::Text => {
            if !current {
                println!("(the last rollout; none is in progress)");
            }
            print!("{}", summary(&j));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `slipway rollout resume`.
pub fn resume(
    repo: &RepoArgs,
    state: &Path,
    drive: &Drive<'_>,
    acknowledge_data_loss: bool,
) -> Result<ExitCode> {
    let _lock = StateLock::acquire(state)?;
    let Some(mut j) = Journal::load(state)? else {
        bail!("no rollout to resume in {}", state.display());
    };
    if matches!(j.state, RolloutState::Done | RolloutState::Aborted) {
        bail!("the rollout {} is already {:?}", j.id, j.state);
    }
    if let Some(h) = j.halt.clone() {
        if h.data_loss {
            if !acknowledge_data_loss {
                bail!(
                    "the rollout halted on lost data on {} ({}): resume only with --acknowledge-data-loss once you have dealt with it",
                    h.node,
                    h.message
                );
            }
            // The operator took note: the canary check of that node is passed.
            if let Some(rec) = j.nodes.iter_mut().find(|n| n.node == h.node) {
                if rec.current() == Some(steps::Step::CheckCanary) {
                    rec.done += 1;
                    rec.started = false;
                    rec.error = None;
                }
            }
        }
    }
    println!("Resuming rollout {} of commit {}", j.id, short(&j.commit));
    let loaded = desired::load_at(&repo.repo, repo.identity.as_deref(), &j.commit)?;
    j.halt = None;
    drive_journal(state, j, loaded, drive)
}

/// `slipway rollout abort`.
pub fn abort(state: &Path) -> Result<ExitCode> {
    let _lock = StateLock::acquire(state)?;
    let Some(mut j) = Journal::load(state)? else {
        bail!("no rollout to abort in {}", state.display());
    };
    j.state = RolloutState::Aborted;
    j.save(state)?;
    print!("{}", summary(&j));
    let cordoned: Vec<&NodeRecord> = j.nodes.iter().filter(|n| n.cordoned).collect();
    for n in &cordoned {
        println!(
            "{} is still cordoned: run `k3s kubectl uncordon {}` once it is healthy",
            n.node, n.k3s_name
        );
    }
    j.archive(state)?;
    Ok(ExitCode::SUCCESS)
}
