//! The checks and conversions of single spec fields, each error naming its
//! field: what `resolve` is made of.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use gantry_pki::{Endpoint, KeyAlgorithm, PkiSpec, San};
use gantry_renderer::{KonnectivityInput, NetworkingInput, Placement, Resources, ServiceType};
use ipnet::IpNet;
use time::Duration;

use super::quantity::{self, QuantityError};
use super::{NODE_PORT_RANGE, SpecError, invalid};
use crate::api::{self, ResourcesSpec, TenantControlPlaneSpec};
use crate::spec_rules;

/// The endpoint as the spec writes it when the spec gives it, so an error
/// quotes the user's text (`[2001:db8:0::10]`, not `[2001:db8::10]`); else
/// as the controller observed it.
fn endpoint_text(spec: &TenantControlPlaneSpec, endpoint: &Endpoint) -> String {
    spec.api_server
        .endpoint
        .clone()
        .filter(|text| Endpoint::parse("endpoint", text).ok().as_ref() == Some(endpoint))
        .unwrap_or_else(|| endpoint.to_string())
}

/// The endpoint's address, which becomes kube-apiserver's
/// `--advertise-address`, and a port the non-root apiserver can listen on.
pub(super) fn advertise_address(
    spec: &TenantControlPlaneSpec,
    endpoint: &Endpoint,
) -> Result<IpAddr, SpecError> {
    let endpoint_value = endpoint_text(spec, endpoint);
    let advertise_address = endpoint.ip().ok_or_else(|| {
        invalid(
            "spec.apiServer.endpoint",
            &endpoint_value,
            "must be an IP address: it becomes kube-apiserver's --advertise-address (put DNS names in certSANs)",
        )
    })?;
    if let Some(reason) = unadvertisable(advertise_address) {
        return Err(invalid("spec.apiServer.endpoint", &endpoint_value, reason));
    }
    if endpoint.port < 1024 {
        return Err(invalid(
            "spec.apiServer.endpoint",
            &endpoint_value,
            "port must be 1024 or higher: the apiserver runs as non-root and listens on the port nodes use",
        ));
    }
    Ok(advertise_address)
}

/// How the apiserver's Service is exposed.
pub(super) struct Exposure {
    pub service_type: ServiceType,
    pub node_port: Option<u16>,
    pub load_balancer_ip: Option<IpAddr>,
}

/// The Service type, its node port (NodePort only, equal to the endpoint's
/// port) and its load-balancer IP (LoadBalancer only).
pub(super) fn service_exposure(
    spec: &TenantControlPlaneSpec,
    endpoint_port: u16,
) -> Result<Exposure, SpecError> {
    let service = &spec.api_server.service;
    let service_type = renderer_service_type(service.type_);
    let node_port = resolve_node_port(service.node_port, service_type, endpoint_port)?;
    let load_balancer_ip = match &service.load_balancer_ip {
        None => None,
        Some(ip) if service_type != ServiceType::LoadBalancer => {
            return Err(invalid(
                "spec.apiServer.service.loadBalancerIP",
                ip,
                "only applies to service type LoadBalancer",
            ));
        }
        Some(ip) => Some(parse_load_balancer_ip(ip)?),
    };
    Ok(Exposure {
        service_type,
        node_port,
        load_balancer_ip,
    })
}

