//! `gantry backup`: a tenant's etcd snapshots in S3-compatible object
//! storage, with its key material sealed by the platform key (gantry-backup).
//! `snapshot` is what a scheduled backup runs; `list` and `fetch` are the
//! first steps of a restore, by hand or from a runbook.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use gantry_backup::etcd::ClientFiles;
use gantry_backup::layout::TenantPrefix;
use gantry_backup::run::{self, Fetch, TakeSnapshot};
use gantry_backup::seal::{PlatformKey, PlatformPublicKey};
use gantry_backup::store::{Store, StoreConfig};

use crate::CliError;

mod defaults;
pub use defaults::BackupDefaultArgs;

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Make the platform's key pair: the private key in a new file (0600),
    /// the public key beside it in FILE.pub. Backups need only the public
    /// half; keep the private one apart from the bucket and the service
    /// cluster: it opens every backup's keys.
    PlatformKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Take a snapshot of a tenant's etcd, verify it, and write it to the
    /// bucket with the tenant's keys sealed; then delete what retention says.
    Snapshot(SnapshotArgs),
    /// List a tenant's complete snapshots, oldest first.
    List(StoreArgs),
    /// Download a snapshot and open its keys into a new folder: etcd.db (for
    /// `etcdutl snapshot restore`), keys/ and manifest.json.
    Fetch(FetchArgs),
    /// Ask the operator to restore a tenant's etcd from a snapshot (the
    /// annotation gantry.dev/restore-from): etcd and the apiservers stop,
    /// each member is restored, and they start again. The tenant keeps its
    /// CA, so its workers come back without a new join.
    Restore {
        /// The TenantControlPlane.
        tenant: String,
        /// The snapshot's name (`gantry backup list`), or TENANT/NAME for
        /// another tenant's.
        #[arg(long)]
        snapshot: String,
    },
    /// Print the tenant's Namespace and key Secrets (CAs, service-account
    /// key, encryption key) from the keys/ of `gantry backup fetch`, for
    /// `kubectl apply -f -` before a recovery into a new namespace.
    Secrets {
        /// The keys/ folder `gantry backup fetch --platform-key` wrote.
        #[arg(long)]
        keys: PathBuf,
        /// The tenant the Secrets are for (its namespace is tcp-TENANT).
        #[arg(long)]
        tenant: String,
    },
    /// The steps of a restore on one etcd member's volume, around `etcdutl
    /// snapshot restore` (the operator's restore Jobs run them).
    #[command(subcommand)]
    RestoreMember(RestoreMemberCommand),
}

#[derive(Subcommand, Debug)]
pub enum RestoreMemberCommand {
    /// Fetch the snapshot's database, verified, into VOLUME/gantry-restore/
    /// (cleared first; nothing else on the volume is touched).
    Prepare {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        snapshot: String,
        /// The member's volume (etcd's data folder is `data` in it).
        #[arg(long)]
        volume: PathBuf,
    },
    /// Put VOLUME/gantry-restore/data (what `etcdutl snapshot restore`
    /// wrote) in place of VOLUME/data, which is kept beside as
    /// data.before-restore-SNAPSHOT.
    Install {
        #[arg(long)]
        volume: PathBuf,
        #[arg(long)]
        snapshot: String,
    },
}

/// Where the backups are. Credentials come from AWS_ACCESS_KEY_ID and
/// AWS_SECRET_ACCESS_KEY, never from a flag (a flag shows in `ps`).
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The tenant (its TenantControlPlane's name).
    #[arg(long)]
    pub tenant: String,
    /// The object store's URL, `https://host[:port]`.
    #[arg(long)]
    pub store: String,
    #[arg(long)]
    pub bucket: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// The folder in the bucket that holds every tenant's backups.
    #[arg(long, default_value = "gantry")]
    pub prefix: String,
    /// The CA of the store's certificate [default: the system's roots].
    #[arg(long)]
    pub store_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The tenant's key material, sealed beside the snapshot (every file under it).
    #[arg(long)]
    pub keys: PathBuf,
    /// The platform's public key (the .pub file of `gantry backup platform-key`).
    #[arg(long)]
    pub platform_public_key: PathBuf,
    /// Complete snapshots to keep.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub keep: u64,
    /// Where the snapshot is staged before upload [default: the system's temporary folder].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the snapshot's manifest (JSON, no secrets) here: the
    /// backup Job's termination message, which the operator's status reads.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// After the snapshot, the upkeep of `gantry etcd defragment --above`
    /// (defragment members whose free share passes it; on NOSPACE, compact,
    /// defragment and disarm). Its result joins the report.
    #[arg(long, value_name = "SHARE", value_parser = share)]
    pub defragment_above: Option<f64>,
}

