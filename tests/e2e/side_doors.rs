//! The side doors a tenant admin could aim its apiserver through
//! (docs/security.md, "Network policy"), tried for real: with the tunnel,
//! every `cluster` dial leaves from the tenant's own node, so a node proxy
//! or an ExternalName Service aimed into the service cluster reaches
//! nothing there.
//!
//! - Node proxy with an explicit port (`/api/v1/nodes/http:NAME:PORT/proxy`,
//!   which skips TLS verification) at a made-up Node whose InternalIP is
//!   tenant-a's own etcd pod (a service-cluster pod), and at one whose
//!   InternalIP is the service cluster's ClusterIP of tenant-a's
//!   kube-apiserver Service.
//! - An admission webhook whose Service is an `ExternalName` naming that
//!   Service in the service cluster's DNS.
//!
//! Each call must fail, and no answer of the target may come back.

use std::path::Path;

use gantry_tests::output_text;
use gantry_tests::service_node::ServiceCluster;

use super::tenant_worker::{tenant_apply, tenant_kubectl};

/// A Node of the tenant admin's making whose InternalIP is `address`.
fn decoy_node(name: &str, address: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nstatus:\n  addresses: [{{type: InternalIP, address: \"{address}\"}}]\n  daemonEndpoints: {{kubeletEndpoint: {{Port: 10250}}}}\n"
    )
}

const EXTERNAL_NAME_WEBHOOK: &str = "apiVersion: v1
kind: Service
metadata: {name: decoy, namespace: default}
spec: {type: ExternalName, externalName: kube-apiserver.tcp-tenant-a.svc.cluster.local}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: decoy}
webhooks:
- name: decoy.gantry.test
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  objectSelector: {matchLabels: {gantry.test/decoy: \"true\"}}
  rules: [{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  clientConfig:
    service: {name: decoy, namespace: default, port: 6443, path: /version}
";

/// Node proxy and an ExternalName webhook aimed into the service cluster
/// fail; returns the errors seen, one line each, for the log.
pub fn aimed_into_the_service_cluster_they_reach_nothing(
    cluster: &ServiceCluster,
    namespace: &str,
    kubeconfig: &Path,
    dir: &Path,
) -> Vec<String> {
    let etcd_pod = cluster.kubectl_ok(&[
        "-n",
        namespace,
        "get",
        "pod",
        "etcd-0",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    let service_ip = cluster.kubectl_ok(&[
        "-n",
        namespace,
        "get",
        "service",
        "kube-apiserver",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let mut seen = Vec::new();
    for (node, address, path) in [
        (
            "decoy-etcd",
            etcd_pod.trim(),
            "http:decoy-etcd:2379/proxy/version",
        ),
        (
            "decoy-service",
            service_ip.trim(),
            "https:decoy-service:6443/proxy/version",
        ),
    ] {
        tenant_apply(
            cluster,
            kubeconfig,
            dir,
            &format!("{node}.yaml"),
            &decoy_node(node, address),
        );
        let proxied = tenant_kubectl(
            cluster,
            kubeconfig,
            &["get", "--raw", &format!("/api/v1/nodes/{path}")],
        );
        let text = output_text(&proxied);
        assert!(
            !proxied.status.success(),
            "node proxy to {address} (in the service cluster) answered: {text}"
        );
        // etcd's /version answers {"etcdserver":…}; an apiserver's, {"major":…}.
        assert!(
            !text.contains("etcdserver") && !text.contains("gitVersion"),
            "node proxy to {address} brought an answer back: {text}"
        );
        seen.push(format!("node proxy to {address}: {}", last_line(&text)));
        let removed = tenant_kubectl(cluster, kubeconfig, &["delete", "node", node]);
        assert!(removed.status.success(), "{}", output_text(&removed));
    }

    let registration = tenant_apply(
        cluster,
        kubeconfig,
        dir,
        "decoy-webhook.yaml",
        EXTERNAL_NAME_WEBHOOK,
    );
    let object = dir.join("decoy-configmap.yaml");
    std::fs::write(
        &object,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: decoy\n  labels: {gantry.test/decoy: \"true\"}\n",
    )
    .unwrap();
    let created = tenant_kubectl(
        cluster,
        kubeconfig,
        &["create", "-f", object.to_str().unwrap()],
    );
    let text = output_text(&created);
    assert!(
        !created.status.success(),
        "a webhook aimed at the service cluster's DNS admitted the object: {text}"
    );
    assert!(
        text.contains("failed calling webhook \"decoy.gantry.test\""),
        "the decoy webhook was not called as expected: {text}"
    );
    seen.push(format!("ExternalName webhook: {}", last_line(&text)));
    let removed = tenant_kubectl(
        cluster,
        kubeconfig,
        &["delete", "-f", registration.to_str().unwrap()],
    );
    assert!(removed.status.success(), "{}", output_text(&removed));
    seen
}

fn last_line(text: &str) -> &str {
    text.trim().lines().last().unwrap_or_default()
}
