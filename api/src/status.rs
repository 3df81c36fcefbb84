//! The typed vocabulary of `status`: phases and condition types, and
//! lookups on the stored status (whose fields stay strings, so a newer
//! gantry's values never fail to parse).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::tenant::TenantControlPlaneStatus;

/// Where a tenant stands: `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its endpoint (a LoadBalancer address, a node).
    Pending,
    /// Masters being created, or the tenant cluster being bootstrapped.
    Provisioning,
    /// A version change rolling, one step at a time.
    Upgrading,
    Ready,
    /// Serving, but etcd has no quorum.
    Degraded,
    /// A person must act: the spec, the endpoint or the PKI is unusable.
    Failed,
    /// etcd is being restored from a snapshot (`gantry.dev/restore-from`).
    Restoring,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Upgrading => "Upgrading",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
            Phase::Restoring => "Restoring",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The conditions gantry sets in `status.conditions`, in the order a tenant
/// passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    CertificatesReady,
    EndpointReady,
    EtcdReady,
    APIServerReady,
    TenantBootstrapped,
    /// The summary: the control plane serves and nodes can join.
    Ready,
    /// Set while backups are on: the last backup succeeded and is no older
    /// than twice the schedule's interval. Not part of `Ready`: a tenant
    /// serves without it.
    BackupsCurrent,
    /// Set while backups are on, from what each backup run found: False
    /// when etcd raised NOSPACE (its quota full, every write refused).
    EtcdBelowQuota,
}

impl ConditionType {
    pub const ALL: [ConditionType; 6] = [
        ConditionType::CertificatesReady,
        ConditionType::EndpointReady,
        ConditionType::EtcdReady,
        ConditionType::APIServerReady,
        ConditionType::TenantBootstrapped,
        ConditionType::Ready,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::CertificatesReady => "CertificatesReady",
            ConditionType::EndpointReady => "EndpointReady",
            ConditionType::EtcdReady => "EtcdReady",
            ConditionType::APIServerReady => "APIServerReady",
            ConditionType::TenantBootstrapped => "TenantBootstrapped",
            ConditionType::Ready => "Ready",
            ConditionType::BackupsCurrent => "BackupsCurrent",
            ConditionType::EtcdBelowQuota => "EtcdBelowQuota",
        }
    }
}

impl TenantControlPlaneStatus {
    /// The condition of type `type_`, if set.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }

    /// Whether condition `type_` is set and True.
    pub fn is_true(&self, type_: ConditionType) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }

    /// `status.phase`, or `Pending` before the first pass wrote one.
    pub fn phase_or_pending(&self) -> &str {
        self.phase.as_deref().unwrap_or(Phase::Pending.as_str())
    }
}
