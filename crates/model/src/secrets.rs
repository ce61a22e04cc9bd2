//! Age-encrypted secrets: parsing recipients and identities, decrypting `secrets/*.age`.
//!
//! Files are ASCII-armored age files holding a YAML mapping of names to strings, so they are
//! interchangeable with the `age` command-line tool. Decrypted values are held in [`Secret`],
//! which zeroizes on drop and never prints its value (`Debug`/`Display` show `(sensitive)`).
//! Encryption lives in the binary; this module only decrypts, because loading needs it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::diag::{Diagnostic, Location};

/// The file that lists who secrets are encrypted to.
pub const RECIPIENTS_FILE: &str = ".slipway/recipients";
/// Cluster-wide secrets: `k3s_token`, optional `core_password_hash`.
pub const CLUSTER_SECRETS: &str = "secrets/cluster.age";
/// Key of the K3s token in [`CLUSTER_SECRETS`].
pub const K3S_TOKEN_KEY: &str = "k3s_token";
/// Key of the optional password hash for `core` in [`CLUSTER_SECRETS`].
pub const PASSWORD_HASH_KEY: &str = "core_password_hash";
/// Key of a node's SSH host private key in its secrets file.
pub const HOST_KEY_KEY: &str = "ssh_host_ed25519_key";

/// The secrets file of node `name`.
pub fn node_secrets_path(name: &str) -> String {
    format!("secrets/nodes/{name}.age")
}

/// A secret value. Never printed, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value. Call only where it must go: the rendered Ignition, an encrypted file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// A decrypted secrets file: names to values, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretMap(pub BTreeMap<String, Secret>);

impl SecretMap {
    /// One value.
    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.0.get(key)
    }

    /// Serialize as the YAML document stored (encrypted) in a `.age` file.
    pub fn to_yaml(&self) -> Zeroizing<String> {
        let mut out = String::new();
        for (k, v) in &self.0 {
            let v = v.expose();
            let body = v.strip_suffix('\n').unwrap_or(v);
            let literal_ok = v.ends_with('\n')
                && !body.is_empty()
                && !body.ends_with('\n')
                && body.lines().all(|l| {
                    !l.is_empty() && !l.starts_with([' ', '\t']) && !l.ends_with([' ', '\t'])
                });
            if literal_ok {
                // Multi-line values (keys, certificates) as literal blocks, readable in an editor.
                out.push_str(&format!("{k}: |\n"));
                for line in body.lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            } else {
                // JSON string syntax is valid YAML and escapes everything that needs escaping.
                let quoted = serde_json::to_string(v).unwrap_or_default();
                out.push_str(&format!("{k}: {quoted}\n"));
            }
        }
        Zeroizing::new(out)
    }

    /// Parse a decrypted document. Errors never quote the content.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, Diagnostic> {
        let where_ = |line: usize, column: usize| Location::new(file, line, column);
        let bad = |loc| {
            Diagnostic::error(
                loc,
                "the decrypted content is not a YAML mapping of names to string values",
            )
            .with_hint(format!("fix it with `slipway secrets edit {file}`"))
        };
        let node = crate::yaml::parse(file, text).map_err(|d| bad(d.location))?;
        let map = node.as_mapping().ok_or_else(|| bad(where_(1, 1)))?;
        let mut out = BTreeMap::new();
        for (k, v) in map.iter() {
            let Some(s) = v.as_scalar() else {
                let loc = crate::yaml::location_of(file, v.span());
                return Err(bad(loc));
            };
            out.insert(k.as_str().to_string(), Secret::new(s.as_str()));
        }
        Ok(Self(out))
    }
}

/// A recipient line from `.slipway/recipients`: an age X25519 key or an SSH public key.
#[derive(Clone)]
pub enum Recipient {
    /// `age1...`
    X25519(age::x25519::Recipient),
    /// `ssh-ed25519 ...` or `ssh-rsa ...`
    Ssh(Box<age::ssh::Recipient>),
}

