//! `gantry render TCP.yaml --out DIR`: a complete tenant, offline — PKI,
//! kubeconfigs, the service and tenant manifests, a Helm chart archive of the
//! service set, and the `kubeadm join` command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use gantry_pki::{Action, BootstrapToken, PkiFile};
use gantry_renderer::{RenderedObject, chart};
use time::OffsetDateTime;

use super::{CliError, read_flag_file};
use crate::api::TenantControlPlane;
use crate::bundle_dir;
use crate::resolve::{offline_endpoint, resolve};

/// The folders of a bundle that `gantry render` owns: files there that a new
/// render no longer produces are removed.
const RENDERED_FOLDERS: [&str; 3] = ["service", "tenant", "chart"];
const JOIN_COMMAND: &str = "join-command";

#[derive(Args)]
pub struct RenderArgs {
    /// The TenantControlPlane manifest (see examples/tenant-a.yaml).
    manifest: PathBuf,
    /// Output folder; an existing PKI in it is reused (same keep/reissue rules as `pki init`).
    #[arg(long)]
    out: PathBuf,
    /// Join token, ID.SECRET [default: the previous render's token while it is valid, else a new one].
    #[arg(long, value_name = "ID.SECRET")]
    token: Option<String>,
    /// The service cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    service_cluster_domain: String,
}

pub fn run(args: RenderArgs) -> Result<ExitCode, CliError> {
    gantry_renderer::compile_templates_in_background();
    let bad_manifest = |reason: String| CliError::BadFile {
        flag: "MANIFEST",
        value: args.manifest.display().to_string(),
        reason,
    };
    let text = read_flag_file("MANIFEST", &args.manifest)?;
    let text = String::from_utf8(text).map_err(|_| bad_manifest("is not UTF-8 text".into()))?;
    let manifest = TenantControlPlane::from_yaml(&text).map_err(bad_manifest)?;
    let token_flag = args
        .token
        .as_deref()
        .map(BootstrapToken::parse)
        .transpose()?;

    let now = OffsetDateTime::now_utc();
    let existing = bundle_dir::read_tree("--out", &args.out, &[JOIN_COMMAND], &RENDERED_FOLDERS)?;
    let previous = previous_token(&existing).filter(|(_, expiration)| *expiration > now);
    let (token, expiration) = match (token_flag, previous) {
        (Some(token), Some((old, expiration))) if token == old => (token, Some(expiration)),
        (Some(token), _) => (token, None),
        (None, Some((old, expiration))) => (old, Some(expiration)),
        (None, None) => (BootstrapToken::generate(), None),
    };

    let endpoint = offline_endpoint(&manifest)?;
    let resolved = resolve(
        &manifest,
        &endpoint,
        token,
        expiration,
        now,
        &args.service_cluster_domain,
    )?;
    let issued = gantry_pki::issue(&resolved.pki, &existing, now)?;
    let rendered = gantry_renderer::render(&resolved.input, &issued.bundle)?;
    let input = &resolved.input;
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
    files.insert(
        format!("chart/{archive_name}"),
        PkiFile {
            contents: archive,
            secret: true,
        },
    );
    files.insert(
        JOIN_COMMAND.into(),
        PkiFile {
            contents: join_command.into_bytes(),
            secret: true,
        },
    );
    let written = bundle_dir::write_files(&args.out, &files, &existing, &RENDERED_FOLDERS)?;

    let count = |action: fn(&Action) -> bool| {
        issued
            .decisions
            .iter()
            .filter(|d| action(&d.action))
            .count()
    };
    let out = args.out.display();
    println!(
        "rendered {} (Kubernetes {}) into {out}: {} files written",
        input.name,
        input.version,
        written.len()
    );
    println!(
        "  pki/, *.conf        PKI and kubeconfigs: {} created, {} kept, {} reissued",
        count(|a| *a == Action::Created),
        count(|a| *a == Action::Kept),
        count(|a| matches!(a, Action::Reissued(_)))
    );
    for decision in issued
        .decisions
        .iter()
        .filter(|d| matches!(d.action, Action::Reissued(_)))
    {
        println!(
            "                      {}: {}",
            decision.item, decision.action
        );
    }
    println!(
        "  service/            {} objects for the service cluster (namespace {})",
        rendered.service.len(),
        input.namespace
    );
    println!(
        "  tenant/             {} objects for the tenant cluster",
        rendered.tenant.len()
    );
    println!("  chart/{archive_name}");
    println!(
        "  {JOIN_COMMAND}        token {} expires {}",
        input.token.id(),
        gantry_pki::rfc3339(input.token_expiration)
    );
    println!("next steps:");
    println!("  helm install {} {out}/chart/{archive_name}", input.name);
    println!(
        "  kubectl --kubeconfig {out}/super-admin.conf apply -f {out}/tenant/   # once {} answers",
        input.endpoint.url()
    );
    println!("  on each worker VM: the command in {out}/{JOIN_COMMAND}");
    Ok(ExitCode::SUCCESS)
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
fn previous_token(existing: &gantry_pki::FileSet) -> Option<(BootstrapToken, OffsetDateTime)> {
    let command =
        gantry_pki::JoinCommand::parse(&String::from_utf8_lossy(existing.get(JOIN_COMMAND)?))?;
    let token = BootstrapToken::parse(&command.token).ok()?;
    let suffix = format!("-secret-{}.yaml", token.secret_name());
    let (_, secret) = existing
        .iter()
        .find(|(path, _)| path.starts_with("tenant/") && path.ends_with(&suffix))?;
    let secret: serde_yaml::Value = serde_yaml::from_slice(secret).ok()?;
    let expiration = secret.get("stringData")?.get("expiration")?.as_str()?;
    let expiration =
        OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339).ok()?;
    Some((token, expiration))
}