/// `spec.konnectivity`: the tunnel, or `None` when it is off. Where agents
/// connect: the explicit address, else the endpoint's host on the
/// Service's tunnel port (8132) or, for NodePort, on the tunnel's node port
/// (unknown until allocated unless the spec fixes it).
pub(super) fn konnectivity(
    spec: &TenantControlPlaneSpec,
    endpoint: &Endpoint,
    exposure: &Exposure,
    gantry_image: &str,
) -> Result<Option<KonnectivityInput>, SpecError> {
    let tunnel = &spec.konnectivity;
    if !tunnel.enabled {
        return Ok(None);
    }
    const NODE_PORT: &str = "spec.konnectivity.nodePort";
    let node_port = match tunnel.node_port {
        None => None,
        Some(port) if exposure.service_type != ServiceType::NodePort => {
            return Err(invalid(
                NODE_PORT,
                port,
                "only applies to service type NodePort",
            ));
        }
        Some(port) => {
            let port = u16::try_from(port)
                .ok()
                .filter(|p| NODE_PORT_RANGE.contains(p))
                .ok_or_else(|| invalid(NODE_PORT, port, "must be within 30000-32767"))?;
            if Some(port) == exposure.node_port {
                return Err(invalid(
                    NODE_PORT,
                    port,
                    "must differ from the apiserver's node port",
                ));
            }
            Some(port)
        }
    };
    // The name agents check the server's certificate for: the endpoint's
    // host, without brackets.
    let server_name = match &endpoint.host {
        San::Ip(ip) => ip.to_string(),
        San::Dns(name) => name.clone(),
    };
    let agent_address = match &tunnel.address {
        Some(address) => {
            let parsed = Endpoint::parse("spec.konnectivity.address", address)
                .map_err(|e| invalid("spec.konnectivity.address", address, e.reason))?;
            if !address.ends_with(&format!(":{}", parsed.port)) {
                return Err(invalid(
                    "spec.konnectivity.address",
                    address,
                    "must be HOST:PORT",
                ));
            }
            Some(parsed.to_string())
        }
        None => match exposure.service_type {
            ServiceType::NodePort => node_port.map(|port| endpoint.with_port(port)),
            _ => Some(endpoint.with_port(gantry_renderer::KONNECTIVITY_PORT)),
        },
    };
    Ok(Some(KonnectivityInput {
        image: gantry_image.to_string(),
        agent_address,
        server_name,
        node_port,
    }))
}

/// `spec.kubeProxy.conntrackMaxPerCore`: 0 (leave the node's
/// `nf_conntrack_max` alone) up to 1048576, as the CRD allows.
pub(super) fn kube_proxy_conntrack(
    spec: &TenantControlPlaneSpec,
) -> Result<Option<u32>, SpecError> {
    const FIELD: &str = "spec.kubeProxy.conntrackMaxPerCore";
    spec.kube_proxy
        .conntrack_max_per_core
        .map(|value| {
            u32::try_from(value)
                .ok()
                .filter(|v| *v <= 1 << 20)
                .ok_or_else(|| invalid(FIELD, value, "must be within 0-1048576"))
        })
        .transpose()
}

/// `spec.apiServer.certSANs`: at most [`gantry_pki::MAX_EXTRA_SANS`], each
/// an IP address that names a host or a DNS name.
pub(super) fn cert_sans(spec: &TenantControlPlaneSpec) -> Result<Vec<San>, SpecError> {
    const MAX: usize = gantry_pki::MAX_EXTRA_SANS;
    let sans = &spec.api_server.cert_sans;
    if let Some(extra) = sans.get(MAX) {
        return Err(invalid(
            format!("spec.apiServer.certSANs[{MAX}]"),
            extra,
            format!(
                "is one more than the {MAX} names and addresses certSANs may hold (it holds {}): \
                 the certificate goes out in every TLS handshake",
                sans.len()
            ),
        ));
    }
    sans.iter()
        .enumerate()
        .map(|(i, san)| {
            San::parse("san", san)
                .map_err(|e| invalid(format!("spec.apiServer.certSANs[{i}]"), san, e.reason))
        })
        .collect()
}

/// The largest backend quota etcd advises, and the default's cap.
const MAX_DEFAULT_QUOTA: u64 = 8 << 30;

