//! validate → resolve: a `TenantControlPlane` spec becomes the renderer's
//! fully resolved [`RenderInput`] and the PKI's [`PkiSpec`]. Pure: every
//! default applied, every value checked, each error naming its field.

mod backup;
mod fields;
mod quantity;

use std::net::IpAddr;

use gantry_pki::{BootstrapToken, Endpoint, PkiSpec};
use gantry_renderer::{
    ApiServerInput, ComponentInput, EtcdInput, Images, KubeVersion, NetworkingInput, RenderInput,
    ServiceCluster,
};
use ipnet::IpNet;
use time::{Duration, OffsetDateTime};

use crate::api::{self, TenantControlPlane};
use crate::spec_rules;
pub use backup::{DEFAULT_KEEP, check_schedule, spread_hourly, store_endpoint};
pub use fields::{MAX_DURATION, parse_duration};
use fields::{parse_load_balancer_ip, renderer_service_type};

pub use crate::spec_error::SpecError;
use crate::spec_error::invalid;

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
/// plus `spec.join.tokenTTL`. `service_cluster` is what the operator (or
/// `gantry render`) was told of the service cluster.
pub fn resolve(
    manifest: &TenantControlPlane,
    endpoint: &Endpoint,
    token: BootstrapToken,
    token_expiration: Option<OffsetDateTime>,
    now: OffsetDateTime,
    service_cluster: &ServiceCluster,
) -> Result<Resolved, SpecError> {
    let name = manifest
        .metadata
        .name
        .as_ref()
        .ok_or_else(|| invalid("metadata.name", "", "is required"))?;
    gantry_pki::validate_tenant_name(name).map_err(|e| invalid("metadata.name", name, e.reason))?;
    fields::check_metadata(&manifest.metadata)?;
    let spec = &manifest.spec;
    let namespace = gantry_pki::default_namespace(name);
    let version: KubeVersion =
        spec.version
            .parse()
            .map_err(|e: gantry_renderer::VersionError| {
                invalid("spec.version", &spec.version, e.to_string())
            })?;
    spec_rules::image_repository("spec.imageRepository", &spec.image_repository)?;
    fields::check_placement(spec)?;
    let advertise_address = fields::advertise_address(spec, endpoint)?;
    let exposure = fields::service_exposure(spec, endpoint.port)?;
    let extra_sans = fields::cert_sans(spec)?;
    let etcd_replicas = fields::etcd_members(spec)?;
    let (service_cidr, pod_cidr) = fields::networks(spec, endpoint, advertise_address)?;
    fields::check_service_cluster(service_cluster)?;
    let durations = fields::durations(spec)?;
    let networks = NetworkingInput {
        service_cidr,
        pod_cidr,
        dns_domain: spec.networking.dns_domain.clone(),
        service_cluster_domain: service_cluster.domain.clone(),
        service_cluster_cidrs: service_cluster.cidrs.clone(),
        kube_proxy_conntrack_max_per_core: fields::kube_proxy_conntrack(spec)?,
    };
    let pki = fields::pki_spec(name, endpoint, spec, extra_sans, &networks, &durations)?;
    let konnectivity =
        fields::konnectivity(spec, endpoint, &exposure, &service_cluster.gantry_image)?;
    let input = RenderInput {
        name: name.clone(),
        namespace,
        version,
        images: Images::for_version(version, &spec.image_repository),
        image_repository: spec.image_repository.clone(),
        endpoint: endpoint.clone(),
        advertise_address,
        // Default requests are each master's measured use at rest plus
        // headroom (docs/benchmarks.md, "The masters at rest"), not its peak:
        // requests do not cap a pod, so start-ups and upgrades use the
        // node's slack, and a busy tenant sets `resources` in its spec.
        api_server: ApiServerInput {
            replicas: fields::replicas("spec.apiServer.replicas", spec.api_server.replicas)?,
            service_type: exposure.service_type,
            service_annotations: spec.api_server.service.annotations.clone(),
            load_balancer_ip: exposure.load_balancer_ip,
            node_port: exposure.node_port,
            extra_args: spec.api_server.extra_args.clone(),
            resources: fields::resources(
                "spec.apiServer.resources",
                &spec.api_server.resources,
                ("100m", "320Mi"),
            )?,
        },
        controller_manager: ComponentInput {
            replicas: fields::replicas(
                "spec.controllerManager.replicas",
                spec.controller_manager.replicas,
            )?,
            extra_args: spec.controller_manager.extra_args.clone(),
            resources: fields::resources(
                "spec.controllerManager.resources",
                &spec.controller_manager.resources,
                ("50m", "96Mi"),
            )?,
        },
        scheduler: ComponentInput {
            replicas: fields::replicas("spec.scheduler.replicas", spec.scheduler.replicas)?,
            extra_args: spec.scheduler.extra_args.clone(),
            resources: fields::resources(
                "spec.scheduler.resources",
                &spec.scheduler.resources,
                ("20m", "48Mi"),
            )?,
        },
        etcd: EtcdInput {
            replicas: etcd_replicas,
            storage_size: spec.etcd.storage.size.clone(),
            quota_backend_bytes: fields::etcd_quota_bytes(spec)?,
            storage_class_name: spec.etcd.storage.storage_class_name.clone(),
            resources: fields::resources(
                "spec.etcd.resources",
                &spec.etcd.resources,
                ("50m", "128Mi"),
            )?,
        },
        networking: networks,
        token,
        token_expiration: token_expiration.unwrap_or(now + durations.token_ttl),
        placement: fields::placement(spec),
        konnectivity,
        backup: backup::backup(
            name,
            spec,
            &service_cluster.backup,
            &service_cluster.gantry_image,
        )?,
    };
    Ok(Resolved { input, pki })
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
    validate_for(manifest, &ServiceCluster::default())
}

