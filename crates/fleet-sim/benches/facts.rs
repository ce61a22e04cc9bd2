//! Fact gathering from 20 and 50 simulated nodes (real sshd on loopback):
//! Slipway (libssh2, one round trip, bounded fan-out) against
//! `xargs -P N ssh ... cat /etc/os-release`. Prints a table of wall times.
//!
//! Run with `cargo bench -p slipway-fleet-sim --bench facts`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_fleet_sim::{Fleet, FleetSpec, K3sUnit, NodeState, SimNodeSpec};
use slipway_node_ssh::{
    gather_fleet, Auth, ConnectOptions, HostKeyPin, NodeConn, NodeConnector, NodeTarget,
    Ssh2Connector,
};
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use zeroize::Zeroizing;

const SIZES: [usize; 2] = [20, 50];
const ROUNDS: usize = 3;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn keypair(comment: &str) -> BenchResult<(Zeroizing<String>, String)> {
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF)?;
    Ok((
        Zeroizing::new(private.to_string()),
        key.public_key().to_openssh()?,
    ))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// `xargs -P n ssh ... cat /etc/os-release` over the first `n` ports.
fn xargs_ssh(ports: &[u16], key: &Path, known_hosts: &Path) -> BenchResult<Duration> {
    let n = ports.len();
    let script = format!(
        "xargs -P {n} -I PORT ssh -q -o BatchMode=yes -o KexAlgorithms=curve25519-sha256 \
         -o HostKeyAlgorithms=ssh-ed25519 -o StrictHostKeyChecking=yes \
         -o UserKnownHostsFile={kh} -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10 \
         -i {key} -p PORT root@127.0.0.1 cat /etc/os-release > /dev/null",
        kh = known_hosts.display(),
        key = key.display(),
    );
    let start = Instant::now();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    for port in ports {
        writeln!(stdin, "{port}")?;
    }
    drop(stdin);
    let status = child.wait()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("xargs ssh failed: {status}").into());
    }
    Ok(elapsed)
}

/// Slipway's node-ssh running one command per node, thread per node.
fn slipway_one_command(targets: &[NodeTarget], options: &ConnectOptions) -> BenchResult<Duration> {
    let connector = Arc::new(Ssh2Connector::new(options.clone()));
    let start = Instant::now();
    let handles: Vec<_> = targets
        .iter()
        .cloned()
        .map(|t| {
            let connector = Arc::clone(&connector);
            std::thread::spawn(move || -> Result<bool, String> {
                let mut conn = connector.connect(&t).map_err(|e| e.to_string())?;
                let out = conn
                    .exec("cat /etc/os-release")
                    .map_err(|e| e.to_string())?;
                Ok(out.success())
            })
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(Ok(true)) => {}
            other => return Err(format!("node failed: {other:?}").into()),
        }
    }
    Ok(start.elapsed())
}

fn main() -> BenchResult<()> {
    for tool in ["/usr/bin/ssh", "/usr/sbin/sshd", "/bin/busybox"] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "benchmark needs {tool} (openssh-client, openssh-server, busybox-static)"
            )
            .into());
        }
    }
    let dir = tempfile::tempdir()?;
    let (client_private, client_public) = keypair("bench-client")?;
    let max = SIZES.iter().copied().max().unwrap_or(0);
    let mut nodes = Vec::new();
    let mut host_keys = Vec::new();
    for i in 0..max {
        let (host_private, host_public) = keypair(&format!("host-{i}"))?;
        host_keys.push(host_public);
        nodes.push(SimNodeSpec::new(
            format!("bench-{i:02}"),
            host_private,
            vec![client_public.clone()],
            NodeState::installed("40.20240616.3.0", "v1.30.2+k3s1", K3sUnit::Agent),
        ));
    }
    let setup = Instant::now();
    let fleet = Fleet::start(FleetSpec {
        dir: dir.path().join("fleet"),
        sim_binary: PathBuf::from(env!("CARGO_BIN_EXE_slipway-sim")),
        nodes,
    })?;
    println!("started {max} simulated nodes in {}", ms(setup.elapsed()));

    let key_path = dir.path().join("id_ed25519");
    std::fs::write(&key_path, client_private.as_bytes())?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    let known_hosts = dir.path().join("known_hosts");
    let mut known = String::new();
    let mut targets = Vec::new();
    for (i, node) in fleet.nodes().iter().enumerate() {
        known.push_str(&format!("[127.0.0.1]:{} {}\n", node.port(), host_keys[i]));
        targets.push(NodeTarget {
            name: node.name(),
            host: "127.0.0.1".into(),
            port: node.port(),
            user: "root".into(),
            auth: Auth::KeyMemory(client_private.clone()),
            host_key: HostKeyPin::PublicKey(host_keys[i].clone()),
        });
    }
    std::fs::write(&known_hosts, known)?;
    let ports: Vec<u16> = targets.iter().map(|t| t.port).collect();
    let options = ConnectOptions::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // Warm-up (page cache, sshd first-connection costs).
    xargs_ssh(&ports, &key_path, &known_hosts)?;

    println!();
    println!("| nodes | Slipway full facts (8 cmds, 1 round trip) | Slipway `cat /etc/os-release` | xargs -P N ssh `cat /etc/os-release` |");
    println!("|------:|------------------------------------------:|------------------------------:|-------------------------------------:|");
    for &n in &SIZES {
        let mut facts_times = Vec::new();
        let mut one_times = Vec::new();
        let mut ssh_times = Vec::new();
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let results = runtime.block_on(gather_fleet(targets[..n].to_vec(), n, options.clone()));
            facts_times.push(start.elapsed());
            if let Some((name, facts)) = results
                .iter()
                .find(|(_, f)| !f.is_reachable() || !f.errors.is_empty())
            {
                return Err(format!("{name}: facts incomplete: {facts:?}").into());
            }
            one_times.push(slipway_one_command(&targets[..n], &options)?);
            ssh_times.push(xargs_ssh(&ports[..n], &key_path, &known_hosts)?);
        }
        println!(
            "| {n:>5} | {:>41} | {:>29} | {:>36} |",
            ms(median(facts_times)),
            ms(median(one_times)),
            ms(median(ssh_times))
        );
    }
    println!("\nmedian of {ROUNDS} rounds; concurrency = N; every node is a real sshd on 127.0.0.1 (2-core machine)");
    drop(fleet);
    Ok(())
}
