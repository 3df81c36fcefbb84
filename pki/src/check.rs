//! `gantry pki check`: the health of every certificate in a bundle.

use time::{Duration, OffsetDateTime};

use crate::catalog::{self, CAS, KUBECONFIGS, LEAVES, SA_KEY, SA_PUB};
use crate::cert::{self, CertInfo};
use crate::issue::FileSet;
use crate::kubeconfig::Kubeconfig;
use crate::spec::San;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Valid, but within the renewal window.
    Renew,
    Expired,
    Invalid(String),
}

impl Health {
    /// Whether this entry makes `pki check` fail.
    pub fn is_failure(&self) -> bool {
        matches!(self, Health::Expired | Health::Invalid(_))
    }

    pub fn label(&self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Renew => "renew",
            Health::Expired => "expired",
            Health::Invalid(_) => "invalid",
        }
    }
}

/// One row of the check table.
#[derive(Debug, Clone)]
pub struct CertReport {
    pub file: String,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<San>,
    pub not_after: Option<OffsetDateTime>,
    pub health: Health,
}

impl CertReport {
    pub fn days_left(&self, now: OffsetDateTime) -> Option<i64> {
        self.not_after.map(|t| (t - now).whole_days())
    }
}

/// Checks every CA, leaf, kubeconfig certificate and the service-account key
/// pair of a bundle: parseable, key matches, signed by its CA, not expired.
pub fn check(files: &FileSet, now: OffsetDateTime, renew_before: Duration) -> Vec<CertReport> {
    let mut reports = Vec::new();
    let mut ca_infos = std::collections::BTreeMap::new();
    for ca in &CAS {
        let report = inspect_pair(files, ca.base, now, renew_before, |info| {
            if !info.is_ca {
                return Err("not a CA certificate".into());
            }
            if !info.is_signed_by(info) {
                return Err("not self-signed".into());
            }
            Ok(())
        });
        if let (Ok(info), Ok(_)) = (
            read_cert(files, &catalog::crt(ca.base)),
            &report.health_result,
        ) {
            ca_infos.insert(ca.authority, info);
        }
        reports.push(report.report);
    }
    for leaf in &LEAVES {
        let ca = ca_infos.get(&leaf.issuer);
        let issuer_base = catalog::ca_profile(leaf.issuer).base;
        reports.push(
            inspect_pair(files, leaf.base, now, renew_before, |info| {
                signed_by(info, ca, issuer_base)
            })
            .report,
        );
    }
    let cluster_ca = ca_infos.get(&catalog::Authority::Cluster);
    for kubeconfig in &KUBECONFIGS {
        reports.push(inspect_kubeconfig(
            files,
            kubeconfig.file,
            cluster_ca,
            now,
            renew_before,
        ));
    }
    reports.push(inspect_service_account(files));
    reports
}

struct Inspected {
    report: CertReport,
    health_result: Result<(), String>,
}

fn read_cert(files: &FileSet, path: &str) -> Result<CertInfo, String> {
    let bytes = files
        .get(path)
        .ok_or_else(|| format!("{path} is missing"))?;
    CertInfo::from_pem(bytes).map_err(|e| format!("{path}: {e}"))
}

fn signed_by(info: &CertInfo, ca: Option<&CertInfo>, ca_base: &str) -> Result<(), String> {
    match ca {
        Some(ca) if info.is_signed_by(ca) => Ok(()),
        Some(_) => Err(format!("not signed by {ca_base}.crt")),
        None => Err(format!("{ca_base}.crt is missing or invalid")),
    }
}

fn inspect_pair(
    files: &FileSet,
    base: &str,
    now: OffsetDateTime,
    renew_before: Duration,
    extra: impl FnOnce(&CertInfo) -> Result<(), String>,
) -> Inspected {
    let crt = catalog::crt(base);
    let result = read_cert(files, &crt).and_then(|info| {
        let key_path = catalog::key(base);
        let key_bytes = files
            .get(&key_path)
            .ok_or_else(|| format!("{key_path} is missing"))?;
        let key = cert::load_key(key_bytes).map_err(|e| format!("{key_path}: {e}"))?;
        if !cert::key_matches(&key, &info) {
            return Err(format!("{key_path} does not match the certificate"));
        }
        Ok(info)
    });
    finish(crt, result, now, renew_before, extra)
}

fn inspect_kubeconfig(
    files: &FileSet,
    file: &str,
    ca: Option<&CertInfo>,
    now: OffsetDateTime,
    renew_before: Duration,
) -> CertReport {
    let result = files
        .get(file)
        .ok_or_else(|| format!("{file} is missing"))
        .and_then(|bytes| Kubeconfig::from_yaml(bytes))
        .and_then(|kubeconfig| kubeconfig.single_user_credentials())
        .and_then(|creds| {
            let info = CertInfo::from_pem(&creds.cert_pem)
                .map_err(|e| format!("client certificate: {e}"))?;
            let key = cert::load_key(&creds.key_pem).map_err(|e| format!("client key: {e}"))?;
            if !cert::key_matches(&key, &info) {
                return Err("client key does not match the client certificate".into());
            }
            if let Some(ca) = ca
                && creds.ca_pem != pem_of(ca)
            {
                return Err("embedded CA differs from pki/ca.crt".into());
            }
            Ok(info)
        });
    finish(file.to_string(), result, now, renew_before, |info| {
        signed_by(info, ca, "pki/ca")
    })
    .report
}

fn pem_of(info: &CertInfo) -> Vec<u8> {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", info.der.clone()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
    .into_bytes()
}

fn finish(
    file: String,
    result: Result<CertInfo, String>,
    now: OffsetDateTime,
    renew_before: Duration,
    extra: impl FnOnce(&CertInfo) -> Result<(), String>,
) -> Inspected {
    match result {
        Err(why) => Inspected {
            report: CertReport {
                file,
                subject: "-".into(),
                issuer: "-".into(),
                sans: Vec::new(),
                not_after: None,
                health: Health::Invalid(why.clone()),
            },
            health_result: Err(why),
        },
        Ok(info) => {
            let verdict = extra(&info);
            let health = match &verdict {
                Err(why) => Health::Invalid(why.clone()),
                Ok(()) if info.not_after <= now => Health::Expired,
                Ok(()) if info.not_before > now => Health::Invalid("not valid yet".into()),
                Ok(()) if info.not_after - now < renew_before => Health::Renew,
                Ok(()) => Health::Ok,
            };
            Inspected {
                report: CertReport {
                    file,
                    subject: info.subject.clone(),
                    issuer: info.issuer.clone(),
                    sans: info.sans.clone(),
                    not_after: Some(info.not_after),
                    health,
                },
                health_result: verdict,
            }
        }
    }
}

fn inspect_service_account(files: &FileSet) -> CertReport {
    let health = match (files.get(SA_KEY), files.get(SA_PUB)) {
        (Some(key), Some(public)) => match cert::load_key(key) {
            Ok(key) if key.public_key_pem().as_bytes() == public.as_slice() => Health::Ok,
            Ok(_) => Health::Invalid(format!("{SA_PUB} is not the public half of {SA_KEY}")),
            Err(why) => Health::Invalid(format!("{SA_KEY}: {why}")),
        },
        _ => Health::Invalid(format!("{SA_KEY} or {SA_PUB} is missing")),
    };
    CertReport {
        file: format!("{SA_KEY},{SA_PUB}"),
        subject: "(service-account signing key)".into(),
        issuer: "-".into(),
        sans: Vec::new(),
        not_after: None,
        health,
    }
}
