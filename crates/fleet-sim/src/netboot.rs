//! The network install: what a simulated node's firmware, its live environment and
//! `coreos-installer` do when the node boots a network entry, against Slipway's real boot
//! server on 127.0.0.1.
//!
//! The firmware walk (driven by the supervisor, see [`crate::Fleet`]): the entry the firmware
//! picked (`BootNext` if honoured, else the head of `BootOrder`) comes first, then
//! `BootOrder`. A disk entry boots what is installed. A network entry asks the node's boot
//! server for `/boot.ipxe` and follows its `chain` to `/ipxe?mac=<aa-bb-..>` with the node's
//! first MAC (iPXE's `net0`); then:
//!
//! * a script that `exit`s (localboot) hands back to the firmware, which tries the next entry;
//! * a server that cannot be reached, answers an error or serves a script the simulator does
//!   not run also makes the firmware move on (as a PXE timeout would);
//! * an install script (`kernel` + `initrd` + `boot`) boots the FCOS live environment: the
//!   kernel, initramfs and `coreos.live.rootfs_url` must exist (HEAD), the Ignition config is
//!   fetched from `coreos.inst.ignition_url` (a one-shot URL: any refusal fails the install),
//!   the metal image from `coreos.inst.image_url` is checked against the sha256 its
//!   content-addressed URL (`/artifacts/<sha256>/<name>`) names, and its detached signature
//!   `<image>.sig` must exist unless `coreos.inst.insecure` (the simulator checks presence,
//!   not cryptography). Any failure leaves the node in the live environment: **down**, with
//!   the reason recorded. Otherwise the image is laid down (a fresh root, the OS version read
//!   from the image, see [`sim_metal_image`]), `/var` is kept or wiped (below), the real
//!   Ignition runs its files stage into the new root, and the installer reboots: `BootNext`
//!   is spent, so the firmware starts over at the head of `BootOrder`. A network entry there
//!   gets localboot (the token is spent); an install script served again right after an
//!   install is a reinstall loop, and the node stays down rather than loop.
//!
//! ## Keeping `/var`, exactly as on metal
//!
//! `/var` survives a network install only if **all** of these hold, otherwise it is wiped:
//!
//! 1. the installer was told to keep the partition: `coreos.inst.save_partlabel` lists `var`
//!    (a comma-separated list; `*` globs as coreos-installer's do) — without it
//!    coreos-installer writes a fresh partition table over the whole disk;
//! 2. the Ignition config declares a partition labelled `var` on one of its
//!    `storage.disks` — without it the saved partition is left unused;
//! 3. the config declares a filesystem with `path: /var` on `/dev/disk/by-partlabel/var`
//!    with `wipeFilesystem` false (or absent) — with `wipeFilesystem: true` Ignition
//!    formats it, and without the filesystem `/var` lives on the fresh root.
//!
//! The decision reads the config as served; remote `merge`/`replace` fragments are not
//! followed (Slipway renders one self-contained config). Each decision is written to the
//! node's netboot log with its reason ([`NetbootRecord`]).
//!
//! Never dialled: anything but loopback. Every URL (the boot server, and every URL a script
//! or a kernel argument names) must be `http://` to a 127.0.0.0/8 or `::1` literal (or
//! `localhost`, dialled as 127.0.0.1); anything else fails the step with an error.
//! Ignition tokens never reach the log: URLs are recorded with `token=(redacted)`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest;
use slipway_model::inventory::ReinstallMethod;
use slipway_model::net::MacAddr;
use zeroize::Zeroizing;

use crate::fleet::VarPolicy;
use crate::SimError;

/// The `format` field of a simulated metal image.
pub const SIM_METAL_IMAGE_FORMAT: &str = "slipway-fleet-sim/metal-image/1";

/// The device path Slipway's profile puts `/var` on.
pub const VAR_DEVICE: &str = "/dev/disk/by-partlabel/var";

/// How long a connection to the boot server may take to open (a guard, not a timing check).
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// How long one read or write on it may stall.
const IO_LIMIT: Duration = Duration::from_secs(60);
/// The largest response the simulated firmware reads.
const MAX_BODY: u64 = 512 * 1024 * 1024;
/// How many `chain`s the simulated iPXE follows.
const MAX_CHAIN: usize = 4;

#[derive(Serialize, Deserialize)]
struct SimMetalImage {
    format: String,
    fcos_version: String,
}

