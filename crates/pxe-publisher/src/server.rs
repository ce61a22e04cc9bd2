//! The boot HTTP server (axum) and its shared state.
//!
//! Nodes are identified by the MAC in the URL only, never by source address
//! or `Host` header. The access log goes through `tracing` and never records
//! query strings (they carry tokens) or response bodies.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::broadcast;
use tower::ServiceExt as _;

use crate::boot::{
    new_nonce, BootEvent, BootTable, Clock, NodeBootStatus, RefusalReason, ScriptKind, SystemClock,
    Token, TokenCheck, TokenKey,
};
use crate::error::{PublishError, Result};
use crate::generation::Generation;
use crate::ipxe;
use crate::types::{is_safe_artifact_name, MacAddr, SecretIgnition, Sha256Digest};

/// Longest request target we accept; longer ones get 400.
pub const MAX_URI_LEN: usize = 2048;

/// Shared state of the boot server. Cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    inner: Arc<Inner>,
}

struct Inner {
    store_dir: PathBuf,
    clock: Arc<dyn Clock>,
    key: TokenKey,
    active: RwLock<Option<Arc<Generation>>>,
    ignitions: Mutex<HashMap<Sha256Digest, SecretIgnition>>,
    boot: Mutex<BootTable>,
    events: broadcast::Sender<BootEvent>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerState {
    /// State serving artifacts from the content-addressed `store_dir`.
    pub fn new(store_dir: impl Into<PathBuf>) -> Self {
        Self::with_clock(store_dir, Arc::new(SystemClock))
    }

    /// Same as [`ServerState::new`] with an injected clock (tests).
    pub fn with_clock(store_dir: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Self {
        let (events, _) = broadcast::channel(1024);
        ServerState {
            inner: Arc::new(Inner {
                store_dir: store_dir.into(),
                clock,
                key: TokenKey::generate(),
                active: RwLock::new(None),
                ignitions: Mutex::new(HashMap::new()),
                boot: Mutex::new(BootTable::default()),
                events,
            }),
        }
    }

    /// Starts serving `generation`, with the Ignition configs of its nodes
    /// (held in memory only, keyed by sha256). Configs referenced by neither
    /// this nor the previously active generation are dropped, so a single
    /// in-process rollback still has its Ignition. Boot state of nodes that
    /// left the fleet is forgotten.
    pub fn activate(
        &self,
        generation: Generation,
        ignitions: impl IntoIterator<Item = SecretIgnition>,
    ) {
        let generation = Arc::new(generation);
        let mut active = self.inner.active.write().unwrap_or_else(|p| p.into_inner());
        let mut wanted: HashSet<Sha256Digest> = generation
            .manifest()
            .nodes
            .iter()
            .map(|n| n.ignition_sha256)
            .collect();
        if let Some(prev) = active.as_ref() {
            wanted.extend(prev.manifest().nodes.iter().map(|n| n.ignition_sha256));
        }
        {
            let mut store = lock(&self.inner.ignitions);
            for ign in ignitions {
                store.insert(ign.sha256(), ign);
            }
            store.retain(|sha, _| wanted.contains(sha));
        }
        lock(&self.inner.boot).retain(|n| generation.node(n).is_some());
        tracing::info!(generation = %generation.id(), "boot server now serving generation");
        *active = Some(generation);
    }

    /// The generation being served.
    pub fn active_generation(&self) -> Option<Arc<Generation>> {
        self.inner
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the Ignition for `node` in the active generation is in memory.
    pub fn has_ignition(&self, node: &str) -> bool {
        let Some(generation) = self.active_generation() else {
            return false;
        };
        generation
            .node(node)
            .is_some_and(|n| lock(&self.inner.ignitions).contains_key(&n.ignition_sha256))
    }

    /// Arms `node` for one install: its MACs get the FCOS install script
    /// until the Ignition is fetched, `ttl` runs out or [`Self::disarm`].
    /// Re-arming replaces the previous token.
    pub fn arm(&self, node: &str, ttl: Duration) -> Result<Token> {
        let generation = self
            .active_generation()
            .ok_or(PublishError::NoActiveGeneration)?;
        if generation.node(node).is_none() {
            return Err(PublishError::UnknownNode(node.to_string()));
        }
        let nonce = new_nonce();
        let token = Token::derive(&self.inner.key, node, &nonce);
        let expires_at = self.inner.clock.now() + ttl;
        lock(&self.inner.boot).arm(node, &token, nonce, expires_at);
        tracing::info!(node, ttl_secs = ttl.as_secs(), "armed node for install");
        let _ = self.inner.events.send(BootEvent::Armed {
            node: node.to_string(),
        });
        Ok(token)
    }

    /// Returns `node` to localboot. `Ok(true)` if it was armed.
    pub fn disarm(&self, node: &str) -> Result<bool> {
        let was = lock(&self.inner.boot).disarm(node);
        if was {
            tracing::info!(node, "disarmed node");
            let _ = self.inner.events.send(BootEvent::Disarmed {
                node: node.to_string(),
            });
        }
        Ok(was)
    }

    /// Where `node` stands.
    pub fn status(&self, node: &str) -> NodeBootStatus {
        lock(&self.inner.boot).status(node, self.inner.clock.now())
    }

    /// Subscribes to boot events (lossy if the receiver lags by >1024).
    pub fn subscribe(&self) -> broadcast::Receiver<BootEvent> {
        self.inner.events.subscribe()
    }

    /// Resolves once `node` has fetched its Ignition (immediately if it
    /// already has since it was last armed). Wrap it in a timeout.
    pub async fn wait_ignition_fetched(&self, node: &str) -> Instant {
        let mut rx = self.subscribe();
        loop {
            if let NodeBootStatus::IgnitionFetched { at } = self.status(node) {
                return at;
            }
            match rx.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    // The state lives as long as `self`; re-check and wait.
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// The axum router serving every endpoint.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/boot.ipxe", get(boot_ipxe))
            .route("/ipxe", get(ipxe_for_mac))
            .route("/ignition/{node}", get(ignition))
            .route("/artifacts/{sha}/{name}", get(artifact))
            .route("/healthz", get(|| async { "ok\n" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
            .layer(middleware::from_fn(access_log))
            .layer(tower_http::catch_panic::CatchPanicLayer::new())
            .with_state(self.clone())
    }

    fn emit(&self, event: BootEvent) {
        let _ = self.inner.events.send(event);
    }
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("store_dir", &self.inner.store_dir)
            .field(
                "generation",
                &self.active_generation().map(|g| g.id().to_string()),
            )
            .finish_non_exhaustive()
    }
}

/// Serves `state` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "boot server listening");
    }
    axum::serve(listener, state.router())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(PublishError::Server)
}

async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // Path only: the query may hold a token.
    let path = req.uri().path().to_string();
    let uri_len = req.uri().to_string().len();
    if uri_len > MAX_URI_LEN {
        tracing::warn!(target: "slipway::access", %method, uri_len, "request target too long");
        return bad_request("request target too long");
    }
    let response = next.run(req).await;
    tracing::info!(
        target: "slipway::access",
        %method,
        path = %truncate(&path, 200),
        status = response.status().as_u16(),
    );
    response
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn bad_request(msg: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

fn script_response(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn no_generation() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "no generation published\n").into_response()
}

async fn boot_ipxe(State(state): State<ServerState>) -> Response {
    match state.active_generation() {
        Some(g) => script_response(g.chain_script().to_string()),
        None => no_generation(),
    }
}

async fn ipxe_for_mac(State(state): State<ServerState>, RawQuery(query): RawQuery) -> Response {
    let Some(raw_mac) = query_param(query.as_deref(), "mac") else {
        return bad_request("missing mac parameter");
    };
    let Ok(mac) = raw_mac.parse::<MacAddr>() else {
        tracing::warn!(mac = %truncate(&raw_mac, 40), "malformed MAC in /ipxe request");
        return bad_request("malformed mac parameter");
    };
    let Some(generation) = state.active_generation() else {
        return no_generation();
    };
    let Some(node) = generation.node_for_mac(&mac) else {
        tracing::info!(%mac, policy = ?generation.manifest().unknown_mac, "unknown MAC, serving unknown-MAC policy");
        state.emit(BootEvent::ScriptServed {
            node: None,
            mac,
            script: ScriptKind::UnknownMac,
        });
        return script_response(generation.unknown_script().to_string());
    };
    let now = state.inner.clock.now();
    let nonce = lock(&state.inner.boot).armed_nonce(node, now);
    let (kind, body) = match (nonce, generation.install_template(node)) {
        (Some(nonce), Some(template)) => {
            let token = Token::derive(&state.inner.key, node, &nonce);
            (
                ScriptKind::Install,
                ipxe::fill_token(template, token.expose()),
            )
        }
        _ => (
            ScriptKind::Localboot,
            generation.localboot_script().to_string(),
        ),
    };
    tracing::info!(node, %mac, script = ?kind, "served boot script");
    state.emit(BootEvent::ScriptServed {
        node: Some(node.to_string()),
        mac,
        script: kind,
    });
    script_response(body)
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn ignition(
    State(state): State<ServerState>,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if crate::types::validate_node_name(&node).is_err() {
        return bad_request("malformed node name");
    }
    let Some(token) = query_param(query.as_deref(), "token") else {
        return bad_request("missing token parameter");
    };
    let token = zeroize::Zeroizing::new(token);
    let refuse = |reason: RefusalReason| {
        tracing::warn!(node = %node, ?reason, "refused Ignition request");
        state.emit(BootEvent::IgnitionRefused {
            node: node.clone(),
            reason,
        });
        (StatusCode::FORBIDDEN, "forbidden\n").into_response()
    };
    let Some(generation) = state.active_generation() else {
        return no_generation();
    };
    let Some(entry) = generation.node(&node) else {
        return refuse(RefusalReason::UnknownNode);
    };
    let now = state.inner.clock.now();
    let body = {
        let mut boot = lock(&state.inner.boot);
        match boot.check_token(&node, &token, now) {
            TokenCheck::Refused(reason) => {
                drop(boot);
                return refuse(reason);
            }
            TokenCheck::Valid => {}
        }
        let Some(ign) = lock(&state.inner.ignitions)
            .get(&entry.ignition_sha256)
            .cloned()
        else {
            drop(boot);
            tracing::error!(node = %node, sha256 = %entry.ignition_sha256, "Ignition not in memory; re-publish the generation");
            state.emit(BootEvent::IgnitionRefused {
                node: node.clone(),
                reason: RefusalReason::IgnitionUnavailable,
            });
            return (StatusCode::SERVICE_UNAVAILABLE, "ignition not available\n").into_response();
        };
        boot.consume(&node, now);
        ign
    };
    tracing::info!(node = %node, sha256 = %body.sha256(), "served Ignition; node back to localboot");
    state.emit(BootEvent::IgnitionFetched { node: node.clone() });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.coreos.ignition+json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from(body.expose().to_vec()),
    )
        .into_response()
}

/// Read size of range, HEAD and conditional artifact requests (ServeFile).
const ARTIFACT_CHUNK: usize = 4 << 20;

/// Read size of whole-file artifact downloads (the fast path).
const FAST_CHUNK: usize = 1 << 20;

/// Chunks read ahead of the socket in the fast path.
const FAST_READ_AHEAD: usize = 2;

async fn artifact(
    State(state): State<ServerState>,
    Path((sha, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Ok(digest) = sha.parse::<Sha256Digest>() else {
        return bad_request("malformed sha256");
    };
    if !is_safe_artifact_name(&name) {
        return bad_request("malformed artifact name");
    }
    let path = state.inner.store_dir.join(digest.to_hex()).join(&name);
    let etag = if name.ends_with(".sig") {
        format!("\"{digest}-sig\"")
    } else {
        format!("\"{digest}\"")
    };
    let mut resp =
        if req.method() == axum::http::Method::GET && !req.headers().contains_key(header::RANGE) {
            whole_file(path, req).await
        } else {
            serve_file(path, req).await
        };
    if resp.status().is_success() {
        if let Ok(v) = HeaderValue::from_str(&etag) {
            resp.headers_mut().insert(header::ETAG, v);
        }
    }
    resp
}

/// Range, HEAD and everything else: tower-http's ServeFile.
async fn serve_file(path: PathBuf, req: Request) -> Response {
    // 4 MiB reads: multi-GB images stream with a fraction of the per-chunk overhead of the
    // 64 KiB default (measured in benches/serve.rs against nginx's sendfile).
    match tower_http::services::ServeFile::new(path)
        .with_buf_chunk_size(ARTIFACT_CHUNK)
        .oneshot(req)
        .await
    {
        Ok(resp) => resp.map(Body::new),
        Err(never) => match never {},
    }
}

/// A whole-file GET. Status and headers are exactly ServeFile's answer to the
/// same request as HEAD (conditional requests, content type, length, dates);
/// only the body differs: a blocking thread reads the file straight into a
/// few reused buffers and hands them to the socket without another copy
/// (tokio's file reads go through an internal buffer and are copied again).
async fn whole_file(path: PathBuf, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    parts.method = axum::http::Method::HEAD;
    let head = serve_file(path.clone(), Request::from_parts(parts, body)).await;
    if head.status() != StatusCode::OK {
        return head;
    }
    let Some(len) = head
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return head;
    };
    let file = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
        Ok(Ok(f)) => f,
        _ => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    let (parts, _) = head.into_parts();
    Response::from_parts(parts, file_body(file, len))
}

/// Streams `len` bytes of `file` from a blocking thread through a bounded
/// channel, in buffers that return to a small pool when the socket is done
/// with them. A file shorter than `len` ends the body with an error (the
/// connection is closed rather than sending a short body).
fn file_body(file: std::fs::File, len: u64) -> Body {
    use std::os::unix::fs::FileExt as _;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(FAST_READ_AHEAD);
    let pool = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    tokio::task::spawn_blocking(move || {
        let mut offset = 0u64;
        while offset < len {
            let want = usize::try_from(len - offset).map_or(FAST_CHUNK, |l| l.min(FAST_CHUNK));
            let mut buf = lock(&pool).pop().unwrap_or_default();
            buf.resize(want, 0);
            let mut filled = 0;
            let result = loop {
                if filled == want {
                    break Ok(());
                }
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => {
                        break Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "artifact shorter than its length",
                        ))
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let item = result.map(|()| {
                bytes::Bytes::from_owner(PooledBuf {
                    buf,
                    pool: Arc::clone(&pool),
                })
            });
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return; // client gone, or error sent
            }
            offset += want as u64;
        }
    });
    Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// A read buffer that goes back to its pool when the socket has sent it.
struct PooledBuf {
    buf: Vec<u8>,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut pool = lock(&self.pool);
        if pool.len() < FAST_READ_AHEAD + 2 {
            pool.push(buf);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn call(state: &ServerState, req: axum::http::Request<Body>) -> (Response, Vec<u8>) {
        let resp = state.router().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await;
        (
            Response::from_parts(parts, Body::empty()),
            bytes.unwrap().to_vec(),
        )
    }

    fn req(method: &str, uri: &str, header: Option<(&str, &str)>) -> axum::http::Request<Body> {
        let mut b = axum::http::Request::builder().method(method).uri(uri);
        if let Some((k, v)) = header {
            b = b.header(k, v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_file_downloads_match_the_file_and_head_headers_across_chunks() {
        let store = tempfile::tempdir().unwrap();
        // Several chunks, not a multiple of the chunk size, every byte distinct by position.
        let data: Vec<u8> = (0..(3 * FAST_CHUNK + 12345) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let digest = Sha256Digest::of(&data);
        std::fs::create_dir_all(store.path().join(digest.to_hex())).unwrap();
        std::fs::write(
            store.path().join(digest.to_hex()).join("metal.raw.xz"),
            &data,
        )
        .unwrap();
        let state = ServerState::new(store.path());
        let uri = format!("/artifacts/{digest}/metal.raw.xz");

        let (got, body) = call(&state, req("GET", &uri, None)).await;
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(body.len(), data.len());
        assert!(body == data, "body differs from the file");
        let (head, head_body) = call(&state, req("HEAD", &uri, None)).await;
        assert!(head_body.is_empty());
        for h in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::LAST_MODIFIED,
            header::ACCEPT_RANGES,
            header::ETAG,
        ] {
            assert!(got.headers().get(&h).is_some(), "{h}");
            assert_eq!(got.headers().get(&h), head.headers().get(&h), "{h}");
        }
        assert_eq!(got.headers()[header::ETAG], format!("\"{digest}\""));

        // Conditional and range requests keep ServeFile's answers.
        let since = got.headers()[header::LAST_MODIFIED]
            .to_str()
            .unwrap()
            .to_string();
        let (nm, nm_body) = call(
            &state,
            req("GET", &uri, Some(("if-modified-since", &since))),
        )
        .await;
        assert_eq!(nm.status(), StatusCode::NOT_MODIFIED);
        assert!(nm_body.is_empty());
        let (part, part_body) = call(&state, req("GET", &uri, Some(("range", "bytes=5-9")))).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(part_body, &data[5..10]);
        // A missing artifact is still 404.
        let (missing, _) = call(
            &state,
            req("GET", &format!("/artifacts/{}/x", "0".repeat(64)), None),
        )
        .await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_shorter_than_announced_ends_the_body_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; FAST_CHUNK + 10]).unwrap();
        let body = file_body(std::fs::File::open(&path).unwrap(), 2 * FAST_CHUNK as u64);
        assert!(axum::body::to_bytes(body, usize::MAX).await.is_err());
        let body = file_body(std::fs::File::open(&path).unwrap(), FAST_CHUNK as u64 + 10);
        assert_eq!(
            axum::body::to_bytes(body, usize::MAX).await.unwrap().len(),
            FAST_CHUNK + 10
        );
    }
}
