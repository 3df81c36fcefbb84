//! Checks of single spec values that Kubernetes would refuse later, or that
//! would render something other than what the user wrote: each returns the
//! error naming the field and the value. Pure; `resolve` and the manifest
//! parser call them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::spec_error::{SpecError, invalid};

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
/// each image): `registry.k8s.io`, `harbor.local:5000/k8s`. The grammar is
/// the image reference's (`api::IMAGE_REPOSITORY_PATTERN`, which the CRD
/// checks too), with a reason for each common mistake: a scheme, a
/// trailing `/`, a `..` component, a tag or a digest.
pub fn image_repository(field: &str, value: &str) -> Result<(), SpecError> {
    let bad = |reason: &str| Err(invalid(field, value, reason));
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must be a registry path such as registry.k8s.io");
    }
    if value.contains("://") {
        return bad(
            "must not hold a scheme (https://): an image names its registry by host, such as registry.k8s.io/k8s",
        );
    }
    if value.contains('@') {
        return bad("must not hold a digest: gantry adds each image's name and tag");
    }
    if value.ends_with('/') {
        return bad("must not end with '/': gantry adds '/' and each image's name");
    }
    let max = crate::api::MAX_IMAGE_REPOSITORY_LEN;
    if value.len() > max {
        return bad(&format!(
            "is longer than {max} characters: with an image's name and tag after it, a reference may have 255"
        ));
    }
    let (host, path) = value.split_once('/').unwrap_or((value, ""));
    let port = host.split_once(':').map(|(_, port)| port);
    if path.contains(':') {
        return bad("must not hold a tag: gantry adds each image's name and tag");
    }
    if port.is_some_and(|port| port.is_empty() || !port.chars().all(|c| c.is_ascii_digit())) {
        return bad(
            "must not hold a tag: gantry adds each image's name and tag (a registry port is digits)",
        );
    }
    if !registry_host_ok(host) {
        return bad(
            "must start with a registry host: DNS labels or an IPv4 address, and an optional :port",
        );
    }
    for component in path.split('/').filter(|_| !path.is_empty()) {
        if component == "." || component == ".." {
            return bad("must not hold a '.' or '..' path component");
        }
        if !path_component_ok(component) {
            return bad(
                "has a path component that is empty ('//') or not lowercase letters and digits joined by '.', '_', '__' or '-'",
            );
        }
    }
    Ok(())
}

