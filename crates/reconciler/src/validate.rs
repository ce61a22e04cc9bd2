//! `slipway validate`: check a repository and print every problem.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use slipway_model::check::{check_repo, Checked};
use slipway_model::diag::Diagnostic;

use crate::cmdline::{Output, RepoArgs};
use crate::{identity, repo_fs};

/// Run validation and print the report. Exit 1 on any error.
pub fn run(args: &RepoArgs, output: Output) -> Result<ExitCode> {
    let checked = load_checked(args)?;
    let d = &checked.diagnostics;
    match output {
        Output::Json => {
            #[derive(Serialize)]
            struct Report<'a> {
                schema_version: u32,
                valid: bool,
                errors: usize,
                warnings: usize,
                diagnostics: &'a [Diagnostic],
            }
            let r = Report {
                schema_version: 1,
                valid: !d.has_errors(),
                errors: d.error_count(),
                warnings: d.warning_count(),
                diagnostics: &d.0,
            };
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Output::Text => {
            print!("{d}");
            println!("{}", summary(&checked));
        }
    }
    Ok(if d.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Read the repository, load the identity and check everything.
pub fn load_checked(args: &RepoArgs) -> Result<Checked> {
    let files = repo_fs::read_repo(&args.repo)?;
    let ids = identity::load(args.identity.as_deref())?;
    Ok(check_repo(&files, ids.as_ref()))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn summary(c: &Checked) -> String {
    let d = &c.diagnostics;
    let warnings = match d.warning_count() {
        0 => String::new(),
        n => format!(", {}", plural(n, "warning")),
    };
    match (&c.inventory, d.has_errors()) {
        (Some(inv), false) => {
            let servers = inv.servers().count();
            let agents = inv.agents().count();
            let overlays = inv.overlays.all.len()
                + inv.overlays.server.len()
                + inv.overlays.agent.len()
                + inv.nodes.iter().map(|n| n.overlays.len()).sum::<usize>();
            let secrets = if c.secrets.is_some() {
                "secrets decrypted"
            } else {
                "secrets not decrypted"
            };
            format!(
                "ok: cluster {}: {} ({} servers, {} agents), {}, {secrets}{warnings}",
                inv.cluster.name,
                plural(inv.nodes.len(), "node"),
                servers,
                agents,
                plural(overlays, "overlay"),
            )
        }
        _ => format!("invalid: {}{warnings}", plural(d.error_count(), "error")),
    }
}
