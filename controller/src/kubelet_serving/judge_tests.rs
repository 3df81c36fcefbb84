use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};

use super::*;

/// A serving request as a kubelet makes one: `cn` in the subject, the SANs.
fn request_pem(cn: &str, sans: Vec<rcgen::SanType>) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, NODES_GROUP);
    params.subject_alt_names = sans;
    let key = rcgen::KeyPair::generate().unwrap();
    params
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
        .into_bytes()
}

fn dns(name: &str) -> rcgen::SanType {
    rcgen::SanType::DnsName(name.try_into().unwrap())
}

fn ip(address: &str) -> rcgen::SanType {
    rcgen::SanType::IpAddress(address.parse().unwrap())
}

/// worker-0's request for its hostname and address, from worker-0.
fn kubelet_request() -> CertificateSigningRequest {
    csr_from(
        "system:node:worker-0",
        request_pem(
            "system:node:worker-0",
            vec![dns("worker-0"), ip("10.0.0.7")],
        ),
    )
}

fn csr_from(username: &str, request: Vec<u8>) -> CertificateSigningRequest {
    CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            signer_name: KUBELET_SERVING_SIGNER.into(),
            username: Some(username.into()),
            groups: Some(vec![NODES_GROUP.into(), "system:authenticated".into()]),
            usages: Some(vec!["digital signature".into(), "server auth".into()]),
            request: ByteString(request),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn node(name: &str, addresses: &[(&str, &str)]) -> Node {
    let mut node = Node::default();
    node.metadata.name = Some(name.into());
    node.status = Some(NodeStatus {
        addresses: Some(
            addresses
                .iter()
                .map(|(type_, address)| NodeAddress {
                    type_: (*type_).into(),
                    address: (*address).into(),
                })
                .collect(),
        ),
        ..Default::default()
    });
    node
}

fn worker_0() -> Node {
    node(
        "worker-0",
        &[("InternalIP", "10.0.0.7"), ("Hostname", "worker-0")],
    )
}

/// The tenant of these tests: its apiserver's names and addresses, its networks.
fn reserved() -> Reserved {
    Reserved {
        names: [
            "kubernetes.default.svc".to_string(),
            "api.example.com".into(),
        ]
        .into(),
        ips: [
            "10.96.0.1".parse().unwrap(),
            "203.0.113.10".parse().unwrap(),
        ]
        .into(),
        networks: vec![
            "10.96.0.0/12".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
        ],
    }
}

/// The verdict on `csr` from worker-0, the only Node, in the tenant of [`reserved`].
fn judged_for_worker_0(csr: &CertificateSigningRequest) -> Verdict {
    judge(csr, Some(&worker_0()), &[], &reserved())
}

fn denied_because(verdict: Verdict, words: &str) {
    match verdict {
        Verdict::Deny(reason) => assert!(reason.contains(words), "{reason}"),
        other => panic!("expected a denial mentioning {words:?}, got {other:?}"),
    }
}

#[test]
fn a_node_asking_for_its_own_names_and_addresses_is_approved() {
    let csr = kubelet_request();
    assert_eq!(requesting_node(&csr), Some("worker-0"));
    assert_eq!(judged_for_worker_0(&csr), Verdict::Approve);
}

#[test]
fn an_address_or_name_the_node_does_not_report_waits() {
    let other_ip = csr_from(
        "system:node:worker-0",
        request_pem(
            "system:node:worker-0",
            vec![dns("worker-0"), ip("10.0.0.8")],
        ),
    );
    assert_eq!(
        judged_for_worker_0(&other_ip),
        Verdict::Wait("Node worker-0 does not report 10.0.0.8".into())
    );
    let other_name = csr_from(
        "system:node:worker-0",
        request_pem("system:node:worker-0", vec![dns("db.example.com")]),
    );
    assert!(matches!(
        judged_for_worker_0(&other_name),
        Verdict::Wait(reason) if reason.contains("db.example.com")
    ));
}

/// A kubelet writes its own Node's addresses, so reporting one proves
/// nothing: another Node's address, the apiserver's names and addresses,
/// the tenant's networks and addresses no node has are denied even when the
/// Node reports them.
#[test]
fn addresses_of_others_are_denied_even_when_the_node_reports_them() {
    let greedy = node(
        "worker-0",
        &[
            ("Hostname", "worker-0"),
            ("InternalIP", "10.0.0.7"),
            ("InternalIP", "10.0.0.8"),
            ("ExternalIP", "203.0.113.10"),
            ("ExternalIP", "10.96.0.10"),
            ("ExternalIP", "127.0.0.1"),
            ("ExternalDNS", "kubernetes.default.svc"),
            ("ExternalDNS", "*.example.com"),
        ],
    );
    let worker_1 = node(
        "worker-1",
        &[("Hostname", "worker-1"), ("InternalIP", "10.0.0.8")],
    );
    let asking = |san: rcgen::SanType| {
        let csr = csr_from(
            "system:node:worker-0",
            request_pem("system:node:worker-0", vec![dns("worker-0"), san]),
        );
        judge(
            &csr,
            Some(&greedy),
            std::slice::from_ref(&worker_1),
            &reserved(),
        )
    };
    denied_because(asking(ip("10.0.0.8")), "an address of Node worker-1");
    denied_because(asking(dns("worker-1")), "an address of Node worker-1");
    denied_because(asking(ip("203.0.113.10")), "the tenant apiserver");
    denied_because(
        asking(dns("Kubernetes.Default.svc")),
        "a name of the tenant apiserver",
    );
    denied_because(asking(ip("10.96.0.10")), "Service or pod network");
    denied_because(asking(ip("127.0.0.1")), "not a node address");
    denied_because(asking(dns("*.example.com")), "a wildcard");
    denied_because(asking(ip("::ffff:10.96.0.1")), "not a node address");
    denied_because(asking(ip("::ffff:10.0.0.8")), "not a node address");
    denied_because(asking(ip("255.255.255.255")), "not a node address");
    denied_because(
        asking(dns("kubernetes.default.svc.")),
        "not a plain DNS name",
    );
    denied_because(asking(dns("worker-1.")), "not a plain DNS name");
    assert_eq!(
        asking(ip("10.0.0.7")),
        Verdict::Approve,
        "its own address, still"
    );
}

#[test]
fn a_hostname_that_is_an_ip_counts_as_an_ip() {
    let by_ip = node("worker-0", &[("Hostname", "10.0.0.9")]);
    let csr = csr_from(
        "system:node:worker-0",
        request_pem("system:node:worker-0", vec![ip("10.0.0.9")]),
    );
    assert_eq!(
        judge(&csr, Some(&by_ip), &[], &reserved()),
        Verdict::Approve
    );
}

#[test]
fn the_reserved_names_are_the_apiserver_certificates() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["Kube-Apiserver.tcp-a.svc".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("10.96.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap().pem();
    let reserved = Reserved::of_tenant(cert.as_bytes(), vec![]).unwrap();
    assert_eq!(
        reserved.names,
        BTreeSet::from(["kube-apiserver.tcp-a.svc".to_string()])
    );
    assert_eq!(reserved.ips, BTreeSet::from(["10.96.0.1".parse().unwrap()]));
}

#[test]
fn a_request_before_its_node_registers_waits() {
    assert_eq!(
        judge(&kubelet_request(), None, &[], &reserved()),
        Verdict::Wait("Node worker-0 is not registered".into())
    );
}

#[test]
fn a_node_speaking_for_another_node_is_denied() {
    let csr = csr_from(
        "system:node:worker-1",
        request_pem("system:node:worker-0", vec![dns("worker-0")]),
    );
    denied_because(judged_for_worker_0(&csr), "CN=system:node:worker-1");
}

#[test]
fn a_requester_that_is_not_a_node_is_denied() {
    let mut csr = kubelet_request();
    csr.spec.username = Some("system:serviceaccount:kube-system:default".into());
    denied_because(judged_for_worker_0(&csr), "not by a node");
    let mut csr = kubelet_request();
    csr.spec.groups = Some(vec!["system:authenticated".into()]);
    denied_because(judged_for_worker_0(&csr), "group system:nodes");
}

#[test]
fn client_usages_or_other_name_types_are_denied() {
    let mut csr = kubelet_request();
    csr.spec.usages = Some(vec!["server auth".into(), "client auth".into()]);
    denied_because(judged_for_worker_0(&csr), "\"client auth\"");
    let mut csr = kubelet_request();
    csr.spec.usages = Some(vec!["digital signature".into()]);
    denied_because(judged_for_worker_0(&csr), "server auth");
    let email = csr_from(
        "system:node:worker-0",
        request_pem(
            "system:node:worker-0",
            vec![
                dns("worker-0"),
                rcgen::SanType::Rfc822Name("a@example.com".try_into().unwrap()),
            ],
        ),
    );
    denied_because(judged_for_worker_0(&email), "only DNS names");
    let none = csr_from(
        "system:node:worker-0",
        request_pem("system:node:worker-0", vec![]),
    );
    denied_because(judged_for_worker_0(&none), "no DNS name");
    let mut garbage = kubelet_request();
    garbage.spec.request = ByteString(b"not a request".to_vec());
    denied_because(judged_for_worker_0(&garbage), "not PEM");
}

#[test]
fn decided_requests_and_other_signers_are_left_alone() {
    let mut approved = kubelet_request();
    approved.status = Some(CertificateSigningRequestStatus {
        conditions: Some(vec![CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    assert_eq!(judged_for_worker_0(&approved), Verdict::NotOurs);
    let mut client = kubelet_request();
    client.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
    assert_eq!(judged_for_worker_0(&client), Verdict::NotOurs);
}
