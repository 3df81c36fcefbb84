//! Clients for tenant apiservers, from a tenant's kubeconfig (the operator's
//! `operator.conf`, or `super-admin.conf` to grant it its RBAC). Every
//! request to a tenant has a timeout, so one tenant that stops answering
//! fails its own pass, not every tenant's. The operator and the day-2
//! commands both connect through [`client_from_kubeconfig`].

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::Client;

/// Why no client for a tenant apiserver could be made. Never holds the
/// kubeconfig's credentials, only what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TenantClientError {
    #[error("{0}")]
    Kubeconfig(String),
    #[error("{server}: {reason}")]
    Server { server: String, reason: String },
}

/// Makes a client for a tenant's own apiserver from one of its kubeconfigs.
/// Production: [`tenant_client_from_kubeconfig`]; tests: a second API double.
pub type TenantClientFactory = Arc<
    dyn Fn(Vec<u8>, String) -> BoxFuture<'static, Result<Client, TenantClientError>> + Send + Sync,
>;

/// A client for the tenant apiserver at `server` (the in-cluster Service URL),
/// authenticated as the kubeconfig says.
pub fn tenant_client_from_kubeconfig(
    kubeconfig: Vec<u8>,
    server: String,
) -> BoxFuture<'static, Result<Client, TenantClientError>> {
    Box::pin(async move { client_from_kubeconfig(&kubeconfig, Some(&server)).await })
}

/// A client authenticated as `kubeconfig` says, for `server` if given (else
/// the kubeconfig's own server), with request timeouts.
pub async fn client_from_kubeconfig(
    kubeconfig: &[u8],
    server: Option<&str>,
) -> Result<Client, TenantClientError> {
    let bad = |reason: String| TenantClientError::Kubeconfig(format!("kubeconfig: {reason}"));
    let text = std::str::from_utf8(kubeconfig)
        .map_err(|_| TenantClientError::Kubeconfig("the kubeconfig is not UTF-8".into()))?;
    // serde's message would quote the value it could not read, which may be
    // the kubeconfig's private key: it is not repeated.
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text)
        .map_err(|_| bad("is not a kubeconfig (YAML with clusters, users and contexts)".into()))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| bad(e.to_string()))?;
    if let Some(server) = server {
        config.cluster_url = server.parse().map_err(|e| TenantClientError::Server {
            server: server.to_string(),
            reason: format!("{e}"),
        })?;
    }
    let server = config.cluster_url.to_string();
    with_request_timeouts(&mut config);
    Client::try_from(config)
        .map_err(|e| TenantClientError::Kubeconfig(format!("client for {server}: {e}")))
}

/// Timeouts for every request to a tenant's apiserver. The one watch there
/// (`kubelet_serving`) asks the server to end it well within the read timeout.
pub fn with_request_timeouts(config: &mut kube::Config) {
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    config.read_timeout = Some(std::time::Duration::from_secs(30));
    config.write_timeout = Some(std::time::Duration::from_secs(30));
    // Idle time of a pooled connection must not count against the next read.
    config.reset_reader_on_write = true;
}
