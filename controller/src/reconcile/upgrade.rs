//! Version changes: one minor at a time, never down, in kubeadm's order —
//! etcd (if its image changes), then the apiserver, then controller-manager
//! and scheduler, then the tenant add-ons (kube-proxy, CoreDNS, kubeadm-config).
//! `status.version` moves only when the last step is done.

use gantry_renderer::versions;
use gantry_renderer::{KubeVersion, Rendered, RenderedObject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeStep {
    Etcd,
    ApiServer,
    ControllerManagerAndScheduler,
    /// kube-proxy, CoreDNS and `kube-system/kubeadm-config` in the tenant.
    TenantAddons,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeDecision {
    /// Nothing runs yet: create everything at `to`.
    Install { to: KubeVersion },
    /// Already at the desired version.
    UpToDate,
    Upgrade {
        from: KubeVersion,
        to: KubeVersion,
        steps: Vec<UpgradeStep>,
    },
    /// Refused, with the reason for the condition message.
    Refused(String),
}

/// Plans the move from what runs (`status.version`) to `desired`.
pub fn plan(current: Option<KubeVersion>, desired: KubeVersion) -> UpgradeDecision {
    let Some(current) = current else {
        return UpgradeDecision::Install { to: desired };
    };
    if desired == current {
        return UpgradeDecision::UpToDate;
    }
    if desired < current {
        return UpgradeDecision::Refused(format!(
            "downgrade from {current} to {desired} is not supported"
        ));
    }
    if desired.minor > current.minor + 1 {
        return UpgradeDecision::Refused(format!(
            "upgrade from {current} to {desired} skips 1.{}: upgrade one minor at a time",
            current.minor + 1
        ));
    }
    let etcd_changes = versions::release(current.minor).map(|r| r.etcd)
        != versions::release(desired.minor).map(|r| r.etcd);
    let mut steps = Vec::new();
    if etcd_changes {
        steps.push(UpgradeStep::Etcd);
    }
    steps.extend([
        UpgradeStep::ApiServer,
        UpgradeStep::ControllerManagerAndScheduler,
        UpgradeStep::TenantAddons,
    ]);
    UpgradeDecision::Upgrade {
        from: current,
        to: desired,
        steps,
    }
}

impl UpgradeStep {
    /// The service-cluster workloads (kind, name) this step rolls; the tenant
    /// add-ons have none (they are applied through the tenant's apiserver).
    pub fn workloads(self) -> &'static [(&'static str, &'static str)] {
        match self {
            UpgradeStep::Etcd => &[("StatefulSet", "etcd")],
            UpgradeStep::ApiServer => &[("Deployment", "kube-apiserver")],
            UpgradeStep::ControllerManagerAndScheduler => &[
                ("Deployment", "kube-controller-manager"),
                ("Deployment", "kube-scheduler"),
            ],
            UpgradeStep::TenantAddons => &[],
        }
    }

    /// The step that rolls the workload `kind`/`name`, if any.
    pub fn of_workload(kind: &str, name: &str) -> Option<UpgradeStep> {
        [
            UpgradeStep::Etcd,
            UpgradeStep::ApiServer,
            UpgradeStep::ControllerManagerAndScheduler,
        ]
        .into_iter()
        .find(|step| step.workloads().contains(&(kind, name)))
    }
}

impl std::fmt::Display for UpgradeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpgradeStep::Etcd => "etcd",
            UpgradeStep::ApiServer => "kube-apiserver",
            UpgradeStep::ControllerManagerAndScheduler => {
                "kube-controller-manager and kube-scheduler"
            }
            UpgradeStep::TenantAddons => "kube-proxy, CoreDNS and kubeadm-config",
        })
    }
}

pub use crate::live::Rollout;

impl Rollout {
    /// Every replica runs `image` and is ready, no pod of the old spec is
    /// left (as `kubectl rollout status` waits for: a Deployment surges, so
    /// its last old pod outlives the new ones' readiness), and the workload
    /// controller has seen the latest spec.
    pub fn complete_at(&self, image: &str) -> bool {
        self.image == image
            && self.observed_generation >= self.generation
            && self.updated_replicas == self.replicas
            && self.current_replicas == self.replicas
            && self.ready_replicas == self.replicas
    }
}

