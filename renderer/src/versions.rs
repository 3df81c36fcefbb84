//! The tenant Kubernetes versions gantry supports and the images kubeadm runs
//! for each.
//!
//! Sources (kubeadm's `cmd/kubeadm/app/constants/constants.go`, maps
//! `SupportedEtcdVersion` and `CoreDNSVersion`, as released for each minor):
//! etcd 3.5.24-0 for 1.31–1.33 and 3.6.5-0 for 1.34 (release-1.34 map);
//! 3.6.6-0 and CoreDNS v1.13.1 for 1.35 (v1.35.8 constants); 3.6.9-0 for 1.36
//! (the 1.36 map); CoreDNS v1.11.3 for 1.31–1.32, v1.12.0 for 1.33, v1.12.1
//! for 1.34. CoreDNS for 1.36 is carried over from 1.35 (not found in a
//! released 1.36 constants file). The patch versions are defaults only: a
//! spec that names a full version (`1.34.7`) runs exactly that version.

use std::fmt;
use std::str::FromStr;

/// One supported minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorRelease {
    pub minor: u32,
    pub default_patch: u32,
    /// etcd image tag (kubeadm's `-0` build suffix included).
    pub etcd: &'static str,
    pub coredns: &'static str,
}

pub const SUPPORTED: [MinorRelease; 6] = [
    MinorRelease {
        minor: 31,
        default_patch: 14,
        etcd: "3.5.24-0",
        coredns: "v1.11.3",
    },
    MinorRelease {
        minor: 32,
        default_patch: 10,
        etcd: "3.5.24-0",
        coredns: "v1.11.3",
    },
    MinorRelease {
        minor: 33,
        default_patch: 6,
        etcd: "3.5.24-0",
        coredns: "v1.12.0",
    },
    MinorRelease {
        minor: 34,
        default_patch: 2,
        etcd: "3.6.5-0",
        coredns: "v1.12.1",
    },
    MinorRelease {
        minor: 35,
        default_patch: 8,
        etcd: "3.6.6-0",
        coredns: "v1.13.1",
    },
    MinorRelease {
        minor: 36,
        default_patch: 0,
        etcd: "3.6.9-0",
        coredns: "v1.13.1",
    },
];

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
    #[error("is not a Kubernetes version such as 1.35.5 or 1.35")]
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
            "v1.34.7".parse::<KubeVersion>().unwrap().to_string(),
            "1.34.7"
        );
        assert_eq!(
            "1.31".parse::<KubeVersion>().unwrap().to_string(),
            "1.31.14"
        );
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
            "1.30.4".parse::<KubeVersion>(),
            Err(VersionError::Unsupported { minor: 30 })
        );
        assert_eq!(
            "1.37.0".parse::<KubeVersion>(),
            Err(VersionError::Unsupported { minor: 37 })
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
    fn the_table_covers_1_31_to_1_36_in_order() {
        let minors: Vec<u32> = SUPPORTED.iter().map(|r| r.minor).collect();
        assert_eq!(minors, (31..=36).collect::<Vec<_>>());
    }
}
