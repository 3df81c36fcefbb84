//! CPU of one steady-state reconcile (nothing changed, zero writes) through
//! kube's `Client` against the in-memory API server double, the figure issue 4
//! targets at ≤ 1 ms. It includes the double's own work and HTTP (de)serialisation.

use criterion::{Criterion, criterion_group, criterion_main};
use gantry_controller::reconcile::pipeline::{Context, reconcile};
use time::OffsetDateTime;

#[path = "../tests/support/mod.rs"]
mod support;

use support::api_double::InMemoryApiServerDouble;
use support::tenant::{masters_running, tenant, tenant_factory};

fn steady_state(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // kube's Client spawns its worker on creation: it needs the runtime.
    let _runtime = runtime.enter();
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let tcp = tenant(&double, true);
    let ctx = Context {
        client: double.client(),
        service_cluster_domain: "cluster.local".into(),
        tenant_client: tenant_factory(&tenant_api),
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
}

criterion_group!(benches, steady_state);
criterion_main!(benches);
