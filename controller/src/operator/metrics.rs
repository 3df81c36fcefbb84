//! Prometheus metrics of the operator process, served on `--metrics-addr`.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a reconcile ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum PassResult {
    /// A full pass ran.
    Full,
    /// The tenant was settled; nothing was read or written.
    Skipped,
    /// Not a failure: something is still on its way (a namespace terminating).
    Waiting,
    /// A failure; `gantry_reconcile_errors_total` has its category.
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: PassResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
}

pub struct Metrics {
    registry: Registry,
    kubelet_serving: Family<DecisionLabels, Counter>,
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<CategoryLabels, Counter>,
    duration: Histogram,
    tenants: Family<PhaseLabels, Gauge>,
    leader: Gauge,
    /// The last phase seen per tenant, from which `tenants` is counted.
    phases: Mutex<HashMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gantry");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of TenantControlPlanes, by result (full, skipped, waiting, error)",
            reconciles.clone(),
        );
        let errors = Family::<CategoryLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by category (Transient, Conflict, Bug)",
            errors.clone(),
        );
        // 0.5 ms to ~16 s: a settled tenant takes microseconds, a first pass with RSA keys seconds.
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Wall time of one reconcile",
            duration.clone(),
        );
        let tenants = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "tenants",
            "TenantControlPlanes by phase, as this replica last reconciled them",
            tenants.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and reconciles",
            leader.clone(),
        );
        let kubelet_serving = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "kubelet_serving_decisions",
            "Kubelet serving certificate requests decided in tenant clusters, by decision (Approved, Denied)",
            kubelet_serving.clone(),
        );
        Metrics {
            registry,
            kubelet_serving,
            reconciles,
            errors,
            duration,
            tenants,
            leader,
            phases: Mutex::default(),
        }
    }

    pub fn reconciled(&self, result: PassResult, seconds: f64) {
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        self.duration.observe(seconds);
    }

    /// A reconcile that ended in an error of `category` (a wait is not counted
    /// as a failure).
    pub fn failed(&self, category: crate::reconcile::pipeline::ErrorCategory, seconds: f64) {
        use crate::reconcile::pipeline::ErrorCategory;
        if category == ErrorCategory::Waiting {
            self.reconciled(PassResult::Waiting, seconds);
            return;
        }
        self.reconciled(PassResult::Error, seconds);
        self.errors
            .get_or_create(&CategoryLabels {
                category: category.as_str().into(),
            })
            .inc();
    }

    /// A kubelet serving request decided (`Approved` or `Denied`).
    pub fn kubelet_serving_decided(&self, decision: &str) {
        self.kubelet_serving
            .get_or_create(&DecisionLabels {
                decision: decision.to_string(),
            })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records `tenant`'s phase; `None` forgets the tenant (deleted).
    pub fn set_phase(&self, tenant: &str, phase: Option<&str>) {
        let mut phases = self.phases.lock().expect("not poisoned");
        let old = match phase {
            Some(phase) => phases.insert(tenant.to_string(), phase.to_string()),
            None => phases.remove(tenant),
        };
        if old.as_deref() == phase {
            return;
        }
        if let Some(old) = old {
            self.tenants
                .get_or_create(&PhaseLabels { phase: old })
                .dec();
        }
        if let Some(phase) = phase {
            self.tenants
                .get_or_create(&PhaseLabels {
                    phase: phase.to_string(),
                })
                .inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_counted_by_their_latest_phase() {
        let metrics = Metrics::new();
        metrics.set_phase("a", Some("Provisioning"));
        metrics.set_phase("b", Some("Provisioning"));
        metrics.set_phase("a", Some("Ready"));
        metrics.set_phase("a", Some("Ready"));
        metrics.set_phase("b", None);
        metrics.reconciled(PassResult::Skipped, 0.0001);
        metrics.kubelet_serving_decided("Denied");
        let text = metrics.encode();
        assert!(
            text.contains("gantry_kubelet_serving_decisions_total{decision=\"Denied\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gantry_tenants{phase=\"Ready\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gantry_tenants{phase=\"Provisioning\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("gantry_reconciles_total{result=\"Skipped\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gantry_reconcile_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
