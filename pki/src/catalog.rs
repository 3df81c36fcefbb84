//! The tenant PKI as data: every CA, leaf and kubeconfig of `pki.md`'s tables,
//! in kubeadm's file layout. Issuing, loading and checking all walk these tables,
//! so a certificate is added or changed here and nowhere else.

use crate::spec::{PkiSpec, San};

/// The three certificate authorities of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Authority {
    /// `pki/ca`: signs the apiserver, kubelet-client and every kubeconfig.
    Cluster,
    /// `pki/front-proxy-ca`: signs the aggregation-layer client.
    FrontProxy,
    /// `pki/etcd/ca`: signs etcd's serving, peer and client certificates.
    Etcd,
}

pub struct CaProfile {
    pub authority: Authority,
    /// Path without extension: `.crt` and `.key` are appended.
    pub base: &'static str,
    pub common_name: &'static str,
}

/// What a leaf certificate is used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// Which subject alternative names a leaf carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanSet {
    None,
    ApiServer,
    Etcd,
}

pub struct LeafProfile {
    pub base: &'static str,
    pub common_name: &'static str,
    pub organization: Option<&'static str>,
    pub usage: Usage,
    pub issuer: Authority,
    pub sans: SanSet,
}

/// Which apiserver URL a kubeconfig points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerUrl {
    /// The tenant endpoint, for people and nodes outside the service cluster.
    Endpoint,
    /// `https://kube-apiserver.<ns>.svc:6443`, for masters inside it.
    InCluster,
}

pub struct KubeconfigProfile {
    pub file: &'static str,
    pub common_name: &'static str,
    pub organization: Option<&'static str>,
    pub server: ServerUrl,
}

pub const CAS: [CaProfile; 3] = [
    CaProfile {
        authority: Authority::Cluster,
        base: "pki/ca",
        common_name: "kubernetes",
    },
    CaProfile {
        authority: Authority::FrontProxy,
        base: "pki/front-proxy-ca",
        common_name: "front-proxy-ca",
    },
    CaProfile {
        authority: Authority::Etcd,
        base: "pki/etcd/ca",
        common_name: "etcd-ca",
    },
];

/// The common name of the backup's etcd client certificate.
pub const ETCD_BACKUP_COMMON_NAME: &str = "gantry-etcd-backup";

pub const LEAVES: [LeafProfile; 9] = [
    LeafProfile {
        base: "pki/apiserver",
        common_name: "kube-apiserver",
        organization: None,
        usage: Usage::Server,
        issuer: Authority::Cluster,
        sans: SanSet::ApiServer,
    },
    LeafProfile {
        base: "pki/apiserver-kubelet-client",
        common_name: "kube-apiserver-kubelet-client",
        organization: None,
        usage: Usage::Client,
        issuer: Authority::Cluster,
        sans: SanSet::None,
    },
    LeafProfile {
        base: "pki/front-proxy-client",
        common_name: "front-proxy-client",
        organization: None,
        usage: Usage::Client,
        issuer: Authority::FrontProxy,
        sans: SanSet::None,
    },
    LeafProfile {
        base: "pki/etcd/server",
        common_name: "etcd",
        organization: None,
        usage: Usage::ServerAndClient,
        issuer: Authority::Etcd,
        sans: SanSet::Etcd,
    },
    LeafProfile {
        base: "pki/etcd/peer",
        common_name: "etcd-peer",
        organization: None,
        usage: Usage::ServerAndClient,
        issuer: Authority::Etcd,
        sans: SanSet::Etcd,
    },
    LeafProfile {
        base: "pki/etcd/healthcheck-client",
        common_name: "kube-etcd-healthcheck-client",
        organization: None,
        usage: Usage::Client,
        issuer: Authority::Etcd,
        sans: SanSet::None,
    },
    // The konnectivity agent's identity, in the tenant cluster: the tunnel's
    // server accepts a client certificate of this CA with only this name.
    LeafProfile {
        base: "pki/konnectivity-agent",
        common_name: KONNECTIVITY_AGENT_COMMON_NAME,
        organization: None,
        usage: Usage::Client,
        issuer: Authority::Cluster,
        sans: SanSet::None,
    },
    // The scheduled backup's own identity at etcd (`gantry backup
    // snapshot`): apart from the apiserver's, so a backup Job holds no key
    // the apiserver uses, and etcd's log names who took a snapshot.
    LeafProfile {
        base: "pki/etcd/backup-client",
        common_name: ETCD_BACKUP_COMMON_NAME,
        organization: None,
        usage: Usage::Client,
        issuer: Authority::Etcd,
        sans: SanSet::None,
    },
    LeafProfile {
        base: "pki/apiserver-etcd-client",
        common_name: "kube-apiserver-etcd-client",
        organization: None,
        usage: Usage::Client,
        issuer: Authority::Etcd,
        sans: SanSet::None,
    },
];

