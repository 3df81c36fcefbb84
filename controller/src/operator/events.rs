//! Events about tenants (events.k8s.io/v1), published as kube-runtime's
//! `Recorder` publishes them: a repeat of the same event (type, reason and
//! tenant) within [`SERIES_WINDOW`] adds to the first one's series instead of
//! making another Event.
//!
//! Why not the `Recorder` itself: to know what a repeat is, it keeps every
//! Event it published in the last 6 minutes, whole (a few KiB each, notes
//! included), and forgets old ones only when it publishes the next. An
//! operator that provisioned thousands of tenants and then went quiet held
//! those Events for good: tens of MiB at 10,000 tenants (docs/benchmarks.md).
//! This keeps a hash of the key, the Event's name and the series count.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How long a repeat counts as one series (kube-runtime's `Recorder` uses
/// the same 6 minutes, after client-go's event aggregation).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// What one published Event is remembered by, for its repeats.
struct Published {
    name: Box<str>,
    count: i32,
    last: Instant,
}

pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<u64, Published>>,
}

impl Events {
    /// Events reported by `controller` (e.g. "gantry"), replica `instance`.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Events {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            published: Mutex::default(),
        }
    }

    /// Publishes a Normal (or Warning) Event `reason` with `note` about
    /// `regarding`, in its namespace ("default" for a cluster-scoped object,
    /// such as a TenantControlPlane).
    pub async fn publish(
        &self,
        warning: bool,
        reason: &str,
        note: &str,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let key = series_key(warning, reason, regarding);
        let now = Instant::now();
        let repeat = {
            let mut published = self.published.lock().expect("not poisoned");
            published.retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
            published.get_mut(&key).map(|p| {
                p.count += 1;
                p.last = now;
                (p.name.to_string(), p.count)
            })
        };
        if let Some((name, count)) = repeat {
            let series = Event {
                series: Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(Timestamp::now()),
                }),
                ..Event::default()
            };
            let patch = Patch::Merge(&series);
            return events
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop);
        }
        let event = self.event(warning, reason, note, regarding);
        let name = event.metadata.name.clone().unwrap_or_default();
        events.create(&PostParams::default(), &event).await?;
        let published = Published {
            name: name.into(),
            count: 1,
            last: now,
        };
        self.published
            .lock()
            .expect("not poisoned")
            .insert(key, published);
        Ok(())
    }

    fn event(&self, warning: bool, reason: &str, note: &str, regarding: &ObjectReference) -> Event {
        let now = Timestamp::now();
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Reconcile".into()),
            reason: Some(reason.to_string()),
            note: Some(note.to_string()),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

/// Which Events are one series: same type and reason, about the same object.
fn series_key(warning: bool, reason: &str, regarding: &ObjectReference) -> u64 {
    let mut hasher = DefaultHasher::new();
    warning.hash(&mut hasher);
    reason.hash(&mut hasher);
    regarding.uid.hash(&mut hasher);
    regarding.namespace.hash(&mut hasher);
    regarding.name.hash(&mut hasher);
    hasher.finish()
}
