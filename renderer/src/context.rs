//! The template context, built here in Rust so that the templates stay plain:
//! every value a template prints, already computed and checked.

use gantry_api::labels::{MANAGED_BY, PRIVILEGED_LABEL, TENANT_LABEL};
use gantry_pki::{BootstrapTokenSecret, PkiBundle, jws};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args;
use crate::error::RenderError;
use crate::input::{BootstrapInput, RenderInput};
use crate::secrets::{SecretData, checksum};

/// gantry's audit policy for every tenant apiserver (docs/security.md).
pub const API_SERVER_AUDIT_POLICY: &str = include_str!("../files/audit-policy.yaml");
/// gantry's AuthenticationConfiguration: where anonymous requests may go.
pub const API_SERVER_AUTHENTICATION_CONFIG: &str =
    include_str!("../files/authentication-config.yaml");

/// SHA-256 over the apiserver's configuration files: a pod template
/// annotation, so a gantry release that changes them rolls the apiservers.
fn config_checksum(input: &RenderInput) -> String {
    let mut hasher = Sha256::new();
    hasher.update(API_SERVER_AUDIT_POLICY);
    hasher.update(API_SERVER_AUTHENTICATION_CONFIG);
    if input.konnectivity.is_some() {
        hasher.update(EGRESS_SELECTOR);
    }
    gantry_pki::lower_hex(&hasher.finalize())
}

/// The addresses the masters' egress policy keeps out of reach, by family:
/// the service cluster's own pod and Service CIDRs, and the link-local
/// range, where clouds serve their metadata (169.254.169.254, which hands
/// out credentials) and nodes their local DNS caches.
fn egress_denied(input: &RenderInput) -> Value {
    const LINK_LOCAL: &str = "169.254.0.0/16";
    let cidrs = &input.networking.service_cluster_cidrs;
    let of_family = |v4: bool| -> Vec<String> {
        cidrs
            .iter()
            .filter(|cidr| matches!(cidr, ipnet::IpNet::V4(_)) == v4)
            .map(ToString::to_string)
            .collect()
    };
    let mut ipv4 = of_family(true);
    ipv4.push(LINK_LOCAL.into());
    json!({"ipv4_except": ipv4, "ipv6_except": of_family(false)})
}

/// The apiserver's `EgressSelectorConfiguration` when the tunnel is on: the
/// `cluster` selection (everything the apiserver dials in the tenant's
/// cluster) goes through the konnectivity server's Unix socket, by gRPC.
pub const EGRESS_SELECTOR: &str = "apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: GRPC
      transport:
        uds:
          udsName: konnectivity-server.socket
";

/// Ports of the tunnel's server (beside the apiserver) and agent (on the
/// tenant's nodes) for /healthz, /readyz and /metrics.
pub const KONNECTIVITY_SERVER_HEALTH_PORT: u16 = 8133;
pub const KONNECTIVITY_AGENT_HEALTH_PORT: u16 = 8134;

/// The tunnel's part of the context: `null` when it is off.
fn konnectivity(input: &RenderInput, secrets: &[SecretData]) -> Result<Value, RenderError> {
    use crate::args::{KONNECTIVITY_SOCKET, KONNECTIVITY_SOCKET_DIR, PKI_DIR};
    use crate::input::KONNECTIVITY_PORT;
    let Some(tunnel) = &input.konnectivity else {
        return Ok(Value::Null);
    };
    let agent_address = tunnel.agent_address.clone().ok_or_else(|| RenderError::InvalidField {
        field: "spec.konnectivity.nodePort".into(),
        value: String::new(),
        reason: "the tunnel's node port is not known yet: set it (or spec.konnectivity.address) to render a NodePort tenant offline".into(),
    })?;
    let server_args = vec![
        "konnectivity-server".to_string(),
        format!("--uds-path={KONNECTIVITY_SOCKET_DIR}/{KONNECTIVITY_SOCKET}"),
        format!("--agent-address=[::]:{KONNECTIVITY_PORT}"),
        format!("--cert={PKI_DIR}/apiserver.crt"),
        format!("--key={PKI_DIR}/apiserver.key"),
        format!("--agent-ca={PKI_DIR}/ca.crt"),
        format!("--server-count={}", input.api_server.replicas),
        format!("--health-address=[::]:{KONNECTIVITY_SERVER_HEALTH_PORT}"),
    ];
    let agent_args = vec![
        "konnectivity-agent".to_string(),
        format!("--server={agent_address}"),
        format!("--server-name={}", tunnel.server_name),
        "--ca-cert=/etc/konnectivity/ca.crt".into(),
        "--cert=/etc/konnectivity/tls.crt".into(),
        "--key=/etc/konnectivity/tls.key".into(),
        "--node-name=$(NODE_NAME)".into(),
        "--node-ip=$(NODE_IP)".into(),
        format!("--health-address=0.0.0.0:{KONNECTIVITY_AGENT_HEALTH_PORT}"),
    ];
    let mut agent_labels = common_labels(input);
    agent_labels["k8s-app"] = "konnectivity-agent".into();
    Ok(json!({
        "image": tunnel.image,
        "port": KONNECTIVITY_PORT,
        "health_port": KONNECTIVITY_SERVER_HEALTH_PORT,
        "agent_health_port": KONNECTIVITY_AGENT_HEALTH_PORT,
        "socket_dir": KONNECTIVITY_SOCKET_DIR,
        "egress_selector": EGRESS_SELECTOR,
        "server_args": server_args,
        "agent_args": agent_args,
        "agent_labels": agent_labels,
        "agent_selector": {"k8s-app": "konnectivity-agent"},
        "agent_checksum": checksum(secrets, &["konnectivity-agent", "ca"]),
    }))
}

