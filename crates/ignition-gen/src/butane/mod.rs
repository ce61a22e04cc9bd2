//! Butane (`variant: fcos`, versions 1.0.0 to 1.6.0) to Ignition.
//!
//! Stages: the YAML is loaded into one superset schema ([`schema`]) by the model crate's
//! loader, which reports every unknown key and bad value with its location; then keys the
//! declared version lacks are rejected; then the config is translated and checked the way
//! Butane does it (base translation, generated mount units, trees, `boot_device`, `grub`),
//! and the output is validated with the Ignition rules that matter for Slipway.

mod dataurl;
pub mod goflate;
pub mod scalars;
pub mod schema;
mod systemd;
mod translate;
mod version;

pub use dataurl::{escape as data_url_escape, make_data_url, DataUrl};
pub use systemd::{mount_unit, path_escape, MountUnitInput};
pub use translate::{translate, TranslateOptions, Translation};
pub use version::ButaneVersion;
