//! `POST /hooks/git`: GitHub and Gitea HMAC signatures, through the router (no socket).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use slipway::source::{verify_gitea, verify_github, webhook_router, WebhookSecret, WEBHOOK_PATH};
use tokio::sync::Notify;
use tower::ServiceExt;

// The example published in GitHub's webhook documentation.
const SECRET: &str = "It's a Secret to Everybody";
const PAYLOAD: &str = "Hello, World!";
const HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn secret() -> WebhookSecret {
    WebhookSecret::new(SECRET)
}

#[test]
fn githubs_published_example_verifies() {
    let s = secret();
    assert!(verify_github(
        &s,
        PAYLOAD.as_bytes(),
        &format!("sha256={HEX}")
    ));
    assert!(verify_gitea(&s, PAYLOAD.as_bytes(), HEX));
    assert!(!verify_github(
        &s,
        b"Hello, World?",
        &format!("sha256={HEX}")
    ));
    assert!(!verify_github(
        &WebhookSecret::new("wrong"),
        PAYLOAD.as_bytes(),
        &format!("sha256={HEX}")
    ));
    assert!(!verify_github(
        &s,
        PAYLOAD.as_bytes(),
        &format!("sha1={HEX}")
    ));
}

#[test]
fn the_secret_file_is_trimmed_and_must_not_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hook-secret");
    std::fs::write(&f, format!("{SECRET}\n")).unwrap();
    let s = WebhookSecret::load(&f).unwrap();
    assert!(verify_gitea(&s, PAYLOAD.as_bytes(), HEX));
    std::fs::write(&f, " \n").unwrap();
    assert!(WebhookSecret::load(&f).is_err());
}

/// True when the trigger holds a permit (it was notified), without waiting for one: a
/// zero timeout still polls the future once.
async fn was_triggered(trigger: &Notify) -> bool {
    tokio::time::timeout(Duration::ZERO, trigger.notified())
        .await
        .is_ok()
}

async fn post(trigger: &Arc<Notify>, headers: &[(&str, String)], body: &str) -> StatusCode {
    let mut req = Request::post(WEBHOOK_PATH);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Body::from(body.to_owned())).unwrap();
    webhook_router(secret(), trigger.clone())
        .oneshot(req)
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn valid_signatures_are_accepted_and_trigger_a_fetch() {
    let trigger = Arc::new(Notify::new());
    let github = [
        ("X-Hub-Signature-256", format!("sha256={HEX}")),
        ("X-GitHub-Event", "push".into()),
    ];
    assert_eq!(post(&trigger, &github, PAYLOAD).await, StatusCode::ACCEPTED);
    assert!(was_triggered(&trigger).await);
    assert!(
        !was_triggered(&trigger).await,
        "one permit per notification"
    );

    let gitea = [("X-Gitea-Signature", HEX.to_owned())];
    assert_eq!(post(&trigger, &gitea, PAYLOAD).await, StatusCode::ACCEPTED);
    assert!(was_triggered(&trigger).await);

    // Gitea sends both headers; one valid is enough.
    let both = [
        ("X-Gitea-Signature", HEX.to_owned()),
        ("X-Hub-Signature-256", "sha256=00".into()),
    ];
    assert_eq!(post(&trigger, &both, PAYLOAD).await, StatusCode::ACCEPTED);
    assert!(was_triggered(&trigger).await);
}

#[tokio::test]
async fn bad_or_missing_signatures_are_refused_and_trigger_nothing() {
    let trigger = Arc::new(Notify::new());
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], PAYLOAD),
        (
            vec![("X-Hub-Signature-256", format!("sha256={HEX}"))],
            "Hello, World!!",
        ),
        (vec![("X-Hub-Signature-256", HEX.to_owned())], PAYLOAD),
        (vec![("X-Hub-Signature-256", "sha256=zz".into())], PAYLOAD),
        (
            vec![("X-Gitea-Signature", format!("{}0", &HEX[..63]))],
            PAYLOAD,
        ),
        (vec![("X-Gitea-Signature", String::new())], PAYLOAD),
        (vec![("X-Other-Signature", HEX.to_owned())], PAYLOAD),
    ];
    for (headers, body) in &cases {
        assert_eq!(
            post(&trigger, headers, body).await,
            StatusCode::UNAUTHORIZED,
            "{headers:?} {body:?}"
        );
    }
    assert!(!was_triggered(&trigger).await);

    let get = Request::get(WEBHOOK_PATH).body(Body::empty()).unwrap();
    let status = webhook_router(secret(), trigger.clone())
        .oneshot(get)
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
