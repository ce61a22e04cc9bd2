//! The git source and its trust checks: the binary's only edge to git.
//!
//! [`GitSource`] keeps a bare clone of the cluster repository in `<state>/repo`, fetches one
//! branch from the configured [`Remote`], and accepts the fetched head only when
//!
//! 1. it is signed with an SSH signature (`gpg.format=ssh`) by a key in [`AllowedSigners`]
//!    — a list kept in Slipway's own configuration, never read from the repository — for
//!    namespace `git`, within the key's validity window; and
//! 2. it descends from the last applied commit (anti-rollback), unless `allow_rewind` is set.
//!
//! A refused head or an unreachable remote never loses the last good commit: it stays in
//! `<state>/source.json` (written atomically) and under `refs/slipway/last-good` in the
//! clone, so its tree can still be read. Transient failures back off exponentially
//! ([`Backoff`]). The rest of Slipway reads files from git trees ([`GitSource::files_at`]),
//! never from a working directory, so what is validated is exactly what was signed.
//!
//! Also here: a debounced file watcher for a local working copy ([`watch_repo`], for instant
//! pick-up while editing) and the `POST /hooks/git` webhook with GitHub/Gitea HMAC
//! signatures ([`webhook_router`]).
//!
//! A reconcile loop drives it like this (`sync` is blocking git I/O: run it off the async
//! threads):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use slipway::source::*;
//! # async fn demo(state: std::path::PathBuf, config: SourceConfig, hook: Arc<tokio::sync::Notify>) -> Result<(), SourceError> {
//! let mut src = GitSource::open(&state, config)?;
//! loop {
//!     let (back, outcome) = tokio::task::spawn_blocking(move || {
//!         let r = src.sync();
//!         (src, r)
//!     })
//!     .await
//!     .expect("sync does not panic");
//!     src = back;
//!     match outcome {
//!         Ok(a) if a.new => { let _files = src.files_at(&a.commit.id)?; /* plan, roll out, then */ src.mark_applied(&a.commit.id)?; }
//!         Ok(_) => {}
//!         Err(e) => eprintln!("{e}"), // last good commit kept; report e
//!     }
//!     tokio::select! {
//!         _ = tokio::time::sleep(src.next_poll()) => {}
//!         _ = hook.notified() => {} // webhook_router(secret, hook.clone()) was mounted
//!     }
//! }
//! # }
//! ```
//!
//! Deliberately absent: no checkout or working tree in the state folder, no push, no
//! merge, no submodules, no GPG/X.509 signatures, no trust-on-first-use of SSH host keys,
//! no socket binding (the HTTP server belongs to `pxe-publisher`; this module hands it a
//! `Router`).

mod error;
mod remote;
mod schedule;
mod state;
mod tree;
mod trust;
mod watch;
mod webhook;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use slipway_model::repo::RepoFiles;

pub use error::{Refusal, SourceError};

/// The files of a working tree's git repository at `commit` (for re-rendering a node's
/// configuration at the commit its `applied.json` names).
pub fn files_at_commit(repo_dir: &Path, commit: &str) -> Result<RepoFiles, SourceError> {
    let unknown = |why: String| SourceError::UnknownCommit {
        commit: commit.to_string(),
        why,
    };
    let repo = git2::Repository::discover(repo_dir).map_err(|e| unknown(e.message().to_owned()))?;
    let oid = git2::Oid::from_str(commit).map_err(|e| unknown(e.message().to_owned()))?;
    tree::files_at(&repo, oid)
}
pub use remote::{choose_credential, Auth, CredentialChoice, PinnedHosts, Remote, RemoteKind};
pub use schedule::{Backoff, PollInterval};
pub use state::SourceState;
pub use trust::{AllowedSigners, Signer, GIT_NAMESPACE};
pub use watch::{watch_repo, RepoChanged, RepoWatcher, DEFAULT_DEBOUNCE};
pub use webhook::{
    verify_gitea, verify_github, verify_request, webhook_router, WebhookRejection, WebhookSecret,
    WebhookSender, WEBHOOK_PATH,
};

/// A git commit id (40 lowercase hex digits; 64 for SHA-256 repositories).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitId(String);

impl CommitId {
    /// The id as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn oid(&self) -> Result<git2::Oid, SourceError> {
        git2::Oid::from_str(&self.0).map_err(|e| SourceError::UnknownCommit {
            commit: self.0.clone(),
            why: e.message().to_owned(),
        })
    }
}

impl From<git2::Oid> for CommitId {
    fn from(oid: git2::Oid) -> Self {
        CommitId(oid.to_string())
    }
}

impl FromStr for CommitId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(CommitId(s.to_ascii_lowercase()))
        } else {
            Err(format!("{s:?} is not a full git commit id"))
        }
    }
}

impl TryFrom<String> for CommitId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CommitId> for String {
    fn from(c: CommitId) -> String {
        c.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitId({})", self.0)
    }
}

