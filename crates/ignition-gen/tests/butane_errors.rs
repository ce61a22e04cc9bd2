//! Every invalid construct is rejected with its exact location and message.

#![allow(clippy::unwrap_used)] // tests may unwrap

use slipway_ignition_gen::butane::{translate, TranslateOptions};
use slipway_ignition_gen::files::{MemFileSource, NoFiles};

const HEAD: &str = "variant: fcos\nversion: 1.4.0\n";

fn diags_with(
    text: &str,
    strict: bool,
    files: &dyn slipway_ignition_gen::files::FileSource,
) -> Vec<String> {
    let opts = TranslateOptions {
        strict,
        ..TranslateOptions::default()
    };
    match translate("in.bu", text, &opts, files) {
        Ok(t) => t
            .warnings
            .iter()
            .map(|d| format!("warning {}|{}", d.location, d.message))
            .collect(),
        Err(ds) => ds
            .iter()
            .map(|d| {
                format!(
                    "{} {}|{}",
                    if d.is_error() { "error" } else { "warning" },
                    d.location,
                    d.message
                )
            })
            .collect(),
    }
}

fn diags(text: &str) -> Vec<String> {
    diags_with(text, false, &NoFiles)
}

#[test]
fn unknown_keys_are_errors_with_typo_hint() {
    let text = format!("{HEAD}storage:\n  filez: []\n");
    assert_eq!(diags(&text), ["error in.bu:4:3|unknown key `filez`"]);
    let err = translate("in.bu", &text, &TranslateOptions::default(), &NoFiles).unwrap_err();
    assert_eq!(err[0].hint.as_deref(), Some("did you mean `files`?"));
}

#[test]
fn fields_newer_than_the_version_are_rejected() {
    let text = "variant: fcos\nversion: 1.3.0\nkernel_arguments:\n  should_exist: [a]\n";
    assert_eq!(
        diags(text),
        ["error in.bu:3:1|`kernel_arguments` is not supported by fcos 1.3.0"]
    );
    let text = "variant: fcos\nversion: 1.4.0\nsystemd:\n  units:\n    - name: a.service\n      contents_local: a\n";
    assert_eq!(
        diags(text),
        ["error in.bu:6:7|`contents_local` is not supported by fcos 1.4.0"]
    );
    let text =
        "variant: fcos\nversion: 1.0.0\nignition:\n  config:\n    merge:\n      - inline: x\n";
    assert_eq!(
        diags(text),
        ["error in.bu:6:9|`inline` is not supported by fcos 1.0.0"]
    );
    let text = "variant: fcos\nversion: 1.3.0\nstorage:\n  filesystems:\n    - device: /dev/vdb1\n      format: swap\n      with_mount_unit: true\n";
    assert_eq!(
        diags(text),
        ["error in.bu:7:24|with_mount_unit for a swap area is not supported by this version"]
    );
    let text = "variant: fcos\nversion: 1.2.0\nboot_device:\n  luks:\n    tpm2: true\n";
    assert_eq!(
        diags(text),
        ["error in.bu:3:1|`boot_device` is not supported by fcos 1.2.0"]
    );
}

#[test]
fn variant_and_version_are_checked() {
    assert_eq!(
        diags("version: 1.4.0\n"),
        ["error in.bu:1:1|error parsing variant; must be specified"]
    );
    assert_eq!(
        diags("variant: flatcar\nversion: 1.0.0\n"),
        ["error in.bu:1:10|unsupported variant `flatcar`"]
    );
    assert_eq!(
        diags("variant: fcos\nversion: 1.7.0-experimental\n"),
        ["error in.bu:2:10|unsupported fcos version `1.7.0-experimental`"]
    );
}

#[test]
fn local_files_follow_files_dir_rules() {
    let text = format!(
        "{HEAD}storage:\n  files:\n    - path: /etc/a\n      contents:\n        local: a.txt\n"
    );
    assert_eq!(
        diags(&text),
        ["error in.bu:7:16|local file paths are relative to a files directory that must be specified with -d/--files-dir"]
    );
    let files = MemFileSource::new().file("a.txt", "hi");
    let text = format!(
        "{HEAD}storage:\n  files:\n    - path: /etc/a\n      contents:\n        local: ../a.txt\n"
    );
    assert_eq!(
        diags_with(&text, false, &files),
        ["error in.bu:7:16|local file path traverses outside the files directory"]
    );
    let text = format!(
        "{HEAD}storage:\n  files:\n    - path: /etc/a\n      contents:\n        local: b.txt\n"
    );
    assert_eq!(
        diags_with(&text, false, &files),
        ["error in.bu:7:16|local file \"b.txt\" does not exist in the files directory"]
    );
    let text = format!("{HEAD}storage:\n  trees:\n    - local: t\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:5:12|local file paths are relative to a files directory that must be specified with -d/--files-dir"]
    );
    let text = "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys_local: [k.pub]\n";
    assert_eq!(
        diags(text),
        ["error in.bu:6:34|local file paths are relative to a files directory that must be specified with -d/--files-dir"]
    );
}