/// A share of a database, 0.05 to 0.95.
fn share(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| (0.05..=0.95).contains(v))
        .ok_or_else(|| format!("{value:?} is not a share from 0.05 to 0.95"))
}

/// `gantry etcd`: a tenant's etcd upkeep.
#[derive(Subcommand, Debug)]
pub enum EtcdCommand {
    /// Defragment the members whose database holds more free space than
    /// --above (followers first, the leader last, one at a time); when etcd
    /// raised NOSPACE, compact and defragment every member, then disarm it.
    /// Prints what it did as JSON. Nothing runs while the members'
    /// versions differ (an upgrade rolling).
    Defragment(DefragmentArgs),
}

/// A tenant's etcd, as the backup reaches it.
#[derive(Args, Debug)]
pub struct EtcdArgs {
    /// The tenant's etcd members, `https://host:port`, comma-separated (a
    /// snapshot is taken from the first that answers; the upkeep needs all).
    #[arg(long, value_delimiter = ',', required = true)]
    pub etcd: Vec<String>,
    /// The tenant's etcd CA.
    #[arg(long)]
    pub etcd_ca: PathBuf,
    /// The backup's client certificate and key, of the tenant's etcd CA.
    #[arg(long)]
    pub etcd_cert: PathBuf,
    #[arg(long)]
    pub etcd_key: PathBuf,
}

impl EtcdArgs {
    fn files(&self) -> ClientFiles<'_> {
        ClientFiles {
            ca: &self.etcd_ca,
            cert: &self.etcd_cert,
            key: &self.etcd_key,
        }
    }
}

#[derive(Args, Debug)]
pub struct DefragmentArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[arg(long, default_value = "0.5", value_parser = share)]
    pub above: f64,
}

