//! The SSH edge: the [`NodeConnector`]/[`NodeConn`] traits and their libssh2 implementation.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use ssh2::{ErrorCode, KnownHostFileKind, MethodType, Session};

use crate::remote::{RemoteEntry, RemoteKind};
use crate::target::{fingerprint_of_blob, public_blob, Auth, HostKeyPin, NodeTarget};
use crate::SshError;

/// libssh2's `LIBSSH2_ERROR_TIMEOUT`.
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;

/// Key exchange preference: curve25519 first, then the NIST/DH fallbacks
/// libssh2 supports.
pub const KEX_PREFERENCE: &str = "curve25519-sha256,curve25519-sha256@libssh.org,\
ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group16-sha512,\
diffie-hellman-group14-sha256";

/// Host key algorithm preference: ed25519 first.
pub const HOST_KEY_PREFERENCE: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,\
ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256";

/// The result of one remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status (`-1` when the command was killed by a signal and reported no status).
    pub status: i32,
    /// Everything the command wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the command wrote to stderr.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Opens sessions to nodes. The reconciler uses this trait and stubs it in tests.
pub trait NodeConnector: Send + Sync {
    /// The session type this connector opens.
    type Conn: NodeConn;
    /// Open an authenticated session whose host key matched the pin.
    fn connect(&self, target: &NodeTarget) -> Result<Self::Conn, SshError>;
}

/// One authenticated session to a node. Blocking; callers fan out with threads
/// or `spawn_blocking`.
pub trait NodeConn: Send {
    /// Run one shell command and collect its output and exit status.
    fn exec(&mut self, command: &str) -> Result<CommandOutput, SshError>;
    /// Read a small remote file.
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, SshError>;
    /// Create or replace a small remote file with exactly the given
    /// permission bits.
    fn write_file(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), SshError>;

    // The file-system operations below have default implementations that
    // refuse with [`SshError::Unsupported`], so test stubs that only read
    // facts need not implement them.

    /// Create or replace a remote file from a reader (large files are
    /// streamed, never held in memory), with exactly the given permission
    /// bits. Returns the number of bytes written.
    fn upload(&mut self, path: &str, contents: &mut dyn Read, mode: u32) -> Result<u64, SshError> {
        let _ = (path, contents, mode);
        Err(SshError::Unsupported {
            operation: "upload",
        })
    }

    /// Create a directory and every missing parent (`mkdir -p`), each new
    /// one with `mode`. An existing directory is not an error; an existing
    /// non-directory is.
    fn make_dirs(&mut self, path: &str, mode: u32) -> Result<(), SshError> {
        let _ = (path, mode);
        Err(SshError::Unsupported { operation: "mkdir" })
    }

    /// Rename `from` to `to`. Over SFTP version 3 (OpenSSH's server) this
    /// **fails when `to` exists**, file or directory: it never replaces.
    /// [`crate::replace_tree`] builds an atomic swap on top of it.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), SshError> {
        let _ = (from, to);
        Err(SshError::Unsupported {
            operation: "rename",
        })
    }

    /// Remove `path` and everything below it. Symbolic links are removed,
    /// never followed. A missing `path` is not an error.
    fn remove_all(&mut self, path: &str) -> Result<(), SshError> {
        let _ = path;
        Err(SshError::Unsupported {
            operation: "remove",
        })
    }

    /// The entries of a directory, without `.` and `..`, sorted by name.
    /// Symbolic links are reported as links, not followed.
    fn list_dir(&mut self, path: &str) -> Result<Vec<RemoteEntry>, SshError> {
        let _ = path;
        Err(SshError::Unsupported { operation: "list" })
    }

    /// What is at `path`, without following a final symbolic link; `None`
    /// when nothing is there.
    fn metadata(&mut self, path: &str) -> Result<Option<RemoteEntry>, SshError> {
        let _ = path;
        Err(SshError::Unsupported { operation: "stat" })
    }

    /// Create a symbolic link at `link` whose content is `target` (may be
    /// relative to the link's folder).
    fn symlink(&mut self, target: &str, link: &str) -> Result<(), SshError> {
        let _ = (target, link);
        Err(SshError::Unsupported {
            operation: "symlink",
        })
    }
}

