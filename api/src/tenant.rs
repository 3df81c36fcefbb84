//! The `TenantControlPlane` API (gantry.dev/v1alpha1): the CRD (cluster-scoped,
//! short name `tcp`, category `gantry`, status subresource) and its serde types
//! with the defaults of `architecture.md`. Unknown fields are refused
//! everywhere, so a typo in a manifest is an error, not an ignored setting.
//!
//! The schema checks what the API server can check (patterns, enums, ranges,
//! CEL rules), so `kubectl apply` refuses a bad spec before the controller
//! sees it; `resolve` re-validates everything, including what a schema cannot
//! (supported versions, CIDR overlaps).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "gantry.dev/v1alpha1";
pub const KIND: &str = "TenantControlPlane";

/// Matches `1.35`, `1.35.5` and `v1.35.5`; `resolve` checks the minor is supported.
const VERSION_PATTERN: &str = r"^v?1\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?$";
/// Go-style durations of hours, minutes and seconds: `24h`, `1h30m`, `720h`.
const DURATION_PATTERN: &str = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$";
/// A DNS-1123 subdomain (a StorageClass name); each label's 63-character
/// bound is left to `resolve`.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A registry host (DNS labels or an IPv4 address, an optional `:port`)
/// and path components of lowercase words joined by `.`, `_`, `__` or `-`:
/// the image reference grammar of the distribution project, without a tag
/// or digest. No scheme, no empty, `.` or `..` component, no trailing `/`.
pub const IMAGE_REPOSITORY_PATTERN: &str = r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$";
/// The longest `imageRepository`: with `/kube-controller-manager:v1.37.2`
/// after it, an image name stays within the 255 characters of a reference.
pub const MAX_IMAGE_REPOSITORY_LEN: usize = 200;
/// The smallest etcd volume (`spec.etcd.storage.size`). etcd keeps up to
/// five 64 MB segments of its write-ahead log (`--max-wals`) and
/// preallocates the next, so the log alone may take 384 MB, beside
/// snapshots and the database. Below 1Gi the database has no room to grow.
pub const MIN_ETCD_STORAGE: &str = "1Gi";
/// The largest etcd volume. etcd advises a database of at most 8 GiB (the
/// default quota's cap); a bigger volume is only ever asked for the IOPS
/// that clouds tie to a volume's size. 1Ti allows that many times over, and
/// keeps every byte count (the quota is 80% of it) far inside a u64: `1e100`
/// once became a quota of 0 bytes, which etcd reads as "the default".
pub const MAX_ETCD_STORAGE: &str = "1Ti";
/// The smallest `spec.etcd.storage.quota`. A new tenant's database holds a
/// few MiB and grows with every object; at its quota etcd refuses every
/// write (the apiserver's leases and events too) until an operator
/// compacts and defragments it. 64Mi is a small cluster's working size.
pub const MIN_ETCD_QUOTA: &str = "64Mi";
/// The container resources a spec may set: the ones the scheduler and the
/// kubelet act on for the masters.
pub const RESOURCE_NAMES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// A tenant's hosted control plane.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "TenantControlPlane",
    plural = "tenantcontrolplanes",
    shortname = "tcp",
    category = "gantry",
    status = "TenantControlPlaneStatus",
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters: the namespace tcp-<name> and its object names must fit Kubernetes limits"),
    printcolumn(name = "VERSION", type_ = "string", json_path = ".status.version", description = "The Kubernetes version the control plane runs"),
    printcolumn(name = "READY", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "ENDPOINT", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantControlPlaneSpec {
    /// Tenant Kubernetes version, `1.35.5` (or `1.35` for the minor's default patch).
    #[schemars(regex(pattern = VERSION_PATTERN))]
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
    #[x_kube(validation = Rule::new("self == oldSelf").message("networking is immutable: a tenant's Service and Pod CIDRs and DNS domain cannot change"))]
    pub networking: NetworkingSpec,
    #[serde(default)]
    pub pki: PkiSettings,
    #[serde(default)]
    pub join: JoinSpec,
    #[serde(default = "defaults::image_repository")]
    #[schemars(regex(pattern = IMAGE_REPOSITORY_PATTERN), length(max = MAX_IMAGE_REPOSITORY_LEN))]
    pub image_repository: String,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default)]
    pub konnectivity: KonnectivitySpec,
    #[serde(default, skip_serializing_if = "KubeProxySpec::is_default")]
    pub kube_proxy: KubeProxySpec,
    #[serde(default, skip_serializing_if = "BackupSpec::is_default")]
    pub backup: BackupSpec,
}

