//! Fact gathering: one fixed, read-only shell script per node, and pure parsers
//! that turn its output into [`NodeFacts`].
//!
//! The script runs every fact command in one SSH round trip and frames each
//! command's stdout and stderr between marker lines, so the parsers can tell
//! exactly which output (and exit status) belongs to which fact.

use serde::Deserialize;
use slipway_model::facts::{
    AppliedConfig, BootEntries, Deployment, EfiEntry, FactError, K3sService, NodeFacts, OsStatus,
    Reachability, UnitState,
};

use crate::session::{CommandOutput, NodeConn};

/// Marker prefix framing each fact's output in the gathering script.
const MARKER: &str = "@@slipway-fact:";

/// Exit status of a command that was not found (shell convention).
const NOT_FOUND: i32 = 127;

/// Which fact a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKey {
    /// `/proc/sys/kernel/random/boot_id`
    BootId,
    /// `/proc/uptime`
    Uptime,
    /// `rpm-ostree status --json`
    RpmOstree,
    /// `k3s --version`
    K3sVersion,
    /// `systemctl is-active k3s k3s-agent`
    K3sActive,
    /// `/etc/slipway/applied.json`
    Applied,
    /// `/var/lib/slipway/canary`
    Canary,
    /// `efibootmgr -v`
    BootEntries,
}

/// How a fact is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactSource {
    /// Run this read-only command.
    Command(&'static str),
    /// Print this file if it exists; its absence is a normal state, not an error.
    OptionalFile(&'static str),
}

/// One entry of the fixed fact list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactCommand {
    /// Which fact.
    pub key: FactKey,
    /// Marker name in the script output.
    pub name: &'static str,
    /// How to read it.
    pub source: FactSource,
}

impl FactCommand {
    /// The command as a human reads it (used in [`FactError::command`]).
    pub fn display(&self) -> String {
        match self.source {
            FactSource::Command(cmd) => cmd.to_string(),
            FactSource::OptionalFile(path) => format!("cat {path}"),
        }
    }
}

/// Every command fact gathering runs. All of them are read-only.
pub const FACT_COMMANDS: &[FactCommand] = &[
    FactCommand {
        key: FactKey::BootId,
        name: "boot_id",
        source: FactSource::Command("cat /proc/sys/kernel/random/boot_id"),
    },
    FactCommand {
        key: FactKey::Uptime,
        name: "uptime",
        source: FactSource::Command("cat /proc/uptime"),
    },
    FactCommand {
        key: FactKey::RpmOstree,
        name: "rpm_ostree",
        source: FactSource::Command("rpm-ostree status --json"),
    },
    FactCommand {
        key: FactKey::K3sVersion,
        name: "k3s_version",
        source: FactSource::Command("k3s --version"),
    },
    FactCommand {
        key: FactKey::K3sActive,
        name: "k3s_active",
        source: FactSource::Command("systemctl is-active k3s k3s-agent"),
    },
    FactCommand {
        key: FactKey::Applied,
        name: "applied",
        source: FactSource::OptionalFile("/etc/slipway/applied.json"),
    },
    FactCommand {
        key: FactKey::Canary,
        name: "canary",
        source: FactSource::OptionalFile("/var/lib/slipway/canary"),
    },
    FactCommand {
        key: FactKey::BootEntries,
        name: "efi",
        source: FactSource::Command("efibootmgr -v"),
    },
];

/// The shell script that gathers every fact in one round trip.
///
/// POSIX sh; every command reads stdin from `/dev/null`. Each section prints
/// `@@slipway-fact:begin:<name>` on stdout and stderr, the command's output,
/// then a newline and `@@slipway-fact:end:<name>:<status>` (status `absent`
/// for an optional file that does not exist).
pub fn fact_script() -> String {
    let mut script = String::new();
    for fact in FACT_COMMANDS {
        let name = fact.name;
        script.push_str(&format!(
            "echo '{MARKER}begin:{name}'; echo '{MARKER}begin:{name}' >&2; "
        ));
        match fact.source {
            FactSource::Command(cmd) => script.push_str(&format!("{cmd} </dev/null; rc=$?; ")),
            FactSource::OptionalFile(path) => script.push_str(&format!(
                "if [ -e {path} ]; then cat {path}; rc=$?; else rc=absent; fi; "
            )),
        }
        script.push_str(&format!(
            "printf '\\n{MARKER}end:{name}:%s\\n' \"$rc\"; printf '\\n{MARKER}end:{name}\\n' >&2\n"
        ));
    }
    script
}

