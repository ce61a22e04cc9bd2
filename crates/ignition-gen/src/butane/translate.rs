//! The translation proper. See the module docs of [`crate::butane`].

use std::collections::HashMap;

use marked_yaml::Span;
use slipway_model::diag::{Diagnostic, Location, Severity};
use slipway_model::yaml::{load_with_marks, location_of, Marks};

use super::dataurl::{escape, make_data_url};
use super::schema::{self as b, OBool, OInt, OStr, S};
use super::systemd::{clean_path, mount_unit, MountUnitInput, UNIT_SUFFIXES};
use super::version::ButaneVersion;
use crate::files::{resolve_local, FileSource, TreeEntryKind};
use crate::ignition::{self as ign, SpecVersion};
use crate::merge::merge_two;
use crate::Error;

use ButaneVersion::{V1_0, V1_1, V1_2, V1_3, V1_4, V1_5, V1_6};

/// Options for [`translate`], mirroring Butane's flags.
#[derive(Debug, Clone, Default)]
pub struct TranslateOptions {
    /// `--strict`: warnings are errors.
    pub strict: bool,
    /// `--no-resource-auto-compression`: never gzip inline or local contents.
    pub no_resource_auto_compression: bool,
}

/// A successful translation.
#[derive(Debug, Clone)]
pub struct Translation {
    /// The Ignition config.
    pub config: ign::Config,
    /// The Butane version the input declared.
    pub butane_version: ButaneVersion,
    /// The Ignition spec version of `config`.
    pub spec_version: SpecVersion,
    /// Warnings (never present with `strict`, where they are errors).
    pub warnings: Vec<Diagnostic>,
}

impl Translation {
    /// The config as Butane prints it: compact, or indented by two spaces with `pretty`.
    /// No trailing newline (Butane's CLI adds one).
    pub fn to_json(&self, pretty: bool) -> String {
        self.config.to_json(pretty)
    }
}

/// Translate Butane YAML text (named `file` in diagnostics) to Ignition. Local files come from
/// `files` ([`crate::files::NoFiles`] when no files directory was given). Returns every error
/// and warning found, sorted by position, when any error is found.
pub fn translate(
    file: &str,
    yaml: &str,
    opts: &TranslateOptions,
    files: &dyn FileSource,
) -> Result<Translation, Vec<Diagnostic>> {
    let (cfg, marks): (b::Config, _) = load_with_marks(file, yaml)?;
    let mut cx = Ctx {
        file,
        marks,
        opts,
        files,
        ver: V1_6,
        diags: Vec::new(),
    };
    let Some(ver) = cx.version(&cfg) else {
        return Err(cx.diags);
    };
    cx.ver = ver;
    let mut out = cx.base(&cfg);
    cx.mount_units(&cfg, &mut out);
    cx.trees(&cfg, &mut out);
    cx.boot_device(&cfg, &mut out);
    cx.grub(&cfg, &mut out);
    cx.validate_output(&cfg, &out);
    cx.finish(out)
}

struct Ctx<'a> {
    file: &'a str,
    /// Quoted scalars (Go's YAML library reads a quoted `"0644"` as a string, never as a
    /// number or boolean) and where each value's key is.
    marks: Marks,
    opts: &'a TranslateOptions,
    files: &'a dyn FileSource,
    ver: ButaneVersion,
    diags: Vec<Diagnostic>,
}

fn st(o: &OStr) -> Option<String> {
    o.as_ref().map(|v| (**v).clone())
}
fn strs(v: &[S<String>]) -> Vec<String> {
    v.iter().map(|s| (**s).clone()).collect()
}

/// Which kind of resource, for the fields 1.0.0 allows.
#[derive(Clone, Copy, PartialEq)]
enum ResKind {
    FileContents,
    ConfigRef,
    Other,
}

