//! The checks and conversions of single spec fields, each error naming its
//! field: what `resolve` is made of.

use std::net::IpAddr;

use gantry_pki::{Endpoint, KeyAlgorithm, PkiSpec, San};
use gantry_renderer::{NetworkingInput, Placement, Resources, ServiceType};
use ipnet::IpNet;
use time::Duration;

use super::{NODE_PORT_RANGE, SpecError, invalid};
use crate::api::{self, ResourcesSpec, TenantControlPlaneSpec};
use crate::spec_rules;

/// The endpoint's address, which becomes kube-apiserver's
/// `--advertise-address`, and a port the non-root apiserver can listen on.
pub(super) fn advertise_address(endpoint: &Endpoint) -> Result<IpAddr, SpecError> {
    let endpoint_value = endpoint.to_string();
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

/// `spec.apiServer.certSANs`: each an IP address or a DNS name.
pub(super) fn cert_sans(spec: &TenantControlPlaneSpec) -> Result<Vec<San>, SpecError> {
    spec.api_server
        .cert_sans
        .iter()
        .enumerate()
        .map(|(i, san)| {
            San::parse("san", san)
                .map_err(|e| invalid(format!("spec.apiServer.certSANs[{i}]"), san, e.reason))
        })
        .collect()
}

/// The largest backend quota etcd advises, and the default's cap.
const MAX_DEFAULT_QUOTA: u64 = 8 << 30;

/// `spec.etcd.storage.quota` in bytes: as given (more than zero, at most the
/// volume), or 80% of the volume up to 8 GiB, so that etcd refuses writes
/// before its disk fills. Call after [`etcd_members`] checked the size.
pub(super) fn etcd_quota_bytes(spec: &TenantControlPlaneSpec) -> Result<u64, SpecError> {
    let storage = &spec.etcd.storage;
    let size = quantity_bytes(&storage.size).unwrap_or(0);
    let Some(quota) = &storage.quota else {
        return Ok((size / 5 * 4).min(MAX_DEFAULT_QUOTA));
    };
    validate_quantity("spec.etcd.storage.quota", quota)?;
    match quantity_bytes(quota) {
        Some(bytes) if bytes > 0 && bytes <= size => Ok(bytes),
        Some(bytes) if bytes > 0 => Err(invalid(
            "spec.etcd.storage.quota",
            quota,
            format!("must be at most spec.etcd.storage.size ({})", storage.size),
        )),
        _ => Err(invalid(
            "spec.etcd.storage.quota",
            quota,
            "must be at least one byte",
        )),
    }
}

/// The whole bytes of a quantity [`validate_quantity`] accepted.
fn quantity_bytes(value: &str) -> Option<u64> {
    const MULTIPLIERS: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    let (number, multiplier) = MULTIPLIERS
        .iter()
        .find_map(|(suffix, m)| value.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((value, 1.0));
    let bytes = number.parse::<f64>().ok()? * multiplier;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `spec.etcd`: an odd member count and a storage size above zero.
pub(super) fn etcd_members(spec: &TenantControlPlaneSpec) -> Result<u32, SpecError> {
    let replicas = spec.etcd.replicas;
    if ![1, 3, 5].contains(&replicas) {
        return Err(invalid(
            "spec.etcd.replicas",
            replicas,
            "must be 1, 3 or 5: an even member count adds no fault tolerance",
        ));
    }
    let size = &spec.etcd.storage.size;
    validate_quantity("spec.etcd.storage.size", size)?;
    if size
        .trim_start_matches(['0', '.'])
        .chars()
        .next()
        .is_none_or(|c| !c.is_ascii_digit())
    {
        return Err(invalid(
            "spec.etcd.storage.size",
            size,
            "must be more than zero",
        ));
    }
    Ok(replicas as u32)
}

/// The Service and pod CIDRs: apart from each other, and neither holding the
/// endpoint.
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
            pod_cidr,
            format!("overlaps spec.networking.serviceCIDR {service_cidr}"),
        ));
    }
    spec_rules::endpoint_in_networks(
        "spec.apiServer.endpoint",
        &endpoint.to_string(),
        advertise_address,
        &service_cidr,
        &pod_cidr,
    )?;
    Ok((service_cidr, pod_cidr))
}

/// The spec's durations.
pub(super) struct Durations {
    pub leaf_validity: Duration,
    pub renew_before: Duration,
    pub token_ttl: Duration,
}

pub(super) fn durations(spec: &TenantControlPlaneSpec) -> Result<Durations, SpecError> {
    Ok(Durations {
        leaf_validity: parse_duration(
            "spec.pki.certificateValidity",
            &spec.pki.certificate_validity,
        )?,
        renew_before: parse_duration("spec.pki.renewBefore", &spec.pki.renew_before)?,
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
    pki.validate().map_err(|e| {
        let field = match e.field {
            "dns-domain" => "spec.networking.dnsDomain",
            "service-cidr" => "spec.networking.serviceCIDR",
            "renew-before" => "spec.pki.renewBefore",
            "leaf-validity" => "spec.pki.certificateValidity",
            other => other,
        };
        invalid(field, &e.value, e.reason)
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

/// A component's resources: the spec's (every quantity checked), else
/// requests of `default` (cpu, memory).
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
            validate_quantity(&format!("{field}.{kind}.{resource}"), quantity)?;
        }
    }
    Ok(Resources {
        requests: r.requests.clone(),
        limits: r.limits.clone(),
    })
}

/// Why kube-apiserver would refuse `ip` as its `--advertise-address` (its
/// endpoint reconciler rejects these ranges and the process exits), if it
/// would.
fn unadvertisable(ip: IpAddr) -> Option<&'static str> {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if ip.is_unspecified() {
        Some("must be a specific address, not 0.0.0.0 or ::")
    } else if ip.is_loopback() {
        Some("must not be a loopback address: kube-apiserver refuses to advertise it")
    } else if link_local {
        Some(
            "must not be link-local (169.254.0.0/16, fe80::/10): kube-apiserver refuses to advertise it",
        )
    } else if ip.is_multicast() {
        Some("must not be a multicast address")
    } else {
        None
    }
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
    for key in spec.api_server.service.annotations.keys() {
        spec_rules::qualified_key("spec.apiServer.service.annotations", key)?;
    }
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

/// A Kubernetes quantity such as `10Gi`, `500m`, `1.5`, `2e3`.
pub(super) fn validate_quantity(field: &str, value: &str) -> Result<(), SpecError> {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|s| value.strip_suffix(s))
        .or_else(|| value.strip_suffix('P'))
        .or_else(|| value.strip_suffix('E'))
        .unwrap_or(value);
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (number, None),
    };
    let decimal_ok = |s: &str| {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        !(int.is_empty() && frac.is_empty())
            && int.chars().all(|c| c.is_ascii_digit())
            && frac.chars().all(|c| c.is_ascii_digit())
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    });
    if value.is_empty() || !decimal_ok(mantissa) || !exponent_ok {
        return Err(invalid(
            field,
            value,
            "is not a Kubernetes quantity such as 10Gi or 500m",
        ));
    }
    Ok(())
}
