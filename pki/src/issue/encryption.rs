//! The tenant's key for Secrets at rest: an `EncryptionConfiguration` that
//! the apiserver reads with `--encryption-provider-config`.
//!
//! It is made once, with a new secretbox key, and then kept byte for byte,
//! like a CA: losing it makes every Secret in etcd unreadable. Rotation is a
//! person's act (docs/security.md): they edit the file or its Secret, and
//! gantry keeps what they wrote.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use serde_yaml::Value;

use super::plan::Plan;
use super::{Action, FileSet};
use crate::error::PkiError;

/// Where the configuration lives in the bundle (and so in `pki/` backups).
pub const ENCRYPTION_CONFIG: &str = "pki/encryption-config.yaml";

/// The name of the first key: the prefix `k8s:enc:secretbox:v1:key1:` of
/// every Secret written with it. Rotation adds `key2`, and so on.
pub const FIRST_KEY_NAME: &str = "key1";

/// Keeps the existing configuration if it is one, or makes a new one.
pub(super) fn keep_or_make(existing: &FileSet, plan: &mut Plan) -> Result<(), PkiError> {
    match existing.get(ENCRYPTION_CONFIG) {
        Some(contents) => {
            check(contents).map_err(|reason| PkiError::UnreadableAuthority {
                path: ENCRYPTION_CONFIG.into(),
                reason,
            })?;
            plan.decide(ENCRYPTION_CONFIG, Action::Kept);
            plan.keep_file(ENCRYPTION_CONFIG, existing, true);
        }
        None => {
            plan.decide(ENCRYPTION_CONFIG, Action::Created);
            plan.put(ENCRYPTION_CONFIG, new_config().into_bytes(), true);
        }
    }
    Ok(())
}

/// A configuration with one new 32-byte secretbox key for Secrets, and
/// `identity` last so that Secrets written before encryption was on (a
/// tenant older than this) can still be read until they are rewritten.
fn new_config() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "# gantry: the key that encrypts this tenant's Secrets in etcd. Keep it with the\n\
         # CAs: without it no Secret can be read. To rotate it, see docs/security.md.\n\
         apiVersion: apiserver.config.k8s.io/v1\n\
         kind: EncryptionConfiguration\n\
         resources:\n\
         \x20 - resources:\n\
         \x20     - secrets\n\
         \x20   providers:\n\
         \x20     - secretbox:\n\
         \x20         keys:\n\
         \x20           - name: {FIRST_KEY_NAME}\n\
         \x20             secret: {}\n\
         \x20     - identity: {{}}\n",
        STANDARD.encode(key)
    )
}

/// The configuration is an `EncryptionConfiguration` with providers for
/// Secrets. The apiserver checks the rest when it starts; never names a key.
fn check(contents: &[u8]) -> Result<(), String> {
    let config: Value = crate::yaml_guard::parse(contents)?;
    if config["kind"].as_str() != Some("EncryptionConfiguration") {
        return Err("is not an EncryptionConfiguration".into());
    }
    let covers_secrets = config["resources"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|entry| {
            let names = entry["resources"].as_sequence().into_iter().flatten();
            let providers = entry["providers"].as_sequence().map_or(0, Vec::len);
            providers > 0 && names.filter_map(Value::as_str).any(|n| n == "secrets")
        });
    match covers_secrets {
        true => Ok(()),
        false => Err("has no providers for secrets".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_config_passes_its_own_check_and_holds_a_fresh_key() {
        let (one, two) = (new_config(), new_config());
        assert_eq!(check(one.as_bytes()), Ok(()));
        assert_ne!(one, two, "each tenant gets its own key");
        let parsed: Value = serde_yaml::from_str(&one).unwrap();
        let key = &parsed["resources"][0]["providers"][0]["secretbox"]["keys"][0];
        assert_eq!(key["name"].as_str(), Some(FIRST_KEY_NAME));
        let secret = STANDARD.decode(key["secret"].as_str().unwrap()).unwrap();
        assert_eq!(secret.len(), 32, "secretbox takes a 32-byte key");
        assert!(parsed["resources"][0]["providers"][1]["identity"].is_mapping());
    }

    #[test]
    fn the_check_refuses_what_the_apiserver_could_not_use() {
        for (contents, reason) in [
            ("{", "is not valid YAML (error at line 2, column 1)"),
            (
                &format!("a: {}{}", "[".repeat(65), "]".repeat(65)),
                "nests [ and { more than 64 deep; gantry does not parse that",
            ),
            ("kind: ConfigMap", "is not an EncryptionConfiguration"),
            (
                "kind: EncryptionConfiguration\nresources:\n  - resources: [configmaps]\n    providers: [identity: {}]",
                "has no providers for secrets",
            ),
            (
                "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: []",
                "has no providers for secrets",
            ),
        ] {
            assert_eq!(check(contents.as_bytes()), Err(reason.into()), "{contents}");
        }
    }
}
