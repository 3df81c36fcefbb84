//! Where nodes reach a tenant's apiserver: the explicit `apiServer.endpoint`;
//! else the LoadBalancer's ingress address once assigned; else, for NodePort,
//! a ready node's address with the node port. While nothing is known yet the
//! endpoint is pending and the reconcile issues nothing else.

use gantry_pki::{DEFAULT_API_SERVER_PORT, Endpoint};

use crate::api::{ServiceType, TenantControlPlaneSpec};

pub use crate::live::ObservedService;

/// What the controller observed of one service-cluster node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    pub name: String,
    pub ready: bool,
    /// `status.addresses`: (type, address), e.g. ("InternalIP", "10.0.0.5").
    pub addresses: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    Explicit,
    LoadBalancer,
    NodePort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointState {
    Ready {
        endpoint: Endpoint,
        source: EndpointSource,
    },
    /// Not known yet: requeue and issue nothing else. The reason goes into
    /// the `EndpointReady=False` condition.
    Pending(String),
    /// The spec cannot yield an endpoint; the message names the field.
    Invalid(String),
}

/// Decides the endpoint from the spec and what was observed.
pub fn resolve_endpoint(
    spec: &TenantControlPlaneSpec,
    service: Option<&ObservedService>,
    nodes: &[ObservedNode],
) -> EndpointState {
    if let Some(value) = &spec.api_server.endpoint {
        return match Endpoint::parse("endpoint", value) {
            Ok(endpoint) => EndpointState::Ready {
                endpoint,
                source: EndpointSource::Explicit,
            },
            Err(e) => {
                EndpointState::Invalid(format!("spec.apiServer.endpoint {value:?}: {}", e.reason))
            }
        };
    }
    let Some(service) = service else {
        return EndpointState::Pending("the kube-apiserver Service does not exist yet".into());
    };
    match spec.api_server.service.type_ {
        ServiceType::LoadBalancer => {
            // Prefer an IP: it can also be the apiserver's --advertise-address.
            let ip = service.load_balancer_ingress.iter().find_map(|(ip, _)| ip.clone());
            let host = ip.or_else(|| service.load_balancer_ingress.iter().find_map(|(_, hostname)| hostname.clone()));
            match host {
                None => EndpointState::Pending("waiting for the LoadBalancer to get an address".into()),
                Some(host) => parse(&host, DEFAULT_API_SERVER_PORT, EndpointSource::LoadBalancer),
            }
        }
        ServiceType::NodePort => {
            let Some(port) = service.node_port else {
                return EndpointState::Pending("waiting for a node port to be allocated".into());
            };
            let mut ready: Vec<&ObservedNode> = nodes.iter().filter(|n| n.ready).collect();
            ready.sort_by(|a, b| a.name.cmp(&b.name));
            let address = ["InternalIP", "ExternalIP"].iter().find_map(|wanted| {
                ready
                    .iter()
                    .find_map(|node| node.addresses.iter().find(|(kind, _)| kind == wanted).map(|(_, a)| a.clone()))
            });
            match address {
                None => EndpointState::Pending("no ready node with an InternalIP or ExternalIP".into()),
                Some(address) => parse(&address, port, EndpointSource::NodePort),
            }
        }
        ServiceType::ClusterIP => EndpointState::Invalid(
            "spec.apiServer.endpoint is required with service type ClusterIP: nodes outside the service cluster cannot reach a ClusterIP".into(),
        ),
    }
}

