//! Publishing a whole directory tree to a remote host over SFTP, atomically
//! as far as SFTP allows.
//!
//! SFTP (version 3, what OpenSSH and OpenWRT's servers speak) has no
//! "rename over an existing directory": `rename` fails when the target
//! exists. So [`replace_tree`] publishes `<parent>/<name>` like this:
//!
//! 1. upload every file into `<parent>/.<name>.slipway-upload-<id>`;
//! 2. rename the published `<parent>/<name>` to
//!    `<parent>/.<name>.slipway-old-<id>`;
//! 3. rename the upload into place as `<parent>/<name>`;
//! 4. remove the old tree.
//!
//! Between steps 2 and 3 — two round trips — the public name briefly does not
//! exist, and a web server asked then answers 404. It never serves a half
//! tree: the tree under the public name is always either the previous one or
//! the new one, complete. A failure during the upload leaves the previous
//! tree untouched; a failure of step 3 renames the previous tree back. A
//! crash between steps 2 and 3 leaves the previous tree at the backup name
//! and the new one, complete, at the upload name; the next call puts the
//! previous tree back under the public name before doing anything else, and
//! removes every leftover.
//!
//! Besides files, a tree may hold symbolic links ([`RemoteFile::symlink`]),
//! created in the upload folder after every file and before the swap — e.g.
//! a link to a persistent folder of large files that outlives every tree,
//! so they are uploaded once rather than with each tree. Removing a tree
//! removes its links, never what they point at.
//!
//! One publisher per target at a time: a second concurrent publisher to the
//! same `<parent>/<name>` would remove the first one's upload as a leftover.

use std::fmt;

use crate::{NodeConn, SshError};

/// What kind of thing a remote path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// Anything else (device, socket, FIFO, unknown).
    Other,
}

/// One remote directory entry, as listed or stat'ed over SFTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The entry's own name (no folder).
    pub name: String,
    /// File, directory, symbolic link, ...
    pub kind: RemoteKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Size in bytes as the server reports it.
    pub size: u64,
}

/// One file (or symbolic link) of a tree to publish.
#[derive(Clone, Copy)]
pub struct RemoteFile<'a> {
    /// Path relative to the tree's root, `/`-separated, e.g. `ipxe/aa-bb.ipxe`.
    pub path: &'a str,
    /// The bytes (never printed: they may be secret); for a symbolic link,
    /// its target (UTF-8, e.g. `../site.artifacts`).
    pub contents: &'a [u8],
    /// Exact permission bits, e.g. `0o644` or `0o600` (ignored for a link).
    pub mode: u32,
    /// [`RemoteKind::File`] or [`RemoteKind::Symlink`]; anything else is
    /// refused by [`replace_tree`].
    pub kind: RemoteKind,
}

impl<'a> RemoteFile<'a> {
    /// A regular file with exactly these permission bits.
    pub fn file(path: &'a str, contents: &'a [u8], mode: u32) -> Self {
        RemoteFile {
            path,
            contents,
            mode,
            kind: RemoteKind::File,
        }
    }

    /// A symbolic link at `path` whose content is `target` (relative targets
    /// are resolved from the link's folder, so they survive the swap).
    pub fn symlink(path: &'a str, target: &'a str) -> Self {
        RemoteFile {
            path,
            contents: target.as_bytes(),
            mode: 0o777,
            kind: RemoteKind::Symlink,
        }
    }
}

impl fmt::Debug for RemoteFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFile")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("len", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// What [`replace_tree`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaceReport {
    /// Files uploaded (symbolic links not counted).
    pub files: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Symbolic links created.
    pub links: usize,
    /// Whether a previously published tree was replaced (false: first publish).
    pub replaced_previous: bool,
    /// Whether a tree left at the backup name by an interrupted publish was
    /// put back under the public name first.
    pub restored_interrupted: bool,
    /// Leftovers of earlier interrupted publishes that were removed.
    pub removed_leftovers: Vec<String>,
    /// Paths that could not be removed afterwards (the publish itself
    /// succeeded); the next publish tries again.
    pub not_removed: Vec<String>,
}

/// Mode of the directories created for the tree.
const DIR_MODE: u32 = 0o755;

