//! The operator's kubelet-serving approver on its own
//! (`tests/bin/kubelet_serving_approver.rs`), for clusters that no operator
//! runs: the tenants of `control_plane.rs` and the service cluster.

use std::path::{Path, PathBuf};

use crate::KillOnDrop;
use crate::control_plane::ControlPlane;

/// Starts the approver on `plane`'s node host, for that tenant: as the
/// operator does, with `operator.conf` (gantry-operator, whose RBAC the
/// tenant set holds), reserving its apiserver's names and `networks` (the
/// tenant's Service and pod networks). Without an operator nothing else
/// approves the kubelets' serving certificates, and the apiserver reaches no
/// kubelet without one.
pub fn start_kubelet_serving_approver(plane: &ControlPlane, networks: &[String]) -> KillOnDrop {
    KillOnDrop::spawn(
        plane
            .node
            .command(helper_bin("gantry-kubelet-serving-approver"))
            .arg(plane.bundle.join("operator.conf"))
            .arg(format!("https://{}:6443", plane.vip))
            .arg(plane.bundle.join("pki/apiserver.crt"))
            .args(networks),
    )
}

/// A helper binary of this package (`tests/bin/`), built beside the tests.
pub fn helper_bin(name: &str) -> PathBuf {
    // Cargo builds the package's binaries in the folder above the test executables'.
    let test_exe = std::env::current_exe().expect("the test's executable");
    let bin = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(bin.exists(), "{} is not built", bin.display());
    bin
}
