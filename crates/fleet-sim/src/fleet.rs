//! The simulator: node folders, one sshd per node, the shared cluster folder,
//! and a supervisor thread that carries out reboots, faults and K3s starts.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slipway_model::net::MacAddr;
use zeroize::Zeroizing;

use crate::cluster::{read_cluster, update_cluster, ClusterState, CLUSTER_FILE, CLUSTER_MOUNT};
use crate::enter::{
    now_unix_ms, read_commands, refresh_proc, NodeDirs, ReceivedCommand, CLUSTER_DIR, SFTP_SERVER,
};
use crate::k3s::{Ctx, NodeView};
use crate::netboot::{self, Attempt, Firmware, NetbootOutcome, NetbootRecord};
use crate::procs::kill_tree;
use crate::shim::{SHIM_DIR, SHIM_PROGRAMS};
use crate::state::{
    checksum_for, read_state, update_state, write_state, BootSource, Fault, NodeState, SimState,
    STATE_FILE,
};
use crate::SimError;

/// The real OpenSSH server every node runs.
pub const SSHD: &str = "/usr/sbin/sshd";
/// The busybox binary copied into every node (Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";
/// The real Ignition binary (Debian package `ignition`).
pub const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// How often the supervisor looks for reboot requests and due boots.
const TICK: Duration = Duration::from_millis(25);
/// The longest sshd may take to accept connections after being started.
const SSHD_READY_LIMIT: Duration = Duration::from_secs(20);
/// How long systemd waits before starting a failed K3s again (`RestartSec`, shortened).
const K3S_RESTART: Duration = Duration::from_millis(200);

/// The netboot log in a node's control directory (JSON lines, one [`NetbootRecord`] each).
pub const NETBOOT_LOG: &str = "netboot.jsonl";

/// What an install does with the node's `/var` partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarPolicy {
    /// Keep it (Slipway's layout: `wipe_filesystem: false`), K3s data included.
    Keep,
    /// Lose it (a new disk, or a wiped partition).
    Wipe,
}

/// What to simulate.
#[derive(Debug)]
pub struct FleetSpec {
    /// Where the node folders go (created if missing).
    pub dir: PathBuf,
    /// The `slipway-sim` multi-call binary (shims and sshd `ForceCommand`);
    /// see [`locate_sim_binary`].
    pub sim_binary: PathBuf,
    /// The nodes.
    pub nodes: Vec<SimNodeSpec>,
}

/// One simulated node.
pub struct SimNodeSpec {
    /// Node name (also its folder name).
    pub name: String,
    /// The node's ed25519 host private key, OpenSSH format. Written to the
    /// node's sshd folder (mode 0600) because sshd needs a file: use
    /// throwaway keys only.
    pub host_key_openssh_private: Zeroizing<String>,
    /// Public key lines allowed to log in as root.
    pub authorized_keys: Vec<String>,
    /// The state the node starts in.
    pub initial: NodeState,
    /// The NICs' MACs, the first one netboots (iPXE's `net0`).
    pub macs: Vec<MacAddr>,
    /// The firmware: boot server and boot order (see [`crate::netboot`]).
    pub firmware: Firmware,
}

impl SimNodeSpec {
    /// A node without MACs whose firmware knows no boot server (a network entry boots the
    /// installed system again); set [`SimNodeSpec::macs`] and [`SimNodeSpec::firmware`] for
    /// the network install.
    pub fn new(
        name: impl Into<String>,
        host_key_openssh_private: Zeroizing<String>,
        authorized_keys: Vec<String>,
        initial: NodeState,
    ) -> Self {
        SimNodeSpec {
            name: name.into(),
            host_key_openssh_private,
            authorized_keys,
            initial,
            macs: Vec::new(),
            firmware: Firmware::default(),
        }
    }
}

impl std::fmt::Debug for SimNodeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNodeSpec")
            .field("name", &self.name)
            .field("host_key_openssh_private", &"<redacted>")
            .field("authorized_keys", &self.authorized_keys)
            .field("initial", &self.initial)
            .field("macs", &self.macs)
            .field("firmware", &self.firmware)
            .finish()
    }
}

/// Find the `slipway-sim` binary: `$SLIPWAY_SIM_BIN`, else next to the
/// running executable or its parent (Cargo puts test binaries in
/// `target/<profile>/deps` and binaries in `target/<profile>`). Build it with
/// `cargo build -p slipway-fleet-sim` first.
pub fn locate_sim_binary() -> Result<PathBuf, SimError> {
    if let Some(path) = std::env::var_os("SLIPWAY_SIM_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()
        .map_err(|e| SimError::io("locating", Path::new("/proc/self/exe"), e))?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("slipway-sim"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| SimError::MissingTool {
            tool: "slipway-sim".into(),
            hint: format!(
                "looked in {candidates:?}; run `cargo build -p slipway-fleet-sim` or set SLIPWAY_SIM_BIN"
            ),
        })
}

/// Whether the node is powered and booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    /// Booted; sshd runs unless the `SshRefuses` fault is set.
    Up,
    /// Rebooting; boots at the instant, or never (`None`).
    Down(Option<Instant>),
    /// The firmware runs a network boot (on its own thread); it boots or stays down.
    Netbooting,
}

struct NodeRuntime {
    name: String,
    dirs: NodeDirs,
    port: u16,
    power: Power,
    sshd: Option<Child>,
    /// A digest of the state file as last seen (modification times are too coarse: two
    /// writes within one clock tick look alike).
    state_seen: Option<u64>,
    /// When the supervisor starts a failing K3s again.
    k3s_retry_at: Option<Instant>,
    /// The NICs' MACs.
    macs: Vec<MacAddr>,
    /// The firmware's configuration.
    firmware: Firmware,
}

struct Shared {
    nodes: Vec<Mutex<NodeRuntime>>,
    index: BTreeMap<String, usize>,
    stop: AtomicBool,
    shared_dir: PathBuf,
    cluster_dir: PathBuf,
    extra_sshd_options: String,
    userland: Userland,
    /// Network boots running on their own threads (joined by [`Fleet::stop`]).
    netboots: Mutex<Vec<JoinHandle<()>>>,
}

/// A running simulated fleet. Dropping it stops every sshd it started and
/// everything those started.
pub struct Fleet {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("nodes", &self.shared.index.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn lock(node: &Mutex<NodeRuntime>) -> MutexGuard<'_, NodeRuntime> {
    // A panic while holding the lock leaves consistent-enough data for cleanup.
    node.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn require_tool(path: &str, package: &str) -> Result<(), SimError> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(SimError::MissingTool {
            tool: path.into(),
            hint: format!("install the Debian package `{package}`"),
        })
    }
}

