//! The example tenant in the API double, as the reconcile tests and the
//! reconcile bench both set it up.

use std::sync::{Arc, Mutex};

use gantry_controller::api::TenantControlPlane;
use gantry_controller::reconcile::pipeline::TenantClientFactory;

use super::api_double::InMemoryApiServerDouble;

/// A `TenantControlPlane` for the tests, made from `examples/tenant-a.yaml`:
/// `TenantBuilder::new("tenant-a").without_endpoint().store(&double)`.
pub struct TenantBuilder {
    tcp: TenantControlPlane,
}

impl TenantBuilder {
    /// The example, named `name`, at generation 1.
    pub fn new(name: &str) -> Self {
        let mut tcp =
            TenantControlPlane::from_yaml(include_str!("../../../examples/tenant-a.yaml")).unwrap();
        tcp.metadata.name = Some(name.into());
        tcp.metadata.generation = Some(1);
        TenantBuilder { tcp }
    }

    /// No `spec.apiServer.endpoint`: the operator takes the LoadBalancer's.
    pub fn without_endpoint(mut self) -> Self {
        self.tcp.spec.api_server.endpoint = None;
        self
    }

    /// `spec.apiServer.endpoint` (and the LoadBalancer IP) set to `address`:6443.
    pub fn endpoint(mut self, address: &str) -> Self {
        self.tcp.spec.api_server.endpoint = Some(format!("{address}:6443"));
        self.tcp.spec.api_server.service.load_balancer_ip = Some(address.into());
        self
    }

    pub fn build(self) -> TenantControlPlane {
        self.tcp
    }

    /// Stores the tenant in `double`, as `kubectl apply` would; returns it.
    pub fn store(self, double: &InMemoryApiServerDouble) -> TenantControlPlane {
        double.put(
            "gantry.dev",
            "v1alpha1",
            "tenantcontrolplanes",
            "",
            serde_json::to_value(&self.tcp).unwrap(),
        );
        self.tcp
    }
}

/// Tenant clients for the tenant apiserver double; checks what the pipeline
/// asks for: the operator's own credential, or super-admin to grant it.
pub fn tenant_factory(tenant: &InMemoryApiServerDouble) -> TenantClientFactory {
    tenant_factory_recording(tenant, Arc::default())
}

/// [`tenant_factory`], recording the user of each client made in `users`
/// (`gantry-operator` or `kubernetes-super-admin`).
pub fn tenant_factory_recording(
    tenant: &InMemoryApiServerDouble,
    users: Arc<Mutex<Vec<String>>>,
) -> TenantClientFactory {
    let tenant = tenant.clone();
    Arc::new(move |kubeconfig: Vec<u8>, server: String| {
        let (tenant, users) = (tenant.clone(), users.clone());
        Box::pin(async move {
            assert_eq!(server, "https://kube-apiserver.tcp-tenant-a.svc:6443");
            let kubeconfig: serde_json::Value =
                serde_yaml::from_slice(&kubeconfig).expect("a kubeconfig");
            let user = kubeconfig["users"][0]["name"].as_str().unwrap().to_string();
            assert!(
                ["gantry-operator", "kubernetes-super-admin"].contains(&user.as_str()),
                "a tenant kubeconfig of gantry-operator or super-admin, not {user}"
            );
            users.lock().unwrap().push(user);
            Ok(tenant.client())
        })
    })
}

/// What the kubelet and the controllers would report once the pods run.
pub fn masters_running(double: &InMemoryApiServerDouble) {
    for (plural, name) in [
        ("statefulsets", "etcd"),
        ("deployments", "kube-apiserver"),
        ("deployments", "kube-controller-manager"),
        ("deployments", "kube-scheduler"),
    ] {
        rolled_out(double, plural, name);
    }
}

/// What the StatefulSet or Deployment controller reports once every replica
/// runs the workload's current spec.
pub fn rolled_out(double: &InMemoryApiServerDouble, plural: &str, name: &str) {
    double.roll_out(plural, "tcp-tenant-a", name);
}
