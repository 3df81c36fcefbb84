//! The steps of one full pass, in the order `pipeline::reconcile` runs them.
//! Each step reads what it needs (through `observe`), decides with the pure
//! modules beside it, applies, and records conditions and notes in the
//! [`PassState`]. A step that cannot go on returns a [`Halt`]: the tenant's
//! status says why, and the pass ends there.

use std::collections::BTreeSet;
use std::time::Duration;

use gantry_pki::{BootstrapToken, Endpoint, Issued};
use gantry_renderer::{Images, RenderInput, RenderedObject};
use time::OffsetDateTime;

use super::ca_guard;
use super::context::PENDING_REQUEUE;
use super::endpoint::{EndpointState, resolve_endpoint};
use super::observe;
use super::outcome::{Note, list_for_note};
use super::pass::{Halt, PassState, Stop};
use super::upgrade::{self, Rollout, UpgradeDecision, UpgradeStep};
use crate::api::{ConditionType, Phase};
use crate::apply::{self, DesiredObject};
use crate::resolve::{self, Resolved, ValidatedTenant};
use gantry_api::join_secret::{self, JOIN_SECRET};

/// Step 1, validate: an invalid spec changes nothing but its status.
pub(super) fn validate(pass: &PassState) -> Result<ValidatedTenant, Halt> {
    resolve::validate_for(pass.tcp, &pass.ctx.service_cluster)
        .map_err(|error| Halt::failed("InvalidSpec", error.to_string()))
}

/// Step 2: The bootstrap set (Namespace, kube-apiserver Service), which the
/// endpoint comes from. Returns the (kind, name) of its objects, which the
/// service set leaves to it.
pub(super) async fn apply_bootstrap_set(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
) -> Result<Vec<(String, String)>, Stop> {
    let objects = gantry_renderer::render_bootstrap(&tenant.bootstrap)?;
    let keys = objects
        .iter()
        .map(|o| (o.kind.clone(), o.name.clone()))
        .collect();
    let desired: Vec<DesiredObject> = objects
        .into_iter()
        .map(|object| DesiredObject::applied(object.value))
        .collect();
    let report =
        apply::apply_set(pass.ctx.cluster(), &tenant.name, "bootstrap", &desired, &[]).await?;
    pass.merge(report);
    Ok(keys)
}

/// Step 3: Where nodes reach the apiserver: the spec's, or the Service's.
pub(super) async fn endpoint(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
) -> Result<Endpoint, Stop> {
    let (service, nodes) =
        observe::endpoint_inputs(pass.ctx.cluster(), pass.tcp, &tenant.namespace).await?;
    pass.tunnel_node_port = service.as_ref().and_then(|s| s.konnectivity_node_port);
    match resolve_endpoint(&pass.tcp.spec, service.as_ref(), &nodes) {
        EndpointState::Ready { endpoint, .. } => {
            let message = format!("nodes reach the apiserver at {endpoint}");
            pass.condition(ConditionType::EndpointReady, true, "Resolved", &message);
            pass.status.endpoint = Some(endpoint.to_string());
            Ok(endpoint)
        }
        EndpointState::Pending(reason) => {
            Err(Halt::pending("EndpointPending", &reason, Phase::Pending)
                .because(ConditionType::EndpointReady, "Pending", reason)
                .into())
        }
        EndpointState::Invalid(message) => Err(Halt::failed("InvalidEndpoint", &message)
            .because(ConditionType::EndpointReady, "InvalidEndpoint", message)
            .into()),
    }
}

/// Step 4: Version changes: one minor at a time, never down. A refused change
/// leaves the running control plane as it is (and its phase).
pub(super) fn version(pass: &PassState, tenant: &ValidatedTenant) -> Result<UpgradeDecision, Halt> {
    let running = pass.status.version.as_deref().and_then(|v| v.parse().ok());
    match upgrade::plan(running, tenant.version) {
        UpgradeDecision::Refused(reason) => Err(Halt::refused("UpgradeRefused", reason)),
        decision => Ok(decision),
    }
}

/// What the PKI step made: the certificates, the render input, and the join
/// token that both went into.
pub(super) struct Certificates {
    pub issued: Issued,
    pub resolved: Resolved,
    pub token: BootstrapToken,
    pub expiration: OffsetDateTime,
    /// The names of the Secrets in the tenant namespace, as this pass read them.
    pub secrets: BTreeSet<String>,
    /// The recreate-CA annotation, if present, for `ca_guard::disarm`.
    pub recreate_ca: Option<ca_guard::Armed>,
}

