//! Whose a bundle folder is: the record every writing command leaves
//! (`gantry-bundle.json`), and the one check every such command makes before
//! it writes ([`Owner::of`], then [`Owner::check`]).

use std::collections::BTreeSet;

use super::BundleDirError;
use super::at::Folder;

/// The record of a bundle, `gantry-bundle.json` at its top: the tenant it
/// belongs to and every file gantry wrote, which are the only files a later
/// command may remove.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleRecord {
    pub tenant: String,
    pub namespace: String,
    pub files: BTreeSet<String>,
    /// What the render was made from that a later render may not change
    /// (`None` for `pki init`'s bundles, which have no manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<FixedSpec>,
}

/// The parts of a tenant that cannot change once it runs, as the CRD and the
/// operator refuse them on a live tenant: the version may only go up one
/// minor at a time, the networking and the etcd member count never change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixedSpec {
    pub version: String,
    pub service_cidr: String,
    pub pod_cidr: String,
    pub dns_domain: String,
    pub etcd_replicas: u32,
}

impl BundleRecord {
    /// The record as the bundle file gantry writes.
    pub fn to_file(&self) -> gantry_pki::PkiFile {
        gantry_pki::PkiFile {
            contents: serde_json::to_vec_pretty(self).expect("a record serialises"),
            secret: false,
        }
    }
}

/// The record's file name.
pub const RECORD: &str = "gantry-bundle.json";
/// Where a command stages its files inside the bundle before renaming them
/// into place. Left behind only by a command that was killed; the next one
/// (holding the lock) reads the record staged there and then removes it.
pub const STAGING: &str = ".gantry-staging";
/// Where a write that failed and could not put every file back keeps the
/// old versions (`.gantry-previous-<unix time>`), for the user to restore.
pub const KEPT_PREFIX: &str = ".gantry-previous-";

/// What a bundle folder holds before a command writes into it.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nothing: the folder is new or empty.
    Nobody,
    /// A bundle with its record. `interrupted` is the record a later command
    /// was about to write when it was killed: its files may be in place too.
    Recorded {
        record: BundleRecord,
        interrupted: Option<BundleRecord>,
    },
    /// Gantry's first command in this folder was killed before it finished:
    /// everything in the folder is what it wrote (its staged record lists it).
    Interrupted(BundleRecord),
    /// No record, but nothing gantry does not write either: a bundle of a
    /// gantry older than the record. Written only with `--adopt`, and none of
    /// its files is ever removed.
    Unrecorded,
}

/// The names a bundle holds at its top.
const GANTRY_NAMES: [&str; 13] = [
    "pki",
    "service",
    "tenant",
    "chart",
    "join-command",
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "operator.conf",
    "cluster-info.conf",
    RECORD,
    STAGING,
];

impl Owner {
    /// What `folder` holds. Refuses a folder that holds anything but a gantry
    /// bundle, and a record that cannot be read.
    pub fn of(folder: &Folder) -> Result<Owner, BundleDirError> {
        let refused = |reason: String| BundleDirError::Refused {
            path: folder.shown().into(),
            reason,
        };
        let names = folder
            .names()
            .map_err(|e| refused(format!("cannot list it: {e}")))?;
        let interrupted = read_record(folder, &format!("{STAGING}/{RECORD}"))?;
        if names.iter().all(|(name, _)| name == STAGING) {
            return Ok(match interrupted {
                Some(record) => Owner::Interrupted(record),
                None => Owner::Nobody,
            });
        }
        if let Some(record) = read_record(folder, RECORD)? {
            return Ok(Owner::Recorded {
                record,
                interrupted,
            });
        }
        if let Some(record) = interrupted {
            return Ok(Owner::Interrupted(record));
        }
        let foreign: Vec<String> = names
            .iter()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .filter(|name| !GANTRY_NAMES.contains(&name.as_str()) && !name.starts_with(KEPT_PREFIX))
            .collect();
        if !foreign.is_empty() {
            return Err(refused(format!(
                "is not empty and is not a gantry bundle (it has no {RECORD}, and holds {}); \
                 write into a new or empty folder",
                quote_some(&foreign)
            )));
        }
        Ok(Owner::Unrecorded)
    }

