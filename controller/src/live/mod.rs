//! What the service cluster holds of gantry's objects, as a pass needs to
//! know it: whether an object exists, its desired-state hash, the fields other
//! managers claim, and the few status fields the steps decide on.
//!
//! A pass reads through [`Cluster`]: in the operator from [`LiveObjects`],
//! which label-selected watches keep current (`watch`), so a full pass of a
//! settled tenant sends no GET or LIST for them; elsewhere (one-shot passes,
//! tests, the tenant cluster) from the API. Both give the same [`LiveObject`],
//! so every decision is made the same way.
//!
//! [`LiveObjects`] is kept small on purpose (one operator holds thousands of
//! tenants): Secrets are watched for their metadata only, and no object's
//! spec or data is kept.

pub mod watch;

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use gantry_renderer::kinds::{self, Kind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};
use serde_json::Value;

use gantry_api::labels::{FIELD_MANAGER, HASH_ANNOTATION, SET_LABEL, TENANT_LABEL};

/// A workload's rollout as the service cluster reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    /// The image of its first container, as applied.
    pub image: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub replicas: i32,
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
}

/// The status fields a pass decides on, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Details {
    None,
    /// A Deployment or StatefulSet.
    Workload(Rollout),
    Service(ObservedService),
}

/// One live object, reduced to what apply, prune and the steps read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveObject {
    /// Its `gantry.dev/tenant` and `gantry.dev/set` labels.
    pub tenant: Option<Box<str>>,
    pub set: Option<Box<str>>,
    pub resource_version: Box<str>,
    /// Its `gantry.dev/desired-hash` annotation.
    pub hash: Option<Box<str>>,
    /// The fields (FieldsV1) that managers other than gantry set outside the
    /// status subresource: see [`LiveObject::edited_by_others`].
    pub foreign_fields: Vec<Value>,
    pub details: Details,
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
                .map(|value| value.as_str().into())
        };
        LiveObject {
            tenant: label(TENANT_LABEL),
            set: label(SET_LABEL),
            resource_version: metadata.resource_version.as_deref().unwrap_or("").into(),
            hash: metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HASH_ANNOTATION))
                .map(|hash| hash.as_str().into()),
            foreign_fields: metadata
                .managed_fields
                .iter()
                .flatten()
                .filter(|entry| entry.manager.as_deref() != Some(FIELD_MANAGER))
                // Status writers (kubelet, controllers) own only status.
                .filter(|entry| entry.subresource.as_deref().unwrap_or("").is_empty())
                .filter_map(|entry| entry.fields_v1.as_ref().map(|f| f.0.clone()))
                .collect(),
            details: details_of(kind, metadata, rest),
        }
    }

    /// Whether another field manager (a `kubectl edit`, a `kubectl patch`, a
    /// controller) has taken a field that gantry sets in `desired`. The hash
    /// annotation cannot tell, since such an edit leaves it alone; the live
    /// object's managed fields can, at no extra request. A forced apply takes
    /// the fields back, after which the edit no longer shows here.
    pub fn edited_by_others(&self, desired: &Value) -> bool {
        self.foreign_fields
            .iter()
            .any(|fields| owns_any_of(fields, desired))
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
            node_port: rest
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .and_then(|ports| ports.iter().find(|p| p["name"] == "https"))
                .and_then(|p| p["nodePort"].as_u64())
                .and_then(|p| u16::try_from(p).ok()),
        }),
        _ => Details::None,
    }
}

/// Where an object sits: its kind's name, its namespace ("" for a
/// cluster-scoped kind) and its name.
type Key = (&'static str, Box<str>, Box<str>);

fn key(kind: &Kind, namespace: Option<&str>, name: &str) -> Key {
    let namespace = if kind.namespaced { namespace } else { None };
    (kind.kind, namespace.unwrap_or("").into(), name.into())
}

/// The kinds gantry keeps live: those of the service set, and Namespace.
pub fn watched_kinds() -> impl Iterator<Item = &'static Kind> {
    kinds::KINDS
        .iter()
        .filter(|k| k.service_set || k.kind == "Namespace")
}

/// The gantry-managed objects of the service cluster, as the watches last
/// reported them. Filled by [`watch::follow`].
#[derive(Default)]
pub struct LiveObjects {
    objects: RwLock<BTreeMap<Key, LiveObject>>,
    /// The kinds whose first list is in.
    synced: tokio::sync::watch::Sender<Vec<&'static str>>,
}

impl LiveObjects {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> Option<LiveObject> {
        let objects = self.objects.read().expect("not poisoned");
        objects.get(&key(kind, namespace, name)).cloned()
    }

