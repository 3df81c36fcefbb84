//! The operator's access to a tenant: super-admin is used only to grant
//! gantry-operator its RBAC, once; a revoked grant stops bootstrapping and
//! the tenant's kubelet-serving approver, and is restored only when a
//! platform admin asks (the tenant apiserver is a
//! double here, without RBAC; tests/operator_access.rs runs the real one).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gantry_controller::kubelet_serving::KubeletServingApprovers;
use gantry_controller::reconcile::operator_access::GRANT_ANNOTATION;
use support::passes::{condition, ready_tenant, run_with, run_with_approvers};
use support::tenant::tenant_factory_recording;

#[tokio::test]
async fn a_revoked_grant_halts_bootstrapping_until_a_platform_admin_asks_again() {
    let (double, tenant_api, mut tcp) = ready_tenant().await;
    let users = Arc::new(Mutex::new(Vec::new()));
    let approvers = Arc::new(KubeletServingApprovers::new());
    let factory = || tenant_factory_recording(&tenant_api, users.clone());
    let users_of_last_pass = || std::mem::take(&mut *users.lock().unwrap());
    let granted = |outcome: &gantry_controller::reconcile::pipeline::Outcome| {
        outcome
            .notes
            .iter()
            .any(|n| n.reason == "OperatorAccessGranted")
    };

    // Granted by ready_tenant's passes: now only gantry-operator connects.
    let settled = run_with_approvers(&double, factory(), &tcp, approvers.clone()).await;
    assert_eq!(
        condition(&settled, "TenantBootstrapped"),
        ("True", "Applied")
    );
    assert_eq!(users_of_last_pass(), ["gantry-operator"]);
    assert!(!granted(&settled));
    assert!(settled.status.operator_access_hash.is_some());
    assert!(approvers.is_running("tenant-a"));

    // A platform admin revokes the operator's binding in the tenant.
    tenant_api.forget("clusterrolebindings", "", "gantry:operator");
    let revoked = run_with_approvers(&double, factory(), &tcp, approvers.clone()).await;
    assert_eq!(
        condition(&revoked, "TenantBootstrapped"),
        ("False", "OperatorAccessRevoked")
    );
    assert_eq!(
        condition(&revoked, "Ready"),
        ("False", "TenantNotBootstrapped")
    );
    let message = &revoked
        .status
        .condition(gantry_controller::api::ConditionType::TenantBootstrapped)
        .unwrap()
        .message;
    assert!(
        message.contains("ClusterRoleBinding/gantry:operator")
            && message.contains(GRANT_ANNOTATION),
        "{message}"
    );
    assert_eq!(
        users_of_last_pass(),
        ["gantry-operator"],
        "never super-admin"
    );
    assert!(
        tenant_api
            .get("clusterrolebindings", "", "gantry:operator")
            .is_none()
    );
    assert!(
        !approvers.is_running("tenant-a"),
        "the approver stops: the operator writes nothing in a revoked tenant"
    );

    // The same pass again: still revoked, still without super-admin.
    run_with(&double, factory(), &tcp).await;
    assert_eq!(users_of_last_pass(), ["gantry-operator"]);

    // The platform admin asks: one grant with super-admin.
    tcp.metadata.annotations = Some(BTreeMap::from([(
        GRANT_ANNOTATION.to_string(),
        "2026-12-02".to_string(),
    )]));
    let regranted = run_with_approvers(&double, factory(), &tcp, approvers.clone()).await;
    assert_eq!(
        condition(&regranted, "TenantBootstrapped"),
        ("True", "Applied")
    );
    assert!(granted(&regranted));
    assert_eq!(
        users_of_last_pass(),
        ["gantry-operator", "kubernetes-super-admin"]
    );
    assert!(
        tenant_api
            .get("clusterrolebindings", "", "gantry:operator")
            .is_some()
    );
    assert_eq!(
        regranted.status.operator_access_grant.as_deref(),
        Some("2026-12-02")
    );
    assert!(approvers.is_running("tenant-a"));

    // The annotation left in place asks for nothing more.
    let after = run_with(&double, factory(), &tcp).await;
    assert!(!granted(&after));
    assert_eq!(users_of_last_pass(), ["gantry-operator"]);
}

