//! A rendered tenant's control plane, run for real: its etcd StatefulSet and
//! its kube-apiserver, kube-controller-manager and kube-scheduler
//! Deployments, each pod on a test host of its own (see `kubelet` for what is
//! substituted and `netns` for the network), from the binaries of the
//! tenant's own Kubernetes minor built by scripts/install-test-tools.
//!
//! The tenant's endpoint is a virtual IP on the test network, held by one
//! apiserver host at a time (as keepalived or a cloud load balancer would);
//! `admin.conf` reaches the apiservers through it. The Service names the
//! kubeconfigs and certificates use (`kube-apiserver.<ns>.svc`,
//! `etcd-N.etcd.<ns>.svc`) resolve to the pods' addresses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::kubelet::{PodSpec, RunningPod, Secrets, find, read_objects, run_pod};
use crate::netns::{Host, TestNetwork};
use crate::{tool, tools_bin, wait_until};

/// The version table's minors, as `1.X.Y` at each default patch.
pub fn supported_versions() -> Vec<String> {
    gantry_renderer::versions::SUPPORTED
        .iter()
        .map(|r| format!("1.{}.{}", r.minor, r.default_patch))
        .collect()
}

/// The folder of Kubernetes binaries built for `version` (`1.X.Y`).
pub fn kubernetes_bin(version: &str) -> PathBuf {
    built(&format!("kubernetes/v{version}/bin"), "kube-apiserver")
}

/// The folder of the etcd that kubeadm pins for `version`'s minor.
pub fn etcd_bin(version: &str) -> PathBuf {
    let version: gantry_renderer::versions::KubeVersion =
        version.parse().expect("a supported Kubernetes version");
    let release = gantry_renderer::versions::release(version.minor).expect("a supported minor");
    let etcd = release.etcd.trim_end_matches("-0");
    built(&format!("etcd/v{etcd}/bin"), "etcd")
}

/// `relative` under the tools folder, which must hold `binary`, built by
/// scripts/install-test-tools.
fn built(relative: &str, binary: &str) -> PathBuf {
    let dir = tools_bin().parent().unwrap().join(relative);
    assert!(
        dir.join(binary).exists(),
        "{binary} is not built in {}: run scripts/install-test-tools",
        dir.display()
    );
    dir
}

/// One control plane at a time: each takes most of the machine's two cores
/// while it starts.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a test tenant looks like.
pub struct TenantShape<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The third octet of the tenant's test network: 198.18.<subnet>.0/24.
    pub subnet: u8,
    pub etcd: usize,
    pub apiservers: usize,
}

/// The virtual IP of a test tenant: its endpoint.
const VIP: u8 = 200;

/// The pod addresses of a test tenant, 198.19.<subnet>.0/24: inside the
/// test range, so a worker's pods use only the test's own addresses. The
/// controller-manager gives the whole range to the first node.
pub fn pod_cidr(shape: &TenantShape) -> String {
    pod_cidr_of_subnet(shape.subnet)
}

/// [`pod_cidr`] of the tenant on test network 198.18.`subnet`.0/24.
pub fn pod_cidr_of_subnet(subnet: u8) -> String {
    format!("198.19.{subnet}.0/24")
}

/// Renders a tenant with `gantry render` into `dir/<name>` and returns the
/// bundle folder. The endpoint is the tenant network's virtual IP.
pub fn render_tenant(dir: &Path, shape: &TenantShape) -> PathBuf {
    let endpoint = format!("198.18.{}.{VIP}:6443", shape.subnet);
    render_with_endpoint(dir, shape, &endpoint)
}

/// Renders a tenant of `shape` whose endpoint is `endpoint` (`IP:PORT`).
/// Without the konnectivity tunnel: this runner starts one process per pod,
/// the apiserver's alone, and its nodes share the test network with the
/// masters. The tunnel runs for real in tests/konnectivity.rs and in the
/// end-to-end test, where the masters are pods of a real kubelet.
pub fn render_with_endpoint(dir: &Path, shape: &TenantShape, endpoint: &str) -> PathBuf {
    let manifest = dir.join(format!("{}.yaml", shape.name));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {name}\n\
             spec:\n  version: {version}\n  apiServer:\n    replicas: {apiservers}\n    \
             endpoint: {endpoint}\n  controllerManager:\n    replicas: 1\n  \
             scheduler:\n    replicas: 1\n  etcd:\n    replicas: {etcd}\n  \
             networking:\n    podCIDR: {pod_cidr}\n  konnectivity:\n    enabled: false\n",
            pod_cidr = pod_cidr(shape),
            name = shape.name,
            version = shape.version,
            apiservers = shape.apiservers,
            etcd = shape.etcd,
        ),
    )
    .unwrap();
    let out = dir.join(shape.name);
    crate::render_manifest(&manifest, &out);
    out
}

