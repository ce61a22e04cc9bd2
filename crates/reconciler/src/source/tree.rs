//! Reading the tree of a commit into a [`RepoFiles`] snapshot.
//!
//! The same files `repo_fs::read_repo` would read from a checkout of that commit: regular
//! and executable blobs up to 4 MiB; dot-folders other than `.slipway` are skipped;
//! symlinks and submodules are not followed.

use git2::{ObjectType, TreeWalkMode, TreeWalkResult};
use slipway_model::repo::RepoFiles;

use super::error::SourceError;

/// Blobs larger than this are not read (a cluster repo is text; big blobs are a mistake).
const MAX_FILE: usize = 4 * 1024 * 1024;

/// The files of `commit`'s tree.
pub(crate) fn files_at(
    repo: &git2::Repository,
    commit: git2::Oid,
) -> Result<RepoFiles, SourceError> {
    let unknown = |e: git2::Error| SourceError::UnknownCommit {
        commit: commit.to_string(),
        why: e.message().to_owned(),
    };
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(unknown)?;
    let mut files = RepoFiles::new();
    let mut failure = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Some(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        match entry.kind() {
            Some(ObjectType::Tree) => {
                if name.starts_with('.') && name != ".slipway" {
                    TreeWalkResult::Skip
                } else {
                    TreeWalkResult::Ok
                }
            }
            // 0o100644 and 0o100755 only: 0o120000 is a symlink.
            Some(ObjectType::Blob) if entry.filemode() & 0o170000 == 0o100000 => {
                match repo.find_blob(entry.id()) {
                    Ok(blob) if blob.size() <= MAX_FILE => {
                        files.insert(format!("{dir}{name}"), blob.content());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failure = Some(SourceError::git(format!("reading {dir}{name}"), e));
                        return TreeWalkResult::Abort;
                    }
                }
                TreeWalkResult::Ok
            }
            _ => TreeWalkResult::Ok,
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    walked.map_err(|e| SourceError::git("walking the tree", e))?;
    Ok(files)
}
