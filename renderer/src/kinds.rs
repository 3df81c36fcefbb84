//! The one registry of the kinds gantry renders: for each, its API group and
//! version, its resource name, its scope, its typed check, and whether the
//! service set prunes it. Everything that needs to know about a kind asks here
//! (the renderer's check, the controller's apply and prune); adding a kind is
//! one row.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

use crate::check::check_as;

/// One kind gantry renders.
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// The resource name in the API path (`networkpolicies`).
    pub plural: &'static str,
    pub namespaced: bool,
    /// Rendered into the service cluster's tenant namespace, so pruned there
    /// when gantry stops rendering an object of it.
    pub service_set: bool,
    /// Round-trips an object through its k8s-openapi type (see `check`).
    pub check: fn(&Value) -> Result<(), (String, String)>,
}

macro_rules! kind {
    ($api_version:literal, $type:ident, $plural:literal, namespaced: $namespaced:literal, service_set: $service:literal) => {
        Kind {
            api_version: $api_version,
            kind: stringify!($type),
            plural: $plural,
            namespaced: $namespaced,
            service_set: $service,
            check: check_as::<$type>,
        }
    };
}

/// The service set's kinds come first, in the order they are pruned.
pub const KINDS: [Kind; 15] = [
    kind!("v1", Secret, "secrets", namespaced: true, service_set: true),
    kind!("v1", Service, "services", namespaced: true, service_set: true),
    kind!("apps/v1", StatefulSet, "statefulsets", namespaced: true, service_set: true),
    kind!("apps/v1", Deployment, "deployments", namespaced: true, service_set: true),
    kind!("batch/v1", CronJob, "cronjobs", namespaced: true, service_set: true),
    kind!("policy/v1", PodDisruptionBudget, "poddisruptionbudgets", namespaced: true, service_set: true),
    kind!("networking.k8s.io/v1", NetworkPolicy, "networkpolicies", namespaced: true, service_set: true),
    kind!("v1", ConfigMap, "configmaps", namespaced: true, service_set: true),
    kind!("v1", ServiceAccount, "serviceaccounts", namespaced: true, service_set: false),
    kind!("v1", Namespace, "namespaces", namespaced: false, service_set: false),
    kind!("apps/v1", DaemonSet, "daemonsets", namespaced: true, service_set: false),
    kind!("rbac.authorization.k8s.io/v1", ClusterRole, "clusterroles", namespaced: false, service_set: false),
    kind!("rbac.authorization.k8s.io/v1", ClusterRoleBinding, "clusterrolebindings", namespaced: false, service_set: false),
    kind!("rbac.authorization.k8s.io/v1", Role, "roles", namespaced: true, service_set: false),
    kind!("rbac.authorization.k8s.io/v1", RoleBinding, "rolebindings", namespaced: true, service_set: false),
];

/// The registry's row for `api_version`/`kind`.
pub fn find(api_version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
}

/// Round-trips `object` through the k8s-openapi type of its apiVersion and
/// kind. `Err((path, reason))` names the first field that differs.
pub fn check_object(object: &Value) -> Result<(), (String, String)> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match find(api_version, kind) {
        Some(registered) => (registered.check)(object),
        None => Err((
            "kind".into(),
            format!("{api_version}/{kind} is not a kind gantry renders"),
        )),
    }
}

/// The (apiVersion, kind) of every kind the service set prunes.
pub fn service_set_kinds() -> Vec<(&'static str, &'static str)> {
    KINDS
        .iter()
        .filter(|k| k.service_set)
        .map(|k| (k.api_version, k.kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_service_set_is_pruned_in_its_order() {
        let kinds: Vec<&str> = service_set_kinds().iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            [
                "Secret",
                "Service",
                "StatefulSet",
                "Deployment",
                "CronJob",
                "PodDisruptionBudget",
                "NetworkPolicy",
                "ConfigMap"
            ]
        );
    }

    #[test]
    fn each_kind_is_listed_once_with_its_lowercase_plural() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert!(
                KINDS[..i].iter().all(|k| k.kind != kind.kind),
                "{} twice",
                kind.kind
            );
            assert!(
                kind.plural
                    .starts_with(&kind.kind[..kind.kind.len() - 1].to_ascii_lowercase()),
                "{} → {}",
                kind.kind,
                kind.plural
            );
        }
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let x = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
        assert_eq!(check_object(&x).unwrap_err().0, "kind");
    }
}