/// The step an upgrade is at: the first of `steps` whose workloads have not
/// finished rolling to their target image. Steps before it are done; it and
/// the steps before it get the new version, later ones keep the old. The tenant
/// add-ons have no rollout to wait for, so the plan ends at them.
///
/// `target_image(kind, name)` is the image the new version renders;
/// `live(kind, name)` is the workload as it runs.
pub fn current_step(
    steps: &[UpgradeStep],
    target_image: impl Fn(&str, &str) -> Option<String>,
    live: impl Fn(&str, &str) -> Option<Rollout>,
) -> usize {
    steps
        .iter()
        .position(|step| {
            step.workloads().is_empty()
                || step.workloads().iter().any(|(kind, name)| {
                    let Some(image) = target_image(kind, name) else {
                        return false;
                    };
                    !live(kind, name).is_some_and(|rollout| rollout.complete_at(&image))
                })
        })
        .unwrap_or(steps.len())
}

/// JSON pointer to the image of a workload's first container.
pub const POD_IMAGE: &str = "/spec/template/spec/containers/0/image";

/// Where an upgrade stands, and the objects to apply for it.
pub struct UpgradeAt {
    pub step: UpgradeStep,
    /// The step is the last one: everything is at the new version.
    pub last: bool,
    /// The service set: the new version's objects for the steps reached, the
    /// running version's for the steps not reached yet.
    pub service: Vec<RenderedObject>,
    /// The tenant set: the new version's once the last step is reached.
    pub tenant: Vec<RenderedObject>,
}