/// The simulator's stand-in for an FCOS metal image (`*.raw.xz`): a small JSON document
/// naming the OS version an install lays down,
/// `{"format": "slipway-fleet-sim/metal-image/1", "fcos_version": "<version>"}`.
/// Put it in the boot server's artifact store as the metal image.
pub fn sim_metal_image(version: &str) -> Vec<u8> {
    let image = SimMetalImage {
        format: SIM_METAL_IMAGE_FORMAT.into(),
        fcos_version: version.into(),
    };
    let mut bytes = serde_json::to_vec_pretty(&image).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The OS version a [`sim_metal_image`] names, or why these bytes are not one.
pub fn parse_sim_metal_image(bytes: &[u8]) -> Result<String, String> {
    let image: SimMetalImage = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a simulated metal image ({SIM_METAL_IMAGE_FORMAT} JSON expected): {e}")
    })?;
    if image.format != SIM_METAL_IMAGE_FORMAT {
        return Err(format!(
            "metal image format {:?}, expected {SIM_METAL_IMAGE_FORMAT:?}",
            image.format
        ));
    }
    if image.fcos_version.trim().is_empty() {
        return Err("metal image names no fcos_version".into());
    }
    Ok(image.fcos_version)
}

/// A node's firmware: where its network entry boots from, and which entry comes first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firmware {
    /// Slipway's boot server as the firmware's DHCP would point at it, e.g.
    /// `http://127.0.0.1:8080` (loopback only). `None`: no boot server answers, and a
    /// network entry boots the installed system again (the first round's stand-in).
    pub boot_server: Option<String>,
    /// `pxe-bootnext`: disk entries first in `BootOrder`, the network entry only on
    /// `BootNext`. `pxe-always`: the network entry first; the boot server answers localboot
    /// unless the node is armed. Applied to the initial `BootOrder` when a boot server is set.
    pub method: ReinstallMethod,
}

/// One network boot: what the firmware and the installer fetched, what they decided, and how
/// it ended. Written to the node's control folder ([`crate::SimNode::netboot_log`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetbootRecord {
    /// When the network entry started (Unix time, milliseconds).
    pub at_unix_ms: u64,
    /// The MAC the firmware identified itself with (`aa-bb-cc-dd-ee-ff`).
    pub mac: Option<String>,
    /// Every request, in order.
    pub fetches: Vec<Fetch>,
    /// What was decided and why, in order (human-readable).
    pub decisions: Vec<String>,
    /// How it ended.
    pub outcome: NetbootOutcome,
}

/// One request the firmware or the installer made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// What was fetched (`boot script`, `kernel`, `ignition`, `metal image`, ...).
    pub what: String,
    /// `GET` or `HEAD`.
    pub method: String,
    /// The URL, with any token redacted.
    pub url: String,
    /// The HTTP status, `None` when no answer came.
    pub status: Option<u16>,
    /// Body bytes received.
    pub bytes: u64,
}

/// How a network boot ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetbootOutcome {
    /// Not finished (only seen in a record of an interrupted boot).
    Pending,
    /// The script `exit`ed: the firmware went on to the next boot entry.
    Localboot,
    /// No usable script: the firmware went on to the next boot entry.
    NoScript {
        /// Why.
        reason: String,
    },
    /// The OS was installed; the installer rebooted.
    Installed {
        /// The OS version read from the metal image.
        os_version: String,
        /// Whether `/var` was kept.
        var_kept: bool,
    },
    /// The install failed: the node sits in the live environment (down).
    InstallFailed {
        /// Why, as coreos-installer or Ignition would report it.
        reason: String,
    },
    /// The install script was served again right after an install: the node stays down
    /// rather than reinstall forever.
    ReinstallLoop,
}

impl NetbootOutcome {
    /// Whether this outcome leaves the node down.
    pub fn leaves_node_down(&self) -> bool {
        matches!(
            self,
            NetbootOutcome::InstallFailed { .. } | NetbootOutcome::ReinstallLoop
        )
    }
}

impl NetbootRecord {
    pub(crate) fn new(mac: Option<&MacAddr>) -> Self {
        NetbootRecord {
            at_unix_ms: crate::enter::now_unix_ms(),
            mac: mac.map(MacAddr::hyphenated),
            fetches: Vec::new(),
            decisions: Vec::new(),
            outcome: NetbootOutcome::Pending,
        }
    }

    fn decide(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::debug!(decision = %text, "netboot");
        self.decisions.push(text);
    }

    /// The fetches of one kind (`what`), in order.
    pub fn fetched(&self, what: &str) -> Vec<&Fetch> {
        self.fetches.iter().filter(|f| f.what == what).collect()
    }
}

