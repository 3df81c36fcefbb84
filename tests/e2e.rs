//! The product, end to end, on real components only (docs/operations.md):
//!
//! 1. A service cluster of the test's own (`support/service_node.rs`): a
//!    gantry-rendered control plane of the newest minor, and one node with
//!    containerd and the real kubelet, running kube-proxy and CoreDNS as pods.
//! 2. `helm install gantry chart/gantry`: the operator runs as the chart's
//!    Deployment, 2 replicas with leader election, from gantry's image as
//!    its Dockerfile ships it (built here; `support/images.rs`).
//! 3. `helm install tenant-a chart/tenant` (one minor below the newest) with
//!    a NodePort Service: the
//!    operator makes the tenant's masters, which run as pods on the node from
//!    gantry's manifests, unmodified, from images built here and named as
//!    gantry renders them. `kubectl get tenantcontrolplanes` shows it Ready,
//!    and the tenant answers through the kubeconfig `gantry kubeconfig`
//!    prints, at the node's address and the Service's NodePort.
//! 4. A worker VM (a node of the test's own, `support/worker.rs`), with the
//!    kubelet and kubeadm of that minor, joins with the user-data of `gantry
//!    cloud-init tenant-a --preinstalled`, and its Node turns Ready
//!    (`e2e/tenant_worker.rs` says what stands in for the VM image and for
//!    cloud-init). The worker sits behind a "router" (nothing in the service
//!    cluster can connect to it, as for a VM on an OpenStack tenant network
//!    without a floating IP): the tenant's apiserver reaches it only through
//!    the konnectivity tunnel, whose agent on the worker connects out. A web
//!    server's Deployment and Service run in the tenant, and an admission
//!    webhook served by a pod on the worker refuses a labelled object with
//!    its own message and admits another.
//! 5. `helm upgrade` to the newest minor: the masters roll while a `/readyz`
//!    loop sees no outage longer than [`UPGRADE_OUTAGE_BOUND`], and
//!    `status.version` moves; then `kubectl logs` and the webhook work again
//!    through the tunnel.
//! 6. Through the tunnel: `kubectl port-forward` brings 10 MiB and more out
//!    intact; metrics-server (built here) is registered as an APIService,
//!    `kubectl top nodes` and `kubectl top pods` answer, and a
//!    HorizontalPodAutoscaler scales a Deployment that burns CPU from one
//!    replica to three (`e2e/metrics.rs`). Aimed into the service cluster
//!    (node proxy to its pod and Service addresses, a webhook on an
//!    ExternalName of its DNS), the same paths reach nothing
//!    (`e2e/side_doors.rs`). `gantry get` and `gantry join` show the tenant.
//!    Backups (`e2e/backup.rs`): the operator's default store is versitygw
//!    (built here) on the service cluster's network. 10,000 ConfigMaps and
//!    20 Secrets are written; the tenant's schedule is set to the next
//!    minute but one, and its CronJob's snapshot shows in the status. Every
//!    etcd volume is wiped and the members restart empty; `kubectl annotate
//!    tcp tenant-a gantry.dev/restore-from=<snapshot>` brings every object
//!    back, Secrets decrypt, the worker is Ready without a new join, and the
//!    web Deployment runs; a Job from the backup CronJob (the upkeep
//!    runbook) writes a new snapshot. Then a new tenant, in its own namespace, recovers
//!    that snapshot from the bucket and the platform's private key alone
//!    (`gantry backup fetch`, `gantry backup secrets`, a TenantControlPlane
//!    with `gantry.dev/restore-from: tenant-a/<snapshot>`), and is deleted.
//! 7. At rest for [`AT_REST`]: the service apiserver's audit log shows no
//!    write by the operator's ServiceAccount; the masters' memory and CPU
//!    are printed (`e2e/at_rest.rs`).
//! 8. One apiserver pod and one etcd member's pod are deleted: the tenant
//!    keeps serving (a `/readyz` loop says for how long it did not), and
//!    both come back.
//! 9. A single-replica tenant-b is installed beside it, turns Ready, and
//!    its masters' memory and CPU at rest are printed; it is uninstalled.
//! 10. `helm uninstall tenant-a`: the finalizer runs, namespace
//!     `tcp-tenant-a` goes, and the tenant's endpoint stops answering.
//!
//! Run with `--nocapture` for the timings (docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_tests::control_plane::one_at_a_time;
use gantry_tests::images::{gantry_image, gantry_image_name, shipped_image, tenant_images};
use gantry_tests::service_node::ServiceCluster;
use gantry_tests::{output_text, repo_root, tool};

