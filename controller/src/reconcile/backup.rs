//! The tenant's backups, service-cluster side: the copy of the default
//! store's credentials in the tenant namespace, and what the backup Jobs
//! report, as `status.backup` and the `BackupsCurrent` condition.
//!
//! A backup Job writes its snapshot's manifest as its termination message
//! (`gantry backup snapshot --report`), or the end of its log when it fails
//! (`FallbackToLogsOnError`). The CronJob's status changes when a Job ends,
//! and the operator watches CronJobs, so a pass follows every backup.

use gantry_renderer::{BACKUP_CREDENTIALS_SECRET, BackupInput};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use time::OffsetDateTime;

use super::error::{ReconcileError, api_error};
use super::outcome::Note;
use super::pass::PassState;
use crate::api::{BackupStatus, ConditionType, SnapshotStatus};
use crate::apply::FIELD_MANAGER;

/// The longest failure message kept from a Job's log.
const MAX_FAILURE_MESSAGE: usize = 400;

/// Copies the operator's store credentials into the tenant namespace when
/// the tenant backs up to the default store.
pub(super) async fn copy_credentials(
    pass: &PassState<'_>,
    namespace: &str,
    backup: &BackupInput,
) -> Result<(), ReconcileError> {
    let defaults = &pass.ctx.service_cluster.backup;
    let Some((from_namespace, from_name)) = &defaults.credentials_from else {
        return Ok(());
    };
    if backup.store.credentials_secret != BACKUP_CREDENTIALS_SECRET {
        return Ok(());
    }
    let source: Api<Secret> = Api::namespaced(pass.ctx.client.clone(), from_namespace);
    let secret = source
        .get_opt(from_name)
        .await
        .map_err(api_error(format!(
            "get Secret {from_namespace}/{from_name}"
        )))?
        .ok_or_else(|| {
            ReconcileError::Waiting(format!(
                "the backup credentials Secret {from_namespace}/{from_name} does not exist"
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let target: Api<Secret> = Api::namespaced(pass.ctx.client.clone(), namespace);
    let existing = target
        .get_opt(BACKUP_CREDENTIALS_SECRET)
        .await
        .map_err(api_error(format!(
            "get Secret {namespace}/{BACKUP_CREDENTIALS_SECRET}"
        )))?;
    // A settled tenant costs no write: the copy is written only when it differs.
    if existing.is_some_and(|e| e.data.unwrap_or_default() == data) {
        return Ok(());
    }
    let copy = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": BACKUP_CREDENTIALS_SECRET,
            "namespace": namespace,
            "labels": {
                gantry_api::labels::MANAGED_BY.0: gantry_api::labels::MANAGED_BY.1,
                gantry_api::labels::TENANT_LABEL: pass.tcp.metadata.name.clone().unwrap_or_default(),
            },
        },
        "type": "Opaque",
        "data": data,
    });
    target
        .patch(
            BACKUP_CREDENTIALS_SECRET,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(copy),
        )
        .await
        .map_err(api_error(format!(
            "apply Secret {namespace}/{BACKUP_CREDENTIALS_SECRET}"
        )))?;
    Ok(())
}

/// What the backup Jobs say: the newest success, and a failure newer than it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Observed {
    pub last_snapshot: Option<SnapshotStatus>,
    /// The newest failed Job's message, when it ended after the last success.
    pub failure: Option<String>,
    /// What the newest successful run found of etcd's quota: `Some(true)`
    /// when it found NOSPACE (and whether it disarmed it).
    pub nospace: Option<(bool, bool)>,
}

