//! Every read of the service cluster that a pass makes (through `live`, so
//! from the operator's watches where it has them), turned into the plain
//! values the pure steps decide on.

use gantry_pki::FileSet;
use gantry_renderer::kinds::Kind;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::ListParams;
use kube::{Api, Client};

use super::endpoint::{ObservedNode, ObservedService};
use super::error::{ReconcileError, api_error};
use super::upgrade::{Rollout, UpgradeDecision, UpgradeStep};
use crate::api::{ServiceType, TenantControlPlane};
use crate::live::{Cluster, Details, LiveObject};
use gantry_api::join_secret::{self, JOIN_SECRET};

/// What the endpoint is found from: the kube-apiserver Service, and the
/// Nodes when a NodePort tenant has no endpoint in its spec (a LIST each
/// full pass: Nodes are not kept live, they change every few seconds).
pub(super) async fn endpoint_inputs(
    cluster: Cluster<'_>,
    tcp: &TenantControlPlane,
    namespace: &str,
) -> Result<(Option<ObservedService>, Vec<ObservedNode>), ReconcileError> {
    let service = cluster
        .get(kind("Service"), Some(namespace), "kube-apiserver")
        .await
        .map_err(api_error("get Service kube-apiserver"))?
        .and_then(|live| match live.into_details() {
            Details::Service(service) => Some(service),
            _ => None,
        });
    let nodes = match tcp.spec.api_server.service.type_ {
        ServiceType::NodePort if tcp.spec.api_server.endpoint.is_none() => {
            let nodes: Api<Node> = Api::all(cluster.client.clone());
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(api_error("list Nodes"))?;
            list.items.iter().map(observe_node).collect()
        }
        _ => Vec::new(),
    };
    Ok((service, nodes))
}

/// The registry's row of a kind the steps read.
fn kind(name: &str) -> &'static Kind {
    gantry_renderer::kinds::KINDS
        .iter()
        .find(|k| k.kind == name)
        .expect("a registered kind")
}

/// The control-plane workloads as they run: etcd and the apiserver always
/// (for readiness), the controller-manager and scheduler only during an upgrade.
pub(super) async fn rollouts(
    cluster: Cluster<'_>,
    namespace: &str,
    decision: &UpgradeDecision,
) -> Result<Vec<(&'static str, &'static str, Rollout)>, ReconcileError> {
    let mut workloads = vec![("StatefulSet", "etcd"), ("Deployment", "kube-apiserver")];
    if matches!(decision, UpgradeDecision::Upgrade { .. }) {
        workloads.extend(UpgradeStep::ControllerManagerAndScheduler.workloads());
    }
    let mut rollouts = Vec::new();
    for (kind_name, name) in workloads {
        let live = cluster
            .get(kind(kind_name), Some(namespace), name)
            .await
            .map_err(api_error(format!("get {kind_name} {name}")))?;
        if let Some(Details::Workload(rollout)) = live.map(LiveObject::into_details) {
            rollouts.push((kind_name, name, rollout));
        }
    }
    Ok(rollouts)
}

/// What the tenant's Secrets hold: its PKI (see
/// `gantry_renderer::SECRET_FILES`) and the token of Secret `join`, with its
/// expiration, if it exists and parses. One LIST of the namespace's Secrets:
/// their data is read by every full pass and never kept (see `live`).
pub(super) async fn secrets(
    client: &Client,
    namespace: &str,
) -> Result<SecretsRead, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!("list Secrets in {namespace}")))?;
    let named = |name: &str| {
        list.items
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
    };
    let mut pki = FileSet::new();
    for gantry_renderer::SecretFiles {
        name,
        files: entries,
        ..
    } in gantry_renderer::SECRET_FILES
    {
        let Some(data) = named(name).and_then(|s| s.data.as_ref()) else {
            continue;
        };
        for (key, path) in *entries {
            if let Some(bytes) = data.get(*key) {
                pki.insert(path.to_string(), bytes.0.clone());
            }
        }
    }
    let join = named(JOIN_SECRET).and_then(join_secret::token_of);
    let names = list
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    Ok(SecretsRead { pki, join, names })
}

/// What [`secrets`] read.
pub(super) struct SecretsRead {
    pub pki: FileSet,
    pub join: Option<(gantry_pki::BootstrapToken, time::OffsetDateTime)>,
    /// Every Secret's name, labelled by gantry or not.
    pub names: std::collections::BTreeSet<String>,
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