#[path = "e2e/at_rest.rs"]
mod at_rest;
#[path = "e2e/backup.rs"]
mod backup;
#[path = "e2e/metrics.rs"]
mod metrics;
#[path = "e2e/routed.rs"]
mod routed;
#[path = "e2e/side_doors.rs"]
mod side_doors;
#[path = "e2e/tenant_life.rs"]
mod tenant_life;
#[path = "e2e/tenant_worker.rs"]
mod tenant_worker;
use tenant_worker::{
    TENANT_POD_CIDR, a_worker_joins_with_gantrys_cloud_init, a_workload_serves_through_its_service,
    gantry_get_and_join_show_the_tenant, gantry_on_service_cluster,
};

const TENANT: &str = "tenant-a";
const NAMESPACE: &str = "tcp-tenant-a";
/// The longest the tenant may stop answering `/readyz` during an upgrade:
/// a client retrying for this long sees no failure.
const UPGRADE_OUTAGE_BOUND: std::time::Duration = std::time::Duration::from_secs(10);
/// A backup schedule that does not fire while the test runs (the backup
/// step sets one that does, once).
const FAR_AWAY: &str = "0 0 1 1 *";
/// How long a settled tenant is watched for writes by the operator.
const AT_REST: Duration = Duration::from_secs(120);

