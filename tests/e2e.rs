//! Opt-in end-to-end suite against a REAL service cluster (kind, k3d or a
//! real one). Nothing here runs unless asked for, because no registry ships
//! a Kubernetes API server for this machine:
//!
//! ```sh
//! GANTRY_E2E_KUBECONFIG=~/.kube/config cargo test -p gantry-tests --test e2e -- --ignored
//! ```
//!
//! The cluster must already run the gantry operator (it reaches each tenant's
//! apiserver by its in-cluster Service name, so it has to run inside), and its
//! nodes must be able to pull registry.k8s.io images. The tenant's apiserver
//! is exposed as a NodePort, so the machine running the test must reach the
//! nodes' InternalIP (true for kind and k3d on Linux).
//!
//! The test: create a tenant, wait for Ready, `kubectl get --raw /readyz`
//! through its `admin.conf`, check `cluster-info` is signed for the join
//! token, delete the tenant and wait for its namespace to go.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use gantry_tests::{gantry_ok, run_ok, tool, wait_until};

const TENANT: &str = "gantry-e2e";

fn kubeconfig() -> String {
    let set = std::env::var("GANTRY_E2E_KUBECONFIG")
        .ok()
        .filter(|path| !path.is_empty());
    set.unwrap_or_else(|| {
        panic!(
            "GANTRY_E2E_KUBECONFIG is not set: point it at a service cluster's kubeconfig \
             (with the gantry operator installed) to run the end-to-end suite"
        )
    })
}

fn kubectl(kubeconfig: &str) -> Command {
    let mut command = Command::new(tool("kubectl"));
    command.env("KUBECONFIG", kubeconfig);
    command
}

fn secret_field(kubeconfig: &str, namespace: &str, secret: &str, key: &str) -> Vec<u8> {
    let encoded = run_ok(kubectl(kubeconfig).args([
        "-n",
        namespace,
        "get",
        "secret",
        secret,
        "-o",
        &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
    ]));
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .expect("base64 Secret data")
}

#[test]
#[ignore = "opt-in: needs GANTRY_E2E_KUBECONFIG pointing at a real service cluster running gantry"]
fn a_tenant_becomes_ready_serves_readyz_publishes_signed_cluster_info_and_is_deleted() {
    let kubeconfig = kubeconfig();
    let namespace = format!("tcp-{TENANT}");
    let work = tempfile::tempdir().unwrap();

    // The operator's chart installs the CRD; install it only if it is missing
    // (applying over Helm's copy would conflict with Helm's field ownership).
    let crd_installed = kubectl(&kubeconfig)
        .args(["get", "crd", "tenantcontrolplanes.gantry.dev"])
        .output()
        .unwrap()
        .status
        .success();
    if !crd_installed {
        let crd = gantry_ok(&["crd"]);
        std::fs::write(work.path().join("crd.yaml"), crd).unwrap();
        run_ok(
            kubectl(&kubeconfig)
                .args(["apply", "--server-side", "-f"])
                .arg(work.path().join("crd.yaml")),
        );
    }

    let manifest = format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {TENANT}\n\
         spec:\n  version: \"1.37.2\"\n  etcd:\n    replicas: 1\n  apiServer:\n    replicas: 1\n\
         \x20   service:\n      type: NodePort\n"
    );
    let manifest_path = work.path().join("tenant.yaml");
    std::fs::write(&manifest_path, manifest).unwrap();
    run_ok(
        kubectl(&kubeconfig)
            .args(["apply", "-f"])
            .arg(&manifest_path),
    );

    let ready = wait_until(Duration::from_secs(600), || {
        kubectl(&kubeconfig)
            .args([
                "get",
                "tenantcontrolplane",
                TENANT,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .output()
            .is_ok_and(|o| o.stdout == b"True")
    });
    let status =
        run_ok(kubectl(&kubeconfig).args(["get", "tenantcontrolplane", TENANT, "-o", "yaml"]));
    assert!(
        ready,
        "{TENANT} did not become Ready within 10 minutes:\n{status}"
    );

    // The tenant's apiserver answers through admin.conf.
    let admin = secret_field(&kubeconfig, &namespace, "admin-kubeconfig", "admin.conf");
    let admin_path = work.path().join("admin.conf");
    std::fs::write(&admin_path, admin).unwrap();
    let readyz = run_ok(kubectl(admin_path.to_str().unwrap()).args(["get", "--raw", "/readyz"]));
    assert_eq!(readyz.trim(), "ok");

    // cluster-info is signed for the join token of Secret `join`.
    let token = String::from_utf8(secret_field(&kubeconfig, &namespace, "join", "token")).unwrap();
    let (id, secret) = token.split_once('.').expect("ID.SECRET");
    let published = |key: &str| {
        run_ok(kubectl(admin_path.to_str().unwrap()).args([
            "-n",
            "kube-public",
            "get",
            "configmap",
            "cluster-info",
            "-o",
            &format!("jsonpath={{.data.{key}}}"),
        ]))
    };
    let cluster_info = published("kubeconfig");
    let signature = published(&format!("jws-kubeconfig-{id}"));
    assert!(
        gantry_pki::jws::detached_signature_is_valid(
            &signature,
            cluster_info.as_bytes(),
            id,
            secret
        ),
        "cluster-info is not signed for the join token {id}"
    );

    // Deletion removes the namespace, then the tenant.
    run_ok(kubectl(&kubeconfig).args(["delete", "tenantcontrolplane", TENANT, "--wait=false"]));
    let gone = wait_until(Duration::from_secs(300), || {
        let output = kubectl(&kubeconfig)
            .args(["get", "namespace", &namespace])
            .output()
            .unwrap();
        !output.status.success()
    });
    assert!(
        gone,
        "namespace {namespace} still exists 5 minutes after deletion"
    );
    let tenant_gone = wait_until(Duration::from_secs(60), || {
        !kubectl(&kubeconfig)
            .args(["get", "tenantcontrolplane", TENANT])
            .output()
            .unwrap()
            .status
            .success()
    });
    assert!(tenant_gone, "the finalizer was not removed");
}