impl Ctx<'_> {
    fn int(&mut self, o: &OInt) -> Option<i64> {
        let v = o.as_ref()?;
        if self.refuse_quoted(v.span(), "a whole number") {
            return None;
        }
        match &v.0 {
            Ok(n) => Some(*n),
            Err(text) => {
                self.error(v.span(), format!("expected a whole number, found `{text}`"));
                None
            }
        }
    }

    fn bo(&mut self, o: &OBool) -> Option<bool> {
        let v = o.as_ref()?;
        if self.refuse_quoted(v.span(), "a boolean") {
            return None;
        }
        match &v.0 {
            Ok(b) => Some(*b),
            Err(text) => {
                let d = self.error(v.span(), format!("expected a boolean, found `{text}`"));
                d.hint = Some("write `true` or `false`".into());
                None
            }
        }
    }

    /// Go's YAML library reads a quoted scalar as text: refuse it where `expected` is not.
    fn refuse_quoted(&mut self, span: &Span, expected: &str) -> bool {
        if !self.marks.is_quoted(span) {
            return false;
        }
        let d = self.error(span, format!("expected {expected}, found a quoted string"));
        d.hint = Some("remove the quotes: a quoted value is text, as in Butane".into());
        true
    }

    fn is_true(&mut self, o: &OBool) -> bool {
        self.bo(o) == Some(true)
    }

    fn loc(&self, span: &Span) -> Location {
        location_of(self.file, span)
    }

    fn error(&mut self, span: &Span, msg: impl Into<String>) -> &mut Diagnostic {
        let d = Diagnostic::error(self.loc(span), msg);
        self.diags.push(d);
        let n = self.diags.len() - 1;
        &mut self.diags[n]
    }

    fn warn(&mut self, span: &Span, msg: impl Into<String>) {
        let d = Diagnostic::warning(self.loc(span), msg);
        self.diags.push(d);
    }

    /// Reject `key` when the declared version predates `min`.
    fn gate<T>(&mut self, field: &Option<S<T>>, min: ButaneVersion, key: &str) -> bool {
        match field {
            Some(v) if self.ver < min => {
                let ver = self.ver;
                let at = self.marks.key_of(v.span());
                let d = self.error(&at, format!("`{key}` is not supported by fcos {ver}"));
                d.hint = Some(format!("`{key}` needs `version: {min}` or later"));
                false
            }
            _ => true,
        }
    }

    fn finish(mut self, config: ign::Config) -> Result<Translation, Vec<Diagnostic>> {
        if self.opts.strict {
            for d in &mut self.diags {
                d.severity = Severity::Error;
            }
        }
        self.diags.sort_by(|a, b| a.location.cmp(&b.location));
        self.diags.dedup();
        if self.diags.iter().any(Diagnostic::is_error) {
            return Err(self.diags);
        }
        Ok(Translation {
            config,
            butane_version: self.ver,
            spec_version: self.ver.ignition(),
            warnings: self.diags,
        })
    }

    fn version(&mut self, cfg: &b::Config) -> Option<ButaneVersion> {
        let start = Location::file(self.file);
        match &cfg.variant {
            None => {
                self.diags.push(
                    Diagnostic::error(start.clone(), "error parsing variant; must be specified")
                        .with_hint("add `variant: fcos`"),
                );
            }
            Some(v) if v.as_str() != "fcos" => {
                let d = self.error(v.span(), format!("unsupported variant `{}`", v.as_str()));
                d.hint = Some("Slipway translates `variant: fcos` only".into());
            }
            Some(_) => {}
        }
        let ver = match &cfg.version {
            None => {
                self.diags.push(
                    Diagnostic::error(start, "error parsing version; must be a valid semver")
                        .with_hint("add `version: 1.4.0`"),
                );
                None
            }
            Some(v) => match ButaneVersion::parse(v.as_str()) {
                Some(ver) => Some(ver),
                None => {
                    let d = self.error(
                        v.span(),
                        format!("unsupported fcos version `{}`", v.as_str()),
                    );
                    d.hint = Some(
                        "supported versions: 1.0.0, 1.1.0, 1.2.0, 1.3.0, 1.4.0, 1.5.0, 1.6.0"
                            .into(),
                    );
                    None
                }
            },
        };
        if self.diags.is_empty() {
            ver
        } else {
            None
        }
    }

    // ---------------------------------------------------------------- base

    fn base(&mut self, cfg: &b::Config) -> ign::Config {
        let mut out = ign::Config::new(self.ver.ignition());
        if let Some(i) = &cfg.ignition {
            self.ignition(i, &mut out.ignition);
        }
        if self.gate(&cfg.kernel_arguments, V1_4, "kernel_arguments") {
            if let Some(k) = &cfg.kernel_arguments {
                out.kernel_arguments = ign::KernelArguments {
                    should_exist: strs(&k.should_exist),
                    should_not_exist: strs(&k.should_not_exist),
                };
            }
        }
        if let Some(p) = &cfg.passwd {
            self.passwd(p, &mut out.passwd);
        }
        if let Some(s) = &cfg.storage {
            self.storage(s, &mut out.storage);
        }
        if let Some(s) = &cfg.systemd {
            for u in &s.units {
                let unit = self.unit(u);
                out.systemd.units.push(unit);
            }
        }
        self.gate(&cfg.boot_device, V1_3, "boot_device");
        self.gate(&cfg.grub, V1_5, "grub");
        out
    }

    fn ignition(&mut self, i: &b::Ignition, out: &mut ign::Ignition) {
        if let Some(c) = &i.config {
            for r in &c.merge {
                let res = self.resource(r, ResKind::ConfigRef);
                out.config.merge.push(res);
            }
            if let Some(r) = &c.replace {
                out.config.replace = self.resource(r, ResKind::ConfigRef);
            }
        }
        if self.gate(&i.proxy, V1_1, "proxy") {
            if let Some(p) = &i.proxy {
                out.proxy = ign::Proxy {
                    http_proxy: st(&p.http_proxy),
                    https_proxy: st(&p.https_proxy),
                    no_proxy: strs(&p.no_proxy),
                };
            }
        }
        if let Some(tls) = i.security.as_ref().and_then(|s| s.tls.as_ref()) {
            for r in &tls.certificate_authorities {
                let res = self.resource(r, ResKind::ConfigRef);
                out.security.tls.certificate_authorities.push(res);
            }
        }
        if let Some(t) = &i.timeouts {
            out.timeouts = ign::Timeouts {
                http_response_headers: self.int(&t.http_response_headers),
                http_total: self.int(&t.http_total),
            };
        }
    }

    fn read_local(&mut self, span: &Span, path: &str) -> Option<Vec<u8>> {
        if !self.files.is_configured() {
            self.error(span, Error::NoFilesDir.to_string());
            return None;
        }
        let rel = match resolve_local(path) {
            Ok(r) => r,
            Err(e) => {
                self.error(span, e.to_string());
                return None;
            }
        };
        match self.files.read(&rel) {
            Ok(data) => Some(data),
            Err(e) => {
                self.error(span, e.to_string());
                None
            }
        }
    }

    fn resource(&mut self, r: &S<b::Resource>, kind: ResKind) -> ign::Resource {
        self.gate(&r.local, V1_1, "local");
        self.gate(&r.http_headers, V1_1, "http_headers");
        if kind == ResKind::ConfigRef {
            self.gate(&r.compression, V1_1, "compression");
            self.gate(&r.inline, V1_1, "inline");
        }
        // Butane reports the last set field in the order local, inline, source.
        let set: Vec<&S<String>> = [&r.local, &r.inline, &r.source]
            .into_iter()
            .flatten()
            .collect();
        if set.len() > 1 {
            if let Some(last) = set.last() {
                self.error(
                    last.span(),
                    "only one of the following can be set: inline, local, source",
                );
            }
        }
        let mut out = ign::Resource {
            compression: st(&r.compression),
            http_headers: r
                .http_headers
                .as_ref()
                .map(|hs| {
                    hs.iter()
                        .map(|h| ign::HttpHeader {
                            name: (*h.name).clone(),
                            value: st(&h.value),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            source: st(&r.source),
            verification: ign::Verification {
                hash: r.verification.as_ref().and_then(|v| st(&v.hash)),
            },
        };
        let allow_gzip = !self.opts.no_resource_auto_compression;
        if let Some(local) = &r.local {
            if let Some(data) = self.read_local(local.span(), local.as_str()) {
                let d = make_data_url(&data, out.compression.as_deref(), allow_gzip);
                out.source = Some(d.url);
                if d.compression.is_some() {
                    out.compression = d.compression;
                }
            }
        }
        if let Some(inline) = &r.inline {
            if self.ver == V1_0 {
                out.source = Some(format!("data:,{}", escape(inline.as_bytes())));
            } else {
                let d = make_data_url(inline.as_bytes(), out.compression.as_deref(), allow_gzip);
                out.source = Some(d.url);
                if d.compression.is_some() {
                    out.compression = d.compression;
                }
            }
        }
        out
    }

    // ---------------------------------------------------------------- passwd

    fn passwd(&mut self, p: &b::Passwd, out: &mut ign::Passwd) {
        for g in &p.groups {
            self.gate(&g.should_exist, V1_2, "should_exist");
            out.groups.push(ign::PasswdGroup {
                gid: self.int(&g.gid),
                name: (*g.name).clone(),
                password_hash: st(&g.password_hash),
                should_exist: self.bo(&g.should_exist),
                system: self.bo(&g.system),
            });
        }
        for u in &p.users {
            self.gate(&u.should_exist, V1_2, "should_exist");
            let mut keys = strs(&u.ssh_authorized_keys);
            if self.gate(
                &u.ssh_authorized_keys_local,
                V1_5,
                "ssh_authorized_keys_local",
            ) {
                if let Some(locals) = &u.ssh_authorized_keys_local {
                    if !locals.is_empty() && !self.files.is_configured() {
                        self.error(locals.span(), Error::NoFilesDir.to_string());
                    } else {
                        for l in locals.iter() {
                            if let Some(data) = self.read_local(l.span(), l.as_str()) {
                                let text = String::from_utf8_lossy(&data);
                                for line in text.split('\n') {
                                    let line = line.strip_suffix('\r').unwrap_or(line);
                                    if !line.is_empty() {
                                        keys.push(line.to_string());
                                    }
                                }
                            }
                        }
                    }
                }
            }
            out.users.push(ign::PasswdUser {
                gecos: st(&u.gecos),
                groups: strs(&u.groups),
                home_dir: st(&u.home_dir),
                name: (*u.name).clone(),
                no_create_home: self.bo(&u.no_create_home),
                no_log_init: self.bo(&u.no_log_init),
                no_user_group: self.bo(&u.no_user_group),
                password_hash: st(&u.password_hash),
                primary_group: st(&u.primary_group),
                ssh_authorized_keys: keys,
                shell: st(&u.shell),
                should_exist: self.bo(&u.should_exist),
                system: self.bo(&u.system),
                uid: self.int(&u.uid),
            });
        }
    }

    // ---------------------------------------------------------------- storage

    fn owner(&mut self, o: &Option<S<b::NodeOwner>>) -> ign::NodeOwner {
        match o {
            Some(o) => ign::NodeOwner {
                id: self.int(&o.id),
                name: st(&o.name),
            },
            None => ign::NodeOwner::default(),
        }
    }

    fn mode(&mut self, m: &OInt, directory: bool) -> Option<i64> {
        let v = self.int(m)?;
        let m = m.as_ref()?;
        if !(0..=0o7777).contains(&v) {
            let d = self.error(m.span(), format!("illegal file mode {v}"));
            d.hint = Some("modes are written in octal with a leading zero, e.g. `0644`".into());
        } else if decimal_mode_looks_wrong(v, directory) {
            self.warn(
                m.span(),
                "unreasonable mode would be reasonable if specified in octal; remember to add a leading zero",
            );
        }
        Some(v)
    }

    fn path(&mut self, p: &S<String>) {
        if !p.starts_with('/') {
            self.error(p.span(), "path not absolute");
        } else if clean_path(p) != p.as_str() {
            let d = self.error(p.span(), "path is not fully simplified");
            d.hint = Some(format!("write it as `{}`", clean_path(p)));
        }
    }

    fn storage(&mut self, s: &b::Storage, out: &mut ign::Storage) {
        for d in &s.directories {
            self.path(&d.path);
            let mode = self.mode(&d.mode, true);
            out.directories.push(ign::Directory {
                group: self.owner(&d.group),
                overwrite: self.bo(&d.overwrite),
                path: (*d.path).clone(),
                user: self.owner(&d.user),
                mode,
            });
        }
        for d in &s.disks {
            let mut parts = Vec::new();
            for p in &d.partitions {
                self.gate(&p.resize, V1_2, "resize");
                if let Some(l) = &p.label {
                    if l.chars().count() > 36 {
                        self.error(l.span(), "partition labels may not exceed 36 characters");
                    }
                }
                parts.push(ign::Partition {
                    guid: st(&p.guid),
                    label: st(&p.label),
                    number: self.int(&p.number).unwrap_or(0),
                    resize: self.bo(&p.resize),
                    should_exist: self.bo(&p.should_exist),
                    size_mib: self.int(&p.size_mib),
                    start_mib: self.int(&p.start_mib),
                    type_guid: st(&p.type_guid),
                    wipe_partition_entry: self.bo(&p.wipe_partition_entry),
                });
            }
            out.disks.push(ign::Disk {
                device: (*d.device).clone(),
                partitions: parts,
                wipe_table: self.bo(&d.wipe_table),
            });
        }
        for f in &s.files {
            self.path(&f.path);
            let mut append = Vec::new();
            for r in &f.append {
                append.push(self.resource(r, ResKind::FileContents));
            }
            let contents = match &f.contents {
                Some(r) => self.resource(r, ResKind::FileContents),
                None => ign::Resource::default(),
            };
            let mode = self.mode(&f.mode, false);
            out.files.push(ign::File {
                group: self.owner(&f.group),
                overwrite: self.bo(&f.overwrite),
                path: (*f.path).clone(),
                user: self.owner(&f.user),
                append,
                contents,
                mode,
            });
        }
        for fs in &s.filesystems {
            self.gate(&fs.with_mount_unit, V1_1, "with_mount_unit");
            self.gate(&fs.mount_options, V1_1, "mount_options");
            if let Some(fmt) = &fs.format {
                let ok: &[&str] = if self.ver >= V1_4 {
                    &["ext4", "btrfs", "xfs", "vfat", "swap", "none", ""]
                } else {
                    &["ext4", "btrfs", "xfs", "vfat", "swap", ""]
                };
                if !ok.contains(&fmt.as_str()) {
                    let d = self.error(
                        fmt.span(),
                        format!("invalid filesystem format `{}`", fmt.as_str()),
                    );
                    d.hint = Some(format!("use one of: {}", ok[..ok.len() - 1].join(", ")));
                }
            }
            if let Some(p) = &fs.path {
                self.path(p);
            }
            out.filesystems.push(ign::Filesystem {
                device: (*fs.device).clone(),
                format: st(&fs.format),
                label: st(&fs.label),
                mount_options: fs
                    .mount_options
                    .as_ref()
                    .map(|m| strs(m))
                    .unwrap_or_default(),
                options: strs(&fs.options),
                path: st(&fs.path),
                uuid: st(&fs.uuid),
                wipe_filesystem: self.bo(&fs.wipe_filesystem),
            });
        }
        for l in &s.links {
            self.path(&l.path);
            out.links.push(ign::Link {
                group: self.owner(&l.group),
                overwrite: self.bo(&l.overwrite),
                path: (*l.path).clone(),
                user: self.owner(&l.user),
                hard: self.bo(&l.hard),
                target: st(&l.target),
            });
        }
        if self.gate(&s.luks, V1_2, "luks") {
            for l in s.luks.iter().flat_map(|v| v.iter()) {
                self.gate(&l.cex, V1_6, "cex");
                self.gate(&l.discard, V1_5, "discard");
                self.gate(&l.open_options, V1_5, "open_options");
                let clevis = match &l.clevis {
                    Some(c) => ign::Clevis {
                        custom: match &c.custom {
                            Some(c) => ign::ClevisCustom {
                                config: st(&c.config),
                                needs_network: self.bo(&c.needs_network),
                                pin: st(&c.pin),
                            },
                            None => ign::ClevisCustom::default(),
                        },
                        tang: self.tangs(&c.tang),
                        threshold: self.int(&c.threshold),
                        tpm2: self.bo(&c.tpm2),
                    },
                    None => ign::Clevis::default(),
                };
                let key_file = match &l.key_file {
                    Some(r) => self.resource(r, ResKind::Other),
                    None => ign::Resource::default(),
                };
                out.luks.push(ign::Luks {
                    cex: ign::Cex {
                        enabled: match &l.cex {
                            Some(c) => self.bo(&c.enabled),
                            None => None,
                        },
                    },
                    clevis,
                    device: st(&l.device),
                    discard: self.bo(&l.discard),
                    key_file,
                    label: st(&l.label),
                    name: (*l.name).clone(),
                    open_options: l.open_options.as_ref().map(|o| strs(o)).unwrap_or_default(),
                    options: strs(&l.options),
                    uuid: st(&l.uuid),
                    wipe_volume: self.bo(&l.wipe_volume),
                });
            }
        }
        for r in &s.raid {
            out.raid.push(ign::Raid {
                devices: strs(&r.devices),
                level: st(&r.level),
                name: (*r.name).clone(),
                options: strs(&r.options),
                spares: self.int(&r.spares),
            });
        }
        self.gate(&s.trees, V1_1, "trees");
    }

    fn tangs(&mut self, tangs: &[S<b::Tang>]) -> Vec<ign::Tang> {
        tangs
            .iter()
            .map(|t| {
                self.gate(&t.advertisement, V1_5, "advertisement");
                ign::Tang {
                    advertisement: st(&t.advertisement),
                    thumbprint: st(&t.thumbprint),
                    url: (*t.url).clone(),
                }
            })
            .collect()
    }

    // ---------------------------------------------------------------- systemd

    fn unit(&mut self, u: &S<b::Unit>) -> ign::Unit {
        let mut contents = st(&u.contents);
        if self.gate(&u.contents_local, V1_5, "contents_local") {
            if let Some(cl) = &u.contents_local {
                if u.contents.is_some() {
                    self.error(
                        cl.span(),
                        "only one of the following can be set: contents, contents_local",
                    );
                } else if !cl.is_empty() {
                    if let Some(data) = self.read_local(cl.span(), cl.as_str()) {
                        contents = Some(String::from_utf8_lossy(&data).into_owned());
                    }
                }
            }
        }
        if !UNIT_SUFFIXES.iter().any(|s| u.name.ends_with(s)) {
            let d = self.error(u.name.span(), "invalid systemd unit extension");
            d.hint = Some(
                "a unit name ends in .service, .socket, .mount, .timer, .target, .path, ...".into(),
            );
        }
        let mut dropins = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for d in &u.dropins {
            let mut dc = st(&d.contents);
            if self.gate(&d.contents_local, V1_5, "contents_local") {
                if let Some(cl) = &d.contents_local {
                    if d.contents.is_some() {
                        self.error(
                            cl.span(),
                            "only one of the following can be set: contents, contents_local",
                        );
                    } else if !cl.is_empty() {
                        if let Some(data) = self.read_local(cl.span(), cl.as_str()) {
                            dc = Some(String::from_utf8_lossy(&data).into_owned());
                        }
                    }
                }
            }
            if !d.name.ends_with(".conf") {
                self.error(d.name.span(), "invalid systemd unit drop-in extension");
            }
            let line = self.loc(d.name.span()).line;
            if let Some(first) = seen.insert((*d.name).clone(), line) {
                self.error(
                    d.name.span(),
                    format!(
                        "duplicate drop-in `{}` (first defined at line {first})",
                        d.name.as_str()
                    ),
                );
            }
            dropins.push(ign::Dropin {
                contents: dc,
                name: (*d.name).clone(),
            });
        }
        ign::Unit {
            contents,
            dropins,
            enabled: self.bo(&u.enabled),
            mask: self.bo(&u.mask),
            name: (*u.name).clone(),
        }
    }

    // ---------------------------------------------------------------- mount units

    fn mount_units(&mut self, cfg: &b::Config, out: &mut ign::Config) {
        let Some(storage) = &cfg.storage else { return };
        let luks: Vec<&S<b::Luks>> = storage.luks.iter().flat_map(|v| v.iter()).collect();
        let mut rendered = ign::Config::default();
        for fs in &storage.filesystems {
            let Some(wmu) = &fs.with_mount_unit else {
                continue;
            };
            if !self.is_true(&fs.with_mount_unit) || self.ver < V1_1 {
                continue;
            }
            let format = st(&fs.format).unwrap_or_default();
            if format.is_empty() {
                self.error(wmu.span(), "format is required if with_mount_unit is true");
                continue;
            }
            if format == "swap" && self.ver < V1_4 {
                let d = self.error(
                    wmu.span(),
                    "with_mount_unit for a swap area is not supported by this version",
                );
                d.hint = Some("swap units need `version: 1.4.0` or later".into());
                continue;
            }
            if format != "swap" && fs.path.is_none() {
                self.error(
                    wmu.span(),
                    "path is required if with_mount_unit is true and format is not swap",
                );
                continue;
            }
            let device = fs.device.as_str();
            let remote = (device.starts_with("/dev/mapper/")
                || device.starts_with("/dev/disk/by-id/dm-name-"))
                && luks.iter().any(|l| {
                    (device == format!("/dev/mapper/{}", l.name.as_str())
                        || device == format!("/dev/disk/by-id/dm-name-{}", l.name.as_str()))
                        && l.clevis.as_ref().is_some_and(|c| !c.tang.is_empty())
                });
            let mount_options = fs
                .mount_options
                .as_ref()
                .map(|m| strs(m))
                .unwrap_or_default();
            let path = st(&fs.path);
            let (name, text) = mount_unit(&MountUnitInput {
                device,
                path: path.as_deref(),
                format: &format,
                mount_options: &mount_options,
                remote,
            });
            rendered.systemd.units.push(ign::Unit {
                name,
                enabled: Some(true),
                contents: Some(text),
                ..ign::Unit::default()
            });
        }
        if !rendered.systemd.units.is_empty() {
            *out = merge_two(&rendered, out);
        }
    }

    // ---------------------------------------------------------------- trees

    fn trees(&mut self, cfg: &b::Config, out: &mut ign::Config) {
        let Some(trees) = cfg.storage.as_ref().and_then(|s| s.trees.as_ref()) else {
            return;
        };
        if self.ver < V1_1 {
            return;
        }
        for tree in trees.iter() {
            if !self.files.is_configured() {
                self.error(tree.span(), Error::NoFilesDir.to_string());
                return;
            }
            let Some(local) = tree.local.as_ref().filter(|l| !l.is_empty()) else {
                self.error(tree.span(), "local is required");
                continue;
            };
            let rel = match resolve_local(local) {
                Ok(r) => r,
                Err(e) => {
                    self.error(local.span(), e.to_string());
                    continue;
                }
            };
            let entries = match self.files.list_tree(&rel) {
                Ok(e) => e,
                Err(e) => {
                    self.error(local.span(), e.to_string());
                    continue;
                }
            };
            let base = st(&tree.path)
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".to_string());
            for entry in entries {
                let dest = clean_path(&format!("{base}/{}", entry.path));
                match entry.kind {
                    TreeEntryKind::Directory => {}
                    TreeEntryKind::File { executable } => {
                        let idx = match out.storage.files.iter().position(|f| f.path == dest) {
                            Some(i) => {
                                if out.storage.files[i]
                                    .contents
                                    .source
                                    .as_deref()
                                    .is_some_and(|s| !s.is_empty())
                                {
                                    self.node_exists(tree.span(), &dest);
                                    continue;
                                }
                                i
                            }
                            None => {
                                if out.storage.directories.iter().any(|d| d.path == dest)
                                    || out.storage.links.iter().any(|l| l.path == dest)
                                {
                                    self.node_exists(tree.span(), &dest);
                                    continue;
                                }
                                out.storage.files.push(ign::File {
                                    path: dest.clone(),
                                    ..ign::File::default()
                                });
                                out.storage.files.len() - 1
                            }
                        };
                        let src = if rel.is_empty() {
                            entry.path.clone()
                        } else {
                            format!("{rel}/{}", entry.path)
                        };
                        let data = match self.files.read(&src) {
                            Ok(d) => d,
                            Err(e) => {
                                self.error(tree.span(), e.to_string());
                                continue;
                            }
                        };
                        let file = &mut out.storage.files[idx];
                        let d = make_data_url(
                            &data,
                            file.contents.compression.as_deref(),
                            !self.opts.no_resource_auto_compression,
                        );
                        file.contents.source = Some(d.url);
                        if d.compression.is_some() {
                            file.contents.compression = d.compression;
                        }
                        if file.mode.is_none() {
                            file.mode = Some(if executable { 0o755 } else { 0o644 });
                        }
                    }
                    TreeEntryKind::Symlink { target } => {
                        match out.storage.links.iter().position(|l| l.path == dest) {
                            Some(i) => {
                                if out.storage.links[i]
                                    .target
                                    .as_deref()
                                    .is_some_and(|t| !t.is_empty())
                                {
                                    self.node_exists(tree.span(), &dest);
                                    continue;
                                }
                                out.storage.links[i].target = Some(target);
                            }
                            None => {
                                if out.storage.directories.iter().any(|d| d.path == dest)
                                    || out.storage.files.iter().any(|f| f.path == dest)
                                {
                                    self.node_exists(tree.span(), &dest);
                                    continue;
                                }
                                out.storage.links.push(ign::Link {
                                    path: dest,
                                    target: Some(target),
                                    ..ign::Link::default()
                                });
                            }
                        }
                    }
                    TreeEntryKind::Other => {
                        let d = self.error(
                            tree.span(),
                            "trees may only contain files, directories, and symlinks",
                        );
                        d.hint = Some(format!("{} is a special file", entry.path));
                    }
                }
            }
        }
    }

    fn node_exists(&mut self, span: &Span, dest: &str) {
        let d = self.error(
            span,
            "matching filesystem node has existing contents or different type",
        );
        d.hint = Some(format!("{dest} is already defined in the config"));
    }

    // ---------------------------------------------------------------- boot_device

    fn boot_device(&mut self, cfg: &b::Config, out: &mut ign::Config) {
        let Some(bd) = &cfg.boot_device else { return };
        if self.ver < V1_3 {
            return;
        }
        let empty_luks = b::BootDeviceLuks::default();
        let luks = bd.luks.as_deref().unwrap_or(&empty_luks);
        if let Some(l) = &bd.luks {
            self.gate(&l.discard, V1_5, "discard");
            self.gate(&l.cex, V1_6, "cex");
            self.gate(&l.device, V1_6, "device");
        }
        let mirror: Vec<String> = bd
            .mirror
            .as_ref()
            .map(|m| strs(&m.devices))
            .unwrap_or_default();
        let layout = st(&bd.layout);
        let mut layouts = vec!["aarch64", "ppc64le", "x86_64"];
        if self.ver >= V1_6 {
            layouts.extend(["s390x-eckd", "s390x-virt", "s390x-zfcp"]);
        }
        let mut bad = false;
        if let Some(l) = &bd.layout {
            if !layouts.contains(&l.as_str()) {
                self.error(
                    l.span(),
                    format!("layout must be one of: {}", layouts.join(", ")),
                );
                bad = true;
            } else if l.starts_with("s390x") {
                let dev = st(&luks.device).unwrap_or_default();
                let re_ok = match l.as_str() {
                    "s390x-eckd" => dev.strip_prefix("/dev/dasd").is_some_and(one_lower),
                    "s390x-zfcp" => dev.strip_prefix("/dev/sd").is_some_and(one_lower),
                    _ => true,
                };
                if l.as_str() != "s390x-virt" && dev.is_empty() {
                    self.error(
                        l.span(),
                        "boot_device.luks.device is required for this layout",
                    );
                    bad = true;
                } else if !re_ok {
                    self.error(
                        l.span(),
                        "boot_device.luks.device does not name a disk this layout can use",
                    );
                    bad = true;
                }
                if !mirror.is_empty() {
                    self.error(l.span(), "mirroring is not supported for s390x layouts");
                    bad = true;
                }
            }
        }
        if let Some(m) = &bd.mirror {
            if m.devices.len() == 1 {
                self.error(m.span(), "mirroring requires at least two devices");
                bad = true;
            }
        }
        let cex = match &luks.cex {
            Some(c) => self.is_true(&c.enabled),
            None => false,
        };
        let want_luks = self.is_true(&luks.tpm2) || !luks.tang.is_empty() || cex;
        let want_mirror = !mirror.is_empty();
        if bad || (!want_luks && !want_mirror) {
            return;
        }
        let layout = layout.as_deref().unwrap_or("x86_64");
        let (bios, efi, prep) = match layout {
            "x86_64" => (true, true, false),
            "aarch64" => (false, true, false),
            "ppc64le" => (false, false, true),
            _ => (false, false, false),
        };
        let mut r = ign::Config::default();
        let p = |label: String, size: Option<i64>, ty: Option<&str>| ign::Partition {
            label: Some(label),
            size_mib: size,
            type_guid: ty.map(str::to_string),
            ..ign::Partition::default()
        };
        const RESERVED: &str = "8DA63339-0007-60C0-C436-083AC8230908";
        const BIOS: &str = "21686148-6449-6E6F-744E-656564454649";
        const PREP: &str = "9E1A2D38-C612-4316-AA26-8B49521E5A8B";
        const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        if want_mirror {
            for (i, dev) in mirror.iter().enumerate() {
                let n = i + 1;
                let mut parts = Vec::new();
                if bios {
                    parts.push(p(format!("bios-{n}"), Some(1), Some(BIOS)));
                } else if prep {
                    parts.push(p(format!("prep-{n}"), Some(4), Some(PREP)));
                } else {
                    parts.push(p(format!("reserved-{n}"), Some(1), Some(RESERVED)));
                }
                if efi {
                    parts.push(p(format!("esp-{n}"), Some(127), Some(ESP)));
                } else {
                    parts.push(p(format!("reserved-{n}"), Some(1), Some(RESERVED)));
                }
                parts.push(p(format!("boot-{n}"), Some(384), None));
                parts.push(p(format!("root-{n}"), None, None));
                r.storage.disks.push(ign::Disk {
                    device: dev.clone(),
                    partitions: parts,
                    wipe_table: Some(true),
                });
                if efi {
                    r.storage.filesystems.push(ign::Filesystem {
                        device: format!("/dev/disk/by-partlabel/esp-{n}"),
                        format: Some("vfat".into()),
                        label: Some(format!("esp-{n}")),
                        wipe_filesystem: Some(true),
                        ..ign::Filesystem::default()
                    });
                }
            }
            let devs = |prefix: &str| -> Vec<String> {
                (1..=mirror.len())
                    .map(|i| format!("/dev/disk/by-partlabel/{prefix}-{i}"))
                    .collect()
            };
            r.storage.raid = vec![
                ign::Raid {
                    devices: devs("boot"),
                    level: Some("raid1".into()),
                    name: "md-boot".into(),
                    options: vec!["--metadata=1.0".into()],
                    spares: None,
                },
                ign::Raid {
                    devices: devs("root"),
                    level: Some("raid1".into()),
                    name: "md-root".into(),
                    ..ign::Raid::default()
                },
            ];
            r.storage.filesystems.push(ign::Filesystem {
                device: "/dev/md/md-boot".into(),
                format: Some("ext4".into()),
                label: Some("boot".into()),
                wipe_filesystem: Some(true),
                ..ign::Filesystem::default()
            });
        }
        if want_luks {
            let dev = st(&luks.device).unwrap_or_default();
            let luks_device = match layout {
                "s390x-eckd" => format!("{dev}2"),
                "s390x-zfcp" => format!("{dev}4"),
                _ if want_mirror => "/dev/md/md-root".to_string(),
                _ => "/dev/disk/by-partlabel/root".to_string(),
            };
            let mut entry = ign::Luks {
                device: Some(luks_device),
                discard: self.bo(&luks.discard),
                label: Some("luks-root".into()),
                name: "root".into(),
                wipe_volume: Some(true),
                ..ign::Luks::default()
            };
            if cex {
                entry.cex.enabled = Some(true);
            } else {
                entry.clevis = ign::Clevis {
                    tang: self.tangs(&luks.tang),
                    threshold: self.int(&luks.threshold),
                    tpm2: self.bo(&luks.tpm2),
                    ..ign::Clevis::default()
                };
            }
            r.storage.luks = vec![entry];
        }
        r.storage.filesystems.push(ign::Filesystem {
            device: if want_luks {
                "/dev/mapper/root"
            } else {
                "/dev/md/md-root"
            }
            .into(),
            format: Some("xfs".into()),
            label: Some("root".into()),
            wipe_filesystem: Some(true),
            ..ign::Filesystem::default()
        });
        *out = merge_two(&r, out);
    }

    // ---------------------------------------------------------------- grub

    fn grub(&mut self, cfg: &b::Config, out: &mut ign::Config) {
        let Some(grub) = &cfg.grub else { return };
        if self.ver < V1_5 || grub.users.is_empty() {
            return;
        }
        let mut names = Vec::new();
        let mut cmds = Vec::new();
        for u in &grub.users {
            let name = st(&u.name).unwrap_or_default();
            let hash = st(&u.password_hash).unwrap_or_default();
            if name.is_empty() {
                self.error(u.span(), "grub user name is required");
            }
            if hash.is_empty() {
                self.error(u.span(), "grub user password_hash is required");
            }
            cmds.push(format!("password_pbkdf2 {name} {hash}"));
            names.push(name);
        }
        let text = format!(
            "# Generated by Butane\n\nset superusers=\"{}\"\n{}\n",
            names.join(" "),
            cmds.join("\n")
        );
        let d = make_data_url(
            text.as_bytes(),
            None,
            !self.opts.no_resource_auto_compression,
        );
        let mut r = ign::Config::default();
        r.storage.filesystems.push(ign::Filesystem {
            device: "/dev/disk/by-label/boot".into(),
            format: Some("ext4".into()),
            path: Some("/boot".into()),
            ..ign::Filesystem::default()
        });
        r.storage.files.push(ign::File {
            path: "/boot/grub2/user.cfg".into(),
            append: vec![ign::Resource {
                source: Some(d.url),
                compression: d.compression,
                ..ign::Resource::default()
            }],
            ..ign::File::default()
        });
        *out = merge_two(&r, out);
    }

    // ---------------------------------------------------------------- output checks

    fn validate_output(&mut self, cfg: &b::Config, out: &ign::Config) {
        let Some(storage) = &cfg.storage else {
            self.validate_units_dups(cfg);
            self.validate_passwd_dups(cfg);
            return;
        };
        // One key space for files, directories and links, as Ignition's duplicate check.
        let mut nodes: HashMap<&str, (usize, &str)> = HashMap::new();
        let all = storage
            .files
            .iter()
            .map(|f| (&f.path, "file"))
            .chain(storage.directories.iter().map(|d| (&d.path, "directory")))
            .chain(storage.links.iter().map(|l| (&l.path, "link")));
        let mut dups = Vec::new();
        for (p, kind) in all {
            let line = self.loc(p.span()).line;
            if let Some((first, fkind)) = nodes.insert(p.as_str(), (line, kind)) {
                dups.push((*p.span(), p.as_str().to_string(), kind, first, fkind));
            }
        }
        for (span, path, kind, first, fkind) in dups {
            let d = self.error(
                &span,
                format!("duplicate path {path}: this {kind} is already defined as a {fkind} at line {first}"),
            );
            d.hint = Some("each path may appear once among files, directories and links".into());
        }
        self.dups(storage.disks.iter().map(|d| &d.device), "disk device");
        self.dups(
            storage.filesystems.iter().map(|f| &f.device),
            "filesystem device",
        );
        self.dups(storage.raid.iter().map(|r| &r.name), "RAID name");
        self.dups(
            storage.luks.iter().flat_map(|l| l.iter()).map(|l| &l.name),
            "LUKS name",
        );
        for d in &storage.disks {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for p in &d.partitions {
                let (key, span) = match (&p.number, &p.label) {
                    (Some(n), _) if matches!(n.0, Ok(v) if v != 0) => {
                        (format!("number {}", n.0.clone().unwrap_or(0)), n.span())
                    }
                    (_, Some(l)) => (format!("label {}", l.as_str()), l.span()),
                    _ => continue,
                };
                let line = self.loc(span).line;
                if let Some(first) = seen.insert(key.clone(), line) {
                    let span = *span;
                    self.error(
                        &span,
                        format!("duplicate partition {key} (first defined at line {first})"),
                    );
                }
            }
        }
        // Links need a target from 3.3.0 on (Ignition's `ErrLinkTargetRequired`).
        for l in &storage.links {
            let has_target = out.storage.links.iter().any(|o| {
                o.path == l.path.as_str() && o.target.as_deref().is_some_and(|t| !t.is_empty())
            });
            if !has_target {
                self.error(l.path.span(), "link target is required");
            }
        }
        for f in &storage.files {
            let has_source = out
                .storage
                .files
                .iter()
                .any(|o| o.path == f.path.as_str() && o.contents.source.is_some());
            if self.is_true(&f.overwrite) && !has_source {
                self.error(
                    f.path.span(),
                    "overwrite must be false if source is unspecified",
                );
            }
        }
        self.validate_units_dups(cfg);
        self.validate_passwd_dups(cfg);
        self.validate_resources(out);
    }

    fn dups<'s>(&mut self, items: impl Iterator<Item = &'s S<String>>, what: &str) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut errs = Vec::new();
        for it in items {
            let line = self.loc(it.span()).line;
            if let Some(first) = seen.insert(it.as_str(), line) {
                errs.push((
                    *it.span(),
                    format!(
                        "duplicate {what} `{}` (first defined at line {first})",
                        it.as_str()
                    ),
                ));
            }
        }
        for (span, msg) in errs {
            self.error(&span, msg);
        }
    }

    fn validate_units_dups(&mut self, cfg: &b::Config) {
        if let Some(s) = &cfg.systemd {
            self.dups(s.units.iter().map(|u| &u.name), "unit");
        }
    }

    fn validate_passwd_dups(&mut self, cfg: &b::Config) {
        if let Some(p) = &cfg.passwd {
            self.dups(p.users.iter().map(|u| &u.name), "user");
            self.dups(p.groups.iter().map(|g| &g.name), "group");
        }
        if let Some(k) = &cfg.kernel_arguments {
            self.dups(
                k.should_exist.iter().chain(k.should_not_exist.iter()),
                "kernel argument",
            );
        }
    }

    /// Compression and hash formats on every resource (Ignition's `ErrCompressionInvalid`,
    /// `ErrHashMalformed`); reported at the start of the file since they may be generated.
    fn validate_resources(&mut self, out: &ign::Config) {
        let mut all: Vec<&ign::Resource> = Vec::new();
        all.extend(out.ignition.config.merge.iter());
        all.push(&out.ignition.config.replace);
        all.extend(out.ignition.security.tls.certificate_authorities.iter());
        for f in &out.storage.files {
            all.push(&f.contents);
            all.extend(f.append.iter());
        }
        for l in &out.storage.luks {
            all.push(&l.key_file);
        }
        let mut msgs = Vec::new();
        for r in all {
            if let Some(c) = r.compression.as_deref() {
                if !c.is_empty() && c != "gzip" {
                    msgs.push(format!(
                        "invalid compression method `{c}`; only `gzip` is supported"
                    ));
                }
            }
            if let Some(h) = r.verification.hash.as_deref() {
                let ok = match h.split_once('-') {
                    Some(("sha512", hex)) => {
                        hex.len() == 128 && hex.bytes().all(|b| b.is_ascii_hexdigit())
                    }
                    Some(("sha256", hex)) => {
                        self.ver >= V1_1
                            && hex.len() == 64
                            && hex.bytes().all(|b| b.is_ascii_hexdigit())
                    }
                    _ => false,
                };
                if !ok {
                    msgs.push(format!("malformed verification hash `{h}`; expected sha512-<128 hex> or sha256-<64 hex>"));
                }
            }
            if let Some(src) = r.source.as_deref() {
                let scheme = src.split_once(':').map(|(s, _)| s).unwrap_or("");
                let mut ok = vec!["http", "https", "tftp", "s3", "data"];
                if self.ver >= V1_2 {
                    ok.push("gs");
                }
                if self.ver >= V1_5 {
                    ok.push("arn");
                }
                if !src.is_empty() && !ok.contains(&scheme) {
                    msgs.push(format!("invalid url scheme in `{src}`"));
                }
            }
        }
        let start = Location::file(self.file);
        for m in msgs {
            self.diags.push(Diagnostic::error(start.clone(), m));
        }
    }
}

fn one_lower(rest: &str) -> bool {
    rest.len() == 1 && rest.bytes().all(|b| b.is_ascii_lowercase())
}

/// Butane's `CheckForDecimalMode`: true when `mode` is odd as octal but would be typical if
/// its decimal digits were read as octal (e.g. `644`).
fn decimal_mode_looks_wrong(mode: i64, directory: bool) -> bool {
    let Some(corrected) = decimal_mode_to_octal(mode) else {
        return false;
    };
    !is_typical_mode(mode, directory) && is_typical_mode(corrected, directory)
}

fn decimal_mode_to_octal(mode: i64) -> Option<i64> {
    if !(0..=7777).contains(&mode) {
        return None;
    }
    let mut ret = 0;
    let mut divisor = 1000;
    while divisor > 0 {
        let digit = (mode / divisor) % 10;
        if digit > 7 {
            return None;
        }
        ret = (ret << 3) | digit;
        divisor /= 10;
    }
    Some(ret)
}

fn is_typical_mode(mode: i64, directory: bool) -> bool {
    if mode == 0 {
        return true;
    }
    let perms = [mode & 0o7, (mode & 0o70) >> 3, (mode & 0o700) >> 6];
    let (mut had_r, mut had_w, mut had_x) = (false, false, false);
    for perm in perms {
        let r = perm & 4 != 0;
        let w = perm & 2 != 0;
        let x = perm & 1 != 0;
        if (!r && had_r) || (!w && had_w) || (!x && had_x) {
            return false;
        }
        if x && had_r && !had_x {
            return false;
        }
        if (w || x) && !r {
            return false;
        }
        had_r |= r;
        had_w |= w;
        had_x |= x;
    }
    if !had_r {
        return false;
    }
    if directory {
        if !had_x || mode & 0o4000 != 0 || (mode & 0o3000 != 0 && !had_w) {
            return false;
        }
    } else {
        if mode & 0o6000 != 0 && (!had_x || mode & 2 != 0) {
            return false;
        }
        if mode & 0o1000 != 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decimal_modes_are_spotted() {
        assert!(decimal_mode_looks_wrong(644, false));
        assert!(decimal_mode_looks_wrong(755, true));
        assert!(!decimal_mode_looks_wrong(0o644, false));
        assert!(!decimal_mode_looks_wrong(0o755, true));
        assert!(!decimal_mode_looks_wrong(0, false));
        assert!(!decimal_mode_looks_wrong(0o600, false));
    }
}
