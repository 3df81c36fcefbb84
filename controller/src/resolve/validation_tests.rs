//! The checks of issue 25 item 15: each refuses the example manifest with
//! one change, naming the field and quoting the value as written, through
//! `validate` (the operator's path) and `resolve` (the offline path's).

use time::OffsetDateTime;

use super::*;
use crate::spec_error::MAX_QUOTED;

const EXAMPLE: &str = include_str!("../../../examples/tenant-a.yaml");
const END: &str = "  imageRepository: registry.k8s.io\n";

/// The example with `from` replaced by `to` (which must be there).
fn example_with(from: &str, to: &str) -> TenantControlPlane {
    assert!(EXAMPLE.contains(from), "{from:?} is not in the example");
    TenantControlPlane::from_yaml(&EXAMPLE.replacen(from, to, 1)).expect("a manifest")
}

/// The error of `validate`, also given by `resolve` with the spec's endpoint.
fn refused(manifest: &TenantControlPlane) -> SpecError {
    let error = validate(manifest).expect_err("refused");
    if let Ok(endpoint) = offline_endpoint(manifest) {
        let resolved = resolve(
            manifest,
            &endpoint,
            BootstrapToken::generate(),
            None,
            OffsetDateTime::UNIX_EPOCH,
            &ServiceCluster::default(),
        );
        let same = resolved.map(|_| ()).map_err(|e| e.to_string());
        // Only extraArgs are checked where the flags are made, after resolve.
        if !error.field.contains(".extraArgs.") {
            assert_eq!(same, Err(error.to_string()), "resolve agrees");
        }
    }
    error
}

fn assert_refused(manifest: &TenantControlPlane, field: &str, value: &str, reason: &str) {
    let error = refused(manifest);
    assert_eq!(
        (error.field.as_str(), error.value.as_str()),
        (field, value),
        "{error}"
    );
    assert!(error.reason.contains(reason), "{error}");
}

#[test]
fn endpoints_and_sans_that_name_no_host_are_refused() {
    for (address, reason) in [
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "240.0.0.0/4"),
        ("0.1.2.3", "0.0.0.0/8"),
        ("[::ffff:127.0.0.1]", "IPv4-mapped"),
        ("[::ffff:203.0.113.10]", "IPv4-mapped"),
    ] {
        let endpoint = format!("{address}:6443");
        let manifest = example_with(
            "endpoint: 203.0.113.10:6443",
            &format!("endpoint: '{endpoint}'"),
        );
        assert_refused(&manifest, "spec.apiServer.endpoint", &endpoint, reason);
        let san = address.trim_matches(['[', ']']);
        let manifest = example_with(
            "- api.tenant-a.example.com",
            &format!("- api.tenant-a.example.com\n      - '{san}'"),
        );
        assert_refused(&manifest, "spec.apiServer.certSANs[1]", san, reason);
    }
    // A SAN may name the loopback address (a port-forward); the endpoint may not.
    let manifest = example_with("- api.tenant-a.example.com", "- 127.0.0.1");
    assert!(validate(&manifest).is_ok());
}

#[test]
fn a_mapped_endpoint_is_refused_in_an_ipv6_tenant_too() {
    let text = EXAMPLE
        .replace("      loadBalancerIP: 203.0.113.10\n", "")
        .replace("serviceCIDR: 10.96.0.0/12", "serviceCIDR: fd00:10:96::/108")
        .replace("podCIDR: 10.244.0.0/16", "podCIDR: fd00:10:244::/56")
        .replace(
            "endpoint: 203.0.113.10:6443",
            "endpoint: '[::ffff:203.0.113.10]:6443'",
        );
    let manifest = TenantControlPlane::from_yaml(&text).unwrap();
    assert_refused(
        &manifest,
        "spec.apiServer.endpoint",
        "[::ffff:203.0.113.10]:6443",
        "IPv4-mapped",
    );
}

#[test]
fn tolerations_follow_kubernetes_rules() {
    for (toleration, field, value, reason) in [
        (
            "- key: a\n    operator: Exists\n    value: b",
            "spec.tolerations[0].value",
            "b",
            "must be empty when the operator is Exists",
        ),
        (
            "- key: a\n    value: b\n    effect: NoSchedule\n    tolerationSeconds: 30",
            "spec.tolerations[0].tolerationSeconds",
            "30",
            "only to the effect NoExecute",
        ),
        (
            "- operator: Equal\n    value: b",
            "spec.tolerations[0].key",
            "",
            "must not be empty unless the operator is Exists",
        ),
        (
            "- value: b",
            "spec.tolerations[0].key",
            "",
            "must not be empty",
        ),
        (
            "- key: a\n    value: 'not a label value!'",
            "spec.tolerations[0].value",
            "not a label value!",
            "not a valid label value",
        ),
    ] {
        let manifest = example_with(END, &format!("{END}  tolerations:\n  {toleration}\n"));
        assert_refused(&manifest, field, value, reason);
    }
    for good in [
        "- operator: Exists",
        "- key: a\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 30",
        "- key: a\n    value: b\n    effect: NoSchedule",
    ] {
        let manifest = example_with(END, &format!("{END}  tolerations:\n  {good}\n"));
        assert!(validate(&manifest).is_ok(), "{good}");
    }
}

