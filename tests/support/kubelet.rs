//! Runs a rendered pod the way a kubelet would, with nothing else changed:
//!
//! - the container's `command` and `args` exactly as rendered, the image's
//!   binary taken from a folder of binaries built from upstream source;
//! - `$(VAR)` expanded from the container's `env` (values and the downward
//!   API's `metadata.name`, `metadata.namespace` and `status.podIP`);
//! - every `secret` and `projected` volume laid out from the rendered Secret
//!   objects with its `items` and `defaultMode`, owned by the pod's `fsGroup`;
//!   a claim of `volumeClaimTemplates` is an empty folder owned by the pod's
//!   user, kept across restarts of the same pod;
//! - the process runs as the pod's `runAsUser`/`runAsGroup`, with `fsGroup` as
//!   a supplementary group, on its own test host (network namespace).
//!
//! One thing differs from a kubelet: a volume is not mounted at its
//! `mountPath` (that would need folders such as /etc/kubernetes on the
//! machine, outside the test's own files). The folder that holds it is
//! written into the arguments where the `mountPath` appears instead.
//!
//! Probes are run as the kubelet runs them: an HTTP(S) GET of the pod's
//! address, certificates not verified, success for 200–399.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::KillOnDrop;
use crate::netns::Host;

/// The rendered Secrets and ConfigMaps, by name: key → decoded bytes.
#[derive(Default)]
pub struct Secrets(BTreeMap<String, BTreeMap<String, Vec<u8>>>);

impl Secrets {
    /// Collects every `kind: Secret` and `kind: ConfigMap` of `objects`.
    pub fn from_objects(objects: &[Value]) -> Self {
        let mut secrets = BTreeMap::new();
        for object in objects.iter().filter(|o| o["kind"] == "ConfigMap") {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let data = object["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap().as_bytes().to_vec()))
                .collect();
            secrets.insert(name, data);
        }
        for object in objects.iter().filter(|o| o["kind"] == "Secret") {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let data = object["data"]
                .as_object()
                .map(|data| {
                    data.iter()
                        .map(|(key, value)| {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(value.as_str().unwrap())
                                .unwrap_or_else(|e| panic!("Secret {name} key {key}: {e}"));
                            (key.clone(), bytes)
                        })
                        .collect()
                })
                .unwrap_or_default();
            secrets.insert(name, data);
        }
        Secrets(secrets)
    }

    fn get(&self, name: &str) -> &BTreeMap<String, Vec<u8>> {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("the pod mounts {name}, which was not rendered"))
    }
}

/// A pod to run: its name, the `spec` of its pod template, and the names of
/// its `volumeClaimTemplates` (a StatefulSet's).
pub struct PodSpec<'a> {
    pub name: String,
    pub namespace: &'a str,
    pub spec: &'a Value,
    pub claims: Vec<String>,
}

impl<'a> PodSpec<'a> {
    /// The pods of a rendered StatefulSet or Deployment: `<name>-<ordinal>`.
    pub fn of_workload(workload: &'a Value, ordinal: usize) -> Self {
        let name = workload["metadata"]["name"].as_str().unwrap();
        let claims = workload["spec"]["volumeClaimTemplates"]
            .as_array()
            .map(|claims| {
                claims
                    .iter()
                    .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        PodSpec {
            name: format!("{name}-{ordinal}"),
            namespace: workload["metadata"]["namespace"].as_str().unwrap(),
            spec: &workload["spec"]["template"]["spec"],
            claims,
        }
    }

    fn container(&self) -> &Value {
        let containers = self.spec["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{}: one container per pod", self.name);
        &containers[0]
    }
}

/// A running pod: its process (killed on drop), host and log.
pub struct RunningPod {
    pub name: String,
    pub host: Host,
    pub log: PathBuf,
    pub process: KillOnDrop,
    container: Value,
}

impl RunningPod {
    /// The last `lines` lines of the pod's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {} ({})\n{}",
            self.name,
            self.log.display(),
            tail.join("\n")
        )
    }

    /// Resident memory of the process, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Runs the container's probe `kind` ("readinessProbe", "startupProbe",
    /// "livenessProbe") once from `node`, as the kubelet does. A container
    /// without that probe counts as passing, as in Kubernetes.
    pub fn probe(&self, kind: &str, node: &Host) -> bool {
        let probe = &self.container[kind];
        if probe.is_null() {
            return true;
        }
        let get = &probe["httpGet"];
        assert!(
            get.is_object(),
            "{}: only httpGet probes are rendered",
            self.name
        );
        let port =
            match &get["port"] {
                Value::Number(n) => n.to_string(),
                Value::String(name) => self.container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name.as_str())
                    .unwrap_or_else(|| panic!("{}: probe port {name} is not declared", self.name))
                    ["containerPort"]
                    .to_string(),
                other => panic!("{}: probe port {other}", self.name),
            };
        let scheme = get["scheme"].as_str().unwrap_or("HTTP").to_lowercase();
        let url = format!(
            "{scheme}://{}:{port}{}",
            self.host.address,
            get["path"].as_str().unwrap_or("/")
        );
        let output = node
            .command("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "3",
            ])
            .arg(&url)
            .output()
            .expect("run curl (apt-get install curl)");
        let code: u16 = String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0);
        (200..400).contains(&code)
    }
}

