//! Whether a kubelet's serving-certificate request may be approved: pure
//! rules over the CertificateSigningRequest and the Node it names.
//!
//! The apiserver verifies kubelets' serving certificates against the tenant
//! CA (`--kubelet-certificate-authority`, CIS 1.2.5), and the
//! controller-manager signs any approved `kubernetes.io/kubelet-serving`
//! request with that CA. So an approval lets a node's credential speak for
//! every name and address in the certificate: a node may only have its own.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;

/// The signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// What the requester's username starts with; the node's name follows.
const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";

/// Key usages a serving certificate may ask for (RSA keys add key encipherment).
const ALLOWED_USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a pending kubelet-serving request: leave it alone.
    NotOurs,
    Approve,
    /// It asks for what its node may not have.
    Deny(String),
    /// It may be fine once the Node shows its addresses (a node's first
    /// request can come before its status does): look again soon.
    Wait(String),
}

/// The node a request comes from, if its requester is a node.
pub fn requesting_node(csr: &CertificateSigningRequest) -> Option<&str> {
    csr.spec
        .username
        .as_deref()?
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|name| !name.is_empty())
}

/// Whether the request is still undecided (no Approved, Denied or Failed condition).
pub fn is_pending(csr: &CertificateSigningRequest) -> bool {
    let decided = csr.status.as_ref().and_then(|s| s.conditions.as_ref());
    decided.is_none_or(|conditions| conditions.is_empty())
}

/// Judges `csr`, given the Node its requester names (`None` if there is no such Node).
pub fn judge(csr: &CertificateSigningRequest, node: Option<&Node>) -> Verdict {
    if csr.spec.signer_name != KUBELET_SERVING_SIGNER || !is_pending(csr) {
        return Verdict::NotOurs;
    }
    let Some(node_name) = requesting_node(csr) else {
        return Verdict::Deny(format!(
            "requested by {:?}, not by a node",
            csr.spec.username.as_deref().unwrap_or("")
        ));
    };
    if let Err(reason) = requester_and_usages(csr) {
        return Verdict::Deny(reason);
    }
    let request = match gantry_pki::csr::read_csr(&csr.spec.request.0) {
        Ok(request) => request,
        Err(error) => return Verdict::Deny(error.to_string()),
    };
    let user = format!("{NODE_USER_PREFIX}{node_name}");
    if request.common_names != [user.clone()] || request.organizations != [NODES_GROUP] {
        return Verdict::Deny(format!(
            "the subject must be CN={user}, O={NODES_GROUP}; it is CN={:?}, O={:?}",
            request.common_names, request.organizations
        ));
    }
    if !request.other_names.is_empty() {
        return Verdict::Deny(format!(
            "only DNS names and IP addresses may be asked for, not {}",
            request.other_names.join(", ")
        ));
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Verdict::Deny("it asks for no DNS name or IP address".into());
    }
    let Some(node) = node else {
        return Verdict::Wait(format!("Node {node_name} is not registered"));
    };
    names_of_the_node(node, &request.dns_names, &request.ip_addresses)
}

/// The requester is in `system:nodes` and asks only for serving usages.
fn requester_and_usages(csr: &CertificateSigningRequest) -> Result<(), String> {
    let groups = csr.spec.groups.as_deref().unwrap_or_default();
    if !groups.iter().any(|group| group == NODES_GROUP) {
        return Err(format!("the requester is not in group {NODES_GROUP}"));
    }
    let usages = csr.spec.usages.as_deref().unwrap_or_default();
    if !usages.iter().any(|usage| usage == "server auth") {
        return Err("it does not ask for the usage \"server auth\"".into());
    }
    if let Some(extra) = usages
        .iter()
        .find(|usage| !ALLOWED_USAGES.contains(&usage.as_str()))
    {
        return Err(format!("it asks for the usage {extra:?}"));
    }
    Ok(())
}

/// Every name and address asked for is one the Node reports.
fn names_of_the_node(node: &Node, dns_names: &[String], ips: &[IpAddr]) -> Verdict {
    let addresses = node
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_deref())
        .unwrap_or_default();
    let of_types = |types: &[&str]| -> BTreeSet<&str> {
        addresses
            .iter()
            .filter(|a| types.contains(&a.type_.as_str()))
            .map(|a| a.address.as_str())
            .collect()
    };
    let node_names = of_types(&["Hostname", "InternalDNS", "ExternalDNS"]);
    let node_ips: BTreeSet<IpAddr> = of_types(&["InternalIP", "ExternalIP"])
        .into_iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut foreign: Vec<String> = dns_names
        .iter()
        .filter(|name| !node_names.contains(name.as_str()))
        .cloned()
        .collect();
    foreign.extend(
        ips.iter()
            .filter(|ip| !node_ips.contains(ip))
            .map(IpAddr::to_string),
    );
    if foreign.is_empty() {
        Verdict::Approve
    } else {
        Verdict::Wait(format!(
            "Node {node_name} does not report {}",
            foreign.join(", ")
        ))
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
