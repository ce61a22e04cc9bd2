//! `slipway serve`: the building blocks of the unattended daemon.
//!
//! Each submodule is one self-contained part the daemon loop calls; none of them runs a loop,
//! reads a clock it was not handed, or knows about the others:
//!
//! - [`window`]: is a maintenance window open for a role at a given instant, and until when
//!   (pure: `now` is an argument).
//! - [`fleetlock`]: the one reboot lock shared by Slipway's own rollouts and by nodes that
//!   keep Zincati, persisted in the state folder, and the FleetLock HTTP endpoints
//!   (`POST /v1/pre-reboot`, `POST /v1/steady-state`) that hand it to Zincati.
//! - [`metrics`]: the Prometheus registry the daemon updates and the `/metrics`, `/healthz`
//!   and `/readyz` endpoints.
//! - [`config`]: the `slipway serve --config FILE` TOML, validated with FILE:LINE:COLUMN
//!   errors; secrets are only ever referenced by file path.
//!
//! What this module deliberately does not do: plan, roll out, fetch git, or bind sockets.
//! The daemon (the caller) owns the loop, the listeners and the clock; the routers here are
//! plain [`axum::Router`]s it mounts on its API listener.

pub mod config;
pub mod daemon;
pub mod fleetlock;
pub mod metrics;
pub mod window;

use std::path::PathBuf;

use slipway_model::diag::Diagnostic;

use self::fleetlock::Holder;

/// What can go wrong in the daemon's building blocks.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A maintenance window names a time zone the IANA database does not know.
    #[error(
        "maintenance window time zone {zone:?} is not a known IANA time zone \
         (write it like Europe/Paris or UTC)"
    )]
    UnknownTimeZone {
        /// The zone as written.
        zone: String,
    },
    /// The reboot lock is held by someone else.
    #[error("the reboot lock is held by {0}")]
    LockHeld(Box<Holder>),
    /// The persisted reboot-lock file cannot be understood.
    #[error(
        "reboot lock file {} is corrupt ({why}); inspect it, then delete it to release the \
         lock",
        path.display()
    )]
    CorruptLockFile {
        /// The lock file.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },
    /// The serve configuration file is invalid (location, message and hint inside).
    #[error("{0}")]
    Config(Box<Diagnostic>),
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"reading"`.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ServeError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
