//! Applying the service set through kube's real `Client` against the
//! in-memory API server double: first apply creates everything, an unchanged
//! tenant costs zero writes, a new certSAN rolls only what mounts the
//! apiserver certificate, CA Secrets are never overwritten, and objects no
//! longer rendered are pruned.

mod support;

use gantry_controller::api::TenantControlPlane;
use gantry_controller::apply::{self, ApplyReport};
use gantry_controller::live::Cluster;
use gantry_controller::resolve::{offline_endpoint, resolve};
use gantry_pki::{BootstrapToken, FileSet, PkiBundle};
use support::api_double::InMemoryApiServerDouble;
use time::OffsetDateTime;

const TENANT: &str = "tenant-a";

fn manifest() -> TenantControlPlane {
    TenantControlPlane::from_yaml(include_str!("../../examples/tenant-a.yaml")).unwrap()
}

/// Renders the service set of `manifest` with the PKI kept from `existing`.
fn render(
    manifest: &TenantControlPlane,
    existing: &FileSet,
) -> (Vec<apply::DesiredObject>, PkiBundle) {
    let now = OffsetDateTime::now_utc();
    let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
    let endpoint = offline_endpoint(manifest).unwrap();
    let resolved = resolve(
        manifest,
        &endpoint,
        token,
        None,
        now,
        &gantry_renderer::ServiceCluster::default(),
    )
    .unwrap();
    let pki = gantry_pki::issue(&resolved.pki, existing, now)
        .unwrap()
        .bundle;
    let rendered = gantry_renderer::render(&resolved.input, &pki).unwrap();
    (apply::service_set(&rendered.service, None), pki)
}

async fn apply(client: &kube::Client, objects: &[apply::DesiredObject]) -> ApplyReport {
    apply::apply_set(
        Cluster::api(client),
        TENANT,
        "service",
        objects,
        &gantry_renderer::kinds::service_set_kinds(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_unchanged_tenant_costs_zero_writes() {
    let double = InMemoryApiServerDouble::new();
    let client = double.client();
    let (objects, _) = render(&manifest(), &FileSet::new());
    let first = apply(&client, &objects).await;
    assert_eq!(first.applied.len(), 33, "{first:?}");
    assert_eq!(double.len(), 33);
    assert_eq!(double.writes().len(), 33);
    let namespace = double.get("namespaces", "", "tcp-tenant-a").unwrap();
    assert_eq!(namespace["metadata"]["labels"]["gantry.dev/tenant"], TENANT);
    assert_eq!(
        namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gantry"
    );

    double.clear_writes();
    let second = apply(&client, &objects).await;
    assert_eq!(second.writes(), 0, "{second:?}");
    assert_eq!(double.writes(), Vec::<String>::new());
    assert_eq!((second.unchanged, second.kept.len()), (28, 5));
}

#[tokio::test]
async fn a_new_cert_san_rolls_only_what_mounts_the_apiserver_certificate() {
    let double = InMemoryApiServerDouble::new();
    let client = double.client();
    let (objects, pki) = render(&manifest(), &FileSet::new());
    apply(&client, &objects).await;
    double.clear_writes();

    let mut changed = manifest();
    changed
        .spec
        .api_server
        .cert_sans
        .push("api2.tenant-a.example.com".into());
    let (objects, _) = render(&changed, &pki.to_file_set());
    let report = apply(&client, &objects).await;
    assert_eq!(
        report.applied,
        ["Secret/apiserver-certs", "Deployment/kube-apiserver"],
        "{report:?}"
    );
    assert_eq!(
        double.writes(),
        [
            "PATCH /api/v1/namespaces/tcp-tenant-a/secrets/apiserver-certs",
            "PATCH /apis/apps/v1/namespaces/tcp-tenant-a/deployments/kube-apiserver",
        ]
    );
}

#[tokio::test]
async fn ca_secrets_are_created_once_and_never_overwritten() {
    let double = InMemoryApiServerDouble::new();
    let client = double.client();
    let (objects, _) = render(&manifest(), &FileSet::new());
    apply(&client, &objects).await;
    let ca_before = double.get("secrets", "tcp-tenant-a", "ca").unwrap();

    // A PKI from nothing (as if a read had failed) has a different CA: it must not land.
    let (fresh, _) = render(&manifest(), &FileSet::new());
    let report = apply(&client, &fresh).await;
    assert_eq!(
        report.kept,
        [
            "Secret/ca",
            "Secret/front-proxy-ca",
            "Secret/etcd-ca",
            "Secret/sa",
            "Secret/encryption-config"
        ]
    );
    assert_eq!(
        double.get("secrets", "tcp-tenant-a", "ca").unwrap()["data"],
        ca_before["data"]
    );
}

#[tokio::test]
async fn objects_no_longer_rendered_are_pruned() {
    let double = InMemoryApiServerDouble::new();
    let client = double.client();
    let (objects, pki) = render(&manifest(), &FileSet::new());
    apply(&client, &objects).await;
    assert!(
        double
            .get("poddisruptionbudgets", "tcp-tenant-a", "etcd")
            .is_some()
    );

    // One etcd member needs no disruption budget.
    let mut single = manifest();
    single.spec.etcd.replicas = 1;
    let (objects, _) = render(&single, &pki.to_file_set());
    let report = apply(&client, &objects).await;
    assert_eq!(report.pruned, ["PodDisruptionBudget/etcd"], "{report:?}");
    assert!(
        double
            .get("poddisruptionbudgets", "tcp-tenant-a", "etcd")
            .is_none()
    );
    assert!(double.get("statefulsets", "tcp-tenant-a", "etcd").is_some());
}
