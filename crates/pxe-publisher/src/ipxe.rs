//! Pure iPXE script rendering. No I/O, no randomness.
//!
//! Every script starts with the `#!ipxe` magic line: iPXE hangs on a script
//! without it. Text placed on the `kernel` line is checked by
//! [`crate::types`]'s iPXE safety rules instead of escaped: iPXE's own
//! quoting differs between versions, and the installer never needs spaces,
//! `$` or quotes.

use crate::error::{PublishError, Result};
use crate::types::{ipxe_unsafe_reason, ArtifactSet, BaseUrl};

/// Stands for the one-shot token inside a stored install script. The server
/// replaces it when it serves the script to an armed node; on disk the
/// script never holds a real token.
pub const TOKEN_PLACEHOLDER: &str = "@SLIPWAY_TOKEN@";

/// The magic first line of every iPXE script.
pub const MAGIC: &str = "#!ipxe";

/// `GET /boot.ipxe`: chain to the per-MAC endpoint. iPXE sends no MAC
/// header, so the MAC travels in the URL; `hexhyp` avoids `:` in the query.
pub fn chain_script(base: &BaseUrl) -> String {
    format!(
        "{MAGIC}\nchain {}/ipxe?mac=${{net0/mac:hexhyp}}\n",
        base.as_str()
    )
}

/// The localboot script: hand control back to the firmware, which continues
/// its boot order with the local disk.
///
/// We use `exit` rather than `sanboot --no-describe --drive 0x80`: `sanboot`
/// with a BIOS drive number only exists under legacy BIOS and fails on UEFI
/// firmware, while `exit` works under both. In QEMU with SeaBIOS, `exit`
/// returns to SeaBIOS, which moves on to the next boot device (the disk).
pub fn localboot_script() -> String {
    format!("{MAGIC}\necho slipway: localboot, handing back to firmware\nexit\n")
}

/// What an install script is made from.
#[derive(Clone, Copy, Debug)]
pub struct InstallParams<'a> {
    /// Boot server URL as nodes see it.
    pub base: &'a BaseUrl,
    /// Node name (validated).
    pub node: &'a str,
    /// Install disk, e.g. `/dev/sda`.
    pub install_device: &'a str,
    /// Extra kernel arguments (cluster first, then node).
    pub kargs: &'a [String],
    /// Artifacts to install from.
    pub artifacts: &'a ArtifactSet,
}

/// URL at which the store serves `artifact`.
pub fn artifact_url(base: &BaseUrl, artifact: &crate::types::ArtifactRef) -> String {
    base.join(&format!("/artifacts/{}", artifact.store_path()))
}

/// The kernel command line of the FCOS live installer, with `token` in the
/// Ignition URL. Argument order is fixed, so the line is reproducible.
pub fn install_kernel_args(p: &InstallParams<'_>, token: &str) -> Result<Vec<String>> {
    let ignition_url = p
        .base
        .join(&format!("/ignition/{}?token={}", p.node, token));
    install_kernel_args_with_ignition_url(p, &ignition_url)
}

/// The kernel command line of the FCOS live installer, fetching its
/// Ignition from `ignition_url` (e.g. a static file on a remote web root).
pub fn install_kernel_args_with_ignition_url(
    p: &InstallParams<'_>,
    ignition_url: &str,
) -> Result<Vec<String>> {
    check_text(
        &format!("install device of node {}", p.node),
        p.install_device,
    )?;
    for k in p.kargs {
        check_text(&format!("kernel argument of node {}", p.node), k)?;
    }
    let a = p.artifacts;
    let mut args = vec![
        format!("initrd={}", a.initramfs.name),
        "ignition.firstboot".to_string(),
        "ignition.platform.id=metal".to_string(),
        format!("coreos.inst.install_dev={}", p.install_device),
        format!("coreos.inst.image_url={}", artifact_url(p.base, &a.metal)),
        format!("coreos.inst.ignition_url={ignition_url}"),
        format!("coreos.live.rootfs_url={}", artifact_url(p.base, &a.rootfs)),
        "coreos.inst.save_partlabel=var".to_string(),
    ];
    if a.metal_image_insecure() {
        // No signature to check: the image was verified by sha256 when it
        // was mirrored, and coreos-installer must be told to accept that.
        args.push("coreos.inst.insecure".to_string());
    }
    args.extend(
        [
            "rd.neednet=1",
            "ip=dhcp",
            "console=tty0",
            "console=ttyS0,115200n8",
        ]
        .map(String::from),
    );
    args.extend(p.kargs.iter().cloned());
    Ok(args)
}

/// The install script with [`TOKEN_PLACEHOLDER`] where the token goes.
pub fn install_script_template(p: &InstallParams<'_>) -> Result<String> {
    install_script_from_args(p, &install_kernel_args(p, TOKEN_PLACEHOLDER)?)
}

