//! The steps of [`super::issue`], in order: load or plan the authorities,
//! the service-account key, the leaves and kubeconfigs; then make the keys,
//! the new authorities, the leaves, and cluster-info.

use std::collections::BTreeMap;

use rcgen::KeyPair;
use time::OffsetDateTime;

use super::plan::{Output, PendingLeaf, Plan};
use super::{Action, FileSet, Reason};
use crate::catalog::{self, Authority, CAS, CLUSTER_INFO, KUBECONFIGS, LEAVES, SA_KEY, SA_PUB};
use crate::cert::{self, CertInfo, LeafSubject, SigningCa};
use crate::error::PkiError;
use crate::kubeconfig::Kubeconfig;
use crate::spec::{KeyAlgorithm, PkiSpec, San};

/// The authorities by kind: loaded, or `None` where a new one is planned.
pub(super) type Authorities = BTreeMap<Authority, Option<SigningCa>>;

/// The decision item of the service-account key pair.
const SA_ITEM: &str = "pki/sa.{key,pub}";

/// Step 1: each authority, loaded from `existing` (checked: a CA, its key,
/// not expired), or planned anew when neither half exists.
pub(super) fn load_authorities(
    existing: &FileSet,
    now: OffsetDateTime,
    plan: &mut Plan,
) -> Result<Authorities, PkiError> {
    let mut cas: Authorities = BTreeMap::new();
    for profile in &CAS {
        let (crt, key) = (catalog::crt(profile.base), catalog::key(profile.base));
        let loaded = load_pair(existing, &crt, &key, |cert_pem, key_pem| {
            let info = CertInfo::from_pem(cert_pem).map_err(|e| (crt.clone(), e))?;
            let signing_key = cert::load_key(key_pem).map_err(|e| (key.clone(), e))?;
            if !cert::key_matches(&signing_key, &info) {
                return Err((key.clone(), "does not match the certificate".into()));
            }
            if !info.is_ca {
                return Err((crt.clone(), "is not a CA certificate".into()));
            }
            if info.not_after <= now {
                // Leaves never outlive their CA, so every leaf it signed now
                // would be born expired. A new CA is an explicit act.
                return Err((
                    crt.clone(),
                    format!(
                        "expired at {}: every certificate it signs would be expired too; restore a \
                         valid CA, or start over with a new one on purpose (every node joins again)",
                        crate::rfc3339(info.not_after)
                    ),
                ));
            }
            let cert_pem =
                String::from_utf8(cert_pem.to_vec()).map_err(|e| (crt.clone(), e.to_string()))?;
            Ok(SigningCa {
                cert_pem,
                info,
                key: signing_key,
            })
        })?;
        let item = format!("{}.{{crt,key}}", profile.base);
        match loaded {
            Some(ca) => {
                plan.keep(&item, existing, &[&crt, &key]);
                cas.insert(profile.authority, Some(ca));
            }
            None => {
                plan.create_ca(&item);
                cas.insert(profile.authority, None);
            }
        }
    }

    Ok(cas)
}

/// Step 2: the service-account key, loaded (its public half is derived and
/// rewritten when stale), or `None` when a new one is planned.
pub(super) fn load_service_account_key(
    existing: &FileSet,
    plan: &mut Plan,
) -> Result<Option<KeyPair>, PkiError> {
    let sa = load_pair(existing, SA_KEY, SA_PUB, |key_pem, _| {
        cert::load_key(key_pem).map_err(|e| (SA_KEY.to_string(), e))
    })
    .or_else(|err| match err {
        // sa.pub is derived: a missing or stale one is simply rewritten.
        PkiError::IncompletePair { ref missing, .. } if missing == SA_PUB => Ok(Some(
            cert::load_key(&existing[SA_KEY]).map_err(|reason| PkiError::UnreadableAuthority {
                path: SA_KEY.into(),
                reason,
            })?,
        )),
        other => Err(other),
    })?;
    Ok(match sa {
        Some(key) => {
            let public = key.public_key_pem();
            if existing.get(SA_PUB).map(Vec::as_slice) == Some(public.as_bytes()) {
                plan.keep(SA_ITEM, existing, &[SA_KEY, SA_PUB]);
            } else {
                plan.decide(SA_ITEM, Action::Reissued(Reason::Derived));
                plan.keep_file(SA_KEY, existing, true);
                plan.put(SA_PUB, public.into_bytes(), false);
            }
            Some(key)
        }
        None => {
            plan.keys_needed += 1;
            None
        }
    })
}

