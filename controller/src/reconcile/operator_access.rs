//! The operator's access to a tenant cluster (docs/design/operator-credential.md).
//!
//! The operator writes the tenant set as `gantry-operator` (group
//! `gantry:operator`, `operator.conf`), bound in the tenant to exactly what
//! it applies. Only the *privileged set* (that RBAC itself, and the bindings
//! to cluster-admin and kubelet-api-admin) is written with `super-admin.conf`,
//! and only when [`plan`] says so: never granted yet, the rendered set
//! changed, or a platform admin asked with [`GRANT_ANNOTATION`]. Otherwise
//! the operator checks, with its own credential, that the set is as granted.
//! If its own RBAC is not (a binding deleted, a role edited), the access was
//! revoked, and like a lost CA it is never restored without an explicit act;
//! an admin binding changed by a tenant admin is only reported.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Client;
use kube::api::{Api, PostParams};

use super::tenant_client::TenantClientError;
use crate::apply::{self, ApplyError, ApplyReport, DesiredObject};
use crate::live::Cluster;

/// Set to any new value to have the privileged set applied once more with
/// super-admin: after a revocation was undone on purpose, or to revert an
/// edit of `kubeadm:cluster-admins`.
pub const GRANT_ANNOTATION: &str = "gantry.dev/grant-operator-access";

/// The name of gantry-operator's ClusterRole, Roles and their bindings.
const OPERATOR_RBAC: &str = "gantry:operator";

/// The set label of the tenant objects (as before the split, so live
/// objects keep their labels).
const SET: &str = "tenant";

/// How long a grant may take to reach the apiserver's authorizer.
const PROPAGATION: Duration = Duration::from_secs(10);

/// The tenant set split by who writes it.
pub struct TenantSet {
    /// Written with super-admin, when [`plan`] says so.
    pub privileged: Vec<DesiredObject>,
    /// Written as gantry-operator on every pass.
    pub operator: Vec<DesiredObject>,
}

impl TenantSet {
    /// Splits the tenant objects by `gantry_renderer::is_privileged`.
    /// Bootstrap tokens (whose name changes at each rotation) are created
    /// blind: the operator may create Secrets in kube-system but not read
    /// them. Other Secrets (the konnectivity agent's, renewed with the PKI)
    /// are applied, with access by name.
    pub fn of<'a>(objects: impl IntoIterator<Item = &'a serde_json::Value>) -> Self {
        let (privileged, operator): (Vec<_>, Vec<_>) = objects
            .into_iter()
            .partition(|o| gantry_renderer::is_privileged(o));
        TenantSet {
            privileged: privileged
                .into_iter()
                .map(|o| DesiredObject::applied(o.clone()))
                .collect(),
            operator: operator
                .into_iter()
                .map(|o| match (o["kind"].as_str(), o["type"].as_str()) {
                    (Some("Secret"), Some("bootstrap.kubernetes.io/token")) => {
                        DesiredObject::created_blind(o.clone())
                    }
                    _ => DesiredObject::applied(o.clone()),
                })
                .collect(),
        }
    }

    /// One request per rule of gantry-operator's roles (its first group,
    /// resource, name and verb), as access reviews: all allowed means the
    /// whole grant is in the apiserver's authorizer.
    pub fn probes(&self) -> Vec<ResourceAttributes> {
        let roles = self.privileged.iter().map(|o| &o.value).filter(|v| {
            v["metadata"]["name"] == OPERATOR_RBAC
                && matches!(v["kind"].as_str(), Some("Role" | "ClusterRole"))
        });
        let first = |list: Option<Vec<String>>| list.and_then(|l| l.into_iter().next());
        roles
            .flat_map(|role| {
                let namespace = role["metadata"]["namespace"].as_str().map(str::to_string);
                // gantry renders these roles: their rules are well-formed.
                let rules: Vec<PolicyRule> =
                    serde_json::from_value(role["rules"].clone()).unwrap_or_default();
                rules.into_iter().map(move |rule| {
                    let resource = first(rule.resources).unwrap_or_default();
                    let (resource, subresource) = match resource.split_once('/') {
                        Some((resource, sub)) => (resource.to_string(), Some(sub.to_string())),
                        None => (resource, None),
                    };
                    ResourceAttributes {
                        group: first(rule.api_groups),
                        resource: Some(resource),
                        subresource,
                        name: first(rule.resource_names),
                        namespace: namespace.clone(),
                        verb: rule.verbs.into_iter().next(),
                        ..ResourceAttributes::default()
                    }
                })
            })
            .collect()
    }

    /// The hash recorded in `status.operatorAccessHash` once granted.
    pub fn privileged_hash(&self) -> String {
        let values: Vec<&serde_json::Value> = self.privileged.iter().map(|o| &o.value).collect();
        gantry_pki::sha256_hex(&serde_json::to_vec(&values).expect("JSON serialises"))
    }
}

/// What a pass does with the privileged set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessPlan {
    /// Apply it with super-admin, for this reason.
    Grant(&'static str),
    /// Check it as gantry-operator; write nothing with super-admin.
    Check,
}

/// Decides from the status (what was granted, which request was acted on),
/// the rendered set's hash and the annotation.
pub fn plan(
    granted_hash: Option<&str>,
    desired_hash: &str,
    asked: Option<&str>,
    acted_on: Option<&str>,
) -> AccessPlan {
    match granted_hash {
        None => AccessPlan::Grant("never granted"),
        Some(granted) if granted != desired_hash => {
            AccessPlan::Grant("the operator's RBAC changed")
        }
        _ if asked.is_some() && asked != acted_on => {
            AccessPlan::Grant("a platform admin asked (gantry.dev/grant-operator-access)")
        }
        _ => AccessPlan::Check,
    }
}

