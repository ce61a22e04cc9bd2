//! `slipway butane`: a drop-in for the `butane` command, and the directory-backed
//! [`FileSource`] behind `--files-dir`.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use slipway_ignition_gen::butane::TranslateOptions;
use slipway_ignition_gen::files::{FileSource, NoFiles, TreeEntry, TreeEntryKind};
use slipway_ignition_gen::Error as GenError;

/// Local files of a Butane config, read from a directory on demand.
#[derive(Debug, Clone)]
pub struct DirFileSource {
    root: PathBuf,
}

impl DirFileSource {
    /// Files below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

impl FileSource for DirFileSource {
    fn read(&self, rel: &str) -> Result<Vec<u8>, GenError> {
        let p = self.path(rel);
        match fs::symlink_metadata(&p) {
            Err(_) => Err(GenError::LocalFileNotFound(rel.to_string())),
            Ok(m) if !m.is_file() => Err(GenError::NotAFile(rel.to_string())),
            Ok(_) => fs::read(&p).map_err(|e| GenError::LocalFileUnreadable {
                path: rel.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn list_tree(&self, rel: &str) -> Result<Vec<TreeEntry>, GenError> {
        let top = self.path(rel);
        if !fs::symlink_metadata(&top).is_ok_and(|m| m.is_dir()) {
            return Err(GenError::TreeNotDirectory);
        }
        let mut out = Vec::new();
        walk(&top, "", &mut out).map_err(|e| GenError::LocalFileUnreadable {
            path: rel.to_string(),
            reason: e.to_string(),
        })?;
        Ok(out)
    }
}

/// Depth first, each directory's names sorted, links not followed: Go's `filepath.Walk` order.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<TreeEntry>) -> std::io::Result<()> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path)?;
        let kind = if meta.file_type().is_symlink() {
            TreeEntryKind::Symlink {
                target: fs::read_link(&path)?.to_string_lossy().into_owned(),
            }
        } else if meta.is_dir() {
            TreeEntryKind::Directory
        } else if meta.is_file() {
            TreeEntryKind::File {
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        } else {
            TreeEntryKind::Other
        };
        let is_dir = kind == TreeEntryKind::Directory;
        out.push(TreeEntry {
            path: rel.clone(),
            kind,
        });
        if is_dir {
            walk(&path, &rel, out)?;
        }
    }
    Ok(())
}

/// Translate FILE (or stdin) and print Ignition JSON, like `butane`.
pub fn run(
    file: Option<&Path>,
    strict: bool,
    pretty: bool,
    files_dir: Option<&Path>,
) -> Result<ExitCode> {
    let (name, text) = match file {
        Some(p) if p != Path::new("-") => (
            p.display().to_string(),
            fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading stdin")?;
            ("<stdin>".to_string(), s)
        }
    };
    let opts = TranslateOptions {
        strict,
        ..TranslateOptions::default()
    };
    let dir_source;
    let source: &dyn FileSource = match files_dir {
        Some(d) => {
            dir_source = DirFileSource::new(d);
            &dir_source
        }
        None => &NoFiles,
    };
    match slipway_ignition_gen::butane_cli(&name, &text, &opts, pretty, source) {
        Ok((json, warnings)) => {
            for w in warnings {
                eprintln!("{w}");
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{json}").context("writing stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
