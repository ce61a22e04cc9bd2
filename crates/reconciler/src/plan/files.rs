//! A node's files as the plan compares them: decoded from the rendered Ignition, then
//! redacted so no secret value can reach a diff.
//!
//! Two types keep the secret boundary in the type system:
//! - [`RawFiles`] holds decoded contents, secrets included. It is not `Serialize`, its
//!   `Debug` prints paths and sizes only, its buffers are zeroized on drop, and the only way
//!   to read its contents is [`RawFiles::redact`].
//! - [`NodeFiles`] is what the plan takes: every occurrence of a secret value replaced by
//!   `(sensitive)`. A fingerprint of the masked values is kept privately (never
//!   printed or serialized) so the plan can still say "a secret changed".
//!
//! Besides `storage.files`, the extraction turns the other parts of the Ignition config that
//! matter for a reinstall into pseudo-files, so they diff like files:
//! `systemd:<unit>`, `systemd:<unit>.d/<dropin>`, `link:<path>` targets, `directory:<path>`,
//! `passwd:user/<name>`, `kernel_arguments`, `storage:disks`, `storage:filesystems`,
//! `storage:raid`, `storage:luks`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::PlanError;

/// What the renderer prints in place of a secret value.
pub const SENSITIVE: &str = "(sensitive)";

/// Decoded contents larger than this are refused (a gzip bomb in an overlay).
const MAX_DECODED: usize = 64 << 20;

/// Where a K3s configuration lives; `cluster-init` is looked for there.
const K3S_CONFIG: &str = slipway_ignition_gen::profile::K3S_CONFIG;
/// K3s's drop-in folder for more configuration.
const K3S_CONFIG_D: &str = "/etc/rancher/k3s/config.yaml.d/";

/// Metadata of a file or pseudo-file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Meta {
    mode: Option<u32>,
    owner: Option<String>,
    enabled: Option<bool>,
    masked: bool,
}

#[derive(Clone)]
enum RawBody {
    Data(Zeroizing<Vec<u8>>),
    Remote {
        source: String,
        hash: Option<String>,
    },
    Link {
        target: String,
        hard: bool,
    },
    Directory,
}

#[derive(Clone)]
struct RawEntry {
    meta: Meta,
    body: RawBody,
}

/// A node's decoded files, secrets included. Read them only through [`RawFiles::redact`].
#[derive(Clone, Default)]
pub struct RawFiles {
    entries: BTreeMap<String, RawEntry>,
    /// Values the extraction knows are secret by their place (password hashes).
    implicit_secrets: Vec<Zeroizing<String>>,
}

impl fmt::Debug for RawFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (path, e) in &self.entries {
            match &e.body {
                RawBody::Data(d) => m.entry(path, &format_args!("{} bytes", d.len())),
                RawBody::Remote { .. } => m.entry(path, &"remote"),
                RawBody::Link { .. } => m.entry(path, &"link"),
                RawBody::Directory => m.entry(path, &"directory"),
            };
        }
        m.finish()
    }
}

impl RawFiles {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (files and pseudo-files).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add (or replace) a regular file with inline contents. `owner` is `user:group`.
    pub fn file(
        &mut self,
        path: &str,
        mode: Option<u32>,
        owner: Option<&str>,
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.insert(
            path.to_string(),
            Meta {
                mode,
                owner: owner.map(str::to_string),
                ..Meta::default()
            },
            RawBody::Data(Zeroizing::new(data.into())),
        )
    }

    /// Add a regular file fetched from a URL, checked against `hash` (`sha256-<hex>`).
    pub fn remote(
        &mut self,
        path: &str,
        mode: Option<u32>,
        source: &str,
        hash: Option<&str>,
    ) -> &mut Self {
        self.insert(
            path.to_string(),
            Meta {
                mode,
                ..Meta::default()
            },
            RawBody::Remote {
                source: source.to_string(),
                hash: hash.map(str::to_string),
            },
        )
    }

