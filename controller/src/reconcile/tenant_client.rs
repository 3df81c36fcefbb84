//! Clients for tenant apiservers. Every request to a tenant has a timeout,
//! so one tenant that stops answering fails its own pass, not every tenant's.

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::Client;

/// Makes a client for a tenant's own apiserver from its `super-admin.conf`.
/// Production: [`tenant_client_from_kubeconfig`]; tests: a second API double.
pub type TenantClientFactory =
    Arc<dyn Fn(Vec<u8>, String) -> BoxFuture<'static, Result<Client, String>> + Send + Sync>;

/// A client for the tenant apiserver at `server` (the in-cluster Service URL),
/// authenticated as `super-admin.conf` says.
///
/// Requests to a tenant time out (kube's client sets none): a tenant
/// apiserver that stops answering fails its own pass, not every tenant's.
pub fn tenant_client_from_kubeconfig(
    kubeconfig: Vec<u8>,
    server: String,
) -> BoxFuture<'static, Result<Client, String>> {
    Box::pin(async move {
        let text = String::from_utf8(kubeconfig)
            .map_err(|_| "super-admin.conf is not UTF-8".to_string())?;
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .map_err(|e| format!("super-admin.conf: {e}"))?;
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| format!("super-admin.conf: {e}"))?;
        config.cluster_url = server.parse().map_err(|e| format!("{server}: {e}"))?;
        with_request_timeouts(&mut config);
        Client::try_from(config).map_err(|e| format!("client for {server}: {e}"))
    })
}

/// Timeouts for every request to a tenant's apiserver (no watches go there).
pub fn with_request_timeouts(config: &mut kube::Config) {
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    config.read_timeout = Some(std::time::Duration::from_secs(30));
    config.write_timeout = Some(std::time::Duration::from_secs(30));
    // Idle time of a pooled connection must not count against the next read.
    config.reset_reader_on_write = true;
}