/// What the kubelet does to a container's command line: `$(VAR)` from env.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

fn container_env(pod: &PodSpec, container: &Value, address: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = if let Some(value) = var["value"].as_str() {
            value.to_string()
        } else {
            match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod.name.clone(),
                Some("metadata.namespace") => pod.namespace.to_string(),
                Some("status.podIP") => address.to_string(),
                other => panic!("{}: env {name} from {other:?} is not emulated", pod.name),
            }
        };
        env.insert(name, value);
    }
    env
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, group: Option<u32>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some(group) = group {
        std::os::unix::fs::chown(path, Some(0), Some(group)).unwrap();
    }
}

/// Lays out one `secret`, `configMap` or `projected` volume into `dir`.
fn lay_out_volume(volume: &Value, secrets: &Secrets, dir: &Path, fs_group: Option<u32>) {
    let items_of = |source: &Value, default_mode: u32| {
        let name = source["secretName"]
            .as_str()
            .or(source["name"].as_str())
            .unwrap();
        let data = secrets.get(name);
        match source["items"].as_array() {
            Some(items) => {
                for item in items {
                    let key = item["key"].as_str().unwrap();
                    let bytes = data
                        .get(key)
                        .unwrap_or_else(|| panic!("Secret {name} has no key {key}"));
                    let mode = item["mode"].as_u64().map_or(default_mode, |m| m as u32);
                    write_file(
                        &dir.join(item["path"].as_str().unwrap()),
                        bytes,
                        mode,
                        fs_group,
                    );
                }
            }
            None => {
                for (key, bytes) in data {
                    write_file(&dir.join(key), bytes, default_mode, fs_group);
                }
            }
        }
    };
    std::fs::create_dir_all(dir).unwrap();
    if let Some(source) = volume.get("secret").or(volume.get("configMap")) {
        let mode = source["defaultMode"].as_u64().unwrap_or(0o644) as u32;
        items_of(source, mode);
    } else if let Some(projected) = volume.get("projected") {
        let mode = projected["defaultMode"].as_u64().unwrap_or(0o644) as u32;
        for source in projected["sources"].as_array().unwrap() {
            items_of(source.get("secret").unwrap_or(&source["configMap"]), mode);
        }
    } else {
        panic!(
            "volume {} is neither a Secret, a ConfigMap nor projected",
            volume["name"]
        );
    }
}

/// Starts `pod` on `host`, with volumes under `root/<pod name>/` and the
/// container's binary from `bin_dir`.
pub fn run_pod(
    pod: &PodSpec,
    secrets: &Secrets,
    host: &Host,
    bin_dir: &Path,
    root: &Path,
) -> RunningPod {
    let container = pod.container();
    let security = &pod.spec["securityContext"];
    let user = security["runAsUser"].as_u64().expect("runAsUser") as u32;
    let group = security["runAsGroup"].as_u64().expect("runAsGroup") as u32;
    let fs_group = security["fsGroup"].as_u64().map(|g| g as u32);

    let pod_dir = root.join(&pod.name);
    let mut volume_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for volume in pod.spec["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap();
        let dir = pod_dir.join("volumes").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        lay_out_volume(volume, secrets, &dir, fs_group);
        volume_dirs.insert(name.to_string(), dir);
    }
    for claim in &pod.claims {
        let dir = pod_dir.join("claims").join(claim);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(user), fs_group.or(Some(group))).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        volume_dirs.insert(claim.clone(), dir);
    }

    // Longest mount path first, so /etc/kubernetes/pki wins over /etc/kubernetes.
    let mut mounts: Vec<(String, PathBuf)> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["name"].as_str().unwrap();
            let dir = volume_dirs
                .get(name)
                .unwrap_or_else(|| panic!("{}: mount of unknown volume {name}", pod.name));
            (m["mountPath"].as_str().unwrap().to_string(), dir.clone())
        })
        .collect();
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let mounted = |arg: String| {
        mounts.iter().fold(arg, |arg, (path, dir)| {
            arg.replace(path.as_str(), dir.to_str().unwrap())
        })
    };

    let env = container_env(pod, container, &host.address);
    let command: Vec<&str> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let [binary] = command.as_slice() else {
        panic!(
            "{}: command {command:?} is not the image's binary",
            pod.name
        )
    };
    let binary = bin_dir.join(binary);
    assert!(
        binary.exists(),
        "{} is not built: run scripts/install-test-tools",
        binary.display()
    );
    let args: Vec<String> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| mounted(expand(a.as_str().unwrap(), &env)))
        .collect();

    let log = root.join(format!("{}.log", pod.name));
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut run = host.command("setpriv");
    run.arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg(format!("--groups={}", fs_group.unwrap_or(group)))
        .arg(&binary)
        .args(&args)
        .envs(&env)
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    RunningPod {
        name: pod.name.clone(),
        host: host.clone(),
        log,
        process: KillOnDrop::spawn(&mut run),
        container: container.clone(),
    }
}

/// Reads every object of a rendered folder (`service/` or `tenant/`), in
/// file order; a file may hold several documents.
pub fn read_objects(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).unwrap();
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    objects
}

use serde::Deserialize as _;

/// The one object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} was rendered"))
}
