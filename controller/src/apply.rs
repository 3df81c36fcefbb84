//! Applying rendered objects: the thin API layer of the pipeline.
//!
//! - Server-side apply with field manager `gantry` (forced: gantry owns what it renders).
//! - Steady state costs no writes: each object carries a hash of its desired
//!   state (`gantry.dev/desired-hash`); a live object with the same hash is skipped.
//! - Create-only objects (the CA and service-account Secrets) are created once
//!   and never overwritten, whatever the desired state says.
//! - Objects gantry labelled for this tenant but no longer renders are pruned.

use std::collections::BTreeSet;

use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use gantry_api::labels::{FIELD_MANAGER, HASH_ANNOTATION, MANAGED_BY, SET_LABEL, TENANT_LABEL};

/// One object to apply.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    pub value: Value,
    /// Created if missing, never updated (CA and service-account Secrets).
    pub create_only: bool,
}

/// What one apply pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// `Kind/name` of every object created or updated.
    pub applied: Vec<String>,
    /// Objects already as desired (no write).
    pub unchanged: usize,
    /// Create-only objects that exist and were left alone.
    pub kept: Vec<String>,
    /// `Kind/name` of every object deleted because it is no longer rendered.
    pub pruned: Vec<String>,
}

impl ApplyReport {
    /// The number of write requests this pass sent.
    pub fn writes(&self) -> usize {
        self.applied.len() + self.pruned.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("object without apiVersion, kind or metadata.name: {0}")]
    Malformed(String),
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// The rendered service set as objects to apply, CA Secrets marked create-only.
pub fn service_set(objects: &[gantry_renderer::RenderedObject]) -> Vec<DesiredObject> {
    objects
        .iter()
        .map(|object| DesiredObject {
            value: object.value.clone(),
            create_only: object.kind == "Secret"
                && gantry_renderer::signing_key_secrets().any(|s| s.name == object.name),
        })
        .collect()
}

/// The API of `api_version`/`kind` (a kind of the registry,
/// `gantry_renderer::kinds`) in `namespace`, or cluster-wide.
fn api_for(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Result<Api<DynamicObject>, ApplyError> {
    let registered = gantry_renderer::kinds::find(api_version, kind).ok_or_else(|| {
        ApplyError::Malformed(format!("{api_version}/{kind} is not a kind gantry renders"))
    })?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        registered.plural,
    );
    Ok(match (registered.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    })
}

/// The desired object with gantry's labels and its desired-state hash annotation.
pub fn with_gantry_metadata(mut value: Value, tenant: &str, set: &str) -> Value {
    let metadata = value
        .as_object_mut()
        .and_then(|o| o.get_mut("metadata"))
        .and_then(Value::as_object_mut)
        .expect("rendered objects have metadata");
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        labels.insert(TENANT_LABEL.into(), tenant.into());
        labels.insert(SET_LABEL.into(), set.into());
    }
    // serde_json's map is ordered by key, so this serialisation is canonical.
    let hash: String = Sha256::digest(serde_json::to_vec(&value).expect("JSON serialises"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let metadata = value["metadata"].as_object_mut().expect("checked above");
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(HASH_ANNOTATION.into(), hash.into());
    }
    value
}

/// Whether another field manager (a `kubectl edit`, a `kubectl patch`, a
/// controller) has taken a field that gantry sets in `desired`. The hash
/// annotation cannot tell, since such an edit leaves it alone; the live
/// object's managed fields can, at no extra request. A forced apply takes
/// the fields back, after which the edit no longer shows here.
pub fn edited_by_others(live: &DynamicObject, desired: &Value) -> bool {
    live.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.manager.as_deref() != Some(FIELD_MANAGER))
        // Status writers (kubelet, controllers) own only status.
        .filter(|entry| entry.subresource.as_deref().unwrap_or("").is_empty())
        .filter_map(|entry| entry.fields_v1.as_ref())
        .any(|fields| owns_any_of(&fields.0, desired))
}

/// Whether the managed-fields tree `fields` (FieldsV1: `f:<name>` for a map
/// key, `k:`/`v:`/`i:` for list items, `.` for the node itself) claims a
/// value that `desired` sets. A list item claimed only as existing (`.`)
/// does not count: that is how a manager that set a field inside it is
/// recorded after gantry took that field back.
fn owns_any_of(fields: &Value, desired: &Value) -> bool {
    let Some(children) = fields.as_object() else {
        return false;
    };
    children.iter().any(|(key, child)| {
        let leaf = child.as_object().is_none_or(|c| c.is_empty());
        if let Some(name) = key.strip_prefix("f:") {
            match desired.get(name) {
                None => false,
                Some(value) if leaf || !(value.is_object() || value.is_array()) => true,
                Some(value) if value.is_array() => list_items_owned(child),
                Some(value) => owns_any_of(child, value),
            }
        } else {
            false
        }
    })
}

