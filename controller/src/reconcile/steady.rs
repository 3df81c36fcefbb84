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
//! - a watched object of the tenant changes (`crate::live` reports a new
//!   object, a new `resourceVersion` or a deletion through
//!   [`SteadyState::changed`]; a watch's replay of what it held is no news), or
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
/// corrects drift in what gantry does not watch (the tenant cluster's
/// objects) and renews certificates that come due.
pub const MAX_SETTLED: Duration = Duration::from_secs(15 * 60);

/// A hash of everything in a `TenantControlPlane` that a pass depends on.
pub fn fingerprint(tcp: &TenantControlPlane) -> u64 {
    let mut hasher = DefaultHasher::new();
    tcp.metadata.uid.hash(&mut hasher);
    tcp.metadata.generation.hash(&mut hasher);
    tcp.metadata.finalizers.hash(&mut hasher);
    tcp.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    // The annotations a platform admin sets to ask for an act (they change
    // no generation).
    let annotations = tcp.metadata.annotations.as_ref();
    for asked in [
        gantry_api::labels::RECREATE_CA_ANNOTATION,
        gantry_api::labels::RESTORE_ANNOTATION,
        super::operator_access::GRANT_ANNOTATION,
    ] {
        annotations.and_then(|a| a.get(asked)).hash(&mut hasher);
    }
    // Spec and status have no Hash; their JSON is canonical (struct field order).
    serde_json::to_vec(&tcp.spec)
        .expect("the spec serialises")
        .hash(&mut hasher);
    serde_json::to_vec(&tcp.status)
        .expect("the status serialises")
        .hash(&mut hasher);
    hasher.finish()
}

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
    settled: HashMap<String, Settled>,
}

/// Which tenants are settled; shared by the watches' news (see `operator`) and the reconciler.
#[derive(Default)]
pub struct SteadyState {
    inner: Mutex<Inner>,
}

impl SteadyState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A watched object of `tenant` changed: the tenant is not settled.
    pub fn changed(&self, tenant: &str) {
        let mut inner = self.inner.lock().expect("not poisoned");
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
    fn a_changed_spec_status_or_request_unsettles() {
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
        let mut asked = tcp.clone();
        asked.metadata.annotations = Some(
            [(
                super::super::operator_access::GRANT_ANNOTATION.to_string(),
                "1".to_string(),
            )]
            .into(),
        );
        assert_eq!(
            steady.settled_for("tenant-a", fingerprint(&asked), NOW),
            None,
            "a platform admin's request is acted on at once"
        );
        let mut other = tcp.clone();
        other.metadata.annotations = Some([("note".to_string(), "x".to_string())].into());
        assert!(
            steady
                .settled_for("tenant-a", fingerprint(&other), NOW)
                .is_some(),
            "other annotations are no news"
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
    fn a_change_unsettles_only_its_tenant() {
        let steady = SteadyState::new();
        let fp = fingerprint(&tcp());
        steady.settle("tenant-a", fp, steady.epoch("tenant-a"), LATER);
        steady.settle("tenant-b", fp, steady.epoch("tenant-b"), LATER);
        steady.changed("tenant-a");
        assert_eq!(steady.settled_for("tenant-a", fp, NOW), None);
        assert!(steady.settled_for("tenant-b", fp, NOW).is_some());
    }

    #[test]
    fn a_change_seen_while_a_pass_ran_keeps_the_tenant_unsettled() {
        let steady = SteadyState::new();
        let fp = fingerprint(&tcp());
        let epoch = steady.epoch("tenant-a");
        // The pass reads the API; meanwhile the watch reports a change.
        steady.changed("tenant-a");
        steady.settle("tenant-a", fp, epoch, LATER);
        assert_eq!(steady.settled_for("tenant-a", fp, NOW), None);
    }

    #[test]
    fn forgetting_a_tenant_drops_its_entries() {
        let steady = SteadyState::new();
        steady.changed("tenant-a");
        steady.settle("tenant-a", 1, steady.epoch("tenant-a"), LATER);
        steady.forget("tenant-a");
        assert_eq!(steady.settled_count(), 0);
        assert_eq!(steady.epoch("tenant-a"), 0);
    }
}
