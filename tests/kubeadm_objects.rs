//! The objects gantry's tenant set makes in a tenant are the ones kubeadm's
//! own phases make, except where the "Tenant objects" table of
//! docs/kubeadm-conformance.md says otherwise and why.
//!
//! One tenant of the newest minor is rendered, and two control planes start
//! from that one bundle, each on a test network of its own: the same CA,
//! endpoint, ClusterConfiguration and join token, so the objects compare
//! as they are. On the first, the real kubeadm of that minor runs the phases
//! of `kubeadm init` that create cluster objects (`upload-config kubeadm`,
//! `upload-config kubelet`, `bootstrap-token`, `addon coredns`, `addon
//! kube-proxy`), with the ClusterConfiguration gantry rendered and gantry's
//! join token. On the second, gantry's tenant set is applied.
//!
//! Then every ClusterRole, ClusterRoleBinding, Role, RoleBinding, ConfigMap,
//! Secret, Service, ServiceAccount, Deployment and DaemonSet of both is read
//! back and compared field by field (see `fields_of`), the objects each
//! apiserver and controller-manager makes on its own included: they are
//! equal, so they drop out. Each difference must be a row of the table, and
//! each row must still be a difference, so an upstream change of what
//! kubeadm creates (a binding, a default, an addon's manifest) fails here on
//! the next version bump until gantry adopts it or the table explains it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use gantry_tests::control_plane::{
    ControlPlane, TenantShape, kubernetes_bin, one_at_a_time, render_tenant,
};
use gantry_tests::kubelet::{find, read_objects};
use gantry_tests::{output_text, repo_root};
use serde_json::{Map, Value};

/// The kinds compared, as kubectl names them.
const KINDS: &str = "clusterroles,clusterrolebindings,roles,rolebindings,configmaps,secrets,\
                     services,serviceaccounts,deployments,daemonsets";

/// The phases of `kubeadm init` that create cluster objects, in its order.
const PHASES: [&[&str]; 5] = [
    &["upload-config", "kubeadm"],
    &["upload-config", "kubelet"],
    &["bootstrap-token"],
    &["addon", "coredns"],
    &["addon", "kube-proxy"],
];

/// The labels gantry puts on everything it applies (render.rs,
/// `common_labels`): marks of the applier, not of what is applied.
const GANTRY_LABELS: [&str; 3] = [
    "app.kubernetes.io/managed-by",
    "gantry.dev/tenant",
    "gantry.dev/privileged",
];

/// Annotations that the applier or a controller writes: per instance.
const NOISE_ANNOTATIONS: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// An object's comparable content: field path -> value.
type Fields = BTreeMap<String, Value>;

/// Objects by `Kind name` or `Kind namespace/name`.
type Objects = BTreeMap<String, Fields>;

/// (object, field, how it differs): "kubeadm only", "gantry only", "value".
/// The field of a whole object missing on one side is `(object)`.
type Difference = (String, String, String);

const WHOLE_OBJECT: &str = "(object)";

/// The bundle's join token, `<id>.<secret>`, from its `join-command`.
fn join_token(bundle: &Path) -> String {
    let command = std::fs::read_to_string(bundle.join("join-command")).unwrap();
    command
        .split_whitespace()
        .skip_while(|a| *a != "--token")
        .nth(1)
        .unwrap_or_else(|| panic!("no --token in {command}"))
        .to_string()
}

/// kubeadm's configuration: an InitConfiguration with gantry's join token
/// (kubeadm's defaults otherwise: its groups, usages and TTL) and the
/// ClusterConfiguration of the bundle's `kubeadm-config`.
fn kubeadm_config(plane: &ControlPlane) -> String {
    let tenant = read_objects(&plane.bundle.join("tenant"));
    let cluster_configuration =
        find(&tenant, "ConfigMap", "kubeadm-config")["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap()
            .to_string();
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n\
         bootstrapTokens:\n  - token: {token}\n\
         localAPIEndpoint:\n  advertiseAddress: {vip}\n  bindPort: 6443\n\
         nodeRegistration:\n  name: control-plane\n  \
         criSocket: unix:///var/run/containerd/containerd.sock\n\
         ---\n{cluster_configuration}",
        token = join_token(&plane.bundle),
        vip = plane.vip,
    )
}

