//! What a `TenantControlPlane`'s `extraArgs` may not set: one list, read by
//! the CRD's CEL rules (so the API server refuses the object) and by the
//! renderer (so `gantry render` refuses the manifest), with the same words.
//! docs/security.md explains the policy.
//!
//! A flag is refused when gantry sets it (certificates, etcd, the service
//! network, the audit policy, the authentication configuration: overriding
//! one breaks the tenant or reaches outside it), or when a value would
//! weaken authentication, authorization, admission or TLS.

/// The values a flag may take in `extraArgs`.
#[derive(Clone, Copy)]
pub enum Allowed {
    /// None: gantry sets the flag, or no value of it is safe.
    Never,
    /// Exactly one of these values.
    OneOf(&'static [&'static str]),
    /// A comma-separated list that holds every `required` item, no
    /// `forbidden` one, and (when `only` is not empty) nothing else.
    List {
        required: &'static [&'static str],
        forbidden: &'static [&'static str],
        only: &'static [&'static str],
    },
    /// A duration of whole hours, minutes and seconds (`48h`, `90m`,
    /// `1h30m`), from `min` to `max` (both written so).
    Duration {
        min: &'static str,
        max: &'static str,
    },
}

/// The durations [`Allowed::Duration`] reads: `[Nh][Nm][Ns]`, each number
/// of at most six digits, at least one part. The CEL rule checks the same
/// pattern before it asks `duration()`, which would fail on anything else.
const DURATION_PATTERN: &str = "^([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$";

/// Seconds in `text` if it is a duration [`DURATION_PATTERN`] takes.
pub fn duration_seconds(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0u64;
    for (unit, seconds) in [('h', 3600), ('m', 60), ('s', 1)] {
        if let Some(at) = rest.find(unit) {
            let number = &rest[..at];
            let digits_only = number.bytes().all(|b| b.is_ascii_digit());
            if number.is_empty() || number.len() > 6 || !digits_only {
                return None;
            }
            total += number.parse::<u64>().ok()? * seconds;
            rest = &rest[at + 1..];
        }
    }
    rest.is_empty().then_some(total)
}

/// One flag of the policy and why it is bounded.
#[derive(Clone, Copy)]
pub struct FlagRule {
    pub flag: &'static str,
    pub allowed: Allowed,
    pub why: &'static str,
}

const SET_BY_GANTRY: &str = "is set by gantry and cannot be overridden";

const fn owned(flag: &'static str) -> FlagRule {
    FlagRule {
        flag,
        allowed: Allowed::Never,
        why: SET_BY_GANTRY,
    }
}

/// The TLS 1.2 cipher suites gantry serves (CIS 1.2.29): ECDHE key exchange
/// with AES-GCM or ChaCha20-Poly1305. `extraArgs` may narrow the list.
pub const TLS_CIPHER_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/// The admission plugins gantry enables, which `extraArgs` must keep.
pub const ADMISSION_PLUGINS: &[&str] = &["NodeRestriction", "DenyServiceExternalIPs"];

const TLS_RULES: [FlagRule; 3] = [
    FlagRule {
        flag: "tls-min-version",
        allowed: Allowed::OneOf(&["VersionTLS12", "VersionTLS13"]),
        why: "must be VersionTLS12 or VersionTLS13",
    },
    FlagRule {
        flag: "tls-cipher-suites",
        allowed: Allowed::List {
            required: &[],
            forbidden: &[],
            only: TLS_CIPHER_SUITES,
        },
        why: "may only list ECDHE suites with AES-GCM or ChaCha20-Poly1305",
    },
    FlagRule {
        flag: "profiling",
        allowed: Allowed::OneOf(&["false"]),
        why: "must stay false: profiling exposes the process's internals",
    },
];

/// Log verbosity: from level 5 the components log requests in detail (at
/// 8 and above, whole request and response bodies, Secrets among them).
const VERBOSITY_RULES: [FlagRule; 2] = [
    FlagRule {
        flag: "v",
        allowed: Allowed::OneOf(&["0", "1", "2", "3", "4"]),
        why: "must be 0 to 4: higher levels log requests in detail, Secrets' bodies among them",
    },
    FlagRule {
        flag: "vmodule",
        allowed: Allowed::Never,
        why: "would raise the log level per file past what v allows",
    },
];

