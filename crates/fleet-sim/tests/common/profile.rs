//! Real node configurations for the simulator's K3s tests: an inventory of servers and
//! agents, rendered by `slipway-ignition-gen` exactly as Slipway renders them, with the K3s
//! artifacts served from 127.0.0.1 for the real Ignition to fetch and verify.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use sha2::{Digest, Sha256};
use slipway_ignition_gen::files::NoFiles;
use slipway_ignition_gen::profile::{render_node, Artifact, ClusterState, ProfileInputs};
use slipway_model::check::Secrets;
use slipway_model::inventory::Inventory;
use slipway_model::repo::RepoFiles;
use slipway_model::secrets::Secret;

/// The K3s version the stand-in binary reports.
pub const K3S_VERSION: &str = "v1.30.4+k3s1";
/// The cluster's token in these tests (throwaway).
pub const TOKEN: &str = "K10sim0123456789abcdef::server:0123456789abcdef";

/// A homelab: `servers` (the first is the bootstrap server) and `agents`, every node in
/// `lab.example` with a `rack` label; API endpoints are the FQDNs of `endpoints` in order.
pub struct Lab {
    pub inventory: Inventory,
    pub secrets: Secrets,
    binary: Artifact,
    script: Artifact,
    base: String,
}

/// Serve `files` (URL path → bytes) over HTTP/1.0 on 127.0.0.1; the base URL.
fn serve(files: BTreeMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader
                    .read_line(&mut header)
                    .map(|n| n == 0)
                    .unwrap_or(true)
                    || header == "\r\n"
                {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            match files.get(&path) {
                Some(body) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(body);
                }
                None => {
                    let _ = write!(
                        stream,
                        "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                    );
                }
            }
        }
    });
    format!("http://{addr}")
}

impl Lab {
    pub fn new(servers: &[&str], agents: &[&str], endpoints: &[&str]) -> Lab {
        Lab::build(servers, agents, endpoints, None)
    }

    /// A lab whose boot server is `base`, serving the K3s artifacts from the
    /// content-addressed `store` (`<store>/<sha256>/<name>`, written here).
    pub fn served_by(
        servers: &[&str],
        agents: &[&str],
        endpoints: &[&str],
        base: &str,
        store: &std::path::Path,
    ) -> Lab {
        Lab::build(servers, agents, endpoints, Some((base, store)))
    }

    /// The K3s binary and install script as artifacts.
    pub fn k3s_artifacts(&self) -> (&Artifact, &Artifact) {
        (&self.binary, &self.script)
    }

    /// The MACs the inventory gives `name`.
    pub fn macs(&self, name: &str) -> Vec<slipway_model::net::MacAddr> {
        self.inventory.node(name).unwrap().macs.clone()
    }

    fn build(
        servers: &[&str],
        agents: &[&str],
        endpoints: &[&str],
        boot_server: Option<(&str, &std::path::Path)>,
    ) -> Lab {
        let binary_bytes = format!(
            "#!/bin/sh\necho 'k3s version {K3S_VERSION} (a1b2c3d4)'\necho 'go version go1.22.5'\n"
        )
        .into_bytes();
        let script_bytes = b"#!/bin/sh\n# stand-in for the upstream K3s install script\n".to_vec();
        let artifact = |name: &str, bytes: &[u8]| Artifact {
            name: name.into(),
            sha256: hex::encode(Sha256::digest(bytes)),
        };
        let binary = artifact("k3s", &binary_bytes);
        let script = artifact("install.sh", &script_bytes);
        let mut served = BTreeMap::new();
        served.insert(format!("/artifacts/{}/k3s", binary.sha256), binary_bytes);
        served.insert(
            format!("/artifacts/{}/install.sh", script.sha256),
            script_bytes,
        );
        let base = match boot_server {
            None => serve(served),
            Some((base, store)) => {
                for (path, bytes) in served {
                    let file = store.join(path.trim_start_matches("/artifacts/"));
                    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                    std::fs::write(file, bytes).unwrap();
                }
                base.to_string()
            }
        };

        let mut files = RepoFiles::new();
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| format!("https://{e}.lab.example:6443"))
            .collect();
        files.insert(
            "cluster.yaml",
            format!(
                "name: sim\nfcos: {{stream: stable}}\nk3s:\n  version: {K3S_VERSION}\n  cluster_cidr: 10.42.0.0/16\n  service_cidr: 10.43.0.0/16\n  disable: [traefik]\n  api_endpoints: [{}]\nboot_server: {{url: \"{base}\"}}\nssh:\n  authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRkR5QKs9b/foCmF7QCA9ebEDQBEAgCvqofX9dtPITY t]\ninstall: {{disk: /dev/disk/by-id/nvme-x}}\n",
                endpoints.join(", ")
            ),
        );
        let mut i = 0;
        for (names, role) in [(servers, "server"), (agents, "agent")] {
            for name in names {
                let bootstrap = if role == "server" && name == &servers[0] {
                    "bootstrap: true\n"
                } else {
                    ""
                };
                files.insert(
                    format!("nodes/{name}.yaml"),
                    format!(
                        "hostname: {name}.lab.example\nrole: {role}\n{bootstrap}mac_address: \"52:54:00:aa:00:{i:02x}\"\nnetwork:\n  dhcp: true\nlabels: {{rack: r{}}}\n",
                        i % 2
                    ),
                );
                i += 1;
            }
        }
        let (inventory, diagnostics) = slipway_model::inventory::load(&files);
        let inventory = inventory.unwrap_or_else(|| panic!("{diagnostics}"));
        Lab {
            inventory,
            secrets: secrets(TOKEN),
            binary,
            script,
            base,
        }
    }

    /// Node `name`'s Ignition, as Slipway renders it, with `secrets`.
    pub fn ignition_with(&self, name: &str, state: ClusterState, secrets: &Secrets) -> String {
        let node = self.inventory.node(name).unwrap();
        let inputs = ProfileInputs {
            commit: "5e1f0000",
            cluster_state: state,
            os_version: "40.20240906.3.0",
            k3s_version: K3S_VERSION,
            k3s_binary: &self.binary,
            k3s_install_script: &self.script,
        };
        let rendered = render_node(&self.inventory, node, secrets, &inputs, &NoFiles)
            .unwrap_or_else(|d| panic!("{d:?}"));
        assert!(!self.base.is_empty());
        rendered.ignition.expose().to_string()
    }

    /// Node `name`'s Ignition, as Slipway renders it.
    pub fn ignition(&self, name: &str, state: ClusterState) -> String {
        self.ignition_with(name, state, &self.secrets)
    }
}

/// Secrets with this K3s token and nothing else.
pub fn secrets(token: &str) -> Secrets {
    Secrets {
        k3s_token: Secret::new(token),
        core_password_hash: None,
        host_keys: BTreeMap::new(),
    }
}
