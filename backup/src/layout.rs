//! Where a tenant's backups live in the bucket, what their manifest says,
//! and which ones retention deletes. Pure: no I/O here.
//!
//! ```text
//! <prefix>/<tenant>/<name>.db     etcd's snapshot, as etcd sent it
//! <prefix>/<tenant>/<name>.keys   the key material, sealed
//! <prefix>/<tenant>/<name>.json   the manifest, written last
//! ```
//!
//! `<name>` is the UTC time it was taken, `20261207T172000Z`, so names sort
//! by age. A snapshot counts only once its manifest is written.

use serde::{Deserialize, Serialize};

use crate::Error;
/// The bucket's names are the restore's: one rule (`gantry-api`).
pub use gantry_api::restore::is_snapshot_name;

pub const FORMAT: &str = "gantry.dev/etcd-snapshot/v1";

/// A tenant's place in the bucket, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPrefix {
    /// The TenantControlPlane's name (cluster-wide unique).
    pub tenant: String,
    /// `<prefix>/<tenant>/`.
    pub prefix: String,
}

impl TenantPrefix {
    pub fn new(prefix: &str, tenant: &str) -> Result<Self, Error> {
        let valid = !tenant.is_empty()
            && tenant.len() <= 63
            && tenant
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !tenant.starts_with('-')
            && !tenant.ends_with('-');
        if !valid {
            return Err(Error::input(
                "--tenant",
                format!("{tenant:?} is not a tenant's name (a DNS label)"),
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(Error::input(
                "--prefix",
                format!("{prefix:?} is not a folder path (no empty, `.` or `..` parts)"),
            ));
        }
        Ok(TenantPrefix {
            tenant: tenant.to_string(),
            prefix: format!("{prefix}/{tenant}/"),
        })
    }

    pub fn key(&self, name: &str, kind: Kind) -> String {
        format!("{}{name}.{}", self.prefix, kind.extension())
    }

    /// The name and kind of an object key gantry wrote under this prefix;
    /// None for anything else, which gantry never deletes.
    pub fn parse(&self, key: &str) -> Option<(String, Kind)> {
        let file = key.strip_prefix(&self.prefix)?;
        let (name, extension) = file.split_once('.')?;
        let kind = Kind::from_extension(extension)?;
        is_snapshot_name(name).then(|| (name.to_string(), kind))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Database,
    Keys,
    Manifest,
}

impl Kind {
    fn extension(self) -> &'static str {
        match self {
            Kind::Database => "db",
            Kind::Keys => "keys",
            Kind::Manifest => "json",
        }
    }

    fn from_extension(extension: &str) -> Option<Self> {
        match extension {
            "db" => Some(Kind::Database),
            "keys" => Some(Kind::Keys),
            "json" => Some(Kind::Manifest),
            _ => None,
        }
    }
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn snapshot_name(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// What one snapshot is, written beside it last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub tenant: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub taken_at: String,
    pub etcd: EtcdFacts,
    pub database: ObjectFacts,
    pub keys: ObjectFacts,
    /// Which platform key sealed the keys (its id, never the key).
    pub platform_key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdFacts {
    pub endpoint: String,
    pub version: String,
    /// Hex, as etcdctl prints them.
    pub cluster_id: String,
    pub member_id: String,
    pub revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectFacts {
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
}

/// An object gantry wrote, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub name: String,
    pub kind: Kind,
    pub bytes: u64,
}

/// Groups a listing by snapshot name, oldest first: the names whose manifest
/// is there (complete) and the others (a run that failed part-way).
pub fn complete_names(listed: &[Listed]) -> Vec<String> {
    let mut names: Vec<String> = listed
        .iter()
        .filter(|o| o.kind == Kind::Manifest)
        .map(|o| o.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The objects retention deletes, manifests first (so a snapshot stops
/// counting before its data goes): every object of a complete snapshot but
/// the newest `keep`, and every piece of an incomplete one older than the
/// newest complete (a failed run; a newer one may still be in progress).
pub fn retention_plan(listed: &[Listed], keep: usize) -> Vec<String> {
    let complete = complete_names(listed);
    let expired: Vec<&String> = complete.iter().rev().skip(keep.max(1)).collect();
    let newest = complete.last();
    let mut doomed: Vec<&Listed> = listed
        .iter()
        .filter(|o| {
            let is_complete = complete.contains(&o.name);
            (is_complete && expired.contains(&&o.name))
                || (!is_complete && newest.is_some_and(|n| o.name < *n))
        })
        .collect();
    doomed.sort_by(|a, b| {
        (b.kind == Kind::Manifest, &a.name).cmp(&(a.kind == Kind::Manifest, &b.name))
    });
    doomed.into_iter().map(|o| o.key.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(prefix: &TenantPrefix, names: &[(&str, &[Kind])]) -> Vec<Listed> {
        names
            .iter()
            .flat_map(|(name, kinds)| {
                kinds.iter().map(|kind| Listed {
                    key: prefix.key(name, *kind),
                    name: name.to_string(),
                    kind: *kind,
                    bytes: 1,
                })
            })
            .collect()
    }

    const ALL: &[Kind] = &[Kind::Database, Kind::Keys, Kind::Manifest];

    #[test]
    fn names_sort_by_time_and_only_gantrys_keys_parse() {
        let at = time::macros::datetime!(2026-12-07 17:20:05 UTC);
        assert_eq!(snapshot_name(at), "20261207T172005Z");
        let prefix = TenantPrefix::new("gantry", "prod").unwrap();
        assert_eq!(
            prefix.key("20261207T172005Z", Kind::Keys),
            "gantry/prod/20261207T172005Z.keys"
        );
        assert_eq!(
            prefix.parse("gantry/prod/20261207T172005Z.db"),
            Some(("20261207T172005Z".to_string(), Kind::Database))
        );
        for stranger in [
            "gantry/prod/notes.txt",
            "gantry/prod/20261207T172005Z.tar",
            "gantry/prod-2/20261207T172005Z.db",
            "gantry/prod/x/20261207T172005Z.db",
        ] {
            assert_eq!(prefix.parse(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn bad_tenants_and_prefixes_are_named() {
        for (prefix, tenant, field) in [
            ("gantry", "team/prod", "--tenant"),
            ("gantry", "Prod", "--tenant"),
            ("gantry", "-prod", "--tenant"),
            ("a//b", "prod", "--prefix"),
            ("a/../b", "prod", "--prefix"),
        ] {
            let message = TenantPrefix::new(prefix, tenant).unwrap_err().to_string();
            assert!(message.starts_with(field), "{message}");
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_deletes_manifests_first() {
        let prefix = TenantPrefix::new("gantry", "b").unwrap();
        let objects = listed(
            &prefix,
            &[
                ("20261201T000000Z", ALL),
                ("20261202T000000Z", &[Kind::Database]),
                ("20261203T000000Z", ALL),
                ("20261204T000000Z", ALL),
                ("20261205T000000Z", &[Kind::Database, Kind::Keys]),
            ],
        );
        let plan = retention_plan(&objects, 2);
        assert_eq!(
            plan,
            [
                "gantry/b/20261201T000000Z.json",
                "gantry/b/20261201T000000Z.db",
                "gantry/b/20261201T000000Z.keys",
                "gantry/b/20261202T000000Z.db",
            ]
        );
        // The newest incomplete one may be a run in progress: kept.
        assert!(!plan.iter().any(|k| k.contains("20261205")));
        // Keep 0 still keeps the newest good snapshot.
        assert!(
            !retention_plan(&objects, 0)
                .iter()
                .any(|k| k.contains("20261204"))
        );
    }
}
