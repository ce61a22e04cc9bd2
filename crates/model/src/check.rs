//! Checking a whole repository: the inventory, the secrets it references, and plaintext
//! secrets where they don't belong. This is what `slipway validate` runs, and what every
//! other command runs first.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::inventory::{self, Inventory};
use crate::repo::RepoFiles;
use crate::secrets::{
    self, node_secrets_path, Identities, Recipient, Secret, SecretMap, CLUSTER_SECRETS,
    HOST_KEY_KEY, K3S_TOKEN_KEY, PASSWORD_HASH_KEY, RECIPIENTS_FILE,
};

/// The decrypted secrets an inventory needs.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// K3s join token.
    pub k3s_token: Secret,
    /// Optional password hash for `core`.
    pub core_password_hash: Option<Secret>,
    /// Per node: its SSH host private key (OpenSSH format, ed25519).
    pub host_keys: BTreeMap<String, Secret>,
}

impl Secrets {
    /// The OpenSSH public key line of a node's host key, for pinning.
    pub fn host_public_key(&self, node: &str) -> Option<String> {
        let key = ssh_key::PrivateKey::from_openssh(self.host_keys.get(node)?.expose()).ok()?;
        key.public_key().to_openssh().ok()
    }
}

/// The result of checking a repository.
#[derive(Debug)]
pub struct Checked {
    /// The inventory, when it has no errors.
    pub inventory: Option<Inventory>,
    /// Recipients from `.slipway/recipients`.
    pub recipients: Vec<Recipient>,
    /// Decrypted secrets, when an identity was given and everything decrypted.
    pub secrets: Option<Secrets>,
    /// Every problem, sorted by location.
    pub diagnostics: Diagnostics,
}

/// Check everything in `files`. Without `identities`, secrets are checked for presence and
/// format only, and a warning says they were not decrypted.
pub fn check_repo(files: &RepoFiles, identities: Option<&Identities>) -> Checked {
    let (inventory, mut diagnostics) = inventory::load(files);
    let recipients = match files.text(RECIPIENTS_FILE) {
        Some(t) => secrets::parse_recipients(RECIPIENTS_FILE, t).unwrap_or_else(|ds| {
            diagnostics.extend(ds);
            Vec::new()
        }),
        None => {
            diagnostics.push(
                Diagnostic::error(
                    Location::file(RECIPIENTS_FILE),
                    "the recipients file is missing",
                )
                .with_hint(
                    "list the age public keys of everyone who may decrypt secrets, one per line",
                ),
            );
            Vec::new()
        }
    };
    diagnostics.extend(scan_plaintext_secrets(files));
    let mut secrets = None;
    if let Some(inv) = &inventory {
        secrets = check_secrets(files, inv, identities, &recipients, &mut diagnostics);
    }
    diagnostics.sort();
    let ok = !diagnostics.has_errors();
    Checked {
        inventory: inventory.filter(|_| ok),
        recipients,
        secrets: secrets.filter(|_| ok),
        diagnostics,
    }
}

fn check_secrets(
    files: &RepoFiles,
    inv: &Inventory,
    identities: Option<&Identities>,
    recipients: &[Recipient],
    diags: &mut Diagnostics,
) -> Option<Secrets> {
    let generate = GENERATE_HINT;
    let open = |path: &str, needed_by: &str, diags: &mut Diagnostics| {
        open_secrets(files, path, needed_by, identities, recipients, diags)
    };
    let cluster = open(CLUSTER_SECRETS, "it holds the K3s token", diags);
    let mut host_keys = BTreeMap::new();
    for n in &inv.nodes {
        let path = node_secrets_path(&n.name);
        if let Some(m) = open(
            &path,
            &format!("it holds the SSH host key of node {}", n.name),
            diags,
        ) {
            match m.get(HOST_KEY_KEY) {
                Some(k)
                    if ssh_key::PrivateKey::from_openssh(k.expose())
                        .is_ok_and(|p| p.algorithm() == ssh_key::Algorithm::Ed25519) =>
                {
                    host_keys.insert(n.name.clone(), k.clone());
                }
                Some(_) => diags.push(
                    Diagnostic::error(
                        Location::file(&path),
                        format!("`{HOST_KEY_KEY}` is not an OpenSSH ed25519 private key"),
                    )
                    .with_hint(format!("remove the key and {generate}")),
                ),
                None => diags.push(
                    Diagnostic::error(
                        Location::file(&path),
                        format!("`{HOST_KEY_KEY}` is missing"),
                    )
                    .with_hint(format!(
                        "the node's host key is pinned from its first boot; {generate}"
                    )),
                ),
            }
        }
    }
    for path in files.list("secrets/nodes", ".age") {
        let name = path
            .trim_start_matches("secrets/nodes/")
            .trim_end_matches(".age");
        if inv.node(name).is_none() {
            diags.push(
                Diagnostic::warning(
                    Location::file(path),
                    format!("secrets for `{name}`, which is not in nodes/"),
                )
                .with_hint("delete the file if the node is gone for good"),
            );
        }
    }
    if identities.is_none() {
        diags.push(
            Diagnostic::warning(
                Location::file(CLUSTER_SECRETS),
                "secrets were not decrypted: no identity given",
            )
            .with_hint("pass --identity FILE or set SLIPWAY_AGE_IDENTITY to check them too"),
        );
        return None;
    }
    let cluster = cluster?;
    let Some(token) = cluster.get(K3S_TOKEN_KEY) else {
        diags.push(
            Diagnostic::error(
                Location::file(CLUSTER_SECRETS),
                format!("`{K3S_TOKEN_KEY}` is missing"),
            )
            .with_hint(generate),
        );
        return None;
    };
    if token.expose().len() < 16 {
        diags.push(
            Diagnostic::error(
                Location::file(CLUSTER_SECRETS),
                format!("`{K3S_TOKEN_KEY}` is too short to be safe (under 16 characters)"),
            )
            .with_hint("remove it and run `slipway secrets generate` for a strong one"),
        );
    }
    if host_keys.len() != inv.nodes.len() {
        return None;
    }
    Some(Secrets {
        k3s_token: token.clone(),
        core_password_hash: cluster.get(PASSWORD_HASH_KEY).cloned(),
        host_keys,
    })
}

