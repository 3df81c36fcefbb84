//! One reconcile of a `TenantControlPlane`, service-cluster side:
//! validate → bootstrap objects (Namespace, kube-apiserver Service) → endpoint
//! → PKI (from the tenant's Secrets) → render → apply the service set →
//! readiness → status. Decisions are the pure functions of this module's
//! siblings; this file only sequences them and talks to the API.
//!
//! Not here yet (see the issue notes): tenant bootstrap through the tenant's
//! apiserver, join tokens, upgrades in steps, events, the finalizer. Until the
//! tenant bootstrap exists, `Ready` stays False with reason `TenantBootstrapPending`.

use std::time::Duration;

use gantry_pki::{BootstrapToken, FileSet};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use time::OffsetDateTime;

use super::conditions;
use super::endpoint::{EndpointState, ObservedNode, ObservedService, resolve_endpoint};
use crate::api::{ServiceType, TenantControlPlane, TenantControlPlaneStatus};
use crate::apply::{self, ApplyError, ApplyReport, DesiredObject};
use crate::resolve;

/// How long to wait before looking again at something still pending.
pub const PENDING_REQUEUE: Duration = Duration::from_secs(10);

pub struct Context {
    pub client: Client,
    pub service_cluster_domain: String,
}

/// What one reconcile did and decided.
#[derive(Debug)]
pub struct Outcome {
    pub status: TenantControlPlaneStatus,
    pub requeue_after: Option<Duration>,
    /// Objects applied or pruned in the service cluster.
    pub applied: ApplyReport,
    pub status_written: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("render: {0}")]
    Render(#[from] gantry_renderer::RenderError),
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let action = action.into();
    move |source| ReconcileError::Api { action, source }
}

