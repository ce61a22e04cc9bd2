//! `slipway render`, `slipway boot-server`, `slipway publish --rollback | --to`, `slipway artifacts`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use slipway_ignition_gen::profile::{to_human_yaml, ClusterState};
use slipway_node_ssh::{fingerprint_of_public, Auth, HostKeyPin, NodeConnector, Ssh2Connector};
use slipway_pxe_publisher::{
    static_site, BaseUrl, Generation, GenerationId, GenerationInput, Publisher, SecretIgnition,
    ServerState, DEFAULT_TOKEN_TTL,
};

use crate::artifacts::{self, ArtifactIndex, FcosEntry, K3sEntry};
use crate::cmdline::{ArtifactsCommand, RepoArgs};
use crate::desired;

/// Generations kept for rollback.
pub const KEEP_GENERATIONS: usize = 5;

fn cluster_state(existing: bool) -> ClusterState {
    if existing {
        ClusterState::Exists
    } else {
        ClusterState::New
    }
}

/// `slipway render`.
pub fn render(
    repo: &RepoArgs,
    state: &Path,
    node: &str,
    butane: bool,
    existing: bool,
) -> Result<ExitCode> {
    let loaded = desired::load(repo)?;
    if loaded.inventory.node(node).is_none() {
        let names: Vec<&str> = loaded
            .inventory
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        bail!("no node named `{node}` (nodes: {})", names.join(", "));
    }
    let resolved = ArtifactIndex::load(state)?.resolve(&loaded.inventory.cluster)?;
    let only = [node.to_string()];
    let rendered = desired::render(&loaded, &resolved, cluster_state(existing), Some(&only))?;
    let r = rendered.get(node).context("rendering")?;
    let mut out = std::io::stdout().lock();
    if butane {
        for layer in &r.layers {
            let text = if layer.name.starts_with('(') {
                to_human_yaml(layer.text.expose())
            } else {
                layer.text.expose().to_string()
            };
            writeln!(out, "# --- {}\n{}", layer.name, text.trim_end()).context("writing stdout")?;
        }
    } else {
        writeln!(out, "{}", r.ignition.expose()).context("writing stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Render every node and publish the result as the state folder's newest local generation
/// (what `boot-server` serves and `publish --to` uploads). `arm` must name inventory nodes.
fn publish_local(
    loaded: &desired::Loaded,
    state: &Path,
    arm: &[String],
    existing: bool,
) -> Result<(GenerationId, Generation, GenerationInput)> {
    for n in arm {
        if loaded.inventory.node(n).is_none() {
            bail!("--arm {n}: no such node in the inventory");
        }
    }
    let resolved = ArtifactIndex::load(state)?.resolve(&loaded.inventory.cluster)?;
    let rendered = desired::render(loaded, &resolved, cluster_state(existing), None)?;
    let input = desired::generation_input(loaded, &resolved, &rendered)?;
    let publisher = Publisher::open(state.join("generations"), KEEP_GENERATIONS)
        .context("opening the generations folder")?;
    let id = publisher
        .publish(&input)
        .map_err(|e| anyhow!("publishing: {e}"))?;
    let generation = publisher
        .load(&id)
        .map_err(|e| anyhow!("loading generation {}: {e}", id.as_str()))?;
    Ok((id, generation, input))
}

/// `slipway boot-server`: render, publish a generation, arm, serve until Ctrl-C.
pub fn boot_server(
    repo: &RepoArgs,
    state: &Path,
    listen: SocketAddr,
    arm: &[String],
    existing: bool,
) -> Result<ExitCode> {
    let loaded = desired::load(repo)?;
    let (id, generation, input) = publish_local(&loaded, state, arm, existing)?;
    let server = ServerState::new(artifacts::store_dir(state));
    server.activate(generation, input.ignitions());
    for n in arm {
        server
            .arm(n, DEFAULT_TOKEN_TTL)
            .map_err(|e| anyhow!("arming {n}: {e}"))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        // A server must not die because whoever started it stopped reading its stdout.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "serving generation {} of commit {} on http://{addr}",
            id.as_str(),
            loaded.commit
        );
        for n in arm {
            let _ = writeln!(out, "armed {n} for install");
        }
        let _ = out.flush();
        drop(out);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        slipway_pxe_publisher::serve(listener, server, shutdown)
            .await
            .map_err(|e| anyhow!("serving: {e}"))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What `slipway publish --to` was given.
#[derive(Debug)]
pub struct PublishTo<'a> {
    /// Repository and identity.
    pub repo: &'a RepoArgs,
    /// Slipway's state folder.
    pub state: &'a Path,
    /// `sftp://user@host[:port]/path`.
    pub to: &'a str,
    /// A file holding the remote's OpenSSH public host key line.
    pub host_key_file: Option<&'a Path>,
    /// A known_hosts file to pin the remote's host key from.
    pub known_hosts: Option<&'a Path>,
    /// The private key to log in with.
    pub ssh_key: Option<&'a Path>,
    /// Where the remote web server serves the published folder.
    pub base_url: Option<&'a str>,
    /// Put Ignition and the install artifacts on the remote.
    pub allow_secrets: bool,
    /// With secrets: only these nodes install (empty: all).
    pub arm: &'a [String],
    /// Render as joining an existing cluster.
    pub existing: bool,
}

/// The host key pin of `publish --to`: a public key line from a file (checked to parse), or a
/// known_hosts file.
fn remote_pin(host_key_file: Option<&Path>, known_hosts: Option<&Path>) -> Result<HostKeyPin> {
    match (host_key_file, known_hosts) {
        (Some(f), None) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the host key file {}", f.display()))?;
            let Some(line) = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
            else {
                bail!("the host key file {} holds no key", f.display());
            };
            fingerprint_of_public(line).map_err(|e| {
                anyhow!(
                    "the host key file {} is not one OpenSSH public key line: {e}",
                    f.display()
                )
            })?;
            Ok(HostKeyPin::PublicKey(line.to_string()))
        }
        (None, Some(k)) => {
            if !k.is_file() {
                bail!("the known_hosts file {} does not exist", k.display());
            }
            Ok(HostKeyPin::KnownHosts(k.to_path_buf()))
        }
        _ => bail!(
            "pin the remote's host key with --host-key-file or --known-hosts (exactly one): \
Slipway never trusts a host key on first use"
        ),
    }
}

/// `slipway publish --to sftp://...`: render and publish the local generation as
/// `boot-server` does, lay it out as a static site for the remote's web server (Ignition,
/// and the artifacts its install scripts download, only with `--allow-secrets`), and upload
/// it over SFTP with the host key pinned, replacing the previous site atomically. Every
/// argument is checked, and the generation rendered, before the remote is contacted.
pub fn publish_to(args: &PublishTo<'_>) -> Result<ExitCode> {
    let target = crate::remote_publish::parse_sftp_url(args.to)?;
    let Some(base_url) = args.base_url else {
        bail!("--base-url is required with --to: the URL the remote's web server serves {} at, e.g. http://192.168.1.1/slipway", target.path);
    };
    let base_url = BaseUrl::parse(base_url).map_err(|e| anyhow!("--base-url: {e}"))?;
    let pin = remote_pin(args.host_key_file, args.known_hosts)?;
    let Some(ssh_key) = args.ssh_key else {
        bail!("--ssh-key is required with --to: the private key to log in to {target} with");
    };
    if !ssh_key.is_file() {
        bail!("--ssh-key {}: no such file", ssh_key.display());
    }
    if !args.allow_secrets && !args.arm.is_empty() {
        bail!(
            "--arm only matters with --allow-secrets (without it no node installs from the remote)"
        );
    }

    let loaded = desired::load(args.repo)?;
    let (id, generation, input) = publish_local(&loaded, args.state, args.arm, args.existing)?;
    let ignitions: Option<BTreeMap<String, SecretIgnition>> = args.allow_secrets.then(|| {
        input
            .nodes
            .iter()
            .filter(|n| args.arm.is_empty() || args.arm.contains(&n.name))
            .map(|n| (n.name.clone(), n.ignition.clone()))
            .collect()
    });
    let site = static_site(&generation, ignitions.as_ref(), &base_url)
        .map_err(|e| anyhow!("laying out the boot site: {e}"))?;
    let local_artifacts = if args.allow_secrets {
        crate::remote_publish::local_artifacts(&input.artifacts, &artifacts::store_dir(args.state))?
    } else {
        Vec::new()
    };

    let node = target.node_target(Auth::KeyFile(ssh_key.to_path_buf()), pin);
    let mut conn = Ssh2Connector::default()
        .connect(&node)
        .with_context(|| format!("connecting to {target}"))?;
    let report =
        crate::remote_publish::publish_remote(&site, &local_artifacts, &target, &mut conn)?;
    println!("generation {} of commit {}", id.as_str(), loaded.commit);
    print!("{report}");
    if args.allow_secrets && input.base_url.as_str() != base_url.as_str() {
        println!(
            "note: installed nodes download K3s from boot_server.url ({}) as their Ignition says; \
keep Slipway's server reachable there, or set boot_server.url to {} to serve it from the remote",
            input.base_url.as_str(),
            base_url.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `slipway publish --rollback`.
pub fn rollback(state: &Path) -> Result<ExitCode> {
    let publisher = Publisher::open(state.join("generations"), KEEP_GENERATIONS)
        .context("opening the generations folder")?;
    let id = publisher
        .rollback()
        .map_err(|e| anyhow!("rolling back: {e}"))?;
    println!(
        "current generation is now {} (a running boot server picks it up when restarted)",
        id.as_str()
    );
    Ok(ExitCode::SUCCESS)
}

/// `slipway artifacts import | list`.
pub fn artifacts(cmd: &ArtifactsCommand) -> Result<ExitCode> {
    match cmd {
        ArtifactsCommand::List { state } => {
            let idx = ArtifactIndex::load(state)?;
            for (release, e) in &idx.fcos {
                let insecure = if e.metal.signature_available {
                    ""
                } else {
                    " (no signature: installs use coreos.inst.insecure)"
                };
                println!(
                    "fcos {release}: kernel, initramfs, rootfs, metal {}{insecure}",
                    e.metal.sha256.to_hex()
                );
            }
            for (version, e) in &idx.k3s {
                println!(
                    "k3s {version}: binary {}, install script {}",
                    e.binary.sha256.to_hex(),
                    e.install_script.sha256.to_hex()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ArtifactsCommand::Import(args) => {
            let crate::cmdline::ImportArgs {
                state,
                fcos_release,
                kernel,
                initramfs,
                rootfs,
                metal,
                metal_sig,
                k3s_version,
                k3s_binary,
                k3s_install_script,
            } = args.as_ref();
            let mut idx = ArtifactIndex::load(state)?;
            if fcos_release.is_none() && k3s_version.is_none() {
                bail!("nothing to import: pass --fcos-release with its files and/or --k3s-version with its files");
            }
            let need = |p: &Option<std::path::PathBuf>, what: &str| {
                p.clone().with_context(|| format!("--{what} is required"))
            };
            if let Some(release) = fcos_release {
                let metal_path = need(metal, "metal")?;
                let metal_ref =
                    artifacts::import_file(state, &metal_path, None, metal_sig.is_some())?;
                if let Some(sig) = metal_sig {
                    let name = format!("{}.sig", metal_ref.name);
                    let dest = artifacts::store_dir(state)
                        .join(metal_ref.sha256.to_hex())
                        .join(name);
                    let bytes =
                        std::fs::read(sig).with_context(|| format!("reading {}", sig.display()))?;
                    crate::repo_fs::write_atomic(&dest, &bytes)?;
                }
                let entry = FcosEntry {
                    kernel: artifacts::import_file(state, &need(kernel, "kernel")?, None, false)?,
                    initramfs: artifacts::import_file(
                        state,
                        &need(initramfs, "initramfs")?,
                        None,
                        false,
                    )?,
                    rootfs: artifacts::import_file(state, &need(rootfs, "rootfs")?, None, false)?,
                    metal: metal_ref,
                };
                idx.fcos.insert(release.clone(), entry);
                println!("imported FCOS {release}");
            }
            if let Some(version) = k3s_version {
                let entry = K3sEntry {
                    binary: artifacts::import_file(
                        state,
                        &need(k3s_binary, "k3s-binary")?,
                        Some("k3s"),
                        false,
                    )?,
                    install_script: artifacts::import_file(
                        state,
                        &need(k3s_install_script, "k3s-install-script")?,
                        Some("install.sh"),
                        false,
                    )?,
                };
                idx.k3s.insert(version.clone(), entry);
                println!("imported K3s {version}");
            }
            idx.save(state)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