/// Step 5: The PKI: kept from the tenant's Secrets, reissued only where needed;
/// a lost CA stops the pass (see `ca_guard`).
pub(super) async fn certificates(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
    endpoint: &Endpoint,
) -> Result<Certificates, Stop> {
    let observe::SecretsRead {
        pki: existing,
        join,
        names: secrets,
    } = observe::secrets(&pass.ctx.client, &tenant.namespace).await?;
    let recreate_ca = ca_guard::guard(pass, tenant, &existing, join.is_some())?;
    // The token in Secret `join` while more than a third of its lifetime
    // remains, else a new one (old tokens expire; the tokencleaner removes them).
    let (token, expiration) = match join {
        Some((token, expiration))
            if !super::token::needs_new_token(Some(expiration), tenant.token_ttl, pass.now) =>
        {
            (token, expiration)
        }
        _ => (BootstrapToken::generate(), pass.now + tenant.token_ttl),
    };
    let mut resolved = resolve::resolve(
        pass.tcp,
        endpoint,
        token.clone(),
        Some(expiration),
        pass.now,
        &pass.ctx.service_cluster,
    )
    .map_err(|error| Halt::failed("InvalidSpec", error.to_string()))?;
    if let Some(tunnel) = &mut resolved.input.konnectivity
        && tunnel.agent_address.is_none()
    {
        let Some(port) = pass.tunnel_node_port else {
            let reason = "waiting for the tunnel's node port to be allocated";
            return Err(Halt::pending("EndpointPending", reason, Phase::Pending)
                .because(ConditionType::EndpointReady, "Pending", reason.into())
                .into());
        };
        tunnel.agent_address = Some(endpoint.with_port(port));
    }
    let issued = gantry_pki::issue(&resolved.pki, &existing, pass.now).map_err(|error| {
        // Never replace a CA because a read failed: stop and say why.
        let message = error.to_string();
        Halt::failed("CertificatesNotReady", &message).because(
            ConditionType::CertificatesReady,
            "Unusable",
            message,
        )
    })?;
    // The condition describes state, not this pass's actions (created or
    // reissued certificates are events), so an unchanged tenant keeps an
    // unchanged status and costs no write.
    pass.condition(
        ConditionType::CertificatesReady,
        true,
        "Valid",
        "every certificate is valid and signed by the current CA",
    );
    pass.status.ca_cert_hash = Some(issued.bundle.ca_cert_hash());
    let changed: Vec<String> = issued
        .decisions
        .iter()
        // cluster-info.conf is derived on every pass and stored in no Secret.
        .filter(|d| d.action != gantry_pki::Action::Kept && d.item != "cluster-info.conf")
        .map(|d| format!("{} {}", d.item, d.action))
        .collect();
    if !changed.is_empty() {
        pass.notes
            .push(Note::normal("CertificatesIssued", list_for_note(&changed)));
    }
    Ok(Certificates {
        issued,
        resolved,
        token,
        expiration,
        secrets,
        recreate_ca,
    })
}

/// What the service set step leaves for the later steps.
pub(super) struct ServiceSetApplied {
    /// The control-plane workloads as they run.
    pub live: Vec<(&'static str, &'static str, Rollout)>,
    /// What to apply in the tenant cluster.
    pub tenant_objects: Vec<RenderedObject>,
    /// During an upgrade: the step it is at, and whether it is the last.
    pub upgrade_at: Option<(UpgradeStep, bool)>,
}

/// Step 6: Render and apply the service set. During an upgrade, objects of steps
/// not reached yet stay as the running version renders them.
pub(super) async fn apply_service_set(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
    certificates: &Certificates,
    decision: &UpgradeDecision,
    bootstrap_keys: &[(String, String)],
) -> Result<ServiceSetApplied, Stop> {
    let input = &certificates.resolved.input;
    let bundle = &certificates.issued.bundle;
    let rendered = gantry_renderer::render(input, bundle)?;
    let live = observe::rollouts(pass.ctx.cluster(), &tenant.namespace, decision).await?;
    let (service_objects, tenant_objects, upgrade_at) = match decision {
        UpgradeDecision::Upgrade { from, to, steps } => {
            let running = gantry_renderer::render(&at_version(input, *from), bundle)?;
            let at = upgrade::objects_at_step(steps, &rendered, running, &live);
            tracing::info!(%from, %to, step = %at.step, "upgrade in progress");
            (at.service, at.tenant, Some((at.step, at.last)))
        }
        _ => (rendered.service, rendered.tenant, None),
    };
    // The bootstrap set owns the Namespace and the kube-apiserver Service.
    let objects: Vec<DesiredObject> =
        apply::service_set(&service_objects, Some(&certificates.secrets))
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
    let report = apply::apply_set(
        pass.ctx.cluster(),
        &tenant.name,
        "service",
        &objects,
        &gantry_renderer::kinds::service_set_kinds(),
    )
    .await?;
    pass.merge(report);
    pass.status.kubeconfig_secret = Some("admin-kubeconfig".into());
    // Recorded once applied, not when planned: a pass that stops before
    // applying it must not make its absence look like a loss.
    pass.status.encryption_secret = Some(gantry_renderer::ENCRYPTION_SECRET.into());
    if !pass.report.applied.is_empty() {
        let message = format!(
            "applied {} objects in {}: {}",
            pass.report.applied.len(),
            tenant.namespace,
            list_for_note(&pass.report.applied)
        );
        pass.notes.push(Note::normal("Applied", message));
    }
    if !pass.report.pruned.is_empty() {
        let message = format!(
            "deleted objects gantry no longer renders: {}",
            list_for_note(&pass.report.pruned)
        );
        pass.notes.push(Note::normal("Pruned", message));
    }
    Ok(ServiceSetApplied {
        live,
        tenant_objects,
        upgrade_at,
    })
}

