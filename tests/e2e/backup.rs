//! Backups and a restore, end to end: the operator's default store is a real
//! S3-compatible server (versitygw, built here) on the service cluster's
//! network; the tenant's CronJob takes a snapshot at the time its schedule
//! says; the tenant's etcd volumes are wiped; `gantry.dev/restore-from`
//! brings every object back, Secrets decrypt, and the joined worker is Ready
//! again without a new join.

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_tests::object_store::{self, ObjectStore};
use gantry_tests::output_text;
use gantry_tests::service_node::ServiceCluster;

use super::tenant_worker::{WORKER, tenant_kubectl, wait_tenant};

/// The namespace of the tenant objects the restore must bring back.
const RESTORE_NAMESPACE: &str = "restore-test";
/// ConfigMaps written before the snapshot (the issue asks for at least 10,000).
pub const OBJECTS: usize = 10_000;
const SECRETS: usize = 20;
/// The operator's copy source for the default store's credentials.
pub const CREDENTIALS_SECRET: &str = "gantry-backup-s3";

/// versitygw on the masters' host, at its address: reachable from the
/// service cluster's pods as the service apiserver is.
pub fn start_object_store(cluster: &ServiceCluster, dir: &Path) -> ObjectStore {
    let host = &cluster.plane.node;
    let store_dir = dir.join("object-store");
    std::fs::create_dir_all(&store_dir).unwrap();
    ObjectStore::start(&store_dir, &host.address, object_store::PORT, |program| {
        host.command(program)
    })
}

