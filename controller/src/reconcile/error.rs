//! Why a pass failed. A failure is retried with back-off; a spec or state
//! that needs a person is not a failure but a status (see `steps::Halt`).

use gantry_renderer::RenderError;

use crate::apply::ApplyError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("render: {0}")]
    Render(#[from] RenderError),
    /// Not an error of the tenant: something is still in progress (e.g. the
    /// namespace is terminating), so the finalizer stays and the reconcile is retried.
    #[error("waiting: {0}")]
    Waiting(String),
    /// The pass took longer than the operator allows one to take.
    #[error("the pass took longer than {} s and was stopped", .0.as_secs())]
    TimedOut(std::time::Duration),
}

/// What kind of failure a pass ended with. It decides the retry, the log
/// level and the metrics label (`gantry_reconcile_errors_total{category}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCategory {
    /// Worth retrying with back-off: the API server or a tenant did not
    /// answer, or answered with an error that may pass.
    Transient,
    /// Not a failure: something is still on its way (a namespace
    /// terminating). Retried soon, and not counted as a failure.
    Waiting,
    /// Another writer got there first (409). Retried soon with what is live.
    Conflict,
    /// gantry made something the API server refuses (400, 422), or rendered
    /// an object it cannot use: retried with back-off, logged as an error.
    Bug,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Transient => "Transient",
            ErrorCategory::Waiting => "Waiting",
            ErrorCategory::Conflict => "Conflict",
            ErrorCategory::Bug => "Bug",
        }
    }

    /// The category of an API error.
    pub fn of_api(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if status.code == 409 => ErrorCategory::Conflict,
            kube::Error::Api(status) if matches!(status.code, 400 | 422) => ErrorCategory::Bug,
            _ => ErrorCategory::Transient,
        }
    }
}

impl ReconcileError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            ReconcileError::Apply(ApplyError::Api { source, .. })
            | ReconcileError::Api { source, .. } => ErrorCategory::of_api(source),
            ReconcileError::Apply(ApplyError::Malformed(_)) | ReconcileError::Render(_) => {
                ErrorCategory::Bug
            }
            ReconcileError::Waiting(_) => ErrorCategory::Waiting,
            ReconcileError::TimedOut(_) => ErrorCategory::Transient,
        }
    }
}

pub(super) fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let action = action.into();
    move |source| ReconcileError::Api { action, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused", "Refused")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn categories_follow_what_a_retry_can_change() {
        let conflict = ReconcileError::Apply(ApplyError::Api {
            action: "create",
            object: "Secret/ca".into(),
            source: api(409),
        });
        assert_eq!(conflict.category(), ErrorCategory::Conflict);
        let invalid = ReconcileError::Api {
            action: "apply status".into(),
            source: api(422),
        };
        assert_eq!(invalid.category(), ErrorCategory::Bug);
        let unavailable = ReconcileError::Api {
            action: "get".into(),
            source: api(503),
        };
        assert_eq!(unavailable.category(), ErrorCategory::Transient);
        let waiting = ReconcileError::Waiting("namespace tcp-a is still terminating".into());
        assert_eq!(waiting.category(), ErrorCategory::Waiting);
        let slow = ReconcileError::TimedOut(std::time::Duration::from_secs(120));
        assert_eq!(slow.category(), ErrorCategory::Transient);
    }
}
