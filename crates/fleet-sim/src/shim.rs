//! The FCOS/K3s programs a simulated node provides, as pure-ish functions
//! over the node's [`SimState`]: `rpm-ostree`, `efibootmgr`, `systemctl`,
//! `reboot`, `k3s`, `coreos-installer`.
//!
//! The `slipway-sim` binary dispatches here on `argv[0]` when it runs inside
//! a node's chroot (the programs are symlinks to it).

use std::path::Path;

use serde_json::json;
use slipway_model::facts::BootEntries;

use crate::state::{update_state, K3sUnit, SimState};
use crate::SimError;

/// Program names the multi-call binary answers to inside a node.
pub const SHIM_PROGRAMS: &[(&str, &str)] = &[
    ("/usr/bin/rpm-ostree", "rpm-ostree"),
    ("/usr/sbin/efibootmgr", "efibootmgr"),
    ("/usr/bin/systemctl", "systemctl"),
    ("/usr/sbin/reboot", "reboot"),
    ("/usr/local/bin/k3s", "k3s"),
    ("/usr/bin/coreos-installer", "coreos-installer"),
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

/// Run shim `program` with `args` against the state in `control` (the node's
/// control directory), changing the state when the program would change the machine.
pub fn run(program: &str, args: &[String], control: &Path) -> Result<ShimOutput, SimError> {
    update_state(control, |state| {
        if state.malformed(program) {
            return ShimOutput::ok(GARBAGE);
        }
        match program {
            "rpm-ostree" => rpm_ostree(state, args),
            "efibootmgr" => efibootmgr(state, args),
            "systemctl" => systemctl(state, args),
            "reboot" => systemctl(state, &["reboot".to_string()]),
            "k3s" => k3s(state, args),
            "coreos-installer" => ShimOutput::fail(
                1,
                "coreos-installer: not simulated yet (the network install arrives in a later round)\n",
            ),
            other => ShimOutput::fail(127, format!("{other}: not a simulated program\n")),
        }
    })
}

fn rpm_ostree(state: &SimState, args: &[String]) -> ShimOutput {
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
        _ => ShimOutput::fail(
            1,
            format!("rpm-ostree: `{}` is not simulated\n", args.join(" ")),
        ),
    }
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
        _ => "inactive",
    }
}

fn systemctl(state: &mut SimState, args: &[String]) -> ShimOutput {
    let quiet = args.iter().any(|a| a == "--quiet" || a == "-q");
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match args.as_slice() {
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
            let wanted = match unit.trim_end_matches(".service") {
                "k3s" => Some(K3sUnit::Server),
                "k3s-agent" => Some(K3sUnit::Agent),
                _ => None,
            };
            match (&mut state.k3s, wanted) {
                (Some(k3s), Some(w)) if k3s.unit == w => {
                    k3s.active = *verb != "stop";
                    ShimOutput::ok("")
                }
                _ => ShimOutput::fail(
                    5,
                    format!(
                        "Failed to {verb} {0}.service: Unit {0}.service not found.\n",
                        unit.trim_end_matches(".service")
                    ),
                ),
            }
        }
        ["daemon-reload"] | ["enable", ..] | ["disable", ..] => ShimOutput::ok(""),
        _ => ShimOutput::fail(
            1,
            format!("systemctl: `{}` is not simulated\n", args.join(" ")),
        ),
    }
}

fn k3s(state: &SimState, args: &[String]) -> ShimOutput {
    let Some(k3s) = &state.k3s else {
        return ShimOutput::fail(127, "sh: k3s: not found\n");
    };
    match args.first().map(String::as_str) {
        Some("--version" | "-v" | "version") => ShimOutput::ok(format!(
            "k3s version {} (5c1b3d5e)\ngo version go1.22.4\n",
            k3s.version
        )),
        _ => ShimOutput::fail(1, "k3s: only --version is simulated so far\n"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::{write_state, BootSource, Fault, NodeState};

    fn control_with(state: &NodeState) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_state(
            dir.path(),
            &SimState {
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
            },
        )
        .unwrap();
        dir
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
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
