//! The reboot lock, and a FleetLock server handing it to Zincati.
//!
//! There is exactly **one** slot. Slipway's own rollout takes it (as [`HolderKind::Rollout`])
//! before it disrupts a node and releases it after; every node that keeps Zincati asks for
//! the same slot over [FleetLock] before it reboots into an update. So a Zincati node never
//! reboots during a rollout, and two Zincati nodes never reboot together, whatever reboot
//! group they report (groups are checked for form and recorded, not used as buckets).
//!
//! The holder is persisted to a small JSON file in the state folder (written atomically:
//! temporary file, fsync, rename, fsync of the folder), so a node that was granted the lock
//! still holds it after Slipway restarts, and the lock is released only by that node's
//! `steady-state` (or by the rollout that took it).
//!
//! The HTTP side follows the protocol Zincati speaks and the conventions of CoreOS's
//! reference server, airlock:
//!
//! - `POST /v1/pre-reboot` (`RecursiveLock`): 200 when the caller now holds the lock,
//!   including when it already did (recursive). Otherwise 500 `failed_lock` with the current
//!   holder in `value` (airlock answers a full semaphore the same way).
//! - `POST /v1/steady-state` (`UnlockIfHeld`): 200 after releasing the caller's lock, and
//!   also when the caller held nothing (idempotent); the lock of someone else is left alone.
//! - Both need the header `fleet-lock-protocol: true` and the body
//!   `{"client_params":{"id":"…","group":"…"}}` with a non-empty `id` and a `group` matching
//!   `^[a-zA-Z0-9.-]+$`; otherwise 400 `invalid_client_identity`. The content type is not
//!   checked: Zincati sends none, `curl -d` sends a form type.
//! - Errors are JSON `{"kind":"…","value":"…"}`, kinds from a small fixed set.
//!
//! Not here: the daemon's decision *when* to roll out, metrics (the daemon reads
//! [`FleetLock::holder`]), and listening on a socket.
//!
//! [FleetLock]: https://coreos.github.io/zincati/development/fleetlock/protocol/

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::ServeError;

/// `RecursiveLock` endpoint.
pub const PRE_REBOOT_PATH: &str = "/v1/pre-reboot";
/// `UnlockIfHeld` endpoint.
pub const STEADY_STATE_PATH: &str = "/v1/steady-state";
/// The header every FleetLock request must carry, with the value `true`.
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";
/// The lock file's name inside the state folder.
pub const LOCK_FILE: &str = "fleetlock.json";
/// The id Slipway's own rollouts hold the lock under.
pub const ROLLOUT_ID: &str = "slipway-rollout";

/// Error kind: the request's header or body is not a valid FleetLock client identity.
pub const KIND_INVALID_IDENTITY: &str = "invalid_client_identity";
/// Error kind: the lock could not be taken or released (held by another, or not persisted).
pub const KIND_FAILED_LOCK: &str = "failed_lock";

/// Who holds the reboot lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    /// The FleetLock client id (Zincati's app-specific machine id) or [`ROLLOUT_ID`].
    pub id: String,
    /// The reboot group the client reported (`slipway` for rollouts).
    pub group: String,
    /// A node's Zincati or Slipway's rollout.
    pub kind: HolderKind,
    /// When the lock was taken, in seconds since the Unix epoch.
    pub since_unix: u64,
}

/// Which kind of client holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HolderKind {
    /// Zincati on a node, about to reboot into an OS update.
    Zincati,
    /// Slipway's own rollout.
    Rollout,
}

impl Holder {
    /// The holder Slipway's rollout executor acquires the lock as.
    pub fn rollout(since_unix: u64) -> Self {
        Self {
            id: ROLLOUT_ID.into(),
            group: "slipway".into(),
            kind: HolderKind::Rollout,
            since_unix,
        }
    }