/// A list that gantry sets, whose items another manager claims: a conflict
/// if it claims a field inside an item (conservatively: in any item).
fn list_items_owned(fields: &Value) -> bool {
    fields.as_object().is_some_and(|items| {
        items.iter().any(|(key, item)| {
            key != "."
                && item
                    .as_object()
                    .is_some_and(|inside| inside.keys().any(|k| k != "."))
        })
    })
}

/// Applies `objects` as set `set` of `tenant`, then prunes objects of
/// `prune_kinds` (apiVersion, kind) that carry the labels of this tenant and
/// set but were not applied.
pub async fn apply_set(
    client: &Client,
    tenant: &str,
    set: &str,
    objects: &[DesiredObject],
    prune_kinds: &[(&str, &str)],
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport::default();
    let mut desired_keys = BTreeSet::new();
    for object in objects {
        let value = with_gantry_metadata(object.value.clone(), tenant, set);
        let target = Target::of(&value)?;
        desired_keys.insert(target.key());
        let api = api_for(
            client,
            &target.api_version,
            &target.kind,
            target.namespace.as_deref(),
        )?;
        let label = format!("{}/{}", target.kind, target.name);
        match apply_one(&api, &target.name, value, object.create_only).await? {
            Applied::Written => report.applied.push(label),
            Applied::Kept => report.kept.push(label),
            Applied::Unchanged => report.unchanged += 1,
        }
    }
    let namespaces: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| {
            o.value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
        })
        .map(str::to_string)
        .collect();
    let selector = format!(
        "{}={},{TENANT_LABEL}={tenant},{SET_LABEL}={set}",
        MANAGED_BY.0, MANAGED_BY.1
    );
    for (api_version, kind) in prune_kinds {
        let pruned = prune(
            client,
            (api_version, kind),
            &namespaces,
            &selector,
            &desired_keys,
        )
        .await?;
        report.pruned.extend(pruned);
    }
    Ok(report)
}

/// Where one desired object goes.
struct Target {
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl Target {
    fn of(value: &Value) -> Result<Self, ApplyError> {
        let field = |pointer: &str| {
            value
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(api_version), Some(kind), Some(name)) = (
            field("/apiVersion"),
            field("/kind"),
            field("/metadata/name"),
        ) else {
            // Only what names the object: a Secret's data must not reach an
            // error (and from there a log line or a condition).
            let named = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
            return Err(ApplyError::Malformed(format!(
                "{}/{} {}",
                named("/apiVersion").unwrap_or("(no apiVersion)"),
                named("/kind").unwrap_or("(no kind)"),
                named("/metadata/name").unwrap_or("(no name)"),
            )));
        };
        Ok(Target {
            api_version,
            kind,
            name,
            namespace: field("/metadata/namespace"),
        })
    }

    /// (kind, namespace, name): what pruning compares.
    fn key(&self) -> (String, String, String) {
        (
            self.kind.clone(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }
}

/// What [`apply_one`] did.
enum Applied {
    Written,
    /// A create-only object that exists: left as it is.
    Kept,
    /// Same desired hash and no foreign edit: no request made.
    Unchanged,
}

/// Reads the live object, then writes `value` only if it differs (or,
/// create-only, only if it is missing).
async fn apply_one(
    api: &Api<DynamicObject>,
    name: &str,
    value: Value,
    create_only: bool,
) -> Result<Applied, ApplyError> {
    let label = format!("{}/{name}", value["kind"].as_str().unwrap_or_default());
    let api_error = |action: &'static str| {
        let object = label.clone();
        move |source| ApplyError::Api {
            action,
            object,
            source,
        }
    };
    let live = api.get_opt(name).await.map_err(api_error("get"))?;
    if let Some(live) = live {
        if create_only {
            return Ok(Applied::Kept);
        }
        let live_hash = live
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH_ANNOTATION));
        let desired_hash = value["metadata"]["annotations"][HASH_ANNOTATION].as_str();
        if live_hash.map(String::as_str) == desired_hash && !edited_by_others(&live, &value) {
            return Ok(Applied::Unchanged);
        }
    }
    let dynamic: DynamicObject =
        serde_json::from_value(value).map_err(|e| ApplyError::Malformed(e.to_string()))?;
    if !create_only {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(name, &params, &Patch::Apply(&dynamic))
            .await
            .map_err(api_error("apply"))?;
        return Ok(Applied::Written);
    }
    // A plain create: if another writer (a replica finishing its passes after
    // losing the Lease) made it since the read, the API server answers 409
    // and theirs stays. A forced apply would replace a CA that the other
    // writer already handed out.
    let create = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&create, &dynamic).await {
        Ok(_) => Ok(Applied::Written),
        // Another writer's CA is live now, and this pass's leaves were signed
        // by the one it made: stop, and the retry reads the live one.
        Err(source) if is_conflict(&source) => Err(api_error(
            "create (another writer made it first; the pass is retried)",
        )(source)),
        Err(source) => Err(api_error("create")(source)),
    }
}

