//! Test helper, run by `tests/worker_node.rs` inside the tenant node's
//! network namespace: the operator's kubelet-serving approver
//! (`gantry_controller::kubelet_serving`), on its own, against one tenant.
//!
//! Usage: `gantry-kubelet-serving-approver KUBECONFIG`. Runs until killed.

use std::sync::Arc;

use gantry_controller::kubelet_serving::KubeletServingApprovers;
use gantry_controller::reconcile::pipeline::client_from_kubeconfig;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: gantry-kubelet-serving-approver KUBECONFIG");
    let kubeconfig = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let client = client_from_kubeconfig(&kubeconfig, None)
        .await
        .unwrap_or_else(|e| panic!("a client from {path}: {e}"));
    let approvers = Arc::new(KubeletServingApprovers::new());
    approvers.ensure("tenant", &kubeconfig, client);
    eprintln!("approving kubelet serving requests");
    std::future::pending::<()>().await;
}
