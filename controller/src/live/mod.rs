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

mod object;
pub mod watch;

pub use object::{Details, HashPrefix, LiveObject, ObservedService, Rollout, version_of};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

use gantry_renderer::kinds::{self, Kind};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};

use gantry_api::labels::{SET_LABEL, TENANT_LABEL};

/// Where an object sits: its kind (see [`KindIndex`]), its group (see
/// [`Group`]) and its name.
type Key = (KindIndex, Box<str>, Box<str>);

/// A kind as its place in `kinds::KINDS`: one byte in each [`Entry`].
type KindIndex = u8;

fn kind_index(kind: &str) -> KindIndex {
    let at = kinds::KINDS.iter().position(|k| k.kind == kind);
    at.expect("a kind of the registry") as KindIndex
}

fn key(kind: &Kind, namespace: Option<&str>, name: &str) -> Key {
    let group = match kind.namespaced {
        true => namespace.unwrap_or(""),
        false => name,
    };
    (kind_index(kind.kind), group.into(), name.into())
}

/// The kinds gantry keeps live: those of the service set, and Namespace.
pub fn watched_kinds() -> impl Iterator<Item = &'static Kind> {
    kinds::KINDS
        .iter()
        .filter(|k| k.service_set || k.kind == "Namespace")
}

/// The objects in one tenant namespace, and the Namespace itself (a
/// cluster-scoped object is grouped by its own name): a pass looks at one
/// group, and each group is small, so it is a plain list.
type Group = Vec<Entry>;

#[derive(Debug)]
struct Entry {
    kind: KindIndex,
    name: Box<str>,
    object: LiveObject,
}

/// The gantry-managed objects of the service cluster, as the watches last
/// reported them. Filled by [`watch::follow`]. Kept small: one operator holds
/// thousands of tenants (see docs/benchmarks.md for the bytes per object).
#[derive(Default)]
pub struct LiveObjects {
    groups: RwLock<HashMap<Box<str>, Group>>,
    /// The kinds whose first list is in.
    synced: tokio::sync::watch::Sender<Vec<&'static str>>,
}

impl LiveObjects {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> Option<LiveObject> {
        let (kind, group, name) = key(kind, namespace, name);
        let groups = self.groups.read().expect("not poisoned");
        groups
            .get(&group)?
            .iter()
            .find(|e| e.kind == kind && e.name == name)
            .map(|e| e.object.clone())
    }

    /// The objects of `kind` in `namespace` labelled with this tenant and
    /// set: name and `resourceVersion` (if known, see [`version_of`]).
    pub fn names(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        tenant: &str,
        set: &str,
    ) -> Vec<(String, Option<String>)> {
        let groups = self.groups.read().expect("not poisoned");
        let entries: Box<dyn Iterator<Item = &Entry>> = match kind.namespaced {
            true => Box::new(groups.get(namespace.unwrap_or("")).into_iter().flatten()),
            false => Box::new(groups.values().flatten()),
        };
        let kind = kind_index(kind.kind);
        entries
            .filter(|e| e.kind == kind)
            .filter(|e| e.object.tenant.as_deref() == Some(tenant))
            .filter(|e| e.object.set == Some(set))
            .map(|e| (e.name.to_string(), e.object.resource_version_text()))
            .collect()
    }