/// `spec.etcd.storage.quota` in bytes: as given (at least
/// [`api::MIN_ETCD_QUOTA`], at most the volume), or 80% of the volume up to
/// 8 GiB, so that etcd refuses writes before its disk fills.
pub(super) fn etcd_quota_bytes(spec: &TenantControlPlaneSpec) -> Result<u64, SpecError> {
    const FIELD: &str = "spec.etcd.storage.quota";
    let storage = &spec.etcd.storage;
    let size = etcd_storage_bytes(spec)?;
    let Some(quota) = &storage.quota else {
        return Ok((size / 5 * 4).min(MAX_DEFAULT_QUOTA));
    };
    let bytes = match quantity::whole_units(quota) {
        Ok(bytes) => bytes,
        Err(QuantityError::TooLarge) => u128::MAX,
        Err(QuantityError::Syntax) => return Err(not_a_quantity(FIELD, quota)),
    };
    if bytes < bytes_of(api::MIN_ETCD_QUOTA) {
        return Err(invalid(
            FIELD,
            quota,
            format!(
                "must be at least {}: etcd refuses every write, the apiserver's too, once its database reaches the quota",
                api::MIN_ETCD_QUOTA
            ),
        ));
    }
    u64::try_from(bytes)
        .ok()
        .filter(|bytes| *bytes <= size)
        .ok_or_else(|| {
            invalid(
                FIELD,
                quota,
                format!("must be at most spec.etcd.storage.size ({})", storage.size),
            )
        })
}

/// The bytes of one of the API's own bounds (`1Gi`).
fn bytes_of(bound: &str) -> u128 {
    quantity::whole_units(bound).expect("the API's bounds are quantities")
}

fn not_a_quantity(field: &str, value: &str) -> SpecError {
    invalid(
        field,
        value,
        "is not a Kubernetes quantity such as 10Gi or 500m",
    )
}

/// `spec.etcd.storage.size` in bytes: from [`api::MIN_ETCD_STORAGE`] to
/// [`api::MAX_ETCD_STORAGE`] (the API says why), so that `1m`, `4` or
/// `1e100` never become a quota of 0 bytes.
pub(super) fn etcd_storage_bytes(spec: &TenantControlPlaneSpec) -> Result<u64, SpecError> {
    const FIELD: &str = "spec.etcd.storage.size";
    let size = &spec.etcd.storage.size;
    let bytes = match quantity::whole_units(size) {
        Ok(bytes) => bytes,
        Err(QuantityError::TooLarge) => u128::MAX,
        Err(QuantityError::Syntax) => return Err(not_a_quantity(FIELD, size)),
    };
    let (min, max) = (api::MIN_ETCD_STORAGE, api::MAX_ETCD_STORAGE);
    if bytes == 0 {
        return Err(invalid(FIELD, size, "must be more than zero"));
    }
    if bytes < bytes_of(min) {
        return Err(invalid(
            FIELD,
            size,
            format!(
                "must be at least {min}: etcd's write-ahead log alone takes up to 384 MB (six 64 MB segments)"
            ),
        ));
    }
    u64::try_from(bytes)
        .ok()
        .filter(|bytes| u128::from(*bytes) <= bytes_of(max))
        .ok_or_else(|| {
            invalid(
                FIELD,
                size,
                format!(
                    "must be at most {max}: etcd advises a database of at most 8Gi, and a bigger volume only buys IOPS"
                ),
            )
        })
}

/// `spec.etcd`: an odd member count, a storage size within bounds and a
/// storage class that can be a StorageClass's name.
pub(super) fn etcd_members(spec: &TenantControlPlaneSpec) -> Result<u32, SpecError> {
    let replicas = spec.etcd.replicas;
    if ![1, 3, 5].contains(&replicas) {
        return Err(invalid(
            "spec.etcd.replicas",
            replicas,
            "must be 1, 3 or 5: an even member count adds no fault tolerance",
        ));
    }
    etcd_storage_bytes(spec)?;
    if let Some(class) = &spec.etcd.storage.storage_class_name {
        spec_rules::dns_subdomain("spec.etcd.storage.storageClassName", class)?;
    }
    Ok(replicas as u32)
}

/// The Service and pod CIDRs: apart from each other, neither holding the
/// endpoint, and the pod CIDR big enough for nodes' ranges.
pub(super) fn networks(
    spec: &TenantControlPlaneSpec,
    endpoint: &Endpoint,
    advertise_address: IpAddr,
) -> Result<(IpNet, IpNet), SpecError> {
    let service_cidr = parse_cidr("spec.networking.serviceCIDR", &spec.networking.service_cidr)?;
    let pod_cidr = parse_cidr("spec.networking.podCIDR", &spec.networking.pod_cidr)?;
    if service_cidr.contains(&pod_cidr.network()) || pod_cidr.contains(&service_cidr.network()) {
        return Err(invalid(
            "spec.networking.podCIDR",
            &spec.networking.pod_cidr,
            format!(
                "overlaps spec.networking.serviceCIDR {}",
                spec.networking.service_cidr
            ),
        ));
    }
    pod_cidr_holds_node_ranges(spec, &pod_cidr)?;
    spec_rules::endpoint_in_networks(
        "spec.apiServer.endpoint",
        &endpoint_text(spec, endpoint),
        advertise_address,
        &service_cidr,
        &pod_cidr,
    )?;
    Ok((service_cidr, pod_cidr))
}

