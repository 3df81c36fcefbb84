//! The `TenantControlPlane` API (gantry.dev/v1alpha1), as serde types with the
//! defaults of `architecture.md`. Unknown fields are refused everywhere, so a
//! typo in a manifest is an error, not a silently ignored setting.
//! (The CRD derive, status and schema come with the controller.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "gantry.dev/v1alpha1";
pub const KIND: &str = "TenantControlPlane";

/// A `TenantControlPlane` manifest as a user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantControlPlane {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: TenantControlPlaneSpec,
}

/// The metadata a cluster-scoped manifest may carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantControlPlaneSpec {
    /// Tenant Kubernetes version, `1.35.5` (or `1.35` for the minor's default patch).
    pub version: String,
    #[serde(default)]
    pub api_server: ApiServerSpec,
    #[serde(default)]
    pub controller_manager: ComponentSpec,
    #[serde(default)]
    pub scheduler: ComponentSpec,
    #[serde(default)]
    pub etcd: EtcdSpec,
    #[serde(default)]
    pub networking: NetworkingSpec,
    #[serde(default)]
    pub pki: PkiSettings,
    #[serde(default)]
    pub join: JoinSpec,
    #[serde(default = "defaults::image_repository")]
    pub image_repository: String,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    #[serde(default)]
    pub priority_class_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerSpec {
    #[serde(default = "defaults::two")]
    pub replicas: i32,
    #[serde(default)]
    pub service: ApiServerServiceSpec,
    /// Where nodes and users reach the apiserver, `HOST[:PORT]`. Required for
    /// offline rendering; the controller otherwise takes the Service's address.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default, rename = "certSANs")]
    pub cert_sans: Vec<String>,
    #[serde(default)]
    pub extra_args: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Option<ResourcesSpec>,
}

impl Default for ApiServerSpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            service: ApiServerServiceSpec::default(),
            endpoint: None,
            cert_sans: Vec::new(),
            extra_args: BTreeMap::new(),
            resources: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// E.g. Octavia options for the OpenStack load balancer.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<String>,
    /// For `NodePort`: the node port (30000–32767); defaults to the endpoint's port.
    #[serde(default)]
    pub node_port: Option<i32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentSpec {
    #[serde(default = "defaults::two")]
    pub replicas: i32,
    #[serde(default)]
    pub extra_args: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Option<ResourcesSpec>,
}

impl Default for ComponentSpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            extra_args: BTreeMap::new(),
            resources: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdSpec {
    /// 1, 3 or 5.
    #[serde(default = "defaults::three")]
    pub replicas: i32,
    #[serde(default)]
    pub storage: EtcdStorageSpec,
    #[serde(default)]
    pub resources: Option<ResourcesSpec>,
}

impl Default for EtcdSpec {
    fn default() -> Self {
        Self {
            replicas: 3,
            storage: EtcdStorageSpec::default(),
            resources: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdStorageSpec {
    #[serde(default = "defaults::etcd_storage")]
    pub size: String,
    #[serde(default)]
    pub storage_class_name: Option<String>,
}

impl Default for EtcdStorageSpec {
    fn default() -> Self {
        Self {
            size: defaults::etcd_storage(),
            storage_class_name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkingSpec {
    #[serde(default = "defaults::service_cidr", rename = "serviceCIDR")]
    pub service_cidr: String,
    #[serde(default = "defaults::pod_cidr", rename = "podCIDR")]
    pub pod_cidr: String,
    #[serde(default = "defaults::dns_domain")]
    pub dns_domain: String,
}

impl Default for NetworkingSpec {
    fn default() -> Self {
        Self {
            service_cidr: defaults::service_cidr(),
            pod_cidr: defaults::pod_cidr(),
            dns_domain: defaults::dns_domain(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PkiSettings {
    /// `ECDSA-P256` | `RSA-2048` | `RSA-3072` | `RSA-4096`.
    #[serde(default = "defaults::algorithm")]
    pub algorithm: String,
    /// Leaf certificate validity, a duration such as `8760h`.
    #[serde(default = "defaults::certificate_validity")]
    pub certificate_validity: String,
    /// Renew a leaf when less than this remains, e.g. `720h`.
    #[serde(default = "defaults::renew_before")]
    pub renew_before: String,
}

impl Default for PkiSettings {
    fn default() -> Self {
        Self {
            algorithm: defaults::algorithm(),
            certificate_validity: defaults::certificate_validity(),
            renew_before: defaults::renew_before(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinSpec {
    /// Lifetime of join tokens, e.g. `24h`.
    #[serde(default = "defaults::token_ttl", rename = "tokenTTL")]
    pub token_ttl: String,
}

impl Default for JoinSpec {
    fn default() -> Self {
        Self {
            token_ttl: defaults::token_ttl(),
        }
    }
}

/// Container resources as Kubernetes quantities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesSpec {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

mod defaults {
    pub fn two() -> i32 {
        2
    }
    pub fn three() -> i32 {
        3
    }
    pub fn image_repository() -> String {
        "registry.k8s.io".into()
    }
    pub fn etcd_storage() -> String {
        "10Gi".into()
    }
    pub fn service_cidr() -> String {
        "10.96.0.0/12".into()
    }
    pub fn pod_cidr() -> String {
        "10.244.0.0/16".into()
    }
    pub fn dns_domain() -> String {
        "cluster.local".into()
    }
    pub fn algorithm() -> String {
        "ECDSA-P256".into()
    }
    pub fn certificate_validity() -> String {
        "8760h".into()
    }
    pub fn renew_before() -> String {
        "720h".into()
    }
    pub fn token_ttl() -> String {
        "24h".into()
    }
}

impl TenantControlPlane {
    /// Parses a manifest. Errors name the field (`spec.etcd: unknown field ...`).
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let manifest: TenantControlPlane = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if manifest.api_version != API_VERSION {
            return Err(format!(
                "apiVersion {:?}: expected {API_VERSION}",
                manifest.api_version
            ));
        }
        if manifest.kind != KIND {
            return Err(format!("kind {:?}: expected {KIND}", manifest.kind));
        }
        Ok(manifest)
    }
}
