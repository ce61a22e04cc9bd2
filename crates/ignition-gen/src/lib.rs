//! Ignition generation for Slipway: Butane → Ignition translation and Ignition config merging.
//!
//! - [`butane::translate`] turns a Butane config (`variant: fcos`, versions 1.0.0 to 1.6.0)
//!   into a typed [`ignition::Config`] of the Ignition spec that version maps to (1.4.0 →
//!   3.3.0, Slipway's default), reporting every problem with `FILE:LINE:COLUMN`. The JSON it
//!   prints ([`ignition::Config::to_json`]) is byte-for-byte what Butane prints, field order
//!   and empty-field omission included, gzip-compressed data URLs too (Go's
//!   `BestCompression` gzip as Go 1.7 to 1.26 write it, see [`butane::goflate`]).
//! - [`merge::merge`] layers Ignition configs (cluster overlays, role, node, generated
//!   profile) with Ignition's own merge rules and names both layers of any conflict.
//! - [`butane_cli`] is the whole `slipway butane` command minus its I/O.
//!
//! What this crate deliberately does not do: no filesystem, network, clock or process access.
//! Local files referenced by a Butane config (`local:`, `contents_local`,
//! `ssh_authorized_keys_local`, `trees`) come through the [`files::FileSource`] trait; the
//! binary backs it with the `--files-dir` directory. It depends only on `slipway-model`
//! (never on pxe-publisher or node-ssh), and it does not fetch or validate remote resources.

pub mod butane;
mod error;
pub mod files;
pub mod ignition;
mod json;
pub mod merge;
pub mod profile;

pub use error::Error;

use slipway_model::diag::Diagnostic;

/// Everything `slipway butane [--strict] [--pretty] [--files-dir DIR] [FILE]` does except
/// reading the input and files and writing the output: translate `text` (named `file` in
/// messages) and render it. On success returns the Ignition JSON (no trailing newline) and any
/// warnings; on failure every error and warning.
pub fn butane_cli(
    file: &str,
    text: &str,
    opts: &butane::TranslateOptions,
    pretty: bool,
    files: &dyn files::FileSource,
) -> Result<(String, Vec<Diagnostic>), Vec<Diagnostic>> {
    let t = butane::translate(file, text, opts, files)?;
    let json = t.to_json(pretty);
    Ok((json, t.warnings))
}