/// A tenant of the newest minor with one etcd member and one apiserver,
/// started in `dir` and ready, with its tenant set applied: what a worker
/// joins. Returns the running plane (its bundle is `plane.bundle`).
pub fn start_small_tenant(dir: &Path, name: &str, subnet: u8) -> ControlPlane {
    let version = gantry_renderer::versions::newest().to_string();
    let shape = TenantShape {
        name,
        version: &version,
        subnet,
        etcd: 1,
        apiservers: 1,
    };
    let bundle = render_tenant(dir, &shape);
    let mut plane = ControlPlane::start(&bundle, &shape, &dir.join("run"));
    plane.wait_ready(Duration::from_secs(120));
    plane.apply_tenant_set();
    plane
}

/// The client certificate and key of a bundle's kubeconfig, as PEM files
/// in the bundle; returns their paths, for curl's `--cert` and `--key`.
pub fn client_credentials(bundle: &Path, kubeconfig: &str) -> (String, String) {
    let config = serde_yaml::from_str::<serde_json::Value>(
        &std::fs::read_to_string(bundle.join(kubeconfig)).unwrap(),
    )
    .unwrap();
    let user = &config["users"][0]["user"];
    let decode = |key: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(user[key].as_str().unwrap())
            .unwrap()
    };
    let cert = bundle.join(format!("{kubeconfig}-client.crt"));
    let key = bundle.join(format!("{kubeconfig}-client.key"));
    std::fs::write(&cert, decode("client-certificate-data")).unwrap();
    std::fs::write(&key, decode("client-key-data")).unwrap();
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// A running tenant control plane; every process and namespace goes on drop.
pub struct ControlPlane {
    pub bundle: PathBuf,
    pub namespace: String,
    pub vip: String,
    /// The host the tests act from: kubectl, probes, curl.
    pub node: Host,
    pub etcd: Vec<RunningPod>,
    pub apiservers: Vec<RunningPod>,
    pub controller_manager: RunningPod,
    pub scheduler: RunningPod,
    /// When the first process started.
    pub started: Instant,
    pub network: TestNetwork,
    vip_holder: usize,
}

