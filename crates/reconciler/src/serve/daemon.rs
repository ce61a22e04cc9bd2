//! `slipway serve`: the one long-running process. A loop on the main thread; the HTTP
//! servers (boot server, API) on a tokio runtime beside it.
//!
//! Every tick (a new commit announced by the webhook, the poll interval, or the reconcile
//! interval): fetch and verify the branch head ([`GitSource`]: signed commits only), follow
//! the FCOS stream (mirror and verify a newer release before anything may use it), plan
//! the last good commit against the facts, export the plan as metrics, and — when nothing
//! is suspended, halted or held — execute it: disruptive work only inside a maintenance
//! window, the FleetLock taken for the whole rollout so that nodes keeping Zincati never
//! reboot with it, a pause between nodes when the window closes, a checkpoint between
//! steps on SIGTERM. A rollout that halts is reported (log, metrics, notification webhook)
//! and never retried by the daemon: its release is marked failed so following a stream or
//! channel does not pick it again; an operator resumes or aborts it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use slipway_model::check::check_repo;
use slipway_model::inventory::Role;

use super::config::{self, ServeConfig};
use super::fleetlock::{self, FleetLock, Holder};
use super::metrics::Metrics;
use crate::cmdline::{Output, RepoArgs};
use crate::desired::Loaded;
use crate::reconcile_cmd::{self, ReconcileArgs};
use crate::rollout::effects::BootEdge;
use crate::rollout::executor::Gate;
use crate::rollout::journal::{Journal, RolloutState, StateLock};
use crate::rollout::{self, progress};
use crate::source::{self, AllowedSigners, GitSource, PollInterval, Remote, SourceConfig};
use crate::{artifacts, identity, mirror_cmd};

/// `<state>/suspended`: present while reconciliation is suspended (`slipway suspend`).
pub const SUSPENDED_FILE: &str = "suspended";
/// `<state>/reconcile-now`: a request to reconcile at once, windows overridden.
pub const NOW_FILE: &str = "reconcile-now";
/// `<state>/serve.pid`: the running daemon.
pub const PID_FILE: &str = "serve.pid";

/// How often the loop looks at its clocks (fetch due, plan due, suspend/now requests).
const TICK: Duration = Duration::from_millis(500);

/// What a tick can be woken by.
enum Wake {
    Hook,
    Stop,
}

/// `slipway serve --config FILE`.
pub fn run(config_path: &Path) -> Result<ExitCode> {
    let cfg = config::load(config_path).map_err(|e| anyhow!("{e}"))?;
    let state = cfg.state.dir.clone();
    let _lock = StateLock::acquire(&state)?;
    crate::repo_fs::write_atomic(
        &state.join(PID_FILE),
        format!("{}\n", std::process::id()).as_bytes(),
    )?;
    let result = serve(&cfg, &state);
    let _ = std::fs::remove_file(state.join(PID_FILE));
    result
}

