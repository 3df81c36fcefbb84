//! `gantry run`: the operator process. It wires the reconcile pipeline
//! (`reconcile::pipeline::reconcile_tenant`) into a kube-runtime `Controller`:
//!
//! - watches `TenantControlPlane`s, and every kind gantry manages in the
//!   service cluster (label `app.kubernetes.io/managed-by=gantry`; Secrets
//!   for their metadata only) into `live::LiveObjects`, which the passes read
//!   instead of the API; news of an object triggers its tenant (label
//!   `gantry.dev/tenant`);
//! - at most `--concurrency` tenants reconcile at once; a failing tenant backs
//!   off exponentially (5 s doubling to 5 min) with ±50 % jitter;
//! - with `--leader-elect`, only the replica holding the Lease reconciles; a
//!   replica that loses the Lease exits so it restarts as a standby;
//! - `/metrics`, `/healthz`, `/readyz`; Events for what each pass changed;
//! - every log line of a reconcile carries the tenant's name (a span);
//! - SIGTERM (or Ctrl-C) stops taking work, lets running reconciles finish,
//!   releases the Lease and exits 0.

mod events;
pub mod http;
pub mod metrics;
mod pass;
mod progress;

use events::Events;
use pass::{State, error_policy, reconcile};
use progress::InFlight;

pub use pass::backoff;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hyper::StatusCode;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::net::TcpListener;

use crate::api::TenantControlPlane;
use crate::kubelet_serving::KubeletServingApprovers;
use crate::live::{self, LiveObjects};
use crate::reconcile::pipeline::{Context, TenantClientFactory};
use crate::reconcile::steady::SteadyState;
use metrics::Metrics;

/// How the operator runs (the flags of `gantry run`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub leader_elect: bool,
    /// Namespace and name of the leader Lease.
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events (the pod name).
    pub identity: String,
    /// Tenants reconciled at once.
    pub concurrency: u16,
    pub service_cluster: gantry_renderer::ServiceCluster,
    /// The longest one pass may take (default [`RECONCILE_TIMEOUT`]).
    pub reconcile_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{flag} {addr}: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the TenantControlPlane CRD is not served by the cluster (install it with `gantry crd | kubectl apply -f -` or the gantry Helm chart): {0}"
    )]
    CrdMissing(kube::Error),
    #[error("listing TenantControlPlanes: {0}")]
    Api(kube::Error),
    #[error("leader election (Lease {namespace}/{name}): {reason}")]
    LeaderElection {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("lost the leader Lease; exiting so this replica restarts as a standby")]
    LostLeadership,
}

/// The default longest time one pass may take (`--reconcile-timeout`). A
/// tenant apiserver that stops answering must not hold a worker for good:
/// with `--concurrency` such tenants, no tenant would be reconciled at all.
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);

/// `/healthz` fails when a reconcile has run this many timeouts long: the
/// timeout did not end it, so the process is wedged and should be restarted.
const STUCK_AFTER_TIMEOUTS: u32 = 5;

/// Runs the operator until `shutdown` completes (or leadership is lost).
/// `tenant_client` connects to a tenant's apiserver: in production
/// [`crate::reconcile::pipeline::tenant_client_from_kubeconfig`].
pub async fn run(
    client: Client,
    settings: Settings,
    tenant_client: TenantClientFactory,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let in_flight = Arc::new(InFlight::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_servers, servers_stopped) = tokio::sync::watch::channel(false);
    serve_metrics_and_health(
        &settings,
        metrics.clone(),
        in_flight.clone(),
        ready.clone(),
        servers_stopped,
    )
    .await?;

    // The CRD must be served before anything else makes sense.
    let tenants: Api<TenantControlPlane> = Api::all(client.clone());
    match tenants
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(RunError::CrdMissing(kube::Error::Api(status)));
        }
        Err(error) => return Err(RunError::Api(error)),
    }
    ready.store(true, Ordering::Relaxed);

    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let parts = ControllerParts {
        client,
        settings: settings.clone(),
        tenant_client,
        metrics,
        in_flight,
    };
    let result = if settings.leader_elect {
        run_as_leader(parts, shutdown).await
    } else {
        parts.metrics.set_leader(true);
        run_controller(parts, shutdown, std::future::pending()).await;
        Ok(())
    };
    let _ = stop_servers.send(true);
    result
}

