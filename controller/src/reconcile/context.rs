//! What every pass shares: the service cluster's client and watches, the
//! operator's settings, and how tenant clients are made. Below the pipeline
//! and its steps, which all read it.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use super::tenant_client::TenantClientFactory;
use crate::live::{Cluster, LiveObjects};

/// How long to wait before looking again at something still pending.
pub const PENDING_REQUEUE: Duration = Duration::from_secs(10);

pub struct Context {
    /// The service cluster.
    pub client: Client,
    /// The service cluster's gantry objects, kept by watches (the operator);
    /// `None` reads them from the API (one-shot passes, tests).
    pub live: Option<Arc<LiveObjects>>,
    pub service_cluster: gantry_renderer::ServiceCluster,
    pub tenant_client: TenantClientFactory,
    /// The tenants' kubelet-serving approvers, started once a tenant is
    /// bootstrapped (the operator); `None` starts none (one-shot passes, tests).
    pub kubelet_serving: Option<Arc<crate::kubelet_serving::KubeletServingApprovers>>,
}

impl Context {
    /// The service cluster as a pass reads and writes it.
    pub fn cluster(&self) -> Cluster<'_> {
        Cluster {
            client: &self.client,
            live: self.live.as_deref(),
        }
    }
}