    /// Add a systemd unit as the pseudo-file `systemd:<name>`.
    pub fn unit(
        &mut self,
        name: &str,
        enabled: Option<bool>,
        masked: bool,
        contents: Option<&str>,
    ) -> &mut Self {
        self.insert(
            format!("systemd:{name}"),
            Meta {
                enabled,
                masked,
                ..Meta::default()
            },
            RawBody::Data(Zeroizing::new(contents.unwrap_or("").as_bytes().to_vec())),
        )
    }

    /// Add a unit drop-in as the pseudo-file `systemd:<unit>.d/<name>`.
    pub fn dropin(&mut self, unit: &str, name: &str, contents: Option<&str>) -> &mut Self {
        self.insert(
            format!("systemd:{unit}.d/{name}"),
            Meta::default(),
            RawBody::Data(Zeroizing::new(contents.unwrap_or("").as_bytes().to_vec())),
        )
    }

    fn insert(&mut self, path: String, meta: Meta, body: RawBody) -> &mut Self {
        self.entries.insert(path, RawEntry { meta, body });
        self
    }

    /// Decode the files, units, links, users, kernel arguments and disk layout of an
    /// Ignition config (spec 3.x, as JSON). `data:` URLs are decoded (percent-encoding,
    /// base64) and gunzipped when `compression` is `gzip`; other URLs are kept as the
    /// file's source. Errors name the path, never the contents.
    pub fn from_ignition(json: &str) -> Result<Self, PlanError> {
        let doc: Value = serde_json::from_str(json).map_err(|e| PlanError::IgnitionSyntax {
            line: e.line(),
            column: e.column(),
        })?;
        let mut out = RawFiles::new();
        let storage = &doc["storage"];
        for f in array(storage, "files")? {
            let path = string(f, "path", "storage.files[].path")?;
            let meta = Meta {
                mode: mode(f, &path)?,
                owner: owner(f),
                ..Meta::default()
            };
            let mut body = match f.get("contents") {
                Some(c) if !c.is_null() => contents(c, &path)?,
                _ => RawBody::Data(Zeroizing::new(Vec::new())),
            };
            for a in array(f, "append")? {
                match (&mut body, contents(a, &path)?) {
                    (RawBody::Data(d), RawBody::Data(more)) => d.extend_from_slice(&more),
                    (b, RawBody::Remote { source, .. }) => {
                        *b = RawBody::Remote {
                            source: format!("{} + append {source}", describe_source(b)),
                            hash: None,
                        };
                    }
                    (b, RawBody::Data(_)) => {
                        *b = RawBody::Remote {
                            source: format!("{} + append (inline data)", describe_source(b)),
                            hash: None,
                        };
                    }
                    _ => {}
                }
            }
            out.insert(path, meta, body);
        }
        for l in array(storage, "links")? {
            let path = string(l, "path", "storage.links[].path")?;
            let target = string(l, "target", "storage.links[].target")?;
            let hard = l.get("hard").and_then(Value::as_bool).unwrap_or(false);
            let meta = Meta {
                owner: owner(l),
                ..Meta::default()
            };
            out.insert(format!("link:{path}"), meta, RawBody::Link { target, hard });
        }
        for d in array(storage, "directories")? {
            let path = string(d, "path", "storage.directories[].path")?;
            let meta = Meta {
                mode: mode(d, &path)?,
                owner: owner(d),
                ..Meta::default()
            };
            out.insert(format!("directory:{path}"), meta, RawBody::Directory);
        }
        for key in ["disks", "filesystems", "raid", "luks"] {
            let items = array(storage, key)?;
            if !items.is_empty() {
                let text =
                    serde_json::to_string_pretty(&Value::Array(items.to_vec())).unwrap_or_default();
                out.insert(
                    format!("storage:{key}"),
                    Meta::default(),
                    RawBody::Data(Zeroizing::new(format!("{text}\n").into_bytes())),
                );
            }
        }
        for u in array(&doc["systemd"], "units")? {
            let name = string(u, "name", "systemd.units[].name")?;
            let enabled = u.get("enabled").and_then(Value::as_bool);
            let masked = u.get("mask").and_then(Value::as_bool).unwrap_or(false);
            out.unit(
                &name,
                enabled,
                masked,
                u.get("contents").and_then(Value::as_str),
            );
            for d in array(u, "dropins")? {
                let dname = string(d, "name", "systemd.units[].dropins[].name")?;
                out.dropin(&name, &dname, d.get("contents").and_then(Value::as_str));
            }
        }
        for user in array(&doc["passwd"], "users")? {
            let name = string(user, "name", "passwd.users[].name")?;
            if let Some(hash) = user.get("passwordHash").and_then(Value::as_str) {
                if !hash.is_empty() {
                    out.implicit_secrets.push(Zeroizing::new(hash.to_string()));
                }
            }
            let text = Zeroizing::new(serde_json::to_string_pretty(user).unwrap_or_default());
            out.insert(
                format!("passwd:user/{name}"),
                Meta::default(),
                RawBody::Data(Zeroizing::new(format!("{}\n", text.as_str()).into_bytes())),
            );
        }
        let kargs = &doc["kernelArguments"];
        let mut lines = String::new();
        for (key, sign) in [("shouldExist", '+'), ("shouldNotExist", '-')] {
            for a in array(kargs, key)? {
                if let Some(a) = a.as_str() {
                    lines.push_str(&format!("{sign} {a}\n"));
                }
            }
        }
        if !lines.is_empty() {
            out.insert(
                "kernel_arguments".into(),
                Meta::default(),
                RawBody::Data(Zeroizing::new(lines.into_bytes())),
            );
        }
        Ok(out)
    }

