//! The rendered NetworkPolicies, reasoned over: who reaches which master on
//! which port, and where the masters may connect. A CNI that enforces
//! NetworkPolicy enforces exactly this; the test service cluster's bridge
//! plugin does not, so this evaluator (the NetworkPolicy semantics of
//! networking.k8s.io/v1, for the selectors gantry uses) stands in for it.

mod fixture;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

const NAMESPACE: &str = "tcp-tenant-a";

/// One end of a connection: a pod (namespace, labels, namespace labels) or
/// an address outside any pod the policies select by label.
#[derive(Clone)]
enum Peer {
    Pod {
        namespace: String,
        labels: BTreeMap<String, String>,
        namespace_labels: BTreeMap<String, String>,
        /// In the service cluster's pod CIDR (10.244.0.0/16 in the fixture):
        /// CNIs match pods' addresses against ipBlocks too.
        ip: IpAddr,
    },
    Address(IpAddr),
}

fn pod(namespace: &str, labels: &[(&str, &str)], namespace_labels: &[(&str, &str)]) -> Peer {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut namespace_labels: BTreeMap<String, String> = map(namespace_labels);
    namespace_labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
    Peer::Pod {
        namespace: namespace.into(),
        labels: map(labels),
        namespace_labels,
        ip: IpAddr::from([10, 244, 7, NEXT.fetch_add(1, Ordering::Relaxed)]),
    }
}

fn master(component: &str) -> Peer {
    pod(
        NAMESPACE,
        &[
            ("app.kubernetes.io/name", component),
            ("gantry.dev/tenant", "tenant-a"),
        ],
        &[("app.kubernetes.io/managed-by", "gantry")],
    )
}

fn address(ip: &str) -> Peer {
    Peer::Address(ip.parse().unwrap())
}

/// A label selector: `matchLabels` and `In` expressions (what gantry writes).
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions_match = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            assert_eq!(e["operator"], "In", "the evaluator knows In only");
            let values = e["values"].as_array().unwrap();
            labels
                .get(e["key"].as_str().unwrap())
                .is_some_and(|l| values.iter().any(|v| v == l.as_str()))
        });
    labels_match && expressions_match
}

/// Whether one `from`/`to` entry matches `peer`, for a policy in NAMESPACE.
fn peer_matches(entry: &Value, peer: &Peer) -> bool {
    let in_block = |ip: &IpAddr| {
        entry.get("ipBlock").is_some_and(|block| {
            let within = |cidr: &Value| {
                cidr.as_str()
                    .unwrap()
                    .parse::<IpNet>()
                    .unwrap()
                    .contains(ip)
            };
            within(&block["cidr"]) && !block["except"].as_array().into_iter().flatten().any(within)
        })
    };
    match peer {
        Peer::Pod {
            namespace,
            labels,
            namespace_labels,
            ip,
        } => {
            if entry.get("ipBlock").is_some() {
                return in_block(ip);
            }
            let namespace_ok = match entry.get("namespaceSelector") {
                Some(selector) => selects(selector, namespace_labels),
                None => namespace == NAMESPACE,
            };
            let pod_ok = entry
                .get("podSelector")
                .is_none_or(|selector| selects(selector, labels));
            namespace_ok && pod_ok
        }
        Peer::Address(ip) => in_block(ip),
    }
}

fn port_matches(rule: &Value, port: u16, protocol: &str) -> bool {
    rule["ports"].as_array().is_none_or(|ports| {
        ports.iter().any(|p| {
            p["port"].as_u64() == Some(u64::from(port))
                && p["protocol"].as_str().unwrap_or("TCP") == protocol
        })
    })
}

/// Whether the policies of `direction` (`Ingress` or `Egress`) that select
/// `subject` allow the connection to or from `peer`: allowed when no policy
/// of that direction selects it, else when any rule of one of them allows.
fn allowed(
    policies: &[&Value],
    direction: &str,
    subject: &Peer,
    peer: &Peer,
    port: u16,
    protocol: &str,
) -> bool {
    let Peer::Pod {
        labels, namespace, ..
    } = subject
    else {
        return true; // an address outside the namespace: not ours to police
    };
    if namespace != NAMESPACE {
        return true;
    }
    let (rules_key, peers_key) = match direction {
        "Ingress" => ("ingress", "from"),
        _ => ("egress", "to"),
    };
    let selecting: Vec<&&Value> = policies
        .iter()
        .filter(|p| {
            p["spec"]["policyTypes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == direction)
        })
        .filter(|p| selects(&p["spec"]["podSelector"], labels))
        .collect();
    selecting.is_empty()
        || selecting.iter().any(|p| {
            p["spec"][rules_key]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| {
                    port_matches(rule, port, protocol)
                        && rule[peers_key]
                            .as_array()
                            .is_none_or(|peers| peers.iter().any(|e| peer_matches(e, peer)))
                })
        })
}

