//! Test hosts in network namespaces that the test creates and removes: one
//! "switch" namespace holding a bridge, and one namespace per host, wired to
//! the bridge by a veth pair. Addresses come from 198.18.0.0/15, the range
//! set aside for testing network devices (RFC 2544), on a /24 of the test's
//! choosing. The namespaces have no route out, so no packet reaches the
//! machine's own network. (Link-local addresses would be the obvious choice,
//! but kube-apiserver refuses to advertise one.)
//!
//! Every host shares one hosts file (`ip netns exec` bind-mounts
//! /etc/netns/<ns>/hosts over /etc/hosts), which stands in for cluster DNS:
//! the names a tenant's certificates carry resolve to the test's addresses.
//! Its resolv.conf names only its own loopback, so no lookup leaves it.
//! `ip netns exec` also gives each process its own mount namespace.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::run_ok;

/// One host: a network namespace with one address on the test's bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub namespace: String,
    pub address: String,
}

impl Host {
    /// `ip netns exec <ns> PROGRAM`: a command that runs on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }
}

/// A bridge and the hosts attached to it; every namespace is deleted on drop.
pub struct TestNetwork {
    prefix: String,
    subnet: String,
    switch: String,
    namespaces: Vec<String>,
    hosts_file: String,
}

fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

fn must_be_root() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    assert!(
        root,
        "this test creates network namespaces (ip netns) and must run as root"
    );
}

impl TestNetwork {
    /// A new bridge for hosts on `subnet` (three octets, e.g. "198.18.213").
    pub fn new(subnet: &str) -> Self {
        assert!(
            subnet.starts_with("198.18.") || subnet.starts_with("198.19."),
            "test hosts use addresses of 198.18.0.0/15 only"
        );
        must_be_root();
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "gt{}n{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let mut network = TestNetwork {
            switch: String::new(),
            prefix,
            subnet: subnet.to_string(),
            namespaces: Vec::new(),
            hosts_file: "127.0.0.1 localhost\n".into(),
        };
        network.switch = network.add_namespace("sw");
        ip(&[
            "-n",
            &network.switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
        ]);
        ip(&["-n", &network.switch, "link", "set", "br0", "up"]);
        network
    }

    fn add_namespace(&mut self, label: &str) -> String {
        let name = format!("{}-{label}", self.prefix);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        let etc = PathBuf::from("/etc/netns").join(&name);
        std::fs::create_dir_all(&etc).expect("create /etc/netns/<ns>");
        std::fs::write(etc.join("hosts"), &self.hosts_file).expect("write hosts file");
        // Names outside the hosts file go to this host's own loopback (where
        // nothing answers), never to the machine's resolver.
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("write resolv.conf");
        name
    }

    /// The address `<subnet>.<last_octet>`.
    pub fn address(&self, last_octet: u8) -> String {
        format!("{}.{last_octet}", self.subnet)
    }

    /// A new host with address `<subnet>.<last_octet>`.
    pub fn host(&mut self, label: &str, last_octet: u8) -> Host {
        let namespace = self.add_namespace(label);
        let address = self.address(last_octet);
        let port = format!("p{last_octet}");
        let switch = self.switch.clone();
        ip(&[
            "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &namespace,
        ]);
        ip(&["-n", &switch, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &switch, "link", "set", &port, "up"]);
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &namespace, "link", "set", "eth0", "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        Host { namespace, address }
    }

    /// Adds `address name` to the hosts file of every host, present and
    /// future. A name listed twice resolves to both addresses, in order.
    pub fn resolve(&mut self, name: &str, address: &str) {
        self.hosts_file.push_str(&format!("{address} {name}\n"));
        for namespace in &self.namespaces {
            // In place: a running process sees the file it was started with.
            std::fs::write(
                PathBuf::from("/etc/netns").join(namespace).join("hosts"),
                &self.hosts_file,
            )
            .expect("write hosts file");
        }
    }

    /// Gives `host` a second address (a virtual IP, as keepalived or a cloud
    /// load balancer would), and makes every host forget where it was before.
    pub fn move_virtual_ip(&self, address: &str, from: Option<&Host>, to: &Host) {
        if let Some(from) = from {
            ip(&[
                "-n",
                &from.namespace,
                "addr",
                "del",
                &format!("{address}/32"),
                "dev",
                "eth0",
            ]);
        }
        ip(&[
            "-n",
            &to.namespace,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "eth0",
        ]);
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["-n", namespace, "neigh", "flush", "all"])
                .status();
        }
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(namespace));
        }
    }
}
