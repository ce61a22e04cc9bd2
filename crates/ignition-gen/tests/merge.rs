//! Layered merging with Ignition's rules, and conflicts named with both layers.

#![allow(clippy::unwrap_used)] // tests may unwrap

use proptest::prelude::*;
use slipway_ignition_gen::butane::{translate, TranslateOptions};
use slipway_ignition_gen::files::NoFiles;
use slipway_ignition_gen::ignition::Config;
use slipway_ignition_gen::merge::merge;

fn bu(text: &str) -> Config {
    translate("t.bu", text, &TranslateOptions::default(), &NoFiles)
        .unwrap()
        .config
}

const CLUSTER: &str = r#"variant: fcos
version: 1.4.0
storage:
  files:
    - path: /etc/motd
      mode: 0644
      contents:
        inline: cluster
    - path: /etc/k3s.conf
      contents:
        inline: a
systemd:
  units:
    - name: k3s.service
      enabled: true
      contents: "[Service]\n"
      dropins:
        - name: 10-a.conf
          contents: "A\n"
        - name: 20-b.conf
          contents: "B\n"
passwd:
  users:
    - name: core
      ssh_authorized_keys: [key-a]
"#;

const NODE: &str = r#"variant: fcos
version: 1.4.0
storage:
  files:
    - path: /etc/motd
      contents:
        inline: node
    - path: /etc/hostname
      contents:
        inline: n1
systemd:
  units:
    - name: k3s.service
      dropins:
        - name: 20-b.conf
          contents: "B2\n"
        - name: 30-c.conf
          contents: "C\n"
passwd:
  users:
    - name: core
      ssh_authorized_keys: [key-b, key-a]
"#;

#[test]
fn later_layers_override_by_path_and_name() {
    let m = merge(&[("cluster".into(), bu(CLUSTER)), ("node".into(), bu(NODE))]).unwrap();
    let paths: Vec<_> = m.storage.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/etc/motd", "/etc/k3s.conf", "/etc/hostname"]);
    let motd = &m.storage.files[0];
    assert_eq!(motd.contents.source.as_deref(), Some("data:,node"));
    assert_eq!(
        motd.mode,
        Some(0o644),
        "unset fields keep the earlier layer's value"
    );
    let unit = &m.systemd.units[0];
    assert_eq!(unit.enabled, Some(true));
    assert_eq!(unit.contents.as_deref(), Some("[Service]\n"));
    let dropins: Vec<_> = unit
        .dropins
        .iter()
        .map(|d| (d.name.as_str(), d.contents.as_deref().unwrap()))
        .collect();
    assert_eq!(
        dropins,
        [
            ("10-a.conf", "A\n"),
            ("20-b.conf", "B2\n"),
            ("30-c.conf", "C\n")
        ]
    );
    assert_eq!(m.passwd.users[0].ssh_authorized_keys, ["key-a", "key-b"]);
    assert_eq!(m.ignition.version, "3.3.0");
}

#[test]
fn kind_conflicts_name_both_layers() {
    let dir =
        bu("variant: fcos\nversion: 1.4.0\nstorage:\n  directories:\n    - path: /etc/motd\n");
    let err = merge(&[
        ("overlays/cluster.bu".into(), bu(CLUSTER)),
        ("nodes/n1.bu".into(), dir),
    ])
    .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(
        err[0].message,
        "/etc/motd is a file in overlays/cluster.bu but a directory in nodes/n1.bu"
    );
    assert_eq!(err[0].location.file, "nodes/n1.bu");
}

#[test]
fn highest_version_wins_and_storage_keys_merge() {
    let a = bu("variant: fcos\nversion: 1.2.0\nstorage:\n  disks:\n    - device: /dev/sda\n      partitions:\n        - label: var\n          size_mib: 100\n");
    let b = bu("variant: fcos\nversion: 1.4.0\nstorage:\n  disks:\n    - device: /dev/sda\n      wipe_table: true\n      partitions:\n        - label: var\n          size_mib: 200\n        - label: extra\n");
    let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
    assert_eq!(m.ignition.version, "3.3.0");
    assert_eq!(m.storage.disks.len(), 1);
    let d = &m.storage.disks[0];
    assert_eq!(d.wipe_table, Some(true));
    let parts: Vec<_> = d
        .partitions
        .iter()
        .map(|p| (p.label.as_deref().unwrap(), p.size_mib))
        .collect();
    assert_eq!(parts, [("var", Some(200)), ("extra", None)]);
}

#[test]
fn json_roundtrip_then_merge() {
    let c = bu(CLUSTER);
    let parsed = Config::from_json(&c.to_json(false)).unwrap();
    assert_eq!(parsed, c);
    let m = merge(&[("only".into(), parsed)]).unwrap();
    assert_eq!(m, c);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// translate never panics, whatever the input looks like.
    #[test]
    fn translate_never_panics(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("variant: fcos".to_string()),
                Just("version: 1.4.0".to_string()),
                Just("version: 1.0.0".to_string()),
                Just("storage:".to_string()),
                Just("  files:".to_string()),
                Just("    - path: /etc/x".to_string()),
                Just("      mode: 0644".to_string()),
                Just("      contents: {inline: hi}".to_string()),
                Just("  filesystems: [{device: /dev/x, with_mount_unit: true}]".to_string()),
                Just("boot_device: {mirror: {devices: [a, b]}, luks: {tpm2: yes}}".to_string()),
                Just("systemd: {units: [{name: a.service, dropins: [{name: b}]}]}".to_string()),
                "[ -~]{0,30}",
            ],
            0..12,
        )
    ) {
        let text = lines.join("\n");
        let _ = translate("p.bu", &text, &TranslateOptions::default(), &NoFiles);
    }
}
