//! `gantry render TCP.yaml --out DIR`: a complete tenant, offline — PKI,
//! kubeconfigs, the service and tenant manifests, a Helm chart archive of the
//! service set, and the `kubeadm join` command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use gantry_pki::{Action, BootstrapToken, PkiFile};
use gantry_renderer::{RenderedObject, RestoreRequest, chart};
use time::OffsetDateTime;

use super::{CliError, read_flag_file};
use crate::bundle_dir::{
    self, BundleRecord, FixedSpec, JOIN_COMMAND, LockedBundle, Owner, RECORD, RENDERED_FOLDERS,
    STAGING,
};
use gantry_api::TenantControlPlane;
use gantry_controller::resolve::{offline_endpoint, resolve};

/// The largest manifest gantry reads: etcd stores no object larger than
/// 1.5 MiB, and a TenantControlPlane is a few KiB. Parsing 1 MiB of YAML takes
/// about a second and a quarter GiB of memory at worst (docs/security.md).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// How long a render waits for another gantry writing the same folder.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct RenderArgs {
    /// The TenantControlPlane manifest (see examples/tenant-a.yaml).
    manifest: PathBuf,
    /// Output folder: new, empty, or a bundle of this tenant. Its PKI is reused
    /// (same keep/reissue rules as `pki init`); files an earlier render wrote and
    /// this one does not are removed, and no other file is touched.
    #[arg(long)]
    out: PathBuf,
    /// Make new CAs where a rendered bundle has lost its own. Every worker must
    /// join again and every kubeconfig handed out stops working.
    #[arg(long)]
    new_ca: bool,
    /// Take over a folder with gantry's layout but no gantry-bundle.json (a
    /// bundle of an older gantry): its keys are kept, none of its files is removed.
    #[arg(long)]
    adopt: bool,
    /// Join token, ID.SECRET [default: the previous render's token while it is valid, else a new one].
    #[arg(long, value_name = "ID.SECRET")]
    token: Option<String>,
    /// The service cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    service_cluster_domain: String,
    /// The service cluster's own pod and Service CIDRs, comma-separated: the
    /// masters' egress NetworkPolicy keeps them out of reach.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = service_cluster_cidr)]
    service_cluster_cidrs: Vec<ipnet::IpNet>,
    /// gantry's image as the nodes pull it: the tenant's konnectivity server
    /// and agent run from it.
    #[arg(long, value_name = "IMAGE", default_value_t = gantry_renderer::default_gantry_image(), value_parser = image_reference)]
    gantry_image: String,
    #[command(flatten)]
    backup: crate::backup::BackupDefaultArgs,
    /// Also write restore/: one Job per etcd member that restores this
    /// snapshot onto the member's volume while etcd is stopped (NAME, or
    /// TENANT/NAME for another tenant's; docs/operations.md, "Restore a
    /// tenant rendered offline"). The next render without it removes them.
    #[arg(long, value_name = "SNAPSHOT")]
    restore_from: Option<String>,
}

/// `--gantry-image`: an image reference, `REPOSITORY[:TAG][@DIGEST]`, one
/// token of at most 512 printable characters.
pub(crate) fn image_reference(value: &str) -> Result<String, String> {
    let printable = value.bytes().all(|b| b.is_ascii_graphic());
    if value.is_empty() || value.len() > 512 || !printable {
        return Err("an image reference: REPOSITORY[:TAG][@DIGEST], no spaces".into());
    }
    Ok(value.to_string())
}

/// One `--service-cluster-cidrs` entry: a CIDR such as `10.244.0.0/16`.
pub(crate) fn service_cluster_cidr(value: &str) -> Result<ipnet::IpNet, String> {
    gantry_pki::parse_cidr("--service-cluster-cidrs", value).map_err(|e| e.reason)
}

