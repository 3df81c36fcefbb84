//! What a tenant's PKI is made from: [`PkiSpec`] and the small value types it
//! holds, each parsed strictly so that bad input fails before any key is made.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use time::Duration;

use crate::error::InvalidInput;

/// The port kube-apiserver listens on when the endpoint names none.
pub const DEFAULT_API_SERVER_PORT: u16 = 6443;
/// Longest tenant name: the namespace `tcp-<name>` and the object names built
/// from it must stay within Kubernetes' 63-character label limit.
pub const MAX_TENANT_NAME_LEN: usize = 40;

/// The longest validity of a certificate, in days (100 years).
pub const MAX_VALIDITY_DAYS: i64 = 36_500;

/// Everything needed to issue (or re-check) one tenant's PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSpec {
    /// The tenant's name, a DNS-1123 label of at most 40 characters.
    pub tenant_name: String,
    /// The namespace in the service cluster that runs the tenant's masters.
    pub namespace: String,
    /// Where nodes and users reach the tenant's kube-apiserver.
    pub endpoint: Endpoint,
    /// Extra subject alternative names for the apiserver certificate.
    pub extra_sans: Vec<San>,
    /// The tenant cluster's Service CIDR; its first address is `kubernetes.default`.
    pub service_cidr: IpNet,
    /// The tenant cluster's DNS domain (`cluster.local`).
    pub dns_domain: String,
    /// The service cluster's DNS domain, under which the masters' Services resolve.
    pub service_cluster_domain: String,
    pub algorithm: KeyAlgorithm,
    pub ca_validity: Duration,
    pub leaf_validity: Duration,
    /// A leaf is reissued when less than this remains of its validity.
    pub renew_before: Duration,
}

impl PkiSpec {
    /// A spec with the documented defaults: namespace `tcp-<name>`, Service CIDR
    /// 10.96.0.0/12, `cluster.local` on both sides, ECDSA P-256, CAs 10 years,
    /// leaves 1 year, renewal 30 days before expiry.
    pub fn new(tenant_name: &str, endpoint: Endpoint) -> Result<Self, InvalidInput> {
        validate_tenant_name(tenant_name)?;
        Ok(Self {
            tenant_name: tenant_name.to_string(),
            namespace: default_namespace(tenant_name),
            endpoint,
            extra_sans: Vec::new(),
            service_cidr: "10.96.0.0/12".parse().expect("valid default CIDR"),
            dns_domain: "cluster.local".to_string(),
            service_cluster_domain: "cluster.local".to_string(),
            algorithm: KeyAlgorithm::EcdsaP256,
            ca_validity: Duration::days(3650),
            leaf_validity: Duration::days(365),
            renew_before: Duration::days(30),
        })
    }

    /// Re-checks every field; builders that set fields directly call this
    /// before issuing anything.
    /// Checks every field; the durations must lie within 100 years, so that a
    /// certificate's dates are always valid.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_tenant_name(&self.tenant_name)?;
        validate_dns_label("namespace", &self.namespace, 63)?;
        validate_dns_subdomain("dns-domain", &self.dns_domain)?;
        validate_dns_subdomain("service-cluster-domain", &self.service_cluster_domain)?;
        validate_service_cidr(&self.service_cidr)?;
        if let Some(extra) = self.extra_sans.get(MAX_EXTRA_SANS) {
            let value = match extra {
                San::Dns(name) => name.clone(),
                San::Ip(ip) => ip.to_string(),
            };
            return Err(InvalidInput::new(
                "san",
                value,
                format!("is one more than the {MAX_EXTRA_SANS} extra names and addresses allowed"),
            ));
        }
        for (field, duration) in [
            ("ca-validity", self.ca_validity),
            ("leaf-validity", self.leaf_validity),
        ] {
            if duration <= Duration::ZERO {
                return Err(InvalidInput::new(field, duration, "must be positive"));
            }
            if duration > Duration::days(MAX_VALIDITY_DAYS) {
                return Err(InvalidInput::new(
                    field,
                    duration,
                    format!("must be at most {MAX_VALIDITY_DAYS} days (100 years)"),
                ));
            }
        }
        if self.renew_before < Duration::ZERO || self.renew_before >= self.leaf_validity {
            return Err(InvalidInput::new(
                "renew-before",
                self.renew_before,
                "must be at least zero and shorter than the leaf validity",
            ));
        }
        Ok(())
    }

    /// The first address of the Service CIDR: the ClusterIP of `kubernetes.default`.
    pub fn kubernetes_service_ip(&self) -> IpAddr {
        nth_address(&self.service_cidr, 1).expect("validated CIDR holds 10 addresses")
    }

    /// The tenth address of the Service CIDR: the ClusterIP of `kube-dns`.
    pub fn dns_service_ip(&self) -> IpAddr {
        nth_address(&self.service_cidr, 10).expect("validated CIDR holds 10 addresses")
    }

    /// The URL the masters inside the service cluster use to reach the apiserver.
    pub fn in_cluster_server(&self) -> String {
        format!("https://kube-apiserver.{}.svc:6443", self.namespace)
    }
}