/// `registry.k8s.io`, `harbor.local:5000`, `localhost`, `10.0.0.5:5000`:
/// labels of letters, digits and inner '-', an optional port.
fn registry_host_ok(host: &str) -> bool {
    let name = host.split_once(':').map_or(host, |(name, _)| name);
    name.split('.').all(|label| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// One path component: words of `[a-z0-9]` joined by `.`, `_`, `__` or a
/// run of `-`.
fn path_component_ok(component: &str) -> bool {
    let word = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let edge_ok = |c: Option<char>| c.is_some_and(word);
    edge_ok(component.chars().next())
        && edge_ok(component.chars().last())
        && component
            .split(word)
            .filter(|separator| !separator.is_empty())
            .all(|separator| {
                [".", "_", "__"].contains(&separator) || separator.chars().all(|c| c == '-')
            })
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

/// Kubernetes' bound on an object's annotations: keys and values together
/// at most 256 KiB (`TotalAnnotationSizeLimitB`).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 << 10;

/// Annotations within [`MAX_ANNOTATIONS_BYTES`]; the error names the
/// largest one (the value would be too long to quote).
pub fn annotations_size(
    field: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<(), SpecError> {
    let size = |(key, value): (&String, &String)| key.len() + value.len();
    let total: usize = annotations.iter().map(size).sum();
    if total <= MAX_ANNOTATIONS_BYTES {
        return Ok(());
    }
    let largest = annotations
        .iter()
        .max_by_key(|entry| size(*entry))
        .map_or("", |(key, _)| key.as_str());
    Err(invalid(
        field,
        largest,
        format!(
            "is the largest of annotations of {total} bytes in all (keys and values): \
             Kubernetes allows at most {MAX_ANNOTATIONS_BYTES} (256 KiB)"
        ),
    ))
}

/// A toleration as the API server accepts it: a known operator and effect,
/// a key (which only `Exists` may leave empty: an empty key with `Exists`
/// tolerates every taint), no value with `Exists` and a label value with
/// `Equal`, and `tolerationSeconds` only with the effect `NoExecute` (the
/// only effect that evicts).
pub fn toleration(
    field: &str,
    toleration: &k8s_openapi::api::core::v1::Toleration,
) -> Result<(), SpecError> {
    if let Some(operator) = &toleration.operator
        && !["Exists", "Equal"].contains(&operator.as_str())
    {
        return Err(invalid(
            format!("{field}.operator"),
            operator,
            "must be Exists or Equal",
        ));
    }
    if let Some(effect) = &toleration.effect
        && !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect.as_str())
    {
        return Err(invalid(
            format!("{field}.effect"),
            effect,
            "must be NoSchedule, PreferNoSchedule or NoExecute",
        ));
    }
    let exists = toleration.operator.as_deref() == Some("Exists");
    let key = toleration.key.as_deref().unwrap_or_default();
    let value = toleration.value.as_deref().unwrap_or_default();
    if key.is_empty() && !exists {
        return Err(invalid(
            format!("{field}.key"),
            key,
            "must not be empty unless the operator is Exists (operator Equal is the default)",
        ));
    }
    if !key.is_empty() {
        qualified_key(&format!("{field}.key"), key)?;
    }
    if exists && !value.is_empty() {
        return Err(invalid(
            format!("{field}.value"),
            value,
            "must be empty when the operator is Exists",
        ));
    }
    label_value(&format!("{field}.value"), value)?;
    if let Some(seconds) = toleration.toleration_seconds
        && toleration.effect.as_deref() != Some("NoExecute")
    {
        return Err(invalid(
            format!("{field}.tolerationSeconds"),
            seconds,
            "applies only to the effect NoExecute",
        ));
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
    fn image_repositories_follow_the_reference_grammar() {
        for good in [
            "Registry.Example.com/k8s",
            "10.0.0.5:5000/a.b/c_d/e__f/g--h",
            "localhost",
            "harbor.local/library/k8s-mirror",
        ] {
            assert!(image_repository("f", good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("https://registry.k8s.io", "scheme"),
            ("registry.k8s.io/", "end with '/'"),
            ("registry.k8s.io/../k8s", "'..'"),
            ("registry.k8s.io/./k8s", "'..'"),
            ("registry.k8s.io//k8s", "empty"),
            ("registry.k8s.io/K8s", "lowercase"),
            ("registry.k8s.io/a___b", "lowercase"),
            ("registry.k8s.io/-a", "lowercase"),
            ("registry.k8s.io/a.", "lowercase"),
            ("-registry.k8s.io", "registry host"),
            ("reg_istry.io/k8s", "registry host"),
            ("registry.k8s.io:/k8s", "tag"),
        ] {
            let error = image_repository("f", bad).unwrap_err();
            assert_eq!(error.value, bad);
            assert!(error.reason.contains(reason), "{bad}: {}", error.reason);
        }
        let long = format!("r.io/{}", "a".repeat(200));
        assert!(image_repository("f", &long).is_err());
    }

    #[test]
    fn annotations_total_at_most_256_kib() {
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert("a".to_string(), "x".repeat(MAX_ANNOTATIONS_BYTES - 1));
        assert!(annotations_size("f", &annotations).is_ok());
        annotations.insert("b".to_string(), String::new());
        let error = annotations_size("f", &annotations).unwrap_err();
        assert_eq!((error.field.as_str(), error.value.as_str()), ("f", "a"));
        assert!(error.reason.contains("262145 bytes"), "{}", error.reason);
    }

    #[test]
    fn tolerations_follow_the_api_servers_rules() {
        use k8s_openapi::api::core::v1::Toleration;
        let toleration =
            |key: &str, operator: &str, value: &str, effect: &str, seconds: Option<i64>| {
                let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
                Toleration {
                    key: some(key),
                    operator: some(operator),
                    value: some(value),
                    effect: some(effect),
                    toleration_seconds: seconds,
                }
            };
        for good in [
            toleration("", "Exists", "", "", None),
            toleration("a", "Exists", "", "NoExecute", Some(30)),
            toleration("a", "", "b", "NoSchedule", None),
            toleration("example.com/a", "Equal", "", "", None),
        ] {
            assert_eq!(toleration_check(&good), Ok(()), "{good:?}");
        }
        for (bad, field, value) in [
            (toleration("a", "Exists", "b", "", None), "t.value", "b"),
            (
                toleration("a", "Equal", "b", "NoSchedule", Some(5)),
                "t.tolerationSeconds",
                "5",
            ),
            (
                toleration("a", "", "b", "", Some(5)),
                "t.tolerationSeconds",
                "5",
            ),
            (toleration("", "Equal", "b", "", None), "t.key", ""),
            (toleration("", "", "", "", None), "t.key", ""),
            (toleration("a", "Equal", "a b", "", None), "t.value", "a b"),
            (toleration("a", "In", "", "", None), "t.operator", "In"),
        ] {
            assert_eq!(
                toleration_check(&bad),
                Err((field.into(), value.into())),
                "{bad:?}"
            );
        }
    }

    fn toleration_check(
        t: &k8s_openapi::api::core::v1::Toleration,
    ) -> Result<(), (String, String)> {
        toleration("t", t).map_err(|e| (e.field, e.value))
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