    /// The names of the objects of `kind` in `namespace` labelled with this
    /// tenant and set.
    pub fn names(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        tenant: &str,
        set: &str,
    ) -> Vec<String> {
        let (kind_name, namespace, _) = key(kind, namespace, "");
        let objects = self.objects.read().expect("not poisoned");
        let start: Key = (kind_name, namespace.clone(), "".into());
        objects
            .range(start..)
            .take_while(|((k, ns, _), _)| *k == kind_name && *ns == namespace)
            .filter(|(_, o)| o.tenant.as_deref() == Some(tenant) && o.set.as_deref() == Some(set))
            .map(|((_, _, name), _)| name.to_string())
            .collect()
    }

    /// Number of objects held (for the scale bench and tests).
    pub fn len(&self) -> usize {
        self.objects.read().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every watched kind has been listed once, for at most
    /// `limit`; returns the kinds still being listed (empty once synced).
    pub async fn wait_synced(&self, limit: Duration) -> Vec<&'static str> {
        let all: Vec<&'static str> = watched_kinds().map(|k| k.kind).collect();
        let missing = |synced: &Vec<&'static str>| -> Vec<&'static str> {
            all.iter()
                .filter(|k| !synced.contains(k))
                .copied()
                .collect()
        };
        let mut receiver = self.synced.subscribe();
        let done = receiver.wait_for(|synced| missing(synced).is_empty());
        let _ = tokio::time::timeout(limit, done).await;
        missing(&self.synced.borrow())
    }

    /// Stores `object`; returns its tenant if this is news (a new object, or
    /// a new resourceVersion), not a replay of what is held.
    fn put(&self, key: Key, object: LiveObject) -> Option<Box<str>> {
        let mut objects = self.objects.write().expect("not poisoned");
        let news = objects
            .get(&key)
            .is_none_or(|old| old.resource_version != object.resource_version);
        let tenant = object.tenant.clone();
        objects.insert(key, object);
        if news { tenant } else { None }
    }

    /// Removes an object; returns its tenant if it was held.
    fn remove(&self, key: &Key) -> Option<Box<str>> {
        let mut objects = self.objects.write().expect("not poisoned");
        objects.remove(key).and_then(|old| old.tenant)
    }

    /// Replaces every object of `kind` with `listed` (a watch's list, after
    /// a start or a lost watch) and marks the kind synced. Returns the tenants
    /// with news: objects added, changed or gone.
    fn replace_kind(&self, kind: &'static str, listed: Vec<(Key, LiveObject)>) -> Vec<Box<str>> {
        let mut objects = self.objects.write().expect("not poisoned");
        let held: Vec<Key> = objects
            .range((kind, Box::from(""), Box::from(""))..)
            .take_while(|((k, _, _), _)| *k == kind)
            .map(|(key, _)| key.clone())
            .collect();
        let mut old: BTreeMap<Key, LiveObject> = held
            .into_iter()
            .filter_map(|key| objects.remove_entry(&key))
            .collect();
        let mut news = Vec::new();
        for (key, object) in listed {
            let changed = old
                .remove(&key)
                .is_none_or(|old| old.resource_version != object.resource_version);
            if changed {
                news.extend(object.tenant.clone());
            }
            objects.insert(key, object);
        }
        news.extend(old.into_values().filter_map(|gone| gone.tenant));
        drop(objects);
        self.synced.send_modify(|synced| {
            if !synced.contains(&kind) {
                synced.push(kind);
            }
        });
        news.sort();
        news.dedup();
        news
    }
}

/// The API resource of `kind` (its name in paths comes from the registry).
fn resource(kind: &Kind) -> ApiResource {
    let (group, version) = kind
        .api_version
        .split_once('/')
        .unwrap_or(("", kind.api_version));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.kind),
        kind.plural,
    )
}

/// The API of `kind` in `namespace`, or cluster-wide.
pub fn api(client: &Client, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = resource(kind);
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// The service cluster (or a tenant cluster) as a pass reads it: from the
/// operator's [`LiveObjects`] when it has them, else from the API.
#[derive(Clone, Copy)]
pub struct Cluster<'a> {
    /// Every write, and the reads when `live` is `None`.
    pub client: &'a Client,
    pub live: Option<&'a LiveObjects>,
}

impl<'a> Cluster<'a> {
    /// Reads from the API.
    pub fn api(client: &'a Client) -> Self {
        Cluster { client, live: None }
    }