/// `tcp-<name>`: the namespace holding a tenant's masters.
pub fn default_namespace(tenant_name: &str) -> String {
    format!("tcp-{tenant_name}")
}

/// The `n`th address of a network (0 is the network address itself), or
/// `None` when the network is too small.
pub fn nth_address(cidr: &IpNet, n: u32) -> Option<IpAddr> {
    let address = match cidr.network() {
        IpAddr::V4(base) => IpAddr::V4(u32::from(base).checked_add(n)?.into()),
        IpAddr::V6(base) => IpAddr::V6(u128::from(base).checked_add(n.into())?.into()),
    };
    cidr.contains(&address).then_some(address)
}

/// Parses a CIDR the way kube-apiserver wants it: a network address, no host bits.
pub fn parse_cidr(field: &'static str, value: &str) -> Result<IpNet, InvalidInput> {
    let cidr: IpNet = value
        .parse()
        .map_err(|_| InvalidInput::new(field, value, "is not a CIDR such as 10.96.0.0/12"))?;
    if cidr.trunc() != cidr {
        return Err(InvalidInput::new(
            field,
            value,
            format!("has host bits set; the network is {}", cidr.trunc()),
        ));
    }
    Ok(cidr)
}

/// Parses one of the service cluster's own CIDRs (`--service-cluster-cidrs`)
/// and refuses what [`service_cluster_cidr_problem`] refuses.
pub fn parse_service_cluster_cidr(field: &'static str, value: &str) -> Result<IpNet, InvalidInput> {
    let cidr = parse_cidr(field, value)?;
    match service_cluster_cidr_problem(&cidr) {
        Some(reason) => Err(InvalidInput::new(field, value, reason)),
        None => Ok(cidr),
    }
}

/// Why `cidr` cannot be one of the service cluster's own networks, if it
/// cannot. The masters' egress NetworkPolicy allows `0.0.0.0/0` and `::/0`
/// except these networks; Kubernetes refuses an `except` that is not
/// strictly inside its block, so a default route (`/0`) would make the whole
/// policy invalid (and would mean the masters may reach nothing anyway).
pub fn service_cluster_cidr_problem(cidr: &IpNet) -> Option<&'static str> {
    (cidr.prefix_len() == 0).then_some(
        "must not be a default route (0.0.0.0/0, ::/0): give the service cluster's own pod and Service CIDRs",
    )
}

fn validate_service_cidr(cidr: &IpNet) -> Result<(), InvalidInput> {
    if cidr.trunc() != *cidr {
        return Err(InvalidInput::new(
            "service-cidr",
            cidr,
            format!("has host bits set; the network is {}", cidr.trunc()),
        ));
    }
    if nth_address(cidr, 10).is_none() {
        return Err(InvalidInput::new(
            "service-cidr",
            cidr,
            "is too small: it must hold at least 10 addresses (kube-dns takes the 10th)",
        ));
    }
    Ok(())
}