fn mkdir(path: &Path) -> Result<(), SimError> {
    std::fs::create_dir_all(path).map_err(|e| SimError::io("creating", path, e))
}

fn write(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> Result<(), SimError> {
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    std::fs::write(path, contents).map_err(|e| SimError::io("writing", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SimError::io("setting permissions of", path, e))
}

/// Hard-link `src` to `dst` (same filesystem), falling back to a copy.
fn link_or_copy(src: &Path, dst: &Path) -> Result<(), SimError> {
    if let Some(parent) = dst.parent() {
        mkdir(parent)?;
    }
    let _ = std::fs::remove_file(dst);
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst)
        .map(|_| ())
        .map_err(|e| SimError::io("copying to", dst, e))
}

fn symlink(target: &str, link: &Path) -> Result<(), SimError> {
    if let Some(parent) = link.parent() {
        mkdir(parent)?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| SimError::io("symlinking", link, e))
}

/// Shared libraries `ldd` lists for `binary` (empty for static binaries).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, SimError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| SimError::io("running ldd on", binary, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Files every node root gets: (path inside root, file in the shared dir).
struct Userland {
    files: Vec<(PathBuf, PathBuf)>,
    applets: Vec<String>,
}

/// Copy the binaries every node needs into `shared` once.
fn prepare_userland(shared: &Path, sim_binary: &Path) -> Result<Userland, SimError> {
    mkdir(shared)?;
    let mut files = Vec::new();
    let mut copy_in = |inside: &Path, source: &Path| -> Result<(), SimError> {
        let stored = shared.join(inside.strip_prefix("/").unwrap_or(inside));
        if let Some(parent) = stored.parent() {
            mkdir(parent)?;
        }
        std::fs::copy(source, &stored).map_err(|e| SimError::io("copying", source, e))?;
        files.push((inside.to_path_buf(), stored));
        Ok(())
    };
    copy_in(Path::new("/bin/busybox"), Path::new(BUSYBOX))?;
    copy_in(Path::new("/usr/libexec/slipway-sim"), sim_binary)?;
    copy_in(Path::new(SFTP_SERVER), Path::new(SFTP_SERVER))?;
    let mut libs = Vec::new();
    for binary in [Path::new(BUSYBOX), sim_binary, Path::new(SFTP_SERVER)] {
        for lib in shared_libraries(binary)? {
            if !libs.contains(&lib) {
                libs.push(lib);
            }
        }
    }
    for lib in libs {
        let real = std::fs::canonicalize(&lib).map_err(|e| SimError::io("resolving", &lib, e))?;
        copy_in(&lib, &real)?;
    }
    let out = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .map_err(|e| SimError::io("running", Path::new(BUSYBOX), e))?;
    let applets = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect();
    Ok(Userland { files, applets })
}

/// Build a node's root filesystem (also what an install will redo).
fn build_root(
    dirs: &NodeDirs,
    userland: &Userland,
    name: &str,
    os_version: &str,
) -> Result<(), SimError> {
    let root = dirs.root();
    for (inside, stored) in &userland.files {
        link_or_copy(
            stored,
            &root.join(inside.strip_prefix("/").unwrap_or(inside)),
        )?;
    }
    for applet in &userland.applets {
        symlink("busybox", &root.join("bin").join(applet))?;
    }
    for (usual, name) in SHIM_PROGRAMS {
        let shim_dir = root.join(SHIM_DIR.trim_start_matches('/'));
        symlink("/usr/libexec/slipway-sim", &shim_dir.join(name))?;
        if let Some(usual) = usual {
            symlink(
                "/usr/libexec/slipway-sim",
                &root.join(usual.trim_start_matches('/')),
            )?;
        }
    }
    for dir in [
        "var",
        "run/slipway-sim",
        CLUSTER_MOUNT.trim_start_matches('/'),
        "root",
        "etc/slipway",
        "proc/sys/kernel/random",
        "sbin",
    ] {
        mkdir(&root.join(dir))?;
    }
    let tmp = root.join("tmp");
    mkdir(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .map_err(|e| SimError::io("setting permissions of", &tmp, e))?;
    write(&root.join("dev/null"), "", 0o666)?;
    write(&root.join("etc/hostname"), format!("{name}\n"), 0o644)?;
    write(&root.join("etc/os-release"), os_release(os_version), 0o644)?;
    write(
        &root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    Ok(())
}

fn os_release(os_version: &str) -> String {
    format!(
        "NAME=\"Fedora Linux\"\nVERSION=\"{os_version} (CoreOS)\"\nID=fedora\nVARIANT_ID=coreos\nOSTREE_VERSION='{os_version}'\n"
    )
}

/// Apply `config_json` with the real Ignition into the node's root, `/var` bind-mounted,
/// in a private mount namespace with its own `/run`.
fn apply_ignition(dirs: &NodeDirs, config_json: &str) -> Result<(), SimError> {
    require_tool(IGNITION, "ignition")?;
    require_tool("/usr/bin/unshare", "util-linux")?;
    let root = dirs.root();
    let work = dirs.base.join("ignition");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| SimError::io("removing", &work, e))?;
    }
    // SELinux relabelling cannot run here: a no-op setfiles stands in for it.
    write(&work.join("bin/setfiles"), "#!/bin/sh\nexit 0\n", 0o755)?;
    // The config holds the K3s token: private to root, removed right after.
    write(&work.join("config.ign"), config_json, 0o600)?;
    let selinux = root.join("etc/selinux/config");
    if !selinux.exists() {
        write(&selinux, "SELINUX=disabled\nSELINUXTYPE=targeted\n", 0o644)?;
    }
    mkdir(&root.join("var"))?;
    let script = "set -e; mount -t tmpfs tmpfs /run; mount --bind \"$VAR\" \"$ROOT/var\"; \
         \"$IGN\" --platform file --stage fetch-offline --log-to-stdout; \
         \"$IGN\" --platform file --stage files --root \"$ROOT\" --log-to-stdout";
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            script,
        ])
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                work.join("bin").display()
            ),
        )
        .env("IGNITION_CONFIG_FILE", work.join("config.ign"))
        .env("IGN", IGNITION)
        .env("ROOT", &root)
        .env("VAR", dirs.var())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SimError::io("running", Path::new(IGNITION), e));
    let _ = std::fs::remove_dir_all(&work);
    let out = out?;
    if out.status.success() {
        return Ok(());
    }
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = log
        .lines()
        .filter(|l| !l.to_ascii_lowercase().contains("token"))
        .rev()
        .take(15)
        .collect();
    Err(SimError::IgnitionFailed {
        node: dirs.name(),
        log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// Write the parts of `state` that live in files (applied.json, canary).
fn write_state_files(dirs: &NodeDirs, state: &NodeState) -> Result<(), SimError> {
    let applied = dirs.root().join("etc/slipway/applied.json");
    match &state.applied {
        Some(cfg) => {
            let json = serde_json::to_string_pretty(cfg)
                .map_err(|e| SimError::InvalidSpec(e.to_string()))?;
            write(&applied, json, 0o644)?
        }
        None => {
            let _ = std::fs::remove_file(&applied);
        }
    }
    let canary = dirs.var().join("lib/slipway/canary");
    match &state.var_canary {
        Some(text) => write(&canary, format!("{text}\n"), 0o644)?,
        None => {
            let _ = std::fs::remove_file(&canary);
        }
    }
    Ok(())
}

/// Where an install takes the OS version from.
enum OsSource {
    /// `/etc/slipway/applied.json` as the config wrote it, else the version booted before
    /// ([`SimNode::install`], the stand-in for the image).
    AppliedJson,
    /// The metal image (the network install).
    Image(String),
}

/// Lay a fresh OS down on a powered-off node: a new root (FCOS userland), `/var` kept or
/// wiped, the config applied with the real Ignition, the OS version set. K3s is gone until
/// the next boot runs its installer from what landed. Returns the installed OS version.
fn lay_root(
    dirs: &NodeDirs,
    userland: &Userland,
    config_json: &str,
    var: VarPolicy,
    os: OsSource,
) -> Result<String, SimError> {
    let root = dirs.root();
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| SimError::io("removing", &root, e))?;
    }
    if var == VarPolicy::Wipe {
        let v = dirs.var();
        if v.exists() {
            std::fs::remove_dir_all(&v).map_err(|e| SimError::io("wiping", &v, e))?;
        }
        mkdir(&v)?;
    }
    let old_os = read_state(&dirs.control())?.os;
    let first_version = match &os {
        OsSource::Image(v) => v.clone(),
        OsSource::AppliedJson => old_os.version.clone(),
    };
    build_root(dirs, userland, &dirs.name(), &first_version)?;
    apply_ignition(dirs, config_json)?;
    let os_version = match os {
        OsSource::Image(v) => v,
        OsSource::AppliedJson => std::fs::read_to_string(root.join("etc/slipway/applied.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<slipway_model::facts::AppliedConfig>(&t).ok())
            .map_or(old_os.version, |a| a.os_version),
    };
    write(&root.join("etc/os-release"), os_release(&os_version), 0o644)?;
    update_state(&dirs.control(), |s| {
        s.os = slipway_model::facts::Deployment {
            checksum: checksum_for(&os_version),
            version: os_version.clone(),
        };
        s.pending_os = None;
        s.k3s = None;
    })?;
    Ok(os_version)
}

/// Append one record to the node's netboot log.
fn log_netboot(dirs: &NodeDirs, record: &NetbootRecord) -> Result<(), SimError> {
    use std::io::Write as _;
    let path = dirs.control().join(NETBOOT_LOG);
    let mut line =
        serde_json::to_string(record).map_err(|e| SimError::InvalidSpec(e.to_string()))?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| SimError::io("appending to", &path, e))?;
    tracing::info!(node = %dirs.name(), outcome = ?record.outcome, "network boot");
    Ok(())
}

/// Read a node's netboot log.
fn read_netboot_log(dirs: &NodeDirs) -> Result<Vec<NetbootRecord>, SimError> {
    crate::state::read_jsonl(&dirs.control().join(NETBOOT_LOG))
}

/// How a firmware walk ended.
enum WalkEnd {
    /// A disk entry booted.
    Booted,
    /// The node stays down, for this reason.
    Down(String),
}

/// The firmware of a powered-off node boots: entries from `BootCurrent` (already chosen by
/// the power cycle), then `BootOrder`. Network entries netboot from the node's boot server;
/// `script` (if any) is what the first network entry is served instead of asking the server.
/// Runs without the node's lock (HTTP and Ignition take a while); takes it to boot.
fn firmware_walk(
    shared: &Shared,
    index: usize,
    mut script: Option<String>,
) -> Result<(WalkEnd, Vec<NetbootRecord>), SimError> {
    let (dirs, firmware, mac) = {
        let rt = lock(&shared.nodes[index]);
        (
            rt.dirs.clone(),
            rt.firmware.clone(),
            rt.macs.first().copied(),
        )
    };
    let base = firmware.boot_server.unwrap_or_default();
    let efi = read_state(&dirs.control())?.efi;
    let mut queue: Vec<u16> = efi.current.into_iter().chain(efi.order.clone()).collect();
    let mut records = Vec::new();
    let mut installed = false;
    let mut tried: Vec<u16> = Vec::new();
    let mut i = 0;
    loop {
        let Some(&number) = queue.get(i) else {
            return Ok((
                WalkEnd::Down("no boot entry left to try: no bootable device".into()),
                records,
            ));
        };
        i += 1;
        if tried.contains(&number) {
            continue;
        }
        tried.push(number);
        let Some(entry) = efi.entry(number).filter(|e| e.active) else {
            continue;
        };
        if !entry.is_network {
            update_state(&dirs.control(), |s| {
                s.efi.current = Some(number);
                s.last_boot_source = BootSource::Disk;
            })?;
            return Ok((WalkEnd::Booted, records));
        }
        if shared.stop.load(Ordering::SeqCst) {
            return Ok((WalkEnd::Down("the simulator stopped".into()), records));
        }
        let mut record = NetbootRecord::new(mac.as_ref());
        let attempt = netboot::network_entry(
            &base,
            mac.as_ref(),
            script.take().as_deref(),
            !installed,
            &mut record,
        );
        match attempt {
            Attempt::NextEntry => log_netboot(&dirs, &record)?,
            Attempt::Stuck => {
                log_netboot(&dirs, &record)?;
                let reason = match &record.outcome {
                    NetbootOutcome::InstallFailed { reason } => {
                        format!("network install failed: {reason}")
                    }
                    _ => "the boot server served the install script again right after an install (reinstall loop)".into(),
                };
                records.push(record);
                return Ok((WalkEnd::Down(reason), records));
            }
            Attempt::Install(prepared) => {
                match lay_root(
                    &dirs,
                    &shared.userland,
                    &prepared.config,
                    prepared.var,
                    OsSource::Image(prepared.os_version),
                ) {
                    Ok(os_version) => {
                        record.outcome = NetbootOutcome::Installed {
                            os_version,
                            var_kept: prepared.var == VarPolicy::Keep,
                        };
                        log_netboot(&dirs, &record)?;
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        record.outcome = NetbootOutcome::InstallFailed {
                            reason: reason.clone(),
                        };
                        log_netboot(&dirs, &record)?;
                        records.push(record);
                        return Ok((
                            WalkEnd::Down(format!("network install failed: {reason}")),
                            records,
                        ));
                    }
                }
                installed = true;
                if read_state(&dirs.control())?.has(&Fault::NeverReturnsAfterReboot) {
                    records.push(record);
                    return Ok((
                        WalkEnd::Down("the NeverReturnsAfterReboot fault".into()),
                        records,
                    ));
                }
                // The installer reboots: BootNext is spent, the firmware starts over.
                queue = efi.order.clone();
                tried.clear();
                i = 0;
            }
        }
        records.push(record);
    }
}

/// Finish a firmware walk: boot, or stay down with the reason recorded.
fn finish_walk(shared: &Shared, index: usize, end: &WalkEnd, wait: bool) -> Result<(), SimError> {
    let mut rt = lock(&shared.nodes[index]);
    match end {
        WalkEnd::Down(reason) => {
            tracing::warn!(node = %rt.name, %reason, "node stays down");
            rt.power = Power::Down(None);
            update_state(&rt.dirs.control(), |s| s.down_reason = Some(reason.clone()))?;
            rt.state_changed();
            Ok(())
        }
        WalkEnd::Booted if shared.stop.load(Ordering::SeqCst) => {
            rt.power = Power::Down(None);
            Ok(())
        }
        WalkEnd::Booted => {
            rt.boot()?;
            if wait && rt.sshd.is_some() {
                rt.wait_ready(SSHD_READY_LIMIT)?;
                rt.state_changed();
            }
            Ok(())
        }
    }
}

/// The supervisor's thread for one network boot.
fn netboot_thread(shared: &Shared, index: usize) {
    let result = firmware_walk(shared, index, None)
        .and_then(|(end, _)| finish_walk(shared, index, &end, false));
    if let Err(e) = result {
        let reason = format!("the simulated firmware failed: {e}");
        tracing::warn!(index, error = %e, "network boot failed");
        let _ = finish_walk(shared, index, &WalkEnd::Down(reason), false);
    }
}

fn sshd_version_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new(SSHD).arg("-V").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stderr);
    let Some(rest) = text.split("OpenSSH_").nth(1) else {
        return false;
    };
    let mut nums = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let (maj, min) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (maj, min) >= (major, minor)
}

