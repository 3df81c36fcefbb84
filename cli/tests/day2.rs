//! Day-2 reads (`gantry join`, `kubeconfig`, `get`) against the in-memory API
//! server DOUBLE: what they print for a Ready tenant, and the errors that name
//! what is missing.

// The API server double and the example tenant, shared with the controller's tests.
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use gantry_cli::access::{self as day2, Day2Error};
use gantry_controller::reconcile::pipeline::{Context, reconcile};
use support::api_double::InMemoryApiServerDouble;
use support::tenant::{TenantBuilder, masters_running, tenant_factory};
use time::OffsetDateTime;

async fn reconcile_once(double: &InMemoryApiServerDouble, tenant_api: &InMemoryApiServerDouble) {
    let mut tcp: gantry_controller::api::TenantControlPlane =
        serde_json::from_value(double.get("tenantcontrolplanes", "", "tenant-a").unwrap()).unwrap();
    tcp.metadata.generation = Some(1);
    let ctx = Context {
        client: double.client(),
        live: None,
        service_cluster: gantry_renderer::ServiceCluster::default(),
        tenant_client: tenant_factory(tenant_api),
        kubelet_serving: None,
    };
    reconcile(&tcp, &ctx, OffsetDateTime::now_utc())
        .await
        .unwrap();
}

#[tokio::test]
async fn errors_name_the_tenant_and_what_is_missing() {
    let double = InMemoryApiServerDouble::new();
    let error = day2::from_cluster(&double.client(), "tenant-a", false)
        .await
        .unwrap_err();
    assert!(matches!(error, Day2Error::NoSuchTenant(_)));
    assert_eq!(
        error.to_string(),
        "no TenantControlPlane named \"tenant-a\" (`kubectl get tenantcontrolplanes` lists them)"
    );

    // Provisioning: the masters are not up, so there is no join Secret yet.
    TenantBuilder::new("tenant-a").store(&double);
    let tenant_api = InMemoryApiServerDouble::new();
    reconcile_once(&double, &tenant_api).await;
    let error = day2::from_cluster(&double.client(), "tenant-a", false)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "tenant \"tenant-a\" is not ready yet: no join Secret yet (phase Provisioning, Ready=False \
         APIServerNotReady: waiting for a kube-apiserver replica to be available)"
    );
}

#[tokio::test]
async fn a_ready_tenant_gives_its_join_command_and_kubeconfigs() {
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    TenantBuilder::new("tenant-a").store(&double);
    reconcile_once(&double, &tenant_api).await;
    masters_running(&double);
    reconcile_once(&double, &tenant_api).await;

    let super_admin_reads = || {
        double
            .reads()
            .iter()
            .filter(|read| read.contains("super-admin-kubeconfig"))
            .count()
    };
    let before = super_admin_reads();
    let access = day2::from_cluster(&double.client(), "tenant-a", false)
        .await
        .unwrap();
    let join = double.get("secrets", "tcp-tenant-a", "join").unwrap();
    let decode = |v: &serde_json::Value| {
        use base64::Engine as _;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        access.join.to_string(),
        decode(&join["data"]["join-command"])
    );
    assert_eq!(access.version.as_deref(), Some("1.35.5"));
    let admin = String::from_utf8(access.admin_conf.clone()).unwrap();
    assert!(admin.contains("server: https://203.0.113.10:6443"));
    assert!(admin.contains("kubernetes-admin"));
    // system:masters is read only when asked for (kubeconfig --super-admin).
    assert!(access.super_admin_conf.is_none());
    assert_eq!(super_admin_reads(), before);
    let with_super_admin = day2::from_cluster(&double.client(), "tenant-a", true)
        .await
        .unwrap();
    let super_admin = String::from_utf8(with_super_admin.super_admin_conf.unwrap()).unwrap();
    assert!(super_admin.contains("kubernetes-super-admin"));
    // Debug output never shows the token.
    assert!(!format!("{access:?}").contains(&access.join.token().expose()));

    // gantry get.
    let tenants: Vec<gantry_controller::api::TenantControlPlane> = double
        .list("tenantcontrolplanes")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let table = gantry_cli::day2::table(&tenants);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAME", "VERSION", "DESIRED", "PHASE", "ENDPOINT", "NOT", "READY"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "tenant-a",
            "1.35.5",
            "1.35.5",
            "Ready",
            "203.0.113.10:6443",
            "-"
        ]
    );
}

/// A join Secret someone edited: no value of it reaches a printed command
/// or a node's script unchecked, and the error never shows the token.
#[tokio::test]
async fn a_tampered_join_secret_is_refused_without_showing_the_token() {
    use base64::Engine as _;
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    TenantBuilder::new("tenant-a").store(&double);
    reconcile_once(&double, &tenant_api).await;
    masters_running(&double);
    reconcile_once(&double, &tenant_api).await;
    let good = day2::from_cluster(&double.client(), "tenant-a", false)
        .await
        .unwrap();
    let token = good.join.token().expose();
    let encode = |s: &str| serde_json::json!(base64::engine::general_purpose::STANDARD.encode(s));
    for (key, value, expected) in [
        (
            "endpoint",
            "$(touch${IFS}/tmp/PWNED):6443",
            "its endpoint \"$(touch${IFS}/tmp/PWNED):6443\" ",
        ),
        ("endpoint", "203.0.113.10", "has no port"),
        (
            "token",
            &format!("{token};touch x"),
            "its token is not ID.SECRET",
        ),
        (
            "ca-cert-hash",
            "sha256:$(id)",
            "its CA hash \"sha256:$(id)\"",
        ),
    ] {
        let original = double.get("secrets", "tcp-tenant-a", "join").unwrap()["data"][key].clone();
        let pointer = format!("/data/{key}");
        double.set_field("secrets", "tcp-tenant-a", "join", &pointer, encode(value));
        let error = day2::from_cluster(&double.client(), "tenant-a", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("tenant \"tenant-a\": Secret tcp-tenant-a/join: "),
            "{error}"
        );
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains(good.join.token().secret()), "{error}");
        double.set_field("secrets", "tcp-tenant-a", "join", &pointer, original);
    }
    assert!(
        day2::from_cluster(&double.client(), "tenant-a", false)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn join_ttl_mints_a_bootstrap_token_in_the_tenant_cluster() {
    let tenant_api = InMemoryApiServerDouble::new();
    let now = OffsetDateTime::now_utc();
    let token = day2::mint_token(&tenant_api.client(), time::Duration::hours(2), now)
        .await
        .unwrap();
    let secret = tenant_api
        .get(
            "secrets",
            "kube-system",
            &format!("bootstrap-token-{}", token.id()),
        )
        .expect("the token's Secret");
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(secret["stringData"]["token-secret"], token.secret());
    assert_eq!(
        secret["stringData"]["usage-bootstrap-authentication"],
        "true"
    );
    assert_eq!(secret["stringData"]["usage-bootstrap-signing"], "true");
    assert_eq!(
        secret["stringData"]["expiration"],
        gantry_pki::rfc3339(now + time::Duration::hours(2))
    );
}
