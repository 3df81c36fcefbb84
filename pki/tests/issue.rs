//! The keep/reissue decisions of `gantry_pki::issue`, driven through the public API.

use gantry_pki::{
    Action, CertInfo, Endpoint, FileSet, Health, KeyAlgorithm, PkiError, PkiSpec, Reason, San,
    check, issue,
};
use time::{Duration, OffsetDateTime};

fn spec() -> PkiSpec {
    PkiSpec::new(
        "tenant-a",
        Endpoint::parse("endpoint", "203.0.113.10").unwrap(),
    )
    .unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn action_of<'a>(issued: &'a gantry_pki::Issued, item: &str) -> &'a Action {
    &issued
        .decisions
        .iter()
        .find(|d| d.item == item)
        .unwrap_or_else(|| panic!("no decision for {item}"))
        .action
}

fn changed_files(before: &FileSet, after: &FileSet) -> Vec<String> {
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(path, contents)| before.get(*path) != Some(*contents))
        .map(|(path, _)| path.clone())
        .collect();
    changed.sort();
    changed
}

#[test]
fn a_first_issue_creates_every_file_of_the_layout() {
    let issued = issue(&spec(), &FileSet::new(), now()).unwrap();
    let paths: Vec<&str> = issued.bundle.files().map(|(p, _)| p).collect();
    let mut expected = vec![
        "admin.conf",
        "cluster-info.conf",
        "controller-manager.conf",
        "pki/apiserver-etcd-client.crt",
        "pki/apiserver-etcd-client.key",
        "pki/apiserver-kubelet-client.crt",
        "pki/apiserver-kubelet-client.key",
        "pki/apiserver.crt",
        "pki/apiserver.key",
        "pki/ca.crt",
        "pki/ca.key",
        "pki/encryption-config.yaml",
        "pki/etcd/ca.crt",
        "pki/etcd/ca.key",
        "pki/etcd/backup-client.crt",
        "pki/etcd/backup-client.key",
        "pki/etcd/healthcheck-client.crt",
        "pki/etcd/healthcheck-client.key",
        "pki/etcd/peer.crt",
        "pki/etcd/peer.key",
        "pki/etcd/server.crt",
        "pki/etcd/server.key",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-ca.key",
        "pki/front-proxy-client.crt",
        "pki/front-proxy-client.key",
        "pki/konnectivity-agent.crt",
        "pki/konnectivity-agent.key",
        "pki/sa.key",
        "pki/sa.pub",
        "scheduler.conf",
        "super-admin.conf",
        "operator.conf",
    ];
    expected.sort();
    assert_eq!(paths, expected);
    assert!(issued.decisions.iter().all(|d| d.action == Action::Created));
    for (path, file) in issued.bundle.files() {
        let holds_key = path.ends_with(".key")
            || (path.ends_with(".conf") && path != "cluster-info.conf")
            || path == gantry_pki::ENCRYPTION_CONFIG;
        assert_eq!(file.secret, holds_key, "{path}");
    }
    assert!(
        check(&issued.bundle.to_file_set(), now(), Duration::days(30))
            .iter()
            .all(|r| r.health == Health::Ok)
    );
}

#[test]
fn an_unchanged_spec_keeps_every_file_byte_for_byte() {
    let first = issue(&spec(), &FileSet::new(), now()).unwrap();
    let before = first.bundle.to_file_set();
    let again = issue(&spec(), &before, now()).unwrap();
    assert!(!again.changed(), "{:?}", again.decisions);
    assert_eq!(again.bundle.to_file_set(), before);
}

#[test]
fn a_new_cert_san_reissues_only_the_apiserver_certificate() {
    let before = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    let mut with_san = spec();
    with_san
        .extra_sans
        .push(San::parse("san", "api.tenant-a.example.com").unwrap());
    let after = issue(&with_san, &before, now()).unwrap();
    assert_eq!(
        action_of(&after, "pki/apiserver.{crt,key}"),
        &Action::Reissued(Reason::SansChanged {
            added: vec![San::Dns("api.tenant-a.example.com".into())],
            removed: vec![],
        })
    );
    assert_eq!(
        changed_files(&before, &after.bundle.to_file_set()),
        ["pki/apiserver.crt", "pki/apiserver.key"]
    );
    let cert = CertInfo::from_pem(after.bundle.get("pki/apiserver.crt").unwrap()).unwrap();
    assert!(
        cert.sans
            .contains(&San::Dns("api.tenant-a.example.com".into()))
    );
}

