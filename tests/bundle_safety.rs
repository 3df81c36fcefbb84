//! `gantry render --out DIR` on the real binary: the folder is gantry's own,
//! a CA is never replaced without `--new-ca`, and nothing else is touched.
//! - a bundle of another tenant is refused, and so is a folder that holds
//!   files but is no gantry bundle;
//! - only files an earlier render wrote (its `gantry-bundle.json`) are ever
//!   removed; a user's files beside them stay;
//! - no read or write goes through a symbolic link;
//! - a bundle that lost a CA key is refused unless `--new-ca` says so;
//! - renders into one folder at once take turns, and one that waits too long
//!   fails clearly;
//! - a render that fails part-way leaves the previous bundle as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gantry_tests::bundle::{assert_ok, assert_refused, render, stderr};
use gantry_tests::{KillOnDrop, files_under, gantry, gantry_bin, repo_root};

fn manifest(dir: &Path, name: &str, version: &str, apiservers: u32) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/tenant-a.yaml"))
        .unwrap()
        .replace("name: tenant-a", &format!("name: {name}"))
        .replace("version: 1.35.5", &format!("version: {version}"))
        .replace(
            "  apiServer:\n    replicas: 2",
            &format!("  apiServer:\n    replicas: {apiservers}"),
        );
    let path = dir.join(format!("{name}-{version}-{apiservers}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn another_tenants_bundle_and_a_folder_that_is_no_bundle_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_ok(&render(
        &manifest(tmp.path(), "tenant-a", "1.35.5", 2),
        &out,
        &[],
    ));
    let before = files_under(&out);

    let b = manifest(tmp.path(), "tenant-b", "1.35.5", 2);
    assert_refused(
        &render(&b, &out, &[]),
        &[
            "holds tenant tenant-a (namespace tcp-tenant-a)",
            "not tenant-b",
        ],
    );
    assert_eq!(files_under(&out), before, "a refused render wrote");

    let stranger = tmp.path().join("stranger");
    std::fs::create_dir(&stranger).unwrap();
    std::fs::write(stranger.join("notes.txt"), "mine").unwrap();
    assert_refused(
        &render(&b, &stranger, &[]),
        &["is not empty and is not a gantry bundle"],
    );
    assert_eq!(
        files_under(&stranger),
        vec![("notes.txt".into(), b"mine".to_vec())]
    );
    assert_refused(
        &render(&b, Path::new("/"), &[]),
        &["is not empty and is not a gantry bundle"],
    );
    // A kubeadm node's /etc/kubernetes has gantry's PKI layout, but more.
    let kubeadm = tmp.path().join("etc-kubernetes");
    std::fs::create_dir_all(kubeadm.join("pki")).unwrap();
    std::fs::create_dir_all(kubeadm.join("manifests")).unwrap();
    std::fs::copy(out.join("pki/ca.crt"), kubeadm.join("pki/ca.crt")).unwrap();
    std::fs::copy(out.join("pki/ca.key"), kubeadm.join("pki/ca.key")).unwrap();
    std::fs::write(kubeadm.join("kubelet.conf"), "kubelet's").unwrap();
    let node = files_under(&kubeadm);
    assert_refused(
        &render(&b, &kubeadm, &[]),
        &["is not empty and is not a gantry bundle"],
    );
    assert_eq!(files_under(&kubeadm), node, "a kubeadm folder was written");
}

#[test]
fn only_files_an_earlier_render_wrote_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let a = manifest(tmp.path(), "tenant-a", "1.35.5", 2);
    assert_ok(&render(&a, &out, &["--token", "abcdef.0123456789abcdef"]));
    let old_token = "tenant/03-secret-bootstrap-token-abcdef.yaml";
    assert!(out.join(old_token).exists());
    let mine = [
        "service/deployment.yaml",
        "tenant/README.md",
        "chart/other-0.1.0.tgz",
        "tenant-a.yaml",
    ];
    for file in mine {
        std::fs::write(out.join(file), "a user's file").unwrap();
    }
    // A new token: the old token's Secret goes, the user's files stay.
    assert_ok(&render(&a, &out, &["--token", "ghijkl.0123456789abcdef"]));
    assert!(
        !out.join(old_token).exists(),
        "the stale Secret was not removed"
    );
    assert!(
        out.join("tenant/03-secret-bootstrap-token-ghijkl.yaml")
            .exists()
    );
    for file in mine {
        assert_eq!(
            std::fs::read_to_string(out.join(file)).unwrap(),
            "a user's file",
            "{file}"
        );
    }

    // A bundle without a record (an older gantry's) is taken over only with
    // --adopt, and then nothing in it is ever removed.
    let earlier = tmp.path().join("earlier");
    assert_ok(&render(
        &a,
        &earlier,
        &["--token", "abcdef.0123456789abcdef"],
    ));
    std::fs::remove_file(earlier.join("gantry-bundle.json")).unwrap();
    let ghijkl = ["--token", "ghijkl.0123456789abcdef"];
    assert_refused(
        &render(&a, &earlier, &ghijkl),
        &["no gantry-bundle.json", "--adopt"],
    );
    let adopted = render(&a, &earlier, &[&ghijkl[..], &["--adopt"]].concat());
    assert_ok(&adopted);
    assert!(String::from_utf8_lossy(&adopted.stdout).contains(", 0 removed"));
    assert!(
        earlier.join(old_token).exists(),
        "a file of a bundle without a record was removed"
    );
}

