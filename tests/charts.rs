//! The operator chart (`chart/gantry`) and the tenant chart (`chart/tenant`),
//! checked with the real helm binary: strict lint, `helm template` with the
//! default values and every `ci/*-values.yaml`, every rendered document
//! parsed into its typed form with nothing lost, typos in values refused,
//! no wildcard in the ClusterRole, and the CRD identical to `gantry crd`.

use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_tests::{repo_root, tenant_values_schema, tool};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;

fn chart(name: &str) -> PathBuf {
    repo_root().join("chart").join(name)
}

fn gantry_crd() -> String {
    gantry_tests::gantry_ok(&["crd"])
}

/// The chart's values files: the defaults (`None`) and every `ci/*-values.yaml`.
fn values_files(chart: &Path) -> Vec<Option<PathBuf>> {
    let mut files: Vec<Option<PathBuf>> = std::fs::read_dir(chart.join("ci"))
        .expect("the chart has a ci/ folder")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with("-values.yaml"))
        .map(Some)
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no ci/*-values.yaml in {}",
        chart.display()
    );
    files.insert(0, None);
    // The values example a user copies must keep working too.
    if chart.ends_with("tenant") {
        files.push(Some(repo_root().join("examples/tenant-values.yaml")));
    }
    files
}

fn helm(args: &[&str], chart: &Path, values: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(tool("helm"));
    command.args(args).arg(chart);
    if let Some(values) = values {
        command.arg("-f").arg(values);
    }
    command.output().expect("run helm")
}

fn template(release: &str, chart: &Path, values: Option<&Path>) -> Vec<Value> {
    let output = helm(&["template", release, "-n", "gantry-system"], chart, values);
    assert!(
        output.status.success(),
        "helm template {} {values:?}: {}",
        chart.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("helm output is YAML"))
        .filter(|document| !document.is_null())
        .collect()
}

/// Parses `document` into its type; `Err` names the first field lost or changed.
fn check_typed(document: &Value) -> Result<(), String> {
    use gantry_renderer::check_as;
    let kind = (
        document["apiVersion"].as_str().unwrap_or_default(),
        document["kind"].as_str().unwrap_or_default(),
    );
    let result = match kind {
        ("apps/v1", "Deployment") => check_as::<Deployment>(document),
        ("v1", "Service") => check_as::<Service>(document),
        ("v1", "ServiceAccount") => check_as::<ServiceAccount>(document),
        ("networking.k8s.io/v1", "NetworkPolicy") => check_as::<NetworkPolicy>(document),
        ("policy/v1", "PodDisruptionBudget") => check_as::<PodDisruptionBudget>(document),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => check_as::<ClusterRole>(document),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            check_as::<ClusterRoleBinding>(document)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => check_as::<Role>(document),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            check_as::<ValidatingAdmissionPolicy>(document)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            check_as::<ValidatingAdmissionPolicyBinding>(document)
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => check_as::<RoleBinding>(document),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            check_as::<CustomResourceDefinition>(document)
        }
        ("gantry.dev/v1alpha1", "TenantControlPlane") => {
            // The CRD type fills defaults when serialised, so a round trip
            // adds fields; parsing refuses unknown fields and wrong types.
            let text = serde_yaml::to_string(document).unwrap();
            return gantry_controller::api::TenantControlPlane::from_yaml(&text)
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        // No k8s-openapi type: the Prometheus Operator's CRD. Checked by shape.
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            return (document["spec"]["endpoints"][0]["port"] == "metrics")
                .then_some(())
                .ok_or_else(|| "ServiceMonitor does not scrape the metrics port".into());
        }
        (api_version, kind) => return Err(format!("{api_version}/{kind} is not expected")),
    };
    result.map_err(|(path, reason)| format!("{path}: {reason}"))
}

#[test]
fn the_charts_lint_strictly_with_every_values_file() {
    for name in ["gantry", "tenant"] {
        let chart = chart(name);
        for values in values_files(&chart) {
            let output = helm(&["lint", "--strict"], &chart, values.as_deref());
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("0 chart(s) failed"),
                "helm lint --strict {name} {values:?}:\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn every_rendered_document_parses_into_its_type_with_nothing_lost() {
    for (name, release) in [("gantry", "gantry"), ("tenant", "tenant-a")] {
        let chart = chart(name);
        for values in values_files(&chart) {
            let documents = template(release, &chart, values.as_deref());
            assert!(!documents.is_empty());
            for document in &documents {
                if let Err(error) = check_typed(document) {
                    panic!(
                        "{name} {values:?}: {} {}: {error}",
                        document["kind"], document["metadata"]["name"]
                    );
                }
            }
        }
    }
}

#[test]
fn the_operator_chart_ships_exactly_the_crd_of_gantry_crd() {
    let crd = gantry_crd();
    let shipped = std::fs::read_to_string(chart("gantry").join("files/crd.yaml")).unwrap();
    assert!(
        shipped == crd,
        "chart/gantry/files/crd.yaml differs from `gantry crd`; refresh it with\n  \
         cargo run -q --bin gantry -- crd > chart/gantry/files/crd.yaml"
    );
    // What helm installs: the same object, plus Helm's keep policy and labels.
    let documents = template("gantry", &chart("gantry"), None);
    let mut installed = documents
        .into_iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .expect("the chart installs the CRD by default");
    assert_eq!(
        installed["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let metadata = installed["metadata"].as_object_mut().unwrap();
    metadata.remove("annotations");
    metadata.remove("labels");
    let expected: Value = serde_yaml::from_str(&crd).unwrap();
    // Equal both ways, numbers compared by value (helm prints 10 where gantry prints 10.0).
    assert!(
        numbers_as_f64(&installed) == numbers_as_f64(&expected),
        "the CRD helm installs differs from `gantry crd` (beyond Helm's annotation and labels)"
    );

    // crds.install=false leaves it out.
    let without = helm(
        &["template", "gantry", "--set", "crds.install=false"],
        &chart("gantry"),
        None,
    );
    assert!(without.status.success());
    assert!(!String::from_utf8_lossy(&without.stdout).contains("CustomResourceDefinition"));
}

/// `value` with every number as an f64, so 10 and 10.0 compare equal.
fn numbers_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn the_cluster_role_names_every_resource_and_verb() {
    let documents = template("gantry", &chart("gantry"), None);
    let roles: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .collect();
    assert_eq!(
        roles.len(),
        2,
        "the ClusterRole and the leader-election Role"
    );
    for role in roles {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_array().unwrap();
                assert!(!values.is_empty());
                assert!(
                    values.iter().all(|v| v != "*"),
                    "wildcard in {} {field}: {rule}",
                    role["metadata"]["name"]
                );
            }
        }
    }
    // Secrets are not listed cluster-wide for anything but the tenants' namespaces'
    // objects: the rule exists, and nothing grants escalate/bind/impersonate.
    let text = serde_json::to_string(&documents).unwrap();
    for verb in ["escalate", "bind", "impersonate"] {
        assert!(!text.contains(&format!("\"{verb}\"")), "{verb}");
    }
}

/// The ClusterRole grants, for each kind of the service set, exactly what
/// the operator does with it: server-side apply (patch), create-only key
/// Secrets (create), pruning (delete) and the watches; no `update`, and
/// nothing on kinds it never renders.
#[test]
fn the_cluster_role_grants_what_the_operator_applies_and_no_more() {
    let documents = template("gantry", &chart("gantry"), None);
    let role = documents
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let granted = |group: &str, resource: &str| -> Vec<String> {
        let mut verbs: Vec<String> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| {
                rule["apiGroups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|g| g == group)
                    && rule["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r == resource)
            })
            .flat_map(|rule| rule["verbs"].as_array().unwrap().clone())
            .map(|verb| verb.as_str().unwrap().to_string())
            .collect();
        verbs.sort();
        verbs
    };
    let expected = ["create", "delete", "get", "list", "patch", "watch"];
    let kinds = gantry_renderer::kinds::KINDS;
    for kind in kinds.iter().filter(|k| k.service_set) {
        let group = kind.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        assert_eq!(granted(group, kind.plural), expected, "{}", kind.kind);
    }
    for kind in kinds
        .iter()
        .filter(|k| !k.service_set && k.kind != "Namespace")
    {
        let group = kind.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        assert!(
            granted(group, kind.plural).is_empty(),
            "{} is granted, but the operator never writes it in the service cluster",
            kind.kind
        );
    }
}

#[test]
fn a_typo_in_values_is_refused_by_helm_itself() {
    for (name, flag, message) in [
        (
            "gantry",
            "image.tgag=x",
            "additional properties 'tgag' not allowed",
        ),
        (
            "gantry",
            "replicaCont=2",
            "additional properties 'replicaCont' not allowed",
        ),
        (
            "tenant",
            "apiServer.replica=3",
            "additional properties 'replica' not allowed",
        ),
        (
            "tenant",
            "etcd.storage.sise=5Gi",
            "additional properties 'sise' not allowed",
        ),
    ] {
        let output = helm(&["template", "x", "--set", flag], &chart(name), None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} --set {flag} was accepted");
        assert!(stderr.contains(message), "{name} --set {flag}: {stderr}");
    }
    // A bad enum value and a bad tenant name, too.
    let output = helm(
        &["template", "x", "--set", "pki.algorithm=DSA"],
        &chart("tenant"),
        None,
    );
    assert!(!output.status.success());
    let output = helm(
        &["template", "tenant-with-a-release-name-longer-than-forty"],
        &chart("tenant"),
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("must be a DNS-1123 label of at most 40 characters"),
        "{stderr}"
    );
}

#[test]
fn the_tenant_chart_schema_is_the_crd_spec_schema() {
    let crd: Value = serde_yaml::from_str(&gantry_crd()).unwrap();
    let expected = tenant_values_schema(&crd);
    let path = chart("tenant").join("values.schema.json");
    if std::env::var_os("GANTRY_UPDATE_SCHEMA").is_some() {
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    let shipped: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or(Value::Null);
    assert!(
        shipped == expected,
        "chart/tenant/values.schema.json is not derived from the current CRD; refresh it with\n  \
         GANTRY_UPDATE_SCHEMA=1 cargo test -p gantry-tests --test charts the_tenant_chart_schema"
    );
}

#[test]
fn the_tenant_chart_creates_the_tenant_its_values_describe() {
    let chart = chart("tenant");
    let documents = template(
        "tenant-a",
        &chart,
        Some(&chart.join("ci/openstack-values.yaml")),
    );
    assert_eq!(documents.len(), 1);
    let tcp = &documents[0];
    assert_eq!(tcp["metadata"]["name"], "tenant-prod");
    assert_eq!(tcp["spec"]["etcd"]["replicas"], 5);
    assert_eq!(
        tcp["spec"]["apiServer"]["service"]["loadBalancerIP"],
        "203.0.113.20"
    );
    assert!(
        tcp["spec"].get("name").is_none(),
        "name is metadata, not spec"
    );
    // With the defaults: the release name and only the version.
    let documents = template("tenant-b", &chart, None);
    assert_eq!(documents[0]["metadata"]["name"], "tenant-b");
    assert_eq!(
        documents[0]["spec"],
        serde_json::json!({"version": "1.37.2"})
    );
}

#[test]
fn the_operator_chart_runs_the_image_the_dockerfile_builds() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart("gantry").join("values.yaml")).unwrap(),
    )
    .unwrap();
    let repository = values["image"]["repository"].as_str().unwrap();
    assert!(
        dockerfile.contains(&format!("-t {repository}:")),
        "the Dockerfile's build command does not tag {repository}"
    );
    // The chart's appVersion (the default tag) is the workspace's version.
    let chart_yaml: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart("gantry").join("Chart.yaml")).unwrap())
            .unwrap();
    let cargo = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    assert_eq!(chart_yaml["appVersion"], version);

    // The final stage: distroless static, non-root, the binary as entrypoint;
    // the chart's pod runs as the same user.
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(final_stage.starts_with("gcr.io/distroless/static-debian12:nonroot"));
    assert!(final_stage.contains("\nUSER 65532:65532\n"));
    assert!(final_stage.contains("\nENTRYPOINT [\"/gantry\"]\n"));
    let deployment = template("gantry", &chart("gantry"), None)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["containers"][0]["args"][0], "run");
    assert_eq!(
        pod["containers"][0]["image"],
        format!("{repository}:{version}")
    );
}