/// How one fact's command ended, as seen in the script output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionStatus {
    /// The command exited with this status.
    Exited(i32),
    /// The optional file does not exist.
    Absent,
}

/// One fact's framed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The command's stdout.
    pub stdout: String,
    /// The command's stderr.
    pub stderr: String,
    /// How it ended.
    pub status: SectionStatus,
}

/// Find the framed stdout of `name` and its end status.
fn stdout_section(stdout: &str, name: &str) -> Option<(String, SectionStatus)> {
    let begin = format!("{MARKER}begin:{name}\n");
    let end = format!("\n{MARKER}end:{name}:");
    let start = find_line_start(stdout, &begin)? + begin.len();
    let rest = &stdout[start..];
    let stop = rest.find(&end)?;
    let content = rest[..stop].to_string();
    let after = &rest[stop + end.len()..];
    let status_text = after.lines().next().unwrap_or("").trim();
    let status = if status_text == "absent" {
        SectionStatus::Absent
    } else {
        SectionStatus::Exited(status_text.parse().ok()?)
    };
    Some((content, status))
}

fn stderr_section(stderr: &str, name: &str) -> String {
    let begin = format!("{MARKER}begin:{name}\n");
    let end = format!("\n{MARKER}end:{name}\n");
    find_line_start(stderr, &begin)
        .map(|i| &stderr[i + begin.len()..])
        .and_then(|rest| rest.find(&end).map(|stop| rest[..stop].to_string()))
        .unwrap_or_default()
}

/// Position of `needle` where it starts a line.
fn find_line_start(haystack: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = haystack[from..].find(needle) {
        let abs = from + pos;
        if abs == 0 || haystack.as_bytes()[abs - 1] == b'\n' {
            return Some(abs);
        }
        from = abs + 1;
    }
    None
}

/// Split the script's output into one [`Section`] per fact (`None` when the
/// fact's section is missing, e.g. the script was cut short).
pub fn split_sections(output: &CommandOutput) -> Vec<(FactCommand, Option<Section>)> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    FACT_COMMANDS
        .iter()
        .map(|fact| {
            let section = stdout_section(&stdout, fact.name).map(|(out, status)| Section {
                stdout: out,
                stderr: stderr_section(&stderr, fact.name),
                status,
            });
            (*fact, section)
        })
        .collect()
}

/// Gather the facts of one node over an open session: one round trip.
///
/// Never fails: a broken session or a malformed output becomes a
/// [`FactError`] in the returned facts.
pub fn gather_facts(conn: &mut impl NodeConn) -> NodeFacts {
    match conn.exec(&fact_script()) {
        Ok(output) => facts_from_output(&output),
        Err(e) => {
            let mut facts = empty_reachable();
            facts.errors.push(FactError {
                command: "fact gathering script".into(),
                message: e.to_string(),
            });
            facts
        }
    }
}

fn empty_reachable() -> NodeFacts {
    NodeFacts {
        reachability: Reachability::Reachable,
        ..NodeFacts::unreachable("")
    }
}

