//! File-by-file comparison of two redacted configs, with unified diffs of decoded contents.

use std::borrow::Cow;

use similar::TextDiff;

use super::files::{Contents, FileEntry, NodeFiles, SENSITIVE};
use super::types::{AttributeChange, FileChange, FileDiff};

/// `applied.json` records the commit, so it differs on every commit: never a reason.
const APPLIED_JSON: &str = slipway_ignition_gen::profile::APPLIED_JSON;

/// Compare the applied config with the desired one. `before` and `after` label the two
/// sides in diff headers (e.g. `applied, commit 1a2b3c4`). Entries that are equal, and
/// `/etc/slipway/applied.json`, are left out.
pub fn diff_files(
    applied: &NodeFiles,
    desired: &NodeFiles,
    before: &str,
    after: &str,
) -> Vec<FileDiff> {
    let mut out = Vec::new();
    let mut a = applied.iter().peekable();
    let mut d = desired.iter().peekable();
    loop {
        let (path, old, new) = match (a.peek(), d.peek()) {
            (None, None) => break,
            (Some(&(pa, ea)), Some(&(pd, ed))) if pa == pd => {
                a.next();
                d.next();
                (pa, Some(ea), Some(ed))
            }
            (Some(&(pa, ea)), Some(&(pd, _))) if pa < pd => {
                a.next();
                (pa, Some(ea), None)
            }
            (Some(&(pa, ea)), None) => {
                a.next();
                (pa, Some(ea), None)
            }
            (_, Some(&(pd, ed))) => {
                d.next();
                (pd, None, Some(ed))
            }
        };
        if path == APPLIED_JSON {
            continue;
        }
        if let Some(fd) = diff_entry(path, old, new, before, after) {
            out.push(fd);
        }
    }
    out
}

fn diff_entry(
    path: &str,
    old: Option<&FileEntry>,
    new: Option<&FileEntry>,
    before: &str,
    after: &str,
) -> Option<FileDiff> {
    if let (Some(o), Some(n)) = (old, new) {
        if o == n {
            return None;
        }
    }
    let change = match (old, new) {
        (None, _) => FileChange::Added,
        (_, None) => FileChange::Removed,
        _ => FileChange::Modified,
    };
    let mut attributes = Vec::new();
    let mut attr = |name: &'static str, f: &dyn Fn(&FileEntry) -> Option<String>| {
        let (b, a) = (old.and_then(f), new.and_then(f));
        if b != a {
            attributes.push(AttributeChange {
                name,
                before: b,
                after: a,
            });
        }
    };
    attr("kind", &|e| Some(kind(&e.contents).to_string()));
    attr("mode", &|e| e.mode.map(|m| format!("{m:04o}")));
    attr("owner", &|e| e.owner.clone());
    attr("enabled", &|e| e.enabled.map(|b| b.to_string()));
    attr("masked", &|e| e.masked.then(|| "true".to_string()));
    if change != FileChange::Modified {
        // The kind of an added or removed file is not a change of kind.
        attributes.retain(|a| a.name != "kind");
    }
    let secret_changed = match (old, new) {
        (Some(o), Some(n)) => o.secret_differs(n),
        (Some(e), None) | (None, Some(e)) => e.holds_secret(),
        (None, None) => false,
    };
    let old_text = old.map(|e| as_text(&e.contents));
    let new_text = new.map(|e| as_text(&e.contents));
    let (mut diff, mut note) = (None, None);
    match (old_text, new_text) {
        (Some(None), _) | (_, Some(None)) => {
            let show =
                |e: Option<&FileEntry>| e.map_or("(none)".to_string(), |e| summary(&e.contents));
            if old.map(|e| &e.contents) != new.map(|e| &e.contents) {
                note = Some(format!("{} → {}", show(old), show(new)));
            }
        }
        (o, n) => {
            let o = o.flatten().unwrap_or(Cow::Borrowed(""));
            let n = n.flatten().unwrap_or(Cow::Borrowed(""));
            if o != n {
                diff = Some(
                    TextDiff::from_lines(o.as_ref(), n.as_ref())
                        .unified_diff()
                        .context_radius(3)
                        .header(&format!("{path} ({before})"), &format!("{path} ({after})"))
                        .to_string(),
                );
            }
        }
    }
    Some(FileDiff {
        path: path.to_string(),
        change,
        attributes,
        secret_changed,
        diff,
        note,
    })
}

fn kind(c: &Contents) -> &'static str {
    match c {
        Contents::Text(_) | Contents::Binary { .. } | Contents::Sensitive => "file",
        Contents::Remote { .. } => "remote file",
        Contents::Link { .. } => "link",
        Contents::Directory => "directory",
    }
}

/// Contents as text for a line diff; `None` for bytes that cannot be shown.
fn as_text(c: &Contents) -> Option<Cow<'_, str>> {
    match c {
        Contents::Text(t) => Some(Cow::Borrowed(t)),
        Contents::Sensitive => Some(Cow::Owned(format!("{SENSITIVE}\n"))),
        Contents::Remote { source, hash } => Some(Cow::Owned(format!(
            "source: {source}\nverification: {}\n",
            hash.as_deref().unwrap_or("(none)")
        ))),
        Contents::Link { target, hard } => Some(Cow::Owned(format!(
            "{} to {target}\n",
            if *hard { "hard link" } else { "link" }
        ))),
        Contents::Directory => Some(Cow::Borrowed("")),
        Contents::Binary { .. } => None,
    }
}

