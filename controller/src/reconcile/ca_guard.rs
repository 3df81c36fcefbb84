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
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::error::ReconcileError;
use super::outcome::Note;
use super::pass::{Halt, PassState, Stop};
use crate::api::{ConditionType, TenantControlPlane};
use crate::resolve::ValidatedTenant;

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

/// What a tenant's status and namespace say it has had.
#[derive(Debug, Default, Clone, Copy)]
pub struct HadBefore<'a> {
    /// The CA hash its status records.
    pub ca_hash: Option<&'a str>,
    /// Its join Secret exists.
    pub join_secret: bool,
    /// Its status names the Secret of the key of Secrets at rest. A tenant
    /// made before gantry encrypted Secrets has none, and gets one.
    pub encryption_secret: bool,
}

/// Decides from what was read: the PKI files of the tenant's Secrets, what
/// it [`HadBefore`], and the value of [`RECREATE_CA_ANNOTATION`].
pub fn check(existing: &FileSet, had: HadBefore<'_>, recreate: Option<&str>) -> CaCheck {
    // The Secrets that hold a CA or a key that is never replaced.
    let missing: Vec<&'static str> = gantry_renderer::create_only_secrets()
        .filter(|secret| {
            secret
                .guarded_file()
                .is_some_and(|file| !existing.contains_key(file))
        })
        .map(|secret| secret.name)
        .filter(|name| *name != gantry_renderer::ENCRYPTION_SECRET || had.encryption_secret)
        .collect();
    if missing.is_empty() {
        return CaCheck::Go;
    }
    let had_ca = had.ca_hash.is_some()
        || had.join_secret
        || had.encryption_secret
        || existing.keys().any(|file| !is_create_only_file(file));
    if !had_ca {
        return CaCheck::Go;
    }
    let asked = match (had.ca_hash, recreate) {
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

/// Whether `file` is one of the files of the create-only Secrets (keys,
/// certificates, the public SA key, the encryption configuration).
fn is_create_only_file(file: &str) -> bool {
    gantry_renderer::create_only_secrets()
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
         ones: every node and kubeconfig (and, for encryption-config, every stored Secret) would \
         stop working. Restore them from your backup, or \
         annotate the TenantControlPlane {RECREATE_CA_ANNOTATION}={value} to make new ones \
         (every worker must join again)"
    )
}

/// The recreate-CA annotation as a pass found it, for [`disarm`].
#[derive(Debug)]
pub(super) struct Armed {
    value: String,
    /// The Secrets this pass makes new because of it (none: nothing was missing).
    making: Vec<&'static str>,
}

/// Part of step 5: a tenant that had a CA and lost its Secret stops here,
/// unless the annotation asks for new keys. Returns the annotation, if
/// present, for [`disarm`].
pub(super) fn guard(
    pass: &mut PassState<'_>,
    tenant: &ValidatedTenant,
    existing: &FileSet,
    join_exists: bool,
) -> Result<Option<Armed>, Halt> {
    let status = pass.tcp.status.as_ref();
    let recorded_hash = status.and_then(|s| s.ca_cert_hash.clone());
    let had = HadBefore {
        ca_hash: recorded_hash.as_deref(),
        join_secret: join_exists,
        encryption_secret: status.is_some_and(|s| s.encryption_secret.is_some()),
    };
    let recreate = pass
        .tcp
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RECREATE_CA_ANNOTATION))
        .cloned();
    match check(existing, had, recreate.as_deref()) {
        CaCheck::Go => Ok(recreate.map(|value| Armed {
            value,
            making: Vec::new(),
        })),
        CaCheck::Recreate { missing } => {
            pass.notes.push(Note::warning(
                "RecreatingCA",
                format!(
                    "making new {} as annotation {RECREATE_CA_ANNOTATION} asks; every worker must join again",
                    missing.join(", "),
                ),
            ));
            Ok(recreate.map(|value| Armed {
                value,
                making: missing,
            }))
        }
        CaCheck::Lost { missing } => {
            let message = lost_message(&missing, &tenant.namespace, recorded_hash.as_deref());
            Err(Halt::failed("CertificatesNotReady", &message).because(
                ConditionType::CertificatesReady,
                "CAMissing",
                message,
            ))
        }
    }
}

