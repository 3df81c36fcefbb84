//! Checks of single spec values that Kubernetes would refuse later, or that
//! would render something other than what the user wrote: each returns the
//! error naming the field and the value. Pure; `resolve` and the manifest
//! parser call them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::resolve::SpecError;

fn invalid(field: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The endpoint as written: no surrounding spaces, and an IPv6 address in
/// brackets (`2001:db8::10:6443` is itself a valid IPv6 address, so the port
/// would silently become part of it).
pub fn endpoint_text(field: &str, value: &str) -> Result<(), SpecError> {
    if value.trim() != value {
        return Err(invalid(
            field,
            value,
            "must not have leading or trailing spaces",
        ));
    }
    if value.matches(':').count() > 1 && !value.starts_with('[') {
        return Err(invalid(
            field,
            value,
            "an IPv6 address must be in brackets, with its port after them: [2001:db8::10]:6443",
        ));
    }
    Ok(())
}

/// The endpoint is a real address of the nodes' network: not a Service
/// ClusterIP or a pod address of the tenant, and of the Service CIDR's
/// family (kube-apiserver advertises it in that family).
pub fn endpoint_in_networks(
    field: &str,
    endpoint: &str,
    ip: IpAddr,
    service_cidr: &IpNet,
    pod_cidr: &IpNet,
) -> Result<(), SpecError> {
    if ip.is_ipv4() != matches!(service_cidr, IpNet::V4(_)) {
        return Err(invalid(
            field,
            endpoint,
            format!("is not of the family of spec.networking.serviceCIDR {service_cidr}"),
        ));
    }
    for (network, name) in [(service_cidr, "serviceCIDR"), (pod_cidr, "podCIDR")] {
        if network.contains(&ip) {
            return Err(invalid(
                field,
                endpoint,
                format!(
                    "is inside spec.networking.{name} {network}: those addresses exist only inside the tenant cluster"
                ),
            ));
        }
    }
    Ok(())
}

/// A registry and path, without a tag or digest (gantry adds the tag of
/// each image): `registry.k8s.io`, `harbor.local:5000/k8s`.
pub fn image_repository(field: &str, value: &str) -> Result<(), SpecError> {
    let bad = |reason: &str| Err(invalid(field, value, reason));
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must be a registry path such as registry.k8s.io");
    }
    if value.contains('@') {
        return bad("must not hold a digest: gantry adds each image's name and tag");
    }
    match value.rsplit_once('/') {
        Some((_, last)) if last.contains(':') => {
            bad("must not hold a tag: gantry adds each image's name and tag")
        }
        None => match value.split_once(':') {
            Some((_, port)) if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) => bad(
                "must not hold a tag: gantry adds each image's name and tag (a registry port is digits)",
            ),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A DNS-1123 subdomain (a PriorityClass name, a key prefix).
pub fn dns_subdomain(field: &str, value: &str) -> Result<(), SpecError> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if value.len() > 253 || !value.split('.').all(label_ok) {
        return Err(invalid(
            field,
            value,
            "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.'",
        ));
    }
    Ok(())
}

/// The name part of a label or annotation key, or a label value: at most 63
/// characters of `[A-Za-z0-9_.-]`, beginning and ending alphanumeric.
fn qualified_name_ok(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= 63
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A label or annotation key: `[prefix/]name`.
pub fn qualified_key(field: &str, key: &str) -> Result<(), SpecError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| dns_subdomain(field, p).is_ok());
    if !prefix_ok || !qualified_name_ok(name) {
        return Err(invalid(
            field,
            key,
            "is not a valid key: an optional DNS subdomain and '/', then at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends",
        ));
    }
    Ok(())
}

/// A label value: empty, or a qualified name.
pub fn label_value(field: &str, value: &str) -> Result<(), SpecError> {
    if !value.is_empty() && !qualified_name_ok(value) {
        return Err(invalid(
            field,
            value,
            "is not a valid label value: at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends",
        ));
    }
    Ok(())
}

/// A toleration's operator and effect, as the API server accepts them.
pub fn toleration(
    field: &str,
    toleration: &k8s_openapi::api::core::v1::Toleration,
) -> Result<(), SpecError> {
    if let Some(operator) = &toleration.operator
        && !["Exists", "Equal"].contains(&operator.as_str())
    {
        return Err(invalid(
            &format!("{field}.operator"),
            operator,
            "must be Exists or Equal",
        ));
    }
    if let Some(effect) = &toleration.effect
        && !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect.as_str())
    {
        return Err(invalid(
            &format!("{field}.effect"),
            effect,
            "must be NoSchedule, PreferNoSchedule or NoExecute",
        ));
    }
    if let Some(key) = &toleration.key
        && !key.is_empty()
    {
        qualified_key(&format!("{field}.key"), key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repositories_hold_no_tag_or_digest() {
        for good in [
            "registry.k8s.io",
            "harbor.local:5000/k8s",
            "localhost:5000",
            "a/b/c",
        ] {
            assert!(image_repository("f", good).is_ok(), "{good}");
        }
        for bad in [
            "registry.k8s.io:v1",
            "registry.k8s.io/x:v1",
            "r.io/x@sha256:ab",
            "",
            "a b",
        ] {
            assert!(image_repository("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_and_values_follow_kubernetes() {
        for good in [
            "app",
            "example.com/x",
            "a.b-c_d",
            "loadbalancer.openstack.org/keep-floatingip",
        ] {
            assert!(qualified_key("f", good).is_ok(), "{good}");
        }
        for bad in [
            "bad key!",
            "-a",
            "Example.com/x",
            "a/",
            "/a",
            &"x".repeat(64),
        ] {
            assert!(qualified_key("f", bad).is_err(), "{bad}");
        }
        assert!(label_value("f", "").is_ok());
        assert!(label_value("f", "a b").is_err());
        assert!(dns_subdomain("f", "system-cluster-critical").is_ok());
        assert!(dns_subdomain("f", "Not_Valid").is_err());
    }

    #[test]
    fn endpoints_are_written_plainly_and_outside_the_tenant_networks() {
        assert!(endpoint_text("f", "203.0.113.10:6443").is_ok());
        assert!(endpoint_text("f", "[2001:db8::10]:6443").is_ok());
        assert!(endpoint_text("f", "2001:db8::10:6443").is_err());
        assert!(endpoint_text("f", " 203.0.113.10:6443 ").is_err());
        let services: IpNet = "10.96.0.0/12".parse().unwrap();
        let pods: IpNet = "10.244.0.0/16".parse().unwrap();
        let check = |ip: &str| endpoint_in_networks("f", ip, ip.parse().unwrap(), &services, &pods);
        assert!(check("203.0.113.10").is_ok());
        assert!(check("10.96.0.1").is_err());
        assert!(check("10.244.3.4").is_err());
        assert!(check("2001:db8::10").is_err());
    }
}
