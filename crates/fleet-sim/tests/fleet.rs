#![allow(clippy::unwrap_used)]
//! End-to-end tests of the simulator with node-ssh as the client: real
//! sshd, real libssh2, real chrooted busybox userland.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use common::*;
use slipway_fleet_sim::{descendants, BootSource, Fault, NodeState};
use slipway_model::facts::Reachability;
use slipway_node_ssh::{
    fact_script, gather_facts, gather_fleet, public_key_of_private, HostKeyPin, NodeConn,
    NodeConnector, Ssh2Connector, SshError,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn twenty_node_fleet_reports_every_fact_and_receives_only_the_read_only_script() {
    let t = start_fleet(20, |i| {
        if i % 5 == 4 {
            NodeState::fresh("39.20240101.3.0")
        } else {
            installed(i)
        }
    });
    let results = runtime().block_on(gather_fleet(t.targets(), 8, options()));
    assert_eq!(results.len(), 20);
    for (i, (name, facts)) in results.iter().enumerate() {
        assert_eq!(name, &t.names[i]);
        assert_eq!(facts.errors, vec![], "{name}");
        assert_eq!(facts.reachability, Reachability::Reachable, "{name}");
        let node = t.fleet.node(name).unwrap();
        let state = node.state().unwrap();
        assert_eq!(facts.boot_id.as_ref(), Some(&state.boot_id), "{name}");
        assert!(facts.uptime_seconds.is_some());
        let os = facts.os.as_ref().unwrap();
        assert_eq!(os.booted, state.os);
        assert_eq!(os.pending, None);
        assert_eq!(facts.boot_entries.as_ref(), Some(&state.efi), "{name}");
        if i % 5 == 4 {
            assert_eq!(os.booted.version, "39.20240101.3.0");
            assert_eq!(facts.k3s_version, None);
            assert!(!facts.k3s_service.as_ref().unwrap().is_active());
            assert_eq!(facts.applied, None);
            assert_eq!(facts.var_canary, None);
        } else {
            assert_eq!(facts.k3s_version.as_deref(), Some("v1.30.2+k3s1"));
            let svc = facts.k3s_service.as_ref().unwrap();
            let server = i % 3 == 0;
            assert_eq!(
                svc.server == slipway_model::facts::UnitState::Active,
                server,
                "{name}"
            );
            assert_eq!(
                svc.agent == slipway_model::facts::UnitState::Active,
                !server,
                "{name}"
            );
            assert_eq!(
                facts.applied.as_ref().unwrap().os_version,
                "40.20240616.3.0"
            );
            assert_eq!(facts.var_canary.as_deref(), Some("slipway-canary"));
        }
        let commands: Vec<String> = node
            .commands_received()
            .unwrap()
            .into_iter()
            .map(|c| c.command)
            .collect();
        assert_eq!(
            commands,
            vec![fact_script()],
            "{name} received other commands"
        );
    }
}

#[test]
fn wrong_public_key_pin_is_refused_naming_both_fingerprints() {
    let t = start_fleet(1, installed);
    let (other_private, other_public) = keypair("not-the-host");
    let mut target = t.target(0);
    target.host_key = HostKeyPin::PublicKey(other_public);
    let err = Ssh2Connector::new(options()).connect(&target).unwrap_err();
    let expected = public_key_of_private(&other_private).unwrap().fingerprint;
    let actual = slipway_node_ssh::fingerprint_of_public(&t.host_public[0]).unwrap();
    match &err {
        SshError::HostKeyMismatch {
            node,
            expected: e,
            actual: a,
        } => {
            assert_eq!(node, "node-00");
            assert_eq!(e, &expected);
            assert_eq!(a, &actual);
            assert!(a.starts_with("SHA256:") && !a.ends_with('='));
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&expected) && err.to_string().contains(&actual));
    // The fan-out reports it as an unreachable node, and nothing ran there.
    let results = runtime().block_on(gather_fleet(vec![target], 1, options()));
    match &results[0].1.reachability {
        Reachability::Unreachable { reason } => {
            assert!(reason.contains("host key mismatch"), "{reason}")
        }
        r => panic!("expected unreachable, got {r:?}"),
    }
    assert_eq!(
        t.fleet
            .node("node-00")
            .unwrap()
            .commands_received()
            .unwrap(),
        vec![]
    );
}

#[test]
fn known_hosts_pins_match_mismatch_and_never_trust_unknown_hosts() {
    let t = start_fleet(1, installed);
    let port = t.fleet.node("node-00").unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let write_known = |line: &str| {
        let path = dir.path().join(format!("known_hosts-{}", line.len()));
        std::fs::write(&path, format!("# comment\n{line}\n")).unwrap();
        path
    };
    let connector = Ssh2Connector::new(options());
    let mut target = t.target(0);

    target.host_key = HostKeyPin::KnownHosts(write_known(&format!(
        "[127.0.0.1]:{port} {}",
        t.host_public[0]
    )));
    let mut conn = connector
        .connect(&target)
        .expect("matching known_hosts entry");
    assert_eq!(conn.exec("echo hi").unwrap().stdout, b"hi\n");

    let (_, other_public) = keypair("other");
    target.host_key =
        HostKeyPin::KnownHosts(write_known(&format!("[127.0.0.1]:{port} {other_public}")));
    match connector.connect(&target).unwrap_err() {
        SshError::HostKeyMismatch { expected, .. } => {
            assert_eq!(
                expected,
                slipway_node_ssh::fingerprint_of_public(&other_public).unwrap()
            )
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }

    target.host_key =
        HostKeyPin::KnownHosts(write_known(&format!("[127.0.0.1]:1 {}", t.host_public[0])));
    assert!(matches!(
        connector.connect(&target).unwrap_err(),
        SshError::UnknownHost { .. }
    ));
}

#[test]
fn a_port_that_never_speaks_ssh_times_out_instead_of_hanging() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold connections, never writing a byte.
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        if let Ok((stream, _)) = listener.accept() {
            held.push(stream);
            std::thread::sleep(Duration::from_secs(10));
        }
    });
    let (_, host_public) = keypair("silent");
    let target = slipway_node_ssh::NodeTarget {
        name: "silent".into(),
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        auth: slipway_node_ssh::Auth::Agent,
        host_key: HostKeyPin::PublicKey(host_public),
    };
    let connector = Ssh2Connector::new(slipway_node_ssh::ConnectOptions {
        command_timeout: Duration::from_millis(500),
        ..options()
    });
    let err = connector.connect(&target).unwrap_err();
    assert!(
        matches!(err, SshError::Timeout { .. }),
        "expected a timeout, got {err:?}"
    );
    drop(holder);
}