    /// Number of objects held (for the scale bench and tests).
    pub fn len(&self) -> usize {
        let groups = self.groups.read().expect("not poisoned");
        groups.values().map(Vec::len).sum()
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
    fn put(&self, key: Key, object: LiveObject) -> Option<Arc<str>> {
        let mut groups = self.groups.write().expect("not poisoned");
        put_in(&mut groups, key, object)
    }

    /// Removes an object; returns its tenant if it was held.
    fn remove(&self, (kind, group, name): &Key) -> Option<Arc<str>> {
        let mut groups = self.groups.write().expect("not poisoned");
        let entries = groups.get_mut(group)?;
        let at = entries
            .iter()
            .position(|e| e.kind == *kind && e.name == *name)?;
        let gone = entries.swap_remove(at);
        if entries.is_empty() {
            groups.remove(group);
        }
        gone.object.tenant
    }

    /// Replaces every object of `kind` with `listed` (a watch's list, after
    /// a start or a lost watch) and marks the kind synced. Returns the tenants
    /// with news: objects added, changed or gone.
    fn replace_kind(&self, kind: &'static str, listed: Vec<(Key, LiveObject)>) -> Vec<Arc<str>> {
        let index = kind_index(kind);
        let mut groups = self.groups.write().expect("not poisoned");
        let mut held: HashMap<(Box<str>, Box<str>), Held> = HashMap::new();
        for (group, entries) in groups.iter_mut() {
            entries.retain(|e| {
                if e.kind != index {
                    return true;
                }
                let value = (e.object.resource_version, e.object.tenant.clone());
                held.insert((group.clone(), e.name.clone()), value);
                false
            });
        }
        let mut news = Vec::new();
        for (key, object) in listed {
            let before = held.remove(&(key.1.clone(), key.2.clone()));
            let changed = before.is_none_or(|(version, _)| version != object.resource_version);
            let tenant = put_in(&mut groups, key, object);
            if changed {
                news.extend(tenant);
            }
        }
        news.extend(held.into_values().filter_map(|(_, tenant)| tenant));
        groups.retain(|_, entries| !entries.is_empty());
        drop(groups);
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

/// What `replace_kind` knew of an object before the list: its version and tenant.
type Held = (u64, Option<Arc<str>>);

/// Stores `object` in its group, sharing the tenant name with the group's
/// other objects; returns its tenant if this is news (see [`LiveObjects::put`]).
fn put_in(
    groups: &mut HashMap<Box<str>, Group>,
    (kind, group, name): Key,
    mut object: LiveObject,
) -> Option<Arc<str>> {
    let entries = groups.entry(group).or_default();
    if let Some(shared) = entries
        .iter()
        .filter_map(|e| e.object.tenant.as_ref())
        .find(|tenant| Some(*tenant) == object.tenant.as_ref())
    {
        object.tenant = Some(shared.clone());
    }
    let tenant = object.tenant.clone();
    match entries
        .iter_mut()
        .find(|e| e.kind == kind && e.name == name)
    {
        Some(held) if held.object.resource_version == object.resource_version => {
            held.object = object;
            None
        }
        Some(held) => {
            held.object = object;
            tenant
        }
        None => {
            // Room for one more, not twice as many: groups only grow when a
            // tenant gains an object, and slack would be a third of them.
            entries.reserve_exact(1);
            entries.push(Entry { kind, name, object });
            tenant
        }
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

    /// The objects of `kind` in `namespace` that carry gantry's labels for
    /// `tenant` and `set`: name and `resourceVersion`.
    pub async fn names(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        tenant: &str,
        set: &str,
    ) -> Result<Vec<(String, Option<String>)>, kube::Error> {
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
            .filter_map(|item| Some((item.metadata.name?, item.metadata.resource_version)))
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

    fn object(tenant: &str, set: &str, resource_version: &str) -> LiveObject {
        LiveObject::labelled(tenant, set, resource_version)
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
        let names = live.names(kind("ConfigMap"), Some("tcp-a"), "a", "service");
        let one = ("one".to_string(), Some("1".to_string()));
        assert_eq!(names, [one, ("two".to_string(), Some("1".to_string()))]);
    }

    #[test]
    fn an_entry_stays_small() {
        // An operator holds about 22 per tenant: 220,000 at 10,000 tenants,
        // where each 8 bytes more costs 1.7 MiB (docs/benchmarks.md).
        assert_eq!(std::mem::size_of::<LiveObject>(), 72);
        assert_eq!(std::mem::size_of::<Entry>(), 96);
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
