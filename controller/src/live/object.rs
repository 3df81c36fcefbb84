//! One live object, reduced to what apply, prune and the steps read.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use gantry_api::labels::{FIELD_MANAGER, HASH_ANNOTATION, SET_LABEL, TENANT_LABEL};

/// The sets gantry applies (`apply::apply_set`). An object is asked for by
/// one of these only, so another `gantry.dev/set` value is not kept.
const SETS: [&str; 4] = ["bootstrap", "service", "join", "tenant"];

/// One of [`SETS`], by name.
pub fn known_set(set: &str) -> Option<&'static str> {
    SETS.iter().find(|known| **known == set).copied()
}

/// The first 16 bytes of a SHA-256 desired-state hash: enough to tell
/// whether an object is what gantry last applied, in half the room.
pub type HashPrefix = [u8; 16];

/// A workload's rollout as the service cluster reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    /// The image of its first container, as applied.
    pub image: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub replicas: i32,
    /// Pods the workload controller counts (`status.replicas`): old ones
    /// too, until they are on their way out.
    pub current_replicas: i32,
    pub updated_replicas: i32,
    /// Ready (StatefulSet) or available (Deployment) replicas.
    pub ready_replicas: i32,
}

/// What the controller observed of the `kube-apiserver` Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedService {
    /// `status.loadBalancer.ingress`: (ip, hostname) pairs.
    pub load_balancer_ingress: Vec<(Option<String>, Option<String>)>,
    /// `spec.ports[https].nodePort`, once allocated.
    pub node_port: Option<u16>,
    /// `spec.ports[konnectivity].nodePort`, once allocated.
    pub konnectivity_node_port: Option<u16>,
}

/// The status fields a pass decides on, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Details {
    None,
    /// A Deployment or StatefulSet.
    Workload(Rollout),
    Service(ObservedService),
}

/// What few objects have: kept apart, so the others pay one pointer for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rare {
    foreign_fields: Vec<Value>,
    details: Details,
}

/// One live object, reduced to what apply, prune and the steps read. Small
/// on purpose: an operator holds about 22 per tenant (docs/benchmarks.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveObject {
    /// Its `gantry.dev/tenant` label (shared by the objects of one tenant
    /// that `LiveObjects` holds) and its `gantry.dev/set` label, if one of
    /// gantry's [`SETS`].
    pub tenant: Option<Arc<str>>,
    pub set: Option<&'static str>,
    /// Its `resourceVersion`: see [`version_of`].
    pub resource_version: u64,
    /// Its `gantry.dev/desired-hash` annotation (SHA-256 in hex), the first
    /// half as bytes.
    pub hash: Option<HashPrefix>,
    /// The fields (FieldsV1) that managers other than gantry set outside the
    /// status subresource (see [`LiveObject::edited_by_others`]), and the
    /// [`Details`]; `None` when there are neither.
    rare: Option<Box<Rare>>,
}

impl LiveObject {
    /// From an object's metadata and the rest of it (`Value::Null` when only
    /// the metadata was read).
    pub fn of(kind: &str, metadata: &ObjectMeta, rest: &Value) -> Self {
        let label = |key: &str| {
            metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(key))
                .map(String::as_str)
        };
        let foreign_fields: Vec<Value> = metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|entry| entry.manager.as_deref() != Some(FIELD_MANAGER))
            // Status writers (kubelet, controllers) own only status.
            .filter(|entry| entry.subresource.as_deref().unwrap_or("").is_empty())
            .filter_map(|entry| entry.fields_v1.as_ref().map(|f| f.0.clone()))
            .collect();
        let details = details_of(kind, metadata, rest);
        let rare = (!foreign_fields.is_empty() || details != Details::None).then(|| {
            Box::new(Rare {
                foreign_fields,
                details,
            })
        });
        LiveObject {
            tenant: label(TENANT_LABEL).map(Arc::from),
            set: label(SET_LABEL).and_then(known_set),
            resource_version: version_of(metadata.resource_version.as_deref().unwrap_or("")),
            hash: metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HASH_ANNOTATION))
                .and_then(|hash| hash_prefix(hash)),
            rare,
        }
    }

    /// An object with these labels and version, no hash and no details.
    pub fn labelled(tenant: &str, set: &str, resource_version: &str) -> Self {
        LiveObject {
            tenant: Some(tenant.into()),
            set: known_set(set),
            resource_version: version_of(resource_version),
            hash: None,
            rare: None,
        }
    }

    /// The status fields a pass decides on (see [`Details`]).
    pub fn details(&self) -> &Details {
        self.rare
            .as_ref()
            .map_or(&Details::None, |rare| &rare.details)
    }

    pub fn into_details(self) -> Details {
        self.rare.map_or(Details::None, |rare| rare.details)
    }

    /// Whether it carries the desired-state hash `desired` (hex).
    pub fn has_hash(&self, desired: &str) -> bool {
        self.hash.is_some() && self.hash == hash_prefix(desired)
    }

    /// Whether another field manager (a `kubectl edit`, a `kubectl patch`, a
    /// controller) has taken a field that gantry sets in `desired`. The hash
    /// annotation cannot tell, since such an edit leaves it alone; the live
    /// object's managed fields can, at no extra request. A forced apply takes
    /// the fields back, after which the edit no longer shows here.
    pub fn edited_by_others(&self, desired: &Value) -> bool {
        self.rare.as_ref().is_some_and(|rare| {
            rare.foreign_fields
                .iter()
                .any(|fields| owns_any_of(fields, desired))
        })
    }
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

/// The top bit of a [`version_of`] that is a hash, not the version itself.
const HASHED: u64 = 1 << 63;

