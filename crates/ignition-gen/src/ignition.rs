//! Ignition config types (spec 3.0.0 to 3.5.0) that serialize to the same JSON bytes as
//! Ignition's Go `types` package marshalled the way Butane does it.
//!
//! One set of structs covers every spec version: each later spec only added fields, and
//! Ignition's generated Go structs list fields alphabetically by Go name, so the field order
//! below is the declaration order of every version. Fields a version lacks simply stay empty.
//! Butane marshals with a JSON encoder whose `omitempty` also drops empty structs, so every
//! optional field here is skipped when `None`, empty, or all-default. Fields that are plain
//! (non-pointer, non-`omitempty`) Go fields are always written.

use serde::{Deserialize, Serialize};

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An Ignition spec version this crate can emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    /// Ignition 3.0.0.
    V3_0,
    /// Ignition 3.1.0.
    V3_1,
    /// Ignition 3.2.0.
    V3_2,
    /// Ignition 3.3.0.
    V3_3,
    /// Ignition 3.4.0.
    V3_4,
    /// Ignition 3.5.0.
    V3_5,
}

impl SpecVersion {
    /// Every supported version, oldest first.
    pub const ALL: [SpecVersion; 6] = [
        SpecVersion::V3_0,
        SpecVersion::V3_1,
        SpecVersion::V3_2,
        SpecVersion::V3_3,
        SpecVersion::V3_4,
        SpecVersion::V3_5,
    ];

    /// The version string as written in `ignition.version`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V3_0 => "3.0.0",
            SpecVersion::V3_1 => "3.1.0",
            SpecVersion::V3_2 => "3.2.0",
            SpecVersion::V3_3 => "3.3.0",
            SpecVersion::V3_4 => "3.4.0",
            SpecVersion::V3_5 => "3.5.0",
        }
    }

    /// Parse an `ignition.version` string.
    pub fn parse(s: &str) -> Option<SpecVersion> {
        SpecVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole Ignition config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Config {
    /// Metadata about the config itself.
    pub ignition: Ignition,
    /// Kernel arguments to ensure present or absent (3.3.0+).
    #[serde(skip_serializing_if = "is_default")]
    pub kernel_arguments: KernelArguments,
    /// Users and groups.
    #[serde(skip_serializing_if = "is_default")]
    pub passwd: Passwd,
    /// Disks, filesystems, files.
    #[serde(skip_serializing_if = "is_default")]
    pub storage: Storage,
    /// systemd units.
    #[serde(skip_serializing_if = "is_default")]
    pub systemd: Systemd,
}

/// The `ignition` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Ignition {
    /// Configs to merge or replace this one with.
    #[serde(skip_serializing_if = "is_default")]
    pub config: IgnitionConfig,
    /// HTTP proxies (3.1.0+).
    #[serde(skip_serializing_if = "is_default")]
    pub proxy: Proxy,
    /// TLS settings.
    #[serde(skip_serializing_if = "is_default")]
    pub security: Security,
    /// Fetch timeouts.
    #[serde(skip_serializing_if = "is_default")]
    pub timeouts: Timeouts,
    /// The spec version, e.g. `3.3.0`.
    pub version: String,
}

/// `ignition.config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IgnitionConfig {
    /// Configs merged into this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merge: Vec<Resource>,
    /// A config that replaces this one.
    #[serde(skip_serializing_if = "is_default")]
    pub replace: Resource,
}

/// A remote or inline piece of content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource {
    /// `gzip` or empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Extra HTTP headers (3.1.0+).
    #[serde(rename = "httpHeaders", skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
    /// The URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Expected hash.
    #[serde(skip_serializing_if = "is_default")]
    pub verification: Verification,
}

/// One HTTP header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value; absent removes an inherited header when merging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Hash verification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verification {
    /// `sha512-<hex>` or `sha256-<hex>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// `ignition.proxy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Proxy {
    /// Proxy for HTTP.
    #[serde(rename = "httpProxy", skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    /// Proxy for HTTPS.
    #[serde(rename = "httpsProxy", skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    /// Hosts not proxied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
}

/// `ignition.security`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Security {
    /// TLS settings.
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Tls,
}

/// `ignition.security.tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Tls {
    /// Extra CAs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificate_authorities: Vec<Resource>,
}

/// `ignition.timeouts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Timeouts {
    /// Seconds to wait for response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_response_headers: Option<i64>,
    /// Seconds for a whole fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_total: Option<i64>,
}

