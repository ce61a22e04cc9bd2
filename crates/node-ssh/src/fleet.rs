//! Bounded, async fan-out of fact gathering over a fleet.

use std::sync::Arc;

use slipway_model::facts::NodeFacts;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::gather::gather_facts;
use crate::session::{ConnectOptions, NodeConnector, Ssh2Connector};
use crate::target::NodeTarget;

/// Gather facts from every target over SSH (libssh2), at most `concurrency`
/// nodes at a time. Results come back in the order of `targets`.
///
/// Never fails as a whole: a node that cannot be reached (refused, timeout,
/// authentication failed, host key mismatch, ...) gets
/// [`NodeFacts::unreachable`] with the reason.
pub async fn gather_fleet(
    targets: Vec<NodeTarget>,
    concurrency: usize,
    options: ConnectOptions,
) -> Vec<(String, NodeFacts)> {
    gather_fleet_with(Arc::new(Ssh2Connector::new(options)), targets, concurrency).await
}

/// [`gather_fleet`] over any [`NodeConnector`] (tests pass a stub).
pub async fn gather_fleet_with<C>(
    connector: Arc<C>,
    targets: Vec<NodeTarget>,
    concurrency: usize,
) -> Vec<(String, NodeFacts)>
where
    C: NodeConnector + 'static,
{
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(targets.len());
    for target in targets {
        let name = target.name.clone();
        let span = tracing::info_span!("gather_facts", node = %name);
        let semaphore = Arc::clone(&semaphore);
        let connector = Arc::clone(&connector);
        let task = tokio::spawn(
            async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = semaphore.acquire_owned().await;
                let blocking_span = tracing::Span::current();
                let worker = tokio::task::spawn_blocking(move || {
                    let _entered = blocking_span.enter();
                    gather_one(connector.as_ref(), &target)
                });
                match worker.await {
                    Ok(facts) => facts,
                    Err(e) => NodeFacts::unreachable(format!("worker failed: {e}")),
                }
            }
            .instrument(span),
        );
        tasks.push((name, task));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for (name, task) in tasks {
        let facts = match task.await {
            Ok(facts) => facts,
            Err(e) => NodeFacts::unreachable(format!("worker failed: {e}")),
        };
        results.push((name, facts));
    }
    results
}

/// Connect and gather one node; a connection failure becomes `Unreachable`.
fn gather_one<C: NodeConnector>(connector: &C, target: &NodeTarget) -> NodeFacts {
    match connector.connect(target) {
        Ok(mut conn) => {
            let facts = gather_facts(&mut conn);
            tracing::debug!(errors = facts.errors.len(), "facts gathered");
            facts
        }
        Err(e) => {
            tracing::warn!(error = %e, "node unreachable");
            NodeFacts::unreachable(e.unreachable_reason())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::session::{CommandOutput, NodeConn};
    use crate::target::{Auth, HostKeyPin};
    use crate::SshError;

    /// Refuses nodes whose name starts with "down", answers the rest with
    /// an empty (malformed) output, and records the peak concurrency.
    #[derive(Default)]
    struct Stub {
        in_flight: AtomicUsize,
        peak: AtomicUsize,
        connected: Mutex<Vec<String>>,
    }

    struct StubConn;

    impl NodeConn for StubConn {
        fn exec(&mut self, _command: &str) -> Result<CommandOutput, SshError> {
            Ok(CommandOutput {
                status: 0,
                stdout: Vec::new(),
                stderr: Vec::new(),
            })
        }
        fn read_file(&mut self, _path: &str) -> Result<Vec<u8>, SshError> {
            Ok(Vec::new())
        }
        fn write_file(
            &mut self,
            _path: &str,
            _contents: &[u8],
            _mode: u32,
        ) -> Result<(), SshError> {
            Ok(())
        }
    }

    impl NodeConnector for Stub {
        type Conn = StubConn;
        fn connect(&self, target: &NodeTarget) -> Result<StubConn, SshError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.connected.lock().unwrap().push(target.name.clone());
            if target.name.starts_with("down") {
                Err(SshError::Connect {
                    node: target.name.clone(),
                    addr: "127.0.0.1:1".into(),
                    message: "Connection refused".into(),
                })
            } else {
                Ok(StubConn)
            }
        }
    }

    fn target(name: &str) -> NodeTarget {
        NodeTarget {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 1,
            user: "root".into(),
            auth: Auth::Agent,
            host_key: HostKeyPin::KnownHosts("/nonexistent".into()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn results_keep_target_order_unreachable_nodes_are_facts_and_concurrency_is_bounded() {
        let stub = Arc::new(Stub::default());
        let names: Vec<String> = (0..12)
            .map(|i| {
                if i % 4 == 0 {
                    format!("down-{i}")
                } else {
                    format!("node-{i}")
                }
            })
            .collect();
        let targets = names.iter().map(|n| target(n)).collect();
        let results = gather_fleet_with(Arc::clone(&stub), targets, 3).await;
        let got: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
        for (name, facts) in &results {
            if name.starts_with("down") {
                assert_eq!(
                    facts.reachability,
                    slipway_model::facts::Reachability::Unreachable {
                        reason: format!(
                            "{name}: cannot connect to 127.0.0.1:1: Connection refused"
                        )
                    }
                );
            } else {
                assert!(facts.is_reachable());
                // Empty output: every fact is an error, none is invented.
                assert_eq!(facts.errors.len(), crate::FACT_COMMANDS.len());
            }
        }
        assert_eq!(stub.connected.lock().unwrap().len(), 12);
        assert!(stub.peak.load(Ordering::SeqCst) <= 3);
    }
}