/// A tenant name: a DNS-1123 label (lower-case letters, digits, '-', starting and
/// ending alphanumeric) of at most [`MAX_TENANT_NAME_LEN`] characters.
pub fn validate_tenant_name(name: &str) -> Result<(), InvalidInput> {
    validate_dns_label("name", name, MAX_TENANT_NAME_LEN)
}

/// A namespace: a DNS-1123 label of at most 63 characters.
pub fn validate_namespace(namespace: &str) -> Result<(), InvalidInput> {
    validate_dns_label("namespace", namespace, 63)
}

fn validate_dns_label(
    field: &'static str,
    value: &str,
    max_len: usize,
) -> Result<(), InvalidInput> {
    if value.is_empty() || value.len() > max_len {
        return Err(InvalidInput::new(
            field,
            value,
            format!("must be 1 to {max_len} characters long"),
        ));
    }
    if !is_dns_label(value) {
        return Err(InvalidInput::new(
            field,
            value,
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

fn validate_dns_subdomain(field: &'static str, value: &str) -> Result<(), InvalidInput> {
    if !is_dns_subdomain(value) {
        return Err(InvalidInput::new(
            field,
            value,
            "must be a DNS-1123 subdomain such as cluster.local",
        ));
    }
    Ok(())
}

fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_label)
}

/// A host name or IP address: the two kinds a certificate SAN can name here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// Parses a `--san` / `certSANs` value: an IP address, or a DNS name
    /// (lower case, optionally starting with `*.`).
    /// An IP address must be one that can name a host ([`unusable_address`]).
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidInput> {
        if let Ok(ip) = value.parse::<IpAddr>() {
            if let Some(reason) = unusable_address(ip) {
                return Err(InvalidInput::new(field, value, reason));
            }
            return Ok(San::Ip(ip));
        }
        let name = value.strip_prefix("*.").unwrap_or(value);
        if is_dns_subdomain(name) {
            Ok(San::Dns(value.to_string()))
        } else {
            Err(InvalidInput::new(
                field,
                value,
                "is neither an IP address nor a lower-case DNS name",
            ))
        }
    }
}

/// The most names and addresses `certSANs` (`--san`) may add to the
/// apiserver certificate. A load balancer's names and addresses and a few
/// aliases are tens at most; the certificate goes out in every TLS handshake
/// and every SAN is checked on every issue, so a list of thousands is a
/// mistake (or an attack on the operator's memory), not a need.
pub const MAX_EXTRA_SANS: usize = 100;

/// Why `ip` can name no host that nodes or clients reach (as an endpoint or
/// a certificate's address), if it cannot:
/// - the unspecified address (`0.0.0.0`, `::`) and the rest of 0.0.0.0/8,
///   "this network" (RFC 1122), which is only ever a source;
/// - the broadcast address 255.255.255.255 and the rest of 240.0.0.0/4,
///   reserved (RFC 1112): no stack routes to them;
/// - multicast (224.0.0.0/4, ff00::/8): a group, not a host;
/// - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`): Go's TLS and
///   kube-apiserver read them as the IPv4 address inside, so written this
///   way an address would slip past every check of IPv4 addresses (a mapped
///   loopback or link-local address above all). They are refused whatever
///   the address inside, with a hint to write it as IPv4.
///
/// Loopback and link-local addresses are left to the caller: a certificate
/// may well name 127.0.0.1 (a port-forward), an advertised endpoint may not.
pub fn unusable_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        _ if ip.is_unspecified() => Some("must be a specific address, not 0.0.0.0 or ::"),
        _ if ip.is_multicast() => Some("must not be a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => {
            Some("must not be the broadcast address 255.255.255.255")
        }
        IpAddr::V4(v4) if v4.octets()[0] >= 240 => {
            Some("must not be in 240.0.0.0/4, reserved: no host has such an address")
        }
        IpAddr::V4(v4) if v4.octets()[0] == 0 => {
            Some("must not be in 0.0.0.0/8 (\"this network\"): no host has such an address")
        }
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Some(
            "must not be an IPv4-mapped IPv6 address (::ffff:a.b.c.d): write the IPv4 address itself",
        ),
        _ => None,
    }
}

