//! gantry-operator's RBAC in the tenant, read as the apiserver's RBAC
//! authorizer and escalation checks would, for every supported version. It
//! grants exactly what the operator needs, no more:
//! - every request the operator sends for the tenant set (get, patch and
//!   create each object by name; create the bootstrap-token Secret without
//!   a name; get each object of the privileged set) and for the
//!   kubelet-serving approver;
//! - every rule of every role it writes (else the apiserver refuses the
//!   write as an escalation), and `bind` on the roles its bindings name that
//!   the set does not hold.
//!
//! tests/operator_access.rs proves the same on the real apiserver for the
//! newest version.

use std::collections::BTreeSet;

use gantry_controller::api::TenantControlPlane;
use gantry_controller::reconcile::operator_access::TenantSet;
use gantry_controller::resolve::{offline_endpoint, resolve};
use gantry_pki::{BootstrapToken, FileSet};
use gantry_renderer::RenderedObject;
use serde_json::Value;
use time::OffsetDateTime;

/// One permission or request: (namespace, "" for cluster-wide; group;
/// resource; verb; name, "*" for any).
type Atom = (String, String, String, String, String);

fn atom(scope: &str, group: &str, resource: &str, verb: &str, name: &str) -> Atom {
    let text = |s: &str| s.to_string();
    (
        text(scope),
        text(group),
        text(resource),
        text(verb),
        text(name),
    )
}

fn strings(value: &Value) -> Vec<String> {
    let items = value.as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The permissions of a role's rules, in `scope`.
fn atoms(scope: &str, role: &Value) -> Vec<Atom> {
    let mut atoms = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        let mut names = strings(&rule["resourceNames"]);
        if names.is_empty() {
            names.push("*".into());
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in &names {
                        atoms.push(atom(scope, &group, &resource, &verb, name));
                    }
                }
            }
        }
    }
    atoms
}

/// What gantry-operator may do: its ClusterRole everywhere, each Role in
/// its namespace.
struct Grants(BTreeSet<Atom>);

impl Grants {
    fn of(objects: &[RenderedObject]) -> Self {
        let roles = operator_roles(objects);
        Grants(roles.flat_map(|o| atoms(namespace(o), &o.value)).collect())
    }

    /// Whether a request is allowed: by a grant cluster-wide or in its
    /// namespace, for its name or for any. A request for any name ("*":
    /// a list, or a create without one) needs a grant for any.
    fn allows(&self, (scope, group, resource, verb, name): &Atom) -> bool {
        [String::new(), scope.clone()].iter().any(|s| {
            [name.clone(), "*".into()].iter().any(|n| {
                self.0.contains(&(
                    s.clone(),
                    group.clone(),
                    resource.clone(),
                    verb.clone(),
                    n.clone(),
                ))
            })
        })
    }
}