/// Where the backup Job's files are mounted.
const BACKUP_ETCD_DIR: &str = "/etc/gantry/etcd";
const BACKUP_KEYS_DIR: &str = "/etc/gantry/keys";
const BACKUP_CONFIG_DIR: &str = "/etc/gantry/backup";

/// The scheduled backup's part of the context: `null` when it is off.
fn backup(input: &RenderInput, secrets: &[SecretData]) -> Value {
    let Some(backup) = &input.backup else {
        return Value::Null;
    };
    let store = &backup.store;
    let members: Vec<String> = (0..input.etcd.replicas)
        .map(|i| {
            format!(
                "https://{}:{}",
                args::etcd_member_host(input, i),
                args::ETCD_CLIENT_PORT
            )
        })
        .collect();
    let mut command_args = vec![
        "backup".to_string(),
        "snapshot".into(),
        format!("--tenant={}", input.name),
        format!("--store={}", store.endpoint),
        format!("--bucket={}", store.bucket),
        format!("--region={}", store.region),
        format!("--prefix={}", store.prefix),
        format!("--etcd={}", members.join(",")),
        format!("--etcd-ca={BACKUP_ETCD_DIR}/ca.crt"),
        format!("--etcd-cert={BACKUP_ETCD_DIR}/backup-client.crt"),
        format!("--etcd-key={BACKUP_ETCD_DIR}/backup-client.key"),
        format!("--keys={BACKUP_KEYS_DIR}"),
        format!("--platform-public-key={BACKUP_CONFIG_DIR}/platform.pub"),
        format!("--keep={}", backup.keep),
        "--work-dir=/work".into(),
        "--report=/dev/termination-log".into(),
        // Each backup also defragments a member whose database is more than
        // half free pages, and gives back a full quota (NOSPACE).
        "--defragment-above=0.5".into(),
    ];
    if store.ca_bundle.is_some() {
        command_args.push(format!("--store-ca={BACKUP_CONFIG_DIR}/store-ca.crt"));
    }
    // The key material: every Secret gantry never replaces, each in a
    // folder of its name (a restore makes the Secrets again from them).
    let keys: Vec<Value> = crate::secrets::create_only_secrets()
        .map(|secret| {
            let items: Vec<Value> = secret
                .files
                .iter()
                .map(|(key, _)| json!({"key": key, "path": format!("{}/{key}", secret.name)}))
                .collect();
            json!({"secret": {"name": secret.name, "items": items}})
        })
        .collect();
    let secret_names: Vec<&str> = crate::secrets::create_only_secrets()
        .map(|s| s.name)
        .chain([crate::secrets::ETCD_BACKUP_SECRET])
        .collect();
    json!({
        "image": backup.image,
        "schedule": backup.schedule,
        "args": command_args,
        "labels": component_labels(&input.name, "etcd-backup"),
        "selector": component_selector(&input.name, "etcd-backup"),
        "credentials_secret": store.credentials_secret,
        "store_port": store.port,
        "platform_public_key": format!("{}\n", backup.platform_public_key.trim()),
        "ca_bundle": store.ca_bundle,
        "key_sources": keys,
        "etcd_secret": crate::secrets::ETCD_BACKUP_SECRET,
        "etcd_dir": BACKUP_ETCD_DIR,
        "keys_dir": BACKUP_KEYS_DIR,
        "config_dir": BACKUP_CONFIG_DIR,
        "checksum": checksum(secrets, &secret_names),
    })
}

pub(crate) fn component_labels(tenant: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": tenant,
        (MANAGED_BY.0): MANAGED_BY.1,
        TENANT_LABEL: tenant,
    })
}

fn component_selector(tenant: &str, component: &str) -> Value {
    json!({"app.kubernetes.io/name": component, TENANT_LABEL: tenant})
}

