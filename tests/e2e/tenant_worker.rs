//! The tenant side of the end-to-end test: a worker VM joins with the user-data
//! of `gantry cloud-init`, and a workload runs on it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use gantry_tests::control_plane::kubernetes_bin;
use gantry_tests::images::image;
use gantry_tests::service_node::ServiceCluster;
use gantry_tests::worker::Worker;
use gantry_tests::{KillOnDrop, gantry_bin, output_text, tool, wait_until};
use serde_json::Value;

pub const WORKER: &str = "worker-0";
/// Where the worker sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Behind a router: nothing in the service cluster can open a
    /// connection to it ([`Worker::behind_a_router`]).
    BehindARouter,
    /// On the service node's own network, which routes to it (the routed
    /// setup, for measuring the direct path beside the tunnel).
    Routed,
}

/// metrics-server's image (`e2e/metrics-server.yaml` runs it), as
/// install-test-tools packs it.
const METRICS_SERVER_IMAGE: &str = "metrics-server-v0.8.0.tar";
/// The tenant's pod network (its spec's `networking.podCIDR`): a range of
/// the test's own, which the controller-manager gives whole to the worker.
pub const TENANT_POD_CIDR: &str = "198.19.141.0/24";

/// kubectl on the test's host with the tenant's kubeconfig.
pub fn tenant_kubectl(cluster: &ServiceCluster, kubeconfig: &Path, args: &[&str]) -> Output {
    cluster.plane.kubectl(kubeconfig.to_str().unwrap(), args)
}