#[test]
fn no_read_or_write_goes_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let a = manifest(tmp.path(), "tenant-a", "1.35.5", 2);
    assert_ok(&render(&a, &out, &[]));
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("keep.yaml"), "not gantry's").unwrap();
    std::fs::remove_dir_all(out.join("service")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("service")).unwrap();
    assert_refused(&render(&a, &out, &[]), &["service is a symbolic link"]);
    assert_eq!(
        files_under(&elsewhere),
        vec![("keep.yaml".into(), b"not gantry's".to_vec())]
    );
}

#[test]
fn a_bundle_that_lost_its_ca_is_refused_unless_new_ca_is_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let a = manifest(tmp.path(), "tenant-a", "1.35.5", 2);
    assert_ok(&render(&a, &out, &[]));
    let old_hash = std::fs::read_to_string(out.join("join-command")).unwrap();
    std::fs::remove_file(out.join("pki/ca.key")).unwrap();
    std::fs::remove_file(out.join("pki/ca.crt")).unwrap();
    let before = files_under(&out);
    assert_refused(
        &render(&a, &out, &[]),
        &[
            "pki/ca.key is missing",
            "Restore it from your backup",
            "--new-ca",
        ],
    );
    assert_eq!(files_under(&out), before, "a refused render wrote");

    std::fs::remove_dir_all(out.join("pki")).unwrap();
    assert_refused(
        &render(&a, &out, &[]),
        &[
            "pki/ca.key, pki/front-proxy-ca.key, pki/etcd/ca.key, pki/sa.key, \
             pki/encryption-config.yaml are missing",
        ],
    );

    assert_ok(&render(&a, &out, &["--new-ca"]));
    let new_hash = std::fs::read_to_string(out.join("join-command")).unwrap();
    assert_ne!(
        old_hash.split_whitespace().last(),
        new_hash.split_whitespace().last(),
        "--new-ca made a new CA"
    );

    // The key of Secrets at rest is guarded like a CA: every Secret in etcd
    // was written with it.
    let key = out.join("pki/encryption-config.yaml");
    std::fs::remove_file(&key).unwrap();
    assert_refused(
        &render(&a, &out, &[]),
        &["pki/encryption-config.yaml is missing"],
    );
    // The record lists the key, so it stays guarded whatever else is gone.
    std::fs::remove_dir_all(out.join("service")).unwrap();
    assert_refused(
        &render(&a, &out, &[]),
        &["pki/encryption-config.yaml is missing"],
    );
    assert!(!key.exists(), "a refused render made a new key");
    // A bundle of a gantry older than encryption at rest (no record, and its
    // apiserver has no --encryption-provider-config) gets a key when adopted.
    assert_ok(&render(&a, &out, &["--new-ca"]));
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(out.join("gantry-bundle.json")).unwrap();
    for (path, contents) in files_under(&out) {
        let contents = String::from_utf8_lossy(&contents);
        if path.starts_with("service/") && contents.contains("--encryption-provider-config=") {
            let older: String = contents
                .lines()
                .filter(|line| !line.contains("--encryption-provider-config="))
                .map(|line| format!("{line}\n"))
                .collect();
            std::fs::write(out.join(&path), older).unwrap();
        }
    }
    assert_ok(&render(&a, &out, &["--adopt"]));
    assert!(
        key.exists(),
        "no key for a bundle older than encryption at rest"
    );
}