/// Publish `files` as the complete content of `<parent>/<name>`, replacing
/// what was there (see the [module docs](self) for the exact steps and the
/// guarantees). `id` names this publish's temporary folders; it must be a
/// plain name (e.g. a generation id).
///
/// Creates `parent` if needed. File paths must be relative and plain (no
/// `..`, `.`, empty segments or NUL), and a link's target non-empty UTF-8
/// without NUL; they are checked before anything remote is touched. Links
/// are created after every file.
pub fn replace_tree<C: NodeConn + ?Sized>(
    conn: &mut C,
    node: &str,
    parent: &str,
    name: &str,
    id: &str,
    files: &[RemoteFile<'_>],
) -> Result<ReplaceReport, SshError> {
    check_segment(name)?;
    check_segment(id)?;
    if parent.is_empty() || parent.contains('\0') {
        return Err(SshError::UnsafeRemotePath {
            path: parent.to_string(),
            reason: "the parent folder must be a non-empty path",
        });
    }
    let mut dirs = std::collections::BTreeSet::new();
    let mut links = Vec::new();
    for f in files {
        check_relative(f.path)?;
        match f.kind {
            RemoteKind::File => {}
            RemoteKind::Symlink => match std::str::from_utf8(f.contents) {
                Ok(t) if !t.is_empty() && !t.contains('\0') => links.push((f.path, t)),
                _ => {
                    return Err(SshError::UnsafeRemotePath {
                        path: f.path.to_string(),
                        reason: "a link's target must be non-empty UTF-8 without NUL",
                    })
                }
            },
            RemoteKind::Dir | RemoteKind::Other => {
                return Err(SshError::UnsafeRemotePath {
                    path: f.path.to_string(),
                    reason: "only files and symbolic links can be published",
                })
            }
        }
        let mut parts: Vec<&str> = f.path.split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
    }

    let public = join(parent, name);
    let upload = join(parent, &format!(".{name}.slipway-upload-{id}"));
    let old = join(parent, &format!(".{name}.slipway-old-{id}"));
    let mut report = ReplaceReport::default();

    conn.make_dirs(parent, DIR_MODE)?;
    recover(conn, parent, name, &mut report)?;

    // 1. Upload into the side folder. On failure, remove it; the published
    //    tree was not touched.
    let uploaded = (|| {
        conn.make_dirs(&upload, DIR_MODE)?;
        for dir in &dirs {
            conn.make_dirs(&join(&upload, dir), DIR_MODE)?;
        }
        for f in files.iter().filter(|f| f.kind == RemoteKind::File) {
            conn.write_file(&join(&upload, f.path), f.contents, f.mode)?;
            report.files += 1;
            report.bytes += f.contents.len() as u64;
        }
        for (path, target) in &links {
            conn.symlink(target, &join(&upload, path))?;
            report.links += 1;
        }
        Ok(())
    })();
    if let Err(e) = uploaded {
        if conn.remove_all(&upload).is_err() {
            tracing::warn!(path = %upload, "could not remove the failed upload; the next publish will");
        }
        return Err(e);
    }

    // 2. + 3. Swap.
    let had_previous = conn.metadata(&public)?.is_some();
    if had_previous {
        if let Err(e) = conn.rename(&public, &old) {
            let _ = conn.remove_all(&upload);
            return Err(SshError::SwapFailed {
                node: node.to_string(),
                path: public,
                step: "moving the published tree aside",
                message: e.to_string(),
                restored: true,
            });
        }
    }
    if let Err(e) = conn.rename(&upload, &public) {
        let restored = !had_previous || conn.rename(&old, &public).is_ok();
        if restored {
            let _ = conn.remove_all(&upload);
        }
        return Err(SshError::SwapFailed {
            node: node.to_string(),
            path: public,
            step: "moving the new tree into place",
            message: e.to_string(),
            restored,
        });
    }
    report.replaced_previous = had_previous;

    // 4. Remove the previous tree; failing that is only a leftover.
    if had_previous && conn.remove_all(&old).is_err() {
        tracing::warn!(path = %old, "could not remove the previous tree; the next publish will");
        report.not_removed.push(old);
    }
    tracing::info!(
        node,
        path = %public,
        files = report.files,
        bytes = report.bytes,
        "published tree"
    );
    Ok(report)
}

/// Undo an interrupted swap (public name missing, backup present) and remove
/// leftovers of earlier publishes of the same tree.
fn recover<C: NodeConn + ?Sized>(
    conn: &mut C,
    parent: &str,
    name: &str,
    report: &mut ReplaceReport,
) -> Result<(), SshError> {
    let upload_prefix = format!(".{name}.slipway-upload-");
    let old_prefix = format!(".{name}.slipway-old-");
    let entries = conn.list_dir(parent)?;
    let public_exists = entries.iter().any(|e| e.name == name);
    let mut olds: Vec<&str> = entries
        .iter()
        .filter(|e| e.name.starts_with(&old_prefix) && e.kind == RemoteKind::Dir)
        .map(|e| e.name.as_str())
        .collect();
    olds.sort();
    if !public_exists {
        if let Some(newest) = olds.pop() {
            conn.rename(&join(parent, newest), &join(parent, name))?;
            tracing::warn!(
                tree = %join(parent, name),
                "an earlier publish was interrupted mid-swap; the previous tree is published again"
            );
            report.restored_interrupted = true;
        }
    }
    let leftovers = entries
        .iter()
        .filter(|e| e.name.starts_with(&upload_prefix) || e.name.starts_with(&old_prefix));
    for e in leftovers {
        let path = join(parent, &e.name);
        // The backup just restored is no longer there.
        if conn.metadata(&path)?.is_none() {
            continue;
        }
        conn.remove_all(&path)?;
        report.removed_leftovers.push(path);
    }
    Ok(())
}

/// `dir/name` without doubling a `/`.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn check_segment(s: &str) -> Result<(), SshError> {
    let reason = if s.is_empty() {
        Some("is empty")
    } else if s == "." || s == ".." {
        Some("is `.` or `..`")
    } else if s.contains('/') || s.contains('\0') {
        Some("must be one plain name (no `/` or NUL)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SshError::UnsafeRemotePath {
            path: s.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn check_relative(path: &str) -> Result<(), SshError> {
    if path.starts_with('/') {
        return Err(SshError::UnsafeRemotePath {
            path: path.to_string(),
            reason: "must be relative to the tree",
        });
    }
    for seg in path.split('/') {
        check_segment(seg).map_err(|_| SshError::UnsafeRemotePath {
            path: path.to_string(),
            reason: "has an empty, `.` or `..` segment, or a NUL",
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::CommandOutput;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Node {
        Dir,
        File(Vec<u8>, u32),
        Link(String),
    }

    /// An in-memory SFTP-like file system with SFTP v3 rename semantics
    /// (never replaces) and fail points, to drive every failure path.
    #[derive(Default)]
    struct MemConn {
        fs: BTreeMap<String, Node>,
        ops: Vec<String>,
        /// Fail the n-th call (0-based) of this operation.
        fail: Vec<(&'static str, usize)>,
        counts: BTreeMap<&'static str, usize>,
    }

    impl MemConn {
        fn with_root() -> Self {
            let mut c = MemConn::default();
            c.fs.insert("/".into(), Node::Dir);
            c
        }

        fn hit(&mut self, op: &'static str, path: &str) -> Result<(), SshError> {
            self.ops.push(format!("{op} {path}"));
            let n = self.counts.entry(op).or_default();
            let this = *n;
            *n += 1;
            if self.fail.contains(&(op, this)) {
                return Err(SshError::Sftp {
                    node: "router".into(),
                    operation: op,
                    path: path.into(),
                    message: "injected failure".into(),
                });
            }
            Ok(())
        }

        fn parent_is_dir(&self, path: &str) -> bool {
            let parent = match path.rfind('/') {
                Some(0) => "/",
                Some(i) => &path[..i],
                None => return false,
            };
            self.fs.get(parent) == Some(&Node::Dir)
        }

        fn err(op: &'static str, path: &str, m: &str) -> SshError {
            SshError::Sftp {
                node: "router".into(),
                operation: op,
                path: path.into(),
                message: m.into(),
            }
        }

        /// Files under `dir` as (relative path, contents, mode).
        fn tree(&self, dir: &str) -> Vec<(String, String, u32)> {
            let prefix = format!("{dir}/");
            self.fs
                .iter()
                .filter_map(|(p, n)| match n {
                    Node::File(b, m) if p.starts_with(&prefix) => Some((
                        p[prefix.len()..].to_string(),
                        String::from_utf8_lossy(b).into_owned(),
                        *m,
                    )),
                    _ => None,
                })
                .collect()
        }

        fn names_in(&self, dir: &str) -> Vec<String> {
            let prefix = format!("{dir}/");
            self.fs
                .keys()
                .filter_map(|p| p.strip_prefix(&prefix))
                .filter(|rest| !rest.contains('/'))
                .map(String::from)
                .collect()
        }
    }

    impl NodeConn for MemConn {
        fn exec(&mut self, _command: &str) -> Result<CommandOutput, SshError> {
            Err(SshError::Unsupported { operation: "exec" })
        }
        fn read_file(&mut self, path: &str) -> Result<Vec<u8>, SshError> {
            match self.fs.get(path) {
                Some(Node::File(b, _)) => Ok(b.clone()),
                _ => Err(Self::err("read", path, "no such file")),
            }
        }
        fn write_file(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), SshError> {
            self.hit("write", path)?;
            if !self.parent_is_dir(path) || self.fs.get(path) == Some(&Node::Dir) {
                return Err(Self::err("write", path, "no such folder"));
            }
            self.fs
                .insert(path.into(), Node::File(contents.to_vec(), mode));
            Ok(())
        }
        fn make_dirs(&mut self, path: &str, _mode: u32) -> Result<(), SshError> {
            self.hit("mkdir", path)?;
            let mut p = String::new();
            for seg in path.split('/').filter(|s| !s.is_empty()) {
                p.push('/');
                p.push_str(seg);
                match self.fs.get(&p) {
                    Some(Node::Dir) => {}
                    Some(_) => return Err(Self::err("mkdir", &p, "not a folder")),
                    None => {
                        self.fs.insert(p.clone(), Node::Dir);
                    }
                }
            }
            Ok(())
        }
        fn rename(&mut self, from: &str, to: &str) -> Result<(), SshError> {
            self.hit("rename", from)?;
            if self.fs.contains_key(to) {
                return Err(Self::err("rename", to, "target exists"));
            }
            if !self.fs.contains_key(from) {
                return Err(Self::err("rename", from, "no such file"));
            }
            let moved: Vec<String> = self
                .fs
                .keys()
                .filter(|p| *p == from || p.starts_with(&format!("{from}/")))
                .cloned()
                .collect();
            for p in moved {
                let n = self.fs.remove(&p).unwrap();
                self.fs.insert(format!("{to}{}", &p[from.len()..]), n);
            }
            Ok(())
        }
        fn remove_all(&mut self, path: &str) -> Result<(), SshError> {
            self.hit("remove", path)?;
            self.fs
                .retain(|p, _| p != path && !p.starts_with(&format!("{path}/")));
            Ok(())
        }
        fn list_dir(&mut self, path: &str) -> Result<Vec<RemoteEntry>, SshError> {
            self.hit("list", path)?;
            let names = self.names_in(path);
            Ok(names
                .into_iter()
                .map(|name| {
                    let kind = match self.fs[&format!("{path}/{name}")] {
                        Node::Dir => RemoteKind::Dir,
                        Node::File(..) => RemoteKind::File,
                        Node::Link(_) => RemoteKind::Symlink,
                    };
                    RemoteEntry {
                        name,
                        kind,
                        mode: 0o755,
                        size: 0,
                    }
                })
                .collect())
        }
        fn metadata(&mut self, path: &str) -> Result<Option<RemoteEntry>, SshError> {
            Ok(self.fs.get(path).map(|n| RemoteEntry {
                name: path.rsplit('/').next().unwrap().into(),
                kind: match n {
                    Node::Dir => RemoteKind::Dir,
                    Node::File(..) => RemoteKind::File,
                    Node::Link(_) => RemoteKind::Symlink,
                },
                mode: 0,
                size: 0,
            }))
        }
        fn symlink(&mut self, target: &str, link: &str) -> Result<(), SshError> {
            self.hit("symlink", link)?;
            if !self.parent_is_dir(link) || self.fs.contains_key(link) {
                return Err(Self::err("symlink", link, "no such folder or exists"));
            }
            self.fs.insert(link.into(), Node::Link(target.into()));
            Ok(())
        }
    }

    fn site(version: &str) -> Vec<(String, String, u32)> {
        vec![
            ("boot.ipxe".into(), format!("#!ipxe {version}"), 0o644),
            ("ipxe/aa.ipxe".into(), format!("aa {version}"), 0o644),
            ("ignition/n1.ign".into(), format!("secret {version}"), 0o600),
        ]
    }

    fn publish(
        c: &mut MemConn,
        id: &str,
        files: &[(String, String, u32)],
    ) -> Result<ReplaceReport, SshError> {
        let files: Vec<RemoteFile<'_>> = files
            .iter()
            .map(|(p, b, m)| RemoteFile::file(p, b.as_bytes(), *m))
            .collect();
        replace_tree(c, "router", "/www", "slipway", id, &files)
    }

    fn sorted(mut v: Vec<(String, String, u32)>) -> Vec<(String, String, u32)> {
        v.sort();
        v
    }

    #[test]
    fn first_publish_then_replace_leaves_only_the_new_tree() {
        let mut c = MemConn::with_root();
        let r = publish(&mut c, "1", &site("v1")).unwrap();
        assert_eq!((r.files, r.replaced_previous), (3, false));
        assert_eq!(c.tree("/www/slipway"), sorted(site("v1")));
        let mut v2 = site("v2");
        v2.remove(1); // a MAC left the inventory: its script must disappear
        let r = publish(&mut c, "2", &v2).unwrap();
        assert!(r.replaced_previous);
        assert_eq!(c.tree("/www/slipway"), sorted(v2));
        assert_eq!(c.names_in("/www"), vec!["slipway".to_string()]);
    }

    #[test]
    fn a_failed_upload_leaves_the_published_tree_untouched_and_no_side_folder() {
        for nth in 0..3 {
            let mut c = MemConn::with_root();
            publish(&mut c, "1", &site("v1")).unwrap();
            c.counts.clear();
            c.fail = vec![("write", nth)];
            let err = publish(&mut c, "2", &site("v2")).unwrap_err();
            assert!(err.to_string().contains("injected failure"), "{err}");
            assert_eq!(c.tree("/www/slipway"), sorted(site("v1")), "nth {nth}");
            assert_eq!(c.names_in("/www"), vec!["slipway".to_string()]);
        }
    }

    #[test]
    fn failing_to_move_the_new_tree_in_puts_the_previous_one_back() {
        let mut c = MemConn::with_root();
        publish(&mut c, "1", &site("v1")).unwrap();
        c.counts.clear();
        // rename #0 moves the published tree aside, #1 moves the upload in.
        c.fail = vec![("rename", 1)];
        let err = publish(&mut c, "2", &site("v2")).unwrap_err();
        assert!(
            matches!(err, SshError::SwapFailed { restored: true, .. }),
            "{err:?}"
        );
        assert_eq!(c.tree("/www/slipway"), sorted(site("v1")));
        assert_eq!(c.names_in("/www"), vec!["slipway".to_string()]);
        // Failing to move the old tree aside changes nothing either.
        c.counts.clear();
        c.fail = vec![("rename", 0)];
        let err = publish(&mut c, "3", &site("v3")).unwrap_err();
        assert!(matches!(err, SshError::SwapFailed { restored: true, .. }));
        assert_eq!(c.tree("/www/slipway"), sorted(site("v1")));
        assert_eq!(c.names_in("/www"), vec!["slipway".to_string()]);
    }

    #[test]
    fn a_crash_mid_swap_is_repaired_by_the_next_publish() {
        let mut c = MemConn::with_root();
        publish(&mut c, "1", &site("v1")).unwrap();
        // The upload cannot be moved in, nor the previous tree back: what a
        // connection lost between the two renames leaves behind.
        c.counts.clear();
        c.fail = vec![("rename", 1), ("rename", 2)];
        let err = publish(&mut c, "2", &site("v2")).unwrap_err();
        assert!(
            matches!(
                err,
                SshError::SwapFailed {
                    restored: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!c.names_in("/www").contains(&"slipway".to_string()));
        // Both trees are complete at their side names, never half.
        assert_eq!(c.tree("/www/.slipway.slipway-old-2"), sorted(site("v1")));
        assert_eq!(c.tree("/www/.slipway.slipway-upload-2"), sorted(site("v2")));
        // The next publish fails during its upload, yet the previous tree is
        // published again and the leftovers are gone.
        c.counts.clear();
        c.fail = vec![("write", 1)];
        publish(&mut c, "3", &site("v3")).unwrap_err();
        assert_eq!(c.tree("/www/slipway"), sorted(site("v1")));
        assert_eq!(c.names_in("/www"), vec!["slipway".to_string()]);
        // And one that works reports the repair-free state.
        c.fail.clear();
        let r = publish(&mut c, "4", &site("v4")).unwrap();
        assert!(!r.restored_interrupted && r.removed_leftovers.is_empty());
        assert_eq!(c.tree("/www/slipway"), sorted(site("v4")));
    }

    #[test]
    fn the_restore_is_reported_and_leftovers_listed() {
        let mut c = MemConn::with_root();
        publish(&mut c, "1", &site("v1")).unwrap();
        c.counts.clear();
        c.fail = vec![("rename", 1), ("rename", 2)];
        publish(&mut c, "2", &site("v2")).unwrap_err();
        c.fail.clear();
        let r = publish(&mut c, "3", &site("v3")).unwrap();
        assert!(r.restored_interrupted);
        assert_eq!(
            r.removed_leftovers,
            vec!["/www/.slipway.slipway-upload-2".to_string()]
        );
        assert_eq!(c.tree("/www/slipway"), sorted(site("v3")));
        assert_eq!(c.names_in("/www"), vec!["slipway".to_string()]);
    }

    #[test]
    fn unsafe_paths_are_refused_before_touching_the_remote() {
        for (name, id, path) in [
            ("slipway", "1", "../etc/passwd"),
            ("slipway", "1", "/etc/passwd"),
            ("slipway", "1", "a//b"),
            ("slipway", "1", "a/./b"),
            ("slipway", "1", ""),
            ("..", "1", "boot.ipxe"),
            ("a/b", "1", "boot.ipxe"),
            ("slipway", "x/y", "boot.ipxe"),
            ("slipway", "", "boot.ipxe"),
        ] {
            let mut c = MemConn::with_root();
            let f = [RemoteFile::file(path, b"x", 0o644)];
            let err = replace_tree(&mut c, "router", "/www", name, id, &f).unwrap_err();
            assert!(
                matches!(err, SshError::UnsafeRemotePath { .. }),
                "{name} {id} {path}: {err:?}"
            );
            assert!(c.ops.is_empty(), "{:?}", c.ops);
        }
    }

    #[test]
    fn links_are_made_in_the_upload_before_the_swap_and_removed_with_their_tree_only() {
        let mut c = MemConn::with_root();
        c.make_dirs("/www/slipway.artifacts/ab", 0o755).unwrap();
        c.write_file("/www/slipway.artifacts/ab/kernel", b"K", 0o644)
            .unwrap();
        let v1 = site("v1");
        let mut files: Vec<RemoteFile<'_>> = v1
            .iter()
            .map(|(p, b, m)| RemoteFile::file(p, b.as_bytes(), *m))
            .collect();
        files.insert(0, RemoteFile::symlink("artifacts", "../slipway.artifacts"));
        c.ops.clear();
        let r = replace_tree(&mut c, "router", "/www", "slipway", "1", &files).unwrap();
        assert_eq!((r.files, r.links), (3, 1));
        // Made inside the upload folder, after the files, before the swap.
        let at = |op: &str| c.ops.iter().position(|o| o.starts_with(op)).unwrap();
        assert!(c.ops[at("symlink")].ends_with("/www/.slipway.slipway-upload-1/artifacts"));
        assert!(c.ops.iter().rposition(|o| o.starts_with("write")).unwrap() < at("symlink"));
        assert!(at("symlink") < at("rename"));
        assert_eq!(
            c.fs["/www/slipway/artifacts"],
            Node::Link("../slipway.artifacts".into())
        );
        // The next tree replaces the link; what it pointed at stays.
        publish(&mut c, "2", &site("v2")).unwrap();
        assert!(!c.fs.contains_key("/www/slipway/artifacts"));
        assert_eq!(
            c.fs["/www/slipway.artifacts/ab/kernel"],
            Node::File(b"K".to_vec(), 0o644)
        );
    }

    #[test]
    fn bad_links_and_kinds_are_refused_before_touching_the_remote() {
        for f in [
            RemoteFile::symlink("artifacts", ""),
            RemoteFile::symlink("artifacts", "a\0b"),
            RemoteFile::symlink("../artifacts", "x"),
            RemoteFile {
                kind: RemoteKind::Dir,
                ..RemoteFile::file("d", b"", 0o755)
            },
        ] {
            let mut c = MemConn::with_root();
            let err = replace_tree(&mut c, "router", "/www", "slipway", "1", &[f]).unwrap_err();
            assert!(matches!(err, SshError::UnsafeRemotePath { .. }), "{err:?}");
            assert!(c.ops.is_empty(), "{:?}", c.ops);
        }
    }

    #[test]
    fn debug_of_a_remote_file_never_shows_its_bytes() {
        let f = RemoteFile::file("ignition/n1.ign", b"K3S-SECRET-TOKEN", 0o600);
        let shown = format!("{f:?}");
        assert!(!shown.contains("K3S-SECRET"), "{shown}");
        assert!(shown.contains("600") && shown.contains("ignition/n1.ign"));
    }
}
