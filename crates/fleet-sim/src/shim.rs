//! The FCOS/K3s programs a simulated node provides, as pure-ish functions
//! over the node's [`SimState`] (and, for K3s, the fleet's [`ClusterState`]):
//! `rpm-ostree`, `efibootmgr`, `systemctl`, `reboot`, `k3s`, `coreos-installer`.
//!
//! The `slipway-sim` binary dispatches here on `argv[0]` when it runs inside
//! a node's chroot (the programs are symlinks to it in [`SHIM_DIR`], first in
//! the node's `PATH`, and at their usual paths — except `k3s`, whose usual
//! path `/usr/local/bin/k3s` holds the binary Ignition installed).
//!
//! `k3s --version` runs that installed binary and relays what it prints (for a
//! node with the opaque K3s of [`crate::NodeState::installed`], the recorded
//! version); `kubectl` and `etcd-snapshot` are in [`crate::kubectl`]'s terms.

use serde_json::json;
use slipway_model::facts::BootEntries;

use crate::cluster::{update_cluster, ClusterState};
use crate::enter::now_unix_ms;
use crate::k3s::{parse_version, run_installed_version, Ctx, NodeView, K3S_BINARY};
use crate::kubectl;
use crate::state::{update_state, K3sUnit, SimState};
use crate::SimError;

/// Where the shims are inside a node (first in its `PATH`).
pub const SHIM_DIR: &str = "/usr/lib/slipway-sim/bin";

/// Program names the multi-call binary answers to inside a node, with the usual
/// path each also gets a symlink at (none for `k3s`: Ignition installs it).
pub const SHIM_PROGRAMS: &[(Option<&str>, &str)] = &[
    (Some("/usr/bin/rpm-ostree"), "rpm-ostree"),
    (Some("/usr/sbin/efibootmgr"), "efibootmgr"),
    (Some("/usr/bin/systemctl"), "systemctl"),
    (Some("/usr/sbin/reboot"), "reboot"),
    (None, "k3s"),
    (Some("/usr/bin/coreos-installer"), "coreos-installer"),
];

/// What a shim printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub code: i32,
}

impl ShimOutput {
    fn ok(stdout: impl Into<String>) -> Self {
        ShimOutput {
            stdout: stdout.into(),
            stderr: String::new(),
            code: 0,
        }
    }

    fn fail(code: i32, stderr: impl Into<String>) -> Self {
        ShimOutput {
            stdout: String::new(),
            stderr: stderr.into(),
            code,
        }
    }
}

/// Garbage a faulty program prints instead of its real output.
const GARBAGE: &str =
    "{\"deployments\": [ {\"booted\": tru\u{fffd}\u{0}## segfault? ##\nBootCurrent: zzzz\n";

/// Run shim `program` with `args` on the node seen through `view` (an empty
/// `view.host` is taken from the node's state), changing the node's and the
/// cluster's state when the program would change the machine or the cluster.
pub fn run(program: &str, args: &[String], view: &NodeView) -> Result<ShimOutput, SimError> {
    update_state(&view.control, |state| {
        let mut view = view.clone();
        if view.host.is_empty() {
            view.host = state.name.clone();
        }
        if state.malformed(program) {
            return Ok(ShimOutput::ok(GARBAGE));
        }
        Ok(match program {
            "rpm-ostree" => rpm_ostree(state, args),
            "efibootmgr" => efibootmgr(state, args),
            "systemctl" => systemctl(state, args, &view)?,
            "reboot" => systemctl(state, &["reboot".to_string()], &view)?,
            "k3s" => k3s(state, args, &view)?,
            "coreos-installer" => ShimOutput::fail(
                1,
                "coreos-installer: not simulated on an installed node (reinstall through the firmware: BootNext to the network entry, then reboot)\n",
            ),
            other => ShimOutput::fail(127, format!("{other}: not a simulated program\n")),
        })
    })?
}

