//! Two tenants on the newest minor, run for real (see `control_plane.rs`),
//! and what each must refuse of the other:
//! - tenant B's `admin.conf` credentials are refused by tenant A's apiserver;
//! - an apiserver of A given B's etcd client certificate cannot use A's etcd;
//! - a service-account token minted by B's apiserver is refused by A's (and
//!   accepted by B's, so the token itself is good).
//!
//! Tenant A's apiserver then serves as a real service cluster for tenant B's
//! service set: every object passes `kubectl apply --server-side
//! --dry-run=server` in B's namespace, which carries Pod Security
//! `restricted`, without a warning, and every pod template is admitted as a
//! Pod (so schema, defaulting and Pod Security admission are the real ones).

use std::path::Path;
use std::time::Duration;

use gantry_tests::control_plane::{
    ControlPlane, TenantShape, client_credentials, one_at_a_time, render_tenant,
};
use gantry_tests::kubelet::{PodSpec, Secrets, find, read_objects, run_pod};
use gantry_tests::wait_until;
use serde_json::{Value, json};

fn newest() -> String {
    gantry_renderer::versions::newest().to_string()
}

fn small<'a>(name: &'a str, version: &'a str, subnet: u8) -> TenantShape<'a> {
    TenantShape {
        name,
        version,
        subnet,
        etcd: 1,
        apiservers: 1,
    }
}

/// The HTTP status of `curl` against `plane`'s endpoint, trusting its CA.
fn status_from(plane: &ControlPlane, path: &str, auth: &[&str]) -> String {
    plane.curl_status(&format!("https://{}:6443{path}", plane.vip), auth)
}

#[test]
fn tenants_refuse_each_others_credentials_and_the_service_set_passes_dry_run() {
    let _one = one_at_a_time();
    let version = newest();
    let tmp = tempfile::tempdir().unwrap();
    let (shape_a, shape_b) = (
        small("tenant-a", &version, 140),
        small("tenant-b", &version, 141),
    );
    let bundle_a = render_tenant(tmp.path(), &shape_a);
    let bundle_b = render_tenant(tmp.path(), &shape_b);
    let root_a = tmp.path().join("run-a");
    let root_b = tmp.path().join("run-b");
    let mut a = ControlPlane::start(&bundle_a, &shape_a, &root_a);
    let mut b = ControlPlane::start(&bundle_b, &shape_b, &root_b);
    a.wait_ready(Duration::from_secs(120));
    b.wait_ready(Duration::from_secs(120));
    a.apply_tenant_set();
    b.apply_tenant_set();

    // B's admin credentials at A's door.
    let (own_cert, own_key) = client_credentials(&bundle_a, "admin.conf");
    let (cert, key) = client_credentials(&bundle_b, "admin.conf");
    assert_eq!(
        status_from(&a, "/api", &["--cert", &own_cert, "--key", &own_key]),
        "200"
    );
    assert_eq!(
        status_from(&a, "/api", &["--cert", &cert, "--key", &key]),
        "401",
        "tenant A's apiserver accepted tenant B's admin certificate"
    );

    // A token minted by B's apiserver.
    // The controller-manager's service-account controller makes "default".
    let token = b.wait_kubectl(
        "a token minted by tenant B's apiserver",
        Duration::from_secs(60),
        "admin.conf",
        &["-n", "kube-system", "create", "token", "default"],
        |out| !out.trim().is_empty(),
    );
    let bearer = format!("Authorization: Bearer {}", token.trim());
    assert_eq!(status_from(&b, "/api", &["-H", &bearer]), "200");
    assert_eq!(
        status_from(&a, "/api", &["-H", &bearer]),
        "401",
        "tenant A's apiserver accepted a token of tenant B"
    );

    an_apiserver_with_another_tenants_etcd_certificate_is_refused(&mut a, &bundle_b, &root_a);
    the_service_set_passes_server_side_dry_run(&a, &bundle_b);
    drop(b);
}

