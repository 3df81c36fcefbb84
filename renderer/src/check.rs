//! Every rendered object is parsed into its k8s-openapi type and serialised
//! back; whatever does not survive the round trip unchanged is a typo, an
//! unknown field or a value of the wrong type, reported with its path.

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

/// Round-trips `object` through the type `T`: what
/// [`check_object`](crate::kinds::check_object) does with the type chosen
/// by the caller, also for kinds gantry does not render (e.g. a
/// CustomResourceDefinition in a chart test).
pub fn check_as<T: for<'de> Deserialize<'de> + Serialize>(
    object: &Value,
) -> Result<(), (String, String)> {
    let back = round_trip::<T>(object).map_err(|reason| ("(document)".to_string(), reason))?;
    match first_difference(object, &back, "") {
        None => Ok(()),
        Some(difference) => Err(difference),
    }
}

/// Deserialises from the borrowed value: no copy of large Secret strings.
fn round_trip<T: for<'de> Deserialize<'de> + Serialize>(object: &Value) -> Result<Value, String> {
    let typed = T::deserialize(object).map_err(|e| format!("does not parse: {e}"))?;
    serde_json::to_value(&typed).map_err(|e| format!("does not serialise: {e}"))
}

/// The first path where `original` and `back` differ, depth first.
fn first_difference(original: &Value, back: &Value, path: &str) -> Option<(String, String)> {
    let here = |segment: &str| {
        if path.is_empty() {
            segment.to_string()
        } else {
            format!("{path}.{segment}")
        }
    };
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    None => {
                        return Some((
                            here(key),
                            "unknown field (lost by the typed round trip)".into(),
                        ));
                    }
                    Some(other) => {
                        if let Some(difference) = first_difference(value, other, &here(key)) {
                            return Some(difference);
                        }
                    }
                }
            }
            b.keys()
                .find(|key| !a.contains_key(*key))
                .map(|key| (here(key), "added by the typed round trip".into()))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some((path.into(), format!("{} items became {}", a.len(), b.len())));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
        }
        (a, b) if a == b => None,
        // 10 and 10.0 are the same number (YAML writers differ on which they print).
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) => Some((path.into(), format!("{a} became {b}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use serde_json::json;

    #[test]
    fn a_valid_object_passes() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}});
        assert_eq!(check_as::<ConfigMap>(&cm), Ok(()));
    }

    #[test]
    fn a_typo_is_reported_with_its_path() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
            "spec": {"ports": [{"port": 6443, "targetPrt": 6443}]}});
        assert_eq!(
            check_as::<Service>(&svc),
            Err((
                "spec.ports[0].targetPrt".into(),
                "unknown field (lost by the typed round trip)".into()
            ))
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_reported() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
            "spec": {"ports": [{"port": "https"}]}});
        let (path, reason) = check_as::<Service>(&svc).unwrap_err();
        assert_eq!(path, "(document)");
        assert!(reason.contains("does not parse"), "{reason}");
    }
}
