//! `gantry run`'s process (kube-runtime Controller, watches, leader Lease,
//! metrics, health, events, shutdown) against the in-memory API server
//! DOUBLE, through kube's real `Client`: the double serves watches, so the
//! Controller runs unmodified.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use gantry_controller::operator::{self, Settings};
use support::api_double::InMemoryApiServerDouble;
use support::tenant::{masters_running, tenant, tenant_factory};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../tests/support/ports.rs"]
mod ports;

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports::free_port()))
}

/// One plain HTTP/1.1 GET: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// Polls `check` every 50 ms for up to `seconds`.
async fn eventually<T>(seconds: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn settings(identity: &str) -> Settings {
    Settings {
        metrics_addr: free_addr(),
        health_addr: free_addr(),
        leader_elect: true,
        lease_namespace: "gantry-system".into(),
        lease_name: "gantry-leader".into(),
        identity: identity.into(),
        concurrency: 4,
        service_cluster_domain: "cluster.local".into(),
    }
}

type Running = tokio::task::JoinHandle<Result<(), operator::RunError>>;

/// Starts one operator replica; send on the returned channel to shut it down
/// (what SIGTERM does in the binary).
fn start(
    double: &InMemoryApiServerDouble,
    tenant_api: &InMemoryApiServerDouble,
    identity: &str,
) -> (Settings, tokio::sync::oneshot::Sender<()>, Running) {
    let settings = settings(identity);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(operator::run(
        double.client(),
        settings.clone(),
        tenant_factory(tenant_api),
        async move {
            let _ = stopped.await;
        },
    ));
    (settings, stop, running)
}

fn phase(double: &InMemoryApiServerDouble) -> Option<String> {
    double.get("tenantcontrolplanes", "", "tenant-a")?["status"]["phase"]
        .as_str()
        .map(str::to_string)
}

fn lease_holder(double: &InMemoryApiServerDouble) -> Option<String> {
    double.get("leases", "gantry-system", "gantry-leader")?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gantry_run_takes_a_tenant_to_ready_and_a_standby_takes_over_on_shutdown() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    tenant(&double, true);

    let (first, stop_first, first_run) = start(&double, &tenant_api, "replica-1");
    eventually(10, "/readyz", async || {
        http_get(first.health_addr, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(
        http_get(first.health_addr, "/healthz").await,
        Some((200, "ok\n".into()))
    );
    eventually(10, "replica-1 to hold the Lease", async || {
        (lease_holder(&double).as_deref() == Some("replica-1")).then_some(())
    })
    .await;

    // The watch brings the tenant in; the masters are created and awaited.
    eventually(20, "the tenant to be provisioning", async || {
        (phase(&double).as_deref() == Some("Provisioning")).then_some(())
    })
    .await;
    assert!(double.get("statefulsets", "tcp-tenant-a", "etcd").is_some());
    // The workload controllers report the pods running: the Deployment and
    // StatefulSet watches map that back to the tenant, which becomes Ready.
    masters_running(&double);
    eventually(20, "the tenant to be Ready", async || {
        (phase(&double).as_deref() == Some("Ready")).then_some(())
    })
    .await;
    assert!(
        tenant_api
            .get("configmaps", "kube-public", "cluster-info")
            .is_some()
    );

    // Events, on the TenantControlPlane, say what changed.
    let reasons = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    };
    // The Ready event follows the status write that the test saw.
    let events = eventually(10, "the Ready event", async || {
        let events = double.list("events");
        reasons(&events)
            .contains(&"Ready".to_string())
            .then_some(events)
    })
    .await;
    for reason in [
        "CertificatesIssued",
        "Applied",
        "TenantBootstrapped",
        "JoinTokenUpdated",
    ] {
        assert!(
            reasons(&events).contains(&reason.to_string()),
            "no {reason} event in {:?}",
            reasons(&events)
        );
    }
    assert!(
        events
            .iter()
            .all(|e| e["regarding"]["kind"] == "TenantControlPlane"
                && e["regarding"]["name"] == "tenant-a")
    );

    // Metrics.
    let (code, metrics) = http_get(first.metrics_addr, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for line in ["gantry_tenants{phase=\"Ready\"} 1", "gantry_leader 1"] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
    let full = metrics
        .lines()
        .find(|l| l.starts_with("gantry_reconciles_total{result=\"Full\"}"))
        .unwrap_or_else(|| panic!("no full passes in\n{metrics}"));
    assert_ne!(full, "gantry_reconciles_total{result=\"Full\"} 0");

    // A second replica waits as a standby and does nothing.
    let (second, stop_second, second_run) = start(&double, &tenant_api, "replica-2");
    eventually(10, "replica-2 /metrics", async || {
        http_get(second.metrics_addr, "/metrics")
            .await
            .filter(|(_, body)| body.lines().any(|l| l == "gantry_leader 0"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lease_holder(&double).as_deref(), Some("replica-1"));

    // Shutdown (what SIGTERM triggers): replica-1 stops cleanly and releases
    // the Lease; replica-2 takes over.
    stop_first.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), first_run)
        .await
        .expect("replica-1 stops within 15 s")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    eventually(30, "replica-2 to hold the Lease", async || {
        (lease_holder(&double).as_deref() == Some("replica-2")).then_some(())
    })
    .await;
    eventually(10, "replica-2 to lead", async || {
        http_get(second.metrics_addr, "/metrics")
            .await
            .filter(|(_, body)| body.lines().any(|l| l == "gantry_leader 1"))
    })
    .await;
    stop_second.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), second_run)
        .await
        .expect("replica-2 stops within 15 s")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// SIGTERM before the Controller's first list of tenants: nothing has been
/// reconciled, so the operator exits at once (it used to wait for a list
/// that its stopped watches would never bring).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gantry_run_stops_when_shut_down_before_listing_the_tenants() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    tenant(&double, true);
    let settings = Settings {
        leader_elect: false,
        ..settings("replica-1")
    };
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        operator::run(
            double.client(),
            settings,
            tenant_factory(&tenant_api),
            async {},
        ),
    )
    .await
    .expect("stops within 5 s");
    assert!(result.is_ok(), "{result:?}");
}
