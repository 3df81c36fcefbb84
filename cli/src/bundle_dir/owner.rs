//! Whose a bundle folder is: the record a render leaves (`gantry-bundle.json`),
//! and what a folder without one may be.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use super::{BundleDirError, refuse_links};

/// The record of a rendered bundle, `gantry-bundle.json` at its top: the
/// tenant it belongs to and every file gantry wrote, which are the only files
/// a later render may remove.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleRecord {
    pub tenant: String,
    pub namespace: String,
    pub files: BTreeSet<String>,
    /// What the render was made from that a later render may not change.
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

/// The record's file name.
pub const RECORD: &str = "gantry-bundle.json";

/// What `--out` holds before a render.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nothing: the folder does not exist or is empty.
    Nobody,
    /// A bundle rendered by this gantry, with its record.
    Recorded(BundleRecord),
    /// A bundle of an earlier gantry (no record): `pki init`'s output or an
    /// older render. Taken over, but none of its files is ever removed.
    Earlier,
}

impl Owner {
    /// What `dir` holds; refuses a folder that holds files but is no gantry
    /// bundle.
    pub fn of(dir: &Path) -> Result<Owner, BundleDirError> {
        let refused = |reason: String| BundleDirError::Refused {
            path: dir.into(),
            reason,
        };
        let mut entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Owner::Nobody),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(refused("exists and is not a folder".into()));
            }
            Err(e) => return Err(refused(e.to_string())),
        };
        if entries.next().is_none() {
            return Ok(Owner::Nobody);
        }
        refuse_links(dir, RECORD)?;
        match fs::read(dir.join(RECORD)) {
            Ok(text) => serde_json::from_slice(&text)
                .map(Owner::Recorded)
                .map_err(|e| refused(format!("{RECORD} is not a gantry bundle record: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if is_earlier_bundle(dir) {
                    Ok(Owner::Earlier)
                } else {
                    Err(refused(format!(
                        "is not empty and is not a gantry bundle (it has no {RECORD}); \
                         render into a new or empty folder"
                    )))
                }
            }
            Err(e) => Err(refused(format!("cannot read {RECORD}: {e}"))),
        }
    }
}

/// Whether `dir` (with no record) is what an earlier gantry wrote: `pki init`'s
/// output or an older render. Every top-level entry must be one gantry
/// writes, so that a kubeadm node's /etc/kubernetes (`manifests/`,
/// `kubelet.conf`) or any other folder is never taken for one.
fn is_earlier_bundle(dir: &Path) -> bool {
    const GANTRY_NAMES: [&str; 11] = [
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
    ];
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names
        .iter()
        .all(|name| GANTRY_NAMES.contains(&name.as_str()))
        && ["pki/ca.crt", "pki/ca.key", "join-command"]
            .iter()
            .any(|file| fs::symlink_metadata(dir.join(file)).is_ok())
}
