//! Command-line flags of the control-plane components: gantry's defaults
//! (every flag `kubeadm-join.md` requires, and the CIS items that are a
//! flag), merged with the spec's `extraArgs`. What `extraArgs` may not set
//! is `gantry_api::extra_args`, the list the CRD's CEL rules read too.

use std::collections::BTreeMap;

use gantry_api::extra_args::{self, FlagRule};

use crate::error::RenderError;
use crate::input::RenderInput;

/// Where the control-plane pods find their files (Secrets mounted read-only).
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
pub const ETCD_PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";
pub const SCHEDULER_KUBECONFIG: &str = "/etc/kubernetes/scheduler.conf";
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// etcd's plain-HTTP metrics and health port, for probes.
pub const ETCD_METRICS_PORT: u16 = 2381;
/// Where the apiserver finds gantry's audit policy and authentication
/// configuration: ConfigMap `kube-apiserver-config`, from `renderer/files/`.
pub const API_SERVER_CONFIG_DIR: &str = "/etc/kubernetes/config";
/// The apiserver's `EgressSelectorConfiguration`, in [`API_SERVER_CONFIG_DIR`].
pub const EGRESS_SELECTOR_FILE: &str = "egress-selector.yaml";
/// Where the apiserver and the konnectivity server share the server's Unix
/// socket. It is also the apiserver's working directory, because the socket
/// is named by a bare file name: the apiserver's gRPC client sends the name
/// as the HTTP/2 `:authority`, escaping every `/` as `%2F`, which the
/// server's HTTP/2 stack (h2) refuses as malformed.
pub const KONNECTIVITY_SOCKET_DIR: &str = "/run/konnectivity";
pub const KONNECTIVITY_SOCKET: &str = "konnectivity-server.socket";
/// Where the apiserver finds the key of Secrets at rest (Secret `encryption-config`).
pub const ENCRYPTION_CONFIG_DIR: &str = "/etc/kubernetes/encryption";

/// The TLS 1.2 cipher suites of every serving port (CIS 1.2.29): ECDHE key
/// exchange with AEAD ciphers only. TLS 1.3's suites are fixed by Go and
/// all strong.
fn tls_cipher_suites() -> String {
    extra_args::TLS_CIPHER_SUITES.join(",")
}

/// The DNS name of etcd member `index` (`etcd-0.etcd.<ns>.svc`), covered by
/// the `*.etcd.<ns>.svc` SAN of the etcd certificates.
pub fn etcd_member_host(input: &RenderInput, index: u32) -> String {
    format!("etcd-{index}.etcd.{}.svc", input.namespace)
}

pub fn api_server(input: &RenderInput) -> Result<Vec<String>, RenderError> {
    let pki = |file: &str| format!("{PKI_DIR}/{file}");
    let config = |file: &str| format!("{API_SERVER_CONFIG_DIR}/{file}");
    let etcd_servers: Vec<String> = (0..input.etcd.replicas)
        .map(|i| format!("https://{}:{ETCD_CLIENT_PORT}", etcd_member_host(input, i)))
        .collect();
    let defaults = [
        ("advertise-address", input.advertise_address.to_string()),
        ("allow-privileged", "true".into()),
        // Audit events as JSON lines on stdout, beside the apiserver's own
        // log on stderr: shipped by whatever ships the service cluster's
        // container logs (docs/security.md).
        ("audit-log-path", "-".into()),
        ("audit-policy-file", config("audit-policy.yaml")),
        (
            "authentication-config",
            config("authentication-config.yaml"),
        ),
        ("authorization-mode", "Node,RBAC".into()),
        ("client-ca-file", pki("ca.crt")),
        (
            "enable-admission-plugins",
            extra_args::ADMISSION_PLUGINS.join(","),
        ),
        ("enable-bootstrap-token-auth", "true".into()),
        // Secrets encrypted at rest with the tenant's own key (CIS 1.2.27);
        // an edited key (rotation) is picked up without a restart.
        (
            "encryption-provider-config",
            format!("{ENCRYPTION_CONFIG_DIR}/encryption-config.yaml"),
        ),
        ("encryption-provider-config-automatic-reload", "true".into()),
        ("etcd-cafile", pki("etcd/ca.crt")),
        ("etcd-certfile", pki("apiserver-etcd-client.crt")),
        ("etcd-keyfile", pki("apiserver-etcd-client.key")),
        ("etcd-servers", etcd_servers.join(",")),
        (
            "kubelet-client-certificate",
            pki("apiserver-kubelet-client.crt"),
        ),
        ("kubelet-client-key", pki("apiserver-kubelet-client.key")),
        // Kubelets' serving certificates are signed by the tenant CA
        // (`serverTLSBootstrap`), so the apiserver verifies them (CIS 1.2.5).
        ("kubelet-certificate-authority", pki("ca.crt")),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".into(),
        ),
        ("profiling", "false".into()),
        ("proxy-client-cert-file", pki("front-proxy-client.crt")),
        ("proxy-client-key-file", pki("front-proxy-client.key")),
        ("requestheader-allowed-names", "front-proxy-client".into()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".into(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".into()),
        ("requestheader-username-headers", "X-Remote-User".into()),
        ("secure-port", input.endpoint.port.to_string()),
        (
            "service-account-issuer",
            format!(
                "https://kubernetes.default.svc.{}",
                input.networking.dns_domain
            ),
        ),
        // Tokens live as long as they say (CIS 1.2.x): no silent year-long
        // extension of the one-hour tokens that pods get.
        ("service-account-extend-token-expiration", "false".into()),
        ("service-account-key-file", pki("sa.pub")),
        ("service-account-signing-key-file", pki("sa.key")),
        (
            "service-cluster-ip-range",
            input.networking.service_cidr.to_string(),
        ),
        ("tls-cert-file", pki("apiserver.crt")),
        ("tls-cipher-suites", tls_cipher_suites()),
        ("tls-min-version", "VersionTLS12".into()),
        ("tls-private-key-file", pki("apiserver.key")),
    ];
    let mut defaults = defaults.to_vec();
    if input.konnectivity.is_some() {
        // Dials into the tenant cluster (kubelets, webhooks, aggregated
        // APIs, Services) go through the konnectivity server beside it.
        defaults.push(("egress-selector-config-file", config(EGRESS_SELECTOR_FILE)));
    }
    merge(
        "spec.apiServer.extraArgs",
        &defaults,
        extra_args::API_SERVER,
        &input.api_server.extra_args,
    )
}