/// Scheduled etcd snapshots of the tenant to S3-compatible object storage,
/// each with the tenant's key material sealed to the platform's public key
/// (docs/operations.md, "Backups"). A field left out takes the operator's
/// default (the chart's `backup` values); a tenant is backed up when a
/// destination is known, from here or from the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupSpec {
    /// `false` turns this tenant's backups off, whatever the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// When, as a CronJob schedule of five fields, in UTC (`17 * * * *`:
    /// hourly at :17). The operator's default spreads tenants over the hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 100))]
    pub schedule: Option<String>,
    /// How many complete snapshots to keep; older ones are deleted (only
    /// those gantry wrote, under the tenant's own prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep: Option<i32>,
    /// Where the snapshots go; the operator's destination when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<BackupStoreSpec>,
}

impl BackupSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// An S3-compatible bucket (Ceph RGW, OpenStack Swift's S3 API, AWS S3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupStoreSpec {
    /// The store's URL, `https://host[:port]` (`http://` only on a network
    /// you trust: the snapshot holds every Secret, encrypted at rest only
    /// when the tenant's encryption covers them).
    #[schemars(length(max = 300))]
    pub endpoint: String,
    /// The bucket (3 to 63 lowercase letters, digits, `.` and `-`).
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// The region the store signs for; `us-east-1` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// The folder of every tenant's backups in the bucket; `gantry` when
    /// left out. A tenant's are under `<prefix>/<tenant>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub prefix: Option<String>,
    /// A Secret in the tenant's namespace (`tcp-<name>`) with the keys
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// PEM certificates the store's certificate must chain to; the system's
    /// roots when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
}

/// kube-proxy, as the tenant set runs it on every node (a DaemonSet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeProxySpec {
    /// kube-proxy's `conntrack.maxPerCore`: it raises the node's
    /// `nf_conntrack_max` to this many entries per CPU core (upstream's
    /// default, 32768, when unset). `0` leaves `nf_conntrack_max` as the
    /// node has it: for nodes where kube-proxy cannot or must not change it,
    /// such as a node in a container or a network namespace of its own
    /// (the sysctl is read-only there, and kube-proxy before 1.37 fails
    /// trying), or one whose sysctls config management owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub conntrack_max_per_core: Option<i32>,
}

impl KubeProxySpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The tunnel through which the apiserver reaches the tenant's own networks
/// (kubelets for logs and exec, webhooks, aggregated APIs): a konnectivity
/// server beside each apiserver replica, agents in the tenant cluster that
/// connect out to it (docs/architecture.md, "The konnectivity tunnel").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.nodePort) || self.enabled").message("konnectivity.nodePort needs konnectivity.enabled"))]
pub struct KonnectivitySpec {
    /// On by default. Turn it off only where the service cluster routes to
    /// every tenant network: the apiserver then dials kubelets, webhooks
    /// and aggregated APIs directly, and its egress policy must allow them.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Where agents reach the tunnel, `HOST:PORT`. Default: the endpoint's
    /// host, on port 8132 (the kube-apiserver Service's `konnectivity`
    /// port), or on the tunnel's node port for service type NodePort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 261))]
    pub address: Option<String>,
    /// For service type NodePort: the tunnel's node port (30000–32767);
    /// allocated by the service cluster when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

impl Default for KonnectivitySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            address: None,
            node_port: None,
        }
    }
}

/// What the controller observed. Never holds keys or tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantControlPlaneStatus {
    /// `Pending`, `Provisioning`, `Ready`, `Degraded`, `Upgrading` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `CertificatesReady`, `EndpointReady`, `EtcdReady`, `APIServerReady`,
    /// `TenantBootstrapped`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Kubernetes version that runs now (moves only when a rollout completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `sha256:<hex>` for `kubeadm join --discovery-token-ca-cert-hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_hash: Option<String>,
    /// Name of the Secret (in `tcp-<name>`) holding `admin.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<String>,
    /// Name of the Secret (in `tcp-<name>`) holding the join command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_secret: Option<String>,
    /// Name of the Secret (in `tcp-<name>`) holding the key of Secrets at
    /// rest. Set once it exists: from then on, its loss stops reconciling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_secret: Option<String>,
    /// A hash of the privileged tenant objects (the operator's own RBAC and
    /// the admin bindings) as last applied with super-admin. The operator
    /// writes them again only when what it renders differs from this, or
    /// when a platform admin asks (`gantry.dev/grant-operator-access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_access_hash: Option<String>,
    /// The value of the `gantry.dev/grant-operator-access` annotation last
    /// acted on: a new value asks for one more grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_access_grant: Option<String>,
    /// The newest snapshot a backup verified and wrote; set while backups
    /// are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
}

