//! The restore Jobs of a tenant's etcd: one per member, on the member's own
//! volume (`data-etcd-<i>`), rendered from `templates/restore/` when the
//! operator restores a snapshot. Not part of the service set: the operator
//! creates them while etcd is stopped and deletes them when done.

use handlebars::Handlebars;
use serde_json::{Value, json};

use crate::args::{self, ETCD_PEER_PORT};
use crate::error::RenderError;
use crate::input::RenderInput;
pub use gantry_api::restore::RestoreRequest;

const TEMPLATE_NAME: &str = "restore/etcd-restore-job.yaml";
const TEMPLATE: &str = include_str!("../templates/restore/etcd-restore-job.yaml");
/// Where the member's volume is mounted in the Job (as in etcd's pod).
const VOLUME: &str = "/var/lib/etcd";

/// The name of member `index`'s restore Job.
pub fn restore_job_name(index: u32) -> String {
    format!("etcd-restore-{index}")
}

/// One Job per etcd member. Fails when the tenant has no backup store.
pub fn render_restore_jobs(
    input: &RenderInput,
    request: &RestoreRequest,
) -> Result<Vec<Value>, RenderError> {
    let backup = input.backup.as_ref().ok_or_else(|| RenderError::InvalidField {
        field: "spec.backup".into(),
        value: String::new(),
        reason: "a restore needs the tenant's backup store (spec.backup.store or the operator's default)".into(),
    })?;
    let store = &backup.store;
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    registry.register_helper("json", Box::new(crate::json_helper));
    let fail = |reason: String| RenderError::Template {
        template: TEMPLATE_NAME.into(),
        reason,
    };
    registry
        .register_template_string(TEMPLATE_NAME, TEMPLATE)
        .map_err(|e| fail(e.to_string()))?;
    let initial_cluster: Vec<String> = (0..input.etcd.replicas)
        .map(|i| {
            format!(
                "etcd-{i}=https://{}:{ETCD_PEER_PORT}",
                args::etcd_member_host(input, i)
            )
        })
        .collect();
    let mut store_args = vec![
        format!("--tenant={}", request.tenant),
        format!("--store={}", store.endpoint),
        format!("--bucket={}", store.bucket),
        format!("--region={}", store.region),
        format!("--prefix={}", store.prefix),
    ];
    let mut volumes = vec![json!({"name": "data", "persistentVolumeClaim": {"claimName": ""}})];
    let mut mounts = vec![json!({"name": "data", "mountPath": VOLUME})];
    if store.ca_bundle.is_some() {
        store_args.push("--store-ca=/etc/gantry/backup/store-ca.crt".into());
        volumes.push(json!({"name": "config", "configMap": {"name": "etcd-backup"}}));
        mounts.push(json!({"name": "config", "mountPath": "/etc/gantry/backup", "readOnly": true}));
    }
    let credential = |name: &str| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": store.credentials_secret, "key": name}}});
    let mut jobs = Vec::new();
    for index in 0..input.etcd.replicas {
        let member = format!("etcd-{index}");
        let mut prepare_args = vec![
            "backup".to_string(),
            "restore-member".into(),
            "prepare".into(),
        ];
        prepare_args.extend(store_args.iter().cloned());
        prepare_args.push(format!("--snapshot={}", request.snapshot));
        prepare_args.push(format!("--volume={VOLUME}"));
        let etcdutl_args = vec![
            "snapshot".to_string(),
            "restore".into(),
            format!("{VOLUME}/gantry-restore/etcd.db"),
            format!("--data-dir={VOLUME}/gantry-restore/data"),
            format!("--name={member}"),
            format!("--initial-cluster={}", initial_cluster.join(",")),
            format!("--initial-cluster-token={}", input.namespace),
            format!(
                "--initial-advertise-peer-urls=https://{}:{ETCD_PEER_PORT}",
                args::etcd_member_host(input, index)
            ),
        ];
        let install_args = vec![
            "backup".to_string(),
            "restore-member".into(),
            "install".into(),
            format!("--volume={VOLUME}"),
            format!("--snapshot={}", request.snapshot),
        ];
        let mut member_volumes = volumes.clone();
        member_volumes[0]["persistentVolumeClaim"]["claimName"] = format!("data-{member}").into();
        let mut labels = crate::context::component_labels(&input.name, "etcd-backup");
        labels["gantry.dev/restore"] = "true".into();
        let data = json!({
            "job_name": restore_job_name(index),
            "namespace": input.namespace,
            "labels": labels,
            "placement": {
                "node_selector": input.placement.node_selector,
                "tolerations": input.placement.tolerations,
                "priority_class_name": input.placement.priority_class_name,
            },
            "gantry_image": backup.image,
            "etcd_image": input.images.etcd,
            "prepare_args": prepare_args,
            "etcdutl_args": etcdutl_args,
            "install_args": install_args,
            "credentials_env": [credential("AWS_ACCESS_KEY_ID"), credential("AWS_SECRET_ACCESS_KEY")],
            "container_security": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "mounts": mounts,
            "volumes": member_volumes,
        });
        let text = registry
            .render(TEMPLATE_NAME, &data)
            .map_err(|e| fail(e.to_string()))?;
        let job: Value = serde_yaml::from_str(&text).map_err(|e| fail(format!("not YAML: {e}")))?;
        crate::check::check_as::<k8s_openapi::api::batch::v1::Job>(&job)
            .map_err(|(path, reason)| fail(format!("{path}: {reason}")))?;
        jobs.push(job);
    }
    Ok(jobs)
}