/// An install script fetching its Ignition from `ignition_url` (no token).
pub fn install_script_with_ignition_url(
    p: &InstallParams<'_>,
    ignition_url: &str,
) -> Result<String> {
    check_text(&format!("Ignition URL of node {}", p.node), ignition_url)?;
    install_script_from_args(p, &install_kernel_args_with_ignition_url(p, ignition_url)?)
}

fn install_script_from_args(p: &InstallParams<'_>, args: &[String]) -> Result<String> {
    let a = p.artifacts;
    Ok(format!(
        "{MAGIC}\necho slipway: installing Fedora CoreOS on {node}\nkernel {kernel} {args}\ninitrd {initrd}\nboot\n",
        node = p.node,
        kernel = artifact_url(p.base, &a.kernel),
        args = args.join(" "),
        initrd = artifact_url(p.base, &a.initramfs),
    ))
}

/// Puts a real token into a stored template.
pub fn fill_token(template: &str, token: &str) -> String {
    template.replace(TOKEN_PLACEHOLDER, token)
}

fn check_text(what: &str, value: &str) -> Result<()> {
    match ipxe_unsafe_reason(value) {
        None => Ok(()),
        Some(reason) => Err(PublishError::UnsafeIpxeText {
            what: what.to_string(),
            value: value.chars().take(200).collect(),
            reason,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::{ArtifactRef, Sha256Digest};

    fn art(name: &str, sig: bool) -> ArtifactRef {
        ArtifactRef {
            name: name.into(),
            sha256: Sha256Digest::of(name.as_bytes()),
            size: 1,
            signature_available: sig,
        }
    }

    fn set(metal_sig: bool) -> ArtifactSet {
        ArtifactSet {
            kernel: art("kernel", true),
            initramfs: art("initramfs.img", true),
            rootfs: art("rootfs.img", true),
            metal: art("metal.raw.xz", metal_sig),
            k3s_binary: art("k3s", false),
            k3s_install_script: art("install.sh", false),
        }
    }

    #[test]
    fn install_script_has_exact_shape() {
        let base = BaseUrl::parse("http://10.0.0.2:8080").unwrap();
        let arts = set(true);
        let kargs = vec!["nomodeset".to_string(), "foo=bar".to_string()];
        let p = InstallParams {
            base: &base,
            node: "w1",
            install_device: "/dev/sda",
            kargs: &kargs,
            artifacts: &arts,
        };
        let script = fill_token(&install_script_template(&p).unwrap(), "TOK");
        let h = |n: &str| Sha256Digest::of(n.as_bytes()).to_hex();
        let expected = format!(
            "#!ipxe\necho slipway: installing Fedora CoreOS on w1\n\
kernel http://10.0.0.2:8080/artifacts/{k}/kernel initrd=initramfs.img ignition.firstboot ignition.platform.id=metal \
coreos.inst.install_dev=/dev/sda coreos.inst.image_url=http://10.0.0.2:8080/artifacts/{m}/metal.raw.xz \
coreos.inst.ignition_url=http://10.0.0.2:8080/ignition/w1?token=TOK \
coreos.live.rootfs_url=http://10.0.0.2:8080/artifacts/{r}/rootfs.img coreos.inst.save_partlabel=var \
rd.neednet=1 ip=dhcp console=tty0 console=ttyS0,115200n8 nomodeset foo=bar\n\
initrd http://10.0.0.2:8080/artifacts/{i}/initramfs.img\nboot\n",
            k = h("kernel"),
            m = h("metal.raw.xz"),
            r = h("rootfs.img"),
            i = h("initramfs.img"),
        );
        assert_eq!(script, expected);
    }

    #[test]
    fn insecure_only_without_metal_signature() {
        let base = BaseUrl::parse("http://b").unwrap();
        for (sig, want) in [(true, false), (false, true)] {
            let arts = set(sig);
            let p = InstallParams {
                base: &base,
                node: "n",
                install_device: "/dev/vda",
                kargs: &[],
                artifacts: &arts,
            };
            let args = install_kernel_args(&p, "t").unwrap();
            assert_eq!(args.iter().any(|a| a == "coreos.inst.insecure"), want);
            assert_eq!(arts.metal_image_insecure(), want);
        }
    }

    #[test]
    fn unsafe_kargs_are_refused_with_the_node_named() {
        let base = BaseUrl::parse("http://b").unwrap();
        let arts = set(true);
        for bad in ["a b", "x=${foo}", "\"quoted\"", "#comment", "&&"] {
            let kargs = vec![bad.to_string()];
            let p = InstallParams {
                base: &base,
                node: "w7",
                install_device: "/dev/sda",
                kargs: &kargs,
                artifacts: &arts,
            };
            let err = install_script_template(&p).unwrap_err().to_string();
            assert!(err.contains("w7"), "{err}");
        }
    }

    #[test]
    fn fixed_scripts_start_with_magic() {
        let base = BaseUrl::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(
            chain_script(&base),
            "#!ipxe\nchain http://127.0.0.1:9/ipxe?mac=${net0/mac:hexhyp}\n"
        );
        assert!(localboot_script().starts_with("#!ipxe\n"));
        assert!(localboot_script().contains("\nexit\n"));
    }
}