#[test]
fn malformed_shim_output_becomes_a_fact_error_and_other_facts_survive() {
    let t = start_fleet(2, installed);
    let node = t.fleet.node("node-01").unwrap();
    node.inject(Fault::MalformedOutput {
        program: "rpm-ostree".into(),
    })
    .unwrap();
    node.inject(Fault::MalformedOutput {
        program: "efibootmgr".into(),
    })
    .unwrap();
    let results = runtime().block_on(gather_fleet(t.targets(), 2, options()));
    assert_eq!(results[0].1.errors, vec![]);
    let facts = &results[1].1;
    let failing: Vec<&str> = facts.errors.iter().map(|e| e.command.as_str()).collect();
    assert_eq!(failing, vec!["rpm-ostree status --json", "efibootmgr -v"]);
    assert_eq!(facts.os, None);
    assert_eq!(facts.boot_entries, None);
    assert_eq!(facts.k3s_version.as_deref(), Some("v1.30.2+k3s1"));
    assert!(facts.boot_id.is_some());
}

#[test]
fn reboot_gives_a_new_boot_id_and_honours_boot_next_and_staged_deployments() {
    let t = start_fleet(2, |i| {
        let mut s = installed(i);
        s.pending_os = Some(slipway_model::facts::Deployment {
            version: "40.20240701.3.0".into(),
            checksum: slipway_fleet_sim::checksum_for("40.20240701.3.0"),
        });
        s
    });
    t.fleet
        .node("node-01")
        .unwrap()
        .inject(Fault::FirmwareIgnoresBootNext)
        .unwrap();
    let connector = Ssh2Connector::new(options());
    let mut before = Vec::new();
    for i in 0..2 {
        let mut conn = connector.connect(&t.target(i)).unwrap();
        let facts = gather_facts(&mut conn);
        assert_eq!(
            facts.os.as_ref().unwrap().pending.as_ref().unwrap().version,
            "40.20240701.3.0"
        );
        let out = conn.exec("efibootmgr -n 0002").unwrap();
        assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
        // The connection may die with the "power cut": either outcome is fine.
        let _ = conn.exec("systemctl reboot");
        before.push(facts.boot_id.unwrap());
    }
    for (i, old_boot_id) in before.iter().enumerate() {
        let facts = eventually("node back with a new boot id", || {
            let mut conn = connector.connect(&t.target(i)).ok()?;
            let facts = gather_facts(&mut conn);
            (facts.boot_id.as_ref()? != old_boot_id).then_some(facts)
        });
        let os = facts.os.unwrap();
        assert_eq!(os.booted.version, "40.20240701.3.0");
        assert_eq!(os.pending, None);
        let efi = facts.boot_entries.unwrap();
        let state = t.fleet.node(&t.names[i]).unwrap().state().unwrap();
        assert_eq!(state.boots, 2);
        if i == 0 {
            assert_eq!((efi.current, efi.next), (Some(2), None));
            assert_eq!(state.last_boot_source, BootSource::Network);
        } else {
            // Firmware ignored BootNext: the boot order's head booted.
            assert_eq!(efi.current, Some(1));
            assert_eq!(state.last_boot_source, BootSource::Disk);
        }
        assert!(facts.k3s_service.unwrap().is_active());
    }
}

