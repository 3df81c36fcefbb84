//! Applying rendered objects: the thin API layer of the pipeline.
//!
//! - Server-side apply with field manager `gantry` (forced: gantry owns what it renders).
//! - Steady state costs no writes: each object carries a hash of its desired
//!   state (`gantry.dev/desired-hash`); a live object with the same hash is skipped.
//! - Create-only objects (the CA and service-account Secrets) are created once
//!   and never overwritten, whatever the desired state says.
//! - Objects gantry labelled for this tenant but no longer renders are pruned.

use std::collections::BTreeSet;

use gantry_renderer::kinds::{self, Kind};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use serde_json::Value;

use crate::live::{self, Cluster};
pub use gantry_api::labels::{FIELD_MANAGER, HASH_ANNOTATION, MANAGED_BY, SET_LABEL, TENANT_LABEL};

/// One object to apply.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    pub value: Value,
    /// Created if missing, never updated (CA and service-account Secrets).
    pub create_only: bool,
    /// For a create-only object: whether a read made by this pass found it.
    /// Its existence is decided on that or on a read made now, never on the
    /// watches, which may lag: a CA made anew must be written, and one
    /// restored without gantry's labels must be kept.
    pub exists: Option<bool>,
    /// Created without reading it first: a conflict (409) means it exists
    /// and is kept. For an object the applier may create but not read (the
    /// operator's bootstrap-token Secret in a tenant).
    pub blind: bool,
}

impl DesiredObject {
    /// An object applied whenever it differs from what is live.
    pub fn applied(value: Value) -> Self {
        DesiredObject {
            value,
            create_only: false,
            exists: None,
            blind: false,
        }
    }

    /// An object created once, without a read: see [`DesiredObject::blind`].
    pub fn created_blind(value: Value) -> Self {
        DesiredObject {
            value,
            create_only: true,
            exists: Some(false),
            blind: true,
        }
    }
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

impl ApplyError {
    /// Whether the API server refused the request to this user (403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, ApplyError::Api { source: kube::Error::Api(status), .. } if status.code == 403)
    }
}

/// The rendered service set as objects to apply, CA and key Secrets marked
/// create-only; `secrets` names the Secrets a read of this pass found, if
/// it made one.
pub fn service_set(
    objects: &[gantry_renderer::RenderedObject],
    secrets: Option<&BTreeSet<String>>,
) -> Vec<DesiredObject> {
    objects
        .iter()
        .map(|object| {
            let create_only = object.kind == "Secret"
                && gantry_renderer::create_only_secrets().any(|s| s.name == object.name);
            DesiredObject {
                value: object.value.clone(),
                create_only,
                exists: secrets
                    .filter(|_| create_only)
                    .map(|names| names.contains(&object.name)),
                blind: false,
            }
        })
        .collect()
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
    let hash = gantry_pki::sha256_hex(&serde_json::to_vec(&value).expect("JSON serialises"));
    let metadata = value["metadata"].as_object_mut().expect("checked above");
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(HASH_ANNOTATION.into(), hash.into());
    }
    value
}

/// Applies `objects` as set `set` of `tenant`, then prunes objects of
/// `prune_kinds` (apiVersion, kind) that carry the labels of this tenant and
/// set but were not applied. Reads what is live through `cluster`.
pub async fn apply_set(
    cluster: Cluster<'_>,
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
        let label = format!("{}/{}", target.kind.kind, target.name);
        match apply_one(cluster, &target, value, object).await? {
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
    for (api_version, kind) in prune_kinds {
        let kind = registered(api_version, kind)?;
        let pruned = prune(cluster, kind, &namespaces, (tenant, set), &desired_keys).await?;
        report.pruned.extend(pruned);
    }
    Ok(report)
}

/// The registry's row (`gantry_renderer::kinds`) for `api_version`/`kind`.
fn registered(api_version: &str, kind: &str) -> Result<&'static Kind, ApplyError> {
    kinds::find(api_version, kind).ok_or_else(|| {
        ApplyError::Malformed(format!("{api_version}/{kind} is not a kind gantry renders"))
    })
}

