//! The version table (`gantry_renderer::versions::SUPPORTED`) is not copied by
//! hand: for every minor, its etcd, CoreDNS and pause tags must equal the
//! constants of that minor's own kubeadm source, read from the Go module
//! cache that `scripts/install-test-tools` filled when it built the pinned
//! `toolchain/kubernetes/v1.X` modules. The supported minors are exactly the
//! pinned ones (so each is proven by its own binaries), the default patch is
//! the pinned patch, and every etcd the table names is built.

use std::path::PathBuf;
use std::process::Command;

use gantry_renderer::versions::{SUPPORTED, newest};
use gantry_tests::repo_root;

/// `k8s.io/kubernetes vX.Y.Z` from a pinned module's go.mod.
fn pinned_kubernetes(minor_dir: &std::path::Path) -> String {
    let go_mod = std::fs::read_to_string(minor_dir.join("go.mod")).unwrap();
    go_mod
        .lines()
        .map(|line| line.trim().trim_start_matches("require ").trim())
        .find_map(|line| line.strip_prefix("k8s.io/kubernetes "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "{}: does not require k8s.io/kubernetes",
                minor_dir.display()
            )
        })
        .to_string()
}

fn go_module_cache() -> PathBuf {
    let output = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .expect("Go is not installed: see scripts/install-test-tools");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// The string value of `NAME = "value"` in a Go source file.
fn go_string_constant(source: &str, name: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .find_map(|line| {
            let rest = line.strip_prefix(name)?.trim_start().strip_prefix('=')?;
            Some(rest.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no constant {name} in kubeadm's constants.go"))
}

#[test]
fn the_version_table_is_each_minors_own_kubeadm_constants() {
    let mut pinned: Vec<(u32, String)> =
        std::fs::read_dir(repo_root().join("toolchain/kubernetes"))
            .unwrap()
            .map(|entry| {
                let dir = entry.unwrap().path();
                let version = pinned_kubernetes(&dir);
                let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
                (minor, version)
            })
            .collect();
    pinned.sort();
    let minors: Vec<u32> = pinned.iter().map(|(minor, _)| *minor).collect();
    let table: Vec<u32> = SUPPORTED.iter().map(|r| r.minor).collect();
    assert_eq!(
        table, minors,
        "supported minors must be exactly the pinned ones"
    );

    let cache = go_module_cache();
    for (release, (_, version)) in SUPPORTED.iter().zip(&pinned) {
        assert_eq!(
            format!("v1.{}.{}", release.minor, release.default_patch),
            *version,
            "the default patch is the one the tests run"
        );
        let constants = cache
            .join(format!("k8s.io/kubernetes@{version}"))
            .join("cmd/kubeadm/app/constants/constants.go");
        let source = std::fs::read_to_string(&constants).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/install-test-tools (it downloads the pinned modules)",
                constants.display()
            )
        });
        assert_eq!(
            release.etcd,
            go_string_constant(&source, "DefaultEtcdVersion"),
            "etcd of 1.{}",
            release.minor
        );
        assert_eq!(
            release.coredns,
            go_string_constant(&source, "CoreDNSVersion"),
            "CoreDNS of 1.{}",
            release.minor
        );
        assert_eq!(
            release.pause,
            go_string_constant(&source, "PauseVersion"),
            "pause of 1.{}",
            release.minor
        );

        let etcd = release.etcd.trim_end_matches("-0");
        assert!(
            repo_root()
                .join(format!("toolchain/etcd/v{etcd}/go.mod"))
                .exists(),
            "etcd {etcd} (kubeadm's for 1.{}) is not pinned: scripts/pin-toolchain etcd {etcd}",
            release.minor
        );
    }
    assert_eq!(format!("v{}", newest()), pinned.last().unwrap().1);
}
