//! Typed errors. None of them ever carries key material or a token secret.

use std::fmt;

/// Bad input: names the field (this crate's name for it, e.g. `dns-domain`)
/// and the value. Callers say it in their own words: the CLI as the flag
/// `--dns-domain`, the operator as the spec path `spec.networking.dnsDomain`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Everything that can go wrong while issuing or loading a PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),

    /// An existing file that must not be replaced (a CA, the service-account
    /// key) could not be read; regenerating it would break every certificate
    /// or token that trusts it, so the caller has to look.
    #[error(
        "{path}: {reason}; refusing to replace it (a new one would invalidate everything it signed)"
    )]
    UnreadableAuthority { path: String, reason: String },

    /// A file that is part of a pair exists without its other half.
    #[error("{present} exists but {missing} does not; restore it or remove both")]
    IncompletePair { present: String, missing: String },

    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },

    #[error("key generation failed for {path}: {reason}")]
    KeyGeneration { path: String, reason: String },

    #[error("signing {path} failed: {reason}")]
    Signing { path: String, reason: String },
}

impl PkiError {
    pub(crate) fn malformed(path: impl Into<String>, reason: impl fmt::Display) -> Self {
        PkiError::Malformed {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