/// The front proxy's headers (`requestheader-*`): which client certificates
/// may assert a user, and in which headers. gantry sets them for its
/// aggregation layer; an empty allowed-names list would let any certificate
/// of the front-proxy CA assert any user.
const REQUEST_HEADER_RULES: [FlagRule; 6] = [
    owned("requestheader-allowed-names"),
    owned("requestheader-client-ca-file"),
    owned("requestheader-extra-headers-prefix"),
    owned("requestheader-group-headers"),
    owned("requestheader-username-headers"),
    FlagRule {
        flag: "requestheader-uid-headers",
        allowed: Allowed::Never,
        why: "would let the front proxy's clients assert a user's UID",
    },
];

/// kube-apiserver.
pub const API_SERVER: &[FlagRule] = &[
    owned("advertise-address"),
    FlagRule {
        flag: "api-audiences",
        allowed: Allowed::Never,
        why: "would accept tokens minted for other audiences (the issuer is the audience)",
    },
    // Anonymous access is configured in gantry's AuthenticationConfiguration,
    // which the apiserver refuses to combine with this flag.
    owned("anonymous-auth"),
    owned("audit-log-path"),
    owned("audit-policy-file"),
    owned("authentication-config"),
    FlagRule {
        flag: "authorization-config",
        allowed: Allowed::Never,
        why: "would replace the Node and RBAC authorizers",
    },
    FlagRule {
        flag: "authorization-mode",
        allowed: Allowed::OneOf(&["Node,RBAC", "Node,RBAC,Webhook"]),
        why: "must be Node,RBAC, optionally followed by Webhook",
    },
    owned("client-ca-file"),
    FlagRule {
        flag: "disable-admission-plugins",
        allowed: Allowed::List {
            required: &[],
            forbidden: &[
                "NodeRestriction",
                "DenyServiceExternalIPs",
                "ServiceAccount",
                "NamespaceLifecycle",
            ],
            only: &[],
        },
        why: "must not disable NodeRestriction, DenyServiceExternalIPs, ServiceAccount or NamespaceLifecycle",
    },
    FlagRule {
        flag: "enable-admission-plugins",
        allowed: Allowed::List {
            required: ADMISSION_PLUGINS,
            forbidden: &["AlwaysAdmit"],
            only: &[],
        },
        why: "must keep NodeRestriction and DenyServiceExternalIPs and must not hold AlwaysAdmit",
    },
    // The tunnel (spec.konnectivity) is configured by gantry; another egress
    // configuration could send the apiserver's dials into the service cluster.
    owned("egress-selector-config-file"),
    owned("enable-bootstrap-token-auth"),
    owned("encryption-provider-config"),
    owned("encryption-provider-config-automatic-reload"),
    owned("etcd-cafile"),
    owned("etcd-certfile"),
    owned("etcd-keyfile"),
    owned("etcd-servers"),
    FlagRule {
        flag: "etcd-servers-overrides",
        allowed: Allowed::Never,
        why: "would point resources at another etcd, such as another tenant's",
    },
    FlagRule {
        flag: "insecure-bind-address",
        allowed: Allowed::Never,
        why: "would serve without TLS or authentication",
    },
    FlagRule {
        flag: "insecure-port",
        allowed: Allowed::Never,
        why: "would serve without TLS or authentication",
    },
    owned("kubelet-certificate-authority"),
    owned("kubelet-client-certificate"),
    owned("kubelet-client-key"),
    owned("proxy-client-cert-file"),
    owned("proxy-client-key-file"),
    REQUEST_HEADER_RULES[0],
    REQUEST_HEADER_RULES[1],
    REQUEST_HEADER_RULES[2],
    REQUEST_HEADER_RULES[3],
    REQUEST_HEADER_RULES[4],
    REQUEST_HEADER_RULES[5],
    owned("secure-port"),
    FlagRule {
        flag: "service-account-extend-token-expiration",
        allowed: Allowed::OneOf(&["false"]),
        why: "must stay false: tokens live as long as they say",
    },
    owned("service-account-issuer"),
    owned("service-account-key-file"),
    // kube-apiserver itself refuses less than an hour.
    FlagRule {
        flag: "service-account-max-token-expiration",
        allowed: Allowed::Duration {
            min: "1h",
            max: "48h",
        },
        why: "must be a duration from 1h to 48h: a stolen token stays valid that long",
    },
    FlagRule {
        flag: "service-account-lookup",
        allowed: Allowed::OneOf(&["true"]),
        why: "must stay true: deleted service accounts' tokens stop working",
    },
    owned("service-account-signing-key-file"),
    owned("service-cluster-ip-range"),
    owned("tls-cert-file"),
    owned("tls-private-key-file"),
    FlagRule {
        flag: "token-auth-file",
        allowed: Allowed::Never,
        why: "static tokens cannot be revoked or rotated (CIS 1.2.2)",
    },
    TLS_RULES[0],
    TLS_RULES[1],
    TLS_RULES[2],
    VERBOSITY_RULES[0],
    VERBOSITY_RULES[1],
];

