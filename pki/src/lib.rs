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
pub mod jws;
pub mod kubeconfig;
mod spec;
mod token;

pub use catalog::OPERATOR_KUBECONFIG;
pub use cert::{CertInfo, generate_key, load_key};
pub use check::{CertReport, Health, check};
pub use error::{InvalidInput, PkiError};
pub use hash::{ca_cert_hash, lower_hex, sha256_hex, spki_sha256};
pub use issue::{
    Action, Decision, ENCRYPTION_CONFIG, FIRST_KEY_NAME, FileSet, Issued, PkiBundle, PkiFile,
    Reason, issue,
};
pub use spec::{
    DEFAULT_API_SERVER_PORT, Endpoint, KeyAlgorithm, MAX_EXTRA_SANS, MAX_TENANT_NAME_LEN,
    MAX_VALIDITY_DAYS, PkiSpec, San, default_namespace, nth_address, parse_cidr,
    parse_service_cluster_cidr, service_cluster_cidr_problem, unusable_address, validate_namespace,
    validate_tenant_name,
};
pub use token::{BootstrapToken, BootstrapTokenSecret, DEFAULT_NODE_TOKEN_GROUP, DEFAULT_TTL};

/// The `kubeadm join` command line: `endpoint` (`HOST:PORT`), the token
/// (`ID.SECRET`) and the CA pin (`sha256:<hex>`). One place, so the bundle's
/// `join-command`, the `join` Secret and `gantry join` always agree.
pub fn kubeadm_join_command(endpoint: &str, token: &str, ca_cert_hash: &str) -> String {
    format!("kubeadm join {endpoint} --token {token} --discovery-token-ca-cert-hash {ca_cert_hash}")
}

/// The values of a [`kubeadm_join_command`] line, read back (a render
/// bundle's `join-command`). No `Debug`: it holds the token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinCommand {
    pub endpoint: String,
    pub token: String,
    pub ca_cert_hash: String,
}

impl JoinCommand {
    /// `None` unless `line` is `kubeadm join ENDPOINT` followed by `--token`
    /// and `--discovery-token-ca-cert-hash`, each with a value.
    pub fn parse(line: &str) -> Option<Self> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| {
            let at = words.iter().position(|w| *w == flag)?;
            words.get(at + 1).map(|value| value.to_string())
        };
        let ["kubeadm", "join", endpoint, ..] = words[..] else {
            return None;
        };
        Some(Self {
            endpoint: endpoint.to_string(),
            token: after("--token")?,
            ca_cert_hash: after("--discovery-token-ca-cert-hash")?,
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_command_reads_back_what_it_was_made_of() {
        let line = kubeadm_join_command(
            "203.0.113.10:6443",
            "abcdef.0123456789abcdef",
            "sha256:00ff",
        );
        let parsed = JoinCommand::parse(&format!("{line}\n")).expect("parses");
        assert_eq!(parsed.endpoint, "203.0.113.10:6443");
        assert_eq!(parsed.token, "abcdef.0123456789abcdef");
        assert_eq!(parsed.ca_cert_hash, "sha256:00ff");
        for bad in [
            "",
            "kubeadm init 203.0.113.10:6443 --token a.b --discovery-token-ca-cert-hash sha256:00",
            "kubeadm join 203.0.113.10:6443 --discovery-token-ca-cert-hash sha256:00",
            "kubeadm join 203.0.113.10:6443 --token a.b --discovery-token-ca-cert-hash",
        ] {
            assert!(JoinCommand::parse(bad).is_none(), "{bad:?} parsed");
        }
    }
}
