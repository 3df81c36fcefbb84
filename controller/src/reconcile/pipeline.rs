//! One reconcile of a `TenantControlPlane`, service-cluster side:
//! validate → bootstrap objects (Namespace, kube-apiserver Service) → endpoint
//! → PKI (from the tenant's Secrets) → render → apply the service set →
//! readiness → status. Decisions are the pure functions of this module's
//! siblings; this file only sequences them and talks to the API.
//!
//! Not here yet (see the issue notes): tenant bootstrap through the tenant's
//! apiserver, join tokens, upgrades in steps, events, the finalizer. Until the
//! tenant bootstrap exists, `Ready` stays False with reason `TenantBootstrapPending`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

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
use super::upgrade::{self, UpgradeDecision};
use crate::api::{ServiceType, TenantControlPlane, TenantControlPlaneStatus};
use crate::apply::{self, ApplyError, ApplyReport, DesiredObject};
use crate::resolve;

/// How long to wait before looking again at something still pending.
pub const PENDING_REQUEUE: Duration = Duration::from_secs(10);

/// Makes a client for a tenant's own apiserver from its `super-admin.conf`.
/// Production: [`tenant_client_from_kubeconfig`]; tests: a second API double.
pub type TenantClientFactory =
    Arc<dyn Fn(Vec<u8>, String) -> BoxFuture<'static, Result<Client, String>> + Send + Sync>;

pub struct Context {
    /// The service cluster.
    pub client: Client,
    pub service_cluster_domain: String,
    pub tenant_client: TenantClientFactory,
}

/// A client for the tenant apiserver at `server` (the in-cluster Service URL),
/// authenticated as `super-admin.conf` says.
pub fn tenant_client_from_kubeconfig(
    kubeconfig: Vec<u8>,
    server: String,
) -> BoxFuture<'static, Result<Client, String>> {
    Box::pin(async move {
        let text = String::from_utf8(kubeconfig)
            .map_err(|_| "super-admin.conf is not UTF-8".to_string())?;
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .map_err(|e| format!("super-admin.conf: {e}"))?;
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| format!("super-admin.conf: {e}"))?;
        config.cluster_url = server.parse().map_err(|e| format!("{server}: {e}"))?;
        Client::try_from(config).map_err(|e| format!("client for {server}: {e}"))
    })
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
    /// Not an error of the tenant: something is still in progress (e.g. the
    /// namespace is terminating), so the finalizer stays and the reconcile is retried.
    #[error("waiting: {0}")]
    Waiting(String),
}

/// Held on every `TenantControlPlane` until its namespace is gone.
pub const FINALIZER: &str = "gantry.dev/cleanup";

/// The reconcile the controller runs: adds the finalizer first; on deletion,
/// deletes the tenant namespace and removes the finalizer once it is gone.
pub async fn reconcile_with_finalizer(
    tcp: Arc<TenantControlPlane>,
    ctx: &Context,
    now: OffsetDateTime,
) -> Result<kube::runtime::controller::Action, kube::runtime::finalizer::Error<ReconcileError>> {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event, finalizer};
    let api: Api<TenantControlPlane> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, tcp, |event| async move {
        match event {
            Event::Apply(tcp) => {
                let outcome = reconcile(&tcp, ctx, now).await?;
                Ok(outcome
                    .requeue_after
                    .map_or_else(Action::await_change, Action::requeue))
            }
            Event::Cleanup(tcp) => cleanup(&tcp, ctx).await,
        }
    })
    .await
}

