//! A settled tenant in the end-to-end test: what the operator writes (by the
//! service cluster's own audit log), what the tenant's masters cost (by the
//! node's kubelet), and where the time to Ready went (by the objects'
//! timestamps). Figures go to docs/benchmarks.md.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gantry_tests::service_node::{NODE, ServiceCluster};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The operator's identity in the service cluster: the chart's
/// ServiceAccount `gantry` in namespace `gantry-system`.
const OPERATOR: &str = "system:serviceaccount:gantry-system:gantry";
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// What a window at rest saw.
pub struct AtRest {
    /// The operator's writes, as "verb resource namespace/name".
    pub writes: Vec<String>,
    /// The operator's other requests (get, list, watch).
    pub reads: usize,
    /// The operator's writes the log held before the window: none would
    /// mean the log does not see the operator, and "no writes" proves nothing.
    pub writes_before: usize,
    /// The tenant's masters: memory at the end, CPU over the window.
    pub usage: Usage,
}

/// What one tenant's control-plane pods use, by component.
#[derive(Default)]
pub struct Usage {
    /// Component → (pods, working-set bytes, CPU in cores).
    pub components: BTreeMap<String, (u32, u64, f64)>,
}

impl Usage {
    pub fn total_mib(&self) -> f64 {
        self.components.values().map(|c| c.1).sum::<u64>() as f64 / 1048576.0
    }

    pub fn total_cores(&self) -> f64 {
        self.components.values().map(|c| c.2).sum()
    }

    /// One line per component, and the total.
    pub fn table(&self) -> String {
        let mut text = String::new();
        for (component, (pods, bytes, cores)) in &self.components {
            text.push_str(&format!(
                "  {component}: {pods} pod(s), {:.1} MiB, {:.1} millicores\n",
                *bytes as f64 / 1048576.0,
                cores * 1000.0
            ));
        }
        text.push_str(&format!(
            "  total: {:.1} MiB, {:.1} millicores",
            self.total_mib(),
            self.total_cores() * 1000.0
        ));
        text
    }
}

/// Watches the settled tenant in `namespace` for `window`: the operator's
/// requests in the service apiserver's audit log (JSON lines on its stdout,
/// written by gantry's own audit policy, which leaves out leases), and the
/// usage of the tenant's pods from the kubelet's summary API.
pub fn watch_at_rest(cluster: &ServiceCluster, namespace: &str, window: Duration) -> AtRest {
    let audit = &cluster.plane.apiservers[0].log;
    let offset = std::fs::metadata(audit).unwrap().len() as usize;
    let (start, started) = (pod_stats(cluster, namespace), Instant::now());
    std::thread::sleep(window);
    let end = pod_stats(cluster, namespace);
    let seconds = started.elapsed().as_secs_f64();
    let log = std::fs::read(audit).unwrap();
    let operator_events = |text: &[u8]| -> Vec<Value> {
        String::from_utf8_lossy(text)
            .lines()
            .filter(|line| line.starts_with('{'))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["user"]["username"] == OPERATOR)
            .collect()
    };
    let mut at_rest = AtRest {
        writes: Vec::new(),
        reads: 0,
        writes_before: (operator_events(&log[..offset]).iter())
            .filter(|event| WRITE_VERBS.contains(&event["verb"].as_str().unwrap_or_default()))
            .count(),
        usage: Usage::default(),
    };
    for event in operator_events(&log[offset..]) {
        let verb = event["verb"].as_str().unwrap_or_default();
        if WRITE_VERBS.contains(&verb) {
            let object = &event["objectRef"];
            at_rest.writes.push(format!(
                "{verb} {} {}/{}",
                object["resource"].as_str().unwrap_or_default(),
                object["namespace"].as_str().unwrap_or_default(),
                object["name"].as_str().unwrap_or_default()
            ));
        } else {
            at_rest.reads += 1;
        }
    }
    for (pod, (component, bytes, cpu_ns)) in &end {
        let entry = at_rest
            .usage
            .components
            .entry(component.clone())
            .or_default();
        entry.0 += 1;
        entry.1 += bytes;
        if let Some((_, _, before)) = start.get(pod) {
            entry.2 += cpu_ns.saturating_sub(*before) as f64 / 1e9 / seconds;
        }
    }
    at_rest
}

