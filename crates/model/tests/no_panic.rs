//! `check_repo` must never panic, whatever the files say: arbitrary text, and real files
//! of the example repository with random edits (the kind of damage a typo does).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use proptest::prelude::*;
use slipway_model::check::check_repo;
use slipway_model::repo::RepoFiles;

fn example() -> RepoFiles {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-repo-example");
    let mut files = RepoFiles::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

const TARGETS: [&str; 4] = [
    "cluster.yaml",
    "nodes/lenovo1.yaml",
    "nodes/worker2.yaml",
    "butane/common.bu",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), "[ -~\n\t\\[\\]{}:'\"#&*!|>%@`-]{1,8}")
            .prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<usize>(), 1usize..20).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), prop::char::any()).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match e {
            Edit::Insert(i, s) => {
                let at = i % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::Replace(i, c) => {
                if !chars.is_empty() {
                    let at = i % chars.len();
                    chars[at] = *c;
                }
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn mutated_example_files_never_panic(target in 0usize..TARGETS.len(), edits in prop::collection::vec(edit(), 1..6)) {
        let mut files = example();
        let path = TARGETS[target];
        let text = files.text(path).unwrap().to_string();
        files.insert(path, apply(&text, &edits));
        let checked = check_repo(&files, None);
        // Every diagnostic points into a real file position.
        for d in checked.diagnostics.iter() {
            prop_assert!(d.location.line >= 1 && d.location.column >= 1);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}", target in 0usize..TARGETS.len()) {
        let mut files = example();
        files.insert(TARGETS[target], text);
        let _ = check_repo(&files, None);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut files = example();
        files.insert("nodes/worker1.yaml", bytes);
        let _ = check_repo(&files, None);
    }
}