#[test]
fn ssh_refusing_node_is_unreachable_with_a_reason_until_cleared() {
    let t = start_fleet(2, installed);
    let node = t.fleet.node("node-00").unwrap();
    node.inject(Fault::SshRefuses).unwrap();
    let rt = runtime();
    let results = rt.block_on(gather_fleet(t.targets(), 2, options()));
    match &results[0].1.reachability {
        Reachability::Unreachable { reason } => {
            assert!(
                reason.contains("cannot connect") && reason.contains("refused"),
                "{reason}"
            )
        }
        r => panic!("expected unreachable, got {r:?}"),
    }
    assert!(results[1].1.is_reachable());
    node.clear(&Fault::SshRefuses).unwrap();
    let results = rt.block_on(gather_fleet(t.targets(), 2, options()));
    assert!(results[0].1.is_reachable());
    assert_eq!(results[0].1.errors, vec![]);
}

#[test]
fn a_node_that_never_returns_stays_unreachable_and_a_slow_one_comes_back() {
    let t = start_fleet(2, installed);
    t.fleet
        .node("node-00")
        .unwrap()
        .inject(Fault::NeverReturnsAfterReboot)
        .unwrap();
    t.fleet
        .node("node-01")
        .unwrap()
        .inject(Fault::SlowBoot { delay_ms: 300 })
        .unwrap();
    for name in ["node-00", "node-01"] {
        t.fleet.node(name).unwrap().reboot().unwrap();
    }
    let connector = Ssh2Connector::new(options());
    let dead = t.fleet.node("node-00").unwrap();
    eventually("node-00 powered off", || {
        (!dead.is_up() && dead.sshd_pid().is_none()).then_some(())
    });
    let err = connector.connect(&t.target(0)).unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err:?}");
    let slow = t.fleet.node("node-01").unwrap();
    eventually("node-01 booted again", || {
        (slow.state().ok()?.boots == 2).then_some(())
    });
    eventually("node-01 reachable", || connector.connect(&t.target(1)).ok());
    assert!(!dead.is_up());
}