fn summary(c: &Contents) -> String {
    match c {
        Contents::Binary { len, sha256 } => {
            format!(
                "binary, {len} bytes, sha256 {}",
                sha256.get(..12).unwrap_or(sha256)
            )
        }
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::files::RawFiles;
    use super::*;

    fn one(old: &RawFiles, new: &RawFiles, secrets: &[&str]) -> Vec<FileDiff> {
        diff_files(
            &old.redact(secrets),
            &new.redact(secrets),
            "applied",
            "desired",
        )
    }

    #[test]
    fn equal_files_and_applied_json_are_left_out() {
        let mut a = RawFiles::new();
        a.file("/etc/hostname", Some(0o644), None, "n1\n");
        a.file(APPLIED_JSON, Some(0o644), None, "{\"commit\": \"1\"}\n");
        let mut b = RawFiles::new();
        b.file("/etc/hostname", Some(0o644), None, "n1\n");
        b.file(APPLIED_JSON, Some(0o644), None, "{\"commit\": \"2\"}\n");
        assert!(one(&a, &b, &[]).is_empty());
    }

    #[test]
    fn attribute_changes_are_listed_without_a_content_diff() {
        let mut a = RawFiles::new();
        a.file("/etc/x", Some(0o644), Some("root:root"), "same\n");
        a.unit("k3s.service", Some(true), false, Some("[Unit]\n"));
        let mut b = RawFiles::new();
        b.file("/etc/x", Some(0o600), Some("core:core"), "same\n");
        b.unit("k3s.service", Some(false), true, Some("[Unit]\n"));
        let d = one(&a, &b, &[]);
        assert_eq!(d.len(), 2);
        let x = d.iter().find(|f| f.path == "/etc/x").unwrap();
        assert_eq!(x.change, FileChange::Modified);
        assert!(x.diff.is_none());
        let names: Vec<(&str, Option<&str>, Option<&str>)> = x
            .attributes
            .iter()
            .map(|a| (a.name, a.before.as_deref(), a.after.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("mode", Some("0644"), Some("0600")),
                ("owner", Some("root:root"), Some("core:core"))
            ]
        );
        let u = d.iter().find(|f| f.path == "systemd:k3s.service").unwrap();
        let names: Vec<&str> = u.attributes.iter().map(|a| a.name).collect();
        assert_eq!(names, vec!["enabled", "masked"]);
    }

    #[test]
    fn binary_contents_get_a_note_not_a_diff() {
        let mut a = RawFiles::new();
        a.file("/bin/x", None, None, vec![0xff, 0x00]);
        let mut b = RawFiles::new();
        b.file("/bin/x", None, None, vec![0xff, 0x01, 0x02]);
        let d = one(&a, &b, &[]);
        assert!(d[0].diff.is_none());
        let note = d[0].note.as_deref().unwrap();
        assert!(
            note.starts_with("binary, 2 bytes") && note.contains("→ binary, 3 bytes"),
            "{note}"
        );
    }

    #[test]
    fn a_secret_only_change_has_no_visible_diff_but_is_flagged() {
        let mut a = RawFiles::new();
        a.file("/etc/key", Some(0o600), None, "OLDSECRETKEY\n");
        a.file("/etc/conf", None, None, "token=OLDTOKEN1\nx=1\n");
        let mut b = RawFiles::new();
        b.file("/etc/key", Some(0o600), None, "NEWSECRETKEY\n");
        b.file("/etc/conf", None, None, "token=NEWTOKEN1\nx=2\n");
        let d = one(
            &a,
            &b,
            &["OLDSECRETKEY", "NEWSECRETKEY", "OLDTOKEN1", "NEWTOKEN1"],
        );
        let key = d.iter().find(|f| f.path == "/etc/key").unwrap();
        assert!(key.secret_changed && key.diff.is_none() && key.note.is_none());
        let conf = d.iter().find(|f| f.path == "/etc/conf").unwrap();
        assert!(conf.secret_changed);
        let text = conf.diff.as_deref().unwrap();
        assert!(text.contains("-x=1") && text.contains("+x=2"), "{text}");
        assert!(text.contains(" token=(sensitive)"), "{text}");
        assert!(!text.contains("TOKEN1"));
    }

    #[test]
    fn remote_sources_and_links_diff_as_text() {
        let mut a = RawFiles::new();
        a.remote(
            "/usr/local/bin/k3s",
            Some(0o755),
            "http://h/a/k3s",
            Some("sha256-a"),
        );
        let mut b = RawFiles::new();
        b.remote(
            "/usr/local/bin/k3s",
            Some(0o755),
            "http://h/b/k3s",
            Some("sha256-b"),
        );
        let d = one(&a, &b, &[]);
        let text = d[0].diff.as_deref().unwrap();
        assert!(
            text.contains("-source: http://h/a/k3s") && text.contains("+verification: sha256-b")
        );
        assert!(text
            .starts_with("--- /usr/local/bin/k3s (applied)\n+++ /usr/local/bin/k3s (desired)\n"));
    }
}