/// Why the operator cannot write the tenant set as itself.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "gantry-operator's access to the tenant was revoked or changed ({0}); \
         set annotation {GRANT_ANNOTATION} to a new value to grant it again"
    )]
    Revoked(String),
    #[error("the grant to gantry-operator is not in effect after {PROPAGATION:?}: {0}")]
    Propagating(String),
    #[error(transparent)]
    Connect(#[from] TenantClientError),
    #[error("ask the apiserver what gantry-operator may do: {0}")]
    Review(#[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl AccessError {
    /// The condition reason: `OperatorAccessRevoked`, `OperatorRBACPropagating`,
    /// `Forbidden` (a request of the set refused) or `ConnectionFailed`.
    pub fn reason(&self) -> &'static str {
        match self {
            AccessError::Revoked(_) => "OperatorAccessRevoked",
            AccessError::Propagating(_) => "OperatorRBACPropagating",
            AccessError::Apply(error) if error.is_forbidden() => "Forbidden",
            AccessError::Apply(_) | AccessError::Connect(_) | AccessError::Review(_) => {
                "ConnectionFailed"
            }
        }
    }

    /// Whether the tenant's control plane may still be fine: an access
    /// problem, not a tenant apiserver that does not answer.
    pub fn is_access(&self) -> bool {
        matches!(self, AccessError::Revoked(_) | AccessError::Propagating(_))
            || matches!(self, AccessError::Apply(error) if error.is_forbidden())
    }
}

/// Checks, as gantry-operator, that the privileged set is live as granted.
/// Its own RBAC changed, or unreadable, is a revocation. The admin bindings
/// changed (a tenant admin's edit) are returned, as `Kind/name`, to be
/// reported: they are not the operator's to revert without a grant.
pub async fn check(
    operator: &Client,
    tenant: &str,
    set: &TenantSet,
) -> Result<Vec<String>, AccessError> {
    let (own, admin_bindings): (Vec<DesiredObject>, Vec<DesiredObject>) = set
        .privileged
        .iter()
        .cloned()
        .partition(|o| o.value["metadata"]["name"] == OPERATOR_RBAC);
    let revoked = |error: ApplyError| match error.is_forbidden() {
        true => AccessError::Revoked(error.to_string()),
        false => AccessError::Apply(error),
    };
    let changed = apply::drifted(Cluster::api(operator), tenant, SET, &own)
        .await
        .map_err(revoked)?;
    if !changed.is_empty() {
        let changed = changed.join(", ");
        return Err(AccessError::Revoked(format!("not as granted: {changed}")));
    }
    apply::drifted(Cluster::api(operator), tenant, SET, &admin_bindings)
        .await
        .map_err(revoked)
}

/// Applies the privileged set with `super_admin`, then waits until the
/// apiserver authorizes gantry-operator by every rule of it.
pub async fn grant(
    super_admin: &Client,
    operator: &Client,
    tenant: &str,
    set: &TenantSet,
) -> Result<ApplyReport, AccessError> {
    let report =
        apply::apply_set(Cluster::api(super_admin), tenant, SET, &set.privileged, &[]).await?;
    let probes = set.probes();
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    loop {
        let missing = first_not_allowed(operator, &probes).await?;
        match missing {
            None => return Ok(report),
            Some(what) if tokio::time::Instant::now() >= deadline => {
                return Err(AccessError::Propagating(what));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Applies the rest of the tenant set as gantry-operator.
pub async fn apply_as_operator(
    operator: &Client,
    tenant: &str,
    set: &TenantSet,
) -> Result<ApplyReport, AccessError> {
    Ok(apply::apply_set(Cluster::api(operator), tenant, SET, &set.operator, &[]).await?)
}

/// Of `probes`, the first the apiserver does not allow gantry-operator yet.
async fn first_not_allowed(
    operator: &Client,
    probes: &[ResourceAttributes],
) -> Result<Option<String>, AccessError> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(operator.clone());
    for probe in probes {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(probe.clone()),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(AccessError::Review)?;
        if !answer.status.is_some_and(|s| s.allowed) {
            let field = |f: &Option<String>| f.clone().unwrap_or_default();
            return Ok(Some(format!(
                "{} {} {} in {:?}",
                field(&probe.verb),
                field(&probe.resource),
                field(&probe.name),
                field(&probe.namespace)
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_only_when_never_granted_changed_or_asked_anew() {
        let grant = |granted, asked, acted_on| plan(granted, "h2", asked, acted_on);
        assert_eq!(grant(None, None, None), AccessPlan::Grant("never granted"));
        assert!(matches!(
            grant(Some("h1"), None, None),
            AccessPlan::Grant(_)
        ));
        assert_eq!(grant(Some("h2"), None, None), AccessPlan::Check);
        assert!(matches!(
            grant(Some("h2"), Some("1"), None),
            AccessPlan::Grant(_)
        ));
        assert!(matches!(
            grant(Some("h2"), Some("2"), Some("1")),
            AccessPlan::Grant(_)
        ));
        // Acted on once: the same value asks for nothing more.
        assert_eq!(grant(Some("h2"), Some("1"), Some("1")), AccessPlan::Check);
        // A removed annotation asks for nothing.
        assert_eq!(grant(Some("h2"), None, Some("1")), AccessPlan::Check);
    }
}
