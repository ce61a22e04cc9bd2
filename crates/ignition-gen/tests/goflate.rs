//! `goflate` against Go itself: for every input, our gzip must equal the bytes Go's
//! `gzip.NewWriterLevel(w, gzip.BestCompression)` writes for one `Write` and a `Close`,
//! which is what Butane puts in its data URLs. The Go program is built from
//! `tests/goflate/oracle.go` with the local toolchain (Debian's `golang-go`); the tests fail
//! loudly when `go` is missing.

#![allow(clippy::unwrap_used)] // tests may unwrap

#[path = "goflate/oracle.rs"]
mod oracle;

use std::io::Read;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use slipway_ignition_gen::butane::goflate::gzip_best;

fn check_all(cases: &[(String, Vec<u8>)]) {
    let inputs: Vec<Vec<u8>> = cases.iter().map(|(_, d)| d.clone()).collect();
    let want = oracle::oracle().gzip_all(&inputs);
    let mut failures = Vec::new();
    for ((name, data), want) in cases.iter().zip(want) {
        let got = gzip_best(data);
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b);
            failures.push(format!(
                "{name} ({} bytes in): got {} bytes, Go wrote {}, first difference at {:?}",
                data.len(),
                got.len(),
                want.len(),
                at.unwrap_or(got.len().min(want.len()))
            ));
        }
        // Independently of Go: the stream decompresses to the input.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&got[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == *data, "{name}: does not round-trip");
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ from {}:\n{}",
        failures.len(),
        cases.len(),
        oracle::oracle().version,
        failures.join("\n")
    );
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut r = rng(seed);
    (0..n).map(|_| r.gen()).collect()
}

/// Text-like data: words from a small vocabulary, so there are many short and long matches.
fn wordy(seed: u64, n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "kubelet",
        "etcd",
        "node",
        "the",
        "a",
        "=",
        "\n",
        "  ",
        "- ",
        "server",
        "token",
        "/etc/",
        "systemd",
        "ExecStart",
        "true",
        "false",
        "{",
        "}",
        ":",
        "0644",
        "k3s",
    ];
    let mut r = rng(seed);
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(WORDS[r.gen_range(0..WORDS.len())].as_bytes());
        if r.gen_bool(0.3) {
            out.push(b' ');
        }
    }
    out.truncate(n);
    out
}

fn fake_pem(seed: u64) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(random_bytes(seed, 1190));
    let mut s = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s.push_str("-----END PRIVATE KEY-----\n");
    s.into_bytes()
}

const UNIT: &str = "[Unit]
Description=K3s server
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/k3s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s server --cluster-init --token-file /etc/rancher/k3s/token
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s

[Install]
WantedBy=multi-user.target
";

const YAML: &str = "write-kubeconfig-mode: \"0644\"
tls-san:
  - k3s.example.internal
  - 10.0.0.10
node-label:
  - \"topology.kubernetes.io/zone=rack-a\"
  - \"node.slipway.dev/role=server\"
disable:
  - traefik
  - servicelb
kube-apiserver-arg:
  - \"audit-log-path=/var/log/k3s-audit.log\"
  - \"audit-log-maxage=30\"
";

const SHELL: &str = "#!/bin/bash
set -euo pipefail
for i in $(seq 1 30); do
  if curl -fsS https://127.0.0.1:6443/readyz -k >/dev/null; then
    echo \"apiserver ready after ${i} tries\"
    exit 0
  fi
  sleep 2
done
echo \"apiserver not ready\" >&2
exit 1
";

fn json_doc() -> Vec<u8> {
    let mut s = String::from("{\"nodes\":[");
    for i in 0..60 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"name\":\"node-{i:02}\",\"mac\":\"52:54:00:12:{:02x}:{:02x}\",\"role\":\"{}\",\"ip\":\"10.0.0.{}\"}}",
            i / 7,
            (i * 37) % 256,
            if i < 3 { "server" } else { "agent" },
            10 + i
        ));
    }
    s.push_str("]}\n");
    s.into_bytes()
}

fn fixture_files() -> Vec<(String, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/butane");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let name = p.strip_prefix(&root).unwrap().display().to_string();
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() > 20, "fixture files not found");
    out
}

