//! The `gantry pki` and `gantry token` command-line contract, on the real binary.

use std::path::Path;
use std::process::Output;

use gantry_pki::{BootstrapToken, jws};
use gantry_tests::{files_under, gantry, gantry_ok, pki_init};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit 2, one line on stderr that names the flag and the value, nothing on stdout.
fn assert_bad_input(output: &Output, expected_line_start: &str) {
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(output));
    let err = stderr(output);
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(
        err.starts_with(expected_line_start),
        "expected {expected_line_start:?}, got: {err}"
    );
    assert!(stdout(output).is_empty(), "stdout: {}", stdout(output));
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_flags_fail_with_one_line_naming_flag_and_value_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out_str = out.to_str().unwrap();
    let long_name = "a".repeat(41);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--name", "Tenant_A"],
            "error: --name \"Tenant_A\": must be a DNS-1123 label".into(),
        ),
        (
            vec!["--name", &long_name],
            format!("error: --name \"{long_name}\": must be 1 to 40 characters long"),
        ),
        (
            vec!["--name", "t", "--service-cidr", "10.96.0.0/33"],
            "error: --service-cidr \"10.96.0.0/33\": is not a CIDR".into(),
        ),
        (
            vec!["--name", "t", "--service-cidr", "10.96.0.1/12"],
            "error: --service-cidr \"10.96.0.1/12\": has host bits set".into(),
        ),
        (
            vec!["--name", "t", "--san", "not a name"],
            "error: --san \"not a name\": is neither an IP address nor".into(),
        ),
        (
            vec!["--name", "t", "--algorithm", "dsa-1024"],
            "error: --algorithm \"dsa-1024\": is not one of".into(),
        ),
        (
            vec!["--name", "t", "--endpoint", "api.example.com:99999"],
            "error: --endpoint \"api.example.com:99999\": has a port".into(),
        ),
        (
            vec!["--name", "t", "--dns-domain", "Cluster.Local"],
            "error: --dns-domain \"Cluster.Local\": must be a DNS-1123 subdomain".into(),
        ),
        (
            vec!["--name", "t", "--namespace", "Bad_NS"],
            "error: --namespace \"Bad_NS\": must be a DNS-1123 label".into(),
        ),
        // Day counts: refused with the flag and the value as written, never
        // a panic on a date past year 9999 or an overflow.
        (
            vec!["--name", "t", "--ca-validity-days", "4294967295"],
            "error: --ca-validity-days \"4294967295\": must be between 1 and 36500 days".into(),
        ),
        (
            vec!["--name", "t", "--ca-validity-days", "9223372036854775807"],
            "error: --ca-validity-days \"9223372036854775807\": must be between 1 and 36500".into(),
        ),
        (
            vec!["--name", "t", "--cert-validity-days", "99999999"],
            "error: --cert-validity-days \"99999999\": must be between 1 and 36500 days".into(),
        ),
        (
            vec!["--name", "t", "--ca-validity-days", "0"],
            "error: --ca-validity-days \"0\": must be between 1 and 36500 days".into(),
        ),
        (
            vec!["--name", "t", "--renew-before-days", "400"],
            "error: --renew-before-days \"400\": must be less than --cert-validity-days (365)"
                .into(),
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["pki", "init", "--out", out_str];
        full.extend(args);
        let output = gantry(&full);
        assert_bad_input(&output, &expected);
        assert!(!out.exists(), "{full:?} wrote {out:?}");
    }
    assert!(
        entries(tmp.path()).is_empty(),
        "left behind: {:?}",
        entries(tmp.path())
    );
}