    /// A Zincati client.
    pub fn zincati(id: impl Into<String>, group: impl Into<String>, since_unix: u64) -> Self {
        Self {
            id: id.into(),
            group: group.into(),
            kind: HolderKind::Zincati,
            since_unix,
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HolderKind::Zincati => write!(f, "node {} (Zincati, group {})", self.id, self.group)?,
            HolderKind::Rollout => write!(f, "Slipway's rollout ({})", self.id)?,
        }
        let since = i64::try_from(self.since_unix)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0));
        match since {
            Some(t) => write!(f, " since {}", t.format("%Y-%m-%dT%H:%M:%SZ")),
            None => write!(f, " since {} (Unix time)", self.since_unix),
        }
    }
}

/// What the lock file holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    holder: Option<Holder>,
}

#[derive(Debug)]
struct Slot {
    path: PathBuf,
    holder: Option<Holder>,
}

/// The one reboot lock, persisted. Cloning is cheap and every clone shares the same slot.
#[derive(Debug, Clone)]
pub struct FleetLock {
    slot: Arc<Mutex<Slot>>,
}

impl FleetLock {
    /// Open the lock persisted at `path` (usually `STATE_DIR/`[`LOCK_FILE`]): a missing file
    /// means nobody holds it; its folder is created if needed. A file that cannot be parsed
    /// is an error naming it — the lock is never silently dropped.
    pub fn open(path: PathBuf) -> Result<Self, ServeError> {
        let holder = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<LockFile>(&bytes)
                    .map_err(|e| ServeError::CorruptLockFile {
                        path: path.clone(),
                        why: e.to_string(),
                    })?
                    .holder
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| ServeError::io("creating", dir, e))?;
                }
                None
            }
            Err(e) => return Err(ServeError::io("reading", &path, e)),
        };
        Ok(Self {
            slot: Arc::new(Mutex::new(Slot { path, holder })),
        })
    }

    /// Take the lock for `holder`, or fail with [`ServeError::LockHeld`] naming the current
    /// holder. Recursive: when `holder.id` already holds it, this succeeds and keeps the
    /// original record (its `since_unix` included). The new holder is on disk before this
    /// returns `Ok`.
    pub fn try_acquire(&self, holder: &Holder) -> Result<(), ServeError> {
        let mut slot = self.lock_slot();
        match &slot.holder {
            Some(current) if current.id == holder.id => return Ok(()),
            Some(current) => return Err(ServeError::LockHeld(Box::new(current.clone()))),
            None => {}
        }
        persist(&slot.path, Some(holder))?;
        slot.holder = Some(holder.clone());
        tracing::info!(id = %holder.id, group = %holder.group, kind = ?holder.kind, "reboot lock taken");
        Ok(())
    }

    /// Release the lock if `id` holds it. `Ok(true)`: released; `Ok(false)`: `id` held
    /// nothing and nothing changed (someone else's lock is left alone).
    pub fn release(&self, id: &str) -> Result<bool, ServeError> {
        let mut slot = self.lock_slot();
        if slot.holder.as_ref().is_none_or(|h| h.id != id) {
            return Ok(false);
        }
        persist(&slot.path, None)?;
        slot.holder = None;
        tracing::info!(id, "reboot lock released");
        Ok(true)
    }

    /// Who holds the lock now.
    pub fn holder(&self) -> Option<Holder> {
        self.lock_slot().holder.clone()
    }

    /// The file the lock is persisted to.
    pub fn path(&self) -> PathBuf {
        self.lock_slot().path.clone()
    }

    fn lock_slot(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding the mutex cannot leave the slot half-written: the holder is
        // only replaced after the file was written. So a poisoned mutex is still consistent.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn persist(path: &Path, holder: Option<&Holder>) -> Result<(), ServeError> {
    let mut bytes = serde_json::to_vec_pretty(&LockFile {
        holder: holder.cloned(),
    })
    .map_err(|e| ServeError::io("encoding", path, std::io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new content.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ServeError> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| ServeError::io("writing", &dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| ServeError::io("writing", tmp.path().to_owned(), e))?;
    tmp.persist(path)
        .map_err(|e| ServeError::io("replacing", path, e.error))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ServeError::io("syncing", &dir, e))
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// A source of "now" in seconds since the Unix epoch, for [`Holder::since_unix`].
pub type UnixClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock as a [`UnixClock`].
pub fn system_clock() -> UnixClock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

#[derive(Clone)]
struct Api {
    lock: FleetLock,
    clock: UnixClock,
}

/// The FleetLock endpoints over `lock`, stamping holders with the system clock.
pub fn router(lock: FleetLock) -> Router {
    router_with_clock(lock, system_clock())
}

/// The FleetLock endpoints over `lock`, stamping holders with `clock`.
///
/// Only `POST` is routed: other methods get axum's 405, other paths its 404.
pub fn router_with_clock(lock: FleetLock, clock: UnixClock) -> Router {
    Router::new()
        .route(PRE_REBOOT_PATH, post(pre_reboot))
        .route(STEADY_STATE_PATH, post(steady_state))
        .with_state(Api { lock, clock })
}

/// The FleetLock request body.
#[derive(Debug, Deserialize)]
struct LockRequest {
    client_params: ClientParams,
}

#[derive(Debug, Deserialize)]
struct ClientParams {
    id: String,
    group: String,
}

/// A FleetLock error reply.
#[derive(Debug, Serialize)]
struct Rejection {
    #[serde(skip)]
    status: StatusCode,
    kind: &'static str,
    value: String,
}

impl Rejection {
    fn identity(value: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: KIND_INVALID_IDENTITY,
            value: value.into(),
        }
    }

    fn failed(value: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: KIND_FAILED_LOCK,
            value: value.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "kind": self.kind, "value": self.value }).to_string();
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

fn client_params(headers: &HeaderMap, body: &[u8]) -> Result<ClientParams, Rejection> {
    if headers.get(PROTOCOL_HEADER).map(|v| v.as_bytes()) != Some(b"true") {
        return Err(Rejection::identity(
            "missing or wrong 'fleet-lock-protocol' header: send 'fleet-lock-protocol: true'",
        ));
    }
    let req: LockRequest = serde_json::from_slice(body).map_err(|e| {
        Rejection::identity(format!(
            "the body is not {{\"client_params\":{{\"id\":\"...\",\"group\":\"...\"}}}}: {e}"
        ))
    })?;
    let p = req.client_params;
    if p.id.is_empty() {
        return Err(Rejection::identity("empty client id"));
    }
    if p.group.is_empty()
        || !p
            .group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(Rejection::identity(format!(
            "group {:?} does not match ^[a-zA-Z0-9.-]+$",
            p.group
        )));
    }
    Ok(p)
}

