//! The artifact mirror against a local (127.0.0.1) fake upstream: stream
//! metadata, sha256 verification, resume after an interrupted download,
//! bounded retries, K3s checksum files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use slipway_pxe_publisher::mirror::{K3sSource, Mirror, MirrorConfig, Progress};
use slipway_pxe_publisher::{PublishError, Sha256Digest};

#[derive(Default)]
struct Upstream {
    files: HashMap<String, Vec<u8>>,
    /// Names whose next response is cut off after half the body.
    interrupt_once: HashSet<String>,
    /// Names that always answer 500.
    broken: HashSet<String>,
    /// (name, Range header) of every request.
    log: Vec<(String, Option<String>)>,
}

type Shared = Arc<Mutex<Upstream>>;

async fn serve_file(
    State(up): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut up = up.lock().unwrap();
    up.log.push((name.clone(), range.clone()));
    if up.broken.contains(&name) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let Some(data) = up.files.get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, body_bytes, content_range) = match start {
        Some(s) if s < data.len() => (
            StatusCode::PARTIAL_CONTENT,
            data[s..].to_vec(),
            Some(format!("bytes {s}-{}/{}", data.len() - 1, data.len())),
        ),
        Some(_) => (StatusCode::RANGE_NOT_SATISFIABLE, vec![], None),
        None => (StatusCode::OK, data.clone(), None),
    };
    let len = body_bytes.len();
    let body = if up.interrupt_once.remove(&name) {
        let half = body_bytes[..len / 2].to_vec();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::other("connection cut by test upstream")),
        ];
        Body::from_stream(futures_util::stream::iter(chunks))
    } else {
        Body::from(body_bytes)
    };
    let mut resp = Response::builder()
        .status(status)
        .header("content-length", len.to_string());
    if let Some(cr) = content_range {
        resp = resp.header("content-range", cr);
    }
    resp.body(body).unwrap()
}

