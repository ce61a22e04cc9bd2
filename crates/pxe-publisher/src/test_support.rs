//! Sample inputs for unit tests.
#![allow(clippy::unwrap_used)]

use crate::types::*;

pub(crate) fn artifact(name: &str, signature_available: bool) -> ArtifactRef {
    ArtifactRef {
        name: name.to_string(),
        sha256: Sha256Digest::of(name.as_bytes()),
        size: name.len() as u64,
        signature_available,
    }
}

pub(crate) fn sample_input(commit: &str) -> GenerationInput {
    let node = |name: &str, macs: &[[u8; 6]], role| NodeInput {
        name: name.to_string(),
        macs: macs.iter().map(|m| MacAddr::new(*m)).collect(),
        role,
        install_device: "/dev/vda".to_string(),
        kargs: vec!["slipway.test=1".to_string()],
        ignition: SecretIgnition::new(
            format!(
                "{{\"ignition\":{{\"version\":\"3.4.0\"}},\"k3s\":\"SECRET-K3S-TOKEN-{name}\"}}"
            )
            .into_bytes(),
        ),
    };
    GenerationInput {
        commit: commit.to_string(),
        base_url: BaseUrl::parse("http://10.0.2.2:8080").expect("valid"),
        nodes: vec![
            node("cp1", &[[0x52, 0x54, 0, 0, 0, 1]], NodeRole::Server),
            node(
                "w1",
                &[[0x52, 0x54, 0, 0, 0, 2], [0x52, 0x54, 0, 0, 0, 3]],
                NodeRole::Agent,
            ),
        ],
        artifacts: ArtifactSet {
            kernel: artifact("kernel", true),
            initramfs: artifact("initramfs.img", true),
            rootfs: artifact("rootfs.img", true),
            metal: artifact("metal.raw.xz", true),
            k3s_binary: artifact("k3s", false),
            k3s_install_script: artifact("install.sh", false),
        },
        unknown_mac: UnknownMacPolicy::Localboot,
    }
}
