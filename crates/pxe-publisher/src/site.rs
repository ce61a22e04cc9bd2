//! A generation as a static web site, for a plain web server that knows
//! nothing of Slipway (the homelab pattern: an OpenWRT router serving HTTP
//! and TFTP). Pure: builds the files, uploads nothing.
//!
//! Layout, relative to the folder the web server serves at `base_url`:
//!
//! ```text
//! boot.ipxe                 chain ipxe/${net0/mac:hexhyp}.ipxe, else unknown.ipxe
//! unknown.ipxe              what MACs without a file get (the generation's policy)
//! localboot.ipxe            exit to the local disk
//! manifest.json             the generation's (non-secret) manifest
//! ipxe/<aa-bb-cc-dd-ee-ff>.ipxe   one per known MAC, see below
//! ignition/<node>.ign       only with secrets allowed, mode 0600
//! artifacts/<sha256>/<name> referenced, not produced here (see [`site_artifact_path`])
//! ```
//!
//! A static server cannot hold one-shot state, so the per-MAC scripts come in
//! two kinds:
//!
//! * **Secrets not allowed** (`ignitions: None`, the default): every known
//!   MAC's script chains to Slipway's own server (`<generation base
//!   URL>/ipxe?mac=<mac>`), which decides install or localboot, fills in the
//!   one-shot token, and serves the Ignition once. No secret leaves Slipway;
//!   Slipway's server must be reachable from the nodes. If it is not, the
//!   chain fails and the script exits to the local disk.
//! * **Secrets allowed** (`ignitions: Some(map)`): the MACs of the nodes in
//!   the map get a complete install script whose artifacts and Ignition come
//!   from the site itself (`ignition/<node>.ign`, mode 0600 — the web server
//!   must run as the uploading user, as OpenWRT's uhttpd does as root). The
//!   other nodes' MACs get localboot. A static file cannot fall back to
//!   localboot by itself after the fetch: a node in the map reinstalls on
//!   **every** network boot until a publish leaves it out, so pass only the
//!   nodes to (re)install, and publish again without them once they are up.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroizing;

use crate::error::{PublishError, Result};
use crate::generation::Generation;
use crate::ipxe::{self, InstallParams, MAGIC};
use crate::types::{ArtifactRef, BaseUrl, MacAddr, SecretIgnition};

/// Folder of the site that must hold the artifacts, content-addressed.
pub const SITE_ARTIFACTS_DIR: &str = "artifacts";

/// Mode of every non-secret file of the site.
pub const PUBLIC_MODE: u32 = 0o644;

/// Mode of the Ignition files (secrets allowed only).
pub const SECRET_MODE: u32 = 0o600;

/// One file of a static boot site.
pub struct SiteFile {
    /// Path relative to the site's folder, `/`-separated.
    pub path: String,
    /// Contents; zeroized on drop (Ignition files hold secrets).
    pub bytes: Zeroizing<Vec<u8>>,
    /// Exact permission bits: [`PUBLIC_MODE`] or, for Ignition, [`SECRET_MODE`].
    pub mode: u32,
    /// Whether the bytes are secret (an Ignition config).
    pub secret: bool,
}

impl fmt::Debug for SiteFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .field("secret", &self.secret)
            .finish()
    }
}

impl SiteFile {
    fn public(path: impl Into<String>, text: String) -> Self {
        SiteFile {
            path: path.into(),
            bytes: Zeroizing::new(text.into_bytes()),
            mode: PUBLIC_MODE,
            secret: false,
        }
    }
}

/// Where the site must hold `artifact`: `artifacts/<sha256>/<name>`.
pub fn site_artifact_path(artifact: &ArtifactRef) -> String {
    format!("{SITE_ARTIFACTS_DIR}/{}", artifact.store_path())
}

/// Path of a MAC's script inside the site.
pub fn site_script_path(mac: &MacAddr) -> String {
    format!("ipxe/{}.ipxe", mac.hyphenated())
}

/// The site's `boot.ipxe`: chain to the MAC's own file; a MAC without one
/// (404) gets `unknown.ipxe`.
pub fn site_chain_script(base_url: &BaseUrl) -> String {
    format!(
        "{MAGIC}\nchain {} || chain {}\n",
        base_url.join("/ipxe/${net0/mac:hexhyp}.ipxe"),
        base_url.join("/unknown.ipxe"),
    )
}

