//! The operator chart's ValidatingAdmissionPolicies on the real apiserver:
//! what a TenantControlPlane may ask for, and where the operator's
//! ServiceAccount may write (its RBAC allows more; the policy refuses it).

use std::path::Path;
use std::process::Output;

use gantry_tests::control_plane::ControlPlane;
use gantry_tests::output_text;

/// The operator's user, as the chart installs it (release `gantry` in
/// `gantry-system`).
const OPERATOR: &str = "--as=system:serviceaccount:gantry-system:gantry";

/// `kubectl apply --dry-run=server` of `manifest`, as the admin (or as the
/// operator with [`OPERATOR`] in `as_user`).
fn apply(plane: &ControlPlane, dir: &Path, manifest: &str, as_user: &[&str]) -> Output {
    let file = dir.join("admission-probe.yaml");
    std::fs::write(&file, manifest).unwrap();
    let mut args = vec!["apply", "--dry-run=server", "-f", file.to_str().unwrap()];
    args.extend(as_user);
    plane.kubectl("admin.conf", &args)
}

fn assert_refused(output: &Output, what: &str, message: &str) {
    let text = output_text(output);
    assert!(!output.status.success(), "{what} was accepted");
    assert!(text.contains(message), "{what}: {text}");
}

fn assert_accepted(output: &Output, what: &str) {
    assert!(output.status.success(), "{what}: {}", output_text(output));
}

fn tenant(spec_lines: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: bounded\n\
         spec:\n  version: \"1.37\"\n{spec_lines}"
    )
}

pub fn the_operator_chart_bounds_tenants_and_confines_the_operator(
    plane: &ControlPlane,
    dir: &Path,
) {
    // The CRD is in place already (the extraArgs check applied it). A
    // tenant made before the policy, outside its bounds:
    let older = dir.join("older-tenant.yaml");
    std::fs::write(
        &older,
        "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: older\n\
         spec:\n  version: \"1.37\"\n  imageRepository: mirror.example.com/k8s\n",
    )
    .unwrap();
    plane.kubectl_ok("admin.conf", &["apply", "-f", older.to_str().unwrap()]);
    let install = plane.helm_install_operator_chart(&["--set", "crds.install=false"]);
    assert_accepted(&install, "helm install of the operator chart");

    // The apiserver loads new policies in the background: wait for the
    // first refusal, then every check is immediate.
    let off_list = tenant("  imageRepository: evil.example.com/k8s\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while apply(plane, dir, &off_list, &[]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tenant-bounds policy refused nothing within 60 s: {}",
            plane.kubectl_ok(
                "admin.conf",
                &["get", "validatingadmissionpolicies", "-o", "yaml"]
            )
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_accepted(
        &apply(plane, dir, &tenant(""), &[]),
        "a tenant within bounds",
    );
    for (what, spec, message) in [
        (
            "an off-list registry",
            "  imageRepository: evil.example.com/k8s\n",
            "spec.imageRepository: evil.example.com/k8s is not an allowed registry \
             (allowed: registry.k8s.io)",
        ),
        (
            "a registry that only starts like an allowed one",
            "  imageRepository: registry.k8s.io.evil.example.com\n",
            "is not an allowed registry",
        ),
        (
            "a node-critical priority class",
            "  priorityClassName: system-node-critical\n",
            "spec.priorityClassName: system-node-critical is not an allowed priority class \
             (allowed: none)",
        ),
        (
            "a toleration of every taint",
            "  tolerations:\n    - operator: Exists\n",
            "spec.tolerations: a toleration of every taint",
        ),
        (
            "a toleration of the control-plane taint",
            "  tolerations:\n    - key: node-role.kubernetes.io/control-plane\n      \
             operator: Exists\n      effect: NoSchedule\n",
            "spec.tolerations:",
        ),
    ] {
        assert_refused(&apply(plane, dir, &tenant(spec), &[]), what, message);
    }
    assert_accepted(
        &apply(
            plane,
            dir,
            &tenant("  imageRepository: registry.k8s.io/mirror\n"),
            &[],
        ),
        "a path below an allowed registry",
    );

    // The older tenant: updates that keep its spec (a finalizer, a label)
    // pass, so it can still be deleted; a change of its spec is judged.
    plane.kubectl_ok("admin.conf", &["label", "tcp", "older", "team=a"]);
    let change = plane.kubectl(
        "admin.conf",
        &[
            "patch",
            "tcp",
            "older",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"1.36"}}"#,
        ],
    );
    assert_refused(
        &change,
        "a spec change of the older tenant",
        "is not an allowed registry",
    );
    plane.kubectl_ok("admin.conf", &["delete", "tcp", "older"]);

    the_operator_writes_only_in_gantry_namespaces(plane, dir);
}

