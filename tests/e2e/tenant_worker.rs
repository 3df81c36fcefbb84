//! The tenant side of the end-to-end test: a worker VM joins with the user-data
//! of `gantry cloud-init`, and a workload runs on it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use gantry_tests::control_plane::kubernetes_bin;
use gantry_tests::images::image;
use gantry_tests::service_node::ServiceCluster;
use gantry_tests::worker::Worker;
use gantry_tests::{gantry_bin, output_text, wait_until};
use serde_json::Value;

pub const WORKER: &str = "worker-0";
/// The tenant's pod network (its spec's `networking.podCIDR`): a range of
/// the test's own, which the controller-manager gives whole to the worker.
pub const TENANT_POD_CIDR: &str = "198.19.141.0/24";

/// kubectl on the test's host with the tenant's kubeconfig.
pub fn tenant_kubectl(cluster: &ServiceCluster, kubeconfig: &Path, args: &[&str]) -> Output {
    cluster.plane.kubectl(kubeconfig.to_str().unwrap(), args)
}

/// Waits up to `limit` for kubectl `args` (tenant side) to print what `accept` takes.
pub fn wait_tenant(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    what: &str,
    limit: Duration,
    args: &[&str],
    accept: impl Fn(&str) -> bool,
) -> String {
    cluster.wait_kubectl(kubeconfig.to_str().unwrap(), what, limit, args, accept)
}

/// `gantry <args>` on the test's host, reading the service cluster.
pub fn gantry_on_service_cluster(cluster: &ServiceCluster, args: &[&str]) -> Vec<u8> {
    let output = cluster
        .plane
        .node
        .command(gantry_bin())
        .args(args)
        .env("KUBECONFIG", cluster.plane.bundle.join("admin.conf"))
        .output()
        .expect("run gantry");
    assert!(
        output.status.success(),
        "gantry {args:?}: {}",
        output_text(&output)
    );
    output.stdout
}

