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

pub(super) fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let action = action.into();
    move |source| ReconcileError::Api { action, source }
}
