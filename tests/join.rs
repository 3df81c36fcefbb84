//! `kubeadm join` with the exact command gantry produced, run by the real
//! kubeadm of the newest minor against a running tenant (see
//! `control_plane.rs`), from a worker host of its own, with `--dry-run`.
//! (`worker_node.rs` runs the same command for real, with a kubelet and
//! containerd, to Node Ready.)
//!
//! The dry run shows what kubeadm reads, and so proves the reads are real:
//! discovery (cluster-info fetched anonymously, its JWS checked against the
//! token, the CA checked against the pinned hash), then `kubeadm-config`
//! and `kubelet-config` with the bootstrap token. kubeadm's dry run falls
//! back to made-up objects when a real read fails (`[dryrun] Real object
//! does not exist`) and to a made-up token when cluster-info has no
//! signature for the real one. The successful join must show neither (but
//! for the worker's own Node, which does not exist yet).
//!
//! What must fail: a wrong `--discovery-token-ca-cert-hash`, and the same
//! command once its token is deleted.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use gantry_tests::control_plane::{kubernetes_bin, one_at_a_time, start_small_tenant};
use gantry_tests::netns::Host;
use gantry_tests::{output_text, run_ok};

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
fn the_exact_join_command_reads_real_objects_and_a_wrong_pin_or_a_deleted_token_is_refused() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut plane = start_small_tenant(tmp.path(), "tenant-j", 160);
    let bundle = plane.bundle.clone();
    let worker = plane.network.host("worker", 50);
    run_ok(
        worker
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]),
    );
    let command = std::fs::read_to_string(bundle.join("join-command")).unwrap();

    let dry_run = tmp.path().join("join-dry-run");
    std::fs::create_dir_all(&dry_run).unwrap();
    let joined = join(&worker, &command, &dry_run);
    assert!(
        joined.status.success(),
        "kubeadm join: {}\n{}",
        output_text(&joined),
        plane.logs()
    );
    real_reads_only(&output_text(&joined));

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
