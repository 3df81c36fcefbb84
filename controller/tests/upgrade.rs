//! Version changes through the reconcile, against the API double: one
//! minor up rolls in kubeadm's order, anything else is refused and changes
//! nothing.

mod support;

use support::api_double::InMemoryApiServerDouble;
use support::passes::{condition, object_writes, ready_tenant, run_with};
use support::tenant::{TenantBuilder, masters_running, rolled_out, tenant_factory};

#[tokio::test]
async fn a_downgrade_is_refused_and_nothing_changes_while_one_minor_up_proceeds() {
    // Skipping a minor is refused by the same plan (see reconcile::upgrade's
    // tests).
    let double = InMemoryApiServerDouble::new();
    let tenant_api = InMemoryApiServerDouble::new();
    let tcp = TenantBuilder::new("tenant-a").store(&double);
    run_with(&double, tenant_factory(&tenant_api), &tcp).await;
    masters_running(&double);
    let ready = run_with(&double, tenant_factory(&tenant_api), &tcp).await;
    assert_eq!(ready.status.version.as_deref(), Some("1.35.5"));

    for (version, message) in [
        ("1.35.4", "downgrade from 1.35.5 to 1.35.4 is not supported"),
        ("1.35.1", "downgrade from 1.35.5 to 1.35.1 is not supported"),
    ] {
        double.clear_writes();
        let mut changed = tcp.clone();
        changed.spec.version = version.into();
        changed.metadata.generation = Some(2);
        let outcome = run_with(&double, tenant_factory(&tenant_api), &changed).await;
        assert_eq!(
            condition(&outcome, "Ready"),
            ("False", "UpgradeRefused"),
            "{version}"
        );
        let ready = outcome
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.message, message);
        assert_eq!(
            outcome.status.version.as_deref(),
            Some("1.35.5"),
            "what runs is unchanged"
        );
        assert_eq!(
            object_writes(&double),
            Vec::<String>::new(),
            "no object is touched"
        );
    }
}

fn image(double: &InMemoryApiServerDouble, plural: &str, name: &str) -> String {
    double.get(plural, "tcp-tenant-a", name).unwrap()["spec"]["template"]["spec"]["containers"][0]
        ["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_one_minor_upgrade_rolls_etcd_then_the_apiserver_then_the_rest_and_only_then_moves_the_version()
 {
    let (double, tenant_api, tcp) = ready_tenant().await;
    let kube_proxy = || {
        tenant_api
            .get("daemonsets", "kube-system", "kube-proxy")
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone()
    };
    assert_eq!(kube_proxy(), "registry.k8s.io/kube-proxy:v1.35.5");

    let mut up = tcp.clone();
    up.spec.version = "1.36.0".into();
    up.metadata.generation = Some(2);
    let images = |double: &InMemoryApiServerDouble| {
        [
            ("statefulsets", "etcd"),
            ("deployments", "kube-apiserver"),
            ("deployments", "kube-controller-manager"),
            ("deployments", "kube-scheduler"),
        ]
        .map(|(plural, name)| image(double, plural, name))
    };

    // Step 1: etcd only (its image changes from 3.6.6 to 3.6.8).
    let outcome = run_with(&double, tenant_factory(&tenant_api), &up).await;
    assert_eq!(condition(&outcome, "Ready"), ("False", "Upgrading"));
    assert_eq!(outcome.status.phase.as_deref(), Some("Upgrading"));
    assert_eq!(outcome.status.version.as_deref(), Some("1.35.5"));
    assert_eq!(
        images(&double),
        [
            "registry.k8s.io/etcd:3.6.8-0",
            "registry.k8s.io/kube-apiserver:v1.35.5",
            "registry.k8s.io/kube-controller-manager:v1.35.5",
            "registry.k8s.io/kube-scheduler:v1.35.5",
        ]
    );
    assert!(
        outcome.notes.iter().any(|n| n.reason == "UpgradeStep"
            && n.message == "upgrading 1.35.5 to 1.36.0: rolling etcd")
    );
    // While etcd rolls, nothing else moves and nothing is rewritten.
    double.clear_writes();
    run_with(&double, tenant_factory(&tenant_api), &up).await;
    assert_eq!(object_writes(&double), Vec::<String>::new());
    assert_eq!(images(&double)[1], "registry.k8s.io/kube-apiserver:v1.35.5");

    // Step 2: once etcd has rolled, the apiserver.
    rolled_out(&double, "statefulsets", "etcd");
    run_with(&double, tenant_factory(&tenant_api), &up).await;
    assert_eq!(
        images(&double)[1..],
        [
            "registry.k8s.io/kube-apiserver:v1.36.0",
            "registry.k8s.io/kube-controller-manager:v1.35.5",
            "registry.k8s.io/kube-scheduler:v1.35.5",
        ]
    );
    assert_eq!(kube_proxy(), "registry.k8s.io/kube-proxy:v1.35.5");

    // Step 3: controller-manager and scheduler together.
    rolled_out(&double, "deployments", "kube-apiserver");
    let outcome = run_with(&double, tenant_factory(&tenant_api), &up).await;
    assert_eq!(
        images(&double)[2..],
        [
            "registry.k8s.io/kube-controller-manager:v1.36.0",
            "registry.k8s.io/kube-scheduler:v1.36.0",
        ]
    );
    assert_eq!(outcome.status.version.as_deref(), Some("1.35.5"));
    assert_eq!(kube_proxy(), "registry.k8s.io/kube-proxy:v1.35.5");

    // Step 4: the tenant add-ons; then the version moves and the tenant is Ready.
    rolled_out(&double, "deployments", "kube-controller-manager");
    rolled_out(&double, "deployments", "kube-scheduler");
    let outcome = run_with(&double, tenant_factory(&tenant_api), &up).await;
    assert_eq!(kube_proxy(), "registry.k8s.io/kube-proxy:v1.36.0");
    let cluster_configuration = tenant_api
        .get("configmaps", "kube-system", "kubeadm-config")
        .unwrap()["data"]["ClusterConfiguration"]
        .clone();
    assert!(
        cluster_configuration
            .as_str()
            .unwrap()
            .contains("kubernetesVersion: \"v1.36.0\""),
        "{cluster_configuration}"
    );
    assert_eq!(condition(&outcome, "Ready"), ("True", "Ready"));
    assert_eq!(outcome.status.version.as_deref(), Some("1.36.0"));
    assert!(outcome.notes.iter().any(|n| n.reason == "Upgraded"));
}
