//! The operator's own credential in a tenant (docs/design/operator-credential.md),
//! proven on a real tenant apiserver of the newest minor, started from its
//! rendered bundle, with gantry's own code (`tests/bin/operator_access.rs`
//! runs `gantry_controller::reconcile::operator_access` one step at a time):
//!
//! - before the grant, gantry-operator may write nothing of the tenant set;
//! - super-admin writes exactly the privileged set, once; gantry-operator
//!   writes every other object of the tenant set, as the audit log shows;
//! - gantry-operator may not read Secrets, escalate, bind cluster-admin, or
//!   change the admin bindings;
//! - a deleted binding is a revocation: the check says so and uses no
//!   super-admin, until a grant restores it;
//! - a tenant admin's edit of a role the operator writes is reverted by it;
//!   an edit of an admin binding is reported and left until a grant.
//!
//! The kubelet-serving approver runs as gantry-operator in
//! `tests/worker_node.rs` (and in the e2e test, inside the real operator).

use std::collections::BTreeSet;
use std::time::Duration;

use gantry_tests::approver::helper_bin;
use gantry_tests::audit::audit_events;
use gantry_tests::control_plane::{ControlPlane, TenantShape, one_at_a_time, render_tenant};
use gantry_tests::kubelet::read_objects;
use gantry_tests::output_text;
use serde_json::Value;

/// (resource, namespace, name) of an object or an audited request.
type Key = (String, String, String);

fn key_of(object: &Value) -> Key {
    let kind = object["kind"].as_str().unwrap().to_lowercase();
    let metadata = &object["metadata"];
    (
        format!("{kind}s"),
        metadata["namespace"].as_str().unwrap_or("").to_string(),
        metadata["name"].as_str().unwrap().to_string(),
    )
}

/// The audited requests of `user` with one of `verbs` that the apiserver
/// allowed (2xx), access reviews left out (they ask, and change nothing).
fn allowed_requests(plane: &ControlPlane, user: &str, verbs: &[&str]) -> Vec<Value> {
    audit_events(plane)
        .into_iter()
        .filter(|e| e["user"]["username"] == user)
        .filter(|e| verbs.contains(&e["verb"].as_str().unwrap()))
        .filter(|e| e["objectRef"]["apiGroup"] != "authorization.k8s.io")
        .filter(|e| {
            e["responseStatus"]["code"]
                .as_u64()
                .is_some_and(|c| c < 300)
        })
        .collect()
}

/// The keys of the writes `user` made that the apiserver allowed.
fn writes_by(plane: &ControlPlane, user: &str) -> BTreeSet<Key> {
    allowed_requests(plane, user, &["create", "patch", "update", "delete"])
        .iter()
        .map(|e| {
            let r = &e["objectRef"];
            let field = |f: &str| r[f].as_str().unwrap_or("").to_string();
            (field("resource"), field("namespace"), field("name"))
        })
        .collect()
}