/// gantry-operator's ClusterRole and Roles.
fn operator_roles(objects: &[RenderedObject]) -> impl Iterator<Item = &RenderedObject> {
    objects
        .iter()
        .filter(|o| o.is_privileged() && o.name == "gantry:operator" && o.kind.ends_with("Role"))
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

/// What the operator needs, in the order of this file's header.
fn needed(objects: &[RenderedObject]) -> BTreeSet<Atom> {
    let mut needed = BTreeSet::new();
    for object in objects {
        let (group, resource) = resource_of(&object.kind);
        let scope = namespace(object);
        let bootstrap_token = object.value["type"] == "bootstrap.kubernetes.io/token";
        let requests: &[(&str, &str)] = match (object.is_privileged(), object.kind.as_str()) {
            (true, _) => &[("get", object.name.as_str())],
            // A bootstrap token is created blind; other Secrets are applied.
            (false, "Secret") if bootstrap_token => &[("create", "*")],
            (false, _) => &[
                ("get", object.name.as_str()),
                ("patch", object.name.as_str()),
                ("create", object.name.as_str()),
            ],
        };
        for (verb, name) in requests {
            needed.insert(atom(scope, group, resource, verb, name));
        }
        if object.is_privileged() {
            continue;
        }
        if object.kind.ends_with("Role") {
            needed.extend(atoms(scope, &object.value));
        }
        if object.kind.ends_with("RoleBinding") {
            let role = object.value["roleRef"]["name"].as_str().unwrap();
            if !objects
                .iter()
                .any(|o| o.kind.ends_with("Role") && o.name == role)
            {
                needed.insert(atom(
                    "",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    "bind",
                    role,
                ));
            }
        }
    }
    let certificates = "certificates.k8s.io";
    let csrs = "certificatesigningrequests";
    for verb in ["get", "list", "watch"] {
        needed.insert(atom("", certificates, csrs, verb, "*"));
    }
    needed.insert(atom(
        "",
        certificates,
        &format!("{csrs}/approval"),
        "update",
        "*",
    ));
    needed.insert(atom(
        "",
        certificates,
        "signers",
        "approve",
        "kubernetes.io/kubelet-serving",
    ));
    needed.insert(atom("", "", "nodes", "list", "*"));
    needed
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
fn it_may_do_everything_it_needs() {
    for version in versions() {
        let objects = tenant_set(&version);
        let grants = Grants::of(&objects);
        let missing: Vec<Atom> = needed(&objects)
            .into_iter()
            .filter(|a| !grants.allows(a))
            .collect();
        assert!(
            missing.is_empty(),
            "{version}: needed, not granted: {missing:#?}"
        );
    }
}

#[test]
fn it_may_do_nothing_it_does_not_need() {
    for version in versions() {
        let objects = tenant_set(&version);
        let needed = needed(&objects);
        let grants = Grants::of(&objects);
        let extra: Vec<&Atom> = grants.0.iter().filter(|a| !needed.contains(*a)).collect();
        assert!(
            extra.is_empty(),
            "{version}: granted, never needed: {extra:#?}"
        );
    }
}

#[test]
fn it_may_not_read_secrets_escalate_or_change_the_privileged_set() {
    let objects = tenant_set(&versions().pop().unwrap());
    let grants = Grants::of(&objects);
    let rbac = "rbac.authorization.k8s.io";
    for scope in ["", "kube-system", "kube-public", "default"] {
        for verb in ["get", "list", "watch"] {
            assert!(
                !grants.allows(&atom(scope, "", "secrets", verb, "x")),
                "{verb} secrets"
            );
        }
    }
    for denied in [
        atom("", rbac, "clusterroles", "escalate", "system:coredns"),
        atom("", rbac, "clusterroles", "bind", "cluster-admin"),
        atom("", "", "users", "impersonate", "x"),
        atom("kube-system", "", "pods", "create", "x"),
    ] {
        assert!(!grants.allows(&denied), "{denied:?}");
    }
    let privileged: Vec<&RenderedObject> = objects.iter().filter(|o| o.is_privileged()).collect();
    for object in &privileged {
        let (group, resource) = resource_of(&object.kind);
        for verb in ["patch", "create", "update", "delete"] {
            let request = atom(namespace(object), group, resource, verb, &object.name);
            assert!(!grants.allows(&request), "{request:?}");
        }
    }
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
    let all = TenantSet::of(objects.iter().map(|o| &o.value));
    assert_eq!(all.privileged.len(), privileged.len());
}

#[test]
fn the_privileged_set_is_the_same_for_every_version() {
    let hashes: BTreeSet<String> = versions()
        .iter()
        .map(|v| TenantSet::of(tenant_set(v).iter().map(|o| &o.value)).privileged_hash())
        .collect();
    assert_eq!(hashes.len(), 1, "an upgrade would grant again: {hashes:?}");
}

#[test]
fn the_grant_is_probed_once_per_rule_with_requests_it_allows() {
    let objects = tenant_set(&versions().pop().unwrap());
    let grants = Grants::of(&objects);
    let set = TenantSet::of(objects.iter().map(|o| &o.value));
    let rules: usize = operator_roles(&objects)
        .map(|o| o.value["rules"].as_array().unwrap().len())
        .sum();
    let probes = set.probes();
    assert_eq!(probes.len(), rules);
    for probe in probes {
        let resource = match &probe.subresource {
            Some(sub) => format!("{}/{sub}", probe.resource.clone().unwrap()),
            None => probe.resource.clone().unwrap(),
        };
        let request = atom(
            probe.namespace.as_deref().unwrap_or(""),
            probe.group.as_deref().unwrap(),
            &resource,
            probe.verb.as_deref().unwrap(),
            probe.name.as_deref().unwrap_or("*"),
        );
        assert!(grants.allows(&request), "{probe:?}");
    }
}
