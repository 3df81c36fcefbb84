//! What one pass did and decided, and the Events it publishes.

use std::time::Duration;

use time::OffsetDateTime;

use crate::api::{ConditionType, Phase, TenantControlPlaneStatus};
use crate::apply::ApplyReport;

/// What one reconcile did and decided.
#[derive(Debug)]
pub struct Outcome {
    pub status: TenantControlPlaneStatus,
    pub requeue_after: Option<Duration>,
    /// Objects applied or pruned in the service cluster.
    pub applied: ApplyReport,
    pub status_written: bool,
    /// What this pass changed, for Kubernetes Events. Never holds a key or token.
    pub notes: Vec<Note>,
    /// Write requests sent to the tenant's own apiserver.
    pub tenant_writes: usize,
    /// When the join token will need replacing (set once the join Secret exists).
    pub token_renewal_due: Option<OffsetDateTime>,
}

impl Outcome {
    /// A pass that found the tenant Ready and changed nothing anywhere.
    pub fn is_steady(&self) -> bool {
        self.applied.writes() == 0
            && self.tenant_writes == 0
            && !self.status_written
            && self.requeue_after.is_none()
            && self.status.phase.as_deref() == Some(Phase::Ready.as_str())
    }
}

/// One thing a reconcile changed or refused, published as an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// PascalCase, e.g. `CertificatesIssued`.
    pub reason: String,
    pub message: String,
}

impl Note {
    pub(super) fn normal(reason: &str, message: impl Into<String>) -> Self {
        Note {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub(super) fn warning(reason: &str, message: impl Into<String>) -> Self {
        Note {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// `Kind/name, …` of `items`, cut to stay well within an Event's 1 kB note.
pub(super) fn list_for_note(items: &[String]) -> String {
    const MAX_SHOWN: usize = 12;
    let shown = items
        .iter()
        .take(MAX_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_SHOWN {
        format!("{shown} and {} more", items.len() - MAX_SHOWN)
    } else {
        shown
    }
}

/// Events for a status change: the phase reaching Ready, and a refusal
/// (invalid spec, refused upgrade, unusable PKI) the first time it is reported.
pub(super) fn status_notes(
    old: Option<&TenantControlPlaneStatus>,
    new: &TenantControlPlaneStatus,
) -> Vec<Note> {
    let ready = |status: Option<&TenantControlPlaneStatus>| {
        status.and_then(|s| s.condition(ConditionType::Ready).cloned())
    };
    let (before, after) = (ready(old), ready(Some(new)));
    let Some(after) = after else {
        return Vec::new();
    };
    let unchanged = before.as_ref().is_some_and(|b| {
        (&b.status, &b.reason, &b.message) == (&after.status, &after.reason, &after.message)
    });
    if unchanged {
        return Vec::new();
    }
    match after.reason.as_str() {
        "Ready" => vec![Note::normal("Ready", after.message)],
        "InvalidSpec" | "UpgradeRefused" | "CertificatesNotReady" | "InvalidEndpoint" => {
            vec![Note::warning(&after.reason, after.message)]
        }
        _ => Vec::new(),
    }
}
