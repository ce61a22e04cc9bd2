//! What the executor does to the world, behind one small trait: commands and facts over
//! SSH, and the boot server's arm/disarm. [`Live`] is the real thing: libssh2 with pinned
//! host keys, and Slipway's boot server running in this process for the rollout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use slipway_model::facts::NodeFacts;
use slipway_node_ssh::{
    gather_facts, CommandOutput, ConnectOptions, NodeConn, NodeConnector, NodeTarget, Ssh2Connector,
};
use slipway_pxe_publisher::{
    GenerationInput, NodeBootStatus, Publisher, ServerState, DEFAULT_TOKEN_TTL,
};

/// The executor's view of the world.
pub trait Effects: Sync {
    /// Run a shell command on a node.
    fn exec(&self, node: &str, command: &str) -> Result<CommandOutput, String>;
    /// A node's facts (an unreachable node is a value, not an error).
    fn facts(&self, node: &str) -> NodeFacts;
    /// Give the node's MACs its install script, with a fresh one-shot token.
    fn arm(&self, node: &str) -> Result<(), String>;
    /// Back to localboot.
    fn disarm(&self, node: &str);
    /// Whether the node fetched its Ignition since it was last armed.
    fn ignition_fetched(&self, node: &str) -> bool;
    /// Wait.
    fn sleep(&self, d: Duration);
    /// Now.
    fn now(&self) -> Instant;
}

/// Slipway's boot server, running in this process while the rollout runs.
pub struct BootEdge {
    rt: tokio::runtime::Runtime,
    server: ServerState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BootEdge {
    /// Serve on `listen` (no generation yet: [`BootEdge::publish`] one).
    pub fn start(state: &std::path::Path, listen: SocketAddr) -> Result<BootEdge> {
        let server = ServerState::new(crate::artifacts::store_dir(state));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(listen))
            .with_context(|| format!("listening on {listen} for the boot server"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(slipway_pxe_publisher::serve(
            listener,
            server.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        tracing::info!(%addr, "boot server up");
        Ok(BootEdge {
            rt,
            server,
            stop: Some(tx),
            addr,
        })
    }

    /// Publish `input` as a new generation and serve it (armed nodes are disarmed).
    pub fn publish(&self, state: &std::path::Path, input: &GenerationInput) -> Result<()> {
        let publisher =
            Publisher::open(state.join("generations"), crate::boot_cmd::KEEP_GENERATIONS)
                .context("opening the generations folder")?;
        let id = publisher
            .publish(input)
            .map_err(|e| anyhow!("publishing: {e}"))?;
        let generation = publisher
            .load(&id)
            .map_err(|e| anyhow!("loading generation {}: {e}", id.as_str()))?;
        let _guard = self.rt.enter();
        self.server.activate(generation, input.ignitions());
        tracing::info!(generation = id.as_str(), commit = %input.commit, "generation published");
        Ok(())
    }

    /// The runtime the server runs on (for mounting more routes next to it).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
}

impl Drop for BootEdge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The real effects: SSH to the nodes, the in-process boot server.
pub struct Live<'a> {
    targets: BTreeMap<String, NodeTarget>,
    connector: Ssh2Connector,
    boot: &'a BootEdge,
}

impl<'a> Live<'a> {
    /// Effects over these targets (by node name) and boot server.
    pub fn new(
        targets: Vec<NodeTarget>,
        boot: &'a BootEdge,
        command_timeout: Duration,
    ) -> Live<'a> {
        Live {
            targets: targets.into_iter().map(|t| (t.name.clone(), t)).collect(),
            connector: Ssh2Connector::new(ConnectOptions {
                connect_timeout: Duration::from_secs(3),
                command_timeout,
                ..ConnectOptions::default()
            }),
            boot,
        }
    }

    fn target(&self, node: &str) -> Result<&NodeTarget, String> {
        self.targets
            .get(node)
            .ok_or_else(|| format!("no SSH target for {node}"))
    }
}

impl Effects for Live<'_> {
    fn exec(&self, node: &str, command: &str) -> Result<CommandOutput, String> {
        let t = self.target(node)?;
        let mut conn = self
            .connector
            .connect(t)
            .map_err(|e| e.unreachable_reason())?;
        conn.exec(command).map_err(|e| e.to_string())
    }

    fn facts(&self, node: &str) -> NodeFacts {
        let t = match self.target(node) {
            Ok(t) => t,
            Err(e) => return NodeFacts::unreachable(e),
        };
        match self.connector.connect(t) {
            Ok(mut conn) => gather_facts(&mut conn),
            Err(e) => NodeFacts::unreachable(e.unreachable_reason()),
        }
    }

    fn arm(&self, node: &str) -> Result<(), String> {
        let _guard = self.boot.rt.enter();
        self.boot
            .server
            .arm(node, DEFAULT_TOKEN_TTL)
            .map(|_token| ())
            .map_err(|e| e.to_string())
    }

    fn disarm(&self, node: &str) {
        let _guard = self.boot.rt.enter();
        let _ = self.boot.server.disarm(node);
    }

    fn ignition_fetched(&self, node: &str) -> bool {
        matches!(
            self.boot.server.status(node),
            NodeBootStatus::IgnitionFetched { .. }
        )
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}
