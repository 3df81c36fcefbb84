//! The fully resolved input of a render: every default applied, every value
//! validated. Building one from a `TenantControlPlane` spec is the caller's job
//! (the controller crate), so the renderer never guesses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use gantry_pki::{BootstrapToken, Endpoint};
use ipnet::IpNet;
use time::OffsetDateTime;

use crate::versions::{Images, KubeVersion};

#[derive(Debug, Clone)]
pub struct RenderInput {
    /// The tenant's name (a DNS-1123 label of at most 40 characters).
    pub name: String,
    /// `tcp-<name>`: the service-cluster namespace of the tenant's masters.
    pub namespace: String,
    pub version: KubeVersion,
    pub images: Images,
    pub image_repository: String,
    /// Where nodes reach the apiserver. Its port is the apiserver's `--secure-port`.
    pub endpoint: Endpoint,
    /// `--advertise-address`: the endpoint's IP (the `kubernetes` Service's endpoint in the tenant).
    pub advertise_address: IpAddr,
    pub api_server: ApiServerInput,
    pub controller_manager: ComponentInput,
    pub scheduler: ComponentInput,
    pub etcd: EtcdInput,
    pub networking: NetworkingInput,
    /// The join token the tenant set is rendered with (bootstrap Secret, cluster-info signature).
    pub token: BootstrapToken,
    pub token_expiration: OffsetDateTime,
    pub placement: Placement,
    /// The konnectivity tunnel; `None` when `spec.konnectivity.enabled` is false.
    pub konnectivity: Option<KonnectivityInput>,
    /// Scheduled etcd snapshots; `None` when the tenant has no backups.
    pub backup: Option<BackupInput>,
}

/// The tunnel from the apiserver into the tenant's networks: a server beside
/// each apiserver, agents in the tenant (gantry-tunnel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KonnectivityInput {
    /// gantry's own image, which runs both ends.
    pub image: String,
    /// Where agents reach the servers, `HOST:PORT`. `None` until the
    /// tunnel's node port is known (service type NodePort, allocated by the
    /// service cluster): the tenant set cannot be rendered before.
    pub agent_address: Option<String>,
    /// The name agents check the server's certificate against: the
    /// endpoint's host, which the apiserver certificate carries.
    pub server_name: String,
    /// For service type NodePort: the node port the spec fixes.
    pub node_port: Option<u16>,
}

/// Scheduled backups of the tenant's etcd: a CronJob in its namespace runs
/// `gantry backup snapshot` from gantry's image (gantry-backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInput {
    pub image: String,
    /// Five cron fields, UTC.
    pub schedule: String,
    pub keep: u32,
    pub store: BackupStore,
    /// The platform's public key, as `gantry backup platform-key` wrote it.
    pub platform_public_key: String,
}

/// An S3-compatible bucket, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStore {
    /// `scheme://host[:port]`, no path.
    pub endpoint: String,
    /// The port the backup's egress policy opens.
    pub port: u16,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    /// The Secret in the tenant's namespace with `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    pub credentials_secret: String,
    pub ca_bundle: Option<String>,
}

/// What the operator (or `gantry render`) applies to a tenant whose
/// `spec.backup` leaves a field out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupDefaults {
    /// `None` spreads tenants over the hour: minute = a hash of the name.
    pub schedule: Option<String>,
    /// `None`: 24.
    pub keep: Option<u32>,
    /// The default destination; its `credentials_secret` is the operator's
    /// copy in each tenant namespace.
    pub store: Option<BackupStore>,
    pub platform_public_key: Option<String>,
    /// The operator's: the Secret (namespace, name) it copies into each
    /// tenant namespace that backs up to the default store, as
    /// [`BACKUP_CREDENTIALS_SECRET`]. Rendering ignores it.
    pub credentials_from: Option<(String, String)>,
}

/// The Secret the operator copies its default store credentials to, in
/// each tenant namespace.
pub const BACKUP_CREDENTIALS_SECRET: &str = "etcd-backup-credentials";

/// The port of the kube-apiserver Service (and of the server's container)
/// where agents connect; upstream's default.
pub const KONNECTIVITY_PORT: u16 = 8132;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ServiceType {
    LoadBalancer,
    NodePort,
    ClusterIP,
}