impl std::fmt::Display for NetbootRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "network boot as {}",
            self.mac.as_deref().unwrap_or("(no MAC)")
        )?;
        for x in &self.fetches {
            let status = x.status.map_or("no answer".to_string(), |s| s.to_string());
            writeln!(
                f,
                "  {} {} {} -> {status} ({} bytes)",
                x.what, x.method, x.url, x.bytes
            )?;
        }
        for d in &self.decisions {
            writeln!(f, "  * {d}")?;
        }
        match &self.outcome {
            NetbootOutcome::Pending => write!(f, "  = interrupted"),
            NetbootOutcome::Localboot => write!(f, "  = localboot: next boot entry"),
            NetbootOutcome::NoScript { reason } => write!(f, "  = no script ({reason})"),
            NetbootOutcome::Installed {
                os_version,
                var_kept,
            } => write!(
                f,
                "  = installed Fedora CoreOS {os_version}, /var {}",
                if *var_kept { "kept" } else { "wiped" }
            ),
            NetbootOutcome::InstallFailed { reason } => write!(f, "  = install failed: {reason}"),
            NetbootOutcome::ReinstallLoop => write!(f, "  = install script served again: stopped"),
        }
    }
}

/// Replace the value of any `token=` query parameter (the one-shot Ignition token).
pub fn redact_url(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("token") => format!("{k}=(redacted)"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}?{}", query.join("&"))
}

/// What an iPXE script asks for, as far as the simulator runs scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootScript {
    /// `chain <url>`: fetch and run that script.
    Chain(String),
    /// `exit`: back to the firmware (localboot).
    Localboot,
    /// `kernel` + `initrd` + `boot`: boot a kernel.
    Boot {
        /// The kernel URL.
        kernel: String,
        /// Its command line.
        args: Vec<String>,
        /// Initrd URLs.
        initrds: Vec<String>,
    },
    /// Something the simulator does not run (the reason names it).
    Unsupported(String),
}

/// Read an iPXE script the way the simulated iPXE runs it: `#!ipxe` first, `echo` and
/// comments skipped, `${net0/mac:hexhyp}` and `${net0/mac}` expanded with `mac`; the first of
/// `chain`, `exit` or `boot` decides.
pub fn parse_boot_script(text: &str, mac: Option<&MacAddr>) -> BootScript {
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("#!ipxe") {
        return BootScript::Unsupported("not an iPXE script (no #!ipxe line)".into());
    }
    let expand = |word: &str| -> String {
        match mac {
            Some(m) => word
                .replace("${net0/mac:hexhyp}", &m.hyphenated())
                .replace("${net0/mac}", &m.to_string()),
            None => word.to_string(),
        }
    };
    let mut kernel: Option<(String, Vec<String>)> = None;
    let mut initrds = Vec::new();
    for line in lines {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with("--"));
        let Some(command) = words.next() else {
            continue;
        };
        let rest: Vec<String> = words.map(expand).collect();
        match command {
            c if c.starts_with('#') || c.starts_with(':') => {}
            "echo" | "dhcp" | "ifopen" | "prompt" | "sleep" => {}
            "exit" => return BootScript::Localboot,
            "chain" | "chainload" => match rest.first() {
                Some(url) => return BootScript::Chain(url.clone()),
                None => return BootScript::Unsupported("`chain` without a URL".into()),
            },
            "kernel" | "imgexec" => {
                let Some((url, args)) = rest.split_first() else {
                    return BootScript::Unsupported("`kernel` without a URL".into());
                };
                kernel = Some((url.clone(), args.to_vec()));
            }
            "initrd" | "module" => match rest.first() {
                Some(url) => initrds.push(url.clone()),
                None => return BootScript::Unsupported("`initrd` without a URL".into()),
            },
            "boot" => {
                return match kernel {
                    Some((kernel, args)) => BootScript::Boot {
                        kernel,
                        args,
                        initrds,
                    },
                    None => BootScript::Unsupported("`boot` without a `kernel`".into()),
                }
            }
            other => return BootScript::Unsupported(format!("iPXE command `{other}`")),
        }
    }
    BootScript::Unsupported("the script ends without `exit`, `chain` or `boot`".into())
}

/// The FCOS live installer's view of a kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInstall {
    /// `coreos.inst.install_dev`.
    pub install_dev: String,
    /// `coreos.inst.image_url`.
    pub image_url: String,
    /// `coreos.inst.ignition_url` (holds the one-shot token: do not log it unredacted).
    pub ignition_url: String,
    /// `coreos.live.rootfs_url`.
    pub rootfs_url: String,
    /// `coreos.inst.insecure`: no signature needed for the image.
    pub insecure: bool,
    /// `coreos.inst.save_partlabel`, split at commas.
    pub save_partlabels: Vec<String>,
}