/// Run `change` on the cluster state with this node's K3s context.
fn with_cluster<T>(
    view: &NodeView,
    state: &mut SimState,
    change: impl FnOnce(&mut Ctx<'_>) -> Result<T, SimError>,
) -> Result<T, SimError> {
    update_cluster(&view.cluster, |cluster: &mut ClusterState| {
        let mut ctx = Ctx {
            view,
            state,
            cluster,
            now: now_unix_ms(),
        };
        change(&mut ctx)
    })?
}

fn rpm_ostree(state: &mut SimState, args: &[String]) -> ShimOutput {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deployment = |d: &slipway_model::facts::Deployment, booted: bool, staged: bool| {
        json!({
            "id": format!("fedora-coreos-{}.0", d.checksum),
            "osname": "fedora-coreos",
            "checksum": d.checksum,
            "version": d.version,
            "booted": booted,
            "staged": staged,
            "pinned": false,
            "origin": "fedora/x86_64/coreos/stable",
        })
    };
    match args.as_slice() {
        ["status", "--json"] | ["status", "--json", ..] => {
            let mut deployments = Vec::new();
            if let Some(pending) = &state.pending_os {
                deployments.push(deployment(pending, false, true));
            }
            deployments.push(deployment(&state.os, true, false));
            let status = json!({
                "deployments": deployments,
                "transaction": null,
                "cached-update": null,
            });
            ShimOutput::ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&status).unwrap_or_default()
            ))
        }
        ["status"] => {
            let mut text = String::from("State: idle\nDeployments:\n");
            if let Some(p) = &state.pending_os {
                text.push_str(&format!("  fedora:fedora/x86_64/coreos/stable\n                   Version: {} (staged)\n", p.version));
            }
            text.push_str(&format!(
                "● fedora:fedora/x86_64/coreos/stable\n                   Version: {}\n",
                state.os.version
            ));
            ShimOutput::ok(text)
        }
        ["deploy", rest @ ..] => {
            // `rpm-ostree deploy [--bypass-driver] VERSION`: stage VERSION for the next boot,
            // as the real one does after pulling it from the node's update source.
            let versions: Vec<&&str> = rest.iter().filter(|a| !a.starts_with('-')).collect();
            let unknown: Vec<&&str> = rest
                .iter()
                .filter(|a| a.starts_with('-') && **a != "--bypass-driver")
                .collect();
            match (versions.as_slice(), unknown.as_slice()) {
                ([version], []) if is_fcos_version(version) => {
                    state.pending_os = Some(slipway_model::facts::Deployment {
                        version: version.to_string(),
                        checksum: crate::state::checksum_for(version),
                    });
                    ShimOutput::ok(
                        "Staging deployment... done\nRun \"systemctl reboot\" to start a reboot\n",
                    )
                }
                ([version], []) => ShimOutput::fail(
                    1,
                    format!("error: Failed to resolve version `{version}`: not an FCOS release\n"),
                ),
                (_, [flag, ..]) => {
                    ShimOutput::fail(1, format!("rpm-ostree deploy: unknown option {flag}\n"))
                }
                _ => ShimOutput::fail(1, "error: rpm-ostree deploy takes one REVISION\n"),
            }
        }
        _ => ShimOutput::fail(
            1,
            format!("rpm-ostree: `{}` is not simulated\n", args.join(" ")),
        ),
    }
}

/// `40.20240906.3.0`: major, date, stream number, respin.
fn is_fcos_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[1].len() == 8
}

/// Render `efibootmgr` output; `verbose` adds device paths.
pub fn render_efibootmgr(efi: &BootEntries, verbose: bool) -> String {
    let mut out = String::new();
    if let Some(current) = efi.current {
        out.push_str(&format!("BootCurrent: {current:04X}\n"));
    }
    out.push_str("Timeout: 1 seconds\n");
    if let Some(next) = efi.next {
        out.push_str(&format!("BootNext: {next:04X}\n"));
    }
    let order: Vec<String> = efi.order.iter().map(|n| format!("{n:04X}")).collect();
    out.push_str(&format!("BootOrder: {}\n", order.join(",")));
    for e in &efi.entries {
        let star = if e.active { "*" } else { " " };
        out.push_str(&format!("Boot{:04X}{star} {}", e.number, e.label));
        if verbose {
            let path = if e.is_network {
                "PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400000001,1)/IPv4(0.0.0.0,0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0)".to_string()
            } else {
                format!(
                    "HD(2,GPT,{:08x}-0000-4000-8000-000000000000,0x1000,0x3f800)/File(\\EFI\\fedora\\shimx64.efi)",
                    e.number
                )
            };
            out.push('\t');
            out.push_str(&path);
        }
        out.push('\n');
    }
    out
}

