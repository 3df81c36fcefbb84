//! gantry-operator's RBAC in the tenant, read as the apiserver's RBAC
//! authorizer and escalation checks would, for every supported version:
//! - it may send every request the operator sends for the tenant set (get,
//!   patch and create each object by name; create the bootstrap-token Secret
//!   without a name) and for the kubelet-serving approver;
//! - every role it writes, it holds, and every binding it writes binds a role
//!   it holds or may `bind` by name (else the apiserver refuses the write);
//! - it holds no wildcard, no `escalate`, no `impersonate`, may not read
//!   Secrets, may only read the privileged set, and binds only four node roles.
//!
//! tests/operator_access.rs proves the same on the real apiserver for the
//! newest version.

use gantry_controller::api::TenantControlPlane;
use gantry_controller::reconcile::operator_access::TenantSet;
use gantry_controller::resolve::{offline_endpoint, resolve};
use gantry_pki::{BootstrapToken, FileSet};
use gantry_renderer::RenderedObject;
use serde_json::Value;
use time::OffsetDateTime;

/// One RBAC rule, as the authorizer reads it.
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn rules_of(role: &Value) -> Vec<Rule> {
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| Rule {
            groups: strings(&rule["apiGroups"]),
            resources: strings(&rule["resources"]),
            names: strings(&rule["resourceNames"]),
            verbs: strings(&rule["verbs"]),
        })
        .collect()
}

/// One request: (group, resource, name: None for a create without one, verb).
type Request<'a> = (&'a str, &'a str, Option<&'a str>, &'a str);

/// gantry-operator's rules: the ClusterRole everywhere, each Role in its namespace.
struct OperatorRules {
    cluster: Vec<Rule>,
    namespaced: Vec<(String, Vec<Rule>)>,
}

impl OperatorRules {
    fn of(privileged: &[&RenderedObject]) -> Self {
        let mut rules = OperatorRules {
            cluster: Vec::new(),
            namespaced: Vec::new(),
        };
        for object in privileged.iter().filter(|o| o.name == "gantry:operator") {
            match object.kind.as_str() {
                "ClusterRole" => rules.cluster = rules_of(&object.value),
                "Role" => rules
                    .namespaced
                    .push((namespace(object).into(), rules_of(&object.value))),
                _ => {}
            }
        }
        rules
    }

    /// Whether a request in `namespace` ("" for cluster scope) is allowed.
    fn allows(&self, namespace: &str, (group, resource, name, verb): Request) -> bool {
        let matches = |rule: &Rule| {
            rule.groups.iter().any(|g| g == group)
                && rule.resources.iter().any(|r| r == resource)
                && rule.verbs.iter().any(|v| v == verb)
                && (rule.names.is_empty()
                    || name.is_some_and(|n| rule.names.iter().any(|r| r == n)))
        };
        let local = self
            .namespaced
            .iter()
            .filter(|(ns, _)| ns == namespace && !namespace.is_empty())
            .flat_map(|(_, rules)| rules);
        self.cluster.iter().chain(local).any(matches)
    }

    /// Whether it holds every permission of `rule` in `namespace`.
    fn holds(&self, namespace: &str, rule: &Rule) -> bool {
        let names: Vec<Option<&str>> = match rule.names.is_empty() {
            true => vec![None],
            false => rule.names.iter().map(|n| Some(n.as_str())).collect(),
        };
        rule.groups.iter().all(|group| {
            rule.resources.iter().all(|resource| {
                rule.verbs.iter().all(|verb| {
                    names
                        .iter()
                        .all(|name| self.allows_exactly(namespace, (group, resource, *name, verb)))
                })
            })
        })
    }

    /// [`allows`], where `None` means every name (a rule without resourceNames).
    fn allows_exactly(&self, namespace: &str, request: Request) -> bool {
        match request.2 {
            Some(_) => self.allows(namespace, request),
            None => {
                let (group, resource, _, verb) = request;
                self.cluster
                    .iter()
                    .chain(
                        self.namespaced
                            .iter()
                            .filter(|(ns, _)| ns == namespace)
                            .flat_map(|(_, r)| r),
                    )
                    .any(|rule| {
                        rule.names.is_empty()
                            && rule.groups.iter().any(|g| g == group)
                            && rule.resources.iter().any(|r| r == resource)
                            && rule.verbs.iter().any(|v| v == verb)
                    })
            }
        }
    }
}