/// A verified commit: what Slipway reports about the head it accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    /// The commit id.
    pub id: CommitId,
    /// `Name <email>` of the author.
    pub author: String,
    /// Committer time, seconds since the Unix epoch.
    pub committer_time: i64,
    /// First line of the message.
    pub summary: String,
    /// Who signed it.
    pub signer: Signer,
}

/// What a successful [`GitSource::sync`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The accepted head.
    pub commit: CommitInfo,
    /// True when it differs from the previous last good commit (there is new work).
    pub new: bool,
}

/// How the source is configured (the binary builds it from Slipway's config and flags).
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Where to fetch from.
    pub remote: Remote,
    /// The branch to follow. Default `main`.
    pub branch: String,
    /// Credentials for the remote.
    pub auth: Auth,
    /// Who may sign applied commits.
    pub allowed_signers: AllowedSigners,
    /// Accept a head that does not descend from the last applied commit.
    pub allow_rewind: bool,
    /// Poll interval when all is well.
    pub poll: PollInterval,
    /// Longest delay between retries after failures.
    pub max_backoff: Duration,
}

impl SourceConfig {
    /// A configuration with the defaults: branch `main`, no rewind, 1 minute polls,
    /// backoff capped at 30 minutes.
    pub fn new(remote: Remote, auth: Auth, allowed_signers: AllowedSigners) -> Self {
        Self {
            remote,
            branch: "main".to_owned(),
            auth,
            allowed_signers,
            allow_rewind: false,
            poll: PollInterval::default(),
            max_backoff: Backoff::DEFAULT_CAP,
        }
    }
}

const FETCHED_REF: &str = "refs/slipway/fetched";
const LAST_GOOD_REF: &str = "refs/slipway/last-good";
const LAST_APPLIED_REF: &str = "refs/slipway/last-applied";

/// The cluster repository as Slipway trusts it: a bare clone in `<state>/repo`, the
/// last good / last applied commits in `<state>/source.json`.
pub struct GitSource {
    config: SourceConfig,
    state_file: PathBuf,
    repo: git2::Repository,
    state: SourceState,
    backoff: Backoff,
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("remote", &self.config.remote)
            .field("branch", &self.config.branch)
            .field("state", &self.state)
            .field("failures", &self.backoff.failures())
            .finish_non_exhaustive()
    }
}

