//! Standard `metav1.Condition` bookkeeping: `lastTransitionTime` changes only
//! when the status flips, so an unchanged tenant produces an unchanged status
//! (and no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` and returns whether anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) -> bool {
    let status = if status { "True" } else { "False" }.to_string();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let unchanged = existing.status == status
                && existing.reason == reason
                && existing.message == message
                && existing.observed_generation == observed_generation;
            if unchanged {
                return false;
            }
            if existing.status != status {
                existing.last_transition_time = now;
            }
            existing.status = status;
            existing.reason = reason.into();
            existing.message = message.into();
            existing.observed_generation = observed_generation;
            true
        }
        None => {
            conditions.push(Condition {
                type_: type_.into(),
                status,
                reason: reason.into(),
                message: message.into(),
                observed_generation,
                last_transition_time: now,
            });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        assert!(set(
            &mut conditions,
            "Ready",
            false,
            "Provisioning",
            "etcd is starting",
            Some(1),
            at(100)
        ));
        assert!(
            !set(
                &mut conditions,
                "Ready",
                false,
                "Provisioning",
                "etcd is starting",
                Some(1),
                at(200)
            ),
            "no change, no write"
        );
        assert!(set(
            &mut conditions,
            "Ready",
            false,
            "Provisioning",
            "apiserver is starting",
            Some(1),
            at(300)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            at(100),
            "same status: time kept"
        );
        assert!(set(
            &mut conditions,
            "Ready",
            true,
            "Ready",
            "all components ready",
            Some(1),
            at(400)
        ));
        assert_eq!(conditions[0].last_transition_time, at(400));
        assert!(set(
            &mut conditions,
            "EtcdReady",
            true,
            "Ready",
            "3/3 members",
            Some(1),
            at(400)
        ));
        assert_eq!(conditions.len(), 2);
    }
}