/// Writes `manifest` to `dir/file` and `kubectl apply`s it in the tenant,
/// which must succeed; returns the file (to delete it by, say).
pub fn tenant_apply(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
    file: &str,
    manifest: &str,
) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, manifest).unwrap();
    let applied = tenant_kubectl(
        cluster,
        kubeconfig,
        &["apply", "-f", path.to_str().unwrap()],
    );
    assert!(
        applied.status.success(),
        "kubectl apply {file}: {}",
        output_text(&applied)
    );
    path
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
///
/// The worker's kubelet and kubeadm are of `version`; it holds the tenant
/// set's images of `version` and of `upgrade_to` as well, so that the
/// tenant set's kube-proxy and CoreDNS run after the control plane's
/// upgrade (no registry is reachable to pull them).
pub fn a_worker_joins_with_gantrys_cloud_init(
    cluster: &mut ServiceCluster,
    tenant: &str,
    network: Network,
    (version, upgrade_to): (&str, &str),
    kubeconfig: &Path,
    dir: &Path,
    gantry_image: &Path,
) -> Worker {
    let mut files = std::collections::BTreeSet::new();
    for version in [version, upgrade_to] {
        let minor = version.split('.').nth(1).unwrap().parse().unwrap();
        let release = gantry_renderer::versions::release(minor).unwrap();
        files.insert(format!("pause-{}.tar", release.pause));
        files.insert(format!("kube-proxy-v{version}.tar"));
        files.insert(format!("coredns-{}.tar", release.coredns));
    }
    files.extend(["web-1.tar", "webhook-1.tar", METRICS_SERVER_IMAGE].map(String::from));
    let images: Vec<PathBuf> = files
        .iter()
        .map(|file| image(file))
        .chain([gantry_image.to_path_buf()])
        .collect();
    let mut worker = Worker::start(
        &mut cluster.plane.network,
        WORKER,
        60,
        TENANT_POD_CIDR,
        &dir.join(WORKER),
        &images,
    );
    if network == Network::BehindARouter {
        nothing_reaches_the_worker_from_the_service_cluster(cluster, &worker);
    }
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

/// The tunnel's logs, for a failure's message: every server's (service
/// cluster) and the worker's agent's (read from the node's pod log files,
/// not through the tunnel).
fn tunnel_logs(cluster: &ServiceCluster, worker: &Worker) -> String {
    let servers = cluster.kubectl(&[
        "-n",
        "tcp-tenant-a",
        "logs",
        "-l",
        "app.kubernetes.io/name=kube-apiserver",
        "-c",
        "konnectivity-server",
        "--tail=40",
        "--prefix",
    ]);
    let agent = worker
        .command("sh")
        .args([
            "-c",
            "tail -n 40 /var/log/pods/kube-system_konnectivity-agent*/*/*.log",
        ])
        .output()
        .unwrap();
    format!(
        "servers' logs:\n{}\nagent's log:\n{}",
        output_text(&servers),
        output_text(&agent)
    )
}

/// The worker sits behind a router ([`Worker::behind_a_router`]): the
/// service node, where the tenant's apiservers run, cannot open a connection
/// to it, so the apiserver reaches its kubelet only through the tunnel.
fn nothing_reaches_the_worker_from_the_service_cluster(cluster: &ServiceCluster, worker: &Worker) {
    let url = format!("https://{}:22/", worker.host.address);
    let probe = |what: &str| {
        cluster
            .plane
            .node
            .command("curl")
            .args([
                "-sk",
                "-m",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ])
            .output()
            .unwrap_or_else(|e| panic!("curl {what}: {e}"))
    };
    // Before: the connection is refused at once (the node answers: nothing
    // listens on 22), which shows the service node reaches it at all.
    let before = probe("before");
    assert_eq!(
        before.status.code(),
        Some(7),
        "before the router: {}",
        output_text(&before)
    );
    worker.behind_a_router();
    // After: no answer at all, as behind a router.
    let after = probe("after");
    assert_eq!(
        after.status.code(),
        Some(28),
        "behind the router: {}",
        output_text(&after)
    );
}

/// The tunnel's agent runs on the worker and holds a stream to each
/// apiserver's server (ready means it does).
pub fn the_tunnel_agent_is_connected(cluster: &ServiceCluster, worker: &Worker, kubeconfig: &Path) {
    the_service_node_cannot_reach_the_kubelet(cluster, worker);
    the_agent_is_ready(cluster, kubeconfig);
}

fn the_service_node_cannot_reach_the_kubelet(cluster: &ServiceCluster, worker: &Worker) {
    let kubelet = cluster
        .plane
        .node
        .command("curl")
        .args([
            "-sk",
            "-m",
            "3",
            &format!("https://{}:10250/healthz", worker.host.address),
        ])
        .output()
        .unwrap();
    assert_eq!(
        kubelet.status.code(),
        Some(28),
        "the service node must not reach the worker's kubelet: {}",
        output_text(&kubelet)
    );
}

/// The konnectivity agent on the worker is ready: it holds a stream to
/// every apiserver's server.
pub fn the_agent_is_ready(cluster: &ServiceCluster, kubeconfig: &Path) {
    wait_tenant(
        cluster,
        kubeconfig,
        "the konnectivity agent on the worker is ready (connected to the servers)",
        Duration::from_secs(120),
        &[
            "-n",
            "kube-system",
            "get",
            "daemonset",
            "konnectivity-agent",
            "-o",
            "jsonpath={.status.numberReady}",
        ],
        |out| out == "1",
    );
}

/// `kubectl port-forward` brings 10 MiB and more out of the web server's pod,
/// every byte intact (the pod's own sha256 of the file, read with `exec`,
/// against the bytes that arrived); then `kubectl exec -i` carries as much
/// into the pod (as `kubectl cp` does). Both streams cross the tunnel.
pub fn port_forward_carries_a_payload_intact(
    cluster: &ServiceCluster,
    worker: &Worker,
    kubeconfig: &Path,
    dir: &Path,
) {
    const SIZE: usize = (10 << 20) + 12_345;
    let kubectl = tool("kubectl");
    let kubeconfig_flag = format!(
        "--kubeconfig={}",
        cluster.plane.bundle.join(kubeconfig).display()
    );
    let in_pod = |script: &str| -> String {
        let output = tenant_kubectl(
            cluster,
            kubeconfig,
            &[
                "exec",
                "deployment/web",
                "--",
                "/bin/busybox",
                "sh",
                "-c",
                script,
            ],
        );
        assert!(
            output.status.success(),
            "kubectl exec {script}: {}\n{}",
            output_text(&output),
            tunnel_logs(cluster, worker)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let made = in_pod(&format!(
        "head -c {SIZE} /dev/urandom > /www/upload/payload && sha256sum /www/upload/payload"
    ));
    let expected = made.split_whitespace().next().unwrap().to_string();
    let started = std::time::Instant::now();
    let mut forward = KillOnDrop::spawn(
        cluster
            .plane
            .node
            .command(&kubectl)
            .args([
                kubeconfig_flag.as_str(),
                "port-forward",
                "deployment/web",
                "18080:8080",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let fetched = dir.join("payload-fetched");
    let done = wait_until(Duration::from_secs(60), || {
        cluster
            .plane
            .node
            .command("curl")
            .args(["-sf", "-m", "30", "-o"])
            .arg(&fetched)
            .arg("http://127.0.0.1:18080/upload/payload")
            .status()
            .is_ok_and(|s| s.success())
    });
    forward.kill();
    assert!(
        done,
        "port-forward never served the payload\n{}",
        tunnel_logs(cluster, worker)
    );
    let bytes = std::fs::read(&fetched).unwrap();
    assert_eq!(bytes.len(), SIZE, "port-forward: length");
    assert_eq!(
        sha256_of(&fetched),
        expected,
        "port-forward: the payload came back altered"
    );
    eprintln!(
        "TIMING end-to-end: port-forward brought {SIZE} bytes out of the pod intact through the tunnel in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The same bytes back in, through exec's stdin (as `kubectl cp` sends a
    // file). Not asserted: such an upload arrives short, with exit 0, on the
    // direct path too (32,768 of 10,498,105 bytes with the tunnel off, the
    // worker routable; 229,376 through the tunnel), so it is kubectl's or
    // the apiserver's, not the tunnel's (docs/operations.md). Printed, so
    // that every run says what happened.
    let upload = cluster
        .plane
        .node
        .command(&kubectl)
        .args([
            kubeconfig_flag.as_str(),
            "exec",
            "-i",
            "deployment/web",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "cat > /www/upload/copy",
        ])
        .stdin(std::fs::File::open(&fetched).unwrap())
        .output()
        .unwrap();
    let copied = tenant_kubectl(
        cluster,
        kubeconfig,
        &[
            "exec",
            "deployment/web",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "wc -c < /www/upload/copy; sha256sum /www/upload/copy",
        ],
    );
    eprintln!(
        "NOTE end-to-end: kubectl exec -i of {SIZE} bytes: exit {:?}; in the pod: {:?}; sha256 expected {expected}",
        upload.status.code(),
        String::from_utf8_lossy(&copied.stdout)
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
    );
}

/// The sha256 of a file, by coreutils' sha256sum.
fn sha256_of(path: &Path) -> String {
    let output = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The admission webhook of the test (tests/peers/webhook), its Service and
/// its registration: objects labelled `gantry.test/checked` go to it, and
/// with `failurePolicy: Fail` none is admitted unless it answers.
const WEBHOOK: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: webhook, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: webhook}}
  template:
    metadata: {labels: {app: webhook}}
    spec:
      containers:
      - name: webhook
        image: gantry.test/webhook:1
        imagePullPolicy: Never
        args: [-cert, /tls/tls.crt, -key, /tls/tls.key]
        ports: [{containerPort: 8443}]
        volumeMounts: [{name: tls, mountPath: /tls, readOnly: true}]
      volumes: [{name: tls, secret: {secretName: webhook-tls}}]
---
apiVersion: v1
kind: Service
metadata: {name: webhook, namespace: default}
spec:
  selector: {app: webhook}
  ports: [{port: 443, targetPort: 8443}]
";

/// An admission webhook served by a pod on the worker refuses a labelled
/// object with its own message and admits another: the apiserver reached
/// the webhook's Service, which exists only on the tenant's side.
pub fn a_webhook_in_the_tenant_refuses_and_admits(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
) {
    let openssl = tool("openssl");
    let (crt, key) = (dir.join("webhook.crt"), dir.join("webhook.key"));
    let made = std::process::Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=webhook.default.svc",
            "-addext",
            "subjectAltName=DNS:webhook.default.svc",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {}", output_text(&made));
    let secret = tenant_kubectl(
        cluster,
        kubeconfig,
        &[
            "create",
            "secret",
            "tls",
            "webhook-tls",
            &format!("--cert={}", crt.display()),
            &format!("--key={}", key.display()),
        ],
    );
    assert!(secret.status.success(), "{}", output_text(&secret));
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&crt).unwrap());
    let registration = format!(
        "---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: gantry-test}}
webhooks:
- name: deny.gantry.test
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  objectSelector: {{matchLabels: {{gantry.test/checked: \"true\"}}}}
  rules: [{{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}}]
  clientConfig:
    caBundle: {ca_bundle}
    service: {{name: webhook, namespace: default, path: /validate}}
"
    );
    tenant_apply(
        cluster,
        kubeconfig,
        dir,
        "webhook.yaml",
        &format!("{WEBHOOK}{registration}"),
    );
    wait_tenant(
        cluster,
        kubeconfig,
        "the webhook Deployment is available",
        Duration::from_secs(120),
        &[
            "get",
            "deployment",
            "webhook",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        |out| out == "1",
    );
    let create = |name: &str, deny: bool| {
        let labels = if deny {
            "gantry.test/checked=true gantry.test/deny=true"
        } else {
            "gantry.test/checked=true"
        };
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{{}}}\n",
            labels
                .split(' ')
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    format!("{k}: \"{v}\"")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        tenant_kubectl(
            cluster,
            kubeconfig,
            &["create", "-f", file.to_str().unwrap()],
        )
    };
    // The first calls may race the webhook's endpoints: retry for a while.
    let mut admitted = create("admitted-by-the-webhook", false);
    let answered = wait_until(Duration::from_secs(60), || {
        if admitted.status.success() {
            return true;
        }
        admitted = create("admitted-by-the-webhook", false);
        admitted.status.success()
    });
    assert!(
        answered,
        "the webhook never answered: {}",
        output_text(&admitted)
    );
    let refused = create("refused-by-the-webhook", true);
    assert!(!refused.status.success(), "a labelled object was admitted");
    assert!(
        output_text(&refused).contains("refused by the tenant's own webhook"),
        "{}",
        output_text(&refused)
    );
}

/// How long the tunnel may take to carry logs and webhook calls again after
/// an apiserver pod is replaced: its new server must be dialed by the agent,
/// which redials at once when a stream ends.
const TUNNEL_BACK_BOUND: Duration = Duration::from_secs(30);

/// Every apiserver replica's requests, whichever serves them, reach the
/// worker again: twenty rounds in a row of `kubectl logs` and a webhook
/// call succeed within [`TUNNEL_BACK_BOUND`]. Returns when the first
/// success of that streak came.
pub fn logs_and_the_webhook_work_through_the_tunnel(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
) -> Duration {
    let started = std::time::Instant::now();
    let mut last = String::new();
    let mut streak = 0;
    let mut attempt = 0;
    let mut first = None;
    let back = wait_until(TUNNEL_BACK_BOUND, || {
        attempt += 1;
        let logs = tenant_kubectl(cluster, kubeconfig, &["logs", "deployment/web", "--tail=1"]);
        if !logs.status.success() {
            last = output_text(&logs);
            streak = 0;
            return false;
        }
        let file = dir.join(format!("again-{attempt}.yaml"));
        std::fs::write(
            &file,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: again-{attempt}\n  labels: {{gantry.test/checked: \"true\"}}\n"),
        )
        .unwrap();
        let admitted = tenant_kubectl(
            cluster,
            kubeconfig,
            &["create", "-f", file.to_str().unwrap()],
        );
        if !admitted.status.success() {
            last = output_text(&admitted);
            streak = 0;
            return false;
        }
        if streak == 0 {
            first = Some(started.elapsed());
        }
        streak += 1;
        streak >= 20
    });
    assert!(
        back,
        "logs or the webhook did not work again within {TUNNEL_BACK_BOUND:?}: {last}"
    );
    first.expect("a first success")
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
        volumeMounts: [{name: upload, mountPath: /www/upload}]
      volumes: [{name: upload, emptyDir: {}}]
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
    tenant_apply(cluster, kubeconfig, dir, "web.yaml", WORKLOAD);
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
