//! OpenStack user-data (`gantry cloud-init`) that joins a VM to a tenant:
//! installs kubelet and kubeadm, picks the node IP, and runs `kubeadm join`.
//! Every value that goes into the script is validated and shell-quoted.

use gantry_pki::JoinValues;
use gantry_renderer::KubeVersion;
use ipnet::Ipv4Net;

use crate::access::TenantAccess;

/// Options of `gantry cloud-init`.
#[derive(Debug, Clone)]
pub struct CloudInitOptions {
    /// The kubelet's `node-ip` is the address in this network (VMs often have
    /// several NICs); without it the kubelet picks the default route's.
    pub node_network: Option<Ipv4Net>,
    /// An https apt repository of kubelet and kubeadm packages (pkgs.k8s.io layout).
    pub package_repo: String,
    /// `MAJOR.MINOR.PATCH` of the kubelet and kubeadm packages.
    pub kubernetes_version: String,
    /// The VM image already holds a configured containerd, kubelet and
    /// kubeadm, with swap off and the kernel settings kubeadm needs (an
    /// image baked with Packer, say): the script installs and changes
    /// nothing on the host; it picks the node IP and joins.
    pub preinstalled: bool,
}

/// The default package repository for a version: pkgs.k8s.io's per-minor deb repository.
pub fn default_package_repo(version: &gantry_renderer::KubeVersion) -> String {
    format!(
        "https://pkgs.k8s.io/core:/stable:/v1.{}/deb/",
        version.minor
    )
}

/// Picks the kubelet's node IP: reads `ip -o addr show` on stdin and prints
/// the first IPv4 address inside the network given as $1 (POSIX sh, tested
/// with sample outputs of VMs with several NICs).
pub const NODE_IP_SCRIPT: &str = r#"#!/bin/sh
# gantry-node-ip CIDR < `ip -o addr show`: the first IPv4 address in CIDR.
set -eu
cidr=$1
network=${cidr%/*}
prefix=${cidr#*/}

to_int() {
  old_ifs=$IFS
  IFS=.
  # shellcheck disable=SC2086 # split the dotted quad on purpose
  set -- $1
  IFS=$old_ifs
  echo $(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 ))
}

if [ "$prefix" -eq 0 ]; then
  mask=0