/// Whether `from` may open a connection to `to` on `port`: the egress
/// policies of `from` and the ingress policies of `to` both allow it.
fn connects(policies: &[&Value], from: &Peer, to: &Peer, port: u16, protocol: &str) -> bool {
    allowed(policies, "Egress", from, to, port, protocol)
        && allowed(policies, "Ingress", to, from, port, protocol)
}

/// The NetworkPolicies of a render's service set.
fn network_policies(rendered: &gantry_renderer::Rendered) -> Vec<&Value> {
    (rendered.service.iter())
        .filter(|o| o.kind == "NetworkPolicy")
        .map(|o| &o.value)
        .collect()
}

#[test]
fn the_policies_let_each_master_reach_only_what_it_needs() {
    let rendered = fixture::rendered();
    let policies = network_policies(&rendered);
    let (apiserver, etcd, kcm, scheduler) = (
        master("kube-apiserver"),
        master("etcd"),
        master("kube-controller-manager"),
        master("kube-scheduler"),
    );
    let dns = pod("kube-system", &[("k8s-app", "kube-dns")], &[]);
    let other_tenant_apiserver = pod(
        "tcp-tenant-b",
        &[
            ("app.kubernetes.io/name", "kube-apiserver"),
            ("gantry.dev/tenant", "tenant-b"),
        ],
        &[("app.kubernetes.io/managed-by", "gantry")],
    );
    let scraper = pod(
        "monitoring",
        &[("app", "prometheus")],
        &[("gantry.dev/metrics-scraper", "true")],
    );
    let unlabelled = pod("default", &[("app", "curious")], &[]);
    let worker = address("192.0.2.21"); // a tenant worker, outside the service cluster

    let can = |from: &Peer, to: &Peer, port: u16| connects(&policies, from, to, port, "TCP");
    // etcd: its apiservers and its peers only; metrics to scrapers only.
    assert!(can(&apiserver, &etcd, 2379));
    assert!(can(&etcd, &etcd, 2380));
    assert!(can(&etcd, &etcd, 2379));
    for (who, from) in [
        ("controller-manager", &kcm),
        ("scheduler", &scheduler),
        ("another tenant", &other_tenant_apiserver),
        ("a pod elsewhere", &unlabelled),
    ] {
        assert!(!can(from, &etcd, 2379), "{who} reaches etcd");
        assert!(!can(from, &etcd, 2380), "{who} reaches etcd's peer port");
    }
    assert!(
        !can(&apiserver, &etcd, 2380),
        "the apiserver reaches etcd's peer port"
    );
    assert!(can(&scraper, &etcd, 2381));
    assert!(
        !can(&unlabelled, &etcd, 2381),
        "an unlabelled namespace scrapes etcd"
    );
    assert!(!can(&apiserver, &etcd, 2381));

    // The backup Job: it reaches etcd's client port (not the peer port) and
    // the object store's port outside the service cluster; nothing else.
    let backup = master("etcd-backup");
    assert!(can(&backup, &etcd, 2379), "the backup reaches etcd");
    assert!(
        !can(&backup, &etcd, 2380),
        "the backup reaches etcd's peer port"
    );
    assert!(
        !can(&backup, &apiserver, 6443),
        "the backup reaches the apiserver"
    );
    assert!(
        can(&backup, &address("198.51.100.7"), 443),
        "the backup reaches the store"
    );
    assert!(
        can(&backup, &address("2001:db8::7"), 443),
        "the backup reaches an IPv6 store"
    );
    for (outside, port) in [
        ("198.51.100.7", 80),
        ("198.51.100.7", 8443),
        ("10.96.0.1", 443),
        ("10.244.3.3", 443),
        ("169.254.169.254", 443),
    ] {
        assert!(
            !can(&backup, &address(outside), port),
            "the backup dials {outside}:{port}"
        );
    }
    assert!(!can(&unlabelled, &backup, 443));

    // The apiserver: anyone reaches it on 6443, and the tunnel's agents on
    // 8132. With the tunnel (the default) it reaches its etcd and DNS, and
    // nothing else, of either family: every dial into the tenant's cluster
    // leaves from the tenant's network through an agent.
    assert!(can(&worker, &apiserver, 6443));
    assert!(
        can(&worker, &apiserver, 8132),
        "an agent reaches the tunnel"
    );
    assert!(can(&kcm, &apiserver, 6443));
    assert!(can(&scheduler, &apiserver, 6443));
    assert!(!can(&worker, &apiserver, 10250));
    for outside in [
        "192.0.2.21",
        "198.51.100.7",
        "8.8.8.8",
        "2001:db8::7",
        "10.96.0.1",
        "169.254.169.254",
    ] {
        for port in [443, 8443, 10250] {
            assert!(
                !can(&apiserver, &address(outside), port),
                "the apiserver dials {outside}:{port} past the tunnel"
            );
        }
    }
    assert!(
        !can(&apiserver, &other_tenant_apiserver, 6443),
        "the apiserver reaches another tenant"
    );

    // The controllers: their apiserver, and nothing else.
    for (who, from) in [("controller-manager", &kcm), ("scheduler", &scheduler)] {
        assert!(!can(from, &worker, 10250), "{who} reaches a kubelet");
        assert!(
            !can(from, &address("8.8.8.8"), 443),
            "{who} reaches the internet"
        );
        assert!(
            !can(from, &address("169.254.169.254"), 80),
            "{who} reaches the metadata address"
        );
    }
    assert!(!can(&etcd, &worker, 443), "etcd reaches out");

    // DNS for every master.
    for (who, from) in [
        ("apiserver", &apiserver),
        ("etcd", &etcd),
        ("controller-manager", &kcm),
        ("scheduler", &scheduler),
    ] {
        assert!(
            connects(&policies, from, &dns, 53, "UDP"),
            "{who} resolves names"
        );
        assert!(
            !connects(&policies, from, &unlabelled, 53, "UDP"),
            "{who} reaches another resolver"
        );
    }
}

