//! How a rollout shows its progress: a bar per node on a terminal (indicatif), plain log
//! lines otherwise. Both also emit tracing events.

use std::collections::BTreeMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::steps::Step;

/// Receives the executor's progress.
pub trait Progress: Sync {
    /// A step started (`done` of `total` finished before it).
    fn step_started(&self, node: &str, step: Step, done: usize, total: usize);
    /// A step finished.
    fn step_done(&self, node: &str, step: Step, done: usize, total: usize);
    /// A step failed.
    fn step_failed(&self, node: &str, step: Step, message: &str);
    /// Something worth saying.
    fn note(&self, node: &str, message: &str);
}

/// One line per event on stderr (`slipway: <node>: <step>: <what>`).
#[derive(Debug, Default)]
pub struct Lines;

impl Progress for Lines {
    fn step_started(&self, node: &str, step: Step, done: usize, total: usize) {
        tracing::info!(node, %step, "step started");
        eprintln!("slipway: {node}: [{}/{total}] {step}", done + 1);
    }
    fn step_done(&self, node: &str, step: Step, _done: usize, _total: usize) {
        tracing::info!(node, %step, "step done");
    }
    fn step_failed(&self, node: &str, step: Step, message: &str) {
        tracing::error!(node, %step, message, "step failed");
        eprintln!("slipway: {node}: {step} FAILED: {message}");
    }
    fn note(&self, node: &str, message: &str) {
        tracing::info!(node, message);
        eprintln!("slipway: {node}: {message}");
    }
}

/// A bar per node.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars on stderr.
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    fn bar(&self, node: &str, total: usize) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(node.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(total as u64));
                b.set_style(
                    ProgressStyle::with_template("{prefix:>12} [{bar:20}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_prefix(node.to_string());
                b
            })
            .clone()
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Progress for Bars {
    fn step_started(&self, node: &str, step: Step, done: usize, total: usize) {
        tracing::info!(node, %step, "step started");
        let b = self.bar(node, total);
        b.set_position(done as u64);
        b.set_message(step.name());
    }
    fn step_done(&self, node: &str, step: Step, done: usize, total: usize) {
        tracing::info!(node, %step, "step done");
        let b = self.bar(node, total);
        b.set_position(done as u64);
        if done == total {
            b.finish_with_message("done");
        }
    }
    fn step_failed(&self, node: &str, step: Step, message: &str) {
        tracing::error!(node, %step, message, "step failed");
        let b = self.bar(node, 1);
        b.abandon_with_message(format!("{step} FAILED: {message}"));
    }
    fn note(&self, node: &str, message: &str) {
        tracing::info!(node, message);
        let b = self.bar(node, 1);
        let step = b.message();
        let base = step.split(" — ").next().unwrap_or("").to_string();
        b.set_message(format!("{base} — {message}"));
    }
}
