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
    let ca_data = |plane: &ControlPlane| {
        plane
            .kubectl(
                "admin.conf",
                &["-n", ns, "get", "secret", "ca", "-o", "jsonpath={.data}"],
            )
            .status
            .success()
            .then(|| {
                plane.kubectl_ok(
                    "admin.conf",
                    &["-n", ns, "get", "secret", "ca", "-o", "jsonpath={.data}"],
                )
            })
    };
    let original = ca_data(plane).expect("Secret ca exists");
    // A pass already running when the Secret goes (the operator requeues a
    // tenant that is not Ready every 10 s) may put back the CA it read; that
    // is the same CA, never a new one. Then try again.
    let mut condition = String::new();
    for _ in 1..=5 {
        // No nudge: the deletion alone must trigger a pass.
        plane.kubectl_ok("admin.conf", &["-n", ns, "delete", "secret", "ca"]);
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
            condition == "CAMissing" || ca_data(plane).is_some()
        });
        if let Some(back) = ca_data(plane) {
            assert_eq!(back, original, "a new CA Secret was made");
            continue;
        }
        if condition == "CAMissing" {
            break;
        }
    }
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
    assert_eq!(ca_data(plane), None, "a new CA Secret was made");
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

    plane.kubectl_ok(
        "admin.conf",
        &[
            "annotate",
            "tenantcontrolplane",
            "tenant-x",
            &format!("gantry.dev/recreate-ca={hash}"),
        ],
    );
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
