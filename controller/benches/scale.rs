//! Scale: N tenants (default 1,000) reconciled by gantry's reconcile pipeline
//! against the in-memory API server DOUBLE, which runs in a child process and
//! is reached over HTTP on loopback, so the figures below are the operator
//! process's alone:
//!
//! - peak resident memory (VmHWM) after provisioning every tenant to Ready;
//! - CPU (user + system, getrusage) per settled reconcile — a trigger that
//!   carries nothing new, the common case in steady state;
//! - CPU and requests per full steady pass — a restarted operator re-reading
//!   every tenant and finding nothing to write (the double's own CPU is not
//!   counted), reading the service cluster from the API, then from live
//!   objects kept by watches (`gantry_controller::live`) as the operator does;
//! - the memory the live objects take.
//!
//! The double stands in for the StatefulSet and Deployment controllers too:
//! every applied workload reports itself rolled out at once.
//!
//! With `GANTRY_SCALE_CONTROLLER=1` it runs the real operator instead
//! (`operator::run`: kube-runtime Controller, watches, metrics) against the
//! same double, and reports the operator's peak memory with the Controller's
//! store and watch streams included, and the time until every tenant is Ready.
//!
//! Run: `cargo bench -p gantry-controller --bench scale` (GANTRY_SCALE_TENANTS=N
//! to change the count). Not a criterion bench: memory and whole-fleet CPU are
//! process figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_controller::api::TenantControlPlane;
use gantry_controller::live::LiveObjects;
use gantry_controller::reconcile::pipeline::{
    Context, Pass, TenantClientFactory, reconcile_tenant,
};
use gantry_controller::reconcile::steady::SteadyState;
use kube::api::PostParams;
use kube::{Api, Client};
use time::OffsetDateTime;

/// Ports for the operator's metrics and health servers, picked as the tests pick them.
#[path = "../../tests/support/ports.rs"]
mod ports;

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "scale/process.rs"]
mod process;

use process::{cpu_seconds, heap_mib, memory_kib, serve_double};

const CHILD_ENV: &str = "GANTRY_SCALE_DOUBLE_PORT_FILE";
/// Tenants provisioned at once.
const PARALLEL: usize = 8;

fn main() {
    if let Ok(port_file) = std::env::var(CHILD_ENV) {
        serve_double(&port_file);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: do the run only for the former.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let tenants: usize = std::env::var("GANTRY_SCALE_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let port_file = std::env::temp_dir().join(format!("gantry-scale-{}", std::process::id()));
    let controller = std::env::var_os("GANTRY_SCALE_CONTROLLER").is_some();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &port_file)
        .spawn()
        .expect("starting the API double process");
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(port) = text.trim().parse::<u16>()
        {
            break port;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&port_file);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if controller {
        runtime.block_on(run_operator(port, tenants));
    } else {
        runtime.block_on(run(port, tenants));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Requests sent to the service cluster and to the tenants' apiservers.
static SERVICE_REQUESTS: AtomicUsize = AtomicUsize::new(0);
static TENANT_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// A client of the double at `url` that counts its requests in `counter`.
fn client(url: &str, counter: &'static AtomicUsize) -> Client {
    let config = kube::Config::new(url.parse().unwrap());
    let count =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            counter.fetch_add(1, Ordering::Relaxed);
            request
        });
    kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&count)
        .build()
}

fn tenant_name(i: usize) -> String {
    format!("tenant-{i:04}")
}

/// Creates `tenants` copies of the example in the double; returns the
/// service-cluster client and a factory of tenant clients (each tenant's own
/// apiserver is a per-tenant part of the double, under /tenant/<namespace>).
async fn create_tenants(port: u16, tenants: usize) -> (Client, TenantClientFactory) {
    let base = format!("http://127.0.0.1:{port}");
    let service = client(&base, &SERVICE_REQUESTS);
    let example =
        TenantControlPlane::from_yaml(include_str!("../../examples/tenant-a.yaml")).unwrap();
    let api: Api<TenantControlPlane> = Api::all(service.clone());
    for i in 0..tenants {
        let mut tcp = example.clone();
        tcp.metadata.name = Some(tenant_name(i));
        api.create(&PostParams::default(), &tcp).await.unwrap();
    }
    let tenant_client: TenantClientFactory = Arc::new(move |_kubeconfig, server: String| {
        let namespace = server
            .trim_start_matches("https://kube-apiserver.")
            .split('.')
            .next()
            .unwrap()
            .to_string();
        let url = format!("{base}/tenant/{namespace}");
        Box::pin(async move { Ok(client(&url, &TENANT_REQUESTS)) })
    });
    (service, tenant_client)
}