fn efibootmgr(state: &mut SimState, args: &[String]) -> ShimOutput {
    let mut verbose = false;
    let mut i = 0;
    let parse_num = |s: Option<&String>| s.and_then(|s| u16::from_str_radix(s, 16).ok());
    while i < args.len() {
        match args[i].as_str() {
            "-v" | "--verbose" => verbose = true,
            "-n" | "--bootnext" => {
                i += 1;
                match parse_num(args.get(i)) {
                    Some(n) if state.efi.entry(n).is_some() => state.efi.next = Some(n),
                    _ => {
                        return ShimOutput::fail(
                            2,
                            "Could not set BootNext: No such file or directory\n",
                        )
                    }
                }
            }
            "-N" | "--delete-bootnext" => state.efi.next = None,
            "-o" | "--bootorder" => {
                i += 1;
                let parsed: Option<Vec<u16>> = args.get(i).and_then(|list| {
                    list.split(',')
                        .map(|n| u16::from_str_radix(n, 16).ok())
                        .collect()
                });
                match parsed {
                    Some(order) if order.iter().all(|n| state.efi.entry(*n).is_some()) => {
                        state.efi.order = order
                    }
                    _ => return ShimOutput::fail(2, "Invalid BootOrder\n"),
                }
            }
            other => {
                return ShimOutput::fail(
                    1,
                    format!("efibootmgr: option `{other}` is not simulated\n"),
                )
            }
        }
        i += 1;
    }
    ShimOutput::ok(render_efibootmgr(&state.efi, verbose))
}

fn unit_state(state: &SimState, unit: &str) -> &'static str {
    let wanted = match unit.trim_end_matches(".service") {
        "k3s" => Some(K3sUnit::Server),
        "k3s-agent" => Some(K3sUnit::Agent),
        _ => None,
    };
    match (&state.k3s, wanted) {
        (Some(k3s), Some(w)) if k3s.unit == w && k3s.active => "active",
        (Some(k3s), Some(w)) if k3s.unit == w && k3s.failure.is_some() => "failed",
        _ => "inactive",
    }
}

fn systemctl(
    state: &mut SimState,
    args: &[String],
    view: &NodeView,
) -> Result<ShimOutput, SimError> {
    let quiet = args.iter().any(|a| a == "--quiet" || a == "-q");
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    Ok(match args.as_slice() {
        ["reboot", ..] => {
            state.reboot_requested = true;
            ShimOutput::ok("")
        }
        ["is-active", units @ ..] if !units.is_empty() => {
            let states: Vec<&str> = units.iter().map(|u| unit_state(state, u)).collect();
            let any_active = states.contains(&"active");
            let stdout = if quiet {
                String::new()
            } else {
                states.iter().map(|s| format!("{s}\n")).collect()
            };
            ShimOutput {
                stdout,
                stderr: String::new(),
                code: if any_active { 0 } else { 3 },
            }
        }
        [verb @ ("start" | "stop" | "restart"), unit] => {
            let name = unit.trim_end_matches(".service");
            let wanted = match name {
                "k3s" => Some(K3sUnit::Server),
                "k3s-agent" => Some(K3sUnit::Agent),
                _ => None,
            };
            match (&state.k3s, wanted) {
                (Some(k3s), Some(w)) if k3s.unit == w => {
                    let stop = *verb == "stop";
                    with_cluster(view, state, |ctx| {
                        if stop {
                            ctx.stop();
                            Ok(())
                        } else {
                            ctx.start()
                        }
                    })?;
                    match state.k3s.as_ref().and_then(|k| k.failure.as_ref()) {
                        // systemd returns before the service fails again; its log says why.
                        Some(_) if !stop => ShimOutput::fail(
                            1,
                            format!("Job for {name}.service failed because the control process exited with error code.\nSee \"systemctl status {name}.service\" and \"journalctl -xeu {name}.service\" for details.\n"),
                        ),
                        _ => ShimOutput::ok(""),
                    }
                }
                _ => ShimOutput::fail(
                    5,
                    format!("Failed to {verb} {name}.service: Unit {name}.service not found.\n"),
                ),
            }
        }
        ["daemon-reload"] | ["enable", ..] | ["disable", ..] => ShimOutput::ok(""),
        _ => ShimOutput::fail(
            1,
            format!("systemctl: `{}` is not simulated\n", args.join(" ")),
        ),
    })
}

