//! `gantry-pki`: one tenant's complete Kubernetes PKI, laid out as kubeadm lays
//! out `/etc/kubernetes` — CAs, leaves, the service-account key pair,
//! kubeconfigs and the cluster-info kubeconfig — plus the bootstrap tokens,
//! their cluster-info JWS signatures and the discovery CA hash that
//! `kubeadm join` needs.
//!
//! Pure: no file system, network or global state. Callers pass existing files
//! in as a [`FileSet`] and write the returned [`PkiBundle`] wherever they like.
//!
//! ```
//! use gantry_pki::{Endpoint, FileSet, PkiSpec, issue};
//! let spec = PkiSpec::new("tenant-a", Endpoint::parse("endpoint", "203.0.113.10").unwrap()).unwrap();
//! let now = time::OffsetDateTime::now_utc();
//! let first = issue(&spec, &FileSet::new(), now).unwrap();
//! let again = issue(&spec, &first.bundle.to_file_set(), now).unwrap();
//! assert!(!again.changed()); // nothing to renew: every file kept byte for byte
//! assert!(first.bundle.ca_cert_hash().starts_with("sha256:"));
//! ```

pub mod catalog;
mod cert;
mod check;
pub mod csr;
mod error;
mod hash;
mod issue;
mod join;
pub mod jws;
pub mod kubeconfig;
mod spec;
mod token;
pub mod yaml_guard;

pub use catalog::{ETCD_BACKUP_COMMON_NAME, KONNECTIVITY_AGENT_COMMON_NAME, OPERATOR_KUBECONFIG};
pub use cert::{CertInfo, generate_key, load_key};
pub use check::{CertReport, Health, check};
pub use error::{InvalidInput, PkiError};
pub use hash::{ca_cert_hash, lower_hex, sha256_hex, spki_sha256};
pub use issue::{
    Action, Decision, ENCRYPTION_CONFIG, FIRST_KEY_NAME, FileSet, Issued, PkiBundle, PkiFile,
    Reason, issue,
};
pub use join::{JoinCommand, JoinValueError, JoinValues, is_ca_cert_hash, kubeadm_join_command};
pub use spec::{
    DEFAULT_API_SERVER_PORT, Endpoint, KeyAlgorithm, MAX_EXTRA_SANS, MAX_TENANT_NAME_LEN,
    MAX_VALIDITY_DAYS, PkiSpec, San, default_namespace, nth_address, parse_cidr,
    parse_service_cluster_cidr, service_cluster_cidr_problem, unusable_address, validate_namespace,
    validate_tenant_name,
};
pub use token::{BootstrapToken, BootstrapTokenSecret, DEFAULT_NODE_TOKEN_GROUP, DEFAULT_TTL};

/// RFC 3339 in UTC with a `Z` and whole seconds, as Kubernetes writes times.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