/// Chooses, object by object, between `target` (the new version rendered)
/// and `running` (the running version rendered), from the rollouts `live`.
pub fn objects_at_step(
    steps: &[UpgradeStep],
    target: &Rendered,
    running: Rendered,
    live: &[(&str, &str, Rollout)],
) -> UpgradeAt {
    let target_image = |kind: &str, name: &str| {
        target
            .service
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .and_then(|o| o.value.pointer(POD_IMAGE).and_then(|i| i.as_str()))
            .map(str::to_string)
    };
    let index = current_step(steps, target_image, |kind, name| {
        live.iter()
            .find(|(k, n, _)| *k == kind && *n == name)
            .map(|(_, _, r)| r.clone())
    });
    let step = steps[index.min(steps.len() - 1)];
    let last = index + 1 >= steps.len();
    let reached = |kind: &str, name: &str| match UpgradeStep::of_workload(kind, name) {
        Some(workload_step) => steps
            .iter()
            .position(|s| *s == workload_step)
            .is_none_or(|position| position <= index),
        None => true,
    };
    let service = target
        .service
        .iter()
        .map(|object| {
            if reached(&object.kind, &object.name) {
                object.clone()
            } else {
                running
                    .service
                    .iter()
                    .find(|o| o.kind == object.kind && o.name == object.name)
                    .cloned()
                    .unwrap_or_else(|| object.clone())
            }
        })
        .collect();
    let tenant = if last {
        target.tenant.clone()
    } else {
        running.tenant
    };
    UpgradeAt {
        step,
        last,
        service,
        tenant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        s.parse().unwrap()
    }

    #[test]
    fn one_minor_up_rolls_in_kubeadm_order_and_etcd_only_when_its_image_changes() {
        use UpgradeStep::*;
        assert_eq!(
            plan(Some(v("1.35.4")), v("1.36.3")),
            UpgradeDecision::Upgrade {
                from: v("1.35.4"),
                to: v("1.36.3"),
                steps: vec![Etcd, ApiServer, ControllerManagerAndScheduler, TenantAddons]
            }
        );
        // A patch keeps the minor's etcd.
        assert_eq!(
            plan(Some(v("1.36.1")), v("1.36.3")),
            UpgradeDecision::Upgrade {
                from: v("1.36.1"),
                to: v("1.36.3"),
                steps: vec![ApiServer, ControllerManagerAndScheduler, TenantAddons]
            }
        );
        assert!(
            matches!(plan(Some(v("1.35.5")), v("1.35.8")), UpgradeDecision::Upgrade { ref steps, .. } if steps[0] == ApiServer)
        );
    }

    #[test]
    fn skips_and_downgrades_are_refused_with_a_reason() {
        assert_eq!(
            plan(Some(v("1.35.5")), v("1.37.2")),
            UpgradeDecision::Refused(
                "upgrade from 1.35.5 to 1.37.2 skips 1.36: upgrade one minor at a time".into()
            )
        );
        assert_eq!(
            plan(Some(v("1.36.3")), v("1.35.5")),
            UpgradeDecision::Refused("downgrade from 1.36.3 to 1.35.5 is not supported".into())
        );
        assert_eq!(
            plan(Some(v("1.35.8")), v("1.35.5")),
            UpgradeDecision::Refused("downgrade from 1.35.8 to 1.35.5 is not supported".into())
        );
    }

    #[test]
    fn nothing_running_installs_and_equal_versions_do_nothing() {
        assert_eq!(
            plan(None, v("1.35.5")),
            UpgradeDecision::Install { to: v("1.35.5") }
        );
        assert_eq!(
            plan(Some(v("1.35.5")), v("1.35.5")),
            UpgradeDecision::UpToDate
        );
    }

    fn rolled(image: &str) -> Rollout {
        Rollout {
            image: image.into(),
            generation: 2,
            observed_generation: 2,
            replicas: 3,
            current_replicas: 3,
            updated_replicas: 3,
            ready_replicas: 3,
        }
    }

    #[test]
    fn the_current_step_is_the_first_whose_workloads_have_not_rolled() {
        use UpgradeStep::*;
        let steps = [Etcd, ApiServer, ControllerManagerAndScheduler, TenantAddons];
        let target = |kind: &str, name: &str| Some(format!("new/{kind}/{name}"));
        let all_old = |kind: &str, name: &str| Some(rolled(&format!("old/{kind}/{name}")));
        assert_eq!(current_step(&steps, target, all_old), 0, "etcd first");

        // etcd applied at the new image but one member not yet updated: still etcd.
        let etcd_rolling = |kind: &str, name: &str| {
            let mut r = rolled(&format!(
                "{}/{kind}/{name}",
                if name == "etcd" { "new" } else { "old" }
            ));
            if name == "etcd" {
                r.updated_replicas = 2;
            }
            Some(r)
        };
        assert_eq!(current_step(&steps, target, etcd_rolling), 0);
        // The spec is newer than what the StatefulSet controller has seen: still etcd.
        let not_observed = |kind: &str, name: &str| {
            let mut r = rolled(&format!(
                "{}/{kind}/{name}",
                if name == "etcd" { "new" } else { "old" }
            ));
            r.observed_generation = 1;
            Some(r)
        };
        assert_eq!(current_step(&steps, target, not_observed), 0);
        // Every new pod ready, but an old one of the surge still counted: still etcd.
        let old_pod_left = |kind: &str, name: &str| {
            let mut r = rolled(&format!(
                "{}/{kind}/{name}",
                if name == "etcd" { "new" } else { "old" }
            ));
            if name == "etcd" {
                r.current_replicas = 4;
            }
            Some(r)
        };
        assert_eq!(current_step(&steps, target, old_pod_left), 0);

        let etcd_done = |kind: &str, name: &str| {
            Some(rolled(&format!(
                "{}/{kind}/{name}",
                if name == "etcd" { "new" } else { "old" }
            )))
        };
        assert_eq!(
            current_step(&steps, target, etcd_done),
            1,
            "then the apiserver"
        );

        // The scheduler is done but the controller-manager is not: both wait.
        let one_of_two = |kind: &str, name: &str| {
            Some(rolled(&format!(
                "{}/{kind}/{name}",
                if name == "kube-controller-manager" {
                    "old"
                } else {
                    "new"
                }
            )))
        };
        assert_eq!(current_step(&steps, target, one_of_two), 2);

        let all_new = |kind: &str, name: &str| Some(rolled(&format!("new/{kind}/{name}")));
        assert_eq!(
            current_step(&steps, target, all_new),
            3,
            "the add-ons come last"
        );
        // A missing workload has not rolled.
        assert_eq!(current_step(&steps, target, |_: &str, _: &str| None), 0);
    }

    #[test]
    fn workloads_map_to_their_step() {
        assert_eq!(
            UpgradeStep::of_workload("Deployment", "kube-scheduler"),
            Some(UpgradeStep::ControllerManagerAndScheduler)
        );
        assert_eq!(
            UpgradeStep::of_workload("StatefulSet", "etcd"),
            Some(UpgradeStep::Etcd)
        );
        assert_eq!(UpgradeStep::of_workload("Service", "etcd"), None);
    }
}
