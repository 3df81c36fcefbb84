//! A real worker joins a running tenant (see `control_plane.rs`) with the
//! exact `kubeadm join` command gantry produced, and turns Ready.
//!
//! The worker is a node of the test's own (`support/worker.rs`): Debian's
//! containerd and runc, the CNI bridge plugin, the locally built pause image,
//! and the real kubelet of the newest minor, started as kubeadm's systemd
//! unit would start it. kubeadm runs without `--dry-run`: it writes the
//! node's configuration, the kubelet does its TLS bootstrap (a CSR that the
//! controller-manager approves through gantry's RBAC and signs with the
//! tenant CA), registers its Node, and the Node turns Ready. Then a pod is
//! scheduled onto it and runs. The apiserver verifies kubelets' serving
//! certificates against the tenant CA, so its logs are out of reach until
//! the operator's approver (`gantry-kubelet-serving-approver`, the
//! operator's own code on its own) approves the kubelet's serving request;
//! then the apiserver reaches the kubelet for the logs.
//!
//! The wrong-pin and deleted-token refusals are in `join.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_tests::approver::start_kubelet_serving_approver;
use gantry_tests::control_plane::{
    ControlPlane, TenantShape, kubernetes_bin, one_at_a_time, pod_cidr, start_small_tenant,
};
use gantry_tests::images::image;
use gantry_tests::worker::Worker;
use gantry_tests::{KillOnDrop, output_text, run_ok, tool, wait_until};

// The join runs as `Worker::kubeadm_join` says. kubeadm also warns, without
// failing, that containerd 1.6 lacks the CRI method RuntimeConfig, and that
// the kubelet's fallback to the configured cgroup driver "will be removed in
// 1.38": a 1.38 worker will need containerd 2. And that no systemd unit of
// the kubelet is enabled: the test starts the kubelet the way that unit would.

