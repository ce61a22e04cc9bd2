//! Reading a cluster repository from a working directory into a [`RepoFiles`] snapshot,
//! and writing files back atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use slipway_model::repo::RepoFiles;

/// Files larger than this are not read (a cluster repo is text; big blobs are a mistake).
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Read every file under `root`, skipping `.git` and other dot-folders except `.slipway`.
pub fn read_repo(root: &Path) -> Result<RepoFiles> {
    if !root.is_dir() {
        bail!(
            "{} is not a folder (pass the cluster repository with --repo)",
            root.display()
        );
    }
    let mut files = RepoFiles::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries =
            fs::read_dir(&dir).with_context(|| format!("reading folder {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading folder {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_path = rel.join(&name);
            let ty = entry
                .file_type()
                .with_context(|| format!("reading {}", rel_path.display()))?;
            if ty.is_dir() {
                if name.starts_with('.') && name != ".slipway" {
                    continue;
                }
                stack.push(rel_path);
            } else if ty.is_file() {
                let meta = entry
                    .metadata()
                    .with_context(|| format!("reading {}", rel_path.display()))?;
                if meta.len() > MAX_FILE {
                    continue;
                }
                let bytes = fs::read(entry.path())
                    .with_context(|| format!("reading {}", rel_path.display()))?;
                let key = rel_path.to_string_lossy().replace('\\', "/");
                files.insert(key, bytes);
            }
        }
    }
    Ok(files)
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating folder {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
