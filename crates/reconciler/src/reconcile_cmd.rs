//! `slipway reconcile --dry-run`: the plan, like `terraform plan`. Reads facts (read-only
//! commands only) or, with `--offline`, assumes what the state folder records; renders the
//! desired configs; re-renders each node's config at the commit its `applied.json` names so
//! the diff is exact; prints the plan. Changes nothing anywhere.
//!
//! Offline, no node is contacted. Every finished rollout records in `<state>/applied.json`
//! ([`crate::rollout::AppliedRecord`]) what each node it touched now runs, and the plan is
//! made from facts synthesized from that record: a recorded node is reachable, its
//! `applied.json` is the record's entry, it boots the recorded FCOS release and runs the
//! recorded K3s version, its K3s unit for its role is active, and it is in K3s's node list.
//! So the plan shows what changed since the last applied rollout exactly as it would online
//! when the fleet is as Slipway left it. A node of the inventory not recorded there is
//! assumed never installed (`install`); a recorded node gone from the inventory plans as
//! `remove`. What the offline plan cannot see: drift since the rollout (a node reinstalled
//! or upgraded by hand, down, or NotReady). The printed plan says where its facts came from.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use slipway_ignition_gen::profile::ClusterState;
use slipway_model::check::{check_repo, Secrets};
use slipway_model::facts::{Deployment, K3sService, NodeFacts, OsStatus, Reachability, UnitState};
use slipway_model::inventory::{Inventory, Role};
use slipway_model::secrets::Identities;

use crate::artifacts::ArtifactIndex;
use crate::cmdline::{Output, RepoArgs};
use crate::desired::{self, Loaded};
use crate::plan::{
    self, Actual, ActualNode, Desired, DesiredNode, KnownNode, NodeFiles, Policy, RawFiles,
};
use crate::rollout::{AppliedNode, AppliedRecord};
use crate::{facts_cmd, identity, rollout, source};

/// Options of `slipway reconcile`.
pub struct ReconcileArgs<'a> {
    /// Repository and identity.
    pub repo: &'a RepoArgs,
    /// State folder.
    pub state: &'a Path,
    /// Only plan.
    pub dry_run: bool,
    /// Don't contact nodes.
    pub offline: bool,
    /// SSH key.
    pub ssh_key: Option<&'a PathBuf>,
    /// Output format.
    pub output: Output,
    /// 0 nothing to do, 2 changes, 1 error.
    pub detailed_exitcode: bool,
    /// Re-plan whenever the repository's working tree changes (until interrupted).
    pub watch: bool,
    /// Refuse a HEAD not signed by one of these keys (git's allowed_signers format).
    pub allowed_signers: Option<&'a Path>,
}

/// Who signed HEAD of the working tree's repository, checked against `allowed_signers`;
/// an unsigned or untrusted HEAD is refused, naming the commit and why.
pub fn verify_head(repo_dir: &Path, allowed: &Path) -> Result<String> {
    let signers = source::AllowedSigners::load(allowed).map_err(|e| anyhow::anyhow!("{e}"))?;
    let repo = git2::Repository::discover(repo_dir).map_err(|e| {
        anyhow::anyhow!(
            "{} is not in a git repository: {}",
            repo_dir.display(),
            e.message()
        )
    })?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| anyhow::anyhow!("reading HEAD: {}", e.message()))?;
    let id = head.id();
    let refuse =
        |why: String| anyhow::anyhow!("commit {id} is refused: {why}; nothing was planned");
    let (armor, signed) = match repo.extract_signature(&id, None) {
        Ok(pair) => pair,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Err(refuse(source::Refusal::Unsigned.to_string()))
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "reading the signature of {id}: {}",
                e.message()
            ))
        }
    };
    let signer = signers
        .verify(&armor, &signed, head.committer().when().seconds())
        .map_err(|r| refuse(r.to_string()))?;
    Ok(format!("{} ({})", signer.principal, signer.fingerprint))
}

fn secret_values(s: &Secrets) -> Vec<String> {
    let mut v = vec![s.k3s_token.expose().to_string()];
    v.extend(s.core_password_hash.iter().map(|h| h.expose().to_string()));
    v.extend(s.host_keys.values().map(|k| k.expose().to_string()));
    v
}

fn redacted(ignition: &str, secrets: &[String]) -> Result<NodeFiles> {
    let raw = RawFiles::from_ignition(ignition)
        .map_err(|e| anyhow::anyhow!("reading a rendered config: {e}"))?;
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    Ok(raw.redact(&refs))
}