pub(crate) fn bootstrap_context(input: &BootstrapInput) -> Value {
    json!({
        "name": input.name,
        "namespace": input.namespace,
        "labels": component_labels(&input.name, "kube-apiserver"),
        "selector": component_selector(&input.name, "kube-apiserver"),
        "service_type": input.service_type,
        "service_annotations": input.service_annotations,
        "load_balancer_ip": input.load_balancer_ip.map(|ip| ip.to_string()),
        "node_port": input.node_port,
        "konnectivity": input.konnectivity.map(|node_port| json!({
            "port": crate::input::KONNECTIVITY_PORT,
            "node_port": node_port,
        })),
    })
}

pub(crate) fn common_labels(input: &RenderInput) -> Value {
    json!({
        (MANAGED_BY.0): MANAGED_BY.1,
        TENANT_LABEL: input.name,
    })
}

/// [`common_labels`], and the mark of an object only super-admin writes.
fn privileged_labels(input: &RenderInput) -> Value {
    let mut labels = common_labels(input);
    labels[PRIVILEGED_LABEL] = "true".into();
    labels
}

pub(crate) fn context(
    input: &RenderInput,
    pki: &PkiBundle,
    secrets: &[SecretData],
) -> Result<Value, RenderError> {
    let labels = |component: &str| component_labels(&input.name, component);
    let selector = |component: &str| component_selector(&input.name, component);
    let component = |name: &str,
                     replicas: u32,
                     resources: &crate::input::Resources,
                     args: Vec<String>,
                     mounts: &[&str]| {
        json!({
            "labels": labels(name),
            "selector": selector(name),
            "replicas": replicas,
            "resources": resources,
            "args": args,
            "checksum": checksum(secrets, mounts),
        })
    };
    let cluster_info = pki.cluster_info_kubeconfig();
    let token_secret = BootstrapTokenSecret::new(
        &input.token,
        input.token_expiration,
        "gantry: the initial join token of this tenant",
    );
    let dns_ip =
        gantry_pki::nth_address(&input.networking.service_cidr, 10).expect("validated CIDR");
    Ok(json!({
        "name": input.name,
        "namespace": input.namespace,
        "version": input.version.to_string(),
        "image_repository": input.image_repository,
        "images": input.images,
        "endpoint": {
            "url": input.endpoint.url(),
            "host_port": input.endpoint.to_string(),
            "port": input.endpoint.port,
        },
        "common_labels": common_labels(input),
        "privileged_labels": privileged_labels(input),
        "konnectivity": konnectivity(input, secrets)?,
        "backup": backup(input, secrets),
        "egress": egress_denied(input),
        "etcd": {
            "component": component("etcd", input.etcd.replicas, &input.etcd.resources, args::etcd(input), &["etcd-certs"]),
            "storage_size": input.etcd.storage_size,
            "storage_class_name": input.etcd.storage_class_name,
            "max_unavailable": (input.etcd.replicas - 1) / 2,
            "client_port": args::ETCD_CLIENT_PORT,
            "peer_port": args::ETCD_PEER_PORT,
            "metrics_port": args::ETCD_METRICS_PORT,
        },
        "apiserver": {
            "component": component(
                "kube-apiserver",
                input.api_server.replicas,
                &input.api_server.resources,
                args::api_server(input)?,
                &[
                    "ca",
                    "front-proxy-ca",
                    "etcd-ca",
                    "sa",
                    "apiserver-certs",
                    crate::secrets::ENCRYPTION_SECRET,
                ],
            ),
            "config": {
                "audit_policy": API_SERVER_AUDIT_POLICY,
                "authentication_config": API_SERVER_AUTHENTICATION_CONFIG,
                "checksum": config_checksum(input),
            },
        },
        "controller_manager": component(
            "kube-controller-manager",
            input.controller_manager.replicas,
            &input.controller_manager.resources,
            args::controller_manager(input)?,
            &["ca", "front-proxy-ca", "sa", "controller-manager-kubeconfig"],
        ),
        "scheduler": component(
            "kube-scheduler",
            input.scheduler.replicas,
            &input.scheduler.resources,
            args::scheduler(input)?,
            &["scheduler-kubeconfig"],
        ),
        "placement": {
            "node_selector": input.placement.node_selector,
            "tolerations": input.placement.tolerations,
            "priority_class_name": input.placement.priority_class_name,
        },
        "networking": {
            "service_cidr": input.networking.service_cidr.to_string(),
            "pod_cidr": input.networking.pod_cidr.to_string(),
            "kube_proxy_conntrack_max_per_core": input.networking.kube_proxy_conntrack_max_per_core,
            "dns_domain": input.networking.dns_domain,
            "dns_service_ip": dns_ip.to_string(),
        },
        "cluster_info": {
            "kubeconfig": String::from_utf8_lossy(cluster_info),
            "signature_key": jws::cluster_info_signature_key(&input.token),
            "signature": jws::sign_cluster_info(cluster_info, &input.token),
        },
        "kubeadm": {
            "kubernetes_version": format!("v{}", input.version),
        },
        "bootstrap_token": {
            "name": token_secret.metadata.name,
            "string_data": token_secret.string_data,
        },
    }))
}