impl Recipient {
    /// As a trait object for the encryptor.
    pub fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r.as_ref(),
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::X25519(r) => write!(f, "{r}"),
            Recipient::Ssh(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

/// Parse a recipients file: one key per line; blank lines and `#` comments allowed.
pub fn parse_recipients(file: &str, text: &str) -> Result<Vec<Recipient>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let col = line.len() - line.trim_start().len() + 1;
        let loc = Location::new(file, i + 1, col);
        if trimmed.starts_with("age1") {
            match age::x25519::Recipient::from_str(trimmed) {
                Ok(r) => out.push(Recipient::X25519(r)),
                Err(_) => errs.push(
                    Diagnostic::error(loc, "not a valid age public key").with_hint(
                        "copy the `age1...` line that `age-keygen` printed as `Public key:`",
                    ),
                ),
            }
        } else if trimmed.starts_with("ssh-") {
            match age::ssh::Recipient::from_str(trimmed) {
                Ok(r) => out.push(Recipient::Ssh(Box::new(r))),
                Err(_) => errs.push(
                    Diagnostic::error(
                        loc,
                        "not a usable SSH public key (age supports ssh-ed25519 and ssh-rsa)",
                    )
                    .with_hint("paste the whole line of the `.pub` file"),
                ),
            }
        } else {
            errs.push(
                Diagnostic::error(loc, "expected an age public key (`age1...`) or an SSH public key (`ssh-ed25519 ...`)")
                    .with_hint("comment lines start with `#`"),
            );
        }
    }
    if out.is_empty() && errs.is_empty() {
        errs.push(
            Diagnostic::error(
                Location::file(file),
                "no recipients: secrets would be encrypted to nobody",
            )
            .with_hint("add your age public key (`age-keygen -y KEYFILE` prints it)"),
        );
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// Age identities that decrypt secrets (an `age-keygen` key file).
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} keys)", self.keys.len())
    }
}

/// Why an identity file could not be used. Never quotes the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// Not an age identity file.
    #[error("line {line}: not an age identity (expected `AGE-SECRET-KEY-1...`); comments start with `#`")]
    BadLine {
        /// 1-based line.
        line: usize,
    },
    /// Nothing usable in it.
    #[error("the identity file holds no age secret key")]
    Empty,
}

impl Identities {
    /// Parse an identity file's text.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(t)
                .map_err(|_| IdentityError::BadLine { line: i + 1 })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(IdentityError::Empty);
        }
        Ok(Self { keys })
    }

    /// Wrap already-parsed keys.
    pub fn from_keys(keys: Vec<age::x25519::Identity>) -> Self {
        Self { keys }
    }

    /// The public keys of these identities, for messages.
    pub fn public_keys(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }
}

/// Decrypt an (armored or binary) age file. `recipients` are only used to explain a failure.
pub fn decrypt(
    file: &str,
    bytes: &[u8],
    identities: &Identities,
    recipients: &[Recipient],
) -> Result<Zeroizing<Vec<u8>>, Diagnostic> {
    let loc = Location::file(file);
    let reader = age::armor::ArmoredReader::new(bytes);
    let decryptor = age::Decryptor::new(reader).map_err(|e| {
        Diagnostic::error(loc.clone(), format!("not an age-encrypted file: {e}"))
            .with_hint("secrets files must be written by `slipway secrets encrypt` or `age -a -R .slipway/recipients`")
    })?;
    let mut reader = decryptor.decrypt(identities.as_dyn()).map_err(|_| {
        let mine = identities.public_keys().join(", ");
        let listed = recipients.iter().map(ToString::to_string).collect::<Vec<_>>();
        let in_list = identities.public_keys().iter().any(|k| listed.contains(k));
        let hint = if in_list {
            "your key is listed in .slipway/recipients but this file was encrypted before it was added: \
             someone who can decrypt it must run `slipway secrets encrypt` (or `edit`) to re-encrypt it"
                .to_string()
        } else {
            format!(
                "your key is not in .slipway/recipients ({}): add it there and have someone who can decrypt \
                 re-encrypt the secrets",
                if listed.is_empty() { "empty".to_string() } else { listed.join(", ") }
            )
        };
        Diagnostic::error(
            loc.clone(),
            format!("cannot decrypt with identity {mine}: it is not one of the recipients this file is encrypted to"),
        )
        .with_hint(hint)
    })?;
    let mut out = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut out).map_err(|e| {
        Diagnostic::error(loc, format!("the encrypted file is damaged: {e}"))
            .with_hint("restore it from git history")
    })?;
    Ok(out)
}

