//! `slipway sim up | down | fault`: a simulated fleet of the repository's nodes (one real
//! sshd per node on 127.0.0.1, see `slipway-fleet-sim`) that outlives the command, for
//! demos and manual testing.
//!
//! `sim up` validates the repository, decrypts the node host keys, generates a client key
//! (`<state>/sim/client_key`) and starts `slipway sim run` detached in its own process group.
//! The node specs, host keys included, reach that child on its stdin, never on disk here
//! (the simulator itself writes each host key into its node's sshd folder, mode 0600: use
//! the simulator with throwaway keys). The child starts the [`Fleet`], writes
//! `<state>/sim/ready.json` (node → port, sshd pid) and serves fault requests that
//! `sim fault` drops into `<state>/sim/requests/` (faults like `ssh-refuses` stop the sshd
//! the child owns, so they must be applied in that process). SIGTERM (`sim down`) drops the
//! fleet, which kills every sshd, and removes the pid file.
//!
//! `sim up` also writes `<state>/sim/repo`, a copy of the repository whose nodes have
//! `ssh_address: 127.0.0.1:<port>` and whose `ssh.user` is `root` (the simulator's sshd
//! runs on this host), so every other command can be pointed at the simulated fleet.
//!
//! It does not start a boot server: the simulated firmware knows none, so network boots
//! boot the installed system again.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use slipway_fleet_sim::{
    locate_sim_binary, Fault, Firmware, Fleet, FleetSpec, NodeState, ReinstallMethod, SimNodeSpec,
};
use slipway_model::net::MacAddr;
use zeroize::Zeroizing;

use crate::artifacts::ArtifactIndex;
use crate::cmdline::{RepoArgs, SimFault};
use crate::{desired, repo_fs};

/// How long `sim up` waits for every sshd to come up.
const READY_LIMIT: Duration = Duration::from_secs(120);
/// How long `sim down` waits for the fleet to stop.
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// How long `sim fault` waits for the running fleet to apply a fault.
const FAULT_LIMIT: Duration = Duration::from_secs(60);
/// How often the running fleet looks for fault requests.
const POLL: Duration = Duration::from_millis(100);

/// The simulator's files inside a state folder.
#[derive(Debug, Clone)]
pub struct SimPaths {
    /// `<state>/sim`.
    pub dir: PathBuf,
}

impl SimPaths {
    /// The simulator's folder of a state folder.
    pub fn new(state: &Path) -> Self {
        SimPaths {
            dir: state.join("sim"),
        }
    }
    /// The node folders.
    pub fn fleet(&self) -> PathBuf {
        self.dir.join("fleet")
    }
    /// The repository copy pointing at the simulated nodes.
    pub fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }
    /// The private key that logs into every simulated node.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }
    /// The running fleet's pid.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }
    /// Written once every node's sshd accepts connections.
    pub fn ready(&self) -> PathBuf {
        self.dir.join("ready.json")
    }
    /// The running fleet's output.
    pub fn log(&self) -> PathBuf {
        self.dir.join("sim.log")
    }
    /// Fault requests.
    pub fn requests(&self) -> PathBuf {
        self.dir.join("requests")
    }
}

/// What the running fleet reports once it is up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ready {
    /// By node name.
    pub nodes: BTreeMap<String, ReadyNode>,
}

