//! `gantry pki init | check | ca-cert-hash`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use gantry_pki::{
    Action, Endpoint, InvalidInput, KeyAlgorithm, PkiFile, PkiSpec, San, default_namespace,
};
use time::{Duration, OffsetDateTime};

use super::{CliError, read_flag_file};
use crate::bundle_dir::{self, BundleRecord, LockedBundle, Owner};

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Write a tenant's PKI and kubeconfigs to DIR; on an existing DIR keep
    /// the CAs and every valid leaf and reissue only what must change.
    Init(Box<InitArgs>),
    /// Print every certificate of DIR with its status; exit 1 if any is
    /// invalid or expired.
    Check {
        /// A bundle folder: `gantry pki init --out` or `gantry render --out`.
        dir: PathBuf,
        /// Report certificates with less than this many days left as "renew".
        #[arg(long, default_value_t = 30)]
        renew_before_days: i64,
    },
    /// Print the `kubeadm join --discovery-token-ca-cert-hash` value of a CA certificate.
    CaCertHash {
        /// A PEM CA certificate, such as DIR/pki/ca.crt.
        file: PathBuf,
    },
}

#[derive(Args)]
pub struct InitArgs {
    /// Tenant name: a DNS-1123 label of at most 40 characters.
    #[arg(long)]
    name: String,
    /// Output folder: new, empty, or a bundle of this tenant (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Service-cluster namespace of the tenant's masters [default: tcp-<name>].
    #[arg(long)]
    namespace: Option<String>,
    /// Where nodes and users reach the apiserver, HOST[:PORT] (port 6443 if omitted)
    /// [default: kube-apiserver.<namespace>.svc:6443, reachable only inside the service cluster].
    #[arg(long, value_name = "HOST[:PORT]")]
    endpoint: Option<String>,
    /// Extra subject alternative name for the apiserver certificate (repeatable).
    #[arg(long = "san", value_name = "DNS-OR-IP")]
    sans: Vec<String>,
    /// The tenant cluster's Service CIDR.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// The tenant cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    dns_domain: String,
    /// The service cluster's DNS domain (for the masters' Service names).
    #[arg(long, default_value = "cluster.local")]
    service_cluster_domain: String,
    /// Key algorithm: ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096.
    #[arg(long, default_value = "ecdsa-p256")]
    algorithm: String,
    /// Validity of new CAs, in days.
    #[arg(long, default_value_t = 3650)]
    ca_validity_days: i64,
    /// Validity of new leaf certificates, in days.
    #[arg(long, default_value_t = 365)]
    cert_validity_days: i64,
    /// Reissue leaves with less than this many days left.
    #[arg(long, default_value_t = 30)]
    renew_before_days: i64,
    /// Make new CAs where the bundle has lost its own. Every worker must
    /// join again and every kubeconfig handed out stops working.
    #[arg(long)]
    new_ca: bool,
    /// Take over a folder with gantry's layout but no gantry-bundle.json (a
    /// bundle of an older gantry): its keys are kept, none of its files is removed.
    #[arg(long)]
    adopt: bool,
}

