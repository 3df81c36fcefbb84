//! The one exit of a pass: the status is written if it changed (a settled
//! tenant costs no write), and the pass's [`Outcome`] is returned.
//!
//! The status is written by server-side apply, as field manager `gantry` on
//! the status subresource: the whole status each time, so a field that a
//! pass no longer sets is removed rather than left behind (a merge patch
//! cannot remove a field that serialisation skips).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde_json::json;

use super::error::{ReconcileError, api_error};
use super::outcome::{Outcome, status_notes};
use super::pass::End;
use super::pass::PassState;
use crate::api::TenantControlPlane;
use crate::apply::FIELD_MANAGER;

pub(super) async fn finish(pass: PassState<'_>, end: End) -> Result<Outcome, ReconcileError> {
    let PassState {
        tcp,
        ctx,
        status,
        report,
        mut notes,
        ..
    } = pass;
    let changed = tcp.status.as_ref() != Some(&status);
    if changed {
        notes.extend(status_notes(tcp.status.as_ref(), &status));
        let name = tcp.metadata.name.clone().unwrap_or_default();
        let api: Api<TenantControlPlane> = Api::all(ctx.client.clone());
        let applied = json!({
            "apiVersion": TenantControlPlane::api_version(&()),
            "kind": TenantControlPlane::kind(&()),
            "metadata": {"name": name},
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(applied),
        )
        .await
        .map_err(api_error(format!(
            "apply status of TenantControlPlane {name}"
        )))?;
    }
    Ok(Outcome {
        status,
        requeue_after: end.requeue_after,
        applied: report,
        status_written: changed,
        notes,
        tenant_writes: end.tenant_writes,
        token_renewal_due: end.token_renewal_due,
    })
}
