//! The tenant's Secrets in the real service cluster: a lost CA is never
//! replaced without the explicit annotation, and no Secret's value reaches
//! the operator's log.

use std::time::Duration;

use gantry_tests::control_plane::ControlPlane;

/// `kubectl` arguments that print tenant-x's `status.caCertHash`.
const CA_CERT_HASH: [&str; 5] = [
    "get",
    "tenantcontrolplane",
    "tenant-x",
    "-o",
    "jsonpath={.status.caCertHash}",
];

/// Deleting Secret `ca` by hand: the operator's watch of Secrets (metadata
/// only) reports it, and the pass it triggers stops with CAMissing and makes
/// no new CA; the recreate annotation with the tenant's CA hash then makes one.
pub(super) fn a_lost_ca_stops_the_tenant_until_restored_or_recreated_on_purpose(
    plane: &ControlPlane,
    ns: &str,
    operator_log: &dyn Fn() -> String,
) {
    let hash = plane.kubectl_ok("admin.conf", &CA_CERT_HASH);
    assert!(hash.starts_with("sha256:"), "{hash}");
    let condition = lose_secret(plane, ns, "ca");
    let recent: Vec<String> = operator_log()
        .lines()
        .filter(|l| !l.contains("\"TRACE\"") && !l.contains("\"DEBUG\""))
        .map(String::from)
        .collect();
    assert_eq!(
        condition,
        "CAMissing",
        "{}",
        recent[recent.len().saturating_sub(30)..].join("\n")
    );
    assert_eq!(
        secret_data(plane, ns, "ca"),
        None,
        "a new CA Secret was made"
    );
    let events = plane.kubectl_ok(
        "admin.conf",
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "type=Warning",
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.note}{.message}{\"\\n\"}{end}",
        ],
    );
    assert!(
        events.contains("CertificatesNotReady") && events.contains("Restore them from your backup"),
        "no Warning Event says how to recover: {events}"
    );

    ask_for_new_keys(plane, &hash);
    let new_hash = plane.wait_kubectl(
        "the annotation makes a new CA",
        Duration::from_secs(60),
        "admin.conf",
        &CA_CERT_HASH,
        |out| out.starts_with("sha256:") && out != hash,
    );
    assert_ne!(new_hash, hash);
    plane.kubectl_ok(
        "admin.conf",
        &["-n", ns, "get", "secret", "ca", "-o", "name"],
    );
    the_annotation_is_removed_once_acted_on(plane);
    the_recreate_annotation_asks_once(plane, ns);
}

