//! Backups against real peers: etcd (built here, on the certificates `gantry
//! pki init` wrote), an S3-compatible object store (versitygw, built here,
//! serving https with its own CA), and etcdutl for the restore. A snapshot of
//! 10,000 keys goes to the bucket with its keys sealed, retention keeps the
//! newest, and a fetched snapshot restores into a new etcd with every key.
//! Then every kind of bad input is refused with a clear line and leaves
//! nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gantry_tests::{
    KillOnDrop, free_port, gantry_bin, output_text, pki_init, run_ok, tool, wait_until,
};

use gantry_tests::object_store::{ACCESS_KEY, BUCKET, ObjectStore, SECRET_KEY};

fn start_object_store(dir: &Path) -> ObjectStore {
    ObjectStore::start(dir, "127.0.0.1", free_port(), |program| {
        Command::new(program)
    })
}

/// One etcd member on the tenant's etcd certificates.
struct Etcd {
    process: KillOnDrop,
    url: String,
    log: PathBuf,
}

fn start_etcd(pki: &Path, data: &Path, log: PathBuf) -> Etcd {
    start_etcd_with(pki, data, log, &[])
}

fn start_etcd_with(pki: &Path, data: &Path, log: PathBuf, extra: &[&str]) -> Etcd {
    let (client, peer) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let etcd_file = |name: &str| pki.join("pki/etcd").join(name).display().to_string();
    let process = KillOnDrop::spawn(
        Command::new(tool("etcd"))
            .arg("--name=m0")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=m0={peer_url}"))
            .arg("--client-cert-auth=true")
            .arg(format!("--trusted-ca-file={}", etcd_file("ca.crt")))
            .arg(format!("--cert-file={}", etcd_file("server.crt")))
            .arg(format!("--key-file={}", etcd_file("server.key")))
            .arg("--listen-metrics-urls=http://127.0.0.1:0")
            .args(extra)
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(&log).unwrap()),
    );
    let mut etcd = Etcd { process, url, log };
    let healthy = wait_until(Duration::from_secs(30), || {
        etcd.process.has_exited()
            || etcdctl(pki, &etcd.url, &["endpoint", "health"])
                .status
                .success()
    });
    assert!(
        healthy && !etcd.process.has_exited(),
        "etcd did not become healthy: {}",
        std::fs::read_to_string(&etcd.log).unwrap_or_default()
    );
    etcd
}