/// kube-controller-manager and kube-scheduler (one CRD type holds both
/// specs, so one list; a flag only one of them has is refused for both).
pub const CONTROLLER_MANAGER_AND_SCHEDULER: &[FlagRule] = &[
    owned("authentication-kubeconfig"),
    owned("authorization-kubeconfig"),
    // The kubelet's probes and the NetworkPolicies reach the pod's address.
    FlagRule {
        flag: "bind-address",
        allowed: Allowed::Never,
        why: "is left to gantry: the probes and the NetworkPolicies expect the pod's address",
    },
    owned("client-ca-file"),
    owned("cluster-cidr"),
    owned("cluster-signing-cert-file"),
    // The kubelets' client and serving certificates, which the
    // controller-manager signs with the tenant's CA.
    FlagRule {
        flag: "cluster-signing-duration",
        allowed: Allowed::Duration {
            min: "1h",
            max: "8760h",
        },
        why: "must be a duration from 1h to 8760h: the certificates it signs live that long",
    },
    owned("cluster-signing-key-file"),
    FlagRule {
        flag: "feature-gates",
        allowed: Allowed::Never,
        why: "would turn on controllers and scheduling features gantry does not test, alpha ones among them",
    },
    owned("kubeconfig"),
    FlagRule {
        flag: "master",
        allowed: Allowed::Never,
        why: "would point it at another API server than its tenant's",
    },
    owned("requestheader-client-ca-file"),
    owned("root-ca-file"),
    owned("service-account-private-key-file"),
    owned("service-cluster-ip-range"),
    FlagRule {
        flag: "use-service-account-credentials",
        allowed: Allowed::OneOf(&["true"]),
        why: "must stay true: each controller acts with its own, narrow credentials",
    },
    // Two replicas without leader election both run every controller (two
    // allocators of node CIDRs, two signers, two ReplicaSet controllers
    // racing). One replica is not safe either: a rolling update starts the
    // new pod beside the old one (maxSurge 25%, rounded up to 1).
    FlagRule {
        flag: "leader-elect",
        allowed: Allowed::OneOf(&["true"]),
        why: "must stay true: replicas (and the old and new pod of a rolling update) would all act at once",
    },
    // Paths served without authorization. The kubelet's probes, which
    // carry no credentials, use these three (the controller-manager's
    // /healthz, the scheduler's /livez and /readyz): each must stay, and
    // nothing else may join them (`/*` would open /metrics, /debug and
    // /configz to anyone who reaches the pod).
    FlagRule {
        flag: "authorization-always-allow-paths",
        allowed: Allowed::List {
            required: ALWAYS_ALLOWED_PATHS,
            forbidden: &[],
            only: ALWAYS_ALLOWED_PATHS,
        },
        why: "must be /healthz,/readyz,/livez (in any order): the probes need them, and any other path would be served without authorization",
    },
    TLS_RULES[0],
    TLS_RULES[1],
    TLS_RULES[2],
    VERBOSITY_RULES[0],
    VERBOSITY_RULES[1],
];

/// The controller-manager's and scheduler's default
/// `--authorization-always-allow-paths`, the only ones `extraArgs` may name.
pub const ALWAYS_ALLOWED_PATHS: &[&str] = &["/healthz", "/readyz", "/livez"];

/// Values of `rule`'s flag that its policy allows, and values it refuses:
/// what the tests give the CRD's CEL (in the unit tests and on a real API
/// server) and the renderer, so that every flag of the list is tried.
pub fn samples(rule: &FlagRule) -> (Vec<String>, Vec<String>) {
    match rule.allowed {
        Allowed::Never => (vec![], vec!["x".into(), "".into()]),
        Allowed::OneOf(values) => (
            values.iter().map(|v| v.to_string()).collect(),
            vec!["AlwaysAllow".into(), format!("{},x", values[0]), "".into()],
        ),
        Allowed::List {
            required,
            forbidden,
            only,
        } => {
            let mut good = required.to_vec();
            good.extend_from_slice(&only[..only.len().min(2)]);
            if good.is_empty() {
                good.push("PodNodeSelector");
            }
            let good = good.join(",");
            let mut bad = forbidden
                .iter()
                .map(|item| format!("{good},{item}"))
                .collect::<Vec<_>>();
            bad.extend(required.iter().map(|item| good.replace(item, "Other")));
            if !only.is_empty() {
                bad.push(format!("{good},TLS_RSA_WITH_AES_128_CBC_SHA"));
            }
            (vec![good], bad)
        }
        Allowed::Duration { min, max } => {
            let seconds = |text: &str| duration_seconds(text).unwrap();
            (
                vec![min.to_string(), max.to_string()],
                vec![
                    format!("{}s", seconds(min) - 1),
                    format!("{}s", seconds(max) + 1),
                    "1d".into(),
                    "-1h".into(),
                    "1.5h".into(),
                    "".into(),
                ],
            )
        }
    }
}

