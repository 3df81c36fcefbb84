//! Render errors. Each names the field or the template at fault.

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A spec value the renderer refuses (e.g. an owned flag in `extraArgs`).
    #[error("{field} {value:?}: {reason}")]
    InvalidField {
        field: String,
        value: String,
        reason: String,
    },

    /// A template failed to render (a missing value in strict mode, a syntax error).
    #[error("template {template}: {reason}")]
    Template { template: String, reason: String },

    /// A template's output is not YAML, or a document lacks apiVersion/kind/metadata.name.
    #[error("template {template}: document {document}: {reason}")]
    Document {
        template: String,
        document: usize,
        reason: String,
    },

    /// A rendered object does not survive the round trip through its
    /// k8s-openapi type: a typo, an unknown field, or a value of the wrong type.
    #[error("template {template}: {kind} {name}: field {path}: {reason}")]
    Schema {
        template: String,
        kind: String,
        name: String,
        path: String,
        reason: String,
    },

    #[error("chart archive: {0}")]
    Chart(String),
}