fn etcdctl(pki: &Path, url: &str, args: &[&str]) -> Output {
    let etcd_file = |name: &str| pki.join("pki/etcd").join(name).display().to_string();
    Command::new(tool("etcdctl"))
        .arg(format!("--endpoints={url}"))
        .arg(format!("--cacert={}", etcd_file("ca.crt")))
        .arg(format!("--cert={}", etcd_file("healthcheck-client.crt")))
        .arg(format!("--key={}", etcd_file("healthcheck-client.key")))
        .args(["--dial-timeout=3s", "--command-timeout=30s"])
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// Writes `count` keys under /registry/configmaps/ in transactions of 100
/// (etcd's default limit is 128 operations per transaction).
fn write_keys(pki: &Path, url: &str, count: usize) {
    for batch in 0..count.div_ceil(100) {
        let mut script = String::from("\n");
        for i in batch * 100..((batch + 1) * 100).min(count) {
            script.push_str(&format!(
                "put /registry/configmaps/default/cm-{i} value-{i}\n"
            ));
        }
        script.push_str("\n\n");
        let output = etcdctl_txn(pki, url, &script);
        assert!(
            output.status.success(),
            "etcdctl txn: {}",
            output_text(&output)
        );
    }
}

/// `etcdctl txn` with `script` (etcdctl's interactive format) on stdin.
fn etcdctl_txn(pki: &Path, url: &str, script: &str) -> Output {
    use std::io::Write as _;
    let etcd_file = |name: &str| pki.join("pki/etcd").join(name).display().to_string();
    let mut child = Command::new(tool("etcdctl"))
        .arg(format!("--endpoints={url}"))
        .arg(format!("--cacert={}", etcd_file("ca.crt")))
        .arg(format!("--cert={}", etcd_file("healthcheck-client.crt")))
        .arg(format!("--key={}", etcd_file("healthcheck-client.key")))
        .arg("txn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn count_keys(pki: &Path, url: &str, prefix: &str) -> u64 {
    let output = etcdctl(
        pki,
        url,
        &["get", prefix, "--prefix", "--count-only", "-w", "fields"],
    );
    assert!(output.status.success(), "{}", output_text(&output));
    // `"Count" : 10000`
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.lines()
        .find_map(|line| line.strip_prefix("\"Count\" : "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in: {text}"))
}

/// What every `gantry backup` run of one tenant needs.
struct Setup {
    dir: PathBuf,
    pki: PathBuf,
    store: ObjectStore,
    etcd: Etcd,
    keys: PathBuf,
    platform_key: PathBuf,
}

impl Setup {
    fn new(dir: &Path) -> Self {
        let pki = pki_init(dir, "prod", &["--endpoint", "203.0.113.10"]);
        let store = start_object_store(dir);
        // A member's volume as the etcd StatefulSet mounts it: data/ inside.
        let etcd = start_etcd(&pki, &dir.join("volume/data"), dir.join("etcd.log"));
        // The key material a tenant's backup carries: its CAs' keys and the
        // service-account key (the operator mounts the same from Secrets).
        // As the backup CronJob mounts them: keys/<Secret>/<key>, for every
        // Secret gantry never replaces.
        let keys = dir.join("keys");
        for secret in gantry_renderer::create_only_secrets() {
            for (key, path) in secret.files {
                let target = keys.join(secret.name).join(key);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(pki.join(path), target).unwrap();
            }
        }
        let platform_key = dir.join("platform.key");
        let made = gantry_backup(
            &["platform-key", "--out", platform_key.to_str().unwrap()],
            &[],
        );
        assert!(made.status.success(), "{}", output_text(&made));
        Setup {
            dir: dir.to_path_buf(),
            pki,
            store,
            etcd,
            keys,
            platform_key,
        }
    }

    fn store_args(&self, tenant: &str) -> Vec<String> {
        vec![
            format!("--tenant={tenant}"),
            format!("--store={}", self.store.url),
            format!("--bucket={BUCKET}"),
            format!("--store-ca={}", self.store.ca.display()),
        ]
    }

    fn snapshot(&self, tenant: &str, extra: &[&str]) -> Output {
        let etcd_file = |name: &str| self.pki.join("pki/etcd").join(name).display().to_string();
        let mut args = vec!["snapshot".to_string()];
        args.extend(self.store_args(tenant));
        args.extend([
            format!("--etcd-ca={}", etcd_file("ca.crt")),
            format!("--etcd-cert={}", etcd_file("backup-client.crt")),
            format!("--etcd-key={}", etcd_file("backup-client.key")),
            format!("--keys={}", self.keys.display()),
            format!("--work-dir={}", self.dir.display()),
        ]);
        if !extra.iter().any(|a| a.starts_with("--etcd=")) {
            args.push(format!("--etcd={}", self.etcd.url));
        }
        if !extra
            .iter()
            .any(|a| a.starts_with("--platform-public-key="))
        {
            args.push(format!(
                "--platform-public-key={}.pub",
                self.platform_key.display()
            ));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        gantry_backup_owned(&args, &[])
    }

    fn list(&self, tenant: &str) -> Output {
        let mut args = vec!["list".to_string()];
        args.extend(self.store_args(tenant));
        gantry_backup_owned(&args, &[])
    }

    fn fetch(&self, tenant: &str, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec!["fetch".to_string()];
        args.extend(self.store_args(tenant));
        args.push(format!("--out={}", out.display()));
        if !extra.iter().any(|a| a.starts_with("--platform-key")) {
            args.push(format!("--platform-key={}", self.platform_key.display()));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        gantry_backup_owned(&args, env)
    }

    /// The object's file in versitygw's folder.
    fn object_file(&self, key: &str) -> PathBuf {
        self.store.object_file(key)
    }
}

fn gantry_backup(args: &[&str], env: &[(&str, &str)]) -> Output {
    let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    gantry_backup_owned(&owned, env)
}

/// `gantry backup ARGS` with the store's credentials in the environment
/// (`env` overrides them).
fn gantry_backup_owned(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(gantry_bin());
    command
        .arg("backup")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run gantry backup")
}

fn snapshot_names(listing: &Output) -> Vec<String> {
    assert!(listing.status.success(), "{}", output_text(listing));
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .skip(1)
        .map(|line| line.split('\t').next().unwrap().to_string())
        .collect()
}

fn assert_no_secrets_in(output: &Output, secrets: &[&str]) {
    let text = output_text(output);
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a secret leaked into the output:\n{text}"
        );
    }
}

/// Secrets never show: not the store's secret key, not the platform key,
/// not a CA's private key.
fn assert_no_secrets(setup: &Setup, output: &Output) {
    let text = output_text(output);
    let platform = std::fs::read_to_string(&setup.platform_key).unwrap();
    let ca_key = std::fs::read_to_string(setup.keys.join("ca/ca.key")).unwrap();
    let ca_key_line = ca_key.lines().nth(1).unwrap();
    for secret in [SECRET_KEY, platform.trim(), ca_key_line, "X-Amz-Signature"] {
        assert!(
            !text.contains(secret),
            "a secret leaked into the output:\n{text}"
        );
    }
}

#[test]
fn ten_thousand_keys_are_snapshotted_kept_by_retention_and_restored_with_their_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(tmp.path());
    write_keys(&setup.pki, &setup.etcd.url, 10_000);
    let secret = etcdctl(
        &setup.pki,
        &setup.etcd.url,
        &["put", "/registry/secrets/default/db", "s3cr3t"],
    );
    assert!(secret.status.success());

    // Objects that are not gantry's, beside and inside the tenant's prefix:
    // retention must never touch them.
    let stranger = setup.object_file("gantry/prod/notes.txt");
    let neighbour = setup.object_file("gantry/prod-2/20200101T000000Z.db");
    for file in [&stranger, &neighbour] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "not gantry's").unwrap();
    }

    let mut taken = Vec::new();
    for round in 0..3 {
        if round > 0 {
            // Names have a second's resolution.
            std::thread::sleep(Duration::from_millis(1100));
        }
        let output = setup.snapshot("prod", &["--keep=2"]);
        assert!(output.status.success(), "{}", output_text(&output));
        assert_no_secrets(&setup, &output);
        let line = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            line.starts_with("snapshot ") && line.contains("of prod"),
            "{line}"
        );
        taken.push(line.split(' ').nth(1).unwrap().to_string());
    }
    let listed = snapshot_names(&setup.list("prod"));
    assert_eq!(listed, taken[1..], "retention keeps the newest two");
    for kind in ["db", "keys", "json"] {
        let first = setup.object_file(&format!("gantry/prod/{}.{kind}", taken[0]));
        assert!(!first.exists(), "{} outlived retention", first.display());
    }
    assert!(
        stranger.exists() && neighbour.exists(),
        "retention touched what is not gantry's"
    );

    // The snapshot in the bucket: etcd's own format, its hash appended.
    let stored = std::fs::read(setup.object_file(&format!("gantry/prod/{}.db", taken[2]))).unwrap();
    assert_eq!(stored.len() % 512, 32, "etcd's database and its SHA-256");
    let sealed =
        std::fs::read(setup.object_file(&format!("gantry/prod/{}.keys", taken[2]))).unwrap();
    let ca_key = std::fs::read(setup.keys.join("ca/ca.key")).unwrap();
    assert!(
        !sealed
            .windows(40)
            .any(|w| ca_key.windows(40).any(|k| k == w)),
        "the keys are sealed, not stored in the clear"
    );

    // Fetch the newest and restore it with etcdutl into a new member.
    let fetched = tmp.path().join("restore");
    let output = setup.fetch("prod", &fetched, &[], &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_no_secrets(&setup, &output);
    for file in [
        "ca/ca.key",
        "sa/sa.key",
        "etcd-ca/ca.key",
        "encryption-config/encryption-config.yaml",
    ] {
        assert_eq!(
            std::fs::read(fetched.join("keys").join(file)).unwrap(),
            std::fs::read(setup.keys.join(file)).unwrap(),
            "{file} came back as it was"
        );
    }
    // The disaster-recovery runbook's next step: the Secrets of a new
    // namespace, from the fetched keys, byte for byte.
    let secrets = gantry_backup(
        &[
            "secrets",
            "--keys",
            fetched.join("keys").to_str().unwrap(),
            "--tenant",
            "prod-dr",
        ],
        &[],
    );
    assert!(secrets.status.success(), "{}", output_text(&secrets));
    let text = String::from_utf8(secrets.stdout).unwrap();
    let mut seen = 0;
    let mut documents = text.split("---\n");
    let namespace: serde_json::Value = serde_yaml::from_str(documents.next().unwrap()).unwrap();
    assert_eq!(namespace["kind"], "Namespace");
    assert_eq!(namespace["metadata"]["name"], "tcp-prod-dr");
    assert_eq!(
        namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gantry"
    );
    for document in documents {
        let secret: serde_json::Value = serde_yaml::from_str(document).unwrap();
        assert_eq!(secret["metadata"]["namespace"], "tcp-prod-dr");
        let name = secret["metadata"]["name"].as_str().unwrap();
        for (key, value) in secret["data"].as_object().unwrap() {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .unwrap();
            assert_eq!(
                bytes,
                std::fs::read(setup.keys.join(name).join(key)).unwrap(),
                "{name}/{key}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 9, "every key file of the five Secrets");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&fetched).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the fetched folder holds keys: owner only");

    // A write after the newest snapshot: the restore must not have it.
    let later = etcdctl(
        &setup.pki,
        &setup.etcd.url,
        &["put", "/registry/configmaps/default/later", "x"],
    );
    assert!(later.status.success());

    // The restore on the member's own volume, as the operator's restore Job
    // does it: the member is stopped, gantry fetches the snapshot into its
    // staging folder, etcdutl restores it there, gantry puts it in place and
    // keeps the old data beside.
    let store_args = setup.store_args("prod");
    let Etcd { process, .. } = setup.etcd;
    drop(process);
    let volume = tmp.path().join("volume");
    let snapshot = format!("--snapshot={}", taken[2]);
    let mut prepare: Vec<String> = vec!["restore-member".into(), "prepare".into()];
    prepare.extend(store_args);
    prepare.extend([snapshot.clone(), format!("--volume={}", volume.display())]);
    let output = gantry_backup_owned(&prepare, &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_no_secrets_in(&output, &[SECRET_KEY]);
    let peer = free_port();
    run_ok(
        Command::new(tool("etcdutl"))
            .args(["snapshot", "restore"])
            .arg(volume.join("gantry-restore/etcd.db"))
            .arg(format!(
                "--data-dir={}",
                volume.join("gantry-restore/data").display()
            ))
            .args(["--name=m0"])
            .arg(format!("--initial-cluster=m0=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            )),
    );
    let install = [
        "restore-member".to_string(),
        "install".into(),
        format!("--volume={}", volume.display()),
        snapshot,
    ];
    let output = gantry_backup_owned(&install, &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let kept = volume.join(format!("data.before-restore-{}", taken[2]));
    assert!(
        kept.join("member").is_dir(),
        "the data before the restore is kept"
    );
    assert!(
        !volume.join("gantry-restore").exists(),
        "the staging folder is gone"
    );

    let restored = start_etcd(
        &setup.pki,
        &volume.join("data"),
        tmp.path().join("restored.log"),
    );
    assert_eq!(
        count_keys(
            &setup.pki,
            &restored.url,
            "/registry/configmaps/default/cm-"
        ),
        10_000
    );
    assert_eq!(
        count_keys(
            &setup.pki,
            &restored.url,
            "/registry/configmaps/default/later"
        ),
        0
    );
    let read = etcdctl(
        &setup.pki,
        &restored.url,
        &["get", "/registry/secrets/default/db", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "s3cr3t");
}

/// Asserts a refusal: exit `code`, one line naming what is wrong, no output
/// folder, no secrets.
fn assert_refused(setup: &Setup, output: &Output, code: i32, needles: &[&str], out: Option<&Path>) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{}", output_text(output));
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    assert_no_secrets(setup, output);
    if let Some(out) = out {
        assert!(!out.exists(), "{} was left behind", out.display());
        assert!(!PathBuf::from(format!("{}.partial", out.display())).exists());
    }
}

#[test]
fn bad_buckets_credentials_snapshots_tenants_and_keys_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(tmp.path());
    write_keys(&setup.pki, &setup.etcd.url, 500);
    let output = setup.snapshot("prod", &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let name = String::from_utf8_lossy(&output.stdout)
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    let out = tmp.path().join("out");
    let object = |kind: &str| setup.object_file(&format!("gantry/prod/{name}.{kind}"));

    // A wrong bucket, wrong or missing credentials: named, before any snapshot.
    let mut args: Vec<String> = vec!["list".into()];
    args.extend(
        setup
            .store_args("prod")
            .into_iter()
            .map(|a| a.replace("--bucket=backups", "--bucket=no-such-bucket")),
    );
    assert_refused(
        &setup,
        &gantry_backup_owned(&args, &[]),
        1,
        &["NoSuchBucket", "no-such-bucket"],
        None,
    );
    let wrong_secret = [("AWS_SECRET_ACCESS_KEY", "wrong-secret-key-000000")];
    assert_refused(
        &setup,
        &setup.fetch("prod", &out, &[], &wrong_secret),
        1,
        &["SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"],
        Some(&out),
    );
    assert_refused(
        &setup,
        &setup.fetch("prod", &out, &[], &[("AWS_ACCESS_KEY_ID", "")]),
        2,
        &["AWS_ACCESS_KEY_ID", "is not set"],
        Some(&out),
    );
    let before = snapshot_names(&setup.list("prod"));
    let unreachable = setup.snapshot("prod", &["--etcd=https://127.0.0.1:1"]);
    assert_refused(
        &setup,
        &unreachable,
        1,
        &["etcd at https://127.0.0.1:1"],
        None,
    );
    assert_eq!(
        snapshot_names(&setup.list("prod")),
        before,
        "a failed snapshot writes nothing"
    );

    // The private key where only the public half belongs: refused, so a
    // backup Job is never handed the key that opens every tenant's keys.
    let private = format!("--platform-public-key={}", setup.platform_key.display());
    let output = setup.snapshot("prod", &[&private]);
    assert_refused(&setup, &output, 2, &["is the platform's private key"], None);

    // A wrong platform key: named by its id, not opened.
    let other_key = tmp.path().join("other.key");
    let made = gantry_backup(&["platform-key", "--out", other_key.to_str().unwrap()], &[]);
    assert!(made.status.success(), "{}", output_text(&made));
    // "wrote platform key <id> to <path>"
    let other_id = String::from_utf8_lossy(&made.stderr)
        .split(' ')
        .nth(3)
        .unwrap()
        .to_string();
    let flag = format!("--platform-key={}", other_key.display());
    let wrong_key = setup.fetch("prod", &out, &[&flag], &[]);
    let needle = format!("the key given is {other_id}");
    assert_refused(
        &setup,
        &wrong_key,
        1,
        &["sealed with platform key", &needle],
        Some(&out),
    );
    // ... even with the manifest edited to name that key: the keys don't open.
    let manifest = std::fs::read_to_string(object("json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let own_id = json["platformKeyId"].as_str().unwrap().to_string();
    std::fs::write(object("json"), manifest.replace(&own_id, &other_id)).unwrap();
    let edited = setup.fetch("prod", &out, &[&flag], &[]);
    assert_refused(
        &setup,
        &edited,
        1,
        &["do not open with platform key"],
        Some(&out),
    );
    std::fs::write(object("json"), &manifest).unwrap();

    // A damaged snapshot, then a truncated one: refused, no folder left.
    let good = std::fs::read(object("db")).unwrap();
    let mut damaged = good.clone();
    damaged[good.len() / 2] ^= 0x01;
    std::fs::write(object("db"), &damaged).unwrap();
    assert_refused(
        &setup,
        &setup.fetch("prod", &out, &[], &[]),
        1,
        &["does not match its SHA-256"],
        Some(&out),
    );
    std::fs::write(object("db"), &good[..good.len() - 1000]).unwrap();
    assert_refused(
        &setup,
        &setup.fetch("prod", &out, &[], &[]),
        1,
        &["truncated"],
        Some(&out),
    );
    std::fs::write(object("db"), &good).unwrap();

    // Another tenant's snapshot copied under this tenant's prefix.
    for kind in ["db", "keys", "json"] {
        let target = setup.object_file(&format!("gantry/other/{name}.{kind}"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(object(kind), target).unwrap();
    }
    assert_refused(
        &setup,
        &setup.fetch("other", &out, &[], &[]),
        1,
        &["a snapshot of tenant prod, not of other"],
        Some(&out),
    );
    // ... and with its manifest rewritten to claim it: the keys don't open.
    let claimed = manifest.replace("prod", "other");
    std::fs::write(
        setup.object_file(&format!("gantry/other/{name}.json")),
        claimed,
    )
    .unwrap();
    assert_refused(
        &setup,
        &setup.fetch("other", &out, &[], &[]),
        1,
        &["do not open with platform key"],
        Some(&out),
    );

    // Bad flags: one line naming the flag and the value.
    assert_refused(
        &setup,
        &setup.fetch("team/prod", &out, &[], &[]),
        2,
        &["--tenant", "\"team/prod\""],
        Some(&out),
    );
    assert_refused(
        &setup,
        &setup.fetch("prod", &out, &["--snapshot=20200101T000000Z"], &[]),
        2,
        &["--snapshot", "20200101T000000Z", &name],
        Some(&out),
    );
    let restore = gantry_backup(&["restore", "prod", "--snapshot", "latest"], &[]);
    assert_refused(
        &setup,
        &restore,
        2,
        &["--snapshot", "\"latest\"", "gantry backup list"],
        None,
    );
    std::fs::create_dir(&out).unwrap();
    let existing = setup.fetch("prod", &out, &[], &[]);
    assert_eq!(
        existing.status.code(),
        Some(2),
        "{}",
        output_text(&existing)
    );
    assert!(String::from_utf8_lossy(&existing.stderr).contains("already exists"));
    std::fs::remove_dir(&out).unwrap();

    // After all of it, the good snapshot still fetches and the live etcd
    // still has every key.
    let output = setup.fetch("prod", &out, &[], &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(count_keys(&setup.pki, &setup.etcd.url, "/registry/"), 500);
}

/// `gantry etcd defragment` against `url` with the backup's client pair.
fn defragment(pki: &Path, url: &str, above: &str) -> Output {
    let etcd_file = |name: &str| pki.join("pki/etcd").join(name).display().to_string();
    Command::new(gantry_bin())
        .args(["etcd", "defragment"])
        .arg(format!("--etcd={url}"))
        .arg(format!("--etcd-ca={}", etcd_file("ca.crt")))
        .arg(format!("--etcd-cert={}", etcd_file("backup-client.crt")))
        .arg(format!("--etcd-key={}", etcd_file("backup-client.key")))
        .arg(format!("--above={above}"))
        .output()
        .expect("run gantry etcd defragment")
}

/// etcd at its quota refuses every write (the NOSPACE alarm); the runbook's
/// fix (delete what filled it, then `gantry etcd defragment`: compaction,
/// defragmentation, the alarm disarmed) brings writes back.
#[test]
fn a_full_quota_is_given_back_by_compaction_defragmentation_and_disarming() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_init(tmp.path(), "full", &["--endpoint", "203.0.113.10"]);
    let quota = (16u64 << 20).to_string();
    let quota_flag = format!("--quota-backend-bytes={quota}");
    let etcd = start_etcd_with(
        &pki,
        &tmp.path().join("data"),
        tmp.path().join("etcd.log"),
        &[&quota_flag],
    );
    let value = "x".repeat(4096);
    let mut full = false;
    for batch in 0..200 {
        let mut script = String::from("\n");
        for i in 0..50 {
            script.push_str(&format!("put /registry/bulk/k-{batch}-{i} {value}\n"));
        }
        script.push_str("\n\n");
        let output = etcdctl_txn(&pki, &etcd.url, &script);
        if !output.status.success() {
            let text = output_text(&output);
            assert!(text.contains("database space exceeded"), "{text}");
            full = true;
            break;
        }
    }
    assert!(full, "a 16 MiB quota took 40 MiB of writes");
    let alarms = etcdctl(&pki, &etcd.url, &["alarm", "list"]);
    assert!(
        output_text(&alarms).contains("NOSPACE"),
        "{}",
        output_text(&alarms)
    );
    let refused = etcdctl(&pki, &etcd.url, &["put", "/registry/after", "x"]);
    assert!(!refused.status.success(), "a write passed the full quota");

    // The fix: what filled it is deleted (deletes pass the alarm), then the upkeep.
    let deleted = etcdctl(&pki, &etcd.url, &["del", "/registry/bulk/", "--prefix"]);
    assert!(deleted.status.success(), "{}", output_text(&deleted));
    let fixed = defragment(&pki, &etcd.url, "0.5");
    assert!(fixed.status.success(), "{}", output_text(&fixed));
    let report: serde_json::Value = serde_json::from_slice(&fixed.stdout).unwrap();
    assert_eq!(report["alarms"], serde_json::json!(["NOSPACE"]), "{report}");
    assert_eq!(report["disarmed"], true, "{report}");
    let member = &report["defragmented"][0];
    let (before, after) = (
        member["bytesBefore"].as_u64().unwrap(),
        member["bytesAfter"].as_u64().unwrap(),
    );
    eprintln!(
        "NOSPACE: the member's database {before} bytes before, {after} after (quota {quota})"
    );
    assert!(after < before / 2, "{report}");
    let alarms = etcdctl(&pki, &etcd.url, &["alarm", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&alarms.stdout).trim(),
        "",
        "the alarm is disarmed"
    );
    let written = etcdctl(&pki, &etcd.url, &["put", "/registry/after", "x"]);
    assert!(written.status.success(), "{}", output_text(&written));
    // Nothing to give back now: the next run defragments nothing.
    let again = defragment(&pki, &etcd.url, "0.5");
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(report.get("defragmented").is_none(), "{report}");
}
