//! One reconcile at a time, through kube's real `Client`, against the
//! in-memory API server double: the service-cluster half of the pipeline.

mod support;

use gantry_controller::api::TenantControlPlane;
use gantry_controller::reconcile::pipeline::{Context, Outcome, reconcile};
use serde_json::{Value, json};
use support::api_double::InMemoryApiServerDouble;
use time::OffsetDateTime;

/// The example tenant, with or without its explicit endpoint, stored in the double.
fn tenant(double: &InMemoryApiServerDouble, explicit_endpoint: bool) -> TenantControlPlane {
    let mut tcp =
        TenantControlPlane::from_yaml(include_str!("../../examples/tenant-a.yaml")).unwrap();
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

/// Reconciles `tcp` as the controller would: with the status last written.
async fn run(double: &InMemoryApiServerDouble, tcp: &TenantControlPlane) -> Outcome {
    let mut current = tcp.clone();
    if let Some(stored) = double.get("tenantcontrolplanes", "", "tenant-a") {
        current.status = serde_json::from_value(stored["status"].clone()).ok();
    }
    let ctx = Context {
        client: double.client(),
        service_cluster_domain: "cluster.local".into(),
    };
    reconcile(&current, &ctx, OffsetDateTime::now_utc())
        .await
        .unwrap()
}

fn condition<'a>(outcome: &'a Outcome, type_: &str) -> (&'a str, &'a str) {
    let c = outcome
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"));
    (c.status.as_str(), c.reason.as_str())
}

fn object_writes(double: &InMemoryApiServerDouble) -> Vec<String> {
    double
        .writes()
        .into_iter()
        .filter(|w| !w.ends_with("/status"))
        .collect()
}

#[tokio::test]
async fn a_pending_load_balancer_gets_only_the_bootstrap_objects_then_everything() {
    let double = InMemoryApiServerDouble::new();
    let tcp = tenant(&double, false);

    let first = run(&double, &tcp).await;
    assert_eq!(
        object_writes(&double),
        [
            "PATCH /api/v1/namespaces/tcp-tenant-a",
            "PATCH /api/v1/namespaces/tcp-tenant-a/services/kube-apiserver"
        ]
    );
    assert_eq!(condition(&first, "EndpointReady"), ("False", "Pending"));
    assert!(first.requeue_after.is_some());
    assert!(
        double.get("secrets", "tcp-tenant-a", "ca").is_none(),
        "no PKI before the endpoint is known"
    );

    // The cloud's load-balancer controller assigns the address.
    double.set_field(
        "services",
        "tcp-tenant-a",
        "kube-apiserver",
        "/status/loadBalancer/ingress",
        json!([{"ip": "203.0.113.10"}]),
    );
    double.clear_writes();
    let second = run(&double, &tcp).await;
    assert_eq!(condition(&second, "EndpointReady"), ("True", "Resolved"));
    assert_eq!(condition(&second, "CertificatesReady"), ("True", "Valid"));
    assert_eq!(condition(&second, "EtcdReady"), ("False", "NoQuorum"));
    assert_eq!(
        condition(&second, "Ready"),
        ("False", "TenantBootstrapPending")
    );
    assert_eq!(second.status.endpoint.as_deref(), Some("203.0.113.10:6443"));
    assert_eq!(second.applied.applied.len(), 19, "{:?}", second.applied);
    let ca = double.get("secrets", "tcp-tenant-a", "ca").unwrap();
    let ca_pem = base64_decode(&ca["data"]["ca.crt"]);
    assert_eq!(
        second.status.ca_cert_hash,
        Some(gantry_pki::ca_cert_hash(&ca_pem).unwrap())
    );
    let apiserver_cert = base64_decode(
        &double
            .get("secrets", "tcp-tenant-a", "apiserver-certs")
            .unwrap()["data"]["apiserver.crt"],
    );
    let sans = gantry_pki::CertInfo::from_pem(&apiserver_cert)
        .unwrap()
        .sans;
    assert!(
        sans.contains(&gantry_pki::San::Ip("203.0.113.10".parse().unwrap())),
        "the observed endpoint is in the certificate"
    );
}

fn base64_decode(value: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn an_unchanged_tenant_costs_zero_writes_even_after_a_restart() {
    let double = InMemoryApiServerDouble::new();
    let tcp = tenant(&double, true);
    run(&double, &tcp).await;
    let ca_before = double.get("secrets", "tcp-tenant-a", "ca").unwrap();
    double.clear_writes();

    // `run` builds a new client and context each time: a restarted controller.
    let again = run(&double, &tcp).await;
    assert_eq!(double.writes(), Vec::<String>::new(), "{:?}", again.applied);
    assert!(!again.status_written);
    assert_eq!(
        double.get("secrets", "tcp-tenant-a", "ca").unwrap()["data"],
        ca_before["data"],
        "same CA"
    );
}

#[tokio::test]
async fn an_invalid_spec_changes_nothing_but_its_status() {
    let double = InMemoryApiServerDouble::new();
    let mut tcp = tenant(&double, true);
    tcp.spec.etcd.replicas = 2;
    let outcome = run(&double, &tcp).await;
    assert_eq!(object_writes(&double), Vec::<String>::new());
    assert_eq!(
        double.writes(),
        ["PATCH /apis/gantry.dev/v1alpha1/tenantcontrolplanes/tenant-a/status"]
    );
    assert_eq!(condition(&outcome, "Ready"), ("False", "InvalidSpec"));
    let message = &outcome.status.conditions[0].message;
    assert!(
        message.starts_with("spec.etcd.replicas \"2\": must be 1, 3 or 5"),
        "{message}"
    );
    let stored = double.get("tenantcontrolplanes", "", "tenant-a").unwrap();
    assert_eq!(stored["status"]["phase"], "Failed");
}

#[tokio::test]
async fn a_new_cert_san_reissues_only_the_apiserver_certificate() {
    let double = InMemoryApiServerDouble::new();
    let tcp = tenant(&double, true);
    run(&double, &tcp).await;
    let ca_before = double.get("secrets", "tcp-tenant-a", "ca").unwrap();
    double.clear_writes();

    let mut changed = tcp.clone();
    changed
        .spec
        .api_server
        .cert_sans
        .push("api2.tenant-a.example.com".into());
    changed.metadata.generation = Some(2);
    let outcome = run(&double, &changed).await;
    assert_eq!(
        object_writes(&double),
        [
            "PATCH /api/v1/namespaces/tcp-tenant-a/secrets/apiserver-certs",
            "PATCH /apis/apps/v1/namespaces/tcp-tenant-a/deployments/kube-apiserver",
        ]
    );
    assert_eq!(condition(&outcome, "CertificatesReady"), ("True", "Valid"));
    assert_eq!(
        double.get("secrets", "tcp-tenant-a", "ca").unwrap()["data"],
        ca_before["data"]
    );
}
