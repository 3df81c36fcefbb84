//! Test helper, run by `tests/operator_access.rs` inside the tenant node's
//! network namespace: one step of the operator's tenant pass, with
//! gantry's own code (`gantry_controller::reconcile::operator_access`)
//! against a real tenant apiserver.
//!
//! Usage: `gantry-operator-access BUNDLE SERVER STEP`, where STEP is
//! - `grant`: apply the privileged set with the bundle's `super-admin.conf`,
//!   then wait until gantry-operator is authorized by it;
//! - `check`: check the privileged set as gantry-operator (`operator.conf`);
//! - `apply`: apply the rest of the tenant set as gantry-operator.
//!
//! Prints one line: `ok <writes>`; for `check`, `changed <objects>` when
//! only admin bindings differ; or `error <reason>: <message>` where reason
//! is the condition reason the operator would set.

use std::path::Path;

use gantry_controller::reconcile::operator_access::{self, AccessError, TenantSet};
use gantry_controller::reconcile::pipeline::client_from_kubeconfig;
use gantry_tests::kubelet::read_objects;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let usage = "usage: gantry-operator-access BUNDLE SERVER grant|check|apply";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, server, step] = args.as_slice() else {
        panic!("{usage}");
    };
    let bundle = Path::new(bundle);
    let client = |file: &str| {
        let kubeconfig = std::fs::read(bundle.join(file)).unwrap();
        let server = server.clone();
        async move {
            client_from_kubeconfig(&kubeconfig, Some(&server))
                .await
                .unwrap()
        }
    };
    let objects = read_objects(&bundle.join("tenant"));
    let tenant = objects[0]["metadata"]["labels"]["gantry.dev/tenant"]
        .as_str()
        .expect("gantry's labels")
        .to_string();
    let set = TenantSet::of(&objects);
    let operator = client("operator.conf").await;
    let result: Result<String, AccessError> = match step.as_str() {
        "grant" => {
            let super_admin = client("super-admin.conf").await;
            operator_access::grant(&super_admin, &operator, &tenant, &set)
                .await
                .map(|report| format!("ok {}", report.writes()))
        }
        "check" => operator_access::check(&operator, &tenant, &set)
            .await
            .map(|changed| match changed.is_empty() {
                true => "ok 0".to_string(),
                false => format!("changed {}", changed.join(", ")),
            }),
        "apply" => operator_access::apply_as_operator(&operator, &tenant, &set)
            .await
            .map(|report| format!("ok {}", report.writes())),
        _ => panic!("{usage}"),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(error) => println!("error {}: {error}", error.reason()),
    }
}