pub fn run(command: PkiCommand) -> Result<ExitCode, CliError> {
    match command {
        PkiCommand::Init(args) => init(*args),
        PkiCommand::Check {
            dir,
            renew_before_days,
        } => check(&dir, days("renew-before-days", renew_before_days, 0)?),
        PkiCommand::CaCertHash { file } => {
            let pem = read_flag_file("FILE", &file, bundle_dir::at::MAX_FILE_BYTES)?;
            let hash = gantry_pki::ca_cert_hash(&pem).map_err(|e| CliError::BadFile {
                flag: "FILE",
                value: file.display().to_string(),
                reason: e.to_string(),
            })?;
            say!("{hash}")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Builds the spec from the flags; every error names its flag and value.
fn spec_from_args(args: &InitArgs) -> Result<PkiSpec, CliError> {
    gantry_pki::validate_tenant_name(&args.name)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| default_namespace(&args.name));
    // Before the default endpoint is made from it, so a bad namespace is
    // reported as --namespace, not as --endpoint.
    gantry_pki::validate_namespace(&namespace)?;
    let endpoint = match &args.endpoint {
        Some(value) => Endpoint::parse("endpoint", value)?,
        None => Endpoint::parse("endpoint", &format!("kube-apiserver.{namespace}.svc"))?,
    };
    let mut spec = PkiSpec::new(&args.name, endpoint)?;
    spec.namespace = namespace;
    spec.extra_sans = args
        .sans
        .iter()
        .map(|s| San::parse("san", s))
        .collect::<Result<_, _>>()?;
    spec.service_cidr = gantry_pki::parse_cidr("service-cidr", &args.service_cidr)?;
    spec.dns_domain = args.dns_domain.clone();
    spec.service_cluster_domain = args.service_cluster_domain.clone();
    spec.algorithm = args.algorithm.parse::<KeyAlgorithm>()?;
    spec.ca_validity = days("ca-validity-days", args.ca_validity_days, 1)?;
    spec.leaf_validity = days("cert-validity-days", args.cert_validity_days, 1)?;
    spec.renew_before = days("renew-before-days", args.renew_before_days, 0)?;
    if args.renew_before_days >= args.cert_validity_days {
        return Err(InvalidInput::new(
            "renew-before-days",
            args.renew_before_days,
            format!(
                "must be less than --cert-validity-days ({})",
                args.cert_validity_days
            ),
        )
        .into());
    }
    spec.validate()?;
    Ok(spec)
}

fn init(args: InitArgs) -> Result<ExitCode, CliError> {
    let spec = spec_from_args(&args)?;
    let bundle = LockedBundle::acquire(&args.out, super::render::LOCK_WAIT)?;
    let folder = bundle.folder();
    // The same ownership rules as `gantry render`: no foreign folder, no other
    // tenant's bundle, no lost key replaced without --new-ca.
    let owner = Owner::of(folder)?;
    owner.check(folder, &spec.tenant_name, &spec.namespace, args.adopt)?;
    if owner.record().is_some_and(|record| record.fixed.is_some()) {
        // Its flags would replace what the render made the certificates
        // for (endpoint, SANs, networks), and service/ and chart/ would keep
        // the old ones: the bundle would no longer agree with itself.
        return Err(bundle_dir::BundleDirError::Refused {
            path: args.out.clone(),
            reason: "holds a rendered bundle; renew its PKI with gantry render, which keeps \
                     its manifests and chart in step"
                .into(),
        }
        .into());
    }
    let mut existing = bundle_dir::read_catalog("--out", folder)?;
    bundle_dir::guard_keys(folder, &owner, &mut existing, args.new_ca)?;
    let issued = gantry_pki::issue(&spec, &existing, OffsetDateTime::now_utc())?;
    let mut files: BTreeMap<String, PkiFile> = issued
        .bundle
        .files()
        .map(|(path, file)| (path.to_string(), file.clone()))
        .collect();
    // A rendered bundle keeps its record (its manifests stay gantry's); a
    // new one records the PKI as this tenant's.
    let record = match owner.record() {
        Some(previous) => BundleRecord {
            files: previous.files.iter().chain(files.keys()).cloned().collect(),
            ..previous.clone()
        },
        None => BundleRecord {
            tenant: spec.tenant_name.clone(),
            namespace: spec.namespace.clone(),
            files: files.keys().cloned().collect(),
            fixed: None,
        },
    };
    files.insert(bundle_dir::RECORD.into(), record.to_file());
    if let Some(previous) =
        folder
            .read(bundle_dir::RECORD)
            .map_err(|e| bundle_dir::BundleDirError::Unreadable {
                flag: "--out",
                path: args.out.clone(),
                reason: e.to_string(),
            })?
    {
        existing.insert(bundle_dir::RECORD.into(), previous);
    }
    let written = bundle_dir::write_files(folder, &files, &existing, &BTreeSet::new())?;
    bundle.keep();
    for decision in &issued.decisions {
        match &decision.action {
            Action::Created => say!("created    {}", decision.item)?,
            Action::Kept => say!("kept       {}", decision.item)?,
            Action::Reissued(reason) => say!("reissued   {}: {reason}", decision.item)?,
        }
    }
    for path in &written.narrowed {
        say!("mode of {path} set to 0600 again (it holds a secret)")?;
    }
    say!(
        "{} files written to {}; CA hash {}",
        written.written.len(),
        args.out.display(),
        issued.bundle.ca_cert_hash()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn check(dir: &Path, renew_before: Duration) -> Result<ExitCode, CliError> {
    if !dir.is_dir() {
        return Err(CliError::BadFile {
            flag: "DIR",
            value: dir.display().to_string(),
            reason: "is not a folder".into(),
        });
    }
    let files = bundle_dir::read_bundle("DIR", dir)?;
    let now = OffsetDateTime::now_utc();
    let reports = gantry_pki::check(&files, now, renew_before);
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            [
                r.file.clone(),
                r.subject.clone(),
                r.issuer.clone(),
                r.not_after.map_or("-".into(), gantry_pki::rfc3339),
                r.days_left(now).map_or("-".into(), |d| d.to_string()),
                r.health.label().to_string(),
                match r.sans.len() {
                    0 => "-".into(),
                    _ => r
                        .sans
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "FILE",
            "SUBJECT",
            "ISSUER",
            "NOT AFTER",
            "DAYS LEFT",
            "STATUS",
            "SANS",
        ],
        &rows,
    )?;
    let failures: Vec<_> = reports.iter().filter(|r| r.health.is_failure()).collect();
    for report in &failures {
        match &report.health {
            gantry_pki::Health::Invalid(why) => say!("{}: invalid: {why}", report.file)?,
            _ => say!("{}: expired", report.file)?,
        }
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Failed(format!(
            "{} of {} entries in {} are invalid or expired",
            failures.len(),
            reports.len(),
            dir.display()
        )))
    }
}

/// A number of days given by `flag`, between `min` and 100 years; the
/// error names the flag and the value as written.
fn days(flag: &'static str, value: i64, min: i64) -> Result<Duration, InvalidInput> {
    if (min..=gantry_pki::MAX_VALIDITY_DAYS).contains(&value) {
        Ok(Duration::days(value))
    } else {
        Err(InvalidInput::new(
            flag,
            value,
            format!(
                "must be between {min} and {} days (100 years)",
                gantry_pki::MAX_VALIDITY_DAYS
            ),
        ))
    }
}

/// Left-aligned columns separated by three spaces, like `kubectl get`.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> Result<(), CliError> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        say!("{}", padded.join("   ").trim_end())
    };
    line(header.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}
