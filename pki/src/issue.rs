//! Issuing a tenant's PKI, or bringing an existing one up to date.
//!
//! [`issue`] is one code path for both: with no existing files it creates
//! everything; with a previous bundle it keeps what is still good (byte for
//! byte) and reissues only the leaves that must change. CAs and the
//! service-account key are never replaced: losing one would invalidate every
//! certificate or token it signed, so an unreadable one is an error.

use std::collections::BTreeMap;
use std::fmt;

use rcgen::KeyPair;
use time::OffsetDateTime;

use crate::catalog::{
    self, Authority, CAS, CLUSTER_INFO, KUBECONFIGS, LEAVES, SA_KEY, SA_PUB, ServerUrl,
};
use crate::cert::{self, CertInfo, LeafSubject, SigningCa};
use crate::error::PkiError;
use crate::kubeconfig::Kubeconfig;
use crate::spec::{KeyAlgorithm, PkiSpec, San};

/// Files as they are on disk, keyed by path relative to the bundle root
/// (`pki/ca.crt`, `admin.conf`, …).
pub type FileSet = BTreeMap<String, Vec<u8>>;

/// One file of an issued bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct PkiFile {
    pub contents: Vec<u8>,
    /// Holds a private key: written 0600, never logged.
    pub secret: bool,
}

impl fmt::Debug for PkiFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.secret {
            true => write!(f, "PkiFile(<secret, {} bytes>)", self.contents.len()),
            false => write!(f, "PkiFile({} bytes)", self.contents.len()),
        }
    }
}

/// A complete tenant PKI in kubeadm's layout.
#[derive(Debug, Clone)]
pub struct PkiBundle {
    files: BTreeMap<String, PkiFile>,
}

impl PkiBundle {
    pub fn files(&self) -> impl Iterator<Item = (&str, &PkiFile)> {
        self.files.iter().map(|(path, file)| (path.as_str(), file))
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|f| f.contents.as_slice())
    }

    fn required(&self, path: &str) -> &[u8] {
        self.get(path)
            .expect("an issued bundle holds every catalog file")
    }

    /// `pki/ca.crt`, the cluster CA every node pins.
    pub fn ca_cert_pem(&self) -> &[u8] {
        self.required("pki/ca.crt")
    }

    /// The `--discovery-token-ca-cert-hash` value for this tenant.
    pub fn ca_cert_hash(&self) -> String {
        let info = CertInfo::from_pem(self.ca_cert_pem()).expect("issued CA parses");
        crate::hash::spki_sha256(&info.spki_der)
    }

    /// The exact bytes to publish as `kube-public/cluster-info` `data.kubeconfig`.
    pub fn cluster_info_kubeconfig(&self) -> &[u8] {
        self.required(CLUSTER_INFO)
    }

    /// The bundle as a plain [`FileSet`], e.g. to feed back into [`issue`].
    pub fn to_file_set(&self) -> FileSet {
        self.files
            .iter()
            .map(|(path, file)| (path.clone(), file.contents.clone()))
            .collect()
    }
}

/// What happened to one item (a certificate with its key, a kubeconfig, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The files of the item, e.g. `pki/apiserver.{crt,key}` or `admin.conf`.
    pub item: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    Kept,
    Reissued(Reason),
}

/// Why a leaf (or a kubeconfig) was reissued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Unreadable(String),
    KeyMismatch,
    NotSignedByCurrentCa,
    SubjectChanged,
    SansChanged {
        added: Vec<San>,
        removed: Vec<San>,
    },
    AlgorithmChanged {
        from: String,
        to: KeyAlgorithm,
    },
    Expiring {
        not_after: OffsetDateTime,
    },
    ServerChanged {
        from: String,
        to: String,
    },
    CaDataChanged,
    /// Derived files (sa.pub, cluster-info.conf) rewritten from their source.
    Derived,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |sans: &[San]| {
            sans.iter()
                .map(San::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Reason::Unreadable(why) => write!(f, "unreadable: {why}"),
            Reason::KeyMismatch => f.write_str("key does not match certificate"),
            Reason::NotSignedByCurrentCa => f.write_str("not signed by the current CA"),
            Reason::SubjectChanged => f.write_str("subject or key usage differs from the profile"),
            Reason::SansChanged { added, removed } => {
                match (added.is_empty(), removed.is_empty()) {
                    (false, true) => write!(f, "SANs added: {}", list(added)),
                    (true, false) => write!(f, "SANs removed: {}", list(removed)),
                    _ => write!(f, "SANs added: {}; removed: {}", list(added), list(removed)),
                }
            }
            Reason::AlgorithmChanged { from, to } => write!(f, "key algorithm {from} -> {to}"),
            Reason::Expiring { not_after } => write!(f, "expires {}", crate::rfc3339(*not_after)),
            Reason::ServerChanged { from, to } => write!(f, "server {from} -> {to}"),
            Reason::CaDataChanged => f.write_str("embedded CA differs from pki/ca.crt"),
            Reason::Derived => f.write_str("rewritten from its source"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Created => f.write_str("created"),
            Action::Kept => f.write_str("kept"),
            Action::Reissued(reason) => write!(f, "reissued ({reason})"),
        }
    }
}

/// The result of [`issue`]: the complete bundle and a decision per item.
#[derive(Debug)]
pub struct Issued {
    pub bundle: PkiBundle,
    pub decisions: Vec<Decision>,
}

impl Issued {
    /// Whether anything differs from the files passed in.
    pub fn changed(&self) -> bool {
        self.decisions.iter().any(|d| d.action != Action::Kept)
    }
}

