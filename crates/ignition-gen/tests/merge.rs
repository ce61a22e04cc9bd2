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

mod typed_merge {
    //! `merge_node_layer` (typed, for a child of files, users and kernel arguments) against
    //! `merge` (through JSON values) on generated configs.
    use super::*;
    use slipway_ignition_gen::ignition::{
        Directory, File, HttpHeader, Link, NodeOwner, PasswdUser, Resource, SpecVersion,
        Verification,
    };
    use slipway_ignition_gen::merge::merge_node_layer;

    fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(pool).prop_map(str::to_string)
    }

    fn opt<T: std::fmt::Debug + Clone>(
        s: impl Strategy<Value = T>,
    ) -> impl Strategy<Value = Option<T>> {
        proptest::option::of(s)
    }

    fn owner() -> impl Strategy<Value = NodeOwner> {
        (opt(0i64..3), opt(pick(&["root", "core"]))).prop_map(|(id, name)| NodeOwner { id, name })
    }

    fn resource() -> impl Strategy<Value = Resource> {
        (
            opt(pick(&["", "gzip"])),
            proptest::collection::vec(
                (pick(&["A", "B", "C"]), opt(pick(&["1", "2"])))
                    .prop_map(|(name, value)| HttpHeader { name, value }),
                0..3,
            ),
            opt(pick(&["data:,a", "data:,b", "http://127.0.0.1/x"])),
            opt(pick(&["sha256-00", "sha256-11"])),
        )
            .prop_map(|(compression, http_headers, source, hash)| Resource {
                compression,
                http_headers,
                source,
                verification: Verification { hash },
            })
    }

    fn file(paths: &'static [&'static str]) -> impl Strategy<Value = File> {
        (
            owner(),
            opt(any::<bool>()),
            pick(paths),
            owner(),
            proptest::collection::vec(resource(), 0..2),
            resource(),
            opt(prop_oneof![Just(0o644i64), Just(0o600)]),
        )
            .prop_map(
                |(group, overwrite, path, user, append, contents, mode)| File {
                    group,
                    overwrite,
                    path,
                    user,
                    append,
                    contents,
                    mode,
                },
            )
    }

    fn strings(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(pick(pool), 0..4)
    }

    fn user() -> impl Strategy<Value = PasswdUser> {
        (
            pick(&["core", "admin"]),
            strings(&["wheel", "sudo", "docker"]),
            strings(&["key-a", "key-b", "key-c"]),
            opt(pick(&["$y$1", "$y$2"])),
            opt(pick(&["/bin/sh", "/bin/bash"])),
            opt(1000i64..1002),
            opt(any::<bool>()),
        )
            .prop_map(
                |(name, groups, ssh_authorized_keys, password_hash, shell, uid, system)| {
                    PasswdUser {
                        name,
                        groups,
                        ssh_authorized_keys,
                        password_hash,
                        shell,
                        uid,
                        system,
                        ..Default::default()
                    }
                },
            )
    }

    fn version() -> impl Strategy<Value = SpecVersion> {
        proptest::sample::select(SpecVersion::ALL.to_vec())
    }

    /// Keys once each, as in any merge result.
    fn dedup<T>(mut v: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
        let mut seen = std::collections::HashSet::new();
        v.retain(|x| seen.insert(key(x)));
        v
    }

    fn base() -> impl Strategy<Value = Config> {
        (
            version(),
            proptest::collection::vec(file(&["/a", "/b", "/c"]), 0..4),
            proptest::collection::vec(user(), 0..3),
            strings(&["a", "b", "c", "d"]),
            strings(&["a", "b", "c", "d"]),
            any::<bool>(),
        )
            .prop_map(|(v, files, users, se, sne, dirs)| {
                let mut c = Config::new(v);
                c.storage.files = dedup(files, |f| f.path.clone());
                c.passwd.users = dedup(users, |u| u.name.clone());
                let se = dedup(se, Clone::clone);
                c.kernel_arguments.should_not_exist = dedup(sne, Clone::clone)
                    .into_iter()
                    .filter(|a| !se.contains(a))
                    .collect();
                c.kernel_arguments.should_exist = se;
                if dirs {
                    c.storage.directories.push(Directory {
                        path: "/d".into(),
                        ..Default::default()
                    });
                    c.storage.links.push(Link {
                        path: "/l".into(),
                        target: Some("/a".into()),
                        ..Default::default()
                    });
                }
                c
            })
    }

    fn child() -> impl Strategy<Value = Config> {
        (
            version(),
            proptest::collection::vec(file(&["/a", "/b", "/e", "/d", "/l"]), 0..4),
            proptest::collection::vec(user(), 0..3),
            strings(&["a", "b", "c", "e"]),
            strings(&["a", "b", "e"]),
        )
            .prop_map(|(v, files, users, se, sne)| {
                let mut c = Config::new(v);
                c.storage.files = files;
                c.passwd.users = users;
                c.kernel_arguments.should_exist = se;
                c.kernel_arguments.should_not_exist = sne;
                c
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn typed_merge_is_merge(base in base(), child in child()) {
            let slow = merge(&[("base".into(), base.clone()), ("child".into(), child.clone())]);
            match merge_node_layer(&base, &child) {
                Some(fast) => prop_assert_eq!(Ok(fast), slow),
                None => prop_assert!(slow.is_err(), "declined a mergeable child"),
            }
        }
    }

    #[test]
    fn a_child_with_anything_else_is_declined() {
        let base = Config::new(SpecVersion::V3_3);
        let mut child = Config::new(SpecVersion::V3_3);
        child.storage.links.push(Link {
            path: "/l".into(),
            target: Some("/a".into()),
            ..Default::default()
        });
        assert_eq!(merge_node_layer(&base, &child), None);
        child.storage.links.clear();
        assert!(merge_node_layer(&base, &child).is_some());
    }
}