fn serve(cfg: &ServeConfig, state: &Path) -> Result<ExitCode> {
    let allowed = cfg.repo.allowed_signers.as_ref().context(
        "slipway serve applies only signed commits: set repo.allowed_signers to git's allowed_signers file",
    )?;
    let signers = AllowedSigners::load(allowed).map_err(|e| anyhow!("{e}"))?;
    let remote = Remote::parse(&cfg.repo.url).map_err(|e| anyhow!("repo.url: {e}"))?;
    let auth = match (
        &cfg.repo.ssh_key_file,
        &cfg.repo.ssh_known_hosts_file,
        &cfg.repo.token_file,
    ) {
        (Some(k), Some(h), _) => source::Auth::SshKey {
            private_key: k.clone(),
            known_hosts: h.clone(),
        },
        (_, _, Some(t)) => source::Auth::Token {
            token_file: t.clone(),
            username: cfg.repo.token_user.clone(),
        },
        _ => source::Auth::None,
    };
    let mut src_cfg = SourceConfig::new(remote, auth, signers);
    src_cfg.branch = cfg.repo.branch.clone();
    src_cfg.poll =
        PollInterval::new(cfg.repo.poll_interval).context("repo.poll_interval is too short")?;
    let mut src = GitSource::open(state, src_cfg).map_err(|e| anyhow!("{e}"))?;
    // Fail now, not at the first rollout, when the identity is missing.
    identity::require(Some(&cfg.secrets.age_identity_file))?;

    let metrics = Metrics::new();
    let lock = FleetLock::open(state.join(fleetlock::LOCK_FILE)).map_err(|e| anyhow!("{e}"))?;
    let boot = BootEdge::start(state, cfg.http.boot_listen)?;
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (wake_tx, wake_rx) = mpsc::channel::<Wake>();

    // The API next to the boot server: metrics, health, FleetLock, the git webhook.
    let hook = Arc::new(tokio::sync::Notify::new());
    let mut api = super::metrics::router(metrics.clone(), {
        let ready = Arc::clone(&ready);
        move || ready.load(Ordering::SeqCst)
    })
    .merge(fleetlock::router(lock.clone()));
    if let Some(secret_file) = &cfg.secrets.webhook_secret_file {
        let secret = source::WebhookSecret::load(secret_file).map_err(|e| anyhow!("{e}"))?;
        api = api.merge(source::webhook_router(secret, Arc::clone(&hook)));
    }
    let rt = boot.runtime();
    let api_listener = rt
        .block_on(tokio::net::TcpListener::bind(cfg.http.api_listen))
        .with_context(|| format!("listening on {} for the API", cfg.http.api_listen))?;
    let api_addr = api_listener
        .local_addr()
        .context("reading the API address")?;
    rt.spawn(async move {
        let _ = axum::serve(api_listener, api.into_make_service()).await;
    });
    {
        let (tx, hook) = (wake_tx.clone(), Arc::clone(&hook));
        rt.spawn(async move {
            loop {
                hook.notified().await;
                if tx.send(Wake::Hook).is_err() {
                    break;
                }
            }
        });
    }
    {
        let (tx, stop) = (wake_tx.clone(), Arc::clone(&stop));
        rt.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            stop.store(true, Ordering::SeqCst);
            let _ = tx.send(Wake::Stop);
        });
    }
    watchdog(rt);
    tracing::info!(boot = %boot.addr, api = %api_addr, state = %state.display(), "slipway serve is up");
    println!(
        "slipway serve: boot server on http://{}, API on http://{api_addr}",
        boot.addr
    );
    ready.store(true, Ordering::SeqCst);
    sd_notify("READY=1");

    let mut daemon = Daemon {
        cfg,
        state,
        metrics,
        lock,
        boot: &boot,
        stop: Arc::clone(&stop),
        last_mirror: None,
        signer: None,
        facts_gathered: Default::default(),
        published: None,
    };
    let mut last_plan: Option<Instant> = None;
    let mut last_sync: Option<Instant> = None;
    let mut hooked = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let now_requested = take_now_request(state);
        let sync = hooked || last_sync.is_none_or(|t| t.elapsed() >= src.next_poll());
        let due = now_requested || last_plan.is_none_or(|t| t.elapsed() >= cfg.reconcile.interval);
        if sync {
            last_sync = Some(Instant::now());
        }
        let worked = sync || due;
        if let Err(e) = daemon.tick(&mut src, sync, due, now_requested) {
            tracing::error!(error = %format!("{e:#}"), "reconcile failed");
            daemon.metrics.inc_error("reconcile");
        }
        if worked {
            release_freed_memory();
        }
        if due {
            last_plan = Some(Instant::now());
        }
        hooked = false;
        match wake_rx.recv_timeout(TICK) {
            Ok(Wake::Stop) => break,
            Ok(Wake::Hook) => {
                tracing::info!("webhook: fetching now");
                hooked = true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    sd_notify("STOPPING=1");
    tracing::info!("slipway serve stopped; the journal is consistent");
    Ok(ExitCode::SUCCESS)
}

/// Hand back to the kernel what a fetch or a plan allocated and freed, and the renderer's
/// cached compressor, which only a plan needs. glibc keeps freed memory for reuse and returns
/// it only from the top of its heap; for a daemon that works for a second every few minutes
/// that is memory held for nothing (the serve_idle bench shows the difference).
#[allow(unsafe_code)]
fn release_freed_memory() {
    // The renderer's Go-exact compressor keeps 700 KiB of tables per thread between uses.
    slipway_ignition_gen::butane::goflate::release_thread_compressor();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) takes no pointers and only rearranges glibc's own free lists,
    // which it locks while it runs; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Send systemd's watchdog keep-alive at half the interval systemd asked for, if it did:
/// `WATCHDOG_USEC` set and `WATCHDOG_PID`, when set, naming this process (sd_watchdog_enabled's
/// rule).
fn watchdog(rt: &tokio::runtime::Runtime) {
    let Some(usec) = watchdog_usec(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    ) else {
        return;
    };
    let every = Duration::from_micros(usec / 2);
    rt.spawn(async move {
        loop {
            sd_notify("WATCHDOG=1");
            tokio::time::sleep(every).await;
        }
    });
}

/// Tell systemd (`Type=notify`) something: one datagram to `$NOTIFY_SOCKET` (a path, or
/// `@name` in the abstract namespace). Never blocks: a full or missing socket drops the
/// message rather than stall the daemon (the sd-notify crate's socket blocks, and a manager
/// that stops reading would freeze shutdown).
fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let msg = format!("{state}\n");
    let sent = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a)),
        None => sock.send_to(msg.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, state, "systemd notification dropped");
    }
}

