//! Fact gathering from 20 and 50 simulated nodes (real sshd on loopback):
//! Slipway (libssh2, one round trip, bounded fan-out) against
//! `xargs -P N ssh ... cat /etc/os-release` and against
//! `ansible all -m command -a 'cat /etc/os-release' -f N` (pipelining on, same
//! key exchange, host keys pinned), the comparison the issue names. Prints a
//! table of wall times and `bench-row` lines for `tests/bench`.
//!
//! FCOS, like the simulated nodes' busybox userland, has no Python, which
//! Ansible's `command` module needs: the bench lends each node the host's
//! Python read-only (`SimNode::expose_host_paths`). It also runs Ansible's
//! `raw` module (no module transfer, no interpreter: the cheapest thing
//! Ansible can do per host, and what works against a stock FCOS) and prints
//! that ratio too.
//!
//! Ansible (`ansible-core`) is installed once into a virtualenv under the
//! target directory (`python3 -m venv` + `pip install ansible-core`); the
//! bench fails with a clear message when that is impossible.
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

/// The host's Python, lent to the nodes for Ansible's `command` module, and what it loads.
const PYTHON: &str = "/usr/bin/python3.11";
const PYTHON_PATHS: [&str; 4] = [
    PYTHON,
    "/usr/lib/python3.11",
    "/lib/x86_64-linux-gnu",
    "/lib64",
];
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

/// One `bench-row` line (area `facts`, unit ms) for `tests/bench`.
fn row(case: &str, d: Duration, target: &str) -> String {
    format!(
        "bench-row\tfacts\t{case}\t{:.0}\tms\t{target}",
        d.as_secs_f64() * 1000.0
    )
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

/// Where the Ansible virtualenv lives: once per target directory.
fn ansible_venv_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ansible-venv")
}

/// Runs `cmd`, returning an error carrying its output when it fails.
fn run_checked(cmd: &mut Command, what: &str) -> BenchResult<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// The `ansible` executable of a virtualenv holding `ansible-core`, created
/// on first use and reused afterwards (a marker file says it is complete).
fn ensure_ansible() -> BenchResult<PathBuf> {
    let venv = ansible_venv_dir();
    let ansible = venv.join("bin").join("ansible");
    let marker = venv.join(".slipway-bench-complete");
    if marker.exists() && ansible.exists() {
        return Ok(ansible);
    }
    let hint = "the Ansible column of this benchmark needs python3 (with the venv module) \
                and pip able to install `ansible-core`";
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)?;
    }
    println!(
        "creating {} (python3 -m venv; pip install ansible-core)",
        venv.display()
    );
    run_checked(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        &format!("{hint}: python3 -m venv {}", venv.display()),
    )?;
    run_checked(
        Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", "ansible-core"]),
        &format!("{hint}: pip install ansible-core"),
    )?;
    if !ansible.exists() {
        return Err(format!("{hint}: {} missing after pip install", ansible.display()).into());
    }
    std::fs::write(&marker, b"ansible-core installed\n")?;
    Ok(ansible)
}

/// Everything one `ansible` ad-hoc run needs: an isolated HOME and config,
/// an inventory of every node, pinned host keys.
struct AnsibleSetup {
    ansible: PathBuf,
    home: PathBuf,
    config: PathBuf,
    inventory: PathBuf,
    ssh_args: String,
}

impl AnsibleSetup {
    fn new(
        ansible: PathBuf,
        dir: &Path,
        names_ports: &[(String, u16)],
        key: &Path,
        known_hosts: &Path,
    ) -> BenchResult<Self> {
        let home = dir.join("ansible-home");
        std::fs::create_dir_all(&home)?;
        let config = dir.join("ansible.cfg");
        std::fs::write(&config, b"")?;
        let inventory = dir.join("inventory.ini");
        let mut ini = String::from("[all]\n");
        for (name, port) in names_ports {
            ini.push_str(&format!(
                "{name} ansible_host=127.0.0.1 ansible_port={port} ansible_user=root \
                 ansible_ssh_private_key_file={key} ansible_python_interpreter={PYTHON}\n",
                key = key.display(),
            ));
        }
        std::fs::write(&inventory, ini)?;
        let ssh_args = format!(
            "-o KexAlgorithms=curve25519-sha256 -o ControlMaster=no \
             -o HostKeyAlgorithms=ssh-ed25519 -o StrictHostKeyChecking=yes \
             -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
            known_hosts.display()
        );
        Ok(Self {
            ansible,
            home,
            config,
            inventory,
            ssh_args,
        })
    }

    /// `ansible <first n hosts> -m MODULE -a 'cat /etc/os-release' -f n`;
    /// fails unless it exits 0 with all `n` hosts answering.
    fn run(&self, module: &str, names: &[String]) -> BenchResult<Duration> {
        let n = names.len();
        let limit = names.join(",");
        let mut cmd = Command::new(&self.ansible);
        cmd.arg("all")
            .arg("-i")
            .arg(&self.inventory)
            .args(["--limit", &limit])
            .args(["-m", module, "-a", "cat /etc/os-release"])
            .args(["-f", &n.to_string()])
            .env("HOME", &self.home)
            .env("ANSIBLE_CONFIG", &self.config)
            .env("ANSIBLE_LOCAL_TEMP", self.home.join("tmp"))
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_SSH_ARGS", &self.ssh_args)
            .env("ANSIBLE_FORKS", n.to_string())
            .env("ANSIBLE_TIMEOUT", "10")
            .env("ANSIBLE_NOCOLOR", "True")
            .stdin(Stdio::null());
        let start = Instant::now();
        let out = cmd.output()?;
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "ansible failed ({}):\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        // The default ad-hoc output: `NAME | CHANGED | rc=0 >>` then stdout.
        let ok = names
            .iter()
            .filter(|name| {
                let header = format!("{name} | CHANGED | rc=0 >>");
                stdout.lines().any(|line| line.trim_end() == header)
            })
            .count();
        let answers = stdout.matches("ID=").count();
        if answers < n {
            return Err(
                format!("ansible: {answers} os-release answers for {n} hosts:\n{stdout}").into(),
            );
        }
        if ok != n {
            return Err(format!("ansible: {ok} of {n} hosts answered:\n{stdout}").into());
        }
        Ok(elapsed)
    }
}

