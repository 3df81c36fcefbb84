//! `gantry join|kubeconfig|cloud-init --bundle DIR` on a `gantry render`
//! bundle that was tampered with (issue 25), with the real binary:
//! - nothing gantry prints comes from the bundle unchecked: a `join-command`
//!   whose endpoint would run a command is refused, and pasting gantry's
//!   output into a shell runs nothing;
//! - `super-admin.conf` is read only for `kubeconfig --super-admin`, and no
//!   bundle file is read through a link or from a FIFO;
//! - the user-data is for the tenant and version of the bundle's record,
//!   not of whichever chart archive lies in `chart/`, and its kubelet is
//!   within the version skew policy and comes from an https repository.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gantry_tests::{gantry, gantry_bin, render_example, wait_until};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_ok(output: &Output) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output)
}

/// Exit 2, nothing on stdout, one line on stderr that holds every one of
/// `needles` and none of `never`.
fn assert_refused(output: &Output, needles: &[&str], never: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(output.stdout.is_empty(), "printed: {}", stdout(output));
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    for secret in never {
        assert!(!text.contains(secret), "{secret:?} shown in: {text}");
    }
}

/// The token and the CA pin of the bundle's `join-command`.
fn token_and_pin(bundle: &Path) -> (String, String) {
    let line = std::fs::read_to_string(bundle.join("join-command")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[4].to_string(), words[6].to_string())
}

#[test]
fn a_join_command_that_would_run_a_command_is_refused_and_nothing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    let (token, pin) = token_and_pin(&bundle);
    let secret = token.split('.').nth(1).unwrap().to_string();
    let rest = format!("--token {token} --discovery-token-ca-cert-hash {pin}");
    // What an operator pastes into a root shell runs in this folder, with no
    // kubeadm on PATH: only a command smuggled into the line could make PWNED.
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    for (line, needle) in [
        (
            format!("kubeadm join $(touch${{IFS}}PWNED):6443 {rest}"),
            "endpoint",
        ),
        (
            format!("kubeadm join `touch${{IFS}}PWNED`:6443 {rest}"),
            "endpoint",
        ),
        (
            format!("kubeadm join 203.0.113.10:6443;touch${{IFS}}PWNED {rest}"),
            "endpoint",
        ),
        (
            format!("kubeadm join 203.0.113.10:6443 {rest} ; touch PWNED"),
            "join-command",
        ),
        (
            format!("kubeadm join 203.0.113.10:6443 --token $(touch${{IFS}}PWNED) {rest}"),
            "join-command",
        ),
    ] {
        std::fs::write(bundle.join("join-command"), format!("{line}\n")).unwrap();
        let pasted = Command::new("sh")
            .arg("-c")
            .arg(r#"sh -c "$("$0" join --bundle "$1")""#)
            .arg(gantry_bin())
            .arg(&bundle)
            .current_dir(&work)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(
            !work.join("PWNED").exists(),
            "{line:?} ran a command: {}",
            stderr(&pasted)
        );
        for command in ["join", "cloud-init"] {
            assert_refused(
                &gantry(&[command, "--bundle", bundle_arg]),
                &["--bundle", bundle_arg, "join-command", needle],
                &[&secret],
            );
        }
    }
}

#[test]
fn super_admin_conf_is_read_only_for_super_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    // As the README says: super-admin.conf kept away from the tenant's copy.
    std::fs::rename(
        bundle.join("super-admin.conf"),
        tmp.path().join("kept-apart.conf"),
    )
    .unwrap();
    let join = assert_ok(&gantry(&["join", "--bundle", bundle_arg]));
    assert!(join.starts_with("kubeadm join 203.0.113.10:6443 --token "));
    let user_data = assert_ok(&gantry(&["cloud-init", "--bundle", bundle_arg]));
    assert!(user_data.starts_with("#cloud-config\n"));
    assert_eq!(
        assert_ok(&gantry(&["kubeconfig", "--bundle", bundle_arg])),
        std::fs::read_to_string(bundle.join("admin.conf")).unwrap()
    );
    assert_refused(
        &gantry(&["kubeconfig", "--bundle", bundle_arg, "--super-admin"]),
        &["--bundle", bundle_arg, "super-admin.conf", "not in"],
        &[],
    );
}

