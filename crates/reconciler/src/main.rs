//! `slipway`: the command-line front of Slipway. `main` parses arguments and dispatches;
//! each command lives in its own module. Errors are `anyhow` with short "-ing" context and
//! are printed once, with their whole cause chain.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use slipway::cmdline::{Cli, Command, LogFormat, RolloutCommand, SimCommand};
use slipway::{
    boot_cmd, butane_cmd, demo, facts_cmd, mirror_cmd, reconcile_cmd, repo_fs, rollout,
    secrets_cmd, sim_cmd, validate,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs at info by default, in the format its config file asks for (the
    // command-line flag wins when it says json).
    let (verbose, format) = match &cli.command {
        Command::Serve { config } => {
            let from_config = slipway::serve::config::load(config)
                .ok()
                .map(|c| c.log.format);
            let format = match (cli.log_format, from_config) {
                (LogFormat::Text, Some(slipway::serve::config::LogFormat::Json)) => LogFormat::Json,
                (f, _) => f,
            };
            (cli.verbose.max(1), format)
        }
        _ => (cli.verbose, cli.log_format),
    };
    init_logging(verbose, format);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Validate { repo, output } => validate::run(repo, *output),
        Command::Secrets { command } => secrets_cmd::run(command),
        Command::Schema { out } => schema(out.as_deref()),
        Command::Facts {
            repo,
            node,
            ssh_key,
            known_hosts,
            output,
        } => facts_cmd::run(
            repo,
            node.as_deref(),
            ssh_key.as_ref(),
            known_hosts.as_ref(),
            *output,
        ),
        Command::Reconcile {
            repo,
            state,
            dry_run,
            offline,
            ssh_key,
            output,
            detailed_exitcode,
            watch,
            allowed_signers,
            boot_listen,
            now,
        } => {
            let args = reconcile_cmd::ReconcileArgs {
                repo,
                state,
                dry_run: *dry_run,
                offline: *offline,
                ssh_key: ssh_key.as_ref(),
                output: *output,
                detailed_exitcode: *detailed_exitcode,
                watch: *watch,
                allowed_signers: allowed_signers.as_deref(),
            };
            if *dry_run {
                reconcile_cmd::run(&args)
            } else {
                if *offline {
                    anyhow::bail!("--offline only plans: add --dry-run");
                }
                if *now && slipway::serve::daemon::request_now(state)? {
                    return Ok(ExitCode::SUCCESS);
                }
                rollout::execute(
                    &args,
                    &rollout::Drive {
                        ssh_key: ssh_key.as_deref(),
                        boot_listen: *boot_listen,
                        now: *now,
                    },
                )
            }
        }
        Command::Serve { config } => slipway::serve::daemon::run(config),
        Command::Suspend { state } => slipway::serve::daemon::set_suspended(state, true),
        Command::Resume { state } => slipway::serve::daemon::set_suspended(state, false),
        Command::Demo {
            repo,
            identity,
            keep,
        } => demo::run(repo, identity.as_deref(), *keep),
        Command::Rollout { command } => match command {
            RolloutCommand::Status { state, output } => rollout::status(state, *output),
            RolloutCommand::Resume {
                repo,
                state,
                ssh_key,
                boot_listen,
                acknowledge_data_loss,
            } => rollout::resume(
                repo,
                state,
                &rollout::Drive {
                    ssh_key: ssh_key.as_deref(),
                    boot_listen: *boot_listen,
                    now: true,
                },
                *acknowledge_data_loss,
            ),
            RolloutCommand::Abort { state } => rollout::abort(state),
        },
        Command::Render {
            repo,
            state,
            node,
            butane,
            existing_cluster,
        } => boot_cmd::render(repo, state, node, *butane, *existing_cluster),
        Command::BootServer {
            repo,
            state,
            listen,
            arm,
            existing_cluster,
        } => boot_cmd::boot_server(repo, state, *listen, arm, *existing_cluster),
        Command::Publish {
            state,
            rollback,
            to,
            repo,
            host_key_file,
            known_hosts,
            ssh_key,
            base_url,
            allow_secrets,
            arm,
            existing_cluster,
        } => match to {
            Some(to) if !*rollback => boot_cmd::publish_to(&boot_cmd::PublishTo {
                repo,
                state,
                to,
                host_key_file: host_key_file.as_deref(),
                known_hosts: known_hosts.as_deref(),
                ssh_key: ssh_key.as_deref(),
                base_url: base_url.as_deref(),
                allow_secrets: *allow_secrets,
                arm,
                existing: *existing_cluster,
            }),
            _ => boot_cmd::rollback(state),
        },
        Command::Artifacts { command } => boot_cmd::artifacts(command),
        Command::Mirror(args) => mirror_cmd::run(&mirror_cmd::MirrorArgs {
            repo: &args.repo,
            state: &args.state,
            stream_url: args.stream_url.as_deref(),
            k3s_version: args.k3s_version.as_deref(),
            k3s_base_url: &args.k3s_base_url,
            k3s_install_script_url: &args.k3s_install_script_url,
            k3s_install_script_sha256: args.k3s_install_script_sha256.as_deref(),
        }),
        Command::Sim { command } => match command {
            SimCommand::Up { repo, state } => sim_cmd::up(repo, state),
            SimCommand::Down { state } => sim_cmd::down(state),
            SimCommand::Fault {
                state,
                node,
                fault,
                ms,
                clear,
            } => sim_cmd::fault(state, node, *fault, *ms, *clear),
            SimCommand::Run { state } => sim_cmd::run(state),
        },
        Command::Butane {
            strict,
            pretty,
            files_dir,
            file,
        } => butane_cmd::run(file.as_deref(), *strict, *pretty, files_dir.as_deref()),
    }
}

fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn schema(out: Option<&std::path::Path>) -> Result<ExitCode> {
    let cluster =
        serde_json::to_string_pretty(&schemars::schema_for!(slipway_model::inventory::RawCluster))?;
    let node =
        serde_json::to_string_pretty(&schemars::schema_for!(slipway_model::inventory::RawNode))?;
    match out {
        Some(dir) => {
            repo_fs::write_atomic(
                &dir.join("cluster.schema.json"),
                format!("{cluster}\n").as_bytes(),
            )
            .context("writing cluster.schema.json")?;
            repo_fs::write_atomic(
                &dir.join("node.schema.json"),
                format!("{node}\n").as_bytes(),
            )
            .context("writing node.schema.json")?;
        }
        None => println!("{cluster}\n{node}"),
    }
    Ok(ExitCode::SUCCESS)
}
