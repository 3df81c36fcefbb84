//! Every read of the service cluster that a pass makes, turned into the plain
//! values the pure steps decide on.

use gantry_pki::FileSet;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client};

use super::endpoint::{ObservedNode, ObservedService};
use super::error::{ReconcileError, api_error};
use super::upgrade::{Rollout, UpgradeDecision, UpgradeStep};
use crate::api::{ServiceType, TenantControlPlane};
use gantry_api::join_secret::{self, JOIN_SECRET};

/// What the endpoint is found from: the kube-apiserver Service, and the
/// Nodes when a NodePort tenant has no endpoint in its spec.
pub(super) async fn endpoint_inputs(
    client: &Client,
    tcp: &TenantControlPlane,
    namespace: &str,
) -> Result<(Option<ObservedService>, Vec<ObservedNode>), ReconcileError> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = services
        .get_opt("kube-apiserver")
        .await
        .map_err(api_error("get Service kube-apiserver"))?;
    let nodes = match tcp.spec.api_server.service.type_ {
        ServiceType::NodePort if tcp.spec.api_server.endpoint.is_none() => {
            let nodes: Api<Node> = Api::all(client.clone());
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(api_error("list Nodes"))?;
            list.items.iter().map(observe_node).collect()
        }
        _ => Vec::new(),
    };
    Ok((service.as_ref().map(observe_service), nodes))
}

/// The token of Secret `join`, with its expiration, if it exists and parses.
pub(super) async fn join_token(
    client: &Client,
    namespace: &str,
) -> Result<Option<(gantry_pki::BootstrapToken, time::OffsetDateTime)>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(JOIN_SECRET)
        .await
        .map_err(api_error("get Secret join"))?;
    Ok(secret.as_ref().and_then(join_secret::token_of))
}

/// The control-plane workloads as they run: etcd and the apiserver always
/// (for readiness), the controller-manager and scheduler only during an upgrade.
pub(super) async fn rollouts(
    client: &Client,
    namespace: &str,
    decision: &UpgradeDecision,
) -> Result<Vec<(&'static str, &'static str, Rollout)>, ReconcileError> {
    let mut workloads = vec![("StatefulSet", "etcd"), ("Deployment", "kube-apiserver")];
    if matches!(decision, UpgradeDecision::Upgrade { .. }) {
        workloads.extend(UpgradeStep::ControllerManagerAndScheduler.workloads());
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut rollouts = Vec::new();
    for (kind, name) in workloads {
        let action = format!("get {kind} {name}");
        let rollout = if kind == "StatefulSet" {
            statefulsets
                .get_opt(name)
                .await
                .map_err(api_error(action))?
                .map(|s| {
                    let status = s.status.unwrap_or_default();
                    rollout_of(
                        &s.metadata,
                        s.spec.as_ref().and_then(|spec| spec.replicas),
                        s.spec.as_ref().map(|spec| &spec.template),
                        status.observed_generation,
                        status.updated_replicas,
                        status.ready_replicas,
                    )
                })
        } else {
            deployments
                .get_opt(name)
                .await
                .map_err(api_error(action))?
                .map(|d| {
                    let status = d.status.unwrap_or_default();
                    rollout_of(
                        &d.metadata,
                        d.spec.as_ref().and_then(|spec| spec.replicas),
                        d.spec.as_ref().map(|spec| &spec.template),
                        status.observed_generation,
                        status.updated_replicas,
                        status.available_replicas,
                    )
                })
        };
        if let Some(rollout) = rollout {
            rollouts.push((kind, name, rollout));
        }
    }
    Ok(rollouts)
}

fn rollout_of(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    replicas: Option<i32>,
    template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
    observed_generation: Option<i64>,
    updated_replicas: Option<i32>,
    ready_replicas: Option<i32>,
) -> Rollout {
    Rollout {
        image: template
            .and_then(|t| t.spec.as_ref())
            .and_then(|spec| spec.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        generation: metadata.generation.unwrap_or(0),
        observed_generation: observed_generation.unwrap_or(0),
        replicas: replicas.unwrap_or(1),
        updated_replicas: updated_replicas.unwrap_or(0),
        ready_replicas: ready_replicas.unwrap_or(0),
    }
}

/// Reads the tenant's PKI back from its Secrets (see `gantry_renderer::SECRET_FILES`).
pub(super) async fn pki(client: &Client, namespace: &str) -> Result<FileSet, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut files = FileSet::new();
    for gantry_renderer::SecretFiles {
        name,
        files: entries,
        ..
    } in gantry_renderer::SECRET_FILES
    {
        let Some(secret) = secrets
            .get_opt(name)
            .await
            .map_err(api_error(format!("get Secret {name}")))?
        else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        for (key, path) in *entries {
            if let Some(bytes) = data.get(*key) {
                files.insert(path.to_string(), bytes.0.clone());
            }
        }
    }
    Ok(files)
}

fn observe_service(service: &Service) -> ObservedService {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .map(|i| (i.ip.clone(), i.hostname.clone()))
                .collect()
        })
        .unwrap_or_default();
    let node_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some("https")))
        .and_then(|p| p.node_port)
        .and_then(|p| u16::try_from(p).ok());
    ObservedService {
        load_balancer_ingress: ingress,
        node_port,
    }
}

fn observe_node(node: &Node) -> ObservedNode {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
    let addresses = status
        .and_then(|s| s.addresses.as_ref())
        .map(|addresses| {
            addresses
                .iter()
                .map(|a| (a.type_.clone(), a.address.clone()))
                .collect()
        })
        .unwrap_or_default();
    ObservedNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        ready,
        addresses,
    }
}