/// The files a node's config had at `commit`, re-rendered (None when that can't be done
/// exactly: unknown commit, invalid repo then, artifacts no longer in the store).
fn applied_files(
    repo_dir: &Path,
    ids: &Identities,
    index: &ArtifactIndex,
    node: &str,
    facts: &NodeFacts,
    state: ClusterState,
    secrets: &[String],
) -> Option<NodeFiles> {
    let applied = facts.applied.as_ref()?;
    let files = source::files_at_commit(repo_dir, &applied.commit).ok()?;
    let checked = check_repo(&files, Some(ids));
    let loaded = Loaded {
        files,
        inventory: checked.inventory?,
        secrets: checked.secrets?,
        commit: applied.commit.clone(),
    };
    let mut resolved = index.resolve(&loaded.inventory.cluster).ok()?;
    // Render with the versions the node records, if the store still has them.
    if let Some(e) = index.k3s.get(&applied.k3s_version) {
        resolved.k3s_version = applied.k3s_version.clone();
        resolved.k3s = e.clone();
    }
    if let Some(e) = index.fcos.get(&applied.os_version) {
        resolved.fcos_release = applied.os_version.clone();
        resolved.fcos = e.clone();
    }
    let only = [node.to_string()];
    let rendered = desired::render(&loaded, &resolved, state, Some(&only)).ok()?;
    let mut all = secrets.to_vec();
    all.extend(secret_values(&loaded.secrets));
    redacted(rendered.get(node)?.ignition.expose(), &all).ok()
}

