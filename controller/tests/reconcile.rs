//! One reconcile at a time, through kube's real `Client`, against the
//! in-memory API server double: the service-cluster half of the pipeline.

mod support;

use gantry_controller::api::TenantControlPlane;
use std::sync::Arc;

use gantry_controller::reconcile::pipeline::{
    Context, ErrorCategory, FINALIZER, Pass, TenantClientError, TenantClientFactory,
    reconcile_tenant, reconcile_with_finalizer,
};
use gantry_controller::reconcile::steady::SteadyState;
use serde_json::{Value, json};
use support::api_double::InMemoryApiServerDouble;
use support::passes::{condition, object_writes, ready_tenant, run, run_with};
use support::tenant::{TenantBuilder, masters_running, tenant_factory};
use time::OffsetDateTime;

#[tokio::test]
async fn a_pending_load_balancer_gets_only_the_bootstrap_objects_then_everything() {
    let double = InMemoryApiServerDouble::new();
    let tcp = TenantBuilder::new("tenant-a")
        .without_endpoint()
        .store(&double);

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
    assert_eq!(condition(&second, "Ready"), ("False", "APIServerNotReady"));
    assert_eq!(second.status.endpoint.as_deref(), Some("203.0.113.10:6443"));
    assert_eq!(second.applied.applied.len(), 31, "{:?}", second.applied);
    let reasons: Vec<&str> = second.notes.iter().map(|n| n.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["CertificatesIssued", "Applied"],
        "{:?}",
        second.notes
    );
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
    let tcp = TenantBuilder::new("tenant-a").store(&double);
    run(&double, &tcp).await;
    let ca_before = double.get("secrets", "tcp-tenant-a", "ca").unwrap();
    double.clear_writes();

    // `run` builds a new client and context each time: a restarted controller.
    let again = run(&double, &tcp).await;
    assert_eq!(double.writes(), Vec::<String>::new(), "{:?}", again.applied);
    assert!(!again.status_written);
    assert_eq!(
        again.notes,
        Vec::new(),
        "nothing changed, nothing to report"
    );
    assert_eq!(
        double.get("secrets", "tcp-tenant-a", "ca").unwrap()["data"],
        ca_before["data"],
        "same CA"
    );
}

