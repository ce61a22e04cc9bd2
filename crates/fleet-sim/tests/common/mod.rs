//! Helpers shared by the simulator's integration tests: throwaway keys,
//! fleets, and node-ssh targets pointing at them.
#![allow(dead_code, clippy::unwrap_used)]

pub mod profile;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use slipway_fleet_sim::{Fleet, FleetSpec, K3sUnit, NodeState, SimNodeSpec};
use slipway_node_ssh::{Auth, ConnectOptions, HostKeyPin, NodeTarget};
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use zeroize::Zeroizing;

/// A throwaway ed25519 key pair: (OpenSSH private key, public key line).
pub fn keypair(comment: &str) -> (Zeroizing<String>, String) {
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).unwrap();
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    (Zeroizing::new(private.to_string()), public)
}

pub struct TestFleet {
    pub fleet: Fleet,
    pub dir: tempfile::TempDir,
    pub client_key: Zeroizing<String>,
    pub host_public: Vec<String>,
    pub names: Vec<String>,
}

pub fn sim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_slipway-sim"))
}

/// Start `n` nodes; `state(i)` gives node i's initial state.
pub fn start_fleet(n: usize, state: impl Fn(usize) -> NodeState) -> TestFleet {
    let names: Vec<String> = (0..n).map(|i| format!("node-{i:02}")).collect();
    start_named_fleet(&names, state)
}

/// Start nodes with these names; `state(i)` gives node i's initial state.
pub fn start_named_fleet(node_names: &[String], state: impl Fn(usize) -> NodeState) -> TestFleet {
    start_configured_fleet(node_names, state, |_, _| {})
}

/// Like [`start_named_fleet`], with `configure(i, spec)` setting node i's MACs and firmware.
pub fn start_configured_fleet(
    node_names: &[String],
    state: impl Fn(usize) -> NodeState,
    configure: impl Fn(usize, &mut SimNodeSpec),
) -> TestFleet {
    let dir = tempfile::tempdir().unwrap();
    let (client_key, client_public) = keypair("slipway-test-client");
    let mut nodes = Vec::new();
    let mut host_public = Vec::new();
    let mut names = Vec::new();
    for (i, name) in node_names.iter().enumerate() {
        let name = name.clone();
        let (host_private, public) = keypair(&format!("host@{name}"));
        host_public.push(public);
        names.push(name.clone());
        let mut spec = SimNodeSpec::new(name, host_private, vec![client_public.clone()], state(i));
        configure(i, &mut spec);
        nodes.push(spec);
    }
    let fleet = Fleet::start(FleetSpec {
        dir: dir.path().to_path_buf(),
        sim_binary: sim_binary(),
        nodes,
    })
    .unwrap_or_else(|e| panic!("cannot start the simulated fleet (are openssh-server and busybox-static installed?): {e}"));
    TestFleet {
        fleet,
        dir,
        client_key,
        host_public,
        names,
    }
}

pub fn installed(i: usize) -> NodeState {
    let unit = if i % 3 == 0 {
        K3sUnit::Server
    } else {
        K3sUnit::Agent
    };
    NodeState::installed("40.20240616.3.0", "v1.30.2+k3s1", unit)
}

impl TestFleet {
    pub fn target(&self, i: usize) -> NodeTarget {
        NodeTarget {
            name: self.names[i].clone(),
            host: "127.0.0.1".into(),
            port: self.fleet.node(&self.names[i]).unwrap().port(),
            user: "root".into(),
            auth: Auth::KeyMemory(self.client_key.clone()),
            host_key: HostKeyPin::PublicKey(self.host_public[i].clone()),
        }
    }

    pub fn targets(&self) -> Vec<NodeTarget> {
        (0..self.names.len()).map(|i| self.target(i)).collect()
    }
}

impl TestFleet {
    /// Run `command` on node `name` over SSH: (exit status, stdout, stderr).
    pub fn ssh(&self, name: &str, command: &str) -> (i32, String, String) {
        use slipway_node_ssh::{NodeConn, NodeConnector};
        let i = self.names.iter().position(|n| n == name).unwrap();
        let mut conn = slipway_node_ssh::Ssh2Connector::new(options())
            .connect(&self.target(i))
            .unwrap_or_else(|e| panic!("connecting to {name}: {e}"));
        let out = conn
            .exec(command)
            .unwrap_or_else(|e| panic!("{name}: {command}: {e}"));
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Send `command` (e.g. a reboot) whose connection may die before it answers.
    pub fn ssh_may_drop(&self, name: &str, command: &str) {
        use slipway_node_ssh::{NodeConn, NodeConnector};
        let i = self.names.iter().position(|n| n == name).unwrap();
        let mut conn = slipway_node_ssh::Ssh2Connector::new(options())
            .connect(&self.target(i))
            .unwrap_or_else(|e| panic!("connecting to {name}: {e}"));
        let _ = conn.exec(command);
    }

    /// Like [`TestFleet::ssh`], failing the test unless the command succeeds; its stdout.
    pub fn ssh_ok(&self, name: &str, command: &str) -> String {
        let (status, stdout, stderr) = self.ssh(name, command);
        assert_eq!(status, 0, "{name}: `{command}` failed: {stdout}{stderr}");
        stdout
    }
}

pub fn options() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(20),
        ..ConnectOptions::default()
    }
}

/// Poll `check` until it returns Some, failing after a generous bound (a
/// guard against hangs, not a speed assertion).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
