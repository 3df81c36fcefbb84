//! The control plane that `gantry render` writes runs, for every supported
//! minor, on that minor's own kube-apiserver, kube-controller-manager and
//! kube-scheduler and the etcd its kubeadm pins, all built from upstream
//! source (scripts/install-test-tools). `support/kubelet.rs` says what is
//! substituted for the kubelet; nothing else of the rendered pods changes.
//!
//! An HA tenant: 3 etcd members, 2 apiservers, a controller-manager and a
//! scheduler, each on a test host of its own. Then, through `admin.conf`
//! and real kubectl:
//! - `/livez` and `/readyz` answer, and every pod passes its rendered probes;
//! - the controller-manager and the scheduler hold their Leases with the
//!   kubeconfigs gantry made;
//! - the tenant set applies with `kubectl apply --server-side`;
//! - the controller-manager's bootstrap signer signs cluster-info for a new
//!   token exactly as gantry signs it, and keeps gantry's own signature;
//!   its token cleaner deletes an expired token;
//! - with one apiserver and one etcd member killed, the tenant still serves
//!   reads and writes and the leaders keep renewing.
//!
//! Run with `--nocapture` to see the timings (docs/benchmarks.md).

use std::time::{Duration, Instant};

use gantry_tests::control_plane::{
    ControlPlane, TenantShape, lease, one_at_a_time, render_tenant, supported_versions,
};
use gantry_tests::gantry_ok;
use gantry_tests::kubelet::{find, read_objects};

fn ha_tenant_serves_and_survives_losing_an_apiserver_and_an_etcd_member(version: &str, subnet: u8) {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let shape = TenantShape {
        name: "tenant-ha",
        version,
        subnet,
        etcd: 3,
        apiservers: 2,
    };
    let bundle = render_tenant(tmp.path(), &shape);
    let mut plane = ControlPlane::start(&bundle, &shape, tmp.path());

    plane.wait_ready(Duration::from_secs(120));
    for path in ["/livez", "/readyz"] {
        let answer = plane.kubectl_ok("admin.conf", &["get", "--raw", path]);
        assert_eq!(answer.trim(), "ok", "{path}");
    }
    let ready_after = plane.started.elapsed();
    let server_version = plane.kubectl_ok("admin.conf", &["version", "-o", "json"]);
    assert!(
        server_version.contains(&format!("\"gitVersion\": \"v{version}\"")),
        "the apiserver is not {version}: {server_version}"
    );

    // admin.conf's group is bound to cluster-admin by the tenant set.
    plane.apply_tenant_set();
    let controller_manager = wait_lease(&plane, "kube-controller-manager");
    let scheduler = wait_lease(&plane, "kube-scheduler");
    let memory = plane.rss_kib();
    let total_mib = memory.iter().map(|(_, kib)| kib).sum::<u64>() / 1024;
    eprintln!(
        "TIMING {version}: first process start to every pod ready and /readyz through admin.conf: {:.1} s",
        ready_after.as_secs_f64()
    );
    eprintln!("MEMORY {version}: {total_mib} MiB resident in all: {memory:?}");

    the_bootstrap_controllers_run(&plane);
    if version == gantry_renderer::versions::newest().to_string() {
        defragmentation_keeps_the_tenant_serving(&plane);
    }

    // One apiserver and one etcd member die; the load balancer moves on.
    plane.etcd[2].process.kill();
    plane.kill_apiserver(0);
    let answer = plane.wait_kubectl(
        "/readyz after the failures",
        Duration::from_secs(30),
        "admin.conf",
        &["get", "--raw", "/readyz"],
        |out| out.trim() == "ok",
    );
    assert!(answer.contains("ok"));
    plane.kubectl_ok(
        "admin.conf",
        &[
            "-n",
            "default",
            "create",
            "configmap",
            "written-after-failures",
        ],
    );
    for (name, before) in [
        ("kube-controller-manager", controller_manager),
        ("kube-scheduler", scheduler),
    ] {
        let renewed = Instant::now();
        let ok = gantry_tests::wait_until(Duration::from_secs(60), || {
            lease(&plane, name).is_some_and(|(_, time)| time != before.1)
        });
        assert!(
            ok,
            "{name} stopped renewing its Lease after the failures ({:?})\n{}",
            renewed.elapsed(),
            plane.logs()
        );
    }
}

