//! gantry's control plane is kubeadm's, except where docs/kubeadm-conformance.md
//! says otherwise and why.
//!
//! For the ClusterConfiguration gantry renders (the tenant set's
//! `kubeadm-config`), the real kubeadm of the newest minor writes its static
//! Pod manifests (`kubeadm init phase control-plane all` and `phase etcd
//! local`, in dry-run mode into a temporary folder). Every flag of every
//! component is compared with gantry's rendered flags. Each difference must
//! be a row of the deviations table, and each row must still be a
//! difference, so an upstream change (a new flag, a changed default) fails
//! here on the next version bump until it is adopted or documented.
//!
//! `kubeadm config validate` accepts the rendered ClusterConfiguration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use gantry_tests::control_plane::{TenantShape, kubernetes_bin, render_with_endpoint};
use gantry_tests::kubelet::{find, read_objects};
use gantry_tests::{repo_root, run_ok};
use serde_json::Value;

type Flags = BTreeMap<String, String>;

/// A documentation address (TEST-NET-1): nothing connects to it here, and
/// kubeadm refuses link-local advertise addresses such as the other tests'.
const ENDPOINT: &str = "192.0.2.10:6443";

/// `--name=value` arguments as a map (a bare `--name` is `true`).
fn flags_of(args: &[Value]) -> Flags {
    args.iter()
        .map(|a| {
            let arg = a.as_str().unwrap();
            let arg = arg
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("not a flag: {arg}"));
            match arg.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => (arg.to_string(), "true".to_string()),
            }
        })
        .collect()
}

/// The container's probes as pseudo-flags `probe/<kind>` = `SCHEME path`,
/// so a change of kubeadm's health endpoints shows up like a flag's.
fn probes_of(container: &Value) -> Flags {
    ["startupProbe", "livenessProbe", "readinessProbe"]
        .into_iter()
        .filter(|kind| !container[*kind].is_null())
        .map(|kind| {
            let get = &container[kind]["httpGet"];
            (
                format!("probe/{kind}"),
                format!(
                    "{} {}",
                    get["scheme"].as_str().unwrap_or("HTTP"),
                    get["path"].as_str().unwrap_or("/")
                ),
            )
        })
        .collect()
}