fn main() -> BenchResult<()> {
    for tool in ["/usr/bin/ssh", "/usr/sbin/sshd", "/bin/busybox", PYTHON] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "benchmark needs {tool} (openssh-client, openssh-server, busybox-static, python3.11)"
            )
            .into());
        }
    }
    let ansible = ensure_ansible()?;
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
    let lent: Vec<&Path> = PYTHON_PATHS.iter().map(Path::new).collect();
    for node in fleet.nodes() {
        node.expose_host_paths(&lent)?;
    }

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

    let names_ports: Vec<(String, u16)> =
        targets.iter().map(|t| (t.name.clone(), t.port)).collect();
    let names: Vec<String> = names_ports.iter().map(|(n, _)| n.clone()).collect();
    let ansible = AnsibleSetup::new(ansible, dir.path(), &names_ports, &key_path, &known_hosts)?;

    // Warm-up (page cache, sshd first-connection costs, Python imports).
    xargs_ssh(&ports, &key_path, &known_hosts)?;
    ansible.run("command", &names)?;
    ansible.run("raw", &names)?;

    let mut rows = Vec::new();
    let mut table = Vec::new();
    for &n in &SIZES {
        let mut facts_times = Vec::new();
        let mut one_times = Vec::new();
        let mut ssh_times = Vec::new();
        let mut ansible_times = Vec::new();
        let mut raw_times = Vec::new();
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
            ansible_times.push(ansible.run("command", &names[..n])?);
            raw_times.push(ansible.run("raw", &names[..n])?);
        }
        let facts = median(facts_times);
        let one = median(one_times);
        let ssh = median(ssh_times);
        let ansible_t = median(ansible_times);
        let raw_t = median(raw_times);
        let ratio = ansible_t.as_secs_f64() / facts.as_secs_f64();
        let ratio_one = ansible_t.as_secs_f64() / one.as_secs_f64();
        let ratio_raw = raw_t.as_secs_f64() / facts.as_secs_f64();
        table.push(format!(
            "| {n:>5} | {:>12} | {:>12} | {:>12} | {:>18} | {:>14} | {:>21} | {:>17} |",
            ms(facts),
            ms(one),
            ms(ssh),
            ms(ansible_t),
            ms(raw_t),
            format!("{ratio:.1}× / {ratio_one:.1}×"),
            format!("{ratio_raw:.1}×"),
        ));
        let faster = "≥ 8× faster than Ansible";
        rows.push(row(
            &format!("{n} nodes, Slipway full facts (8 cmds)"),
            facts,
            faster,
        ));
        rows.push(row(
            &format!("{n} nodes, Slipway cat /etc/os-release"),
            one,
            faster,
        ));
        rows.push(row(
            &format!("{n} nodes, xargs -P {n} ssh cat /etc/os-release"),
            ssh,
            "-",
        ));
        rows.push(row(
            &format!("{n} nodes, ansible -m command cat /etc/os-release -f {n}"),
            ansible_t,
            "-",
        ));
        rows.push(row(
            &format!("{n} nodes, ansible -m raw cat /etc/os-release -f {n}"),
            raw_t,
            "-",
        ));
        rows.push(format!(
            "bench-row\tfacts\t{n} nodes, Ansible ÷ Slipway full facts\t{ratio:.1}\t×\t≥ 8"
        ));
        rows.push(format!(
            "bench-row\tfacts\t{n} nodes, Ansible ÷ Slipway cat /etc/os-release\t{ratio_one:.1}\t×\t≥ 8"
        ));
        rows.push(format!(
            "bench-row\tfacts\t{n} nodes, Ansible -m raw ÷ Slipway full facts\t{ratio_raw:.1}\t×\t-"
        ));
    }
    println!();
    println!("every tool reads `cat /etc/os-release`, but Slipway's full facts (8 commands, 1 round trip)");
    println!("| nodes | Slipway facts | Slipway cat  | xargs ssh    | ansible -m command | ansible -m raw | command ÷ Slipway (facts / cat) | raw ÷ Slipway facts |");
    println!("|------:|-------------:|-------------:|-------------:|-------------------:|---------------:|----------------------:|------------------:|");
    for line in &table {
        println!("{line}");
    }
    println!("\nmedian of {ROUNDS} rounds; concurrency = N; every node is a real sshd on 127.0.0.1 (2-core machine)");
    println!("Ansible: ansible-core in a venv, `-f N`, pipelining on, curve25519-sha256, ControlMaster=no, host keys pinned;");
    println!("`command` runs the host's Python, lent read-only to each node (FCOS has none); `raw` needs no Python");
    println!();
    for line in &rows {
        println!("{line}");
    }
    drop(fleet);
    Ok(())
}