fn sshd_config(dirs: &NodeDirs, port: u16, sim_binary: &Path, extra: &str) -> String {
    let sshd = dirs.sshd();
    format!(
        "# Generated by slipway-fleet-sim for one simulated node.\n\
Port {port}\n\
ListenAddress 127.0.0.1\n\
HostKey {hostkey}\n\
PidFile {pid}\n\
AuthorizedKeysFile {authorized}\n\
UsePAM no\n\
StrictModes no\n\
PermitRootLogin prohibit-password\n\
PubkeyAuthentication yes\n\
PasswordAuthentication no\n\
KbdInteractiveAuthentication no\n\
HostbasedAuthentication no\n\
UseDNS no\n\
PrintMotd no\n\
PrintLastLog no\n\
X11Forwarding no\n\
AllowTcpForwarding no\n\
AllowAgentForwarding no\n\
PermitTunnel no\n\
PermitUserEnvironment no\n\
MaxStartups 200\n\
MaxSessions 64\n\
LoginGraceTime 30\n\
LogLevel INFO\n\
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256\n\
HostKeyAlgorithms ssh-ed25519\n\
SetEnv HOME={home}\n\
Subsystem sftp {sftp}\n\
ForceCommand \"{sim}\" wrap \"{base}\"\n\
{extra}",
        hostkey = sshd.join("host_ed25519").display(),
        pid = sshd.join("sshd.pid").display(),
        authorized = sshd.join("authorized_keys").display(),
        sftp = SFTP_SERVER,
        home = sshd.join("home").display(),
        sim = sim_binary.display(),
        base = dirs.base.display(),
    )
}

