//! Slipway's vocabulary: the inventory an operator keeps in Git (desired state), the facts
//! observed on nodes (actual state), and their validation.
//!
//! This crate is pure: no sockets, processes, clock or filesystem access. Loading reads
//! from an in-memory [`repo::RepoFiles`] snapshot that the binary fills from disk or git.
//! Everything else in Slipway depends on it; it depends on nothing of Slipway's.
//!
//! Validation goes in stages: [`yaml`] turns text into raw serde types with positions, and
//! [`inventory::load`] checks each file and the cross-file rules, reporting every problem
//! as a [`diag::Diagnostic`] with `FILE:LINE:COLUMN` and a hint.

pub mod check;
pub mod diag;
pub mod facts;
pub mod inventory;
pub mod net;
pub mod repo;
pub mod secrets;
pub mod yaml;