/// The watchdog interval systemd asked this process for, if any.
fn watchdog_usec(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<u64> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid {
        Some(p) if p.trim().parse::<u32>().ok() != Some(me) => None,
        _ => Some(usec),
    }
}

fn take_now_request(state: &Path) -> bool {
    std::fs::remove_file(state.join(NOW_FILE)).is_ok()
}

struct Daemon<'a> {
    cfg: &'a ServeConfig,
    state: &'a Path,
    metrics: Metrics,
    lock: FleetLock,
    boot: &'a BootEdge,
    stop: Arc<AtomicBool>,
    last_mirror: Option<Instant>,
    /// Who signed the last accepted commit.
    signer: Option<String>,
    /// When each node's facts were last read.
    facts_gathered: std::collections::BTreeMap<String, Instant>,
    /// The commit whose generation the boot server serves.
    published: Option<String>,
}

impl Daemon<'_> {
    fn suspended(&self) -> bool {
        self.cfg.reconcile.suspended || self.state.join(SUSPENDED_FILE).exists()
    }

    fn repo_args(&self) -> RepoArgs {
        RepoArgs {
            repo: self.state.join("repo"),
            identity: Some(self.cfg.secrets.age_identity_file.clone()),
        }
    }

    fn load(&self, src: &GitSource, commit: &source::CommitId) -> Result<Loaded> {
        let files = src.files_at(commit).map_err(|e| anyhow!("{e}"))?;
        let ids = identity::require(Some(&self.cfg.secrets.age_identity_file))?;
        let checked = check_repo(&files, Some(&ids));
        if checked.diagnostics.has_errors() {
            bail!(
                "commit {commit} is invalid, nothing applied:\n{}",
                checked.diagnostics
            );
        }
        let (Some(inventory), Some(secrets)) = (checked.inventory, checked.secrets) else {
            bail!("commit {commit} did not load");
        };
        Ok(Loaded {
            files,
            inventory,
            secrets,
            commit: commit.to_string(),
        })
    }

    fn tick(&mut self, src: &mut GitSource, sync: bool, plan_due: bool, now: bool) -> Result<()> {
        self.metrics.set_suspended(self.suspended());
        for (node, at) in &self.facts_gathered {
            self.metrics.set_facts_age(node, at.elapsed().as_secs_f64());
        }
        self.metrics
            .set_lock_holder(self.lock.holder().as_ref().map(|h| h.id.as_str()));
        let fresh = if !sync {
            false
        } else {
            match src.sync() {
                Ok(a) => {
                    self.metrics.set_fetched_commit(a.commit.id.as_str());
                    self.signer = Some(format!(
                        "{} ({})",
                        a.commit.signer.principal, a.commit.signer.fingerprint
                    ));
                    if a.new {
                        tracing::info!(commit = %a.commit.id, signer = %a.commit.signer.principal, summary = %a.commit.summary, "new trusted commit");
                    }
                    a.new
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetching the repository failed; the last good commit stays");
                    self.metrics.inc_error("source");
                    false
                }
            }
        };
        if !fresh && !plan_due {
            return Ok(());
        }
        let Some(commit) = src.last_good().cloned() else {
            return Ok(());
        };
        let loaded = self.load(src, &commit)?;
        self.follow_upstream(&loaded);

        // An unfinished rollout comes first.
        if let Some(j) = Journal::load(self.state)? {
            match j.state {
                RolloutState::Halted => {
                    self.mark_failed(&j)?;
                    self.metrics.set_node_phase(
                        &j.halt.as_ref().map(|h| h.node.clone()).unwrap_or_default(),
                        "halted",
                    );
                    tracing::warn!(rollout = %j.id, "the rollout is halted: not retried; `slipway rollout status`, then resume or abort it");
                    return Ok(());
                }
                RolloutState::Running | RolloutState::Paused => {
                    let loaded = self.load(
                        src,
                        &source::CommitId::try_from(j.commit.clone())
                            .map_err(|e| anyhow!("{e}"))?,
                    )?;
                    return self.execute(src, j, loaded, now);
                }
                RolloutState::Done | RolloutState::Aborted => {}
            }
        }
        if self.suspended() {
            tracing::info!("suspended: planning only");
        }
        let args = ReconcileArgs {
            repo: &self.repo_args(),
            state: self.state,
            dry_run: true,
            offline: false,
            ssh_key: Some(&self.cfg.secrets.node_ssh_key_file),
            output: Output::Text,
            detailed_exitcode: false,
            watch: false,
            allowed_signers: None,
        };
        let prepared = reconcile_cmd::prepare(&args, loaded, self.signer.clone())?;
        let s = prepared.plan.summary;
        self.metrics.set_plan_counts(&[
            ("install", s.install as u64),
            ("reinstall", s.reinstall as u64),
            ("replace", s.replace as u64),
            ("upgrade", s.upgrade as u64),
            ("remove", s.remove as u64),
            ("none", s.unchanged as u64),
            ("blocked", s.blocked as u64),
        ]);
        let gathered = Instant::now();
        self.facts_gathered = prepared
            .facts
            .keys()
            .map(|n| (n.clone(), gathered))
            .collect();
        if self.published.as_deref() != Some(prepared.loaded.commit.as_str()) {
            let input = crate::desired::generation_input(
                &prepared.loaded,
                &prepared.resolved,
                &prepared.rendered,
            )?;
            self.boot.publish(self.state, &input)?;
            self.published = Some(prepared.loaded.commit.clone());
        }
        if prepared.plan.waves.is_empty() {
            if prepared.plan.summary.blocked == 0 && src.last_applied() != Some(&commit) {
                src.mark_applied(&commit).map_err(|e| anyhow!("{e}"))?;
            }
            self.metrics.set_applied_commit(commit.as_str());
            return Ok(());
        }
        if self.suspended() {
            return Ok(());
        }
        let journal = rollout::new_journal(&prepared.plan, &prepared, unix_now())?;
        self.execute(src, journal, prepared.loaded, now)
    }

    /// Follow the K3s channel and the FCOS stream: mirror (download, verify) what they name
    /// now, at most once per reconcile interval. Pins never change; failures are reported, not
    /// fatal.
    fn follow_upstream(&mut self, loaded: &Loaded) {
        let cluster = &loaded.inventory.cluster;
        if self
            .last_mirror
            .is_some_and(|t| t.elapsed() < self.cfg.reconcile.interval)
        {
            return;
        }
        self.last_mirror = Some(Instant::now());
        match mirror_cmd::mirror_channel_release(cluster, self.state) {
            Ok(Some(version)) => {
                tracing::info!(%version, "K3s channel release mirrored and verified");
                self.metrics
                    .set_mirror_state(&format!("k3s {version}"), "ok");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "following the K3s channel failed");
                self.metrics.set_mirror_state("k3s", "failed");
                self.metrics.inc_error("mirror");
            }
        }
        if cluster.fcos.release.is_some() {
            return;
        }
        match mirror_cmd::mirror_stream_release(cluster, self.state) {
            Ok(release) => {
                tracing::info!(%release, "FCOS stream release mirrored and verified");
                self.metrics
                    .set_mirror_state(&format!("fcos {release}"), "ok");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "following the FCOS stream failed");
                self.metrics.set_mirror_state("fcos", "failed");
                self.metrics.inc_error("mirror");
            }
        }
    }

    /// A halted rollout's releases are never picked again by following a stream/channel.
    fn mark_failed(&self, j: &Journal) -> Result<()> {
        let Some(h) = &j.halt else { return Ok(()) };
        let Some(rec) = j.nodes.iter().find(|n| n.node == h.node) else {
            return Ok(());
        };
        let mut idx = artifacts::ArtifactIndex::load(self.state)?;
        let before = idx.failed.clone();
        match rec.action {
            crate::plan::Action::UpgradeOs => {
                idx.failed.fcos.insert(j.os_version.clone());
            }
            crate::plan::Action::UpgradeK3s => {
                idx.failed.k3s.insert(j.k3s_version.clone());
            }
            _ => {}
        }
        if idx.failed != before {
            tracing::warn!(fcos = %j.os_version, k3s = %j.k3s_version, "marking the release failed: it will not be rolled out again unless pinned");
            idx.save(self.state)?;
        }
        Ok(())
    }

    fn execute(
        &mut self,
        src: &mut GitSource,
        journal: Journal,
        loaded: Loaded,
        now: bool,
    ) -> Result<()> {
        let cluster = loaded.inventory.cluster.clone();
        let window_closed = |roles: &[Role]| -> Option<String> {
            if now {
                return None;
            }
            roles.iter().find_map(|r| {
                rollout::window_open(&cluster, *r)
                    .ok()
                    .and_then(|w| w.err())
            })
        };
        let roles = rollout::disruptive_roles(&journal);
        if let Some(why) = window_closed(&roles) {
            self.metrics.set_window_open(false);
            tracing::info!(%why, "waiting for the maintenance window");
            return Ok(());
        }
        self.metrics.set_window_open(true);
        let holder = Holder::rollout(unix_now());
        if let Err(e) = self.lock.try_acquire(&holder) {
            tracing::info!(error = %e, "the FleetLock is held: the rollout waits");
            return Ok(());
        }
        self.metrics.set_lock_holder(Some(&holder.id));
        let commit = journal.commit.clone();
        let rendered = rollout::render_journal(self.state, &journal, loaded)?;
        self.boot.publish(self.state, &rendered.input)?;
        self.published = Some(commit.clone());
        if journal.state != RolloutState::Paused || journal.nodes.iter().all(|n| n.done == 0) {
            self.notify("rollout-started", &journal, None);
        }
        let stop = Arc::clone(&self.stop);
        let gate = move |g: Gate| -> Option<String> {
            if stop.load(Ordering::SeqCst) {
                return Some("slipway serve was stopped".into());
            }
            match g {
                Gate::Wave(roles) => window_closed(&roles),
                Gate::Step => None,
            }
        };
        let progress = MetricsProgress {
            metrics: self.metrics.clone(),
            lines: progress::Lines,
        };
        let done = rollout::run_journal(
            self.state,
            journal,
            &rendered,
            self.boot,
            Some(&self.cfg.secrets.node_ssh_key_file),
            Some(&gate),
            Some(&progress),
        );
        let _ = self.lock.release(fleetlock::ROLLOUT_ID);
        self.metrics
            .set_lock_holder(self.lock.holder().as_ref().map(|h| h.id.as_str()));
        let done = done?;
        for n in &done.nodes {
            self.metrics
                .set_node_phase(&n.node, n.current().map_or("done", |s| s.name()));
        }
        match done.state {
            RolloutState::Done => {
                tracing::info!(rollout = %done.id, "rollout done");
                self.notify("rollout-succeeded", &done, None);
                rollout::finish_done(self.state, &done)?;
                let id = source::CommitId::try_from(commit.clone()).map_err(|e| anyhow!("{e}"))?;
                if src.last_good() == Some(&id) {
                    src.mark_applied(&id).map_err(|e| anyhow!("{e}"))?;
                }
                self.metrics.set_applied_commit(&commit);
            }
            RolloutState::Halted => {
                let h = done.halt.clone();
                tracing::error!(rollout = %done.id, halt = ?h.as_ref().map(|h| &h.message), "rollout HALTED");
                self.notify(
                    "rollout-halted",
                    &done,
                    h.as_ref().map(|h| h.message.as_str()),
                );
                self.mark_failed(&done)?;
                self.metrics.inc_error("rollout");
            }
            RolloutState::Paused => {
                tracing::info!(rollout = %done.id, why = ?done.paused, "rollout paused");
            }
            RolloutState::Running | RolloutState::Aborted => {}
        }
        Ok(())
    }

    /// POST a JSON event to the notification webhook, if one is configured. Failures are
    /// logged, never fatal.
    fn notify(&self, event: &str, j: &Journal, message: Option<&str>) {
        let Some(url) = &self.cfg.notify.webhook_url else {
            return;
        };
        let body = serde_json::json!({
            "event": event,
            "rollout": j.id,
            "commit": j.commit,
            "nodes": j.nodes.iter().map(|n| serde_json::json!({
                "node": n.node, "action": n.action.name(), "done": n.is_done(),
            })).collect::<Vec<_>>(),
            "halt": j.halt.as_ref().map(|h| serde_json::json!({
                "node": h.node, "step": h.step.name(), "message": h.message, "hint": h.hint,
                "data_loss": h.data_loss,
            })),
            "message": message,
        });
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        if let Err(e) = agent.post(url).send_json(body) {
            tracing::warn!(event, error = %e, "the notification webhook failed");
            self.metrics.inc_error("notify");
        }
    }
}