/// Reads the backup Jobs and their pods' termination messages.
pub(super) async fn observe(
    pass: &PassState<'_>,
    namespace: &str,
    bucket: &str,
) -> Result<Observed, ReconcileError> {
    let tenant = pass.tcp.metadata.name.clone().unwrap_or_default();
    let selector = format!(
        "app.kubernetes.io/name=etcd-backup,{}={tenant}",
        gantry_api::labels::TENANT_LABEL
    );
    let jobs: Api<Job> = Api::namespaced(pass.ctx.client.clone(), namespace);
    let mut listed = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("list backup Jobs"))?
        .items;
    // Newest first, by when each ended (or started).
    listed.sort_by_key(|job| std::cmp::Reverse(ended_at(job)));
    let pods: Api<Pod> = Api::namespaced(pass.ctx.client.clone(), namespace);
    let mut observed = Observed {
        last_snapshot: pass
            .status
            .backup
            .as_ref()
            .and_then(|b| b.last_snapshot.clone()),
        ..Observed::default()
    };
    for job in &listed {
        let job_status = job.status.clone().unwrap_or_default();
        let succeeded = job_status.succeeded.unwrap_or(0) > 0;
        let failed = job_status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Failed" && c.status == "True");
        if !succeeded && !failed {
            continue;
        }
        let name = job.metadata.name.clone().unwrap_or_default();
        let message = termination_message(&pods, &name).await?;
        if succeeded {
            let report = message.as_deref().and_then(read_report);
            observed.nospace = report.as_ref().and_then(nospace);
            if let Some(snapshot) = report.map(|r| snapshot_status(r, bucket)) {
                let newer = observed
                    .last_snapshot
                    .as_ref()
                    .is_none_or(|s| s.name < snapshot.name);
                if newer {
                    observed.last_snapshot = Some(snapshot);
                }
            }
            break;
        }
        if observed.failure.is_none() {
            observed.failure = Some(failure_message(message.as_deref(), &name));
        }
    }
    Ok(observed)
}

fn ended_at(job: &Job) -> Option<k8s_openapi::jiff::Timestamp> {
    let status = job.status.as_ref()?;
    status
        .completion_time
        .as_ref()
        .or(status.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

async fn termination_message(pods: &Api<Pod>, job: &str) -> Result<Option<String>, ReconcileError> {
    let listed = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map_err(api_error(format!("list the pods of Job {job}")))?;
    Ok(listed.items.iter().rev().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    }))
}

/// The report a successful Job left (its termination message): the
/// snapshot's manifest, with the upkeep's findings.
fn read_report(message: &str) -> Option<gantry_backup_manifest::Manifest> {
    serde_json::from_str(message.trim()).ok()
}

/// The snapshot a Job reported, as status shows it.
fn snapshot_status(manifest: gantry_backup_manifest::Manifest, bucket: &str) -> SnapshotStatus {
    SnapshotStatus {
        name: manifest.name,
        taken_at: manifest.taken_at,
        bytes: i64::try_from(manifest.database.bytes).unwrap_or(i64::MAX),
        location: format!("s3://{bucket}/{}", manifest.database.key),
        revision: manifest.etcd.revision,
    }
}

/// Whether the run's upkeep found NOSPACE, and disarmed it; `None` when it
/// reported no upkeep.
fn nospace(manifest: &gantry_backup_manifest::Manifest) -> Option<(bool, bool)> {
    let upkeep = manifest.upkeep.as_ref()?;
    Some((
        upkeep.alarms.iter().any(|a| a == "NOSPACE"),
        upkeep.disarmed,
    ))
}

/// `EtcdBelowQuota` from the last run's upkeep: (ok, reason, message).
pub(super) fn quota_condition(
    nospace: (bool, bool),
    namespace: &str,
) -> (bool, &'static str, String) {
    match nospace {
        (false, _) => (
            true,
            "BelowQuota",
            "the last backup found no NOSPACE alarm".to_string(),
        ),
        (true, disarmed) => (
            false,
            "QuotaReached",
            format!(
                "etcd reached its quota and refused writes (NOSPACE){}; delete what filled it or raise \
                 spec.etcd.storage.quota, then run the upkeep: kubectl -n {namespace} create job \
                 --from=cronjob/etcd-backup upkeep-$(date +%s)",
                if disarmed {
                    "; the backup compacted, defragmented and disarmed it, and it returns if the data still fill the quota"
                } else {
                    ""
                }
            ),
        ),
    }
}

/// The end of a failed Job's log, on one line, bounded.
fn failure_message(message: Option<&str>, job: &str) -> String {
    let text = message.unwrap_or("").trim();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    let mut line: String = last.chars().take(MAX_FAILURE_MESSAGE).collect();
    if last.chars().count() > MAX_FAILURE_MESSAGE {
        line.push('…');
    }
    format!("backup Job {job} failed: {line}")
}