/// Builds the static site for `generation`, served by a plain web server at
/// `base_url`. `ignitions` (node name → rendered Ignition) is `Some` only
/// when secrets may leave Slipway; see the [module docs](self) for what each
/// choice serves. Every Ignition handed in must be the one the generation
/// was rendered with (checked by digest). Pure.
pub fn static_site(
    generation: &Generation,
    ignitions: Option<&BTreeMap<String, SecretIgnition>>,
    base_url: &BaseUrl,
) -> Result<Vec<SiteFile>> {
    let manifest = generation.manifest();
    if let Some(map) = ignitions {
        for (node, ign) in map {
            let entry = generation
                .node(node)
                .ok_or_else(|| PublishError::UnknownNode(node.clone()))?;
            if entry.ignition_sha256 != ign.sha256() {
                return Err(PublishError::IgnitionMismatch {
                    node: node.clone(),
                    expected: entry.ignition_sha256,
                });
            }
        }
    }
    let manifest_json =
        serde_json::to_string_pretty(manifest).map_err(|e| PublishError::CorruptManifest {
            path: "manifest.json".into(),
            source: e,
        })?;
    let mut files = vec![
        SiteFile::public("boot.ipxe", site_chain_script(base_url)),
        SiteFile::public("unknown.ipxe", generation.unknown_script().to_string()),
        SiteFile::public("localboot.ipxe", generation.localboot_script().to_string()),
        SiteFile::public("manifest.json", manifest_json + "\n"),
    ];
    let mut scripts: BTreeMap<MacAddr, String> = BTreeMap::new();
    for node in &manifest.nodes {
        let script = match ignitions {
            None => None,
            Some(map) if map.contains_key(&node.name) => {
                let params = InstallParams {
                    base: base_url,
                    node: &node.name,
                    install_device: &node.install_device,
                    kargs: &node.kargs,
                    artifacts: &manifest.artifacts,
                };
                let url = base_url.join(&format!("/ignition/{}.ign", node.name));
                Some(ipxe::install_script_with_ignition_url(&params, &url)?)
            }
            Some(_) => Some(generation.localboot_script().to_string()),
        };
        for mac in &node.macs {
            let body = match &script {
                Some(s) => s.clone(),
                None => via_slipway_script(&manifest.base_url, mac),
            };
            scripts.insert(*mac, body);
        }
    }
    for (mac, body) in scripts {
        files.push(SiteFile::public(site_script_path(&mac), body));
    }
    if let Some(map) = ignitions {
        for (node, ign) in map {
            files.push(SiteFile {
                path: format!("ignition/{node}.ign"),
                bytes: Zeroizing::new(ign.expose().to_vec()),
                mode: SECRET_MODE,
                secret: true,
            });
        }
    }
    Ok(files)
}