#[test]
fn a_tenant_installed_with_helm_runs_its_masters_as_pods_and_serves() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    // The tenant starts one minor below the newest and is upgraded to it.
    let version = gantry_renderer::versions::newest().to_string();
    let previous = gantry_tests::control_plane::supported_versions()
        .into_iter()
        .rfind(|v| *v != version)
        .expect("two supported minors");
    let gantry = gantry_image(tmp.path());
    let mut images = vec![gantry.clone()];
    images.extend(tenant_images(&previous));
    images.extend(tenant_images(&version));
    let mut cluster = ServiceCluster::start(tmp.path(), 140, &images);
    // The operator's default backup store: every tenant is backed up there.
    let store = backup::start_object_store(&cluster, tmp.path());
    let backup_values = backup::operator_backup_values(&cluster, &store, tmp.path());

    install_operator(&cluster, &backup_values);
    let installed = Instant::now();
    cluster.add_volumes("etcd", 3, "10Gi");
    // The worker is a network namespace of the test's, where
    // nf_conntrack_max is read-only: kube-proxy before 1.37 fails trying to
    // raise it, so it is told to leave it (`spec.kubeProxy`, as for a
    // node in a container).
    cluster.helm_install_tenant(
        TENANT,
        &format!(
            "version: \"{previous}\"\napiServer:\n  service:\n    type: NodePort\n\
             networking:\n  podCIDR: {TENANT_POD_CIDR}\n\
             kubeProxy:\n  conntrackMaxPerCore: 0\n\
             backup:\n  schedule: \"{FAR_AWAY}\"\n"
        ),
    );
    wait_ready(&cluster);
    eprintln!(
        "TIMING end-to-end {previous}: helm install {TENANT} to Ready {:.1} s (HA: 3 etcd, 2 apiservers)",
        installed.elapsed().as_secs_f64()
    );
    eprintln!(
        "TIMING end-to-end {previous}: {}",
        at_rest::time_to_ready_breakdown(&cluster, TENANT, NAMESPACE)
    );
    let table = cluster.kubectl_ok(&["get", "tenantcontrolplanes"]);
    eprintln!("{table}");
    masters_run_as_pods_from_gantrys_manifests(&cluster, &previous);
    let kubeconfig = the_tenant_serves_through_its_kubeconfig(&cluster, tmp.path());

    let joining = Instant::now();
    let worker = a_worker_joins_with_gantrys_cloud_init(
        &mut cluster,
        TENANT,
        tenant_worker::Network::BehindARouter,
        (&previous, &version),
        &kubeconfig,
        tmp.path(),
        &gantry,
    );
    eprintln!(
        "TIMING end-to-end {previous}: cloud-init's join script to Node Ready {:.1} s",
        joining.elapsed().as_secs_f64()
    );
    tenant_worker::the_tunnel_agent_is_connected(&cluster, &worker, &kubeconfig);
    a_workload_serves_through_its_service(&cluster, &worker, &kubeconfig, tmp.path());
    tenant_worker::a_webhook_in_the_tenant_refuses_and_admits(&cluster, &kubeconfig, tmp.path());

    let (took, seen) = tenant_life::a_minor_upgrade_rolls_while_the_tenant_serves(
        &cluster,
        TENANT,
        &version,
        &kubeconfig,
    );
    eprintln!(
        "TIMING end-to-end {previous} -> {version}: upgrade to Ready {:.1} s; /readyz failed {} of {} checks, longest outage {:.1} s",
        took.as_secs_f64(),
        seen.failures,
        seen.checks,
        seen.longest_outage.as_secs_f64()
    );
    assert!(
        seen.longest_outage < UPGRADE_OUTAGE_BOUND,
        "the tenant stopped serving for {:?} during the upgrade: {seen:?}",
        seen.longest_outage
    );
    masters_run_as_pods_from_gantrys_manifests(&cluster, &version);
    let again = tenant_worker::logs_and_the_webhook_work_through_the_tunnel(
        &cluster,
        &kubeconfig,
        tmp.path(),
    );
    eprintln!(
        "TIMING end-to-end {previous} -> {version}: after the upgrade's roll, logs and the webhook worked through the tunnel {:.1} s later",
        again.as_secs_f64()
    );

    tenant_worker::port_forward_carries_a_payload_intact(
        &cluster,
        &worker,
        &kubeconfig,
        tmp.path(),
    );
    let top = metrics::kubectl_top_answers_through_the_aggregated_api(
        &cluster,
        &kubeconfig,
        tmp.path(),
        tenant_worker::WORKER,
    );
    eprintln!(
        "TIMING end-to-end {version}: kubectl top nodes answered {:.1} s after metrics-server was applied",
        top.as_secs_f64()
    );
    metrics::an_autoscaler_scales_a_deployment_that_burns_cpu(&cluster, &kubeconfig, tmp.path());
    for line in side_doors::aimed_into_the_service_cluster_they_reach_nothing(
        &cluster,
        NAMESPACE,
        &kubeconfig,
        tmp.path(),
    ) {
        eprintln!("NOTE end-to-end: refused through the tunnel: {line}");
    }
    gantry_get_and_join_show_the_tenant(&cluster, TENANT, &version, &kubeconfig);
    let restored = backup::a_scheduled_snapshot_restores_a_tenant_whose_volumes_are_gone(
        &cluster,
        &store,
        TENANT,
        NAMESPACE,
        &kubeconfig,
        tmp.path(),
    );
    eprintln!(
        "TIMING end-to-end {version}: {} ConfigMaps and Secrets written in {:.1} s; snapshot {} in the status {:.1} s after its schedule was set; volumes wiped -> restored, Ready, worker Ready in {:.1} s",
        backup::OBJECTS,
        restored.write.as_secs_f64(),
        restored.snapshot,
        restored.snapshot_after_schedule.as_secs_f64(),
        restored.recovery.as_secs_f64()
    );
    let recovered = backup::a_new_tenant_recovers_from_the_bucket_and_the_platform_key(
        &cluster,
        &store,
        TENANT,
        &restored.snapshot,
        &version,
        tmp.path(),
    );
    eprintln!(
        "TIMING end-to-end {version}: a new tenant recovered {TENANT}'s snapshot from the bucket and the platform key, Ready in {:.1} s",
        recovered.took.as_secs_f64()
    );
    let failed = backup::a_restore_from_a_missing_snapshot_fails_and_leaves_the_data(
        &cluster,
        TENANT,
        &recovered.kubeconfig,
    );
    eprintln!(
        "TIMING end-to-end {version}: a restore from a missing snapshot ended Failed and the tenant served its data again in {:.1} s",
        failed.as_secs_f64()
    );
    let quota = backup::a_full_quota_shows_in_the_status_and_the_runbook_gives_it_back(
        &cluster,
        &recovered.kubeconfig,
        tmp.path(),
    );
    eprintln!(
        "TIMING end-to-end {version}: a 64 MiB etcd quota refused writes after {} ConfigMaps of 900 KiB ({:.1} s); the runbook (delete, upkeep now) gave writes back and EtcdBelowQuota True again in {:.1} s",
        quota.filled_with,
        quota.fill.as_secs_f64(),
        quota.fix.as_secs_f64()
    );
    backup::delete_the_tenant(&cluster, backup::DR);
    the_operator_writes_nothing_for_a_settled_tenant(
        &cluster,
        "HA: 3 etcd, 2 of each other master",
    );

    let seen = tenant_life::losing_an_apiserver_and_an_etcd_member_keeps_it_serving(
        &cluster,
        NAMESPACE,
        &kubeconfig,
    );
    eprintln!(
        "TIMING end-to-end {version}: one apiserver and one etcd pod deleted: /readyz failed {} of {} checks, longest outage {:.1} s",
        seen.failures,
        seen.checks,
        seen.longest_outage.as_secs_f64()
    );
    let again = tenant_worker::logs_and_the_webhook_work_through_the_tunnel(
        &cluster,
        &kubeconfig,
        tmp.path(),
    );
    eprintln!(
        "TIMING end-to-end {version}: after the apiserver pod came back, logs and the webhook worked through the tunnel {:.1} s later",
        again.as_secs_f64()
    );
    a_single_replica_tenant_at_rest(&cluster, &version);
    tenant_life::helm_uninstall_removes_the_tenant(&cluster, TENANT, NAMESPACE, &kubeconfig);
}