pub fn controller_manager(input: &RenderInput) -> Result<Vec<String>, RenderError> {
    let pki = |file: &str| format!("{PKI_DIR}/{file}");
    let defaults = [
        ("allocate-node-cidrs", "true".into()),
        (
            "authentication-kubeconfig",
            CONTROLLER_MANAGER_KUBECONFIG.into(),
        ),
        (
            "authorization-kubeconfig",
            CONTROLLER_MANAGER_KUBECONFIG.into(),
        ),
        ("client-ca-file", pki("ca.crt")),
        ("cluster-cidr", input.networking.pod_cidr.to_string()),
        ("cluster-name", input.name.clone()),
        ("cluster-signing-cert-file", pki("ca.crt")),
        ("cluster-signing-key-file", pki("ca.key")),
        ("controllers", "*,bootstrapsigner,tokencleaner".into()),
        ("kubeconfig", CONTROLLER_MANAGER_KUBECONFIG.into()),
        ("leader-elect", "true".into()),
        ("profiling", "false".into()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        ("root-ca-file", pki("ca.crt")),
        ("service-account-private-key-file", pki("sa.key")),
        (
            "service-cluster-ip-range",
            input.networking.service_cidr.to_string(),
        ),
        // CIS 1.3.1: finished pods are collected long before the upstream
        // default of 12,500, which a small tenant's etcd should not hold.
        ("terminated-pod-gc-threshold", "1000".into()),
        ("tls-cipher-suites", tls_cipher_suites()),
        ("tls-min-version", "VersionTLS12".into()),
        ("use-service-account-credentials", "true".into()),
    ];
    merge(
        "spec.controllerManager.extraArgs",
        &defaults,
        extra_args::CONTROLLER_MANAGER_AND_SCHEDULER,
        &input.controller_manager.extra_args,
    )
}

pub fn scheduler(input: &RenderInput) -> Result<Vec<String>, RenderError> {
    let defaults = [
        (
            "authentication-kubeconfig",
            SCHEDULER_KUBECONFIG.to_string(),
        ),
        ("authorization-kubeconfig", SCHEDULER_KUBECONFIG.into()),
        ("kubeconfig", SCHEDULER_KUBECONFIG.into()),
        ("leader-elect", "true".into()),
        ("profiling", "false".into()),
        ("tls-cipher-suites", tls_cipher_suites()),
        ("tls-min-version", "VersionTLS12".into()),
    ];
    merge(
        "spec.scheduler.extraArgs",
        &defaults,
        extra_args::CONTROLLER_MANAGER_AND_SCHEDULER,
        &input.scheduler.extra_args,
    )
}

/// etcd's flags: client and peer mTLS, one member per StatefulSet pod, and
/// the two that kubeadm sets for etcd 3.6 and later (every supported minor's
/// etcd): the corruption check at start-up and watch progress notifications.
/// `$(POD_NAME)` is filled in by the kubelet from the pod's downward-API env.
pub fn etcd(input: &RenderInput) -> Vec<String> {
    let pki = |file: &str| format!("{ETCD_PKI_DIR}/{file}");
    let member = "$(POD_NAME)";
    let own_host = format!("{member}.etcd.{}.svc", input.namespace);
    let initial_cluster: Vec<String> = (0..input.etcd.replicas)
        .map(|i| {
            format!(
                "etcd-{i}=https://{}:{ETCD_PEER_PORT}",
                etcd_member_host(input, i)
            )
        })
        .collect();
    [
        ("name", member.to_string()),
        ("data-dir", format!("{ETCD_DATA_DIR}/data")),
        (
            "listen-client-urls",
            format!("https://0.0.0.0:{ETCD_CLIENT_PORT}"),
        ),
        (
            "advertise-client-urls",
            format!("https://{own_host}:{ETCD_CLIENT_PORT}"),
        ),
        (
            "listen-peer-urls",
            format!("https://0.0.0.0:{ETCD_PEER_PORT}"),
        ),
        (
            "initial-advertise-peer-urls",
            format!("https://{own_host}:{ETCD_PEER_PORT}"),
        ),
        ("initial-cluster", initial_cluster.join(",")),
        ("initial-cluster-state", "new".into()),
        ("initial-cluster-token", input.namespace.clone()),
        (
            "listen-metrics-urls",
            format!("http://0.0.0.0:{ETCD_METRICS_PORT}"),
        ),
        ("client-cert-auth", "true".into()),
        ("trusted-ca-file", pki("ca.crt")),
        ("cert-file", pki("server.crt")),
        ("key-file", pki("server.key")),
        ("peer-client-cert-auth", "true".into()),
        ("peer-trusted-ca-file", pki("ca.crt")),
        ("peer-cert-file", pki("peer.crt")),
        ("peer-key-file", pki("peer.key")),
        ("snapshot-count", "10000".into()),
        // The apiserver compacts every 5 minutes; etcd's own hourly
        // compaction keeps the database bounded should that ever stop.
        ("auto-compaction-mode", "periodic".into()),
        ("auto-compaction-retention", "1h".into()),
        (
            "quota-backend-bytes",
            input.etcd.quota_backend_bytes.to_string(),
        ),
        ("cipher-suites", tls_cipher_suites()),
        ("tls-min-version", "TLS1.2".into()),
        ("feature-gates", "InitialCorruptCheck=true".into()),
        ("watch-progress-notify-interval", "5s".into()),
    ]
    .into_iter()
    .map(|(flag, value)| format!("--{flag}={value}"))
    .collect()
}

/// The pattern of an `extraArgs` name, here and in the CRD: lowercase words
/// joined by `-`. Kubernetes reads `_` as `-`, so `etcd_servers` would slip
/// past the check of gantry's own flags; it is refused instead.
pub const EXTRA_ARG_NAME_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

/// Why `flag` is not an `extraArgs` name, if it is not.
fn flag_name_problem(flag: &str) -> Option<&'static str> {
    if flag.contains('_') {
        return Some("must be written with '-', not '_' (Kubernetes reads '_' as '-')");
    }
    let words_ok = !flag.is_empty()
        && flag.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    (!words_ok).then_some(
        "must be a flag name of lowercase letters, digits and single '-' between them, \
         without leading dashes or '=' (e.g. \"audit-log-maxage\")",
    )
}

/// Defaults overlaid with `extra`, sorted by flag name, as `--flag=value`.
fn merge(
    field: &'static str,
    defaults: &[(&str, String)],
    policy: &[FlagRule],
    extra: &BTreeMap<String, String>,
) -> Result<Vec<String>, RenderError> {
    let mut flags: BTreeMap<&str, &str> = defaults.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (flag, value) in extra {
        if let Some(reason) = flag_name_problem(flag) {
            return Err(RenderError::InvalidField {
                field: field.into(),
                value: flag.clone(),
                reason: reason.into(),
            });
        }
        if value.chars().any(char::is_control) {
            return Err(RenderError::InvalidField {
                field: format!("{field}.{flag}"),
                value: value.clone(),
                reason: "must not hold control characters (a newline, a tab, ...)".into(),
            });
        }
        if let Some(why) = extra_args::refusal(policy, flag, value) {
            return Err(RenderError::InvalidField {
                field: format!("{field}.{flag}"),
                value: value.clone(),
                reason: format!("--{flag} {why}"),
            });
        }
        flags.insert(flag, value);
    }
    Ok(flags
        .into_iter()
        .map(|(flag, value)| format!("--{flag}={value}"))
        .collect())
}
