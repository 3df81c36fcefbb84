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
    /// A bundle with its record.
    Recorded { record: BundleRecord },
    /// Gantry's first command in this folder was killed before it finished:
    /// everything in the folder is what it wrote (the record it was staging
    /// lists every file in place). Its keys are guarded, none of its files is
    /// ever removed.
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
        let gantrys_own = |name: &str| name == STAGING || name.starts_with(KEPT_PREFIX);
        if names
            .iter()
            .all(|(name, _)| gantrys_own(&name.to_string_lossy()))
        {
            return Ok(Owner::Nobody);
        }
        if let Some(record) = read_record(folder, RECORD)? {
            return Ok(Owner::Recorded { record });
        }
        let foreign: Vec<String> = names
            .iter()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .filter(|name| !GANTRY_NAMES.contains(&name.as_str()) && !gantrys_own(name))
            .collect();
        if !foreign.is_empty() {
            return Err(refused(format!(
                "is not empty and is not a gantry bundle (it has no {RECORD}, and holds {}); \
                 write into a new or empty folder",
                quote_some(&foreign)
            )));
        }
        // The record a killed first command was staging counts only if it
        // lists every file in place: then all of them are that command's.
        if let Some(staged) = staged_record(folder)
            && files_in_place(folder)?
                .iter()
                .all(|path| staged.files.contains(path))
        {
            return Ok(Owner::Interrupted(staged));
        }
        Ok(Owner::Unrecorded)
    }

    /// Refuses a bundle of another tenant, and a bundle without a record
    /// unless `adopt` says to take it over (then the namespace its service
    /// manifests name, if any, must be the tenant's).
    pub fn check(
        &self,
        folder: &Folder,
        tenant: &str,
        namespace: &str,
        adopt: bool,
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
            Owner::Unrecorded => match namespace_in_manifests(folder) {
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

    /// The files gantry wrote here before: the only ones it may remove. Only
    /// a record in place says so; a staged one may be anyone's.
    pub fn written_before(&self) -> BTreeSet<String> {
        match self {
            Owner::Recorded { record } => record.files.clone(),
            Owner::Interrupted(_) | Owner::Nobody | Owner::Unrecorded => BTreeSet::new(),
        }
    }

    /// The record, if the folder has one.
    pub fn record(&self) -> Option<&BundleRecord> {
        match self {
            Owner::Recorded { record } => Some(record),
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

/// The record a killed command left in its staging folder, if it can be
/// read (one that cannot, a power cut's empty file, is no hint at all).
fn staged_record(folder: &Folder) -> Option<BundleRecord> {
    let text = folder.read(&format!("{STAGING}/{RECORD}")).ok()??;
    serde_json::from_slice(&text).ok()
}

/// Every file of the folder outside gantry's staging folders.
fn files_in_place(folder: &Folder) -> Result<Vec<String>, BundleDirError> {
    let refused = |reason: String| BundleDirError::Refused {
        path: folder.shown().into(),
        reason,
    };
    let mut files = Vec::new();
    for (name, kind) in folder.names().map_err(|e| refused(e.to_string()))? {
        let name = name.to_string_lossy().into_owned();
        if name == STAGING || name.starts_with(KEPT_PREFIX) {
            continue;
        }
        if kind == rustix::fs::FileType::Directory {
            files.extend(
                folder
                    .files_under(&name)
                    .map_err(|e| refused(e.to_string()))?,
            );
        } else {
            files.push(name);
        }
    }
    Ok(files)
}

/// Whether `name` is one gantry writes at the top of a bundle.
pub fn is_bundle_name(name: &str) -> bool {
    GANTRY_NAMES.contains(&name)
}

/// How many of an unrecorded bundle's service manifests are read for their
/// namespace (each is one object; the first with a namespace answers).
const MANIFESTS_READ_FOR_NAMESPACE: usize = 16;

/// The namespace the first service manifests of an unrecorded bundle name.
fn namespace_in_manifests(folder: &Folder) -> Option<String> {
    let mut manifests = folder.files_under("service").ok()?;
    manifests.sort();
    manifests
        .iter()
        .filter(|path| path.ends_with(".yaml"))
        .take(MANIFESTS_READ_FOR_NAMESPACE)
        .find_map(|path| {
            let text = folder.read(path).ok()??;
            let object: serde_yaml::Value = gantry_pki::yaml_guard::parse(&text).ok()?;
            let namespace = object.get("metadata")?.get("namespace")?.as_str()?;
            Some(namespace.to_string())
        })
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
