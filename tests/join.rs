//! `kubeadm join` with the exact command gantry produced, run by the real
//! kubeadm of the newest minor against a running tenant (see
//! `control_plane.rs`), from a worker host of its own.
//!
//! No kubelet runs here (see docs/operations.md, "What the tests prove"), so
//! kubeadm runs with `--dry-run`: discovery is real (cluster-info fetched
//! anonymously, its JWS checked against the token, the CA checked against the
//! pinned hash), and so are the reads of `kubeadm-config` and
//! `kubelet-config` with the bootstrap token. kubeadm writes the bootstrap
//! kubeconfig it would hand the kubelet into a folder of the test's. The test
//! then does the kubelet's TLS bootstrap with it: a client CSR for
//! `system:node:<name>`, which the controller-manager must approve (through
//! gantry's RBAC for `system:bootstrappers`) and sign with the tenant CA.
//! The node's certificate then registers its Node, as a kubelet's would.
//!
//! What must fail: a wrong `--discovery-token-ca-cert-hash`, and the same
//! command once its token is deleted.
//!
//! kubeadm's dry run falls back to made-up objects when a real read fails
//! (`[dryrun] Real object does not exist`) and to a made-up token when
//! cluster-info has no signature for the real one. The successful join must
//! show neither (but for the worker's own Node, which does not exist yet);
//! the deleted token must lead to the second.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gantry_tests::control_plane::{
    ControlPlane, TenantShape, kubernetes_bin, one_at_a_time, render_tenant,
};
use gantry_tests::netns::Host;
use gantry_tests::{output_text, run_ok, tool};

/// The preflight checks a test worker cannot satisfy (the only addition to
/// the join command besides `--dry-run`, which stands in for the kubelet):
/// - CRI, ContainerRuntimeVersion: no container runtime runs on the worker;
/// - SystemVerification: `ip netns exec` remounts /sys, so kubeadm finds no
///   cgroup mount in the worker's /proc/mounts.
///
/// Every other check runs and passes: among them KubeletVersion (the real
/// kubelet of the same minor is on the worker's PATH) and
/// FileContent--proc-sys-net-ipv4-ip_forward (set in the worker's namespace,
/// as on a node).
const IGNORED_PREFLIGHT: &str = "CRI,ContainerRuntimeVersion,SystemVerification";

/// The join command as kubeadm gets it: gantry's line, plus `--dry-run` and
/// the ignored preflight checks, run on `worker` with the kubelet on PATH.
fn join_command(worker: &Host, command: &str, dry_run_dir: &Path) -> std::process::Command {
    let argv: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(argv[..2], ["kubeadm", "join"], "{command}");
    let kubernetes = kubernetes_bin(&gantry_renderer::versions::newest().to_string());
    let path = format!(
        "{}:{}",
        kubernetes.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut kubeadm = worker.command(kubernetes.join("kubeadm"));
    kubeadm
        .env("PATH", path)
        .args(&argv[1..])
        .arg("--dry-run")
        .arg(format!("--ignore-preflight-errors={IGNORED_PREFLIGHT}"))
        .env("KUBEADM_JOIN_DRYRUN_DIR", dry_run_dir);
    kubeadm
}

fn join(worker: &Host, command: &str, dry_run_dir: &Path) -> Output {
    std::fs::create_dir_all(dry_run_dir).unwrap();
    join_command(worker, command, dry_run_dir)
        .output()
        .expect("run kubeadm")
}

#[test]
fn a_worker_joins_with_the_exact_join_command_and_a_wrong_pin_or_a_deleted_token_is_refused() {
    let _one = one_at_a_time();
    let version = gantry_renderer::versions::newest().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let shape = TenantShape {
        name: "tenant-j",
        version: &version,
        subnet: 160,
        etcd: 1,
        apiservers: 1,
    };
    let bundle = render_tenant(tmp.path(), &shape);
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut plane = ControlPlane::start(&bundle, &shape, &run);
    plane.wait_ready(Duration::from_secs(120));
    plane.apply_tenant_set();
    let worker = plane.network.host("worker", 50);
    run_ok(
        worker
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]),
    );
    let command = std::fs::read_to_string(bundle.join("join-command")).unwrap();

    let dry_run = tmp.path().join("join-dry-run");
    std::fs::create_dir_all(&dry_run).unwrap();
    let started = Instant::now();
    let joined = join(&worker, &command, &dry_run);
    assert!(
        joined.status.success(),
        "kubeadm join: {}\n{}",
        output_text(&joined),
        plane.logs()
    );
    real_reads_only(&output_text(&joined));
    let node_certificate = tls_bootstrap(&plane, &worker, &dry_run.join("bootstrap-kubelet.conf"));
    eprintln!(
        "TIMING {version}: kubeadm join (dry run) to a signed node certificate: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    node_registers(&plane, &worker, &node_certificate, tmp.path());

    // The pin is real: another hash is refused.
    let hash = command.split_whitespace().last().unwrap();
    let wrong = command.replace(hash, &format!("sha256:{}", "0".repeat(64)));
    let refused = join(&worker, &wrong, &tmp.path().join("wrong-pin"));
    assert!(!refused.status.success(), "a wrong CA hash was accepted");
    assert!(
        output_text(&refused).contains("are pinned"),
        "kubeadm did not refuse the CA for its pin: {}",
        output_text(&refused)
    );

    // The token is real: once it is deleted, the controller-manager's
    // bootstrap signer withdraws its signature from cluster-info, and kubeadm
    // finds none for the token. (A real join would wait for one until its
    // discovery timeout; a dry run says so and switches to made-up data,
    // which is where the test stops it.)
    let token_id = command
        .split_whitespace()
        .skip_while(|a| *a != "--token")
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    plane.kubectl_ok(
        "admin.conf",
        &[
            "-n",
            "kube-system",
            "delete",
            "secret",
            &format!("bootstrap-token-{token_id}"),
        ],
    );
    plane.wait_cluster_info(
        "the bootstrap signer withdraws the deleted token's signature",
        |info| info["data"][format!("jws-kubeconfig-{token_id}")].is_null(),
    );
    let said = join_until(
        &worker,
        &command,
        &tmp.path().join("deleted-token"),
        NO_SIGNATURE,
    );
    assert!(
        said.contains(NO_SIGNATURE),
        "kubeadm joined with a deleted token: {said}"
    );
}

