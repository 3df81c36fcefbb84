//! The tenant's later life in the end-to-end test: losing masters, and
//! deletion.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gantry_tests::service_node::ServiceCluster;
use gantry_tests::{output_text, tool};

/// `kubectl get --raw /readyz` through the tenant's kubeconfig, every 250 ms
/// from another thread, until stopped: what a user of the tenant sees.
pub struct ReadyzWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ReadyzSeen>,
}

#[derive(Debug)]
pub struct ReadyzSeen {
    pub checks: u32,
    pub failures: u32,
    /// The longest run of failures, from the first failed check to the next good one.
    pub longest_outage: Duration,
}

impl ReadyzWatch {
    pub fn start(cluster: &ServiceCluster, kubeconfig: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut command = cluster.plane.node.command(tool("kubectl"));
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["--request-timeout=2s", "get", "--raw", "/readyz"]);
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = ReadyzSeen {
                checks: 0,
                failures: 0,
                longest_outage: Duration::ZERO,
            };
            let mut down_since: Option<Instant> = None;
            while !stopped.load(Ordering::Relaxed) {
                let ok = std::process::Command::new(&program)
                    .args(&args)
                    .output()
                    .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"ok");
                seen.checks += 1;
                match (ok, down_since) {
                    (false, None) => down_since = Some(Instant::now()),
                    (true, Some(since)) => {
                        seen.longest_outage = seen.longest_outage.max(since.elapsed());
                        down_since = None;
                    }
                    _ => {}
                }
                seen.failures += u32::from(!ok);
                std::thread::sleep(Duration::from_millis(250));
            }
            if let Some(since) = down_since {
                seen.longest_outage = seen.longest_outage.max(since.elapsed());
            }
            seen
        });
        ReadyzWatch { stop, thread }
    }

    pub fn stop(self) -> ReadyzSeen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the readyz thread")
    }
}

/// The masters of the tenant, as `name phase ready` lines.
fn masters(cluster: &ServiceCluster, namespace: &str) -> String {
    cluster.kubectl_ok(&[
        "-n",
        namespace,
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} \
         {.status.containerStatuses[0].ready}{\"\\n\"}{end}",
    ])
}

/// One apiserver pod and one etcd member's pod are deleted: the tenant keeps
/// serving through the other apiserver and the etcd quorum, and the
/// Deployment and StatefulSet that gantry applied bring both back.
pub fn losing_an_apiserver_and_an_etcd_member_keeps_it_serving(
    cluster: &ServiceCluster,
    namespace: &str,
    kubeconfig: &Path,
) -> ReadyzSeen {
    let apiserver = cluster.kubectl_ok(&[
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=kube-apiserver",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let watch = ReadyzWatch::start(cluster, kubeconfig);
    std::thread::sleep(Duration::from_secs(2));
    cluster.kubectl_ok(&[
        "-n",
        namespace,
        "delete",
        "pod",
        apiserver.trim(),
        "etcd-0",
        "--wait=false",
    ]);
    cluster.wait_for(
        "the deleted masters are back and ready",
        &[
            "-n",
            namespace,
            "get",
            "pods",
            // Not the backup Jobs' finished pods.
            "--field-selector=status.phase!=Succeeded",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].ready} {end}",
        ],
        |out| {
            let pods: Vec<&str> = out.split_whitespace().collect();
            pods.len() == 9
                && pods.iter().all(|p| p.ends_with("=true"))
                && !pods
                    .iter()
                    .any(|p| p.starts_with(&format!("{}=", apiserver.trim())))
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    let seen = watch.stop();
    assert!(
        seen.checks > 0 && seen.failures < seen.checks,
        "{seen:?}\n{}",
        masters(cluster, namespace)
    );
    seen
}

/// `helm upgrade` to `version` (one minor up): the operator rolls the
/// masters in kubeadm's order while the tenant keeps serving, and
/// `status.version` moves once the new minor runs everywhere.
pub fn a_minor_upgrade_rolls_while_the_tenant_serves(
    cluster: &ServiceCluster,
    tenant: &str,
    version: &str,
    kubeconfig: &Path,
) -> (Duration, ReadyzSeen) {
    let watch = ReadyzWatch::start(cluster, kubeconfig);
    let started = Instant::now();
    cluster.helm_upgrade_tenant(tenant, &format!("version={version}"));
    cluster.wait_for_within(
        "the tenant runs the new minor and is Ready",
        Duration::from_secs(600),
        &[
            "get",
            "tenantcontrolplane",
            tenant,
            "-o",
            "jsonpath={.status.version} {.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out == format!("{version} True"),
    );
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    (took, watch.stop())
}

/// `helm uninstall`: the finalizer runs, the tenant's namespace goes, and the
/// tenant's endpoint no longer answers.
pub fn helm_uninstall_removes_the_tenant(
    cluster: &ServiceCluster,
    tenant: &str,
    namespace: &str,
    kubeconfig: &Path,
) {
    let uninstall = cluster.plane.helm(&["uninstall", tenant, "--wait"]);
    assert!(
        uninstall.status.success(),
        "helm uninstall: {}",
        output_text(&uninstall)
    );
    cluster.wait_for(
        "the tenant's namespace is gone",
        &["get", "namespaces", "-o", "name"],
        |out| {
            !out.lines()
                .any(|line| line == format!("namespace/{namespace}"))
        },
    );
    cluster.wait_for(
        "the TenantControlPlane is gone",
        &["get", "tenantcontrolplanes", "-o", "name"],
        |out| out.is_empty(),
    );
    let readyz = cluster
        .plane
        .node
        .command(tool("kubectl"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["--request-timeout=5s", "get", "--raw", "/readyz"])
        .output()
        .unwrap();
    assert!(
        !readyz.status.success(),
        "the deleted tenant still answers: {}",
        output_text(&readyz)
    );
}