/// [`validate`] for the service cluster the operator was told of: its
/// defaults (a backup store) complete the spec as they will in the render.
pub fn validate_for(
    manifest: &TenantControlPlane,
    service_cluster: &ServiceCluster,
) -> Result<ValidatedTenant, SpecError> {
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
        service_cluster,
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
        konnectivity: manifest.spec.konnectivity.enabled.then(|| {
            manifest
                .spec
                .konnectivity
                .node_port
                .and_then(|p| u16::try_from(p).ok())
        }),
    })
}

#[cfg(test)]
mod validation_tests;

#[cfg(test)]
mod tests {
    use super::fields::{etcd_quota_bytes, validate_quantity};
    use super::*;

    #[test]
    fn an_ipv6_tenant_without_an_endpoint_validates() {
        let text = include_str!("../../../examples/tenant-a.yaml")
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
        let text = include_str!("../../../examples/tenant-a.yaml").replace(
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
        let good = TenantControlPlane::from_yaml(include_str!("../../../examples/tenant-a.yaml"));
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

    #[test]
    fn the_etcd_quota_defaults_below_the_volume_and_never_exceeds_it() {
        let quota = |size: &str, quota: Option<&str>| {
            let mut spec =
                TenantControlPlane::from_yaml(include_str!("../../../examples/tenant-a.yaml"))
                    .unwrap()
                    .spec;
            spec.etcd.storage.size = size.into();
            spec.etcd.storage.quota = quota.map(Into::into);
            etcd_quota_bytes(&spec)
        };
        assert_eq!(
            quota("10Gi", None).unwrap(),
            8 << 30,
            "80% of 10Gi, capped at 8Gi"
        );
        assert_eq!(quota("5Gi", None).unwrap(), 4 << 30, "80% of 5Gi");
        assert_eq!(quota("100G", None).unwrap(), 8 << 30, "capped at 8Gi");
        assert_eq!(quota("10Gi", Some("2Gi")).unwrap(), 2 << 30);
        assert_eq!(quota("10Gi", Some("1.5e9")).unwrap(), 1_500_000_000);
        let error = quota("10Gi", Some("20Gi")).unwrap_err();
        assert_eq!(error.field, "spec.etcd.storage.quota");
        assert!(
            error
                .reason
                .contains("at most spec.etcd.storage.size (10Gi)"),
            "{}",
            error.reason
        );
        assert_eq!(
            quota("10Gi", Some("0")).unwrap_err().field,
            "spec.etcd.storage.quota"
        );
        assert_eq!(
            quota("10Gi", Some("lots")).unwrap_err().field,
            "spec.etcd.storage.quota"
        );
    }
}
