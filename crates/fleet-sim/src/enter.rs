//! How an SSH command reaches a node: sshd's `ForceCommand` runs
//! `slipway-sim wrap <node dir>`, which records the command, refreshes the
//! node's `/proc` stand-ins, and re-executes itself as
//! `unshare --mount --propagation private slipway-sim enter <node dir> ...`;
//! `enter` bind-mounts the node's `/var`, its control directory and the fleet's
//! cluster folder into its root
//! (in the private mount namespace, so the mounts vanish with the command),
//! chroots, and execs the command with `/bin/sh -c`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cluster::CLUSTER_MOUNT;
use crate::k3s::NodeView;
use crate::state::{read_state, write_atomic, CONTROL_MOUNT};
use crate::SimError;

/// The sftp-server path configured as sshd's `Subsystem sftp`, inside and
/// outside the node root.
pub const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// The commands log in a node's control directory (JSON lines).
pub const COMMANDS_LOG: &str = "commands.jsonl";

/// PATH inside a node: the shims first, so `k3s` is the simulator even though Ignition
/// installs a binary at `/usr/local/bin/k3s`.
pub const NODE_PATH: &str =
    "/usr/lib/slipway-sim/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The fleet's cluster folder, next to the node folders.
pub const CLUSTER_DIR: &str = ".cluster";

/// One command a node received over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedCommand {
    /// The command line exactly as the client sent it (for SFTP sessions,
    /// the sftp-server path).
    pub command: String,
    /// When it arrived (Unix time, milliseconds).
    pub at_unix_ms: u64,
    /// The node's boot id at that time.
    pub boot_id: String,
}

/// The directories of one simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDirs {
    /// The node's folder.
    pub base: PathBuf,
}

