//! Slipway's outer layer: the `slipway` binary's commands, and the parts that talk to the
//! world (git, disk, terminal). The planning core (`plan`) is pure: the plan is a function
//! of (desired, actual), tested without any I/O.
//!
//! `main.rs` only parses arguments and dispatches into these modules.

pub mod artifacts;
pub mod boot_cmd;
pub mod butane_cmd;
pub mod cmdline;
pub mod demo;
pub mod desired;
pub mod facts_cmd;
pub mod identity;
pub mod lab;
pub mod mirror_cmd;
pub mod plan;
pub mod reconcile_cmd;
pub mod remote_publish;
pub mod repo_fs;
pub mod rollout;
pub mod secrets_cmd;
pub mod serve;
pub mod sim_cmd;
pub mod source;
pub mod validate;