/// Time limits and other knobs for [`Ssh2Connector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Limit for every blocking SSH operation after that: handshake,
    /// authentication, and each command (libssh2's session timeout).
    pub command_timeout: Duration,
    /// Interval between SSH keepalive messages.
    pub keepalive_interval: Duration,
    /// The most output (stdout + stderr, each) a command may produce.
    pub max_output_bytes: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(15),
            max_output_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The real connector: libssh2 over TCP, host key pinned, never TOFU.
#[derive(Debug, Clone, Default)]
pub struct Ssh2Connector {
    /// Time limits.
    pub options: ConnectOptions,
}

impl Ssh2Connector {
    /// A connector with the given options.
    pub fn new(options: ConnectOptions) -> Self {
        Ssh2Connector { options }
    }
}

/// An open libssh2 session to one node.
pub struct Ssh2Conn {
    node: String,
    session: Session,
    max_output_bytes: usize,
    /// The SFTP channel, opened on first use and kept for the session.
    sftp: Option<ssh2::Sftp>,
}

impl std::fmt::Debug for Ssh2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssh2Conn")
            .field("node", &self.node)
            .finish()
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

fn is_timeout(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT)
}

impl NodeConnector for Ssh2Connector {
    type Conn = Ssh2Conn;

    fn connect(&self, target: &NodeTarget) -> Result<Ssh2Conn, SshError> {
        let node = target.name.clone();
        let addr_text = format!("{}:{}", target.host, target.port);
        let connect_err = |message: String| SshError::Connect {
            node: node.clone(),
            addr: addr_text.clone(),
            message,
        };
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| connect_err(format!("cannot resolve: {e}")))?
            .collect();
        let mut last_err = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, self.options.connect_timeout) {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let tcp = match (tcp, last_err) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(SshError::Timeout {
                    node,
                    during: format!("connecting to {addr_text}"),
                })
            }
            (None, Some(e)) => return Err(connect_err(e.to_string())),
            (None, None) => return Err(connect_err("host resolved to no address".into())),
        };
        let _ = tcp.set_nodelay(true);

        let mut session = Session::new().map_err(|e| SshError::Handshake {
            node: node.clone(),
            message: e.to_string(),
        })?;
        session.set_tcp_stream(tcp);
        session.set_timeout(millis(self.options.command_timeout));
        let handshake_err = |e: ssh2::Error| SshError::Handshake {
            node: node.clone(),
            message: e.to_string(),
        };
        session
            .method_pref(MethodType::Kex, KEX_PREFERENCE)
            .map_err(handshake_err)?;
        session
            .method_pref(MethodType::HostKey, &host_key_preference(&target.host_key))
            .map_err(handshake_err)?;
        session.handshake().map_err(|e| {
            if is_timeout(&e) {
                SshError::Timeout {
                    node: node.clone(),
                    during: "the SSH handshake".into(),
                }
            } else {
                handshake_err(e)
            }
        })?;

        let (server_key, _) = session.host_key().ok_or_else(|| SshError::Handshake {
            node: node.clone(),
            message: "server sent no host key".into(),
        })?;
        verify_host_key(target, server_key)?;

        authenticate(&session, target)?;
        session.set_keepalive(
            false,
            self.options.keepalive_interval.as_secs().max(1) as u32,
        );
        tracing::debug!(node = %node, "ssh session established");
        Ok(Ssh2Conn {
            node,
            session,
            max_output_bytes: self.options.max_output_bytes,
            sftp: None,
        })
    }
}

/// Put the pinned key's algorithm first so the server presents that key.
fn host_key_preference(pin: &HostKeyPin) -> String {
    if let HostKeyPin::PublicKey(line) = pin {
        if let Some(alg) = line.split_whitespace().next() {
            let rest: Vec<&str> = HOST_KEY_PREFERENCE
                .split(',')
                .filter(|a| *a != alg)
                .collect();
            if HOST_KEY_PREFERENCE.split(',').any(|a| a == alg) {
                return format!("{alg},{}", rest.join(","));
            }
        }
    }
    HOST_KEY_PREFERENCE.to_string()
}

