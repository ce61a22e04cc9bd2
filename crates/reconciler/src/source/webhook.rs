//! `POST /hooks/git`: a forge tells Slipway the repository changed, so it fetches now
//! instead of at the next poll.
//!
//! The request is authenticated by an HMAC-SHA256 of the raw body with a shared secret:
//! GitHub's `X-Hub-Signature-256: sha256=<hex>` or Gitea's `X-Gitea-Signature: <hex>`
//! (Gitea also sends the GitHub header). Comparison is constant-time. The webhook only
//! *triggers* a fetch: what is fetched is still verified commit by commit, so a leaked
//! webhook secret can at worst make Slipway poll more often.
//!
//! Neither the secret nor the body is ever logged. Bodies are capped by axum's default
//! limit (2 MiB), plenty for push events; larger ones are answered 413.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use zeroize::Zeroizing;

use super::error::SourceError;

/// The path the router serves.
pub const WEBHOOK_PATH: &str = "/hooks/git";

const GITHUB_HEADER: &str = "x-hub-signature-256";
const GITEA_HEADER: &str = "x-gitea-signature";

/// The shared webhook secret. `Debug` never shows it; it is zeroed on drop.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// A secret from its bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// Read the secret from a file; surrounding whitespace (a trailing newline) is dropped.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let raw =
            Zeroizing::new(std::fs::read(path).map_err(|e| SourceError::io("reading", path, e))?);
        let text = raw.trim_ascii();
        if text.is_empty() {
            return Err(SourceError::Credentials {
                remote: "the webhook".into(),
                why: format!("secret file {} is empty", path.display()),
            });
        }
        Ok(Self::new(text.to_vec()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: this cannot fail.
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    fn verify_hex(&self, body: &[u8], hex_sig: &str) -> bool {
        let Ok(sig) = hex::decode(hex_sig.trim()) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Check a GitHub `X-Hub-Signature-256` header value (`sha256=<hex>`) against `body`.
pub fn verify_github(secret: &WebhookSecret, body: &[u8], header: &str) -> bool {
    header
        .trim()
        .strip_prefix("sha256=")
        .is_some_and(|hex_sig| secret.verify_hex(body, hex_sig))
}

/// Check a Gitea `X-Gitea-Signature` header value (bare hex) against `body`.
pub fn verify_gitea(secret: &WebhookSecret, body: &[u8], header: &str) -> bool {
    secret.verify_hex(body, header)
}

/// Why a webhook request was turned away (answered 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    /// Neither signature header was sent.
    #[error("no X-Hub-Signature-256 or X-Gitea-Signature header")]
    MissingSignature,
    /// A signature header was sent but does not match the body and the secret.
    #[error("the signature does not match")]
    BadSignature,
}

/// Which forge's header authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookSender {
    /// `X-Hub-Signature-256` (GitHub, and Gitea/Forgejo's compatible header).
    GitHub,
    /// `X-Gitea-Signature`.
    Gitea,
}

/// Authenticate a webhook request from its headers and raw body: any present signature
/// header that verifies is enough.
pub fn verify_request(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<WebhookSender, WebhookRejection> {
    let github = headers.get(GITHUB_HEADER).map(|v| v.to_str().unwrap_or(""));
    let gitea = headers.get(GITEA_HEADER).map(|v| v.to_str().unwrap_or(""));
    if github.is_none() && gitea.is_none() {
        return Err(WebhookRejection::MissingSignature);
    }
    if github.is_some_and(|h| verify_github(secret, body, h)) {
        return Ok(WebhookSender::GitHub);
    }
    if gitea.is_some_and(|h| verify_gitea(secret, body, h)) {
        return Ok(WebhookSender::Gitea);
    }
    Err(WebhookRejection::BadSignature)
}

struct HookState {
    secret: WebhookSecret,
    trigger: Arc<Notify>,
}

/// A router serving `POST /hooks/git`: a valid signature answers 202 Accepted and calls
/// `trigger.notify_one()` (a fetch loop waits on it; several hooks before it wakes make
/// one fetch); a bad or missing one answers 401. Mount it with `Router::merge`.
pub fn webhook_router(secret: WebhookSecret, trigger: Arc<Notify>) -> Router {
    let state = Arc::new(HookState { secret, trigger });
    Router::new()
        .route(WEBHOOK_PATH, post(handle))
        .with_state(state)
}

async fn handle(
    State(state): State<Arc<HookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    match verify_request(&state.secret, &headers, &body) {
        Ok(sender) => {
            tracing::info!(
                ?sender,
                bytes = body.len(),
                "webhook accepted; fetching now"
            );
            state.trigger.notify_one();
            (StatusCode::ACCEPTED, "fetch scheduled\n")
        }
        Err(why) => {
            tracing::warn!(reason = %why, "webhook refused");
            (StatusCode::UNAUTHORIZED, "invalid or missing signature\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows_in_debug() {
        let s = WebhookSecret::new("It's a Secret to Everybody");
        assert!(!format!("{s:?}").contains("Secret to"));
    }

    #[test]
    fn signatures_must_be_exact_hex_of_the_right_length() {
        let s = WebhookSecret::new("k");
        let mut mac = s.mac();
        mac.update(b"body");
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(verify_gitea(&s, b"body", &good));
        assert!(verify_gitea(&s, b"body", &good.to_uppercase()));
        assert!(!verify_gitea(&s, b"body", &good[..62]));
        assert!(!verify_gitea(&s, b"body", "zz"));
        assert!(!verify_gitea(&s, b"body", ""));
        assert!(
            !verify_github(&s, b"body", &good),
            "GitHub's header needs sha256="
        );
        assert!(verify_github(&s, b"body", &format!("sha256={good}")));
        assert!(!verify_github(&s, b"body2", &format!("sha256={good}")));
    }
}
