//! A service cluster of the test's own: what a platform team runs gantry on,
//! made of the same real parts as a tenant.
//!
//! - **Masters**: a tenant that gantry rendered (`control_plane.rs`: etcd,
//!   kube-apiserver, kube-controller-manager and kube-scheduler of the newest
//!   minor, as processes), with its tenant set applied. So the service
//!   cluster has what gantry gives every tenant: kubeadm's bootstrap objects,
//!   kube-proxy's DaemonSet and CoreDNS.
//! - **A node**: a [`Worker`] (Debian's containerd and runc, the CNI bridge
//!   plugin, the real kubelet) joined with `kubeadm join` and the service
//!   cluster's own join command. kube-proxy (iptables) and CoreDNS run on it
//!   as pods, from images built by scripts/install-test-tools. The bridge
//!   plugin does not enforce NetworkPolicy.
//! - **Storage**: no provisioner runs; [`ServiceCluster::add_volumes`] makes
//!   hostPath PersistentVolumes on the node, as an administrator would.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::control_plane::{ControlPlane, kubernetes_bin, pod_cidr_of_subnet, start_small_tenant};
use crate::images::image;
use crate::worker::Worker;
use crate::{KillOnDrop, output_text};

/// The node's name, and its address in the service cluster's network.
pub const NODE: &str = "service-node";
const NODE_OCTET: u8 = 50;

/// A running service cluster; see the module docs. Everything stops on drop.
pub struct ServiceCluster {
    /// Declared first: dropped (containers killed) before the masters.
    pub node: Worker,
    /// Approves the node's kubelet serving certificate.
    _approver: KillOnDrop,
    pub plane: ControlPlane,
    pub version: String,
}

impl ServiceCluster {
    /// Starts the masters in `dir`, on test network 198.18.`subnet`.0/24,
    /// and the node with `images` imported besides its own (pause,
    /// kube-proxy, CoreDNS); returns once the node is Ready and kube-proxy
    /// and CoreDNS run.
    pub fn start(dir: &Path, subnet: u8, images: &[PathBuf]) -> Self {
        let version = gantry_renderer::versions::newest().to_string();
        let release = gantry_renderer::versions::release(gantry_renderer::versions::newest().minor)
            .expect("the newest minor is supported");
        let mut plane = start_small_tenant(dir, "service", subnet);
        let bundle = plane.bundle.clone();
        let mut node_images = vec![
            image(&format!("pause-{}.tar", release.pause)),
            image(&format!("kube-proxy-v{version}.tar")),
            image(&format!("coredns-{}.tar", release.coredns)),
        ];
        node_images.extend_from_slice(images);
        let kubernetes = kubernetes_bin(&version);
        let mut node = Worker::start(
            &mut plane.network,
            NODE,
            NODE_OCTET,
            &pod_cidr_of_subnet(subnet),
            &dir.join(NODE),
            &node_images,
        );
        node.start_kubelet_service(&kubernetes.join("kubelet"));
        let join = std::fs::read_to_string(bundle.join("join-command")).unwrap();
        let joined = node.kubeadm_join(&join, &kubernetes);
        assert!(
            joined.status.success(),
            "kubeadm join of the service node: {}\n{}",
            output_text(&joined),
            node.logs()
        );
        // No operator runs this cluster: approve the node's serving certificate as an admin would.
        let networks = ["10.96.0.0/12".to_string(), pod_cidr_of_subnet(subnet)];
        let approver = crate::approver::start_kubelet_serving_approver(&plane, &networks);
        let cluster = ServiceCluster {
            node,
            _approver: approver,
            plane,
            version,
        };
        cluster.wait_for(
            "the service node turns Ready",
            &[
                "get",
                "node",
                NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            |out| out == "True",
        );
        cluster.wait_for(
            "kube-proxy runs on the service node",
            &[
                "-n",
                "kube-system",
                "get",
                "daemonset",
                "kube-proxy",
                "-o",
                "jsonpath={.status.numberReady}",
            ],
            |out| out == "1",
        );
        cluster.wait_for(
            "CoreDNS serves",
            &[
                "-n",
                "kube-system",
                "get",
                "deployment",
                "coredns",
                "-o",
                "jsonpath={.status.readyReplicas}/{.spec.replicas}",
            ],
            |out| out.split_once('/').is_some_and(|(ready, all)| ready == all),
        );
        cluster
    }

    /// kubectl with the service cluster's `admin.conf`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.plane.kubectl("admin.conf", args)
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}\n{}",
            output_text(&output),
            self.logs()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (up to 5 minutes) until kubectl `args` print what `accept`
    /// takes; panics with the cluster's state and logs otherwise.
    pub fn wait_for(&self, what: &str, args: &[&str], accept: impl Fn(&str) -> bool) -> String {
        self.wait_for_within(what, Duration::from_secs(300), args, accept)
    }

