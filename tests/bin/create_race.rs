//! Test helper, run by `tests/service_cluster.rs` inside the service
//! cluster's network namespace: two writers create the same create-only
//! Secret at once, through gantry's own `apply_set`, for ROUNDS rounds.
//!
//! Usage: `gantry-create-race KUBECONFIG NAMESPACE ROUNDS`. Prints one line
//! per round: `<round> <writer-a result> <writer-b result> <live owner>`,
//! where a result is `created`, `conflict` (it read the Secret as missing,
//! and the create found it made), `kept` (it read the Secret as made) or
//! `error:<text>` and the owner
//! is the `writer` key of the Secret as the API server holds it afterwards.

use gantry_controller::apply::{self, DesiredObject};
use gantry_controller::live::Cluster;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

fn secret(namespace: &str, name: &str, writer: &str) -> DesiredObject {
    DesiredObject {
        value: serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"writer": writer},
        }),
        create_only: true,
        exists: None,
        blind: false,
    }
}

fn outcome(result: &Result<apply::ApplyReport, apply::ApplyError>) -> String {
    match result {
        Ok(report) if report.applied.len() == 1 => "created".into(),
        // It read the other's Secret, made already, and left it alone.
        Ok(report) if report.kept.len() == 1 => "kept".into(),
        Ok(report) => format!("error:applied={:?},kept={:?}", report.applied, report.kept),
        Err(error) if error.to_string().contains("another writer made it first") => {
            "conflict".into()
        }
        Err(error) => format!("error:{}", error.to_string().replace(' ', "_")),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kubeconfig, namespace, rounds] = args.as_slice() else {
        eprintln!("usage: gantry-create-race KUBECONFIG NAMESPACE ROUNDS");
        std::process::exit(2);
    };
    let rounds: u32 = rounds.parse().expect("ROUNDS is a number");
    let text = std::fs::read_to_string(kubeconfig).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&text).expect("a kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a client config");
    let client = kube::Client::try_from(config).expect("a client");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace_object = serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace_object)
        .await
        .expect("creating the namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for round in 0..rounds {
        let name = format!("ca-{round}");
        let (a, b) = (
            [secret(namespace, &name, "writer-a")],
            [secret(namespace, &name, "writer-b")],
        );
        // Both writers' reads go out before either create: join! polls one,
        // then the other, in this task.
        let (first, second) = tokio::join!(
            apply::apply_set(Cluster::api(&client), "race", "race", &a, &[]),
            apply::apply_set(Cluster::api(&client), "race", "race", &b, &[]),
        );
        let live = secrets.get(&name).await.expect("reading the Secret back");
        let owner = live
            .data
            .and_then(|data| data.get("writer").cloned())
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
            .unwrap_or_default();
        println!("{round} {} {} {owner}", outcome(&first), outcome(&second));
    }
}
