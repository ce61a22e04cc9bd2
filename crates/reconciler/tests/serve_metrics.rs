//! `/metrics`, `/healthz`, `/readyz`: scraped over real HTTP on 127.0.0.1 and parsed by a
//! strict OpenMetrics text parser written here (families declared with TYPE and HELP before
//! their samples, escaped label values, one `# EOF` at the end).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slipway::serve::metrics::{router, Metrics, OPENMETRICS_CONTENT_TYPE};

// ---------------------------------------------------------------------------------------
// A strict OpenMetrics text parser (the subset prometheus-client writes: gauges, counters,
// units; no exemplars or timestamps).
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Family {
    kind: String,
    help: String,
    unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    families: HashMap<String, Family>,
    samples: Vec<Sample>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (key, after) = rest.split_once("=\"").expect("label key=\"value\"");
        assert!(is_name(key), "bad label name {key:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("unterminated label value");
            match c {
                '"' => break i,
                '\\' => match chars.next().expect("dangling escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("bad escape \\{other}"),
                },
                '\n' => panic!("raw newline in a label value"),
                c => value.push(c),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "duplicate label {key}"
        );
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
        } else {
            assert!(rest.starts_with('}'), "labels end with }}: {rest:?}");
        }
    }
}

fn family_of<'a>(name: &'a str, families: &HashMap<String, Family>) -> &'a str {
    if families.contains_key(name) {
        return name;
    }
    let base = name
        .strip_suffix("_total")
        .expect("a sample of an undeclared family");
    assert_eq!(
        families[base].kind, "counter",
        "only counters end in _total"
    );
    base
}

/// Metadata lines seen for a family whose samples have not started yet.
#[derive(Debug, Default)]
struct Declared {
    kind: Option<String>,
    help: Option<String>,
    unit: Option<String>,
}

fn promote(pending: &mut HashMap<String, Declared>, families: &mut HashMap<String, Family>) {
    for (fam, d) in pending.drain() {
        families.insert(
            fam.clone(),
            Family {
                kind: d.kind.unwrap_or_else(|| panic!("{fam} has no TYPE")),
                help: d.help.unwrap_or_else(|| panic!("{fam} has no HELP")),
                unit: d.unit,
            },
        );
    }
}

fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .expect("ends with a newline")
        .split('\n')
        .collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    let mut pending: HashMap<String, Declared> = HashMap::new();
    for line in &lines[..lines.len() - 1] {
        if let Some(meta) = line.strip_prefix("# ") {
            let (what, rest) = meta.split_once(' ').unwrap();
            let (name, arg) = rest.split_once(' ').unwrap();
            assert!(is_name(name), "bad metric name {name:?}");
            assert!(
                !e.families.contains_key(name),
                "{name} declared after its samples"
            );
            let p = pending.entry(name.to_owned()).or_default();
            match what {
                "TYPE" => {
                    assert!(["gauge", "counter", "info", "stateset", "unknown"].contains(&arg));
                    p.kind = Some(arg.to_owned());
                }
                "HELP" => p.help = Some(arg.to_owned()),
                "UNIT" => {
                    assert!(
                        name.ends_with(&format!("_{arg}")),
                        "{name} ends with its unit"
                    );
                    p.unit = Some(arg.to_owned());
                }
                other => panic!("unknown metadata {other}"),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let name_end = line.find(['{', ' ']).expect("sample name");
        let name = &line[..name_end];
        assert!(is_name(name), "bad sample name {name:?}");
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(after) => parse_labels(after),
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let value_text = rest.strip_prefix(' ').expect("one space before the value");
        assert!(
            !value_text.contains(' '),
            "no timestamps or exemplars expected: {line}"
        );
        let value: f64 = value_text.parse().expect("a number");
        // Promote declarations once their first sample shows up.
        promote(&mut pending, &mut e.families);
        let fam = family_of(name, &e.families).to_owned();
        assert!(e.families.contains_key(&fam));
        e.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    promote(&mut pending, &mut e.families);
    let mut seen = std::collections::HashSet::new();
    for s in &e.samples {
        assert!(
            seen.insert((s.name.clone(), s.labels.clone())),
            "duplicate series {s:?}"
        );
    }
    e
}

impl Exposition {
    fn series(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| (s.labels.clone(), s.value))
            .collect()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// HTTP on loopback.
// ---------------------------------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn serve(app: axum::Router) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, _rt: rt }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\naccept: application/openmetrics-text\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect::<Vec<_>>();
    let reply = Reply {
        status,
        headers,
        body: body.to_owned(),
    };
    if let Some(len) = reply.header("content-length") {
        assert_eq!(len.parse::<usize>().unwrap(), reply.body.len());
    }
    reply
}

fn scrape(addr: SocketAddr) -> Exposition {
    let r = request(addr, "GET", "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
    parse(&r.body)
}

// ---------------------------------------------------------------------------------------

#[test]
fn every_metric_is_declared_with_help_and_the_slipway_prefix() {
    let m = Metrics::new();
    let server = serve(router(m.clone(), || true));
    let e = scrape(server.addr);
    let mut names: Vec<&str> = e.families.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "slipway_applied_commit",
            "slipway_errors",
            "slipway_fetched_commit",
            "slipway_fleet_lock_held",
            "slipway_fleet_lock_holder",
            "slipway_maintenance_window_open",
            "slipway_mirror_state",
            "slipway_node_facts_age_seconds",
            "slipway_node_phase",
            "slipway_plan_actions",
            "slipway_suspended",
        ]
    );
    for (name, f) in &e.families {
        assert!(f.help.len() > 10, "{name} has a real HELP: {:?}", f.help);
    }
    assert_eq!(e.families["slipway_errors"].kind, "counter");
    assert_eq!(e.families["slipway_node_phase"].kind, "gauge");
    assert_eq!(
        e.families["slipway_node_facts_age_seconds"].unit.as_deref(),
        Some("seconds")
    );
    // Before the daemon says anything: plain gauges at 0, no labelled series.
    assert_eq!(e.value("slipway_fleet_lock_held", &[]), Some(0.0));
    assert_eq!(e.value("slipway_maintenance_window_open", &[]), Some(0.0));
    assert_eq!(e.value("slipway_suspended", &[]), Some(0.0));
    assert!(e.series("slipway_node_phase").is_empty());
}

#[test]
fn the_daemon_s_values_come_back_out_of_a_scrape() {
    let m = Metrics::new();
    let server = serve(router(m.clone(), || true));

    m.set_fetched_commit("1111111111111111111111111111111111111111");
    m.set_applied_commit("0000000000000000000000000000000000000000");
    m.set_plan_counts(&[("reinstall", 2), ("upgrade-os", 3), ("noop", 0)]);
    m.set_node_phase("server1", "draining");
    m.set_node_phase("agent1", "idle");
    m.set_facts_age("server1", 12.5);
    m.set_mirror_state("fcos 41.20250105.3.0", "ok");
    m.set_lock_holder(Some("slipway-rollout"));
    m.inc_error("ssh");
    m.inc_error("ssh");
    m.inc_error("fetch");
    m.set_window_open(true);
    m.set_suspended(true);

    let e = scrape(server.addr);
    assert_eq!(
        e.series("slipway_fetched_commit"),
        vec![(
            labels(&[("commit", "1111111111111111111111111111111111111111")]),
            1.0
        )]
    );
    assert_eq!(
        e.series("slipway_applied_commit"),
        vec![(
            labels(&[("commit", "0000000000000000000000000000000000000000")]),
            1.0
        )]
    );
    assert_eq!(
        e.value("slipway_plan_actions", &[("action", "reinstall")]),
        Some(2.0)
    );
    assert_eq!(
        e.value("slipway_plan_actions", &[("action", "upgrade-os")]),
        Some(3.0)
    );
    assert_eq!(
        e.value("slipway_plan_actions", &[("action", "noop")]),
        Some(0.0)
    );
    assert_eq!(
        e.value(
            "slipway_node_phase",
            &[("node", "server1"), ("phase", "draining")]
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value(
            "slipway_node_phase",
            &[("node", "agent1"), ("phase", "idle")]
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value("slipway_node_facts_age_seconds", &[("node", "server1")]),
        Some(12.5)
    );
    assert_eq!(
        e.value(
            "slipway_mirror_state",
            &[("artifact", "fcos 41.20250105.3.0"), ("state", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(e.value("slipway_fleet_lock_held", &[]), Some(1.0));
    assert_eq!(
        e.series("slipway_fleet_lock_holder"),
        vec![(labels(&[("holder", "slipway-rollout")]), 1.0)]
    );
    assert_eq!(
        e.value("slipway_errors_total", &[("kind", "ssh")]),
        Some(2.0)
    );
    assert_eq!(
        e.value("slipway_errors_total", &[("kind", "fetch")]),
        Some(1.0)
    );
    assert_eq!(e.value("slipway_maintenance_window_open", &[]), Some(1.0));
    assert_eq!(e.value("slipway_suspended", &[]), Some(1.0));

    // Changes replace the previous series instead of adding to them.
    m.set_fetched_commit("2222222222222222222222222222222222222222");
    m.set_plan_counts(&[("reinstall", 1)]);
    m.set_node_phase("server1", "rebooting");
    m.set_node_phase("server1", "ready");
    m.set_mirror_state("fcos 41.20250105.3.0", "failed");
    m.set_lock_holder(Some("c988d2509fdf4cdcbed39037c56406fb"));
    m.set_window_open(false);
    m.set_suspended(false);
    m.inc_error("ssh");

    let e = scrape(server.addr);
    assert_eq!(
        e.series("slipway_fetched_commit"),
        vec![(
            labels(&[("commit", "2222222222222222222222222222222222222222")]),
            1.0
        )]
    );
    assert_eq!(
        e.series("slipway_plan_actions"),
        vec![(labels(&[("action", "reinstall")]), 1.0)]
    );
    let mut phases = e.series("slipway_node_phase");
    phases.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        phases,
        vec![
            (labels(&[("node", "agent1"), ("phase", "idle")]), 1.0),
            (labels(&[("node", "server1"), ("phase", "ready")]), 1.0),
        ]
    );
    assert_eq!(
        e.series("slipway_mirror_state"),
        vec![(
            labels(&[("artifact", "fcos 41.20250105.3.0"), ("state", "failed")]),
            1.0
        )]
    );
    assert_eq!(
        e.series("slipway_fleet_lock_holder"),
        vec![(
            labels(&[("holder", "c988d2509fdf4cdcbed39037c56406fb")]),
            1.0
        )]
    );
    assert_eq!(
        e.value("slipway_errors_total", &[("kind", "ssh")]),
        Some(3.0)
    );
    assert_eq!(e.value("slipway_maintenance_window_open", &[]), Some(0.0));
    assert_eq!(e.value("slipway_suspended", &[]), Some(0.0));

    // The lock is released; a node leaves the inventory.
    m.set_lock_holder(None);
    m.forget_node("server1");
    let e = scrape(server.addr);
    assert_eq!(e.value("slipway_fleet_lock_held", &[]), Some(0.0));
    assert!(e.series("slipway_fleet_lock_holder").is_empty());
    assert_eq!(
        e.series("slipway_node_phase"),
        vec![(labels(&[("node", "agent1"), ("phase", "idle")]), 1.0)]
    );
    assert!(e.series("slipway_node_facts_age_seconds").is_empty());
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    let tricky = "say \"hi\" \\ bye\nnext";
    m.set_mirror_state(tricky, "ok");
    let e = parse(&m.render());
    assert_eq!(
        e.value(
            "slipway_mirror_state",
            &[("artifact", tricky), ("state", "ok")]
        ),
        Some(1.0)
    );
}

#[test]
fn clones_share_one_registry() {
    let m = Metrics::new();
    let other = m.clone();
    std::thread::spawn(move || other.set_node_phase("agent2", "installing"))
        .join()
        .unwrap();
    let e = parse(&m.render());
    assert_eq!(
        e.value(
            "slipway_node_phase",
            &[("node", "agent2"), ("phase", "installing")]
        ),
        Some(1.0)
    );
}

#[test]
fn health_and_readiness() {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let server = serve(router(Metrics::new(), move || flag.load(Ordering::SeqCst)));

    let h = request(server.addr, "GET", "/healthz");
    assert_eq!((h.status, h.body.trim()), (200, "ok"));
    let r = request(server.addr, "GET", "/readyz");
    assert_eq!(r.status, 503);
    ready.store(true, Ordering::SeqCst);
    let r = request(server.addr, "GET", "/readyz");
    assert_eq!((r.status, r.body.trim()), (200, "ready"));

    assert_eq!(request(server.addr, "POST", "/metrics").status, 405);
    assert_eq!(request(server.addr, "GET", "/nothing").status, 404);
}