/// Step 3: each leaf certificate, kept or planned for signing.
pub(super) fn plan_leaves(
    spec: &PkiSpec,
    existing: &FileSet,
    cas: &Authorities,
    now: OffsetDateTime,
    plan: &mut Plan,
) -> Vec<PendingLeaf> {
    let mut to_sign: Vec<PendingLeaf> = Vec::new();
    for profile in &LEAVES {
        let subject = LeafSubject {
            common_name: profile.common_name.into(),
            organization: profile.organization.map(Into::into),
            usage: profile.usage,
            sans: profile.sans.for_spec(spec),
        };
        let (crt, key) = (catalog::crt(profile.base), catalog::key(profile.base));
        let item = format!("{}.{{crt,key}}", profile.base);
        let ca = cas[&profile.issuer].as_ref();
        let verdict = match (existing.get(&crt), existing.get(&key)) {
            (None, None) => None,
            (Some(c), Some(k)) => Some(evaluate_leaf(c, k, &subject, ca, spec, now)),
            _ => Some(Some(Reason::Unreadable(
                "certificate or key missing".into(),
            ))),
        };
        let files = [crt.clone(), key.clone()];
        let output = Output::Pair { crt, key };
        to_sign.extend(keep_or_plan(
            plan,
            existing,
            verdict,
            item,
            &files,
            (subject, profile.issuer, output),
        ));
    }
    to_sign
}

/// Step 3, continued: each kubeconfig, kept or planned for signing.
pub(super) fn plan_kubeconfigs(
    spec: &PkiSpec,
    existing: &FileSet,
    cas: &Authorities,
    now: OffsetDateTime,
    plan: &mut Plan,
) -> Vec<PendingLeaf> {
    let mut to_sign: Vec<PendingLeaf> = Vec::new();
    let ca_pem = cas[&Authority::Cluster]
        .as_ref()
        .map(|ca| ca.cert_pem.clone());
    for profile in &KUBECONFIGS {
        let subject = LeafSubject {
            common_name: profile.common_name.into(),
            organization: profile.organization.map(Into::into),
            usage: catalog::Usage::Client,
            sans: Vec::new(),
        };
        let server = profile.server.url(spec);
        let item = profile.file.to_string();
        let verdict = existing.get(profile.file).map(|bytes| {
            evaluate_kubeconfig(
                bytes,
                &server,
                ca_pem.as_deref(),
                &subject,
                cas[&Authority::Cluster].as_ref(),
                spec,
                now,
            )
        });
        let output = Output::Kubeconfig {
            file: profile.file,
            server: profile.server,
        };
        let files = [profile.file.to_string()];
        to_sign.extend(keep_or_plan(
            plan,
            existing,
            verdict,
            item,
            &files,
            (subject, Authority::Cluster, output),
        ));
    }

    to_sign
}

/// What checking an existing item found: `None` if there is none,
/// `Some(None)` if it can stay, `Some(Some(reason))` if it must be reissued.
type Verdict = Option<Option<Reason>>;

/// Keeps the item's `files` if its verdict allows; else plans `leaf`
/// (subject, issuer, output) for signing, as created or reissued.
fn keep_or_plan(
    plan: &mut Plan,
    existing: &FileSet,
    verdict: Verdict,
    item: String,
    files: &[String],
    (subject, issuer, output): (LeafSubject, Authority, Output),
) -> Option<PendingLeaf> {
    let action = match verdict {
        Some(None) => {
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            plan.keep(&item, existing, &files);
            return None;
        }
        Some(Some(reason)) => Action::Reissued(reason),
        None => Action::Created,
    };
    Some(plan.leaf(item, action, subject, issuer, output))
}