/// Why `value` is refused for `flag` under `rules`, if it is.
pub fn refusal(rules: &[FlagRule], flag: &str, value: &str) -> Option<&'static str> {
    let rule = rules.iter().find(|rule| rule.flag == flag)?;
    let items: Vec<&str> = value.split(',').collect();
    let allowed = match &rule.allowed {
        Allowed::Never => false,
        Allowed::OneOf(values) => values.contains(&value),
        Allowed::List {
            required,
            forbidden,
            only,
        } => {
            required.iter().all(|item| items.contains(item))
                && !forbidden.iter().any(|item| items.contains(item))
                && (only.is_empty() || items.iter().all(|item| only.contains(item)))
        }
        Allowed::Duration { min, max } => {
            let bound = |text: &str| duration_seconds(text).expect("the policy's bounds parse");
            duration_seconds(value).is_some_and(|v| (bound(min)..=bound(max)).contains(&v))
        }
    };
    (!allowed).then_some(rule.why)
}

/// The CEL rule for an `extraArgs` map under `rules`: true when no flag is
/// refused. Its message expression names the first refused flag.
///
/// Both iterate over the policy's fixed list and look flags up in the map,
/// never over the map's entries: the API server bounds a rule's estimated
/// cost, and a loop over 100 entries of up to 4 KiB each exceeds it.
pub fn cel_rule(rules: &[FlagRule]) -> kube::core::Rule {
    let never: Vec<String> = rules
        .iter()
        .filter(|rule| matches!(rule.allowed, Allowed::Never))
        .map(|rule| format!("'{}'", rule.flag))
        .collect();
    let never = format!("[{}]", never.join(", "));
    let bounded: Vec<(&str, String)> = rules
        .iter()
        .filter_map(|rule| Some((rule.flag, refused_value_cel(rule)?)))
        .collect();
    let rule = std::iter::once(format!("!{never}.exists(f, f in self)"))
        .chain(bounded.iter().map(|(_, bad)| format!("!({bad})")))
        .collect::<Vec<_>>()
        .join(" && ");
    let refused_flags = std::iter::once(format!("{never}.filter(f, f in self)"))
        .chain(
            bounded
                .iter()
                .map(|(flag, bad)| format!("(({bad}) ? ['{flag}'] : [])")),
        )
        .collect::<Vec<_>>()
        .join(" + ");
    kube::core::Rule::new(rule).message(kube::core::Message::Expression(format!(
        "'extraArgs: --' + ({refused_flags})[0] + ' is refused: gantry sets it, \
         or its value weakens the control plane (docs/security.md)'"
    )))
}

/// A CEL expression, true when the map holds `rule`'s flag with a refused
/// value; `None` for a flag refused whatever its value.
fn refused_value_cel(rule: &FlagRule) -> Option<String> {
    let value = format!("self['{}']", rule.flag);
    let bad = match &rule.allowed {
        Allowed::Never => return None,
        Allowed::OneOf(values) => {
            let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
            format!("!({value} in [{}])", quoted.join(", "))
        }
        Allowed::List {
            required,
            forbidden,
            only,
        } => {
            let has = |item: &str| format!("{value}.matches('(^|,){item}(,|$)')");
            let mut bad: Vec<String> = required.iter().map(|i| format!("!{}", has(i))).collect();
            bad.extend(forbidden.iter().map(|i| has(i)));
            if !only.is_empty() {
                let one = format!("({})", only.join("|"));
                bad.push(format!("!{value}.matches('^{one}(,{one})*$')"));
            }
            bad.join(" || ")
        }
        Allowed::Duration { min, max } => format!(
            "!({value}.matches('{DURATION_PATTERN}') && {value} != '' \
             && duration({value}) >= duration('{min}') && duration({value}) <= duration('{max}'))"
        ),
    };
    Some(format!("'{}' in self && ({bad})", rule.flag))
}