fn namespace(object: &RenderedObject) -> &str {
    object.value["metadata"]["namespace"].as_str().unwrap_or("")
}

/// (group, resource) of a kind the tenant set holds.
fn resource_of(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "ConfigMap" => ("", "configmaps"),
        "Secret" => ("", "secrets"),
        "Service" => ("", "services"),
        "ServiceAccount" => ("", "serviceaccounts"),
        "DaemonSet" => ("apps", "daemonsets"),
        "Deployment" => ("apps", "deployments"),
        "Role" => ("rbac.authorization.k8s.io", "roles"),
        "RoleBinding" => ("rbac.authorization.k8s.io", "rolebindings"),
        "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles"),
        "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings"),
        other => panic!("the tenant set holds a {other}: add its resource here"),
    }
}

/// The tenant set of the example tenant at `version`.
fn tenant_set(version: &str) -> Vec<RenderedObject> {
    let text = include_str!("../../examples/tenant-a.yaml").replace("1.35.5", version);
    let manifest = TenantControlPlane::from_yaml(&text).unwrap();
    let now = OffsetDateTime::now_utc();
    let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
    let endpoint = offline_endpoint(&manifest).unwrap();
    let service_cluster = gantry_renderer::ServiceCluster::default();
    let resolved = resolve(&manifest, &endpoint, token, None, now, &service_cluster).unwrap();
    let pki = gantry_pki::issue(&resolved.pki, &FileSet::new(), now)
        .unwrap()
        .bundle;
    gantry_renderer::render(&resolved.input, &pki)
        .unwrap()
        .tenant
}

fn versions() -> Vec<String> {
    gantry_renderer::versions::SUPPORTED
        .iter()
        .map(|r| format!("1.{}.{}", r.minor, r.default_patch))
        .collect()
}

#[test]
fn the_operator_may_send_every_request_of_the_tenant_set_and_the_approver() {
    for version in versions() {
        let objects = tenant_set(&version);
        let (privileged, written): (Vec<_>, Vec<_>) =
            objects.iter().partition(|o| o.is_privileged());
        let rules = OperatorRules::of(&privileged);
        assert_eq!(
            TenantSet::of(objects.iter().map(|o| &o.value))
                .operator
                .len(),
            written.len()
        );
        for object in &written {
            let (group, resource) = resource_of(&object.kind);
            let scope = namespace(object);
            if object.kind == "Secret" {
                assert!(
                    rules.allows(scope, (group, resource, None, "create")),
                    "{version}: create Secret"
                );
                assert!(
                    !rules.allows(scope, (group, resource, Some(&object.name), "get")),
                    "{version}: reads a Secret"
                );
                continue;
            }
            for verb in ["get", "patch", "create"] {
                let request = (group, resource, Some(object.name.as_str()), verb);
                assert!(
                    rules.allows(scope, request),
                    "{version}: {verb} {} {scope}/{}",
                    object.kind,
                    object.name
                );
            }
        }
        for object in &privileged {
            let (group, resource) = resource_of(&object.kind);
            let name = Some(object.name.as_str());
            let scope = namespace(object);
            assert!(
                rules.allows(scope, (group, resource, name, "get")),
                "{version}: checks {}",
                object.name
            );
            for verb in ["patch", "create", "update", "delete"] {
                assert!(
                    !rules.allows(scope, (group, resource, name, verb)),
                    "{version}: {verb} {}",
                    object.name
                );
            }
        }
        let approver: [Request; 6] = [
            (
                "certificates.k8s.io",
                "certificatesigningrequests",
                None,
                "list",
            ),
            (
                "certificates.k8s.io",
                "certificatesigningrequests",
                None,
                "watch",
            ),
            (
                "certificates.k8s.io",
                "certificatesigningrequests",
                Some("csr-x"),
                "get",
            ),
            (
                "certificates.k8s.io",
                "certificatesigningrequests/approval",
                Some("csr-x"),
                "update",
            ),
            (
                "certificates.k8s.io",
                "signers",
                Some("kubernetes.io/kubelet-serving"),
                "approve",
            ),
            ("", "nodes", None, "list"),
        ];
        for request in approver {
            assert!(
                rules.allows("", request),
                "{version}: the approver's {request:?}"
            );
        }
        assert!(!rules.allows(
            "",
            (
                "certificates.k8s.io",
                "signers",
                Some("kubernetes.io/kube-apiserver-client"),
                "approve"
            )
        ));
    }
}