fn k3s(state: &mut SimState, args: &[String], view: &NodeView) -> Result<ShimOutput, SimError> {
    let installed = view.path(K3S_BINARY).is_file();
    if !installed && state.k3s.is_none() {
        return Ok(ShimOutput::fail(127, "sh: k3s: not found\n"));
    }
    let sub = args.first().map(String::as_str);
    Ok(match sub {
        Some("--version" | "-v" | "version") if installed => match run_installed_version(view) {
            Ok(out) if parse_version(&out).is_some() => ShimOutput::ok(out),
            Ok(_) => ShimOutput::fail(
                1,
                format!("k3s: {K3S_BINARY} --version printed no K3s version\n"),
            ),
            Err(e) => ShimOutput::fail(1, format!("k3s: {e}\n")),
        },
        Some("--version" | "-v" | "version") => ShimOutput::ok(format!(
            "k3s version {} (5c1b3d5e)\ngo version go1.22.4\n",
            state
                .k3s
                .as_ref()
                .map(|k| k.version.as_str())
                .unwrap_or_default()
        )),
        Some("kubectl") => with_cluster(view, state, |ctx| {
            Ok(kubectl::kubectl(
                ctx.cluster,
                &view.host,
                &args[1..],
                ctx.now,
            ))
        })?,
        Some("etcd-snapshot") => with_cluster(view, state, |ctx| {
            kubectl::etcd_snapshot(ctx.cluster, view, &args[1..], ctx.now)
        })?,
        Some(other) => ShimOutput::fail(
            1,
            format!(
                "k3s: subcommand `{other}` is not simulated (--version, kubectl, etcd-snapshot)\n"
            ),
        ),
        None => ShimOutput::fail(1, "k3s: a subcommand is required\n"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::{write_state, BootSource, Fault, NodeState};
    use std::path::Path;

    /// The shim on a node whose state is in `control` (root, var and cluster folders next to it).
    fn run(program: &str, args: &[String], control: &Path) -> Result<ShimOutput, SimError> {
        let view = NodeView {
            host: String::new(),
            root: control.join("root"),
            var: control.join("var"),
            control: control.to_path_buf(),
            cluster: control.join("cluster"),
        };
        std::fs::create_dir_all(&view.cluster).unwrap();
        super::run(program, args, &view)
    }

    fn control_with(state: &NodeState) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_state(
            dir.path(),
            &SimState {
                name: "n".into(),
                boot_id: crate::state::random_uuid(),
                booted_at_unix_ms: 0,
                boots: 1,
                last_boot_source: BootSource::Disk,
                os: state.os.clone(),
                pending_os: state.pending_os.clone(),
                k3s: state.k3s.clone(),
                efi: state.efi.clone(),
                faults: vec![],
                reboot_requested: false,
                boot_delay_ms: 0,
                down_reason: None,
            },
        )
        .unwrap();
        dir
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rpm_ostree_deploy_stages_a_release_for_the_next_boot_and_refuses_nonsense() {
        let control = control_with(&NodeState::fresh("39.20240101.3.0"));
        let out = run(
            "rpm-ostree",
            &args(&["deploy", "--bypass-driver", "40.20240906.3.0"]),
            control.path(),
        )
        .unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let status = run("rpm-ostree", &args(&["status", "--json"]), control.path()).unwrap();
        let parsed = deployments(&status.stdout);
        assert_eq!(
            parsed,
            vec![
                ("40.20240906.3.0".to_string(), true),
                ("39.20240101.3.0".to_string(), false)
            ]
        );
        for bad in [
            vec!["deploy", "latest"],
            vec!["deploy"],
            vec!["deploy", "--reboot", "40.20240906.3.0"],
        ] {
            let out = run("rpm-ostree", &args(&bad), control.path()).unwrap();
            assert_ne!(out.code, 0, "{bad:?} must fail");
        }
    }

    /// (version, staged) of each deployment in `rpm-ostree status --json` output.
    fn deployments(json: &str) -> Vec<(String, bool)> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["version"].as_str().unwrap().to_string(),
                    d["staged"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn efibootmgr_bootnext_round_trips_through_the_fact_parser() {
        let dir = control_with(&NodeState::installed(
            "40.1",
            "v1.30.2+k3s1",
            K3sUnit::Server,
        ));
        let out = run("efibootmgr", &args(&["-n", "0002"]), dir.path()).unwrap();
        assert_eq!(out.code, 0);
        let out = run("efibootmgr", &args(&["-v"]), dir.path()).unwrap();
        let efi = slipway_node_ssh::parse_efibootmgr(&out.stdout).unwrap();
        assert_eq!(efi.next, Some(2));
        assert_eq!(efi.network_entry().map(|e| e.number), Some(2));
        assert_eq!(efi, crate::state::read_state(dir.path()).unwrap().efi);
        let out = run("efibootmgr", &args(&["-n", "0009"]), dir.path()).unwrap();
        assert_ne!(out.code, 0);
    }

    #[test]
    fn systemctl_tracks_k3s_and_reboot_requests() {
        let dir = control_with(&NodeState::installed(
            "40.1",
            "v1.30.2+k3s1",
            K3sUnit::Agent,
        ));
        let out = run(
            "systemctl",
            &args(&["is-active", "k3s", "k3s-agent"]),
            dir.path(),
        )
        .unwrap();
        assert_eq!((out.stdout.as_str(), out.code), ("inactive\nactive\n", 0));
        run("systemctl", &args(&["stop", "k3s-agent"]), dir.path()).unwrap();
        let out = run(
            "systemctl",
            &args(&["is-active", "k3s", "k3s-agent"]),
            dir.path(),
        )
        .unwrap();
        assert_eq!((out.stdout.as_str(), out.code), ("inactive\ninactive\n", 3));
        assert_eq!(
            run("systemctl", &args(&["start", "k3s"]), dir.path())
                .unwrap()
                .code,
            5
        );
        run("reboot", &[], dir.path()).unwrap();
        assert!(
            crate::state::read_state(dir.path())
                .unwrap()
                .reboot_requested
        );
    }

    #[test]
    fn rpm_ostree_and_k3s_outputs_parse_and_faults_garble_them() {
        let mut node = NodeState::installed("40.1", "v1.30.2+k3s1", K3sUnit::Server);
        node.pending_os = Some(slipway_model::facts::Deployment {
            version: "40.2".into(),
            checksum: crate::state::checksum_for("40.2"),
        });
        let dir = control_with(&node);
        let out = run("rpm-ostree", &args(&["status", "--json"]), dir.path()).unwrap();
        let os = slipway_node_ssh::parse_rpm_ostree_status(&out.stdout).unwrap();
        assert_eq!(
            (
                os.booted.version.as_str(),
                os.pending.unwrap().version.as_str()
            ),
            ("40.1", "40.2")
        );
        let out = run("k3s", &args(&["--version"]), dir.path()).unwrap();
        assert_eq!(
            slipway_node_ssh::parse_k3s_version(&out.stdout).unwrap(),
            "v1.30.2+k3s1"
        );
        crate::state::update_state(dir.path(), |s| {
            s.faults.push(Fault::MalformedOutput {
                program: "rpm-ostree".into(),
            })
        })
        .unwrap();
        let out = run("rpm-ostree", &args(&["status", "--json"]), dir.path()).unwrap();
        assert!(slipway_node_ssh::parse_rpm_ostree_status(&out.stdout).is_err());
        assert_eq!(
            run("coreos-installer", &args(&["install"]), dir.path())
                .unwrap()
                .code,
            1
        );
    }
}
