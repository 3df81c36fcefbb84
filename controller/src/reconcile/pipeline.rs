//! One reconcile of a `TenantControlPlane`, service-cluster side:
//! validate → bootstrap objects (Namespace, kube-apiserver Service) → endpoint
//! → PKI (from the tenant's Secrets) → render → apply the service set →
//! readiness → status. Decisions are the pure functions of this module's
//! siblings; this file only sequences them and talks to the API.
//!
//! Version upgrades roll one step at a time (see `upgrade`): the objects of
//! steps not yet reached are applied as the running version renders them.
//! What changed is returned as [`Note`]s; the run loop publishes them as events.

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

use super::ca_guard;
use super::conditions;
use super::endpoint::{EndpointState, ObservedNode, ObservedService, resolve_endpoint};
use super::upgrade::{self, Rollout, UpgradeDecision, UpgradeStep};
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
///
/// Requests to a tenant time out (kube's client sets none): a tenant
/// apiserver that stops answering fails its own pass, not every tenant's.
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
        with_request_timeouts(&mut config);
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
    /// What this pass changed, for Kubernetes Events. Never holds a key or token.
    pub notes: Vec<Note>,
    /// Write requests sent to the tenant's own apiserver.
    pub tenant_writes: usize,
    /// When the join token will need replacing (set once the join Secret exists).
    pub token_renewal_due: Option<OffsetDateTime>,
}

impl Outcome {
    /// A pass that found the tenant Ready and changed nothing anywhere.
    pub fn is_steady(&self) -> bool {
        self.applied.writes() == 0
            && self.tenant_writes == 0
            && !self.status_written
            && self.requeue_after.is_none()
            && self.status.phase.as_deref() == Some("Ready")
    }
}

/// One thing a reconcile changed or refused, published as an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// PascalCase, e.g. `CertificatesIssued`.
    pub reason: String,
    pub message: String,
}

