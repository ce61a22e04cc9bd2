//! Everything in `deploy/` is checked by the tool that would reject it: the unit by
//! `systemd-analyze verify`, the management host's Butane by `slipway butane --strict` and
//! `ignition-validate`, the dnsmasq example by `dnsmasq --test`, the OpenWRT script by `sh -n`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_unit_verifies() {
    let analyze = require_tool("systemd-analyze");
    let unit =
        std::fs::read_to_string(workspace().join("deploy/slipway-boot-server.service")).unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = unit.replace("/usr/local/bin/slipway", env!("CARGO_BIN_EXE_slipway"));
    for needed in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=slipway",
        "DynamicUser=yes",
        "LoadCredential=age-identity:",
    ] {
        assert!(unit.contains(needed), "the unit lost {needed}");
    }
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("slipway-boot-server.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
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
        json.contains("\"name\":\"slipway-boot-server.service\""),
        "the unit is not enabled: {json}"
    );
    assert!(json.contains("/etc/systemd/system/slipway-boot-server.service"));
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