fn the_operator_writes_only_in_gantry_namespaces(plane: &ControlPlane, dir: &Path) {
    let secret = |namespace: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: probe\n  namespace: {namespace}\n\
             stringData:\n  a: b\n"
        )
    };
    // Its RBAC allows Secrets everywhere; the policy keeps it to gantry's.
    for namespace in ["default", "kube-system", "gantry-system"] {
        assert_refused(
            &apply(plane, dir, &secret(namespace), &[OPERATOR]),
            &format!("the operator writing a Secret in {namespace}"),
            &format!(
                "the gantry operator writes only in namespaces labelled \
                 app.kubernetes.io/managed-by=gantry, not in {namespace}"
            ),
        );
    }
    let tenant_namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tcp-probe\n  \
                            labels:\n    app.kubernetes.io/managed-by: gantry\n    \
                            pod-security.kubernetes.io/enforce: restricted\n";
    assert_refused(
        &apply(
            plane,
            dir,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tcp-privileged\n  labels:\n    \
             app.kubernetes.io/managed-by: gantry\n    pod-security.kubernetes.io/enforce: privileged\n",
            &[OPERATOR],
        ),
        "the operator making a namespace that allows privileged pods",
        "the gantry operator makes only namespaces that enforce Pod Security restricted",
    );
    plane.kubectl_ok("admin.conf", &["create", "namespace", "tcp-probe"]);
    assert_refused(
        &apply(plane, dir, tenant_namespace, &[OPERATOR]),
        "the operator labelling a namespace it did not make",
        "the gantry operator changes only its own namespaces, not tcp-probe",
    );
    plane.kubectl_ok(
        "admin.conf",
        &[
            "label",
            "namespace",
            "tcp-probe",
            "app.kubernetes.io/managed-by=gantry",
        ],
    );
    assert_accepted(
        &apply(plane, dir, &secret("tcp-probe"), &[OPERATOR]),
        "the operator writing a Secret in a gantry namespace",
    );
    assert_refused(
        &apply(
            plane,
            dir,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: probe\n  namespace: tcp-probe\n\
             spec:\n  type: ExternalName\n  externalName: internal.example.com\n",
            &[OPERATOR],
        ),
        // (externalIPs: the service cluster's DenyServiceExternalIPs may refuse
        // them first, so the policy's own refusal is shown with ExternalName.)
        "the operator rendering an ExternalName Service",
        "no Service with externalIPs or of type ExternalName",
    );
    let deployment = |pod_spec: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: probe\n  namespace: tcp-probe\n\
             spec:\n  selector:\n    matchLabels: {{app: probe}}\n  template:\n    metadata:\n      \
             labels: {{app: probe}}\n    spec:\n{pod_spec}      containers:\n        - name: c\n          \
             image: registry.k8s.io/pause:3.10\n"
        )
    };
    assert_refused(
        &apply(
            plane,
            dir,
            &deployment(
                "      serviceAccountName: powerful\n      automountServiceAccountToken: false\n",
            ),
            &[OPERATOR],
        ),
        "the operator rendering a pod with a ServiceAccount",
        "the gantry operator renders pods without a ServiceAccount token",
    );
    assert_refused(
        &apply(plane, dir, &deployment(""), &[OPERATOR]),
        "the operator rendering a pod that mounts a token",
        "without a ServiceAccount token",
    );
    assert_accepted(
        &apply(
            plane,
            dir,
            &deployment("      automountServiceAccountToken: false\n"),
            &[OPERATOR],
        ),
        "the operator rendering a pod as gantry renders them",
    );
    // What RBAC never granted stays forbidden.
    let binding = plane.kubectl(
        "admin.conf",
        &[
            "create",
            "clusterrolebinding",
            "escalate",
            "--clusterrole=cluster-admin",
            "--user=someone",
            "--dry-run=server",
            OPERATOR,
        ],
    );
    assert_refused(&binding, "the operator binding cluster-admin", "forbidden");
    plane.kubectl_ok(
        "admin.conf",
        &["delete", "namespace", "tcp-probe", "--wait=false"],
    );
}
