//! The flags of the control-plane components: what kubeadm join needs, the
//! CIS items that are a flag, and how `extraArgs` merge over gantry's own.

mod fixture;

use fixture::{container_args, find, flag, rendered};

use gantry_renderer::{RenderError, render};

#[test]
fn components_carry_every_flag_kubeadm_join_needs() {
    let rendered = rendered();
    let apiserver = container_args(find(&rendered.service, "Deployment", "kube-apiserver"));
    for (name, value) in [
        ("enable-bootstrap-token-auth", "true"),
        ("client-ca-file", "/etc/kubernetes/pki/ca.crt"),
        ("authorization-mode", "Node,RBAC"),
        (
            "enable-admission-plugins",
            "NodeRestriction,DenyServiceExternalIPs",
        ),
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
fn extra_args_merge_over_defaults_within_the_policy() {
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
            "spec.apiServer.extraArgs.etcd-servers-overrides \"/events#https://elsewhere:2379\": --etcd-servers-overrides would point resources at another etcd",
        ),
        (
            "authorization-mode",
            "AlwaysAllow",
            "spec.apiServer.extraArgs.authorization-mode \"AlwaysAllow\": --authorization-mode must be Node,RBAC",
        ),
        (
            "enable-admission-plugins",
            "NodeRestriction,DenyServiceExternalIPs,AlwaysAdmit",
            "spec.apiServer.extraArgs.enable-admission-plugins \"NodeRestriction,DenyServiceExternalIPs,AlwaysAdmit\": --enable-admission-plugins must keep NodeRestriction",
        ),
        (
            "advertise-address",
            "192.0.2.1",
            "spec.apiServer.extraArgs.advertise-address \"192.0.2.1\": --advertise-address is set by gantry",
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

/// The CIS control-plane items that are a flag (docs/security.md has the
/// table); what the flags do is proven on the real components in
/// tests/security.rs.
#[test]
fn components_carry_the_cis_flags() {
    let rendered = rendered();
    let args = |kind: &str, name: &str| container_args(find(&rendered.service, kind, name));
    let apiserver = args("Deployment", "kube-apiserver");
    let manager = args("Deployment", "kube-controller-manager");
    let scheduler = args("Deployment", "kube-scheduler");
    let etcd = args("StatefulSet", "etcd");
    for (component, args, name, value) in [
        ("kube-apiserver", &apiserver, "profiling", "false"),
        (
            "kube-apiserver",
            &apiserver,
            "tls-min-version",
            "VersionTLS12",
        ),
        (
            "kube-apiserver",
            &apiserver,
            "service-account-extend-token-expiration",
            "false",
        ),
        ("kube-apiserver", &apiserver, "audit-log-path", "-"),
        (
            "kube-apiserver",
            &apiserver,
            "audit-policy-file",
            "/etc/kubernetes/config/audit-policy.yaml",
        ),
        (
            "kube-apiserver",
            &apiserver,
            "authentication-config",
            "/etc/kubernetes/config/authentication-config.yaml",
        ),
        ("kube-controller-manager", &manager, "profiling", "false"),
        (
            "kube-controller-manager",
            &manager,
            "terminated-pod-gc-threshold",
            "1000",
        ),
        (
            "kube-controller-manager",
            &manager,
            "tls-min-version",
            "VersionTLS12",
        ),
        ("kube-scheduler", &scheduler, "profiling", "false"),
        (
            "kube-scheduler",
            &scheduler,
            "tls-min-version",
            "VersionTLS12",
        ),
        ("etcd", &etcd, "tls-min-version", "TLS1.2"),
        ("etcd", &etcd, "auto-compaction-mode", "periodic"),
    ] {
        assert_eq!(flag(args, name), Some(value), "{component} --{name}");
    }
    for (component, args) in [
        ("kube-apiserver", &apiserver),
        ("kube-controller-manager", &manager),
        ("kube-scheduler", &scheduler),
    ] {
        let ciphers = flag(args, "tls-cipher-suites").unwrap_or_default();
        assert!(
            !ciphers.is_empty() && ciphers.split(',').all(|c| c.starts_with("TLS_ECDHE_")),
            "{component}: only ECDHE suites, got {ciphers:?}"
        );
    }
    assert_eq!(
        flag(&etcd, "cipher-suites"),
        flag(&apiserver, "tls-cipher-suites")
    );
    // Anonymous access is set by the AuthenticationConfiguration alone: the
    // apiserver refuses --anonymous-auth beside it.
    assert_eq!(flag(&apiserver, "anonymous-auth"), None);
    let config = find(&rendered.service, "ConfigMap", "kube-apiserver-config");
    let authentication = config["data"]["authentication-config.yaml"]
        .as_str()
        .unwrap();
    for path in [
        "/livez",
        "/readyz",
        "/healthz",
        "/api/v1/namespaces/kube-public/configmaps/cluster-info",
    ] {
        assert!(
            authentication.contains(&format!("- path: {path}\n")),
            "{path}"
        );
    }
}