/// `kernelArguments`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KernelArguments {
    /// Arguments to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub should_exist: Vec<String>,
    /// Arguments to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub should_not_exist: Vec<String>,
}

/// `passwd`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Passwd {
    /// Groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<PasswdGroup>,
    /// Users.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<PasswdUser>,
}

/// A group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PasswdGroup {
    /// GID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<i64>,
    /// Name.
    pub name: String,
    /// Password hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// False deletes the group (3.2.0+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub should_exist: Option<bool>,
    /// System group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<bool>,
}

/// A user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PasswdUser {
    /// GECOS field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gecos: Option<String>,
    /// Supplementary groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Home directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_dir: Option<String>,
    /// Name.
    pub name: String,
    /// Don't create the home directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_create_home: Option<bool>,
    /// Don't add to lastlog/faillog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_log_init: Option<bool>,
    /// Don't create a group of the same name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_user_group: Option<bool>,
    /// Password hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Primary group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_group: Option<String>,
    /// SSH keys.
    #[serde(rename = "sshAuthorizedKeys", skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
    /// Login shell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// False deletes the user (3.2.0+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub should_exist: Option<bool>,
    /// System user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<bool>,
    /// UID.
    #[serde(rename = "uid", skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
}

/// `storage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Storage {
    /// Directories.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<Directory>,
    /// Disks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    /// Files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Filesystems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<Filesystem>,
    /// Links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// LUKS volumes (3.2.0+).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub luks: Vec<Luks>,
    /// RAID arrays.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raid: Vec<Raid>,
}

/// Owner of a filesystem node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeOwner {
    /// Numeric id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct File {
    /// Group owner.
    #[serde(skip_serializing_if = "is_default")]
    pub group: NodeOwner,
    /// Replace an existing node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<bool>,
    /// Absolute path.
    pub path: String,
    /// User owner.
    #[serde(skip_serializing_if = "is_default")]
    pub user: NodeOwner,
    /// Content appended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub append: Vec<Resource>,
    /// Content.
    #[serde(skip_serializing_if = "is_default")]
    pub contents: Resource,
    /// Permission bits, as a decimal number in JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
}

/// A directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Directory {
    /// Group owner.
    #[serde(skip_serializing_if = "is_default")]
    pub group: NodeOwner,
    /// Replace an existing node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<bool>,
    /// Absolute path.
    pub path: String,
    /// User owner.
    #[serde(skip_serializing_if = "is_default")]
    pub user: NodeOwner,
    /// Permission bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
}

/// A symbolic or hard link.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Link {
    /// Group owner.
    #[serde(skip_serializing_if = "is_default")]
    pub group: NodeOwner,
    /// Replace an existing node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<bool>,
    /// Absolute path.
    pub path: String,
    /// User owner.
    #[serde(skip_serializing_if = "is_default")]
    pub user: NodeOwner,
    /// Hard link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard: Option<bool>,
    /// Link target. Specs up to 3.2.0 always write it (a plain Go string there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Disk {
    /// Device path.
    pub device: String,
    /// Partitions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
    /// Wipe the partition table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wipe_table: Option<bool>,
}

/// A GPT partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Partition {
    /// Partition GUID.
    #[serde(rename = "guid", skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// Partition label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Partition number; 0 means "next free".
    #[serde(skip_serializing_if = "is_zero")]
    pub number: i64,
    /// Grow an existing partition (3.2.0+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<bool>,
    /// False deletes the partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub should_exist: Option<bool>,
    /// Size in MiB; 0 means "as large as possible".
    #[serde(rename = "sizeMiB", skip_serializing_if = "Option::is_none")]
    pub size_mib: Option<i64>,
    /// Start in MiB.
    #[serde(rename = "startMiB", skip_serializing_if = "Option::is_none")]
    pub start_mib: Option<i64>,
    /// Partition type GUID.
    #[serde(rename = "typeGuid", skip_serializing_if = "Option::is_none")]
    pub type_guid: Option<String>,
    /// Wipe a mismatching entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wipe_partition_entry: Option<bool>,
}

