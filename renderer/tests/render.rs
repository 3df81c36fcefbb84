//! The rendered service and tenant sets: content, security settings, errors,
//! and golden snapshots (review every template change as a diff). The
//! components' flags are tested in flags.rs.

mod fixture;

use fixture::{find, rendered};

use std::collections::BTreeSet;

use gantry_pki::San;
use gantry_renderer::{Rendered, RenderedObject, TEMPLATES, chart, render};

#[test]
fn every_template_renders_objects_that_pass_the_typed_check() {
    let rendered = rendered();
    for (_, template, _) in TEMPLATES {
        let count = rendered
            .service
            .iter()
            .chain(&rendered.tenant)
            .filter(|o| o.template == *template)
            .count();
        assert!(count > 0, "{template} rendered nothing");
    }
    // render() already checked each object; check again here so this test fails on its own if that step is skipped.
    for object in rendered.service.iter().chain(&rendered.tenant) {
        assert_eq!(
            gantry_renderer::check_object(&object.value),
            Ok(()),
            "{} {}",
            object.kind,
            object.name
        );
    }
}

#[test]
fn the_service_set_holds_every_object_of_the_architecture() {
    let rendered = rendered();
    let objects: BTreeSet<(String, String)> = rendered
        .service
        .iter()
        .map(|o| (o.kind.clone(), o.name.clone()))
        .collect();
    let expected = [
        ("Namespace", "tcp-tenant-a"),
        ("Secret", "ca"),
        ("Secret", "front-proxy-ca"),
        ("Secret", "etcd-ca"),
        ("Secret", "sa"),
        ("Secret", "encryption-config"),
        ("Secret", "apiserver-certs"),
        ("Secret", "etcd-certs"),
        ("Secret", "admin-kubeconfig"),
        ("Secret", "super-admin-kubeconfig"),
        ("Secret", "operator-kubeconfig"),
        ("Secret", "controller-manager-kubeconfig"),
        ("Secret", "scheduler-kubeconfig"),
        ("Secret", "konnectivity-agent"),
        ("Secret", "etcd-backup-client"),
        ("ConfigMap", "etcd-backup"),
        ("CronJob", "etcd-backup"),
        ("NetworkPolicy", "allow-etcd-backup-egress"),
        ("Service", "etcd"),
        ("StatefulSet", "etcd"),
        ("PodDisruptionBudget", "etcd"),
        ("Service", "kube-apiserver"),
        ("ConfigMap", "kube-apiserver-config"),
        ("Deployment", "kube-apiserver"),
        ("PodDisruptionBudget", "kube-apiserver"),
        ("Deployment", "kube-controller-manager"),
        ("Deployment", "kube-scheduler"),
        ("NetworkPolicy", "default-deny-ingress"),
        ("NetworkPolicy", "allow-kube-apiserver"),
        ("NetworkPolicy", "allow-etcd-from-apiservers-and-peers"),
        ("NetworkPolicy", "allow-etcd-metrics-from-scrapers"),
        ("NetworkPolicy", "default-deny-egress"),
        ("NetworkPolicy", "allow-dns-egress"),
        ("NetworkPolicy", "allow-kube-apiserver-egress"),
        ("NetworkPolicy", "allow-etcd-egress"),
        ("NetworkPolicy", "allow-controllers-egress"),
    ];
    let expected: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    assert_eq!(objects, expected);
    let namespace = find(&rendered.service, "Namespace", "tcp-tenant-a");
    assert_eq!(
        namespace["metadata"]["labels"]["gantry.dev/tenant"],
        "tenant-a"
    );
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for object in &rendered.service {
        if object.kind != "Namespace" {
            assert_eq!(
                object.value["metadata"]["namespace"], "tcp-tenant-a",
                "{} {}",
                object.kind, object.name
            );
        }
    }
}

