//! `gantry run`'s process (kube-runtime Controller, watches, leader Lease,
//! metrics, health, events, shutdown) against the in-memory API server
//! DOUBLE, through kube's real `Client`: the double serves watches, so the
//! Controller runs unmodified.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_controller::operator::{self, Settings};
use gantry_controller::reconcile::pipeline::{self, TenantClientFactory};
use support::api_double::InMemoryApiServerDouble;
use support::tenant::{TenantBuilder, masters_running, tenant_factory};
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
        service_cluster: gantry_renderer::ServiceCluster::default(),
        reconcile_timeout: operator::RECONCILE_TIMEOUT,
    }
}

type Running = tokio::task::JoinHandle<Result<(), operator::RunError>>;

/// Shuts a replica down (what SIGTERM does) and asserts that `run`
/// returns `Ok` within 15 s.
async fn shut_down(stop: tokio::sync::oneshot::Sender<()>, running: Running, who: &str) {
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .unwrap_or_else(|_| panic!("{who} stops within 15 s"))
        .unwrap();
    assert!(result.is_ok(), "{who}: {result:?}");
}

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
    TenantBuilder::new("tenant-a").store(&double);

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
    // A repeat (several passes apply objects) adds to the first Event's
    // series; it makes no second Event.
    let mut seen = reasons(&events);
    seen.sort();
    let all = seen.len();
    seen.dedup();
    assert_eq!(
        seen.len(),
        all,
        "one Event per reason: {:?}",
        reasons(&events)
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
    shut_down(stop_first, first_run, "replica-1").await;
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
    shut_down(stop_second, second_run, "replica-2").await;
}

/// SIGTERM before the Controller's first list of tenants: nothing has been
/// reconciled, so the operator exits at once (it used to wait for a list
/// that its stopped watches would never bring).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gantry_run_stops_when_shut_down_before_listing_the_tenants() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    TenantBuilder::new("tenant-a").store(&double);
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

/// A tenant apiserver that hangs: it accepts TCP connections and never
/// answers. Counts the connections accepted and those the client closed.
struct HungApiServer {
    url: String,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl HungApiServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (counted, ended) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let ended = ended.clone();
                tokio::spawn(async move {
                    // Read (the TLS ClientHello) and never write, until the
                    // client gives up and closes.
                    let mut buffer = [0u8; 4096];
                    while matches!(connection.read(&mut buffer).await, Ok(n) if n > 0) {}
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        HungApiServer {
            url,
            accepted,
            closed,
        }
    }
}

/// tenant-a's apiserver hangs (the production client, pointed at
/// `hung`); every other tenant's is `tenant_api`.
fn hung_tenant_a_factory(
    hung: &HungApiServer,
    tenant_api: &InMemoryApiServerDouble,
) -> TenantClientFactory {
    let (hung, tenant_api) = (hung.url.clone(), tenant_api.clone());
    Arc::new(move |kubeconfig: Vec<u8>, server: String| {
        if server.contains("tcp-tenant-a.") {
            pipeline::tenant_client_from_kubeconfig(kubeconfig, hung.clone())
        } else {
            let client = tenant_api.client();
            Box::pin(async move { Ok(client) })
        }
    })
}

fn phase_of(double: &InMemoryApiServerDouble, name: &str) -> Option<String> {
    double.get("tenantcontrolplanes", "", name)?["status"]["phase"]
        .as_str()
        .map(str::to_string)
}

fn roll_out_masters(double: &InMemoryApiServerDouble, tenant: &str) {
    let namespace = format!("tcp-{tenant}");
    double.roll_out("statefulsets", &namespace, "etcd");
    for name in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        double.roll_out("deployments", &namespace, name);
    }
}