pub const KUBECONFIGS: [KubeconfigProfile; 5] = [
    KubeconfigProfile {
        file: "admin.conf",
        common_name: "kubernetes-admin",
        organization: Some("kubeadm:cluster-admins"),
        server: ServerUrl::Endpoint,
    },
    KubeconfigProfile {
        file: "super-admin.conf",
        common_name: "kubernetes-super-admin",
        organization: Some("system:masters"),
        server: ServerUrl::Endpoint,
    },
    KubeconfigProfile {
        file: "controller-manager.conf",
        common_name: "system:kube-controller-manager",
        organization: None,
        server: ServerUrl::InCluster,
    },
    KubeconfigProfile {
        file: "scheduler.conf",
        common_name: "system:kube-scheduler",
        organization: None,
        server: ServerUrl::InCluster,
    },
    // The operator's own identity in the tenant: bound to exactly what it
    // applies (renderer/templates/tenant/07-operator-rbac.yaml), so it can
    // be audited and revoked, unlike system:masters.
    KubeconfigProfile {
        file: OPERATOR_KUBECONFIG,
        common_name: "gantry-operator",
        organization: Some("gantry:operator"),
        server: ServerUrl::InCluster,
    },
];

/// The kubeconfig the operator connects to the tenant with, apart from the
/// super-admin one it uses only to grant itself its RBAC.
pub const OPERATOR_KUBECONFIG: &str = "operator.conf";

/// The common name of the konnectivity agent's client certificate: the
/// tunnel's server (gantry konnectivity-server) accepts a client certificate
/// of the tenant CA only with this name.
pub const KONNECTIVITY_AGENT_COMMON_NAME: &str = "gantry-konnectivity-agent";

/// The service-account signing key pair.
pub const SA_KEY: &str = "pki/sa.key";
pub const SA_PUB: &str = "pki/sa.pub";
/// The kubeconfig published as `kube-public/cluster-info` for `kubeadm join`
/// discovery: one cluster named "", no users, no contexts.
pub const CLUSTER_INFO: &str = "cluster-info.conf";

/// Every file of a bundle, in kubeadm's layout.
pub fn all_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for base in CAS
        .iter()
        .map(|c| c.base)
        .chain(LEAVES.iter().map(|l| l.base))
    {
        paths.push(crt(base));
        paths.push(key(base));
    }
    paths.extend([SA_KEY, SA_PUB, CLUSTER_INFO, crate::ENCRYPTION_CONFIG].map(String::from));
    paths.extend(KUBECONFIGS.iter().map(|k| k.file.to_string()));
    paths
}

pub fn ca_profile(authority: Authority) -> &'static CaProfile {
    CAS.iter()
        .find(|ca| ca.authority == authority)
        .expect("every authority has a profile")
}

pub fn crt(base: &str) -> String {
    format!("{base}.crt")
}

pub fn key(base: &str) -> String {
    format!("{base}.key")
}

impl ServerUrl {
    pub fn url(self, spec: &PkiSpec) -> String {
        match self {
            ServerUrl::Endpoint => spec.endpoint.url(),
            ServerUrl::InCluster => spec.in_cluster_server(),
        }
    }
}