#[test]
fn an_unwritable_out_is_bad_input_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for out in [
        file.join("tenant"),
        "/proc/gantry-cannot-write-here".into(),
        file.clone(),
    ] {
        let output = gantry(&["pki", "init", "--name", "t", "--out", out.to_str().unwrap()]);
        assert_bad_input(
            &output,
            &format!("error: --out {:?}: ", out.to_str().unwrap()),
        );
    }
    assert_eq!(entries(tmp.path()), ["a-file"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn a_damaged_ca_is_refused_and_nothing_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pki_init(tmp.path(), "tenant-a", &["--endpoint", "203.0.113.10"]);
    std::fs::write(dir.join("pki/ca.key"), "not a key").unwrap();
    let before = files_under(&dir);
    let output = gantry(&[
        "pki",
        "init",
        "--name",
        "tenant-a",
        "--endpoint",
        "203.0.113.10",
        "--san",
        "x.example.com",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_bad_input(&output, "error: pki/ca.key: not PEM");
    assert!(stderr(&output).contains("refusing to replace it"));
    assert_eq!(files_under(&dir), before);
}

#[test]
fn a_second_init_keeps_everything_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pki_init(tmp.path(), "tenant-a", &["--endpoint", "203.0.113.10"]);
    let before = files_under(&dir);
    let output = gantry(&[
        "pki",
        "init",
        "--name",
        "tenant-a",
        "--endpoint",
        "203.0.113.10",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("kept ")).count(),
        20,
        "{text}"
    );
    assert!(text.contains("0 files written"), "{text}");
    assert_eq!(files_under(&dir), before);
}

#[test]
fn a_reissue_replaces_only_changed_files_and_leaves_other_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pki_init(tmp.path(), "tenant-a", &["--endpoint", "203.0.113.10"]);
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    std::fs::write(dir.join("pki/extra.pem"), "mine too").unwrap();
    let before = files_under(&dir);
    let output = gantry(&[
        "pki",
        "init",
        "--name",
        "tenant-a",
        "--endpoint",
        "203.0.113.10",
        "--san",
        "10.1.2.3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("2 files written"),
        "{}",
        stdout(&output)
    );
    let after = files_under(&dir);
    let changed: Vec<&str> = after
        .iter()
        .filter(|(path, contents)| {
            before.iter().find(|(p, _)| p == path).map(|(_, c)| c) != Some(contents)
        })
        .map(|(path, _)| path.as_str())
        .collect();
    assert_eq!(changed, ["pki/apiserver.crt", "pki/apiserver.key"]);
    assert_eq!(after.len(), before.len());
    assert_eq!(
        entries(tmp.path()),
        ["tenant-a"],
        "no staging folder left behind"
    );
}

#[test]
fn pki_check_passes_a_fresh_bundle_and_fails_a_tampered_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pki_init(tmp.path(), "tenant-a", &["--endpoint", "203.0.113.10"]);
    let other = pki_init(tmp.path(), "tenant-b", &["--endpoint", "203.0.113.11"]);
    let table = gantry_ok(&["pki", "check", dir.to_str().unwrap()]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("FILE") && rows[0].contains("DAYS LEFT") && rows[0].contains("SANS")
    );
    assert_eq!(rows.len(), 1 + 18, "{table}");
    assert!(rows[1..].iter().all(|r| r.contains("   ok   ")), "{table}");
    let apiserver = rows
        .iter()
        .find(|r| r.starts_with("pki/apiserver.crt"))
        .unwrap();
    assert!(
        apiserver.contains("CN=kube-apiserver") && apiserver.contains("IP Address:203.0.113.10")
    );

    for file in ["pki/etcd/server.crt", "pki/etcd/server.key"] {
        std::fs::copy(other.join(file), dir.join(file)).unwrap();
    }
    let output = gantry(&["pki", "check", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("pki/etcd/server.crt: invalid: not signed by pki/etcd/ca.crt"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).starts_with("error: 1 of 18 entries"),
        "{}",
        stderr(&output)
    );

    let missing = gantry(&["pki", "check", tmp.path().join("nope").to_str().unwrap()]);
    assert_bad_input(&missing, "error: DIR ");
}

#[test]
fn ca_cert_hash_rejects_what_is_not_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_bad_input(
        &gantry(&["pki", "ca-cert-hash", junk.to_str().unwrap()]),
        "error: FILE ",
    );
    std::fs::write(&junk, "hello").unwrap();
    assert_bad_input(
        &gantry(&["pki", "ca-cert-hash", junk.to_str().unwrap()]),
        "error: FILE ",
    );
    assert_bad_input(
        &gantry(&["pki", "ca-cert-hash", "/nonexistent.crt"]),
        "error: FILE \"/nonexistent.crt\"",
    );
}

#[test]
fn tokens_are_fresh_and_sign_cluster_info_verifiably() {
    let first = stdout(&gantry(&["token", "create"]));
    let second = stdout(&gantry(&["token", "create"]));
    let token = BootstrapToken::parse(first.trim()).expect("token create prints a valid token");
    assert_ne!(first, second);

    let tmp = tempfile::tempdir().unwrap();
    let dir = pki_init(tmp.path(), "tenant-a", &["--endpoint", "203.0.113.10"]);
    let cluster_info = dir.join("cluster-info.conf");
    let output = gantry(&[
        "token",
        "sign",
        "--token",
        first.trim(),
        "--file",
        cluster_info.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let signature = stdout(&output);
    let content = std::fs::read(&cluster_info).unwrap();
    assert!(jws::detached_signature_is_valid(
        signature.trim(),
        &content,
        token.id(),
        token.secret()
    ));
    assert!(!jws::detached_signature_is_valid(
        signature.trim(),
        b"other",
        token.id(),
        token.secret()
    ));

    let bad = gantry(&[
        "token",
        "sign",
        "--token",
        "abcdef.SECRETSECRET1234",
        "--file",
        cluster_info.to_str().unwrap(),
    ]);
    assert_bad_input(&bad, "error: --token \"abcdef…\": is not a bootstrap token");
    assert!(
        !stderr(&bad).contains("SECRETSECRET"),
        "the rejected secret must not be echoed"
    );
    let missing = gantry(&[
        "token",
        "sign",
        "--token",
        first.trim(),
        "--file",
        "/nonexistent",
    ]);
    assert_bad_input(&missing, "error: --file \"/nonexistent\": ");
    assert!(!stderr(&missing).contains(token.secret()));
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_one_line() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_init(tmp.path(), "t", &[]);
    // `gantry pki check DIR | head -0`: the reader is gone before the first write.
    let mut check = Command::new(gantry_tests::gantry_bin())
        .args(["pki", "check"])
        .arg(&pki)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(check.stdout.take());
    let output = check.wait_with_output().unwrap();
    assert!(
        stderr(&output).is_empty(),
        "a closed pipe printed: {}",
        stderr(&output)
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        output.status.success() || output.status.signal() == Some(13),
        "{:?}",
        output.status
    );

    for args in [vec!["crd"], vec!["pki", "check", pki.to_str().unwrap()]] {
        let output = Command::new(gantry_tests::gantry_bin())
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr(&output).trim(),
            "error: cannot write to stdout: No space left on device (os error 28)",
            "{args:?}"
        );
    }
}

#[test]
fn pki_check_refuses_an_impossible_day_count() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_init(tmp.path(), "t", &[]);
    let output = gantry(&[
        "pki",
        "check",
        "--renew-before-days",
        "99999999999999",
        pki.to_str().unwrap(),
    ]);
    assert_bad_input(
        &output,
        "error: --renew-before-days \"99999999999999\": must be between 0 and 36500 days",
    );
}

/// `gantry run --reconcile-timeout` is checked before anything starts.
#[test]
fn run_refuses_a_reconcile_timeout_outside_10s_to_1h() {
    for (value, expected) in [
        ("5s", "\"5s\" is outside 10s to 1h"),
        ("2h", "\"2h\" is outside 10s to 1h"),
        ("soon", "is not a duration such as 24h"),
    ] {
        let output = gantry(&["run", "--reconcile-timeout", value]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(
            text.contains("--reconcile-timeout") && text.contains(expected),
            "{value}: {text}"
        );
    }
}

#[test]
fn run_refuses_a_default_route_as_the_service_clusters_network_in_one_line() {
    for value in ["0.0.0.0/0", "10.96.0.0/12,::/0"] {
        let output = gantry(&["run", "--service-cluster-cidrs", value]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let text = stderr(&output);
        assert_eq!(text.trim().lines().count(), 1, "{text}");
        assert!(
            text.contains("--service-cluster-cidrs")
                && text.contains("must not be a default route"),
            "{value}: {text}"
        );
    }
}
