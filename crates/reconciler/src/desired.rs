//! The desired state of a repository at one point: validated inventory, decrypted secrets,
//! resolved artifacts and every node's rendered Ignition. Every command that renders goes
//! through here, so validation always comes first and bad input changes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use slipway_ignition_gen::files::MemFileSource;
use slipway_ignition_gen::profile::{ClusterState, ProfileInputs, RenderedNode, Renderer};
use slipway_model::check::{check_repo, Secrets};
use slipway_model::inventory::{Inventory, Role};
use slipway_model::repo::RepoFiles;
use slipway_pxe_publisher::{
    BaseUrl, GenerationInput, MacAddr, NodeInput, NodeRole, SecretIgnition, UnknownMacPolicy,
};

use crate::artifacts::Resolved;
use crate::cmdline::RepoArgs;
use crate::{identity, repo_fs};

/// Where overlays' `local:` files live inside a cluster repository.
pub const BUTANE_FILES_DIR: &str = "butane/files";

/// A validated repository with its secrets.
pub struct Loaded {
    /// The files.
    pub files: RepoFiles,
    /// The inventory.
    pub inventory: Inventory,
    /// The decrypted secrets.
    pub secrets: Secrets,
    /// The commit (HEAD of the working tree's repository, or `working-tree`).
    pub commit: String,
}

/// Read, validate and decrypt a working tree. Problems are printed, all at once, and fail.
pub fn load(args: &RepoArgs) -> Result<Loaded> {
    let files = repo_fs::read_repo(&args.repo)?;
    let ids = identity::require(args.identity.as_deref())?;
    let checked = check_repo(&files, Some(&ids));
    if checked.diagnostics.has_errors() {
        eprint!("{}", checked.diagnostics);
        bail!(
            "the repository has {} error(s): nothing was changed",
            checked.diagnostics.error_count()
        );
    }
    let (Some(inventory), Some(secrets)) = (checked.inventory, checked.secrets) else {
        bail!("the repository did not load");
    };
    Ok(Loaded {
        files,
        inventory,
        secrets,
        commit: head_commit(&args.repo),
    })
}

/// The HEAD commit of the git repository containing `dir`, or `working-tree`.
pub fn head_commit(dir: &Path) -> String {
    git2::Repository::discover(dir)
        .ok()
        .and_then(|r| {
            r.head()
                .ok()
                .and_then(|h| h.peel_to_commit().ok())
                .map(|c| c.id().to_string())
        })
        .unwrap_or_else(|| "working-tree".to_string())
}

/// Render every node (or the named ones). Any error fails the whole render: nothing is
/// published from a partial render.
pub fn render(
    loaded: &Loaded,
    resolved: &Resolved,
    cluster_state: ClusterState,
    only: Option<&[String]>,
) -> Result<BTreeMap<String, RenderedNode>> {
    let (bin, script) = resolved.profile_artifacts();
    let inputs = ProfileInputs {
        commit: &loaded.commit,
        cluster_state,
        os_version: &resolved.fcos_release,
        k3s_version: &resolved.k3s_version,
        k3s_binary: &bin,
        k3s_install_script: &script,
    };
    let files = MemFileSource::from_repo(&loaded.files, BUTANE_FILES_DIR);
    let renderer = Renderer::new(&loaded.inventory, &files);
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for node in &loaded.inventory.nodes {
        if only.is_some_and(|o| !o.contains(&node.name)) {
            continue;
        }
        match renderer.render(node, &loaded.secrets, &inputs) {
            Ok(r) => {
                out.insert(node.name.clone(), r);
            }
            Err(ds) => problems.extend(ds),
        }
    }
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "rendering failed; nothing was changed:\n{}",
            text.join("\n")
        );
    }
    Ok(out)
}

/// What the boot server publishes for these rendered nodes.
pub fn generation_input(
    loaded: &Loaded,
    resolved: &Resolved,
    rendered: &BTreeMap<String, RenderedNode>,
) -> Result<GenerationInput> {
    let cluster = &loaded.inventory.cluster;
    let base_url =
        BaseUrl::parse(&cluster.boot_url).map_err(|e| anyhow!("boot_server.url: {e}"))?;
    let mut nodes = Vec::new();
    for node in &loaded.inventory.nodes {
        let Some(r) = rendered.get(&node.name) else {
            continue;
        };
        let macs = node
            .macs
            .iter()
            .map(|m| {
                m.to_string()
                    .parse::<MacAddr>()
                    .map_err(|e| anyhow!("{}: {e}", node.name))
            })
            .collect::<Result<Vec<_>>>()?;
        nodes.push(NodeInput {
            name: node.name.clone(),
            macs,
            role: match node.role {
                Role::Server => NodeRole::Server,
                Role::Agent => NodeRole::Agent,
            },
            install_device: node.install_disk.clone(),
            kargs: cluster
                .kernel_args
                .iter()
                .chain(&node.kernel_args)
                .cloned()
                .collect(),
            ignition: SecretIgnition::new(r.ignition.expose().as_bytes().to_vec()),
        });
    }
    Ok(GenerationInput {
        commit: loaded.commit.clone(),
        base_url,
        nodes,
        artifacts: resolved.artifact_set(),
        unknown_mac: match cluster.unknown_mac {
            slipway_model::inventory::UnknownMacPolicy::Localboot => UnknownMacPolicy::Localboot,
            // An iPXE script that fails hands the machine back to its firmware's next entry.
            slipway_model::inventory::UnknownMacPolicy::Refuse => UnknownMacPolicy::Script {
                name: "refuse".into(),
                body: "#!ipxe\necho Slipway does not know this machine\nexit 1\n".into(),
            },
        },
    })
}

/// Read, validate and decrypt the repository as committed at `commit` (not the working
/// tree): what a rollout executes, so a resumed rollout renders exactly the same configs.
pub fn load_at(repo_dir: &Path, identity: Option<&Path>, commit: &str) -> Result<Loaded> {
    let files = crate::source::files_at_commit(repo_dir, commit)
        .map_err(|e| anyhow!("reading commit {commit}: {e}"))?;
    let ids = identity::require(identity)?;
    let checked = check_repo(&files, Some(&ids));
    if checked.diagnostics.has_errors() {
        eprint!("{}", checked.diagnostics);
        bail!(
            "commit {commit} has {} error(s): nothing was changed",
            checked.diagnostics.error_count()
        );
    }
    let (Some(inventory), Some(secrets)) = (checked.inventory, checked.secrets) else {
        bail!("commit {commit} did not load");
    };
    Ok(Loaded {
        files,
        inventory,
        secrets,
        commit: commit.to_string(),
    })
}