impl Ready {
    /// What a started fleet reports: each node's port and sshd pid.
    pub fn of(fleet: &Fleet) -> Ready {
        Ready {
            nodes: fleet
                .nodes()
                .iter()
                .map(|n| {
                    (
                        n.name(),
                        ReadyNode {
                            port: n.port(),
                            sshd_pid: n.sshd_pid(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// One node of [`Ready`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadyNode {
    /// Its sshd's port on 127.0.0.1.
    pub port: u16,
    /// Its sshd's pid when the fleet came up.
    pub sshd_pid: Option<u32>,
}

/// One node as `sim up` hands it to `sim run` (on stdin).
#[derive(Serialize, Deserialize)]
struct ChildNode {
    name: String,
    host_key: String,
    authorized_keys: Vec<String>,
    macs: Vec<String>,
    method: ReinstallMethod,
    os_version: String,
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.host_key);
    }
}

/// A fault request from `sim fault`.
#[derive(Debug, Serialize, Deserialize)]
struct FaultRequest {
    node: String,
    fault: Fault,
    clear: bool,
}

/// The fleet-sim fault a command-line fault stands for.
pub fn to_fault(f: SimFault, ms: u64) -> Fault {
    match f {
        SimFault::NeverReturnsAfterReboot => Fault::NeverReturnsAfterReboot,
        SimFault::SlowBoot => Fault::SlowBoot { delay_ms: ms },
        SimFault::SshRefuses => Fault::SshRefuses,
        SimFault::K3sNeverReady => Fault::K3sNeverReady,
        SimFault::FirmwareIgnoresBootNext => Fault::FirmwareIgnoresBootNext,
    }
}

/// Whether a process runs (a zombie does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

fn read_pid(paths: &SimPaths) -> Result<Option<u32>> {
    match std::fs::read_to_string(paths.pid()) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("reading {}", paths.pid().display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", paths.pid().display())),
    }
}

fn log_tail(paths: &SimPaths) -> String {
    let text = std::fs::read_to_string(paths.log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `slipway sim up`.
pub fn up(repo: &RepoArgs, state: &Path) -> Result<ExitCode> {
    let loaded = desired::load(repo)?;
    let paths = SimPaths::new(state);
    if let Some(pid) = read_pid(&paths)? {
        if alive(pid) {
            bail!("a simulated fleet is already running (pid {pid}): run `slipway sim down` first");
        }
    }
    for stale in [paths.fleet(), paths.repo(), paths.requests()] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    for stale in [paths.ready(), paths.pid()] {
        let _ = std::fs::remove_file(stale);
    }
    std::fs::create_dir_all(paths.requests())
        .with_context(|| format!("creating {}", paths.requests().display()))?;

    let client = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| anyhow!("generating the client key: {e}"))?;
    let client_private = client
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| anyhow!("encoding the client key: {e}"))?;
    let client_public = client
        .public_key()
        .to_openssh()
        .map_err(|e| anyhow!("encoding the client key: {e}"))?;
    write_private(&paths.client_key(), client_private.as_bytes())?;
    repo_fs::write_atomic(
        &paths.client_key().with_extension("pub"),
        format!("{client_public}\n").as_bytes(),
    )?;

    let cluster = &loaded.inventory.cluster;
    let os_version = ArtifactIndex::load(state)
        .ok()
        .and_then(|i| i.resolve(cluster).ok())
        .map(|r| r.fcos_release)
        .or_else(|| cluster.fcos.release.clone())
        .unwrap_or_else(|| "unknown".to_string());
    let mut authorized = cluster.ssh_authorized_keys.clone();
    authorized.push(client_public);
    // Simulated nodes get throwaway host keys: sshd needs its key in a file, and a real
    // node's key must never be written to disk in clear. The repository copy carries the
    // throwaway keys (encrypted to the same recipients), so pinning works against it.
    let mut nodes = Vec::new();
    let mut throwaway = std::collections::BTreeMap::new();
    for node in &loaded.inventory.nodes {
        let mut key =
            ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
                .map_err(|e| anyhow!("generating a host key for {}: {e}", node.name))?;
        key.set_comment(format!("root@{} (simulated)", node.hostname));
        let pem = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| anyhow!("encoding a host key for {}: {e}", node.name))?;
        throwaway.insert(
            node.name.clone(),
            slipway_model::secrets::Secret::new(pem.as_str()),
        );
        nodes.push(ChildNode {
            name: node.name.clone(),
            host_key: pem.to_string(),
            authorized_keys: authorized.clone(),
            macs: node.macs.iter().map(ToString::to_string).collect(),
            method: node.reinstall_method,
            os_version: os_version.clone(),
        });
    }
    let spec = Zeroizing::new(serde_json::to_vec(&nodes)?);
    drop(nodes);

    let log = std::fs::File::create(paths.log())
        .with_context(|| format!("creating {}", paths.log().display()))?;
    let log2 = log.try_clone().context("opening the simulator log")?;
    let exe = std::env::current_exe().context("finding the slipway binary")?;
    let mut child = std::process::Command::new(exe)
        .args(["sim", "run", "--state"])
        .arg(state)
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .context("starting the simulated fleet")?;
    repo_fs::write_atomic(&paths.pid(), format!("{}\n", child.id()).as_bytes())?;
    {
        let mut stdin = child
            .stdin
            .take()
            .context("opening the simulator's stdin")?;
        stdin
            .write_all(&spec)
            .context("handing the nodes to the simulator")?;
    }
    let started = Instant::now();
    let ready: Ready = loop {
        if let Ok(bytes) = std::fs::read(paths.ready()) {
            break serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", paths.ready().display()))?;
        }
        if let Some(status) = child.try_wait().context("watching the simulator")? {
            let _ = std::fs::remove_file(paths.pid());
            bail!(
                "the simulated fleet stopped ({status}) before it was ready:\n{}",
                log_tail(&paths)
            );
        }
        if started.elapsed() > READY_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(paths.pid());
            bail!(
                "the simulated fleet was not ready after {}s:\n{}",
                READY_LIMIT.as_secs(),
                log_tail(&paths)
            );
        }
        std::thread::sleep(POLL);
    };
    write_repo_copy(&paths.repo(), &loaded, &ready, &throwaway)?;

    println!("simulated fleet running (pid {})", child.id());
    for (name, n) in &ready.nodes {
        println!("  {name}: ssh root@127.0.0.1 -p {}", n.port);
    }
    println!("repository copy: {}", paths.repo().display());
    println!("client key:      {}", paths.client_key().display());
    println!("log:             {}", paths.log().display());
    println!(
        "try: slipway facts --repo {} --ssh-key {} --identity ...",
        paths.repo().display(),
        paths.client_key().display()
    );
    println!("stop it with: slipway sim down --state {}", state.display());
    Ok(ExitCode::SUCCESS)
}

/// Write a private file (mode 0600, created anew).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Copy the repository (without `.git`) to `dest`, pointing every node at its simulated sshd,
/// with each node's host key replaced by its simulated node's throwaway key (encrypted to the
/// repository's recipients).
pub fn write_repo_copy(
    dest: &Path,
    loaded: &desired::Loaded,
    ready: &Ready,
    host_keys: &std::collections::BTreeMap<String, slipway_model::secrets::Secret>,
) -> Result<()> {
    use slipway_model::secrets::{self, SecretMap, HOST_KEY_KEY, RECIPIENTS_FILE};
    for (rel, bytes) in loaded.files.iter() {
        repo_fs::write_atomic(&dest.join(rel), bytes)?;
    }
    let recipients_text = loaded
        .files
        .text(RECIPIENTS_FILE)
        .context("reading the recipients")?;
    let recipients = secrets::parse_recipients(RECIPIENTS_FILE, recipients_text)
        .map_err(|_| anyhow!("{RECIPIENTS_FILE} is invalid"))?;
    for (name, key) in host_keys {
        let map = SecretMap(std::collections::BTreeMap::from([(
            HOST_KEY_KEY.to_string(),
            key.clone(),
        )]));
        let sealed = secrets::encrypt(map.to_yaml().as_bytes(), &recipients)
            .with_context(|| format!("encrypting the simulated host key of {name}"))?;
        repo_fs::write_atomic(&dest.join(secrets::node_secrets_path(name)), &sealed)?;
    }
    let cluster_path = dest.join("cluster.yaml");
    let mut cluster: serde_yaml::Value = serde_yaml::from_slice(
        &std::fs::read(&cluster_path)
            .with_context(|| format!("reading {}", cluster_path.display()))?,
    )
    .context("reading cluster.yaml")?;
    let ssh = cluster
        .as_mapping_mut()
        .context("cluster.yaml is not a mapping")?
        .entry("ssh".into())
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    ssh.as_mapping_mut()
        .context("cluster.yaml: ssh is not a mapping")?
        .insert("user".into(), "root".into());
    repo_fs::write_atomic(&cluster_path, serde_yaml::to_string(&cluster)?.as_bytes())?;
    for node in &loaded.inventory.nodes {
        let port = ready
            .nodes
            .get(&node.name)
            .with_context(|| format!("the simulator did not report node {}", node.name))?
            .port;
        let p = dest.join(&node.file);
        let original =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let address = format!("127.0.0.1:{port}");
        let rewritten = if original.lines().any(|l| l.starts_with("ssh_address:")) {
            // Rewrite only when there is an address to replace; otherwise append, keeping the
            // file (and its quoting and comments) as written.
            let mut v: serde_yaml::Value = serde_yaml::from_str(&original)
                .with_context(|| format!("reading {}", node.file))?;
            v.as_mapping_mut()
                .with_context(|| format!("{} is not a mapping", node.file))?
                .insert("ssh_address".into(), address.into());
            serde_yaml::to_string(&v)?
        } else {
            let sep = if original.ends_with('\n') || original.is_empty() {
                ""
            } else {
                "\n"
            };
            format!("{original}{sep}ssh_address: \"{address}\"\n")
        };
        repo_fs::write_atomic(&p, rewritten.as_bytes())?;
    }
    Ok(())
}

/// `slipway sim run`: the detached fleet process `sim up` starts.
pub fn run(state: &Path) -> Result<ExitCode> {
    let paths = SimPaths::new(state);
    let result = run_inner(&paths);
    let _ = std::fs::remove_file(paths.ready());
    let _ = std::fs::remove_file(paths.pid());
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    result
}

fn run_inner(paths: &SimPaths) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the signal handler")?;
    }
    let mut input = Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the nodes from stdin")?;
    let nodes: Vec<ChildNode> = serde_json::from_slice(&input).context("reading the nodes")?;
    let mut specs = Vec::new();
    for mut n in nodes {
        let macs = n
            .macs
            .iter()
            .map(|m| m.parse::<MacAddr>().map_err(|e| anyhow!("{}: {e}", n.name)))
            .collect::<Result<Vec<_>>>()?;
        let mut spec = SimNodeSpec::new(
            n.name.clone(),
            Zeroizing::new(std::mem::take(&mut n.host_key)),
            std::mem::take(&mut n.authorized_keys),
            NodeState::fresh(&n.os_version),
        );
        spec.macs = macs;
        spec.firmware = Firmware {
            boot_server: None,
            method: n.method,
        };
        specs.push(spec);
    }
    let sim_binary = locate_sim_binary().map_err(|e| anyhow!("finding slipway-sim: {e}"))?;
    let fleet = Fleet::start(FleetSpec {
        dir: paths.fleet(),
        sim_binary,
        nodes: specs,
    })
    .map_err(|e| anyhow!("starting the fleet: {e}"))?;
    let ready = Ready::of(&fleet);
    repo_fs::write_atomic(&paths.ready(), &serde_json::to_vec_pretty(&ready)?)?;
    eprintln!("fleet ready: {} node(s)", ready.nodes.len());
    while !stop.load(Ordering::SeqCst) {
        serve_requests(paths, &fleet);
        std::thread::sleep(POLL);
    }
    eprintln!("stopping the fleet");
    drop(fleet);
    Ok(ExitCode::SUCCESS)
}

/// Apply every pending fault request; each gets a `.done` file with `ok` or the error.
fn serve_requests(paths: &SimPaths, fleet: &Fleet) {
    let Ok(entries) = std::fs::read_dir(paths.requests()) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let outcome = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<FaultRequest>(&b).map_err(|e| e.to_string()))
            .and_then(|r| {
                let node = fleet.node(&r.node).map_err(|e| e.to_string())?;
                if r.clear {
                    node.clear(&r.fault)
                } else {
                    node.inject(r.fault.clone())
                }
                .map_err(|e| e.to_string())?;
                eprintln!(
                    "{} {:?} on {}",
                    if r.clear { "cleared" } else { "injected" },
                    r.fault,
                    r.node
                );
                Ok(())
            });
        let done = path.with_extension("done");
        let body = match outcome {
            Ok(()) => "ok".to_string(),
            Err(e) => e,
        };
        let _ = repo_fs::write_atomic(&done, body.as_bytes());
        let _ = std::fs::remove_file(&path);
    }
}

