//! The audit log of a tenant's apiserver: its policy writes JSON events to
//! the apiserver's stdout, which the harness keeps as the pod's log.

use serde_json::Value;

use crate::control_plane::ControlPlane;

/// Every audit event the first apiserver of `plane` has written so far.
pub fn audit_events(plane: &ControlPlane) -> Vec<Value> {
    std::fs::read_to_string(&plane.apiservers[0].log)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["kind"] == "Event" && event["apiVersion"] == "audit.k8s.io/v1")
        .collect()
}