#[test]
fn the_operator_writes_the_tenant_set_as_itself_and_super_admin_only_grants() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let version = gantry_renderer::versions::newest().to_string();
    let shape = TenantShape {
        name: "tenant-o",
        version: &version,
        subnet: 146,
        etcd: 1,
        apiservers: 1,
    };
    let bundle = render_tenant(tmp.path(), &shape);
    let mut plane = ControlPlane::start(&bundle, &shape, &tmp.path().join("run"));
    plane.wait_ready(Duration::from_secs(120));
    let server = format!("https://{}:6443", plane.vip);
    let step = |step: &str| {
        let output = plane
            .node
            .command(helper_bin("gantry-operator-access"))
            .args([bundle.to_str().unwrap(), &server, step])
            .output()
            .unwrap();
        assert!(output.status.success(), "{step}: {}", output_text(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let objects = read_objects(&bundle.join("tenant"));
    let (privileged, written): (Vec<&Value>, Vec<&Value>) = objects
        .iter()
        .partition(|o| gantry_renderer::is_privileged(o));
    assert_eq!(privileged.len(), 8);

    // Nothing granted yet: gantry-operator may neither check nor write.
    assert!(step("check").starts_with("error OperatorAccessRevoked:"));
    assert!(step("apply").starts_with("error Forbidden:"));
    assert_eq!(writes_by(&plane, "gantry-operator"), BTreeSet::new());

    // One grant with super-admin, then gantry-operator applies the rest.
    assert_eq!(step("grant"), "ok 8");
    assert_eq!(step("apply"), format!("ok {}", written.len()));
    assert_eq!(step("apply"), "ok 0", "a settled pass writes nothing");
    assert_eq!(step("check"), "ok 0");
    let keys = |objects: &[&Value]| objects.iter().map(|o| key_of(o)).collect::<BTreeSet<_>>();
    assert_eq!(
        writes_by(&plane, "kubernetes-super-admin"),
        keys(&privileged)
    );
    assert_eq!(writes_by(&plane, "gantry-operator"), keys(&written));

    what_gantry_operator_may_not_do(&plane, &server);

    // A platform admin revokes the operator's binding.
    let super_admin_requests = |plane: &ControlPlane| {
        let verbs = ["get", "list", "create", "patch", "update", "delete"];
        allowed_requests(plane, "kubernetes-super-admin", &verbs).len()
    };
    let before = super_admin_requests(&plane);
    plane.kubectl_ok(
        "super-admin.conf",
        &["delete", "clusterrolebinding", "gantry:operator"],
    );
    let revoked = step("check");
    assert!(
        revoked.starts_with("error OperatorAccessRevoked:"),
        "{revoked}"
    );
    assert!(
        revoked.contains("gantry.dev/grant-operator-access"),
        "{revoked}"
    );
    assert!(step("apply").starts_with("error Forbidden:"));
    assert_eq!(
        super_admin_requests(&plane),
        before + 1,
        "only the delete: neither step used super-admin"
    );
    assert_eq!(
        step("grant"),
        "ok 1",
        "the binding, and nothing else, again"
    );
    assert_eq!(step("check"), "ok 0");

    // A tenant admin widens a role the operator writes: the next pass reverts it.
    plane.kubectl_ok(
        "admin.conf",
        &[
            "patch",
            "clusterrole",
            "system:coredns",
            "--type=json",
            r#"-p=[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}}]"#,
        ],
    );
    assert_eq!(step("apply"), "ok 1");
    let coredns = plane.kubectl_ok(
        "admin.conf",
        &["get", "clusterrole", "system:coredns", "-o", "json"],
    );
    assert!(!coredns.contains("secrets"), "{coredns}");

    // A tenant admin adds a subject to the admin binding: reported, left
    // alone, and restored by a grant.
    plane.kubectl_ok(
        "admin.conf",
        &[
            "patch",
            "clusterrolebinding",
            "kubeadm:cluster-admins",
            "--type=json",
            r#"-p=[{"op":"add","path":"/subjects/-","value":{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"someone"}}]"#,
        ],
    );
    assert_eq!(
        step("check"),
        "changed ClusterRoleBinding/kubeadm:cluster-admins"
    );
    assert_eq!(step("apply"), "ok 0");
    assert_eq!(step("grant"), "ok 1");
    assert_eq!(step("check"), "ok 0");
    let binding = plane.kubectl_ok(
        "admin.conf",
        &[
            "get",
            "clusterrolebinding",
            "kubeadm:cluster-admins",
            "-o",
            "json",
        ],
    );
    assert!(!binding.contains("someone"), "{binding}");
}

/// What gantry-operator's RBAC refuses, asked as gantry-operator.
fn what_gantry_operator_may_not_do(plane: &ControlPlane, server: &str) {
    let operator = |args: &[&str]| {
        let server = format!("--server={server}");
        let mut all = vec![server.as_str()];
        all.extend_from_slice(args);
        plane.kubectl("operator.conf", &all)
    };
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        String::from_utf8(operator(&all).stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    for (args, expected) in [
        (
            &["patch", "configmaps/kubeadm-config", "-n", "kube-system"][..],
            "yes",
        ),
        (&["create", "secrets", "-n", "kube-system"], "yes"),
        (&["get", "secrets", "-n", "kube-system"], "no"),
        (&["list", "secrets", "-A"], "no"),
        (&["escalate", "clusterroles"], "no"),
        (&["bind", "clusterroles/cluster-admin"], "no"),
        (
            &["patch", "clusterrolebindings/kubeadm:cluster-admins"],
            "no",
        ),
        (&["patch", "clusterrolebindings/gantry:operator"], "no"),
        (&["patch", "configmaps/other", "-n", "kube-system"], "no"),
        (&["impersonate", "users"], "no"),
        (&["create", "pods", "--subresource=exec", "-A"], "no"),
        (&["create", "pods", "-n", "kube-system"], "no"),
    ] {
        assert_eq!(
            can(args),
            expected,
            "kubectl auth can-i {args:?} as gantry-operator"
        );
    }
    let takeover = operator(&[
        "create",
        "clusterrolebinding",
        "gantry-takeover",
        "--clusterrole=cluster-admin",
        "--group=gantry:operator",
    ]);
    assert!(!takeover.status.success());
    assert!(
        output_text(&takeover).contains("forbidden"),
        "{}",
        output_text(&takeover)
    );
}
