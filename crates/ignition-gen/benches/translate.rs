//! Times translating a typical node Butane config (15 files, 5 units, a /var partition).
//! Prints one table row: µs per config and configs per second.

use std::hint::black_box;
use std::time::Instant;

use slipway_ignition_gen::butane::{translate, TranslateOptions};
use slipway_ignition_gen::files::NoFiles;

fn node_config() -> String {
    let mut s = String::from(
        "variant: fcos\nversion: 1.4.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys:\n        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench core@slipway\n",
    );
    s.push_str("storage:\n  disks:\n    - device: /dev/disk/by-id/coreos-boot-disk\n      wipe_table: false\n      partitions:\n        - number: 4\n          label: root\n          size_mib: 16384\n          resize: true\n        - size_mib: 0\n          label: var\n");
    s.push_str("  filesystems:\n    - path: /var\n      device: /dev/disk/by-partlabel/var\n      format: xfs\n      wipe_filesystem: true\n      with_mount_unit: true\n");
    s.push_str("  files:\n");
    for i in 0..15 {
        s.push_str(&format!(
            "    - path: /etc/slipway/file-{i}.conf\n      mode: 0644\n      contents:\n        inline: |\n"
        ));
        for j in 0..(2 + i * 3) {
            s.push_str(&format!(
                "          key_{j} = value number {j} for file {i}\n"
            ));
        }
    }
    s.push_str("systemd:\n  units:\n");
    for i in 0..5 {
        s.push_str(&format!(
            "    - name: unit-{i}.service\n      enabled: true\n      contents: |\n        [Unit]\n        Description=Unit {i}\n        [Service]\n        ExecStart=/usr/bin/true\n        [Install]\n        WantedBy=multi-user.target\n"
        ));
    }
    s
}

fn main() {
    let text = node_config();
    let opts = TranslateOptions {
        no_resource_auto_compression: std::env::var_os("NO_GZIP").is_some(),
        ..TranslateOptions::default()
    };
    // Warm up and check it translates.
    let t = translate("node.bu", &text, &opts, &NoFiles).expect("bench config translates");
    let bytes = t.to_json(false).len();
    let n = 2000u32;
    let start = Instant::now();
    for _ in 0..n {
        let t = translate("node.bu", black_box(&text), &opts, &NoFiles).expect("translates");
        black_box(t.to_json(false));
    }
    let per = start.elapsed().as_secs_f64() / f64::from(n);
    println!("| benchmark | input bytes | output bytes | µs/config | configs/s |");
    println!("|---|---|---|---|---|");
    println!(
        "| translate (15 files, 5 units, /var) | {} | {} | {:.1} | {:.0} |",
        text.len(),
        bytes,
        per * 1e6,
        1.0 / per
    );
}