/// One worker (`--concurrency 1`) and a tenant whose apiserver hangs: the
/// hung pass is cut at `--reconcile-timeout` (2 s here), so another tenant
/// still becomes Ready. Without the cut the worker would wait for the tenant
/// client's own 30 s read timeout, after this test's 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_tenant_apiserver_is_cut_at_the_reconcile_timeout_and_others_go_on() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let hung = HungApiServer::start().await;
    TenantBuilder::new("tenant-a").store(&double);
    TenantBuilder::new("tenant-b")
        .endpoint("203.0.113.11")
        .store(&double);
    let settings = Settings {
        leader_elect: false,
        concurrency: 1,
        reconcile_timeout: Duration::from_secs(2),
        ..settings("replica-1")
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(operator::run(
        double.client(),
        settings.clone(),
        hung_tenant_a_factory(&hung, &tenant_api),
        async move {
            let _ = stopped.await;
        },
    ));
    for name in ["tenant-a", "tenant-b"] {
        eventually(20, "both tenants provisioning", async || {
            (phase_of(&double, name).as_deref() == Some("Provisioning")).then_some(())
        })
        .await;
    }
    // tenant-a's masters run first: its pass goes to the hung apiserver and
    // holds the only worker. Then tenant-b's masters run.
    roll_out_masters(&double, "tenant-a");
    eventually(
        20,
        "tenant-a's pass to reach its hung apiserver",
        async || (hung.accepted.load(Ordering::SeqCst) > 0).then_some(()),
    )
    .await;
    roll_out_masters(&double, "tenant-b");
    eventually(
        20,
        "tenant-b to be Ready beside the hung tenant-a",
        async || (phase_of(&double, "tenant-b").as_deref() == Some("Ready")).then_some(()),
    )
    .await;
    assert!(
        hung.closed.load(Ordering::SeqCst) > 0,
        "the hung pass was not cut"
    );
    assert_ne!(phase_of(&double, "tenant-a").as_deref(), Some("Ready"));
    let (_, metrics) = http_get(settings.metrics_addr, "/metrics").await.unwrap();
    let errors = metrics
        .lines()
        .find(|l| l.starts_with("gantry_reconciles_total{result=\"Error\"}"))
        .unwrap_or_else(|| panic!("no error count in\n{metrics}"));
    assert_ne!(errors, "gantry_reconciles_total{result=\"Error\"} 0");
    // A timed-out pass is a transient failure, retried with back-off.
    assert!(
        metrics.lines().any(|l| l
            .starts_with("gantry_reconcile_errors_total{category=\"Transient\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert_eq!(
        http_get(settings.health_addr, "/healthz").await,
        Some((200, "ok\n".into()))
    );
    shut_down(stop, running, "the operator").await;
}

/// A leader whose Lease another replica takes while a pass is in flight (it
/// waits on a hung tenant apiserver, with a 10-minute reconcile timeout):
/// the pass is dropped at once, its connection closed, and `run` returns
/// `LostLeadership`, long before the pass could have ended on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_cuts_a_pass_that_is_in_flight() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let hung = HungApiServer::start().await;
    TenantBuilder::new("tenant-a").store(&double);
    let settings = Settings {
        reconcile_timeout: Duration::from_secs(600),
        ..settings("replica-1")
    };
    let running = tokio::spawn(operator::run(
        double.client(),
        settings,
        hung_tenant_a_factory(&hung, &tenant_api),
        std::future::pending(),
    ));
    eventually(20, "the tenant to be provisioning", async || {
        (phase(&double).as_deref() == Some("Provisioning")).then_some(())
    })
    .await;
    roll_out_masters(&double, "tenant-a");
    eventually(20, "a pass in flight at the hung apiserver", async || {
        (hung.accepted.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert_eq!(hung.closed.load(Ordering::SeqCst), 0);

    let mut lease = double
        .get("leases", "gantry-system", "gantry-leader")
        .expect("the Lease");
    let now = time::OffsetDateTime::now_utc();
    let renew = format!("{}.000000Z", gantry_pki::rfc3339(now).trim_end_matches('Z'));
    lease["spec"]["holderIdentity"] = "replica-2".into();
    lease["spec"]["renewTime"] = renew.into();
    lease["spec"]["leaseDurationSeconds"] = 300.into();
    double.put(
        "coordination.k8s.io",
        "v1",
        "leases",
        "gantry-system",
        lease,
    );
    let taken = tokio::time::Instant::now();

    let result = tokio::time::timeout(Duration::from_secs(25), running)
        .await
        .expect("the replica stops within 25 s of losing its Lease")
        .unwrap();
    assert!(
        matches!(result, Err(operator::RunError::LostLeadership)),
        "{result:?}"
    );
    eventually(5, "the in-flight pass's connection to close", async || {
        (hung.closed.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    // The tenant client's own read timeout (30 s) did not end it.
    assert!(taken.elapsed() < Duration::from_secs(29));
}
