//! Which reconciles are running, and since when: `/healthz` fails when one
//! has run far longer than a pass may (the per-pass timeout should have
//! ended it), so a wedged operator is restarted instead of looking healthy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reconciles in flight, by tenant.
#[derive(Debug, Default)]
pub struct InFlight {
    started: Mutex<HashMap<String, Instant>>,
}

/// Marks a reconcile as running until dropped.
pub struct Running {
    in_flight: Arc<InFlight>,
    tenant: String,
}

impl InFlight {
    /// Records that `tenant`'s reconcile starts now.
    pub fn start(self: &Arc<Self>, tenant: &str) -> Running {
        self.started
            .lock()
            .expect("not poisoned")
            .insert(tenant.to_string(), Instant::now());
        Running {
            in_flight: self.clone(),
            tenant: tenant.to_string(),
        }
    }

    /// The reconcile that has run longest, if it has run longer than `limit`.
    pub fn stuck(&self, now: Instant, limit: Duration) -> Option<(String, Duration)> {
        self.started
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(tenant, started)| (tenant.clone(), now.saturating_duration_since(*started)))
            .filter(|(_, running)| *running > limit)
            .max_by_key(|(_, running)| *running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.in_flight
            .started
            .lock()
            .expect("not poisoned")
            .remove(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_running_past_the_limit_is_stuck_until_it_ends() {
        let in_flight = Arc::new(InFlight::default());
        let running = in_flight.start("tenant-a");
        let now = Instant::now();
        assert_eq!(in_flight.stuck(now, Duration::from_secs(60)), None);
        let later = now + Duration::from_secs(600);
        let (tenant, for_how_long) = in_flight.stuck(later, Duration::from_secs(60)).unwrap();
        assert_eq!(tenant, "tenant-a");
        assert!(for_how_long >= Duration::from_secs(600));
        drop(running);
        assert_eq!(in_flight.stuck(later, Duration::from_secs(60)), None);
    }
}
