//! The one exit of a pass: the status is written if it changed (a settled
//! tenant costs no write), and the pass's [`Outcome`] is returned.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::error::{ReconcileError, api_error};
use super::outcome::{Outcome, status_notes};
use super::pass::PassState;
use super::pipeline::End;
use crate::api::TenantControlPlane;

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
        requeue_after: end.requeue_after,
        applied: report,
        status_written: changed,
        notes,
        tenant_writes: end.tenant_writes,
        token_renewal_due: end.token_renewal_due,
    })
}
