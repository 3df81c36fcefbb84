//! One reconcile of a `TenantControlPlane`, service-cluster side. The driver
//! [`reconcile`] names the steps (in `steps`) and runs them in order; each
//! either goes on or halts with a reason that the status reports. One exit
//! writes the status (`status`).
//!
//! Version upgrades roll one step at a time (see `upgrade`): the objects of
//! steps not yet reached are applied as the running version renders them.
//! What changed is returned as [`Note`]s; the run loop publishes them as events.

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use time::OffsetDateTime;

use super::error::api_error;
use super::pass::{End, PassState, Stop};
use super::status;
use super::steps;
use crate::api::TenantControlPlane;

pub use super::context::{Context, PENDING_REQUEUE};
pub use super::error::{ErrorCategory, ReconcileError};
pub use super::outcome::{Note, Outcome};
pub use super::tenant_client::{
    TenantClientError, TenantClientFactory, client_from_kubeconfig, tenant_client_from_kubeconfig,
    with_request_timeouts,
};
pub use gantry_api::join_secret::JOIN_SECRET;
pub use gantry_api::labels::FINALIZER;

/// How long a pass waits for the operator's first list of gantry's objects
/// before it reports that it is waiting.
const LIVE_SYNC_LIMIT: Duration = Duration::from_secs(30);

/// Reconciles `tcp` once, at `now`: the steps in order, then the status.
pub async fn reconcile(
    tcp: &TenantControlPlane,
    ctx: &Context,
    now: OffsetDateTime,
) -> Result<Outcome, ReconcileError> {
    if let Some(live) = &ctx.live {
        let listing = live.wait_synced(LIVE_SYNC_LIMIT).await;
        if !listing.is_empty() {
            return Err(ReconcileError::Waiting(format!(
                "the operator is still listing the service cluster's {}",
                listing.join(", ")
            )));
        }
    }
    let mut pass = PassState::new(tcp, ctx, now);
    let end = match full_pass(&mut pass).await {
        Ok(end) => end,
        Err(Stop::Halt(halt)) => End {
            requeue_after: pass.halt(halt),
            ..End::default()
        },
        Err(Stop::Failed(error)) => return Err(error),
    };
    status::finish(pass, end).await
}

async fn full_pass(pass: &mut PassState<'_>) -> Result<End, Stop> {
    let tenant = steps::validate(pass)?;
    let bootstrap_keys = steps::apply_bootstrap_set(pass, &tenant).await?;
    let endpoint = steps::endpoint(pass, &tenant).await?;
    let decision = steps::version(pass, &tenant)?;
    let certificates = steps::certificates(pass, &tenant, &endpoint).await?;
    super::restore::step(pass, &tenant.namespace, &certificates.resolved.input).await?;
    let applied =
        steps::apply_service_set(pass, &tenant, &certificates, &decision, &bootstrap_keys).await?;
    super::ca_guard::disarm(pass, certificates.recreate_ca.as_ref()).await?;
    let backup = certificates.resolved.input.backup.as_ref();
    super::backup::step(pass, &tenant.namespace, backup).await;
    let quorum = steps::readiness(pass, &applied.live)?;
    let tenant_writes = super::tenant_bootstrap::bootstrap_tenant(
        pass,
        &tenant,
        &certificates,
        &applied.tenant_objects,
    )
    .await?;
    steps::apply_join_secret(pass, &tenant, &certificates, &endpoint).await?;
    steps::upgrade_progress(pass, &decision, applied.upgrade_at)?;
    let requeue_after = steps::ready(pass, quorum, &decision, tenant.version);
    Ok(End {
        requeue_after,
        tenant_writes,
        token_renewal_due: Some(certificates.expiration - tenant.token_ttl / 3),
    })
}

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
    if let Some(approvers) = &ctx.kubelet_serving {
        approvers.stop(&name);
    }
    let namespace = gantry_pki::default_namespace(&name);
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match namespaces.delete(&namespace, &Default::default()).await {
        Ok(_) => {}
        // Gone, or (409) already terminating: a repeated DELETE of a
        // terminating namespace is answered with a conflict. Either way,
        // look whether it is still there.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
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
