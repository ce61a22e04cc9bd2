//! `slipway secrets generate | encrypt | decrypt | edit | rekey`.
//!
//! Plaintext never touches a persistent disk here: `edit` decrypts into a private (0700)
//! folder on a RAM-backed file system when one is available ($XDG_RUNTIME_DIR, /dev/shm),
//! overwrites and removes it on every exit path, and ignores Ctrl-C while the editor runs so
//! that cleanup always happens.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rand::RngCore;
use slipway_model::inventory;
use slipway_model::secrets::{
    self, node_secrets_path, Identities, Recipient, Secret, SecretMap, CLUSTER_SECRETS,
    HOST_KEY_KEY, K3S_TOKEN_KEY, RECIPIENTS_FILE,
};
use zeroize::Zeroizing;

use crate::cmdline::{RepoArgs, SecretsCommand};
use crate::{identity, repo_fs};

/// Dispatch a secrets subcommand.
pub fn run(cmd: &SecretsCommand) -> Result<ExitCode> {
    match cmd {
        SecretsCommand::Generate { repo } => generate(repo),
        SecretsCommand::Encrypt { repo, input, file } => encrypt(repo, input.as_deref(), file),
        SecretsCommand::Decrypt { identity, file } => decrypt(identity.as_deref(), file),
        SecretsCommand::Edit { repo, file } => edit(repo, file),
        SecretsCommand::Rekey { repo } => rekey(repo),
    }
}

