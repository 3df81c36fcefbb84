//! Skipping the full pass for a tenant where nothing changed.
//!
//! A full reconcile reads the tenant's Secrets, re-decides every certificate
//! and renders every object (several milliseconds of CPU) only to find, in
//! steady state, that nothing needs writing. Most triggers in steady state
//! carry no change: a watch re-list replays every object, our own status write
//! comes back as an event. So after a pass that wrote nothing and left the
//! tenant Ready, the tenant is *settled*: until
//! - its `TenantControlPlane` changes (spec, status, finalizers, deletion; see
//!   [`fingerprint`]),
//! - a watched object of the tenant changes (a new `resourceVersion` reported
//!   through [`SteadyState::observe`]), or
//! - the settle time ends (at most [`MAX_SETTLED`], and before the join token
//!   is due for renewal),
//!
//! a trigger costs one hash of the object instead of a full pass. A stale
//! "settled" answer is the only risk, so every uncertain case (no entry, an
//! observation while a pass ran) answers "not settled".

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use crate::api::TenantControlPlane;

/// The longest a tenant stays settled: a full pass at least this often
/// corrects drift in objects gantry does not watch (ConfigMaps,
/// NetworkPolicies, PDBs, Secrets, the tenant cluster's objects).
pub const MAX_SETTLED: Duration = Duration::from_secs(15 * 60);

/// A hash of everything in a `TenantControlPlane` that a pass depends on.
pub fn fingerprint(tcp: &TenantControlPlane) -> u64 {
    let mut hasher = DefaultHasher::new();
    tcp.metadata.uid.hash(&mut hasher);
    tcp.metadata.generation.hash(&mut hasher);
    tcp.metadata.finalizers.hash(&mut hasher);
    tcp.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    // Spec and status have no Hash; their JSON is canonical (struct field order).
    serde_json::to_vec(&tcp.spec)
        .expect("the spec serialises")
        .hash(&mut hasher);
    serde_json::to_vec(&tcp.status)
        .expect("the status serialises")
        .hash(&mut hasher);
    hasher.finish()
}