    /// Refuses a bundle of another tenant, and a bundle without a record
    /// unless `adopt` says to take it over. `namespace_of_unrecorded` reads
    /// the namespace an unrecorded bundle's manifests name, if any.
    pub fn check(
        &self,
        folder: &Folder,
        tenant: &str,
        namespace: &str,
        adopt: bool,
        namespace_of_unrecorded: impl FnOnce() -> Option<String>,
    ) -> Result<(), BundleDirError> {
        let refused = |reason: String| BundleDirError::Refused {
            path: folder.shown().into(),
            reason,
        };
        let (holder, holder_namespace) = match self {
            Owner::Nobody => return Ok(()),
            Owner::Recorded { record, .. } | Owner::Interrupted(record) => {
                (Some(record.tenant.clone()), record.namespace.clone())
            }
            Owner::Unrecorded if !adopt => {
                return Err(refused(format!(
                    "has gantry's layout but no {RECORD}, so gantry cannot tell whose it is \
                     (a bundle of an older gantry, a copy of kubeadm's certificates, another \
                     tenant's PKI); if it is tenant {tenant}'s, pass --adopt to take it over \
                     (its keys are kept and none of its files is removed)"
                )));
            }
            Owner::Unrecorded => match namespace_of_unrecorded() {
                Some(namespace) => (None, namespace),
                None => return Ok(()),
            },
        };
        if holder.as_deref().is_none_or(|t| t == tenant) && holder_namespace == namespace {
            return Ok(());
        }
        let holds = match holder {
            Some(holder) => format!("tenant {holder} (namespace {holder_namespace})"),
            None => format!("a tenant of namespace {holder_namespace}"),
        };
        Err(refused(format!(
            "holds {holds}, not {tenant} (namespace {namespace}); write each tenant into a folder of its own"
        )))
    }

    /// The files gantry wrote here before: the only ones it may remove.
    pub fn written_before(&self) -> BTreeSet<String> {
        match self {
            Owner::Recorded {
                record,
                interrupted,
            } => {
                let mut files = record.files.clone();
                if let Some(staged) = interrupted.as_ref().filter(|s| s.tenant == record.tenant) {
                    files.extend(staged.files.iter().cloned());
                }
                files
            }
            Owner::Interrupted(staged) => staged.files.clone(),
            Owner::Nobody | Owner::Unrecorded => BTreeSet::new(),
        }
    }

    /// The record, if the folder has one.
    pub fn record(&self) -> Option<&BundleRecord> {
        match self {
            Owner::Recorded { record, .. } => Some(record),
            _ => None,
        }
    }
}

/// A record at `relative`, if there is one; refuses one that cannot be read.
fn read_record(folder: &Folder, relative: &str) -> Result<Option<BundleRecord>, BundleDirError> {
    let refused = |reason: String| BundleDirError::Refused {
        path: folder.shown().into(),
        reason,
    };
    let Some(text) = folder.read(relative).map_err(|e| refused(e.to_string()))? else {
        return Ok(None);
    };
    // The record holds no secret; serde's message may quote it.
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| refused(format!("{relative} is not a gantry bundle record: {e}")))
}

/// Up to three names, quoted, and how many more.
fn quote_some(names: &[String]) -> String {
    let mut shown: Vec<String> = names.iter().take(3).map(|n| format!("{n:?}")).collect();
    if names.len() > 3 {
        shown.push(format!("{} more", names.len() - 3));
    }
    shown.join(", ")
}

/// Whether `path` is inside one of `folders` (a relative bundle path).
pub fn is_under(path: &str, folders: &[&str]) -> bool {
    folders.iter().any(|folder| {
        path.strip_prefix(folder)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}
