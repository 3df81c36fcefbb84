//! The chart archive `gantry render` writes, checked by the real helm binary:
//! it lints strictly, and `helm template` yields exactly the rendered service
//! objects, object for object.

use std::collections::BTreeMap;
use std::process::Command;

use gantry_tests::{render_example, run_ok, tool};
use serde::Deserialize;

type Objects = BTreeMap<(String, String), serde_json::Value>;

fn by_kind_and_name(documents: impl IntoIterator<Item = serde_json::Value>) -> Objects {
    documents
        .into_iter()
        .filter(|doc| !doc.is_null())
        .map(|doc| {
            let key = (
                doc["kind"].as_str().unwrap().to_string(),
                doc["metadata"]["name"].as_str().unwrap().to_string(),
            );
            (key, doc)
        })
        .collect()
}

#[test]
fn helm_lints_the_chart_and_templates_exactly_the_service_set() {
    let tmp = tempfile::tempdir().unwrap();
    let out = render_example(tmp.path());
    let archive = out.join("chart/tenant-a-control-plane-1.35.5.tgz");

    let lint = run_ok(
        Command::new(tool("helm"))
            .args(["lint", "--strict"])
            .arg(&archive),
    );
    assert!(
        lint.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{lint}"
    );

    let show = run_ok(
        Command::new(tool("helm"))
            .args(["show", "chart"])
            .arg(&archive),
    );
    assert!(
        show.contains("name: tenant-a-control-plane") && show.contains("appVersion: 1.35.5"),
        "{show}"
    );

    let templated = run_ok(
        Command::new(tool("helm"))
            .args(["template", "tenant-a"])
            .arg(&archive),
    );
    let from_helm = by_kind_and_name(
        serde_yaml::Deserializer::from_str(&templated)
            .map(|doc| serde_json::Value::deserialize(doc).unwrap()),
    );
    let from_gantry = by_kind_and_name(std::fs::read_dir(out.join("service")).unwrap().map(
        |entry| {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            serde_yaml::from_str::<serde_json::Value>(&text).unwrap()
        },
    ));
    assert_eq!(from_gantry.len(), 33);
    // Everything but the Namespace, which the release is installed into.
    let mut from_gantry = from_gantry;
    let namespace = from_gantry
        .iter()
        .find(|(_, object)| object["kind"] == "Namespace")
        .map(|(key, _)| key.clone())
        .expect("the service set has its Namespace");
    from_gantry.remove(&namespace);
    assert_eq!(
        from_helm.keys().collect::<Vec<_>>(),
        from_gantry.keys().collect::<Vec<_>>()
    );
    for (key, object) in &from_gantry {
        assert_eq!(
            &from_helm[key], object,
            "{key:?} differs after helm template"
        );
    }
    // `helm uninstall` keeps the keys that are never replaced.
    for secret in gantry_renderer::create_only_secrets() {
        let object = from_helm
            .iter()
            .find(|(_, o)| o["kind"] == "Secret" && o["metadata"]["name"] == secret.name)
            .map(|(_, o)| o)
            .unwrap_or_else(|| panic!("no Secret {}", secret.name));
        assert_eq!(
            object["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{}",
            secret.name
        );
    }
}
