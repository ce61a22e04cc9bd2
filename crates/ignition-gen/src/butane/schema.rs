//! The Butane `fcos` schema, 1.0.0 to 1.6.0, as one superset read with unknown keys denied.
//! Which keys a given version allows is checked afterwards (see `gate`), so a key from a
//! later version gets a message naming the version that introduced it.

#![allow(missing_docs)]

use marked_yaml::Spanned;
use serde::Deserialize;

pub use super::scalars::{GoBool, GoInt};

pub type S<T> = Spanned<T>;
pub type OStr = Option<Spanned<String>>;
pub type OInt = Option<Spanned<GoInt>>;
pub type OBool = Option<Spanned<GoBool>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: OStr,
    pub variant: OStr,
    pub ignition: Option<S<Ignition>>,
    pub kernel_arguments: Option<S<KernelArguments>>,
    pub passwd: Option<S<Passwd>>,
    pub storage: Option<S<Storage>>,
    pub systemd: Option<S<Systemd>>,
    pub boot_device: Option<S<BootDevice>>,
    pub grub: Option<S<Grub>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignition {
    pub config: Option<S<IgnitionConfig>>,
    pub proxy: Option<S<Proxy>>,
    pub security: Option<S<Security>>,
    pub timeouts: Option<S<Timeouts>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnitionConfig {
    #[serde(default)]
    pub merge: Vec<S<Resource>>,
    pub replace: Option<S<Resource>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    pub http_proxy: OStr,
    pub https_proxy: OStr,
    #[serde(default)]
    pub no_proxy: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    pub tls: Option<S<Tls>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub certificate_authorities: Vec<S<Resource>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub http_response_headers: OInt,
    pub http_total: OInt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub compression: OStr,
    pub http_headers: Option<S<Vec<S<HttpHeader>>>>,
    pub source: OStr,
    pub inline: OStr,
    pub local: OStr,
    pub verification: Option<S<Verification>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHeader {
    pub name: S<String>,
    pub value: OStr,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    pub hash: OStr,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelArguments {
    #[serde(default)]
    pub should_exist: Vec<S<String>>,
    #[serde(default)]
    pub should_not_exist: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passwd {
    #[serde(default)]
    pub groups: Vec<S<PasswdGroup>>,
    #[serde(default)]
    pub users: Vec<S<PasswdUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswdGroup {
    pub gid: OInt,
    pub name: S<String>,
    pub password_hash: OStr,
    pub should_exist: OBool,
    pub system: OBool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswdUser {
    pub gecos: OStr,
    #[serde(default)]
    pub groups: Vec<S<String>>,
    pub home_dir: OStr,
    pub name: S<String>,
    pub no_create_home: OBool,
    pub no_log_init: OBool,
    pub no_user_group: OBool,
    pub password_hash: OStr,
    pub primary_group: OStr,
    pub should_exist: OBool,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<S<String>>,
    pub ssh_authorized_keys_local: Option<S<Vec<S<String>>>>,
    pub shell: OStr,
    pub system: OBool,
    pub uid: OInt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(default)]
    pub directories: Vec<S<Directory>>,
    #[serde(default)]
    pub disks: Vec<S<Disk>>,
    #[serde(default)]
    pub files: Vec<S<File>>,
    #[serde(default)]
    pub filesystems: Vec<S<Filesystem>>,
    #[serde(default)]
    pub links: Vec<S<Link>>,
    pub luks: Option<S<Vec<S<Luks>>>>,
    #[serde(default)]
    pub raid: Vec<S<Raid>>,
    pub trees: Option<S<Vec<S<Tree>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeOwner {
    pub id: OInt,
    pub name: OStr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub group: Option<S<NodeOwner>>,
    pub overwrite: OBool,
    pub path: S<String>,
    pub user: Option<S<NodeOwner>>,
    #[serde(default)]
    pub append: Vec<S<Resource>>,
    pub contents: Option<S<Resource>>,
    pub mode: OInt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub group: Option<S<NodeOwner>>,
    pub overwrite: OBool,
    pub path: S<String>,
    pub user: Option<S<NodeOwner>>,
    pub mode: OInt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub group: Option<S<NodeOwner>>,
    pub overwrite: OBool,
    pub path: S<String>,
    pub user: Option<S<NodeOwner>>,
    pub hard: OBool,
    pub target: OStr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub local: OStr,
    pub path: OStr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub device: S<String>,
    #[serde(default)]
    pub partitions: Vec<S<Partition>>,
    pub wipe_table: OBool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub guid: OStr,
    pub label: OStr,
    pub number: OInt,
    pub resize: OBool,
    pub should_exist: OBool,
    pub size_mib: OInt,
    pub start_mib: OInt,
    pub type_guid: OStr,
    pub wipe_partition_entry: OBool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub device: S<String>,
    pub format: OStr,
    pub label: OStr,
    pub mount_options: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub options: Vec<S<String>>,
    pub path: OStr,
    pub uuid: OStr,
    pub wipe_filesystem: OBool,
    pub with_mount_unit: OBool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raid {
    #[serde(default)]
    pub devices: Vec<S<String>>,
    pub level: OStr,
    pub name: S<String>,
    #[serde(default)]
    pub options: Vec<S<String>>,
    pub spares: OInt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Luks {
    pub cex: Option<S<Cex>>,
    pub clevis: Option<S<Clevis>>,
    pub device: OStr,
    pub discard: OBool,
    pub key_file: Option<S<Resource>>,
    pub label: OStr,
    pub name: S<String>,
    pub open_options: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub options: Vec<S<String>>,
    pub uuid: OStr,
    pub wipe_volume: OBool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cex {
    pub enabled: OBool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clevis {
    pub custom: Option<S<ClevisCustom>>,
    #[serde(default)]
    pub tang: Vec<S<Tang>>,
    pub threshold: OInt,
    pub tpm2: OBool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClevisCustom {
    pub config: OStr,
    pub needs_network: OBool,
    pub pin: OStr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tang {
    pub thumbprint: OStr,
    pub url: S<String>,
    pub advertisement: OStr,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Systemd {
    #[serde(default)]
    pub units: Vec<S<Unit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub contents: OStr,
    pub contents_local: OStr,
    #[serde(default)]
    pub dropins: Vec<S<Dropin>>,
    pub enabled: OBool,
    pub mask: OBool,
    pub name: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropin {
    pub contents: OStr,
    pub contents_local: OStr,
    pub name: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootDevice {
    pub layout: OStr,
    pub luks: Option<S<BootDeviceLuks>>,
    pub mirror: Option<S<BootDeviceMirror>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootDeviceLuks {
    pub cex: Option<S<Cex>>,
    pub device: OStr,
    pub discard: OBool,
    #[serde(default)]
    pub tang: Vec<S<Tang>>,
    pub threshold: OInt,
    pub tpm2: OBool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootDeviceMirror {
    #[serde(default)]
    pub devices: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grub {
    #[serde(default)]
    pub users: Vec<S<GrubUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrubUser {
    pub name: OStr,
    pub password_hash: OStr,
}
