//! Whether a kubelet's serving-certificate request may be approved: pure
//! rules over the CertificateSigningRequest and the Node it names.
//!
//! The apiserver verifies kubelets' serving certificates against the tenant
//! CA (`--kubelet-certificate-authority`, CIS 1.2.5), and the
//! controller-manager signs any approved `kubernetes.io/kubelet-serving`
//! request with that CA, the CA that also signs the apiserver's certificate.
//! So an approval lets a node's credential speak for every name and address
//! in the certificate. A Node's addresses are reported by its own kubelet,
//! so they alone do not prove anything: a name or address is approved only
//! if the Node reports it, no other Node reports it, it is none of the
//! tenant apiserver's names and addresses nor in the tenant's Service or pod
//! networks, and it is no wildcard, `localhost`, name with empty labels,
//! loopback, link-local, multicast, broadcast, unspecified or IPv4-mapped
//! IPv6 address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
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

/// Names and addresses that belong to the tenant's control plane and
/// networks, never to a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Reserved {
    /// DNS names of the apiserver's certificate (lower case).
    pub names: BTreeSet<String>,
    /// IP addresses of the apiserver's certificate.
    pub ips: BTreeSet<IpAddr>,
    /// The tenant's Service and pod networks.
    pub networks: Vec<IpNet>,
}

impl Reserved {
    /// What the tenant apiserver's certificate (PEM) names, and the networks.
    pub fn of_tenant(apiserver_cert: &[u8], networks: Vec<IpNet>) -> Result<Self, String> {
        let cert = gantry_pki::CertInfo::from_pem(apiserver_cert)?;
        let mut reserved = Reserved {
            networks,
            ..Reserved::default()
        };
        for san in cert.sans {
            match san {
                gantry_pki::San::Dns(name) => reserved.names.insert(name.to_ascii_lowercase()),
                gantry_pki::San::Ip(ip) => reserved.ips.insert(ip),
            };
        }
        Ok(reserved)
    }

    /// Why `name` may be no node's, if it may not.
    fn refuses_name(&self, name: &str) -> Option<&'static str> {
        let name = name.to_ascii_lowercase();
        if name.contains('*') {
            Some("a wildcard")
        } else if name.ends_with('.') || name.starts_with('.') || name.contains("..") {
            // Trailing dots and empty labels would slip past the comparisons below.
            Some("not a plain DNS name")
        } else if name == "localhost" || name.ends_with(".localhost") {
            Some("localhost")
        } else if self.names.contains(&name) {
            Some("a name of the tenant apiserver")
        } else {
            None
        }
    }

    /// Why `ip` may be no node's, if it may not.
    fn refuses_ip(&self, ip: IpAddr) -> Option<&'static str> {
        let odd = match ip {
            IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast() || v4.octets()[0] == 0,
            // An IPv4 address written as IPv6 (::ffff:a.b.c.d) is the same
            // address to Go's TLS, and would slip past the comparisons below.
            IpAddr::V6(v6) => v6.is_unicast_link_local() || v6.to_ipv4_mapped().is_some(),
        };
        if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || odd {
            Some("not a node address")
        } else if self.ips.contains(&ip) {
            Some("an address of the tenant apiserver")
        } else if self.networks.iter().any(|net| net.contains(&ip)) {
            Some("in the tenant's Service or pod network")
        } else {
            None
        }
    }
}

/// Judges `csr`, given the Node its requester names (`None` if there is no
/// such Node), every Node of the tenant (its own is skipped), and what no
/// node may have.
pub fn judge(
    csr: &CertificateSigningRequest,
    node: Option<&Node>,
    nodes: &[Node],
    reserved: &Reserved,
) -> Verdict {
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
    if let Err(reason) = none_reserved_or_taken(&request, node_name, nodes, reserved) {
        return Verdict::Deny(reason);
    }
    let Some(node) = node else {
        return Verdict::Wait(format!("Node {node_name} is not registered"));
    };
    names_of_the_node(node, &request.dns_names, &request.ip_addresses)
}

/// No name or address asked for is reserved, or reported by another Node.
fn none_reserved_or_taken(
    request: &gantry_pki::csr::CsrRequest,
    node_name: &str,
    other_nodes: &[Node],
    reserved: &Reserved,
) -> Result<(), String> {
    for name in &request.dns_names {
        if let Some(why) = reserved.refuses_name(name) {
            return Err(format!("{name} is {why}"));
        }
    }
    for ip in &request.ip_addresses {
        if let Some(why) = reserved.refuses_ip(*ip) {
            return Err(format!("{ip} is {why}"));
        }
    }
    for other in other_nodes {
        let other_name = other.metadata.name.as_deref().unwrap_or_default();
        if other_name == node_name {
            continue;
        }
        let (names, ips) = reported(other);
        let taken = request
            .dns_names
            .iter()
            .find(|name| names.contains(name.to_ascii_lowercase().as_str()))
            .cloned()
            .or_else(|| {
                request
                    .ip_addresses
                    .iter()
                    .find(|ip| ips.contains(ip))
                    .map(IpAddr::to_string)
            });
        if let Some(taken) = taken {
            return Err(format!("{taken} is an address of Node {other_name}"));
        }
    }
    Ok(())
}

/// The names and IP addresses a Node reports. As the kubelet does when it
/// asks, an address of any type that parses as an IP is an IP.
fn reported(node: &Node) -> (BTreeSet<String>, BTreeSet<IpAddr>) {
    let mut names = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let addresses = node
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_deref())
        .unwrap_or_default();
    for address in addresses {
        match address.address.parse::<IpAddr>() {
            Ok(ip) => ips.insert(ip.to_canonical()),
            Err(_) => names.insert(address.address.to_ascii_lowercase()),
        };
    }
    (names, ips)
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
    let (node_names, node_ips) = reported(node);
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut foreign: Vec<String> = dns_names
        .iter()
        .filter(|name| !node_names.contains(name.to_ascii_lowercase().as_str()))
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