/// Serves `/metrics` on `--metrics-addr` and `/healthz`, `/readyz` on
/// `--health-addr` until `stopped` turns true.
async fn serve_metrics_and_health(
    settings: &Settings,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
    ready: Arc<AtomicBool>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RunError> {
    let until_stopped = move || {
        let mut receiver = stopped.clone();
        async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    };
    let bind = |flag, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { flag, addr, source })
    };
    let metrics_listener = bind("--metrics-addr", settings.metrics_addr).await?;
    let health_listener = bind("--health-addr", settings.health_addr).await?;
    tokio::spawn(http::serve(
        metrics_listener,
        Arc::new(move |path| match path {
            "/metrics" => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.encode(),
            ),
            other => http::not_found(other),
        }),
        until_stopped(),
    ));
    let reconcile_timeout = settings.reconcile_timeout;
    let stuck_after = reconcile_timeout * STUCK_AFTER_TIMEOUTS;
    tokio::spawn(http::serve(
        health_listener,
        Arc::new(move |path| match path {
            "/healthz" => match in_flight.stuck(Instant::now(), stuck_after) {
                None => (StatusCode::OK, "text/plain", "ok\n".into()),
                Some((tenant, running)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!(
                        "the reconcile of {tenant} has run {} s, past its {} s timeout\n",
                        running.as_secs(),
                        reconcile_timeout.as_secs()
                    ),
                ),
            },
            "/readyz" if ready.load(Ordering::Relaxed) => {
                (StatusCode::OK, "text/plain", "ok\n".into())
            }
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "starting\n".into(),
            ),
            other => http::not_found(other),
        }),
        until_stopped(),
    ));
    tracing::info!(metrics = %settings.metrics_addr, health = %settings.health_addr, "serving");
    Ok(())
}

/// What the Controller is made from, once it may start.
struct ControllerParts {
    client: Client,
    settings: Settings,
    tenant_client: TenantClientFactory,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
}

/// Waits for the Lease, reconciles while holding it, releases it on shutdown.
async fn run_as_leader(
    parts: ControllerParts,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) -> Result<(), RunError> {
    let (client, settings, metrics) = (
        parts.client.clone(),
        parts.settings.clone(),
        parts.metrics.clone(),
    );
    let election_error = |reason: String| RunError::LeaderElection {
        namespace: settings.lease_namespace.clone(),
        name: settings.lease_name.clone(),
        reason,
    };
    let manager =
        kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
            .with_namespace(&settings.lease_namespace)
            .with_identity(&settings.identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .map_err(|e| election_error(e.to_string()))?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(lease = %settings.lease_name, identity = %settings.identity, "waiting for the leader Lease");
    let acquired = tokio::select! {
        _ = shutdown.clone() => false,
        changed = leading.wait_for(|leading| *leading) => changed.is_ok(),
    };
    let mut result = Ok(());
    if acquired {
        tracing::info!(identity = %settings.identity, "acquired the leader Lease");
        metrics.set_leader(true);
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        let mut watching = leading.clone();
        // Losing the Lease stops every pass at once, at its next await: a
        // replica that finished its passes after losing it would write beside
        // the new leader. A shutdown lets running passes finish.
        let lost_lease = async move {
            let _ = watching.wait_for(|leading| !*leading).await;
            lost_flag.store(true, Ordering::Relaxed);
        };
        run_controller(parts, shutdown.clone(), lost_lease).await;
        metrics.set_leader(false);
        if lost.load(Ordering::Relaxed) {
            result = Err(RunError::LostLeadership);
        }
    }
    // Dropping the receiver makes the manager release the Lease and stop.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the leader Lease"),
        Ok(Err(error)) => tracing::warn!(%error, "the Lease task failed"),
        Err(_) => tracing::warn!("the Lease was not released within 5 s; it expires on its own"),
    }
    result
}

