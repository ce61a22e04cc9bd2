//! The git source against real repositories made with the git CLI, commits signed with
//! `git commit -S` (gpg.format=ssh) and keys made with ssh-keygen. Remotes are local paths,
//! `file://` URLs, and `ssh://` to a private sshd on 127.0.0.1.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slipway::source::{
    AllowedSigners, Auth, CommitId, GitSource, Refusal, Remote, SourceConfig, SourceError,
    SourceState,
};

/// Panic with a clear message when a tool the tests need is missing (never skip).
fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Path::new(tool).exists();
    assert!(
        found,
        "this test needs `{tool}` (Debian package {package}); install it, the test does not skip"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A hermetic playground: an `origin.git` bare repo, a `work` clone where commits are made,
/// two ed25519 keys (alice is allowed, mallory is not) and a state folder.
struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        require_tool("git", "git");
        require_tool("ssh-keygen", "openssh-client");
        let lab = Lab {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(lab.home()).unwrap();
        lab.git(
            lab.tmp.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        lab.git(lab.tmp.path(), &["init", "-q", "-b", "main", "work"]);
        lab.git(
            &lab.work(),
            &["remote", "add", "origin", lab.origin().to_str().unwrap()],
        );
        for who in ["alice", "mallory"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("{who}@example.org"))
                .arg("-f")
                .arg(lab.key(who)));
        }
        lab
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn home(&self) -> PathBuf {
        self.path().join("home")
    }
    fn origin(&self) -> PathBuf {
        self.path().join("origin.git")
    }
    fn work(&self) -> PathBuf {
        self.path().join("work")
    }
    fn state(&self) -> PathBuf {
        self.path().join("state")
    }
    fn key(&self, who: &str) -> PathBuf {
        self.path().join(format!("{who}_ed25519"))
    }
    fn pubkey(&self, who: &str) -> String {
        std::fs::read_to_string(self.path().join(format!("{who}_ed25519.pub")))
            .unwrap()
            .trim()
            .to_owned()
    }
    fn fingerprint(&self, who: &str) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.path().join(format!("{who}_ed25519.pub"))));
        out.split_whitespace().nth(1).unwrap().to_owned()
    }

    fn git_cmd(&self, dir: &Path) -> Command {
        let mut c = Command::new("git");
        c.current_dir(dir)
            .env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.org")
            .env("GIT_COMMITTER_NAME", "Alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.org")
            .stdin(Stdio::null());
        c
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        run(self.git_cmd(dir).args(args))
    }

    /// Write files in the work tree (None deletes), stage everything.
    fn stage(&self, files: &[(&str, Option<&str>)]) {
        for (path, content) in files {
            let p = self.work().join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
                None => std::fs::remove_file(&p).unwrap(),
            }
        }
        self.git(&self.work(), &["add", "-A"]);
    }

    /// Commit staged changes, signed by `signer` (None: unsigned); returns the commit id.
    fn commit(&self, signer: Option<&str>, msg: &str) -> String {
        let mut c = self.git_cmd(&self.work());
        match signer {
            Some(who) => {
                c.arg("-c")
                    .arg("gpg.format=ssh")
                    .arg("-c")
                    .arg(format!("user.signingkey={}", self.key(who).display()))
                    .args(["commit", "-q", "-S", "--allow-empty", "-m", msg]);
            }
            None => {
                c.args(["commit", "-q", "--allow-empty", "-m", msg]);
            }
        }
        run(&mut c);
        self.head()
    }

    fn write_commit(&self, signer: Option<&str>, path: &str, content: &str, msg: &str) -> String {
        self.stage(&[(path, Some(content))]);
        self.commit(signer, msg)
    }

    fn head(&self) -> String {
        self.git(&self.work(), &["rev-parse", "HEAD"])
    }

    fn push(&self) {
        self.git(
            &self.work(),
            &["push", "-q", "--force", "origin", "HEAD:main"],
        );
    }

    fn allowed_signers(&self, options: &str) -> AllowedSigners {
        let text = format!(
            "# Slipway's own allowed signers\nalice@example.org {options} {}\n",
            self.pubkey("alice")
        );
        AllowedSigners::parse(&text).unwrap()
    }

    fn config(&self, remote: &str) -> SourceConfig {
        SourceConfig::new(
            Remote::parse(remote).unwrap(),
            Auth::None,
            self.allowed_signers(""),
        )
    }

    fn source(&self) -> GitSource {
        GitSource::open(&self.state(), self.config(self.origin().to_str().unwrap())).unwrap()
    }

    /// Does git itself accept the commit's signature with the same allowed_signers?
    fn git_verifies(&self, commit: &str, allowed: &str) -> bool {
        let file = self.path().join("git_allowed_signers");
        std::fs::write(&file, allowed).unwrap();
        self.git_cmd(&self.work())
            .arg("-c")
            .arg(format!("gpg.ssh.allowedSignersFile={}", file.display()))
            .args(["verify-commit", commit])
            .output()
            .unwrap()
            .status
            .success()
    }
}