/// Compare the server's host key with the pin. A mismatch or an unknown host
/// is a hard error.
pub(crate) fn verify_host_key(target: &NodeTarget, server_key: &[u8]) -> Result<(), SshError> {
    match &target.host_key {
        HostKeyPin::PublicKey(line) => {
            let pinned = public_blob(line)?;
            if pinned == server_key {
                Ok(())
            } else {
                Err(SshError::HostKeyMismatch {
                    node: target.name.clone(),
                    expected: fingerprint_of_blob(&pinned),
                    actual: fingerprint_of_blob(server_key),
                })
            }
        }
        HostKeyPin::KnownHosts(path) => verify_known_hosts(target, path, server_key),
    }
}

/// Check each known_hosts line on its own (libssh2 does the host matching,
/// including hashed names), so a mismatch can name the expected key.
fn verify_known_hosts(target: &NodeTarget, path: &Path, server_key: &[u8]) -> Result<(), SshError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SshError::InvalidKey(format!(
            "cannot read known_hosts file {}: {e}",
            path.display()
        ))
    })?;
    let session = Session::new()
        .map_err(|e| SshError::InvalidKey(format!("cannot create libssh2 session: {e}")))?;
    let mut expected = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('@') {
            continue;
        }
        let mut known = session
            .known_hosts()
            .map_err(|e| SshError::InvalidKey(format!("cannot create known_hosts store: {e}")))?;
        if known.read_str(trimmed, KnownHostFileKind::OpenSSH).is_err() {
            // A key type libssh2 does not know: cannot match this host anyway.
            continue;
        }
        match known.check_port(&target.host, target.port, server_key) {
            ssh2::CheckResult::Match => return Ok(()),
            ssh2::CheckResult::Mismatch => {
                let key_field = trimmed
                    .split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ");
                expected.push(
                    crate::target::fingerprint_of_public(&key_field)
                        .unwrap_or_else(|_| "an unparseable key".to_string()),
                );
            }
            ssh2::CheckResult::NotFound | ssh2::CheckResult::Failure => {}
        }
    }
    if expected.is_empty() {
        Err(SshError::UnknownHost {
            node: target.name.clone(),
            host: if target.port == 22 {
                target.host.clone()
            } else {
                format!("[{}]:{}", target.host, target.port)
            },
            path: path.to_path_buf(),
        })
    } else {
        Err(SshError::HostKeyMismatch {
            node: target.name.clone(),
            expected: expected.join(" or "),
            actual: fingerprint_of_blob(server_key),
        })
    }
}

fn authenticate(session: &Session, target: &NodeTarget) -> Result<(), SshError> {
    let result = match &target.auth {
        Auth::KeyFile(path) => session.userauth_pubkey_file(&target.user, None, path, None),
        Auth::KeyMemory(key) => session.userauth_pubkey_memory(&target.user, None, key, None),
        Auth::Agent => session.userauth_agent(&target.user),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(SshError::AuthFailed {
            node: target.name.clone(),
            user: target.user.clone(),
            message: "server did not accept the key".into(),
        }),
        Err(e) if is_timeout(&e) => Err(SshError::Timeout {
            node: target.name.clone(),
            during: "authenticating".into(),
        }),
        Err(e) => Err(SshError::AuthFailed {
            node: target.name.clone(),
            user: target.user.clone(),
            message: e.to_string(),
        }),
    }
}

/// Read everything from `reader`, failing past `limit` bytes.
fn read_limited(mut reader: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let read = reader
        .by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok((read <= limit).then_some(buf))
}

impl Ssh2Conn {
    /// The node this session is connected to.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn exec_err(&self, command: &str, e: impl std::fmt::Display) -> SshError {
        SshError::Exec {
            node: self.node.clone(),
            command: command.to_string(),
            message: e.to_string(),
        }
    }

    fn io_err(&self, command: &str, e: std::io::Error) -> SshError {
        if e.kind() == std::io::ErrorKind::TimedOut
            || e.to_string().contains("Timed out")
            || e.to_string().contains("timed out")
        {
            SshError::Timeout {
                node: self.node.clone(),
                during: format!("running `{command}`"),
            }
        } else {
            self.exec_err(command, e)
        }
    }

    fn ssh_err(&self, command: &str, e: ssh2::Error) -> SshError {
        if is_timeout(&e) {
            SshError::Timeout {
                node: self.node.clone(),
                during: format!("running `{command}`"),
            }
        } else {
            self.exec_err(command, e)
        }
    }

    /// The session's SFTP channel, opened on first use.
    fn sftp(&mut self, operation: &'static str, path: &str) -> Result<&ssh2::Sftp, SshError> {
        if self.sftp.is_none() {
            let sftp = self
                .session
                .sftp()
                .map_err(|e| self.sftp_err(operation, path, e))?;
            self.sftp = Some(sftp);
        }
        match &self.sftp {
            Some(sftp) => Ok(sftp),
            None => Err(self.sftp_err(operation, path, "no SFTP channel")),
        }
    }

    fn sftp_err(&self, operation: &'static str, path: &str, e: impl std::fmt::Display) -> SshError {
        SshError::Sftp {
            node: self.node.clone(),
            operation,
            path: path.to_string(),
            message: e.to_string(),
        }
    }
}