fn an_apiserver_with_another_tenants_etcd_certificate_is_refused(
    a: &mut ControlPlane,
    bundle_b: &Path,
    root: &Path,
) {
    let service_a = read_objects(&a.bundle.join("service"));
    let service_b = read_objects(&bundle_b.join("service"));
    let mut secrets: Vec<Value> = service_a
        .iter()
        .filter(|o| o["kind"] == "Secret" || o["kind"] == "ConfigMap")
        .cloned()
        .collect();
    let stolen = &find(&service_b, "Secret", "apiserver-certs")["data"];
    for secret in secrets.iter_mut() {
        if secret["metadata"]["name"] == "apiserver-certs" {
            for key in ["apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
                secret["data"][key] = stolen[key].clone();
            }
        }
    }
    let secrets = Secrets::from_objects(&secrets);
    let deployment = find(&service_a, "Deployment", "kube-apiserver");
    let host = a.network.host("intruder", 99);
    let pod = PodSpec::of_workload(deployment, 9);
    let intruder = run_pod(
        &pod,
        &secrets,
        &host,
        &gantry_tests::control_plane::kubernetes_bin(&newest()),
        root,
    );
    let etcd_log = &a.etcd[0].log;
    let refused = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(etcd_log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("rejected connection") && l.contains(&host.address))
    });
    assert!(
        refused,
        "A's etcd did not refuse B's client certificate\n{}\n{}",
        a.logs(),
        intruder.log_tail(20)
    );
    assert!(
        !intruder.probe("readinessProbe", &a.node),
        "an apiserver with another tenant's etcd certificate became ready"
    );
}

fn the_service_set_passes_server_side_dry_run(service_cluster: &ControlPlane, bundle: &Path) {
    let service = bundle.join("service");
    let objects = read_objects(&service);
    let namespace = find(&objects, "Namespace", "tcp-tenant-b");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let namespace_file = std::fs::read_dir(&service)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .ends_with("-namespace-tcp-tenant-b.yaml")
        })
        .expect("the rendered Namespace file");
    service_cluster.kubectl_ok(
        "admin.conf",
        &[
            "apply",
            "--server-side",
            "-f",
            namespace_file.to_str().unwrap(),
        ],
    );
    let dry_run = service_cluster.kubectl(
        "admin.conf",
        &[
            "apply",
            "--server-side",
            "--field-manager=gantry",
            "--dry-run=server",
            "-f",
            service.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&dry_run.stderr);
    assert!(
        dry_run.status.success() && !stderr.contains("Warning"),
        "server-side dry run of the service set: {stderr}"
    );
    let applied = String::from_utf8_lossy(&dry_run.stdout);
    assert_eq!(
        applied.lines().count(),
        objects.len(),
        "every object was applied: {applied}"
    );

    // Pod Security `enforce` judges Pods: admit each pod template as one.
    for workload in objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
    {
        let template = &workload["spec"]["template"];
        let name = workload["metadata"]["name"].as_str().unwrap();
        // The StatefulSet controller adds a volume for each claim template.
        let mut spec = template["spec"].clone();
        for claim in workload["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let claim = claim["metadata"]["name"].as_str().unwrap();
            spec["volumes"].as_array_mut().unwrap().push(json!({
                "name": claim,
                "persistentVolumeClaim": {"claimName": format!("{claim}-{name}-0")},
            }));
        }
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("{name}-0"),
                "namespace": "tcp-tenant-b",
                "labels": template["metadata"]["labels"],
            },
            "spec": spec,
        });
        let file = bundle.join("pod.json");
        std::fs::write(&file, pod.to_string()).unwrap();
        let created = service_cluster.kubectl(
            "admin.conf",
            &["create", "--dry-run=server", "-f", file.to_str().unwrap()],
        );
        assert!(
            created.status.success(),
            "{name} as a Pod: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
}
