//! The double's requests: paths, queries, answers, and the writes that
//! take more than a line (patches, server-side apply, DELETE).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::{Key, ResponseBody, State, rolled_out_status};

/// A parsed request path.
pub(super) struct Target {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: String,
    pub name: Option<String>,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
}

pub(super) fn parse_path(path: &str) -> Option<Target> {
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

pub(super) fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

pub(super) fn status(code: StatusCode, reason: &str, message: &str) -> Response<ResponseBody> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "message": message, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())).boxed_unsync())
        .unwrap()
}

pub(super) fn ok(code: StatusCode, value: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).unwrap())).boxed_unsync())
        .unwrap()
}

pub(super) fn labels_match(object: &Value, selector: &str) -> bool {
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

/// The page of a LIST that a query asks for: `limit` items from the offset
/// in `continue`.
pub(super) struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Page {
    pub(super) fn of(query: &str) -> Self {
        let number = |key| query_param(query, key).and_then(|v| v.parse().ok());
        Page {
            offset: number("continue").unwrap_or(0),
            limit: number("limit").filter(|&n| n > 0).unwrap_or(usize::MAX),
        }
    }
}

/// Where `name` of `target`'s resource is stored.
pub(super) fn key_of(target: &Target, name: &str) -> Key {
    (
        target.group.clone(),
        target.version.clone(),
        target.plural.clone(),
        target.namespace.clone(),
        name.to_string(),
    )
}

pub(super) fn not_found(target: &Target, name: &str) -> Response<ResponseBody> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", target.plural),
    )
}

impl State {
    /// A JSON patch, or a (strategic) merge patch, of the main resource.
    pub(super) fn patch(
        &mut self,
        target: &Target,
        name: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Response<ResponseBody> {
        let key = key_of(target, name);
        let Some(mut object) = self.objects.get(&key).cloned() else {
            return not_found(target, name);
        };
        if content_type.starts_with("application/json-patch+json") {
            let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not a JSON patch");
            };
            // The API server treats an absent list as null in `test` operations.
            if object["metadata"].get("finalizers").is_none() {
                object["metadata"]["finalizers"] = Value::Null;
            }
            if let Err(e) = json_patch::patch(&mut object, &patch) {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
            }
        } else {
            // Strategic merge is JSON merge for the objects gantry patches this way.
            let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not a merge patch");
            };
            json_patch::merge(&mut object, &patch);
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
        self.writes.push(format!("PATCH {path}"));
        // An object being deleted goes once its last finalizer is removed.
        let event = if object["metadata"].get("deletionTimestamp").is_some()
            && object["metadata"].get("finalizers").is_none()
        {
            "DELETED"
        } else {
            "MODIFIED"
        };
        let object = self.commit(key, event, object);
        ok(StatusCode::OK, &object)
    }

    /// Server-side apply.
    pub(super) fn apply(
        &mut self,
        target: &Target,
        name: &str,
        path: &str,
        body: &[u8],
    ) -> Response<ResponseBody> {
        // Server-side apply.
        let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "apply body is not JSON",
            );
        };
        self.writes.push(format!("PATCH {path}"));
        let key = key_of(target, name);
        let old = self.objects.get(&key).cloned();
        // A partial apply (no metadata, as kube-lease-manager sends for
        // a Lease) merges into what is stored; gantry's whole objects replace it.
        if object.get("metadata").is_none() {
            let mut merged = old.clone().unwrap_or_else(|| json!({}));
            json_patch::merge(&mut merged, &object);
            merged["metadata"]["name"] = name.into();
            if !target.namespace.is_empty() {
                merged["metadata"]["namespace"] = target.namespace.clone().into();
            }
            object = merged;
        }
        // As on a real API server, writes to the main resource never change `.status`.
        match old.as_ref().and_then(|old| old.get("status")) {
            Some(status) => object["status"] = status.clone(),
            None => {
                if let Some(map) = object.as_object_mut() {
                    map.remove("status");
                }
            }
        }
        // As on a real API server, a changed spec bumps metadata.generation.
        let generation = match &old {
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
        metadata.insert("uid".into(), format!("uid-{}", key.4).into());
        if self.roll_out
            && let Some(status) = rolled_out_status(&target.plural, &object)
        {
            object["status"] = status;
        }
        let (event, code) = match old {
            None => ("ADDED", StatusCode::CREATED),
            Some(_) => ("MODIFIED", StatusCode::OK),
        };
        let object = self.commit(key, event, object);
        ok(code, &object)
    }

    pub(super) fn delete(
        &mut self,
        target: &Target,
        name: &str,
        path: &str,
    ) -> Response<ResponseBody> {
        let key = key_of(target, name);
        let Some(mut object) = self.objects.get(&key).cloned() else {
            return not_found(target, name);
        };
        self.writes.push(format!("DELETE {path}"));
        // As a real API server answers a DELETE of a namespace that
        // is already terminating.
        if self.held.contains(&target.plural)
            && object["metadata"].get("deletionTimestamp").is_some()
        {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "The system is ensuring all content is removed from this namespace.",
            );
        }
        if self.held.contains(&target.plural) {
            object["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z".into();
            let object = self.commit(key, "MODIFIED", object);
            ok(StatusCode::OK, &object)
        } else {
            self.commit(key, "DELETED", object);
            ok(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            )
        }
    }
}