/// Runs kubeadm's object-creating phases against `plane`, from its node
/// host, as `super-admin.conf` (kubeadm init's own admin before it binds
/// `kubeadm:cluster-admins`).
fn run_kubeadm_phases(plane: &ControlPlane, version: &str, work: &Path) {
    let config = work.join("kubeadm.yaml");
    std::fs::write(&config, kubeadm_config(plane)).unwrap();
    let kubeadm = kubernetes_bin(version).join("kubeadm");
    for phase in PHASES {
        let mut command = plane.node.command(&kubeadm);
        command
            .args(["init", "phase"])
            .args(phase)
            .arg(format!("--config={}", config.display()))
            .arg(format!(
                "--kubeconfig={}",
                plane.bundle.join("super-admin.conf").display()
            ));
        // kube-proxy's DaemonSet gets kubeadm's own proxy variables.
        for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"] {
            command.env_remove(proxy).env_remove(proxy.to_lowercase());
        }
        let output = command.output().expect("run kubeadm");
        assert!(
            output.status.success(),
            "kubeadm init phase {phase:?}: {}\n{}",
            output_text(&output),
            plane.logs()
        );
    }
}

/// Waits until the controller-manager made what it makes in every
/// namespace (the `default` ServiceAccount, `kube-root-ca.crt`) and signed
/// cluster-info for the join token, so both planes are read settled.
fn wait_settled(plane: &ControlPlane, token_id: &str) {
    let signature = format!("\"jws-kubeconfig-{token_id}\"");
    plane.wait_kubectl(
        "the bootstrap signer signs cluster-info",
        Duration::from_secs(60),
        "super-admin.conf",
        &[
            "-n",
            "kube-public",
            "get",
            "configmap",
            "cluster-info",
            "-o",
            "json",
        ],
        |out| out.contains(&signature),
    );
    let namespaces = plane.kubectl_ok(
        "super-admin.conf",
        &[
            "get",
            "namespaces",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    for namespace in namespaces.split_whitespace() {
        for object in ["serviceaccount/default", "configmap/kube-root-ca.crt"] {
            plane.wait_kubectl(
                &format!("{namespace}/{object} exists"),
                Duration::from_secs(60),
                "super-admin.conf",
                &["-n", namespace, "get", object, "-o", "name"],
                |_| true,
            );
        }
    }
}

/// Every object of `KINDS` on `plane`, by identity, with the join token's
/// random id written `<token-id>` where it names something (the token's
/// Secret, its signature in cluster-info), so the table's rows stay put.
fn objects_of(plane: &ControlPlane, token_id: &str) -> Objects {
    let list: Value = serde_json::from_str(&plane.kubectl_ok(
        "super-admin.conf",
        &["get", KINDS, "--all-namespaces", "-o", "json"],
    ))
    .expect("kubectl's list as JSON");
    let stable = |name: String| {
        name.replace(
            &format!("bootstrap-token-{token_id}"),
            "bootstrap-token-<token-id>",
        )
        .replace(
            &format!("{SIGNATURE_PREFIX}{token_id}"),
            &format!("{SIGNATURE_PREFIX}<token-id>"),
        )
    };
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| {
            let fields = fields_of(object)
                .into_iter()
                .map(|(field, value)| (stable(field), value))
                .collect();
            (stable(identity(object)), fields)
        })
        .collect()
}

/// `Kind name`, or `Kind namespace/name` for a namespaced object.
fn identity(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// What of an object is compared, one entry per field:
/// - `metadata.labels.<key>` and `metadata.annotations.<key>`, but for
///   gantry's own labels and per-instance annotations; the rest of the
///   metadata (uid, resourceVersion, timestamps, managedFields…) and
///   `status` are left out;
/// - a ConfigMap's `data.<key>`, and for a value that is a Kubernetes-style
///   YAML document (a component configuration, a kubeconfig),
///   `data.<key>.<top-level field>`;
/// - a Secret's `type` and `data.<key>`;
/// - `spec.<field>` (a Service's ports, selector, clusterIP…); of a
///   workload, `spec.template.spec.<field>` and, per container,
///   `spec.template.spec.containers[<name>].<field>`;
/// - any other top-level field (RBAC `rules`, `roleRef`, `subjects`…) whole.
fn fields_of(object: &Value) -> Fields {
    let mut fields = Fields::new();
    metadata_fields(&object["metadata"], "metadata", &mut fields);
    let kind = object["kind"].as_str().unwrap();
    for (key, value) in object.as_object().unwrap() {
        match key.as_str() {
            "apiVersion" | "kind" | "metadata" | "status" => {}
            "data" if kind == "ConfigMap" => config_map_data(value, &mut fields),
            "data" if kind == "Secret" => secret_data(value, &mut fields),
            "spec" => spec_fields(value, &mut fields),
            "rules" => {
                fields.insert(key.clone(), sorted_rules(value));
            }
            "subjects" => {
                fields.insert(key.clone(), sorted(value));
            }
            _ => {
                fields.insert(key.clone(), value.clone());
            }
        }
    }
    fields
}

fn metadata_fields(metadata: &Value, prefix: &str, fields: &mut Fields) {
    for (map, skip) in [
        ("labels", &GANTRY_LABELS[..]),
        ("annotations", &NOISE_ANNOTATIONS[..]),
    ] {
        for (key, value) in metadata[map].as_object().into_iter().flatten() {
            if !skip.contains(&key.as_str()) {
                fields.insert(format!("{prefix}.{map}.{key}"), value.clone());
            }
        }
    }
}

/// RBAC rules in a stable order, each with its lists sorted: the order
/// grants nothing.
fn sorted_rules(rules: &Value) -> Value {
    let rules = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            let mut rule = rule.as_object().unwrap().clone();
            for list in rule.values_mut().filter(|v| v.is_array()) {
                *list = sorted(list);
            }
            Value::Object(rule)
        })
        .collect();
    sorted(&Value::Array(rules))
}

