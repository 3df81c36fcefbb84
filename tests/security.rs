//! The CIS settings of a rendered control plane (docs/security.md), proven
//! on the real components: a tenant of the newest minor run as processes
//! from its rendered manifests (`support/control_plane.rs`).
//!
//! - Anonymous requests reach only the health endpoints and cluster-info.
//! - Profiling is off on the apiserver, the controller-manager and the
//!   scheduler.
//! - TLS 1.2 serves only ECDHE key exchange with AEAD ciphers.
//! - `DenyServiceExternalIPs` refuses a Service with external IPs.
//! - The audit log, on the apiserver's stdout, records writes with their
//!   user, records RBAC changes with their request, never a Secret's value,
//!   and not probes or leases.
//! - The CRD, served by that apiserver, refuses `extraArgs` that gantry sets
//!   or that weaken the control plane, naming the flag.
//! - Secrets are encrypted in etcd with the tenant's key, and the key
//!   rotates (`security/encryption.rs`).
//! - The operator chart's admission policies bound what a tenant may ask
//!   for and where the operator may write (`security/admission.rs`).

use std::time::Duration;

#[path = "security/admission.rs"]
mod admission;
#[path = "security/encryption.rs"]
mod encryption;

use gantry_tests::audit::audit_events;
use gantry_tests::control_plane::{
    ControlPlane, client_credentials, one_at_a_time, start_small_tenant,
};
use gantry_tests::output_text;

#[test]
fn the_control_plane_meets_the_cis_items_on_the_real_components() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let plane = start_small_tenant(tmp.path(), "tenant-a", 142);
    let api = |path: &str| format!("https://{}:6443{path}", plane.vip);

    // CIS 1.2.1: anonymous requests only where nothing else can be sent.
    for path in [
        "/livez",
        "/readyz",
        "/healthz",
        "/api/v1/namespaces/kube-public/configmaps/cluster-info",
    ] {
        assert_eq!(
            plane.curl_status(&api(path), &[]),
            "200",
            "anonymous {path}"
        );
    }
    for path in [
        "/api/v1/namespaces",
        "/api/v1/namespaces/kube-public/configmaps",
        "/version",
        "/metrics",
    ] {
        assert_eq!(
            plane.curl_status(&api(path), &[]),
            "401",
            "anonymous {path}"
        );
    }

    // CIS 1.2.15, 1.3.2, 1.4.1: no profiling endpoint, even for an admin
    // (whom every other path answers).
    let (cert, key) = client_credentials(&plane.bundle, "admin.conf");
    let admin = ["--cert", cert.as_str(), "--key", key.as_str()];
    // The controller-manager and the scheduler serve a self-signed certificate.
    let admin_k = ["--cert", cert.as_str(), "--key", key.as_str(), "-k"];
    let components = [
        ("kube-apiserver", api(""), &admin[..]),
        (
            "kube-controller-manager",
            format!("https://{}:10257", plane.controller_manager.host.address),
            &admin_k[..],
        ),
        (
            "kube-scheduler",
            format!("https://{}:10259", plane.scheduler.host.address),
            &admin_k[..],
        ),
    ];
    for (component, base, admin) in &components {
        let url = format!("{base}/healthz");
        assert_eq!(
            plane.curl_status(&url, admin),
            "200",
            "{component} /healthz"
        );
        let url = format!("{base}/debug/pprof/");
        assert_eq!(
            plane.curl_status(&url, admin),
            "404",
            "{component} /debug/pprof/"
        );
    }

    // CIS 1.2.29: TLS 1.2 with ECDHE and AEAD only, on every serving port.
    for (component, base, _) in &components {
        let host_port = base.trim_start_matches("https://");
        assert!(
            tls_handshake(
                &plane,
                host_port,
                "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
            ),
            "{component}: an ECDHE AEAD suite is served"
        );
        assert!(
            !tls_handshake(
                &plane,
                host_port,
                "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"
            ),
            "{component}: a CBC suite, which Go serves by default, is refused"
        );
    }

    a_service_with_external_ips_is_refused(&plane, tmp.path());
    the_audit_log_records_writes_but_no_secret(&plane);
    the_crd_refuses_weakening_extra_args(&plane, tmp.path());
    admission::the_operator_chart_bounds_tenants_and_confines_the_operator(&plane, tmp.path());
    encryption::secrets_are_encrypted_at_rest_and_the_key_rotates(&plane, &tmp.path().join("run"));
}

