//! Every command-line type, in one place (clap derive). `main` dispatches on [`Command`].

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Slipway: a GitOps reconciler for bare-metal Fedora CoreOS + K3s fleets.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output formats of commands that print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Where the cluster repository and its decryption key are.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The cluster repository (a working directory).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// age identity file that decrypts secrets/*.age.
    #[arg(long, env = "SLIPWAY_AGE_IDENTITY")]
    pub identity: Option<PathBuf>,
}

/// `slipway rollout` subcommands.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Where the current (or last) rollout stands, node by node.
    Status {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
        /// Output format (`json`: the journal itself).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Go on with a halted or interrupted rollout, retrying the step that stopped it.
    Resume {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
        /// Private key Slipway logs in with; default: the ssh-agent.
        #[arg(long, env = "SLIPWAY_SSH_KEY")]
        ssh_key: Option<PathBuf>,
        /// Where the boot server listens; default: every address, boot_server.url's port.
        #[arg(long, env = "SLIPWAY_BOOT_LISTEN")]
        boot_listen: Option<std::net::SocketAddr>,
        /// Pass the data-loss alarm of a node whose /var was lost (you dealt with it).
        #[arg(long)]
        acknowledge_data_loss: bool,
    },
    /// Give up the current rollout (nodes stay as they are; cordoned ones are listed).
    Abort {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
    },
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a cluster repository and report every problem with its location.
    Validate {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
        /// Report format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Create and change age-encrypted secrets.
    Secrets {
        /// Secrets subcommand.
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Translate a Butane config to Ignition JSON (a drop-in for the `butane` command).
    Butane {
        /// Fail on warnings too.
        #[arg(long, short)]
        strict: bool,
        /// Indent the output.
        #[arg(long, short)]
        pretty: bool,
        /// Folder that `local:` and `contents_local` paths are relative to.
        #[arg(long, short = 'd')]
        files_dir: Option<PathBuf>,
        /// Butane file; `-` or absent: stdin.
        file: Option<PathBuf>,
    },
    /// Print a node's final Ignition (or, with --butane, the Butane layers it is merged from).
    Render {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
        /// Slipway's state folder (artifact store and index).
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
        /// The node.
        #[arg(long)]
        node: String,
        /// Print the Butane layers (overlays, generated profile) instead of Ignition.
        #[arg(long)]
        butane: bool,
        /// Render as joining an existing cluster (the bootstrap server does not cluster-init).
        #[arg(long)]
        existing_cluster: bool,
    },
    /// Read what every node (or one) actually runs, over SSH with pinned host keys.
    Facts {
        /// Repository and identity (host keys are pinned from the nodes' secrets).
        #[command(flatten)]
        repo: RepoArgs,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
        /// Private key Slipway logs in with; default: the ssh-agent.
        #[arg(long, env = "SLIPWAY_SSH_KEY")]
        ssh_key: Option<PathBuf>,
        /// Pin host keys from this known_hosts file instead of the secrets.
        #[arg(long)]
        known_hosts: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Plan (and, later, execute) what it takes to make the fleet match the repository.
    Reconcile {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
        /// Slipway's state folder (artifact store and index).
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
        /// Only show the plan: read-only fact commands, nothing published, nothing armed.
        /// Without it the plan of HEAD is executed (see `slipway rollout`).
        #[arg(long)]
        dry_run: bool,
        /// Don't contact the nodes: plan from what the state folder knows.
        #[arg(long)]
        offline: bool,
        /// Private key Slipway logs in with; default: the ssh-agent.
        #[arg(long, env = "SLIPWAY_SSH_KEY")]
        ssh_key: Option<PathBuf>,
        /// Plan format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// With --dry-run: plan again whenever the repository's working tree changes.
        #[arg(long, requires = "dry_run")]
        watch: bool,
        /// Refuse a HEAD not signed by one of these SSH keys (git's allowed_signers format;
        /// keep this file outside the repository it verifies).
        #[arg(long, env = "SLIPWAY_ALLOWED_SIGNERS")]
        allowed_signers: Option<PathBuf>,
        /// Where the boot server listens while the plan executes; default: every address,
        /// on boot_server.url's port.
        #[arg(long, env = "SLIPWAY_BOOT_LISTEN")]
        boot_listen: Option<std::net::SocketAddr>,
        /// Start disruptive work (reinstall, upgrade, remove) outside the maintenance
        /// windows too.
        #[arg(long)]
        now: bool,
    },
    /// The unattended daemon: watch the repository, serve the boot artifacts, reconcile
    /// inside maintenance windows, follow FCOS/K3s releases, FleetLock, metrics.
    Serve {
        /// The configuration file (see deploy/slipway.toml).
        #[arg(long, default_value = "/etc/slipway/slipway.toml")]
        config: PathBuf,
    },
    /// Stop applying changes (plans are still made and exported); `slipway resume` undoes it.
    Suspend {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
    },
    /// Apply changes again after `slipway suspend`.
    Resume {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
    },
    /// Install a simulated cluster from nothing on 127.0.0.1, then roll a reinstall through it
    /// (needs root; cleans up after itself).
    Demo {
        /// The cluster repository to simulate.
        #[arg(long, default_value = "cluster-repo-example")]
        repo: PathBuf,
        /// age identity that decrypts its secrets; default: the example's demo key.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// Keep the lab folder afterwards (for a look around).
        #[arg(long)]
        keep: bool,
    },
    /// Inspect, resume or abort the rollout `slipway reconcile` executes.
    Rollout {
        /// Rollout subcommand.
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Serve the boot artifacts of the repository's current state (iPXE, Ignition, artifacts).
    BootServer {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
        /// Slipway's state folder (generations, artifact store and index).
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
        /// Address to listen on, e.g. 0.0.0.0:8080 (port 0 picks a free one; the address is printed).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Arm these nodes for install: their MACs get the FCOS installer until they fetch their Ignition.
        #[arg(long = "arm", value_name = "NODE")]
        arm: Vec<String>,
        /// Render as joining an existing cluster (the bootstrap server does not cluster-init).
        #[arg(long)]
        existing_cluster: bool,
    },
    /// Switch the boot server's published generation back to the previous one (--rollback),
    /// or publish the repository's generation as a static boot site to a remote web root over
    /// SFTP (--to), e.g. an OpenWRT router serving HTTP and TFTP.
    #[command(group(ArgGroup::new("action").required(true).args(["rollback", "to"])))]
    #[command(group(ArgGroup::new("host_key").args(["host_key_file", "known_hosts"])))]
    Publish {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
        /// Switch back to the previous generation.
        #[arg(long)]
        rollback: bool,
        /// Upload the boot site here, replacing the previous one atomically (key login only).
        #[arg(
            long,
            value_name = "sftp://USER@HOST[:PORT]/PATH",
            requires_all = ["host_key", "ssh_key", "base_url"]
        )]
        to: Option<String>,
        /// Repository and identity (with --to).
        #[command(flatten)]
        repo: RepoArgs,
        /// With --to: the remote's host key, one OpenSSH public key line (never trust on first use).
        #[arg(long, value_name = "FILE", requires = "to")]
        host_key_file: Option<PathBuf>,
        /// With --to: pin the remote's host key from this known_hosts file.
        #[arg(long, value_name = "FILE", requires = "to")]
        known_hosts: Option<PathBuf>,
        /// With --to: private key to log in with.
        #[arg(long, value_name = "FILE", env = "SLIPWAY_SSH_KEY", requires = "to")]
        ssh_key: Option<PathBuf>,
        /// With --to: the URL the remote's web server serves the published folder at,
        /// e.g. http://192.168.1.1/slipway.
        #[arg(long, value_name = "URL", requires = "to")]
        base_url: Option<String>,
        /// With --to: put Ignition (secrets: the K3s token, ...) and the install artifacts on the
        /// remote, so its web server alone can install the nodes; without it, known machines
        /// chain to Slipway's own server.
        #[arg(long, requires = "to")]
        allow_secrets: bool,
        /// With --allow-secrets: only these nodes install from the remote (the others boot
        /// their disk); default: every node. They reinstall on each network boot until a
        /// publish leaves them out.
        #[arg(long = "arm", value_name = "NODE", requires = "allow_secrets")]
        arm: Vec<String>,
        /// With --to: render as joining an existing cluster (the bootstrap server does not
        /// cluster-init).
        #[arg(long, requires = "to")]
        existing_cluster: bool,
    },
    /// Manage the artifact store (FCOS and K3s files nodes install from).
    Artifacts {
        /// Artifacts subcommand.
        #[command(subcommand)]
        command: ArtifactsCommand,
    },
    /// Download the FCOS release and K3s version cluster.yaml asks for into the artifact store.
    Mirror(Box<MirrorArgs>),
    /// Run a simulated fleet of the repository's nodes on 127.0.0.1 (real sshd per node).
    Sim {
        /// Sim subcommand.
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Print the JSON schemas of cluster.yaml and node files, or write them to a folder.
    Schema {
        /// Write `cluster.schema.json` and `node.schema.json` into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `slipway artifacts ...`
#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Import local files into the store (air-gapped sites, tests, the demo).
    Import(Box<ImportArgs>),
    /// List what the store holds.
    List {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
    },
}

/// `slipway artifacts import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Slipway's state folder.
    #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
    pub state: PathBuf,
    /// FCOS release the kernel/initramfs/rootfs/metal files belong to.
    #[arg(long, requires_all = ["kernel", "initramfs", "rootfs", "metal"])]
    pub fcos_release: Option<String>,
    /// Live kernel.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Live initramfs.
    #[arg(long)]
    pub initramfs: Option<PathBuf>,
    /// Live rootfs.
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Metal image.
    #[arg(long)]
    pub metal: Option<PathBuf>,
    /// The metal image's detached signature (without one, installs use coreos.inst.insecure).
    #[arg(long)]
    pub metal_sig: Option<PathBuf>,
    /// K3s version the binary and install script belong to.
    #[arg(long, requires_all = ["k3s_binary", "k3s_install_script"])]
    pub k3s_version: Option<String>,
    /// The k3s binary.
    #[arg(long)]
    pub k3s_binary: Option<PathBuf>,
    /// The K3s install script.
    #[arg(long)]
    pub k3s_install_script: Option<PathBuf>,
}

/// `slipway mirror` arguments.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// The cluster repository (only cluster.yaml is read; no identity needed).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Slipway's state folder (artifact store and index).
    #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
    pub state: PathBuf,
    /// FCOS stream metadata URL when cluster.yaml sets no `fcos.stream_url`
    /// (default: the official URL of the cluster's stream).
    #[arg(long)]
    pub stream_url: Option<String>,
    /// K3s version to mirror instead of cluster.yaml's pin (required when it names a channel).
    #[arg(long)]
    pub k3s_version: Option<String>,
    /// Base URL of K3s releases: files are fetched from `<base>/<version>/k3s` and
    /// `<base>/<version>/sha256sum-amd64.txt`.
    #[arg(long, default_value = crate::mirror_cmd::DEFAULT_K3S_BASE_URL)]
    pub k3s_base_url: String,
    /// URL of the K3s install script (`{version}` is replaced by the K3s version); its last
    /// path segment names it in the store.
    #[arg(long, default_value = crate::mirror_cmd::DEFAULT_K3S_INSTALL_SCRIPT_URL)]
    pub k3s_install_script_url: String,
    /// sha256 of the install script, when the release's checksum file does not list it.
    #[arg(long)]
    pub k3s_install_script_sha256: Option<String>,
}

/// `slipway sim ...`
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Start a simulated fleet in the background and write a repository copy that points at it.
    Up {
        /// Repository and identity (host keys come from the secrets).
        #[command(flatten)]
        repo: RepoArgs,
        /// Slipway's state folder; the simulator lives in `<state>/sim`.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
    },
    /// Stop the simulated fleet `sim up` started.
    Down {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
    },
    /// Inject (or, with --clear, remove) a fault into a simulated node.
    Fault {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
        /// The node.
        #[arg(long)]
        node: String,
        /// The fault.
        #[arg(value_enum)]
        fault: SimFault,
        /// Boot delay of `slow-boot`, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        ms: u64,
        /// Remove the fault instead.
        #[arg(long)]
        clear: bool,
    },
    /// Run the fleet in the foreground (what `sim up` starts in the background).
    #[command(hide = true)]
    Run {
        /// Slipway's state folder.
        #[arg(long, env = "SLIPWAY_STATE", default_value = ".slipway-state")]
        state: PathBuf,
    },
}

/// Faults `slipway sim fault` injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimFault {
    /// The node never comes back after a reboot.
    NeverReturnsAfterReboot,
    /// Boots take `--ms` milliseconds.
    SlowBoot,
    /// sshd refuses connections.
    SshRefuses,
    /// K3s never becomes Ready.
    K3sNeverReady,
    /// The firmware ignores BootNext.
    FirmwareIgnoresBootNext,
}

/// `slipway secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create what the cluster and its nodes lack: a K3s token, an SSH host key per node.
    Generate {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Encrypt a YAML file (or stdin) to the repository's recipients, writing FILE.
    Encrypt {
        /// Repository (for `.slipway/recipients`).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Plaintext input; `-` or absent: stdin.
        #[arg(long)]
        input: Option<PathBuf>,
        /// The `.age` file to write, e.g. secrets/cluster.age.
        file: PathBuf,
    },
    /// Decrypt FILE to stdout.
    Decrypt {
        /// age identity file.
        #[arg(long, env = "SLIPWAY_AGE_IDENTITY")]
        identity: Option<PathBuf>,
        /// The `.age` file.
        file: PathBuf,
    },
    /// Decrypt FILE into a private temporary file, run $EDITOR, re-encrypt; no plaintext is left behind.
    Edit {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
        /// The `.age` file (created when missing).
        file: PathBuf,
    },
    /// Re-encrypt every secrets file to the current `.slipway/recipients`.
    Rekey {
        /// Repository and identity.
        #[command(flatten)]
        repo: RepoArgs,
    },
}
