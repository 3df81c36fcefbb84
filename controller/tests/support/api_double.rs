//! `InMemoryApiServerDouble`: a TEST DOUBLE of the Kubernetes API server, not
//! an API server. No registry ships kube-apiserver, so reconcile code is tested
//! against this stateful in-memory stand-in behind kube's real `Client`.
//!
//! It serves the REST paths kube builds (core `/api/v1/...` and group
//! `/apis/<group>/<version>/...`, namespaced and cluster-scoped): GET, LIST with
//! an equality `labelSelector`, server-side apply PATCH, and DELETE, and it
//! records every write. Simplifications, on purpose: an apply replaces the
//! stored object's content except `.status` (gantry always applies whole
//! objects), there is no field ownership, no admission, no watch, and no
//! garbage collection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

/// (group, version, plural, namespace or "", name)
type Key = (String, String, String, String, String);

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    writes: Vec<String>,
    /// Every request, reads included.
    requests: usize,
    resource_version: u64,
    /// Plurals whose deletion only marks the object terminating (see `hold_deletes`).
    held: Vec<String>,
}

#[derive(Clone, Default)]
pub struct InMemoryApiServerDouble {
    state: Arc<Mutex<State>>,
}

/// A parsed request path.
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: String,
    name: Option<String>,
    /// `status` for the status subresource.
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return None,
    };
    let (plural, namespace, name, subresource) = match rest {
        ["namespaces", ns, plural] => (plural.to_string(), ns.to_string(), None, None),
        ["namespaces", ns, plural, name] => (
            plural.to_string(),
            ns.to_string(),
            Some(name.to_string()),
            None,
        ),
        ["namespaces", ns, plural, name, sub] => (
            plural.to_string(),
            ns.to_string(),
            Some(name.to_string()),
            Some(sub.to_string()),
        ),
        [plural] => (plural.to_string(), String::new(), None, None),
        [plural, name] => (
            plural.to_string(),
            String::new(),
            Some(name.to_string()),
            None,
        ),
        [plural, name, sub] => (
            plural.to_string(),
            String::new(),
            Some(name.to_string()),
            Some(sub.to_string()),
        ),
        _ => return None,
    };
    Some(Target {
        group,
        version,
        plural,
        namespace,
        name,
        subresource,
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "message": message, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|requirement| {
            let Some((key, value)) = requirement.split_once('=') else {
                return false;
            };
            object["metadata"]["labels"][key].as_str() == Some(value)
        })
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
        self.state.lock().unwrap().objects.insert(key, object);
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
        let object = state
            .objects
            .iter_mut()
            .find(|((_, _, p, ns, n), _)| p == plural && ns == namespace && n == name)
            .map(|(_, v)| v)
            .expect("object exists");
        let (parent, field) = pointer.rsplit_once('/').expect("a JSON pointer");
        let mut target = object;
        for segment in parent.split('/').filter(|s| !s.is_empty()) {
            if target.get(segment).is_none() {
                target[segment] = json!({});
            }
            target = target.get_mut(segment).unwrap();
        }
        target[field] = value;
    }

    /// From now on a DELETE of `plural` only sets `metadata.deletionTimestamp`,
    /// like a namespace that is still terminating; `forget` removes it for good.
    pub fn hold_deletes(&self, plural: &str) {
        self.state.lock().unwrap().held.push(plural.into());
    }

    /// Removes an object without recording a write (e.g. a namespace done terminating).
    pub fn forget(&self, plural: &str, namespace: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .objects
            .retain(|(_, _, p, ns, n), _| !(p == plural && ns == namespace && n == name));
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().objects.len()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let json_patch = request
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json-patch+json"));
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
        match (method, target.name.clone()) {
            (Method::GET, Some(name)) => {
                let key = (
                    target.group,
                    target.version,
                    target.plural.clone(),
                    target.namespace,
                    name.clone(),
                );
                match state.objects.get(&key) {
                    Some(object) => ok(StatusCode::OK, object),
                    None => status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{} \"{name}\" not found", target.plural),
                    ),
                }
            }
            (Method::GET, None) => {
                let selector = query_param(&query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((g, v, p, ns, _), object)| {
                        *g == target.group
                            && *v == target.version
                            && *p == target.plural
                            && (target.namespace.is_empty() || *ns == target.namespace)
                            && labels_match(object, &selector)
                    })
                    .map(|(_, object)| object.clone())
                    .collect();
                let list = json!({"apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": state.resource_version.to_string()}, "items": items});
                ok(StatusCode::OK, &list)
            }
            (Method::PATCH, Some(name)) if target.subresource.as_deref() == Some("status") => {
                // A merge patch of `.status`.
                let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "patch body is not JSON",
                    );
                };
                let key = (
                    target.group,
                    target.version,
                    target.plural,
                    target.namespace,
                    name.clone(),
                );
                state.resource_version += 1;
                let version = state.resource_version;
                let Some(object) = state.objects.get_mut(&key) else {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("\"{name}\" not found"),
                    );
                };
                object["status"] = patch["status"].clone();
                object["metadata"]["resourceVersion"] = version.to_string().into();
                let object = object.clone();
                state.writes.push(format!("PATCH {path}"));
                ok(StatusCode::OK, &object)
            }
            (Method::PATCH, Some(name)) if json_patch => {
                let key = (
                    target.group,
                    target.version,
                    target.plural,
                    target.namespace,
                    name.clone(),
                );
                let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(&body) else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "not a JSON patch");
                };
                let Some(stored) = state.objects.get(&key).cloned() else {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("\"{name}\" not found"),
                    );
                };
                // The API server treats an absent list as null in `test` operations.
                let mut object = stored;
                if object["metadata"].get("finalizers").is_none() {
                    object["metadata"]["finalizers"] = Value::Null;
                }
                if let Err(e) = json_patch::patch(&mut object, &patch) {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
                }
                if object["metadata"]["finalizers"].is_null()
                    || object["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(Vec::is_empty)
                {
                    object["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("finalizers");
                }
                state.resource_version += 1;
                object["metadata"]["resourceVersion"] = state.resource_version.to_string().into();
                state.writes.push(format!("PATCH {path}"));
                // An object being deleted goes once its last finalizer is removed.
                if object["metadata"].get("deletionTimestamp").is_some()
                    && object["metadata"].get("finalizers").is_none()
                {
                    state.objects.remove(&key);
                } else {
                    state.objects.insert(key, object.clone());
                }
                ok(StatusCode::OK, &object)
            }
            (Method::PATCH, Some(name)) => {
                let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "apply body is not JSON",
                    );
                };
                state.writes.push(format!("PATCH {path}"));
                state.resource_version += 1;
                let key = (
                    target.group,
                    target.version,
                    target.plural,
                    target.namespace,
                    name,
                );
                let created = !state.objects.contains_key(&key);
                // As on a real API server, writes to the main resource never change `.status`.
                match state.objects.get(&key).and_then(|old| old.get("status")) {
                    Some(status) => object["status"] = status.clone(),
                    None => {
                        if let Some(map) = object.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
                // As on a real API server, a changed spec bumps metadata.generation.
                let old = state.objects.get(&key);
                let generation = match old {
                    None => 1,
                    Some(old) => {
                        let before = old["metadata"]["generation"].as_i64().unwrap_or(1);
                        if old.get("spec") == object.get("spec") {
                            before
                        } else {
                            before + 1
                        }
                    }
                };
                let metadata = object["metadata"].as_object_mut().expect("metadata");
                metadata.insert("generation".into(), generation.into());
                metadata.insert(
                    "resourceVersion".into(),
                    state.resource_version.to_string().into(),
                );
                metadata.insert("uid".into(), format!("uid-{}", key.4).into());
                state.objects.insert(key, object.clone());
                ok(
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    &object,
                )
            }
            (Method::DELETE, Some(name)) if state.held.contains(&target.plural) => {
                let key = (
                    target.group,
                    target.version,
                    target.plural,
                    target.namespace,
                    name.clone(),
                );
                match state.objects.get_mut(&key) {
                    Some(object) => {
                        object["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z".into();
                        let object = object.clone();
                        state.writes.push(format!("DELETE {path}"));
                        ok(StatusCode::OK, &object)
                    }
                    None => status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("\"{name}\" not found"),
                    ),
                }
            }
            (Method::DELETE, Some(name)) => {
                let key = (
                    target.group,
                    target.version,
                    target.plural,
                    target.namespace,
                    name.clone(),
                );
                match state.objects.remove(&key) {
                    Some(_) => {
                        state.writes.push(format!("DELETE {path}"));
                        ok(
                            StatusCode::OK,
                            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                        )
                    }
                    None => status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("\"{name}\" not found"),
                    ),
                }
            }
            (method, _) => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("the double does not serve {method} {path}"),
            ),
        }
    }
}