    /// Replace every occurrence of every secret value (and of the values the extraction
    /// recognised as secret, such as password hashes) with `(sensitive)`. Empty values are
    /// ignored. A value is matched without its trailing line breaks (the file keeps its own),
    /// as is and in its JSON-escaped form (how a multi-line secret appears in JSON text).
    pub fn redact(&self, secrets: &[&str]) -> NodeFiles {
        let mut needles: Vec<Zeroizing<String>> = Vec::new();
        let all = secrets
            .iter()
            .copied()
            .chain(self.implicit_secrets.iter().map(|s| s.as_str()));
        for s in all {
            // Trailing line breaks are not part of the secret: the file keeps its own.
            let trimmed = s.trim_end_matches(['\n', '\r']);
            let escaped = Zeroizing::new(serde_json::to_string(trimmed).unwrap_or_default());
            let escaped = escaped
                .get(1..escaped.len().saturating_sub(1))
                .unwrap_or("")
                .to_string();
            for form in [trimmed.to_string(), escaped] {
                let form = Zeroizing::new(form);
                if !form.is_empty() && !needles.iter().any(|n| n.as_str() == form.as_str()) {
                    needles.push(form);
                }
            }
        }
        // Longest first, so a secret containing another is masked whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let entries = self
            .entries
            .iter()
            .map(|(path, e)| (path.clone(), redact_entry(e, &needles)))
            .collect();
        NodeFiles { entries }
    }
}

fn describe_source(b: &RawBody) -> String {
    match b {
        RawBody::Remote { source, .. } => source.clone(),
        _ => "(inline data)".into(),
    }
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], PlanError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(PlanError::IgnitionShape {
            field: key.to_string(),
            expected: "a list",
        }),
    }
}

fn string(v: &Value, key: &str, field: &str) -> Result<String, PlanError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| PlanError::IgnitionShape {
            field: field.to_string(),
            expected: "a string",
        })
}

fn mode(v: &Value, path: &str) -> Result<Option<u32>, PlanError> {
    match v.get("mode") {
        None | Some(Value::Null) => Ok(None),
        Some(m) => m
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .map(Some)
            .ok_or_else(|| PlanError::IgnitionShape {
                field: format!("mode of {path}"),
                expected: "a number",
            }),
    }
}

