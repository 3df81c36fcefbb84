//! Step: a restore of the tenant's etcd, asked for by annotation
//! (`gantry.dev/restore-from`), as a small state machine in
//! `status.backup.restore`:
//!
//! 1. **Stopping**: etcd's StatefulSet and the apiservers' Deployment scale
//!    to zero (the apiservers' caches would otherwise outlive the data they
//!    came from); the pass halts until no etcd pod is left.
//! 2. **Restoring**: one Job per member, on the member's volume (rendered by
//!    `gantry_renderer::render_restore_jobs`): fetch and verify the snapshot,
//!    `etcdutl snapshot restore`, put it in place keeping the old data
//!    beside. The pass halts until every Job succeeded. A failed Job ends the
//!    restore as **Failed**: the swap is each Job's last step, so the
//!    members' data are as they were, and the pass scales them back up.
//! 3. **Starting**: the pass goes on as usual, which applies the replicas
//!    again; once etcd's members are all ready, **Done**, and the annotation
//!    is removed so the act is not repeated.
//!
//! The tenant keeps its CAs (they are Secrets, not etcd data), so its
//! workers and kubeconfigs work again without a new join.

use gantry_api::labels::RESTORE_ANNOTATION;
use gantry_renderer::{RenderInput, RestoreRequest, render_restore_jobs, restore_job_name};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::error::{ReconcileError, api_error};
use super::outcome::Note;
use super::pass::{Halt, PassState, Stop};
use crate::api::{BackupStatus, Phase, RestoreStatus, TenantControlPlane};

/// The field manager of the restore's scale-down: a writer apart from
/// `gantry`, so the next apply of the service set puts the replicas back.
const SCALE_MANAGER: &str = "gantry-restore";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestorePhase {
    Stopping,
    Restoring,
    Starting,
    Done,
    Failed,
}