pub fn run(args: RenderArgs) -> Result<ExitCode, CliError> {
    gantry_renderer::compile_templates_in_background();
    let manifest = read_manifest(&args.manifest)?;
    let token_flag = args
        .token
        .as_deref()
        .map(BootstrapToken::parse)
        .transpose()?;

    let now = OffsetDateTime::now_utc();
    let bundle = LockedBundle::acquire(&args.out, LOCK_WAIT)?;
    let folder = bundle.folder();
    let owner = Owner::of(folder)?;
    let listed = bundle_dir::list_files("--out", folder, &RENDERED_FOLDERS)?;
    let mut existing = bundle_dir::read_catalog("--out", folder)?;
    bundle_dir::read_files("--out", folder, &mut existing, [JOIN_COMMAND, RECORD])?;
    // Of the rendered folders, only what a decision below needs: the files
    // gantry wrote (the record's), or an unrecorded bundle's service
    // manifests (whether its apiserver encrypts Secrets at rest).
    let needed = listed.iter().filter(|path| match &owner {
        Owner::Recorded { record } => record.files.contains(*path),
        Owner::Unrecorded => path.starts_with("service/"),
        Owner::Nobody | Owner::Interrupted(_) => false,
    });
    bundle_dir::read_files("--out", folder, &mut existing, needed.map(String::as_str))?;
    let previous = previous_token(folder, &existing, &listed)?;
    let (token, expiration) = choose_token(token_flag, previous, now);
    let endpoint = offline_endpoint(&manifest)?;
    let resolved = resolve(
        &manifest,
        &endpoint,
        token,
        expiration,
        now,
        &gantry_renderer::ServiceCluster {
            domain: args.service_cluster_domain.clone(),
            cidrs: args.service_cluster_cidrs.clone(),
            gantry_image: args.gantry_image.clone(),
            backup: args.backup.to_defaults()?,
        },
    )?;
    let input = &resolved.input;
    owner.check(folder, &input.name, &input.namespace, args.adopt)?;
    if let Some(previous) = owner.record().and_then(|record| record.fixed.as_ref()) {
        refuse_fixed_changes(previous, input)?;
    }
    bundle_dir::guard_keys(folder, &owner, &mut existing, args.new_ca)?;
    let issued = gantry_pki::issue(&resolved.pki, &existing, now)?;
    let rendered = gantry_renderer::render(input, &issued.bundle)?;
    let restore = (args.restore_from.as_deref())
        .map(|value| restore_files(input, value))
        .transpose()?;
    let files = bundle_files(input, &issued, &rendered, restore.as_ref())?;
    // The files this render writes over, to write only what changed.
    let overwritten = files.keys().filter(|path| listed.contains(*path));
    bundle_dir::read_files(
        "--out",
        folder,
        &mut existing,
        overwritten.map(String::as_str),
    )?;
    let written = bundle_dir::write_files(folder, &files, &existing, &owner.written_before())?;
    let old_staging = bundle_dir::remove_old_staging(&args.out);
    bundle.keep();
    print_summary(&args.out, input, &issued, &rendered, &written)?;
    if let Some(restore) = &restore {
        print_restore_steps(&args.out, input, restore)?;
    }
    for path in old_staging {
        say!(
            "  removed {} (left by an earlier gantry that was killed)",
            path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest, parsed; every error names the file.
fn read_manifest(path: &std::path::Path) -> Result<TenantControlPlane, CliError> {
    let bad_manifest = |reason: String| CliError::BadFile {
        flag: "MANIFEST",
        value: path.display().to_string(),
        reason,
    };
    let text = read_flag_file("MANIFEST", path, MAX_MANIFEST_BYTES)?;
    let text = String::from_utf8(text).map_err(|_| bad_manifest("is not UTF-8 text".into()))?;
    TenantControlPlane::from_yaml(&text).map_err(|e| bad_manifest(e.0))
}

/// `--token`, else the previous render's token while it is valid, else a new
/// one; with the expiration to keep when the token is the previous one.
fn choose_token(
    flag: Option<BootstrapToken>,
    previous: Option<(BootstrapToken, OffsetDateTime)>,
    now: OffsetDateTime,
) -> (BootstrapToken, Option<OffsetDateTime>) {
    let previous = previous.filter(|(_, expiration)| *expiration > now);
    match (flag, previous) {
        (Some(token), Some((old, expiration))) if token == old => (token, Some(expiration)),
        (Some(token), _) => (token, None),
        (None, Some((old, expiration))) => (old, Some(expiration)),
        (None, None) => (BootstrapToken::generate(), None),
    }
}

/// `--restore-from`'s request and its Jobs as `restore/<job>.yaml` files
/// (the Jobs the operator runs for the same request).
struct RestoreFiles {
    request: RestoreRequest,
    files: Vec<(String, Vec<u8>)>,
}

fn restore_files(
    input: &gantry_renderer::RenderInput,
    value: &str,
) -> Result<RestoreFiles, CliError> {
    let request = RestoreRequest::parse(&input.name, value)
        .map_err(|reason| gantry_pki::InvalidInput::new("restore-from", value, reason))?;
    let mut files = Vec::new();
    for (job, index) in gantry_renderer::render_restore_jobs(input, &request)?
        .iter()
        .zip(0..)
    {
        let yaml = serde_yaml::to_string(job)
            .map_err(|e| CliError::Failed(format!("restore Job {index}: {e}")))?;
        let name = gantry_renderer::restore_job_name(index);
        files.push((format!("restore/{name}.yaml"), yaml.into_bytes()));
    }
    Ok(RestoreFiles { request, files })
}

/// Every file of the bundle: the PKI, the manifests, the chart, the join
/// command, `--restore-from`'s Jobs and the bundle's record.
fn bundle_files(
    input: &gantry_renderer::RenderInput,
    issued: &gantry_pki::Issued,
    rendered: &gantry_renderer::Rendered,
    restore: Option<&RestoreFiles>,
) -> Result<BTreeMap<String, PkiFile>, CliError> {
    let archive_name = chart::archive_name(&input.name, input.version);
    // The chart is packed while the other threads serialise the rest of the
    // YAML; each object's YAML is made once, by whichever thread comes first.
    let archive = std::thread::scope(|scope| {
        let chart = scope.spawn(|| chart::package(&input.name, input.version, &rendered.service));
        rendered.emit_yaml();
        chart.join().expect("chart packer panicked")
    })?;
    let join_command = gantry_pki::kubeadm_join_command(
        &input.endpoint.to_string(),
        &input.token.expose(),
        &issued.bundle.ca_cert_hash(),
    ) + "\n";
    let mut files: BTreeMap<String, PkiFile> = issued
        .bundle
        .files()
        .map(|(path, file)| (path.to_string(), file.clone()))
        .collect();
    add_manifests(&mut files, "service", &rendered.service);
    add_manifests(&mut files, "tenant", &rendered.tenant);
    // The chart carries the PKI Secrets, the join command the token: both 0600.
    let secret = |contents: Vec<u8>| PkiFile {
        contents,
        secret: true,
    };
    files.insert(format!("chart/{archive_name}"), secret(archive));
    files.insert(JOIN_COMMAND.into(), secret(join_command.into_bytes()));
    for (path, yaml) in restore.iter().flat_map(|r| &r.files) {
        files.insert(
            path.clone(),
            PkiFile {
                contents: yaml.clone(),
                secret: false,
            },
        );
    }
    let record = BundleRecord {
        tenant: input.name.clone(),
        namespace: input.namespace.clone(),
        files: files.keys().cloned().collect(),
        fixed: Some(fixed_spec(input)),
    };
    files.insert(RECORD.into(), record.to_file());
    Ok(files)
}

/// What was rendered, and the next steps.
fn print_summary(
    out: &std::path::Path,
    input: &gantry_renderer::RenderInput,
    issued: &gantry_pki::Issued,
    rendered: &gantry_renderer::Rendered,
    written: &bundle_dir::Written,
) -> Result<(), CliError> {
    let count = |action: fn(&Action) -> bool| {
        issued
            .decisions
            .iter()
            .filter(|d| action(&d.action))
            .count()
    };
    let out = out.display();
    let archive_name = chart::archive_name(&input.name, input.version);
    say!(
        "rendered {} (Kubernetes {}) into {out}: {} files written, {} removed",
        input.name,
        input.version,
        written.written.len(),
        written.removed.len(),
    )?;
    for path in &written.removed {
        say!("  removed {path} (an earlier render wrote it; this one does not)")?;
    }
    for path in &written.narrowed {
        say!("  mode of {path} set to 0600 again (it holds a secret)")?;
    }
    if written.cleaned_staging {
        say!("  removed {STAGING}/ (left by a gantry that was killed)")?;
    }
    say!(
        "  pki/, *.conf        PKI and kubeconfigs: {} created, {} kept, {} reissued",
        count(|a| *a == Action::Created),
        count(|a| *a == Action::Kept),
        count(|a| matches!(a, Action::Reissued(_)))
    )?;
    for decision in issued
        .decisions
        .iter()
        .filter(|d| matches!(d.action, Action::Reissued(_)))
    {
        say!(
            "                      {}: {}",
            decision.item,
            decision.action
        )?;
    }
    say!(
        "  service/            {} objects for the service cluster (namespace {})",
        rendered.service.len(),
        input.namespace
    )?;
    say!(
        "  tenant/             {} objects for the tenant cluster",
        rendered.tenant.len()
    )?;
    say!("  chart/{archive_name}")?;
    say!(
        "  {JOIN_COMMAND}        token {} expires {}",
        input.token.id(),
        gantry_pki::rfc3339(input.token_expiration)
    )?;
    say!("next steps:")?;
    // The chart holds no Namespace (chart::package says why): it comes first.
    if let Some((index, namespace)) =
        (rendered.service.iter().enumerate()).find(|(_, object)| object.kind == "Namespace")
    {
        let file = chart::manifest_file_name(index, namespace);
        say!("  kubectl apply -f {out}/service/{file}   # helm uninstall keeps it")?;
    }
    say!(
        "  helm install {} {out}/chart/{archive_name} -n {}",
        input.name,
        input.namespace
    )?;
    say!(
        "  kubectl --kubeconfig {out}/super-admin.conf apply -f {out}/tenant/   # once {} answers",
        input.endpoint.url()
    )?;
    say!("  on each worker VM: the command in {out}/{JOIN_COMMAND}")?;
    Ok(())
}

/// The offline restore, step by step (docs/operations.md says why each).
fn print_restore_steps(
    out: &std::path::Path,
    input: &gantry_renderer::RenderInput,
    restore: &RestoreFiles,
) -> Result<(), CliError> {
    let out = out.display();
    let ns = &input.namespace;
    say!(
        "to restore etcd from snapshot {} of {} with the {} Jobs in {out}/restore/ \
         (etcd and the apiservers stop meanwhile):",
        restore.request.snapshot,
        restore.request.tenant,
        restore.files.len(),
    )?;
    say!("  kubectl -n {ns} scale statefulset/etcd deployment/kube-apiserver --replicas=0")?;
    say!("  kubectl -n {ns} wait --for=delete pod -l app.kubernetes.io/name=etcd --timeout=5m")?;
    say!("  kubectl apply -f {out}/restore/")?;
    say!("  kubectl wait --for=condition=Complete -f {out}/restore/ --timeout=60m")?;
    say!("  kubectl delete -f {out}/restore/")?;
    say!(
        "  kubectl -n {ns} scale statefulset/etcd --replicas={}",
        input.etcd.replicas
    )?;
    say!(
        "  kubectl -n {ns} scale deployment/kube-apiserver --replicas={}",
        input.api_server.replicas
    )?;
    say!("  then render again without --restore-from: restore/ is removed")?;
    Ok(())
}

fn add_manifests(files: &mut BTreeMap<String, PkiFile>, folder: &str, objects: &[RenderedObject]) {
    for (index, object) in objects.iter().enumerate() {
        files.insert(
            format!("{folder}/{}", chart::manifest_file_name(index, object)),
            PkiFile {
                contents: object.to_yaml().as_bytes().to_vec(),
                secret: object.is_secret(),
            },
        );
    }
}

/// The token of a previous render in the same folder, with its expiration,
/// so that rendering again changes nothing until the token runs out.
fn previous_token(
    folder: &bundle_dir::at::Folder,
    existing: &gantry_pki::FileSet,
    listed: &std::collections::BTreeSet<String>,
) -> Result<Option<(BootstrapToken, OffsetDateTime)>, CliError> {
    let Some(command) = existing.get(JOIN_COMMAND) else {
        return Ok(None);
    };
    let Some(command) = gantry_pki::JoinCommand::parse(&String::from_utf8_lossy(command)) else {
        return Ok(None);
    };
    let Ok(token) = BootstrapToken::parse(&command.token) else {
        return Ok(None);
    };
    let suffix = format!("-secret-{}.yaml", token.secret_name());
    let Some(path) = listed
        .iter()
        .find(|path| path.starts_with("tenant/") && path.ends_with(&suffix))
    else {
        return Ok(None);
    };
    let mut secret = gantry_pki::FileSet::new();
    bundle_dir::read_files("--out", folder, &mut secret, [path.as_str()])?;
    Ok(secret
        .get(path)
        .and_then(|secret| crate::access::bootstrap_token_expiration(secret))
        .map(|expiration| (token, expiration)))
}

fn fixed_spec(input: &gantry_renderer::RenderInput) -> FixedSpec {
    FixedSpec {
        version: input.version.to_string(),
        service_cidr: input.networking.service_cidr.to_string(),
        pod_cidr: input.networking.pod_cidr.to_string(),
        dns_domain: input.networking.dns_domain.clone(),
        etcd_replicas: input.etcd.replicas,
    }
}

/// Refuses what the CRD and the operator refuse on a live tenant: a
/// downgrade or a skipped minor, a networking change, an etcd member count
/// change. The error names the field, the new value and the bundle's.
fn refuse_fixed_changes(
    previous: &FixedSpec,
    input: &gantry_renderer::RenderInput,
) -> Result<(), gantry_controller::resolve::SpecError> {
    let refused =
        |field: &str, value: String, reason: String| gantry_controller::resolve::SpecError {
            field: field.into(),
            value,
            reason,
        };
    let now = fixed_spec(input);
    // An unreadable version would let any version through: a downgrade too.
    let before = previous.version.parse().map_err(|_| {
        refused(
            "spec.version",
            now.version.clone(),
            format!(
                "the bundle in --out records version {:?}, which is not MAJOR.MINOR.PATCH: \
                 its {RECORD} was edited; restore it",
                previous.version
            ),
        )
    })?;
    {
        let decision = gantry_controller::reconcile::upgrade::plan(Some(before), input.version);
        if let gantry_controller::reconcile::upgrade::UpgradeDecision::Refused(reason) = decision {
            return Err(refused(
                "spec.version",
                now.version,
                format!("{reason} (the bundle in --out is at {})", previous.version),
            ));
        }
    }
    for (field, before, after) in [
        (
            "spec.networking.serviceCIDR",
            &previous.service_cidr,
            &now.service_cidr,
        ),
        ("spec.networking.podCIDR", &previous.pod_cidr, &now.pod_cidr),
        (
            "spec.networking.dnsDomain",
            &previous.dns_domain,
            &now.dns_domain,
        ),
    ] {
        if before != after {
            return Err(refused(
                field,
                after.clone(),
                format!("networking is immutable: the bundle in --out has {before}"),
            ));
        }
    }
    if previous.etcd_replicas != now.etcd_replicas {
        return Err(refused(
            "spec.etcd.replicas",
            now.etcd_replicas.to_string(),
            format!(
                "is immutable: the bundle in --out has {} members, and gantry never adds or removes one",
                previous.etcd_replicas
            ),
        ));
    }
    Ok(())
}
