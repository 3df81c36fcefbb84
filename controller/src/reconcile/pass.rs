//! The state of one pass as its steps go: the status being built, what was
//! applied, the notes for Events, and how a step stops the pass ([`Halt`]
//! for a state a person must see, [`Stop::Failed`] for a retried failure).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use time::OffsetDateTime;

use super::conditions;
use super::context::{Context, PENDING_REQUEUE};
use super::error::ReconcileError;
use super::outcome::Note;
use crate::api::{ConditionType, Phase, TenantControlPlane, TenantControlPlaneStatus};
use crate::apply::ApplyReport;

/// What a pass has written and decided so far.
pub(super) struct PassState<'a> {
    pub tcp: &'a TenantControlPlane,
    pub ctx: &'a Context,
    pub now: OffsetDateTime,
    /// `now`, as conditions record it.
    at: Time,
    /// The status being built: the stored one, updated step by step.
    pub status: TenantControlPlaneStatus,
    /// Objects applied or pruned in the service cluster.
    pub report: ApplyReport,
    pub notes: Vec<Note>,
    /// The tunnel's node port on the kube-apiserver Service, as observed
    /// (service type NodePort): where agents connect when the spec fixes none.
    pub tunnel_node_port: Option<u16>,
}

impl<'a> PassState<'a> {
    pub fn new(tcp: &'a TenantControlPlane, ctx: &'a Context, now: OffsetDateTime) -> Self {
        let mut status = tcp.status.clone().unwrap_or_default();
        status.observed_generation = tcp.metadata.generation;
        PassState {
            tcp,
            ctx,
            now,
            at: Time(Timestamp::from_second(now.unix_timestamp()).expect("a representable time")),
            status,
            report: ApplyReport::default(),
            notes: Vec::new(),
            tunnel_node_port: None,
        }
    }

    /// Sets condition `type_` (for this generation, at `now`).
    pub fn condition(&mut self, type_: ConditionType, ok: bool, reason: &str, message: &str) {
        conditions::set(
            &mut self.status.conditions,
            type_.as_str(),
            ok,
            reason,
            message,
            self.tcp.metadata.generation,
            self.at.clone(),
        );
    }

    /// Records why the pass stopped short of Ready; returns when to look again.
    pub fn halt(&mut self, halt: Halt) -> Option<Duration> {
        if let Some(detail) = &halt.detail {
            let (type_, reason, message) = detail.as_ref();
            self.condition(*type_, false, reason, message);
        }
        self.condition(ConditionType::Ready, false, halt.reason, &halt.message);
        if let Some(phase) = halt.phase {
            self.status.phase = Some(phase.as_str().into());
        }
        halt.requeue
    }

    pub fn merge(&mut self, pass: ApplyReport) {
        self.report.applied.extend(pass.applied);
        self.report.unchanged += pass.unchanged;
        self.report.kept.extend(pass.kept);
        self.report.pruned.extend(pass.pruned);
    }
}

/// Why a pass stopped short of Ready: `Ready=False` with `reason` and
/// `message`, and (if given) the condition that says more and the phase.
pub(super) struct Halt {
    /// A condition set to False before `Ready`: (type, reason, message).
    detail: Option<Box<(ConditionType, &'static str, String)>>,
    reason: &'static str,
    message: String,
    /// `None` keeps the phase as it is.
    phase: Option<Phase>,
    /// `None`: wait for a change of the tenant (a person must act).
    requeue: Option<Duration>,
}

impl Halt {
    /// The spec or the stored state needs a person: phase Failed, no requeue.
    pub(super) fn failed(reason: &'static str, message: impl Into<String>) -> Self {
        Halt {
            detail: None,
            reason,
            message: message.into(),
            phase: Some(Phase::Failed),
            requeue: None,
        }
    }

    /// Something is still on its way: look again soon.
    pub(super) fn pending(reason: &'static str, message: impl Into<String>, phase: Phase) -> Self {
        Halt {
            detail: None,
            reason,
            message: message.into(),
            phase: Some(phase),
            requeue: Some(PENDING_REQUEUE),
        }
    }

    /// A change refused while what runs goes on: phase and requeue unchanged.
    pub(super) fn refused(reason: &'static str, message: impl Into<String>) -> Self {
        Halt {
            detail: None,
            reason,
            message: message.into(),
            phase: None,
            requeue: None,
        }
    }

    /// The phase stays as it is: what runs goes on (an access problem in
    /// the tenant, not a control plane that is still being made).
    pub(super) fn keeping_phase(mut self) -> Self {
        self.phase = None;
        self
    }

    pub(super) fn because(
        mut self,
        type_: ConditionType,
        reason: &'static str,
        message: String,
    ) -> Self {
        self.detail = Some(Box::new((type_, reason, message)));
        self
    }
}

/// How a step ends a pass early: a [`Halt`] (status says why) or a failure
/// (retried with back-off).
pub(super) enum Stop {
    Halt(Halt),
    Failed(ReconcileError),
}

impl From<Halt> for Stop {
    fn from(halt: Halt) -> Self {
        Stop::Halt(halt)
    }
}

impl From<ReconcileError> for Stop {
    fn from(error: ReconcileError) -> Self {
        Stop::Failed(error)
    }
}

impl From<crate::apply::ApplyError> for Stop {
    fn from(error: crate::apply::ApplyError) -> Self {
        Stop::Failed(error.into())
    }
}

impl From<gantry_renderer::RenderError> for Stop {
    fn from(error: gantry_renderer::RenderError) -> Self {
        Stop::Failed(error.into())
    }
}

/// How a pass that ran to its end (or halted) ends.
#[derive(Default)]
pub(super) struct End {
    pub requeue_after: Option<Duration>,
    /// Write requests sent to the tenant's own apiserver.
    pub tenant_writes: usize,
    /// When the join token will need replacing.
    pub token_renewal_due: Option<OffsetDateTime>,
}