fn owner(v: &Value) -> Option<String> {
    let part = |k: &str| {
        let o = v.get(k)?;
        o.get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| o.get("id").and_then(Value::as_u64).map(|i| i.to_string()))
    };
    match (part("user"), part("group")) {
        (None, None) => None,
        (u, g) => Some(format!(
            "{}:{}",
            u.as_deref().unwrap_or("root"),
            g.as_deref().unwrap_or("root")
        )),
    }
}

fn contents(c: &Value, path: &str) -> Result<RawBody, PlanError> {
    let compression = c.get("compression").and_then(Value::as_str).unwrap_or("");
    let hash = c
        .get("verification")
        .and_then(|v| v.get("hash"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(inline) = c.get("inline").and_then(Value::as_str) {
        return Ok(RawBody::Data(Zeroizing::new(inline.as_bytes().to_vec())));
    }
    let Some(source) = c.get("source").and_then(Value::as_str) else {
        return Ok(RawBody::Data(Zeroizing::new(Vec::new())));
    };
    let Some(opaque) = source.strip_prefix("data:") else {
        return Ok(RawBody::Remote {
            source: source.to_string(),
            hash,
        });
    };
    let data = decode_data_url(opaque, path)?;
    let data = match compression {
        "" => data,
        "gzip" => gunzip(&data, path)?,
        other => {
            return Err(PlanError::UnsupportedCompression {
                path: path.to_string(),
                compression: other.to_string(),
            })
        }
    };
    Ok(RawBody::Data(data))
}

/// Decode the part of a `data:` URL after `data:` (RFC 2397): `[mediatype][;base64],data`.
fn decode_data_url(opaque: &str, path: &str) -> Result<Zeroizing<Vec<u8>>, PlanError> {
    let bad = |reason: &'static str| PlanError::BadDataUrl {
        path: path.to_string(),
        reason,
    };
    let (header, payload) = opaque
        .split_once(',')
        .ok_or(bad("no `,` after the header"))?;
    let bytes = Zeroizing::new(percent_encoding::percent_decode_str(payload).collect::<Vec<u8>>());
    if header.split(';').any(|p| p.eq_ignore_ascii_case("base64")) {
        let cleaned: Zeroizing<Vec<u8>> = Zeroizing::new(
            bytes
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect(),
        );
        base64::engine::general_purpose::STANDARD
            .decode(&*cleaned)
            .map(Zeroizing::new)
            .map_err(|_| bad("invalid base64"))
    } else {
        Ok(bytes)
    }
}

fn gunzip(data: &[u8], path: &str) -> Result<Zeroizing<Vec<u8>>, PlanError> {
    let mut out = Zeroizing::new(Vec::new());
    let limit = u64::try_from(MAX_DECODED).unwrap_or(u64::MAX) + 1;
    flate2::read::GzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| PlanError::BadGzip {
            path: path.to_string(),
        })?;
    if out.len() > MAX_DECODED {
        return Err(PlanError::TooLarge {
            path: path.to_string(),
            limit: MAX_DECODED,
        });
    }
    Ok(out)
}