/// `kubectl exec … true` and one webhook call, through the tunnel and then
/// direct, in one run (docs/benchmarks.md, "kubectl and a webhook, through
/// the tunnel and direct"): a measurement, so opt-in.
#[test]
#[ignore = "a benchmark: cargo test -p gantry-tests --test e2e -- --ignored --nocapture"]
fn measure_kubectl_and_a_webhook_through_the_tunnel_and_direct() {
    const ROUNDS: usize = 30;
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let version = gantry_renderer::versions::newest().to_string();
    let gantry = gantry_image(tmp.path());
    let mut images = vec![gantry.clone()];
    images.extend(tenant_images(&version));
    let mut cluster = ServiceCluster::start(tmp.path(), 140, &images);
    install_operator(&cluster, &[]);
    cluster.add_volumes("etcd", 1, "10Gi");
    cluster.helm_install_tenant(
        TENANT,
        &format!(
            "version: \"{version}\"\napiServer:\n  replicas: 1\n  service:\n    type: NodePort\n\
             controllerManager:\n  replicas: 1\nscheduler:\n  replicas: 1\netcd:\n  replicas: 1\n\
             networking:\n  podCIDR: {TENANT_POD_CIDR}\n  serviceCIDR: {}\n",
            routed::TENANT_SERVICE_CIDR
        ),
    );
    wait_ready(&cluster);
    let kubeconfig = the_tenant_serves_through_its_kubeconfig(&cluster, tmp.path());
    let worker = a_worker_joins_with_gantrys_cloud_init(
        &mut cluster,
        TENANT,
        tenant_worker::Network::Routed,
        (&version, &version),
        &kubeconfig,
        tmp.path(),
        &gantry,
    );
    tenant_worker::the_agent_is_ready(&cluster, &kubeconfig);
    a_workload_serves_through_its_service(&cluster, &worker, &kubeconfig, tmp.path());
    tenant_worker::a_webhook_in_the_tenant_refuses_and_admits(&cluster, &kubeconfig, tmp.path());
    metrics::kubectl_top_answers_through_the_aggregated_api(
        &cluster,
        &kubeconfig,
        tmp.path(),
        tenant_worker::WORKER,
    );
    let tunnel = routed::time_the_calls(&cluster, &kubeconfig, tmp.path(), ROUNDS);
    routed::switch_to_the_routed_path(&cluster, &worker, TENANT, &kubeconfig, tmp.path());
    let direct = routed::time_the_calls(&cluster, &kubeconfig, tmp.path(), ROUNDS);
    eprintln!(
        "BENCH {ROUNDS} rounds through the tunnel: {}",
        tunnel.line()
    );
    eprintln!("BENCH {ROUNDS} rounds direct (routed): {}", direct.line());
    let ratio = |a: &[Duration], b: &[Duration]| {
        routed::ms(routed::percentile(a, 50)) / routed::ms(routed::percentile(b, 50))
    };
    eprintln!(
        "BENCH tunnel / direct, medians: exec {:.2}x, webhook {:.2}x, readyz {:.2}x",
        ratio(&tunnel.exec, &direct.exec),
        ratio(&tunnel.webhook, &direct.webhook),
        ratio(&tunnel.readyz, &direct.readyz)
    );
}

