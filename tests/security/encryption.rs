//! Secrets at rest (CIS 1.2.27), read from etcd itself: encrypted with the
//! tenant's own key, and rotated as docs/security.md tells a person to.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_tests::control_plane::ControlPlane;
use gantry_tests::output_text;

/// A value no encrypted record can contain by chance.
const MARKER: &str = "gantry-plaintext-marker";

/// Secret `default/<name>` as etcd stores it.
fn stored_secret(plane: &ControlPlane, name: &str) -> Vec<u8> {
    let key = format!("/registry/secrets/default/{name}");
    let output = plane.etcdctl(&["get", &key, "--print-value-only"]);
    assert!(output.status.success(), "{}", output_text(&output));
    output.stdout
}

fn create_secret(plane: &ControlPlane, name: &str) {
    plane.kubectl_ok(
        "admin.conf",
        &[
            "create",
            "secret",
            "generic",
            name,
            "-n",
            "default",
            &format!("--from-literal=value={MARKER}"),
        ],
    );
}

fn starts_with(stored: &[u8], prefix: &str) -> bool {
    stored.starts_with(prefix.as_bytes())
}

/// The encryption configuration as the apiserver pod reads it: the file of
/// its `encryption` volume (`ControlPlane::start` lays volumes out under
/// `<root>/<pod>/volumes/<volume>/`), which a person edits through the
/// Secret.
fn apiserver_config_file(plane: &ControlPlane, root: &Path) -> PathBuf {
    root.join(&plane.apiservers[0].name)
        .join("volumes/encryption/encryption-config.yaml")
}

/// The config with `keys` (name, base64 secret) in order, then identity.
fn config_with_keys(keys: &[(&str, &str)]) -> String {
    let keys: String = keys
        .iter()
        .map(|(name, secret)| {
            format!("            - name: {name}\n              secret: {secret}\n")
        })
        .collect();
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  \
         - resources:\n      - secrets\n    providers:\n      - secretbox:\n          keys:\n\
         {keys}      - identity: {{}}\n"
    )
}

/// Waits until a newly written Secret is stored with `prefix`: the
/// apiserver has reloaded an edited configuration (it polls the file).
fn wait_for_new_writes_with(plane: &ControlPlane, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    for attempt in 0.. {
        let name = format!("reload-probe-{attempt}");
        create_secret(plane, &name);
        if starts_with(&stored_secret(plane, &name), prefix) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the apiserver did not reload its encryption configuration within 180 s:\n{}",
            plane.logs()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// The apiserver's count of automatic reloads of its encryption
/// configuration with `status` (`success`, `failure`), from its metrics.
fn reloads(plane: &ControlPlane, status: &str) -> u64 {
    let metrics = plane.kubectl_ok("admin.conf", &["get", "--raw", "/metrics"]);
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("apiserver_encryption_config_controller_automatic_reloads_total{")
                && line.contains(&format!("status=\"{status}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the apiserver has reloaded its configuration `count` times
/// (it polls the file every minute).
fn wait_for_reloads(plane: &ControlPlane, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while reloads(plane, "success") < count {
        assert_eq!(
            reloads(plane, "failure"),
            0,
            "a reload failed:\n{}",
            plane.logs()
        );
        assert!(
            Instant::now() < deadline,
            "no reload {count} of the encryption configuration within 180 s:\n{}",
            plane.logs()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Every Secret written again, so each is stored with the first key.
fn rewrite_all_secrets(plane: &ControlPlane) {
    let all = plane.kubectl_ok("admin.conf", &["get", "secrets", "-A", "-o", "json"]);
    let file = plane.bundle.join("all-secrets.json");
    std::fs::write(&file, all).unwrap();
    plane.kubectl_ok("admin.conf", &["replace", "-f", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
}

pub fn secrets_are_encrypted_at_rest_and_the_key_rotates(plane: &ControlPlane, root: &Path) {
    create_secret(plane, "at-rest");
    let stored = stored_secret(plane, "at-rest");
    assert!(
        starts_with(&stored, "k8s:enc:secretbox:v1:key1:"),
        "etcd holds {:?}",
        String::from_utf8_lossy(&stored[..stored.len().min(40)])
    );
    assert!(
        !String::from_utf8_lossy(&stored).contains(MARKER),
        "the value is in etcd in clear"
    );

    // Rotation, as docs/security.md says: 1. the new key first, the old one
    // kept to read what it wrote; 2. every Secret rewritten; 3. the old key
    // removed. (One apiserver here; with several, the new key is first added
    // second, and moved first once every apiserver has it.)
    let file = apiserver_config_file(plane, root);
    let original = std::fs::read_to_string(&file).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&original).unwrap();
    let key1 = config["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let key2 = "a2V5LTItb2YtdGhlLXJvdGF0aW9uLXRlc3QtMzJieXQ="; // 32 bytes, test only
    assert_eq!(reloads(plane, "success"), 0);
    std::fs::write(&file, config_with_keys(&[("key2", key2), ("key1", &key1)])).unwrap();
    wait_for_reloads(plane, 1);
    wait_for_new_writes_with(plane, "k8s:enc:secretbox:v1:key2:");
    assert!(
        starts_with(
            &stored_secret(plane, "at-rest"),
            "k8s:enc:secretbox:v1:key1:"
        ),
        "an old Secret keeps its key until it is written again"
    );
    rewrite_all_secrets(plane);
    assert!(
        starts_with(
            &stored_secret(plane, "at-rest"),
            "k8s:enc:secretbox:v1:key2:"
        ),
        "rewritten, the old Secret is under the new key"
    );

    std::fs::write(&file, config_with_keys(&[("key2", key2)])).unwrap();
    // Reloaded without key1, every Secret still reads.
    wait_for_reloads(plane, 2);
    let value = plane.kubectl_ok(
        "admin.conf",
        &[
            "get",
            "secret",
            "at-rest",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.value}",
        ],
    );
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .unwrap();
    assert_eq!(decoded, MARKER.as_bytes());
    plane.kubectl_ok("admin.conf", &["get", "secrets", "-A"]);
}