#[test]
fn the_etcd_volume_is_between_1gi_and_1ti() {
    for (size, reason) in [
        ("1m", "at least 1Gi"),
        ("'4'", "at least 1Gi"),
        ("1023Mi", "at least 1Gi"),
        ("1e100", "at most 1Ti"),
        ("2Ti", "at most 1Ti"),
        ("'0'", "more than zero"),
        ("ten", "not a Kubernetes quantity"),
    ] {
        let manifest = example_with("size: 10Gi", &format!("size: {size}"));
        let written = size.trim_matches('\'');
        assert_refused(&manifest, "spec.etcd.storage.size", written, reason);
    }
    for good in ["1Gi", "1Ti", "1.5e9", "100G"] {
        let manifest = example_with("size: 10Gi", &format!("size: {good}"));
        assert!(validate(&manifest).is_ok(), "{good}");
    }
    let quota = example_with("size: 10Gi", "size: 10Gi\n      quota: 1Mi");
    assert_refused(&quota, "spec.etcd.storage.quota", "1Mi", "at least 64Mi");
    let quota = example_with("size: 10Gi", "size: 10Gi\n      quota: 1e100");
    assert_refused(&quota, "spec.etcd.storage.quota", "1e100", "at most");
}

#[test]
fn the_storage_class_is_a_dns_subdomain() {
    for bad in ["Bad Class!", "", "UPPER", "a_b"] {
        let manifest = example_with(
            "size: 10Gi",
            &format!("size: 10Gi\n      storageClassName: '{bad}'"),
        );
        assert_refused(
            &manifest,
            "spec.etcd.storage.storageClassName",
            bad,
            "DNS-1123 subdomain",
        );
    }
    let manifest = example_with(
        "size: 10Gi",
        "size: 10Gi\n      storageClassName: csi-cinder.ssd",
    );
    assert!(validate(&manifest).is_ok());
}

#[test]
fn resources_name_known_resources_and_no_limit_below_its_request() {
    let with = |resources: &str| {
        example_with(
            "  controllerManager:\n",
            &format!("    resources:\n{resources}  controllerManager:\n"),
        )
    };
    assert_refused(
        &with("      requests:\n        gpu: '1'\n"),
        "spec.apiServer.resources.requests",
        "gpu",
        "cpu, memory, ephemeral-storage",
    );
    assert_refused(
        &with("      limits:\n        memroy: 1Gi\n"),
        "spec.apiServer.resources.limits",
        "memroy",
        "not a resource",
    );
    assert_refused(
        &with("      requests:\n        memory: 1Gi\n      limits:\n        memory: 512Mi\n"),
        "spec.apiServer.resources.limits.memory",
        "512Mi",
        "below spec.apiServer.resources.requests.memory (1Gi)",
    );
    assert_refused(
        &with("      requests:\n        cpu: '1'\n      limits:\n        cpu: 999m\n"),
        "spec.apiServer.resources.limits.cpu",
        "999m",
        "below",
    );
    assert_refused(
        &with("      requests:\n        cpu: 1e100\n"),
        "spec.apiServer.resources.requests.cpu",
        "1e100",
        "too large",
    );
    let good = with(
        "      requests:\n        cpu: 500m\n        memory: 1Gi\n        ephemeral-storage: 1Gi\n      \
         limits:\n        cpu: '0.5'\n        memory: 1073741824\n",
    );
    assert!(validate(&good).is_ok());
}

#[test]
fn labels_and_annotations_of_the_manifest_follow_kubernetes() {
    let with = |metadata: &str| {
        example_with(
            "  name: tenant-a\n",
            &format!("  name: tenant-a\n{metadata}"),
        )
    };
    assert_refused(
        &with("  labels:\n    'bad key!': x\n"),
        "metadata.labels",
        "bad key!",
        "not a valid key",
    );
    assert_refused(
        &with("  labels:\n    team: 'not ok!'\n"),
        "metadata.labels.team",
        "not ok!",
        "not a valid label value",
    );
    assert_refused(
        &with("  annotations:\n    'example.com/': x\n"),
        "metadata.annotations",
        "example.com/",
        "not a valid key",
    );
    let big = "x".repeat(10_000_000);
    let error = refused(&with(&format!(
        "  annotations:\n    small: x\n    big: {big}\n"
    )));
    assert_eq!(
        (error.field.as_str(), error.value.as_str()),
        ("metadata.annotations", "big")
    );
    assert!(error.reason.contains("at most 262144 (256 KiB)"), "{error}");
    let fits = "x".repeat(256 * 1024 - 3);
    let good = with(&format!(
        "  labels:\n    example.com/team: a-b.c_d\n  annotations:\n    big: {fits}\n"
    ));
    assert!(validate(&good).is_ok());
}