/// A known MAC's script when no secret may leave Slipway: ask Slipway's own
/// server; if it cannot be reached, hand back to the firmware.
fn via_slipway_script(slipway: &BaseUrl, mac: &MacAddr) -> String {
    format!(
        "{MAGIC}\necho slipway: asking {server} for this machine's boot script\n\
chain {url} || exit\n",
        server = slipway.as_str(),
        url = slipway.join(&format!("/ipxe?mac={}", mac.hyphenated())),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::generation::{render_generation, GenerationId};
    use crate::test_support::sample_input;

    fn generation() -> (Generation, crate::GenerationInput) {
        let input = sample_input("c0ffee");
        let id = GenerationId::parse("00000001-c0ffee").unwrap();
        (render_generation(&input, id, 0).unwrap(), input)
    }

    fn router() -> BaseUrl {
        BaseUrl::parse("http://192.168.1.1/slipway").unwrap()
    }

    fn by_path(files: &[SiteFile]) -> BTreeMap<&str, (&str, u32)> {
        files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    (std::str::from_utf8(&f.bytes).unwrap(), f.mode),
                )
            })
            .collect()
    }

    #[test]
    fn without_secrets_every_known_mac_asks_slipway_and_no_secret_is_in_the_site() {
        let (g, input) = generation();
        let files = static_site(&g, None, &router()).unwrap();
        let site = by_path(&files);
        let paths: Vec<&str> = site.keys().copied().collect();
        assert_eq!(
            paths,
            [
                "boot.ipxe",
                "ipxe/52-54-00-00-00-01.ipxe",
                "ipxe/52-54-00-00-00-02.ipxe",
                "ipxe/52-54-00-00-00-03.ipxe",
                "localboot.ipxe",
                "manifest.json",
                "unknown.ipxe",
            ]
        );
        assert_eq!(
            site["boot.ipxe"].0,
            "#!ipxe\nchain http://192.168.1.1/slipway/ipxe/${net0/mac:hexhyp}.ipxe \
|| chain http://192.168.1.1/slipway/unknown.ipxe\n"
        );
        assert_eq!(
            site["ipxe/52-54-00-00-00-03.ipxe"].0,
            "#!ipxe\necho slipway: asking http://10.0.2.2:8080 for this machine's boot script\n\
chain http://10.0.2.2:8080/ipxe?mac=52-54-00-00-00-03 || exit\n"
        );
        for f in &files {
            assert_eq!(f.mode, PUBLIC_MODE, "{}", f.path);
            assert!(!f.secret);
            let text = String::from_utf8_lossy(&f.bytes);
            assert!(text.starts_with("#!ipxe\n") || f.path == "manifest.json");
            for n in &input.nodes {
                let secret = std::str::from_utf8(n.ignition.expose()).unwrap();
                assert!(!text.contains(secret), "{}", f.path);
            }
            assert!(!text.contains("SECRET-K3S-TOKEN"), "{}", f.path);
            assert!(!text.contains(ipxe::TOKEN_PLACEHOLDER), "{}", f.path);
        }
    }

    #[test]
    fn with_secrets_the_chosen_nodes_install_from_the_site_and_the_others_localboot() {
        let (g, input) = generation();
        let w1 = &input.nodes[1];
        let map = BTreeMap::from([(w1.name.clone(), w1.ignition.clone())]);
        let files = static_site(&g, Some(&map), &router()).unwrap();
        let site = by_path(&files);
        let ign = &site["ignition/w1.ign"];
        assert_eq!(ign.0.as_bytes(), w1.ignition.expose());
        assert_eq!(ign.1, 0o600);
        assert!(
            files
                .iter()
                .find(|f| f.path == "ignition/w1.ign")
                .unwrap()
                .secret
        );
        assert!(!site.contains_key("ignition/cp1.ign"));
        // Both of w1's MACs install, from the router alone.
        let h = |n: &str| crate::Sha256Digest::of(n.as_bytes()).to_hex();
        for mac in ["52-54-00-00-00-02", "52-54-00-00-00-03"] {
            let script = site[format!("ipxe/{mac}.ipxe").as_str()].0;
            assert_eq!(
                script,
                format!(
                    "#!ipxe\necho slipway: installing Fedora CoreOS on w1\n\
kernel http://192.168.1.1/slipway/artifacts/{k}/kernel initrd=initramfs.img ignition.firstboot \
ignition.platform.id=metal coreos.inst.install_dev=/dev/vda \
coreos.inst.image_url=http://192.168.1.1/slipway/artifacts/{m}/metal.raw.xz \
coreos.inst.ignition_url=http://192.168.1.1/slipway/ignition/w1.ign \
coreos.live.rootfs_url=http://192.168.1.1/slipway/artifacts/{r}/rootfs.img \
coreos.inst.save_partlabel=var rd.neednet=1 ip=dhcp console=tty0 console=ttyS0,115200n8 \
slipway.test=1\ninitrd http://192.168.1.1/slipway/artifacts/{i}/initramfs.img\nboot\n",
                    k = h("kernel"),
                    m = h("metal.raw.xz"),
                    r = h("rootfs.img"),
                    i = h("initramfs.img"),
                )
            );
        }
        // cp1 was not chosen: localboot, not a chain to Slipway.
        assert_eq!(site["ipxe/52-54-00-00-00-01.ipxe"].0, g.localboot_script());
        // The secret is only in the 0600 file.
        for f in files.iter().filter(|f| !f.secret) {
            assert!(!String::from_utf8_lossy(&f.bytes).contains("SECRET-K3S-TOKEN"));
            assert_eq!(f.mode, 0o644);
        }
        // Every artifact an install script references lives under artifacts/.
        for (_, a) in g.manifest().artifacts.iter() {
            let p = site_artifact_path(a);
            assert!(p.starts_with("artifacts/"));
            if ["kernel", "initramfs.img", "rootfs.img", "metal.raw.xz"].contains(&a.name.as_str())
            {
                assert!(site["ipxe/52-54-00-00-00-02.ipxe"]
                    .0
                    .contains(&router().join(&format!("/{p}"))));
            }
        }
    }

    #[test]
    fn ignition_that_is_not_the_generations_is_refused() {
        let (g, input) = generation();
        let stale = BTreeMap::from([(
            "w1".to_string(),
            SecretIgnition::new(b"{\"other\":true}".to_vec()),
        )]);
        assert!(matches!(
            static_site(&g, Some(&stale), &router()),
            Err(PublishError::IgnitionMismatch { node, .. }) if node == "w1"
        ));
        let stranger = BTreeMap::from([("ghost".to_string(), input.nodes[0].ignition.clone())]);
        assert!(matches!(
            static_site(&g, Some(&stranger), &router()),
            Err(PublishError::UnknownNode(n)) if n == "ghost"
        ));
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let (g, input) = generation();
        let map = BTreeMap::from([("cp1".to_string(), input.nodes[0].ignition.clone())]);
        let files = static_site(&g, Some(&map), &router()).unwrap();
        let shown = format!("{files:?}");
        assert!(!shown.contains("SECRET-K3S-TOKEN"), "{shown}");
        assert!(shown.contains("ignition/cp1.ign"));
    }
}