/// Step 5: the planned authorities, self-signed with the next keys.
pub(super) fn make_authorities(
    spec: &PkiSpec,
    now: OffsetDateTime,
    cas: &mut Authorities,
    plan: &mut Plan,
    next_key: &mut impl FnMut(&str) -> Result<KeyPair, PkiError>,
) -> Result<(), PkiError> {
    for profile in &CAS {
        if cas[&profile.authority].is_some() {
            continue;
        }
        let crt = catalog::crt(profile.base);
        let key = next_key(&crt)?;
        let cert_pem = cert::self_signed_ca(profile.common_name, &key, now, spec.ca_validity)
            .map_err(|reason| PkiError::Signing {
                path: crt.clone(),
                reason,
            })?;
        let info =
            CertInfo::from_pem(cert_pem.as_bytes()).map_err(|r| PkiError::malformed(&crt, r))?;
        plan.put(&crt, cert_pem.clone().into_bytes(), false);
        plan.put(
            &catalog::key(profile.base),
            key.serialize_pem().into_bytes(),
            true,
        );
        cas.insert(
            profile.authority,
            Some(SigningCa {
                cert_pem,
                info,
                key,
            }),
        );
    }
    Ok(())
}

/// Step 5, continued: a new service-account key.
pub(super) fn make_service_account_key(
    plan: &mut Plan,
    next_key: &mut impl FnMut(&str) -> Result<KeyPair, PkiError>,
) -> Result<(), PkiError> {
    let key = next_key(SA_KEY)?;
    plan.decide(SA_ITEM, Action::Created);
    plan.put(SA_KEY, key.serialize_pem().into_bytes(), true);
    plan.put(SA_PUB, key.public_key_pem().into_bytes(), false);
    Ok(())
}

/// Step 5, continued: every planned leaf, signed by its authority.
pub(super) fn sign_leaves(
    spec: &PkiSpec,
    now: OffsetDateTime,
    cas: &Authorities,
    to_sign: Vec<PendingLeaf>,
    plan: &mut Plan,
    next_key: &mut impl FnMut(&str) -> Result<KeyPair, PkiError>,
) -> Result<(), PkiError> {
    let cluster_ca = cas[&Authority::Cluster].as_ref().expect("created above");
    for pending in to_sign {
        let ca = cas[&pending.issuer].as_ref().expect("created above");
        let label = pending.output.label();
        let key = next_key(label)?;
        let cert_pem = cert::signed_leaf(&pending.subject, &key, ca, now, spec.leaf_validity)
            .map_err(|reason| PkiError::Signing {
                path: label.into(),
                reason,
            })?;
        let key_pem = key.serialize_pem();
        match pending.output {
            Output::Pair { crt, key } => {
                plan.put(&crt, cert_pem.into_bytes(), false);
                plan.put(&key, key_pem.into_bytes(), true);
            }
            Output::Kubeconfig { file, server } => {
                let kubeconfig = Kubeconfig::for_client(
                    &spec.tenant_name,
                    &server.url(spec),
                    &cluster_ca.cert_pem,
                    &pending.subject.common_name,
                    &cert_pem,
                    &key_pem,
                );
                plan.put(file, kubeconfig.to_yaml().into_bytes(), true);
            }
        }
    }

    Ok(())
}

/// Step 6: cluster-info, derived from the cluster CA and the endpoint.
pub(super) fn cluster_info(spec: &PkiSpec, existing: &FileSet, cas: &Authorities, plan: &mut Plan) {
    let cluster_ca = cas[&Authority::Cluster].as_ref().expect("made in step 5");
    let cluster_info =
        Kubeconfig::cluster_info(&spec.endpoint.url(), &cluster_ca.cert_pem).to_yaml();
    match existing.get(CLUSTER_INFO) {
        Some(old) if old == cluster_info.as_bytes() => {
            plan.keep(CLUSTER_INFO, existing, &[CLUSTER_INFO])
        }
        Some(_) => plan.decide(CLUSTER_INFO, Action::Reissued(Reason::Derived)),
        None => plan.decide(CLUSTER_INFO, Action::Created),
    }
    plan.put(CLUSTER_INFO, cluster_info.into_bytes(), false);
}

/// Loads a pair of files that belong together. `Ok(None)` when neither exists;
/// an error when only one does or when `load` fails (naming the file at
/// fault), since both halves of an authority must survive together.
pub(super) fn load_pair<T>(
    existing: &FileSet,
    first: &str,
    second: &str,
    load: impl FnOnce(&[u8], &[u8]) -> Result<T, (String, String)>,
) -> Result<Option<T>, PkiError> {
    match (existing.get(first), existing.get(second)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(PkiError::IncompletePair {
            present: first.into(),
            missing: second.into(),
        }),
        (None, Some(_)) => Err(PkiError::IncompletePair {
            present: second.into(),
            missing: first.into(),
        }),
        (Some(a), Some(b)) => load(a, b)
            .map(Some)
            .map_err(|(path, reason)| PkiError::UnreadableAuthority { path, reason }),
    }
}