#[tokio::test]
async fn an_edited_admin_binding_is_reported_and_restored_only_on_request() {
    let (double, tenant_api, mut tcp) = ready_tenant().await;
    let users = Arc::new(Mutex::new(Vec::new()));
    let live_hash = || {
        tenant_api
            .get("clusterrolebindings", "", "kubeadm:cluster-admins")
            .unwrap()["metadata"]["annotations"]["gantry.dev/desired-hash"]
            .clone()
    };
    let mut binding = tenant_api
        .get("clusterrolebindings", "", "kubeadm:cluster-admins")
        .unwrap();
    binding["metadata"]["annotations"]["gantry.dev/desired-hash"] = "edited".into();
    tenant_api.put(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "",
        binding,
    );
    let factory = || tenant_factory_recording(&tenant_api, users.clone());
    let outcome = run_with(&double, factory(), &tcp).await;
    // The tenant goes on; the edit is reported, not reverted.
    assert_eq!(
        condition(&outcome, "TenantBootstrapped"),
        ("True", "Applied")
    );
    let warning = outcome
        .notes
        .iter()
        .find(|n| n.reason == "AdminBindingsChanged")
        .expect("a warning");
    assert!(warning.warning);
    assert!(
        warning
            .message
            .contains("ClusterRoleBinding/kubeadm:cluster-admins")
            && warning.message.contains(GRANT_ANNOTATION),
        "{}",
        warning.message
    );
    assert_eq!(live_hash(), "edited");
    assert_eq!(*users.lock().unwrap(), ["gantry-operator"]);

    tcp.metadata.annotations = Some(BTreeMap::from([(
        GRANT_ANNOTATION.to_string(),
        "restore".to_string(),
    )]));
    let restored = run_with(&double, factory(), &tcp).await;
    assert!(
        restored
            .notes
            .iter()
            .all(|n| n.reason != "AdminBindingsChanged")
    );
    assert_ne!(live_hash(), "edited");
}

#[tokio::test]
async fn the_grant_is_recorded_even_when_a_later_step_of_its_pass_fails() {
    let (double, tenant_api, mut tcp) = ready_tenant().await;
    tcp.metadata.annotations = Some(BTreeMap::from([(
        GRANT_ANNOTATION.to_string(),
        "again".to_string(),
    )]));
    // The join Secret cannot be read or written: the pass fails after the grant.
    double.fail_requests_to("secrets", "join");
    let users = Arc::new(Mutex::new(Vec::new()));
    let factory = || tenant_factory_recording(&tenant_api, users.clone());
    support::passes::pass_result(&double, factory(), &tcp)
        .await
        .expect_err("the join Secret's step fails");
    let stored = double.get("tenantcontrolplanes", "", "tenant-a").unwrap();
    assert_eq!(stored["status"]["operatorAccessGrant"], "again");
    double.answer_all();
    std::mem::take(&mut *users.lock().unwrap());
    run_with(&double, factory(), &tcp).await;
    assert_eq!(
        *users.lock().unwrap(),
        ["gantry-operator"],
        "no second grant"
    );
}

#[tokio::test]
async fn approvers_of_tenants_that_no_longer_exist_are_stopped() {
    use gantry_controller::kubelet_serving::Reserved;
    let tenant_api = support::api_double::InMemoryApiServerDouble::new();
    let approvers = KubeletServingApprovers::new();
    for tenant in ["tenant-a", "tenant-b"] {
        approvers.ensure(
            tenant,
            tenant.as_bytes(),
            tenant_api.client(),
            Reserved::default(),
        );
    }
    // Let the approvers start (they watch the double, and run on).
    tokio::task::yield_now().await;
    // tenant-b was deleted with its finalizer removed by hand: no pass stops it.
    let stopped = approvers.retain(|tenant| tenant == "tenant-a");
    assert_eq!(stopped, ["tenant-b"]);
    assert!(approvers.is_running("tenant-a"));
    assert!(!approvers.is_running("tenant-b"));
    assert!(approvers.retain(|tenant| tenant == "tenant-a").is_empty());
}
