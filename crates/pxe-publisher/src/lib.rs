//! # slipway-pxe-publisher: Slipway's boot edge
//!
//! What this crate is for:
//!
//! * **Generations** ([`Publisher`]): renders per-MAC iPXE scripts and a
//!   manifest for one cluster commit into `generations/<id>`, fsyncs, and
//!   switches the `current` symlink atomically; keeps the previous N and can
//!   roll back. A failed publish leaves the previous generation serving.
//! * **Boot state** ([`ServerState`]): the caller arms a node with a one-shot
//!   token ([`ServerState::arm`]); its MACs then get the FCOS install script.
//!   Fetching the Ignition with the token drops the node back to localboot by
//!   itself and emits [`BootEvent::IgnitionFetched`].
//! * **HTTP server** ([`serve`]): `/boot.ipxe`, `/ipxe?mac=`,
//!   `/ignition/<node>?token=`, `/artifacts/<sha256>/<name>` (Range, HEAD,
//!   ETag, streamed), `/healthz`.
//! * **Artifact mirror** ([`mirror`]): parses FCOS stream metadata, downloads
//!   FCOS and K3s artifacts into the content-addressed store with sha256
//!   verification, resume and bounded retries.
//!
//! What it deliberately does not do:
//!
//! * It never writes an Ignition config (or anything secret) to disk: the
//!   manifest records only digests; the bytes live in memory
//!   ([`SecretIgnition`]) and the reconciler hands them in again after a
//!   restart. Tokens are never stored either: only their hash and a nonce.
//! * It does not render Ignition, read inventories, talk SSH or decide *when*
//!   a node reinstalls: the reconciler converts inventory + rendered
//!   Ignition into [`GenerationInput`] and calls [`ServerState::arm`].
//! * It never identifies a node by source address or `Host` header, only by
//!   the MAC in the URL (iPXE sends no MAC header).
//! * It does not verify FCOS GPG signatures: it mirrors the `.sig` file next
//!   to the metal image so coreos-installer can check it; without one the
//!   install line carries `coreos.inst.insecure` and
//!   [`ArtifactSet::metal_image_insecure`] says so.
//! * It does not upload generations anywhere: [`Publisher::generation_dir`]
//!   and [`Generation::files`] let the caller export them, and
//!   [`static_site`] lays a generation out for a plain remote web server
//!   (the reconciler uploads it over SFTP); Ignition is part of that site
//!   only when the caller hands it in explicitly.
//!
//! Pure parts (script rendering in [`ipxe`], [`generation::render_generation`],
//! token bookkeeping, stream parsing in [`mirror::parse_stream`]) do no I/O.
//!
//! ## Testing
//!
//! * Unit tests: rendering, MAC/digest parsing, token rules, generations.
//! * `tests/server.rs`, `tests/mirror.rs`: real HTTP over 127.0.0.1.
//! * `tests/e2e_qemu.rs`: Debian's iPXE ROM in QEMU (TCG) boots through the
//!   server; `tests/e2e/prepare-tools.sh` unpacks QEMU, SeaBIOS, iPXE and a
//!   Debian kernel into a cache (`$SLIPWAY_E2E_CACHE`, else
//!   `$XDG_CACHE_HOME/slipway-pxe-e2e`, else `~/.cache/slipway-pxe-e2e`) with
//!   `apt-get download` + `dpkg -x`. Needs `busybox-static` installed and
//!   `apt-get` access; fails loudly otherwise.
//! * `benches/serve.rs` (`cargo bench`): wrk against this server and nginx.

mod boot;
mod error;
pub mod generation;
pub mod ipxe;
pub mod mirror;
mod server;
pub mod site;
mod types;

#[cfg(test)]
mod test_support;

pub use boot::{
    BootEvent, Clock, ManualClock, NodeBootStatus, RefusalReason, ScriptKind, SystemClock, Token,
    DEFAULT_TOKEN_TTL,
};
pub use error::{PublishError, Result};
pub use generation::{Generation, GenerationId, Manifest, ManifestNode, Publisher};
pub use server::{serve, ServerState, MAX_URI_LEN};
pub use site::{static_site, SiteFile};
pub use types::{
    is_safe_artifact_name, ArtifactRef, ArtifactSet, BaseUrl, GenerationInput, MacAddr, NodeInput,
    NodeRole, SecretIgnition, Sha256Digest, UnknownMacPolicy,
};