/// Progress into metrics (and log lines).
struct MetricsProgress {
    metrics: Metrics,
    lines: progress::Lines,
}

impl progress::Progress for MetricsProgress {
    fn step_started(
        &self,
        node: &str,
        step: crate::rollout::steps::Step,
        done: usize,
        total: usize,
    ) {
        self.metrics.set_node_phase(node, step.name());
        self.lines.step_started(node, step, done, total);
    }
    fn step_done(&self, node: &str, step: crate::rollout::steps::Step, done: usize, total: usize) {
        if done == total {
            self.metrics.set_node_phase(node, "done");
        }
        self.lines.step_done(node, step, done, total);
    }
    fn step_failed(&self, node: &str, step: crate::rollout::steps::Step, message: &str) {
        self.metrics.set_node_phase(node, "failed");
        self.lines.step_failed(node, step, message);
    }
    fn note(&self, node: &str, message: &str) {
        self.lines.note(node, message);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `slipway suspend` / `slipway resume`: stop or restart applying (planning goes on).
pub fn set_suspended(state: &Path, suspended: bool) -> Result<ExitCode> {
    let file = state.join(SUSPENDED_FILE);
    if suspended {
        crate::repo_fs::write_atomic(&file, b"suspended by `slipway suspend`\n")?;
        println!("suspended: Slipway plans but applies nothing until `slipway resume`");
    } else {
        match std::fs::remove_file(&file) {
            Ok(()) => println!("resumed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("not suspended"),
            Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ask a running daemon to reconcile at once, windows overridden. `Ok(false)` when no
/// daemon runs on `state`.
pub fn request_now(state: &Path) -> Result<bool> {
    let pid = std::fs::read_to_string(state.join(PID_FILE)).unwrap_or_default();
    if pid.trim().is_empty() {
        return Ok(false);
    }
    crate::repo_fs::write_atomic(&state.join(NOW_FILE), b"now\n")?;
    println!(
        "asked the running slipway serve (pid {}) to reconcile now, maintenance windows overridden",
        pid.trim()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_watchdog_applies_to_this_process_unless_another_is_named() {
        use super::watchdog_usec;
        assert_eq!(watchdog_usec(Some("2000000"), None, 7), Some(2_000_000));
        assert_eq!(
            watchdog_usec(Some("2000000"), Some("7"), 7),
            Some(2_000_000)
        );
        assert_eq!(watchdog_usec(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_usec(None, Some("7"), 7), None);
        assert_eq!(watchdog_usec(Some("0"), None, 7), None);
        assert_eq!(watchdog_usec(Some("soon"), None, 7), None);
    }
}
