//! The one error a spec value gets: the field's path, the value as written
//! and why it cannot be used. Below `resolve` and `spec_rules`, which both
//! make it.

/// A spec value that cannot be used, with the field's path in the manifest
/// and the value as the manifest spells it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {}: {reason}", quoted(.value))]
pub struct SpecError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

/// The longest value an error quotes whole. A longer one (a 10 MB
/// annotation) is cut, with its length said, so the error stays one
/// readable line.
pub(crate) const MAX_QUOTED: usize = 200;

/// `value` in quotes, with escapes (`\n`) as Rust's `{:?}` writes them; cut
/// after [`MAX_QUOTED`] bytes (at a character boundary).
fn quoted(value: &str) -> String {
    if value.len() <= MAX_QUOTED {
        return format!("{value:?}");
    }
    let mut end = MAX_QUOTED;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &value[..end], value.len())
}

/// The error for `field`, quoting `value` as the manifest spells it.
pub(crate) fn invalid(
    field: impl Into<String>,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> SpecError {
    SpecError {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}