/// The last good backup, as the backup Job reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<SnapshotStatus>,
    /// The restore asked for by `gantry.dev/restore-from`, or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
}

/// A restore of the tenant's etcd from a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The annotation's value: `NAME` or `TENANT/NAME`.
    pub from: String,
    /// `Stopping` (etcd and the apiservers scale to zero), `Restoring` (one
    /// Job per member), `Starting`, then `Done`; or `Failed`, with etcd's
    /// data as it was before.
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// Its name (`20261207T172000Z`), for `gantry backup fetch --snapshot`.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// The snapshot's size in bytes.
    pub bytes: i64,
    /// `s3://<bucket>/<key>` of the database.
    pub location: String,
    /// The etcd revision it holds (at least).
    pub revision: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerSpec {
    #[serde(default = "defaults::two")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
    #[serde(default)]
    pub service: ApiServerServiceSpec,
    /// Where nodes and users reach the apiserver, `HOST[:PORT]`. Required for
    /// offline rendering; the controller otherwise takes the Service's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Extra DNS names and IP addresses of the apiserver certificate, at most 100.
    #[serde(default, rename = "certSANs")]
    #[schemars(length(max = gantry_pki::MAX_EXTRA_SANS))]
    pub cert_sans: Vec<String>,
    #[serde(default)]
    #[schemars(extend("maxProperties" = 100, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-z0-9]+(-[a-z0-9]+)*$') && !self[k].matches('[[:cntrl:]]'))").message("extraArgs names are lowercase words joined by '-' (not '_', which Kubernetes reads as '-'; no leading dashes or '='), and values hold no control characters"))]
    #[x_kube(validation = crate::extra_args::cel_rule(crate::extra_args::API_SERVER))]
    pub extra_args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.nodePort) || self.type == 'NodePort'").message("nodePort only applies to service type NodePort"))]
pub struct ApiServerServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// E.g. Octavia options for the OpenStack load balancer.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "loadBalancerIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer_ip: Option<String>,
    /// For `NodePort`: the node port (30000–32767); defaults to the endpoint's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentSpec {
    #[serde(default = "defaults::two")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
    #[serde(default)]
    #[schemars(extend("maxProperties" = 100, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-z0-9]+(-[a-z0-9]+)*$') && !self[k].matches('[[:cntrl:]]'))").message("extraArgs names are lowercase words joined by '-' (not '_', which Kubernetes reads as '-'; no leading dashes or '='), and values hold no control characters"))]
    #[x_kube(validation = crate::extra_args::cel_rule(crate::extra_args::CONTROLLER_MANAGER_AND_SCHEDULER))]
    pub extra_args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.replicas == oldSelf.replicas").message("etcd replicas are immutable: gantry never adds or removes a member (the cluster starts with --initial-cluster-state=new)"))]
pub struct EtcdSpec {
    /// 1, 3 or 5.
    #[serde(default = "defaults::three")]
    #[x_kube(validation = Rule::new("self == 1 || self == 3 || self == 5").message("etcd replicas must be 1, 3 or 5: an even member count adds no fault tolerance"))]
    pub replicas: i32,
    #[serde(default)]
    pub storage: EtcdStorageSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::etcd_quota())]