async fn pre_reboot(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let p = match client_params(&headers, &body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let holder = Holder::zincati(p.id, p.group, (api.clock)());
    let lock = api.lock.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let r = lock.try_acquire(&holder);
        (holder, r)
    })
    .await;
    match outcome {
        Ok((_, Ok(()))) => StatusCode::OK.into_response(),
        Ok((asked, Err(ServeError::LockHeld(current)))) => {
            tracing::info!(id = %asked.id, group = %asked.group, holder = %current, "reboot lock refused");
            Rejection::failed(format!("reboot lock held by {current}")).into_response()
        }
        Ok((asked, Err(e))) => {
            tracing::error!(id = %asked.id, error = %e, "reboot lock not taken");
            Rejection::failed(format!("the lock could not be recorded: {e}")).into_response()
        }
        Err(e) => Rejection::failed(format!("the lock task failed: {e}")).into_response(),
    }
}

async fn steady_state(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let p = match client_params(&headers, &body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let lock = api.lock.clone();
    let id = p.id.clone();
    match tokio::task::spawn_blocking(move || lock.release(&id)).await {
        Ok(Ok(released)) => {
            tracing::debug!(id = %p.id, group = %p.group, released, "steady-state");
            StatusCode::OK.into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(id = %p.id, error = %e, "reboot lock not released");
            Rejection::failed(format!("the release could not be recorded: {e}")).into_response()
        }
        Err(e) => Rejection::failed(format!("the unlock task failed: {e}")).into_response(),
    }
}
