//! `InMemoryApiServerDouble`: a TEST DOUBLE of the Kubernetes API server, not
//! an API server. No registry ships kube-apiserver, so reconcile code is tested
//! against this stateful in-memory stand-in behind kube's real `Client`.
//!
//! It serves the REST paths kube builds (core `/api/v1/...` and group
//! `/apis/<group>/<version>/...`, namespaced and cluster-scoped): GET, LIST with
//! an equality `labelSelector` (in pages, with `limit` and `continue`; metadata
//! only when asked for `PartialObjectMetadata`), WATCH (from a resourceVersion, replaying what
//! happened since), POST, server-side apply, JSON merge (and strategic merge,
//! treated as JSON merge) and JSON patches, and DELETE; it records every write.
//! Simplifications, on purpose: an apply replaces the stored object's content
//! except `.status` (gantry always applies whole objects; an apply without
//! metadata is merged instead), there is no field ownership (so no apply
//! conflicts), no RBAC (access reviews are allowed), no admission, no bookmarks, no garbage collection, and the pages of a list
//! are not one snapshot (its `continue` is the offset of the next item).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};

mod requests;

use requests::{
    Page, Target, key_of, labels_match, not_found, ok, parse_path, query_param, status,
};

pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// (group, version, plural, namespace or "", name)
type Key = (String, String, String, String, String);

