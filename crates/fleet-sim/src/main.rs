//! `slipway-sim`: the fleet simulator's multi-call binary.
//!
//! Inside a node (as `rpm-ostree`, `efibootmgr`, `systemctl`, `reboot`,
//! `k3s`, `coreos-installer`) it is that program's shim. Outside, it is the
//! plumbing sshd runs for every command: `wrap <node dir>` (the
//! `ForceCommand`) and `enter <node dir> -- <argv...>`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use slipway_fleet_sim::{shim, NodeView};

fn usage() -> ExitCode {
    eprintln!("usage: slipway-sim wrap <node-dir> | slipway-sim enter <node-dir> -- <command...>");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    if shim::SHIM_PROGRAMS.iter().any(|(_, name)| *name == argv0) {
        let rest: Vec<String> = args
            .iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return match shim::run(&argv0, &rest, &NodeView::inside("")) {
            Ok(out) => {
                let _ = std::io::stdout().write_all(out.stdout.as_bytes());
                let _ = std::io::stderr().write_all(out.stderr.as_bytes());
                ExitCode::from(u8::try_from(out.code).unwrap_or(1))
            }
            Err(e) => {
                eprintln!("{argv0}: simulator error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.len() < 3 {
        return usage();
    }
    let node_dir = PathBuf::from(args[2].clone());
    let err = match args[1].to_str() {
        Some("wrap") => slipway_fleet_sim::wrap(&node_dir),
        Some("enter") => {
            let rest = args.split_off(3);
            let rest = match rest.first().and_then(|a| a.to_str()) {
                Some("--") => rest[1..].to_vec(),
                _ => rest,
            };
            slipway_fleet_sim::enter(&node_dir, &rest)
        }
        _ => return usage(),
    };
    eprintln!("slipway-sim: {err}");
    ExitCode::from(1)
}
