//! How many tenants one service-cluster node holds (docs/benchmarks.md,
//! "Tenants per node"). Opt-in: it runs for tens of minutes.
//!
//! ```text
//! GANTRY_TOOLS_DIR=$PWD/.tools cargo test -p gantry-tests --test density -- --ignored --nocapture
//! ```
//!
//! The service cluster of the end-to-end test (`support/service_node.rs`)
//! runs the operator from its chart; then single-replica tenants (one etcd
//! member, one of each other master, the newest minor) are installed one
//! after the other with `helm install`, each waited for until Ready. After
//! each, the node rests for [`SETTLE`] and its kubelet says what the
//! tenants' pods use, and what the machine does (the node's cgroup root is
//! the machine's: the service cluster's masters and the test count too). It stops when a tenant is not Ready within [`READY_LIMIT`], when
//! the node's CPU at rest passes [`CPU_LIMIT`] of its cores, when less than
//! [`MEMORY_FLOOR_MIB`] of memory is available, or at `GANTRY_DENSITY_MAX`
//! tenants (default 200).

use std::time::{Duration, Instant};

use gantry_tests::control_plane::one_at_a_time;
use gantry_tests::images::{gantry_image, tenant_images};
use gantry_tests::output_text;
use gantry_tests::service_node::{NODE, ServiceCluster};
use serde_json::Value;

const READY_LIMIT: Duration = Duration::from_secs(300);
const SETTLE: Duration = Duration::from_secs(30);
/// Share of the machine's cores in use at rest beyond which it is full.
const CPU_LIMIT: f64 = 0.9;
const MEMORY_FLOOR_MIB: u64 = 1536;

#[test]
#[ignore = "opt-in measurement: tens of minutes (see the module docs)"]
fn tenants_per_node() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let version = gantry_renderer::versions::newest().to_string();
    let mut images = vec![gantry_image(tmp.path())];
    images.extend(tenant_images(&version));
    let cluster = ServiceCluster::start(tmp.path(), 143, &images);
    let helm = cluster.plane.helm_install_operator_chart(&[]);
    assert!(helm.status.success(), "{}", output_text(&helm));
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    eprintln!(
        "DENSITY 0 tenants: machine memory available {} MiB",
        memory_available_mib()
    );
    let max: usize = std::env::var("GANTRY_DENSITY_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for count in 1..=max {
        let name = format!("t{count}");
        let started = Instant::now();
        if !install_single_replica_tenant(&cluster, &name, &version) {
            let pending = cluster.kubectl(&[
                "-n",
                &format!("tcp-{name}"),
                "get",
                "events",
                "--field-selector=reason=FailedScheduling",
                "-o",
                "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
            ]);
            eprintln!(
                "DENSITY stop: tenant {count} was not Ready within {} s; the scheduler said: {}",
                READY_LIMIT.as_secs(),
                String::from_utf8_lossy(&pending.stdout)
                    .lines()
                    .last()
                    .unwrap_or("nothing")
            );
            break;
        }
        let ready = started.elapsed();
        std::thread::sleep(SETTLE);
        let (tenant_mib, tenant_cores, node_cores) = usage(&cluster);
        let available = memory_available_mib();
        eprintln!(
            "DENSITY {count} tenants: the last Ready in {:.1} s; tenants' pods {tenant_mib:.0} MiB \
             ({:.0} MiB each), {:.0} millicores ({:.0} each); the node's CPU {:.0} millicores \
             of {cores:.0} cores; machine memory available {available} MiB",
            ready.as_secs_f64(),
            tenant_mib / count as f64,
            tenant_cores * 1000.0,
            tenant_cores * 1000.0 / count as f64,
            node_cores * 1000.0
        );
        if node_cores > CPU_LIMIT * cores {
            eprintln!(
                "DENSITY stop: CPU at rest is past {:.0}% of the cores",
                CPU_LIMIT * 100.0
            );
            break;
        }
        if available < MEMORY_FLOOR_MIB {
            eprintln!("DENSITY stop: less than {MEMORY_FLOOR_MIB} MiB of memory available");
            break;
        }
    }
}

/// `helm install <name> chart/tenant` with one replica of everything and a
/// NodePort endpoint; whether it turned Ready within [`READY_LIMIT`].
fn install_single_replica_tenant(cluster: &ServiceCluster, name: &str, version: &str) -> bool {
    cluster.add_volumes(&format!("etcd-{name}"), 1, "1Gi");
    cluster.helm_install_tenant(
        name,
        &format!(
            "version: \"{version}\"\napiServer:\n  replicas: 1\n  service:\n    type: NodePort\n\
             controllerManager:\n  replicas: 1\nscheduler:\n  replicas: 1\netcd:\n  replicas: 1\n  \
             storage:\n    size: 1Gi\n"
        ),
    );
    gantry_tests::wait_until(READY_LIMIT, || {
        let output = cluster.kubectl(&[
            "get",
            "tenantcontrolplane",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        output.stdout == b"True"
    })
}

/// What the kubelet's summary API says: the working-set memory (MiB) and
/// CPU (cores) of the tenants' pods (namespaces `tcp-*`), and the CPU of
/// the whole node, whose cgroup root is the machine's.
fn usage(cluster: &ServiceCluster) -> (f64, f64, f64) {
    let summary = cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/stats/summary"),
    ]);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let tenant_pods = summary["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| {
            pod["podRef"]["namespace"]
                .as_str()
                .is_some_and(|ns| ns.starts_with("tcp-"))
        });
    let (mut bytes, mut nano_cores) = (0, 0);
    for pod in tenant_pods {
        bytes += pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
        nano_cores += pod["cpu"]["usageNanoCores"].as_u64().unwrap_or(0);
    }
    let node = summary["node"]["cpu"]["usageNanoCores"]
        .as_u64()
        .unwrap_or(0);
    (
        bytes as f64 / 1048576.0,
        nano_cores as f64 / 1e9,
        node as f64 / 1e9,
    )
}

/// The machine's `MemAvailable`, in MiB.
fn memory_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}