/// "pod/container" → (container, working-set bytes, CPU nanoseconds used
/// so far) of every container in `namespace`, from the node's kubelet
/// (`/stats/summary`): an apiserver pod's konnectivity server is counted
/// apart from its apiserver.
fn pod_stats(cluster: &ServiceCluster, namespace: &str) -> BTreeMap<String, (String, u64, u64)> {
    let summary = cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/stats/summary"),
    ]);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let mut pods = BTreeMap::new();
    for pod in summary["pods"].as_array().into_iter().flatten() {
        if pod["podRef"]["namespace"] != namespace {
            continue;
        }
        let name = pod["podRef"]["name"].as_str().unwrap();
        for container in pod["containers"].as_array().into_iter().flatten() {
            let component = container["name"].as_str().unwrap_or("?").to_string();
            let bytes = container["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
            let cpu = container["cpu"]["usageCoreNanoSeconds"]
                .as_u64()
                .unwrap_or(0);
            pods.insert(format!("{name}/{component}"), (component, bytes, cpu));
        }
    }
    assert!(!pods.is_empty(), "the kubelet has no stats of {namespace}");
    pods
}

/// Where the time from the TenantControlPlane's creation to Ready went, read
/// from the timestamps the service cluster keeps (whole seconds): the first
/// Secret (PKI made and applied), the StatefulSet and the apiserver's
/// Deployment (applied), etcd quorum (the member whose readiness made a
/// majority), the first ready apiserver, and Ready (the tenant set applied
/// and the tenant bootstrapped).
pub fn time_to_ready_breakdown(cluster: &ServiceCluster, tenant: &str, namespace: &str) -> String {
    let json = |args: &[&str]| -> Value {
        serde_json::from_str(&cluster.kubectl_ok(&[args, &["-o", "json"]].concat())).unwrap()
    };
    let at = |text: &Value| OffsetDateTime::parse(text.as_str().unwrap(), &Rfc3339).unwrap();
    let tcp = json(&["get", "tenantcontrolplane", tenant]);
    let created = at(&tcp["metadata"]["creationTimestamp"]);
    let ready = condition_time(&tcp["status"]["conditions"], "Ready").map(at);
    let secret =
        at(&json(&["-n", namespace, "get", "secret", "ca"])["metadata"]["creationTimestamp"]);
    let etcd = at(
        &json(&["-n", namespace, "get", "statefulset", "etcd"])["metadata"]["creationTimestamp"],
    );
    let ready_times = |component: &str| -> Vec<OffsetDateTime> {
        let pods = json(&[
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/name={component}"),
        ]);
        let mut times: Vec<OffsetDateTime> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pod| condition_time(&pod["status"]["conditions"], "Ready").map(at))
            .collect();
        times.sort();
        times
    };
    let etcd_ready = ready_times("etcd");
    let quorum = etcd_ready.get(etcd_ready.len() / 2).copied();
    let apiserver = ready_times("kube-apiserver").first().copied();
    let since = |t: Option<OffsetDateTime>| {
        t.map_or("?".to_string(), |t| {
            format!("{} s", (t - created).whole_seconds())
        })
    };
    format!(
        "created 0 s; PKI made and first Secret applied {}; etcd StatefulSet applied {}; \
         etcd quorum {}; first apiserver ready {}; Ready {}",
        since(Some(secret)),
        since(Some(etcd)),
        since(quorum),
        since(apiserver),
        since(ready)
    )
}

/// The `lastTransitionTime` of condition `kind` if it is True.
fn condition_time<'a>(conditions: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .map(|c| &c["lastTransitionTime"])
}
