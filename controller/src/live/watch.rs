//! The watches that keep [`LiveObjects`] current: one per watched kind,
//! selected by gantry's `managed-by` label. Only Deployments, StatefulSets
//! and Services are watched whole; every other kind (Secrets among them) for
//! its metadata only. The stream they make yields the name of each tenant with
//! news (an object added, changed or deleted), after the news is stored: a
//! pass it triggers always sees it.

use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use gantry_renderer::kinds::Kind;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::Value;

use super::{Key, LiveObject, LiveObjects, key, watched_kinds};

/// Follows every watched kind into `live`, for as long as the stream is
/// polled. Yields the tenants with news.
pub fn follow(client: Client, live: Arc<LiveObjects>) -> impl Stream<Item = String> + Send {
    stream::select_all(watched_kinds().map(|kind| follow_kind(client.clone(), kind, live.clone())))
}

/// Whether a pass reads more of `kind` than its metadata (see `Details`).
fn has_details(kind: &Kind) -> bool {
    matches!(kind.kind, "Deployment" | "StatefulSet" | "Service")
}

/// One watch event, reduced to what [`LiveObjects`] keeps.
enum Change {
    /// A (re-)list starts.
    Init,
    Listed(Key, LiveObject),
    /// The list is complete: it replaces what was held of the kind.
    InitDone,
    Applied(Key, LiveObject),
    Deleted(Key),
}

fn follow_kind(
    client: Client,
    kind: &'static Kind,
    live: Arc<LiveObjects>,
) -> BoxStream<'static, String> {
    let (managed_by, gantry) = gantry_api::labels::MANAGED_BY;
    let config = watcher::Config::default()
        .labels(&format!("{managed_by}={gantry}"))
        .any_semantic();
    let changes: BoxStream<'static, Result<Change, watcher::Error>> = if !has_details(kind) {
        // Metadata is all a pass reads of these; a Secret's data (keys and
        // certificates) is read by each pass, never kept.
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(client, &super::resource(kind));
        watcher(api, config)
            .default_backoff()
            .map_ok(move |event| {
                change(kind, event, |o: PartialObjectMeta<DynamicObject>| {
                    (o.metadata, Value::Null)
                })
            })
            .boxed()
    } else {
        // Whole objects: smaller pages, so a list holds less at once.
        watcher(super::api(&client, kind, None), config.page_size(100))
            .default_backoff()
            .map_ok(move |event| change(kind, event, |o: DynamicObject| (o.metadata, o.data)))
            .boxed()
    };
    let mut listed = Vec::new();
    changes
        .map(move |change| match change {
            Ok(change) => store(&live, kind, change, &mut listed),
            Err(error) => {
                tracing::warn!(kind = kind.kind, %error, "watching gantry's objects");
                Vec::new()
            }
        })
        .flat_map(stream::iter)
        .boxed()
}

fn change<K>(
    kind: &'static Kind,
    event: Event<K>,
    parts: impl Fn(K) -> (ObjectMeta, Value),
) -> Change {
    let entry = |object: K| {
        let (metadata, rest) = parts(object);
        let key = key(
            kind,
            metadata.namespace.as_deref(),
            metadata.name.as_deref().unwrap_or_default(),
        );
        (key, LiveObject::of(kind.kind, &metadata, &rest))
    };
    match event {
        Event::Init => Change::Init,
        Event::InitApply(object) => {
            let (key, object) = entry(object);
            Change::Listed(key, object)
        }
        Event::InitDone => Change::InitDone,
        Event::Apply(object) => {
            let (key, object) = entry(object);
            Change::Applied(key, object)
        }
        Event::Delete(object) => Change::Deleted(entry(object).0),
    }
}

/// Stores one change; returns the tenants with news.
fn store(
    live: &LiveObjects,
    kind: &'static Kind,
    change: Change,
    listed: &mut Vec<(Key, LiveObject)>,
) -> Vec<String> {
    let news = match change {
        Change::Init => {
            listed.clear();
            Vec::new()
        }
        Change::Listed(key, object) => {
            listed.push((key, object));
            Vec::new()
        }
        Change::InitDone => live.replace_kind(kind.kind, std::mem::take(listed)),
        Change::Applied(key, object) => live.put(key, object).into_iter().collect(),
        Change::Deleted(key) => live.remove(&key).into_iter().collect(),
    };
    news.iter().map(|tenant| tenant.to_string()).collect()
}