/// The data of Secret `name`, if it exists.
fn secret_data(plane: &ControlPlane, ns: &str, name: &str) -> Option<String> {
    let args = ["-n", ns, "get", "secret", name, "-o", "jsonpath={.data}"];
    let output = plane.kubectl("admin.conf", &args);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Deletes Secret `name` until the operator's pass reports it missing;
/// returns the CertificatesReady reason it ended at. A pass already running
/// when the Secret goes (the operator requeues a tenant that is not Ready
/// every 10 s) may put back the Secret it read; that is the same one, never
/// a new one. Then it tries again.
fn lose_secret(plane: &ControlPlane, ns: &str, name: &str) -> String {
    let original = secret_data(plane, ns, name).expect("the Secret exists");
    let mut condition = String::new();
    for _ in 1..=5 {
        // No nudge: the deletion alone must trigger a pass.
        plane.kubectl_ok("admin.conf", &["-n", ns, "delete", "secret", name]);
        gantry_tests::wait_until(Duration::from_secs(20), || {
            condition = plane.kubectl_ok(
                "admin.conf",
                &[
                    "get",
                    "tenantcontrolplane",
                    "tenant-x",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"CertificatesReady\")].reason}",
                ],
            );
            condition == "CAMissing" || secret_data(plane, ns, name).is_some()
        });
        if let Some(back) = secret_data(plane, ns, name) {
            assert_eq!(back, original, "a new Secret {name} was made");
            continue;
        }
        if condition == "CAMissing" {
            break;
        }
    }
    condition
}

/// Annotates tenant-x to make new keys, as the CAMissing message says.
fn ask_for_new_keys(plane: &ControlPlane, hash: &str) {
    plane.kubectl_ok(
        "admin.conf",
        &[
            "annotate",
            "tenantcontrolplane",
            "tenant-x",
            &format!("gantry.dev/recreate-ca={hash}"),
        ],
    );
}

fn the_annotation_is_removed_once_acted_on(plane: &ControlPlane) {
    plane.wait_kubectl(
        "the operator removes the recreate annotation it acted on",
        Duration::from_secs(30),
        "admin.conf",
        &[
            "get",
            "tenantcontrolplane",
            "tenant-x",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
        |out| !out.contains("gantry.dev/recreate-ca"),
    );
}

/// Losing `sa` alone leaves the CA hash as it was, so the annotation's value
/// would still match after acting. It is removed once acted on, so a second
/// loss stops the tenant again instead of silently making another key.
fn the_recreate_annotation_asks_once(plane: &ControlPlane, ns: &str) {
    let hash = plane.kubectl_ok("admin.conf", &CA_CERT_HASH);
    let lost_sa = secret_data(plane, ns, "sa").expect("Secret sa exists");
    assert_eq!(lose_secret(plane, ns, "sa"), "CAMissing");
    ask_for_new_keys(plane, &hash);
    let mut made = None;
    assert!(
        gantry_tests::wait_until(Duration::from_secs(60), || {
            made = secret_data(plane, ns, "sa");
            made.is_some()
        }),
        "the annotation never made a new sa"
    );
    assert_ne!(made.unwrap(), lost_sa, "sa is new");
    assert_eq!(plane.kubectl_ok("admin.conf", &CA_CERT_HASH), hash);
    the_annotation_is_removed_once_acted_on(plane);
    assert_eq!(
        lose_secret(plane, ns, "sa"),
        "CAMissing",
        "a second loss stops the tenant again"
    );
    assert_eq!(secret_data(plane, ns, "sa"), None);
}

/// Every private key, kubeconfig and token the operator wrote into the
/// tenant's Secrets: none of it (as stored, base64, or decoded) is in the
/// operator's trace-level log.
pub(super) fn no_secret_is_in_the_operator_log(plane: &ControlPlane, ns: &str, logged: &str) {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    assert!(
        !logged.contains("PRIVATE KEY"),
        "a PEM private key is logged"
    );
    let secrets: serde_json::Value = serde_json::from_str(
        &plane.kubectl_ok("admin.conf", &["-n", ns, "get", "secrets", "-o", "json"]),
    )
    .unwrap();
    let mut checked = 0;
    for secret in secrets["items"].as_array().unwrap() {
        let name = secret["metadata"]["name"].as_str().unwrap();
        let Some(data) = secret["data"].as_object() else {
            continue;
        };
        for (key, value) in data {
            let sensitive = key.ends_with(".key") || key.ends_with(".conf") || key == "token";
            if !sensitive {
                continue;
            }
            let stored = value.as_str().unwrap();
            let decoded = String::from_utf8(base64.decode(stored).unwrap()).unwrap();
            let mut pieces = vec![stored[..stored.len().min(60)].to_string()];
            pieces.extend(
                decoded
                    .lines()
                    .map(|l| l.trim().trim_start_matches("client-key-data:").trim())
                    .filter(|l| l.len() >= 20 && !l.starts_with("-----"))
                    .map(|l| l[..l.len().min(60)].to_string()),
            );
            if key == "token" {
                pieces.push(decoded.split('.').nth(1).unwrap().to_string());
            }
            for piece in pieces {
                assert!(
                    !logged.contains(&piece),
                    "Secret {name} key {key}: its value is in the operator log"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} secret values were checked");
    assert!(logged.len() > 10_000, "the trace log is suspiciously short");
}
