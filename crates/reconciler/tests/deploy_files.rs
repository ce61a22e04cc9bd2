//! Everything in `deploy/` is checked by the tool that would reject it: the unit by
//! `systemd-analyze verify`, the management host's Butane by `slipway butane --strict` and
//! `ignition-validate`, the dnsmasq example by `dnsmasq --test`, the OpenWRT script by `sh -n`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

fn verify_unit(name: &str, needed: &[&str]) {
    let analyze = require_tool("systemd-analyze");
    let unit = std::fs::read_to_string(workspace().join("deploy").join(name)).unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = unit.replace("/usr/local/bin/slipway", env!("CARGO_BIN_EXE_slipway"));
    for needed in needed {
        assert!(unit.contains(needed), "{name} lost {needed}");
    }
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join(name);
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

const HARDENING: &[&str] = &[
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "StateDirectory=slipway",
    "DynamicUser=yes",
    "CapabilityBoundingSet=\n",
    "SystemCallFilter=@system-service",
];

#[test]
fn the_units_verify() {
    let mut boot = HARDENING.to_vec();
    boot.push("LoadCredential=age-identity:");
    verify_unit("slipway-boot-server.service", &boot);
    let mut serve = HARDENING.to_vec();
    serve.extend([
        "Type=notify",
        "WatchdogSec=",
        "LoadCredential=age-identity:",
        "LoadCredential=node-ssh-key:",
        "ExecStart=/usr/local/bin/slipway serve --config /etc/slipway/slipway.toml",
    ]);
    // The check runs on the file before ExecStart is pointed at the test binary.
    let text = std::fs::read_to_string(workspace().join("deploy/slipway.service")).unwrap();
    for needed in &serve {
        assert!(text.contains(needed), "slipway.service lost {needed}");
    }
    verify_unit("slipway.service", &HARDENING[..4]);
}

#[test]
fn the_example_daemon_config_loads_and_names_secrets_only_as_files() {
    let path = workspace().join("deploy/slipway.toml");
    let cfg = slipway::serve::config::load(&path).unwrap();
    assert!(cfg.secrets.age_identity_file.is_absolute());
    // No secret value anywhere outside comments.
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(!line.contains("AGE-SECRET-KEY-"), "{line}");
        assert!(!line.contains("PRIVATE KEY"), "{line}");
    }
}

#[test]
fn the_containerfile_builds_slipway_and_runs_it_unprivileged() {
    let text = std::fs::read_to_string(workspace().join("deploy/Containerfile")).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter(|l| !l.starts_with(' '))
        .collect();
    let froms: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    for f in &froms {
        // Short image names only: the project names no registry host.
        let image = f.split_whitespace().nth(1).unwrap();
        assert!(!image.split('/').next().unwrap().contains('.'), "{image}");
    }
    assert!(text.contains("cargo build --release --locked -p slipway"));
    let user = instructions
        .iter()
        .find(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(text.contains("VOLUME [\"/var/lib/slipway\"]"));
    assert!(text.contains("EXPOSE 8080 9090"));
    let entry = instructions
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let parsed: Vec<String> =
        serde_json::from_str(entry.trim_start_matches("ENTRYPOINT ")).unwrap();
    assert_eq!(parsed, ["/usr/local/bin/slipway", "serve"]);
    // The subcommand it runs exists with the flag CMD passes.
    let mut c = slipway();
    c.args(["serve", "--help"]);
    let out = run(c);
    assert!(out.status.success() && text_of(&out.stdout).contains("--config"));
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_management_host_butane_translates_strictly_and_validates() {
    let mut c = slipway();
    c.args(["butane", "--strict", "--files-dir"])
        .arg(workspace().join("deploy"))
        .arg(workspace().join("deploy/management-host.bu"));
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = tempfile::tempdir().unwrap();
    let ign = t.path().join("host.ign");
    std::fs::write(&ign, &out.stdout).unwrap();
    let v = Command::new(require_tool("ignition-validate"))
        .arg(&ign)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}{}", text(&v.stdout), text(&v.stderr));
    let json = text(&out.stdout);
    assert!(
        json.contains("\"name\":\"slipway.service\""),
        "the unit is not enabled: {json}"
    );
    assert!(json.contains("/etc/systemd/system/slipway.service"));
    assert!(json.contains("/etc/slipway/slipway.toml"));
}

#[test]
fn the_dhcp_examples_parse() {
    let dnsmasq = require_tool("dnsmasq");
    let out = Command::new(dnsmasq)
        .arg("--test")
        .arg(format!(
            "--conf-file={}",
            workspace().join("deploy/dnsmasq-pxe.conf").display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = Command::new("sh")
        .arg("-n")
        .arg(workspace().join("deploy/openwrt-pxe.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = std::fs::read_to_string(workspace().join("deploy/openwrt-pxe.sh")).unwrap();
    assert!(
        script.contains("/boot.ipxe"),
        "the router must chain to Slipway's boot script"
    );
}
