//! Input vocabulary: what the reconciler hands to [`crate::Publisher::publish`].
//!
//! These are plain values with validating constructors. The reconciler
//! converts inventory + rendered Ignition into them; nothing here reads files
//! or talks to the network.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{PublishError, Result};

/// A 48-bit Ethernet MAC address.
///
/// Parses `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff` in any case (one
/// separator kind per address); displays as lowercase colon form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Builds a MAC from its six octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Lowercase hyphenated form (`aa-bb-cc-dd-ee-ff`), as iPXE's
    /// `${net0/mac:hexhyp}` prints it and as used for file names.
    pub fn hyphenated(&self) -> String {
        let o = self.0;
        format!(
            "{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = PublishError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || PublishError::InvalidMac(s.chars().take(64).collect());
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut octets = [0u8; 6];
        let mut parts = s.split(sep);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 digest; displays and serializes as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Wraps a finished digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Sha256Digest {
    type Err = PublishError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || PublishError::InvalidDigest(s.chars().take(80).collect());
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The boot server's base URL as nodes see it, e.g. `http://10.0.0.2:8080`
/// (no trailing slash, no query, no fragment).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Validates and normalizes (drops trailing `/`) a base URL.
    pub fn parse(raw: &str) -> Result<Self> {
        let err = |reason| PublishError::InvalidBaseUrl {
            url: raw.chars().take(200).collect(),
            reason,
        };
        let parsed = url::Url::parse(raw).map_err(|_| err("not an absolute URL"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(err("scheme must be http or https"));
        }
        if parsed.host_str().is_none() {
            return Err(err("missing host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(err("must not carry a query or fragment"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(err("must not carry credentials"));
        }
        let text = parsed.as_str().trim_end_matches('/').to_string();
        if let Some(reason) = ipxe_unsafe_reason(&text) {
            return Err(err(reason));
        }
        Ok(BaseUrl(text))
    }

    /// The URL text without trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<base><path>` where `path` starts with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = PublishError;
    fn try_from(value: String) -> Result<Self> {
        BaseUrl::parse(&value)
    }
}

impl From<BaseUrl> for String {
    fn from(value: BaseUrl) -> Self {
        value.0
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({})", self.0)
    }
}

/// Why `text` would be mangled on an iPXE command line, if it would.
///
/// iPXE splits on whitespace, expands `${...}`, honours quotes and
/// backslashes, starts a comment at a token beginning with `#`, and treats the
/// tokens `&&`, `||` and `;` as command chaining. We refuse all of these
/// rather than escape them: the installer never needs them.
pub(crate) fn ipxe_unsafe_reason(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        return Some("is empty");
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains whitespace or control characters");
    }
    if !text.is_ascii() {
        return Some("contains non-ASCII characters");
    }
    if text.contains(['$', '"', '\'', '\\', '`']) {
        return Some("contains one of $ \" ' \\ ` (iPXE expansion or quoting)");
    }
    if text.starts_with('#') {
        return Some("starts with '#' (an iPXE comment)");
    }
    if text == "&&" || text == "||" || text == ";" {
        return Some("is an iPXE command separator");
    }
    if text.contains(crate::ipxe::TOKEN_PLACEHOLDER) {
        return Some("contains the token placeholder");
    }
    None
}

/// Checks a node name: 1-63 of `[A-Za-z0-9._-]`, not starting with `.`/`-`.
pub(crate) fn validate_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PublishError::InvalidNodeName(
            name.chars().take(80).collect(),
        ))
    }
}

/// Whether `name` is a safe artifact file name: `[A-Za-z0-9._+-]`, 1-255
/// bytes, not starting with `.`. Such a name can never traverse directories.
pub fn is_safe_artifact_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// A rendered Ignition config: secret (it carries the K3s token).
///
/// Held in memory only, zeroized on drop; `Debug` prints `(sensitive)`.
#[derive(Clone)]
pub struct SecretIgnition {
    bytes: Zeroizing<Vec<u8>>,
    sha256: Sha256Digest,
}

impl SecretIgnition {
    /// Wraps rendered Ignition bytes, computing their digest.
    pub fn new(bytes: Vec<u8>) -> Self {
        let sha256 = Sha256Digest::of(&bytes);
        SecretIgnition {
            bytes: Zeroizing::new(bytes),
            sha256,
        }
    }

    /// The secret bytes. Do not log them.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the bytes (safe to log and to write down).
    pub fn sha256(&self) -> Sha256Digest {
        self.sha256
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the config is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for SecretIgnition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// One file of the artifact set, as stored in the content-addressed store
/// under `<sha256>/<name>` and served at `/artifacts/<sha256>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// File name, e.g. `fedora-coreos-41.20250105.3.0-live-kernel-x86_64`.
    pub name: String,
    /// Content digest.
    pub sha256: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
    /// Whether a detached signature (`<name>.sig`) was mirrored next to the
    /// file. For the metal image this decides `coreos.inst.insecure`.
    pub signature_available: bool,
}

impl ArtifactRef {
    /// Store-relative path and URL path suffix: `<sha256>/<name>`.
    pub fn store_path(&self) -> String {
        format!("{}/{}", self.sha256, self.name)
    }
}

/// Everything a node downloads while (re)installing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactSet {
    /// FCOS live PXE kernel.
    pub kernel: ArtifactRef,
    /// FCOS live PXE initramfs.
    pub initramfs: ArtifactRef,
    /// FCOS live rootfs image.
    pub rootfs: ArtifactRef,
    /// FCOS metal image (`raw.xz`) written to the install disk.
    pub metal: ArtifactRef,
    /// K3s binary.
    pub k3s_binary: ArtifactRef,
    /// K3s install script.
    pub k3s_install_script: ArtifactRef,
}

impl ArtifactSet {
    /// All artifacts with their role names.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &ArtifactRef)> {
        [
            ("kernel", &self.kernel),
            ("initramfs", &self.initramfs),
            ("rootfs", &self.rootfs),
            ("metal", &self.metal),
            ("k3s_binary", &self.k3s_binary),
            ("k3s_install_script", &self.k3s_install_script),
        ]
        .into_iter()
    }

    /// Whether the install line must carry `coreos.inst.insecure`: true
    /// exactly when no signature is available for the metal image (it was
    /// verified by sha256 alone). The plan should say so.
    pub fn metal_image_insecure(&self) -> bool {
        !self.metal.signature_available
    }
}

