//! Real kubectl, using the kubeconfigs `gantry pki init` wrote, against a TLS
//! server (openssl s_server) that presents `pki/apiserver.crt` and requires a
//! client certificate signed by `pki/ca.crt`, as kube-apiserver does.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use gantry_tests::{
    KillOnDrop, free_port, gantry, output_text, pki_init, run_ok, tool, wait_until,
};

/// A stand-in for kube-apiserver's TLS front: answers `GET /healthz` with "ok"
/// over mutual TLS. It is only a TLS peer, not an API server.
fn tls_server(host: &str, port: u16, bundle: &Path, docroot: &Path) -> KillOnDrop {
    // s_server -WWW maps the request path to a file, query included: kubectl
    // asks for /healthz?timeout=10s because of --request-timeout.
    std::fs::write(docroot.join("healthz?timeout=10s"), "ok").unwrap();
    let server = KillOnDrop::spawn(
        Command::new(tool("openssl"))
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-Verify",
                "1",
                "-verify_return_error",
                "-accept",
            ])
            .arg(format!("{host}:{port}"))
            .arg("-cert")
            .arg(bundle.join("pki/apiserver.crt"))
            .arg("-key")
            .arg(bundle.join("pki/apiserver.key"))
            .arg("-CAfile")
            .arg(bundle.join("pki/ca.crt"))
            .current_dir(docroot),
    );
    let up = wait_until(Duration::from_secs(10), || {
        TcpStream::connect((host, port)).is_ok()
    });
    assert!(up, "openssl s_server did not start on {host}:{port}");
    server
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(tool("kubectl"))
        .env("HOME", kubeconfig.parent().unwrap())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout=10s"])
        .args(args)
        .output()
        .expect("run kubectl")
}

#[test]
fn kubectl_reaches_an_apiserver_presenting_the_tenant_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    // 127.0.0.2 is loopback too, but unlike 127.0.0.1 it is not in every
    // apiserver certificate: only the endpoint puts it there.
    let port = free_port();
    let endpoint = format!("127.0.0.2:{port}");
    let dir = pki_init(tmp.path(), "tenant-a", &["--endpoint", &endpoint]);
    let stranger = pki_init(tmp.path(), "tenant-b", &["--endpoint", &endpoint]);
    let docroot = tempfile::tempdir().unwrap();

    let _server = tls_server("127.0.0.2", port, &dir, docroot.path());
    for file in ["super-admin.conf", "admin.conf"] {
        let out = kubectl(&dir.join(file), &["get", "--raw", "/healthz"]);
        assert!(out.status.success(), "{file}: {}", output_text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "{file}");
    }

    // A client certificate from another tenant's CA is refused by the server.
    let out = kubectl(
        &stranger.join("super-admin.conf"),
        &["get", "--raw", "/healthz"],
    );
    assert!(
        !out.status.success(),
        "another tenant's client certificate was accepted"
    );
    // No client certificate at all (cluster-info has no user) is refused too.
    let out = kubectl(
        &dir.join("cluster-info.conf"),
        &["get", "--raw", "/healthz"],
    );
    assert!(
        !out.status.success(),
        "a client without a certificate was accepted"
    );
}

#[test]
fn kubectl_rejects_a_server_certificate_without_the_endpoint_san() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let dir = pki_init(
        tmp.path(),
        "tenant-a",
        &["--endpoint", &format!("127.0.0.2:{port}")],
    );
    let kubeconfig = tmp.path().join("super-admin-for-127.0.0.2.conf");
    std::fs::copy(dir.join("super-admin.conf"), &kubeconfig).unwrap();
    // Move the endpoint: the apiserver certificate is reissued (same CA) for
    // 127.0.0.3 and no longer names 127.0.0.2.
    let moved = gantry(&[
        "pki",
        "init",
        "--name",
        "tenant-a",
        "--endpoint",
        &format!("127.0.0.3:{port}"),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(moved.status.success());
    assert!(String::from_utf8_lossy(&moved.stdout).contains("reissued   pki/apiserver.{crt,key}: SANs added: IP Address:127.0.0.3; removed: IP Address:127.0.0.2"));

    let docroot = tempfile::tempdir().unwrap();
    let _server = tls_server("127.0.0.2", port, &dir, docroot.path());
    let out = kubectl(&kubeconfig, &["get", "--raw", "/healthz"]);
    assert!(
        !out.status.success(),
        "kubectl accepted a certificate without the endpoint SAN"
    );
    let message = output_text(&out);
    assert!(
        message.contains("x509: certificate is valid for") && message.contains("not 127.0.0.2"),
        "expected a SAN mismatch error, got: {message}"
    );
}

#[test]
fn kubectl_config_view_parses_every_kubeconfig() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pki_init(
        tmp.path(),
        "tenant-a",
        &["--endpoint", "api.tenant-a.example.com:443"],
    );
    let cases = [
        (
            "admin.conf",
            "https://api.tenant-a.example.com:443",
            "kubernetes-admin",
        ),
        (
            "super-admin.conf",
            "https://api.tenant-a.example.com:443",
            "kubernetes-super-admin",
        ),
        (
            "controller-manager.conf",
            "https://kube-apiserver.tcp-tenant-a.svc:6443",
            "system:kube-controller-manager",
        ),
        (
            "scheduler.conf",
            "https://kube-apiserver.tcp-tenant-a.svc:6443",
            "system:kube-scheduler",
        ),
        (
            "cluster-info.conf",
            "https://api.tenant-a.example.com:443",
            "",
        ),
    ];
    for (file, server, user) in cases {
        let path = dir.join(file);
        let got = run_ok(
            Command::new(tool("kubectl"))
                .args(["config", "view", "--raw", "-o"])
                .arg("jsonpath={.clusters[0].cluster.server}|{.users[*].name}|{.clusters[*].name}")
                .arg("--kubeconfig")
                .arg(&path),
        );
        let cluster_name = if file == "cluster-info.conf" {
            ""
        } else {
            "tenant-a"
        };
        assert_eq!(got, format!("{server}|{user}|{cluster_name}"), "{file}");
        let ca = run_ok(
            Command::new(tool("kubectl"))
                .args([
                    "config",
                    "view",
                    "--raw",
                    "-o",
                    "jsonpath={.clusters[0].cluster.certificate-authority-data}",
                ])
                .arg("--kubeconfig")
                .arg(&path),
        );
        assert!(!ca.is_empty(), "{file} carries the CA inline");
    }
}
