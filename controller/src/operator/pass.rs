//! One reconcile as the Controller runs it: the timeout, the metrics, the
//! Events for what changed, and the retry policy by error category.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::events::Events;
use super::metrics::{Metrics, PassResult};
use super::progress::InFlight;
use crate::api::TenantControlPlane;
use crate::reconcile::pipeline::{self, Context, ErrorCategory, Pass, ReconcileError};
use crate::reconcile::steady::SteadyState;

/// Shared by every reconcile.
pub(super) struct State {
    pub ctx: Context,
    pub steady: Arc<SteadyState>,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    /// Consecutive failures per tenant, for the back-off.
    pub failures: Mutex<HashMap<String, u32>>,
    pub in_flight: Arc<InFlight>,
    pub reconcile_timeout: Duration,
}

pub(super) async fn reconcile(
    tcp: Arc<TenantControlPlane>,
    state: Arc<State>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    let name = tcp.name_any();
    let span = tracing::info_span!("reconcile", tenant = %name);
    async move {
        let started = Instant::now();
        let reference = tcp.object_ref(&());
        let deleting = tcp.metadata.deletion_timestamp.is_some();
        let _running = state.in_flight.start(&name);
        let pass = pipeline::reconcile_tenant(
            tcp,
            &state.ctx,
            &state.steady,
            time::OffsetDateTime::now_utc(),
        );
        let limit = state.reconcile_timeout;
        let result = match tokio::time::timeout(limit, pass).await {
            Ok(result) => result,
            Err(_) => Err(kube::runtime::finalizer::Error::ApplyFailed(
                ReconcileError::TimedOut(limit),
            )),
        };
        let seconds = started.elapsed().as_secs_f64();
        let pass = match result {
            Ok(pass) => pass,
            Err(error) => {
                state.metrics.failed(category_of(&error), seconds);
                return Err(error);
            }
        };
        state.failures.lock().expect("not poisoned").remove(&name);
        match pass {
            Pass::Skipped { requeue_after } => {
                state.metrics.reconciled(PassResult::Skipped, seconds);
                tracing::trace!("settled; skipped");
                Ok(Action::requeue(requeue_after))
            }
            Pass::Full { action, outcome } => {
                state.metrics.reconciled(PassResult::Full, seconds);
                if deleting {
                    state.metrics.set_phase(&name, None);
                    tracing::info!("cleaned up");
                }
                if let Some(outcome) = outcome {
                    state
                        .metrics
                        .set_phase(&name, outcome.status.phase.as_deref());
                    tracing::info!(
                        phase = outcome.status.phase.as_deref().unwrap_or(""),
                        writes = outcome.applied.writes() + outcome.tenant_writes,
                        status_written = outcome.status_written,
                        ms = seconds * 1000.0,
                        "reconciled"
                    );
                    for note in &outcome.notes {
                        let published = state
                            .events
                            .publish(note.warning, &note.reason, &note.message, &reference)
                            .await;
                        if let Err(error) = published {
                            tracing::warn!(%error, reason = %note.reason, "publishing an event");
                        }
                    }
                }
                Ok(action)
            }
        }
    }
    .instrument(span)
    .await
}

/// Exponential back-off per tenant: 5 s doubling up to 5 min, with ±50 % jitter
/// so that tenants failing together (an API outage) do not retry together.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = 5.0 * 2f64.powi(failures.saturating_sub(1).min(6) as i32);
    Duration::from_secs_f64(base.min(300.0) * (0.5 + jitter.clamp(0.0, 1.0)))
}

/// The category of a failed reconcile, finalizer steps included.
fn category_of(error: &kube::runtime::finalizer::Error<ReconcileError>) -> ErrorCategory {
    use kube::runtime::finalizer::Error;
    match error {
        Error::ApplyFailed(error) | Error::CleanupFailed(error) => error.category(),
        // The finalizer patch tests the object's current finalizers: a 422
        // there means the object changed under a stale copy, a race.
        Error::AddFinalizer(kube::Error::Api(status))
        | Error::RemoveFinalizer(kube::Error::Api(status))
            if status.code == 422 =>
        {
            ErrorCategory::Conflict
        }
        Error::AddFinalizer(error) | Error::RemoveFinalizer(error) => ErrorCategory::of_api(error),
        Error::UnnamedObject | Error::InvalidFinalizer => ErrorCategory::Bug,
    }
}

/// Retries by category: a wait or a conflict soon and without counting a
/// failure (a namespace still terminating would otherwise hold the finalizer
/// for minutes of back-off after it is gone); a failure with back-off.
pub(super) fn error_policy(
    tcp: Arc<TenantControlPlane>,
    error: &kube::runtime::finalizer::Error<ReconcileError>,
    state: Arc<State>,
) -> Action {
    let name = tcp.name_any();
    let category = category_of(error);
    if matches!(category, ErrorCategory::Waiting | ErrorCategory::Conflict) {
        let delay = backoff(1, rand::random::<f64>());
        tracing::info!(tenant = %name, %error, category = category.as_str(), retry_in_s = delay.as_secs_f64(), "retrying soon");
        return Action::requeue(delay);
    }
    let failures = {
        let mut failures = state.failures.lock().expect("not poisoned");
        let count = failures.entry(name.clone()).or_default();
        *count += 1;
        *count
    };
    let delay = backoff(failures, rand::random::<f64>());
    let retry_in_s = delay.as_secs_f64();
    if category == ErrorCategory::Bug {
        tracing::error!(tenant = %name, %error, category = category.as_str(), failures, retry_in_s, "reconcile failed");
    } else {
        tracing::warn!(tenant = %name, %error, category = category.as_str(), failures, retry_in_s, "reconcile failed");
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5s_to_5min_with_jitter() {
        let middle = |failures| backoff(failures, 0.5).as_secs();
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 7, 8, 50].map(middle),
            [5, 10, 20, 40, 80, 160, 300, 300, 300]
        );
        assert_eq!(backoff(1, 0.0), Duration::from_millis(2500));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(7500));
        assert_eq!(backoff(20, 1.0), Duration::from_secs(450));
    }
}