#[test]
fn renders_into_one_folder_at_once_take_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let a = manifest(tmp.path(), "tenant-a", "1.35.5", 2);
    gantry_bin();
    let renders: Vec<_> = (0..4)
        .map(|_| {
            Command::new(gantry_bin())
                .args([
                    "render",
                    a.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for render in renders {
        assert_ok(&render.wait_with_output().unwrap());
    }
    let check = gantry(&["pki", "check", out.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let hash = gantry(&[
        "pki",
        "ca-cert-hash",
        out.join("pki/ca.crt").to_str().unwrap(),
    ]);
    let join = std::fs::read_to_string(out.join("join-command")).unwrap();
    assert_eq!(
        join.split_whitespace().last(),
        String::from_utf8_lossy(&hash.stdout)
            .split_whitespace()
            .last(),
        "join-command pins pki/ca.crt"
    );
}

#[test]
fn a_render_that_waits_too_long_for_the_lock_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let a = manifest(tmp.path(), "tenant-a", "1.35.5", 2);
    // Another holder of the folder's lock (flock(1) takes the same flock).
    std::fs::create_dir(&out).unwrap();
    let _holder = KillOnDrop::spawn(Command::new("flock").arg(&out).args(["sleep", "60"]));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_refused(
        &render(&a, &out, &[]),
        &[
            "another gantry process is writing this bundle",
            "waited 5 s",
        ],
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(files_under(&out).is_empty(), "nothing is written");
}

/// A bind mount of a file onto itself, undone on drop: renaming onto a mount
/// point fails (EBUSY), so a render fails at that file.
struct MountedOver(PathBuf);

impl Drop for MountedOver {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_render_that_fails_part_way_leaves_the_previous_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_ok(&render(
        &manifest(tmp.path(), "tenant-a", "1.36.3", 2),
        &out,
        &[],
    ));
    let before = files_under(&out);
    // The tenant set's kubeadm-config names the version; tenant/ is written
    // after chart/ and service/, which the upgrade changes too.
    let pinned = before
        .iter()
        .find(|(path, text)| {
            path.starts_with("tenant/")
                && String::from_utf8_lossy(text).contains("kubernetesVersion")
        })
        .map(|(path, _)| out.join(path))
        .expect("tenant/ holds kubeadm-config");
    let status = Command::new("mount")
        .arg("--bind")
        .arg(&pinned)
        .arg(&pinned)
        .status()
        .unwrap();
    assert!(status.success(), "mount --bind (this test needs root)");
    let mounted = MountedOver(pinned);

    let upgrade = render(&manifest(tmp.path(), "tenant-a", "1.37.2", 2), &out, &[]);
    drop(mounted);
    assert_eq!(upgrade.status.code(), Some(2), "{}", stderr(&upgrade));
    assert!(
        stderr(&upgrade).contains("every file is back as it was"),
        "{}",
        stderr(&upgrade)
    );
    assert_eq!(files_under(&out), before, "the failed render left changes");
}

#[test]
fn offline_renders_refuse_what_the_operator_refuses_on_a_live_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let a = manifest(tmp.path(), "tenant-a", "1.36.3", 2);
    assert_ok(&render(&a, &out, &[]));
    let before = files_under(&out);
    let text = std::fs::read_to_string(&a).unwrap();
    let count = std::cell::Cell::new(0);
    let changed = |from: &str, to: &str| {
        count.set(count.get() + 1);
        let path = tmp.path().join(format!("changed-{}.yaml", count.get()));
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path
    };
    let cases = [
        (
            changed("version: 1.36.3", "version: 1.35.5"),
            "spec.version \"1.35.5\": downgrade from 1.36.3 to 1.35.5 is not supported",
        ),
        (
            changed("serviceCIDR: 10.96.0.0/12", "serviceCIDR: 10.112.0.0/12"),
            "spec.networking.serviceCIDR \"10.112.0.0/12\": networking is immutable: the bundle in --out has 10.96.0.0/12",
        ),
        (
            changed("dnsDomain: cluster.local", "dnsDomain: tenant.local"),
            "spec.networking.dnsDomain \"tenant.local\": networking is immutable",
        ),
        (
            changed("    replicas: 3\n", "    replicas: 1\n"),
            "spec.etcd.replicas \"1\": is immutable: the bundle in --out has 3 members",
        ),
    ];
    for (manifest, expected) in cases {
        assert_refused(&render(&manifest, &out, &[]), &[expected]);
        assert_eq!(
            files_under(&out),
            before,
            "{expected}: a refused render wrote"
        );
    }
    // One minor up is an upgrade, and is rendered.
    assert_ok(&render(
        &changed("version: 1.36.3", "version: 1.37.2"),
        &out,
        &[],
    ));
    let skip = tmp.path().join("skip");
    assert_ok(&render(
        &manifest(tmp.path(), "tenant-a", "1.35.5", 2),
        &skip,
        &[],
    ));
    assert_refused(
        &render(&manifest(tmp.path(), "tenant-a", "1.37.2", 2), &skip, &[]),
        &["spec.version \"1.37.2\": upgrade from 1.35.5 to 1.37.2 skips 1.36"],
    );
}