#[tokio::test]
async fn an_invalid_spec_changes_nothing_but_its_status() {
    let double = InMemoryApiServerDouble::new();
    let mut tcp = TenantBuilder::new("tenant-a").store(&double);
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
    let tcp = TenantBuilder::new("tenant-a").store(&double);
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

#[tokio::test]
async fn once_the_apiserver_runs_the_tenant_is_bootstrapped_and_joinable() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let tcp = TenantBuilder::new("tenant-a").store(&double);
    run_with(&double, tenant_factory(&tenant_api), &tcp).await;
    masters_running(&double);

    let outcome = run_with(&double, tenant_factory(&tenant_api), &tcp).await;
    assert_eq!(
        condition(&outcome, "TenantBootstrapped"),
        ("True", "Applied")
    );
    assert_eq!(condition(&outcome, "EtcdReady"), ("True", "Quorum"));
    assert_eq!(condition(&outcome, "APIServerReady"), ("True", "Available"));
    assert_eq!(condition(&outcome, "Ready"), ("True", "Ready"));
    assert_eq!(outcome.status.phase.as_deref(), Some("Ready"));
    assert_eq!(outcome.status.version.as_deref(), Some("1.35.5"));
    assert_eq!(outcome.status.join_secret.as_deref(), Some("join"));
    assert_eq!(tenant_api.len(), 38, "the whole tenant set");
    assert!(
        tenant_api
            .get("configmaps", "kube-system", "kubeadm-config")
            .is_some()
    );

    let join = double.get("secrets", "tcp-tenant-a", "join").unwrap();
    let command = String::from_utf8(base64_decode(&join["data"]["join-command"])).unwrap();
    let token = String::from_utf8(base64_decode(&join["data"]["token"])).unwrap();
    assert_eq!(
        command,
        format!(
            "kubeadm join 203.0.113.10:6443 --token {token} --discovery-token-ca-cert-hash {}",
            outcome.status.ca_cert_hash.clone().unwrap()
        )
    );
    let id = token.split('.').next().unwrap();
    let cluster_info = tenant_api
        .get("configmaps", "kube-public", "cluster-info")
        .unwrap();
    let signature = cluster_info["data"][format!("jws-kubeconfig-{id}")]
        .as_str()
        .unwrap();
    let (_, secret) = token.split_once('.').unwrap();
    assert!(gantry_pki::jws::detached_signature_is_valid(
        signature,
        cluster_info["data"]["kubeconfig"]
            .as_str()
            .unwrap()
            .as_bytes(),
        id,
        secret
    ));
    let status = serde_json::to_string(&outcome.status).unwrap();
    assert!(
        !status.contains(secret),
        "the token never appears in status"
    );
    let reasons: Vec<&str> = outcome.notes.iter().map(|n| n.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "OperatorAccessGranted",
            "TenantBootstrapped",
            "JoinTokenUpdated",
            "Ready"
        ],
        "{:?}",
        outcome.notes
    );
    assert!(
        outcome.notes.iter().all(|n| !n.message.contains(secret)),
        "nor in events"
    );

    // Steady state: no writes in either cluster.
    double.clear_writes();
    tenant_api.clear_writes();
    let again = run_with(&double, tenant_factory(&tenant_api), &tcp).await;
    assert_eq!(double.writes(), Vec::<String>::new(), "{:?}", again.applied);
    assert_eq!(tenant_api.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn a_token_near_expiry_is_replaced_and_the_old_one_left_to_expire() {
    let (double, tenant_api, tcp) = ready_tenant().await;
    let join = double.get("secrets", "tcp-tenant-a", "join").unwrap();
    let old = String::from_utf8(base64_decode(&join["data"]["token"])).unwrap();
    let old_id = old.split('.').next().unwrap().to_string();

    // Less than a third of the 24h lifetime left.
    use base64::Engine as _;
    let soon = gantry_pki::rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(5));
    double.set_field(
        "secrets",
        "tcp-tenant-a",
        "join",
        "/data/expiration",
        json!(base64::engine::general_purpose::STANDARD.encode(soon)),
    );
    run_with(&double, tenant_factory(&tenant_api), &tcp).await;

    let join = double.get("secrets", "tcp-tenant-a", "join").unwrap();
    let new = String::from_utf8(base64_decode(&join["data"]["token"])).unwrap();
    assert_ne!(new, old);
    let new_id = new.split('.').next().unwrap();
    assert!(
        tenant_api
            .get(
                "secrets",
                "kube-system",
                &format!("bootstrap-token-{new_id}")
            )
            .is_some()
    );
    assert!(
        tenant_api
            .get(
                "secrets",
                "kube-system",
                &format!("bootstrap-token-{old_id}")
            )
            .is_some(),
        "left to the tokencleaner"
    );
}

#[tokio::test]
async fn an_unreachable_tenant_apiserver_is_reported_and_retried() {
    let double = InMemoryApiServerDouble::new();
    let tcp = TenantBuilder::new("tenant-a").store(&double);
    let refusing: TenantClientFactory = Arc::new(|_, server| {
        Box::pin(async move {
            Err(TenantClientError::Server {
                server,
                reason: "connection refused".into(),
            })
        })
    });
    run_with(&double, refusing.clone(), &tcp).await;
    masters_running(&double);
    let outcome = run_with(&double, refusing, &tcp).await;
    assert_eq!(
        condition(&outcome, "TenantBootstrapped"),
        ("False", "ConnectionFailed")
    );
    assert_eq!(
        condition(&outcome, "Ready"),
        ("False", "TenantNotBootstrapped")
    );
    assert!(outcome.requeue_after.is_some());
}

