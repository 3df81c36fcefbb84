//! The rendered service and tenant sets: content, security settings, flags,
//! errors, and golden snapshots (review every template change as a diff).

mod fixture;

use fixture::find;

use std::collections::BTreeSet;

use gantry_pki::San;
use gantry_renderer::{RenderError, Rendered, RenderedObject, TEMPLATES, chart, render};
use serde_json::Value;

fn rendered() -> Rendered {
    let input = fixture::input();
    render(&input, &fixture::pki(&input)).unwrap()
}

fn container_args(workload: &Value) -> Vec<String> {
    let container = &workload["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    if let Some(rest) = container["args"].as_array() {
        args.extend(rest.iter().map(|a| a.as_str().unwrap().to_string()));
    }
    args
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
}

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
        ("Secret", "apiserver-certs"),
        ("Secret", "etcd-certs"),
        ("Secret", "admin-kubeconfig"),
        ("Secret", "controller-manager-kubeconfig"),
        ("Secret", "scheduler-kubeconfig"),
        ("Service", "etcd"),
        ("StatefulSet", "etcd"),
        ("PodDisruptionBudget", "etcd"),
        ("Service", "kube-apiserver"),
        ("Deployment", "kube-apiserver"),
        ("PodDisruptionBudget", "kube-apiserver"),
        ("Deployment", "kube-controller-manager"),
        ("Deployment", "kube-scheduler"),
        ("NetworkPolicy", "default-deny-ingress"),
        ("NetworkPolicy", "allow-kube-apiserver"),
        ("NetworkPolicy", "allow-etcd-from-namespace"),
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
fn components_carry_every_flag_kubeadm_join_needs() {
    let rendered = rendered();
    let apiserver = container_args(find(&rendered.service, "Deployment", "kube-apiserver"));
    for (name, value) in [
        ("enable-bootstrap-token-auth", "true"),
        ("client-ca-file", "/etc/kubernetes/pki/ca.crt"),
        ("authorization-mode", "Node,RBAC"),
        ("enable-admission-plugins", "NodeRestriction"),
        (
            "kubelet-client-certificate",
            "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        ),
        ("service-account-key-file", "/etc/kubernetes/pki/sa.pub"),
        (
            "service-account-signing-key-file",
            "/etc/kubernetes/pki/sa.key",
        ),
        (
            "service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ),
        ("service-cluster-ip-range", "10.96.0.0/12"),
        (
            "requestheader-client-ca-file",
            "/etc/kubernetes/pki/front-proxy-ca.crt",
        ),
        ("requestheader-allowed-names", "front-proxy-client"),
        ("advertise-address", "203.0.113.10"),
        ("secure-port", "6443"),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname",
        ),
        (
            "etcd-servers",
            "https://etcd-0.etcd.tcp-tenant-a.svc:2379,https://etcd-1.etcd.tcp-tenant-a.svc:2379,https://etcd-2.etcd.tcp-tenant-a.svc:2379",
        ),
    ] {
        assert_eq!(
            flag(&apiserver, name),
            Some(value),
            "kube-apiserver --{name}"
        );
    }
    for name in [
        "tls-cert-file",
        "proxy-client-cert-file",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
        "kubelet-client-key",
    ] {
        assert!(flag(&apiserver, name).is_some(), "kube-apiserver --{name}");
    }
    let manager = container_args(find(
        &rendered.service,
        "Deployment",
        "kube-controller-manager",
    ));
    for (name, value) in [
        ("controllers", "*,bootstrapsigner,tokencleaner"),
        ("cluster-signing-cert-file", "/etc/kubernetes/pki/ca.crt"),
        ("cluster-signing-key-file", "/etc/kubernetes/pki/ca.key"),
        ("root-ca-file", "/etc/kubernetes/pki/ca.crt"),
        (
            "service-account-private-key-file",
            "/etc/kubernetes/pki/sa.key",
        ),
        ("use-service-account-credentials", "true"),
        ("leader-elect", "true"),
        ("allocate-node-cidrs", "true"),
        ("cluster-cidr", "10.244.0.0/16"),
        ("kubeconfig", "/etc/kubernetes/controller-manager.conf"),
        (
            "authentication-kubeconfig",
            "/etc/kubernetes/controller-manager.conf",
        ),
        (
            "authorization-kubeconfig",
            "/etc/kubernetes/controller-manager.conf",
        ),
    ] {
        assert_eq!(
            flag(&manager, name),
            Some(value),
            "kube-controller-manager --{name}"
        );
    }
    let scheduler = container_args(find(&rendered.service, "Deployment", "kube-scheduler"));
    assert_eq!(flag(&scheduler, "leader-elect"), Some("true"));
    assert_eq!(
        flag(&scheduler, "kubeconfig"),
        Some("/etc/kubernetes/scheduler.conf")
    );
    let etcd = container_args(find(&rendered.service, "StatefulSet", "etcd"));
    assert!(
        etcd.iter().all(|a| !a.starts_with("--experimental")),
        "etcd flags must run on 3.5 and 3.6: {etcd:?}"
    );
    assert_eq!(flag(&etcd, "client-cert-auth"), Some("true"));
    assert_eq!(flag(&etcd, "peer-client-cert-auth"), Some("true"));
}

#[test]
fn extra_args_merge_over_defaults_but_owned_flags_are_refused() {
    let mut input = fixture::input();
    input
        .api_server
        .extra_args
        .insert("authorization-mode".into(), "Node,RBAC,Webhook".into());
    input
        .api_server
        .extra_args
        .insert("audit-log-maxage".into(), "30".into());
    let rendered = render(&input, &fixture::pki(&input)).unwrap();
    let args = container_args(find(&rendered.service, "Deployment", "kube-apiserver"));
    assert_eq!(flag(&args, "authorization-mode"), Some("Node,RBAC,Webhook"));
    assert_eq!(flag(&args, "audit-log-maxage"), Some("30"));
    assert_eq!(
        args.iter()
            .filter(|a| a.starts_with("--authorization-mode="))
            .count(),
        1
    );

    let cases = [
        ("apiServer", "etcd-servers"),
        ("apiServer", "tls-cert-file"),
        ("apiServer", "service-account-key-file"),
        ("apiServer", "enable-bootstrap-token-auth"),
        ("apiServer", "advertise-address"),
        ("apiServer", "secure-port"),
        ("controllerManager", "cluster-signing-key-file"),
        ("scheduler", "kubeconfig"),
    ];
    for (component, owned) in cases {
        let mut input = fixture::input();
        let extra = match component {
            "apiServer" => &mut input.api_server.extra_args,
            "controllerManager" => &mut input.controller_manager.extra_args,
            _ => &mut input.scheduler.extra_args,
        };
        extra.insert(owned.into(), "x".into());
        let err = render(&input, &fixture::pki(&input)).unwrap_err();
        assert!(matches!(err, RenderError::InvalidField { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "spec.{component}.extraArgs.{owned} \"x\": --{owned} is set by gantry and cannot be overridden"
            )
        );
    }
    // Names and values that once slipped through: `_` is read as `-` by
    // Kubernetes (so `etcd_servers` was --etcd-servers), `=` and newlines
    // reach the command line, and etcd-servers-overrides redirects etcd.
    let refused = [
        (
            "--v",
            "4",
            "spec.apiServer.extraArgs \"--v\": must be a flag name of lowercase letters",
        ),
        (
            "etcd_servers",
            "https://elsewhere:2379",
            "spec.apiServer.extraArgs \"etcd_servers\": must be written with '-', not '_'",
        ),
        (
            "client_ca_file",
            "/x",
            "spec.apiServer.extraArgs \"client_ca_file\": must be written with '-'",
        ),
        (
            "v=4",
            "4",
            "spec.apiServer.extraArgs \"v=4\": must be a flag name",
        ),
        (
            "audit-log-path\n",
            "x",
            "spec.apiServer.extraArgs \"audit-log-path\\n\": must be a flag name",
        ),
        (
            "Audit-Log-Path",
            "x",
            "spec.apiServer.extraArgs \"Audit-Log-Path\": must be a flag name",
        ),
        (
            "audit--log",
            "x",
            "spec.apiServer.extraArgs \"audit--log\": must be a flag name",
        ),
        (
            "v",
            "4\n--etcd-servers=https://elsewhere:2379",
            "spec.apiServer.extraArgs.v \"4\\n--etcd-servers=https://elsewhere:2379\": must not hold control characters",
        ),
        (
            "etcd-servers-overrides",
            "/events#https://elsewhere:2379",
            "spec.apiServer.extraArgs.etcd-servers-overrides \"/events#https://elsewhere:2379\": --etcd-servers-overrides is set by gantry",
        ),
    ];
    for (flag, value, expected) in refused {
        let mut input = fixture::input();
        input
            .api_server
            .extra_args
            .insert(flag.into(), value.into());
        let err = render(&input, &fixture::pki(&input))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(expected), "{flag:?}: {err}");
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
        rendered.service.len()
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
