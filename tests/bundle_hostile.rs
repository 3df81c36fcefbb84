//! The offline commands against a hostile or careless user, on the real
//! binary (issue 25's second round; `bundle_safety.rs` holds the first):
//! - every command that writes a bundle (`render`, `pki init`) makes one
//!   ownership check: no foreign folder, no other tenant's bundle, no folder
//!   without a record unless `--adopt`, no lost key replaced without `--new-ca`;
//! - a folder renamed while gantry works is never written through its old
//!   name, and two names of one folder share one lock;
//! - a killed render leaves nothing of its own outside the bundle, and its
//!   leftovers are cleaned by the next;
//! - only regular files are read, with a bound: no hang, no memory blow-up;
//! - no error quotes a file that may hold a key;
//! - a sequence of random renders, deletions, swaps and kills never changes a
//!   file that is not gantry's, nor a key without `--new-ca`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gantry_tests::bundle::{assert_ok, assert_refused, render, stderr};
use gantry_tests::{files_under, gantry, gantry_bin, repo_root};

fn manifest(dir: &Path, name: &str, algorithm: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/tenant-a.yaml"))
        .unwrap()
        .replace("name: tenant-a", &format!("name: {name}"))
        .replace("algorithm: ECDSA-P256", &format!("algorithm: {algorithm}"));
    let path = dir.join(format!("{name}-{algorithm}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn pki_init(name: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "pki",
        "init",
        "--name",
        name,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gantry(&args)
}

/// Runs gantry with `args`, killed after `limit`: a command that blocks fails
/// the test instead of hanging it.
fn gantry_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(gantry_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("gantry {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A kubeadm node's /etc/kubernetes: gantry's PKI layout and more.
fn kubeadm_folder(at: &Path, from: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(at.join("pki")).unwrap();
    std::fs::create_dir_all(at.join("manifests")).unwrap();
    for file in ["pki/ca.crt", "pki/ca.key", "admin.conf", "scheduler.conf"] {
        std::fs::copy(from.join(file), at.join(file)).unwrap();
    }
    std::fs::write(at.join("kubelet.conf"), "kubelet's").unwrap();
    std::fs::write(at.join("manifests/etcd.yaml"), "kubeadm's").unwrap();
    files_under(at)
}

/// Items 1 and 2: `pki init` and `render` make one ownership check.
#[test]
fn pki_init_and_render_write_only_into_their_own_tenants_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let bundle_a = tmp.path().join("A");
    assert_ok(&render(&a, &bundle_a, &[]));
    let before = files_under(&bundle_a);

    let kubeadm = tmp.path().join("etc-kubernetes");
    let node = kubeadm_folder(&kubeadm, &bundle_a);
    assert_refused(
        &pki_init("tenant-b", &kubeadm, &[]),
        &[
            "is not empty and is not a gantry bundle",
            "\"kubelet.conf\"",
        ],
    );
    assert_eq!(
        files_under(&kubeadm),
        node,
        "pki init wrote into /etc/kubernetes"
    );

    assert_refused(
        &pki_init("tenant-b", &bundle_a, &[]),
        &["holds tenant tenant-a", "not tenant-b"],
    );
    assert_eq!(
        files_under(&bundle_a),
        before,
        "pki init rewrote another tenant's bundle"
    );
    // Nor its own tenant's rendered bundle: its flags would replace what the
    // manifests and the chart were made with.
    assert_refused(
        &pki_init("tenant-a", &bundle_a, &[]),
        &["holds a rendered bundle", "gantry render"],
    );
    assert_eq!(files_under(&bundle_a), before);

    // A backup of kubeadm's certificates: only pki/ca.{crt,key}.
    let backup = tmp.path().join("backup");
    std::fs::create_dir_all(backup.join("pki")).unwrap();
    for file in ["pki/ca.crt", "pki/ca.key"] {
        std::fs::copy(bundle_a.join(file), backup.join(file)).unwrap();
    }
    let kept = files_under(&backup);
    assert_refused(
        &render(&a, &backup, &[]),
        &["no gantry-bundle.json", "--adopt"],
    );
    assert_refused(
        &pki_init("tenant-a", &backup, &[]),
        &["no gantry-bundle.json"],
    );
    assert_eq!(
        files_under(&backup),
        kept,
        "a folder without a record was written"
    );

    // pki init's output for tenant-b is tenant-b's.
    let bundle_b = tmp.path().join("B");
    assert_ok(&pki_init("tenant-b", &bundle_b, &[]));
    let b_files = files_under(&bundle_b);
    assert_refused(
        &render(&a, &bundle_b, &[]),
        &["holds tenant tenant-b", "not tenant-a"],
    );
    assert_eq!(files_under(&bundle_b), b_files);
}

/// Item 3: a bundle that lost its record is never pruned; removals are reported.
#[test]
fn a_bundle_without_its_record_loses_nothing_and_every_removal_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let out = tmp.path().join("EA");
    assert_ok(&render(&a, &out, &["--token", "abcdef.0123456789abcdef"]));

    // With its record: the stale token Secret goes, and the summary names it.
    let renewed = render(&a, &out, &["--token", "ghijkl.0123456789abcdef"]);
    assert_ok(&renewed);
    let summary = String::from_utf8_lossy(&renewed.stdout);
    assert!(summary.contains(", 1 removed"), "{summary}");
    assert!(
        summary.contains("removed tenant/03-secret-bootstrap-token-abcdef.yaml"),
        "{summary}"
    );

    std::fs::remove_file(out.join("gantry-bundle.json")).unwrap();
    std::fs::write(out.join("service/99-mine.yaml"), "x").unwrap();
    std::fs::write(out.join("tenant/notes.txt"), "y").unwrap();
    assert_refused(
        &render(&a, &out, &[]),
        &["no gantry-bundle.json", "--adopt"],
    );
    let adopted = render(&a, &out, &["--adopt", "--token", "mnopqr.0123456789abcdef"]);
    assert_ok(&adopted);
    assert!(String::from_utf8_lossy(&adopted.stdout).contains(", 0 removed"));
    assert_eq!(
        std::fs::read(out.join("service/99-mine.yaml")).unwrap(),
        b"x"
    );
    assert_eq!(std::fs::read(out.join("tenant/notes.txt")).unwrap(), b"y");
    assert!(
        out.join("tenant/03-secret-bootstrap-token-ghijkl.yaml")
            .exists()
    );
}

/// Item 4: a folder swapped in while a (slow, RSA-4096) render runs is not
/// written; the render finishes in the folder it opened.
#[test]
fn a_folder_swapped_in_during_a_render_is_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "RSA-4096");
    let out = tmp.path().join("R4");
    let moved = tmp.path().join("R4.moved");
    let child = Command::new(gantry_bin())
        .args([
            "render",
            a.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the render never opened --out"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !out.join("gantry-bundle.json").exists(),
        "the render finished before the swap: the test proves nothing"
    );
    std::fs::rename(&out, &moved).unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("admin.conf"), "VICTIM").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_ok(&output);
    assert_eq!(
        files_under(&out),
        vec![("admin.conf".into(), b"VICTIM".to_vec())],
        "the folder swapped in was written"
    );
    let check = gantry(&["pki", "check", moved.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(moved.join("gantry-bundle.json").exists());
    assert!(!moved.join(".gantry-staging").exists());
}

/// Item 5: the key of Secrets at rest is guarded like a CA.
#[test]
fn the_key_of_secrets_at_rest_is_never_replaced_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let out = tmp.path().join("T4");
    assert_ok(&render(&a, &out, &[]));
    std::fs::remove_dir_all(out.join("service")).unwrap();
    std::fs::remove_file(out.join("pki/encryption-config.yaml")).unwrap();
    assert_refused(
        &render(&a, &out, &[]),
        &["pki/encryption-config.yaml is missing", "--new-ca"],
    );
    assert!(!out.join("pki/encryption-config.yaml").exists());
}

/// Item 6: two names of one folder (a symbolic link) share its lock: renders
/// of two tenants never mix, one of them is refused.
#[test]
fn two_paths_to_one_folder_share_one_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let b = manifest(tmp.path(), "tenant-b", "ECDSA-P256");
    for round in 0..8 {
        let out = tmp.path().join(format!("out-{round}"));
        // The second name lives in another folder, so no lock on a parent
        // folder would cover both.
        let link = tmp.path().join(format!("elsewhere-{round}/link"));
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&out, &link).unwrap();
        let spawn = |manifest: &Path, dir: &Path| {
            Command::new(gantry_bin())
                .args([
                    "render",
                    manifest.to_str().unwrap(),
                    "--out",
                    dir.to_str().unwrap(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let first = spawn(&a, &out);
        let second = spawn(&b, &link);
        let results = [
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        ];
        let succeeded = results.iter().filter(|r| r.status.success()).count();
        assert_eq!(succeeded, 1, "round {round}: exactly one render may win");
        let loser = results.iter().find(|r| !r.status.success()).unwrap();
        assert_refused(loser, &["holds tenant tenant-"]);
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("gantry-bundle.json")).unwrap())
                .unwrap();
        let winner = record["tenant"].as_str().unwrap().to_string();
        let loser = if winner == "tenant-a" {
            "tenant-b"
        } else {
            "tenant-a"
        };
        for (path, contents) in files_under(&out) {
            assert!(
                !String::from_utf8_lossy(&contents).contains(&format!("tcp-{loser}")),
                "round {round}: {path} of {winner}'s bundle names {loser}"
            );
        }
        let check = gantry(&["pki", "check", out.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
}

/// Item 7: a render killed part-way leaves nothing beside the bundle, and the
/// next render removes what it left inside.
#[test]
fn a_killed_render_leaves_nothing_outside_and_the_next_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let out = tmp.path().join("out");
    assert_ok(&render(&a, &out, &[]));
    // A staging folder as a killed render leaves it, keys and all.
    std::fs::create_dir_all(out.join(".gantry-staging/pki")).unwrap();
    std::fs::write(out.join(".gantry-staging/pki/ca.key"), "a staged key").unwrap();
    // A render that changes nothing removes it too.
    assert_ok(&render(&a, &out, &[]));
    assert!(
        !out.join(".gantry-staging").exists(),
        "the leftover staging stayed"
    );
    // What an earlier gantry left beside the bundle when killed: its process is gone.
    let old_style = tmp.path().join(".out.gantry-tmp-999999999");
    std::fs::create_dir_all(old_style.join("pki")).unwrap();
    std::fs::write(old_style.join("pki/ca.key"), "an old staged key").unwrap();
    let cleaned = render(&a, &out, &[]);
    assert_ok(&cleaned);
    assert!(!old_style.exists(), "the old-style leftover stayed");
    assert!(String::from_utf8_lossy(&cleaned.stdout).contains("left by an earlier gantry"));
    for delay_ms in [5u64, 20, 40, 80, 120, 200] {
        let mut child = Command::new(gantry_bin())
            .args([
                "render",
                a.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .args(["--token", &format!("k{delay_ms:05}.0123456789abcdef")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let beside: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("gantry"))
            .collect();
        assert!(beside.is_empty(), "left beside the bundle: {beside:?}");
        assert_ok(&render(&a, &out, &[]));
        assert!(!out.join(".gantry-staging").exists());
        let check = gantry(&["pki", "check", out.to_str().unwrap()]);
        assert!(check.status.success(), "after a kill at {delay_ms} ms");
    }
}

/// Item 9: an error never quotes a file that may hold a key.
#[test]
fn a_malformed_kubeconfig_is_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let out = tmp.path().join("T5");
    assert_ok(&render(&a, &out, &[]));
    let admin = std::fs::read(out.join("admin.conf")).unwrap();
    let encoded = base64_encode(&admin);
    std::fs::write(out.join("admin.conf"), &encoded).unwrap();
    for output in [
        render(&a, &out, &[]),
        gantry(&["pki", "check", out.to_str().unwrap()]),
    ] {
        let text = format!(
            "{}{}",
            stderr(&output),
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            !text.contains(&encoded[40..80]),
            "the file was quoted: {text}"
        );
        assert!(!text.contains("PRIVATE KEY"), "a key was printed");
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Items 10 and 11: FIFOs, devices, huge and oddly named files never block,
/// exhaust memory or panic.
#[test]
fn special_files_are_refused_at_once_and_odd_names_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let out = tmp.path().join("out");
    assert_ok(&render(&a, &out, &[]));
    let limit = Duration::from_secs(20);
    let mkfifo = |path: &Path| {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    };
    let out_arg = out.to_str().unwrap();
    let a_arg = a.to_str().unwrap();
    for (fifo, command) in [
        ("pki/ca.key", vec!["pki", "check", out_arg]),
        ("pki/ca.key", vec!["render", a_arg, "--out", out_arg]),
        (
            "service/zz-fifo.yaml",
            vec!["render", a_arg, "--out", out_arg],
        ),
        ("join-command", vec!["render", a_arg, "--out", out_arg]),
    ] {
        let path = out.join(fifo);
        let saved = std::fs::read(&path).ok();
        let _ = std::fs::remove_file(&path);
        mkfifo(&path);
        let output = gantry_within(&command, limit);
        assert_ne!(
            output.status.code(),
            Some(0),
            "{fifo}: {command:?} accepted a FIFO"
        );
        assert!(
            stderr(&output).contains("a FIFO"),
            "{fifo}: {}",
            stderr(&output)
        );
        std::fs::remove_file(&path).unwrap();
        if let Some(saved) = saved {
            std::fs::write(&path, saved).unwrap();
        }
    }
    // A device as the manifest ends at the bound; a pipe is read as asked.
    let output = gantry_within(&["render", "/dev/zero", "--out", out_arg], limit);
    assert_refused(
        &output,
        &["MANIFEST \"/dev/zero\"", "more than gantry reads"],
    );
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} render <(cat {a_arg}) --out {out_arg}",
            gantry_bin().display()
        ))
        .output()
        .unwrap();
    assert_ok(&piped);
    let huge = tmp.path().join("huge.yaml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let output = gantry_within(&["render", huge.to_str().unwrap(), "--out", out_arg], limit);
    assert_refused(&output, &["more than gantry reads"]);
    // A name that is not UTF-8 in a gantry folder is not gantry's: kept.
    use std::os::unix::ffi::OsStrExt as _;
    let odd = out
        .join("service")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.yaml"));
    std::fs::write(&odd, "mine").unwrap();
    assert_ok(&gantry_within(&["render", a_arg, "--out", out_arg], limit));
    std::fs::remove_file(out.join("gantry-bundle.json")).unwrap();
    let output = gantry_within(&["render", a_arg, "--out", out_arg, "--adopt"], limit);
    assert_ok(&output);
    assert_eq!(std::fs::read(&odd).unwrap(), b"mine");
}

/// Item 12: the refusal's advice works.
#[test]
fn new_ca_does_what_the_refusal_says() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let out = tmp.path().join("out");
    assert_ok(&render(&a, &out, &[]));
    let old_ca = std::fs::read(out.join("pki/ca.crt")).unwrap();
    std::fs::remove_file(out.join("pki/ca.key")).unwrap();
    assert_refused(
        &render(&a, &out, &[]),
        &["pki/ca.key is missing", "pass --new-ca"],
    );
    assert_ok(&render(&a, &out, &["--new-ca"]));
    assert_ne!(std::fs::read(out.join("pki/ca.crt")).unwrap(), old_ca);
    let check = gantry(&["pki", "check", out.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // pki init keeps the same rule.
    let pki_only = tmp.path().join("pki-only");
    assert_ok(&pki_init("tenant-a", &pki_only, &[]));
    std::fs::remove_file(pki_only.join("pki/front-proxy-ca.key")).unwrap();
    assert_refused(
        &pki_init("tenant-a", &pki_only, &[]),
        &["pki/front-proxy-ca.key is missing"],
    );
    assert_ok(&pki_init("tenant-a", &pki_only, &["--new-ca"]));
}

/// Item 16: a refused command leaves no folder behind, a widened key mode is
/// narrowed again, help to a full disk fails, logs to a file are plain.
#[test]
fn small_things_a_careful_user_notices() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Nothing\n").unwrap();
    let out = tmp.path().join("new/parents/out");
    assert_eq!(render(&bad, &out, &[]).status.code(), Some(2));
    assert!(
        !tmp.path().join("new").exists(),
        "a refused render made folders"
    );
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    std::fs::write(tmp.path().join("new"), "a file where a folder would go").unwrap();
    assert_refused(&render(&a, &out, &[]), &["cannot create"]);

    let out = tmp.path().join("out");
    assert_ok(&render(&a, &out, &[]));
    let key = out.join("pki/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = render(&a, &out, &[]);
    assert_ok(&again);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("mode of pki/ca.key set to 0600"));

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let help = Command::new(gantry_bin())
        .arg("--help")
        .stdout(full)
        .status()
        .unwrap();
    assert!(!help.success(), "--help to a full disk exited 0");

    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let _ = Command::new(gantry_bin())
        .arg("get")
        .env("KUBECONFIG", tmp.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("GANTRY_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .unwrap();
    let text = std::fs::read(tmp.path().join("log")).unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("DEBUG")
            || String::from_utf8_lossy(&text).contains("TRACE"),
        "nothing was logged, so the check below proves nothing"
    );
    assert!(!text.contains(&0x1b), "colour codes in a log file");
}

/// A staging folder in gantry's name, left by a kill or planted, which a
/// review found to stand in for a record: it never makes a folder gantry's,
/// never lets a key be made again, and never prunes.
#[test]
fn a_staged_record_is_only_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let bundle_a = tmp.path().join("A");
    assert_ok(&render(&a, &bundle_a, &[]));
    let plant = |dir: &Path, record: &[u8]| {
        std::fs::create_dir_all(dir.join(".gantry-staging")).unwrap();
        std::fs::write(dir.join(".gantry-staging/gantry-bundle.json"), record).unwrap();
    };

    // A kubeadm folder with a staged record of no files.
    let kubeadm = tmp.path().join("node");
    let node = kubeadm_folder(&kubeadm, &bundle_a);
    plant(
        &kubeadm,
        br#"{"tenant":"node1","namespace":"tcp-node1","files":[]}"#,
    );
    let node = [node, files_under(&kubeadm)].concat();
    assert_refused(
        &pki_init("node1", &kubeadm, &[]),
        &["is not a gantry bundle"],
    );
    assert_refused(&render(&a, &kubeadm, &[]), &["is not a gantry bundle"]);
    assert!(files_under(&kubeadm).iter().all(|f| node.contains(f)));

    // A bundle whose record moved into staging and whose keys are gone.
    let keys_gone = tmp.path().join("A2");
    assert_ok(&render(&a, &keys_gone, &[]));
    let own_record = std::fs::read(keys_gone.join("gantry-bundle.json")).unwrap();
    std::fs::remove_file(keys_gone.join("gantry-bundle.json")).unwrap();
    plant(&keys_gone, &own_record);
    for key in ["pki/ca.key", "pki/sa.key", "pki/encryption-config.yaml"] {
        std::fs::remove_file(keys_gone.join(key)).unwrap();
    }
    let ca = std::fs::read(keys_gone.join("pki/ca.crt")).unwrap();
    assert_refused(&render(&a, &keys_gone, &[]), &["pki/ca.key", "missing"]);
    assert_eq!(std::fs::read(keys_gone.join("pki/ca.crt")).unwrap(), ca);

    // User files a staged record lists are never pruned.
    let users = tmp.path().join("E");
    assert_ok(&render(&a, &users, &[]));
    let own_record = std::fs::read(users.join("gantry-bundle.json")).unwrap();
    std::fs::remove_file(users.join("gantry-bundle.json")).unwrap();
    std::fs::write(users.join("service/99-mine.yaml"), "x").unwrap();
    let mut record: serde_json::Value = serde_json::from_slice(&own_record).unwrap();
    record["files"]
        .as_array_mut()
        .unwrap()
        .push("service/99-mine.yaml".into());
    plant(&users, &serde_json::to_vec(&record).unwrap());
    let output = render(&a, &users, &[]);
    assert_ok(&output);
    assert!(String::from_utf8_lossy(&output.stdout).contains(", 0 removed"));
    assert_eq!(
        std::fs::read(users.join("service/99-mine.yaml")).unwrap(),
        b"x"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("removed .gantry-staging/"));

    // An empty staged record (a power cut) blocks nothing.
    plant(&bundle_a, b"");
    assert_ok(&render(&a, &bundle_a, &[]));
    // No --out inside a staging folder, which gantry removes whole.
    std::fs::create_dir_all(bundle_a.join(".gantry-staging")).unwrap();
    assert_refused(
        &render(&a, &bundle_a.join(".gantry-staging/tenant-b"), &[]),
        &["inside a .gantry-staging folder"],
    );
}

/// The rest of the review: nesting hidden in files the manifest guard never
/// saw, pki init --adopt of another tenant's bundle, a full disk, odd
/// leftovers beside the bundle, a deep tree, a user's large file.
#[test]
fn what_a_review_found_holds_now() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let b = manifest(tmp.path(), "tenant-b", "ECDSA-P256");
    let bundle = tmp.path().join("A");
    assert_ok(&render(&a, &bundle, &[]));
    let limit = Duration::from_secs(20);
    let (out_arg, a_arg) = (bundle.to_str().unwrap(), a.to_str().unwrap());

    // Deep nesting in a kubeconfig, and behind a quote in a token Secret.
    let admin = std::fs::read(bundle.join("admin.conf")).unwrap();
    let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    std::fs::write(bundle.join("admin.conf"), &deep).unwrap();
    let output = gantry_within(&["pki", "check", out_arg], limit);
    assert!(stderr(&output).len() + output.stdout.len() < 10_000);
    std::fs::write(bundle.join("admin.conf"), admin).unwrap();
    let secret = std::fs::read_dir(bundle.join("tenant"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-secret-bootstrap-token-"))
        .unwrap();
    let saved = std::fs::read(&secret).unwrap();
    std::fs::write(&secret, format!("a: it 's\nb: {deep}")).unwrap();
    gantry_within(&["join", "--bundle", out_arg], limit);
    assert_ok(&gantry_within(&["render", a_arg, "--out", out_arg], limit));
    std::fs::write(&secret, saved).unwrap();

    // pki init --adopt of tenant-b's bundle without its record.
    let bundle_b = tmp.path().join("UB");
    assert_ok(&render(&b, &bundle_b, &[]));
    std::fs::remove_file(bundle_b.join("gantry-bundle.json")).unwrap();
    let before = files_under(&bundle_b);
    assert_refused(
        &pki_init("tenant-a", &bundle_b, &["--adopt"]),
        &["holds a tenant of namespace tcp-tenant-b"],
    );
    assert_eq!(files_under(&bundle_b), before);

    // Leftovers beside the bundle that are not a dead gantry's staging.
    for odd in [".A.gantry-tmp--7", ".A.gantry-tmp-0"] {
        std::fs::create_dir(tmp.path().join(odd)).unwrap();
        std::fs::write(tmp.path().join(odd).join("mine.txt"), "mine").unwrap();
    }
    assert_ok(&render(
        &a,
        &bundle,
        &["--token", "abcdef.0123456789abcdef"],
    ));
    for odd in [".A.gantry-tmp--7", ".A.gantry-tmp-0"] {
        assert!(
            tmp.path().join(odd).join("mine.txt").exists(),
            "{odd} was removed"
        );
    }

    // A tree deeper than gantry writes in its staging folder.
    let mut deep_dir = bundle.join(".gantry-staging");
    for _ in 0..40 {
        deep_dir.push("d");
    }
    std::fs::create_dir_all(&deep_dir).unwrap();
    let output = gantry_within(&["render", a_arg, "--out", out_arg], limit);
    assert_refused(&output, &["deeper than any gantry writes"]);
    std::fs::remove_dir_all(bundle.join(".gantry-staging")).unwrap();

    // A user's file larger than gantry reads, in a rendered folder: not read.
    std::fs::File::create(bundle.join("tenant/dump.bin"))
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    assert_ok(&render(&a, &bundle, &[]));
}

/// A full disk while staging: nothing staged stays, no key, and the folder
/// the refused render made is gone. Needs root (a small tmpfs).
#[test]
fn a_full_disk_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let a = manifest(tmp.path(), "tenant-a", "ECDSA-P256");
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=200k", "tmpfs"])
        .arg(&small)
        .status()
        .expect("mount(8): this test needs root and util-linux (apt-get install mount)");
    assert!(mounted.success(), "mounting a tmpfs needs root");
    let out = small.join("X");
    let output = render(&a, &out, &[]);
    let listing = files_under(&small);
    let _ = Command::new("umount").arg(&small).status();
    assert_refused(&output, &["No space left on device"]);
    assert!(
        listing.is_empty(),
        "left on the full disk: {:?}",
        listing.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
}