#[test]
fn tiny_inputs_match_go() {
    let mut cases = vec![("empty".to_string(), Vec::new())];
    for n in 1..=20 {
        cases.push((format!("{n} x 'a'"), vec![b'a'; n]));
        cases.push((format!("{n} random"), random_bytes(n as u64, n)));
    }
    cases.push(("one newline".into(), b"\n".to_vec()));
    cases.push(("hello".into(), b"hello world\n".to_vec()));
    check_all(&cases);
}

#[test]
fn config_files_match_go() {
    let mut cases = vec![
        ("systemd unit".to_string(), UNIT.as_bytes().to_vec()),
        ("yaml".into(), YAML.as_bytes().to_vec()),
        ("shell".into(), SHELL.as_bytes().to_vec()),
        ("json".into(), json_doc()),
        ("pem".into(), fake_pem(7)),
        ("unit x 20".into(), UNIT.repeat(20).into_bytes()),
    ];
    cases.extend(fixture_files());
    check_all(&cases);
}

#[test]
fn repetitive_and_incompressible_inputs_match_go() {
    let cases = vec![
        ("100k 'a'".to_string(), vec![b'a'; 100_000]),
        ("1 MiB zeros".into(), vec![0; 1 << 20]),
        ("abc x 50000".into(), b"abc".repeat(50_000)),
        (
            "line x 5000".into(),
            b"line of configuration text\n".repeat(5000),
        ),
        ("random 1 KiB".into(), random_bytes(1, 1024)),
        ("random 100 KiB".into(), random_bytes(2, 100 * 1024)),
        ("random 300 KiB".into(), random_bytes(3, 300 * 1024)),
        (
            "random then text".into(),
            [random_bytes(4, 40_000), wordy(4, 40_000)].concat(),
        ),
        (
            "text then random then text".into(),
            [wordy(5, 30_000), random_bytes(5, 50_000), wordy(6, 30_000)].concat(),
        ),
        (
            "random block repeated".into(),
            random_bytes(6, 20_000).repeat(5),
        ),
    ];
    check_all(&cases);
}

#[test]
fn block_and_window_boundaries_match_go() {
    let mut cases = Vec::new();
    for &n in &[
        32_767usize,
        32_768,
        32_769,
        65_273,
        65_274,
        65_275,
        65_535,
        65_536,
        65_537,
        98_304,
        131_072,
        131_073,
    ] {
        cases.push((format!("wordy {n}"), wordy(n as u64, n)));
        cases.push((format!("random {n}"), random_bytes(n as u64, n)));
    }
    for &n in &[200_000usize, 400_000, 700_000] {
        cases.push((format!("wordy {n}"), wordy(n as u64, n)));
        cases.push((
            format!("unit-ish {n}"),
            UNIT.as_bytes().iter().copied().cycle().take(n).collect(),
        ));
    }
    // Around the size up to which the compressor uses a smaller hash table: long chains of
    // real 4-byte matches (a two-letter alphabet) and of hash neighbours (wordy text).
    for &n in &[1_000usize, 4_095, 4_096, 4_097, 5_000] {
        let mut r = rng(n as u64);
        cases.push((
            format!("two letters {n}"),
            (0..n)
                .map(|_| if r.gen_bool(0.5) { b'a' } else { b'b' })
                .collect(),
        ));
        cases.push((format!("wordy {n}"), wordy(n as u64 + 1, n)));
    }
    // Enough literals to hit the 16384-token block limit several times.
    cases.push(("random text 64 KiB".into(), {
        let mut r = rng(99);
        (0..65_536).map(|_| r.gen_range(b'a'..=b'z')).collect()
    }));
    check_all(&cases);
}

fn input_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec(prop::sample::select(b"ab \n".to_vec()), 0..6000),
        (any::<u64>(), 0usize..20_000).prop_map(|(s, n)| wordy(s, n)),
        (proptest::collection::vec(any::<u8>(), 1..40), 1usize..400)
            .prop_map(|(chunk, times)| chunk.repeat(times)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_match_go(data in input_strategy()) {
        let want = oracle::oracle().gzip(&data);
        prop_assert_eq!(gzip_best(&data), want);
    }
}