pub fn run_etcd(command: EtcdCommand) -> Result<ExitCode, CliError> {
    match command {
        EtcdCommand::Defragment(args) => block_on(async move {
            let report =
                gantry_backup::maintain::upkeep(&args.etcd.etcd, &args.etcd.files(), args.above)
                    .await?;
            let mut json = serde_json::to_vec(&report).expect("a report serialises");
            json.push(b'\n');
            crate::write_stdout(&json)?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// What `--report` holds: the manifest, and the upkeep when it ran.
#[derive(serde::Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    manifest: &'a gantry_backup::layout::Manifest,
    #[serde(skip_serializing_if = "Option::is_none")]
    upkeep: Option<gantry_backup::maintain::Upkeep>,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The snapshot's name (from `gantry backup list`) [default: the newest].
    #[arg(long)]
    pub snapshot: Option<String>,
    /// The platform's private key: it opens the snapshot's sealed keys into
    /// keys/. Without it, only etcd.db and manifest.json are fetched.
    #[arg(long)]
    pub platform_key: Option<PathBuf>,
    /// A new folder for the snapshot and its keys.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(command: BackupCommand) -> Result<ExitCode, CliError> {
    match command {
        BackupCommand::PlatformKey { out } => platform_key(&out),
        BackupCommand::Snapshot(args) => block_on(snapshot(args)),
        BackupCommand::List(args) => block_on(list(args)),
        BackupCommand::Fetch(args) => block_on(fetch(args)),
        BackupCommand::Secrets { keys, tenant } => key_secrets(&keys, &tenant),
        BackupCommand::Restore { tenant, snapshot } => ask_restore(&tenant, &snapshot),
        BackupCommand::RestoreMember(RestoreMemberCommand::Prepare {
            store,
            snapshot,
            volume,
        }) => block_on(prepare_member(store, snapshot, volume)),
        BackupCommand::RestoreMember(RestoreMemberCommand::Install { volume, snapshot }) => {
            let kept = run::install_member(&volume, "data", &snapshot)?;
            let line = match kept {
                Some(old) => format!(
                    "restored {snapshot} into {}/data; the data before is kept in {}\n",
                    volume.display(),
                    old.display()
                ),
                None => format!("restored {snapshot} into {}/data\n", volume.display()),
            };
            crate::write_stdout(line.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn prepare_member(
    store_args: StoreArgs,
    snapshot: String,
    volume: PathBuf,
) -> Result<ExitCode, CliError> {
    let (store, tenant) = open_store(&store_args)?;
    let manifest = run::prepare_member(&store, &tenant, &snapshot, &volume).await?;
    let line = format!(
        "fetched snapshot {} of {} (revision {}, {} bytes), verified, into {}/{}\n",
        manifest.name,
        manifest.tenant,
        manifest.etcd.revision,
        manifest.database.bytes,
        volume.display(),
        run::RESTORE_DIR
    );
    crate::write_stdout(line.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Sets the restore annotation on the tenant, unless another restore runs.
fn ask_restore(tenant: &str, snapshot: &str) -> Result<ExitCode, CliError> {
    use gantry_api::labels::RESTORE_ANNOTATION;
    gantry_api::restore::RestoreRequest::parse(tenant, snapshot).map_err(|reason| {
        CliError::BadFile {
            flag: "--snapshot",
            value: snapshot.to_string(),
            reason: format!("{reason}; gantry backup list names them"),
        }
    })?;
    crate::day2::runtime()?.block_on(async {
        let client = crate::day2::service_cluster().await?;
        let api: kube::Api<gantry_api::TenantControlPlane> = kube::Api::all(client);
        let tcp = api
            .get_opt(tenant)
            .await
            .map_err(|e| CliError::Failed(format!("get TenantControlPlane {tenant}: {e}")))?
            .ok_or_else(|| CliError::Failed(format!("no TenantControlPlane {tenant}")))?;
        let running = tcp
            .status
            .and_then(|s| s.backup)
            .and_then(|b| b.restore)
            .filter(|r| r.phase != "Done" && r.phase != "Failed" && r.from != snapshot);
        if let Some(running) = running {
            return Err(CliError::Failed(format!(
                "tenant {tenant} is being restored from {} (phase {}): wait until it is done",
                running.from, running.phase
            )));
        }
        let patch = serde_json::json!({"metadata": {"annotations": {RESTORE_ANNOTATION: snapshot}}});
        api.patch(
            tenant,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| CliError::Failed(format!("annotate TenantControlPlane {tenant}: {e}")))?;
        crate::write_stdout(
            format!(
                "restore of {tenant} from {snapshot} asked: kubectl get tcp {tenant} -w (phase Restoring, then Ready)\n"
            )
            .as_bytes(),
        )?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The create-only Secrets of `tenant` from a fetched keys/ folder, as YAML.
/// Every file must be there: a partial set is refused, never printed.
fn key_secrets(keys: &std::path::Path, tenant: &str) -> Result<ExitCode, CliError> {
    use base64::Engine as _;
    gantry_pki::validate_tenant_name(tenant)?;
    let namespace = gantry_pki::default_namespace(tenant);
    // The tenant's Namespace first, as gantry renders it: the operator
    // writes only in namespaces labelled as its own.
    let bootstrap = gantry_renderer::render_bootstrap(&gantry_renderer::BootstrapInput {
        name: tenant.to_string(),
        namespace: namespace.clone(),
        service_type: gantry_renderer::ServiceType::ClusterIP,
        service_annotations: Default::default(),
        load_balancer_ip: None,
        node_port: None,
        konnectivity: None,
    })?;
    let mut documents: Vec<String> = bootstrap
        .iter()
        .filter(|object| object.kind == "Namespace")
        .map(|object| object.to_yaml().to_string())
        .collect();
    for secret in gantry_renderer::create_only_secrets() {
        let mut data = serde_json::Map::new();
        for (key, _) in secret.files {
            let path = keys.join(secret.name).join(key);
            let bytes = crate::read_flag_file("--keys", &path, 1 << 20)?;
            data.insert(
                (*key).to_string(),
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            );
        }
        let object = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret.name,
                "namespace": namespace,
                "labels": {
                    gantry_api::labels::MANAGED_BY.0: gantry_api::labels::MANAGED_BY.1,
                    gantry_api::labels::TENANT_LABEL: tenant,
                },
            },
            "type": "Opaque",
            "data": data,
        });
        documents.push(serde_yaml::to_string(&object).expect("a Secret serialises"));
    }
    crate::write_stdout(documents.join("---\n").as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn platform_key(out: &std::path::Path) -> Result<ExitCode, CliError> {
    let key = PlatformKey::generate();
    let public = PathBuf::from(format!("{}.pub", out.display()));
    // Neither file is replaced: a platform key lost is every backup's keys lost.
    for path in [out, public.as_path()] {
        if path.exists() {
            return Err(CliError::BadFile {
                flag: "--out",
                value: path.display().to_string(),
                reason: "already exists (a platform key is never replaced)".to_string(),
            });
        }
    }
    write_new(out, key.to_text().as_bytes(), 0o600)?;
    write_new(&public, key.public().to_text().as_bytes(), 0o644)?;
    eprintln!(
        "wrote platform key {} to {} (private) and {}",
        key.id(),
        out.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &std::path::Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| CliError::BadFile {
            flag: "--out",
            value: path.display().to_string(),
            reason: e.to_string(),
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))
}

fn block_on(
    work: impl std::future::Future<Output = Result<ExitCode, CliError>>,
) -> Result<ExitCode, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("starting the async runtime: {e}")))?
        .block_on(work)
}

fn open_store(args: &StoreArgs) -> Result<(Store, TenantPrefix), CliError> {
    let tenant = TenantPrefix::new(&args.prefix, &args.tenant)?;
    let store = Store::new(&StoreConfig {
        endpoint: args.store.clone(),
        bucket: args.bucket.clone(),
        region: args.region.clone(),
        ca_file: args.store_ca.clone(),
    })?;
    Ok((store, tenant))
}

async fn snapshot(args: SnapshotArgs) -> Result<ExitCode, CliError> {
    let (store, tenant) = open_store(&args.store)?;
    let platform_key = PlatformPublicKey::read(&args.platform_public_key)?;
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let taken = run::take_snapshot(
        &store,
        &TakeSnapshot {
            tenant: &tenant,
            etcd: &args.etcd.etcd,
            etcd_files: args.etcd.files(),
            keys_dir: &args.keys,
            platform_key: &platform_key,
            keep: usize::try_from(args.keep).unwrap_or(usize::MAX),
            work_dir: &work_dir,
        },
    )
    .await?;
    let manifest = &taken.manifest;
    // The snapshot is safe: an upkeep that fails is reported, not fatal.
    let upkeep = match args.defragment_above {
        Some(above) => {
            match gantry_backup::maintain::upkeep(&args.etcd.etcd, &args.etcd.files(), above).await
            {
                Ok(upkeep) => Some(upkeep),
                Err(e) => Some(gantry_backup::maintain::Upkeep {
                    skipped: Some(format!("upkeep failed: {e}")),
                    ..Default::default()
                }),
            }
        }
        None => None,
    };
    if let Some(report) = &args.report {
        let json = serde_json::to_vec(&Report { manifest, upkeep }).expect("a report serialises");
        std::fs::write(report, json)
            .map_err(|e| CliError::Failed(format!("--report {}: {e}", report.display())))?;
    }
    let line = format!(
        "snapshot {} of {}: revision {}, {} bytes, {} (deleted {} old objects)\n",
        manifest.name,
        manifest.tenant,
        manifest.etcd.revision,
        manifest.database.bytes,
        manifest.database.key,
        taken.deleted.len()
    );
    crate::write_stdout(line.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn list(args: StoreArgs) -> Result<ExitCode, CliError> {
    let (store, tenant) = open_store(&args)?;
    let manifests = run::list_snapshots(&store, &tenant).await?;
    let mut out = String::from("NAME\tTAKEN\tREVISION\tBYTES\tETCD\tPLATFORM-KEY\n");
    for m in &manifests {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            m.name,
            m.taken_at,
            m.etcd.revision,
            m.database.bytes,
            m.etcd.version,
            m.platform_key_id
        ));
    }
    crate::write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn fetch(args: FetchArgs) -> Result<ExitCode, CliError> {
    let (store, tenant) = open_store(&args.store)?;
    let platform_key = args
        .platform_key
        .as_deref()
        .map(PlatformKey::read)
        .transpose()?;
    let manifest = run::fetch(
        &store,
        &Fetch {
            tenant: &tenant,
            snapshot: args.snapshot.as_deref(),
            platform_key: platform_key.as_ref(),
            out: &args.out,
        },
    )
    .await?;
    let line = format!(
        "fetched snapshot {} of {} (revision {}) into {}: etcd.db, {}manifest.json\n",
        manifest.name,
        manifest.tenant,
        manifest.etcd.revision,
        args.out.display(),
        if platform_key.is_some() {
            "keys/, "
        } else {
            ""
        }
    );
    crate::write_stdout(line.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