impl fmt::Display for San {
    /// openssl's spelling: `DNS:name` or `IP Address:addr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP Address:{ip}"),
        }
    }
}

/// Where the tenant's apiserver is reached from outside: `HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: San,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host`, `host:port`, `1.2.3.4:6443`, `[2001:db8::1]:6443` or a bare IPv6 address.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidInput> {
        let (host, port) = split_host_port(value)
            .ok_or_else(|| InvalidInput::new(field, value, "is not HOST or HOST:PORT"))?;
        let port = match port {
            None => DEFAULT_API_SERVER_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| InvalidInput::new(field, value, "has a port outside 1-65535"))?,
        };
        let host = San::parse(field, host)?;
        if matches!(&host, San::Dns(name) if name.starts_with("*.")) {
            return Err(InvalidInput::new(field, value, "cannot be a wildcard name"));
        }
        Ok(Self { host, port })
    }

    /// Parses `HOST:PORT` as `kubeadm join` takes it and as gantry prints it
    /// into a command line or a node's script: the port spelled out in
    /// digits, brackets around an IPv6 address and nowhere else. Stricter
    /// than [`Endpoint::parse`], which fills in a missing port, because the
    /// value comes back from a file or a Secret anyone may have edited.
    pub fn parse_host_port(field: &'static str, value: &str) -> Result<Self, InvalidInput> {
        let Some((_, port)) = split_host_port(value) else {
            return Err(InvalidInput::new(field, value, "is not HOST:PORT"));
        };
        match port {
            None => {
                return Err(InvalidInput::new(
                    field,
                    value,
                    "has no port: expected HOST:PORT such as 203.0.113.10:6443 or [2001:db8::1]:6443",
                ));
            }
            Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(InvalidInput::new(
                    field,
                    value,
                    "has a port outside 1-65535",
                ));
            }
            Some(_) => {}
        }
        let endpoint = Self::parse(field, value)?;
        let ipv6 = matches!(endpoint.host, San::Ip(IpAddr::V6(_)));
        if value.starts_with('[') != ipv6 {
            return Err(InvalidInput::new(
                field,
                value,
                "must put an IPv6 address in brackets, and nothing else",
            ));
        }
        Ok(endpoint)
    }

    /// `https://host:port`, with IPv6 addresses in brackets.
    pub fn url(&self) -> String {
        format!("https://{self}")
    }

    /// `host:port` for the same host on another port, IPv6 in brackets:
    /// where a second listener of the endpoint's host is reached (the
    /// konnectivity tunnel's agents).
    pub fn with_port(&self, port: u16) -> String {
        Endpoint {
            host: self.host.clone(),
            port,
        }
        .to_string()
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            San::Ip(ip) => Some(ip),
            San::Dns(_) => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            San::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            San::Ip(ip) => write!(f, "{ip}:{}", self.port),
            San::Dns(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn split_host_port(value: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    if value.parse::<IpAddr>().is_ok() {
        return Some((value, None));
    }
    match value.split_once(':') {
        None => Some((value, None)),
        Some((host, port)) if !port.contains(':') => Some((host, Some(port))),
        Some(_) => None,
    }
}

/// The key algorithm of every key in a tenant's PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 4] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The spelling of the `TenantControlPlane` API (`ECDSA-P256`, `RSA-2048`, …).
    pub fn api_name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
        }
    }

    pub fn is_rsa(self) -> bool {
        !matches!(self, KeyAlgorithm::EcdsaP256)
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = InvalidInput;

    /// Accepts the API spelling and the CLI's lower-case one (`ecdsa-p256`).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.api_name().eq_ignore_ascii_case(value))
            .ok_or_else(|| {
                InvalidInput::new(
                    "algorithm",
                    value,
                    "is not one of ecdsa-p256, rsa-2048, rsa-3072, rsa-4096",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_follow_dns_1123_labels_of_at_most_40_characters() {
        for good in ["a", "tenant-a", "t0", &"a".repeat(40)] {
            assert!(validate_tenant_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Tenant", "a_b", "a.b", &"a".repeat(41)] {
            let err = validate_tenant_name(bad).unwrap_err().to_string();
            assert!(err.starts_with("name "), "{err}");
        }
    }

    #[test]
    fn endpoints_parse_with_default_port_and_ipv6_brackets() {
        let e = Endpoint::parse("endpoint", "203.0.113.10").unwrap();
        assert_eq!(
            (e.ip(), e.port),
            (Some("203.0.113.10".parse().unwrap()), 6443)
        );
        assert_eq!(e.url(), "https://203.0.113.10:6443");
        let e = Endpoint::parse("endpoint", "api.example.com:443").unwrap();
        assert_eq!(e.host, San::Dns("api.example.com".into()));
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("endpoint", "[2001:db8::1]:7443").unwrap();
        assert_eq!(e.url(), "https://[2001:db8::1]:7443");
        assert_eq!(e.with_port(8132), "[2001:db8::1]:8132");
        assert_eq!(
            Endpoint::parse("endpoint", "api.example.com:443")
                .unwrap()
                .with_port(31000),
            "api.example.com:31000"
        );
        assert_eq!(
            Endpoint::parse("endpoint", "2001:db8::1").unwrap().port,
            6443
        );
        for bad in [
            "",
            "a:b",
            "host:0",
            "host:70000",
            "Bad_Host",
            "*.x.com",
            "[::1",
        ] {
            assert!(Endpoint::parse("endpoint", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_join_endpoint_is_host_and_port_spelled_out() {
        for (good, shown) in [
            ("203.0.113.10:6443", "203.0.113.10:6443"),
            ("api.example.com:443", "api.example.com:443"),
            ("[2001:db8::1]:7443", "[2001:db8::1]:7443"),
        ] {
            let endpoint = Endpoint::parse_host_port("endpoint", good).unwrap();
            assert_eq!(endpoint.to_string(), shown);
        }
        // Whatever an endpoint of a spec prints (the join Secret's, the
        // bundle's join-command) reads back as itself.
        for spec in [
            "203.0.113.10",
            "api.example.com",
            "2001:db8::1",
            "[fd00::10]:443",
        ] {
            let endpoint = Endpoint::parse("endpoint", spec).unwrap();
            assert_eq!(
                Endpoint::parse_host_port("endpoint", &endpoint.to_string()).unwrap(),
                endpoint
            );
        }
        for bad in [
            "",
            "203.0.113.10",
            "2001:db8::1",
            "2001:db8::1:6443",
            "host:",
            "host:+6443",
            "host:6443 ",
            "host:0",
            "[api.example.com]:6443",
            "[203.0.113.10]:6443",
            "[::ffff:192.0.2.1]:6443",
            "$(touch${IFS}/tmp/PWNED):6443",
            "`touch PWNED`:6443",
            "203.0.113.10:6443;touch${IFS}PWNED",
            "203.0.113.10:6443\ntouch PWNED",
        ] {
            assert!(
                Endpoint::parse_host_port("endpoint", bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn service_cidr_yields_the_first_and_tenth_address() {
        let mut spec = PkiSpec::new("t", Endpoint::parse("e", "10.0.0.1").unwrap()).unwrap();
        assert_eq!(spec.kubernetes_service_ip().to_string(), "10.96.0.1");
        assert_eq!(spec.dns_service_ip().to_string(), "10.96.0.10");
        spec.service_cidr = parse_cidr("service-cidr", "fd00:10:96::/112").unwrap();
        assert_eq!(spec.dns_service_ip().to_string(), "fd00:10:96::a");
        spec.service_cidr = parse_cidr("service-cidr", "10.0.0.0/29").unwrap();
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("too small")
        );
        let err = parse_cidr("service-cidr", "10.96.0.1/12")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "service-cidr \"10.96.0.1/12\": has host bits set; the network is 10.96.0.0/12"
        );
        assert!(parse_cidr("service-cidr", "10.96.0.0/33").is_err());
    }

    #[test]
    fn the_service_cluster_cidrs_are_not_default_routes() {
        for good in ["10.0.0.0/8", "0.0.0.0/1", "fd00::/8", "10.1.2.3/32"] {
            assert!(parse_service_cluster_cidr("f", good).is_ok(), "{good}");
        }
        for bad in ["0.0.0.0/0", "::/0"] {
            let error = parse_service_cluster_cidr("f", bad).unwrap_err();
            assert_eq!(error.value, bad);
            assert!(error.reason.contains("default route"), "{}", error.reason);
        }
        assert!(parse_service_cluster_cidr("f", "10.0.0.1/8").is_err());
    }

    #[test]
    fn at_most_100_extra_sans() {
        let mut spec = PkiSpec::new("t", Endpoint::parse("e", "10.0.0.1").unwrap()).unwrap();
        spec.extra_sans = (0..MAX_EXTRA_SANS)
            .map(|i| San::Dns(format!("n{i}.example.com")))
            .collect();
        assert_eq!(spec.validate(), Ok(()));
        spec.extra_sans
            .push(San::Dns("one-more.example.com".into()));
        let error = spec.validate().unwrap_err();
        assert_eq!(
            (error.field, error.value.as_str()),
            ("san", "one-more.example.com")
        );
    }

    #[test]
    fn algorithms_parse_in_api_and_cli_spelling() {
        assert_eq!(
            "ECDSA-P256".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcdsaP256
        );
        assert_eq!(
            "rsa-3072".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::Rsa3072
        );
        let err = "dsa".parse::<KeyAlgorithm>().unwrap_err().to_string();
        assert!(err.starts_with("algorithm \"dsa\""), "{err}");
    }

    #[test]
    fn sans_are_ips_or_lower_case_dns_names() {
        assert_eq!(
            San::parse("san", "10.0.0.1").unwrap(),
            San::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            San::parse("san", "*.apps.example.com").unwrap().to_string(),
            "DNS:*.apps.example.com"
        );
        for bad in ["", "UPPER.example.com", "a..b", "has space", "-a.com"] {
            assert!(San::parse("san", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_that_name_no_host_are_refused_as_sans_and_endpoints() {
        for good in [
            "10.0.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "1.0.0.0",
            "223.255.255.255",
            "2001:db8::1",
            "::1",
            "64:ff9b::1",
        ] {
            assert!(unusable_address(good.parse().unwrap()).is_none(), "{good}");
            assert!(San::parse("san", good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("0.0.0.0", "a specific address"),
            ("::", "a specific address"),
            ("0.1.2.3", "0.0.0.0/8"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "240.0.0.0/4"),
            ("254.1.1.1", "240.0.0.0/4"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:203.0.113.10", "IPv4-mapped"),
            ("::ffff:255.255.255.255", "IPv4-mapped"),
        ] {
            let error = San::parse("san", bad).unwrap_err();
            assert_eq!((error.field, error.value.as_str()), ("san", bad));
            assert!(error.reason.contains(reason), "{bad}: {}", error.reason);
            let endpoint = if bad.contains(':') {
                format!("[{bad}]:6443")
            } else {
                format!("{bad}:6443")
            };
            let error = Endpoint::parse("endpoint", &endpoint).unwrap_err();
            assert!(
                error.reason.contains(reason),
                "{endpoint}: {}",
                error.reason
            );
        }
    }
}
