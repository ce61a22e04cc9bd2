//! The FleetLock server: one reboot slot shared by Zincati nodes and Slipway's rollouts.
//!
//! Driven two ways: in-process with tower's `oneshot`, and over real HTTP on 127.0.0.1 with
//! a client that writes, byte for byte, the requests Zincati sends (reqwest: the
//! `fleet-lock-protocol: true` header, `accept: */*`, no content type, a pretty-printed JSON
//! body, one keep-alive connection).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::Value;
use slipway::serve::fleetlock::{
    router_with_clock, FleetLock, Holder, HolderKind, UnixClock, LOCK_FILE, ROLLOUT_ID,
};
use slipway::serve::ServeError;
use tower::ServiceExt;

const NODE_A: &str = "c988d2509fdf4cdcbed39037c56406fb";
const NODE_B: &str = "0d2a7f3b9e8c41d6a5b4c3d2e1f00112";

/// A clock the test moves by hand.
fn clock(start: u64) -> (Arc<AtomicU64>, UnixClock) {
    let t = Arc::new(AtomicU64::new(start));
    let read = t.clone();
    (t, Arc::new(move || read.load(Ordering::SeqCst)))
}

fn lock_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state").join(LOCK_FILE)
}

/// Zincati's body: `serde_json::to_string_pretty` of `{"client_params":{"id","group"}}`.
fn zincati_body(id: &str, group: &str) -> String {
    format!(
        "{{\n  \"client_params\": {{\n    \"id\": \"{id}\",\n    \"group\": \"{group}\"\n  }}\n}}"
    )
}

struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/json"),
            "error replies are JSON"
        );
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Assert a FleetLock error reply and return its value.
    fn error(&self, status: StatusCode, kind: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2, "exactly kind and value: {v}");
        assert_eq!(v["kind"], kind, "{v}");
        let value = v["value"].as_str().unwrap().to_owned();
        assert!(!value.is_empty());
        value
    }
}