/// Over [`AT_REST`], the service cluster's audit log shows no write by the
/// operator; prints what the tenant's masters use meanwhile.
fn the_operator_writes_nothing_for_a_settled_tenant(cluster: &ServiceCluster, shape: &str) {
    let seen = at_rest::watch_at_rest(cluster, NAMESPACE, AT_REST);
    eprintln!(
        "TIMING end-to-end at rest for {} s ({shape}): the operator made {} writes and {} reads; \
         the masters use\n{}",
        AT_REST.as_secs(),
        seen.writes.len(),
        seen.reads,
        seen.usage.table()
    );
    assert!(
        seen.writes_before > 0,
        "the audit log holds no write of the operator's: it cannot show that none happen at rest"
    );
    assert_eq!(
        seen.writes,
        Vec::<String>::new(),
        "the operator wrote at rest"
    );
}

/// A second tenant of one replica of each master, beside the first: Ready,
/// then measured at rest for a minute, then uninstalled.
fn a_single_replica_tenant_at_rest(cluster: &ServiceCluster, version: &str) {
    const SINGLE: &str = "tenant-b";
    cluster.add_volumes("etcd-b", 1, "10Gi");
    let installed = Instant::now();
    cluster.helm_install_tenant(
        SINGLE,
        &format!(
            "version: \"{version}\"\napiServer:\n  replicas: 1\n  service:\n    type: NodePort\n\
             controllerManager:\n  replicas: 1\nscheduler:\n  replicas: 1\netcd:\n  replicas: 1\n\
             backup:\n  schedule: \"{FAR_AWAY}\"\n"
        ),
    );
    wait_tenant_ready(cluster, SINGLE);
    eprintln!(
        "TIMING end-to-end {version}: helm install {SINGLE} to Ready {:.1} s (single: 1 etcd, 1 of each master); {}",
        installed.elapsed().as_secs_f64(),
        at_rest::time_to_ready_breakdown(cluster, SINGLE, "tcp-tenant-b")
    );
    let seen = at_rest::watch_at_rest(cluster, "tcp-tenant-b", Duration::from_secs(60));
    eprintln!(
        "TIMING end-to-end at rest for 60 s (single: 1 etcd, 1 of each master): the masters use\n{}",
        seen.usage.table()
    );
    let helm = cluster.plane.helm(&["uninstall", SINGLE, "--wait"]);
    assert!(
        helm.status.success(),
        "helm uninstall {SINGLE}: {}",
        output_text(&helm)
    );
}

/// The Dockerfile and the image the test builds agree: the same file path,
/// user, entrypoint and command, on a static, non-root base.
#[test]
fn the_test_image_is_the_dockerfiles() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let shipped = shipped_image(&dockerfile);
    assert_eq!(shipped.binary_path, "/gantry");
    assert_eq!(shipped.user, "65532:65532");
    assert_eq!(shipped.entrypoint, ["/gantry"]);
    assert!(
        shipped.base.starts_with("gcr.io/distroless/static") && shipped.base.ends_with(":nonroot"),
        "{}",
        shipped.base
    );
    assert!(
        dockerfile.contains("-unknown-linux-musl"),
        "the Dockerfile builds for musl, as the test image does"
    );
    assert_eq!(gantry_image_name(), "ghcr.io/gantry-dev/gantry:0.1.0");
}

fn install_operator(cluster: &ServiceCluster, values: &[String]) {
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let helm = cluster.plane.helm_install_operator_chart(&values);
    assert!(
        helm.status.success(),
        "helm install gantry: {}",
        output_text(&helm)
    );
    let ready = wait_or_logs(cluster, "the operator's 2 replicas are available", || {
        cluster.wait_for(
            "the operator's Deployment",
            &[
                "-n",
                "gantry-system",
                "get",
                "deployment",
                "gantry",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ],
            |out| out == "2",
        )
    });
    assert_eq!(ready, "2");
}

