//! validate → resolve: a `TenantControlPlane` spec becomes the renderer's
//! fully resolved [`RenderInput`] and the PKI's [`PkiSpec`]. Pure: every
//! default applied, every value checked, each error naming its field.

use std::net::IpAddr;

use gantry_pki::{BootstrapToken, Endpoint, KeyAlgorithm, PkiSpec, San};
use gantry_renderer::{
    ApiServerInput, ComponentInput, EtcdInput, Images, KubeVersion, NetworkingInput, Placement,
    RenderInput, Resources, ServiceType,
};
use ipnet::IpNet;
use time::{Duration, OffsetDateTime};

use crate::api::{self, ResourcesSpec, TenantControlPlane};
use crate::spec_rules;

/// A spec value that cannot be used, with the field's path in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

fn invalid(
    field: impl Into<String>,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> SpecError {
    SpecError {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Everything a render needs, derived from one manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub input: RenderInput,
    pub pki: PkiSpec,
}

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Resolves `manifest` for `endpoint` (where nodes reach the apiserver: given
/// in the spec, or observed by the controller) with `token`. The token expires
/// at `token_expiration` when given (a re-render keeps it), else at `now`
/// plus `spec.join.tokenTTL`. `service_cluster_domain` is the DNS domain of
/// the service cluster.
pub fn resolve(
    manifest: &TenantControlPlane,
    endpoint: &Endpoint,
    token: BootstrapToken,
    token_expiration: Option<OffsetDateTime>,
    now: OffsetDateTime,
    service_cluster_domain: &str,
) -> Result<Resolved, SpecError> {
    let name = manifest
        .metadata
        .name
        .as_ref()
        .ok_or_else(|| invalid("metadata.name", "", "is required"))?;
    gantry_pki::validate_tenant_name(name).map_err(|e| invalid("metadata.name", name, e.reason))?;
    let spec = &manifest.spec;
    let namespace = gantry_pki::default_namespace(name);

    let version: KubeVersion =
        spec.version
            .parse()
            .map_err(|e: gantry_renderer::VersionError| {
                invalid("spec.version", &spec.version, e.to_string())
            })?;
    spec_rules::image_repository("spec.imageRepository", &spec.image_repository)?;
    check_placement(spec)?;

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

    let service_type = renderer_service_type(spec.api_server.service.type_);
    let node_port = resolve_node_port(
        spec.api_server.service.node_port,
        service_type,
        endpoint.port,
    )?;
    let load_balancer_ip = match &spec.api_server.service.load_balancer_ip {
        None => None,
        Some(_) if service_type != ServiceType::LoadBalancer => {
            return Err(invalid(
                "spec.apiServer.service.loadBalancerIP",
                spec.api_server
                    .service
                    .load_balancer_ip
                    .as_deref()
                    .unwrap_or_default(),
                "only applies to service type LoadBalancer",
            ));
        }
        Some(ip) => Some(parse_load_balancer_ip(ip)?),
    };

    let extra_sans = spec
        .api_server
        .cert_sans
        .iter()
        .enumerate()
        .map(|(i, san)| {
            San::parse("san", san)
                .map_err(|e| invalid(format!("spec.apiServer.certSANs[{i}]"), san, e.reason))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let replicas = |field: &str, value: i32| -> Result<u32, SpecError> {
        u32::try_from(value)
            .ok()
            .filter(|r| (1..=10).contains(r))
            .ok_or_else(|| invalid(field, value, "must be between 1 and 10"))
    };
    let etcd_replicas = spec.etcd.replicas;
    if ![1, 3, 5].contains(&etcd_replicas) {
        return Err(invalid(
            "spec.etcd.replicas",
            etcd_replicas,
            "must be 1, 3 or 5: an even member count adds no fault tolerance",
        ));
    }
    validate_quantity("spec.etcd.storage.size", &spec.etcd.storage.size)?;
    if spec
        .etcd
        .storage
        .size
        .trim_start_matches(['0', '.'])
        .chars()
        .next()
        .is_none_or(|c| !c.is_ascii_digit())
    {
        return Err(invalid(
            "spec.etcd.storage.size",
            &spec.etcd.storage.size,
            "must be more than zero",
        ));
    }

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
        &endpoint_value,
        advertise_address,
        &service_cidr,
        &pod_cidr,
    )?;
    let algorithm: KeyAlgorithm = spec.pki.algorithm.into();
    let leaf_validity = parse_duration(
        "spec.pki.certificateValidity",
        &spec.pki.certificate_validity,
    )?;
    let renew_before = parse_duration("spec.pki.renewBefore", &spec.pki.renew_before)?;
    let token_ttl = parse_duration("spec.join.tokenTTL", &spec.join.token_ttl)?;

    let endpoint = endpoint.clone();
    let mut pki = PkiSpec::new(name, endpoint.clone())
        .map_err(|e| invalid("metadata.name", name, e.reason))?;
    pki.namespace = namespace.clone();
    pki.extra_sans = extra_sans;
    pki.service_cidr = service_cidr;
    pki.dns_domain = spec.networking.dns_domain.clone();
    pki.service_cluster_domain = service_cluster_domain.to_string();
    pki.algorithm = algorithm;
    pki.leaf_validity = leaf_validity;
    pki.renew_before = renew_before;
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

    let resources = |field: &str,
                     spec: &Option<ResourcesSpec>,
                     cpu: &str,
                     memory: &str|
     -> Result<Resources, SpecError> {
        match spec {
            None => Ok(Resources::requests(cpu, memory)),
            Some(r) => {
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
        }
    };
    let tolerations = spec
        .tolerations
        .iter()
        .map(|t| serde_json::to_value(t).expect("tolerations serialise"))
        .collect();

    let input = RenderInput {
        name: name.clone(),
        namespace,
        version,
        images: Images::for_version(version, &spec.image_repository),
        image_repository: spec.image_repository.clone(),
        endpoint,
        advertise_address,
        api_server: ApiServerInput {
            replicas: replicas("spec.apiServer.replicas", spec.api_server.replicas)?,
            service_type,
            service_annotations: spec.api_server.service.annotations.clone(),
            load_balancer_ip,
            node_port,
            extra_args: spec.api_server.extra_args.clone(),
            resources: resources(
                "spec.apiServer.resources",
                &spec.api_server.resources,
                "250m",
                "512Mi",
            )?,
        },
        controller_manager: ComponentInput {
            replicas: replicas(
                "spec.controllerManager.replicas",
                spec.controller_manager.replicas,
            )?,
            extra_args: spec.controller_manager.extra_args.clone(),
            resources: resources(
                "spec.controllerManager.resources",
                &spec.controller_manager.resources,
                "100m",
                "128Mi",
            )?,
        },
        scheduler: ComponentInput {
            replicas: replicas("spec.scheduler.replicas", spec.scheduler.replicas)?,
            extra_args: spec.scheduler.extra_args.clone(),
            resources: resources(
                "spec.scheduler.resources",
                &spec.scheduler.resources,
                "50m",
                "64Mi",
            )?,
        },
        etcd: EtcdInput {
            replicas: etcd_replicas as u32,
            storage_size: spec.etcd.storage.size.clone(),
            storage_class_name: spec.etcd.storage.storage_class_name.clone(),
            resources: resources("spec.etcd.resources", &spec.etcd.resources, "100m", "256Mi")?,
        },
        networking: NetworkingInput {
            service_cidr,
            pod_cidr,
            dns_domain: spec.networking.dns_domain.clone(),
            service_cluster_domain: service_cluster_domain.to_string(),
        },
        token,
        token_expiration: token_expiration.unwrap_or(now + token_ttl),
        placement: Placement {
            node_selector: spec.node_selector.clone(),
            tolerations,
            priority_class_name: spec.priority_class_name.clone(),
        },
    };
    Ok(Resolved { input, pki })
}

/// Why kube-apiserver would refuse `ip` as its `--advertise-address` (its
/// endpoint reconciler rejects these ranges and the process exits), if it
/// would.
fn unadvertisable(ip: std::net::IpAddr) -> Option<&'static str> {
    use std::net::IpAddr;
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

/// The endpoint of an offline render: `spec.apiServer.endpoint`, required,
/// since there is no LoadBalancer to ask.
pub fn offline_endpoint(manifest: &TenantControlPlane) -> Result<Endpoint, SpecError> {
    let value = manifest.spec.api_server.endpoint.as_deref().ok_or_else(|| {
        invalid(
            "spec.apiServer.endpoint",
            "",
            "is required to render offline: give the address nodes will use (a VIP or the load balancer's IP, HOST[:PORT])",
        )
    })?;
    spec_rules::endpoint_text("spec.apiServer.endpoint", value)?;
    Endpoint::parse("endpoint", value)
        .map_err(|e| invalid("spec.apiServer.endpoint", value, e.reason))
}

/// Node selector, tolerations, priority class and the Service's
/// annotations: values the API server would refuse when the pods or the
/// Service are created, refused here with the field named.
fn check_placement(spec: &crate::api::TenantControlPlaneSpec) -> Result<(), SpecError> {
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

/// A documentation address (RFC 5737 / RFC 3849) of the Service CIDR's
/// family, outside the tenant's networks, standing in for an endpoint that
/// is not known yet.
fn stand_in_endpoint(manifest: &TenantControlPlane, port: u16) -> Endpoint {
    let networks: Vec<IpNet> = [
        &manifest.spec.networking.service_cidr,
        &manifest.spec.networking.pod_cidr,
    ]
    .iter()
    .filter_map(|cidr| cidr.parse().ok())
    .collect();
    let ipv6 = matches!(networks.first(), Some(IpNet::V6(_)));
    let candidates: &[&str] = if ipv6 {
        &["2001:db8::1", "2001:db8:1::1"]
    } else {
        &["192.0.2.1", "198.51.100.1", "203.0.113.1"]
    };
    let address = candidates
        .iter()
        .find(|a| {
            let ip: IpAddr = a.parse().expect("a valid address");
            !networks.iter().any(|n| n.contains(&ip))
        })
        .unwrap_or(&candidates[0]);
    let text = if ipv6 {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    Endpoint::parse("endpoint", &text).expect("a valid stand-in")
}

/// A `TenantControlPlane` whose spec passed every check, with the values
/// that later steps need already parsed: they take this, never the raw spec.
#[derive(Debug, Clone)]
pub struct ValidatedTenant {
    pub name: String,
    /// `tcp-<name>`, the tenant's namespace in the service cluster.
    pub namespace: String,
    /// `spec.version`.
    pub version: KubeVersion,
    /// `spec.join.tokenTTL`.
    pub token_ttl: Duration,
    /// What the Namespace and kube-apiserver Service are made from.
    pub bootstrap: gantry_renderer::BootstrapInput,
}

/// Runs every check of [`resolve`] before the endpoint is known, so that an
/// invalid spec is reported before anything is created, and parses what the
/// later steps need. Without an explicit endpoint it checks against a
/// stand-in (a documentation address of the Service CIDR's family, on the
/// port the service type implies); the real endpoint is checked again when
/// it is known.
pub fn validate(manifest: &TenantControlPlane) -> Result<ValidatedTenant, SpecError> {
    let endpoint = match manifest.spec.api_server.endpoint {
        Some(_) => offline_endpoint(manifest)?,
        None => {
            let port = match manifest.spec.api_server.service.type_ {
                api::ServiceType::NodePort => manifest
                    .spec
                    .api_server
                    .service
                    .node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(*NODE_PORT_RANGE.start()),
                _ => gantry_pki::DEFAULT_API_SERVER_PORT,
            };
            stand_in_endpoint(manifest, port)
        }
    };
    let now = OffsetDateTime::UNIX_EPOCH;
    let resolved = resolve(
        manifest,
        &endpoint,
        BootstrapToken::generate(),
        None,
        now,
        "cluster.local",
    )?;
    // extraArgs are checked where the flags are made: a flag gantry owns is
    // an invalid spec (InvalidSpec), not a render failure retried forever.
    for args in [
        gantry_renderer::args::api_server,
        gantry_renderer::args::controller_manager,
        gantry_renderer::args::scheduler,
    ] {
        if let Err(gantry_renderer::RenderError::InvalidField {
            field,
            value,
            reason,
        }) = args(&resolved.input)
        {
            return Err(invalid(field, value, reason));
        }
    }
    let bootstrap = bootstrap_input(manifest)?;
    Ok(ValidatedTenant {
        name: resolved.input.name,
        namespace: resolved.input.namespace,
        version: resolved.input.version,
        token_ttl: parse_duration("spec.join.tokenTTL", &manifest.spec.join.token_ttl)?,
        bootstrap,
    })
}

/// What the bootstrap objects (Namespace, kube-apiserver Service) are made
/// from (part of [`validate`]).
fn bootstrap_input(
    manifest: &TenantControlPlane,
) -> Result<gantry_renderer::BootstrapInput, SpecError> {
    let name = manifest
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid("metadata.name", "", "is required"))?;
    let service = &manifest.spec.api_server.service;
    let service_type = renderer_service_type(service.type_);
    let load_balancer_ip = service
        .load_balancer_ip
        .as_deref()
        .map(parse_load_balancer_ip)
        .transpose()?;
    Ok(gantry_renderer::BootstrapInput {
        namespace: gantry_pki::default_namespace(&name),
        name,
        service_type,
        service_annotations: service.annotations.clone(),
        load_balancer_ip,
        node_port: service.node_port.and_then(|p| u16::try_from(p).ok()),
    })
}

fn parse_load_balancer_ip(ip: &str) -> Result<IpAddr, SpecError> {
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

fn parse_cidr(field: &str, value: &str) -> Result<IpNet, SpecError> {
    gantry_pki::parse_cidr("cidr", value).map_err(|e| invalid(field, value, e.reason))
}

/// The renderer's name for a spec's Service type.
fn renderer_service_type(service_type: api::ServiceType) -> ServiceType {
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
fn validate_quantity(field: &str, value: &str) -> Result<(), SpecError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_tenant_without_an_endpoint_validates() {
        let text = include_str!("../../examples/tenant-a.yaml")
            .replace("    endpoint: 203.0.113.10:6443\n", "")
            .replace("      loadBalancerIP: 203.0.113.10\n", "")
            .replace("serviceCIDR: 10.96.0.0/12", "serviceCIDR: fd00:10:96::/108")
            .replace("podCIDR: 10.244.0.0/16", "podCIDR: fd00:10:244::/56");
        let manifest = TenantControlPlane::from_yaml(&text).unwrap();
        assert_eq!(
            validate(&manifest).map(|_| ()).map_err(|e| e.to_string()),
            Ok(())
        );
    }

    #[test]
    fn validate_refuses_an_owned_extra_arg_as_an_invalid_spec() {
        let text = include_str!("../../examples/tenant-a.yaml").replace(
            "  controllerManager:\n",
            "    extraArgs:\n      etcd-servers: https://elsewhere:2379\n  controllerManager:\n",
        );
        let manifest = TenantControlPlane::from_yaml(&text).unwrap();
        let error = validate(&manifest).unwrap_err();
        assert_eq!(error.field, "spec.apiServer.extraArgs.etcd-servers");
        assert!(
            error.reason.contains("is set by gantry"),
            "{}",
            error.reason
        );
        let good = TenantControlPlane::from_yaml(include_str!("../../examples/tenant-a.yaml"));
        assert!(validate(&good.unwrap()).is_ok());
    }

    #[test]
    fn durations_are_go_style_hours_minutes_seconds() {
        assert_eq!(parse_duration("f", "24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_duration("f", "1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("f", "90s").unwrap(), Duration::seconds(90));
        for bad in ["", "1d", "h", "10", "0h", "1.5h", "-1h", "1h 30m"] {
            let err = parse_duration("spec.join.tokenTTL", bad).unwrap_err();
            assert_eq!(err.field, "spec.join.tokenTTL", "{bad}");
        }
    }

    #[test]
    fn quantities_follow_kubernetes_syntax() {
        for good in ["10Gi", "500m", "1", "1.5", "2e3", "100M", "1E", "0.5Ki"] {
            assert!(validate_quantity("f", good).is_ok(), "{good}");
        }
        for bad in ["", "ten", "10GB", "Gi", "1..5", "e3", "1e"] {
            assert!(validate_quantity("f", bad).is_err(), "{bad}");
        }
    }
}