    pub fn wait_for_within(
        &self,
        what: &str,
        limit: Duration,
        args: &[&str],
        accept: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_kubectl("admin.conf", what, limit, args, accept)
    }

    /// [`ServiceCluster::wait_for_within`] with `kubeconfig` (one of the
    /// service cluster's bundle, or any path, such as a tenant's).
    pub fn wait_kubectl(
        &self,
        kubeconfig: &str,
        what: &str,
        limit: Duration,
        args: &[&str],
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        let seen = crate::wait_until(limit, || {
            let output = self.plane.kubectl(kubeconfig, args);
            last = output_text(&output);
            output.status.success() && accept(String::from_utf8_lossy(&output.stdout).trim())
        });
        assert!(
            seen,
            "{what}: not within {} s; kubectl {args:?} last said: {last}\n{}",
            limit.as_secs(),
            self.logs()
        );
        last.trim().to_string()
    }

    /// `helm install <name> chart/tenant` with `values` (YAML, written to a
    /// file beside the bundle), which must succeed.
    pub fn helm_install_tenant(&self, name: &str, values: &str) {
        let file = self.plane.bundle.join(format!("{name}-values.yaml"));
        std::fs::write(&file, values).unwrap();
        let chart = crate::repo_root().join("chart/tenant");
        let helm = self.plane.helm(&[
            "install",
            name,
            chart.to_str().unwrap(),
            "-f",
            file.to_str().unwrap(),
        ]);
        assert!(
            helm.status.success(),
            "helm install {name}: {}",
            output_text(&helm)
        );
    }

    /// `helm upgrade <name> chart/tenant --reuse-values --set <set>`, which
    /// must succeed.
    pub fn helm_upgrade_tenant(&self, name: &str, set: &str) {
        let chart = crate::repo_root().join("chart/tenant");
        let helm = self.plane.helm(&[
            "upgrade",
            name,
            chart.to_str().unwrap(),
            "--reuse-values",
            "--set",
            set,
        ]);
        assert!(
            helm.status.success(),
            "helm upgrade {name} --set {set}: {}",
            output_text(&helm)
        );
    }

    /// `count` hostPath PersistentVolumes of `size` on the node, without a
    /// storage class (so claims without one bind to them), writable by any
    /// user (a pod's `fsGroup` does not apply to hostPath).
    pub fn add_volumes(&self, prefix: &str, count: usize, size: &str) {
        for index in 0..count {
            let path = format!("/var/lib/gantry-test-volumes/{prefix}-{index}");
            crate::run_ok(
                self.node
                    .command("install")
                    .args(["-d", "-m", "0777", &path]),
            );
            let manifest = format!(
                "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {prefix}-{index}\n\
                 spec:\n  capacity:\n    storage: {size}\n  accessModes: [ReadWriteOnce]\n  \
                 persistentVolumeReclaimPolicy: Delete\n  hostPath:\n    path: {path}\n    \
                 type: Directory\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      \
                 - matchExpressions:\n        - {{key: kubernetes.io/hostname, operator: In, values: [{NODE}]}}\n"
            );
            let file = self.plane.bundle.join(format!("{prefix}-{index}.yaml"));
            std::fs::write(&file, manifest).unwrap();
            self.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
        }
    }

    /// The logs of every container in `namespace` (the last lines of each),
    /// with the pods' state: what a failure prints.
    pub fn pod_logs(&self, namespace: &str) -> String {
        let mut text = String::new();
        let pods = self.kubectl(&["-n", namespace, "get", "pods", "-o", "wide"]);
        text.push_str(&format!("--- pods in {namespace}\n{}", output_text(&pods)));
        let names = self.kubectl(&["-n", namespace, "get", "pods", "-o", "name"]);
        for pod in String::from_utf8_lossy(&names.stdout).lines() {
            let logs = self.kubectl(&[
                "-n",
                namespace,
                "logs",
                pod,
                "--all-containers",
                "--tail=30",
            ]);
            text.push_str(&format!("--- {namespace}/{pod}\n{}", output_text(&logs)));
        }
        text
    }

    /// The masters' and the node's logs, and the pods of the cluster.
    pub fn logs(&self) -> String {
        let pods = self.kubectl(&["get", "pods", "-A", "-o", "wide"]);
        let events = self.kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
        let events = output_text(&events);
        let lines: Vec<&str> = events.lines().collect();
        format!(
            "--- pods\n{}\n--- events (last)\n{}\n{}\n{}\n{}",
            output_text(&pods),
            lines[lines.len().saturating_sub(30)..].join("\n"),
            self.pod_logs("kube-system"),
            self.node.logs(),
            self.plane.logs()
        )
    }
}