/// Runs `wait`; if it panics, prints the operator's and the tenant's pod logs first.
fn wait_or_logs<T>(cluster: &ServiceCluster, what: &str, wait: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(wait)) {
        Ok(value) => value,
        Err(panic) => {
            eprintln!(
                "{what}: failed\n{}\n{}",
                cluster.pod_logs("gantry-system"),
                cluster.pod_logs(NAMESPACE)
            );
            std::panic::resume_unwind(panic)
        }
    }
}

fn wait_ready(cluster: &ServiceCluster) {
    wait_tenant_ready(cluster, TENANT);
}

fn wait_tenant_ready(cluster: &ServiceCluster, tenant: &str) {
    wait_or_logs(cluster, "the tenant turns Ready", || {
        cluster.wait_for_within(
            "the tenant turns Ready",
            Duration::from_secs(600),
            &[
                "get",
                "tenantcontrolplane",
                tenant,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            |out| out == "True",
        )
    });
}

const MASTER_WORKLOADS: [&str; 4] = [
    "statefulset/etcd",
    "deployment/kube-apiserver",
    "deployment/kube-controller-manager",
    "deployment/kube-scheduler",
];

/// Every master is a pod on the service node, made by the StatefulSet or
/// Deployment that the operator applied (field manager `gantry`), and runs
/// the image gantry renders for `version` (pods on their way out, such as
/// the old ones of a finished rollout, are not counted). Ready means etcd
/// has quorum, so the third member may still be starting: the workloads'
/// rollouts are awaited first.
fn masters_run_as_pods_from_gantrys_manifests(cluster: &ServiceCluster, version: &str) {
    for workload in MASTER_WORKLOADS {
        cluster.kubectl_ok(&[
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            workload,
            "--timeout=300s",
        ]);
    }
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    let etcd = gantry_renderer::versions::release(minor).unwrap().etcd;
    let pods = cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/name} {.status.phase} \
         {.spec.nodeName} {.spec.containers[0].image} [{.metadata.deletionTimestamp}]{\"\\n\"}{end}",
    ]);
    let mut counts = std::collections::BTreeMap::new();
    for line in pods.lines().filter(|line| line.ends_with(" []")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert_eq!(fields[1], "Running", "{line}");
        assert_eq!(fields[2], gantry_tests::service_node::NODE, "{line}");
        let tag = match fields[0] {
            "etcd" => etcd.to_string(),
            _ => format!("v{version}"),
        };
        assert_eq!(
            fields[3],
            format!("registry.k8s.io/{}:{tag}", fields[0]),
            "{line}"
        );
        *counts.entry(fields[0].to_string()).or_insert(0) += 1;
    }
    let expected: std::collections::BTreeMap<String, i32> = [
        ("etcd", 3),
        ("kube-apiserver", 2),
        ("kube-controller-manager", 2),
        ("kube-scheduler", 2),
    ]
    .into_iter()
    .map(|(name, count)| (name.to_string(), count))
    .collect();
    assert_eq!(counts, expected, "{pods}");
    for workload in MASTER_WORKLOADS {
        let managers = cluster.kubectl_ok(&[
            "-n",
            NAMESPACE,
            "get",
            workload,
            "-o",
            "jsonpath={.metadata.managedFields[?(@.operation==\"Apply\")].manager}",
        ]);
        assert_eq!(
            managers.trim(),
            "gantry",
            "{workload} is applied by gantry only"
        );
    }
}

/// `gantry kubeconfig tenant-a` (reading the service cluster) gives a
/// kubeconfig whose server is the node's address and the NodePort, and the
/// tenant's apiserver answers through it.
fn the_tenant_serves_through_its_kubeconfig(cluster: &ServiceCluster, dir: &Path) -> PathBuf {
    let kubeconfig = dir.join("tenant-a.conf");
    std::fs::write(
        &kubeconfig,
        gantry_on_service_cluster(cluster, &["kubeconfig", TENANT]),
    )
    .unwrap();
    let readyz = cluster
        .plane
        .node
        .command(tool("kubectl"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["get", "--raw", "/readyz"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&readyz.stdout).trim(),
        "ok",
        "{}",
        output_text(&readyz)
    );
    kubeconfig
}