#[test]
fn a_new_endpoint_reissues_the_apiserver_certificate_and_the_kubeconfigs_that_name_it() {
    let before = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    let mut moved = spec();
    moved.endpoint = Endpoint::parse("endpoint", "198.51.100.20:443").unwrap();
    let after = issue(&moved, &before, now()).unwrap();
    assert_eq!(
        changed_files(&before, &after.bundle.to_file_set()),
        [
            "admin.conf",
            "cluster-info.conf",
            "pki/apiserver.crt",
            "pki/apiserver.key",
            "super-admin.conf"
        ]
    );
    assert!(matches!(
        action_of(&after, "admin.conf"),
        Action::Reissued(Reason::ServerChanged { .. })
    ));
}

#[test]
fn leaves_close_to_expiry_are_renewed_and_cas_are_not() {
    let issued_at = now();
    let before = issue(&spec(), &FileSet::new(), issued_at)
        .unwrap()
        .bundle
        .to_file_set();
    // 340 days later, every 365-day leaf has less than 30 days left.
    let later = issued_at + Duration::days(340);
    let after = issue(&spec(), &before, later).unwrap();
    for decision in &after.decisions {
        let is_authority = decision.item.contains("ca.{crt,key}")
            || decision.item.starts_with("pki/sa.")
            || decision.item == gantry_pki::ENCRYPTION_CONFIG;
        match (
            &decision.action,
            is_authority || decision.item == "cluster-info.conf",
        ) {
            (Action::Kept, true) => {}
            (Action::Reissued(Reason::Expiring { .. }), false) => {}
            other => panic!("{}: {other:?}", decision.item),
        }
    }
    let renewed = CertInfo::from_pem(after.bundle.get("pki/apiserver.crt").unwrap()).unwrap();
    assert!(renewed.not_after > later + Duration::days(364));
}

#[test]
fn a_leaf_signed_by_another_ca_is_reissued() {
    let ours = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    let theirs = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    let mut mixed = ours.clone();
    for path in ["pki/etcd/server.crt", "pki/etcd/server.key"] {
        mixed.insert(path.into(), theirs[path].clone());
    }
    let after = issue(&spec(), &mixed, now()).unwrap();
    assert_eq!(
        action_of(&after, "pki/etcd/server.{crt,key}"),
        &Action::Reissued(Reason::NotSignedByCurrentCa)
    );
    assert_eq!(
        changed_files(&mixed, &after.bundle.to_file_set()),
        ["pki/etcd/server.crt", "pki/etcd/server.key"]
    );
    let report = check(&mixed, now(), Duration::days(30));
    let row = report
        .iter()
        .find(|r| r.file == "pki/etcd/server.crt")
        .unwrap();
    assert_eq!(
        row.health,
        Health::Invalid("not signed by pki/etcd/ca.crt".into())
    );
}

#[test]
fn a_damaged_leaf_is_reissued_but_a_damaged_ca_is_an_error() {
    let before = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    let mut damaged = before.clone();
    damaged.insert("pki/front-proxy-client.key".into(), b"garbage".to_vec());
    let after = issue(&spec(), &damaged, now()).unwrap();
    assert!(matches!(
        action_of(&after, "pki/front-proxy-client.{crt,key}"),
        Action::Reissued(Reason::Unreadable(_))
    ));

    let mut broken_ca = before.clone();
    broken_ca.insert(
        "pki/ca.crt".into(),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
    );
    let err = issue(&spec(), &broken_ca, now()).unwrap_err();
    assert!(
        matches!(err, PkiError::UnreadableAuthority { ref path, .. } if path == "pki/ca.crt"),
        "{err}"
    );
    assert!(err.to_string().contains("refusing to replace it"), "{err}");

    let mut half_ca = before.clone();
    half_ca.remove("pki/etcd/ca.key");
    let err = issue(&spec(), &half_ca, now()).unwrap_err().to_string();
    assert_eq!(
        err,
        "pki/etcd/ca.crt exists but pki/etcd/ca.key does not; restore it or remove both"
    );

    let mut no_sa_key = before.clone();
    no_sa_key.remove("pki/sa.key");
    assert!(issue(&spec(), &no_sa_key, now()).is_err());

    let mut no_sa_pub = before;
    no_sa_pub.remove("pki/sa.pub");
    let after = issue(&spec(), &no_sa_pub, now()).unwrap();
    assert_eq!(
        after.bundle.to_file_set()["pki/sa.pub"],
        issue(&spec(), &no_sa_pub, now())
            .unwrap()
            .bundle
            .to_file_set()["pki/sa.pub"]
    );
}