/// The Lease's holder and renew time, once the leader holds it.
fn wait_lease(plane: &ControlPlane, name: &str) -> (String, String) {
    let mut held = None;
    let ok = gantry_tests::wait_until(Duration::from_secs(90), || {
        held = lease(plane, name);
        held.is_some()
    });
    assert!(ok, "{name} never took its Lease\n{}", plane.logs());
    held.unwrap()
}

fn the_bootstrap_controllers_run(plane: &ControlPlane) {
    let tenant_dir = plane.bundle.join("tenant");
    // The rendered token's signature is the one the bootstrap signer keeps.
    let tenant = read_objects(&tenant_dir);
    let rendered_info = find(&tenant, "ConfigMap", "cluster-info");
    let (jws_key, rendered_jws) = rendered_info["data"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(key, _)| key.starts_with("jws-kubeconfig-"))
        .expect("cluster-info carries a signature for the join token");

    // A new signing token: the controller-manager signs cluster-info for it.
    let (id, secret) = ("gtsign", "0123456789abcdef");
    token_secret(plane, id, secret, "2099-01-01T00:00:00Z");
    let info = plane.wait_cluster_info(
        "the bootstrap signer signs cluster-info for a new token",
        |info| !info["data"][format!("jws-kubeconfig-{id}")].is_null(),
    );
    assert_eq!(
        info["data"][jws_key], *rendered_jws,
        "the signer changed gantry's signature"
    );
    let kubeconfig = plane.bundle.join("served-cluster-info.conf");
    std::fs::write(&kubeconfig, info["data"]["kubeconfig"].as_str().unwrap()).unwrap();
    let ours = gantry_ok(&[
        "token",
        "sign",
        "--token",
        &format!("{id}.{secret}"),
        "--file",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(
        info["data"][format!("jws-kubeconfig-{id}")]
            .as_str()
            .unwrap(),
        ours.trim(),
        "gantry signs cluster-info as the controller-manager does"
    );

    // An expired token: the token cleaner deletes it.
    token_secret(plane, "gtexpd", "0123456789abcdef", "2020-01-01T00:00:00Z");
    plane.wait_kubectl(
        "the token cleaner deletes an expired token",
        Duration::from_secs(60),
        "admin.conf",
        &["-n", "kube-system", "get", "secrets", "-o", "name"],
        |out| !out.contains("bootstrap-token-gtexpd"),
    );
}

fn token_secret(plane: &ControlPlane, id: &str, secret: &str, expiration: &str) {
    let manifest = plane.bundle.join(format!("token-{id}.yaml"));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-{id}\n  namespace: kube-system\n\
             type: bootstrap.kubernetes.io/token\nstringData:\n  token-id: {id}\n  token-secret: {secret}\n  \
             expiration: \"{expiration}\"\n  usage-bootstrap-signing: \"true\"\n  usage-bootstrap-authentication: \"true\"\n"
        ),
    )
    .unwrap();
    plane.kubectl_ok("admin.conf", &["apply", "-f", manifest.to_str().unwrap()]);
}

/// One test per supported minor, each on that minor's own binaries; the
/// list below must name every minor of the version table.
#[test]
fn every_supported_minor_has_a_control_plane_test() {
    let tested: Vec<String> = ["1.35.4", "1.36.3", "1.37.2"].map(String::from).to_vec();
    assert_eq!(tested, supported_versions());
}

#[test]
fn ha_tenant_1_35() {
    ha_tenant_serves_and_survives_losing_an_apiserver_and_an_etcd_member("1.35.4", 135);
}

#[test]
fn ha_tenant_1_36() {
    ha_tenant_serves_and_survives_losing_an_apiserver_and_an_etcd_member("1.36.3", 136);
}