async fn start(up: Shared) -> String {
    let app = Router::new()
        .route("/f/{name}", get(serve_file))
        .with_state(up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn config() -> MirrorConfig {
    MirrorConfig {
        attempts: 3,
        backoff: Duration::ZERO,
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(30),
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn started(&self, name: &str, total: Option<u64>, resumed_from: u64) {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {name} {total:?} {resumed_from}"));
    }
    fn advanced(&self, _: &str, _: u64) {}
    fn finished(&self, name: &str) {
        self.0.lock().unwrap().push(format!("done {name}"));
    }
}

fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

const KERNEL: &str = "fedora-coreos-41.20250105.3.0-live-kernel-x86_64";
const INITRAMFS: &str = "fedora-coreos-41.20250105.3.0-live-initramfs.x86_64.img";
const ROOTFS: &str = "fedora-coreos-41.20250105.3.0-live-rootfs.x86_64.img";
const METAL: &str = "fedora-coreos-41.20250105.3.0-metal.x86_64.raw.xz";

/// The fixture stream, pointed at `base` and at the real digests of the
/// fake artifacts.
fn stream_json(base: &str, files: &HashMap<String, Vec<u8>>, metal_sig: bool) -> Vec<u8> {
    let fixture = include_str!("fixtures/stream.json");
    let mut v: serde_json::Value = serde_json::from_str(fixture).unwrap();
    let metal = &mut v["architectures"]["x86_64"]["artifacts"]["metal"]["formats"];
    for (ptr, name) in [
        ("/pxe/kernel", KERNEL),
        ("/pxe/initramfs", INITRAMFS),
        ("/pxe/rootfs", ROOTFS),
        ("/raw.xz/disk", METAL),
    ] {
        let a = metal.pointer_mut(ptr).unwrap();
        a["location"] = format!("{base}/f/{name}").into();
        a["sha256"] = Sha256Digest::of(&files[name]).to_hex().into();
        a["signature"] = format!("{base}/f/{name}.sig").into();
        if name == METAL && !metal_sig {
            a.as_object_mut().unwrap().remove("signature");
        }
    }
    serde_json::to_vec(&v).unwrap()
}

fn fcos_upstream() -> Upstream {
    let mut up = Upstream::default();
    for (i, name) in [KERNEL, INITRAMFS, ROOTFS, METAL].iter().enumerate() {
        up.files
            .insert(name.to_string(), blob(i as u8, 200_000 + i * 1000));
    }
    up.files.insert(
        format!("{METAL}.sig"),
        b"-----BEGIN PGP SIGNATURE-----".to_vec(),
    );
    up
}

#[tokio::test]
async fn mirrors_fcos_release_with_resume_and_signature() {
    let up: Shared = Arc::new(Mutex::new(fcos_upstream()));
    let base = start(up.clone()).await;
    {
        let mut u = up.lock().unwrap();
        let json = stream_json(&base, &u.files, true);
        u.files.insert("stream.json".into(), json);
        u.interrupt_once.insert(ROOTFS.to_string());
    }
    let store = tempfile::tempdir().unwrap();
    let mirror = Mirror::new(store.path(), config()).unwrap();
    let progress = Recorder::default();
    let m = mirror
        .mirror_fcos(&format!("{base}/f/stream.json"), &progress)
        .await
        .unwrap();
    assert_eq!(m.release, "41.20250105.3.0");
    let files = up.lock().unwrap().files.clone();
    for a in [&m.kernel, &m.initramfs, &m.rootfs, &m.metal] {
        let on_disk = std::fs::read(store.path().join(a.sha256.to_hex()).join(&a.name)).unwrap();
        assert_eq!(on_disk, files[&a.name], "{}", a.name);
        assert_eq!(a.size, on_disk.len() as u64);
    }
    assert!(m.metal.signature_available);
    assert!(store
        .path()
        .join(m.metal.sha256.to_hex())
        .join(format!("{METAL}.sig"))
        .exists());

    // The connection cut mid-body was retried and still verified.
    let log = up.lock().unwrap().log.clone();
    let rootfs_reqs = log.iter().filter(|(n, _)| n == ROOTFS).count();
    assert_eq!(rootfs_reqs, 2, "{log:?}");
    assert!(progress
        .0
        .lock()
        .unwrap()
        .contains(&format!("done {ROOTFS}")));

    // A second run finds everything (signature included) in the store.
    let before = up.lock().unwrap().log.len();
    mirror
        .mirror_fcos(&format!("{base}/f/stream.json"), &Recorder::default())
        .await
        .unwrap();
    let after: Vec<_> = up.lock().unwrap().log[before..]
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(after, vec!["stream.json".to_string()]);
}

#[tokio::test]
async fn interrupted_download_resumes_with_range() {
    let data = blob(9, 300_000);
    let up: Shared = Arc::new(Mutex::new(Upstream::default()));
    up.lock()
        .unwrap()
        .files
        .insert("rootfs.img".into(), data.clone());
    let base = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let sha = Sha256Digest::of(&data);
    // A previous run stopped after 123_457 bytes.
    let partial_dir = store.path().join(".partial");
    std::fs::create_dir_all(&partial_dir).unwrap();
    std::fs::write(
        partial_dir.join(format!("{sha}-rootfs.img")),
        &data[..123_457],
    )
    .unwrap();
    let mirror = Mirror::new(store.path(), config()).unwrap();
    let progress = Recorder::default();
    let a = mirror
        .fetch(&format!("{base}/f/rootfs.img"), sha, &progress)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(mirror.store_path(&sha, "rootfs.img")).unwrap(),
        data
    );
    assert_eq!(a.size, data.len() as u64);
    let log = up.lock().unwrap().log.clone();
    assert_eq!(
        log,
        vec![("rootfs.img".to_string(), Some("bytes=123457-".to_string()))]
    );
    assert!(progress
        .0
        .lock()
        .unwrap()
        .contains(&"start rootfs.img Some(300000) 123457".to_string()));
}

#[tokio::test]
async fn corrupt_partial_is_not_accepted() {
    let data = blob(4, 10_000);
    let up: Shared = Arc::new(Mutex::new(Upstream::default()));
    up.lock().unwrap().files.insert("k3s".into(), data.clone());
    let base = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let sha = Sha256Digest::of(&data);
    let partial_dir = store.path().join(".partial");
    std::fs::create_dir_all(&partial_dir).unwrap();
    // Garbage prefix from an earlier, different upstream.
    std::fs::write(partial_dir.join(format!("{sha}-k3s")), vec![0xffu8; 5000]).unwrap();
    let mirror = Mirror::new(store.path(), config()).unwrap();
    let err = mirror
        .fetch(&format!("{base}/f/k3s"), sha, &Recorder::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::DigestMismatch { .. }), "{err}");
    // The bad partial is gone, so the next run starts clean and succeeds.
    mirror
        .fetch(&format!("{base}/f/k3s"), sha, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(mirror.store_path(&sha, "k3s")).unwrap(), data);
}

#[tokio::test]
async fn metal_without_signature_is_marked_insecure() {
    let up: Shared = Arc::new(Mutex::new(fcos_upstream()));
    let base = start(up.clone()).await;
    {
        let mut u = up.lock().unwrap();
        let json = stream_json(&base, &u.files, false);
        u.files.insert("stream.json".into(), json);
    }
    let store = tempfile::tempdir().unwrap();
    let mirror = Mirror::new(store.path(), config()).unwrap();
    let m = mirror
        .mirror_fcos(&format!("{base}/f/stream.json"), &Recorder::default())
        .await
        .unwrap();
    assert!(!m.metal.signature_available);
    let (bin, script) = (m.kernel.clone(), m.kernel.clone());
    assert!(m.with_k3s(bin, script).metal_image_insecure());
}

#[tokio::test]
async fn corrupted_artifact_is_deleted_and_reported() {
    let up: Shared = Arc::new(Mutex::new(Upstream::default()));
    up.lock()
        .unwrap()
        .files
        .insert("metal.raw.xz".into(), blob(7, 50_000));
    let base = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let mirror = Mirror::new(store.path(), config()).unwrap();
    let promised = Sha256Digest::of(b"what upstream promised");
    let err = mirror
        .fetch(
            &format!("{base}/f/metal.raw.xz"),
            promised,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::DigestMismatch { .. }), "{err}");
    assert!(!store.path().join(promised.to_hex()).exists());
    let partials: Vec<_> = std::fs::read_dir(store.path().join(".partial"))
        .unwrap()
        .collect();
    assert!(partials.is_empty(), "partial download left behind");
}

