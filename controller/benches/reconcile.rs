//! One steady-state reconcile (nothing changed, zero writes) through kube's
//! `Client` against the in-memory API server double (in-process; its own work
//! and the (de)serialisation on both sides are included):
//! - `steady_state_reconcile`: a full pass (what a restarted operator does);
//! - `settled_reconcile`: the controller's entry point for a settled tenant
//!   (see `reconcile::steady`), what most steady-state triggers cost.

use criterion::{Criterion, criterion_group, criterion_main};
use gantry_controller::api::TenantControlPlane;
use gantry_controller::reconcile::pipeline::{Context, Pass, reconcile, reconcile_tenant};
use gantry_controller::reconcile::steady::SteadyState;
use std::sync::Arc;
use time::OffsetDateTime;

#[path = "../tests/support/mod.rs"]
mod support;

use support::api_double::InMemoryApiServerDouble;
use support::tenant::{TenantBuilder, masters_running, tenant_factory};

fn steady_state(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // kube's Client spawns its worker on creation: it needs the runtime.
    let _runtime = runtime.enter();
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let tcp = TenantBuilder::new("tenant-a").store(&double);
    let ctx = Context {
        client: double.client(),
        live: None,
        service_cluster: gantry_renderer::ServiceCluster::default(),
        tenant_client: tenant_factory(&tenant_api),
        kubelet_serving: None,
    };
    let current = |double: &InMemoryApiServerDouble| {
        let mut tcp = tcp.clone();
        tcp.status = serde_json::from_value(
            double.get("tenantcontrolplanes", "", "tenant-a").unwrap()["status"].clone(),
        )
        .ok();
        tcp
    };
    // Reach the steady state: everything applied, tenant bootstrapped, Ready.
    runtime.block_on(async {
        reconcile(&current(&double), &ctx, OffsetDateTime::now_utc())
            .await
            .unwrap();
        masters_running(&double);
        reconcile(&current(&double), &ctx, OffsetDateTime::now_utc())
            .await
            .unwrap();
    });
    let tcp = current(&double);
    double.clear_writes();
    c.bench_function("steady_state_reconcile", |b| {
        b.iter(|| {
            runtime
                .block_on(reconcile(&tcp, &ctx, OffsetDateTime::now_utc()))
                .unwrap()
        })
    });
    assert!(
        double.writes().is_empty(),
        "steady state must not write: {:?}",
        double.writes()
    );

    let steady = SteadyState::new();
    let stored = || -> Arc<TenantControlPlane> {
        Arc::new(
            serde_json::from_value(double.get("tenantcontrolplanes", "", "tenant-a").unwrap())
                .unwrap(),
        )
    };
    // Settle the tenant through the controller's entry point: the finalizer
    // is added, then a full pass finds nothing to change.
    let settled = (0..4).any(|_| {
        let pass = runtime
            .block_on(reconcile_tenant(
                stored(),
                &ctx,
                &steady,
                OffsetDateTime::now_utc(),
            ))
            .unwrap();
        matches!(pass, Pass::Skipped { .. })
    });
    assert!(settled, "the tenant settles");
    let tcp = stored();
    c.bench_function("settled_reconcile", |b| {
        b.iter(|| {
            let pass = runtime
                .block_on(reconcile_tenant(
                    tcp.clone(),
                    &ctx,
                    &steady,
                    OffsetDateTime::now_utc(),
                ))
                .unwrap();
            assert!(matches!(pass, Pass::Skipped { .. }));
        })
    });
}

criterion_group!(benches, steady_state);
criterion_main!(benches);