#[test]
fn no_bundle_file_is_read_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, "NOT-FOR-PRINTING\n").unwrap();
    for (file, args) in [
        ("admin.conf", vec!["kubeconfig"]),
        ("super-admin.conf", vec!["kubeconfig", "--super-admin"]),
        ("join-command", vec!["join"]),
        ("pki/ca.crt", vec!["join"]),
    ] {
        let path = bundle.join(file);
        let kept = tmp.path().join("kept");
        std::fs::rename(&path, &kept).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let mut args = args.clone();
        args.extend(["--bundle", bundle_arg]);
        assert_refused(
            &gantry(&args),
            &["--bundle", file, "symbolic link"],
            &["NOT-FOR-PRINTING"],
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&kept, &path).unwrap();
    }
    // The folder itself may be reached through a link, as any --out may.
    let link = tmp.path().join("link-to-bundle");
    std::os::unix::fs::symlink(&bundle, &link).unwrap();
    assert_ok(&gantry(&["join", "--bundle", link.to_str().unwrap()]));
}

#[test]
fn a_fifo_at_join_command_does_not_block() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    std::fs::remove_file(bundle.join("join-command")).unwrap();
    let status = Command::new("mkfifo")
        .arg(bundle.join("join-command"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Command::new(gantry_bin())
        .args(["join", "--bundle", bundle_arg])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_until(Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("gantry join blocked on a FIFO at join-command for 10 s");
    }
    assert_refused(
        &child.wait_with_output().unwrap(),
        &["--bundle", "join-command", "FIFO"],
        &[],
    );
}

/// The user-data's header: `tenant NAME (Kubernetes VERSION)`.
fn header(user_data: &str) -> &str {
    user_data.lines().nth(1).unwrap()
}

#[test]
fn user_data_is_for_the_recorded_tenant_and_version_not_a_foreign_chart() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    let own = bundle.join("chart/tenant-a-control-plane-1.35.5.tgz");
    let foreign = bundle.join("chart/tenant-b-control-plane-1.36.3.tgz");
    // Only another tenant's chart in chart/: the record still says whose
    // bundle this is.
    std::fs::rename(&own, &foreign).unwrap();
    let user_data = assert_ok(&gantry(&["cloud-init", "--bundle", bundle_arg]));
    assert!(
        header(&user_data).contains("tenant tenant-a (Kubernetes 1.35.5)"),
        "{}",
        header(&user_data)
    );
    assert!(user_data.contains("version='1.35.5'"), "{user_data}");

    // A record of an older gantry names the tenant but no version: the
    // tenant's own chart gives it, not another tenant's beside it.
    std::fs::copy(&foreign, &own).unwrap();
    let record_path = bundle.join("gantry-bundle.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert_eq!(record["fixed"]["version"], "1.35.5");
    record.as_object_mut().unwrap().remove("fixed");
    std::fs::write(&record_path, record.to_string()).unwrap();
    let user_data = assert_ok(&gantry(&["cloud-init", "--bundle", bundle_arg]));
    assert!(
        header(&user_data).contains("tenant tenant-a (Kubernetes 1.35.5)"),
        "{}",
        header(&user_data)
    );

    // No record, two charts: which is the tenant's cannot be told.
    std::fs::remove_file(&record_path).unwrap();
    assert_refused(
        &gantry(&["cloud-init", "--bundle", bundle_arg]),
        &["--bundle", "gantry-bundle.json", "chart/"],
        &[],
    );
    // No record, one chart: it names the tenant (a bundle of an older gantry).
    std::fs::remove_file(&foreign).unwrap();
    let user_data = assert_ok(&gantry(&["cloud-init", "--bundle", bundle_arg]));
    assert!(
        header(&user_data).contains("tenant tenant-a (Kubernetes 1.35.5)"),
        "{}",
        header(&user_data)
    );
}

#[test]
fn a_kubelet_out_of_skew_and_a_plain_http_package_repo_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    let cloud_init = |extra: &[&str]| {
        let mut args = vec!["cloud-init", "--bundle", bundle_arg];
        args.extend_from_slice(extra);
        gantry(&args)
    };
    // The tenant runs 1.35.5: a kubelet may be as old as 1.32, never of a
    // newer minor (a newer patch is within the skew policy).
    for older in ["1.35.5", "1.35.0", "1.35.6"] {
        let user_data = assert_ok(&cloud_init(&["--kubernetes-version", older]));
        assert!(user_data.contains(&format!("version='{older}'")));
    }
    for newer in ["1.36.0", "1.37"] {
        assert_refused(
            &cloud_init(&["--kubernetes-version", newer]),
            &["--kubernetes-version", newer, "newer than", "1.35.5"],
            &[],
        );
    }
    let plain = "http://mirror.example.com/kubernetes/deb/";
    assert_refused(
        &cloud_init(&["--package-repo", plain]),
        &["--package-repo", plain, "https"],
        &[],
    );
}