#[test]
fn control_plane_pods_are_locked_down_and_roll_with_their_secrets() {
    let rendered = rendered();
    for (kind, name) in [
        ("StatefulSet", "etcd"),
        ("Deployment", "kube-apiserver"),
        ("Deployment", "kube-controller-manager"),
        ("Deployment", "kube-scheduler"),
    ] {
        let template = &find(&rendered.service, kind, name)["spec"]["template"];
        let pod = &template["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert_eq!(
            pod["topologySpreadConstraints"][0]["topologyKey"], "kubernetes.io/hostname",
            "{name}"
        );
        let checksum = template["metadata"]["annotations"]["gantry.dev/secrets-checksum"]
            .as_str()
            .unwrap();
        assert_eq!(checksum.len(), 64, "{name}");
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name}"
            );
            assert!(
                container["resources"]["requests"]["cpu"].is_string(),
                "{name} requests CPU"
            );
            assert!(
                container["resources"]["requests"]["memory"].is_string(),
                "{name} requests memory"
            );
        }
    }
    let apiserver = find(&rendered.service, "Deployment", "kube-apiserver");
    assert_eq!(
        apiserver["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let probes = &apiserver["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(probes["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(probes["readinessProbe"]["httpGet"]["path"], "/readyz");
    let service = find(&rendered.service, "Service", "kube-apiserver");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(service["spec"]["ports"][0]["port"], 6443);
}

#[test]
fn a_rotated_certificate_rolls_only_the_pods_that_mount_it() {
    let input = fixture::input();
    let before = render(&input, &fixture::pki(&input)).unwrap();
    let mut spec = fixture::pki_spec(&input);
    spec.extra_sans
        .push(San::Dns("api.tenant-a.example.com".into()));
    let rotated =
        gantry_pki::issue(&spec, &fixture::fixture_files(), fixture::fixture_now()).unwrap();
    let after = render(&input, &rotated.bundle).unwrap();
    let checksum = |set: &Rendered, kind: &str, name: &str| {
        find(&set.service, kind, name)["spec"]["template"]["metadata"]["annotations"]["gantry.dev/secrets-checksum"].clone()
    };
    assert_ne!(
        checksum(&before, "Deployment", "kube-apiserver"),
        checksum(&after, "Deployment", "kube-apiserver")
    );
    for (kind, name) in [
        ("StatefulSet", "etcd"),
        ("Deployment", "kube-controller-manager"),
        ("Deployment", "kube-scheduler"),
    ] {
        assert_eq!(
            checksum(&before, kind, name),
            checksum(&after, kind, name),
            "{name} must not roll"
        );
    }
}

#[test]
fn the_chart_archive_is_deterministic_and_holds_the_service_set() {
    let input = fixture::input();
    let rendered = render(&input, &fixture::pki(&input)).unwrap();
    let first = chart::package(&input.name, input.version, &rendered.service).unwrap();
    let second = chart::package(&input.name, input.version, &rendered.service).unwrap();
    assert_eq!(first, second);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(first.as_slice()));
    let mut names = Vec::new();
    let mut chart_yaml = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path.ends_with("Chart.yaml") {
            std::io::Read::read_to_string(&mut entry, &mut chart_yaml).unwrap();
        }
        names.push(path);
    }
    assert_eq!(
        chart::archive_name("tenant-a", input.version),
        "tenant-a-control-plane-1.35.5.tgz"
    );
    assert!(
        chart_yaml.contains(
            "apiVersion: v2\nname: tenant-a-control-plane\nversion: 1.35.5\nappVersion: \"1.35.5\""
        ),
        "{chart_yaml}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("tenant-a-control-plane/files/"))
            .count(),
        rendered.service.len() - 1,
        "the service set but its Namespace"
    );
    assert!(
        !names.iter().any(|n| n.contains("-namespace-")),
        "{names:?}"
    );
}

fn as_yaml(objects: &[RenderedObject]) -> String {
    objects
        .iter()
        .map(|o| format!("# {}\n{}", o.template, o.to_yaml()))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn snapshot_of_the_service_set() {
    insta::assert_snapshot!("service-set", as_yaml(&rendered().service));
}

#[test]
fn snapshot_of_the_tenant_set() {
    insta::assert_snapshot!("tenant-set", as_yaml(&rendered().tenant));
}

#[test]
fn the_bootstrap_objects_are_those_of_the_full_render() {
    let input = fixture::input();
    let full = render(&input, &fixture::pki(&input)).unwrap();
    let bootstrap =
        gantry_renderer::render_bootstrap(&gantry_renderer::BootstrapInput::from(&input)).unwrap();
    let kinds: Vec<(&str, &str)> = bootstrap
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("Namespace", "tcp-tenant-a"), ("Service", "kube-apiserver")]
    );
    for object in &bootstrap {
        assert_eq!(
            &object.value,
            find(&full.service, &object.kind, &object.name),
            "{} {}",
            object.kind,
            object.name
        );
    }
}