else
  mask=$(( (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF ))
fi
want=$(( $(to_int "$network") & mask ))
while read -r _ _ family address _; do
  [ "$family" = inet ] || continue
  ip=${address%/*}
  case $ip in 127.*) continue ;; esac
  if [ $(( $(to_int "$ip") & mask )) -eq "$want" ]; then
    echo "$ip"
    exit 0
  fi
done
echo "gantry-node-ip: no interface has an IPv4 address in $cidr" >&2
exit 1
"#;

/// The join script the VM runs once: container runtime, kubelet and
/// kubeadm from the package repository, the node IP, then `kubeadm join`.
fn join_script(options: &CloudInitOptions) -> String {
    let node_ip = match &options.node_network {
        Some(network) => format!(
            "node_ip=$(ip -o addr show | /usr/local/sbin/gantry-node-ip {network})\n\
             sed -i \"s/__GANTRY_NODE_IP__/$node_ip/\" /etc/gantry/join-configuration.yaml\n"
        ),
        None => String::new(),
    };
    if options.preinstalled {
        return format!(
            "#!/bin/sh\n\
             # Joins this VM, whose image holds containerd, kubelet and kubeadm {version}, to the tenant cluster.\n\
             set -eu\n\n\
             {node_ip}kubeadm join --config /etc/gantry/join-configuration.yaml\n",
            version = shell_quote(&options.kubernetes_version),
        );
    }
    format!(
        r#"#!/bin/sh
# Installs containerd, kubelet and kubeadm {version} and joins this VM to the tenant cluster.
set -eu
repo={repo}
version={version}
export DEBIAN_FRONTEND=noninteractive

swapoff -a
modprobe overlay
modprobe br_netfilter
printf 'overlay\nbr_netfilter\n' > /etc/modules-load.d/gantry.conf
printf 'net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' > /etc/sysctl.d/90-gantry.conf
sysctl --system

apt-get update
apt-get install -y apt-transport-https ca-certificates curl gpg containerd
mkdir -p /etc/apt/keyrings /etc/containerd
curl -fsSL "${{repo}}Release.key" | gpg --dearmor --yes -o /etc/apt/keyrings/gantry-kubernetes.gpg
echo "deb [signed-by=/etc/apt/keyrings/gantry-kubernetes.gpg] ${{repo}} /" > /etc/apt/sources.list.d/gantry-kubernetes.list
apt-get update
apt-get install -y "kubelet=${{version}}-*" "kubeadm=${{version}}-*"
apt-mark hold kubelet kubeadm

containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml
systemctl restart containerd
systemctl enable kubelet

{node_ip}kubeadm join --config /etc/gantry/join-configuration.yaml
"#,
        repo = shell_quote(&options.package_repo),
        version = shell_quote(&options.kubernetes_version),
    )
}

/// `value` as one word of a POSIX shell, whatever it holds: in single quotes,
/// each `'` written as `'\''`. The values are validated too; this makes a
/// value that slips through inert.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Why `repo` is not a package repository URL gantry puts into a script, if
/// it is not: an https URL of plain URL characters (no quotes, `$`,
/// backticks, parentheses, backslashes, spaces or control characters).
/// https because the script fetches the repository's signing key from the
/// same URL: over plain http anyone on the path could hand the node a key of
/// their own, and then packages of their own, run as root.
pub fn package_repo_problem(repo: &str) -> Option<&'static str> {
    let Some(rest) = repo.strip_prefix("https://") else {
        return Some(
            "must be an https URL: the script fetches the repository's signing key from it, \
             which plain http would let anyone on the path replace",
        );
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Some("must name a host");
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!&*+,;=%".contains(c);
    if !repo.chars().all(plain) {
        return Some(
            "may hold only URL characters (letters, digits and -._~:/?#[]@!&*+,;=%): \
             no quotes, $, backticks, parentheses, backslashes, spaces or control characters",
        );
    }
    None
}

/// How many minor versions a kubelet may be older than its apiserver
/// (Kubernetes' version skew policy; never newer).
pub const KUBELET_MINORS_BEHIND: u32 = 3;

/// Why a kubelet (and kubeadm) of `kubelet` may not join a tenant whose
/// apiserver runs `tenant`, if it may not: Kubernetes' version skew policy
/// allows a kubelet up to [`KUBELET_MINORS_BEHIND`] minors older than its
/// apiserver, and never of a newer minor. A newer patch of the same minor is
/// within the policy (and kubeadm's preflight check): node images often
/// carry a patch release before the masters are upgraded.
pub fn kubelet_skew_problem(kubelet: KubeVersion, tenant: KubeVersion) -> Option<String> {
    if kubelet.minor > tenant.minor {
        return Some(format!(
            "is newer than the tenant's {tenant}: a kubelet may not be newer than its apiserver \
             (Kubernetes' version skew policy); upgrade the tenant first"
        ));
    }
    if tenant.minor - kubelet.minor > KUBELET_MINORS_BEHIND {
        return Some(format!(
            "is more than {KUBELET_MINORS_BEHIND} minor versions older than the tenant's \
             {tenant}, which Kubernetes' version skew policy does not support"
        ));
    }
    None
}

/// Why `network` cannot be the nodes' network, if it cannot: one that holds
/// 127.0.0.1 (such as 0.0.0.0/0) would pick the loopback address.
pub fn node_network_problem(network: &Ipv4Net) -> Option<&'static str> {
    network.contains(&std::net::Ipv4Addr::LOCALHOST).then_some(
        "holds 127.0.0.1, which the node-IP picker would choose: give the nodes' network",
    )
}

/// A kubeadm `JoinConfiguration` (v1beta4) that pins the tenant's CA.
fn join_configuration(join: &JoinValues, node_ip: bool) -> String {
    let mut configuration = serde_json::json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": join.endpoint().to_string(),
                "token": join.token().expose(),
                "caCertHashes": [join.ca_cert_hash()],
            },
        },
    });
    if node_ip {
        configuration["nodeRegistration"] = serde_json::json!({
            "kubeletExtraArgs": [{"name": "node-ip", "value": "__GANTRY_NODE_IP__"}],
        });
    }
    serde_yaml::to_string(&configuration).expect("YAML")
}

/// `#cloud-config` user-data that joins an OpenStack VM to the tenant. Only
/// checked values go in: the name is a tenant name, the endpoint, token and
/// pin are [`JoinValues`], the version a parsed one.
pub fn cloud_init(access: &TenantAccess, options: &CloudInitOptions) -> String {
    let mut files = vec![
        serde_json::json!({
            "path": "/etc/gantry/join-configuration.yaml",
            "permissions": "0600",
            "owner": "root:root",
            "content": join_configuration(&access.join, options.node_network.is_some()),
        }),
        serde_json::json!({
            "path": "/usr/local/sbin/gantry-join",
            "permissions": "0700",
            "owner": "root:root",
            "content": join_script(options),
        }),
    ];
    if options.node_network.is_some() {
        files.push(serde_json::json!({
            "path": "/usr/local/sbin/gantry-node-ip",
            "permissions": "0755",
            "owner": "root:root",
            "content": NODE_IP_SCRIPT,
        }));
    }
    let document = serde_json::json!({
        "write_files": files,
        "runcmd": [["/usr/local/sbin/gantry-join"]],
    });
    format!(
        "#cloud-config\n# Joins this VM to tenant {} (Kubernetes {}) at {}. Holds a join token: treat as a secret.\n\
         # The VM's network must reach that endpoint, and the tenant's konnectivity tunnel\n\
         # (port 8132 of the endpoint's host, or the tunnel's node port; docs/operations.md).\n{}",
        access.name,
        options.kubernetes_version,
        access.join.endpoint(),
        serde_yaml::to_string(&document).expect("YAML")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that would run a command if pasted into a script unquoted.
    const HOSTILE: [&str; 6] = [
        "https://x/'; touch PWNED; '",
        "https://x/$(touch PWNED)",
        "https://x/`touch PWNED`",
        "https://x/\ntouch PWNED\n",
        "it's \"quoted\" \\ and $HOME",
        "'",
    ];

    #[test]
    fn shell_quote_keeps_every_value_one_inert_word_for_a_real_sh() {
        let dir = tempfile::tempdir().unwrap();
        for value in HOSTILE {
            let output = std::process::Command::new("sh")
                .current_dir(dir.path())
                .arg("-c")
                .arg(format!("printf '%s' {}", shell_quote(value)))
                .output()
                .expect("a POSIX sh");
            assert!(output.status.success(), "{value:?}");
            assert_eq!(String::from_utf8(output.stdout).unwrap(), value);
            assert!(
                !dir.path().join("PWNED").exists(),
                "{value:?} ran a command"
            );
        }
    }

    #[test]
    fn package_repos_are_plain_https_urls() {
        assert_eq!(
            package_repo_problem("https://pkgs.k8s.io/core:/stable:/v1.37/deb/"),
            None
        );
        assert_eq!(package_repo_problem("https://mirror.local:8443/k8s/"), None);
        assert!(package_repo_problem("http://mirror.local:8080/k8s/").is_some());
        assert!(package_repo_problem("HTTP://mirror.local/").is_some());
        for hostile in &HOSTILE[..4] {
            assert!(package_repo_problem(hostile).is_some(), "{hostile:?}");
        }
        assert!(package_repo_problem("ftp://x/").is_some());
        assert!(package_repo_problem("https://").is_some());
    }

    #[test]
    fn a_kubelet_is_never_newer_than_the_tenant_and_at_most_three_minors_older() {
        let v = |minor, patch| KubeVersion { minor, patch };
        let tenant = v(37, 2);
        for ok in [v(37, 2), v(37, 0), v(37, 3), v(36, 9), v(34, 0)] {
            assert_eq!(kubelet_skew_problem(ok, tenant), None, "{ok}");
        }
        for (newer, older) in [(v(38, 0), v(33, 9)), (v(39, 1), v(30, 0))] {
            let problem = kubelet_skew_problem(newer, tenant).unwrap();
            assert!(
                problem.starts_with("is newer than the tenant's 1.37.2"),
                "{problem}"
            );
            let problem = kubelet_skew_problem(older, tenant).unwrap();
            assert!(
                problem.starts_with("is more than 3 minor versions older"),
                "{problem}"
            );
        }
    }

    #[test]
    fn a_node_network_must_not_hold_loopback() {
        assert!(node_network_problem(&"0.0.0.0/0".parse().unwrap()).is_some());
        assert!(node_network_problem(&"127.0.0.0/8".parse().unwrap()).is_some());
        assert_eq!(node_network_problem(&"10.0.0.0/8".parse().unwrap()), None);
    }
}