#[test]
fn sftp_reads_and_writes_inside_the_node() {
    let t = start_fleet(1, installed);
    let mut conn = Ssh2Connector::new(options()).connect(&t.target(0)).unwrap();
    conn.write_file("/var/lib/slipway/note", b"hello from sftp\n", 0o640)
        .unwrap();
    let node = t.fleet.node("node-00").unwrap();
    // /var is the node's var folder, bind-mounted.
    assert_eq!(
        std::fs::read(node.var().join("lib/slipway/note")).unwrap(),
        b"hello from sftp\n"
    );
    let os_release = conn.read_file("/etc/os-release").unwrap();
    assert!(String::from_utf8_lossy(&os_release).contains("40.20240616.3.0"));
    assert!(matches!(
        conn.read_file("/nonexistent").unwrap_err(),
        SshError::Sftp { .. }
    ));
    // Key-file authentication works too.
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("id_ed25519");
    std::fs::write(&key_path, t.client_key.as_bytes()).unwrap();
    let mut target = t.target(0);
    target.auth = slipway_node_ssh::Auth::KeyFile(key_path);
    let mut conn = Ssh2Connector::new(options()).connect(&target).unwrap();
    let out = conn.exec("cat /var/lib/slipway/note; exit 3").unwrap();
    assert_eq!(
        (out.status, out.stdout.as_slice()),
        (3, &b"hello from sftp\n"[..])
    );
}

#[test]
fn wrong_client_key_is_an_authentication_failure() {
    let t = start_fleet(1, installed);
    let (stranger, _) = keypair("stranger");
    let mut target = t.target(0);
    target.auth = slipway_node_ssh::Auth::KeyMemory(stranger);
    let err = Ssh2Connector::new(options()).connect(&target).unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
}

#[test]
fn dropping_the_fleet_leaves_no_process_behind() {
    let t = start_fleet(3, installed);
    let pids: Vec<u32> = t
        .fleet
        .nodes()
        .iter()
        .filter_map(|n| n.sshd_pid())
        .collect();
    assert_eq!(pids.len(), 3);
    // A command still running inside a node when the fleet goes away.
    let target = t.target(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let mut conn = Ssh2Connector::new(options()).connect(&target).unwrap();
        tx.send(()).unwrap();
        let _ = conn.exec("sleep 300");
    });
    rx.recv().unwrap();
    let node1 = t.fleet.node("node-01").unwrap();
    eventually("sleep started", || {
        node1
            .commands_received()
            .ok()?
            .iter()
            .any(|c| c.command == "sleep 300")
            .then_some(())
    });
    let tree: BTreeSet<u32> = pids.iter().flat_map(|p| descendants(*p)).collect();
    assert!(
        tree.len() > 3,
        "expected session processes under sshd: {tree:?}"
    );
    let dir = t.dir.path().to_string_lossy().into_owned();
    drop(t.fleet);
    for pid in &tree {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim().chars().next())
            .unwrap_or(None);
        assert!(
            matches!(state, None | Some('Z')),
            "process {pid} survived: {stat}"
        );
    }
    // Nor any live process anywhere mentioning the fleet's folder.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&dir) {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim().chars().next());
            assert_eq!(
                state,
                Some('Z'),
                "stray process: {}",
                String::from_utf8_lossy(&cmdline)
            );
        }
    }
    runner.join().unwrap();
}

#[test]
fn exposed_host_paths_are_visible_read_only_inside_the_node() {
    let t = start_fleet(1, installed);
    let lent = tempfile::tempdir().unwrap();
    std::fs::write(lent.path().join("tool.txt"), b"lent by the host\n").unwrap();
    let node = t.fleet.node("node-00").unwrap();
    let mut conn = Ssh2Connector::new(options()).connect(&t.target(0)).unwrap();
    let dir = lent.path().display().to_string();
    // Not exposed yet: the node's root has no such path.
    let out = conn.exec(&format!("cat {dir}/tool.txt")).unwrap();
    assert_ne!(out.status, 0);

    node.expose_host_paths(&[lent.path()]).unwrap();
    let out = conn.exec(&format!("cat {dir}/tool.txt")).unwrap();
    assert_eq!(
        (out.status, out.stdout.as_slice()),
        (0, &b"lent by the host\n"[..])
    );
    // Read-only: the node cannot change the host's files.
    let out = conn
        .exec(&format!("echo x > {dir}/written && echo wrote"))
        .unwrap();
    assert_ne!(out.status, 0, "a write succeeded: {out:?}");
    assert!(!lent.path().join("written").exists());
    // Only existing absolute paths can be lent.
    assert!(node
        .expose_host_paths(&[std::path::Path::new("relative/path")])
        .is_err());
    assert!(node
        .expose_host_paths(&[&lent.path().join("missing")])
        .is_err());
}