fn recipients(repo: &Path) -> Result<Vec<Recipient>> {
    let path = repo.join(RECIPIENTS_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    secrets::parse_recipients(RECIPIENTS_FILE, &text).map_err(|ds| {
        let lines: Vec<String> = ds.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
}

/// Decrypt an existing secrets file into a map; a missing file is an empty map.
fn open_map(
    repo: &Path,
    rel: &str,
    ids: &Identities,
    recips: &[Recipient],
) -> Result<Option<SecretMap>> {
    let path = repo.join(rel);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let plain = secrets::decrypt(rel, &bytes, ids, recips).map_err(|d| anyhow::anyhow!("{d}"))?;
    let text = std::str::from_utf8(&plain).with_context(|| format!("reading {rel}: not UTF-8"))?;
    Ok(Some(
        SecretMap::from_yaml(rel, text).map_err(|d| anyhow::anyhow!("{d}"))?,
    ))
}

fn seal(repo: &Path, rel: &str, map: &SecretMap, recips: &[Recipient]) -> Result<()> {
    let bytes = secrets::encrypt(map.to_yaml().as_bytes(), recips)
        .with_context(|| format!("encrypting {rel}"))?;
    repo_fs::write_atomic(&repo.join(rel), &bytes)
}

fn generate(args: &RepoArgs) -> Result<ExitCode> {
    let repo = &args.repo;
    let recips = recipients(repo)?;
    let ids = identity::require(args.identity.as_deref())?;
    let files = repo_fs::read_repo(repo)?;
    let (inv, diags) = inventory::load(&files);
    let Some(inv) = inv else {
        print!("{diags}");
        bail!("fix the inventory first: secrets are generated for the nodes it lists");
    };
    let mut created = 0;
    let mut cluster = open_map(repo, CLUSTER_SECRETS, &ids, &recips)?.unwrap_or_default();
    if cluster.get(K3S_TOKEN_KEY).is_none() {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut());
        cluster
            .0
            .insert(K3S_TOKEN_KEY.into(), Secret::new(hex::encode(raw.as_ref())));
        seal(repo, CLUSTER_SECRETS, &cluster, &recips)?;
        println!("created {K3S_TOKEN_KEY} in {CLUSTER_SECRETS}");
        created += 1;
    }
    for node in &inv.nodes {
        let rel = node_secrets_path(&node.name);
        let mut map = open_map(repo, &rel, &ids, &recips)?.unwrap_or_default();
        if map.get(HOST_KEY_KEY).is_some() {
            continue;
        }
        let mut key =
            ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
                .context("generating an SSH host key")?;
        key.set_comment(format!("root@{}", node.hostname));
        let pem = key
            .to_openssh(ssh_key::LineEnding::LF)
            .context("encoding an SSH host key")?;
        let fingerprint = key.public_key().fingerprint(ssh_key::HashAlg::Sha256);
        map.0.insert(HOST_KEY_KEY.into(), Secret::new(pem.as_str()));
        seal(repo, &rel, &map, &recips)?;
        println!(
            "created SSH host key {fingerprint} for {} in {rel}",
            node.name
        );
        created += 1;
    }
    if created == 0 {
        println!("nothing to generate: every secret exists");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(input: Option<&Path>) -> Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    match input {
        None => std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?,
        Some(p) if p == Path::new("-") => std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?,
        Some(p) => std::fs::File::open(p)
            .and_then(|mut f| f.read_to_string(&mut s))
            .with_context(|| format!("reading {}", p.display()))?,
    };
    Ok(s)
}

fn rel_name(file: &Path) -> String {
    file.to_string_lossy().into_owned()
}

fn encrypt(repo: &Path, input: Option<&Path>, file: &Path) -> Result<ExitCode> {
    let recips = recipients(repo)?;
    let text = read_input(input)?;
    // Check the content before encrypting it: a bad file would only fail later, encrypted.
    let map = SecretMap::from_yaml(&rel_name(file), &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let bytes = secrets::encrypt(map.to_yaml().as_bytes(), &recips).context("encrypting")?;
    repo_fs::write_atomic(file, &bytes)?;
    println!(
        "encrypted {} value(s) to {} recipient(s) into {}",
        map.0.len(),
        recips.len(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn decrypt(identity: Option<&Path>, file: &Path) -> Result<ExitCode> {
    let ids = identity::require(identity)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let plain =
        secrets::decrypt(&rel_name(file), &bytes, &ids, &[]).map_err(|d| anyhow::anyhow!("{d}"))?;
    std::io::stdout()
        .write_all(&plain)
        .context("writing stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn rekey(args: &RepoArgs) -> Result<ExitCode> {
    let recips = recipients(&args.repo)?;
    let ids = identity::require(args.identity.as_deref())?;
    let files = repo_fs::read_repo(&args.repo)?;
    let paths: Vec<String> = files
        .iter()
        .map(|(p, _)| p.to_string())
        .filter(|p| p.starts_with("secrets/") && p.ends_with(".age"))
        .collect();
    // Decrypt everything first: a file we can't read aborts before anything is rewritten.
    let mut maps = BTreeMap::new();
    for p in &paths {
        if let Some(m) = open_map(&args.repo, p, &ids, &recips)? {
            maps.insert(p.clone(), m);
        }
    }
    for (p, m) in &maps {
        seal(&args.repo, p, m, &recips)?;
        println!("re-encrypted {p} to {} recipient(s)", recips.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// A private folder for plaintext, on a RAM-backed file system when there is one.
fn private_dir() -> Result<tempfile::TempDir> {
    let candidates: Vec<PathBuf> = [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Some("/dev/shm".into()),
    ]
    .into_iter()
    .flatten()
    .chain(std::iter::once(std::env::temp_dir()))
    .collect();
    for base in candidates {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("slipway-secret-")
            .tempdir_in(&base)
        {
            #[cfg(unix)]
            std::fs::set_permissions(
                d.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .context("making the plaintext folder private")?;
            return Ok(d);
        }
    }
    bail!("no writable temporary folder for the plaintext")
}

/// Overwrites the plaintext before the folder is removed, whatever happens.
struct Scrub(PathBuf);

impl Drop for Scrub {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::metadata(&self.0) {
            let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
            let _ = std::fs::write(&self.0, zeros);
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

fn edit(args: &RepoArgs, file: &Path) -> Result<ExitCode> {
    let recips = recipients(&args.repo)?;
    let ids = identity::require(args.identity.as_deref())?;
    let rel = rel_name(file);
    let existing = match std::fs::read(file) {
        Ok(bytes) => Some(
            secrets::decrypt(&rel, &bytes, &ids, &recips).map_err(|d| anyhow::anyhow!("{d}"))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let dir = private_dir()?;
    let stem = file
        .file_stem()
        .map_or_else(|| "secrets".into(), |s| s.to_string_lossy().into_owned());
    let plain_path = dir.path().join(format!("{stem}.yaml"));
    let _scrub = Scrub(plain_path.clone());
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&plain_path)
            .context("creating the private plaintext file")?;
        let initial: &[u8] = match &existing {
            Some(p) => p,
            None => b"# One secret per line: name: value\n",
        };
        f.write_all(initial)
            .context("writing the private plaintext file")?;
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Signals reach the editor too; we only note them, so that cleanup below always runs.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {editor} \"$1\""))
        .arg("sh")
        .arg(&plain_path)
        .status()
        .with_context(|| format!("running editor `{editor}`"))?;
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted: {} was not changed", file.display());
    }
    if !status.success() {
        bail!(
            "the editor exited with {status}: {} was not changed",
            file.display()
        );
    }
    let edited =
        Zeroizing::new(std::fs::read(&plain_path).context("reading back the edited file")?);
    if existing.as_ref().is_some_and(|e| e[..] == edited[..]) {
        println!("no changes: {} left as it was", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let text = std::str::from_utf8(&edited).context("the edited file is not UTF-8")?;
    let map = SecretMap::from_yaml(&rel, text)
        .map_err(|d| anyhow::anyhow!("{d}\n{} was not changed", file.display()))?;
    let bytes = secrets::encrypt(map.to_yaml().as_bytes(), &recips).context("encrypting")?;
    repo_fs::write_atomic(file, &bytes)?;
    println!(
        "encrypted {} value(s) to {} recipient(s) into {}",
        map.0.len(),
        recips.len(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}