#[test]
fn one_source_per_resource_and_unit() {
    let text = format!("{HEAD}storage:\n  files:\n    - path: /etc/a\n      contents:\n        inline: x\n        source: https://example.com/a\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:8:17|only one of the following can be set: inline, local, source"]
    );
    let files = MemFileSource::new().file("u", "[Unit]\n");
    let text = "variant: fcos\nversion: 1.5.0\nsystemd:\n  units:\n    - name: a.service\n      contents: x\n      contents_local: u\n";
    assert_eq!(
        diags_with(text, false, &files),
        ["error in.bu:7:23|only one of the following can be set: contents, contents_local"]
    );
}

#[test]
fn paths_modes_and_names_are_validated() {
    let text = format!(
        "{HEAD}storage:\n  files:\n    - path: etc/a\n    - path: /etc//b\n      mode: 0o17777\n"
    );
    assert_eq!(
        diags(&text),
        [
            "error in.bu:5:13|path not absolute",
            "error in.bu:6:13|path is not fully simplified",
            "error in.bu:7:13|illegal file mode 8191",
        ]
    );
    let text = format!(
        "{HEAD}systemd:\n  units:\n    - name: k3s\n      dropins:\n        - name: x.txt\n"
    );
    assert_eq!(
        diags(&text),
        [
            "error in.bu:5:13|invalid systemd unit extension",
            "error in.bu:7:17|invalid systemd unit drop-in extension",
        ]
    );
}

#[test]
fn duplicates_are_reported_with_the_first_definition() {
    let text = format!(
        "{HEAD}storage:\n  files:\n    - path: /etc/a\n  directories:\n    - path: /etc/a\nsystemd:\n  units:\n    - name: a.service\n    - name: a.service\n"
    );
    assert_eq!(
        diags(&text),
        [
            "error in.bu:7:13|duplicate path /etc/a: this directory is already defined as a file at line 5",
            "error in.bu:11:13|duplicate unit `a.service` (first defined at line 10)",
        ]
    );
}

#[test]
fn decimal_modes_warn_and_strict_makes_them_errors() {
    let text = format!("{HEAD}storage:\n  files:\n    - path: /etc/a\n      mode: 644\n");
    assert_eq!(
        diags(&text),
        ["warning in.bu:6:13|unreasonable mode would be reasonable if specified in octal; remember to add a leading zero"]
    );
    assert_eq!(
        diags_with(&text, true, &NoFiles),
        ["error in.bu:6:13|unreasonable mode would be reasonable if specified in octal; remember to add a leading zero"]
    );
}

#[test]
fn bad_scalars_and_mount_units() {
    let text = format!("{HEAD}storage:\n  files:\n    - path: /etc/a\n      overwrite: maybe\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:6:18|expected a boolean, found `maybe`"]
    );
    let text = format!("{HEAD}storage:\n  filesystems:\n    - device: /dev/vdb\n      path: /var/x\n      with_mount_unit: true\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:7:24|format is required if with_mount_unit is true"]
    );
    let text = format!("{HEAD}boot_device:\n  mirror:\n    devices: [/dev/sda]\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:5:12|mirroring requires at least two devices"]
    );
    let text = format!("{HEAD}boot_device:\n  layout: s390x-eckd\n  luks:\n    tpm2: true\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:4:11|layout must be one of: aarch64, ppc64le, x86_64"]
    );
}

#[test]
fn quoted_numbers_and_booleans_are_strings_as_in_butane() {
    // go-yaml types `"0644"` as !!str and refuses it for Butane's `*int` mode field.
    let text = format!("{HEAD}storage:\n  files:\n    - path: /etc/a\n      mode: \"0644\"\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:6:13|expected a whole number, found a quoted string"]
    );
    let err = translate("in.bu", &text, &TranslateOptions::default(), &NoFiles).unwrap_err();
    assert!(err[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("remove the quotes"));
    let text = format!("{HEAD}systemd:\n  units:\n    - name: a.service\n      enabled: 'true'\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:6:16|expected a boolean, found a quoted string"]
    );
    let text = format!("{HEAD}storage:\n  disks:\n    - device: /dev/vda\n      partitions:\n        - number: \"4\"\n");
    assert_eq!(
        diags(&text),
        ["error in.bu:7:19|expected a whole number, found a quoted string"]
    );
    // The same values unquoted are fine, and so are quoted strings where strings belong.
    let text = format!("{HEAD}storage:\n  files:\n    - path: \"/etc/a\"\n      mode: 0644\n      overwrite: true\n      contents:\n        inline: \"x\"\n");
    assert_eq!(diags(&text), Vec::<String>::new());
}