/// The render input of the running version `version`: the same tenant, with
/// that version's flags and images.
fn at_version(input: &RenderInput, version: gantry_renderer::KubeVersion) -> RenderInput {
    RenderInput {
        version,
        images: Images::for_version(version, &input.image_repository),
        ..input.clone()
    }
}

/// Step 7: Readiness, as the workload controllers last reported it. Goes on once
/// a kube-apiserver replica is available; returns whether etcd has quorum.
pub(super) fn readiness(
    pass: &mut PassState<'_>,
    live: &[(&'static str, &'static str, Rollout)],
) -> Result<bool, Halt> {
    let ready_of = |kind: &str, name: &str| {
        live.iter()
            .find(|(k, n, _)| *k == kind && *n == name)
            .map_or(0, |(_, _, r)| r.ready_replicas)
    };
    let etcd_ready = ready_of("StatefulSet", "etcd");
    let etcd_wanted = pass.tcp.spec.etcd.replicas;
    // A majority of members must be ready for etcd to serve.
    let quorum = etcd_ready > etcd_wanted / 2;
    pass.condition(
        ConditionType::EtcdReady,
        quorum,
        if quorum { "Quorum" } else { "NoQuorum" },
        &format!("{etcd_ready}/{etcd_wanted} members ready"),
    );
    let apiservers = ready_of("Deployment", "kube-apiserver");
    pass.condition(
        ConditionType::APIServerReady,
        apiservers > 0,
        if apiservers > 0 {
            "Available"
        } else {
            "Unavailable"
        },
        &format!("{apiservers} kube-apiserver replicas available"),
    );
    if apiservers == 0 {
        return Err(Halt::pending(
            "APIServerNotReady",
            "waiting for a kube-apiserver replica to be available",
            Phase::Provisioning,
        ));
    }
    Ok(quorum)
}

/// Step 9: Secret `join`: token, CA hash, endpoint and the whole command.
pub(super) async fn apply_join_secret(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
    certificates: &Certificates,
    endpoint: &Endpoint,
) -> Result<(), Stop> {
    let join = join_secret::object(
        &tenant.namespace,
        &certificates.token,
        certificates.expiration,
        &endpoint.to_string(),
        &certificates.issued.bundle.ca_cert_hash(),
    );
    let desired = [DesiredObject::applied(join)];
    let report = apply::apply_set(pass.ctx.cluster(), &tenant.name, "join", &desired, &[]).await?;
    if report.writes() > 0 {
        let message = format!(
            "Secret {JOIN_SECRET} holds a bootstrap token valid until {}",
            gantry_pki::rfc3339(certificates.expiration)
        );
        pass.notes.push(Note::normal("JoinTokenUpdated", message));
    }
    pass.merge(report);
    pass.status.join_secret = Some(JOIN_SECRET.into());
    Ok(())
}

/// Step 10: An upgrade not at its last step waits for the next rollout.
pub(super) fn upgrade_progress(
    pass: &mut PassState<'_>,
    decision: &UpgradeDecision,
    upgrade_at: Option<(UpgradeStep, bool)>,
) -> Result<(), Halt> {
    let (UpgradeDecision::Upgrade { from, to, .. }, Some((step, last))) = (decision, upgrade_at)
    else {
        return Ok(());
    };
    if last {
        let message = format!("upgraded from {from} to {to}");
        pass.notes.push(Note::normal("Upgraded", message));
        return Ok(());
    }
    let message = format!("upgrading {from} to {to}: rolling {step}");
    if pass.report.writes() > 0 {
        pass.notes
            .push(Note::normal("UpgradeStep", message.clone()));
    }
    Err(Halt::pending("Upgrading", message, Phase::Upgrading))
}

/// Step 11: Ready, or Degraded while etcd has no quorum. Returns when to look again.
pub(super) fn ready(
    pass: &mut PassState<'_>,
    quorum: bool,
    decision: &UpgradeDecision,
    version: gantry_renderer::KubeVersion,
) -> Option<Duration> {
    pass.condition(
        ConditionType::Ready,
        quorum,
        if quorum { "Ready" } else { "Degraded" },
        if quorum {
            "the control plane serves and nodes can join"
        } else {
            "etcd has no quorum"
        },
    );
    let phase = if quorum {
        Phase::Ready
    } else {
        Phase::Degraded
    };
    pass.status.phase = Some(phase.as_str().into());
    // What runs: the new version once every step is done (an install is
    // done once it is ready).
    if quorum || matches!(decision, UpgradeDecision::Upgrade { .. }) {
        pass.status.version = Some(version.to_string());
    }
    if quorum { None } else { Some(PENDING_REQUEUE) }
}