/// Why encryption failed.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// No recipients to encrypt to.
    #[error("no recipients to encrypt to")]
    NoRecipients,
    /// The age library failed (I/O into memory does not fail in practice).
    #[error("encrypting: {0}")]
    Age(String),
}

/// Encrypt `plaintext` to `recipients` as an ASCII-armored age file (what `age -a` writes).
pub fn encrypt(plaintext: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, EncryptError> {
    let enc = age::Encryptor::with_recipients(recipients.iter().map(Recipient::as_age))
        .map_err(|_| EncryptError::NoRecipients)?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| EncryptError::Age(e.to_string()))?;
    let mut w = enc
        .wrap_output(armor)
        .map_err(|e| EncryptError::Age(e.to_string()))?;
    w.write_all(plaintext)
        .map_err(|e| EncryptError::Age(e.to_string()))?;
    w.finish()
        .and_then(|a| a.finish())
        .map_err(|e| EncryptError::Age(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("K10supersecret");
        assert_eq!(format!("{s:?} {s}"), "(sensitive) (sensitive)");
        let m = SecretMap(BTreeMap::from([("k3s_token".to_string(), s)]));
        assert!(!format!("{m:?}").contains("supersecret"));
    }

    #[test]
    fn secret_map_round_trips_awkward_values() {
        let values = [
            "line1\nline2: \"quoted\" # not a comment\n",
            "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
            "no newline at end\nsecond",
            " leading space\n",
            "two trailing\n\n",
            "plain",
            "",
            "x: y",
        ];
        for value in values {
            let m = SecretMap(BTreeMap::from([("k".to_string(), Secret::new(value))]));
            let yaml = m.to_yaml();
            let back = SecretMap::from_yaml("x", &yaml).unwrap();
            assert_eq!(back.get("k").unwrap().expose(), value, "{}", yaml.as_str());
        }
        let key = SecretMap(BTreeMap::from([("k".to_string(), Secret::new("a\nb\n"))]));
        assert_eq!(key.to_yaml().as_str(), "k: |\n  a\n  b\n");
    }

    #[test]
    fn bad_secret_yaml_does_not_quote_content() {
        let e =
            SecretMap::from_yaml("secrets/cluster.age", "k3s_token: [hunter2secret\n").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn recipients_file_errors_have_lines() {
        let key = age::x25519::Identity::generate().to_public().to_string();
        let text = format!("# admins\n{key}\n  age1notakey\nfoo\n");
        let e = parse_recipients(".slipway/recipients", &text).unwrap_err();
        let locs: Vec<String> = e.iter().map(|d| d.location.to_string()).collect();
        assert_eq!(
            locs,
            vec![".slipway/recipients:3:3", ".slipway/recipients:4:1"]
        );
        assert_eq!(parse_recipients("r", &format!("{key}\n")).unwrap().len(), 1);
        assert!(parse_recipients("r", "# nothing\n").is_err());
    }

    #[test]
    fn decrypt_failure_explains_recipients() {
        let owner = age::x25519::Identity::generate();
        let stranger = age::x25519::Identity::generate();
        let out = encrypt(b"k3s_token: abc\n", &[Recipient::X25519(owner.to_public())]).unwrap();
        assert!(out.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));

        let ok = decrypt("f", &out, &Identities::from_keys(vec![owner.clone()]), &[]).unwrap();
        assert_eq!(&ok[..], b"k3s_token: abc\n");
        let listed = vec![Recipient::X25519(owner.to_public())];
        let e = decrypt("f", &out, &Identities::from_keys(vec![stranger]), &listed).unwrap_err();
        assert!(e.message.contains("not one of the recipients"), "{e}");
        assert!(
            e.hint
                .as_ref()
                .unwrap()
                .contains(&owner.to_public().to_string()),
            "{e}"
        );
    }
}