/// `slipway sim down`.
pub fn down(state: &Path) -> Result<ExitCode> {
    let paths = SimPaths::new(state);
    let Some(pid) = read_pid(&paths)? else {
        println!("no simulated fleet is running");
        return Ok(ExitCode::SUCCESS);
    };
    if !alive(pid) {
        let _ = std::fs::remove_file(paths.pid());
        println!("the simulated fleet (pid {pid}) was not running any more");
        return Ok(ExitCode::SUCCESS);
    }
    let raw = i32::try_from(pid).context("pid out of range")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(raw),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("signalling the simulated fleet (pid {pid})"))?;
    let started = Instant::now();
    while alive(pid) || paths.pid().exists() {
        if started.elapsed() > STOP_LIMIT {
            bail!(
                "the simulated fleet (pid {pid}) did not stop within {}s: see {}",
                STOP_LIMIT.as_secs(),
                paths.log().display()
            );
        }
        std::thread::sleep(POLL);
    }
    println!("simulated fleet stopped (pid {pid})");
    Ok(ExitCode::SUCCESS)
}

/// `slipway sim fault`.
pub fn fault(state: &Path, node: &str, f: SimFault, ms: u64, clear: bool) -> Result<ExitCode> {
    let paths = SimPaths::new(state);
    let pid = read_pid(&paths)?
        .filter(|p| alive(*p))
        .context("no simulated fleet is running: run `slipway sim up` first")?;
    let request = FaultRequest {
        node: node.to_string(),
        fault: to_fault(f, ms),
        clear,
    };
    let id = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        std::process::id()
    );
    let req = paths.requests().join(format!("{id}.json"));
    let done = req.with_extension("done");
    repo_fs::write_atomic(&req, &serde_json::to_vec(&request)?)?;
    let started = Instant::now();
    let answer = loop {
        if let Ok(a) = std::fs::read_to_string(&done) {
            let _ = std::fs::remove_file(&done);
            break a;
        }
        if !alive(pid) {
            let _ = std::fs::remove_file(&req);
            bail!("the simulated fleet (pid {pid}) stopped");
        }
        if started.elapsed() > FAULT_LIMIT {
            let _ = std::fs::remove_file(&req);
            bail!(
                "the simulated fleet did not apply the fault within {}s",
                FAULT_LIMIT.as_secs()
            );
        }
        std::thread::sleep(POLL);
    };
    if answer != "ok" {
        bail!("{answer}");
    }
    println!(
        "{} {:?} on {node}",
        if clear { "cleared" } else { "injected" },
        request.fault
    );
    Ok(ExitCode::SUCCESS)
}