fn id(s: &str) -> CommitId {
    s.parse().unwrap()
}

fn refusal(e: SourceError) -> (CommitId, Refusal) {
    match e {
        SourceError::Refused { commit, reason } => (commit, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_commit_signed_by_an_allowed_key_is_accepted_with_its_signer() {
    let lab = Lab::new();
    let c1 = lab.write_commit(
        Some("alice"),
        "cluster.yaml",
        "name: lab\n",
        "Add the cluster\n\nBody.",
    );
    lab.push();
    let allowed = format!("alice@example.org {}\n", lab.pubkey("alice"));
    assert!(
        lab.git_verifies(&c1, &allowed),
        "git itself should accept this signature"
    );

    let mut src = lab.source();
    let got = src.sync().unwrap();
    assert!(got.new);
    assert_eq!(got.commit.id, id(&c1));
    assert_eq!(got.commit.summary, "Add the cluster");
    assert_eq!(got.commit.author, "Alice <alice@example.org>");
    assert_eq!(got.commit.signer.principal, "alice@example.org");
    assert_eq!(got.commit.signer.fingerprint, lab.fingerprint("alice"));
    let git_time: i64 = lab
        .git(&lab.work(), &["log", "-1", "--format=%ct"])
        .parse()
        .unwrap();
    assert_eq!(got.commit.committer_time, git_time);
    assert_eq!(src.last_good(), Some(&id(&c1)));

    // Persisted, and a second sync finds nothing new.
    let state = SourceState::load(&lab.state().join("source.json")).unwrap();
    assert_eq!(state.last_good, Some(id(&c1)));
    assert!(!src.sync().unwrap().new);
    // The clone is bare: no working tree in the state folder.
    assert!(lab.state().join("repo/HEAD").is_file());
    assert!(!lab.state().join("repo/cluster.yaml").exists());
}

#[test]
fn an_unsigned_head_is_refused_naming_the_commit_and_the_last_good_is_kept() {
    let lab = Lab::new();
    let good = lab.write_commit(Some("alice"), "cluster.yaml", "v: 1\n", "good");
    lab.push();
    let mut src = lab.source();
    src.sync().unwrap();

    let bad = lab.write_commit(None, "cluster.yaml", "v: 2\n", "unsigned");
    lab.push();
    let err = src.sync().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&bad) && msg.contains("not signed"), "{msg}");
    assert!(!err.is_transient());
    assert_eq!(refusal(err), (id(&bad), Refusal::Unsigned));
    assert_eq!(src.last_good(), Some(&id(&good)));
    assert_eq!(
        src.files_at(&id(&good)).unwrap().text("cluster.yaml"),
        Some("v: 1\n")
    );
    // A refusal is not a transport failure: no backoff.
    assert_eq!(src.failures(), 0);
}

#[test]
fn a_commit_signed_by_an_unknown_key_is_refused() {
    let lab = Lab::new();
    let c = lab.write_commit(Some("mallory"), "cluster.yaml", "x\n", "by mallory");
    lab.push();
    let allowed = format!("alice@example.org {}\n", lab.pubkey("alice"));
    assert!(!lab.git_verifies(&c, &allowed), "git itself refuses it too");

    let mut src = lab.source();
    let (commit, reason) = refusal(src.sync().unwrap_err());
    assert_eq!(commit, id(&c));
    assert_eq!(
        reason,
        Refusal::UnknownKey {
            fingerprint: lab.fingerprint("mallory")
        }
    );
    assert_eq!(src.last_good(), None);
}

#[test]
fn allowed_signers_options_restrict_the_key() {
    let lab = Lab::new();
    let c = lab.write_commit(Some("alice"), "cluster.yaml", "x\n", "signed");
    lab.push();
    let cases = [
        ("namespaces=\"file\"", "namespaces=\"file\""),
        ("valid-before=\"20000101\"", "valid only before 2000-01-01"),
        ("valid-after=\"29990101Z\"", "valid only after 2999-01-01"),
    ];
    for (options, expect) in cases {
        let mut config = lab.config(lab.origin().to_str().unwrap());
        config.allowed_signers = lab.allowed_signers(options);
        let state = lab.path().join(format!("state-{}", options.len()));
        let mut src = GitSource::open(&state, config).unwrap();
        let (commit, reason) = refusal(src.sync().unwrap_err());
        assert_eq!(commit, id(&c));
        let Refusal::KeyNotValid { principal, why, .. } = &reason else {
            panic!("{options}: {reason:?}")
        };
        assert_eq!(principal, "alice@example.org");
        assert!(why.contains(expect), "{options}: {why}");
        let allowed = format!("alice@example.org {options} {}\n", lab.pubkey("alice"));
        assert!(!lab.git_verifies(&c, &allowed), "git agrees for {options}");
    }
    // And namespaces that include git are fine.
    let mut config = lab.config(lab.origin().to_str().unwrap());
    config.allowed_signers =
        lab.allowed_signers("namespaces=\"file,git\",valid-after=\"20200101\"");
    let mut src = GitSource::open(&lab.path().join("state-ok"), config).unwrap();
    assert_eq!(src.sync().unwrap().commit.id, id(&c));
}

#[test]
fn a_commit_altered_after_signing_fails_verification() {
    let lab = Lab::new();
    let c = lab.write_commit(Some("alice"), "cluster.yaml", "x\n", "original message");
    // Same tree, parents, signature; a different message.
    let raw = lab.git(&lab.work(), &["cat-file", "commit", &c]);
    let forged = raw.replace("original message", "forged message") + "\n";
    let mut cmd = lab.git_cmd(&lab.work());
    cmd.args(["hash-object", "-t", "commit", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), forged.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let forged_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    lab.git(&lab.work(), &["update-ref", "refs/heads/main", &forged_id]);
    lab.push();

    let mut src = lab.source();
    let (commit, reason) = refusal(src.sync().unwrap_err());
    assert_eq!(commit, id(&forged_id));
    assert_eq!(
        reason,
        Refusal::BadSignature {
            fingerprint: lab.fingerprint("alice")
        }
    );
}

#[test]
fn a_rewound_history_is_refused_unless_allow_rewind() {
    let lab = Lab::new();
    let a = lab.write_commit(Some("alice"), "cluster.yaml", "v: a\n", "a");
    let b = lab.write_commit(Some("alice"), "cluster.yaml", "v: b\n", "b");
    lab.push();
    let mut src = lab.source();
    assert_eq!(src.sync().unwrap().commit.id, id(&b));
    src.mark_applied(&id(&b)).unwrap();

    // Roll back to the older, validly signed commit a.
    lab.git(&lab.work(), &["reset", "-q", "--hard", &a]);
    lab.push();
    let err = src.sync().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&a) && msg.contains(&b), "{msg}");
    match err {
        SourceError::Rewind { head, since, which } => {
            assert_eq!((head, since, which), (id(&a), id(&b), "last applied"));
        }
        other => panic!("{other:?}"),
    }

    // A force-pushed history: c on top of a, not of b.
    let c = lab.write_commit(Some("alice"), "cluster.yaml", "v: c\n", "c");
    lab.push();
    assert!(matches!(src.sync(), Err(SourceError::Rewind { .. })));
    assert_eq!(src.last_good(), Some(&id(&b)));
    drop(src);

    let mut config = lab.config(lab.origin().to_str().unwrap());
    config.allow_rewind = true;
    let mut src = GitSource::open(&lab.state(), config).unwrap();
    assert_eq!(
        src.last_applied(),
        Some(&id(&b)),
        "state survives a restart"
    );
    let got = src.sync().unwrap();
    assert_eq!(got.commit.id, id(&c));
    assert_eq!(src.last_good(), Some(&id(&c)));
    // The applied commit is still readable even though the remote dropped it.
    assert_eq!(
        src.files_at(&id(&b)).unwrap().text("cluster.yaml"),
        Some("v: b\n")
    );
    drop(src);

    // Back to allow_rewind=false: the new history continues from the accepted rewind...
    let d = lab.write_commit(Some("alice"), "cluster.yaml", "v: d\n", "d");
    lab.push();
    let mut src = lab.source();
    assert_eq!(src.sync().unwrap().commit.id, id(&d));
    // ...and rolling back behind it is refused again.
    lab.git(&lab.work(), &["reset", "-q", "--hard", &c]);
    lab.push();
    match src.sync().unwrap_err() {
        SourceError::Rewind { head, since, which } => {
            assert_eq!((head, since, which), (id(&c), id(&d), "last good"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreachable_remote_keeps_the_last_good_commit_and_backs_off() {
    let lab = Lab::new();
    let good = lab.write_commit(Some("alice"), "cluster.yaml", "v: 1\n", "good");
    lab.push();
    let url = format!("file://{}", lab.origin().display());
    let mut src = GitSource::open(&lab.state(), lab.config(&url)).unwrap();
    src.sync().unwrap();
    assert_eq!(src.next_poll(), Duration::from_secs(60));

    let moved = lab.path().join("origin-away.git");
    std::fs::rename(lab.origin(), &moved).unwrap();
    let mut delays = Vec::new();
    for _ in 0..3 {
        let err = src.sync().unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let SourceError::RemoteUnreachable { remote, cause } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(remote, &url);
        assert!(!cause.is_empty());
        assert_eq!(src.last_good(), Some(&id(&good)));
        delays.push(src.next_poll().as_secs());
    }
    assert_eq!(delays, [60, 120, 240]);
    assert_eq!(src.failures(), 3);
    assert_eq!(
        src.files_at(&id(&good)).unwrap().text("cluster.yaml"),
        Some("v: 1\n")
    );

    // Back again: the backoff resets.
    std::fs::rename(&moved, lab.origin()).unwrap();
    assert!(!src.sync().unwrap().new);
    assert_eq!(src.failures(), 0);
    assert_eq!(src.next_poll(), Duration::from_secs(60));
}

#[test]
fn fetch_picks_up_a_newly_pushed_commit_and_a_missing_branch_is_reported() {
    let lab = Lab::new();
    let a = lab.write_commit(Some("alice"), "cluster.yaml", "v: 1\n", "a");
    lab.push();
    let url = format!("file://{}", lab.origin().display());
    let mut src = GitSource::open(&lab.state(), lab.config(&url)).unwrap();
    assert_eq!(src.sync().unwrap().commit.id, id(&a));
    let b = lab.write_commit(Some("alice"), "cluster.yaml", "v: 2\n", "b");
    lab.push();
    let got = src.sync().unwrap();
    assert!(got.new);
    assert_eq!(got.commit.id, id(&b));

    let mut config = lab.config(&url);
    config.branch = "production".into();
    let mut other = GitSource::open(&lab.path().join("state2"), config).unwrap();
    assert!(matches!(
        other.sync(),
        Err(SourceError::BranchMissing { branch, .. }) if branch == "production"
    ));
}

#[test]
fn the_tree_at_a_commit_and_at_an_older_commit_become_repo_files() {
    let lab = Lab::new();
    lab.stage(&[
        ("cluster.yaml", Some("name: lab\n")),
        ("nodes/n1.yaml", Some("mac: aa\n")),
        ("overlays/all/base.bu", Some("variant: fcos\n")),
        (".slipway/recipients.txt", Some("age1xyz\n")),
        (".github/workflows/ci.yml", Some("on: push\n")),
    ]);
    std::os::unix::fs::symlink("cluster.yaml", lab.work().join("link.yaml")).unwrap();
    lab.git(&lab.work(), &["add", "-A"]);
    let old = lab.commit(Some("alice"), "first");
    lab.stage(&[("nodes/n1.yaml", Some("mac: bb\n")), ("cluster.yaml", None)]);
    let new = lab.commit(Some("alice"), "second");
    lab.push();
    let mut src = lab.source();
    src.sync().unwrap();

    let files = src.files_at(&id(&old)).unwrap();
    let listed: Vec<(&str, &[u8])> = files.iter().collect();
    assert_eq!(
        listed,
        [
            (".slipway/recipients.txt", &b"age1xyz\n"[..]),
            ("cluster.yaml", b"name: lab\n"),
            ("nodes/n1.yaml", b"mac: aa\n"),
            ("overlays/all/base.bu", b"variant: fcos\n"),
        ]
    );
    let files = src.files_at(&id(&new)).unwrap();
    assert_eq!(files.text("nodes/n1.yaml"), Some("mac: bb\n"));
    assert!(!files.contains("cluster.yaml"));

    // The same files as reading a checkout of that commit from disk.
    let from_disk = slipway::repo_fs::read_repo(&lab.work()).unwrap();
    let disk: Vec<_> = from_disk
        .iter()
        .filter(|(p, _)| *p != "link.yaml")
        .collect();
    assert_eq!(files.iter().collect::<Vec<_>>(), disk);

    let unknown = id("0123456789abcdef0123456789abcdef01234567");
    assert!(matches!(
        src.files_at(&unknown),
        Err(SourceError::UnknownCommit { .. })
    ));
}

#[test]
fn configuration_mistakes_are_reported_before_any_fetch() {
    let lab = Lab::new();
    let mut config = lab.config(lab.origin().to_str().unwrap());
    config.branch = "bad..name".into();
    assert!(matches!(
        GitSource::open(&lab.state(), config),
        Err(SourceError::InvalidBranch(_))
    ));
    let mut config = lab.config(lab.origin().to_str().unwrap());
    config.allowed_signers = AllowedSigners::parse("# nobody\n").unwrap();
    assert!(GitSource::open(&lab.state(), config)
        .unwrap_err()
        .to_string()
        .contains("lists no key"));
    let config = SourceConfig::new(
        Remote::parse("ssh://git@127.0.0.1/x.git").unwrap(),
        Auth::None,
        lab.allowed_signers(""),
    );
    assert!(matches!(
        GitSource::open(&lab.state(), config),
        Err(SourceError::Credentials { .. })
    ));
    // A corrupt state file is an error, never a silent reset of anti-rollback.
    std::fs::create_dir_all(lab.state()).unwrap();
    std::fs::write(lab.state().join("source.json"), "{").unwrap();
    assert!(matches!(
        GitSource::open(&lab.state(), lab.config(lab.origin().to_str().unwrap())),
        Err(SourceError::CorruptState { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// ssh:// against a real sshd on 127.0.0.1.

const SSHD: &str = "/usr/sbin/sshd";

struct Sshd {
    child: Child,
    port: u16,
    host_pub: String,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_sshd(lab: &Lab, authorized: &str) -> Sshd {
    require_tool(SSHD, "openssh-server");
    let dir = lab.path().join("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    // sshd's privilege separation folder (as crates/fleet-sim does).
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host_key = dir.join("host_ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key));
    std::fs::write(dir.join("authorized_keys"), authorized).unwrap();
    let port = free_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
         AuthorizedKeysFile {ak}\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         UseDNS no\nPrintMotd no\nX11Forwarding no\nAllowTcpForwarding no\n\
         HostKeyAlgorithms ssh-ed25519\nLogLevel VERBOSE\n",
        hk = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        ak = dir.join("authorized_keys").display(),
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    let log = dir.join("sshd.log");
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut sshd = Sshd {
        child,
        port,
        host_pub: std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap(),
        log,
    };
    // Readiness, not timing: wait (up to a generous bound) until it accepts connections.
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = sshd.child.try_wait() {
            panic!(
                "sshd exited with {status}: {}",
                std::fs::read_to_string(&sshd.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "sshd did not listen in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    sshd
}

fn whoami() -> String {
    run(Command::new("id").arg("-un"))
}

#[test]
fn ssh_remote_with_a_deploy_key_and_a_pinned_host_key() {
    let lab = Lab::new();
    let c = lab.write_commit(Some("alice"), "cluster.yaml", "v: ssh\n", "over ssh");
    lab.push();
    let deploy = lab.path().join("deploy_ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "deploy", "-f"])
        .arg(&deploy));
    let deploy_pub = std::fs::read_to_string(lab.path().join("deploy_ed25519.pub")).unwrap();
    let sshd = start_sshd(&lab, &deploy_pub);
    let remote = format!(
        "ssh://{}@127.0.0.1:{}{}",
        whoami(),
        sshd.port,
        lab.origin().display()
    );
    let host_key = sshd
        .host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");

    let known_hosts = lab.path().join("known_hosts");
    let config_with = |kh: &str, state: &str| {
        std::fs::write(&known_hosts, kh).unwrap();
        let config = SourceConfig::new(
            Remote::parse(&remote).unwrap(),
            Auth::SshKey {
                private_key: deploy.clone(),
                known_hosts: known_hosts.clone(),
            },
            lab.allowed_signers(""),
        );
        GitSource::open(&lab.path().join(state), config).unwrap()
    };

    // Pinned: fetched and verified.
    let mut src = config_with(&format!("[127.0.0.1]:{} {host_key}\n", sshd.port), "s1");
    let got = src.sync().unwrap_or_else(|e| {
        panic!(
            "{e}\nsshd log:\n{}",
            std::fs::read_to_string(&sshd.log).unwrap_or_default()
        )
    });
    assert_eq!(got.commit.id, id(&c));

    // Another key pinned for this host: refused, naming the presented key.
    let other = format!("[127.0.0.1]:{} {}\n", sshd.port, lab.pubkey("mallory"));
    let mut src = config_with(&other, "s2");
    match src.sync().unwrap_err() {
        SourceError::HostKeyMismatch {
            host, presented, ..
        } => {
            assert_eq!(host, format!("[127.0.0.1]:{}", sshd.port));
            let fp = run(Command::new("ssh-keygen")
                .arg("-lf")
                .arg(lab.path().join("sshd/host_ed25519.pub")));
            assert!(fp.contains(&presented), "{fp} vs {presented}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(src.last_good(), None);

    // The host pinned only on the default port: not pinned, never trusted on first use.
    let mut src = config_with(&format!("127.0.0.1 {host_key}\n"), "s3");
    assert!(matches!(
        src.sync(),
        Err(SourceError::HostKeyNotPinned { .. })
    ));

    // A deploy key the server does not know: reported, not looping, no panic.
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {host_key}\n", sshd.port),
    )
    .unwrap();
    let config = SourceConfig::new(
        Remote::parse(&remote).unwrap(),
        Auth::SshKey {
            private_key: lab.key("mallory"),
            known_hosts: known_hosts.clone(),
        },
        lab.allowed_signers(""),
    );
    let mut src = GitSource::open(&lab.path().join("s5"), config).unwrap();
    let err = src.sync().unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(err, SourceError::RemoteUnreachable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("authentication"), "{err}");
}

#[test]
fn the_source_can_move_to_a_blocking_task() {
    // The binary runs sync() under tokio::task::spawn_blocking.
    fn is_send<T: Send + 'static>() {}
    is_send::<GitSource>();
    is_send::<SourceError>();
}