#[derive(Debug, Clone)]
pub struct ApiServerInput {
    pub replicas: u32,
    pub service_type: ServiceType,
    pub service_annotations: BTreeMap<String, String>,
    pub load_balancer_ip: Option<IpAddr>,
    /// Set for `NodePort`: equals the endpoint's port.
    pub node_port: Option<u16>,
    pub extra_args: BTreeMap<String, String>,
    pub resources: Resources,
}

#[derive(Debug, Clone)]
pub struct ComponentInput {
    pub replicas: u32,
    pub extra_args: BTreeMap<String, String>,
    pub resources: Resources,
}

#[derive(Debug, Clone)]
pub struct EtcdInput {
    /// 1, 3 or 5.
    pub replicas: u32,
    pub storage_size: String,
    pub storage_class_name: Option<String>,
    /// `--quota-backend-bytes`: at most the volume, so etcd stops writes
    /// before its disk is full.
    pub quota_backend_bytes: u64,
    pub resources: Resources,
}

#[derive(Debug, Clone)]
pub struct NetworkingInput {
    pub service_cidr: IpNet,
    pub pod_cidr: IpNet,
    /// The tenant cluster's DNS domain.
    pub dns_domain: String,
    /// The service cluster's DNS domain.
    pub service_cluster_domain: String,
    /// The service cluster's own pod and Service CIDRs: the masters' egress
    /// policy keeps them out of reach, but for the tenant's own pods.
    pub service_cluster_cidrs: Vec<IpNet>,
    /// kube-proxy's `conntrack.maxPerCore`; `None` keeps upstream's default.
    pub kube_proxy_conntrack_max_per_core: Option<u32>,
}

/// What gantry knows of the service cluster it renders for (the operator's
/// flags, or `gantry render`'s).
#[derive(Debug, Clone)]
pub struct ServiceCluster {
    /// Its DNS domain.
    pub domain: String,
    /// Its own pod and Service CIDRs.
    pub cidrs: Vec<IpNet>,
    /// gantry's image, as the nodes pull it: the tunnel's server and agent
    /// run from it (the operator passes its own image).
    pub gantry_image: String,
    /// Backups of every tenant that does not say otherwise.
    pub backup: BackupDefaults,
}

/// gantry's image as its chart names it by default.
pub fn default_gantry_image() -> String {
    format!("ghcr.io/gantry-dev/gantry:{}", env!("CARGO_PKG_VERSION"))
}

impl Default for ServiceCluster {
    fn default() -> Self {
        Self {
            domain: "cluster.local".into(),
            cidrs: Vec::new(),
            gantry_image: default_gantry_image(),
            backup: BackupDefaults::default(),
        }
    }
}

/// Container resources as Kubernetes quantities (`"100m"`, `"256Mi"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    pub fn requests(cpu: &str, memory: &str) -> Self {
        Resources {
            requests: [("cpu", cpu), ("memory", memory)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            limits: BTreeMap::new(),
        }
    }
}

/// Where the control-plane pods may run in the service cluster.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations, as Kubernetes JSON objects.
    pub tolerations: Vec<serde_json::Value>,
    pub priority_class_name: Option<String>,
}

/// What the bootstrap objects (Namespace, kube-apiserver Service) are made
/// from: nothing that needs the endpoint or the PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapInput {
    pub name: String,
    pub namespace: String,
    pub service_type: ServiceType,
    pub service_annotations: BTreeMap<String, String>,
    pub load_balancer_ip: Option<IpAddr>,
    /// A node port the spec fixes; `None` lets the API server allocate one.
    pub node_port: Option<u16>,
    /// The tunnel's port on the Service; `Some(node port the spec fixes)`.
    pub konnectivity: Option<Option<u16>>,
}

impl From<&RenderInput> for BootstrapInput {
    fn from(input: &RenderInput) -> Self {
        BootstrapInput {
            name: input.name.clone(),
            namespace: input.namespace.clone(),
            service_type: input.api_server.service_type,
            service_annotations: input.api_server.service_annotations.clone(),
            load_balancer_ip: input.api_server.load_balancer_ip,
            node_port: input.api_server.node_port,
            konnectivity: input.konnectivity.as_ref().map(|k| k.node_port),
        }
    }
}