/// The real operator process against the double: time to Ready, peak memory.
async fn run_operator(port: u16, tenants: usize) {
    let (service, tenant_client) = create_tenants(port, tenants).await;
    let free = || std::net::SocketAddr::from(([127, 0, 0, 1], ports::free_port()));
    let settings = gantry_controller::operator::Settings {
        metrics_addr: free(),
        health_addr: free(),
        leader_elect: false,
        lease_namespace: "default".into(),
        lease_name: "gantry-leader".into(),
        identity: "scale".into(),
        concurrency: 8,
        service_cluster: gantry_renderer::ServiceCluster::default(),
        reconcile_timeout: gantry_controller::operator::RECONCILE_TIMEOUT,
    };
    let metrics_addr = settings.metrics_addr;
    let rss_before = memory_kib("VmRSS");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(gantry_controller::operator::run(
        service,
        settings,
        tenant_client,
        async move {
            let _ = stopped.await;
        },
    ));
    // Ready tenants, and full passes so far, from the operator's own /metrics.
    let scrape = || async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(metrics_addr).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        let value = |prefix: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Some((
            value("gantry_tenants{phase=\"Ready\"}"),
            value("gantry_reconciles_total{result=\"Full\"}"),
        ))
    };
    let mut ready_after = None;
    let mut last_full = (0, Instant::now());
    let mut last_line = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some((ready, full)) = scrape().await else {
            continue;
        };
        // A line a minute, so a long run shows its memory as it grows.
        if started.elapsed().as_secs() / 60 != last_line {
            last_line = started.elapsed().as_secs() / 60;
            println!(
                "  after {:>3} min: {ready:>6} tenants Ready, RSS {:.1} MiB, heap in use {:.1} MiB",
                last_line,
                memory_kib("VmRSS") as f64 / 1024.0,
                heap_mib()
            );
        }
        if ready as usize == tenants && ready_after.is_none() {
            ready_after = Some(started.elapsed());
        }
        if full != last_full.0 {
            last_full = (full, Instant::now());
        }
        // Steady: every tenant Ready and no full pass for 5 s.
        if ready_after.is_some() && last_full.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900 * (tenants as u64).div_ceil(1000)),
            "{ready} of {tenants} tenants Ready after {} s",
            started.elapsed().as_secs()
        );
    }
    let (_, full) = scrape().await.unwrap();
    let peak = memory_kib("VmHWM");
    let rss = memory_kib("VmRSS");
    let heap = heap_mib();
    let cpu = cpu_seconds();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    println!(
        "scale (operator process): {tenants} tenants against the API double (separate process)"
    );
    println!(
        "  every tenant Ready after {:.1} s; {full} full passes in all ({:.1} per tenant)",
        ready_after.unwrap().as_secs_f64(),
        full as f64 / tenants as f64
    );
    println!(
        "  operator RSS: {:.1} MiB before, {:.1} MiB at steady state; peak (VmHWM) {:.1} MiB; heap in use at steady state {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        heap
    );
    println!("  CPU (user + system) of the whole run: {cpu:.1} s");
}