/// The shape of `gantry backup snapshot --report` this module reads: the
/// fields status needs, and nothing more (unknown fields are ignored).
mod gantry_backup_manifest {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Manifest {
        pub name: String,
        pub taken_at: String,
        pub etcd: Etcd,
        pub database: Object,
        #[serde(default)]
        pub upkeep: Option<Upkeep>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    pub struct Upkeep {
        pub alarms: Vec<String>,
        pub disarmed: bool,
    }
    #[derive(serde::Deserialize)]
    pub struct Etcd {
        pub revision: i64,
    }
    #[derive(serde::Deserialize)]
    pub struct Object {
        pub key: String,
        pub bytes: u64,
    }
}

/// Whether the last snapshot is current, and why not: (ok, reason, message).
pub(super) fn judge(
    observed: &Observed,
    schedule: &str,
    now: OffsetDateTime,
) -> (bool, &'static str, String) {
    let interval = schedule_interval(schedule, now);
    let limit = interval * 2;
    if let Some(failure) = &observed.failure {
        return (false, "BackupFailed", failure.clone());
    }
    let Some(last) = &observed.last_snapshot else {
        return (
            false,
            "NoBackupYet",
            format!("no backup yet (schedule {schedule:?}, UTC)"),
        );
    };
    let taken = time::OffsetDateTime::parse(
        &last.taken_at,
        &time::format_description::well_known::Rfc3339,
    )
    .ok();
    match taken {
        Some(taken) if now - taken > limit => (
            false,
            "BackupStale",
            format!(
                "the last backup, {}, is older than twice the schedule's interval ({})",
                last.name,
                humanize(limit)
            ),
        ),
        Some(_) => (
            true,
            "BackupSucceeded",
            format!(
                "snapshot {} at {} ({} bytes)",
                last.name, last.location, last.bytes
            ),
        ),
        None => (
            false,
            "BackupStale",
            format!("the last backup's time {:?} is unreadable", last.taken_at),
        ),
    }
}

/// The time between two runs of `schedule` after `now` (an hour if the
/// schedule cannot be read: it was checked when the spec was resolved).
pub(super) fn schedule_interval(schedule: &str, now: OffsetDateTime) -> time::Duration {
    let fallback = time::Duration::hours(1);
    let Ok(cron) = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(schedule)
    else {
        return fallback;
    };
    let Ok(start) = k8s_openapi::jiff::Timestamp::from_second(now.unix_timestamp()) else {
        return fallback;
    };
    let start = start.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC);
    let mut runs = cron.iter_after(start).take(3);
    match (runs.next(), runs.next(), runs.next()) {
        // The longer of the next two gaps: a schedule such as "0 9,17 * * *"
        // has uneven ones.
        (Some(a), Some(b), Some(c)) => {
            let gap = |x: &k8s_openapi::jiff::Zoned, y: &k8s_openapi::jiff::Zoned| {
                time::Duration::seconds(y.timestamp().as_second() - x.timestamp().as_second())
            };
            gap(&a, &b).max(gap(&b, &c))
        }
        _ => fallback,
    }
}

