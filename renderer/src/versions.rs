//! The tenant Kubernetes versions gantry supports and the images kubeadm runs
//! for each.
//!
//! Every value comes from the constants of that minor's own kubeadm
//! (`cmd/kubeadm/app/constants/constants.go` of k8s.io/kubernetes at the
//! default patch: `DefaultEtcdVersion`, `CoreDNSVersion`, `PauseVersion`).
//! `tests/versions.rs` checks the table against those files in the Go module
//! cache, for the versions `toolchain/kubernetes/` pins and the tests run.
//! A minor is listed only when the tests run its own kube-apiserver,
//! kube-controller-manager and kube-scheduler. The patch versions are
//! defaults only: a spec that names a full version (`1.36.5`) runs exactly
//! that version.

use std::fmt;
use std::str::FromStr;

/// One supported minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorRelease {
    pub minor: u32,
    /// The newest patch the tests run (the one `toolchain/kubernetes/` pins).
    pub default_patch: u32,
    /// etcd image tag (kubeadm's `-0` build suffix included).
    pub etcd: &'static str,
    pub coredns: &'static str,
    /// The sandbox ("pause") image tag the kubelet's runtime should use.
    pub pause: &'static str,
}

pub const SUPPORTED: [MinorRelease; 3] = [
    MinorRelease {
        minor: 35,
        default_patch: 4,
        etcd: "3.6.6-0",
        coredns: "v1.13.1",
        pause: "3.10.1",
    },
    MinorRelease {
        minor: 36,
        default_patch: 3,
        etcd: "3.6.8-0",
        coredns: "v1.14.2",
        pause: "3.10.2",
    },
    MinorRelease {
        minor: 37,
        default_patch: 2,
        etcd: "3.7.0-0",
        coredns: "v1.14.6",
        pause: "3.10.2",
    },
];

/// The version a tenant gets when it names only a minor, and the newest the
/// tests prove.
pub fn newest() -> KubeVersion {
    let release = SUPPORTED[SUPPORTED.len() - 1];
    KubeVersion {
        minor: release.minor,
        patch: release.default_patch,
    }
}

/// A tenant Kubernetes version, `1.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}.{}", self.minor, self.patch)
    }
}

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("is not a Kubernetes version such as 1.37.2 or 1.37")]
    Malformed,
    #[error("minor 1.{minor} is not supported; supported: {}", supported_list())]
    Unsupported { minor: u32 },
}

fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|r| format!("1.{}", r.minor))
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for KubeVersion {
    type Err = VersionError;

    /// `1.35.5`, `v1.35.5`, or `1.35` (the minor's default patch).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let digits = value.strip_prefix('v').unwrap_or(value);
        let parts: Vec<&str> = digits.split('.').collect();
        let number = |s: &str| -> Result<u32, VersionError> {
            if s.is_empty()
                || !s.bytes().all(|b| b.is_ascii_digit())
                || (s.len() > 1 && s.starts_with('0'))
            {
                return Err(VersionError::Malformed);
            }
            s.parse().map_err(|_| VersionError::Malformed)
        };
        let (major, minor, patch) = match parts.as_slice() {
            [major, minor] => (number(major)?, number(minor)?, None),
            [major, minor, patch] => (number(major)?, number(minor)?, Some(number(patch)?)),
            _ => return Err(VersionError::Malformed),
        };
        if major != 1 {
            return Err(VersionError::Malformed);
        }
        let release = release(minor).ok_or(VersionError::Unsupported { minor })?;
        Ok(KubeVersion {
            minor,
            patch: patch.unwrap_or(release.default_patch),
        })
    }
}

pub fn release(minor: u32) -> Option<&'static MinorRelease> {
    SUPPORTED.iter().find(|r| r.minor == minor)
}

/// Every image a tenant runs, under one image repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Images {
    pub kube_apiserver: String,
    pub kube_controller_manager: String,
    pub kube_scheduler: String,
    pub kube_proxy: String,
    pub etcd: String,
    pub coredns: String,
}

impl Images {
    /// The images kubeadm uses for `version`, under `repository`
    /// (CoreDNS lives under `coredns/` there, as on registry.k8s.io).
    pub fn for_version(version: KubeVersion, repository: &str) -> Self {
        let release = release(version.minor).expect("KubeVersion only holds supported minors");
        let repository = repository.trim_end_matches('/');
        let kube = |name: &str| format!("{repository}/{name}:v{version}");
        Images {
            kube_apiserver: kube("kube-apiserver"),
            kube_controller_manager: kube("kube-controller-manager"),
            kube_scheduler: kube("kube-scheduler"),
            kube_proxy: kube("kube-proxy"),
            etcd: format!("{repository}/etcd:{}", release.etcd),
            coredns: format!("{repository}/coredns/coredns:{}", release.coredns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_default_patches_and_refuse_the_rest() {
        assert_eq!(
            "1.35.5".parse::<KubeVersion>().unwrap().to_string(),
            "1.35.5"
        );
        assert_eq!(
            "v1.36.7".parse::<KubeVersion>().unwrap().to_string(),
            "1.36.7"
        );
        assert_eq!("1.37".parse::<KubeVersion>().unwrap().to_string(), "1.37.2");
        for bad in [
            "", "1", "1.35.x", "2.35.0", "1.35.5.1", "1.035.1", "latest", "1.35.-1",
        ] {
            assert_eq!(
                bad.parse::<KubeVersion>(),
                Err(VersionError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            "1.34.4".parse::<KubeVersion>(),
            Err(VersionError::Unsupported { minor: 34 })
        );
        assert_eq!(
            "1.38.0".parse::<KubeVersion>(),
            Err(VersionError::Unsupported { minor: 38 })
        );
    }

    #[test]
    fn images_follow_kubeadm_naming_under_any_repository() {
        let images = Images::for_version("1.35.5".parse().unwrap(), "registry.example.com/k8s/");
        assert_eq!(
            images.kube_apiserver,
            "registry.example.com/k8s/kube-apiserver:v1.35.5"
        );
        assert_eq!(images.etcd, "registry.example.com/k8s/etcd:3.6.6-0");
        assert_eq!(
            images.coredns,
            "registry.example.com/k8s/coredns/coredns:v1.13.1"
        );
    }

    #[test]
    fn the_table_covers_1_35_to_1_37_in_order_and_the_newest_is_the_default() {
        let minors: Vec<u32> = SUPPORTED.iter().map(|r| r.minor).collect();
        assert_eq!(minors, (35..=37).collect::<Vec<_>>());
        assert_eq!(newest().to_string(), "1.37.2");
    }
}