/// Issues the PKI `spec` describes, keeping whatever of `existing` is still good.
///
/// `now` is the moment validity is computed from; pass the current time.
pub fn issue(spec: &PkiSpec, existing: &FileSet, now: OffsetDateTime) -> Result<Issued, PkiError> {
    spec.validate()?;
    let mut plan = Plan::default();

    // 1. Authorities: load, or plan a new one when neither half exists.
    let mut cas: BTreeMap<Authority, Option<SigningCa>> = BTreeMap::new();
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

    // 2. The service-account key pair: the public half is derived from the key.
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
    let sa_item = "pki/sa.{key,pub}".to_string();
    let sa = match sa {
        Some(key) => {
            let public = key.public_key_pem();
            if existing.get(SA_PUB).map(Vec::as_slice) == Some(public.as_bytes()) {
                plan.keep(&sa_item, existing, &[SA_KEY, SA_PUB]);
            } else {
                plan.decide(&sa_item, Action::Reissued(Reason::Derived));
                plan.keep_file(SA_KEY, existing, true);
                plan.put(SA_PUB, public.into_bytes(), false);
            }
            Some(key)
        }
        None => {
            plan.keys_needed += 1;
            None
        }
    };

    // 3. Leaves and kubeconfigs: evaluate each against the spec.
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
        match verdict {
            Some(None) => plan.keep(&item, existing, &[&crt, &key]),
            Some(Some(reason)) => to_sign.push(plan.leaf(
                item,
                Action::Reissued(reason),
                subject,
                profile.issuer,
                Output::Pair { crt, key },
            )),
            None => to_sign.push(plan.leaf(
                item,
                Action::Created,
                subject,
                profile.issuer,
                Output::Pair { crt, key },
            )),
        }
    }
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
        match verdict {
            Some(None) => plan.keep(&item, existing, &[profile.file]),
            Some(Some(reason)) => to_sign.push(plan.leaf(
                item,
                Action::Reissued(reason),
                subject,
                Authority::Cluster,
                output,
            )),
            None => {
                to_sign.push(plan.leaf(item, Action::Created, subject, Authority::Cluster, output))
            }
        }
    }

    // 4. Make every key the plan needs at once (in parallel for slow RSA keys).
    let mut keys = generate_keys(spec.algorithm, plan.keys_needed)?.into_iter();
    let mut next_key = |path: &str| {
        keys.next().ok_or_else(|| PkiError::KeyGeneration {
            path: path.into(),
            reason: "key count mismatch".into(),
        })
    };

    // 5. New CAs, the SA key, then every leaf.
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
    if sa.is_none() {
        let key = next_key(SA_KEY)?;
        plan.decide(&sa_item, Action::Created);
        plan.put(SA_KEY, key.serialize_pem().into_bytes(), true);
        plan.put(SA_PUB, key.public_key_pem().into_bytes(), false);
    }
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

    // 6. cluster-info is derived from the CA and the endpoint.
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

    Ok(Issued {
        bundle: PkiBundle { files: plan.files },
        decisions: plan.decisions,
    })
}

/// Where a signed leaf goes.
enum Output {
    Pair {
        crt: String,
        key: String,
    },
    Kubeconfig {
        file: &'static str,
        server: ServerUrl,
    },
}

impl Output {
    fn label(&self) -> &str {
        match self {
            Output::Pair { crt, .. } => crt,
            Output::Kubeconfig { file, .. } => file,
        }
    }
}

struct PendingLeaf {
    subject: LeafSubject,
    issuer: Authority,
    output: Output,
}

/// The bundle under construction and the decisions taken so far.
#[derive(Default)]
struct Plan {
    files: BTreeMap<String, PkiFile>,
    decisions: Vec<Decision>,
    keys_needed: usize,
}

impl Plan {
    fn decide(&mut self, item: &str, action: Action) {
        self.decisions.push(Decision {
            item: item.into(),
            action,
        });
    }

    fn put(&mut self, path: &str, contents: Vec<u8>, secret: bool) {
        self.files.insert(path.into(), PkiFile { contents, secret });
    }

    fn keep_file(&mut self, path: &str, existing: &FileSet, secret: bool) {
        self.put(path, existing[path].clone(), secret);
    }

    /// Keeps files byte for byte. Files ending in `.key` or `.conf` are secret.
    fn keep(&mut self, item: &str, existing: &FileSet, paths: &[&str]) {
        self.decide(item, Action::Kept);
        for path in paths {
            let secret =
                path.ends_with(".key") || (path.ends_with(".conf") && *path != CLUSTER_INFO);
            self.keep_file(path, existing, secret);
        }
    }

    fn create_ca(&mut self, item: &str) {
        self.decide(item, Action::Created);
        self.keys_needed += 1;
    }

    fn leaf(
        &mut self,
        item: String,
        action: Action,
        subject: LeafSubject,
        issuer: Authority,
        output: Output,
    ) -> PendingLeaf {
        self.decide(&item, action);
        self.keys_needed += 1;
        PendingLeaf {
            subject,
            issuer,
            output,
        }
    }
}

/// Loads a pair of files that belong together. `Ok(None)` when neither exists;
/// an error when only one does or when `load` fails (naming the file at
/// fault), since both halves of an authority must survive together.
fn load_pair<T>(
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
fn generate_keys(algorithm: KeyAlgorithm, count: usize) -> Result<Vec<KeyPair>, PkiError> {
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
