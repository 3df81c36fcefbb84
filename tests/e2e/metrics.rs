//! The tenant's aggregated API: metrics-server (built here from
//! `sigs.k8s.io/metrics-server`, `toolchain/metrics-server/`) runs on the
//! worker behind the router and is registered as an APIService. The
//! tenant's apiserver reaches it only through the konnectivity tunnel, so
//! `kubectl top` and a HorizontalPodAutoscaler work only if the tunnel does.

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_tests::output_text;
use gantry_tests::service_node::ServiceCluster;

use super::tenant_worker::{tenant_apply, tenant_kubectl, wait_tenant};

const METRICS_SERVER: &str = include_str!("metrics-server.yaml");

/// A Deployment that burns as much CPU as its limit lets it (busybox's
/// shell in a busy loop), and an autoscaler that wants it at half its
/// request: one replica uses about twice the target, so the autoscaler
/// must scale it to its maximum.
const BURNER: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: burner, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: burner}}
  template:
    metadata: {labels: {app: burner}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: gantry.test/web:1
        imagePullPolicy: Never
        args: [sh, -c, 'while :; do :; done']
        resources: {requests: {cpu: 50m}, limits: {cpu: 100m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burner, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burner}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
";

/// metrics-server is installed and its APIService turns Available; then
/// `kubectl top nodes` names the worker with a CPU figure and `kubectl top
/// pods` lists metrics-server's own pod. Returns how long after the apply
/// `kubectl top nodes` first answered.
pub fn kubectl_top_answers_through_the_aggregated_api(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
    worker: &str,
) -> Duration {
    let started = Instant::now();
    tenant_apply(
        cluster,
        kubeconfig,
        dir,
        "metrics-server.yaml",
        METRICS_SERVER,
    );
    wait_tenant(
        cluster,
        kubeconfig,
        "the APIService v1beta1.metrics.k8s.io is Available",
        Duration::from_secs(180),
        &[
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ],
        |out| out == "True",
    );
    let nodes = wait_tenant(
        cluster,
        kubeconfig,
        "kubectl top nodes names the worker",
        Duration::from_secs(120),
        &["top", "nodes", "--no-headers"],
        |out| out.lines().any(|line| line.starts_with(worker)),
    );
    let answered = started.elapsed();
    let row: Vec<&str> = nodes
        .lines()
        .find(|line| line.starts_with(worker))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(
        row.len() >= 3 && row[1].ends_with('m') && row[2].ends_with('%'),
        "kubectl top nodes: a CPU figure in millicores and a share: {nodes}"
    );
    wait_tenant(
        cluster,
        kubeconfig,
        "kubectl top pods lists metrics-server's pod",
        Duration::from_secs(120),
        &["top", "pods", "-n", "kube-system", "--no-headers"],
        |out| out.lines().any(|line| line.starts_with("metrics-server-")),
    );
    answered
}

/// A HorizontalPodAutoscaler scales a CPU-burning Deployment from one
/// replica to its maximum of three, reading the burner's CPU through the
/// metrics API (the controller-manager asks the apiserver, which asks
/// metrics-server through the tunnel). The burner is removed afterwards.
/// Returns how long after the apply the Deployment asked for three.
pub fn an_autoscaler_scales_a_deployment_that_burns_cpu(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
) -> Duration {
    let started = Instant::now();
    let manifest = tenant_apply(cluster, kubeconfig, dir, "burner.yaml", BURNER);
    let scaled = std::panic::catch_unwind(|| {
        wait_tenant(
            cluster,
            kubeconfig,
            "the autoscaler scales the burner to 3 replicas",
            Duration::from_secs(240),
            &[
                "get",
                "deployment",
                "burner",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            |out| out == "3",
        )
    });
    let took = started.elapsed();
    let hpa = tenant_kubectl(cluster, kubeconfig, &["describe", "hpa", "burner"]);
    if let Err(panic) = scaled {
        eprintln!("the autoscaler:\n{}", output_text(&hpa));
        std::panic::resume_unwind(panic);
    }
    let status = tenant_kubectl(
        cluster,
        kubeconfig,
        &[
            "get",
            "hpa",
            "burner",
            "-o",
            "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}",
        ],
    );
    let utilization: u32 = String::from_utf8_lossy(&status.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "the autoscaler reports no CPU utilization: {}",
                output_text(&hpa)
            )
        });
    assert!(
        utilization > 50,
        "the autoscaler scaled at {utilization}% of the request, not above its 50% target"
    );
    eprintln!(
        "TIMING end-to-end: the autoscaler scaled the burner to 3 replicas {:.1} s after it was applied (CPU at {utilization}% of its request)",
        took.as_secs_f64()
    );
    let removed = tenant_kubectl(
        cluster,
        kubeconfig,
        &["delete", "-f", manifest.to_str().unwrap(), "--wait=false"],
    );
    assert!(removed.status.success(), "{}", output_text(&removed));
    took
}