pub struct EtcdStorageSpec {
    /// The volume of each member, a quantity from 1Gi to 1Ti.
    #[serde(default = "defaults::etcd_storage")]
    #[x_kube(validation = rules::etcd_storage_size())]
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub storage_class_name: Option<String>,
    /// etcd's `--quota-backend-bytes` as a quantity (`4Gi`): the database size
    /// at which etcd refuses writes until it is compacted and defragmented.
    /// At most `size`. Default: 80% of `size`, at most 8Gi (etcd's advice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}

impl Default for EtcdStorageSpec {
    fn default() -> Self {
        Self {
            size: defaults::etcd_storage(),
            storage_class_name: None,
            quota: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PkiSettings {
    #[serde(default)]
    pub algorithm: KeyAlgorithm,
    /// Leaf certificate validity, a duration such as `8760h`.
    #[serde(default = "defaults::certificate_validity")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub certificate_validity: String,
    /// Renew a leaf when less than this remains, e.g. `720h`.
    #[serde(default = "defaults::renew_before")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub renew_before: String,
}

impl Default for PkiSettings {
    fn default() -> Self {
        Self {
            algorithm: KeyAlgorithm::default(),
            certificate_validity: defaults::certificate_validity(),
            renew_before: defaults::renew_before(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinSpec {
    /// Lifetime of join tokens, e.g. `24h`.
    #[serde(default = "defaults::token_ttl", rename = "tokenTTL")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub token_ttl: String,
}

impl Default for JoinSpec {
    fn default() -> Self {
        Self {
            token_ttl: defaults::token_ttl(),
        }
    }
}

/// The key algorithm of every key in the tenant's PKI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithm {
    #[default]
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
}

impl From<KeyAlgorithm> for gantry_pki::KeyAlgorithm {
    fn from(algorithm: KeyAlgorithm) -> Self {
        match algorithm {
            KeyAlgorithm::EcdsaP256 => gantry_pki::KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa2048 => gantry_pki::KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Rsa3072 => gantry_pki::KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Rsa4096 => gantry_pki::KeyAlgorithm::Rsa4096,
        }
    }
}

/// Container resources as Kubernetes quantities: `cpu`, `memory` and
/// `ephemeral-storage`, no limit below its request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::limits_not_below_requests())]
pub struct ResourcesSpec {
    #[serde(default)]
    #[schemars(extend("maxProperties" = 3))]
    #[x_kube(validation = rules::resource_names_and_quantities())]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    #[schemars(extend("maxProperties" = 3))]
    #[x_kube(validation = rules::resource_names_and_quantities())]
    pub limits: BTreeMap<String, String>,
}

/// CEL rules built from the constants `resolve` checks against too.
mod rules {
    use kube::core::Rule;

    /// `spec.etcd.storage.size`: a quantity within the bounds.
    pub fn etcd_storage_size() -> Rule {
        let (min, max) = (super::MIN_ETCD_STORAGE, super::MAX_ETCD_STORAGE);
        Rule::new(format!(
            "isQuantity(self) && quantity(self).compareTo(quantity('{min}')) >= 0 \
             && quantity(self).compareTo(quantity('{max}')) <= 0"
        ))
        .message(kube::core::Message::Message(format!(
            "etcd storage size must be a quantity from {min} to {max}"
        )))
    }

    /// `quota`, when given: a quantity from the minimum to `size`.
    pub fn etcd_quota() -> Rule {
        let min = super::MIN_ETCD_QUOTA;
        Rule::new(format!(
            "!has(self.quota) || (isQuantity(self.quota) \
             && quantity(self.quota).compareTo(quantity('{min}')) >= 0 \
             && (!isQuantity(self.size) || quantity(self.quota).compareTo(quantity(self.size)) <= 0))"
        ))
        .message(kube::core::Message::Message(format!(
            "etcd storage quota must be a quantity from {min} to the storage size"
        )))
    }

    /// Requests' and limits' keys are known resources, their values quantities.
    pub fn resource_names_and_quantities() -> Rule {
        let names: Vec<String> = super::RESOURCE_NAMES
            .iter()
            .map(|name| format!("'{name}'"))
            .collect();
        Rule::new(format!(
            "self.all(k, k in [{}] && isQuantity(self[k]))",
            names.join(", ")
        ))
        .message(kube::core::Message::Message(format!(
            "resources: only {}, each a quantity such as 500m or 1Gi",
            super::RESOURCE_NAMES.join(", ")
        )))
    }

    /// No limit below the request of the same resource.
    pub fn limits_not_below_requests() -> Rule {
        Rule::new(
            "!has(self.limits) || !has(self.requests) || self.limits.all(k, \
             !(k in self.requests) || !isQuantity(self.limits[k]) || !isQuantity(self.requests[k]) \
             || quantity(self.limits[k]).compareTo(quantity(self.requests[k])) >= 0)",
        )
        .message("resources: a limit must not be below its request")
    }
}

mod defaults {
    pub fn yes() -> bool {
        true
    }
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

#[cfg(test)]
#[path = "tenant_tests.rs"]
mod tests;