/// Without the service cluster's CIDRs (`gantry render` with no
/// `--service-cluster-cidrs`), only the link-local range is kept out: the
/// apiserver then reaches other tenants' pods by address. This is why the
/// operator chart sets them.
/// With `spec.konnectivity.enabled: false`, the apiserver dials the
/// tenant's kubelets and webhooks itself: its egress is everything outside
/// the service cluster and the link-local range.
#[test]
fn without_the_tunnel_the_apiserver_reaches_outside_the_service_cluster_only() {
    let mut input = fixture::input();
    input.konnectivity = None;
    let rendered = gantry_renderer::render(&input, &fixture::pki(&input)).unwrap();
    let policies = network_policies(&rendered);
    let apiserver = master("kube-apiserver");
    let worker = address("192.0.2.21");
    let other_tenant_apiserver = pod(
        "tcp-tenant-b",
        &[
            ("app.kubernetes.io/name", "kube-apiserver"),
            ("gantry.dev/tenant", "tenant-b"),
        ],
        &[("app.kubernetes.io/managed-by", "gantry")],
    );
    let can = |from: &Peer, to: &Peer, port: u16| connects(&policies, from, to, port, "TCP");
    assert!(
        !can(&worker, &apiserver, 8132),
        "no tunnel port without the tunnel"
    );
    assert!(
        can(&apiserver, &worker, 10250),
        "the apiserver reaches a kubelet"
    );
    assert!(
        can(&apiserver, &address("198.51.100.7"), 8443),
        "a webhook outside"
    );
    for inside in [
        "10.96.0.1",
        "10.100.3.4",
        "10.244.1.5",
        "169.254.169.254",
        "169.254.20.10",
    ] {
        assert!(
            !can(&apiserver, &address(inside), 443),
            "the apiserver reaches {inside}"
        );
        assert!(
            !can(&apiserver, &address(inside), 10250),
            "the apiserver reaches {inside}"
        );
    }
    assert!(
        !can(&apiserver, &other_tenant_apiserver, 6443),
        "the apiserver reaches another tenant"
    );
}

#[test]
fn without_the_service_cluster_cidrs_only_link_local_is_kept_out() {
    let mut input = fixture::input();
    // Without the tunnel: with it, the apiserver dials nothing outside.
    input.konnectivity = None;
    input.networking.service_cluster_cidrs.clear();
    let rendered = gantry_renderer::render(&input, &fixture::pki(&input)).unwrap();
    let policies = network_policies(&rendered);
    let other_tenant_apiserver = pod(
        "tcp-tenant-b",
        &[
            ("app.kubernetes.io/name", "kube-apiserver"),
            ("gantry.dev/tenant", "tenant-b"),
        ],
        &[("app.kubernetes.io/managed-by", "gantry")],
    );
    let apiserver = master("kube-apiserver");
    assert!(connects(
        &policies,
        &apiserver,
        &other_tenant_apiserver,
        6443,
        "TCP"
    ));
    assert!(!connects(
        &policies,
        &apiserver,
        &address("169.254.169.254"),
        80,
        "TCP"
    ));
}
