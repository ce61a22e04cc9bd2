//! Who to connect to and how to trust it: targets, authentication, host key pins.

use std::fmt;
use std::path::PathBuf;

use ssh_key::{HashAlg, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::SshError;

/// One node to open SSH sessions to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// The node's inventory name (used in errors, spans and results).
    pub name: String,
    /// Host name or IP address to dial.
    pub host: String,
    /// TCP port of the node's sshd.
    pub port: u16,
    /// Remote user to log in as.
    pub user: String,
    /// How to authenticate.
    pub auth: Auth,
    /// How to recognise the node's host key.
    pub host_key: HostKeyPin,
}

/// How to authenticate to a node.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// An OpenSSH private key file (unencrypted; its public half is derived).
    KeyFile(PathBuf),
    /// An OpenSSH private key held in memory (e.g. just decrypted from age
    /// secrets), so it never has to touch the disk in clear. Never printed.
    KeyMemory(Zeroizing<String>),
    /// The running ssh-agent (`SSH_AUTH_SOCK`).
    Agent,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
            Auth::KeyMemory(_) => f.write_str("KeyMemory(<redacted>)"),
            Auth::Agent => f.write_str("Agent"),
        }
    }
}

/// The host key a node must present. There is no "accept anything" variant:
/// Slipway never trusts on first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    /// An OpenSSH public key line, e.g. `ssh-ed25519 AAAA... comment`.
    PublicKey(String),
    /// An OpenSSH known_hosts file (hashed entries and `[host]:port` are supported).
    KnownHosts(PathBuf),
}

/// A host public key ready to be pinned: its OpenSSH line and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPublicKey {
    /// The OpenSSH public key line (`ssh-ed25519 AAAA... comment`), usable as
    /// [`HostKeyPin::PublicKey`] or in a known_hosts file.
    pub openssh: String,
    /// The SHA-256 fingerprint in OpenSSH format (`SHA256:` + unpadded base64).
    pub fingerprint: String,
}

/// Derive the public half (line and fingerprint) of an OpenSSH private key.
///
/// This is how a node's pin is computed from the host private key stored in
/// Slipway's encrypted secrets. Errors never include the key itself.
pub fn public_key_of_private(openssh_private: &str) -> Result<HostPublicKey, SshError> {
    let private = PrivateKey::from_openssh(openssh_private)
        .map_err(|e| SshError::InvalidKey(format!("cannot parse OpenSSH private key: {e}")))?;
    let public = private.public_key();
    let openssh = public
        .to_openssh()
        .map_err(|e| SshError::InvalidKey(format!("cannot encode public key: {e}")))?;
    Ok(HostPublicKey {
        openssh,
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// The OpenSSH SHA-256 fingerprint of a public key line.
pub fn fingerprint_of_public(openssh_public: &str) -> Result<String, SshError> {
    let public = parse_public(openssh_public)?;
    Ok(public.fingerprint(HashAlg::Sha256).to_string())
}

/// The OpenSSH SHA-256 fingerprint of a public key in SSH wire format (what a
/// server sends during the key exchange).
pub fn fingerprint_of_blob(blob: &[u8]) -> String {
    match PublicKey::from_bytes(blob) {
        Ok(key) => key.fingerprint(HashAlg::Sha256).to_string(),
        // A key type ssh-key cannot parse: hash the raw blob exactly as OpenSSH does.
        Err(_) => {
            use base64::Engine;
            use sha2::Digest;
            let digest = sha2::Sha256::digest(blob);
            format!(
                "SHA256:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
            )
        }
    }
}

pub(crate) fn parse_public(openssh_public: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(openssh_public.trim())
        .map_err(|e| SshError::InvalidKey(format!("cannot parse OpenSSH public key: {e}")))
}

/// The SSH wire-format blob of a public key line (what is compared with the
/// server's host key).
pub(crate) fn public_blob(openssh_public: &str) -> Result<Vec<u8>, SshError> {
    parse_public(openssh_public)?
        .to_bytes()
        .map_err(|e| SshError::InvalidKey(format!("cannot encode public key: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // A throwaway key generated for this test with `ssh-keygen -t ed25519 -N ''`.
    const PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCUtTKugVeG/bOfhEZrUH0+Qx9Py3IYdynnfBt7nZ0yrwAAAJDO5Cq1zuQq
tQAAAAtzc2gtZWQyNTUxOQAAACCUtTKugVeG/bOfhEZrUH0+Qx9Py3IYdynnfBt7nZ0yrw
AAAEAiEKo0Ji44S9Nsz2RUkzPbfelWomCeQrLp6Hixft7jUpS1Mq6BV4b9s5+ERmtQfT5D
H0/Lchh3Ked8G3udnTKvAAAADHRlc3RAc2xpcHdheQE=
-----END OPENSSH PRIVATE KEY-----
";
    const PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJS1Mq6BV4b9s5+ERmtQfT5DH0/Lchh3Ked8G3udnTKv test@slipway";
    // `ssh-keygen -lf` of PUBLIC.
    const FINGERPRINT: &str = "SHA256:kGzXFf5Uxy5tuxBBhGt6V0j9KxWXoeKDtUQK5b/K3Zs";

    #[test]
    fn derives_the_same_public_key_and_fingerprint_as_ssh_keygen() {
        let derived = public_key_of_private(PRIVATE).unwrap();
        assert_eq!(derived.openssh, PUBLIC);
        assert_eq!(derived.fingerprint, FINGERPRINT);
        assert_eq!(fingerprint_of_public(PUBLIC).unwrap(), FINGERPRINT);
        assert_eq!(
            fingerprint_of_blob(&public_blob(PUBLIC).unwrap()),
            FINGERPRINT
        );
    }

    #[test]
    fn garbage_keys_are_errors_that_do_not_echo_the_input() {
        let err = public_key_of_private("-----BEGIN OPENSSH PRIVATE KEY-----\nsecretstuff\n")
            .unwrap_err();
        assert!(matches!(err, SshError::InvalidKey(_)));
        assert!(!err.to_string().contains("secretstuff"));
        assert!(fingerprint_of_public("ssh-ed25519 not-base64!").is_err());
    }

    #[test]
    fn debug_of_in_memory_key_is_redacted() {
        let auth = Auth::KeyMemory(Zeroizing::new(PRIVATE.to_string()));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("b3BlbnNzaC"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