#[test]
fn errors_never_carry_key_material() {
    let before = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    let mut broken = before.clone();
    // A CA key that parses as PEM but is the wrong key.
    broken.insert("pki/ca.key".into(), before["pki/etcd/ca.key"].clone());
    let err = issue(&spec(), &broken, now()).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(
        !err.contains("PRIVATE KEY") && !err.contains("MIG"),
        "{err}"
    );
}

#[test]
fn changing_the_algorithm_reissues_leaves_but_keeps_the_cas() {
    let before = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    let mut rsa = spec();
    rsa.algorithm = KeyAlgorithm::Rsa2048;
    let after = issue(&rsa, &before, now()).unwrap();
    assert_eq!(action_of(&after, "pki/ca.{crt,key}"), &Action::Kept);
    assert!(matches!(
        action_of(&after, "pki/apiserver.{crt,key}"),
        Action::Reissued(Reason::AlgorithmChanged {
            to: KeyAlgorithm::Rsa2048,
            ..
        })
    ));
    let leaf = CertInfo::from_pem(after.bundle.get("pki/apiserver.crt").unwrap()).unwrap();
    assert_eq!(leaf.key_algorithm, Some(KeyAlgorithm::Rsa2048));
    let files = after.bundle.to_file_set();
    assert!(
        check(&files, now(), Duration::days(30))
            .iter()
            .all(|r| r.health == Health::Ok)
    );
}

#[test]
fn leaves_never_outlive_their_ca() {
    let mut short = spec();
    short.ca_validity = Duration::days(100);
    short.renew_before = Duration::days(10);
    let issued = issue(&short, &FileSet::new(), now()).unwrap();
    let ca = CertInfo::from_pem(issued.bundle.ca_cert_pem()).unwrap();
    let leaf = CertInfo::from_pem(issued.bundle.get("pki/apiserver.crt").unwrap()).unwrap();
    assert_eq!(leaf.not_after, ca.not_after);
    assert!(
        ca.not_before < now() - Duration::minutes(4),
        "back-dated for clock skew"
    );
}

#[test]
fn check_reports_expired_and_renewable_certificates() {
    let issued_at = now();
    let files = issue(&spec(), &FileSet::new(), issued_at)
        .unwrap()
        .bundle
        .to_file_set();
    let soon = check(&files, issued_at + Duration::days(350), Duration::days(30));
    assert_eq!(
        soon.iter()
            .find(|r| r.file == "pki/apiserver.crt")
            .unwrap()
            .health,
        Health::Renew
    );
    assert_eq!(
        soon.iter().find(|r| r.file == "pki/ca.crt").unwrap().health,
        Health::Ok
    );
    let late = check(&files, issued_at + Duration::days(400), Duration::days(30));
    assert_eq!(
        late.iter().find(|r| r.file == "admin.conf").unwrap().health,
        Health::Expired
    );
    assert!(late.iter().any(|r| r.health.is_failure()));
}

#[test]
fn an_expired_ca_is_an_error_not_a_source_of_expired_leaves() {
    let before = issue(&spec(), &FileSet::new(), now())
        .unwrap()
        .bundle
        .to_file_set();
    // Eleven years on, the ten-year CAs have expired.
    let later = now() + Duration::days(11 * 365);
    let err = issue(&spec(), &before, later).unwrap_err();
    assert!(
        matches!(err, PkiError::UnreadableAuthority { ref path, .. } if path == "pki/ca.crt"),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("expired at"), "{message}");
    assert!(message.contains("refusing to replace it"), "{message}");
}