fn redact_entry(e: &RawEntry, needles: &[Zeroizing<String>]) -> FileEntry {
    let meta = e.meta.clone();
    let (contents, secret) = match &e.body {
        RawBody::Directory => (Contents::Directory, None),
        RawBody::Link { target, hard } => {
            let (target, secret) = mask_text(target, needles);
            (
                Contents::Link {
                    target,
                    hard: *hard,
                },
                secret,
            )
        }
        RawBody::Remote { source, hash } => {
            let (source, secret) = mask_text(source, needles);
            (
                Contents::Remote {
                    source,
                    hash: hash.clone(),
                },
                secret,
            )
        }
        RawBody::Data(d) => match std::str::from_utf8(d) {
            Ok(text) => {
                let (masked, secret) = mask_text(text, needles);
                if secret.is_some() && masked.trim_end() == SENSITIVE {
                    (Contents::Sensitive, secret)
                } else {
                    (Contents::Text(masked), secret)
                }
            }
            Err(_) => {
                let found = needles.iter().any(|n| contains_bytes(d, n.as_bytes()));
                if found {
                    (Contents::Sensitive, Some(Sha256::digest(&d[..]).into()))
                } else {
                    (
                        Contents::Binary {
                            len: d.len(),
                            sha256: hex::encode(Sha256::digest(&d[..])),
                        },
                        None,
                    )
                }
            }
        },
    };
    FileEntry {
        mode: meta.mode,
        owner: meta.owner,
        enabled: meta.enabled,
        masked: meta.masked,
        contents,
        secret,
    }
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Mask every needle in `text`; the fingerprint covers the masked values in text order.
fn mask_text(text: &str, needles: &[Zeroizing<String>]) -> (String, Option<[u8; 32]>) {
    let mut hits: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, needle)
    for (i, n) in needles.iter().enumerate() {
        for (start, _) in text.match_indices(n.as_str()) {
            let end = start + n.len();
            // Needles are longest first: keep a hit only if it overlaps no longer one.
            if !hits.iter().any(|&(s, e, _)| start < e && s < end) {
                hits.push((start, end, i));
            }
        }
    }
    if hits.is_empty() {
        return (text.to_string(), None);
    }
    hits.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut hasher = Sha256::new();
    let mut at = 0;
    for (start, end, i) in hits {
        out.push_str(&text[at..start]);
        out.push_str(SENSITIVE);
        hasher.update(needles[i].as_bytes());
        hasher.update([0]);
        at = end;
    }
    out.push_str(&text[at..]);
    (out, Some(hasher.finalize().into()))
}

/// One file or pseudo-file after redaction.
#[derive(Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Permission bits (`0o644`), when the config sets them.
    pub mode: Option<u32>,
    /// `user:group`, when the config sets either.
    pub owner: Option<String>,
    /// Units: whether the config enables (`true`) or disables (`false`) it.
    pub enabled: Option<bool>,
    /// Units: whether the config masks it.
    pub masked: bool,
    /// The contents, secrets masked.
    pub contents: Contents,
    /// Fingerprint of the secret values masked in this entry; never printed or serialized.
    secret: Option<[u8; 32]>,
}

impl fmt::Debug for FileEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileEntry")
            .field("mode", &self.mode.map(|m| format!("{m:04o}")))
            .field("owner", &self.owner)
            .field("enabled", &self.enabled)
            .field("masked", &self.masked)
            .field("contents", &self.contents)
            .field("holds_secret", &self.secret.is_some())
            .finish()
    }
}

impl FileEntry {
    /// Whether a secret value was masked in this entry.
    pub fn holds_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// Whether the masked secret values differ between two versions of the entry (also true
    /// when only one of them holds a secret).
    pub fn secret_differs(&self, other: &FileEntry) -> bool {
        self.secret != other.secret
    }
}

/// The contents of a redacted entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Contents {
    /// UTF-8 text, every secret value replaced by `(sensitive)`.
    Text(String),
    /// Non-UTF-8 bytes holding no secret, summarised.
    Binary {
        /// Size in bytes.
        len: usize,
        /// Lowercase hex sha256.
        sha256: String,
    },
    /// The whole contents are secret (a private key, or bytes holding a secret value).
    Sensitive,
    /// Fetched by Ignition from a URL.
    Remote {
        /// The URL (secret values in it masked).
        source: String,
        /// Ignition's verification hash, e.g. `sha256-<hex>`.
        hash: Option<String>,
    },
    /// A link (`link:<path>` entries).
    Link {
        /// What it points to.
        target: String,
        /// A hard link.
        hard: bool,
    },
    /// A directory (`directory:<path>` entries).
    Directory,
}

/// A node's files and pseudo-files, secrets masked: the only file contents the plan sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFiles {
    entries: BTreeMap<String, FileEntry>,
}

impl NodeFiles {
    /// One entry by path (`/etc/hostname`, `systemd:k3s.service`, ...).
    pub fn get(&self, path: &str) -> Option<&FileEntry> {
        self.entries.get(path)
    }