/// Turn the gathering script's output into facts. Pure.
pub fn facts_from_output(output: &CommandOutput) -> NodeFacts {
    let mut facts = empty_reachable();
    for (fact, section) in split_sections(output) {
        let command = fact.display();
        let Some(section) = section else {
            facts.errors.push(FactError {
                command,
                message: format!(
                    "no output section (script exited with status {}: {})",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
            continue;
        };
        if let Err(message) = apply_section(&mut facts, fact.key, &section) {
            facts.errors.push(FactError { command, message });
        }
    }
    facts
}

/// Record one section's fact into `facts`, or say why it is unusable.
fn apply_section(facts: &mut NodeFacts, key: FactKey, section: &Section) -> Result<(), String> {
    let failed = |status: i32| {
        let stderr = section.stderr.trim();
        if stderr.is_empty() {
            format!("exited with status {status}")
        } else {
            format!("exited with status {status}: {stderr}")
        }
    };
    let status = match section.status {
        SectionStatus::Absent => {
            // Only optional files can be absent; their fact stays None.
            return Ok(());
        }
        SectionStatus::Exited(status) => status,
    };
    match key {
        FactKey::BootId if status == 0 => facts.boot_id = Some(parse_boot_id(&section.stdout)?),
        FactKey::Uptime if status == 0 => {
            facts.uptime_seconds = Some(parse_uptime(&section.stdout)?)
        }
        FactKey::RpmOstree if status == 0 => {
            facts.os = Some(parse_rpm_ostree_status(&section.stdout)?)
        }
        FactKey::K3sVersion if status == NOT_FOUND => facts.k3s_version = None,
        FactKey::K3sVersion if status == 0 => {
            facts.k3s_version = Some(parse_k3s_version(&section.stdout)?)
        }
        // `systemctl is-active` exits non-zero when a unit is not active but
        // still prints one state per unit.
        FactKey::K3sActive if status != NOT_FOUND => {
            facts.k3s_service = Some(parse_is_active(&section.stdout).map_err(|e| {
                if status == 0 {
                    e
                } else {
                    format!("{e} ({})", failed(status))
                }
            })?)
        }
        FactKey::Applied if status == 0 => facts.applied = Some(parse_applied(&section.stdout)?),
        FactKey::Canary if status == 0 => facts.var_canary = Some(parse_canary(&section.stdout)),
        FactKey::BootEntries if status == 0 => {
            facts.boot_entries = Some(parse_efibootmgr(&section.stdout)?)
        }
        _ => return Err(failed(status)),
    }
    Ok(())
}

/// Parse `/proc/sys/kernel/random/boot_id` (a UUID).
pub fn parse_boot_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    let shape_ok = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if shape_ok {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(format!("not a boot id (UUID): {:?}", truncate(id)))
    }
}

/// Parse `/proc/uptime` (`<seconds since boot> <idle seconds>`), rounded down.
pub fn parse_uptime(text: &str) -> Result<u64, String> {
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs.floor() as u64),
        _ => Err(format!("not an uptime: {:?}", truncate(text.trim()))),
    }
}

#[derive(Deserialize)]
struct RawStatus {
    deployments: Vec<RawDeployment>,
}

#[derive(Deserialize)]
struct RawDeployment {
    #[serde(default)]
    booted: bool,
    checksum: String,
    #[serde(default)]
    version: Option<String>,
}

impl RawDeployment {
    fn into_deployment(self) -> Deployment {
        Deployment {
            version: self.version.unwrap_or_default(),
            checksum: self.checksum,
        }
    }
}

/// Parse `rpm-ostree status --json`: the booted deployment, and the pending
/// one (the first-listed deployment, when it is not the booted one).
pub fn parse_rpm_ostree_status(text: &str) -> Result<OsStatus, String> {
    let raw: RawStatus =
        serde_json::from_str(text).map_err(|e| format!("invalid rpm-ostree JSON: {e}"))?;
    let booted_index = raw
        .deployments
        .iter()
        .position(|d| d.booted)
        .ok_or_else(|| "no booted deployment listed".to_string())?;
    let mut deployments = raw.deployments;
    let pending = (booted_index > 0).then(|| deployments.remove(0).into_deployment());
    let booted_index = if pending.is_some() {
        booted_index - 1
    } else {
        booted_index
    };
    let booted = deployments.swap_remove(booted_index).into_deployment();
    Ok(OsStatus { booted, pending })
}

