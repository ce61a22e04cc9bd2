//! Per-node boot state, in memory, decided by the caller.
//!
//! A node is either at rest (its MACs get localboot) or *armed* with a
//! one-shot token (its MACs get the install script). The token is random
//! (256 bits), bound to one node, expires, and works once; only its SHA-256
//! is stored. When the node fetches its Ignition with the token it drops
//! back to localboot by itself, so firmware that always netboots never
//! reinstalls in a loop.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;
use zeroize::{Zeroize as _, Zeroizing};

use crate::types::{MacAddr, Sha256Digest};

/// Default lifetime of an install token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// A one-shot install token (URL-safe base64 of a 256-bit HMAC output).
///
/// `Debug` prints `(sensitive)`; the string is zeroized on drop.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// Derives the token for `node` from the server key and a per-arm nonce:
    /// `base64url(HMAC-SHA256(key, node || 0x00 || nonce))`. The server keeps
    /// only the nonce and the token's hash; it can re-derive the token to put
    /// it into the install script, but the token itself is never stored.
    pub(crate) fn derive(key: &TokenKey, node: &str, nonce: &[u8; 16]) -> Self {
        use hmac::Mac as _;
        let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key.0.as_ref()) {
            Ok(m) => m,
            // HMAC accepts keys of any length; this arm cannot be taken.
            Err(_) => return Token(Zeroizing::new(String::new())),
        };
        mac.update(node.as_bytes());
        mac.update(&[0]);
        mac.update(nonce);
        let mut raw: Zeroizing<[u8; 32]> = Zeroizing::new(mac.finalize().into_bytes().into());
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref());
        raw.zeroize();
        Token(Zeroizing::new(text))
    }

    /// The token text, for building the install URL. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn hash_of(text: &str) -> Sha256Digest {
        Sha256Digest::of(text.as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// The server's in-memory token key (256 random bits, zeroized on drop).
/// A restart makes a new key, which invalidates every outstanding token.
pub(crate) struct TokenKey(Zeroizing<[u8; 32]>);

impl TokenKey {
    pub(crate) fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        TokenKey(k)
    }
}

pub(crate) fn new_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// A monotonic clock; injectable so expiry is tested without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// What the server reports to whoever waits on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootEvent {
    /// `arm` was called.
    Armed {
        /// Node name.
        node: String,
    },
    /// `disarm` was called while armed.
    Disarmed {
        /// Node name.
        node: String,
    },
    /// A script was served to a MAC.
    ScriptServed {
        /// Node owning the MAC, `None` for unknown MACs.
        node: Option<String>,
        /// The MAC.
        mac: MacAddr,
        /// Which script.
        script: ScriptKind,
    },
    /// The node fetched its Ignition with a valid token; it is back at
    /// localboot.
    IgnitionFetched {
        /// Node name.
        node: String,
    },
    /// An Ignition request was refused.
    IgnitionRefused {
        /// Node name in the URL.
        node: String,
        /// Why.
        reason: RefusalReason,
    },
}

/// Which script a MAC was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptKind {
    /// The FCOS install script.
    Install,
    /// Exit to the local disk.
    Localboot,
    /// The unknown-MAC policy's script (localboot or a named script).
    UnknownMac,
}

/// Why an Ignition request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The node is not armed (never armed, disarmed, or already fetched).
    NotArmed,
    /// The token is not the one issued for this node.
    WrongToken,
    /// The token's lifetime ran out.
    Expired,
    /// The token was already used.
    AlreadyUsed,
    /// Node unknown to the active generation.
    UnknownNode,
    /// Token was right but the Ignition bytes are not in memory (restart
    /// without re-publish).
    IgnitionUnavailable,
}

/// Where a node stands, as a query answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeBootStatus {
    /// MACs get localboot; nothing pending.
    Localboot,
    /// MACs get the install script until `expires_at`.
    Armed {
        /// When the token stops working.
        expires_at: Instant,
    },
    /// The Ignition was fetched at `at`; MACs get localboot.
    IgnitionFetched {
        /// When.
        at: Instant,
    },
}

#[derive(Clone)]
pub(crate) enum Slot {
    Armed {
        token_hash: Sha256Digest,
        nonce: [u8; 16],
        expires_at: Instant,
    },
    Fetched {
        token_hash: Sha256Digest,
        at: Instant,
    },
}

/// Decision of [`BootTable::check_token`].
pub(crate) enum TokenCheck {
    Valid,
    Refused(RefusalReason),
}

/// Node name -> slot. Pure bookkeeping; the server wraps it in a mutex.
#[derive(Default)]
pub(crate) struct BootTable {
    slots: HashMap<String, Slot>,
}

impl BootTable {
    pub(crate) fn arm(&mut self, node: &str, token: &Token, nonce: [u8; 16], expires_at: Instant) {
        self.slots.insert(
            node.to_string(),
            Slot::Armed {
                token_hash: Token::hash_of(token.expose()),
                nonce,
                expires_at,
            },
        );
    }

    /// The nonce to re-derive the node's token, while armed and unexpired.
    pub(crate) fn armed_nonce(&self, node: &str, now: Instant) -> Option<[u8; 16]> {
        match self.slots.get(node) {
            Some(Slot::Armed {
                nonce, expires_at, ..
            }) if now < *expires_at => Some(*nonce),
            _ => None,
        }
    }