    /// Every entry, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the K3s configuration (`config.yaml` or a file in `config.yaml.d/`) sets
    /// `cluster-init: true`, i.e. this config would initialise a new cluster.
    pub fn cluster_init(&self) -> bool {
        self.entries.iter().any(|(path, e)| {
            let is_config = path == K3S_CONFIG
                || (path.starts_with(K3S_CONFIG_D)
                    && (path.ends_with(".yaml") || path.ends_with(".yml")));
            match (&e.contents, is_config) {
                (Contents::Text(t), true) => yaml_sets_cluster_init(t),
                _ => false,
            }
        })
    }
}

fn yaml_sets_cluster_init(text: &str) -> bool {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(v) => v
            .get("cluster-init")
            .is_some_and(|c| c.as_bool() == Some(true) || c.as_str() == Some("true")),
        // Not YAML K3s can read either; look at the lines so a typo elsewhere hides nothing.
        Err(_) => text.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim() == "cluster-init" && v.trim().trim_matches('"') == "true"
            })
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn text<'a>(files: &'a NodeFiles, path: &str) -> &'a str {
        match &files.get(path).unwrap().contents {
            Contents::Text(t) => t,
            other => panic!("{path}: not text: {other:?}"),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn ignition(files: Value, units: Value) -> String {
        serde_json::json!({
            "ignition": {"version": "3.4.0"},
            "storage": {"files": files},
            "systemd": {"units": units}
        })
        .to_string()
    }

    #[test]
    fn percent_encoded_data_url_is_decoded_with_mode_and_owner() {
        let json = ignition(
            serde_json::json!([{
                "path": "/etc/hostname",
                "mode": 420,
                "user": {"name": "core"},
                "contents": {"source": "data:,server1.lab%0A%25x%20y"}
            }]),
            serde_json::json!([]),
        );
        let files = RawFiles::from_ignition(&json).unwrap().redact(&[]);
        assert_eq!(text(&files, "/etc/hostname"), "server1.lab\n%x y");
        let e = files.get("/etc/hostname").unwrap();
        assert_eq!(e.mode, Some(0o644));
        assert_eq!(e.owner.as_deref(), Some("core:root"));
        assert!(!e.holds_secret());
    }

    #[test]
    fn base64_and_gzip_data_urls_are_decoded() {
        let body = "line one\nline two\n".repeat(20);
        let json = ignition(
            serde_json::json!([
                {"path": "/a", "contents": {"source": format!("data:text/plain;charset=utf-8;base64,{}", b64(body.as_bytes()))}},
                {"path": "/b", "contents": {"compression": "gzip", "source": format!("data:;base64,{}", b64(&gzip(body.as_bytes())))}},
                {"path": "/c", "contents": {"compression": "", "source": "data:;base64,//79"}},
                {"path": "/d"}
            ]),
            serde_json::json!([]),
        );
        let files = RawFiles::from_ignition(&json).unwrap().redact(&[]);
        assert_eq!(text(&files, "/a"), body);
        assert_eq!(text(&files, "/b"), body);
        match &files.get("/c").unwrap().contents {
            Contents::Binary { len, sha256 } => {
                assert_eq!(*len, 3);
                assert_eq!(sha256, &hex::encode(Sha256::digest([0xff, 0xfe, 0xfd])));
            }
            other => panic!("not binary: {other:?}"),
        }
        assert_eq!(text(&files, "/d"), "");
    }

    #[test]
    fn remote_sources_keep_url_and_hash() {
        let json = ignition(
            serde_json::json!([{
                "path": "/usr/local/bin/k3s", "mode": 493,
                "contents": {"source": "http://10.0.0.2:8080/artifacts/ab/k3s", "verification": {"hash": "sha256-ab"}}
            }]),
            serde_json::json!([]),
        );
        let files = RawFiles::from_ignition(&json).unwrap().redact(&[]);
        assert_eq!(
            files.get("/usr/local/bin/k3s").unwrap().contents,
            Contents::Remote {
                source: "http://10.0.0.2:8080/artifacts/ab/k3s".into(),
                hash: Some("sha256-ab".into())
            }
        );
    }

    #[test]
    fn units_and_dropins_become_pseudo_files() {
        let json = ignition(
            serde_json::json!([]),
            serde_json::json!([
                {"name": "k3s-install.service", "enabled": true, "contents": "[Unit]\nDescription=x\n",
                 "dropins": [{"name": "10-env.conf", "contents": "[Service]\nEnvironment=A=1\n"}]},
                {"name": "zincati.service", "mask": true},
                {"name": "docker.service", "enabled": false}
            ]),
        );
        let files = RawFiles::from_ignition(&json).unwrap().redact(&[]);
        assert_eq!(
            text(&files, "systemd:k3s-install.service"),
            "[Unit]\nDescription=x\n"
        );
        assert_eq!(
            files.get("systemd:k3s-install.service").unwrap().enabled,
            Some(true)
        );
        assert_eq!(
            text(&files, "systemd:k3s-install.service.d/10-env.conf"),
            "[Service]\nEnvironment=A=1\n"
        );
        assert!(files.get("systemd:zincati.service").unwrap().masked);
        assert_eq!(
            files.get("systemd:docker.service").unwrap().enabled,
            Some(false)
        );
        assert_eq!(files.len(), 4);
    }

    #[test]
    fn users_kernel_arguments_links_and_layout_are_pseudo_files() {
        let json = serde_json::json!({
            "ignition": {"version": "3.4.0"},
            "passwd": {"users": [{"name": "core", "passwordHash": "$y$j9T$secrethash", "sshAuthorizedKeys": ["ssh-ed25519 AAAA a@b"]}]},
            "kernelArguments": {"shouldExist": ["console=ttyS0"], "shouldNotExist": ["quiet"]},
            "storage": {
                "links": [{"path": "/etc/localtime", "target": "../usr/share/zoneinfo/UTC"}],
                "directories": [{"path": "/var/lib/slipway", "mode": 448}],
                "filesystems": [{"path": "/var", "device": "/dev/disk/by-partlabel/var", "format": "xfs"}]
            }
        })
        .to_string();
        let files = RawFiles::from_ignition(&json).unwrap().redact(&[]);
        let user = text(&files, "passwd:user/core");
        assert!(user.contains("ssh-ed25519 AAAA a@b"));
        // The password hash is secret by its place, without the caller naming it.
        assert!(!user.contains("secrethash"), "{user}");
        assert!(user.contains(SENSITIVE));
        assert_eq!(
            text(&files, "kernel_arguments"),
            "+ console=ttyS0\n- quiet\n"
        );
        assert_eq!(
            files.get("link:/etc/localtime").unwrap().contents,
            Contents::Link {
                target: "../usr/share/zoneinfo/UTC".into(),
                hard: false
            }
        );
        assert_eq!(
            files.get("directory:/var/lib/slipway").unwrap().mode,
            Some(0o700)
        );
        assert!(text(&files, "storage:filesystems").contains("partlabel/var"));
    }

    #[test]
    fn malformed_configs_are_errors_that_quote_no_contents() {
        let err = RawFiles::from_ignition("{\"storage\": ").unwrap_err();
        assert!(matches!(err, PlanError::IgnitionSyntax { .. }));
        let json = ignition(
            serde_json::json!([{"path": "/x", "contents": {"source": "data:;base64,%%%SECRETVALUE"}}]),
            serde_json::json!([]),
        );
        let err = RawFiles::from_ignition(&json).unwrap_err();
        assert!(matches!(err, PlanError::BadDataUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("SECRETVALUE"));
        let json = ignition(
            serde_json::json!([{"path": "/x", "contents": {"compression": "gzip", "source": "data:,notgzip"}}]),
            serde_json::json!([]),
        );
        assert!(matches!(
            RawFiles::from_ignition(&json).unwrap_err(),
            PlanError::BadGzip { .. }
        ));
        let json = ignition(
            serde_json::json!([{"path": "/x", "contents": {"compression": "xz", "source": "data:,x"}}]),
            serde_json::json!([]),
        );
        assert!(matches!(
            RawFiles::from_ignition(&json).unwrap_err(),
            PlanError::UnsupportedCompression { .. }
        ));
        let json = serde_json::json!({"storage": {"files": {"path": "/x"}}}).to_string();
        assert!(matches!(
            RawFiles::from_ignition(&json).unwrap_err(),
            PlanError::IgnitionShape { .. }
        ));
    }

    #[test]
    fn redaction_masks_values_and_fingerprints_them() {
        let mut raw = RawFiles::new();
        raw.file(
            K3S_CONFIG,
            Some(0o600),
            None,
            "token: K10old::server:abc\nnode-name: s1\n",
        );
        raw.file(
            "/etc/ssh/ssh_host_ed25519_key",
            Some(0o600),
            None,
            "-----BEGIN KEY-----\nAAAA\n-----END KEY-----\n",
        );
        raw.file(
            "/bin/blob",
            None,
            None,
            vec![0xff, b'K', b'1', b'0', b'o', b'l', b'd'],
        );
        let old = raw.redact(&[
            "K10old::server:abc",
            "-----BEGIN KEY-----\nAAAA\n-----END KEY-----\n",
            "K10old",
        ]);
        assert_eq!(
            text(&old, K3S_CONFIG),
            "token: (sensitive)\nnode-name: s1\n"
        );
        assert_eq!(
            old.get("/etc/ssh/ssh_host_ed25519_key").unwrap().contents,
            Contents::Sensitive
        );
        assert_eq!(old.get("/bin/blob").unwrap().contents, Contents::Sensitive);
        assert!(!format!("{old:?}").contains("K10old"));
        assert!(!format!("{raw:?}").contains("K10old"));

        let mut raw2 = RawFiles::new();
        raw2.file(
            K3S_CONFIG,
            Some(0o600),
            None,
            "token: K10new::server:xyz\nnode-name: s1\n",
        );
        let new = raw2.redact(&["K10new::server:xyz"]);
        let (a, b) = (old.get(K3S_CONFIG).unwrap(), new.get(K3S_CONFIG).unwrap());
        assert_eq!(a.contents, b.contents, "masked texts are equal");
        assert!(a.secret_differs(b), "but the fingerprints tell the change");
        let same = raw.redact(&["K10old::server:abc"]);
        assert!(!same.get(K3S_CONFIG).unwrap().secret_differs(a));
    }

    #[test]
    fn redaction_matches_trimmed_and_json_escaped_forms() {
        let mut raw = RawFiles::new();
        raw.file("/a", None, None, "key: \"line1\\nline2\"\n");
        raw.file("/b", None, None, "value=abc\n");
        let files = raw.redact(&["line1\nline2", "abc\n", ""]);
        assert_eq!(text(&files, "/a"), "key: \"(sensitive)\"\n");
        assert_eq!(text(&files, "/b"), "value=(sensitive)\n");
    }

    #[test]
    fn cluster_init_is_read_from_the_k3s_config() {
        let mut raw = RawFiles::new();
        raw.file(
            K3S_CONFIG,
            None,
            None,
            "token: K10tok\ncluster-init: true\n",
        );
        assert!(raw.redact(&["K10tok"]).cluster_init());
        let mut raw = RawFiles::new();
        raw.file(K3S_CONFIG, None, None, "token: t\nnode-name: s1\n");
        raw.file(
            "/etc/rancher/k3s/config.yaml.d/10-x.yaml",
            None,
            None,
            "cluster-init: false\n",
        );
        assert!(!raw.redact(&[]).cluster_init());
        let mut raw = RawFiles::new();
        raw.file(
            "/etc/rancher/k3s/config.yaml.d/10-x.yaml",
            None,
            None,
            "cluster-init: true\n: [bad\n",
        );
        assert!(raw.redact(&[]).cluster_init());
    }
}
