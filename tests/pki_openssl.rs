//! `gantry pki init` output checked by real openssl against `pki.md`'s table.
//! The table is restated here on purpose instead of imported from the catalog
//! under test, so a change to either shows up as a failure.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use gantry_tests::{gantry_ok, pki_init, run_ok, tool};

struct Expected {
    file: &'static str,
    ca: &'static str,
    subject: &'static str,
    eku: &'static str,
    sans: Sans,
}

#[derive(Clone, Copy)]
enum Sans {
    None,
    ApiServer,
    Etcd,
}

const SERVER: &str = "TLS Web Server Authentication";
const CLIENT: &str = "TLS Web Client Authentication";
const BOTH: &str = "TLS Web Server Authentication, TLS Web Client Authentication";

const LEAVES: [Expected; 9] = [
    Expected {
        file: "pki/apiserver.crt",
        ca: "pki/ca.crt",
        subject: "CN = kube-apiserver",
        eku: SERVER,
        sans: Sans::ApiServer,
    },
    Expected {
        file: "pki/apiserver-kubelet-client.crt",
        ca: "pki/ca.crt",
        subject: "CN = kube-apiserver-kubelet-client",
        eku: CLIENT,
        sans: Sans::None,
    },
    Expected {
        file: "pki/front-proxy-client.crt",
        ca: "pki/front-proxy-ca.crt",
        subject: "CN = front-proxy-client",
        eku: CLIENT,
        sans: Sans::None,
    },
    Expected {
        file: "pki/etcd/server.crt",
        ca: "pki/etcd/ca.crt",
        subject: "CN = etcd",
        eku: BOTH,
        sans: Sans::Etcd,
    },
    Expected {
        file: "pki/etcd/peer.crt",
        ca: "pki/etcd/ca.crt",
        subject: "CN = etcd-peer",
        eku: BOTH,
        sans: Sans::Etcd,
    },
    Expected {
        file: "pki/etcd/healthcheck-client.crt",
        ca: "pki/etcd/ca.crt",
        subject: "CN = kube-etcd-healthcheck-client",
        eku: CLIENT,
        sans: Sans::None,
    },
    Expected {
        file: "pki/etcd/backup-client.crt",
        ca: "pki/etcd/ca.crt",
        subject: "CN = gantry-etcd-backup",
        eku: CLIENT,
        sans: Sans::None,
    },
    Expected {
        file: "pki/konnectivity-agent.crt",
        ca: "pki/ca.crt",
        subject: "CN = gantry-konnectivity-agent",
        eku: CLIENT,
        sans: Sans::None,
    },
    Expected {
        file: "pki/apiserver-etcd-client.crt",
        ca: "pki/etcd/ca.crt",
        subject: "CN = kube-apiserver-etcd-client",
        eku: CLIENT,
        sans: Sans::None,
    },
];

const KUBECONFIGS: [(&str, &str, &str); 5] = [
    (
        "admin.conf",
        "O = kubeadm:cluster-admins, CN = kubernetes-admin",
        "https://api.tenant-a.example.com:6443",
    ),
    (
        "super-admin.conf",
        "O = system:masters, CN = kubernetes-super-admin",
        "https://api.tenant-a.example.com:6443",
    ),
    (
        "controller-manager.conf",
        "CN = system:kube-controller-manager",
        "https://kube-apiserver.tcp-tenant-a.svc:6443",
    ),
    (
        "scheduler.conf",
        "CN = system:kube-scheduler",
        "https://kube-apiserver.tcp-tenant-a.svc:6443",
    ),
    (
        "operator.conf",
        "O = gantry:operator, CN = gantry-operator",
        "https://kube-apiserver.tcp-tenant-a.svc:6443",
    ),
];

const CAS: [(&str, &str); 3] = [
    ("pki/ca.crt", "CN = kubernetes"),
    ("pki/front-proxy-ca.crt", "CN = front-proxy-ca"),
    ("pki/etcd/ca.crt", "CN = etcd-ca"),
];