#[test]
fn a_real_worker_joins_with_the_exact_join_command_turns_ready_and_runs_a_pod() {
    let _one = one_at_a_time();
    let version = gantry_renderer::versions::newest().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let shape = TenantShape {
        name: "tenant-w",
        version: &version,
        subnet: 180,
        etcd: 1,
        apiservers: 1,
    };
    let mut plane = start_small_tenant(tmp.path(), shape.name, shape.subnet);
    let bundle = plane.bundle.clone();

    let pause = gantry_renderer::versions::release(gantry_renderer::versions::newest().minor)
        .unwrap()
        .pause;
    let kubernetes = kubernetes_bin(&version);
    let mut worker = Worker::start(
        &mut plane.network,
        "worker-0",
        50,
        &pod_cidr(&shape),
        &tmp.path().join("worker-0"),
        &[image(&format!("pause-{pause}.tar"))],
    );
    worker.start_kubelet_service(&kubernetes.join("kubelet"));

    let command = std::fs::read_to_string(bundle.join("join-command")).unwrap();
    let started = Instant::now();
    let joined = worker.kubeadm_join(&command, &kubernetes);
    assert!(
        joined.status.success()
            && output_text(&joined).contains("This node has joined the cluster"),
        "kubeadm join: {}\n{}\n{}",
        output_text(&joined),
        worker.logs(),
        plane.logs()
    );
    let joined_after = started.elapsed();

    let ready = plane.wait_kubectl(
        "the worker's Node turns Ready",
        Duration::from_secs(120),
        "admin.conf",
        &[
            "get",
            "node",
            "worker-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out.trim() == "True",
    );
    assert_eq!(ready.trim(), "True");
    eprintln!(
        "TIMING {version}: kubeadm join to exit {:.1} s, to Node Ready {:.1} s",
        joined_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    node_credentials_come_from_the_tenant_ca(&plane, &worker, tmp.path());
    let node_cidr = plane.kubectl_ok(
        "admin.conf",
        &["get", "node", "worker-0", "-o", "jsonpath={.spec.podCIDR}"],
    );
    assert_eq!(
        node_cidr,
        pod_cidr(&shape),
        "the controller-manager allocates the node's pod range"
    );
    // The tenant's Service network (the default) and pod network: no node's.
    let networks = ["10.96.0.0/12".to_string(), pod_cidr(&shape)];
    a_pod_runs_and_its_logs_are_reachable(&plane, &worker, pause, tmp.path(), &networks);
}

/// The kubelet's client certificate was signed by the controller-manager
/// with the tenant CA, for `system:node:worker-0`, after the CSR was
/// approved by the bootstrap approver (through gantry's RBAC).
fn node_credentials_come_from_the_tenant_ca(plane: &ControlPlane, worker: &Worker, work: &Path) {
    let pem = worker
        .read("/var/lib/kubelet/pki/kubelet-client-current.pem")
        .expect("the kubelet wrote its client certificate");
    let certificate = signed_by_the_tenant_ca(plane, work, "kubelet-client.pem", &pem);
    let subject = run_ok(
        std::process::Command::new(tool("openssl"))
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&certificate),
    );
    assert!(
        subject.contains("CN=system:node:worker-0") && subject.contains("O=system:nodes"),
        "{subject}"
    );
    let csrs = plane.kubectl_ok(
        "admin.conf",
        &[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.spec.username} {.status.conditions[*].type}{\"\\n\"}{end}",
        ],
    );
    assert!(
        csrs.lines()
            .any(|l| l.starts_with("system:bootstrap:") && l.ends_with("Approved")),
        "no CSR of a bootstrap token was approved: {csrs}"
    );
}

/// A pod on the worker runs from the locally built image, gets an address
/// from the node's range, and `kubectl logs` reaches the kubelet once its
/// serving certificate is approved, and not before.
fn a_pod_runs_and_its_logs_are_reachable(
    plane: &ControlPlane,
    worker: &Worker,
    pause: &str,
    work: &Path,
    tenant_networks: &[String],
) {
    plane.kubectl_ok(
        "admin.conf",
        &[
            "run",
            "sleeper",
            &format!("--image=registry.k8s.io/pause:{pause}"),
            "--image-pull-policy=Never",
            "--restart=Never",
        ],
    );
    let running = plane.wait_kubectl(
        "the pod runs on the worker",
        Duration::from_secs(120),
        "admin.conf",
        &[
            "get",
            "pod",
            "sleeper",
            "-o",
            "jsonpath={.status.phase} {.spec.nodeName} {.status.podIP}",
        ],
        |out| out.starts_with("Running "),
    );
    let fields: Vec<&str> = running.split_whitespace().collect();
    assert_eq!(fields[1], "worker-0", "{running}\n{}", worker.logs());
    assert!(fields[2].starts_with("198.19."), "{running}");
    let refused = plane.kubectl("admin.conf", &["logs", "sleeper"]);
    assert!(
        !refused.status.success(),
        "logs came back before the kubelet had a serving certificate: {}",
        output_text(&refused)
    );
    let _approver =
        the_approver_issues_the_serving_certificate(plane, worker, work, tenant_networks);
    plane.wait_kubectl(
        "kubectl logs reaches the kubelet, its serving certificate verified",
        Duration::from_secs(60),
        "admin.conf",
        &["logs", "sleeper"],
        |_| true,
    );
}

/// The kubelet's serving request waits undecided until gantry's approver
/// runs; then the approver approves it, the controller-manager signs it
/// with the tenant CA, and the kubelet serves with it, for its own name and
/// address only.
fn the_approver_issues_the_serving_certificate(
    plane: &ControlPlane,
    worker: &Worker,
    work: &Path,
    tenant_networks: &[String],
) -> KillOnDrop {
    let serving_requests = [
        "get",
        "csr",
        "--field-selector=spec.signerName=kubernetes.io/kubelet-serving",
        "-o",
        "jsonpath={range .items[*]}{.spec.username} {.status.conditions[*].reason} {.status.certificate}{\"\\n\"}{end}",
    ];
    let pending = plane.kubectl_ok("admin.conf", &serving_requests);
    assert!(
        pending.lines().any(|l| l.trim() == "system:node:worker-0"),
        "the kubelet's serving request should wait undecided: {pending:?}"
    );
    let approver = start_kubelet_serving_approver(plane, tenant_networks);
    plane.wait_kubectl(
        "gantry approves the serving request and the controller-manager signs it",
        Duration::from_secs(60),
        "admin.conf",
        &serving_requests,
        |out| {
            out.lines().any(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.len() == 3
                    && fields[0] == "system:node:worker-0"
                    && fields[1] == "GantryApprovedNodeAddresses"
            })
        },
    );
    let mut pem = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            pem = worker.read("/var/lib/kubelet/pki/kubelet-server-current.pem");
            pem.is_some()
        }),
        "the kubelet never wrote its serving certificate\n{}",
        worker.logs()
    );
    let certificate = signed_by_the_tenant_ca(plane, work, "kubelet-server.pem", &pem.unwrap());
    let names = run_ok(
        std::process::Command::new(tool("openssl"))
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&certificate),
    );
    let node_ip = worker.host.address.to_string();
    let sans: Vec<&str> = names
        .lines()
        .skip(1)
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .collect();
    assert_eq!(
        sans,
        ["DNS:worker-0", &format!("IP Address:{node_ip}")],
        "{names}"
    );
    approver
}

/// Writes the kubelet's certificate `pem` to `work/file` and checks with
/// openssl that the tenant CA signed it; returns the file.
fn signed_by_the_tenant_ca(
    plane: &ControlPlane,
    work: &Path,
    file: &str,
    pem: &str,
) -> std::path::PathBuf {
    let certificate = work.join(file);
    std::fs::write(&certificate, pem).unwrap();
    run_ok(
        std::process::Command::new(tool("openssl"))
            .args(["verify", "-CAfile"])
            .arg(plane.bundle.join("pki/ca.crt"))
            .arg(&certificate),
    );
    certificate
}