    pub async fn get(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<LiveObject>, kube::Error> {
        if let Some(live) = self.live {
            return Ok(live.get(kind, namespace, name));
        }
        let object = api(self.client, kind, namespace).get_opt(name).await?;
        Ok(object.map(|o| LiveObject::of(kind.kind, &o.metadata, &o.data)))
    }

    /// The names of the objects of `kind` in `namespace` that carry gantry's
    /// labels for `tenant` and `set`.
    pub async fn names(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        tenant: &str,
        set: &str,
    ) -> Result<Vec<String>, kube::Error> {
        if let Some(live) = self.live {
            return Ok(live.names(kind, namespace, tenant, set));
        }
        let selector = set_selector(tenant, set);
        let list = api(self.client, kind, namespace)
            .list(&ListParams::default().labels(&selector))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|item| item.metadata.name)
            .collect())
    }
}

/// The label selector of one tenant's set of objects.
pub fn set_selector(tenant: &str, set: &str) -> String {
    let (managed_by, gantry) = gantry_api::labels::MANAGED_BY;
    format!("{managed_by}={gantry},{TENANT_LABEL}={tenant},{SET_LABEL}={set}")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn object(tenant: &str, set: &str, resource_version: &str) -> LiveObject {
        LiveObject {
            tenant: Some(tenant.into()),
            set: Some(set.into()),
            resource_version: resource_version.into(),
            hash: None,
            foreign_fields: Vec::new(),
            details: Details::None,
        }
    }

    fn kind(name: &str) -> &'static Kind {
        kinds::KINDS.iter().find(|k| k.kind == name).unwrap()
    }

    #[test]
    fn a_new_version_is_news_and_a_replay_is_not() {
        let live = LiveObjects::new();
        let deployment = || key(kind("Deployment"), Some("tcp-a"), "kube-apiserver");
        assert_eq!(
            live.put(deployment(), object("a", "service", "41"))
                .as_deref(),
            Some("a")
        );
        // A watch that restarts replays the same version.
        assert_eq!(live.put(deployment(), object("a", "service", "41")), None);
        assert_eq!(
            live.put(deployment(), object("a", "service", "42"))
                .as_deref(),
            Some("a")
        );
        assert_eq!(live.remove(&deployment()).as_deref(), Some("a"));
        assert_eq!(live.remove(&deployment()), None, "already gone");
    }

    #[test]
    fn a_relist_reports_what_was_added_changed_or_gone_and_nothing_else() {
        let live = LiveObjects::new();
        let service = |ns: &str, name: &str| key(kind("Service"), Some(ns), name);
        live.put(service("tcp-a", "etcd"), object("a", "service", "1"));
        live.put(service("tcp-b", "etcd"), object("b", "service", "2"));
        live.put(service("tcp-c", "etcd"), object("c", "service", "3"));
        live.put(
            key(kind("Namespace"), None, "tcp-d"),
            object("d", "bootstrap", "4"),
        );
        let news = live.replace_kind(
            "Service",
            vec![
                (service("tcp-a", "etcd"), object("a", "service", "1")),
                (service("tcp-b", "etcd"), object("b", "service", "5")),
                (service("tcp-e", "etcd"), object("e", "service", "6")),
            ],
        );
        // b changed, c is gone, e is new; a is a replay and d another kind.
        let news: Vec<&str> = news.iter().map(|t| &**t).collect();
        assert_eq!(news, ["b", "c", "e"]);
        assert_eq!(live.len(), 4);
        assert!(live.get(kind("Service"), Some("tcp-c"), "etcd").is_none());
    }

    #[test]
    fn names_are_those_of_one_kind_namespace_tenant_and_set() {
        let live = LiveObjects::new();
        let configmap = |ns: &str, name: &str| key(kind("ConfigMap"), Some(ns), name);
        live.put(configmap("tcp-a", "one"), object("a", "service", "1"));
        live.put(configmap("tcp-a", "two"), object("a", "service", "1"));
        live.put(configmap("tcp-a", "join"), object("a", "join", "1"));
        live.put(configmap("tcp-a", "other"), object("b", "service", "1"));
        live.put(configmap("tcp-ab", "next"), object("a", "service", "1"));
        live.put(
            key(kind("Secret"), Some("tcp-a"), "ca"),
            object("a", "service", "1"),
        );
        assert_eq!(
            live.names(kind("ConfigMap"), Some("tcp-a"), "a", "service"),
            ["one", "two"]
        );
    }

    #[tokio::test]
    async fn a_pass_waits_for_every_kind_to_be_listed() {
        let live = LiveObjects::new();
        let all: Vec<&str> = watched_kinds().map(|k| k.kind).collect();
        assert_eq!(live.wait_synced(Duration::from_millis(10)).await, all);
        for kind in &all[1..] {
            live.replace_kind(kind, Vec::new());
        }
        assert_eq!(live.wait_synced(Duration::from_millis(10)).await, [all[0]]);
        live.replace_kind(all[0], Vec::new());
        assert!(live.wait_synced(Duration::from_secs(1)).await.is_empty());
    }
}