/// Deletes the objects of `kind` that carry `selector` (this tenant's set)
/// but are not in `desired_keys`; returns them as `Kind/name`.
async fn prune(
    client: &Client,
    (api_version, kind): (&str, &str),
    namespaces: &BTreeSet<String>,
    selector: &str,
    desired_keys: &BTreeSet<(String, String, String)>,
) -> Result<Vec<String>, ApplyError> {
    let namespaced = gantry_renderer::kinds::find(api_version, kind).is_some_and(|k| k.namespaced);
    let scopes: Vec<Option<&str>> = if namespaced {
        namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    } else {
        vec![None]
    };
    let mut pruned = Vec::new();
    for namespace in scopes {
        let api = api_for(client, api_version, kind, namespace)?;
        let live = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|source| ApplyError::Api {
                action: "list",
                object: format!("{kind} with {selector}"),
                source,
            })?;
        for item in live.items {
            let name = item.metadata.name.clone().unwrap_or_default();
            let key = (
                kind.to_string(),
                item.metadata.namespace.clone().unwrap_or_default(),
                name.clone(),
            );
            if desired_keys.contains(&key) {
                continue;
            }
            api.delete(&name, &DeleteParams::default())
                .await
                .map_err(|source| ApplyError::Api {
                    action: "delete",
                    object: format!("{kind}/{name}"),
                    source,
                })?;
            pruned.push(format!("{kind}/{name}"));
        }
    }
    Ok(pruned)
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_by_another_manager_of_a_field_gantry_sets_is_drift() {
        let desired = serde_json::json!({
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
        });
        let live = |entries: Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "managedFields": entries}
            }))
            .unwrap()
        };
        let entry = |manager: &str, subresource: &str, fields: Value| {
            serde_json::json!({"manager": manager, "operation": "Update",
                "subresource": subresource, "fieldsType": "FieldsV1", "fieldsV1": fields})
        };
        let replicas = serde_json::json!({"f:spec": {"f:replicas": {}}});
        let gantry_only = live(serde_json::json!([entry("gantry", "", replicas.clone())]));
        assert!(!edited_by_others(&gantry_only, &desired));
        let patched = live(serde_json::json!([entry(
            "kubectl-patch",
            "",
            replicas.clone()
        )]));
        assert!(edited_by_others(&patched, &desired));
        let status = live(serde_json::json!([entry(
            "kube-controller-manager",
            "status",
            serde_json::json!({"f:status": {"f:replicas": {}}})
        )]));
        assert!(
            !edited_by_others(&status, &desired),
            "status writers are not drift"
        );
        let own_field = live(serde_json::json!([entry(
            "kubectl-annotate",
            "",
            serde_json::json!({"f:metadata": {"f:annotations": {"f:note": {}}}})
        )]));
        assert!(
            !edited_by_others(&own_field, &desired),
            "a field gantry does not set"
        );
        let image = serde_json::json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}}}});
        assert!(edited_by_others(
            &live(serde_json::json!([entry("kubectl-edit", "", image)])),
            &desired
        ));
        let taken_back = serde_json::json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"c\"}": {".": {}}}}}}});
        assert!(!edited_by_others(
            &live(serde_json::json!([entry("kubectl-edit", "", taken_back)])),
            &desired
        ));
    }

    #[test]
    fn the_hash_is_stable_and_follows_content() {
        let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}});
        let a = with_gantry_metadata(object.clone(), "t", "s");
        let b = with_gantry_metadata(object.clone(), "t", "s");
        assert_eq!(a, b);
        assert_eq!(a["metadata"]["labels"][TENANT_LABEL], "t");
        let mut changed = object;
        changed["data"]["a"] = "2".into();
        assert_ne!(
            with_gantry_metadata(changed, "t", "s")["metadata"]["annotations"][HASH_ANNOTATION],
            a["metadata"]["annotations"][HASH_ANNOTATION]
        );
    }
}