fn free_port() -> Result<u16, SimError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| SimError::io("binding", Path::new("127.0.0.1:0"), e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| SimError::io("binding", Path::new("127.0.0.1:0"), e))
}

impl NodeRuntime {
    fn spawn_sshd(&mut self) -> Result<(), SimError> {
        if self.sshd.is_some() {
            return Ok(());
        }
        let sshd_dir = self.dirs.sshd();
        let log_path = sshd_dir.join("sshd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| SimError::io("opening", &log_path, e))?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(sshd_dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| SimError::io("starting", Path::new(SSHD), e))?;
        tracing::debug!(node = %self.name, pid = child.id(), port = self.port, "sshd started");
        self.sshd = Some(child);
        Ok(())
    }

    fn stop_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            kill_tree(child.id());
            let _ = child.kill();
            let _ = child.wait();
            tracing::debug!(node = %self.name, "sshd stopped");
        }
    }

    /// Wait until sshd accepts TCP connections (or died).
    fn wait_ready(&mut self, limit: Duration) -> Result<(), SimError> {
        let deadline = Instant::now() + limit;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.sshd.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.sshd = None;
                    return Err(self.did_not_start(format!("sshd exited with {status}")));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(
                    self.did_not_start(format!("no listener on port {} in time", self.port))
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn did_not_start(&self, why: String) -> SimError {
        let log = std::fs::read_to_string(self.dirs.sshd().join("sshd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        SimError::SshdDidNotStart {
            node: self.name.clone(),
            message: format!(
                "{why}; sshd log: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        }
    }

    fn state_changed(&mut self) -> bool {
        let seen = digest_of(&self.dirs.control().join(STATE_FILE));
        let changed = seen != self.state_seen;
        self.state_seen = seen;
        changed
    }

    /// The node's file systems seen from the host.
    fn view(&self) -> NodeView {
        self.dirs.view()
    }

    /// Run `f` with this node's K3s context: its state lock, then the cluster lock.
    fn with_k3s<T>(
        &self,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, SimError>,
    ) -> Result<T, SimError> {
        let view = self.view();
        update_state(&view.control, |state| {
            update_cluster(&view.cluster, |cluster| {
                let mut ctx = Ctx {
                    view: &view,
                    state,
                    cluster,
                    now: now_unix_ms(),
                };
                f(&mut ctx)
            })
        })??
    }

    /// Schedule (or cancel) the next start of a failing K3s, as systemd's `Restart=` does.
    fn schedule_retry(&mut self, state: &SimState) {
        let failing = state
            .k3s
            .as_ref()
            .is_some_and(|k| k.follows_config && !k.active && k.failure.is_some());
        if !failing {
            self.k3s_retry_at = None;
        } else if self.k3s_retry_at.is_none() {
            self.k3s_retry_at = Some(Instant::now() + K3S_RESTART);
        }
    }

    /// One supervisor step for this node (`index` in `shared`).
    fn tick(&mut self, shared: &Arc<Shared>, index: usize) -> Result<(), SimError> {
        match self.power {
            Power::Up => {
                let changed = self.state_changed();
                let due = self.k3s_retry_at.is_some_and(|at| Instant::now() >= at);
                if !changed && !due {
                    return Ok(());
                }
                let mut state = read_state(&self.dirs.control())?;
                if state.reboot_requested {
                    return self.power_cycle();
                }
                if changed {
                    if state.has(&Fault::SshRefuses) {
                        self.stop_sshd();
                    } else if self.sshd.is_none() {
                        self.spawn_sshd()?;
                    }
                }
                if due {
                    self.k3s_retry_at = None;
                    state = self.with_k3s(|ctx| {
                        // Only a K3s that is still failing restarts (not one stopped meanwhile).
                        if ctx.state.k3s.as_ref().is_some_and(|k| k.failure.is_some()) {
                            ctx.start()?;
                        }
                        Ok(ctx.state.clone())
                    })?;
                    self.state_changed();
                }
                self.schedule_retry(&state);
            }
            Power::Down(Some(at)) if Instant::now() >= at => self.power_on(shared, index)?,
            Power::Down(_) | Power::Netbooting => {}
        }
        Ok(())
    }

    /// The power comes on: the firmware boots the entry the power cycle chose. A network
    /// entry with a boot server netboots on its own thread; anything else boots the disk.
    fn power_on(&mut self, shared: &Arc<Shared>, index: usize) -> Result<(), SimError> {
        let state = read_state(&self.dirs.control())?;
        let network = state
            .efi
            .current
            .and_then(|n| state.efi.entry(n))
            .is_some_and(|e| e.is_network);
        if !network || self.firmware.boot_server.is_none() {
            return self.boot();
        }
        self.power = Power::Netbooting;
        let for_thread = Arc::clone(shared);
        let handle = std::thread::Builder::new()
            .name(format!("netboot-{}", self.name))
            .spawn(move || netboot_thread(&for_thread, index))
            .map_err(|e| SimError::io("spawning", Path::new("netboot thread"), e))?;
        let mut running = shared
            .netboots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        running.retain(|h| !h.is_finished());
        running.push(handle);
        Ok(())
    }

    /// The cluster asked this node's K3s to exit (its etcd member was removed).
    fn apply_kill(&mut self) -> Result<(), SimError> {
        let state = self.with_k3s(|ctx| {
            ctx.apply_kill();
            Ok(ctx.state.clone())
        })?;
        self.state_changed();
        self.schedule_retry(&state);
        Ok(())
    }

    /// The power goes off: sessions die, K3s stops, firmware picks the next boot entry.
    fn power_cycle(&mut self) -> Result<(), SimError> {
        self.power_off()?;
        let delay = update_state(&self.dirs.control(), |s| {
            s.reboot_requested = false;
            s.down_reason = None;
            let honours_next = !s.has(&Fault::FirmwareIgnoresBootNext);
            let next = if honours_next {
                s.efi.next.take()
            } else {
                None
            };
            s.efi.current = next.or_else(|| s.efi.order.first().copied());
            s.last_boot_source = match s.efi.current.and_then(|n| s.efi.entry(n)) {
                Some(e) if e.is_network => BootSource::Network,
                _ => BootSource::Disk,
            };
            if let Some(pending) = s.pending_os.take() {
                s.os = pending;
            }
            if s.has(&Fault::NeverReturnsAfterReboot) {
                s.down_reason = Some("the NeverReturnsAfterReboot fault".into());
                return None;
            }
            let slow: u64 = s
                .faults
                .iter()
                .map(|f| match f {
                    Fault::SlowBoot { delay_ms } => *delay_ms,
                    _ => 0,
                })
                .sum();
            Some(Duration::from_millis(s.boot_delay_ms + slow))
        })?;
        self.state_changed();
        tracing::info!(node = %self.name, ?delay, "node rebooting");
        self.power = Power::Down(delay.map(|d| Instant::now() + d));
        Ok(())
    }

    /// sshd and K3s stop; the node is down until something boots it.
    fn power_off(&mut self) -> Result<(), SimError> {
        self.stop_sshd();
        self.k3s_retry_at = None;
        self.power = Power::Down(None);
        self.with_k3s(|ctx| {
            ctx.power_off();
            Ok(())
        })?;
        self.state_changed();
        Ok(())
    }

    /// Boot: new boot id, K3s starts (installer or service), sshd back (unless refused).
    fn boot(&mut self) -> Result<(), SimError> {
        let refuses = update_state(&self.dirs.control(), |s| {
            s.boot_id = crate::state::random_uuid();
            s.booted_at_unix_ms = now_unix_ms();
            s.boots += 1;
            s.down_reason = None;
            s.has(&Fault::SshRefuses)
        })?;
        refresh_proc(&self.dirs)?;
        self.power = Power::Up;
        let state = self.with_k3s(|ctx| {
            ctx.boot()?;
            Ok(ctx.state.clone())
        })?;
        self.state_changed();
        self.schedule_retry(&state);
        if !refuses {
            self.spawn_sshd()?;
        }
        tracing::info!(node = %self.name, "node booted");
        Ok(())
    }
}

impl Fleet {
    /// Lay out every node's folders and start one sshd per node on
    /// 127.0.0.1. Fails loudly if sshd, busybox, sftp-server or the
    /// simulator binary is missing.
    pub fn start(spec: FleetSpec) -> Result<Fleet, SimError> {
        require_tool(SSHD, "openssh-server")?;
        require_tool(SFTP_SERVER, "openssh-sftp-server")?;
        require_tool(BUSYBOX, "busybox-static")?;
        require_tool("/usr/bin/unshare", "util-linux")?;
        if !spec.sim_binary.is_file() {
            return Err(SimError::MissingTool {
                tool: spec.sim_binary.display().to_string(),
                hint: "build it with `cargo build -p slipway-fleet-sim`".into(),
            });
        }
        let mut index = BTreeMap::new();
        for (i, node) in spec.nodes.iter().enumerate() {
            if let Some(url) = &node.firmware.boot_server {
                netboot::require_loopback(url).map_err(|e| {
                    SimError::InvalidSpec(format!("boot server of node {:?}: {e}", node.name))
                })?;
            }
            let valid = !node.name.is_empty()
                && node
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                && !node.name.starts_with('.');
            if !valid {
                return Err(SimError::InvalidSpec(format!(
                    "invalid node name {:?}",
                    node.name
                )));
            }
            if index.insert(node.name.clone(), i).is_some() {
                return Err(SimError::InvalidSpec(format!(
                    "duplicate node name {:?}",
                    node.name
                )));
            }
        }
        mkdir(Path::new("/run/sshd"))?;
        mkdir(&spec.dir)?;
        let dir = std::fs::canonicalize(&spec.dir)
            .map_err(|e| SimError::io("resolving", &spec.dir, e))?;
        let shared_dir = dir.join(".shared");
        let userland = prepare_userland(&shared_dir, &spec.sim_binary)?;
        let cluster_dir = dir.join(CLUSTER_DIR);
        mkdir(&cluster_dir)?;
        // A fleet starts with no cluster (a reused folder forgets the last one).
        write(
            &cluster_dir.join(CLUSTER_FILE),
            serde_json::to_vec(&ClusterState::default())
                .map_err(|e| SimError::InvalidSpec(e.to_string()))?,
            0o644,
        )?;
        let sim_binary = shared_dir.join("usr/libexec/slipway-sim");
        let extra_sshd_options = if sshd_version_at_least(9, 8) {
            // Newer sshd penalises many failed connections from one source (127.0.0.1).
            "PerSourcePenalties no\n".to_string()
        } else {
            String::new()
        };

        let mut runtimes = Vec::new();
        for node in &spec.nodes {
            let dirs = NodeDirs {
                base: dir.join(&node.name),
            };
            for d in [
                dirs.var(),
                dirs.control(),
                dirs.sshd(),
                dirs.sshd().join("home"),
            ] {
                mkdir(&d)?;
            }
            build_root(&dirs, &userland, &node.name, &node.initial.os.version)?;
            write_state_files(&dirs, &node.initial)?;
            let mut efi = node.initial.efi.clone();
            if node.firmware.boot_server.is_some() {
                netboot::apply_method(&mut efi, node.firmware.method);
            }
            let _ = std::fs::remove_file(dirs.control().join(NETBOOT_LOG));
            write_state(
                &dirs.control(),
                &SimState {
                    name: node.name.clone(),
                    boot_id: crate::state::random_uuid(),
                    booted_at_unix_ms: now_unix_ms(),
                    boots: 1,
                    last_boot_source: BootSource::Disk,
                    os: node.initial.os.clone(),
                    pending_os: node.initial.pending_os.clone(),
                    k3s: node.initial.k3s.clone(),
                    efi,
                    faults: Vec::new(),
                    reboot_requested: false,
                    boot_delay_ms: node.initial.boot_delay_ms,
                    down_reason: None,
                },
            )?;
            refresh_proc(&dirs)?;
            let sshd_dir = dirs.sshd();
            let mut key = node.host_key_openssh_private.as_str().to_string();
            if !key.ends_with('\n') {
                key.push('\n');
            }
            let key = Zeroizing::new(key);
            write(&sshd_dir.join("host_ed25519"), key.as_bytes(), 0o600)?;
            write(
                &sshd_dir.join("authorized_keys"),
                node.authorized_keys
                    .iter()
                    .map(|k| format!("{}\n", k.trim()))
                    .collect::<String>(),
                0o600,
            )?;
            let runtime = NodeRuntime {
                name: node.name.clone(),
                dirs,
                port: 0,
                power: Power::Up,
                sshd: None,
                state_seen: None,
                k3s_retry_at: None,
                macs: node.macs.clone(),
                firmware: node.firmware.clone(),
            };
            runtimes.push(runtime);
        }
        // Every machine is known to the cluster before any K3s starts (endpoints resolve).
        for runtime in &runtimes {
            runtime.with_k3s(|ctx| {
                ctx.sync(true);
                Ok(())
            })?;
        }
        for runtime in &mut runtimes {
            let state = runtime.with_k3s(|ctx| {
                ctx.boot()?;
                Ok(ctx.state.clone())
            })?;
            runtime.schedule_retry(&state);
        }

        let shared = Arc::new(Shared {
            nodes: runtimes.into_iter().map(Mutex::new).collect(),
            index,
            stop: AtomicBool::new(false),
            shared_dir,
            cluster_dir,
            extra_sshd_options,
            userland,
            netboots: Mutex::new(Vec::new()),
        });
        // From here on, Drop cleans up whatever was started.
        let mut fleet = Fleet {
            shared,
            supervisor: None,
        };
        fleet.start_all_sshd(&sim_binary)?;
        let shared = Arc::clone(&fleet.shared);
        fleet.supervisor = Some(
            std::thread::Builder::new()
                .name("fleet-sim-supervisor".into())
                .spawn(move || supervise(&shared))
                .map_err(|e| SimError::io("spawning", Path::new("supervisor thread"), e))?,
        );
        Ok(fleet)
    }

    fn start_all_sshd(&mut self, sim_binary: &Path) -> Result<(), SimError> {
        const ATTEMPTS: usize = 5;
        let mut pending: Vec<usize> = (0..self.shared.nodes.len()).collect();
        for attempt in 1..=ATTEMPTS {
            for &i in &pending {
                let mut node = lock(&self.shared.nodes[i]);
                node.port = free_port()?;
                let config = sshd_config(
                    &node.dirs,
                    node.port,
                    sim_binary,
                    &self.shared.extra_sshd_options,
                );
                write(&node.dirs.sshd().join("sshd_config"), config, 0o600)?;
                node.spawn_sshd()?;
            }
            let mut failed = Vec::new();
            let mut last_err = None;
            for &i in &pending {
                let mut node = lock(&self.shared.nodes[i]);
                if let Err(e) = node.wait_ready(SSHD_READY_LIMIT) {
                    node.stop_sshd();
                    failed.push(i);
                    last_err = Some(e);
                } else {
                    node.state_changed();
                }
            }
            match last_err {
                None => return Ok(()),
                // A port taken between probing and sshd's bind: try new ports.
                Some(e) if attempt == ATTEMPTS => return Err(e),
                Some(e) => tracing::warn!(error = %e, attempt, "retrying sshd start"),
            }
            pending = failed;
        }
        Ok(())
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Result<SimNode<'_>, SimError> {
        self.shared
            .index
            .get(name)
            .map(|&index| SimNode { fleet: self, index })
            .ok_or_else(|| SimError::UnknownNode(name.to_string()))
    }

    /// Every node, in spec order.
    pub fn nodes(&self) -> Vec<SimNode<'_>> {
        (0..self.shared.nodes.len())
            .map(|index| SimNode { fleet: self, index })
            .collect()
    }

    /// Where the shared binaries were copied.
    pub fn shared_dir(&self) -> &Path {
        &self.shared.shared_dir
    }

    /// The fleet's cluster folder (mounted at [`CLUSTER_MOUNT`] in every node).
    pub fn cluster_dir(&self) -> &Path {
        &self.shared.cluster_dir
    }

    /// The cluster-wide K3s state right now: the cluster, its etcd members, the Node
    /// objects, what every machine's K3s does, events, split-brains and conflicts.
    pub fn cluster(&self) -> Result<ClusterState, SimError> {
        read_cluster(&self.shared.cluster_dir)
    }

    /// Stop the supervisor and every sshd (with everything it started).
    /// Idempotent; also done on drop.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.join();
        }
        let netboots: Vec<JoinHandle<()>> = self
            .shared
            .netboots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
            .collect();
        for handle in netboots {
            let _ = handle.join();
        }
        for node in &self.shared.nodes {
            lock(node).stop_sshd();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A digest of a file's contents (`None` when unreadable).
fn digest_of(path: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

fn supervise(shared: &Arc<Shared>) {
    let cluster_file = shared.cluster_dir.join(CLUSTER_FILE);
    let mut cluster_seen = None;
    while !shared.stop.load(Ordering::SeqCst) {
        // The cluster may ask a machine's K3s to exit (its etcd member was removed).
        let seen = digest_of(&cluster_file);
        if seen != cluster_seen {
            cluster_seen = seen;
            match read_cluster(&shared.cluster_dir) {
                Ok(cluster) => {
                    for (host, status) in &cluster.hosts {
                        let Some(&i) = shared.index.get(host) else {
                            continue;
                        };
                        if status.kill.is_some() {
                            let mut node = lock(&shared.nodes[i]);
                            if let Err(e) = node.apply_kill() {
                                tracing::warn!(node = %node.name, error = %e, "stopping K3s failed");
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the cluster state failed"),
            }
        }
        for (index, node) in shared.nodes.iter().enumerate() {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let mut node = lock(node);
            if let Err(e) = node.tick(shared, index) {
                tracing::warn!(node = %node.name, error = %e, "simulator step failed");
            }
        }
        std::thread::sleep(TICK);
    }
}

/// A handle on one node of a running [`Fleet`].
#[derive(Clone, Copy)]
pub struct SimNode<'a> {
    fleet: &'a Fleet,
    index: usize,
}

impl std::fmt::Debug for SimNode<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("name", &self.name())
            .finish()
    }
}

impl SimNode<'_> {
    fn runtime(&self) -> MutexGuard<'_, NodeRuntime> {
        lock(&self.fleet.shared.nodes[self.index])
    }

    fn dirs(&self) -> NodeDirs {
        self.runtime().dirs.clone()
    }

    /// The node's name.
    pub fn name(&self) -> String {
        self.runtime().name.clone()
    }

    /// The sshd port on 127.0.0.1 (stable across reboots).
    pub fn port(&self) -> u16 {
        self.runtime().port
    }

    /// The node's root filesystem folder.
    pub fn root(&self) -> PathBuf {
        self.dirs().root()
    }

    /// The node's `/var` folder.
    pub fn var(&self) -> PathBuf {
        self.dirs().var()
    }

    /// The node's control folder (state.json, commands log).
    pub fn control(&self) -> PathBuf {
        self.dirs().control()
    }

    /// Show these host paths read-only inside the node, at the same paths, to every
    /// command that arrives from now on (FCOS has no Python; a benchmark that compares with
    /// Ansible's Python modules lends the node the host's). The node's own files at those
    /// paths are hidden while a command runs, never changed; missing mount points are
    /// created empty in its root.
    pub fn expose_host_paths(&self, paths: &[&Path]) -> Result<(), SimError> {
        let list = self.dirs().host_paths();
        let mut text = String::new();
        for p in paths {
            if !p.is_absolute() || !p.exists() {
                return Err(SimError::Unsupported(format!(
                    "cannot expose `{}` to {}: not an existing absolute path",
                    p.display(),
                    self.name()
                )));
            }
            text.push_str(&format!("{}\n", p.display()));
        }
        std::fs::write(&list, text).map_err(|e| SimError::io("writing", &list, e))
    }

    /// The node's current run-time state.
    pub fn state(&self) -> Result<SimState, SimError> {
        read_state(&self.dirs().control())
    }

    /// Whether the node is booted (sshd may still be refusing on a fault).
    pub fn is_up(&self) -> bool {
        self.runtime().power == Power::Up
    }

    /// The running sshd's pid, if any.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.runtime().sshd.as_ref().map(Child::id)
    }

    /// Inject a fault. `SshRefuses` takes effect at once; the others when
    /// the node next runs the affected program or reboots.
    pub fn inject(&self, fault: Fault) -> Result<(), SimError> {
        let refuse = fault == Fault::SshRefuses;
        let mut rt = self.runtime();
        let up = rt.power == Power::Up;
        rt.with_k3s(|ctx| {
            if !ctx.state.faults.contains(&fault) {
                ctx.state.faults.push(fault);
            }
            ctx.sync(up);
            Ok(())
        })?;
        if refuse {
            rt.stop_sshd();
        }
        rt.state_changed();
        Ok(())
    }

    /// Remove a fault. Clearing `SshRefuses` restarts sshd on a booted node
    /// and waits until it accepts connections.
    pub fn clear(&self, fault: &Fault) -> Result<(), SimError> {
        let mut rt = self.runtime();
        let up = rt.power == Power::Up;
        rt.with_k3s(|ctx| {
            ctx.state.faults.retain(|f| f != fault);
            ctx.sync(up);
            Ok(())
        })?;
        if *fault == Fault::SshRefuses && rt.power == Power::Up {
            rt.spawn_sshd()?;
            rt.wait_ready(SSHD_READY_LIMIT)?;
            rt.state_changed();
        }
        Ok(())
    }

    /// Every command the node received over SSH, oldest first.
    pub fn commands_received(&self) -> Result<Vec<ReceivedCommand>, SimError> {
        read_commands(&self.dirs())
    }

    /// Forget the commands received so far.
    pub fn clear_commands(&self) -> Result<(), SimError> {
        let path = self.dirs().control().join(crate::enter::COMMANDS_LOG);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SimError::io("removing", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Ask the node to reboot, as `systemctl reboot` would.
    pub fn reboot(&self) -> Result<(), SimError> {
        update_state(&self.dirs().control(), |s| s.reboot_requested = true)?;
        Ok(())
    }

    /// Write an installed state directly (OS deployment, K3s, EFI entries,
    /// applied.json, canary), as if an install had happened; the boot id
    /// and faults are kept. No Ignition runs: for a real install see [`SimNode::install`]
    /// and the network install ([`crate::netboot`]).
    pub fn write_installed(&self, installed: &NodeState) -> Result<(), SimError> {
        let rt = self.runtime();
        write_state_files(&rt.dirs, installed)?;
        let up = rt.power == Power::Up;
        rt.with_k3s(|ctx| {
            let s = &mut *ctx.state;
            s.os = installed.os.clone();
            s.pending_os = installed.pending_os.clone();
            s.k3s = installed.k3s.clone();
            s.efi = installed.efi.clone();
            s.boot_delay_ms = installed.boot_delay_ms;
            ctx.sync(up);
            Ok(())
        })
    }

    /// The node's file systems seen from the host.
    pub fn view(&self) -> NodeView {
        self.dirs().view()
    }

    /// The Kubernetes node name this machine's K3s registers with, once it tried.
    pub fn k3s_node_name(&self) -> Result<Option<String>, SimError> {
        let name = self.name();
        Ok(self
            .fleet
            .cluster()?
            .hosts
            .get(&name)
            .and_then(|h| h.node_name.clone()))
    }

    /// Whether this machine's Node object is Ready (see [`ClusterState::is_ready`]).
    pub fn k3s_ready(&self) -> Result<bool, SimError> {
        let name = self.name();
        let cluster = self.fleet.cluster()?;
        Ok(cluster
            .hosts
            .get(&name)
            .and_then(|h| h.node_name.as_deref())
            .is_some_and(|n| cluster.is_ready(n)))
    }

    /// The node's MACs (the first one netboots).
    pub fn macs(&self) -> Vec<MacAddr> {
        self.runtime().macs.clone()
    }

    /// The node's firmware configuration.
    pub fn firmware(&self) -> Firmware {
        self.runtime().firmware.clone()
    }

    /// Reconfigure the firmware (e.g. once the boot server's port is known): the boot
    /// server must be loopback; with one, `BootOrder` is rearranged for the method.
    pub fn set_firmware(&self, firmware: Firmware) -> Result<(), SimError> {
        if let Some(url) = &firmware.boot_server {
            netboot::require_loopback(url)?;
        }
        let mut rt = self.runtime();
        if firmware.boot_server.is_some() {
            update_state(&rt.dirs.control(), |s| {
                netboot::apply_method(&mut s.efi, firmware.method)
            })?;
            rt.state_changed();
        }
        rt.firmware = firmware;
        Ok(())
    }

    /// Every network boot of this node, oldest first: what was fetched (tokens redacted),
    /// what was decided, how it ended.
    pub fn netboot_log(&self) -> Result<Vec<NetbootRecord>, SimError> {
        read_netboot_log(&self.dirs())
    }

    /// Why the node stays down, while it does (failed network install, reinstall loop, no
    /// bootable entry, `NeverReturnsAfterReboot`).
    pub fn down_reason(&self) -> Result<Option<String>, SimError> {
        Ok(self.state()?.down_reason)
    }

    /// Whether the firmware is busy with a network boot right now.
    pub fn is_netbooting(&self) -> bool {
        self.runtime().power == Power::Netbooting
    }

    /// Press the reset button: the node power-cycles as on a reboot (`BootNext` honoured,
    /// boot delay, faults), also when it is down — e.g. stuck in the live environment
    /// after a failed install.
    pub fn power_cycle(&self) -> Result<(), SimError> {
        let mut rt = self.runtime();
        if rt.power == Power::Netbooting {
            return Err(SimError::Unsupported(
                "power cycle during a network boot".into(),
            ));
        }
        rt.power_cycle()
    }

    /// Boot the node's first network entry as if the boot server had served it `script`
    /// (an iPXE script, e.g. one captured earlier), then continue as the firmware does; see
    /// [`crate::netboot`]. Synchronous: returns the network boots it made once the node is
    /// up (sshd accepting) or has stayed down ([`SimNode::down_reason`]).
    pub fn boot_script(&self, script: &str) -> Result<Vec<NetbootRecord>, SimError> {
        {
            let mut rt = self.runtime();
            if rt.power == Power::Netbooting {
                return Err(SimError::Unsupported(
                    "a second network boot while one runs".into(),
                ));
            }
            rt.power_off()?;
            rt.power = Power::Netbooting;
            let entry = update_state(&rt.dirs.control(), |s| {
                let entry = s
                    .efi
                    .entries
                    .iter()
                    .find(|e| e.is_network)
                    .map(|e| e.number);
                if entry.is_some() {
                    s.efi.current = entry;
                    s.last_boot_source = BootSource::Network;
                }
                entry
            })?;
            if entry.is_none() {
                rt.power = Power::Down(None);
                return Err(SimError::Unsupported(
                    "the node has no network boot entry".into(),
                ));
            }
        }
        let shared = &self.fleet.shared;
        match firmware_walk(shared, self.index, Some(script.to_string())) {
            Ok((end, records)) => {
                finish_walk(shared, self.index, &end, true)?;
                Ok(records)
            }
            Err(e) => {
                let reason = format!("the simulated firmware failed: {e}");
                finish_walk(shared, self.index, &WalkEnd::Down(reason), false)?;
                Err(e)
            }
        }
    }

    /// Apply an Ignition config (JSON) to the node's current root with the real Ignition
    /// (stages `fetch-offline` and `files`, `/var` bind-mounted as on the machine), as the
    /// initramfs of a first boot would. Remote sources are fetched by Ignition itself and
    /// checked against their hashes. Nothing reboots: see [`SimNode::install`].
    pub fn apply_ignition(&self, config_json: &str) -> Result<(), SimError> {
        apply_ignition(&self.dirs(), config_json)
    }

    /// Install the node directly, on the network install's code path without the boot
    /// server (no script, image or token; see [`crate::netboot`] for the real thing): power
    /// off, a fresh root file system (FCOS userland; the OS version is the one the
    /// config's `/etc/slipway/applied.json` records, else the current one), `/var` kept or
    /// wiped, the Ignition config applied with the real Ignition, then boot — K3s runs
    /// its installer from what landed. Returns once the node booted and its sshd accepts
    /// connections (boot delays do not apply; `NeverReturnsAfterReboot` leaves it down).
    /// EFI entries and injected faults are kept.
    pub fn install(&self, config_json: &str, var: VarPolicy) -> Result<(), SimError> {
        let dirs = self.dirs();
        {
            let mut rt = self.runtime();
            if rt.power == Power::Netbooting {
                return Err(SimError::Unsupported(
                    "an install while the firmware netboots".into(),
                ));
            }
            rt.power_off()?;
        }
        let name = self.name();
        lay_root(
            &dirs,
            &self.fleet.shared.userland,
            config_json,
            var,
            OsSource::AppliedJson,
        )?;
        if self.state()?.has(&Fault::NeverReturnsAfterReboot) {
            update_state(&dirs.control(), |s| {
                s.down_reason = Some("the NeverReturnsAfterReboot fault".into())
            })?;
            tracing::info!(node = %name, "installed; never boots again (fault)");
            return Ok(());
        }
        let mut rt = self.runtime();
        rt.boot()?;
        if rt.sshd.is_some() {
            rt.wait_ready(SSHD_READY_LIMIT)?;
        }
        rt.state_changed();
        Ok(())
    }
}
