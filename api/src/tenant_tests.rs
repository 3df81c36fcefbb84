//! The CRD's schema, its CEL rules and the defaults.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;

fn crd() -> Value {
    serde_json::to_value(TenantControlPlane::crd()).unwrap()
}

fn schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn example() -> Value {
    let text = include_str!("../../examples/tenant-a.yaml");
    serde_json::to_value(TenantControlPlane::from_yaml(text).unwrap()).unwrap()
}

/// The CEL rules of the CRD, evaluated as the API server would.
fn cel(object: &Value, old: Option<&Value>) -> Result<(), String> {
    kube::core::cel::Validator::new()
        .validate(&schema(), object, old)
        .map_err(|e| e.to_string())
}

#[test]
fn the_crd_is_cluster_scoped_with_short_name_category_status_and_columns() {
    let crd = crd();
    assert_eq!(crd["metadata"]["name"], "tenantcontrolplanes.gantry.dev");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["tcp"]));
    assert_eq!(crd["spec"]["names"]["categories"], json!(["gantry"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["VERSION", "READY", "ENDPOINT", "AGE"]);
    // The whole CRD is a valid apiextensions/v1 object with nothing lost.
    let typed: CustomResourceDefinition = serde_json::from_value(crd.clone()).unwrap();
    assert_eq!(serde_json::to_value(typed).unwrap(), crd);
}

#[test]
fn the_schema_checks_what_the_api_server_can() {
    let spec = &schema()["properties"]["spec"]["properties"];
    assert_eq!(spec["version"]["pattern"], VERSION_PATTERN);
    assert_eq!(
        spec["pki"]["properties"]["algorithm"]["enum"],
        json!(["ECDSA-P256", "RSA-2048", "RSA-3072", "RSA-4096"])
    );
    assert_eq!(
        spec["apiServer"]["properties"]["service"]["properties"]["type"]["enum"],
        json!(["LoadBalancer", "NodePort", "ClusterIP"])
    );
    assert_eq!(
        spec["apiServer"]["properties"]["replicas"]["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        spec["apiServer"]["properties"]["service"]["properties"]["nodePort"]["maximum"].as_f64(),
        Some(32767.0)
    );
    assert_eq!(
        spec["join"]["properties"]["tokenTTL"]["pattern"],
        DURATION_PATTERN
    );
    assert!(
        !schema()
            .to_string()
            .contains("additionalProperties\":false"),
        "structural schemas cannot say additionalProperties: false"
    );
}

#[test]
fn cel_rules_accept_the_example_and_refuse_bad_specs() {
    let good = example();
    assert_eq!(cel(&good, None), Ok(()));

    let mut even = good.clone();
    even["spec"]["etcd"]["replicas"] = json!(2);
    assert!(
        cel(&even, None)
            .unwrap_err()
            .contains("etcd replicas must be 1, 3 or 5")
    );

    let mut long = good.clone();
    long["metadata"]["name"] = json!("a".repeat(41));
    assert!(
        cel(&long, None)
            .unwrap_err()
            .contains("at most 40 characters")
    );

    let mut node_port = good.clone();
    node_port["spec"]["apiServer"]["service"]["nodePort"] = json!(31443);
    assert!(
        cel(&node_port, None)
            .unwrap_err()
            .contains("nodePort only applies to service type NodePort")
    );
    node_port["spec"]["apiServer"]["service"]["type"] = json!("NodePort");
    assert_eq!(cel(&node_port, None), Ok(()));
}

#[test]
fn networking_is_immutable() {
    let old = example();
    let mut changed = old.clone();
    changed["spec"]["networking"]["podCIDR"] = json!("10.200.0.0/16");
    assert!(
        cel(&changed, Some(&old))
            .unwrap_err()
            .contains("networking is immutable")
    );
    let mut other = old.clone();
    other["spec"]["version"] = json!("1.36.0");
    assert_eq!(cel(&other, Some(&old)), Ok(()), "other fields may change");
}

#[test]
fn extra_args_names_are_dashed_words_and_values_hold_no_control_characters() {
    let mut good = example();
    good["spec"]["apiServer"]["extraArgs"] = json!({"audit-log-maxage": "30", "v": "2"});
    assert_eq!(cel(&good, None), Ok(()));
    for (component, name, value) in [
        ("apiServer", "etcd_servers", "https://elsewhere:2379"),
        ("apiServer", "--v", "2"),
        ("apiServer", "v=2", "2"),
        ("apiServer", "v", "2\n--etcd-servers=https://elsewhere:2379"),
        ("controllerManager", "cluster_signing_key_file", "/x"),
        ("scheduler", "Kubeconfig", "/x"),
    ] {
        let mut bad = example();
        bad["spec"][component]["extraArgs"] = json!({ name: value });
        assert!(
            cel(&bad, None)
                .unwrap_err()
                .contains("extraArgs names are lowercase words joined by '-'"),
            "{component}.{name}"
        );
    }
}

#[test]
fn etcd_replicas_are_immutable() {
    let old = example();
    let mut changed = old.clone();
    changed["spec"]["etcd"]["replicas"] = json!(1);
    assert!(
        cel(&changed, Some(&old))
            .unwrap_err()
            .contains("etcd replicas are immutable")
    );
    assert_eq!(cel(&changed, None), Ok(()), "a new tenant may have one");
    let mut storage = old.clone();
    storage["spec"]["etcd"]["storage"]["size"] = json!("20Gi");
    assert_eq!(
        cel(&storage, Some(&old)),
        Ok(()),
        "other etcd fields may change"
    );
}

#[test]
fn manifests_refuse_unknown_fields_and_namespaces() {
    let text = include_str!("../../examples/tenant-a.yaml");
    let typo = text.replace("  etcd:\n", "  etdc:\n");
    assert!(
        TenantControlPlane::from_yaml(&typo)
            .unwrap_err()
            .0
            .contains("unknown field `etdc`")
    );
    let top = format!("{text}extra: 1\n");
    assert!(
        TenantControlPlane::from_yaml(&top)
            .unwrap_err()
            .0
            .contains("unknown field `extra`")
    );
    let namespaced = text.replace(
        "  name: tenant-a\n",
        "  name: tenant-a\n  namespace: default\n",
    );
    assert!(
        TenantControlPlane::from_yaml(&namespaced)
            .unwrap_err()
            .0
            .contains("cluster-scoped")
    );
    let algorithm = text.replace("algorithm: ECDSA-P256", "algorithm: DSA");
    assert!(
        TenantControlPlane::from_yaml(&algorithm)
            .unwrap_err()
            .0
            .contains("spec.pki.algorithm: unknown variant `DSA`")
    );
}

#[test]
fn durations_are_whole_hours_minutes_and_seconds() {
    use crate::extra_args::duration_seconds;
    assert_eq!(duration_seconds("48h"), Some(48 * 3600));
    assert_eq!(duration_seconds("1h30m"), Some(5400));
    assert_eq!(duration_seconds("90m5s"), Some(5405));
    assert_eq!(duration_seconds("0s"), Some(0));
    for bad in [
        "", "h", "1d", "1.5h", "-1h", "1m1h", "1h1h", "1234567h", " 1h", "1H",
    ] {
        assert_eq!(duration_seconds(bad), None, "{bad:?}");
    }
}

/// The CRD's CEL rule and the renderer's check read one list: for every flag
/// of it, they agree on values it allows and values it refuses, and the
/// CEL message names the flag.
#[test]
fn extra_args_policy_is_one_list_for_cel_and_the_renderer() {
    use crate::extra_args::{API_SERVER, CONTROLLER_MANAGER_AND_SCHEDULER, refusal};
    for (components, rules) in [
        (&["apiServer"][..], API_SERVER),
        (
            &["controllerManager", "scheduler"][..],
            CONTROLLER_MANAGER_AND_SCHEDULER,
        ),
    ] {
        for rule in rules {
            let (good, bad) = crate::extra_args::samples(rule);
            for component in components {
                for value in &good {
                    assert_eq!(
                        refusal(rules, rule.flag, value),
                        None,
                        "{}={value}",
                        rule.flag
                    );
                    let mut tcp = example();
                    tcp["spec"][component]["extraArgs"] = json!({ rule.flag: value });
                    assert_eq!(
                        cel(&tcp, None),
                        Ok(()),
                        "{component} --{}={value}",
                        rule.flag
                    );
                }
                for value in &bad {
                    assert_eq!(
                        refusal(rules, rule.flag, value),
                        Some(rule.why),
                        "{}={value}",
                        rule.flag
                    );
                    let mut tcp = example();
                    tcp["spec"][component]["extraArgs"] =
                        json!({ rule.flag: value, "audit-log-maxage": "30" });
                    let err =
                        cel(&tcp, None).expect_err(&format!("{component} --{}={value}", rule.flag));
                    assert!(
                        err.contains(&format!("extraArgs: --{} is refused", rule.flag)),
                        "{component} --{}={value}: {err}",
                        rule.flag
                    );
                }
            }
        }
    }
    // Flags outside the list pass, whatever their value.
    let mut tcp = example();
    tcp["spec"]["apiServer"]["extraArgs"] = json!({"audit-log-maxage": "30", "v": "4"});
    assert_eq!(cel(&tcp, None), Ok(()));
}

/// `pattern` (a schema's regular expression) matches `value`, evaluated by
/// CEL's `matches`, the regular expressions of the API server's rules.
fn matches(pattern: &str, value: &str) -> bool {
    let schema = json!({
        "type": "object",
        "properties": {"v": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": format!("self.v.matches(r'{pattern}')")}],
    });
    kube::core::cel::Validator::new()
        .validate(&schema, &json!({ "v": value }), None)
        .is_ok()
}

#[test]
fn the_schema_bounds_names_registries_and_sans() {
    let spec = &schema()["properties"]["spec"]["properties"];
    assert_eq!(
        spec["apiServer"]["properties"]["certSANs"]["maxItems"].as_f64(),
        Some(100.0)
    );
    let storage = &spec["etcd"]["properties"]["storage"]["properties"];
    assert_eq!(
        storage["storageClassName"]["pattern"],
        DNS_SUBDOMAIN_PATTERN
    );
    assert_eq!(spec["imageRepository"]["pattern"], IMAGE_REPOSITORY_PATTERN);
    assert_eq!(
        spec["imageRepository"]["maxLength"].as_f64(),
        Some(MAX_IMAGE_REPOSITORY_LEN as f64)
    );
    for good in ["csi-cinder", "a.b-c", "fast"] {
        assert!(matches(DNS_SUBDOMAIN_PATTERN, good), "{good}");
    }
    for bad in ["Bad Class!", "", "-a", "a.", "a_b"] {
        assert!(!matches(DNS_SUBDOMAIN_PATTERN, bad), "{bad}");
    }
    for good in [
        "registry.k8s.io",
        "harbor.local:5000/k8s",
        "localhost",
        "10.0.0.5:5000/a.b/c_d/e__f/g--h",
    ] {
        assert!(matches(IMAGE_REPOSITORY_PATTERN, good), "{good}");
    }
    for bad in [
        "https://registry.k8s.io",
        "registry.k8s.io/",
        "registry.k8s.io/../k8s",
        "registry.k8s.io//k8s",
        "registry.k8s.io/x:v1",
        "registry.k8s.io:v1",
        "r.io/x@sha256:ab",
        "registry.k8s.io/K8s",
    ] {
        assert!(!matches(IMAGE_REPOSITORY_PATTERN, bad), "{bad}");
    }
}

#[test]
fn cel_rules_bound_etcd_storage_and_resources() {
    let refused = |change: &dyn Fn(&mut Value)| {
        let mut tcp = example();
        change(&mut tcp);
        cel(&tcp, None).err()
    };
    // Not `1e100`: kube-cel's quantity overflows on it (a panic in tests);
    // the API server's, Kubernetes' own, reads it and compares it above 1Ti.
    for size in ["1m", "4", "1023Mi", "2Ti", "ten"] {
        let error = refused(&|tcp| tcp["spec"]["etcd"]["storage"]["size"] = json!(size));
        assert!(
            error.is_some_and(|e| e.contains("etcd storage size must be a quantity from 1Gi to 1Ti")),
            "{size}"
        );
    }
    for size in ["1Gi", "1Ti", "10Gi", "1.5e9"] {
        assert_eq!(
            refused(&|tcp| tcp["spec"]["etcd"]["storage"]["size"] = json!(size)),
            None,
            "{size}"
        );
    }
    for (quota, ok) in [
        ("1Mi", false),
        ("64Mi", true),
        ("10Gi", true),
        ("11Gi", false),
    ] {
        let error = refused(&|tcp| tcp["spec"]["etcd"]["storage"]["quota"] = json!(quota));
        assert_eq!(error.is_none(), ok, "{quota}: {error:?}");
    }
    let resources =
        |value: Value| refused(&|tcp| tcp["spec"]["scheduler"]["resources"] = value.clone());
    assert!(
        resources(json!({"requests": {"gpu": "1"}}))
            .is_some_and(|e| e.contains("only cpu, memory, ephemeral-storage"))
    );
    assert!(
        resources(json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}))
            .is_some_and(|e| e.contains("a limit must not be below its request"))
    );
    assert_eq!(
        resources(
            json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "0.5", "ephemeral-storage": "1Gi"}})
        ),
        None
    );
}

#[test]
fn extra_args_keep_leader_election_and_the_probe_paths() {
    for (flag, value) in [
        ("leader-elect", "false"),
        ("authorization-always-allow-paths", "/*"),
        ("authorization-always-allow-paths", "/healthz"),
    ] {
        for component in ["controllerManager", "scheduler"] {
            let mut tcp = example();
            tcp["spec"][component]["extraArgs"] = json!({ flag: value });
            assert!(
                cel(&tcp, None).is_err_and(|e| e.contains(&format!("--{flag} is refused"))),
                "{component} {flag}={value}"
            );
        }
    }
    let mut tcp = example();
    tcp["spec"]["scheduler"]["extraArgs"] = json!({"leader-elect": "true", "authorization-always-allow-paths": "/livez,/healthz,/readyz"});
    assert_eq!(cel(&tcp, None), Ok(()));
}