impl LiveInstall {
    /// Read the installer's arguments; `Err` names what the live system lacks to install.
    /// `ignition.firstboot` and `ignition.platform.id=metal` are required as on metal.
    pub fn from_kernel_args(args: &[String]) -> Result<Self, String> {
        let value = |key: &str| -> Option<String> {
            args.iter()
                .rev()
                .find_map(|a| a.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
        };
        let flag = |key: &str| args.iter().any(|a| a == key);
        let required = |key: &str| -> Result<String, String> {
            value(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the kernel command line has no {key}="))
        };
        if !flag("ignition.firstboot") {
            return Err("the kernel command line has no ignition.firstboot".into());
        }
        match value("ignition.platform.id").as_deref() {
            Some("metal") => {}
            Some(other) => {
                return Err(format!(
                    "ignition.platform.id={other}: only metal is simulated"
                ))
            }
            None => return Err("the kernel command line has no ignition.platform.id=".into()),
        }
        let install = LiveInstall {
            rootfs_url: required("coreos.live.rootfs_url")?,
            install_dev: required("coreos.inst.install_dev")?,
            image_url: required("coreos.inst.image_url")?,
            ignition_url: required("coreos.inst.ignition_url")?,
            insecure: flag("coreos.inst.insecure"),
            save_partlabels: value("coreos.inst.save_partlabel")
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        };
        if !install.install_dev.starts_with("/dev/") {
            return Err(format!(
                "coreos.inst.install_dev={} is not a device path",
                install.install_dev
            ));
        }
        Ok(install)
    }

    /// Whether `coreos.inst.save_partlabel` keeps the partition labelled `label`.
    pub fn saves_partlabel(&self, label: &str) -> bool {
        self.save_partlabels
            .iter()
            .any(|pattern| crate::k3s::glob_matches(pattern, label))
    }
}

/// The sha256 a content-addressed artifact URL (`.../artifacts/<sha256>/<name>`) names.
pub fn content_address(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let mut segments = path.rsplit('/');
    let _name = segments.next()?;
    let sha = segments.next()?;
    let artifacts = segments.next()?;
    (artifacts == "artifacts" && sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| sha.to_ascii_lowercase())
}

/// Whether `/var` survives this install, and why (see the module docs for the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDecision {
    /// Keep or wipe.
    pub policy: VarPolicy,
    /// The reason, for the netboot log.
    pub why: String,
}

/// Decide `/var` from the Ignition config (JSON) and the installer's arguments.
pub fn var_decision(config: &serde_json::Value, install: &LiveInstall) -> VarDecision {
    let wipe = |why: String| VarDecision {
        policy: VarPolicy::Wipe,
        why: format!("/var wiped: {why}"),
    };
    if !install.saves_partlabel("var") {
        return wipe(
            "coreos.inst.save_partlabel does not name var, so the installer writes a fresh partition table"
                .into(),
        );
    }
    let storage = &config["storage"];
    let partition = storage["disks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["partitions"].as_array().into_iter().flatten())
        .any(|p| p["label"] == "var");
    if !partition {
        return wipe(
            "the Ignition config declares no partition labelled var (the saved one stays unused)"
                .into(),
        );
    }
    let filesystems: Vec<&serde_json::Value> = storage["filesystems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["device"] == VAR_DEVICE)
        .collect();
    let Some(fs) = filesystems.first() else {
        return wipe(format!(
            "the Ignition config declares no filesystem on {VAR_DEVICE}"
        ));
    };
    if fs["path"] != "/var" {
        return wipe(format!(
            "the filesystem on {VAR_DEVICE} is mounted at {}, not /var",
            fs["path"]
        ));
    }
    if fs["wipeFilesystem"].as_bool().unwrap_or(false) {
        return wipe(format!(
            "the filesystem on {VAR_DEVICE} has wipeFilesystem: true"
        ));
    }
    VarDecision {
        policy: VarPolicy::Keep,
        why: format!(
            "/var kept: partition var saved by the installer, filesystem on {VAR_DEVICE} at /var with wipeFilesystem false"
        ),
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body (empty for `HEAD`).
    pub body: Vec<u8>,
}

/// The socket address of a loopback `http://` URL, its `Host` header and request target;
/// an error for anything else (the simulator never dials the LAN).
fn loopback_target(url: &str) -> Result<(SocketAddr, String, String), SimError> {
    let refuse = |why: &str| SimError::NotLoopback {
        url: redact_url(url),
        why: why.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|_| refuse("not an absolute URL"))?;
    if parsed.scheme() != "http" {
        return Err(refuse("only http:// is simulated"));
    }
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => return Err(refuse("the host is not a loopback address")),
    };
    if !ip.is_loopback() {
        return Err(refuse("the host is not a loopback address"));
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = match parsed.port() {
        Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    let mut target = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        target.push('?');
        target.push_str(q);
    }
    Ok((SocketAddr::new(ip, port), host, target))
}

/// Check that `url` is one the simulator may dial (`http://` to loopback).
pub fn require_loopback(url: &str) -> Result<(), SimError> {
    loopback_target(url).map(|_| ())
}

/// `GET url` with the simulator's client (loopback `http://` only, see [`require_loopback`]).
pub fn http_get(url: &str) -> Result<HttpResponse, SimError> {
    http("GET", url)
}

/// A small blocking HTTP/1.0 client (one request per connection), loopback only.
pub(crate) fn http(method: &str, url: &str) -> Result<HttpResponse, SimError> {
    let (addr, host, target) = loopback_target(url)?;
    let fail = |message: String| SimError::Http {
        url: redact_url(url),
        message,
    };
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_LIMIT)
        .map_err(|e| fail(format!("connecting to {addr}: {e}")))?;
    let _ = stream.set_read_timeout(Some(IO_LIMIT));
    let _ = stream.set_write_timeout(Some(IO_LIMIT));
    let request = Zeroizing::new(format!(
        "{method} {target} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: slipway-fleet-sim\r\nAccept: */*\r\n\r\n"
    ));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(format!("sending the request: {e}")))?;
    // The answer may be an Ignition config (it carries the K3s token).
    let mut raw = Zeroizing::new(Vec::new());
    stream
        .take(MAX_BODY + 64 * 1024)
        .read_to_end(&mut raw)
        .map_err(|e| fail(format!("reading the answer: {e}")))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("the answer has no end of headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| fail("malformed status line".into()))?;
    let length = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if method == "HEAD" {
        body.clear();
    } else if let Some(len) = length {
        if body.len() < len {
            return Err(fail(format!(
                "the answer ended after {} of {len} bytes",
                body.len()
            )));
        }
        body.truncate(len);
    }
    Ok(HttpResponse { status, body })
}

/// What the firmware does after one network entry.
pub(crate) enum Attempt {
    /// Go on to the next boot entry (localboot or no usable script).
    NextEntry,
    /// The live installer fetched and checked everything: lay this down.
    Install(PreparedInstall),
    /// The node stays in the live environment (down).
    Stuck,
}

/// An install ready to be laid down.
pub(crate) struct PreparedInstall {
    /// The Ignition config (secret: it carries the K3s token).
    pub(crate) config: Zeroizing<String>,
    /// The OS version the image names.
    pub(crate) os_version: String,
    /// Keep or wipe `/var`.
    pub(crate) var: VarPolicy,
}

/// Fetch `url`, recording it (token redacted).
fn fetch(
    record: &mut NetbootRecord,
    what: &str,
    method: &str,
    url: &str,
) -> Result<HttpResponse, SimError> {
    let result = http(method, url);
    record.fetches.push(Fetch {
        what: what.into(),
        method: method.into(),
        url: redact_url(url),
        status: result.as_ref().ok().map(|r| r.status),
        bytes: result.as_ref().map_or(0, |r| r.body.len() as u64),
    });
    result
}

/// One network boot entry: fetch the script (unless `given`), follow chains, and for an
/// install script run the live installer's checks. `allow_install` is false right after an
/// install (an install script then is a reinstall loop). Sets `record.outcome` except for
/// [`Attempt::Install`], whose outcome the caller records once the image is laid down.
pub(crate) fn network_entry(
    base: &str,
    mac: Option<&MacAddr>,
    given: Option<&str>,
    allow_install: bool,
    record: &mut NetbootRecord,
) -> Attempt {
    let next_entry = |record: &mut NetbootRecord, reason: String| {
        record.decide(format!("firmware moves on: {reason}"));
        record.outcome = NetbootOutcome::NoScript { reason };
        Attempt::NextEntry
    };
    let mut script = match given {
        Some(text) => {
            record.decide("booting a script handed in directly");
            text.to_string()
        }
        None => {
            if mac.is_none() {
                return next_entry(record, "the node has no MAC to netboot with".into());
            }
            let url = format!("{}/boot.ipxe", base.trim_end_matches('/'));
            match fetch(record, "boot script", "GET", &url) {
                Ok(r) if r.status == 200 => String::from_utf8_lossy(&r.body).into_owned(),
                Ok(r) => return next_entry(record, format!("{url} answered {}", r.status)),
                Err(e) => return next_entry(record, e.to_string()),
            }
        }
    };
    let mut chains = 0;
    loop {
        match parse_boot_script(&script, mac) {
            BootScript::Localboot => {
                record.decide("the script exits: localboot");
                record.outcome = NetbootOutcome::Localboot;
                return Attempt::NextEntry;
            }
            BootScript::Unsupported(why) => {
                return next_entry(record, format!("script not run: {why}"))
            }
            BootScript::Chain(url) => {
                chains += 1;
                if chains > MAX_CHAIN {
                    return next_entry(record, format!("more than {MAX_CHAIN} chains"));
                }
                match fetch(record, "boot script", "GET", &url) {
                    Ok(r) if r.status == 200 => {
                        script = String::from_utf8_lossy(&r.body).into_owned();
                    }
                    Ok(r) => {
                        return next_entry(
                            record,
                            format!("{} answered {}", redact_url(&url), r.status),
                        )
                    }
                    Err(e) => return next_entry(record, e.to_string()),
                }
            }
            BootScript::Boot {
                kernel,
                args,
                initrds,
            } => {
                if !allow_install {
                    record.decide(
                        "an install script again right after an install: the boot server did not fall back to localboot",
                    );
                    record.outcome = NetbootOutcome::ReinstallLoop;
                    return Attempt::Stuck;
                }
                let result = live_install(record, &kernel, &args, &initrds);
                return match result {
                    Ok(prepared) => Attempt::Install(prepared),
                    Err(reason) => {
                        record.decide(format!("install failed: {reason}"));
                        record.outcome = NetbootOutcome::InstallFailed { reason };
                        Attempt::Stuck
                    }
                };
            }
        }
    }
}

/// Require a 200 for `url`.
fn require(
    record: &mut NetbootRecord,
    what: &str,
    method: &str,
    url: &str,
) -> Result<HttpResponse, String> {
    match fetch(record, what, method, url) {
        Ok(r) if r.status == 200 => Ok(r),
        Ok(r) => Err(format!(
            "fetching the {what} {} answered HTTP {}",
            redact_url(url),
            r.status
        )),
        Err(e) => Err(format!("fetching the {what}: {e}")),
    }
}

/// The live environment and coreos-installer: everything but writing the disk.
fn live_install(
    record: &mut NetbootRecord,
    kernel: &str,
    args: &[String],
    initrds: &[String],
) -> Result<PreparedInstall, String> {
    // iPXE loads the kernel and initrds before booting.
    require(record, "kernel", "HEAD", kernel)?;
    if initrds.is_empty() {
        return Err("the script loads no initrd: the live kernel cannot boot".into());
    }
    for initrd in initrds {
        require(record, "initramfs", "HEAD", initrd)?;
    }
    let install = LiveInstall::from_kernel_args(args)?;
    record.decide(format!(
        "live environment: install to {} (save partlabels: {})",
        install.install_dev,
        if install.save_partlabels.is_empty() {
            "none".to_string()
        } else {
            install.save_partlabels.join(",")
        }
    ));
    // The live initramfs fetches its root file system.
    require(record, "rootfs", "HEAD", &install.rootfs_url)?;
    // coreos-installer fetches the Ignition config before it touches the disk.
    let ignition = match fetch(record, "ignition", "GET", &install.ignition_url) {
        Ok(r) if r.status == 200 => Zeroizing::new(r.body),
        Ok(r) if r.status == 403 => {
            return Err(format!(
                "the boot server refused the Ignition config (HTTP 403): its one-shot token was spent, expired or wrong ({})",
                redact_url(&install.ignition_url)
            ))
        }
        Ok(r) => {
            return Err(format!(
                "fetching the Ignition config {} answered HTTP {}",
                redact_url(&install.ignition_url),
                r.status
            ))
        }
        Err(e) => return Err(format!("fetching the Ignition config: {e}")),
    };
    let config_text = std::str::from_utf8(&ignition)
        .map_err(|_| "the Ignition config is not UTF-8".to_string())?;
    let config: serde_json::Value = serde_json::from_str(config_text)
        .map_err(|e| format!("the Ignition config is not JSON: {e}"))?;
    if !config["ignition"]["version"].is_string() {
        return Err("the Ignition config has no ignition.version".into());
    }
    let config_text = Zeroizing::new(config_text.to_string());
    record.decide(format!(
        "Ignition config fetched ({} bytes, spec {})",
        config_text.len(),
        config["ignition"]["version"].as_str().unwrap_or("?")
    ));
    let image = require(record, "metal image", "GET", &install.image_url)?;
    let actual = hex::encode(sha2::Sha256::digest(&image.body));
    match content_address(&install.image_url) {
        Some(expected) if expected == actual => {
            record.decide(format!("metal image sha256 {actual} matches its URL"))
        }
        Some(expected) => {
            return Err(format!(
                "metal image sha256 mismatch: the URL names {expected}, the download is {actual}"
            ))
        }
        None => record.decide("metal image URL is not content-addressed: no sha256 to check"),
    }
    if install.insecure {
        record.decide("coreos.inst.insecure: the image signature is not checked");
    } else {
        let sig = format!("{}.sig", install.image_url);
        match fetch(record, "image signature", "HEAD", &sig) {
            Ok(r) if r.status == 200 => {
                record.decide("image signature present (presence checked, not cryptography)")
            }
            Ok(r) => {
                return Err(format!(
                    "no signature for the metal image ({sig} answered HTTP {}) and no coreos.inst.insecure",
                    r.status
                ))
            }
            Err(e) => return Err(format!("fetching the image signature: {e}")),
        }
    }
    let os_version = parse_sim_metal_image(&image.body)?;
    record.decide(format!("metal image holds Fedora CoreOS {os_version}"));
    let var = var_decision(&config, &install);
    record.decide(var.why.clone());
    Ok(PreparedInstall {
        config: config_text,
        os_version,
        var: var.policy,
    })
}

/// Put `method`'s entry kind first in `order` (stable), as the firmware is configured.
pub(crate) fn apply_method(efi: &mut slipway_model::facts::BootEntries, method: ReinstallMethod) {
    let network_first = method == ReinstallMethod::PxeAlways;
    let is_network = |n: &u16| efi.entry(*n).is_some_and(|e| e.is_network);
    let (mut first, rest): (Vec<u16>, Vec<u16>) = efi
        .order
        .iter()
        .partition(|n| is_network(n) == network_first);
    first.extend(rest);
    efi.order = first;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mac() -> MacAddr {
        "52:54:00:aa:00:01".parse().unwrap()
    }

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    const LINE: &str = "initrd=initramfs.img ignition.firstboot ignition.platform.id=metal \
        coreos.inst.install_dev=/dev/sda coreos.inst.image_url=http://127.0.0.1:9/artifacts/aa/m.raw.xz \
        coreos.inst.ignition_url=http://127.0.0.1:9/ignition/w1?token=SECRET \
        coreos.live.rootfs_url=http://127.0.0.1:9/artifacts/bb/rootfs.img coreos.inst.save_partlabel=var \
        rd.neednet=1 ip=dhcp";

    fn slipway_storage(wipe: bool) -> serde_json::Value {
        json!({"ignition": {"version": "3.4.0"}, "storage": {
            "disks": [{"device": "/dev/disk/by-id/coreos-boot-disk", "wipeTable": false,
                "partitions": [{"label": "root", "number": 4}, {"label": "var", "sizeMiB": 0}]}],
            "filesystems": [{"path": "/var", "device": "/dev/disk/by-partlabel/var",
                "format": "xfs", "wipeFilesystem": wipe}]}})
    }

    #[test]
    fn metal_images_round_trip_and_reject_other_bytes() {
        let image = sim_metal_image("40.20240906.3.0");
        assert_eq!(parse_sim_metal_image(&image).unwrap(), "40.20240906.3.0");
        assert!(parse_sim_metal_image(b"\xfd7zXZ\0").is_err());
        assert!(parse_sim_metal_image(br#"{"format":"other","fcos_version":"1"}"#).is_err());
        assert!(parse_sim_metal_image(
            br#"{"format":"slipway-fleet-sim/metal-image/1","fcos_version":" "}"#
        )
        .is_err());
    }

    #[test]
    fn scripts_from_the_boot_server_parse() {
        let chain = "#!ipxe\nchain http://127.0.0.1:9/ipxe?mac=${net0/mac:hexhyp}\n";
        assert_eq!(
            parse_boot_script(chain, Some(&mac())),
            BootScript::Chain("http://127.0.0.1:9/ipxe?mac=52-54-00-aa-00-01".into())
        );
        let local = "#!ipxe\necho slipway: localboot, handing back to firmware\nexit\n";
        assert_eq!(parse_boot_script(local, None), BootScript::Localboot);
        let install = format!(
            "#!ipxe\necho slipway: installing\nkernel http://127.0.0.1:9/artifacts/k/kernel {LINE}\ninitrd http://127.0.0.1:9/artifacts/i/initramfs.img\nboot\n"
        );
        match parse_boot_script(&install, None) {
            BootScript::Boot {
                kernel,
                args: a,
                initrds,
            } => {
                assert_eq!(kernel, "http://127.0.0.1:9/artifacts/k/kernel");
                assert_eq!(a, args(LINE));
                assert_eq!(
                    initrds,
                    vec!["http://127.0.0.1:9/artifacts/i/initramfs.img"]
                );
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "exit\n",
            "#!ipxe\nshell\n",
            "#!ipxe\nboot\n",
            "#!ipxe\necho hi\n",
            "#!ipxe\nchain\n",
        ] {
            assert!(
                matches!(parse_boot_script(bad, None), BootScript::Unsupported(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn installer_arguments_are_read_and_required() {
        let install = LiveInstall::from_kernel_args(&args(LINE)).unwrap();
        assert_eq!(install.install_dev, "/dev/sda");
        assert!(install.ignition_url.ends_with("token=SECRET"));
        assert!(!install.insecure);
        assert!(install.saves_partlabel("var"));
        assert!(!install.saves_partlabel("root"));
        let insecure =
            LiveInstall::from_kernel_args(&args(&format!("{LINE} coreos.inst.insecure")));
        assert!(insecure.unwrap().insecure);
        for key in [
            "ignition.firstboot",
            "ignition.platform.id=metal",
            "coreos.inst.install_dev=/dev/sda",
            "coreos.inst.image_url=",
            "coreos.inst.ignition_url=",
            "coreos.live.rootfs_url=",
        ] {
            let without: Vec<String> = args(LINE)
                .into_iter()
                .filter(|a| !a.starts_with(key))
                .collect();
            let err = LiveInstall::from_kernel_args(&without).unwrap_err();
            assert!(err.contains(key.split('=').next().unwrap()), "{key}: {err}");
        }
        let qemu = LINE.replace("platform.id=metal", "platform.id=qemu");
        assert!(LiveInstall::from_kernel_args(&args(&qemu))
            .unwrap_err()
            .contains("qemu"));
    }

    #[test]
    fn var_is_kept_only_when_installer_and_config_both_keep_it() {
        let saving = LiveInstall::from_kernel_args(&args(LINE)).unwrap();
        let mut not_saving = saving.clone();
        not_saving.save_partlabels = vec![];
        let mut glob = saving.clone();
        glob.save_partlabels = vec!["boot".into(), "v*".into()];

        assert_eq!(
            var_decision(&slipway_storage(false), &saving).policy,
            VarPolicy::Keep
        );
        assert_eq!(
            var_decision(&slipway_storage(false), &glob).policy,
            VarPolicy::Keep
        );
        let cases: Vec<(serde_json::Value, &LiveInstall, &str)> = vec![
            (slipway_storage(true), &saving, "wipeFilesystem: true"),
            (slipway_storage(false), &not_saving, "save_partlabel"),
            (
                {
                    let mut c = slipway_storage(false);
                    c["storage"]["disks"][0]["partitions"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|p| p["label"] != "var");
                    c
                },
                &saving,
                "no partition labelled var",
            ),
            (
                {
                    let mut c = slipway_storage(false);
                    c["storage"]["filesystems"] = json!([]);
                    c
                },
                &saving,
                "no filesystem",
            ),
            (
                {
                    let mut c = slipway_storage(false);
                    c["storage"]["filesystems"][0]["path"] = json!("/srv");
                    c
                },
                &saving,
                "not /var",
            ),
            (
                json!({"ignition": {"version": "3.4.0"}}),
                &saving,
                "no partition",
            ),
        ];
        for (config, install, why) in cases {
            let d = var_decision(&config, install);
            assert_eq!(d.policy, VarPolicy::Wipe, "{why}");
            assert!(d.why.contains(why), "{} lacks {why}", d.why);
        }
    }

    #[test]
    fn only_loopback_http_is_dialled() {
        for ok in [
            "http://127.0.0.1:8080/boot.ipxe",
            "http://127.1.2.3/x",
            "http://[::1]:9/x?y=1",
            "http://localhost:1/",
        ] {
            require_loopback(ok).unwrap();
        }
        for bad in [
            "http://10.0.0.2:8080/boot.ipxe",
            "http://192.168.1.1/",
            "http://example.org/",
            "https://127.0.0.1/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            let err = require_loopback(bad).unwrap_err();
            assert!(matches!(err, SimError::NotLoopback { .. }), "{bad}: {err}");
        }
        // Refused before any socket: an error even though nothing listens there.
        let err = http("GET", "http://10.255.255.1/ignition/n?token=abc").unwrap_err();
        assert!(!err.to_string().contains("abc"), "{err}");
    }

    #[test]
    fn tokens_are_redacted_and_content_addresses_read() {
        assert_eq!(
            redact_url("http://127.0.0.1:9/ignition/w1?token=SECRET&x=1"),
            "http://127.0.0.1:9/ignition/w1?token=(redacted)&x=1"
        );
        assert_eq!(redact_url("http://h/a"), "http://h/a");
        let sha = "ab".repeat(32);
        assert_eq!(
            content_address(&format!("http://h:1/artifacts/{sha}/m.raw.xz")),
            Some(sha.clone())
        );
        assert_eq!(content_address("http://h/artifacts/abc/m.raw.xz"), None);
        assert_eq!(content_address(&format!("http://h/files/{sha}/m")), None);
    }

    #[test]
    fn http_client_reads_a_loopback_answer() {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h == "\r\n" {
                        break;
                    }
                }
                requests.push(line);
                s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!extra")
                    .unwrap();
            }
            requests
        });
        let r = http("GET", &format!("http://127.0.0.1:{port}/a?b=c")).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope!"[..]));
        let r = http("HEAD", &format!("http://127.0.0.1:{port}/h")).unwrap();
        assert_eq!((r.status, r.body.len()), (404, 0));
        let requests = server.join().unwrap();
        assert_eq!(requests[0], "GET /a?b=c HTTP/1.0\r\n");
        assert_eq!(requests[1], "HEAD /h HTTP/1.0\r\n");
    }

    #[test]
    fn firmware_method_orders_the_entries() {
        let mut efi = crate::state::default_efi();
        apply_method(&mut efi, ReinstallMethod::PxeAlways);
        assert_eq!(efi.order, vec![2, 1]);
        apply_method(&mut efi, ReinstallMethod::PxeBootnext);
        assert_eq!(efi.order, vec![1, 2]);
    }
}