impl NodeDirs {
    /// The root filesystem (replaced on every install).
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }
    /// `/var` (kept across installs that preserve it).
    pub fn var(&self) -> PathBuf {
        self.base.join("var")
    }
    /// The control directory (state, commands log), mounted at
    /// [`CONTROL_MOUNT`] inside the node.
    pub fn control(&self) -> PathBuf {
        self.base.join("control")
    }
    /// sshd's config, host key, authorized keys, pid file and log.
    pub fn sshd(&self) -> PathBuf {
        self.base.join("sshd")
    }
    /// Host paths shown read-only inside the node at the same path, one per line (see
    /// [`crate::SimNode::expose_host_paths`]).
    pub fn host_paths(&self) -> PathBuf {
        self.base.join("host-paths")
    }
    /// The fleet's cluster folder (shared by every node), mounted at [`CLUSTER_MOUNT`]
    /// inside the node.
    pub fn cluster(&self) -> PathBuf {
        self.base.parent().unwrap_or(&self.base).join(CLUSTER_DIR)
    }
    /// The node's name (its folder's name).
    pub fn name(&self) -> String {
        self.base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    /// The node's file systems seen from the host.
    pub fn view(&self) -> NodeView {
        NodeView {
            host: self.name(),
            root: self.root(),
            var: self.var(),
            control: self.control(),
            cluster: self.cluster(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Write the node's `/proc` stand-ins (boot id and uptime) from its state.
pub fn refresh_proc(dirs: &NodeDirs) -> Result<String, SimError> {
    let state = read_state(&dirs.control())?;
    let root = dirs.root();
    let random = root.join("proc/sys/kernel/random");
    std::fs::create_dir_all(&random).map_err(|e| SimError::io("creating", &random, e))?;
    write_atomic(
        &random.join("boot_id"),
        format!("{}\n", state.boot_id).as_bytes(),
    )?;
    let up = now_unix_ms().saturating_sub(state.booted_at_unix_ms) as f64 / 1000.0;
    write_atomic(
        &root.join("proc/uptime"),
        format!("{up:.2} {:.2}\n", up * 1.5).as_bytes(),
    )?;
    Ok(state.boot_id)
}

fn log_command(dirs: &NodeDirs, command: &str, boot_id: String) -> Result<(), SimError> {
    use std::io::Write;
    let path = dirs.control().join(COMMANDS_LOG);
    let mut line = serde_json::to_vec(&ReceivedCommand {
        command: command.to_string(),
        at_unix_ms: now_unix_ms(),
        boot_id,
    })
    .map_err(|e| SimError::CorruptState {
        path: path.clone(),
        message: e.to_string(),
    })?;
    line.push(b'\n');
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| SimError::io("opening", &path, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| SimError::io("locking", &path, e.into()))?;
    (&file)
        .write_all(&line)
        .map_err(|e| SimError::io("appending to", &path, e))
}

/// Read a node's commands log.
pub fn read_commands(dirs: &NodeDirs) -> Result<Vec<ReceivedCommand>, SimError> {
    crate::state::read_jsonl(&dirs.control().join(COMMANDS_LOG))
}

/// `slipway-sim wrap <node dir>`: the sshd `ForceCommand`. Returns only on error.
pub fn wrap(node_dir: &Path) -> SimError {
    let dirs = NodeDirs {
        base: node_dir.to_path_buf(),
    };
    let Some(command) = std::env::var_os("SSH_ORIGINAL_COMMAND") else {
        return SimError::Unsupported(
            "interactive shells are not simulated: send a command".into(),
        );
    };
    let command = command.to_string_lossy().into_owned();
    let boot_id = match refresh_proc(&dirs) {
        Ok(id) => id,
        Err(e) => return e,
    };
    if let Err(e) = log_command(&dirs, &command, boot_id) {
        return e;
    }
    let self_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return SimError::io("locating", Path::new("/proc/self/exe"), e),
    };
    let mut inner: Vec<OsString> = Vec::new();
    if command == SFTP_SERVER {
        inner.push(SFTP_SERVER.into());
    } else {
        inner.extend(["/bin/sh".into(), "-c".into(), command.into()]);
    }
    let err = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(self_exe)
        .arg("enter")
        .arg(node_dir)
        .arg("--")
        .args(inner)
        .exec();
    SimError::io("executing", Path::new("unshare"), err)
}

/// Bind the host paths listed in the node's `host-paths` file read-only into its root, at
/// the same paths (mount points are created in the root as needed). No file, no mounts.
fn mount_host_paths(dirs: &NodeDirs) -> Result<(), SimError> {
    use rustix::mount::{mount_bind, mount_remount, MountFlags};
    let list = dirs.host_paths();
    let text = match std::fs::read_to_string(&list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SimError::io("reading", &list, e)),
    };
    let root = dirs.root();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let source = Path::new(line);
        let Ok(relative) = source.strip_prefix("/") else {
            return Err(SimError::Unsupported(format!(
                "{}: `{line}` is not an absolute path",
                list.display()
            )));
        };
        let target = root.join(relative);
        if source.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| SimError::io("creating", &target, e))?;
        } else if !target.exists() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| SimError::io("creating", parent, e))?;
            }
            std::fs::write(&target, b"").map_err(|e| SimError::io("creating", &target, e))?;
        }
        mount_bind(source, &target)
            .map_err(|e| SimError::io("bind-mounting onto", &target, e.into()))?;
        mount_remount(&target, MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(|e| SimError::io("making read-only", &target, e.into()))?;
    }
    Ok(())
}

/// `slipway-sim enter <node dir> -- <argv...>`: runs in a private mount
/// namespace; mounts, chroots and execs. Returns only on error.
pub fn enter(node_dir: &Path, argv: &[OsString]) -> SimError {
    let dirs = NodeDirs {
        base: node_dir.to_path_buf(),
    };
    let root = dirs.root();
    let binds = [
        (dirs.var(), root.join("var")),
        (
            dirs.control(),
            root.join(CONTROL_MOUNT.trim_start_matches('/')),
        ),
        (
            dirs.cluster(),
            root.join(CLUSTER_MOUNT.trim_start_matches('/')),
        ),
        (PathBuf::from("/dev/null"), root.join("dev/null")),
    ];
    for (source, target) in &binds {
        if let Err(e) = rustix::mount::mount_bind(source, target) {
            return SimError::io("bind-mounting onto", target, e.into());
        }
    }
    if let Err(e) = mount_host_paths(&dirs) {
        return e;
    }
    if let Err(e) = rustix::process::chroot(&root) {
        return SimError::io("chrooting into", &root, e.into());
    }
    if let Err(e) = std::env::set_current_dir("/") {
        return SimError::io("changing directory to", Path::new("/"), e);
    }
    let Some((program, args)) = argv.split_first() else {
        return SimError::Unsupported("enter: no command given".into());
    };
    let err = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", NODE_PATH)
        .env("HOME", "/root")
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("SHELL", "/bin/sh")
        .env("LANG", "C.UTF-8")
        .exec();
    SimError::io("executing", Path::new(program), err)
}