/// kube-controller-manager's default `--node-cidr-mask-size`: each node gets
/// a /24 (IPv4) or a /64 (IPv6) of the pod CIDR.
const DEFAULT_NODE_MASK_V4: u8 = 24;
const DEFAULT_NODE_MASK_V6: u8 = 64;
/// kube-controller-manager keeps one bit per node range of an IPv6 pod
/// CIDR and refuses more than 2^16 of them (`clusterSubnetMaxDiff`): with
/// /64 node ranges, an IPv6 pod CIDR is /48 or smaller.
const MAX_NODE_MASK_DIFF_V6: u8 = 16;

/// The pod CIDR holds at least one node's range, whose size is
/// kube-controller-manager's `--node-cidr-mask-size` (gantry leaves the
/// default, /24 or /64, unless `controllerManager.extraArgs` sets it): a
/// smaller pod CIDR (a /28) gives no node a range, and no pod starts. At
/// least one range, not two: a single-node tenant (the end-to-end tests'
/// /24) is a real use, and every further node simply waits for space.
fn pod_cidr_holds_node_ranges(
    spec: &TenantControlPlaneSpec,
    pod_cidr: &IpNet,
) -> Result<(), SpecError> {
    let node_mask = node_cidr_mask_size(spec, pod_cidr)?;
    let prefix = pod_cidr.prefix_len();
    let problem = if prefix > node_mask {
        Some(format!(
            "is smaller than one node's range (/{node_mask}, kube-controller-manager's --node-cidr-mask-size): \
             at most /{node_mask}, and bigger for more than one node"
        ))
    } else if matches!(pod_cidr, IpNet::V6(_)) && node_mask - prefix > MAX_NODE_MASK_DIFF_V6 {
        Some(format!(
            "is too big for kube-controller-manager: it splits an IPv6 pod CIDR into at most 2^{MAX_NODE_MASK_DIFF_V6} \
             node ranges (/{node_mask}), so at least /{}",
            node_mask - MAX_NODE_MASK_DIFF_V6
        ))
    } else {
        None
    };
    match problem {
        Some(reason) => Err(invalid(
            "spec.networking.podCIDR",
            &spec.networking.pod_cidr,
            reason,
        )),
        None => Ok(()),
    }
}

/// The node range size of the pod CIDR's family: `node-cidr-mask-size`,
/// else `node-cidr-mask-size-ipv4` or `-ipv6`, in the controller-manager's
/// `extraArgs`, else the default (the order kube-controller-manager reads
/// them in).
fn node_cidr_mask_size(spec: &TenantControlPlaneSpec, pod_cidr: &IpNet) -> Result<u8, SpecError> {
    let (family_flag, default) = match pod_cidr {
        IpNet::V4(_) => ("node-cidr-mask-size-ipv4", DEFAULT_NODE_MASK_V4),
        IpNet::V6(_) => ("node-cidr-mask-size-ipv6", DEFAULT_NODE_MASK_V6),
    };
    let args = &spec.controller_manager.extra_args;
    let Some((flag, value)) = ["node-cidr-mask-size", family_flag]
        .into_iter()
        .find_map(|flag| args.get(flag).map(|value| (flag, value)))
    else {
        return Ok(default);
    };
    value
        .parse::<u8>()
        .ok()
        .filter(|mask| *mask <= pod_cidr.max_prefix_len())
        .ok_or_else(|| {
            invalid(
                format!("spec.controllerManager.extraArgs.{flag}"),
                value,
                format!("is not a prefix length (0-{})", pod_cidr.max_prefix_len()),
            )
        })
}

