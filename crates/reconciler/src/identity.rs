//! Loading the age identity that decrypts secrets.

use std::path::Path;

use anyhow::{Context, Result};
use slipway_model::secrets::Identities;

/// Load the identity file, if one was given (`--identity` or `SLIPWAY_AGE_IDENTITY`).
pub fn load(path: Option<&Path>) -> Result<Option<Identities>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading identity {}", path.display()))?;
    let ids =
        Identities::parse(&text).with_context(|| format!("reading identity {}", path.display()))?;
    Ok(Some(ids))
}

/// Load the identity, failing when none was given.
pub fn require(path: Option<&Path>) -> Result<Identities> {
    load(path)?.context("this needs the age identity that decrypts secrets: pass --identity FILE or set SLIPWAY_AGE_IDENTITY")
}