fn the_crd_refuses_weakening_extra_args(plane: &ControlPlane, dir: &std::path::Path) {
    let crd = gantry_tests::repo_root().join("chart/gantry/files/crd.yaml");
    plane.kubectl_ok(
        "admin.conf",
        &["apply", "--server-side", "-f", crd.to_str().unwrap()],
    );
    plane.kubectl_ok(
        "admin.conf",
        &[
            "wait",
            "--for=condition=Established",
            "crd/tenantcontrolplanes.gantry.dev",
        ],
    );
    // Every flag of the policy, each refused and allowed sample, in one
    // server-side dry run of many objects (weak-N and fine-N).
    use gantry_api::extra_args::{API_SERVER, CONTROLLER_MANAGER_AND_SCHEDULER, samples};
    let mut manifests = String::new();
    let mut refused = Vec::new();
    let mut allowed = Vec::new();
    for (components, rules) in [
        (&["apiServer"][..], API_SERVER),
        (
            &["controllerManager", "scheduler"][..],
            CONTROLLER_MANAGER_AND_SCHEDULER,
        ),
    ] {
        for component in components {
            for rule in rules {
                let (good, bad) = samples(rule);
                for (value, refuse) in
                    (bad.iter().map(|v| (v, true))).chain(good.iter().map(|v| (v, false)))
                {
                    let name = if refuse {
                        refused.push((component.to_string(), rule.flag, value.clone()));
                        format!("weak-{}", refused.len() - 1)
                    } else {
                        allowed.push((component.to_string(), rule.flag, value.clone()));
                        format!("fine-{}", allowed.len() - 1)
                    };
                    manifests.push_str(&format!(
                        "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {name}\n\
                         spec:\n  version: \"1.37\"\n  {component}:\n    extraArgs:\n      {}: {}\n---\n",
                        rule.flag,
                        serde_json::to_string(value).unwrap()
                    ));
                }
            }
        }
    }
    // The holes issue 28 found, by name: each was accepted before.
    for (component, flag, value) in [
        ("apiServer", "requestheader-allowed-names", ""),
        ("apiServer", "requestheader-group-headers", "X-Not-Gantry"),
        (
            "apiServer",
            "service-account-max-token-expiration",
            "876000h",
        ),
        ("apiServer", "api-audiences", "https://elsewhere"),
        ("apiServer", "v", "10"),
        ("controllerManager", "master", "https://elsewhere:6443"),
        ("controllerManager", "bind-address", "127.0.0.1"),
        ("scheduler", "feature-gates", "SchedulerQueueingHints=true"),
        ("controllerManager", "cluster-signing-duration", "876000h"),
    ] {
        refused.push((component.to_string(), flag, value.to_string()));
        manifests.push_str(&format!(
            "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: weak-{}\n\
             spec:\n  version: \"1.37\"\n  {component}:\n    extraArgs:\n      {flag}: \"{value}\"\n---\n",
            refused.len() - 1
        ));
    }
    // A flag outside the list passes, whatever its value.
    allowed.push(("apiServer".into(), "audit-log-maxage", "30".into()));
    manifests.push_str(&format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: fine-{}\n\
         spec:\n  version: \"1.37\"\n  apiServer:\n    extraArgs:\n      audit-log-maxage: \"30\"\n",
        allowed.len() - 1
    ));
    let file = dir.join("extra-args.yaml");
    std::fs::write(&file, manifests).unwrap();
    let output = plane.kubectl(
        "admin.conf",
        &["apply", "--dry-run=server", "-f", file.to_str().unwrap()],
    );
    let text = output_text(&output);
    for (index, (component, flag, value)) in refused.iter().enumerate() {
        let line = text
            .lines()
            .find(|line| line.contains(&format!("\"weak-{index}\" is invalid")))
            .unwrap_or_else(|| panic!("{component} --{flag}={value:?} was accepted"));
        assert!(
            line.contains(&format!("extraArgs: --{flag} is refused")),
            "{component} --{flag}={value:?}: {line}"
        );
    }
    for (index, (component, flag, value)) in allowed.iter().enumerate() {
        assert!(
            text.contains(&format!(
                "tenantcontrolplane.gantry.dev/fine-{index} created (server dry run)"
            )),
            "{component} --{flag}={value:?} was refused: {}",
            text.lines()
                .find(|l| l.contains(&format!("\"fine-{index}\"")))
                .unwrap_or(&text)
        );
    }
    eprintln!(
        "EXTRA-ARGS on the real apiserver: {} values refused and {} allowed as the policy says",
        refused.len(),
        allowed.len()
    );
}

