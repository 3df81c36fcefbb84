//! Reading a `TenantControlPlane` manifest: one clear line for every
//! mistake, naming the field, including fields that serde would drop
//! without a word.

use crate::tenant::{API_VERSION, KIND, TenantControlPlane};

/// The top-level fields a `TenantControlPlane` manifest may have.
const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// Why a manifest is not a usable `TenantControlPlane`: one line naming the
/// field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

impl TenantControlPlane {
    /// Parses a manifest. Errors name the field (`spec.etcd: unknown field ...`).
    pub fn from_yaml(text: &str) -> Result<Self, ManifestError> {
        Self::parse_yaml(text).map_err(ManifestError)
    }

    fn parse_yaml(text: &str) -> Result<Self, String> {
        if let Some(problem) = crate::yaml_guard::flow_nesting_problem(text) {
            return Err(problem);
        }
        let raw: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let field = |name: &str| {
            raw.get(name)
                .and_then(serde_yaml::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if field("apiVersion") != API_VERSION {
            // Tenant chart values (examples/tenant-values.yaml) have the
            // spec's fields at the top and no apiVersion.
            let chart_values = field("apiVersion").is_empty()
                && ["version", "apiServer", "etcd"]
                    .iter()
                    .any(|key| raw.get(*key).is_some());
            let hint = if chart_values {
                " (this looks like values of the tenant Helm chart; gantry render takes a \
                 TenantControlPlane manifest such as examples/tenant-a.yaml)"
            } else {
                ""
            };
            return Err(format!(
                "apiVersion {:?}: expected {API_VERSION}{hint}",
                field("apiVersion")
            ));
        }
        if field("kind") != KIND {
            return Err(format!("kind {:?}: expected {KIND}", field("kind")));
        }
        if let Some(mapping) = raw.as_mapping() {
            for key in mapping.keys() {
                let key = key.as_str().unwrap_or_default();
                if !TOP_LEVEL_FIELDS.contains(&key) {
                    return Err(format!(
                        "unknown field `{key}`, expected one of {}",
                        TOP_LEVEL_FIELDS.join(", ")
                    ));
                }
            }
        }
        unknown_nested_fields(&raw)?;
        // From the text, not from `raw`: only then do errors carry the field's path.
        let manifest: TenantControlPlane = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(namespace) = &manifest.metadata.namespace {
            return Err(format!(
                "metadata.namespace {namespace:?}: TenantControlPlane is cluster-scoped; remove the namespace"
            ));
        }
        Ok(manifest)
    }
}

/// Fields of Kubernetes' own types in a manifest that serde would drop
/// without a word (k8s-openapi's types accept unknown fields): a typo in
/// `metadata` or in a toleration is refused instead.
fn unknown_nested_fields(raw: &serde_yaml::Value) -> Result<(), String> {
    let unknown = |path: &str, value: Option<&serde_yaml::Value>, known: &[&str]| {
        let Some(mapping) = value.and_then(serde_yaml::Value::as_mapping) else {
            return Ok(());
        };
        for key in mapping.keys() {
            let key = key.as_str().unwrap_or_default();
            if !known.contains(&key) {
                return Err(format!(
                    "{path}: unknown field `{key}`, expected one of {}",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    };
    unknown("metadata", raw.get("metadata"), &METADATA_FIELDS)?;
    let tolerations = raw
        .get("spec")
        .and_then(|spec| spec.get("tolerations"))
        .and_then(serde_yaml::Value::as_sequence);
    for (i, toleration) in tolerations.into_iter().flatten().enumerate() {
        unknown(
            &format!("spec.tolerations[{i}]"),
            Some(toleration),
            &TOLERATION_FIELDS,
        )?;
    }
    Ok(())
}

/// The fields a Toleration has: anything else in a manifest is a typo that
/// would be dropped without a word (`keyy: a` rendered `{}`).
pub const TOLERATION_FIELDS: [&str; 5] =
    ["key", "operator", "value", "effect", "tolerationSeconds"];

/// The fields of ObjectMeta a manifest may set.
pub const METADATA_FIELDS: [&str; 15] = [
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "generateName",
    "selfLink",
];
