//! Passes as the controller runs them, one at a time, against the API double.

use std::sync::Arc;

use gantry_controller::api::TenantControlPlane;
use gantry_controller::kubelet_serving::KubeletServingApprovers;
use gantry_controller::live::LiveObjects;
use gantry_controller::reconcile::pipeline::{
    Context, Outcome, ReconcileError, TenantClientFactory, reconcile,
};
use time::OffsetDateTime;

use super::api_double::InMemoryApiServerDouble;
use super::tenant::{TenantBuilder, masters_running, tenant_factory};

/// Reconciles `tcp` as the controller would: with the status last written,
/// reading the service cluster from `live` objects if given, else the API.
pub async fn pass(
    double: &InMemoryApiServerDouble,
    tenant: TenantClientFactory,
    tcp: &TenantControlPlane,
    live: Option<Arc<LiveObjects>>,
) -> Outcome {
    pass_result_with(double, tenant, tcp, live, None)
        .await
        .unwrap()
}

/// [`pass`] from the API, its error returned.
pub async fn pass_result(
    double: &InMemoryApiServerDouble,
    tenant: TenantClientFactory,
    tcp: &TenantControlPlane,
) -> Result<Outcome, ReconcileError> {
    pass_result_with(double, tenant, tcp, None, None).await
}

async fn pass_result_with(
    double: &InMemoryApiServerDouble,
    tenant: TenantClientFactory,
    tcp: &TenantControlPlane,
    live: Option<Arc<LiveObjects>>,
    kubelet_serving: Option<Arc<KubeletServingApprovers>>,
) -> Result<Outcome, ReconcileError> {
    let mut current = tcp.clone();
    if let Some(stored) = double.get("tenantcontrolplanes", "", "tenant-a") {
        current.status = serde_json::from_value(stored["status"].clone()).ok();
    }
    let ctx = Context {
        client: double.client(),
        live,
        service_cluster: gantry_renderer::ServiceCluster::default(),
        tenant_client: tenant,
        kubelet_serving,
    };
    reconcile(&current, &ctx, OffsetDateTime::now_utc()).await
}

/// [`pass`] from the API.
pub async fn run_with(
    double: &InMemoryApiServerDouble,
    tenant: TenantClientFactory,
    tcp: &TenantControlPlane,
) -> Outcome {
    pass(double, tenant, tcp, None).await
}

/// [`run_with`], with the operator's kubelet-serving `approvers`.
pub async fn run_with_approvers(
    double: &InMemoryApiServerDouble,
    tenant: TenantClientFactory,
    tcp: &TenantControlPlane,
    approvers: Arc<KubeletServingApprovers>,
) -> Outcome {
    pass_result_with(double, tenant, tcp, None, Some(approvers))
        .await
        .unwrap()
}

/// [`run_with`], against a tenant apiserver of its own.
pub async fn run(double: &InMemoryApiServerDouble, tcp: &TenantControlPlane) -> Outcome {
    run_with(double, tenant_factory(&InMemoryApiServerDouble::new()), tcp).await
}

/// The example tenant reconciled to Ready: masters running, tenant bootstrapped.
pub async fn ready_tenant() -> (
    InMemoryApiServerDouble,
    InMemoryApiServerDouble,
    TenantControlPlane,
) {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let tcp = TenantBuilder::new("tenant-a").store(&double);
    run_with(&double, tenant_factory(&tenant_api), &tcp).await;
    masters_running(&double);
    run_with(&double, tenant_factory(&tenant_api), &tcp).await;
    (double, tenant_api, tcp)
}

pub fn condition<'a>(outcome: &'a Outcome, type_: &str) -> (&'a str, &'a str) {
    let c = outcome
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"));
    (c.status.as_str(), c.reason.as_str())
}

pub fn object_writes(double: &InMemoryApiServerDouble) -> Vec<String> {
    double
        .writes()
        .into_iter()
        .filter(|w| !w.ends_with("/status"))
        .collect()
}
