//! `gantry cloud-init --bundle` and `gantry join --bundle` on a rendered
//! tenant: the user-data parses as YAML, its shell scripts pass `sh -n` and
//! shellcheck, and the node-IP picker chooses the right NIC when run by a
//! real POSIX shell against `ip -o addr show` outputs of VMs with several NICs.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use gantry_tests::{gantry, gantry_ok, render_example, run_ok, tool};
use serde_json::Value;

fn user_data(bundle: &Path, extra: &[&str]) -> (String, Value) {
    let mut args = vec!["cloud-init", "--bundle", bundle.to_str().unwrap()];
    args.extend_from_slice(extra);
    let text = gantry_ok(&args);
    let parsed: Value = serde_yaml::from_str(&text).expect("user-data is YAML");
    (text, parsed)
}

fn file<'a>(user_data: &'a Value, path: &str) -> &'a str {
    user_data["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in write_files"))["content"]
        .as_str()
        .unwrap()
}

/// Runs the node-IP picker with `sh` for `cidr`, feeding it `ip_output`.
fn pick(script: &Path, cidr: &str, ip_output: &str) -> (bool, String, String) {
    let mut child = Command::new("sh")
        .arg(script)
        .arg(cidr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a POSIX sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ip_output.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap().trim().to_string(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `ip -o addr show` of an OpenStack VM with a management, a cluster and a service NIC.
const THREE_NICS: &str = "\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: ens3    inet 192.168.10.5/24 metric 100 brd 192.168.10.255 scope global dynamic ens3\\       valid_lft 85000sec preferred_lft 85000sec
2: ens3    inet6 fe80::f816:3eff:fe12:3456/64 scope link \\       valid_lft forever preferred_lft forever
3: ens4    inet 10.20.1.7/22 brd 10.20.3.255 scope global ens4\\       valid_lft forever preferred_lft forever
3: ens4    inet6 fe80::f816:3eff:fe65:4321/64 scope link \\       valid_lft forever preferred_lft forever
4: ens5    inet 172.16.5.9/24 brd 172.16.5.255 scope global ens5\\       valid_lft forever preferred_lft forever
";

/// A NIC with two addresses, and a secondary NIC whose address is in the network.
const SECONDARY_ADDRESSES: &str = "\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 10.0.0.14/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever preferred_lft forever
2: eth0    inet 10.0.1.200/24 brd 10.0.1.255 scope global secondary eth0\\       valid_lft forever preferred_lft forever
3: eth1    inet 100.64.12.3/10 brd 100.127.255.255 scope global eth1\\       valid_lft forever preferred_lft forever
";

#[test]
fn user_data_parses_its_scripts_pass_shellcheck_and_the_node_ip_is_the_right_nic() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let (text, parsed) = user_data(&bundle, &["--node-network", "10.20.0.0/22"]);
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    assert_eq!(parsed["runcmd"][0][0], "/usr/local/sbin/gantry-join");

    // The JoinConfiguration pins the CA and carries the bundle's token.
    let join_command = std::fs::read_to_string(bundle.join("join-command")).unwrap();
    let words: Vec<&str> = join_command.split_whitespace().collect();
    let configuration: Value =
        serde_yaml::from_str(file(&parsed, "/etc/gantry/join-configuration.yaml")).unwrap();
    assert_eq!(configuration["kind"], "JoinConfiguration");
    assert_eq!(configuration["apiVersion"], "kubeadm.k8s.io/v1beta4");
    let discovery = &configuration["discovery"]["bootstrapToken"];
    assert_eq!(discovery["apiServerEndpoint"], words[2]);
    assert_eq!(discovery["token"], words[4]);
    assert_eq!(discovery["caCertHashes"][0], words[6]);

    // Every script: sh -n and shellcheck.
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    for path in [
        "/usr/local/sbin/gantry-join",
        "/usr/local/sbin/gantry-node-ip",
    ] {
        let script = scripts.join(path.rsplit('/').next().unwrap());
        std::fs::write(&script, file(&parsed, path)).unwrap();
        run_ok(Command::new("sh").arg("-n").arg(&script));
        run_ok(
            Command::new(tool("shellcheck"))
                .args(["--shell=sh", "--severity=style"])
                .arg(&script),
        );
    }
    let join_script = file(&parsed, "/usr/local/sbin/gantry-join");
    assert!(join_script.contains("'https://pkgs.k8s.io/core:/stable:/v1.35/deb/'"));
    assert!(join_script.contains("version='1.35.5'"));
    assert!(join_script.contains("gantry-node-ip 10.20.0.0/22"));

    // The node-IP picker, run by a real sh.
    let picker = scripts.join("gantry-node-ip");
    for (cidr, output, expected) in [
        ("10.20.0.0/22", THREE_NICS, "10.20.1.7"),
        ("172.16.5.0/24", THREE_NICS, "172.16.5.9"),
        ("192.168.10.0/24", THREE_NICS, "192.168.10.5"),
        ("10.0.1.0/24", SECONDARY_ADDRESSES, "10.0.1.200"),
        ("100.64.0.0/10", SECONDARY_ADDRESSES, "100.64.12.3"),
        // Never a loopback address (the CLI refuses such a network too).
        ("0.0.0.0/0", SECONDARY_ADDRESSES, "10.0.0.14"),
    ] {
        let (ok, stdout, stderr) = pick(&picker, cidr, output);
        assert!(ok, "{cidr}: {stderr}");
        assert_eq!(stdout, expected, "{cidr}");
    }
    let (ok, stdout, stderr) = pick(&picker, "10.99.0.0/16", THREE_NICS);
    assert!(!ok && stdout.is_empty());
    assert_eq!(
        stderr.trim(),
        "gantry-node-ip: no interface has an IPv4 address in 10.99.0.0/16"
    );
}

#[test]
fn a_preinstalled_image_gets_a_script_that_installs_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let (_, parsed) = user_data(
        &bundle,
        &["--preinstalled", "--node-network", "10.20.0.0/22"],
    );
    let join_script = file(&parsed, "/usr/local/sbin/gantry-join");
    for host_change in [
        "apt-get",
        "curl",
        "swapoff",
        "modprobe",
        "sysctl",
        "systemctl",
        "containerd config",
    ] {
        assert!(
            !join_script.contains(host_change),
            "{host_change} in the preinstalled script:\n{join_script}"
        );
    }
    assert!(
        join_script.contains("gantry-node-ip 10.20.0.0/22"),
        "{join_script}"
    );
    assert!(
        join_script.ends_with("kubeadm join --config /etc/gantry/join-configuration.yaml\n"),
        "{join_script}"
    );
    let script = tmp.path().join("gantry-join");
    std::fs::write(&script, join_script).unwrap();
    run_ok(
        Command::new(tool("shellcheck"))
            .args(["--shell=sh", "--severity=style"])
            .arg(&script),
    );
    // A package repository means nothing without installing.
    let bundle_arg = bundle.to_str().unwrap();
    let output = gantry(&[
        "cloud-init",
        "--bundle",
        bundle_arg,
        "--preinstalled",
        "--package-repo",
        "https://mirror.example.com/deb",
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn without_a_node_network_the_kubelet_picks_its_default_and_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let (_, parsed) = user_data(
        &bundle,
        &[
            "--package-repo",
            "https://mirror.example.com/kubernetes/v1.35/deb",
            "--kubernetes-version",
            "1.35.2",
        ],
    );
    let paths: Vec<&str> = parsed["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/etc/gantry/join-configuration.yaml",
            "/usr/local/sbin/gantry-join"
        ]
    );
    let join_script = file(&parsed, "/usr/local/sbin/gantry-join");
    assert!(join_script.contains("repo='https://mirror.example.com/kubernetes/v1.35/deb/'"));
    assert!(join_script.contains("version='1.35.2'"));
    assert!(!file(&parsed, "/etc/gantry/join-configuration.yaml").contains("node-ip"));

    let bundle_arg = bundle.to_str().unwrap();
    for (args, message) in [
        (
            vec![
                "cloud-init",
                "--bundle",
                bundle_arg,
                "--node-network",
                "10.0.0.0/33",
            ],
            "error: --node-network \"10.0.0.0/33\": is not a CIDR such as 10.0.0.0/24",
        ),
        (
            vec![
                "cloud-init",
                "--bundle",
                bundle_arg,
                "--package-repo",
                "ftp://x",
            ],
            "error: --package-repo \"ftp://x\": must be an https URL",
        ),
        // Values that would run a command on the VM if pasted into its
        // root shell script.
        (
            vec![
                "cloud-init",
                "--bundle",
                bundle_arg,
                "--package-repo",
                "https://x/'; touch PWNED; '",
            ],
            "error: --package-repo \"https://x/'; touch PWNED; '\": may hold only URL characters",
        ),
        (
            vec![
                "cloud-init",
                "--bundle",
                bundle_arg,
                "--package-repo",
                "https://x/$(touch PWNED)",
            ],
            "error: --package-repo \"https://x/$(touch PWNED)\": may hold only URL characters",
        ),
        (
            vec![
                "cloud-init",
                "--bundle",
                bundle_arg,
                "--package-repo",
                "https://x/`touch PWNED`",
            ],
            "error: --package-repo \"https://x/`touch PWNED`\": may hold only URL characters",
        ),
        (
            vec![
                "cloud-init",
                "--bundle",
                bundle_arg,
                "--package-repo",
                "https://x/\ntouch PWNED",
            ],
            "error: --package-repo \"https://x/\\ntouch PWNED\": may hold only URL characters",
        ),
        (
            vec![
                "cloud-init",
                "--bundle",
                bundle_arg,
                "--node-network",
                "0.0.0.0/0",
            ],
            "error: --node-network \"0.0.0.0/0\": holds 127.0.0.1",
        ),
        (
            vec!["join", "--bundle", bundle_arg, "--ttl", "soon"],
            "error: --ttl \"soon\":",
        ),
        (
            vec!["join", "--bundle", "/nonexistent"],
            "error: --bundle \"/nonexistent\": No such file or directory",
        ),
    ] {
        let output = gantry(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(message), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn join_and_kubeconfig_read_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    let join = gantry_ok(&["join", "--bundle", bundle_arg]);
    assert_eq!(
        join,
        std::fs::read_to_string(bundle.join("join-command")).unwrap()
    );
    let admin = gantry_ok(&["kubeconfig", "--bundle", bundle_arg]);
    assert_eq!(
        admin,
        std::fs::read_to_string(bundle.join("admin.conf")).unwrap()
    );
    let super_admin = gantry_ok(&["kubeconfig", "--bundle", bundle_arg, "--super-admin"]);
    assert_eq!(
        super_admin,
        std::fs::read_to_string(bundle.join("super-admin.conf")).unwrap()
    );
    // kubectl reads what it prints.
    let path = tmp.path().join("printed.conf");
    std::fs::write(&path, admin).unwrap();
    run_ok(
        Command::new(tool("kubectl"))
            .args(["config", "view", "--kubeconfig"])
            .arg(&path),
    );
}

#[test]
fn a_tampered_join_command_is_refused_and_an_expired_token_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = render_example(tmp.path());
    let bundle_arg = bundle.to_str().unwrap();
    let original = std::fs::read_to_string(bundle.join("join-command")).unwrap();
    let words: Vec<&str> = original.split_whitespace().collect();
    let (token, hash) = (words[4], words[6]);
    let other_hash = format!("sha256:{}", "0".repeat(64));
    for (tampered, message) in [
        (
            original.replace(token, &token.to_uppercase()),
            "its token is not ID.SECRET",
        ),
        (
            original.replace(hash, "sha256:zz"),
            "its CA hash \"sha256:zz\" is not sha256:",
        ),
        (
            original.replace(hash, &other_hash),
            "but pki/ca.crt hashes to",
        ),
    ] {
        std::fs::write(bundle.join("join-command"), &tampered).unwrap();
        for command in ["join", "cloud-init"] {
            let output = gantry(&[command, "--bundle", bundle_arg]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
            assert!(stderr.contains(message), "{command}: {stderr}");
            let secret = token.split('.').nth(1).unwrap();
            assert!(
                !stderr.contains(secret),
                "{command}: the error shows the token"
            );
            assert!(!stderr.to_lowercase().contains(secret), "{command}");
        }
    }
    std::fs::write(bundle.join("join-command"), &original).unwrap();

    // The token's Secret says it expired: the command still prints, with a warning.
    let id = token.split('.').next().unwrap();
    let secret = bundle
        .join("tenant")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .ends_with(&format!("-secret-bootstrap-token-{id}.yaml"))
        })
        .unwrap();
    let text = std::fs::read_to_string(&secret).unwrap();
    let expiration = text
        .lines()
        .find(|l| l.trim_start().starts_with("expiration:"))
        .unwrap();
    let indent = &expiration[..expiration.len() - expiration.trim_start().len()];
    std::fs::write(
        &secret,
        text.replace(
            expiration,
            &format!("{indent}expiration: 2020-01-01T00:00:00Z"),
        ),
    )
    .unwrap();
    let output = gantry(&["join", "--bundle", bundle_arg]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("expired at 2020-01-01T00:00:00Z")
            && stderr.contains("gantry render again"),
        "{stderr}"
    );
}