/// Deletes the tenant namespace (and with it everything gantry created in
/// the service cluster); succeeds only once the namespace is gone.
pub async fn cleanup(
    tcp: &TenantControlPlane,
    ctx: &Context,
) -> Result<kube::runtime::controller::Action, ReconcileError> {
    use k8s_openapi::api::core::v1::Namespace;
    let name = tcp.metadata.name.clone().unwrap_or_default();
    let namespace = gantry_pki::default_namespace(&name);
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match namespaces.delete(&namespace, &Default::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(source) => {
            return Err(ReconcileError::Api {
                action: format!("delete Namespace {namespace}"),
                source,
            });
        }
    }
    if namespaces
        .get_opt(&namespace)
        .await
        .map_err(api_error(format!("get Namespace {namespace}")))?
        .is_some()
    {
        return Err(ReconcileError::Waiting(format!(
            "namespace {namespace} is still terminating"
        )));
    }
    Ok(kube::runtime::controller::Action::await_change())
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
    // Every stop short of Ready: `Ready=False` with why, and the phase.
    let not_ready =
        |status: &mut TenantControlPlaneStatus, reason: &str, message: &str, phase: &str| {
            set(status, "Ready", false, reason, message);
            status.phase = Some(phase.into());
        };

    // 1. Validate: an invalid spec changes nothing but its status.
    if let Err(error) = resolve::validate(tcp) {
        not_ready(&mut status, "InvalidSpec", &error.to_string(), "Failed");
        return finish(tcp, ctx, status, report, None).await;
    }

    // 2. The bootstrap objects: they give the endpoint.
    let bootstrap = resolve::bootstrap_input(tcp).expect("validated above");
    let namespace = bootstrap.namespace.clone();
    let bootstrap_objects = gantry_renderer::render_bootstrap(&bootstrap)?;
    let bootstrap_keys: Vec<(String, String)> = bootstrap_objects
        .iter()
        .map(|o| (o.kind.clone(), o.name.clone()))
        .collect();
    let objects: Vec<DesiredObject> = bootstrap_objects
        .into_iter()
        .map(|object| DesiredObject {
            value: object.value,
            create_only: false,
        })
        .collect();
    merge(
        &mut report,
        apply::apply_set(&ctx.client, &name, "bootstrap", &objects, &[]).await?,
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
            not_ready(&mut status, "EndpointPending", &reason, "Pending");
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
            not_ready(&mut status, "InvalidEndpoint", &message, "Failed");
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

    // Version changes: one minor at a time, never down. A refused change
    // leaves the running control plane as it is.
    let desired: gantry_renderer::KubeVersion = tcp.spec.version.parse().expect("validated above");
    let running = status.version.as_deref().and_then(|v| v.parse().ok());
    if let UpgradeDecision::Refused(reason) = upgrade::plan(running, desired) {
        set(&mut status, "Ready", false, "UpgradeRefused", &reason);
        return finish(tcp, ctx, status, report, None).await;
    }

    // 4. The PKI: kept from the tenant's Secrets, reissued only where needed.
    let existing = read_pki(&ctx.client, &namespace).await?;
    // The join token: the one in Secret `join` while more than a third of its
    // lifetime remains, else a new one (old tokens expire; the tokencleaner removes them).
    let ttl = resolve::parse_duration("spec.join.tokenTTL", &tcp.spec.join.token_ttl)
        .expect("validated above");
    let (token, expiration) = match read_join_token(&ctx.client, &namespace).await? {
        Some((token, expiration)) if !super::token::needs_new_token(Some(expiration), ttl, now) => {
            (token, expiration)
        }
        _ => (BootstrapToken::generate(), now + ttl),
    };
    let resolved = match resolve::resolve(
        tcp,
        &endpoint,
        token.clone(),
        Some(expiration),
        now,
        &ctx.service_cluster_domain,
    ) {
        Ok(resolved) => resolved,
        Err(error) => {
            not_ready(&mut status, "InvalidSpec", &error.to_string(), "Failed");
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
            not_ready(
                &mut status,
                "CertificatesNotReady",
                &error.to_string(),
                "Failed",
            );
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
    // The bootstrap set owns the Namespace and the kube-apiserver Service.
    let objects: Vec<DesiredObject> = apply::service_set(&rendered.service)
        .into_iter()
        .filter(|o| {
            let key = (
                o.value["kind"].as_str().unwrap_or_default(),
                o.value["metadata"]["name"].as_str().unwrap_or_default(),
            );
            !bootstrap_keys
                .iter()
                .any(|(kind, name)| (kind.as_str(), name.as_str()) == key)
        })
        .collect();
    merge(
        &mut report,
        apply::apply_set(
            &ctx.client,
            &name,
            "service",
            &objects,
            &apply::SERVICE_SET_KINDS,
        )
        .await?,
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
    if apiservers == 0 {
        not_ready(
            &mut status,
            "APIServerNotReady",
            "waiting for a kube-apiserver replica to be available",
            "Provisioning",
        );
        return finish(tcp, ctx, status, report, Some(PENDING_REQUEUE)).await;
    }

    // 7. Bootstrap the tenant cluster through its own apiserver.
    let super_admin = issued
        .bundle
        .get("super-admin.conf")
        .expect("issued")
        .to_vec();
    let server = format!("https://kube-apiserver.{namespace}.svc:6443");
    let tenant_objects: Vec<DesiredObject> = rendered
        .tenant
        .iter()
        .map(|object| DesiredObject {
            value: object.value.clone(),
            create_only: false,
        })
        .collect();
    let bootstrapped = match (ctx.tenant_client)(super_admin, server.clone()).await {
        // Nothing is pruned in the tenant: old bootstrap tokens expire and the tokencleaner removes them.
        Ok(tenant) => apply::apply_set(&tenant, &name, "tenant", &tenant_objects, &[])
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error),
    };
    if let Err(error) = bootstrapped {
        set(
            &mut status,
            "TenantBootstrapped",
            false,
            "ConnectionFailed",
            &format!("{server}: {error}"),
        );
        not_ready(
            &mut status,
            "TenantNotBootstrapped",
            "the tenant cluster could not be bootstrapped",
            "Provisioning",
        );
        return finish(tcp, ctx, status, report, Some(PENDING_REQUEUE)).await;
    }
    set(
        &mut status,
        "TenantBootstrapped",
        true,
        "Applied",
        "everything kubeadm join needs is in the tenant cluster",
    );

    // 8. The join Secret: token, CA hash, endpoint and the whole command.
    let join = join_secret(
        &namespace,
        &token,
        expiration,
        &endpoint.to_string(),
        &issued.bundle.ca_cert_hash(),
    );
    merge(
        &mut report,
        apply::apply_set(
            &ctx.client,
            &name,
            "join",
            &[DesiredObject {
                value: join,
                create_only: false,
            }],
            &[],
        )
        .await?,
    );
    status.join_secret = Some(JOIN_SECRET.into());

    let ready = quorum && apiservers > 0;
    set(
        &mut status,
        "Ready",
        ready,
        if ready { "Ready" } else { "Degraded" },
        if ready {
            "the control plane serves and nodes can join"
        } else {
            "etcd has no quorum"
        },
    );
    status.phase = Some(if ready { "Ready" } else { "Degraded" }.into());
    status.version = Some(resolved.input.version.to_string());
    finish(
        tcp,
        ctx,
        status,
        report,
        if ready { None } else { Some(PENDING_REQUEUE) },
    )
    .await
}

/// The Secret in the tenant namespace that `gantry join` reads.
pub const JOIN_SECRET: &str = "join";

fn join_secret(
    namespace: &str,
    token: &BootstrapToken,
    expiration: OffsetDateTime,
    endpoint: &str,
    ca_hash: &str,
) -> serde_json::Value {
    use base64::Engine as _;
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let command = format!(
        "kubeadm join {endpoint} --token {} --discovery-token-ca-cert-hash {ca_hash}",
        token.expose()
    );
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": JOIN_SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": {
            "token": encode(&token.expose()),
            "expiration": encode(&gantry_pki::rfc3339(expiration)),
            "endpoint": encode(endpoint),
            "ca-cert-hash": encode(ca_hash),
            "join-command": encode(&command),
        },
    })
}

/// The token of Secret `join`, with its expiration, if it exists and parses.
async fn read_join_token(
    client: &Client,
    namespace: &str,
) -> Result<Option<(BootstrapToken, OffsetDateTime)>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = secrets
        .get_opt(JOIN_SECRET)
        .await
        .map_err(api_error("get Secret join"))?
    else {
        return Ok(None);
    };
    let data = secret.data.unwrap_or_default();
    let field = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let token = field("token").and_then(|t| BootstrapToken::parse(&t).ok());
    let expiration = field("expiration").and_then(|e| {
        OffsetDateTime::parse(&e, &time::format_description::well_known::Rfc3339).ok()
    });
    Ok(token.zip(expiration))
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