struct State {
    objects: BTreeMap<Key, Value>,
    /// Every change, in order, for watches: (resourceVersion, key, type, object).
    history: Vec<(u64, Key, &'static str, Value)>,
    /// Wakes the watches when `history` grows.
    changed: tokio::sync::broadcast::Sender<()>,
    writes: Vec<String>,
    /// Every request, reads included.
    requests: usize,
    /// Every GET and LIST (not WATCH), as `GET <path>`.
    reads: Vec<String>,
    resource_version: u64,
    /// Plurals whose deletion only marks the object terminating (see `hold_deletes`).
    held: Vec<String>,
    /// See `roll_out_workloads`.
    roll_out: bool,
    /// Fault injection: requests for this (plural, name) fail (see `fail_requests_to`).
    failing: Option<(String, String)>,
}

impl Default for State {
    fn default() -> Self {
        State {
            objects: BTreeMap::new(),
            history: Vec::new(),
            changed: tokio::sync::broadcast::channel(1024).0,
            writes: Vec::new(),
            requests: 0,
            reads: Vec::new(),
            resource_version: 0,
            held: Vec::new(),
            roll_out: false,
            failing: None,
        }
    }
}

/// The status the StatefulSet or Deployment controller reports once every
/// replica runs the workload's current spec; `None` for other kinds.
fn rolled_out_status(plural: &str, workload: &Value) -> Option<Value> {
    let ready = match plural {
        "statefulsets" => "readyReplicas",
        "deployments" => "availableReplicas",
        _ => return None,
    };
    let replicas = workload["spec"]["replicas"].clone();
    Some(json!({
        "observedGeneration": workload["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        ready: replicas,
    }))
}

impl State {
    /// Stores `object` (or removes it, for DELETED) at a new resourceVersion and tells the watches.
    fn commit(&mut self, key: Key, event: &'static str, mut object: Value) -> Value {
        self.resource_version += 1;
        let version = self.resource_version;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        if event == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        self.history.push((version, key, event, object.clone()));
        let _ = self.changed.send(());
        object
    }
}

#[derive(Clone, Default)]
pub struct InMemoryApiServerDouble {
    state: Arc<Mutex<State>>,
}

impl InMemoryApiServerDouble {
    pub fn new() -> Self {
        Self::default()
    }

    /// A kube `Client` whose every request this double answers.
    pub fn client(&self) -> kube::Client {
        let double = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let double = double.clone();
            async move { Ok::<_, Infallible>(double.handle(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Every write request so far (`PATCH /api/...`, `DELETE /api/...`).
    pub fn writes(&self) -> Vec<String> {
        self.state.lock().unwrap().writes.clone()
    }

    /// How many requests (reads and writes) the double has answered.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// Every GET and LIST so far (`GET /api/v1/namespaces/x/secrets`), not WATCHes.
    pub fn reads(&self) -> Vec<String> {
        self.state.lock().unwrap().reads.clone()
    }

    pub fn clear_writes(&self) {
        self.state.lock().unwrap().writes.clear();
    }

    /// A stored object, by plural, namespace ("" for cluster-scoped) and name.
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .find(|((_, _, p, ns, n), _)| p == plural && ns == namespace && n == name)
            .map(|(_, v)| v.clone())
    }

    /// Every stored object of `plural`.
    pub fn list(&self, plural: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .filter(|((_, _, p, _, _), _)| p == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores `object` as if another client had created it (not counted as a write).
    pub fn put(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        object: serde_json::Value,
    ) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let key = (
            group.into(),
            version.into(),
            plural.into(),
            namespace.into(),
            name,
        );
        let mut state = self.state.lock().unwrap();
        let event = if state.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        state.commit(key, event, object);
    }

    /// Sets a field of a stored object, as another controller would (not
    /// counted as a write): e.g. a LoadBalancer's address in a Service's status.
    pub fn set_field(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        pointer: &str,
        value: serde_json::Value,
    ) {
        let mut state = self.state.lock().unwrap();
        let (key, mut object) = state
            .objects
            .iter()
            .find(|((_, _, p, ns, n), _)| p == plural && ns == namespace && n == name)
            .map(|(k, v)| (k.clone(), v.clone()))
            .expect("object exists");
        let (parent, field) = pointer.rsplit_once('/').expect("a JSON pointer");
        let mut target = &mut object;
        for segment in parent.split('/').filter(|s| !s.is_empty()) {
            if target.get(segment).is_none() {
                target[segment] = json!({});
            }
            target = target.get_mut(segment).unwrap();
        }
        target[field] = value;
        state.commit(key, "MODIFIED", object);
    }

    /// The StatefulSet or Deployment `plural`/`namespace`/`name` reports
    /// itself rolled out, as its controller would (not counted as a write).
    pub fn roll_out(&self, plural: &str, namespace: &str, name: &str) {
        let object = self.get(plural, namespace, name).expect("applied");
        let status = rolled_out_status(plural, &object).expect("a StatefulSet or Deployment");
        self.set_field(plural, namespace, name, "/status", status);
    }

    /// From now on every applied StatefulSet and Deployment reports itself
    /// rolled out at once, as if their controllers and kubelets were instant
    /// (the scale bench's stand-in for a whole cluster).
    pub fn roll_out_workloads(&self) {
        self.state.lock().unwrap().roll_out = true;
    }

    /// From now on a DELETE of `plural` only sets `metadata.deletionTimestamp`,
    /// like a namespace that is still terminating; `forget` removes it for good.
    pub fn hold_deletes(&self, plural: &str) {
        self.state.lock().unwrap().held.push(plural.into());
    }

    /// Fault injection: from now on every request for the object `name` of
    /// `plural` fails with 500, until [`answer_all`](Self::answer_all).
    pub fn fail_requests_to(&self, plural: &str, name: &str) {
        self.state.lock().unwrap().failing = Some((plural.into(), name.into()));
    }

    pub fn answer_all(&self) {
        self.state.lock().unwrap().failing = None;
    }

    /// Removes an object without recording a write (e.g. a namespace done terminating).
    pub fn forget(&self, plural: &str, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        let found = state
            .objects
            .iter()
            .find(|((_, _, p, ns, n), _)| p == plural && ns == namespace && n == name)
            .map(|(k, v)| (k.clone(), v.clone()));
        if let Some((key, object)) = found {
            state.commit(key, "DELETED", object);
        }
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().objects.len()
    }

    /// A watch: replays the changes after `from` that match, then follows new ones.
    fn watch(&self, target: Target, selector: String, from: u64) -> Response<ResponseBody> {
        let receiver = self.state.lock().unwrap().changed.subscribe();
        let state = self.state.clone();
        let events = futures::stream::unfold((receiver, from), move |(mut receiver, mut seen)| {
            let state = state.clone();
            let (group, version, plural, namespace) = (
                target.group.clone(),
                target.version.clone(),
                target.plural.clone(),
                target.namespace.clone(),
            );
            let selector = selector.clone();
            async move {
                loop {
                    let chunk = {
                        let state = state.lock().unwrap();
                        let mut chunk = Vec::new();
                        // The history is in resourceVersion order.
                        let first = state.history.partition_point(|(rv, ..)| *rv <= seen);
                        for (rv, (g, v, p, ns, _), event, object) in &state.history[first..] {
                            seen = *rv;
                            if *g == group
                                && *v == version
                                && *p == plural
                                && (namespace.is_empty() || *ns == namespace)
                                && labels_match(object, &selector)
                            {
                                chunk.extend(
                                    serde_json::to_vec(&json!({"type": event, "object": object}))
                                        .unwrap(),
                                );
                                chunk.push(b'\n');
                            }
                        }
                        chunk
                    };
                    if !chunk.is_empty() {
                        let frame = http_body::Frame::data(Bytes::from(chunk));
                        return Some((Ok::<_, Infallible>(frame), (receiver, seen)));
                    }
                    // Wait for the next change; a lagging receiver re-reads the history.
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) =
                        receiver.recv().await
                    {
                        return None;
                    }
                }
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(StreamBody::new(events).boxed_unsync())
            .unwrap()
    }

    /// Answers one request (also used to serve the double over HTTP in the scale bench).
    pub async fn handle(&self, request: Request<Body>) -> Response<ResponseBody> {
        let method = request.method().clone();
        let content_type = request
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
            .unwrap_or_default();
        let accept = request
            .headers()
            .get("accept")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
            .unwrap_or_default();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let Some(target) = parse_path(&path) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("the double does not serve {path}"),
            );
        };
        let mut state = self.state.lock().unwrap();
        state.requests += 1;
        let watch = matches!(query_param(&query, "watch").as_deref(), Some("true" | "1"));
        if method == Method::GET && !watch {
            state.reads.push(format!("GET {path}"));
        }
        let failing = state.failing.as_ref().is_some_and(|(plural, name)| {
            *plural == target.plural && target.name.as_ref() == Some(name)
        });
        if failing {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "injected",
            );
        }
        match (method, target.name.clone()) {
            (Method::GET, None)
                if matches!(query_param(&query, "watch").as_deref(), Some("true" | "1")) =>
            {
                let selector = query_param(&query, "labelSelector").unwrap_or_default();
                let from = query_param(&query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                drop(state);
                self.watch(target, selector, from)
            }
            (Method::GET, Some(name)) => match state.objects.get(&key_of(&target, &name)) {
                Some(object) => ok(StatusCode::OK, object),
                None => not_found(&target, &name),
            },
            (Method::GET, None) => {
                let selector = query_param(&query, "labelSelector").unwrap_or_default();
                let matching = state.objects.iter().filter(|((g, v, p, ns, _), object)| {
                    *g == target.group
                        && *v == target.version
                        && *p == target.plural
                        && (target.namespace.is_empty() || *ns == target.namespace)
                        && labels_match(object, &selector)
                });
                let metadata_only = accept.contains("as=PartialObjectMetadata");
                let page = Page::of(&query);
                let mut items: Vec<Value> = matching
                    .skip(page.offset)
                    .take(page.limit.saturating_add(1))
                    .map(|(_, object)| match metadata_only {
                        true => json!({"apiVersion": "meta.k8s.io/v1",
                            "kind": "PartialObjectMetadata", "metadata": object["metadata"]}),
                        false => object.clone(),
                    })
                    .collect();
                let more = items.len() > page.limit;
                items.truncate(page.limit);
                let mut metadata = json!({"resourceVersion": state.resource_version.to_string()});
                if more {
                    metadata["continue"] = (page.offset + page.limit).to_string().into();
                }
                let list = json!({"apiVersion": "v1", "kind": "List",
                    "metadata": metadata, "items": items});
                ok(StatusCode::OK, &list)
            }
            // No RBAC here: every access review is allowed, and not stored.
            (Method::POST, None) if target.plural == "selfsubjectaccessreviews" => {
                let Ok(mut review) = serde_json::from_slice::<Value>(&body) else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
                };
                review["status"] = json!({"allowed": true});
                ok(StatusCode::CREATED, &review)
            }
            (Method::POST, None) => {
                let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
                };
                let name = match object["metadata"]["name"].as_str() {
                    Some(name) => name.to_string(),
                    None => {
                        // generateName, as the API server does it.
                        let prefix = object["metadata"]["generateName"].as_str().unwrap_or("x-");
                        format!("{prefix}{}", state.resource_version + 1)
                    }
                };
                let key = key_of(&target, &name);
                if state.objects.contains_key(&key) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{} \"{name}\" already exists", target.plural),
                    );
                }
                object["metadata"]["name"] = name.clone().into();
                object["metadata"]["uid"] = format!("uid-{name}").into();
                object["metadata"]["generation"] = 1.into();
                if !target.namespace.is_empty() {
                    object["metadata"]["namespace"] = target.namespace.clone().into();
                }
                state.writes.push(format!("POST {path}"));
                let object = state.commit(key, "ADDED", object);
                ok(StatusCode::CREATED, &object)
            }
            (Method::PATCH, Some(name)) if target.subresource.as_deref() == Some("status") => {
                // A merge patch of `.status` is merged; an apply replaces it.
                let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "patch body is not JSON",
                    );
                };
                let key = key_of(&target, &name);
                let Some(mut object) = state.objects.get(&key).cloned() else {
                    return not_found(&target, &name);
                };
                if content_type.starts_with("application/merge-patch+json") {
                    json_patch::merge(&mut object["status"], &patch["status"]);
                } else {
                    object["status"] = patch["status"].clone();
                }
                state.writes.push(format!("PATCH {path}"));
                let object = state.commit(key, "MODIFIED", object);
                ok(StatusCode::OK, &object)
            }
            (Method::PATCH, Some(name))
                if content_type.starts_with("application/json-patch+json")
                    || content_type.starts_with("application/merge-patch+json")
                    || content_type.starts_with("application/strategic-merge-patch+json") =>
            {
                state.patch(&target, &name, &path, &content_type, &body)
            }
            (Method::PATCH, Some(name)) => state.apply(&target, &name, &path, &body),
            (Method::DELETE, Some(name)) => state.delete(&target, &name, &path),
            (method, _) => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("the double does not serve {method} {path}"),
            ),
        }
    }
}
