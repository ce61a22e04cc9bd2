//! `slipway reconcile --dry-run --offline --watch`: editing the local repository produces a
//! new plan that reflects the edit (notify). The latency is printed (a benchmark figure, not
//! asserted beyond a generous bound so the test cannot be flaky).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_edit_produces_a_new_plan() {
    let (t, repo) = example_copy();
    let state = t.path().join("state");
    import_artifacts(t.path(), &state);
    let mut c = slipway();
    c.args(["reconcile", "--dry-run", "--offline", "--watch", "--repo"])
        .arg(&repo)
        .arg("--identity")
        .arg(demo_identity())
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Kill(c.spawn().unwrap());
    let (tx, rx) = mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Plan: ") && tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("first plan");
    assert!(first.starts_with("Plan: 5 to install"), "{first}");

    // Remove worker2 from the inventory: the next plan installs four nodes.
    std::thread::sleep(Duration::from_millis(300));
    let edited = Instant::now();
    std::fs::remove_file(repo.join("nodes/worker2.yaml")).unwrap();
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a new plan after the edit");
    let latency = edited.elapsed();
    assert!(second.starts_with("Plan: 4 to install"), "{second}");
    println!(
        "edit-to-plan latency with notify: {} ms",
        latency.as_millis()
    );
}
