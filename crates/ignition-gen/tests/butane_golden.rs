//! Golden tests: every `tests/fixtures/butane/<case>/input.bu` translates to exactly
//! `expected.ign` (with `files/` as the files directory when present), and every expected
//! output of spec 3.0.0 to 3.3.0 passes the real `ignition-validate`.
//!
//! Expected outputs were written from Butane's docs and source (see the notes in each case),
//! never copied from this crate's output. Data URLs are compared byte for byte, gzip ones
//! included; every data URL in an expected output is checked against Go's own
//! `compress/gzip` (the oracle in `tests/goflate/`): gzip bytes must be exactly Go's, and
//! the gzip-or-not choice must be the one Butane makes with Go's bytes.

#![allow(clippy::unwrap_used)] // tests may unwrap

#[path = "goflate/oracle.rs"]
mod oracle;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use slipway_ignition_gen::butane::{translate, TranslateOptions};
use slipway_ignition_gen::files::{FileSource, MemFileSource, NoFiles};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/butane");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("input.bu").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "expected the fixture cases, found {}",
        cases.len()
    );
    cases
}

fn load_files(dir: &Path) -> MemFileSource {
    fn walk(root: &Path, dir: &Path, mut fs: MemFileSource) -> MemFileSource {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                fs = fs.symlink(&rel, t.to_str().unwrap());
            } else if meta.is_dir() {
                fs = walk(root, &p, fs);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let data = std::fs::read(&p).unwrap();
                fs = if meta.permissions().mode() & 0o111 != 0 {
                    fs.executable(&rel, data)
                } else {
                    fs.file(&rel, data)
                };
            }
        }
        fs
    }
    walk(dir, dir, MemFileSource::new())
}

fn run(case: &Path) -> (String, String) {
    let input = fs::read_to_string(case.join("input.bu")).unwrap();
    let expected = fs::read_to_string(case.join("expected.ign")).unwrap();
    let files_dir = case.join("files");
    let mem;
    let files: &dyn FileSource = if files_dir.is_dir() {
        mem = load_files(&files_dir);
        &mem
    } else {
        &NoFiles
    };
    let name = case.file_name().unwrap().to_str().unwrap();
    let t = translate(
        &format!("{name}/input.bu"),
        &input,
        &TranslateOptions::default(),
        files,
    )
    .unwrap_or_else(|d| panic!("{name}: translation failed: {d:#?}"));
    assert!(
        t.warnings.is_empty(),
        "{name}: unexpected warnings {:#?}",
        t.warnings
    );
    (t.to_json(false), expected.trim_end().to_string())
}

#[test]
fn golden_outputs_match_butane() {
    let mut failures = Vec::new();
    for case in fixtures() {
        let (got, expected) = run(&case);
        if got != expected {
            failures.push(format!(
                "{}:\n  got      {got}\n  expected {expected}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn pretty_output_is_two_space_indented_same_value() {
    let case = fixtures()
        .into_iter()
        .find(|c| c.ends_with("v1_4_files_units_passwd"))
        .unwrap();
    let input = fs::read_to_string(case.join("input.bu")).unwrap();
    let t = translate("in.bu", &input, &TranslateOptions::default(), &NoFiles).unwrap();
    let pretty = t.to_json(true);
    assert!(
        pretty.starts_with("{\n  \"ignition\": {\n    \"version\": \"3.3.0\"\n  },\n"),
        "{pretty}"
    );
    let a: Value = serde_json::from_str(&pretty).unwrap();
    let b: Value = serde_json::from_str(&t.to_json(false)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn expected_outputs_up_to_3_3_pass_ignition_validate() {
    let tool = Path::new("/usr/bin/ignition-validate");
    assert!(
        tool.exists(),
        "ignition-validate is missing: install the Debian package `ignition` (apt-get install -y ignition)"
    );
    let mut checked = 0;
    for case in fixtures() {
        let expected = case.join("expected.ign");
        let text = fs::read_to_string(&expected).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let version = v["ignition"]["version"].as_str().unwrap().to_string();
        if !["3.0.0", "3.1.0", "3.2.0", "3.3.0"].contains(&version.as_str()) {
            continue;
        }
        // Validate what we produce, which equals the expected file (checked above).
        let (got, _) = run(&case);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        fs::write(tmp.path(), got).unwrap();
        let out = Command::new(tool)
            .arg(tmp.path())
            .output()
            .expect("running ignition-validate");
        assert!(
            out.status.success(),
            "{}: ignition-validate rejected it: {}{}",
            case.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} configs validated");
}

/// The bytes a data URL carries: `,<percent-escaped>` or `;base64,<base64>`.
fn data_url_bytes(url: &str) -> Vec<u8> {
    if let Some(b64) = url.strip_prefix("data:;base64,") {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
    }
    let text = url.strip_prefix("data:,").unwrap();
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Every `{source: "data:...", compression: ...}` pair in `v`.
fn data_urls<'a>(v: &'a Value, out: &mut Vec<(&'a str, &'a str)>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(src)), Some(Value::String(comp))) =
                (m.get("source"), m.get("compression"))
            {
                if src.starts_with("data:") {
                    out.push((src, comp));
                }
            }
            m.values().for_each(|v| data_urls(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| data_urls(v, out)),
        _ => {}
    }
}

/// Expected outputs against Go itself: a gzip data URL must hold exactly the bytes Go's
/// `gzip.NewWriterLevel(BestCompression)` writes for its contents, and a data URL Butane
/// left uncompressed must be one where Go's gzip would not have been shorter (Butane's rule:
/// the gzip URL plus the four bytes of `gzip` must beat the best other encoding). No fixture
/// has user-compressed inline contents, whose bytes are the user's and not Go's.
#[test]
fn expected_data_urls_agree_with_go() {
    let go = oracle::oracle();
    let mut gzipped = 0;
    let mut plain = 0;
    let mut failures = Vec::new();
    for case in fixtures() {
        let text = fs::read_to_string(case.join("expected.ign")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut urls = Vec::new();
        data_urls(&v, &mut urls);
        for (url, comp) in urls {
            let opaque_len = url.len() - "data:".len();
            if comp == "gzip" {
                let gz = data_url_bytes(url);
                let mut contents = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut contents)
                    .unwrap();
                if go.gzip(&contents) != gz {
                    failures.push(format!("{}: gzip bytes are not Go's", case.display()));
                }
                gzipped += 1;
            } else if comp.is_empty() {
                let contents = data_url_bytes(url);
                let gz_len = ";base64,".len()
                    + base64::engine::general_purpose::STANDARD
                        .encode(go.gzip(&contents))
                        .len();
                if gz_len + "gzip".len() < opaque_len {
                    failures.push(format!(
                        "{}: Butane would gzip {url:.60}...",
                        case.display()
                    ));
                }
                plain += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} (checked with {})",
        failures.join("\n"),
        go.version
    );
    assert!(
        gzipped >= 1 && plain >= 5,
        "only {gzipped} gzip and {plain} plain data URLs"
    );
}