fn parse(host: &str, port: u16, source: EndpointSource) -> EndpointState {
    let value = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match Endpoint::parse("endpoint", &value) {
        Ok(endpoint) => EndpointState::Ready { endpoint, source },
        Err(e) => EndpointState::Invalid(format!("observed address {value:?}: {}", e.reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(service_type: ServiceType, endpoint: Option<&str>) -> TenantControlPlaneSpec {
        let mut manifest = crate::api::TenantControlPlane::from_yaml(include_str!(
            "../../../examples/tenant-a.yaml"
        ))
        .unwrap();
        manifest.spec.api_server.endpoint = endpoint.map(String::from);
        manifest.spec.api_server.service.type_ = service_type;
        manifest.spec
    }

    fn node(name: &str, ready: bool, addresses: &[(&str, &str)]) -> ObservedNode {
        ObservedNode {
            name: name.into(),
            ready,
            addresses: addresses
                .iter()
                .map(|(k, a)| (k.to_string(), a.to_string()))
                .collect(),
        }
    }

    #[test]
    fn an_explicit_endpoint_wins() {
        let state = resolve_endpoint(
            &spec(ServiceType::LoadBalancer, Some("198.51.100.1:6443")),
            None,
            &[],
        );
        assert!(
            matches!(state, EndpointState::Ready { ref endpoint, source: EndpointSource::Explicit } if endpoint.to_string() == "198.51.100.1:6443")
        );
        let bad = resolve_endpoint(
            &spec(ServiceType::LoadBalancer, Some("bad host")),
            None,
            &[],
        );
        assert!(
            matches!(bad, EndpointState::Invalid(ref m) if m.starts_with("spec.apiServer.endpoint \"bad host\""))
        );
    }

    #[test]
    fn a_load_balancer_is_pending_until_it_has_an_address_and_prefers_ips() {
        let spec = spec(ServiceType::LoadBalancer, None);
        assert_eq!(
            resolve_endpoint(&spec, None, &[]),
            EndpointState::Pending("the kube-apiserver Service does not exist yet".into())
        );
        let pending = ObservedService::default();
        assert!(matches!(
            resolve_endpoint(&spec, Some(&pending), &[]),
            EndpointState::Pending(_)
        ));
        let assigned = ObservedService {
            load_balancer_ingress: vec![
                (None, Some("lb.example.com".into())),
                (Some("203.0.113.7".into()), None),
            ],
            node_port: None,
            konnectivity_node_port: None,
        };
        let state = resolve_endpoint(&spec, Some(&assigned), &[]);
        assert!(
            matches!(state, EndpointState::Ready { ref endpoint, source: EndpointSource::LoadBalancer } if endpoint.to_string() == "203.0.113.7:6443")
        );
        let hostname_only = ObservedService {
            load_balancer_ingress: vec![(None, Some("lb.example.com".into()))],
            node_port: None,
            konnectivity_node_port: None,
        };
        let state = resolve_endpoint(&spec, Some(&hostname_only), &[]);
        assert!(
            matches!(state, EndpointState::Ready { ref endpoint, .. } if endpoint.to_string() == "lb.example.com:6443")
        );
    }

    #[test]
    fn a_node_port_uses_a_ready_nodes_address_and_the_node_port() {
        let spec = spec(ServiceType::NodePort, None);
        let service = ObservedService {
            load_balancer_ingress: vec![],
            node_port: Some(31443),
            konnectivity_node_port: None,
        };
        let nodes = [
            node("c", true, &[("InternalIP", "10.0.0.3")]),
            node("a", false, &[("InternalIP", "10.0.0.1")]),
            node("b", true, &[("Hostname", "b"), ("InternalIP", "10.0.0.2")]),
        ];
        let state = resolve_endpoint(&spec, Some(&service), &nodes);
        assert!(
            matches!(state, EndpointState::Ready { ref endpoint, source: EndpointSource::NodePort } if endpoint.to_string() == "10.0.0.2:31443")
        );
        let no_port = ObservedService::default();
        assert!(matches!(
            resolve_endpoint(&spec, Some(&no_port), &nodes),
            EndpointState::Pending(_)
        ));
        assert!(matches!(
            resolve_endpoint(&spec, Some(&service), &[nodes[1].clone()]),
            EndpointState::Pending(_)
        ));
    }

    #[test]
    fn cluster_ip_without_an_endpoint_is_invalid() {
        let state = resolve_endpoint(
            &spec(ServiceType::ClusterIP, None),
            Some(&ObservedService::default()),
            &[],
        );
        assert!(matches!(state, EndpointState::Invalid(ref m) if m.contains("ClusterIP")));
    }
}
