//! CPU of one steady-state reconcile (nothing changed, zero writes) through
//! kube's `Client` against the in-memory API server double, the figure issue 4
//! targets at ≤ 1 ms. It includes the double's own work and HTTP (de)serialisation.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gantry_controller::api::TenantControlPlane;
use gantry_controller::reconcile::pipeline::{Context, TenantClientFactory, reconcile};
use serde_json::json;
use time::OffsetDateTime;

#[path = "../tests/support/api_double.rs"]
#[allow(dead_code)]
mod api_double;

use api_double::InMemoryApiServerDouble;

fn steady_state(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // kube's Client spawns its worker on creation: it needs the runtime.
    let _runtime = runtime.enter();
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let mut tcp =
        TenantControlPlane::from_yaml(include_str!("../../examples/tenant-a.yaml")).unwrap();
    tcp.metadata.generation = Some(1);
    double.put(
        "gantry.dev",
        "v1alpha1",
        "tenantcontrolplanes",
        "",
        serde_json::to_value(&tcp).unwrap(),
    );
    let factory: TenantClientFactory = {
        let tenant_api = tenant_api.clone();
        Arc::new(move |_, _| {
            let tenant_api = tenant_api.clone();
            Box::pin(async move { Ok(tenant_api.client()) })
        })
    };
    let ctx = Context {
        client: double.client(),
        service_cluster_domain: "cluster.local".into(),
        tenant_client: factory,
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
        double.set_field(
            "statefulsets",
            "tcp-tenant-a",
            "etcd",
            "/status/readyReplicas",
            json!(3),
        );
        double.set_field(
            "deployments",
            "tcp-tenant-a",
            "kube-apiserver",
            "/status/availableReplicas",
            json!(2),
        );
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
}

criterion_group!(benches, steady_state);
criterion_main!(benches);
