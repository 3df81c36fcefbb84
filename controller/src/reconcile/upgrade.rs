//! Version changes: one minor at a time, never down, in kubeadm's order —
//! etcd (if its image changes), then the apiserver, then controller-manager
//! and scheduler, then the tenant add-ons (kube-proxy, CoreDNS, kubeadm-config).
//! `status.version` moves only when the last step is done.

use gantry_renderer::KubeVersion;
use gantry_renderer::versions;

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
            plan(Some(v("1.33.6")), v("1.34.2")),
            UpgradeDecision::Upgrade {
                from: v("1.33.6"),
                to: v("1.34.2"),
                steps: vec![Etcd, ApiServer, ControllerManagerAndScheduler, TenantAddons]
            }
        );
        // 1.31 and 1.32 share etcd 3.5.24-0.
        assert_eq!(
            plan(Some(v("1.31.14")), v("1.32.10")),
            UpgradeDecision::Upgrade {
                from: v("1.31.14"),
                to: v("1.32.10"),
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
            plan(Some(v("1.33.6")), v("1.35.5")),
            UpgradeDecision::Refused(
                "upgrade from 1.33.6 to 1.35.5 skips 1.34: upgrade one minor at a time".into()
            )
        );
        assert_eq!(
            plan(Some(v("1.35.5")), v("1.34.2")),
            UpgradeDecision::Refused("downgrade from 1.35.5 to 1.34.2 is not supported".into())
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
}