#[test]
fn ha_tenant_1_37() {
    ha_tenant_serves_and_survives_losing_an_apiserver_and_an_etcd_member("1.37.2", 137);
}

/// etcdctl on the plane's host against every member, with `args` and `stdin`.
fn etcdctl_members(plane: &ControlPlane, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let pki = |file: &str| plane.bundle.join("pki").join(file);
    let mut child = plane
        .node
        .command(gantry_tests::tool("etcdctl"))
        .arg(format!("--endpoints={}", members(plane).join(",")))
        .arg(format!("--cacert={}", pki("etcd/ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki("etcd/backup-client.crt").display()
        ))
        .arg(format!("--key={}", pki("etcd/backup-client.key").display()))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn members(plane: &ControlPlane) -> Vec<String> {
    (0..plane.etcd.len())
        .map(|i| format!("https://etcd-{i}.etcd.{}.svc:2379", plane.namespace))
        .collect()
}

/// After churn (30,000 keys of 1 KiB written, deleted, compacted), `gantry
/// etcd defragment` shrinks every member's database, one at a time and the
/// leader last, while `/readyz` is asked every 250 ms: no failure.
fn defragmentation_keeps_the_tenant_serving(plane: &ControlPlane) {
    let value = "x".repeat(1024);
    for batch in 0..300 {
        let mut script = String::from("\n");
        for i in 0..100 {
            script.push_str(&format!("put /registry/churn/k-{batch}-{i} {value}\n"));
        }
        script.push_str("\n\n");
        let output = etcdctl_members(plane, &["txn"], &script);
        assert!(
            output.status.success(),
            "{}",
            gantry_tests::output_text(&output)
        );
    }
    let deleted = etcdctl_members(
        plane,
        &["del", "/registry/churn/", "--prefix", "-w", "json"],
        "",
    );
    assert!(
        deleted.status.success(),
        "{}",
        gantry_tests::output_text(&deleted)
    );
    let header: serde_json::Value = serde_json::from_slice(&deleted.stdout).unwrap();
    let revision = header["header"]["revision"].as_i64().unwrap().to_string();
    let compacted = etcdctl_members(plane, &["compact", &revision, "--physical"], "");
    assert!(
        compacted.status.success(),
        "{}",
        gantry_tests::output_text(&compacted)
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readyz = format!("https://{}:6443/readyz", plane.vip);
    let (checks, failures) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let (mut checks, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = plane.curl_status(&readyz, &[]);
                checks += 1;
                if status != "200" {
                    failures.push(status);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            (checks, failures)
        });
        // Some checks before, during and after.
        std::thread::sleep(Duration::from_secs(2));
        let pki = |file: &str| plane.bundle.join("pki").join(file);
        let output = plane
            .node
            .command(gantry_tests::gantry_bin())
            .args(["etcd", "defragment", "--above=0.5"])
            .arg(format!("--etcd={}", members(plane).join(",")))
            .arg(format!("--etcd-ca={}", pki("etcd/ca.crt").display()))
            .arg(format!(
                "--etcd-cert={}",
                pki("etcd/backup-client.crt").display()
            ))
            .arg(format!(
                "--etcd-key={}",
                pki("etcd/backup-client.key").display()
            ))
            .output()
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            output.status.success(),
            "{}",
            gantry_tests::output_text(&output)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let done = report["defragmented"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            done.len(),
            plane.etcd.len(),
            "every member, after churn: {report}"
        );
        for member in &done {
            let (before, after) = (
                member["bytesBefore"].as_u64().unwrap(),
                member["bytesAfter"].as_u64().unwrap(),
            );
            eprintln!(
                "DEFRAG {}: {before} bytes before, {after} after",
                member["endpoint"]
            );
            assert!(after < before / 2, "{report}");
        }
        watcher.join().unwrap()
    });
    eprintln!(
        "DEFRAG /readyz every 250 ms: {} of {checks} checks failed",
        failures.len()
    );
    assert!(checks > 8, "too few checks ({checks}) to say anything");
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "/readyz failed during defragmentation"
    );
}
