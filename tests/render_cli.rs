//! `gantry render` on the real binary: the example renders as documented, bad
//! manifests fail with one line naming the field, and nothing is half-written.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use gantry_tests::{files_under, gantry, repo_root};

fn example() -> String {
    std::fs::read_to_string(repo_root().join("examples/tenant-a.yaml")).unwrap()
}

fn render(manifest: &Path, out: &Path) -> Output {
    gantry(&[
        "render",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_example_renders_a_complete_bundle_with_private_files_at_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tenant-a");
    let output = render(&repo_root().join("examples/tenant-a.yaml"), &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("service/            33 objects"),
        "{summary}"
    );
    // The release (and its Secret, holding every key) in the tenant's
    // namespace, which the chart does not carry and so never deletes.
    let namespace_file = "service/00-namespace-tcp-tenant-a.yaml";
    assert!(out.join(namespace_file).exists());
    assert!(summary.contains(namespace_file), "{summary}");
    assert!(
        summary.contains("helm install tenant-a")
            && summary.contains("tenant-a-control-plane-1.35.5.tgz -n tcp-tenant-a"),
        "{summary}"
    );

    let join = std::fs::read_to_string(out.join("join-command")).unwrap();
    let words: Vec<&str> = join.split_whitespace().collect();
    assert_eq!(&words[..3], ["kubeadm", "join", "203.0.113.10:6443"]);
    assert_eq!(words[3], "--token");
    gantry_pki::BootstrapToken::parse(words[4]).expect("a valid token");
    assert_eq!(words[5], "--discovery-token-ca-cert-hash");
    let ca_hash =
        gantry_pki::ca_cert_hash(&std::fs::read(out.join("pki/ca.crt")).unwrap()).unwrap();
    assert_eq!(words[6], ca_hash);

    for (relative, _) in files_under(&out) {
        let file = out.join(&relative);
        let private = relative.ends_with(".key")
            || (relative.ends_with(".conf") && relative != "cluster-info.conf")
            || relative == "join-command"
            || relative == "pki/encryption-config.yaml"
            || relative.starts_with("chart/")
            || relative.contains("-secret-");
        assert_eq!(
            mode(&file),
            if private { 0o600 } else { 0o644 },
            "{relative}"
        );
    }
    assert!(out.join("chart/tenant-a-control-plane-1.35.5.tgz").exists());
    assert!(out.join("service/26-statefulset-etcd.yaml").exists());
    assert!(out.join("tenant/00-configmap-cluster-info.yaml").exists());

    // Rendering again changes nothing: same PKI, same token, same bytes.
    let before = files_under(&out);
    let again = render(&repo_root().join("examples/tenant-a.yaml"), &out);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(": 0 files written"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let after = files_under(&out);
    assert_eq!(before, after);
}

#[test]
fn a_new_token_replaces_the_old_bootstrap_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tenant-a");
    let manifest = repo_root().join("examples/tenant-a.yaml");
    assert!(render(&manifest, &out).status.success());
    let output = gantry(&[
        "render",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--token",
        "zyxwvu.0123456789abcdef",
    ]);
    assert!(output.status.success());
    let tenant: Vec<String> = std::fs::read_dir(out.join("tenant"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let tokens: Vec<&String> = tenant
        .iter()
        .filter(|f| f.contains("bootstrap-token-"))
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(tokens[0].ends_with("bootstrap-token-zyxwvu.yaml"));
    assert!(
        std::fs::read_to_string(out.join("join-command"))
            .unwrap()
            .contains("--token zyxwvu.0123456789abcdef")
    );
}

#[test]
fn bad_manifests_fail_with_one_line_naming_the_field_and_write_nothing() {
    let long_name = "a".repeat(41);
    let cases: Vec<(String, String)> = vec![
        (example().replace("version: 1.35.5", "version: 1.35.x"), "spec.version \"1.35.x\": is not a Kubernetes version".into()),
        (example().replace("version: 1.35.5", "version: 1.29.3"), "spec.version \"1.29.3\": minor 1.29 is not supported".into()),
        (example().replace("replicas: 3", "replicas: 2"), "spec.etcd.replicas \"2\": must be 1, 3 or 5".into()),
        (
            example().replace("type: LoadBalancer", "type: NodePort").replace("      loadBalancerIP: 203.0.113.10\n", "").replace("203.0.113.10:6443", "203.0.113.10:8443"),
            "spec.apiServer.service.nodePort \"8443\": must be within 30000-32767".into(),
        ),
        (example().replace("podCIDR: 10.244.0.0/16", "podCIDR: 10.96.0.0/16"), "spec.networking.podCIDR \"10.96.0.0/16\": overlaps spec.networking.serviceCIDR 10.96.0.0/12".into()),
        (example().replace("name: tenant-a", "name: Tenant_A"), "metadata.name \"Tenant_A\": must be a DNS-1123 label".into()),
        (example().replace("name: tenant-a", &format!("name: {long_name}")), format!("metadata.name \"{long_name}\": must be 1 to 40 characters long")),
        (
            example().replace("  controllerManager:\n", "    extraArgs:\n      etcd-servers: https://elsewhere:2379\n  controllerManager:\n"),
            "spec.apiServer.extraArgs.etcd-servers \"https://elsewhere:2379\": --etcd-servers is set by gantry and cannot be overridden".into(),
        ),
        (example().replace("    replicas: 3", "    replica: 3"), "spec.etcd: unknown field `replica`".into()),
        (example().replace("    endpoint: 203.0.113.10:6443\n", ""), "spec.apiServer.endpoint \"\": is required to render offline".into()),
        // kube-apiserver exits at start with these (found by tests/control_plane.rs).
        (
            example().replace("203.0.113.10:6443", "169.254.10.1:6443"),
            "spec.apiServer.endpoint \"169.254.10.1:6443\": must not be link-local".into(),
        ),
        (
            example().replace("203.0.113.10:6443", "127.0.0.1:6443"),
            "spec.apiServer.endpoint \"127.0.0.1:6443\": must not be a loopback address".into(),
        ),
        (example().replace("tokenTTL: 24h", "tokenTTL: 1d"), "spec.join.tokenTTL \"1d\": is not a duration".into()),
        // Accepted once, refused now (issue 11 section 7).
        (example().replace("203.0.113.10:6443", "10.96.0.1:6443"), "spec.apiServer.endpoint \"10.96.0.1:6443\": is inside spec.networking.serviceCIDR 10.96.0.0/12".into()),
        (example().replace("serviceCIDR: 10.96.0.0/12", "serviceCIDR: fd00:10:96::/108"), "spec.apiServer.endpoint \"203.0.113.10:6443\": is not of the family of spec.networking.serviceCIDR".into()),
        (example().replace("endpoint: 203.0.113.10:6443", "endpoint: 2001:db8::10:6443"), "spec.apiServer.endpoint \"2001:db8::10:6443\": an IPv6 address must be in brackets".into()),
        (example().replace("endpoint: 203.0.113.10:6443", "endpoint: \" 203.0.113.10:6443 \""), "spec.apiServer.endpoint \" 203.0.113.10:6443 \": must not have leading or trailing spaces".into()),
        (example().replace("  name: tenant-a\n", "  name: tenant-a\n  namespacee: x\n"), "metadata: unknown field `namespacee`".into()),
        (example().replace("  etcd:\n", "  tolerations:\n    - keyy: a\n  etcd:\n"), "spec.tolerations[0]: unknown field `keyy`".into()),
        (example().replace("  etcd:\n", "  tolerations:\n    - key: a\n      operator: Sometimes\n  etcd:\n"), "spec.tolerations[0].operator \"Sometimes\": must be Exists or Equal".into()),
        (example().replace("  etcd:\n", "  priorityClassName: Not_Valid\n  etcd:\n"), "spec.priorityClassName \"Not_Valid\": must be a DNS-1123 subdomain".into()),
        (example().replace("  etcd:\n", "  nodeSelector:\n    \"a b\": x\n  etcd:\n"), "spec.nodeSelector \"a b\": is not a valid key".into()),
        (example().replace("loadbalancer.openstack.org/keep-floatingip", "\"bad key!\""), "spec.apiServer.service.annotations \"bad key!\": is not a valid key".into()),
        (example().replace("size: 10Gi", "size: \"0\""), "spec.etcd.storage.size \"0\": must be more than zero".into()),
        (example().replace("imageRepository: registry.k8s.io", "imageRepository: registry.k8s.io/pause:3.10"), "spec.imageRepository \"registry.k8s.io/pause:3.10\": must not hold a tag".into()),
        (example().replace("imageRepository: registry.k8s.io", "imageRepository: registry.k8s.io@sha256:00"), "spec.imageRepository \"registry.k8s.io@sha256:00\": must not hold a digest".into()),
        // Once panics (an i64 overflow, a date past year 9999).
        (example().replace("tokenTTL: 24h", "tokenTTL: 99999999999999h"), "spec.join.tokenTTL \"99999999999999h\": is longer than 876000h (100 years)".into()),
        (example().replace("tokenTTL: 24h", "tokenTTL: 99999999999999999999h"), "spec.join.tokenTTL \"99999999999999999999h\": is longer than 876000h".into()),
        (example().replace("certificateValidity: 8760h", "certificateValidity: 999999999h"), "spec.pki.certificateValidity \"999999999h\": is longer than 876000h (100 years)".into()),
        (example().replace("size: 10Gi", "size: ten"), "spec.etcd.storage.size \"ten\": is not a Kubernetes quantity".into()),
    ];
    for (text, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = tmp.path().join("tcp.yaml");
        std::fs::write(&manifest, &text).unwrap();
        let out = tmp.path().join("out");
        let output = render(&manifest, &out);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{expected}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in: {stderr}"
        );
        assert!(!out.exists(), "{expected}: wrote {out:?}");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "{expected}: left files behind"
        );
    }
}

#[test]
fn a_missing_manifest_is_bad_input() {
    let output = gantry(&[
        "render",
        "/nonexistent/tcp.yaml",
        "--out",
        "/tmp/never-written",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("error: MANIFEST \"/nonexistent/tcp.yaml\": ")
    );
    assert!(!Path::new("/tmp/never-written").exists());
}

/// What of `bundle` must never appear in a log: for each private key, its
/// PEM marker, every line of its PEM body and its base64 (as a Secret
/// manifest holds it); the join token; each kubeconfig's client key data.
pub fn secrets_of(bundle: &Path) -> Vec<String> {
    use base64::Engine as _;
    let mut secrets = vec!["PRIVATE KEY".to_string()];
    for (path, contents) in files_under(bundle) {
        if path.ends_with(".key") {
            let text = String::from_utf8(contents.clone()).unwrap();
            secrets.extend(
                text.lines()
                    .filter(|l| !l.starts_with("-----") && l.len() > 20)
                    .map(String::from),
            );
            let encoded = base64::engine::general_purpose::STANDARD.encode(&contents);
            secrets.push(encoded[40..100].to_string());
        }
        if path.ends_with(".conf") && path != "cluster-info.conf" {
            let text = String::from_utf8(contents).unwrap();
            if let Some(line) = text.lines().find(|l| l.contains("client-key-data:")) {
                let data = line.split(':').nth(1).unwrap().trim();
                secrets.push(data[40..100].to_string());
            }
        }
    }
    let join = std::fs::read_to_string(bundle.join("join-command")).unwrap();
    let token = join
        .split_whitespace()
        .skip_while(|w| *w != "--token")
        .nth(1)
        .unwrap();
    secrets.push(token.split('.').nth(1).unwrap().to_string());
    secrets
}

#[test]
fn no_secret_is_logged_at_any_level() {
    // Including a filter that asks handlebars itself for everything.
    for level in [
        "debug",
        "trace",
        "trace,handlebars=trace",
        "handlebars::render=trace",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("tenant-a");
        let output = std::process::Command::new(gantry_tests::gantry_bin())
            .args(["render"])
            .arg(repo_root().join("examples/tenant-a.yaml"))
            .arg("--out")
            .arg(&out)
            .env("GANTRY_LOG", level)
            .output()
            .unwrap();
        assert!(output.status.success());
        let logged = gantry_tests::output_text(&output);
        for secret in secrets_of(&out) {
            assert!(
                !logged.contains(&secret),
                "GANTRY_LOG={level}: a secret is in the output ({} bytes of it)",
                secret.len()
            );
        }
    }
}

#[test]
fn help_says_what_render_removes_and_every_flag_has_help() {
    let render = gantry_tests::gantry_ok(&["render", "--help"]);
    assert!(render.contains("removes files that an earlier"), "{render}");
    for (command, described) in [
        (vec!["pki", "check", "--help"], "<DIR>  A bundle folder"),
        (
            vec!["pki", "ca-cert-hash", "--help"],
            "<FILE>  A PEM CA certificate",
        ),
        (vec!["run", "--help"], "Name of the leader Lease"),
    ] {
        let help = gantry_tests::gantry_ok(&command);
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let described = described.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&described), "{command:?}: {help}");
    }
}

#[test]
fn chart_values_given_to_render_get_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let output = render(
        &repo_root().join("examples/tenant-values.yaml"),
        &tmp.path().join("out"),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("this looks like values of the tenant Helm chart"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `--restore-from` (docs/operations.md, "Restore a tenant rendered
/// offline"): one restore Job per etcd member, each naming the snapshot, and
/// the steps printed; without a store or with a bad name, one line naming
/// the field and nothing written; the next render without it removes them.
#[test]
fn restore_from_writes_one_job_per_member_and_the_next_render_removes_them() {
    const SNAPSHOT: &str = "20261207T171340Z";
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("tenant-a.yaml");
    std::fs::write(&manifest, example()).unwrap();
    let out = tmp.path().join("bundle");
    let render_with = |extra: &[&str]| gantry_tests::bundle::render(&manifest, &out, extra);
    let key = tmp.path().join("platform.key");
    let made = gantry(&["backup", "platform-key", "--out", key.to_str().unwrap()]);
    assert!(
        made.status.success(),
        "{}",
        gantry_tests::output_text(&made)
    );
    let public_key = format!("--backup-platform-public-key={}.pub", key.display());
    let store = [
        "--backup-store=https://s3.example.internal",
        "--backup-bucket=tenant-backups",
        public_key.as_str(),
    ];
    let refusals = [
        (
            vec![format!("--restore-from={SNAPSHOT}")],
            "spec.backup".to_string(),
        ),
        (
            [&store[..], &["--restore-from=latest"]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "--restore-from \"latest\": is not NAME or TENANT/NAME".to_string(),
        ),
        (
            [&store[..], &["--restore-from=Tenant/20261207T171340Z"]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "--restore-from \"Tenant/20261207T171340Z\"".to_string(),
        ),
    ];
    for (extra, expected) in &refusals {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let refused = render_with(&extra);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(expected.as_str()),
            "{expected:?} in {stderr}"
        );
        assert!(!out.exists(), "{extra:?} wrote {out:?}");
    }

    let from = format!("--restore-from={SNAPSHOT}");
    let rendered = render_with(&[store[0], store[1], store[2], &from]);
    let stdout = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        gantry_tests::output_text(&rendered)
    );
    let mut jobs: Vec<String> = files_under(&out.join("restore"))
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        [
            "etcd-restore-0.yaml",
            "etcd-restore-1.yaml",
            "etcd-restore-2.yaml"
        ],
        "one Job per member of the example's 3"
    );
    for (index, file) in jobs.iter().enumerate() {
        let job: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(out.join("restore").join(file)).unwrap())
                .unwrap();
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["namespace"], "tcp-tenant-a");
        assert_eq!(job["metadata"]["name"], format!("etcd-restore-{index}"));
        let text = job.to_string();
        assert!(text.contains(SNAPSHOT), "{file} names the snapshot");
        assert!(
            text.contains(&format!("data-etcd-{index}")),
            "{file} mounts its member's volume"
        );
    }
    for step in [
        "scale statefulset/etcd deployment/kube-apiserver --replicas=0",
        &format!("kubectl apply -f {}/restore/", out.display()),
        "scale statefulset/etcd --replicas=3",
    ] {
        assert!(stdout.contains(step), "{step:?} in {stdout}");
    }

    let again = render_with(&store);
    assert!(
        again.status.success(),
        "{}",
        gantry_tests::output_text(&again)
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("removed restore/etcd-restore-0.yaml"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let restore = out.join("restore");
    assert!(!restore.exists() || files_under(&restore).is_empty());
}