/// A `resourceVersion` as a number that compares the same way: the version
/// itself when it is a decimal number below 2^63 (an etcd revision, as every
/// kube-apiserver gives), else a hash of it with the top bit set.
pub fn version_of(resource_version: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    match resource_version.parse::<u64>() {
        Ok(number) if number < HASHED => number,
        _ => {
            let mut hasher = std::hash::DefaultHasher::new();
            resource_version.hash(&mut hasher);
            hasher.finish() | HASHED
        }
    }
}

impl LiveObject {
    /// Its `resourceVersion` as the API server wrote it, if [`version_of`]
    /// kept it (for a delete's precondition).
    pub fn resource_version_text(&self) -> Option<String> {
        (self.resource_version < HASHED).then(|| self.resource_version.to_string())
    }
}

/// The first 16 bytes of 64 hex digits; `None` for anything else.
fn hash_prefix(hex: &str) -> Option<HashPrefix> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = [0; 16];
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

fn details_of(kind: &str, metadata: &ObjectMeta, rest: &Value) -> Details {
    let int = |pointer: &str| rest.pointer(pointer).and_then(Value::as_i64);
    let rollout = |ready: &str| Rollout {
        image: rest
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        generation: metadata.generation.unwrap_or(0),
        observed_generation: int("/status/observedGeneration").unwrap_or(0),
        replicas: int("/spec/replicas").map_or(1, |n| n as i32),
        current_replicas: int("/status/replicas").unwrap_or(0) as i32,
        updated_replicas: int("/status/updatedReplicas").unwrap_or(0) as i32,
        ready_replicas: int(ready).unwrap_or(0) as i32,
    };
    match kind {
        "StatefulSet" => Details::Workload(rollout("/status/readyReplicas")),
        "Deployment" => Details::Workload(rollout("/status/availableReplicas")),
        "Service" => Details::Service(ObservedService {
            load_balancer_ingress: rest
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|ingress| {
                    let text = |i: &Value, key| i.get(key).and_then(Value::as_str).map(Into::into);
                    ingress
                        .iter()
                        .map(|i| (text(i, "ip"), text(i, "hostname")))
                        .collect()
                })
                .unwrap_or_default(),
            node_port: named_node_port(rest, "https"),
            konnectivity_node_port: named_node_port(rest, "konnectivity"),
        }),
        _ => Details::None,
    }
}

/// The node port of the Service's port `name`, once allocated.
fn named_node_port(service: &Value, name: &str) -> Option<u16> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ports| ports.iter().find(|p| p["name"] == name))
        .and_then(|p| p["nodePort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;

    #[test]
    fn an_edit_by_another_manager_of_a_field_gantry_sets_is_drift() {
        let desired = serde_json::json!({
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
        });
        let live = |entries: Value| -> LiveObject {
            let object: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "managedFields": entries}
            }))
            .unwrap();
            LiveObject::of("Deployment", &object.metadata, &object.data)
        };
        let entry = |manager: &str, subresource: &str, fields: Value| {
            serde_json::json!({"manager": manager, "operation": "Update",
                "subresource": subresource, "fieldsType": "FieldsV1", "fieldsV1": fields})
        };
        let replicas = serde_json::json!({"f:spec": {"f:replicas": {}}});
        let gantry_only = live(serde_json::json!([entry("gantry", "", replicas.clone())]));
        assert!(!gantry_only.edited_by_others(&desired));
        let patched = live(serde_json::json!([entry(
            "kubectl-patch",
            "",
            replicas.clone()
        )]));
        assert!(patched.edited_by_others(&desired));
        let status = live(serde_json::json!([entry(
            "kube-controller-manager",
            "status",
            serde_json::json!({"f:status": {"f:replicas": {}}})
        )]));
        assert!(
            !status.edited_by_others(&desired),
            "status writers are not drift"
        );
        let own_field = live(serde_json::json!([entry(
            "kubectl-annotate",
            "",
            serde_json::json!({"f:metadata": {"f:annotations": {"f:note": {}}}})
        )]));
        assert!(
            !own_field.edited_by_others(&desired),
            "a field gantry does not set"
        );
        let image = serde_json::json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}}}});
        assert!(
            live(serde_json::json!([entry("kubectl-edit", "", image)])).edited_by_others(&desired)
        );
        let taken_back = serde_json::json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"c\"}": {".": {}}}}}}});
        assert!(
            !live(serde_json::json!([entry("kubectl-edit", "", taken_back)]))
                .edited_by_others(&desired)
        );
    }

    #[test]
    fn the_desired_hash_is_kept_as_bytes_and_compared_as_hex() {
        let hex = "0123456789abcdef".repeat(4);
        let object = |annotation: &str| {
            let metadata = ObjectMeta {
                annotations: Some([(HASH_ANNOTATION.to_string(), annotation.to_string())].into()),
                ..ObjectMeta::default()
            };
            LiveObject::of("ConfigMap", &metadata, &Value::Null)
        };
        assert!(object(&hex).has_hash(&hex));
        assert!(!object(&hex).has_hash(&"0".repeat(64)));
        assert!(
            !object("not-a-hash").has_hash("not-a-hash"),
            "only gantry's hashes match"
        );
        assert!(!LiveObject::of("ConfigMap", &ObjectMeta::default(), &Value::Null).has_hash(""));
    }

    #[test]
    fn a_numeric_resource_version_is_kept_and_any_other_hashed() {
        let object = |version: &str| LiveObject {
            resource_version: version_of(version),
            ..LiveObject::of("ConfigMap", &ObjectMeta::default(), &Value::Null)
        };
        assert_eq!(object("41").resource_version_text().as_deref(), Some("41"));
        assert_eq!(object("opaque").resource_version_text(), None);
        assert_ne!(version_of("opaque"), version_of("opaque2"));
        assert_eq!(version_of("opaque"), version_of("opaque"));
    }
}