/// A node's K3s role, recorded in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// K3s server (control plane).
    Server,
    /// K3s agent (worker).
    Agent,
}

/// One node of a generation.
#[derive(Clone, Debug)]
pub struct NodeInput {
    /// Node name (inventory key), used in `/ignition/<name>`.
    pub name: String,
    /// Every MAC the node may PXE-boot from.
    pub macs: Vec<MacAddr>,
    /// K3s role.
    pub role: NodeRole,
    /// Install target, e.g. `/dev/sda` or `/dev/disk/by-id/...`.
    pub install_device: String,
    /// Extra kernel arguments: cluster-wide ones first, then the node's.
    pub kargs: Vec<String>,
    /// Rendered Ignition (secret, memory only).
    pub ignition: SecretIgnition,
}

/// What a MAC that belongs to no node is served.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum UnknownMacPolicy {
    /// Exit to the local disk (the default).
    #[default]
    Localboot,
    /// A named iPXE script supplied by the operator (e.g. a discovery image).
    Script {
        /// Name for logs and the manifest.
        name: String,
        /// The script; must start with `#!ipxe`.
        body: String,
    },
}

/// Everything one publish needs. Built by the reconciler.
#[derive(Clone, Debug)]
pub struct GenerationInput {
    /// The cluster repository commit this generation renders.
    pub commit: String,
    /// The boot server's base URL as nodes see it.
    pub base_url: BaseUrl,
    /// The nodes.
    pub nodes: Vec<NodeInput>,
    /// The artifact set every node installs from.
    pub artifacts: ArtifactSet,
    /// What unknown MACs get.
    pub unknown_mac: UnknownMacPolicy,
}

impl GenerationInput {
    /// The nodes' Ignition configs, for [`crate::ServerState::activate`].
    pub fn ignitions(&self) -> Vec<SecretIgnition> {
        self.nodes.iter().map(|n| n.ignition.clone()).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mac_accepts_both_separators_any_case() {
        let want = MacAddr::new([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);
        for s in [
            "aa:bb:cc:0d:ee:ff",
            "AA-BB-CC-0D-EE-FF",
            "aA:Bb:cC:0d:Ee:fF",
            "aa-bb-cc-0d-ee-ff",
        ] {
            assert_eq!(s.parse::<MacAddr>().unwrap(), want, "{s}");
        }
        assert_eq!(want.to_string(), "aa:bb:cc:0d:ee:ff");
        assert_eq!(want.hyphenated(), "aa-bb-cc-0d-ee-ff");
    }

    #[test]
    fn mac_rejects_malformed() {
        for s in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb-cc:dd:ee:ff",
            "aabbccddeeff",
            "a:bb:cc:dd:ee:fff",
            "gg:bb:cc:dd:ee:ff",
            "+a:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:ff ",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn digest_round_trips_and_rejects_bad_hex() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_hex().parse::<Sha256Digest>().unwrap(), d);
        assert!("ba78".parse::<Sha256Digest>().is_err());
        assert!("zz".repeat(32).parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn base_url_normalizes_and_refuses_queries() {
        assert_eq!(
            BaseUrl::parse("http://10.0.0.2:8080/").unwrap().as_str(),
            "http://10.0.0.2:8080"
        );
        assert_eq!(
            BaseUrl::parse("http://boot.lan/slipway/").unwrap().as_str(),
            "http://boot.lan/slipway"
        );
        assert!(BaseUrl::parse("http://x/?a=b").is_err());
        assert!(BaseUrl::parse("ftp://x/").is_err());
        assert!(BaseUrl::parse("http://u:p@x/").is_err());
        assert!(BaseUrl::parse("10.0.0.2:8080").is_err());
    }

    #[test]
    fn secret_ignition_debug_hides_bytes() {
        let s = SecretIgnition::new(b"{\"k3s-token\":\"hunter2\"}".to_vec());
        let dbg = format!("{s:?}");
        assert_eq!(dbg, "(sensitive)");
        assert!(!dbg.contains("hunter2"));
        assert_eq!(s.sha256(), Sha256Digest::of(s.expose()));
    }

    #[test]
    fn ipxe_safety_catches_expansion_and_chaining() {
        assert!(ipxe_unsafe_reason("console=ttyS0,115200n8").is_none());
        assert!(ipxe_unsafe_reason("http://x/a?b=c&d=e").is_none());
        for bad in ["a b", "${net0/mac}", "\"q\"", "#c", "&&", "||", "a\\b", ""] {
            assert!(ipxe_unsafe_reason(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn artifact_names_cannot_traverse() {
        assert!(is_safe_artifact_name("fedora-coreos-41-live-kernel-x86_64"));
        assert!(is_safe_artifact_name("k3s"));
        for bad in ["..", "../etc", "a/b", ".hidden", "", "a%2fb", "a\\b"] {
            assert!(!is_safe_artifact_name(bad), "{bad:?}");
        }
    }
}
