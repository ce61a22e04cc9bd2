//! Prometheus metrics of the daemon, and the `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! [`Metrics`] is a cheap-to-clone handle on one registry; the daemon calls its setters as
//! things happen and a scrape renders the current values in the OpenMetrics text format.
//! Every metric is named `slipway_…` and carries a HELP text. Values that are names (a
//! commit, a node's phase, a mirror's state, the lock holder) are labels on a gauge whose
//! value is 1, with at most one such series per subject: setting a node's phase removes the
//! series of its previous phase.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `slipway_fetched_commit` | `commit` | last commit fetched (1) |
//! | `slipway_applied_commit` | `commit` | last commit whose plan was applied (1) |
//! | `slipway_plan_actions` | `action` | actions of each kind in the current plan |
//! | `slipway_node_phase` | `node`, `phase` | each node's rollout phase (1) |
//! | `slipway_node_facts_age_seconds` | `node` | age of the facts last read from the node |
//! | `slipway_mirror_state` | `artifact`, `state` | state of each mirrored artifact (1) |
//! | `slipway_fleet_lock_held` | | 1 while someone holds the reboot lock |
//! | `slipway_fleet_lock_holder` | `holder` | who holds it (1), absent when free |
//! | `slipway_errors_total` | `kind` | errors by kind |
//! | `slipway_maintenance_window_open` | | 1 while a maintenance window is open |
//! | `slipway_suspended` | | 1 while reconciliation is suspended |
//!
//! Nothing secret is ever handed to these setters; labels are commit ids, node names,
//! phases, artifact names and FleetLock client ids.
//!
//! Not here: deciding the values (the daemon does), and binding a socket.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabel {
    commit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodePhaseLabels {
    node: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    artifact: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HolderLabel {
    holder: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// The last value of each one-series-per-subject metric, to remove its series on change.
#[derive(Default)]
struct Last {
    fetched: Option<String>,
    applied: Option<String>,
    phases: HashMap<String, String>,
    mirrors: HashMap<String, String>,
    holder: Option<String>,
}

struct Inner {
    registry: Registry,
    fetched_commit: Family<CommitLabel, Gauge>,
    applied_commit: Family<CommitLabel, Gauge>,
    plan_actions: Family<ActionLabel, Gauge>,
    node_phase: Family<NodePhaseLabels, Gauge>,
    facts_age: Family<NodeLabel, Gauge<f64, AtomicU64>>,
    mirror_state: Family<MirrorLabels, Gauge>,
    lock_held: Gauge,
    lock_holder: Family<HolderLabel, Gauge>,
    errors: Family<KindLabel, Counter>,
    window_open: Gauge,
    suspended: Gauge,
    last: Mutex<Last>,
}

/// The daemon's metrics. Clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric declared (and the gauges at 0).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("slipway");
        let fetched_commit = Family::<CommitLabel, Gauge>::default();
        let applied_commit = Family::<CommitLabel, Gauge>::default();
        let plan_actions = Family::<ActionLabel, Gauge>::default();
        let node_phase = Family::<NodePhaseLabels, Gauge>::default();
        let facts_age = Family::<NodeLabel, Gauge<f64, AtomicU64>>::default();
        let mirror_state = Family::<MirrorLabels, Gauge>::default();
        let lock_held = Gauge::default();
        let lock_holder = Family::<HolderLabel, Gauge>::default();
        let errors = Family::<KindLabel, Counter>::default();
        let window_open = Gauge::default();
        let suspended = Gauge::default();
        registry.register(
            "fetched_commit",
            "The last commit fetched from the cluster repository (value 1).",
            fetched_commit.clone(),
        );
        registry.register(
            "applied_commit",
            "The last commit whose plan was applied to the fleet (value 1).",
            applied_commit.clone(),
        );
        registry.register(
            "plan_actions",
            "Actions of each kind in the current plan.",
            plan_actions.clone(),
        );
        registry.register(
            "node_phase",
            "The rollout phase of each node (value 1, one series per node).",
            node_phase.clone(),
        );
        registry.register_with_unit(
            "node_facts_age",
            "Age of the facts last read from each node over SSH.",
            Unit::Seconds,
            facts_age.clone(),
        );
        registry.register(
            "mirror_state",
            "State of each mirrored release artifact (value 1, one series per artifact).",
            mirror_state.clone(),
        );
        registry.register(
            "fleet_lock_held",
            "1 while a node or a rollout holds the reboot lock, else 0.",
            lock_held.clone(),
        );
        registry.register(
            "fleet_lock_holder",
            "Who holds the reboot lock (value 1; no series while it is free).",
            lock_holder.clone(),
        );
        registry.register("errors", "Errors by kind.", errors.clone());
        registry.register(
            "maintenance_window_open",
            "1 while a maintenance window is open, else 0.",
            window_open.clone(),
        );
        registry.register(
            "suspended",
            "1 while reconciliation is suspended, else 0.",
            suspended.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                fetched_commit,
                applied_commit,
                plan_actions,
                node_phase,
                facts_age,
                mirror_state,
                lock_held,
                lock_holder,
                errors,
                window_open,
                suspended,
                last: Mutex::new(Last::default()),
            }),
        }
    }

    fn last(&self) -> MutexGuard<'_, Last> {
        // The maps only mirror which series exist; a poisoned lock is still usable.
        self.inner
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The commit last fetched from the repository.
    pub fn set_fetched_commit(&self, commit: &str) {
        let mut last = self.last();
        replace_commit(
            &self.inner.fetched_commit,
            &mut last.fetched,
            &label(commit),
        );
    }

    /// The commit whose plan was last applied.
    pub fn set_applied_commit(&self, commit: &str) {
        let mut last = self.last();
        replace_commit(
            &self.inner.applied_commit,
            &mut last.applied,
            &label(commit),
        );
    }

    /// The current plan's actions, `(action name, count)`. Actions not listed lose their
    /// series; list an action with 0 to keep it visible.
    pub fn set_plan_counts(&self, counts: &[(&str, u64)]) {
        let _serialised = self.last();
        self.inner.plan_actions.clear();
        for (action, count) in counts {
            self.inner
                .plan_actions
                .get_or_create(&ActionLabel {
                    action: label(action),
                })
                .set(saturating_i64(*count));
        }
    }

    /// `node` is now in `phase`; its previous phase's series is removed.
    pub fn set_node_phase(&self, node: &str, phase: &str) {
        let (node, phase) = (&label(node), &label(phase));
        let mut last = self.last();
        if let Some(old) = last.phases.insert(node.to_owned(), phase.to_owned()) {
            self.inner.node_phase.remove(&NodePhaseLabels {
                node: node.to_owned(),
                phase: old,
            });
        }
        self.inner
            .node_phase
            .get_or_create(&NodePhaseLabels {
                node: node.to_owned(),
                phase: phase.to_owned(),
            })
            .set(1);
    }

    /// The age, in seconds, of the facts last read from `node`.
    pub fn set_facts_age(&self, node: &str, seconds: f64) {
        self.inner
            .facts_age
            .get_or_create(&NodeLabel { node: label(node) })
            .set(seconds);
    }

    /// Drop every per-node series of `node` (it left the inventory).
    pub fn forget_node(&self, node: &str) {
        let node = &label(node);
        let mut last = self.last();
        if let Some(old) = last.phases.remove(node) {
            self.inner.node_phase.remove(&NodePhaseLabels {
                node: node.to_owned(),
                phase: old,
            });
        }
        self.inner.facts_age.remove(&NodeLabel {
            node: node.to_owned(),
        });
    }

    /// The state of a mirrored artifact, e.g. `("fcos 41.20250105.3.0", "ok")`; its
    /// previous state's series is removed.
    pub fn set_mirror_state(&self, what: &str, state: &str) {
        let (what, state) = (&label(what), &label(state));
        let mut last = self.last();
        if let Some(old) = last.mirrors.insert(what.to_owned(), state.to_owned()) {
            self.inner.mirror_state.remove(&MirrorLabels {
                artifact: what.to_owned(),
                state: old,
            });
        }
        self.inner
            .mirror_state
            .get_or_create(&MirrorLabels {
                artifact: what.to_owned(),
                state: state.to_owned(),
            })
            .set(1);
    }

    /// Who holds the reboot lock (a FleetLock client id or the rollout's), or nobody.
    pub fn set_lock_holder(&self, holder: Option<&str>) {
        let mut last = self.last();
        if let Some(old) = last.holder.take() {
            self.inner.lock_holder.remove(&HolderLabel { holder: old });
        }
        match holder.map(label) {
            Some(h) => {
                self.inner
                    .lock_holder
                    .get_or_create(&HolderLabel { holder: h.clone() })
                    .set(1);
                self.inner.lock_held.set(1);
                last.holder = Some(h);
            }
            None => {
                self.inner.lock_held.set(0);
            }
        }
    }

    /// Count one error of `kind` (a small fixed vocabulary, e.g. `fetch`, `ssh`, `mirror`).
    pub fn inc_error(&self, kind: &str) {
        self.inner
            .errors
            .get_or_create(&KindLabel { kind: label(kind) })
            .inc();
    }

    /// Whether a maintenance window is open now.
    pub fn set_window_open(&self, open: bool) {
        self.inner.window_open.set(i64::from(open));
    }

    /// Whether reconciliation is suspended.
    pub fn set_suspended(&self, suspended: bool) {
        self.inner.suspended.set(i64::from(suspended));
    }

    /// The OpenMetrics text exposition, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            // Writing into a String does not fail; if the encoder ever does, say so.
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

fn replace_commit(family: &Family<CommitLabel, Gauge>, last: &mut Option<String>, commit: &str) {
    if let Some(old) = last.take() {
        family.remove(&CommitLabel { commit: old });
    }
    family
        .get_or_create(&CommitLabel {
            commit: commit.to_owned(),
        })
        .set(1);
    *last = Some(commit.to_owned());
}

/// A label value as the exposition needs it: prometheus-client 0.23 writes label values
/// verbatim, so `\`, `"` and line feeds are escaped here (OpenMetrics' three escapes).
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct Api {
    metrics: Metrics,
    ready: Ready,
}

/// `GET /metrics` (OpenMetrics text), `GET /healthz` (200 `ok` while the process serves),
/// `GET /readyz` (200 `ready` when `ready()` says so, else 503 `not ready`).
pub fn router(metrics: Metrics, ready: impl Fn() -> bool + Send + Sync + 'static) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Api {
            metrics,
            ready: Arc::new(ready),
        })
}

async fn scrape(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        api.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(api): State<Api>) -> Response {
    if (api.ready)() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
