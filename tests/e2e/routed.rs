//! The tunnel beside the direct path, in one run (an opt-in benchmark:
//! docs/benchmarks.md, "kubectl and a webhook, through the tunnel and
//! direct"). One tenant, one worker on a network the service node routes
//! to: `kubectl exec … true` and one webhook call are timed through the
//! tunnel, then the tunnel is turned off (`konnectivity.enabled: false`,
//! the apiserver rolls) and the service node routes the tenant's Service
//! and pod networks to the worker, as a platform that routes to every
//! tenant network would, and the same calls are timed direct. Before the
//! routes are added, the webhook and metrics-server's API (installed while
//! the tunnel was on) must fail: what every tenant saw before the tunnel.

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_tests::output_text;
use gantry_tests::service_node::ServiceCluster;
use gantry_tests::worker::Worker;

use super::tenant_worker::{TENANT_POD_CIDR, tenant_kubectl};

/// The tenant's Service network: apart from the service cluster's
/// (10.96.0.0/12), so that the service node can route it to the worker.
pub const TENANT_SERVICE_CIDR: &str = "198.19.136.0/22";

/// Each call's whole-process time (kubectl included), per round.
#[derive(Debug, Default)]
pub struct Latencies {
    /// `kubectl get --raw /readyz`: kubectl and the apiserver alone, no dial.
    pub readyz: Vec<Duration>,
    /// `kubectl exec deployment/web -- true`: a dial to the kubelet.
    pub exec: Vec<Duration>,
    /// `kubectl create --dry-run=server` of a ConfigMap the webhook checks:
    /// a dial to the webhook's Service.
    pub webhook: Vec<Duration>,
}

impl Latencies {
    pub fn line(&self) -> String {
        format!(
            "readyz median {:.1} ms; exec median {:.1} ms (p90 {:.1}); webhook median {:.1} ms (p90 {:.1})",
            ms(percentile(&self.readyz, 50)),
            ms(percentile(&self.exec, 50)),
            ms(percentile(&self.exec, 90)),
            ms(percentile(&self.webhook, 50)),
            ms(percentile(&self.webhook, 90)),
        )
    }
}

pub fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() - 1) * p / 100]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `rounds` rounds of the three calls, each of which must succeed.
pub fn time_the_calls(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
    rounds: usize,
) -> Latencies {
    let checked = dir.join("checked-configmap.yaml");
    std::fs::write(
        &checked,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: timed\n  labels: {gantry.test/checked: \"true\"}\n",
    )
    .unwrap();
    let timed = |args: &[&str]| {
        let started = Instant::now();
        let output = tenant_kubectl(cluster, kubeconfig, args);
        let took = started.elapsed();
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            output_text(&output)
        );
        took
    };
    let mut seen = Latencies::default();
    for _ in 0..rounds {
        seen.readyz.push(timed(&["get", "--raw", "/readyz"]));
        seen.exec.push(timed(&[
            "exec",
            "deployment/web",
            "--",
            "/bin/busybox",
            "true",
        ]));
        seen.webhook.push(timed(&[
            "create",
            "--dry-run=server",
            "-f",
            checked.to_str().unwrap(),
        ]));
    }
    seen
}

/// Turns the tunnel off (the apiserver rolls without its server) and
/// routes the tenant's Service and pod networks from the service node to
/// the worker, whose kube-proxy takes the Service addresses from there.
/// Between the two, the webhook and metrics-server's API must fail: that is
/// the tunnel-less code on a routed worker. Waits until exec answers on the
/// direct path.
pub fn switch_to_the_routed_path(
    cluster: &ServiceCluster,
    worker: &Worker,
    tenant: &str,
    kubeconfig: &Path,
    dir: &Path,
) {
    cluster.helm_upgrade_tenant(tenant, "konnectivity.enabled=false");
    let namespace = format!("tcp-{tenant}");
    cluster.wait_for_within(
        "the apiservers run without the tunnel's server",
        Duration::from_secs(300),
        &[
            "-n",
            &namespace,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=kube-apiserver",
            "-o",
            "jsonpath={range .items[*]}{.status.phase}:{.spec.containers[*].name};{end}",
        ],
        |out| {
            !out.is_empty()
                && out
                    .split(';')
                    .filter(|p| !p.is_empty())
                    .all(|p| p == "Running:kube-apiserver")
        },
    );
    let failed = what_fails_without_the_tunnel(cluster, kubeconfig, dir);
    for line in &failed {
        eprintln!("NOTE routed: without the tunnel and without routes: {line}");
    }
    for network in [TENANT_SERVICE_CIDR, TENANT_POD_CIDR] {
        gantry_tests::run_ok(cluster.node.command("ip").args([
            "route",
            "replace",
            network,
            "via",
            &worker.host.address,
        ]));
    }
    let answered = gantry_tests::wait_until(Duration::from_secs(120), || {
        let exec = tenant_kubectl(
            cluster,
            kubeconfig,
            &["exec", "deployment/web", "--", "/bin/busybox", "true"],
        );
        let readyz = tenant_kubectl(cluster, kubeconfig, &["get", "--raw", "/readyz"]);
        exec.status.success() && readyz.status.success()
    });
    assert!(answered, "exec never answered on the direct path");
}

/// The tunnel off, the worker routable, but no route to the tenant's
/// Service network (the code as it was before the tunnel, on a routed
/// worker): a webhook call and metrics-server's API fail, each with the
/// apiserver's own dial error. Returns those errors, one line each.
fn what_fails_without_the_tunnel(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
) -> Vec<String> {
    let checked = dir.join("checked-configmap.yaml");
    let checked = checked.to_str().unwrap();
    let mut seen = Vec::new();
    for (what, args) in [
        ("the webhook", ["create", "--dry-run=server", "-f", checked]),
        (
            "metrics-server's API",
            ["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", "-v=0"],
        ),
    ] {
        let failed = tenant_kubectl(cluster, kubeconfig, &args);
        let text = output_text(&failed);
        assert!(
            !failed.status.success(),
            "{what} answered without the tunnel or a route: {text}"
        );
        seen.push(format!(
            "{what}: {}",
            text.trim().lines().last().unwrap_or_default()
        ));
    }
    seen
}