#[test]
fn the_pod_cidr_holds_at_least_one_node_range() {
    for (cidr, reason) in [
        ("10.244.0.0/28", "smaller than one node's range (/24"),
        ("10.244.0.0/25", "at most /24"),
    ] {
        let manifest = example_with("podCIDR: 10.244.0.0/16", &format!("podCIDR: {cidr}"));
        assert_refused(&manifest, "spec.networking.podCIDR", cidr, reason);
    }
    for good in ["10.244.0.0/24", "10.244.0.0/23", "172.16.0.0/12"] {
        let manifest = example_with("podCIDR: 10.244.0.0/16", &format!("podCIDR: {good}"));
        assert!(validate(&manifest).is_ok(), "{good}");
    }
    // The node range as extraArgs set it.
    let small_nodes = example_with("podCIDR: 10.244.0.0/16", "podCIDR: 10.244.0.0/26");
    assert!(validate(&small_nodes).is_err());
    let text = EXAMPLE
        .replace("podCIDR: 10.244.0.0/16", "podCIDR: 10.244.0.0/26")
        .replace(
            "  scheduler:\n",
            "    extraArgs:\n      node-cidr-mask-size: '28'\n  scheduler:\n",
        );
    let manifest = TenantControlPlane::from_yaml(&text).unwrap();
    assert_eq!(validate(&manifest).map(|_| ()), Ok(()));
    let text = EXAMPLE.replace(
        "  scheduler:\n",
        "    extraArgs:\n      node-cidr-mask-size-ipv4: x\n  scheduler:\n",
    );
    let manifest = TenantControlPlane::from_yaml(&text).unwrap();
    assert_refused(
        &manifest,
        "spec.controllerManager.extraArgs.node-cidr-mask-size-ipv4",
        "x",
        "not a prefix length",
    );
}

#[test]
fn an_ipv6_pod_cidr_is_between_a_48_and_a_64() {
    let ipv6 = |pod_cidr: &str| {
        let text = EXAMPLE
            .replace("    endpoint: 203.0.113.10:6443\n", "")
            .replace("      loadBalancerIP: 203.0.113.10\n", "")
            .replace("serviceCIDR: 10.96.0.0/12", "serviceCIDR: fd00:10:96::/108")
            .replace("podCIDR: 10.244.0.0/16", &format!("podCIDR: {pod_cidr}"));
        TenantControlPlane::from_yaml(&text).unwrap()
    };
    for good in ["fd00:10:244::/48", "fd00:10:244::/56", "fd00:10:244::/64"] {
        assert_eq!(validate(&ipv6(good)).map(|_| ()), Ok(()), "{good}");
    }
    assert_refused(
        &ipv6("fd01::/32"),
        "spec.networking.podCIDR",
        "fd01::/32",
        "at least /48",
    );
    assert_refused(
        &ipv6("fd00:10:244::/80"),
        "spec.networking.podCIDR",
        "fd00:10:244::/80",
        "at most /64",
    );
}

#[test]
fn at_most_100_cert_sans() {
    let sans = |count: usize| {
        let list: String = (0..count)
            .map(|i| format!("      - n{i}.example.com\n"))
            .collect();
        example_with("      - api.tenant-a.example.com\n", &list)
    };
    assert!(validate(&sans(100)).is_ok());
    assert_refused(
        &sans(100_000),
        "spec.apiServer.certSANs[100]",
        "n100.example.com",
        "one more than the 100",
    );
}

#[test]
fn the_service_clusters_cidrs_are_no_default_route() {
    let manifest = TenantControlPlane::from_yaml(EXAMPLE).unwrap();
    let endpoint = offline_endpoint(&manifest).unwrap();
    for bad in ["0.0.0.0/0", "::/0"] {
        let service_cluster = ServiceCluster {
            cidrs: vec!["10.0.0.0/8".parse().unwrap(), bad.parse().unwrap()],
            ..ServiceCluster::default()
        };
        let error = resolve(
            &manifest,
            &endpoint,
            BootstrapToken::generate(),
            None,
            OffsetDateTime::UNIX_EPOCH,
            &service_cluster,
        )
        .unwrap_err();
        assert_eq!(
            (error.field.as_str(), error.value.as_str()),
            ("--service-cluster-cidrs", bad)
        );
        assert!(error.reason.contains("default route"), "{error}");
    }
}