async fn call(app: &Router, path: &str, header: Option<&str>, body: &str) -> Reply {
    let mut req = Request::builder().method("POST").uri(path);
    if let Some(h) = header {
        req = req.header("fleet-lock-protocol", h);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}

async fn pre_reboot(app: &Router, id: &str) -> Reply {
    call(
        app,
        "/v1/pre-reboot",
        Some("true"),
        &zincati_body(id, "default"),
    )
    .await
}

async fn steady_state(app: &Router, id: &str) -> Reply {
    call(
        app,
        "/v1/steady-state",
        Some("true"),
        &zincati_body(id, "default"),
    )
    .await
}

fn setup(start: u64) -> (tempfile::TempDir, FleetLock, Router, Arc<AtomicU64>) {
    let dir = tempfile::tempdir().unwrap();
    let lock = FleetLock::open(lock_file(&dir)).unwrap();
    let (t, c) = clock(start);
    let app = router_with_clock(lock.clone(), c);
    (dir, lock, app, t)
}

#[tokio::test]
async fn pre_reboot_is_recursive_for_one_id() {
    let (_dir, lock, app, t) = setup(1_000);
    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
    t.store(2_000, Ordering::SeqCst);
    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
    // Still the first grant.
    assert_eq!(
        lock.holder(),
        Some(Holder {
            id: NODE_A.into(),
            group: "default".into(),
            kind: HolderKind::Zincati,
            since_unix: 1_000,
        })
    );
}

#[tokio::test]
async fn a_second_id_is_refused_while_the_first_holds() {
    let (_dir, lock, app, _t) = setup(1_700_000_000);
    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
    let value = pre_reboot(&app, NODE_B)
        .await
        .error(StatusCode::INTERNAL_SERVER_ERROR, "failed_lock");
    assert!(value.contains(NODE_A), "{value}");
    assert!(value.contains("2023-11-14T22:13:20Z"), "{value}");
    assert_eq!(lock.holder().unwrap().id, NODE_A);
}

#[tokio::test]
async fn zincati_is_refused_while_a_rollout_holds_the_lock() {
    let (_dir, lock, app, _t) = setup(10);
    // Slipway's executor, through another clone of the same lock.
    let executor = lock.clone();
    executor.try_acquire(&Holder::rollout(5)).unwrap();
    let value = pre_reboot(&app, NODE_A)
        .await
        .error(StatusCode::INTERNAL_SERVER_ERROR, "failed_lock");
    assert!(value.contains("Slipway's rollout"), "{value}");
    assert!(value.contains(ROLLOUT_ID), "{value}");
    // A node's steady-state does not release the rollout's lock.
    assert_eq!(steady_state(&app, NODE_A).await.status, StatusCode::OK);
    assert_eq!(lock.holder().unwrap().kind, HolderKind::Rollout);

    assert!(executor.release(ROLLOUT_ID).unwrap());
    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_rollout_is_refused_while_a_node_holds_the_lock() {
    let (_dir, lock, app, _t) = setup(10);
    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
    let err = lock.try_acquire(&Holder::rollout(11)).unwrap_err();
    match &err {
        ServeError::LockHeld(h) => {
            assert_eq!(h.id, NODE_A);
            assert_eq!(h.kind, HolderKind::Zincati);
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    assert!(err.to_string().contains(NODE_A), "{err}");
    // The rollout re-acquiring its own lock is recursive too.
    assert_eq!(steady_state(&app, NODE_A).await.status, StatusCode::OK);
    lock.try_acquire(&Holder::rollout(12)).unwrap();
    lock.try_acquire(&Holder::rollout(13)).unwrap();
    assert_eq!(lock.holder(), Some(Holder::rollout(12)));
}

#[tokio::test]
async fn steady_state_releases_and_lets_the_next_node_in() {
    let (_dir, lock, app, _t) = setup(10);
    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
    assert_eq!(steady_state(&app, NODE_A).await.status, StatusCode::OK);
    assert_eq!(lock.holder(), None);
    assert_eq!(pre_reboot(&app, NODE_B).await.status, StatusCode::OK);
    assert_eq!(lock.holder().unwrap().id, NODE_B);
}

#[tokio::test]
async fn steady_state_of_a_non_holder_is_ok_and_changes_nothing() {
    let (dir, lock, app, _t) = setup(10);
    // Nobody holds anything: Zincati's start-up steady-state must succeed.
    assert_eq!(steady_state(&app, NODE_B).await.status, StatusCode::OK);
    assert_eq!(lock.holder(), None);

    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
    let before = std::fs::read(lock_file(&dir)).unwrap();
    let reply = steady_state(&app, NODE_B).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(lock.holder().unwrap().id, NODE_A);
    assert_eq!(std::fs::read(lock_file(&dir)).unwrap(), before);
    assert!(!lock.release(NODE_B).unwrap());
    // Twice in a row for the holder: the second is a no-op.
    assert_eq!(steady_state(&app, NODE_A).await.status, StatusCode::OK);
    assert_eq!(steady_state(&app, NODE_A).await.status, StatusCode::OK);
    assert_eq!(lock.holder(), None);
}

#[tokio::test]
async fn the_protocol_header_is_required() {
    let (_dir, lock, app, _t) = setup(10);
    for path in ["/v1/pre-reboot", "/v1/steady-state"] {
        for header in [None, Some("false"), Some("yes"), Some("")] {
            let value = call(&app, path, header, &zincati_body(NODE_A, "default"))
                .await
                .error(StatusCode::BAD_REQUEST, "invalid_client_identity");
            assert!(value.contains("fleet-lock-protocol"), "{value}");
        }
    }
    assert_eq!(lock.holder(), None);
}

#[tokio::test]
async fn a_bad_body_is_refused_with_400() {
    let (_dir, lock, app, _t) = setup(10);
    let bodies = [
        ("", "empty"),
        ("{\"client_params\":", "truncated"),
        ("{}", "no client_params"),
        ("{\"client_params\":{\"group\":\"default\"}}", "no id"),
        (
            "{\"client_params\":{\"id\":\"\",\"group\":\"default\"}}",
            "empty id",
        ),
        ("{\"client_params\":{\"id\":\"a\"}}", "no group"),
        (
            "{\"client_params\":{\"id\":\"a\",\"group\":\"\"}}",
            "empty group",
        ),
        (
            "{\"client_params\":{\"id\":\"a\",\"group\":\"web tier\"}}",
            "group with a space",
        ),
        (
            "{\"client_params\":{\"id\":7,\"group\":\"default\"}}",
            "numeric id",
        ),
    ];
    for path in ["/v1/pre-reboot", "/v1/steady-state"] {
        for (body, what) in bodies {
            let reply = call(&app, path, Some("true"), body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {what}");
            reply.error(StatusCode::BAD_REQUEST, "invalid_client_identity");
        }
    }
    assert_eq!(lock.holder(), None);
    // Groups with dots and dashes are fine.
    let ok = call(
        &app,
        "/v1/pre-reboot",
        Some("true"),
        &zincati_body(NODE_A, "db-1.eu"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn other_methods_and_paths_are_refused_like_axum_does() {
    let (_dir, _lock, app, _t) = setup(10);
    let get = app
        .clone()
        .oneshot(
            Request::builder()
                .method("GET")
                .uri("/v1/pre-reboot")
                .header("fleet-lock-protocol", "true")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let other = call(
        &app,
        "/v1/reboot",
        Some("true"),
        &zincati_body(NODE_A, "default"),
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_holder_survives_reopening_the_lock_file() {
    let (dir, lock, app, _t) = setup(42);
    assert_eq!(pre_reboot(&app, NODE_A).await.status, StatusCode::OK);
    drop((lock, app));

    let reopened = FleetLock::open(lock_file(&dir)).unwrap();
    assert_eq!(
        reopened.holder(),
        Some(Holder::zincati(NODE_A, "default", 42))
    );
    let (_t, c) = clock(43);
    let app = router_with_clock(reopened.clone(), c);
    pre_reboot(&app, NODE_B)
        .await
        .error(StatusCode::INTERNAL_SERVER_ERROR, "failed_lock");
    assert_eq!(steady_state(&app, NODE_A).await.status, StatusCode::OK);

    assert_eq!(FleetLock::open(lock_file(&dir)).unwrap().holder(), None);
    // No temporary files are left beside it.
    let names: Vec<String> = std::fs::read_dir(lock_file(&dir).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![LOCK_FILE.to_owned()]);
}

#[test]
fn a_corrupt_lock_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOCK_FILE);
    for content in ["{not json", "", "{\"holder\":{\"id\":\"a\"}}"] {
        std::fs::write(&path, content).unwrap();
        let err = FleetLock::open(path.clone()).unwrap_err();
        assert!(
            matches!(&err, ServeError::CorruptLockFile { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Over real HTTP, the way Zincati talks.
// ---------------------------------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn serve(app: Router) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, _rt: rt }
}

/// One keep-alive connection, as reqwest's pool keeps it.
struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        // A guard against a hung server, not a speed assertion.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Self {
            addr,
            reader: BufReader::new(stream),
        }
    }

    /// Send exactly what Zincati's reqwest client sends for `endpoint`.
    fn zincati(&mut self, endpoint: &str, id: &str, group: &str) -> Reply {
        let body = zincati_body(id, group);
        let head = format!(
            "POST /{endpoint} HTTP/1.1\r\nfleet-lock-protocol: true\r\naccept: */*\r\nhost: {}\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.raw(&format!("{head}{body}"))
    }

    fn raw(&mut self, request: &str) -> Reply {
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let mut parts = status_line.split_whitespace();
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line:?}");
        let status = StatusCode::from_u16(parts.next().unwrap().parse().unwrap()).unwrap();
        let mut content_length = None;
        let mut content_type = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end_matches("\r\n");
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => content_length = Some(value.trim().parse::<usize>().unwrap()),
                "content-type" => content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; content_length.expect("replies carry a content-length")];
        self.reader.read_exact(&mut body).unwrap();
        Reply {
            status,
            content_type,
            body,
        }
    }
}

fn assert_ok(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[test]
fn zincati_nodes_take_turns_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let lock = FleetLock::open(lock_file(&dir)).unwrap();
    let (_t, c) = clock(100);
    let server = serve(router_with_clock(lock.clone(), c));
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);

    // Start-up: each node releases whatever it might have held.
    assert_ok(&a.zincati("v1/steady-state", NODE_A, "default"));
    assert_ok(&b.zincati("v1/steady-state", NODE_B, "workers"));
    // A stages an update and asks to reboot; asking again is fine.
    assert_ok(&a.zincati("v1/pre-reboot", NODE_A, "default"));
    assert_ok(&a.zincati("v1/pre-reboot", NODE_A, "default"));
    // B, in another group, must wait: one slot for the whole fleet.
    let value = b
        .zincati("v1/pre-reboot", NODE_B, "workers")
        .error(StatusCode::INTERNAL_SERVER_ERROR, "failed_lock");
    assert!(value.contains(NODE_A), "{value}");
    // A comes back up and reports steady state; now B goes.
    assert_ok(&a.zincati("v1/steady-state", NODE_A, "default"));
    assert_ok(&b.zincati("v1/pre-reboot", NODE_B, "workers"));
    assert_eq!(lock.holder(), Some(Holder::zincati(NODE_B, "workers", 100)));

    // A rollout waits for B, then B waits for the rollout.
    assert!(matches!(
        lock.try_acquire(&Holder::rollout(200)),
        Err(ServeError::LockHeld(_))
    ));
    assert_ok(&b.zincati("v1/steady-state", NODE_B, "workers"));
    lock.try_acquire(&Holder::rollout(200)).unwrap();
    let value = b
        .zincati("v1/pre-reboot", NODE_B, "workers")
        .error(StatusCode::INTERNAL_SERVER_ERROR, "failed_lock");
    assert!(value.contains("rollout"), "{value}");
}

#[test]
fn curl_style_requests_work_whatever_the_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let lock = FleetLock::open(lock_file(&dir)).unwrap();
    let server = serve(router_with_clock(lock.clone(), clock(1).1));
    let mut c = Client::connect(server.addr);
    let body = format!("{{\"client_params\":{{\"id\":\"{NODE_A}\",\"group\":\"default\"}}}}");
    for content_type in ["application/json", "application/x-www-form-urlencoded"] {
        let req = format!(
            "POST /v1/pre-reboot HTTP/1.1\r\nhost: {}\r\nuser-agent: curl/8.5.0\r\naccept: */*\r\nfleet-lock-protocol: true\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        );
        assert_ok(&c.raw(&req));
    }
    assert_eq!(lock.holder().unwrap().id, NODE_A);

    // Without the header, over the wire too: 400 with a JSON error.
    let req = format!(
        "POST /v1/pre-reboot HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    c.raw(&req)
        .error(StatusCode::BAD_REQUEST, "invalid_client_identity");
}