impl RestorePhase {
    fn as_str(self) -> &'static str {
        match self {
            RestorePhase::Stopping => "Stopping",
            RestorePhase::Restoring => "Restoring",
            RestorePhase::Starting => "Starting",
            RestorePhase::Done => "Done",
            RestorePhase::Failed => "Failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            RestorePhase::Stopping,
            RestorePhase::Restoring,
            RestorePhase::Starting,
            RestorePhase::Done,
            RestorePhase::Failed,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

/// The annotation's value as a request: `NAME` (this tenant's snapshot) or
/// `TENANT/NAME`.
pub(super) fn parse_request(tenant: &str, value: &str) -> Result<RestoreRequest, String> {
    RestoreRequest::parse(tenant, value)
        .map_err(|reason| format!("annotation {RESTORE_ANNOTATION}={value:?} {reason}"))
}

/// Where the tenant's restore stands: `Some(phase)` while one is asked for
/// and not over.
fn current(pass: &PassState<'_>, asked: &str) -> Option<RestorePhase> {
    let restore = pass.status.backup.as_ref()?.restore.as_ref()?;
    (restore.from == asked).then(|| RestorePhase::parse(&restore.phase))?
}

fn record(pass: &mut PassState<'_>, from: &str, phase: RestorePhase, message: &str) {
    let backup = pass.status.backup.get_or_insert_with(BackupStatus::default);
    backup.restore = Some(RestoreStatus {
        from: from.to_string(),
        phase: phase.as_str().to_string(),
        message: message.to_string(),
    });
}

/// Runs the restore's current phase. `Ok(())` lets the pass go on (no
/// restore, or Starting, Done or Failed); a halt stops it while etcd is
/// down.
pub(super) async fn step(
    pass: &mut PassState<'_>,
    namespace: &str,
    input: &RenderInput,
) -> Result<(), Stop> {
    let annotations = pass.tcp.annotations();
    let Some(asked) = annotations.get(RESTORE_ANNOTATION).cloned() else {
        return Ok(());
    };
    let request = parse_request(&input.name, &asked)
        .map_err(|message| Halt::refused("RestoreRefused", message))?;
    let phase = match current(pass, &asked) {
        Some(RestorePhase::Failed) => return Ok(()),
        Some(phase) => phase,
        None => {
            // Checked before anything stops: the tenant needs a store.
            render_restore_jobs(input, &request)?;
            // A new tenant (a recovery elsewhere) first gets its etcd, empty:
            // its volumes are what the restore Jobs restore into.
            let statefulsets: Api<StatefulSet> =
                Api::namespaced(pass.ctx.client.clone(), namespace);
            let exists = statefulsets
                .get_opt("etcd")
                .await
                .map_err(api_error("get StatefulSet etcd"))?
                .is_some();
            if !exists {
                return Ok(());
            }
            pass.notes.push(Note::warning(
                "RestoreStarted",
                format!(
                    "restoring etcd from snapshot {} of {}: etcd and the apiservers stop",
                    request.snapshot, request.tenant
                ),
            ));
            RestorePhase::Stopping
        }
    };
    match phase {
        RestorePhase::Stopping => stop(pass, namespace, input, &asked).await,
        RestorePhase::Restoring => run_jobs(pass, namespace, input, &asked, &request).await,
        RestorePhase::Starting => finish_when_ready(pass, namespace, input, &asked).await,
        RestorePhase::Done => remove_annotation(pass, &asked).await,
        RestorePhase::Failed => Ok(()),
    }
}

async fn stop(
    pass: &mut PassState<'_>,
    namespace: &str,
    input: &RenderInput,
    asked: &str,
) -> Result<(), Stop> {
    record(
        pass,
        asked,
        RestorePhase::Stopping,
        "etcd and the apiservers scale to zero",
    );
    let client = pass.ctx.client.clone();
    let scale = serde_json::json!({"spec": {"replicas": 0}});
    let params = PatchParams::apply(SCALE_MANAGER).force();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), namespace);
    let apply = |kind: &str, name: &str| serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": scale["spec"]});
    statefulsets
        .patch("etcd", &params, &Patch::Apply(apply("StatefulSet", "etcd")))
        .await
        .map_err(api_error("scale StatefulSet etcd to 0"))?;
    deployments
        .patch(
            "kube-apiserver",
            &params,
            &Patch::Apply(apply("Deployment", "kube-apiserver")),
        )
        .await
        .map_err(api_error("scale Deployment kube-apiserver to 0"))?;
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let selector = format!(
        "app.kubernetes.io/name=etcd,gantry.dev/tenant={}",
        input.name
    );
    let left = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("list etcd pods"))?
        .items
        .len();
    if left > 0 {
        return Err(Halt::pending(
            "Restoring",
            format!("restore: waiting for {left} etcd pod(s) to stop"),
            Phase::Restoring,
        )
        .into());
    }
    record(
        pass,
        asked,
        RestorePhase::Restoring,
        "one restore Job per etcd member",
    );
    Err(Halt::pending(
        "Restoring",
        "restore: etcd is stopped; the restore Jobs start",
        Phase::Restoring,
    )
    .into())
}

async fn run_jobs(
    pass: &mut PassState<'_>,
    namespace: &str,
    input: &RenderInput,
    asked: &str,
    request: &RestoreRequest,
) -> Result<(), Stop> {
    let jobs: Api<Job> = Api::namespaced(pass.ctx.client.clone(), namespace);
    let mut done = 0;
    for (index, job) in render_restore_jobs(input, request)?.into_iter().enumerate() {
        let name = restore_job_name(u32::try_from(index).unwrap_or(u32::MAX));
        let live = match jobs
            .get_opt(&name)
            .await
            .map_err(api_error(format!("get Job {name}")))?
        {
            Some(live) => live,
            None => {
                let job: Job = serde_json::from_value(job).map_err(|e| {
                    Stop::Failed(ReconcileError::Waiting(format!("restore Job {name}: {e}")))
                })?;
                jobs.create(&PostParams::default(), &job)
                    .await
                    .map_err(api_error(format!("create Job {name}")))?
            }
        };
        let status = live.status.unwrap_or_default();
        let failed = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Failed" && c.status == "True");
        if failed {
            let why = job_message(pass, namespace, &name).await;
            let message =
                format!("restore Job {name} failed: {why}; etcd's data are as before the restore");
            record(pass, asked, RestorePhase::Failed, &message);
            pass.notes.push(Note::warning("RestoreFailed", message));
            delete_jobs(pass, namespace, input).await;
            // The pass goes on: the service set scales etcd back up.
            return Ok(());
        }
        if status.succeeded.unwrap_or(0) > 0 {
            done += 1;
        }
    }
    let replicas = input.etcd.replicas as usize;
    if done < replicas {
        return Err(Halt::pending(
            "Restoring",
            format!("restore: {done} of {replicas} etcd members restored"),
            Phase::Restoring,
        )
        .into());
    }
    record(
        pass,
        asked,
        RestorePhase::Starting,
        "every member restored; etcd and the apiservers start",
    );
    delete_jobs(pass, namespace, input).await;
    Ok(())
}