impl NodeConn for Ssh2Conn {
    fn exec(&mut self, command: &str) -> Result<CommandOutput, SshError> {
        // Sends a keepalive only when the interval has elapsed since the last one.
        self.session
            .keepalive_send()
            .map_err(|e| self.ssh_err(command, e))?;
        let mut channel = self
            .session
            .channel_session()
            .map_err(|e| self.ssh_err(command, e))?;
        channel
            .exec(command)
            .map_err(|e| self.ssh_err(command, e))?;
        // Outputs are small (facts); the channel window (2 MiB) buffers stderr
        // while stdout is drained first.
        let too_large = || SshError::OutputTooLarge {
            node: self.node.clone(),
            command: command.to_string(),
            limit: self.max_output_bytes,
        };
        let stdout = read_limited(&mut channel, self.max_output_bytes)
            .map_err(|e| self.io_err(command, e))?
            .ok_or_else(too_large)?;
        let stderr = read_limited(channel.stderr(), self.max_output_bytes)
            .map_err(|e| self.io_err(command, e))?
            .ok_or_else(too_large)?;
        channel.wait_close().map_err(|e| self.ssh_err(command, e))?;
        let status = match channel.exit_signal() {
            Ok(sig) if sig.exit_signal.is_some() => -1,
            _ => channel
                .exit_status()
                .map_err(|e| self.ssh_err(command, e))?,
        };
        tracing::trace!(node = %self.node, status, "command finished");
        Ok(CommandOutput {
            status,
            stdout,
            stderr,
        })
    }

    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, SshError> {
        let limit = self.max_output_bytes;
        let file = self
            .sftp("read", path)?
            .open(Path::new(path))
            .map_err(|e| self.sftp_err("read", path, e))?;
        read_limited(file, limit)
            .map_err(|e| self.sftp_err("read", path, e))?
            .ok_or_else(|| self.sftp_err("read", path, "file larger than the output limit"))
    }

    fn write_file(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), SshError> {
        self.upload(path, &mut &contents[..], mode).map(|_| ())
    }

    fn upload(&mut self, path: &str, contents: &mut dyn Read, mode: u32) -> Result<u64, SshError> {
        let perm = mode & 0o7777;
        let mut file = self
            .sftp("write", path)?
            .open_mode(
                Path::new(path),
                ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::TRUNCATE,
                // Created with at most these bits (the server's umask may
                // drop some); set exactly below.
                i32::try_from(perm).unwrap_or(0o600),
                ssh2::OpenType::File,
            )
            .map_err(|e| self.sftp_err("write", path, e))?;
        // Exact bits, also when the file existed with other ones, before any
        // byte is written.
        file.setstat(perm_stat(perm))
            .map_err(|e| self.sftp_err("chmod", path, e))?;
        let written =
            std::io::copy(contents, &mut file).map_err(|e| self.sftp_err("write", path, e))?;
        file.close().map_err(|e| self.sftp_err("write", path, e))?;
        Ok(written)
    }

    fn make_dirs(&mut self, path: &str, mode: u32) -> Result<(), SshError> {
        let mut prefix = String::new();
        if path.starts_with('/') {
            prefix.push('/');
        }
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.metadata(&prefix)? {
                Some(e) if e.kind == RemoteKind::Dir => continue,
                Some(_) => {
                    return Err(self.sftp_err("mkdir", &prefix, "exists and is not a directory"))
                }
                None => {}
            }
            let made = self.sftp("mkdir", &prefix)?.mkdir(
                Path::new(&prefix),
                i32::try_from(mode & 0o7777).unwrap_or(0o755),
            );
            if let Err(e) = made {
                // Lost a race with another writer: fine if it is a directory now.
                if !matches!(self.metadata(&prefix)?, Some(e) if e.kind == RemoteKind::Dir) {
                    return Err(self.sftp_err("mkdir", &prefix, e));
                }
            }
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), SshError> {
        // No flags: SFTP v3 servers ignore them anyway, and none of them
        // replace an existing target.
        self.sftp("rename", from)?
            .rename(
                Path::new(from),
                Path::new(to),
                Some(ssh2::RenameFlags::empty()),
            )
            .map_err(|e| self.sftp_err("rename", &format!("{from} -> {to}"), e))
    }

