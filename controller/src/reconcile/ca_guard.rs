//! A tenant that has had a CA never gets a new one by accident.
//!
//! The CA and service-account keys live only in the tenant's Secrets. If one
//! of those Secrets is deleted, the PKI step would find "no CA" and make a
//! new one: every leaf reissued, every joined kubelet and handed-out
//! kubeconfig broken, the join hash changed. So once a tenant has had a CA
//! (its status records a CA hash, or any other certificate or the join
//! Secret exists), a missing CA or `sa` Secret stops the pass instead, until
//! the Secret is restored or the user asks for new ones with
//! [`RECREATE_CA_ANNOTATION`].

use gantry_pki::FileSet;

pub use gantry_api::labels::RECREATE_CA_ANNOTATION;

/// What the PKI step may do about the CAs.
#[derive(Debug, PartialEq, Eq)]
pub enum CaCheck {
    /// Every key Secret is there, or the tenant never had a CA: go on.
    Go,
    /// Keys are missing and the user asked for new ones: go on and make them.
    Recreate { missing: Vec<&'static str> },
    /// Keys are missing from a tenant that had them: stop, write nothing.
    Lost { missing: Vec<&'static str> },
}

/// Decides from what was read: the PKI files of the tenant's Secrets, the
/// CA hash in its status, whether its join Secret exists, and the value of
/// [`RECREATE_CA_ANNOTATION`].
pub fn check(
    existing: &FileSet,
    recorded_hash: Option<&str>,
    join_secret_exists: bool,
    recreate: Option<&str>,
) -> CaCheck {
    // The Secrets that hold a CA or the service-account key.
    let missing: Vec<&'static str> = gantry_renderer::signing_key_secrets()
        .filter(|secret| {
            secret
                .key_path()
                .is_some_and(|key| !existing.contains_key(key))
        })
        .map(|secret| secret.name)
        .collect();
    if missing.is_empty() {
        return CaCheck::Go;
    }
    let had_ca = recorded_hash.is_some()
        || join_secret_exists
        || existing.keys().any(|file| !is_signing_key_file(file));
    if !had_ca {
        return CaCheck::Go;
    }
    let asked = match (recorded_hash, recreate) {
        (Some(hash), Some(value)) => value == hash,
        (None, Some(value)) => !value.is_empty(),
        (_, None) => false,
    };
    if asked {
        CaCheck::Recreate { missing }
    } else {
        CaCheck::Lost { missing }
    }
}

/// Whether `file` is one of the files of the Secrets that hold a CA or the
/// service-account key (keys, certificates, the public SA key).
fn is_signing_key_file(file: &str) -> bool {
    gantry_renderer::signing_key_secrets()
        .any(|secret| secret.files.iter().any(|(_, path)| *path == file))
}

/// What the user reads in the condition and the Warning Event.
pub fn lost_message(missing: &[&str], namespace: &str, recorded_hash: Option<&str>) -> String {
    let secrets = missing.join(", ");
    let had = recorded_hash.map_or("this tenant had them".to_string(), |hash| {
        format!("this tenant had them (CA hash {hash})")
    });
    let value = recorded_hash.unwrap_or("yes");
    format!(
        "Secret(s) {secrets} in {namespace} are missing, but {had}. gantry will not make new \
         ones: every node and kubeconfig would stop working. Restore them from your backup, or \
         annotate the TenantControlPlane {RECREATE_CA_ANNOTATION}={value} to make new ones \
         (every worker must join again)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> FileSet {
        paths
            .iter()
            .map(|p| (p.to_string(), b"x".to_vec()))
            .collect()
    }

    const ALL_KEYS: [&str; 8] = [
        "pki/ca.key",
        "pki/ca.crt",
        "pki/front-proxy-ca.key",
        "pki/front-proxy-ca.crt",
        "pki/etcd/ca.key",
        "pki/etcd/ca.crt",
        "pki/sa.key",
        "pki/sa.pub",
    ];

    #[test]
    fn a_new_tenant_gets_its_cas() {
        assert_eq!(check(&files(&[]), None, false, None), CaCheck::Go);
    }

    #[test]
    fn a_tenant_with_every_key_goes_on() {
        let mut with_leaf = ALL_KEYS.to_vec();
        with_leaf.push("pki/apiserver.crt");
        assert_eq!(
            check(&files(&with_leaf), Some("sha256:aa"), true, None),
            CaCheck::Go
        );
    }

    #[test]
    fn a_lost_ca_stops_once_the_tenant_had_one_by_any_sign() {
        let without_ca: Vec<&str> = ALL_KEYS
            .iter()
            .copied()
            .filter(|f| !f.starts_with("pki/ca."))
            .collect();
        let lost = CaCheck::Lost {
            missing: vec!["ca"],
        };
        // The status records a hash.
        assert_eq!(
            check(&files(&without_ca), Some("sha256:aa"), false, None),
            lost
        );
        // The join Secret exists.
        assert_eq!(check(&files(&without_ca), None, true, None), lost);
        // A leaf certificate exists.
        let mut with_leaf = without_ca.clone();
        with_leaf.push("pki/apiserver.crt");
        assert_eq!(check(&files(&with_leaf), None, false, None), lost);
        // Only other CAs: a tenant whose first pass stopped part-way.
        assert_eq!(check(&files(&without_ca), None, false, None), CaCheck::Go);
    }

    #[test]
    fn only_the_current_hash_recreates() {
        let none = files(&["pki/apiserver.crt"]);
        let missing = vec!["ca", "front-proxy-ca", "etcd-ca", "sa"];
        assert_eq!(
            check(&none, Some("sha256:aa"), true, Some("sha256:bb")),
            CaCheck::Lost {
                missing: missing.clone()
            }
        );
        assert_eq!(
            check(&none, Some("sha256:aa"), true, Some("sha256:aa")),
            CaCheck::Recreate {
                missing: missing.clone()
            }
        );
        assert_eq!(
            check(&none, None, true, Some("yes")),
            CaCheck::Recreate { missing }
        );
    }

    #[test]
    fn the_message_says_what_is_missing_and_how_to_recover() {
        let message = lost_message(&["ca", "sa"], "tcp-a", Some("sha256:aa"));
        assert!(message.contains("Secret(s) ca, sa in tcp-a are missing"));
        assert!(message.contains("Restore them from your backup"));
        assert!(message.contains("gantry.dev/recreate-ca=sha256:aa"));
    }
}
