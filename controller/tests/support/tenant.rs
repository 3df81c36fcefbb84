//! The example tenant in the API double, as the reconcile tests and the
//! reconcile bench both set it up.

use std::sync::Arc;

use gantry_controller::api::TenantControlPlane;
use gantry_controller::reconcile::pipeline::TenantClientFactory;

use super::api_double::InMemoryApiServerDouble;

/// The example tenant, with or without its explicit endpoint, stored in the double.
pub fn tenant(double: &InMemoryApiServerDouble, explicit_endpoint: bool) -> TenantControlPlane {
    let mut tcp =
        TenantControlPlane::from_yaml(include_str!("../../../examples/tenant-a.yaml")).unwrap();
    if !explicit_endpoint {
        tcp.spec.api_server.endpoint = None;
    }
    tcp.metadata.generation = Some(1);
    double.put(
        "gantry.dev",
        "v1alpha1",
        "tenantcontrolplanes",
        "",
        serde_json::to_value(&tcp).unwrap(),
    );
    tcp
}

/// Tenant clients for the tenant apiserver double; checks what the pipeline asks for.
pub fn tenant_factory(tenant: &InMemoryApiServerDouble) -> TenantClientFactory {
    let tenant = tenant.clone();
    Arc::new(move |kubeconfig: Vec<u8>, server: String| {
        let tenant = tenant.clone();
        Box::pin(async move {
            assert_eq!(server, "https://kube-apiserver.tcp-tenant-a.svc:6443");
            assert!(
                String::from_utf8(kubeconfig)
                    .unwrap()
                    .contains("kubernetes-super-admin")
            );
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