#[tokio::test]
async fn retries_are_bounded() {
    let up: Shared = Arc::new(Mutex::new(Upstream::default()));
    up.lock().unwrap().broken.insert("k3s".into());
    let base = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let mirror = Mirror::new(store.path(), config()).unwrap();
    let err = mirror
        .fetch(
            &format!("{base}/f/k3s"),
            Sha256Digest::of(b"x"),
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::DownloadFailed { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(up.lock().unwrap().log.len(), 3);
}

#[tokio::test]
async fn k3s_uses_sha256sum_file() {
    let up: Shared = Arc::new(Mutex::new(Upstream::default()));
    let k3s = blob(3, 80_000);
    let script = b"#!/bin/sh\necho install k3s\n".to_vec();
    {
        let mut u = up.lock().unwrap();
        let sums = format!(
            "{}  k3s\n{}  k3s-airgap-images-amd64.tar\n",
            Sha256Digest::of(&k3s),
            Sha256Digest::of(b"other")
        );
        u.files.insert("k3s".into(), k3s.clone());
        u.files.insert("install.sh".into(), script.clone());
        u.files
            .insert("sha256sum-amd64.txt".into(), sums.into_bytes());
    }
    let base = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let mirror = Mirror::new(store.path(), config()).unwrap();
    let mut source = K3sSource {
        binary_url: format!("{base}/f/k3s"),
        checksum_url: format!("{base}/f/sha256sum-amd64.txt"),
        install_script_url: format!("{base}/f/install.sh"),
        install_script_sha256: None,
    };
    // The script is not in the checksum file and not pinned: refused.
    let err = mirror
        .mirror_k3s(&source, &Recorder::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PublishError::ChecksumMissing { file, .. } if file == "install.sh"),
        "{err}"
    );
    source.install_script_sha256 = Some(Sha256Digest::of(&script));
    let (bin, sh) = mirror
        .mirror_k3s(&source, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(bin.sha256, Sha256Digest::of(&k3s));
    assert_eq!(sh.name, "install.sh");
    assert_eq!(
        std::fs::read(mirror.store_path(&bin.sha256, "k3s")).unwrap(),
        k3s
    );
}
