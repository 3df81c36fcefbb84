//! Test helper, run by `tests/worker_node.rs` inside the tenant node's
//! network namespace: the operator's kubelet-serving approver
//! (`gantry_controller::kubelet_serving`), on its own, against one tenant.
//!
//! Usage: `gantry-kubelet-serving-approver KUBECONFIG SERVER APISERVER_CRT
//! CIDR...`: the tenant's kubeconfig (the operator's `operator.conf`), the
//! apiserver URL to use instead of its in-cluster one, its apiserver's
//! certificate and its Service and pod networks (what no node may have).
//! Runs until killed.

use std::sync::Arc;

use gantry_controller::kubelet_serving::{KubeletServingApprovers, Reserved};
use gantry_controller::reconcile::pipeline::client_from_kubeconfig;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let usage = "usage: gantry-kubelet-serving-approver KUBECONFIG SERVER APISERVER_CRT CIDR...";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, server, apiserver_crt, cidrs @ ..] = args.as_slice() else {
        panic!("{usage}");
    };
    let kubeconfig = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let cert = std::fs::read(apiserver_crt).unwrap_or_else(|e| panic!("read {apiserver_crt}: {e}"));
    let networks = cidrs.iter().map(|c| c.parse().expect(usage)).collect();
    let reserved = Reserved::of_tenant(&cert, networks).expect("the apiserver certificate reads");
    let client = client_from_kubeconfig(&kubeconfig, Some(server))
        .await
        .unwrap_or_else(|e| panic!("a client from {path}: {e}"));
    let approvers = Arc::new(KubeletServingApprovers::new());
    approvers.ensure("tenant", &kubeconfig, client, reserved);
    eprintln!("approving kubelet serving requests");
    std::future::pending::<()>().await;
}