const GENERATE_HINT: &str = "run `slipway secrets generate` to create it";

/// Decrypt and parse one secrets file, reporting problems. `None` without identities.
fn open_secrets(
    files: &RepoFiles,
    path: &str,
    needed_by: &str,
    identities: Option<&Identities>,
    recipients: &[Recipient],
    diags: &mut Diagnostics,
) -> Option<SecretMap> {
    let Some(bytes) = files.get(path) else {
        diags.push(
            Diagnostic::error(
                Location::file(path),
                format!("secrets file is missing ({needed_by})"),
            )
            .with_hint(GENERATE_HINT),
        );
        return None;
    };
    let ids = identities?;
    let plain = match secrets::decrypt(path, bytes, ids, recipients) {
        Ok(p) => p,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let Ok(text) = std::str::from_utf8(&plain) else {
        diags.push(Diagnostic::error(
            Location::file(path),
            "the decrypted content is not UTF-8 text",
        ));
        return None;
    };
    match SecretMap::from_yaml(path, text) {
        Ok(m) => Some(m),
        Err(d) => {
            diags.push(d);
            None
        }
    }
}

/// Warn about values that look like secrets in files outside `secrets/`.
pub fn scan_plaintext_secrets(files: &RepoFiles) -> Vec<Diagnostic> {
    // Patterns: K3s secure tokens, private keys, age identities, and `token:`/`password:`-like
    // keys with long literal values.
    let patterns: [(&str, &str); 4] = [
        (r"K10[0-9a-f]{32,}::", "a K3s token"),
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----", "a private key"),
        (r"AGE-SECRET-KEY-1[0-9A-Z]{20,}", "an age secret key"),
        (
            r#"(?i)\b[a-z0-9_]*(token|password|passwd|secret)[a-z0-9_]*\s*[:=]\s*["']?([A-Za-z0-9+/_=.$-]{16,})"#,
            "a token or password",
        ),
    ];
    let Ok(set) = patterns
        .iter()
        .map(|(p, _)| regex::Regex::new(p))
        .collect::<Result<Vec<_>, _>>()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, bytes) in files.iter() {
        if path.starts_with("secrets/") || path.contains("DEMO-ONLY") {
            continue;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for (re, (_, what)) in set.iter().zip(patterns.iter()) {
                if let Some(m) = re.find(line) {
                    let col = line[..m.start()].chars().count() + 1;
                    out.push(
                        Diagnostic::warning(Location::new(path, i + 1, col), format!("this looks like {what} in plain text"))
                            .with_hint("secrets belong in secrets/*.age (`slipway secrets edit`); if it is not secret, ignore this"),
                    );
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_scan_finds_tokens_with_locations() {
        let mut f = RepoFiles::new();
        f.insert("butane/x.bu", "storage:\n  files:\n    - contents: {inline: \"K10aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa::server:abc\"}\n");
        f.insert(
            "nodes/a.yaml",
            "# token: abcdefabcdefabcdefabcdef (a comment)\nk3s_token: abcdefabcdefabcdefabcdef\n",
        );
        f.insert(
            "secrets/cluster.age",
            "k3s_token: abcdefabcdefabcdefabcdef\n",
        );
        let d = scan_plaintext_secrets(&f);
        let locs: Vec<String> = d.iter().map(|d| d.location.to_string()).collect();
        assert_eq!(locs, vec!["butane/x.bu:3:27", "nodes/a.yaml:2:1"]);
        assert!(d.iter().all(|d| !d.message.contains("abcdef")));
    }
}