/// What kubeadm's dry run prints when cluster-info holds no signature for
/// the token (cmd/kubeadm/app/discovery/token/token.go).
const NO_SIGNATURE: &str = "Mutating the JoinConfiguration.Discovery.BootstrapToken";

/// What kubeadm's dry run prints when a real GET failed and it falls back to
/// made-up objects.
const FAKE_OBJECT: &str = "Real object does not exist";

/// kubeadm read cluster-info, kubeadm-config and kubelet-config from the
/// tenant, with the bootstrap token; the only object its dry run made up is
/// the worker's own Node, which does not exist before the kubelet creates it.
fn real_reads_only(said: &str) {
    assert!(
        !said.contains(NO_SIGNATURE),
        "kubeadm used a made-up token: {said}"
    );
    for object in ["cluster-info", "kubeadm-config", "kubelet-config"] {
        assert!(
            said.contains(&format!("Resource name \"{object}\"")),
            "kubeadm did not read {object}: {said}"
        );
    }
    let lines: Vec<&str> = said.lines().collect();
    for (i, _) in lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(FAKE_OBJECT))
    {
        assert!(
            i >= 2 && lines[i - 2].contains("resource \"nodes\""),
            "kubeadm made up {}: {said}",
            lines[i.saturating_sub(1)]
        );
    }
}

/// Runs the join (dry run) until it exits or prints `needle`, then stops it;
/// returns everything it printed.
fn join_until(worker: &Host, command: &str, dry_run_dir: &Path, needle: &str) -> String {
    std::fs::create_dir_all(dry_run_dir).unwrap();
    let log = dry_run_dir.join("kubeadm.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut kubeadm = join_command(worker, command, dry_run_dir);
    kubeadm.stdout(file.try_clone().unwrap()).stderr(file);
    let mut running = gantry_tests::KillOnDrop::spawn(&mut kubeadm);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        if printed.contains(needle) || running.has_exited() || Instant::now() > deadline {
            running.kill();
            return std::fs::read_to_string(&log).unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The kubelet's TLS bootstrap with `bootstrap`: a CSR for system:node:worker-0
/// that the controller-manager approves and signs. Returns the node's
/// kubeconfig-ready (certificate, key) paths.
fn tls_bootstrap(plane: &ControlPlane, worker: &Host, bootstrap: &Path) -> (String, String) {
    let dir = bootstrap.parent().unwrap();
    let key = dir.join("kubelet-client.key");
    let csr = dir.join("kubelet-client.csr");
    run_ok(
        std::process::Command::new(tool("openssl"))
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-subj", "/O=system:nodes/CN=system:node:worker-0"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let manifest = dir.join("csr.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: node-csr-worker-0\n\
             spec:\n  signerName: kubernetes.io/kube-apiserver-client-kubelet\n  usages: [digital signature, client auth]\n  \
             request: {request}\n"
        ),
    )
    .unwrap();
    run_ok(
        worker
            .command(tool("kubectl"))
            .arg(format!("--kubeconfig={}", bootstrap.display()))
            .args(["create", "-f"])
            .arg(&manifest),
    );
    let issued = plane.wait_kubectl(
        "the controller-manager approves and signs the node's CSR",
        Duration::from_secs(60),
        "admin.conf",
        &[
            "get",
            "csr",
            "node-csr-worker-0",
            "-o",
            "jsonpath={.status.certificate}",
        ],
        |out| !out.trim().is_empty(),
    );
    let certificate = dir.join("kubelet-client.crt");
    std::fs::write(
        &certificate,
        base64::engine::general_purpose::STANDARD
            .decode(issued.trim())
            .unwrap(),
    )
    .unwrap();
    run_ok(
        std::process::Command::new(tool("openssl"))
            .args(["verify", "-CAfile"])
            .arg(plane.bundle.join("pki/ca.crt"))
            .arg(&certificate),
    );
    (
        certificate.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// With its signed certificate the node is system:node:worker-0 and may
/// create its own Node object (NodeRestriction), as the kubelet does.
fn node_registers(
    plane: &ControlPlane,
    worker: &Host,
    (cert, key): &(String, String),
    work: &Path,
) {
    let node = work.join("node.yaml");
    std::fs::write(
        &node,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-0\n  labels:\n    kubernetes.io/hostname: worker-0\n",
    )
    .unwrap();
    let kubectl_as_node = |args: &[&str]| {
        run_ok(
            worker
                .command(tool("kubectl"))
                .arg(format!("--server=https://{}:6443", plane.vip))
                .arg(format!(
                    "--certificate-authority={}",
                    plane.bundle.join("pki/ca.crt").display()
                ))
                .arg(format!("--client-certificate={cert}"))
                .arg(format!("--client-key={key}"))
                .args(args),
        )
    };
    let whoami = kubectl_as_node(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(whoami, "system:node:worker-0");
    kubectl_as_node(&["create", "-f", node.to_str().unwrap()]);
    let listed = plane.kubectl_ok("admin.conf", &["get", "node", "worker-0", "-o", "name"]);
    assert_eq!(listed.trim(), "node/worker-0");
}