/// The flags of each component that kubeadm's own phases write for the
/// bundle's ClusterConfiguration.
fn kubeadm_flags(bundle: &Path, version: &str, work: &Path) -> BTreeMap<String, Flags> {
    let tenant = read_objects(&bundle.join("tenant"));
    let cluster_configuration =
        find(&tenant, "ConfigMap", "kubeadm-config")["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap()
            .to_string();
    let endpoint = cluster_configuration
        .lines()
        .find_map(|l| l.trim().strip_prefix("controlPlaneEndpoint: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let (address, port) = endpoint.rsplit_once(':').unwrap();
    let config = work.join("kubeadm.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  \
             advertiseAddress: {address}\n  bindPort: {port}\nnodeRegistration:\n  name: control-plane\n\
             ---\n{cluster_configuration}"
        ),
    )
    .unwrap();
    let kubeadm = kubernetes_bin(version).join("kubeadm");
    let manifests = work.join("kubeadm-dry-run");
    std::fs::create_dir_all(&manifests).unwrap();
    for phase in [&["control-plane", "all"][..], &["etcd", "local"][..]] {
        run_ok(
            Command::new(&kubeadm)
                .args(["init", "phase"])
                .args(phase)
                .arg(format!("--config={}", config.display()))
                .arg("--dry-run")
                .env("KUBEADM_INIT_DRYRUN_DIR", &manifests),
        );
    }
    [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .into_iter()
    .map(|component| {
        let file = manifests.join(format!("{component}.yaml"));
        let pod: Value = serde_yaml::from_str(
            &std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        )
        .unwrap();
        let container = &pod["spec"]["containers"][0];
        let command = container["command"].as_array().unwrap();
        assert_eq!(command[0], component);
        let mut flags = flags_of(&command[1..]);
        flags.extend(probes_of(container));
        (component.to_string(), flags)
    })
    .collect()
}

/// The flags gantry renders for each component.
fn gantry_flags(bundle: &Path) -> BTreeMap<String, Flags> {
    let service = read_objects(&bundle.join("service"));
    let args = |kind: &str, name: &str| {
        let container = &find(&service, kind, name)["spec"]["template"]["spec"]["containers"][0];
        let mut flags = flags_of(container["args"].as_array().unwrap());
        flags.extend(probes_of(container));
        flags
    };
    BTreeMap::from([
        ("etcd".to_string(), args("StatefulSet", "etcd")),
        (
            "kube-apiserver".into(),
            args("Deployment", "kube-apiserver"),
        ),
        (
            "kube-controller-manager".into(),
            args("Deployment", "kube-controller-manager"),
        ),
        (
            "kube-scheduler".into(),
            args("Deployment", "kube-scheduler"),
        ),
    ])
}

/// (component, flag, how it differs): "kubeadm only", "gantry only", "value".
type Difference = (String, String, String);

fn differences(
    kubeadm: &BTreeMap<String, Flags>,
    gantry: &BTreeMap<String, Flags>,
) -> BTreeSet<Difference> {
    let mut out = BTreeSet::new();
    for (component, theirs) in kubeadm {
        let ours = &gantry[component];
        for (flag, value) in theirs {
            match ours.get(flag) {
                None => out.insert((component.clone(), flag.clone(), "kubeadm only".into())),
                Some(v) if v != value => {
                    out.insert((component.clone(), flag.clone(), "value".into()))
                }
                Some(_) => false,
            };
        }
        for flag in ours.keys().filter(|f| !theirs.contains_key(*f)) {
            out.insert((component.clone(), flag.clone(), "gantry only".into()));
        }
    }
    out
}

/// The rows of the deviations table in docs/kubeadm-conformance.md:
/// `| component | --flag or probe/<kind> | kubeadm only / gantry only / value | reason |`.
fn documented_deviations() -> BTreeSet<Difference> {
    let doc = std::fs::read_to_string(repo_root().join("docs/kubeadm-conformance.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| etcd ") || l.starts_with("| kube-"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells[2].trim_matches('`').trim_start_matches("--");
            assert!(
                !cells[4].is_empty(),
                "deviation {} {flag} has no reason",
                cells[1]
            );
            (cells[1].to_string(), flag.to_string(), cells[3].to_string())
        })
        .collect()
}

/// An HA tenant of the newest minor, rendered into `dir`: (version, bundle).
fn render_newest(dir: &Path) -> (String, std::path::PathBuf) {
    let version = gantry_renderer::versions::newest().to_string();
    let shape = TenantShape {
        name: "tenant-a",
        version: &version,
        subnet: 150,
        etcd: 3,
        apiservers: 2,
    };
    let bundle = render_with_endpoint(dir, &shape, ENDPOINT);
    (version, bundle)
}

#[test]
fn rendered_flags_are_kubeadms_but_for_the_documented_deviations() {
    let tmp = tempfile::tempdir().unwrap();
    let (version, bundle) = render_newest(tmp.path());
    let kubeadm = kubeadm_flags(&bundle, &version, tmp.path());
    let gantry = gantry_flags(&bundle);
    let actual = differences(&kubeadm, &gantry);
    let documented = documented_deviations();
    let undocumented: Vec<_> = actual.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&actual).collect();
    let show = |list: &[&Difference], flags: &BTreeMap<String, Flags>| {
        list.iter()
            .map(|(component, flag, how)| {
                format!(
                    "| {component} | `--{flag}` | {how} | kubeadm: {:?}, gantry: {:?} |",
                    kubeadm[component].get(flag),
                    flags[component].get(flag)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "differences from kubeadm {version} not in docs/kubeadm-conformance.md:\n{}\n\
         rows of the table that are no longer differences:\n{}",
        show(&undocumented, &gantry),
        show(&stale, &gantry)
    );
}

#[test]
fn kubeadm_config_validate_accepts_the_rendered_cluster_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let (version, bundle) = render_newest(tmp.path());
    let tenant = read_objects(&bundle.join("tenant"));
    let config = tmp.path().join("cluster-configuration.yaml");
    std::fs::write(
        &config,
        find(&tenant, "ConfigMap", "kubeadm-config")["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let output = run_ok(
        Command::new(kubernetes_bin(&version).join("kubeadm"))
            .args(["config", "validate", "--config"])
            .arg(&config),
    );
    assert!(output.contains("ok"), "{output}");
}