#[test]
fn extra_args_keep_leader_election_and_the_probes_paths_only() {
    for (component, flag, value) in [
        ("controllerManager", "leader-elect", "false"),
        ("scheduler", "leader-elect", "false"),
        ("scheduler", "authorization-always-allow-paths", "/*"),
        (
            "controllerManager",
            "authorization-always-allow-paths",
            "/healthz,/metrics,/readyz,/livez",
        ),
        ("scheduler", "authorization-always-allow-paths", "/healthz"),
    ] {
        let next = if component == "scheduler" {
            "  etcd:\n"
        } else {
            "  scheduler:\n"
        };
        let manifest = example_with(
            next,
            &format!("    extraArgs:\n      {flag}: '{value}'\n{next}"),
        );
        assert_refused(
            &manifest,
            &format!("spec.{component}.extraArgs.{flag}"),
            value,
            &format!("--{flag} must"),
        );
    }
    let manifest = example_with(
        "  etcd:\n",
        "    extraArgs:\n      authorization-always-allow-paths: /livez,/readyz,/healthz\n      \
         leader-elect: 'true'\n  etcd:\n",
    );
    assert!(validate(&manifest).is_ok());
}

#[test]
fn errors_quote_values_as_written() {
    // A duration's Display would say "375d" and "30d".
    let manifest = example_with("renewBefore: 720h", "renewBefore: 9000h");
    let error = refused(&manifest);
    assert_eq!(
        error.to_string(),
        "spec.pki.renewBefore \"9000h\": must be shorter than spec.pki.certificateValidity (8760h)"
    );
    // An endpoint as written, not as parsed and printed again.
    let manifest = example_with("endpoint: 203.0.113.10:6443", "endpoint: 127.0.0.1");
    assert_refused(
        &manifest,
        "spec.apiServer.endpoint",
        "127.0.0.1",
        "loopback",
    );
    let manifest = example_with("podCIDR: 10.244.0.0/16", "podCIDR: 10.96.0.0/16");
    assert_refused(
        &manifest,
        "spec.networking.podCIDR",
        "10.96.0.0/16",
        "overlaps spec.networking.serviceCIDR 10.96.0.0/12",
    );
    // A value too long to quote whole is cut, with its length.
    let long = "x".repeat(1000);
    let error = invalid("f", &long, "why");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "f \"{}\"… (1000 bytes): why",
            "x".repeat(MAX_QUOTED)
        )),
        "{text}"
    );
    assert_eq!(invalid("f", "a\nb", "why").to_string(), "f \"a\\nb\": why");
}

/// `spec.backup` is validated with the operator's defaults, as it is
/// rendered: a schedule alone is fine where the operator has a store, and
/// refused (naming the store) where it has none.
#[test]
fn backup_fields_take_the_operators_defaults() {
    let manifest = example_with(
        END,
        &format!("{END}  backup:\n    schedule: \"0 0 1 1 *\"\n"),
    );
    let field = |e: SpecError| (e.field, e.reason);
    let (name, reason) = field(validate(&manifest).map(|_| ()).unwrap_err());
    assert_eq!(name, "spec.backup.store");
    assert!(reason.contains("no default destination"), "{reason}");
    let mut cluster = ServiceCluster::default();
    cluster.backup.store = Some(gantry_renderer::BackupStore {
        endpoint: "https://s3.example".into(),
        port: 443,
        bucket: "backups".into(),
        region: "us-east-1".into(),
        prefix: "gantry".into(),
        credentials_secret: gantry_renderer::BACKUP_CREDENTIALS_SECRET.into(),
        ca_bundle: None,
    });
    let (name, reason) = field(validate_for(&manifest, &cluster).map(|_| ()).unwrap_err());
    assert_eq!(name, "spec.backup");
    assert!(reason.contains("no platform public key"), "{reason}");
    cluster.backup.platform_public_key = Some("gantry-platform-public-key-v1:AQ==".into());
    assert!(validate_for(&manifest, &cluster).is_ok());
    for (bad, named) in [
        ("    schedule: \"61 * * * *\"\n", "spec.backup.schedule"),
        ("    keep: 0\n", "spec.backup.keep"),
        (
            "    store:\n      endpoint: ftp://s3\n      bucket: backups\n      credentialsSecret: s3\n",
            "spec.backup.store.endpoint",
        ),
        (
            "    store:\n      endpoint: https://s3\n      bucket: Backups\n      credentialsSecret: s3\n",
            "spec.backup.store.bucket",
        ),
    ] {
        let manifest = example_with(END, &format!("{END}  backup:\n{bad}"));
        let error = validate_for(&manifest, &cluster).map(|_| ()).unwrap_err();
        assert_eq!(error.field, named, "{bad}: {error}");
    }
}