fn humanize(duration: time::Duration) -> String {
    let minutes = duration.whole_minutes();
    if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

/// Step: the copy of the credentials, then status and the condition. A
/// failure to read the Jobs leaves the previous status and condition.
pub(super) async fn step(pass: &mut PassState<'_>, namespace: &str, backup: Option<&BackupInput>) {
    let Some(backup) = backup else {
        pass.status.backup = None;
        pass.status
            .conditions
            .retain(|c| c.type_ != ConditionType::BackupsCurrent.as_str());
        return;
    };
    if let Err(error) = copy_credentials(pass, namespace, backup).await {
        tracing::warn!("backup credentials: {error}");
        pass.notes
            .push(Note::warning("BackupCredentialsMissing", error.to_string()));
    }
    let observed = match observe(pass, namespace, &backup.store.bucket).await {
        Ok(observed) => observed,
        Err(error) => {
            tracing::warn!("backup status: {error}");
            return;
        }
    };
    let (ok, reason, message) = judge(&observed, &backup.schedule, pass.now);
    let was_ok = pass.status.is_true(ConditionType::BackupsCurrent);
    let before = pass
        .status
        .condition(ConditionType::BackupsCurrent)
        .map(|c| c.reason.clone());
    let restore = pass.status.backup.as_ref().and_then(|b| b.restore.clone());
    pass.status.backup = Some(BackupStatus {
        last_snapshot: observed.last_snapshot,
        restore,
    });
    pass.condition(ConditionType::BackupsCurrent, ok, reason, &message);
    if !ok && (was_ok || before.as_deref() != Some(reason)) && reason != "NoBackupYet" {
        pass.notes.push(Note::warning(reason, message));
    } else if ok && !was_ok {
        pass.notes.push(Note::normal(reason, message));
    }
    if let Some(found) = observed.nospace {
        let (ok, reason, message) = quota_condition(found, namespace);
        let was = pass
            .status
            .condition(ConditionType::EtcdBelowQuota)
            .map(|c| c.status.clone());
        pass.condition(ConditionType::EtcdBelowQuota, ok, reason, &message);
        if !ok && was.as_deref() != Some("False") {
            pass.notes.push(Note::warning(reason, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    fn snapshot(taken_at: &str) -> SnapshotStatus {
        SnapshotStatus {
            name: "20261207T100000Z".into(),
            taken_at: taken_at.into(),
            bytes: 1000,
            location: "s3://b/gantry/t/20261207T100000Z.db".into(),
            revision: 7,
        }
    }

    #[test]
    fn the_interval_is_the_longer_of_the_next_gaps() {
        let now = at("2026-12-07T10:30:00Z");
        assert_eq!(
            schedule_interval("17 * * * *", now),
            time::Duration::hours(1)
        );
        assert_eq!(
            schedule_interval("*/5 * * * *", now),
            time::Duration::minutes(5)
        );
        assert_eq!(
            schedule_interval("0 9,17 * * *", now),
            time::Duration::hours(16)
        );
    }

    #[test]
    fn current_stale_failed_and_none_yet() {
        let now = at("2026-12-07T12:00:00Z");
        let fresh = Observed {
            last_snapshot: Some(snapshot("2026-12-07T11:17:00Z")),
            ..Observed::default()
        };
        assert_eq!(judge(&fresh, "17 * * * *", now).1, "BackupSucceeded");
        let stale = Observed {
            last_snapshot: Some(snapshot("2026-12-07T09:17:00Z")),
            ..Observed::default()
        };
        let (ok, reason, message) = judge(&stale, "17 * * * *", now);
        assert!(!ok && reason == "BackupStale", "{message}");
        assert!(message.contains("2h"), "{message}");
        let failed = Observed {
            failure: Some(failure_message(
                Some("log\nerror: object store: HTTP 403 AccessDenied\n"),
                "etcd-backup-1",
            )),
            ..fresh
        };
        let (ok, reason, message) = judge(&failed, "17 * * * *", now);
        assert!(!ok && reason == "BackupFailed");
        assert_eq!(
            message,
            "backup Job etcd-backup-1 failed: error: object store: HTTP 403 AccessDenied"
        );
        assert_eq!(
            judge(&Observed::default(), "17 * * * *", now).1,
            "NoBackupYet"
        );
    }

    #[test]
    fn nospace_names_the_fix() {
        let report = |upkeep: &str| {
            format!(
                r#"{{"name":"20261207T100000Z","takenAt":"t","etcd":{{"revision":1}},"database":{{"key":"k","bytes":1}}{upkeep}}}"#
            )
        };
        let nospace_in = |text: String| nospace(&read_report(&text).unwrap());
        assert_eq!(nospace_in(report("")), None);
        assert_eq!(nospace_in(report(r#","upkeep":{}"#)), Some((false, false)));
        let found = nospace_in(report(
            r#","upkeep":{"alarms":["NOSPACE"],"disarmed":true}"#,
        ))
        .unwrap();
        assert_eq!(found, (true, true));
        let (ok, reason, message) = quota_condition(found, "tcp-a");
        assert!(!ok && reason == "QuotaReached");
        assert!(
            message.contains("spec.etcd.storage.quota")
                && message.contains("create job --from=cronjob/etcd-backup"),
            "{message}"
        );
    }

    #[test]
    fn a_report_becomes_status() {
        let report = r#"{"format":"gantry.dev/etcd-snapshot/v1","tenant":"t","name":"20261207T100000Z","takenAt":"2026-12-07T10:00:00Z","etcd":{"endpoint":"e","version":"3.6.8","clusterId":"1","memberId":"2","revision":42},"database":{"key":"gantry/t/20261207T100000Z.db","bytes":20512,"sha256":"ab"},"keys":{"key":"k","bytes":1,"sha256":"cd"},"platformKeyId":"x"}"#;
        let status = snapshot_status(read_report(report).unwrap(), "backups");
        assert_eq!(status.location, "s3://backups/gantry/t/20261207T100000Z.db");
        assert_eq!((status.bytes, status.revision), (20512, 42));
        assert!(read_report("error: not json").is_none());
    }
}