/// A watched object, by kind, namespace and name.
pub type ObjectKey = (&'static str, String, String);

#[derive(Debug, Clone, Copy)]
struct Settled {
    fingerprint: u64,
    /// The tenant's observation epoch when the settling pass started.
    epoch: u64,
    until: OffsetDateTime,
}

#[derive(Default)]
struct Inner {
    /// Bumped whenever a watched object of the tenant changes.
    epochs: HashMap<String, u64>,
    /// The last `resourceVersion` seen per watched object.
    seen: HashMap<ObjectKey, String>,
    settled: HashMap<String, Settled>,
}

/// Which tenants are settled; shared by the watch mappers and the reconciler.
#[derive(Default)]
pub struct SteadyState {
    inner: Mutex<Inner>,
}

impl SteadyState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A watched object of `tenant` was seen at `resource_version`: a new
    /// version unsettles the tenant; a replay of a known one does not.
    pub fn observe(&self, tenant: &str, key: ObjectKey, resource_version: &str) {
        let mut inner = self.inner.lock().expect("not poisoned");
        if inner.seen.get(&key).map(String::as_str) == Some(resource_version) {
            return;
        }
        inner.seen.insert(key, resource_version.to_string());
        *inner.epochs.entry(tenant.to_string()).or_default() += 1;
        inner.settled.remove(tenant);
    }

    /// The tenant's epoch: read it before a pass and hand it to [`settle`](Self::settle).
    pub fn epoch(&self, tenant: &str) -> u64 {
        let inner = self.inner.lock().expect("not poisoned");
        inner.epochs.get(tenant).copied().unwrap_or(0)
    }

    /// Whether `tenant`, as `fingerprint` describes it, is settled at `now`;
    /// if so, for how much longer.
    pub fn settled_for(
        &self,
        tenant: &str,
        fingerprint: u64,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        let inner = self.inner.lock().expect("not poisoned");
        let settled = inner.settled.get(tenant)?;
        let epoch = inner.epochs.get(tenant).copied().unwrap_or(0);
        if settled.fingerprint != fingerprint || settled.epoch != epoch || now >= settled.until {
            return None;
        }
        Duration::try_from(settled.until - now).ok()
    }

    /// Records a pass that found nothing to change. Ignored if anything of
    /// the tenant was observed since `epoch` was read (the pass may not have seen it).
    pub fn settle(&self, tenant: &str, fingerprint: u64, epoch: u64, until: OffsetDateTime) {
        let mut inner = self.inner.lock().expect("not poisoned");
        if inner.epochs.get(tenant).copied().unwrap_or(0) != epoch {
            return;
        }
        inner.settled.insert(
            tenant.to_string(),
            Settled {
                fingerprint,
                epoch,
                until,
            },
        );
    }

    /// Forgets a tenant (deleted), so the maps do not grow without bound.
    pub fn forget(&self, tenant: &str) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.settled.remove(tenant);
        inner.epochs.remove(tenant);
        inner
            .seen
            .retain(|(_, namespace, _), _| namespace != &gantry_pki::default_namespace(tenant));
    }

    /// Number of settled tenants (for metrics and tests).
    pub fn settled_count(&self) -> usize {
        self.inner.lock().expect("not poisoned").settled.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp() -> TenantControlPlane {
        TenantControlPlane::from_yaml(include_str!("../../../examples/tenant-a.yaml")).unwrap()
    }

    fn key(name: &str) -> ObjectKey {
        ("Deployment", "tcp-tenant-a".into(), name.into())
    }

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-22 12:00 UTC);
    const LATER: OffsetDateTime = time::macros::datetime!(2026-11-22 12:10 UTC);

    #[test]
    fn a_settled_tenant_stays_settled_until_its_time_ends() {
        let steady = SteadyState::new();
        let fp = fingerprint(&tcp());
        assert_eq!(
            steady.settled_for("tenant-a", fp, NOW),
            None,
            "nothing known yet"
        );
        steady.settle("tenant-a", fp, steady.epoch("tenant-a"), LATER);
        assert_eq!(
            steady.settled_for("tenant-a", fp, NOW),
            Some(Duration::from_secs(600))
        );
        assert_eq!(steady.settled_for("tenant-a", fp, LATER), None);
    }

    #[test]
    fn a_changed_spec_or_status_unsettles() {
        let steady = SteadyState::new();
        let tcp = tcp();
        steady.settle("tenant-a", fingerprint(&tcp), 0, LATER);
        let mut changed = tcp.clone();
        changed
            .spec
            .api_server
            .cert_sans
            .push("api.example.com".into());
        assert_eq!(
            steady.settled_for("tenant-a", fingerprint(&changed), NOW),
            None
        );
        let mut status = tcp.clone();
        status.status = Some(Default::default());
        assert_eq!(
            steady.settled_for("tenant-a", fingerprint(&status), NOW),
            None
        );
        let mut deleting = tcp.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(0).unwrap(),
            ));
        assert_eq!(
            steady.settled_for("tenant-a", fingerprint(&deleting), NOW),
            None
        );
        assert!(
            steady
                .settled_for("tenant-a", fingerprint(&tcp), NOW)
                .is_some()
        );
    }

    #[test]
    fn a_new_resource_version_unsettles_but_a_replay_does_not() {
        let steady = SteadyState::new();
        let fp = fingerprint(&tcp());
        steady.observe("tenant-a", key("kube-apiserver"), "41");
        steady.settle("tenant-a", fp, steady.epoch("tenant-a"), LATER);
        // A watch re-list replays the same version.
        steady.observe("tenant-a", key("kube-apiserver"), "41");
        assert!(steady.settled_for("tenant-a", fp, NOW).is_some());
        // Someone edits the Deployment.
        steady.observe("tenant-a", key("kube-apiserver"), "42");
        assert_eq!(steady.settled_for("tenant-a", fp, NOW), None);
        // Other tenants are not affected.
        steady.settle("tenant-b", fp, steady.epoch("tenant-b"), LATER);
        steady.observe("tenant-a", key("kube-apiserver"), "43");
        assert!(steady.settled_for("tenant-b", fp, NOW).is_some());
    }

    #[test]
    fn a_change_seen_while_a_pass_ran_keeps_the_tenant_unsettled() {
        let steady = SteadyState::new();
        let fp = fingerprint(&tcp());
        let epoch = steady.epoch("tenant-a");
        // The pass reads the API; meanwhile the watch reports a change.
        steady.observe("tenant-a", key("kube-scheduler"), "7");
        steady.settle("tenant-a", fp, epoch, LATER);
        assert_eq!(steady.settled_for("tenant-a", fp, NOW), None);
    }

    #[test]
    fn forgetting_a_tenant_drops_its_entries() {
        let steady = SteadyState::new();
        steady.observe("tenant-a", key("kube-apiserver"), "1");
        steady.settle("tenant-a", 1, steady.epoch("tenant-a"), LATER);
        steady.forget("tenant-a");
        assert_eq!(steady.settled_count(), 0);
        assert_eq!(steady.epoch("tenant-a"), 0);
        // The forgotten version counts as new again.
        steady.observe("tenant-a", key("kube-apiserver"), "1");
        assert_eq!(steady.epoch("tenant-a"), 1);
    }
}