/// What the operator or `gantry render` was told of the service cluster:
/// its CIDRs go under `except` of the masters' egress NetworkPolicy
/// ([`gantry_pki::service_cluster_cidr_problem`]).
pub(super) fn check_service_cluster(
    service_cluster: &gantry_renderer::ServiceCluster,
) -> Result<(), SpecError> {
    for cidr in &service_cluster.cidrs {
        if let Some(reason) = gantry_pki::service_cluster_cidr_problem(cidr) {
            return Err(invalid("--service-cluster-cidrs", cidr, reason));
        }
    }
    Ok(())
}

/// The spec's durations.
pub(super) struct Durations {
    pub leaf_validity: Duration,
    pub renew_before: Duration,
    pub token_ttl: Duration,
}

/// The spec's durations; renewal starts within the leaves' validity.
/// Errors quote the durations as written (`720h`), never as
/// [`Duration`]'s `Display` would (`30d`).
pub(super) fn durations(spec: &TenantControlPlaneSpec) -> Result<Durations, SpecError> {
    let pki = &spec.pki;
    let leaf_validity = parse_duration("spec.pki.certificateValidity", &pki.certificate_validity)?;
    let renew_before = parse_duration("spec.pki.renewBefore", &pki.renew_before)?;
    if renew_before >= leaf_validity {
        return Err(invalid(
            "spec.pki.renewBefore",
            &pki.renew_before,
            format!(
                "must be shorter than spec.pki.certificateValidity ({})",
                pki.certificate_validity
            ),
        ));
    }
    Ok(Durations {
        leaf_validity,
        renew_before,
        token_ttl: parse_duration("spec.join.tokenTTL", &spec.join.token_ttl)?,
    })
}

/// What the PKI is issued from. The PKI crate names its fields after CLI
/// flags; its errors are mapped back to spec paths here.
pub(super) fn pki_spec(
    name: &str,
    endpoint: &Endpoint,
    spec: &TenantControlPlaneSpec,
    extra_sans: Vec<San>,
    networks: &NetworkingInput,
    durations: &Durations,
) -> Result<PkiSpec, SpecError> {
    let mut pki = PkiSpec::new(name, endpoint.clone())
        .map_err(|e| invalid("metadata.name", name, e.reason))?;
    pki.namespace = gantry_pki::default_namespace(name);
    pki.extra_sans = extra_sans;
    pki.service_cidr = networks.service_cidr;
    pki.dns_domain = networks.dns_domain.clone();
    pki.service_cluster_domain = networks.service_cluster_domain.clone();
    pki.algorithm = KeyAlgorithm::from(spec.pki.algorithm);
    pki.leaf_validity = durations.leaf_validity;
    pki.renew_before = durations.renew_before;
    // The spec's own text, not the PKI's rendering of what it parsed (a
    // duration's `Display` says `30d` for `720h`).
    pki.validate().map_err(|e| {
        let (field, value) = match e.field {
            "dns-domain" => ("spec.networking.dnsDomain", &spec.networking.dns_domain),
            "service-cidr" => ("spec.networking.serviceCIDR", &spec.networking.service_cidr),
            "renew-before" => ("spec.pki.renewBefore", &spec.pki.renew_before),
            "leaf-validity" => (
                "spec.pki.certificateValidity",
                &spec.pki.certificate_validity,
            ),
            other => (other, &e.value),
        };
        invalid(field, value, e.reason)
    })?;
    Ok(pki)
}

/// Where the control-plane pods may run (checked by [`check_placement`]).
pub(super) fn placement(spec: &TenantControlPlaneSpec) -> Placement {
    Placement {
        node_selector: spec.node_selector.clone(),
        tolerations: spec
            .tolerations
            .iter()
            .map(|t| serde_json::to_value(t).expect("tolerations serialise"))
            .collect(),
        priority_class_name: spec.priority_class_name.clone(),
    }
}

/// A component's replica count: 1 to 10.
pub(super) fn replicas(field: &str, value: i32) -> Result<u32, SpecError> {
    u32::try_from(value)
        .ok()
        .filter(|r| (1..=10).contains(r))
        .ok_or_else(|| invalid(field, value, "must be between 1 and 10"))
}