impl GitSource {
    /// Open (creating if needed) the state clone under `state_dir` and load
    /// `source.json`. Does not touch the network.
    pub fn open(state_dir: &Path, config: SourceConfig) -> Result<Self, SourceError> {
        if !git2::Reference::is_valid_name(&format!("refs/heads/{}", config.branch)) {
            return Err(SourceError::InvalidBranch(config.branch.clone()));
        }
        if config.allowed_signers.is_empty() {
            return Err(SourceError::AllowedSigners {
                origin: None,
                problems: vec!["it lists no key, so no commit could ever be applied".into()],
            });
        }
        config.auth.check_fits(&config.remote)?;
        std::fs::create_dir_all(state_dir)
            .map_err(|e| SourceError::io("creating", state_dir, e))?;
        let repo_dir = state_dir.join("repo");
        let repo = match git2::Repository::open_bare(&repo_dir) {
            Ok(r) => r,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                git2::Repository::init_bare(&repo_dir).map_err(|e| {
                    SourceError::git(
                        format!("creating the state clone {}", repo_dir.display()),
                        e,
                    )
                })?
            }
            Err(e) => {
                return Err(SourceError::git(
                    format!("opening the state clone {}", repo_dir.display()),
                    e,
                ))
            }
        };
        let state_file = state_dir.join(SourceState::FILE);
        let state = SourceState::load(&state_file)?;
        let backoff = Backoff::new(config.poll, config.max_backoff);
        Ok(Self {
            config,
            state_file,
            repo,
            state,
            backoff,
        })
    }

    /// Fetch the branch and accept its head if it passes the trust checks.
    ///
    /// On any error the last good commit is unchanged. Transient errors
    /// ([`SourceError::is_transient`]) grow the backoff; a reachable remote resets it.
    pub fn sync(&mut self) -> Result<Accepted, SourceError> {
        let remote = self.config.remote.clone();
        let fetched = remote::fetch(
            &self.repo,
            &remote,
            &self.config.auth,
            &self.config.branch,
            FETCHED_REF,
        );
        let head = match fetched {
            Ok(h) => {
                self.backoff.succeeded();
                h
            }
            Err(e) => {
                let delay = if e.is_transient() {
                    self.backoff.failed()
                } else {
                    self.backoff.delay()
                };
                tracing::warn!(
                    remote = %remote, error = %e, retry_in = %humantime::format_duration(delay),
                    "fetch failed; keeping the last good commit"
                );
                return Err(e);
            }
        };
        let result = self.check(head);
        match &result {
            Ok(a) if a.new => tracing::info!(
                commit = %a.commit.id, signer = %a.commit.signer, summary = %a.commit.summary,
                "accepted a new commit"
            ),
            Ok(_) => tracing::debug!(commit = %head, "no new commit"),
            Err(e) => {
                tracing::warn!(error = %e, "refused the fetched head; keeping the last good commit")
            }
        }
        result
    }

    fn check(&mut self, head: git2::Oid) -> Result<Accepted, SourceError> {
        let id = CommitId::from(head);
        let commit = self
            .repo
            .find_commit(head)
            .map_err(|e| SourceError::UnknownCommit {
                commit: id.to_string(),
                why: e.message().to_owned(),
            })?;
        let committer_time = commit.committer().when().seconds();
        let refused = |reason| SourceError::Refused {
            commit: id.clone(),
            reason,
        };
        let (armor, signed) = match self.repo.extract_signature(&head, None) {
            Ok(pair) => pair,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Err(refused(Refusal::Unsigned))
            }
            Err(e) => {
                return Err(SourceError::git(
                    format!("reading the signature of {id}"),
                    e,
                ))
            }
        };
        let signer = self
            .config
            .allowed_signers
            .verify(&armor, &signed, committer_time)
            .map_err(refused)?;
        if !self.config.allow_rewind {
            if let Some((which, since)) = self.anchor() {
                if since != id && !self.descends(head, &since) {
                    return Err(SourceError::Rewind {
                        head: id,
                        since,
                        which,
                    });
                }
            }
        }
        let info = CommitInfo {
            id: id.clone(),
            author: commit.author().to_string(),
            committer_time,
            summary: commit.summary().unwrap_or_default().to_owned(),
            signer,
        };
        let new = self.state.last_good.as_ref() != Some(&id);
        if new {
            let mut next = self.state.clone();
            next.last_good = Some(id);
            next.save(&self.state_file)?;
            self.state = next;
            self.set_ref(LAST_GOOD_REF, head)?;
        }
        Ok(Accepted { commit: info, new })
    }

    /// The commit a new head must descend from: the last applied one, unless an accepted
    /// rewind moved the last good commit off its history, in which case the last good one.
    fn anchor(&self) -> Option<(&'static str, CommitId)> {
        match (&self.state.last_applied, &self.state.last_good) {
            (Some(applied), Some(good)) => {
                let on_history =
                    applied == good || good.oid().is_ok_and(|g| self.descends(g, applied));
                if on_history {
                    Some(("last applied", applied.clone()))
                } else {
                    Some(("last good", good.clone()))
                }
            }
            (Some(applied), None) => Some(("last applied", applied.clone())),
            (None, Some(good)) => Some(("last good", good.clone())),
            (None, None) => None,
        }
    }

    /// True when `head` strictly descends from `ancestor`; false also when `ancestor` is not
    /// in the clone (it cannot be proven).
    fn descends(&self, head: git2::Oid, ancestor: &CommitId) -> bool {
        ancestor
            .oid()
            .ok()
            .and_then(|a| self.repo.graph_descendant_of(head, a).ok())
            .unwrap_or(false)
    }

    fn set_ref(&self, name: &str, oid: git2::Oid) -> Result<(), SourceError> {
        self.repo
            .reference(name, oid, true, "slipway")
            .map(|_| ())
            .map_err(|e| SourceError::git(format!("updating {name}"), e))
    }

    /// Record that `commit` is now applied to the fleet (it must be in the clone). Later
    /// heads must descend from it.
    pub fn mark_applied(&mut self, commit: &CommitId) -> Result<(), SourceError> {
        let oid = commit.oid()?;
        self.repo
            .find_commit(oid)
            .map_err(|e| SourceError::UnknownCommit {
                commit: commit.to_string(),
                why: e.message().to_owned(),
            })?;
        let mut next = self.state.clone();
        next.last_applied = Some(commit.clone());
        next.save(&self.state_file)?;
        self.state = next;
        self.set_ref(LAST_APPLIED_REF, oid)
    }

    /// The newest commit that passed every check, if any.
    pub fn last_good(&self) -> Option<&CommitId> {
        self.state.last_good.as_ref()
    }

    /// The newest commit recorded as applied, if any.
    pub fn last_applied(&self) -> Option<&CommitId> {
        self.state.last_applied.as_ref()
    }

    /// The files of `commit`'s tree: the last good commit, or an older one (e.g. the commit
    /// a node's applied.json names). The commit must be in the clone.
    pub fn files_at(&self, commit: &CommitId) -> Result<RepoFiles, SourceError> {
        tree::files_at(&self.repo, commit.oid()?)
    }

    /// How long to wait before the next [`GitSource::sync`]: the poll interval, or the
    /// backoff delay after consecutive transient failures.
    pub fn next_poll(&self) -> Duration {
        self.backoff.delay()
    }

    /// Consecutive transient failures (0 after a successful fetch).
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// The configuration in use.
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }
}