/// Where one desired object goes.
struct Target {
    kind: &'static Kind,
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
            kind: registered(&api_version, &kind)?,
            name,
            namespace: field("/metadata/namespace"),
        })
    }

    /// (kind, namespace, name): what pruning compares.
    fn key(&self) -> (String, String, String) {
        (
            self.kind.kind.to_string(),
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

/// Reads the live object, then writes `value` (`object`'s, with gantry's
/// metadata) only if it differs (or, create-only, only if it is missing).
async fn apply_one(
    cluster: Cluster<'_>,
    target: &Target,
    value: Value,
    object: &DesiredObject,
) -> Result<Applied, ApplyError> {
    let create_only = object.create_only;
    let (kind, name, namespace) = (target.kind, &target.name, target.namespace.as_deref());
    let api_error = |action: &'static str| {
        let object = format!("{}/{name}", kind.kind);
        move |source| ApplyError::Api {
            action,
            object,
            source,
        }
    };
    if create_only {
        let exists = match object.exists {
            Some(exists) => exists,
            None => (Cluster::api(cluster.client)
                .get(kind, namespace, name)
                .await)
                .map_err(api_error("get"))?
                .is_some(),
        };
        if exists {
            return Ok(Applied::Kept);
        }
    }
    let live = match create_only {
        true => None,
        false => (cluster.get(kind, namespace, name).await).map_err(api_error("get"))?,
    };
    if live.is_some_and(|live| is_as_desired(&live, &value)) {
        return Ok(Applied::Unchanged);
    }
    let api = live::api(cluster.client, kind, namespace);
    let dynamic: DynamicObject =
        serde_json::from_value(value).map_err(|e| ApplyError::Malformed(e.to_string()))?;
    if !create_only {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(name, &params, &Patch::Apply(&dynamic))
            .await
            .map_err(api_error("apply"))?;
        return Ok(Applied::Written);
    }
    match create(&api, &dynamic).await {
        Err((_, source)) if object.blind && is_conflict(&source) => Ok(Applied::Kept),
        result => result.map_err(|(action, source)| api_error(action)(source)),
    }
}

/// The `Kind/name` of each of `objects` that is not live as gantry would
/// apply it (missing, another hash, or edited by another writer), read
/// through `cluster`; writes nothing.
pub async fn drifted(
    cluster: Cluster<'_>,
    tenant: &str,
    set: &str,
    objects: &[DesiredObject],
) -> Result<Vec<String>, ApplyError> {
    let mut drifted = Vec::new();
    for object in objects {
        let value = with_gantry_metadata(object.value.clone(), tenant, set);
        let target = Target::of(&value)?;
        let (kind, name) = (target.kind, &target.name);
        let live = cluster
            .get(kind, target.namespace.as_deref(), name)
            .await
            .map_err(|source| ApplyError::Api {
                action: "get",
                object: format!("{}/{name}", kind.kind),
                source,
            })?;
        if !live.is_some_and(|live| is_as_desired(&live, &value)) {
            drifted.push(format!("{}/{name}", kind.kind));
        }
    }
    Ok(drifted)
}

/// Whether `live` is `value` (with gantry's metadata) as gantry applied it:
/// the same desired-state hash, and no field of it taken by another writer.
fn is_as_desired(live: &live::LiveObject, value: &Value) -> bool {
    let desired_hash = value["metadata"]["annotations"][HASH_ANNOTATION]
        .as_str()
        .unwrap_or_default();
    live.has_hash(desired_hash) && !live.edited_by_others(value)
}

/// A plain create: if another writer (a replica finishing its passes after
/// losing the Lease) made it since the read, the API server answers 409 and
/// theirs stays. A forced apply would replace a CA that the other writer
/// already handed out.
async fn create(
    api: &Api<DynamicObject>,
    object: &DynamicObject,
) -> Result<Applied, (&'static str, kube::Error)> {
    let create = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&create, object).await {
        Ok(_) => Ok(Applied::Written),
        // Another writer's CA is live now, and this pass's leaves were signed
        // by the one it made: stop, and the retry reads the live one.
        Err(source) if is_conflict(&source) => Err((
            "create (another writer made it first; the pass is retried)",
            source,
        )),
        Err(source) => Err(("create", source)),
    }
}

/// Deletes the objects of `kind` labelled as this (tenant, set) that are not
/// in `desired_keys`; returns them as `Kind/name`.
async fn prune(
    cluster: Cluster<'_>,
    kind: &'static Kind,
    namespaces: &BTreeSet<String>,
    (tenant, set): (&str, &str),
    desired_keys: &BTreeSet<(String, String, String)>,
) -> Result<Vec<String>, ApplyError> {
    let scopes: Vec<Option<&str>> = if kind.namespaced {
        namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    } else {
        vec![None]
    };
    let mut pruned = Vec::new();
    for namespace in scopes {
        let names = cluster
            .names(kind, namespace, tenant, set)
            .await
            .map_err(|source| ApplyError::Api {
                action: "list",
                object: format!("{} with {}", kind.kind, live::set_selector(tenant, set)),
                source,
            })?;
        for (name, resource_version) in names {
            let key = (
                kind.kind.to_string(),
                namespace.unwrap_or_default().to_string(),
                name.clone(),
            );
            if desired_keys.contains(&key) {
                continue;
            }
            let api = live::api(cluster.client, kind, namespace);
            // Only the version whose labels were read: one relabelled since
            // (taken out of gantry's hands) is left alone.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version,
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => pruned.push(format!("{}/{name}", kind.kind)),
                // Gone already (404), or changed since it was read (409):
                // the watch brings the news, and the next pass decides.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(source) => {
                    return Err(ApplyError::Api {
                        action: "delete",
                        object: format!("{}/{name}", kind.kind),
                        source,
                    });
                }
            }
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