    /// Returns whether the node was armed.
    pub(crate) fn disarm(&mut self, node: &str) -> bool {
        matches!(self.slots.remove(node), Some(Slot::Armed { .. }))
    }

    #[cfg(test)]
    pub(crate) fn is_armed(&self, node: &str, now: Instant) -> bool {
        matches!(self.slots.get(node), Some(Slot::Armed { expires_at, .. }) if now < *expires_at)
    }

    pub(crate) fn status(&self, node: &str, now: Instant) -> NodeBootStatus {
        match self.slots.get(node) {
            Some(Slot::Armed { expires_at, .. }) if now < *expires_at => NodeBootStatus::Armed {
                expires_at: *expires_at,
            },
            Some(Slot::Fetched { at, .. }) => NodeBootStatus::IgnitionFetched { at: *at },
            _ => NodeBootStatus::Localboot,
        }
    }

    /// Checks `token` for `node` without consuming it.
    pub(crate) fn check_token(&self, node: &str, token: &str, now: Instant) -> TokenCheck {
        let presented = Token::hash_of(token);
        match self.slots.get(node) {
            None => TokenCheck::Refused(RefusalReason::NotArmed),
            Some(Slot::Fetched { token_hash, .. }) => {
                if ct_eq(token_hash, &presented) {
                    TokenCheck::Refused(RefusalReason::AlreadyUsed)
                } else {
                    TokenCheck::Refused(RefusalReason::NotArmed)
                }
            }
            Some(Slot::Armed {
                token_hash,
                expires_at,
                ..
            }) => {
                if !ct_eq(token_hash, &presented) {
                    TokenCheck::Refused(RefusalReason::WrongToken)
                } else if now >= *expires_at {
                    TokenCheck::Refused(RefusalReason::Expired)
                } else {
                    TokenCheck::Valid
                }
            }
        }
    }

    /// Marks the node's token used: back to localboot.
    pub(crate) fn consume(&mut self, node: &str, now: Instant) {
        if let Some(Slot::Armed { token_hash, .. }) = self.slots.get(node).cloned() {
            self.slots.insert(
                node.to_string(),
                Slot::Fetched {
                    token_hash,
                    at: now,
                },
            );
        }
    }

    /// Drops nodes not in `keep`.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.slots.retain(|n, _| keep(n));
    }
}

fn ct_eq(a: &Sha256Digest, b: &Sha256Digest) -> bool {
    a.as_bytes()
        .iter()
        .zip(b.as_bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A clock a test can move forward by hand.
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    offset: Arc<std::sync::Mutex<Duration>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            base: Instant::now(),
            offset: Arc::default(),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut o = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *o += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn token(node: &str) -> (Token, [u8; 16]) {
        let key = TokenKey::generate();
        let nonce = new_nonce();
        (Token::derive(&key, node, &nonce), nonce)
    }

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let key = TokenKey::generate();
        let n1 = new_nonce();
        let a = Token::derive(&key, "w1", &n1);
        let b = Token::derive(&key, "w1", &new_nonce());
        let c = Token::derive(&key, "w2", &n1);
        let a_again = Token::derive(&key, "w1", &n1);
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
        assert_eq!(a.expose(), a_again.expose());
        assert_eq!(a.expose().len(), 43); // 256 bits, base64url without padding
        assert!(a
            .expose()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(format!("{a:?}"), "(sensitive)");
    }

    #[test]
    fn token_works_once_for_its_node_until_expiry() {
        let clock = ManualClock::default();
        let mut t = BootTable::default();
        let (tok, nonce) = token("w1");
        let t0 = clock.now();
        t.arm("w1", &tok, nonce, t0 + Duration::from_secs(60));
        assert_eq!(t.armed_nonce("w1", t0), Some(nonce));
        assert!(t.is_armed("w1", t0));
        assert!(matches!(
            t.check_token("w2", tok.expose(), t0),
            TokenCheck::Refused(RefusalReason::NotArmed)
        ));
        assert!(matches!(
            t.check_token("w1", "nope", t0),
            TokenCheck::Refused(RefusalReason::WrongToken)
        ));
        assert!(matches!(
            t.check_token("w1", tok.expose(), t0),
            TokenCheck::Valid
        ));
        t.consume("w1", t0);
        assert!(!t.is_armed("w1", t0));
        assert_eq!(
            t.status("w1", t0),
            NodeBootStatus::IgnitionFetched { at: t0 }
        );
        assert!(matches!(
            t.check_token("w1", tok.expose(), t0),
            TokenCheck::Refused(RefusalReason::AlreadyUsed)
        ));
    }

    #[test]
    fn expired_token_is_refused_and_node_falls_back() {
        let clock = ManualClock::default();
        let mut t = BootTable::default();
        let (tok, nonce) = token("w1");
        t.arm("w1", &tok, nonce, clock.now() + Duration::from_secs(10));
        clock.advance(Duration::from_secs(10));
        assert!(!t.is_armed("w1", clock.now()));
        assert_eq!(t.armed_nonce("w1", clock.now()), None);
        assert_eq!(t.status("w1", clock.now()), NodeBootStatus::Localboot);
        assert!(matches!(
            t.check_token("w1", tok.expose(), clock.now()),
            TokenCheck::Refused(RefusalReason::Expired)
        ));
    }
}
