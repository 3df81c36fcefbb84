//! The etcd that `gantry render` writes really runs: the StatefulSet's command
//! and arguments, unmodified except for what a kubelet substitutes
//! (`$(POD_NAME)`, the mounted Secret and volume paths, the binary's location),
//! run as a real 3-member cluster — one network namespace per member, each
//! with its own address and an /etc/hosts (`ip netns exec` mounts
//! /etc/netns/<ns>/hosts) that resolves the members' DNS names, the same
//! names their certificates carry. etcdctl with `apiserver-etcd-client` then
//! writes and reads through those names.
//!
//! Isolation: every interface, the bridge included, lives in namespaces this
//! test creates and deletes; the addresses are link-local (169.254.213.0/24),
//! so no packet of the test reaches the host's own network.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use gantry_tests::{KillOnDrop, render_example, run_ok, tool, wait_until};
use serde_json::Value;

const NAMESPACE: &str = "tcp-tenant-a";
const MOUNT_PKI: &str = "/etc/kubernetes/pki/etcd";
const MOUNT_DATA: &str = "/var/lib/etcd";

/// Network namespaces (a switch with a bridge, one per member, one for the
/// client) and their hosts files, removed on drop.
struct TestNetwork {
    prefix: String,
    namespaces: Vec<String>,
}

impl TestNetwork {
    fn ip(args: &[&str]) {
        run_ok(Command::new("ip").args(args));
    }

    fn new(hosts: &[(String, String)], members: usize) -> Self {
        assert!(
            Command::new("id")
                .arg("-u")
                .output()
                .map(|o| o.stdout == b"0\n")
                .unwrap_or(false),
            "this test creates network namespaces (ip netns) and must run as root"
        );
        let prefix = format!("gt{}", std::process::id());
        let mut network = TestNetwork {
            prefix: prefix.clone(),
            namespaces: Vec::new(),
        };
        let switch = network.add("sw");
        Self::ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        Self::ip(&["-n", &switch, "link", "set", "br0", "up"]);
        let hosts_file: String = hosts
            .iter()
            .map(|(ip, name)| format!("{ip} {name}\n"))
            .collect();
        let mut attach = |label: &str, address: &str| {
            let ns = network.add(label);
            let port = format!("v{label}");
            Self::ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            Self::ip(&["-n", &switch, "link", "set", &port, "master", "br0"]);
            Self::ip(&["-n", &switch, "link", "set", &port, "up"]);
            Self::ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]);
            Self::ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            Self::ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let etc = PathBuf::from("/etc/netns").join(&ns);
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(
                etc.join("hosts"),
                format!("127.0.0.1 localhost\n{hosts_file}"),
            )
            .unwrap();
        };
        for i in 0..members {
            attach(&i.to_string(), &member_address(i));
        }
        attach("c", "169.254.213.100");
        network
    }

    fn add(&mut self, label: &str) -> String {
        let name = format!("{}-{label}", self.prefix);
        Self::ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        name
    }

    fn namespace(&self, label: &str) -> String {
        format!("{}-{label}", self.prefix)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
    }
}

fn member_address(index: usize) -> String {
    format!("169.254.213.{}", 10 + index)
}

fn member_host(index: usize) -> String {
    format!("etcd-{index}.etcd.{NAMESPACE}.svc")
}

fn read_yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn find_manifest(dir: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {dir:?}"))
}

/// What the kubelet does to a container's command line: expand `$(VAR)` from
/// the container's env (here only the downward-API POD_NAME).
fn kubelet_expand(arg: &str, pod_name: &str) -> String {
    arg.replace("$(POD_NAME)", pod_name)
}

#[test]
fn the_rendered_etcd_statefulset_runs_as_a_three_member_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let out = render_example(tmp.path());

    let statefulset = read_yaml(&find_manifest(
        &out.join("service"),
        "-statefulset-etcd.yaml",
    ));
    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let replicas = statefulset["spec"]["replicas"].as_u64().unwrap() as usize;
    assert_eq!(replicas, 3);
    assert_eq!(container["env"][0]["name"], "POD_NAME");
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let mounts: Vec<(&str, &str)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(mounts, [("data", MOUNT_DATA), ("pki", MOUNT_PKI)]);
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "etcd-certs");

    // The Secret volume, as the kubelet would project it.
    let secret = read_yaml(&find_manifest(
        &out.join("service"),
        "-secret-etcd-certs.yaml",
    ));
    let pki_dir = tmp.path().join("etcd-certs");
    std::fs::create_dir_all(&pki_dir).unwrap();
    for (key, value) in secret["data"].as_object().unwrap() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap();
        std::fs::write(pki_dir.join(key), bytes).unwrap();
    }

    let hosts: Vec<(String, String)> = (0..replicas)
        .map(|i| (member_address(i), member_host(i)))
        .collect();
    let network = TestNetwork::new(&hosts, replicas);

    let mut members = Vec::new();
    let mut logs = Vec::new();
    for i in 0..replicas {
        let pod_name = format!("etcd-{i}");
        let data_dir = tmp.path().join(format!("{pod_name}-data"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let mounted = |arg: String| {
            arg.replace(MOUNT_PKI, pki_dir.to_str().unwrap())
                .replace(MOUNT_DATA, data_dir.to_str().unwrap())
        };
        let command: Vec<String> = container["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(command, ["etcd"], "the image's entry point");
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| mounted(kubelet_expand(a.as_str().unwrap(), &pod_name)))
            .collect();
        let log = tmp.path().join(format!("{pod_name}.log"));
        members.push(KillOnDrop::spawn(
            Command::new("ip")
                .args(["netns", "exec", &network.namespace(&i.to_string())])
                .arg(tool("etcd"))
                .args(&args)
                .stdout(File::create(&log).unwrap())
                .stderr(File::create(&log).unwrap()),
        ));
        logs.push(log);
    }
    let show_logs = || {
        logs.iter()
            .map(|log| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                format!(
                    "--- {}\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    let endpoints: Vec<String> = (0..replicas)
        .map(|i| format!("https://{}:2379", member_host(i)))
        .collect();
    let client = network.namespace("c");
    let etcdctl = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &client])
            .arg(tool("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!(
                "--cacert={}",
                out.join("pki/etcd/ca.crt").display()
            ))
            .arg(format!(
                "--cert={}",
                out.join("pki/apiserver-etcd-client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                out.join("pki/apiserver-etcd-client.key").display()
            ))
            .args(["--dial-timeout=3s", "--command-timeout=5s"])
            .args(args)
            .output()
            .expect("run etcdctl")
    };
    let healthy = wait_until(Duration::from_secs(60), || {
        etcdctl(&["endpoint", "health"]).status.success()
    });
    assert!(
        healthy,
        "the rendered etcd never became healthy:\n{}",
        show_logs()
    );
    let members_list = String::from_utf8_lossy(&etcdctl(&["member", "list"]).stdout).into_owned();
    for i in 0..replicas {
        assert!(
            members_list.contains(&format!("etcd-{i}, https://{}:2380", member_host(i))),
            "{members_list}"
        );
    }
    let put = etcdctl(&["put", "/registry/gantry", "rendered"]);
    assert!(
        put.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&put.stderr),
        show_logs()
    );
    let get = etcdctl(&["get", "/registry/gantry", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "rendered");
    drop(members);
}