/// A list in a stable order (of RBAC subjects or rule lists, where order
/// means nothing).
fn sorted(list: &Value) -> Value {
    let mut items = list.as_array().unwrap().clone();
    items.sort_by_key(Value::to_string);
    Value::Array(items)
}

fn config_map_data(data: &Value, fields: &mut Fields) {
    for (key, value) in data.as_object().into_iter().flatten() {
        if key.starts_with(SIGNATURE_PREFIX) {
            fields.insert(format!("data.{key}"), "<signature>".into());
            continue;
        }
        let text = value.as_str().unwrap_or_default();
        match kubernetes_document(text) {
            Some(document) => {
                for (field, value) in document {
                    if let Some(value) = without_zero_values(&value) {
                        fields.insert(format!("data.{key}.{field}"), value);
                    }
                }
            }
            None => {
                fields.insert(format!("data.{key}"), value.clone());
            }
        }
    }
}

/// cluster-info's `jws-kubeconfig-<token id>`: a signature of the
/// `kubeconfig` text by the token, compared as present only (`join.rs`
/// proves gantry's verifies; the text is compared field by field).
const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

/// `text` as a YAML mapping, if it is one with `apiVersion` and `kind`.
fn kubernetes_document(text: &str) -> Option<Map<String, Value>> {
    let document: Value = serde_yaml::from_str(text).ok()?;
    let document = document.as_object()?;
    (document.contains_key("apiVersion") && document.contains_key("kind")).then(|| document.clone())
}

/// A field of a configuration document without its Go zero values (`null`,
/// `false`, `0`, `""`, `"0"`, `"0s"`, and maps left empty), or None if
/// nothing is left: kubeadm marshals every field of its configuration
/// structs, set or not, and kube-proxy and the kubelet default a zero field
/// as an absent one. Lists are kept whole.
fn without_zero_values(value: &Value) -> Option<Value> {
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::String(s) if ["", "0", "0s"].contains(&s.as_str()) => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| without_zero_values(v).map(|v| (k.clone(), v)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        _ => Some(value.clone()),
    }
}

/// A Secret's data, decoded; a bootstrap token's `expiration` is a moment
/// of each render or kubeadm run, compared as present only.
fn secret_data(data: &Value, fields: &mut Fields) {
    use base64::Engine as _;
    for (key, value) in data.as_object().into_iter().flatten() {
        let value = if key == "expiration" {
            "<timestamp>".into()
        } else {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .expect("Secret data is base64");
            String::from_utf8_lossy(&bytes).into()
        };
        fields.insert(format!("data.{key}"), value);
    }
}

fn spec_fields(spec: &Value, fields: &mut Fields) {
    for (key, value) in spec.as_object().into_iter().flatten() {
        if key != "template" {
            fields.insert(format!("spec.{key}"), value.clone());
            continue;
        }
        metadata_fields(&value["metadata"], "spec.template.metadata", fields);
        for (key, value) in value["spec"].as_object().into_iter().flatten() {
            if key != "containers" {
                fields.insert(format!("spec.template.spec.{key}"), value.clone());
                continue;
            }
            for container in value.as_array().unwrap() {
                let name = container["name"].as_str().unwrap();
                for (key, value) in container.as_object().unwrap() {
                    let field = format!("spec.template.spec.containers[{name}].{key}");
                    fields.insert(field, value.clone());
                }
            }
        }
    }
}