/// `slipway reconcile`.
pub fn run(args: &ReconcileArgs<'_>) -> Result<ExitCode> {
    if !args.dry_run {
        bail!("executing a plan (the rolling reinstall) is not available yet: run with --dry-run to see the plan");
    }
    if !args.watch {
        return plan_once(args);
    }
    // Watch the working tree: every debounced change re-plans. A repository that is invalid
    // mid-edit prints its problems and the watch goes on.
    let mut watcher = source::watch_repo(&args.repo.repo, source::DEFAULT_DEBOUNCE)
        .map_err(|e| anyhow::anyhow!("watching {}: {e}", args.repo.repo.display()))?;
    loop {
        if let Err(e) = plan_once(args) {
            eprintln!("error: {e:#}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let Some(change) = watcher.blocking_changed() else {
            bail!("the file watcher stopped");
        };
        let shown: Vec<String> = change
            .paths
            .iter()
            .take(3)
            .map(|p| p.display().to_string())
            .collect();
        eprintln!(
            "slipway: change detected ({}), planning again",
            shown.join(", ")
        );
    }
}

/// Everything a plan was made from, for whoever executes it.
pub struct Prepared {
    /// The repository at the planned commit.
    pub loaded: Loaded,
    /// The artifacts it resolves to.
    pub resolved: crate::artifacts::Resolved,
    /// Every node's rendered config.
    pub rendered: BTreeMap<String, slipway_ignition_gen::profile::RenderedNode>,
    /// Facts per node (offline: synthesized from the state folder's record, see the module
    /// docs).
    pub facts: BTreeMap<String, NodeFacts>,
    /// The nodes K3s lists.
    pub known: Vec<KnownNode>,
    /// Whether a cluster runs.
    pub cluster_exists: bool,
    /// The plan.
    pub plan: plan::Plan,
    /// Offline: where the facts came from, one line for people (`None` online).
    pub offline_note: Option<String>,
}

/// Facts as a node that Slipway left running `rec` would report them: reachable, `rec` as
/// its `applied.json`, the recorded FCOS release booted, the recorded K3s version, the K3s
/// unit of its role active.
pub fn recorded_facts(rec: &AppliedNode) -> NodeFacts {
    let (server, agent) = match rec.role {
        Role::Server => (UnitState::Active, UnitState::Inactive),
        Role::Agent => (UnitState::Inactive, UnitState::Active),
    };
    NodeFacts {
        reachability: Reachability::Reachable,
        os: Some(OsStatus {
            booted: Deployment {
                version: rec.applied.os_version.clone(),
                checksum: String::new(),
            },
            pending: None,
        }),
        k3s_version: Some(rec.applied.k3s_version.clone()),
        k3s_service: Some(K3sService { server, agent }),
        applied: Some(rec.applied.clone()),
        ..NodeFacts::unreachable("")
    }
}

/// What `--offline` assumes: facts per node name (inventory nodes by their name, recorded
/// nodes gone from the inventory by their K3s name), every recorded node as known to K3s,
/// and the line that says so.
fn offline_actual(
    inv: &Inventory,
    record: Option<&AppliedRecord>,
    record_path: &Path,
) -> (BTreeMap<String, NodeFacts>, Vec<KnownNode>, String) {
    let empty = AppliedRecord::default();
    let record = record.unwrap_or(&empty);
    let mut facts = BTreeMap::new();
    let mut recorded = Vec::new();
    let mut unrecorded = Vec::new();
    let mut claimed = std::collections::BTreeSet::new();
    for node in &inv.nodes {
        let entry = record.nodes.get_key_value(&node.name).or_else(|| {
            record
                .nodes
                .iter()
                .find(|(_, r)| r.k3s_name == node.short_name())
        });
        match entry {
            Some((key, rec)) => {
                claimed.insert(key.as_str());
                facts.insert(node.name.clone(), recorded_facts(rec));
                recorded.push(node.name.as_str());
            }
            None => unrecorded.push(node.name.as_str()),
        }
    }
    let mut gone = Vec::new();
    for (key, rec) in &record.nodes {
        if !claimed.contains(key.as_str()) {
            facts.insert(rec.k3s_name.clone(), recorded_facts(rec));
            gone.push(rec.k3s_name.as_str());
        }
    }
    let known = record
        .nodes
        .values()
        .map(|r| KnownNode {
            name: r.k3s_name.clone(),
            role: Some(r.role),
            ready: Some(true),
        })
        .collect();
    let mut note = format!(
        "Offline: no node was contacted; facts come from the state folder ({}",
        record_path.display()
    );
    if record.nodes.is_empty() {
        note.push_str(", which records no finished rollout)");
    } else {
        note.push_str(", what the finished rollouts applied)");
    }
    if !recorded.is_empty() {
        note.push_str(&format!(": {} as recorded", recorded.join(", ")));
    }
    if !unrecorded.is_empty() {
        note.push_str(&format!(
            "{} {} not recorded, assumed never installed",
            if recorded.is_empty() { ":" } else { ";" },
            unrecorded.join(", ")
        ));
    }
    if !gone.is_empty() {
        note.push_str(&format!(
            "; {} recorded but gone from the inventory",
            gone.join(", ")
        ));
    }
    note.push('.');
    (facts, known, note)
}

/// Gather facts (unless offline), render, and plan `loaded`.
pub fn prepare(
    args: &ReconcileArgs<'_>,
    loaded: Loaded,
    signer: Option<String>,
) -> Result<Prepared> {
    let ids = identity::require(args.repo.identity.as_deref())?;
    let index = ArtifactIndex::load(args.state)?;
    let resolved = index.resolve(&loaded.inventory.cluster)?;
    let inv = &loaded.inventory;

    // Actual: facts over SSH (read-only) and K3s's node list, or offline what the state
    // folder records.
    let mut offline_note = None;
    let (facts, known): (BTreeMap<String, NodeFacts>, Vec<KnownNode>) = if args.offline {
        let record = AppliedRecord::load(args.state)?;
        let (facts, known, note) = offline_actual(
            inv,
            record.as_ref(),
            &rollout::applied_record_path(args.state),
        );
        offline_note = Some(note);
        (facts, known)
    } else {
        let auth = facts_cmd::auth(args.ssh_key.map(PathBuf::as_path));
        let targets = facts_cmd::targets(inv, &loaded.secrets, None, &auth, None)?;
        let facts: BTreeMap<String, NodeFacts> =
            facts_cmd::gather(targets.clone())?.into_iter().collect();
        let known = k3s_known_nodes(inv, &targets, &facts);
        (facts, known)
    };
    let cluster_exists = inv.servers().any(|s| {
        facts.get(&s.name).is_some_and(|f| {
            f.applied.is_some() && f.k3s_service.as_ref().is_some_and(|k| k.is_active())
        })
    });
    let state = if cluster_exists {
        ClusterState::Exists
    } else {
        ClusterState::New
    };
    let rendered = desired::render(&loaded, &resolved, state, None)?;
    let secrets = secret_values(&loaded.secrets);

    let mut desired_nodes = Vec::new();
    let mut actual_nodes = Vec::new();
    for node in &inv.nodes {
        let Some(r) = rendered.get(&node.name) else {
            continue;
        };
        desired_nodes.push(DesiredNode {
            name: node.name.clone(),
            hostname: node.hostname.clone(),
            role: node.role,
            bootstrap: node.bootstrap,
            macs: node.macs.clone(),
            install_disk: node.install_disk.clone(),
            config_hash: r.config_hash.clone(),
            files: redacted(r.ignition.expose(), &secrets)?,
            os_version: resolved.fcos_release.clone(),
            k3s_version: resolved.k3s_version.clone(),
            reinstall_method: node.reinstall_method,
        });
        let f = match facts.get(&node.name) {
            Some(f) => f.clone(),
            None => NodeFacts::unreachable(
                "not contacted (--offline) and not in the state folder's record: assumed never installed by Slipway",
            ),
        };
        actual_nodes.push(ActualNode {
            name: node.name.clone(),
            applied_files: applied_files(
                &args.repo.repo,
                &ids,
                &index,
                &node.name,
                &f,
                state,
                &secrets,
            ),
            facts: f,
            recorded_macs: Vec::new(),
            recorded_disk: None,
        });
    }
    // Offline, recorded nodes gone from the inventory answer as Slipway left them (so their
    // removal drains them, as online).
    if args.offline {
        let in_inventory = |name: &str| {
            inv.nodes
                .iter()
                .any(|n| n.name == name || n.short_name() == name)
        };
        for k in known.iter().filter(|k| !in_inventory(&k.name)) {
            if let Some(f) = facts.get(&k.name) {
                actual_nodes.push(ActualNode {
                    name: k.name.clone(),
                    applied_files: None,
                    facts: f.clone(),
                    recorded_macs: Vec::new(),
                    recorded_disk: None,
                });
            }
        }
    }
    let author = git2::Repository::discover(&args.repo.repo)
        .ok()
        .and_then(|r| {
            let id = git2::Oid::from_str(&loaded.commit).ok()?;
            r.find_commit(id).ok().map(|c| c.author().to_string())
        })
        .unwrap_or_default();
    let desired = Desired {
        commit: loaded.commit.clone(),
        author,
        signer,
        cluster_name: inv.cluster.name.clone(),
        nodes: desired_nodes,
        policy: Policy {
            max_unavailable_agents: inv.cluster.rollout.max_unavailable_agents,
        },
    };
    let actual = Actual {
        nodes: actual_nodes,
        known_nodes: known.clone(),
        cluster_exists,
    };
    let plan = plan::plan(&desired, &actual);
    Ok(Prepared {
        loaded,
        resolved,
        rendered,
        facts,
        known,
        cluster_exists,
        plan,
        offline_note,
    })
}

/// The nodes K3s lists, asked of the first server whose K3s runs (read-only:
/// `k3s kubectl get nodes -o json`). Empty when no server answers.
fn k3s_known_nodes(
    inv: &Inventory,
    targets: &[slipway_node_ssh::NodeTarget],
    facts: &BTreeMap<String, NodeFacts>,
) -> Vec<KnownNode> {
    use slipway_node_ssh::{NodeConn as _, NodeConnector as _};
    let connector = slipway_node_ssh::Ssh2Connector::default();
    for server in inv.servers() {
        let active = facts
            .get(&server.name)
            .is_some_and(|f| f.k3s_service.as_ref().is_some_and(|k| k.is_active()));
        let Some(target) = targets.iter().find(|t| t.name == server.name) else {
            continue;
        };
        if !active {
            continue;
        }
        let Ok(mut conn) = connector.connect(target) else {
            continue;
        };
        let Ok(out) = conn.exec("k3s kubectl get nodes -o json") else {
            continue;
        };
        if !out.success() {
            continue;
        }
        let Ok(nodes) =
            crate::rollout::steps::parse_kube_nodes(&String::from_utf8_lossy(&out.stdout))
        else {
            continue;
        };
        return nodes
            .into_iter()
            .map(|n| KnownNode {
                name: n.name,
                role: Some(if n.server { Role::Server } else { Role::Agent }),
                ready: Some(n.ready),
            })
            .collect();
    }
    Vec::new()
}

/// Print a plan as `args.output` asks.
pub fn print_plan(p: &plan::Plan, output: Output) {
    match output {
        Output::Json => println!("{}", plan::render_json(p)),
        Output::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", plan::render_text(p, color));
        }
    }
}

/// Plan once and print it.
fn plan_once(args: &ReconcileArgs<'_>) -> Result<ExitCode> {
    let signer = match args.allowed_signers {
        Some(allowed) => Some(verify_head(&args.repo.repo, allowed)?),
        None => None,
    };
    let loaded = desired::load(args.repo)?;
    let prepared = prepare(args, loaded, signer)?;
    if let Some(note) = &prepared.offline_note {
        match args.output {
            Output::Text => println!("{note}"),
            // The JSON on stdout stays one document.
            Output::Json => eprintln!("{note}"),
        }
    }
    let p = prepared.plan;
    print_plan(&p, args.output);
    Ok(if args.detailed_exitcode {
        ExitCode::from(plan::detailed_exit_code(&p))
    } else {
        ExitCode::SUCCESS
    })
}