async fn run(port: u16, tenants: usize) {
    let (service, tenant_client) = create_tenants(port, tenants).await;
    let uncounted = kube::Client::try_from(kube::Config::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let api: Api<TenantControlPlane> = Api::all(service.clone());
    let ctx = Context {
        client: service.clone(),
        live: None,
        service_cluster: gantry_renderer::ServiceCluster::default(),
        tenant_client,
        kubelet_serving: None,
    };
    let steady = SteadyState::new();
    let rss_before = memory_kib("VmRSS");

    // 1. Provision every tenant to Ready and settled.
    let started = Instant::now();
    futures::stream::iter(0..tenants)
        .for_each_concurrent(PARALLEL, |i| {
            let (api, ctx, steady) = (&api, &ctx, &steady);
            async move { provision(api, ctx, steady, &tenant_name(i)).await }
        })
        .await;
    let provision_time = started.elapsed();
    assert_eq!(steady.settled_count(), tenants, "every tenant settled");
    let stored: Vec<Arc<TenantControlPlane>> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let rss_after = memory_kib("VmRSS");
    let peak = memory_kib("VmHWM");

    // 2. Settled triggers (what a watch re-list causes), 10 rounds over the fleet.
    let rounds = 10;
    let cpu_before = cpu_seconds();
    let wall = Instant::now();
    for _ in 0..rounds {
        for tcp in &stored {
            let pass = reconcile_tenant(tcp.clone(), &ctx, &steady, OffsetDateTime::now_utc())
                .await
                .unwrap();
            assert!(matches!(pass, Pass::Skipped { .. }), "settled");
        }
    }
    let settled_cpu = (cpu_seconds() - cpu_before) / (rounds * tenants) as f64;
    let settled_wall = wall.elapsed().as_secs_f64() / (rounds * tenants) as f64;

    // 3. Full steady passes: a restarted operator (nothing settled) re-reads
    // every tenant, from the API ...
    let from_api = full_steady_passes(&stored, &ctx).await;
    // 4. ... and from live objects kept by watches, as the operator does. The
    // watches use a client that is not counted: their requests are per
    // operator, not per pass.
    let rss_before_live = memory_kib("VmRSS");
    let heap_before_live = heap_mib();
    let live = Arc::new(LiveObjects::new());
    let watching = tokio::spawn(
        gantry_controller::live::watch::follow(uncounted.clone(), live.clone())
            .for_each(|_| async {}),
    );
    let listing = live.wait_synced(Duration::from_secs(600)).await;
    assert!(listing.is_empty(), "still listing {listing:?}");
    let live_kib = memory_kib("VmRSS").saturating_sub(rss_before_live);
    let live_heap = heap_mib() - heap_before_live;
    let held = live.len();
    let ctx = Context {
        live: Some(live),
        ..ctx
    };
    let from_live = full_steady_passes(&stored, &ctx).await;
    watching.abort();

    println!(
        "scale: {tenants} tenants against the API double (separate process, HTTP on loopback)"
    );
    println!(
        "  provisioning to Ready: {:.1} s ({PARALLEL} at a time)",
        provision_time.as_secs_f64()
    );
    println!(
        "  operator RSS: {:.1} MiB before, {:.1} MiB after provisioning; peak (VmHWM) {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "  settled reconcile: {:.1} µs CPU, {:.1} µs wall (mean of {} reconciles)",
        settled_cpu * 1e6,
        settled_wall * 1e6,
        rounds * tenants
    );
    println!(
        "  live objects: {held} held in {live_heap:.1} MiB of heap; RSS grew by {:.1} MiB while the watches listed them",
        live_kib as f64 / 1024.0
    );
    // A settled tenant gets one full pass per 15 minutes (MAX_SETTLED); its
    // settled reconciles in between send nothing.
    for (source, figures) in [("the API", from_api), ("live objects", from_live)] {
        println!(
            "  full steady pass (restarted operator, zero writes) reading {source}: \
             {:.2} ms CPU, {:.2} ms wall (mean of {tenants}); requests per pass, so per \
             settled tenant per 15 minutes: {:.1} to the service cluster, {:.1} to the tenant",
            figures.cpu * 1e3,
            figures.wall * 1e3,
            figures.service_requests,
            figures.tenant_requests
        );
    }
}

/// Means over one full steady pass per tenant.
struct FullPassFigures {
    cpu: f64,
    wall: f64,
    service_requests: f64,
    tenant_requests: f64,
}

/// One full pass of every tenant by a restarted operator (nothing settled);
/// each must find nothing to write.
async fn full_steady_passes(stored: &[Arc<TenantControlPlane>], ctx: &Context) -> FullPassFigures {
    let restarted = SteadyState::new();
    let requests_before = (
        SERVICE_REQUESTS.load(Ordering::Relaxed),
        TENANT_REQUESTS.load(Ordering::Relaxed),
    );
    let cpu_before = cpu_seconds();
    let wall = Instant::now();
    for tcp in stored {
        let pass = reconcile_tenant(tcp.clone(), ctx, &restarted, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let Pass::Full { outcome, .. } = pass else {
            panic!("a restarted operator runs a full pass")
        };
        let outcome = outcome.unwrap();
        assert!(
            outcome.is_steady(),
            "nothing to write: {:?}",
            outcome.applied
        );
    }
    let tenants = stored.len() as f64;
    let per_pass = |now: usize, before: usize| (now - before) as f64 / tenants;
    FullPassFigures {
        cpu: (cpu_seconds() - cpu_before) / tenants,
        wall: wall.elapsed().as_secs_f64() / tenants,
        service_requests: per_pass(SERVICE_REQUESTS.load(Ordering::Relaxed), requests_before.0),
        tenant_requests: per_pass(TENANT_REQUESTS.load(Ordering::Relaxed), requests_before.1),
    }
}

/// Reconciles one tenant as the controller would until it is Ready and
/// settled (the double reports the masters rolled out as soon as they are applied).
async fn provision(api: &Api<TenantControlPlane>, ctx: &Context, steady: &SteadyState, name: &str) {
    for _ in 0..8 {
        let tcp = Arc::new(api.get(name).await.unwrap());
        let pass = reconcile_tenant(tcp, ctx, steady, OffsetDateTime::now_utc())
            .await
            .unwrap();
        if matches!(pass, Pass::Skipped { .. }) {
            return;
        }
    }
    panic!("{name} did not settle");
}