    fn remove_all(&mut self, path: &str) -> Result<(), SshError> {
        let Some(entry) = self.metadata(path)? else {
            return Ok(());
        };
        if entry.kind == RemoteKind::Dir {
            for child in self.list_dir(path)? {
                self.remove_all(&join(path, &child.name))?;
            }
            self.sftp("rmdir", path)?
                .rmdir(Path::new(path))
                .map_err(|e| self.sftp_err("rmdir", path, e))
        } else {
            self.sftp("unlink", path)?
                .unlink(Path::new(path))
                .map_err(|e| self.sftp_err("unlink", path, e))
        }
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<RemoteEntry>, SshError> {
        let raw = self
            .sftp("list", path)?
            .readdir(Path::new(path))
            .map_err(|e| self.sftp_err("list", path, e))?;
        let mut entries: Vec<RemoteEntry> = raw
            .into_iter()
            .filter_map(|(p, stat)| {
                let name = p.file_name()?.to_str()?.to_string();
                Some(entry_of(name, &stat))
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn metadata(&mut self, path: &str) -> Result<Option<RemoteEntry>, SshError> {
        match self.sftp("stat", path)?.lstat(Path::new(path)) {
            Ok(stat) => {
                let name = path.rsplit('/').next().unwrap_or(path).to_string();
                Ok(Some(entry_of(name, &stat)))
            }
            Err(e) if e.code() == ErrorCode::SFTP(LIBSSH2_FX_NO_SUCH_FILE) => Ok(None),
            Err(e) => Err(self.sftp_err("stat", path, e)),
        }
    }

    fn symlink(&mut self, target: &str, link: &str) -> Result<(), SshError> {
        // OpenSSH's sftp-server takes SSH_FXP_SYMLINK's two paths in the
        // reverse order of the draft; libssh2 sends (first, second) as
        // given, so the target goes first for OpenSSH.
        self.sftp("symlink", link)?
            .symlink(Path::new(target), Path::new(link))
            .map_err(|e| self.sftp_err("symlink", &format!("{link} -> {target}"), e))
    }
}

/// SFTP status `SSH_FX_NO_SUCH_FILE`.
const LIBSSH2_FX_NO_SUCH_FILE: i32 = 2;

fn perm_stat(perm: u32) -> ssh2::FileStat {
    ssh2::FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(perm),
        atime: None,
        mtime: None,
    }
}

fn entry_of(name: String, stat: &ssh2::FileStat) -> RemoteEntry {
    let kind = match stat.file_type() {
        ssh2::FileType::Directory => RemoteKind::Dir,
        ssh2::FileType::RegularFile => RemoteKind::File,
        ssh2::FileType::Symlink => RemoteKind::Symlink,
        _ => RemoteKind::Other,
    };
    RemoteEntry {
        name,
        kind,
        mode: stat.perm.unwrap_or(0) & 0o7777,
        size: stat.size.unwrap_or(0),
    }
}

/// `dir/name` without doubling a trailing `/`.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pinned_algorithm_goes_first_in_host_key_preference() {
        let pref = host_key_preference(&HostKeyPin::PublicKey("ecdsa-sha2-nistp256 AAAA x".into()));
        assert!(
            pref.starts_with("ecdsa-sha2-nistp256,ssh-ed25519,"),
            "{pref}"
        );
        assert_eq!(pref.matches("ecdsa-sha2-nistp256").count(), 1);
        let pref = host_key_preference(&HostKeyPin::KnownHosts("/x".into()));
        assert!(pref.starts_with("ssh-ed25519,"));
    }

    #[test]
    fn read_limited_refuses_past_the_limit() {
        assert_eq!(read_limited(&b"abc"[..], 3).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_limited(&b"abcd"[..], 3).unwrap(), None);
    }
}