/// Drops what no pass reads from a `TenantControlPlane` before it is stored:
/// its managed fields and `kubectl apply`'s copy of the whole object, which
/// together are often larger than the rest (one is held per tenant).
fn trim_stored(tcp: &mut TenantControlPlane) {
    tcp.metadata.managed_fields = None;
    if let Some(annotations) = tcp.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The kube-runtime Controller, until `stop` completes (running passes
/// finish) or `abort` completes (running passes are dropped).
async fn run_controller(
    parts: ControllerParts,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
    abort: impl Future<Output = ()>,
) {
    let ControllerParts {
        client,
        settings,
        tenant_client,
        metrics,
        in_flight,
    } = parts;
    let steady = Arc::new(SteadyState::new());
    let objects = Arc::new(LiveObjects::new());
    let approvers = Arc::new(KubeletServingApprovers::with_observer({
        let metrics = metrics.clone();
        Arc::new(move |decision| metrics.kubelet_serving_decided(decision))
    }));
    let state = Arc::new(State {
        in_flight,
        reconcile_timeout: settings.reconcile_timeout,
        ctx: Context {
            client: client.clone(),
            live: Some(objects.clone()),
            service_cluster: settings.service_cluster.clone(),
            tenant_client,
            kubelet_serving: Some(approvers.clone()),
        },
        steady: steady.clone(),
        metrics,
        events: Events::new(client.clone(), "gantry", &settings.identity),
        failures: Mutex::default(),
    });
    let news = live::watch::follow(client.clone(), objects).map(move |tenant| {
        steady.changed(&tenant);
        ObjectRef::<TenantControlPlane>::new(&tenant)
    });
    let stop = futures::FutureExt::shared(Box::pin(stop));
    let (store, writer) = kube::runtime::reflector::store();
    let tenants = watcher::watcher(
        Api::<TenantControlPlane>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .modify(trim_stored)
    .reflect(writer)
    .applied_objects();
    let controller = Controller::for_stream(tenants, store.clone());
    let running = controller
        .reconcile_on(news)
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(stop.clone())
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller");
            }
        });
    // kube-runtime starts no reconcile before the first list of tenants is
    // in its store, and its graceful shutdown stops the watches: stopped
    // before that list, `running` would wait for it for ever (and the Lease
    // would be renewed on). No reconcile can have started, so none is cut
    // short by returning.
    let stopped_before_listing = async {
        stop.await;
        if futures::FutureExt::now_or_never(store.wait_until_ready()).is_none() {
            return;
        }
        std::future::pending().await
    };
    tokio::select! {
        never = sweep_approvers(store.clone(), approvers) => match never {},
        () = running => tracing::info!("controller stopped"),
        () = stopped_before_listing => tracing::info!("controller stopped before listing the tenants"),
        () = abort => tracing::warn!("lost the leader Lease: stopped every running pass"),
    }
}

/// How often approvers of tenants that no longer exist are looked for.
const APPROVER_SWEEP: Duration = Duration::from_secs(60);

/// Stops, every [`APPROVER_SWEEP`], the kubelet-serving approvers of tenants
/// that are no longer in `store` (deleted without their finalizer).
async fn sweep_approvers(
    store: kube::runtime::reflector::Store<TenantControlPlane>,
    approvers: Arc<KubeletServingApprovers>,
) -> std::convert::Infallible {
    if store.wait_until_ready().await.is_err() {
        return std::future::pending().await;
    }
    let mut every = tokio::time::interval(APPROVER_SWEEP);
    loop {
        every.tick().await;
        let tenants: std::collections::BTreeSet<String> =
            store.state().iter().map(|t| t.name_any()).collect();
        for tenant in approvers.retain(|name| tenants.contains(name)) {
            tracing::info!(%tenant, "stopped the kubelet-serving approver of a tenant that no longer exists");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_tenant_keeps_every_annotation_but_kubectls_copy() {
        let mut tcp =
            TenantControlPlane::from_yaml(include_str!("../../../examples/tenant-a.yaml"))
                .expect("the example parses");
        let annotations = tcp.metadata.annotations.get_or_insert_default();
        annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{}".into(),
        );
        annotations.insert(
            crate::reconcile::ca_guard::RECREATE_CA_ANNOTATION.into(),
            "x".into(),
        );
        tcp.metadata.managed_fields = Some(vec![Default::default()]);
        trim_stored(&mut tcp);
        assert_eq!(tcp.metadata.managed_fields, None);
        let kept: Vec<&String> = tcp
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|a| a.0)
            .collect();
        assert_eq!(kept, [crate::reconcile::ca_guard::RECREATE_CA_ANNOTATION]);
    }
}
