//! Butane `fcos` spec versions and the Ignition spec each one produces.

use crate::ignition::SpecVersion;

/// A stable `fcos` Butane spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ButaneVersion {
    /// 1.0.0 → Ignition 3.0.0.
    V1_0,
    /// 1.1.0 → Ignition 3.1.0.
    V1_1,
    /// 1.2.0 → Ignition 3.2.0.
    V1_2,
    /// 1.3.0 → Ignition 3.2.0 (adds `boot_device`).
    V1_3,
    /// 1.4.0 → Ignition 3.3.0.
    V1_4,
    /// 1.5.0 → Ignition 3.4.0.
    V1_5,
    /// 1.6.0 → Ignition 3.5.0.
    V1_6,
}

impl ButaneVersion {
    /// Every supported version, oldest first.
    pub const ALL: [ButaneVersion; 7] = [
        ButaneVersion::V1_0,
        ButaneVersion::V1_1,
        ButaneVersion::V1_2,
        ButaneVersion::V1_3,
        ButaneVersion::V1_4,
        ButaneVersion::V1_5,
        ButaneVersion::V1_6,
    ];

    /// As written in `version:`.
    pub fn as_str(self) -> &'static str {
        match self {
            ButaneVersion::V1_0 => "1.0.0",
            ButaneVersion::V1_1 => "1.1.0",
            ButaneVersion::V1_2 => "1.2.0",
            ButaneVersion::V1_3 => "1.3.0",
            ButaneVersion::V1_4 => "1.4.0",
            ButaneVersion::V1_5 => "1.5.0",
            ButaneVersion::V1_6 => "1.6.0",
        }
    }

    /// Parse `version:`.
    pub fn parse(s: &str) -> Option<ButaneVersion> {
        ButaneVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The Ignition spec version Butane emits for this version (Butane's docs/specs.md table).
    pub fn ignition(self) -> SpecVersion {
        match self {
            ButaneVersion::V1_0 => SpecVersion::V3_0,
            ButaneVersion::V1_1 => SpecVersion::V3_1,
            ButaneVersion::V1_2 | ButaneVersion::V1_3 => SpecVersion::V3_2,
            ButaneVersion::V1_4 => SpecVersion::V3_3,
            ButaneVersion::V1_5 => SpecVersion::V3_4,
            ButaneVersion::V1_6 => SpecVersion::V3_5,
        }
    }
}

impl std::fmt::Display for ButaneVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