/// After step 6: removes the recreate-CA annotation once the keys it asked
/// for are stored, or when nothing is missing, so it acts once. Otherwise,
/// after a new `sa` or `encryption-config` alone (the CA hash unchanged), it
/// would stay armed and silently replace the next lost key. It stays while
/// a new key Secret was not written (another writer's Secret was kept), and
/// an annotation changed meanwhile is left alone: the patch is conditional
/// on the resourceVersion it was read at.
pub(super) async fn disarm(pass: &mut PassState<'_>, armed: Option<&Armed>) -> Result<(), Stop> {
    let Some(armed) = armed else {
        return Ok(());
    };
    let not_stored: Vec<&str> = armed
        .making
        .iter()
        .copied()
        .filter(|name| !pass.report.applied.contains(&format!("Secret/{name}")))
        .collect();
    if !not_stored.is_empty() {
        pass.notes.push(Note::warning(
            "RecreateCAKept",
            format!(
                "annotation {RECREATE_CA_ANNOTATION} kept: Secret(s) {} were not written by this pass",
                not_stored.join(", ")
            ),
        ));
        return Ok(());
    }
    let name = pass.tcp.metadata.name.clone().unwrap_or_default();
    let api: Api<TenantControlPlane> = Api::all(pass.ctx.client.clone());
    let failed = |source| {
        Stop::Failed(ReconcileError::Api {
            action: format!("remove annotation {RECREATE_CA_ANNOTATION} of {name}"),
            source,
        })
    };
    // A conflict means the object changed between the read and the patch: read again.
    for _ in 0..3 {
        let live = api.get(&name).await.map_err(failed)?;
        if live.annotations().get(RECREATE_CA_ANNOTATION) != Some(&armed.value) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": live.resource_version(),
            "annotations": {RECREATE_CA_ANNOTATION: null},
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                let why = if armed.making.is_empty() {
                    "nothing is missing"
                } else {
                    "the new keys are stored"
                };
                pass.notes.push(Note::normal(
                    "RecreateCADone",
                    format!("{why}; annotation {RECREATE_CA_ANNOTATION} removed"),
                ));
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(source) => return Err(failed(source)),
        }
    }
    Err(Stop::Failed(ReconcileError::Waiting(format!(
        "annotation {RECREATE_CA_ANNOTATION} of {name}: the object kept changing while it was removed"
    ))))
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

    fn had(ca_hash: Option<&str>, join_secret: bool) -> HadBefore<'_> {
        HadBefore {
            ca_hash,
            join_secret,
            encryption_secret: false,
        }
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
        assert_eq!(check(&files(&[]), HadBefore::default(), None), CaCheck::Go);
    }

    #[test]
    fn a_tenant_with_every_key_goes_on() {
        let mut with_leaf = ALL_KEYS.to_vec();
        with_leaf.push("pki/apiserver.crt");
        assert_eq!(
            check(&files(&with_leaf), had(Some("sha256:aa"), true), None),
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
            check(&files(&without_ca), had(Some("sha256:aa"), false), None),
            lost
        );
        // The join Secret exists.
        assert_eq!(check(&files(&without_ca), had(None, true), None), lost);
        // A leaf certificate exists.
        let mut with_leaf = without_ca.clone();
        with_leaf.push("pki/apiserver.crt");
        assert_eq!(check(&files(&with_leaf), HadBefore::default(), None), lost);
        // Only other CAs: a tenant whose first pass stopped part-way.
        assert_eq!(
            check(&files(&without_ca), HadBefore::default(), None),
            CaCheck::Go
        );
    }

    #[test]
    fn a_lost_encryption_key_stops_but_a_tenant_older_than_encryption_gets_one() {
        let mut without_encryption = ALL_KEYS.to_vec();
        without_encryption.push("pki/apiserver.crt");
        let existing = files(&without_encryption);
        let older = had(Some("sha256:aa"), true);
        assert_eq!(check(&existing, older, None), CaCheck::Go);
        let encrypted = HadBefore {
            encryption_secret: true,
            ..older
        };
        assert_eq!(
            check(&existing, encrypted, None),
            CaCheck::Lost {
                missing: vec!["encryption-config"]
            }
        );
        let mut with_encryption = without_encryption.clone();
        with_encryption.push(gantry_pki::ENCRYPTION_CONFIG);
        assert_eq!(
            check(&files(&with_encryption), encrypted, None),
            CaCheck::Go
        );
    }

    #[test]
    fn only_the_current_hash_recreates() {
        let none = files(&["pki/apiserver.crt"]);
        let missing = vec!["ca", "front-proxy-ca", "etcd-ca", "sa"];
        assert_eq!(
            check(&none, had(Some("sha256:aa"), true), Some("sha256:bb")),
            CaCheck::Lost {
                missing: missing.clone()
            }
        );
        assert_eq!(
            check(&none, had(Some("sha256:aa"), true), Some("sha256:aa")),
            CaCheck::Recreate {
                missing: missing.clone()
            }
        );
        assert_eq!(
            check(&none, had(None, true), Some("yes")),
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