#[test]
fn every_role_it_writes_it_holds_and_every_binding_it_may_make() {
    for version in versions() {
        let objects = tenant_set(&version);
        let (privileged, written): (Vec<_>, Vec<_>) =
            objects.iter().partition(|o| o.is_privileged());
        let rules = OperatorRules::of(&privileged);
        let role = |kind: &str, scope: &str, name: &str| {
            written
                .iter()
                .find(|o| o.kind == kind && o.name == name && namespace(o) == scope)
                .map(|o| rules_of(&o.value))
        };
        for object in written.iter().filter(|o| o.kind.ends_with("Role")) {
            for rule in rules_of(&object.value) {
                assert!(
                    rules.holds(namespace(object), &rule),
                    "{version}: {} {} needs escalate",
                    object.kind,
                    object.name
                );
            }
        }
        for binding in written.iter().filter(|o| o.kind.ends_with("RoleBinding")) {
            let scope = namespace(binding);
            let (kind, name) = (
                binding.value["roleRef"]["kind"].as_str().unwrap(),
                binding.value["roleRef"]["name"].as_str().unwrap(),
            );
            let role_scope = if kind == "ClusterRole" { "" } else { scope };
            let held = role(kind, role_scope, name)
                .is_some_and(|role_rules| role_rules.iter().all(|r| rules.holds(scope, r)));
            let bindable = kind == "ClusterRole"
                && rules.allows(
                    scope,
                    (
                        "rbac.authorization.k8s.io",
                        "clusterroles",
                        Some(name),
                        "bind",
                    ),
                );
            assert!(
                held || bindable,
                "{version}: {} {} binds {kind} {name}",
                binding.kind,
                binding.name
            );
        }
    }
}

#[test]
fn it_holds_no_wildcard_escalate_impersonate_or_secret_read() {
    let objects = tenant_set(&versions().pop().unwrap());
    let privileged: Vec<_> = objects.iter().filter(|o| o.is_privileged()).collect();
    let rules = OperatorRules::of(&privileged);
    let all = rules
        .cluster
        .iter()
        .chain(rules.namespaced.iter().flat_map(|(_, r)| r));
    let mut bound = Vec::new();
    for rule in all {
        for field in [&rule.groups, &rule.resources, &rule.verbs, &rule.names] {
            assert!(
                !field.iter().any(|v| v.contains('*')),
                "a wildcard in {field:?}"
            );
        }
        for verb in [
            "escalate",
            "impersonate",
            "delete",
            "deletecollection",
            "update",
        ] {
            let subresource = rule.resources.iter().all(|r| r.ends_with("/approval"));
            assert!(
                !rule.verbs.iter().any(|v| v == verb) || (verb == "update" && subresource),
                "{verb}"
            );
        }
        if rule.verbs.iter().any(|v| v == "bind") {
            bound.extend(rule.names.clone());
        }
    }
    bound.sort();
    assert_eq!(
        bound,
        [
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:node-bootstrapper",
            "system:node-proxier",
        ]
    );
    for scope in ["", "kube-system", "kube-public", "default"] {
        for verb in ["get", "list", "watch"] {
            assert!(
                !rules.allows(scope, ("", "secrets", Some("anything"), verb)),
                "{verb} secrets in {scope:?}"
            );
        }
    }
    assert!(!rules.allows(
        "",
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            Some("cluster-admin"),
            "bind"
        )
    ));
    // The privileged set is the operator's RBAC and the two admin bindings.
    let mut names: Vec<String> = privileged
        .iter()
        .map(|o| format!("{} {}", o.kind, o.name))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ClusterRole gantry:operator",
            "ClusterRoleBinding gantry:operator",
            "ClusterRoleBinding kubeadm:apiserver-kubelet-client",
            "ClusterRoleBinding kubeadm:cluster-admins",
            "Role gantry:operator",
            "Role gantry:operator",
            "RoleBinding gantry:operator",
            "RoleBinding gantry:operator",
        ]
    );
}
