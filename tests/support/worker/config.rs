//! The worker node's configuration files: mounts, CNI and containerd.

use std::path::Path;

use super::CNI_BIN;

/// `mount` of an overlay on `target` whose writes go to `dir/<name>-upper`.
pub(super) fn overlay(target: &str, dir: &Path, name: &str) -> String {
    format!(
        "mount -t overlay overlay -o lowerdir={target},upperdir={upper},workdir={work} {target}",
        upper = dir.join(format!("{name}-upper")).display(),
        work = dir.join(format!("{name}-work")).display(),
    )
}

/// The bridge plugin with host-local addresses from `pod_cidr`: every pod of
/// the node on one bridge in the node's network namespace. What a pod sends
/// off the node leaves with the node's address (`ipMasq`), so hosts of the
/// test network answer a pod without a route to the pod network.
pub(super) fn cni_config(pod_cidr: &str) -> String {
    format!(
        r#"{{"cniVersion": "0.4.0", "name": "gantry-test", "plugins": [
  {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{pod_cidr}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}}}
]}}
"#
    )
}

/// containerd 1.6's configuration for the node: state and socket in the
/// node's /run, its content under `root`, runc with cgroupfs, the CRI plugin
/// with the node's CNI and the locally built pause image as the sandbox.
pub(super) fn containerd_config(root: &Path) -> String {
    let pause = gantry_renderer::versions::release(gantry_renderer::versions::newest().minor)
        .expect("the newest minor is supported")
        .pause;
    format!(
        r#"version = 2
root = "{root}/root"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:{pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
"#,
        root = root.display()
    )
}
