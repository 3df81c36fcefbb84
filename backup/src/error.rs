//! One error type for the backup crate. Its [`Category`] says whether trying
//! again can help, so a CronJob's retries and the CLI's exit code follow it.
//! No variant ever carries a key, a credential or a signed URL.

use std::path::PathBuf;

/// What kind of failure it is, for retries and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// The input is wrong (a flag, a file, a key): fix it, retrying won't help.
    BadInput,
    /// A peer refused us: credentials, permissions, a missing bucket.
    Refused,
    /// A peer could not be reached or broke off: retrying may help.
    Unavailable,
    /// Data is damaged or does not belong here: never used, never retried.
    Corrupt,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    Input {
        field: &'static str,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("etcd at {endpoint}: {message}")]
    Etcd { endpoint: String, message: String },
    #[error("object store: {operation} {key}: {message}")]
    Store {
        operation: &'static str,
        key: String,
        message: String,
        category: Category,
    },
    #[error("snapshot {name}: {message}")]
    Snapshot { name: String, message: String },
    #[error("key material of {name}: {message}")]
    Keys { name: String, message: String },
}

impl Error {
    pub fn category(&self) -> Category {
        match self {
            Error::Input { .. } | Error::File { .. } => Category::BadInput,
            Error::Etcd { .. } => Category::Unavailable,
            Error::Store { category, .. } => *category,
            Error::Snapshot { .. } | Error::Keys { .. } => Category::Corrupt,
        }
    }

    pub(crate) fn input(field: &'static str, message: impl Into<String>) -> Self {
        Error::Input {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}
