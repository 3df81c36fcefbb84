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
use std::process::{Command, Output};

use gantry_tests::{gantry, gantry_bin, render_example};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
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