/// A worker VM joins the tenant as cloud-init joins it: the test writes the
/// `write_files` of `gantry cloud-init tenant-a --preinstalled` onto the
/// worker and runs its `runcmd`. What stands in for the VM image: containerd
/// and the kubelet already running (the kubelet as kubeadm's systemd unit
/// starts it, with the node's settings as a `--config-dir` drop-in), kubelet
/// and kubeadm of the tenant's version on PATH, where `kubeadm` adds the one
/// preflight error of this cgroup v1 machine to skip (see
/// `Worker::kubeadm_join`) to the script's command.
pub fn a_worker_joins_with_gantrys_cloud_init(
    cluster: &mut ServiceCluster,
    tenant: &str,
    version: &str,
    kubeconfig: &Path,
    dir: &Path,
) -> Worker {
    let release =
        gantry_renderer::versions::release(version.split('.').nth(1).unwrap().parse().unwrap())
            .unwrap();
    let images: Vec<PathBuf> = [
        format!("pause-{}.tar", release.pause),
        format!("kube-proxy-v{version}.tar"),
        format!("coredns-{}.tar", release.coredns),
        "web-1.tar".to_string(),
    ]
    .iter()
    .map(|file| image(file))
    .collect();
    let mut worker = Worker::start(
        &mut cluster.plane.network,
        WORKER,
        60,
        TENANT_POD_CIDR,
        &dir.join(WORKER),
        &images,
    );
    let kubernetes = kubernetes_bin(version);
    worker.start_kubelet_service(&kubernetes.join("kubelet"));

    let network = format!("{}/24", cluster.plane.network.address(0));
    let user_data = gantry_on_service_cluster(
        cluster,
        &[
            "cloud-init",
            tenant,
            "--preinstalled",
            "--node-network",
            &network,
        ],
    );
    let user_data: Value = serde_yaml::from_slice(&user_data).expect("user-data is YAML");
    for file in user_data["write_files"].as_array().expect("write_files") {
        worker.write_file(
            file["path"].as_str().unwrap(),
            file["content"].as_str().unwrap(),
            file["permissions"].as_str().unwrap(),
        );
    }
    let wrapper = dir.join("worker-image-bin");
    std::fs::create_dir_all(&wrapper).unwrap();
    std::fs::write(
        wrapper.join("kubeadm"),
        format!(
            "#!/bin/sh\nexec {} \"$@\" --ignore-preflight-errors=SystemVerification\n",
            kubernetes.join("kubeadm").display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        wrapper.join("kubeadm"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}:{}",
        wrapper.display(),
        kubernetes.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in user_data["runcmd"].as_array().expect("runcmd") {
        let argv: Vec<&str> = command
            .as_array()
            .expect("runcmd entries are lists")
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let ran = worker
            .command(argv[0])
            .args(&argv[1..])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            ran.status.success(),
            "cloud-init runcmd {argv:?}: {}\n{}",
            output_text(&ran),
            worker.logs()
        );
    }
    wait_tenant(
        cluster,
        kubeconfig,
        "the worker's Node turns Ready",
        Duration::from_secs(180),
        &[
            "get",
            "node",
            WORKER,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out == "True",
    );
    worker
}

const WORKLOAD: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: gantry.test/web:1
        imagePullPolicy: Never
        args: [httpd, -f, -v, -p, \"8080\", -h, /www]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
";

/// A Deployment and a Service of a small web server run in the tenant; the
/// page comes back through the Service's ClusterIP from the worker (the
/// tenant's kube-proxy, from gantry's tenant set), and `kubectl logs` and
/// `kubectl exec` reach the pod through the tenant's apiserver.
pub fn a_workload_serves_through_its_service(
    cluster: &ServiceCluster,
    worker: &Worker,
    kubeconfig: &Path,
    dir: &Path,
) {
    let manifest = dir.join("web.yaml");
    std::fs::write(&manifest, WORKLOAD).unwrap();
    let applied = tenant_kubectl(
        cluster,
        kubeconfig,
        &["apply", "-f", manifest.to_str().unwrap()],
    );
    assert!(applied.status.success(), "{}", output_text(&applied));
    wait_tenant(
        cluster,
        kubeconfig,
        "the web Deployment is available",
        Duration::from_secs(120),
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        |out| out == "1",
    );
    let cluster_ip = wait_tenant(
        cluster,
        kubeconfig,
        "the web Service has a ClusterIP",
        Duration::from_secs(30),
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
        |out| !out.is_empty(),
    );
    let mut page = String::new();
    let served = wait_until(Duration::from_secs(60), || {
        let output = worker
            .command("curl")
            .args(["-s", "-m", "5", &format!("http://{cluster_ip}/")])
            .output()
            .unwrap();
        page = String::from_utf8_lossy(&output.stdout).into_owned();
        page.contains("hello from a gantry tenant")
    });
    assert!(
        served,
        "the page through the Service: {page:?}\n{}",
        worker.logs()
    );
    the_operator_approved_the_serving_certificate(cluster, kubeconfig);
    // The kubelet serves with its new certificate moments after it is signed.
    wait_tenant(
        cluster,
        kubeconfig,
        "kubectl logs reaches the kubelet, its serving certificate verified",
        Duration::from_secs(60),
        &["logs", "deployment/web"],
        |out| out.contains("response:200"),
    );
    let exec = tenant_kubectl(
        cluster,
        kubeconfig,
        &[
            "exec",
            "deployment/web",
            "--",
            "/bin/busybox",
            "cat",
            "/www/index.html",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout).trim(),
        "hello from a gantry tenant",
        "kubectl exec: {}",
        output_text(&exec)
    );
}

/// The worker's kubelet-serving request was approved by the operator (the
/// reason is gantry's) and signed; `kubectl logs` and `exec` depend on it,
/// since the apiserver verifies kubelets against the tenant CA.
fn the_operator_approved_the_serving_certificate(cluster: &ServiceCluster, kubeconfig: &Path) {
    wait_tenant(
        cluster,
        kubeconfig,
        "the operator approves the worker's serving request, and it is signed",
        Duration::from_secs(60),
        &[
            "get",
            "csr",
            "--field-selector=spec.signerName=kubernetes.io/kubelet-serving",
            "-o",
            "jsonpath={range .items[*]}{.spec.username} {.status.conditions[*].reason} {.status.certificate}{\"\\n\"}{end}",
        ],
        |out| {
            out.lines().any(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.len() == 3
                    && fields[0].starts_with("system:node:")
                    && fields[1] == "GantryApprovedNodeAddresses"
            })
        },
    );
}

/// `gantry get` lists the tenant as Ready at `version`, with its endpoint,
/// and `gantry join` prints a `kubeadm join` line for that endpoint with a
/// token and the CA's hash: the README's quickstart, run.
pub fn gantry_get_and_join_show_the_tenant(
    cluster: &ServiceCluster,
    tenant: &str,
    version: &str,
    kubeconfig: &Path,
) {
    let server: Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let endpoint = server["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .to_string();
    let table = String::from_utf8(gantry_on_service_cluster(cluster, &["get"])).unwrap();
    let row: Vec<&str> = table
        .lines()
        .find(|line| line.starts_with(&format!("{tenant} ")))
        .unwrap_or_else(|| panic!("gantry get has no {tenant}:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [tenant, version, version, "Ready", &endpoint, "-"],
        "{table}"
    );

    let join = String::from_utf8(gantry_on_service_cluster(cluster, &["join", tenant])).unwrap();
    let words: Vec<&str> = join.split_whitespace().collect();
    assert_eq!(words[..3], ["kubeadm", "join", endpoint.as_str()], "{join}");
    let flag = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .unwrap_or_else(|| panic!("no {name} in {join}"))
    };
    let token = flag("--token");
    assert!(
        token.len() == 23 && token.as_bytes()[6] == b'.',
        "a bootstrap token: {join}"
    );
    // kubeadm's pin: SHA-256 over the CA's SubjectPublicKeyInfo.
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            server["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let ca_file = kubeconfig.with_extension("ca.crt");
    std::fs::write(&ca_file, ca).unwrap();
    let pin = gantry_tests::run_ok(std::process::Command::new("sh").arg("-c").arg(format!(
        "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
        ca_file.display()
    )));
    let pin = pin.split_whitespace().next().unwrap();
    assert_eq!(
        *flag("--discovery-token-ca-cert-hash"),
        format!("sha256:{pin}"),
        "{join}"
    );
}