/// The operator chart's `--set` arguments for the default store, and the
/// platform key pair (private key kept by the test, as a platform would
/// keep it outside the cluster). Creates the credentials Secret in the
/// operator's namespace first.
pub fn operator_backup_values(
    cluster: &ServiceCluster,
    store: &ObjectStore,
    dir: &Path,
) -> Vec<String> {
    let key = dir.join("platform.key");
    let made = std::process::Command::new(gantry_tests::gantry_bin())
        .args(["backup", "platform-key", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", output_text(&made));
    let _ = cluster.kubectl(&["create", "namespace", "gantry-system"]);
    cluster.kubectl_ok(&[
        "-n",
        "gantry-system",
        "create",
        "secret",
        "generic",
        CREDENTIALS_SECRET,
        &format!(
            "--from-literal=AWS_ACCESS_KEY_ID={}",
            object_store::ACCESS_KEY
        ),
        &format!(
            "--from-literal=AWS_SECRET_ACCESS_KEY={}",
            object_store::SECRET_KEY
        ),
    ]);
    vec![
        format!("--set=backup.store={}", store.url),
        format!("--set=backup.bucket={}", object_store::BUCKET),
        format!("--set-file=backup.storeCA={}", store.ca.display()),
        format!("--set-file=backup.platformPublicKey={}.pub", key.display()),
        format!("--set=backup.credentialsSecret={CREDENTIALS_SECRET}"),
    ]
}

/// Writes [`OBJECTS`] ConfigMaps and [`SECRETS`] Secrets in the tenant, four
/// kubectl processes at a time.
fn write_objects(cluster: &ServiceCluster, kubeconfig: &Path, dir: &Path) -> Duration {
    let started = Instant::now();
    let ns = tenant_kubectl(
        cluster,
        kubeconfig,
        &["create", "namespace", RESTORE_NAMESPACE],
    );
    assert!(ns.status.success(), "{}", output_text(&ns));
    const FILES: usize = 4;
    let mut files = Vec::new();
    for part in 0..FILES {
        let mut text = String::new();
        for i in (part..OBJECTS).step_by(FILES) {
            text.push_str(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: {RESTORE_NAMESPACE}\ndata:\n  value: \"{i}\"\n---\n"
            ));
        }
        if part == 0 {
            for i in 0..SECRETS {
                text.push_str(&format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: secret-{i}\n  namespace: {RESTORE_NAMESPACE}\nstringData:\n  password: \"s3cr3t-{i}\"\n---\n"
                ));
            }
        }
        let path = dir.join(format!("objects-{part}.yaml"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let children: Vec<_> = files
        .iter()
        .map(|path| {
            cluster
                .plane
                .node
                .command(gantry_tests::tool("kubectl"))
                .arg(format!(
                    "--kubeconfig={}",
                    cluster.plane.bundle.join(kubeconfig).display()
                ))
                .args(["create", "-f", path.to_str().unwrap(), "-o", "name"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kubectl create: {}",
            output_text(&output)
        );
    }
    assert_eq!(count(cluster, kubeconfig, "configmaps"), OBJECTS + 1); // and kube-root-ca.crt
    started.elapsed()
}

fn count(cluster: &ServiceCluster, kubeconfig: &Path, resource: &str) -> usize {
    let listed = tenant_kubectl(
        cluster,
        kubeconfig,
        &[
            "-n",
            RESTORE_NAMESPACE,
            "get",
            resource,
            "-o",
            "name",
            "--chunk-size=2000",
        ],
    );
    if !listed.status.success() {
        return 0;
    }
    String::from_utf8_lossy(&listed.stdout).lines().count()
}

/// A schedule that fires once, at the next minute but one (UTC).
fn schedule_soon() -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(2);
    format!("{} {} * * *", at.minute(), at.hour())
}

/// The disaster-recovery tenant, made from another's snapshot.
pub const DR: &str = "tenant-dr";
const DR_NAMESPACE: &str = "tcp-tenant-dr";
/// The smallest `spec.etcd.storage.quota` the API takes (`MIN_ETCD_QUOTA`).
const DR_QUOTA: &str = "64Mi";

pub struct Recovered {
    pub took: Duration,
    pub kubeconfig: std::path::PathBuf,
}

pub struct Restored {
    pub snapshot: String,
    pub write: Duration,
    pub snapshot_after_schedule: Duration,
    pub recovery: Duration,
}

/// The whole story: objects written, a scheduled snapshot, volumes wiped,
/// a restore, everything back.
pub fn a_scheduled_snapshot_restores_a_tenant_whose_volumes_are_gone(
    cluster: &ServiceCluster,
    store: &ObjectStore,
    tenant: &str,
    namespace: &str,
    kubeconfig: &Path,
    dir: &Path,
) -> Restored {
    let write = write_objects(cluster, kubeconfig, dir);
    let schedule = schedule_soon();
    cluster.helm_upgrade_tenant(tenant, &format!("backup.schedule={schedule}"));
    let scheduled = Instant::now();
    let snapshot = cluster.wait_for_within(
        "the scheduled backup's snapshot shows in the tenant's status",
        Duration::from_secs(420),
        &[
            "get",
            "tcp",
            tenant,
            "-o",
            "jsonpath={.status.backup.lastSnapshot.name}",
        ],
        |out| !out.trim().is_empty(),
    );
    let snapshot_after_schedule = scheduled.elapsed();
    let current = cluster.kubectl_ok(&[
        "get",
        "tcp",
        tenant,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"BackupsCurrent\")].status}",
    ]);
    assert_eq!(current.trim(), "True", "BackupsCurrent after a good backup");
    for kind in ["db", "keys", "json"] {
        let object = store.object_file(&format!("gantry/{tenant}/{snapshot}.{kind}"));
        assert!(object.exists(), "{} is not in the bucket", object.display());
    }
    // The sealed keys hold the tenant's CA key, and not in the clear.
    let sealed =
        std::fs::read(store.object_file(&format!("gantry/{tenant}/{snapshot}.keys"))).unwrap();
    assert!(!sealed.windows(11).any(|w| w == b"PRIVATE KEY"));

    // The volumes are lost: every member's data wiped, and the pods restart
    // on empty folders (etcd makes a new, empty cluster).
    let lost = Instant::now();
    for index in 0..3 {
        let path = format!("/var/lib/gantry-test-volumes/etcd-{index}/data");
        gantry_tests::run_ok(cluster.node.command("rm").args(["-rf", &path]));
    }
    cluster.kubectl_ok(&[
        "-n",
        namespace,
        "delete",
        "pods",
        "-l",
        "app.kubernetes.io/name=etcd",
        "--wait=false",
    ]);
    // A read of one object goes to etcd (a list may be served from the
    // apiserver's cache, which still holds what etcd lost).
    wait_tenant(
        cluster,
        kubeconfig,
        "the tenant's objects are gone with its volumes",
        Duration::from_secs(180),
        &[
            "get",
            "namespace",
            RESTORE_NAMESPACE,
            "--ignore-not-found",
            "-o",
            "name",
        ],
        |out| out.is_empty(),
    );

    cluster.kubectl_ok(&[
        "annotate",
        "tcp",
        tenant,
        &format!("gantry.dev/restore-from={snapshot}"),
    ]);
    cluster.wait_for_within(
        "the restore is done and the tenant Ready",
        Duration::from_secs(600),
        &[
            "get",
            "tcp",
            tenant,
            "-o",
            "jsonpath={.status.backup.restore.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out == "Done True",
    );
    wait_tenant(
        cluster,
        kubeconfig,
        "the worker is Ready again, without a new join",
        Duration::from_secs(300),
        &[
            "get",
            "node",
            WORKER,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out == "True",
    );
    let recovery = lost.elapsed();
    assert_eq!(count(cluster, kubeconfig, "configmaps"), OBJECTS + 1);
    assert!(count(cluster, kubeconfig, "secrets") >= SECRETS);
    for i in [0, SECRETS - 1] {
        let read = tenant_kubectl(
            cluster,
            kubeconfig,
            &[
                "-n",
                RESTORE_NAMESPACE,
                "get",
                "secret",
                &format!("secret-{i}"),
                "-o",
                "jsonpath={.data.password}",
            ],
        );
        use base64::Engine as _;
        let value = base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(&read.stdout).trim())
            .unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&value), format!("s3cr3t-{i}"));
    }
    wait_tenant(
        cluster,
        kubeconfig,
        "the web Deployment runs after the restore",
        Duration::from_secs(180),
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        |out| out == "1",
    );
    // The annotation acted once, and the wiped data were kept aside.
    let annotation = cluster.kubectl_ok(&[
        "get",
        "tcp",
        tenant,
        "-o",
        "jsonpath={.metadata.annotations.gantry\\.dev/restore-from}",
    ]);
    assert_eq!(annotation.trim(), "", "the operator removes the annotation");
    let kept = cluster
        .node
        .command("ls")
        .arg("/var/lib/gantry-test-volumes/etcd-0")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&kept.stdout).contains(&format!("data.before-restore-{snapshot}")),
        "{}",
        output_text(&kept)
    );
    the_upkeep_runbook_takes_a_backup_now(cluster, tenant, namespace, &snapshot);
    Restored {
        snapshot,
        write,
        snapshot_after_schedule,
        recovery,
    }
}

/// docs/operations.md's way to run a backup and its upkeep now, rather than
/// at the schedule's time: a Job from the CronJob. A new snapshot shows in
/// the status, and `EtcdBelowQuota` says what the upkeep found.
fn the_upkeep_runbook_takes_a_backup_now(
    cluster: &ServiceCluster,
    tenant: &str,
    namespace: &str,
    previous: &str,
) {
    run_the_upkeep_now(cluster, tenant, namespace, "upkeep-now", previous, "True");
}

/// `kubectl create job --from=cronjob/etcd-backup <job>` and waits for a
/// snapshot other than `previous` in the status with `EtcdBelowQuota` as
/// `below_quota`; returns the new snapshot's name.
fn run_the_upkeep_now(
    cluster: &ServiceCluster,
    tenant: &str,
    namespace: &str,
    job: &str,
    previous: &str,
    below_quota: &str,
) -> String {
    cluster.kubectl_ok(&[
        "-n",
        namespace,
        "create",
        "job",
        "--from=cronjob/etcd-backup",
        job,
    ]);
    let seen = cluster.wait_for_within(
        &format!("backup Job {job} writes a new snapshot, and EtcdBelowQuota is {below_quota}"),
        Duration::from_secs(240),
        &[
            "get",
            "tcp",
            tenant,
            "-o",
            "jsonpath={.status.backup.lastSnapshot.name} {.status.conditions[?(@.type==\"EtcdBelowQuota\")].status}",
        ],
        |out| {
            let (snapshot, status) = out.split_once(' ').unwrap_or((out, ""));
            !snapshot.is_empty() && snapshot != previous && status == below_quota
        },
    );
    seen.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A new tenant, `tenant-dr` in its own namespace, recovers `from`'s
/// snapshot with the bucket and the platform's private key alone, as
/// docs/operations.md's disaster-recovery runbook says: `gantry backup
/// fetch` opens the keys, `gantry backup secrets` makes the new namespace's
/// key Secrets, and the TenantControlPlane carries `gantry.dev/restore-from:
/// <from>/<snapshot>`. Every object is back and a Secret decrypts with the
/// restored encryption key. Its etcd quota is the smallest there is (64 MiB),
/// for [`a_full_quota_shows_in_the_status_and_the_runbook_gives_it_back`].
pub fn a_new_tenant_recovers_from_the_bucket_and_the_platform_key(
    cluster: &ServiceCluster,
    store: &ObjectStore,
    from: &str,
    snapshot: &str,
    version: &str,
    dir: &Path,
) -> Recovered {
    let started = Instant::now();
    cluster.add_volumes("etcd-dr", 1, "10Gi");
    let host = &cluster.plane.node;
    let recovery = dir.join("recovery");
    let fetched = host
        .command(gantry_tests::gantry_bin())
        .args([
            "backup",
            "fetch",
            "--tenant",
            from,
            "--bucket",
            object_store::BUCKET,
        ])
        .arg(format!("--store={}", store.url))
        .arg(format!("--store-ca={}", store.ca.display()))
        .arg(format!(
            "--platform-key={}",
            dir.join("platform.key").display()
        ))
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--out={}", recovery.display()))
        .env("AWS_ACCESS_KEY_ID", object_store::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", object_store::SECRET_KEY)
        .output()
        .unwrap();
    assert!(
        fetched.status.success(),
        "gantry backup fetch: {}",
        output_text(&fetched)
    );
    let secrets = host
        .command(gantry_tests::gantry_bin())
        .args(["backup", "secrets", "--tenant", DR])
        .arg(format!("--keys={}", recovery.join("keys").display()))
        .output()
        .unwrap();
    assert!(
        secrets.status.success(),
        "gantry backup secrets: {}",
        output_text(&secrets)
    );
    let secrets_file = dir.join("recovery-secrets.yaml");
    std::fs::write(&secrets_file, &secrets.stdout).unwrap();
    cluster.kubectl_ok(&["apply", "-f", secrets_file.to_str().unwrap()]);
    let manifest = format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {DR}\n  \
         annotations:\n    gantry.dev/restore-from: {from}/{snapshot}\nspec:\n  version: \"{version}\"\n  \
         apiServer:\n    replicas: 1\n    service:\n      type: NodePort\n  controllerManager:\n    replicas: 1\n  \
         scheduler:\n    replicas: 1\n  etcd:\n    replicas: 1\n    storage:\n      quota: {DR_QUOTA}\n  backup:\n    schedule: \"{}\"\n",
        super::FAR_AWAY
    );
    let manifest_file = dir.join("tenant-dr.yaml");
    std::fs::write(&manifest_file, manifest).unwrap();
    cluster.kubectl_ok(&["apply", "-f", manifest_file.to_str().unwrap()]);
    cluster.wait_for_within(
        "the recovered tenant's restore is done and it is Ready",
        Duration::from_secs(600),
        &[
            "get",
            "tcp",
            DR,
            "-o",
            "jsonpath={.status.backup.restore.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out == "Done True",
    );
    let took = started.elapsed();
    let kubeconfig = dir.join("tenant-dr.conf");
    std::fs::write(
        &kubeconfig,
        super::tenant_worker::gantry_on_service_cluster(cluster, &["kubeconfig", DR]),
    )
    .unwrap();
    assert_eq!(count(cluster, &kubeconfig, "configmaps"), OBJECTS + 1);
    let read = tenant_kubectl(
        cluster,
        &kubeconfig,
        &[
            "-n",
            RESTORE_NAMESPACE,
            "get",
            "secret",
            "secret-3",
            "-o",
            "jsonpath={.data.password}",
        ],
    );
    use base64::Engine as _;
    let value = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8_lossy(&read.stdout).trim())
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&value),
        "s3cr3t-3",
        "{}",
        output_text(&read)
    );
    Recovered { took, kubeconfig }
}