/// A component's resources: the spec's, else requests of `default` (cpu,
/// memory). The spec's hold only [`api::RESOURCE_NAMES`] (anything else, a
/// typo such as `memroy` or a `gpu`, would be silently useless or refused
/// by the API server when the pod is made), each a quantity, and no limit
/// below its request (the API server refuses such a pod).
pub(super) fn resources(
    field: &str,
    spec: &Option<ResourcesSpec>,
    default: (&str, &str),
) -> Result<Resources, SpecError> {
    let Some(r) = spec else {
        return Ok(Resources::requests(default.0, default.1));
    };
    for (kind, map) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (resource, quantity) in map {
            if !api::RESOURCE_NAMES.contains(&resource.as_str()) {
                return Err(invalid(
                    format!("{field}.{kind}"),
                    resource,
                    format!(
                        "is not a resource gantry sets: use {}",
                        api::RESOURCE_NAMES.join(", ")
                    ),
                ));
            }
            validate_quantity(&format!("{field}.{kind}.{resource}"), quantity)?;
        }
    }
    for (resource, limit) in &r.limits {
        let Some(request) = r.requests.get(resource) else {
            continue;
        };
        if let (Ok(limit_nanos), Ok(request_nanos)) =
            (quantity::nanos(limit), quantity::nanos(request))
            && limit_nanos < request_nanos
        {
            return Err(invalid(
                format!("{field}.limits.{resource}"),
                limit,
                format!("is below {field}.requests.{resource} ({request})"),
            ));
        }
    }
    Ok(Resources {
        requests: r.requests.clone(),
        limits: r.limits.clone(),
    })
}

/// Why kube-apiserver would refuse `ip` as its `--advertise-address` (its
/// endpoint reconciler rejects these ranges and the process exits), if it
/// would: what names no host at all ([`gantry_pki::unusable_address`]:
/// unspecified, 0.0.0.0/8, 240.0.0.0/4 and broadcast, multicast, IPv4-mapped
/// IPv6), then loopback and link-local addresses.
fn unadvertisable(ip: IpAddr) -> Option<&'static str> {
    if let Some(reason) = gantry_pki::unusable_address(ip) {
        return Some(reason);
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if ip.is_loopback() {
        Some("must not be a loopback address: kube-apiserver refuses to advertise it")
    } else if link_local {
        Some(
            "must not be link-local (169.254.0.0/16, fe80::/10): kube-apiserver refuses to advertise it",
        )
    } else {
        None
    }
}

/// The manifest's labels and annotations, which the API server would
/// refuse on `kubectl apply` (and `gantry render` would otherwise accept):
/// keys `[prefix/]name`, label values of at most 63 characters, annotations
/// within Kubernetes' total size.
pub(super) fn check_metadata(metadata: &ObjectMeta) -> Result<(), SpecError> {
    for (key, value) in metadata.labels.iter().flatten() {
        spec_rules::qualified_key("metadata.labels", key)?;
        spec_rules::label_value(&format!("metadata.labels.{key}"), value)?;
    }
    if let Some(annotations) = &metadata.annotations {
        for key in annotations.keys() {
            spec_rules::qualified_key("metadata.annotations", key)?;
        }
        spec_rules::annotations_size("metadata.annotations", annotations)?;
    }
    Ok(())
}

/// Node selector, tolerations, priority class and the Service's
/// annotations: values the API server would refuse when the pods or the
/// Service are created, refused here with the field named.
pub(super) fn check_placement(spec: &TenantControlPlaneSpec) -> Result<(), SpecError> {
    for (key, value) in &spec.node_selector {
        spec_rules::qualified_key("spec.nodeSelector", key)?;
        spec_rules::label_value(&format!("spec.nodeSelector.{key}"), value)?;
    }
    for (i, toleration) in spec.tolerations.iter().enumerate() {
        spec_rules::toleration(&format!("spec.tolerations[{i}]"), toleration)?;
    }
    if let Some(class) = &spec.priority_class_name {
        spec_rules::dns_subdomain("spec.priorityClassName", class)?;
    }
    let annotations = &spec.api_server.service.annotations;
    for key in annotations.keys() {
        spec_rules::qualified_key("spec.apiServer.service.annotations", key)?;
    }
    spec_rules::annotations_size("spec.apiServer.service.annotations", annotations)?;
    Ok(())
}