/// Reconciles `tcp` once, at `now`.
pub async fn reconcile(
    tcp: &TenantControlPlane,
    ctx: &Context,
    now: OffsetDateTime,
) -> Result<Outcome, ReconcileError> {
    let name = tcp.metadata.name.clone().unwrap_or_default();
    let generation = tcp.metadata.generation;
    let at = Time(Timestamp::from_second(now.unix_timestamp()).expect("a representable time"));
    let mut status = tcp.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let mut report = ApplyReport::default();
    let set = |status: &mut TenantControlPlaneStatus,
               type_: &str,
               ok: bool,
               reason: &str,
               message: &str| {
        conditions::set(
            &mut status.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
            at.clone(),
        );
    };

    // 1. Validate: an invalid spec changes nothing but its status.
    if let Err(error) = resolve::validate(tcp) {
        set(
            &mut status,
            "Ready",
            false,
            "InvalidSpec",
            &error.to_string(),
        );
        status.phase = Some("Failed".into());
        return finish(tcp, ctx, status, report, None).await;
    }

    // 2. The bootstrap objects: they give the endpoint.
    let bootstrap = resolve::bootstrap_input(tcp).expect("validated above");
    let namespace = bootstrap.namespace.clone();
    let objects: Vec<DesiredObject> = gantry_renderer::render_bootstrap(&bootstrap)?
        .into_iter()
        .map(|object| DesiredObject {
            value: object.value,
            create_only: false,
        })
        .collect();
    merge(
        &mut report,
        apply::apply_set(&ctx.client, &name, &objects, &[]).await?,
    );

    // 3. The endpoint.
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let service = services
        .get_opt("kube-apiserver")
        .await
        .map_err(api_error("get Service kube-apiserver"))?;
    let observed = service.as_ref().map(observe_service);
    let nodes = match tcp.spec.api_server.service.type_ {
        ServiceType::NodePort if tcp.spec.api_server.endpoint.is_none() => {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(api_error("list Nodes"))?;
            list.items.iter().map(observe_node).collect()
        }
        _ => Vec::new(),
    };
    let endpoint = match resolve_endpoint(&tcp.spec, observed.as_ref(), &nodes) {
        EndpointState::Ready { endpoint, .. } => endpoint,
        EndpointState::Pending(reason) => {
            set(&mut status, "EndpointReady", false, "Pending", &reason);
            set(&mut status, "Ready", false, "EndpointPending", &reason);
            status.phase = Some("Pending".into());
            return finish(tcp, ctx, status, report, Some(PENDING_REQUEUE)).await;
        }
        EndpointState::Invalid(message) => {
            set(
                &mut status,
                "EndpointReady",
                false,
                "InvalidEndpoint",
                &message,
            );
            set(&mut status, "Ready", false, "InvalidEndpoint", &message);
            status.phase = Some("Failed".into());
            return finish(tcp, ctx, status, report, None).await;
        }
    };
    set(
        &mut status,
        "EndpointReady",
        true,
        "Resolved",
        &format!("nodes reach the apiserver at {endpoint}"),
    );
    status.endpoint = Some(endpoint.to_string());

    // 4. The PKI: kept from the tenant's Secrets, reissued only where needed.
    let existing = read_pki(&ctx.client, &namespace).await?;
    // The join-token step does not exist yet; the service set does not depend on the token.
    let token = BootstrapToken::generate();
    let resolved = match resolve::resolve(
        tcp,
        &endpoint,
        token,
        None,
        now,
        &ctx.service_cluster_domain,
    ) {
        Ok(resolved) => resolved,
        Err(error) => {
            set(
                &mut status,
                "Ready",
                false,
                "InvalidSpec",
                &error.to_string(),
            );
            status.phase = Some("Failed".into());
            return finish(tcp, ctx, status, report, None).await;
        }
    };
    let issued = match gantry_pki::issue(&resolved.pki, &existing, now) {
        Ok(issued) => issued,
        Err(error) => {
            // Never replace a CA because a read failed: stop and say why.
            set(
                &mut status,
                "CertificatesReady",
                false,
                "Unusable",
                &error.to_string(),
            );
            set(
                &mut status,
                "Ready",
                false,
                "CertificatesNotReady",
                &error.to_string(),
            );
            status.phase = Some("Failed".into());
            return finish(tcp, ctx, status, report, None).await;
        }
    };
    // The condition describes state, not this pass's actions (created or
    // reissued certificates are events), so an unchanged tenant keeps an
    // unchanged status and costs no write.
    set(
        &mut status,
        "CertificatesReady",
        true,
        "Valid",
        "every certificate is valid and signed by the current CA",
    );
    status.ca_cert_hash = Some(issued.bundle.ca_cert_hash());

    // 5. Render and apply the service set.
    let rendered = gantry_renderer::render(&resolved.input, &issued.bundle)?;
    let objects = apply::service_set(&rendered.service);
    merge(
        &mut report,
        apply::apply_set(&ctx.client, &name, &objects, &apply::SERVICE_SET_KINDS).await?,
    );
    status.kubeconfig_secret = Some("admin-kubeconfig".into());

    // 6. Readiness.
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let etcd_ready = statefulsets
        .get_opt("etcd")
        .await
        .map_err(api_error("get StatefulSet etcd"))?
        .and_then(|s| s.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let etcd_wanted = tcp.spec.etcd.replicas;
    // A majority of members must be ready for etcd to serve.
    let quorum = etcd_ready > etcd_wanted / 2;
    set(
        &mut status,
        "EtcdReady",
        quorum,
        if quorum { "Quorum" } else { "NoQuorum" },
        &format!("{etcd_ready}/{etcd_wanted} members ready"),
    );
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let apiservers = deployments
        .get_opt("kube-apiserver")
        .await
        .map_err(api_error("get Deployment kube-apiserver"))?
        .and_then(|d| d.status)
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    set(
        &mut status,
        "APIServerReady",
        apiservers > 0,
        if apiservers > 0 {
            "Available"
        } else {
            "Unavailable"
        },
        &format!("{apiservers} kube-apiserver replicas available"),
    );
    set(
        &mut status,
        "TenantBootstrapped",
        false,
        "NotImplemented",
        "the tenant bootstrap step is not implemented yet",
    );
    set(
        &mut status,
        "Ready",
        false,
        "TenantBootstrapPending",
        "waiting for the tenant bootstrap",
    );
    status.phase = Some("Provisioning".into());
    finish(tcp, ctx, status, report, Some(PENDING_REQUEUE)).await
}

fn merge(total: &mut ApplyReport, pass: ApplyReport) {
    total.applied.extend(pass.applied);
    total.unchanged += pass.unchanged;
    total.kept.extend(pass.kept);
    total.pruned.extend(pass.pruned);
}

/// Writes the status if it changed (steady state: no write) and returns the outcome.
async fn finish(
    tcp: &TenantControlPlane,
    ctx: &Context,
    status: TenantControlPlaneStatus,
    applied: ApplyReport,
    requeue_after: Option<Duration>,
) -> Result<Outcome, ReconcileError> {
    let changed = tcp.status.as_ref() != Some(&status);
    if changed {
        let name = tcp.metadata.name.clone().unwrap_or_default();
        let api: Api<TenantControlPlane> = Api::all(ctx.client.clone());
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(api_error(format!(
            "patch status of TenantControlPlane {name}"
        )))?;
    }
    Ok(Outcome {
        status,
        requeue_after,
        applied,
        status_written: changed,
    })
}

/// Reads the tenant's PKI back from its Secrets (see `gantry_renderer::SECRET_FILES`).
async fn read_pki(client: &Client, namespace: &str) -> Result<FileSet, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut files = FileSet::new();
    for (name, entries) in gantry_renderer::SECRET_FILES {
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