/// Whether `openssl s_client` completes a TLS 1.2 handshake with `host_port`
/// offering only `ciphers`.
fn tls_handshake(plane: &ControlPlane, host_port: &str, ciphers: &str) -> bool {
    let output = plane
        .node
        .command("openssl")
        .args([
            "s_client", "-connect", host_port, "-tls1_2", "-cipher", ciphers,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.success() && !text.contains("Cipher is (NONE)")
}

fn a_service_with_external_ips_is_refused(plane: &ControlPlane, dir: &std::path::Path) {
    let manifest = dir.join("external-ips.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: external\n  namespace: default\n\
         spec:\n  ports:\n    - port: 80\n  externalIPs:\n    - 198.18.142.99\n",
    )
    .unwrap();
    let applied = plane.kubectl("admin.conf", &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(!applied.status.success(), "{}", output_text(&applied));
    let text = output_text(&applied);
    assert!(
        text.contains("externalIPs") && text.contains("denied by admission control"),
        "{text}"
    );
}

/// The audit events of the apiserver's log (JSON lines on its stdout).
fn the_audit_log_records_writes_but_no_secret(plane: &ControlPlane) {
    const CANARY: &str = "gantry-audit-canary";
    plane.kubectl_ok(
        "admin.conf",
        &[
            "create",
            "secret",
            "generic",
            "audited",
            &format!("--from-literal=password={CANARY}"),
        ],
    );
    plane.kubectl_ok(
        "admin.conf",
        &[
            "create",
            "clusterrole",
            "audited",
            "--verb=get",
            "--resource=pods",
        ],
    );
    // The events of a request are written when it completes; give the
    // apiserver's buffered backend a moment.
    let mut events = Vec::new();
    let found = gantry_tests::wait_until(Duration::from_secs(20), || {
        events = audit_events(plane);
        events.iter().any(|e| {
            e["objectRef"]["name"] == "audited" && e["objectRef"]["resource"] == "clusterroles"
        }) && events
            .iter()
            .any(|e| e["objectRef"]["name"] == "audited" && e["objectRef"]["resource"] == "secrets")
    });
    assert!(
        found,
        "no audit events of the writes: {} events",
        events.len()
    );
    let write_of = |resource: &str| {
        events
            .iter()
            .find(|e| {
                e["verb"] == "create"
                    && e["objectRef"]["resource"] == resource
                    && e["objectRef"]["name"] == "audited"
            })
            .unwrap_or_else(|| panic!("no audit event for creating {resource}"))
    };
    let secret = write_of("secrets");
    assert_eq!(secret["level"], "Metadata");
    assert_eq!(secret["user"]["username"], "kubernetes-admin");
    assert!(secret.get("requestObject").is_none());
    let role = write_of("clusterroles");
    assert_eq!(role["level"], "Request");
    assert_eq!(role["requestObject"]["rules"][0]["verbs"][0], "get");

    let log = std::fs::read_to_string(&plane.apiservers[0].log).unwrap();
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(CANARY);
    assert!(
        !log.contains(CANARY) && !log.contains(&encoded),
        "a Secret's value is in the apiserver's log"
    );
    for event in &events {
        let uri = event["requestURI"].as_str().unwrap_or_default();
        assert!(
            !["/livez", "/readyz", "/healthz"]
                .iter()
                .any(|p| uri.starts_with(p)),
            "a probe is audited: {event}"
        );
        assert_ne!(
            event["objectRef"]["resource"], "leases",
            "a lease is audited: {event}"
        );
    }
}