fn expected_sans(kind: Sans) -> BTreeSet<String> {
    let list: &[&str] = match kind {
        Sans::None => &[],
        Sans::ApiServer => &[
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "DNS:localhost",
            "DNS:kube-apiserver",
            "DNS:kube-apiserver.tcp-tenant-a",
            "DNS:kube-apiserver.tcp-tenant-a.svc",
            "DNS:kube-apiserver.tcp-tenant-a.svc.cluster.local",
            "DNS:api.tenant-a.example.com",
            "DNS:extra.example.com",
            "IP Address:127.0.0.1",
            "IP Address:10.96.0.1",
            "IP Address:198.51.100.7",
        ],
        Sans::Etcd => &[
            "DNS:etcd",
            "DNS:etcd.tcp-tenant-a",
            "DNS:etcd.tcp-tenant-a.svc",
            "DNS:*.etcd.tcp-tenant-a.svc",
            "DNS:*.etcd.tcp-tenant-a.svc.cluster.local",
            "DNS:localhost",
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
        ],
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// openssl's view of one certificate: `name -> value` for the lines we check.
struct OpensslView {
    subject: String,
    issuer: String,
    key_usage: String,
    eku: String,
    basic_constraints: String,
    sans: BTreeSet<String>,
    key_line: String,
}

fn openssl_view(cert: &Path) -> OpensslView {
    let out = run_ok(
        Command::new(tool("openssl"))
            .arg("x509")
            .arg("-in")
            .arg(cert)
            .args([
                "-noout",
                "-subject",
                "-issuer",
                "-ext",
                "subjectAltName,extendedKeyUsage,keyUsage,basicConstraints",
            ]),
    );
    let mut lines = out.lines();
    let mut view = OpensslView {
        subject: String::new(),
        issuer: String::new(),
        key_usage: String::new(),
        eku: String::new(),
        basic_constraints: String::new(),
        sans: BTreeSet::new(),
        key_line: String::new(),
    };
    while let Some(line) = lines.next() {
        if let Some(s) = line.strip_prefix("subject=") {
            view.subject = s.to_string();
        } else if let Some(s) = line.strip_prefix("issuer=") {
            view.issuer = s.to_string();
        } else if line.starts_with("X509v3 ") {
            let value = lines.next().unwrap_or_default().trim().to_string();
            match line.trim_end() {
                l if l.starts_with("X509v3 Key Usage") => {
                    view.key_usage = format!("{}|{value}", l.ends_with("critical"))
                }
                l if l.starts_with("X509v3 Extended Key Usage") => view.eku = value,
                l if l.starts_with("X509v3 Basic Constraints") => view.basic_constraints = value,
                l if l.starts_with("X509v3 Subject Alternative Name") => {
                    view.sans = value.split(", ").map(str::to_string).collect()
                }
                _ => {}
            }
        }
    }
    let text = run_ok(
        Command::new(tool("openssl"))
            .arg("x509")
            .arg("-in")
            .arg(cert)
            .args(["-noout", "-text"]),
    );
    let algorithm = text
        .lines()
        .find(|l| l.contains("Public Key Algorithm"))
        .unwrap_or_default()
        .trim();
    let size = text
        .lines()
        .find(|l| l.contains("Public-Key:"))
        .unwrap_or_default()
        .trim();
    view.key_line = format!("{algorithm} {size}");
    view
}

fn verify(ca: &Path, cert: &Path) -> bool {
    Command::new(tool("openssl"))
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("run openssl verify")
        .status
        .success()
}

fn extract_client_cert(kubeconfig: &Path, dest: &Path) -> String {
    let yaml = std::fs::read_to_string(kubeconfig).unwrap();
    let field = |name: &str| -> Vec<u8> {
        let line = yaml
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {kubeconfig:?}"));
        let value = line.split_once(": ").unwrap().1.trim();
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap()
    };
    std::fs::write(dest, field("client-certificate-data:")).unwrap();
    std::fs::write(dest.with_extension("key"), field("client-key-data:")).unwrap();
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string()
}

fn check_pki(algorithm: &str, key_line: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pki_init(
        tmp.path(),
        "tenant-a",
        &[
            "--endpoint",
            "api.tenant-a.example.com",
            "--san",
            "extra.example.com",
            "--san",
            "198.51.100.7",
            "--algorithm",
            algorithm,
        ],
    );

    for (file, subject) in CAS {
        let view = openssl_view(&dir.join(file));
        assert_eq!(view.subject, subject, "{file}");
        assert_eq!(view.issuer, subject, "{file} is self-signed");
        assert_eq!(view.basic_constraints, "CA:TRUE", "{file}");
        assert_eq!(
            view.key_usage, "true|Digital Signature, Certificate Sign, CRL Sign",
            "{file}"
        );
        assert!(view.sans.is_empty(), "{file}");
        assert_eq!(view.key_line, key_line, "{file}");
        assert!(
            verify(&dir.join(file), &dir.join(file)),
            "{file} verifies against itself"
        );
    }

    let leaf_usage = if algorithm.starts_with("rsa") {
        "true|Digital Signature, Key Encipherment"
    } else {
        "true|Digital Signature"
    };
    for leaf in &LEAVES {
        let cert = dir.join(leaf.file);
        let view = openssl_view(&cert);
        assert!(
            verify(&dir.join(leaf.ca), &cert),
            "openssl verify -CAfile {} {}",
            leaf.ca,
            leaf.file
        );
        for (other_ca, _) in CAS.iter().filter(|(ca, _)| *ca != leaf.ca) {
            assert!(
                !verify(&dir.join(other_ca), &cert),
                "{} must not verify against {other_ca}",
                leaf.file
            );
        }
        assert_eq!(view.subject, leaf.subject, "{}", leaf.file);
        assert_eq!(view.eku, leaf.eku, "{}", leaf.file);
        assert_eq!(view.basic_constraints, "CA:FALSE", "{}", leaf.file);
        assert_eq!(view.key_usage, leaf_usage, "{}", leaf.file);
        assert_eq!(view.sans, expected_sans(leaf.sans), "{}", leaf.file);
        assert_eq!(view.key_line, key_line, "{}", leaf.file);
        // The key parses and is the certificate's.
        let key = cert.with_extension("key");
        let from_key = run_ok(
            Command::new(tool("openssl"))
                .arg("pkey")
                .arg("-in")
                .arg(&key)
                .arg("-pubout"),
        );
        let from_cert = run_ok(
            Command::new(tool("openssl"))
                .arg("x509")
                .arg("-in")
                .arg(&cert)
                .args(["-noout", "-pubkey"]),
        );
        assert_eq!(from_key, from_cert, "{} matches its key", leaf.file);
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600,
            "{key:?}"
        );
    }

    for (file, subject, server) in KUBECONFIGS {
        let cert = tmp.path().join(format!("{file}.crt"));
        let found_server = extract_client_cert(&dir.join(file), &cert);
        assert_eq!(found_server, server, "{file}");
        let view = openssl_view(&cert);
        assert!(verify(&dir.join("pki/ca.crt"), &cert), "{file}");
        assert_eq!(view.subject, subject, "{file}");
        assert_eq!(view.eku, CLIENT, "{file}");
        assert!(view.sans.is_empty(), "{file}");
        assert_eq!(view.key_line, key_line, "{file}");
        run_ok(
            Command::new(tool("openssl"))
                .arg("pkey")
                .arg("-noout")
                .arg("-in")
                .arg(cert.with_extension("key")),
        );
        assert_eq!(
            std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{file}"
        );
    }

    // The service-account pair: PKCS#8 private key, PKIX public key, a matching pair.
    let sa_key = std::fs::read_to_string(dir.join("pki/sa.key")).unwrap();
    assert!(
        sa_key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "sa.key is PKCS#8"
    );
    let sa_pub = std::fs::read_to_string(dir.join("pki/sa.pub")).unwrap();
    assert!(
        sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"),
        "sa.pub is PKIX"
    );
    let derived = run_ok(
        Command::new(tool("openssl"))
            .arg("pkey")
            .arg("-in")
            .arg(dir.join("pki/sa.key"))
            .arg("-pubout"),
    );
    assert_eq!(derived, sa_pub);

    // The discovery hash equals openssl's pipeline from pki.md.
    let pubkey = run_ok(
        Command::new(tool("openssl"))
            .arg("x509")
            .arg("-pubkey")
            .arg("-noout")
            .arg("-in")
            .arg(dir.join("pki/ca.crt")),
    );
    let der_path = tmp.path().join("ca.pub.der");
    let pub_pem_path = tmp.path().join("ca.pub.pem");
    std::fs::write(&pub_pem_path, pubkey).unwrap();
    run_ok(
        Command::new(tool("openssl"))
            .args(["pkey", "-pubin", "-outform", "der", "-in"])
            .arg(&pub_pem_path)
            .arg("-out")
            .arg(&der_path),
    );
    let digest = run_ok(
        Command::new(tool("openssl"))
            .args(["dgst", "-sha256", "-r"])
            .arg(&der_path),
    );
    let openssl_hash = format!("sha256:{}", digest.split_whitespace().next().unwrap());
    let gantry_hash = gantry_ok(&[
        "pki",
        "ca-cert-hash",
        dir.join("pki/ca.crt").to_str().unwrap(),
    ]);
    assert_eq!(gantry_hash.trim(), openssl_hash);
}

#[test]
fn ecdsa_pki_matches_the_table_under_openssl() {
    check_pki(
        "ecdsa-p256",
        "Public Key Algorithm: id-ecPublicKey Public-Key: (256 bit)",
    );
}

#[test]
fn rsa_2048_pki_matches_the_table_under_openssl() {
    check_pki(
        "rsa-2048",
        "Public Key Algorithm: rsaEncryption Public-Key: (2048 bit)",
    );
}