#[tokio::test]
async fn the_finalizer_is_added_first_and_removed_only_once_the_namespace_is_gone() {
    let double = InMemoryApiServerDouble::new();
    let tcp = TenantBuilder::new("tenant-a").store(&double);
    let ctx = || Context {
        client: double.client(),
        live: None,
        service_cluster: gantry_renderer::ServiceCluster::default(),
        tenant_client: tenant_factory(&InMemoryApiServerDouble::new()),
        kubelet_serving: None,
    };
    let stored = || -> TenantControlPlane {
        serde_json::from_value(double.get("tenantcontrolplanes", "", "tenant-a").unwrap()).unwrap()
    };
    let now = OffsetDateTime::now_utc();

    // 1. Nothing is created before the finalizer is in place.
    reconcile_with_finalizer(Arc::new(tcp.clone()), &ctx(), now)
        .await
        .unwrap();
    assert_eq!(
        stored().metadata.finalizers,
        Some(vec![FINALIZER.to_string()])
    );
    assert!(double.get("namespaces", "", "tcp-tenant-a").is_none());

    // 2. With the finalizer, the tenant is reconciled.
    reconcile_with_finalizer(Arc::new(stored()), &ctx(), now)
        .await
        .unwrap();
    assert!(double.get("namespaces", "", "tcp-tenant-a").is_some());

    // 3. Deletion: the namespace is deleted; while it terminates the finalizer stays.
    double.hold_deletes("namespaces");
    double.set_field(
        "tenantcontrolplanes",
        "",
        "tenant-a",
        "/metadata/deletionTimestamp",
        json!("2026-11-22T00:00:00Z"),
    );
    let waiting = reconcile_with_finalizer(Arc::new(stored()), &ctx(), now).await;
    assert!(
        waiting
            .unwrap_err()
            .to_string()
            .contains("namespace tcp-tenant-a is still terminating")
    );
    assert!(
        double
            .writes()
            .contains(&"DELETE /api/v1/namespaces/tcp-tenant-a".to_string())
    );
    assert_eq!(
        stored().metadata.finalizers,
        Some(vec![FINALIZER.to_string()])
    );
    // The next pass deletes again; a real API server answers 409 for a
    // namespace already terminating, and that is still a wait, not a failure.
    let again = reconcile_with_finalizer(Arc::new(stored()), &ctx(), now).await;
    match again {
        Err(kube::runtime::finalizer::Error::CleanupFailed(error)) => {
            assert_eq!(error.category(), ErrorCategory::Waiting, "{error}");
        }
        other => panic!("expected a wait, got {other:?}"),
    }

    // 4. Once the namespace is gone, the finalizer goes and so does the tenant.
    double.forget("namespaces", "", "tcp-tenant-a");
    reconcile_with_finalizer(Arc::new(stored()), &ctx(), now)
        .await
        .unwrap();
    assert!(double.get("tenantcontrolplanes", "", "tenant-a").is_none());
}

#[tokio::test]
async fn a_settled_tenant_costs_no_request_until_it_or_a_watched_object_changes() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    TenantBuilder::new("tenant-a").store(&double);
    let steady = SteadyState::new();
    let ctx = Context {
        client: double.client(),
        live: None,
        service_cluster: gantry_renderer::ServiceCluster::default(),
        tenant_client: tenant_factory(&tenant_api),
        kubelet_serving: None,
    };
    let stored = || -> Arc<TenantControlPlane> {
        Arc::new(
            serde_json::from_value(double.get("tenantcontrolplanes", "", "tenant-a").unwrap())
                .unwrap(),
        )
    };
    let now = OffsetDateTime::now_utc();
    let pass = |tcp| reconcile_tenant(tcp, &ctx, &steady, now);
    // Finalizer, then provisioning, then Ready (status written), then a steady pass.
    pass(stored()).await.unwrap();
    pass(stored()).await.unwrap();
    masters_running(&double);
    pass(stored()).await.unwrap();
    let Pass::Full { outcome, .. } = pass(stored()).await.unwrap() else {
        panic!("a full pass: nothing settled yet");
    };
    assert!(outcome.unwrap().is_steady());

    // Settled: a trigger with nothing new costs no request at all.
    let before = double.requests();
    let Pass::Skipped { requeue_after } = pass(stored()).await.unwrap() else {
        panic!("settled");
    };
    assert_eq!(double.requests(), before);
    assert!(requeue_after <= std::time::Duration::from_secs(15 * 60));

    // A watch reports a change to an object of the tenant: full pass.
    // (Which watch events are news, and which replays, `live` decides.)
    steady.changed("tenant-a");
    assert!(matches!(pass(stored()).await.unwrap(), Pass::Full { .. }));
    assert!(matches!(
        pass(stored()).await.unwrap(),
        Pass::Skipped { .. }
    ));

    // A spec change: full pass.
    let mut changed = (*stored()).clone();
    changed.metadata.generation = Some(2);
    changed
        .spec
        .api_server
        .cert_sans
        .push("api3.tenant-a.example.com".into());
    let Pass::Full { outcome, .. } = pass(Arc::new(changed)).await.unwrap() else {
        panic!("the spec changed");
    };
    let outcome = outcome.unwrap();
    assert!(
        outcome
            .applied
            .applied
            .contains(&"Secret/apiserver-certs".to_string()),
        "{outcome:?}"
    );
}