pub(super) fn parse_load_balancer_ip(ip: &str) -> Result<IpAddr, SpecError> {
    ip.parse().map_err(|_| {
        invalid(
            "spec.apiServer.service.loadBalancerIP",
            ip,
            "is not an IP address",
        )
    })
}

fn resolve_node_port(
    node_port: Option<i32>,
    service_type: ServiceType,
    endpoint_port: u16,
) -> Result<Option<u16>, SpecError> {
    const FIELD: &str = "spec.apiServer.service.nodePort";
    match (service_type, node_port) {
        (ServiceType::NodePort, port) => {
            let port = port.unwrap_or(i32::from(endpoint_port));
            let in_range = u16::try_from(port)
                .ok()
                .filter(|p| NODE_PORT_RANGE.contains(p));
            let port16 =
                in_range.ok_or_else(|| invalid(FIELD, port, "must be within 30000-32767"))?;
            if port16 != endpoint_port {
                return Err(invalid(
                    FIELD,
                    port,
                    format!(
                        "must equal the endpoint's port {endpoint_port}: nodes reach the apiserver on the node port"
                    ),
                ));
            }
            Ok(Some(port16))
        }
        (_, Some(port)) => Err(invalid(
            FIELD,
            port,
            "only applies to service type NodePort",
        )),
        (_, None) => Ok(None),
    }
}

pub(super) fn parse_cidr(field: &str, value: &str) -> Result<IpNet, SpecError> {
    gantry_pki::parse_cidr("cidr", value).map_err(|e| invalid(field, value, e.reason))
}

/// The renderer's name for a spec's Service type.
pub(super) fn renderer_service_type(service_type: api::ServiceType) -> ServiceType {
    match service_type {
        api::ServiceType::LoadBalancer => ServiceType::LoadBalancer,
        api::ServiceType::NodePort => ServiceType::NodePort,
        api::ServiceType::ClusterIP => ServiceType::ClusterIP,
    }
}

/// A Go-style duration of hours, minutes and seconds: `24h`, `8760h`, `1h30m`, `90s`.
pub fn parse_duration(field: &str, value: &str) -> Result<Duration, SpecError> {
    let bad = || invalid(field, value, "is not a duration such as 24h, 1h30m or 720h");
    let too_long = || {
        invalid(
            field,
            value,
            format!("is longer than {}h (100 years)", MAX_DURATION.whole_hours()),
        )
    };
    let mut seconds: i64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        match c {
            '0'..='9' => digits.push(c),
            'h' | 'm' | 's' if !digits.is_empty() => {
                let n: i64 = digits.parse().map_err(|_| too_long())?;
                let unit = match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                seconds = n
                    .checked_mul(unit)
                    .and_then(|s| seconds.checked_add(s))
                    .ok_or_else(too_long)?;
                digits.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !digits.is_empty() || seconds <= 0 {
        return Err(bad());
    }
    let total = Duration::seconds(seconds);
    if total > MAX_DURATION {
        return Err(too_long());
    }
    Ok(total)
}

/// The longest duration a spec may give (a token TTL, a certificate's
/// validity): far beyond any sane value, and short enough that `now` plus it
/// is a valid certificate date.
pub const MAX_DURATION: Duration = Duration::days(gantry_pki::MAX_VALIDITY_DAYS);

/// A Kubernetes quantity such as `10Gi`, `500m`, `1.5`, `2e3`, of a size
/// that fits the arithmetic ([`quantity::nanos`]).
pub(super) fn validate_quantity(field: &str, value: &str) -> Result<(), SpecError> {
    match quantity::nanos(value) {
        Ok(_) => Ok(()),
        Err(QuantityError::Syntax) => Err(not_a_quantity(field, value)),
        Err(QuantityError::TooLarge) => Err(invalid(field, value, "is too large for any machine")),
    }
}