fn differences(kubeadm: &Objects, gantry: &Objects) -> BTreeSet<Difference> {
    let mut out = BTreeSet::new();
    let mut note = |object: &str, field: &str, how: &str| {
        out.insert((object.to_string(), field.to_string(), how.to_string()));
    };
    for (object, theirs) in kubeadm {
        let Some(ours) = gantry.get(object) else {
            note(object, WHOLE_OBJECT, "kubeadm only");
            continue;
        };
        for (field, value) in theirs {
            match ours.get(field) {
                None => note(object, field, "kubeadm only"),
                Some(v) if v != value => note(object, field, "value"),
                Some(_) => {}
            }
        }
        for field in ours.keys().filter(|f| !theirs.contains_key(*f)) {
            note(object, field, "gantry only");
        }
    }
    for object in gantry.keys().filter(|o| !kubeadm.contains_key(*o)) {
        note(object, WHOLE_OBJECT, "gantry only");
    }
    out
}

/// The rows of the "Tenant objects" table of docs/kubeadm-conformance.md:
/// `| object | field | difference | reason |`.
fn documented_deviations() -> BTreeSet<Difference> {
    let doc = std::fs::read_to_string(repo_root().join("docs/kubeadm-conformance.md")).unwrap();
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Tenant objects\n"))
        .expect("a \"## Tenant objects\" section in docs/kubeadm-conformance.md");
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| object "))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (object, field) = (cells[1].trim_matches('`'), cells[2].trim_matches('`'));
            assert!(
                !cells[4].is_empty(),
                "deviation {object} {field} has no reason"
            );
            (object.to_string(), field.to_string(), cells[3].to_string())
        })
        .collect()
}

/// A difference as a table row, with both sides' values for its reason.
fn row(difference: &Difference, kubeadm: &Objects, gantry: &Objects) -> String {
    let (object, field, how) = difference;
    let value = |objects: &Objects| match objects.get(object) {
        None => "-".to_string(),
        Some(_) if field == WHOLE_OBJECT => "present".to_string(),
        Some(fields) => fields.get(field).map_or("-".to_string(), |v| v.to_string()),
    };
    format!(
        "| `{object}` | `{field}` | {how} | kubeadm: {}, gantry: {} |",
        value(kubeadm),
        value(gantry)
    )
}

#[test]
fn kubeadms_tenant_objects_are_gantrys_but_for_the_documented_deviations() {
    let _one = one_at_a_time();
    let version = gantry_renderer::versions::newest().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let shape = TenantShape {
        name: "tenant-o",
        version: &version,
        subnet: 190,
        etcd: 1,
        apiservers: 1,
    };
    let bundle = render_tenant(tmp.path(), &shape);
    let mut by_kubeadm = ControlPlane::start(&bundle, &shape, &tmp.path().join("run-kubeadm"));
    let mut by_gantry = ControlPlane::start(&bundle, &shape, &tmp.path().join("run-gantry"));
    by_kubeadm.wait_ready(Duration::from_secs(120));
    by_gantry.wait_ready(Duration::from_secs(120));

    run_kubeadm_phases(&by_kubeadm, &version, tmp.path());
    by_gantry.apply_tenant_set();
    let token = join_token(&bundle);
    let token_id = token.split('.').next().unwrap();
    wait_settled(&by_kubeadm, token_id);
    wait_settled(&by_gantry, token_id);

    let kubeadm = objects_of(&by_kubeadm, token_id);
    let gantry = objects_of(&by_gantry, token_id);
    let actual = differences(&kubeadm, &gantry);
    let documented = documented_deviations();
    let show = |list: Vec<&Difference>| {
        list.into_iter()
            .map(|d| row(d, &kubeadm, &gantry))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let undocumented = show(actual.difference(&documented).collect());
    let stale = show(documented.difference(&actual).collect());
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "tenant objects that differ from kubeadm {version}'s but are not in \
         docs/kubeadm-conformance.md (\"Tenant objects\"):\n{undocumented}\n\
         rows of that table that are no longer differences:\n{stale}"
    );
}
