//! `gantry run`: the operator process (see `gantry_controller::operator`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use super::CliError;
use gantry_controller::operator::{self, Settings};

#[derive(Args)]
pub struct RunArgs {
    /// Where /metrics is served (Prometheus text).
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR:PORT")]
    metrics_addr: SocketAddr,
    /// Where /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8081", value_name = "ADDR:PORT")]
    health_addr: SocketAddr,
    /// Reconcile only while holding a Lease, so several replicas are safe.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, value_name = "NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader Lease; replicas that share it elect one leader.
    #[arg(long, default_value = "gantry-leader", value_name = "NAME")]
    lease_name: String,
    /// How many tenants reconcile at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    concurrency: u16,
    /// The service cluster's DNS domain (for the apiserver's etcd and Service names).
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    service_cluster_domain: String,
    /// The service cluster's own pod and Service CIDRs, comma-separated: the
    /// masters' egress NetworkPolicy keeps them out of reach.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = crate::render::service_cluster_cidr)]
    service_cluster_cidrs: Vec<ipnet::IpNet>,
    /// gantry's image as the nodes pull it: every tenant's konnectivity
    /// server and agent run from it (the chart passes the operator's own).
    #[arg(long, value_name = "IMAGE", default_value_t = gantry_renderer::default_gantry_image(), value_parser = crate::render::image_reference)]
    gantry_image: String,
    /// The longest one tenant's pass may take before it is stopped and
    /// retried (a tenant apiserver that stops answering must not hold a worker).
    #[arg(long, default_value = "120s", value_name = "DURATION", value_parser = reconcile_timeout)]
    reconcile_timeout: std::time::Duration,
    #[command(flatten)]
    backup: crate::backup::BackupDefaultArgs,
    /// A Secret in the operator's namespace with the default store's
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: the operator copies it
    /// into every tenant namespace that backs up there.
    #[arg(long, value_name = "NAME")]
    backup_credentials_secret: Option<String>,
}

/// `--reconcile-timeout`: 10s to 1h, written as 90s, 2m or 1h.
fn reconcile_timeout(value: &str) -> Result<std::time::Duration, String> {
    let parsed = gantry_controller::resolve::parse_duration("--reconcile-timeout", value)
        .map_err(|e| e.reason)?
        .unsigned_abs();
    if !(10..=3600).contains(&parsed.as_secs()) {
        return Err(format!("{value:?} is outside 10s to 1h"));
    }
    Ok(parsed)
}

pub fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    // Checked here, not by clap, so the refusal is one line; a default route
    // would make every tenant's egress NetworkPolicy invalid.
    for cidr in &args.service_cluster_cidrs {
        if let Some(problem) = gantry_pki::service_cluster_cidr_problem(cidr) {
            return Err(
                gantry_pki::InvalidInput::new("service-cluster-cidrs", cidr, problem).into(),
            );
        }
    }
    // The pod name (downward API) identifies this replica in the Lease and Events.
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        format!(
            "gantry-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    });
    let lease_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let mut backup = args.backup.to_defaults()?;
    if let Some(name) = &args.backup_credentials_secret {
        gantry_pki::validate_namespace(name).map_err(|e| CliError::BadFile {
            flag: "--backup-credentials-secret",
            value: name.clone(),
            reason: e.reason.to_string(),
        })?;
        // The operator's own namespace, where the chart puts the Secret.
        backup.credentials_from = Some((lease_namespace.clone(), name.clone()));
    }
    let settings = Settings {
        metrics_addr: args.metrics_addr,
        health_addr: args.health_addr,
        leader_elect: args.leader_elect,
        lease_namespace,
        lease_name: args.lease_name,
        identity,
        concurrency: args.concurrency,
        service_cluster: gantry_renderer::ServiceCluster {
            domain: args.service_cluster_domain,
            gantry_image: args.gantry_image,
            cidrs: args.service_cluster_cidrs,
            backup,
        },
        reconcile_timeout: args.reconcile_timeout,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        let client = kube::Client::try_default().await.map_err(|e| {
            CliError::Failed(format!(
                "no service cluster to talk to (in-cluster config or KUBECONFIG): {e}"
            ))
        })?;
        let tenant_client = std::sync::Arc::new(
            gantry_controller::reconcile::pipeline::tenant_client_from_kubeconfig,
        );
        operator::run(client, settings, tenant_client, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}