/// Parse `k3s --version` (`k3s version v1.30.2+k3s1 (faf4d6ff)`).
pub fn parse_k3s_version(text: &str) -> Result<String, String> {
    text.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("k3s"), Some("version"), Some(v)) if v.starts_with('v') => {
                    Some(v.to_string())
                }
                _ => None,
            }
        })
        .ok_or_else(|| format!("no `k3s version v...` line in {:?}", truncate(text.trim())))
}

/// Parse `systemctl is-active k3s k3s-agent` (one state per line, in order).
pub fn parse_is_active(text: &str) -> Result<K3sService, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let valid =
        |word: &str| !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    match lines.as_slice() {
        [server, agent] if valid(server) && valid(agent) => Ok(K3sService {
            server: UnitState::parse(server),
            agent: UnitState::parse(agent),
        }),
        _ => Err(format!(
            "expected two unit states, got {:?}",
            truncate(text.trim())
        )),
    }
}

/// Parse `/etc/slipway/applied.json`.
pub fn parse_applied(text: &str) -> Result<AppliedConfig, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid applied.json: {e}"))
}

/// The canary's contents, without the trailing newline `echo` adds.
pub fn parse_canary(text: &str) -> String {
    text.strip_suffix('\n').unwrap_or(text).to_string()
}

/// Tokens in an EFI device path (or label) that mean "boots from the network".
const NETWORK_MARKERS: &[&str] = &["MAC(", "IPv4(", "IPv6(", "PXE", "HTTP", "Network"];

/// Parse `efibootmgr -v`.
pub fn parse_efibootmgr(text: &str) -> Result<BootEntries, String> {
    let hex = |s: &str| {
        u16::from_str_radix(s.trim(), 16)
            .map_err(|_| format!("not a boot entry number: {:?}", truncate(s)))
    };
    let mut entries = BootEntries {
        current: None,
        next: None,
        order: Vec::new(),
        entries: Vec::new(),
    };
    let mut recognised = false;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("BootCurrent:") {
            entries.current = Some(hex(v)?);
            recognised = true;
        } else if let Some(v) = line.strip_prefix("BootNext:") {
            entries.next = Some(hex(v)?);
        } else if let Some(v) = line.strip_prefix("BootOrder:") {
            let v = v.trim();
            if !v.is_empty() {
                entries.order = v.split(',').map(hex).collect::<Result<_, _>>()?;
            }
            recognised = true;
        } else if let Some(entry) = parse_efi_entry(line) {
            entries.entries.push(entry);
            recognised = true;
        }
    }
    if recognised {
        Ok(entries)
    } else {
        Err(format!(
            "no BootCurrent, BootOrder or BootXXXX line in {:?}",
            truncate(text.trim())
        ))
    }
}

/// Parse a `BootXXXX[*] label<TAB>device path` line.
fn parse_efi_entry(line: &str) -> Option<EfiEntry> {
    let rest = line.strip_prefix("Boot")?;
    let number_text = rest.get(..4)?;
    if !number_text.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let number = u16::from_str_radix(number_text, 16).ok()?;
    let rest = &rest[4..];
    let (active, rest) = match rest.strip_prefix('*') {
        Some(rest) => (true, rest),
        None if rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t') => (false, rest),
        None => return None,
    };
    let rest = rest.trim_start_matches(' ');
    let (label, path) = match rest.split_once('\t') {
        Some((label, path)) => (label.trim(), path),
        None => split_label_without_tab(rest),
    };
    let haystack = if path.is_empty() { label } else { path };
    let is_network = NETWORK_MARKERS.iter().any(|m| haystack.contains(m))
        || ["PXE", "HTTP", "Network"].iter().any(|m| label.contains(m));
    Some(EfiEntry {
        number,
        label: label.to_string(),
        active,
        is_network,
    })
}

/// Device path roots efibootmgr prints after the label.
const DEVICE_PATH_ROOTS: &[&str] = &[
    "HD(", "PciRoot(", "VenHw(", "VenMsg(", "FvVol(", "FvFile(", "BBS(", "MAC(", "Acpi(", "File(",
];