impl Note {
    fn normal(reason: &str, message: impl Into<String>) -> Self {
        Note {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn warning(reason: &str, message: impl Into<String>) -> Self {
        Note {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// `Kind/name, …` of `items`, cut to stay well within an Event's 1 kB note.
fn list_for_note(items: &[String]) -> String {
    const MAX_SHOWN: usize = 12;
    let shown = items
        .iter()
        .take(MAX_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_SHOWN {
        format!("{shown} and {} more", items.len() - MAX_SHOWN)
    } else {
        shown
    }
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
    /// The pass took longer than the operator allows one to take.
    #[error("the pass took longer than {} s and was stopped", .0.as_secs())]
    TimedOut(std::time::Duration),
}

/// Held on every `TenantControlPlane` until its namespace is gone.
pub const FINALIZER: &str = "gantry.dev/cleanup";

/// The reconcile the controller runs: adds the finalizer first; on deletion,
/// deletes the tenant namespace and removes the finalizer once it is gone.
/// Returns the pass's [`Outcome`] when a full pass ran.
pub async fn reconcile_with_finalizer(
    tcp: Arc<TenantControlPlane>,
    ctx: &Context,
    now: OffsetDateTime,
) -> Result<
    (kube::runtime::controller::Action, Option<Outcome>),
    kube::runtime::finalizer::Error<ReconcileError>,
> {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event, finalizer};
    let api: Api<TenantControlPlane> = Api::all(ctx.client.clone());
    let mut outcome = None;
    let slot = &mut outcome;
    let action = finalizer(&api, FINALIZER, tcp, |event| async move {
        match event {
            Event::Apply(tcp) => {
                let pass = reconcile(&tcp, ctx, now).await?;
                let action = pass
                    .requeue_after
                    .map_or_else(Action::await_change, Action::requeue);
                *slot = Some(pass);
                Ok(action)
            }
            Event::Cleanup(tcp) => cleanup(&tcp, ctx).await,
        }
    })
    .await?;
    Ok((action, outcome))
}

/// What [`reconcile_tenant`] did.
#[derive(Debug)]
pub enum Pass {
    /// The tenant is settled (see `steady`): nothing was read or written.
    Skipped { requeue_after: Duration },
    /// A full pass (or a finalizer step) ran.
    Full {
        action: kube::runtime::controller::Action,
        outcome: Option<Box<Outcome>>,
    },
}

/// The controller's reconcile: skips a settled tenant, otherwise runs
/// [`reconcile_with_finalizer`] and settles the tenant if the pass was steady.
pub async fn reconcile_tenant(
    tcp: Arc<TenantControlPlane>,
    ctx: &Context,
    steady: &super::steady::SteadyState,
    now: OffsetDateTime,
) -> Result<Pass, kube::runtime::finalizer::Error<ReconcileError>> {
    let name = tcp.metadata.name.clone().unwrap_or_default();
    let fingerprint = super::steady::fingerprint(&tcp);
    if let Some(remaining) = steady.settled_for(&name, fingerprint, now) {
        return Ok(Pass::Skipped {
            requeue_after: remaining,
        });
    }
    let epoch = steady.epoch(&name);
    let deleting = tcp.metadata.deletion_timestamp.is_some();
    let (mut action, outcome) = reconcile_with_finalizer(tcp, ctx, now).await?;
    if deleting {
        steady.forget(&name);
    } else if let Some(outcome) = outcome.as_ref().filter(|o| o.is_steady()) {
        let mut until = now + super::steady::MAX_SETTLED;
        if let Some(due) = outcome.token_renewal_due {
            until = until.min(due.max(now));
        }
        steady.settle(&name, fingerprint, epoch, until);
        // Come back when the settled time ends, for the periodic full pass.
        action = kube::runtime::controller::Action::requeue(
            Duration::try_from(until - now).unwrap_or(PENDING_REQUEUE),
        );
    }
    Ok(Pass::Full {
        action,
        outcome: outcome.map(Box::new),
    })
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
    let mut notes: Vec<Note> = Vec::new();
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
        return finish(tcp, ctx, status, report, notes, None).await;
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
            return finish(tcp, ctx, status, report, notes, Some(PENDING_REQUEUE)).await;
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
            return finish(tcp, ctx, status, report, notes, None).await;
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
    let decision = upgrade::plan(running, desired);
    if let UpgradeDecision::Refused(reason) = &decision {
        set(&mut status, "Ready", false, "UpgradeRefused", reason);
        return finish(tcp, ctx, status, report, notes, None).await;
    }

    // 4. The PKI: kept from the tenant's Secrets, reissued only where needed.
    let existing = read_pki(&ctx.client, &namespace).await?;
    let join = read_join_token(&ctx.client, &namespace).await?;
    let recorded_hash = tcp.status.as_ref().and_then(|s| s.ca_cert_hash.clone());
    let recreate = tcp
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ca_guard::RECREATE_CA_ANNOTATION));
    match ca_guard::check(
        &existing,
        recorded_hash.as_deref(),
        join.is_some(),
        recreate.map(String::as_str),
    ) {
        ca_guard::CaCheck::Go => {}
        ca_guard::CaCheck::Recreate { missing } => notes.push(Note::warning(
            "RecreatingCA",
            format!(
                "making new {} as annotation {} asks; every worker must join again",
                missing.join(", "),
                ca_guard::RECREATE_CA_ANNOTATION
            ),
        )),
        ca_guard::CaCheck::Lost { missing } => {
            let message = ca_guard::lost_message(&missing, &namespace, recorded_hash.as_deref());
            set(
                &mut status,
                "CertificatesReady",
                false,
                "CAMissing",
                &message,
            );
            not_ready(&mut status, "CertificatesNotReady", &message, "Failed");
            return finish(tcp, ctx, status, report, notes, None).await;
        }
    }
    // The join token: the one in Secret `join` while more than a third of its
    // lifetime remains, else a new one (old tokens expire; the tokencleaner removes them).
    let ttl = resolve::parse_duration("spec.join.tokenTTL", &tcp.spec.join.token_ttl)
        .expect("validated above");
    let (token, expiration) = match join {
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
            return finish(tcp, ctx, status, report, notes, None).await;
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
            return finish(tcp, ctx, status, report, notes, None).await;
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
    if issued
        .decisions
        .iter()
        .any(|d| d.action != gantry_pki::Action::Kept && d.item != "cluster-info.conf")
    {
        let changed: Vec<String> = issued
            .decisions
            .iter()
            // cluster-info.conf is derived on every pass and stored in no Secret.
            .filter(|d| d.action != gantry_pki::Action::Kept && d.item != "cluster-info.conf")
            .map(|d| format!("{} {}", d.item, d.action))
            .collect();
        notes.push(Note::normal("CertificatesIssued", list_for_note(&changed)));
    }

    // 5. Render, and during an upgrade also the running version: objects of
    // steps not reached yet stay as that version renders them.
    let rendered = gantry_renderer::render(&resolved.input, &issued.bundle)?;
    let live = read_rollouts(&ctx.client, &namespace, &decision).await?;
    let mut upgrade_at: Option<(UpgradeStep, bool)> = None;
    let (service_objects, tenant_rendered) = match &decision {
        UpgradeDecision::Upgrade { from, to, steps } => {
            let mut running_tcp = tcp.clone();
            running_tcp.spec.version = from.to_string();
            let running_input = match resolve::resolve(
                &running_tcp,
                &endpoint,
                token.clone(),
                Some(expiration),
                now,
                &ctx.service_cluster_domain,
            ) {
                Ok(resolved) => resolved.input,
                Err(error) => {
                    not_ready(&mut status, "InvalidSpec", &error.to_string(), "Failed");
                    return finish(tcp, ctx, status, report, notes, None).await;
                }
            };
            let running = gantry_renderer::render(&running_input, &issued.bundle)?;
            let target_image = |kind: &str, name: &str| {
                rendered
                    .service
                    .iter()
                    .find(|o| o.kind == kind && o.name == name)
                    .and_then(|o| o.value.pointer(POD_IMAGE).and_then(|i| i.as_str()))
                    .map(str::to_string)
            };
            let index = upgrade::current_step(steps, target_image, |kind, name| {
                live.iter()
                    .find(|(k, n, _)| *k == kind && *n == name)
                    .map(|(_, _, r)| r.clone())
            });
            let step = steps[index.min(steps.len() - 1)];
            let last = index + 1 >= steps.len();
            upgrade_at = Some((step, last));
            tracing::info!(%from, %to, %step, "upgrade in progress");
            let reached = |kind: &str, name: &str| match UpgradeStep::of_workload(kind, name) {
                Some(workload_step) => steps
                    .iter()
                    .position(|s| *s == workload_step)
                    .is_none_or(|position| position <= index),
                None => true,
            };
            let service = rendered
                .service
                .iter()
                .map(|object| {
                    if reached(&object.kind, &object.name) {
                        object.clone()
                    } else {
                        running
                            .service
                            .iter()
                            .find(|o| o.kind == object.kind && o.name == object.name)
                            .cloned()
                            .unwrap_or_else(|| object.clone())
                    }
                })
                .collect::<Vec<_>>();
            let tenant = if last {
                rendered.tenant.clone()
            } else {
                running.tenant
            };
            (service, tenant)
        }
        _ => (rendered.service.clone(), rendered.tenant.clone()),
    };
    // The bootstrap set owns the Namespace and the kube-apiserver Service.
    let objects: Vec<DesiredObject> = apply::service_set(&service_objects)
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
    if !report.applied.is_empty() {
        notes.push(Note::normal(
            "Applied",
            format!(
                "applied {} objects in {namespace}: {}",
                report.applied.len(),
                list_for_note(&report.applied)
            ),
        ));
    }
    if !report.pruned.is_empty() {
        notes.push(Note::normal(
            "Pruned",
            format!(
                "deleted objects gantry no longer renders: {}",
                list_for_note(&report.pruned)
            ),
        ));
    }

    // 6. Readiness (status as the workload controllers last reported it).
    let ready_of = |kind: &str, name: &str| {
        live.iter()
            .find(|(k, n, _)| *k == kind && *n == name)
            .map_or(0, |(_, _, r)| r.ready_replicas)
    };
    let etcd_ready = ready_of("StatefulSet", "etcd");
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
    let apiservers = ready_of("Deployment", "kube-apiserver");
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
        return finish(tcp, ctx, status, report, notes, Some(PENDING_REQUEUE)).await;
    }

    // 7. Bootstrap the tenant cluster through its own apiserver.
    let super_admin = issued
        .bundle
        .get("super-admin.conf")
        .expect("issued")
        .to_vec();
    let server = format!("https://kube-apiserver.{namespace}.svc:6443");
    let tenant_objects: Vec<DesiredObject> = tenant_rendered
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
    let tenant_report = match bootstrapped {
        Ok(report) => report,
        Err(error) => {
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
            return finish(tcp, ctx, status, report, notes, Some(PENDING_REQUEUE)).await;
        }
    };
    if !tenant_report.applied.is_empty() {
        notes.push(Note::normal(
            "TenantBootstrapped",
            format!(
                "applied {} objects in the tenant cluster: {}",
                tenant_report.applied.len(),
                list_for_note(&tenant_report.applied)
            ),
        ));
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
    let join_report = apply::apply_set(
        &ctx.client,
        &name,
        "join",
        &[DesiredObject {
            value: join,
            create_only: false,
        }],
        &[],
    )
    .await?;
    if join_report.writes() > 0 {
        notes.push(Note::normal(
            "JoinTokenUpdated",
            format!(
                "Secret {JOIN_SECRET} holds a bootstrap token valid until {}",
                gantry_pki::rfc3339(expiration)
            ),
        ));
    }
    merge(&mut report, join_report);
    status.join_secret = Some(JOIN_SECRET.into());

    if let (UpgradeDecision::Upgrade { from, to, .. }, Some((step, last))) = (&decision, upgrade_at)
    {
        if !last {
            let message = format!("upgrading {from} to {to}: rolling {step}");
            if report.writes() > 0 {
                notes.push(Note::normal("UpgradeStep", message.clone()));
            }
            not_ready(&mut status, "Upgrading", &message, "Upgrading");
            return finish(tcp, ctx, status, report, notes, Some(PENDING_REQUEUE)).await;
        }
        notes.push(Note::normal(
            "Upgraded",
            format!("upgraded from {from} to {to}"),
        ));
    }

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
    // What runs: the new version once every step is done (an install is
    // done once it is ready).
    if ready || matches!(decision, UpgradeDecision::Upgrade { .. }) {
        status.version = Some(resolved.input.version.to_string());
    }
    let mut outcome = finish(
        tcp,
        ctx,
        status,
        report,
        notes,
        if ready { None } else { Some(PENDING_REQUEUE) },
    )
    .await?;
    outcome.tenant_writes = tenant_report.writes();
    outcome.token_renewal_due = Some(expiration - ttl / 3);
    Ok(outcome)
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
    let command = gantry_pki::kubeadm_join_command(endpoint, &token.expose(), ca_hash);
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
    mut notes: Vec<Note>,
    requeue_after: Option<Duration>,
) -> Result<Outcome, ReconcileError> {
    let changed = tcp.status.as_ref() != Some(&status);
    if changed {
        notes.extend(status_notes(tcp.status.as_ref(), &status));
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
        notes,
        tenant_writes: 0,
        token_renewal_due: None,
    })
}

/// Events for a status change: the phase reaching Ready, and a refusal
/// (invalid spec, refused upgrade, unusable PKI) the first time it is reported.
fn status_notes(
    old: Option<&TenantControlPlaneStatus>,
    new: &TenantControlPlaneStatus,
) -> Vec<Note> {
    let ready = |status: Option<&TenantControlPlaneStatus>| {
        status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned())
    };
    let (before, after) = (ready(old), ready(Some(new)));
    let Some(after) = after else {
        return Vec::new();
    };
    let unchanged = before.as_ref().is_some_and(|b| {
        (&b.status, &b.reason, &b.message) == (&after.status, &after.reason, &after.message)
    });
    if unchanged {
        return Vec::new();
    }
    match after.reason.as_str() {
        "Ready" => vec![Note::normal("Ready", after.message)],
        "InvalidSpec" | "UpgradeRefused" | "CertificatesNotReady" | "InvalidEndpoint" => {
            vec![Note::warning(&after.reason, after.message)]
        }
        _ => Vec::new(),
    }
}

/// JSON pointer to the image of a workload's first container.
const POD_IMAGE: &str = "/spec/template/spec/containers/0/image";

/// The control-plane workloads as they run: etcd and the apiserver always
/// (for readiness), the controller-manager and scheduler only during an upgrade.
async fn read_rollouts(
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

/// Timeouts for every request to a tenant's apiserver (no watches go there).
pub fn with_request_timeouts(config: &mut kube::Config) {
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    config.read_timeout = Some(std::time::Duration::from_secs(30));
    config.write_timeout = Some(std::time::Duration::from_secs(30));
    // Idle time of a pooled connection must not count against the next read.
    config.reset_reader_on_write = true;
}
