//! Every command-line type, in one place (clap derive). `main` dispatches on [`Command`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Print the JSON schemas of cluster.yaml and node files, or write them to a folder.
    Schema {
        /// Write `cluster.schema.json` and `node.schema.json` into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