impl SanSet {
    /// The SANs a leaf must carry for this spec, in table order, without repeats.
    pub fn for_spec(self, spec: &PkiSpec) -> Vec<San> {
        let ns = &spec.namespace;
        let dns = |s: String| San::Dns(s);
        let mut sans: Vec<San> = match self {
            SanSet::None => return Vec::new(),
            SanSet::ApiServer => {
                let mut sans: Vec<San> = [
                    "kubernetes".to_string(),
                    "kubernetes.default".to_string(),
                    "kubernetes.default.svc".to_string(),
                    format!("kubernetes.default.svc.{}", spec.dns_domain),
                    "localhost".to_string(),
                    "kube-apiserver".to_string(),
                    format!("kube-apiserver.{ns}"),
                    format!("kube-apiserver.{ns}.svc"),
                    format!("kube-apiserver.{ns}.svc.{}", spec.service_cluster_domain),
                ]
                .into_iter()
                .map(dns)
                .collect();
                if let San::Dns(_) = spec.endpoint.host {
                    sans.push(spec.endpoint.host.clone());
                }
                sans.extend(
                    spec.extra_sans
                        .iter()
                        .filter(|s| matches!(s, San::Dns(_)))
                        .cloned(),
                );
                sans.push(San::Ip("127.0.0.1".parse().expect("literal")));
                sans.push(San::Ip(spec.kubernetes_service_ip()));
                if let San::Ip(_) = spec.endpoint.host {
                    sans.push(spec.endpoint.host.clone());
                }
                sans.extend(
                    spec.extra_sans
                        .iter()
                        .filter(|s| matches!(s, San::Ip(_)))
                        .cloned(),
                );
                sans
            }
            SanSet::Etcd => {
                let mut sans: Vec<San> = [
                    "etcd".to_string(),
                    format!("etcd.{ns}"),
                    format!("etcd.{ns}.svc"),
                    format!("*.etcd.{ns}.svc"),
                    format!("*.etcd.{ns}.svc.{}", spec.service_cluster_domain),
                    "localhost".to_string(),
                ]
                .into_iter()
                .map(dns)
                .collect();
                sans.push(San::Ip("127.0.0.1".parse().expect("literal")));
                sans.push(San::Ip("::1".parse().expect("literal")));
                sans
            }
        };
        let mut seen = std::collections::HashSet::new();
        sans.retain(|san| seen.insert(san.clone()));
        sans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Endpoint;

    fn spec(endpoint: &str, extra: &[&str]) -> PkiSpec {
        let mut spec =
            PkiSpec::new("tenant-a", Endpoint::parse("endpoint", endpoint).unwrap()).unwrap();
        spec.extra_sans = extra
            .iter()
            .map(|s| San::parse("san", s).unwrap())
            .collect();
        spec
    }

    fn names(sans: Vec<San>) -> Vec<String> {
        sans.into_iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn apiserver_sans_follow_the_table() {
        let sans = names(
            SanSet::ApiServer.for_spec(&spec("203.0.113.10", &["api.example.com", "198.51.100.7"])),
        );
        assert_eq!(
            sans,
            [
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
                "DNS:localhost",
                "DNS:kube-apiserver",
                "DNS:kube-apiserver.tcp-tenant-a",
                "DNS:kube-apiserver.tcp-tenant-a.svc",
                "DNS:kube-apiserver.tcp-tenant-a.svc.cluster.local",
                "DNS:api.example.com",
                "IP Address:127.0.0.1",
                "IP Address:10.96.0.1",
                "IP Address:203.0.113.10",
                "IP Address:198.51.100.7",
            ]
        );
    }

    #[test]
    fn a_dns_endpoint_is_a_dns_san_and_repeats_are_dropped() {
        let sans = names(SanSet::ApiServer.for_spec(&spec(
            "api.example.com:443",
            &["api.example.com", "127.0.0.1"],
        )));
        assert_eq!(
            sans.iter().filter(|s| *s == "DNS:api.example.com").count(),
            1
        );
        assert_eq!(
            sans.iter().filter(|s| *s == "IP Address:127.0.0.1").count(),
            1
        );
    }

    #[test]
    fn etcd_sans_cover_every_member_of_the_headless_service() {
        let sans = names(SanSet::Etcd.for_spec(&spec("203.0.113.10", &[])));
        assert!(sans.contains(&"DNS:*.etcd.tcp-tenant-a.svc".to_string()));
        assert!(sans.contains(&"DNS:*.etcd.tcp-tenant-a.svc.cluster.local".to_string()));
        assert!(sans.contains(&"IP Address:::1".to_string()));
        assert!(SanSet::None.for_spec(&spec("203.0.113.10", &[])).is_empty());
    }
}
