//! Issuing a tenant's PKI, or bringing an existing one up to date.
//!
//! [`issue`] is one code path for both: with no existing files it creates
//! everything; with a previous bundle it keeps what is still good (byte for
//! byte) and reissues only the leaves that must change. CAs, the
//! service-account key and the key of Secrets at rest are never replaced:
//! losing one would invalidate every certificate, token or Secret it signed
//! or encrypted, so an unreadable one is an error.

use std::collections::BTreeMap;
use std::fmt;

use time::OffsetDateTime;

use crate::catalog::CLUSTER_INFO;
use crate::cert::CertInfo;
use crate::error::PkiError;
use crate::spec::{KeyAlgorithm, PkiSpec, San};

mod encryption;
mod plan;
mod steps;

pub use encryption::{ENCRYPTION_CONFIG, FIRST_KEY_NAME};

use plan::Plan;

/// Files as they are on disk, keyed by path relative to the bundle root
/// (`pki/ca.crt`, `admin.conf`, …).
pub type FileSet = BTreeMap<String, Vec<u8>>;

/// One file of an issued bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct PkiFile {
    pub contents: Vec<u8>,
    /// Holds a private key: written 0600, never logged.
    pub secret: bool,
}

impl fmt::Debug for PkiFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.secret {
            true => write!(f, "PkiFile(<secret, {} bytes>)", self.contents.len()),
            false => write!(f, "PkiFile({} bytes)", self.contents.len()),
        }
    }
}

/// A complete tenant PKI in kubeadm's layout.
#[derive(Debug, Clone)]
pub struct PkiBundle {
    files: BTreeMap<String, PkiFile>,
}

impl PkiBundle {
    pub fn files(&self) -> impl Iterator<Item = (&str, &PkiFile)> {
        self.files.iter().map(|(path, file)| (path.as_str(), file))
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|f| f.contents.as_slice())
    }

    fn required(&self, path: &str) -> &[u8] {
        self.get(path)
            .expect("an issued bundle holds every catalog file")
    }

    /// `pki/ca.crt`, the cluster CA every node pins.
    pub fn ca_cert_pem(&self) -> &[u8] {
        self.required("pki/ca.crt")
    }

    /// The `--discovery-token-ca-cert-hash` value for this tenant.
    pub fn ca_cert_hash(&self) -> String {
        let info = CertInfo::from_pem(self.ca_cert_pem()).expect("issued CA parses");
        crate::hash::spki_sha256(&info.spki_der)
    }

    /// The exact bytes to publish as `kube-public/cluster-info` `data.kubeconfig`.
    pub fn cluster_info_kubeconfig(&self) -> &[u8] {
        self.required(CLUSTER_INFO)
    }

    /// The bundle as a plain [`FileSet`], e.g. to feed back into [`issue`].
    pub fn to_file_set(&self) -> FileSet {
        self.files
            .iter()
            .map(|(path, file)| (path.clone(), file.contents.clone()))
            .collect()
    }
}

/// What happened to one item (a certificate with its key, a kubeconfig, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The files of the item, e.g. `pki/apiserver.{crt,key}` or `admin.conf`.
    pub item: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    Kept,
    Reissued(Reason),
}

/// Why a leaf (or a kubeconfig) was reissued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Unreadable(String),
    KeyMismatch,
    NotSignedByCurrentCa,
    SubjectChanged,
    SansChanged {
        added: Vec<San>,
        removed: Vec<San>,
    },
    AlgorithmChanged {
        from: String,
        to: KeyAlgorithm,
    },
    Expiring {
        not_after: OffsetDateTime,
    },
    ServerChanged {
        from: String,
        to: String,
    },
    CaDataChanged,
    /// Derived files (sa.pub, cluster-info.conf) rewritten from their source.
    Derived,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |sans: &[San]| {
            sans.iter()
                .map(San::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Reason::Unreadable(why) => write!(f, "unreadable: {why}"),
            Reason::KeyMismatch => f.write_str("key does not match certificate"),
            Reason::NotSignedByCurrentCa => f.write_str("not signed by the current CA"),
            Reason::SubjectChanged => f.write_str("subject or key usage differs from the profile"),
            Reason::SansChanged { added, removed } => {
                match (added.is_empty(), removed.is_empty()) {
                    (false, true) => write!(f, "SANs added: {}", list(added)),
                    (true, false) => write!(f, "SANs removed: {}", list(removed)),
                    _ => write!(f, "SANs added: {}; removed: {}", list(added), list(removed)),
                }
            }
            Reason::AlgorithmChanged { from, to } => write!(f, "key algorithm {from} -> {to}"),
            Reason::Expiring { not_after } => write!(f, "expires {}", crate::rfc3339(*not_after)),
            Reason::ServerChanged { from, to } => write!(f, "server {from} -> {to}"),
            Reason::CaDataChanged => f.write_str("embedded CA differs from pki/ca.crt"),
            Reason::Derived => f.write_str("rewritten from its source"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Created => f.write_str("created"),
            Action::Kept => f.write_str("kept"),
            Action::Reissued(reason) => write!(f, "reissued ({reason})"),
        }
    }
}

/// The result of [`issue`]: the complete bundle and a decision per item.
#[derive(Debug)]
pub struct Issued {
    pub bundle: PkiBundle,
    pub decisions: Vec<Decision>,
}

impl Issued {
    /// Whether anything differs from the files passed in.
    pub fn changed(&self) -> bool {
        self.decisions.iter().any(|d| d.action != Action::Kept)
    }
}

/// Issues the PKI `spec` describes, keeping whatever of `existing` is still good.
///
/// `now` is the moment validity is computed from; pass the current time.
pub fn issue(spec: &PkiSpec, existing: &FileSet, now: OffsetDateTime) -> Result<Issued, PkiError> {
    spec.validate()?;
    let mut plan = Plan::default();
    // 1.-3. Decide what is kept and what is made.
    let mut cas = steps::load_authorities(existing, now, &mut plan)?;
    let sa = steps::load_service_account_key(existing, &mut plan)?;
    encryption::keep_or_make(existing, &mut plan)?;
    let mut to_sign = steps::plan_leaves(spec, existing, &cas, now, &mut plan);
    to_sign.extend(steps::plan_kubeconfigs(
        spec, existing, &cas, now, &mut plan,
    ));

    // 4. Make every key the plan needs at once (in parallel for slow RSA keys).
    let mut keys = steps::generate_keys(spec.algorithm, plan.keys_needed)?.into_iter();
    let mut next_key = |path: &str| {
        keys.next().ok_or_else(|| PkiError::KeyGeneration {
            path: path.into(),
            reason: "key count mismatch".into(),
        })
    };

    // 5. New CAs, the SA key, then every leaf; 6. cluster-info.
    steps::make_authorities(spec, now, &mut cas, &mut plan, &mut next_key)?;
    if sa.is_none() {
        steps::make_service_account_key(&mut plan, &mut next_key)?;
    }
    steps::sign_leaves(spec, now, &cas, to_sign, &mut plan, &mut next_key)?;
    steps::cluster_info(spec, existing, &cas, &mut plan);

    Ok(Issued {
        bundle: PkiBundle { files: plan.files },
        decisions: plan.decisions,
    })
}
