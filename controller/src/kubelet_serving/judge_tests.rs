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
    assert_eq!(judge(&csr, Some(&worker_0())), Verdict::Approve);
}

#[test]
fn an_address_or_name_of_another_node_is_not_approved() {
    let other_ip = csr_from(
        "system:node:worker-0",
        request_pem(
            "system:node:worker-0",
            vec![dns("worker-0"), ip("10.0.0.8")],
        ),
    );
    assert_eq!(
        judge(&other_ip, Some(&worker_0())),
        Verdict::Wait("Node worker-0 does not report 10.0.0.8".into())
    );
    let other_name = csr_from(
        "system:node:worker-0",
        request_pem("system:node:worker-0", vec![dns("kubernetes.default")]),
    );
    assert!(matches!(
        judge(&other_name, Some(&worker_0())),
        Verdict::Wait(reason) if reason.contains("kubernetes.default")
    ));
}

#[test]
fn a_request_before_its_node_registers_waits() {
    assert_eq!(
        judge(&kubelet_request(), None),
        Verdict::Wait("Node worker-0 is not registered".into())
    );
}

#[test]
fn a_node_speaking_for_another_node_is_denied() {
    let csr = csr_from(
        "system:node:worker-1",
        request_pem("system:node:worker-0", vec![dns("worker-0")]),
    );
    denied_because(judge(&csr, Some(&worker_0())), "CN=system:node:worker-1");
}

#[test]
fn a_requester_that_is_not_a_node_is_denied() {
    let mut csr = kubelet_request();
    csr.spec.username = Some("system:serviceaccount:kube-system:default".into());
    denied_because(judge(&csr, Some(&worker_0())), "not by a node");
    let mut csr = kubelet_request();
    csr.spec.groups = Some(vec!["system:authenticated".into()]);
    denied_because(judge(&csr, Some(&worker_0())), "group system:nodes");
}

#[test]
fn client_usages_or_other_name_types_are_denied() {
    let mut csr = kubelet_request();
    csr.spec.usages = Some(vec!["server auth".into(), "client auth".into()]);
    denied_because(judge(&csr, Some(&worker_0())), "\"client auth\"");
    let mut csr = kubelet_request();
    csr.spec.usages = Some(vec!["digital signature".into()]);
    denied_because(judge(&csr, Some(&worker_0())), "server auth");
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
    denied_because(judge(&email, Some(&worker_0())), "only DNS names");
    let none = csr_from(
        "system:node:worker-0",
        request_pem("system:node:worker-0", vec![]),
    );
    denied_because(judge(&none, Some(&worker_0())), "no DNS name");
    let mut garbage = kubelet_request();
    garbage.spec.request = ByteString(b"not a request".to_vec());
    denied_because(judge(&garbage, Some(&worker_0())), "not PEM");
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
    assert_eq!(judge(&approved, Some(&worker_0())), Verdict::NotOurs);
    let mut client = kubelet_request();
    client.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
    assert_eq!(judge(&client, Some(&worker_0())), Verdict::NotOurs);
}