/// A restore from a snapshot the bucket does not hold: etcd and the
/// apiservers stop, the restore Job fails, the restore ends `Failed` with
/// the Job's reason, and the tenant starts again on its data as they were.
/// Removing the annotation (docs/operations.md) ends the matter.
pub fn a_restore_from_a_missing_snapshot_fails_and_leaves_the_data(
    cluster: &ServiceCluster,
    from: &str,
    kubeconfig: &Path,
) -> Duration {
    const MISSING: &str = "20000101T000000Z";
    let asked = format!("{from}/{MISSING}");
    let started = Instant::now();
    cluster.kubectl_ok(&[
        "annotate",
        "tcp",
        DR,
        &format!("gantry.dev/restore-from={asked}"),
    ]);
    let failed = cluster.wait_for_within(
        "a restore from a missing snapshot ends Failed",
        Duration::from_secs(420),
        &[
            "get",
            "tcp",
            DR,
            "-o",
            "jsonpath={.status.backup.restore.from} {.status.backup.restore.phase}: {.status.backup.restore.message}",
        ],
        |out| out.starts_with(&format!("{asked} Failed:")),
    );
    assert!(
        failed.contains("etcd's data are as before the restore") && failed.contains(MISSING),
        "the status names the missing snapshot: {failed}"
    );
    cluster.wait_for_within(
        "the tenant is Ready again after the failed restore",
        Duration::from_secs(300),
        &[
            "get",
            "tcp",
            DR,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out == "True",
    );
    wait_tenant(
        cluster,
        kubeconfig,
        "the tenant serves its objects again after the failed restore",
        Duration::from_secs(180),
        &[
            "-n",
            RESTORE_NAMESPACE,
            "get",
            "configmap",
            "cm-9999",
            "-o",
            "name",
        ],
        |out| out == "configmap/cm-9999",
    );
    let took = started.elapsed();
    assert_eq!(count(cluster, kubeconfig, "configmaps"), OBJECTS + 1);
    cluster.kubectl_ok(&["annotate", "tcp", DR, "gantry.dev/restore-from-"]);
    took
}

/// What [`a_full_quota_shows_in_the_status_and_the_runbook_gives_it_back`] saw.
pub struct QuotaRun {
    pub filled_with: usize,
    pub fill: Duration,
    pub fix: Duration,
}

/// The tenant's writes fill its 64 MiB quota: etcd raises NOSPACE and the
/// apiserver refuses writes. docs/operations.md's runbook: delete what
/// filled it (deletes pass the alarm), run the upkeep now; the upkeep's
/// report turns `EtcdBelowQuota` False (reason `QuotaReached`), writes pass
/// again, and the next upkeep finds no alarm (True).
pub fn a_full_quota_shows_in_the_status_and_the_runbook_gives_it_back(
    cluster: &ServiceCluster,
    kubeconfig: &Path,
    dir: &Path,
) -> QuotaRun {
    const FILL_NAMESPACE: &str = "fill";
    let started = Instant::now();
    let made = tenant_kubectl(
        cluster,
        kubeconfig,
        &["create", "namespace", FILL_NAMESPACE],
    );
    assert!(made.status.success(), "{}", output_text(&made));
    let payload = dir.join("fill-900k.txt");
    std::fs::write(&payload, "x".repeat(900 << 10)).unwrap();
    let mut filled_with = 0;
    let mut refusal = String::new();
    for i in 0..200 {
        let created = tenant_kubectl(
            cluster,
            kubeconfig,
            &[
                "-n",
                FILL_NAMESPACE,
                "create",
                "configmap",
                &format!("fill-{i}"),
                &format!("--from-file=data={}", payload.display()),
                "-o",
                "name",
            ],
        );
        if !created.status.success() {
            refusal = output_text(&created);
            break;
        }
        filled_with += 1;
    }
    assert!(
        refusal.contains("database space exceeded"),
        "{filled_with} ConfigMaps of 900 KiB and no NOSPACE refusal: {refusal}"
    );
    assert!(
        filled_with >= 40,
        "a 64 MiB quota refused writes after {filled_with} ConfigMaps of 900 KiB"
    );
    let fill = started.elapsed();

    let fixing = Instant::now();
    let deleted = tenant_kubectl(
        cluster,
        kubeconfig,
        &[
            "-n",
            FILL_NAMESPACE,
            "delete",
            "configmaps",
            "--all",
            "--wait=true",
        ],
    );
    assert!(
        deleted.status.success(),
        "deletes pass the alarm: {}",
        output_text(&deleted)
    );
    let previous = cluster.kubectl_ok(&[
        "get",
        "tcp",
        DR,
        "-o",
        "jsonpath={.status.backup.lastSnapshot.name}",
    ]);
    let first = run_the_upkeep_now(
        cluster,
        DR,
        DR_NAMESPACE,
        "upkeep-full",
        previous.trim(),
        "False",
    );
    let condition = cluster.kubectl_ok(&[
        "get",
        "tcp",
        DR,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"EtcdBelowQuota\")].reason}: {.status.conditions[?(@.type==\"EtcdBelowQuota\")].message}",
    ]);
    assert!(
        condition.starts_with("QuotaReached:") && condition.contains("disarmed"),
        "{condition}"
    );
    wait_tenant(
        cluster,
        kubeconfig,
        "a write passes once the upkeep disarmed NOSPACE",
        Duration::from_secs(60),
        &[
            "-n",
            FILL_NAMESPACE,
            "create",
            "configmap",
            "after-the-fix",
            "-o",
            "name",
        ],
        |out| out == "configmap/after-the-fix",
    );
    run_the_upkeep_now(cluster, DR, DR_NAMESPACE, "upkeep-after", &first, "True");
    QuotaRun {
        filled_with,
        fill,
        fix: fixing.elapsed(),
    }
}

/// `kubectl delete tcp`, waiting for the finalizer to finish.
pub fn delete_the_tenant(cluster: &ServiceCluster, tenant: &str) {
    let deleted = cluster.kubectl(&["delete", "tcp", tenant, "--wait=true", "--timeout=300s"]);
    assert!(deleted.status.success(), "{}", output_text(&deleted));
}
