//! The operator's access to a tenant cluster (docs/design/operator-credential.md).
//!
//! The operator writes the tenant set as `gantry-operator` (group
//! `gantry:operator`, `operator.conf`), bound in the tenant to exactly what
//! it applies. Only the *privileged set* (that RBAC itself, and the bindings
//! to cluster-admin and kubelet-api-admin) is written with `super-admin.conf`,
//! and only when [`plan`] says so: never granted yet, the rendered set
//! changed, or a platform admin asked with [`GRANT_ANNOTATION`]. Otherwise
//! the operator checks, with its own credential, that the set is as granted;
//! if it is not (a binding deleted, a role edited), the access was revoked,
//! and like a lost CA it is never restored without an explicit act.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use crate::apply::{self, ApplyError, ApplyReport, DesiredObject};
use crate::live::Cluster;

/// Set to any new value to have the privileged set applied once more with
/// super-admin: after a revocation was undone on purpose, or to revert an
/// edit of `kubeadm:cluster-admins`.
pub const GRANT_ANNOTATION: &str = "gantry.dev/grant-operator-access";

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
    /// Secrets (the bootstrap token, whose name changes at each rotation)
    /// are created blind: the operator may create Secrets in kube-system but
    /// not read them.
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
                .map(|o| match o["kind"].as_str() {
                    Some("Secret") => DesiredObject::created_blind(o.clone()),
                    _ => DesiredObject::applied(o.clone()),
                })
                .collect(),
        }
    }

    /// The hash recorded in `status.operatorAccessHash` once granted.
    pub fn privileged_hash(&self) -> String {
        let values: Vec<&serde_json::Value> = self.privileged.iter().map(|o| &o.value).collect();
        let digest = Sha256::digest(serde_json::to_vec(&values).expect("JSON serialises"));
        digest.iter().map(|b| format!("{b:02x}")).collect()
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
    #[error("{0}")]
    Connect(String),
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
            AccessError::Apply(_) | AccessError::Connect(_) => "ConnectionFailed",
        }
    }
}

/// Checks, as gantry-operator, that the privileged set is live as granted.
pub async fn check(operator: &Client, tenant: &str, set: &TenantSet) -> Result<(), AccessError> {
    match apply::drifted(Cluster::api(operator), tenant, SET, &set.privileged).await {
        Ok(drifted) if drifted.is_empty() => Ok(()),
        Ok(drifted) => Err(AccessError::Revoked(format!(
            "not as granted: {}",
            drifted.join(", ")
        ))),
        Err(error) if error.is_forbidden() => Err(AccessError::Revoked(error.to_string())),
        Err(error) => Err(error.into()),
    }
}

/// Applies the privileged set with `super_admin`, then waits until the
/// apiserver authorizes gantry-operator by it.
pub async fn grant(
    super_admin: &Client,
    operator: &Client,
    tenant: &str,
    set: &TenantSet,
) -> Result<ApplyReport, AccessError> {
    let report =
        apply::apply_set(Cluster::api(super_admin), tenant, SET, &set.privileged, &[]).await?;
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    loop {
        let missing = first_missing_grant(operator).await?;
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

/// One request of each of the three grants (ClusterRole, and the Roles in
/// kube-system and kube-public), asked of the apiserver as gantry-operator:
/// the first it does not allow yet, if any.
async fn first_missing_grant(operator: &Client) -> Result<Option<String>, AccessError> {
    let probes = [
        (None, "clusterroles", "gantry:operator"),
        (Some("kube-system"), "roles", "gantry:operator"),
        (Some("kube-public"), "roles", "gantry:operator"),
    ];
    let reviews: Api<SelfSubjectAccessReview> = Api::all(operator.clone());
    for (namespace, resource, name) in probes {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some("rbac.authorization.k8s.io".into()),
                    resource: Some(resource.into()),
                    name: Some(name.into()),
                    namespace: namespace.map(str::to_string),
                    verb: Some("get".into()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| ApplyError::Api {
                action: "create",
                object: "SelfSubjectAccessReview".into(),
                source,
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            let scope = namespace.map_or(String::new(), |n| format!("{n}/"));
            return Ok(Some(format!("get {resource} {scope}{name}")));
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