/// `None` when the leaf may be kept; otherwise the first reason it may not.
fn evaluate_leaf(
    cert_pem: &[u8],
    key_pem: &[u8],
    wanted: &LeafSubject,
    ca: Option<&SigningCa>,
    spec: &PkiSpec,
    now: OffsetDateTime,
) -> Option<Reason> {
    let info = match CertInfo::from_pem(cert_pem) {
        Ok(info) => info,
        Err(why) => return Some(Reason::Unreadable(format!("certificate: {why}"))),
    };
    let key = match cert::load_key(key_pem) {
        Ok(key) => key,
        Err(why) => return Some(Reason::Unreadable(format!("key: {why}"))),
    };
    if !cert::key_matches(&key, &info) {
        return Some(Reason::KeyMismatch);
    }
    match ca {
        Some(ca) if info.is_signed_by(&ca.info) => {}
        _ => return Some(Reason::NotSignedByCurrentCa),
    }
    if info.common_name != wanted.common_name
        || info.organizations.first() != wanted.organization.as_ref()
        || info.organizations.len() > 1
        || info.usage() != Some(wanted.usage)
    {
        return Some(Reason::SubjectChanged);
    }
    let added: Vec<San> = wanted
        .sans
        .iter()
        .filter(|s| !info.sans.contains(s))
        .cloned()
        .collect();
    let removed: Vec<San> = info
        .sans
        .iter()
        .filter(|s| !wanted.sans.contains(s))
        .cloned()
        .collect();
    if !added.is_empty() || !removed.is_empty() {
        return Some(Reason::SansChanged { added, removed });
    }
    if info.key_algorithm != Some(spec.algorithm) {
        let from = info
            .key_algorithm
            .map_or("an unsupported key type".into(), |a| a.to_string());
        return Some(Reason::AlgorithmChanged {
            from,
            to: spec.algorithm,
        });
    }
    if info.not_after - now < spec.renew_before {
        return Some(Reason::Expiring {
            not_after: info.not_after,
        });
    }
    None
}

fn evaluate_kubeconfig(
    bytes: &[u8],
    server: &str,
    ca_pem: Option<&str>,
    wanted: &LeafSubject,
    ca: Option<&SigningCa>,
    spec: &PkiSpec,
    now: OffsetDateTime,
) -> Option<Reason> {
    let credentials = match Kubeconfig::from_yaml(bytes).and_then(|k| k.single_user_credentials()) {
        Ok(credentials) => credentials,
        Err(why) => return Some(Reason::Unreadable(why)),
    };
    if let Some(reason) = evaluate_leaf(
        &credentials.cert_pem,
        &credentials.key_pem,
        wanted,
        ca,
        spec,
        now,
    ) {
        return Some(reason);
    }
    if credentials.server != server {
        return Some(Reason::ServerChanged {
            from: credentials.server,
            to: server.into(),
        });
    }
    if Some(credentials.ca_pem.as_slice()) != ca_pem.map(str::as_bytes) {
        return Some(Reason::CaDataChanged);
    }
    None
}

/// Generates `count` keys. RSA key generation takes tens of milliseconds per
/// key, so RSA keys are spread over the machine's cores; ECDSA keys cost
/// microseconds and are made in line.
pub(super) fn generate_keys(
    algorithm: KeyAlgorithm,
    count: usize,
) -> Result<Vec<KeyPair>, PkiError> {
    let failed = |reason| PkiError::KeyGeneration {
        path: format!("{count} {algorithm} keys"),
        reason,
    };
    if !algorithm.is_rsa() || count < 2 {
        return (0..count)
            .map(|_| cert::generate_key(algorithm).map_err(failed))
            .collect();
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let share = count / threads + usize::from(t < count % threads);
                scope.spawn(move || {
                    (0..share)
                        .map(|_| cert::generate_key(algorithm))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut keys = Vec::with_capacity(count);
        for worker in workers {
            keys.extend(
                worker
                    .join()
                    .expect("key generation thread panicked")
                    .map_err(failed)?,
            );
        }
        Ok(keys)
    })
}
