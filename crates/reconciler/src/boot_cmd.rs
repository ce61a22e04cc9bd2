//! `slipway render`, `slipway boot-server`, `slipway publish --rollback`, `slipway artifacts`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use slipway_ignition_gen::profile::{to_human_yaml, ClusterState};
use slipway_pxe_publisher::{Publisher, ServerState, DEFAULT_TOKEN_TTL};

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

/// `slipway boot-server`: render, publish a generation, arm, serve until Ctrl-C.
pub fn boot_server(
    repo: &RepoArgs,
    state: &Path,
    listen: SocketAddr,
    arm: &[String],
    existing: bool,
) -> Result<ExitCode> {
    let loaded = desired::load(repo)?;
    for n in arm {
        if loaded.inventory.node(n).is_none() {
            bail!("--arm {n}: no such node in the inventory");
        }
    }
    let resolved = ArtifactIndex::load(state)?.resolve(&loaded.inventory.cluster)?;
    let rendered = desired::render(&loaded, &resolved, cluster_state(existing), None)?;
    let input = desired::generation_input(&loaded, &resolved, &rendered)?;
    let publisher = Publisher::open(state.join("generations"), KEEP_GENERATIONS)
        .context("opening the generations folder")?;
    let id = publisher
        .publish(&input)
        .map_err(|e| anyhow!("publishing: {e}"))?;
    let generation = publisher
        .load(&id)
        .map_err(|e| anyhow!("loading generation {}: {e}", id.as_str()))?;
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
