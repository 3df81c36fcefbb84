//! Step 8 of a pass: bootstrap the tenant cluster through its own apiserver,
//! as gantry-operator. Super-admin only grants the operator its RBAC, when
//! `operator_access::plan` says so (docs/design/operator-credential.md).

use gantry_renderer::RenderedObject;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::operator_access::{self, AccessError, AccessPlan, GRANT_ANNOTATION, TenantSet};
use super::outcome::{Note, list_for_note};
use super::pass::{Halt, PassState};
use super::steps::Certificates;
use crate::api::{ConditionType, Phase, TenantControlPlane};
use crate::resolve::ValidatedTenant;

/// The kubeconfig that only grants gantry-operator its access.
const SUPER_ADMIN_KUBECONFIG: &str = "super-admin.conf";

/// Applies the tenant set as gantry-operator (after granting or checking
/// its access) and runs the kubelet-serving approver with that client.
/// Returns the number of writes made in the tenant.
pub(super) async fn bootstrap_tenant(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
    certificates: &Certificates,
    tenant_objects: &[RenderedObject],
) -> Result<usize, Halt> {
    let server = format!("https://kube-apiserver.{}.svc:6443", tenant.namespace);
    let halt = |error: AccessError| {
        let halt = Halt::pending(
            "TenantNotBootstrapped",
            "the tenant cluster could not be bootstrapped",
            Phase::Provisioning,
        );
        // An access problem leaves the control plane as it runs: a person
        // acts (revoked) or the next pass goes on (propagating).
        let halt = if error.is_access() {
            halt.keeping_phase()
        } else {
            halt
        };
        let message = match error {
            AccessError::Revoked(_) => error.to_string(),
            _ => format!("{server}: {error}"),
        };
        halt.because(ConditionType::TenantBootstrapped, error.reason(), message)
    };
    let operator_conf = kubeconfig(certificates, gantry_pki::OPERATOR_KUBECONFIG);
    let operator = (pass.ctx.tenant_client)(operator_conf.clone(), server.clone())
        .await
        .map_err(|error| halt(error.into()))?;
    let set = TenantSet::of(tenant_objects.iter().map(|o| &o.value));
    let checked = grant_or_check(pass, tenant, certificates, &operator, &set, &server).await;
    let mut writes = match checked {
        Ok(writes) => writes,
        Err(error) => {
            // Access revoked or changed by someone else: the operator writes
            // nothing in the tenant, approvals included, until it is
            // granted anew; the next pass with access starts the approver.
            if let (AccessError::Revoked(_), Some(approvers)) = (&error, &pass.ctx.kubelet_serving)
            {
                approvers.stop(&tenant.name);
            }
            return Err(halt(error));
        }
    };
    // Nothing is pruned in the tenant: old bootstrap tokens expire and the tokencleaner removes them.
    let report = operator_access::apply_as_operator(&operator, &tenant.name, &set)
        .await
        .map_err(&halt)?;
    if let (Some(approvers), Some(reserved)) = (&pass.ctx.kubelet_serving, reserved(certificates)) {
        approvers.ensure(&tenant.name, &operator_conf, operator, reserved);
    }
    if !report.applied.is_empty() {
        let message = format!(
            "applied {} objects in the tenant cluster: {}",
            report.applied.len(),
            list_for_note(&report.applied)
        );
        pass.notes.push(Note::normal("TenantBootstrapped", message));
    }
    pass.condition(
        ConditionType::TenantBootstrapped,
        true,
        "Applied",
        "everything kubeadm join needs is in the tenant cluster",
    );
    writes += report.writes();
    Ok(writes)
}

/// The privileged set: granted with super-admin when `operator_access::plan`
/// says so, else checked as gantry-operator. Returns the number of writes.
async fn grant_or_check(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
    certificates: &Certificates,
    operator: &kube::Client,
    set: &TenantSet,
    server: &str,
) -> Result<usize, AccessError> {
    let desired = set.privileged_hash();
    let annotations = pass.tcp.metadata.annotations.as_ref();
    let asked = annotations.and_then(|a| a.get(GRANT_ANNOTATION)).cloned();
    let plan = operator_access::plan(
        pass.status.operator_access_hash.as_deref(),
        &desired,
        asked.as_deref(),
        pass.status.operator_access_grant.as_deref(),
    );
    let AccessPlan::Grant(why) = plan else {
        let changed = operator_access::check(operator, &tenant.name, set).await?;
        if !changed.is_empty() {
            let message = format!(
                "changed in the tenant, and left as they are: {}; set annotation \
                 {GRANT_ANNOTATION} to a new value to restore them",
                changed.join(", ")
            );
            pass.notes
                .push(Note::warning("AdminBindingsChanged", message));
        }
        return Ok(0);
    };
    let super_admin = kubeconfig(certificates, SUPER_ADMIN_KUBECONFIG);
    let super_admin = (pass.ctx.tenant_client)(super_admin, server.to_string()).await?;
    let report = operator_access::grant(&super_admin, operator, &tenant.name, set).await?;
    pass.status.operator_access_hash = Some(desired);
    pass.status.operator_access_grant = asked;
    record_grant(pass).await;
    let message = format!(
        "granted gantry-operator its access with super-admin ({why}): {}",
        list_for_note(&report.applied)
    );
    pass.notes
        .push(Note::normal("OperatorAccessGranted", message));
    Ok(report.writes())
}

/// Writes the grant's record to the status at once: a later step of this
/// pass that fails must not make the next pass grant again. The pass's own
/// status write, at its end, writes it too, so a failure here only logs.
async fn record_grant(pass: &PassState<'_>) {
    let name = pass.tcp.metadata.name.clone().unwrap_or_default();
    let api: Api<TenantControlPlane> = Api::all(pass.ctx.client.clone());
    let record = json!({"status": {
        "operatorAccessHash": pass.status.operator_access_hash,
        "operatorAccessGrant": pass.status.operator_access_grant,
    }});
    let patched = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(record))
        .await;
    if let Err(error) = patched {
        tracing::warn!(%error, "recording the operator's grant in the status");
    }
}

/// A kubeconfig of the issued bundle, which `issue` always makes.
fn kubeconfig(certificates: &Certificates, file: &str) -> Vec<u8> {
    certificates
        .issued
        .bundle
        .get(file)
        .expect("issue makes every kubeconfig of the catalog")
        .to_vec()
}

/// What no kubelet may have in its serving certificate: the tenant
/// apiserver's names and addresses and the tenant's networks. `None` (and no
/// approver: nothing is approved) if the apiserver's certificate does not
/// read, which `issue` has already checked.
fn reserved(certificates: &Certificates) -> Option<crate::kubelet_serving::Reserved> {
    let networking = &certificates.resolved.input.networking;
    let apiserver = certificates.issued.bundle.get("pki/apiserver.crt")?;
    let networks = vec![networking.service_cidr, networking.pod_cidr];
    crate::kubelet_serving::Reserved::of_tenant(apiserver, networks)
        .inspect_err(|error| tracing::warn!(%error, "the apiserver's certificate does not read"))
        .ok()
}