/// A filesystem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Filesystem {
    /// Block device.
    pub device: String,
    /// `ext4`, `xfs`, `swap`, `vfat`, `btrfs`, `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Filesystem label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Options for `mount -o` (3.1.0+).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// Options for mkfs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Where Ignition mounts it while provisioning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Filesystem UUID.
    #[serde(rename = "uuid", skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Wipe before creating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wipe_filesystem: Option<bool>,
}

/// A software RAID array.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Raid {
    /// Member devices.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// `raid1` etc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Array name.
    pub name: String,
    /// mdadm options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Spare count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spares: Option<i64>,
}

/// IBM CEX settings (3.5.0+).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cex {
    /// Use a CEX card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Clevis settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Clevis {
    /// A custom pin.
    #[serde(skip_serializing_if = "is_default")]
    pub custom: ClevisCustom,
    /// Tang servers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tang: Vec<Tang>,
    /// How many pins must succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
    /// Use the TPM2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm2: Option<bool>,
}

/// A custom Clevis pin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClevisCustom {
    /// Pin config JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Needs the network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_network: Option<bool>,
    /// Pin name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// A Tang server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tang {
    /// Offline advertisement (3.4.0+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertisement: Option<String>,
    /// Key thumbprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// Server URL.
    #[serde(rename = "url")]
    pub url: String,
}

/// A LUKS volume (3.2.0+).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Luks {
    /// CEX (3.5.0+).
    #[serde(skip_serializing_if = "is_default")]
    pub cex: Cex,
    /// Clevis binding.
    #[serde(skip_serializing_if = "is_default")]
    pub clevis: Clevis,
    /// Backing device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Allow discards (3.4.0+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard: Option<bool>,
    /// Key file.
    #[serde(skip_serializing_if = "is_default")]
    pub key_file: Resource,
    /// LUKS label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Mapper name.
    pub name: String,
    /// Options for `cryptsetup luksOpen` (3.4.0+).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open_options: Vec<String>,
    /// Options for `cryptsetup luksFormat`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// LUKS UUID.
    #[serde(rename = "uuid", skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Wipe before creating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wipe_volume: Option<bool>,
}

/// `systemd`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Systemd {
    /// Units.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
}

/// A systemd unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Unit {
    /// Unit file text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// Drop-ins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropins: Vec<Dropin>,
    /// Enable or disable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<bool>,
    /// Unit name.
    pub name: String,
}

/// A unit drop-in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropin {
    /// Drop-in text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// File name, ending in `.conf`.
    pub name: String,
}

impl Config {
    /// An empty config of the given version.
    pub fn new(version: SpecVersion) -> Self {
        Config {
            ignition: Ignition {
                version: version.as_str().to_string(),
                ..Ignition::default()
            },
            ..Config::default()
        }
    }

    /// The config's spec version, if it is one this crate knows.
    pub fn spec_version(&self) -> Option<SpecVersion> {
        SpecVersion::parse(&self.ignition.version)
    }

    /// Serialize like Butane: compact (`json.Marshal`) or indented by two spaces
    /// (`json.MarshalIndent(v, "", "  ")`). No trailing newline.
    pub fn to_json(&self, pretty: bool) -> String {
        crate::json::to_go_json(&self.to_value(), pretty)
    }

    /// The config as a JSON value, with version-specific quirks applied (links in specs up
    /// to 3.2.0 always carry `target`, a plain string there).
    pub fn to_value(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let old_links = matches!(
            self.spec_version(),
            Some(SpecVersion::V3_0 | SpecVersion::V3_1 | SpecVersion::V3_2)
        );
        if old_links {
            if let Some(links) = value
                .get_mut("storage")
                .and_then(|s| s.get_mut("links"))
                .and_then(|l| l.as_array_mut())
            {
                for link in links {
                    if let Some(obj) = link.as_object_mut() {
                        if !obj.contains_key("target") {
                            obj.insert("target".into(), serde_json::Value::String(String::new()));
                        }
                    }
                }
            }
        }
        value
    }

    /// Parse Ignition JSON. Unknown fields are ignored, as Ignition's own parser does for
    /// fields of later versions; the version must be one this crate knows.
    pub fn from_json(text: &str) -> Result<Config, crate::Error> {
        let config: Config = serde_json::from_str(text)
            .map_err(|e| crate::Error::InvalidIgnitionJson(e.to_string()))?;
        if config.spec_version().is_none() {
            return Err(crate::Error::UnsupportedIgnitionVersion(
                config.ignition.version.clone(),
            ));
        }
        Ok(config)
    }
}