impl ControlPlane {
    /// Starts every pod of the bundle's service set. `root` (made if
    /// missing) holds volumes and logs; it is made traversable by the pods' user.
    pub fn start(bundle: &Path, shape: &TenantShape, root: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let service = read_objects(&bundle.join("service"));
        let secrets = Secrets::from_objects(&service);
        let statefulset = find(&service, "StatefulSet", "etcd");
        let namespace = statefulset["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        let deployment = |name: &str| find(&service, "Deployment", name).clone();
        let (apiserver, controller_manager, scheduler) = (
            deployment("kube-apiserver"),
            deployment("kube-controller-manager"),
            deployment("kube-scheduler"),
        );

        let mut network = TestNetwork::new(&format!("198.18.{}", shape.subnet));
        let etcd_address = |i: usize| 10 + i as u8;
        let apiserver_address = |i: usize| 20 + i as u8;
        for i in 0..shape.etcd {
            let address = network.address(etcd_address(i));
            network.resolve(&format!("etcd-{i}.etcd.{namespace}.svc"), &address);
        }
        for i in 0..shape.apiservers {
            let address = network.address(apiserver_address(i));
            network.resolve(&format!("kube-apiserver.{namespace}.svc"), &address);
        }
        let node = network.host("node", 100);
        let vip = network.address(VIP);

        let kube_bin = kubernetes_bin(shape.version);
        let etcd_dir = etcd_bin(shape.version);
        let started = Instant::now();
        let etcd: Vec<RunningPod> = (0..shape.etcd)
            .map(|i| {
                let host = network.host(&format!("etcd{i}"), etcd_address(i));
                let pod = PodSpec::of_workload(statefulset, i);
                run_pod(&pod, &secrets, &host, &etcd_dir, root)
            })
            .collect();
        let apiservers: Vec<RunningPod> = (0..shape.apiservers)
            .map(|i| {
                let host = network.host(&format!("api{i}"), apiserver_address(i));
                if i == 0 {
                    network.move_virtual_ip(&vip, None, &host);
                }
                let pod = PodSpec::of_workload(&apiserver, i);
                run_pod(&pod, &secrets, &host, &kube_bin, root)
            })
            .collect();
        let controller_manager = {
            let host = network.host("kcm", 30);
            run_pod(
                &PodSpec::of_workload(&controller_manager, 0),
                &secrets,
                &host,
                &kube_bin,
                root,
            )
        };
        let scheduler = {
            let host = network.host("sched", 31);
            run_pod(
                &PodSpec::of_workload(&scheduler, 0),
                &secrets,
                &host,
                &kube_bin,
                root,
            )
        };
        ControlPlane {
            bundle: bundle.to_path_buf(),
            namespace,
            vip,
            node,
            etcd,
            apiservers,
            controller_manager,
            scheduler,
            started,
            network,
            vip_holder: 0,
        }
    }

    fn pods(&self) -> impl Iterator<Item = &RunningPod> {
        self.etcd
            .iter()
            .chain(&self.apiservers)
            .chain([&self.controller_manager, &self.scheduler])
    }

    /// The last lines of every pod's log.
    pub fn logs(&self) -> String {
        self.pods()
            .map(|pod| pod.log_tail(15))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Resident memory of every process, in KiB, by pod name.
    pub fn rss_kib(&self) -> Vec<(String, u64)> {
        self.pods().map(|p| (p.name.clone(), p.rss_kib())).collect()
    }

    /// Waits until every running pod passes its startup and readiness probes,
    /// failing at once (with the logs) if a process exits.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for pod in self
                .etcd
                .iter_mut()
                .chain(&mut self.apiservers)
                .chain([&mut self.controller_manager, &mut self.scheduler])
            {
                if pod.process.has_exited() {
                    waiting.push(format!("{} exited", pod.name));
                    continue;
                }
                if !pod.probe("startupProbe", &self.node)
                    || !pod.probe("readinessProbe", &self.node)
                {
                    waiting.push(pod.name.clone());
                }
            }
            if waiting.is_empty() {
                return;
            }
            if waiting.iter().any(|w| w.ends_with("exited")) || Instant::now() > deadline {
                panic!("not ready: {waiting:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Applies the bundle's tenant set with `kubectl apply --server-side` and
    /// `super-admin.conf`, as the README says. Until then `admin.conf` can
    /// read only what any authenticated user may (its group is bound to
    /// cluster-admin by the tenant set, as kubeadm's init does).
    pub fn apply_tenant_set(&self) {
        let tenant = self.bundle.join("tenant");
        self.kubectl_ok(
            "super-admin.conf",
            &[
                "apply",
                "--server-side",
                "--field-manager=gantry",
                "-f",
                tenant.to_str().unwrap(),
            ],
        );
    }

    /// kubectl (the newest minor's) on the node host with one of the bundle's
    /// kubeconfigs (`admin.conf`, `super-admin.conf`, or any path).
    pub fn kubectl(&self, kubeconfig: &str, args: &[&str]) -> Output {
        let kubeconfig = self.bundle.join(kubeconfig);
        self.node
            .command(tool("kubectl"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--request-timeout=10s")
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// etcdctl on the node host against the first etcd member, as the
    /// apiserver connects: its etcd client certificate from the bundle.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let pki = |file: &str| self.bundle.join("pki").join(file);
        self.node
            .command(tool("etcdctl"))
            // The name etcd's serving certificate carries, as the apiserver uses.
            .arg(format!(
                "--endpoints=https://etcd-0.etcd.{}.svc:2379",
                self.namespace
            ))
            .arg(format!("--cacert={}", pki("etcd/ca.crt").display()))
            .arg(format!(
                "--cert={}",
                pki("apiserver-etcd-client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                pki("apiserver-etcd-client.key").display()
            ))
            .args(args)
            .output()
            .expect("run etcdctl")
    }

    /// The HTTP status of `curl` from the node host to `url` (an
    /// `https://` address of this plane), trusting the plane's CA, with
    /// `auth`: curl's `--cert` and `--key`, or nothing for an anonymous
    /// request (and `-k` for the self-signed ports of the controller-manager
    /// and the scheduler).
    pub fn curl_status(&self, url: &str, auth: &[&str]) -> String {
        let output = self
            .node
            .command("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["--max-time", "10", "--cacert"])
            .arg(self.bundle.join("pki/ca.crt"))
            .args(auth)
            .arg(url)
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// helm on the node host with `admin.conf`, its cache and configuration
    /// in the bundle (nothing of the machine's own).
    pub fn helm(&self, args: &[&str]) -> Output {
        self.node
            .command(tool("helm"))
            .args(args)
            .arg(format!(
                "--kubeconfig={}",
                self.bundle.join("admin.conf").display()
            ))
            .env("HELM_CACHE_HOME", self.bundle.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.bundle.join("helm/config"))
            .env("HELM_DATA_HOME", self.bundle.join("helm/data"))
            .output()
            .expect("run helm")
    }

    /// `helm install gantry chart/gantry` into namespace gantry-system, with
    /// `extra` arguments (`--set …`).
    pub fn helm_install_operator_chart(&self, extra: &[&str]) -> Output {
        let chart = crate::repo_root().join("chart/gantry");
        let mut args = vec![
            "install",
            "gantry",
            chart.to_str().unwrap(),
            "-n",
            "gantry-system",
            "--create-namespace",
        ];
        args.extend(extra);
        self.helm(&args)
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, kubeconfig: &str, args: &[&str]) -> String {
        let output = self.kubectl(kubeconfig, args);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Polls kubectl until it succeeds and `accept` takes its stdout, which
    /// it returns.
    pub fn wait_kubectl(
        &self,
        what: &str,
        timeout: Duration,
        kubeconfig: &str,
        args: &[&str],
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        let mut accepted = String::new();
        let ok = wait_until(timeout, || {
            let output = self.kubectl(kubeconfig, args);
            last = crate::output_text(&output);
            accepted = String::from_utf8_lossy(&output.stdout).into_owned();
            output.status.success() && accept(&accepted)
        });
        assert!(
            ok,
            "{what}: never happened; last kubectl said: {last}\n{}",
            self.logs()
        );
        accepted
    }

    /// Polls `kube-public/cluster-info` until `accept` takes it; returns it.
    pub fn wait_cluster_info(&self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let json = self.wait_kubectl(
            what,
            Duration::from_secs(60),
            "admin.conf",
            &[
                "-n",
                "kube-public",
                "get",
                "configmap",
                "cluster-info",
                "-o",
                "json",
            ],
            |out| serde_json::from_str(out).is_ok_and(|info| accept(&info)),
        );
        serde_json::from_str(&json).expect("cluster-info as JSON")
    }

    /// Kills apiserver `index` and moves the virtual IP to the next one, as
    /// the load balancer's health check would.
    pub fn kill_apiserver(&mut self, index: usize) {
        self.apiservers[index].process.kill();
        if self.vip_holder == index {
            let next = (index + 1) % self.apiservers.len();
            self.network.move_virtual_ip(
                &self.vip,
                Some(&self.apiservers[index].host),
                &self.apiservers[next].host,
            );
            self.vip_holder = next;
        }
    }
}

/// The tenant's `.spec.holderIdentity` and `.spec.renewTime` of Lease
/// `kube-system/<name>`, if it has a holder.
pub fn lease(plane: &ControlPlane, name: &str) -> Option<(String, String)> {
    let output = plane.kubectl(
        "admin.conf",
        &["-n", "kube-system", "get", "lease", name, "-o", "json"],
    );
    if !output.status.success() {
        return None;
    }
    let lease: Value = serde_json::from_slice(&output.stdout).ok()?;
    let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
    let renewed = lease["spec"]["renewTime"].as_str()?.to_string();
    (!holder.is_empty()).then_some((holder, renewed))
}

/// Runs `command` and returns its output, for tools run outside kubectl.
pub fn output_of(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}