/// The last line a Job's pod left (its termination message).
async fn job_message(pass: &PassState<'_>, namespace: &str, job: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(pass.ctx.client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await;
    let message = listed.ok().and_then(|list| {
        list.items.iter().rev().find_map(|pod| {
            let status = pod.status.as_ref()?;
            status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten())
                .find_map(|c| {
                    let terminated = c.state.as_ref()?.terminated.as_ref()?;
                    (terminated.exit_code != 0)
                        .then(|| terminated.message.clone())
                        .flatten()
                })
        })
    });
    let text = message.unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    last.chars().take(400).collect()
}

async fn delete_jobs(pass: &PassState<'_>, namespace: &str, input: &RenderInput) {
    let jobs: Api<Job> = Api::namespaced(pass.ctx.client.clone(), namespace);
    for index in 0..input.etcd.replicas {
        let name = restore_job_name(index);
        if let Err(error) = jobs.delete(&name, &DeleteParams::background()).await
            && !matches!(&error, kube::Error::Api(s) if s.code == 404)
        {
            tracing::warn!("delete restore Job {name}: {error}");
        }
    }
}

async fn finish_when_ready(
    pass: &mut PassState<'_>,
    namespace: &str,
    input: &RenderInput,
    asked: &str,
) -> Result<(), Stop> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(pass.ctx.client.clone(), namespace);
    let ready = statefulsets
        .get_opt("etcd")
        .await
        .map_err(api_error("get StatefulSet etcd"))?
        .and_then(|s| s.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if ready < i32::try_from(input.etcd.replicas).unwrap_or(i32::MAX) {
        return Ok(());
    }
    let message = format!("etcd restored from {asked}");
    record(pass, asked, RestorePhase::Done, &message);
    pass.notes.push(Note::normal("RestoreDone", message));
    remove_annotation(pass, asked).await
}

/// Removes the annotation once the restore is done, so it acts once.
async fn remove_annotation(pass: &mut PassState<'_>, asked: &str) -> Result<(), Stop> {
    let name = pass.tcp.name_any();
    let api: Api<TenantControlPlane> = Api::all(pass.ctx.client.clone());
    let failed = |source| {
        Stop::Failed(ReconcileError::Api {
            action: format!("remove annotation {RESTORE_ANNOTATION} of {name}"),
            source,
        })
    };
    for _ in 0..3 {
        let live = api.get(&name).await.map_err(failed)?;
        if live
            .annotations()
            .get(RESTORE_ANNOTATION)
            .map(String::as_str)
            != Some(asked)
        {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": live.resource_version(),
            "annotations": {RESTORE_ANNOTATION: null},
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(source) => return Err(failed(source)),
        }
    }
    Err(Stop::Failed(ReconcileError::Waiting(format!(
        "annotation {RESTORE_ANNOTATION} of {name}: the object kept changing while it was removed"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_annotation_is_named_with_its_value() {
        let error = parse_request("tenant-a", "latest").unwrap_err();
        assert!(
            error.starts_with("annotation gantry.dev/restore-from=\"latest\" is not NAME"),
            "{error}"
        );
    }
}