/// Older efibootmgr versions separate label and device path with a space
/// only: split at the first device path root.
fn split_label_without_tab(rest: &str) -> (&str, &str) {
    let split = DEVICE_PATH_ROOTS
        .iter()
        .filter_map(|root| rest.find(&format!(" {root}")))
        .min();
    match split {
        Some(i) => (rest[..i].trim(), rest[i + 1..].trim()),
        None => (rest.trim(), ""),
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STAGED: &str = include_str!("../tests/fixtures/rpm-ostree-status-staged.json");
    const BOOTED_ONLY: &str = include_str!("../tests/fixtures/rpm-ostree-status-booted-only.json");
    const EFI: &str = include_str!("../tests/fixtures/efibootmgr-v.txt");
    const EFI_NOTAB: &str = include_str!("../tests/fixtures/efibootmgr-v-notab.txt");
    const EFI_NONE: &str = include_str!("../tests/fixtures/efibootmgr-no-efi.txt");
    const BOOT_ID: &str = "3f1c2b9e-8d7a-4c6b-9e5f-0a1b2c3d4e5f";
    const APPLIED: &str = r#"{"commit":"a1b2c3","config_hash":"sha256:ff00","os_version":"40.20240616.3.0","k3s_version":"v1.30.2+k3s1"}"#;

    /// Build the output the script would print, given each fact's
    /// (stdout, stderr, status) in FACT_COMMANDS order.
    fn script_output(sections: &[(&str, &str, &str)], script_status: i32) -> CommandOutput {
        assert_eq!(sections.len(), FACT_COMMANDS.len());
        let mut stdout = String::new();
        let mut stderr = String::new();
        for (fact, (out, err, status)) in FACT_COMMANDS.iter().zip(sections) {
            stdout.push_str(&format!(
                "{MARKER}begin:{}\n{out}\n{MARKER}end:{}:{status}\n",
                fact.name, fact.name
            ));
            stderr.push_str(&format!(
                "{MARKER}begin:{}\n{err}\n{MARKER}end:{}\n",
                fact.name, fact.name
            ));
        }
        CommandOutput {
            status: script_status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        }
    }

    fn healthy() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            (BOOT_ID, "", "0"),
            ("12345.67 23456.78\n", "", "0"),
            (STAGED, "", "0"),
            (
                "k3s version v1.30.2+k3s1 (faf4d6ff)\ngo version go1.22.4\n",
                "",
                "0",
            ),
            ("inactive\nactive\n", "", "0"),
            (APPLIED, "", "0"),
            ("canary-2024\n", "", "0"),
            (EFI, "", "0"),
        ]
    }

    #[test]
    fn healthy_node_yields_every_fact_and_no_error() {
        let facts = facts_from_output(&script_output(&healthy(), 0));
        assert_eq!(facts.errors, vec![]);
        assert!(facts.is_reachable());
        assert_eq!(facts.boot_id.as_deref(), Some(BOOT_ID));
        assert_eq!(facts.uptime_seconds, Some(12345));
        let os = facts.os.unwrap();
        assert_eq!(os.booted.version, "40.20240616.3.0");
        assert_eq!(os.pending.unwrap().version, "40.20240701.3.0");
        assert_eq!(facts.k3s_version.as_deref(), Some("v1.30.2+k3s1"));
        let svc = facts.k3s_service.unwrap();
        assert_eq!(
            (svc.server, svc.agent),
            (UnitState::Inactive, UnitState::Active)
        );
        assert_eq!(facts.applied.unwrap().commit, "a1b2c3");
        // The canary keeps inner whitespace but loses echo's newline.
        assert_eq!(facts.var_canary.as_deref(), Some("canary-2024"));
        assert_eq!(facts.boot_entries.unwrap().next, Some(3));
    }

    #[test]
    fn fresh_machine_has_no_applied_config_no_canary_and_no_k3s_without_errors() {
        let mut sections = healthy();
        sections[3] = ("", "sh: k3s: not found", "127");
        sections[4] = ("inactive\ninactive\n", "", "3");
        sections[5] = ("", "", "absent");
        sections[6] = ("", "", "absent");
        let facts = facts_from_output(&script_output(&sections, 0));
        assert_eq!(facts.errors, vec![]);
        assert_eq!(facts.k3s_version, None);
        assert!(!facts.k3s_service.unwrap().is_active());
        assert_eq!(facts.applied, None);
        assert_eq!(facts.var_canary, None);
    }

    #[test]
    fn malformed_outputs_become_fact_errors_naming_the_command() {
        let mut sections = healthy();
        sections[0] = ("not-a-uuid", "", "0");
        sections[2] = ("{\"deployments\": [ {garbage", "", "0");
        sections[5] = ("{\"commit\": 1}", "", "0");
        sections[7] = (EFI_NONE, "", "0");
        let facts = facts_from_output(&script_output(&sections, 0));
        let commands: Vec<&str> = facts.errors.iter().map(|e| e.command.as_str()).collect();
        assert_eq!(
            commands,
            vec![
                "cat /proc/sys/kernel/random/boot_id",
                "rpm-ostree status --json",
                "cat /etc/slipway/applied.json",
                "efibootmgr -v"
            ]
        );
        assert!(
            facts.errors[1].message.contains("invalid rpm-ostree JSON"),
            "{:?}",
            facts.errors[1]
        );
        assert_eq!(facts.os, None);
        // The facts that were fine are still there.
        assert_eq!(facts.uptime_seconds, Some(12345));
        assert_eq!(facts.k3s_version.as_deref(), Some("v1.30.2+k3s1"));
    }

    #[test]
    fn failing_command_reports_status_and_stderr() {
        let mut sections = healthy();
        sections[7] = ("", "EFI variables are not supported on this system.", "2");
        let facts = facts_from_output(&script_output(&sections, 0));
        assert_eq!(facts.errors.len(), 1);
        assert_eq!(
            facts.errors[0].message,
            "exited with status 2: EFI variables are not supported on this system."
        );
        assert_eq!(facts.boot_entries, None);
    }

    #[test]
    fn truncated_output_marks_missing_sections_as_errors() {
        let full = script_output(&healthy(), 0);
        let text = String::from_utf8(full.stdout).unwrap();
        // Cut in the middle of the rpm-ostree section.
        let cut = text.find("\"booted\" : true").unwrap();
        let output = CommandOutput {
            status: 255,
            stdout: text.as_bytes()[..cut].to_vec(),
            stderr: b"killed".to_vec(),
        };
        let facts = facts_from_output(&output);
        assert_eq!(facts.boot_id.as_deref(), Some(BOOT_ID));
        assert_eq!(facts.errors.len(), FACT_COMMANDS.len() - 2);
        assert!(
            facts.errors[0].message.contains("status 255"),
            "{:?}",
            facts.errors[0]
        );
    }

    #[test]
    fn empty_or_binary_garbage_never_panics() {
        for garbage in [
            &b""[..],
            b"\xff\xfe\x00garbage",
            b"@@slipway-fact:begin:boot_id\n",
            b"@@slipway-fact:end:boot_id:",
        ] {
            let facts = facts_from_output(&CommandOutput {
                status: 0,
                stdout: garbage.to_vec(),
                stderr: garbage.to_vec(),
            });
            assert_eq!(facts.errors.len(), FACT_COMMANDS.len());
        }
    }

    #[test]
    fn marker_inside_a_line_does_not_start_a_section() {
        let mut sections = healthy();
        sections[0] = ("x@@slipway-fact:begin:uptime", "", "0");
        let facts = facts_from_output(&script_output(&sections, 0));
        assert_eq!(facts.uptime_seconds, Some(12345));
    }

    #[test]
    fn rpm_ostree_without_pending_deployment() {
        let os = parse_rpm_ostree_status(BOOTED_ONLY).unwrap();
        assert_eq!(
            os.booted.checksum,
            "4c1d7e9a2b3f5e6d8c0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60"
        );
        assert_eq!(os.pending, None);
        // Staged fixture: the rollback deployment (listed after booted) is not pending.
        let os = parse_rpm_ostree_status(STAGED).unwrap();
        assert_eq!(
            os.pending.unwrap().checksum,
            "9e3a1f4c7a0b6d2e1f8c5b4a3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e"
        );
        assert!(
            parse_rpm_ostree_status(r#"{"deployments":[{"checksum":"x","booted":false}]}"#)
                .unwrap_err()
                .contains("no booted deployment")
        );
    }

    #[test]
    fn efibootmgr_entries_flags_and_network_detection() {
        let efi = parse_efibootmgr(EFI).unwrap();
        assert_eq!(efi.current, Some(1));
        assert_eq!(efi.next, Some(3));
        assert_eq!(efi.order, vec![1, 0, 3, 2]);
        let summary: Vec<(u16, &str, bool, bool)> = efi
            .entries
            .iter()
            .map(|e| (e.number, e.label.as_str(), e.active, e.is_network))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, "UiApp", true, false),
                (1, "Fedora CoreOS", true, false),
                (2, "UEFI HTTPv4 (MAC:525400123456)", false, true),
                (3, "UEFI PXEv4 (MAC:525400123456)", true, true),
                (4, "Generic Network Boot", true, true),
            ]
        );
        assert_eq!(efi.network_entry().map(|e| e.number), Some(2));
    }

    #[test]
    fn efibootmgr_without_tabs_splits_at_the_device_path() {
        let efi = parse_efibootmgr(EFI_NOTAB).unwrap();
        assert_eq!(efi.current, Some(10));
        assert_eq!(efi.next, None);
        let labels: Vec<(&str, bool)> = efi
            .entries
            .iter()
            .map(|e| (e.label.as_str(), e.is_network))
            .collect();
        assert_eq!(labels, vec![("Network Card", true), ("fedora", false)]);
    }

    #[test]
    fn efibootmgr_rejects_garbage_and_bad_numbers() {
        assert!(parse_efibootmgr(EFI_NONE).is_err());
        assert!(parse_efibootmgr("BootOrder: 0001,zz\n")
            .unwrap_err()
            .contains("zz"));
    }

    #[test]
    fn small_parsers() {
        assert_eq!(parse_uptime("0.50 1.00\n"), Ok(0));
        assert!(parse_uptime("-3 1").is_err());
        assert!(parse_uptime("").is_err());
        assert_eq!(
            parse_boot_id("3F1C2B9E-8D7A-4C6B-9E5F-0A1B2C3D4E5F\n").unwrap(),
            BOOT_ID
        );
        assert!(parse_k3s_version("garbage").is_err());
        assert!(parse_is_active("active\n").is_err());
        assert!(parse_is_active("active\nNOT A STATE\n").is_err());
        assert_eq!(parse_canary("a b\n"), "a b");
    }

    #[test]
    fn script_runs_under_posix_sh_and_frames_every_fact() {
        // Runs the real script under /bin/sh with every command stubbed on PATH,
        // to prove the quoting and framing work end to end.
        let dir = tempfile::tempdir().unwrap();
        let stub = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&path, perms).unwrap();
        };
        stub("rpm-ostree", &format!("cat <<'J'\n{BOOTED_ONLY}J"));
        stub("k3s", "echo 'k3s version v1.31.0+k3s1 (abc)'");
        stub("systemctl", "printf 'active\\ninactive\\n'; exit 0");
        stub("efibootmgr", "echo 'oops' >&2; exit 2");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(fact_script())
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .expect("/bin/sh is required for this test");
        let output = CommandOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        };
        let facts = facts_from_output(&output);
        assert_eq!(facts.os.unwrap().booted.version, "40.20240616.3.0");
        assert_eq!(facts.k3s_version.as_deref(), Some("v1.31.0+k3s1"));
        assert!(facts.k3s_service.unwrap().is_active());
        let efi_error = facts
            .errors
            .iter()
            .find(|e| e.command == "efibootmgr -v")
            .unwrap();
        assert_eq!(efi_error.message, "exited with status 2: oops");
        // Host files: /proc exists on Linux, so these parse.
        assert!(facts.boot_id.is_some(), "{:?}", facts.errors);
        assert!(facts.uptime_seconds.is_some());
    }
}
